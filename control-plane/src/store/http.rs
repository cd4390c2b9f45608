//! The member-to-member HTTP endpoints the API server mounts under
//! `/internal/raft`: Raft RPCs (`append`, `vote`, `snapshot`), writes and
//! read-index requests forwarded by followers (`write`, `read-index`), and
//! membership changes (`membership`). Bodies use the checksummed binary
//! codec; each answer is a `Result` the caller decodes.

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use openraft::error::{CheckIsLeaderError, InstallSnapshotError, RaftError};
use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
use serde::{Deserialize, Serialize};

use super::raft_types::{Command, NodeId, TypeConfig, decode, encode};
use super::{Store, StoreError};

/// Largest Raft RPC body a member accepts.
const RPC_BODY_LIMIT: usize = 256 << 20;

/// A membership change sent to the leader.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum MembershipOp {
    /// Add `node_id` at `url` as a learner, wait until it caught up, then make it a voter.
    Join { node_id: NodeId, url: String },
    /// Remove `node_id` from the voters and the cluster.
    Remove { node_id: NodeId },
}

pub fn router(store: Store) -> Router {
    let token = store.inner.options.peer_token.clone();
    Router::new()
        .route("/append", post(append))
        .route("/vote", post(vote))
        .route("/snapshot", post(snapshot))
        .route("/write", post(write))
        .route("/read-index", post(read_index))
        .route("/membership", post(membership))
        // Members are authenticated; an AppendEntries of 64 batch entries or
        // a snapshot chunk is far above axum's 2 MB default.
        .layer(axum::extract::DefaultBodyLimit::max(RPC_BODY_LIMIT))
        .layer(axum::middleware::from_fn(
            move |request: axum::extract::Request, next: axum::middleware::Next| {
                let token = token.clone();
                async move {
                    let presented = request
                        .headers()
                        .get(axum::http::header::AUTHORIZATION)
                        .and_then(|v| v.to_str().ok());
                    match &token {
                        Some(secret) if !crate::join::bearer_matches(presented, secret) => {
                            (StatusCode::UNAUTHORIZED, "member token required").into_response()
                        }
                        _ => next.run(request).await,
                    }
                }
            },
        ))
        .with_state(store)
}

fn reply<T: Serialize>(value: &T) -> Response {
    match encode(value) {
        Ok(bytes) => (StatusCode::OK, bytes).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

fn bad_request(e: StoreError) -> Response {
    (StatusCode::BAD_REQUEST, e.to_string()).into_response()
}

async fn append(State(store): State<Store>, body: Bytes) -> Response {
    let request: AppendEntriesRequest<TypeConfig> = match decode(&body) {
        Ok(r) => r,
        Err(e) => return bad_request(e),
    };
    reply(&store.inner.raft.append_entries(request).await)
}

async fn vote(State(store): State<Store>, body: Bytes) -> Response {
    let request: VoteRequest<NodeId> = match decode(&body) {
        Ok(r) => r,
        Err(e) => return bad_request(e),
    };
    reply(&store.inner.raft.vote(request).await)
}

async fn snapshot(State(store): State<Store>, body: Bytes) -> Response {
    let request: InstallSnapshotRequest<TypeConfig> = match decode(&body) {
        Ok(r) => r,
        Err(e) => return bad_request(e),
    };
    let result: Result<_, RaftError<NodeId, InstallSnapshotError>> =
        store.inner.raft.install_snapshot(request).await;
    reply(&result)
}

async fn write(State(store): State<Store>, body: Bytes) -> Response {
    let command: Command = match decode(&body) {
        Ok(r) => r,
        Err(e) => return bad_request(e),
    };
    reply(&store.write_as_leader(command).await)
}

async fn read_index(State(store): State<Store>, body: Bytes) -> Response {
    if let Err(e) = decode::<()>(&body) {
        return bad_request(e);
    }
    let result: Result<Option<u64>, StoreError> = match store.inner.raft.ensure_linearizable().await
    {
        Ok(log_id) => Ok(log_id.map(|id| id.index)),
        Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(_))) => {
            Err(StoreError::Unavailable("not the leader".into()))
        }
        Err(RaftError::APIError(e)) => Err(StoreError::Unavailable(e.to_string())),
        Err(RaftError::Fatal(e)) => Err(super::fatal(&e)),
    };
    reply(&result)
}

async fn membership(State(store): State<Store>, body: Bytes) -> Response {
    let op: MembershipOp = match decode(&body) {
        Ok(r) => r,
        Err(e) => return bad_request(e),
    };
    reply(&store.change_membership(op).await)
}
