//! openraft's storage conformance suite over the redb log store and the
//! state machine.

use openraft::testing::{StoreBuilder, Suite};

use super::log_store::LogStore;
use super::raft_types::{StorageError, TypeConfig};
use super::state_machine::StateMachine;

struct Builder;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, tempfile::TempDir> for Builder {
    async fn build(&self) -> Result<(tempfile::TempDir, LogStore, StateMachine), StorageError> {
        let dir = tempfile::tempdir().map_err(|e| openraft::StorageIOError::write_logs(&e))?;
        let log = LogStore::open(&dir.path().join("log.redb"))
            .map_err(|e| openraft::StorageIOError::write_logs(&e))?;
        let sm = StateMachine::open(&dir.path().join("sm.redb"), 16)
            .map_err(|e| openraft::StorageIOError::write_state_machine(&e))?;
        Ok((dir, log, sm))
    }
}

#[test]
fn openraft_storage_suite() {
    Suite::test_all(Builder).unwrap();
}
