//! AWS Organizations: the accounts of the caller's organization, for
//! `rekey scan --org`.

use crate::error::{classify, AwsError};
use crate::Clients;
use aws_sdk_organizations::types::{AccountStatus, ParentType};
use rekey_core::AccountId;

/// An account of the organization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrgAccount {
    pub id: AccountId,
    pub name: Option<String>,
    /// Suspended and closing accounts cannot be scanned.
    pub active: bool,
}

fn client(clients: &Clients) -> aws_sdk_organizations::Client {
    let config = crate::client::common_layers!(aws_sdk_organizations::config::Builder::from(clients.sdk_config()), clients).build();
    aws_sdk_organizations::Client::from_conf(config)
}

/// Every account of the organization (`ListAccounts`, every page).
pub async fn list_accounts(clients: &Clients) -> Result<Vec<OrgAccount>, AwsError> {
    let client = client(clients);
    let mut accounts = Vec::new();
    let mut token = None;
    loop {
        let page = client
            .list_accounts()
            .set_next_token(token)
            .send()
            .await
            .map_err(|e| classify("organizations:ListAccounts", &clients.endpoint(), e))?;
        for a in page.accounts() {
            let Some(id) = a.id() else { continue };
            accounts.push(OrgAccount {
                id: AccountId::new(id),
                name: a.name().map(str::to_owned),
                active: a.status() == Some(&AccountStatus::Active),
            });
        }
        token = page.next_token().filter(|t| !t.is_empty()).map(str::to_owned);
        if token.is_none() {
            return Ok(accounts);
        }
    }
}

/// The organizational units `account` is in, nearest first, then the root:
/// one `ListParents` per level (an account has one parent). Asked with the
/// organization's management (or delegated administrator) credentials.
pub async fn parents_of(clients: &Clients, account: &AccountId) -> Result<Vec<String>, AwsError> {
    let client = client(clients);
    let mut parents = Vec::new();
    let mut child = account.to_string();
    // Organizations nests at most five OUs under a root: a deeper chain is a loop.
    for _ in 0..=MAX_OU_DEPTH {
        let page = client.list_parents().child_id(&child).send().await.map_err(|e| classify("organizations:ListParents", &clients.endpoint(), e))?;
        let Some(parent) = page.parents().first() else { return Ok(parents) };
        let Some(id) = parent.id() else { return Ok(parents) };
        parents.push(id.to_owned());
        if parent.r#type() == Some(&ParentType::Root) {
            return Ok(parents);
        }
        child = id.to_owned();
    }
    Err(AwsError::Unexpected { operation: "organizations:ListParents", detail: format!("account {account} is more than {MAX_OU_DEPTH} organizational units deep") })
}

/// Organizations' limit on nested OUs.
const MAX_OU_DEPTH: usize = 5;
