//! Objects in the store: keys, encoding (storage version, resourceVersion
//! from the revision, encryption at rest) and guarded writes as single
//! transactions, with store errors mapped to Kubernetes errors that name the
//! object. Handlers reach the store only through here: [`ObjectStore`] is
//! the one place object values become store bytes ([`put`]) and store bytes
//! become objects ([`decode`], [`decode_at`]). What a write stores it also
//! leaves decoded in the store's memo (`decoded.rs`), which reads and
//! watches copy from before they parse stored bytes.

use std::ops::Deref;
use std::sync::Arc;

use serde_json::Value;

use super::decoded::{DecodedObject, DecodedObjects};
use super::encryption::Encryption;
use super::error::ApiError;
use super::registry::ResourceInfo;
use super::{convert, meta};
use crate::store::{Compare, KeyValue, Revision, Store, StoreError, Txn, TxnOp};

/// The store as the API server sees it: object values are sealed (see
/// `encryption`) on their way in and opened on their way out.
///
/// It derefs to the raw [`Store`] for ranges, watches, revisions and
/// non-object keys such as IP reservations; object values read that way
/// must go through [`decode`] or [`decode_at`].
#[derive(Clone)]
pub struct ObjectStore {
    store: Store,
    encryption: Arc<Encryption>,
    decoded: Arc<DecodedObjects>,
}

impl ObjectStore {
    /// `store` with values of encrypted resources sealed by `encryption`.
    pub fn new(store: Store, encryption: Encryption) -> ObjectStore {
        ObjectStore {
            store,
            encryption: Arc::new(encryption),
            decoded: Arc::default(),
        }
    }
}

impl Deref for ObjectStore {
    type Target = Store;

    fn deref(&self) -> &Store {
        &self.store
    }
}

/// An object as read from the store, with its revision.
#[derive(Debug, Clone)]
pub struct Stored {
    pub obj: Value,
    pub mod_revision: Revision,
}

impl Stored {
    pub fn current(&self) -> Current<'_> {
        Current {
            obj: &self.obj,
            mod_revision: self.mod_revision,
        }
    }
}

/// The object a write replaces, borrowed: from a [`Stored`] copy or from
/// the memo's shared value ([`try_get_shared`]).
#[derive(Debug, Clone, Copy)]
pub struct Current<'a> {
    pub obj: &'a Value,
    pub mod_revision: Revision,
}

/// An object as read from the store, shared with the memo's other readers
/// instead of copied: for a read-modify-write, which only borrows it.
pub struct SharedStored {
    pub decoded: Arc<DecodedObject>,
    pub mod_revision: Revision,
}

impl SharedStored {
    pub fn current(&self) -> Current<'_> {
        Current {
            obj: &self.decoded.object,
            mod_revision: self.mod_revision,
        }
    }
}

/// An object as a write hands it back: the stored object, shared with the
/// memo's readers (so answering the write copies nothing), or one the
/// handler made itself (a dry run, an update that changed nothing, a
/// delete's last value). Reads as the object it holds.
pub enum Written {
    Shared(Arc<DecodedObject>),
    Owned(Value),
}

impl Deref for Written {
    type Target = Value;

    fn deref(&self) -> &Value {
        match self {
            Written::Shared(decoded) => &decoded.object,
            Written::Owned(obj) => obj,
        }
    }
}

impl From<Value> for Written {
    fn from(obj: Value) -> Written {
        Written::Owned(obj)
    }
}

impl Written {
    /// The object, owned: a copy only when the memo still shares it.
    pub fn into_value(self) -> Value {
        match self {
            Written::Shared(decoded) => {
                Arc::try_unwrap(decoded).map_or_else(|shared| shared.object.clone(), |d| d.object)
            }
            Written::Owned(obj) => obj,
        }
    }
}

/// The resource name in errors: `pods` or `deployments.apps`.
fn group_of(info: &ResourceInfo) -> String {
    info.group.to_string()
}

/// 404 for an object of this resource.
pub fn not_found(info: &ResourceInfo, name: &str) -> ApiError {
    ApiError::NotFound {
        group: group_of(info),
        kind: info.plural.into(),
        name: name.into(),
    }
}

/// 409 AlreadyExists for an object of this resource.
pub fn already_exists(info: &ResourceInfo, name: &str) -> ApiError {
    ApiError::AlreadyExists {
        group: group_of(info),
        kind: info.plural.into(),
        name: name.into(),
    }
}

/// 409 Conflict for a stale write.
/// A write whose uid precondition names another object than the stored one.
pub fn uid_conflict(info: &ResourceInfo, name: &str, wanted: &str, stored: &str) -> ApiError {
    ApiError::Conflict {
        group: group_of(info),
        kind: info.plural.into(),
        name: name.into(),
        message: format!(
            "Operation cannot be fulfilled on {} \"{name}\": Precondition failed: UID in precondition: {wanted}, UID in object meta: {stored}",
            qualified_resource(info)
        ),
    }
}

fn qualified_resource(info: &ResourceInfo) -> String {
    if info.group.is_empty() {
        info.plural.to_string()
    } else {
        format!("{}.{}", info.plural, info.group)
    }
}

pub fn conflict(info: &ResourceInfo, name: &str) -> ApiError {
    let resource = qualified_resource(info);
    ApiError::Conflict {
        group: group_of(info),
        kind: info.plural.into(),
        name: name.into(),
        message: format!(
            "Operation cannot be fulfilled on {resource} \"{name}\": the object has been modified; please apply your changes to the latest version and try again"
        ),
    }
}

/// The storage key of an object (Internal error for kinds that are never stored).
pub fn key(info: &ResourceInfo, namespace: Option<&str>, name: &str) -> Result<String, ApiError> {
    info.key(namespace, name)
        .ok_or_else(|| ApiError::MethodNotAllowed(format!("{} are not stored", info.plural)))
}

/// Decodes a stored value into the served version with its resourceVersion.
pub fn decode(store: &ObjectStore, info: &ResourceInfo, kv: &KeyValue) -> Result<Value, ApiError> {
    decode_at(store, info, kv, kv.mod_revision)
}

/// Decodes a stored value, stamping `revision` as the resourceVersion (a
/// deleted or previous value shown at the revision that replaced it); a
/// copy from the memo when it holds the value.
pub fn decode_at(
    store: &ObjectStore,
    info: &ResourceInfo,
    kv: &KeyValue,
    revision: Revision,
) -> Result<Value, ApiError> {
    match store.decoded.copy_of(info, kv, revision) {
        Some(obj) => Ok(obj),
        None => decode_uncached(store, info, kv, revision),
    }
}

/// [`decode_at`] shared through the memo with every other reader of the
/// value, as the watchers of one write are.
pub fn decode_shared(
    store: &ObjectStore,
    info: &ResourceInfo,
    kv: &KeyValue,
    revision: Revision,
) -> Result<Arc<DecodedObject>, ApiError> {
    store.decoded.decode(store, info, kv, revision)
}

/// Decrypts, parses and converts a stored value (no memo).
pub(super) fn decode_uncached(
    store: &ObjectStore,
    info: &ResourceInfo,
    kv: &KeyValue,
    revision: Revision,
) -> Result<Value, ApiError> {
    let plain = store.encryption.open(&kv.key, &kv.value)?;
    decode_json(info, &plain, revision)
}

/// Decodes an object's plaintext JSON, stamping `revision` as the resourceVersion.
fn decode_json(info: &ResourceInfo, bytes: &[u8], revision: Revision) -> Result<Value, ApiError> {
    let obj: Value = serde_json::from_slice(bytes)
        .map_err(|e| ApiError::Internal(format!("stored {} object is not JSON: {e}", info.kind)))?;
    let mut obj = convert::from_storage(info, obj);
    meta::set_resource_version(&mut obj, revision);
    Ok(obj)
}

/// Encodes an object as plaintext JSON (storage version, no resourceVersion).
fn encode(info: &ResourceInfo, obj: &Value) -> Result<Vec<u8>, ApiError> {
    let mut obj = convert::to_storage(info, obj.clone());
    meta::metadata_mut(&mut obj).shift_remove("resourceVersion");
    to_json(info, &obj)
}

fn to_json(info: &ResourceInfo, obj: &Value) -> Result<Vec<u8>, ApiError> {
    serde_json::to_vec(obj).map_err(|e| ApiError::Internal(format!("encoding {}: {e}", info.kind)))
}

/// `obj` as plaintext JSON to store, and as a read of it at `revision`
/// would decode it, without copying it when its kind is stored as served
/// (only its type is set and its resourceVersion left out of the bytes).
fn encode_owned(info: &ResourceInfo, obj: Value) -> Result<(Vec<u8>, Value), ApiError> {
    if !convert::is_stored_as_served(info) {
        return Ok((encode(info, &obj)?, obj));
    }
    let mut obj = convert::to_storage(info, obj);
    meta::metadata_mut(&mut obj).shift_remove("resourceVersion");
    Ok((to_json(info, &obj)?, obj))
}

fn store_error(info: &ResourceInfo, name: &str, err: StoreError) -> ApiError {
    match err {
        StoreError::NotFound { .. } => not_found(info, name),
        StoreError::AlreadyExists { .. } => already_exists(info, name),
        StoreError::Conflict { .. } => conflict(info, name),
        other => ApiError::from(other),
    }
}

/// The stored value of one object; None when absent.
async fn get_value(
    store: &ObjectStore,
    info: &ResourceInfo,
    ns: Option<&str>,
    name: &str,
) -> Result<Option<KeyValue>, ApiError> {
    let key = key(info, ns, name)?;
    store
        .get(&key)
        .await
        .map_err(|e| store_error(info, name, e))
}

/// Reads one object; None when absent.
pub async fn try_get(
    store: &ObjectStore,
    info: &ResourceInfo,
    ns: Option<&str>,
    name: &str,
) -> Result<Option<Stored>, ApiError> {
    match get_value(store, info, ns, name).await? {
        Some(kv) => Ok(Some(Stored {
            obj: decode(store, info, &kv)?,
            mod_revision: kv.mod_revision,
        })),
        None => Ok(None),
    }
}

/// Reads one object without copying it out of the memo; None when absent.
pub async fn try_get_shared(
    store: &ObjectStore,
    info: &ResourceInfo,
    ns: Option<&str>,
    name: &str,
) -> Result<Option<SharedStored>, ApiError> {
    match get_value(store, info, ns, name).await? {
        Some(kv) => Ok(Some(SharedStored {
            decoded: decode_shared(store, info, &kv, kv.mod_revision)?,
            mod_revision: kv.mod_revision,
        })),
        None => Ok(None),
    }
}

/// Reads one object; NotFound when absent.
pub async fn get(
    store: &ObjectStore,
    info: &ResourceInfo,
    ns: Option<&str>,
    name: &str,
) -> Result<Stored, ApiError> {
    try_get(store, info, ns, name)
        .await?
        .ok_or_else(|| not_found(info, name))
}

/// A write to commit with an object write, e.g. an IP reservation.
#[derive(Debug, Clone, Default)]
pub struct SideEffects {
    pub compares: Vec<Compare>,
    pub ops: Vec<TxnOp>,
}

/// Writes `obj` at `name`: create when `expected` is 0, else replace the
/// object at revision `expected`. Returns the object as stored, shared
/// with the memo.
pub async fn put(
    store: &ObjectStore,
    info: &ResourceInfo,
    ns: Option<&str>,
    name: &str,
    obj: Value,
    expected: Revision,
    side: SideEffects,
) -> Result<Written, ApiError> {
    let key = key(info, ns, name)?;
    let (bytes, obj) = encode_owned(info, obj)?;
    let sealed = store.encryption.seal(info, &key, bytes.clone())?;
    // For a kind stored as served, what a read of it would decode is the
    // object itself (`encode_owned` left its type set) with the new
    // resourceVersion: announced now, for the watchers that see the
    // commit before this call returns. The memo then owns it; this call
    // hands back the memo's object.
    let announced = convert::is_stored_as_served(info)
        .then(|| store.decoded.announce(info, &key, sealed.clone(), obj));
    let mut compares = vec![Compare::ModRevision {
        key: key.clone(),
        equals: expected,
    }];
    compares.extend(side.compares);
    let mut success = vec![TxnOp::Put {
        key: key.clone(),
        value: sealed,
    }];
    success.extend(side.ops);
    let resp = store
        .txn(Txn {
            compares,
            success,
            failure: vec![],
        })
        .await
        .map_err(|e| store_error(info, name, e))?;
    if !resp.succeeded {
        return Err(classify_failure(store, info, &key, name, expected).await);
    }
    if let Some(kept) = announced.and_then(|a| a.committed(resp.revision)) {
        return Ok(Written::Shared(kept));
    }
    let stored = decode_json(info, &bytes, resp.revision)?;
    let kept = store
        .decoded
        .remember(info, &key, resp.revision, stored, bytes.len());
    Ok(Written::Shared(kept))
}

/// Deletes the object at revision `expected`; returns the last value with
/// the delete's revision as its resourceVersion.
pub async fn delete(
    store: &ObjectStore,
    info: &ResourceInfo,
    ns: Option<&str>,
    name: &str,
    expected: Revision,
    side: SideEffects,
) -> Result<Value, ApiError> {
    let key = key(info, ns, name)?;
    let mut compares = vec![Compare::ModRevision {
        key: key.clone(),
        equals: expected,
    }];
    compares.extend(side.compares);
    let mut success = vec![TxnOp::Delete { key: key.clone() }];
    success.extend(side.ops);
    let resp = store
        .txn(Txn {
            compares,
            success,
            failure: vec![],
        })
        .await
        .map_err(|e| store_error(info, name, e))?;
    if !resp.succeeded {
        return Err(classify_failure(store, info, &key, name, expected).await);
    }
    match resp.prev.first().cloned().flatten() {
        Some(prev) => decode_at(store, info, &prev, resp.revision),
        None => Err(not_found(info, name)),
    }
}

async fn classify_failure(
    store: &ObjectStore,
    info: &ResourceInfo,
    key: &str,
    name: &str,
    expected: Revision,
) -> ApiError {
    match store.get(key).await {
        Ok(Some(_)) if expected == 0 => already_exists(info, name),
        Ok(None) if expected != 0 => not_found(info, name),
        Ok(_) => conflict(info, name),
        Err(e) => store_error(info, name, e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::registry::lookup;
    use serde_json::json;

    #[test]
    fn encode_strips_resource_version_and_decode_stamps_it() {
        let pods = lookup("", "v1", "pods").unwrap();
        let obj = json!({"metadata": {"name": "a", "resourceVersion": "7"}});
        let bytes = encode(pods, &obj).unwrap();
        let stored: Value = serde_json::from_slice(&bytes).unwrap();
        assert!(stored["metadata"].get("resourceVersion").is_none());
        assert_eq!(stored["kind"], "Pod");
        let back = decode_json(pods, &bytes, 12).unwrap();
        assert_eq!(back["metadata"]["resourceVersion"], "12");
    }

    /// What `put` returns and leaves in the memo is what decoding the stored
    /// bytes gives: for a kind stored as served, an encrypted one, and a
    /// converted one.
    #[tokio::test]
    async fn a_write_leaves_what_a_read_would_decode() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(crate::store::StoreConfig::new(
            dir.path(),
            "http://127.0.0.1:1",
        ))
        .await
        .unwrap();
        let store = ObjectStore::new(
            store,
            Encryption::new(&[7; crate::pki::ENCRYPTION_KEY_LEN]).unwrap(),
        );
        let cases = [
            (
                lookup("", "v1", "pods").unwrap(),
                json!({"metadata": {"name": "p", "namespace": "ns", "resourceVersion": "3"}, "spec": {"x": 1.5, "n": -2}}),
            ),
            (
                lookup("", "v1", "secrets").unwrap(),
                json!({"metadata": {"name": "s", "namespace": "ns"}, "data": {"k": "dg=="}}),
            ),
            (
                lookup("events.k8s.io", "v1", "events").unwrap(),
                json!({"metadata": {"name": "e", "namespace": "ns"}, "note": "hi", "reason": "R"}),
            ),
        ];
        for (info, obj) in cases {
            let written = put(
                &store,
                info,
                Some("ns"),
                meta::name(&obj).unwrap(),
                obj.clone(),
                0,
                SideEffects::default(),
            )
            .await
            .unwrap();
            let key = key(info, Some("ns"), meta::name(&obj).unwrap()).unwrap();
            let kv = store.get(&key).await.unwrap().unwrap();
            let fresh = decode_uncached(&store, info, &kv, kv.mod_revision).unwrap();
            assert_eq!(*written, fresh, "{}", info.plural);
            assert_eq!(
                written["metadata"]["resourceVersion"],
                kv.mod_revision.to_string()
            );
            // Reads copy it from the memo, also shown at a later revision.
            assert_eq!(decode(&store, info, &kv).unwrap(), fresh);
            let later = decode_at(&store, info, &kv, kv.mod_revision + 5).unwrap();
            assert_eq!(
                later,
                decode_uncached(&store, info, &kv, kv.mod_revision + 5).unwrap()
            );
            let shared = decode_shared(&store, info, &kv, kv.mod_revision).unwrap();
            assert_eq!(shared.object, fresh);
        }
    }

    #[test]
    fn error_messages_name_the_object() {
        let deploy = lookup("apps", "v1", "deployments").unwrap();
        assert_eq!(
            not_found(deploy, "web").to_string(),
            "deployments.apps \"web\" not found"
        );
        assert!(
            conflict(deploy, "web")
                .to_string()
                .starts_with("Operation cannot be fulfilled on deployments.apps \"web\"")
        );
    }
}
