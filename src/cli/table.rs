//! Text output of `get` and friends, without API calls: the server's
//! `meta.k8s.io/v1` Table turned into kubectl-aligned columns, a NAME/AGE
//! fallback for servers without Table support, `-o` parsing, and ages in
//! kubectl's short human form (`5s`, `3m20s`, `2d4h`).

use std::time::Duration;

use serde_json::Value;

/// The `-o` choices of `get`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    Table,
    Wide,
    Yaml,
    Json,
    Name,
}

impl OutputFormat {
    pub fn parse(o: Option<&str>) -> anyhow::Result<OutputFormat> {
        Ok(match o {
            None | Some("") => OutputFormat::Table,
            Some("wide") => OutputFormat::Wide,
            Some("yaml") => OutputFormat::Yaml,
            Some("json") => OutputFormat::Json,
            Some("name") => OutputFormat::Name,
            Some(other) => anyhow::bail!(
                "error: unable to match a printer suitable for the output format \"{other}\", allowed formats are: json,name,wide,yaml"
            ),
        })
    }
}

/// Rows ready to print: a header and string cells.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TextTable {
    pub headers: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

/// How to turn a server Table into a [`TextTable`].
#[derive(Debug, Clone, Copy, Default)]
pub struct TableOptions {
    /// Include columns with priority > 0 (`-o wide`).
    pub wide: bool,
    /// Prepend a NAMESPACE column (`-A`).
    pub with_namespace: bool,
    /// Append a LABELS column (`--show-labels`).
    pub show_labels: bool,
}

/// Whether `v` is a `meta.k8s.io` Table.
pub fn is_table(v: &Value) -> bool {
    v["kind"] == "Table" && v["columnDefinitions"].is_array()
}

/// The server's Table as text. `columns` may come from an earlier Table
/// (watch events need not repeat the column definitions).
pub fn from_server_table(
    table: &Value,
    columns: &[Value],
    opts: &TableOptions,
    prefix: Option<&str>,
) -> TextTable {
    let shown: Vec<usize> = columns
        .iter()
        .enumerate()
        .filter(|(_, c)| opts.wide || c["priority"].as_i64().unwrap_or(0) == 0)
        .map(|(i, _)| i)
        .collect();
    let mut headers: Vec<String> = shown
        .iter()
        .map(|&i| columns[i]["name"].as_str().unwrap_or("").to_uppercase())
        .collect();
    decorate_headers(&mut headers, opts);
    let rows = table["rows"]
        .as_array()
        .map(|rows| rows.as_slice())
        .unwrap_or_default()
        .iter()
        .map(|row| {
            let cells = row["cells"]
                .as_array()
                .map(|c| c.as_slice())
                .unwrap_or_default();
            let mut out: Vec<String> = shown
                .iter()
                .map(|&i| cells.get(i).map(cell_text).unwrap_or_default())
                .collect();
            if let (Some(prefix), Some(first)) = (prefix, out.first_mut()) {
                *first = format!("{prefix}/{first}");
            }
            decorate_row(&mut out, &row["object"], opts);
            out
        })
        .collect();
    TextTable { headers, rows }
}

/// NAME and AGE for plain objects, when the server sends no Table.
pub fn from_objects(
    items: &[Value],
    opts: &TableOptions,
    prefix: Option<&str>,
    now: chrono::DateTime<chrono::Utc>,
) -> TextTable {
    let mut headers = vec!["NAME".to_string(), "AGE".to_string()];
    decorate_headers(&mut headers, opts);
    let rows = items
        .iter()
        .map(|item| {
            let name = item["metadata"]["name"].as_str().unwrap_or_default();
            let name = match prefix {
                Some(p) => format!("{p}/{name}"),
                None => name.to_string(),
            };
            let mut row = vec![name, age_of(item, now)];
            decorate_row(&mut row, item, opts);
            row
        })
        .collect();
    TextTable { headers, rows }
}

fn decorate_headers(headers: &mut Vec<String>, opts: &TableOptions) {
    if opts.with_namespace {
        headers.insert(0, "NAMESPACE".to_string());
    }
    if opts.show_labels {
        headers.push("LABELS".to_string());
    }
}

fn decorate_row(row: &mut Vec<String>, object: &Value, opts: &TableOptions) {
    if opts.with_namespace {
        let ns = object["metadata"]["namespace"].as_str().unwrap_or_default();
        row.insert(0, ns.to_string());
    }
    if opts.show_labels {
        row.push(labels_text(&object["metadata"]["labels"]));
    }
}

/// `a=1,b=2`, or `<none>`.
pub fn labels_text(labels: &Value) -> String {
    match labels.as_object() {
        Some(map) if !map.is_empty() => map
            .iter()
            .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
            .collect::<Vec<_>>()
            .join(","),
        _ => "<none>".to_string(),
    }
}

/// One Table cell as kubectl prints it.
pub fn cell_text(cell: &Value) -> String {
    match cell {
        Value::Null => "<none>".to_string(),
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        other => other.to_string(),
    }
}

/// The age of an object from its creationTimestamp (`<unknown>` without).
pub fn age_of(object: &Value, now: chrono::DateTime<chrono::Utc>) -> String {
    object["metadata"]["creationTimestamp"]
        .as_str()
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .map(|t| human_duration(now.signed_duration_since(t)))
        .unwrap_or_else(|| "<unknown>".to_string())
}

/// kubectl's short human duration (`k8s.io/apimachinery/pkg/util/duration`).
pub fn human_duration(d: chrono::TimeDelta) -> String {
    let secs = d.num_seconds();
    if secs < -1 {
        return "<invalid>".to_string();
    }
    let d = Duration::from_secs(secs.max(0) as u64);
    let s = d.as_secs();
    let (m, h) = (s / 60, s / 3600);
    let days = h / 24;
    let years = days / 365;
    if s < 120 {
        format!("{s}s")
    } else if m < 10 {
        if s.is_multiple_of(60) {
            format!("{m}m")
        } else {
            format!("{m}m{}s", s % 60)
        }
    } else if m < 180 {
        format!("{m}m")
    } else if h < 8 {
        if m.is_multiple_of(60) {
            format!("{h}h")
        } else {
            format!("{h}h{}m", m % 60)
        }
    } else if h < 48 {
        format!("{h}h")
    } else if h < 24 * 8 {
        if h.is_multiple_of(24) {
            format!("{days}d")
        } else {
            format!("{days}d{}h", h % 24)
        }
    } else if days < 365 * 2 {
        format!("{days}d")
    } else if days < 365 * 8 {
        let rest = days % 365;
        if rest == 0 {
            format!("{years}y")
        } else {
            format!("{years}y{rest}d")
        }
    } else {
        format!("{years}y")
    }
}

/// Column widths as kubectl's tabwriter computes them (cell + 3 spaces of
/// padding, at least 6); the last column is not padded.
pub fn column_widths(table: &TextTable, with_header: bool) -> Vec<usize> {
    let n = table.headers.len();
    let mut widths = vec![0usize; n];
    let header_rows = with_header.then_some(&table.headers);
    for row in header_rows.into_iter().chain(table.rows.iter()) {
        for (i, cell) in row.iter().enumerate().take(n) {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    widths.iter().map(|w| (w + 3).max(6)).collect()
}

/// Renders rows (and the header when asked) with at least `min_widths`.
pub fn render(table: &TextTable, with_header: bool, min_widths: &[usize]) -> String {
    let mut widths = column_widths(table, with_header);
    for (w, min) in widths.iter_mut().zip(min_widths) {
        *w = (*w).max(*min);
    }
    let mut out = String::new();
    let header_rows = with_header.then_some(&table.headers);
    for row in header_rows.into_iter().chain(table.rows.iter()) {
        let last = row.len().saturating_sub(1);
        for (i, cell) in row.iter().enumerate() {
            out.push_str(cell);
            if i < last {
                let pad = widths.get(i).copied().unwrap_or(0);
                let used = cell.chars().count();
                out.extend(std::iter::repeat_n(' ', pad.saturating_sub(used).max(1)));
            }
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pods_table() -> Value {
        json!({
            "kind": "Table", "apiVersion": "meta.k8s.io/v1",
            "columnDefinitions": [
                {"name": "Name", "type": "string", "priority": 0},
                {"name": "Ready", "type": "string", "priority": 0},
                {"name": "Status", "type": "string", "priority": 0},
                {"name": "Restarts", "type": "integer", "priority": 0},
                {"name": "Age", "type": "string", "priority": 0},
                {"name": "IP", "type": "string", "priority": 1},
                {"name": "Node", "type": "string", "priority": 1}
            ],
            "rows": [
                {"cells": ["web-1", "1/1", "Running", 0, "5s", "10.0.0.2", "n1"],
                 "object": {"metadata": {"name": "web-1", "namespace": "default", "labels": {"app": "web"}}}},
                {"cells": ["crasher-abc", "0/1", "CrashLoopBackOff", 12, "3m", null, "n1"],
                 "object": {"metadata": {"name": "crasher-abc", "namespace": "apps"}}}
            ]
        })
    }

    #[test]
    fn renders_like_kubectl() {
        let t = pods_table();
        let cols = t["columnDefinitions"].as_array().unwrap().clone();
        let text = from_server_table(&t, &cols, &TableOptions::default(), None);
        assert_eq!(
            render(&text, true, &[]),
            "NAME          READY   STATUS             RESTARTS   AGE\n\
             web-1         1/1     Running            0          5s\n\
             crasher-abc   0/1     CrashLoopBackOff   12         3m\n"
        );
    }

    #[test]
    fn wide_namespace_labels_and_prefix() {
        let t = pods_table();
        let cols = t["columnDefinitions"].as_array().unwrap().clone();
        let opts = TableOptions {
            wide: true,
            with_namespace: true,
            show_labels: true,
        };
        let text = from_server_table(&t, &cols, &opts, Some("pod"));
        assert_eq!(
            text.headers,
            [
                "NAMESPACE",
                "NAME",
                "READY",
                "STATUS",
                "RESTARTS",
                "AGE",
                "IP",
                "NODE",
                "LABELS"
            ]
        );
        assert_eq!(text.rows[0][0], "default");
        assert_eq!(text.rows[0][1], "pod/web-1");
        assert_eq!(text.rows[0][8], "app=web");
        assert_eq!(text.rows[1][6], "<none>");
        assert_eq!(text.rows[1][8], "<none>");
    }

    #[test]
    fn min_widths_keep_watch_rows_aligned() {
        let text = TextTable {
            headers: vec!["NAME".into(), "AGE".into()],
            rows: vec![vec!["a".into(), "1s".into()]],
        };
        assert_eq!(render(&text, false, &[10, 0]), "a         1s\n");
        assert_eq!(column_widths(&text, true), [7, 6]);
    }

    #[test]
    fn fallback_table_from_objects() {
        let now = chrono::DateTime::parse_from_rfc3339("2024-01-01T00:10:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        let items =
            vec![json!({"metadata": {"name": "x", "creationTimestamp": "2024-01-01T00:00:00Z"}})];
        let text = from_objects(
            &items,
            &TableOptions::default(),
            Some("widget.example.com"),
            now,
        );
        assert_eq!(text.headers, ["NAME", "AGE"]);
        assert_eq!(text.rows, [["widget.example.com/x", "10m"]]);
    }

    #[test]
    fn human_durations() {
        let cases = [
            (-5, "<invalid>"),
            (0, "0s"),
            (119, "119s"),
            (120, "2m"),
            (200, "3m20s"),
            (1800, "30m"),
            (3 * 3600 + 60 * 5, "3h5m"),
            (5 * 3600, "5h"),
            (30 * 3600, "30h"),
            (3 * 86400 + 4 * 3600, "3d4h"),
            (10 * 86400, "10d"),
            (3 * 365 * 86400 + 86400, "3y1d"),
            (9 * 365 * 86400, "9y"),
        ];
        for (secs, want) in cases {
            assert_eq!(
                human_duration(chrono::TimeDelta::seconds(secs)),
                want,
                "{secs}"
            );
        }
    }

    #[test]
    fn output_formats() {
        assert_eq!(OutputFormat::parse(None).unwrap(), OutputFormat::Table);
        assert_eq!(
            OutputFormat::parse(Some("yaml")).unwrap(),
            OutputFormat::Yaml
        );
        assert_eq!(
            OutputFormat::parse(Some("name")).unwrap(),
            OutputFormat::Name
        );
        assert!(OutputFormat::parse(Some("xml")).is_err());
        assert_eq!(cell_text(&json!(1.5)), "1.5");
        assert_eq!(labels_text(&json!({"a": "1", "b": "2"})), "a=1,b=2");
    }
}
