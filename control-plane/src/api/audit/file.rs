//! The audit file: appends JSON lines, rotates by size (`audit.log.1` is
//! the newest rotated file), and reopens it after write errors. Only the
//! writer thread in `audit` (mod.rs) uses it.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write as _};
use std::path::{Path, PathBuf};

use super::{Event, Limits};

/// The open audit file and how big it is.
pub(super) struct Sink {
    path: PathBuf,
    limits: Limits,
    file: Option<BufWriter<File>>,
    size: u64,
    failing: bool,
}

impl Sink {
    pub(super) fn open(path: &Path, limits: Limits) -> std::io::Result<Sink> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let file = open_append(path)?;
        let size = file.metadata()?.len();
        Ok(Sink {
            path: path.to_path_buf(),
            limits,
            file: Some(BufWriter::new(file)),
            size,
            failing: false,
        })
    }

    pub(super) fn write(&mut self, event: &Event) {
        let mut line = match serde_json::to_vec(event) {
            Ok(line) => line,
            Err(e) => {
                tracing::warn!(error = %e, "cannot serialize an audit event; skipping it");
                return;
            }
        };
        line.push(b'\n');
        let written = self.append(&line);
        self.outcome(written);
    }

    pub(super) fn flush(&mut self) {
        let flushed = match &mut self.file {
            Some(file) => file.flush(),
            None => Ok(()),
        };
        self.outcome(flushed);
    }

    fn append(&mut self, line: &[u8]) -> std::io::Result<()> {
        let len = line.len() as u64;
        if self.size > 0 && self.size + len > self.limits.max_size {
            self.rotate()?;
        }
        let file = match self.file.take() {
            Some(file) => file,
            None => {
                let file = open_append(&self.path)?;
                self.size = file.metadata()?.len();
                BufWriter::new(file)
            }
        };
        let file = self.file.insert(file);
        file.write_all(line)?;
        self.size += len;
        Ok(())
    }

    /// `audit.log.(i)` → `audit.log.(i+1)`, the oldest replaced; `audit.log` → `audit.log.1`.
    fn rotate(&mut self) -> std::io::Result<()> {
        if let Some(mut file) = self.file.take() {
            file.flush()?;
        }
        if self.limits.max_backups == 0 {
            std::fs::remove_file(&self.path)?;
        } else {
            for i in (1..self.limits.max_backups).rev() {
                match std::fs::rename(backup(&self.path, i), backup(&self.path, i + 1)) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                    _ => {}
                }
            }
            std::fs::rename(&self.path, backup(&self.path, 1))?;
        }
        self.file = Some(BufWriter::new(open_append(&self.path)?));
        self.size = 0;
        Ok(())
    }

    /// Warns once when writing starts failing (the file is reopened on the
    /// next event) and once when it works again.
    fn outcome(&mut self, result: std::io::Result<()>) {
        match result {
            Err(e) => {
                if !self.failing {
                    tracing::warn!(path = %self.path.display(), error = %e, "cannot write the audit log; events are lost until it works again");
                }
                self.failing = true;
                self.file = None;
            }
            Ok(()) if self.failing && self.file.is_some() => {
                tracing::info!(path = %self.path.display(), "writing the audit log again");
                self.failing = false;
            }
            Ok(()) => {}
        }
    }
}

pub(super) fn backup(path: &Path, i: usize) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{i}"));
    PathBuf::from(name)
}

fn open_append(path: &Path) -> std::io::Result<File> {
    let mut options = OpenOptions::new();
    options.create(true).append(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    options.open(path)
}
