//! `ssm`: SecureString parameter(s): one holding the key as JSON, or two
//! (`id_name`, `secret_name`). Restore writes back the previous version
//! (or deletes a parameter rekey created).

use super::{credentials_json, parse_credentials, Delivered, Restored, SinkCtx, SinkError};
use rekey_aws::secrets::ParameterStore;
use rekey_core::target::Sink;
use rekey_core::{AccessKeyId, Credentials, Secret};

const FIELDS: (&str, &str) = ("AccessKeyId", "SecretAccessKey");

pub enum Names {
    Json(String),
    Pair { id: String, secret: String },
}

impl Names {
    pub fn of(sink: &Sink) -> Result<Names, SinkError> {
        match sink {
            Sink::Ssm { name: Some(name), id_name: None, secret_name: None } => Ok(Names::Json(name.clone())),
            Sink::Ssm { name: None, id_name: Some(id), secret_name: Some(secret) } => {
                Ok(Names::Pair { id: id.clone(), secret: secret.clone() })
            }
            _ => Err(SinkError::Failed("an ssm sink needs either `name`, or both `id_name` and `secret_name`".into())),
        }
    }

    /// The parameter whose value says which key the sink holds.
    fn id_param(&self) -> &str {
        match self {
            Names::Json(name) => name,
            Names::Pair { id, .. } => id,
        }
    }
}

impl Names {
    /// The key id a value of the id parameter names.
    fn key_in(&self, value: &Secret) -> Option<AccessKeyId> {
        match self {
            Names::Json(_) => parse_credentials(value.expose(), FIELDS).map(|c| c.access_key_id),
            Names::Pair { .. } => Some(AccessKeyId::new(value.expose())),
        }
    }
}

pub async fn deliver(ctx: &SinkCtx<'_>, names: &Names, creds: &Credentials) -> Result<Delivered, SinkError> {
    let ps = ParameterStore::new(ctx.clients);
    let current = ps.get(names.id_param(), None).await?;
    if current.as_ref().and_then(|p| names.key_in(&p.value)).as_ref() == Some(&creds.access_key_id) {
        return Ok(Delivered::AlreadyThere);
    }
    match names {
        Names::Json(name) => {
            ps.put(name, &credentials_json(current.as_ref().map(|c| c.value.expose()), FIELDS, creds)).await?;
        }
        // The secret first: the id parameter is what says "delivered".
        Names::Pair { id, secret } => {
            ps.put(secret, &creds.secret_access_key).await?;
            ps.put(id, &Secret::new(creds.access_key_id.as_str())).await?;
        }
    }
    Ok(Delivered::Now)
}

pub async fn read_back(ctx: &SinkCtx<'_>, names: &Names) -> Result<Option<Credentials>, SinkError> {
    let ps = ParameterStore::new(ctx.clients);
    Ok(match names {
        Names::Json(name) => ps.get(name, None).await?.and_then(|p| parse_credentials(p.value.expose(), FIELDS)),
        Names::Pair { id, secret } => match (ps.get(id, None).await?, ps.get(secret, None).await?) {
            (Some(id), Some(secret)) => Some(Credentials {
                access_key_id: AccessKeyId::new(id.value.expose()),
                secret_access_key: secret.value,
            }),
            _ => None,
        },
    })
}

impl Names {
    /// The parameters, the id one last: it is what says "delivered", so it
    /// is written last and restored last.
    fn all(&self) -> Vec<&str> {
        match self {
            Names::Json(name) => vec![name],
            Names::Pair { id, secret } => vec![secret, id],
        }
    }
}

/// The current version of each parameter (0: it does not exist yet).
pub async fn restore_point(ctx: &SinkCtx<'_>, names: &Names) -> Result<serde_json::Value, SinkError> {
    let ps = ParameterStore::new(ctx.clients);
    let mut versions = serde_json::Map::new();
    for name in names.all() {
        let version = ps.get(name, None).await?.map_or(0, |p| p.version);
        versions.insert(name.to_owned(), version.into());
    }
    Ok(serde_json::Value::Object(versions))
}

/// Writes back each parameter's version from before the rotation (deletes
/// one rekey created). Running it again writes the same values again. With
/// no restore point (delivery began before rekey kept one), the version
/// before the current one is used.
pub async fn restore(ctx: &SinkCtx<'_>, names: &Names, new_key: &AccessKeyId, point: Option<&serde_json::Value>) -> Result<Restored, SinkError> {
    let ps = ParameterStore::new(ctx.clients);
    let Some(id_param) = ps.get(names.id_param(), None).await? else { return Ok(Restored::NothingToRestore) };
    if names.key_in(&id_param.value).as_ref() != Some(new_key) {
        return Ok(Restored::NothingToRestore);
    }
    for name in names.all() {
        let before = match point.and_then(|p| p.get(name)).and_then(|v| v.as_i64()) {
            Some(version) => version,
            None => match ps.get(name, None).await? {
                Some(current) => current.version - 1,
                None => continue,
            },
        };
        if before == 0 {
            ps.delete(name).await?;
            continue;
        }
        let previous = ps.get(name, Some(before)).await?.ok_or_else(|| {
            SinkError::Failed(format!("parameter {name} no longer has version {before}, the one to restore"))
        })?;
        ps.put(name, &previous.value).await?;
        crate::crash_point(&format!("ssm-restored:{name}"));
    }
    Ok(Restored::Restored)
}
