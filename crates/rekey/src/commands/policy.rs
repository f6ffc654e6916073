//! `rekey policy`: the least-privilege IAM policy for what rekey.toml
//! configures: scanning always; rotation of each `[[target]]` user, scoped
//! to that user, with the sinks it writes to; Security Hub unless it is off;
//! SNS for the configured notice topic; with `[org] role_name`, listing the
//! organization and assuming that role in other accounts.

use crate::settings::Settings;
use rekey_core::target::Sink;
use serde_json::{json, Value};

const SCAN: &[&str] = &[
    "iam:GenerateCredentialReport",
    "iam:GetCredentialReport",
    "iam:ListUsers",
    "iam:GetUser",
    "iam:GetAccountAuthorizationDetails",
    "iam:ListAccessKeys",
    "iam:GetAccessKeyLastUsed",
    "iam:ListUserTags",
];

const ROTATE: &[&str] = &["iam:CreateAccessKey", "iam:UpdateAccessKey", "iam:DeleteAccessKey"];

const SECRETS_MANAGER: &[&str] = &[
    "secretsmanager:DescribeSecret",
    "secretsmanager:GetSecretValue",
    "secretsmanager:PutSecretValue",
    "secretsmanager:UpdateSecretVersionStage",
];

const SSM: &[&str] = &["ssm:GetParameter", "ssm:PutParameter", "ssm:DeleteParameter"];

/// `findings`, and the notes and statuses of `suppress`, `unsuppress`,
/// `notify` and rotations. Security Hub's finding actions act on the
/// account's hub, so `*` is as narrow as they go.
const SECURITY_HUB: &[&str] = &["securityhub:GetFindings", "securityhub:BatchUpdateFindings"];

/// `scan --import-findings` only: drop it where the IAM.3 control runs.
const SECURITY_HUB_IMPORT: &[&str] = &["securityhub:BatchImportFindings"];

/// The state table: rotations, leases and audit events (a transaction is
/// authorized by the actions of its items).
pub const STATE: &[&str] = &["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem", "dynamodb:ConditionCheckItem", "dynamodb:Query"];

/// Creating the table and copying state into it.
pub const STATE_SETUP: &[&str] = &[
    "dynamodb:CreateTable",
    "dynamodb:DescribeTable",
    "dynamodb:DescribeTimeToLive",
    "dynamodb:UpdateTimeToLive",
    "dynamodb:UpdateContinuousBackups",
    "dynamodb:BatchWriteItem",
    "dynamodb:Scan",
];

pub fn run(settings: &Settings) -> anyhow::Result<u8> {
    outln!("{}", serde_json::to_string_pretty(&policy(settings))?)?;
    Ok(0)
}

fn statement(sid: &str, actions: &[&str], resources: Vec<String>) -> Value {
    json!({"Sid": sid, "Effect": "Allow", "Action": actions, "Resource": resources})
}

pub fn policy(settings: &Settings) -> Value {
    let mut statements = vec![statement("RekeyScan", SCAN, vec!["*".into()])];
    let targets = &settings.file.targets;
    if !targets.is_empty() {
        // A user's ARN carries its path; cover both forms of the name.
        let users = targets
            .iter()
            .flat_map(|t| {
                let account = t.account.as_ref().map_or("*".to_owned(), ToString::to_string);
                [format!("arn:aws:iam::{account}:user/{}", t.user), format!("arn:aws:iam::{account}:user/*/{}", t.user)]
            })
            .collect();
        statements.push(statement("RekeyRotateKeys", ROTATE, users));
    }
    let account_of = |t: &rekey_core::target::Target| t.account.as_ref().map_or("*".to_owned(), ToString::to_string);
    let mut secrets = Vec::new();
    let mut parameters = Vec::new();
    for target in targets {
        for sink in &target.deliver {
            match sink {
                // Secrets Manager appends a random suffix to secret ARNs.
                Sink::Secretsmanager { secret_id, .. } if secret_id.starts_with("arn:") => secrets.push(secret_id.clone()),
                Sink::Secretsmanager { secret_id, .. } => {
                    secrets.push(format!("arn:aws:secretsmanager:*:{}:secret:{secret_id}-*", account_of(target)))
                }
                Sink::Ssm(names) => {
                    for n in names.names() {
                        parameters.push(format!("arn:aws:ssm:*:{}:parameter/{}", account_of(target), n.trim_start_matches('/')));
                    }
                }
                _ => {}
            }
        }
    }
    if !secrets.is_empty() {
        statements.push(statement("RekeyDeliverSecretsManager", SECRETS_MANAGER, secrets));
    }
    if !parameters.is_empty() {
        statements.push(statement("RekeyDeliverParameters", SSM, parameters));
    }
    if settings.file.securityhub.enabled {
        statements.push(statement("RekeySecurityHubFindings", SECURITY_HUB, vec!["*".into()]));
        statements.push(statement("RekeyImportFindings", SECURITY_HUB_IMPORT, vec!["arn:aws:securityhub:*:*:product/*/default".into()]));
    }
    if let Some(role) = &settings.file.org.role_name {
        // The caller's side of reaching other accounts; each member account's
        // role needs this policy too (less the Organizations action).
        statements.push(statement("RekeyListOrganization", &["organizations:ListAccounts"], vec!["*".into()]));
        statements.push(statement("RekeyAssumeMemberRoles", &["sts:AssumeRole"], vec![format!("arn:aws:iam::*:role/{role}")]));
    }
    if let rekey_store::Location::Dynamo { table } = &settings.state {
        let resources = vec![format!("arn:aws:dynamodb:*:*:table/{table}"), format!("arn:aws:dynamodb:*:*:table/{table}/index/*")];
        statements.push(statement("RekeyState", STATE, resources.clone()));
        // Only for `rekey state init` and `rekey state migrate`: a scheduled
        // runner's role can leave this statement out.
        statements.push(statement("RekeyStateSetup", STATE_SETUP, resources));
    }
    if let Some(topic) = &settings.file.notify.sns_topic_arn {
        statements.push(statement("RekeyNotifyOwners", &["sns:Publish"], vec![topic.clone()]));
    }
    json!({"Version": "2012-10-17", "Statement": statements})
}
