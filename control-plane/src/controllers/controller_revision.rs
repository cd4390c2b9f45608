//! ControllerRevisions for the DaemonSet and StatefulSet controllers: the
//! snapshot of a pod template (upstream's `{"spec":{"template":{...,
//! "$patch":"replace"}}}`, so `kubectl rollout undo` can apply it), its hash
//! and name, choosing between reusing, renumbering (a rollback) or creating
//! the revision of the current template (with hash-collision handling),
//! adopting orphan revisions the owner's selector picks (so an owner
//! re-created after an orphaning delete keeps its history and its pods'
//! revision), and pruning old history. The owners' pods are not touched here.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::Arc;

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use kube::api::{DeleteParams, ObjectMeta, PostParams};
use kube::{Api, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::controller_ref::{claim, selects};
use super::pods::{controlled_by, owner_ref};
use super::runtime::ObjectKey;
use super::{ControllerError, Ctx, ignore_not_found};

/// Label naming the revision a pod (and a revision) belongs to.
pub const REVISION_HASH: &str = "controller-revision-hash";
/// Longest name prefix kept before `-<hash>` (upstream's limit).
const MAX_PREFIX: usize = 223;
/// How many hash collisions one reconcile resolves before giving up.
const MAX_COLLISIONS: i32 = 10;

/// The revision data of a pod template: a strategic merge patch that
/// replaces `spec.template`.
pub fn template_patch(template: &PodTemplateSpec) -> Value {
    let mut t = serde_json::to_value(template).unwrap_or_else(|_| json!({}));
    if let Some(o) = t.as_object_mut() {
        o.insert("$patch".into(), json!("replace"));
    }
    json!({"spec": {"template": t}})
}

/// The pod template a revision holds.
pub fn revision_template(rev: &ControllerRevision) -> Option<PodTemplateSpec> {
    let mut t = rev.data.as_ref()?.0.pointer("/spec/template")?.clone();
    if let Some(o) = t.as_object_mut() {
        o.remove("$patch");
    }
    serde_json::from_value(t).ok()
}

fn fnv1a(mut h: u32, bytes: &[u8]) -> u32 {
    for b in bytes {
        h ^= u32::from(*b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

/// Upstream's HashControllerRevision: FNV-1a over the data and the
/// collision count, in the safe alphabet of generated names.
pub fn hash_revision(data: &Value, collision_count: i32) -> String {
    let h = fnv1a(0x811c_9dc5, data.to_string().as_bytes());
    let h = fnv1a(h, &(collision_count as u32).to_le_bytes());
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    h.to_string()
        .bytes()
        .map(|d| ALPHABET[usize::from(d) % ALPHABET.len()] as char)
        .collect()
}

/// `<prefix>-<hash>`, the prefix cut to upstream's limit.
pub fn revision_name(prefix: &str, hash: &str) -> String {
    let mut cut = prefix.len().min(MAX_PREFIX);
    while !prefix.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}-{hash}", &prefix[..cut])
}

/// A new revision of `owner` holding `data`, labelled with the template's
/// labels and its hash.
pub fn new_revision<K: Resource<DynamicType = ()>>(
    owner: &K,
    template_labels: &BTreeMap<String, String>,
    data: &Value,
    revision: i64,
    collision_count: i32,
) -> ControllerRevision {
    let hash = hash_revision(data, collision_count);
    let mut labels = template_labels.clone();
    labels.insert(REVISION_HASH.into(), hash.clone());
    let prefix = owner.meta().name.clone().unwrap_or_default();
    ControllerRevision {
        metadata: ObjectMeta {
            name: Some(revision_name(&prefix, &hash)),
            namespace: owner.meta().namespace.clone(),
            labels: Some(labels),
            owner_references: Some(vec![owner_ref(owner)]),
            ..Default::default()
        },
        data: Some(RawExtension(data.clone())),
        revision,
    }
}

/// What to do to get a revision of the current template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pick {
    /// The newest revision already holds it.
    Use(usize),
    /// An older revision holds it (a rollback): renumber it to this.
    Renumber(usize, i64),
    /// No revision holds it: create one with this number.
    Create(i64),
}

/// Chooses among `revs` (sorted oldest first) for `data`, as upstream.
pub fn pick(revs: &[Arc<ControllerRevision>], data: &Value) -> Pick {
    let next = revs.iter().map(|r| r.revision).max().unwrap_or(0) + 1;
    let equal = revs
        .iter()
        .rposition(|r| r.data.as_ref().is_some_and(|d| &d.0 == data));
    match equal {
        Some(i) if i + 1 == revs.len() => Pick::Use(i),
        Some(i) => Pick::Renumber(i, next),
        None => Pick::Create(next),
    }
}

/// The oldest revisions beyond `limit` that are not live (still used by a
/// pod or as the current/update revision); `revs` sorted oldest first.
pub fn to_prune(
    revs: &[Arc<ControllerRevision>],
    live: impl Fn(&ControllerRevision) -> bool,
    limit: usize,
) -> Vec<Arc<ControllerRevision>> {
    let old: Vec<&Arc<ControllerRevision>> = revs.iter().filter(|r| !live(r)).collect();
    let n = old.len().saturating_sub(limit);
    old[..n].iter().map(|r| (*r).clone()).collect()
}

/// The revisions `owner_uid` controls in `namespace`, oldest first.
pub fn owned(ctx: &Ctx, namespace: &str, owner_uid: &str) -> Vec<Arc<ControllerRevision>> {
    let mut revs: Vec<Arc<ControllerRevision>> = ctx
        .controller_revisions
        .cache()
        .list_namespace(namespace)
        .into_iter()
        .filter(|r| controlled_by(r.as_ref(), owner_uid) && r.metadata.deletion_timestamp.is_none())
        .collect();
    revs.sort_by_key(|r| {
        (
            r.revision,
            r.creation_timestamp().map(|t| t.0.as_second()),
            r.name_any(),
        )
    });
    revs
}

/// Claims the revisions of the owner's namespace: adopts orphans its
/// `selector` picks and releases owned ones it no longer picks.
pub async fn claim_revisions<K>(
    ctx: &Ctx,
    owner: &K,
    selector: Option<&LabelSelector>,
) -> Result<(), ControllerError>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + Debug,
{
    let ns = owner.meta().namespace.clone().unwrap_or_default();
    let cache = ctx.controller_revisions.cache();
    let candidates = cache.list_namespace(&ns);
    claim(&ctx.client, owner, cache, candidates, |r| {
        selects(selector, r.labels())
    })
    .await?;
    Ok(())
}

/// The revision of `template` for `owner`: reused, renumbered or created.
/// `collision_count` grows when a different revision already has the name;
/// the caller persists it in the owner's status.
pub async fn current<K: Resource<DynamicType = ()>>(
    ctx: &Ctx,
    owner: &K,
    template: &PodTemplateSpec,
    collision_count: &mut i32,
) -> Result<Arc<ControllerRevision>, ControllerError> {
    let ns = owner.meta().namespace.clone().unwrap_or_default();
    let uid = owner.meta().uid.clone().unwrap_or_default();
    let revs = owned(ctx, &ns, &uid);
    let data = template_patch(template);
    let api: Api<ControllerRevision> = Api::namespaced(ctx.client.clone(), &ns);
    let number = match pick(&revs, &data) {
        Pick::Use(i) => return Ok(revs[i].clone()),
        Pick::Renumber(i, n) => {
            let mut rev = (*revs[i]).clone();
            rev.revision = n;
            let written = api
                .replace(&rev.name_any(), &PostParams::default(), &rev)
                .await?;
            tracing::info!(revision = %written.name_any(), number = n, "renumbered revision (rollback)");
            return Ok(write_through(ctx, written));
        }
        Pick::Create(n) => n,
    };
    let labels = template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    for _ in 0..MAX_COLLISIONS {
        let rev = new_revision(owner, &labels, &data, number, *collision_count);
        match api.create(&PostParams::default(), &rev).await {
            Ok(created) => {
                tracing::info!(revision = %created.name_any(), number, "created revision");
                return Ok(write_through(ctx, created));
            }
            Err(kube::Error::Api(s)) if s.code == 409 => {
                let existing = api.get(&rev.name_any()).await?;
                if controlled_by(&existing, &uid)
                    && existing.data.as_ref().is_some_and(|d| d.0 == data)
                {
                    return Ok(write_through(ctx, existing));
                }
                *collision_count += 1;
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(ControllerError::Invalid(format!(
        "{MAX_COLLISIONS} ControllerRevision hash collisions for {}",
        owner.meta().name.clone().unwrap_or_default()
    )))
}

fn write_through(ctx: &Ctx, rev: ControllerRevision) -> Arc<ControllerRevision> {
    let rev = Arc::new(rev);
    ctx.controller_revisions
        .cache()
        .write_through(ObjectKey::of(rev.as_ref()), rev.clone());
    rev
}

/// Deletes the oldest revisions beyond `limit` that are not `live`.
pub async fn prune(
    ctx: &Ctx,
    namespace: &str,
    owner_uid: &str,
    live: impl Fn(&ControllerRevision) -> bool,
    limit: usize,
) -> Result<(), ControllerError> {
    let revs = owned(ctx, namespace, owner_uid);
    let doomed = to_prune(&revs, live, limit);
    if doomed.is_empty() {
        return Ok(());
    }
    let api: Api<ControllerRevision> = Api::namespaced(ctx.client.clone(), namespace);
    for r in doomed {
        tracing::info!(revision = %r.name_any(), "deleting old revision");
        ignore_not_found(api.delete(&r.name_any(), &DeleteParams::background()).await)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::DaemonSet;

    fn owner() -> DaemonSet {
        DaemonSet {
            metadata: ObjectMeta {
                name: Some("agent".into()),
                namespace: Some("ns".into()),
                uid: Some("u1".into()),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    fn template(image: &str) -> PodTemplateSpec {
        serde_json::from_value(json!({
            "metadata": {"labels": {"app": "a"}},
            "spec": {"containers": [{"name": "c", "image": image}]}
        }))
        .unwrap()
    }

    fn rev(data: &Value, n: i64) -> Arc<ControllerRevision> {
        Arc::new(new_revision(&owner(), &BTreeMap::new(), data, n, 0))
    }

    #[test]
    fn revisions_round_trip_their_template() {
        let t = template("a.wasm");
        let data = template_patch(&t);
        assert_eq!(data["spec"]["template"]["$patch"], "replace");
        let r = new_revision(
            &owner(),
            &BTreeMap::from([("app".into(), "a".into())]),
            &data,
            3,
            0,
        );
        assert_eq!(revision_template(&r), Some(t));
        let hash = r.labels()[REVISION_HASH].clone();
        assert_eq!(r.name_any(), format!("agent-{hash}"));
        assert_eq!(r.labels()["app"], "a");
        assert_eq!(r.revision, 3);
        assert_eq!(r.owner_references()[0].kind, "DaemonSet");
        assert_ne!(hash_revision(&data, 1), hash, "collisions change the name");
        assert_eq!(revision_name(&"x".repeat(300), "h").len(), MAX_PREFIX + 2);
    }

    #[test]
    fn pick_reuses_renumbers_or_creates() {
        let (a, b) = (
            template_patch(&template("a.wasm")),
            template_patch(&template("b.wasm")),
        );
        assert_eq!(pick(&[], &a), Pick::Create(1));
        let revs = vec![rev(&a, 1), rev(&b, 2)];
        assert_eq!(pick(&revs, &b), Pick::Use(1));
        assert_eq!(
            pick(&revs, &a),
            Pick::Renumber(0, 3),
            "rollback to revision 1"
        );
        let c = template_patch(&template("c.wasm"));
        assert_eq!(pick(&revs, &c), Pick::Create(3));
    }

    #[test]
    fn prune_keeps_live_and_the_newest() {
        let revs: Vec<_> = (1..=5)
            .map(|i| rev(&template_patch(&template(&format!("{i}.wasm"))), i))
            .collect();
        let live = |r: &ControllerRevision| r.revision == 1 || r.revision == 5;
        let doomed: Vec<i64> = to_prune(&revs, live, 1)
            .iter()
            .map(|r| r.revision)
            .collect();
        assert_eq!(
            doomed,
            vec![2, 3],
            "revision 4 is kept as history, 1 and 5 are live"
        );
        assert!(to_prune(&revs, live, 3).is_empty());
    }
}
