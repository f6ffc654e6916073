//! `exec`: runs a command with the key as JSON on stdin (never in argv or
//! the environment); exit 0 means delivered. rekey cannot read it back or
//! restore it: the command owns what it writes.

use super::{Delivered, DeliverySink, Grant, PolicyScope, RestorePoint, Restored, SinkCtx, SinkError};
use crate::process;
use rekey_core::target::Env;
use rekey_core::{AccessKeyId, Credentials};

pub struct ExecSink<'a> {
    pub command: &'a [String],
    pub env: &'a Env,
}

impl ExecSink<'_> {
    fn shown(&self) -> String {
        self.command.join(" ")
    }
}

/// Whether `program` names an executable, as a path or on PATH.
pub(crate) fn which(program: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let executable = |p: &std::path::Path| p.metadata().is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0);
    if program.contains('/') {
        return executable(std::path::Path::new(program));
    }
    std::env::var_os("PATH").is_some_and(|path| std::env::split_paths(&path).any(|dir| executable(&dir.join(program))))
}

#[async_trait::async_trait]
impl DeliverySink for ExecSink<'_> {
    fn describe(&self) -> String {
        format!("exec {}", self.shown())
    }

    fn plan_line(&self) -> String {
        format!("deliver to {}", self.describe())
    }

    fn readable(&self) -> bool {
        false
    }

    fn awaits_person(&self) -> bool {
        false
    }

    /// The command acts with its own credentials, not rekey's.
    fn permissions(&self, _: &PolicyScope<'_>) -> Vec<Grant> {
        Vec::new()
    }

    async fn check(&self, _: &SinkCtx<'_>) -> Result<(), SinkError> {
        match self.command.first() {
            Some(program) if which(program) => Ok(()),
            program => Err(SinkError::ProgramNotFound { program: program.cloned().unwrap_or_default() }),
        }
    }

    async fn restore_point(&self, _: &SinkCtx<'_>) -> Result<RestorePoint, SinkError> {
        Ok(RestorePoint::Nothing)
    }

    async fn deliver(&self, ctx: &SinkCtx<'_>, creds: &Credentials) -> Result<Delivered, SinkError> {
        let input = zeroize::Zeroizing::new(
            serde_json::json!({
                "AccessKeyId": creds.access_key_id.as_str(),
                "SecretAccessKey": creds.secret_access_key.expose(),
                "UserName": ctx.user.as_str(),
                "AccountId": ctx.account.as_str(),
            })
            .to_string(),
        );
        let done = process::run(self.command, self.env, Some(input.as_bytes()), ctx.timeout, Some(creds.secret_access_key.expose()))
            .await
            .map_err(|source| SinkError::ExecNotStarted { command: self.shown(), source })?;
        if done.success {
            Ok(Delivered::Now)
        } else {
            Err(SinkError::ExecFailed { command: self.shown(), outcome: done.describe() })
        }
    }

    async fn read_back(&self, _: &SinkCtx<'_>) -> Result<Option<Credentials>, SinkError> {
        Ok(None)
    }

    async fn restore(&self, _: &SinkCtx<'_>, _: &AccessKeyId, _: &RestorePoint) -> Result<Restored, SinkError> {
        Ok(Restored::CannotRestore(format!(
            "rekey cannot take a key back through `{}`: make sure its target uses the old key again",
            self.shown()
        )))
    }

    async fn finish(&self, _: &SinkCtx<'_>, _: &RestorePoint) -> Result<(), SinkError> {
        Ok(())
    }
}
