//! What a rotation was told to do ([`Plan`], fixed when it starts) and how
//! far it got ([`Progress`]). Both are stored as JSON in the state store,
//! so they hold ids, times and flags only: never a secret.

use jiff::Timestamp;
use rekey_core::target::{Sink, Verifier};
use rekey_core::workflow::Stage;
use rekey_core::Duration;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    pub deliver: Vec<Sink>,
    pub verify: Vec<Verifier>,
    pub timings: Timings,
    /// Delete the user's other, inactive key if it takes the free slot.
    pub delete_inactive: bool,
}

/// The waits of SPEC section 4 `[rotation]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timings {
    pub wait_unused: Duration,
    pub last_used_lag: Duration,
    pub drain_timeout: Duration,
    pub grace: Duration,
    pub verify_timeout: Duration,
    /// How soon a step that failed on an AWS error (throttling, an outage)
    /// is tried again. An extension of SPEC section 4.
    #[serde(default = "default_retry_after")]
    pub retry_after: Duration,
}

fn default_retry_after() -> Duration {
    Duration::from_secs(60)
}

impl Default for Timings {
    fn default() -> Self {
        Timings {
            wait_unused: Duration::from_secs(24 * 3600),
            last_used_lag: Duration::from_secs(4 * 3600),
            drain_timeout: Duration::from_days(14),
            grace: Duration::from_days(7),
            verify_timeout: Duration::from_secs(120),
            retry_after: default_retry_after(),
        }
    }
}

impl Timings {
    /// How long the old key must stay unused after delivery: AWS may report
    /// a use up to `last_used_lag` late.
    pub fn quiet_period(&self) -> Duration {
        self.wait_unused.max(self.last_used_lag)
    }
}

/// The old key's last use, as seen while draining.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeenUse {
    pub at: Timestamp,
    pub service: Option<String>,
    pub region: Option<String>,
}

/// A decision to undo the rotation, saved before undoing starts so that a
/// crash or an AWS error mid-way resumes the undo, not the rotation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Undoing {
    /// `rolled_back` or `aborted`.
    pub ends_as: Stage,
    pub reason: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    pub undoing: Option<Undoing>,
    /// The stage a blocked rotation resumes into.
    pub blocked_from: Option<Stage>,
    /// The user's key ids once preflight passed: any other key that shows up
    /// later and is not `new_key_id` was created by an interrupted attempt.
    #[serde(default)]
    pub keys_at_start: Vec<String>,
    /// Per sink index, what `restore` goes back to, saved before the first
    /// delivery to that sink (see `DeliverySink::restore_point`).
    #[serde(default)]
    pub restore_points: std::collections::BTreeMap<usize, crate::sinks::RestorePoint>,
    /// Indexes of the plan's sinks that hold the new key.
    #[serde(default)]
    pub delivered: Vec<usize>,
    pub delivered_at: Option<Timestamp>,
    pub deactivated_at: Option<Timestamp>,
    /// When a person last said "keep waiting" for a draining key:
    /// `drain_timeout` counts from here instead of from delivery.
    pub drain_restarted_at: Option<Timestamp>,
    /// The last use of the old key after delivery, if any.
    pub used_after_delivery: Option<SeenUse>,
    /// Stages a person confirmed (manual delivery or verification).
    #[serde(default)]
    pub confirmed: Vec<Stage>,
    /// Set by `--force`: deactivate even if the old key is still used.
    #[serde(default)]
    pub force: bool,
    /// What the rotation waits for, in words, for `rekey status`.
    pub waiting_for: Option<String>,
}
