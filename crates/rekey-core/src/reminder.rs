//! Reminders on a cadence (`[notify] remind`, `overdue_every`,
//! `min_interval`): which reminder each key is due, and which owners get a
//! digest now. Pure: the caller reads what was sent from the state store,
//! sends the digests and records them.
//!
//! A key's reminder moments are `fail_at - d` for each `d` of `remind`,
//! then `fail_at` itself (the moment IAM.3 starts failing it: owners hear of
//! it the day Security Hub does), then `fail_at + k * overdue_every` for
//! k = 1, 2, ... (`fail_at` = created + max_age). A moment that has passed
//! and is later than the last one sent for that key is due; only the
//! latest due moment counts, so a run missed for a week sends one reminder,
//! not one per missed moment, and no moment is ever sent twice.

use crate::evaluate::Compliance;
use crate::model::KeyStatus;
use crate::report::KeyRow;
use crate::Duration;
use jiff::Timestamp;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};

/// At most one digest per owner this often, unless configured.
pub const DEFAULT_MIN_INTERVAL: Duration = Duration::from_days(1);

/// The validated cadence: reminders before failing (longest first), the
/// overdue cadence, and how often an owner may hear from rekey.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cadence {
    before: Vec<Duration>,
    overdue_every: Option<Duration>,
    min_interval: Duration,
}

impl Cadence {
    /// The one place for the rules of the settings: every `remind` entry
    /// more than zero and less than `max_age` (a reminder before the key
    /// was even made is no reminder), `overdue_every` and `min_interval`
    /// more than zero. The error names the key and the value.
    pub fn new(remind: &[Duration], overdue_every: Option<Duration>, min_interval: Option<Duration>, max_age: Duration) -> Result<Cadence, String> {
        if remind.is_empty() {
            return Err("remind is empty: list durations before a key fails, like [\"14d\", \"7d\", \"1d\"], or leave remind out".to_owned());
        }
        for d in remind {
            if *d == Duration::ZERO {
                return Err("remind: 0s is not before the key fails; the moment it fails is always a reminder".to_owned());
            }
            if *d >= max_age {
                return Err(format!("remind: {d} is not less than [policy] max_age {max_age}: the key would not exist yet"));
            }
        }
        if overdue_every == Some(Duration::ZERO) {
            return Err("overdue_every must be more than 0s".to_owned());
        }
        if min_interval == Some(Duration::ZERO) {
            return Err("min_interval must be more than 0s".to_owned());
        }
        let mut before = remind.to_vec();
        before.sort_unstable_by(|a, b| b.cmp(a));
        before.dedup();
        Ok(Cadence { before, overdue_every, min_interval: min_interval.unwrap_or(DEFAULT_MIN_INTERVAL) })
    }

    pub fn min_interval(&self) -> Duration {
        self.min_interval
    }

    /// The latest reminder moment at or before `now` of a key that fails
    /// at `fail_at`, if any has come.
    pub fn latest(&self, fail_at: Timestamp, now: Timestamp) -> Option<Due> {
        if now < fail_at {
            // `before` is longest first: the last that has come is the latest.
            return self
                .before
                .iter()
                .filter_map(|d| Some((*d, fail_at.checked_sub(d.to_signed()).ok()?)))
                .rfind(|(_, moment)| *moment <= now)
                .map(|(d, moment)| Due { moment, reminder: Reminder::Before(d), fails_at: fail_at });
        }
        let failing = Due { moment: fail_at, reminder: Reminder::Failing, fails_at: fail_at };
        let Some(every) = self.overdue_every else { return Some(failing) };
        let periods = (now - fail_at).as_secs() / every.to_signed().as_secs();
        if periods == 0 {
            return Some(failing);
        }
        let by = Duration::from_secs(every.as_secs().saturating_mul(periods as u64));
        let moment = fail_at.checked_add(by.to_signed()).ok()?;
        Some(Due { moment, reminder: Reminder::Overdue(by), fails_at: fail_at })
    }
}

/// Which reminder a moment is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "by", rename_all = "snake_case")]
pub enum Reminder {
    /// This long before the key fails.
    Before(Duration),
    /// The moment it fails.
    Failing,
    /// This long after it failed.
    Overdue(Duration),
}

impl Reminder {
    /// `fails in 7 days`, `fails now`, `overdue by 14 days`: the reminder
    /// by its name, even when sent late (the digest gives the exact time).
    pub fn label(self) -> String {
        match self {
            Reminder::Before(d) => format!("fails in {}", in_words(d)),
            Reminder::Failing => "fails now".to_owned(),
            Reminder::Overdue(d) => format!("overdue by {}", in_words(d)),
        }
    }
}

/// `7 days`, `1 day`, `36 hours`, `90m`: as people say it.
fn in_words(d: Duration) -> String {
    let plural = |n: u64, unit: &str| if n == 1 { format!("1 {unit}") } else { format!("{n} {unit}s") };
    let secs = d.as_secs();
    if secs.is_multiple_of(86_400) {
        plural(secs / 86_400, "day")
    } else if secs.is_multiple_of(3_600) {
        plural(secs / 3_600, "hour")
    } else {
        d.to_string()
    }
}

/// A reminder moment that has come.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Due {
    pub moment: Timestamp,
    pub reminder: Reminder,
    /// When IAM.3 fails the key: created + max_age.
    pub fails_at: Timestamp,
}

/// What identifies a key across scans: its account, user and creation
/// time. Not its id: a credential-report scan does not list the ids of
/// keys that still pass, and a key's creation never changes.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct KeyRef {
    pub account_id: String,
    pub user_name: String,
    pub created_at: Timestamp,
}

impl KeyRef {
    pub fn of(row: &KeyRow) -> KeyRef {
        KeyRef { account_id: row.account_id.clone(), user_name: row.user_name.clone(), created_at: row.created_at }
    }
}

/// What was sent so far, as the state store holds it: per owner (`None`:
/// the unowned) the time of the last digest, per key the last moment sent.
#[derive(Debug, Clone, Default)]
pub struct Sent {
    pub owners: HashMap<Option<String>, Timestamp>,
    pub keys: HashMap<KeyRef, Timestamp>,
}

/// Why a key gets no reminder, whatever its age.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exempt {
    /// Inactive keys pass IAM.3.
    Inactive,
    /// The user's exemption is in force (SUPPRESSED).
    Suppressed,
    /// A rotation (or retirement) is under way: it ends the key, and a
    /// blocked one already waits in `rekey status` and the run summary.
    Rotating,
}

/// `None` when the key gets reminders on the cadence. An active key that
/// scans still call PASSED gets those of `remind` that come before
/// `warn_within`: reminders follow `remind`.
pub fn exempt(row: &KeyRow) -> Option<Exempt> {
    if row.status != KeyStatus::Active {
        Some(Exempt::Inactive)
    } else if row.result == Compliance::Suppressed {
        Some(Exempt::Suppressed)
    } else if row.rotation.is_some() {
        Some(Exempt::Rotating)
    } else {
        None
    }
}

/// One owner's digest: every key of theirs with a due reminder, once each,
/// in the order the scan listed them.
#[derive(Debug, Clone)]
pub struct Digest {
    pub owner: Option<String>,
    pub keys: Vec<(KeyRow, Due)>,
}

/// An owner with due reminders who heard from rekey within `min_interval`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    pub owner: Option<String>,
    pub keys: usize,
    /// When the owner may get the next digest.
    pub until: Timestamp,
}

#[derive(Debug, Clone, Default)]
pub struct Plan {
    /// To send now, owners by name, the unowned last.
    pub digests: Vec<Digest>,
    pub held: Vec<Held>,
}

/// The digests due at `now` for `rows` (a scan at `now`), given what was
/// `sent`. A key is due when the latest moment of its cadence that has
/// come is later than the last moment sent for it; an owner gets a digest
/// of their due keys unless their last one was less than `min_interval`
/// ago (the keys wait, still due, for the next pass).
pub fn plan(rows: &[KeyRow], max_age: Duration, cadence: &Cadence, sent: &Sent, now: Timestamp) -> Plan {
    let mut due: BTreeMap<(bool, Option<&str>), Vec<(KeyRow, Due)>> = BTreeMap::new();
    for row in rows.iter().filter(|r| exempt(r).is_none()) {
        let Ok(fail_at) = row.created_at.checked_add(max_age.to_signed()) else { continue };
        let Some(latest) = cadence.latest(fail_at, now) else { continue };
        if sent.keys.get(&KeyRef::of(row)).is_some_and(|last| latest.moment <= *last) {
            continue;
        }
        // The unowned sort last.
        due.entry((row.owner.is_none(), row.owner.as_deref())).or_default().push((row.clone(), latest));
    }
    let mut plan = Plan::default();
    for ((_, owner), keys) in due {
        let owner = owner.map(str::to_owned);
        let next = sent.owners.get(&owner).and_then(|last| last.checked_add(cadence.min_interval.to_signed()).ok());
        match next {
            Some(until) if now < until => plan.held.push(Held { owner, keys: keys.len(), until }),
            _ => plan.digests.push(Digest { owner, keys }),
        }
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::RotationRef;
    use jiff::SignedDuration;

    const T0: &str = "2026-11-01T00:00:00Z";

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn days(n: u64) -> Duration {
        Duration::from_days(n)
    }

    fn hours(n: i64) -> SignedDuration {
        SignedDuration::from_hours(n)
    }

    fn cadence() -> Cadence {
        Cadence::new(&[days(1), days(14), days(7)], Some(days(7)), None, days(90)).unwrap()
    }

    /// A key `age` old at T0, active, FAILED or not as the scan would say.
    fn row(user: &str, owner: Option<&str>, age: SignedDuration) -> KeyRow {
        KeyRow {
            account_id: "123456789012".into(),
            user_name: user.into(),
            user_arn: format!("arn:aws:iam::123456789012:user/{user}"),
            access_key_id: None,
            status: KeyStatus::Active,
            created_at: ts(T0) - age,
            age_days: age.as_hours() / 24,
            last_used_at: None,
            last_used_service: None,
            last_used_region: None,
            owner: owner.map(str::to_owned),
            result: Compliance::Warning,
            reason: String::new(),
            exemption: None,
            rotation: None,
            role_candidate: false,
            retire: false,
            role_reason: None,
            consumers: None,
        }
    }

    /// What a pass records after sending `plan`.
    fn record(sent: &mut Sent, plan: &Plan, now: Timestamp) {
        for d in &plan.digests {
            sent.owners.insert(d.owner.clone(), now);
            for (row, due) in &d.keys {
                sent.keys.insert(KeyRef::of(row), due.moment);
            }
        }
    }

    #[test]
    fn the_cadence_before_at_and_after_failing() {
        let c = cadence();
        let fail = ts("2026-12-01T00:00:00Z");
        let at = |s: &str| c.latest(fail, ts(s)).map(|d| (d.reminder, d.moment));
        assert_eq!(at("2026-11-16T23:59:59Z"), None, "before the first reminder");
        assert_eq!(at("2026-11-17T00:00:00Z"), Some((Reminder::Before(days(14)), ts("2026-11-17T00:00:00Z"))));
        assert_eq!(at("2026-11-24T00:00:00Z"), Some((Reminder::Before(days(7)), ts("2026-11-24T00:00:00Z"))));
        assert_eq!(at("2026-11-30T12:00:00Z"), Some((Reminder::Before(days(1)), ts("2026-11-30T00:00:00Z"))));
        assert_eq!(at("2026-12-01T00:00:00Z"), Some((Reminder::Failing, fail)));
        assert_eq!(at("2026-12-07T23:59:59Z"), Some((Reminder::Failing, fail)));
        assert_eq!(at("2026-12-08T00:00:00Z"), Some((Reminder::Overdue(days(7)), ts("2026-12-08T00:00:00Z"))));
        assert_eq!(at("2026-12-21T00:00:00Z"), Some((Reminder::Overdue(days(14)), ts("2026-12-15T00:00:00Z"))));
        let no_overdue = Cadence::new(&[days(7)], None, None, days(90)).unwrap();
        assert_eq!(no_overdue.latest(fail, ts("2027-03-01T00:00:00Z")).map(|d| d.reminder), Some(Reminder::Failing), "without overdue_every, failing is the last");
    }

    #[test]
    fn labels_name_the_reminder() {
        assert_eq!(Reminder::Before(days(7)).label(), "fails in 7 days");
        assert_eq!(Reminder::Before(days(1)).label(), "fails in 1 day");
        assert_eq!(Reminder::Before(Duration::from_secs(36 * 3600)).label(), "fails in 36 hours");
        assert_eq!(Reminder::Failing.label(), "fails now");
        assert_eq!(Reminder::Overdue(days(14)).label(), "overdue by 14 days");
        assert_eq!(Reminder::Before(Duration::from_secs(90 * 60)).label(), "fails in 90m");
    }

    #[test]
    fn bad_settings_are_named() {
        let err = |remind: &[Duration], every, min| Cadence::new(remind, every, min, days(90)).unwrap_err();
        assert!(err(&[], None, None).contains("remind is empty"));
        assert!(err(&[Duration::ZERO], None, None).contains("0s"));
        assert!(err(&[days(7), days(90)], None, None).contains("90d is not less than [policy] max_age 90d"));
        assert!(err(&[days(7)], Some(Duration::ZERO), None).contains("overdue_every"));
        assert!(err(&[days(7)], None, Some(Duration::ZERO)).contains("min_interval"));
        assert_eq!(cadence().min_interval(), days(1), "the default");
    }

    #[test]
    fn a_missed_week_sends_the_latest_moment_once() {
        let c = cadence();
        // Fails 20 days after T0; rekey next runs 19.5 days after T0: the
        // 14d and 7d reminders were missed, the 1d one is the latest.
        let rows = [row("u", Some("a"), hours(24 * 70))];
        let mut sent = Sent::default();
        let now = ts(T0) + hours(24 * 19 + 12);
        let p = plan(&rows, days(90), &c, &sent, now);
        assert_eq!(p.digests.len(), 1);
        assert_eq!(p.digests[0].keys[0].1.reminder, Reminder::Before(days(1)));
        record(&mut sent, &p, now);
        for h in 1..=11 {
            let p = plan(&rows, days(90), &c, &sent, now + hours(h * 24));
            let got: Vec<_> = p.digests.iter().flat_map(|d| d.keys.iter().map(|k| k.1.reminder)).collect();
            let expected: Vec<Reminder> = match h {
                1 => vec![Reminder::Failing],
                8 => vec![Reminder::Overdue(days(7))],
                _ => vec![],
            };
            assert_eq!(got, expected, "day {h} after");
            record(&mut sent, &p, now + hours(h * 24));
        }
    }

    #[test]
    fn never_the_same_reminder_twice() {
        let c = cadence();
        let rows = [row("u", Some("a"), hours(24 * 80))];
        let mut sent = Sent::default();
        let now = ts(T0);
        let p = plan(&rows, days(90), &c, &sent, now);
        assert_eq!(p.digests.len(), 1);
        record(&mut sent, &p, now);
        // Days later, past min_interval, the same (7d) reminder is still the latest.
        let later = plan(&rows, days(90), &c, &sent, now + hours(48));
        assert!(later.digests.is_empty() && later.held.is_empty(), "{later:?}");
    }

    #[test]
    fn one_digest_per_owner_per_min_interval_with_each_key_once() {
        let c = cadence();
        // Two keys of owner a whose reminders come 6 hours apart, one of b.
        let rows = [
            row("u1", Some("a"), hours(24 * 76)),      // 14d reminder at T0
            row("u2", Some("a"), hours(24 * 76 - 6)),  // 14d reminder at T0 + 6h
            row("u3", Some("b"), hours(24 * 83)),      // 7d reminder at T0
            row("u4", None, hours(24 * 89 + 1)),       // 1d reminder an hour ago
        ];
        let mut sent = Sent::default();
        let p = plan(&rows, days(90), &c, &sent, ts(T0));
        let owners: Vec<_> = p.digests.iter().map(|d| (d.owner.as_deref(), d.keys.len())).collect();
        assert_eq!(owners, [(Some("a"), 1), (Some("b"), 1), (None, 1)], "by owner, the unowned last");
        record(&mut sent, &p, ts(T0));
        // u2's reminder comes at +6h: held until a's day is over.
        let p = plan(&rows, days(90), &c, &sent, ts(T0) + hours(6));
        assert!(p.digests.is_empty());
        assert_eq!(p.held, [Held { owner: Some("a".into()), keys: 1, until: ts(T0) + hours(24) }]);
        let p = plan(&rows, days(90), &c, &sent, ts(T0) + hours(24));
        let owners: Vec<_> = p.digests.iter().map(|d| d.owner.as_deref()).collect();
        assert_eq!(owners, [Some("a"), None], "u4 failed an hour ago");
        let users: Vec<_> = p.digests[0].keys.iter().map(|(r, d)| (r.user_name.as_str(), d.reminder)).collect();
        assert_eq!(users, [("u2", Reminder::Before(days(14)))]);
    }

    #[test]
    fn a_digest_lists_every_due_key_of_the_owner_once() {
        let c = cadence();
        let rows = [row("u1", Some("a"), hours(24 * 100)), row("u2", Some("a"), hours(24 * 80)), row("u3", Some("a"), hours(24 * 10))];
        let p = plan(&rows, days(90), &c, &Sent::default(), ts(T0));
        assert_eq!(p.digests.len(), 1);
        let which: Vec<_> = p.digests[0].keys.iter().map(|(r, d)| (r.user_name.as_str(), d.reminder.label())).collect();
        assert_eq!(which, [("u1", "overdue by 7 days".to_owned()), ("u2", "fails in 14 days".to_owned())], "u3 is too young");
    }

    #[test]
    fn inactive_suppressed_and_rotating_keys_get_none() {
        let c = cadence();
        let mut inactive = row("u1", Some("a"), hours(24 * 100));
        inactive.status = KeyStatus::Inactive;
        inactive.result = Compliance::Passed;
        let mut suppressed = row("u2", Some("a"), hours(24 * 100));
        suppressed.result = Compliance::Suppressed;
        let mut rotating = row("u3", Some("a"), hours(24 * 100));
        rotating.rotation = Some(Box::new(RotationRef { id: "r-1".into(), stage: "blocked".into(), retirement: false }));
        assert_eq!([exempt(&inactive), exempt(&suppressed), exempt(&rotating)], [Some(Exempt::Inactive), Some(Exempt::Suppressed), Some(Exempt::Rotating)]);
        let p = plan(&[inactive, suppressed, rotating.clone()], days(90), &c, &Sent::default(), ts(T0));
        assert!(p.digests.is_empty() && p.held.is_empty());
        // Once the rotation is undone, the latest reminder comes, once.
        rotating.rotation = None;
        let p = plan(&[rotating], days(90), &c, &Sent::default(), ts(T0));
        assert_eq!(p.digests[0].keys[0].1.reminder, Reminder::Overdue(days(7)));
    }

    /// Thirty days, a pass every hour, recorded as `rekey run` records:
    /// each owner's messages, counted against the schedule by hand.
    #[test]
    fn thirty_days_of_hourly_passes() {
        let c = cadence();
        let rows = [
            row("a1", Some("a"), hours(24 * 70)), // 14d at day 6, 7d at 13, 1d at 19, fails 20, overdue 27
            row("a2", Some("a"), hours(24 * 70)), // the same moments: the same digests
            row("b1", Some("b"), hours(24 * 85)), // 7d now, 1d at day 4, fails 5, overdue 12, 19, 26
            row("c1", Some("c"), hours(24 * 40)), // 14d at day 36: none within 30 days
            row("d1", None, hours(24 * 200)),     // failed 110 days ago: overdue by 105d at T0, then days 2, 9, 16, 23, 30
        ];
        let mut sent = Sent::default();
        let mut messages: BTreeMap<Option<String>, Vec<i64>> = BTreeMap::new();
        for hour in 0..=30 * 24 {
            let now = ts(T0) + hours(hour);
            let p = plan(&rows, days(90), &c, &sent, now);
            for d in &p.digests {
                messages.entry(d.owner.clone()).or_default().push(hour);
            }
            record(&mut sent, &p, now);
        }
        let days_of = |o: Option<&str>| messages.get(&o.map(str::to_owned)).map(|h| h.iter().map(|h| h / 24).collect::<Vec<_>>()).unwrap_or_default();
        assert_eq!(days_of(Some("a")), [6, 13, 19, 20, 27]);
        assert_eq!(days_of(Some("b")), [0, 4, 5, 12, 19, 26]);
        assert_eq!(days_of(Some("c")), Vec::<i64>::new());
        assert_eq!(days_of(None), [0, 2, 9, 16, 23, 30]);
    }
}
