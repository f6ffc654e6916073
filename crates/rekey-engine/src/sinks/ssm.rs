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

async fn held_key(ps: &ParameterStore, names: &Names) -> Result<Option<(AccessKeyId, i64)>, SinkError> {
    let Some(p) = ps.get(names.id_param(), None).await? else { return Ok(None) };
    let id = match names {
        Names::Json(_) => parse_credentials(p.value.expose(), FIELDS).map(|c| c.access_key_id),
        Names::Pair { .. } => Some(AccessKeyId::new(p.value.expose())),
    };
    Ok(id.map(|id| (id, p.version)))
}

pub async fn deliver(ctx: &SinkCtx<'_>, names: &Names, creds: &Credentials) -> Result<Delivered, SinkError> {
    let ps = ParameterStore::new(ctx.clients);
    if held_key(&ps, names).await?.is_some_and(|(id, _)| id == creds.access_key_id) {
        return Ok(Delivered::AlreadyThere);
    }
    match names {
        Names::Json(name) => {
            let current = ps.get(name, None).await?;
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

pub async fn restore(ctx: &SinkCtx<'_>, names: &Names, new_key: &AccessKeyId) -> Result<Restored, SinkError> {
    let ps = ParameterStore::new(ctx.clients);
    match held_key(&ps, names).await? {
        Some((id, _)) if &id == new_key => {}
        _ => return Ok(Restored::NothingToRestore),
    }
    let params: Vec<&str> = match names {
        Names::Json(name) => vec![name],
        Names::Pair { id, secret } => vec![id, secret],
    };
    for name in params {
        let Some(current) = ps.get(name, None).await? else { continue };
        // rekey wrote exactly one version (delivery skips a sink that holds
        // the key), so the one before it is the value to bring back.
        match ps.get(name, Some(current.version - 1)).await? {
            Some(previous) if current.version > 1 => {
                ps.put(name, &previous.value).await?;
            }
            _ => ps.delete(name).await?,
        }
    }
    Ok(Restored::Restored)
}
