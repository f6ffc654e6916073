//! What owners decided and were told: exemptions (`rekey suppress`), the
//! outbox of Security Hub finding updates, and the notices sent. Every
//! change is one [`Change`], written in one transaction with its audit lines.

use crate::{append, timestamp, AuditEntry, Result, Store, StoreError};
use jiff::Timestamp;
use rekey_core::hub::Workflow;
use rusqlite::{params, Connection, OptionalExtension, Row};

/// An open exemption: the user's keys count as SUPPRESSED until `until`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExemptionRecord {
    pub account_id: String,
    pub user_name: String,
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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    Unsuppressed,
    Expired,
}

/// Ends the open exemption of one user.
#[derive(Debug, Clone)]
pub struct EndExemption {
    pub account_id: String,
    pub user_name: String,
    pub how: Ended,
}

/// A finding update to send: a note, and maybe a workflow status (which
/// applies only where [`Workflow::applies_to`] says so).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewFindingUpdate {
    pub account_id: String,
    pub user_name: String,
    pub workflow: Option<Workflow>,
    pub note: String,
}

/// A finding update not sent yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FindingUpdate {
    pub seq: i64,
    pub update: NewFindingUpdate,
    pub created_at: Timestamp,
    pub attempts: u32,
    pub last_error: Option<String>,
}

/// A notice sent to an owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoticeRecord {
    pub owner: Option<String>,
    pub channel: String,
    pub digest: String,
    pub keys: usize,
}

/// One stakeholder change, applied atomically by [`Store::record`]: at
/// `at`, by `actor`.
#[derive(Debug, Default)]
pub struct Change {
    /// New exemptions; an open one of the same user is replaced.
    pub open: Vec<ExemptionRecord>,
    pub end: Vec<EndExemption>,
    pub finding_updates: Vec<NewFindingUpdate>,
    pub notices: Vec<NoticeRecord>,
    pub audit: Vec<AuditEntry>,
}

impl Store {
    /// Applies `change` in one transaction: none of it or all of it.
    pub fn record(&mut self, change: &Change, at: Timestamp, actor: &str) -> Result<()> {
        let tx = self.conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        for e in &change.open {
            end_exemption(&tx, &e.account_id, &e.user_name, "replaced", at, actor)?;
            tx.execute(
                "INSERT INTO exemptions (account_id, user_name, reason, until, by, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![e.account_id, e.user_name, e.reason, e.until.map(|t| t.as_second()), e.by, e.created_at.as_second()],
            )?;
        }
        for e in &change.end {
            let how = match e.how {
                Ended::Unsuppressed => "unsuppressed",
                Ended::Expired => "expired",
            };
            end_exemption(&tx, &e.account_id, &e.user_name, how, at, actor)?;
        }
        enqueue(&tx, &change.finding_updates, at)?;
        for n in &change.notices {
            tx.execute(
                "INSERT INTO notices (owner, channel, digest, keys, sent_at, by) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![n.owner, n.channel, n.digest, n.keys as i64, at.as_second(), actor],
            )?;
        }
        for line in &change.audit {
            append(&tx, line)?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Exemptions not ended (in force, or expired and not yet reopened by
    /// `rekey run`), by account and user.
    pub fn open_exemptions(&self) -> Result<Vec<ExemptionRecord>> {
        let mut stmt = self.conn.prepare(
            "SELECT account_id, user_name, reason, until, by, created_at FROM exemptions
             WHERE ended_at IS NULL ORDER BY account_id, user_name",
        )?;
        let rows = stmt.query_map([], exemption)?;
        rows.map(|r| r?).collect()
    }

    /// Open exemptions whose `until` has passed at `now`.
    pub fn expired_exemptions(&self, now: Timestamp) -> Result<Vec<ExemptionRecord>> {
        let mut stmt = self.conn.prepare(
            "SELECT account_id, user_name, reason, until, by, created_at FROM exemptions
             WHERE ended_at IS NULL AND until <= ?1 ORDER BY until, id",
        )?;
        let rows = stmt.query_map([now.as_second()], exemption)?;
        rows.map(|r| r?).collect()
    }

    /// Finding updates not sent yet, oldest first.
    pub fn pending_finding_updates(&self) -> Result<Vec<FindingUpdate>> {
        let mut stmt = self.conn.prepare(
            "SELECT seq, account_id, user_name, workflow, note, created_at, attempts, last_error
             FROM finding_updates WHERE sent_at IS NULL ORDER BY seq",
        )?;
        let rows = stmt.query_map([], |r| {
            let (seq, account_id, user_name, workflow, note, created, attempts, last_error): (i64, String, String, Option<String>, String, i64, i64, Option<String>) =
                (r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?, r.get(7)?);
            Ok((|| {
                let workflow = workflow.map(|w| w.parse::<Workflow>().map_err(bad_value)).transpose()?;
                Ok(FindingUpdate {
                    seq,
                    update: NewFindingUpdate { account_id, user_name, workflow, note },
                    created_at: timestamp(created)?,
                    attempts: attempts as u32,
                    last_error,
                })
            })())
        })?;
        rows.map(|r| r?).collect()
    }

    /// Marks updates as sent.
    pub fn finding_updates_sent(&mut self, seqs: &[i64], at: Timestamp) -> Result<()> {
        let tx = self.conn.transaction()?;
        for seq in seqs {
            tx.execute("UPDATE finding_updates SET sent_at = ?2, attempts = attempts + 1, last_error = NULL WHERE seq = ?1", params![seq, at.as_second()])?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Counts a failed attempt at sending updates, with the audit lines
    /// that record it: they stay pending for the next run.
    pub fn finding_updates_failed(&mut self, seqs: &[i64], error: &str, audit: &[AuditEntry]) -> Result<()> {
        let tx = self.conn.transaction()?;
        for seq in seqs {
            tx.execute("UPDATE finding_updates SET attempts = attempts + 1, last_error = ?2 WHERE seq = ?1", params![seq, error])?;
        }
        for line in audit {
            append(&tx, line)?;
        }
        tx.commit()?;
        Ok(())
    }

    /// When a notice with this digest was last sent, if ever.
    pub fn last_notice(&self, digest: &str) -> Result<Option<Timestamp>> {
        let at: Option<i64> = self
            .conn
            .query_row("SELECT MAX(sent_at) FROM notices WHERE digest = ?1", [digest], |r| r.get(0))
            .optional()?
            .flatten();
        at.map(timestamp).transpose()
    }
}

/// Writes finding updates to the outbox (also used when a rotation is saved).
pub(crate) fn enqueue(conn: &Connection, updates: &[NewFindingUpdate], at: Timestamp) -> Result<()> {
    for u in updates {
        conn.execute(
            "INSERT INTO finding_updates (account_id, user_name, workflow, note, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![u.account_id, u.user_name, u.workflow.map(Workflow::as_str), u.note, at.as_second()],
        )?;
    }
    Ok(())
}

fn end_exemption(conn: &Connection, account_id: &str, user_name: &str, how: &str, at: Timestamp, by: &str) -> Result<()> {
    conn.execute(
        "UPDATE exemptions SET ended_at = ?3, ended_by = ?4, ended_how = ?5
         WHERE account_id = ?1 AND user_name = ?2 AND ended_at IS NULL",
        params![account_id, user_name, at.as_second(), by, how],
    )?;
    Ok(())
}

fn exemption(r: &Row<'_>) -> rusqlite::Result<Result<ExemptionRecord>> {
    let (account_id, user_name, reason, until, by, created): (String, String, String, Option<i64>, String, i64) =
        (r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?);
    Ok((|| Ok(ExemptionRecord { account_id, user_name, reason, until: until.map(timestamp).transpose()?, by, created_at: timestamp(created)? }))())
}

fn bad_value(e: String) -> StoreError {
    StoreError::Sqlite(rusqlite::Error::ToSqlConversionFailure(e.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn open() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("state.db")).unwrap();
        (dir, store)
    }

    fn exempt(user: &str, until: Option<&str>) -> ExemptionRecord {
        ExemptionRecord {
            account_id: "123456789012".into(),
            user_name: user.into(),
            reason: "baked into firmware".into(),
            until: until.map(ts),
            by: "alice".into(),
            created_at: ts("2026-11-28T12:00:00Z"),
        }
    }

    fn update(user: &str, workflow: Option<Workflow>) -> NewFindingUpdate {
        NewFindingUpdate { account_id: "123456789012".into(), user_name: user.into(), workflow, note: format!("note for {user}") }
    }

    #[test]
    fn an_exemption_replaces_the_users_open_one_and_ends_when_lifted() {
        let (_dir, mut store) = open();
        let at = ts("2026-11-28T12:00:00Z");
        let change = Change { open: vec![exempt("a", None), exempt("b", Some("2026-12-01T00:00:00Z"))], ..Change::default() };
        store.record(&change, at, "alice").unwrap();
        let renewed = Change { open: vec![exempt("b", Some("2027-01-01T00:00:00Z"))], ..Change::default() };
        store.record(&renewed, at, "alice").unwrap();
        let open = store.open_exemptions().unwrap();
        assert_eq!(open.iter().map(|e| (e.user_name.as_str(), e.until)).collect::<Vec<_>>(), [("a", None), ("b", Some(ts("2027-01-01T00:00:00Z")))]);

        let lift = Change { end: vec![EndExemption { account_id: "123456789012".into(), user_name: "a".into(), how: Ended::Unsuppressed }], ..Change::default() };
        store.record(&lift, at, "bob").unwrap();
        assert_eq!(store.open_exemptions().unwrap().len(), 1);
    }

    #[test]
    fn expiry_is_read_from_until_and_in_force_is_strictly_before() {
        let (_dir, mut store) = open();
        let change = Change { open: vec![exempt("a", Some("2026-12-01T00:00:00Z")), exempt("b", None)], ..Change::default() };
        store.record(&change, ts("2026-11-28T12:00:00Z"), "alice").unwrap();
        assert!(store.expired_exemptions(ts("2026-11-30T23:59:59Z")).unwrap().is_empty());
        let expired = store.expired_exemptions(ts("2026-12-01T00:00:00Z")).unwrap();
        assert_eq!(expired.len(), 1);
        assert!(!expired[0].in_force(ts("2026-12-01T00:00:00Z")));
        assert!(expired[0].in_force(ts("2026-11-30T23:59:59Z")));
        assert!(exempt("b", None).in_force(ts("2100-01-01T00:00:00Z")));
    }

    #[test]
    fn the_outbox_keeps_updates_until_sent_and_counts_failures() {
        let (_dir, mut store) = open();
        let at = ts("2026-11-28T12:00:00Z");
        let change = Change { finding_updates: vec![update("a", Some(Workflow::Suppressed)), update("b", None)], ..Change::default() };
        store.record(&change, at, "alice").unwrap();
        let pending = store.pending_finding_updates().unwrap();
        assert_eq!(pending.iter().map(|p| p.update.clone()).collect::<Vec<_>>(), [update("a", Some(Workflow::Suppressed)), update("b", None)]);
        store.finding_updates_failed(&[pending[0].seq], "InvalidAccessException", &[]).unwrap();
        store.finding_updates_sent(&[pending[1].seq], at).unwrap();
        let left = store.pending_finding_updates().unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!((left[0].attempts, left[0].last_error.as_deref()), (1, Some("InvalidAccessException")));
    }

    #[test]
    fn notices_are_found_by_digest() {
        let (_dir, mut store) = open();
        assert_eq!(store.last_notice("abc").unwrap(), None);
        let notice = NoticeRecord { owner: None, channel: "webhook".into(), digest: "abc".into(), keys: 2 };
        store.record(&Change { notices: vec![notice.clone()], ..Change::default() }, ts("2026-11-28T12:00:00Z"), "alice").unwrap();
        store.record(&Change { notices: vec![notice], ..Change::default() }, ts("2026-11-29T12:00:00Z"), "alice").unwrap();
        assert_eq!(store.last_notice("abc").unwrap(), Some(ts("2026-11-29T12:00:00Z")));
    }

    #[test]
    fn a_change_is_all_or_nothing() {
        let (_dir, mut store) = open();
        // Two exemptions for one user in one change break the one-open index
        // only if the first is not replaced; a bad audit line fails the whole.
        let bad_line = AuditEntry {
            at: ts("2026-11-28T12:00:00Z"),
            actor: "x".into(),
            rotation_id: Some("no-such-rotation".into()),
            event: "suppressed".into(),
            from_stage: None,
            to_stage: None,
            aws_request_id: None,
            detail: serde_json::json!({}),
        };
        let change = Change { open: vec![exempt("a", None)], finding_updates: vec![update("a", None)], audit: vec![bad_line], ..Change::default() };
        assert!(store.record(&change, ts("2026-11-28T12:00:00Z"), "alice").is_err());
        assert!(store.open_exemptions().unwrap().is_empty());
        assert!(store.pending_finding_updates().unwrap().is_empty());
    }
}
