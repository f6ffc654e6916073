//! Sinks: where a new key is delivered. [`of`] turns a configured [`Sink`]
//! into a [`DeliverySink`], one module per kind, each keeping the contract
//! written on the trait. What `restore` goes back to is a typed
//! [`RestorePoint`], saved by the runner before the first delivery.
//!
//! A sink knows everything about itself: how it delivers and restores, its
//! line in a plan, whether it waits for a person, and the IAM permissions it
//! needs ([`Grant`]), so nothing else matches on the kinds of [`Sink`]. A new
//! kind of sink touches only:
//! - its own module here, implementing [`DeliverySink`];
//! - the factory [`of`];
//! - its variant of [`RestorePoint`], if it keeps one;
//! - its configuration, a variant of [`Sink`] in `rekey-core/src/target.rs`.

pub mod credentials_file;
mod exec;
mod json;
mod manual;
mod secretsmanager;
pub mod ssm;

use rekey_aws::{AwsError, Clients};
use rekey_core::target::Sink;
use rekey_core::{AccessKeyId, AccountId, Credentials, UserName};
use serde::{Deserialize, Serialize};
use std::time::Duration;

pub struct SinkCtx<'a> {
    pub clients: &'a Clients,
    pub user: UserName,
    pub account: AccountId,
    /// How long an `exec` command may run.
    pub timeout: Duration,
    /// `manual` may print the secret (stdout is a terminal, or `--reveal`).
    pub may_reveal: bool,
    /// Which rotation and which of its sinks: restore copies are kept per rotation and per sink.
    pub rotation_id: &'a str,
    pub index: usize,
}

/// What `restore` goes back to; taken before the first delivery and saved in
/// the state store by the runner, so it holds ids, versions and paths only,
/// never a secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum RestorePoint {
    CredentialsFile(credentials_file::RestorePoint),
    /// The version that was AWSCURRENT (`None`: the secret had no value);
    /// a restore takes the old key's fields from it.
    Secretsmanager { version_id: Option<String> },
    Ssm(ssm::RestorePoint),
    /// The sink keeps nothing to go back to (exec, manual), or none was taken
    /// because the rotation never wrote to it.
    Nothing,
}

/// Where a sink's resources are, for the ARNs of its [`Grant`]s.
pub struct PolicyScope<'a> {
    /// `aws`, `aws-cn` or `aws-us-gov`: of the region rekey's clients sign for.
    pub partition: &'a str,
    /// The target's account, or `*` when the target names none.
    pub account: &'a str,
}

/// IAM permissions a sink needs of whoever runs rekey: `actions` on
/// `resources`. `rekey policy` prints one statement per `sid`, holding the
/// resources of every sink that asks for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub sid: &'static str,
    pub actions: &'static [&'static str],
    pub resources: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivered {
    Now,
    AlreadyThere,
    /// A person must put the key in place and run `rekey confirm`.
    AwaitsConfirmation,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Restored {
    Restored,
    NothingToRestore,
    /// The sink cannot be restored by rekey; the text says what a person must do.
    CannotRestore(String),
}

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error(transparent)]
    CredentialsFile(#[from] credentials_file::CredentialsFileError),
    #[error(transparent)]
    Aws(#[from] AwsError),
    #[error("secret {secret_id} does not exist; create it first (rekey only writes new versions of a secret)")]
    SecretNotFound { secret_id: String },
    #[error("secret {secret_id} no longer has version {version_id}, the one to restore from; put the old key back by hand")]
    SecretVersionGone { secret_id: String, version_id: String },
    #[error("parameter {name} no longer has version {version}, the one to restore; put its value from before the rotation back by hand")]
    ParameterVersionGone { name: String, version: i64 },
    #[error("{sink} kept changing while rekey wrote it; `rekey run` tries again")]
    KeptChanging { sink: String },
    #[error("exec sink: {program:?} is not an executable file or on PATH; install it or fix the command")]
    ProgramNotFound { program: String },
    #[error("exec sink `{command}` could not start: {source}")]
    ExecNotStarted { command: String, source: std::io::Error },
    #[error("exec sink `{command}` failed ({outcome}); fix the command, then `rekey run` delivers again")]
    ExecFailed { command: String, outcome: String },
    #[error("a manual sink prints the new secret, and stdout is not a terminal: run on a terminal or pass --reveal")]
    ManualNeedsTerminal,
    #[error("the manual sink could not show the new key (stdout: {0}); run on a terminal")]
    ManualNotShown(std::io::Error),
    #[error("the saved restore point of {sink} belongs to another kind of sink (was the state edited?); restore this sink by hand")]
    WrongRestorePoint { sink: String },
}

/// One kind of sink. Every method may run again after a crash, with the same
/// result: delivery and restore are idempotent.
#[async_trait::async_trait]
pub trait DeliverySink: Send + Sync {
    /// For plans, status and the audit log (no secrets).
    fn describe(&self) -> String;
    /// Its step in `rotate --dry-run`: where, and how it writes.
    fn plan_line(&self) -> String;
    /// Can this sink give the key back after a crash?
    fn readable(&self) -> bool;
    /// Does delivery wait for a person (who runs `rekey confirm`)? Such a
    /// sink must come last, and once confirmed it needs nothing more, not
    /// even the secret.
    fn awaits_person(&self) -> bool;
    /// What `rekey policy` grants for this sink (nothing for one that makes
    /// no AWS call of its own).
    fn permissions(&self, scope: &PolicyScope<'_>) -> Vec<Grant>;
    /// Preflight, before any AWS change: fails on what would make delivery
    /// fail. Changes nothing the application reads.
    async fn check(&self, ctx: &SinkCtx<'_>) -> Result<(), SinkError>;
    /// What `restore` will go back to, read before the first delivery.
    async fn restore_point(&self, ctx: &SinkCtx<'_>) -> Result<RestorePoint, SinkError>;
    /// Idempotent: a sink that already holds the key is left alone.
    async fn deliver(&self, ctx: &SinkCtx<'_>, creds: &Credentials) -> Result<Delivered, SinkError>;
    /// The key the sink holds, for crash recovery (`None` if unreadable).
    async fn read_back(&self, ctx: &SinkCtx<'_>) -> Result<Option<Credentials>, SinkError>;
    /// Goes back to `point`, only if the sink still holds `new_key`, and
    /// only in what rekey delivered: someone else's change is never clobbered.
    async fn restore(&self, ctx: &SinkCtx<'_>, new_key: &AccessKeyId, point: &RestorePoint) -> Result<Restored, SinkError>;
    /// The rotation ended (any way): drop what only served a restore (a copy
    /// holding an old secret). Idempotent.
    async fn finish(&self, ctx: &SinkCtx<'_>, point: &RestorePoint) -> Result<(), SinkError>;
}

/// The one place a configured sink becomes its behaviour.
pub fn of(sink: &Sink) -> Box<dyn DeliverySink + '_> {
    match sink {
        Sink::CredentialsFile { path, profile } => Box::new(credentials_file::CredentialsFile { path, profile }),
        Sink::Secretsmanager { secret_id, id_field, secret_field } => {
            Box::new(secretsmanager::SecretsManagerSink { secret_id, fields: (id_field, secret_field) })
        }
        Sink::Ssm(parameters) => Box::new(ssm::SsmSink { parameters }),
        Sink::Exec { command, env } => Box::new(exec::ExecSink { command, env }),
        Sink::Manual {} => Box::new(manual::ManualSink),
    }
}

/// Whether an `exec` command's program exists (preflight of sinks and verifiers).
pub fn exec_available(command: &[String]) -> bool {
    command.first().is_some_and(|program| exec::which(program))
}
