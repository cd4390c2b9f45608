//! [`Instance`]: the handle of one running container, shared by the task
//! that runs it and the node. It carries the stop token, the limits (for
//! usage figures) and the exit status once known; a guard makes sure a
//! status is always published, even if the running task panics.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::http::HttpServer;
use crate::limits::{Killed, Limits, OomKilled};
use crate::{ExitReason, ExitStatus, Instance, Usage, WasmError};

/// Kubernetes' exit code for a container killed by a signal (SIGKILL).
pub(crate) const KILLED_EXIT_CODE: i32 = 137;
/// Termination messages are capped like Kubernetes' (4 KiB).
const MAX_MESSAGE: usize = 4096;

/// State shared by an [`Instance`]'s clones and its running task.
pub(crate) struct Shared {
    pub name: String,
    pub limits: Arc<Limits>,
    pub stop: CancellationToken,
    pub status: watch::Sender<Option<ExitStatus>>,
    pub local_addr: Option<SocketAddr>,
    /// The server of an HTTP handler (owned by its accept task).
    pub http: Option<Weak<HttpServer>>,
}

impl Shared {
    pub(crate) fn new(name: String, limits: Arc<Limits>) -> Shared {
        Shared {
            name,
            limits,
            stop: CancellationToken::new(),
            status: watch::channel(None).0,
            local_addr: None,
            http: None,
        }
    }

    /// Publishes the exit status (the first one wins).
    pub(crate) fn finish(&self, status: ExitStatus) {
        self.status.send_if_modified(|s| {
            if s.is_some() {
                return false;
            }
            tracing::info!(container = %self.name, exit_code = status.exit_code, reason = ?status.reason, "wasm container ended");
            *s = Some(status);
            true
        });
    }
}

/// Publishes an Error status when dropped before a status was published
/// (the running task panicked or was cancelled).
pub(crate) struct FinishGuard(pub Arc<Shared>);

impl Drop for FinishGuard {
    fn drop(&mut self) {
        self.0.finish(ExitStatus {
            exit_code: 1,
            reason: ExitReason::Error,
            message: "the runtime task ended unexpectedly".into(),
        });
    }
}

/// What a guest run ended with, before classification.
pub(crate) enum Outcome {
    /// The guest returned normally with this exit code.
    Exited(i32),
    /// The node stopped it.
    Stopped,
    /// A trap, an exit through `proc_exit`, or a host error.
    Failed(wasmtime::Error),
}

/// Classifies a guest outcome into a Kubernetes-style exit status.
pub(crate) fn classify(outcome: Outcome, limits: &Limits) -> ExitStatus {
    let oom = limits.oom.load(Ordering::Relaxed);
    let (code, error) = match outcome {
        Outcome::Stopped => return killed(),
        Outcome::Exited(code) => (code, None),
        Outcome::Failed(e) => {
            if let Some(exit) = e.downcast_ref::<wasmtime_wasi::I32Exit>() {
                (exit.0, None)
            } else if e.downcast_ref::<Killed>().is_some() {
                return killed();
            } else if let Some(o) = e.downcast_ref::<OomKilled>() {
                return oom_killed(o.to_string());
            } else {
                (1, Some(e))
            }
        }
    };
    if code == 0 && error.is_none() {
        return ExitStatus {
            exit_code: 0,
            reason: ExitReason::Completed,
            message: String::new(),
        };
    }
    if oom {
        return oom_killed("memory limit exceeded".into());
    }
    ExitStatus {
        exit_code: code,
        reason: ExitReason::Error,
        message: error
            .map(|e| truncate(format!("{e:?}")))
            .unwrap_or_default(),
    }
}

pub(crate) fn killed() -> ExitStatus {
    ExitStatus {
        exit_code: KILLED_EXIT_CODE,
        reason: ExitReason::Killed,
        message: String::new(),
    }
}

fn oom_killed(message: String) -> ExitStatus {
    ExitStatus {
        exit_code: KILLED_EXIT_CODE,
        reason: ExitReason::OOMKilled,
        message,
    }
}

fn truncate(mut s: String) -> String {
    if s.len() > MAX_MESSAGE {
        let mut cut = MAX_MESSAGE;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
    s
}

impl Instance {
    /// Waits until the instance ends and returns how.
    pub async fn wait(&self) -> ExitStatus {
        let mut rx = self.inner.status.subscribe();
        match rx.wait_for(|s| s.is_some()).await {
            Ok(s) => s.clone().unwrap_or_else(killed),
            Err(_) => killed(),
        }
    }

    /// The exit status if it has ended.
    pub fn try_status(&self) -> Option<ExitStatus> {
        self.inner.status.borrow().clone()
    }

    /// Stops the instance promptly (even a guest in a tight loop); an HTTP
    /// handler closes its listener and aborts requests in flight.
    pub fn stop(&self) {
        self.inner.limits.stopped.store(true, Ordering::Relaxed);
        self.inner.stop.cancel();
    }

    /// cpu time and memory used so far.
    pub fn usage(&self) -> Usage {
        Usage {
            cpu_time: self.inner.limits.cpu_time(),
            memory_bytes: self.inner.limits.memory_bytes(),
        }
    }

    /// Address an HTTP handler serves on.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.inner.local_addr
    }

    /// Serves one already accepted connection (HTTP/1.1) with this HTTP
    /// handler, e.g. from the node's virtual network; fails for commands.
    pub fn serve_connection<IO>(&self, io: IO) -> Result<(), WasmError>
    where
        IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
    {
        let Some(server) = &self.inner.http else {
            return Err(WasmError::InvalidSpec("not an HTTP handler".into()));
        };
        match server.upgrade() {
            Some(server) if !self.inner.stop.is_cancelled() => {
                server.spawn_connection(io);
                Ok(())
            }
            _ => Err(WasmError::InvalidSpec(
                "the HTTP handler has stopped".into(),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_exits() {
        let limits = Limits::new(None, None);
        assert_eq!(
            classify(Outcome::Exited(0), &limits).reason,
            ExitReason::Completed
        );
        let s = classify(Outcome::Exited(3), &limits);
        assert_eq!((s.exit_code, s.reason), (3, ExitReason::Error));
        let s = classify(Outcome::Failed(wasmtime_wasi::I32Exit(7).into()), &limits);
        assert_eq!((s.exit_code, s.reason), (7, ExitReason::Error));
        let s = classify(Outcome::Failed(Killed.into()), &limits);
        assert_eq!((s.exit_code, s.reason), (137, ExitReason::Killed));
        let s = classify(Outcome::Failed(wasmtime::format_err!("boom")), &limits);
        assert_eq!((s.exit_code, s.reason), (1, ExitReason::Error));
        assert!(s.message.contains("boom"));
        limits.oom.store(true, Ordering::Relaxed);
        assert_eq!(
            classify(Outcome::Exited(1), &limits).reason,
            ExitReason::OOMKilled
        );
    }

    #[test]
    fn truncates_long_messages_on_char_boundaries() {
        let s = truncate("é".repeat(5000));
        assert!(s.len() <= MAX_MESSAGE);
    }
}
