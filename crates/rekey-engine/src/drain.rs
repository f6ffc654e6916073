//! The drain rule (when the old key may be deactivated), as a pure function
//! of times on AWS's clock, so every case is a unit test.
//!
//! AWS reports last use late (up to `last_used_lag`) and to the minute, and
//! calls in flight at delivery still carry the old key: a use within
//! `last_used_margin` (1 minute) of the baseline (delivery, or a person's confirmation) is
//! ambiguous and fine; a later one means a consumer still holds the old key,
//! and only a person (or `--force`, for one step) lets the rotation go on.

use crate::plan::Timings;
use jiff::Timestamp;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Facts {
    /// When the consumers were last known to have the new key: delivery, or
    /// the last `rekey confirm` of a drain.
    pub baseline: Timestamp,
    /// From when `drain_timeout` counts (the baseline too, today).
    pub timeout_from: Timestamp,
    pub now: Timestamp,
    pub last_use: Option<Timestamp>,
    pub force: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drain {
    /// Nothing seen yet; look again at `until`.
    Wait { until: Timestamp },
    /// Unused for the whole window: deactivate.
    Drained,
    /// A person said `--force`: deactivate now, whatever the last use.
    Forced,
    /// Used after the baseline: keep waiting for a person until `until`.
    InUse { until: Timestamp },
    /// Used after the baseline and `drain_timeout` passed: block.
    TimedOut,
}

/// A use after `baseline`, beyond the ambiguity of the margin.
pub fn used_after(t: &Timings, baseline: Timestamp, last_use: Option<Timestamp>) -> bool {
    last_use.is_some_and(|at| at > baseline + t.last_used_margin.to_signed())
}

pub fn decide(t: &Timings, f: Facts) -> Drain {
    if f.force {
        return Drain::Forced;
    }
    if used_after(t, f.baseline, f.last_use) {
        let deadline = f.timeout_from + t.drain_timeout.to_signed();
        return if f.now >= deadline {
            Drain::TimedOut
        } else {
            Drain::InUse { until: deadline }
        };
    }
    let window_end = f.baseline + t.drain_window().to_signed();
    if f.now >= window_end {
        Drain::Drained
    } else {
        Drain::Wait { until: window_end }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rekey_core::Duration;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn timings() -> Timings {
        Timings {
            wait_unused: Duration::from_secs(24 * 3600),
            last_used_lag: Duration::from_secs(4 * 3600),
            drain_timeout: Duration::from_days(14),
            ..Timings::default()
        }
    }

    const DELIVERED: &str = "2026-11-01T12:00:00Z";

    fn facts(now: &str, last_use: Option<&str>) -> Facts {
        Facts { baseline: ts(DELIVERED), timeout_from: ts(DELIVERED), now: ts(now), last_use: last_use.map(ts), force: false }
    }

    #[test]
    fn the_window_is_wait_unused_plus_the_lag() {
        let t = timings();
        assert_eq!(decide(&t, facts("2026-11-02T15:59:59Z", None)), Drain::Wait { until: ts("2026-11-02T16:00:00Z") });
        assert_eq!(decide(&t, facts("2026-11-02T16:00:00Z", None)), Drain::Drained);
    }

    #[test]
    fn a_use_within_a_minute_of_delivery_is_ambiguous_and_fine() {
        let t = timings();
        for use_at in ["2026-11-01T11:59:00Z", "2026-11-01T12:00:00Z", "2026-11-01T12:01:00Z"] {
            assert_eq!(decide(&t, facts("2026-11-02T16:00:00Z", Some(use_at))), Drain::Drained, "{use_at}");
        }
        assert_eq!(decide(&t, facts("2026-11-02T16:00:00Z", Some("2026-11-01T12:01:01Z"))), Drain::InUse { until: ts("2026-11-15T12:00:00Z") });
    }

    #[test]
    fn a_use_after_delivery_is_never_forgiven_by_time_alone() {
        // A nightly job used the old key once, then nothing for days: still
        // a consumer that will break at its next run.
        let t = timings();
        let used = Some("2026-11-02T02:00:00Z");
        assert_eq!(decide(&t, facts("2026-11-10T00:00:00Z", used)), Drain::InUse { until: ts("2026-11-15T12:00:00Z") });
        assert_eq!(decide(&t, facts("2026-11-15T12:00:00Z", used)), Drain::TimedOut);
        assert_eq!(decide(&t, Facts { force: true, ..facts("2026-11-03T00:00:00Z", used) }), Drain::Forced);
    }

    #[test]
    fn a_confirmation_restarts_the_window_and_the_timeout() {
        let t = timings();
        let confirmed = ts("2026-11-05T09:00:00Z");
        let after_confirm = |now: &str, used: &str| {
            decide(&t, Facts { baseline: confirmed, timeout_from: confirmed, now: ts(now), last_use: Some(ts(used)), force: false })
        };
        // The use that blocked it was before the confirmation: the window runs from it.
        assert_eq!(after_confirm("2026-11-06T12:59:59Z", "2026-11-04T00:00:00Z"), Drain::Wait { until: ts("2026-11-06T13:00:00Z") });
        assert_eq!(after_confirm("2026-11-06T13:00:00Z", "2026-11-04T00:00:00Z"), Drain::Drained);
        // Used again after the person said it was fixed: not fixed.
        assert_eq!(after_confirm("2026-11-06T13:00:00Z", "2026-11-05T10:00:00Z"), Drain::InUse { until: ts("2026-11-19T09:00:00Z") });
    }
}
