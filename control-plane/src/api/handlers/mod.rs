//! Thin HTTP handlers for `/api` and `/apis`: parse the request into a
//! [`Ctx`], call the verb's domain function, and turn the result or the
//! typed error into a response. Discovery documents are answered here too.

mod binding;
mod delete;
mod eviction;
mod read;
mod reviews;
mod subresources;
mod write;

pub use read::list_objects;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, Method, header};

use super::body;
use super::discovery;
use super::error::ApiError;
use super::path::{self, ApiPath, ResourcePath};
use super::query::Query;
use super::registry::ResourceInfo;
use super::render::{self, Render};
use super::request::{RequestAttributes, UserInfo};
use super::state::SharedState;

/// Everything a verb handler needs to know about a resource request.
pub struct Ctx {
    pub state: SharedState,
    pub info: &'static ResourceInfo,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub subresource: Option<String>,
    pub rest: Option<String>,
    pub query: Query,
    pub headers: HeaderMap,
    pub method: Method,
    pub user: UserInfo,
    pub attrs: RequestAttributes,
    /// The client connection's upgrade (HTTP/1.1 exec, attach, port-forward).
    pub upgrade: Option<hyper::upgrade::OnUpgrade>,
}

impl Ctx {
    /// The namespace as the store wants it (None for cluster-scoped kinds).
    pub fn ns(&self) -> Option<&str> {
        if self.info.namespaced {
            self.namespace.as_deref()
        } else {
            None
        }
    }

    /// The object name (BadRequest when the path has none).
    pub fn name(&self) -> Result<&str, ApiError> {
        self.name
            .as_deref()
            .ok_or_else(|| ApiError::BadRequest("a resource name is required".into()))
    }

    /// The `Accept` header (empty when absent).
    pub fn accept(&self) -> &str {
        self.headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

/// Entry point for every `/api...` and `/apis...` request.
pub async fn dispatch(State(state): State<SharedState>, req: Request) -> Response {
    match route(state, req).await {
        Ok(resp) => resp,
        Err(err) => err.into_response(),
    }
}

fn not_found_path(path: &str) -> ApiError {
    ApiError::NotFound {
        group: String::new(),
        kind: String::new(),
        name: path.to_string(),
    }
}

async fn route(state: SharedState, req: Request) -> Result<Response, ApiError> {
    let uri_path = req.uri().path().to_string();
    let Some(parsed) = path::parse(&uri_path) else {
        return Err(not_found_path(&uri_path));
    };
    let accept = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let rp = match parsed {
        ApiPath::CoreVersions | ApiPath::Groups => {
            let core = parsed == ApiPath::CoreVersions;
            if let Some(version) = discovery::wants_aggregated(&accept) {
                let mut resp = body::ok(&discovery::aggregated(core, version));
                let ct = HeaderValue::from_str(&discovery::aggregated_content_type(version))
                    .map_err(|e| ApiError::Internal(e.to_string()))?;
                resp.headers_mut().insert(header::CONTENT_TYPE, ct);
                return Ok(resp);
            }
            let doc = if core {
                discovery::core_versions(&state.server_address)
            } else {
                discovery::group_list()
            };
            return Ok(body::ok(&doc));
        }
        ApiPath::Group(g) => {
            return discovery::group(&g)
                .map(|d| body::ok(&d))
                .ok_or_else(|| not_found_path(&uri_path));
        }
        ApiPath::GroupVersion { group, version } => {
            return discovery::resource_list(&group, &version)
                .map(|d| body::ok(&d))
                .ok_or_else(|| not_found_path(&uri_path));
        }
        ApiPath::Resource(rp) => rp,
    };
    let (mut parts, body) = req.into_parts();
    let upgrade = parts.extensions.remove::<hyper::upgrade::OnUpgrade>();
    let query = Query::parse(parts.uri.query());
    let user = parts
        .extensions
        .get::<UserInfo>()
        .cloned()
        .unwrap_or_default();
    let attrs = parts
        .extensions
        .get::<RequestAttributes>()
        .cloned()
        .unwrap_or_default();
    let ResourcePath {
        info,
        namespace,
        name,
        subresource,
        rest,
        legacy_watch,
    } = rp;
    let ctx = Ctx {
        state,
        info,
        namespace,
        name,
        subresource,
        rest,
        query,
        headers: parts.headers,
        method: parts.method,
        user,
        attrs,
        upgrade,
    };
    let watch = legacy_watch || ctx.query.flag("watch");
    super::admission::with_warnings(resource(ctx, body, watch)).await
}

fn not_allowed(ctx: &Ctx) -> ApiError {
    let target = match &ctx.subresource {
        Some(sub) => format!("{}/{sub}", ctx.info.plural),
        None => ctx.info.plural.to_string(),
    };
    ApiError::MethodNotAllowed(format!(
        "the server does not allow this method on the requested resource ({} {target})",
        ctx.method
    ))
}

async fn resource(ctx: Ctx, body: Body, watch: bool) -> Result<Response, ApiError> {
    if let Some(sub) = ctx.subresource.clone() {
        return subresources::handle(ctx, &sub, body).await;
    }
    if ctx.info.group == "metrics.k8s.io" {
        return super::metrics::handle(ctx).await;
    }
    if ctx.info.storage.is_none() {
        return reviews::handle(ctx, body).await;
    }
    let named = ctx.name.is_some();
    let verb = match (&ctx.method, named) {
        (&Method::GET | &Method::HEAD, _) if watch => "watch",
        (&Method::GET | &Method::HEAD, true) => "get",
        (&Method::GET | &Method::HEAD, false) => "list",
        (&Method::POST, false) => "create",
        (&Method::PUT, true) => "update",
        (&Method::PATCH, true) => "patch",
        (&Method::DELETE, true) => "delete",
        (&Method::DELETE, false) => "deletecollection",
        _ => return Err(not_allowed(&ctx)),
    };
    if !ctx.info.supports(verb) {
        return Err(not_allowed(&ctx));
    }
    match verb {
        "watch" => super::watch::serve(ctx).await,
        "get" => read::get(ctx).await,
        "list" => read::list(ctx).await,
        "create" => write::create(ctx, body).await,
        "update" => write::update(ctx, body).await,
        "patch" => write::patch(ctx, body).await,
        "delete" => delete::delete(ctx, body).await,
        _ => delete::delete_collection(ctx, body).await,
    }
}

/// Reads and decodes the request body.
pub async fn read_object(ctx: &Ctx, body: Body) -> Result<serde_json::Value, ApiError> {
    let bytes = body::read(&ctx.headers, body).await?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::BadRequest("the request body is empty".into()));
    }
    body::decode(&body::content_type(&ctx.headers), &bytes)
}

/// A response for one object, honouring `Accept` (Table, metadata only, or JSON).
pub fn object_response(
    ctx: &Ctx,
    code: http::StatusCode,
    obj: &serde_json::Value,
) -> Result<Response, ApiError> {
    match Render::from_accept(ctx.accept()) {
        Render::Table => {
            let table =
                super::table::table_for(ctx.info, std::slice::from_ref(obj), &ctx.query, None)?;
            Ok(body::json_response(code, &table))
        }
        Render::Metadata => Ok(body::json_response(code, &render::metadata_of(obj))),
        Render::Object => Ok(body::json_response(code, obj)),
    }
}
