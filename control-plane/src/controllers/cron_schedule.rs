//! Standard 5-field cron schedules as CronJobs use them (minute, hour,
//! day of month, month, day of week; lists, ranges, steps, month and day
//! names, `@hourly`-style macros, a `CRON_TZ=`/`TZ=` prefix), and the
//! fire-time arithmetic the CronJob controller needs: the next fire time
//! after an instant, and the runs missed in an interval. Time zones are
//! IANA names from the tz database (`Europe/Berlin`, with DST: a fire time
//! in a spring-forward gap moves on by the gap, one in a fall-back fold
//! fires once, at its first occurrence) and fixed offsets (UTC,
//! `Etc/GMT±N`, `+05:30`). Pure apart from reading the tz database: no
//! clock.

use k8s_openapi::jiff::Timestamp;
use k8s_openapi::jiff::civil::{Date, DateTime, Time};
use k8s_openapi::jiff::tz::{Offset, TimeZone};

/// How far ahead a schedule is searched (covers Feb 29 every 8 years).
const SEARCH_DAYS: u32 = 366 * 9;
/// More missed runs than this and only the latest is reported (as upstream).
pub const MAX_MISSED: usize = 100;

/// Why a schedule or time zone was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ScheduleError(String);

fn err<T>(msg: impl Into<String>) -> Result<T, ScheduleError> {
    Err(ScheduleError(msg.into()))
}

/// A parsed cron schedule: one bit per allowed value of each field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    minutes: u64,
    hours: u64,
    days: u64,
    months: u64,
    weekdays: u64,
    /// Day of month or day of week was `*`/`?`: both must match (else either).
    day_star: bool,
    /// The zone named by a `CRON_TZ=`/`TZ=` prefix, if any.
    pub time_zone: Option<String>,
}

/// The runs of a schedule that fell due in an interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Missed {
    /// The most recent fire time in the interval.
    pub latest: Option<Timestamp>,
    /// How many fire times fell in it (exact up to `MAX_MISSED + 1`).
    pub count: usize,
}

struct Field {
    name: &'static str,
    min: u32,
    /// Largest value `*` stands for.
    max: u32,
    /// Largest value that may be written (7 = Sunday for days of week).
    max_written: u32,
    names: &'static [&'static str],
    /// The value of `names[0]`.
    names_base: u32,
}

const MINUTE: Field = Field {
    name: "minute",
    min: 0,
    max: 59,
    max_written: 59,
    names: &[],
    names_base: 0,
};
const HOUR: Field = Field {
    name: "hour",
    min: 0,
    max: 23,
    max_written: 23,
    names: &[],
    names_base: 0,
};
const DAY: Field = Field {
    name: "day of month",
    min: 1,
    max: 31,
    max_written: 31,
    names: &[],
    names_base: 0,
};
const MONTH: Field = Field {
    name: "month",
    min: 1,
    max: 12,
    max_written: 12,
    names: &[
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ],
    names_base: 1,
};
const WEEKDAY: Field = Field {
    name: "day of week",
    min: 0,
    max: 6,
    max_written: 7,
    names: &["sun", "mon", "tue", "wed", "thu", "fri", "sat"],
    names_base: 0,
};

impl Field {
    fn value(&self, s: &str) -> Result<u32, ScheduleError> {
        let lower = s.to_ascii_lowercase();
        if let Some(i) = self.names.iter().position(|n| *n == lower) {
            return Ok(self.names_base + i as u32);
        }
        let v: u32 = s
            .parse()
            .map_err(|_| ScheduleError(format!("invalid {} value {s:?}", self.name)))?;
        if v < self.min || v > self.max_written {
            return err(format!(
                "{} value {v} is outside {}-{}",
                self.name, self.min, self.max_written
            ));
        }
        Ok(v)
    }

    /// Parses one comma-separated field into a bit set.
    fn parse(&self, text: &str) -> Result<u64, ScheduleError> {
        let mut bits = 0u64;
        for item in text.split(',') {
            let (range, step) = match item.split_once('/') {
                Some((r, s)) => {
                    let step: u32 =
                        s.parse().ok().filter(|s| *s > 0).ok_or_else(|| {
                            ScheduleError(format!("invalid step {s:?} in {item:?}"))
                        })?;
                    (r, Some(step))
                }
                None => (item, None),
            };
            let (lo, hi) = if range == "*" || range == "?" {
                (self.min, self.max)
            } else if let Some((a, b)) = range.split_once('-') {
                (self.value(a)?, self.value(b)?)
            } else {
                let v = self.value(range)?;
                // `N/step` runs from N to the end of the range, as Vixie cron does.
                (v, if step.is_some() { self.max_written } else { v })
            };
            if lo > hi {
                return err(format!("{} range {range:?} runs backwards", self.name));
            }
            let step = step.unwrap_or(1) as usize;
            for v in (lo..=hi).step_by(step) {
                bits |= 1 << v;
            }
        }
        Ok(bits)
    }
}

impl Schedule {
    /// Parses a CronJob `spec.schedule`.
    pub fn parse(text: &str) -> Result<Self, ScheduleError> {
        let mut text = text.trim();
        let mut time_zone = None;
        for prefix in ["CRON_TZ=", "TZ="] {
            if let Some(rest) = text.strip_prefix(prefix) {
                let (zone, rest) = rest
                    .split_once(char::is_whitespace)
                    .ok_or_else(|| ScheduleError(format!("no schedule after {prefix}")))?;
                time_zone = Some(zone.to_string());
                text = rest.trim();
                break;
            }
        }
        let expanded = match text {
            "@yearly" | "@annually" => "0 0 1 1 *",
            "@monthly" => "0 0 1 * *",
            "@weekly" => "0 0 * * 0",
            "@daily" | "@midnight" => "0 0 * * *",
            "@hourly" => "0 * * * *",
            t if t.starts_with('@') => return err(format!("unsupported schedule macro {t:?}")),
            t => t,
        };
        let fields: Vec<&str> = expanded.split_whitespace().collect();
        let [minute, hour, day, month, weekday] = fields[..] else {
            return err(format!(
                "expected exactly 5 fields (minute hour day-of-month month day-of-week), found {}",
                fields.len()
            ));
        };
        let mut weekdays = WEEKDAY.parse(weekday)?;
        if weekdays & (1 << 7) != 0 {
            weekdays = (weekdays & !(1 << 7)) | 1;
        }
        let starred = |f: &str| f.starts_with('*') || f.starts_with('?');
        Ok(Self {
            minutes: MINUTE.parse(minute)?,
            hours: HOUR.parse(hour)?,
            days: DAY.parse(day)?,
            months: MONTH.parse(month)?,
            weekdays,
            day_star: starred(day) || starred(weekday),
            time_zone,
        })
    }

    fn day_matches(&self, d: Date) -> bool {
        let has = |bits: u64, v: i8| bits & (1 << v) != 0;
        if !has(self.months, d.month()) {
            return false;
        }
        let dom = has(self.days, d.day());
        let dow = has(self.weekdays, d.weekday().to_sunday_zero_offset());
        // Vixie cron: when both day fields are restricted, either may match.
        if self.day_star {
            dom && dow
        } else {
            dom || dow
        }
    }

    /// The first fire time strictly after `t`, in the zone `tz`.
    pub fn next_after(&self, t: Timestamp, tz: &TimeZone) -> Option<Timestamp> {
        // Search the zone's wall clock from the minute after `t`. A wall time
        // that maps to an instant not after `t` (the second pass through a
        // fall-back fold) is skipped: that run already fired.
        let mut from = tz.to_datetime(t);
        for _ in 0..4 {
            let at = self.next_wall_time_after(from)?;
            let fire = tz.to_ambiguous_timestamp(at).compatible().ok()?;
            if fire > t {
                return Some(fire);
            }
            from = at;
        }
        None
    }

    /// The first matching wall-clock minute strictly after `local`.
    fn next_wall_time_after(&self, local: DateTime) -> Option<DateTime> {
        let minute = Time::new(local.hour(), local.minute(), 0, 0).ok()?;
        let start = DateTime::from_parts(local.date(), minute)
            .checked_add(k8s_openapi::jiff::SignedDuration::from_mins(1))
            .ok()?;
        let mut date = start.date();
        let (mut hour, mut minute) = (start.hour() as u32, start.minute() as u32);
        for _ in 0..SEARCH_DAYS {
            if self.day_matches(date)
                && let Some((h, m)) = self.first_time_from(hour, minute)
            {
                return Some(DateTime::from_parts(
                    date,
                    Time::new(h as i8, m as i8, 0, 0).ok()?,
                ));
            }
            date = date.tomorrow().ok()?;
            (hour, minute) = (0, 0);
        }
        None
    }

    /// The first allowed (hour, minute) at or after `hour:minute` on a matching day.
    fn first_time_from(&self, hour: u32, minute: u32) -> Option<(u32, u32)> {
        let first = |bits: u64, from: u32| {
            let rest = bits.checked_shr(from)?.checked_shl(from)?;
            (rest != 0).then(|| rest.trailing_zeros())
        };
        let mut h = first(self.hours, hour)?;
        if h == hour {
            if let Some(m) = first(self.minutes, minute) {
                return Some((h, m));
            }
            h = first(self.hours, hour + 1)?;
        }
        Some((h, first(self.minutes, 0)?))
    }

    /// The fire times in `(after, until]`: how many, and the latest.
    pub fn missed(&self, after: Timestamp, until: Timestamp, tz: &TimeZone) -> Missed {
        let mut missed = Missed {
            latest: None,
            count: 0,
        };
        let mut t = after;
        while let Some(n) = self.next_after(t, tz).filter(|n| *n <= until) {
            missed.count += 1;
            missed.latest = Some(n);
            t = n;
            if missed.count > MAX_MISSED {
                missed.latest = self.latest_in(after, until, tz);
                break;
            }
        }
        missed
    }

    /// The latest fire time in `(after, until]`, searching back from
    /// `until` in doubling windows so a long gap costs few steps.
    fn latest_in(&self, after: Timestamp, until: Timestamp, tz: &TimeZone) -> Option<Timestamp> {
        let mut window = 60i64;
        loop {
            let from = Timestamp::from_second(until.as_second() - window)
                .ok()
                .filter(|f| *f > after)
                .unwrap_or(after);
            if let Some(mut t) = self.next_after(from, tz).filter(|n| *n <= until) {
                while let Some(n) = self.next_after(t, tz).filter(|n| *n <= until) {
                    t = n;
                }
                return Some(t);
            }
            if from == after {
                return None;
            }
            window = window.saturating_mul(2);
        }
    }
}

/// A CronJob time zone: a fixed offset (see [`zone_offset`]) or an IANA
/// name looked up in the tz database (the system's, or on platforms without
/// one the copy built into the binary).
pub fn zone(name: &str) -> Result<TimeZone, ScheduleError> {
    if let Ok(offset) = zone_offset(name) {
        return Ok(TimeZone::fixed(offset));
    }
    TimeZone::get(name).map_err(|e| ScheduleError(format!("unknown time zone {name:?}: {e}")))
}

/// The fixed offset of a CronJob time zone: UTC and its aliases, the
/// IANA `Etc/GMT±N` zones (whose sign is inverted: `Etc/GMT+5` is UTC-5),
/// and ISO offsets such as `+05:30`, `-0800` or `UTC+01:00`.
pub fn zone_offset(name: &str) -> Result<Offset, ScheduleError> {
    const UTC: &[&str] = &[
        "UTC",
        "UCT",
        "GMT",
        "GMT0",
        "Greenwich",
        "Universal",
        "Zulu",
        "Etc/UTC",
        "Etc/UCT",
        "Etc/GMT",
        "Etc/GMT0",
        "Etc/GMT+0",
        "Etc/GMT-0",
        "Etc/Greenwich",
        "Etc/Universal",
        "Etc/Zulu",
    ];
    let unsupported = || {
        ScheduleError(format!(
            "{name:?} is not a fixed offset (UTC, Etc/GMT±N, +05:30)"
        ))
    };
    if UTC.contains(&name) {
        return Ok(Offset::UTC);
    }
    if let Some(rest) = name.strip_prefix("Etc/GMT") {
        let hours: i32 = rest.parse().map_err(|_| unsupported())?;
        if !rest.starts_with(['+', '-']) || !(-14..=12).contains(&hours) {
            return Err(unsupported());
        }
        return Offset::from_seconds(-hours * 3600).map_err(|_| unsupported());
    }
    let iso = name.strip_prefix("UTC").unwrap_or(name);
    let (sign, digits) = match iso.as_bytes().first() {
        Some(b'+') => (1, &iso[1..]),
        Some(b'-') => (-1, &iso[1..]),
        _ => return Err(unsupported()),
    };
    let digits = digits.replacen(':', "", 1);
    if !digits.bytes().all(|b| b.is_ascii_digit()) || !matches!(digits.len(), 2 | 4) {
        return Err(unsupported());
    }
    let hours: i32 = digits[..2].parse().map_err(|_| unsupported())?;
    let minutes: i32 = digits
        .get(2..)
        .filter(|m| !m.is_empty())
        .map_or(Ok(0), str::parse)
        .map_err(|_| unsupported())?;
    if hours > 14 || minutes > 59 {
        return Err(unsupported());
    }
    Offset::from_seconds(sign * (hours * 3600 + minutes * 60)).map_err(|_| unsupported())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn next(schedule: &str, after: &str) -> String {
        let s = Schedule::parse(schedule).unwrap();
        s.next_after(at(after), &TimeZone::UTC).unwrap().to_string()
    }

    #[test]
    fn parses_lists_ranges_steps_and_names() {
        let s = Schedule::parse("0,30 */6 1-5 jan-MAR,dec MON-fri").unwrap();
        assert_eq!(s.minutes, 1 | 1 << 30);
        assert_eq!(s.hours, 1 | 1 << 6 | 1 << 12 | 1 << 18);
        assert_eq!(s.days, 0b11_1110);
        assert_eq!(s.months, 0b1_0000_0000_1110);
        assert_eq!(s.weekdays, 0b11_1110);
        assert!(!s.day_star);
        let s = Schedule::parse("5/20 3-10/3 * * 7").unwrap();
        assert_eq!(s.minutes, 1 << 5 | 1 << 25 | 1 << 45);
        assert_eq!(s.hours, 1 << 3 | 1 << 6 | 1 << 9);
        assert_eq!(s.weekdays, 1, "7 is Sunday");
        assert!(s.day_star);
        assert_eq!(
            Schedule::parse("*/2 * * * *").unwrap().weekdays,
            0b111_1111,
            "* means 0-6"
        );
    }

    #[test]
    fn rejects_malformed_schedules() {
        for bad in [
            "",
            "* * * *",
            "* * * * * *",
            "60 * * * *",
            "* 24 * * *",
            "* * 0 * *",
            "* * * 13 *",
            "* * * * 8",
            "*/0 * * * *",
            "5-1 * * * *",
            "a * * * *",
            "* * * foo *",
            "@every 5m",
            "1,,2 * * * *",
        ] {
            assert!(Schedule::parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn macros_and_time_zone_prefix() {
        assert_eq!(
            Schedule::parse("@hourly").unwrap(),
            Schedule::parse("0 * * * *").unwrap()
        );
        assert_eq!(
            Schedule::parse("@daily").unwrap(),
            Schedule::parse("0 0 * * *").unwrap()
        );
        let s = Schedule::parse("CRON_TZ=Etc/GMT-2 30 4 * * *").unwrap();
        assert_eq!(s.time_zone.as_deref(), Some("Etc/GMT-2"));
        let s = Schedule::parse("TZ=UTC @weekly").unwrap();
        assert_eq!(s.time_zone.as_deref(), Some("UTC"));
        assert!(Schedule::parse("CRON_TZ=UTC").is_err());
    }

    #[test]
    fn next_fire_times() {
        assert_eq!(
            next("* * * * *", "2024-01-01T10:00:00Z"),
            "2024-01-01T10:01:00Z"
        );
        assert_eq!(
            next("* * * * *", "2024-01-01T10:00:59.999Z"),
            "2024-01-01T10:01:00Z"
        );
        assert_eq!(
            next("*/15 * * * *", "2024-01-01T10:07:00Z"),
            "2024-01-01T10:15:00Z"
        );
        // Hour, day, month and year roll-overs.
        assert_eq!(
            next("5 * * * *", "2024-01-01T10:05:00Z"),
            "2024-01-01T11:05:00Z"
        );
        assert_eq!(
            next("0 0 * * *", "2024-12-31T23:59:30Z"),
            "2025-01-01T00:00:00Z"
        );
        assert_eq!(
            next("30 2 31 * *", "2024-04-01T00:00:00Z"),
            "2024-05-31T02:30:00Z"
        );
        assert_eq!(
            next("0 0 29 2 *", "2024-03-01T00:00:00Z"),
            "2028-02-29T00:00:00Z"
        );
        assert_eq!(
            next("0 9 * * mon", "2024-01-03T12:00:00Z"),
            "2024-01-08T09:00:00Z"
        );
        assert_eq!(
            next("59 23 * * *", "2024-01-01T23:58:00Z"),
            "2024-01-01T23:59:00Z"
        );
        // The hour matches but no minute is left in it.
        assert_eq!(
            next("10 10,12 * * *", "2024-01-01T10:30:00Z"),
            "2024-01-01T12:10:00Z"
        );
        assert!(
            Schedule::parse("0 0 30 2 *")
                .unwrap()
                .next_after(at("2024-01-01T00:00:00Z"), &TimeZone::UTC)
                .is_none()
        );
    }

    #[test]
    fn day_of_month_and_week_follow_vixie_or_semantics() {
        // Both restricted: the 13th OR any Friday.
        assert_eq!(
            next("0 0 13 * 5", "2024-09-01T00:00:00Z"),
            "2024-09-06T00:00:00Z"
        );
        assert_eq!(
            next("0 0 13 * 5", "2024-09-10T00:00:00Z"),
            "2024-09-13T00:00:00Z"
        );
        // A star in either field: both must match (here a Friday in any month).
        assert_eq!(
            next("0 0 * * 5", "2024-09-07T00:00:00Z"),
            "2024-09-13T00:00:00Z"
        );
        // A stepped star still counts as a star (as in Vixie cron and robfig/cron).
        assert_eq!(
            next("0 0 */2 * 1", "2024-09-01T00:00:00Z"),
            "2024-09-09T00:00:00Z"
        );
        // Months restrict both.
        assert_eq!(
            next("0 0 1 feb sun", "2024-03-01T00:00:00Z"),
            "2025-02-01T00:00:00Z"
        );
    }

    #[test]
    fn fixed_offsets() {
        let s = Schedule::parse("0 9 * * *").unwrap();
        let ist = TimeZone::fixed(zone_offset("+05:30").unwrap());
        assert_eq!(
            s.next_after(at("2024-01-01T00:00:00Z"), &ist)
                .unwrap()
                .to_string(),
            "2024-01-01T03:30:00Z"
        );
        // 09:00 in UTC-5 (Etc/GMT+5) is 14:00 UTC; the local date differs from UTC's.
        let est = zone("Etc/GMT+5").unwrap();
        assert_eq!(
            s.next_after(at("2024-01-01T14:00:00Z"), &est)
                .unwrap()
                .to_string(),
            "2024-01-02T14:00:00Z"
        );
        let s = Schedule::parse("0 0 * * sat").unwrap();
        assert_eq!(
            s.next_after(at("2024-01-05T20:00:00Z"), &zone("UTC+04").unwrap())
                .unwrap()
                .to_string(),
            "2024-01-12T20:00:00Z",
            "Sat 00:00 at +04 is Fri 20:00 UTC, and the bound is exclusive"
        );
        assert_eq!(zone_offset("Etc/UTC").unwrap(), Offset::UTC);
        assert_eq!(zone_offset("-0800").unwrap().seconds(), -8 * 3600);
        for bad in [
            "Europe/Berlin",
            "GMT+5",
            "Etc/GMT+13",
            "+5",
            "+05:60",
            "+1:00",
        ] {
            assert!(zone_offset(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn missed_runs_count_and_latest() {
        let s = Schedule::parse("*/10 * * * *").unwrap();
        let m = s.missed(
            at("2024-01-01T10:00:00Z"),
            at("2024-01-01T10:35:00Z"),
            &TimeZone::UTC,
        );
        assert_eq!(m.count, 3);
        assert_eq!(m.latest, Some(at("2024-01-01T10:30:00Z")));
        let none = s.missed(
            at("2024-01-01T10:00:00Z"),
            at("2024-01-01T10:09:59Z"),
            &TimeZone::UTC,
        );
        assert_eq!(
            none,
            Missed {
                latest: None,
                count: 0
            }
        );
        // The bound is inclusive: a run due exactly now counts.
        let due = s.missed(
            at("2024-01-01T10:00:00Z"),
            at("2024-01-01T10:10:00Z"),
            &TimeZone::UTC,
        );
        assert_eq!(due.latest, Some(at("2024-01-01T10:10:00Z")));
        // A year of minutes: more than 100, and the latest found without walking it all.
        let every = Schedule::parse("* * * * *").unwrap();
        let m = every.missed(
            at("2023-01-01T00:00:00Z"),
            at("2024-01-01T12:34:56Z"),
            &TimeZone::UTC,
        );
        assert_eq!(m.count, MAX_MISSED + 1);
        assert_eq!(m.latest, Some(at("2024-01-01T12:34:00Z")));
        let sparse = Schedule::parse("* 3 1 * *").unwrap();
        let m = sparse.missed(
            at("2023-01-01T00:00:00Z"),
            at("2024-01-20T00:00:00Z"),
            &TimeZone::UTC,
        );
        assert_eq!(m.latest, Some(at("2024-01-01T03:59:00Z")));
    }

    #[test]
    fn iana_zones_follow_daylight_saving_time() {
        let berlin = zone("Europe/Berlin").expect("tz database");
        let nine = Schedule::parse("0 9 * * *").unwrap();
        // 09:00 in Berlin is 08:00 UTC in winter and 07:00 UTC in summer.
        let next = |s: &Schedule, t: &str| s.next_after(at(t), &berlin).unwrap().to_string();
        assert_eq!(next(&nine, "2024-01-10T12:00:00Z"), "2024-01-11T08:00:00Z");
        assert_eq!(next(&nine, "2024-07-10T12:00:00Z"), "2024-07-11T07:00:00Z");
        // 2024-03-31 02:00 → 03:00: a 02:30 run moves on by the gap (03:30 CEST).
        let half_past_two = Schedule::parse("30 2 * * *").unwrap();
        assert_eq!(
            next(&half_past_two, "2024-03-30T12:00:00Z"),
            "2024-03-31T01:30:00Z"
        );
        // 2024-10-27 03:00 → 02:00: 02:30 happens twice and fires once, at the first.
        let first = next(&half_past_two, "2024-10-26T12:00:00Z");
        assert_eq!(first, "2024-10-27T00:30:00Z");
        assert_eq!(
            next(&half_past_two, "2024-10-27T00:30:00Z"),
            "2024-10-28T01:30:00Z"
        );
        // Every 15 minutes through the fold: 02:00–02:45 CEST, then the CET pass is skipped.
        let quarter = Schedule::parse("*/15 2 * * *").unwrap();
        let m = quarter.missed(
            at("2024-10-26T23:59:00Z"),
            at("2024-10-27T02:00:00Z"),
            &berlin,
        );
        assert_eq!(m.count, 4);
        assert!(zone("Mars/Olympus_Mons").is_err());
    }
}
