//! The per-container and per-pod state a pod worker keeps, and the pure
//! decisions on it: what happens after an exit (restart policy, back-off),
//! and how the state reads as Kubernetes status (`status.rs`).

use std::time::Duration;

use k8s_openapi::api::core::v1::Container;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use tokio::time::Instant;

use super::backoff::Backoff;
use crate::runtime::{ContainerId, Exit};

/// A container's state as Kubernetes names it.
#[derive(Debug, Clone, PartialEq)]
pub enum CState {
    Waiting {
        reason: String,
        message: Option<String>,
    },
    Running {
        started_at: Time,
    },
    Terminated(Terminated),
}

/// A finished run of a container.
#[derive(Debug, Clone, PartialEq)]
pub struct Terminated {
    pub exit_code: i32,
    pub reason: String,
    pub message: Option<String>,
    pub started_at: Option<Time>,
    pub finished_at: Time,
    pub container_id: Option<String>,
}

/// One container (regular, init or sidecar) of a pod, as the worker tracks it.
pub struct Ctr {
    pub spec: Container,
    pub is_init: bool,
    /// An init container with `restartPolicy: Always` (native sidecar).
    pub sidecar: bool,
    pub state: CState,
    pub last_state: Option<Terminated>,
    pub restart_count: u32,
    pub backoff: Backoff,
    /// When the next start may happen (back-off), if one is due.
    pub restart_at: Option<Instant>,
    pub id: Option<ContainerId>,
    /// Bumped on every start, so stale exit/probe reports are ignored.
    pub generation: u64,
    pub started_instant: Option<Instant>,
    pub image_id: Option<String>,
    pub ready: bool,
    /// Passed its startup probe (or has none) while running.
    pub started: bool,
    /// Terminated and will not run again.
    pub done: bool,
    /// Cancels this run's probes.
    pub probes: Option<tokio_util::sync::CancellationToken>,
    /// This start's log file.
    pub log_path: Option<std::path::PathBuf>,
}

impl Ctr {
    pub fn new(spec: Container, is_init: bool, backoff: Backoff, waiting_reason: &str) -> Ctr {
        let sidecar = is_init && spec.restart_policy.as_deref() == Some("Always");
        Ctr {
            spec,
            is_init,
            sidecar,
            state: CState::Waiting {
                reason: waiting_reason.to_string(),
                message: None,
            },
            last_state: None,
            restart_count: 0,
            backoff,
            restart_at: None,
            id: None,
            generation: 0,
            started_instant: None,
            image_id: None,
            ready: false,
            started: false,
            done: false,
            probes: None,
            log_path: None,
        }
    }

    pub fn name(&self) -> &str {
        &self.spec.name
    }

    pub fn is_running(&self) -> bool {
        matches!(self.state, CState::Running { .. })
    }

    /// A regular init container that completed successfully.
    pub fn init_succeeded(&self) -> bool {
        self.done && matches!(&self.state, CState::Terminated(t) if t.exit_code == 0)
    }
}

/// What to do after a container exited.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AfterExit {
    /// Start it again after this delay (CrashLoopBackOff while waiting).
    Restart(Duration),
    /// It is finished for good.
    Done,
    /// An init container failed and the pod may not restart it: the pod fails.
    FailPod,
}

/// Applies the restart policy to an exit: sidecars always restart; regular init
/// containers restart on failure unless the pod's policy is Never; regular
/// containers follow Always / OnFailure / Never.
pub fn after_exit(
    policy: &str,
    ctr_is_init: bool,
    sidecar: bool,
    exit: &Exit,
    ran: Duration,
    backoff: &mut Backoff,
) -> AfterExit {
    let failed = exit.code != 0;
    let restart = if sidecar {
        true
    } else if ctr_is_init {
        if !failed {
            return AfterExit::Done;
        }
        if policy == "Never" {
            return AfterExit::FailPod;
        }
        true
    } else {
        match policy {
            "Never" => false,
            "OnFailure" => failed,
            _ => true,
        }
    };
    if restart {
        AfterExit::Restart(backoff.next_delay(ran))
    } else {
        AfterExit::Done
    }
}

/// The pod's phase from its containers.
pub fn pod_phase(init: &[Ctr], main: &[Ctr], init_failed: bool) -> &'static str {
    if init_failed {
        return "Failed";
    }
    let regular_init_done = init
        .iter()
        .filter(|c| !c.sidecar)
        .all(|c| c.init_succeeded());
    if !main.is_empty() && main.iter().all(|c| c.done) {
        let ok = main
            .iter()
            .all(|c| matches!(&c.state, CState::Terminated(t) if t.exit_code == 0));
        return if ok { "Succeeded" } else { "Failed" };
    }
    let any_started = main
        .iter()
        .any(|c| c.is_running() || c.restart_count > 0 || matches!(c.state, CState::Terminated(_)));
    if regular_init_done && any_started {
        "Running"
    } else {
        "Pending"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::ExitKind;

    fn exit(code: i32) -> Exit {
        Exit {
            code,
            kind: if code == 0 {
                ExitKind::Completed
            } else {
                ExitKind::Error
            },
            message: String::new(),
        }
    }

    fn backoff() -> Backoff {
        Backoff::new(
            Duration::from_secs(10),
            Duration::from_secs(300),
            Duration::from_secs(600),
        )
    }

    #[test]
    fn restart_policies() {
        let ran = Duration::from_secs(1);
        let s10 = AfterExit::Restart(Duration::from_secs(10));
        assert_eq!(
            after_exit("Always", false, false, &exit(0), ran, &mut backoff()),
            s10
        );
        assert_eq!(
            after_exit("OnFailure", false, false, &exit(0), ran, &mut backoff()),
            AfterExit::Done
        );
        assert_eq!(
            after_exit("OnFailure", false, false, &exit(1), ran, &mut backoff()),
            s10
        );
        assert_eq!(
            after_exit("Never", false, false, &exit(1), ran, &mut backoff()),
            AfterExit::Done
        );
        assert_eq!(
            after_exit("Never", true, false, &exit(1), ran, &mut backoff()),
            AfterExit::FailPod
        );
        assert_eq!(
            after_exit("Always", true, false, &exit(0), ran, &mut backoff()),
            AfterExit::Done
        );
        assert_eq!(
            after_exit("Always", true, false, &exit(2), ran, &mut backoff()),
            s10
        );
        assert_eq!(
            after_exit("Never", true, true, &exit(0), ran, &mut backoff()),
            s10
        );
        let mut b = backoff();
        after_exit("Always", false, false, &exit(1), ran, &mut b);
        assert_eq!(
            after_exit("Always", false, false, &exit(1), ran, &mut b),
            AfterExit::Restart(Duration::from_secs(20))
        );
    }

    fn ctr(state: CState, done: bool) -> Ctr {
        let mut c = Ctr::new(
            Container {
                name: "c".into(),
                ..Default::default()
            },
            false,
            backoff(),
            "ContainerCreating",
        );
        c.state = state;
        c.done = done;
        c
    }

    fn term(code: i32) -> CState {
        CState::Terminated(Terminated {
            exit_code: code,
            reason: "x".into(),
            message: None,
            started_at: None,
            finished_at: Time(k8s_openapi::jiff::Timestamp::now()),
            container_id: None,
        })
    }

    #[test]
    fn phases() {
        let waiting = || CState::Waiting {
            reason: "ContainerCreating".into(),
            message: None,
        };
        let running = CState::Running {
            started_at: Time(k8s_openapi::jiff::Timestamp::now()),
        };
        assert_eq!(pod_phase(&[], &[ctr(waiting(), false)], false), "Pending");
        assert_eq!(
            pod_phase(&[], &[ctr(running.clone(), false)], false),
            "Running"
        );
        assert_eq!(
            pod_phase(&[ctr(waiting(), false)], &[ctr(running, false)], false),
            "Pending"
        );
        assert_eq!(
            pod_phase(&[], &[ctr(term(0), true), ctr(term(0), true)], false),
            "Succeeded"
        );
        assert_eq!(
            pod_phase(&[], &[ctr(term(0), true), ctr(term(1), true)], false),
            "Failed"
        );
        assert_eq!(pod_phase(&[], &[ctr(term(1), false)], false), "Running");
        assert_eq!(pod_phase(&[], &[ctr(waiting(), false)], true), "Failed");
    }
}
