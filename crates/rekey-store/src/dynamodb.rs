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

use crate::stakeholders::{Change, Ended, ExemptionEnd, ExemptionRecord, FindingUpdate, NewFindingUpdate, NoticeRecord};
use crate::{json, stage, timestamp, AuditEntry, Due, HistoryQuery, Item, ListQuery, Migrated, Outlook, Result, RotationRecord, Each, StateStore, StoreError};
use async_trait::async_trait;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, ConditionCheck, Delete, GlobalSecondaryIndex, KeySchemaElement, KeyType, PointInTimeRecoverySpecification, Projection,
    ProjectionType, Put, PutRequest, ScalarAttributeType, SseSpecification, TableStatus, TimeToLiveSpecification, TransactWriteItem, Update, WriteRequest,
};
use aws_sdk_dynamodb::Client;
use jiff::{SignedDuration, Timestamp};
use rekey_core::hub::Workflow;
use rekey_core::workflow::Stage;
use std::collections::HashMap;

type Attrs = HashMap<String, AttributeValue>;

/// How long a sent finding update is kept before TTL removes it.
const KEEP_SENT: SignedDuration = SignedDuration::from_hours(30 * 24);
/// A transaction holds at most 100 writes; one is the counter's, one the
/// migration fence's.
const MAX_WRITES: usize = 98;
/// Retries of a transaction that lost a race on the counter.
const RACES: u32 = 50;

pub fn valid_table_name(name: &str) -> bool {
    (3..=255).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
}

pub struct DynamoStore {
    client: Client,
    table: String,
}

/// What `rekey state init` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableDescription {
    pub created: bool,
    pub arn: String,
}

/// The table: its keys and indexes, for `create_table` and for the
/// CloudFormation that `rekey state init --print` prints.
struct Index {
    name: &'static str,
    hash: &'static str,
    range: &'static str,
    /// Attributes besides the keys; `None` projects them all.
    include: Option<&'static [&'static str]>,
}

const INDEXES: [Index; 3] = [
    // What `run` needs of a due rotation: its id and account, nothing more.
    Index { name: "queue", hash: "queue", range: "queue_at", include: Some(&["id", "account_id"]) },
    Index { name: "phase", hash: "phase", range: "started_at", include: None },
    Index { name: "audit_by_rotation", hash: "rotation_id", range: "seq", include: None },
];

/// Attribute types of every key: `pk`/`sk` and the indexes'.
const KEY_ATTRIBUTES: [(&str, &str); 8] =
    [("pk", "S"), ("sk", "S"), ("queue", "S"), ("queue_at", "N"), ("phase", "S"), ("started_at", "N"), ("rotation_id", "S"), ("seq", "N")];

const TTL_ATTRIBUTE: &str = "expires_at";

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: i64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn key(pk: impl Into<String>, sk: impl Into<String>) -> Attrs {
    HashMap::from([("pk".to_owned(), s(pk)), ("sk".to_owned(), s(sk))])
}

fn seq_key(seq: i64) -> String {
    format!("{seq:020}")
}

fn rotation_key(id: &str) -> Attrs {
    key(format!("rotation#{id}"), "rotation")
}

fn guard_key(account: &str, old_key_id: &str) -> Attrs {
    key(format!("key#{account}#{old_key_id}"), "open")
}

fn migrated_key() -> Attrs {
    key("migrated", "migrated")
}

fn open_exemption_key(account: &str, user: &str) -> Attrs {
    key("exemption#open", format!("{account}#{user}"))
}

/// Names and values of one expression, with `#name` placeholders for
/// every attribute (many of ours are reserved words: `at`, `by`, `keys`).
#[derive(Default)]
struct Expr {
    names: HashMap<String, String>,
    values: Attrs,
}

impl Expr {
    fn name(&mut self, name: &str) -> String {
        let placeholder = format!("#{name}");
        self.names.insert(placeholder.clone(), name.to_owned());
        placeholder
    }

    fn value(&mut self, v: AttributeValue) -> String {
        let placeholder = format!(":v{}", self.values.len());
        self.values.insert(placeholder.clone(), v);
        placeholder
    }

    /// `SET a = :x, ...` and `REMOVE b, ...` for the given fields.
    fn set_or_remove(&mut self, fields: Vec<(&str, Option<AttributeValue>)>) -> String {
        let (mut set, mut remove) = (Vec::new(), Vec::new());
        for (name, value) in fields {
            let n = self.name(name);
            match value {
                Some(v) => set.push(format!("{n} = {}", self.value(v))),
                None => remove.push(n),
            }
        }
        let mut out = String::new();
        if !set.is_empty() {
            out += &format!("SET {}", set.join(", "));
        }
        if !remove.is_empty() {
            out += &format!(" REMOVE {}", remove.join(", "));
        }
        out
    }

    fn names(&self) -> Option<HashMap<String, String>> {
        Some(self.names.clone()).filter(|m| !m.is_empty())
    }

    fn values(&self) -> Option<Attrs> {
        Some(self.values.clone()).filter(|m| !m.is_empty())
    }
}

/// One write of a transaction, or one that needs a sequence number (given
/// when the transaction is built, from the counter just read).
enum Write {
    Item { write: Box<TransactWriteItem>, refused: Refusal },
    Audit(AuditEntry),
    Outbox(NewFindingUpdate, Timestamp),
    /// Unfinished rotations in a stage change by this much (on the counter).
    Count(Stage, i64),
}

/// The counter's attribute of unfinished rotations in `stage`, if it counts.
fn open_count(stage: Stage) -> Option<String> {
    (!stage.is_terminal()).then(|| format!("open_{}", stage.as_str()))
}

/// The counts a rotation's move from `was` to `now` changes.
fn recount(was: Option<Stage>, now: Stage) -> Vec<Write> {
    if was == Some(now) {
        return Vec::new();
    }
    was.map(|w| Write::Count(w, -1)).into_iter().chain([Write::Count(now, 1)]).filter(|w| matches!(w, Write::Count(s, _) if !s.is_terminal())).collect()
}

/// What a failed condition on a write means.
#[derive(Clone)]
enum Refusal {
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

fn get_s(item: &Attrs, name: &'static str) -> Result<String> {
    opt_s(item, name)?.ok_or_else(|| crate::bad("item", format!("no {name}")))
}

fn opt_s(item: &Attrs, name: &'static str) -> Result<Option<String>> {
    match item.get(name) {
        None | Some(AttributeValue::Null(_)) => Ok(None),
        Some(AttributeValue::S(v)) => Ok(Some(v.clone())),
        Some(other) => Err(crate::bad("item", format!("{name} is {other:?}, not a string"))),
    }
}

fn get_n(item: &Attrs, name: &'static str) -> Result<i64> {
    opt_n(item, name)?.ok_or_else(|| crate::bad("item", format!("no {name}")))
}

fn opt_n(item: &Attrs, name: &str) -> Result<Option<i64>> {
    match item.get(name) {
        None | Some(AttributeValue::Null(_)) => Ok(None),
        Some(AttributeValue::N(v)) => v.parse().map(Some).map_err(|e| crate::bad("item", format!("{name}: {e}"))),
        Some(other) => Err(crate::bad("item", format!("{name} is {other:?}, not a number"))),
    }
}

fn opt_time(item: &Attrs, name: &'static str) -> Result<Option<Timestamp>> {
    opt_n(item, name)?.map(timestamp).transpose()
}

fn get_time(item: &Attrs, name: &'static str) -> Result<Timestamp> {
    timestamp(get_n(item, name)?)
}

/// The rotation's fields, and the index attributes its stage implies.
fn rotation_fields(r: &RotationRecord) -> Vec<(&'static str, Option<AttributeValue>)> {
    let (queue, queue_at) = if r.stage.is_working() {
        (Some(s("due")), Some(n(r.next_check_at.map_or(0, |t| t.as_second()))))
    } else if r.stage == Stage::Blocked {
        (Some(s("blocked")), Some(n(r.updated_at.as_second())))
    } else {
        (None, None)
    };
    vec![
        ("id", Some(s(&r.id))),
        ("account_id", Some(s(&r.account_id))),
        ("user_name", Some(s(&r.user_name))),
        ("old_key_id", Some(s(&r.old_key_id))),
        ("new_key_id", r.new_key_id.as_deref().map(s)),
        ("stage", Some(s(r.stage.as_str()))),
        ("came_from", r.came_from.map(|c| s(c.as_str()))),
        ("blocked_reason", r.blocked_reason.as_deref().map(s)),
        ("plan", Some(s(r.plan.to_string()))),
        ("progress", Some(s(r.progress.to_string()))),
        ("started_at", Some(n(r.started_at.as_second()))),
        ("updated_at", Some(n(r.updated_at.as_second()))),
        ("next_check_at", r.next_check_at.map(|t| n(t.as_second()))),
        ("queue", queue),
        ("queue_at", queue_at),
        ("phase", Some(s(if r.stage.is_terminal() { "closed" } else { "open" }))),
    ]
}

fn present(fields: Vec<(&'static str, Option<AttributeValue>)>, mut into: Attrs) -> Attrs {
    into.extend(fields.into_iter().filter_map(|(k, v)| Some((k.to_owned(), v?))));
    into
}

fn rotation_item(r: &RotationRecord) -> Attrs {
    present(rotation_fields(r), rotation_key(&r.id))
}

fn rotation_from(item: &Attrs) -> Result<RotationRecord> {
    Ok(RotationRecord {
        id: get_s(item, "id")?,
        account_id: get_s(item, "account_id")?,
        user_name: get_s(item, "user_name")?,
        old_key_id: get_s(item, "old_key_id")?,
        new_key_id: opt_s(item, "new_key_id")?,
        stage: stage(&get_s(item, "stage")?)?,
        came_from: opt_s(item, "came_from")?.as_deref().map(stage).transpose()?,
        blocked_reason: opt_s(item, "blocked_reason")?,
        plan: json("plan", &get_s(item, "plan")?)?,
        progress: json("progress", &get_s(item, "progress")?)?,
        started_at: get_time(item, "started_at")?,
        updated_at: get_time(item, "updated_at")?,
        next_check_at: opt_time(item, "next_check_at")?,
    })
}

fn audit_item(seq: i64, e: &AuditEntry) -> Attrs {
    let fields = vec![
        ("seq", Some(n(seq))),
        ("at", Some(n(e.at.as_second()))),
        ("actor", Some(s(&e.actor))),
        ("rotation_id", e.rotation_id.as_deref().map(s)),
        ("event", Some(s(&e.event))),
        ("from_stage", e.from_stage.map(|st| s(st.as_str()))),
        ("to_stage", e.to_stage.map(|st| s(st.as_str()))),
        ("aws_request_id", e.aws_request_id.as_deref().map(s)),
        ("detail", Some(s(e.detail.to_string()))),
    ];
    present(fields, key("audit", seq_key(seq)))
}

fn audit_from(item: &Attrs) -> Result<(i64, AuditEntry)> {
    let entry = AuditEntry {
        at: get_time(item, "at")?,
        actor: get_s(item, "actor")?,
        rotation_id: opt_s(item, "rotation_id")?,
        event: get_s(item, "event")?,
        from_stage: opt_s(item, "from_stage")?.as_deref().map(stage).transpose()?,
        to_stage: opt_s(item, "to_stage")?.as_deref().map(stage).transpose()?,
        aws_request_id: opt_s(item, "aws_request_id")?,
        detail: json("audit detail", &get_s(item, "detail")?)?,
    };
    Ok((get_n(item, "seq")?, entry))
}

fn outbox_item(u: &FindingUpdate, sent_at: Option<Timestamp>) -> Attrs {
    let partition = if sent_at.is_some() { "outbox#sent" } else { "outbox" };
    let fields = vec![
        ("seq", Some(n(u.seq))),
        ("account_id", Some(s(&u.update.account_id))),
        ("user_name", Some(s(&u.update.user_name))),
        ("workflow", u.update.workflow.map(|w| s(w.as_str()))),
        ("note", Some(s(&u.update.note))),
        ("created_at", Some(n(u.created_at.as_second()))),
        ("attempts", Some(n(u.attempts.into()))),
        ("last_error", u.last_error.as_deref().map(s)),
        ("sent_at", sent_at.map(|t| n(t.as_second()))),
        (TTL_ATTRIBUTE, sent_at.map(|t| n((t + KEEP_SENT).as_second()))),
    ];
    present(fields, key(partition, seq_key(u.seq)))
}

fn outbox_from(item: &Attrs) -> Result<(FindingUpdate, Option<Timestamp>)> {
    let workflow = opt_s(item, "workflow")?.map(|w| w.parse::<Workflow>().map_err(|e| crate::bad("workflow", e))).transpose()?;
    let update = FindingUpdate {
        seq: get_n(item, "seq")?,
        update: NewFindingUpdate { account_id: get_s(item, "account_id")?, user_name: get_s(item, "user_name")?, workflow, note: get_s(item, "note")? },
        created_at: get_time(item, "created_at")?,
        attempts: u32::try_from(get_n(item, "attempts")?).map_err(|e| crate::bad("attempts", e))?,
        last_error: opt_s(item, "last_error")?,
    };
    Ok((update, opt_time(item, "sent_at")?))
}

fn exemption_item(e: &ExemptionRecord, ended: Option<&ExemptionEnd>) -> Attrs {
    let key = match ended {
        None => open_exemption_key(&e.account_id, &e.user_name),
        Some(end) => key("exemption#ended", format!("{}#{}#{}#{}", seq_key(e.created_at.as_second()), e.account_id, e.user_name, seq_key(end.at.as_second()))),
    };
    let fields = vec![
        ("account_id", Some(s(&e.account_id))),
        ("user_name", Some(s(&e.user_name))),
        ("reason", Some(s(&e.reason))),
        ("until", e.until.map(|t| n(t.as_second()))),
        ("by", Some(s(&e.by))),
        ("created_at", Some(n(e.created_at.as_second()))),
        ("ended_at", ended.map(|x| n(x.at.as_second()))),
        ("ended_by", ended.map(|x| s(&x.by))),
        ("ended_how", ended.map(|x| s(x.how.as_str()))),
    ];
    present(fields, key)
}

fn exemption_from(item: &Attrs) -> Result<(ExemptionRecord, Option<ExemptionEnd>)> {
    let record = ExemptionRecord {
        account_id: get_s(item, "account_id")?,
        user_name: get_s(item, "user_name")?,
        reason: get_s(item, "reason")?,
        until: opt_time(item, "until")?,
        by: get_s(item, "by")?,
        created_at: get_time(item, "created_at")?,
    };
    let ended = match (opt_time(item, "ended_at")?, opt_s(item, "ended_by")?, opt_s(item, "ended_how")?) {
        (Some(at), Some(by), Some(how)) => Some(ExemptionEnd { at, by, how: how.parse().map_err(|e| crate::bad("exemption end", e))? }),
        _ => None,
    };
    Ok((record, ended))
}

fn notice_item(notice: &NoticeRecord, sent_at: Timestamp, by: &str) -> Attrs {
    let sk = format!("{}#{}#{}#{}", notice.digest, seq_key(sent_at.as_second()), notice.channel, notice.owner.as_deref().unwrap_or(""));
    let fields = vec![
        ("owner", notice.owner.as_deref().map(s)),
        ("channel", Some(s(&notice.channel))),
        ("digest", Some(s(&notice.digest))),
        ("keys", Some(n(notice.keys as i64))),
        ("sent_at", Some(n(sent_at.as_second()))),
        ("by", Some(s(by))),
    ];
    present(fields, key("notice", sk))
}

fn notice_from(item: &Attrs) -> Result<Item> {
    let notice = NoticeRecord {
        owner: opt_s(item, "owner")?,
        channel: get_s(item, "channel")?,
        digest: get_s(item, "digest")?,
        keys: usize::try_from(get_n(item, "keys")?).map_err(|e| crate::bad("keys", e))?,
    };
    Ok(Item::Notice { notice, sent_at: get_time(item, "sent_at")?, by: get_s(item, "by")? })
}

impl DynamoStore {
    pub fn new(client: Client, table: &str) -> DynamoStore {
        DynamoStore { client, table: table.to_owned() }
    }

    fn fail<E, R>(&self, operation: &'static str, e: SdkError<E, R>) -> StoreError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
        R: std::fmt::Debug + 'static,
    {
        if e.code() == Some("ResourceNotFoundException") {
            return StoreError::Refused(format!("the DynamoDB state table {} does not exist: create it with `rekey state init` (or correct [state] table or --state)", self.table));
        }
        StoreError::Dynamo { table: self.table.clone(), cause: rekey_aws_error::classify(operation, "DynamoDB", e) }
    }

    fn put(&self, item: Attrs, condition: Option<&str>) -> Put {
        // invariant: the builder's required fields are all set here
        Put::builder().table_name(&self.table).set_item(Some(item)).set_condition_expression(condition.map(str::to_owned)).build().expect("table and item are set")
    }

    fn delete(&self, key: Attrs) -> Delete {
        // invariant: the builder's required fields are all set here
        Delete::builder().table_name(&self.table).set_key(Some(key)).build().expect("table and key are set")
    }

    fn update(&self, key: Attrs, expr: &Expr, update: String, condition: Option<String>) -> Update {
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

    fn new_item(&self, item: Attrs, refused: Refusal) -> Write {
        Write::Item { write: Box::new(TransactWriteItem::builder().put(self.put(item, Some("attribute_not_exists(pk)"))).build()), refused }
    }

    fn plain(&self, write: TransactWriteItem) -> Write {
        Write::Item { write: Box::new(write), refused: Refusal::Never }
    }

    /// The next audit and outbox sequence numbers, read consistently.
    async fn counter(&self) -> Result<(i64, i64, bool)> {
        match self.get_item(key("counter", "seq")).await? {
            None => Ok((1, 1, false)),
            Some(item) => Ok((get_n(&item, "audit")?, get_n(&item, "outbox")?, true)),
        }
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

    /// Commits `groups` of writes, each group whole in one transaction
    /// (several groups share one while they fit). Audit events and finding
    /// updates get their sequence numbers from the counter, which moves in
    /// the same transaction; a race on it is retried.
    /// `fenced`: each transaction also checks that the store was not
    /// migrated.
    async fn transact(&self, groups: Vec<Vec<Write>>, fenced: bool) -> Result<()> {
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

    /// Takes a lease (`try_lease`, `take_over`): the rotation's conditional
    /// update and the migration fence in one transaction. False when the
    /// lease's condition does not hold, or when other writers kept the item
    /// busy through every retry (someone else is at it).
    async fn fenced_lease_update(&self, id: &str, expr: Expr, update: String, condition: String) -> Result<bool> {
        let lease = TransactWriteItem::builder().update(self.update(rotation_key(id), &expr, update, Some(condition))).build();
        for attempt in 1..=RACES {
            let out = self.client.transact_write_items().transact_items(self.fence_check()).transact_items(lease.clone()).send().await;
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

    /// Creates the table with its indexes, point-in-time recovery and TTL,
    /// or checks that an existing one has the right keys and indexes.
    pub async fn create_table(&self) -> Result<TableDescription> {
        let created = match self.describe().await? {
            Some(table) => {
                self.check_shape(&table)?;
                false
            }
            None => {
                let mut create = self.client.create_table().table_name(&self.table).billing_mode(BillingMode::PayPerRequest);
                for (name, kind) in KEY_ATTRIBUTES {
                    let kind = if kind == "S" { ScalarAttributeType::S } else { ScalarAttributeType::N };
                    // invariant: the builder's required fields are all set here
                    create = create.attribute_definitions(AttributeDefinition::builder().attribute_name(name).attribute_type(kind).build().expect("name and type"));
                }
                let schema = |hash: &str, range: &str| {
                    vec![
                        // invariant: the builder's required fields are all set here
                        KeySchemaElement::builder().attribute_name(hash).key_type(KeyType::Hash).build().expect("name and type"),
                        // invariant: the builder's required fields are all set here
                        KeySchemaElement::builder().attribute_name(range).key_type(KeyType::Range).build().expect("name and type"),
                    ]
                };
                create = create.set_key_schema(Some(schema("pk", "sk")));
                for index in &INDEXES {
                    let projection = match index.include {
                        Some(names) => Projection::builder().projection_type(ProjectionType::Include).set_non_key_attributes(Some(names.iter().map(|n| n.to_string()).collect())).build(),
                        None => Projection::builder().projection_type(ProjectionType::All).build(),
                    };
                    let gsi = GlobalSecondaryIndex::builder()
                        .index_name(index.name)
                        .set_key_schema(Some(schema(index.hash, index.range)))
                        .projection(projection)
                        .build()
                        // invariant: the builder's required fields are all set here
                        .expect("name, schema and projection");
                    create = create.global_secondary_indexes(gsi);
                }
                create.sse_specification(SseSpecification::builder().enabled(true).build()).send().await.map_err(|e| self.fail("dynamodb:CreateTable", e))?;
                true
            }
        };
        let arn = self.wait_active().await?;
        // invariant: the builder's required fields are all set here
        let ttl = TimeToLiveSpecification::builder().enabled(true).attribute_name(TTL_ATTRIBUTE).build().expect("enabled and name");
        let ttl_now = self.client.describe_time_to_live().table_name(&self.table).send().await.map_err(|e| self.fail("dynamodb:DescribeTimeToLive", e))?;
        if ttl_now.time_to_live_description.and_then(|d| d.attribute_name).as_deref() != Some(TTL_ATTRIBUTE) {
            self.client.update_time_to_live().table_name(&self.table).time_to_live_specification(ttl).send().await.map_err(|e| self.fail("dynamodb:UpdateTimeToLive", e))?;
        }
        // invariant: the builder's required fields are all set here
        let pitr = PointInTimeRecoverySpecification::builder().point_in_time_recovery_enabled(true).build().expect("enabled");
        self.client
            .update_continuous_backups()
            .table_name(&self.table)
            .point_in_time_recovery_specification(pitr)
            .send()
            .await
            .map_err(|e| self.fail("dynamodb:UpdateContinuousBackups", e))?;
        Ok(TableDescription { created, arn })
    }

    async fn describe(&self) -> Result<Option<aws_sdk_dynamodb::types::TableDescription>> {
        match self.client.describe_table().table_name(&self.table).send().await {
            Ok(out) => Ok(out.table),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_resource_not_found_exception()) => Ok(None),
            Err(e) => Err(self.fail("dynamodb:DescribeTable", e)),
        }
    }

    /// An existing table is used only if its keys and indexes are ours.
    fn check_shape(&self, table: &aws_sdk_dynamodb::types::TableDescription) -> Result<()> {
        let keys: Vec<&str> = table.key_schema().iter().map(|k| k.attribute_name()).collect();
        let mut indexes: Vec<&str> = table.global_secondary_indexes().iter().filter_map(|i| i.index_name()).collect();
        indexes.sort_unstable();
        let mut ours: Vec<&str> = INDEXES.iter().map(|i| i.name).collect();
        ours.sort_unstable();
        if keys != ["pk", "sk"] || indexes != ours {
            return Err(StoreError::Refused(format!(
                "the table {} exists but is not a rekey state table (keys {keys:?}, indexes {indexes:?}; expected [\"pk\", \"sk\"] and {ours:?})",
                self.table
            )));
        }
        Ok(())
    }

    /// Waits (bounded) until the table and its indexes are ACTIVE.
    async fn wait_active(&self) -> Result<String> {
        for _ in 0..300 {
            if let Some(t) = self.describe().await? {
                let indexes_active = t.global_secondary_indexes().iter().all(|i| i.index_status().is_none_or(|s| s.as_str() == "ACTIVE"));
                if t.table_status() == Some(&TableStatus::Active) && indexes_active {
                    return Ok(t.table_arn().unwrap_or_default().to_owned());
                }
            }
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        }
        Err(StoreError::Refused(format!("the table {} did not become ACTIVE within 5 minutes", self.table)))
    }

    /// The table as a CloudFormation template (`rekey state init --print`).
    pub fn cloudformation(table: &str) -> serde_json::Value {
        use serde_json::json;
        let schema = |hash: &str, range: &str| json!([{"AttributeName": hash, "KeyType": "HASH"}, {"AttributeName": range, "KeyType": "RANGE"}]);
        let indexes: Vec<_> = INDEXES
            .iter()
            .map(|i| {
                let projection = match i.include {
                    Some(names) => json!({"ProjectionType": "INCLUDE", "NonKeyAttributes": names}),
                    None => json!({"ProjectionType": "ALL"}),
                };
                json!({"IndexName": i.name, "KeySchema": schema(i.hash, i.range), "Projection": projection})
            })
            .collect();
        let attributes: Vec<_> = KEY_ATTRIBUTES.iter().map(|(name, kind)| json!({"AttributeName": name, "AttributeType": kind})).collect();
        json!({
            "AWSTemplateFormatVersion": "2010-09-09",
            "Description": "rekey state table: rotations, leases and the audit log (rekey state init --print)",
            "Resources": {
                "RekeyStateTable": {
                    "Type": "AWS::DynamoDB::Table",
                    "DeletionPolicy": "Retain",
                    "UpdateReplacePolicy": "Retain",
                    "Properties": {
                        "TableName": table,
                        "BillingMode": "PAY_PER_REQUEST",
                        "AttributeDefinitions": attributes,
                        "KeySchema": schema("pk", "sk"),
                        "GlobalSecondaryIndexes": indexes,
                        "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": true},
                        "TimeToLiveSpecification": {"AttributeName": TTL_ATTRIBUTE, "Enabled": true},
                        "SSESpecification": {"SSEEnabled": true}
                    }
                }
            },
            "Outputs": {"TableArn": {"Value": {"Fn::GetAtt": ["RekeyStateTable", "Arn"]}}}
        })
    }

    fn audit_groups(audit: &[AuditEntry], updates: &[NewFindingUpdate], at: Timestamp) -> Vec<Write> {
        audit.iter().cloned().map(Write::Audit).chain(updates.iter().cloned().map(|u| Write::Outbox(u, at))).collect()
    }

    /// Audit lines about rotations need the rotation to exist (as SQLite's
    /// foreign key does).
    fn rotations_exist(&self, audit: &[AuditEntry]) -> Vec<Write> {
        let ids: std::collections::BTreeSet<&str> = audit.iter().filter_map(|a| a.rotation_id.as_deref()).collect();
        ids.into_iter()
            .map(|id| {
                // invariant: the builder's required fields are all set here
                let check = ConditionCheck::builder().table_name(&self.table).set_key(Some(rotation_key(id))).condition_expression("attribute_exists(pk)").build().expect("table, key, condition");
                Write::Item { write: Box::new(TransactWriteItem::builder().condition_check(check).build()), refused: Refusal::NoSuchRotation(id.to_owned()) }
            })
            .collect()
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

    async fn batch_put(&self, items: Vec<Attrs>) -> Result<()> {
        for chunk in items.chunks(25) {
            // invariant: the builder's required fields are all set here
            let mut requests: Vec<WriteRequest> = chunk.iter().map(|i| WriteRequest::builder().put_request(PutRequest::builder().set_item(Some(i.clone())).build().expect("item")).build()).collect();
            for attempt in 0..10u64 {
                let out = self.client.batch_write_item().request_items(&self.table, requests).send().await.map_err(|e| self.fail("dynamodb:BatchWriteItem", e))?;
                requests = out.unprocessed_items.and_then(|mut m| m.remove(&self.table)).unwrap_or_default();
                if requests.is_empty() {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(50 << attempt.min(5))).await;
            }
            if !requests.is_empty() {
                return Err(StoreError::Refused(format!("{}: {} items left unprocessed by BatchWriteItem after 10 attempts", self.table, requests.len())));
            }
        }
        Ok(())
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

    async fn open_rotation(&self, account_id: &str, old_key_id: &str) -> Result<Option<String>> {
        self.get_item(guard_key(account_id, old_key_id)).await?.map_or(Ok(None), |i| opt_s(&i, "rotation_id"))
    }

    async fn due(&self, now: Timestamp) -> Result<Vec<Due>> {
        let (query, expr) = self.index(&INDEXES[0], "due", Some(("<=", now.as_second())));
        let mut due = Vec::new();
        self.pages(Self::with(query, &expr), &mut |item| {
            due.push(Due { id: get_s(item, "id")?, account_id: get_s(item, "account_id")? });
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
        let mut open_now: HashMap<(String, String), Attrs> = HashMap::new();
        for (account, user) in change.open.iter().map(|e| (&e.account_id, &e.user_name)).chain(change.end.iter().map(|e| (&e.account_id, &e.user_name))) {
            if let Some(item) = self.get_item(open_exemption_key(account, user)).await? {
                open_now.insert((account.clone(), user.clone()), item);
            }
        }
        let mut ending = |account: &str, user: &str, how: Ended, group: &mut Vec<Write>| -> Result<()> {
            if let Some(item) = open_now.remove(&(account.to_owned(), user.to_owned())) {
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

    async fn export(&self, each: Each<'_, Item>) -> Result<()> {
        // The order SQLite gives, so that checksums compare across backends.
        let mut rotations = Vec::new();
        for phase in ["open", "closed"] {
            self.phase(phase, None, None, &mut |item| {
                rotations.push(rotation_from(item)?);
                Ok(true)
            })
            .await?;
        }
        rotations.sort_by(|a, b| (a.started_at, &a.id).cmp(&(b.started_at, &b.id)));
        rotations.into_iter().map(Item::Rotation).try_for_each(&mut *each)?;
        self.pages(self.partition("audit", None, true), &mut |item| {
            let (seq, entry) = audit_from(item)?;
            each(Item::Audit { seq, entry })?;
            Ok(true)
        })
        .await?;
        let mut exemptions = Vec::new();
        for pk in ["exemption#ended", "exemption#open"] {
            self.pages(self.partition(pk, None, true), &mut |item| {
                exemptions.push(exemption_from(item)?);
                Ok(true)
            })
            .await?;
        }
        exemptions.sort_by(|(a, x), (b, y)| crate::dump::exemption_order(a, x.as_ref()).cmp(&crate::dump::exemption_order(b, y.as_ref())));
        exemptions.into_iter().map(|(record, ended)| Item::Exemption { record, ended }).try_for_each(&mut *each)?;
        let mut updates = Vec::new();
        for pk in ["outbox", "outbox#sent"] {
            self.pages(self.partition(pk, None, true), &mut |item| {
                updates.push(outbox_from(item)?);
                Ok(true)
            })
            .await?;
        }
        updates.sort_by_key(|(u, _)| u.seq);
        updates.into_iter().map(|(update, sent_at)| Item::FindingUpdate { update, sent_at }).try_for_each(&mut *each)?;
        let mut notices = Vec::new();
        self.pages(self.partition("notice", None, true), &mut |item| {
            notices.push(notice_from(item)?);
            Ok(true)
        })
        .await?;
        notices.sort_by(|a, b| crate::dump::notice_order(a).cmp(&crate::dump::notice_order(b)));
        notices.into_iter().try_for_each(each)
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
