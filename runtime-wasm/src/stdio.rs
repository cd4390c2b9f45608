//! Guest stdio plumbing: [`LogPipe`] carries a guest's stdout/stderr bytes
//! from any number of stores (one per HTTP request, or one command) to the
//! caller's sink through one writer task, never failing on concurrent
//! writes; [`stdin_stream`] adapts the caller's reader to WASI stdin.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;
use wasmtime_wasi::cli::{AsyncStdinStream, IsTerminal, StdinStream, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError, StreamResult};

use crate::{InputSource, OutputSink};

/// Bytes queued but not yet written before writers are told to wait.
const BUDGET: usize = 256 << 10;

/// A cloneable handle writing into one sink; the sink's writer task ends
/// (after writing everything queued) when every handle is dropped.
#[derive(Clone)]
pub(crate) struct LogPipe {
    inner: Option<Arc<PipeInner>>,
}

struct PipeInner {
    tx: mpsc::UnboundedSender<Bytes>,
    queued: AtomicUsize,
    drained: Notify,
}

impl LogPipe {
    /// A pipe into `sink` (a discarding pipe when `None`) and the writer
    /// task to await once the guest is done.
    pub(crate) fn new(sink: Option<OutputSink>) -> (LogPipe, Option<JoinHandle<()>>) {
        let Some(mut sink) = sink else {
            return (LogPipe { inner: None }, None);
        };
        let (tx, mut rx) = mpsc::unbounded_channel::<Bytes>();
        let inner = Arc::new(PipeInner {
            tx,
            queued: AtomicUsize::new(0),
            drained: Notify::new(),
        });
        let weak = Arc::downgrade(&inner);
        let task = tokio::spawn(async move {
            let mut failed = false;
            while let Some(bytes) = rx.recv().await {
                if !failed && let Err(e) = sink.write_all(&bytes).await {
                    tracing::debug!(error = %e, "guest output sink failed; discarding further output");
                    failed = true;
                }
                // Flush when nothing else is waiting, so followers see lines promptly.
                if !failed && rx.is_empty() && sink.flush().await.is_err() {
                    failed = true;
                }
                if let Some(inner) = weak.upgrade() {
                    inner.queued.fetch_sub(bytes.len(), Ordering::AcqRel);
                    inner.drained.notify_waiters();
                }
            }
            let _ = sink.shutdown().await;
        });
        (LogPipe { inner: Some(inner) }, Some(task))
    }

    /// Queues bytes for the sink (dropped when there is no sink).
    pub(crate) fn write_bytes(&self, bytes: Bytes) {
        if let Some(inner) = &self.inner
            && !bytes.is_empty()
        {
            inner.queued.fetch_add(bytes.len(), Ordering::AcqRel);
            // A send fails only after the writer ended; output is then discarded.
            let _ = inner.tx.send(bytes);
        }
    }

    fn room(&self) -> usize {
        match &self.inner {
            Some(inner) => BUDGET.saturating_sub(inner.queued.load(Ordering::Acquire)),
            None => BUDGET,
        }
    }

    async fn wait_for_room(&self) {
        let Some(inner) = &self.inner else { return };
        loop {
            let notified = inner.drained.notified();
            if self.room() > 0 {
                return;
            }
            notified.await;
        }
    }
}

impl IsTerminal for LogPipe {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for LogPipe {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }

    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }
}

#[async_trait::async_trait]
impl Pollable for LogPipe {
    async fn ready(&mut self) {
        self.wait_for_room().await
    }
}

#[async_trait::async_trait]
impl OutputStream for LogPipe {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.write_bytes(bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> Result<usize, StreamError> {
        Ok(self.room())
    }
}

impl AsyncWrite for LogPipe {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.write_bytes(Bytes::copy_from_slice(buf));
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// WASI stdin reading from `source` (pumped through an in-memory pipe so the
/// stream is `Sync`, as WASI requires).
pub(crate) fn stdin_stream(source: InputSource) -> impl StdinStream + 'static {
    let (mut writer, reader) = tokio::io::duplex(64 << 10);
    tokio::spawn(async move {
        let mut source = source;
        // Ends when the source ends (EOF for the guest) or the guest is gone.
        let _ = tokio::io::copy(&mut source, &mut writer).await;
        let _ = writer.shutdown().await;
    });
    AsyncStdinStream::new(reader)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn pipe_delivers_all_bytes_from_many_handles_in_order_per_handle() {
        let (tx, mut rx) = tokio::io::duplex(1 << 20);
        let (pipe, task) = LogPipe::new(Some(Box::new(tx)));
        let mut a = pipe.clone();
        let mut b = pipe.clone();
        OutputStream::write(&mut a, Bytes::from_static(b"one\n")).unwrap_or(());
        OutputStream::write(&mut b, Bytes::from_static(b"two\n")).unwrap_or(());
        drop((a, b, pipe));
        task.expect("a sink was given").await.expect("writer task");
        let mut out = String::new();
        tokio::io::AsyncReadExt::read_to_string(&mut rx, &mut out)
            .await
            .expect("read");
        assert_eq!(out, "one\ntwo\n");
    }

    #[tokio::test]
    async fn pipe_without_sink_discards_and_reports_room() {
        let (mut pipe, task) = LogPipe::new(None);
        assert!(task.is_none());
        assert_eq!(pipe.check_write().ok(), Some(BUDGET));
        assert!(OutputStream::write(&mut pipe, Bytes::from_static(b"x")).is_ok());
    }
}
