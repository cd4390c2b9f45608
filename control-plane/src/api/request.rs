//! Who is asking and what they ask for: the facts authentication produces
//! and authorization, admission and audit consume.

/// An authenticated caller, as Kubernetes' `user.Info`.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct UserInfo {
    pub username: String,
    pub uid: String,
    pub groups: Vec<String>,
}

/// What a request does, in RBAC's terms (Kubernetes' `authorizer.Attributes`).
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct RequestAttributes {
    /// get, list, watch, create, update, patch, delete, deletecollection,
    /// or the lower-case HTTP method for non-resource requests.
    pub verb: String,
    /// True for /api/..., /apis/... object requests; false for /healthz, /version, ...
    pub resource_request: bool,
    /// "" for the core group.
    pub api_group: String,
    pub api_version: String,
    /// Plural resource name, e.g. "pods".
    pub resource: String,
    /// e.g. "status", "log", "binding"; empty when none.
    pub subresource: String,
    pub namespace: Option<String>,
    pub name: Option<String>,
    /// The URL path, for non-resource requests.
    pub path: String,
}
