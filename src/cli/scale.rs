//! `skiff scale TYPE/NAME --replicas N`: through the `scale` subresource
//! when the kind has one, else by patching `spec.replicas`.

use kube::api::{Patch, PatchParams};
use serde_json::json;

use super::context::Ctx;
use super::target::parse_single;

#[derive(Debug, clap::Args)]
pub struct ScaleArgs {
    /// TYPE/NAME or TYPE NAME (deployment, replicaset, statefulset, ...).
    #[arg(required = true, num_args = 1..=2)]
    pub resource: Vec<String>,
    /// The new number of replicas.
    #[arg(long)]
    pub replicas: i32,
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
}

pub async fn run(ctx: &Ctx, args: ScaleArgs) -> anyhow::Result<()> {
    if args.replicas < 0 {
        anyhow::bail!(
            "error: The --replicas=COUNT flag is required, and COUNT must be greater than or equal to 0"
        );
    }
    let (kind, name) = parse_single(&args.resource)?;
    let info = ctx.resolve(&kind).await?;
    let ns = ctx.namespace(args.namespace.as_deref());
    let api = ctx.api(&info, Some(&ns));
    let patch = json!({"spec": {"replicas": args.replicas}});
    if info.has_subresource("scale") {
        api.patch_scale(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
    } else {
        api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
    }
    println!("{}/{name} scaled", info.kind_ref());
    Ok(())
}
