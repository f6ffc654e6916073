//! `manual`: shows the new key once to the person running rekey, who puts it
//! in place and runs `rekey confirm ID`. Refused when stdout is not a
//! terminal (a log would keep the secret) unless `--reveal` is given.

use super::{Delivered, DeliverySink, RestorePoint, Restored, SinkCtx, SinkError};
use rekey_core::{AccessKeyId, Credentials};

pub struct ManualSink;

#[async_trait::async_trait]
impl DeliverySink for ManualSink {
    fn describe(&self) -> String {
        "manual".to_owned()
    }

    fn readable(&self) -> bool {
        false
    }

    async fn check(&self, ctx: &SinkCtx<'_>) -> Result<(), SinkError> {
        if ctx.may_reveal {
            Ok(())
        } else {
            Err(SinkError::ManualNeedsTerminal)
        }
    }

    async fn restore_point(&self, _: &SinkCtx<'_>) -> Result<RestorePoint, SinkError> {
        Ok(RestorePoint::Nothing)
    }

    async fn deliver(&self, ctx: &SinkCtx<'_>, creds: &Credentials) -> Result<Delivered, SinkError> {
        self.check(ctx).await?;
        // The one place rekey shows a secret, on purpose and once.
        println!("New access key for {} (shown once; put it in place, then run `rekey confirm`):", ctx.user);
        println!("  aws_access_key_id     = {}", creds.access_key_id);
        println!("  aws_secret_access_key = {}", creds.secret_access_key.expose());
        Ok(Delivered::AwaitsConfirmation)
    }

    async fn read_back(&self, _: &SinkCtx<'_>) -> Result<Option<Credentials>, SinkError> {
        Ok(None)
    }

    async fn restore(&self, _: &SinkCtx<'_>, _: &AccessKeyId, _: &RestorePoint) -> Result<Restored, SinkError> {
        Ok(Restored::CannotRestore("put the old key back where you delivered the new one by hand".into()))
    }

    async fn finish(&self, _: &SinkCtx<'_>, _: &RestorePoint) -> Result<(), SinkError> {
        Ok(())
    }
}
