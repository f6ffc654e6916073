//! The SQLite backend: one file (WAL, foreign keys, embedded versioned
//! migrations) for one host. Leases are valid between processes of that
//! host only, and WAL must not live on a network filesystem: several
//! runners share [`crate::DynamoStore`] instead.

use crate::stakeholders::{owner_key, Change, Ended, ExemptionEnd, ExemptionRecord, FindingUpdate, KeyReminded, NewFindingUpdate, NoticeRecord, OwnerReminded, RemindersSent};
use crate::{json, stage, timestamp, AuditEntry, Due, HistoryQuery, Item, ListQuery, Migrated, Outlook, Result, RotationRecord, Each, StateStore, StoreError};
use async_trait::async_trait;
use jiff::Timestamp;
use rekey_core::hub::Workflow;
use rekey_core::model::{AccessKeyId, AccountId, UserName};
use rekey_core::workflow::Stage;
use rusqlite::{params, Connection, OptionalExtension, Row, TransactionBehavior};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

/// Migrations in order; `PRAGMA user_version` records how many ran.
const MIGRATIONS: &[fn() -> String] = &[
    || include_str!("migrations/001_rotations.sql").to_owned(),
    came_from_and_undo_stages,
    || include_str!("migrations/003_stakeholders.sql").to_owned(),
    indexes_that_answer_alone,
    || include_str!("migrations/005_migrated.sql").to_owned(),
    || include_str!("migrations/006_reminders.sql").to_owned(),
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

/// 004: the due query, the outlook, `status` and `history` each read one
/// index and never the whole table: the due index covers the query (a
/// range of it: "now" is 0), open rotations have their own, and the audit
/// log is indexed by time.
fn indexes_that_answer_alone() -> String {
    let terminal = Stage::sql_list(Stage::is_terminal);
    let working = Stage::sql_list(Stage::is_working);
    format!(
        "DROP INDEX rotations_due;
         CREATE INDEX rotations_due ON rotations (COALESCE(next_check_at, 0), started_at, id, account_id, stage, next_check_at) WHERE stage IN ({working});
         CREATE INDEX rotations_open ON rotations (stage, started_at, id) WHERE stage NOT IN ({terminal});
         CREATE INDEX rotations_started ON rotations (started_at, id);
         CREATE INDEX rotations_leased ON rotations (lease_until) WHERE lease_owner IS NOT NULL;
         CREATE INDEX audit_at ON audit (at);"
    )
}

pub struct SqliteStore {
    conn: Mutex<Connection>,
    path: PathBuf,
}

impl SqliteStore {
    /// Opens (creating if needed) the store at `path` and brings its schema
    /// up to date.
    pub fn open(path: &Path) -> Result<SqliteStore> {
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
        let open_err = |source| StoreError::Open { path: path.display().to_string(), source };
        let io_err = |e: std::io::Error| open_err(rusqlite::Error::ToSqlConversionFailure(Box::new(e)));
        // Private from the start: no secret is in it, but its plans say
        // where new keys go (SQLite gives its -wal and -shm the same mode).
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(io_err)?;
        }
        match std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io_err(e)),
        }
        let conn = Connection::open(path).map_err(open_err)?;
        conn.busy_timeout(Duration::from_secs(10)).map_err(open_err)?;
        conn.pragma_update(None, "journal_mode", "WAL").map_err(open_err)?;
        conn.pragma_update(None, "foreign_keys", "ON").map_err(open_err)?;
        let store = SqliteStore { conn: Mutex::new(conn), path: path.to_owned() };
        store.migrate()?;
        Ok(store)
    }

    /// The connection; a panic elsewhere while holding it left no
    /// transaction open (rusqlite rolls back on drop), so it stays usable.
    fn conn(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn migrate(&self) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let version: i64 = tx.pragma_query_value(None, "user_version", |r| r.get(0))?;
        let version = version as usize;
        if version > MIGRATIONS.len() {
            return Err(StoreError::TooNew { path: self.path.display().to_string(), found: version, known: MIGRATIONS.len() });
        }
        for sql in &MIGRATIONS[version..] {
            tx.execute_batch(&sql())?;
        }
        tx.pragma_update(None, "user_version", MIGRATIONS.len() as i64)?;
        tx.commit()?;
        Ok(())
    }

    /// Runs `f` in an immediate transaction: all of it commits or none.
    fn write<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let out = f(&tx)?;
        tx.commit()?;
        Ok(out)
    }

    /// Calls `each` for every row of `sql`, without holding them all.
    fn stream<T>(&self, sql: &str, params: impl rusqlite::Params, read: impl Fn(&Row<'_>) -> rusqlite::Result<Result<T>>, each: Each<'_, T>) -> Result<()> {
        let conn = self.conn();
        let mut stmt = conn.prepare(sql)?;
        let mut rows = stmt.query(params)?;
        while let Some(row) = rows.next()? {
            each(read(row)??)?;
        }
        Ok(())
    }

    fn collect<T: Send>(&self, sql: &str, params: impl rusqlite::Params, read: impl Fn(&Row<'_>) -> rusqlite::Result<Result<T>>) -> Result<Vec<T>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(sql)?;
        let rows = stmt.query_map(params, read)?;
        rows.map(|r| r?).collect()
    }

    /// Refuses, inside the caller's write transaction, once the store was
    /// migrated: atomic with `mark_migrated`.
    fn fence(&self, tx: &Connection) -> Result<()> {
        match read_migrated(tx)? {
            Some(migrated) => Err(StoreError::Migrated { from: self.location(), migrated }),
            None => Ok(()),
        }
    }

    fn already_rotating(&self, tx: &Connection, r: &RotationRecord) -> StoreError {
        let sql = format!("SELECT id FROM rotations WHERE account_id = ?1 AND old_key_id = ?2 AND stage NOT IN ({})", Stage::sql_list(Stage::is_terminal));
        match tx.query_row(&sql, params![r.account_id.as_str(), r.old_key_id.as_str()], |row| row.get(0)) {
            Ok(id) => StoreError::AlreadyRotating { id, user_name: r.user_name.clone(), old_key_id: r.old_key_id.clone() },
            Err(e) => e.into(),
        }
    }

    #[cfg(test)]
    pub(crate) fn raw(&self) -> MutexGuard<'_, Connection> {
        self.conn()
    }
}

#[async_trait]
impl StateStore for SqliteStore {
    fn location(&self) -> String {
        self.path.display().to_string()
    }

    async fn insert(&self, rotation: &RotationRecord, audit: &AuditEntry, updates: &[NewFindingUpdate]) -> Result<()> {
        self.write(|tx| {
            self.fence(tx)?;
            insert_rotation(tx, rotation).map_err(|e| match e {
                // The unique index of unfinished rotations per key.
                StoreError::Sqlite(rusqlite::Error::SqliteFailure(f, _)) if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE => self.already_rotating(tx, rotation),
                e => e,
            })?;
            append(tx, None, audit)?;
            enqueue(tx, updates, rotation.started_at)
        })
    }

    async fn get(&self, id: &str) -> Result<RotationRecord> {
        self.conn()
            .query_row(&format!("{SELECT} WHERE id = ?1"), [id], from_row)
            .optional()?
            .ok_or_else(|| StoreError::NoSuchRotation(id.to_owned()))?
    }

    async fn list(&self, query: &ListQuery, each: Each<'_, RotationRecord>) -> Result<()> {
        // Unfinished first, then (with `all`) finished; each oldest first.
        let terminal = Stage::sql_list(Stage::is_terminal);
        let (index, filter) = if query.all { ("rotations_started", "1") } else { ("rotations_open", &*format!("stage NOT IN ({terminal})")) };
        let sql = format!(
            "{SELECT} INDEXED BY {index} WHERE {filter} AND started_at >= ?1
             ORDER BY stage IN ({terminal}), started_at, id LIMIT ?2"
        );
        let limit = query.limit.map_or(-1, |n| n as i64);
        self.stream(&sql, params![query.since.map_or(i64::MIN, |t| t.as_second()), limit], from_row, each)
    }

    async fn open_rotation(&self, account_id: &AccountId, old_key_id: &AccessKeyId) -> Result<Option<String>> {
        let sql = format!("SELECT id FROM rotations WHERE account_id = ?1 AND old_key_id = ?2 AND stage NOT IN ({})", Stage::sql_list(Stage::is_terminal));
        Ok(self.conn().query_row(&sql, params![account_id.as_str(), old_key_id.as_str()], |r| r.get(0)).optional()?)
    }

    async fn due(&self, now: Timestamp) -> Result<Vec<Due>> {
        let sql = format!(
            "SELECT id, account_id FROM rotations INDEXED BY rotations_due
             WHERE stage IN ({}) AND COALESCE(next_check_at, 0) <= ?1
             ORDER BY COALESCE(next_check_at, 0), started_at, id",
            Stage::sql_list(Stage::is_working)
        );
        self.collect(&sql, [now.as_second()], |r| Ok(Ok(Due { id: r.get(0)?, account_id: AccountId::new(r.get::<_, String>(1)?) })))
    }

    async fn outlook(&self) -> Result<Outlook> {
        let conn = self.conn();
        let (waiting, next_due): (i64, Option<i64>) = conn.query_row(
            &format!("SELECT COUNT(*), MIN(next_check_at) FROM rotations INDEXED BY rotations_due WHERE stage IN ({})", Stage::sql_list(Stage::is_working)),
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        let blocked: i64 = conn.query_row(
            // The partial index's own condition, so that SQLite may use it.
            &format!("SELECT COUNT(*) FROM rotations INDEXED BY rotations_open WHERE stage = ?1 AND stage NOT IN ({})", Stage::sql_list(Stage::is_terminal)),
            [Stage::Blocked.as_str()],
            |r| r.get(0),
        )?;
        Ok(Outlook { waiting: waiting as usize, next_due: next_due.map(timestamp).transpose()?, blocked: blocked as usize })
    }

    async fn open_by_stage(&self) -> Result<(Vec<(Stage, usize)>, Option<Timestamp>)> {
        let terminal = Stage::sql_list(Stage::is_terminal);
        let sql = format!("SELECT stage, COUNT(*), MIN(started_at) FROM rotations INDEXED BY rotations_open WHERE stage NOT IN ({terminal}) GROUP BY stage");
        let rows = self.collect(&sql, [], |r| {
            let (name, n, oldest): (String, i64, i64) = (r.get(0)?, r.get(1)?, r.get(2)?);
            Ok((|| Ok((stage(&name)?, n as usize, timestamp(oldest)?)))())
        })?;
        let oldest = rows.iter().map(|r| r.2).min();
        Ok((rows.into_iter().map(|(s, n, _)| (s, n)).collect(), oldest))
    }

    async fn try_lease(&self, id: &str, owner: &str, now: Timestamp, until: Timestamp) -> Result<bool> {
        self.write(|tx| {
            self.fence(tx)?;
            let changed = tx.execute(
                "UPDATE rotations SET lease_owner = ?2, lease_until = ?4
                 WHERE id = ?1 AND (lease_owner IS NULL OR lease_owner = ?2 OR lease_until < ?3)",
                params![id, owner, now.as_second(), until.as_second()],
            )?;
            Ok(changed == 1)
        })
    }

    async fn renew(&self, id: &str, owner: &str, now: Timestamp, until: Timestamp) -> Result<bool> {
        let changed = self.conn().execute(
            "UPDATE rotations SET lease_until = ?4 WHERE id = ?1 AND lease_owner = ?2 AND lease_until >= ?3",
            params![id, owner, now.as_second(), until.as_second()],
        )?;
        Ok(changed == 1)
    }

    async fn lease_holder(&self, id: &str) -> Result<Option<String>> {
        Ok(self.conn().query_row("SELECT lease_owner FROM rotations WHERE id = ?1", [id], |r| r.get(0)).optional()?.flatten())
    }

    async fn take_over(&self, id: &str, stale_owner: &str, owner: &str, until: Timestamp) -> Result<bool> {
        self.write(|tx| {
            self.fence(tx)?;
            let changed = tx.execute("UPDATE rotations SET lease_owner = ?3, lease_until = ?4 WHERE id = ?1 AND lease_owner = ?2", params![id, stale_owner, owner, until.as_second()])?;
            Ok(changed == 1)
        })
    }

    async fn release(&self, id: &str, owner: &str) -> Result<()> {
        self.conn().execute("UPDATE rotations SET lease_owner = NULL, lease_until = NULL WHERE id = ?1 AND lease_owner = ?2", params![id, owner])?;
        Ok(())
    }

    async fn leases(&self, now: Timestamp) -> Result<Vec<(String, String)>> {
        self.collect(
            "SELECT id, lease_owner FROM rotations INDEXED BY rotations_leased WHERE lease_owner IS NOT NULL AND lease_until >= ?1 ORDER BY id",
            [now.as_second()],
            |r| Ok(Ok((r.get(0)?, r.get(1)?))),
        )
    }

    async fn save(&self, rotation: &RotationRecord, was: Stage, lease_owner: &str, now: Timestamp, audit: &[AuditEntry], updates: &[NewFindingUpdate]) -> Result<()> {
        self.write(|tx| {
            let changed = tx.execute(
                "UPDATE rotations SET new_key_id = ?2, stage = ?3, blocked_reason = ?4, plan = ?5, progress = ?6,
                    updated_at = ?7, next_check_at = ?8, came_from = ?11
                 WHERE id = ?1 AND lease_owner = ?9 AND lease_until >= ?10 AND stage = ?12",
                params![
                    rotation.id,
                    rotation.new_key_id.as_ref().map(AccessKeyId::as_str),
                    rotation.stage.as_str(),
                    rotation.blocked_reason,
                    rotation.plan.to_string(),
                    rotation.progress.to_string(),
                    rotation.updated_at.as_second(),
                    rotation.next_check_at.map(|t| t.as_second()),
                    lease_owner,
                    now.as_second(),
                    rotation.came_from.map(Stage::as_str),
                    was.as_str(),
                ],
            )?;
            if changed != 1 {
                return Err(StoreError::LeaseLost(rotation.id.clone()));
            }
            for entry in audit {
                append(tx, None, entry)?;
            }
            enqueue(tx, updates, now)
        })
    }

    async fn history(&self, query: &HistoryQuery, each: Each<'_, AuditEntry>) -> Result<()> {
        // The newest `limit` of those selected, streamed oldest first.
        let sql = "SELECT * FROM (
                 SELECT seq, at, actor, rotation_id, event, from_stage, to_stage, aws_request_id, detail FROM audit
                 WHERE (?1 IS NULL OR rotation_id = ?1) AND at >= ?2 ORDER BY seq DESC LIMIT ?3
             ) ORDER BY seq";
        let limit = query.limit.map_or(-1, |n| n as i64);
        let since = query.since.map_or(i64::MIN, |t| t.as_second());
        self.stream(sql, params![query.rotation_id, since, limit], |r| Ok(audit_row(r)?.map(|(_, e)| e)), each)
    }

    async fn record(&self, change: &Change, at: Timestamp, actor: &str) -> Result<()> {
        self.write(|tx| {
            self.fence(tx)?;
            for e in &change.open {
                end_exemption(tx, &e.account_id, &e.user_name, Ended::Replaced, at, actor)?;
                insert_exemption(tx, e, None)?;
            }
            for e in &change.end {
                end_exemption(tx, &e.account_id, &e.user_name, e.how, at, actor)?;
            }
            enqueue(tx, &change.finding_updates, at)?;
            for n in &change.notices {
                insert_notice(tx, n, at, actor)?;
            }
            for r in &change.reminders {
                put_owner_reminded(tx, &OwnerReminded { owner: r.owner.clone(), last_sent_at: at })?;
                for k in &r.keys {
                    put_key_reminded(tx, k)?;
                }
            }
            for line in &change.audit {
                append(tx, None, line)?;
            }
            Ok(())
        })
    }

    async fn open_exemptions(&self) -> Result<Vec<ExemptionRecord>> {
        let sql = format!("SELECT {EXEMPTION} FROM exemptions WHERE ended_at IS NULL ORDER BY account_id, user_name");
        self.collect(&sql, [], |r| Ok(exemption(r)?.map(|(e, _)| e)))
    }

    async fn expired_exemptions(&self, now: Timestamp) -> Result<Vec<ExemptionRecord>> {
        let sql = format!("SELECT {EXEMPTION} FROM exemptions WHERE ended_at IS NULL AND until <= ?1 ORDER BY until, id");
        self.collect(&sql, [now.as_second()], |r| Ok(exemption(r)?.map(|(e, _)| e)))
    }

    async fn pending_finding_updates(&self) -> Result<Vec<FindingUpdate>> {
        let sql = format!("SELECT {FINDING_UPDATE} FROM finding_updates WHERE sent_at IS NULL ORDER BY seq");
        self.collect(&sql, [], |r| Ok(finding_update(r)?.map(|(u, _)| u)))
    }

    async fn finding_updates_sent(&self, seqs: &[i64], at: Timestamp) -> Result<()> {
        self.write(|tx| {
            for seq in seqs {
                tx.execute("UPDATE finding_updates SET sent_at = ?2, attempts = attempts + 1, last_error = NULL WHERE seq = ?1", params![seq, at.as_second()])?;
            }
            Ok(())
        })
    }

    async fn finding_updates_failed(&self, seqs: &[i64], error: &str, audit: &[AuditEntry]) -> Result<()> {
        self.write(|tx| {
            for seq in seqs {
                tx.execute("UPDATE finding_updates SET attempts = attempts + 1, last_error = ?2 WHERE seq = ?1", params![seq, error])?;
            }
            for line in audit {
                append(tx, None, line)?;
            }
            Ok(())
        })
    }

    async fn last_notice(&self, digest: &str) -> Result<Option<Timestamp>> {
        let at: Option<i64> = self.conn().query_row("SELECT MAX(sent_at) FROM notices WHERE digest = ?1", [digest], |r| r.get(0))?;
        at.map(timestamp).transpose()
    }

    async fn reminders_sent(&self) -> Result<RemindersSent> {
        let owners = self.collect("SELECT owner, last_sent_at FROM reminder_owners ORDER BY owner_key", [], |r| {
            let (owner, at): (Option<String>, i64) = (r.get(0)?, r.get(1)?);
            Ok(timestamp(at).map(|last_sent_at| OwnerReminded { owner, last_sent_at }))
        })?;
        let keys = self.collect("SELECT account_id, user_name, key_created_at, moment FROM reminder_keys ORDER BY account_id, user_name, key_created_at", [], |r| {
            let (account, user, created, moment): (String, String, i64, i64) = (r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?);
            Ok((|| Ok(KeyReminded { account_id: AccountId::new(account), user_name: UserName::new(user), key_created_at: timestamp(created)?, moment: timestamp(moment)? }))())
        })?;
        Ok(RemindersSent { owners, keys })
    }

    async fn swap_last_reminder(&self, owner: Option<&str>, from: Option<Timestamp>, to: Option<Timestamp>) -> Result<bool> {
        self.write(|tx| {
            self.fence(tx)?;
            let key = owner_key(owner);
            let now: Option<i64> = tx.query_row("SELECT last_sent_at FROM reminder_owners WHERE owner_key = ?1", [&key], |r| r.get(0)).optional()?;
            if now != from.map(Timestamp::as_second) {
                return Ok(false);
            }
            match to {
                Some(at) => put_owner_reminded(tx, &OwnerReminded { owner: owner.map(str::to_owned), last_sent_at: at })?,
                None => {
                    tx.execute("DELETE FROM reminder_owners WHERE owner_key = ?1", [&key])?;
                }
            }
            Ok(true)
        })
    }

    async fn export(&self, each: Each<'_, Item>) -> Result<()> {
        self.stream(&format!("{SELECT} ORDER BY started_at, id"), [], |r| Ok(from_row(r)?.map(Item::Rotation)), each)?;
        let sql = "SELECT seq, at, actor, rotation_id, event, from_stage, to_stage, aws_request_id, detail FROM audit ORDER BY seq";
        self.stream(sql, [], |r| Ok(audit_row(r)?.map(|(seq, entry)| Item::Audit { seq, entry })), each)?;
        let sql = format!("SELECT {EXEMPTION} FROM exemptions ORDER BY created_at, account_id, user_name, ended_at IS NULL, ended_at");
        self.stream(&sql, [], |r| Ok(exemption(r)?.map(|(record, ended)| Item::Exemption { record, ended })), each)?;
        let sql = format!("SELECT {FINDING_UPDATE} FROM finding_updates ORDER BY seq");
        self.stream(&sql, [], |r| Ok(finding_update(r)?.map(|(update, sent_at)| Item::FindingUpdate { update, sent_at })), each)?;
        let sql = "SELECT owner, channel, digest, keys, sent_at, by FROM notices ORDER BY sent_at, digest, channel, owner, by";
        self.stream(sql, [], notice, each)?;
        crate::dump::reminder_items(self.reminders_sent().await?).try_for_each(each)
    }

    async fn import(&self, items: &[Item]) -> Result<()> {
        self.write(|tx| {
            for item in items {
                match item {
                    Item::Rotation(r) => insert_rotation(tx, r)?,
                    Item::Audit { seq, entry } => append(tx, Some(*seq), entry)?,
                    Item::Exemption { record, ended } => insert_exemption(tx, record, ended.as_ref())?,
                    Item::FindingUpdate { update, sent_at } => {
                        tx.execute(
                            "INSERT INTO finding_updates (seq, account_id, user_name, workflow, note, created_at, attempts, last_error, sent_at)
                             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                            params![
                                update.seq,
                                update.update.account_id.as_str(),
                                update.update.user_name.as_str(),
                                update.update.workflow.map(Workflow::as_str),
                                update.update.note,
                                update.created_at.as_second(),
                                update.attempts,
                                update.last_error,
                                sent_at.map(|t| t.as_second())
                            ],
                        )?;
                    }
                    Item::Notice { notice, sent_at, by } => insert_notice(tx, notice, *sent_at, by)?,
                    Item::OwnerReminded(o) => put_owner_reminded(tx, o)?,
                    Item::KeyReminded(k) => put_key_reminded(tx, k)?,
                }
            }
            Ok(())
        })
    }

    async fn is_empty(&self) -> Result<bool> {
        let conn = self.conn();
        let any: Option<i64> = conn.query_row(
            "SELECT 1 WHERE EXISTS (SELECT 1 FROM rotations) OR EXISTS (SELECT 1 FROM audit) OR EXISTS (SELECT 1 FROM exemptions)
                OR EXISTS (SELECT 1 FROM finding_updates) OR EXISTS (SELECT 1 FROM notices) OR EXISTS (SELECT 1 FROM migrated)
                OR EXISTS (SELECT 1 FROM reminder_owners) OR EXISTS (SELECT 1 FROM reminder_keys)",
            [],
            |r| r.get(0),
        ).optional()?;
        Ok(any.is_none())
    }

    async fn migrated(&self) -> Result<Option<Migrated>> {
        read_migrated(&self.conn())
    }

    async fn mark_migrated(&self, migrated: &Migrated, audit: &AuditEntry) -> Result<()> {
        self.write(|tx| {
            self.fence(tx)?;
            append(tx, None, audit)?;
            tx.execute("INSERT INTO migrated (only, to_store, at, by) VALUES (1, ?1, ?2, ?3)", params![migrated.to, migrated.at.as_second(), migrated.by])?;
            Ok(())
        })
    }
}

fn read_migrated(conn: &Connection) -> Result<Option<Migrated>> {
    let row: Option<(String, i64, String)> = conn.query_row("SELECT to_store, at, by FROM migrated", [], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).optional()?;
    row.map(|(to, at, by)| Ok(Migrated { to, at: timestamp(at)?, by })).transpose()
}

const SELECT: &str = "SELECT id, account_id, user_name, old_key_id, new_key_id, stage, blocked_reason, plan,
    progress, started_at, updated_at, next_check_at, came_from FROM rotations";

fn insert_rotation(tx: &Connection, rotation: &RotationRecord) -> Result<()> {
    tx.execute(
        "INSERT INTO rotations (id, account_id, user_name, old_key_id, new_key_id, stage, blocked_reason,
            plan, progress, started_at, updated_at, next_check_at, came_from)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
        params![
            rotation.id,
            rotation.account_id.as_str(),
            rotation.user_name.as_str(),
            rotation.old_key_id.as_str(),
            rotation.new_key_id.as_ref().map(AccessKeyId::as_str),
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
    Ok(())
}

fn from_row(r: &Row<'_>) -> rusqlite::Result<Result<RotationRecord>> {
    let (stage_name, plan, progress): (String, String, String) = (r.get(5)?, r.get(7)?, r.get(8)?);
    let (started, updated, next): (i64, i64, Option<i64>) = (r.get(9)?, r.get(10)?, r.get(11)?);
    let came_from: Option<String> = r.get(12)?;
    let (id, account_id, user_name, old_key_id, new_key_id, blocked_reason): (_, String, String, String, Option<String>, _) = (r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(6)?);
    Ok((|| {
        Ok(RotationRecord {
            id,
            account_id: AccountId::new(account_id),
            user_name: UserName::new(user_name),
            old_key_id: AccessKeyId::new(old_key_id),
            new_key_id: new_key_id.map(AccessKeyId::new),
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

/// Appends an audit line (with its sequence number when importing).
fn append(conn: &Connection, seq: Option<i64>, e: &AuditEntry) -> Result<()> {
    conn.execute(
        "INSERT INTO audit (seq, at, actor, rotation_id, event, from_stage, to_stage, aws_request_id, detail)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        params![
            seq,
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

fn audit_row(r: &Row<'_>) -> rusqlite::Result<Result<(i64, AuditEntry)>> {
    let (seq, at, actor, rotation_id, event): (i64, i64, String, Option<String>, String) = (r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?);
    let (from, to, aws_request_id, detail): (Option<String>, Option<String>, Option<String>, String) = (r.get(5)?, r.get(6)?, r.get(7)?, r.get(8)?);
    Ok((|| {
        let entry = AuditEntry {
            at: timestamp(at)?,
            actor,
            rotation_id,
            event,
            from_stage: from.map(|s| stage(&s)).transpose()?,
            to_stage: to.map(|s| stage(&s)).transpose()?,
            aws_request_id,
            detail: json("audit detail", &detail)?,
        };
        Ok((seq, entry))
    })())
}

/// Writes finding updates to the outbox (with a rotation's save, too).
fn enqueue(conn: &Connection, updates: &[NewFindingUpdate], at: Timestamp) -> Result<()> {
    for u in updates {
        conn.execute(
            "INSERT INTO finding_updates (account_id, user_name, workflow, note, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![u.account_id.as_str(), u.user_name.as_str(), u.workflow.map(Workflow::as_str), u.note, at.as_second()],
        )?;
    }
    Ok(())
}

const FINDING_UPDATE: &str = "seq, account_id, user_name, workflow, note, created_at, attempts, last_error, sent_at";

fn finding_update(r: &Row<'_>) -> rusqlite::Result<Result<(FindingUpdate, Option<Timestamp>)>> {
    let (seq, account_id, user_name, workflow, note): (i64, String, String, Option<String>, String) = (r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?);
    let (created, attempts, last_error, sent): (i64, i64, Option<String>, Option<i64>) = (r.get(5)?, r.get(6)?, r.get(7)?, r.get(8)?);
    Ok((|| {
        let workflow = workflow.map(|w| w.parse::<Workflow>().map_err(|e| crate::bad("workflow", e))).transpose()?;
        let update = FindingUpdate { seq, update: NewFindingUpdate { account_id: AccountId::new(account_id), user_name: UserName::new(user_name), workflow, note }, created_at: timestamp(created)?, attempts: attempts as u32, last_error };
        Ok((update, sent.map(timestamp).transpose()?))
    })())
}

const EXEMPTION: &str = "account_id, user_name, reason, until, by, created_at, ended_at, ended_by, ended_how";

fn insert_exemption(tx: &Connection, e: &ExemptionRecord, ended: Option<&ExemptionEnd>) -> Result<()> {
    tx.execute(
        "INSERT INTO exemptions (account_id, user_name, reason, until, by, created_at, ended_at, ended_by, ended_how)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        params![
            e.account_id.as_str(),
            e.user_name.as_str(),
            e.reason,
            e.until.map(|t| t.as_second()),
            e.by,
            e.created_at.as_second(),
            ended.map(|x| x.at.as_second()),
            ended.map(|x| &x.by),
            ended.map(|x| x.how.as_str())
        ],
    )?;
    Ok(())
}

fn end_exemption(conn: &Connection, account_id: &AccountId, user_name: &UserName, how: Ended, at: Timestamp, by: &str) -> Result<()> {
    conn.execute(
        "UPDATE exemptions SET ended_at = ?3, ended_by = ?4, ended_how = ?5 WHERE account_id = ?1 AND user_name = ?2 AND ended_at IS NULL",
        params![account_id.as_str(), user_name.as_str(), at.as_second(), by, how.as_str()],
    )?;
    Ok(())
}

fn exemption(r: &Row<'_>) -> rusqlite::Result<Result<(ExemptionRecord, Option<ExemptionEnd>)>> {
    let (account_id, user_name, reason, until, by, created): (String, String, String, Option<i64>, String, i64) = (r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?);
    let (ended_at, ended_by, ended_how): (Option<i64>, Option<String>, Option<String>) = (r.get(6)?, r.get(7)?, r.get(8)?);
    Ok((|| {
        let record = ExemptionRecord { account_id: AccountId::new(account_id), user_name: UserName::new(user_name), reason, until: until.map(timestamp).transpose()?, by, created_at: timestamp(created)? };
        let ended = match (ended_at, ended_by, ended_how) {
            (Some(at), Some(by), Some(how)) => Some(ExemptionEnd { at: timestamp(at)?, by, how: how.parse().map_err(|e| crate::bad("exemption end", e))? }),
            _ => None,
        };
        Ok((record, ended))
    })())
}

fn insert_notice(tx: &Connection, n: &NoticeRecord, at: Timestamp, by: &str) -> Result<()> {
    tx.execute(
        "INSERT INTO notices (owner, channel, digest, keys, sent_at, by) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![n.owner, n.channel, n.digest, n.keys as i64, at.as_second(), by],
    )?;
    Ok(())
}

/// The owner's last digest is now `o.last_sent_at`.
fn put_owner_reminded(tx: &Connection, o: &OwnerReminded) -> Result<()> {
    tx.execute(
        "INSERT INTO reminder_owners (owner_key, owner, last_sent_at) VALUES (?1, ?2, ?3)
         ON CONFLICT (owner_key) DO UPDATE SET last_sent_at = excluded.last_sent_at",
        params![owner_key(o.owner.as_deref()), o.owner, o.last_sent_at.as_second()],
    )?;
    Ok(())
}

/// The key's last reminder moment is now `k.moment`.
fn put_key_reminded(tx: &Connection, k: &KeyReminded) -> Result<()> {
    tx.execute(
        "INSERT INTO reminder_keys (account_id, user_name, key_created_at, moment) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (account_id, user_name, key_created_at) DO UPDATE SET moment = excluded.moment",
        params![k.account_id.as_str(), k.user_name.as_str(), k.key_created_at.as_second(), k.moment.as_second()],
    )?;
    Ok(())
}

fn notice(r: &Row<'_>) -> rusqlite::Result<Result<Item>> {
    let (owner, channel, digest, keys, sent_at, by): (Option<String>, String, String, i64, i64, String) = (r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?);
    Ok(timestamp(sent_at).map(|sent_at| Item::Notice { notice: NoticeRecord { owner, channel, digest, keys: keys as usize }, sent_at, by }))
}

#[cfg(test)]
mod tests {
    //! What only SQLite has: migrations, WAL, triggers, query plans. The
    //! rest of the contract is in `tests/contract.rs`, for both backends.
    use super::*;
    use serde_json::json;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn rotation(id: &str, key: &str) -> RotationRecord {
        RotationRecord {
            id: id.into(),
            account_id: AccountId::new("123456789012"),
            user_name: UserName::new("ci"),
            old_key_id: AccessKeyId::new(key),
            new_key_id: None,
            stage: Stage::Planned,
            came_from: None,
            blocked_reason: None,
            plan: json!({}),
            progress: json!({}),
            started_at: ts("2026-11-28T12:00:00Z"),
            updated_at: ts("2026-11-28T12:00:00Z"),
            next_check_at: None,
        }
    }

    fn entry(id: &str, event: &str) -> AuditEntry {
        AuditEntry { rotation_id: Some(id.into()), ..AuditEntry::about_owners(ts("2026-11-28T12:00:00Z"), "tester", event, json!({})) }
    }

    fn open() -> (tempfile::TempDir, SqliteStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("state.db")).unwrap();
        (dir, store)
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
        let store = SqliteStore::open(&path).unwrap();
        let state = |id: &str| {
            let r = store.conn().query_row(&format!("{SELECT} WHERE id = ?1"), [id], from_row).unwrap().unwrap();
            (r.stage, r.came_from)
        };
        assert_eq!(state("blocked"), (Stage::Blocked, Some(Stage::Draining)));
        assert_eq!(state("undoing"), (Stage::Aborting, Some(Stage::VerifyingNew)));
        assert_eq!(state("plain"), (Stage::Draining, None));
    }

    #[tokio::test]
    async fn two_connections_cannot_both_take_a_lease() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let one = SqliteStore::open(&path).unwrap();
        let two = SqliteStore::open(&path).unwrap();
        one.insert(&rotation("r1", "AKIA1"), &entry("r1", "created"), &[]).await.unwrap();
        let (t0, t1) = (ts("2026-11-28T12:00:00Z"), ts("2026-11-28T12:10:00Z"));
        let a = one.try_lease("r1", "a", t0, t1).await.unwrap();
        let b = two.try_lease("r1", "b", t0, t1).await.unwrap();
        assert!(a && !b);
    }

    #[tokio::test]
    async fn the_audit_log_cannot_be_changed_or_deleted() {
        let (_dir, store) = open();
        store.insert(&rotation("r1", "AKIA1"), &entry("r1", "created"), &[]).await.unwrap();
        assert!(store.raw().execute("UPDATE audit SET event = 'forged'", []).is_err());
        assert!(store.raw().execute("DELETE FROM audit", []).is_err());
        let events: Vec<_> = crate::events(&store, &HistoryQuery::default()).await.unwrap().into_iter().map(|e| e.event).collect();
        assert_eq!(events, ["created"]);
    }

    #[tokio::test]
    async fn reopening_keeps_data_and_schema_version() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        SqliteStore::open(&path).unwrap().insert(&rotation("r1", "AKIA1"), &entry("r1", "created"), &[]).await.unwrap();
        let store = SqliteStore::open(&path).unwrap();
        assert!(store.get("r1").await.is_ok());
        let version: i64 = store.raw().pragma_query_value(None, "user_version", |r| r.get(0)).unwrap();
        assert_eq!(version as usize, MIGRATIONS.len());
        let mode: String = store.raw().pragma_query_value(None, "journal_mode", |r| r.get(0)).unwrap();
        assert_eq!(mode, "wal");
    }

    #[test]
    fn a_new_store_is_private_to_its_owner() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("new/state.db");
        let _store = SqliteStore::open(&path).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(path.parent().unwrap()), 0o700);
        assert_eq!(mode(&dir.path().join("new/state.db-wal")), 0o600, "SQLite gives the WAL the file's mode");
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let (dir, store) = open();
        store.raw().pragma_update(None, "user_version", 99).unwrap();
        drop(store);
        assert!(matches!(SqliteStore::open(&dir.path().join("state.db")), Err(StoreError::TooNew { found: 99, .. })));
    }

    /// The queries `run` makes on every pass read their index alone (no
    /// table row); the due query reads only the due part of it.
    #[test]
    fn the_due_query_and_the_outlook_read_only_their_indexes() {
        let (_dir, store) = open();
        let working = Stage::sql_list(Stage::is_working);
        let plan = |sql: &str| -> String {
            let conn = store.raw();
            let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
            let rows = stmt.query_map([], |r| r.get::<_, String>(3)).unwrap();
            rows.map(|r| r.unwrap()).collect::<Vec<_>>().join("; ")
        };
        let due = plan(&format!(
            "SELECT id, account_id FROM rotations INDEXED BY rotations_due WHERE stage IN ({working}) AND COALESCE(next_check_at, 0) <= 0 ORDER BY COALESCE(next_check_at, 0), started_at, id"
        ));
        assert!(due.starts_with("SEARCH rotations USING COVERING INDEX rotations_due") && !due.contains("TEMP B-TREE"), "{due}");
        let waiting = plan(&format!("SELECT COUNT(*), MIN(next_check_at) FROM rotations INDEXED BY rotations_due WHERE stage IN ({working})"));
        assert!(waiting.contains("COVERING INDEX rotations_due"), "{waiting}");
        let terminal = Stage::sql_list(Stage::is_terminal);
        let blocked = plan(&format!("SELECT COUNT(*) FROM rotations INDEXED BY rotations_open WHERE stage = 'blocked' AND stage NOT IN ({terminal})"));
        assert!(blocked.contains("COVERING INDEX rotations_open"), "{blocked}");
    }
}
