//! The runner: advances rotations through the stages of
//! `rekey_core::workflow`, one idempotent step at a time, under a lease, with
//! every change saved and audited before the next step starts. Waits are
//! stored times (`next_check_at`), never sleeps: the process may stop at any
//! moment and `rekey run` picks up what is due.
//!
//! Before acting on a rotation the engine checks that the caller's
//! credentials are in the rotation's account; every step re-reads what a
//! crash or a delay could have changed.

use crate::audit::Audit;
use crate::clock::Clock;
use crate::crash_point;
use crate::drain::{self, Drain};
use crate::keys::KeyApi;
use crate::lease::{Holder, Renewal, LEASE};
use crate::plan::{ConsumerWatch, Plan, Progress, SeenUse};
use rekey_core::consumers::{consumers, moves, Consumer};
use crate::sinks::{self, Delivered, RestorePoint, Restored, SinkCtx};
use crate::targets::{Configured, Targets};
use crate::verify::{self, Verdict, VerifyCtx};
use jiff::Timestamp;
use rekey_aws::{AwsError, Clients};
use rekey_core::target::{Sink, Verifier};
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
    #[error("rotation {id}: another rekey process is working on it; try again in a moment")]
    Busy { id: String },
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
        UserName::new(&self.record.user_name)
    }

    fn old_key(&self) -> AccessKeyId {
        AccessKeyId::new(&self.record.old_key_id)
    }

    fn new_key(&self) -> Option<AccessKeyId> {
        self.record.new_key_id.as_deref().map(AccessKeyId::new)
    }

    /// A new key exists or may exist (an attempt to create one was made):
    /// undoing would remove a key the user may depend on.
    fn may_have_a_new_key(&self) -> bool {
        self.record.new_key_id.is_some() || self.progress.create_attempted_at.is_some()
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

/// What `rekey rotate` asks for; [`prepare`] checks it.
pub struct Request {
    pub user: UserName,
    /// The key to rotate; the oldest active key if `None`.
    pub key: Option<AccessKeyId>,
    /// The account the rotation must be in, if the operator said.
    pub account: Option<AccountId>,
    pub plan: Plan,
}

/// A request checked against AWS and the sinks, with nothing changed yet.
pub struct Prepared {
    pub user: UserName,
    pub user_arn: String,
    pub account: AccountId,
    pub old_key: AccessKeyId,
    pub plan: Plan,
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
    holder: Holder,
    /// What each configured sink and verifier becomes.
    targets: Arc<dyn Targets>,
    /// The caller's account, asked once per process.
    caller: Option<AccountId>,
    /// User ARNs (with their paths) as IAM reports them, for `sts`.
    arns: HashMap<String, String>,
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
            holder: Holder::this_process(),
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

    /// A time on AWS's clock as this machine's, for `next_check_at`.
    fn local(&self, aws: Timestamp) -> Timestamp {
        aws - self.keys.clock_offset()
    }

    fn note(&mut self, r: &Rotation, event: Audit, request_id: Option<String>) {
        let (name, detail) = event.split();
        self.notes.push(AuditEntry {
            at: self.now(),
            actor: self.actor.clone(),
            rotation_id: Some(r.record.id.clone()),
            event: name,
            from_stage: None,
            to_stage: None,
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
            account: AccountId::new(&r.record.account_id),
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
        if caller.as_str() != record.account_id {
            return Err(EngineError::WrongAccount { id: record.id.clone(), rotation: AccountId::new(&record.account_id), caller });
        }
        Ok(())
    }

    /// Takes the rotation's lease: free, expired, or held by a process of
    /// this machine that no longer exists (it crashed mid-step).
    async fn lease(&self, id: &str) -> Result<bool, EngineError> {
        let (now, me) = (self.now(), self.holder.to_text());
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
        let renewal = Renewal::start(self.store.clone(), id.to_owned(), self.holder.to_text(), self.clock.clone());
        let result = work(self).await;
        drop(renewal);
        self.store.release(id, &self.holder.to_text()).await?;
        result.map(Some)
    }

    /// Every rotation with a step due now: advanced as far as each can go.
    /// Returns the ids it advanced and the errors it met (others go on).
    pub async fn run_due(&mut self) -> Result<(Vec<String>, Vec<EngineError>), EngineError> {
        let mut advanced = Vec::new();
        let mut errors = Vec::new();
        for due in self.store.due(self.now()).await? {
            match self.advance(&due.id).await {
                Ok(true) => advanced.push(due.id),
                Ok(false) => {}
                Err(e) => errors.push(e),
            }
        }
        Ok((advanced, errors))
    }

    /// Advances one rotation until it waits, needs a person or ends.
    /// `false` if another process holds its lease.
    pub async fn advance(&mut self, id: &str) -> Result<bool, EngineError> {
        let record = self.store.get(id).await?;
        self.check_account(&record).await?;
        Ok(self.leased(id, async |engine: &mut Self| engine.advance_leased(id).await).await?.is_some())
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
        (r.record.stage, r.record.came_from) = (to.stage, to.came_from);
        r.record.next_check_at = None;
        r.progress.waiting_for = None;
        r.record.blocked_reason = reason.clone();
        self.note(r, Audit::Transition { reason: reason.clone() }, None);
        // invariant: note() just pushed a line
        let line = self.notes.last_mut().expect("just noted");
        line.event = format!("stage_{}", event.name());
        (line.from_stage, line.to_stage) = (Some(from.stage), Some(to.stage));
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
        self.store.save(&r.record, r.stored, &self.holder.to_text(), self.now(), &notes, &updates).await?;
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

    /// planned: the old key exists and is active, and a key slot is free.
    async fn preflight(&mut self, r: &mut Rotation) -> Result<Step, EngineError> {
        let keys = self.keys.list_keys(&r.user()).await?;
        let old = r.old_key();
        match keys.iter().find(|k| k.id == old) {
            None => return Ok(Step::Move(Event::Failed, Some(format!("key {old} of {} no longer exists", r.record.user_name)))),
            Some(k) if k.status == KeyStatus::Inactive => {
                let why = format!("key {old} is inactive: it already passes IAM.3; delete it instead of rotating");
                return Ok(Step::Move(Event::Failed, Some(why)));
            }
            Some(_) => {}
        }
        r.progress.keys_at_start = keys.iter().map(|k| k.id.to_string()).collect();
        let others: Vec<_> = keys.iter().filter(|k| k.id != old).collect();
        match others.as_slice() {
            [] => {}
            [other] if other.status == KeyStatus::Inactive && r.plan.delete_inactive => {
                if let Some(owner) = self.open_rotation_of(&r.record.account_id, &other.id, &r.record.id).await? {
                    return blocked(format!(
                        "both key slots are taken: {} is inactive, but it is the old key of rotation {owner}; finish or undo that rotation first",
                        other.id
                    ));
                }
                let request_id = self.keys.delete_key(&r.user(), &other.id).await?;
                self.note(r, Audit::DeletedInactiveKey { key: other.id.to_string() }, request_id);
                crash_point("delete-inactive");
                r.progress.keys_at_start.retain(|k| k != other.id.as_str());
            }
            [other] if other.status == KeyStatus::Inactive => {
                return blocked(format!(
                    "both key slots are taken: {} is inactive; delete it, or abort and rotate again with --delete-inactive",
                    other.id
                ));
            }
            _ => {
                let ids: Vec<_> = keys.iter().map(|k| k.id.to_string()).collect();
                return blocked(format!(
                    "both key slots are taken by active keys ({}); IAM allows two keys per user, so rekey cannot create a third",
                    ids.join(", ")
                ));
            }
        }
        moved(Event::PreflightPassed)
    }

    /// The id of another unfinished rotation whose old key is `key`.
    async fn open_rotation_of(&self, account: &str, key: &AccessKeyId, except: &str) -> Result<Option<String>, EngineError> {
        Ok(self.store.open_rotation(account, key.as_str()).await?.filter(|id| id != except))
    }

    /// creating: `CreateAccessKey`, its id recorded at once. The attempt is
    /// saved first, so that a key left by an attempt that died before
    /// recording it is known as this rotation's own.
    async fn create(&mut self, r: &mut Rotation) -> Result<Step, EngineError> {
        if let Some(step) = self.remove_unrecorded_key(r).await? {
            return Ok(step);
        }
        r.progress.create_attempted_at = Some(self.aws_now());
        self.save(r).await?;
        let (creds, request_id) = self.keys.create_key(&r.user()).await?;
        crash_point("create-key");
        r.record.new_key_id = Some(creds.access_key_id.to_string());
        self.note(r, Audit::CreatedNewKey { key: creds.access_key_id.to_string() }, request_id);
        self.secrets.insert(r.record.id.clone(), creds);
        moved(Event::KeyCreated)
    }

    /// A key the state does not know (not there at preflight, not the
    /// recorded new key). Deleted only if this rotation's interrupted attempt
    /// made it: an attempt was recorded, the key is no older than it, and it
    /// was never recorded, so no sink and no person ever got it. Any other
    /// unknown key is someone else's: a person must look.
    async fn remove_unrecorded_key(&mut self, r: &Rotation) -> Result<Option<Step>, EngineError> {
        let Some(attempted) = r.progress.create_attempted_at else { return Ok(None) };
        let keys = self.keys.list_keys(&r.user()).await?;
        let known = |id: &AccessKeyId| r.progress.keys_at_start.iter().any(|k| k == id.as_str()) || r.new_key().as_ref() == Some(id);
        let margin = r.plan.timings.last_used_margin.to_signed();
        for key in keys.iter().filter(|k| !known(&k.id)) {
            if key.created_at + margin < attempted {
                return blocked(format!(
                    "key {} of {} was created at {}, before rekey tried to create one, and rekey does not know it; find out who created it",
                    key.id, r.record.user_name, key.created_at
                ))
                .map(Some);
            }
            let request_id = self.keys.delete_key(&r.user(), &key.id).await?;
            self.note(r, Audit::DeletedUnrecordedKey { key: key.id.to_string() }, request_id);
            crash_point("delete-unrecorded");
        }
        Ok(None)
    }

    /// The new key's secret: in memory, or read back from a sink that holds it.
    async fn secret_for(&mut self, r: &Rotation) -> Result<Option<Credentials>, EngineError> {
        let Some(new) = r.new_key() else { return Ok(None) };
        if let Some(c) = self.secrets.get(&r.record.id).filter(|c| c.access_key_id == new) {
            return Ok(Some(c.clone()));
        }
        for (i, sink) in r.plan.deliver.iter().enumerate() {
            let sink = self.targets.sink(sink);
            if !sink.readable() {
                continue;
            }
            if let Some(c) = sink.read_back(&self.sink_ctx(r, i)).await?.filter(|c| c.access_key_id == new) {
                self.secrets.insert(r.record.id.clone(), c.clone());
                return Ok(Some(c));
            }
        }
        Ok(None)
    }

    /// delivering: the new key into every sink, in order; progress is saved
    /// after each sink, so a crash never forgets one that has the key.
    async fn deliver(&mut self, r: &mut Rotation) -> Result<Step, EngineError> {
        let confirmed = r.progress.confirmed.contains(&Stage::Delivering);
        for i in 0..r.plan.deliver.len() {
            if r.progress.delivered.contains(&i) {
                continue;
            }
            let config = r.plan.deliver[i].clone();
            let sink = self.targets.sink(&config);
            // A manual sink a person confirmed needs nothing more, not even the secret.
            let outcome = if confirmed && matches!(config, Sink::Manual {}) {
                Delivered::AlreadyThere
            } else {
                let Some(creds) = self.secret_for(r).await? else { return self.secret_lost(r).await };
                if !r.progress.restore_points.contains_key(&i) {
                    let point = sink.restore_point(&self.sink_ctx(r, i)).await?;
                    r.progress.restore_points.insert(i, point);
                }
                if !r.progress.attempted.contains(&i) {
                    r.progress.attempted.push(i);
                }
                // The restore point and the attempt are saved before the sink changes.
                self.save(r).await?;
                sink.deliver(&self.sink_ctx(r, i), &creds).await?
            };
            if outcome == Delivered::AwaitsConfirmation {
                return blocked(format!("waiting for a person to put the new key in place and run `rekey confirm {}`", r.record.id));
            }
            r.progress.delivered.push(i);
            self.note(r, Audit::Delivered { sink: sink.describe(), already_there: outcome == Delivered::AlreadyThere }, None);
            self.save(r).await?;
            crash_point(&format!("deliver-{i}"));
        }
        r.progress.delivered_at = Some(self.aws_now());
        moved(Event::Delivered)
    }

    /// The secret is nowhere rekey can read it. If a sink that cannot be read
    /// back (a command, a person) may have received the key, it is in use
    /// or about to be: a person decides. Otherwise nobody ever had it: delete
    /// it and create another.
    async fn secret_lost(&mut self, r: &mut Rotation) -> Result<Step, EngineError> {
        // A stored record may lack it (damaged by hand): refuse, not panic.
        let Some(new) = r.new_key() else { return Err(r.refuse("it is delivering a new key but records none")) };
        let handed_out: Vec<String> = r
            .progress
            .attempted
            .iter()
            .map(|&i| self.targets.sink(&r.plan.deliver[i]))
            .filter(|s| !s.readable())
            .map(|s| s.describe())
            .collect();
        if !handed_out.is_empty() {
            return blocked(format!(
                "the secret of new key {new} is lost (no sink can give it back), but {} may already hold it; make sure every consumer has it, or `rekey rollback {}`",
                handed_out.join(", "),
                r.record.id
            ));
        }
        let request_id = self.keys.delete_key(&r.user(), &new).await?;
        self.note(r, Audit::DeletedLostKey { key: new.to_string() }, request_id);
        crash_point("delete-lost");
        r.record.new_key_id = None;
        r.progress.create_attempted_at = None;
        r.progress.delivered.clear();
        r.progress.attempted.clear();
        // A person who confirmed the lost key must be shown the next one.
        r.progress.confirmed.retain(|s| *s != Stage::Delivering);
        moved(Event::SecretLost)
    }

    /// verifying_new / verifying_deactivated: every verifier must pass. A
    /// new key that does not work is rolled back; a failure after
    /// deactivation means something still used the old key: it is
    /// reactivated at once and a person decides.
    async fn verify(&mut self, r: &mut Rotation) -> Result<Step, EngineError> {
        let stage = r.record.stage;
        let creds = self.secret_for(r).await?;
        let arn = self.user_arn(r).await?;
        for verifier in r.plan.verify.clone() {
            let ctx = VerifyCtx {
                clients: self.clients,
                user_arn: &arn,
                timeout: r.plan.timings.verify_timeout.to_signed().unsigned_abs(),
                creds: creds.as_ref(),
                confirmed: r.progress.confirmed.contains(&stage),
                after_deactivation: stage == Stage::VerifyingDeactivated,
            };
            let check = self.targets.verifier(&verifier);
            let name = check.describe();
            match check.verify(&ctx).await {
                Verdict::Healthy => self.note(r, Audit::Verified { verifier: name, stage }, None),
                Verdict::Undecided(why) => return blocked(why),
                Verdict::NotNeeded(why) => self.note(r, Audit::VerificationSkipped { verifier: name, stage, why }, None),
                Verdict::Unhealthy(why) => {
                    r.progress.verified_at = Some(self.aws_now());
                    let reason = format!("{name} failed {}: {why}", if stage == Stage::VerifyingNew { "with the new key" } else { "after the old key was deactivated (something still uses it)" });
                    self.note(r, Audit::VerificationFailed { verifier: name, stage, reason: reason.clone() }, None);
                    if stage == Stage::VerifyingNew {
                        return Ok(Step::Move(Event::UndoDecided { abort: false }, Some(reason)));
                    }
                    let request_id = self.keys.set_status(&r.user(), &r.old_key(), KeyStatus::Active).await?;
                    self.note(r, Audit::ReactivatedOldKey { key: r.record.old_key_id.clone() }, request_id);
                    crash_point("reactivate");
                    r.progress.deactivated_at = None;
                    let reason = format!(
                        "{reason}. The old key {} was reactivated; the new key stays delivered. Find the consumer, then `rekey confirm {id}` to drain again, or `rekey rollback {id}`",
                        r.record.old_key_id,
                        id = r.record.id
                    );
                    return Ok(Step::Move(Event::Reactivated, Some(reason)));
                }
            }
        }
        r.progress.verified_at = Some(self.aws_now());
        moved(if stage == Stage::VerifyingNew { Event::NewKeyVerified } else { Event::DeactivationVerified })
    }

    async fn user_arn(&mut self, r: &Rotation) -> Result<String, EngineError> {
        if let Some(arn) = self.arns.get(&r.record.user_name) {
            return Ok(arn.clone());
        }
        let arn = match self.keys.user_arn(&r.user()).await? {
            Some(arn) => arn,
            None => format!("arn:aws:iam::{}:user/{}", r.record.account_id, r.record.user_name),
        };
        self.arns.insert(r.record.user_name.clone(), arn.clone());
        Ok(arn)
    }

    /// The old key's last use, recorded (and audited) when it is a use after
    /// `baseline`.
    async fn old_key_use(&mut self, r: &mut Rotation, baseline: Timestamp) -> Result<Option<Timestamp>, EngineError> {
        let used = self.keys.last_used(&r.old_key()).await?;
        if let Some(at) = used.at.filter(|&at| drain::used_after(&r.plan.timings, baseline, Some(at))) {
            let seen = SeenUse { at, service: used.service, region: used.region };
            if r.progress.used_after_delivery.as_ref() != Some(&seen) {
                self.note(r, Audit::OldKeyUsedAfterDelivery { at: seen.at, service: seen.service.clone(), region: seen.region.clone() }, None);
                r.progress.used_after_delivery = Some(seen);
            }
        }
        Ok(used.at)
    }

    fn drain_baseline(r: &Rotation) -> Timestamp {
        r.progress.drain_from.or(r.progress.delivered_at).unwrap_or(r.record.started_at)
    }

    /// draining: see `drain` for the rule.
    async fn drain(&mut self, r: &mut Rotation) -> Result<Step, EngineError> {
        let t = r.plan.timings;
        let baseline = Self::drain_baseline(r);
        let now = self.aws_now();
        let window_end = baseline + t.drain_window().to_signed();
        if now < window_end && r.progress.used_after_delivery.is_none() && !r.progress.force {
            // Last use only grows: looking once the window ends is enough.
            return Ok(Step::Wait(window_end, format!("the old key must stay unused until {window_end}")));
        }
        let last_use = self.old_key_use(r, baseline).await?;
        let facts = drain::Facts { baseline, timeout_from: baseline, now, last_use, force: r.progress.force };
        let decision = drain::decide(&t, facts);
        if matches!(decision, Drain::InUse { .. } | Drain::TimedOut) && self.consumers_moved(r, baseline, now, last_use).await {
            return moved(Event::Drained);
        }
        let mut who = r.progress.used_after_delivery.as_ref().map(SeenUse::describe).unwrap_or_default();
        if let Some(watch) = r.progress.consumers.as_ref().filter(|w| !w.left.is_empty()) {
            const SHOWN: usize = 3;
            let mut left: Vec<String> = watch.left.iter().take(SHOWN).map(Consumer::describe).collect();
            if watch.left.len() > SHOWN {
                left.push(format!("{} more in `rekey status {}`", watch.left.len() - SHOWN, r.record.id));
            }
            who += &format!("; still on it: {}", left.join("; "));
        }
        let id = r.record.id.clone();
        match decision {
            Drain::Wait { until } => Ok(Step::Wait(until, format!("the old key must stay unused until {until}"))),
            Drain::Drained => moved(Event::Drained),
            Drain::Forced => {
                self.note(r, Audit::DrainForced { old_key_use: who }, None);
                moved(Event::Drained)
            }
            Drain::InUse { until } => Ok(Step::Wait(
                // With CloudTrail, the consumers may move any time: look hourly.
                if r.progress.consumers.is_some() { until.min(now + CONSUMER_CHECK) } else { until },
                format!("the old key was used after delivery ({who}): a consumer still has it. Update it, then `rekey confirm {id}`; without that, blocked at {until}"),
            )),
            Drain::TimedOut => blocked(format!(
                "the old key is still in use {} after delivery ({who}); find that consumer, then `rekey confirm {id}` to drain again (or `rekey confirm {id} --force` to deactivate anyway), or `rekey rollback {id}`",
                t.drain_timeout
            )),
        }
    }

    /// SPEC section 8, with CloudTrail: the old key was used after delivery,
    /// but if every consumer (source IP, user agent) seen on it since has
    /// been seen on the new key after its last old use, and not on the old
    /// key for the drain window, the consumers moved: the drain restarts
    /// from that last old use and so ends now, with the evidence in the
    /// audit log. `false` (a person decides, SPEC section 5) when CloudTrail
    /// is not configured or cannot be read, when a consumer is left, or
    /// when IAM saw a use later than CloudTrail shows yet. What was seen is
    /// kept for `rekey status` either way.
    async fn consumers_moved(&mut self, r: &mut Rotation, baseline: Timestamp, now: Timestamp, last_use: Option<Timestamp>) -> bool {
        let Some(new_key) = r.new_key() else { return false };
        let read = async {
            let old = self.keys.key_events(&r.old_key(), baseline).await?;
            let new = self.keys.key_events(&new_key, baseline).await?;
            Ok::<_, AwsError>(old.zip(new))
        };
        let (old, new) = match read.await {
            Ok(Some(events)) => events,
            Ok(None) => return false,
            Err(e) => {
                tracing::warn!("rotation {}: CloudTrail cannot tell the old key's consumers ({e}); a person decides", r.record.id);
                return false;
            }
        };
        let t = r.plan.timings;
        let quiet_since = now - t.drain_window().to_signed();
        let m = moves(&consumers(&old), &consumers(&new), quiet_since);
        r.progress.consumers = Some(ConsumerWatch { checked_at: now, left: m.left.clone(), moved: m.moved.clone() });
        let Some(last_old) = m.moved.iter().map(|c| c.last_seen).max().filter(|_| m.left.is_empty()) else { return false };
        let from_last_old = drain::Facts { baseline: last_old, timeout_from: baseline, now, last_use, force: false };
        if drain::decide(&t, from_last_old) != Drain::Drained {
            return false;
        }
        r.progress.drain_from = Some(last_old);
        self.note(r, Audit::ConsumersMoved { consumers: m.moved.iter().map(Consumer::describe).collect(), quiet_since }, None);
        true
    }

    /// deactivating: re-reads the last use (it may have changed since the
    /// drain decided), then `UpdateAccessKey Inactive`.
    async fn deactivate(&mut self, r: &mut Rotation) -> Result<Step, EngineError> {
        let baseline = Self::drain_baseline(r);
        let last_use = self.old_key_use(r, baseline).await?;
        if !r.progress.force && drain::used_after(&r.plan.timings, baseline, last_use) {
            return moved(Event::OldKeyUsed);
        }
        let request_id = self.keys.set_status(&r.user(), &r.old_key(), KeyStatus::Inactive).await?;
        self.note(r, Audit::DeactivatedOldKey { key: r.record.old_key_id.clone() }, request_id);
        crash_point("deactivate");
        r.progress.deactivated_at = Some(self.aws_now());
        r.progress.force = false; // --force was for this one step
        moved(Event::Deactivated)
    }

    /// The old key as IAM has it now, `None` if it is gone.
    async fn old_key_status(&self, r: &Rotation) -> Result<Option<KeyStatus>, EngineError> {
        let keys = self.keys.list_keys(&r.user()).await?;
        Ok(keys.iter().find(|k| k.id == r.old_key()).map(|k| k.status))
    }

    fn reactivated(r: &Rotation) -> String {
        format!(
            "the old key {} was reactivated after rekey deactivated it: something still needs it; find it, then `rekey confirm {id}` (delete after a new grace period) or `rekey rollback {id}`",
            r.record.old_key_id,
            id = r.record.id
        )
    }

    /// awaiting_delete: the grace period passes (`deleting` checks the key).
    async fn await_delete(&mut self, r: &mut Rotation) -> Result<Step, EngineError> {
        let deactivated = r.progress.deactivated_at.unwrap_or(r.record.updated_at);
        let due = deactivated + r.plan.timings.grace.to_signed();
        if self.aws_now() < due {
            return Ok(Step::Wait(due, format!("grace period: the old key is deleted after {due}")));
        }
        moved(Event::GraceElapsed)
    }

    /// deleting: `DeleteAccessKey`, only on a key still inactive; then the
    /// sinks drop their restore copies.
    async fn delete(&mut self, r: &mut Rotation) -> Result<Step, EngineError> {
        match self.old_key_status(r).await? {
            Some(KeyStatus::Active) => return blocked(Self::reactivated(r)),
            Some(KeyStatus::Inactive) => {
                let request_id = self.keys.delete_key(&r.user(), &r.old_key()).await?;
                self.note(r, Audit::DeletedOldKey { key: r.record.old_key_id.clone() }, request_id);
                crash_point("delete-key");
            }
            None => {}
        }
        self.finish_sinks(r).await?;
        moved(Event::Deleted)
    }

    /// The rotation ends: every sink drops what only served a restore (a
    /// copy holding the old secret), also one written just before a crash
    /// kept its restore point from being saved.
    async fn finish_sinks(&mut self, r: &Rotation) -> Result<(), EngineError> {
        for (i, config) in r.plan.deliver.iter().enumerate() {
            let point = r.progress.restore_points.get(&i).unwrap_or(&RestorePoint::Nothing);
            self.targets.sink(config).finish(&self.sink_ctx(r, i), point).await?;
        }
        Ok(())
    }

    /// rolling_back / aborting, each part idempotent: the old key must exist
    /// (else nothing is touched: the new key may be the user's only one) and
    /// is made active first; then every sink is restored; then the new key is
    /// deleted if nothing but rekey's verification used it, or deactivated
    /// and deleted after `grace` if something did.
    async fn undo(&mut self, r: &mut Rotation) -> Result<Step, EngineError> {
        let keys = self.keys.list_keys(&r.user()).await?;
        match keys.iter().find(|k| k.id == r.old_key()) {
            None if r.may_have_a_new_key() => {
                return blocked(format!(
                    "cannot undo: the old key {} no longer exists, so the new key may be the user's only working key; rekey changed nothing and waits for a person",
                    r.record.old_key_id
                ))
            }
            Some(k) if k.status == KeyStatus::Inactive => {
                let request_id = self.keys.set_status(&r.user(), &r.old_key(), KeyStatus::Active).await?;
                self.note(r, Audit::ReactivatedOldKey { key: r.record.old_key_id.clone() }, request_id);
                crash_point("reactivate");
            }
            _ => {}
        }
        let mut keep_new_key = Vec::new();
        if let Some(new) = r.new_key() {
            for (i, config) in r.plan.deliver.iter().enumerate().rev() {
                let sink = self.targets.sink(config);
                let outcome = match r.progress.restore_points.get(&i) {
                    Some(point) => sink.restore(&self.sink_ctx(r, i), &new, point).await?,
                    // Written by a rekey that kept no restore point there:
                    // the new key stays alive rather than break the sink's reader.
                    None if r.progress.delivered.contains(&i) => {
                        Restored::CannotRestore(format!("{} was written without a restore point; put the old key back by hand", sink.describe()))
                    }
                    // Delivery never began there (the point is saved first).
                    None => Restored::NothingToRestore,
                };
                if let Restored::CannotRestore(what) = &outcome {
                    keep_new_key.push(what.clone());
                }
                self.note(r, Audit::RestoredSink { sink: sink.describe(), outcome: format!("{outcome:?}") }, None);
                crash_point(&format!("restore-{i}"));
            }
        }
        match r.new_key() {
            None => {
                if let Some(step) = self.remove_unrecorded_key(r).await? {
                    return Ok(step);
                }
            }
            Some(new) if !keep_new_key.is_empty() => {
                self.note(r, Audit::KeptNewKey { key: new.to_string(), because: keep_new_key }, None);
            }
            Some(new) => {
                if let Some(step) = self.remove_new_key(r, &new, &keys).await? {
                    return Ok(step);
                }
            }
        }
        self.finish_sinks(r).await?;
        // The ended rotation still says why it was undone.
        Ok(Step::Move(Event::Undone, r.record.blocked_reason.clone()))
    }

    /// Deletes the new key of an undone rotation, unless something other
    /// than rekey's verification used it: then it is deactivated (the sinks
    /// no longer hand it out) and deleted after `grace` if it stays so.
    async fn remove_new_key(&mut self, r: &mut Rotation, new: &AccessKeyId, keys: &[rekey_aws::iam::ListedKey]) -> Result<Option<Step>, EngineError> {
        let status = keys.iter().find(|k| &k.id == new).map(|k| k.status);
        let t = r.plan.timings;
        match (status, r.progress.new_key_deactivated_at) {
            (None, _) => return Ok(None),
            (Some(KeyStatus::Active), Some(_)) => {
                return blocked(format!("the new key {new} was reactivated after rekey deactivated it during the undo; delete it by hand once nothing uses it")).map(Some)
            }
            (Some(KeyStatus::Inactive), Some(at)) if self.aws_now() < at + t.grace.to_signed() => {
                let due = at + t.grace.to_signed();
                return Ok(Some(Step::Wait(due, format!("the new key {new} was used by something other than rekey; deactivated, it is deleted after {due}"))));
            }
            (Some(KeyStatus::Inactive), _) => {}
            (Some(KeyStatus::Active), None) => {
                let own_use_until = r.progress.verified_at.or(r.progress.delivered_at);
                let used = self.keys.last_used(new).await?.at;
                let used_by_others = match own_use_until {
                    Some(until) => drain::used_after(&t, until, used),
                    None => used.is_some(),
                };
                if let (true, Some(at)) = (used_by_others, used) {
                    let request_id = self.keys.set_status(&r.user(), new, KeyStatus::Inactive).await?;
                    let because = format!("used at {at} by something other than rekey's verification");
                    self.note(r, Audit::DeactivatedNewKey { key: new.to_string(), because }, request_id);
                    let now = self.aws_now();
                    r.progress.new_key_deactivated_at = Some(now);
                    let due = now + t.grace.to_signed();
                    return Ok(Some(Step::Wait(due, format!("the new key {new} was used by something other than rekey; deactivated, it is deleted after {due}"))));
                }
            }
        }
        let request_id = self.keys.delete_key(&r.user(), new).await?;
        self.note(r, Audit::DeletedNewKey { key: new.to_string() }, request_id);
        crash_point("delete-new-key");
        Ok(None)
    }

    /// Runs `change` on the rotation under its lease (after the account
    /// check), then advances it.
    async fn act(&mut self, id: &str, change: impl AsyncFnOnce(&mut Self, &mut Rotation) -> Result<(), EngineError>) -> Result<(), EngineError> {
        let record = self.store.get(id).await?; // "no rotation ID" before any talk of leases
        self.check_account(&record).await?;
        let changed = self
            .leased(id, async |engine: &mut Self| {
                let mut r = Rotation::decode(engine.store.get(id).await?)?;
                engine.notes.clear();
                change(engine, &mut r).await
            })
            .await?;
        if changed.is_none() {
            return Err(EngineError::Busy { id: id.into() });
        }
        // Boxed: keeps the nested futures' types shallow for the compiler.
        Box::pin(self.advance(id)).await.map(|_| ())
    }

    /// `rekey rollback` / `rekey abort`: the undo is decided (a stage of its
    /// own, saved first), then run now. Refused, changing nothing, when the
    /// old key is gone: the user must never be left without a working key.
    pub async fn cancel(&mut self, id: &str, abort: bool) -> Result<(), EngineError> {
        self.act(id, async |engine: &mut Self, r: &mut Rotation| {
            let event = Event::UndoDecided { abort };
            let verb = if abort { "abort" } else { "roll back" };
            let state = r.state();
            if state.stage.is_undo() || state.came_from.is_some_and(Stage::is_undo) {
                // Decided before and cut short (a crash, an AWS error, a block): finish it.
                return match state.stage {
                    Stage::Blocked => engine.transition(r, Event::Resumed, None).await,
                    _ => Ok(()),
                };
            }
            if next(state, &event).is_err() {
                let stage = r.record.stage;
                let why = match r.state() {
                    s if s.stage.is_past_deletion() || s.came_from.is_some_and(Stage::is_past_deletion) => {
                        "the old key is deleted, or being deleted: there is nothing to roll back to".to_owned()
                    }
                    _ if abort && !stage.is_terminal() => format!("it is past deactivation ({stage}); use `rekey rollback {id}`"),
                    _ => format!("it already ended ({stage})"),
                };
                return Err(r.refuse(format!("cannot {verb}: {why}")));
            }
            if r.may_have_a_new_key() && engine.old_key_status(r).await?.is_none() {
                return Err(r.refuse(format!(
                    "cannot {verb}: the old key {} no longer exists, so the new key may be the user's only working key; nothing was changed",
                    r.record.old_key_id
                )));
            }
            let reason = format!("requested by {}", engine.actor);
            engine.transition(r, event, Some(reason)).await
        })
        .await
    }

    /// `rekey confirm`: a person did what the rotation waited for: a manual
    /// step, a block resolved, or (while draining) the consumers of the old
    /// key were fixed, which restarts the drain window from now. `force`
    /// deactivates at the next step even if the old key is still used.
    pub async fn confirm(&mut self, id: &str, force: bool) -> Result<(), EngineError> {
        self.act(id, async |engine: &mut Self, r: &mut Rotation| {
            let stage = match r.state() {
                State { stage: Stage::Blocked, came_from: Some(from) } => from,
                State { stage: Stage::Draining, .. } => Stage::Draining,
                s => return Err(r.refuse(format!("nothing to confirm: it is {}", s.stage))),
            };
            if force && stage != Stage::Draining {
                return Err(r.refuse(format!("--force only applies to a draining old key; it is blocked in {stage}")));
            }
            r.progress.confirmed.push(stage);
            r.progress.force |= force;
            if stage == Stage::Draining && !force {
                r.progress.drain_from = Some(engine.aws_now());
            }
            engine.note(r, Audit::Confirmed { stage, force }, None);
            if r.record.stage == Stage::Blocked {
                engine.transition(r, Event::Resumed, None).await
            } else {
                r.record.next_check_at = None;
                engine.save(r).await
            }
        })
        .await
    }

    /// Records a prepared rotation (its first audit line with it) and
    /// advances it as far as it can go now. Returns its id.
    pub async fn start(&mut self, prepared: Prepared, id: String) -> Result<String, EngineError> {
        // What preflight read: one GetCallerIdentity and GetUser per process.
        self.caller = Some(prepared.account.clone());
        self.arns.insert(prepared.user.to_string(), prepared.user_arn.clone());
        let now = self.now();
        let p = &prepared.plan;
        let record = RotationRecord {
            id: id.clone(),
            account_id: prepared.account.to_string(),
            user_name: prepared.user.to_string(),
            old_key_id: prepared.old_key.to_string(),
            new_key_id: None,
            stage: Stage::Planned,
            came_from: None,
            blocked_reason: None,
            // invariant: our own types, with string keys, always serialize
            plan: serde_json::to_value(p).expect("plans serialize"),
            // invariant: our own types, with string keys, always serialize
            progress: serde_json::to_value(Progress::default()).expect("progress serializes"),
            started_at: now,
            updated_at: now,
            next_check_at: None,
        };
        let started = Audit::RotationStarted {
            deliver: p.deliver.iter().map(|s| self.targets.sink(s).describe()).collect(),
            verify: p.verify.iter().map(|v| self.targets.verifier(v).describe()).collect(),
        };
        let (event, detail) = started.split();
        let line = AuditEntry { at: now, actor: self.actor.clone(), rotation_id: Some(id.clone()), event, from_stage: None, to_stage: Some(Stage::Planned), aws_request_id: None, detail };
        let updates: Vec<_> = self.finding_note(&record, &line).into_iter().collect();
        self.store.insert(&record, &line, &updates).await?;
        Box::pin(self.advance(&id)).await?;
        Ok(id)
    }
}

/// Checks a rotation request without changing anything: the target can
/// be rotated safely, the credentials are in the right account, the user
/// and key exist, and every sink and verifier can work.
pub async fn prepare(keys: &dyn KeyApi, clients: &Clients, may_reveal: bool, request: Request) -> Result<Prepared, EngineError> {
    check_target(&request.plan)?;
    let account = keys.caller_account().await?;
    if let Some(wanted) = request.account.as_ref().filter(|w| **w != account) {
        return Err(EngineError::BadRequest(format!("the credentials in use act in account {account}, not {wanted}")));
    }
    let user_arn = keys.user_arn(&request.user).await?.ok_or_else(|| EngineError::NoSuchUser(request.user.clone()))?;
    let listed = keys.list_keys(&request.user).await?;
    let user = &request.user;
    let old = match &request.key {
        Some(id) => listed.iter().find(|k| &k.id == id).ok_or_else(|| EngineError::BadRequest(format!("user {user} has no access key {id}")))?,
        None => listed
            .iter()
            .filter(|k| k.status == KeyStatus::Active)
            .min_by_key(|k| k.created_at)
            .ok_or_else(|| EngineError::BadRequest(format!("user {user} has no active access key to rotate")))?,
    };
    if old.status == KeyStatus::Inactive {
        return Err(EngineError::BadRequest(format!("key {} is inactive: it already passes IAM.3; delete it rather than rotate it", old.id)));
    }
    let ctx = |index| SinkCtx {
        clients,
        user: user.clone(),
        account: account.clone(),
        timeout: request.plan.timings.verify_timeout.to_signed().unsigned_abs(),
        may_reveal,
        rotation_id: "",
        index,
    };
    for (i, sink) in request.plan.deliver.iter().enumerate() {
        sinks::of(sink).check(&ctx(i)).await?;
    }
    for verifier in &request.plan.verify {
        verify::of(verifier).preflight().map_err(EngineError::BadRequest)?;
    }
    Ok(Prepared { user: request.user.clone(), user_arn, account, old_key: old.id.clone(), plan: request.plan })
}

/// Targets whose steps could lose the key a person was given: a `manual`
/// sink shows the secret and waits for `rekey confirm` in another process,
/// where only a readable sink can give the secret back.
pub fn check_target(plan: &Plan) -> Result<(), EngineError> {
    let manual = plan.deliver.iter().position(|s| matches!(s, Sink::Manual {}));
    let Some(manual) = manual else { return Ok(()) };
    if manual + 1 != plan.deliver.len() {
        return Err(EngineError::UnsafeTarget(
            "a `manual` sink must come last: the sinks after it would need the secret after `rekey confirm`, in a process that no longer has it. Put credentials-file, secretsmanager, ssm and exec sinks before it".into(),
        ));
    }
    let readable = plan.deliver.iter().any(|s| sinks::of(s).readable());
    if !readable && plan.verify.iter().any(|v| matches!(v, Verifier::Sts {})) {
        return Err(EngineError::UnsafeTarget(
            "the `sts` verifier signs with the new secret, which after a `manual` sink only a readable sink (credentials-file, secretsmanager, ssm) can give back: add one before the manual sink, or verify with exec, http or manual".into(),
        ));
    }
    Ok(())
}
