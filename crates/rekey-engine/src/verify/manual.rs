//! `manual`: a person verifies the application and says so with
//! `rekey confirm`; until then the rotation waits.

use super::{Check, Verdict, VerifyCtx};

pub struct ManualCheck;

#[async_trait::async_trait]
impl Check for ManualCheck {
    fn describe(&self) -> String {
        "manual".to_owned()
    }

    fn needs_secret(&self) -> bool {
        false
    }

    fn preflight(&self) -> Result<(), String> {
        Ok(())
    }

    async fn verify(&self, ctx: &VerifyCtx<'_>) -> Verdict {
        if ctx.confirmed {
            Verdict::Healthy
        } else {
            Verdict::Undecided("waiting for a person to verify the application and run `rekey confirm`".into())
        }
    }
}
