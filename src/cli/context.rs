//! What every verb needs: a kube-rs client built from the kubeconfig, the
//! server's discovery (loaded once, on first use), and the namespace to act
//! in.

use std::path::PathBuf;

use anyhow::{Context, bail};
use kube::api::{Api, DynamicObject};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use tokio::sync::OnceCell;

use super::discovery::{Discovery, ResourceInfo};

/// The default kubeconfig files, in the order they are tried when neither
/// `--kubeconfig` nor `$KUBECONFIG` is given.
pub fn default_kubeconfig_candidates() -> Vec<PathBuf> {
    let mut out = vec![PathBuf::from(".skiff-data/kubeconfig.yaml")];
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let data_home = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| home.as_ref().map(|h| h.join(".local/share")));
    if let Some(data) = data_home {
        out.push(data.join("skiff/kubeconfig.yaml"));
    }
    if let Some(home) = home {
        out.push(home.join(".kube/config"));
    }
    out
}

fn load_kubeconfig(explicit: Option<PathBuf>) -> anyhow::Result<Kubeconfig> {
    if let Some(path) = explicit {
        return Kubeconfig::read_from(&path)
            .with_context(|| format!("error: reading kubeconfig {}", path.display()));
    }
    if let Some(merged) = Kubeconfig::from_env().context("error: reading $KUBECONFIG")? {
        return Ok(merged);
    }
    for path in default_kubeconfig_candidates() {
        if path.is_file() {
            return Kubeconfig::read_from(&path)
                .with_context(|| format!("error: reading kubeconfig {}", path.display()));
        }
    }
    bail!(
        "error: no kubeconfig found: pass --kubeconfig, set KUBECONFIG, or start `skiff up` (it writes DATA_DIR/kubeconfig.yaml)"
    )
}

/// The client, discovery and default namespace of one invocation.
pub struct Ctx {
    pub client: Client,
    discovery: OnceCell<Discovery>,
}

impl Ctx {
    pub async fn connect(kubeconfig: Option<PathBuf>) -> anyhow::Result<Ctx> {
        let kubeconfig = load_kubeconfig(kubeconfig)?;
        let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .context("error: invalid kubeconfig")?;
        let client = Client::try_from(config).context("error: building the API client")?;
        Ok(Ctx {
            client,
            discovery: OnceCell::new(),
        })
    }

    pub async fn discovery(&self) -> anyhow::Result<&Discovery> {
        self.discovery
            .get_or_try_init(|| async {
                Discovery::load(&self.client)
                    .await
                    .map_err(anyhow::Error::from)
            })
            .await
    }

    /// The resource a user typed, or kubectl's error for an unknown type.
    pub async fn resolve(&self, typed: &str) -> anyhow::Result<ResourceInfo> {
        match self.discovery().await?.resolve(typed) {
            Some(info) => Ok(info.clone()),
            None => bail!("error: the server doesn't have a resource type \"{typed}\""),
        }
    }

    /// `-n` if given, else the kubeconfig context's namespace.
    pub fn namespace(&self, explicit: Option<&str>) -> String {
        explicit
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| self.client.default_namespace())
            .to_string()
    }

    /// An API handle for `info` in `namespace` (ignored for cluster-scoped
    /// kinds; `None` means all namespaces).
    pub fn api(&self, info: &ResourceInfo, namespace: Option<&str>) -> Api<DynamicObject> {
        let ar = info.api_resource();
        match namespace {
            Some(ns) if info.namespaced => Api::namespaced_with(self.client.clone(), ns, &ar),
            _ => Api::all_with(self.client.clone(), &ar),
        }
    }
}
