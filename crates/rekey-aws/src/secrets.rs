//! Secrets Manager and SSM Parameter Store primitives for the sinks. Values
//! pass through as [`Secret`]s: they hold key material.

use crate::error::{classify, found, AwsError};
use crate::Clients;
use aws_sdk_ssm::types::ParameterType;
use rekey_core::Secret;

pub struct SecretsManager {
    client: aws_sdk_secretsmanager::Client,
    endpoint: String,
}

/// A secret's current value and its version id.
pub struct SecretVersion {
    pub version_id: String,
    pub value: Secret,
}

impl SecretsManager {
    pub fn new(clients: &Clients) -> Self {
        let config = crate::client::common_layers!(aws_sdk_secretsmanager::config::Builder::from(clients.sdk_config()), clients).build();
        SecretsManager { client: aws_sdk_secretsmanager::Client::from_conf(config), endpoint: clients.endpoint() }
    }

    /// The version staged `stage` (AWSCURRENT, AWSPREVIOUS), `None` if none.
    pub async fn get(&self, secret_id: &str, stage: &str) -> Result<Option<SecretVersion>, AwsError> {
        let out = self.client.get_secret_value().secret_id(secret_id).version_stage(stage).send().await;
        let out = found(out.map_err(|e| classify("secretsmanager:GetSecretValue", &self.endpoint, e)))?;
        Ok(out.map(|out| SecretVersion {
            version_id: out.version_id.unwrap_or_default(),
            value: Secret::new(out.secret_string.unwrap_or_default()),
        }))
    }

    /// The value of version `version_id`, `None` if there is no such version.
    pub async fn get_version(&self, secret_id: &str, version_id: &str) -> Result<Option<Secret>, AwsError> {
        let out = self.client.get_secret_value().secret_id(secret_id).version_id(version_id).send().await;
        let out = found(out.map_err(|e| classify("secretsmanager:GetSecretValue", &self.endpoint, e)))?;
        Ok(out.map(|out| Secret::new(out.secret_string.unwrap_or_default())))
    }

    /// Stores a new version labelled `stage` only: AWSCURRENT stays where it
    /// is, except that a secret's first version is always AWSCURRENT.
    pub async fn put(&self, secret_id: &str, value: &Secret, stage: &str) -> Result<String, AwsError> {
        let out = self
            .client
            .put_secret_value()
            .secret_id(secret_id)
            .secret_string(value.expose())
            .version_stages(stage)
            .send()
            .await
            .map_err(|e| classify("secretsmanager:PutSecretValue", &self.endpoint, e))?;
        Ok(out.version_id.unwrap_or_default())
    }

    /// Moves AWSCURRENT to `version_id` from `current_version_id` (which
    /// becomes AWSPREVIOUS). AWS refuses if AWSCURRENT is no longer on
    /// `current_version_id`: a compare-and-swap.
    pub async fn make_current(&self, secret_id: &str, version_id: &str, current_version_id: &str) -> Result<(), AwsError> {
        self.client
            .update_secret_version_stage()
            .secret_id(secret_id)
            .version_stage("AWSCURRENT")
            .move_to_version_id(version_id)
            .remove_from_version_id(current_version_id)
            .send()
            .await
            .map_err(|e| classify("secretsmanager:UpdateSecretVersionStage", &self.endpoint, e))?;
        Ok(())
    }

    /// Whether the secret exists (preflight: rekey does not create secrets).
    pub async fn exists(&self, secret_id: &str) -> Result<bool, AwsError> {
        let out = self.client.describe_secret().secret_id(secret_id).send().await;
        Ok(found(out.map_err(|e| classify("secretsmanager:DescribeSecret", &self.endpoint, e)))?.is_some())
    }
}

pub struct ParameterStore {
    client: aws_sdk_ssm::Client,
    endpoint: String,
}

/// A parameter's value at one version.
pub struct ParameterVersion {
    pub version: i64,
    pub value: Secret,
}

impl ParameterStore {
    pub fn new(clients: &Clients) -> Self {
        let config = crate::client::common_layers!(aws_sdk_ssm::config::Builder::from(clients.sdk_config()), clients).build();
        ParameterStore { client: aws_sdk_ssm::Client::from_conf(config), endpoint: clients.endpoint() }
    }

    /// The latest version, or the one named (`Some(3)` reads `name:3`).
    pub async fn get(&self, name: &str, version: Option<i64>) -> Result<Option<ParameterVersion>, AwsError> {
        let selector = match version {
            Some(v) => format!("{name}:{v}"),
            None => name.to_owned(),
        };
        let out = self.client.get_parameter().name(selector).with_decryption(true).send().await;
        let parameter = found(out.map_err(|e| classify("ssm:GetParameter", &self.endpoint, e)))?.and_then(|out| out.parameter);
        Ok(parameter.map(|p| ParameterVersion { version: p.version, value: Secret::new(p.value.unwrap_or_default()) }))
    }

    /// Writes a new SecureString version; returns its number (one more
    /// than the latest before it: versions are numbered one by one).
    pub async fn put(&self, name: &str, value: &Secret) -> Result<i64, AwsError> {
        let out = self
            .client
            .put_parameter()
            .name(name)
            .value(value.expose())
            .r#type(ParameterType::SecureString)
            .overwrite(true)
            .send()
            .await
            .map_err(|e| classify("ssm:PutParameter", &self.endpoint, e))?;
        Ok(out.version)
    }

    /// Deletes a parameter; one already gone is fine.
    pub async fn delete(&self, name: &str) -> Result<(), AwsError> {
        let out = self.client.delete_parameter().name(name).send().await;
        found(out.map_err(|e| classify("ssm:DeleteParameter", &self.endpoint, e))).map(|_| ())
    }
}
