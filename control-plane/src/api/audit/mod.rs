//! The audit log: one JSON line per request once its response is done, as
//! kube-apiserver's `--audit-log-path` writes at level Metadata (who asked
//! for what, from where, and the answer's code; never request or response
//! bodies). The pipeline fills an [`Event`] as the request is
//! authenticated and authorized; [`AuditLog::on_complete`] sends it when
//! the response body is finished or dropped (so a watch is logged when it
//! ends).
//!
//! Events go through a bounded channel to one writer thread that appends
//! to the file and rotates it by size (`file`). A request never waits for
//! the disk: when the channel is full the event is dropped, counted and
//! warned about.

mod event;
mod file;

use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use tokio::sync::{mpsc, oneshot};

use super::error::ApiError;
pub use event::Event;
use file::Sink;

/// The audit file in the data directory when no path is configured.
pub const DEFAULT_FILE: &str = "audit.log";
/// Events written between flushes at most, when the writer is busy.
const BATCH: usize = 1024;

/// When the file is rotated, how many rotated files are kept, and how many
/// events may wait for the writer.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Rotate before the file would grow past this many bytes.
    pub max_size: u64,
    /// Rotated files kept: `audit.log.1` (newest) to `audit.log.N`.
    pub max_backups: usize,
    /// Events queued for the writer before new ones are dropped.
    pub queue: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_size: 100 << 20,
            max_backups: 3,
            queue: 10_000,
        }
    }
}

/// Where requests hand their audit events; cheap to clone.
#[derive(Clone)]
pub struct AuditLog {
    tx: mpsc::Sender<Event>,
    dropped: Arc<AtomicU64>,
}

/// The writer thread's completion, to wait for at shutdown.
pub struct AuditWriter {
    path: PathBuf,
    done: oneshot::Receiver<()>,
}

impl AuditLog {
    /// Opens (or creates, mode 0600) the audit file at `path` and starts the
    /// writer thread; it ends once every [`AuditLog`] handle is dropped and
    /// the queued events are written.
    pub fn start(path: &Path, limits: Limits) -> Result<(AuditLog, AuditWriter), ApiError> {
        let failed = |e: std::io::Error| {
            ApiError::Internal(format!("opening the audit log {}: {e}", path.display()))
        };
        let sink = Sink::open(path, limits).map_err(failed)?;
        let (tx, rx) = mpsc::channel(limits.queue.max(1));
        let dropped = Arc::new(AtomicU64::new(0));
        let (done_tx, done) = oneshot::channel();
        let counter = dropped.clone();
        std::thread::Builder::new()
            .name("audit-log".into())
            .spawn(move || {
                write_events(rx, sink, &counter);
                let _ = done_tx.send(());
            })
            .map_err(failed)?;
        tracing::info!(path = %path.display(), "writing the audit log");
        Ok((
            AuditLog { tx, dropped },
            AuditWriter {
                path: path.to_path_buf(),
                done,
            },
        ))
    }

    /// Records `event` with the response's code once the response body is
    /// done: sent in full, or dropped because the client went away.
    pub fn on_complete(&self, resp: Response, event: Event) -> Response {
        let (parts, body) = resp.into_parts();
        let code = parts.status.as_u16();
        let body = Completion {
            inner: body,
            pending: Some((event, code)),
            log: self.clone(),
        };
        Response::from_parts(parts, Body::new(body))
    }

    fn send(&self, event: Event) {
        match self.tx.try_send(event) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                if self.dropped.fetch_add(1, Ordering::Relaxed) == 0 {
                    tracing::warn!(
                        "the audit log writer is behind; dropping audit events until it catches up"
                    );
                }
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                tracing::debug!("audit log closed; event not written");
            }
        }
    }
}

impl AuditWriter {
    /// Waits, at most `timeout`, for the writer to write what is queued and
    /// stop (it stops when the server's state, and so every sender, is gone).
    pub async fn finished(self, timeout: Duration) {
        if tokio::time::timeout(timeout, self.done).await.is_err() {
            tracing::warn!(path = %self.path.display(), "audit log writer still busy at shutdown; leaving it");
        }
    }
}

/// A response body that sends its request's audit event when it is dropped.
struct Completion {
    inner: Body,
    pending: Option<(Event, u16)>,
    log: AuditLog,
}

impl HttpBody for Completion {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Completion {
    fn drop(&mut self) {
        if let Some((event, code)) = self.pending.take() {
            self.log.send(event.complete(code));
        }
    }
}

/// The writer thread: batches what is queued, flushes, reports drops.
fn write_events(mut rx: mpsc::Receiver<Event>, mut sink: Sink, dropped: &AtomicU64) {
    while let Some(first) = rx.blocking_recv() {
        sink.write(&first);
        for _ in 1..BATCH {
            match rx.try_recv() {
                Ok(event) => sink.write(&event),
                Err(_) => break,
            }
        }
        sink.flush();
        let lost = dropped.swap(0, Ordering::Relaxed);
        if lost > 0 {
            tracing::warn!(
                dropped = lost,
                "audit events were dropped while the audit log writer was behind"
            );
        }
    }
}

#[cfg(test)]
mod tests;
