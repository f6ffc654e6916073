//! AWS Organizations: the accounts of the caller's organization, for
//! `rekey scan --org`.

use crate::error::{classify, AwsError};
use crate::Clients;
use aws_sdk_organizations::types::AccountStatus;
use rekey_core::AccountId;

/// An account of the organization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrgAccount {
    pub id: AccountId,
    pub name: Option<String>,
    /// Suspended and closing accounts cannot be scanned.
    pub active: bool,
}

/// Every account of the organization (`ListAccounts`, every page).
pub async fn list_accounts(clients: &Clients) -> Result<Vec<OrgAccount>, AwsError> {
    let config = crate::client::common_layers!(aws_sdk_organizations::config::Builder::from(clients.sdk_config()), clients).build();
    let client = aws_sdk_organizations::Client::from_conf(config);
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
