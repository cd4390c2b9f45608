//! `ExtenderConfig`: one entry of the scheduler configuration file's
//! `extenders` list, in kube-scheduler's KubeSchedulerConfiguration shape,
//! and the checks it must pass before the scheduler starts. The client
//! built from it is in `mod.rs`.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How long an extender call may take when `httpTimeout` is unset
/// (kube-scheduler's DefaultExtenderTimeout).
pub const DEFAULT_HTTP_TIMEOUT: Duration = Duration::from_secs(5);

/// A scheduler extender: an HTTP service consulted after the in-tree
/// filters and beside the score plugins.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct ExtenderConfig {
    /// Base URL; calls go to `urlPrefix/verb`.
    pub url_prefix: String,
    /// Verb of the filter call; unset: the extender does not filter.
    pub filter_verb: Option<String>,
    /// Verb of the prioritize call; unset: the extender does not score.
    pub prioritize_verb: Option<String>,
    /// Multiplies the extender's scores (must be positive with `prioritizeVerb`).
    pub weight: i64,
    /// Send node names only; the extender keeps its own node cache.
    pub node_cache_capable: bool,
    /// On an error or timeout, schedule without this extender instead of failing the pod.
    pub ignorable: bool,
    /// Per-call timeout (default 5s), a Go duration.
    #[serde(
        with = "crate::duration::serde_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub http_timeout: Option<Duration>,
    /// When set, only pods requesting one of these resources are sent to the extender.
    pub managed_resources: Vec<ManagedResource>,
    /// Accepted for compatibility; the scheme of `urlPrefix` decides.
    #[serde(rename = "enableHTTPS")]
    pub enable_https: bool,
    /// Trust for an `https://` urlPrefix.
    pub tls_config: Option<ExtenderTls>,
    /// Not supported: preemption does not consult extenders.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preempt_verb: Option<String>,
    /// Not supported: binding always goes through `pods/binding`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bind_verb: Option<String>,
}

/// An extended resource an extender manages.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct ManagedResource {
    pub name: String,
    /// NodeResourcesFit leaves this resource to the extender.
    pub ignored_by_scheduler: bool,
}

/// The CA an `https://` extender's certificate is checked against.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct ExtenderTls {
    /// A PEM file of CA certificates.
    pub ca_file: Option<PathBuf>,
    /// PEM CA certificates, base64-encoded (as Kubernetes' `caData`).
    pub ca_data: Option<String>,
}

/// A verb that is set and not empty.
pub(super) fn verb(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|v| !v.is_empty())
}

impl ExtenderConfig {
    /// Checks the entry as kube-scheduler's validation does, plus what skiff
    /// does not support; the message names the offending field.
    pub fn validate(&self) -> Result<(), String> {
        let scheme = self.url_prefix.split_once("://").map(|(s, _)| s);
        if !matches!(scheme, Some("http" | "https")) {
            return Err(format!(
                "urlPrefix {:?} must be an http:// or https:// URL",
                self.url_prefix
            ));
        }
        if verb(&self.prioritize_verb).is_some() && self.weight <= 0 {
            return Err(format!(
                "weight {} must be positive when prioritizeVerb is set",
                self.weight
            ));
        }
        if verb(&self.filter_verb).is_none() && verb(&self.prioritize_verb).is_none() {
            return Err("sets neither filterVerb nor prioritizeVerb".into());
        }
        if verb(&self.bind_verb).is_some() {
            return Err("bindVerb is not supported (skiff binds through pods/binding)".into());
        }
        if verb(&self.preempt_verb).is_some() {
            return Err(
                "preemptVerb is not supported (preemption does not consult extenders)".into(),
            );
        }
        if self
            .managed_resources
            .iter()
            .any(|r| r.name.trim().is_empty())
        {
            return Err("managedResources entries need a name".into());
        }
        if scheme == Some("https")
            && self
                .tls_config
                .as_ref()
                .is_none_or(|t| t.ca_file.is_none() && t.ca_data.is_none())
        {
            return Err("an https:// urlPrefix needs tlsConfig.caFile or tlsConfig.caData".into());
        }
        Ok(())
    }

    /// The per-call timeout.
    pub fn timeout(&self) -> Duration {
        self.http_timeout
            .filter(|d| !d.is_zero())
            .unwrap_or(DEFAULT_HTTP_TIMEOUT)
    }

    /// Resources NodeResourcesFit should leave to this extender.
    pub fn ignored_resources(&self) -> impl Iterator<Item = &str> {
        self.managed_resources
            .iter()
            .filter(|r| r.ignored_by_scheduler)
            .map(|r| r.name.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Result<ExtenderConfig, String> {
        let cfg: ExtenderConfig = serde_yaml::from_str(yaml).map_err(|e| e.to_string())?;
        cfg.validate()?;
        Ok(cfg)
    }

    #[test]
    fn reads_kube_scheduler_fields() {
        let cfg = parse(
            "urlPrefix: http://127.0.0.1:8888/scheduler\nfilterVerb: filter\n\
             prioritizeVerb: prioritize\nweight: 2\nnodeCacheCapable: true\n\
             ignorable: true\nhttpTimeout: 1m30s\nenableHTTPS: false\n\
             managedResources: [{name: example.com/foo, ignoredByScheduler: true}, {name: example.com/bar}]\n",
        )
        .expect("valid");
        assert_eq!(cfg.url_prefix, "http://127.0.0.1:8888/scheduler");
        assert_eq!(verb(&cfg.filter_verb), Some("filter"));
        assert_eq!(
            (cfg.weight, cfg.node_cache_capable, cfg.ignorable),
            (2, true, true)
        );
        assert_eq!(cfg.timeout(), Duration::from_secs(90));
        assert_eq!(
            cfg.ignored_resources().collect::<Vec<_>>(),
            ["example.com/foo"]
        );
        let minimal = parse("urlPrefix: http://x\nfilterVerb: filter\n").expect("valid");
        assert_eq!(minimal.timeout(), DEFAULT_HTTP_TIMEOUT);
    }

    #[test]
    fn rejects_what_cannot_work() {
        for (yaml, want) in [
            ("filterVerb: f", "urlPrefix"),
            (
                "urlPrefix: http://x\nprioritizeVerb: p",
                "weight 0 must be positive",
            ),
            ("urlPrefix: http://x", "neither filterVerb"),
            (
                "urlPrefix: http://x\nfilterVerb: f\nbindVerb: b",
                "bindVerb",
            ),
            (
                "urlPrefix: http://x\nfilterVerb: f\npreemptVerb: p",
                "preemptVerb",
            ),
            ("urlPrefix: https://x\nfilterVerb: f", "caFile"),
            (
                "urlPrefix: http://x\nfilterVerb: f\nhttpTimeout: 5x",
                "invalid duration",
            ),
            (
                "urlPrefix: http://x\nfilterVerb: f\nfilterverb: g",
                "unknown field",
            ),
        ] {
            let err = parse(yaml).expect_err(yaml);
            assert!(err.contains(want), "{yaml:?}: {err}");
        }
    }
}
