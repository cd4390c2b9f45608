//! The extender wire protocol of k8s.io/kube-scheduler/extender/v1:
//! `ExtenderArgs` (the body of filter and prioritize calls),
//! `ExtenderFilterResult` and `HostPriority` (their answers), and the pure
//! conversions between them and the scheduler's node names and scores. No
//! I/O here (the calls are in `mod.rs`).
//!
//! Go encodes these structs with their field names as JSON keys (`Pod`,
//! `NodeNames`, ...) and decodes keys case-insensitively, so answers are
//! read under the Go name, its camelCase and its lowercase spelling.

use std::collections::{BTreeMap, HashMap, HashSet};

use k8s_openapi::api::core::v1::{Node, Pod};
use serde::{Deserialize, Serialize};

use crate::scheduler::framework::MAX_NODE_SCORE;

/// Highest score an extender gives a node (extenderv1.MaxExtenderPriority).
pub const MAX_EXTENDER_PRIORITY: i64 = 10;

/// The body of a filter or prioritize call (extenderv1.ExtenderArgs).
#[derive(Debug, Serialize)]
pub struct ExtenderArgs<'a> {
    #[serde(rename = "Pod")]
    pub pod: &'a Pod,
    /// The candidate nodes in full, for an extender without a node cache.
    #[serde(rename = "Nodes")]
    pub nodes: Option<NodeList<'a>>,
    /// The candidate node names, for a `nodeCacheCapable` extender.
    #[serde(rename = "NodeNames")]
    pub node_names: Option<Vec<&'a str>>,
}

/// A v1.NodeList as Go encodes one (no kind, empty list metadata).
#[derive(Debug, Serialize)]
pub struct NodeList<'a> {
    metadata: BTreeMap<String, String>,
    items: Vec<&'a Node>,
}

/// A node the scheduler asks an extender about: its name and, when the
/// informer cache holds it, the Node object.
#[derive(Clone, Debug)]
pub struct Candidate<'a> {
    pub name: &'a str,
    pub node: Option<&'a Node>,
}

impl<'a> ExtenderArgs<'a> {
    /// The arguments for `candidates`: names only when the extender caches
    /// nodes itself, otherwise the Node objects (a candidate without one is
    /// left out, so the extender cannot pass it).
    pub fn new(pod: &'a Pod, candidates: &[Candidate<'a>], node_cache_capable: bool) -> Self {
        if node_cache_capable {
            return Self {
                pod,
                nodes: None,
                node_names: Some(candidates.iter().map(|c| c.name).collect()),
            };
        }
        Self {
            pod,
            nodes: Some(NodeList {
                metadata: BTreeMap::new(),
                items: candidates.iter().filter_map(|c| c.node).collect(),
            }),
            node_names: None,
        }
    }
}

/// The answer to a filter call (extenderv1.ExtenderFilterResult).
#[derive(Debug, Default, Deserialize)]
pub struct ExtenderFilterResult {
    /// The nodes that pass, for an extender without a node cache.
    #[serde(rename = "Nodes", alias = "nodes", default)]
    pub nodes: Option<NamedList>,
    /// The names of the nodes that pass, for a `nodeCacheCapable` extender.
    #[serde(
        rename = "NodeNames",
        alias = "nodeNames",
        alias = "nodenames",
        default
    )]
    pub node_names: Option<Vec<String>>,
    /// Node → why the pod cannot go there.
    #[serde(
        rename = "FailedNodes",
        alias = "failedNodes",
        alias = "failednodes",
        default
    )]
    pub failed_nodes: Option<BTreeMap<String, String>>,
    /// Node → why the pod cannot go there even after preemption.
    #[serde(
        rename = "FailedAndUnresolvableNodes",
        alias = "failedAndUnresolvableNodes",
        alias = "failedandunresolvablenodes",
        default
    )]
    pub failed_and_unresolvable_nodes: Option<BTreeMap<String, String>>,
    /// Set when the extender could not filter at all.
    #[serde(rename = "Error", alias = "error", default)]
    pub error: Option<String>,
}

/// A list of objects of which only the names are read.
#[derive(Debug, Default, Deserialize)]
pub struct NamedList {
    #[serde(default)]
    pub items: Vec<Named>,
}

/// An object of which only `metadata.name` is read.
#[derive(Debug, Default, Deserialize)]
pub struct Named {
    #[serde(default)]
    pub metadata: NamedMeta,
}

/// The `metadata` of a [`Named`] object.
#[derive(Debug, Default, Deserialize)]
pub struct NamedMeta {
    #[serde(default)]
    pub name: Option<String>,
}

/// One node's score from a prioritize call (extenderv1.HostPriority).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostPriority {
    #[serde(rename = "Host", alias = "host")]
    pub host: String,
    #[serde(rename = "Score", alias = "score", default)]
    pub score: i64,
}

/// A filter answer that breaks the protocol.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// The extender set `Error`.
    #[error("{0}")]
    Reported(String),
    /// The extender passed a node it was not asked about.
    #[error("claims a filtered node {0:?} which is not found in the input node list")]
    UnknownNode(String),
}

/// What one extender's filter decided about the candidates.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct FilterOutcome {
    /// Names of the nodes that pass.
    pub passed: HashSet<String>,
    /// Node → reason, for the nodes the extender explained rejecting.
    pub failed: BTreeMap<String, String>,
}

impl ExtenderFilterResult {
    /// Reads the answer against the candidates that were sent. An absent
    /// node list passes no node; unresolvable reasons win over plain ones.
    pub fn outcome(
        self,
        sent: &[Candidate<'_>],
        node_cache_capable: bool,
    ) -> Result<FilterOutcome, ProtocolError> {
        if let Some(message) = self.error.filter(|m| !m.is_empty()) {
            return Err(ProtocolError::Reported(message));
        }
        let from_list = |l: NamedList| -> Vec<String> {
            l.items
                .into_iter()
                .filter_map(|n| n.metadata.name)
                .collect()
        };
        let names = if node_cache_capable {
            self.node_names.or_else(|| self.nodes.map(from_list))
        } else {
            self.nodes.map(from_list).or(self.node_names)
        };
        let known: HashSet<&str> = sent.iter().map(|c| c.name).collect();
        let mut passed = HashSet::new();
        for name in names.into_iter().flatten() {
            if !known.contains(name.as_str()) {
                return Err(ProtocolError::UnknownNode(name));
            }
            passed.insert(name);
        }
        let mut failed = self.failed_nodes.unwrap_or_default();
        failed.extend(self.failed_and_unresolvable_nodes.unwrap_or_default());
        failed.retain(|name, _| known.contains(name.as_str()) && !passed.contains(name));
        Ok(FilterOutcome { passed, failed })
    }
}

/// Adds one extender's scores to `totals` (one slot per node of `names`):
/// each score, clamped to 0..=MAX_EXTENDER_PRIORITY, scaled to the
/// plugins' 0..=MAX_NODE_SCORE range and multiplied by the extender's
/// weight, as kube-scheduler combines them. Hosts not asked about are ignored.
pub fn add_scores(totals: &mut [i64], names: &[&str], scores: &[HostPriority], weight: i64) {
    let index: HashMap<&str, usize> = names.iter().enumerate().map(|(i, n)| (*n, i)).collect();
    for hp in scores {
        if let Some(t) = index.get(hp.host.as_str()).and_then(|&i| totals.get_mut(i)) {
            let score = hp.score.clamp(0, MAX_EXTENDER_PRIORITY);
            *t += score * weight * (MAX_NODE_SCORE / MAX_EXTENDER_PRIORITY);
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn node(name: &str) -> Node {
        serde_json::from_value(json!({"metadata": {"name": name, "labels": {"zone": "a"}}}))
            .expect("node")
    }

    fn pod() -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "default"},
            "spec": {"containers": [{"name": "c", "image": "app.wasm"}]},
        }))
        .expect("pod")
    }

    #[test]
    fn args_carry_nodes_or_names() {
        let (n1, n2, pod) = (node("n1"), node("n2"), pod());
        let sent = [
            Candidate {
                name: "n1",
                node: Some(&n1),
            },
            Candidate {
                name: "n2",
                node: Some(&n2),
            },
            Candidate {
                name: "gone",
                node: None,
            },
        ];
        let full = serde_json::to_value(ExtenderArgs::new(&pod, &sent, false)).expect("json");
        assert_eq!(full["Pod"]["metadata"]["name"], "p");
        assert_eq!(full["Pod"]["spec"]["containers"][0]["image"], "app.wasm");
        assert_eq!(full["Nodes"]["metadata"], json!({}));
        let items = full["Nodes"]["items"].as_array().expect("items");
        assert_eq!(items.len(), 2);
        assert_eq!(items[1]["metadata"]["name"], "n2");
        assert_eq!(items[0]["metadata"]["labels"]["zone"], "a");
        assert_eq!(full["NodeNames"], json!(null));

        let names = serde_json::to_value(ExtenderArgs::new(&pod, &sent, true)).expect("json");
        assert_eq!(names["Nodes"], json!(null));
        assert_eq!(names["NodeNames"], json!(["n1", "n2", "gone"]));
    }

    fn candidates<'a>(names: &[&'a str]) -> Vec<Candidate<'a>> {
        names
            .iter()
            .map(|n| Candidate {
                name: n,
                node: None,
            })
            .collect()
    }

    fn decode(v: serde_json::Value) -> ExtenderFilterResult {
        serde_json::from_value(v).expect("filter result")
    }

    #[test]
    fn filter_result_with_nodes_and_reasons() {
        let sent = candidates(&["n1", "n2", "n3"]);
        let result = decode(json!({
            "Nodes": {"metadata": {}, "items": [{"metadata": {"name": "n2"}, "spec": {}}]},
            "NodeNames": null,
            "FailedNodes": {"n1": "no GPU", "n3": "busy"},
            "FailedAndUnresolvableNodes": {"n3": "wrong rack"},
            "Error": "",
        }));
        let out = result.outcome(&sent, false).expect("outcome");
        assert_eq!(out.passed, HashSet::from(["n2".to_string()]));
        assert_eq!(
            out.failed,
            BTreeMap::from([
                ("n1".to_string(), "no GPU".to_string()),
                ("n3".to_string(), "wrong rack".to_string()),
            ])
        );
    }

    #[test]
    fn filter_result_with_names_in_any_key_case() {
        let sent = candidates(&["n1", "n2"]);
        let out = decode(json!({"nodenames": ["n1"], "failedNodes": {"n2": "full"}}))
            .outcome(&sent, true)
            .expect("outcome");
        assert_eq!(out.passed, HashSet::from(["n1".to_string()]));
        assert_eq!(out.failed["n2"], "full");
        // No list at all: nothing passes.
        let none = decode(json!({})).outcome(&sent, true).expect("outcome");
        assert!(none.passed.is_empty());
    }

    #[test]
    fn filter_result_errors() {
        let sent = candidates(&["n1"]);
        assert_eq!(
            decode(json!({"Error": "database down"})).outcome(&sent, false),
            Err(ProtocolError::Reported("database down".into()))
        );
        assert_eq!(
            decode(json!({"NodeNames": ["n1", "n9"]})).outcome(&sent, true),
            Err(ProtocolError::UnknownNode("n9".into()))
        );
    }

    #[test]
    fn priorities_decode_and_scale() {
        let list: Vec<HostPriority> = serde_json::from_value(json!([
            {"Host": "n1", "Score": 7},
            {"host": "n2", "score": 10},
            {"Host": "n3", "Score": 99},
            {"Host": "n4", "Score": -3},
            {"Host": "elsewhere", "Score": 10},
        ]))
        .expect("priorities");
        let names = ["n1", "n2", "n3", "n4"];
        let mut totals = vec![5, 0, 0, 0];
        add_scores(&mut totals, &names, &list, 2);
        // 7 of 10 is 70 of 100, twice: 140 on top of the plugins' 5.
        assert_eq!(totals, vec![145, 200, 200, 0]);
        assert_eq!(
            serde_json::to_value(&list[0]).expect("json"),
            json!({"Host": "n1", "Score": 7})
        );
    }
}
