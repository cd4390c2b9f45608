//! Where skiff keeps its state when `--data-dir` is not given: a per-user
//! directory following each OS's convention.

use std::path::PathBuf;

/// `$XDG_DATA_HOME/skiff`, `~/.local/share/skiff`, `~/Library/Application
/// Support/skiff` on macOS, `%LOCALAPPDATA%\skiff` on Windows.
pub fn default_data_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("XDG_DATA_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir).join("skiff");
    }
    if cfg!(windows)
        && let Some(dir) = std::env::var_os("LOCALAPPDATA")
    {
        return PathBuf::from(dir).join("skiff");
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    if cfg!(target_os = "macos") {
        home.join("Library/Application Support/skiff")
    } else {
        home.join(".local/share/skiff")
    }
}
