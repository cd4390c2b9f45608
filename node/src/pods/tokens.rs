//! ServiceAccount tokens for the `serviceAccountToken` sources of projected
//! volumes, as the kubelet's token manager keeps them: each is a
//! TokenRequest (`serviceaccounts/<name>/token`) bound to the pod, with the
//! source's audience (the API server's when empty) and expirationSeconds,
//! held per pod and replaced once 80% of its lifetime (at most 24 hours)
//! has passed. The node's identity needs `create` on
//! `serviceaccounts/token` (the `system:node` ClusterRole grants it).

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Pod, ServiceAccountTokenProjection};
use kube::api::{Api, PostParams};
use tokio::time::Instant;

/// Kubernetes' default lifetime of a projected token.
const DEFAULT_EXPIRATION: i64 = 3600;
/// Tokens are replaced after at most this long, whatever their lifetime.
const MAX_AGE: Duration = Duration::from_secs(24 * 3600);
/// A failed refresh is retried this much later (the old token stays).
const RETRY: Duration = Duration::from_secs(10);

/// Which token a source asks for.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct TokenKey {
    pub audience: String,
    pub expiration_seconds: i64,
}

impl TokenKey {
    /// The token a projection source names.
    pub fn of(p: &ServiceAccountTokenProjection) -> TokenKey {
        TokenKey {
            audience: p.audience.clone().unwrap_or_default(),
            expiration_seconds: p.expiration_seconds.unwrap_or(DEFAULT_EXPIRATION),
        }
    }
}

#[derive(Debug, Clone)]
struct Held {
    token: String,
    refresh_at: Instant,
}

/// The tokens one pod's projected volumes hold.
#[derive(Debug, Default)]
pub struct PodTokens {
    held: BTreeMap<TokenKey, Held>,
}

/// The serviceAccountToken sources of the pod's projected volumes.
pub fn token_sources(pod: &Pod) -> Vec<TokenKey> {
    let mut keys: Vec<TokenKey> = pod
        .spec
        .iter()
        .flat_map(|s| s.volumes.iter().flatten())
        .filter_map(|v| v.projected.as_ref())
        .flat_map(|p| p.sources.iter().flatten())
        .filter_map(|s| s.service_account_token.as_ref())
        .map(TokenKey::of)
        .collect();
    keys.sort();
    keys.dedup();
    keys
}

/// How long after issue a token of `lifetime` is replaced.
pub fn refresh_after(lifetime: Duration) -> Duration {
    lifetime.mul_f64(0.8).min(MAX_AGE)
}

impl PodTokens {
    /// The token held for `key`.
    pub fn get(&self, key: &TokenKey) -> Option<&str> {
        self.held.get(key).map(|h| h.token.as_str())
    }

    /// The keys of `wanted` with no token yet, or whose token is due at `now`.
    pub fn due(&self, wanted: &[TokenKey], now: Instant) -> Vec<TokenKey> {
        wanted
            .iter()
            .filter(|k| self.held.get(*k).is_none_or(|h| h.refresh_at <= now))
            .cloned()
            .collect()
    }

    /// Whether a token is held for every key of `wanted`.
    pub fn has_all(&self, wanted: &[TokenKey]) -> bool {
        wanted.iter().all(|k| self.held.contains_key(k))
    }

    /// Holds `token` for `key`, to be replaced at `refresh_at`.
    pub fn insert(&mut self, key: TokenKey, token: String, refresh_at: Instant) {
        self.held.insert(key, Held { token, refresh_at });
    }

    /// Keeps the current token for `key` a little longer after a failed refresh.
    pub fn postpone(&mut self, key: &TokenKey, now: Instant) {
        if let Some(h) = self.held.get_mut(key) {
            h.refresh_at = now + RETRY;
        }
    }

    /// When the next held token is due.
    pub fn next_refresh(&self) -> Option<Instant> {
        self.held.values().map(|h| h.refresh_at).min()
    }
}

/// Requests a token for the pod's ServiceAccount, bound to the pod; the
/// token and when to replace it.
pub async fn request(
    client: &kube::Client,
    pod: &Pod,
    key: &TokenKey,
) -> Result<(String, Duration), kube::Error> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let account = pod
        .spec
        .as_ref()
        .and_then(|s| s.service_account_name.as_deref())
        .filter(|s| !s.is_empty())
        .unwrap_or("default");
    let req = TokenRequest {
        spec: TokenRequestSpec {
            audiences: if key.audience.is_empty() {
                Vec::new()
            } else {
                vec![key.audience.clone()]
            },
            expiration_seconds: Some(key.expiration_seconds),
            bound_object_ref: Some(BoundObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                name: pod.metadata.name.clone(),
                uid: pod.metadata.uid.clone(),
            }),
        },
        ..Default::default()
    };
    let api: Api<k8s_openapi::api::core::v1::ServiceAccount> = Api::namespaced(client.clone(), ns);
    let got = api
        .create_token_request(account, &PostParams::default(), &req)
        .await?;
    let lifetime = got
        .spec
        .expiration_seconds
        .unwrap_or(key.expiration_seconds)
        .max(1) as u64;
    let token = got.status.map(|s| s.token).unwrap_or_default();
    Ok((token, refresh_after(Duration::from_secs(lifetime))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodSpec, ProjectedVolumeSource, Volume, VolumeProjection};

    fn source(audience: Option<&str>, exp: Option<i64>) -> VolumeProjection {
        VolumeProjection {
            service_account_token: Some(ServiceAccountTokenProjection {
                audience: audience.map(String::from),
                expiration_seconds: exp,
                path: "token".into(),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn sources_are_collected_once() {
        let vol = |name: &str, sources| Volume {
            name: name.into(),
            projected: Some(ProjectedVolumeSource {
                sources: Some(sources),
                ..Default::default()
            }),
            ..Default::default()
        };
        let pod = Pod {
            spec: Some(PodSpec {
                volumes: Some(vec![
                    vol("a", vec![source(None, Some(3607))]),
                    vol(
                        "b",
                        vec![source(None, Some(3607)), source(Some("vault"), None)],
                    ),
                ]),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(
            token_sources(&pod),
            vec![
                TokenKey {
                    audience: String::new(),
                    expiration_seconds: 3607
                },
                TokenKey {
                    audience: "vault".into(),
                    expiration_seconds: 3600
                },
            ]
        );
        assert!(token_sources(&Pod::default()).is_empty());
    }

    #[test]
    fn tokens_are_due_when_missing_or_old() {
        assert_eq!(
            refresh_after(Duration::from_secs(3600)),
            Duration::from_secs(2880)
        );
        assert_eq!(refresh_after(Duration::from_secs(7 * 24 * 3600)), MAX_AGE);
        let now = Instant::now();
        let k = TokenKey {
            audience: String::new(),
            expiration_seconds: 3607,
        };
        let mut t = PodTokens::default();
        assert_eq!(t.due(std::slice::from_ref(&k), now), vec![k.clone()]);
        assert!(!t.has_all(std::slice::from_ref(&k)));
        t.insert(k.clone(), "tok".into(), now + Duration::from_secs(60));
        assert!(t.due(std::slice::from_ref(&k), now).is_empty());
        assert_eq!(t.get(&k), Some("tok"));
        assert_eq!(t.next_refresh(), Some(now + Duration::from_secs(60)));
        let later = now + Duration::from_secs(61);
        assert_eq!(t.due(std::slice::from_ref(&k), later), vec![k.clone()]);
        t.postpone(&k, later);
        assert_eq!(t.next_refresh(), Some(later + RETRY));
        assert_eq!(t.get(&k), Some("tok"), "the old token stays");
    }
}
