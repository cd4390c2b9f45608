//! pods/eviction (policy/v1 Eviction), as kube-apiserver's EvictionREST
//! answers it. A pod that is Succeeded, Failed, Pending or already
//! terminating is deleted without consulting budgets. Otherwise the one
//! PodDisruptionBudget of the namespace whose selector picks the pod (an
//! empty selector picks every pod, a missing one none; more than one → 500)
//! must allow a disruption: the eviction decrements
//! `status.disruptionsAllowed` and lists the pod in `status.disruptedPods`
//! in one resourceVersion-guarded write of the budget, and only then deletes
//! the pod with the Eviction's deleteOptions. A budget that allows none
//! answers 429 with a `DisruptionBudget` cause. A pod that is not Ready goes
//! without a decrement while the budget is met (`unhealthyPodEvictionPolicy`
//! IfHealthyBudget, the default) or always (AlwaysAllow), its delete pinned
//! to the resourceVersion that was judged. The disruption controller
//! (`controllers/disruption.rs`) recomputes the budget afterwards. Not done:
//! the pod's DisruptionTarget condition.

use axum::response::Response;
use http::StatusCode;
use serde_json::{Value, json};

use super::delete::{self, DeleteOptions, delete_object};
use super::{Ctx, read_object};
use crate::api::error::{ApiError, StatusCause};
use crate::api::objects::{self, SideEffects, Stored};
use crate::api::registry::{self, ResourceInfo};
use crate::api::selectors::LabelSelector;
use crate::api::{body, meta};
use crate::store::RangeRequest;

/// Reads and writes that lost a race are retried this often.
const ATTEMPTS: usize = 5;
/// Budgets listing more unconfirmed evictions than this refuse new ones.
const MAX_DISRUPTED_PODS: usize = 2000;
const DISRUPTION_ALLOWED: &str = "DisruptionAllowed";
const VIOLATION: &str = "Cannot evict pod as it would violate the pod's disruption budget.";

/// POST pods/<name>/eviction.
pub async fn eviction(ctx: Ctx, body: axum::body::Body) -> Result<Response, ApiError> {
    let ev = read_object(&ctx, body).await?;
    let name = ctx.name()?.to_string();
    if meta::name(&ev) != Some(name.as_str()) {
        return Err(ApiError::BadRequest(
            "name in URL does not match name in Eviction object".into(),
        ));
    }
    let opts = delete::from_value(ev.get("deleteOptions").unwrap_or(&Value::Null), &ctx);
    let Some(pod) = delete_unguarded(&ctx, &name, &opts).await? else {
        return Ok(success());
    };
    let pdbs = registry::lookup("policy", "v1", "poddisruptionbudgets")
        .ok_or_else(|| ApiError::Internal("poddisruptionbudgets not registered".into()))?;
    let mut budgets = covering(&ctx, pdbs, &pod.obj).await?;
    if budgets.len() > 1 {
        tracing::info!(pod = %name, "eviction refused: more than one PodDisruptionBudget");
        return Ok(multiple_budgets());
    }
    let mut pin = false;
    let mut budget_name = String::new();
    if let Some(pdb) = budgets.pop() {
        budget_name = meta::name(&pdb.obj).unwrap_or("").to_string();
        if !is_ready(&pod.obj) && unready_may_go(&pdb.obj) {
            pin = true;
        } else {
            take_disruption(&ctx, pdbs, pdb, &name, opts.dry_run).await?;
            tracing::info!(pod = %name, budget = %budget_name, "eviction allowed by the disruption budget; deleting the pod");
        }
    }
    let mut pinned = opts.clone();
    if pin && pinned.resource_version.is_none() {
        pinned.resource_version = Some(pod.mod_revision.to_string());
    }
    match delete_object(&ctx, &name, &pinned).await {
        Ok(_) => Ok(success()),
        Err(ApiError::Conflict { .. }) if pin && opts.resource_version.is_none() => {
            Err(still_processing(&budget_name))
        }
        Err(e) => Err(e),
    }
}

/// Deletes the pod right away when budgets do not apply to it; returns it
/// (as read) when they do.
async fn delete_unguarded(
    ctx: &Ctx,
    name: &str,
    opts: &DeleteOptions,
) -> Result<Option<Stored>, ApiError> {
    for attempt in 1.. {
        let pod = objects::get(&ctx.state.store, ctx.info, ctx.ns(), name).await?;
        if !ignores_budgets(&pod.obj) {
            return Ok(Some(pod));
        }
        let mut o = opts.clone();
        if o.resource_version.is_none() && !settled(&pod.obj) {
            // Pending: make sure it has not started (and become Ready) meanwhile.
            o.resource_version = Some(pod.mod_revision.to_string());
        }
        match delete_object(ctx, name, &o).await {
            Ok(_) => return Ok(None),
            Err(ApiError::Conflict { .. })
                if attempt < ATTEMPTS && opts.resource_version.is_none() =>
            {
                continue;
            }
            Err(e) => return Err(e),
        }
    }
    Err(ApiError::Internal("unreachable".into()))
}

fn phase(pod: &Value) -> &str {
    pod.pointer("/status/phase")
        .and_then(Value::as_str)
        .unwrap_or("Pending")
}

/// Terminal or already terminating: its disruption has already happened.
fn settled(pod: &Value) -> bool {
    matches!(phase(pod), "Succeeded" | "Failed") || meta::is_deleting(pod)
}

/// Pods evicted without consulting budgets (upstream's `canIgnorePDB`).
fn ignores_budgets(pod: &Value) -> bool {
    settled(pod) || phase(pod) == "Pending"
}

/// The pod's Ready condition is True.
fn is_ready(pod: &Value) -> bool {
    pod.pointer("/status/conditions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Ready" && c["status"] == "True")
}

fn status_int(pdb: &Value, field: &str) -> i64 {
    pdb.pointer(&format!("/status/{field}"))
        .and_then(Value::as_i64)
        .unwrap_or(0)
}

/// Whether an unready pod may be deleted without taking a disruption.
fn unready_may_go(pdb: &Value) -> bool {
    if pdb.pointer("/spec/unhealthyPodEvictionPolicy") == Some(&json!("AlwaysAllow")) {
        return true;
    }
    let desired = status_int(pdb, "desiredHealthy");
    desired > 0 && status_int(pdb, "currentHealthy") >= desired
}

/// Whether the budget's selector picks the pod: a missing selector picks
/// nothing, an empty one everything (policy/v1).
fn selects(pdb: &Value, pod: &Value) -> bool {
    match pdb.pointer("/spec/selector") {
        None | Some(Value::Null) => false,
        Some(sel) => LabelSelector::from_object(sel).matches(pod),
    }
}

/// The budgets of the pod's namespace whose selector picks it.
async fn covering(
    ctx: &Ctx,
    pdbs: &'static ResourceInfo,
    pod: &Value,
) -> Result<Vec<Stored>, ApiError> {
    let Some(prefix) = pdbs.namespace_prefix(ctx.ns()) else {
        return Ok(Vec::new());
    };
    let range = ctx
        .state
        .store
        .range(RangeRequest {
            prefix,
            ..Default::default()
        })
        .await?;
    let mut out = Vec::new();
    for kv in &range.kvs {
        let obj = objects::decode(&ctx.state.store, pdbs, kv)?;
        if selects(&obj, pod) {
            out.push(Stored {
                obj,
                mod_revision: kv.mod_revision,
            });
        }
    }
    Ok(out)
}

/// Takes one disruption from the budget (re-reading it after a lost race).
async fn take_disruption(
    ctx: &Ctx,
    pdbs: &'static ResourceInfo,
    mut pdb: Stored,
    pod: &str,
    dry_run: bool,
) -> Result<(), ApiError> {
    let name = meta::name(&pdb.obj).unwrap_or("").to_string();
    let store = &ctx.state.store;
    for attempt in 1..=ATTEMPTS {
        if attempt > 1 {
            pdb = objects::get(store, pdbs, ctx.ns(), &name).await?;
        }
        let next = decremented(&pdb.obj, pod, &meta::now())?;
        if dry_run {
            return Ok(());
        }
        let written = objects::put(
            store,
            pdbs,
            ctx.ns(),
            &name,
            next,
            pdb.mod_revision,
            SideEffects::default(),
        )
        .await;
        match written {
            Ok(_) => return Ok(()),
            Err(ApiError::Conflict { .. }) => {
                tracing::debug!(budget = %name, attempt, "disruption budget changed meanwhile; re-reading it");
            }
            Err(e) => return Err(e),
        }
    }
    Err(still_processing(&name))
}

/// The budget after one more disruption of `pod` at `now`, or why it
/// allows none (upstream's `checkAndDecrement`).
fn decremented(pdb: &Value, pod: &str, now: &str) -> Result<Value, ApiError> {
    let name = meta::name(pdb).unwrap_or("");
    let generation = pdb
        .pointer("/metadata/generation")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    if status_int(pdb, "observedGeneration") < generation {
        return Err(still_processing(name));
    }
    let allowed = status_int(pdb, "disruptionsAllowed");
    if allowed < 0 {
        return Err(forbidden(name, "pdb disruptions allowed is negative"));
    }
    let listed = pdb
        .pointer("/status/disruptedPods")
        .and_then(Value::as_object)
        .map_or(0, |m| m.len());
    if listed > MAX_DISRUPTED_PODS {
        return Err(forbidden(
            name,
            "DisruptedPods map too big - too many evictions not confirmed by PDB controller",
        ));
    }
    if allowed == 0 {
        return Err(ApiError::TooManyRequests {
            message: VIOLATION.into(),
            retry_after: 0,
            causes: vec![budget_cause(format!(
                "The disruption budget {name} needs {} healthy pods and has {} currently",
                status_int(pdb, "desiredHealthy"),
                status_int(pdb, "currentHealthy"),
            ))],
        });
    }
    let mut next = pdb.clone();
    if !next["status"].is_object() {
        next["status"] = json!({});
    }
    let status = &mut next["status"];
    status["disruptionsAllowed"] = json!(allowed - 1);
    if allowed == 1 {
        let observed = status["observedGeneration"].clone();
        set_insufficient(status, observed, now);
    }
    if !status["disruptedPods"].is_object() {
        status["disruptedPods"] = json!({});
    }
    status["disruptedPods"][pod] = json!(now);
    Ok(next)
}

/// DisruptionAllowed=False/InsufficientPods (transition time kept if it already was False).
fn set_insufficient(status: &mut Value, observed: Value, now: &str) {
    if !status["conditions"].is_array() {
        status["conditions"] = json!([]);
    }
    let Some(conds) = status["conditions"].as_array_mut() else {
        return;
    };
    let mut cond = json!({
        "type": DISRUPTION_ALLOWED, "status": "False", "reason": "InsufficientPods",
        "message": "", "lastTransitionTime": now, "observedGeneration": observed,
    });
    match conds.iter_mut().find(|c| c["type"] == DISRUPTION_ALLOWED) {
        Some(c) => {
            if c["status"] == "False" && c["lastTransitionTime"].is_string() {
                cond["lastTransitionTime"] = c["lastTransitionTime"].clone();
            }
            *c = cond;
        }
        None => conds.push(cond),
    }
}

fn budget_cause(message: String) -> StatusCause {
    StatusCause {
        reason: "DisruptionBudget".into(),
        message,
        field: String::new(),
    }
}

/// 429 for a budget the disruption controller has not caught up with (or
/// that kept changing under the eviction).
fn still_processing(name: &str) -> ApiError {
    ApiError::TooManyRequests {
        message: VIOLATION.into(),
        retry_after: 10,
        causes: vec![budget_cause(format!(
            "The disruption budget {name} is still being processed by the server."
        ))],
    }
}

fn forbidden(name: &str, why: &str) -> ApiError {
    ApiError::Forbidden {
        message: format!("poddisruptionbudget.policy \"{name}\" is forbidden: {why}"),
        group: "policy".into(),
        kind: "poddisruptionbudget".into(),
        name: name.into(),
    }
}

/// The 500 Status upstream answers for a pod under several budgets.
fn multiple_budgets() -> Response {
    body::json_response(
        StatusCode::INTERNAL_SERVER_ERROR,
        &json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.",
            "code": 500,
        }),
    )
}

fn success() -> Response {
    body::json_response(
        StatusCode::CREATED,
        &json!({ "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201 }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pdb(allowed: i64, current: i64, desired: i64) -> Value {
        json!({
            "metadata": {"name": "web", "generation": 2},
            "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "web"}}},
            "status": {
                "observedGeneration": 2, "disruptionsAllowed": allowed,
                "currentHealthy": current, "desiredHealthy": desired, "expectedPods": current,
                "conditions": [{"type": DISRUPTION_ALLOWED, "status": "True", "reason": "SufficientPods",
                                "message": "", "lastTransitionTime": "2024-01-01T00:00:00Z"}],
            },
        })
    }

    #[test]
    fn a_disruption_is_taken_and_recorded() {
        let next = decremented(&pdb(1, 2, 1), "a", "2024-05-01T10:00:00Z").unwrap();
        assert_eq!(next["status"]["disruptionsAllowed"], 0);
        assert_eq!(
            next["status"]["disruptedPods"],
            json!({"a": "2024-05-01T10:00:00Z"})
        );
        let cond = &next["status"]["conditions"][0];
        assert_eq!(cond["status"], "False");
        assert_eq!(cond["reason"], "InsufficientPods");
        assert_eq!(cond["lastTransitionTime"], "2024-05-01T10:00:00Z");
        let more = decremented(&pdb(3, 4, 1), "b", "t").unwrap();
        assert_eq!(more["status"]["disruptionsAllowed"], 2);
        assert_eq!(more["status"]["conditions"][0]["status"], "True");
    }

    #[test]
    fn an_exhausted_budget_answers_429_with_its_cause() {
        let err = decremented(&pdb(0, 1, 1), "b", "t").unwrap_err();
        let status = err.to_status();
        assert_eq!(status["code"], 429);
        assert_eq!(status["reason"], "TooManyRequests");
        assert_eq!(status["message"], VIOLATION);
        assert_eq!(
            status["details"]["causes"],
            json!([{"reason": "DisruptionBudget", "message": "The disruption budget web needs 1 healthy pods and has 1 currently"}])
        );
        let mut stale = pdb(1, 2, 1);
        stale["metadata"]["generation"] = json!(3);
        let status = decremented(&stale, "a", "t").unwrap_err().to_status();
        assert_eq!(status["details"]["retryAfterSeconds"], 10);
        let mut negative = pdb(-1, 2, 1);
        negative["status"]["disruptionsAllowed"] = json!(-1);
        assert_eq!(
            decremented(&negative, "a", "t").unwrap_err().to_status()["code"],
            403
        );
    }

    #[test]
    fn which_pods_budgets_guard() {
        let pod = |phase: &str, ready: bool| {
            json!({"metadata": {"labels": {"app": "web"}},
                   "status": {"phase": phase, "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}}]}})
        };
        assert!(ignores_budgets(&pod("Pending", false)));
        assert!(ignores_budgets(&pod("Succeeded", false)));
        assert!(!ignores_budgets(&pod("Running", true)));
        let mut deleting = pod("Running", true);
        deleting["metadata"]["deletionTimestamp"] = json!("2024-01-01T00:00:00Z");
        assert!(ignores_budgets(&deleting));
        assert!(is_ready(&pod("Running", true)));
        assert!(!is_ready(&pod("Running", false)));

        // IfHealthyBudget: an unready pod goes while the budget is met.
        assert!(unready_may_go(&pdb(0, 1, 1)));
        assert!(!unready_may_go(&pdb(0, 0, 1)));
        assert!(!unready_may_go(&pdb(0, 0, 0)));
        let mut always = pdb(0, 0, 1);
        always["spec"]["unhealthyPodEvictionPolicy"] = json!("AlwaysAllow");
        assert!(unready_may_go(&always));

        let running = pod("Running", true);
        assert!(selects(&pdb(1, 1, 1), &running));
        assert!(selects(&json!({"spec": {"selector": {}}}), &running));
        assert!(!selects(&json!({"spec": {}}), &running));
        assert!(!selects(
            &json!({"spec": {"selector": {"matchLabels": {"app": "db"}}}}),
            &running
        ));
    }
}
