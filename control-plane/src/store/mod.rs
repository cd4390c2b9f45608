//! The cluster state store, the etcd of skiff: an MVCC key-value map with one
//! global revision, watches and compaction, replicated with openraft and kept
//! on disk in redb. This module is the only interface the API server sees;
//! openraft and redb types never leave it.
//!
//! The contract (signatures below) is what the API server codes against; the
//! bodies are being written.

mod types;

pub use types::*;

/// A handle to this member's store; cheap to clone.
#[derive(Clone)]
pub struct Store {}

/// A stream of watch events in revision order; ends with an error the
/// watcher can resume from (Compacted, WatchLagged, Shutdown).
pub struct Watch {}

impl Watch {
    /// The next event, or None when the store shut down cleanly.
    pub async fn next(&mut self) -> Option<Result<WatchEvent, StoreError>> {
        todo!("store: watch")
    }
}

#[allow(unused_variables)]
impl Store {
    /// Opens (or creates, as a single-member cluster) the store in `config.data_dir`.
    pub async fn open(config: StoreConfig) -> Result<Store, StoreError> {
        todo!("store: open")
    }

    /// The latest value of `key` (a linearizable read).
    pub async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        todo!("store: get")
    }

    /// The value of `key` as of `revision` (within the history window).
    pub async fn get_at(&self, key: &str, revision: Revision) -> Result<Option<KeyValue>, StoreError> {
        todo!("store: get_at")
    }

    /// Keys under a prefix, paged.
    pub async fn range(&self, request: RangeRequest) -> Result<RangeResponse, StoreError> {
        todo!("store: range")
    }

    /// Creates `key`; AlreadyExists if present.
    pub async fn create(&self, key: &str, value: Vec<u8>) -> Result<KeyValue, StoreError> {
        todo!("store: create")
    }

    /// Replaces `key` if its mod_revision is `expected_mod_revision`; Conflict or NotFound otherwise.
    pub async fn update(&self, key: &str, value: Vec<u8>, expected_mod_revision: Revision) -> Result<KeyValue, StoreError> {
        todo!("store: update")
    }

    /// Deletes `key` (guarded when `expected_mod_revision` is Some); returns
    /// the deleted value and the revision of the delete.
    pub async fn delete(&self, key: &str, expected_mod_revision: Option<Revision>) -> Result<(KeyValue, Revision), StoreError> {
        todo!("store: delete")
    }

    /// A multi-key transaction committed at one revision.
    pub async fn txn(&self, txn: Txn) -> Result<TxnResponse, StoreError> {
        todo!("store: txn")
    }

    /// Every event under `prefix` with revision > `after_revision`, then live ones.
    pub async fn watch(&self, prefix: &str, after_revision: Revision) -> Result<Watch, StoreError> {
        todo!("store: watch")
    }

    /// The revision of the last committed write applied on this member.
    pub fn current_revision(&self) -> Revision {
        todo!("store: current_revision")
    }

    /// Revisions at or below this have been compacted away.
    pub fn compacted_revision(&self) -> Revision {
        todo!("store: compacted_revision")
    }

    /// Raft RPC endpoints (and follower→leader write forwarding) for the
    /// control-plane port; the API server mounts this under `/internal/raft`.
    pub fn router(&self) -> axum::Router {
        todo!("store: router")
    }

    /// Stops Raft and flushes storage.
    pub async fn shutdown(&self) {
        todo!("store: shutdown")
    }
}
