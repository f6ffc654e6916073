//! Verifiers: how rekey knows the application works with the new key. Each
//! retries until it passes or `verify_timeout` runs out (IAM is eventually
//! consistent, applications reload at their own pace).
//!
//! [`of`] turns a configured [`Verifier`] into a [`Check`], one module per
//! kind, as sinks are: a new kind of verifier touches only its own module
//! here, the factory [`of`], and its configuration, a variant of
//! [`Verifier`] in `rekey-core/src/target.rs`. No verifier needs an IAM
//! permission of rekey's (`sts` signs with the new key, and
//! GetCallerIdentity needs none), so `rekey policy` asks none of them.

mod exec;
mod http;
mod manual;
mod sts;

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

/// One kind of verifier: how the application is checked. (Named `Check`,
/// not `Verifier`: that is its configuration, in `rekey_core::target`.)
#[async_trait::async_trait]
pub trait Check: Send + Sync {
    /// For plans, status and the audit log.
    fn describe(&self) -> String;
    /// Does it need the new key's secret ([`VerifyCtx::creds`])? After a
    /// sink that waits for a person, only a readable sink can give it back.
    fn needs_secret(&self) -> bool;
    /// Problems found before any AWS change (a missing program, a bad URL).
    fn preflight(&self) -> Result<(), String>;
    /// Retries until healthy or `ctx.timeout` runs out.
    async fn verify(&self, ctx: &VerifyCtx<'_>) -> Verdict;
}

/// The one place a configured verifier becomes its behaviour.
pub fn of(verifier: &Verifier) -> Box<dyn Check + '_> {
    match verifier {
        Verifier::Sts {} => Box::new(sts::StsCheck),
        Verifier::Exec { command, env } => Box::new(exec::ExecCheck { command, env }),
        Verifier::Http { url } => Box::new(http::HttpCheck { url }),
        Verifier::Manual {} => Box::new(manual::ManualCheck),
    }
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
