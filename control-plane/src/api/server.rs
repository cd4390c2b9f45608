//! The API server's entry point: binds the port, loads the cluster
//! credentials, serves HTTP/1.1 and HTTP/2 over TLS (hyper-util auto, with
//! upgrades for exec/port-forward), mounts the store's Raft RPCs under
//! `/internal/raft`, the health endpoints, and the authenticated API (with
//! Secrets encrypted at rest and an audit log of every request).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt as _;

use super::audit::{self, AuditLog};
use super::auth::{Authenticator, Authorizer};
use super::encryption::Encryption;
use super::error::ApiError;
use super::local::LocalApi;
use super::objects::ObjectStore;
use super::pipeline::{self, ClientCert, PeerAddr};
use super::state::{ApiState, SharedState, http_client};
use super::{body, bootstrap, discovery, handlers, openapi};
use crate::pki::ClusterCredentials;
use crate::store::Store;

/// How to run the API server.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// Address to listen on (port 0 picks a free port).
    pub listen: SocketAddr,
    /// Directory for the cluster credentials (`<data_dir>/pki`, including
    /// the key Secrets are encrypted with at rest) and the audit log.
    pub data_dir: PathBuf,
    /// Extra host names or IPs the server certificate must carry.
    pub san_hosts: Vec<String>,
    /// The audit log file (JSON lines, rotated at 100 MiB, 3 kept);
    /// `None` is `<data_dir>/audit.log`.
    pub audit_log: Option<PathBuf>,
    /// Cancel to stop the server.
    pub shutdown: CancellationToken,
}

/// A running API server.
pub struct ApiHandle {
    /// The bound address.
    pub local_addr: SocketAddr,
    /// `https://host:port` clients use.
    pub url: String,
    /// An admin kubeconfig (YAML) for this server.
    pub admin_kubeconfig: String,
    /// The cluster CA certificate (PEM).
    pub ca_cert_pem: String,
    /// The cluster credentials (for components that issue tokens or certificates).
    pub credentials: ClusterCredentials,
    /// The same API for clients in this process, without the socket.
    pub local: LocalApi,
    task: JoinHandle<()>,
}

impl ApiHandle {
    /// Waits until the server has stopped (after its shutdown token was
    /// cancelled) and the audit log has what was queued for it.
    pub async fn stopped(self) {
        let _ = self.task.await;
    }
}

fn url_host(addr: &SocketAddr) -> String {
    match addr.ip() {
        ip if ip.is_unspecified() && ip.is_ipv4() => "127.0.0.1".into(),
        ip if ip.is_unspecified() => "[::1]".into(),
        std::net::IpAddr::V6(ip) => format!("[{ip}]"),
        ip => ip.to_string(),
    }
}

/// Starts the API server in front of `store`.
pub async fn start(config: ApiConfig, store: Store) -> Result<ApiHandle, ApiError> {
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|e| ApiError::Internal(format!("binding {}: {e}", config.listen)))?;
    let local_addr = listener
        .local_addr()
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let host = url_host(&local_addr);
    let mut sans = config.san_hosts.clone();
    sans.push(host.trim_matches(['[', ']']).to_string());
    if !local_addr.ip().is_unspecified() {
        sans.push(local_addr.ip().to_string());
    }
    let credentials = ClusterCredentials::load_or_create(&config.data_dir, &sans)
        .map_err(|e| ApiError::Internal(format!("cluster credentials: {e}")))?;
    let url = format!("https://{host}:{}", local_addr.port());
    let encryption = Encryption::new(credentials.encryption_key())?;
    let authenticator = Authenticator::new(&credentials)?.with_store(store.clone());
    let authorizer = Authorizer::start(store.clone(), config.shutdown.clone()).await?;
    let audit_path = config
        .audit_log
        .clone()
        .unwrap_or_else(|| config.data_dir.join(audit::DEFAULT_FILE));
    let (audit, audit_writer) = AuditLog::start(&audit_path, audit::Limits::default())?;
    let state: SharedState = Arc::new(ApiState {
        store: ObjectStore::new(store.clone(), encryption),
        authenticator,
        authorizer,
        audit,
        shutdown: config.shutdown.clone(),
        server_address: format!("{host}:{}", local_addr.port()),
        http: http_client(),
    });
    bootstrap::ensure_defaults(&state, local_addr).await;
    let router = router(state.clone(), store.router()).merge(join_routes(credentials.clone()));
    let tls = tokio_rustls::TlsAcceptor::from(credentials.server_tls_config());
    let local = LocalApi::new(router.clone());
    let serving = serve(listener, tls, router, config.shutdown.clone());
    let task = tokio::spawn(async move {
        serving.await;
        audit_writer.finished(Duration::from_secs(5)).await;
    });
    tracing::info!(%url, "API server listening");
    Ok(ApiHandle {
        local_addr,
        admin_kubeconfig: credentials.admin_kubeconfig(&url),
        ca_cert_pem: credentials.ca_cert_pem().to_string(),
        url,
        credentials,
        local,
        task,
    })
}

fn router(state: SharedState, raft: Router) -> Router {
    let authed = Router::new()
        .route("/openapi/v2", get(openapi_v2))
        .route(
            "/openapi/v3",
            get(|| async { body::ok(&openapi::v3_index()) }),
        )
        .route("/openapi/v3/{*path}", get(openapi_v3))
        .route("/skiff/v1/store/snapshot", get(store_snapshot))
        .route("/api", any(handlers::dispatch))
        .route("/api/{*rest}", any(handlers::dispatch))
        .route("/apis", any(handlers::dispatch))
        .route("/apis/{*rest}", any(handlers::dispatch))
        .fallback(|uri: http::Uri| async move {
            ApiError::NotFound {
                group: String::new(),
                kind: String::new(),
                name: uri.path().to_string(),
            }
            .into_response()
        })
        .layer(middleware::from_fn_with_state(
            state.clone(),
            pipeline::authenticate_and_authorize,
        ))
        .with_state(state.clone());
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/livez", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .route(
            "/version",
            get(|| async { body::ok(&discovery::version()) }),
        )
        .with_state(state)
        .nest_service("/internal/raft", raft)
        .merge(authed)
}

/// A backup of the store (what `skiff store snapshot save` writes), like
/// etcd's snapshot RPC: a linearizable read saved to a checksummed file.
/// RBAC sees it as the non-resource URL, so only admins may take one.
async fn store_snapshot(State(state): State<SharedState>) -> Response {
    let path = std::env::temp_dir().join(format!("skiff-snapshot-{}", uuid::Uuid::new_v4()));
    let saved = state.store.save_snapshot(&path).await;
    let result = match saved {
        Ok(revision) => tokio::fs::read(&path)
            .await
            .map(|bytes| (revision, bytes))
            .map_err(|e| ApiError::Internal(format!("reading the snapshot: {e}"))),
        Err(e) => Err(ApiError::from(e)),
    };
    let _ = tokio::fs::remove_file(&path).await;
    match result {
        Ok((revision, bytes)) => {
            let mut response = bytes.into_response();
            let headers = response.headers_mut();
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            );
            if let Ok(value) = HeaderValue::from_str(&revision.to_string()) {
                headers.insert("x-skiff-revision", value);
            }
            response
        }
        Err(e) => e.into_response(),
    }
}

/// What a joining control-plane member fetches (see `crate::join`): the CA
/// (public, unauthenticated) and the shared key material (member secret).
fn join_routes(credentials: ClusterCredentials) -> Router {
    let ca = credentials.ca_cert_pem().to_string();
    Router::new()
        .route("/internal/cluster/ca", get(move || async move { ca }))
        .route(
            "/internal/cluster/bundle",
            get(move |headers: HeaderMap| async move {
                let presented = headers
                    .get(header::AUTHORIZATION)
                    .and_then(|v| v.to_str().ok());
                if !crate::join::bearer_matches(presented, credentials.member_token()) {
                    return ApiError::Unauthorized.into_response();
                }
                match crate::join::Bundle::read(&credentials) {
                    Ok(bundle) => axum::Json(bundle).into_response(),
                    Err(e) => {
                        ApiError::Internal(format!("reading the key material: {e}")).into_response()
                    }
                }
            }),
        )
}

async fn ready(State(state): State<SharedState>) -> Response {
    match tokio::time::timeout(
        Duration::from_secs(3),
        state.store.get("/registry/core/namespaces/default"),
    )
    .await
    {
        Ok(Ok(_)) => "ok".into_response(),
        Ok(Err(e)) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("[-]etcd failed: {e}\nreadyz check failed"),
        )
            .into_response(),
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "[-]etcd failed: timeout\nreadyz check failed",
        )
            .into_response(),
    }
}

async fn openapi_v2(headers: HeaderMap) -> Response {
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if accept.contains("protobuf") {
        let mut resp = openapi::v2_protobuf().into_response();
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/com.github.proto-openapi.spec.v2.v1.0+protobuf"),
        );
        return resp;
    }
    body::ok(&openapi::v2_json())
}

async fn openapi_v3(Path(path): Path<String>) -> Response {
    let segs: Vec<&str> = path.split('/').collect();
    let doc = match segs.as_slice() {
        ["api", version] => openapi::v3_group_version("", version),
        ["apis", group, version] => openapi::v3_group_version(group, version),
        _ => None,
    };
    match doc {
        Some(d) => body::ok(&d),
        None => ApiError::NotFound {
            group: String::new(),
            kind: String::new(),
            name: path,
        }
        .into_response(),
    }
}

async fn serve(
    listener: TcpListener,
    tls: tokio_rustls::TlsAcceptor,
    router: Router,
    shutdown: CancellationToken,
) {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    loop {
        let (tcp, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed; retrying");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = tcp.set_nodelay(true);
        let (tls, router, watcher) = (tls.clone(), router.clone(), graceful.watcher());
        tokio::spawn(async move {
            let stream = match tokio::time::timeout(Duration::from_secs(10), tls.accept(tcp)).await
            {
                Ok(Ok(stream)) => stream,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => return,
            };
            let cert = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .map(|c| Arc::new(c.to_vec()));
            let svc = router.map_request(move |mut req: http::Request<hyper::body::Incoming>| {
                req.extensions_mut().insert(ClientCert(cert.clone()));
                req.extensions_mut().insert(PeerAddr(peer));
                req
            });
            let builder = auto::Builder::new(TokioExecutor::new());
            let conn = builder.serve_connection_with_upgrades(
                TokioIo::new(stream),
                TowerToHyperService::new(svc),
            );
            if let Err(e) = watcher.watch(conn.into_owned()).await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(Duration::from_secs(5)) => tracing::warn!("connections still open after 5s; closing"),
    }
    tracing::info!("API server stopped");
}
