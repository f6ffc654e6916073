//! `manual`: shows the new key once to the person running rekey, who puts it
//! in place and runs `rekey confirm ID`. Refused when stdout is not a
//! terminal (a log would keep the secret) unless `--reveal` is given.

use super::{Delivered, DeliverySink, Grant, PolicyScope, RestorePoint, Restored, SinkCtx, SinkError};
use rekey_core::{AccessKeyId, Credentials};
use std::io::Write;

pub struct ManualSink;

#[async_trait::async_trait]
impl DeliverySink for ManualSink {
    fn describe(&self) -> String {
        "manual".to_owned()
    }

    fn plan_line(&self) -> String {
        format!("deliver to {}", self.describe())
    }

    fn readable(&self) -> bool {
        false
    }

    /// The person puts the key in place and says so with `rekey confirm`.
    fn awaits_person(&self) -> bool {
        true
    }

    /// The person acts, not rekey.
    fn permissions(&self, _: &PolicyScope<'_>) -> Vec<Grant> {
        Vec::new()
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
        // The one place rekey shows a secret, on purpose and once. A closed
        // stdout is an error (nobody saw the key), not a panic.
        let shown = zeroize::Zeroizing::new(format!(
            "New access key for {} (shown once; put it in place, then run `rekey confirm`):\n  aws_access_key_id     = {}\n  aws_secret_access_key = {}\n",
            ctx.user,
            creds.access_key_id,
            creds.secret_access_key.expose()
        ));
        let mut out = std::io::stdout().lock();
        out.write_all(shown.as_bytes()).and_then(|()| out.flush()).map_err(SinkError::ManualNotShown)?;
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
