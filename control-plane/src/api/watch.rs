//! Watch streams: newline-delimited JSON `{"type","object"}` events from a
//! store watch, filtered by label/field selectors (objects moving in or out
//! of the selection become ADDED/DELETED, as kube-apiserver's cacher does),
//! with BOOKMARKs, timeoutSeconds, initial events, resume from a
//! resourceVersion and an `ERROR` 410 Expired event when it was compacted.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use http::{HeaderValue, StatusCode, header};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tracing::Instrument as _;

use super::decoded::{DecodedObject, EventType, encode_line};
use super::error::ApiError;
use super::handlers::Ctx;
use super::handlers::list_objects;
use super::render::{self, Render};
use super::selectors::{FieldSelector, LabelSelector};
use super::{objects, table};
use crate::store::{KeyValue, Revision, StoreError, WatchEvent};

/// Default watch duration when the client gives no timeoutSeconds.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1800);
/// How often a bookmark is sent when the client allows them.
const BOOKMARK_EVERY: Duration = Duration::from_secs(5);

/// What a watcher wants to see.
struct Filter {
    labels: LabelSelector,
    fields: FieldSelector,
    name: Option<String>,
}

impl Filter {
    /// Whether every object passes (no selector, no name).
    fn is_everything(&self) -> bool {
        self.labels.is_empty() && self.fields.is_empty() && self.name.is_none()
    }

    fn matches(&self, obj: &Value) -> bool {
        self.labels.matches(obj)
            && self.fields.matches(obj)
            && self
                .name
                .as_deref()
                .is_none_or(|n| super::meta::name(obj) == Some(n))
    }
}

/// One event as a stream line, the object rendered as JSON, a Table row or
/// its metadata (bookmarks and errors always as they are).
fn line(kind: &str, obj: &Value, ctx: &Ctx, render: Render) -> Bytes {
    if kind == "BOOKMARK" || kind == "ERROR" {
        return encode_line(kind, obj);
    }
    match render {
        Render::Table => {
            let table = table::table_for(ctx.info, std::slice::from_ref(obj), &ctx.query, None)
                .unwrap_or_else(|e| e.to_status());
            encode_line(kind, &table)
        }
        Render::Metadata => encode_line(kind, &render::metadata_of(obj)),
        Render::Object => encode_line(kind, obj),
    }
}

/// A store event's line: shared with every other watcher of the same rendering.
fn event_line(event: EventType, obj: &DecodedObject, ctx: &Ctx, render: Render) -> Bytes {
    match render {
        Render::Table => line(event.as_str(), &obj.object, ctx, render),
        Render::Metadata => obj.metadata_line(event),
        Render::Object => obj.line(event),
    }
}

fn bookmark(ctx: &Ctx, revision: Revision, initial_end: bool) -> Value {
    let mut meta = json!({ "resourceVersion": revision.to_string() });
    if initial_end {
        meta["annotations"] = json!({ "k8s.io/initial-events-end": "true" });
    }
    json!({ "kind": ctx.info.kind, "apiVersion": ctx.info.api_version(), "metadata": meta })
}

fn expired(message: String) -> Value {
    ApiError::Gone(message).to_status()
}

/// Translates one store event into the watch event this watcher should see.
/// Decoding goes through the shared memo, so N watchers of one write decode
/// it once; the previous value is decoded only when a selector needs it.
fn translate(
    ctx: &Ctx,
    filter: &Filter,
    event: &WatchEvent,
) -> Result<Option<(EventType, Arc<DecodedObject>)>, ApiError> {
    let store = &ctx.state.store;
    let decode = |kv: &KeyValue, shown_at| objects::decode_shared(store, ctx.info, kv, shown_at);
    match event {
        WatchEvent::Put { kv, prev } => {
            let cur = decode(kv, kv.mod_revision)?;
            if filter.is_everything() {
                let kind = if prev.is_some() {
                    EventType::Modified
                } else {
                    EventType::Added
                };
                return Ok(Some((kind, cur)));
            }
            let cur_ok = filter.matches(&cur.object);
            // The previous value is matched as stored (a selector does not
            // look at resourceVersion), so it is shared with the other
            // readers of that write; only an object leaving the filter is
            // shown, restamped, at this revision.
            let old_ok = match prev {
                Some(p) => filter.matches(&decode(p, p.mod_revision)?.object),
                None => false,
            };
            Ok(match (old_ok, cur_ok) {
                (true, true) => Some((EventType::Modified, cur)),
                (false, true) => Some((EventType::Added, cur)),
                (true, false) => match prev {
                    Some(p) => Some((EventType::Deleted, decode(p, kv.mod_revision)?)),
                    None => None,
                },
                (false, false) => None,
            })
        }
        WatchEvent::Delete { prev, revision } => {
            let old = decode(prev, *revision)?;
            Ok(filter
                .matches(&old.object)
                .then_some((EventType::Deleted, old)))
        }
        WatchEvent::Progress { .. } => Ok(None),
    }
}

/// Serves a watch request as a chunked stream.
pub async fn serve(ctx: Ctx) -> Result<Response, ApiError> {
    let filter = Filter {
        labels: LabelSelector::parse(ctx.query.get("labelSelector").unwrap_or(""))?,
        fields: FieldSelector::parse(ctx.query.get("fieldSelector").unwrap_or(""))?,
        name: ctx.name.clone(),
    };
    let timeout = ctx
        .query
        .int("timeoutSeconds")?
        .filter(|t| *t > 0)
        .map(|t| Duration::from_secs(t as u64));
    let timeout = timeout.unwrap_or(DEFAULT_TIMEOUT);
    let bookmarks = ctx.query.flag("allowWatchBookmarks");
    let render = Render::from_accept(ctx.accept());
    let prefix = ctx.info.namespace_prefix(ctx.ns()).ok_or_else(|| {
        ApiError::MethodNotAllowed(format!("{} cannot be watched", ctx.info.plural))
    })?;
    let rv = ctx.query.non_empty("resourceVersion").map(str::to_string);
    let send_initial =
        ctx.query.flag("sendInitialEvents") || rv.as_deref().is_none_or(|v| v == "0");

    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(64);
    // Initial state (list) before the stream starts, so errors still become HTTP errors.
    let (start, initial) = if send_initial {
        let listed = list_objects(&ctx).await?;
        (listed.revision, listed.items)
    } else {
        let rv = rv.as_deref().unwrap_or("0");
        let rev: Revision = rv
            .parse()
            .map_err(|_| ApiError::BadRequest(format!("invalid resourceVersion {rv:?}")))?;
        (rev, Vec::new())
    };
    let initial_end_bookmark = ctx.query.flag("sendInitialEvents") && bookmarks;
    let span = tracing::debug_span!(
        "watch",
        resource = ctx.info.plural,
        ns = ctx.ns().unwrap_or(""),
        from = start
    );
    tokio::spawn(
        async move {
            for obj in initial.iter().filter(|o| filter.matches(o)) {
                if tx.send(Ok(line("ADDED", obj, &ctx, render))).await.is_err() {
                    return;
                }
            }
            if initial_end_bookmark {
                let _ = tx
                    .send(Ok(line(
                        "BOOKMARK",
                        &bookmark(&ctx, start, true),
                        &ctx,
                        render,
                    )))
                    .await;
            }
            run(ctx, filter, prefix, start, timeout, bookmarks, render, tx).await;
        }
        .instrument(span),
    );
    let mut resp = Response::new(Body::from_stream(ReceiverStream::new(rx)));
    *resp.status_mut() = StatusCode::OK;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, private"),
    );
    Ok(resp)
}

#[allow(clippy::too_many_arguments)]
async fn run(
    ctx: Ctx,
    filter: Filter,
    prefix: String,
    start: Revision,
    timeout: Duration,
    bookmarks: bool,
    render: Render,
    tx: mpsc::Sender<Result<Bytes, std::io::Error>>,
) {
    let send = |bytes: Bytes| {
        let tx = tx.clone();
        async move { tx.send(Ok(bytes)).await.is_ok() }
    };
    let mut watch = match ctx.state.store.watch(&prefix, start).await {
        Ok(w) => w,
        Err(e) => {
            let _ = send(line("ERROR", &watch_error(e, start), &ctx, render)).await;
            return;
        }
    };
    let deadline = tokio::time::sleep(timeout);
    tokio::pin!(deadline);
    let mut ticker = tokio::time::interval(BOOKMARK_EVERY);
    ticker.tick().await;
    let mut last = start;
    loop {
        tokio::select! {
            _ = &mut deadline => return,
            _ = ctx.state.shutdown.cancelled() => return,
            _ = tx.closed() => return,
            _ = ticker.tick(), if bookmarks => {
                if !send(line("BOOKMARK", &bookmark(&ctx, last, false), &ctx, render)).await {
                    return;
                }
            }
            event = watch.next() => {
                let event = match event {
                    None => return,
                    Some(Err(e)) => {
                        let _ = send(line("ERROR", &watch_error(e, last), &ctx, render)).await;
                        return;
                    }
                    Some(Ok(event)) => event,
                };
                last = last.max(event.revision());
                if let WatchEvent::Progress { revision } = event {
                    if bookmarks && !send(line("BOOKMARK", &bookmark(&ctx, revision, false), &ctx, render)).await {
                        return;
                    }
                    continue;
                }
                match translate(&ctx, &filter, &event) {
                    Ok(Some((kind, obj))) => {
                        if !send(event_line(kind, &obj, &ctx, render)).await {
                            return;
                        }
                    }
                    Ok(None) => {}
                    Err(e) => {
                        // As kube-apiserver: an object that cannot be read
                        // (e.g. fails decryption) ends the watch with an
                        // ERROR event rather than being skipped silently.
                        tracing::warn!(error = %e, revision = event.revision(), "ending watch at an undecodable event");
                        let _ = send(line("ERROR", &e.to_status(), &ctx, render)).await;
                        return;
                    }
                }
            }
        }
    }
}

fn watch_error(err: StoreError, at: Revision) -> Value {
    match err {
        StoreError::Compacted {
            requested,
            compacted,
        } => expired(format!(
            "too old resource version: {requested} ({compacted})"
        )),
        StoreError::WatchLagged { resume_after } => {
            expired(format!("too old resource version: {at} ({resume_after})"))
        }
        other => ApiError::from(other).to_status(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compaction_becomes_an_expired_status() {
        let status = watch_error(
            StoreError::Compacted {
                requested: 3,
                compacted: 10,
            },
            3,
        );
        assert_eq!(status["code"], 410);
        assert_eq!(status["reason"], "Expired");
        assert_eq!(status["message"], "too old resource version: 3 (10)");
    }
}
