//! The request pipeline in front of every authenticated route: a tracing
//! span per request (request id, verb, resource, ns/name), authentication,
//! authorization, and an audit record of the outcome (`audit`), refused
//! requests included.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::HeaderValue;
use tracing::Instrument as _;

use super::audit;
use super::error::ApiError;
use super::path::{self, ApiPath};
use super::query::Query;
use super::request::{RequestAttributes, UserInfo};
use super::state::SharedState;

/// The DER client certificate the TLS handshake verified, if any.
#[derive(Clone, Default)]
pub struct ClientCert(pub Option<Arc<Vec<u8>>>);

/// The address of the client at the other end of the connection.
#[derive(Clone, Copy)]
pub struct PeerAddr(pub SocketAddr);

/// The RBAC attributes of a request.
pub fn attributes(method: &http::Method, uri: &http::Uri) -> RequestAttributes {
    let p = uri.path();
    match path::parse(p) {
        Some(ApiPath::Resource(rp)) => {
            let watch = Query::parse(uri.query()).flag("watch");
            RequestAttributes {
                verb: path::verb(method, &rp, watch).to_string(),
                resource_request: true,
                api_group: rp.info.group.to_string(),
                api_version: rp.info.version.to_string(),
                resource: rp.info.plural.to_string(),
                subresource: rp.subresource.clone().unwrap_or_default(),
                namespace: rp.namespace.clone(),
                name: rp.name.clone(),
                path: p.to_string(),
            }
        }
        _ => RequestAttributes {
            verb: method.as_str().to_ascii_lowercase(),
            resource_request: false,
            path: p.to_string(),
            ..Default::default()
        },
    }
}

/// Authenticates and authorizes a request, then runs it inside its span.
pub async fn authenticate_and_authorize(
    State(state): State<SharedState>,
    mut req: Request,
    next: Next,
) -> Response {
    let received = chrono::Utc::now();
    let id = uuid::Uuid::new_v4().to_string();
    let attrs = attributes(req.method(), req.uri());
    let peer = req.extensions().get::<PeerAddr>().map(|p| p.0.ip());
    let mut event = audit::Event::new(&id, req.uri(), req.headers(), &attrs, peer, received);
    let object = match (&attrs.namespace, &attrs.name) {
        (Some(ns), Some(n)) => format!("{ns}/{n}"),
        (None, Some(n)) => n.clone(),
        (Some(ns), None) => format!("{ns}/"),
        (None, None) => String::new(),
    };
    let span = tracing::info_span!("api", request_id = %id, verb = %attrs.verb, resource = %attrs.resource, object = %object);
    async move {
        let cert = req
            .extensions()
            .get::<ClientCert>()
            .cloned()
            .unwrap_or_default();
        let user = match state
            .authenticator
            .authenticate(req.headers(), cert.0.as_deref().map(Vec::as_slice))
            .await
        {
            Ok(Some(user)) => user,
            Ok(None) => {
                event.set_anonymous();
                return refuse(&state, event, ApiError::Unauthorized, &id);
            }
            Err(e) => return refuse(&state, event, e, &id),
        };
        event.set_user(&user);
        let user = match impersonate(&state, user.clone(), req.headers()).await {
            Ok(as_user) if as_user != user => {
                event.set_impersonated(&as_user);
                as_user
            }
            Ok(user) => user,
            Err(e) => return refuse(&state, event, e, &id),
        };
        if let Err(e) = state.authorizer.authorize(&user, &attrs).await {
            tracing::debug!(user = %user.username, error = %e, "request forbidden");
            return refuse(&state, event, e, &id);
        }
        event.set_allowed();
        req.extensions_mut().insert(user.clone());
        req.extensions_mut().insert(attrs.clone());
        let resp = next.run(req).await;
        tracing::debug!(user = %user.username, status = resp.status().as_u16(), "request served");
        finish(&state, resp, event, &id)
    }
    .instrument(span)
    .await
}

/// Applies `Impersonate-User`/`Impersonate-Group` headers: the caller must be
/// allowed to `impersonate` the users, service accounts and groups named.
async fn impersonate(
    state: &SharedState,
    user: UserInfo,
    headers: &http::HeaderMap,
) -> Result<UserInfo, ApiError> {
    let Some(name) = headers
        .get("impersonate-user")
        .and_then(|v| v.to_str().ok())
        .map(String::from)
    else {
        return Ok(user);
    };
    let groups: Vec<String> = headers
        .get_all("impersonate-group")
        .iter()
        .filter_map(|v| v.to_str().ok().map(String::from))
        .collect();
    let mut checks = Vec::new();
    let mut as_user = UserInfo {
        username: name.clone(),
        uid: String::new(),
        groups: groups.clone(),
    };
    match name
        .strip_prefix("system:serviceaccount:")
        .and_then(|rest| rest.split_once(':'))
    {
        Some((ns, sa)) => {
            checks.push(("serviceaccounts", "", Some(ns.to_string()), sa.to_string()));
            as_user.groups.push("system:serviceaccounts".into());
            as_user.groups.push(format!("system:serviceaccounts:{ns}"));
        }
        None => checks.push(("users", "", None, name.clone())),
    }
    for g in &groups {
        checks.push(("groups", "", None, g.clone()));
    }
    for (resource, group, namespace, target) in checks {
        let attrs = RequestAttributes {
            verb: "impersonate".into(),
            resource_request: true,
            api_group: group.into(),
            resource: resource.into(),
            namespace,
            name: Some(target),
            ..Default::default()
        };
        state.authorizer.authorize(&user, &attrs).await?;
    }
    if !as_user.groups.iter().any(|g| g == "system:authenticated") {
        as_user.groups.push("system:authenticated".into());
    }
    tracing::debug!(by = %user.username, as_user = %as_user.username, "impersonating");
    Ok(as_user)
}

/// Answers a request the pipeline refused, recording the refusal.
fn refuse(state: &SharedState, mut event: audit::Event, err: ApiError, id: &str) -> Response {
    event.set_refused(&err);
    finish(state, err.into_response(), event, id)
}

/// Sets the `audit-id` header; the audit event is sent when the body is done.
fn finish(state: &SharedState, mut resp: Response, event: audit::Event, id: &str) -> Response {
    if let Ok(v) = HeaderValue::from_str(id) {
        resp.headers_mut().insert("audit-id", v);
    }
    state.audit.on_complete(resp, event)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_of_resource_and_other_requests() {
        let uri: http::Uri = "/apis/apps/v1/namespaces/a/deployments/web/scale"
            .parse()
            .unwrap();
        let a = attributes(&http::Method::PATCH, &uri);
        assert!(a.resource_request);
        assert_eq!(
            (
                a.verb.as_str(),
                a.api_group.as_str(),
                a.subresource.as_str()
            ),
            ("patch", "apps", "scale")
        );
        let uri: http::Uri = "/api/v1/pods?watch=true".parse().unwrap();
        assert_eq!(attributes(&http::Method::GET, &uri).verb, "watch");
        let uri: http::Uri = "/version".parse().unwrap();
        let v = attributes(&http::Method::GET, &uri);
        assert!(!v.resource_request);
        assert_eq!((v.verb.as_str(), v.path.as_str()), ("get", "/version"));
    }
}
