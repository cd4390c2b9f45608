//! The HorizontalPodAutoscaler's `behavior` (autoscaling/v2), as pure
//! functions: upstream's defaults (scale up: no stabilization, 4 pods or
//! 100% per 15 s, Max; scale down: 300 s stabilization, 100% per 15 s,
//! Max), the stabilization window over recent recommendations, the
//! scaling policies over recent scale events, and the min/max clamp with
//! the AbleToScale / ScalingLimited reasons upstream reports. An HPA
//! without `behavior` gets the defaults (upstream's legacy path gives the
//! same result at the default sync period). The recommendation history is
//! kept in memory by `hpa.rs`, the scale events in an annotation.

use std::time::Duration;

use k8s_openapi::api::autoscaling::v2::{HPAScalingRules, HorizontalPodAutoscalerBehavior};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};

use crate::scheduler::resources::parse_quantity;

/// How the policies of one direction combine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Select {
    /// The policy allowing the biggest change.
    Max,
    /// The policy allowing the smallest change.
    Min,
    /// No scaling in this direction.
    Disabled,
}

/// One scaling policy: at most `value` pods (or percent) per `period_seconds`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    pub percent: bool,
    pub value: i32,
    pub period_seconds: i32,
}

/// The rules of one direction, defaults filled in.
#[derive(Clone, Debug, PartialEq)]
pub struct Rules {
    pub stabilization_seconds: i64,
    pub select: Select,
    pub policies: Vec<Policy>,
    /// Ratios within this distance of 1 (on this side) change nothing.
    pub tolerance: f64,
}

/// Both directions.
#[derive(Clone, Debug, PartialEq)]
pub struct Behavior {
    pub up: Rules,
    pub down: Rules,
}

/// A metric-based recommendation, as the stabilization window remembers it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Recommendation {
    pub replicas: i32,
    pub at: Timestamp,
}

/// A rescale the HPA made: `change` replicas (negative when scaling down).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScaleEvent {
    pub change: i32,
    pub at: Timestamp,
}

const fn pods(value: i32) -> Policy {
    Policy {
        percent: false,
        value,
        period_seconds: 15,
    }
}

const fn percent(value: i32) -> Policy {
    Policy {
        percent: true,
        value,
        period_seconds: 15,
    }
}

fn rules(
    given: Option<&HPAScalingRules>,
    stabilization_seconds: i64,
    policies: Vec<Policy>,
    tolerance: f64,
) -> Rules {
    let given = given.cloned().unwrap_or_default();
    Rules {
        stabilization_seconds: given
            .stabilization_window_seconds
            .map_or(stabilization_seconds, i64::from),
        select: match given.select_policy.as_deref() {
            Some("Min") => Select::Min,
            Some("Disabled") => Select::Disabled,
            _ => Select::Max,
        },
        policies: given.policies.map_or(policies, |ps| {
            ps.iter()
                .map(|p| Policy {
                    percent: p.type_ == "Percent",
                    value: p.value,
                    period_seconds: p.period_seconds,
                })
                .collect()
        }),
        tolerance: given
            .tolerance
            .and_then(|q| parse_quantity(&q.0))
            .unwrap_or(tolerance),
    }
}

impl Behavior {
    /// The behavior of an HPA with upstream's defaults for what it leaves out;
    /// `downscale_window` and `tolerance` are the controller's defaults.
    pub fn of(
        given: Option<&HorizontalPodAutoscalerBehavior>,
        downscale_window: Duration,
        tolerance: f64,
    ) -> Behavior {
        let up = given.and_then(|b| b.scale_up.as_ref());
        let down = given.and_then(|b| b.scale_down.as_ref());
        Behavior {
            up: rules(up, 0, vec![pods(4), percent(100)], tolerance),
            down: rules(
                down,
                downscale_window.as_secs() as i64,
                vec![percent(100)],
                tolerance,
            ),
        }
    }

    /// True when `ratio` (current / target metric) is close enough to 1 to
    /// leave the replica count alone.
    pub fn within_tolerance(&self, ratio: f64) -> bool {
        (1.0 - self.down.tolerance) <= ratio && ratio <= (1.0 + self.up.tolerance)
    }

    /// How long scale events matter to the policies.
    pub fn longest_period(&self) -> i64 {
        self.up
            .policies
            .iter()
            .chain(&self.down.policies)
            .map(|p| i64::from(p.period_seconds))
            .max()
            .unwrap_or(0)
    }

    /// How long recommendations matter to the stabilization windows.
    pub fn longest_window(&self) -> i64 {
        self.up
            .stabilization_seconds
            .max(self.down.stabilization_seconds)
    }
}

/// What normalization decided, with the condition reasons to report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Normalized {
    pub replicas: i32,
    /// AbleToScale (True): ScaleUpStabilized / ScaleDownStabilized / ReadyForNewScale.
    pub able: (&'static str, &'static str),
    /// ScalingLimited: whether the rate or min/max changed the recommendation, why.
    pub limited: (bool, &'static str, &'static str),
}

fn after(at: Timestamp, seconds: i64, now: Timestamp) -> bool {
    at > now - SignedDuration::from_secs(seconds)
}

/// Applies the stabilization windows: the result lies between the lowest
/// recommendation of the scale-up window and the highest of the scale-down
/// window (both including `desired`), as close to `current` as possible.
/// Records `desired` in `history` and forgets what no window needs.
pub fn stabilize(
    history: &mut Vec<Recommendation>,
    b: &Behavior,
    current: i32,
    desired: i32,
    now: Timestamp,
) -> i32 {
    let (mut up, mut down) = (desired, desired);
    for r in history.iter() {
        if after(r.at, b.up.stabilization_seconds, now) {
            up = up.min(r.replicas);
        }
        if after(r.at, b.down.stabilization_seconds, now) {
            down = down.max(r.replicas);
        }
    }
    history.retain(|r| after(r.at, b.longest_window(), now));
    history.push(Recommendation {
        replicas: desired,
        at: now,
    });
    current.max(up).min(down)
}

/// Replicas added and removed by the events within `period_seconds`.
fn changes_within(events: &[ScaleEvent], period_seconds: i32, now: Timestamp) -> (i32, i32) {
    events
        .iter()
        .filter(|e| after(e.at, i64::from(period_seconds), now))
        .fold((0, 0), |(added, removed), e| {
            if e.change > 0 {
                (added + e.change, removed)
            } else {
                (added, removed - e.change)
            }
        })
}

/// The most replicas the scale-up policies allow now.
pub fn scale_up_limit(current: i32, events: &[ScaleEvent], rules: &Rules, now: Timestamp) -> i32 {
    let proposals = rules.policies.iter().map(|p| {
        let (added, removed) = changes_within(events, p.period_seconds, now);
        let start = current - added + removed;
        if p.percent {
            (f64::from(start) * (1.0 + f64::from(p.value) / 100.0)).ceil() as i32
        } else {
            start + p.value
        }
    });
    match rules.select {
        Select::Disabled => current,
        Select::Min => proposals.min().unwrap_or(i32::MAX),
        Select::Max => proposals.max().unwrap_or(i32::MIN),
    }
}

/// The fewest replicas the scale-down policies allow now.
pub fn scale_down_limit(current: i32, events: &[ScaleEvent], rules: &Rules, now: Timestamp) -> i32 {
    let proposals = rules.policies.iter().map(|p| {
        let (added, removed) = changes_within(events, p.period_seconds, now);
        let start = current - added + removed;
        if p.percent {
            (f64::from(start) * (1.0 - f64::from(p.value) / 100.0)) as i32
        } else {
            start - p.value
        }
    });
    match rules.select {
        Select::Disabled => current,
        Select::Min => proposals.max().unwrap_or(i32::MIN),
        Select::Max => proposals.min().unwrap_or(i32::MAX),
    }
}

/// Stabilizes `desired`, then limits it by the policies and min/max, as
/// upstream's `normalizeDesiredReplicasWithBehaviors`.
pub fn normalize(
    history: &mut Vec<Recommendation>,
    events: &[ScaleEvent],
    b: &Behavior,
    current: i32,
    desired: i32,
    (min, max): (i32, i32),
    now: Timestamp,
) -> Normalized {
    let stable = stabilize(history, b, current, desired, now);
    let able = if stable == desired {
        ("ReadyForNewScale", "recommended size matches current size")
    } else if desired >= current {
        (
            "ScaleUpStabilized",
            "recent recommendations were lower than current one, applying the lowest recent recommendation",
        )
    } else {
        (
            "ScaleDownStabilized",
            "recent recommendations were higher than current one, applying the highest recent recommendation",
        )
    };
    let within = (
        "DesiredWithinRange",
        "the desired count is within the acceptable range",
    );
    let (replicas, (reason, message)) = if stable > current {
        let limit = scale_up_limit(current, events, &b.up, now).max(current);
        let (allowed, why) = if max > limit {
            (
                limit,
                (
                    "ScaleUpLimit",
                    "the desired replica count is increasing faster than the maximum scale rate",
                ),
            )
        } else {
            (
                max,
                (
                    "TooManyReplicas",
                    "the desired replica count is more than the maximum replica count",
                ),
            )
        };
        if stable > allowed {
            (allowed, why)
        } else {
            (stable, within)
        }
    } else if stable < current {
        let limit = scale_down_limit(current, events, &b.down, now).min(current);
        let (allowed, why) = if min < limit {
            (
                limit,
                (
                    "ScaleDownLimit",
                    "the desired replica count is decreasing faster than the maximum scale rate",
                ),
            )
        } else {
            (
                min,
                (
                    "TooFewReplicas",
                    "the desired replica count is less than the minimum replica count",
                ),
            )
        };
        if stable < allowed {
            (allowed, why)
        } else {
            (stable, within)
        }
    } else {
        (stable, within)
    };
    Normalized {
        replicas,
        able,
        limited: (replicas != stable, reason, message),
    }
}

/// Scale events from their annotation form (`[{"change":2,"at":"..."}]`);
/// malformed entries are dropped.
pub fn parse_events(text: &str) -> Vec<ScaleEvent> {
    let Ok(Value::Array(items)) = serde_json::from_str::<Value>(text) else {
        return Vec::new();
    };
    items
        .iter()
        .filter_map(|e| {
            Some(ScaleEvent {
                change: i32::try_from(e.get("change")?.as_i64()?).ok()?,
                at: e.get("at")?.as_str()?.parse().ok()?,
            })
        })
        .collect()
}

/// The annotation form of scale events.
pub fn format_events(events: &[ScaleEvent]) -> String {
    let items: Vec<Value> = events
        .iter()
        .map(|e| json!({"change": e.change, "at": e.at.to_string()}))
        .collect();
    Value::Array(items).to_string()
}

/// Adds a rescale from `from` to `to` replicas and forgets events older
/// than every policy period.
pub fn record_event(
    events: &mut Vec<ScaleEvent>,
    b: &Behavior,
    from: i32,
    to: i32,
    now: Timestamp,
) {
    events.retain(|e| after(e.at, b.longest_period(), now));
    if from != to {
        events.push(ScaleEvent {
            change: to - from,
            at: now,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::autoscaling::v2::HPAScalingPolicy;

    fn t(s: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + s).unwrap()
    }

    fn defaults() -> Behavior {
        Behavior::of(None, Duration::from_secs(300), 0.1)
    }

    #[test]
    fn defaults_follow_upstream() {
        let b = defaults();
        assert_eq!(b.up.stabilization_seconds, 0);
        assert_eq!(b.down.stabilization_seconds, 300);
        assert_eq!(b.up.policies, vec![pods(4), percent(100)]);
        assert_eq!(b.down.policies, vec![percent(100)]);
        assert_eq!((b.up.select, b.down.select), (Select::Max, Select::Max));
        assert!(b.within_tolerance(1.1) && b.within_tolerance(0.9));
        assert!(!b.within_tolerance(1.11) && !b.within_tolerance(0.89));
        let given = HorizontalPodAutoscalerBehavior {
            scale_down: Some(HPAScalingRules {
                stabilization_window_seconds: Some(5),
                select_policy: Some("Disabled".into()),
                ..Default::default()
            }),
            scale_up: Some(HPAScalingRules {
                policies: Some(vec![HPAScalingPolicy {
                    type_: "Pods".into(),
                    value: 1,
                    period_seconds: 60,
                }]),
                tolerance: Some(k8s_openapi::apimachinery::pkg::api::resource::Quantity(
                    "50m".into(),
                )),
                ..Default::default()
            }),
        };
        let b = Behavior::of(Some(&given), Duration::from_secs(300), 0.1);
        assert_eq!(b.down.stabilization_seconds, 5);
        assert_eq!(b.down.select, Select::Disabled);
        assert_eq!(
            b.down.policies,
            vec![percent(100)],
            "unset policies default"
        );
        assert_eq!(b.up.policies.len(), 1);
        assert_eq!(b.longest_period(), 60);
        assert!(!b.within_tolerance(1.06), "scale-up tolerance 0.05");
        assert!(b.within_tolerance(0.91), "scale-down keeps 0.1");
    }

    #[test]
    fn scale_down_waits_for_the_stabilization_window() {
        let b = defaults();
        let mut h = Vec::new();
        // Five replicas recommended, then one: the window keeps five.
        assert_eq!(stabilize(&mut h, &b, 5, 5, t(0)), 5);
        assert_eq!(stabilize(&mut h, &b, 5, 1, t(60)), 5);
        assert_eq!(stabilize(&mut h, &b, 5, 2, t(299)), 5);
        // Once the high recommendation is older than 300 s, the highest left wins.
        assert_eq!(stabilize(&mut h, &b, 5, 1, t(301)), 2);
        assert_eq!(stabilize(&mut h, &b, 5, 1, t(600)), 1);
        assert!(h.len() <= 3, "old recommendations are forgotten: {h:?}");
    }

    #[test]
    fn scale_up_stabilization_takes_the_lowest_recent() {
        let mut b = defaults();
        b.up.stabilization_seconds = 60;
        let mut h = Vec::new();
        assert_eq!(stabilize(&mut h, &b, 2, 2, t(0)), 2);
        assert_eq!(
            stabilize(&mut h, &b, 2, 6, t(10)),
            2,
            "2 still in the window"
        );
        assert_eq!(stabilize(&mut h, &b, 2, 5, t(61)), 5);
    }

    #[test]
    fn policies_limit_the_rate() {
        let b = defaults();
        let n = |events: &[ScaleEvent], current, desired, now| {
            normalize(&mut Vec::new(), events, &b, current, desired, (1, 100), now)
        };
        // 4 pods or 100% per 15 s, whichever is more.
        let r = n(&[], 1, 20, t(0));
        assert_eq!(r.replicas, 5);
        assert_eq!(
            r.limited,
            (
                true,
                "ScaleUpLimit",
                "the desired replica count is increasing faster than the maximum scale rate"
            )
        );
        assert_eq!(n(&[], 10, 50, t(0)).replicas, 20);
        // Having just gone 1 → 5, the period started at 1: at most 5 until it passes.
        let ev = [ScaleEvent {
            change: 4,
            at: t(0),
        }];
        assert_eq!(n(&ev, 5, 20, t(10)).replicas, 5);
        assert_eq!(n(&ev, 5, 20, t(16)).replicas, 10);
        // Scale down: 100% per 15 s allows going straight to min (no history here).
        let r = n(&[], 8, 0, t(0));
        assert_eq!(r.replicas, 1);
        assert_eq!(r.limited.1, "TooFewReplicas");
        let r = n(&[], 3, 3, t(0));
        assert_eq!(
            r.limited,
            (
                false,
                "DesiredWithinRange",
                "the desired count is within the acceptable range"
            )
        );
    }

    #[test]
    fn select_min_disabled_and_percent_down() {
        let mut b = defaults();
        b.down = Rules {
            stabilization_seconds: 0,
            select: Select::Max,
            policies: vec![
                Policy {
                    percent: true,
                    value: 50,
                    period_seconds: 60,
                },
                Policy {
                    percent: false,
                    value: 1,
                    period_seconds: 60,
                },
            ],
            tolerance: 0.1,
        };
        assert_eq!(
            scale_down_limit(10, &[], &b.down, t(0)),
            5,
            "Max: the bigger change"
        );
        b.down.select = Select::Min;
        assert_eq!(
            scale_down_limit(10, &[], &b.down, t(0)),
            9,
            "Min: the smaller change"
        );
        b.down.select = Select::Disabled;
        let r = normalize(&mut Vec::new(), &[], &b, 10, 2, (1, 20), t(0));
        assert_eq!(r.replicas, 10);
        assert_eq!(r.limited.1, "ScaleDownLimit");
        b.up.select = Select::Min;
        assert_eq!(
            scale_up_limit(10, &[], &b.up, t(0)),
            14,
            "Min of +4 and +100%"
        );
        // A recent scale-down counts back into the period's start.
        let ev = [ScaleEvent {
            change: -2,
            at: t(0),
        }];
        assert_eq!(scale_up_limit(8, &ev, &b.up, t(5)), 14);
    }

    #[test]
    fn max_replicas_caps_before_the_rate() {
        let b = defaults();
        let r = normalize(&mut Vec::new(), &[], &b, 1, 4, (1, 3), t(0));
        assert_eq!(r.replicas, 3);
        assert_eq!(r.limited.1, "TooManyReplicas");
        let mut h = vec![Recommendation {
            replicas: 3,
            at: t(0),
        }];
        let r = normalize(&mut h, &[], &b, 3, 1, (1, 3), t(10));
        assert_eq!(r.replicas, 3);
        assert_eq!(r.able.0, "ScaleDownStabilized");
    }

    #[test]
    fn events_round_trip_through_the_annotation() {
        let b = defaults();
        let mut ev = Vec::new();
        record_event(&mut ev, &b, 1, 3, t(0));
        record_event(&mut ev, &b, 3, 2, t(5));
        let back = parse_events(&format_events(&ev));
        assert_eq!(back, ev);
        record_event(&mut ev, &b, 2, 4, t(100));
        assert_eq!(ev.len(), 1, "events past every period are dropped");
        assert!(parse_events("not json").is_empty());
    }
}
