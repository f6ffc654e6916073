//! Reaching accounts: the caller's own with its credentials, any other by
//! assuming `[org] role_name` there; never another account with the
//! caller's credentials. The one place for that rule, used by every command
//! that takes `--account`, `--accounts` or `--org`, and by `rekey run` for
//! rotations and finding updates of several accounts.

use crate::settings::Settings;
use anyhow::{bail, Context};
use rekey_aws::{Clients, RoleToAssume};
use rekey_core::model::partition_of;
use rekey_core::AccountId;
use std::collections::HashMap;
use tokio::sync::{Mutex, OnceCell};

pub struct Accounts<'a> {
    clients: &'a Clients,
    /// Asked once, when first needed: a `rekey run` with nothing due makes no call.
    caller: OnceCell<AccountId>,
    role_name: Option<String>,
    external_id: Option<String>,
    session_name: String,
    /// Assumed once per account, and again when the session is old: a
    /// `rekey run --interval` or a long rotation outlives an hour's session.
    assumed: Mutex<HashMap<AccountId, (Clients, std::time::Instant)>>,
}

impl<'a> Accounts<'a> {
    /// `role_name` overrides `[org] role_name`.
    pub fn new(clients: &'a Clients, settings: &Settings, role_name: Option<&str>) -> Accounts<'a> {
        let org = &settings.file.org;
        Accounts {
            clients,
            caller: OnceCell::new(),
            role_name: role_name.map(str::to_owned).or_else(|| org.role_name.clone()),
            external_id: org.external_id.clone(),
            session_name: org.session_name.clone().unwrap_or_else(|| "rekey".to_owned()),
            assumed: Mutex::new(HashMap::new()),
        }
    }

    /// The caller's own clients (for settings all accounts share, such as the region).
    pub fn own_clients(&self) -> &Clients {
        self.clients
    }

    /// Records the caller's account where a command already asked STS with
    /// the caller's credentials, so it is not asked twice.
    pub fn knowing_caller(self, account: &AccountId) -> Self {
        let _ = self.caller.set(account.clone());
        self
    }

    /// The account of the caller's credentials (STS; no permission needed).
    pub async fn caller(&self) -> anyhow::Result<&AccountId> {
        Ok(self.caller.get_or_try_init(|| rekey_aws::sts::caller_account(self.clients)).await?)
    }

    /// Refuses, before any change, `accounts` that include another account
    /// when no role is configured to reach it.
    pub async fn check_reachable<'b>(&self, accounts: impl IntoIterator<Item = &'b AccountId>) -> anyhow::Result<()> {
        let caller = self.caller().await?;
        let foreign: Vec<String> = accounts.into_iter().filter(|a| *a != caller).map(ToString::to_string).collect();
        if !foreign.is_empty() && self.role_name.is_none() {
            bail!(
                "account {} is not the account of the credentials in use ({caller}), and no role is configured to reach it: set [org] role_name in rekey.toml (or --role-name); rekey never acts in another account with these credentials",
                foreign.join(", ")
            );
        }
        Ok(())
    }

    /// `--account`, else the caller's, with clients acting there.
    pub async fn account_and_clients(&self, wanted: Option<&AccountId>) -> anyhow::Result<(AccountId, Clients)> {
        let account = match wanted {
            Some(account) => account.clone(),
            None => self.caller().await?.clone(),
        };
        let clients = self.clients_for(&account).await?;
        Ok((account, clients))
    }

    /// Clients acting in `account`: the caller's own, or an assumed role.
    pub async fn clients_for(&self, account: &AccountId) -> anyhow::Result<Clients> {
        if account == self.caller().await? {
            return Ok(self.clients.clone());
        }
        self.check_reachable([account]).await?;
        // An assumed role's session lasts an hour; renew with a margin wider than any one step.
        const FRESH: std::time::Duration = std::time::Duration::from_secs(40 * 60);
        if let Some((clients, _)) = self.assumed.lock().await.get(account).filter(|(_, at)| at.elapsed() < FRESH) {
            return Ok(clients.clone());
        }
        // Not under the lock: accounts scanned at once assume their roles at once.
        let clients = self.clients.assume(&self.role(account)).await.context(format!("cannot reach account {account}"))?;
        self.assumed.lock().await.insert(account.clone(), (clients.clone(), std::time::Instant::now()));
        Ok(clients)
    }

    fn role(&self, account: &AccountId) -> RoleToAssume {
        let partition = partition_of(&self.clients.region());
        let name = self.role_name.as_deref().unwrap_or_default();
        RoleToAssume {
            arn: format!("arn:{partition}:iam::{account}:role/{name}"),
            session_name: self.session_name.clone(),
            external_id: self.external_id.clone(),
        }
    }
}
