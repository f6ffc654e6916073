//! `exec`: a command that exits 0 when the application works. It runs in a
//! clean environment (like the `exec` sink), without the key; the secret,
//! when this process has it, is only redacted from what it prints.

use super::{retry, Check, Verdict, VerifyCtx};
use crate::process;
use rekey_core::target::Env;
use std::time::{Duration, Instant};

pub struct ExecCheck<'a> {
    pub command: &'a [String],
    pub env: &'a Env,
}

#[async_trait::async_trait]
impl Check for ExecCheck<'_> {
    fn describe(&self) -> String {
        format!("exec {}", self.command.join(" "))
    }

    fn needs_secret(&self) -> bool {
        false
    }

    fn preflight(&self) -> Result<(), String> {
        if crate::sinks::exec_available(self.command) {
            Ok(())
        } else {
            Err(format!("exec verifier: {} is not an executable file or on PATH", self.command[0]))
        }
    }

    async fn verify(&self, ctx: &VerifyCtx<'_>) -> Verdict {
        let deadline = Instant::now() + ctx.timeout;
        let command = self.command;
        retry(deadline, || async {
            let left = deadline.saturating_duration_since(Instant::now()).max(Duration::from_secs(1));
            match process::run(command, self.env, None, left, ctx.creds.map(|c| c.secret_access_key.expose())).await {
                Ok(done) if done.success => Ok(()),
                Ok(done) => Err(format!("`{}` failed: {}", command.join(" "), done.describe())),
                Err(e) => Err(format!("`{}` could not start: {e}", command.join(" "))),
            }
        })
        .await
    }
}
