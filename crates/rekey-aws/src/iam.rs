//! IAM calls, one method each, errors already classified (the credential
//! report's parser is `credential_report.rs`).

use crate::error::{classify, found, AwsError};
use aws_sdk_iam::types::{EntityType, ReportStateType, StatusType};
use std::collections::HashMap;
use jiff::Timestamp;
use rekey_core::model::whole_seconds;
use aws_sdk_iam::operation::RequestId as _;
use crate::credential_report::known;
use rekey_core::role_plan::allowed::PolicyText;
use rekey_core::{AccessKeyId, Credentials, KeyStatus, LastUsed, Secret, UserName};
use std::time::Duration;

/// How long to wait for AWS to finish a credential report before giving up.
const REPORT_TIMEOUT: Duration = Duration::from_secs(300);

#[derive(Clone)]
pub struct Iam {
    client: aws_sdk_iam::Client,
    endpoint: String,
}

/// A user as `ListUsers` / `GetUser` describe it.
#[derive(Debug, Clone)]
pub struct UserSummary {
    pub name: UserName,
    pub arn: String,
    /// Only `GetUser` returns tags.
    pub tags: Option<Vec<(String, String)>>,
}

/// A key as `ListAccessKeys` describes it.
#[derive(Debug, Clone)]
pub struct ListedKey {
    pub id: AccessKeyId,
    pub status: KeyStatus,
    pub created_at: Timestamp,
}

impl Iam {
    pub fn new(clients: &crate::Clients) -> Self {
        Iam { client: clients.iam(), endpoint: clients.endpoint() }
    }

    fn fail<E>(&self, operation: &'static str) -> impl FnOnce(aws_smithy_runtime_api::client::result::SdkError<E, aws_smithy_runtime_api::client::orchestrator::HttpResponse>) -> AwsError + '_
    where
        E: aws_smithy_types::error::metadata::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        move |err| classify(operation, &self.endpoint, err)
    }

    /// Generates the credential report if needed (AWS reuses one younger than
    /// 4 hours), waits for it with backoff, and returns its CSV and when it
    /// was generated.
    pub async fn credential_report_csv(&self) -> Result<(Vec<u8>, Option<Timestamp>), AwsError> {
        let started = std::time::Instant::now();
        let mut pause = Duration::from_millis(200);
        loop {
            let out = self
                .client
                .generate_credential_report()
                .send()
                .await
                .map_err(self.fail("iam:GenerateCredentialReport"))?;
            if out.state() == Some(&ReportStateType::Complete) {
                break;
            }
            if started.elapsed() > REPORT_TIMEOUT {
                return Err(AwsError::Unexpected {
                    operation: "iam:GenerateCredentialReport",
                    detail: format!("the report was not ready after {}s", REPORT_TIMEOUT.as_secs()),
                });
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(5));
        }
        let report = self
            .client
            .get_credential_report()
            .send()
            .await
            .map_err(self.fail("iam:GetCredentialReport"))?;
        let content = report.content().ok_or(AwsError::Unexpected {
            operation: "iam:GetCredentialReport",
            detail: "the report has no content".into(),
        })?;
        Ok((content.as_ref().to_vec(), report.generated_time().map(timestamp)))
    }

    pub async fn list_users(&self) -> Result<Vec<UserSummary>, AwsError> {
        let users = self
            .client
            .list_users()
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(self.fail("iam:ListUsers"))?;
        Ok(users
            .into_iter()
            .map(|u| UserSummary { name: UserName::new(u.user_name), arn: u.arn, tags: None })
            .collect())
    }

    /// `None` if there is no such user.
    pub async fn get_user(&self, name: &UserName) -> Result<Option<UserSummary>, AwsError> {
        let out = self.client.get_user().user_name(name.as_str()).send().await.map_err(self.fail("iam:GetUser"));
        let Some(user) = found(out)?.and_then(|out| out.user) else { return Ok(None) };
        let tags = user.tags.unwrap_or_default().into_iter().map(|t| (t.key, t.value)).collect();
        Ok(Some(UserSummary { name: UserName::new(user.user_name), arn: user.arn, tags: Some(tags) }))
    }

    pub async fn list_access_keys(&self, user: &UserName) -> Result<Vec<ListedKey>, AwsError> {
        let keys = self
            .client
            .list_access_keys()
            .user_name(user.as_str())
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(self.fail("iam:ListAccessKeys"))?;
        keys.into_iter()
            .map(|k| {
                let missing = |what: &str| AwsError::Unexpected {
                    operation: "iam:ListAccessKeys",
                    detail: format!("a key of {user} has no {what}"),
                };
                Ok(ListedKey {
                    id: AccessKeyId::new(k.access_key_id.ok_or_else(|| missing("id"))?),
                    status: match k.status {
                        Some(StatusType::Active) => KeyStatus::Active,
                        Some(StatusType::Inactive) => KeyStatus::Inactive,
                        _ => return Err(missing("known status")),
                    },
                    created_at: timestamp(k.create_date.as_ref().ok_or_else(|| missing("creation date"))?),
                })
            })
            .collect()
    }

    pub async fn access_key_last_used(&self, key: &AccessKeyId) -> Result<LastUsed, AwsError> {
        let out = self
            .client
            .get_access_key_last_used()
            .access_key_id(key.as_str())
            .send()
            .await
            .map_err(self.fail("iam:GetAccessKeyLastUsed"))?;
        Ok(match out.access_key_last_used() {
            None => LastUsed::default(),
            Some(used) => LastUsed {
                at: used.last_used_date().map(timestamp),
                service: known(used.service_name()),
                region: known(used.region()),
            },
        })
    }

    pub async fn list_user_tags(&self, user: &UserName) -> Result<Vec<(String, String)>, AwsError> {
        let tags = self
            .client
            .list_user_tags()
            .user_name(user.as_str())
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(self.fail("iam:ListUserTags"))?;
        Ok(tags.into_iter().map(|t| (t.key, t.value)).collect())
    }
}

/// Users per `GetAccountAuthorizationDetails` page (IAM's maximum).
pub const USERS_PER_DETAILS_PAGE: usize = 1000;

impl Iam {
    /// Every user's tags and groups, from `GetAccountAuthorizationDetails`
    /// (users only): one call per 1,000 users instead of a `ListUserTags`
    /// and a `ListGroupsForUser` per user.
    pub async fn all_user_details(&self) -> Result<HashMap<UserName, UserDetails>, AwsError> {
        let mut pages = self
            .client
            .get_account_authorization_details()
            .filter(EntityType::User)
            .max_items(USERS_PER_DETAILS_PAGE as i32)
            .into_paginator()
            .send();
        let mut details = HashMap::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(self.fail("iam:GetAccountAuthorizationDetails"))?;
            for user in page.user_detail_list() {
                if let Some(name) = user.user_name() {
                    let tags = user.tags().iter().map(|t| (t.key.clone(), t.value.clone())).collect();
                    let groups = user.group_list().to_vec();
                    details.insert(UserName::new(name), UserDetails { tags, groups });
                }
            }
        }
        Ok(details)
    }

    /// The names of the groups `user` is in.
    pub async fn list_groups_for_user(&self, user: &UserName) -> Result<Vec<String>, AwsError> {
        let groups = self
            .client
            .list_groups_for_user()
            .user_name(user.as_str())
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(self.fail("iam:ListGroupsForUser"))?;
        Ok(groups.into_iter().map(|g| g.group_name).collect())
    }
}

/// A user's tags and groups, as `GetAccountAuthorizationDetails` gives them.
#[derive(Debug, Clone, Default)]
pub struct UserDetails {
    pub tags: Vec<(String, String)>,
    pub groups: Vec<String>,
}

impl Iam {
    /// The policy documents that apply to `user` (for `role-plan`): its
    /// inline policies, the default version of each managed policy
    /// attached to it, and the same for each of its groups. `None` if there
    /// is no such user. Documents come back as IAM gives them
    /// (URL-encoded); `rekey_core::role_plan::allowed` reads them.
    pub async fn user_policy_documents(&self, user: &UserName) -> Result<Option<Vec<PolicyText>>, AwsError> {
        let inline = self.client.list_user_policies().user_name(user.as_str()).into_paginator().items().send().try_collect().await;
        let Some(inline) = found(inline.map_err(self.fail("iam:ListUserPolicies")))? else { return Ok(None) };
        let mut out = Vec::new();
        for name in inline {
            let doc = self.client.get_user_policy().user_name(user.as_str()).policy_name(&name).send().await.map_err(self.fail("iam:GetUserPolicy"))?;
            out.push(PolicyText { source: format!("inline policy {name} of user {user}"), document: doc.policy_document().to_owned() });
        }
        let attached = self.client.list_attached_user_policies().user_name(user.as_str()).into_paginator().items().send().try_collect().await;
        let mut managed: Vec<String> = attached.map_err(self.fail("iam:ListAttachedUserPolicies"))?.into_iter().filter_map(|p| p.policy_arn).collect();
        for group in self.list_groups_for_user(user).await? {
            let names = self.client.list_group_policies().group_name(&group).into_paginator().items().send().try_collect().await;
            for name in names.map_err(self.fail("iam:ListGroupPolicies"))? {
                let doc = self.client.get_group_policy().group_name(&group).policy_name(&name).send().await.map_err(self.fail("iam:GetGroupPolicy"))?;
                out.push(PolicyText { source: format!("inline policy {name} of group {group}"), document: doc.policy_document().to_owned() });
            }
            let attached = self.client.list_attached_group_policies().group_name(&group).into_paginator().items().send().try_collect().await;
            managed.extend(attached.map_err(self.fail("iam:ListAttachedGroupPolicies"))?.into_iter().filter_map(|p| p.policy_arn));
        }
        managed.sort();
        managed.dedup();
        for arn in managed {
            let policy = self.client.get_policy().policy_arn(&arn).send().await.map_err(self.fail("iam:GetPolicy"))?;
            let Some(version) = policy.policy().and_then(|p| p.default_version_id()) else {
                return Err(AwsError::Unexpected { operation: "iam:GetPolicy", detail: format!("{arn} has no default version") });
            };
            let got = self.client.get_policy_version().policy_arn(&arn).version_id(version).send().await.map_err(self.fail("iam:GetPolicyVersion"))?;
            let document = got.policy_version().and_then(|v| v.document()).unwrap_or_default().to_owned();
            out.push(PolicyText { source: format!("managed policy {arn} ({version})"), document });
        }
        Ok(Some(out))
    }
}

/// The request id of a call that changed something, for the audit log.
pub type RequestId = Option<String>;

impl Iam {
    /// Creates a second key for `user`. The secret exists only in the
    /// returned [`Credentials`] (zeroed on drop).
    ///
    /// Never retried by the SDK: an attempt whose reply was lost or late may
    /// still make a key, and a retry would make another (IAM has no
    /// idempotency token for this call). The caller's step fails instead,
    /// and its next try first removes the key such an attempt left.
    pub async fn create_access_key(&self, user: &UserName) -> Result<(Credentials, RequestId), AwsError> {
        let out = self
            .client
            .create_access_key()
            .user_name(user.as_str())
            .customize()
            .config_override(aws_sdk_iam::config::Builder::default().retry_config(aws_config::retry::RetryConfig::disabled()))
            .send()
            .await
            .map_err(self.fail("iam:CreateAccessKey"))?;
        let request_id = out.request_id().map(str::to_owned);
        let key = out.access_key.ok_or(AwsError::Unexpected {
            operation: "iam:CreateAccessKey",
            detail: "no key in the answer".into(),
        })?;
        let creds = Credentials {
            access_key_id: AccessKeyId::new(key.access_key_id),
            secret_access_key: Secret::new(key.secret_access_key),
        };
        Ok((creds, request_id))
    }

    pub async fn set_access_key_status(&self, user: &UserName, key: &AccessKeyId, status: KeyStatus) -> Result<RequestId, AwsError> {
        let status = match status {
            KeyStatus::Active => StatusType::Active,
            KeyStatus::Inactive => StatusType::Inactive,
        };
        let out = self
            .client
            .update_access_key()
            .user_name(user.as_str())
            .access_key_id(key.as_str())
            .status(status)
            .send()
            .await
            .map_err(self.fail("iam:UpdateAccessKey"))?;
        Ok(out.request_id().map(str::to_owned))
    }

    /// Deletes a key; a key that is already gone is not an error, so a step
    /// that crashed after the call can simply run again.
    pub async fn delete_access_key(&self, user: &UserName, key: &AccessKeyId) -> Result<RequestId, AwsError> {
        let out = self.client.delete_access_key().user_name(user.as_str()).access_key_id(key.as_str()).send().await;
        Ok(found(out.map_err(self.fail("iam:DeleteAccessKey")))?.and_then(|out| out.request_id().map(str::to_owned)))
    }
}

fn timestamp(t: &aws_smithy_types::DateTime) -> Timestamp {
    whole_seconds(Timestamp::from_second(t.secs()).unwrap_or(Timestamp::UNIX_EPOCH))
}
