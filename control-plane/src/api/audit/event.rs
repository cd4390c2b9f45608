//! One audit record: the `audit.k8s.io/v1` Event at level Metadata that
//! the pipeline fills in as a request is authenticated and authorized, and
//! that is completed with the response code when the response is done.
//! What is written where is in `audit` (mod.rs) and `file`.

use std::collections::BTreeMap;
use std::net::IpAddr;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;

use crate::api::error::ApiError;
use crate::api::request::{RequestAttributes, UserInfo};

/// One audit record, serialized as an `audit.k8s.io/v1` Event.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    kind: &'static str,
    api_version: &'static str,
    level: &'static str,
    #[serde(rename = "auditID")]
    audit_id: String,
    stage: &'static str,
    #[serde(rename = "requestURI")]
    request_uri: String,
    verb: String,
    user: User,
    #[serde(skip_serializing_if = "Option::is_none")]
    impersonated_user: Option<User>,
    #[serde(rename = "sourceIPs")]
    source_ips: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user_agent: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    object_ref: Option<ObjectRef>,
    response_status: ResponseStatus,
    #[serde(serialize_with = "micros")]
    request_received_timestamp: DateTime<Utc>,
    #[serde(serialize_with = "micros")]
    stage_timestamp: DateTime<Utc>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    annotations: BTreeMap<&'static str, String>,
}

#[derive(Debug, Clone, Default, Serialize)]
struct User {
    #[serde(skip_serializing_if = "String::is_empty")]
    username: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    uid: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    groups: Vec<String>,
}

impl From<&UserInfo> for User {
    fn from(user: &UserInfo) -> User {
        User {
            username: user.username.clone(),
            uid: user.uid.clone(),
            groups: user.groups.clone(),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
struct ObjectRef {
    resource: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    namespace: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    #[serde(skip_serializing_if = "String::is_empty")]
    api_group: String,
    api_version: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    subresource: String,
}

#[derive(Debug, Clone, Default, Serialize)]
struct ResponseStatus {
    metadata: BTreeMap<String, String>,
    code: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<String>,
}

fn micros<S: serde::Serializer>(at: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&at.to_rfc3339_opts(SecondsFormat::Micros, true))
}

impl Event {
    /// The record of a request received at `received` from `peer`, before
    /// anyone knows who sent it.
    pub fn new(
        audit_id: &str,
        uri: &http::Uri,
        headers: &http::HeaderMap,
        attrs: &RequestAttributes,
        peer: Option<IpAddr>,
        received: DateTime<Utc>,
    ) -> Event {
        let object_ref = attrs.resource_request.then(|| ObjectRef {
            resource: attrs.resource.clone(),
            namespace: attrs.namespace.clone(),
            name: attrs.name.clone(),
            api_group: attrs.api_group.clone(),
            api_version: attrs.api_version.clone(),
            subresource: attrs.subresource.clone(),
        });
        Event {
            kind: "Event",
            api_version: "audit.k8s.io/v1",
            level: "Metadata",
            audit_id: audit_id.to_string(),
            stage: "ResponseComplete",
            request_uri: uri
                .path_and_query()
                .map_or_else(|| uri.path().to_string(), |pq| pq.as_str().to_string()),
            verb: attrs.verb.clone(),
            user: User::default(),
            impersonated_user: None,
            source_ips: source_ips(headers, peer),
            user_agent: headers
                .get(http::header::USER_AGENT)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string),
            object_ref,
            response_status: ResponseStatus::default(),
            request_received_timestamp: received,
            stage_timestamp: received,
            annotations: BTreeMap::new(),
        }
    }

    /// Who authenticated.
    pub fn set_user(&mut self, user: &UserInfo) {
        self.user = user.into();
    }

    /// A request that carried no credentials.
    pub fn set_anonymous(&mut self) {
        self.user = User {
            username: "system:anonymous".into(),
            uid: String::new(),
            groups: vec!["system:unauthenticated".into()],
        };
    }

    /// The user the caller acts as through `Impersonate-*` headers.
    pub fn set_impersonated(&mut self, user: &UserInfo) {
        self.impersonated_user = Some(user.into());
    }

    /// RBAC let the request through.
    pub fn set_allowed(&mut self) {
        self.annotations
            .insert("authorization.k8s.io/decision", "allow".into());
    }

    /// The request was refused before it reached a handler (401, 403, ...):
    /// the Status' reason and message are recorded with the code.
    pub fn set_refused(&mut self, err: &ApiError) {
        let status = err.to_status();
        let text = |field: &str| status[field].as_str().map(str::to_string);
        self.response_status.status = text("status");
        self.response_status.reason = text("reason");
        self.response_status.message = text("message");
        if matches!(err, ApiError::Forbidden { .. }) {
            self.annotations
                .insert("authorization.k8s.io/decision", "forbid".into());
        }
    }

    /// The record once the response with `code` is done.
    pub(super) fn complete(mut self, code: u16) -> Event {
        self.response_status.code = code;
        self.stage_timestamp = Utc::now();
        self
    }
}

/// `X-Forwarded-For`, then `X-Real-Ip`, then the peer, without repeats (as kube-apiserver).
pub(super) fn source_ips(headers: &http::HeaderMap, peer: Option<IpAddr>) -> Vec<String> {
    let forwarded = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','));
    let real = headers
        .get("x-real-ip")
        .and_then(|v| v.to_str().ok())
        .into_iter();
    let mut ips: Vec<IpAddr> = Vec::new();
    let parsed = forwarded
        .chain(real)
        .filter_map(|s| s.trim().parse::<IpAddr>().ok());
    for ip in parsed.chain(peer) {
        if !ips.contains(&ip) {
            ips.push(ip);
        }
    }
    ips.iter().map(IpAddr::to_string).collect()
}
