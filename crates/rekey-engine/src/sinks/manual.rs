//! `manual`: shows the new key once to the person running rekey, who puts it
//! in place and runs `rekey confirm ID`. Refused when stdout is not a
//! terminal (a log would keep the secret) unless `--reveal` is given.

use super::{Delivered, SinkCtx, SinkError};
use rekey_core::Credentials;

pub fn check(ctx: &SinkCtx<'_>) -> Result<(), SinkError> {
    if ctx.may_reveal {
        Ok(())
    } else {
        Err(SinkError::Failed(
            "a manual sink prints the new secret, and stdout is not a terminal: run on a terminal or pass --reveal".into(),
        ))
    }
}

pub fn deliver(ctx: &SinkCtx<'_>, creds: &Credentials) -> Result<Delivered, SinkError> {
    check(ctx)?;
    // The one place rekey shows a secret, on purpose and once.
    println!("New access key for {} (shown once; put it in place, then run `rekey confirm`):", ctx.user);
    println!("  aws_access_key_id     = {}", creds.access_key_id);
    println!("  aws_secret_access_key = {}", creds.secret_access_key.expose());
    Ok(Delivered::AwaitsConfirmation)
}
