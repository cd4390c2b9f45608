//! The kubectl-like client verbs of the `skiff` binary (`apply`, `get`,
//! `describe`, `logs`, `delete`, `scale`, `rollout`), built on kube-rs with
//! dynamic objects found through discovery, so every kind the server serves
//! works. The binary flattens [`ClientCommand`] into its own subcommands and
//! calls [`run`]; flag parsing of the server-side commands lives elsewhere.
//!
//! Kubeconfig: `--kubeconfig`, else `$KUBECONFIG` (several paths merge as
//! in kubectl), else the first that exists of `./.skiff-data/kubeconfig.yaml`
//! (what `scripts/up.sh` runs), `<data dir of skiff up>/kubeconfig.yaml`
//! (`$XDG_DATA_HOME/skiff` or `~/.local/share/skiff`), `~/.kube/config`.

mod apply;
mod context;
mod delete;
mod describe;
mod describe_kinds;
mod discovery;
mod error;
mod fetch;
mod get;
mod logs;
mod manifest;
mod rollout;
mod scale;
mod table;
mod target;

use std::path::PathBuf;

use clap::Subcommand;

use context::Ctx;

/// The client verbs, as clap subcommands.
#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// Create or update objects from manifests (server-side apply).
    Apply(apply::ApplyArgs),
    /// Show objects as tables, YAML, JSON or names; optionally watch.
    Get(get::GetArgs),
    /// Show an object's details and its events.
    Describe(describe::DescribeArgs),
    /// Print (or follow) a container's logs.
    Logs(logs::LogsArgs),
    /// Delete objects by name, label selector or manifest.
    Delete(delete::DeleteArgs),
    /// Set the replica count of a Deployment, ReplicaSet or StatefulSet.
    Scale(scale::ScaleArgs),
    /// Watch, list or undo Deployment rollouts.
    Rollout(rollout::RolloutArgs),
}

/// Runs one client verb against the cluster of `kubeconfig` (see the module
/// docs for the default). The error's `Display` is the one line to print,
/// already prefixed like kubectl's (`error: ...` or
/// `Error from server (NotFound): ...`); print it as is and exit 1.
pub async fn run(cmd: ClientCommand, kubeconfig: Option<PathBuf>) -> anyhow::Result<()> {
    let result = async {
        let ctx = Ctx::connect(kubeconfig).await?;
        match cmd {
            ClientCommand::Apply(args) => apply::run(&ctx, args).await,
            ClientCommand::Get(args) => get::run(&ctx, args).await,
            ClientCommand::Describe(args) => describe::run(&ctx, args).await,
            ClientCommand::Logs(args) => logs::run(&ctx, args).await,
            ClientCommand::Delete(args) => delete::run(&ctx, args).await,
            ClientCommand::Scale(args) => scale::run(&ctx, args).await,
            ClientCommand::Rollout(args) => rollout::run(&ctx, args).await,
        }
    }
    .await;
    result.map_err(|e| anyhow::anyhow!(error::one_line(&e)))
}

/// A client for the cluster of `kubeconfig` (same lookup as the verbs), for
/// commands outside this module that talk to the API.
pub async fn connect(kubeconfig: Option<PathBuf>) -> anyhow::Result<kube::Client> {
    Ok(Ctx::connect(kubeconfig).await?.client)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct TestCli {
        #[command(subcommand)]
        cmd: ClientCommand,
    }

    #[test]
    fn parses_kubectl_style_flags() {
        let cli = TestCli::try_parse_from([
            "skiff", "get", "pods", "-A", "-l", "app=web", "-o", "wide", "-w",
        ])
        .unwrap();
        let ClientCommand::Get(args) = cli.cmd else {
            panic!("not get: {cli:?}")
        };
        assert!(args.all_namespaces && args.watch);
        assert_eq!(args.selector.as_deref(), Some("app=web"));

        let cli = TestCli::try_parse_from(["skiff", "apply", "-f", "a.yaml", "-f", "-"]).unwrap();
        let ClientCommand::Apply(args) = cli.cmd else {
            panic!("not apply")
        };
        assert_eq!(
            args.filenames,
            [PathBuf::from("a.yaml"), PathBuf::from("-")]
        );

        let cli = TestCli::try_parse_from([
            "skiff",
            "logs",
            "deploy/web",
            "-c",
            "log-processor",
            "-f",
            "--tail",
            "5",
        ])
        .unwrap();
        let ClientCommand::Logs(args) = cli.cmd else {
            panic!("not logs")
        };
        assert_eq!(args.container.as_deref(), Some("log-processor"));
        assert_eq!(args.tail, Some(5));

        let cli =
            TestCli::try_parse_from(["skiff", "scale", "deploy/web", "--replicas", "3"]).unwrap();
        assert!(matches!(cli.cmd, ClientCommand::Scale(ref a) if a.replicas == 3));

        let cli = TestCli::try_parse_from([
            "skiff",
            "rollout",
            "undo",
            "deployment",
            "web",
            "--to-revision",
            "2",
        ])
        .unwrap();
        assert!(matches!(cli.cmd, ClientCommand::Rollout(_)));
    }
}
