//! The public vocabulary of the store: key-values with their revisions,
//! range requests, transactions, watch events and the typed errors callers
//! act on. No storage or consensus logic lives here.

use std::path::PathBuf;
use std::time::Duration;

/// A store revision: increases by one per committed write (a transaction is one write).
pub type Revision = i64;

/// A key with its value and MVCC metadata, as etcd v3 reports it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct KeyValue {
    pub key: String,
    pub value: Vec<u8>,
    /// Revision of the write that created this key (since its last deletion).
    pub create_revision: Revision,
    /// Revision of the last write to this key.
    pub mod_revision: Revision,
    /// Number of writes to this key since it was created (1 after create).
    pub version: i64,
}

/// A read of every key under `prefix`, in key order.
#[derive(Debug, Clone, Default)]
pub struct RangeRequest {
    pub prefix: String,
    /// Continue after this key (exclusive): the continue token of a paged list.
    pub start_after: Option<String>,
    /// At most this many keys; 0 means no limit.
    pub limit: usize,
    /// Read at this past revision (within the history window); None = latest.
    pub revision: Option<Revision>,
}

/// The answer to a [`RangeRequest`].
#[derive(Debug, Clone, Default)]
pub struct RangeResponse {
    pub kvs: Vec<KeyValue>,
    /// The revision the read was served at.
    pub revision: Revision,
    /// True when `limit` cut the result short; continue after the last key.
    pub more: bool,
    /// Keys left after this page when `more` is true.
    pub remaining: u64,
}

/// A guard of a transaction.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Compare {
    /// The key's mod_revision equals this (0 means "the key does not exist").
    ModRevision { key: String, equals: Revision },
}

/// One write of a transaction.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum TxnOp {
    Put { key: String, value: Vec<u8> },
    Delete { key: String },
}

/// etcd's `Txn(If(compares).Then(success).Else(failure))`, committed at one revision.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Txn {
    pub compares: Vec<Compare>,
    pub success: Vec<TxnOp>,
    pub failure: Vec<TxnOp>,
}

/// What a committed transaction did.
#[derive(Debug, Clone, Default)]
pub struct TxnResponse {
    /// Whether every compare held (so `success` ran, else `failure`).
    pub succeeded: bool,
    /// The revision of the store after the transaction (unchanged if no op ran).
    pub revision: Revision,
    /// For each op that ran, the key-value before it (None if absent).
    pub prev: Vec<Option<KeyValue>>,
}

/// One change seen by a watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchEvent {
    /// A key was created or updated; `kv.mod_revision` is the event's revision.
    Put {
        kv: KeyValue,
        prev: Option<KeyValue>,
    },
    /// A key was deleted at `revision`; `prev` is its last value.
    Delete { prev: KeyValue, revision: Revision },
    /// Every event up to `revision` has been delivered (a bookmark).
    Progress { revision: Revision },
}

impl WatchEvent {
    /// The revision this event happened at (or, for progress, the revision reached).
    pub fn revision(&self) -> Revision {
        match self {
            WatchEvent::Put { kv, .. } => kv.mod_revision,
            WatchEvent::Delete { revision, .. } | WatchEvent::Progress { revision } => *revision,
        }
    }
}

/// Errors a store caller can act on.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum StoreError {
    /// A guarded write found a different mod_revision (→ 409 Conflict).
    #[error("conflict on {key}: expected mod_revision {expected}, found {actual}")]
    Conflict {
        key: String,
        expected: Revision,
        actual: Revision,
    },
    /// create-if-absent found the key present (→ 409 AlreadyExists).
    #[error("key {key} already exists")]
    AlreadyExists { key: String },
    /// The key does not exist (→ 404).
    #[error("key {key} not found")]
    NotFound { key: String },
    /// The requested revision was compacted away (→ 410 Gone); resume from a newer one.
    #[error("revision {requested} has been compacted; oldest available is {compacted}")]
    Compacted {
        requested: Revision,
        compacted: Revision,
    },
    /// The requested revision is newer than the store's (→ 504/Timeout in the API).
    #[error("revision {requested} is in the future; current is {current}")]
    FutureRevision {
        requested: Revision,
        current: Revision,
    },
    /// A watcher fell too far behind and was cut off; resume from `resume_after`.
    #[error("watcher lagged and was cut off; resume after revision {resume_after}")]
    WatchLagged { resume_after: Revision },
    /// No quorum or no leader right now (→ 503); retry.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The member stopped because its storage failed; it serves nothing further.
    #[error("storage failure: {0}")]
    Storage(String),
    /// The store is shutting down.
    #[error("store is shutting down")]
    Shutdown,
}

/// How to open a store member.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// Directory holding the Raft log, the state machine and snapshots.
    pub data_dir: PathBuf,
    /// This member's Raft id (1 for the first member of a cluster).
    pub node_id: u64,
    /// The address other members reach this member's Raft RPCs at
    /// (`https://host:port` of the control-plane port).
    pub advertise_url: String,
    /// How long past revisions stay readable and watchable (default 5 minutes).
    pub history_window: Duration,
}
