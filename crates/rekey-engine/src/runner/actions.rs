//! What a person asks of a rotation: start it, confirm, roll back, abort.

use super::*;

/// What `rekey rotate` asks for; [`Engine::plan`] checks it.
pub struct Request {
    pub user: UserName,
    /// The key to rotate; the oldest active key if `None`.
    pub key: Option<AccessKeyId>,
    /// The account the rotation must be in, if the operator said.
    pub account: Option<AccountId>,
    pub plan: Plan,
}

/// A request checked against AWS and the sinks, with nothing changed yet:
/// only [`Engine::plan`] makes one, so [`Engine::start`] starts nothing
/// unchecked.
pub struct Prepared {
    user: UserName,
    user_arn: String,
    account: AccountId,
    old_key: AccessKeyId,
    plan: Plan,
}

impl Prepared {
    pub fn user(&self) -> &UserName {
        &self.user
    }
    pub fn account(&self) -> &AccountId {
        &self.account
    }
    pub fn old_key(&self) -> &AccessKeyId {
        &self.old_key
    }

    /// "rotate" or "retire".
    pub fn verb(&self) -> &'static str {
        self.plan.verb()
    }

    /// The steps the rotation will take, in words, for `rotate --dry-run`.
    pub fn steps(&self) -> Vec<String> {
        let (plan, old, user) = (&self.plan, &self.old_key, &self.user);
        let t = &plan.timings;
        if plan.retire {
            return self.retirement_steps();
        }
        let mut steps = vec![format!("iam:ListAccessKeys {user}: check that {old} is active and a key slot is free")];
        if plan.delete_inactive {
            steps.push(format!("iam:DeleteAccessKey {user} <other key>: only if the other slot holds an inactive key"));
        }
        steps.push(format!("iam:CreateAccessKey {user}: the new key, its id recorded at once"));
        for sink in &plan.deliver {
            steps.push(sinks::of(sink).plan_line());
        }
        for v in &plan.verify {
            steps.push(format!("verify: {} (up to {})", verify::of(v).describe(), t.verify_timeout));
        }
        steps.push(format!(
            "iam:GetAccessKeyLastUsed {old}: unused for {} after delivery (wait_unused + last_used_lag); a use after delivery waits for a person (blocked after {})",
            t.drain_window(),
            t.drain_timeout
        ));
        steps.push(format!("iam:ListAccessKeys {user}: the new key is still there and active, then iam:UpdateAccessKey {old} Inactive"));
        for v in &plan.verify {
            steps.push(format!("verify again: {} (on failure: reactivate {old} at once, keep the new key, ask a person)", verify::of(v).describe()));
        }
        let wait = t.grace.to_signed().max(t.last_used_lag.to_signed());
        steps.push(format!("wait {}, check {old} is still inactive, unused since, and the new key active, then iam:DeleteAccessKey {old}", rekey_core::Duration::from_secs(wait.as_secs().max(0).unsigned_abs())));
        steps
    }
}

impl Prepared {
    /// `retire --dry-run`: the rotation's steps from the drain on, with the
    /// start of the retirement in place of delivery.
    fn retirement_steps(&self) -> Vec<String> {
        let (plan, old, user) = (&self.plan, &self.old_key, &self.user);
        let t = &plan.timings;
        let mut steps = vec![
            format!("iam:ListAccessKeys {user}: check that {old} is active; no key is created and no sink written"),
            format!(
                "iam:GetAccessKeyLastUsed {old}: unused for {} after the retirement begins (wait_unused + last_used_lag); a use after that means a consumer still holds it: it waits for a person (blocked after {}, naming the consumers CloudTrail shows)",
                t.drain_window(),
                t.drain_timeout
            ),
            format!("iam:UpdateAccessKey {old} Inactive"),
        ];
        for v in &plan.verify {
            steps.push(format!("verify: {} (on failure: reactivate {old} at once, ask a person)", verify::of(v).describe()));
        }
        let wait = t.grace.to_signed().max(t.last_used_lag.to_signed());
        steps.push(format!("wait {}, check {old} is still inactive and unused since, then iam:DeleteAccessKey {old}", rekey_core::Duration::from_secs(wait.as_secs().max(0).unsigned_abs())));
        steps
    }
}

impl Engine<'_> {
    /// Runs `change` on the rotation under its lease (after the account
    /// check), then advances it.
    pub(super) async fn act(&mut self, id: &str, change: impl AsyncFnOnce(&mut Self, &mut Rotation) -> Result<(), EngineError>) -> Result<(), EngineError> {
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
            let keys = engine.keys.list_keys(&r.user()).await?;
            let old = keys.iter().find(|k| k.id == r.old_key()).map(|k| k.status);
            let new_gone = r.new_key().is_some_and(|new| !keys.iter().any(|k| k.id == new));
            let theirs = old == Some(KeyStatus::Inactive) && !engine.old_key_still_rekeys(r).await?;
            match old {
                // Someone deleted both keys: nothing to go back or forward to.
                None if new_gone => {
                    let new = r.record.new_key_id.as_ref().map(AccessKeyId::to_string).unwrap_or_default();
                    let reason = format!("the old key {} and the new key {new} were both deleted outside rekey: the user has no key rekey knows, and the sinks hold a deleted one", r.record.old_key_id);
                    return engine.transition(r, Event::Failed, Some(reason)).await;
                }
                // (An unrecorded key of a lost attempt is safe: recovery never deletes the last active key.)
                None if r.new_key().is_some() => {
                    let refused = format!("cannot {verb}: the old key {} no longer exists, so the new key may be the user's only working key; nothing was changed", r.record.old_key_id);
                    // A delivery's block written before the key went names this
                    // command only: it is rewritten to say what works now.
                    let stale = state == State { stage: Stage::Blocked, came_from: Some(Stage::Delivering) } && r.progress.asked != Some(Ask::KeepNewKey);
                    if !stale {
                        return Err(r.refuse(refused));
                    }
                    let now = match Self::without_a_working_key(r, &keys) {
                        Some(step) => step,
                        None => engine.old_key_lost(r, "the block before this one is out of date"),
                    };
                    if let Step::Move(_, reason) = now {
                        r.record.blocked_reason = reason;
                        engine.save(r).await?;
                    }
                    return Err(r.refuse(format!("{refused} in AWS. Its block now says what works: `rekey status {id}`")));
                }
                // Only an undo that puts sinks back on it needs it active.
                Some(KeyStatus::Inactive) if theirs && !r.progress.attempted.is_empty() => {
                    return Err(r.refuse(format!(
                        "cannot {verb}: the old key {} was deactivated by someone other than rekey (a key quarantined after a leak?), and rekey does not re-enable it; nothing was changed. If it is safe, reactivate it by hand and run this again",
                        r.record.old_key_id
                    )))
                }
                _ => {}
            }
            let reason = format!("requested by {}", engine.actor);
            engine.transition(r, event, Some(reason)).await
        })
        .await
    }

    /// `rekey confirm`: a person did what the rotation waited for: a manual
    /// step, a block resolved, or (while draining) the consumers of the old
    /// key were fixed, which restarts the drain window from now; blocked
    /// while awaiting deletion, a new grace period starts. `force`
    /// deactivates at the next step even if the old key is still used; a
    /// later confirmation without it withdraws it.
    pub async fn confirm(&mut self, id: &str, force: bool) -> Result<(), EngineError> {
        self.act(id, async |engine: &mut Self, r: &mut Rotation| {
            let stage = match r.state() {
                // No going back to an old key deleted outside rekey (see
                // `old_key_lost`): the new key stays, the rotation ends.
                State { stage: Stage::Blocked, came_from: Some(from) } if r.progress.asked == Some(Ask::KeepNewKey) && engine.only_the_new_key_is_left(r).await? => {
                    engine.note(r, Audit::Confirmed { stage: from, force }, None);
                    let reason = format!("the old key {} was deleted outside rekey; the new key stays in place", r.record.old_key_id);
                    return engine.transition(r, Event::KeptNewKey, Some(reason)).await;
                }
                State { stage: Stage::Blocked, came_from: Some(from) } => from,
                State { stage: Stage::Draining, .. } => Stage::Draining,
                // A forced deactivation not done yet (an AWS error): a
                // confirmation without --force withdraws it, and drains again.
                State { stage: Stage::Deactivating, .. } if r.progress.force && !force => {
                    r.progress.force = false;
                    r.progress.drain_from = Some(engine.aws_now());
                    engine.note(r, Audit::Confirmed { stage: Stage::Draining, force }, None);
                    return engine.transition(r, Event::ForceWithdrawn, None).await;
                }
                s => return Err(r.refuse(format!("nothing to confirm: it is {}", s.stage))),
            };
            if force && stage != Stage::Draining {
                return Err(r.refuse(format!("--force only applies to a draining old key; it is blocked in {stage}")));
            }
            // An answer to what the block asked, done now; it is not also a look at a check.
            match r.progress.asked.take() {
                Some(Ask::Reactivate(key)) => engine.reactivate_on_confirmation(r, &AccessKeyId::new(&key)).await?,
                Some(Ask::OldKeyPutBack) => r.progress.old_key_put_back = true,
                // The keys changed since the block: the undo looks again.
                Some(Ask::KeepNewKey) => {}
                None => r.progress.confirmed.push(stage),
            }
            r.progress.force = force;
            // Blocked in an undo on a new key a person turned back on: theirs now.
            if let (true, Some(new)) = (stage.is_undo() && r.progress.new_key_seen_inactive, r.new_key()) {
                let keys = engine.keys.list_keys(&r.user()).await?;
                r.progress.new_key_left_to_person |= keys.iter().any(|k| k.id == new && k.status == KeyStatus::Active);
            }
            match stage {
                Stage::Draining if !force => r.progress.drain_from = Some(engine.aws_now()),
                Stage::AwaitingDelete => r.progress.deactivated_at = Some(engine.aws_now()),
                _ => {}
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
        self.arns.insert(prepared.user.clone(), prepared.user_arn.clone());
        let now = self.now();
        let p = &prepared.plan;
        let record = RotationRecord {
            id: id.clone(),
            account_id: prepared.account.clone(),
            user_name: prepared.user.clone(),
            old_key_id: prepared.old_key.clone(),
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
        let verify = p.verify.iter().map(|v| self.targets.verifier(v).describe()).collect();
        let started = match p.retire {
            true => Audit::RetirementStarted { verify },
            false => Audit::RotationStarted { deliver: p.deliver.iter().map(|s| self.targets.sink(s).describe()).collect(), verify },
        };
        let (event, detail) = started.split();
        let line = AuditEntry { at: now, actor: self.actor.clone(), rotation_id: Some(id.clone()), event, from_stage: None, to_stage: Some(Stage::Planned), aws_request_id: None, detail };
        let updates: Vec<_> = self.finding_note(&record, &line).into_iter().collect();
        self.store.insert(&record, &line, &updates).await?;
        Box::pin(self.advance(&id)).await?;
        Ok(id)
    }
}

impl Engine<'_> {
    /// Checks a rotation request without changing anything, before any state
    /// store exists (`rotate --dry-run` opens none): the target can be rotated
    /// safely, the credentials are in the right account, the user and key
    /// exist, and every sink and verifier can work.
    pub async fn plan(keys: &dyn KeyApi, clients: &Clients, targets: &dyn Targets, may_reveal: bool, request: Request) -> Result<Prepared, EngineError> {
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
                .ok_or_else(|| EngineError::BadRequest(format!("user {user} has no active access key to {}", request.plan.verb())))?,
        };
        if old.status == KeyStatus::Inactive {
            return Err(EngineError::BadRequest(format!("key {} is inactive: it already passes IAM.3; delete it rather than {} it", old.id, request.plan.verb())));
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
            targets.sink(sink).check(&ctx(i)).await?;
        }
        for verifier in &request.plan.verify {
            targets.verifier(verifier).preflight().map_err(EngineError::BadRequest)?;
        }
        Ok(Prepared { user: request.user.clone(), user_arn, account, old_key: old.id.clone(), plan: request.plan })
    }
}

/// Targets whose steps could lose the key a person was given: a `manual`
/// sink shows the secret and waits for `rekey confirm` in another process,
/// where only a readable sink can give the secret back.
pub fn check_target(plan: &Plan) -> Result<(), EngineError> {
    if plan.retire {
        return match (plan.deliver.is_empty(), plan.verify.iter().any(|v| verify::of(v).needs_secret())) {
            (true, false) => Ok(()),
            (false, _) => Err(EngineError::BadRequest("a retirement makes no new key, so it delivers to no sink".into())),
            (_, true) => Err(EngineError::BadRequest(
                "a retirement makes no new key for the `sts` verifier to sign with: verify the consumers' new credentials with exec, http or manual".into(),
            )),
        };
    }
    let manual = plan.deliver.iter().position(|s| sinks::of(s).awaits_person());
    let Some(manual) = manual else { return Ok(()) };
    if manual + 1 != plan.deliver.len() {
        return Err(EngineError::UnsafeTarget(
            "a `manual` sink must come last: the sinks after it would need the secret after `rekey confirm`, in a process that no longer has it. Put credentials-file, secretsmanager, ssm and exec sinks before it".into(),
        ));
    }
    let readable = plan.deliver.iter().any(|s| sinks::of(s).readable());
    if !readable && plan.verify.iter().any(|v| verify::of(v).needs_secret()) {
        return Err(EngineError::UnsafeTarget(
            "the `sts` verifier signs with the new secret, which after a `manual` sink only a readable sink (credentials-file, secretsmanager, ssm) can give back: add one before the manual sink, or verify with exec, http or manual".into(),
        ));
    }
    Ok(())
}
