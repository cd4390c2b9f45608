//! The node agent's typed errors (`NodeError`); runtime errors live in `runtime.rs`.

use std::path::PathBuf;

use crate::runtime::RuntimeError;

/// Everything that can stop the node agent or one of its operations.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The node configuration is unusable (bad CIDR, bad address, ...).
    #[error("invalid node configuration: {0}")]
    Config(String),
    /// A call to the Kubernetes API failed.
    #[error("kubernetes API call failed: {0}")]
    Api(#[from] kube::Error),
    /// A local file operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The node server could not bind or serve.
    #[error("node server: {0}")]
    Server(std::io::Error),
    /// The container runtime refused an operation.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// An object from the API lacked a field the agent needs.
    #[error("{0}")]
    Invalid(String),
}

impl NodeError {
    /// Wraps an io error with what was being done and on which path.
    pub fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        NodeError::Io {
            op,
            path: path.into(),
            source,
        }
    }
}

/// Whether a kube error is the API's 409 (Conflict or AlreadyExists).
pub(crate) fn is_conflict(err: &kube::Error) -> bool {
    matches!(err, kube::Error::Api(s) if s.code == 409)
}

/// Whether a kube error is the API's 404.
pub(crate) fn is_not_found(err: &kube::Error) -> bool {
    matches!(err, kube::Error::Api(s) if s.code == 404)
}
