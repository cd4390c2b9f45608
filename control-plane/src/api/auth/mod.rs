//! Authentication (bearer tokens, ServiceAccount tokens, client certificates)
//! and authorization (RBAC) of API requests.
//!
//! The request pipeline calls exactly two entry points per request:
//! [`Authenticator::authenticate`] (→ `Ok(None)` for anonymous: answer 401
//! except for /healthz, /readyz, /livez, /version) and then
//! [`Authorizer::authorize`] (→ `Err(ApiError::Forbidden)` with Kubernetes'
//! message). Build both once in `server::start`:
//!
//! ```ignore
//! let authenticator = Authenticator::new(&credentials)?.with_store(store.clone());
//! let authorizer = Authorizer::start(store.clone(), shutdown.clone()).await?;
//! ```
//!
//! The review endpoints (SelfSubjectAccessReview, SelfSubjectRulesReview,
//! SubjectAccessReview, SelfSubjectReview, TokenReview) are in [`review`].

mod bootstrap;
mod cache;
pub mod rbac;
pub mod review;
pub mod token;

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{ApiError, RequestAttributes, UserInfo};
use crate::pki::{ADMIN_USER, ClusterCredentials, MASTERS_GROUP};
use crate::store::Store;
pub use bootstrap::default_policy;
use rbac::RbacPolicy;
pub use token::{BoundObject, DEFAULT_ISSUER, TokenSigner};

/// Group every authenticated caller is in.
pub const AUTHENTICATED_GROUP: &str = "system:authenticated";
/// Group the node bootstrap token authenticates into.
pub const NODES_GROUP: &str = "system:nodes";

/// Who a request comes from, given its headers and the TLS client certificate chain.
pub struct Authenticator {
    admin_token: String,
    node_token: String,
    signer: TokenSigner,
    audiences: Vec<String>,
    store: Option<Store>,
}

impl Authenticator {
    /// An authenticator for the cluster's bootstrap tokens and ServiceAccount
    /// key; ServiceAccount tokens must carry the audience [`DEFAULT_ISSUER`].
    pub fn new(credentials: &ClusterCredentials) -> Result<Authenticator, ApiError> {
        let signer = TokenSigner::new(credentials.service_account_key_pkcs8(), DEFAULT_ISSUER)
            .map_err(|e| ApiError::Internal(format!("ServiceAccount signing key: {e}")))?;
        Ok(Authenticator {
            admin_token: credentials.admin_token().to_string(),
            node_token: credentials.node_bootstrap_token().to_string(),
            signer,
            audiences: vec![DEFAULT_ISSUER.to_string()],
            store: None,
        })
    }

    /// Also checks that a ServiceAccount token's account (and the pod it is
    /// bound to, if any) still exists with the uid it was issued for (as
    /// Kubernetes does); without a store the signature and expiry alone decide.
    pub fn with_store(mut self, store: Store) -> Authenticator {
        self.store = Some(store);
        self
    }

    /// The caller, `Ok(None)` for an anonymous request, or Unauthorized for bad credentials.
    ///
    /// `client_cert_der` is the leaf certificate rustls already verified
    /// against the cluster CA (`ClusterCredentials::server_tls_config`); it
    /// wins over a bearer token, as in Kubernetes. Tokens come from
    /// `Authorization: Bearer ...` or the WebSocket subprotocol
    /// `base64url.bearer.authorization.k8s.io.<token>`.
    pub async fn authenticate(
        &self,
        headers: &http::HeaderMap,
        client_cert_der: Option<&[u8]>,
    ) -> Result<Option<UserInfo>, ApiError> {
        if let Some(der) = client_cert_der {
            return user_from_certificate(der).map(Some);
        }
        match bearer_token(headers) {
            Some(token) => self.authenticate_token(&token).await.map(Some),
            None => Ok(None),
        }
    }

    /// The user a bearer token stands for, or Unauthorized (also the TokenReview answer).
    pub async fn authenticate_token(&self, token: &str) -> Result<UserInfo, ApiError> {
        if constant_time_eq(token.as_bytes(), self.admin_token.as_bytes()) {
            return Ok(UserInfo {
                username: ADMIN_USER.to_string(),
                uid: ADMIN_USER.to_string(),
                groups: vec![MASTERS_GROUP.to_string(), AUTHENTICATED_GROUP.to_string()],
            });
        }
        if constant_time_eq(token.as_bytes(), self.node_token.as_bytes()) {
            let id = token.split('.').next().unwrap_or_default();
            return Ok(UserInfo {
                username: format!("system:bootstrap:{id}"),
                uid: String::new(),
                groups: vec![
                    NODES_GROUP.to_string(),
                    "system:bootstrappers".to_string(),
                    AUTHENTICATED_GROUP.to_string(),
                ],
            });
        }
        let claims = self.signer.verify(token, &self.audiences).map_err(|err| {
            tracing::debug!(%err, "bearer token refused");
            ApiError::Unauthorized
        })?;
        let ns = &claims.kubernetes.namespace;
        let sa = &claims.kubernetes.serviceaccount;
        if let Some(store) = &self.store {
            let key = format!("/registry/core/serviceaccounts/{ns}/{}", sa.name);
            let current = store.get(&key).await.map_err(ApiError::from)?;
            let uid = current
                .and_then(|kv| serde_json::from_slice::<serde_json::Value>(&kv.value).ok())
                .and_then(|o| o["metadata"]["uid"].as_str().map(str::to_string));
            if uid.as_deref() != Some(sa.uid.as_str()) {
                tracing::debug!(ns = %ns, name = %sa.name, "token of a deleted or recreated ServiceAccount");
                return Err(ApiError::Unauthorized);
            }
            if let Some(pod) = &claims.kubernetes.pod {
                let key = format!("/registry/core/pods/{ns}/{}", pod.name);
                let current = store.get(&key).await.map_err(ApiError::from)?;
                let uid = current
                    .and_then(|kv| serde_json::from_slice::<serde_json::Value>(&kv.value).ok())
                    .and_then(|o| o["metadata"]["uid"].as_str().map(str::to_string));
                if uid.as_deref() != Some(pod.uid.as_str()) {
                    tracing::debug!(ns = %ns, pod = %pod.name, "token bound to a deleted or recreated pod");
                    return Err(ApiError::Unauthorized);
                }
            }
        }
        Ok(UserInfo {
            username: claims.sub.clone(),
            uid: sa.uid.clone(),
            groups: vec![
                "system:serviceaccounts".to_string(),
                format!("system:serviceaccounts:{ns}"),
                AUTHENTICATED_GROUP.to_string(),
            ],
        })
    }

    /// A signed token for ServiceAccount `namespace/name` (its `metadata.uid`
    /// is `uid`), valid for `audiences` (the API server's when empty) for
    /// `expiration`. For the `serviceaccounts/token` subresource (TokenRequest;
    /// `status.expirationTimestamp` = now + expiration) and auto-mounted tokens.
    pub fn issue_service_account_token(
        &self,
        namespace: &str,
        name: &str,
        uid: &str,
        audiences: &[String],
        expiration: Duration,
    ) -> String {
        self.signer
            .issue(namespace, name, uid, audiences, expiration, None)
    }

    /// Like [`Self::issue_service_account_token`], bound to a pod (the
    /// TokenRequest `boundObjectRef` of kind Pod).
    pub fn issue_pod_bound_token(
        &self,
        namespace: &str,
        name: &str,
        uid: &str,
        audiences: &[String],
        expiration: Duration,
        pod: BoundObject,
    ) -> String {
        self.signer
            .issue(namespace, name, uid, audiences, expiration, Some(pod))
    }
}

/// CN → username, each O → a group, plus system:authenticated.
fn user_from_certificate(der: &[u8]) -> Result<UserInfo, ApiError> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|_| ApiError::Unauthorized)?;
    let subject = cert.subject();
    let username = subject
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .map(str::to_string)
        .filter(|cn| !cn.is_empty())
        .ok_or(ApiError::Unauthorized)?;
    let mut groups: Vec<String> = subject
        .iter_organization()
        .filter_map(|o| o.as_str().ok().map(str::to_string))
        .collect();
    groups.push(AUTHENTICATED_GROUP.to_string());
    Ok(UserInfo {
        username,
        uid: String::new(),
        groups,
    })
}

/// The bearer token of a request, from Authorization or the WebSocket subprotocol.
fn bearer_token(headers: &http::HeaderMap) -> Option<String> {
    if let Some(value) = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        let value = value.trim();
        if value.len() > 7 && value[..7].eq_ignore_ascii_case("bearer ") {
            let token = value[7..].trim();
            if !token.is_empty() {
                return Some(token.to_string());
            }
        }
    }
    const PREFIX: &str = "base64url.bearer.authorization.k8s.io.";
    for value in headers.get_all(http::header::SEC_WEBSOCKET_PROTOCOL) {
        for proto in value.to_str().unwrap_or_default().split(',') {
            if let Some(encoded) = proto.trim().strip_prefix(PREFIX) {
                use base64::Engine as _;
                let decoded = base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(encoded.trim_end_matches('='));
                if let Some(token) = decoded.ok().and_then(|b| String::from_utf8(b).ok()) {
                    return Some(token);
                }
            }
        }
    }
    None
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Whether a caller may do what a request asks (RBAC).
pub struct Authorizer {
    cache: Option<cache::PolicyCache>,
    store: Option<Store>,
    fixed: Option<RbacPolicy>,
}

impl Authorizer {
    /// Creates the default ClusterRoles/ClusterRoleBindings if absent, loads
    /// the RBAC policy and keeps it current with a store watch until `shutdown`.
    pub async fn start(store: Store, shutdown: CancellationToken) -> Result<Authorizer, ApiError> {
        if let Err(e) = bootstrap::ensure_default_policy(&store).await {
            // A member still joining: the cluster it joins already has them.
            tracing::warn!(error = %e, "default RBAC policy not written; the cluster's own applies");
        }
        let cache = cache::start(store.clone(), shutdown).await?;
        Ok(Authorizer {
            cache: Some(cache),
            store: Some(store),
            fixed: None,
        })
    }

    /// An authorizer over a fixed policy (tests, tools).
    pub fn from_policy(policy: RbacPolicy) -> Authorizer {
        Authorizer {
            cache: None,
            store: None,
            fixed: Some(policy),
        }
    }

    /// Ok when allowed; Forbidden with Kubernetes' message otherwise.
    pub async fn authorize(
        &self,
        user: &UserInfo,
        attrs: &RequestAttributes,
    ) -> Result<(), ApiError> {
        if self.allows(user, attrs).await {
            Ok(())
        } else {
            tracing::debug!(user = %user.username, verb = %attrs.verb, resource = %attrs.resource,
                ns = ?attrs.namespace, "RBAC denied");
            Err(rbac::forbidden(user, attrs))
        }
    }

    /// Whether RBAC grants the request (system:masters always).
    ///
    /// A denial is re-checked against a fresh read of the store when the
    /// watch-fed cache is behind it, so a just-created RoleBinding takes
    /// effect for the very next request.
    pub async fn allows(&self, user: &UserInfo, attrs: &RequestAttributes) -> bool {
        if user.groups.iter().any(|g| g == MASTERS_GROUP) {
            return true;
        }
        if let Some(policy) = &self.fixed {
            return policy.allows(user, attrs);
        }
        let Some(cache) = &self.cache else {
            return false;
        };
        let cached = cache
            .policy
            .read()
            .map(|p| p.allows(user, attrs))
            .unwrap_or(false);
        if cached {
            return true;
        }
        let (Some(store), applied) = (&self.store, *cache.revision.borrow()) else {
            return false;
        };
        if store.current_revision() <= applied {
            return false;
        }
        match store
            .range(crate::store::RangeRequest {
                prefix: rbac::RBAC_PREFIX.into(),
                ..Default::default()
            })
            .await
        {
            Ok(response) => {
                let mut fresh = RbacPolicy::default();
                for kv in &response.kvs {
                    fresh.apply(&kv.key, Some(&kv.value));
                }
                fresh.allows(user, attrs)
            }
            Err(_) => false,
        }
    }

    /// The rules granted to `user` in `namespace` (for SelfSubjectRulesReview).
    pub fn rules_for(
        &self,
        user: &UserInfo,
        namespace: &str,
    ) -> Vec<k8s_openapi::api::rbac::v1::PolicyRule> {
        if let Some(policy) = &self.fixed {
            return policy.rules_for(user, namespace);
        }
        self.cache
            .as_ref()
            .and_then(|c| c.policy.read().ok().map(|p| p.rules_for(user, namespace)))
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests;
