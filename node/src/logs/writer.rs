//! Writing container output as CRI log lines, with size-based rotation and a
//! change signal so `follow` readers wake on new output instead of polling.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::io::AsyncWrite;
use tokio::sync::watch;

use super::timestamp;

/// stdout or stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamKind {
    Stdout,
    Stderr,
}

impl StreamKind {
    fn as_str(self) -> &'static str {
        match self {
            StreamKind::Stdout => "stdout",
            StreamKind::Stderr => "stderr",
        }
    }
}

/// A line longer than this is written as partial (`P`) pieces.
const MAX_LINE: usize = 16 * 1024;

/// One container start's log file.
pub struct LogFile {
    path: PathBuf,
    max_bytes: u64,
    max_files: usize,
    inner: Mutex<Inner>,
    changed: watch::Sender<u64>,
}

struct Inner {
    /// Opened (with its directory) on the first write: a container that never
    /// writes, like most idle wasi:http pods, holds no file descriptor and
    /// costs no file creation when it starts.
    file: Option<File>,
    opened: bool,
    size: u64,
    pending: [Vec<u8>; 2],
    written: u64,
}

impl LogFile {
    /// A log file at `path`, appended to; the file and its directory are
    /// created on the first write (readers treat a missing file as empty).
    pub fn open(path: PathBuf, max_bytes: u64, max_files: usize) -> std::io::Result<Arc<LogFile>> {
        Ok(Arc::new(LogFile {
            path,
            max_bytes,
            max_files: max_files.max(1),
            inner: Mutex::new(Inner {
                file: None,
                opened: false,
                size: 0,
                pending: [Vec::new(), Vec::new()],
                written: 0,
            }),
            changed: watch::channel(0).0,
        }))
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A receiver that changes whenever lines are written; closed when the log is finished.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// A writer for one stream of the container.
    pub fn stream(self: &Arc<Self>, kind: StreamKind) -> LogStream {
        LogStream {
            file: self.clone(),
            kind,
        }
    }

    /// Appends raw output of a stream; complete lines are written at once.
    pub fn append(&self, kind: StreamKind, bytes: &[u8]) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let idx = kind as usize;
        let mut out = Vec::new();
        let mut buf = std::mem::take(&mut inner.pending[idx]);
        buf.extend_from_slice(bytes);
        let mut start = 0;
        while let Some(nl) = buf[start..].iter().position(|b| *b == b'\n') {
            let line = &buf[start..start + nl];
            encode(&mut out, kind, line, false);
            start += nl + 1;
        }
        let mut rest = buf.split_off(start);
        while rest.len() > MAX_LINE {
            let tail = rest.split_off(MAX_LINE);
            encode(&mut out, kind, &rest, true);
            rest = tail;
        }
        inner.pending[idx] = rest;
        self.write_out(&mut inner, &out);
    }

    /// Writes any unterminated output as final lines (the container ended).
    pub fn flush_pending(&self) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = Vec::new();
        for kind in [StreamKind::Stdout, StreamKind::Stderr] {
            let rest = std::mem::take(&mut inner.pending[kind as usize]);
            if !rest.is_empty() {
                encode(&mut out, kind, &rest, false);
            }
        }
        self.write_out(&mut inner, &out);
    }

    fn write_out(&self, inner: &mut Inner, out: &[u8]) {
        if out.is_empty() {
            return;
        }
        if !inner.opened {
            inner.opened = true;
            self.open_file(inner);
        }
        if inner.size > 0 && inner.size + out.len() as u64 > self.max_bytes {
            self.rotate(inner);
        }
        if let Some(file) = inner.file.as_mut()
            && file.write_all(out).is_ok()
        {
            inner.size += out.len() as u64;
        }
        inner.written += 1;
        let written = inner.written;
        self.changed.send_replace(written);
    }

    /// Opens (appends to) the file, creating its directory; on failure the output is dropped.
    fn open_file(&self, inner: &mut Inner) {
        let opened = self
            .path
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|()| {
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&self.path)
            });
        match opened {
            Ok(file) => {
                inner.size = file.metadata().map(|m| m.len()).unwrap_or(0);
                inner.file = Some(file);
            }
            Err(e) => tracing::warn!(
                path = %self.path.display(),
                error = %e,
                "cannot open the container log file; this container's output is dropped"
            ),
        }
    }

    fn rotate(&self, inner: &mut Inner) {
        inner.file = None;
        let stamp = chrono::Utc::now().format("%Y%m%d-%H%M%S%.9f");
        let rotated = PathBuf::from(format!("{}.{stamp}", self.path.display()));
        let _ = std::fs::rename(&self.path, &rotated);
        let mut old = rotated_files(&self.path);
        while old.len() >= self.max_files {
            let _ = std::fs::remove_file(old.remove(0));
        }
        inner.file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .ok();
        inner.size = 0;
    }
}

/// Rotated files of a log path, oldest first.
pub(super) fn rotated_files(path: &Path) -> Vec<PathBuf> {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name().and_then(|n| n.to_str())) else {
        return Vec::new();
    };
    let prefix = format!("{name}.");
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.starts_with(&prefix))
        })
        .map(|e| e.path())
        .collect();
    files.sort();
    files
}

fn encode(out: &mut Vec<u8>, kind: StreamKind, line: &[u8], partial: bool) {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    out.extend_from_slice(timestamp(chrono::Utc::now()).as_bytes());
    out.push(b' ');
    out.extend_from_slice(kind.as_str().as_bytes());
    out.extend_from_slice(if partial { b" P " } else { b" F " });
    out.extend_from_slice(line);
    out.push(b'\n');
}

/// An `AsyncWrite` for one stream of a container, handed to the runtime.
pub struct LogStream {
    file: Arc<LogFile>,
    kind: StreamKind,
}

impl AsyncWrite for LogStream {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.file.append(self.kind, buf);
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.file.flush_pending();
        Poll::Ready(Ok(()))
    }
}

/// The log files being written now, so `follow` readers can subscribe to them.
#[derive(Default)]
pub struct LogRegistry {
    open: Mutex<HashMap<PathBuf, Arc<LogFile>>>,
}

impl LogRegistry {
    /// Opens a log file and registers it as live.
    pub fn open(
        &self,
        path: PathBuf,
        max_bytes: u64,
        max_files: usize,
    ) -> std::io::Result<Arc<LogFile>> {
        let file = LogFile::open(path.clone(), max_bytes, max_files)?;
        self.open
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(path, file.clone());
        Ok(file)
    }

    /// Marks a log finished: remaining output is written and followers see the end.
    pub fn close(&self, path: &Path) {
        let file = self
            .open
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(path);
        if let Some(f) = file {
            f.flush_pending();
            // Waking followers one last time; they stop when the sender is gone,
            // which happens once the runtime drops its streams too.
            f.changed.send_modify(|n| *n += 1);
        }
    }

    /// A change subscription for a live log, `None` when nothing writes it.
    pub fn subscribe(&self, path: &Path) -> Option<watch::Receiver<u64>> {
        self.open
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(path)
            .map(|f| f.subscribe())
    }

    /// Whether a log is still being written.
    pub fn is_live(&self, path: &Path) -> bool {
        self.open
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(path)
    }
}
