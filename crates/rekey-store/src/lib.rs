//! The state store: one SQLite file (WAL, foreign keys, embedded versioned
//! migrations) holding rotations ([`RotationRecord`]), a lease per rotation
//! so two `rekey run` processes never run the same step, and the append-only
//! audit log ([`AuditEntry`]), written in the same transaction as the change
//! it records. Nothing here ever holds a secret.

use jiff::Timestamp;
use rekey_core::workflow::Stage;
use rusqlite::{params, Connection, OptionalExtension, Row};
use std::path::Path;
use std::time::Duration;

mod stakeholders;
pub use stakeholders::{Change, EndExemption, Ended, ExemptionRecord, FindingUpdate, NewFindingUpdate, NoticeRecord};

/// Migrations in order; `PRAGMA user_version` records how many ran.
const MIGRATIONS: &[fn() -> String] = &[
    || include_str!("migrations/001_rotations.sql").to_owned(),
    came_from_and_undo_stages,
    || include_str!("migrations/003_stakeholders.sql").to_owned(),
];

/// 002: the stage a blocked or undoing rotation came from is a column, and a
/// decided undo is a stage of its own. Lists of stages in the indexes come
/// from `Stage`, so they cannot drift from the state machine.
fn came_from_and_undo_stages() -> String {
    let terminal = Stage::sql_list(Stage::is_terminal);
    let working = Stage::sql_list(Stage::is_working);
    format!(
        "ALTER TABLE rotations ADD COLUMN came_from TEXT;
         UPDATE rotations SET came_from = json_extract(progress, '$.blocked_from') WHERE stage = 'blocked';
         UPDATE rotations
            SET came_from = stage,
                stage = CASE json_extract(progress, '$.undoing.ends_as') WHEN 'aborted' THEN 'aborting' ELSE 'rolling_back' END
          WHERE json_extract(progress, '$.undoing') IS NOT NULL AND stage NOT IN ({terminal});
         DROP INDEX rotations_one_open_per_key;
         CREATE UNIQUE INDEX rotations_one_open_per_key ON rotations (account_id, old_key_id) WHERE stage NOT IN ({terminal});
         DROP INDEX rotations_due;
         CREATE INDEX rotations_due ON rotations (next_check_at) WHERE stage IN ({working});"
    )
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the state store {path}: {source}")]
    Open { path: String, source: rusqlite::Error },
    #[error("state store: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("state store: bad JSON in {what}: {source}")]
    Json { what: &'static str, source: serde_json::Error },
    #[error("the state store {path} was written by a newer rekey (schema {found}, this rekey knows {known})")]
    TooNew { path: String, found: usize, known: usize },
    #[error("key {old_key_id} of {user_name} is already being rotated by {id}")]
    AlreadyRotating { id: String, user_name: String, old_key_id: String },
    #[error("no rotation {0}")]
    NoSuchRotation(String),
    #[error("rotation {0} is being worked on by another rekey process")]
    LeaseLost(String),
}

pub type Result<T> = std::result::Result<T, StoreError>;

#[derive(Debug, Clone, PartialEq)]
pub struct RotationRecord {
    pub id: String,
    pub account_id: String,
    pub user_name: String,
    pub old_key_id: String,
    pub new_key_id: Option<String>,
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
#[derive(Debug, Clone, PartialEq)]
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

/// See [`Store::outlook`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outlook {
    pub waiting: usize,
    pub next_due: Option<Timestamp>,
    pub blocked: usize,
}

pub struct Store {
    conn: Connection,
    path: std::path::PathBuf,
}

impl Store {
    /// Opens (creating if needed) the store at `path` and brings its schema
    /// up to date.
    pub fn open(path: &Path) -> Result<Store> {
        let open_err = |source| StoreError::Open { path: path.display().to_string(), source };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| open_err(rusqlite::Error::ToSqlConversionFailure(Box::new(e))))?;
        }
        let conn = Connection::open(path).map_err(open_err)?;
        conn.busy_timeout(Duration::from_secs(10)).map_err(open_err)?;
        conn.pragma_update(None, "journal_mode", "WAL").map_err(open_err)?;
        conn.pragma_update(None, "foreign_keys", "ON").map_err(open_err)?;
        let mut store = Store { conn, path: path.to_owned() };
        store.migrate(path)?;
        Ok(store)
    }

    /// A second connection to the same file (for a task that renews leases
    /// while the first one is busy).
    pub fn reopen(&self) -> Result<Store> {
        Store::open(&self.path)
    }

    fn migrate(&mut self, path: &Path) -> Result<()> {
        let tx = self.conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let version: i64 = tx.pragma_query_value(None, "user_version", |r| r.get(0))?;
        let version = version as usize;
        if version > MIGRATIONS.len() {
            return Err(StoreError::TooNew { path: path.display().to_string(), found: version, known: MIGRATIONS.len() });
        }
        for sql in &MIGRATIONS[version..] {
            tx.execute_batch(&sql())?;
        }
        tx.pragma_update(None, "user_version", MIGRATIONS.len() as i64)?;
        tx.commit()?;
        Ok(())
    }

    /// Records a new rotation, its first audit line and its finding note,
    /// atomically. Fails if the key already has an unfinished rotation.
    pub fn insert(&mut self, rotation: &RotationRecord, audit: &AuditEntry, updates: &[NewFindingUpdate]) -> Result<()> {
        let tx = self.conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let open: Option<String> = tx
            .query_row(
                &format!(
                    "SELECT id FROM rotations WHERE account_id = ?1 AND old_key_id = ?2 AND stage NOT IN ({})",
                    Stage::sql_list(Stage::is_terminal)
                ),
                params![rotation.account_id, rotation.old_key_id],
                |r| r.get(0),
            )
            .optional()?;
        if let Some(id) = open {
            return Err(StoreError::AlreadyRotating {
                id,
                user_name: rotation.user_name.clone(),
                old_key_id: rotation.old_key_id.clone(),
            });
        }
        tx.execute(
            "INSERT INTO rotations (id, account_id, user_name, old_key_id, new_key_id, stage, blocked_reason,
                plan, progress, started_at, updated_at, next_check_at, came_from)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
            params![
                rotation.id,
                rotation.account_id,
                rotation.user_name,
                rotation.old_key_id,
                rotation.new_key_id,
                rotation.stage.as_str(),
                rotation.blocked_reason,
                rotation.plan.to_string(),
                rotation.progress.to_string(),
                rotation.started_at.as_second(),
                rotation.updated_at.as_second(),
                rotation.next_check_at.map(|t| t.as_second()),
                rotation.came_from.map(Stage::as_str),
            ],
        )?;
        append(&tx, audit)?;
        stakeholders::enqueue(&tx, updates, rotation.started_at)?;
        tx.commit()?;
        Ok(())
    }

    pub fn get(&self, id: &str) -> Result<RotationRecord> {
        self.conn
            .query_row(&format!("{SELECT} WHERE id = ?1"), [id], from_row)
            .optional()?
            .ok_or_else(|| StoreError::NoSuchRotation(id.to_owned()))?
    }

    /// Every rotation, oldest first.
    pub fn list(&self) -> Result<Vec<RotationRecord>> {
        let mut stmt = self.conn.prepare(&format!("{SELECT} ORDER BY started_at, rowid"))?;
        let rows = stmt.query_map([], from_row)?;
        rows.map(|r| r?).collect()
    }

    /// Ids of rotations with a step due at `now`, most overdue first.
    /// Reads only the index: no AWS call is needed to know nothing is due.
    pub fn due(&self, now: Timestamp) -> Result<Vec<String>> {
        let mut stmt = self.conn.prepare(&format!(
            "SELECT id FROM rotations
             WHERE stage IN ({}) AND (next_check_at IS NULL OR next_check_at <= ?1)
             ORDER BY next_check_at, started_at",
            Stage::sql_list(Stage::is_working)
        ))?;
        let ids = stmt.query_map([now.as_second()], |r| r.get(0))?;
        Ok(ids.collect::<rusqlite::Result<_>>()?)
    }

    /// What is left to do, from the indexes only (no plan or progress is
    /// read): rotations with a step ahead, when the first is due, and how
    /// many wait for a person.
    pub fn outlook(&self) -> Result<Outlook> {
        let (waiting, next_due): (i64, Option<i64>) = self.conn.query_row(
            &format!("SELECT COUNT(*), MIN(next_check_at) FROM rotations WHERE stage IN ({})", Stage::sql_list(Stage::is_working)),
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        let blocked: i64 = self.conn.query_row("SELECT COUNT(*) FROM rotations WHERE stage = ?1", [Stage::Blocked.as_str()], |r| r.get(0))?;
        Ok(Outlook { waiting: waiting as usize, next_due: next_due.map(timestamp).transpose()?, blocked: blocked as usize })
    }

    /// Takes the rotation's lease until `until` if nobody else holds an
    /// unexpired one. Only the holder may save the rotation.
    pub fn try_lease(&self, id: &str, owner: &str, now: Timestamp, until: Timestamp) -> Result<bool> {
        let changed = self.conn.execute(
            "UPDATE rotations SET lease_owner = ?2, lease_until = ?4
             WHERE id = ?1 AND (lease_owner IS NULL OR lease_owner = ?2 OR lease_until < ?3)",
            params![id, owner, now.as_second(), until.as_second()],
        )?;
        Ok(changed == 1)
    }

    /// Extends a lease `owner` still holds and that has not expired.
    pub fn renew(&self, id: &str, owner: &str, now: Timestamp, until: Timestamp) -> Result<bool> {
        let changed = self.conn.execute(
            "UPDATE rotations SET lease_until = ?4 WHERE id = ?1 AND lease_owner = ?2 AND lease_until >= ?3",
            params![id, owner, now.as_second(), until.as_second()],
        )?;
        Ok(changed == 1)
    }

    /// Who holds the rotation's lease, if anyone.
    pub fn lease_holder(&self, id: &str) -> Result<Option<String>> {
        Ok(self.conn.query_row("SELECT lease_owner FROM rotations WHERE id = ?1", [id], |r| r.get(0)).optional()?.flatten())
    }

    /// Takes the lease from `stale_owner` (a process known to be dead),
    /// only if it still holds it: of two takers, one wins.
    pub fn take_over(&self, id: &str, stale_owner: &str, owner: &str, until: Timestamp) -> Result<bool> {
        let changed = self.conn.execute(
            "UPDATE rotations SET lease_owner = ?3, lease_until = ?4 WHERE id = ?1 AND lease_owner = ?2",
            params![id, stale_owner, owner, until.as_second()],
        )?;
        Ok(changed == 1)
    }

    pub fn release(&self, id: &str, owner: &str) -> Result<()> {
        self.conn.execute(
            "UPDATE rotations SET lease_owner = NULL, lease_until = NULL WHERE id = ?1 AND lease_owner = ?2",
            params![id, owner],
        )?;
        Ok(())
    }

    /// Writes the rotation's new state, its audit lines and its finding
    /// notes in one transaction, provided `lease_owner` still holds an
    /// unexpired lease at `now` (an expired one may have been taken by
    /// another process).
    pub fn save(&mut self, rotation: &RotationRecord, lease_owner: &str, now: Timestamp, audit: &[AuditEntry], updates: &[NewFindingUpdate]) -> Result<()> {
        let tx = self.conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let changed = tx.execute(
            "UPDATE rotations SET new_key_id = ?2, stage = ?3, blocked_reason = ?4, plan = ?5, progress = ?6,
                updated_at = ?7, next_check_at = ?8, came_from = ?11
             WHERE id = ?1 AND lease_owner = ?9 AND lease_until >= ?10",
            params![
                rotation.id,
                rotation.new_key_id,
                rotation.stage.as_str(),
                rotation.blocked_reason,
                rotation.plan.to_string(),
                rotation.progress.to_string(),
                rotation.updated_at.as_second(),
                rotation.next_check_at.map(|t| t.as_second()),
                lease_owner,
                now.as_second(),
                rotation.came_from.map(Stage::as_str),
            ],
        )?;
        if changed != 1 {
            return Err(StoreError::LeaseLost(rotation.id.clone()));
        }
        for entry in audit {
            append(&tx, entry)?;
        }
        stakeholders::enqueue(&tx, updates, now)?;
        tx.commit()?;
        Ok(())
    }

    /// The audit log, oldest first, for one rotation or all.
    pub fn history(&self, rotation_id: Option<&str>) -> Result<Vec<AuditEntry>> {
        let mut stmt = self.conn.prepare(
            "SELECT at, actor, rotation_id, event, from_stage, to_stage, aws_request_id, detail
             FROM audit WHERE ?1 IS NULL OR rotation_id = ?1 ORDER BY seq",
        )?;
        let rows = stmt.query_map([rotation_id], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, Option<String>>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, Option<String>>(4)?,
                r.get::<_, Option<String>>(5)?,
                r.get::<_, Option<String>>(6)?,
                r.get::<_, String>(7)?,
            ))
        })?;
        rows.map(|row| {
            let (at, actor, rotation_id, event, from, to, aws_request_id, detail) = row?;
            Ok(AuditEntry {
                at: timestamp(at)?,
                actor,
                rotation_id,
                event,
                from_stage: from.map(|s| stage(&s)).transpose()?,
                to_stage: to.map(|s| stage(&s)).transpose()?,
                aws_request_id,
                detail: json("audit detail", &detail)?,
            })
        })
        .collect()
    }
}

const SELECT: &str = "SELECT id, account_id, user_name, old_key_id, new_key_id, stage, blocked_reason, plan,
    progress, started_at, updated_at, next_check_at, came_from FROM rotations";

fn from_row(r: &Row<'_>) -> rusqlite::Result<Result<RotationRecord>> {
    let (stage_name, plan, progress): (String, String, String) = (r.get(5)?, r.get(7)?, r.get(8)?);
    let (started, updated, next): (i64, i64, Option<i64>) = (r.get(9)?, r.get(10)?, r.get(11)?);
    let came_from: Option<String> = r.get(12)?;
    let (id, account_id, user_name, old_key_id, new_key_id, blocked_reason) =
        (r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(6)?);
    Ok((|| {
        Ok(RotationRecord {
            id,
            account_id,
            user_name,
            old_key_id,
            new_key_id,
            stage: stage(&stage_name)?,
            came_from: came_from.as_deref().map(stage).transpose()?,
            blocked_reason,
            plan: json("plan", &plan)?,
            progress: json("progress", &progress)?,
            started_at: timestamp(started)?,
            updated_at: timestamp(updated)?,
            next_check_at: next.map(timestamp).transpose()?,
        })
    })())
}

fn append(conn: &Connection, e: &AuditEntry) -> Result<()> {
    conn.execute(
        "INSERT INTO audit (at, actor, rotation_id, event, from_stage, to_stage, aws_request_id, detail)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            e.at.as_second(),
            e.actor,
            e.rotation_id,
            e.event,
            e.from_stage.map(Stage::as_str),
            e.to_stage.map(Stage::as_str),
            e.aws_request_id,
            e.detail.to_string(),
        ],
    )?;
    Ok(())
}

fn json(what: &'static str, text: &str) -> Result<serde_json::Value> {
    serde_json::from_str(text).map_err(|source| StoreError::Json { what, source })
}

fn timestamp(secs: i64) -> Result<Timestamp> {
    Timestamp::from_second(secs).map_err(|e| StoreError::Sqlite(rusqlite::Error::ToSqlConversionFailure(Box::new(e))))
}

fn stage(name: &str) -> Result<Stage> {
    name.parse().map_err(|e| StoreError::Sqlite(rusqlite::Error::ToSqlConversionFailure(Box::new(e))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn rotation(id: &str, key: &str) -> RotationRecord {
        RotationRecord {
            id: id.into(),
            account_id: "123456789012".into(),
            user_name: "ci".into(),
            old_key_id: key.into(),
            new_key_id: None,
            stage: Stage::Planned,
            came_from: None,
            blocked_reason: None,
            plan: json!({"deliver": []}),
            progress: json!({}),
            started_at: ts("2026-11-28T12:00:00Z"),
            updated_at: ts("2026-11-28T12:00:00Z"),
            next_check_at: None,
        }
    }

    fn entry(id: &str, event: &str) -> AuditEntry {
        AuditEntry {
            at: ts("2026-11-28T12:00:00Z"),
            actor: "tester".into(),
            rotation_id: Some(id.into()),
            event: event.into(),
            from_stage: None,
            to_stage: Some(Stage::Planned),
            aws_request_id: None,
            detail: json!({"note": "x"}),
        }
    }

    fn open() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("sub/state.db")).unwrap();
        (dir, store)
    }

    #[test]
    fn round_trips_and_lists_oldest_first_then_in_insertion_order() {
        let (_dir, mut store) = open();
        let mut later = rotation("r2", "AKIA2");
        later.started_at = ts("2026-11-29T00:00:00Z");
        store.insert(&later, &entry("r2", "created"), &[]).unwrap();
        store.insert(&rotation("r1", "AKIA1"), &entry("r1", "created"), &[]).unwrap();
        assert_eq!(store.get("r1").unwrap(), rotation("r1", "AKIA1"));
        let ids: Vec<_> = store.list().unwrap().into_iter().map(|r| r.id).collect();
        assert_eq!(ids, ["r1", "r2"]);
        assert!(matches!(store.get("nope"), Err(StoreError::NoSuchRotation(_))));
    }

    #[test]
    fn one_open_rotation_per_key() {
        let (_dir, mut store) = open();
        store.insert(&rotation("r1", "AKIA1"), &entry("r1", "created"), &[]).unwrap();
        let err = store.insert(&rotation("r2", "AKIA1"), &entry("r2", "created"), &[]).unwrap_err();
        assert!(matches!(err, StoreError::AlreadyRotating { ref id, .. } if id == "r1"), "{err}");
        // Once finished, the key may be rotated again.
        assert!(store.try_lease("r1", "me", ts("2026-11-28T12:00:00Z"), ts("2026-11-28T12:10:00Z")).unwrap());
        let mut done = store.get("r1").unwrap();
        done.stage = Stage::Aborted;
        store.save(&done, "me", ts("2026-11-28T12:00:00Z"), &[], &[]).unwrap();
        store.insert(&rotation("r2", "AKIA1"), &entry("r2", "created"), &[]).unwrap();
    }

    #[test]
    fn due_reads_times_and_skips_finished_and_blocked() {
        let (_dir, mut store) = open();
        let now = ts("2026-11-28T12:00:00Z");
        let mut waiting = rotation("wait", "AKIA1");
        waiting.next_check_at = Some(ts("2026-11-29T12:00:00Z"));
        let mut due = rotation("due", "AKIA2");
        due.next_check_at = Some(ts("2026-11-28T11:00:00Z"));
        let mut blocked = rotation("blocked", "AKIA3");
        blocked.stage = Stage::Blocked;
        let mut done = rotation("done", "AKIA4");
        done.stage = Stage::Completed;
        let fresh = rotation("fresh", "AKIA5");
        for r in [&waiting, &due, &blocked, &done, &fresh] {
            store.insert(r, &entry(&r.id, "created"), &[]).unwrap();
        }
        let mut ids = store.due(now).unwrap();
        ids.sort();
        assert_eq!(ids, ["due", "fresh"]);
        assert!(store.due(ts("2026-11-30T00:00:00Z")).unwrap().contains(&"wait".to_string()));
    }

    #[test]
    fn leases_exclude_other_owners_until_they_expire() {
        let (_dir, mut store) = open();
        store.insert(&rotation("r1", "AKIA1"), &entry("r1", "created"), &[]).unwrap();
        let t0 = ts("2026-11-28T12:00:00Z");
        let t1 = ts("2026-11-28T12:10:00Z");
        assert!(store.try_lease("r1", "a", t0, t1).unwrap());
        assert!(!store.try_lease("r1", "b", t0, t1).unwrap());
        let mut r = store.get("r1").unwrap();
        r.stage = Stage::Creating;
        assert!(matches!(store.save(&r, "b", t0, &[], &[]), Err(StoreError::LeaseLost(_))));
        store.save(&r, "a", t0, &[entry("r1", "stage")], &[]).unwrap();
        // The holder's own lease, once expired, no longer lets it save.
        assert!(matches!(store.save(&r, "a", ts("2026-11-28T12:10:01Z"), &[], &[]), Err(StoreError::LeaseLost(_))));
        // An expired lease can be taken over (its holder crashed).
        assert!(store.try_lease("r1", "b", ts("2026-11-28T12:11:00Z"), ts("2026-11-28T12:20:00Z")).unwrap());
        assert!(matches!(store.save(&r, "a", t1, &[], &[]), Err(StoreError::LeaseLost(_))));
        store.release("r1", "b").unwrap();
        assert!(store.try_lease("r1", "a", t0, t1).unwrap());
        // A dead holder's lease is taken over once, by one taker.
        assert_eq!(store.lease_holder("r1").unwrap().as_deref(), Some("a"));
        assert!(store.take_over("r1", "a", "c", t1).unwrap());
        assert!(!store.take_over("r1", "a", "d", t1).unwrap());
        assert_eq!(store.lease_holder("r1").unwrap().as_deref(), Some("c"));
    }

    #[test]
    fn the_outlook_counts_waiting_and_blocked_rotations() {
        let (_dir, mut store) = open();
        assert_eq!(store.outlook().unwrap(), Outlook { waiting: 0, next_due: None, blocked: 0 });
        let mut waiting = rotation("wait", "AKIA1");
        waiting.next_check_at = Some(ts("2026-11-29T12:00:00Z"));
        let mut blocked = rotation("blocked", "AKIA2");
        (blocked.stage, blocked.came_from) = (Stage::Blocked, Some(Stage::Draining));
        let mut done = rotation("done", "AKIA3");
        done.stage = Stage::Completed;
        for r in [&waiting, &blocked, &done] {
            store.insert(r, &entry(&r.id, "created"), &[]).unwrap();
        }
        assert_eq!(store.outlook().unwrap(), Outlook { waiting: 1, next_due: Some(ts("2026-11-29T12:00:00Z")), blocked: 1 });
    }

    #[test]
    fn a_lease_is_renewed_only_by_its_unexpired_holder() {
        let (_dir, mut store) = open();
        store.insert(&rotation("r1", "AKIA1"), &entry("r1", "created"), &[]).unwrap();
        let (t0, t1, t2) = (ts("2026-11-28T12:00:00Z"), ts("2026-11-28T12:10:00Z"), ts("2026-11-28T12:20:00Z"));
        assert!(store.try_lease("r1", "a", t0, t1).unwrap());
        assert!(!store.renew("r1", "b", t0, t2).unwrap());
        assert!(store.renew("r1", "a", t1, t2).unwrap());
        assert!(!store.try_lease("r1", "b", ts("2026-11-28T12:15:00Z"), t2).unwrap(), "renewed: still held");
        assert!(!store.renew("r1", "a", ts("2026-11-28T12:20:01Z"), t2).unwrap(), "expired: gone");
    }

    #[test]
    fn the_stage_a_rotation_came_from_round_trips() {
        let (_dir, mut store) = open();
        let mut blocked = rotation("r1", "AKIA1");
        (blocked.stage, blocked.came_from) = (Stage::Blocked, Some(Stage::Draining));
        store.insert(&blocked, &entry("r1", "created"), &[]).unwrap();
        assert_eq!(store.get("r1").unwrap().came_from, Some(Stage::Draining));
        let mut undoing = rotation("r2", "AKIA2");
        (undoing.stage, undoing.came_from) = (Stage::RollingBack, Some(Stage::Blocked));
        store.insert(&undoing, &entry("r2", "created"), &[]).unwrap();
        assert_eq!(store.due(ts("2026-11-28T12:00:00Z")).unwrap(), ["r2"], "an undo is due, a block is not");
    }

    #[test]
    fn version_1_rows_migrate_to_undo_stages_and_came_from() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(&MIGRATIONS[0]()).unwrap();
        conn.pragma_update(None, "user_version", 1).unwrap();
        let insert = |id: &str, key: &str, stage: &str, progress: &str| {
            conn.execute(
                "INSERT INTO rotations (id, account_id, user_name, old_key_id, stage, plan, progress, started_at, updated_at)
                 VALUES (?1, '123456789012', 'ci', ?2, ?3, '{}', ?4, 0, 0)",
                params![id, key, stage, progress],
            )
            .unwrap();
        };
        insert("blocked", "AKIA1", "blocked", r#"{"blocked_from": "draining"}"#);
        insert("undoing", "AKIA2", "verifying_new", r#"{"undoing": {"ends_as": "aborted", "reason": "x"}}"#);
        insert("plain", "AKIA3", "draining", "{}");
        drop(conn);
        let store = Store::open(&path).unwrap();
        let state = |id: &str| {
            let r = store.get(id).unwrap();
            (r.stage, r.came_from)
        };
        assert_eq!(state("blocked"), (Stage::Blocked, Some(Stage::Draining)));
        assert_eq!(state("undoing"), (Stage::Aborting, Some(Stage::VerifyingNew)));
        assert_eq!(state("plain"), (Stage::Draining, None));
    }

    #[test]
    fn two_connections_cannot_both_take_a_lease() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let mut one = Store::open(&path).unwrap();
        let two = Store::open(&path).unwrap();
        one.insert(&rotation("r1", "AKIA1"), &entry("r1", "created"), &[]).unwrap();
        let (t0, t1) = (ts("2026-11-28T12:00:00Z"), ts("2026-11-28T12:10:00Z"));
        let a = one.try_lease("r1", "a", t0, t1).unwrap();
        let b = two.try_lease("r1", "b", t0, t1).unwrap();
        assert!(a && !b);
    }

    #[test]
    fn the_audit_log_is_append_only() {
        let (_dir, mut store) = open();
        store.insert(&rotation("r1", "AKIA1"), &entry("r1", "created"), &[]).unwrap();
        let (t0, t1) = (ts("2026-11-28T12:00:00Z"), ts("2026-11-28T12:10:00Z"));
        assert!(store.try_lease("r1", "me", t0, t1).unwrap());
        store.save(&rotation("r1", "AKIA1"), "me", t0, &[entry("r1", "confirmed")], &[]).unwrap();
        let events: Vec<_> = store.history(Some("r1")).unwrap().into_iter().map(|e| e.event).collect();
        assert_eq!(events, ["created", "confirmed"]);
        assert_eq!(store.history(None).unwrap().len(), 2);
        assert!(store.conn.execute("UPDATE audit SET event = 'forged'", []).is_err());
        assert!(store.conn.execute("DELETE FROM audit", []).is_err());
        assert_eq!(store.history(None).unwrap()[1], entry("r1", "confirmed"));
    }

    #[test]
    fn reopening_keeps_data_and_schema_version() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        Store::open(&path).unwrap().insert(&rotation("r1", "AKIA1"), &entry("r1", "created"), &[]).unwrap();
        let store = Store::open(&path).unwrap();
        assert_eq!(store.list().unwrap().len(), 1);
        let version: i64 = store.conn.pragma_query_value(None, "user_version", |r| r.get(0)).unwrap();
        assert_eq!(version as usize, MIGRATIONS.len());
        let mode: String = store.conn.pragma_query_value(None, "journal_mode", |r| r.get(0)).unwrap();
        assert_eq!(mode, "wal");
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let store = Store::open(&path).unwrap();
        store.conn.pragma_update(None, "user_version", 99).unwrap();
        drop(store);
        assert!(matches!(Store::open(&path), Err(StoreError::TooNew { found: 99, .. })));
    }
}
