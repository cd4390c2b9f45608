//! PersistentVolumeClaims a pod mounts. As kubelet's volume manager does, the
//! node waits until each claim is Bound before it starts the pod: a missing,
//! Pending or terminating claim keeps the pod in ContainerCreating, retried
//! with back-off (`worker.rs`), with a `FailedMount` Warning once the wait
//! has lasted a few seconds. A bound claim mounts its volume's directory:
//! skiff's local-path volumes name it as a `local` path relative to the
//! node's data directory; any other volume keeps the claim's data in
//! `<data dir>/volumes/local-path/<namespace>/<claim>`. Claims and volumes
//! are read with `get` (nodes may not list or watch them); deciding from
//! the objects is pure (`bound_volume`, `volume_dir`).

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Component, Path, PathBuf};

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Volume};
use kube::Api;

/// The claims of a pod that cannot be mounted yet, by volume name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ClaimsNotReady {
    /// (volume name, why), in the pod's order.
    pub waiting: Vec<(String, String)>,
}

impl fmt::Display for ClaimsNotReady {
    /// kubelet's shape: `Unable to attach or mount volumes: unmounted
    /// volumes=[data], failed to process volumes=[data]: error processing
    /// PVC ns/data: <why>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.waiting.iter().map(|(v, _)| v.as_str()).collect();
        let names = names.join(" ");
        let why: Vec<&str> = self.waiting.iter().map(|(_, w)| w.as_str()).collect();
        write!(
            f,
            "Unable to attach or mount volumes: unmounted volumes=[{names}], failed to process volumes=[{names}]: {}",
            why.join("; ")
        )
    }
}

/// The claim and the volume it is bound to, or why the pod must wait for it.
pub fn bound_volume<'a>(
    ns: &str,
    name: &str,
    claim: Option<&'a PersistentVolumeClaim>,
) -> Result<(&'a PersistentVolumeClaim, &'a str), String> {
    let context = format!("error processing PVC {ns}/{name}");
    let Some(claim) = claim else {
        return Err(format!(
            "{context}: persistentvolumeclaim \"{name}\" not found"
        ));
    };
    if claim.metadata.deletion_timestamp.is_some() {
        return Err(format!(
            "{context}: persistentvolumeclaim \"{name}\" is being deleted"
        ));
    }
    let phase = claim
        .status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("Pending");
    let volume = claim
        .spec
        .as_ref()
        .and_then(|s| s.volume_name.as_deref())
        .filter(|v| !v.is_empty());
    match volume {
        Some(volume) if phase == "Bound" => Ok((claim, volume)),
        _ => Err(format!(
            "{context}: persistentvolumeclaim \"{name}\" is not bound (phase {phase:?})"
        )),
    }
}

/// The directory a bound claim mounts, or why the pod must wait.
pub fn volume_dir(
    ns: &str,
    claim: &PersistentVolumeClaim,
    volume_name: &str,
    volume: Option<&PersistentVolume>,
    data_dir: &Path,
) -> Result<PathBuf, String> {
    let name = claim.metadata.name.as_deref().unwrap_or_default();
    let context = format!("error processing PVC {ns}/{name}");
    let Some(volume) = volume else {
        return Err(format!(
            "{context}: persistentvolume \"{volume_name}\" not found"
        ));
    };
    let spec = volume.spec.as_ref();
    let bound_uid = spec
        .and_then(|s| s.claim_ref.as_ref())
        .and_then(|r| r.uid.as_deref());
    if let (Some(bound), Some(ours)) = (bound_uid, claim.metadata.uid.as_deref())
        && bound != ours
    {
        return Err(format!(
            "{context}: persistentvolume \"{volume_name}\" is bound to another claim"
        ));
    }
    let local = spec
        .and_then(|s| s.local.as_ref())
        .map(|l| Path::new(&l.path))
        .filter(|p| {
            p.components().next().is_some()
                && p.components().all(|c| matches!(c, Component::Normal(_)))
        });
    Ok(match local {
        Some(relative) => data_dir.join(relative),
        None => data_dir.join("volumes/local-path").join(ns).join(name),
    })
}

/// Reads the pod's claims and their volumes: the directory of every
/// `persistentVolumeClaim` volume (by volume name) once all are bound.
pub async fn claim_dirs(
    client: &kube::Client,
    ns: &str,
    volumes: &[Volume],
    data_dir: &Path,
) -> Result<BTreeMap<String, PathBuf>, ClaimsNotReady> {
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), ns);
    let pvs: Api<PersistentVolume> = Api::all(client.clone());
    let mut dirs = BTreeMap::new();
    let mut waiting = Vec::new();
    for v in volumes {
        let Some(source) = &v.persistent_volume_claim else {
            continue;
        };
        match claim_dir(&claims, &pvs, ns, &source.claim_name, data_dir).await {
            Ok(dir) => {
                dirs.insert(v.name.clone(), dir);
            }
            Err(why) => waiting.push((v.name.clone(), why)),
        }
    }
    if waiting.is_empty() {
        Ok(dirs)
    } else {
        Err(ClaimsNotReady { waiting })
    }
}

/// One claim's directory, or why the pod must wait for it.
async fn claim_dir(
    claims: &Api<PersistentVolumeClaim>,
    pvs: &Api<PersistentVolume>,
    ns: &str,
    name: &str,
    data_dir: &Path,
) -> Result<PathBuf, String> {
    let fetch = |what: &str, e: kube::Error| {
        format!("error processing PVC {ns}/{name}: failed to fetch {what} from API server: {e}")
    };
    let claim = claims.get_opt(name).await.map_err(|e| fetch("PVC", e))?;
    let (claim, pv_name) = bound_volume(ns, name, claim.as_ref())?;
    let pv = pvs.get_opt(pv_name).await.map_err(|e| fetch("PV", e))?;
    volume_dir(ns, claim, pv_name, pv.as_ref(), data_dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        LocalVolumeSource, ObjectReference, PersistentVolumeClaimSpec, PersistentVolumeClaimStatus,
        PersistentVolumeSpec,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

    fn claim(phase: Option<&str>, volume: Option<&str>) -> PersistentVolumeClaim {
        PersistentVolumeClaim {
            metadata: ObjectMeta {
                name: Some("data".into()),
                namespace: Some("ns".into()),
                uid: Some("u1".into()),
                ..Default::default()
            },
            spec: Some(PersistentVolumeClaimSpec {
                volume_name: volume.map(String::from),
                ..Default::default()
            }),
            status: Some(PersistentVolumeClaimStatus {
                phase: phase.map(String::from),
                ..Default::default()
            }),
        }
    }

    fn volume(uid: &str, local: Option<&str>) -> PersistentVolume {
        PersistentVolume {
            spec: Some(PersistentVolumeSpec {
                claim_ref: Some(ObjectReference {
                    uid: Some(uid.into()),
                    ..Default::default()
                }),
                local: local.map(|p| LocalVolumeSource {
                    path: p.into(),
                    fs_type: None,
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn waits_for_a_bound_claim() {
        let missing = bound_volume("ns", "data", None).unwrap_err();
        assert_eq!(
            missing,
            "error processing PVC ns/data: persistentvolumeclaim \"data\" not found"
        );
        let pending = bound_volume("ns", "data", Some(&claim(Some("Pending"), None))).unwrap_err();
        assert!(
            pending.ends_with("is not bound (phase \"Pending\")"),
            "{pending}"
        );
        // A volumeName alone is not enough: the controller has not finished binding.
        assert!(bound_volume("ns", "data", Some(&claim(None, Some("pv1")))).is_err());
        let bound = claim(Some("Bound"), Some("pv1"));
        assert_eq!(
            bound_volume("ns", "data", Some(&bound)).map(|(_, v)| v),
            Ok("pv1")
        );
        let mut deleting = claim(Some("Bound"), Some("pv1"));
        deleting.metadata.deletion_timestamp = Some(Time(k8s_openapi::jiff::Timestamp::now()));
        assert!(
            bound_volume("ns", "data", Some(&deleting))
                .unwrap_err()
                .contains("is being deleted")
        );
    }

    #[test]
    fn mounts_the_bound_volumes_directory() {
        let data = Path::new("/node");
        let c = claim(Some("Bound"), Some("pv1"));
        assert_eq!(
            volume_dir(
                "ns",
                &c,
                "pv1",
                Some(&volume("u1", Some("volumes/static/x"))),
                data
            ),
            Ok(PathBuf::from("/node/volumes/static/x"))
        );
        // Absolute or escaping paths are not the node's to follow: the claim's own directory.
        for path in [Some("/srv/x"), Some("../x"), None] {
            assert_eq!(
                volume_dir("ns", &c, "pv1", Some(&volume("u1", path)), data),
                Ok(PathBuf::from("/node/volumes/local-path/ns/data"))
            );
        }
        assert!(
            volume_dir("ns", &c, "pv1", Some(&volume("other", None)), data)
                .unwrap_err()
                .contains("bound to another claim")
        );
        assert!(
            volume_dir("ns", &c, "pv1", None, data)
                .unwrap_err()
                .contains("persistentvolume \"pv1\" not found")
        );
    }

    #[test]
    fn names_every_waiting_volume() {
        let e = ClaimsNotReady {
            waiting: vec![("a".into(), "why a".into()), ("b".into(), "why b".into())],
        };
        assert_eq!(
            e.to_string(),
            "Unable to attach or mount volumes: unmounted volumes=[a b], failed to process volumes=[a b]: why a; why b"
        );
    }
}
