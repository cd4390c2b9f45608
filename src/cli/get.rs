//! `skiff get`: tables from the server's Table output (like kubectl),
//! `-o yaml|json|wide|name`, `-A`, `-l`, `--field-selector`, `-w`.

use futures::StreamExt;
use kube::api::{ListParams, WatchParams};
use serde_json::{Value, json};

use super::context::Ctx;
use super::discovery::ResourceInfo;
use super::fetch::{self, Fetched};
use super::table::{self, OutputFormat, TableOptions, TextTable};
use super::target::parse_targets;

#[derive(Debug, clap::Args)]
pub struct GetArgs {
    /// TYPE[,TYPE...] [NAME...] or TYPE/NAME...
    #[arg(required = true)]
    pub resources: Vec<String>,
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
    /// List across all namespaces.
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
    /// Label selector, e.g. `app=web,tier!=db`.
    #[arg(short = 'l', long)]
    pub selector: Option<String>,
    /// Field selector, e.g. `status.phase=Running`.
    #[arg(long)]
    pub field_selector: Option<String>,
    /// Output format: wide, yaml, json or name.
    #[arg(short = 'o', long)]
    pub output: Option<String>,
    /// After listing, watch for changes.
    #[arg(short = 'w', long)]
    pub watch: bool,
    /// Add a LABELS column.
    #[arg(long)]
    pub show_labels: bool,
}

pub async fn run(ctx: &Ctx, args: GetArgs) -> anyhow::Result<()> {
    let format = OutputFormat::parse(args.output.as_deref())?;
    let mut targets = Vec::new();
    for t in parse_targets(&args.resources)? {
        if t.resource == "all" {
            let all = ctx.discovery().await?.category("all");
            targets.extend(all.into_iter().map(|info| (info.clone(), t.names.clone())));
            continue;
        }
        targets.push((ctx.resolve(&t.resource).await?, t.names));
    }
    let namespace = (!args.all_namespaces).then(|| ctx.namespace(args.namespace.as_deref()));
    let lp = list_params(&args);
    let opts = TableOptions {
        wide: format == OutputFormat::Wide,
        with_namespace: args.all_namespaces,
        show_labels: args.show_labels,
    };
    if args.watch {
        let [(info, names)] = targets.as_slice() else {
            anyhow::bail!("error: you may only specify a single resource type when watching");
        };
        return watch(ctx, &args, info, names, namespace.as_deref(), format, &opts).await;
    }

    let multi = targets.len() > 1;
    let mut printed_any = false;
    let mut objects: Vec<Value> = Vec::new();
    let mut single_object = false;
    for (info, names) in &targets {
        let fetched = fetch::fetch(
            ctx,
            info,
            namespace.as_deref(),
            names,
            &lp,
            wants_table(format),
        )
        .await?;
        let prefix = multi.then(|| info.kind_ref());
        match format {
            OutputFormat::Table | OutputFormat::Wide => {
                if fetched.is_empty() {
                    continue;
                }
                let text = to_text(&fetched, None, &opts, prefix.as_deref());
                if printed_any {
                    println!();
                }
                print!("{}", table::render(&text, true, &[]));
                printed_any = true;
            }
            _ => {
                // Only text output asks for Tables, so these are objects.
                let items = match fetched {
                    Fetched::Objects { items, .. } => items,
                    Fetched::Table(_) => Vec::new(),
                };
                single_object = !multi && names.len() == 1 && items.len() == 1;
                objects.extend(items);
            }
        }
    }
    match format {
        OutputFormat::Table | OutputFormat::Wide => {
            let named = targets.iter().any(|(_, n)| !n.is_empty());
            if !printed_any && !named {
                eprintln!("{}", no_resources(namespace.as_deref(), &targets));
            }
        }
        OutputFormat::Name => {
            for o in &objects {
                println!("{}", name_line(o, &targets));
            }
        }
        OutputFormat::Yaml | OutputFormat::Json => {
            let doc = if single_object {
                objects.into_iter().next().unwrap_or(Value::Null)
            } else {
                list_document(objects)
            };
            print_document(&doc, format)?;
        }
    }
    Ok(())
}

/// Only text output asks for Tables; other formats get plain objects.
fn wants_table(format: OutputFormat) -> bool {
    matches!(format, OutputFormat::Table | OutputFormat::Wide)
}

fn list_params(args: &GetArgs) -> ListParams {
    let mut lp = ListParams::default();
    if let Some(l) = &args.selector {
        lp = lp.labels(l);
    }
    if let Some(f) = &args.field_selector {
        lp = lp.fields(f);
    }
    lp
}

fn to_text(
    fetched: &Fetched,
    columns: Option<&[Value]>,
    opts: &TableOptions,
    prefix: Option<&str>,
) -> TextTable {
    match fetched {
        Fetched::Table(t) => {
            let own = t["columnDefinitions"]
                .as_array()
                .map(|c| c.as_slice())
                .unwrap_or_default();
            let cols = columns
                .filter(|c| !c.is_empty() && own.is_empty())
                .unwrap_or(own);
            table::from_server_table(t, cols, opts, prefix)
        }
        Fetched::Objects { items, .. } => {
            table::from_objects(items, opts, prefix, chrono::Utc::now())
        }
    }
}

fn no_resources(namespace: Option<&str>, targets: &[(ResourceInfo, Vec<String>)]) -> String {
    let namespaced = targets.iter().any(|(i, _)| i.namespaced);
    match namespace {
        Some(ns) if namespaced => format!("No resources found in {ns} namespace."),
        _ => "No resources found".to_string(),
    }
}

fn name_line(object: &Value, targets: &[(ResourceInfo, Vec<String>)]) -> String {
    let kind = object["kind"].as_str().unwrap_or_default();
    let name = object["metadata"]["name"].as_str().unwrap_or_default();
    let kind_ref = targets
        .iter()
        .find(|(i, _)| i.kind == kind)
        .map(|(i, _)| i.kind_ref())
        .unwrap_or_else(|| kind.to_lowercase());
    format!("{kind_ref}/{name}")
}

fn list_document(items: Vec<Value>) -> Value {
    json!({"apiVersion": "v1", "items": items, "kind": "List", "metadata": {"resourceVersion": ""}})
}

/// Prints one object (or List) as YAML or JSON, without managedFields
/// (as kubectl does by default).
pub fn print_document(doc: &Value, format: OutputFormat) -> anyhow::Result<()> {
    let mut doc = doc.clone();
    hide_managed_fields(&mut doc);
    match format {
        OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&doc)?),
        _ => print!("{}", serde_yaml::to_string(&doc)?),
    }
    Ok(())
}

fn hide_managed_fields(doc: &mut Value) {
    if let Some(meta) = doc["metadata"].as_object_mut() {
        meta.remove("managedFields");
    }
    if let Some(items) = doc["items"].as_array_mut() {
        items.iter_mut().for_each(hide_managed_fields);
    }
}

async fn watch(
    ctx: &Ctx,
    args: &GetArgs,
    info: &ResourceInfo,
    names: &[String],
    namespace: Option<&str>,
    format: OutputFormat,
    opts: &TableOptions,
) -> anyhow::Result<()> {
    let mut lp = list_params(args);
    let mut wp = WatchParams::default();
    if let Some(l) = &args.selector {
        wp = wp.labels(l);
    }
    let mut fields: Vec<String> = args.field_selector.iter().cloned().collect();
    if let [name] = names {
        fields.push(format!("metadata.name={name}"));
    } else if names.len() > 1 {
        anyhow::bail!(
            "error: watch is only supported on individual resources and resource collections"
        );
    }
    if !fields.is_empty() {
        wp = wp.fields(&fields.join(","));
        lp = lp.fields(&fields.join(","));
    }
    let table_mode = wants_table(format);
    let mut columns: Vec<Value> = Vec::new();
    let mut widths: Vec<usize> = Vec::new();
    let mut header_done = false;
    let mut print_rows = |fetched: &Fetched, columns: &mut Vec<Value>| -> anyhow::Result<()> {
        if let Fetched::Table(t) = fetched
            && let Some(c) = t["columnDefinitions"].as_array().filter(|c| !c.is_empty())
        {
            *columns = c.clone();
        }
        if table_mode {
            let text = to_text(fetched, Some(columns), opts, None);
            if text.rows.is_empty() {
                return Ok(());
            }
            if widths.is_empty() {
                widths = table::column_widths(&text, true);
            }
            print!("{}", table::render(&text, !header_done, &widths));
            header_done = true;
        } else if let Fetched::Objects { items, .. } = fetched {
            for o in items {
                match format {
                    OutputFormat::Name => println!("{}", name_line(o, &[(info.clone(), vec![])])),
                    OutputFormat::Yaml => {
                        println!("---");
                        print_document(o, format)?;
                    }
                    _ => print_document(o, format)?,
                }
            }
        }
        Ok(())
    };

    let first = fetch::fetch(ctx, info, namespace, &[], &lp, table_mode).await?;
    print_rows(&first, &mut columns)?;
    let mut rv = first.resource_version();
    loop {
        let mut events = Box::pin(fetch::watch(ctx, info, namespace, &wp, &rv, table_mode).await?);
        while let Some(event) = events.next().await {
            let event = event?;
            match event.kind.as_str() {
                "ERROR" => {
                    if event.object["code"] == 410 {
                        // Too old: list again and carry on from there.
                        let fresh =
                            fetch::fetch(ctx, info, namespace, &[], &lp, table_mode).await?;
                        rv = fresh.resource_version();
                        print_rows(&fresh, &mut columns)?;
                        break;
                    }
                    let status: kube::core::Status = serde_json::from_value(event.object)?;
                    return Err(kube::Error::Api(status.boxed()).into());
                }
                "BOOKMARK" => {
                    if let Some(v) = event.object["metadata"]["resourceVersion"].as_str() {
                        rv = v.to_string();
                    }
                }
                _ => {
                    if let Some(v) = event_resource_version(&event.object) {
                        rv = v;
                    }
                    let fetched =
                        if table::is_table(&event.object) || event.object["kind"] == "Table" {
                            Fetched::Table(event.object)
                        } else {
                            Fetched::Objects {
                                items: vec![fetch::with_type_meta(event.object, info)],
                                resource_version: String::new(),
                            }
                        };
                    print_rows(&fetched, &mut columns)?;
                }
            }
        }
    }
}

/// The resourceVersion carried by a watch event's object or Table row.
fn event_resource_version(object: &Value) -> Option<String> {
    let direct = object["metadata"]["resourceVersion"].as_str();
    let row = object["rows"][0]["object"]["metadata"]["resourceVersion"].as_str();
    row.or(direct).filter(|v| !v.is_empty()).map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_versions_come_from_rows_or_objects() {
        let row = json!({"kind": "Table", "metadata": {"resourceVersion": "1"},
                         "rows": [{"object": {"metadata": {"resourceVersion": "9"}}}]});
        assert_eq!(event_resource_version(&row).as_deref(), Some("9"));
        let obj = json!({"metadata": {"resourceVersion": "4"}});
        assert_eq!(event_resource_version(&obj).as_deref(), Some("4"));
        assert_eq!(event_resource_version(&json!({})), None);
    }

    #[test]
    fn managed_fields_are_hidden() {
        let mut doc = list_document(vec![
            json!({"metadata": {"name": "a", "managedFields": []}}),
        ]);
        hide_managed_fields(&mut doc);
        assert_eq!(doc["items"][0]["metadata"], json!({"name": "a"}));
    }

    #[test]
    fn lists_print_as_kubectl_lists() {
        let doc = list_document(vec![json!({"kind": "Pod", "metadata": {"name": "a"}})]);
        assert_eq!(
            serde_yaml::to_string(&doc).unwrap(),
            "apiVersion: v1\nitems:\n- kind: Pod\n  metadata:\n    name: a\nkind: List\nmetadata:\n  resourceVersion: ''\n"
        );
    }
}
