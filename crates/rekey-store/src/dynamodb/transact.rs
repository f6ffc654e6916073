//! How writes commit together. A save, its audit lines and its finding
//! notes go whole into one `TransactWriteItems`, with the move of the
//! sequence counter and (for what starts something) the migration fence; a
//! cancelled transaction is read back into what it means (a lost lease, a
//! lost race on the counter, a migrated store). Kept apart from the store's
//! methods because this is the one place that atomicity, the 100-write
//! limit and the counter's races are handled.

use super::items::{audit_item, get_n, key, migrated_key, n, outbox_item, rotation_key, Attrs, Expr};
use super::DynamoStore;
use crate::stakeholders::{FindingUpdate, NewFindingUpdate};
use crate::{AuditEntry, Result, RotationRecord, StateStore, StoreError};
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::types::{ConditionCheck, Delete, Put, TransactWriteItem, Update};
use jiff::Timestamp;
use rekey_core::workflow::Stage;
use std::collections::HashMap;

/// A transaction holds at most 100 writes; one is the counter's, one the
/// migration fence's.
const MAX_WRITES: usize = 98;
/// Retries of a transaction that lost a race on the counter.
const RACES: u32 = 50;

/// One write of a transaction, or one that needs a sequence number (given
/// when the transaction is built, from the counter just read).
pub(super) enum Write {
    Item { write: Box<TransactWriteItem>, refused: Refusal },
    Audit(AuditEntry),
    Outbox(NewFindingUpdate, Timestamp),
    /// Unfinished rotations in a stage change by this much (on the counter).
    Count(Stage, i64),
}

/// The counter's attribute of unfinished rotations in `stage`, if it counts.
pub(super) fn open_count(stage: Stage) -> Option<String> {
    (!stage.is_terminal()).then(|| format!("open_{}", stage.as_str()))
}

/// The counts a rotation's move from `was` to `now` changes.
pub(super) fn recount(was: Option<Stage>, now: Stage) -> Vec<Write> {
    if was == Some(now) {
        return Vec::new();
    }
    was.map(|w| Write::Count(w, -1)).into_iter().chain([Write::Count(now, 1)]).filter(|w| matches!(w, Write::Count(s, _) if !s.is_terminal())).collect()
}

/// What a failed condition on a write means.
#[derive(Clone)]
pub(super) enum Refusal {
    /// Cannot fail (or means corruption).
    Never,
    /// Another writer took the sequence number read: read it again.
    Race,
    LeaseLost(String),
    AlreadyRotating(Box<RotationRecord>),
    NoSuchRotation(String),
    /// The store was migrated elsewhere.
    Migrated,
}

/// Why each write of a cancelled transaction failed (`None`: it did not),
/// or `None` if the transaction failed otherwise.
fn cancellation_reasons<R>(e: &SdkError<aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError, R>) -> Option<Vec<Option<String>>> {
    match e.as_service_error() {
        Some(aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError::TransactionCanceledException(c)) => {
            Some(c.cancellation_reasons().iter().map(|r| r.code().filter(|c| *c != "None").map(str::to_owned)).collect())
        }
        _ => None,
    }
}

impl DynamoStore {
    pub(super) fn put(&self, item: Attrs, condition: Option<&str>) -> Put {
        // invariant: the builder's required fields are all set here
        Put::builder().table_name(&self.table).set_item(Some(item)).set_condition_expression(condition.map(str::to_owned)).build().expect("table and item are set")
    }

    pub(super) fn delete(&self, key: Attrs) -> Delete {
        // invariant: the builder's required fields are all set here
        Delete::builder().table_name(&self.table).set_key(Some(key)).build().expect("table and key are set")
    }

    pub(super) fn update(&self, key: Attrs, expr: &Expr, update: String, condition: Option<String>) -> Update {
        Update::builder()
            .table_name(&self.table)
            .set_key(Some(key))
            .update_expression(update)
            .set_condition_expression(condition)
            .set_expression_attribute_names(expr.names())
            .set_expression_attribute_values(expr.values())
            .build()
            // invariant: the builder's required fields are all set here
            .expect("table, key and expression are set")
    }

    pub(super) fn new_item(&self, item: Attrs, refused: Refusal) -> Write {
        Write::Item { write: Box::new(TransactWriteItem::builder().put(self.put(item, Some("attribute_not_exists(pk)"))).build()), refused }
    }

    pub(super) fn plain(&self, write: TransactWriteItem) -> Write {
        Write::Item { write: Box::new(write), refused: Refusal::Never }
    }

    /// The next audit and outbox sequence numbers, read consistently.
    pub(super) async fn counter(&self) -> Result<(i64, i64, bool)> {
        match self.get_item(key("counter", "seq")).await? {
            None => Ok((1, 1, false)),
            Some(item) => Ok((get_n(&item, "audit")?, get_n(&item, "outbox")?, true)),
        }
    }

    /// Commits `groups` of writes, each group whole in one transaction
    /// (several groups share one while they fit). Audit events and finding
    /// updates get their sequence numbers from the counter, which moves in
    /// the same transaction; a race on it is retried.
    /// `fenced`: each transaction also checks that the store was not
    /// migrated.
    pub(super) async fn transact(&self, groups: Vec<Vec<Write>>, fenced: bool) -> Result<()> {
        let mut batch: Vec<Write> = Vec::new();
        for group in groups {
            let size = group.len();
            if size > MAX_WRITES {
                return Err(StoreError::Refused(format!("one change of {size} writes is more than DynamoDB's transaction holds ({MAX_WRITES})")));
            }
            if batch.len() + size > MAX_WRITES {
                self.commit(&std::mem::take(&mut batch), fenced).await?;
            }
            batch.extend(group);
        }
        if !batch.is_empty() {
            self.commit(&batch, fenced).await?;
        }
        Ok(())
    }

    /// A check that the store was not migrated, in a transaction.
    fn fence_check(&self) -> TransactWriteItem {
        // invariant: the builder's required fields are all set here
        let check = ConditionCheck::builder().table_name(&self.table).set_key(Some(migrated_key())).condition_expression("attribute_not_exists(pk)").build().expect("table, key, condition");
        TransactWriteItem::builder().condition_check(check).build()
    }

    fn fence(&self) -> Write {
        Write::Item { write: Box::new(self.fence_check()), refused: Refusal::Migrated }
    }

    /// The error for a fence that failed: where the store went.
    async fn refused_as_migrated(&self) -> StoreError {
        match self.migrated().await {
            Ok(Some(migrated)) => StoreError::Migrated { from: self.location(), migrated },
            Ok(None) => StoreError::Refused(format!("{}: a check that the store was not migrated failed, yet it is not: try again", self.location())),
            Err(e) => e,
        }
    }

    async fn commit(&self, writes: &[Write], fenced: bool) -> Result<()> {
        let fence = fenced.then(|| self.fence());
        for attempt in 1..=RACES {
            let (audit, outbox, exists) = self.counter().await?;
            let (mut next_audit, mut next_outbox) = (audit, outbox);
            let mut items = Vec::new();
            let mut refusals = Vec::new();
            let mut counts: HashMap<Stage, i64> = HashMap::new();
            for w in fence.iter().chain(writes) {
                let (item, refused) = match w {
                    Write::Count(stage, delta) => {
                        *counts.entry(*stage).or_default() += delta;
                        continue;
                    }
                    Write::Item { write, refused } => ((**write).clone(), refused.clone()),
                    Write::Audit(entry) => {
                        next_audit += 1;
                        (TransactWriteItem::builder().put(self.put(audit_item(next_audit - 1, entry), Some("attribute_not_exists(pk)"))).build(), Refusal::Race)
                    }
                    Write::Outbox(update, at) => {
                        next_outbox += 1;
                        let pending = FindingUpdate { seq: next_outbox - 1, update: update.clone(), created_at: *at, attempts: 0, last_error: None };
                        (TransactWriteItem::builder().put(self.put(outbox_item(&pending, None), Some("attribute_not_exists(pk)"))).build(), Refusal::Race)
                    }
                };
                items.push(item);
                refusals.push(refused);
            }
            let counter_index = items.len();
            counts.retain(|_, delta| *delta != 0);
            if (next_audit, next_outbox) != (audit, outbox) || !counts.is_empty() {
                let mut expr = Expr::default();
                let (a, o) = (expr.name("audit"), expr.name("outbox"));
                let condition = if exists {
                    format!("{a} = {} AND {o} = {}", expr.value(n(audit)), expr.value(n(outbox)))
                } else {
                    "attribute_not_exists(pk)".to_owned()
                };
                let mut update = format!("SET {a} = {}, {o} = {}", expr.value(n(next_audit)), expr.value(n(next_outbox)));
                let adds: Vec<String> = counts.iter().filter_map(|(stage, delta)| Some(format!("{} {}", expr.name(&open_count(*stage)?), expr.value(n(*delta))))).collect();
                if !adds.is_empty() {
                    update += &format!(" ADD {}", adds.join(", "));
                }
                items.push(TransactWriteItem::builder().update(self.update(key("counter", "seq"), &expr, update, Some(condition))).build());
            }
            let result = self.client.transact_write_items().set_transact_items(Some(items)).send().await;
            let Err(e) = result else { return Ok(()) };
            let Some(reasons) = cancellation_reasons(&e) else { return Err(self.fail("dynamodb:TransactWriteItems", e)) };
            let mut race = false;
            for (i, code) in reasons.iter().enumerate() {
                match code.as_deref() {
                    None => {}
                    Some("TransactionConflict") => race = true,
                    Some("ConditionalCheckFailed") if i == counter_index => race = true,
                    Some("ConditionalCheckFailed") => match refusals.get(i).cloned().unwrap_or(Refusal::Never) {
                        Refusal::Race => race = true,
                        Refusal::LeaseLost(id) => return Err(StoreError::LeaseLost(id)),
                        Refusal::NoSuchRotation(id) => return Err(StoreError::NoSuchRotation(id)),
                        Refusal::AlreadyRotating(r) => return Err(self.already_rotating(&r).await),
                        Refusal::Migrated => return Err(self.refused_as_migrated().await),
                        Refusal::Never => return Err(self.fail("dynamodb:TransactWriteItems", e)),
                    },
                    Some(_) => return Err(self.fail("dynamodb:TransactWriteItems", e)),
                }
            }
            if !race {
                return Err(self.fail("dynamodb:TransactWriteItems", e));
            }
            // Another writer took these sequence numbers: read them again.
            tokio::time::sleep(std::time::Duration::from_millis(u64::from(attempt.min(10)) * 7)).await;
        }
        Err(StoreError::Refused(format!("{}: lost {RACES} races for the audit sequence in a row; try again", self.table)))
    }

    async fn already_rotating(&self, r: &RotationRecord) -> StoreError {
        match self.open_rotation(&r.account_id, &r.old_key_id).await {
            Ok(id) => StoreError::AlreadyRotating { id: id.unwrap_or_else(|| "another rotation".into()), user_name: r.user_name.clone(), old_key_id: r.old_key_id.clone() },
            Err(e) => e,
        }
    }

    /// Takes a lease (`try_lease`, `take_over`): the rotation's conditional
    /// update and the migration fence in one transaction. False when the
    /// lease's condition does not hold, or when other writers kept the item
    /// busy through every retry (someone else is at it).
    pub(super) async fn fenced_lease_update(&self, id: &str, expr: Expr, update: String, condition: String) -> Result<bool> {
        self.fenced_if(TransactWriteItem::builder().update(self.update(rotation_key(id), &expr, update, Some(condition))).build()).await
    }

    /// One conditional write and the migration fence in one transaction:
    /// false when the write's condition does not hold, or when other
    /// writers kept the item busy through every retry.
    pub(super) async fn fenced_if(&self, write: TransactWriteItem) -> Result<bool> {
        for attempt in 1..=RACES {
            let out = self.client.transact_write_items().transact_items(self.fence_check()).transact_items(write.clone()).send().await;
            let Err(e) = out else { return Ok(true) };
            let Some(reasons) = cancellation_reasons(&e) else { return Err(self.fail("dynamodb:TransactWriteItems", e)) };
            match (reasons.first().cloned().flatten().as_deref(), reasons.get(1).cloned().flatten().as_deref()) {
                (Some("ConditionalCheckFailed"), _) => return Err(self.refused_as_migrated().await),
                (_, Some("ConditionalCheckFailed")) => return Ok(false),
                (Some("TransactionConflict"), _) | (_, Some("TransactionConflict")) => {
                    tokio::time::sleep(std::time::Duration::from_millis(u64::from(attempt.min(10)) * 7)).await;
                }
                _ => return Err(self.fail("dynamodb:TransactWriteItems", e)),
            }
        }
        Ok(false)
    }

    pub(super) fn audit_groups(audit: &[AuditEntry], updates: &[NewFindingUpdate], at: Timestamp) -> Vec<Write> {
        audit.iter().cloned().map(Write::Audit).chain(updates.iter().cloned().map(|u| Write::Outbox(u, at))).collect()
    }

    /// Audit lines about rotations need the rotation to exist (as SQLite's
    /// foreign key does).
    pub(super) fn rotations_exist(&self, audit: &[AuditEntry]) -> Vec<Write> {
        let ids: std::collections::BTreeSet<&str> = audit.iter().filter_map(|a| a.rotation_id.as_deref()).collect();
        ids.into_iter()
            .map(|id| {
                // invariant: the builder's required fields are all set here
                let check = ConditionCheck::builder().table_name(&self.table).set_key(Some(rotation_key(id))).condition_expression("attribute_exists(pk)").build().expect("table, key, condition");
                Write::Item { write: Box::new(TransactWriteItem::builder().condition_check(check).build()), refused: Refusal::NoSuchRotation(id.to_owned()) }
            })
            .collect()
    }
}
