//! Container restart back-off: doubles from `initial` up to `max`, and starts
//! over once a container ran `reset` without exiting (kubelet's CrashLoopBackOff).

use std::time::Duration;

/// Back-off state of one container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    reset: Duration,
    /// The delay before the next restart; zero before the first failure.
    current: Duration,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration, reset: Duration) -> Backoff {
        Backoff {
            initial,
            max,
            reset,
            current: Duration::ZERO,
        }
    }

    /// Records an exit after running for `ran`; returns how long to wait before restarting.
    pub fn next_delay(&mut self, ran: Duration) -> Duration {
        if ran >= self.reset {
            self.current = Duration::ZERO;
        }
        self.current = if self.current.is_zero() {
            self.initial
        } else {
            (self.current * 2).min(self.max)
        };
        self.current
    }

    /// The delay the last failure earned.
    pub fn current(&self) -> Duration {
        self.current
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_to_the_ceiling_and_resets_after_a_good_run() {
        let s = Duration::from_secs;
        let mut b = Backoff::new(s(10), s(300), s(600));
        let delays: Vec<_> = (0..7).map(|_| b.next_delay(s(1)).as_secs()).collect();
        assert_eq!(delays, vec![10, 20, 40, 80, 160, 300, 300]);
        assert_eq!(b.next_delay(s(601)), s(10));
        assert_eq!(b.current(), s(10));
    }
}
