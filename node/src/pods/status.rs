//! The pod status a worker reports (pure): phase, conditions, IPs, QoS class
//! and the container statuses with Kubernetes' state names.

use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting,
    ContainerStatus, HostIP, PodCondition, PodIP, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::state::{CState, Ctr, Terminated, pod_phase};

/// The facts of a pod status that do not come from its containers.
pub struct PodFactsForStatus<'a> {
    pub pod_ip: Option<&'a str>,
    pub host_ip: &'a str,
    pub start_time: &'a Time,
    pub qos_class: &'a str,
    pub runtime: &'a str,
    /// Volumes are set up (the pod "sandbox" is ready).
    pub sandbox_ready: bool,
    pub init_failed: bool,
    /// A message for the whole pod (e.g. why volumes failed).
    pub message: Option<String>,
    /// Set only when the node ended the pod (Evicted, DeadlineExceeded): the
    /// pod is then Failed, whatever its containers did.
    pub reason: Option<String>,
}

fn terminated(t: &Terminated) -> ContainerStateTerminated {
    ContainerStateTerminated {
        exit_code: t.exit_code,
        reason: Some(t.reason.clone()),
        message: t.message.clone().filter(|m| !m.is_empty()),
        started_at: t.started_at.clone(),
        finished_at: Some(t.finished_at.clone()),
        container_id: t.container_id.clone(),
        signal: None,
    }
}

fn container_status(c: &Ctr, runtime: &str) -> ContainerStatus {
    let state = match &c.state {
        CState::Waiting { reason, message } => ContainerState {
            waiting: Some(ContainerStateWaiting {
                reason: Some(reason.clone()),
                message: message.clone(),
            }),
            ..Default::default()
        },
        CState::Running { started_at } => ContainerState {
            running: Some(ContainerStateRunning {
                started_at: Some(started_at.clone()),
            }),
            ..Default::default()
        },
        CState::Terminated(t) => ContainerState {
            terminated: Some(terminated(t)),
            ..Default::default()
        },
    };
    ContainerStatus {
        name: c.spec.name.clone(),
        image: c.spec.image.clone().unwrap_or_default(),
        image_id: c.image_id.clone().unwrap_or_default(),
        container_id: c.id.as_ref().map(|id| format!("{runtime}://{id}")),
        state: Some(state),
        last_state: Some(
            c.last_state
                .as_ref()
                .map(|t| ContainerState {
                    terminated: Some(terminated(t)),
                    ..Default::default()
                })
                .unwrap_or_default(),
        ),
        ready: c.ready,
        started: Some(c.is_running() && c.started),
        restart_count: c.restart_count as i32,
        ..Default::default()
    }
}

fn condition(
    type_: &str,
    ok: bool,
    previous: Option<&PodStatus>,
    now: &Time,
    reason: Option<&str>,
) -> PodCondition {
    let status = if ok { "True" } else { "False" };
    let since = previous
        .and_then(|p| p.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == type_))
        .filter(|c| c.status == status)
        .and_then(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| now.clone());
    PodCondition {
        type_: type_.to_string(),
        status: status.to_string(),
        last_transition_time: Some(since),
        reason: if ok { None } else { reason.map(str::to_string) },
        ..Default::default()
    }
}

/// The status for the pod's current state; `previous` keeps condition transition times.
pub fn pod_status(
    facts: &PodFactsForStatus<'_>,
    init: &[Ctr],
    main: &[Ctr],
    previous: Option<&PodStatus>,
) -> PodStatus {
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let phase = if facts.reason.is_some() {
        "Failed"
    } else {
        pod_phase(init, main, facts.init_failed)
    };
    let initialized = init.iter().all(|c| {
        if c.sidecar {
            c.is_running() && c.started
        } else {
            c.init_succeeded()
        }
    });
    let finished = phase == "Succeeded" || phase == "Failed";
    let containers_ready = !finished
        && main.iter().all(|c| c.ready)
        && init
            .iter()
            .filter(|c| c.sidecar)
            .all(|c| c.ready || c.spec.readiness_probe.is_none() && c.is_running());
    let not_ready_reason = if finished {
        "PodCompleted"
    } else {
        "ContainersNotReady"
    };
    let conditions = vec![
        condition(
            "PodReadyToStartContainers",
            facts.sandbox_ready,
            previous,
            &now,
            None,
        ),
        condition(
            "Initialized",
            initialized || finished && !facts.init_failed,
            previous,
            &now,
            Some("ContainersNotInitialized"),
        ),
        condition(
            "Ready",
            containers_ready,
            previous,
            &now,
            Some(not_ready_reason),
        ),
        condition(
            "ContainersReady",
            containers_ready,
            previous,
            &now,
            Some(not_ready_reason),
        ),
        condition("PodScheduled", true, previous, &now, None),
    ];
    let pod_ips = facts.pod_ip.map(|ip| vec![PodIP { ip: ip.to_string() }]);
    PodStatus {
        phase: Some(phase.to_string()),
        conditions: Some(conditions),
        host_ip: Some(facts.host_ip.to_string()),
        host_ips: Some(vec![HostIP {
            ip: facts.host_ip.to_string(),
        }]),
        pod_ip: facts.pod_ip.map(str::to_string),
        pod_ips,
        start_time: Some(facts.start_time.clone()),
        qos_class: Some(facts.qos_class.to_string()),
        message: facts.message.clone(),
        reason: facts.reason.clone(),
        init_container_statuses: (!init.is_empty()).then(|| {
            init.iter()
                .map(|c| container_status(c, facts.runtime))
                .collect()
        }),
        container_statuses: Some(
            main.iter()
                .map(|c| container_status(c, facts.runtime))
                .collect(),
        ),
        ..Default::default()
    }
}

/// Whether two statuses differ in anything a reader cares about (transition
/// times are carried over, so equal states compare equal).
pub fn status_differs(a: &PodStatus, b: &PodStatus) -> bool {
    a != b
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pods::backoff::Backoff;
    use k8s_openapi::api::core::v1::Container;
    use std::time::Duration;

    fn ctr(name: &str, is_init: bool, restart: Option<&str>) -> Ctr {
        let spec = Container {
            name: name.into(),
            image: Some("x.wasm".into()),
            restart_policy: restart.map(Into::into),
            ..Default::default()
        };
        let b = Backoff::new(
            Duration::from_secs(10),
            Duration::from_secs(300),
            Duration::from_secs(600),
        );
        Ctr::new(spec, is_init, b, "PodInitializing")
    }

    fn facts<'a>(t: &'a Time) -> PodFactsForStatus<'a> {
        PodFactsForStatus {
            pod_ip: Some("10.42.0.2"),
            host_ip: "127.0.0.1",
            start_time: t,
            qos_class: "BestEffort",
            runtime: "wasm",
            sandbox_ready: true,
            init_failed: false,
            message: None,
            reason: None,
        }
    }

    #[test]
    fn pending_with_init_then_running_and_ready() {
        let t = Time(k8s_openapi::jiff::Timestamp::now());
        let mut init = vec![ctr("setup", true, None)];
        let mut main = vec![ctr("app", false, None)];
        let s = pod_status(&facts(&t), &init, &main, None);
        assert_eq!(s.phase.as_deref(), Some("Pending"));
        let cond = |s: &PodStatus, ty: &str| {
            s.conditions
                .as_ref()
                .unwrap()
                .iter()
                .find(|c| c.type_ == ty)
                .unwrap()
                .status
                .clone()
        };
        assert_eq!(cond(&s, "Initialized"), "False");
        assert_eq!(
            s.container_statuses.as_ref().unwrap()[0]
                .state
                .as_ref()
                .unwrap()
                .waiting
                .as_ref()
                .unwrap()
                .reason
                .as_deref(),
            Some("PodInitializing")
        );
        init[0].state = CState::Terminated(Terminated {
            exit_code: 0,
            reason: "Completed".into(),
            message: None,
            started_at: None,
            finished_at: t.clone(),
            container_id: None,
        });
        init[0].done = true;
        main[0].state = CState::Running {
            started_at: t.clone(),
        };
        main[0].started = true;
        main[0].ready = true;
        let s2 = pod_status(&facts(&t), &init, &main, Some(&s));
        assert_eq!(s2.phase.as_deref(), Some("Running"));
        assert_eq!(cond(&s2, "Initialized"), "True");
        assert_eq!(cond(&s2, "Ready"), "True");
        assert_eq!(s2.pod_ip.as_deref(), Some("10.42.0.2"));
        let cs = &s2.container_statuses.unwrap()[0];
        assert!(cs.ready && cs.started == Some(true));
        assert_eq!(
            s2.init_container_statuses.unwrap()[0]
                .state
                .as_ref()
                .unwrap()
                .terminated
                .as_ref()
                .unwrap()
                .reason
                .as_deref(),
            Some("Completed")
        );
        let again = pod_status(
            &facts(&t),
            &init,
            &main,
            Some(&pod_status(&facts(&t), &init, &main, None)),
        );
        assert!(!status_differs(
            &again,
            &pod_status(&facts(&t), &init, &main, Some(&again))
        ));
    }

    #[test]
    fn crash_loop_shows_last_state_and_restarts() {
        let t = Time(k8s_openapi::jiff::Timestamp::now());
        let mut c = ctr("app", false, None);
        c.restart_count = 2;
        c.state = CState::Waiting {
            reason: "CrashLoopBackOff".into(),
            message: Some("back-off 20s restarting failed container".into()),
        };
        c.last_state = Some(Terminated {
            exit_code: 1,
            reason: "Error".into(),
            message: None,
            started_at: None,
            finished_at: t.clone(),
            container_id: None,
        });
        let s = pod_status(&facts(&t), &[], &[c], None);
        assert_eq!(s.phase.as_deref(), Some("Running"));
        let cs = &s.container_statuses.unwrap()[0];
        assert_eq!(cs.restart_count, 2);
        assert_eq!(
            cs.last_state
                .as_ref()
                .unwrap()
                .terminated
                .as_ref()
                .unwrap()
                .exit_code,
            1
        );
        assert_eq!(
            cs.state
                .as_ref()
                .unwrap()
                .waiting
                .as_ref()
                .unwrap()
                .reason
                .as_deref(),
            Some("CrashLoopBackOff")
        );
    }
}
