//! ResourceQuota: a new object is refused (403 `exceeded quota: <name>,
//! requested: pods=1, used: pods=2, limited: pods=2`) when it would take a
//! namespace past a ResourceQuota's `spec.hard`; pods must state the
//! requests and limits a compute quota tracks. Usage is computed from the
//! namespace's objects in the store (upstream reads `status.used` and
//! updates it atomically; here two concurrent creates can both pass the
//! last unit of a quota). After writes that change usage, the quotas'
//! `status.hard`/`status.used` are refreshed (best effort) — skiff has no
//! ResourceQuota controller. Only creates are checked; updates that grow
//! usage (service type changes, claim resizes) are not.

mod usage;

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

use super::super::error::ApiError;
use super::super::objects::{self, ObjectStore, SideEffects};
use super::super::registry::{self, ResourceInfo};
use super::resources::{self, ResourceList};
use super::{Attributes, Operation, reads};

/// `a=1,b=2` as upstream's prettyPrint writes resource lists.
fn pretty(list: &ResourceList) -> String {
    list.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// The stored resource a quota name counts, e.g. `count/deployments.apps`.
fn info_of(name: &str) -> Option<&'static ResourceInfo> {
    let (group, plural) = usage::resource_of(name)?;
    registry::RESOURCES
        .iter()
        .find(|r| r.group == group && r.plural == plural && r.namespaced && r.storage.is_some())
}

/// The namespace's usage of the quota names `names`, under `quota`'s scopes.
async fn used(
    store: &ObjectStore,
    ns: &str,
    quota: &Value,
    names: &BTreeSet<String>,
) -> Result<ResourceList, ApiError> {
    let now = chrono::Utc::now();
    let mut out: ResourceList = names
        .iter()
        .map(|n| (n.clone(), super::quantity::Quantity::zero()))
        .collect();
    let mut kinds: Vec<&'static ResourceInfo> = Vec::new();
    for info in names.iter().filter_map(|n| info_of(n)) {
        if !kinds.contains(&info) {
            kinds.push(info);
        }
    }
    let scoped = usage::is_scoped(quota);
    for info in kinds {
        let mine: Vec<&String> = names.iter().filter(|n| info_of(n) == Some(info)).collect();
        if !scoped && mine.iter().all(|n| !usage::needs_contents(n)) {
            let n = super::quantity::Quantity::count(reads::count(store, info, ns).await?);
            for name in mine {
                out.insert(name.clone(), n);
            }
            continue;
        }
        for obj in reads::list(store, info, ns).await? {
            if !usage::in_scope(quota, info, &obj) {
                continue;
            }
            let u = usage::object_usage(info, &obj, now);
            for name in &mine {
                if let Some(q) = u.get(*name) {
                    let sum = out[*name].add(*q);
                    out.insert((*name).clone(), sum);
                }
            }
        }
    }
    Ok(out)
}

/// The refusal of `obj` by one quota, if it would exceed it.
async fn check_quota(
    attrs: &Attributes<'_>,
    ns: &str,
    quota: &Value,
    obj: &Value,
) -> Result<Option<String>, ApiError> {
    let name = super::super::meta::name(quota).unwrap_or("");
    let hard = resources::list(quota.pointer("/spec/hard"));
    if hard.is_empty() || !usage::in_scope(quota, attrs.info, obj) {
        return Ok(None);
    }
    if attrs.is_core("Pod")
        && let Some(missing) = usage::missing_requirements(&hard, obj)
    {
        return Ok(Some(format!("failed quota: {name}: {missing}")));
    }
    let requested: ResourceList = usage::object_usage(attrs.info, obj, chrono::Utc::now())
        .into_iter()
        .filter(|(k, _)| hard.contains_key(k))
        .collect();
    if requested.is_empty() {
        return Ok(None);
    }
    let names: BTreeSet<String> = requested.keys().cloned().collect();
    let current = used(attrs.store, ns, quota, &names).await?;
    let exceeded: Vec<&String> = requested
        .iter()
        .filter(|(k, q)| current[*k].add(**q) > hard[*k])
        .map(|(k, _)| k)
        .collect();
    if exceeded.is_empty() {
        return Ok(None);
    }
    let mask = |l: &ResourceList| -> ResourceList {
        exceeded.iter().map(|k| ((*k).clone(), l[*k])).collect()
    };
    Ok(Some(format!(
        "exceeded quota: {name}, requested: {}, used: {}, limited: {}",
        pretty(&mask(&requested)),
        pretty(&mask(&current)),
        pretty(&mask(&hard))
    )))
}

/// Refuses a create that would exceed one of the namespace's quotas.
pub async fn validate(attrs: &Attributes<'_>, obj: &Value) -> Result<(), ApiError> {
    if attrs.operation != Operation::Create || attrs.subresource.is_some() || !attrs.info.namespaced
    {
        return Ok(());
    }
    let Some(ns) = attrs.namespace else {
        return Ok(());
    };
    for quota in reads::list(attrs.store, reads::core("resourcequotas")?, ns).await? {
        if let Some(reason) = check_quota(attrs, ns, &quota, obj).await? {
            return Err(attrs.forbidden(reason));
        }
    }
    Ok(())
}

/// The status a quota should have now.
async fn status_of(store: &ObjectStore, ns: &str, quota: &Value) -> Result<Value, ApiError> {
    let hard = resources::list(quota.pointer("/spec/hard"));
    let names: BTreeSet<String> = hard.keys().cloned().collect();
    let used = used(store, ns, quota, &names).await?;
    let show = |l: &ResourceList| -> Map<String, Value> {
        l.iter()
            .map(|(k, v)| (k.clone(), json!(v.to_string())))
            .collect()
    };
    Ok(json!({ "hard": show(&hard), "used": show(&used) }))
}

/// Rewrites the status of every quota in `ns` whose usage changed.
async fn refresh(store: &ObjectStore, ns: &str) -> Result<(), ApiError> {
    let info = reads::core("resourcequotas")?;
    for attempt in 0..3 {
        let mut conflicted = false;
        for kv in reads::list_raw(store, info, ns).await? {
            let mut quota = objects::decode(store, info, &kv)?;
            let status = status_of(store, ns, &quota).await?;
            if quota.get("status") == Some(&status) {
                continue;
            }
            quota["status"] = status;
            let name = super::super::meta::name(&quota).unwrap_or("").to_string();
            match objects::put(
                store,
                info,
                Some(ns),
                &name,
                quota,
                kv.mod_revision,
                SideEffects::default(),
            )
            .await
            {
                Ok(_) | Err(ApiError::NotFound { .. }) => {}
                Err(ApiError::Conflict { .. }) if attempt < 2 => conflicted = true,
                Err(e) => return Err(e),
            }
        }
        if !conflicted {
            break;
        }
    }
    Ok(())
}

/// Whether a write can change what the namespace's quotas count.
fn changes_usage(info: &ResourceInfo, old: Option<&Value>, new: Option<&Value>) -> bool {
    let (Some(old), Some(new)) = (old, new) else {
        return true; // created or deleted
    };
    let at = |v: &Value, p: &str| v.pointer(p).cloned();
    match (info.group, info.kind) {
        ("", "Pod") => {
            at(old, "/status/phase") != at(new, "/status/phase")
                || at(old, "/metadata/deletionTimestamp") != at(new, "/metadata/deletionTimestamp")
        }
        ("", "Service" | "PersistentVolumeClaim" | "ResourceQuota") => {
            at(old, "/spec") != at(new, "/spec")
        }
        _ => false,
    }
}

/// After a stored write in `ns`: refreshes the quotas' status when usage may have changed.
pub async fn written(
    store: &ObjectStore,
    info: &'static ResourceInfo,
    namespace: Option<&str>,
    old: Option<&Value>,
    new: Option<&Value>,
) {
    let Some(ns) = namespace.filter(|_| info.namespaced) else {
        return;
    };
    if !changes_usage(info, old, new) {
        return;
    }
    if let Err(e) = refresh(store, ns).await {
        tracing::debug!(namespace = ns, error = %e, "resource quota status not refreshed; the next write retries");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::registry::lookup;

    #[test]
    fn messages_and_change_detection() {
        let l = resources::list(Some(&json!({"pods": "2", "requests.cpu": "500m"})));
        assert_eq!(pretty(&l), "pods=2,requests.cpu=500m");
        assert_eq!(
            info_of("count/deployments.apps").map(|i| i.kind),
            Some("Deployment")
        );
        assert_eq!(info_of("requests.memory").map(|i| i.kind), Some("Pod"));
        assert_eq!(info_of("count/nodes"), None);
        let pods = lookup("", "v1", "pods").unwrap();
        let a = json!({"status": {"phase": "Running"}, "metadata": {"labels": {"x": "1"}}});
        let mut b = a.clone();
        b["metadata"]["labels"]["x"] = json!("2");
        assert!(!changes_usage(pods, Some(&a), Some(&b)));
        b["status"]["phase"] = json!("Succeeded");
        assert!(changes_usage(pods, Some(&a), Some(&b)));
        assert!(changes_usage(pods, None, Some(&a)));
        let cms = lookup("", "v1", "configmaps").unwrap();
        assert!(!changes_usage(cms, Some(&a), Some(&b)));
    }
}
