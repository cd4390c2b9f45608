//! TaintToleration: Filter rejects nodes with an untolerated NoSchedule or
//! NoExecute taint; Score prefers nodes with fewer untolerated
//! PreferNoSchedule taints.

use k8s_openapi::api::core::v1::{Taint, Toleration};

use crate::scheduler::framework::{
    CycleState, FilterPlugin, Reasons, ScorePlugin, normalize_by_max,
};
use crate::scheduler::snapshot::{NodeInfo, PodInfo, Snapshot};

/// True when `toleration` tolerates `taint`.
pub fn toleration_matches(tol: &Toleration, taint: &Taint) -> bool {
    let effect_ok = tol
        .effect
        .as_deref()
        .is_none_or(|e| e.is_empty() || e == taint.effect);
    if !effect_ok {
        return false;
    }
    let key = tol.key.as_deref().unwrap_or("");
    match tol.operator.as_deref().unwrap_or("Equal") {
        "Exists" => key.is_empty() || key == taint.key,
        _ => {
            key == taint.key
                && tol.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or("")
        }
    }
}

/// True when any of `tolerations` tolerates `taint`.
pub fn tolerates(tolerations: &[Toleration], taint: &Taint) -> bool {
    tolerations.iter().any(|t| toleration_matches(t, taint))
}

/// kube-scheduler's message for an untolerated taint.
pub fn taint_reason(t: &Taint) -> String {
    format!(
        "node(s) had untolerated taint {{{}: {}}}",
        t.key,
        t.value.as_deref().unwrap_or("")
    )
}

/// Filter and score on taints and tolerations.
pub struct TaintToleration;

impl FilterPlugin for TaintToleration {
    fn name(&self) -> &'static str {
        "TaintToleration"
    }
    fn filter(&self, pod: &PodInfo, node: &NodeInfo, _: &CycleState) -> Result<(), Reasons> {
        let bad = node.taints.iter().find(|t| {
            (t.effect == "NoSchedule" || t.effect == "NoExecute") && !tolerates(&pod.tolerations, t)
        });
        match bad {
            Some(t) => Err(vec![taint_reason(t).into()]),
            None => Ok(()),
        }
    }
}

impl ScorePlugin for TaintToleration {
    fn name(&self) -> &'static str {
        "TaintToleration"
    }
    fn score(&self, pod: &PodInfo, node: &NodeInfo, _: &Snapshot, _: &CycleState) -> i64 {
        node.taints
            .iter()
            .filter(|t| t.effect == "PreferNoSchedule" && !tolerates(&pod.tolerations, t))
            .count() as i64
    }
    fn normalize(&self, scores: &mut [i64]) {
        normalize_by_max(scores, true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::plugins::testutil::*;

    fn taint(key: &str, value: &str, effect: &str) -> Taint {
        Taint {
            key: key.into(),
            value: Some(value.into()),
            effect: effect.into(),
            ..Default::default()
        }
    }

    #[test]
    fn untolerated_noschedule_rejects() {
        let mut n = node("n1", 1000, 1 << 30);
        n.taints.push(taint("dedicated", "gpu", "NoSchedule"));
        let mut p = pod("p");
        let err =
            FilterPlugin::filter(&TaintToleration, &p, &n, &CycleState::default()).unwrap_err();
        assert_eq!(err[0], "node(s) had untolerated taint {dedicated: gpu}");
        p.tolerations.push(Toleration {
            key: Some("dedicated".into()),
            operator: Some("Equal".into()),
            value: Some("gpu".into()),
            ..Default::default()
        });
        assert!(FilterPlugin::filter(&TaintToleration, &p, &n, &CycleState::default()).is_ok());
    }

    #[test]
    fn exists_without_key_tolerates_everything() {
        let tol = Toleration {
            operator: Some("Exists".into()),
            ..Default::default()
        };
        assert!(toleration_matches(&tol, &taint("a", "b", "NoExecute")));
        let wrong_effect = Toleration {
            operator: Some("Exists".into()),
            effect: Some("NoSchedule".into()),
            ..Default::default()
        };
        assert!(!toleration_matches(
            &wrong_effect,
            &taint("a", "b", "NoExecute")
        ));
    }

    #[test]
    fn prefer_no_schedule_scores_lower() {
        let clean = node("clean", 1000, 1 << 30);
        let mut tainted = node("tainted", 1000, 1 << 30);
        tainted.taints.push(taint("x", "y", "PreferNoSchedule"));
        let snap = Snapshot::default();
        let st = CycleState::default();
        let p = pod("p");
        let mut s = vec![
            ScorePlugin::score(&TaintToleration, &p, &clean, &snap, &st),
            ScorePlugin::score(&TaintToleration, &p, &tainted, &snap, &st),
        ];
        ScorePlugin::normalize(&TaintToleration, &mut s);
        assert_eq!(s, vec![100, 0]);
    }
}
