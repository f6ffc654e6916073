//! The pure domain of rekey: no I/O, no AWS SDK.
//!
//! - [`model`]: identifiers as newtypes ([`AccountId`], [`UserName`],
//!   [`AccessKeyId`]) and the inventory model ([`User`], [`AccessKey`]).
//! - [`duration`]: the [`Duration`] written in config and flags (`90d`, `36h`).
//! - [`evaluate`]: the IAM.3 rule ([`Policy`], [`Compliance`], [`Evaluation`]).
//! - [`consumers`]: who uses a key, from CloudTrail events.
//! - [`role_plan`]: the roles that would replace a key, from its consumers.
//! - [`html`]: the scan report as one self-contained page.
//! - [`hub`]: Security Hub workflow statuses and when rekey may set them.
//! - [`owners`]: the owners map file (owners of untagged users, contacts).
//! - [`notice`]: what an owner reads: their keys and the commands to decide.
//! - [`reminder`]: reminders on a cadence: which are due, which owners hear now.
//! - [`asff`]: the scan as Security Hub findings, one per user.
//! - [`metrics`]: `rekey run --metrics` as Prometheus gauges.

pub mod asff;
pub mod consumers;
pub mod duration;
pub mod evaluate;
pub mod exempt;
pub mod html;
pub mod hub;
pub mod metrics;
pub mod model;
pub mod notice;
pub mod ocsf;
pub mod owners;
pub mod reminder;
pub mod report;
pub mod role_plan;
pub mod secret;
pub mod target;
pub mod workflow;

pub use duration::Duration;
pub use evaluate::{Compliance, Evaluation, Policy};
pub use secret::{Credentials, Secret};
pub use model::{AccessKey, AccessKeyId, AccountId, KeyStatus, LastUsed, User, UserName};
