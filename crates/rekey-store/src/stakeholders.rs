//! What owners decided and were told: exemptions (`rekey suppress`), the
//! outbox of Security Hub finding updates, the notices sent, and the
//! reminders sent on a cadence (`[notify] remind`). Every
//! change is one [`Change`], written in one transaction with its audit lines.

use crate::AuditEntry;
use jiff::Timestamp;
use rekey_core::hub::Workflow;
use rekey_core::model::{AccountId, UserName};
use serde::Serialize;

/// An open exemption: the user's keys count as SUPPRESSED until `until`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExemptionRecord {
    pub account_id: AccountId,
    pub user_name: UserName,
    pub reason: String,
    pub until: Option<Timestamp>,
    pub by: String,
    pub created_at: Timestamp,
}

impl ExemptionRecord {
    /// In force at `at`: not expired (an exemption without `until` lasts
    /// until it is lifted).
    pub fn in_force(&self, at: Timestamp) -> bool {
        self.until.is_none_or(|until| at < until)
    }
}

/// How an exemption ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Ended {
    Unsuppressed,
    Expired,
    /// A newer exemption of the same user took its place.
    Replaced,
}

impl Ended {
    pub fn as_str(self) -> &'static str {
        match self {
            Ended::Unsuppressed => "unsuppressed",
            Ended::Expired => "expired",
            Ended::Replaced => "replaced",
        }
    }
}

impl std::str::FromStr for Ended {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        [Ended::Unsuppressed, Ended::Expired, Ended::Replaced].into_iter().find(|e| e.as_str() == s).ok_or_else(|| format!("unknown end of an exemption: {s:?}"))
    }
}

/// When, by whom and how an exemption ended (kept as the record of it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExemptionEnd {
    pub at: Timestamp,
    pub by: String,
    pub how: Ended,
}

/// Ends the open exemption of one user.
#[derive(Debug, Clone)]
pub struct EndExemption {
    pub account_id: AccountId,
    pub user_name: UserName,
    pub how: Ended,
}

/// A finding update to send: a note, and maybe a workflow status (which
/// applies only where [`Workflow::applies_to`] says so).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NewFindingUpdate {
    pub account_id: AccountId,
    pub user_name: UserName,
    pub workflow: Option<Workflow>,
    pub note: String,
}

/// A finding update not sent yet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FindingUpdate {
    pub seq: i64,
    pub update: NewFindingUpdate,
    pub created_at: Timestamp,
    pub attempts: u32,
    pub last_error: Option<String>,
}

/// A notice sent to an owner.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NoticeRecord {
    pub owner: Option<String>,
    pub channel: String,
    pub digest: String,
    pub keys: usize,
}

/// A reminder digest sent to an owner: from then on the owner's last
/// digest is the change's time, and each key's last reminder moment is the
/// one given (the caller sends only moments later than those recorded).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReminderSent {
    /// `None` for the users nobody owns.
    pub owner: Option<String>,
    pub keys: Vec<KeyReminded>,
}

/// The last reminder moment sent for one key. A key is its account, user
/// and creation time (a credential-report scan has no id for a key that
/// still passes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyReminded {
    pub account_id: AccountId,
    pub user_name: UserName,
    pub key_created_at: Timestamp,
    pub moment: Timestamp,
}

/// Every owner's last digest and every key's last reminder moment,
/// each sorted (owners by their stored key, `-` the unowned first, then
/// `=NAME`; keys by account, user, creation).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RemindersSent {
    pub owners: Vec<OwnerReminded>,
    pub keys: Vec<KeyReminded>,
}

/// When an owner last got a reminder digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OwnerReminded {
    pub owner: Option<String>,
    pub last_sent_at: Timestamp,
}

/// How an owner is a key in the store: `=` and the name, or `-` for the
/// unowned (so that no owner name, even an empty one, means nobody).
pub(crate) fn owner_key(owner: Option<&str>) -> String {
    match owner {
        Some(owner) => format!("={owner}"),
        None => "-".to_owned(),
    }
}

/// One stakeholder change, applied atomically by [`crate::StateStore::record`]: at
/// `at`, by `actor`.
#[derive(Debug, Default)]
pub struct Change {
    /// New exemptions; an open one of the same user is replaced.
    pub open: Vec<ExemptionRecord>,
    pub end: Vec<EndExemption>,
    pub finding_updates: Vec<NewFindingUpdate>,
    pub notices: Vec<NoticeRecord>,
    pub reminders: Vec<ReminderSent>,
    pub audit: Vec<AuditEntry>,
}
