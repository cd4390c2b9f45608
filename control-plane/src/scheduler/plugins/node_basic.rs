//! Small node filters: NodeUnschedulable (spec.unschedulable), NodeName
//! (spec.nodeName), NodePorts (host ports) and NodeConditions (not-ready and
//! pressure conditions act as NoSchedule taints unless tolerated).

use super::taint_toleration::{taint_reason, tolerates};
use crate::scheduler::framework::{CycleState, FilterPlugin, Reasons};
use crate::scheduler::snapshot::{NodeInfo, PodInfo, Snapshot};

/// Rejects cordoned nodes unless the pod tolerates `node.kubernetes.io/unschedulable`.
pub struct NodeUnschedulable;

impl FilterPlugin for NodeUnschedulable {
    fn name(&self) -> &'static str {
        "NodeUnschedulable"
    }
    fn filter(&self, pod: &PodInfo, node: &NodeInfo, _: &CycleState) -> Result<(), Reasons> {
        if !node.unschedulable {
            return Ok(());
        }
        let tolerated = pod.tolerations.iter().any(|t| {
            (t.key.as_deref() == Some("node.kubernetes.io/unschedulable")
                || (t.key.as_deref().unwrap_or("").is_empty()
                    && t.operator.as_deref() == Some("Exists")))
                && t.effect
                    .as_deref()
                    .is_none_or(|e| e.is_empty() || e == "NoSchedule")
        });
        if tolerated {
            Ok(())
        } else {
            Err(vec!["node(s) were unschedulable".into()])
        }
    }
}

/// Rejects every node but the one named in spec.nodeName, when set.
pub struct NodeName;

impl FilterPlugin for NodeName {
    fn name(&self) -> &'static str {
        "NodeName"
    }
    fn pre_filter(
        &self,
        pod: &PodInfo,
        _: &Snapshot,
        state: &mut CycleState,
    ) -> Result<(), String> {
        if pod.node_name.is_none() {
            state.skip_filter(self.name());
        }
        Ok(())
    }
    fn filter(&self, pod: &PodInfo, node: &NodeInfo, _: &CycleState) -> Result<(), Reasons> {
        match &pod.node_name {
            Some(n) if *n != node.name => {
                Err(vec!["node(s) didn't match the requested node name".into()])
            }
            _ => Ok(()),
        }
    }
}

/// Rejects nodes where a requested host port is already bound.
pub struct NodePorts;

impl FilterPlugin for NodePorts {
    fn name(&self) -> &'static str {
        "NodePorts"
    }
    fn pre_filter(
        &self,
        pod: &PodInfo,
        _: &Snapshot,
        state: &mut CycleState,
    ) -> Result<(), String> {
        if pod.host_ports.is_empty() {
            state.skip_filter(self.name());
        }
        Ok(())
    }
    fn filter(&self, pod: &PodInfo, node: &NodeInfo, _: &CycleState) -> Result<(), Reasons> {
        let clash = pod
            .host_ports
            .iter()
            .any(|p| node.used_ports.iter().any(|u| u.conflicts(p)));
        if clash {
            Err(vec![
                "node(s) didn't have free ports for the requested pod ports".into(),
            ])
        } else {
            Ok(())
        }
    }
    fn resolvable_by_preemption(&self) -> bool {
        true
    }
}

/// Rejects nodes whose conditions (not ready, unreachable, memory/disk/pid
/// pressure, network unavailable) imply a taint the pod does not tolerate.
pub struct NodeConditions;

impl FilterPlugin for NodeConditions {
    fn name(&self) -> &'static str {
        "NodeConditions"
    }
    fn filter(&self, pod: &PodInfo, node: &NodeInfo, _: &CycleState) -> Result<(), Reasons> {
        match node
            .condition_taints
            .iter()
            .find(|t| !tolerates(&pod.tolerations, t))
        {
            Some(t) => Err(vec![taint_reason(t).into()]),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::plugins::testutil::*;
    use crate::scheduler::snapshot::HostPort;
    use k8s_openapi::api::core::v1::Toleration;

    #[test]
    fn unschedulable_nodes_need_a_toleration() {
        let mut n = node("n1", 1000, 1 << 30);
        n.unschedulable = true;
        let mut p = pod("p");
        assert!(
            NodeUnschedulable
                .filter(&p, &n, &CycleState::default())
                .is_err()
        );
        p.tolerations.push(Toleration {
            key: Some("node.kubernetes.io/unschedulable".into()),
            operator: Some("Exists".into()),
            effect: Some("NoSchedule".into()),
            ..Default::default()
        });
        assert!(
            NodeUnschedulable
                .filter(&p, &n, &CycleState::default())
                .is_ok()
        );
    }

    #[test]
    fn node_name_must_match() {
        let mut p = pod("p");
        p.node_name = Some("n2".into());
        let st = CycleState::default();
        assert!(NodeName.filter(&p, &node("n1", 1, 1), &st).is_err());
        assert!(NodeName.filter(&p, &node("n2", 1, 1), &st).is_ok());
    }

    #[test]
    fn host_ports_conflict_on_wildcard_addresses() {
        let mut n = node("n1", 1000, 1 << 30);
        let hp = |ip: &str| HostPort {
            protocol: "TCP".into(),
            host_ip: ip.into(),
            port: 8080,
        };
        n.used_ports.push(hp("10.0.0.1"));
        let mut p = pod("p");
        p.host_ports.push(hp(""));
        let st = CycleState::default();
        assert!(NodePorts.filter(&p, &n, &st).is_err());
        p.host_ports = vec![hp("10.0.0.2")];
        assert!(NodePorts.filter(&p, &n, &st).is_ok());
    }

    #[test]
    fn not_ready_nodes_are_rejected_with_the_taint_message() {
        let mut n = node("n1", 1000, 1 << 30);
        n.condition_taints.push(k8s_openapi::api::core::v1::Taint {
            key: "node.kubernetes.io/not-ready".into(),
            effect: "NoSchedule".into(),
            ..Default::default()
        });
        let err = NodeConditions
            .filter(&pod("p"), &n, &CycleState::default())
            .unwrap_err();
        assert_eq!(
            err[0],
            "node(s) had untolerated taint {node.kubernetes.io/not-ready: }"
        );
    }
}
