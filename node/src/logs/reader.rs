//! Reading CRI log files back as `kubectl logs` expects: partial lines joined,
//! `sinceTime`/`sinceSeconds`, `tailLines`, `timestamps`, `limitBytes`, and
//! `follow` driven by the writer's change signal.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use tokio::sync::mpsc;

use super::writer::{LogRegistry, rotated_files};

/// What part of a log to return and how.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LogOptions {
    pub tail_lines: Option<usize>,
    pub since: Option<DateTime<Utc>>,
    pub timestamps: bool,
    pub limit_bytes: Option<usize>,
}

/// A log could not be read.
#[derive(Debug, thiserror::Error)]
#[error("reading log {path}: {source}")]
pub struct LogReadError {
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

/// One parsed log line: its time and the text (without the newline).
#[derive(Debug, Clone, PartialEq)]
struct Entry {
    time: String,
    text: Vec<u8>,
}

/// Parses CRI lines; `P` pieces are joined with the following pieces up to an `F`.
fn parse(data: &[u8], carry: &mut Option<Entry>) -> Vec<Entry> {
    let mut out = Vec::new();
    for raw in data.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        let mut parts = raw.splitn(4, |b| *b == b' ');
        let (Some(time), Some(_stream), Some(tag)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let text = parts.next().unwrap_or_default();
        let time = String::from_utf8_lossy(time).into_owned();
        let entry = match carry.take() {
            Some(mut prev) => {
                prev.text.extend_from_slice(text);
                prev
            }
            None => Entry {
                time,
                text: text.to_vec(),
            },
        };
        if tag == b"P" {
            *carry = Some(entry);
        } else {
            out.push(entry);
        }
    }
    out
}

fn keep(entry: &Entry, opts: &LogOptions) -> bool {
    match opts.since {
        Some(since) => DateTime::parse_from_rfc3339(&entry.time)
            .map(|t| t.with_timezone(&Utc) >= since)
            .unwrap_or(true),
        None => true,
    }
}

fn format(entries: &[Entry], opts: &LogOptions, out: &mut Vec<u8>) {
    for e in entries {
        if opts.timestamps {
            out.extend_from_slice(e.time.as_bytes());
            out.push(b' ');
        }
        out.extend_from_slice(&e.text);
        out.push(b'\n');
    }
}

fn read_file(path: &Path) -> Result<Vec<u8>, LogReadError> {
    std::fs::read(path).map_err(|source| LogReadError {
        path: path.to_path_buf(),
        source,
    })
}

/// The log of one container start (its rotated files, then the current one), filtered.
pub fn read_logs(path: &Path, opts: &LogOptions) -> Result<Vec<u8>, LogReadError> {
    Ok(read_with_offset(path, opts)?.0)
}

/// Like `read_logs`, also returning how many bytes of the current file were consumed.
fn read_with_offset(path: &Path, opts: &LogOptions) -> Result<(Vec<u8>, u64), LogReadError> {
    let mut entries = Vec::new();
    let mut carry = None;
    for file in rotated_files(path) {
        entries.extend(parse(&read_file(&file)?, &mut carry));
    }
    // A container that has not written anything yet has no file.
    let current = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(source) => {
            return Err(LogReadError {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    let complete = current
        .iter()
        .rposition(|b| *b == b'\n')
        .map(|i| i + 1)
        .unwrap_or(0);
    entries.extend(parse(&current[..complete], &mut carry));
    entries.retain(|e| keep(e, opts));
    if let Some(n) = opts.tail_lines {
        let skip = entries.len().saturating_sub(n);
        entries.drain(..skip);
    }
    let mut out = Vec::new();
    format(&entries, opts, &mut out);
    if let Some(limit) = opts.limit_bytes {
        out.truncate(limit);
    }
    Ok((out, complete as u64))
}

/// Streams a log: what is there now, then new lines as they are written,
/// until the log is finished (the container ended) or the receiver goes away.
pub fn follow_logs(
    path: PathBuf,
    opts: LogOptions,
    registry: Arc<LogRegistry>,
) -> Result<mpsc::Receiver<Bytes>, LogReadError> {
    let mut changes = registry.subscribe(&path);
    let (first, mut offset) = read_with_offset(&path, &opts)?;
    let (tx, rx) = mpsc::channel(16);
    let mut budget = opts
        .limit_bytes
        .unwrap_or(usize::MAX)
        .saturating_sub(first.len());
    tokio::spawn(async move {
        if !first.is_empty() && tx.send(Bytes::from(first)).await.is_err() {
            return;
        }
        let since_opts = LogOptions {
            tail_lines: None,
            ..opts
        };
        let mut carry = None;
        loop {
            let live = registry.is_live(&path);
            let fresh = tokio::task::block_in_place(|| read_from(&path, &mut offset));
            let entries: Vec<Entry> = parse(&fresh, &mut carry)
                .into_iter()
                .filter(|e| keep(e, &since_opts))
                .collect();
            let mut out = Vec::new();
            format(&entries, &since_opts, &mut out);
            if !out.is_empty() {
                out.truncate(budget);
                budget -= out.len();
                if tx.send(Bytes::from(out)).await.is_err() || budget == 0 {
                    return;
                }
            }
            if !live {
                return;
            }
            let Some(rx) = changes.as_mut() else { return };
            tokio::select! {
                changed = rx.changed() => if changed.is_err() { changes = None; },
                _ = tx.closed() => return,
            }
            if changes.is_none() {
                // The writer is gone: one last read picks up its final lines.
                let fresh = tokio::task::block_in_place(|| read_from(&path, &mut offset));
                let entries: Vec<Entry> = parse(&fresh, &mut carry)
                    .into_iter()
                    .filter(|e| keep(e, &since_opts))
                    .collect();
                let mut out = Vec::new();
                format(&entries, &since_opts, &mut out);
                out.truncate(budget);
                if !out.is_empty() {
                    let _ = tx.send(Bytes::from(out)).await;
                }
                return;
            }
        }
    });
    Ok(rx)
}

/// Complete lines appended to `path` after `offset` (restarting at 0 after a rotation).
fn read_from(path: &Path, offset: &mut u64) -> Vec<u8> {
    let Ok(mut file) = std::fs::File::open(path) else {
        return Vec::new();
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    if len < *offset {
        *offset = 0;
    }
    if file.seek(SeekFrom::Start(*offset)).is_err() {
        return Vec::new();
    }
    let mut buf = Vec::new();
    if file.read_to_end(&mut buf).is_err() {
        return Vec::new();
    }
    let complete = buf
        .iter()
        .rposition(|b| *b == b'\n')
        .map(|i| i + 1)
        .unwrap_or(0);
    buf.truncate(complete);
    *offset += complete as u64;
    buf
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logs::{LogFile, StreamKind};

    fn write_raw(path: &Path, lines: &[&str]) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(
            path,
            lines.iter().map(|l| format!("{l}\n")).collect::<String>(),
        )
        .unwrap();
    }

    #[test]
    fn tail_since_timestamps_limit_and_partials() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c/0.log");
        write_raw(
            &path,
            &[
                "2026-01-01T00:00:01.000000000Z stdout F one",
                "2026-01-01T00:00:02.000000000Z stderr P tw",
                "2026-01-01T00:00:02.100000000Z stderr F o",
                "2026-01-01T00:00:03.000000000Z stdout F three",
            ],
        );
        let all = read_logs(&path, &LogOptions::default()).unwrap();
        assert_eq!(String::from_utf8(all).unwrap(), "one\ntwo\nthree\n");
        let tail = read_logs(
            &path,
            &LogOptions {
                tail_lines: Some(1),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(tail, b"three\n");
        let since = "2026-01-01T00:00:02Z".parse().unwrap();
        let ts = read_logs(
            &path,
            &LogOptions {
                since: Some(since),
                timestamps: true,
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(ts).unwrap(),
            "2026-01-01T00:00:02.000000000Z two\n2026-01-01T00:00:03.000000000Z three\n"
        );
        let limited = read_logs(
            &path,
            &LogOptions {
                limit_bytes: Some(5),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(limited, b"one\nt");
    }

    #[test]
    fn writer_splits_lines_rotates_and_reader_spans_rotations() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c/0.log");
        let log = LogFile::open(path.clone(), 200, 5).unwrap();
        log.append(StreamKind::Stdout, b"hel");
        log.append(StreamKind::Stdout, b"lo\nwor");
        log.append(StreamKind::Stderr, b"err\n");
        log.flush_pending();
        assert_eq!(
            read_logs(&path, &LogOptions::default()).unwrap(),
            b"hello\nerr\nwor\n"
        );
        for i in 0..20 {
            log.append(StreamKind::Stdout, format!("line {i}\n").as_bytes());
        }
        assert!(!crate::logs::writer::rotated_files(&path).is_empty());
        let text = String::from_utf8(
            read_logs(
                &path,
                &LogOptions {
                    tail_lines: Some(3),
                    ..Default::default()
                },
            )
            .unwrap(),
        )
        .unwrap();
        assert_eq!(text, "line 17\nline 18\nline 19\n");
    }

    #[test]
    fn a_log_never_written_has_no_file_and_reads_empty() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c/0.log");
        let log = LogFile::open(path.clone(), 1 << 20, 2).unwrap();
        assert!(!path.exists());
        assert_eq!(read_logs(&path, &LogOptions::default()).unwrap(), b"");
        log.append(StreamKind::Stdout, b"late\n");
        assert_eq!(read_logs(&path, &LogOptions::default()).unwrap(), b"late\n");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn follow_streams_new_lines_until_closed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c/0.log");
        let registry = Arc::new(LogRegistry::default());
        let log = registry.open(path.clone(), 1 << 20, 2).unwrap();
        log.append(StreamKind::Stdout, b"first\n");
        let mut rx = follow_logs(path.clone(), LogOptions::default(), registry.clone()).unwrap();
        assert_eq!(rx.recv().await.unwrap(), Bytes::from_static(b"first\n"));
        log.append(StreamKind::Stdout, b"second\n");
        let next = tokio::time::timeout(std::time::Duration::from_secs(5), rx.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(next, Bytes::from_static(b"second\n"));
        registry.close(&path);
        let end = tokio::time::timeout(std::time::Duration::from_secs(5), rx.recv())
            .await
            .unwrap();
        assert_eq!(end, None);
    }
}
