//! RuntimeSupport (skiff's own filter): a wasm pod goes only to nodes
//! labelled `skiff.dev/runtime-wasm: "true"`, an OCI pod only to nodes
//! labelled `skiff.dev/runtime-oci: "true"`.
//!
//! How a pod is classified, first rule that applies wins:
//! 1. `runtimeClassName` `wasm`/`wasmtime` → wasm; `runc`/`oci` → OCI.
//! 2. Annotation `skiff.dev/runtime: wasm` (or `oci`).
//! 3. Per container image (init containers included): wasm when the image is
//!    a `file://` or `https://`/`http://` URL, a local path (starts with `/`,
//!    `./` or `../`), or ends in `.wasm`/`.wat`; otherwise it is an OCI
//!    reference → OCI. The pod needs every runtime one of its containers
//!    needs (a mixed pod needs a node with both).

use k8s_openapi::api::core::v1::Pod;

use crate::scheduler::framework::{CycleState, FilterPlugin, Reasons};
use crate::scheduler::snapshot::{NodeInfo, PodInfo, Snapshot};

/// Which runtimes a pod needs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RuntimeNeeds {
    pub wasm: bool,
    pub oci: bool,
}

/// True when an image reference names a wasm artifact.
pub fn image_is_wasm(image: &str) -> bool {
    let lower = image.to_ascii_lowercase();
    let path = lower.split(['?', '#']).next().unwrap_or("");
    path.starts_with("file://")
        || path.starts_with("https://")
        || path.starts_with("http://")
        || path.starts_with('/')
        || path.starts_with("./")
        || path.starts_with("../")
        || path.ends_with(".wasm")
        || path.ends_with(".wat")
}

/// Classifies a pod (see the module comment for the rule).
pub fn runtime_needs(pod: &Pod) -> RuntimeNeeds {
    let spec = pod.spec.as_ref();
    match spec.and_then(|s| s.runtime_class_name.as_deref()) {
        Some("wasm" | "wasmtime") => {
            return RuntimeNeeds {
                wasm: true,
                oci: false,
            };
        }
        Some("runc" | "oci") => {
            return RuntimeNeeds {
                wasm: false,
                oci: true,
            };
        }
        _ => {}
    }
    let annotation = pod
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get("skiff.dev/runtime"))
        .map(String::as_str);
    match annotation {
        Some("wasm") => {
            return RuntimeNeeds {
                wasm: true,
                oci: false,
            };
        }
        Some("oci") => {
            return RuntimeNeeds {
                wasm: false,
                oci: true,
            };
        }
        _ => {}
    }
    let mut needs = RuntimeNeeds::default();
    let Some(spec) = spec else { return needs };
    for c in spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
    {
        match c.image.as_deref() {
            Some(img) if image_is_wasm(img) => needs.wasm = true,
            _ => needs.oci = true,
        }
    }
    needs
}

/// Filters nodes by the runtimes they advertise.
pub struct RuntimeSupport;

impl FilterPlugin for RuntimeSupport {
    fn name(&self) -> &'static str {
        "RuntimeSupport"
    }
    fn pre_filter(
        &self,
        pod: &PodInfo,
        _: &Snapshot,
        state: &mut CycleState,
    ) -> Result<(), String> {
        if !pod.runtime.wasm && !pod.runtime.oci {
            state.skip_filter(self.name());
        }
        Ok(())
    }
    fn filter(&self, pod: &PodInfo, node: &NodeInfo, _: &CycleState) -> Result<(), Reasons> {
        if pod.runtime.wasm && !node.runs_wasm {
            return Err(vec!["node(s) didn't support the wasm runtime".into()]);
        }
        if pod.runtime.oci && !node.runs_oci {
            return Err(vec!["node(s) didn't support the OCI runtime".into()]);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::plugins::testutil::*;
    use k8s_openapi::api::core::v1::{Container, PodSpec};

    fn pod_with(images: &[&str], class: Option<&str>) -> Pod {
        Pod {
            spec: Some(PodSpec {
                runtime_class_name: class.map(Into::into),
                containers: images
                    .iter()
                    .map(|i| Container {
                        name: "c".into(),
                        image: Some(i.to_string()),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn classification_rules() {
        let wasm = RuntimeNeeds {
            wasm: true,
            oci: false,
        };
        let oci = RuntimeNeeds {
            wasm: false,
            oci: true,
        };
        assert_eq!(
            runtime_needs(&pod_with(&["samples/wasm/hello.wasm"], None)),
            wasm
        );
        assert_eq!(runtime_needs(&pod_with(&["file:///x/app"], None)), wasm);
        assert_eq!(runtime_needs(&pod_with(&["nginx:1.27"], None)), oci);
        assert_eq!(
            runtime_needs(&pod_with(&["ghcr.io/a/b:1"], Some("wasmtime"))),
            wasm
        );
        assert_eq!(runtime_needs(&pod_with(&["x.wasm"], Some("runc"))), oci);
        assert_eq!(
            runtime_needs(&pod_with(&["a.wasm", "redis"], None)),
            RuntimeNeeds {
                wasm: true,
                oci: true
            }
        );
        let mut annotated = pod_with(&["ghcr.io/a/spin-app:1"], None);
        annotated.metadata.annotations =
            Some([("skiff.dev/runtime".to_string(), "wasm".to_string())].into());
        assert_eq!(runtime_needs(&annotated), wasm);
    }

    #[test]
    fn nodes_must_advertise_the_runtime() {
        let mut n = node("n1", 1000, 1 << 30);
        n.runs_oci = false;
        let mut p = pod("p");
        p.runtime = RuntimeNeeds {
            wasm: false,
            oci: true,
        };
        let st = CycleState::default();
        let err = RuntimeSupport.filter(&p, &n, &st).unwrap_err();
        assert_eq!(err[0], "node(s) didn't support the OCI runtime");
        p.runtime = RuntimeNeeds {
            wasm: true,
            oci: false,
        };
        assert!(RuntimeSupport.filter(&p, &n, &st).is_ok());
        n.runs_wasm = false;
        assert!(RuntimeSupport.filter(&p, &n, &st).is_err());
    }
}
