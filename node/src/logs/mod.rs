//! Container logs on disk in the CRI format (`<RFC3339Nano> <stream> <F|P> <text>`),
//! one file per container start under
//! `<data_dir>/pods/<ns>_<name>_<uid>/<container>/<restart>.log`, rotated by size.
//! `writer.rs` turns guest output into lines; `reader.rs` serves them back
//! with tail / since / timestamps / limitBytes / follow.

mod reader;
mod writer;

use std::path::{Path, PathBuf};

pub use reader::{LogOptions, LogReadError, follow_logs, read_logs};
pub use writer::{LogFile, LogRegistry, LogStream, StreamKind};

/// The directory holding one pod's logs.
pub fn pod_log_dir(data_dir: &Path, namespace: &str, name: &str, uid: &str) -> PathBuf {
    data_dir
        .join("pods")
        .join(format!("{namespace}_{name}_{uid}"))
}

/// The current log file of one container start.
pub fn container_log_path(pod_dir: &Path, container: &str, restart: u32) -> PathBuf {
    pod_dir.join(container).join(format!("{restart}.log"))
}

/// The current time as the CRI log format writes it.
pub fn timestamp(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}
