//! How records become DynamoDB items and back, and the key of each kind of
//! item. Every attribute name is written here and nowhere else, so that a
//! record's fields and their encoding change together, and an old item that
//! no longer reads fails here as [`crate::StoreError::Corrupt`]. [`Expr`]
//! belongs here too: it is how attribute names and values enter the
//! update and condition expressions.

use super::table::TTL_ATTRIBUTE;
use crate::stakeholders::{owner_key, ExemptionEnd, ExemptionRecord, FindingUpdate, KeyReminded, NewFindingUpdate, NoticeRecord, OwnerReminded};
use crate::{json, stage, timestamp, AuditEntry, Item, Result, RotationRecord};
use aws_sdk_dynamodb::types::AttributeValue;
use jiff::{SignedDuration, Timestamp};
use rekey_core::hub::Workflow;
use rekey_core::model::{AccessKeyId, AccountId, UserName};
use rekey_core::workflow::Stage;
use std::collections::HashMap;

pub(super) type Attrs = HashMap<String, AttributeValue>;

/// How long a sent finding update is kept before TTL removes it.
const KEEP_SENT: SignedDuration = SignedDuration::from_hours(30 * 24);

pub(super) fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

pub(super) fn n(v: i64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

pub(super) fn key(pk: impl Into<String>, sk: impl Into<String>) -> Attrs {
    HashMap::from([("pk".to_owned(), s(pk)), ("sk".to_owned(), s(sk))])
}

pub(super) fn seq_key(seq: i64) -> String {
    format!("{seq:020}")
}

pub(super) fn rotation_key(id: &str) -> Attrs {
    key(format!("rotation#{id}"), "rotation")
}

pub(super) fn guard_key(account: &AccountId, old_key_id: &AccessKeyId) -> Attrs {
    key(format!("key#{account}#{old_key_id}"), "open")
}

pub(super) fn migrated_key() -> Attrs {
    key("migrated", "migrated")
}

pub(super) fn open_exemption_key(account: &AccountId, user: &UserName) -> Attrs {
    key("exemption#open", format!("{account}#{user}"))
}

/// Names and values of one expression, with `#name` placeholders for
/// every attribute (many of ours are reserved words: `at`, `by`, `keys`).
#[derive(Default)]
pub(super) struct Expr {
    names: HashMap<String, String>,
    values: Attrs,
}

impl Expr {
    pub(super) fn name(&mut self, name: &str) -> String {
        let placeholder = format!("#{name}");
        self.names.insert(placeholder.clone(), name.to_owned());
        placeholder
    }

    pub(super) fn value(&mut self, v: AttributeValue) -> String {
        let placeholder = format!(":v{}", self.values.len());
        self.values.insert(placeholder.clone(), v);
        placeholder
    }

    /// `SET a = :x, ...` and `REMOVE b, ...` for the given fields.
    pub(super) fn set_or_remove(&mut self, fields: Vec<(&str, Option<AttributeValue>)>) -> String {
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

    pub(super) fn names(&self) -> Option<HashMap<String, String>> {
        Some(self.names.clone()).filter(|m| !m.is_empty())
    }

    pub(super) fn values(&self) -> Option<Attrs> {
        Some(self.values.clone()).filter(|m| !m.is_empty())
    }
}

pub(super) fn get_s(item: &Attrs, name: &'static str) -> Result<String> {
    opt_s(item, name)?.ok_or_else(|| crate::bad("item", format!("no {name}")))
}

pub(super) fn opt_s(item: &Attrs, name: &'static str) -> Result<Option<String>> {
    match item.get(name) {
        None | Some(AttributeValue::Null(_)) => Ok(None),
        Some(AttributeValue::S(v)) => Ok(Some(v.clone())),
        Some(other) => Err(crate::bad("item", format!("{name} is {other:?}, not a string"))),
    }
}

pub(super) fn get_n(item: &Attrs, name: &'static str) -> Result<i64> {
    opt_n(item, name)?.ok_or_else(|| crate::bad("item", format!("no {name}")))
}

pub(super) fn opt_n(item: &Attrs, name: &str) -> Result<Option<i64>> {
    match item.get(name) {
        None | Some(AttributeValue::Null(_)) => Ok(None),
        Some(AttributeValue::N(v)) => v.parse().map(Some).map_err(|e| crate::bad("item", format!("{name}: {e}"))),
        Some(other) => Err(crate::bad("item", format!("{name} is {other:?}, not a number"))),
    }
}

pub(super) fn opt_time(item: &Attrs, name: &'static str) -> Result<Option<Timestamp>> {
    opt_n(item, name)?.map(timestamp).transpose()
}

pub(super) fn get_time(item: &Attrs, name: &'static str) -> Result<Timestamp> {
    timestamp(get_n(item, name)?)
}

/// The rotation's fields, and the index attributes its stage implies.
pub(super) fn rotation_fields(r: &RotationRecord) -> Vec<(&'static str, Option<AttributeValue>)> {
    let (queue, queue_at) = if r.stage.is_working() {
        (Some(s("due")), Some(n(r.next_check_at.map_or(0, |t| t.as_second()))))
    } else if r.stage == Stage::Blocked {
        (Some(s("blocked")), Some(n(r.updated_at.as_second())))
    } else {
        (None, None)
    };
    vec![
        ("id", Some(s(&r.id))),
        ("account_id", Some(s(r.account_id.as_str()))),
        ("user_name", Some(s(r.user_name.as_str()))),
        ("old_key_id", Some(s(r.old_key_id.as_str()))),
        ("new_key_id", r.new_key_id.as_ref().map(|k| s(k.as_str()))),
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

pub(super) fn present(fields: Vec<(&'static str, Option<AttributeValue>)>, mut into: Attrs) -> Attrs {
    into.extend(fields.into_iter().filter_map(|(k, v)| Some((k.to_owned(), v?))));
    into
}

pub(super) fn rotation_item(r: &RotationRecord) -> Attrs {
    present(rotation_fields(r), rotation_key(&r.id))
}

pub(super) fn rotation_from(item: &Attrs) -> Result<RotationRecord> {
    Ok(RotationRecord {
        id: get_s(item, "id")?,
        account_id: AccountId::new(get_s(item, "account_id")?),
        user_name: UserName::new(get_s(item, "user_name")?),
        old_key_id: AccessKeyId::new(get_s(item, "old_key_id")?),
        new_key_id: opt_s(item, "new_key_id")?.map(AccessKeyId::new),
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

pub(super) fn audit_item(seq: i64, e: &AuditEntry) -> Attrs {
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

pub(super) fn audit_from(item: &Attrs) -> Result<(i64, AuditEntry)> {
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

pub(super) fn outbox_item(u: &FindingUpdate, sent_at: Option<Timestamp>) -> Attrs {
    let partition = if sent_at.is_some() { "outbox#sent" } else { "outbox" };
    let fields = vec![
        ("seq", Some(n(u.seq))),
        ("account_id", Some(s(u.update.account_id.as_str()))),
        ("user_name", Some(s(u.update.user_name.as_str()))),
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

pub(super) fn outbox_from(item: &Attrs) -> Result<(FindingUpdate, Option<Timestamp>)> {
    let workflow = opt_s(item, "workflow")?.map(|w| w.parse::<Workflow>().map_err(|e| crate::bad("workflow", e))).transpose()?;
    let update = FindingUpdate {
        seq: get_n(item, "seq")?,
        update: NewFindingUpdate { account_id: AccountId::new(get_s(item, "account_id")?), user_name: UserName::new(get_s(item, "user_name")?), workflow, note: get_s(item, "note")? },
        created_at: get_time(item, "created_at")?,
        attempts: u32::try_from(get_n(item, "attempts")?).map_err(|e| crate::bad("attempts", e))?,
        last_error: opt_s(item, "last_error")?,
    };
    Ok((update, opt_time(item, "sent_at")?))
}

pub(super) fn exemption_item(e: &ExemptionRecord, ended: Option<&ExemptionEnd>) -> Attrs {
    let key = match ended {
        None => open_exemption_key(&e.account_id, &e.user_name),
        Some(end) => key("exemption#ended", format!("{}#{}#{}#{}", seq_key(e.created_at.as_second()), e.account_id, e.user_name, seq_key(end.at.as_second()))),
    };
    let fields = vec![
        ("account_id", Some(s(e.account_id.as_str()))),
        ("user_name", Some(s(e.user_name.as_str()))),
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

pub(super) fn exemption_from(item: &Attrs) -> Result<(ExemptionRecord, Option<ExemptionEnd>)> {
    let record = ExemptionRecord {
        account_id: AccountId::new(get_s(item, "account_id")?),
        user_name: UserName::new(get_s(item, "user_name")?),
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

pub(super) fn notice_item(notice: &NoticeRecord, sent_at: Timestamp, by: &str) -> Attrs {
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

pub(super) fn notice_from(item: &Attrs) -> Result<Item> {
    let notice = NoticeRecord {
        owner: opt_s(item, "owner")?,
        channel: get_s(item, "channel")?,
        digest: get_s(item, "digest")?,
        keys: usize::try_from(get_n(item, "keys")?).map_err(|e| crate::bad("keys", e))?,
    };
    Ok(Item::Notice { notice, sent_at: get_time(item, "sent_at")?, by: get_s(item, "by")? })
}

/// The partitions of reminder records: one item per owner, one per key.
pub(super) const OWNERS_REMINDED: &str = "reminder#owner";
pub(super) const KEYS_REMINDED: &str = "reminder#key";

pub(super) fn owner_reminded_item(o: &OwnerReminded) -> Attrs {
    let fields = vec![("owner", o.owner.as_deref().map(s)), ("last_sent_at", Some(n(o.last_sent_at.as_second())))];
    present(fields, key(OWNERS_REMINDED, owner_key(o.owner.as_deref())))
}

pub(super) fn owner_reminded_from(item: &Attrs) -> Result<OwnerReminded> {
    Ok(OwnerReminded { owner: opt_s(item, "owner")?, last_sent_at: get_time(item, "last_sent_at")? })
}

pub(super) fn key_reminded_item(k: &KeyReminded) -> Attrs {
    let sk = format!("{}#{}#{}", k.account_id, k.user_name, seq_key(k.key_created_at.as_second()));
    let fields = vec![
        ("account_id", Some(s(k.account_id.as_str()))),
        ("user_name", Some(s(k.user_name.as_str()))),
        ("key_created_at", Some(n(k.key_created_at.as_second()))),
        ("moment", Some(n(k.moment.as_second()))),
    ];
    present(fields, key(KEYS_REMINDED, sk))
}

pub(super) fn key_reminded_from(item: &Attrs) -> Result<KeyReminded> {
    Ok(KeyReminded {
        account_id: AccountId::new(get_s(item, "account_id")?),
        user_name: UserName::new(get_s(item, "user_name")?),
        key_created_at: get_time(item, "key_created_at")?,
        moment: get_time(item, "moment")?,
    })
}
