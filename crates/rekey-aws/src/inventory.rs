//! Reads an account's users and keys, from the credential report (a constant
//! number of calls) or the API (calls per user and key), and fills in what
//! the report lacks (key ids, tags) only for the users that need it.

use crate::error::{found, AwsError};
use crate::credential_report::parse_credential_report;
use crate::iam::{Iam, UserDetails, UserSummary, USERS_PER_DETAILS_PAGE};
use std::collections::HashMap;
use futures::stream::{self, StreamExt};
use jiff::Timestamp;
use rekey_core::model::refresh_keys;
use rekey_core::{AccessKey, AccessKeyId, AccountId, LastUsed, User, UserName};
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
    fn finish(&self) {}
}

impl Progress for () {}

/// A call about one user failed after retries; the rest of the scan goes on.
#[derive(Debug)]
pub struct UserError {
    pub user: UserName,
    pub error: AwsError,
}

/// Something the scan worked around; its results are complete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    pub user: Option<UserName>,
    pub message: String,
}

/// An account's users and keys, and how they were read.
#[derive(Debug)]
pub struct Inventory {
    /// Where the keys came from (the API when the report could not be read).
    pub source: Source,
    /// When the credential report was taken; `None` for the API.
    pub report_generated_at: Option<Timestamp>,
    /// Set when the root user has an active access key (IAM.4); only the
    /// credential report shows this.
    pub root_with_active_key: Option<AccountId>,
    pub users: Vec<User>,
    pub errors: Vec<UserError>,
    pub warnings: Vec<Warning>,
    /// No permission to read tags: every owner is unknown.
    pub owners_unknown: bool,
}

impl Inventory {
    /// Users already known (named by a command, not read from IAM), for
    /// the fills ([`Fetch::fill_tags`], [`Fetch::fill_groups`]).
    pub fn of(users: Vec<User>) -> Inventory {
        Inventory { users, ..Inventory::new(Source::Api) }
    }

    fn new(source: Source) -> Inventory {
        Inventory {
            source,
            report_generated_at: None,
            root_with_active_key: None,
            users: Vec::new(),
            errors: Vec::new(),
            warnings: Vec::new(),
            owners_unknown: false,
        }
    }

    fn warn(&mut self, user: Option<&UserName>, message: String) {
        self.warnings.push(Warning { user: user.cloned(), message });
    }
}

pub struct Fetch<'a> {
    pub iam: &'a Iam,
    /// Requests in flight at once, per account.
    pub concurrency: usize,
    /// Requests in flight at once across the accounts scanned together,
    /// if they share a bound.
    pub in_flight: Option<&'a tokio::sync::Semaphore>,
    pub progress: &'a dyn Progress,
}

impl Fetch<'_> {
    /// Loads the users named in `only` (every user if empty) with their keys.
    /// A named user that does not exist is an error.
    pub async fn load(&self, source: Source, only: &[UserName]) -> Result<Inventory, AwsError> {
        match source {
            Source::CredentialReport => self.read_report(only).await,
            Source::Api => self.read_api(only).await,
        }
    }

    async fn read_api(&self, only: &[UserName]) -> Result<Inventory, AwsError> {
        let mut inventory = Inventory::new(Source::Api);
        let summaries = if only.is_empty() {
            self.iam.list_users().await?
        } else {
            let (found, missing) = self.get_users(only).await?;
            if let Some(name) = missing.into_iter().next() {
                return Err(AwsError::NoSuchUser(name));
            }
            found
        };
        self.read_through_api(&mut inventory, &summaries).await;
        Ok(inventory)
    }

    /// The report is an index: users whose keys may need action are listed
    /// again afterwards ([`Fetch::refresh_keys`]). Users the report cannot
    /// describe (odd rows, or users named in `only` that it lacks) are read
    /// through the API; one odd row never fails the account.
    async fn read_report(&self, only: &[UserName]) -> Result<Inventory, AwsError> {
        let (csv, generated_at) = self.iam.credential_report_csv().await?;
        let report = match parse_credential_report(&csv, generated_at) {
            Ok(report) if report.unreadable.iter().all(|row| row.user.is_some()) => report,
            Ok(report) => {
                let lines: Vec<String> = report.unreadable.iter().filter(|r| r.user.is_none()).map(|r| r.line.to_string()).collect();
                let why = format!("lines {} of the credential report name no user rekey can read", lines.join(", "));
                return self.read_api_instead(only, why, report.root_with_active_key).await;
            }
            Err(e) => return self.read_api_instead(only, e.to_string(), None).await,
        };
        let mut inventory = Inventory::new(Source::CredentialReport);
        inventory.report_generated_at = generated_at;
        inventory.root_with_active_key = report.root_with_active_key;
        inventory.users = report.users;
        let wanted = |name: &UserName| only.is_empty() || only.contains(name);
        inventory.users.retain(|u| wanted(&u.name));

        let mut odd = Vec::new();
        for row in report.unreadable {
            // invariant: rows without a user sent the report to the API above
            let name = row.user.expect("rows without a user were handled above");
            if wanted(&name) {
                let message = format!("line {} of the credential report could not be read ({}); read through the API", row.line, row.problem);
                inventory.warn(Some(&name), message);
                odd.push(name);
            }
        }
        // Named users the report lacks (created since it was taken) must exist now.
        let unreported: Vec<UserName> = only
            .iter()
            .filter(|n| !inventory.users.iter().any(|u| &u.name == *n) && !odd.contains(n))
            .cloned()
            .collect();
        let (found, missing) = self.get_users(&unreported).await?;
        if let Some(name) = missing.into_iter().next() {
            return Err(AwsError::NoSuchUser(name));
        }
        let (mut by_api, gone) = self.get_users(&odd).await?;
        for name in gone {
            inventory.warn(Some(&name), "deleted since the credential report was taken; not listed".into());
        }
        by_api.extend(found);
        self.read_through_api(&mut inventory, &by_api).await;
        Ok(inventory)
    }

    async fn read_api_instead(&self, only: &[UserName], why: String, root: Option<AccountId>) -> Result<Inventory, AwsError> {
        let mut inventory = self.read_api(only).await?;
        inventory.root_with_active_key = root;
        inventory.warn(None, format!("{why}; every user was read through the API instead"));
        Ok(inventory)
    }

    /// `GetUser` for each name: the users found, and the names with no user.
    async fn get_users(&self, names: &[UserName]) -> Result<(Vec<UserSummary>, Vec<UserName>), AwsError> {
        let (mut found, mut missing) = (Vec::new(), Vec::new());
        for name in names {
            match self.iam.get_user(name).await? {
                Some(user) => found.push(user),
                None => missing.push(name.clone()),
            }
        }
        Ok((found, missing))
    }

    /// Each user's keys and their last use, by API; a user whose keys cannot
    /// be read is an error and is left out.
    async fn read_through_api(&self, inventory: &mut Inventory, summaries: &[UserSummary]) {
        let requests = summaries.iter().enumerate().map(|(i, s)| (i, s.name.clone())).collect();
        let fetched = self.each_user("reading keys", requests, |name| self.keys_with_last_use(name)).await;
        for (i, result) in fetched {
            match result.and_then(|keys| user_from(&summaries[i], keys)) {
                Ok(user) => inventory.users.push(user),
                Err(error) => inventory.errors.push(UserError { user: summaries[i].name.clone(), error }),
            }
        }
        inventory.users.sort_by(|a, b| a.name.cmp(&b.name));
    }

    async fn keys_with_last_use(&self, user: UserName) -> Result<Vec<AccessKey>, AwsError> {
        let mut keys = Vec::new();
        for listed in self.iam.list_access_keys(&user).await? {
            let last_used = self.iam.access_key_last_used(&listed.id).await?;
            keys.push(AccessKey { id: Some(listed.id), status: listed.status, created_at: listed.created_at, last_used });
        }
        Ok(keys)
    }

    /// Lists now the keys of report users with a key `matters` picks
    /// (whatever its status in the report: it may have changed since). The
    /// listing decides which keys exist, their ids, status and creation
    /// time; the report adds their last use. A user deleted since the report
    /// is dropped with a warning.
    pub async fn refresh_keys(&self, inventory: &mut Inventory, matters: impl Fn(&AccessKey) -> bool) {
        let requests = pick(&inventory.users, |u| u.keys.iter().any(|k| k.id.is_none() && matters(k)));
        let fetched = self
            .each_user("listing keys", requests, |name| async move { found(self.iam.list_access_keys(&name).await) })
            .await;
        let mut deleted = Vec::new();
        for (i, result) in fetched {
            let user = &mut inventory.users[i];
            match result {
                Ok(Some(listed)) => {
                    let listed = listed
                        .into_iter()
                        .map(|k| AccessKey { id: Some(k.id), status: k.status, created_at: k.created_at, last_used: LastUsed::default() })
                        .collect();
                    let refreshed = refresh_keys(&user.keys, listed);
                    user.keys = refreshed.keys;
                    if !refreshed.indistinguishable.is_empty() {
                        let ids: Vec<&str> = refreshed.indistinguishable.iter().map(AccessKeyId::as_str).collect();
                        let message = format!(
                            "keys {} were created in the same second with the same status, and the credential report cannot tell their last uses apart; last use shown as unknown",
                            ids.join(" and ")
                        );
                        let name = user.name.clone();
                        inventory.warn(Some(&name), message);
                    }
                }
                Ok(None) => deleted.push(i),
                Err(error) => inventory.errors.push(UserError { user: user.name.clone(), error }),
            }
        }
        deleted.sort_unstable();
        for i in deleted.into_iter().rev() {
            let user = inventory.users.remove(i);
            inventory.warn(Some(&user.name), "deleted since the credential report was taken; not listed".into());
        }
    }

    /// Reads the tags of the users `wanted` picks (those whose owner is
    /// needed). When `whole_account` and that is cheaper, reads every
    /// user's tags at once (`GetAccountAuthorizationDetails`, one call per
    /// 1,000 users); otherwise, or without that permission, one
    /// `ListUserTags` each. Without permission for either, owners stay
    /// unknown with one warning: the results are complete without them.
    pub async fn fill_tags(&self, inventory: &mut Inventory, whole_account: bool, wanted: impl Fn(&User) -> bool) {
        let users = &mut inventory.users;
        let mut requests = pick(users, |u| wanted(u) && u.tags.is_none());
        if requests.is_empty() {
            return;
        }
        if whole_account && requests.len() > users.len().div_ceil(USERS_PER_DETAILS_PAGE) && self.read_all_details(users).await {
            return;
        }
        // Without the permission every call fails alike: ask once first.
        let (first, name) = requests.remove(0);
        let mut fetched = vec![(first, self.iam.list_user_tags(&name).await)];
        if let Some((_, Err(denied @ AwsError::AccessDenied { .. }))) = fetched.first() {
            let message = format!("owners are unknown (null): the user tags cannot be read ({denied})");
            inventory.owners_unknown = true;
            inventory.warn(None, message);
            return;
        }
        fetched.extend(self.each_user("reading tags", requests, |name| async move { self.iam.list_user_tags(&name).await }).await);
        let errors = apply(users, fetched, |user, tags| user.tags = Some(tags));
        inventory.errors.extend(errors);
    }

    /// Every user's tags and groups at once (`GetAccountAuthorizationDetails`);
    /// false, changing nothing, without that permission.
    async fn read_all_details(&self, users: &mut [User]) -> bool {
        let Ok(all) = self.iam.all_user_details().await else { return false };
        apply_details(users, all);
        true
    }

    /// Reads the groups of the users `wanted` picks (for `[[exempt]]` rules
    /// by group): with every user's tags when `whole_account` and that is
    /// no dearer (`GetAccountAuthorizationDetails`), else, or without that
    /// permission, one `ListGroupsForUser` each. Returns the error that
    /// kept every group from being read (access denied), if any; a user
    /// whose groups could not be read for another reason is an error.
    pub async fn fill_groups(&self, inventory: &mut Inventory, whole_account: bool, wanted: impl Fn(&User) -> bool) -> Option<AwsError> {
        let users = &mut inventory.users;
        let mut requests = pick(users, |u| wanted(u) && u.groups.is_none());
        if requests.is_empty() {
            return None;
        }
        if whole_account && requests.len() >= users.len().div_ceil(USERS_PER_DETAILS_PAGE) && self.read_all_details(users).await {
            return None;
        }
        // Without the permission every call fails alike: ask once first.
        let (first, name) = requests.remove(0);
        let mut fetched = vec![(first, self.iam.list_groups_for_user(&name).await)];
        if let Some((_, Err(denied @ AwsError::AccessDenied { .. }))) = fetched.pop_if(|(_, r)| matches!(r, Err(AwsError::AccessDenied { .. }))) {
            return Some(denied);
        }
        fetched.extend(self.each_user("reading groups", requests, |name| async move { self.iam.list_groups_for_user(&name).await }).await);
        let errors = apply(users, fetched, |user, groups| user.groups = Some(groups));
        inventory.errors.extend(errors);
        None
    }

    /// Runs `call` for each user, `concurrency` at a time (and within
    /// `in_flight`: a call starts only with a permit).
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
                    // Never closed: an error would only mean no bound.
                    let _permit = match self.in_flight {
                        Some(bound) => bound.acquire().await.ok(),
                        None => None,
                    };
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

/// Every user's tags and groups as `GetAccountAuthorizationDetails` gave
/// them ([`Iam::all_user_details`]); a user it did not name has none.
pub fn apply_details(users: &mut [User], mut all: HashMap<UserName, UserDetails>) {
    for user in users.iter_mut() {
        let details = all.remove(&user.name).unwrap_or_default();
        user.tags.get_or_insert(details.tags);
        user.groups = Some(details.groups);
    }
}

fn pick(users: &[User], wanted: impl Fn(&User) -> bool) -> Vec<(usize, UserName)> {
    users.iter().enumerate().filter(|(_, u)| wanted(u)).map(|(i, u)| (i, u.name.clone())).collect()
}

fn user_from(summary: &UserSummary, keys: Vec<AccessKey>) -> Result<User, AwsError> {
    let account_id = AccountId::from_arn(&summary.arn).ok_or_else(|| AwsError::Unexpected {
        operation: "iam:ListUsers",
        detail: format!("user {} has a malformed ARN {:?}", summary.name, summary.arn),
    })?;
    Ok(User { account_id, name: summary.name.clone(), arn: summary.arn.clone(), tags: summary.tags.clone(), groups: None, keys })
}

