//! Leader election through a coordination.k8s.io/v1 Lease, as client-go's
//! `leaderelection` does it: acquire when the lease is free or its holder
//! stopped renewing (judged by our own clock, so skew does not matter),
//! renew every retry period, step down when renewing fails for longer than
//! the renew deadline. The elected work runs under a child cancel token.

use std::future::Future;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};
use tokio_util::sync::CancellationToken;

/// Where the lease lives and how it is timed.
#[derive(Clone, Debug)]
pub struct LeaseConfig {
    pub namespace: String,
    pub name: String,
    /// This replica's identity (host name + random suffix by default).
    pub identity: String,
    pub lease_duration: Duration,
    pub renew_deadline: Duration,
    pub retry_period: Duration,
}

impl LeaseConfig {
    /// A lease named `name` in kube-system with client-go's default timings.
    pub fn new(name: &str) -> Self {
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "skiff".into());
        Self {
            namespace: "kube-system".into(),
            name: name.into(),
            identity: format!("{host}_{}", uuid::Uuid::new_v4()),
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

struct Observed {
    resource_version: Option<String>,
    at: Instant,
}

struct Elector {
    api: Api<Lease>,
    client: Client,
    cfg: LeaseConfig,
    observed: Option<Observed>,
}

impl Elector {
    /// Tries once to acquire or renew; true when we hold the lease.
    async fn try_acquire_or_renew(&mut self) -> Result<bool, kube::Error> {
        let now = MicroTime(Timestamp::now());
        let existing = self.api.get_opt(&self.cfg.name).await?;
        let Some(mut lease) = existing else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.cfg.name.clone()),
                    namespace: Some(self.cfg.namespace.clone()),
                    ..Default::default()
                },
                spec: Some(self.spec(now.clone(), now, 0)),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
                Err(kube::Error::Api(s)) if s.code == 404 => {
                    self.ensure_namespace().await?;
                    Ok(false)
                }
                Err(e) => Err(e),
            };
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().unwrap_or_default();
        let rv = lease.metadata.resource_version.clone();
        let changed = self
            .observed
            .as_ref()
            .is_none_or(|o| o.resource_version != rv);
        if changed {
            self.observed = Some(Observed {
                resource_version: rv,
                at: Instant::now(),
            });
        }
        let duration = Duration::from_secs(spec.lease_duration_seconds.unwrap_or(15).max(1) as u64);
        let expired = self
            .observed
            .as_ref()
            .is_some_and(|o| o.at.elapsed() > duration);
        let mine = holder == self.cfg.identity;
        if !mine && !holder.is_empty() && !expired {
            return Ok(false);
        }
        let transitions = spec.lease_transitions.unwrap_or(0) + i32::from(!mine);
        let acquire = if mine {
            spec.acquire_time.clone().unwrap_or(now.clone())
        } else {
            now.clone()
        };
        lease.spec = Some(self.spec(acquire, now, transitions));
        match self
            .api
            .replace(&self.cfg.name, &PostParams::default(), &lease)
            .await
        {
            Ok(l) => {
                self.observed = Some(Observed {
                    resource_version: l.metadata.resource_version,
                    at: Instant::now(),
                });
                if !mine {
                    tracing::info!(lease = %self.cfg.name, identity = %self.cfg.identity, "acquired leadership");
                }
                Ok(true)
            }
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn spec(&self, acquire: MicroTime, renew: MicroTime, transitions: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(self.cfg.identity.clone()),
            lease_duration_seconds: Some(self.cfg.lease_duration.as_secs().max(1) as i32),
            acquire_time: Some(acquire),
            renew_time: Some(renew),
            lease_transitions: Some(transitions),
            ..Default::default()
        }
    }

    async fn ensure_namespace(&self) -> Result<(), kube::Error> {
        let api: Api<Namespace> = Api::all(self.client.clone());
        let ns = Namespace {
            metadata: ObjectMeta {
                name: Some(self.cfg.namespace.clone()),
                ..Default::default()
            },
            ..Default::default()
        };
        match api.create(&PostParams::default(), &ns).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Gives the lease up so another replica can take over at once.
    async fn release(&mut self) {
        if let Ok(Some(mut lease)) = self.api.get_opt(&self.cfg.name).await {
            let spec = lease.spec.get_or_insert_with(Default::default);
            if spec.holder_identity.as_deref() == Some(self.cfg.identity.as_str()) {
                spec.holder_identity = None;
                let _ = self
                    .api
                    .replace(&self.cfg.name, &PostParams::default(), &lease)
                    .await;
            }
        }
    }
}

/// Runs `work` whenever this replica holds the lease, until `shutdown`.
/// `work` gets a token cancelled when leadership is lost; it is started again
/// after re-election. Returns when `shutdown` fires or `work` returns.
pub async fn run_elected<F, Fut, E>(
    client: Client,
    cfg: LeaseConfig,
    shutdown: CancellationToken,
    mut work: F,
) -> Result<(), E>
where
    F: FnMut(CancellationToken) -> Fut,
    Fut: Future<Output = Result<(), E>> + Send + 'static,
    E: Send + 'static,
{
    let api: Api<Lease> = Api::namespaced(client.clone(), &cfg.namespace);
    let mut el = Elector {
        api,
        client,
        cfg,
        observed: None,
    };
    loop {
        // Acquire.
        loop {
            match el.try_acquire_or_renew().await {
                Ok(true) => break,
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(lease = %el.cfg.name, error = %e, "lease acquire failed; retrying")
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                _ = tokio::time::sleep(el.cfg.retry_period) => {}
            }
        }
        let child = shutdown.child_token();
        let mut task = tokio::spawn(work(child.clone()));
        let mut last_renew = Instant::now();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => {
                    child.cancel();
                    let res = (&mut task).await;
                    el.release().await;
                    return res.unwrap_or(Ok(()));
                }
                res = &mut task => {
                    el.release().await;
                    return res.unwrap_or(Ok(()));
                }
                _ = tokio::time::sleep(el.cfg.retry_period) => {}
            }
            match el.try_acquire_or_renew().await {
                Ok(true) => last_renew = Instant::now(),
                Ok(false) => {
                    tracing::warn!(lease = %el.cfg.name, "lost the lease; stepping down");
                    break;
                }
                Err(e) => {
                    tracing::warn!(lease = %el.cfg.name, error = %e, "lease renew failed");
                    if last_renew.elapsed() > el.cfg.renew_deadline {
                        break;
                    }
                }
            }
        }
        child.cancel();
        let _ = task.await;
    }
}
