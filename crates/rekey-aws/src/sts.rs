//! STS calls signed with a given key, to prove the key works and names the
//! right user.

use crate::error::{classify, AwsError};
use crate::Clients;
use rekey_core::{AccountId, Credentials};

/// The account the caller's own credentials act in.
pub async fn caller_account(clients: &Clients) -> Result<AccountId, AwsError> {
    let out = clients.sts(None).get_caller_identity().send().await.map_err(|e| classify("sts:GetCallerIdentity", &clients.endpoint(), e))?;
    out.account.map(AccountId::new).ok_or(AwsError::Unexpected { operation: "sts:GetCallerIdentity", detail: "no account in the answer".into() })
}

/// `GetCallerIdentity` signed with `creds`: the ARN it names.
pub async fn caller_arn(clients: &Clients, creds: &Credentials) -> Result<String, AwsError> {
    let provider = aws_credential_types::Credentials::new(
        creds.access_key_id.as_str(),
        creds.secret_access_key.expose(),
        None,
        None,
        "rekey-new-key",
    );
    let out = clients
        .sts(Some(provider))
        .get_caller_identity()
        .send()
        .await
        .map_err(|e| classify("sts:GetCallerIdentity", &clients.endpoint(), e))?;
    out.arn.ok_or(AwsError::Unexpected { operation: "sts:GetCallerIdentity", detail: "no ARN in the answer".into() })
}
