//! What a rotation was told to do ([`Plan`], fixed when it starts) and how
//! far it got ([`Progress`]). Both are stored as JSON in the state store,
//! so they hold ids, times and flags only: never a secret.

use crate::sinks::RestorePoint;
use jiff::Timestamp;
use std::collections::BTreeMap;
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
    /// A retirement (`rekey retire`, SPEC section 9): the old key goes with
    /// no new key made, once its consumers left it (they moved to roles).
    #[serde(default)]
    pub retire: bool,
}

impl Plan {
    /// "rotate" or "retire", for messages.
    pub fn verb(&self) -> &'static str {
        if self.retire { "retire" } else { "rotate" }
    }
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
    /// How coarse AWS's last-used data is: a use this close to delivery is
    /// ambiguous (1 minute on AWS). An extension of SPEC section 4.
    #[serde(default = "default_last_used_margin")]
    pub last_used_margin: Duration,
}

fn default_last_used_margin() -> Duration {
    Duration::from_secs(60)
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
            last_used_margin: default_last_used_margin(),
        }
    }
}

impl Timings {
    /// How long the old key must stay unused after delivery: `wait_unused`
    /// of real quiet, observed through reports up to `last_used_lag` late.
    pub fn drain_window(&self) -> Duration {
        Duration::from_secs(self.wait_unused.as_secs().saturating_add(self.last_used_lag.as_secs()))
    }
}

/// The old key's last use, as seen while draining.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeenUse {
    pub at: Timestamp,
    pub service: Option<String>,
    pub region: Option<String>,
}

impl SeenUse {
    /// "last used at T by s3 in eu-west-1", for status and block reasons.
    pub fn describe(&self) -> String {
        format!(
            "last used at {} by {} in {}",
            self.at,
            self.service.as_deref().unwrap_or("an unknown service"),
            self.region.as_deref().unwrap_or("an unknown region")
        )
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Progress {
    /// The user's key ids once preflight passed: any other key that shows up
    /// later and is not `new_key_id` was not there before this rotation.
    pub keys_at_start: Vec<String>,
    /// `--delete-inactive`: the user's other key, and when rekey first saw
    /// it inactive (on AWS's clock).
    pub other_inactive_since: Option<(String, Timestamp)>,
    /// Set (on AWS's clock) just before `CreateAccessKey` is called, and
    /// cleared when AWS answers with an error (no key was made).
    pub create_attempted_at: Option<Timestamp>,
    /// When a `CreateAccessKey` whose answer was lost (a timeout, a dropped
    /// connection, a server error) gave up: only a key the state does not
    /// know, created between the attempt and this, may be this rotation's
    /// own. `None` with an attempt recorded: the process died mid-call.
    pub create_lost_until: Option<Timestamp>,
    /// A key the state does not know, made inside a lost attempt's window
    /// and with no use shown, and when rekey deactivated it (saved before
    /// the call): deleted once `last_used_lag` has passed with still no use.
    pub unrecorded_held: Option<(String, Timestamp)>,
    /// A new key whose secret was lost before any sink that cannot be read
    /// back got it, while the old key was gone (deleted outside rekey): the
    /// next new key is made first, in the slot the old one freed, then this
    /// one is deleted if IAM shows no use of it.
    pub lost_key: Option<String>,
    /// Per sink index, what `restore` goes back to, saved before the first
    /// delivery to that sink.
    #[serde(deserialize_with = "restore_points")]
    pub restore_points: BTreeMap<usize, RestorePoint>,
    /// Sinks whose delivery began: one that cannot be read back may hold
    /// the new key even if the process died before it said so.
    pub attempted: Vec<usize>,
    /// Indexes of the plan's sinks that hold the new key.
    pub delivered: Vec<usize>,
    /// Times on AWS's clock (the local clock corrected by the offset of
    /// AWS's `Date` headers), since they are compared with its last-used data.
    /// For a retirement, when it began: the drain counts from there.
    pub delivered_at: Option<Timestamp>,
    /// When rekey's own verification last used the new key.
    pub verified_at: Option<Timestamp>,
    /// When a person last confirmed a draining key's consumers were fixed:
    /// the drain window and its timeout count from here instead.
    pub drain_from: Option<Timestamp>,
    /// When rekey deactivated the old key, saved before the call: an old
    /// key inactive without it was deactivated by someone else, and an undo
    /// does not re-enable it.
    pub deactivated_at: Option<Timestamp>,
    /// The old key was already inactive when rekey came to deactivate it:
    /// someone else's doing, which an undo does not reverse.
    pub deactivated_outside: bool,
    /// A check after deactivation failed (the reason): reactivating the old
    /// key is owed, and retried before anything else.
    pub reactivation_owed: Option<String>,
    /// When an undo restored the sinks: the new key is deleted only once
    /// IAM's last-used data can show who used it since (`last_used_lag`).
    pub sinks_restored_at: Option<Timestamp>,
    /// An undo began restoring the sinks (saved before the first): one may
    /// already be back on the old key.
    pub restore_began: bool,
    /// When an undo deactivated the new key, saved before the call, so a
    /// crash cannot skip the wait before it is deleted.
    pub new_key_deactivated_at: Option<Timestamp>,
    /// The new key was seen inactive after that: active again means a
    /// person reactivated it (before, a crash may have cut the call short).
    pub new_key_seen_inactive: bool,
    /// A person reactivated the new key during the undo and confirmed:
    /// the undo finishes without it.
    pub new_key_left_to_person: bool,
    /// The last use of the old key after delivery, if any.
    pub used_after_delivery: Option<SeenUse>,
    /// Every distinct use of the old key after delivery that IAM's
    /// last-used data showed: the consumer proof must explain each.
    pub uses_after_delivery: Vec<SeenUse>,
    /// What CloudTrail showed of the old key's consumers since delivery,
    /// at the drain's last look (for `rekey status`).
    #[serde(default)]
    pub consumers: Option<ConsumerWatch>,
    /// Stages a person confirmed (manual delivery or verification).
    pub confirmed: Vec<Stage>,
    /// What the rotation's block asks of a person; `rekey confirm` answers
    /// it, once.
    pub asked: Option<Ask>,
    /// A person confirmed putting the old key back by hand in the sinks
    /// an undo cannot restore: true from then on.
    pub old_key_put_back: bool,
    /// Set by `confirm --force`: deactivate at the next step even though the
    /// old key is still used; spent by that step.
    pub force: bool,
    /// What the rotation waits for, in words, for `rekey status`.
    pub waiting_for: Option<String>,
}

/// What a block can ask of a person beyond "go on".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Ask {
    /// Leave to reactivate this key, which someone other than rekey
    /// deactivated: the only way rekey re-enables such a key.
    Reactivate(String),
    /// The old key put back by hand in the sinks rekey cannot restore.
    OldKeyPutBack,
    /// A rotation that cannot go back or on without its old key (deleted
    /// outside rekey) ends, and the new key stays where it is.
    KeepNewKey,
}

/// The old key's consumers since delivery, sorted by whether they moved to
/// the new key (SPEC section 8).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsumerWatch {
    pub checked_at: Timestamp,
    pub left: Vec<rekey_core::consumers::Consumer>,
    pub moved: Vec<rekey_core::consumers::Consumer>,
    /// Uses IAM recorded that no CloudTrail event explains (data calls).
    #[serde(default)]
    pub unexplained: Vec<SeenUse>,
    /// Events CloudTrail returned that rekey could not read: unknown consumers.
    #[serde(default)]
    pub unreadable: usize,
}

/// Restore points as saved, also in the form rekey 0.1 saved for its only
/// sink that had one, SSM (`{"/name": version}`, 0 for "did not exist"),
/// so rotations in flight across an upgrade can still be undone.
fn restore_points<'de, D: serde::Deserializer<'de>>(d: D) -> Result<BTreeMap<usize, RestorePoint>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Saved {
        Typed(RestorePoint),
        SsmVersions(BTreeMap<String, i64>),
    }
    let saved = BTreeMap::<usize, Saved>::deserialize(d)?;
    Ok(saved
        .into_iter()
        .map(|(i, point)| match point {
            Saved::Typed(point) => (i, point),
            Saved::SsmVersions(versions) => {
                let versions = versions.into_iter().map(|(name, v)| (name, (v > 0).then_some(v))).collect();
                (i, RestorePoint::Ssm(crate::sinks::ssm::RestorePoint { versions }))
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restore_points_saved_by_rekey_0_1_still_load() {
        let old = serde_json::json!({"restore_points": {"0": {"/app/id": 3, "/app/secret": 0}}});
        let progress: Progress = serde_json::from_value(old).unwrap();
        let expected = BTreeMap::from([("/app/id".to_owned(), Some(3)), ("/app/secret".to_owned(), None)]);
        assert_eq!(progress.restore_points[&0], RestorePoint::Ssm(crate::sinks::ssm::RestorePoint { versions: expected }));
        let again: Progress = serde_json::from_value(serde_json::to_value(&progress).unwrap()).unwrap();
        assert_eq!(again, progress, "the typed form round-trips");
    }
}
