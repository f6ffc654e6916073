//! What the audit log records besides stage changes, as one enum: the
//! names and fields tests and operators rely on are defined here once.

use jiff::Timestamp;
use rekey_core::workflow::{Event, Stage};
use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Audit {
    RotationStarted { deliver: Vec<String>, verify: Vec<String> },
    /// `rekey retire`: no new key, no sinks; the consumers' checks, if any.
    RetirementStarted { verify: Vec<String> },
    DeletedInactiveKey { key: String },
    DeletedUnrecordedKey { key: String },
    /// A key a lost `CreateAccessKey` may have made, held until IAM could show its use.
    DeactivatedUnrecordedKey { key: String },
    /// That key was used after all: someone else's, turned back on.
    ReactivatedUnrecordedKey { key: String },
    CreatedNewKey { key: String },
    Delivered { sink: String, already_there: bool },
    DeletedLostKey { key: String },
    Verified { verifier: String, stage: Stage },
    VerificationSkipped { verifier: String, stage: Stage, why: String },
    VerificationFailed { verifier: String, stage: Stage, reason: String },
    OldKeyUsedAfterDelivery { at: Timestamp, service: Option<String>, region: Option<String> },
    DrainForced { old_key_use: String },
    /// Every consumer seen on the old key since delivery moved to the new
    /// key: the evidence that let the drain go on by itself.
    ConsumersMoved { consumers: Vec<String>, quiet_since: Timestamp },
    DeactivatedOldKey { key: String },
    ReactivatedOldKey { key: String },
    /// A key someone else deactivated, reactivated because a person
    /// allowed it (`rekey confirm` of a block that offered it).
    ReactivatedOnConfirmation { key: String },
    DeletedOldKey { key: String },
    RestoredSink { sink: String, outcome: String },
    DeletedNewKey { key: String },
    DeactivatedNewKey { key: String, because: String },
    KeptNewKey { key: String, because: Vec<String> },
    StepFailed { stage: Stage, error: String },
    Confirmed { stage: Stage, force: bool },
    /// A move of the state machine by `event`: the line is named after the
    /// event ([`Event::audit_event`]), its stages are the line's own
    /// columns, and only `reason` is detail.
    Transition {
        #[serde(skip)]
        event: Event,
        #[serde(skip)]
        from: Stage,
        #[serde(skip)]
        to: Stage,
        reason: Option<String>,
    },
    // What people are told and what they exempt: not about one rotation.
    /// `rekey suppress`: an exemption recorded.
    Suppressed { account_id: String, user_name: String, reason: String, until: Option<Timestamp> },
    /// `rekey unsuppress`: an exemption ended by a person.
    Unsuppressed { account_id: String, user_name: String, reason: Option<String> },
    /// `rekey run`: an exemption's `--until` passed ("" when it had none).
    ExemptionExpired { account_id: String, user_name: String, reason: String, by: String, until: String },
    /// `rotate`/`retire --ignore-exemption`: the user was exempt, by a
    /// person (`by`) or an `[[exempt]]` rule (`rule`, from 1).
    ExemptionIgnored { account_id: String, user_name: String, source: String, rule: Option<usize>, by: Option<String>, reason: String },
    /// `rekey run`: an `[[exempt]]` rule's finding update: SUPPRESSED by
    /// rule `rule`, or NEW (`rule` null) when no rule applies any more.
    ExemptionRuleMirrored { account_id: String, user_name: String, rule: Option<usize>, workflow: String },
    /// `rekey notify`: an owner was sent their list.
    OwnerNotified { owner: Option<String>, channels: Vec<String>, digest: String, keys: usize },
    /// `rekey run`: an owner was sent a reminder digest (`[notify] remind`);
    /// `keys` as `USER in ACCOUNT: fails in 7 days`.
    OwnerReminded { owner: Option<String>, channels: Vec<String>, keys: Vec<String> },
    /// Security Hub refused finding updates; they stay queued.
    FindingUpdateFailed { account_id: String, users: Vec<String>, error: String, pending: usize },
}

impl Audit {
    /// A line of the audit log about no rotation (exemptions, notices).
    pub fn about_owners(&self, at: Timestamp, actor: &str) -> rekey_store::AuditEntry {
        let (event, detail) = self.split();
        rekey_store::AuditEntry::about_owners(at, actor, &event, detail)
    }

    /// The event name and its detail, as the store keeps them.
    pub fn split(&self) -> (String, serde_json::Value) {
        // invariant: our own types, with string keys, always serialize
        let mut value = serde_json::to_value(self).expect("audit events serialize");
        let tag = value.as_object_mut().and_then(|o| o.remove("event")).and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default();
        let name = match self {
            Audit::Transition { event, .. } => event.audit_event(),
            _ => tag,
        };
        (name, value)
    }

    /// The stages a line records (`from_stage`, `to_stage`): a transition's.
    pub fn stages(&self) -> (Option<Stage>, Option<Stage>) {
        match self {
            Audit::Transition { from, to, .. } => (Some(*from), Some(*to)),
            _ => (None, None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_split_into_name_and_detail() {
        let (name, detail) = Audit::Delivered { sink: "exec x".into(), already_there: false }.split();
        assert_eq!(name, "delivered");
        assert_eq!(detail, serde_json::json!({"sink": "exec x", "already_there": false}));
    }

    #[test]
    fn a_transition_is_named_after_its_event_with_only_the_reason_as_detail() {
        let line = Audit::Transition { event: Event::Deleted, from: Stage::Deleting, to: Stage::Completed, reason: None };
        assert_eq!(line.split(), ("stage_deleted".to_owned(), serde_json::json!({"reason": null})));
        assert_eq!(line.stages(), (Some(Stage::Deleting), Some(Stage::Completed)));
        let blocked = Audit::Transition { event: Event::Blocked, from: Stage::Draining, to: Stage::Blocked, reason: Some("why".into()) };
        assert_eq!(blocked.split(), ("stage_blocked".to_owned(), serde_json::json!({"reason": "why"})));
    }
}
