//! `skiff delete`: by `TYPE NAME...`, `TYPE/NAME...`, `-l selector`,
//! `--all`, or `-f FILE|DIR|-`; prints `deployment.apps "web" deleted`.
//! With `--wait` it returns only once the objects are gone.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::bail;
use kube::api::{DeleteParams, ListParams};

use super::context::Ctx;
use super::discovery::ResourceInfo;
use super::manifest;
use super::target::parse_targets;

#[derive(Debug, clap::Args)]
pub struct DeleteArgs {
    /// TYPE [NAME...] or TYPE/NAME...
    pub resources: Vec<String>,
    /// Delete the objects of these manifests (file, directory or `-`).
    #[arg(short = 'f', long = "filename")]
    pub filenames: Vec<PathBuf>,
    #[arg(short = 'R', long)]
    pub recursive: bool,
    /// Delete every object of the type matching this label selector.
    #[arg(short = 'l', long)]
    pub selector: Option<String>,
    /// Delete every object of the type in the namespace.
    #[arg(long)]
    pub all: bool,
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
    /// Treat "not found" as success.
    #[arg(long)]
    pub ignore_not_found: bool,
    /// Seconds of grace for pods (-1: the pod's own).
    #[arg(long, default_value_t = -1, allow_hyphen_values = true)]
    pub grace_period: i64,
    /// Wait until the objects are gone.
    #[arg(long)]
    pub wait: bool,
    /// How long --wait waits, in seconds.
    #[arg(long, default_value_t = 60)]
    pub timeout: u64,
}

pub async fn run(ctx: &Ctx, args: DeleteArgs) -> anyhow::Result<()> {
    let default_ns = ctx.namespace(args.namespace.as_deref());
    // (resource, namespace, name)
    let mut victims: Vec<(ResourceInfo, String, String)> = Vec::new();
    if !args.filenames.is_empty() {
        for m in manifest::read_all(&args.filenames, args.recursive)? {
            let discovery = ctx.discovery().await?;
            let Some(info) = discovery.for_kind(m.api_version(), m.kind()).cloned() else {
                bail!(
                    "error: no matches for kind \"{}\" in version \"{}\"",
                    m.kind(),
                    m.api_version()
                );
            };
            let Some(name) = m.name() else { continue };
            let ns = m
                .namespace()
                .map(str::to_string)
                .unwrap_or_else(|| default_ns.clone());
            victims.push((info, ns, name.to_string()));
        }
    } else {
        if args.resources.is_empty() {
            bail!("error: You must provide one or more resources by argument or filename.");
        }
        for target in parse_targets(&args.resources)? {
            let info = ctx.resolve(&target.resource).await?;
            if !target.names.is_empty() {
                for name in target.names {
                    victims.push((info.clone(), default_ns.clone(), name));
                }
                continue;
            }
            if args.selector.is_none() && !args.all {
                bail!("error: resource(s) were provided, but no name was specified");
            }
            let mut lp = ListParams::default();
            if let Some(l) = &args.selector {
                lp = lp.labels(l);
            }
            for object in ctx.api(&info, Some(&default_ns)).list(&lp).await?.items {
                if let Some(name) = object.metadata.name {
                    victims.push((info.clone(), default_ns.clone(), name));
                }
            }
        }
        if victims.is_empty() {
            println!("No resources found");
            return Ok(());
        }
    }

    let mut dp = DeleteParams::default();
    if args.grace_period >= 0 {
        dp = dp.grace_period(args.grace_period as u32);
    }
    let mut failed = None;
    let mut deleted = Vec::new();
    for (info, ns, name) in victims {
        match ctx.api(&info, Some(&ns)).delete(&name, &dp).await {
            Ok(_) => {
                println!("{} \"{name}\" deleted", info.kind_ref());
                deleted.push((info, ns, name));
            }
            Err(kube::Error::Api(s)) if s.code == 404 && args.ignore_not_found => {}
            Err(e) => {
                // Print earlier failures now; the last one is the error returned.
                if let Some(previous) = failed.replace(super::error::one_line(&e.into())) {
                    eprintln!("{previous}");
                }
            }
        }
    }
    if args.wait {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(args.timeout);
        for (info, ns, name) in &deleted {
            while ctx.api(info, Some(ns)).get_opt(name).await?.is_some() {
                if tokio::time::Instant::now() >= deadline {
                    bail!(
                        "error: timed out waiting for {}/{name} to be deleted",
                        info.kind_ref()
                    );
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
    }
    match failed {
        Some(line) => Err(anyhow::anyhow!(line)),
        None => Ok(()),
    }
}
