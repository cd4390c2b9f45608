//! Node agent flags shared by `skiff up` and `skiff node`, named as kubelet
//! names them where it has them (`--pod-manifest-path`, `--max-pods`,
//! `--container-log-max-files`, `--event-qps`, ...).

use std::path::PathBuf;
use std::time::Duration;

use super::components::positive_duration;

/// The node agent's behaviour: static pods, limits, timings and Events.
#[derive(clap::Args, Clone, Debug)]
pub struct NodeAgentArgs {
    /// Directory of static pod manifests (*.yaml, *.yml, *.json), run by the node and mirrored read-only in the API.
    #[arg(long, value_name = "DIR")]
    pod_manifest_path: Option<PathBuf>,
    /// Allow hostPath volumes (refused by default).
    #[arg(long)]
    allow_host_path: bool,
    /// Pods the node accepts (status.capacity.pods).
    #[arg(long, default_value_t = 16384, value_name = "N")]
    max_pods: u32,
    /// The CIDR pod IPs are allocated from.
    #[arg(long, default_value = "10.42.0.0/16", value_name = "CIDR")]
    pod_cidr: String,
    /// How often the node renews its Lease in kube-node-lease (a Go duration).
    #[arg(long, default_value = "10s", value_name = "DURATION", value_parser = positive_duration)]
    node_lease_renew_interval: Duration,
    /// leaseDurationSeconds written on the node's Lease.
    #[arg(long, default_value_t = 40, value_name = "SECONDS", value_parser = clap::value_parser!(u32).range(1..))]
    node_lease_duration_seconds: u32,
    /// First delay before restarting a container that exited (a Go duration); doubles per restart.
    #[arg(long, default_value = "10s", value_name = "DURATION", value_parser = positive_duration)]
    restart_backoff_initial: Duration,
    /// Longest restart delay (a Go duration).
    #[arg(long, default_value = "5m", value_name = "DURATION", value_parser = positive_duration)]
    restart_backoff_max: Duration,
    /// A container that runs this long without exiting starts its back-off over (a Go duration).
    #[arg(long, default_value = "10m", value_name = "DURATION", value_parser = positive_duration)]
    restart_backoff_reset: Duration,
    /// A container log file is rotated past this many bytes (suffixes Ki, Mi, Gi allowed).
    #[arg(long, default_value = "10Mi", value_name = "SIZE", value_parser = byte_size)]
    container_log_max_size: u64,
    /// Log files kept per container, the current one included.
    #[arg(long, default_value_t = 3, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    container_log_max_files: u32,
    /// Event writes per second after the burst; 0 for no limit (kubelet's --event-qps).
    #[arg(long, default_value_t = 50.0, value_name = "QPS")]
    event_qps: f64,
    /// Event writes allowed at once (kubelet's --event-burst).
    #[arg(long, default_value_t = 100, value_name = "N")]
    event_burst: u32,
}

impl NodeAgentArgs {
    /// Copies the flags into a node configuration; fails on a back-off whose
    /// ceiling is below its first delay.
    pub fn apply(self, config: &mut skiff_node::NodeConfig) -> anyhow::Result<()> {
        if self.restart_backoff_max < self.restart_backoff_initial {
            anyhow::bail!(
                "--restart-backoff-max ({:?}) is shorter than --restart-backoff-initial ({:?})",
                self.restart_backoff_max,
                self.restart_backoff_initial
            );
        }
        config.static_pod_dir = self.pod_manifest_path;
        config.allow_host_path = self.allow_host_path;
        config.max_pods = self.max_pods;
        config.pod_cidr = self.pod_cidr;
        config.lease_interval = self.node_lease_renew_interval;
        config.lease_duration = Duration::from_secs(self.node_lease_duration_seconds.into());
        config.backoff_initial = self.restart_backoff_initial;
        config.backoff_max = self.restart_backoff_max;
        config.backoff_reset = self.restart_backoff_reset;
        config.log_max_bytes = self.container_log_max_size;
        config.log_max_files = self.container_log_max_files as usize;
        config.event_qps = self.event_qps;
        config.event_burst = self.event_burst;
        Ok(())
    }
}

/// `1048576`, `512Ki`, `10Mi`, `1Gi` (and K, M, G as powers of 1000).
fn byte_size(text: &str) -> Result<u64, String> {
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, suffix) = text.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{text:?} is not a size such as 10Mi"))?;
    let unit: u64 = match suffix {
        "" => 1,
        "K" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        _ => {
            return Err(format!(
                "{text:?}: unknown size suffix {suffix:?} (Ki, Mi, Gi, K, M, G)"
            ));
        }
    };
    match n.checked_mul(unit) {
        Some(0) => Err("must be more than 0 bytes".into()),
        Some(bytes) => Ok(bytes),
        None => Err(format!("{text:?} is too large")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        node: NodeAgentArgs,
    }

    fn config(args: &[&str]) -> anyhow::Result<skiff_node::NodeConfig> {
        let cli = Cli::try_parse_from(std::iter::once("skiff").chain(args.iter().copied()))?;
        let mut config = skiff_node::NodeConfig::new("n", "/tmp/n");
        cli.node.apply(&mut config)?;
        Ok(config)
    }

    #[test]
    fn defaults_are_kubelets() {
        let c = config(&[]).expect("defaults");
        assert_eq!(c.backoff_initial, Duration::from_secs(10));
        assert_eq!(c.backoff_max, Duration::from_secs(300));
        assert_eq!(c.backoff_reset, Duration::from_secs(600));
        assert_eq!(c.lease_interval, Duration::from_secs(10));
        assert_eq!(c.lease_duration, Duration::from_secs(40));
        assert_eq!(c.log_max_bytes, 10 << 20);
        assert_eq!(c.log_max_files, 3);
        assert_eq!(c.max_pods, 16384);
        assert!(c.static_pod_dir.is_none() && !c.allow_host_path);
    }

    #[test]
    fn flags_reach_the_node_config() {
        let c = config(&[
            "--pod-manifest-path",
            "/etc/skiff/manifests",
            "--allow-host-path",
            "--restart-backoff-initial",
            "500ms",
            "--restart-backoff-max",
            "4s",
            "--node-lease-renew-interval",
            "2s",
            "--container-log-max-size",
            "512Ki",
            "--max-pods",
            "500",
        ])
        .expect("valid flags");
        assert_eq!(
            c.static_pod_dir,
            Some(PathBuf::from("/etc/skiff/manifests"))
        );
        assert!(c.allow_host_path);
        assert_eq!(c.backoff_initial, Duration::from_millis(500));
        assert_eq!(c.backoff_max, Duration::from_secs(4));
        assert_eq!(c.lease_interval, Duration::from_secs(2));
        assert_eq!(c.log_max_bytes, 512 << 10);
        assert_eq!(c.max_pods, 500);
    }

    #[test]
    fn bad_values_are_refused() {
        for args in [
            &["--restart-backoff-initial", "0s"][..],
            &["--restart-backoff-max", "soon"],
            &["--container-log-max-size", "10Qi"],
            &["--container-log-max-files", "0"],
            &[
                "--restart-backoff-initial",
                "1m",
                "--restart-backoff-max",
                "10s",
            ],
        ] {
            assert!(config(args).is_err(), "{args:?} was accepted");
        }
    }
}
