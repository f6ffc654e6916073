//! Every AWS API call rekey makes goes through this crate.
//!
//! - [`client`]: the one client factory ([`AwsSettings`] → [`Clients`]):
//!   profile, region, endpoint override, retry policy, and a [`CallCounter`]
//!   that counts every request by operation.
//! - [`error`]: [`AwsError`], the one place where SDK errors are classified
//!   (no credentials, unreachable, access denied, throttled, not found); a
//!   crate of its own (rekey-aws-error), shared with the state store.
//! - [`iam`]: the IAM calls ([`Iam`]); [`credential_report`]: the
//!   credential report's parser.
//! - [`sts`] and [`secrets`]: calls signed with a new key, and the Secrets
//!   Manager and Parameter Store primitives the sinks use.
//! - [`securityhub`] and [`sns`]: IAM.3 findings (read, update, import)
//!   and owner notices.
//! - [`cloudtrail`]: a key's events from CloudTrail event history.
//! - [`org`]: the accounts of an AWS Organization.
//! - [`pace`]: AWS's request quotas kept on the client side, one token
//!   bucket per account, operation and region.
//! - [`inventory`]: reading an account's users and keys from the credential
//!   report or the API, and filling in key ids and tags where needed.

pub mod client;
pub mod cloudtrail;
pub mod credential_report;
pub mod iam;
pub mod inventory;
pub mod org;
pub mod pace;
pub mod secrets;
pub mod securityhub;
pub mod sns;
pub mod sts;

pub use client::{AwsSettings, CallCounter, Clients, RoleToAssume};
pub use rekey_aws_error as error;
pub use error::AwsError;
pub use iam::Iam;
pub use inventory::{Progress, Source};
