//! Starts a control-plane member: the store, the API server in front of it,
//! and the scheduler and controllers as clients of that API. Shared by
//! `skiff up` and `skiff server`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use skiff_control_plane::api::{self, ApiConfig, ApiHandle};
use skiff_control_plane::controllers::runtime::SharedInformers;
use skiff_control_plane::join::{Bundle, JoinToken, fetch_bundle};
use skiff_control_plane::pki::ClusterCredentials;
use skiff_control_plane::store::{Store, StoreConfig, StoreOptions};
use skiff_control_plane::{controllers, scheduler};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// What a control-plane member needs to know to start.
pub struct ControlPlaneOptions {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    /// Extra names and addresses the API certificate must carry.
    pub san_hosts: Vec<String>,
    pub history_window: Duration,
    /// Join the cluster of this member URL (a fresh data dir fetches the
    /// cluster's key material with `join_token` first).
    pub join: Option<String>,
    pub join_token: Option<String>,
    /// The URL other members reach this one at (default: https://LISTEN).
    pub advertise_url: Option<String>,
    /// Where the audit log goes (default: DATA_DIR/audit.log).
    pub audit_log: Option<PathBuf>,
    pub scheduler: scheduler::SchedulerConfig,
    pub controllers: controllers::ControllersConfig,
}

/// A running control-plane member.
pub struct ControlPlane {
    pub store: Store,
    pub api: ApiHandle,
    /// An admin client of this member's API, for in-process components.
    pub client: kube::Client,
    pub kubeconfig_path: PathBuf,
    tasks: JoinSet<anyhow::Result<()>>,
    /// Stops the API server, once every component has stopped: they still
    /// talk to it while stopping (the scheduler and the controller manager
    /// give their leases up, so a restart takes over at once rather than
    /// after the lease expires).
    api_shutdown: CancellationToken,
}

/// Opens the store, serves the API, writes the admin kubeconfig and starts
/// the scheduler and the controllers.
pub async fn start(
    mut options: ControlPlaneOptions,
    shutdown: CancellationToken,
) -> anyhow::Result<ControlPlane> {
    if options.listen.port() == 0 {
        // The store must know its URL before the API server binds: pick the port now.
        let probe = std::net::TcpListener::bind(options.listen)
            .with_context(|| format!("cannot listen on {}", options.listen))?;
        options.listen = probe
            .local_addr()
            .context("cannot read the bound address")?;
    }
    std::fs::create_dir_all(&options.data_dir).with_context(|| {
        format!(
            "cannot create data directory {}",
            options.data_dir.display()
        )
    })?;
    let mut san_hosts = options.san_hosts.clone();
    san_hosts.push(options.listen.ip().to_string());
    if let Some(url) = &options.join {
        fetch_key_material(&options.data_dir, url, options.join_token.as_deref()).await?;
    }
    let credentials = ClusterCredentials::load_or_create(&options.data_dir, &san_hosts)
        .context("cannot load the cluster credentials")?;
    let advertise_url = options.advertise_url.clone().unwrap_or_else(|| {
        let ip = options.listen.ip();
        let ip = if ip.is_unspecified() {
            std::net::IpAddr::from([127, 0, 0, 1])
        } else {
            ip
        };
        format!("https://{}", SocketAddr::new(ip, options.listen.port()))
    });
    let store = Store::open_with(
        StoreConfig {
            data_dir: options.data_dir.join("store"),
            node_id: member_id(&options.data_dir, options.join.is_some())?,
            advertise_url,
            history_window: options.history_window,
        },
        StoreOptions {
            peer_ca_pem: Some(credentials.ca_cert_pem().to_string()),
            peer_token: Some(credentials.member_token().to_string()),
            join: options.join.clone(),
            ..StoreOptions::default()
        },
    )
    .await
    .context("cannot open the state store")?;

    let api_shutdown = CancellationToken::new();
    let api = api::start(
        ApiConfig {
            listen: options.listen,
            data_dir: options.data_dir.clone(),
            san_hosts,
            audit_log: options.audit_log.clone(),
            shutdown: api_shutdown.clone(),
        },
        store.clone(),
    )
    .await
    .context("cannot start the API server")?;

    let kubeconfig_path = options.data_dir.join("kubeconfig.yaml");
    write_private(&kubeconfig_path, api.admin_kubeconfig.as_bytes())
        .with_context(|| format!("cannot write {}", kubeconfig_path.display()))?;
    let client = in_process_client(&api.admin_kubeconfig, api.local.clone()).await?;

    let mut tasks = JoinSet::new();
    // One watch per kind for the scheduler and the controller manager both.
    let informers = SharedInformers::new(client.clone(), shutdown.clone());
    {
        let (client, shutdown) = (client.clone(), shutdown.clone());
        let (config, informers) = (options.scheduler.clone(), informers.clone());
        tasks.spawn(async move {
            scheduler::run(client, config, informers, shutdown)
                .await
                .context("scheduler failed")
        });
    }
    {
        let (client, shutdown) = (client.clone(), shutdown.clone());
        let mut config = options.controllers.clone();
        config.root_ca_pem = Some(credentials.ca_cert_pem().to_string());
        tasks.spawn(async move {
            controllers::run(client, config, informers, shutdown)
                .await
                .context("controllers failed")
        });
    }
    Ok(ControlPlane {
        store,
        api,
        client,
        kubeconfig_path,
        tasks,
        api_shutdown,
    })
}

impl ControlPlane {
    /// Adds another component that stops with the control plane.
    pub fn spawn(&mut self, task: impl Future<Output = anyhow::Result<()>> + Send + 'static) {
        self.tasks.spawn(task);
    }

    /// Waits for every component to stop (after shutdown is cancelled, or
    /// when one fails: the failure cancels the rest), then closes the store.
    pub async fn wait(mut self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let mut first_error = None;
        while let Some(joined) = self.tasks.join_next().await {
            let result = joined.map_err(anyhow::Error::from).and_then(|r| r);
            if let Err(err) = result {
                if !shutdown.is_cancelled() {
                    tracing::error!("{err:#}; shutting down");
                    shutdown.cancel();
                }
                first_error.get_or_insert(err);
            }
        }
        shutdown.cancel();
        self.api_shutdown.cancel();
        self.api.stopped().await;
        self.store.shutdown().await;
        tracing::info!("control plane stopped");
        first_error.map_or(Ok(()), Err)
    }
}

/// On a fresh data dir, fetches the cluster's key material from `url` with the join token.
async fn fetch_key_material(data_dir: &Path, url: &str, token: Option<&str>) -> anyhow::Result<()> {
    if data_dir.join("pki/ca.crt").exists() {
        return Ok(());
    }
    let token = token.context("--join needs --token (printed by the first member at start)")?;
    let token = JoinToken::parse(token)?;
    let bundle: Bundle = fetch_bundle(url, &token)
        .await
        .with_context(|| format!("cannot join the cluster at {url}"))?;
    bundle
        .install(data_dir)
        .context("cannot write the cluster's key material")?;
    tracing::info!(%url, "fetched the cluster's key material");
    Ok(())
}

/// This member's Raft id: 1 for the member that bootstraps a cluster, a
/// random id for a joining one; kept in `DATA_DIR/member-id` across restarts.
fn member_id(data_dir: &Path, joining: bool) -> anyhow::Result<u64> {
    let path = data_dir.join("member-id");
    if let Ok(text) = std::fs::read_to_string(&path) {
        return text
            .trim()
            .parse()
            .with_context(|| format!("{} does not hold a member id", path.display()));
    }
    let id = if joining { rand_member_id() } else { 1 };
    std::fs::write(&path, id.to_string())
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(id)
}

fn rand_member_id() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    (hasher.finish() >> 1).max(2)
}

/// The token other control-plane members join with (`skiff server --join URL --token T`).
pub fn join_token(control_plane: &ControlPlane) -> String {
    JoinToken::for_cluster(&control_plane.api.credentials).to_string()
}

/// Requests one in-process client sends at once (see `request_limit`).
const CLIENT_MAX_IN_FLIGHT: usize = 128;

/// How long an in-process client keeps an idle connection to the API server.
/// kube-rs's own builder sets no pool timer, so its idle connections are
/// never closed: every connection a start-up burst opened (50 or so, ~190
/// KiB each for both ends in this process) stayed for the life of the process.
const CLIENT_IDLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// A kube-rs client for a kubeconfig held in memory: kube-rs's request stack
/// (base URI, auth, headers, its retry policy) over a hyper client whose idle
/// connections close after [`CLIENT_IDLE_TIMEOUT`], with at most
/// [`CLIENT_MAX_IN_FLIGHT`] requests (so connections) in flight.
pub async fn client_from_kubeconfig(yaml: &str) -> anyhow::Result<kube::Client> {
    use kube::client::ConfigExt as _;

    let config = config_from_kubeconfig(yaml).await?;
    let mut http = hyper_util::client::legacy::connect::HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    let https = config
        .rustls_https_connector_with_connector(http)
        .context("cannot build the API client's TLS connector")?;
    let hyper = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .pool_idle_timeout(CLIENT_IDLE_TIMEOUT)
        .pool_timer(hyper_util::rt::TokioTimer::new())
        .build(https);
    client_over(&config, hyper)
}

/// A kube-rs client of this process's own API server, for the components
/// `skiff up` and `skiff server` run next to it: the same request stack and
/// credentials as [`client_from_kubeconfig`], but each request is handed to
/// the API router in-process instead of crossing a loopback TLS connection
/// (authentication, authorization, admission and audit still apply).
pub async fn in_process_client(yaml: &str, api: api::LocalApi) -> anyhow::Result<kube::Client> {
    let config = config_from_kubeconfig(yaml).await?;
    client_over(&config, api)
}

async fn config_from_kubeconfig(yaml: &str) -> anyhow::Result<kube::Config> {
    let kubeconfig = kube::config::Kubeconfig::from_yaml(yaml).context("invalid kubeconfig")?;
    kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .context("unusable kubeconfig")
}

/// kube-rs's request stack over `transport`, with at most
/// [`CLIENT_MAX_IN_FLIGHT`] requests in flight.
fn client_over<T, B>(config: &kube::Config, transport: T) -> anyhow::Result<kube::Client>
where
    T: tower::Service<http::Request<kube::client::Body>, Response = http::Response<B>>
        + Clone
        + Send
        + Sync
        + 'static,
    T::Future: Send + 'static,
    T::Error: Into<tower::BoxError>,
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<tower::BoxError>,
{
    use kube::client::ConfigExt as _;
    use kube::client::retry::RetryPolicy;
    use tower::ServiceBuilder;
    use tower::retry::RetryLayer;

    let service = ServiceBuilder::new()
        .layer(config.base_uri_layer())
        .option_layer(
            config
                .default_retry
                .then(|| RetryLayer::new(RetryPolicy::server_retry())),
        )
        .option_layer(config.auth_layer().context("API client credentials")?)
        .layer(config.extra_headers_layer().context("API client headers")?)
        .layer(super::request_limit::RequestLimitLayer::new(
            CLIENT_MAX_IN_FLIGHT,
        ))
        .map_err(Into::<tower::BoxError>::into)
        .service(transport);
    Ok(kube::Client::new(service, config.default_namespace.clone()))
}

/// Writes a file only its owner can read (it holds credentials).
fn write_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, contents)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))?;
    }
    std::fs::rename(&tmp, path)
}
