//! `GET /containerLogs/{ns}/{pod}/{container}`: a container's log with
//! kubectl's options (`follow`, `tailLines`, `sinceSeconds`, `sinceTime`,
//! `timestamps`, `limitBytes`, `previous`), read from the node's log files.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;

use super::{find_pod, status_error};
use crate::logs::{LogOptions, follow_logs, read_logs};
use crate::pods::context::NodeContext;

/// Parses kubectl's log query into options; a bad value is a 400.
fn log_options(query: &HashMap<String, String>) -> Result<LogOptions, String> {
    let number = |key: &str| -> Result<Option<i64>, String> {
        query
            .get(key)
            .map(|v| {
                v.parse::<i64>()
                    .map_err(|_| format!("{key}: invalid value \"{v}\""))
            })
            .transpose()
    };
    let tail_lines = number("tailLines")?.filter(|n| *n >= 0).map(|n| n as usize);
    let limit_bytes = match number("limitBytes")? {
        Some(n) if n <= 0 => return Err("limitBytes: must be greater than 0".into()),
        other => other.map(|n| n as usize),
    };
    let since = match (number("sinceSeconds")?, query.get("sinceTime")) {
        (Some(_), Some(_)) => {
            return Err("at most one of sinceTime or sinceSeconds may be specified".into());
        }
        (Some(s), None) if s <= 0 => return Err("sinceSeconds: must be greater than 0".into()),
        (Some(s), None) => Some(Utc::now() - chrono::Duration::seconds(s)),
        (None, Some(t)) => Some(
            DateTime::parse_from_rfc3339(t)
                .map_err(|_| format!("sinceTime: invalid time \"{t}\""))?
                .with_timezone(&Utc),
        ),
        (None, None) => None,
    };
    Ok(LogOptions {
        tail_lines,
        since,
        timestamps: flag(query, "timestamps"),
        limit_bytes,
    })
}

fn flag(query: &HashMap<String, String>, key: &str) -> bool {
    query
        .get(key)
        .is_some_and(|v| v.is_empty() || v == "true" || v == "1")
}

pub async fn container_logs(
    State(ctx): State<Arc<NodeContext>>,
    Path((ns, pod, container)): Path<(String, String, String)>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let view = match find_pod(&ctx, &ns, &pod) {
        Ok(view) => view,
        Err(response) => return response,
    };
    let Some(c) = view.containers.get(&container) else {
        return status_error(
            StatusCode::BAD_REQUEST,
            format!("container {container} is not valid for pod {pod}"),
        );
    };
    let opts = match log_options(&query) {
        Ok(opts) => opts,
        Err(message) => return status_error(StatusCode::BAD_REQUEST, message),
    };
    let previous = flag(&query, "previous");
    let path = if previous {
        c.previous_log_path.clone()
    } else {
        c.log_path.clone()
    };
    let Some(path) = path else {
        let message = if previous {
            format!("previous terminated container \"{container}\" in pod \"{pod}\" not found")
        } else {
            format!(
                "container \"{container}\" in pod \"{pod}\" is waiting to start: ContainerCreating"
            )
        };
        return status_error(StatusCode::BAD_REQUEST, message);
    };
    if flag(&query, "follow") && !previous {
        match follow_logs(path, opts, ctx.logs.clone()) {
            Ok(rx) => {
                let stream = ReceiverStream::new(rx).map(Ok::<_, std::io::Error>);
                plain(Body::from_stream(stream))
            }
            Err(e) => status_error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        }
    } else {
        match tokio::task::spawn_blocking(move || read_logs(&path, &opts)).await {
            Ok(Ok(bytes)) => plain(Body::from(bytes)),
            Ok(Err(e)) => status_error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
            Err(e) => status_error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        }
    }
}

fn plain(body: Body) -> Response {
    let mut response = body.into_response();
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn parses_kubectl_log_options() {
        let opts = log_options(&query(&[("tailLines", "5"), ("timestamps", "true")])).unwrap();
        assert_eq!(opts.tail_lines, Some(5));
        assert!(opts.timestamps);
        let opts = log_options(&query(&[("sinceSeconds", "60")])).unwrap();
        assert!(opts.since.unwrap() < Utc::now());
        assert!(log_options(&query(&[("tailLines", "x")])).is_err());
        assert!(
            log_options(&query(&[
                ("sinceSeconds", "1"),
                ("sinceTime", "2024-01-01T00:00:00Z")
            ]))
            .is_err()
        );
        assert!(log_options(&query(&[("limitBytes", "0")])).is_err());
    }
}
