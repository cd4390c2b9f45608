//! `skiff logs`: a container's log through the API's `pods/log`, for a pod
//! or for a workload (`deploy/web`: one of its pods, running ones first),
//! with `-f`, `-c`, `--tail`, `--previous`, `--timestamps`, `--since`.

use std::io::Write;

use anyhow::{Context, bail};
use futures::AsyncReadExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, LogParams};
use serde_json::Value;

use super::context::Ctx;
use super::target::selector_string;

#[derive(Debug, clap::Args)]
pub struct LogsArgs {
    /// POD, pod/NAME, or TYPE/NAME of a workload (deploy/web, job/hello).
    pub target: String,
    /// Container (default: the pod's default or first container).
    #[arg(short = 'c', long)]
    pub container: Option<String>,
    /// Keep streaming new lines.
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// Only the last N lines (-1: all).
    #[arg(long, allow_hyphen_values = true)]
    pub tail: Option<i64>,
    /// The previous (terminated) instance of the container.
    #[arg(short = 'p', long)]
    pub previous: bool,
    /// Prefix each line with its RFC 3339 timestamp.
    #[arg(long)]
    pub timestamps: bool,
    /// Only lines newer than this, e.g. 30s, 5m, 1h.
    #[arg(long)]
    pub since: Option<String>,
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
}

pub async fn run(ctx: &Ctx, args: LogsArgs) -> anyhow::Result<()> {
    let ns = ctx.namespace(args.namespace.as_deref());
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let pod_name = resolve_pod(ctx, &ns, &args.target).await?;
    let pod = serde_json::to_value(pods.get(&pod_name).await?)?;
    let container = match &args.container {
        Some(c) => c.clone(),
        None => {
            let (chosen, all) = default_container(&pod)
                .with_context(|| format!("error: pod {pod_name} has no containers"))?;
            if all.len() > 1 {
                eprintln!(
                    "Defaulted container \"{chosen}\" out of: {}",
                    all.join(", ")
                );
            }
            chosen
        }
    };
    let since_seconds = match &args.since {
        Some(s) => {
            Some(parse_duration(s).with_context(|| format!("error: invalid --since {s:?}"))?)
        }
        None => None,
    };
    let lp = LogParams {
        container: Some(container),
        follow: args.follow,
        previous: args.previous,
        tail_lines: args.tail.filter(|t| *t >= 0),
        timestamps: args.timestamps,
        since_seconds,
        ..LogParams::default()
    };
    let mut stream = pods.log_stream(&pod_name, &lp).await?;
    let mut buf = vec![0u8; 16 * 1024];
    let mut stdout = std::io::stdout();
    loop {
        let n = stream
            .read(&mut buf)
            .await
            .context("error: reading the log stream")?;
        if n == 0 {
            return Ok(());
        }
        stdout.write_all(&buf[..n])?;
        stdout.flush()?;
    }
}

/// The pod a `logs` target names.
async fn resolve_pod(ctx: &Ctx, ns: &str, target: &str) -> anyhow::Result<String> {
    let Some((kind, name)) = target.split_once('/') else {
        return Ok(target.to_string());
    };
    let info = ctx.resolve(kind).await?;
    if info.kind == "Pod" && info.group.is_empty() {
        return Ok(name.to_string());
    }
    let object = serde_json::to_value(ctx.api(&info, Some(ns)).get(name).await?)?;
    let Some(selector) = selector_string(&object["spec"]["selector"]) else {
        bail!(
            "error: cannot find the pods of {}/{name}: it has no selector",
            info.kind_ref()
        );
    };
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), ns);
    let list = pods.list(&ListParams::default().labels(&selector)).await?;
    let list: Vec<Value> = list
        .items
        .iter()
        .filter_map(|p| serde_json::to_value(p).ok())
        .collect();
    match pick_pod(&list) {
        Some(p) => Ok(p),
        None => bail!("error: no pods found for {}/{name}", info.kind_ref()),
    }
}

/// The pod kubectl would pick: running and ready first, then the newest.
pub fn pick_pod(pods: &[Value]) -> Option<String> {
    let score = |p: &Value| {
        let running = p["status"]["phase"] == "Running";
        let ready = p["status"]["conditions"].as_array().is_some_and(|c| {
            c.iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        });
        let created = p["metadata"]["creationTimestamp"]
            .as_str()
            .unwrap_or("")
            .to_string();
        (running, ready, created)
    };
    pods.iter()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .max_by_key(|p| score(p))
        .and_then(|p| p["metadata"]["name"].as_str().map(str::to_string))
}

/// The container to show by default and every container's name.
pub fn default_container(pod: &Value) -> Option<(String, Vec<String>)> {
    let all: Vec<String> = pod["spec"]["containers"]
        .as_array()?
        .iter()
        .filter_map(|c| c["name"].as_str().map(str::to_string))
        .collect();
    let annotated = pod["metadata"]["annotations"]["kubectl.kubernetes.io/default-container"]
        .as_str()
        .filter(|a| all.iter().any(|c| c == a))
        .map(str::to_string);
    let chosen = annotated.or_else(|| all.first().cloned())?;
    Some((chosen, all))
}

/// `30s`, `5m`, `1h30m`, `2h` → seconds.
pub fn parse_duration(text: &str) -> Option<i64> {
    let mut total = 0i64;
    let mut digits = String::new();
    for ch in text.trim().chars() {
        if ch.is_ascii_digit() {
            digits.push(ch);
            continue;
        }
        let n: i64 = digits.parse().ok()?;
        digits.clear();
        total += n * match ch {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            _ => return None,
        };
    }
    digits.is_empty().then_some(total).filter(|t| *t > 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn picks_running_ready_then_newest() {
        let pods = vec![
            json!({"metadata": {"name": "old-ready", "creationTimestamp": "2024-01-01T00:00:00Z"},
                   "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}}),
            json!({"metadata": {"name": "new-pending", "creationTimestamp": "2024-01-02T00:00:00Z"},
                   "status": {"phase": "Pending"}}),
            json!({"metadata": {"name": "newer-ready", "creationTimestamp": "2024-01-01T10:00:00Z"},
                   "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}}),
            json!({"metadata": {"name": "going", "creationTimestamp": "2024-01-03T00:00:00Z",
                                "deletionTimestamp": "2024-01-03T00:00:00Z"},
                   "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}}),
        ];
        assert_eq!(pick_pod(&pods).as_deref(), Some("newer-ready"));
        assert_eq!(pick_pod(&[]), None);
    }

    #[test]
    fn default_container_honours_the_annotation() {
        let pod = json!({"metadata": {}, "spec": {"containers": [{"name": "web"}, {"name": "log-processor"}]}});
        assert_eq!(default_container(&pod).unwrap().0, "web");
        let pod = json!({"metadata": {"annotations": {"kubectl.kubernetes.io/default-container": "log-processor"}},
                         "spec": {"containers": [{"name": "web"}, {"name": "log-processor"}]}});
        let (chosen, all) = default_container(&pod).unwrap();
        assert_eq!((chosen.as_str(), all.len()), ("log-processor", 2));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Some(30));
        assert_eq!(parse_duration("5m"), Some(300));
        assert_eq!(parse_duration("1h30m"), Some(5400));
        assert_eq!(parse_duration("10"), None);
        assert_eq!(parse_duration("5d"), None);
        assert_eq!(parse_duration("0s"), None);
    }
}
