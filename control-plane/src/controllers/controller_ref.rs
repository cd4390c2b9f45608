//! Claiming objects for a controller: kube-controller-manager's
//! ControllerRefManager. An object in the owner's namespace that matches
//! the owner's selector, has no controller ownerReference and is not being
//! deleted is adopted (a strategic merge patch adding the controller
//! reference, guarded by the object's uid and resourceVersion), but only
//! after a live read confirms the owner is neither being deleted nor
//! replaced; an owned object that no longer matches is released (its
//! reference to the owner removed). `decide` and `plan` are pure; `claim`
//! does the writes; `claim_keys` maps object changes to the owners that may
//! want to adopt them. The ReplicaSet, Deployment, StatefulSet, DaemonSet
//! and Job controllers all claim through here.

use std::fmt::Debug;
use std::sync::Arc;

use futures::future::join_all;
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use kube::api::{Patch, PatchParams};
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::pods::{controller_of, owner_ref};
use super::runtime::selector::{Labels, selector_is_empty, selector_matches};
use super::runtime::{Cache, Change, ObjectKey};
use super::{ControllerError, ignore_not_found};

/// What an owner does with one candidate object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// Already controlled by the owner and still matching.
    Owned,
    /// An orphan that matches: the owner adopts it.
    Adopt,
    /// Controlled by the owner but no longer matching: the owner lets go.
    Release,
    /// Not the owner's business (someone else's, or not to be touched now).
    Ignore,
}

/// Upstream's ClaimObject decision for one object, `matches` saying whether
/// the owner's selector (and any extra filter) picks it.
pub fn decide(owner: &ObjectMeta, obj: &ObjectMeta, matches: bool) -> Claim {
    let controller = obj
        .owner_references
        .iter()
        .flatten()
        .find(|r| r.controller == Some(true));
    let owner_deleting = owner.deletion_timestamp.is_some();
    let owner_uid = owner.uid.as_deref().unwrap_or_default();
    match controller {
        Some(c) if c.uid != owner_uid => Claim::Ignore,
        Some(_) if matches => Claim::Owned,
        // Releasing while the owner is deleted would race the garbage collector.
        Some(_) if owner_deleting => Claim::Ignore,
        Some(_) => Claim::Release,
        None if owner_deleting || !matches || owner_uid.is_empty() => Claim::Ignore,
        None if obj.deletion_timestamp.is_some() => Claim::Ignore,
        None if owner.namespace.is_some() && owner.namespace != obj.namespace => Claim::Ignore,
        None => Claim::Adopt,
    }
}

/// True when a controller's selector picks `labels`. A missing or empty
/// selector picks nothing, not everything (as upstream's controllers say).
pub fn selects(selector: Option<&LabelSelector>, labels: &Labels) -> bool {
    selector.is_some_and(|s| !selector_is_empty(s) && selector_matches(s, labels))
}

/// The candidates sorted by what the owner does with them.
#[derive(Debug)]
pub struct ClaimPlan<K> {
    pub owned: Vec<Arc<K>>,
    pub adopt: Vec<Arc<K>>,
    pub release: Vec<Arc<K>>,
}

/// Decides every candidate (objects decided `Ignore` are dropped).
pub fn plan<K: Resource>(
    owner: &ObjectMeta,
    candidates: impl IntoIterator<Item = Arc<K>>,
    matches: impl Fn(&K) -> bool,
) -> ClaimPlan<K> {
    let mut p = ClaimPlan {
        owned: Vec::new(),
        adopt: Vec::new(),
        release: Vec::new(),
    };
    for obj in candidates {
        match decide(owner, obj.meta(), matches(&obj)) {
            Claim::Owned => p.owned.push(obj),
            Claim::Adopt => p.adopt.push(obj),
            Claim::Release => p.release.push(obj),
            Claim::Ignore => {}
        }
    }
    p
}

/// The guard every claim patch carries: the object's uid and resourceVersion.
fn guard(obj: &ObjectMeta) -> serde_json::Map<String, Value> {
    let mut m = serde_json::Map::new();
    if let Some(uid) = &obj.uid {
        m.insert("uid".into(), json!(uid));
    }
    if let Some(rv) = &obj.resource_version {
        m.insert("resourceVersion".into(), json!(rv));
    }
    m
}

/// Strategic merge patch making `owner` the object's controller.
pub fn adopt_patch(owner: &OwnerReference, obj: &ObjectMeta) -> Value {
    let mut m = guard(obj);
    m.insert("ownerReferences".into(), json!([owner]));
    json!({ "metadata": m })
}

/// Strategic merge patch removing the object's reference to `owner_uid`.
pub fn release_patch(owner_uid: &str, obj: &ObjectMeta) -> Value {
    let mut m = guard(obj);
    m.insert(
        "ownerReferences".into(),
        json!([{ "$patch": "delete", "uid": owner_uid }]),
    );
    json!({ "metadata": m })
}

/// Upstream's RecheckDeletionTimestamp: a live read of the owner must show
/// the same uid and no deletionTimestamp before anything is adopted.
async fn can_adopt<O>(client: &Client, owner: &O) -> Result<(), ControllerError>
where
    O: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + Debug,
{
    let api: Api<O> = Api::namespaced(client.clone(), &owner.namespace().unwrap_or_default());
    let what = format!(
        "{} {}/{}",
        O::kind(&()),
        owner.namespace().unwrap_or_default(),
        owner.name_any()
    );
    match api.get_opt(&owner.name_any()).await? {
        Some(fresh) if fresh.uid() == owner.uid() && fresh.meta().deletion_timestamp.is_none() => {
            Ok(())
        }
        _ => Err(ControllerError::CannotAdopt(what)),
    }
}

/// Claims `candidates` for `owner`: adopts matching orphans and releases
/// owned objects that no longer match, writing the results through to
/// `cache`. Returns the objects the owner now controls (owned and adopted).
pub async fn claim<O, K>(
    client: &Client,
    owner: &O,
    cache: &Cache<K>,
    candidates: Vec<Arc<K>>,
    matches: impl Fn(&K) -> bool,
) -> Result<Vec<Arc<K>>, ControllerError>
where
    O: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + Debug,
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + Debug,
{
    let p = plan(owner.meta(), candidates, matches);
    let mut claimed = p.owned;
    if p.adopt.is_empty() && p.release.is_empty() {
        return Ok(claimed);
    }
    let api: Api<K> = Api::namespaced(client.clone(), &owner.namespace().unwrap_or_default());
    let pp = PatchParams::default();
    let patch_all = |objs: &[Arc<K>], body: &dyn Fn(&ObjectMeta) -> Value| {
        let patches: Vec<(String, Value)> = objs
            .iter()
            .map(|o| (o.name_any(), body(o.meta())))
            .collect();
        let (api, pp) = (&api, &pp);
        join_all(patches.into_iter().map(move |(name, body)| async move {
            let r = api.patch(&name, pp, &Patch::Strategic(body)).await;
            (name, r)
        }))
    };
    let mut first_err = None;
    if !p.adopt.is_empty() {
        can_adopt(client, owner).await?;
        let oref = owner_ref(owner);
        for (name, r) in patch_all(&p.adopt, &|m| adopt_patch(&oref, m)).await {
            match ignore_not_found(r) {
                Ok(Some(obj)) => {
                    tracing::info!(kind = %K::kind(&()), object = %name, "adopted");
                    let obj = Arc::new(obj);
                    cache.write_through(ObjectKey::of(obj.as_ref()), obj.clone());
                    claimed.push(obj);
                }
                Ok(None) => {}
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
    }
    let uid = owner.uid().unwrap_or_default();
    for (name, r) in patch_all(&p.release, &|m| release_patch(&uid, m)).await {
        match ignore_not_found(r) {
            Ok(Some(obj)) => {
                tracing::info!(kind = %K::kind(&()), object = %name, "released");
                cache.write_through(ObjectKey::of(&obj), Arc::new(obj));
            }
            Ok(None) => {}
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    match first_err {
        Some(e) => Err(e),
        None => Ok(claimed),
    }
}

/// Keys of the owners (of `kind`) a change of an object concerns: its
/// controllers before and after, and, for an object without a controller
/// that is new or whose labels or controller changed, every owner in its
/// namespace that `selects` it (so orphans are adopted promptly). On
/// Resync, every key of `owners`.
pub fn claim_keys<K: Resource, O: Resource>(
    c: &Change<K>,
    kind: &str,
    owners: &Cache<O>,
    selects: impl Fn(&O, &K) -> bool,
) -> Vec<ObjectKey> {
    let ns = |o: &K| o.meta().namespace.clone().unwrap_or_default();
    let controller = |o: &K| {
        controller_of(o)
            .filter(|r| r.kind == kind)
            .map(|r| ObjectKey::new(ns(o), r.name.clone()))
    };
    let selecting = |o: &K| {
        owners
            .list_namespace(&ns(o))
            .into_iter()
            .filter(|owner| selects(owner, o))
            .map(|owner| ObjectKey::of(owner.as_ref()))
            .collect::<Vec<_>>()
    };
    let mut keys = Vec::new();
    match c {
        Change::Upsert { old, new } => {
            keys.extend(controller(new));
            if let Some(old) = old {
                keys.extend(controller(old));
            }
            let changed = old.as_ref().is_none_or(|old| {
                old.labels() != new.labels()
                    || controller_of(old.as_ref()) != controller_of(new.as_ref())
            });
            if controller_of(new.as_ref()).is_none() && changed {
                keys.extend(selecting(new));
            }
        }
        Change::Delete(o) => keys.extend(controller(o)),
        Change::Resync => return owners.keys(),
    }
    keys.sort();
    keys.dedup();
    keys
}

#[cfg(test)]
#[path = "controller_ref_tests.rs"]
mod tests;
