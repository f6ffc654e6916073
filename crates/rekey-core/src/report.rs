//! The scan report: one row per key with its evaluation, and a summary.
//! Its field names and `null`s are the JSON contract of `rekey scan`.

use crate::evaluate::{evaluate, existed_at, Compliance, Policy};
use crate::model::{KeyStatus, User};
use crate::Duration;
use jiff::Timestamp;
use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct ScanReport {
    pub generated_at: Timestamp,
    pub as_of: Timestamp,
    pub max_age_days: u64,
    /// The limit as written (`36h`), which whole days cannot always say.
    pub max_age: Duration,
    pub source: &'static str,
    /// When the credential report was taken (up to 4 hours before the scan);
    /// `None` when the keys came from the API.
    pub report_generated_at: Option<Timestamp>,
    pub summary: Summary,
    /// Per account, when several were scanned (`--org`, `--accounts`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub accounts: Vec<AccountSummary>,
    pub errors: Vec<Note>,
    pub warnings: Vec<Note>,
    pub other_findings: Vec<OtherFinding>,
    pub keys: Vec<KeyRow>,
}

/// Key counts (`failed`, ...) and user counts (`users_failed`, ...: a user
/// with any FAILED key, as Security Hub counts IAM.3).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub users: usize,
    pub keys: usize,
    pub failed: usize,
    pub warning: usize,
    pub suppressed: usize,
    pub passed: usize,
    pub users_failed: usize,
    pub users_warning: usize,
}

/// One account of a scan of several.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AccountSummary {
    pub account_id: String,
    /// The organization's name for it, when listed by `--org`.
    pub name: Option<String>,
    /// `false` when it could not be scanned (see `errors`).
    pub scanned: bool,
    pub source: Option<&'static str>,
    pub report_generated_at: Option<Timestamp>,
    pub summary: Summary,
}

/// An error (something the scan could not read; the rest of the report is
/// still valid) or a warning (the report is complete, but read this).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Note {
    pub account_id: Option<String>,
    pub user_name: Option<String>,
    /// The AWS call that failed (`sts:AssumeRole`), for errors.
    pub operation: Option<String>,
    /// AWS's error code (`AccessDenied`), for errors.
    pub code: Option<String>,
    pub message: String,
}

/// Not IAM.3, but no one looking at keys should miss it.
#[derive(Debug, Clone, Serialize)]
pub struct OtherFinding {
    pub control: &'static str,
    pub account_id: String,
    pub user_name: String,
    pub reason: String,
}

impl OtherFinding {
    /// Security Hub IAM.4: the root user should have no access key.
    pub fn root_access_key(account_id: &str) -> OtherFinding {
        OtherFinding {
            control: "IAM.4",
            account_id: account_id.to_owned(),
            user_name: "<root_account>".to_owned(),
            reason: "the root user has an active access key".to_owned(),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct KeyRow {
    pub account_id: String,
    pub user_name: String,
    pub user_arn: String,
    pub access_key_id: Option<String>,
    pub status: KeyStatus,
    pub created_at: Timestamp,
    pub age_days: i64,
    pub last_used_at: Option<Timestamp>,
    pub last_used_service: Option<String>,
    pub last_used_region: Option<String>,
    pub owner: Option<String>,
    pub result: Compliance,
    pub reason: String,
    /// The user's exemption in force at `as_of`: recorded (`rekey
    /// suppress`) or by an `[[exempt]]` rule. Boxed, as `consumers`.
    pub exemption: Option<Box<Exemption>>,
    /// The rotation under way for this key; rotations arrive with `rekey rotate`.
    pub rotation: Option<Box<RotationRef>>,
    pub role_candidate: bool,
    /// Active and unused for `[policy] unused_after`: retire it
    /// (`rekey retire`), do not rotate it.
    pub retire: bool,
    /// Why a role could replace the key, when its consumers say so.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role_reason: Option<String>,
    /// Who uses the key, from CloudTrail (`scan --consumers`, FAILED and
    /// WARNING keys only). Boxed: most rows have none, and an organization
    /// scan holds every row at once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub consumers: Option<Box<ConsumerCount>>,
}

/// A key's consumers in short: how many, and the one seen last; the whole
/// list stays out of scan output (owners' notices show it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConsumerCount {
    pub count: usize,
    pub latest: Option<crate::consumers::Consumer>,
    #[serde(skip)]
    pub all: Vec<crate::consumers::Consumer>,
}

impl ConsumerCount {
    /// `consumers`, newest first.
    pub fn of(consumers: Vec<crate::consumers::Consumer>) -> ConsumerCount {
        ConsumerCount { count: consumers.len(), latest: consumers.first().cloned(), all: consumers }
    }
}

/// Why a user's FAILED and WARNING keys count as SUPPRESSED. JSON:
/// `{"source": "recorded", "by": ..., "reason", "until"}` for `rekey
/// suppress`, `{"source": "rule", "rule": N, "reason", "until"}` for the
/// N-th `[[exempt]]` of rekey.toml.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Exemption {
    #[serde(flatten)]
    pub source: ExemptionSource,
    pub reason: String,
    pub until: Option<Timestamp>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "source", rename_all = "lowercase")]
pub enum ExemptionSource {
    /// `rekey suppress`, by this person.
    Recorded { by: String },
    /// The `[[exempt]]` entry with this number (from 1) in rekey.toml.
    Rule { rule: usize },
}

impl Exemption {
    /// The exemption rule `n` (from 1) gives.
    pub fn by_rule(n: usize, rule: &crate::exempt::ExemptRule) -> Exemption {
        Exemption { source: ExemptionSource::Rule { rule: n }, reason: rule.reason.clone(), until: rule.until }
    }

    /// Who or what exempts: the person, or `[[exempt]] #N` of rekey.toml.
    pub fn by(&self) -> String {
        match &self.source {
            ExemptionSource::Recorded { by } => by.clone(),
            ExemptionSource::Rule { rule } => rule_name(*rule),
        }
    }

    /// The rule's number, for an exemption by rule.
    pub fn rule(&self) -> Option<usize> {
        match self.source {
            ExemptionSource::Rule { rule } => Some(rule),
            ExemptionSource::Recorded { .. } => None,
        }
    }
}

/// How people and messages name rule `n`: `[[exempt]] #2 of rekey.toml`.
pub fn rule_name(n: usize) -> String {
    format!("[[exempt]] #{n} of rekey.toml")
}

impl KeyRow {
    /// The user's exemption, in force at the scan's `as_of`: a FAILED or
    /// WARNING key counts as SUPPRESSED, and says what it would be.
    pub fn exempt(&mut self, exemption: Exemption) {
        if matches!(self.result, Compliance::Failed | Compliance::Warning) {
            let until = exemption.until.map(|t| format!(" until {t}")).unwrap_or_default();
            self.reason = format!("exempt{until} by {}: {} ({} otherwise: {})", exemption.by(), exemption.reason, self.result.as_str(), self.reason);
            self.result = Compliance::Suppressed;
        }
        self.exemption = Some(Box::new(exemption));
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct RotationRef {
    pub id: String,
    pub stage: String,
    /// A `rekey retire`: the key goes with no new key made.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub retirement: bool,
}

/// The worst result among a user's keys at `as_of`.
pub fn user_result(user: &User, policy: &Policy, as_of: Timestamp) -> Compliance {
    Compliance::worst(user.keys.iter().filter(|k| existed_at(k, as_of)).map(|k| evaluate(k, policy, as_of).result))
}

/// Evaluates every key of `users` that existed at `as_of`, sorted by
/// account, user and creation time.
pub fn key_rows(users: &[User], policy: &Policy, as_of: Timestamp, owner_tags: &[String]) -> Vec<KeyRow> {
    let mut rows: Vec<KeyRow> = users
        .iter()
        .flat_map(|user| {
            let owner = user.owner(owner_tags).map(str::to_owned);
            user.keys.iter().filter(move |key| existed_at(key, as_of)).map(move |key| {
                let eval = evaluate(key, policy, as_of);
                KeyRow {
                    account_id: user.account_id.to_string(),
                    user_name: user.name.to_string(),
                    user_arn: user.arn.clone(),
                    access_key_id: key.id.as_ref().map(ToString::to_string),
                    status: key.status,
                    created_at: key.created_at,
                    age_days: eval.age_days,
                    last_used_at: key.last_used.at,
                    last_used_service: key.last_used.service.clone(),
                    last_used_region: key.last_used.region.clone(),
                    owner: owner.clone(),
                    result: eval.result,
                    reason: eval.reason,
                    exemption: None,
                    rotation: None,
                    // A key nothing has ever used is not feeding a workload:
                    // whatever needs access can start on a role instead.
                    role_candidate: key.last_used.at.is_none(),
                    retire: crate::evaluate::unused(key, policy, as_of),
                    role_reason: None,
                    consumers: None,
                }
            })
        })
        .collect();
    rows.sort_by(|a, b| (&a.account_id, &a.user_name, a.created_at).cmp(&(&b.account_id, &b.user_name, b.created_at)));
    // An organization scan holds every account's rows at once.
    rows.shrink_to_fit();
    rows
}

impl Summary {
    pub fn of(users: usize, rows: &[KeyRow]) -> Summary {
        let count = |c: Compliance| rows.iter().filter(|r| r.result == c).count();
        let mut worst = std::collections::BTreeMap::new();
        for r in rows {
            let user = worst.entry((&r.account_id, &r.user_name)).or_insert(r.result);
            *user = (*user).min(r.result);
        }
        let users_with = |c: Compliance| worst.values().filter(|w| **w == c).count();
        Summary {
            users_failed: users_with(Compliance::Failed),
            users_warning: users_with(Compliance::Warning),
            users,
            keys: rows.len(),
            failed: count(Compliance::Failed),
            warning: count(Compliance::Warning),
            suppressed: count(Compliance::Suppressed),
            passed: count(Compliance::Passed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{AccessKey, AccountId, LastUsed, UserName};

    fn user(name: &str, ages_days: &[(i64, KeyStatus)], tags: Option<Vec<(String, String)>>) -> User {
        let as_of: Timestamp = "2026-11-28T12:00:00Z".parse().unwrap();
        User {
            account_id: AccountId::new("123456789012"),
            name: UserName::new(name),
            arn: format!("arn:aws:iam::123456789012:user/{name}"),
            tags,
            groups: None,
            keys: ages_days
                .iter()
                .map(|(d, s)| AccessKey {
                    id: None,
                    status: *s,
                    created_at: as_of - jiff::SignedDuration::from_hours(24 * d),
                    last_used: LastUsed::default(),
                })
                .collect(),
        }
    }

    #[test]
    fn rows_sorted_and_summarised() {
        let as_of = "2026-11-28T12:00:00Z".parse().unwrap();
        let users = vec![
            user("b", &[(200, KeyStatus::Active), (10, KeyStatus::Active)], None),
            user("a", &[(80, KeyStatus::Active)], Some(vec![("Owner".into(), "team-a".into())])),
            user("c", &[(300, KeyStatus::Inactive)], None),
        ];
        let rows = key_rows(&users, &Policy::default(), as_of, &["Owner".to_string()]);
        let names: Vec<_> = rows.iter().map(|r| (r.user_name.as_str(), r.age_days)).collect();
        assert_eq!(names, [("a", 80), ("b", 200), ("b", 10), ("c", 300)]);
        assert_eq!(rows[0].owner.as_deref(), Some("team-a"));
        assert_eq!(rows[1].owner, None);
        let summary = Summary::of(3, &rows);
        assert_eq!(
            summary,
            Summary { users: 3, keys: 4, failed: 1, warning: 1, suppressed: 0, passed: 2, users_failed: 1, users_warning: 1 }
        );
        assert_eq!(user_result(&users[0], &Policy::default(), as_of), Compliance::Failed);
        assert_eq!(user_result(&users[2], &Policy::default(), as_of), Compliance::Passed);
    }

    #[test]
    fn users_are_counted_by_their_worst_key() {
        let as_of = "2026-11-28T12:00:00Z".parse().unwrap();
        let users = vec![
            user("two-failed", &[(200, KeyStatus::Active), (100, KeyStatus::Active)], None),
            user("failed-and-warning", &[(200, KeyStatus::Active), (80, KeyStatus::Active)], None),
            user("warning", &[(80, KeyStatus::Active), (80, KeyStatus::Active)], None),
        ];
        let s = Summary::of(3, &key_rows(&users, &Policy::default(), as_of, &[]));
        assert_eq!((s.failed, s.warning, s.users_failed, s.users_warning), (3, 3, 2, 1));
    }

    #[test]
    fn keys_created_after_as_of_are_not_listed() {
        // Regression: a key created after --as-of was PASSED with a negative age.
        let as_of = "2026-11-28T12:00:00Z".parse().unwrap();
        let users = vec![user("u", &[(200, KeyStatus::Active), (-3, KeyStatus::Active)], None)];
        let rows = key_rows(&users, &Policy::default(), as_of, &[]);
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].age_days, 200);
        let only_future = [user("v", &[(-3, KeyStatus::Active)], None)];
        assert_eq!(user_result(&only_future[0], &Policy::default(), as_of), Compliance::Passed);
    }

    #[test]
    fn an_exemption_suppresses_failed_and_warning_keys_only() {
        let as_of = "2026-11-28T12:00:00Z".parse().unwrap();
        let users = vec![user("u", &[(200, KeyStatus::Active), (80, KeyStatus::Active), (10, KeyStatus::Active)], None)];
        let mut rows = key_rows(&users, &Policy::default(), as_of, &[]);
        let exemption = Exemption { source: ExemptionSource::Recorded { by: "alice".into() }, reason: "firmware".into(), until: Some("2027-01-01T00:00:00Z".parse().unwrap()) };
        for row in &mut rows {
            row.exempt(exemption.clone());
        }
        let results: Vec<_> = rows.iter().map(|r| r.result).collect();
        assert_eq!(results, [Compliance::Suppressed, Compliance::Suppressed, Compliance::Passed]);
        assert_eq!(rows[0].reason, "exempt until 2027-01-01T00:00:00Z by alice: firmware (FAILED otherwise: active key is 200 days old (limit 90))");
        assert!(rows.iter().all(|r| r.exemption.as_deref() == Some(&exemption)));
        let s = Summary::of(1, &rows);
        assert_eq!((s.failed, s.warning, s.suppressed, s.passed, s.users_failed), (0, 0, 2, 1, 0));
    }
}
