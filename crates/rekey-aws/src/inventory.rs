//! Reads an account's users and keys, from the credential report (a constant
//! number of calls) or the API (calls per user and key), and fills in what
//! the report lacks (key ids, tags) only for the users that need it.

use crate::error::AwsError;
use crate::iam::{parse_credential_report, Iam, UserSummary, USERS_PER_DETAILS_PAGE};
use futures::stream::{self, StreamExt};
use rekey_core::model::match_key_ids;
use rekey_core::{AccessKey, AccountId, User, UserName};
use std::future::Future;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    CredentialReport,
    Api,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::CredentialReport => "credential-report",
            Source::Api => "api",
        }
    }
}

/// Progress of long per-user phases, shown by the CLI on a terminal.
pub trait Progress: Sync {
    fn begin(&self, _what: &str, _total: u64) {}
    fn advance(&self) {}
}

impl Progress for () {}

/// A call about one user failed after retries; the rest of the scan goes on.
#[derive(Debug)]
pub struct UserError {
    pub user: UserName,
    pub error: AwsError,
}

pub struct Fetch<'a> {
    pub iam: &'a Iam,
    /// Requests in flight at once, per account.
    pub concurrency: usize,
    pub progress: &'a dyn Progress,
}

impl Fetch<'_> {
    /// Loads the users named in `only` (every user if empty) with their keys.
    /// A named user that does not exist is an error.
    pub async fn load(&self, source: Source, only: &[UserName]) -> Result<(Vec<User>, Vec<UserError>), AwsError> {
        match source {
            Source::CredentialReport => {
                let csv = self.iam.credential_report_csv().await?;
                let mut users = parse_credential_report(&csv).map_err(|e| AwsError::Unexpected {
                    operation: "iam:GetCredentialReport",
                    detail: e.to_string(),
                })?;
                if !only.is_empty() {
                    if let Some(missing) = only.iter().find(|n| !users.iter().any(|u| &u.name == *n)) {
                        return Err(AwsError::NoSuchUser((*missing).clone()));
                    }
                    users.retain(|u| only.contains(&u.name));
                }
                Ok((users, Vec::new()))
            }
            Source::Api => {
                let summaries = if only.is_empty() {
                    self.iam.list_users().await?
                } else {
                    let mut found = Vec::new();
                    for name in only {
                        found.push(self.iam.get_user(name).await?.ok_or_else(|| AwsError::NoSuchUser(name.clone()))?);
                    }
                    found
                };
                let requests = summaries.iter().enumerate().map(|(i, s)| (i, s.name.clone())).collect();
                let fetched = self.each_user("reading keys", requests, |name| self.keys_with_last_use(name)).await;
                let mut users = Vec::new();
                let mut errors = Vec::new();
                for (i, result) in fetched {
                    match result.and_then(|keys| user_from(&summaries[i], keys)) {
                        Ok(user) => users.push(user),
                        Err(error) => errors.push(UserError { user: summaries[i].name.clone(), error }),
                    }
                }
                users.sort_by(|a, b| a.name.cmp(&b.name));
                Ok((users, errors))
            }
        }
    }

    async fn keys_with_last_use(&self, user: UserName) -> Result<Vec<AccessKey>, AwsError> {
        let mut keys = Vec::new();
        for listed in self.iam.list_access_keys(&user).await? {
            let last_used = self.iam.access_key_last_used(&listed.id).await?;
            keys.push(AccessKey { id: Some(listed.id), status: listed.status, created_at: listed.created_at, last_used });
        }
        Ok(keys)
    }

    /// Lists the keys of the users `wanted` picks, to learn the ids the
    /// credential report leaves out.
    pub async fn fill_key_ids(&self, users: &mut [User], wanted: impl Fn(&User) -> bool) -> Vec<UserError> {
        let requests = pick(users, |u| wanted(u) && u.keys.iter().any(|k| k.id.is_none()));
        let fetched = self.each_user("listing keys", requests, |name| async move {
            self.iam.list_access_keys(&name).await
        });
        apply(users, fetched.await, |user, listed| {
            let listed: Vec<_> = listed.into_iter().map(|k| (k.id, k.created_at)).collect();
            match_key_ids(&mut user.keys, &listed);
        })
    }

    /// Reads the tags of the users `wanted` picks (those whose owner is
    /// needed). When `users` is the whole account and that is cheaper, reads
    /// every user's tags at once (`GetAccountAuthorizationDetails`, one call
    /// per 1,000 users); without that permission, one `ListUserTags` each.
    pub async fn fill_tags(&self, users: &mut [User], whole_account: bool, wanted: impl Fn(&User) -> bool) -> Vec<UserError> {
        let requests = pick(users, |u| wanted(u) && u.tags.is_none());
        if whole_account && requests.len() > users.len().div_ceil(USERS_PER_DETAILS_PAGE) {
            if let Ok(mut all) = self.iam.all_user_tags().await {
                for user in users.iter_mut().filter(|u| u.tags.is_none()) {
                    user.tags = Some(all.remove(&user.name).unwrap_or_default());
                }
                return Vec::new();
            }
        }
        let fetched = self.each_user("reading tags", requests, |name| async move {
            self.iam.list_user_tags(&name).await
        });
        apply(users, fetched.await, |user, tags| user.tags = Some(tags))
    }

    /// Runs `call` for each user, `concurrency` at a time.
    async fn each_user<T, F, Fut>(&self, what: &str, requests: Vec<(usize, UserName)>, call: F) -> Vec<(usize, Result<T, AwsError>)>
    where
        F: Fn(UserName) -> Fut,
        Fut: Future<Output = Result<T, AwsError>>,
    {
        if requests.is_empty() {
            return Vec::new();
        }
        self.progress.begin(what, requests.len() as u64);
        stream::iter(requests)
            .map(|(i, name)| {
                let call = call(name);
                async move {
                    let result = call.await;
                    self.progress.advance();
                    (i, result)
                }
            })
            .buffer_unordered(self.concurrency.max(1))
            .collect()
            .await
    }
}

/// Gives each user what was fetched for it; failures become [`UserError`]s.
fn apply<T>(users: &mut [User], fetched: Vec<(usize, Result<T, AwsError>)>, set: impl Fn(&mut User, T)) -> Vec<UserError> {
    let mut errors = Vec::new();
    for (i, result) in fetched {
        match result {
            Ok(value) => set(&mut users[i], value),
            Err(error) => errors.push(UserError { user: users[i].name.clone(), error }),
        }
    }
    errors
}

fn pick(users: &[User], wanted: impl Fn(&User) -> bool) -> Vec<(usize, UserName)> {
    users.iter().enumerate().filter(|(_, u)| wanted(u)).map(|(i, u)| (i, u.name.clone())).collect()
}

fn user_from(summary: &UserSummary, keys: Vec<AccessKey>) -> Result<User, AwsError> {
    let account_id = AccountId::from_arn(&summary.arn).ok_or_else(|| AwsError::Unexpected {
        operation: "iam:ListUsers",
        detail: format!("user {} has a malformed ARN {:?}", summary.name, summary.arn),
    })?;
    Ok(User { account_id, name: summary.name.clone(), arn: summary.arn.clone(), tags: summary.tags.clone(), keys })
}

