//! The IAM calls the engine makes, behind a narrow trait ([`KeyApi`]), so
//! its decisions (recovery, drain, undo) are unit-tested against a fake and
//! proven end to end against the emulator with [`AwsKeys`].

use jiff::{SignedDuration, Timestamp};
use rekey_aws::cloudtrail::{KeyEvents, Trails};
use rekey_aws::iam::{ListedKey, RequestId};
use rekey_aws::{AwsError, Clients, Iam};
use rekey_core::{AccessKeyId, AccountId, Credentials, KeyStatus, LastUsed, UserName};

#[async_trait::async_trait]
pub trait KeyApi: Send + Sync {
    /// The account the caller's credentials act in.
    async fn caller_account(&self) -> Result<AccountId, AwsError>;
    /// The user's ARN with its path (what `sts` compares), `None` if no such user.
    async fn user_arn(&self, user: &UserName) -> Result<Option<String>, AwsError>;
    async fn list_keys(&self, user: &UserName) -> Result<Vec<ListedKey>, AwsError>;
    async fn last_used(&self, key: &AccessKeyId) -> Result<LastUsed, AwsError>;
    async fn create_key(&self, user: &UserName) -> Result<(Credentials, RequestId), AwsError>;
    async fn set_status(&self, user: &UserName, key: &AccessKeyId, status: KeyStatus) -> Result<RequestId, AwsError>;
    /// Deleting a key that is already gone is not an error.
    async fn delete_key(&self, user: &UserName, key: &AccessKeyId) -> Result<RequestId, AwsError>;
    /// AWS's clock minus this machine's.
    fn clock_offset(&self) -> SignedDuration;
    /// The key's CloudTrail events since `from` (and how many could not be
    /// read); `None` where CloudTrail is not configured for the engine.
    async fn key_events(&self, _key: &AccessKeyId, _from: Timestamp) -> Result<Option<KeyEvents>, AwsError> {
        Ok(None)
    }
    /// When the key was set active from `from` on, from CloudTrail's
    /// `UpdateAccessKey` events (IAM's API cannot say); `None` where
    /// CloudTrail is not configured for the engine.
    async fn activations(&self, _key: &AccessKeyId, _from: Timestamp) -> Result<Option<Vec<Timestamp>>, AwsError> {
        Ok(None)
    }
}

/// [`KeyApi`] on the AWS SDK.
pub struct AwsKeys {
    iam: Iam,
    clients: Clients,
    trails: Option<Trails>,
}

impl AwsKeys {
    pub fn new(clients: &Clients) -> Self {
        AwsKeys { iam: Iam::new(clients), clients: clients.clone(), trails: None }
    }

    /// Reads CloudTrail's event history in `regions` for the drain's
    /// consumer evidence.
    pub fn with_cloudtrail(mut self, regions: &[String]) -> Self {
        self.trails = Some(Trails::new(&self.clients, regions));
        self
    }
}

#[async_trait::async_trait]
impl KeyApi for AwsKeys {
    async fn caller_account(&self) -> Result<AccountId, AwsError> {
        rekey_aws::sts::caller_account(&self.clients).await
    }
    async fn user_arn(&self, user: &UserName) -> Result<Option<String>, AwsError> {
        Ok(self.iam.get_user(user).await?.map(|u| u.arn))
    }
    async fn list_keys(&self, user: &UserName) -> Result<Vec<ListedKey>, AwsError> {
        self.iam.list_access_keys(user).await
    }
    async fn last_used(&self, key: &AccessKeyId) -> Result<LastUsed, AwsError> {
        self.iam.access_key_last_used(key).await
    }
    async fn create_key(&self, user: &UserName) -> Result<(Credentials, RequestId), AwsError> {
        self.iam.create_access_key(user).await
    }
    async fn set_status(&self, user: &UserName, key: &AccessKeyId, status: KeyStatus) -> Result<RequestId, AwsError> {
        self.iam.set_access_key_status(user, key, status).await
    }
    async fn delete_key(&self, user: &UserName, key: &AccessKeyId) -> Result<RequestId, AwsError> {
        self.iam.delete_access_key(user, key).await
    }
    fn clock_offset(&self) -> SignedDuration {
        self.clients.clock().offset()
    }
    async fn key_events(&self, key: &AccessKeyId, from: Timestamp) -> Result<Option<KeyEvents>, AwsError> {
        let Some(trails) = &self.trails else { return Ok(None) };
        Ok(Some(trails.events(&[key.to_string()], from).await?))
    }
    async fn activations(&self, key: &AccessKeyId, from: Timestamp) -> Result<Option<Vec<Timestamp>>, AwsError> {
        let Some(trails) = &self.trails else { return Ok(None) };
        Ok(Some(trails.activations(key.as_str(), from).await?))
    }
}
