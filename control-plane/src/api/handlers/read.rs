//! get and list: one object, or a filtered, paged collection read at a
//! consistent revision (continue tokens carry the revision and last key).

use axum::response::Response;
use base64::Engine as _;
use serde_json::{Value, json};

use super::{Ctx, object_response};
use crate::api::error::ApiError;
use crate::api::objects;
use crate::api::render::{self, Render};
use crate::api::selectors::{FieldSelector, LabelSelector};
use crate::api::{body, table};
use crate::store::{RangeRequest, Revision, StoreError};

/// GET of one object.
pub async fn get(ctx: Ctx) -> Result<Response, ApiError> {
    let stored = objects::get(&ctx.state.store, ctx.info, ctx.ns(), ctx.name()?).await?;
    object_response(&ctx, http::StatusCode::OK, &stored.obj)
}

#[derive(serde::Serialize, serde::Deserialize)]
struct ContinueToken {
    rv: Revision,
    start: String,
}

fn encode_continue(rv: Revision, start: &str) -> String {
    let raw = serde_json::to_vec(&ContinueToken {
        rv,
        start: start.to_string(),
    })
    .unwrap_or_default();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
}

fn decode_continue(token: &str) -> Result<ContinueToken, ApiError> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .ok()
        .and_then(|raw| serde_json::from_slice(&raw).ok())
        .ok_or_else(|| ApiError::BadRequest("continue key is not valid".into()))
}

/// The objects of a list, the revision it was read at, and paging state.
pub struct Listed {
    pub items: Vec<Value>,
    pub revision: Revision,
    pub continue_token: Option<String>,
    pub remaining: Option<u64>,
}

/// Reads the matching objects of `ctx` (label/field selectors, limit/continue, resourceVersion).
pub async fn list_objects(ctx: &Ctx) -> Result<Listed, ApiError> {
    let labels = LabelSelector::parse(ctx.query.get("labelSelector").unwrap_or(""))?;
    let fields = FieldSelector::parse(ctx.query.get("fieldSelector").unwrap_or(""))?;
    let limit = ctx
        .query
        .int("limit")?
        .filter(|l| *l > 0)
        .map(|l| l as usize);
    let prefix = ctx.info.namespace_prefix(ctx.ns()).ok_or_else(|| {
        ApiError::MethodNotAllowed(format!("{} cannot be listed", ctx.info.plural))
    })?;
    let (mut start_after, mut revision) = (None, None);
    if let Some(token) = ctx.query.non_empty("continue") {
        let token = decode_continue(token)?;
        start_after = Some(token.start);
        revision = Some(token.rv);
    } else if let Some(rv) = ctx
        .query
        .non_empty("resourceVersion")
        .filter(|rv| *rv != "0")
    {
        let rv: Revision = rv
            .parse()
            .map_err(|_| ApiError::BadRequest(format!("invalid resourceVersion {rv:?}")))?;
        if ctx.query.get("resourceVersionMatch") == Some("Exact") {
            revision = Some(rv);
        } else if rv > ctx.state.store.current_revision() {
            return Err(ApiError::Timeout(format!(
                "Too large resource version: {rv}, current: {}",
                ctx.state.store.current_revision()
            )));
        }
    }
    let filtered = !labels.is_empty() || !fields.is_empty();
    let page = match limit {
        Some(l) if !filtered => l,
        Some(l) => l.max(500),
        None => 0,
    };
    let mut items = Vec::new();
    let mut read_revision = None;
    loop {
        let resp = ctx
            .state
            .store
            .range(RangeRequest { prefix: prefix.clone(), start_after: start_after.clone(), limit: page, revision })
            .await
            .map_err(|e| match e {
                StoreError::Compacted { .. } if ctx.query.non_empty("continue").is_some() => ApiError::Gone(
                    "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.".into(),
                ),
                other => ApiError::from(other),
            })?;
        let rev = *read_revision.get_or_insert(resp.revision);
        revision = Some(rev);
        let n = resp.kvs.len();
        for (i, kv) in resp.kvs.iter().enumerate() {
            start_after = Some(kv.key.clone());
            let obj = objects::decode(&ctx.state.store, ctx.info, kv)?;
            if labels.matches(&obj) && fields.matches(&obj) {
                items.push(obj);
            }
            if limit.is_some_and(|l| items.len() >= l) {
                let more = i + 1 < n || resp.more;
                let remaining = (!filtered).then_some(resp.remaining);
                let token =
                    more.then(|| encode_continue(rev, start_after.as_deref().unwrap_or("")));
                return Ok(Listed {
                    items,
                    revision: rev,
                    continue_token: token,
                    remaining: remaining.filter(|_| more),
                });
            }
        }
        if !resp.more || page == 0 {
            return Ok(Listed {
                items,
                revision: rev,
                continue_token: None,
                remaining: None,
            });
        }
    }
}

/// GET of a collection.
pub async fn list(ctx: Ctx) -> Result<Response, ApiError> {
    let listed = list_objects(&ctx).await?;
    let mut list_meta = json!({ "resourceVersion": listed.revision.to_string() });
    if let Some(token) = &listed.continue_token {
        list_meta["continue"] = json!(token);
    }
    if let Some(remaining) = listed.remaining {
        list_meta["remainingItemCount"] = json!(remaining);
    }
    match Render::from_accept(ctx.accept()) {
        Render::Table => {
            let mut t = table::table_for(ctx.info, &listed.items, &ctx.query, None)?;
            t["metadata"] = list_meta;
            return Ok(body::ok(&t));
        }
        Render::Metadata => return Ok(body::ok(&render::metadata_list(list_meta, &listed.items))),
        Render::Object => {}
    }
    let list = json!({
        "kind": format!("{}List", ctx.info.kind),
        "apiVersion": ctx.info.api_version(),
        "metadata": list_meta,
        "items": listed.items,
    });
    Ok(body::ok(&list))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continue_tokens_round_trip() {
        let token = encode_continue(42, "/registry/core/pods/a/b");
        let back = decode_continue(&token).unwrap();
        assert_eq!(back.rv, 42);
        assert_eq!(back.start, "/registry/core/pods/a/b");
        assert!(decode_continue("!!").is_err());
    }
}
