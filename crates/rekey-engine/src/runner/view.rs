//! A rotation as `rekey status` shows it: the fields SPEC section 5 names,
//! and what the engine knows of its progress, decoded here once.

use super::*;
use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct View {
    pub id: String,
    pub account_id: AccountId,
    pub user_name: UserName,
    pub old_key_id: AccessKeyId,
    pub new_key_id: Option<AccessKeyId>,
    pub stage: Stage,
    pub came_from: Option<Stage>,
    /// Only while the engine has a step to run.
    pub next_check_at: Option<Timestamp>,
    pub blocked_reason: Option<String>,
    pub waiting_for: Option<String>,
    pub started_at: Timestamp,
    pub updated_at: Timestamp,
    pub delivered_at: Option<Timestamp>,
    pub deactivated_at: Option<Timestamp>,
    pub drain_restarted_at: Option<Timestamp>,
    pub old_key_used_after_delivery: Option<SeenUse>,
    pub old_key_consumers: Option<ConsumerWatch>,
}

impl View {
    pub fn of(record: &RotationRecord) -> Result<View, EngineError> {
        let r = Rotation::decode(record.clone())?;
        let (record, progress) = (r.record, r.progress);
        Ok(View {
            next_check_at: record.next_check_at.filter(|_| record.stage.is_working()),
            id: record.id,
            account_id: record.account_id,
            user_name: record.user_name,
            old_key_id: record.old_key_id,
            new_key_id: record.new_key_id,
            stage: record.stage,
            came_from: record.came_from,
            blocked_reason: record.blocked_reason,
            waiting_for: progress.waiting_for,
            started_at: record.started_at,
            updated_at: record.updated_at,
            delivered_at: progress.delivered_at,
            deactivated_at: progress.deactivated_at,
            drain_restarted_at: progress.drain_from,
            old_key_used_after_delivery: progress.used_after_delivery,
            old_key_consumers: progress.consumers,
        })
    }

    /// What a person reads first: why it is blocked, or what it waits for.
    pub fn note(&self) -> Option<&str> {
        self.blocked_reason.as_deref().or(self.waiting_for.as_deref())
    }
}
