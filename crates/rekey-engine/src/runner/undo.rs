//! Undo (rollback and abort), a stage like any other: the old key first,
//! then the sinks, then the new key.

use super::*;

impl Engine<'_> {
    /// rolling_back / aborting, each part idempotent: the old key must exist
    /// (else nothing is touched: the new key may be the user's only one) and
    /// is made active first; then every sink is restored; then the new key is
    /// deleted if nothing but rekey's verification used it, or deactivated
    /// and deleted after `grace` if something did.
    pub(super) async fn undo(&mut self, r: &mut Rotation) -> Result<Step, EngineError> {
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
    pub(super) async fn remove_new_key(&mut self, r: &mut Rotation, new: &AccessKeyId, keys: &[rekey_aws::iam::ListedKey]) -> Result<Option<Step>, EngineError> {
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
}
