//! The scheduler's plugins, one file per concern, and the default profile
//! (kube-scheduler's default plugin set and weights, plus RuntimeSupport).

pub mod image_locality;
pub mod inter_pod_affinity;
pub mod node_affinity;
pub mod node_basic;
pub mod resources_fit;
pub mod runtime_support;
pub mod taint_toleration;
pub mod topology_spread;
pub mod volume_binding;

#[cfg(test)]
pub(crate) mod testutil;

use serde::{Deserialize, Serialize};

use super::framework::{FilterPlugin, Profile, ScorePlugin};

/// How node resources are scored.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum ScoringStrategy {
    /// Spread load: prefer the emptiest nodes (default).
    #[default]
    LeastAllocated,
    /// Bin-pack: prefer the fullest nodes that fit.
    MostAllocated,
}

/// A profile as written in a configuration file: plugins to disable and
/// score weights to override.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ProfileConfig {
    pub scheduler_name: Option<String>,
    pub scoring_strategy: ScoringStrategy,
    /// Names of filter or score plugins to leave out.
    pub disabled: Vec<String>,
    /// Score plugin name → weight.
    pub weights: std::collections::BTreeMap<String, i64>,
    pub percentage_of_nodes_to_score: Option<u32>,
    /// Extended resources NodeResourcesFit does not check (left to an
    /// extender; NodeResourcesFitArgs.ignoredResources).
    pub ignored_resources: Vec<String>,
}

impl ProfileConfig {
    /// Builds the profile this configuration describes.
    pub fn build(&self) -> Profile {
        let filters: Vec<Box<dyn FilterPlugin>> = vec![
            Box::new(node_basic::NodeUnschedulable),
            Box::new(node_basic::NodeName),
            Box::new(taint_toleration::TaintToleration),
            Box::new(node_basic::NodeConditions),
            Box::new(node_affinity::NodeAffinity),
            Box::new(runtime_support::RuntimeSupport),
            Box::new(node_basic::NodePorts),
            Box::new(resources_fit::NodeResourcesFit::ignoring(
                self.ignored_resources.iter().cloned(),
            )),
            Box::new(volume_binding::VolumeBinding),
            Box::new(topology_spread::PodTopologySpread),
            Box::new(inter_pod_affinity::InterPodAffinity),
        ];
        let resources: Box<dyn ScorePlugin> = match self.scoring_strategy {
            ScoringStrategy::LeastAllocated => Box::new(resources_fit::LeastAllocated),
            ScoringStrategy::MostAllocated => Box::new(resources_fit::MostAllocated),
        };
        let scores: Vec<(Box<dyn ScorePlugin>, i64)> = vec![
            (Box::new(taint_toleration::TaintToleration), 3),
            (Box::new(node_affinity::NodeAffinity), 2),
            (resources, 1),
            (Box::new(topology_spread::PodTopologySpread), 2),
            (Box::new(inter_pod_affinity::InterPodAffinity), 2),
            (Box::new(resources_fit::BalancedAllocation), 1),
            (Box::new(image_locality::ImageLocality), 1),
        ];
        let off = |n: &str| self.disabled.iter().any(|d| d == n);
        Profile {
            scheduler_name: self
                .scheduler_name
                .clone()
                .unwrap_or_else(|| "default-scheduler".into()),
            filters: filters.into_iter().filter(|f| !off(f.name())).collect(),
            scores: scores
                .into_iter()
                .filter(|(s, _)| !off(s.name()))
                .map(|(s, w)| {
                    let w = self.weights.get(s.name()).copied().unwrap_or(w);
                    (s, w)
                })
                .collect(),
            percentage_of_nodes_to_score: self.percentage_of_nodes_to_score,
        }
    }
}

impl Default for Profile {
    fn default() -> Self {
        ProfileConfig::default().build()
    }
}
