//! `ssm`: SecureString parameter(s): one holding the key as JSON, or two
//! (`id_name`, `secret_name`). The restore point is each parameter's version
//! before delivery.
//!
//! One JSON parameter may hold more than the key: delivery and restore
//! change only its two fields (restore takes them from the version before
//! delivery), and every other field keeps its current value. Versions are
//! numbered one by one, so a put answering one more than the version read
//! proves nobody wrote in between; otherwise rekey's put may hide that
//! write, and rekey writes again on top of it.
//!
//! Two parameters are rekey's alone; restore writes their old values back
//! (or deletes a parameter rekey created). The id one is the commit marker:
//! delivery writes the secret first and the id last, restore goes the other
//! way (id first). A reader can meet the old id with the new secret for a
//! moment, never the new id with the old secret, and a restore cut short
//! between the two is finished by running it again.

use super::json::{self, Restore};
use super::{Delivered, DeliverySink, Grant, PolicyScope, RestorePoint as AnyRestorePoint, Restored, SinkCtx, SinkError};
use rekey_aws::secrets::ParameterStore;
use rekey_core::target::SsmParameters;
use rekey_core::{AccessKeyId, Credentials, Secret};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

const FIELDS: json::Fields = ("AccessKeyId", "SecretAccessKey");
/// Tries of a write that others keep beating.
const ATTEMPTS: usize = 10;
/// The calls this sink makes, granted by `rekey policy` (restore deletes
/// a parameter rekey created).
const ACTIONS: &[&str] = &["ssm:GetParameter", "ssm:PutParameter", "ssm:DeleteParameter"];

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

    /// Makes `change(latest value)` the latest version of `name`, unless it
    /// is `None`; true if it wrote.
    async fn update(&self, ctx: &SinkCtx<'_>, name: &str, change: impl Fn(Option<&str>) -> Option<Secret>) -> Result<bool, SinkError> {
        let _turn = json::exclusive(format!("{} ssm {name}", ctx.account)).await;
        let ps = ParameterStore::new(ctx.clients);
        let read = ps.get(name, None).await?;
        let (mut latest, mut base) = (read.as_ref().map_or(0, |p| p.version), read.map(|p| p.value));
        // Whether rekey's last put may hide someone else's write.
        let mut hiding = false;
        for _ in 0..ATTEMPTS {
            let value = match (change(base.as_ref().map(Secret::expose)), base) {
                (Some(value), _) => value,
                (None, _) if !hiding => return Ok(false),
                // Nothing of rekey's to change there: put their write back on top.
                (None, Some(theirs)) => theirs,
                (None, None) => break,
            };
            let version = ps.put(name, &value).await?;
            if version == latest + 1 {
                return Ok(true);
            }
            // Someone wrote after rekey read; the newest of theirs is what they meant.
            (latest, hiding) = (version, true);
            base = ps.get(name, Some(version - 1)).await?.map(|p| p.value);
        }
        Err(SinkError::KeptChanging { sink: self.describe() })
    }

    /// The two fields, only while the parameter holds the new key.
    async fn restore_json(&self, ctx: &SinkCtx<'_>, name: &str, new_key: &AccessKeyId, point: &RestorePoint) -> Result<Restored, SinkError> {
        let ps = ParameterStore::new(ctx.clients);
        let Some(current) = ps.get(name, None).await?.filter(|p| json::holds(p.value.expose(), FIELDS, new_key)) else {
            return Ok(Restored::NothingToRestore);
        };
        let before = self.value_before(&ps, point, name).await?;
        let restore = |value: &str| json::without_key(value, before.as_ref().map(Secret::expose), FIELDS, new_key);
        if restore(current.value.expose()) == Restore::Emptied {
            // rekey created it, and nothing else is in it.
            ps.delete(name).await?;
            return Ok(Restored::Restored);
        }
        let wrote = self
            .update(ctx, name, |value| match restore(value?) {
                Restore::Write(value) => Some(value),
                Restore::Unchanged | Restore::Emptied => None,
            })
            .await?;
        Ok(if wrote { Restored::Restored } else { Restored::NothingToRestore })
    }

    /// Back if the id parameter holds the new key, or still (or again) its
    /// value from before: then the other parameter may hold rekey's write,
    /// from a delivery or a restore cut short. Any other id is someone
    /// else's change, and wins.
    async fn restore_pair(&self, ctx: &SinkCtx<'_>, id_name: &str, new_key: &AccessKeyId, point: &RestorePoint) -> Result<Restored, SinkError> {
        let ps = ParameterStore::new(ctx.clients);
        let id_now = ps.get(id_name, None).await?.map(|p| p.value);
        let holds_new_key = id_now.as_ref().is_some_and(|id| id.expose() == new_key.as_str());
        if !holds_new_key && !same(&id_now, &self.value_before(&ps, point, id_name).await?) {
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

    fn plan_line(&self) -> String {
        format!("deliver to {} (ssm:PutParameter SecureString; the previous version stays readable)", self.describe())
    }

    fn readable(&self) -> bool {
        true
    }

    fn awaits_person(&self) -> bool {
        false
    }

    /// A parameter's ARN has no double slash: `/app/aws` is `parameter/app/aws`.
    fn permissions(&self, scope: &PolicyScope<'_>) -> Vec<Grant> {
        let arn = |name: &str| format!("arn:{}:ssm:*:{}:parameter/{}", scope.partition, scope.account, name.trim_start_matches('/'));
        vec![Grant { sid: "RekeyDeliverParameters", actions: ACTIONS, resources: self.parameters.names().into_iter().map(arn).collect() }]
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
        let (id_name, secret_name) = match self.parameters {
            SsmParameters::Json { name } => {
                let wrote = self.update(ctx, name, |current| json::with_key(current, FIELDS, creds)).await?;
                return Ok(if wrote { Delivered::Now } else { Delivered::AlreadyThere });
            }
            SsmParameters::Pair { id_name, secret_name } => (id_name, secret_name),
        };
        let ps = ParameterStore::new(ctx.clients);
        if ps.get(id_name, None).await?.is_some_and(|p| p.value.expose() == creds.access_key_id.as_str()) {
            return Ok(Delivered::AlreadyThere);
        }
        ps.put(secret_name, &creds.secret_access_key).await?;
        crate::crash_point(&format!("ssm-delivered:{secret_name}"));
        ps.put(id_name, &Secret::new(creds.access_key_id.as_str())).await?;
        Ok(Delivered::Now)
    }

    async fn read_back(&self, ctx: &SinkCtx<'_>) -> Result<Option<Credentials>, SinkError> {
        let ps = ParameterStore::new(ctx.clients);
        Ok(match self.parameters {
            SsmParameters::Json { name } => ps.get(name, None).await?.and_then(|p| json::parse_credentials(p.value.expose(), FIELDS)),
            SsmParameters::Pair { id_name, secret_name } => match (ps.get(id_name, None).await?, ps.get(secret_name, None).await?) {
                (Some(id), Some(secret)) => Some(Credentials {
                    access_key_id: AccessKeyId::new(id.value.expose()),
                    secret_access_key: secret.value,
                }),
                _ => None,
            },
        })
    }

    async fn restore(&self, ctx: &SinkCtx<'_>, new_key: &AccessKeyId, point: &AnyRestorePoint) -> Result<Restored, SinkError> {
        let point = match point {
            AnyRestorePoint::Ssm(point) => point,
            AnyRestorePoint::Nothing => return Ok(Restored::NothingToRestore),
            _ => return Err(SinkError::WrongRestorePoint { sink: self.describe() }),
        };
        match self.parameters {
            SsmParameters::Json { name } => self.restore_json(ctx, name, new_key, point).await,
            SsmParameters::Pair { id_name, .. } => self.restore_pair(ctx, id_name, new_key, point).await,
        }
    }

    async fn finish(&self, _: &SinkCtx<'_>, _: &AnyRestorePoint) -> Result<(), SinkError> {
        Ok(())
    }
}
