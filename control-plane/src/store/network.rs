//! Talking to other members: the [`Transport`] that carries one request to a
//! peer (HTTP POST to `<url>/internal/raft/<path>` by default; tests swap in
//! a fault-injecting one), and openraft's network built on it. Bodies are
//! the checksummed binary codec of `raft_types`.

use std::sync::Arc;
use std::time::Duration;

use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::{Deserialize, Serialize};

use super::raft_types::{Node, NodeId, TypeConfig, decode, encode};
use super::types::StoreError;

/// A failure to reach a peer or to get an answer from it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TransportError {
    /// The request was never delivered (e.g. connection refused); safe to retry.
    #[error("peer unreachable: {0}")]
    Unreachable(String),
    /// The request may have been delivered but no answer came back.
    #[error("no answer from peer: {0}")]
    NoAnswer(String),
}

/// Carries one request body to a member and returns its response body.
#[async_trait::async_trait]
pub trait Transport: Send + Sync + 'static {
    /// POSTs `body` to `path` (e.g. `append`) of member `target` at `url`.
    async fn call(
        &self,
        target: u64,
        url: &str,
        path: &str,
        body: Vec<u8>,
        timeout: Duration,
    ) -> Result<Vec<u8>, TransportError>;
}

/// The default transport: HTTP(S) POST with reqwest.
pub struct HttpTransport {
    client: reqwest::Client,
    token: Option<String>,
}

impl HttpTransport {
    /// A transport trusting `ca_pem` (the cluster CA) for https peers; plain http always works.
    pub fn new(ca_pem: Option<&str>) -> Result<HttpTransport, StoreError> {
        let mut roots = rustls::RootCertStore::empty();
        if let Some(pem) = ca_pem {
            for cert in rustls_pemfile::certs(&mut pem.as_bytes()) {
                let cert = cert.map_err(|e| StoreError::Storage(format!("peer CA: {e}")))?;
                roots
                    .add(cert)
                    .map_err(|e| StoreError::Storage(format!("peer CA: {e}")))?;
            }
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| StoreError::Storage(format!("peer TLS: {e}")))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let builder = reqwest::Client::builder()
            .pool_max_idle_per_host(64)
            .tcp_nodelay(true)
            .tls_backend_preconfigured(tls);
        let client = builder
            .build()
            .map_err(|e| StoreError::Storage(format!("peer client: {e}")))?;
        Ok(HttpTransport {
            client,
            token: None,
        })
    }

    /// Presents `token` (the member secret) as a bearer token on every call.
    pub fn with_token(mut self, token: Option<String>) -> HttpTransport {
        self.token = token;
        self
    }
}

#[async_trait::async_trait]
impl Transport for HttpTransport {
    async fn call(
        &self,
        _target: u64,
        url: &str,
        path: &str,
        body: Vec<u8>,
        timeout: Duration,
    ) -> Result<Vec<u8>, TransportError> {
        let url = format!("{}/internal/raft/{path}", url.trim_end_matches('/'));
        let mut request = self
            .client
            .post(&url)
            .timeout(timeout)
            .header("content-type", "application/octet-stream");
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        let response = request.body(body).send().await.map_err(|e| {
            if e.is_connect() {
                TransportError::Unreachable(format!("{url}: {e}"))
            } else {
                TransportError::NoAnswer(format!("{url}: {e}"))
            }
        })?;
        if !response.status().is_success() {
            return Err(TransportError::NoAnswer(format!(
                "{url}: HTTP {}",
                response.status()
            )));
        }
        let bytes = response
            .bytes()
            .await
            .map_err(|e| TransportError::NoAnswer(format!("{url}: {e}")))?;
        Ok(bytes.to_vec())
    }
}

/// Sends `request` to `path` on a member and decodes its `Result<Resp, E>` answer.
pub async fn rpc<Req: Serialize, Resp: for<'de> Deserialize<'de>, E: for<'de> Deserialize<'de>>(
    transport: &dyn Transport,
    target: u64,
    url: &str,
    path: &str,
    request: &Req,
    timeout: Duration,
) -> Result<Result<Resp, E>, TransportError> {
    let body = encode(request).map_err(|e| TransportError::Unreachable(e.to_string()))?;
    let answer = transport.call(target, url, path, body, timeout).await?;
    decode(&answer).map_err(|e| TransportError::NoAnswer(e.to_string()))
}

/// openraft's network factory over a [`Transport`].
#[derive(Clone)]
pub struct Network {
    transport: Arc<dyn Transport>,
}

impl Network {
    pub fn new(transport: Arc<dyn Transport>) -> Network {
        Network { transport }
    }
}

/// A connection to one peer.
pub struct Peer {
    transport: Arc<dyn Transport>,
    target: NodeId,
    url: String,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Peer;

    async fn new_client(&mut self, target: NodeId, node: &Node) -> Peer {
        Peer {
            transport: self.transport.clone(),
            target,
            url: node.addr.clone(),
        }
    }
}

type RpcResult<T, E = openraft::error::Infallible> =
    Result<T, RPCError<NodeId, Node, RaftError<NodeId, E>>>;

impl Peer {
    async fn send<Req: Serialize, Resp: for<'de> Deserialize<'de>, E>(
        &self,
        path: &str,
        request: &Req,
        option: &RPCOption,
    ) -> RpcResult<Resp, E>
    where
        E: std::error::Error + for<'de> Deserialize<'de>,
    {
        let timeout = option.hard_ttl();
        match rpc::<Req, Resp, RaftError<NodeId, E>>(
            &*self.transport,
            self.target,
            &self.url,
            path,
            request,
            timeout,
        )
        .await
        {
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(remote)) => Err(RPCError::RemoteError(RemoteError::new(self.target, remote))),
            Err(e @ TransportError::Unreachable(_)) => {
                Err(RPCError::Unreachable(Unreachable::new(&e)))
            }
            Err(e @ TransportError::NoAnswer(_)) => Err(RPCError::Network(NetworkError::new(&e))),
        }
    }
}

impl RaftNetwork<TypeConfig> for Peer {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<NodeId>> {
        self.send("append", &rpc, &option).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<NodeId>, InstallSnapshotError> {
        self.send("snapshot", &rpc, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> RpcResult<VoteResponse<NodeId>> {
        self.send("vote", &rpc, &option).await
    }
}
