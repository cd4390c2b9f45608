//! Static pods: the manifests in the node's `--pod-manifest-path` directory
//! (`*.yaml`, `*.yml`, `*.json`, one Pod each), run on this node without a
//! scheduler, as kubelet runs them. For each one the node keeps a mirror pod
//! in the API: named `<name>-<node>`, bound here, owned by the Node and
//! annotated `kubernetes.io/config.mirror` with the manifest's hash (the
//! ServiceAccount admission gives mirror pods no token). The pod manager runs
//! the mirror as any pod bound to this node, so its status, logs and exec
//! work as for every other pod.
//!
//! The directory is rescanned every [`RESCAN`]: a new file starts a pod, a
//! changed file replaces its pod, a removed file deletes it, and a mirror
//! deleted or changed through the API is put back from its file. (kubelet
//! runs static pods even while the API is unreachable; here the API server is
//! in the same process for `skiff up`, and a pod only runs once mirrored.)

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// The annotation that marks a mirror pod, valued with its manifest's hash.
pub const MIRROR_ANNOTATION: &str = "kubernetes.io/config.mirror";
const HASH_ANNOTATION: &str = "kubernetes.io/config.hash";
const SOURCE_ANNOTATION: &str = "kubernetes.io/config.source";

/// How often the manifest directory is read again.
pub const RESCAN: Duration = Duration::from_secs(3);

/// One manifest, ready to be mirrored.
#[derive(Debug, Clone)]
pub struct StaticPod {
    pub file: PathBuf,
    /// Content hash of the file (hex, 32 digits).
    pub hash: String,
    /// The mirror pod to create (no owner reference yet).
    pub pod: Pod,
}

impl StaticPod {
    fn key(&self) -> (String, String) {
        (
            self.pod.metadata.namespace.clone().unwrap_or_default(),
            self.pod.metadata.name.clone().unwrap_or_default(),
        )
    }
}

/// Parses one manifest into the mirror pod for `node`.
pub fn parse_manifest(file: &Path, bytes: &[u8], node: &str) -> Result<StaticPod, String> {
    let is_json = file.extension().is_some_and(|e| e == "json");
    let value: serde_json::Value = if is_json {
        serde_json::from_slice(bytes).map_err(|e| e.to_string())?
    } else {
        serde_yaml::from_slice(bytes).map_err(|e| e.to_string())?
    };
    if value["kind"] != "Pod" || value["apiVersion"] != "v1" {
        return Err("a static pod manifest must be one apiVersion v1, kind Pod object".into());
    }
    let mut pod: Pod = serde_json::from_value(value).map_err(|e| e.to_string())?;
    let name = pod
        .metadata
        .name
        .clone()
        .filter(|n| !n.is_empty())
        .ok_or("metadata.name is missing")?;
    let hash = hex(&Sha256::digest(bytes)[..16]);
    let meta = &mut pod.metadata;
    meta.name = Some(format!("{name}-{node}"));
    meta.namespace = Some(meta.namespace.clone().unwrap_or_else(|| "default".into()));
    for field in [&meta.uid, &meta.resource_version, &meta.generate_name] {
        if field.is_some() {
            return Err("uid, resourceVersion and generateName are not allowed".into());
        }
    }
    let annotations = meta.annotations.get_or_insert_with(BTreeMap::new);
    annotations.insert(MIRROR_ANNOTATION.into(), hash.clone());
    annotations.insert(HASH_ANNOTATION.into(), hash.clone());
    annotations.insert(SOURCE_ANNOTATION.into(), "file".into());
    let spec = pod.spec.get_or_insert_with(Default::default);
    spec.node_name = Some(node.to_string());
    Ok(StaticPod {
        file: file.to_path_buf(),
        hash,
        pod,
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Reads every manifest of `dir`; files that do not parse are reported
/// through `bad` (file, error) and skipped.
pub fn read_dir(dir: &Path, node: &str, mut bad: impl FnMut(&Path, String)) -> Vec<StaticPod> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            let hidden = p
                .file_name()
                .and_then(|n| n.to_str())
                .is_none_or(|n| n.starts_with('.'));
            let manifest = p
                .extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| matches!(e, "yaml" | "yml" | "json"));
            !hidden && manifest && p.is_file()
        })
        .collect();
    files.sort();
    let mut pods: Vec<StaticPod> = Vec::new();
    for file in files {
        let parsed = std::fs::read(&file)
            .map_err(|e| e.to_string())
            .and_then(|bytes| parse_manifest(&file, &bytes, node));
        match parsed {
            Ok(p) if pods.iter().any(|q| q.key() == p.key()) => {
                bad(
                    &file,
                    format!("another manifest already names pod {}", p.key().1),
                );
            }
            Ok(p) => pods.push(p),
            Err(e) => bad(&file, e),
        }
    }
    pods
}

/// Keeps the mirrors of `dir`'s manifests in the API until `shutdown`.
pub async fn run(client: kube::Client, node: String, dir: PathBuf, shutdown: CancellationToken) {
    info!(dir = %dir.display(), "running static pods from the manifest directory");
    let mut reported: HashMap<PathBuf, String> = HashMap::new();
    let mut mirrors = Mirrors::default();
    loop {
        let scan_dir = dir.clone();
        let scan_node = node.clone();
        let scanned = tokio::task::spawn_blocking(move || {
            let mut bad = Vec::new();
            let pods = read_dir(&scan_dir, &scan_node, |f, e| bad.push((f.to_path_buf(), e)));
            (pods, bad)
        })
        .await;
        if let Ok((desired, bad)) = scanned {
            for (file, error) in bad {
                if reported.get(&file) != Some(&error) {
                    warn!(file = %file.display(), %error, "static pod manifest skipped");
                    reported.insert(file, error);
                }
            }
            if let Err(e) = mirrors.reconcile(&client, &node, &desired).await {
                warn!(error = %e, "static pods: mirror pods not in step yet; retrying");
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(RESCAN) => {}
        }
    }
}

/// The mirror pods this node keeps: found by one list of the node's pods at
/// start (mirrors a previous run left), then followed by name, so a rescan
/// costs a GET per manifest however many other pods the node runs.
#[derive(Default)]
struct Mirrors {
    listed: bool,
    known: HashSet<(String, String)>,
}

impl Mirrors {
    /// Creates missing mirrors, replaces changed ones, deletes those whose file is gone.
    async fn reconcile(
        &mut self,
        client: &kube::Client,
        node: &str,
        desired: &[StaticPod],
    ) -> kube::Result<()> {
        if !self.listed {
            let bound = Api::<Pod>::all(client.clone())
                .list(&ListParams::default().fields(&format!("spec.nodeName={node}")))
                .await?;
            self.known.extend(
                bound
                    .items
                    .iter()
                    .filter(|p| mirror_hash(p).is_some())
                    .map(|p| {
                        (
                            p.metadata.namespace.clone().unwrap_or_default(),
                            p.metadata.name.clone().unwrap_or_default(),
                        )
                    }),
            );
            self.listed = true;
        }
        let mut owner: Option<OwnerReference> = None;
        for want in desired {
            let (ns, name) = want.key();
            let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
            match api.get_opt(&name).await? {
                Some(have) if mirror_hash(&have).is_none() => {
                    warn!(pod = %format!("{ns}/{name}"), "a pod that is not a mirror has the static pod's name");
                    continue;
                }
                Some(have) if have.metadata.deletion_timestamp.is_some() => {}
                Some(have) if mirror_hash(&have) == Some(want.hash.as_str()) => {}
                Some(_) => {
                    info!(pod = %format!("{ns}/{name}"), file = %want.file.display(), "static pod manifest changed; replacing its pod");
                    api.delete(&name, &DeleteParams::default()).await?;
                }
                None => {
                    if owner.is_none() {
                        owner = Some(node_owner(client, node).await?);
                    }
                    let mut pod = want.pod.clone();
                    pod.metadata.owner_references = owner.clone().map(|o| vec![o]);
                    match api.create(&PostParams::default(), &pod).await {
                        Ok(_) => {
                            info!(pod = %format!("{ns}/{name}"), file = %want.file.display(), "static pod mirrored")
                        }
                        // Created meanwhile by someone else: the next scan looks again.
                        Err(kube::Error::Api(e)) if e.code == 409 => {}
                        Err(e) => return Err(e),
                    }
                }
            }
            self.known.insert((ns, name));
        }
        let wanted: HashSet<(String, String)> = desired.iter().map(StaticPod::key).collect();
        let gone: Vec<(String, String)> = self.known.difference(&wanted).cloned().collect();
        for (ns, name) in gone {
            info!(pod = %format!("{ns}/{name}"), "static pod manifest removed; deleting its pod");
            let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
            // Only a mirror: a pod of the same name made since is not ours.
            if let Some(pod) = api.get_opt(&name).await?
                && mirror_hash(&pod).is_some()
                && pod.metadata.deletion_timestamp.is_none()
            {
                match api.delete(&name, &DeleteParams::default()).await {
                    Ok(_) => {}
                    Err(kube::Error::Api(e)) if e.code == 404 => {}
                    Err(e) => return Err(e),
                }
            }
            self.known.remove(&(ns, name));
        }
        Ok(())
    }
}

fn mirror_hash(pod: &Pod) -> Option<&str> {
    pod.metadata
        .annotations
        .as_ref()?
        .get(MIRROR_ANNOTATION)
        .map(String::as_str)
}

/// The Node as the owner of its mirror pods (kubelet's reference, so they go with the Node).
async fn node_owner(client: &kube::Client, node: &str) -> kube::Result<OwnerReference> {
    let n = Api::<Node>::all(client.clone()).get(node).await?;
    Ok(OwnerReference {
        api_version: "v1".into(),
        kind: "Node".into(),
        name: node.to_string(),
        uid: n.metadata.uid.unwrap_or_default(),
        controller: Some(true),
        ..OwnerReference::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const NGINXISH: &str = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\n  labels: {app: web}\nspec:\n  containers:\n  - name: web\n    image: samples/wasm/web.wasm\n";

    #[test]
    fn a_manifest_becomes_a_mirror_bound_to_the_node() {
        let p = parse_manifest(Path::new("/m/web.yaml"), NGINXISH.as_bytes(), "n1").expect("valid");
        assert_eq!(p.pod.metadata.name.as_deref(), Some("web-n1"));
        assert_eq!(p.pod.metadata.namespace.as_deref(), Some("default"));
        let spec = p.pod.spec.as_ref().expect("spec");
        assert_eq!(spec.node_name.as_deref(), Some("n1"));
        let annotations = p.pod.metadata.annotations.as_ref().expect("annotations");
        assert_eq!(annotations[MIRROR_ANNOTATION], p.hash);
        assert_eq!(annotations[SOURCE_ANNOTATION], "file");
        assert_eq!(p.hash.len(), 32);
        let changed = NGINXISH.replace("app: web", "app: web2");
        let q = parse_manifest(Path::new("/m/web.yaml"), changed.as_bytes(), "n1").expect("valid");
        assert_ne!(p.hash, q.hash, "a changed file has a new hash");
    }

    #[test]
    fn bad_manifests_are_refused_with_a_reason() {
        for (text, why) in [
            (
                "apiVersion: v1\nkind: Service\nmetadata: {name: x}\n",
                "kind",
            ),
            (
                "apiVersion: v1\nkind: Pod\nmetadata: {}\nspec: {containers: []}\n",
                "name",
            ),
            ("kind: Pod\n  bad: [indent\n", "yaml"),
        ] {
            assert!(
                parse_manifest(Path::new("/m/x.yaml"), text.as_bytes(), "n1").is_err(),
                "{why}"
            );
        }
    }

    #[test]
    fn reads_manifests_and_reports_the_bad_ones() {
        let dir = tempfile::tempdir().expect("dir");
        std::fs::write(dir.path().join("web.yaml"), NGINXISH).expect("write");
        std::fs::write(dir.path().join("same.yml"), NGINXISH).expect("write");
        std::fs::write(dir.path().join("broken.json"), "{").expect("write");
        std::fs::write(dir.path().join("notes.txt"), "not a manifest").expect("write");
        std::fs::write(dir.path().join(".web.yaml.swp"), NGINXISH).expect("write");
        let mut bad = Vec::new();
        let pods = read_dir(dir.path(), "n1", |f, e| bad.push((f.to_path_buf(), e)));
        assert_eq!(pods.len(), 1, "{pods:?}");
        assert_eq!(bad.len(), 2, "{bad:?}");
    }
}
