//! `SchedulerConfig` and `SchedulerError`: what the binary passes to
//! `scheduler::run`, optionally loaded from a YAML file (`SchedulerFile`:
//! the profile, extra schedulerNames, bind concurrency, extenders).

use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::extender::{Extender, ExtenderConfig};
use super::plugins::ProfileConfig;
use super::queue::QueueTimings;
use crate::controllers::runtime::LeaseConfig;

/// Errors of the scheduler.
#[derive(Debug, thiserror::Error)]
pub enum SchedulerError {
    /// The API answered with an error.
    #[error("API request failed: {0}")]
    Api(#[from] kube::Error),
    /// The configuration file could not be read or parsed.
    #[error("scheduler configuration: {0}")]
    Config(String),
}

/// The file form of the configuration (`--scheduler-config FILE`).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct SchedulerFile {
    pub profile: ProfileConfig,
    /// Extra schedulerNames this scheduler answers to.
    pub scheduler_names: Vec<String>,
    pub bind_concurrency: Option<usize>,
    /// HTTP extenders, consulted in order after the in-tree filters.
    pub extenders: Vec<ExtenderConfig>,
}

/// Scheduler settings.
#[derive(Clone, Debug)]
pub struct SchedulerConfig {
    pub profile: ProfileConfig,
    /// Pods whose spec.schedulerName is one of these are ours.
    pub scheduler_names: Vec<String>,
    /// Bindings in flight at once.
    pub bind_concurrency: usize,
    pub queue: QueueTimings,
    pub lease: LeaseConfig,
    /// Evict lower-priority pods to make room for higher-priority ones.
    pub preemption: bool,
    /// HTTP extenders, consulted in order after the in-tree filters.
    pub extenders: Vec<ExtenderConfig>,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        Self {
            profile: ProfileConfig::default(),
            scheduler_names: vec!["default-scheduler".into(), "skiff".into()],
            bind_concurrency: 64,
            queue: QueueTimings::default(),
            lease: LeaseConfig::new("kube-scheduler"),
            preemption: true,
            extenders: Vec::new(),
        }
    }
}

impl SchedulerConfig {
    /// Defaults overridden by a YAML configuration file. Every extender
    /// is checked (and its client built) here, so a bad one fails at start.
    pub fn from_file(path: &Path) -> Result<Self, SchedulerError> {
        let invalid =
            |e: &dyn std::fmt::Display| SchedulerError::Config(format!("{}: {e}", path.display()));
        let text = std::fs::read_to_string(path).map_err(|e| invalid(&e))?;
        let file: SchedulerFile = serde_yaml::from_str(&text).map_err(|e| invalid(&e))?;
        for (i, e) in file.extenders.iter().enumerate() {
            Extender::new(e).map_err(|e| invalid(&format_args!("extenders[{i}]: {e}")))?;
        }
        let mut cfg = Self {
            profile: file.profile,
            ..Self::default()
        };
        for e in &file.extenders {
            let ignored = e.ignored_resources().map(str::to_string);
            cfg.profile.ignored_resources.extend(ignored);
        }
        cfg.extenders = file.extenders;
        cfg.scheduler_names.extend(file.scheduler_names);
        if let Some(n) = file.bind_concurrency {
            cfg.bind_concurrency = n.max(1);
        }
        Ok(cfg)
    }

    /// A config answering to one schedulerName only (a second scheduler).
    pub fn named(name: &str) -> Self {
        let mut cfg = Self {
            scheduler_names: vec![name.into()],
            lease: LeaseConfig::new(name),
            ..Self::default()
        };
        cfg.profile.scheduler_name = Some(name.into());
        cfg
    }

    /// Shortens lease timings (tests).
    pub fn with_fast_lease(mut self) -> Self {
        self.lease.lease_duration = Duration::from_secs(2);
        self.lease.renew_deadline = Duration::from_millis(1500);
        self.lease.retry_period = Duration::from_millis(200);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(yaml: &str) -> Result<SchedulerConfig, SchedulerError> {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("scheduler.yaml");
        std::fs::write(&path, yaml).expect("write");
        SchedulerConfig::from_file(&path)
    }

    #[test]
    fn file_with_extenders() {
        let cfg = load(
            "extenders:\n\
             - urlPrefix: http://127.0.0.1:8888/scheduler\n  filterVerb: filter\n  \
               prioritizeVerb: prioritize\n  weight: 1\n  httpTimeout: 5s\n  \
               managedResources: [{name: example.com/foo, ignoredByScheduler: true}]\n\
             bindConcurrency: 8\n",
        )
        .expect("valid file");
        assert_eq!(cfg.extenders.len(), 1);
        assert_eq!(cfg.extenders[0].timeout(), Duration::from_secs(5));
        assert_eq!(cfg.profile.ignored_resources, ["example.com/foo"]);
        assert_eq!(cfg.bind_concurrency, 8);
    }

    #[test]
    fn bad_files_say_where() {
        let err = load("extenders:\n- urlPrefix: http://x\n  prioritizeVerb: p\n")
            .expect_err("weight missing")
            .to_string();
        assert!(
            err.contains("scheduler.yaml: extenders[0]: extender http://x: weight 0"),
            "{err}"
        );
        let err = load("extenders: 3\n").expect_err("not a list").to_string();
        assert!(err.starts_with("scheduler configuration: "), "{err}");
        assert!(!err.contains('\n'), "one line: {err}");
        let missing = SchedulerConfig::from_file(Path::new("/nonexistent/s.yaml"));
        assert!(missing.is_err());
    }
}
