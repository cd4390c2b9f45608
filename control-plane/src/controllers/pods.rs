//! Pod facts every workload controller needs: active/ready/available,
//! controller ownership, and owner references for the pods they create.

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use k8s_openapi::jiff::Timestamp;
use kube::Resource;

/// True unless the pod finished or is being deleted.
pub fn is_active(p: &Pod) -> bool {
    p.metadata.deletion_timestamp.is_none()
        && !matches!(
            p.status.as_ref().and_then(|s| s.phase.as_deref()),
            Some("Succeeded" | "Failed")
        )
}

/// The pod's phase ("Pending" when unset).
pub fn phase(p: &Pod) -> &str {
    p.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("Pending")
}

/// When the pod became Ready, if it is Ready.
pub fn ready_since(p: &Pod) -> Option<Timestamp> {
    p.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready" && c.status == "True")
        .map(|c| {
            c.last_transition_time
                .as_ref()
                .map_or(Timestamp::UNIX_EPOCH, |t| t.0)
        })
}

/// True when the pod is Ready.
pub fn is_ready(p: &Pod) -> bool {
    ready_since(p).is_some()
}

/// True when the pod has been Ready for at least `min_ready_seconds`.
pub fn is_available(p: &Pod, min_ready_seconds: i32, now: Timestamp) -> bool {
    match ready_since(p) {
        Some(t) if min_ready_seconds <= 0 => {
            let _ = t;
            true
        }
        Some(t) => now.as_second() - t.as_second() >= i64::from(min_ready_seconds),
        None => false,
    }
}

/// The controller owner reference of an object, if any.
pub fn controller_of<K: Resource>(obj: &K) -> Option<&OwnerReference> {
    obj.meta()
        .owner_references
        .as_ref()?
        .iter()
        .find(|o| o.controller == Some(true))
}

/// True when `obj` is controlled by an object with `uid`.
pub fn controlled_by<K: Resource>(obj: &K, uid: &str) -> bool {
    controller_of(obj).is_some_and(|o| o.uid == uid)
}

/// A controller owner reference pointing at `owner`.
pub fn owner_ref<K: Resource<DynamicType = ()>>(owner: &K) -> OwnerReference {
    OwnerReference {
        api_version: K::api_version(&()).into_owned(),
        kind: K::kind(&()).into_owned(),
        name: owner.meta().name.clone().unwrap_or_default(),
        uid: owner.meta().uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// Orders pods for scale-down, most disposable first: unassigned, then
/// pending, then not ready, then the most recently created.
pub fn deletion_rank(p: &Pod) -> (u8, u8, u8, std::cmp::Reverse<i64>) {
    let assigned = p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some();
    let created = p
        .metadata
        .creation_timestamp
        .as_ref()
        .map_or(0, |t| t.0.as_second());
    (
        u8::from(assigned),
        match phase(p) {
            "Pending" => 0,
            "Unknown" => 1,
            _ => 2,
        },
        u8::from(is_ready(p)),
        std::cmp::Reverse(created),
    )
}
