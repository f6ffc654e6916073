//! Where a user's key is delivered ([`Sink`]) and how the application using
//! it is checked ([`Verifier`]): the `[[target]]` entries of `rekey.toml`.
//! Plain data here; the workflow engine gives them behaviour.

use crate::model::{AccountId, UserName};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Target {
    pub user: UserName,
    pub account: Option<AccountId>,
    #[serde(deserialize_with = "non_empty")]
    pub deliver: Vec<Sink>,
    #[serde(default)]
    pub verify: Vec<Verifier>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Sink {
    CredentialsFile {
        path: PathBuf,
        #[serde(default = "default_profile")]
        profile: String,
    },
    Secretsmanager {
        secret_id: String,
        #[serde(default = "default_id_field")]
        id_field: String,
        #[serde(default = "default_secret_field")]
        secret_field: String,
    },
    /// One parameter holding the JSON, or two (`id_name`, `secret_name`).
    Ssm {
        name: Option<String>,
        id_name: Option<String>,
        secret_name: Option<String>,
    },
    Exec {
        #[serde(deserialize_with = "non_empty")]
        command: Vec<String>,
    },
    Manual {},
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Verifier {
    Sts {},
    Exec {
        #[serde(deserialize_with = "non_empty")]
        command: Vec<String>,
    },
    Http {
        url: String,
    },
    Manual {},
}

fn default_profile() -> String {
    "default".into()
}
fn default_id_field() -> String {
    "AccessKeyId".into()
}
fn default_secret_field() -> String {
    "SecretAccessKey".into()
}

fn non_empty<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    let items = Vec::<T>::deserialize(d)?;
    if items.is_empty() {
        return Err(serde::de::Error::custom("must list at least one entry"));
    }
    Ok(items)
}
