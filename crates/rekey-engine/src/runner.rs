//! The runner: advances rotations through the stages of
//! `rekey_core::workflow`, one idempotent step at a time, under a lease, with
//! every change saved and audited before the next step starts. Waits are
//! stored times (`next_check_at`), never sleeps: the process may stop at any
//! moment and `rekey run` picks up what is due.

use crate::crash_point;
use crate::plan::{Plan, Progress, SeenUse, Undoing};
use crate::sinks::{self, Delivered, RestorePoint, Restored, SinkCtx};
use crate::verify::{self, Verdict, VerifyCtx};
use jiff::{SignedDuration, Timestamp};
use rekey_aws::{AwsError, Clients, Iam};
use rekey_core::model::whole_seconds;
use rekey_core::workflow::{next, Event, IllegalTransition, Stage};
use rekey_core::{AccessKeyId, AccountId, Credentials, KeyStatus, UserName};
use rekey_store::{AuditEntry, RotationRecord, Store, StoreError};
use std::collections::{HashMap, HashSet};

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
    #[error("rotation {id}: {message}")]
    Refused { id: String, message: String },
    #[error("rotation {id} has a plan or progress rekey cannot read: {source}")]
    Corrupt { id: String, source: serde_json::Error },
}

/// A rotation as the engine sees it: the stored record with its plan and
/// progress decoded.
pub struct Rotation {
    pub record: RotationRecord,
    pub plan: Plan,
    pub progress: Progress,
}

impl Rotation {
    pub fn decode(record: RotationRecord) -> Result<Rotation, EngineError> {
        let corrupt = |source| EngineError::Corrupt { id: record.id.clone(), source };
        let plan = serde_json::from_value(record.plan.clone()).map_err(corrupt)?;
        let progress = serde_json::from_value(record.progress.clone()).map_err(corrupt)?;
        Ok(Rotation { record, plan, progress })
    }

    fn encode(&mut self) {
        self.record.plan = serde_json::to_value(&self.plan).expect("plans serialize");
        self.record.progress = serde_json::to_value(&self.progress).expect("progress serializes");
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

    pub fn user_arn(&self) -> String {
        format!("arn:aws:iam::{}:user/{}", self.record.account_id, self.record.user_name)
    }
}

/// What one step decided.
enum Step {
    Move(Event),
    Wait(Timestamp, String),
    Block(String),
    /// A terminal event with its reason (failed, or rolled back after a
    /// failed verification).
    End(Event, String),
}

pub struct Engine<'a> {
    pub clients: &'a Clients,
    iam: Iam,
    pub store: &'a mut Store,
    pub actor: String,
    pub may_reveal: bool,
    /// User ARNs (with their paths) as IAM reports them, for `sts` to
    /// compare against; looked up once per user.
    arns: HashMap<String, String>,
    lease_owner: String,
    /// New keys created by this process: the only copy of a secret outside
    /// the sinks, in memory and zeroed on drop.
    secrets: HashMap<String, Credentials>,
    /// Rotations this process moved into `creating`: no other process held
    /// them since, so no unrecorded key can exist to look for.
    entered_creating: HashSet<String>,
    notes: Vec<AuditEntry>,
}

/// Minimum lease: longer than any step takes.
const LEASE: SignedDuration = SignedDuration::from_mins(15);

pub fn now() -> Timestamp {
    whole_seconds(Timestamp::now())
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_owned()).unwrap_or_else(|_| "localhost".into())
}

/// A lease owner (`host/pid/start`) whose process is gone from this host.
fn holder_is_dead(holder: &str) -> bool {
    let mut parts = holder.split('/');
    let (Some(host), Some(Ok(pid))) = (parts.next(), parts.next().map(str::parse::<i32>)) else { return false };
    // SAFETY: kill(2) with signal 0 only asks whether the process exists.
    host == hostname() && pid > 0 && unsafe { libc::kill(pid, 0) } != 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH)
}

impl<'a> Engine<'a> {
    pub fn new(clients: &'a Clients, store: &'a mut Store, actor: String, may_reveal: bool) -> Self {
        let lease_owner = format!("{}/{}/{}", hostname(), std::process::id(), now().as_millisecond());
        let iam = Iam::new(clients);
        Engine { clients, iam, store, actor, may_reveal, arns: HashMap::new(), lease_owner, secrets: HashMap::new(), entered_creating: HashSet::new(), notes: Vec::new() }
    }

    /// An audit line about `r`, saved with the rotation's next save.
    fn note(&mut self, r: &Rotation, event: &str, request_id: Option<String>, detail: serde_json::Value) {
        self.notes.push(AuditEntry {
            at: now(),
            actor: self.actor.clone(),
            rotation_id: Some(r.record.id.clone()),
            event: event.to_owned(),
            from_stage: None,
            to_stage: None,
            aws_request_id: request_id,
            detail,
        });
    }

    /// What sink `index` needs; an `exec` sink gets `verify_timeout` to finish.
    fn sink_ctx<'r>(&self, r: &'r Rotation, index: usize) -> SinkCtx<'r>
    where
        'a: 'r,
    {
        let timeout = r.plan.timings.verify_timeout.to_signed().unsigned_abs();
        let account = AccountId::new(&r.record.account_id);
        SinkCtx { clients: self.clients, user: r.user(), account, timeout, may_reveal: self.may_reveal, rotation_id: &r.record.id, index }
    }

    /// The rotation ends (completed, rolled back or aborted): every sink
    /// drops what only served a restore, such as a copy of an old secret.
    /// Sinks without a saved restore point get `Nothing`: a crash may have
    /// cut in between taking one and saving it.
    async fn finish_sinks(&self, r: &Rotation) -> Result<(), EngineError> {
        for (i, sink) in r.plan.deliver.iter().enumerate() {
            let point = r.progress.restore_points.get(&i).unwrap_or(&RestorePoint::Nothing);
            sinks::of(sink).finish(&self.sink_ctx(r, i), point).await?;
        }
        Ok(())
    }

    /// Tells the engine a user's ARN the caller already read, saving a call.
    pub fn know_user_arn(&mut self, user: &UserName, arn: &str) {
        self.arns.insert(user.to_string(), arn.to_owned());
    }

    /// Takes the rotation's lease: free, expired, or held by a process of
    /// this host that no longer exists (it crashed mid-step).
    fn lease(&self, id: &str) -> Result<bool, EngineError> {
        let start = now();
        if self.store.try_lease(id, &self.lease_owner, start, start + LEASE)? {
            return Ok(true);
        }
        match self.store.lease_holder(id)? {
            Some(holder) if holder_is_dead(&holder) => Ok(self.store.take_over(id, &holder, &self.lease_owner, start + LEASE)?),
            _ => Ok(false),
        }
    }

    /// Every rotation with a step due now: advanced as far as each can go.
    /// Returns the ids it advanced and the errors it met (others go on).
    pub async fn run_due(&mut self) -> Result<(Vec<String>, Vec<EngineError>), EngineError> {
        let mut advanced = Vec::new();
        let mut errors = Vec::new();
        for id in self.store.due(now())? {
            match self.advance(&id).await {
                Ok(true) => advanced.push(id),
                Ok(false) => {}
                Err(e) => errors.push(e),
            }
        }
        Ok((advanced, errors))
    }

    /// Advances one rotation until it waits, needs a person or ends.
    /// `false` if another process holds its lease.
    pub async fn advance(&mut self, id: &str) -> Result<bool, EngineError> {
        if !self.lease(id)? {
            return Ok(false);
        }
        let result = self.advance_leased(id).await;
        self.store.release(id, &self.lease_owner)?;
        result.map(|_| true)
    }

    async fn advance_leased(&mut self, id: &str) -> Result<(), EngineError> {
        loop {
            let mut r = Rotation::decode(self.store.get(id)?)?;
            let due = r.record.next_check_at.is_none_or(|t| t <= now());
            if !(r.record.stage.is_working() || r.progress.undoing.is_some()) || !due {
                return Ok(());
            }
            self.notes.clear();
            let from = r.record.stage;
            match self.step(&mut r).await {
                Ok(Step::Move(event)) => {
                    self.transition(&mut r, event, None)?;
                    if r.record.stage == Stage::Creating {
                        self.entered_creating.insert(r.record.id.clone());
                    }
                    crash_point(&format!("save:{}", r.record.stage));
                }
                Ok(Step::Wait(until, why)) => {
                    r.record.next_check_at = Some(until);
                    r.progress.waiting_for = Some(why);
                    self.save(&mut r)?;
                    return Ok(());
                }
                Ok(Step::Block(reason)) => {
                    r.progress.blocked_from = Some(from);
                    self.transition(&mut r, Event::Blocked, Some(reason))?;
                    return Ok(());
                }
                Ok(Step::End(event, reason)) => {
                    self.transition(&mut r, event, Some(reason))?;
                    return Ok(());
                }
                Err(error) => {
                    // Nothing moved: the step runs again later, from the same
                    // stage; what it did before failing is audited.
                    let detail = serde_json::json!({"stage": from.as_str(), "error": error.to_string()});
                    self.note(&r, "step_failed", None, detail);
                    r.record.next_check_at = Some(now() + r.plan.timings.retry_after.to_signed());
                    r.progress.waiting_for = Some(format!("retry after an error: {error}"));
                    self.save(&mut r)?;
                    return Err(error);
                }
            }
        }
    }

    /// Applies `event` (checked by the state machine), saves, audits.
    fn transition(&mut self, r: &mut Rotation, event: Event, reason: Option<String>) -> Result<(), EngineError> {
        let from = r.record.stage;
        let to = next(from, &event)?;
        r.record.stage = to;
        if to != Stage::Blocked {
            r.progress.waiting_for = None;
        }
        r.record.blocked_reason = reason.clone();
        self.note(r, &format!("stage_{}", event.name()), None, serde_json::json!({"reason": reason}));
        let line = self.notes.last_mut().expect("just noted");
        (line.from_stage, line.to_stage) = (Some(from), Some(to));
        self.save(r)
    }

    fn save(&mut self, r: &mut Rotation) -> Result<(), EngineError> {
        r.record.updated_at = now();
        r.encode();
        let notes = std::mem::take(&mut self.notes);
        self.store.save(&r.record, &self.lease_owner, &notes)?;
        Ok(())
    }

    async fn step(&mut self, r: &mut Rotation) -> Result<Step, EngineError> {
        if let Some(undoing) = r.progress.undoing.clone() {
            self.undo(r).await?;
            self.finish_sinks(r).await?;
            let event = if undoing.ends_as == Stage::Aborted { Event::Aborted } else { Event::RolledBack };
            return Ok(Step::End(event, undoing.reason));
        }
        match r.record.stage {
            Stage::Planned => self.preflight(r).await,
            Stage::Creating => self.create(r).await,
            Stage::Delivering => self.deliver(r).await,
            Stage::VerifyingNew | Stage::VerifyingDeactivated => self.verify(r).await,
            Stage::Draining => self.drain(r).await,
            Stage::Deactivating => {
                let request_id = self.iam.set_access_key_status(&r.user(), &r.old_key(), KeyStatus::Inactive).await?;
                self.note(r, "deactivated_old_key", request_id, serde_json::json!({"key": r.record.old_key_id}));
                crash_point("deactivate");
                r.progress.deactivated_at = Some(now());
                Ok(Step::Move(Event::Deactivated))
            }
            Stage::AwaitingDelete => self.await_delete(r).await,
            Stage::Deleting => {
                let request_id = self.iam.delete_access_key(&r.user(), &r.old_key()).await?;
                self.note(r, "deleted_old_key", request_id, serde_json::json!({"key": r.record.old_key_id}));
                crash_point("delete-key");
                self.finish_sinks(r).await?;
                Ok(Step::Move(Event::Deleted))
            }
            stage => unreachable!("no step for {stage}: only working stages are advanced"),
        }
    }

    /// planned: the old key exists and is active, and a key slot is free.
    async fn preflight(&mut self, r: &mut Rotation) -> Result<Step, EngineError> {
        let keys = self.iam.list_access_keys(&r.user()).await?;
        let old = r.old_key();
        match keys.iter().find(|k| k.id == old) {
            None => return Ok(Step::End(Event::Failed, format!("key {old} of {} no longer exists", r.record.user_name))),
            Some(k) if k.status == KeyStatus::Inactive => {
                return Ok(Step::End(Event::Failed, format!("key {old} is inactive: it already passes IAM.3; delete it instead of rotating")));
            }
            Some(_) => {}
        }
        let others: Vec<_> = keys.iter().filter(|k| k.id != old).collect();
        r.progress.keys_at_start = keys.iter().map(|k| k.id.to_string()).collect();
        match others.as_slice() {
            [] => {}
            [other] if other.status == KeyStatus::Inactive && r.plan.delete_inactive => {
                let request_id = self.iam.delete_access_key(&r.user(), &other.id).await?;
                self.note(r, "deleted_inactive_key", request_id, serde_json::json!({"key": other.id.as_str(), "reason": "--delete-inactive: it took the free key slot"}));
                crash_point("delete-inactive");
                r.progress.keys_at_start.retain(|k| k != other.id.as_str());
            }
            [other] if other.status == KeyStatus::Inactive => {
                return Ok(Step::Block(format!(
                    "both key slots are taken: {other} is inactive; delete it, or abort and rotate again with --delete-inactive",
                    other = other.id
                )));
            }
            _ => {
                let ids: Vec<_> = keys.iter().map(|k| k.id.to_string()).collect();
                return Ok(Step::Block(format!(
                    "both key slots are taken by active keys ({}); IAM allows two keys per user, so rekey cannot create a third",
                    ids.join(", ")
                )));
            }
        }
        Ok(Step::Move(Event::PreflightPassed))
    }

    /// creating: `CreateAccessKey`, after removing a key an interrupted
    /// attempt created but never recorded (only another process can have
    /// left one).
    async fn create(&mut self, r: &mut Rotation) -> Result<Step, EngineError> {
        if !self.entered_creating.remove(&r.record.id) {
            if let Some(step) = self.remove_unrecorded_key(r).await? {
                return Ok(step);
            }
        }
        let (creds, request_id) = self.iam.create_access_key(&r.user()).await?;
        crash_point("create-key");
        r.record.new_key_id = Some(creds.access_key_id.to_string());
        self.note(r, "created_new_key", request_id, serde_json::json!({"key": creds.access_key_id.as_str()}));
        self.secrets.insert(r.record.id.clone(), creds);
        Ok(Step::Move(Event::KeyCreated))
    }

    /// A key that was not there when preflight passed and that the state does
    /// not know: an interrupted attempt created it and its secret died with
    /// that process before any sink got it. Unused, it is deleted; used, a
    /// person must look. Keys are told apart by id, never by clock.
    async fn remove_unrecorded_key(&mut self, r: &Rotation) -> Result<Option<Step>, EngineError> {
        if r.progress.keys_at_start.is_empty() {
            return Ok(None); // preflight never passed: nothing was created
        }
        let keys = self.iam.list_access_keys(&r.user()).await?;
        let known = |id: &AccessKeyId| r.progress.keys_at_start.iter().any(|k| k == id.as_str()) || r.new_key().as_ref() == Some(id);
        for key in keys.iter().filter(|k| !known(&k.id)) {
            if let Some(at) = self.iam.access_key_last_used(&key.id).await?.at {
                return Ok(Some(Step::Block(format!(
                    "key {} appeared during this rotation without being recorded, and was used at {at}; find out who created it",
                    key.id
                ))));
            }
            let request_id = self.iam.delete_access_key(&r.user(), &key.id).await?;
            self.note(r, "deleted_unrecorded_key", request_id, serde_json::json!({"key": key.id.as_str(), "reason": "created by an interrupted attempt, never used, secret lost"}));
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
        for (i, sink) in r.plan.deliver.iter().enumerate().map(|(i, s)| (i, sinks::of(s))).filter(|(_, s)| s.readable()) {
            if let Some(c) = sink.read_back(&self.sink_ctx(r, i)).await?.filter(|c| c.access_key_id == new) {
                self.secrets.insert(r.record.id.clone(), c.clone());
                return Ok(Some(c));
            }
        }
        Ok(None)
    }

    /// delivering: the new key into every sink, in order.
    async fn deliver(&mut self, r: &mut Rotation) -> Result<Step, EngineError> {
        let confirmed = r.progress.confirmed.contains(&Stage::Delivering);
        let remaining: Vec<usize> = (0..r.plan.deliver.len()).filter(|i| !r.progress.delivered.contains(i)).collect();
        // A manual sink a person confirmed needs nothing more, not even the secret.
        let manual: Vec<bool> = r.plan.deliver.iter().map(|s| matches!(s, rekey_core::target::Sink::Manual {})).collect();
        let is_confirmed_manual = |i: &usize| confirmed && manual[*i];
        let creds = if remaining.iter().all(is_confirmed_manual) {
            None
        } else {
            match self.secret_for(r).await? {
                Some(creds) => Some(creds),
                None => return self.secret_lost(r).await,
            }
        };
        for i in remaining {
            let config = r.plan.deliver[i].clone();
            let sink = sinks::of(&config);
            let outcome = match &creds {
                Some(creds) if !is_confirmed_manual(&i) => {
                    if !r.progress.restore_points.contains_key(&i) {
                        let point = sink.restore_point(&self.sink_ctx(r, i)).await?;
                        // Saved before the sink changes: a crash cannot lose it.
                        r.progress.restore_points.insert(i, point);
                        self.save(r)?;
                    }
                    sink.deliver(&self.sink_ctx(r, i), creds).await?
                }
                _ => Delivered::AlreadyThere,
            };
            if outcome == Delivered::AwaitsConfirmation {
                return Ok(Step::Block(format!(
                    "waiting for a person to put the new key in place and run `rekey confirm {}`",
                    r.record.id
                )));
            }
            r.progress.delivered.push(i);
            self.note(r, "delivered", None, serde_json::json!({"sink": sink.describe(), "already_there": outcome == Delivered::AlreadyThere}));
            crash_point(&format!("deliver-{i}"));
        }
        r.progress.delivered_at = Some(now());
        Ok(Step::Move(Event::Delivered))
    }

    /// The secret is nowhere: if the new key was never used, delete it and
    /// create another; if it was, a person must find out who has it.
    async fn secret_lost(&mut self, r: &mut Rotation) -> Result<Step, EngineError> {
        let new = r.new_key().expect("a key to deliver");
        if let Some(at) = self.iam.access_key_last_used(&new).await?.at {
            return Ok(Step::Block(format!("the secret of new key {new} is lost (no sink can give it back), yet the key was used at {at}")));
        }
        let request_id = self.iam.delete_access_key(&r.user(), &new).await?;
        self.note(r, "deleted_lost_key", request_id, serde_json::json!({"key": new.as_str(), "reason": "secret lost before a readable sink got it; never used"}));
        crash_point("delete-lost");
        r.record.new_key_id = None;
        r.progress.delivered.clear();
        // A person who confirmed the lost key must be shown the next one.
        r.progress.confirmed.retain(|s| *s != Stage::Delivering);
        Ok(Step::Move(Event::SecretLost))
    }

    /// verifying_new / verifying_deactivated: every verifier must pass. A
    /// failure rolls the rotation back: the application must not stay broken.
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
            match verify::verify(&verifier, &ctx).await {
                Verdict::Healthy => self.note(r, "verified", None, serde_json::json!({"verifier": verify::describe(&verifier), "stage": stage.as_str()})),
                Verdict::Undecided(why) => return Ok(Step::Block(why)),
                Verdict::NotNeeded(why) => self.note(r, "verification_skipped", None, serde_json::json!({"verifier": verify::describe(&verifier), "stage": stage.as_str(), "why": why})),
                Verdict::Unhealthy(why) => {
                    let reason = format!("{} failed {}: {why}", verify::describe(&verifier), match stage {
                        Stage::VerifyingNew => "with the new key",
                        _ => "after the old key was deactivated (something still uses it)",
                    });
                    self.note(r, "verification_failed", None, serde_json::json!({"verifier": verify::describe(&verifier), "stage": stage.as_str(), "reason": reason}));
                    self.decide_undo(r, Stage::RolledBack, reason.clone())?;
                    self.undo(r).await?;
                    self.finish_sinks(r).await?;
                    return Ok(Step::End(Event::RolledBack, reason));
                }
            }
        }
        if stage == Stage::VerifyingNew {
            let delivered = r.progress.delivered_at.unwrap_or_else(now);
            r.record.next_check_at = Some(delivered + r.plan.timings.quiet_period().to_signed());
            Ok(Step::Move(Event::NewKeyVerified))
        } else {
            let deactivated = r.progress.deactivated_at.unwrap_or_else(now);
            r.record.next_check_at = Some(deactivated + r.plan.timings.grace.to_signed());
            Ok(Step::Move(Event::DeactivationVerified))
        }
    }

    async fn user_arn(&mut self, r: &Rotation) -> Result<String, EngineError> {
        if let Some(arn) = self.arns.get(&r.record.user_name) {
            return Ok(arn.clone());
        }
        let arn = match self.iam.get_user(&r.user()).await? {
            Some(u) => u.arn,
            None => r.user_arn(),
        };
        self.arns.insert(r.record.user_name.clone(), arn.clone());
        Ok(arn)
    }

    /// draining: the old key must stay unused for the quiet period
    /// (`max(wait_unused, last_used_lag)`) after delivery, and after its last
    /// use if it was used since. Past `drain_timeout` a person decides: a key
    /// in use is never deactivated without `--force`.
    async fn drain(&mut self, r: &mut Rotation) -> Result<Step, EngineError> {
        let t = r.plan.timings;
        let delivered = r.progress.delivered_at.unwrap_or(r.record.started_at);
        let quiet_until = delivered + t.quiet_period().to_signed();
        if now() < quiet_until {
            return Ok(Step::Wait(quiet_until, format!("the old key must stay unused until {quiet_until}")));
        }
        let used = self.iam.access_key_last_used(&r.old_key()).await?;
        let Some(at) = used.at.filter(|at| *at > delivered) else {
            return Ok(Step::Move(Event::Drained));
        };
        let seen = SeenUse { at, service: used.service.clone(), region: used.region.clone() };
        let who = format!(
            "last used at {at} by {} in {}",
            seen.service.as_deref().unwrap_or("an unknown service"),
            seen.region.as_deref().unwrap_or("an unknown region")
        );
        if r.progress.used_after_delivery.as_ref() != Some(&seen) {
            self.note(r, "old_key_used_after_delivery", None, serde_json::json!({"at": at, "service": seen.service, "region": seen.region}));
            r.progress.used_after_delivery = Some(seen);
        }
        // Quiet for the whole period since its last use: the consumer moved on.
        let quiet_since_use = at + t.quiet_period().to_signed();
        if now() >= quiet_since_use {
            return Ok(Step::Move(Event::Drained));
        }
        if r.progress.force {
            self.note(r, "drain_forced", None, serde_json::json!({"old_key_use": who}));
            return Ok(Step::Move(Event::Drained));
        }
        if now() >= r.progress.drain_restarted_at.unwrap_or(delivered) + t.drain_timeout.to_signed() {
            return Ok(Step::Block(format!(
                "the old key is still in use {} after delivery ({who}); find that consumer, then `rekey confirm {id}` to keep waiting (or `rekey confirm {id} --force` to deactivate anyway), or `rekey rollback {id}`",
                t.drain_timeout,
                id = r.record.id
            )));
        }
        Ok(Step::Wait(quiet_since_use, format!("the old key was used after delivery ({who}); waiting for it to stay unused for {}", t.quiet_period())))
    }

    /// awaiting_delete: the grace period passed and the old key is still inactive.
    async fn await_delete(&mut self, r: &mut Rotation) -> Result<Step, EngineError> {
        let deactivated = r.progress.deactivated_at.unwrap_or(r.record.updated_at);
        let due = deactivated + r.plan.timings.grace.to_signed();
        if now() < due {
            return Ok(Step::Wait(due, format!("grace period: the old key is deleted after {due}")));
        }
        let keys = self.iam.list_access_keys(&r.user()).await?;
        match keys.iter().find(|k| k.id == r.old_key()) {
            Some(k) if k.status == KeyStatus::Active => Ok(Step::Block(format!(
                "the old key {} was reactivated after rekey deactivated it: something still needs it",
                k.id
            ))),
            _ => Ok(Step::Move(Event::GraceElapsed)),
        }
    }

    /// Undoes a rotation, each part idempotent: the old key active again
    /// first (it is what a broken consumer needs), then every sink restored,
    /// then the new key deleted, unless a sink rekey cannot restore still
    /// hands it out.
    async fn undo(&mut self, r: &mut Rotation) -> Result<(), EngineError> {
        let keys = self.iam.list_access_keys(&r.user()).await?;
        if keys.iter().any(|k| k.id == r.old_key() && k.status == KeyStatus::Inactive) {
            let request_id = self.iam.set_access_key_status(&r.user(), &r.old_key(), KeyStatus::Active).await?;
            self.note(r, "reactivated_old_key", request_id, serde_json::json!({"key": r.record.old_key_id}));
            crash_point("reactivate");
        }
        let Some(new) = r.new_key() else {
            return match self.remove_unrecorded_key(r).await? {
                Some(Step::Block(why)) => Err(EngineError::Refused { id: r.record.id.clone(), message: why }),
                _ => Ok(()),
            };
        };
        let mut keep_new_key = Vec::new();
        for (i, sink) in r.plan.deliver.iter().enumerate().rev() {
            let sink = sinks::of(sink);
            // No restore point: this rotation never wrote to the sink.
            let point = r.progress.restore_points.get(&i).unwrap_or(&RestorePoint::Nothing);
            let outcome = sink.restore(&self.sink_ctx(r, i), &new, point).await?;
            if let Restored::CannotRestore(what) = &outcome {
                if r.progress.delivered.contains(&i) {
                    keep_new_key.push(what.clone());
                }
            }
            let detail = serde_json::json!({"sink": sink.describe(), "outcome": format!("{outcome:?}")});
            self.note(r, "restored_sink", None, detail);
            crash_point(&format!("restore-{i}"));
        }
        if keep_new_key.is_empty() {
            let request_id = self.iam.delete_access_key(&r.user(), &new).await?;
            self.note(r, "deleted_new_key", request_id, serde_json::json!({"key": new.as_str()}));
            crash_point("delete-new-key");
        } else {
            self.note(r, "kept_new_key", None, serde_json::json!({"key": new.as_str(), "because": keep_new_key}));
        }
        Ok(())
    }

    /// Records the decision to undo before undoing anything.
    fn decide_undo(&mut self, r: &mut Rotation, ends_as: Stage, reason: String) -> Result<(), EngineError> {
        r.progress.undoing = Some(Undoing { ends_as, reason });
        r.record.next_check_at = None;
        self.save(r)
    }

    /// Runs `change` on the rotation under its lease, then advances it.
    async fn act(&mut self, id: &str, change: impl FnOnce(&mut Self, &mut Rotation) -> Result<(), EngineError>) -> Result<(), EngineError> {
        self.store.get(id)?; // "no rotation ID" before any talk of leases
        if !self.lease(id)? {
            return Err(EngineError::Refused { id: id.into(), message: "another rekey process is working on it; try again in a moment".into() });
        }
        let changed = Rotation::decode(self.store.get(id)?).and_then(|mut r| {
            self.notes.clear();
            change(self, &mut r)
        });
        self.store.release(id, &self.lease_owner)?;
        changed?;
        self.advance(id).await.map(|_| ())
    }

    /// `rekey rollback` / `rekey abort`: undo now, whatever is due.
    pub async fn cancel(&mut self, id: &str, event: Event) -> Result<(), EngineError> {
        let ends_as = if event == Event::Aborted { Stage::Aborted } else { Stage::RolledBack };
        self.act(id, |engine, r| {
            let stage = r.record.stage;
            if next(stage, &event).is_err() {
                let why = match (stage, &event) {
                    (Stage::Deleting | Stage::Completed, _) => "the old key is deleted: there is nothing to roll back to".to_owned(),
                    (_, Event::Aborted) if stage.is_working() => format!("it is past deactivation ({stage}); use `rekey rollback {id}`"),
                    _ => format!("it already ended ({stage})"),
                };
                let verb = if event == Event::Aborted { "abort" } else { "roll back" };
                return Err(EngineError::Refused { id: id.into(), message: format!("cannot {verb}: {why}") });
            }
            engine.note(r, "undo_requested", None, serde_json::json!({"ends_as": ends_as.as_str()}));
            engine.decide_undo(r, ends_as, format!("requested by {}", engine.actor))
        })
        .await
    }

    /// `rekey confirm`: a person did what a blocked rotation waited for.
    pub async fn confirm(&mut self, id: &str, force: bool) -> Result<(), EngineError> {
        self.act(id, |engine, r| {
            let (Stage::Blocked, Some(from)) = (r.record.stage, r.progress.blocked_from) else {
                return Err(EngineError::Refused { id: id.into(), message: format!("nothing to confirm: it is {}", r.record.stage) });
            };
            r.progress.confirmed.push(from);
            r.progress.force |= force;
            if from == Stage::Draining {
                r.progress.drain_restarted_at = Some(now());
            }
            r.record.next_check_at = None;
            engine.transition(r, Event::Resumed { to: from }, None)
        })
        .await
    }
}
