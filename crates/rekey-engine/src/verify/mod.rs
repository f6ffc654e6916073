//! Verifiers: how rekey knows the application works with the new key. Each
//! retries until it passes or `verify_timeout` runs out (IAM is eventually
//! consistent, applications reload at their own pace).

use crate::http;

use crate::process;
use rekey_aws::Clients;
use rekey_core::target::Verifier;
use rekey_core::Credentials;
use std::time::{Duration, Instant};

pub struct VerifyCtx<'a> {
    pub clients: &'a Clients,
    /// The ARN the new key must sign as.
    pub user_arn: &'a str,
    pub timeout: Duration,
    /// The new key, if this process has it (sts signs with it).
    pub creds: Option<&'a Credentials>,
    /// A person confirmed this verification (`manual`).
    pub confirmed: bool,
    /// The second verification, after the old key was deactivated.
    pub after_deactivation: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Healthy,
    /// The application does not work: the workflow rolls back.
    Unhealthy(String),
    /// rekey cannot tell; a person must (reason given).
    Undecided(String),
    /// Nothing this verifier checks can have changed (reason given).
    NotNeeded(String),
}

const RETRY_EVERY: Duration = Duration::from_millis(1000);

/// One kind of verifier: how the application is checked.
#[async_trait::async_trait]
pub trait Check: Send + Sync {
    /// For plans, status and the audit log.
    fn describe(&self) -> String;
    /// Problems found before any AWS change (a missing program, a bad URL).
    fn preflight(&self) -> Result<(), String>;
    /// Retries until healthy or `ctx.timeout` runs out.
    async fn verify(&self, ctx: &VerifyCtx<'_>) -> Verdict;
}

/// The one place a configured verifier becomes its behaviour.
pub fn of(verifier: &Verifier) -> Box<dyn Check + '_> {
    Box::new(Configured(verifier))
}

struct Configured<'a>(&'a Verifier);

#[async_trait::async_trait]
impl Check for Configured<'_> {
    fn describe(&self) -> String {
        match self.0 {
            Verifier::Sts {} => "sts GetCallerIdentity with the new key".to_owned(),
            Verifier::Exec { command, .. } => format!("exec {}", command.join(" ")),
            Verifier::Http { url } => format!("http {url}"),
            Verifier::Manual {} => "manual".to_owned(),
        }
    }

    fn preflight(&self) -> Result<(), String> {
        match self.0 {
            Verifier::Exec { command, .. } if !crate::sinks::exec_available(command) => {
                Err(format!("exec verifier: {} is not an executable file or on PATH", command[0]))
            }
            Verifier::Http { url } => http::parse(url).map(|_| ()).map_err(|e| format!("http verifier: {e}")),
            _ => Ok(()),
        }
    }

    async fn verify(&self, ctx: &VerifyCtx<'_>) -> Verdict {
        let deadline = Instant::now() + ctx.timeout;
        match self.0 {
            Verifier::Sts {} => sts(ctx, deadline).await,
            Verifier::Exec { command, env } => {
                retry(deadline, || async {
                    let left = deadline.saturating_duration_since(Instant::now()).max(Duration::from_secs(1));
                    match process::run(command, env, None, left, ctx.creds.map(|c| c.secret_access_key.expose())).await {
                        Ok(done) if done.success => Ok(()),
                        Ok(done) => Err(format!("`{}` failed: {}", command.join(" "), done.describe())),
                        Err(e) => Err(format!("`{}` could not start: {e}", command.join(" "))),
                    }
                })
                .await
            }
            Verifier::Http { url } => retry(deadline, || http::get_ok(url, deadline)).await,
            Verifier::Manual {} if ctx.confirmed => Verdict::Healthy,
            Verifier::Manual {} => Verdict::Undecided("waiting for a person to verify the application and run `rekey confirm`".into()),
        }
    }
}

async fn sts(ctx: &VerifyCtx<'_>, deadline: Instant) -> Verdict {
    let Some(creds) = ctx.creds else {
        if ctx.after_deactivation {
            return Verdict::NotNeeded(
                "the new key was proven before deactivation, and deactivating the old key cannot change that; its secret is not kept".into(),
            );
        }
        return Verdict::Undecided(
            "the new secret is not available to this process (no sink can be read back), so sts cannot sign with it".into(),
        );
    };
    // Errors are retried: IAM rejects a new key for a few seconds after
    // creating it (InvalidClientTokenId), until it has propagated.
    retry(deadline, || async {
        match rekey_aws::sts::caller_arn(ctx.clients, creds).await {
            Ok(arn) if arn == ctx.user_arn => Ok(()),
            Ok(arn) => Err(format!("the new key signs as {arn}, not {}", ctx.user_arn)),
            Err(e) => Err(e.to_string()),
        }
    })
    .await
}

/// Tries `attempt` until it succeeds or the deadline passes.
async fn retry<F, Fut>(deadline: Instant, mut attempt: F) -> Verdict
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    loop {
        match attempt().await {
            Ok(()) => return Verdict::Healthy,
            Err(why) if Instant::now() + RETRY_EVERY >= deadline => return Verdict::Unhealthy(why),
            Err(_) => tokio::time::sleep(RETRY_EVERY).await,
        }
    }
}
