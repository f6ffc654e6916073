//! The pure domain of rekey: no I/O, no AWS SDK.
//!
//! - [`model`]: identifiers as newtypes ([`AccountId`], [`UserName`],
//!   [`AccessKeyId`]) and the inventory model ([`User`], [`AccessKey`]).
//! - [`duration`]: the [`Duration`] written in config and flags (`90d`, `36h`).
//! - [`evaluate`]: the IAM.3 rule ([`Policy`], [`Compliance`], [`Evaluation`]).

pub mod duration;
pub mod evaluate;
pub mod model;
pub mod report;
pub mod secret;
pub mod target;
pub mod workflow;

pub use duration::Duration;
pub use evaluate::{Compliance, Evaluation, Policy};
pub use secret::{Credentials, Secret};
pub use model::{AccessKey, AccessKeyId, AccountId, KeyStatus, LastUsed, User, UserName};
