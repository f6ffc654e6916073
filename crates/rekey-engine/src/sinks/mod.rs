//! Sinks: where a new key is delivered. One module per kind; this file
//! dispatches on the configured [`Sink`] and states the contract every kind
//! keeps:
//! - `check` (preflight) changes nothing and fails on what would make
//!   delivery fail, before any key exists;
//! - `deliver` is idempotent: a sink that already holds the key is left alone,
//!   so the restore point stays the value from before the rotation;
//! - `read_back` returns the key a sink holds, for crash recovery;
//! - `restore_point` names, before delivery, what `restore` will go back to
//!   where a sink cannot find it again by itself (ids and versions only, no
//!   secrets; the runner saves it before delivering);
//! - `restore` puts back the previous value, only if the sink still holds the
//!   rotation's key (someone else's later change is never clobbered).

pub mod credentials_file;
mod exec;
mod manual;
mod secretsmanager;
mod ssm;

use rekey_aws::{AwsError, Clients};
use rekey_core::target::Sink;
use rekey_core::{AccessKeyId, AccountId, Credentials, Secret, UserName};
use std::time::Duration;

pub struct SinkCtx<'a> {
    pub clients: &'a Clients,
    pub user: UserName,
    pub account: AccountId,
    /// How long an `exec` command may run.
    pub timeout: Duration,
    /// `manual` may print the secret (stdout is a terminal, or `--reveal`).
    pub may_reveal: bool,
    pub rotation_id: &'a str,
    pub index: usize,
}

/// What `restore` goes back to (no secret).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RestorePoint(Option<serde_json::Value>);

#[async_trait::async_trait]
pub trait DeliverySink: Send + Sync {
    fn describe(&self) -> String;
    fn readable(&self) -> bool;
    async fn check(&self, ctx: &SinkCtx<'_>) -> Result<(), SinkError>;
    async fn restore_point(&self, ctx: &SinkCtx<'_>) -> Result<RestorePoint, SinkError>;
    async fn deliver(&self, ctx: &SinkCtx<'_>, creds: &Credentials) -> Result<Delivered, SinkError>;
    async fn read_back(&self, ctx: &SinkCtx<'_>) -> Result<Option<Credentials>, SinkError>;
    async fn restore(&self, ctx: &SinkCtx<'_>, new_key: &AccessKeyId, point: &RestorePoint) -> Result<Restored, SinkError>;
    async fn finish(&self, ctx: &SinkCtx<'_>, point: &RestorePoint) -> Result<(), SinkError>;
}

struct Adapter<'a>(&'a Sink);

pub fn of(sink: &Sink) -> Box<dyn DeliverySink + '_> {
    Box::new(Adapter(sink))
}

#[async_trait::async_trait]
impl DeliverySink for Adapter<'_> {
    fn describe(&self) -> String {
        describe(self.0)
    }
    fn readable(&self) -> bool {
        readable(self.0)
    }
    async fn check(&self, ctx: &SinkCtx<'_>) -> Result<(), SinkError> {
        check(self.0, ctx).await
    }
    async fn restore_point(&self, ctx: &SinkCtx<'_>) -> Result<RestorePoint, SinkError> {
        Ok(RestorePoint(restore_point(self.0, ctx).await?))
    }
    async fn deliver(&self, ctx: &SinkCtx<'_>, creds: &Credentials) -> Result<Delivered, SinkError> {
        deliver(self.0, ctx, creds).await
    }
    async fn read_back(&self, ctx: &SinkCtx<'_>) -> Result<Option<Credentials>, SinkError> {
        read_back(self.0, ctx).await
    }
    async fn restore(&self, ctx: &SinkCtx<'_>, new_key: &AccessKeyId, point: &RestorePoint) -> Result<Restored, SinkError> {
        restore(self.0, ctx, new_key, point.0.as_ref()).await
    }
    async fn finish(&self, _ctx: &SinkCtx<'_>, _point: &RestorePoint) -> Result<(), SinkError> {
        finish(self.0)
    }
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
    #[error("{0}")]
    Failed(String),
}

/// A short description for plans, status and the audit log (no secrets).
fn describe(sink: &Sink) -> String {
    match sink {
        Sink::CredentialsFile { path, profile } => format!("credentials-file {} [{profile}]", path.display()),
        Sink::Secretsmanager { secret_id, .. } => format!("secretsmanager {secret_id}"),
        Sink::Ssm { name: Some(name), .. } => format!("ssm {name}"),
        Sink::Ssm { id_name, secret_name, .. } => {
            format!("ssm {} + {}", id_name.as_deref().unwrap_or("?"), secret_name.as_deref().unwrap_or("?"))
        }
        Sink::Exec { command } => format!("exec {}", command.join(" ")),
        Sink::Manual {} => "manual".to_owned(),
    }
}

/// Whether an `exec` command's program exists (preflight of sinks and verifiers).
pub fn exec_available(command: &[String]) -> bool {
    command.first().is_some_and(|program| exec::which(program))
}

/// Can this sink give the key back after a crash?
fn readable(sink: &Sink) -> bool {
    !matches!(sink, Sink::Exec { .. } | Sink::Manual {})
}

async fn check(sink: &Sink, ctx: &SinkCtx<'_>) -> Result<(), SinkError> {
    match sink {
        Sink::CredentialsFile { path, profile } => Ok(credentials_file::check(path, profile)?),
        Sink::Secretsmanager { secret_id, .. } => secretsmanager::check(ctx, secret_id).await,
        Sink::Ssm { .. } => ssm::Names::of(sink).map(|_| ()),
        Sink::Exec { command } => exec::check(command),
        Sink::Manual {} => manual::check(ctx),
    }
}

async fn deliver(sink: &Sink, ctx: &SinkCtx<'_>, creds: &Credentials) -> Result<Delivered, SinkError> {
    match sink {
        Sink::CredentialsFile { path, profile } => Ok(credentials_file::deliver(path, profile, creds)?),
        Sink::Secretsmanager { secret_id, id_field, secret_field } => {
            secretsmanager::deliver(ctx, secret_id, (id_field, secret_field), creds).await
        }
        Sink::Ssm { .. } => ssm::deliver(ctx, &ssm::Names::of(sink)?, creds).await,
        Sink::Exec { command } => exec::deliver(ctx, command, creds).await,
        Sink::Manual {} => manual::deliver(ctx, creds),
    }
}

async fn read_back(sink: &Sink, ctx: &SinkCtx<'_>) -> Result<Option<Credentials>, SinkError> {
    match sink {
        Sink::CredentialsFile { path, profile } => Ok(credentials_file::read_back(path, profile)?),
        Sink::Secretsmanager { secret_id, id_field, secret_field } => {
            secretsmanager::read_back(ctx, secret_id, (id_field, secret_field)).await
        }
        Sink::Ssm { .. } => ssm::read_back(ctx, &ssm::Names::of(sink)?).await,
        Sink::Exec { .. } | Sink::Manual {} => Ok(None),
    }
}

/// What to restore to, read before the first delivery to this sink.
async fn restore_point(sink: &Sink, ctx: &SinkCtx<'_>) -> Result<Option<serde_json::Value>, SinkError> {
    match sink {
        Sink::Ssm { .. } => Ok(Some(ssm::restore_point(ctx, &ssm::Names::of(sink)?).await?)),
        _ => Ok(None),
    }
}

async fn restore(
    sink: &Sink,
    ctx: &SinkCtx<'_>,
    new_key: &AccessKeyId,
    point: Option<&serde_json::Value>,
) -> Result<Restored, SinkError> {
    match sink {
        Sink::CredentialsFile { path, profile } => Ok(credentials_file::restore(path, profile, new_key)?),
        Sink::Secretsmanager { secret_id, id_field, secret_field } => {
            secretsmanager::restore(ctx, secret_id, (id_field, secret_field), new_key).await
        }
        Sink::Ssm { .. } => ssm::restore(ctx, &ssm::Names::of(sink)?, new_key, point).await,
        Sink::Exec { command } => Ok(Restored::CannotRestore(format!(
            "rekey cannot take a key back through `{}`: make sure its target uses the old key again",
            command.join(" ")
        ))),
        Sink::Manual {} => Ok(Restored::CannotRestore("put the old key back where you delivered the new one by hand".into())),
    }
}

/// After the old key is deleted: drop what only served a restore.
fn finish(sink: &Sink) -> Result<(), SinkError> {
    match sink {
        Sink::CredentialsFile { path, .. } => Ok(credentials_file::discard_backup(path)?),
        _ => Ok(()),
    }
}

/// The key as JSON (`{"AccessKeyId": ..., "SecretAccessKey": ...}`), merged
/// into `base` when it is a JSON object so its other fields survive.
fn credentials_json(base: Option<&str>, fields: (&str, &str), creds: &Credentials) -> Secret {
    let mut object = base
        .and_then(|text| serde_json::from_str::<serde_json::Value>(text).ok())
        .and_then(|v| v.as_object().cloned())
        .unwrap_or_default();
    object.insert(fields.0.to_owned(), creds.access_key_id.as_str().into());
    object.insert(fields.1.to_owned(), creds.secret_access_key.expose().into());
    let text = zeroize::Zeroizing::new(serde_json::Value::Object(object).to_string());
    Secret::new(text.as_str())
}

/// The key id and secret in a JSON value, if both are there.
fn parse_credentials(text: &str, fields: (&str, &str)) -> Option<Credentials> {
    let value: serde_json::Value = serde_json::from_str(text).ok()?;
    Some(Credentials {
        access_key_id: AccessKeyId::new(value.get(fields.0)?.as_str()?),
        secret_access_key: Secret::new(value.get(fields.1)?.as_str()?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_keeps_other_fields_and_reads_back() {
        let creds = Credentials { access_key_id: AccessKeyId::new("AKIANEW"), secret_access_key: Secret::new("s3cr3t") };
        let merged = credentials_json(Some(r#"{"region":"eu-west-1","AccessKeyId":"AKIAOLD"}"#), ("AccessKeyId", "SecretAccessKey"), &creds);
        let value: serde_json::Value = serde_json::from_str(merged.expose()).unwrap();
        assert_eq!(value["region"], "eu-west-1");
        assert_eq!(value["AccessKeyId"], "AKIANEW");
        assert_eq!(parse_credentials(merged.expose(), ("AccessKeyId", "SecretAccessKey")), Some(creds));
        assert_eq!(parse_credentials("not json", ("a", "b")), None);
    }
}
