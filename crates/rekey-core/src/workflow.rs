//! The rotation state machine: every stage a rotation can be in, the events
//! that move it, and [`next`], the one function that decides whether a move
//! is legal. The engine performs the steps; this file is the map.
//!
//! ```text
//! planned ─► creating ─► delivering ─► verifying_new ─► draining ─► deactivating
//!    ─► verifying_deactivated ─► awaiting_delete ─► deleting ─► completed
//! undo:       any stage before deleting ─► rolling_back ─► rolled_back
//!             any stage before deactivating ─► aborting ─► aborted
//! side exits: blocked (needs a person, resumes into `came_from`), failed
//! ```
//!
//! A rotation's [`State`] is its stage plus the stage it came from, which
//! `blocked` resumes into and the undo stages report; both are stored.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    Planned,
    Creating,
    Delivering,
    VerifyingNew,
    Draining,
    Deactivating,
    VerifyingDeactivated,
    AwaitingDelete,
    Deleting,
    Completed,
    Blocked,
    /// Undoing after a rollback was decided: sinks restored, old key active, new key removed.
    RollingBack,
    /// Undoing after an abort was decided, like a rollback.
    Aborting,
    RolledBack,
    Aborted,
    Failed,
}

impl Stage {
    pub const ALL: [Stage; 16] = [
        Stage::Planned,
        Stage::Creating,
        Stage::Delivering,
        Stage::VerifyingNew,
        Stage::Draining,
        Stage::Deactivating,
        Stage::VerifyingDeactivated,
        Stage::AwaitingDelete,
        Stage::Deleting,
        Stage::Completed,
        Stage::Blocked,
        Stage::RollingBack,
        Stage::Aborting,
        Stage::RolledBack,
        Stage::Aborted,
        Stage::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Planned => "planned",
            Stage::Creating => "creating",
            Stage::Delivering => "delivering",
            Stage::VerifyingNew => "verifying_new",
            Stage::Draining => "draining",
            Stage::Deactivating => "deactivating",
            Stage::VerifyingDeactivated => "verifying_deactivated",
            Stage::AwaitingDelete => "awaiting_delete",
            Stage::Deleting => "deleting",
            Stage::Completed => "completed",
            Stage::Blocked => "blocked",
            Stage::RollingBack => "rolling_back",
            Stage::Aborting => "aborting",
            Stage::RolledBack => "rolled_back",
            Stage::Aborted => "aborted",
            Stage::Failed => "failed",
        }
    }

    /// Nothing more will happen to a rotation in a terminal stage.
    pub fn is_terminal(self) -> bool {
        matches!(self, Stage::Completed | Stage::RolledBack | Stage::Aborted | Stage::Failed)
    }

    /// A stage where the engine has a step to run (the main path and the undo stages).
    pub fn is_working(self) -> bool {
        !self.is_terminal() && self != Stage::Blocked
    }

    pub fn is_undo(self) -> bool {
        matches!(self, Stage::RollingBack | Stage::Aborting)
    }

    /// Before the old key is touched: abort can still cancel cleanly.
    pub fn is_before_deactivation(self) -> bool {
        matches!(self, Stage::Planned | Stage::Creating | Stage::Delivering | Stage::VerifyingNew | Stage::Draining)
    }

    /// The old key may already be gone: nothing to roll back to.
    pub fn is_past_deletion(self) -> bool {
        matches!(self, Stage::Deleting | Stage::Completed)
    }

    /// Stages as an SQL list (`'a', 'b'`), so queries and indexes name
    /// stages from this one definition.
    pub fn sql_list(filter: impl Fn(Stage) -> bool) -> String {
        Stage::ALL.into_iter().filter(|s| filter(*s)).map(|s| format!("'{}'", s.as_str())).collect::<Vec<_>>().join(", ")
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown stage {0:?}")]
pub struct UnknownStage(String);

impl FromStr for Stage {
    type Err = UnknownStage;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Stage::ALL.into_iter().find(|st| st.as_str() == s).ok_or_else(|| UnknownStage(s.to_owned()))
    }
}

/// Where a rotation is: its stage, and for `blocked` the stage it resumes
/// into, for the undo stages the stage the undo began in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct State {
    pub stage: Stage,
    pub came_from: Option<Stage>,
}

impl State {
    pub const fn at(stage: Stage) -> State {
        State { stage, came_from: None }
    }

    /// Where the rotation is: a blocked one is where it came from (it
    /// resumes there).
    pub fn position(self) -> Stage {
        match (self.stage, self.came_from) {
            (Stage::Blocked, Some(from)) => from,
            (stage, _) => stage,
        }
    }
}

/// What happened. Each main-path event leaves exactly one stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    PreflightPassed,
    /// Preflight passed for a retirement (SPEC section 9): no new key, so
    /// the drain starts at once, from the start of the retirement.
    RetirementPreflightPassed,
    KeyCreated,
    Delivered,
    /// The new key's secret is gone from memory and from every readable sink,
    /// and the unused key was deleted: create it again.
    SecretLost,
    NewKeyVerified,
    Drained,
    /// `deactivating` re-read the old key's last use and found a new use
    /// after delivery: back to draining.
    OldKeyUsed,
    /// A person withdrew `--force` before the deactivation it allowed.
    ForceWithdrawn,
    Deactivated,
    DeactivationVerified,
    /// The old key is active again after deactivation: rekey reactivated it
    /// (a check after deactivation failed, or the new key is gone), or a
    /// person did while it waited for deletion. A person decides: confirm
    /// drains again (and a new grace period follows), or roll back.
    Reactivated,
    GraceElapsed,
    Deleted,
    /// A person is needed (reason recorded by the engine); resumes into the
    /// stage it was blocked in.
    Blocked,
    /// A person resolved the block: back to `came_from`.
    Resumed,
    /// Undo decided: `rolling_back` (rollback) or `aborting` (abort).
    UndoDecided { abort: bool },
    /// The undo finished: old key active, sinks restored, new key gone.
    Undone,
    /// The old key was deleted outside rekey, so nothing can go back to it:
    /// a person ends a rotation blocked in an undo, or in a delivery whose
    /// secret was lost, keeping the new key where it is, as if completed.
    KeptNewKey,
    /// Something the engine cannot continue from (reason recorded).
    Failed,
}

impl Event {
    /// The name the audit log records.
    pub fn name(&self) -> &'static str {
        match self {
            Event::PreflightPassed => "preflight_passed",
            Event::RetirementPreflightPassed => "retirement_preflight_passed",
            Event::KeyCreated => "key_created",
            Event::Delivered => "delivered",
            Event::SecretLost => "secret_lost",
            Event::NewKeyVerified => "new_key_verified",
            Event::Drained => "drained",
            Event::OldKeyUsed => "old_key_used",
            Event::ForceWithdrawn => "force_withdrawn",
            Event::Deactivated => "deactivated",
            Event::DeactivationVerified => "deactivation_verified",
            Event::Reactivated => "reactivated",
            Event::GraceElapsed => "grace_elapsed",
            Event::Deleted => "deleted",
            Event::Blocked => "blocked",
            Event::Resumed => "resumed",
            Event::UndoDecided { abort: false } => "rollback_decided",
            Event::UndoDecided { abort: true } => "abort_decided",
            Event::Undone => "undone",
            Event::KeptNewKey => "kept_new_key",
            Event::Failed => "failed",
        }
    }

    /// The event of the audit line that records the move this event makes:
    /// `stage_` and its name (`stage_deleted`). The one place it is spelled.
    pub fn audit_event(&self) -> String {
        format!("stage_{}", self.name())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a rotation in stage {} cannot take {}", from.stage, event.name())]
pub struct IllegalTransition {
    pub from: State,
    pub event: Event,
}

/// The transition function: the only place that says which moves are legal.
pub fn next(from: State, event: &Event) -> Result<State, IllegalTransition> {
    use Event as E;
    use Stage as S;
    let illegal = || IllegalTransition { from, event: event.clone() };
    let to = |stage| Ok(State::at(stage));
    match (from.stage, event) {
        (S::Planned, E::PreflightPassed) => to(S::Creating),
        (S::Planned, E::RetirementPreflightPassed) => to(S::Draining),
        (S::Creating, E::KeyCreated) => to(S::Delivering),
        (S::Delivering, E::Delivered) => to(S::VerifyingNew),
        (S::Delivering | S::VerifyingNew, E::SecretLost) => to(S::Creating),
        (S::VerifyingNew, E::NewKeyVerified) => to(S::Draining),
        (S::Draining, E::Drained) => to(S::Deactivating),
        (S::Deactivating, E::OldKeyUsed | E::ForceWithdrawn) => to(S::Draining),
        (S::Deactivating, E::Deactivated) => to(S::VerifyingDeactivated),
        (S::VerifyingDeactivated, E::DeactivationVerified) => to(S::AwaitingDelete),
        (S::VerifyingDeactivated | S::AwaitingDelete | S::Deleting, E::Reactivated) => {
            Ok(State { stage: S::Blocked, came_from: Some(S::Draining) })
        }
        (S::AwaitingDelete, E::GraceElapsed) => to(S::Deleting),
        (S::Deleting, E::Deleted) => to(S::Completed),
        (s, E::Blocked) if s.is_working() => Ok(State { stage: S::Blocked, came_from: Some(s) }),
        (S::Blocked, E::Resumed) => match from.came_from {
            Some(s) if s.is_working() => to(s),
            _ => Err(illegal()),
        },
        (s, E::UndoDecided { abort }) if !s.is_terminal() && !s.is_undo() => {
            let position = from.position();
            let allowed = if *abort { position.is_before_deactivation() } else { !position.is_past_deletion() };
            if !allowed || position.is_undo() || position == S::Blocked {
                return Err(illegal());
            }
            Ok(State { stage: if *abort { S::Aborting } else { S::RollingBack }, came_from: Some(position) })
        }
        (S::Blocked, E::KeptNewKey) if from.came_from.is_some_and(|s| s.is_undo() || s == S::Delivering) => to(S::Completed),
        (S::RollingBack, E::Undone) => to(S::RolledBack),
        (S::Aborting, E::Undone) => to(S::Aborted),
        (s, E::Failed) if !s.is_terminal() => to(S::Failed),
        _ => Err(illegal()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Event as E;
    use Stage as S;

    const MAIN_PATH: [(Stage, Event, Stage); 9] = [
        (S::Planned, E::PreflightPassed, S::Creating),
        (S::Creating, E::KeyCreated, S::Delivering),
        (S::Delivering, E::Delivered, S::VerifyingNew),
        (S::VerifyingNew, E::NewKeyVerified, S::Draining),
        (S::Draining, E::Drained, S::Deactivating),
        (S::Deactivating, E::Deactivated, S::VerifyingDeactivated),
        (S::VerifyingDeactivated, E::DeactivationVerified, S::AwaitingDelete),
        (S::AwaitingDelete, E::GraceElapsed, S::Deleting),
        (S::Deleting, E::Deleted, S::Completed),
    ];

    fn all_events() -> Vec<Event> {
        vec![
            E::PreflightPassed, E::RetirementPreflightPassed, E::KeyCreated, E::Delivered, E::SecretLost, E::NewKeyVerified, E::Drained,
            E::OldKeyUsed, E::ForceWithdrawn, E::Deactivated, E::DeactivationVerified, E::Reactivated, E::GraceElapsed, E::Deleted,
            E::Blocked, E::Resumed, E::UndoDecided { abort: false }, E::UndoDecided { abort: true }, E::Undone, E::KeptNewKey, E::Failed,
        ]
    }

    fn all_states() -> Vec<State> {
        let mut states: Vec<State> = Stage::ALL.map(State::at).to_vec();
        for from in Stage::ALL {
            states.push(State { stage: S::Blocked, came_from: Some(from) });
        }
        states
    }

    fn blocked_in(stage: Stage) -> State {
        next(State::at(stage), &E::Blocked).unwrap()
    }

    #[test]
    fn the_main_path_reaches_completed() {
        let mut state = State::at(S::Planned);
        for (from, event, to) in MAIN_PATH {
            assert_eq!(state.stage, from);
            state = next(state, &event).unwrap();
            assert_eq!(state, State::at(to));
        }
        assert!(state.stage.is_terminal());
    }

    #[test]
    fn each_main_event_is_legal_in_exactly_one_stage() {
        for (from, event, _) in MAIN_PATH {
            let legal: Vec<State> = all_states().into_iter().filter(|s| next(*s, &event).is_ok()).collect();
            assert_eq!(legal, [State::at(from)], "{event:?}");
        }
    }

    #[test]
    fn terminal_stages_take_no_event() {
        for stage in Stage::ALL.into_iter().filter(|s| s.is_terminal()) {
            for event in all_events() {
                assert!(next(State::at(stage), &event).is_err(), "{stage} took {event:?}");
            }
        }
    }

    #[test]
    fn rollback_is_possible_until_deletion_begins_blocked_included() {
        let rollback = E::UndoDecided { abort: false };
        for stage in Stage::ALL {
            let allowed = stage.is_working() && !stage.is_undo() && !stage.is_past_deletion();
            assert_eq!(next(State::at(stage), &rollback).is_ok(), allowed, "{stage}");
            if stage.is_working() && !stage.is_undo() {
                assert_eq!(next(blocked_in(stage), &rollback).is_ok(), allowed, "blocked in {stage}");
            }
        }
        let undoing = next(blocked_in(S::Draining), &rollback).unwrap();
        assert_eq!(undoing, State { stage: S::RollingBack, came_from: Some(S::Draining) }, "the undo says where it began");
        assert_eq!(next(undoing, &E::Undone).unwrap(), State::at(S::RolledBack));
    }

    #[test]
    fn abort_only_before_the_old_key_is_touched_blocked_included() {
        let abort = E::UndoDecided { abort: true };
        for stage in Stage::ALL.into_iter().filter(|s| s.is_working() && !s.is_undo()) {
            let allowed = stage.is_before_deactivation();
            assert_eq!(next(State::at(stage), &abort).is_ok(), allowed, "{stage}");
            assert_eq!(next(blocked_in(stage), &abort).is_ok(), allowed, "blocked in {stage}");
        }
        assert_eq!(next(State::at(S::Draining), &abort).unwrap().stage, S::Aborting);
        assert_eq!(next(State::at(S::Aborting), &E::Undone).unwrap(), State::at(S::Aborted));
    }

    #[test]
    fn an_undo_is_a_stage_that_can_block_and_resume_but_not_be_undone_again() {
        for undo in [S::RollingBack, S::Aborting] {
            let blocked = blocked_in(undo);
            assert_eq!(blocked, State { stage: S::Blocked, came_from: Some(undo) });
            assert_eq!(next(blocked, &E::Resumed).unwrap(), State::at(undo));
            for event in [E::UndoDecided { abort: false }, E::UndoDecided { abort: true }] {
                assert!(next(State::at(undo), &event).is_err());
                assert!(next(blocked, &event).is_err());
            }
        }
    }

    #[test]
    fn only_a_blocked_undo_or_delivery_ends_keeping_the_new_key() {
        for stage in [S::RollingBack, S::Aborting, S::Delivering] {
            assert_eq!(next(blocked_in(stage), &E::KeptNewKey).unwrap(), State::at(S::Completed));
            assert!(next(State::at(stage), &E::KeptNewKey).is_err());
        }
        assert!(next(blocked_in(S::Draining), &E::KeptNewKey).is_err());
    }

    #[test]
    fn blocked_resumes_only_into_the_stage_it_came_from() {
        assert_eq!(next(blocked_in(S::Deleting), &E::Resumed).unwrap(), State::at(S::Deleting));
        assert!(next(State { stage: S::Blocked, came_from: None }, &E::Resumed).is_err());
        assert!(next(State { stage: S::Blocked, came_from: Some(S::Completed) }, &E::Resumed).is_err());
        assert!(next(State::at(S::Draining), &E::Resumed).is_err(), "resume only from blocked");
        assert!(next(blocked_in(S::Draining), &E::Blocked).is_err());
    }

    #[test]
    fn a_failure_after_deactivation_blocks_and_then_drains_again() {
        let blocked = next(State::at(S::VerifyingDeactivated), &E::Reactivated).unwrap();
        assert_eq!(blocked, State { stage: S::Blocked, came_from: Some(S::Draining) });
        assert_eq!(next(blocked, &E::Resumed).unwrap(), State::at(S::Draining));
        assert!(next(blocked, &E::UndoDecided { abort: false }).is_ok(), "or a person rolls back");
    }

    #[test]
    fn an_old_key_active_again_before_deletion_blocks_where_rollback_and_confirm_work() {
        for stage in [S::VerifyingDeactivated, S::AwaitingDelete, S::Deleting] {
            let blocked = next(State::at(stage), &E::Reactivated).unwrap();
            assert_eq!(blocked, State { stage: S::Blocked, came_from: Some(S::Draining) }, "{stage}");
            assert!(next(blocked, &E::UndoDecided { abort: false }).is_ok(), "rollback works from {stage}");
            assert_eq!(next(blocked, &E::Resumed).unwrap(), State::at(S::Draining), "confirm drains again from {stage}");
        }
        for stage in [S::Draining, S::Deactivating, S::Completed] {
            assert!(next(State::at(stage), &E::Reactivated).is_err(), "{stage}");
        }
    }

    #[test]
    fn a_use_seen_while_deactivating_goes_back_to_draining() {
        assert_eq!(next(State::at(S::Deactivating), &E::OldKeyUsed).unwrap(), State::at(S::Draining));
        assert!(next(State::at(S::VerifyingDeactivated), &E::OldKeyUsed).is_err());
    }

    #[test]
    fn a_retirement_goes_from_preflight_straight_to_draining_then_the_main_path() {
        let mut state = next(State::at(S::Planned), &E::RetirementPreflightPassed).unwrap();
        assert_eq!(state.stage, S::Draining);
        for (_, event, to) in MAIN_PATH.iter().skip_while(|(from, _, _)| *from != S::Draining) {
            state = next(state, event).unwrap();
            assert_eq!(state.stage, *to);
        }
        assert_eq!(state.stage, S::Completed);
        assert!(next(State::at(S::Creating), &E::RetirementPreflightPassed).is_err());
    }

    #[test]
    fn a_lost_secret_goes_back_to_creating() {
        assert_eq!(next(State::at(S::Delivering), &E::SecretLost).unwrap().stage, S::Creating);
        assert_eq!(next(State::at(S::VerifyingNew), &E::SecretLost).unwrap().stage, S::Creating);
        assert!(next(State::at(S::Draining), &E::SecretLost).is_err());
    }

    #[test]
    fn stage_names_round_trip_and_sql_lists_name_them() {
        for stage in Stage::ALL {
            assert_eq!(stage.as_str().parse::<Stage>(), Ok(stage));
        }
        assert!("done".parse::<Stage>().is_err());
        assert_eq!(Stage::sql_list(Stage::is_terminal), "'completed', 'rolled_back', 'aborted', 'failed'");
    }
}
