//! Authentication (bearer tokens, ServiceAccount tokens, client certificates)
//! and authorization (RBAC) of API requests.
//!
//! The request pipeline calls exactly these two entry points.
//! (The security work replaces the bodies; the signatures are the contract.)

use super::{ApiError, RequestAttributes, UserInfo};

/// Who a request comes from, given its headers and the TLS client certificate chain.
pub struct Authenticator {}

impl Authenticator {
    /// The caller, `Ok(None)` for an anonymous request, or Unauthorized for bad credentials.
    pub async fn authenticate(
        &self,
        _headers: &http::HeaderMap,
        _client_cert_der: Option<&[u8]>,
    ) -> Result<Option<UserInfo>, ApiError> {
        Ok(None)
    }
}

/// Whether a caller may do what a request asks (RBAC).
pub struct Authorizer {}

impl Authorizer {
    /// Ok when allowed; Forbidden with Kubernetes' message otherwise.
    pub async fn authorize(&self, _user: &UserInfo, _attrs: &RequestAttributes) -> Result<(), ApiError> {
        Ok(())
    }
}
