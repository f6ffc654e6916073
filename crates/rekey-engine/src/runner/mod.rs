//! The runner: advances rotations through the stages of
//! `rekey_core::workflow`, one idempotent step at a time, under a lease, with
//! every change saved and audited before the next step starts. Waits are
//! stored times (`next_check_at`), never sleeps: the process may stop at any
//! moment and `rekey run` picks up what is due.
//!
//! Before acting on a rotation the engine checks that the caller's
//! credentials are in the rotation's account; every step re-reads what a
//! crash or a delay could have changed.
//!
//! Here: the engine, advancing, transitions and saving. The steps of the
//! main path are in `steps`, the undo in `undo`, what a person asks
//! (start, confirm, rollback, abort) in `actions`, and a pass of `rekey
//! run` over every due rotation of every account in `pass`.

mod actions;
mod pass;
mod steps;
mod undo;
mod view;

pub use actions::{check_target, Prepared, Request};
pub use pass::{run_due, Acting, Pass, Reach, Settled, Setup};
pub use view::View;

use crate::audit::Audit;
use crate::clock::Clock;
use crate::crash_point;
use crate::drain::{self, Drain};
use crate::keys::KeyApi;
use crate::lease::{Holder, Renewal, LEASE};
use crate::plan::{Ask, ConsumerWatch, Plan, Progress, SeenUse};
use rekey_core::consumers::{consumers, moves, Consumer};
use crate::sinks::{self, Delivered, RestorePoint, Restored, SinkCtx};
use crate::targets::{Configured, Targets};
use crate::verify::{self, Verdict, VerifyCtx};
use jiff::Timestamp;
use rekey_aws::iam::ListedKey;
use rekey_aws::{AwsError, Clients};
use rekey_core::workflow::{next, Event, IllegalTransition, Stage, State};
use rekey_core::{AccessKeyId, AccountId, Credentials, KeyStatus, UserName};
use rekey_core::hub::note_text;
use rekey_store::{AuditEntry, NewFindingUpdate, RotationRecord, SharedStore, StoreError};
use std::collections::HashMap;
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Aws(#[from] AwsError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Sink(#[from] sinks::SinkError),
    #[error(transparent)]
    Illegal(#[from] IllegalTransition),
    #[error("rotation {id} belongs to account {rotation}, but the credentials in use act in account {caller}; nothing was changed. Use credentials of account {rotation}")]
    WrongAccount { id: String, rotation: AccountId, caller: AccountId },
    #[error("rotation {id}: cannot reach account {account}: {reason}")]
    Unreachable { id: String, account: AccountId, reason: String },
    #[error("rotation {id}: another rekey process is working on it; try again in a moment")]
    Busy { id: String },
    #[error("rotation {id}: this process lost its lease (another rekey process took over, or the state store could not renew it) and changed nothing more; the next `rekey run` goes on")]
    LeaseLost { id: String },
    #[error("rotation {id}: {message}")]
    Refused { id: String, message: String },
    #[error("the target cannot be rotated safely: {0}")]
    UnsafeTarget(String),
    #[error("there is no IAM user named \"{0}\"")]
    NoSuchUser(UserName),
    #[error("{0}")]
    BadRequest(String),
    #[error("rotation {id} has a plan or progress rekey cannot read: {source}")]
    Corrupt { id: String, source: serde_json::Error },
}

/// A rotation as the engine sees it: the stored record with its plan and
/// progress decoded.
pub struct Rotation {
    pub record: RotationRecord,
    pub plan: Plan,
    pub progress: Progress,
    /// The stage in the store: a save checks it is still there.
    stored: Stage,
}

impl Rotation {
    pub fn decode(record: RotationRecord) -> Result<Rotation, EngineError> {
        let corrupt = |source| EngineError::Corrupt { id: record.id.clone(), source };
        let plan = serde_json::from_value(record.plan.clone()).map_err(corrupt)?;
        let progress = serde_json::from_value(record.progress.clone()).map_err(corrupt)?;
        Ok(Rotation { stored: record.stage, record, plan, progress })
    }

    /// What the drain counts from, in words: delivery of the new key, or
    /// for a retirement its start.
    fn drain_start(&self) -> &'static str {
        if self.plan.retire { "the retirement began" } else { "delivery" }
    }

    fn encode(&mut self) {
        // invariant: our own types, with string keys, always serialize
        self.record.plan = serde_json::to_value(&self.plan).expect("plans serialize");
        // invariant: our own types, with string keys, always serialize
        self.record.progress = serde_json::to_value(&self.progress).expect("progress serializes");
    }

    fn state(&self) -> State {
        State { stage: self.record.stage, came_from: self.record.came_from }
    }

    fn user(&self) -> UserName {
        self.record.user_name.clone()
    }

    fn old_key(&self) -> AccessKeyId {
        self.record.old_key_id.clone()
    }

    fn new_key(&self) -> Option<AccessKeyId> {
        self.record.new_key_id.clone()
    }

    fn refuse(&self, message: impl Into<String>) -> EngineError {
        EngineError::Refused { id: self.record.id.clone(), message: message.into() }
    }
}

/// What one step decided.
enum Step {
    /// An event of the state machine, with the reason a person reads
    /// (why it blocked, failed or was undone).
    Move(Event, Option<String>),
    /// Look again at this time (on AWS's clock), for this reason.
    Wait(Timestamp, String),
}

/// How often a drain that CloudTrail can explain looks for moved consumers.
const CONSUMER_CHECK: jiff::SignedDuration = jiff::SignedDuration::from_hours(1);

fn moved(event: Event) -> Result<Step, EngineError> {
    Ok(Step::Move(event, None))
}

fn blocked(reason: String) -> Result<Step, EngineError> {
    Ok(Step::Move(Event::Blocked, Some(reason)))
}


pub struct Engine<'a> {
    keys: &'a dyn KeyApi,
    clients: &'a Clients,
    clock: Arc<dyn Clock>,
    pub store: SharedStore,
    pub actor: String,
    pub may_reveal: bool,
    /// Each stage change also leaves a note on the user's IAM.3 finding
    /// (sent later from the store's outbox, so Security Hub never blocks a step).
    pub finding_notes: bool,
    /// Told the rotation's (account, user) when `advance` ends: no note of
    /// this pass follows, so the outbox need not wait for it to go quiet.
    pub settled: Option<Settled>,
    holder: Holder,
    /// AWS's clock minus this machine's when the lease was taken: every
    /// lease time of that lease uses it, so a first answer from AWS that
    /// measures the offset mid-step cannot make the lease look expired.
    lease_offset: jiff::SignedDuration,
    /// What each configured sink and verifier becomes.
    targets: Arc<dyn Targets>,
    /// The caller's account, asked once per process.
    caller: Option<AccountId>,
    /// User ARNs (with their paths) as IAM reports them, for `sts`.
    arns: HashMap<UserName, String>,
    /// New keys created by this process: the only copy of a secret outside
    /// the sinks, in memory and zeroed on drop.
    secrets: HashMap<String, Credentials>,
    notes: Vec<AuditEntry>,
}

impl<'a> Engine<'a> {
    pub fn new(keys: &'a dyn KeyApi, clients: &'a Clients, clock: Arc<dyn Clock>, store: SharedStore, actor: String, may_reveal: bool) -> Self {
        Engine {
            keys,
            clients,
            clock,
            store,
            actor,
            may_reveal,
            finding_notes: false,
            settled: None,
            holder: Holder::this_process(),
            lease_offset: jiff::SignedDuration::ZERO,
            targets: Arc::new(Configured),
            caller: None,
            arns: HashMap::new(),
            secrets: HashMap::new(),
            notes: Vec::new(),
        }
    }

    /// The account `clients` act in, when the caller already established
    /// it (with STS, or by assuming a role there): the account check before
    /// each step then needs no call of its own.
    pub fn acting_in(mut self, account: AccountId) -> Self {
        self.caller = Some(account);
        self
    }

    /// Sinks and verifiers other than the configured ones (the model test's fakes).
    pub fn with_targets(mut self, targets: Arc<dyn Targets>) -> Self {
        self.targets = targets;
        self
    }

    /// Another holder than this process (the model test's second runner).
    pub fn with_holder(mut self, holder: Holder) -> Self {
        self.holder = holder;
        self
    }

    fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// Now on AWS's clock, for comparing with its last-used data.
    fn aws_now(&self) -> Timestamp {
        self.now() + self.keys.clock_offset()
    }

    /// Now for the lease: on AWS's clock as known when it was taken.
    fn lease_now(&self) -> Timestamp {
        self.now() + self.lease_offset
    }

    /// A time on AWS's clock as this machine's, for `next_check_at`.
    fn local(&self, aws: Timestamp) -> Timestamp {
        aws - self.keys.clock_offset()
    }

    fn note(&mut self, r: &Rotation, event: Audit, request_id: Option<String>) {
        let (name, detail) = event.split();
        let (from_stage, to_stage) = event.stages();
        self.notes.push(AuditEntry {
            at: self.now(),
            actor: self.actor.clone(),
            rotation_id: Some(r.record.id.clone()),
            event: name,
            from_stage,
            to_stage,
            aws_request_id: request_id,
            detail,
        });
    }

    fn sink_ctx<'r>(&self, r: &'r Rotation, index: usize) -> SinkCtx<'r>
    where
        'a: 'r,
    {
        SinkCtx {
            clients: self.clients,
            user: r.user(),
            account: r.record.account_id.clone(),
            timeout: r.plan.timings.verify_timeout.to_signed().unsigned_abs(),
            may_reveal: self.may_reveal,
            rotation_id: &r.record.id,
            index,
        }
    }

    async fn caller_account(&mut self) -> Result<AccountId, EngineError> {
        if let Some(account) = &self.caller {
            return Ok(account.clone());
        }
        let account = self.keys.caller_account().await?;
        self.caller = Some(account.clone());
        Ok(account)
    }

    /// Refuses, before anything changes, to act on a rotation of another account.
    async fn check_account(&mut self, record: &RotationRecord) -> Result<(), EngineError> {
        let caller = self.caller_account().await?;
        if caller != record.account_id {
            return Err(EngineError::WrongAccount { id: record.id.clone(), rotation: record.account_id.clone(), caller });
        }
        Ok(())
    }

    /// Takes the rotation's lease: free, expired, or held by a process of
    /// this machine that no longer exists (it crashed mid-step). Lease
    /// times are on AWS's clock, which every runner shares.
    async fn lease(&mut self, id: &str) -> Result<bool, EngineError> {
        self.lease_offset = self.keys.clock_offset();
        let (now, me) = (self.lease_now(), self.holder.to_text());
        if self.store.try_lease(id, &me, now, now + LEASE).await? {
            return Ok(true);
        }
        match self.store.lease_holder(id).await? {
            Some(text) if Holder::parse(&text).is_some_and(|other| self.holder.is_gone(&other)) => {
                Ok(self.store.take_over(id, &text, &me, now + LEASE).await?)
            }
            _ => Ok(false),
        }
    }

    /// Runs `work` under the rotation's lease, renewed while it runs.
    async fn leased<T>(&mut self, id: &str, work: impl AsyncFnOnce(&mut Self) -> Result<T, EngineError>) -> Result<Option<T>, EngineError> {
        if !self.lease(id).await? {
            return Ok(None);
        }
        let renewal = Renewal::start(self.store.clone(), id.to_owned(), self.holder.to_text(), self.clock.clone(), self.lease_offset);
        let result = work(self).await;
        drop(renewal);
        self.store.release(id, &self.holder.to_text()).await?;
        result.map(Some)
    }

    /// A key's last use; none for a key someone deleted meanwhile (asking
    /// again would fail on every pass).
    async fn last_used(&self, key: &AccessKeyId) -> Result<rekey_core::LastUsed, EngineError> {
        Ok(rekey_aws::error::found(self.keys.last_used(key).await)?.unwrap_or_default())
    }

    /// Whether the inactive old key is still rekey's own deactivation, the
    /// only kind an undo or a failed check re-enables: rekey recorded
    /// making it, and no one set the key active since. A person who
    /// reactivated it and deactivated it again (a quarantine) looks the
    /// same to IAM's API; CloudTrail's `UpdateAccessKey` events, where
    /// configured, tell them apart.
    async fn old_key_still_rekeys(&self, r: &mut Rotation) -> Result<bool, EngineError> {
        let Some(since) = r.progress.deactivated_at.filter(|_| !r.progress.deactivated_outside) else { return Ok(false) };
        let reactivated = self.set_active_since(r, &r.old_key(), since).await?;
        r.progress.deactivated_outside |= reactivated;
        Ok(!reactivated)
    }

    /// Whether CloudTrail shows anyone setting `key` active since
    /// `since`. Where it is not configured, or rekey may not read it, only
    /// what rekey saw through IAM's API stands (with a warning); a
    /// transient error fails the step, to be retried.
    pub(super) async fn set_active_since(&self, r: &Rotation, key: &AccessKeyId, since: Timestamp) -> Result<bool, EngineError> {
        match self.keys.activations(key, since).await {
            Ok(found) => Ok(found.is_some_and(|at| !at.is_empty())),
            Err(e @ AwsError::AccessDenied { .. }) => {
                tracing::warn!("rotation {}: CloudTrail cannot say whether anyone turned key {key} on since {since} ({e})", r.record.id);
                Ok(false)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Leases fence actions: an AWS write starts only while this process
    /// holds the rotation's lease, renewed here for a whole `LEASE` from
    /// now, enough for the one call. A process that stalled past its lease
    /// and lost it to another changes nothing more.
    async fn fence(&self, r: &Rotation) -> Result<(), EngineError> {
        let now = self.lease_now();
        if self.store.renew(&r.record.id, &self.holder.to_text(), now, now + LEASE).await? {
            Ok(())
        } else {
            Err(EngineError::LeaseLost { id: r.record.id.clone() })
        }
    }

    /// Advances one rotation until it waits, needs a person or ends.
    /// `false` if another process holds its lease.
    pub async fn advance(&mut self, id: &str) -> Result<bool, EngineError> {
        let record = self.store.get(id).await?;
        self.check_account(&record).await?;
        let advanced = self.leased(id, async |engine: &mut Self| engine.advance_leased(id).await).await;
        if let Some(settled) = &self.settled {
            // The pass may be over and the receiver gone: nothing to tell then.
            let _ = settled.send((record.account_id, record.user_name));
        }
        Ok(advanced?.is_some())
    }

    async fn advance_leased(&mut self, id: &str) -> Result<(), EngineError> {
        loop {
            let mut r = Rotation::decode(self.store.get(id).await?)?;
            let due = r.record.next_check_at.is_none_or(|t| t <= self.now());
            if !r.record.stage.is_working() || !due {
                return Ok(());
            }
            self.notes.clear();
            let stage = r.record.stage;
            match Box::pin(self.step(&mut r)).await {
                Ok(Step::Move(event, reason)) => {
                    self.transition(&mut r, event, reason).await?;
                    crash_point(&format!("save:{}", r.record.stage));
                }
                Ok(Step::Wait(until, why)) => {
                    r.record.next_check_at = Some(self.local(until));
                    tracing::info!(rotation = %r.record.id, account = %r.record.account_id, user = %r.record.user_name, stage = %stage, result = "waiting", until = %self.local(until), reason = %why, "waiting");
                    r.progress.waiting_for = Some(why);
                    return self.save(&mut r).await;
                }
                Err(error) => {
                    // Nothing moved: the step runs again later, from the same
                    // stage; what it did before failing is audited.
                    self.note(&r, Audit::StepFailed { stage, error: error.to_string() }, None);
                    tracing::warn!(rotation = %r.record.id, account = %r.record.account_id, user = %r.record.user_name, stage = %stage, result = "error", error = %error, "step failed; retried later");
                    r.record.next_check_at = Some(self.now() + r.plan.timings.retry_after.to_signed());
                    r.progress.waiting_for = Some(format!("retry after an error: {error}"));
                    self.save(&mut r).await?;
                    return Err(error);
                }
            }
        }
    }

    /// Applies `event` (checked by the state machine), saves, audits.
    async fn transition(&mut self, r: &mut Rotation, event: Event, reason: Option<String>) -> Result<(), EngineError> {
        let from = r.state();
        let to = next(from, &event)?;
        // A person's confirmation counts for the check it was given for,
        // once: it goes when the rotation moves on (a block and its resume
        // stay where they are).
        if from.position() != to.position() {
            r.progress.confirmed.retain(|s| *s != from.position());
        }
        // Back to draining with the old key active: rekey's deactivation is
        // over, and a later one by anyone else is not rekey's to undo.
        if event == Event::Reactivated {
            (r.progress.deactivated_at, r.progress.deactivated_outside) = (None, false);
        }
        // What a block asked is for that block: `rekey confirm` answers it.
        if event != Event::Blocked {
            r.progress.asked = None;
        }
        (r.record.stage, r.record.came_from) = (to.stage, to.came_from);
        r.record.next_check_at = None;
        r.progress.waiting_for = None;
        r.record.blocked_reason = reason.clone();
        self.note(r, Audit::Transition { event: event.clone(), from: from.stage, to: to.stage, reason: reason.clone() }, None);
        self.save(r).await?;
        let (record, reason) = (&r.record, reason.unwrap_or_default());
        tracing::info!(rotation = %record.id, account = %record.account_id, user = %record.user_name, from = %from.stage, stage = %to.stage, result = "moved", reason = %reason, "{}", event.name());
        Ok(())
    }

    async fn save(&mut self, r: &mut Rotation) -> Result<(), EngineError> {
        r.record.updated_at = self.now();
        r.encode();
        let notes = std::mem::take(&mut self.notes);
        let updates: Vec<_> = notes.iter().filter_map(|line| self.finding_note(&r.record, line)).collect();
        self.store.save(&r.record, r.stored, &self.holder.to_text(), self.lease_now(), &notes, &updates).await?;
        r.stored = r.record.stage;
        Ok(())
    }

    /// The finding note for an audit line that changes the stage.
    fn finding_note(&self, record: &RotationRecord, line: &AuditEntry) -> Option<NewFindingUpdate> {
        let to = line.to_stage.filter(|_| self.finding_notes)?;
        let why = record.blocked_reason.as_deref().filter(|_| to == Stage::Blocked).map(|r| format!(": {r}")).unwrap_or_default();
        let note = format!("rekey rotation {} of access key {}: {}{why}", record.id, record.old_key_id, to.as_str());
        Some(NewFindingUpdate { account_id: record.account_id.clone(), user_name: record.user_name.clone(), workflow: None, note: note_text(&note) })
    }

    async fn step(&mut self, r: &mut Rotation) -> Result<Step, EngineError> {
        match r.record.stage {
            Stage::Planned => self.preflight(r).await,
            Stage::Creating => self.create(r).await,
            Stage::Delivering => self.deliver(r).await,
            Stage::VerifyingNew | Stage::VerifyingDeactivated => self.verify(r).await,
            Stage::Draining => self.drain(r).await,
            Stage::Deactivating => self.deactivate(r).await,
            Stage::AwaitingDelete => self.await_delete(r).await,
            Stage::Deleting => self.delete(r).await,
            Stage::RollingBack | Stage::Aborting => self.undo(r).await,
            stage => unreachable!("no step for {stage}: only working stages are advanced"),
        }
    }
}
