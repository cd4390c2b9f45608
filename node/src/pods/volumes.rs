//! Pod volumes on the node: where each volume lives (`<pod dir>/volumes/<name>`;
//! emptyDir `medium: Memory`, secret, projected and downwardAPI in memory
//! under the node's directory in /dev/shm; a bound PVC's directory as
//! `claims.rs` found it; hostPath when allowed), the files a configMap /
//! secret / downwardAPI / projected volume holds (pure; the ServiceAccount
//! tokens of `serviceAccountToken` sources are fetched beforehand, see
//! `tokens.rs`), writing them so updates replace files atomically, and
//! tearing a pod's volumes down.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use k8s_openapi::api::core::v1::{Container, KeyToPath, Volume};

use super::env::{PodFacts, resource_value};
use super::source::{ObjectSource, config_map_data, field_value, secret_data};
use super::tokens::{PodTokens, TokenKey};
use crate::runtime::Mount;

/// Why a volume could not be set up (`FailedMount`; retried).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct VolumeError(pub String);

/// One file of a projected volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectedFile {
    pub path: String,
    pub data: Vec<u8>,
    pub mode: u32,
}

/// Node-level facts volumes need.
pub struct VolumeContext<'a> {
    pub pod_dir: &'a Path,
    /// This node's directory for in-memory volumes ([`memory_volume_root`]).
    pub memory_root: Option<&'a Path>,
    /// The directories of the pod's bound claims, by volume name (`claims.rs`).
    pub claim_dirs: &'a BTreeMap<String, PathBuf>,
    pub allow_host_path: bool,
}

/// Where a volume's directory is on the host.
pub fn volume_dir(
    v: &Volume,
    ns: &str,
    uid: &str,
    ctx: &VolumeContext<'_>,
) -> Result<PathBuf, VolumeError> {
    if let Some(host) = &v.host_path {
        if !ctx.allow_host_path {
            return Err(VolumeError(format!(
                "hostPath volume {:?} is not allowed on this node",
                v.name
            )));
        }
        return Ok(PathBuf::from(&host.path));
    }
    if let Some(pvc) = &v.persistent_volume_claim {
        return ctx.claim_dirs.get(&v.name).cloned().ok_or_else(|| {
            VolumeError(format!(
                "persistentvolumeclaim {:?} in {ns} is not bound yet",
                pvc.claim_name
            ))
        });
    }
    // As kubelet: `medium: Memory` emptyDirs, and the volumes that carry
    // secrets and tokens (secret, projected, downwardAPI), live in memory, so
    // credentials never reach the disk. Where there is no tmpfs they fall
    // back to the pod's directory.
    let memory_emptydir = v
        .empty_dir
        .as_ref()
        .is_some_and(|e| e.medium.as_deref() == Some("Memory"));
    let in_memory =
        memory_emptydir || v.secret.is_some() || v.projected.is_some() || v.downward_api.is_some();
    if in_memory && let Some(root) = ctx.memory_root {
        return Ok(root.join(uid).join(&v.name));
    }
    Ok(pod_volumes_dir(ctx.pod_dir).join(&v.name))
}

/// Where a pod's on-disk volumes live, inside its directory (beside its logs).
pub fn pod_volumes_dir(pod_dir: &Path) -> PathBuf {
    pod_dir.join("volumes")
}

/// Where the in-memory volumes of the node whose data directory is
/// `node_data_dir` live (`<root>/<uid>/<volume>`): `/dev/shm/skiff/<id>`,
/// `<id>` a hash of the data directory's path, so that the nodes of several
/// clusters on one host never share (or sweep) each other's; None where
/// `/dev/shm` is not a directory.
pub fn memory_volume_root(node_data_dir: &Path) -> Option<PathBuf> {
    let shm = Path::new("/dev/shm");
    if !shm.is_dir() {
        return None;
    }
    let dir = std::fs::canonicalize(node_data_dir).unwrap_or_else(|_| node_data_dir.to_path_buf());
    // FNV-1a: stable across builds, unlike std's hasher.
    let id = dir
        .as_os_str()
        .as_encoded_bytes()
        .iter()
        .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
        });
    Some(shm.join("skiff").join(format!("{id:016x}")))
}

/// Removes what a pod's volumes hold on this node: its in-memory volumes
/// and the on-disk ones in its directory (emptyDir, and configMap volumes
/// where there is no tmpfs). Claims and hostPath directories are not the
/// pod's and stay.
pub fn remove_pod_volumes(pod_dir: &Path, memory_root: Option<&Path>, uid: &str) {
    for dir in std::iter::once(pod_volumes_dir(pod_dir)).chain(memory_root.map(|r| r.join(uid))) {
        remove_tree(&dir);
    }
}

/// Removes `dir` and everything in it; one that is not there is no error,
/// any other failure is logged (what is left is only disk or memory).
pub fn remove_tree(dir: &Path) {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => tracing::warn!(dir = %dir.display(), error = %e, "cannot remove volumes"),
    }
}

/// The files a configMap, secret, downwardAPI or projected volume holds
/// (`tokens`: the pod's ServiceAccount tokens); `None` for volumes that are
/// plain directories.
pub fn projected_files(
    v: &Volume,
    facts: &PodFacts<'_>,
    source: &dyn ObjectSource,
    tokens: &PodTokens,
) -> Result<Option<Vec<ProjectedFile>>, VolumeError> {
    let ns = facts.pod.metadata.namespace.as_deref().unwrap_or("default");
    let mut files = Vec::new();
    if let Some(cm) = &v.config_map {
        let data = source.config_map(ns, &cm.name).map(|c| config_map_data(&c));
        add_keyed(
            &mut files,
            "configmap",
            &cm.name,
            data,
            cm.items.as_deref(),
            cm.default_mode,
            cm.optional,
        )?;
    } else if let Some(s) = &v.secret {
        let name = s.secret_name.clone().unwrap_or_default();
        let data = source.secret(ns, &name).map(|x| secret_data(&x));
        add_keyed(
            &mut files,
            "secret",
            &name,
            data,
            s.items.as_deref(),
            s.default_mode,
            s.optional,
        )?;
    } else if let Some(d) = &v.downward_api {
        for item in d.items.iter().flatten() {
            files.push(downward_file(facts, item, d.default_mode)?);
        }
    } else if let Some(p) = &v.projected {
        for src in p.sources.iter().flatten() {
            if let Some(cm) = &src.config_map {
                let data = source.config_map(ns, &cm.name).map(|c| config_map_data(&c));
                add_keyed(
                    &mut files,
                    "configmap",
                    &cm.name,
                    data,
                    cm.items.as_deref(),
                    p.default_mode,
                    cm.optional,
                )?;
            }
            if let Some(s) = &src.secret {
                let data = source.secret(ns, &s.name).map(|x| secret_data(&x));
                add_keyed(
                    &mut files,
                    "secret",
                    &s.name,
                    data,
                    s.items.as_deref(),
                    p.default_mode,
                    s.optional,
                )?;
            }
            if let Some(d) = &src.downward_api {
                for item in d.items.iter().flatten() {
                    files.push(downward_file(facts, item, p.default_mode)?);
                }
            }
            if let Some(t) = &src.service_account_token {
                let token = tokens.get(&TokenKey::of(t)).ok_or_else(|| {
                    VolumeError(format!("no ServiceAccount token for {:?} yet", t.path))
                })?;
                files.push(ProjectedFile {
                    path: t.path.clone(),
                    data: token.as_bytes().to_vec(),
                    mode: p.default_mode.unwrap_or(0o644) as u32,
                });
            }
        }
    } else {
        return Ok(None);
    }
    Ok(Some(files))
}

fn add_keyed(
    files: &mut Vec<ProjectedFile>,
    kind: &str,
    name: &str,
    data: Option<BTreeMap<String, Vec<u8>>>,
    items: Option<&[KeyToPath]>,
    default_mode: Option<i32>,
    optional: Option<bool>,
) -> Result<(), VolumeError> {
    let optional = optional == Some(true);
    let Some(data) = data else {
        return if optional {
            Ok(())
        } else {
            Err(VolumeError(format!("{kind} \"{name}\" not found")))
        };
    };
    let mode = default_mode.unwrap_or(0o644) as u32;
    match items {
        None => files.extend(data.into_iter().map(|(k, v)| ProjectedFile {
            path: k,
            data: v,
            mode,
        })),
        Some(items) => {
            for item in items {
                let Some(bytes) = data.get(&item.key) else {
                    if optional {
                        continue;
                    }
                    return Err(VolumeError(format!(
                        "{kind} \"{name}\" has no key {:?}",
                        item.key
                    )));
                };
                files.push(ProjectedFile {
                    path: item.path.clone(),
                    data: bytes.clone(),
                    mode: item.mode.map(|m| m as u32).unwrap_or(mode),
                });
            }
        }
    }
    Ok(())
}

fn downward_file(
    facts: &PodFacts<'_>,
    item: &k8s_openapi::api::core::v1::DownwardAPIVolumeFile,
    default_mode: Option<i32>,
) -> Result<ProjectedFile, VolumeError> {
    let value = if let Some(f) = &item.field_ref {
        field_value(facts.pod, &f.field_path, facts.pod_ip, facts.host_ip)
            .ok_or_else(|| VolumeError(format!("unsupported fieldPath {:?}", f.field_path)))?
    } else if let Some(r) = &item.resource_field_ref {
        let spec = facts.pod.spec.as_ref();
        let c = spec
            .and_then(|s| {
                s.containers
                    .iter()
                    .find(|c| Some(c.name.as_str()) == r.container_name.as_deref())
                    .or(s.containers.first())
            })
            .ok_or_else(|| VolumeError("resourceFieldRef: pod has no containers".into()))?;
        resource_value(
            facts,
            c,
            &r.resource,
            r.divisor.as_ref().map(|d| d.0.as_str()),
        )
        .map_err(|e| VolumeError(e.0))?
    } else {
        String::new()
    };
    Ok(ProjectedFile {
        path: item.path.clone(),
        data: value.into_bytes(),
        mode: item.mode.or(default_mode).unwrap_or(0o644) as u32,
    })
}

/// A relative file path that stays inside its volume.
fn safe_relative(path: &str) -> Option<PathBuf> {
    let p = Path::new(path);
    let ok = !path.is_empty() && p.components().all(|c| matches!(c, Component::Normal(_)));
    ok.then(|| p.to_path_buf())
}

/// Writes a projected volume: each changed file is replaced atomically
/// (write to a temporary name, rename); files no longer projected are removed.
/// Returns whether anything changed.
pub fn write_projection(
    dir: &Path,
    files: &[ProjectedFile],
    previous: &[ProjectedFile],
) -> Result<bool, VolumeError> {
    write_files(dir, files, previous, Replace::Atomically)
}

/// Writes a projected volume before any container of the pod has started
/// (so none can see a file half written): each file in place, without the
/// temporary name and rename of [`write_projection`].
pub fn write_projection_before_start(
    dir: &Path,
    files: &[ProjectedFile],
    previous: &[ProjectedFile],
) -> Result<bool, VolumeError> {
    write_files(dir, files, previous, Replace::InPlace)
}

/// How [`write_files`] replaces a file.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Replace {
    Atomically,
    InPlace,
}

fn write_files(
    dir: &Path,
    files: &[ProjectedFile],
    previous: &[ProjectedFile],
    replace: Replace,
) -> Result<bool, VolumeError> {
    let io = |what: &str, p: &Path, e: std::io::Error| {
        VolumeError(format!("{what} {}: {e}", p.display()))
    };
    std::fs::create_dir_all(dir).map_err(|e| io("creating", dir, e))?;
    let mut changed = false;
    for f in files {
        let rel = safe_relative(&f.path)
            .ok_or_else(|| VolumeError(format!("invalid item path {:?}", f.path)))?;
        let target = dir.join(&rel);
        if previous.contains(f) && target.exists() {
            continue;
        }
        if let Some(parent) = target.parent()
            && parent != dir
        {
            std::fs::create_dir_all(parent).map_err(|e| io("creating", parent, e))?;
        }
        if replace == Replace::InPlace {
            write_file(&target, f).map_err(|e| io("writing", &target, e))?;
        } else {
            let tmp = target.with_file_name(format!(
                "..{}.tmp",
                target
                    .file_name()
                    .and_then(|n| n.to_str())
                    .unwrap_or("file")
            ));
            write_file(&tmp, f).map_err(|e| io("writing", &tmp, e))?;
            std::fs::rename(&tmp, &target).map_err(|e| io("renaming", &target, e))?;
        }
        changed = true;
    }
    for old in previous {
        if !files.iter().any(|f| f.path == old.path)
            && let Some(rel) = safe_relative(&old.path)
        {
            let _ = std::fs::remove_file(dir.join(rel));
            changed = true;
        }
    }
    Ok(changed)
}

/// Writes one projected file with its mode (set on the open file, so the
/// umask does not narrow it).
fn write_file(path: &Path, f: &ProjectedFile) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut file = std::fs::File::create(path)?;
    set_mode(&file, f.mode);
    file.write_all(&f.data)
}

#[cfg(unix)]
fn set_mode(file: &std::fs::File, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    let _ = file.set_permissions(std::fs::Permissions::from_mode(mode & 0o777));
}

#[cfg(not(unix))]
fn set_mode(_file: &std::fs::File, _mode: u32) {}

/// The container's mounts, from its volumeMounts and the pod's volume directories.
pub fn container_mounts(
    c: &Container,
    dirs: &BTreeMap<String, PathBuf>,
) -> Result<Vec<Mount>, VolumeError> {
    let mut mounts = Vec::new();
    for m in c.volume_mounts.iter().flatten() {
        let dir = dirs.get(&m.name).ok_or_else(|| {
            VolumeError(format!(
                "volumeMount {:?} names no volume of the pod",
                m.name
            ))
        })?;
        let host_path = match m.sub_path.as_deref().filter(|s| !s.is_empty()) {
            Some(sub) => dir.join(
                safe_relative(sub)
                    .ok_or_else(|| VolumeError(format!("invalid subPath {sub:?}")))?,
            ),
            None => dir.clone(),
        };
        mounts.push(Mount {
            host_path,
            container_path: m.mount_path.clone(),
            read_only: m.read_only == Some(true),
        });
    }
    Ok(mounts)
}

/// Bytes used under a directory (for emptyDir `sizeLimit`).
pub fn dir_size(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_size(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pods::source::MapSource;
    use k8s_openapi::api::core::v1::{
        ConfigMap, ConfigMapVolumeSource, Pod, SecretVolumeSource, VolumeMount,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    use std::sync::Arc;

    fn facts_pod() -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some("p".into()),
                namespace: Some("ns".into()),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    fn source() -> MapSource {
        let mut s = MapSource::default();
        s.config_maps.insert(
            ("ns".into(), "cm".into()),
            Arc::new(ConfigMap {
                data: Some(BTreeMap::from([
                    ("a.conf".into(), "A".into()),
                    ("b.conf".into(), "B".into()),
                ])),
                ..Default::default()
            }),
        );
        s
    }

    #[test]
    fn projects_config_map_items_modes_and_optional() {
        let pod = facts_pod();
        let facts = PodFacts {
            pod: &pod,
            pod_ip: "",
            host_ip: "",
            node_cpu: 1.0,
            node_memory: 1.0,
        };
        let vol = |items: Option<Vec<KeyToPath>>, name: &str, optional: Option<bool>| Volume {
            name: "v".into(),
            config_map: Some(ConfigMapVolumeSource {
                name: name.into(),
                items,
                default_mode: Some(0o600),
                optional,
            }),
            ..Default::default()
        };
        let all = projected_files(
            &vol(None, "cm", None),
            &facts,
            &source(),
            &PodTokens::default(),
        )
        .unwrap()
        .unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(
            all[0],
            ProjectedFile {
                path: "a.conf".into(),
                data: b"A".to_vec(),
                mode: 0o600
            }
        );
        let items = vec![KeyToPath {
            key: "b.conf".into(),
            path: "sub/b".into(),
            mode: Some(0o400),
        }];
        let one = projected_files(
            &vol(Some(items), "cm", None),
            &facts,
            &source(),
            &PodTokens::default(),
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            one,
            vec![ProjectedFile {
                path: "sub/b".into(),
                data: b"B".to_vec(),
                mode: 0o400
            }]
        );
        assert!(
            projected_files(
                &vol(None, "missing", None),
                &facts,
                &source(),
                &PodTokens::default()
            )
            .is_err()
        );
        assert_eq!(
            projected_files(
                &vol(None, "missing", Some(true)),
                &facts,
                &source(),
                &PodTokens::default()
            )
            .unwrap(),
            Some(vec![])
        );
        let secret = Volume {
            name: "s".into(),
            secret: Some(SecretVolumeSource {
                secret_name: Some("nope".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert!(
            projected_files(&secret, &facts, &source(), &PodTokens::default())
                .unwrap_err()
                .0
                .contains("secret")
        );
        let empty = Volume {
            name: "e".into(),
            empty_dir: Some(Default::default()),
            ..Default::default()
        };
        assert_eq!(
            projected_files(&empty, &facts, &source(), &PodTokens::default()).unwrap(),
            None
        );
    }

    #[test]
    fn projects_service_account_tokens_once_fetched() {
        use k8s_openapi::api::core::v1::{
            ProjectedVolumeSource, ServiceAccountTokenProjection, VolumeProjection,
        };
        let pod = facts_pod();
        let facts = PodFacts {
            pod: &pod,
            pod_ip: "",
            host_ip: "",
            node_cpu: 1.0,
            node_memory: 1.0,
        };
        let projection = ServiceAccountTokenProjection {
            audience: None,
            expiration_seconds: Some(3607),
            path: "token".into(),
        };
        let vol = Volume {
            name: "kube-api-access-x".into(),
            projected: Some(ProjectedVolumeSource {
                default_mode: Some(0o644),
                sources: Some(vec![VolumeProjection {
                    service_account_token: Some(projection.clone()),
                    ..Default::default()
                }]),
            }),
            ..Default::default()
        };
        let mut tokens = PodTokens::default();
        let err = projected_files(&vol, &facts, &source(), &tokens).unwrap_err();
        assert!(err.0.contains("no ServiceAccount token"), "{err}");
        tokens.insert(
            TokenKey::of(&projection),
            "jwt".into(),
            tokio::time::Instant::now(),
        );
        let files = projected_files(&vol, &facts, &source(), &tokens)
            .unwrap()
            .unwrap();
        assert_eq!(
            files,
            vec![ProjectedFile {
                path: "token".into(),
                data: b"jwt".to_vec(),
                mode: 0o644
            }]
        );
    }

    #[test]
    fn writes_updates_and_removes_files() {
        let dir = tempfile::tempdir().unwrap();
        let f = |p: &str, d: &str| ProjectedFile {
            path: p.into(),
            data: d.as_bytes().to_vec(),
            mode: 0o644,
        };
        let first = vec![f("a", "1"), f("sub/b", "2")];
        assert!(write_projection(dir.path(), &first, &[]).unwrap());
        assert_eq!(
            std::fs::read_to_string(dir.path().join("sub/b")).unwrap(),
            "2"
        );
        assert!(!write_projection(dir.path(), &first, &first).unwrap());
        let second = vec![f("a", "changed")];
        assert!(write_projection(dir.path(), &second, &first).unwrap());
        assert_eq!(
            std::fs::read_to_string(dir.path().join("a")).unwrap(),
            "changed"
        );
        assert!(!dir.path().join("sub/b").exists());
        assert!(write_projection(dir.path(), &[f("../escape", "x")], &[]).is_err());
    }

    #[test]
    fn writes_a_first_projection_in_place_with_its_modes() {
        let dir = tempfile::tempdir().unwrap();
        let files = vec![
            ProjectedFile {
                path: "token".into(),
                data: b"t".to_vec(),
                mode: 0o600,
            },
            ProjectedFile {
                path: "sub/ca.crt".into(),
                data: b"c".to_vec(),
                mode: 0o644,
            },
        ];
        assert!(write_projection_before_start(dir.path(), &files, &[]).unwrap());
        assert_eq!(std::fs::read(dir.path().join("token")).unwrap(), b"t");
        assert_eq!(std::fs::read(dir.path().join("sub/ca.crt")).unwrap(), b"c");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &str| {
                std::fs::metadata(dir.path().join(p))
                    .unwrap()
                    .permissions()
                    .mode()
                    & 0o777
            };
            assert_eq!(mode("token"), 0o600);
            assert_eq!(mode("sub/ca.crt"), 0o644);
        }
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert!(names.iter().all(|n| !n.ends_with(".tmp")), "{names:?}");
    }

    #[test]
    fn removes_a_pods_volumes_but_not_its_logs() {
        let root = tempfile::tempdir().unwrap();
        let pod_dir = root.path().join("pods/ns_p_uid1");
        let memory = root.path().join("shm");
        std::fs::create_dir_all(pod_volumes_dir(&pod_dir).join("scratch")).unwrap();
        std::fs::create_dir_all(pod_dir.join("app")).unwrap();
        std::fs::write(pod_dir.join("app/0.log"), "line\n").unwrap();
        std::fs::create_dir_all(memory.join("uid1/kube-api-access")).unwrap();
        std::fs::create_dir_all(memory.join("uid2/kube-api-access")).unwrap();
        remove_pod_volumes(&pod_dir, Some(&memory), "uid1");
        assert!(!pod_volumes_dir(&pod_dir).exists());
        assert!(!memory.join("uid1").exists());
        assert!(memory.join("uid2").exists(), "another pod's volumes stay");
        assert!(pod_dir.join("app/0.log").exists(), "logs stay");
        // Nothing there: nothing to do, no error.
        remove_pod_volumes(&pod_dir, Some(&memory), "uid1");
    }

    #[test]
    fn each_node_data_dir_has_its_own_memory_root() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        if let (Some(ra), Some(rb)) = (memory_volume_root(a.path()), memory_volume_root(b.path())) {
            assert_ne!(ra, rb);
            assert_eq!(Some(ra.clone()), memory_volume_root(a.path()));
            assert!(ra.starts_with("/dev/shm/skiff"));
        }
    }

    #[test]
    fn mounts_map_volume_dirs() {
        let dirs = BTreeMap::from([("shared".to_string(), PathBuf::from("/d/shared"))]);
        let c = Container {
            name: "c".into(),
            volume_mounts: Some(vec![VolumeMount {
                name: "shared".into(),
                mount_path: "/shared".into(),
                read_only: Some(true),
                sub_path: Some("x".into()),
                ..Default::default()
            }]),
            ..Default::default()
        };
        let m = container_mounts(&c, &dirs).unwrap();
        assert_eq!(
            m,
            vec![Mount {
                host_path: PathBuf::from("/d/shared/x"),
                container_path: "/shared".into(),
                read_only: true
            }]
        );
        let bad = Container {
            volume_mounts: Some(vec![VolumeMount {
                name: "nope".into(),
                mount_path: "/x".into(),
                ..Default::default()
            }]),
            ..c
        };
        assert!(container_mounts(&bad, &dirs).is_err());
    }
}
