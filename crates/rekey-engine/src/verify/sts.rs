//! `sts`: GetCallerIdentity signed with the new key must answer the user's
//! ARN. It needs the secret, so after a `manual` sink only a readable sink
//! lets it run.

use super::{retry, Check, Verdict, VerifyCtx};
use std::time::Instant;

pub struct StsCheck;

#[async_trait::async_trait]
impl Check for StsCheck {
    fn describe(&self) -> String {
        "sts GetCallerIdentity with the new key".to_owned()
    }

    fn needs_secret(&self) -> bool {
        true
    }

    fn preflight(&self) -> Result<(), String> {
        Ok(())
    }

    async fn verify(&self, ctx: &VerifyCtx<'_>) -> Verdict {
        let deadline = Instant::now() + ctx.timeout;
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
}
