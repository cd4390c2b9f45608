//! `skiff rollout status|history|undo` for Deployments: status follows the
//! Deployment with a watch until the rollout finishes (kubectl's messages);
//! history and undo read the ReplicaSets the Deployment owns, whose
//! `deployment.kubernetes.io/revision` annotation numbers the revisions.

use std::time::Duration;

use anyhow::{Context, bail};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use kube::api::{Api, ListParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::Value;

use super::context::Ctx;
use super::target::parse_single;

const REVISION: &str = "deployment.kubernetes.io/revision";
const CHANGE_CAUSE: &str = "kubernetes.io/change-cause";

#[derive(Debug, clap::Args)]
pub struct RolloutArgs {
    #[command(subcommand)]
    pub command: RolloutCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum RolloutCommand {
    /// Wait for a Deployment's rollout to finish.
    Status {
        #[command(flatten)]
        target: RolloutTarget,
        /// Give up after this long (e.g. 60s, 5m; default: never).
        #[arg(long)]
        timeout: Option<String>,
        /// Keep watching until done (`--watch=false`: print once).
        #[arg(short = 'w', long, default_value_t = true, action = clap::ArgAction::Set)]
        watch: bool,
    },
    /// List a Deployment's revisions.
    History {
        #[command(flatten)]
        target: RolloutTarget,
        /// Show the pod template of this revision.
        #[arg(long)]
        revision: Option<i64>,
    },
    /// Roll a Deployment back to its previous (or a given) revision.
    Undo {
        #[command(flatten)]
        target: RolloutTarget,
        /// The revision to go back to (0: the previous one).
        #[arg(long, default_value_t = 0)]
        to_revision: i64,
    },
}

#[derive(Debug, clap::Args)]
pub struct RolloutTarget {
    /// deployment/NAME or deployment NAME.
    #[arg(required = true, num_args = 1..=2)]
    pub resource: Vec<String>,
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
}

pub async fn run(ctx: &Ctx, args: RolloutArgs) -> anyhow::Result<()> {
    let target = match &args.command {
        RolloutCommand::Status { target, .. }
        | RolloutCommand::History { target, .. }
        | RolloutCommand::Undo { target, .. } => target,
    };
    let (kind, name) = parse_single(&target.resource)?;
    let info = ctx.resolve(&kind).await?;
    if !(info.kind == "Deployment" && info.group == "apps") {
        bail!(
            "error: rollout of {} is not supported (only deployments)",
            info.kind_ref()
        );
    }
    let ns = ctx.namespace(target.namespace.as_deref());
    let api: Api<Deployment> = Api::namespaced(ctx.client.clone(), &ns);
    match args.command {
        RolloutCommand::Status { timeout, watch, .. } => {
            let limit = match timeout {
                Some(t) => Some(Duration::from_secs(
                    super::logs::parse_duration(&t)
                        .with_context(|| format!("error: invalid --timeout {t:?}"))?
                        as u64,
                )),
                None => None,
            };
            status(&api, &name, watch, limit).await
        }
        RolloutCommand::History { revision, .. } => {
            let deployment = serde_json::to_value(api.get(&name).await?)?;
            let revisions = revisions(ctx, &ns, &deployment).await?;
            print!("{}", history_text(&name, &revisions, revision)?);
            Ok(())
        }
        RolloutCommand::Undo { to_revision, .. } => {
            let dynamic = ctx.api(&info, Some(&ns));
            // Replace (not patch) the template, so fields added since that
            // revision go away; retry if someone else wrote in between.
            for _ in 0..5 {
                let mut object = dynamic.get(&name).await?;
                let deployment = serde_json::to_value(&object)?;
                let revisions = revisions(ctx, &ns, &deployment).await?;
                let (revision, template) = rollback_template(&deployment, &revisions, to_revision)?;
                if template == deployment["spec"]["template"] {
                    println!(
                        "deployment.apps/{name} skipped rollback (current template already matches revision {revision})"
                    );
                    return Ok(());
                }
                object.data["spec"]["template"] = template;
                match dynamic
                    .replace(&name, &PostParams::default(), &object)
                    .await
                {
                    Ok(_) => {
                        println!("deployment.apps/{name} rolled back");
                        return Ok(());
                    }
                    Err(kube::Error::Api(s)) if s.code == 409 => continue,
                    Err(e) => return Err(e.into()),
                }
            }
            bail!("error: deployment {name} kept changing; rollback not applied")
        }
    }
}

async fn status(
    api: &Api<Deployment>,
    name: &str,
    watch: bool,
    limit: Option<Duration>,
) -> anyhow::Result<()> {
    let report = |d: &Deployment| -> anyhow::Result<bool> {
        let (message, done) =
            rollout_status(name, &serde_json::to_value(d)?).map_err(|e| anyhow::anyhow!(e))?;
        print!("{message}");
        Ok(done)
    };
    let current = api.get(name).await?;
    if report(&current)? || !watch {
        return Ok(());
    }
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let mut last = String::new();
    let follow = async {
        let mut stream = Box::pin(watcher(api.clone(), config).applied_objects());
        while let Some(d) = stream.next().await {
            let d = d?;
            let (message, done) =
                rollout_status(name, &serde_json::to_value(&d)?).map_err(|e| anyhow::anyhow!(e))?;
            if message != last {
                print!("{message}");
                last = message;
            }
            if done {
                return Ok(());
            }
        }
        bail!("error: watch of deployment {name} ended")
    };
    match limit {
        Some(limit) => tokio::time::timeout(limit, follow)
            .await
            .map_err(|_| anyhow::anyhow!("error: timed out waiting for the condition"))?,
        None => follow.await,
    }
}

/// kubectl's rollout status message for a Deployment, and whether it is done;
/// `Err` when the rollout exceeded its progress deadline.
pub fn rollout_status(name: &str, d: &Value) -> Result<(String, bool), String> {
    let n = |v: &Value| v.as_i64().unwrap_or(0);
    let generation = n(&d["metadata"]["generation"]);
    let status = &d["status"];
    if generation > n(&status["observedGeneration"]) {
        return Ok((
            "Waiting for deployment spec update to be observed...\n".to_string(),
            false,
        ));
    }
    let progressing = status["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == "Progressing"));
    if progressing.is_some_and(|c| c["reason"] == "ProgressDeadlineExceeded") {
        return Err(format!(
            "error: deployment \"{name}\" exceeded its progress deadline"
        ));
    }
    let desired = d["spec"]["replicas"].as_i64().unwrap_or(1);
    let (updated, replicas, available) = (
        n(&status["updatedReplicas"]),
        n(&status["replicas"]),
        n(&status["availableReplicas"]),
    );
    let wait = |what: String| {
        Ok((
            format!("Waiting for deployment \"{name}\" rollout to finish: {what}...\n"),
            false,
        ))
    };
    if updated < desired {
        return wait(format!(
            "{updated} out of {desired} new replicas have been updated"
        ));
    }
    if replicas > updated {
        return wait(format!(
            "{} old replicas are pending termination",
            replicas - updated
        ));
    }
    if available < updated {
        return wait(format!(
            "{available} of {updated} updated replicas are available"
        ));
    }
    Ok((
        format!("deployment \"{name}\" successfully rolled out\n"),
        true,
    ))
}

/// The Deployment's revisions: (number, change cause, pod template), oldest first.
async fn revisions(
    ctx: &Ctx,
    ns: &str,
    deployment: &Value,
) -> anyhow::Result<Vec<(i64, String, Value)>> {
    let uid = deployment["metadata"]["uid"].as_str().unwrap_or_default();
    let api: Api<ReplicaSet> = Api::namespaced(ctx.client.clone(), ns);
    let mut out = Vec::new();
    for rs in api.list(&ListParams::default()).await?.items {
        let rs = serde_json::to_value(rs)?;
        let owned = rs["metadata"]["ownerReferences"]
            .as_array()
            .is_some_and(|o| o.iter().any(|r| r["uid"] == uid));
        let revision = rs["metadata"]["annotations"][REVISION]
            .as_str()
            .and_then(|r| r.parse().ok());
        if let (true, Some(revision)) = (owned, revision) {
            let cause = rs["metadata"]["annotations"][CHANGE_CAUSE]
                .as_str()
                .unwrap_or("<none>")
                .to_string();
            out.push((revision, cause, rs["spec"]["template"].clone()));
        }
    }
    out.sort_by_key(|(r, _, _)| *r);
    Ok(out)
}

/// `rollout history` output.
pub fn history_text(
    name: &str,
    revisions: &[(i64, String, Value)],
    revision: Option<i64>,
) -> anyhow::Result<String> {
    if let Some(wanted) = revision {
        let Some((_, _, template)) = revisions.iter().find(|(r, _, _)| *r == wanted) else {
            bail!("error: unable to find the specified revision");
        };
        let mut text = format!("deployment.apps/{name} with revision #{wanted}\nPod Template:\n");
        text.push_str(
            &serde_yaml::to_string(template)?
                .lines()
                .map(|l| format!("  {l}\n"))
                .collect::<String>(),
        );
        return Ok(text);
    }
    let mut rows = vec![vec!["REVISION".to_string(), "CHANGE-CAUSE".to_string()]];
    rows.extend(
        revisions
            .iter()
            .map(|(r, cause, _)| vec![r.to_string(), cause.clone()]),
    );
    Ok(format!(
        "deployment.apps/{name} \n{}",
        super::describe::align(&rows, "", 2)
    ))
}

/// The template to roll back to (without its pod-template-hash label) and its revision.
pub fn rollback_template(
    deployment: &Value,
    revisions: &[(i64, String, Value)],
    to_revision: i64,
) -> anyhow::Result<(i64, Value)> {
    let current: i64 = deployment["metadata"]["annotations"][REVISION]
        .as_str()
        .and_then(|r| r.parse().ok())
        .or_else(|| revisions.last().map(|(r, _, _)| *r))
        .unwrap_or(0);
    let found = if to_revision > 0 {
        revisions.iter().find(|(r, _, _)| *r == to_revision)
    } else {
        revisions.iter().rev().find(|(r, _, _)| *r < current)
    };
    let Some((revision, _, template)) = found else {
        if to_revision > 0 {
            bail!("error: unable to find specified revision {to_revision} in history");
        }
        bail!(
            "error: no rollout history found for deployment \"{}\"",
            deployment["metadata"]["name"].as_str().unwrap_or_default()
        );
    };
    let mut template = template.clone();
    if let Some(labels) = template["metadata"]["labels"].as_object_mut() {
        labels.remove("pod-template-hash");
    }
    Ok((*revision, template))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deployment(generation: i64, status: Value) -> Value {
        json!({"metadata": {"name": "web", "generation": generation}, "spec": {"replicas": 2}, "status": status})
    }

    #[test]
    fn status_messages_follow_kubectl() {
        let msg = |d: &Value| rollout_status("web", d).unwrap();
        assert_eq!(
            msg(&deployment(2, json!({"observedGeneration": 1}))).0,
            "Waiting for deployment spec update to be observed...\n"
        );
        assert_eq!(
            msg(&deployment(
                1,
                json!({"observedGeneration": 1, "updatedReplicas": 1, "replicas": 2})
            ))
            .0,
            "Waiting for deployment \"web\" rollout to finish: 1 out of 2 new replicas have been updated...\n"
        );
        assert_eq!(
            msg(&deployment(
                1,
                json!({"observedGeneration": 1, "updatedReplicas": 2, "replicas": 3})
            ))
            .0,
            "Waiting for deployment \"web\" rollout to finish: 1 old replicas are pending termination...\n"
        );
        assert_eq!(
            msg(&deployment(1, json!({"observedGeneration": 1, "updatedReplicas": 2, "replicas": 2, "availableReplicas": 1}))).0,
            "Waiting for deployment \"web\" rollout to finish: 1 of 2 updated replicas are available...\n"
        );
        let done = msg(&deployment(
            1,
            json!({"observedGeneration": 1, "updatedReplicas": 2, "replicas": 2, "availableReplicas": 2}),
        ));
        assert_eq!(
            done,
            (
                "deployment \"web\" successfully rolled out\n".to_string(),
                true
            )
        );
        let stuck = deployment(
            1,
            json!({"observedGeneration": 1, "conditions": [{"type": "Progressing", "reason": "ProgressDeadlineExceeded"}]}),
        );
        assert!(rollout_status("web", &stuck).is_err());
    }

    fn revisions() -> Vec<(i64, String, Value)> {
        let t = |image: &str| {
            json!({"metadata": {"labels": {"app": "web", "pod-template-hash": "abc"}},
                                     "spec": {"containers": [{"name": "web", "image": image}]}})
        };
        vec![
            (1, "<none>".into(), t("v1.wasm")),
            (2, "update".into(), t("v2.wasm")),
            (3, "<none>".into(), t("v3.wasm")),
        ]
    }

    #[test]
    fn history_lists_revisions() {
        assert_eq!(
            history_text("web", &revisions(), None).unwrap(),
            "deployment.apps/web \nREVISION  CHANGE-CAUSE\n1         <none>\n2         update\n3         <none>\n"
        );
        let one = history_text("web", &revisions(), Some(2)).unwrap();
        assert!(
            one.starts_with("deployment.apps/web with revision #2\nPod Template:\n"),
            "{one}"
        );
        assert!(one.contains("image: v2.wasm"), "{one}");
        assert!(history_text("web", &revisions(), Some(9)).is_err());
    }

    #[test]
    fn undo_picks_previous_or_given_revision() {
        let d = json!({"metadata": {"name": "web", "annotations": {REVISION: "3"}}});
        let (rev, template) = rollback_template(&d, &revisions(), 0).unwrap();
        assert_eq!(rev, 2);
        assert_eq!(template["spec"]["containers"][0]["image"], "v2.wasm");
        assert!(template["metadata"]["labels"]["pod-template-hash"].is_null());
        assert_eq!(rollback_template(&d, &revisions(), 1).unwrap().0, 1);
        assert!(rollback_template(&d, &revisions(), 7).is_err());
        assert!(rollback_template(&d, &revisions()[..0], 0).is_err());
    }
}
