//! The DynamoDB backend: one table that any number of runners share (a CI
//! cron, an ECS task, a Kubernetes CronJob, two schedulers for
//! availability). The design, also in `docs/state.md`:
//!
//! | item | `pk` | `sk` |
//! |---|---|---|
//! | rotation (with its lease) | `rotation#ID` | `rotation` |
//! | guard: one unfinished rotation per key | `key#ACCOUNT#KEY_ID` | `open` |
//! | audit event | `audit` | sequence number, 20 digits |
//! | next audit and outbox sequence numbers | `counter` | `seq` |
//! | open exemption (one per user) | `exemption#open` | `ACCOUNT#USER` |
//! | ended exemption | `exemption#ended` | `CREATED#ACCOUNT#USER#ENDED` |
//! | pending / sent finding update | `outbox` / `outbox#sent` | sequence number |
//! | notice | `notice` | `DIGEST#SENT_AT#CHANNEL#OWNER` |
//! | owner's last reminder digest | `reminder#owner` | `-` (unowned) or `=OWNER` |
//! | key's last reminder moment | `reminder#key` | `ACCOUNT#USER#CREATED` |
//! | migrated elsewhere (`rekey state migrate`) | `migrated` | `migrated` |
//!
//! - A save and its audit events and finding notes are one
//!   `TransactWriteItems`: the rotation's update is conditioned on the lease
//!   (holder and expiry), each audit event is a put conditioned on its
//!   sequence number being free, and the counter moves from the value read
//!   to the next one (no overwrite, no gap). A lost race on the counter
//!   retries; a lost lease is [`StoreError::LeaseLost`].
//! - Sparse indexes: `queue` holds working rotations (`due`, at their next
//!   check) and blocked ones, with only their id and account, so `run`
//!   reads only what is due;
//!   `phase` holds every rotation by start time (`open`/`closed`) for
//!   `status`; `audit_by_rotation` serves `history ID`.
//! - On-demand billing, point-in-time recovery, and TTL (`expires_at`) only
//!   on sent finding updates, which may expire.
//! - A transaction holds at most 100 writes: a stakeholder change of many
//!   users commits in several, in order (exemptions, notices, audit lines,
//!   notes), each write whole with what it depends on.
//! - What starts something (a new rotation, a lease, a stakeholder change)
//!   is a transaction with a check that the `migrated` item is absent: once
//!   `rekey state migrate` put it, nothing new starts here.
//!
//! The code: `items.rs` encodes records as items and reads them back,
//! `transact.rs` commits writes together, `table.rs` creates and checks
//! the table; this file is the [`StateStore`] on top of them.

mod items;
mod table;
mod transact;

pub use table::{valid_table_name, TableDescription};

use crate::stakeholders::{owner_key, Change, Ended, ExemptionEnd, ExemptionRecord, FindingUpdate, NewFindingUpdate, OwnerReminded, RemindersSent};
use crate::{AuditEntry, Due, HistoryQuery, Item, ListQuery, Migrated, Outlook, Result, RotationRecord, Each, StateStore, StoreError};
use async_trait::async_trait;
use futures::{stream, StreamExt, TryStreamExt};
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder;
use aws_sdk_dynamodb::types::{Delete, Put, PutRequest, TransactWriteItem, WriteRequest};
use aws_sdk_dynamodb::Client;
use items::{
    key_reminded_from, key_reminded_item, owner_reminded_from, owner_reminded_item, KEYS_REMINDED, OWNERS_REMINDED,
    audit_from, audit_item, exemption_from, exemption_item, get_s, get_time, guard_key, key, migrated_key, n, notice_from, notice_item, open_exemption_key, opt_n, opt_s, outbox_from,
    outbox_item, present, rotation_fields, rotation_from, rotation_item, rotation_key, s, seq_key, Attrs, Expr,
};
use jiff::Timestamp;
use rekey_core::model::{AccessKeyId, AccountId, UserName};
use rekey_core::workflow::Stage;
use std::collections::HashMap;
use table::{Index, INDEXES};
use transact::{open_count, recount, Refusal, Write};

/// `BatchWriteItem`s in flight at once in a migration.
const BATCHES_IN_FLIGHT: usize = 4;

pub struct DynamoStore {
    client: Client,
    table: String,
}

impl DynamoStore {
    pub fn new(client: Client, table: &str) -> DynamoStore {
        DynamoStore { client, table: table.to_owned() }
    }

    fn fail<E>(&self, operation: &'static str, e: SdkError<E, aws_sdk_dynamodb::config::http::HttpResponse>) -> StoreError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        if e.code() == Some("ResourceNotFoundException") {
            return StoreError::Refused(format!("the DynamoDB state table {} does not exist: create it with `rekey state init` (or correct [state] table or --state)", self.table));
        }
        StoreError::Dynamo { table: self.table.clone(), cause: rekey_aws_error::classify(operation, "DynamoDB", e) }
    }

    /// Unfinished rotations by stage, from the counter (one read, whatever
    /// their number).
    async fn open_counts(&self) -> Result<Vec<(Stage, usize)>> {
        let item = self.get_item(key("counter", "seq")).await?.unwrap_or_default();
        let mut counts = Vec::new();
        for stage in Stage::ALL {
            let Some(name) = open_count(stage) else { continue };
            match opt_n(&item, &name)? {
                Some(n) if n > 0 => counts.push((stage, n as usize)),
                Some(n) if n < 0 => return Err(crate::bad("count", format!("{name} is {n}"))),
                _ => {}
            }
        }
        Ok(counts)
    }

    /// A conditional update of one rotation's lease: false when the
    /// condition does not hold (another holder, or no such rotation).
    async fn lease_update(&self, id: &str, expr: Expr, update: String, condition: String) -> Result<bool> {
        let out = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(rotation_key(id)))
            .update_expression(update)
            .condition_expression(condition)
            .set_expression_attribute_names(expr.names())
            .set_expression_attribute_values(expr.values())
            .send()
            .await;
        match out {
            Ok(_) => Ok(true),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_conditional_check_failed_exception()) => Ok(false),
            Err(e) => Err(self.fail("dynamodb:UpdateItem", e)),
        }
    }

    /// Every page of `query`, item by item.
    async fn pages(&self, query: QueryFluentBuilder, each: &mut (dyn FnMut(&Attrs) -> Result<bool> + Send)) -> Result<()> {
        let mut start = None;
        loop {
            let out = query.clone().set_exclusive_start_key(start).send().await.map_err(|e| self.fail("dynamodb:Query", e))?;
            for item in out.items() {
                if !each(item)? {
                    return Ok(());
                }
            }
            match out.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => return Ok(()),
            }
        }
    }

    /// Items of partition `pk` (with `sk` beginning with `prefix`), in order.
    fn partition(&self, pk: &str, prefix: Option<&str>, forward: bool) -> QueryFluentBuilder {
        let mut expr = Expr::default();
        let mut condition = format!("{} = {}", expr.name("pk"), expr.value(s(pk)));
        if let Some(prefix) = prefix {
            condition += &format!(" AND begins_with({}, {})", expr.name("sk"), expr.value(s(prefix)));
        }
        self.client
            .query()
            .table_name(&self.table)
            .key_condition_expression(condition)
            .set_expression_attribute_names(expr.names())
            .set_expression_attribute_values(expr.values())
            .consistent_read(true)
            .scan_index_forward(forward)
    }

    /// A sparse index's entries whose hash key is `value`, optionally with
    /// the range key at most / at least a number.
    fn index(&self, index: &Index, value: &str, range: Option<(&str, i64)>) -> (QueryFluentBuilder, Expr) {
        let mut expr = Expr::default();
        let mut condition = format!("{} = {}", expr.name(index.hash), expr.value(s(value)));
        if let Some((op, bound)) = range {
            condition += &format!(" AND {} {op} {}", expr.name(index.range), expr.value(n(bound)));
        }
        let query = self.client.query().table_name(&self.table).index_name(index.name).key_condition_expression(condition);
        (query, expr)
    }

    fn with(query: QueryFluentBuilder, expr: &Expr) -> QueryFluentBuilder {
        query.set_expression_attribute_names(expr.names()).set_expression_attribute_values(expr.values())
    }

    async fn get_item(&self, key: Attrs) -> Result<Option<Attrs>> {
        let out = self.client.get_item().table_name(&self.table).set_key(Some(key)).consistent_read(true).send().await.map_err(|e| self.fail("dynamodb:GetItem", e))?;
        Ok(out.item)
    }

    /// Rotations of one phase, oldest first, from `since`; pages of at most
    /// `page` (a `--limit` reads no more than it shows).
    async fn phase(&self, phase: &str, since: Option<Timestamp>, page: Option<usize>, each: &mut (dyn FnMut(&Attrs) -> Result<bool> + Send)) -> Result<()> {
        let (query, expr) = self.index(&INDEXES[1], phase, since.map(|t| (">=", t.as_second())));
        let page = page.map(|n| n.clamp(1, 1000) as i32);
        self.pages(Self::with(query, &expr).set_limit(page), each).await
    }

    /// Writes `items` in `BatchWriteItem`s of 25 (DynamoDB's most), a few at
    /// once: one after another, a migration waited on every round trip and
    /// never came near a table's write capacity. What the table leaves
    /// unprocessed (out of capacity) is sent again with backoff.
    async fn batch_put(&self, items: Vec<Attrs>) -> Result<()> {
        // invariant: the builder's required fields are all set here
        let mut requests = items.into_iter().map(|i| WriteRequest::builder().put_request(PutRequest::builder().set_item(Some(i)).build().expect("item")).build()).peekable();
        let mut batches = Vec::new();
        while requests.peek().is_some() {
            batches.push(requests.by_ref().take(25).collect::<Vec<_>>());
        }
        stream::iter(batches).map(|batch| self.put_batch(batch)).buffer_unordered(BATCHES_IN_FLIGHT).try_collect().await
    }

    async fn put_batch(&self, mut requests: Vec<WriteRequest>) -> Result<()> {
        for attempt in 0..10u64 {
            let out = self.client.batch_write_item().request_items(&self.table, requests).send().await.map_err(|e| self.fail("dynamodb:BatchWriteItem", e))?;
            requests = out.unprocessed_items.and_then(|mut m| m.remove(&self.table)).unwrap_or_default();
            if requests.is_empty() {
                return Ok(());
            }
            tokio::time::sleep(std::time::Duration::from_millis(50 << attempt.min(5))).await;
        }
        Err(StoreError::Refused(format!("{}: {} items left unprocessed by BatchWriteItem after 10 attempts", self.table, requests.len())))
    }
}

#[async_trait]
impl StateStore for DynamoStore {
    fn location(&self) -> String {
        format!("DynamoDB table {}", self.table)
    }

    async fn insert(&self, rotation: &RotationRecord, audit: &AuditEntry, updates: &[NewFindingUpdate]) -> Result<()> {
        let guard = present(vec![("rotation_id", Some(s(&rotation.id)))], guard_key(&rotation.account_id, &rotation.old_key_id));
        let mut group = vec![self.new_item(rotation_item(rotation), Refusal::Never)];
        if !rotation.stage.is_terminal() {
            group.push(self.new_item(guard, Refusal::AlreadyRotating(Box::new(rotation.clone()))));
        }
        group.extend(recount(None, rotation.stage));
        group.extend(Self::audit_groups(std::slice::from_ref(audit), updates, rotation.started_at));
        self.transact(vec![group], true).await
    }

    async fn get(&self, id: &str) -> Result<RotationRecord> {
        self.get_item(rotation_key(id)).await?.map(|i| rotation_from(&i)).ok_or_else(|| StoreError::NoSuchRotation(id.to_owned()))?
    }

    async fn list(&self, query: &ListQuery, each: Each<'_, RotationRecord>) -> Result<()> {
        let mut left = query.limit.unwrap_or(usize::MAX);
        let phases: &[&str] = if query.all { &["open", "closed"] } else { &["open"] };
        for phase in phases {
            if left == 0 {
                break;
            }
            self.phase(phase, query.since, query.limit, &mut |item| {
                each(rotation_from(item)?)?;
                left -= 1;
                Ok(left > 0)
            })
            .await?;
        }
        Ok(())
    }

    async fn open_rotation(&self, account_id: &AccountId, old_key_id: &AccessKeyId) -> Result<Option<String>> {
        self.get_item(guard_key(account_id, old_key_id)).await?.map_or(Ok(None), |i| opt_s(&i, "rotation_id"))
    }

    async fn due(&self, now: Timestamp) -> Result<Vec<Due>> {
        let (query, expr) = self.index(&INDEXES[0], "due", Some(("<=", now.as_second())));
        let mut due = Vec::new();
        self.pages(Self::with(query, &expr), &mut |item| {
            due.push(Due { id: get_s(item, "id")?, account_id: AccountId::new(get_s(item, "account_id")?) });
            Ok(true)
        })
        .await?;
        Ok(due)
    }

    async fn outlook(&self) -> Result<Outlook> {
        let counts = self.open_counts().await?;
        let waiting = counts.iter().filter(|(s, _)| s.is_working()).map(|(_, n)| n).sum();
        let blocked = counts.iter().filter(|(s, _)| *s == Stage::Blocked).map(|(_, n)| n).sum();
        let (query, expr) = self.index(&INDEXES[0], "due", Some((">=", 1)));
        let mut next_due = None;
        self.pages(Self::with(query, &expr).limit(1), &mut |item| {
            next_due = Some(get_time(item, "queue_at")?);
            Ok(false)
        })
        .await?;
        Ok(Outlook { waiting, next_due, blocked })
    }

    async fn open_by_stage(&self) -> Result<(Vec<(Stage, usize)>, Option<Timestamp>)> {
        let mut oldest = None;
        let (query, expr) = self.index(&INDEXES[1], "open", None);
        self.pages(Self::with(query, &expr).limit(1), &mut |item| {
            oldest = Some(get_time(item, "started_at")?);
            Ok(false)
        })
        .await?;
        Ok((self.open_counts().await?, oldest))
    }

    async fn try_lease(&self, id: &str, owner: &str, now: Timestamp, until: Timestamp) -> Result<bool> {
        let mut expr = Expr::default();
        let (o, u) = (expr.name("lease_owner"), expr.name("lease_until"));
        let (me, now, until) = (expr.value(s(owner)), expr.value(n(now.as_second())), expr.value(n(until.as_second())));
        let condition = format!("attribute_exists(pk) AND (attribute_not_exists({o}) OR {o} = {me} OR {u} < {now})");
        self.fenced_lease_update(id, expr, format!("SET {o} = {me}, {u} = {until}"), condition).await
    }

    async fn renew(&self, id: &str, owner: &str, now: Timestamp, until: Timestamp) -> Result<bool> {
        let mut expr = Expr::default();
        let (o, u) = (expr.name("lease_owner"), expr.name("lease_until"));
        let (me, now, until) = (expr.value(s(owner)), expr.value(n(now.as_second())), expr.value(n(until.as_second())));
        self.lease_update(id, expr, format!("SET {u} = {until}"), format!("{o} = {me} AND {u} >= {now}")).await
    }

    async fn lease_holder(&self, id: &str) -> Result<Option<String>> {
        self.get_item(rotation_key(id)).await?.map_or(Ok(None), |i| opt_s(&i, "lease_owner"))
    }

    async fn take_over(&self, id: &str, stale_owner: &str, owner: &str, until: Timestamp) -> Result<bool> {
        let mut expr = Expr::default();
        let (o, u) = (expr.name("lease_owner"), expr.name("lease_until"));
        let (stale, me, until) = (expr.value(s(stale_owner)), expr.value(s(owner)), expr.value(n(until.as_second())));
        self.fenced_lease_update(id, expr, format!("SET {o} = {me}, {u} = {until}"), format!("{o} = {stale}")).await
    }

    async fn release(&self, id: &str, owner: &str) -> Result<()> {
        let mut expr = Expr::default();
        let (o, u) = (expr.name("lease_owner"), expr.name("lease_until"));
        let me = expr.value(s(owner));
        self.lease_update(id, expr, format!("REMOVE {o}, {u}"), format!("{o} = {me}")).await?;
        Ok(())
    }

    async fn leases(&self, now: Timestamp) -> Result<Vec<(String, String)>> {
        let mut held = Vec::new();
        for phase in ["open", "closed"] {
            self.phase(phase, None, None, &mut |item| {
                if let (Some(owner), Some(until)) = (opt_s(item, "lease_owner")?, opt_n(item, "lease_until")?) {
                    if until >= now.as_second() {
                        held.push((get_s(item, "id")?, owner));
                    }
                }
                Ok(true)
            })
            .await?;
        }
        held.sort();
        Ok(held)
    }

    async fn save(&self, rotation: &RotationRecord, was: Stage, lease_owner: &str, now: Timestamp, audit: &[AuditEntry], updates: &[NewFindingUpdate]) -> Result<()> {
        let mut expr = Expr::default();
        let mut fields = rotation_fields(rotation);
        fields.retain(|(name, _)| !["id", "account_id", "user_name", "old_key_id", "started_at"].contains(name));
        let update = expr.set_or_remove(fields);
        let (o, u) = (expr.name("lease_owner"), expr.name("lease_until"));
        let stage = expr.name("stage");
        let condition = format!("{o} = {} AND {u} >= {} AND {stage} = {}", expr.value(s(lease_owner)), expr.value(n(now.as_second())), expr.value(s(was.as_str())));
        let write = TransactWriteItem::builder().update(self.update(rotation_key(&rotation.id), &expr, update, Some(condition))).build();
        let mut group = vec![Write::Item { write: Box::new(write), refused: Refusal::LeaseLost(rotation.id.clone()) }];
        if rotation.stage.is_terminal() {
            // The key may be rotated again; the guard may be gone already.
            group.push(self.plain(TransactWriteItem::builder().delete(self.delete(guard_key(&rotation.account_id, &rotation.old_key_id))).build()));
        }
        group.extend(recount(Some(was), rotation.stage));
        group.extend(Self::audit_groups(audit, updates, now));
        self.transact(vec![group], false).await
    }

    async fn history(&self, query: &HistoryQuery, each: Each<'_, AuditEntry>) -> Result<()> {
        let since = query.since.map_or(i64::MIN, |t| t.as_second());
        let forward = query.limit.is_none();
        let base = match &query.rotation_id {
            Some(id) => {
                let (q, expr) = self.index(&INDEXES[2], id, None);
                Self::with(q, &expr).scan_index_forward(forward)
            }
            None => self.partition("audit", None, forward),
        };
        let Some(limit) = query.limit else {
            return self
                .pages(base, &mut |item| {
                    let (_, entry) = audit_from(item)?;
                    if entry.at.as_second() >= since {
                        each(entry)?;
                    }
                    Ok(true)
                })
                .await;
        };
        // The newest `limit`, read backwards, then given oldest first.
        let mut newest = Vec::new();
        self.pages(base, &mut |item| {
            let (_, entry) = audit_from(item)?;
            if entry.at.as_second() >= since {
                newest.push(entry);
            }
            Ok(newest.len() < limit)
        })
        .await?;
        newest.into_iter().rev().try_for_each(each)
    }

    async fn record(&self, change: &Change, at: Timestamp, actor: &str) -> Result<()> {
        let mut groups = Vec::new();
        let mut open_now: HashMap<(AccountId, UserName), Attrs> = HashMap::new();
        for (account, user) in change.open.iter().map(|e| (&e.account_id, &e.user_name)).chain(change.end.iter().map(|e| (&e.account_id, &e.user_name))) {
            if let Some(item) = self.get_item(open_exemption_key(account, user)).await? {
                open_now.insert((account.clone(), user.clone()), item);
            }
        }
        let mut ending = |account: &AccountId, user: &UserName, how: Ended, group: &mut Vec<Write>| -> Result<()> {
            if let Some(item) = open_now.remove(&(account.clone(), user.clone())) {
                let (record, _) = exemption_from(&item)?;
                let end = ExemptionEnd { at, by: actor.to_owned(), how };
                group.push(self.plain(TransactWriteItem::builder().put(self.put(exemption_item(&record, Some(&end)), None)).build()));
            }
            Ok(())
        };
        for e in &change.open {
            let mut group = Vec::new();
            ending(&e.account_id, &e.user_name, Ended::Replaced, &mut group)?;
            group.push(self.plain(TransactWriteItem::builder().put(self.put(exemption_item(e, None), None)).build()));
            groups.push(group);
        }
        for e in &change.end {
            let mut group = Vec::new();
            ending(&e.account_id, &e.user_name, e.how, &mut group)?;
            if !group.is_empty() {
                group.push(self.plain(TransactWriteItem::builder().delete(self.delete(open_exemption_key(&e.account_id, &e.user_name))).build()));
            }
            groups.push(group);
        }
        for notice in &change.notices {
            groups.push(vec![self.plain(TransactWriteItem::builder().put(self.put(notice_item(notice, at, actor), None)).build())]);
        }
        for reminder in &change.reminders {
            // The keys' moments first: a digest of more keys than one
            // transaction holds, cut short, sends no key twice.
            let put = |item| vec![self.plain(TransactWriteItem::builder().put(self.put(item, None)).build())];
            groups.extend(reminder.keys.iter().map(|k| put(key_reminded_item(k))));
            groups.push(put(owner_reminded_item(&OwnerReminded { owner: reminder.owner.clone(), last_sent_at: at })));
        }
        for line in &change.audit {
            let mut group = self.rotations_exist(std::slice::from_ref(line));
            group.push(Write::Audit(line.clone()));
            groups.push(group);
        }
        groups.extend(change.finding_updates.iter().map(|u| vec![Write::Outbox(u.clone(), at)]));
        self.transact(groups.into_iter().filter(|g| !g.is_empty()).collect(), true).await
    }

    async fn open_exemptions(&self) -> Result<Vec<ExemptionRecord>> {
        let mut open = Vec::new();
        self.pages(self.partition("exemption#open", None, true), &mut |item| {
            open.push(exemption_from(item)?.0);
            Ok(true)
        })
        .await?;
        Ok(open)
    }

    async fn pending_finding_updates(&self) -> Result<Vec<FindingUpdate>> {
        let mut pending = Vec::new();
        self.pages(self.partition("outbox", None, true), &mut |item| {
            pending.push(outbox_from(item)?.0);
            Ok(true)
        })
        .await?;
        Ok(pending)
    }

    async fn finding_updates_sent(&self, seqs: &[i64], at: Timestamp) -> Result<()> {
        let mut groups = Vec::new();
        for seq in seqs {
            let Some(item) = self.get_item(key("outbox", seq_key(*seq))).await? else { continue };
            let (mut update, _) = outbox_from(&item)?;
            (update.attempts, update.last_error) = (update.attempts + 1, None);
            groups.push(vec![
                self.plain(TransactWriteItem::builder().delete(self.delete(key("outbox", seq_key(*seq)))).build()),
                self.plain(TransactWriteItem::builder().put(self.put(outbox_item(&update, Some(at)), None)).build()),
            ]);
        }
        self.transact(groups, false).await
    }

    async fn finding_updates_failed(&self, seqs: &[i64], error: &str, audit: &[AuditEntry]) -> Result<()> {
        let mut group = Vec::new();
        for seq in seqs {
            let mut expr = Expr::default();
            let update = format!("SET {a} = {a} + {one}, {e} = {error}", a = expr.name("attempts"), one = expr.value(n(1)), e = expr.name("last_error"), error = expr.value(s(error)));
            let condition = Some("attribute_exists(pk)".to_owned());
            group.push(self.plain(TransactWriteItem::builder().update(self.update(key("outbox", seq_key(*seq)), &expr, update, condition)).build()));
        }
        group.extend(Self::audit_groups(audit, &[], Timestamp::now()));
        self.transact(vec![group], false).await
    }

    async fn last_notice(&self, digest: &str) -> Result<Option<Timestamp>> {
        let mut last = None;
        self.pages(self.partition("notice", Some(&format!("{digest}#")), false).limit(1), &mut |item| {
            last = Some(get_time(item, "sent_at")?);
            Ok(false)
        })
        .await?;
        Ok(last)
    }

    async fn reminders_sent(&self) -> Result<RemindersSent> {
        let mut sent = RemindersSent::default();
        self.pages(self.partition(OWNERS_REMINDED, None, true), &mut |item| {
            sent.owners.push(owner_reminded_from(item)?);
            Ok(true)
        })
        .await?;
        self.pages(self.partition(KEYS_REMINDED, None, true), &mut |item| {
            sent.keys.push(key_reminded_from(item)?);
            Ok(true)
        })
        .await?;
        // SQLite's order, whatever the sort keys' bytes.
        sent.owners.sort_by_key(|o| crate::stakeholders::owner_key(o.owner.as_deref()));
        sent.keys.sort_by(|a, b| (&a.account_id, &a.user_name, a.key_created_at).cmp(&(&b.account_id, &b.user_name, b.key_created_at)));
        Ok(sent)
    }

    async fn swap_last_reminder(&self, owner: Option<&str>, from: Option<Timestamp>, to: Option<Timestamp>) -> Result<bool> {
        let mut expr = Expr::default();
        let condition = match from {
            Some(at) => format!("{} = {}", expr.name("last_sent_at"), expr.value(n(at.as_second()))),
            None => "attribute_not_exists(pk)".to_owned(),
        };
        let write = match to {
            Some(at) => TransactWriteItem::builder().put(
                Put::builder()
                    .table_name(&self.table)
                    .set_item(Some(owner_reminded_item(&OwnerReminded { owner: owner.map(str::to_owned), last_sent_at: at })))
                    .condition_expression(condition)
                    .set_expression_attribute_names(expr.names())
                    .set_expression_attribute_values(expr.values())
                    .build()
                    // invariant: the builder's required fields are all set here
                    .expect("table and item are set"),
            ),
            None => TransactWriteItem::builder().delete(
                Delete::builder()
                    .table_name(&self.table)
                    .set_key(Some(key(OWNERS_REMINDED, owner_key(owner))))
                    .condition_expression(condition)
                    .set_expression_attribute_names(expr.names())
                    .set_expression_attribute_values(expr.values())
                    .build()
                    // invariant: the builder's required fields are all set here
                    .expect("table and key are set"),
            ),
        };
        self.fenced_if(write.build()).await
    }

    async fn export(&self, each: Each<'_, Item>) -> Result<()> {
        // Streamed page by page, in the table's order (the checksum does not
        // depend on it): nothing is held, whatever the table holds.
        for phase in ["open", "closed"] {
            self.phase(phase, None, None, &mut |item| {
                each(Item::Rotation(rotation_from(item)?))?;
                Ok(true)
            })
            .await?;
        }
        self.pages(self.partition("audit", None, true), &mut |item| {
            let (seq, entry) = audit_from(item)?;
            each(Item::Audit { seq, entry })?;
            Ok(true)
        })
        .await?;
        for pk in ["exemption#ended", "exemption#open"] {
            self.pages(self.partition(pk, None, true), &mut |item| {
                let (record, ended) = exemption_from(item)?;
                each(Item::Exemption { record, ended })?;
                Ok(true)
            })
            .await?;
        }
        for pk in ["outbox", "outbox#sent"] {
            self.pages(self.partition(pk, None, true), &mut |item| {
                let (update, sent_at) = outbox_from(item)?;
                each(Item::FindingUpdate { update, sent_at })?;
                Ok(true)
            })
            .await?;
        }
        self.pages(self.partition("notice", None, true), &mut |item| {
            each(notice_from(item)?)?;
            Ok(true)
        })
        .await?;
        crate::dump::reminder_items(self.reminders_sent().await?).try_for_each(each)
    }

    async fn import(&self, items: &[Item]) -> Result<()> {
        let (mut audit, mut outbox) = (0, 0);
        let mut counts: HashMap<Stage, i64> = HashMap::new();
        let mut puts = Vec::new();
        for item in items {
            match item {
                Item::Rotation(r) => {
                    if !r.stage.is_terminal() {
                        puts.push(present(vec![("rotation_id", Some(s(&r.id)))], guard_key(&r.account_id, &r.old_key_id)));
                        *counts.entry(r.stage).or_default() += 1;
                    }
                    puts.push(rotation_item(r));
                }
                Item::Audit { seq, entry } => {
                    audit = audit.max(*seq);
                    puts.push(audit_item(*seq, entry));
                }
                Item::Exemption { record, ended } => puts.push(exemption_item(record, ended.as_ref())),
                Item::FindingUpdate { update, sent_at } => {
                    outbox = outbox.max(update.seq);
                    puts.push(outbox_item(update, *sent_at));
                }
                Item::Notice { notice, sent_at, by } => puts.push(notice_item(notice, *sent_at, by)),
                Item::OwnerReminded(o) => puts.push(owner_reminded_item(o)),
                Item::KeyReminded(k) => puts.push(key_reminded_item(k)),
            }
        }
        self.batch_put(puts).await?;
        // The counter moves past what was imported (never back), and counts
        // the unfinished rotations it brought.
        let (next_audit, next_outbox, _) = self.counter().await?;
        let mut expr = Expr::default();
        let mut update = format!(
            "SET {} = {}, {} = {}",
            expr.name("audit"),
            expr.value(n(next_audit.max(audit + 1))),
            expr.name("outbox"),
            expr.value(n(next_outbox.max(outbox + 1)))
        );
        let adds: Vec<String> = counts.iter().filter_map(|(stage, k)| Some(format!("{} {}", expr.name(&open_count(*stage)?), expr.value(n(*k))))).collect();
        if !adds.is_empty() {
            update += &format!(" ADD {}", adds.join(", "));
        }
        self.client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key("counter", "seq")))
            .update_expression(update)
            .set_expression_attribute_names(expr.names())
            .set_expression_attribute_values(expr.values())
            .send()
            .await
            .map_err(|e| self.fail("dynamodb:UpdateItem", e))?;
        Ok(())
    }

    async fn is_empty(&self) -> Result<bool> {
        let out = self.client.scan().table_name(&self.table).limit(1).send().await.map_err(|e| self.fail("dynamodb:Scan", e))?;
        Ok(out.items().is_empty() && out.last_evaluated_key.is_none_or(|k| k.is_empty()))
    }

    async fn migrated(&self) -> Result<Option<Migrated>> {
        let Some(item) = self.get_item(migrated_key()).await? else { return Ok(None) };
        Ok(Some(Migrated { to: get_s(&item, "to")?, at: get_time(&item, "at")?, by: get_s(&item, "by")? }))
    }

    async fn mark_migrated(&self, migrated: &Migrated, audit: &AuditEntry) -> Result<()> {
        let fields = vec![("to", Some(s(&migrated.to))), ("at", Some(n(migrated.at.as_second()))), ("by", Some(s(&migrated.by)))];
        let mark = TransactWriteItem::builder().put(self.put(present(fields, migrated_key()), Some("attribute_not_exists(pk)"))).build();
        let group = vec![Write::Item { write: Box::new(mark), refused: Refusal::Migrated }, Write::Audit(audit.clone())];
        self.transact(vec![group], false).await
    }
}