//! `secretsmanager`: the key as two fields of the secret's JSON value,
//! which others may share. The restore point is the version that was
//! AWSCURRENT before delivery (not whatever AWSPREVIOUS is by then); restore
//! takes the two fields from it and keeps every other field as it is now.
//!
//! Every write is a compare-and-swap, so a concurrent writer (another
//! rotation, another rekey process, a person) loses nothing: the new value
//! is stored under [`PENDING`], then AWSCURRENT is moved to it from the
//! version it was computed from, which AWS refuses if AWSCURRENT moved
//! meanwhile; then rekey reads and computes again.

use super::json::{self, Restore};
use super::{Delivered, DeliverySink, Grant, PolicyScope, RestorePoint, Restored, SinkCtx, SinkError};
use rekey_aws::secrets::SecretsManager;
use rekey_core::{AccessKeyId, Credentials, Secret};

const CURRENT: &str = "AWSCURRENT";
/// The label of a version rekey wrote and has not made current (yet).
const PENDING: &str = "REKEY_PENDING";
/// Tries of a write that others keep beating.
const ATTEMPTS: usize = 10;
/// The calls this sink makes, granted by `rekey policy`.
const ACTIONS: &[&str] = &[
    "secretsmanager:DescribeSecret",
    "secretsmanager:GetSecretValue",
    "secretsmanager:PutSecretValue",
    "secretsmanager:UpdateSecretVersionStage",
];

pub struct SecretsManagerSink<'a> {
    pub secret_id: &'a str,
    /// The JSON field names of the key id and the secret.
    pub fields: json::Fields<'a>,
}

impl SecretsManagerSink<'_> {
    /// Makes `change(current value)` the current value, unless it is `None`;
    /// true if it wrote.
    async fn update(&self, ctx: &SinkCtx<'_>, change: impl Fn(Option<&str>) -> Option<Secret>) -> Result<bool, SinkError> {
        let _turn = json::exclusive(format!("{} {}", ctx.account, self.describe())).await;
        let sm = SecretsManager::new(ctx.clients);
        let mut wrote = false;
        for _ in 0..ATTEMPTS {
            let current = sm.get(self.secret_id, CURRENT).await?;
            let Some(value) = change(current.as_ref().map(|c| c.value.expose())) else { return Ok(wrote) };
            let staged = sm.put(self.secret_id, &value, PENDING).await?;
            wrote = true;
            crate::crash_point(&format!("secretsmanager-staged:{}", self.secret_id));
            // A secret's first version is AWSCURRENT at once: the next read says whose it is.
            let Some(current) = current else { continue };
            match sm.make_current(self.secret_id, &staged, &current.version_id).await {
                Ok(()) => return Ok(true),
                // AWSCURRENT moved meanwhile (or this call's retry found its first try done): again.
                Err(e) => {
                    if sm.get(self.secret_id, CURRENT).await?.is_some_and(|now| now.version_id == current.version_id) {
                        return Err(e.into());
                    }
                }
            }
        }
        Err(SinkError::KeptChanging { sink: self.describe() })
    }
}

#[async_trait::async_trait]
impl DeliverySink for SecretsManagerSink<'_> {
    fn describe(&self) -> String {
        format!("secretsmanager {}", self.secret_id)
    }

    fn plan_line(&self) -> String {
        format!(
            "deliver to {} (secretsmanager:PutSecretValue, then UpdateSecretVersionStage AWSCURRENT only if no one wrote meanwhile; only its two fields change)",
            self.describe()
        )
    }

    fn readable(&self) -> bool {
        true
    }

    fn awaits_person(&self) -> bool {
        false
    }

    /// Secrets Manager appends `-` and 6 random characters to a secret's
    /// ARN; `-*` would also cover `NAME-other-AbCdEf`. An ARN is kept as given.
    fn permissions(&self, scope: &PolicyScope<'_>) -> Vec<Grant> {
        let secret = match self.secret_id {
            arn if arn.starts_with("arn:") => arn.to_owned(),
            name => format!("arn:{}:secretsmanager:*:{}:secret:{name}-??????", scope.partition, scope.account),
        };
        vec![Grant { sid: "RekeyDeliverSecretsManager", actions: ACTIONS, resources: vec![secret] }]
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
        let wrote = self.update(ctx, |current| json::with_key(current, self.fields, creds)).await?;
        Ok(if wrote { Delivered::Now } else { Delivered::AlreadyThere })
    }

    async fn read_back(&self, ctx: &SinkCtx<'_>) -> Result<Option<Credentials>, SinkError> {
        let current = SecretsManager::new(ctx.clients).get(self.secret_id, CURRENT).await?;
        Ok(current.and_then(|c| json::parse_credentials(c.value.expose(), self.fields)))
    }

    async fn restore(&self, ctx: &SinkCtx<'_>, new_key: &AccessKeyId, point: &RestorePoint) -> Result<Restored, SinkError> {
        let before = match point {
            RestorePoint::Secretsmanager { version_id } => version_id,
            RestorePoint::Nothing => return Ok(Restored::NothingToRestore),
            _ => return Err(SinkError::WrongRestorePoint { sink: self.describe() }),
        };
        let sm = SecretsManager::new(ctx.clients);
        let Some(current) = sm.get(self.secret_id, CURRENT).await?.filter(|c| json::holds(c.value.expose(), self.fields, new_key)) else {
            return Ok(Restored::NothingToRestore);
        };
        let before = match before {
            Some(version_id) => Some(sm.get_version(self.secret_id, version_id).await?.ok_or_else(|| SinkError::SecretVersionGone {
                secret_id: self.secret_id.to_owned(),
                version_id: version_id.clone(),
            })?),
            None => None,
        };
        let restore = |value: &str| json::without_key(value, before.as_ref().map(Secret::expose), self.fields, new_key);
        if restore(current.value.expose()) == Restore::Emptied {
            return Ok(Restored::CannotRestore(format!(
                "secret {} had no value before the rotation, and Secrets Manager cannot take AWSCURRENT away: \
                 make sure its readers no longer use the new key",
                self.secret_id
            )));
        }
        let wrote = self
            .update(ctx, |value| match restore(value?) {
                Restore::Write(value) => Some(value),
                Restore::Unchanged | Restore::Emptied => None,
            })
            .await?;
        Ok(if wrote { Restored::Restored } else { Restored::NothingToRestore })
    }

    async fn finish(&self, _: &SinkCtx<'_>, _: &RestorePoint) -> Result<(), SinkError> {
        Ok(())
    }
}
