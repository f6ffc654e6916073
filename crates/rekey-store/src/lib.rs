//! The state store: rotations ([`RotationRecord`]), a lease per rotation so
//! two `rekey run` processes never run the same step, the append-only audit
//! log ([`AuditEntry`]) written atomically with the change it records, and
//! what owners decided and were told ([`Change`]). Nothing here ever holds a
//! secret.
//!
//! [`StateStore`] is the contract; [`SqliteStore`] (one file, one host) and
//! [`DynamoStore`] (one table, any number of runners) implement it, and
//! `tests/contract.rs` runs the same tests against both.

use async_trait::async_trait;
use jiff::Timestamp;
use rekey_core::model::{AccessKeyId, AccountId, UserName};
use rekey_core::workflow::Stage;
use serde::Serialize;
use std::sync::Arc;

mod dump;
mod dynamodb;
mod sqlite;
mod stakeholders;

pub use dump::{copy, migrate, Copied, Item};
pub use dynamodb::{DynamoStore, TableDescription};
pub use sqlite::SqliteStore;
pub use stakeholders::{Change, EndExemption, Ended, ExemptionRecord, FindingUpdate, KeyReminded, NewFindingUpdate, NoticeRecord, OwnerReminded, ReminderSent, RemindersSent};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the state store {path}: {source}")]
    Open { path: String, source: rusqlite::Error },
    #[error("state store: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("state store (DynamoDB table {table}): {cause}")]
    Dynamo { table: String, cause: rekey_aws_error::AwsError },
    #[error("state store: bad {what}: {detail}")]
    Corrupt { what: &'static str, detail: String },
    #[error("the state store {path} was written by a newer rekey (schema {found}, this rekey knows {known})")]
    TooNew { path: String, found: usize, known: usize },
    #[error("key {old_key_id} of {user_name} is already being rotated by {id}")]
    AlreadyRotating { id: String, user_name: UserName, old_key_id: AccessKeyId },
    #[error("no rotation {0}")]
    NoSuchRotation(String),
    #[error("rotation {0} is being worked on by another rekey process")]
    LeaseLost(String),
    #[error("{0}")]
    Refused(String),
    #[error("the state store {from} was migrated to {} at {}: it is kept only to be read; point [state] in rekey.toml (or --state) at {}", .migrated.to, .migrated.at, .migrated.to)]
    Migrated { from: String, migrated: Migrated },
    /// The receiver of a stream stopped it (its output failed, say).
    #[error("{0}")]
    Stopped(#[source] Box<dyn std::error::Error + Send + Sync>),
}

pub type Result<T> = std::result::Result<T, StoreError>;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RotationRecord {
    pub id: String,
    pub account_id: AccountId,
    pub user_name: UserName,
    pub old_key_id: AccessKeyId,
    pub new_key_id: Option<AccessKeyId>,
    pub stage: Stage,
    /// The stage a blocked rotation resumes into, or an undo began in.
    pub came_from: Option<Stage>,
    pub blocked_reason: Option<String>,
    /// What to do (sinks, verifiers, timings): the engine's, as JSON.
    pub plan: serde_json::Value,
    /// How far it got (times, restore references): the engine's, as JSON.
    pub progress: serde_json::Value,
    pub started_at: Timestamp,
    pub updated_at: Timestamp,
    /// When the engine should look again; `None` means now.
    pub next_check_at: Option<Timestamp>,
}

/// One line of the audit log.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditEntry {
    pub at: Timestamp,
    pub actor: String,
    pub rotation_id: Option<String>,
    pub event: String,
    pub from_stage: Option<Stage>,
    pub to_stage: Option<Stage>,
    pub aws_request_id: Option<String>,
    pub detail: serde_json::Value,
}

impl AuditEntry {
    /// A line about no rotation: an exemption, a notice, a Security Hub update.
    pub fn about_owners(at: Timestamp, actor: &str, event: &str, detail: serde_json::Value) -> AuditEntry {
        AuditEntry { at, actor: actor.to_owned(), rotation_id: None, event: event.to_owned(), from_stage: None, to_stage: None, aws_request_id: None, detail }
    }
}

/// A rotation with a step due, and the account it acts in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Due {
    pub id: String,
    pub account_id: AccountId,
}

/// See [`StateStore::outlook`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outlook {
    pub waiting: usize,
    pub next_due: Option<Timestamp>,
    pub blocked: usize,
}

/// Where and when `rekey state migrate` moved a store's state. The store
/// is then kept to be read: it refuses to start anything (see
/// [`StateStore::mark_migrated`]), so that a runner still pointed at it
/// cannot act on rotations that now live elsewhere.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Migrated {
    /// The store it went to, as `--state` takes it (`sqlite:PATH`, `dynamodb:TABLE`).
    pub to: String,
    pub at: Timestamp,
    pub by: String,
}

/// Which rotations [`StateStore::list`] streams: unfinished ones first,
/// then (with `all`) finished ones; each oldest first; started at or after
/// `since`; at most `limit`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListQuery {
    pub all: bool,
    pub since: Option<Timestamp>,
    pub limit: Option<usize>,
}

/// Which audit lines [`StateStore::history`] streams, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HistoryQuery {
    pub rotation_id: Option<String>,
    pub since: Option<Timestamp>,
    /// At most this many: the newest `limit` of those selected.
    pub limit: Option<usize>,
}

/// Receives each streamed item; an error stops the stream.
pub type Each<'a, T> = &'a mut (dyn FnMut(T) -> Result<()> + Send);

/// Where rotations, leases and the audit log live. Every method is one
/// atomic step: a save, its audit lines and its finding notes commit
/// together or not at all.
#[async_trait]
pub trait StateStore: Send + Sync {
    /// The file or table, for messages.
    fn location(&self) -> String;

    /// Records a new rotation, its first audit line and its finding note.
    /// Fails if the key already has an unfinished rotation.
    async fn insert(&self, rotation: &RotationRecord, audit: &AuditEntry, updates: &[NewFindingUpdate]) -> Result<()>;

    async fn get(&self, id: &str) -> Result<RotationRecord>;

    /// Streams rotations (read a page at a time, never all at once).
    async fn list(&self, query: &ListQuery, each: Each<'_, RotationRecord>) -> Result<()>;

    /// The unfinished rotation whose old key is `old_key_id`, if any.
    async fn open_rotation(&self, account_id: &AccountId, old_key_id: &AccessKeyId) -> Result<Option<String>>;

    /// Rotations with a step due at `now`, most overdue first. Reads an
    /// index only: no plan, no progress, and nothing that is not due.
    async fn due(&self, now: Timestamp) -> Result<Vec<Due>>;

    /// What is left to do, from the indexes only: rotations with a step
    /// ahead, when the first is due, and how many wait for a person.
    async fn outlook(&self) -> Result<Outlook>;

    /// Unfinished rotations by stage, and when the oldest of them started.
    async fn open_by_stage(&self) -> Result<(Vec<(Stage, usize)>, Option<Timestamp>)>;

    /// Takes the rotation's lease until `until` if nobody else holds an
    /// unexpired one. Only the holder may save the rotation.
    async fn try_lease(&self, id: &str, owner: &str, now: Timestamp, until: Timestamp) -> Result<bool>;

    /// Extends a lease `owner` still holds and that has not expired.
    async fn renew(&self, id: &str, owner: &str, now: Timestamp, until: Timestamp) -> Result<bool>;

    /// Who holds the rotation's lease, if anyone.
    async fn lease_holder(&self, id: &str) -> Result<Option<String>>;

    /// Takes the lease from `stale_owner` (a process known to be dead),
    /// only if it still holds it: of two takers, one wins.
    async fn take_over(&self, id: &str, stale_owner: &str, owner: &str, until: Timestamp) -> Result<bool>;

    async fn release(&self, id: &str, owner: &str) -> Result<()>;

    /// Unexpired leases at `now`, as (rotation, holder).
    async fn leases(&self, now: Timestamp) -> Result<Vec<(String, String)>>;

    /// Writes the rotation's new state, its audit lines and its finding
    /// notes at once, provided `lease_owner` still holds an unexpired lease
    /// at `now` (an expired one may have been taken by another process)
    /// and the stored stage is still `was`, the one the caller read.
    async fn save(&self, rotation: &RotationRecord, was: Stage, lease_owner: &str, now: Timestamp, audit: &[AuditEntry], updates: &[NewFindingUpdate]) -> Result<()>;

    /// Streams the audit log, oldest first.
    async fn history(&self, query: &HistoryQuery, each: Each<'_, AuditEntry>) -> Result<()>;

    /// Applies a stakeholder change with its audit lines (see [`Change`]).
    async fn record(&self, change: &Change, at: Timestamp, actor: &str) -> Result<()>;

    /// Exemptions not ended (in force, or expired and not yet reopened by
    /// `rekey run`), by account and user.
    async fn open_exemptions(&self) -> Result<Vec<ExemptionRecord>>;

    /// Open exemptions whose `until` has passed at `now`.
    async fn expired_exemptions(&self, now: Timestamp) -> Result<Vec<ExemptionRecord>> {
        let mut expired: Vec<_> = self.open_exemptions().await?.into_iter().filter(|e| !e.in_force(now)).collect();
        expired.sort_by_key(|e| e.until);
        Ok(expired)
    }

    /// Finding updates not sent yet, oldest first.
    async fn pending_finding_updates(&self) -> Result<Vec<FindingUpdate>>;

    async fn finding_updates_sent(&self, seqs: &[i64], at: Timestamp) -> Result<()>;

    /// Counts a failed attempt at sending updates, with the audit lines
    /// that record it: they stay pending for the next run.
    async fn finding_updates_failed(&self, seqs: &[i64], error: &str, audit: &[AuditEntry]) -> Result<()>;

    /// When a notice with this digest was last sent, if ever.
    async fn last_notice(&self, digest: &str) -> Result<Option<Timestamp>>;

    /// Every owner's last reminder digest and every key's last reminder
    /// moment (see [`ReminderSent`]), sorted.
    async fn reminders_sent(&self) -> Result<RemindersSent>;

    /// Claims an owner's reminder digest before it is sent, so that two
    /// runners passing at once do not both send it: the owner's last digest
    /// becomes `to` only if it is still `from`, the time the caller read
    /// (`None`: never). False: another process changed it first. A claim
    /// no channel took is given back the same way, `to` the `from` it
    /// replaced. Refused on a migrated store, as `record` is.
    async fn swap_last_reminder(&self, owner: Option<&str>, from: Option<Timestamp>, to: Option<Timestamp>) -> Result<bool>;

    /// Everything, in a fixed order, for `rekey state migrate`.
    async fn export(&self, each: Each<'_, Item>) -> Result<()>;

    /// Writes exported items as they were (sequence numbers included) into
    /// an empty store.
    async fn import(&self, items: &[Item]) -> Result<()>;

    /// True when the store holds nothing yet (nor a migration mark).
    async fn is_empty(&self) -> Result<bool>;

    /// Where the store's state was migrated to, if it was.
    async fn migrated(&self) -> Result<Option<Migrated>>;

    /// Marks the store as migrated, with its audit line, once. From then
    /// on `insert`, `try_lease`, `take_over` and `record` refuse with
    /// [`StoreError::Migrated`], atomically with the mark: nothing new
    /// starts. Reads, and the saves, renewals and release of a lease taken
    /// before, still work.
    async fn mark_migrated(&self, migrated: &Migrated, audit: &AuditEntry) -> Result<()>;
}

/// [`StoreError::Migrated`] if the store was migrated elsewhere.
pub async fn refuse_if_migrated(store: &dyn StateStore) -> Result<()> {
    match store.migrated().await? {
        Some(migrated) => Err(StoreError::Migrated { from: store.location(), migrated }),
        None => Ok(()),
    }
}

pub type SharedStore = Arc<dyn StateStore>;

/// Every rotation `query` selects, in memory: for the few (the unfinished
/// ones); `status` streams instead.
pub async fn rotations(store: &dyn StateStore, query: &ListQuery) -> Result<Vec<RotationRecord>> {
    let mut all = Vec::new();
    store
        .list(query, &mut |r| {
            all.push(r);
            Ok(())
        })
        .await?;
    Ok(all)
}

/// Every audit line `query` selects, in memory (`history` streams instead).
pub async fn events(store: &dyn StateStore, query: &HistoryQuery) -> Result<Vec<AuditEntry>> {
    let mut all = Vec::new();
    store
        .history(query, &mut |e| {
            all.push(e);
            Ok(())
        })
        .await?;
    Ok(all)
}

/// Where `[state]` says the state lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    Sqlite(std::path::PathBuf),
    Dynamo { table: String },
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::Sqlite(path) => write!(f, "sqlite:{}", path.display()),
            Location::Dynamo { table } => write!(f, "dynamodb:{table}"),
        }
    }
}

impl std::str::FromStr for Location {
    type Err = String;

    /// `sqlite:PATH` or `dynamodb:TABLE`, as `rekey state migrate` takes them.
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.split_once(':') {
            Some(("sqlite", path)) if !path.is_empty() => Ok(Location::Sqlite(path.into())),
            Some(("dynamodb", table)) if dynamodb::valid_table_name(table) => Ok(Location::Dynamo { table: table.to_owned() }),
            Some(("dynamodb", table)) => Err(format!("{table:?} is not a DynamoDB table name (3-255 of A-Z a-z 0-9 _ . -)")),
            _ => Err(format!("{s:?}: expected sqlite:PATH or dynamodb:TABLE")),
        }
    }
}

pub(crate) fn bad(what: &'static str, detail: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt { what, detail: detail.to_string() }
}

pub(crate) fn timestamp(secs: i64) -> Result<Timestamp> {
    Timestamp::from_second(secs).map_err(|e| bad("time", e))
}

pub(crate) fn stage(name: &str) -> Result<Stage> {
    name.parse().map_err(|e| bad("stage", e))
}

pub(crate) fn json(what: &'static str, text: &str) -> Result<serde_json::Value> {
    serde_json::from_str(text).map_err(|e| bad(what, e))
}
