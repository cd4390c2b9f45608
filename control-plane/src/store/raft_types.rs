//! The openraft type configuration of the store and the commands that travel
//! through the Raft log: a write is always a [`Txn`] (create, update and
//! delete are guarded transactions), or a batch of them gathered from
//! concurrent writers (see `batcher`); an entry is answered by one
//! [`TxnOutcome`] per transaction. Also the
//! checksummed binary codec every record on disk and on the wire uses.

use std::io::Cursor;

use serde::{Deserialize, Serialize};

use super::mvcc::MvccImage;
use super::types::{KeyValue, Revision, StoreError, Txn};

/// A command replicated through the Raft log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// A guarded multi-key write.
    Txn(Txn),
    /// Replace the whole map with a backup's (see `backup`).
    Restore(MvccImage),
    /// Independent writes committed in one entry, in order, each at its own revision.
    Batch(Vec<Txn>),
}

/// What the state machine answered to one transaction.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnOutcome {
    /// Whether every compare held.
    pub succeeded: bool,
    /// The store revision after the entry.
    pub revision: Revision,
    /// The mod_revision each compare found (0 = absent), in compare order.
    pub compare_actual: Vec<Revision>,
    /// For each op that ran, the key-value before it.
    pub prev: Vec<Option<KeyValue>>,
    /// For each op that ran, the key-value after it (None after a delete).
    pub after: Vec<Option<KeyValue>>,
}

openraft::declare_raft_types!(
    /// The store's Raft types: node ids are u64, nodes carry their URL.
    pub TypeConfig:
        D = Command,
        R = Vec<TxnOutcome>,
);

pub type NodeId = u64;
pub type Node = openraft::BasicNode;
pub type Entry = openraft::Entry<TypeConfig>;
pub type LogId = openraft::LogId<NodeId>;
pub type Vote = openraft::Vote<NodeId>;
pub type StorageError = openraft::StorageError<NodeId>;
pub type StoredMembership = openraft::StoredMembership<NodeId, Node>;
pub type SnapshotMeta = openraft::SnapshotMeta<NodeId, Node>;
pub type Raft = openraft::Raft<TypeConfig>;

/// Encodes `value` as postcard bytes followed by a CRC32 of them.
pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, StoreError> {
    let mut bytes =
        postcard::to_stdvec(value).map_err(|e| StoreError::Storage(format!("encode: {e}")))?;
    let crc = crc32fast::hash(&bytes);
    bytes.extend_from_slice(&crc.to_le_bytes());
    Ok(bytes)
}

/// Decodes bytes written by [`encode`], refusing any whose checksum fails.
pub fn decode<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T, StoreError> {
    if bytes.len() < 4 {
        return Err(StoreError::Storage(
            "record too short for its checksum".into(),
        ));
    }
    let (body, crc) = bytes.split_at(bytes.len() - 4);
    let expected = u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]);
    if crc32fast::hash(body) != expected {
        return Err(StoreError::Storage("record failed its checksum".into()));
    }
    postcard::from_bytes(body).map_err(|e| StoreError::Storage(format!("decode: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codec_round_trips_and_detects_corruption() {
        let cmd = Command::Txn(Txn::default());
        let mut bytes = encode(&cmd).unwrap();
        assert_eq!(decode::<Command>(&bytes).unwrap(), cmd);
        let last = bytes.len() - 5;
        bytes[last] ^= 0xff;
        assert!(matches!(
            decode::<Command>(&bytes),
            Err(StoreError::Storage(_))
        ));
    }
}
