//! The pure half of PersistentVolume binding: which Available volume
//! satisfies a claim (upstream's `FindMatchingVolume`: pre-bound first,
//! else the smallest one with enough capacity, the same class and volume
//! mode, the access modes, the claim's selector and, when a node was
//! selected, node affinity), the default StorageClass, the `local-path`
//! class skiff installs, and the volume its provisioner creates for a
//! claim on a node: its data is in
//! `<node data dir>/volumes/local-path/<namespace>/<claim>`, recorded as a
//! `local` path relative to the node's data directory (which the control
//! plane does not know). The node agent mounts a bound volume's relative
//! `local` path, and that same per-claim directory for any other volume
//! (node/src/pods/claims.rs).

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{
    LocalVolumeSource, Node, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm,
    ObjectReference, PersistentVolume, PersistentVolumeClaim, PersistentVolumeSpec,
    VolumeNodeAffinity,
};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::api::ObjectMeta;

use super::runtime::selector::{Labels, node_selector_matches, selector_matches};
use crate::scheduler::resources::parse_quantity;

/// The class skiff installs.
pub const LOCAL_PATH_CLASS: &str = "local-path";
/// The provisioner of that class (this controller).
pub const LOCAL_PATH_PROVISIONER: &str = "skiff.dev/local-path";
/// Marks the default StorageClass.
pub const IS_DEFAULT_CLASS: &str = "storageclass.kubernetes.io/is-default-class";
const BETA_IS_DEFAULT_CLASS: &str = "storageclass.beta.kubernetes.io/is-default-class";
/// Names the provisioner that created a volume.
pub const PROVISIONED_BY: &str = "pv.kubernetes.io/provisioned-by";
/// The node label provisioned volumes are pinned by.
pub const HOSTNAME_LABEL: &str = "kubernetes.io/hostname";

/// A claim's class ("" when unset).
pub fn claim_class(c: &PersistentVolumeClaim) -> &str {
    c.spec
        .as_ref()
        .and_then(|s| s.storage_class_name.as_deref())
        .unwrap_or("")
}

/// A volume's class ("" when unset).
pub fn volume_class(v: &PersistentVolume) -> &str {
    v.spec
        .as_ref()
        .and_then(|s| s.storage_class_name.as_deref())
        .unwrap_or("")
}

/// The storage a claim requests, in bytes.
pub fn requested(c: &PersistentVolumeClaim) -> f64 {
    c.spec
        .as_ref()
        .and_then(|s| s.resources.as_ref())
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("storage"))
        .and_then(|q| parse_quantity(&q.0))
        .unwrap_or(0.0)
}

/// A volume's capacity, in bytes.
pub fn capacity(v: &PersistentVolume) -> f64 {
    v.spec
        .as_ref()
        .and_then(|s| s.capacity.as_ref())
        .and_then(|c| c.get("storage"))
        .and_then(|q| parse_quantity(&q.0))
        .unwrap_or(0.0)
}

fn phase(v: &PersistentVolume) -> &str {
    v.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("Pending")
}

/// True when the volume's claimRef names this claim (and its uid, once set).
pub fn bound_to(v: &PersistentVolume, c: &PersistentVolumeClaim) -> bool {
    let Some(r) = v.spec.as_ref().and_then(|s| s.claim_ref.as_ref()) else {
        return false;
    };
    r.name.as_deref() == c.metadata.name.as_deref()
        && r.namespace.as_deref() == c.metadata.namespace.as_deref()
        && r.uid
            .as_deref()
            .is_none_or(|u| u.is_empty() || Some(u) == c.metadata.uid.as_deref())
}

/// True when the volume offers every access mode the claim asks for.
pub fn access_modes_fit(v: &PersistentVolume, c: &PersistentVolumeClaim) -> bool {
    let offered = v
        .spec
        .as_ref()
        .and_then(|s| s.access_modes.as_deref())
        .unwrap_or_default();
    let wanted = c
        .spec
        .as_ref()
        .and_then(|s| s.access_modes.as_deref())
        .unwrap_or_default();
    wanted.iter().all(|m| offered.contains(m))
}

fn volume_mode_fits(v: &PersistentVolume, c: &PersistentVolumeClaim) -> bool {
    let of = |m: Option<&str>| m.unwrap_or("Filesystem").to_string();
    of(v.spec.as_ref().and_then(|s| s.volume_mode.as_deref()))
        == of(c.spec.as_ref().and_then(|s| s.volume_mode.as_deref()))
}

/// True when the volume's node affinity admits the node.
pub fn node_fits(v: &PersistentVolume, node: &str, labels: &Labels) -> bool {
    let required = v
        .spec
        .as_ref()
        .and_then(|s| s.node_affinity.as_ref())
        .and_then(|a| a.required.as_ref());
    required.is_none_or(|sel| node_selector_matches(sel, node, labels))
}

/// Why a volume the claim names cannot hold it, if it cannot.
pub fn mismatch(v: &PersistentVolume, c: &PersistentVolumeClaim) -> Option<&'static str> {
    if capacity(v) < requested(c) {
        Some("requested PV is too small")
    } else if volume_class(v) != claim_class(c) {
        Some("storageClassName does not match")
    } else if !volume_mode_fits(v, c) {
        Some("incompatible volumeMode")
    } else if !access_modes_fit(v, c) {
        Some("incompatible accessMode")
    } else {
        None
    }
}

/// The volume to bind a claim to: one pre-bound to it, else the smallest
/// Available match. With `delay` (WaitForFirstConsumer, no node chosen yet)
/// only a pre-bound volume qualifies; with a `node`, its affinity must admit it.
pub fn best_match(
    volumes: &[Arc<PersistentVolume>],
    c: &PersistentVolumeClaim,
    delay: bool,
    node: Option<(&str, &Labels)>,
) -> Option<Arc<PersistentVolume>> {
    let selector = c.spec.as_ref().and_then(|s| s.selector.as_ref());
    let mut best: Option<&Arc<PersistentVolume>> = None;
    for v in volumes {
        let claimed = v.spec.as_ref().and_then(|s| s.claim_ref.as_ref()).is_some();
        if (claimed && !bound_to(v, c))
            || capacity(v) < requested(c)
            || !volume_mode_fits(v, c)
            || v.metadata.deletion_timestamp.is_some()
        {
            continue;
        }
        let node_ok = node.is_none_or(|(n, l)| node_fits(v, n, l));
        if bound_to(v, c) {
            return node_ok.then(|| v.clone());
        }
        if delay && node.is_none() {
            continue;
        }
        let fits = phase(v) == "Available"
            && selector.is_none_or(|s| selector_matches(s, v.labels()))
            && volume_class(v) == claim_class(c)
            && node_ok
            && access_modes_fit(v, c);
        if fits && best.is_none_or(|b| capacity(b) > capacity(v)) {
            best = Some(v);
        }
    }
    best.cloned()
}

fn is_default(sc: &StorageClass) -> bool {
    let a = sc.annotations();
    a.get(IS_DEFAULT_CLASS)
        .or_else(|| a.get(BETA_IS_DEFAULT_CLASS))
        .map(String::as_str)
        == Some("true")
}

/// The default StorageClass: the newest marked default (then by name), as upstream.
pub fn default_class(classes: &[Arc<StorageClass>]) -> Option<Arc<StorageClass>> {
    classes
        .iter()
        .filter(|sc| is_default(sc) && sc.metadata.deletion_timestamp.is_none())
        .max_by_key(|sc| {
            let created = sc
                .metadata
                .creation_timestamp
                .as_ref()
                .map_or(Timestamp::UNIX_EPOCH, |t| t.0);
            (created, std::cmp::Reverse(sc.name_any()))
        })
        .cloned()
}

/// The `local-path` class: WaitForFirstConsumer, reclaim Delete, default
/// unless another class already is.
pub fn local_path_class(default: bool) -> StorageClass {
    StorageClass {
        metadata: ObjectMeta {
            name: Some(LOCAL_PATH_CLASS.into()),
            annotations: default
                .then(|| [(IS_DEFAULT_CLASS.to_string(), "true".to_string())].into()),
            ..Default::default()
        },
        provisioner: LOCAL_PATH_PROVISIONER.into(),
        reclaim_policy: Some("Delete".into()),
        volume_binding_mode: Some("WaitForFirstConsumer".into()),
        ..Default::default()
    }
}

/// A claimRef pointing at `c`.
pub fn claim_ref(c: &PersistentVolumeClaim) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("PersistentVolumeClaim".into()),
        namespace: c.metadata.namespace.clone(),
        name: c.metadata.name.clone(),
        uid: c.metadata.uid.clone(),
        resource_version: c.metadata.resource_version.clone(),
        field_path: None,
    }
}

/// The directory, relative to the node's data directory, where the node
/// agent keeps a claim's data.
pub fn local_path(namespace: &str, claim: &str) -> String {
    format!("volumes/local-path/{namespace}/{claim}")
}

/// The volume the local-path provisioner creates for a claim on `node`:
/// named `pvc-<claim uid>`, pre-bound to the claim, pinned to the node.
pub fn provisioned_volume(
    c: &PersistentVolumeClaim,
    class: &StorageClass,
    node: &str,
) -> PersistentVolume {
    let spec = c.spec.clone().unwrap_or_default();
    let storage = spec
        .resources
        .as_ref()
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("storage").cloned())
        .unwrap_or_else(|| Quantity("0".into()));
    let pin = NodeSelector {
        node_selector_terms: vec![NodeSelectorTerm {
            match_expressions: Some(vec![NodeSelectorRequirement {
                key: HOSTNAME_LABEL.into(),
                operator: "In".into(),
                values: Some(vec![node.into()]),
            }]),
            match_fields: None,
        }],
    };
    PersistentVolume {
        metadata: ObjectMeta {
            name: Some(format!(
                "pvc-{}",
                c.metadata.uid.as_deref().unwrap_or_default()
            )),
            annotations: Some(BTreeMap::from([(
                PROVISIONED_BY.to_string(),
                LOCAL_PATH_PROVISIONER.to_string(),
            )])),
            ..Default::default()
        },
        spec: Some(PersistentVolumeSpec {
            capacity: Some([("storage".to_string(), storage)].into()),
            access_modes: spec.access_modes.clone(),
            persistent_volume_reclaim_policy: Some(
                class
                    .reclaim_policy
                    .clone()
                    .unwrap_or_else(|| "Delete".into()),
            ),
            storage_class_name: Some(class.name_any()),
            volume_mode: spec.volume_mode.clone(),
            mount_options: class.mount_options.clone(),
            claim_ref: Some(claim_ref(c)),
            local: Some(LocalVolumeSource {
                path: local_path(&c.namespace().unwrap_or_default(), &c.name_any()),
                fs_type: None,
            }),
            node_affinity: Some(VolumeNodeAffinity {
                required: Some(pin),
            }),
            ..Default::default()
        }),
        status: None,
    }
}

/// A node's name and labels, for node affinity checks.
pub fn node_facts(n: &Node) -> (String, Labels) {
    (n.name_any(), n.labels().clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        PersistentVolumeClaimSpec, PersistentVolumeStatus, VolumeResourceRequirements,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, Time};

    fn pv(name: &str, size: &str, class: &str, modes: &[&str], phase: &str) -> PersistentVolume {
        PersistentVolume {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            spec: Some(PersistentVolumeSpec {
                capacity: Some([("storage".to_string(), Quantity(size.into()))].into()),
                storage_class_name: (!class.is_empty()).then(|| class.into()),
                access_modes: Some(modes.iter().map(|m| m.to_string()).collect()),
                ..Default::default()
            }),
            status: Some(PersistentVolumeStatus {
                phase: Some(phase.into()),
                ..Default::default()
            }),
        }
    }

    fn pvc(size: &str, class: Option<&str>, modes: &[&str]) -> PersistentVolumeClaim {
        PersistentVolumeClaim {
            metadata: ObjectMeta {
                name: Some("data".into()),
                namespace: Some("ns".into()),
                uid: Some("u1".into()),
                ..Default::default()
            },
            spec: Some(PersistentVolumeClaimSpec {
                access_modes: Some(modes.iter().map(|m| m.to_string()).collect()),
                storage_class_name: class.map(Into::into),
                resources: Some(VolumeResourceRequirements {
                    requests: Some([("storage".to_string(), Quantity(size.into()))].into()),
                    limits: None,
                }),
                ..Default::default()
            }),
            status: None,
        }
    }

    fn names(v: Option<Arc<PersistentVolume>>) -> Option<String> {
        v.map(|v| v.name_any())
    }

    #[test]
    fn smallest_available_volume_that_fits_wins() {
        let vols: Vec<_> = [
            pv("small", "500Mi", "manual", &["ReadWriteOnce"], "Available"),
            pv(
                "big",
                "10Gi",
                "manual",
                &["ReadWriteOnce", "ReadOnlyMany"],
                "Available",
            ),
            pv("right", "2Gi", "manual", &["ReadWriteOnce"], "Available"),
            pv(
                "other-class",
                "1Gi",
                "fast",
                &["ReadWriteOnce"],
                "Available",
            ),
            pv("released", "1Gi", "manual", &["ReadWriteOnce"], "Released"),
            pv("rox", "1Gi", "manual", &["ReadOnlyMany"], "Available"),
        ]
        .into_iter()
        .map(Arc::new)
        .collect();
        let c = pvc("1Gi", Some("manual"), &["ReadWriteOnce"]);
        assert_eq!(
            names(best_match(&vols, &c, false, None)).as_deref(),
            Some("right")
        );
        let c = pvc("1Gi", Some("manual"), &["ReadWriteOnce", "ReadOnlyMany"]);
        assert_eq!(
            names(best_match(&vols, &c, false, None)).as_deref(),
            Some("big")
        );
        let c = pvc("20Gi", Some("manual"), &["ReadWriteOnce"]);
        assert_eq!(best_match(&vols, &c, false, None), None);
        // Class "" only matches volumes without a class.
        let c = pvc("1Gi", None, &["ReadWriteOnce"]);
        assert_eq!(best_match(&vols, &c, false, None), None);
        // Waiting for a consumer: nothing but a pre-bound volume.
        let c = pvc("1Gi", Some("manual"), &["ReadWriteOnce"]);
        assert_eq!(best_match(&vols, &c, true, None), None);
    }

    #[test]
    fn prebound_volumes_selectors_and_node_affinity() {
        let c = pvc("1Gi", Some("local-path"), &["ReadWriteOnce"]);
        let mut mine = pv("mine", "1Gi", "local-path", &["ReadWriteOnce"], "Pending");
        mine.spec.as_mut().unwrap().claim_ref = Some(claim_ref(&c));
        let mut theirs = pv(
            "theirs",
            "5Gi",
            "local-path",
            &["ReadWriteOnce"],
            "Available",
        );
        theirs.spec.as_mut().unwrap().claim_ref = Some(ObjectReference {
            name: Some("x".into()),
            namespace: Some("ns".into()),
            ..Default::default()
        });
        let vols = vec![Arc::new(theirs), Arc::new(mine)];
        assert_eq!(
            names(best_match(&vols, &c, true, None)).as_deref(),
            Some("mine"),
            "pre-bound wins even unscheduled"
        );
        // A uid mismatch (claim recreated) is not bound to this claim.
        let mut stale = (*vols[1]).clone();
        stale.spec.as_mut().unwrap().claim_ref.as_mut().unwrap().uid = Some("old".into());
        assert!(!bound_to(&stale, &c));

        let mut pinned = pv("pinned", "1Gi", "manual", &["ReadWriteOnce"], "Available");
        pinned.metadata.labels = Some([("tier".to_string(), "gold".to_string())].into());
        let on_a = provisioned_volume(&c, &local_path_class(true), "a");
        pinned.spec.as_mut().unwrap().node_affinity = on_a.spec.unwrap().node_affinity;
        let vols = vec![Arc::new(pinned)];
        let mut c = pvc("1Gi", Some("manual"), &["ReadWriteOnce"]);
        let a: Labels = [(HOSTNAME_LABEL.to_string(), "a".to_string())].into();
        let b: Labels = [(HOSTNAME_LABEL.to_string(), "b".to_string())].into();
        assert!(best_match(&vols, &c, true, Some(("a", &a))).is_some());
        assert!(best_match(&vols, &c, true, Some(("b", &b))).is_none());
        c.spec.as_mut().unwrap().selector = Some(LabelSelector {
            match_labels: Some([("tier".to_string(), "silver".to_string())].into()),
            match_expressions: None,
        });
        assert!(
            best_match(&vols, &c, false, None).is_none(),
            "selector must match the volume's labels"
        );
    }

    #[test]
    fn default_class_and_provisioned_volumes() {
        let mut old = local_path_class(true);
        old.metadata.name = Some("old".into());
        old.metadata.creation_timestamp = Some(Time(Timestamp::from_second(1).unwrap()));
        let mut new = local_path_class(true);
        new.metadata.creation_timestamp = Some(Time(Timestamp::from_second(2).unwrap()));
        let plain = local_path_class(false);
        let classes = vec![Arc::new(old), Arc::new(new), Arc::new(plain)];
        assert_eq!(
            default_class(&classes).unwrap().name_any(),
            "local-path",
            "the newest default"
        );
        assert!(default_class(&classes[2..]).is_none());

        let c = pvc("1Gi", Some("local-path"), &["ReadWriteOnce"]);
        let v = provisioned_volume(&c, &classes[1], "node-1");
        assert_eq!(v.name_any(), "pvc-u1");
        assert!(bound_to(&v, &c));
        assert_eq!(mismatch(&v, &c), None);
        let spec = v.spec.as_ref().unwrap();
        assert_eq!(
            spec.persistent_volume_reclaim_policy.as_deref(),
            Some("Delete")
        );
        assert_eq!(
            spec.local.as_ref().unwrap().path,
            "volumes/local-path/ns/data"
        );
        assert_eq!(
            v.annotations().get(PROVISIONED_BY).map(String::as_str),
            Some(LOCAL_PATH_PROVISIONER)
        );
        let l: Labels = [(HOSTNAME_LABEL.to_string(), "node-1".to_string())].into();
        assert!(node_fits(&v, "node-1", &l));
        assert!(!node_fits(&v, "node-2", &Labels::new()));
        assert_eq!(
            mismatch(&v, &pvc("2Gi", Some("local-path"), &[])),
            Some("requested PV is too small")
        );
    }
}
