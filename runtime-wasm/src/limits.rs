//! Resource limits and accounting for one container: the memory limiter
//! (StoreLimits-style; growing past the limit traps as OOMKilled), cpu
//! accounting by timing the guest's polls, the cpu limit enforced as a token
//! bucket checked on every epoch tick, and prompt stopping.
//! Store set-up that wires these into a `Store` is [`configure_store`].

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use wasmtime::{ResourceLimiter, Store, UpdateDeadline};

/// The guest grew memory past its limit.
#[derive(Debug, thiserror::Error)]
#[error("memory limit of {limit} bytes exceeded (wanted {wanted} bytes)")]
pub(crate) struct OomKilled {
    pub limit: u64,
    pub wanted: u64,
}

/// The guest was stopped by the node.
#[derive(Debug, thiserror::Error)]
#[error("stopped")]
pub(crate) struct Killed;

/// cpu limit bucket refill period (like CFS's 100 ms period).
const PERIOD: Duration = Duration::from_millis(100);

/// Limits and counters shared by every store of one container.
pub(crate) struct Limits {
    memory_limit: Option<u64>,
    cpu_limit_millicores: Option<u32>,
    /// Nanoseconds spent in guest polls that have finished.
    cpu_nanos: AtomicU64,
    /// Linear memory held by live stores.
    memory_bytes: AtomicU64,
    /// Set when a store hit the memory limit.
    pub oom: AtomicBool,
    /// Set by stop(); checked on every epoch tick.
    pub stopped: AtomicBool,
    bucket: Mutex<Bucket>,
}

struct Bucket {
    /// Nanoseconds of cpu the container may still use now (may go negative).
    tokens: i128,
    last_refill: Instant,
    last_used: u64,
}

impl Limits {
    pub(crate) fn new(memory_limit: Option<u64>, cpu_limit_millicores: Option<u32>) -> Arc<Limits> {
        let cpu_limit_millicores = cpu_limit_millicores.filter(|m| *m > 0);
        Arc::new(Limits {
            memory_limit,
            cpu_limit_millicores,
            cpu_nanos: AtomicU64::new(0),
            memory_bytes: AtomicU64::new(0),
            oom: AtomicBool::new(false),
            stopped: AtomicBool::new(false),
            bucket: Mutex::new(Bucket {
                tokens: burst(cpu_limit_millicores.unwrap_or(1000)),
                last_refill: Instant::now(),
                last_used: 0,
            }),
        })
    }

    pub(crate) fn cpu_time(&self) -> Duration {
        Duration::from_nanos(self.cpu_nanos.load(Ordering::Relaxed))
    }

    pub(crate) fn memory_bytes(&self) -> u64 {
        self.memory_bytes.load(Ordering::Relaxed)
    }

    /// How long the guest must pause now to stay within its cpu limit, given
    /// `in_poll` nanoseconds of the current, unfinished poll.
    fn throttle(&self, in_poll: u64) -> Option<Duration> {
        let millicores = self.cpu_limit_millicores?;
        let used = self.cpu_nanos.load(Ordering::Relaxed) + in_poll;
        let mut b = self.bucket.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let refill = now.duration_since(b.last_refill).as_nanos() * u128::from(millicores) / 1000;
        b.tokens = (b.tokens + refill as i128).min(burst(millicores));
        b.tokens -= i128::from(used.saturating_sub(b.last_used));
        b.last_refill = now;
        b.last_used = used;
        if b.tokens >= 0 {
            return None;
        }
        // Pause until the refill brings the bucket back to zero.
        let wait = (-b.tokens) as u128 * 1000 / u128::from(millicores);
        Some(Duration::from_nanos(
            u64::try_from(wait).unwrap_or(u64::MAX),
        ))
    }
}

/// The bucket's capacity: one period's worth of cpu at the limit.
fn burst(millicores: u32) -> i128 {
    PERIOD.as_nanos() as i128 * i128::from(millicores) / 1000
}

/// Per-store view of the container's limits: the `ResourceLimiter` plus
/// the store's share of the memory counter and its current poll start.
pub(crate) struct StoreLimiter {
    pub limits: Arc<Limits>,
    held: u64,
    /// Nanos (since `origin`) at which the current guest poll began; 0 outside a poll.
    pub poll_start: Arc<AtomicU64>,
}

impl StoreLimiter {
    pub(crate) fn new(limits: Arc<Limits>) -> StoreLimiter {
        StoreLimiter {
            limits,
            held: 0,
            poll_start: Arc::new(AtomicU64::new(0)),
        }
    }
}

/// What [`Metered`] needs from a store's limiter, taken before the store is
/// moved into the guest future.
#[derive(Clone)]
pub(crate) struct Meter {
    limits: Arc<Limits>,
    poll_start: Arc<AtomicU64>,
}

impl StoreLimiter {
    pub(crate) fn meter_of(l: &StoreLimiter) -> Meter {
        Meter {
            limits: l.limits.clone(),
            poll_start: l.poll_start.clone(),
        }
    }
}

impl Drop for StoreLimiter {
    fn drop(&mut self) {
        self.limits
            .memory_bytes
            .fetch_sub(self.held, Ordering::Relaxed);
    }
}

impl ResourceLimiter for StoreLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let grow = (desired as u64).saturating_sub(current as u64);
        if let Some(limit) = self.limits.memory_limit {
            let total = self.limits.memory_bytes.load(Ordering::Relaxed) + grow;
            if total > limit {
                self.limits.oom.store(true, Ordering::Relaxed);
                return Err(OomKilled {
                    limit,
                    wanted: total,
                }
                .into());
            }
        }
        self.held += grow;
        self.limits.memory_bytes.fetch_add(grow, Ordering::Relaxed);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 10_000_000)
    }
}

/// Access to a store state's limiter, so set-up code works for every host type.
pub(crate) trait HasLimiter: Send + 'static {
    fn limiter(&mut self) -> &mut StoreLimiter;
}

/// Wires the limiter, the epoch deadline and the stop/cpu-limit callback
/// into a fresh store.
pub(crate) fn configure_store<T: HasLimiter>(store: &mut Store<T>) {
    store.limiter(|t| t.limiter());
    let (limits, poll_start) = {
        let l = store.data_mut().limiter();
        (l.limits.clone(), l.poll_start.clone())
    };
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(move |_ctx| {
        if limits.stopped.load(Ordering::Relaxed) {
            return Err(Killed.into());
        }
        let started = poll_start.load(Ordering::Relaxed);
        let in_poll = if started == 0 {
            0
        } else {
            now_nanos().saturating_sub(started)
        };
        Ok(match limits.throttle(in_poll) {
            Some(wait) => UpdateDeadline::YieldCustom(1, Box::pin(tokio::time::sleep(wait))),
            None => UpdateDeadline::Yield(1),
        })
    });
}

/// Nanoseconds since a process-wide origin (never 0).
fn now_nanos() -> u64 {
    static ORIGIN: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    let origin = *ORIGIN.get_or_init(Instant::now);
    u64::try_from(origin.elapsed().as_nanos())
        .unwrap_or(u64::MAX)
        .max(1)
}

/// Runs a guest future, adding the time spent in its polls to the
/// container's cpu counter.
pub(crate) struct Metered<F> {
    inner: Pin<Box<F>>,
    meter: Meter,
}

impl<F: Future> Metered<F> {
    pub(crate) fn new(inner: F, meter: Meter) -> Metered<F> {
        Metered {
            inner: Box::pin(inner),
            meter,
        }
    }
}

impl<F: Future> Future for Metered<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let start = now_nanos();
        self.meter.poll_start.store(start, Ordering::Relaxed);
        let out = self.inner.as_mut().poll(cx);
        self.meter.poll_start.store(0, Ordering::Relaxed);
        let spent = now_nanos().saturating_sub(start);
        self.meter
            .limits
            .cpu_nanos
            .fetch_add(spent, Ordering::Relaxed);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_limit_trips_oom_and_counts_held_bytes() {
        let limits = Limits::new(Some(1 << 20), None);
        let mut a = StoreLimiter::new(limits.clone());
        assert!(a.memory_growing(0, 512 << 10, None).is_ok());
        assert_eq!(limits.memory_bytes(), 512 << 10);
        let err = a.memory_growing(512 << 10, 2 << 20, None).err();
        assert!(err.is_some_and(|e| e.downcast_ref::<OomKilled>().is_some()));
        assert!(limits.oom.load(Ordering::Relaxed));
        drop(a);
        assert_eq!(limits.memory_bytes(), 0);
    }

    #[test]
    fn unlimited_cpu_never_throttles() {
        let limits = Limits::new(None, None);
        limits.cpu_nanos.store(10_000_000_000, Ordering::Relaxed);
        assert_eq!(limits.throttle(0), None);
    }

    #[test]
    fn cpu_limit_throttles_after_the_burst() {
        let limits = Limits::new(None, Some(100));
        // 100m: the bucket holds 10 ms; 50 ms used means ~400 ms of pause.
        limits.cpu_nanos.store(50_000_000, Ordering::Relaxed);
        let wait = limits.throttle(0).unwrap_or_default();
        assert!(wait >= Duration::from_millis(350), "{wait:?}");
        assert!(wait <= Duration::from_millis(410), "{wait:?}");
    }
}
