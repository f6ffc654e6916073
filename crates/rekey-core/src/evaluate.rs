//! The IAM.3 rule: an *active* access key *created* more than `max_age` ago
//! fails. Everything about key age is decided here and nowhere else.

use crate::model::{AccessKey, KeyStatus};
use crate::Duration;
use jiff::Timestamp;
use serde::Serialize;

/// The limits a scan evaluates against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    pub max_age: Duration,
    /// A key that will fail within this window is a WARNING.
    pub warn_within: Duration,
    /// An active key unused this long (since its last use, or since it was
    /// made) feeds nothing: retire it rather than rotate it.
    pub unused_after: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Policy { max_age: Duration::from_days(90), warn_within: Duration::from_days(14), unused_after: Duration::from_days(90) }
    }
}

/// Whether `key` is active and unused for `policy.unused_after` at
/// `as_of`: nothing needs it, so a new key would be made for nothing.
pub fn unused(key: &AccessKey, policy: &Policy, as_of: Timestamp) -> bool {
    let since = key.last_used.at.unwrap_or(key.created_at);
    key.status == KeyStatus::Active && as_of.as_second() - since.as_second() >= policy.unused_after.as_secs() as i64
}

/// A key's (or user's) IAM.3 result. Ordered from worst to best, so the
/// worst of several is their minimum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Compliance {
    Failed,
    Warning,
    Suppressed,
    Passed,
}

impl Compliance {
    pub fn as_str(self) -> &'static str {
        match self {
            Compliance::Failed => "FAILED",
            Compliance::Warning => "WARNING",
            Compliance::Suppressed => "SUPPRESSED",
            Compliance::Passed => "PASSED",
        }
    }

    /// The worst of `results`: a user fails if any of its keys fails.
    /// A user without keys passes.
    pub fn worst(results: impl IntoIterator<Item = Compliance>) -> Compliance {
        results.into_iter().min().unwrap_or(Compliance::Passed)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evaluation {
    pub result: Compliance,
    /// Whole days between creation and `as_of`, rounded down (negative if
    /// `as_of` is before the key existed).
    pub age_days: i64,
    pub reason: String,
}

/// Whether the key existed at `as_of`: `--as-of` evaluates today's keys at
/// another time, and a key created later has no age then.
pub fn existed_at(key: &AccessKey, as_of: Timestamp) -> bool {
    key.created_at <= as_of
}

/// Whether the key is old enough to be FAILED or WARNING were it active. A
/// status read from a credential report hours ago cannot clear such a key:
/// it may have been reactivated since.
pub fn old_enough_to_matter(key: &AccessKey, policy: &Policy, as_of: Timestamp) -> bool {
    let as_if_active = AccessKey { status: KeyStatus::Active, ..key.clone() };
    existed_at(key, as_of) && evaluate(&as_if_active, policy, as_of).result != Compliance::Passed
}

/// Evaluates one key at `as_of`. Comparisons are at whole seconds: exactly
/// `max_age` old passes, one second more fails.
pub fn evaluate(key: &AccessKey, policy: &Policy, as_of: Timestamp) -> Evaluation {
    let age_secs = as_of.as_second() - key.created_at.as_second();
    let age_days = age_secs.div_euclid(86_400);
    // Durations are bounded (`Duration::MAX`), so these sums cannot overflow.
    let max_age = policy.max_age.as_secs() as i64;
    let limit = limit_text(policy.max_age);

    let (result, reason) = if key.status == KeyStatus::Inactive {
        (Compliance::Passed, "inactive key".to_string())
    } else if age_secs > max_age {
        (Compliance::Failed, format!("active key is {age_days} days old (limit {limit})"))
    } else if age_secs + policy.warn_within.as_secs() as i64 > max_age {
        let fails_at = key.created_at.checked_add(jiff::SignedDuration::from_secs(max_age + 1));
        let when = match fails_at {
            Ok(t) => format!(", fails at {} UTC", t.strftime("%Y-%m-%d %H:%M")),
            Err(_) => String::new(),
        };
        (Compliance::Warning, format!("active key is {age_days} days old{when} (limit {limit})"))
    } else {
        (Compliance::Passed, format!("active key is {age_days} days old (limit {limit})"))
    };
    Evaluation { result, age_days, reason }
}

/// The limit as a person wrote it: whole days as a number of days (`90`,
/// the wording of Security Hub), anything else as the duration (`36h`).
fn limit_text(max_age: Duration) -> String {
    if max_age.as_secs().is_multiple_of(86_400) {
        max_age.whole_days().to_string()
    } else {
        max_age.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::LastUsed;

    const AS_OF: &str = "2026-11-28T12:00:00Z";

    fn key(status: KeyStatus, age_secs: i64) -> AccessKey {
        let as_of: Timestamp = AS_OF.parse().unwrap();
        AccessKey {
            id: None,
            status,
            created_at: as_of - jiff::SignedDuration::from_secs(age_secs),
            last_used: LastUsed::default(),
        }
    }

    fn result_at(age_secs: i64, status: KeyStatus) -> Compliance {
        evaluate(&key(status, age_secs), &Policy::default(), AS_OF.parse().unwrap()).result
    }

    const DAY: i64 = 86_400;

    #[test]
    fn exactly_max_age_passes_one_second_more_fails() {
        assert_eq!(result_at(90 * DAY, KeyStatus::Active), Compliance::Warning);
        assert_eq!(result_at(90 * DAY + 1, KeyStatus::Active), Compliance::Failed);
        let e = evaluate(&key(KeyStatus::Active, 90 * DAY + 1), &Policy::default(), AS_OF.parse().unwrap());
        assert_eq!(e.age_days, 90);
        assert_eq!(e.reason, "active key is 90 days old (limit 90)");
    }

    #[test]
    fn warning_window_boundary() {
        // Fails within 14 days (strictly): 76 days + 1 s old is the first warning.
        assert_eq!(result_at(76 * DAY, KeyStatus::Active), Compliance::Passed);
        assert_eq!(result_at(76 * DAY + 1, KeyStatus::Active), Compliance::Warning);
        let no_warning = Policy { warn_within: Duration::ZERO, ..Policy::default() };
        let k = key(KeyStatus::Active, 89 * DAY);
        assert_eq!(evaluate(&k, &no_warning, AS_OF.parse().unwrap()).result, Compliance::Passed);
    }

    #[test]
    fn warning_reason_names_when_it_fails() {
        let e = evaluate(&key(KeyStatus::Active, 80 * DAY), &Policy::default(), AS_OF.parse().unwrap());
        assert_eq!(e.result, Compliance::Warning);
        assert_eq!(e.reason, "active key is 80 days old, fails at 2026-12-08 12:00 UTC (limit 90)");
    }

    #[test]
    fn an_active_key_unused_for_unused_after_is_to_be_retired() {
        let as_of: Timestamp = AS_OF.parse().unwrap();
        let p = Policy::default();
        assert!(unused(&key(KeyStatus::Active, 90 * DAY), &p, as_of), "never used in its 90 days");
        assert!(!unused(&key(KeyStatus::Active, 90 * DAY - 1), &p, as_of));
        let used = |days_ago: i64| {
            let mut k = key(KeyStatus::Active, 400 * DAY);
            k.last_used.at = Some(as_of - jiff::SignedDuration::from_secs(days_ago * DAY));
            k
        };
        assert!(!unused(&used(10), &p, as_of), "used ten days ago");
        assert!(unused(&used(90), &p, as_of));
        let iam22 = Policy { unused_after: Duration::from_days(45), ..Policy::default() };
        assert!(unused(&used(45), &iam22, as_of) && !unused(&used(44), &iam22, as_of));
        assert!(!unused(&key(KeyStatus::Inactive, 400 * DAY), &p, as_of), "inactive: already out of the way");
    }

    #[test]
    fn inactive_keys_always_pass() {
        assert_eq!(result_at(1000 * DAY, KeyStatus::Inactive), Compliance::Passed);
        assert_eq!(result_at(80 * DAY, KeyStatus::Inactive), Compliance::Passed);
    }

    #[test]
    fn age_days_rounds_down() {
        let as_of = AS_OF.parse().unwrap();
        let p = Policy::default();
        assert_eq!(evaluate(&key(KeyStatus::Active, DAY - 1), &p, as_of).age_days, 0);
        assert_eq!(evaluate(&key(KeyStatus::Active, DAY), &p, as_of).age_days, 1);
        assert_eq!(evaluate(&key(KeyStatus::Active, -1), &p, as_of).age_days, -1);
    }

    #[test]
    fn as_of_in_the_future_ages_keys() {
        let k = key(KeyStatus::Active, 10 * DAY);
        let later: Timestamp = "2027-03-01T12:00:00Z".parse().unwrap();
        let e = evaluate(&k, &Policy::default(), later);
        assert_eq!(e.result, Compliance::Failed);
        assert_eq!(e.age_days, 10 + 93);
    }

    #[test]
    fn custom_max_age() {
        let p = Policy { max_age: Duration::from_days(30), warn_within: Duration::ZERO, ..Policy::default() };
        let as_of = AS_OF.parse().unwrap();
        assert_eq!(evaluate(&key(KeyStatus::Active, 30 * DAY + 1), &p, as_of).result, Compliance::Failed);
        assert_eq!(evaluate(&key(KeyStatus::Active, 30 * DAY), &p, as_of).result, Compliance::Passed);
    }

    #[test]
    fn a_limit_in_hours_is_named_as_written() {
        let p = Policy { max_age: "36h".parse().unwrap(), warn_within: Duration::ZERO, ..Policy::default() };
        let e = evaluate(&key(KeyStatus::Active, 2 * DAY), &p, AS_OF.parse().unwrap());
        assert_eq!(e.reason, "active key is 2 days old (limit 36h)");
    }

    #[test]
    fn the_longest_limits_do_not_overflow() {
        // Regression: a WARNING's "fails at" date overflowed (exit 101).
        let p = Policy { max_age: Duration::MAX, warn_within: Duration::MAX, ..Policy::default() };
        let late = AccessKey { created_at: "9998-12-31T00:00:00Z".parse().unwrap(), ..key(KeyStatus::Active, 0) };
        let e = evaluate(&late, &p, "9999-01-01T00:00:00Z".parse().unwrap());
        assert_eq!(e.result, Compliance::Warning);
        assert!(!e.reason.contains("fails at"), "{}", e.reason);
    }

    #[test]
    fn old_keys_matter_whatever_their_reported_status() {
        let as_of = AS_OF.parse().unwrap();
        let p = Policy::default();
        assert!(old_enough_to_matter(&key(KeyStatus::Inactive, 300 * DAY), &p, as_of));
        assert!(old_enough_to_matter(&key(KeyStatus::Active, 76 * DAY + 1), &p, as_of));
        assert!(!old_enough_to_matter(&key(KeyStatus::Active, 76 * DAY), &p, as_of));
        assert!(!old_enough_to_matter(&key(KeyStatus::Active, -DAY), &p, as_of), "did not exist yet");
        assert!(existed_at(&key(KeyStatus::Active, 0), as_of));
        assert!(!existed_at(&key(KeyStatus::Active, -1), as_of));
    }

    #[test]
    fn user_rolls_up_to_worst_key() {
        use Compliance::*;
        assert_eq!(Compliance::worst([Passed, Failed, Warning]), Failed);
        assert_eq!(Compliance::worst([Passed, Warning]), Warning);
        assert_eq!(Compliance::worst([Passed, Suppressed]), Suppressed);
        assert_eq!(Compliance::worst([Warning, Suppressed]), Warning);
        assert_eq!(Compliance::worst([]), Passed);
    }
}
