//! Undo (rollback and abort), a stage like any other: the old key first,
//! then the sinks, then the new key.

use super::*;

impl Engine<'_> {
    /// rolling_back / aborting, each part idempotent: neither key active
    /// blocks first (see `without_a_working_key`); the old key must exist
    /// (else nothing is touched: the new key may be the user's only one) and
    /// is made active first, on a person's word if someone else deactivated
    /// it; then every sink is restored; then the new key goes (see
    /// `remove_new_key`), or stays for the sinks rekey cannot restore.
    pub(super) async fn undo(&mut self, r: &mut Rotation) -> Result<Step, EngineError> {
        self.drop_lost_key(r).await?;
        let keys = self.keys.list_keys(&r.user()).await?;
        if let Some(step) = Self::without_a_working_key(r, &keys) {
            return Ok(step);
        }
        let old = keys.iter().find(|k| k.id == r.old_key());
        let theirs = old.is_some_and(|k| k.status == KeyStatus::Inactive) && !self.old_key_still_rekeys(r).await?;
        match old {
            None if r.new_key().is_some() => return Ok(self.old_key_lost(r, "cannot undo")),
            // Gone, and no new key recorded: nothing to undo towards. The
            // end says so, for the sinks that still name the deleted key.
            None => {
                if let Some(wait) = self.unknown_keys(r).await?.wait {
                    return Ok(wait);
                }
                let why = format!("the old key {} was deleted outside rekey and there is no new key: the sinks still hold the deleted key", r.record.old_key_id);
                return Ok(Step::Move(Event::Failed, Some(why)));
            }
            // An old key someone else deactivated: left so if no sink holds it.
            Some(_) if theirs && r.plan.deliver.is_empty() => {
                let why = r.record.blocked_reason.take().map(|b| format!("{b}. ")).unwrap_or_default();
                r.record.blocked_reason = Some(format!("{why}The old key {} stays inactive, as someone other than rekey left it", r.record.old_key_id));
            }
            // The sinks go back to it (or never left it): active again only on a person's word.
            Some(_) if theirs => {
                let why = format!("the undo puts the sinks back on the old key {}, which was deactivated by someone other than rekey", r.record.old_key_id);
                return Ok(Self::ask_to_reactivate(r, &r.old_key(), &why, "finish the undo"));
            }
            Some(k) if k.status == KeyStatus::Inactive => {
                self.fence(r).await?;
                let request_id = self.keys.set_status(&r.user(), &r.old_key(), KeyStatus::Active).await?;
                self.note(r, Audit::ReactivatedOldKey { key: r.record.old_key_id.to_string() }, request_id);
                crash_point("reactivate");
                // Active again: a later deactivation is no longer rekey's.
                r.progress.deactivated_at = None;
            }
            _ => {}
        }
        let mut keep_new_key = Vec::new();
        if let Some(new) = r.new_key() {
            // Saved first: after this, a sink may be back on the old key.
            if !r.progress.restore_began && !r.progress.restore_points.is_empty() {
                r.progress.restore_began = true;
                self.save(r).await?;
            }
            for (i, config) in r.plan.deliver.iter().enumerate().rev() {
                let sink = self.targets.sink(config);
                let outcome = match r.progress.restore_points.get(&i) {
                    Some(point) => {
                        self.fence(r).await?;
                        sink.restore(&self.sink_ctx(r, i), &new, point).await?
                    }
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
        if r.progress.sinks_restored_at.is_none() {
            r.progress.sinks_restored_at = Some(self.aws_now());
        }
        match r.new_key() {
            // Only a key a lost CreateAccessKey made is removed; others are someone else's.
            None => {
                if let Some(wait) = self.unknown_keys(r).await?.wait {
                    return Ok(wait);
                }
            }
            Some(new) if !keep_new_key.is_empty() => {
                if let Some(step) = self.new_key_kept_working(r, &new, &keep_new_key).await? {
                    return Ok(step);
                }
                // The ended rotation says which sinks still hold the new key.
                let why = r.record.blocked_reason.take().map(|b| format!("{b}. ")).unwrap_or_default();
                r.record.blocked_reason = Some(format!("{why}The new key {new} stays where rekey cannot take it back: {}", keep_new_key.join("; ")));
                self.note(r, Audit::KeptNewKey { key: new.to_string(), because: keep_new_key }, None);
            }
            Some(new) => {
                if let Some(step) = self.remove_new_key(r, &new).await? {
                    return Ok(step);
                }
            }
        }
        self.finish_sinks(r).await?;
        // The ended rotation still says why it was undone.
        Ok(Step::Move(Event::Undone, r.record.blocked_reason.clone()))
    }

    /// Sinks rekey cannot put back (`sinks`) keep the new key, so it must
    /// stay working for them. Someone else deactivated it: rekey reactivates
    /// it on a person's word. Deleted: a person puts the old key in those
    /// sinks by hand and confirms. `None`: it works again, or a person
    /// confirmed the sinks are back on the old key.
    async fn new_key_kept_working(&mut self, r: &mut Rotation, new: &AccessKeyId, sinks: &[String]) -> Result<Option<Step>, EngineError> {
        let keys = match self.keys_after_restoring(r).await? {
            Ok(keys) => keys,
            Err(step) => return Ok(Some(step)),
        };
        let held = sinks.join("; ");
        match keys.iter().find(|k| &k.id == new).map(|k| k.status) {
            Some(KeyStatus::Active) => Ok(None),
            Some(KeyStatus::Inactive) => {
                let why = format!("the new key {new} was deactivated by someone other than rekey, but rekey cannot take it back from: {held}");
                Ok(Some(Self::ask_to_reactivate(r, new, &why, "finish the undo, leaving it to those sinks")))
            }
            None if r.progress.old_key_put_back => Ok(None),
            None => {
                r.progress.asked = Some(Ask::OldKeyPutBack);
                blocked(format!(
                    "the new key {new} was deleted outside rekey, but rekey cannot take it back from: {held}; put the old key {} in place there by hand, then `rekey confirm {}`",
                    r.record.old_key_id, r.record.id
                ))
                .map(Some)
            }
        }
    }

    /// Removes the new key of an undone rotation, on evidence. A key no
    /// sink ever got goes at once. Otherwise it is deactivated first (the
    /// time saved before the call, so a crash cannot skip the wait), and
    /// deleted only once `last_used_lag` has passed since the sinks were
    /// restored, so IAM's last-used data can show who used it meanwhile; if
    /// something other than rekey's verification did, only after `grace`.
    async fn remove_new_key(&mut self, r: &mut Rotation, new: &AccessKeyId) -> Result<Option<Step>, EngineError> {
        let keys = match self.keys_after_restoring(r).await? {
            Ok(keys) => keys,
            Err(step) => return Ok(Some(step)),
        };
        let Some(status) = keys.iter().find(|k| &k.id == new).map(|k| k.status) else { return Ok(None) };
        if steps::is_last_active(&keys, new) {
            return blocked(format!(
                "the new key {new} is the user's only active key (the old key is inactive or gone), so the undo keeps it; `rekey confirm {}` ends the undo and leaves it",
                r.record.id
            ))
            .map(Some);
        }
        let t = r.plan.timings;
        if r.progress.new_key_left_to_person {
            self.note(r, Audit::KeptNewKey { key: new.to_string(), because: vec!["a person reactivated it and confirmed".into()] }, None);
            return Ok(None);
        }
        if !r.progress.attempted.is_empty() {
            match (status, r.progress.new_key_seen_inactive) {
                (KeyStatus::Active, true) => {
                    let id = &r.record.id;
                    return blocked(format!(
                        "the new key {new} was reactivated after rekey deactivated it during the undo: something needs it. `rekey confirm {id}` finishes the undo and leaves the key to you; or deactivate it again and `rekey rollback {id}` deletes it"
                    ))
                    .map(Some);
                }
                (KeyStatus::Active, false) => {
                    r.progress.new_key_deactivated_at = Some(self.aws_now());
                    self.save(r).await?;
                    self.fence(r).await?;
                    let request_id = self.keys.set_status(&r.user(), new, KeyStatus::Inactive).await?;
                    let because = "the sinks were restored; deleted once IAM can show who used it".to_owned();
                    self.note(r, Audit::DeactivatedNewKey { key: new.to_string(), because }, request_id);
                    crash_point("deactivate-new-key");
                }
                (KeyStatus::Inactive, _) => {}
            }
            r.progress.new_key_seen_inactive = true;
            let now = self.aws_now();
            let restored = r.progress.sinks_restored_at.unwrap_or(now);
            let deactivated = r.progress.new_key_deactivated_at.unwrap_or(restored);
            let evidence = restored.max(deactivated) + t.last_used_lag.to_signed();
            if now < evidence {
                return Ok(Some(Step::Wait(evidence, format!("the new key {new} is deactivated; deleted after {evidence}, once IAM's last-used data shows who used it"))));
            }
            let used = self.last_used(new).await?.at;
            let used_by_others = match r.progress.verified_at.or(r.progress.delivered_at) {
                Some(own_use_until) => drain::used_after(&t, own_use_until, used),
                None => used.is_some(),
            };
            let due = deactivated + t.grace.to_signed();
            if let (true, Some(at), true) = (used_by_others, used, now < due) {
                return Ok(Some(Step::Wait(due, format!("the new key {new} was used at {at} by something other than rekey; deactivated, it is deleted after {due}"))));
            }
            // Read last, right before the deletion.
            if let Err(step) = self.keys_after_restoring(r).await? {
                return Ok(Some(step));
            }
        }
        self.fence(r).await?;
        let request_id = self.keys.delete_key(&r.user(), new).await?;
        self.note(r, Audit::DeletedNewKey { key: new.to_string() }, request_id);
        crash_point("delete-new-key");
        Ok(None)
    }

    /// The user's keys, read after the sinks went back to the old key: the
    /// undo first looked at it before restoring them, and a person may have
    /// deleted or deactivated it since. Then the undo does not end with a
    /// sink on it: it blocks (see `old_key_lost`, `ask_to_reactivate`).
    /// Also `without_a_working_key`.
    async fn keys_after_restoring(&mut self, r: &mut Rotation) -> Result<Result<Vec<ListedKey>, Step>, EngineError> {
        let keys = self.keys.list_keys(&r.user()).await?;
        if let Some(step) = Self::without_a_working_key(r, &keys) {
            return Ok(Err(step));
        }
        if Self::sinks_on_the_old_key(r).next().is_some() {
            match keys.iter().find(|k| k.id == r.old_key()).map(|k| k.status) {
                None => return Ok(Err(self.old_key_lost(r, "cannot finish the undo"))),
                Some(KeyStatus::Inactive) => {
                    let why = format!("the undo put the sinks back on the old key {}, which someone other than rekey deactivated since", r.record.old_key_id);
                    return Ok(Err(Self::ask_to_reactivate(r, &r.old_key(), &why, "finish the undo")));
                }
                Some(KeyStatus::Active) => {}
            }
        }
        Ok(Ok(keys))
    }
}
