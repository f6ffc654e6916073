//! The main path's steps, one per working stage: each idempotent, each
//! re-reading what a crash or a delay could have changed.

use super::*;

impl Engine<'_> {
    /// planned: the old key exists and is active, and a key slot is free.
    pub(super) async fn preflight(&mut self, r: &mut Rotation) -> Result<Step, EngineError> {
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
        if r.plan.retire {
            r.progress.delivered_at = Some(self.aws_now());
            return moved(Event::RetirementPreflightPassed);
        }
        let others: Vec<_> = keys.iter().filter(|k| k.id != old).collect();
        match others.as_slice() {
            [] => {}
            [other] if other.status == KeyStatus::Inactive && r.plan.delete_inactive => {
                if let Some(owner) = self.open_rotation_of(&r.record.account_id, &other.id, &r.record.id).await? {
                    return blocked(format!(
                        "both key slots are taken: {} is inactive, but it is the old key of rotation {owner}; finish or undo that rotation first, then `rekey confirm {id}`, or `rekey abort {id}`",
                        other.id,
                        id = r.record.id
                    ));
                }
                // IAM does not say when a key was deactivated, and reports
                // use late: it is deleted only once seen inactive for
                // `last_used_lag`, with no use since shortly before then.
                let (t, now) = (r.plan.timings, self.aws_now());
                let since = match &r.progress.other_inactive_since {
                    Some((key, at)) if *key == other.id.as_str() => *at,
                    _ => r.progress.other_inactive_since.insert((other.id.to_string(), now)).1,
                };
                let due = since + t.last_used_lag.to_signed();
                if now < due {
                    return Ok(Step::Wait(due, format!("the other key {} is inactive; deleted after {due}, once IAM can show no recent use", other.id)));
                }
                if let Some(at) = self.last_used(&other.id).await?.at.filter(|&at| at + t.last_used_margin.to_signed() >= since) {
                    return blocked(format!(
                        "both key slots are taken: {} is inactive, but it was used at {at}, too recently to know nothing needs it; delete it by hand once sure, then `rekey confirm {id}`, or `rekey abort {id}`",
                        other.id,
                        id = r.record.id
                    ));
                }
                // Read again right before the deletion: a person may have
                // turned it on while rekey read its last use, or on and off
                // again since rekey first saw it inactive (CloudTrail shows
                // that; IAM's API does not): the wait starts again.
                let now_listed = self.keys.list_keys(&r.user()).await?;
                let still_inactive = now_listed.iter().any(|k| k.id == other.id && k.status == KeyStatus::Inactive);
                if !still_inactive || self.set_active_since(r, &other.id, since).await? {
                    r.progress.other_inactive_since = None;
                    return Ok(Step::Wait(self.aws_now(), format!("the other key {} was turned on since rekey saw it inactive; looked at again", other.id)));
                }
                self.fence(r).await?;
                let request_id = self.keys.delete_key(&r.user(), &other.id).await?;
                self.note(r, Audit::DeletedInactiveKey { key: other.id.to_string() }, request_id);
                crash_point("delete-inactive");
                r.progress.keys_at_start.retain(|k| k != other.id.as_str());
            }
            [other] if other.status == KeyStatus::Inactive => {
                return blocked(format!(
                    "both key slots are taken: {} is inactive; delete it, then `rekey confirm {id}`, or `rekey abort {id}` and rotate again with --delete-inactive",
                    other.id,
                    id = r.record.id
                ));
            }
            _ => {
                let ids: Vec<_> = keys.iter().map(|k| k.id.to_string()).collect();
                return blocked(format!(
                    "both key slots are taken by active keys ({}); IAM allows two keys per user, so rekey cannot create a third: free one, then `rekey confirm {id}`, or `rekey abort {id}`",
                    ids.join(", "),
                    id = r.record.id
                ));
            }
        }
        moved(Event::PreflightPassed)
    }

    /// The id of another unfinished rotation whose old key is `key`.
    pub(super) async fn open_rotation_of(&self, account: &AccountId, key: &AccessKeyId, except: &str) -> Result<Option<String>, EngineError> {
        Ok(self.store.open_rotation(account, key).await?.filter(|id| id != except))
    }

    /// creating: `CreateAccessKey`, its id recorded at once. The attempt is
    /// saved first; an error AWS answered (throttling, a denial) means no
    /// key was made and clears it, while a lost answer records the end of
    /// the attempt's window (see `unknown_keys`).
    pub(super) async fn create(&mut self, r: &mut Rotation) -> Result<Step, EngineError> {
        let unknown = self.unknown_keys(r).await?;
        if let Some(wait) = unknown.wait {
            return Ok(wait);
        }
        if let Some(key) = unknown.others.first() {
            return blocked(format!(
                "key {} of {} (created at {}) is not one rekey can prove it made (or is the user's only active key), so rekey leaves it alone, and it takes the free key slot; \
                 find out who created it and delete it, then `rekey confirm {id}`, or `rekey abort {id}`",
                key.id,
                r.record.user_name,
                key.created_at,
                id = r.record.id
            ));
        }
        r.progress.create_attempted_at = Some(self.aws_now());
        r.progress.create_lost_until = None;
        self.save(r).await?;
        self.fence(r).await?;
        let (creds, request_id) = match self.keys.create_key(&r.user()).await {
            Ok(created) => created,
            // Saved with the step's failure.
            Err(e) if e.may_have_taken_effect() => {
                r.progress.create_lost_until = Some(self.aws_now());
                return Err(e.into());
            }
            Err(e) => {
                r.progress.create_attempted_at = None;
                return Err(e.into());
            }
        };
        crash_point("create-key");
        r.record.new_key_id = Some(creds.access_key_id.clone());
        r.progress.create_attempted_at = None;
        self.note(r, Audit::CreatedNewKey { key: creds.access_key_id.to_string() }, request_id);
        self.secrets.insert(r.record.id.clone(), creds);
        moved(Event::KeyCreated)
    }

    /// Keys the state does not know (not there at preflight, not the
    /// recorded new key). One may be this rotation's own only if a
    /// `CreateAccessKey` whose answer never came could have made it: it was
    /// created inside that attempt's window on AWS's clock (to the end
    /// recorded, or a lease's length for a process that died mid-call), and
    /// IAM shows no use of it. Even then a person may have made it and used
    /// it a moment ago, which IAM reports up to `last_used_lag` late: so it
    /// is deactivated first (the time saved before the call), and deleted
    /// only once `last_used_lag` has passed with still no use shown; a use
    /// makes it someone else's, and rekey turns it back on.
    pub(super) async fn unknown_keys(&mut self, r: &mut Rotation) -> Result<UnknownKeys, EngineError> {
        let keys = self.keys.list_keys(&r.user()).await?;
        let known = |id: &AccessKeyId| {
            r.progress.keys_at_start.iter().chain(&r.progress.lost_key).any(|k| k == id.as_str()) || r.new_key().as_ref() == Some(id)
        };
        let margin = r.plan.timings.last_used_margin.to_signed();
        let lag = r.plan.timings.last_used_lag.to_signed();
        let window = r.progress.create_attempted_at.map(|from| (from - margin, r.progress.create_lost_until.unwrap_or(from + LEASE) + margin));
        // Counted down as keys are held: never the last active one.
        let mut active = keys.iter().filter(|k| k.status == KeyStatus::Active).count();
        let unknown: Vec<ListedKey> = keys.into_iter().filter(|k| !known(&k.id)).collect();
        let mut found = UnknownKeys::default();
        for key in unknown {
            let held = r.progress.unrecorded_held.as_ref().filter(|(id, _)| id == key.id.as_str()).map(|(_, at)| *at);
            let in_window = window.is_some_and(|(from, until)| (from..=until).contains(&key.created_at));
            // Never the user's last active key, even rekey's own.
            let last_active = key.status == KeyStatus::Active && active == 1;
            let since = match held {
                // Turned back on by a person: theirs.
                Some(_) if key.status == KeyStatus::Active => {
                    r.progress.unrecorded_held = None;
                    found.others.push(key);
                    continue;
                }
                Some(since) => since,
                None if !in_window || last_active || self.last_used(&key.id).await?.at.is_some() => {
                    found.others.push(key);
                    continue;
                }
                None => {
                    active -= usize::from(key.status == KeyStatus::Active);
                    self.hold_unrecorded(r, &key).await?
                }
            };
            let due = since + lag;
            if self.aws_now() < due {
                found.wait = Some(Step::Wait(due, format!("key {} may be one a lost CreateAccessKey made; deactivated, it is deleted after {due} if IAM shows no use of it", key.id)));
                continue;
            }
            let used = self.last_used(&key.id).await?.at.is_some();
            // Fenced right before the write: a read may stall past the lease.
            self.fence(r).await?;
            if used {
                let request_id = self.keys.set_status(&r.user(), &key.id, KeyStatus::Active).await?;
                self.note(r, Audit::ReactivatedUnrecordedKey { key: key.id.to_string() }, request_id);
                found.others.push(key);
            } else {
                let request_id = self.keys.delete_key(&r.user(), &key.id).await?;
                self.note(r, Audit::DeletedUnrecordedKey { key: key.id.to_string() }, request_id);
                crash_point("delete-unrecorded");
            }
            r.progress.unrecorded_held = None;
        }
        Ok(found)
    }

    /// Deactivates an unrecorded key a lost `CreateAccessKey` may have
    /// made, the time saved before the call; returns that time.
    async fn hold_unrecorded(&mut self, r: &mut Rotation, key: &ListedKey) -> Result<Timestamp, EngineError> {
        let since = self.aws_now();
        r.progress.unrecorded_held = Some((key.id.to_string(), since));
        if key.status == KeyStatus::Active {
            self.save(r).await?;
            self.fence(r).await?;
            match self.keys.set_status(&r.user(), &key.id, KeyStatus::Inactive).await {
                Ok(request_id) => self.note(r, Audit::DeactivatedUnrecordedKey { key: key.id.to_string() }, request_id),
                Err(e) => {
                    // AWS refused: nothing held (saved with the step's failure).
                    if !e.may_have_taken_effect() {
                        r.progress.unrecorded_held = None;
                    }
                    return Err(e.into());
                }
            }
            crash_point("deactivate-unrecorded");
        }
        Ok(since)
    }

    /// The new key's secret: in memory, or read back from a sink that holds it.
    pub(super) async fn secret_for(&mut self, r: &Rotation) -> Result<Option<Credentials>, EngineError> {
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
    pub(super) async fn deliver(&mut self, r: &mut Rotation) -> Result<Step, EngineError> {
        self.drop_lost_key(r).await?;
        let confirmed = r.progress.confirmed.contains(&Stage::Delivering);
        for i in 0..r.plan.deliver.len() {
            if r.progress.delivered.contains(&i) {
                continue;
            }
            let config = r.plan.deliver[i].clone();
            let sink = self.targets.sink(&config);
            // A sink waiting for a person (manual), once confirmed, needs nothing more, not even the secret.
            let outcome = if confirmed && sink.awaits_person() {
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
                // A key someone deactivated or deleted since would replace
                // a working one in the sink: looked at before each write.
                let keys = self.keys.list_keys(&r.user()).await?;
                if let Some(step) = Self::without_a_working_key(r, &keys) {
                    return Ok(step);
                }
                if let Some(problem) = new_key_problem(r, &keys) {
                    return blocked(format!(
                        "{problem} while rekey was delivering it, so it stopped before {}; `rekey rollback {}` puts the sinks it reached back on the old key",
                        sink.describe(),
                        r.record.id
                    ));
                }
                self.fence(r).await?;
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
    /// it and create another; if it is the user's only key (someone deleted
    /// the old one), create the other first (see `lost_key`).
    pub(super) async fn secret_lost(&mut self, r: &mut Rotation) -> Result<Step, EngineError> {
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
        let keys = self.keys.list_keys(&r.user()).await?;
        if let Some(step) = Self::without_a_working_key(r, &keys) {
            return Ok(step);
        }
        let old_gone = !keys.iter().any(|k| k.id == r.old_key());
        // Someone deleted the old key: the slot it freed takes the next new
        // key first, so the user is never left with none.
        if old_gone && keys.len() < 2 && handed_out.is_empty() {
            r.progress.lost_key = Some(new.to_string());
            return Ok(self.start_over(r));
        }
        if old_gone && !handed_out.is_empty() {
            return Ok(self.old_key_lost(r, &format!("the secret of new key {new} is lost (no sink can give it back), and {} may hold it", handed_out.join(", "))));
        }
        if !handed_out.is_empty() {
            return blocked(format!(
                "the secret of new key {new} is lost (no sink can give it back), but {} may already hold it; make sure every consumer has it, or `rekey rollback {}`",
                handed_out.join(", "),
                r.record.id
            ));
        }
        // A readable sink may have handed it out before someone changed it.
        if let Some(at) = self.last_used(&new).await?.at {
            return blocked(format!(
                "the secret of new key {new} is lost (no sink holds it any more), but the key was used at {at}: something has it; find it, or `rekey rollback {}`",
                r.record.id
            ));
        }
        if is_last_active(&keys, &new) {
            return blocked(format!(
                "the secret of new key {new} is lost, but it is the user's only active key (the old key is gone or inactive): rekey keeps it; `rekey abort {}`",
                r.record.id
            ));
        }
        // Read again right before the deletion: a key may have gone or
        // changed while rekey read the last use; then the step looks again.
        let seen = |keys: &[ListedKey]| keys.iter().map(|k| (k.id.clone(), k.status)).collect::<Vec<_>>();
        if seen(&self.keys.list_keys(&r.user()).await?) != seen(&keys) {
            return Ok(Step::Wait(self.aws_now(), format!("the user's keys changed while rekey decided about the lost new key {new}; it looks again")));
        }
        self.fence(r).await?;
        let request_id = self.keys.delete_key(&r.user(), &new).await?;
        self.note(r, Audit::DeletedLostKey { key: new.to_string() }, request_id);
        crash_point("delete-lost");
        Ok(self.start_over(r))
    }

    /// Back to creating, the lost new key forgotten (deleted, or kept in `lost_key`).
    fn start_over(&mut self, r: &mut Rotation) -> Step {
        r.record.new_key_id = None;
        r.progress.create_attempted_at = None;
        r.progress.delivered.clear();
        r.progress.attempted.clear();
        // A person who confirmed the lost key must be shown the next one.
        r.progress.confirmed.retain(|s| *s != Stage::Delivering);
        Step::Move(Event::SecretLost, None)
    }

    /// Deletes the lost new key kept while it was the user's only active
    /// key (see `lost_key`), now that another is there, if IAM shows no
    /// use of it; a used one is someone's and stays.
    pub(super) async fn drop_lost_key(&mut self, r: &mut Rotation) -> Result<(), EngineError> {
        let Some(lost) = r.progress.lost_key.clone().map(|k| AccessKeyId::new(&k)) else { return Ok(()) };
        let keys = self.keys.list_keys(&r.user()).await?;
        if keys.iter().any(|k| k.id == lost) && !is_last_active(&keys, &lost) {
            match self.last_used(&lost).await?.at {
                Some(at) => self.note(r, Audit::KeptNewKey { key: lost.to_string(), because: vec![format!("its secret was lost, but it was used at {at}")] }, None),
                None => {
                    self.fence(r).await?;
                    let request_id = self.keys.delete_key(&r.user(), &lost).await?;
                    self.note(r, Audit::DeletedLostKey { key: lost.to_string() }, request_id);
                    crash_point("delete-lost");
                }
            }
        }
        r.progress.lost_key = None;
        self.save(r).await
    }

    /// verifying_new / verifying_deactivated: every verifier must pass. A
    /// new key that does not work is rolled back; a failure after
    /// deactivation means something still used the old key: it is
    /// reactivated at once and a person decides.
    pub(super) async fn verify(&mut self, r: &mut Rotation) -> Result<Step, EngineError> {
        let stage = r.record.stage;
        if stage == Stage::VerifyingDeactivated {
            let keys = self.keys.list_keys(&r.user()).await?;
            if let Some(step) = Self::without_a_working_key(r, &keys) {
                return Ok(step);
            }
            if r.progress.reactivation_owed.is_none() {
                r.progress.reactivation_owed = new_key_problem(r, &keys);
            }
            // Owed, not re-decided: no verifier runs again before it is done.
            if let Some(reason) = r.progress.reactivation_owed.clone() {
                if !keys.iter().any(|k| k.id == r.old_key()) {
                    r.progress.reactivation_owed = None;
                    return blocked(format!(
                        "{reason}. The old key {} is gone (deleted outside rekey), so rekey cannot reactivate it; the new key stays in place. Find the cause, then `rekey confirm {}` checks again",
                        r.record.old_key_id,
                        r.record.id
                    ));
                }
                let old_active = keys.iter().any(|k| k.id == r.old_key() && k.status == KeyStatus::Active);
                return self.reactivate(r, reason, old_active).await;
            }
        }
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
                    r.progress.reactivation_owed = Some(reason.clone());
                    self.save(r).await?;
                    return self.reactivate(r, reason, false).await;
                }
            }
        }
        r.progress.verified_at = Some(self.aws_now());
        moved(if stage == Stage::VerifyingNew { Event::NewKeyVerified } else { Event::DeactivationVerified })
    }

    /// Reactivates the old key rekey deactivated (SPEC 1.3.6), first of all:
    /// the new key stays delivered and a person decides. An old key someone
    /// else deactivated stays as it is, until a person allows it (still
    /// owed meanwhile); `old_active`: already active again.
    pub(super) async fn reactivate(&mut self, r: &mut Rotation, reason: String, old_active: bool) -> Result<Step, EngineError> {
        let id = r.record.id.clone();
        if !old_active {
            if !self.old_key_still_rekeys(r).await? {
                let why = format!("{reason}. The old key {} was deactivated by someone other than rekey", r.record.old_key_id);
                return Ok(Self::ask_to_reactivate(r, &r.old_key(), &why, "block again for your decision"));
            }
            self.fence(r).await?;
            let request_id = self.keys.set_status(&r.user(), &r.old_key(), KeyStatus::Active).await?;
            self.note(r, Audit::ReactivatedOldKey { key: r.record.old_key_id.to_string() }, request_id);
            crash_point("reactivate");
        }
        (r.progress.deactivated_at, r.progress.reactivation_owed) = (None, None);
        let reason = format!(
            "{reason}. The old key {} was reactivated{}. Find the cause, then `rekey confirm {id}` to drain again, or `rekey rollback {id}`",
            r.record.old_key_id,
            if r.plan.retire { "" } else { "; the new key stays delivered" }
        );
        Ok(Step::Move(Event::Reactivated, Some(reason)))
    }

    /// A key someone other than rekey deactivated (a quarantine after a
    /// leak?), which the step needs active: rekey does not re-enable it on
    /// its own. The rotation blocks and asks; `rekey confirm` is the
    /// person's leave, and reactivates it (`reactivate_on_confirmation`).
    pub(super) fn ask_to_reactivate(r: &mut Rotation, key: &AccessKeyId, why: &str, then: &str) -> Step {
        r.progress.asked = Some(Ask::Reactivate(key.to_string()));
        let id = &r.record.id;
        Step::Move(
            Event::Blocked,
            Some(format!(
                "{why}; rekey does not re-enable on its own a key someone else deactivated (a key quarantined after a leak?). \
                 If it is safe to use again, `rekey confirm {id}` lets rekey reactivate key {key} and {then}; or reactivate it by hand, then `rekey confirm {id}`"
            )),
        )
    }

    /// The old key was deleted outside rekey, and neither an undo nor the
    /// rest of the delivery can go on without it (`what`): the rotation
    /// blocks, changing nothing more. rekey keeps no secret to give the
    /// sinks that may hold the deleted key, so a person gives them a
    /// working key by hand; `rekey confirm` then ends the rotation keeping
    /// the new key (`Event::KeptNewKey`).
    pub(super) fn old_key_lost(&self, r: &mut Rotation, what: &str) -> Step {
        let stranded: Vec<String> = Self::sinks_on_the_old_key(r).map(|i| self.targets.sink(&r.plan.deliver[i]).describe()).collect();
        let keep = format!("`rekey confirm {}` ends the rotation and keeps the new key where it is", r.record.id);
        let way_out = match stranded.is_empty() {
            true => keep,
            false => format!(
                "These sinks may still hold the deleted key: {}. Give them a working key by hand (the new key, from a sink that holds it, or one you make), then {keep}",
                stranded.join("; ")
            ),
        };
        r.progress.asked = Some(Ask::KeepNewKey);
        Step::Move(
            Event::Blocked,
            Some(format!(
                "{what}: the old key {} no longer exists (deleted outside rekey), so the new key may be the user's only working key; rekey changed nothing more. {way_out}",
                r.record.old_key_id
            )),
        )
    }

    /// The sinks that may hold the old key: never given the new key, or
    /// (once an undo began restoring) put back on the old one.
    pub(super) fn sinks_on_the_old_key(r: &Rotation) -> impl Iterator<Item = usize> + '_ {
        let restorable = |i: &usize| r.progress.restore_points.get(i).is_some_and(|p| *p != RestorePoint::Nothing);
        (0..r.plan.deliver.len()).filter(move |i| !r.progress.delivered.contains(i) || r.progress.restore_began && restorable(i))
    }

    /// `rekey confirm` of a block that asked leave to reactivate `key`. A
    /// key deleted since needs none: the step looks again.
    pub(super) async fn reactivate_on_confirmation(&mut self, r: &mut Rotation, key: &AccessKeyId) -> Result<(), EngineError> {
        self.fence(r).await?;
        let Some(request_id) = rekey_aws::error::found(self.keys.set_status(&r.user(), key, KeyStatus::Active).await)? else { return Ok(()) };
        self.note(r, Audit::ReactivatedOnConfirmation { key: key.to_string() }, request_id);
        if *key == r.old_key() {
            // Active again: a later deactivation is no longer anyone's to keep.
            (r.progress.deactivated_at, r.progress.deactivated_outside) = (None, false);
        }
        Ok(())
    }

    /// Neither the old nor the new key is active, and not by rekey's doing
    /// (it never removes the user's last active key): someone left the user
    /// without a working key. Both gone: nothing rekey knows is left, the
    /// rotation fails. Else the key the sinks need (the new key once every
    /// sink has it, otherwise the old one) is reactivated on a person's
    /// word (see `ask_to_reactivate`). `None`: a key is active, or rekey's
    /// own deactivation of the old key is for the step to undo.
    pub(super) fn without_a_working_key(r: &mut Rotation, keys: &[ListedKey]) -> Option<Step> {
        let new = r.new_key()?;
        let status = |id: &AccessKeyId| keys.iter().find(|k| &k.id == id).map(|k| k.status);
        let (old_status, new_status) = (status(&r.old_key()), status(&new));
        if old_status == Some(KeyStatus::Active) || new_status == Some(KeyStatus::Active) {
            return None;
        }
        let old = r.old_key();
        let shown = |s: Option<KeyStatus>| if s.is_some() { "deactivated" } else { "deleted" };
        let why = format!("neither the old key {old} ({}) nor the new key {new} ({}) is active, by someone other than rekey: the user has no working key", shown(old_status), shown(new_status));
        if old_status.is_none() && new_status.is_none() {
            // A sink may hold a key a person gave it, unknown to rekey: each is named.
            let sinks: Vec<String> = r.plan.deliver.iter().map(|sink| crate::sinks::of(sink).describe()).collect();
            return Some(Step::Move(
                Event::Failed,
                Some(format!(
                    "{why}, and rekey knows none to bring back: these sinks hold a deleted key, unless a person gave them a working one: {}",
                    sinks.join("; ")
                )),
            ));
        }
        if old_status.is_some() && r.progress.deactivated_at.is_some() && !r.progress.deactivated_outside {
            return None;
        }
        // Forward, every sink has the new key; an undo goes back to the old one.
        let towards_new = r.progress.delivered_at.is_some() && !r.record.stage.is_undo();
        let key = if (towards_new && new_status.is_some()) || old_status.is_none() { new } else { old };
        Some(Self::ask_to_reactivate(r, &key, &why, "go on"))
    }

    pub(super) async fn user_arn(&mut self, r: &Rotation) -> Result<String, EngineError> {
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
    pub(super) async fn old_key_use(&mut self, r: &mut Rotation, baseline: Timestamp) -> Result<Option<Timestamp>, EngineError> {
        let used = self.last_used(&r.old_key()).await?;
        if let Some(at) = used.at.filter(|&at| drain::used_after(&r.plan.timings, baseline, Some(at))) {
            let seen = SeenUse { at, service: used.service, region: used.region };
            if !r.progress.uses_after_delivery.contains(&seen) {
                self.note(r, Audit::OldKeyUsedAfterDelivery { at: seen.at, service: seen.service.clone(), region: seen.region.clone() }, None);
                r.progress.uses_after_delivery.push(seen.clone());
            }
            r.progress.used_after_delivery = Some(seen);
        }
        Ok(used.at)
    }

    pub(super) fn drain_baseline(r: &Rotation) -> Timestamp {
        r.progress.drain_from.or(r.progress.delivered_at).unwrap_or(r.record.started_at)
    }

    /// draining: see `drain` for the rule.
    pub(super) async fn drain(&mut self, r: &mut Rotation) -> Result<Step, EngineError> {
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
        if let Some(watch) = r.progress.consumers.as_ref() {
            const SHOWN: usize = 3;
            let mut left: Vec<String> = watch.left.iter().take(SHOWN).map(Consumer::describe).collect();
            if watch.left.len() > SHOWN {
                left.push(format!("{} more in `rekey status {}`", watch.left.len() - SHOWN, r.record.id));
            }
            left.extend(watch.unexplained.iter().map(|u| format!("a consumer CloudTrail does not show ({})", u.describe())));
            if watch.unreadable > 0 {
                left.push(format!("{} CloudTrail events rekey cannot read", watch.unreadable));
            }
            if !left.is_empty() {
                who += &format!("; still on it: {}", left.join("; "));
            }
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
                format!("the old key was used after {} ({who}): a consumer still has it. Update it, then `rekey confirm {id}`; without that, blocked at {until}", r.drain_start()),
            )),
            Drain::TimedOut => blocked(format!(
                "the old key is still in use {} after {} ({who}); find that consumer, then `rekey confirm {id}` to drain again (or `rekey confirm {id} --force` to deactivate anyway), or `rekey rollback {id}`",
                t.drain_timeout,
                r.drain_start()
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
    /// kept for `rekey status` either way. A retirement has no new key to
    /// move to: its consumers are only named.
    pub(super) async fn consumers_moved(&mut self, r: &mut Rotation, baseline: Timestamp, now: Timestamp, last_use: Option<Timestamp>) -> bool {
        let new_key = r.new_key();
        let read = async {
            let old = self.keys.key_events(&r.old_key(), baseline).await?;
            let new = match &new_key {
                Some(key) => self.keys.key_events(key, baseline).await?,
                None => Some(rekey_aws::cloudtrail::KeyEvents::default()),
            };
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
        let m = moves(&consumers(&old.events), &consumers(&new.events), quiet_since);
        // Event history holds management calls only: a use IAM saw that no
        // event explains is a consumer CloudTrail cannot show (data calls).
        let margin = t.last_used_margin.to_signed();
        let explained = |u: &SeenUse| {
            old.events.iter().any(|e| {
                u.service.as_ref().is_none_or(|s| *s == e.service) && u.region.as_ref().is_none_or(|g| *g == e.region) && (e.time - u.at).abs() <= margin
            })
        };
        let unexplained: Vec<SeenUse> = r.progress.uses_after_delivery.iter().filter(|u| !explained(u)).cloned().collect();
        let unreadable = old.unreadable + new.unreadable;
        r.progress.consumers = Some(ConsumerWatch { checked_at: now, left: m.left.clone(), moved: m.moved.clone(), unexplained: unexplained.clone(), unreadable });
        if !unexplained.is_empty() || unreadable > 0 || new_key.is_none() {
            return false;
        }
        let Some(last_old) = m.moved.iter().map(|c| c.last_seen).max().filter(|_| m.left.is_empty()) else { return false };
        let from_last_old = drain::Facts { baseline: last_old, timeout_from: baseline, now, last_use, force: false };
        if drain::decide(&t, from_last_old) != Drain::Drained {
            return false;
        }
        r.progress.drain_from = Some(last_old);
        self.note(r, Audit::ConsumersMoved { consumers: m.moved.iter().map(Consumer::describe).collect(), quiet_since }, None);
        true
    }

    /// deactivating: re-reads the old key's last use (it may have changed
    /// since the drain decided) and then the user's keys (the new key must
    /// carry the application), then `UpdateAccessKey Inactive`, its time
    /// saved first: an inactive old key without it is someone else's doing.
    pub(super) async fn deactivate(&mut self, r: &mut Rotation) -> Result<Step, EngineError> {
        let baseline = Self::drain_baseline(r);
        let last_use = self.old_key_use(r, baseline).await?;
        if !r.progress.force && drain::used_after(&r.plan.timings, baseline, last_use) {
            return moved(Event::OldKeyUsed);
        }
        // Read last, right before the write, so a person's deactivation (a
        // quarantine) is seen as theirs, and an undo leaves it so.
        let keys = self.keys.list_keys(&r.user()).await?;
        if let Some(step) = Self::without_a_working_key(r, &keys) {
            return Ok(step);
        }
        // (Both keys dead is `without_a_working_key`'s: here the old key exists.)
        if let Some(problem) = new_key_problem(r, &keys) {
            return blocked(format!(
                "{problem}, so the old key {} stays active; find out why: once the new key is active again, `rekey confirm {id}` goes on; or `rekey rollback {id}` puts the sinks back on the old key",
                r.record.old_key_id,
                id = r.record.id
            ));
        }
        match keys.iter().find(|k| k.id == r.old_key()).map(|k| k.status) {
            Some(KeyStatus::Active) => {
                r.progress.deactivated_at = Some(self.aws_now());
                self.save(r).await?;
                self.fence(r).await?;
                let sent = self.keys.set_status(&r.user(), &r.old_key(), KeyStatus::Inactive).await;
                // AWS answered no: nothing was deactivated, and an inactive
                // old key seen later is someone else's doing, not rekey's.
                if sent.as_ref().is_err_and(|e| !e.may_have_taken_effect()) {
                    r.progress.deactivated_at = None;
                    self.save(r).await?;
                }
                let request_id = sent?;
                self.note(r, Audit::DeactivatedOldKey { key: r.record.old_key_id.to_string() }, request_id);
                crash_point("deactivate");
            }
            // rekey's own, from an attempt cut short: done.
            Some(KeyStatus::Inactive) if r.progress.deactivated_at.is_some() => {}
            // Someone else deactivated or deleted it: what rekey wanted, but not its doing.
            _ => {
                r.progress.deactivated_outside = true;
                r.progress.deactivated_at = Some(self.aws_now());
            }
        }
        r.progress.force = false; // --force was for this one step
        moved(Event::Deactivated)
    }

    /// The old key is gone and the new key is active: what an undo cut
    /// short before any sink went back can leave in place.
    pub(super) async fn only_the_new_key_is_left(&self, r: &Rotation) -> Result<bool, EngineError> {
        let keys = self.keys.list_keys(&r.user()).await?;
        let new_active = r.new_key().is_some_and(|new| keys.iter().any(|k| k.id == new && k.status == KeyStatus::Active));
        Ok(new_active && !keys.iter().any(|k| k.id == r.old_key()))
    }

    pub(super) fn reactivated(r: &Rotation) -> String {
        format!(
            "the old key {} was reactivated after rekey deactivated it: something still needs it; find it, then `rekey confirm {id}` (drain again, then a new grace period) or `rekey rollback {id}`",
            r.record.old_key_id,
            id = r.record.id
        )
    }

    /// awaiting_delete: the grace period passes (and at least
    /// `last_used_lag`, so a use just before deactivation shows), then fresh
    /// facts: the new key carries the application, the old key is still
    /// inactive and was not used since it was deactivated (SPEC 1.3.7).
    pub(super) async fn await_delete(&mut self, r: &mut Rotation) -> Result<Step, EngineError> {
        let t = r.plan.timings;
        let deactivated = r.progress.deactivated_at.unwrap_or(r.record.updated_at);
        let due = deactivated + t.grace.to_signed().max(t.last_used_lag.to_signed());
        if self.aws_now() < due {
            return Ok(Step::Wait(due, format!("grace period: the old key is deleted after {due}")));
        }
        let gone = match self.before_deleting(r).await? {
            Err(step) => return Ok(step),
            Ok(old) => old.is_none(),
        };
        let used = if gone { None } else { self.last_used(&r.old_key()).await?.at };
        if let Some(at) = used.filter(|&at| drain::used_after(&t, deactivated, Some(at))) {
            return blocked(format!(
                "the old key {} was used at {at}, after it was deactivated at {deactivated}: someone reactivated it for a while, so something may still need it; \
                 find it, then `rekey confirm {id}` (a new grace period) or `rekey rollback {id}`",
                r.record.old_key_id,
                id = r.record.id
            ));
        }
        moved(Event::GraceElapsed)
    }

    /// What must hold before the old key is deleted, re-read: the new key
    /// exists and is active, and the old key is still inactive (or already
    /// gone) and was not turned on since rekey deactivated it. If not, the
    /// old key is (or is made) active and a person decides, or rekey waits:
    /// the step to take instead. Else the old key's status.
    async fn before_deleting(&mut self, r: &mut Rotation) -> Result<Result<Option<KeyStatus>, Step>, EngineError> {
        let keys = self.keys.list_keys(&r.user()).await?;
        let old = keys.iter().find(|k| k.id == r.old_key()).map(|k| k.status);
        if let Some(step) = Self::without_a_working_key(r, &keys) {
            return Ok(Err(step));
        }
        if let Some(problem) = new_key_problem(r, &keys) {
            return Ok(Err(match old {
                Some(KeyStatus::Inactive) => self.reactivate(r, problem, false).await?,
                Some(KeyStatus::Active) => Step::Move(Event::Reactivated, Some(format!("{problem}; the old key stays active. {}", Self::way_out(r)))),
                None => Step::Move(Event::Failed, Some(format!("{problem}, and the old key {} is gone too: the user has no key rekey knows", r.record.old_key_id))),
            }));
        }
        match old {
            Some(KeyStatus::Active) => return Ok(Err(Step::Move(Event::Reactivated, Some(Self::reactivated(r))))),
            None => return Ok(Ok(None)),
            Some(KeyStatus::Inactive) => {}
        }
        // Inactive now, but perhaps not all along: someone may have turned
        // it on and off again, which IAM's API cannot show and CloudTrail can.
        let deactivated = r.progress.deactivated_at.unwrap_or(r.record.updated_at);
        let turned_on = match self.set_active_since(r, &r.old_key(), deactivated).await {
            // CloudTrail's budget is shared (2 lookups a second per account
            // and region, other runners and tools included): busy is no
            // answer, so the deletion waits for one, and the run goes on.
            Err(EngineError::Aws(e @ AwsError::Throttled { .. })) => {
                let at = self.aws_now() + r.plan.timings.retry_after.to_signed();
                return Ok(Err(Step::Wait(at, format!("CloudTrail is busy ({e}); the old key is deleted once it can say no one turned the key on since rekey deactivated it"))));
            }
            answer => answer?,
        };
        if turned_on {
            let reason = format!(
                "the old key {} was set active after rekey deactivated it, and is inactive again (CloudTrail shows it: a quarantine?); something may have used it meanwhile. \
                 Find it, then `rekey confirm {id}` (drain again, then a new grace period), or reactivate the key by hand if it is safe and `rekey rollback {id}`",
                r.record.old_key_id,
                id = r.record.id
            );
            return Ok(Err(Step::Move(Event::Reactivated, Some(reason))));
        }
        Ok(Ok(old))
    }

    fn way_out(r: &Rotation) -> String {
        format!("Find the cause, then `rekey confirm {id}` to drain again, or `rekey rollback {id}`", id = r.record.id)
    }

    /// deleting: `DeleteAccessKey`, only on a key still inactive while the
    /// new key is active; then the sinks drop their restore copies.
    pub(super) async fn delete(&mut self, r: &mut Rotation) -> Result<Step, EngineError> {
        let old = match self.before_deleting(r).await? {
            Err(step) => return Ok(step),
            Ok(old) => old,
        };
        if old == Some(KeyStatus::Inactive) {
            self.fence(r).await?;
            let request_id = self.keys.delete_key(&r.user(), &r.old_key()).await?;
            self.note(r, Audit::DeletedOldKey { key: r.record.old_key_id.to_string() }, request_id);
            crash_point("delete-key");
        }
        self.finish_sinks(r).await?;
        moved(Event::Deleted)
    }

    /// The rotation ends: every sink drops what only served a restore (a
    /// copy holding the old secret), also one written just before a crash
    /// kept its restore point from being saved.
    pub(super) async fn finish_sinks(&mut self, r: &Rotation) -> Result<(), EngineError> {
        for (i, config) in r.plan.deliver.iter().enumerate() {
            let point = r.progress.restore_points.get(&i).unwrap_or(&RestorePoint::Nothing);
            self.targets.sink(config).finish(&self.sink_ctx(r, i), point).await?;
        }
        Ok(())
    }
}

/// Why the new key cannot carry the application alone, if it cannot:
/// someone deleted or deactivated it. Checked before the old key is touched.
pub(super) fn new_key_problem(r: &Rotation, keys: &[ListedKey]) -> Option<String> {
    // A retirement has none: its consumers moved to other credentials.
    let Some(new) = r.new_key() else { return (!r.plan.retire).then(|| "the rotation records no new key".into()) };
    match keys.iter().find(|k| k.id == new).map(|k| k.status) {
        None => Some(format!("the new key {new} no longer exists (deleted outside rekey)")),
        Some(KeyStatus::Inactive) => Some(format!("the new key {new} was deactivated outside rekey")),
        Some(KeyStatus::Active) => None,
    }
}

/// Invariant 1: rekey never deletes or deactivates the user's last active key.
pub(super) fn is_last_active(keys: &[ListedKey], key: &AccessKeyId) -> bool {
    let active: Vec<_> = keys.iter().filter(|k| k.status == KeyStatus::Active).collect();
    matches!(active.as_slice(), [only] if &only.id == key)
}

/// What `unknown_keys` found.
#[derive(Default)]
pub(super) struct UnknownKeys {
    /// Someone else's keys, left alone.
    pub others: Vec<ListedKey>,
    /// A key a lost `CreateAccessKey` may have made is held deactivated:
    /// look again when its deletion is due.
    pub wait: Option<Step>,
}
