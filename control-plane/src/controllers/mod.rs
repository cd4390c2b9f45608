//! The controller manager: one file per controller, each a
//! `reconcile(key, ctx) -> Result<Action>` over shared informer caches,
//! writing only through the API with resourceVersion preconditions. `run`
//! elects a leader through a Lease and starts every controller.

pub mod controller_ref;
pub mod controller_revision;
pub mod cron_schedule;
pub mod cronjob;
pub mod daemonset;
pub mod daemonset_plan;
pub mod deployment;
pub mod disruption;
pub mod endpoints;
pub mod endpointslice;
mod error;
pub mod gc;
pub mod hpa;
pub mod hpa_behavior;
pub mod hpa_metrics;
pub mod hpa_replicas;
pub mod job;
pub mod job_indexes;
pub mod job_plan;
pub mod namespace;
pub mod node_lifecycle;
pub mod per_namespace;
pub mod pod_gc;
pub mod pods;
pub mod replicaset;
pub mod root_ca_publisher;
pub mod runtime;
pub mod scale;
pub mod serviceaccount;
pub mod statefulset;
pub mod statefulset_plan;
pub mod volume_binding;
pub mod volume_match;
pub mod volume_reclaim;

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{
    ControllerRevision, DaemonSet, Deployment, ReplicaSet, StatefulSet,
};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{
    ConfigMap, Endpoints, Namespace, Node, Pod, Service, ServiceAccount,
};
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::storage::v1::StorageClass;
use kube::{Api, Client};
use tokio_util::sync::CancellationToken;

pub use error::{ControllerError, ignore_conflict, ignore_not_found};
use runtime::{EventRecorder, Informer, LeaseConfig, SharedInformers, run_elected, watch_config};

/// Controller manager settings.
#[derive(Clone, Debug)]
pub struct ControllersConfig {
    /// Workers per controller.
    pub workers: usize,
    /// A node whose heartbeat is older than this becomes Unknown (default 40 s).
    pub node_monitor_grace_period: Duration,
    /// How long pods tolerate not-ready and unreachable nodes when they
    /// carry no toleration of their own (default 300 s each, like
    /// DefaultTolerationSeconds).
    pub default_toleration_seconds: node_lifecycle::DefaultTolerationSeconds,
    /// First wait before a Job replaces a failed pod, doubled per further
    /// failure up to six minutes (default 10 s, as Kubernetes).
    pub job_pod_failure_backoff: Duration,
    /// How often node heartbeats are checked.
    pub node_monitor_period: Duration,
    /// How often each HorizontalPodAutoscaler is synced (default 15 s).
    pub hpa_sync_period: Duration,
    /// Scale-down stabilization window of HPAs that set none (default 300 s).
    pub hpa_downscale_stabilization: Duration,
    /// Metric ratios within this distance of 1 change nothing (default 0.1).
    pub hpa_tolerance: f64,
    /// Terminated pods kept before PodGC deletes the oldest (default 12500; 0 keeps all).
    pub terminated_pod_gc_threshold: usize,
    /// The cluster CA (PEM) the root CA publisher puts in every namespace's
    /// `kube-root-ca.crt` ConfigMap; None publishes nothing.
    pub root_ca_pem: Option<String>,
    pub lease: LeaseConfig,
}

impl Default for ControllersConfig {
    fn default() -> Self {
        Self {
            workers: 2,
            node_monitor_grace_period: Duration::from_secs(40),
            default_toleration_seconds: Default::default(),
            job_pod_failure_backoff: Duration::from_secs(10),
            node_monitor_period: Duration::from_secs(5),
            hpa_sync_period: Duration::from_secs(15),
            hpa_downscale_stabilization: Duration::from_secs(300),
            hpa_tolerance: 0.1,
            terminated_pod_gc_threshold: 12500,
            root_ca_pem: None,
            lease: LeaseConfig::new("kube-controller-manager"),
        }
    }
}

/// Shared state of all controllers: the client and the informers.
pub struct Ctx {
    pub client: Client,
    pub config: ControllersConfig,
    recorder: EventRecorder,
    pub pods: Informer<Pod>,
    pub nodes: Informer<Node>,
    pub node_leases: Informer<Lease>,
    pub namespaces: Informer<Namespace>,
    pub services: Informer<Service>,
    pub endpoints: Informer<Endpoints>,
    pub endpoint_slices: Informer<EndpointSlice>,
    pub service_accounts: Informer<ServiceAccount>,
    /// Only the `kube-root-ca.crt` ConfigMaps (field selector on the name).
    pub root_ca_config_maps: Informer<ConfigMap>,
    pub replica_sets: Informer<ReplicaSet>,
    pub deployments: Informer<Deployment>,
    pub daemon_sets: Informer<DaemonSet>,
    pub stateful_sets: Informer<StatefulSet>,
    pub controller_revisions: Informer<ControllerRevision>,
    pub jobs: Informer<Job>,
    pub cron_jobs: Informer<CronJob>,
    pub hpas: Informer<HorizontalPodAutoscaler>,
    pub pdbs: Informer<PodDisruptionBudget>,
    pub pvs: Informer<PersistentVolume>,
    pub pvcs: Informer<PersistentVolumeClaim>,
    pub storage_classes: Informer<StorageClass>,
    pub heartbeats: node_lifecycle::Heartbeats,
    pub hpa_history: hpa::History,
    pub orphan_nodes: pod_gc::Quarantine,
}

impl Ctx {
    /// Records Events as `component` (each controller has its own name, as
    /// in kube-controller-manager), sharing one queue and rate limit.
    pub fn events(&self, component: &'static str) -> EventRecorder {
        self.recorder.for_component(component)
    }

    /// Takes every informer the controllers share from `informers` (the
    /// ones of this process, also the scheduler's), and starts the two
    /// watches only they make: Leases in `kube-node-lease` and the
    /// `kube-root-ca.crt` ConfigMaps.
    pub fn start(
        client: Client,
        config: ControllersConfig,
        informers: &SharedInformers,
        shutdown: &CancellationToken,
    ) -> Arc<Self> {
        let c = || client.clone();
        let sd = shutdown.clone();
        Arc::new(Self {
            recorder: EventRecorder::new(c(), "kube-controller-manager"),
            pods: informers.all(),
            nodes: informers.all(),
            node_leases: Informer::spawn(
                Api::namespaced(c(), "kube-node-lease"),
                watch_config(),
                sd.clone(),
            ),
            namespaces: informers.all(),
            services: informers.all(),
            endpoints: informers.all(),
            endpoint_slices: informers.all(),
            service_accounts: informers.all(),
            root_ca_config_maps: Informer::spawn(
                Api::all(c()),
                watch_config().fields(&format!("metadata.name={}", root_ca_publisher::CONFIG_MAP)),
                sd,
            ),
            replica_sets: informers.all(),
            deployments: informers.all(),
            daemon_sets: informers.all(),
            stateful_sets: informers.all(),
            controller_revisions: informers.all(),
            jobs: informers.all(),
            cron_jobs: informers.all(),
            hpas: informers.all(),
            pdbs: informers.all(),
            pvs: informers.all(),
            pvcs: informers.all(),
            storage_classes: informers.all(),
            heartbeats: Default::default(),
            hpa_history: Default::default(),
            orphan_nodes: Default::default(),
            client,
            config,
        })
    }

    /// Waits until every shared cache holds its first full list.
    pub async fn wait_ready(&self, shutdown: &CancellationToken) {
        self.pods.wait_ready(shutdown).await;
        self.nodes.wait_ready(shutdown).await;
        self.node_leases.wait_ready(shutdown).await;
        self.namespaces.wait_ready(shutdown).await;
        self.services.wait_ready(shutdown).await;
        self.endpoints.wait_ready(shutdown).await;
        self.endpoint_slices.wait_ready(shutdown).await;
        self.service_accounts.wait_ready(shutdown).await;
        self.root_ca_config_maps.wait_ready(shutdown).await;
        self.replica_sets.wait_ready(shutdown).await;
        self.deployments.wait_ready(shutdown).await;
        self.daemon_sets.wait_ready(shutdown).await;
        self.stateful_sets.wait_ready(shutdown).await;
        self.controller_revisions.wait_ready(shutdown).await;
        self.jobs.wait_ready(shutdown).await;
        self.cron_jobs.wait_ready(shutdown).await;
        self.hpas.wait_ready(shutdown).await;
        self.pdbs.wait_ready(shutdown).await;
        self.pvs.wait_ready(shutdown).await;
        self.pvcs.wait_ready(shutdown).await;
        self.storage_classes.wait_ready(shutdown).await;
    }
}

/// Runs every controller until `shutdown`, acting only while this replica
/// holds the `kube-system/kube-controller-manager` Lease. `informers` are
/// the process's shared ones (the scheduler's too).
pub async fn run(
    client: Client,
    config: ControllersConfig,
    informers: Arc<SharedInformers>,
    shutdown: CancellationToken,
) -> Result<(), ControllerError> {
    let lease = config.lease.clone();
    run_elected(client.clone(), lease, shutdown, move |token| {
        let (client, config, informers) = (client.clone(), config.clone(), informers.clone());
        async move { run_leader(client, config, &informers, token).await }
    })
    .await
}

async fn run_leader(
    client: Client,
    config: ControllersConfig,
    informers: &SharedInformers,
    shutdown: CancellationToken,
) -> Result<(), ControllerError> {
    let ctx = Ctx::start(client.clone(), config, informers, &shutdown);
    let gc = gc::GarbageCollector::start(client, &shutdown);
    // Subscribe every controller before the first list completes, then
    // enqueue everything once the caches are warm.
    let starts = vec![
        replicaset::start(&ctx, &shutdown),
        deployment::start(&ctx, &shutdown),
        daemonset::start(&ctx, &shutdown),
        statefulset::start(&ctx, &shutdown),
        job::start(&ctx, &shutdown),
        cronjob::start(&ctx, &shutdown),
        endpoints::start(&ctx, &shutdown),
        endpointslice::start(&ctx, &shutdown),
        namespace::start(&ctx, &shutdown),
        serviceaccount::start(&ctx, &shutdown),
        root_ca_publisher::start(&ctx, &shutdown),
        node_lifecycle::start(&ctx, &shutdown),
        hpa::start(&ctx, &shutdown),
        disruption::start(&ctx, &shutdown),
        pod_gc::start(&ctx, &shutdown),
        volume_binding::start(&ctx, &shutdown),
        gc::start(gc, &ctx, &shutdown),
    ];
    ctx.wait_ready(&shutdown).await;
    tracing::info!("controller manager caches synced; starting controllers");
    let handles: Vec<_> = starts.into_iter().map(|s| tokio::spawn(s.run())).collect();
    for h in handles {
        let _ = h.await;
    }
    Ok(())
}

/// A controller ready to run once the caches are warm.
pub struct Started {
    run: std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>,
}

impl Started {
    /// Wraps the controller's worker loop.
    pub fn new(f: impl std::future::Future<Output = ()> + Send + 'static) -> Self {
        Self { run: Box::pin(f) }
    }

    /// Runs the controller until shutdown.
    pub async fn run(self) {
        self.run.await
    }
}
