//! `ssm`: SecureString parameter(s): one holding the key as JSON, or two
//! (`id_name`, `secret_name`). The restore point is each parameter's version
//! before delivery; restore writes those values back (or deletes a
//! parameter rekey created).
//!
//! With two parameters the id one is the commit marker: delivery writes the
//! secret first and the id last, restore goes the other way (id first). A
//! reader can meet the old id with the new secret for a moment, never the
//! new id with the old secret, and a restore cut short between the two is
//! finished by running it again.

use super::{credentials_json, parse_credentials, Delivered, DeliverySink, RestorePoint as AnyRestorePoint, Restored, SinkCtx, SinkError};
use rekey_aws::secrets::ParameterStore;
use rekey_core::target::SsmParameters;
use rekey_core::{AccessKeyId, Credentials, Secret};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

const FIELDS: (&str, &str) = ("AccessKeyId", "SecretAccessKey");

/// Each parameter's version before the first delivery (`None`: it did not exist).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestorePoint {
    pub versions: BTreeMap<String, Option<i64>>,
}

pub struct SsmSink<'a> {
    pub parameters: &'a SsmParameters,
}

impl SsmSink<'_> {
    /// The parameters in the order delivery writes them: the id one last.
    fn write_order(&self) -> Vec<&str> {
        match self.parameters {
            SsmParameters::Json { name } => vec![name],
            SsmParameters::Pair { id_name, secret_name } => vec![secret_name, id_name],
        }
    }

    /// The parameter whose value says which key the sink holds.
    fn id_parameter(&self) -> &str {
        match self.parameters {
            SsmParameters::Json { name } => name,
            SsmParameters::Pair { id_name, .. } => id_name,
        }
    }

    /// The key id a value of the id parameter names.
    fn key_in(&self, value: &Secret) -> Option<AccessKeyId> {
        match self.parameters {
            SsmParameters::Json { .. } => parse_credentials(value.expose(), FIELDS).map(|c| c.access_key_id),
            SsmParameters::Pair { .. } => Some(AccessKeyId::new(value.expose())),
        }
    }

    /// The value `name` had at the restore point (`None`: it did not exist).
    async fn value_before(&self, ps: &ParameterStore, point: &RestorePoint, name: &str) -> Result<Option<Secret>, SinkError> {
        let Some(&version) = point.versions.get(name) else {
            return Err(SinkError::WrongRestorePoint { sink: self.describe() });
        };
        let Some(version) = version else { return Ok(None) };
        match ps.get(name, Some(version)).await? {
            Some(p) => Ok(Some(p.value)),
            None => Err(SinkError::ParameterVersionGone { name: name.to_owned(), version }),
        }
    }
}

fn same(a: &Option<Secret>, b: &Option<Secret>) -> bool {
    a.as_ref().map(Secret::expose) == b.as_ref().map(Secret::expose)
}

#[async_trait::async_trait]
impl DeliverySink for SsmSink<'_> {
    fn describe(&self) -> String {
        match self.parameters {
            SsmParameters::Json { name } => format!("ssm {name}"),
            SsmParameters::Pair { id_name, secret_name } => format!("ssm {id_name} + {secret_name}"),
        }
    }

    fn readable(&self) -> bool {
        true
    }

    /// The names were checked when the config was read; reading each
    /// parameter now finds a denied `ssm:GetParameter` before any AWS change.
    async fn check(&self, ctx: &SinkCtx<'_>) -> Result<(), SinkError> {
        let ps = ParameterStore::new(ctx.clients);
        for name in self.write_order() {
            ps.get(name, None).await?;
        }
        Ok(())
    }

    async fn restore_point(&self, ctx: &SinkCtx<'_>) -> Result<AnyRestorePoint, SinkError> {
        let ps = ParameterStore::new(ctx.clients);
        let mut versions = BTreeMap::new();
        for name in self.write_order() {
            versions.insert(name.to_owned(), ps.get(name, None).await?.map(|p| p.version));
        }
        Ok(AnyRestorePoint::Ssm(RestorePoint { versions }))
    }

    async fn deliver(&self, ctx: &SinkCtx<'_>, creds: &Credentials) -> Result<Delivered, SinkError> {
        let ps = ParameterStore::new(ctx.clients);
        let current = ps.get(self.id_parameter(), None).await?;
        if current.as_ref().and_then(|p| self.key_in(&p.value)).as_ref() == Some(&creds.access_key_id) {
            return Ok(Delivered::AlreadyThere);
        }
        match self.parameters {
            SsmParameters::Json { name } => {
                ps.put(name, &credentials_json(current.as_ref().map(|c| c.value.expose()), FIELDS, creds)).await?;
            }
            SsmParameters::Pair { id_name, secret_name } => {
                ps.put(secret_name, &creds.secret_access_key).await?;
                crate::crash_point(&format!("ssm-delivered:{secret_name}"));
                ps.put(id_name, &Secret::new(creds.access_key_id.as_str())).await?;
            }
        }
        Ok(Delivered::Now)
    }

    async fn read_back(&self, ctx: &SinkCtx<'_>) -> Result<Option<Credentials>, SinkError> {
        let ps = ParameterStore::new(ctx.clients);
        Ok(match self.parameters {
            SsmParameters::Json { name } => ps.get(name, None).await?.and_then(|p| parse_credentials(p.value.expose(), FIELDS)),
            SsmParameters::Pair { id_name, secret_name } => match (ps.get(id_name, None).await?, ps.get(secret_name, None).await?) {
                (Some(id), Some(secret)) => Some(Credentials {
                    access_key_id: AccessKeyId::new(id.value.expose()),
                    secret_access_key: secret.value,
                }),
                _ => None,
            },
        })
    }

    /// Goes back if the id parameter holds the new key, or still (or again)
    /// its value from before: then the other parameter may hold rekey's
    /// write, from a delivery or a restore cut short. Any other id is
    /// someone else's change, and wins.
    async fn restore(&self, ctx: &SinkCtx<'_>, new_key: &AccessKeyId, point: &AnyRestorePoint) -> Result<Restored, SinkError> {
        let point = match point {
            AnyRestorePoint::Ssm(point) => point,
            AnyRestorePoint::Nothing => return Ok(Restored::NothingToRestore),
            _ => return Err(SinkError::WrongRestorePoint { sink: self.describe() }),
        };
        let ps = ParameterStore::new(ctx.clients);
        let id_now = ps.get(self.id_parameter(), None).await?.map(|p| p.value);
        let holds_new_key = id_now.as_ref().and_then(|v| self.key_in(v)).as_ref() == Some(new_key);
        if !holds_new_key && !same(&id_now, &self.value_before(&ps, point, self.id_parameter()).await?) {
            return Ok(Restored::NothingToRestore);
        }
        let mut outcome = Restored::NothingToRestore;
        for name in self.write_order().into_iter().rev() {
            let before = self.value_before(&ps, point, name).await?;
            if same(&ps.get(name, None).await?.map(|p| p.value), &before) {
                continue;
            }
            match &before {
                Some(value) => ps.put(name, value).await.map(drop)?,
                None => ps.delete(name).await?,
            }
            outcome = Restored::Restored;
            crate::crash_point(&format!("ssm-restored:{name}"));
        }
        Ok(outcome)
    }

    async fn finish(&self, _: &SinkCtx<'_>, _: &AnyRestorePoint) -> Result<(), SinkError> {
        Ok(())
    }
}
