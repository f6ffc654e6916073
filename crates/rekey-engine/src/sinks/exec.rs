//! `exec`: runs a command with the key as JSON on stdin (never in argv or
//! the environment); exit 0 means delivered. rekey cannot read it back or
//! restore it: the command owns what it writes.

use super::{Delivered, SinkCtx, SinkError};
use crate::process;
use rekey_core::Credentials;

pub fn check(command: &[String]) -> Result<(), SinkError> {
    match command.first() {
        Some(program) if which(program) => Ok(()),
        Some(program) => Err(SinkError::Failed(format!("exec sink: {program} is not an executable file or on PATH"))),
        None => Err(SinkError::Failed("exec sink: empty command".into())),
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

pub async fn deliver(ctx: &SinkCtx<'_>, command: &[String], creds: &Credentials) -> Result<Delivered, SinkError> {
    let input = zeroize::Zeroizing::new(
        serde_json::json!({
            "AccessKeyId": creds.access_key_id.as_str(),
            "SecretAccessKey": creds.secret_access_key.expose(),
            "UserName": ctx.user.as_str(),
            "AccountId": ctx.account.as_str(),
        })
        .to_string(),
    );
    let done = process::run(command, Some(input.as_bytes()), ctx.timeout, Some(creds.secret_access_key.expose()))
        .await
        .map_err(|e| SinkError::Failed(format!("exec sink `{}` could not start: {e}", command.join(" "))))?;
    if done.success {
        Ok(Delivered::Now)
    } else {
        Err(SinkError::Failed(format!("exec sink `{}` failed: {}", command.join(" "), done.describe())))
    }
}
