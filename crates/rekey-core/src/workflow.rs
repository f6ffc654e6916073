//! The rotation state machine: every stage a rotation can be in, the events
//! that move it, and [`next`], the one function that decides whether a move
//! is legal. The engine performs the steps; this file is the map.
//!
//! ```text
//! planned ─► creating ─► delivering ─► verifying_new ─► draining ─► deactivating
//!    ─► verifying_deactivated ─► awaiting_delete ─► deleting ─► completed
//! side exits: blocked (needs a person), rolled_back, aborted, failed
//! ```

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
    RolledBack,
    Aborted,
    Failed,
}

impl Stage {
    pub const ALL: [Stage; 14] = [
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
            Stage::RolledBack => "rolled_back",
            Stage::Aborted => "aborted",
            Stage::Failed => "failed",
        }
    }

    /// Nothing more will happen to a rotation in a terminal stage.
    pub fn is_terminal(self) -> bool {
        matches!(self, Stage::Completed | Stage::RolledBack | Stage::Aborted | Stage::Failed)
    }

    /// A stage of the main path, where the engine has a step to run.
    pub fn is_working(self) -> bool {
        !self.is_terminal() && self != Stage::Blocked
    }

    /// Before the old key is touched: abort can still cancel cleanly.
    pub fn is_before_deactivation(self) -> bool {
        matches!(self, Stage::Planned | Stage::Creating | Stage::Delivering | Stage::VerifyingNew | Stage::Draining)
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

/// What happened. Each main-path event leaves exactly one stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    PreflightPassed,
    KeyCreated,
    Delivered,
    /// The new key's secret is gone from memory and from every readable sink,
    /// and the unused key was deleted: create it again.
    SecretLost,
    NewKeyVerified,
    Drained,
    Deactivated,
    DeactivationVerified,
    GraceElapsed,
    Deleted,
    /// A person is needed (reason recorded by the engine).
    Blocked,
    /// A person resolved the block: go back to the stage it was blocked in.
    Resumed { to: Stage },
    /// The rotation was undone: old key active, sinks restored, new key gone.
    RolledBack,
    /// Cancelled before the old key was touched, undone like a rollback.
    Aborted,
    /// Something the engine cannot continue from (reason recorded).
    Failed,
}

impl Event {
    /// The name the audit log records.
    pub fn name(&self) -> &'static str {
        match self {
            Event::PreflightPassed => "preflight_passed",
            Event::KeyCreated => "key_created",
            Event::Delivered => "delivered",
            Event::SecretLost => "secret_lost",
            Event::NewKeyVerified => "new_key_verified",
            Event::Drained => "drained",
            Event::Deactivated => "deactivated",
            Event::DeactivationVerified => "deactivation_verified",
            Event::GraceElapsed => "grace_elapsed",
            Event::Deleted => "deleted",
            Event::Blocked => "blocked",
            Event::Resumed { .. } => "resumed",
            Event::RolledBack => "rolled_back",
            Event::Aborted => "aborted",
            Event::Failed => "failed",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a rotation in stage {from} cannot take {}", event.name())]
pub struct IllegalTransition {
    pub from: Stage,
    pub event: Event,
}

/// The transition function: the only place that says which moves are legal.
pub fn next(from: Stage, event: &Event) -> Result<Stage, IllegalTransition> {
    use Event as E;
    use Stage as S;
    let to = match (from, event) {
        (S::Planned, E::PreflightPassed) => S::Creating,
        (S::Creating, E::KeyCreated) => S::Delivering,
        (S::Delivering, E::Delivered) => S::VerifyingNew,
        (S::Delivering | S::VerifyingNew, E::SecretLost) => S::Creating,
        (S::VerifyingNew, E::NewKeyVerified) => S::Draining,
        (S::Draining, E::Drained) => S::Deactivating,
        (S::Deactivating, E::Deactivated) => S::VerifyingDeactivated,
        (S::VerifyingDeactivated, E::DeactivationVerified) => S::AwaitingDelete,
        (S::AwaitingDelete, E::GraceElapsed) => S::Deleting,
        (S::Deleting, E::Deleted) => S::Completed,
        (s, E::Blocked) if s.is_working() && s != S::Deleting => S::Blocked,
        (S::Blocked, E::Resumed { to }) if to.is_working() => *to,
        // Once deletion has begun, the old key may be gone: nothing to undo to.
        (s, E::RolledBack) if (s.is_working() || s == S::Blocked) && s != S::Deleting => S::RolledBack,
        (s, E::Aborted) if s.is_before_deactivation() || s == S::Blocked => S::Aborted,
        (s, E::Failed) if s.is_working() || s == S::Blocked => S::Failed,
        _ => return Err(IllegalTransition { from, event: event.clone() }),
    };
    Ok(to)
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
        let mut events = vec![
            E::PreflightPassed, E::KeyCreated, E::Delivered, E::SecretLost, E::NewKeyVerified, E::Drained,
            E::Deactivated, E::DeactivationVerified, E::GraceElapsed, E::Deleted, E::Blocked,
            E::RolledBack, E::Aborted, E::Failed,
        ];
        events.extend(Stage::ALL.map(|to| E::Resumed { to }));
        events
    }

    #[test]
    fn the_main_path_reaches_completed() {
        let mut stage = S::Planned;
        for (from, event, to) in MAIN_PATH {
            assert_eq!(stage, from);
            stage = next(stage, &event).unwrap();
            assert_eq!(stage, to);
        }
        assert!(stage.is_terminal());
    }

    #[test]
    fn each_main_event_is_legal_in_exactly_one_stage() {
        for (from, event, _) in MAIN_PATH {
            let legal: Vec<Stage> = Stage::ALL.into_iter().filter(|s| next(*s, &event).is_ok()).collect();
            assert_eq!(legal, [from], "{event:?}");
        }
    }

    #[test]
    fn terminal_stages_take_no_event() {
        for stage in Stage::ALL.into_iter().filter(|s| s.is_terminal()) {
            for event in all_events() {
                assert!(next(stage, &event).is_err(), "{stage} took {event:?}");
            }
        }
    }

    #[test]
    fn rollback_is_impossible_once_deletion_began() {
        assert!(next(S::Deleting, &E::RolledBack).is_err());
        assert!(next(S::Completed, &E::RolledBack).is_err());
        for stage in [S::Planned, S::Delivering, S::Draining, S::VerifyingDeactivated, S::AwaitingDelete, S::Blocked] {
            assert_eq!(next(stage, &E::RolledBack), Ok(S::RolledBack), "{stage}");
        }
    }

    #[test]
    fn abort_only_before_the_old_key_is_touched() {
        for stage in Stage::ALL {
            let allowed = matches!(stage, S::Planned | S::Creating | S::Delivering | S::VerifyingNew | S::Draining | S::Blocked);
            assert_eq!(next(stage, &E::Aborted).is_ok(), allowed, "{stage}");
        }
    }

    #[test]
    fn blocked_resumes_only_into_a_working_stage() {
        assert_eq!(next(S::Draining, &E::Blocked), Ok(S::Blocked));
        assert_eq!(next(S::Blocked, &E::Resumed { to: S::Draining }), Ok(S::Draining));
        assert!(next(S::Blocked, &E::Resumed { to: S::Completed }).is_err());
        assert!(next(S::Blocked, &E::Resumed { to: S::Blocked }).is_err());
        assert!(next(S::Draining, &E::Resumed { to: S::Deactivating }).is_err(), "resume only from blocked");
        assert!(next(S::Deleting, &E::Blocked).is_err());
    }

    #[test]
    fn a_lost_secret_goes_back_to_creating() {
        assert_eq!(next(S::Delivering, &E::SecretLost), Ok(S::Creating));
        assert_eq!(next(S::VerifyingNew, &E::SecretLost), Ok(S::Creating));
        assert!(next(S::Draining, &E::SecretLost).is_err());
    }

    #[test]
    fn stage_names_round_trip() {
        for stage in Stage::ALL {
            assert_eq!(stage.as_str().parse::<Stage>(), Ok(stage));
        }
        assert!("done".parse::<Stage>().is_err());
    }
}
