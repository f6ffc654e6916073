//! `secretsmanager`: `PutSecretValue` of the key as JSON. The restore point
//! is the version that was AWSCURRENT before delivery; restore makes exactly
//! that version AWSCURRENT again (not whatever AWSPREVIOUS is by then).

use super::{credentials_json, parse_credentials, Delivered, DeliverySink, RestorePoint, Restored, SinkCtx, SinkError};
use rekey_aws::secrets::SecretsManager;
use rekey_core::{AccessKeyId, Credentials};

const CURRENT: &str = "AWSCURRENT";

pub struct SecretsManagerSink<'a> {
    pub secret_id: &'a str,
    /// The JSON field names of the key id and the secret.
    pub fields: (&'a str, &'a str),
}

impl SecretsManagerSink<'_> {
    fn holds(&self, value: &str, key: &AccessKeyId) -> bool {
        parse_credentials(value, self.fields).is_some_and(|c| &c.access_key_id == key)
    }
}

#[async_trait::async_trait]
impl DeliverySink for SecretsManagerSink<'_> {
    fn describe(&self) -> String {
        format!("secretsmanager {}", self.secret_id)
    }

    fn readable(&self) -> bool {
        true
    }

    /// Reading the value too finds a denied `GetSecretValue` (or KMS
    /// decrypt) before any AWS change.
    async fn check(&self, ctx: &SinkCtx<'_>) -> Result<(), SinkError> {
        let sm = SecretsManager::new(ctx.clients);
        if !sm.exists(self.secret_id).await? {
            return Err(SinkError::SecretNotFound { secret_id: self.secret_id.to_owned() });
        }
        sm.get(self.secret_id, CURRENT).await?;
        Ok(())
    }

    async fn restore_point(&self, ctx: &SinkCtx<'_>) -> Result<RestorePoint, SinkError> {
        let current = SecretsManager::new(ctx.clients).get(self.secret_id, CURRENT).await?;
        Ok(RestorePoint::Secretsmanager { version_id: current.map(|c| c.version_id) })
    }

    async fn deliver(&self, ctx: &SinkCtx<'_>, creds: &Credentials) -> Result<Delivered, SinkError> {
        let sm = SecretsManager::new(ctx.clients);
        let current = sm.get(self.secret_id, CURRENT).await?;
        if current.as_ref().is_some_and(|c| self.holds(c.value.expose(), &creds.access_key_id)) {
            return Ok(Delivered::AlreadyThere);
        }
        let value = credentials_json(current.as_ref().map(|c| c.value.expose()), self.fields, creds);
        sm.put(self.secret_id, &value).await?;
        Ok(Delivered::Now)
    }

    async fn read_back(&self, ctx: &SinkCtx<'_>) -> Result<Option<Credentials>, SinkError> {
        let current = SecretsManager::new(ctx.clients).get(self.secret_id, CURRENT).await?;
        Ok(current.and_then(|c| parse_credentials(c.value.expose(), self.fields)))
    }

    async fn restore(&self, ctx: &SinkCtx<'_>, new_key: &AccessKeyId, point: &RestorePoint) -> Result<Restored, SinkError> {
        let before = match point {
            RestorePoint::Secretsmanager { version_id } => version_id,
            RestorePoint::Nothing => return Ok(Restored::NothingToRestore),
            _ => return Err(SinkError::WrongRestorePoint { sink: self.describe() }),
        };
        let sm = SecretsManager::new(ctx.clients);
        let Some(current) = sm.get(self.secret_id, CURRENT).await? else {
            return Ok(Restored::NothingToRestore);
        };
        if !self.holds(current.value.expose(), new_key) {
            return Ok(Restored::NothingToRestore);
        }
        match before {
            Some(version) if *version != current.version_id => {
                sm.make_current(self.secret_id, version, &current.version_id).await?;
                Ok(Restored::Restored)
            }
            Some(_) => Ok(Restored::NothingToRestore),
            None => Ok(Restored::CannotRestore(format!(
                "secret {} had no value before the rotation, and Secrets Manager cannot take AWSCURRENT away: \
                 make sure its readers no longer use the new key",
                self.secret_id
            ))),
        }
    }

    async fn finish(&self, _: &SinkCtx<'_>, _: &RestorePoint) -> Result<(), SinkError> {
        Ok(())
    }
}
