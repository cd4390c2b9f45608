//! Which wasm module a command runs (`kubectl exec`, exec probes and hooks).
//!
//! A wasm pod has no shell or filesystem of programs, so the command's first
//! word selects a module:
//! 1. a word ending in `.wasm`/`.wat` that is a path inside one of the
//!    container's mounts (e.g. `/tools/check.wasm` on a volume) runs that file;
//! 2. any other word ending in `.wasm`/`.wat` is an image reference resolved as
//!    images are (relative to the node's image base directory);
//! 3. otherwise, when the node has an exec toolbox module (default
//!    `samples/wasm/toolbox.wasm`), the toolbox runs with the whole command as
//!    argv, so `ls /config`, `cat f`, `touch /state/x`, `env` work as in a shell;
//! 4. with no toolbox, the container's own image runs with the command as argv.
//!
//! The module runs in the container's context: its env, mounts and limits.

use std::path::{Path, PathBuf};

use crate::runtime::{ImageInfo, Mount, PullPolicy, PullRequest, Runtime, RuntimeError};

/// What to run for a command: a module (None = the container's own image) and argv.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExecTarget {
    /// A module by image reference or host path.
    Module { image: String, argv: Vec<String> },
    /// The container's own image.
    Own { argv: Vec<String> },
}

/// Picks the module for a command (pure; see the file comment for the rules).
pub fn exec_target(command: &[String], mounts: &[Mount], toolbox: Option<&Path>) -> ExecTarget {
    let argv = command.to_vec();
    let Some(first) = command.first() else {
        return ExecTarget::Own { argv };
    };
    if first.ends_with(".wasm") || first.ends_with(".wat") {
        if let Some(host) = host_path_in_mounts(first, mounts) {
            return ExecTarget::Module {
                image: host.to_string_lossy().into_owned(),
                argv,
            };
        }
        return ExecTarget::Module {
            image: first.clone(),
            argv,
        };
    }
    match toolbox {
        Some(t) => ExecTarget::Module {
            image: t.to_string_lossy().into_owned(),
            argv,
        },
        None => ExecTarget::Own { argv },
    }
}

/// The host file a container path names, through the longest matching mount.
pub fn host_path_in_mounts(path: &str, mounts: &[Mount]) -> Option<PathBuf> {
    let m = mounts
        .iter()
        .filter(|m| {
            path == m.container_path
                || path.starts_with(&format!("{}/", m.container_path.trim_end_matches('/')))
        })
        .max_by_key(|m| m.container_path.len())?;
    let rest = path[m.container_path.len()..].trim_start_matches('/');
    let host = m.host_path.join(rest);
    host.is_file().then_some(host)
}

/// Resolves a command to a pulled module (or None for the container's image) and argv.
pub async fn resolve(
    runtime: &dyn Runtime,
    command: &[String],
    mounts: &[Mount],
    toolbox: Option<&Path>,
) -> Result<(Option<ImageInfo>, Vec<String>), RuntimeError> {
    match exec_target(command, mounts, toolbox) {
        ExecTarget::Own { argv } => Ok((None, argv)),
        ExecTarget::Module { image, argv } => {
            let info = runtime
                .pull(&PullRequest {
                    image,
                    policy: PullPolicy::IfNotPresent,
                    ..Default::default()
                })
                .await?;
            Ok((Some(info), argv))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_modules_by_first_word() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("check.wasm"), b"\0asm").unwrap();
        let mounts = vec![Mount {
            host_path: dir.path().to_path_buf(),
            container_path: "/tools".into(),
            read_only: true,
        }];
        let cmd = |s: &str| s.split(' ').map(String::from).collect::<Vec<_>>();
        let toolbox = Path::new("/opt/toolbox.wasm");
        assert_eq!(
            exec_target(&cmd("/tools/check.wasm --fast"), &mounts, Some(toolbox)),
            ExecTarget::Module {
                image: dir.path().join("check.wasm").to_string_lossy().into_owned(),
                argv: cmd("/tools/check.wasm --fast")
            }
        );
        assert_eq!(
            exec_target(&cmd("samples/wasm/hello.wasm a"), &mounts, Some(toolbox)),
            ExecTarget::Module {
                image: "samples/wasm/hello.wasm".into(),
                argv: cmd("samples/wasm/hello.wasm a")
            }
        );
        assert_eq!(
            exec_target(&cmd("ls /config"), &mounts, Some(toolbox)),
            ExecTarget::Module {
                image: "/opt/toolbox.wasm".into(),
                argv: cmd("ls /config")
            }
        );
        assert_eq!(
            exec_target(&cmd("status"), &mounts, None),
            ExecTarget::Own {
                argv: cmd("status")
            }
        );
    }
}
