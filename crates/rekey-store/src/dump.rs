//! `rekey state migrate`: everything a store holds, as items (each kind
//! after the ones it refers to), copied into an empty store and checked by
//! count and checksum.

use crate::stakeholders::{ExemptionEnd, ExemptionRecord, FindingUpdate, KeyReminded, NoticeRecord, OwnerReminded};
use crate::{AuditEntry, Migrated, Result, RotationRecord, StateStore, StoreError};
use jiff::Timestamp;
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// One thing a store holds, with what identifies it (sequence numbers).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Item {
    Rotation(RotationRecord),
    Audit { seq: i64, entry: AuditEntry },
    Exemption { record: ExemptionRecord, ended: Option<ExemptionEnd> },
    FindingUpdate { update: FindingUpdate, sent_at: Option<Timestamp> },
    Notice { notice: NoticeRecord, sent_at: Timestamp, by: String },
    OwnerReminded(OwnerReminded),
    KeyReminded(KeyReminded),
}

impl Item {
    pub fn kind(&self) -> &'static str {
        match self {
            Item::Rotation(_) => "rotations",
            Item::Audit { .. } => "audit events",
            Item::Exemption { .. } => "exemptions",
            Item::FindingUpdate { .. } => "finding updates",
            Item::Notice { .. } => "notices",
            Item::OwnerReminded(_) => "owners reminded",
            Item::KeyReminded(_) => "keys reminded",
        }
    }
}

/// What a copy moved: items per kind, and a checksum of them all, equal
/// on both sides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Copied {
    pub counts: BTreeMap<&'static str, usize>,
    pub checksum: String,
}

/// Items counted and hashed in whatever order they come: the checksum is
/// the sum, modulo 2^256, of each item's SHA-256. So a backend exports in
/// the order it stores, and need not hold a kind in memory to sort it.
#[derive(Default)]
struct Tally {
    counts: BTreeMap<&'static str, usize>,
    /// Big-endian 64-bit limbs.
    sum: [u64; 4],
}

impl Tally {
    fn add(&mut self, item: &Item) -> Result<()> {
        *self.counts.entry(item.kind()).or_insert(0) += 1;
        let line = serde_json::to_vec(item).map_err(|e| crate::bad("item", e))?;
        let digest = Sha256::digest(&line);
        let mut carry = false;
        for (limb, bytes) in self.sum.iter_mut().zip(digest.chunks_exact(8)).rev() {
            // invariant: chunks_exact(8) yields 8 bytes
            let (partial, over1) = limb.overflowing_add(u64::from_be_bytes(bytes.try_into().expect("8 bytes")));
            let (total, over2) = partial.overflowing_add(u64::from(carry));
            (*limb, carry) = (total, over1 || over2);
        }
        Ok(())
    }

    fn done(self) -> Copied {
        let checksum = self.sum.iter().map(|limb| format!("{limb:016x}")).collect();
        Copied { counts: self.counts, checksum }
    }
}

/// Reads everything `store` holds, counting and hashing it in order.
async fn inventory(store: &dyn StateStore) -> Result<Copied> {
    let mut tally = Tally::default();
    store.export(&mut |item| tally.add(&item)).await?;
    Ok(tally.done())
}

/// Copies every rotation, audit event, exemption, finding update,
/// notice and reminder record from `from` into the empty `to`, then reads `to` back: the same
/// counts and checksum, or an error. Refused while a lease is held (a
/// runner is mid-step) or when `to` holds anything. Needs tokio's
/// multi-thread runtime (it blocks a worker in place per batch).
pub async fn copy(from: &dyn StateStore, to: &dyn StateStore, now: Timestamp) -> Result<Copied> {
    if let Some((id, holder)) = from.leases(now).await?.into_iter().next() {
        return Err(StoreError::Refused(format!("rotation {id} is leased by {holder}: stop every rekey run on {} first", from.location())));
    }
    if !to.is_empty().await? {
        return Err(StoreError::Refused(format!("{} already holds state: migrate only into an empty store", to.location())));
    }
    // Streamed, a batch at a time: memory stays flat whatever the store
    // holds. The export is synchronous (SQLite iterates under its
    // connection) and the import async, so the worker blocks for each
    // batch while the runtime's other workers go on.
    let runtime = tokio::runtime::Handle::current();
    let mut tally = Tally::default();
    let mut batch = Vec::with_capacity(IMPORT_BATCH);
    from.export(&mut |item| {
        tally.add(&item)?;
        batch.push(item);
        if batch.len() == IMPORT_BATCH {
            let full = std::mem::take(&mut batch);
            tokio::task::block_in_place(|| runtime.block_on(to.import(&full)))?;
        }
        Ok(())
    })
    .await?;
    if !batch.is_empty() {
        to.import(&batch).await?;
    }
    let source = tally.done();
    let copied = inventory(to).await?;
    if copied != source {
        return Err(StoreError::Refused(format!(
            "the copy in {} does not match {}: {:?} ({}) against {:?} ({})",
            to.location(),
            from.location(),
            copied.counts,
            copied.checksum,
            source.counts,
            source.checksum
        )));
    }
    Ok(copied)
}

/// `rekey state migrate`: copies `from` into the empty `to` (see [`copy`]),
/// then marks `from` as migrated to `to_name`, so that nothing runs on it
/// any more. Marked only once the copy is verified: a migration that fails
/// before leaves `from` as it was. A store migrated already is refused.
pub async fn migrate(from: &dyn StateStore, to: &dyn StateStore, to_name: &str, now: Timestamp, actor: &str) -> Result<Copied> {
    crate::refuse_if_migrated(from).await?;
    let copied = copy(from, to, now).await?;
    let migrated = Migrated { to: to_name.to_owned(), at: now, by: actor.to_owned() };
    let detail = serde_json::json!({"to": to_name, "counts": copied.counts, "checksum": copied.checksum});
    from.mark_migrated(&migrated, &AuditEntry::about_owners(now, actor, "state_migrated", detail)).await.map_err(|e| {
        StoreError::Refused(format!(
            "copied to {to_name} and verified, but could not mark {} as migrated ({e}): stop every rekey run on it, and point [state] at {to_name}",
            from.location()
        ))
    })?;
    Ok(copied)
}

/// Reminder records as exported, after the notices: owners, then keys.
pub(crate) fn reminder_items(sent: crate::RemindersSent) -> impl Iterator<Item = Item> {
    sent.owners.into_iter().map(Item::OwnerReminded).chain(sent.keys.into_iter().map(Item::KeyReminded))
}

/// Items per import call: bounded memory on the writing side.
const IMPORT_BATCH: usize = 500;
