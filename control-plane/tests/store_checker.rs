//! A linearizability checker for the store's recorded client histories
//! (used by `store_cluster`; its own tests run when built alone).
//!
//! The store promises that every operation takes effect at one revision: a
//! put at the revision it returns, a read at the revision it was served at.
//! Given the committed order (the full event history), a history is
//! linearizable under that order iff (1) every acknowledged put is in the
//! history at its revision, (2) every read returned the latest put to its key
//! at or below its revision, and (3) real time is respected: an operation
//! that started after another completed has a later point (strictly later
//! for puts). Failed puts may or may not have taken effect; if one did, it
//! must still respect real time.

#![allow(dead_code)]

use std::collections::HashMap;
use std::time::Duration;

#[derive(Debug, Clone)]
pub enum Op {
    Put { key: String, value: u64 },
    Get { key: String },
}

#[derive(Debug, Clone)]
pub enum Outcome {
    Put {
        revision: i64,
    },
    Get {
        served_at: i64,
        value: Option<(u64, i64)>,
    },
    Failed,
}

#[derive(Debug, Clone)]
pub struct Record {
    pub member: u64,
    pub op: Op,
    pub invoke: Duration,
    pub complete: Duration,
    pub outcome: Outcome,
}

/// Checks `records` against the committed `history` of (revision, key, value).
pub fn check(records: &[Record], history: &[(i64, String, u64)]) -> Result<(), String> {
    let mut by_rev = HashMap::new();
    let mut by_value = HashMap::new();
    for window in history.windows(2) {
        if window[1].0 <= window[0].0 {
            return Err(format!("history revisions go back at {:?}", window[1]));
        }
    }
    for (rev, key, value) in history {
        by_rev.insert(*rev, (key.as_str(), *value));
        by_value.insert(*value, *rev);
    }
    // (point, is_write) of each record that took effect.
    let mut points = Vec::with_capacity(records.len());
    for r in records {
        let point = match (&r.op, &r.outcome) {
            (Op::Put { key, value }, Outcome::Put { revision }) => {
                if by_rev.get(revision) != Some(&(key.as_str(), *value)) {
                    return Err(format!(
                        "acknowledged put {key}={value} at {revision} is not in the history"
                    ));
                }
                Some((*revision, true))
            }
            (Op::Put { value, .. }, Outcome::Failed) => by_value.get(value).map(|rev| (*rev, true)),
            (Op::Get { key }, Outcome::Get { served_at, value }) => {
                let expected = history
                    .iter()
                    .rfind(|(rev, k, _)| k == key && rev <= served_at)
                    .map(|(rev, _, v)| (*v, *rev));
                if *value != expected {
                    return Err(format!(
                        "read of {key} at {served_at} returned {value:?}, expected {expected:?}"
                    ));
                }
                Some((*served_at, false))
            }
            (_, Outcome::Failed) => None,
            (op, outcome) => return Err(format!("outcome {outcome:?} does not fit {op:?}")),
        };
        points.push(point);
    }
    // Real time: sweep operations by invocation over completions.
    let mut completed: Vec<(Duration, i64)> = records
        .iter()
        .zip(&points)
        .filter(|(r, _)| !matches!(r.outcome, Outcome::Failed))
        .filter_map(|(r, p)| p.map(|(point, _)| (r.complete, point)))
        .collect();
    completed.sort();
    let mut order: Vec<usize> = (0..records.len())
        .filter(|i| points[*i].is_some())
        .collect();
    order.sort_by_key(|i| records[*i].invoke);
    let (mut next, mut max_point) = (0, i64::MIN);
    for i in order {
        while next < completed.len() && completed[next].0 < records[i].invoke {
            max_point = max_point.max(completed[next].1);
            next += 1;
        }
        let Some((point, is_write)) = points[i] else {
            continue;
        };
        if point < max_point || (is_write && point == max_point) {
            return Err(format!(
                "real-time order violated: {:?} took effect at {point} after an operation completed at {max_point}",
                records[i]
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(op: Op, invoke: u64, complete: u64, outcome: Outcome) -> Record {
        Record {
            member: 1,
            op,
            invoke: Duration::from_millis(invoke),
            complete: Duration::from_millis(complete),
            outcome,
        }
    }

    fn put(value: u64) -> Op {
        Op::Put {
            key: "k".into(),
            value,
        }
    }

    fn get() -> Op {
        Op::Get { key: "k".into() }
    }

    #[test]
    fn accepts_a_linearizable_history() {
        let history = vec![(1, "k".to_string(), 10), (2, "k".to_string(), 20)];
        let records = vec![
            rec(put(10), 0, 5, Outcome::Put { revision: 1 }),
            rec(
                get(),
                6,
                8,
                Outcome::Get {
                    served_at: 1,
                    value: Some((10, 1)),
                },
            ),
            rec(put(20), 7, 12, Outcome::Put { revision: 2 }),
            rec(
                get(),
                13,
                14,
                Outcome::Get {
                    served_at: 2,
                    value: Some((20, 2)),
                },
            ),
        ];
        check(&records, &history).unwrap();
    }

    #[test]
    fn rejects_a_stale_read() {
        let history = vec![(1, "k".to_string(), 10), (2, "k".to_string(), 20)];
        let records = vec![
            rec(put(20), 0, 5, Outcome::Put { revision: 2 }),
            rec(
                get(),
                6,
                8,
                Outcome::Get {
                    served_at: 1,
                    value: Some((10, 1)),
                },
            ),
        ];
        assert!(check(&records, &history).unwrap_err().contains("real-time"));
    }

    #[test]
    fn rejects_a_lost_write_and_a_wrong_value() {
        let history = vec![(1, "k".to_string(), 10)];
        let lost = vec![rec(put(20), 0, 5, Outcome::Put { revision: 2 })];
        assert!(check(&lost, &history).is_err());
        let wrong = vec![rec(
            get(),
            0,
            5,
            Outcome::Get {
                served_at: 1,
                value: None,
            },
        )];
        assert!(check(&wrong, &history).is_err());
    }

    #[test]
    fn failed_puts_may_or_may_not_apply() {
        let history = vec![(1, "k".to_string(), 10)];
        let records = vec![
            rec(put(10), 0, 5, Outcome::Failed),
            rec(put(11), 0, 5, Outcome::Failed),
        ];
        check(&records, &history).unwrap();
    }
}
