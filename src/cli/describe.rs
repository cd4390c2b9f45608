//! `skiff describe`: an object's key fields (metadata, then per-kind
//! details from describe_kinds.rs or a generic rendering of spec and
//! status) followed by the Events that involve it.

use kube::api::{ListParams, ObjectList};
use kube::core::DynamicObject;
use serde_json::Value;

use super::context::Ctx;
use super::describe_kinds;
use super::discovery::ResourceInfo;
use super::table::{human_duration, labels_text};
use super::target::parse_targets;

#[derive(Debug, clap::Args)]
pub struct DescribeArgs {
    /// TYPE [NAME...] or TYPE/NAME...
    #[arg(required = true)]
    pub resources: Vec<String>,
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
    /// Label selector (when no names are given).
    #[arg(short = 'l', long)]
    pub selector: Option<String>,
}

pub async fn run(ctx: &Ctx, args: DescribeArgs) -> anyhow::Result<()> {
    let namespace = ctx.namespace(args.namespace.as_deref());
    let mut first = true;
    for target in parse_targets(&args.resources)? {
        let info = ctx.resolve(&target.resource).await?;
        let api = ctx.api(&info, Some(&namespace));
        let objects: Vec<DynamicObject> = if target.names.is_empty() {
            let mut lp = ListParams::default();
            if let Some(l) = &args.selector {
                lp = lp.labels(l);
            }
            api.list(&lp).await?.items
        } else {
            let mut out = Vec::new();
            for name in &target.names {
                out.push(api.get(name).await?);
            }
            out
        };
        for object in objects {
            let object = serde_json::to_value(&object)?;
            let events = events_for(ctx, &object).await;
            if !first {
                println!();
            }
            first = false;
            print!(
                "{}",
                describe_text(&info, &object, &events, chrono::Utc::now())
            );
        }
    }
    Ok(())
}

/// Events whose involvedObject is `object` (empty if they cannot be read).
async fn events_for(ctx: &Ctx, object: &Value) -> Vec<Value> {
    let meta = &object["metadata"];
    let name = meta["name"].as_str().unwrap_or_default();
    let uid = meta["uid"].as_str().unwrap_or_default();
    let ns = meta["namespace"].as_str().unwrap_or("default");
    let ar = kube::core::ApiResource::erase::<k8s_openapi::api::core::v1::Event>(&());
    let api: kube::Api<DynamicObject> = kube::Api::namespaced_with(ctx.client.clone(), ns, &ar);
    let selector = format!("involvedObject.name={name}");
    let listed: Result<ObjectList<DynamicObject>, _> =
        match api.list(&ListParams::default().fields(&selector)).await {
            Ok(list) => Ok(list),
            // A server without that field selector: filter here instead.
            Err(_) => api.list(&ListParams::default()).await,
        };
    let mut events: Vec<Value> = listed
        .map(|l| l.items)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|e| serde_json::to_value(e).ok())
        .filter(|e| {
            let io = &e["involvedObject"];
            io["name"] == name && (uid.is_empty() || io["uid"].as_str().is_none_or(|u| u == uid))
        })
        .collect();
    events.sort_by_key(|e| event_time(e).unwrap_or_default());
    events
}

fn event_time(e: &Value) -> Option<chrono::DateTime<chrono::Utc>> {
    ["lastTimestamp", "eventTime", "firstTimestamp"]
        .iter()
        .filter_map(|k| e[*k].as_str())
        .chain(e["metadata"]["creationTimestamp"].as_str())
        .find_map(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&chrono::Utc))
}

/// The whole description of one object.
pub fn describe_text(
    info: &ResourceInfo,
    object: &Value,
    events: &[Value],
    now: chrono::DateTime<chrono::Utc>,
) -> String {
    let meta = &object["metadata"];
    let mut out = Fields::default();
    out.field(0, "Name", meta["name"].as_str().unwrap_or_default());
    if info.namespaced {
        out.field(
            0,
            "Namespace",
            meta["namespace"].as_str().unwrap_or_default(),
        );
    }
    out.multi(
        0,
        "Labels",
        &labels_text(&meta["labels"]).replace(',', "\n"),
    );
    out.multi(0, "Annotations", &annotations_text(&meta["annotations"]));
    out.field(
        0,
        "CreationTimestamp",
        meta["creationTimestamp"].as_str().unwrap_or("<unknown>"),
    );
    if let Some(owner) = meta["ownerReferences"]
        .as_array()
        .and_then(|o| o.iter().find(|r| r["controller"] == true))
    {
        let kind = owner["kind"].as_str().unwrap_or_default();
        let name = owner["name"].as_str().unwrap_or_default();
        out.field(0, "Controlled By", &format!("{kind}/{name}"));
    }
    match info.kind.as_str() {
        "Pod" if info.group.is_empty() => describe_kinds::pod(object, &mut out),
        "Deployment" if info.group == "apps" => describe_kinds::deployment(object, &mut out),
        _ => {
            for section in ["spec", "data", "status"] {
                if !object[section].is_null() {
                    let mut title: Vec<char> = section.chars().collect();
                    title[0] = title[0].to_ascii_uppercase();
                    out.tree(0, &title.into_iter().collect::<String>(), &object[section]);
                }
            }
        }
    }
    let mut text = out.render();
    text.push_str(&events_text(events, now));
    text
}

fn annotations_text(annotations: &Value) -> String {
    match annotations.as_object() {
        Some(map) if !map.is_empty() => map
            .iter()
            .filter(|(k, _)| k.as_str() != "kubectl.kubernetes.io/last-applied-configuration")
            .map(|(k, v)| format!("{k}: {}", v.as_str().unwrap_or_default()))
            .collect::<Vec<_>>()
            .join("\n"),
        _ => "<none>".to_string(),
    }
}

/// kubectl's Events section.
pub fn events_text(events: &[Value], now: chrono::DateTime<chrono::Utc>) -> String {
    if events.is_empty() {
        return "Events:  <none>\n".to_string();
    }
    let mut rows: Vec<Vec<String>> = vec![
        ["Type", "Reason", "Age", "From", "Message"]
            .map(String::from)
            .to_vec(),
        ["----", "------", "----", "----", "-------"]
            .map(String::from)
            .to_vec(),
    ];
    for e in events {
        let age = event_time(e)
            .map(|t| human_duration(now.signed_duration_since(t)))
            .unwrap_or_else(|| "<unknown>".to_string());
        let count = e["count"].as_i64().unwrap_or(1);
        let first = e["firstTimestamp"]
            .as_str()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok());
        let age = match first {
            Some(f) if count > 1 => format!(
                "{age} (x{count} over {})",
                human_duration(now.signed_duration_since(f))
            ),
            _ => age,
        };
        let from = e["source"]["component"]
            .as_str()
            .or(e["reportingComponent"].as_str())
            .unwrap_or_default();
        rows.push(vec![
            e["type"].as_str().unwrap_or_default().to_string(),
            e["reason"].as_str().unwrap_or_default().to_string(),
            age,
            from.to_string(),
            e["message"].as_str().unwrap_or_default().trim().to_string(),
        ]);
    }
    let mut out = "Events:\n".to_string();
    out.push_str(&align(&rows, "  ", 2));
    out
}

/// Columns padded to the widest cell plus `gap`, each line prefixed.
pub fn align(rows: &[Vec<String>], prefix: &str, gap: usize) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = prefix.to_string();
        for (i, cell) in row.iter().enumerate() {
            line.push_str(cell);
            if i + 1 < row.len() {
                line.extend(std::iter::repeat_n(
                    ' ',
                    widths[i] - cell.chars().count() + gap,
                ));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// `Key:  value` lines with nesting, aligned per indentation level.
#[derive(Default)]
pub struct Fields {
    lines: Vec<(usize, String, Option<String>)>,
}

impl Fields {
    /// One `key: value` line at `depth`.
    pub fn field(&mut self, depth: usize, key: &str, value: &str) {
        self.lines
            .push((depth, key.to_string(), Some(value.to_string())));
    }

    /// A heading (`Containers:`) whose children follow at `depth + 1`.
    pub fn heading(&mut self, depth: usize, key: &str) {
        self.lines.push((depth, key.to_string(), None));
    }

    /// A value spanning lines (labels, annotations), continued aligned.
    pub fn multi(&mut self, depth: usize, key: &str, value: &str) {
        let mut lines = value.lines();
        self.field(depth, key, lines.next().unwrap_or("<none>"));
        for rest in lines {
            self.lines
                .push((depth, String::new(), Some(rest.to_string())));
        }
    }

    /// A raw JSON value rendered as nested fields.
    pub fn tree(&mut self, depth: usize, key: &str, value: &Value) {
        match value {
            Value::Object(map) if !map.is_empty() => {
                self.heading(depth, key);
                for (k, v) in map {
                    self.tree(depth + 1, k, v);
                }
            }
            Value::Array(items) if !items.is_empty() && items.iter().any(Value::is_object) => {
                self.heading(depth, key);
                for item in items {
                    self.tree(depth + 1, "-", item);
                }
            }
            Value::Array(items) => {
                let text: Vec<String> = items.iter().map(super::table::cell_text).collect();
                self.field(depth, key, &text.join(", "));
            }
            Value::Object(_) => self.field(depth, key, "<none>"),
            Value::String(text) if text.contains('\n') => self.multi(depth, key, text.trim_end()),
            other => self.field(depth, key, &super::table::cell_text(other)),
        }
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        for (i, (depth, key, value)) in self.lines.iter().enumerate() {
            let indent = "  ".repeat(*depth);
            match value {
                None => out.push_str(&format!("{indent}{key}:\n")),
                Some(v) => {
                    let label = if key.is_empty() {
                        String::new()
                    } else {
                        format!("{key}:")
                    };
                    let pad = self.block_width(i) + 2;
                    out.push_str(&format!("{indent}{label:<pad$}{v}\n"));
                }
            }
        }
        out
    }

    /// The widest `key:` among the siblings of line `i` (same depth, not
    /// separated by a shallower line), so each block aligns on its own.
    fn block_width(&self, i: usize) -> usize {
        let depth = self.lines[i].0;
        let in_block = |l: &&(usize, String, Option<String>)| l.0 >= depth;
        let before = self.lines[..i].iter().rev().take_while(in_block);
        let after = self.lines[i..].iter().take_while(in_block);
        before
            .chain(after)
            .filter(|(d, k, v)| *d == depth && v.is_some() && !k.is_empty())
            .map(|(_, k, _)| k.chars().count() + 1)
            .max()
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn now() -> chrono::DateTime<chrono::Utc> {
        chrono::DateTime::parse_from_rfc3339("2024-01-01T00:01:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc)
    }

    #[test]
    fn events_section_like_kubectl() {
        let events = vec![json!({
            "type": "Warning", "reason": "BackOff", "count": 3,
            "firstTimestamp": "2024-01-01T00:00:00Z", "lastTimestamp": "2024-01-01T00:00:50Z",
            "source": {"component": "kubelet"}, "message": "Back-off restarting failed container"
        })];
        let want = [
            "Events:",
            "  Type     Reason   Age                From     Message",
            "  ----     ------   ----               ----     -------",
            "  Warning  BackOff  10s (x3 over 60s)  kubelet  Back-off restarting failed container",
        ];
        assert_eq!(events_text(&events, now()), want.join("\n") + "\n");
        assert_eq!(events_text(&[], now()), "Events:  <none>\n");
    }

    #[test]
    fn generic_objects_show_metadata_and_data() {
        let info = ResourceInfo {
            group: String::new(),
            version: "v1".into(),
            kind: "ConfigMap".into(),
            plural: "configmaps".into(),
            singular: "configmap".into(),
            short_names: vec![],
            namespaced: true,
            verbs: vec![],
            subresources: vec![],
            categories: vec![],
            preferred: true,
        };
        let cm = json!({"metadata": {"name": "c", "namespace": "default",
                        "labels": {"a": "1", "b": "2"}, "creationTimestamp": "2024-01-01T00:00:00Z"},
                        "data": {"k": "v"}});
        let text = describe_text(&info, &cm, &[], now());
        assert_eq!(
            text,
            "Name:               c\nNamespace:          default\nLabels:             a=1\n                    b=2\nAnnotations:        <none>\nCreationTimestamp:  2024-01-01T00:00:00Z\nData:\n  k:  v\nEvents:  <none>\n"
        );
    }
}
