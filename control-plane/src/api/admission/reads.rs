//! The store reads admission plugins make: one object, the objects of a
//! kind in a namespace, or just their number. Reads are served from the
//! local state machine at its current revision (as upstream plugins read
//! informer caches); a miss of one object is confirmed with a linearizable
//! read, as NamespaceLifecycle's live lookup does.

use std::sync::Arc;

use serde_json::Value;

use super::super::decoded::DecodedObject;
use super::super::error::ApiError;
use super::super::objects;
use super::super::objects::ObjectStore;
use super::super::registry::{self, ResourceInfo};
use crate::store::{KeyValue, RangeRequest};

/// The core/v1 resource `plural` (registered by construction).
pub fn core(plural: &str) -> Result<&'static ResourceInfo, ApiError> {
    registry::lookup("", "v1", plural)
        .ok_or_else(|| ApiError::Internal(format!("{plural} are not registered")))
}

/// One object, or None when it does not exist. Shared through the memo of
/// decoded objects: every write in a namespace reads its Namespace (and
/// every pod create its ServiceAccount), which would otherwise be parsed
/// again for each.
pub async fn get(
    store: &ObjectStore,
    info: &ResourceInfo,
    ns: Option<&str>,
    name: &str,
) -> Result<Option<Arc<DecodedObject>>, ApiError> {
    let key = objects::key(info, ns, name)?;
    let local = store.get_at(&key, store.current_revision()).await?;
    let kv = match local {
        Some(kv) => Some(kv),
        None => store.get(&key).await?,
    };
    kv.map(|kv| objects::decode_shared(store, info, &kv, kv.mod_revision))
        .transpose()
}

async fn range(
    store: &ObjectStore,
    info: &ResourceInfo,
    ns: &str,
    limit: usize,
) -> Result<crate::store::RangeResponse, ApiError> {
    let prefix = info
        .namespace_prefix(Some(ns))
        .ok_or_else(|| ApiError::Internal(format!("{} are not stored", info.plural)))?;
    Ok(store
        .range(RangeRequest {
            prefix,
            start_after: None,
            limit,
            revision: Some(store.current_revision()),
        })
        .await?)
}

/// The stored objects of `info` in namespace `ns`, with their revisions.
pub async fn list_raw(
    store: &ObjectStore,
    info: &ResourceInfo,
    ns: &str,
) -> Result<Vec<KeyValue>, ApiError> {
    Ok(range(store, info, ns, 0).await?.kvs)
}

/// The objects of `info` in namespace `ns`.
pub async fn list(
    store: &ObjectStore,
    info: &ResourceInfo,
    ns: &str,
) -> Result<Vec<Value>, ApiError> {
    list_raw(store, info, ns)
        .await?
        .iter()
        .map(|kv| objects::decode(store, info, kv))
        .collect()
}

/// How many objects of `info` namespace `ns` holds.
pub async fn count(store: &ObjectStore, info: &ResourceInfo, ns: &str) -> Result<i64, ApiError> {
    let resp = range(store, info, ns, 1).await?;
    let rest = if resp.more { resp.remaining } else { 0 };
    Ok(resp.kvs.len() as i64 + rest as i64)
}
