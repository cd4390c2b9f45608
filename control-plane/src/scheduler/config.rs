//! `SchedulerConfig` and `SchedulerError`: what the binary passes to
//! `scheduler::run`, optionally loaded from a YAML file.

use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

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
        }
    }
}

impl SchedulerConfig {
    /// Defaults overridden by a YAML configuration file.
    pub fn from_file(path: &Path) -> Result<Self, SchedulerError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| SchedulerError::Config(format!("{}: {e}", path.display())))?;
        let file: SchedulerFile = serde_yaml::from_str(&text)
            .map_err(|e| SchedulerError::Config(format!("{}: {e}", path.display())))?;
        let mut cfg = Self {
            profile: file.profile,
            ..Self::default()
        };
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
