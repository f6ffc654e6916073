//! Where a user's key is delivered ([`Sink`]) and how the application using
//! it is checked ([`Verifier`]): the `[[target]]` entries of `rekey.toml`.
//! Plain data here; the workflow engine gives them behaviour.

use crate::model::{AccountId, UserName};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
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
    Ssm(SsmParameters),
    Exec {
        #[serde(deserialize_with = "non_empty")]
        command: Vec<String>,
        /// Added to the command's clean environment (see [`Env`]).
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty", deserialize_with = "env_vars")]
        env: Env,
    },
    Manual {},
}

/// What an `exec` entry's `env = { NAME = "value" }` adds to the clean
/// environment its command runs in (`PATH`, `HOME`, `LANG`, `TZ` only; never
/// rekey's own AWS credentials, profile or settings).
pub type Env = BTreeMap<String, String>;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Verifier {
    Sts {},
    Exec {
        #[serde(deserialize_with = "non_empty")]
        command: Vec<String>,
        /// Added to the command's clean environment (see [`Env`]).
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty", deserialize_with = "env_vars")]
        env: Env,
    },
    Http {
        url: String,
    },
    Manual {},
}

/// The parameter(s) of an `ssm` sink: one holding the key as JSON
/// (`name`), or two (`id_name`, `secret_name`). Checked when the config is
/// read, so a bad name is a config error with its line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "SsmFields", into = "SsmFields")]
pub enum SsmParameters {
    Json { name: String },
    Pair { id_name: String, secret_name: String },
}

impl SsmParameters {
    pub fn names(&self) -> Vec<&str> {
        match self {
            SsmParameters::Json { name } => vec![name],
            SsmParameters::Pair { id_name, secret_name } => vec![id_name, secret_name],
        }
    }
}

/// How an `ssm` entry is written in rekey.toml.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SsmFields {
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    id_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    secret_name: Option<String>,
}

impl TryFrom<SsmFields> for SsmParameters {
    type Error = String;
    fn try_from(fields: SsmFields) -> Result<Self, String> {
        let parameters = match fields {
            SsmFields { name: Some(name), id_name: None, secret_name: None } => SsmParameters::Json { name },
            SsmFields { name: None, id_name: Some(id_name), secret_name: Some(secret_name) } if id_name != secret_name => {
                SsmParameters::Pair { id_name, secret_name }
            }
            _ => return Err("an ssm sink needs either `name`, or both `id_name` and `secret_name` (two different parameters)".into()),
        };
        for name in parameters.names() {
            check_parameter_name(name)?;
        }
        Ok(parameters)
    }
}

impl From<SsmParameters> for SsmFields {
    fn from(parameters: SsmParameters) -> Self {
        match parameters {
            SsmParameters::Json { name } => SsmFields { name: Some(name), id_name: None, secret_name: None },
            SsmParameters::Pair { id_name, secret_name } => SsmFields { name: None, id_name: Some(id_name), secret_name: Some(secret_name) },
        }
    }
}

/// SSM's naming rules, so that a name AWS would refuse fails at config time.
fn check_parameter_name(name: &str) -> Result<(), String> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || "_.-/".contains(c);
    let problem = if name.is_empty() || name.len() > 1011 {
        "must have 1 to 1011 characters"
    } else if !name.chars().all(allowed) {
        "may hold only letters, digits and _ . - /"
    } else if name.contains('/') && !name.starts_with('/') {
        "must start with / when it has a path"
    } else if ["aws", "ssm"].iter().any(|p| name.trim_start_matches('/').get(..3).is_some_and(|s| s.eq_ignore_ascii_case(p))) {
        "must not begin with aws or ssm (reserved by AWS)"
    } else {
        return Ok(());
    };
    Err(format!("SSM parameter name {name:?} {problem}"))
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

fn env_vars<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Env, D::Error> {
    let env = Env::deserialize(d)?;
    if let Some(bad) = env.keys().find(|name| name.is_empty() || name.contains(['=', '\0'])) {
        return Err(serde::de::Error::custom(format!("{bad:?} is not an environment variable name")));
    }
    if env.values().any(|value| value.contains('\0')) {
        return Err(serde::de::Error::custom("an environment variable value cannot hold a NUL character"));
    }
    Ok(env)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn sinks(deliver: &str) -> Result<Vec<Sink>, String> {
        #[derive(Deserialize)]
        struct File {
            #[allow(dead_code)]
            target: Vec<Target>,
        }
        let text = format!("[[target]]\nuser = \"u\"\ndeliver = [\n  {deliver},\n]\n");
        toml::from_str::<File>(&text).map(|f| f.target.into_iter().next().unwrap().deliver).map_err(|e| e.to_string())
    }

    #[test]
    fn ssm_takes_one_name_or_a_pair() {
        assert_eq!(
            sinks(r#"{ type = "ssm", name = "/app/aws" }"#).unwrap(),
            [Sink::Ssm(SsmParameters::Json { name: "/app/aws".into() })]
        );
        assert_eq!(
            sinks(r#"{ type = "ssm", id_name = "/app/id", secret_name = "/app/secret" }"#).unwrap(),
            [Sink::Ssm(SsmParameters::Pair { id_name: "/app/id".into(), secret_name: "/app/secret".into() })]
        );
    }

    #[test]
    fn bad_ssm_names_are_config_errors_with_their_line() {
        for (entry, words) in [
            (r#"{ type = "ssm" }"#, "either `name`"),
            (r#"{ type = "ssm", name = "/a", id_name = "/b", secret_name = "/c" }"#, "either `name`"),
            (r#"{ type = "ssm", id_name = "/b" }"#, "both `id_name` and `secret_name`"),
            (r#"{ type = "ssm", id_name = "/b", secret_name = "/b" }"#, "two different"),
            (r#"{ type = "ssm", name = "app/aws" }"#, "must start with /"),
            (r#"{ type = "ssm", name = "/app/a b" }"#, "only letters"),
            (r#"{ type = "ssm", name = "" }"#, "1 to 1011"),
            (r#"{ type = "ssm", name = "/aws/x" }"#, "reserved"),
            (r#"{ type = "ssm", name = "/x", nme = "/y" }"#, "nme"),
        ] {
            let e = sinks(entry).unwrap_err();
            // Sink errors name the line of `deliver` (serde buffers tagged entries, losing their own spans).
            assert!(e.contains("line 3") && e.contains(words), "{entry} gave: {e}");
        }
    }

    #[test]
    fn exec_takes_an_env() {
        let sink = sinks(r#"{ type = "exec", command = ["x"], env = { AWS_REGION = "eu-west-1" } }"#).unwrap();
        let env = Env::from([("AWS_REGION".to_owned(), "eu-west-1".to_owned())]);
        assert_eq!(sink, [Sink::Exec { command: vec!["x".into()], env }]);
        let e = sinks(r#"{ type = "exec", command = ["x"], env = { "A=B" = "c" } }"#).unwrap_err();
        assert!(e.contains("line 3") && e.contains("not an environment variable name"), "{e}");
        // Plans saved without it still load.
        let old = serde_json::json!({"type": "exec", "command": ["x"]});
        assert_eq!(serde_json::from_value::<Sink>(old).unwrap(), Sink::Exec { command: vec!["x".into()], env: Env::new() });
    }

    #[test]
    fn ssm_serializes_as_written() {
        let sink = Sink::Ssm(SsmParameters::Pair { id_name: "/i".into(), secret_name: "/s".into() });
        let json = serde_json::to_value(&sink).unwrap();
        assert_eq!(json, serde_json::json!({"type": "ssm", "id_name": "/i", "secret_name": "/s"}));
        assert_eq!(serde_json::from_value::<Sink>(json).unwrap(), sink);
        // Plans saved before the sink was typed spell absent names as null.
        let old = serde_json::json!({"type": "ssm", "name": "/a", "id_name": null, "secret_name": null});
        assert_eq!(serde_json::from_value::<Sink>(old).unwrap(), Sink::Ssm(SsmParameters::Json { name: "/a".into() }));
    }
}
