//! The scheduler and controller-manager flags `skiff up` and `skiff server`
//! share (named as kube-scheduler, kube-controller-manager and
//! kube-apiserver name them), and the configurations they make.

use std::path::PathBuf;
use std::time::Duration;

use skiff_control_plane::controllers::ControllersConfig;
use skiff_control_plane::controllers::node_lifecycle::DefaultTolerationSeconds;
use skiff_control_plane::scheduler::SchedulerConfig;

#[derive(clap::Args, Clone, Debug)]
pub struct ComponentArgs {
    /// Scheduler configuration (YAML: profile, schedulerNames, bindConcurrency, extenders).
    #[arg(long, value_name = "FILE")]
    scheduler_config: Option<PathBuf>,
    /// How long a node may miss heartbeats before it is marked Unknown (a Go duration).
    #[arg(long, default_value = "40s", value_name = "DURATION", value_parser = positive_duration)]
    node_monitor_grace_period: Duration,
    /// Seconds a pod without a toleration of its own stays on a not-ready node.
    #[arg(long, default_value_t = 300, value_name = "SECONDS")]
    default_not_ready_toleration_seconds: u32,
    /// Seconds a pod without a toleration of its own stays on an unreachable node.
    #[arg(long, default_value_t = 300, value_name = "SECONDS")]
    default_unreachable_toleration_seconds: u32,
}

impl ComponentArgs {
    /// The scheduler's configuration: the defaults, or `--scheduler-config`'s file.
    pub fn scheduler(&self) -> anyhow::Result<SchedulerConfig> {
        Ok(match &self.scheduler_config {
            Some(path) => SchedulerConfig::from_file(path)?,
            None => SchedulerConfig::default(),
        })
    }

    /// The controllers' configuration with the node lifecycle timings.
    pub fn controllers(&self) -> ControllersConfig {
        ControllersConfig {
            node_monitor_grace_period: self.node_monitor_grace_period,
            default_toleration_seconds: DefaultTolerationSeconds {
                not_ready: self.default_not_ready_toleration_seconds.into(),
                unreachable: self.default_unreachable_toleration_seconds.into(),
            },
            ..ControllersConfig::default()
        }
    }
}

/// A Go duration longer than zero (a clap value parser).
pub(super) fn positive_duration(text: &str) -> Result<Duration, String> {
    match skiff_control_plane::duration::parse(text) {
        Ok(d) if d.is_zero() => Err("must be longer than 0s".into()),
        Ok(d) => Ok(d),
        Err(e) => Err(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Flags {
        #[command(flatten)]
        components: ComponentArgs,
    }

    #[test]
    fn defaults_match_kubernetes() {
        let flags = Flags::try_parse_from(["skiff"]).expect("no flags");
        let c = flags.components.controllers();
        assert_eq!(c.node_monitor_grace_period, Duration::from_secs(40));
        assert_eq!(
            c.default_toleration_seconds,
            DefaultTolerationSeconds::default()
        );
        assert!(
            flags
                .components
                .scheduler()
                .expect("defaults")
                .extenders
                .is_empty()
        );
    }

    #[test]
    fn timings_are_read() {
        let flags = Flags::try_parse_from([
            "skiff",
            "--node-monitor-grace-period",
            "1m30s",
            "--default-not-ready-toleration-seconds",
            "10",
            "--default-unreachable-toleration-seconds",
            "0",
        ])
        .expect("flags");
        let c = flags.components.controllers();
        assert_eq!(c.node_monitor_grace_period, Duration::from_secs(90));
        assert_eq!(
            c.default_toleration_seconds,
            DefaultTolerationSeconds {
                not_ready: 10,
                unreachable: 0
            }
        );
        for bad in [
            ["skiff", "--node-monitor-grace-period", "40"],
            ["skiff", "--node-monitor-grace-period", "0s"],
            ["skiff", "--default-not-ready-toleration-seconds", "-1"],
        ] {
            assert!(Flags::try_parse_from(bad).is_err(), "{bad:?}");
        }
    }
}
