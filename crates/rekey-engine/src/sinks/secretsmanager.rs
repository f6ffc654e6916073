//! `secretsmanager`: `PutSecretValue` of the key as JSON; the previous value
//! stays reachable as AWSPREVIOUS, and restore makes it AWSCURRENT again.

use super::{credentials_json, parse_credentials, Delivered, Restored, SinkCtx, SinkError};
use rekey_aws::secrets::SecretsManager;
use rekey_core::{AccessKeyId, Credentials};

type Fields<'a> = (&'a str, &'a str);

pub async fn check(ctx: &SinkCtx<'_>, secret_id: &str) -> Result<(), SinkError> {
    if SecretsManager::new(ctx.clients).exists(secret_id).await? {
        Ok(())
    } else {
        Err(SinkError::Failed(format!("secret {secret_id} does not exist; create it first (rekey only writes new versions)")))
    }
}

fn holds(value: &str, fields: Fields<'_>, key: &AccessKeyId) -> bool {
    parse_credentials(value, fields).is_some_and(|c| &c.access_key_id == key)
}

pub async fn deliver(ctx: &SinkCtx<'_>, secret_id: &str, fields: Fields<'_>, creds: &Credentials) -> Result<Delivered, SinkError> {
    let sm = SecretsManager::new(ctx.clients);
    let current = sm.get(secret_id, "AWSCURRENT").await?;
    if current.as_ref().is_some_and(|c| holds(c.value.expose(), fields, &creds.access_key_id)) {
        return Ok(Delivered::AlreadyThere);
    }
    let value = credentials_json(current.as_ref().map(|c| c.value.expose()), fields, creds);
    sm.put(secret_id, &value).await?;
    Ok(Delivered::Now)
}

pub async fn read_back(ctx: &SinkCtx<'_>, secret_id: &str, fields: Fields<'_>) -> Result<Option<Credentials>, SinkError> {
    let current = SecretsManager::new(ctx.clients).get(secret_id, "AWSCURRENT").await?;
    Ok(current.and_then(|c| parse_credentials(c.value.expose(), fields)))
}

pub async fn restore(ctx: &SinkCtx<'_>, secret_id: &str, fields: Fields<'_>, new_key: &AccessKeyId) -> Result<Restored, SinkError> {
    let sm = SecretsManager::new(ctx.clients);
    let Some(current) = sm.get(secret_id, "AWSCURRENT").await? else {
        return Ok(Restored::NothingToRestore);
    };
    if !holds(current.value.expose(), fields, new_key) {
        return Ok(Restored::NothingToRestore);
    }
    let Some(previous) = sm.get(secret_id, "AWSPREVIOUS").await? else {
        return Ok(Restored::CannotRestore(format!("secret {secret_id} has no AWSPREVIOUS version to go back to")));
    };
    sm.make_current(secret_id, &previous.version_id, &current.version_id).await?;
    Ok(Restored::Restored)
}
