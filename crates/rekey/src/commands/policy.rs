//! `rekey policy`: the least-privilege IAM policy for what rekey.toml
//! configures: scanning, consumers and role plans always; rotation of each `[[target]]` user, scoped
//! to that user, with the sinks it writes to; Security Hub unless it is off;
//! SNS for the configured notice topic; with `[org] role_name`, listing the
//! organization and assuming that role in other accounts.
//!
//! Every ARN is in the partition of the region rekey's clients sign for
//! (`aws-cn` in `cn-north-1`, `aws-us-gov` in `us-gov-west-1`).

use crate::settings::{ConfigFile, Settings};
use rekey_core::target::Target;
use rekey_engine::sinks::{self, Grant, PolicyScope};
use rekey_store::Location;
use serde_json::{json, Value};

/// Owners come from `ListUserTags`, one call per user. Not printed:
/// `iam:GetAccountAuthorizationDetails`, which rekey tries first (one call
/// per 1,000 users) but which also reveals every policy in the account;
/// add it by hand where scans of large accounts are slow.
const SCAN: &[&str] = &[
    "iam:GenerateCredentialReport",
    "iam:GetCredentialReport",
    "iam:ListUsers",
    "iam:GetUser",
    "iam:ListAccessKeys",
    "iam:GetAccessKeyLastUsed",
    "iam:ListUserTags",
];

/// `consumers`, `--consumers` and the drain's evidence: CloudTrail's event
/// history has no resource to scope to.
const CONSUMERS: &[&str] = &["cloudtrail:LookupEvents"];

/// `role-plan`: the user's policies, its groups' and the managed ones
/// they attach, which bound what event history cannot show (a denial is a
/// warning there, not a failure).
const ROLE_PLAN: &[&str] = &[
    "iam:ListUserPolicies",
    "iam:GetUserPolicy",
    "iam:ListAttachedUserPolicies",
    "iam:ListGroupsForUser",
    "iam:ListGroupPolicies",
    "iam:GetGroupPolicy",
    "iam:ListAttachedGroupPolicies",
    "iam:GetPolicy",
    "iam:GetPolicyVersion",
];

const ROTATE: &[&str] = &["iam:CreateAccessKey", "iam:UpdateAccessKey", "iam:DeleteAccessKey"];

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

pub async fn run(settings: &Settings) -> anyhow::Result<u8> {
    let region = rekey_aws::Clients::new(&settings.aws).await.region();
    let partition = rekey_core::model::partition_of(&region);
    outln!("{}", serde_json::to_string_pretty(&policy(&settings.file, &settings.state, partition))?)?;
    Ok(0)
}

fn statement(sid: &str, actions: &[&str], resources: Vec<String>) -> Value {
    json!({"Sid": sid, "Effect": "Allow", "Action": actions, "Resource": resources})
}

/// The target's account, or any.
fn account_of(target: &Target) -> String {
    target.account.as_ref().map_or("*".to_owned(), ToString::to_string)
}

/// What each target's sinks need, as each sink says: one statement per
/// `Sid`, its resources in the order of rekey.toml. The statements are in
/// the order of their actions (by service), so the policy does not depend
/// on the order of sinks in rekey.toml.
fn sink_statements(targets: &[Target], partition: &str) -> Vec<Value> {
    let mut grants: Vec<Grant> = Vec::new();
    for target in targets {
        let account = account_of(target);
        let scope = PolicyScope { partition, account: &account };
        for grant in target.deliver.iter().flat_map(|sink| sinks::of(sink).permissions(&scope)) {
            match grants.iter_mut().find(|g| g.sid == grant.sid) {
                Some(same) => same.resources.extend(grant.resources),
                None => grants.push(grant),
            }
        }
    }
    grants.sort_by_key(|g| g.actions);
    grants.into_iter().map(|g| statement(g.sid, g.actions, g.resources)).collect()
}

/// What `[[exempt]]` rules read (scans, `rotate`, `run`): a user's groups
/// for `group`, its account's parents for `ous` (asked of the
/// organization by the caller, like `ListAccounts`); tags are read for
/// owners already, and `accounts` needs no call.
fn exempt_actions(rules: &rekey_core::exempt::ExemptRules) -> Vec<&'static str> {
    use rekey_core::exempt::Selector;
    let mut actions = Vec::new();
    if rules.0.iter().any(|r| matches!(r.selector, Selector::Group(_))) {
        actions.push("iam:ListGroupsForUser");
    }
    if rules.0.iter().any(|r| matches!(r.selector, Selector::Ous(_))) {
        actions.push("organizations:ListParents");
    }
    actions
}

pub fn policy(file: &ConfigFile, state: &Location, partition: &str) -> Value {
    let mut statements = vec![
        statement("RekeyScan", SCAN, vec!["*".into()]),
        statement("RekeyConsumers", CONSUMERS, vec!["*".into()]),
    ];
    let targets = &file.targets;
    if !targets.is_empty() {
        // A user's ARN carries its path; cover both forms of the name.
        let users = targets
            .iter()
            .flat_map(|t| {
                let account = account_of(t);
                [format!("arn:{partition}:iam::{account}:user/{}", t.user), format!("arn:{partition}:iam::{account}:user/*/{}", t.user)]
            })
            .collect();
        statements.push(statement("RekeyRotateKeys", ROTATE, users));
    }
    statements.extend(sink_statements(targets, partition));
    if file.securityhub.enabled {
        statements.push(statement("RekeySecurityHubFindings", SECURITY_HUB, vec!["*".into()]));
        statements.push(statement("RekeyImportFindings", SECURITY_HUB_IMPORT, vec![format!("arn:{partition}:securityhub:*:*:product/*/default")]));
    }
    if let Some(role) = &file.org.role_name {
        // The caller's side of reaching other accounts; each member account's
        // role needs this policy too (less the Organizations action).
        statements.push(statement("RekeyListOrganization", &["organizations:ListAccounts"], vec!["*".into()]));
        statements.push(statement("RekeyAssumeMemberRoles", &["sts:AssumeRole"], vec![format!("arn:{partition}:iam::*:role/{role}")]));
    }
    if let Location::Dynamo { table } = state {
        let table = format!("arn:{partition}:dynamodb:*:*:table/{table}");
        let resources = vec![table.clone(), format!("{table}/index/*")];
        statements.push(statement("RekeyState", STATE, resources.clone()));
        // Only for `rekey state init` and `rekey state migrate`: a scheduled
        // runner's role can leave this statement out.
        statements.push(statement("RekeyStateSetup", STATE_SETUP, resources));
    }
    if let Some(topic) = &file.notify.sns_topic_arn {
        statements.push(statement("RekeyNotifyOwners", &["sns:Publish"], vec![topic.clone()]));
    }
    let exempt = exempt_actions(&file.exempt);
    if !exempt.is_empty() {
        statements.push(statement("RekeyExemptRules", &exempt, vec!["*".into()]));
    }
    statements.push(statement("RekeyRolePlan", ROLE_PLAN, vec!["*".into()]));
    json!({"Version": "2012-10-17", "Statement": statements})
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The policy for a rekey.toml, with SQLite state unless `state` says otherwise.
    fn policy_for(toml: &str, partition: &str) -> Value {
        policy(&ConfigFile::parse(toml).expect("valid rekey.toml"), &Location::Sqlite("state.db".into()), partition)
    }

    /// The resources of the statement `sid`.
    fn resources(policy: &Value, sid: &str) -> Vec<String> {
        let statement = policy["Statement"].as_array().unwrap().iter().find(|s| s["Sid"] == sid).unwrap_or_else(|| panic!("no {sid} in {policy}"));
        statement["Resource"].as_array().unwrap().iter().map(|r| r.as_str().unwrap().to_owned()).collect()
    }

    /// Whether an IAM policy pattern covers an ARN: `*` any run of characters
    /// (slashes and colons too), `?` any one, as IAM matches them.
    fn covers(pattern: &str, arn: &str) -> bool {
        fn go(p: &[char], s: &[char]) -> bool {
            match p.split_first() {
                None => s.is_empty(),
                Some(('*', rest)) => (0..=s.len()).any(|i| go(rest, &s[i..])),
                Some(('?', rest)) => !s.is_empty() && go(rest, &s[1..]),
                Some((c, rest)) => s.first() == Some(c) && go(rest, &s[1..]),
            }
        }
        go(&pattern.chars().collect::<Vec<_>>(), &arn.chars().collect::<Vec<_>>())
    }

    fn covered(patterns: &[String], arn: &str) -> bool {
        patterns.iter().any(|p| covers(p, arn))
    }

    const TARGETS: &str = r#"
[[target]]
user = "ci-deployer"
deliver = [{ type = "secretsmanager", secret_id = "app/aws" }, { type = "ssm", name = "/app/aws" }, { type = "ssm", id_name = "plain-id", secret_name = "/deep/path/secret" }]

[[target]]
user = "payments"
account = "111122223333"
deliver = [{ type = "secretsmanager", secret_id = "arn:aws:secretsmanager:eu-west-1:111122223333:secret:pay-AbCdEf" }]
"#;

    #[test]
    fn users_with_or_without_a_path_in_any_or_their_own_account() {
        let users = resources(&policy_for(TARGETS, "aws"), "RekeyRotateKeys");
        assert!(covered(&users, "arn:aws:iam::123456789012:user/ci-deployer"));
        assert!(covered(&users, "arn:aws:iam::123456789012:user/some/path/ci-deployer"));
        assert!(covered(&users, "arn:aws:iam::111122223333:user/payments"));
        assert!(covered(&users, "arn:aws:iam::111122223333:user/team/payments"));
        assert!(!covered(&users, "arn:aws:iam::999999999999:user/payments"), "an explicit account is the only one");
        assert!(!covered(&users, "arn:aws:iam::123456789012:user/ci-deployer-2"));
        assert!(!covered(&users, "arn:aws:iam::123456789012:user/x-ci-deployer"));
        assert!(!covered(&users, "arn:aws:iam::123456789012:role/ci-deployer"));
    }

    #[test]
    fn parameters_with_or_without_a_leading_slash() {
        let parameters = resources(&policy_for(TARGETS, "aws"), "RekeyDeliverParameters");
        assert!(covered(&parameters, "arn:aws:ssm:us-east-1:123456789012:parameter/app/aws"));
        assert!(covered(&parameters, "arn:aws:ssm:eu-west-1:123456789012:parameter/plain-id"));
        assert!(covered(&parameters, "arn:aws:ssm:us-east-1:123456789012:parameter/deep/path/secret"));
        assert!(!covered(&parameters, "arn:aws:ssm:us-east-1:123456789012:parameter//app/aws"));
        assert!(!covered(&parameters, "arn:aws:ssm:us-east-1:123456789012:parameter/app/aws2"));
        assert!(!covered(&parameters, "arn:aws:ssm:us-east-1:123456789012:parameter/app"));
    }

    #[test]
    fn secrets_by_name_carry_the_random_suffix_and_an_arn_is_kept() {
        let secrets = resources(&policy_for(TARGETS, "aws"), "RekeyDeliverSecretsManager");
        assert!(covered(&secrets, "arn:aws:secretsmanager:us-east-1:123456789012:secret:app/aws-AbC123"));
        assert!(!covered(&secrets, "arn:aws:secretsmanager:us-east-1:123456789012:secret:app/aws"), "AWS always adds the suffix");
        assert!(!covered(&secrets, "arn:aws:secretsmanager:us-east-1:123456789012:secret:app/aws-prod-AbC123"), "another secret");
        assert!(covered(&secrets, "arn:aws:secretsmanager:eu-west-1:111122223333:secret:pay-AbCdEf"));
        assert!(!covered(&secrets, "arn:aws:secretsmanager:eu-west-1:111122223333:secret:pay-XyZxYz"));
    }

    #[test]
    fn sink_statements_keep_their_order_whatever_the_order_of_sinks() {
        let ssm_first = "[[target]]\nuser = \"u\"\ndeliver = [{ type = \"ssm\", name = \"/a\" }, { type = \"exec\", command = [\"x\"] }, { type = \"secretsmanager\", secret_id = \"s\" }]\n";
        let sids: Vec<String> = policy_for(ssm_first, "aws")["Statement"].as_array().unwrap().iter().map(|s| s["Sid"].as_str().unwrap().to_owned()).collect();
        assert_eq!(sids[2..5], ["RekeyRotateKeys", "RekeyDeliverSecretsManager", "RekeyDeliverParameters"]);
    }

    #[test]
    fn state_table_topic_and_org_role() {
        let toml = "[notify]\nsns_topic_arn = \"arn:aws:sns:us-east-1:123456789012:rekey-notices\"\n[org]\nrole_name = \"OrganizationAccountAccessRole\"\n";
        let file = ConfigFile::parse(toml).unwrap();
        let p = policy(&file, &Location::Dynamo { table: "rekey-state".into() }, "aws");
        for sid in ["RekeyState", "RekeyStateSetup"] {
            let tables = resources(&p, sid);
            assert!(covered(&tables, "arn:aws:dynamodb:eu-west-1:123456789012:table/rekey-state"));
            assert!(covered(&tables, "arn:aws:dynamodb:eu-west-1:123456789012:table/rekey-state/index/by-stage"));
            assert!(!covered(&tables, "arn:aws:dynamodb:eu-west-1:123456789012:table/rekey-state-2"));
        }
        assert_eq!(resources(&p, "RekeyNotifyOwners"), ["arn:aws:sns:us-east-1:123456789012:rekey-notices"]);
        let roles = resources(&p, "RekeyAssumeMemberRoles");
        assert!(covered(&roles, "arn:aws:iam::111111111111:role/OrganizationAccountAccessRole"));
        assert!(!covered(&roles, "arn:aws:iam::111111111111:role/OrganizationAccountAccessRole2"));
        assert!(covered(&resources(&p, "RekeyImportFindings"), "arn:aws:securityhub:eu-west-1:111111111111:product/111111111111/default"));
        let sqlite = policy(&file, &Location::Sqlite("s.db".into()), "aws");
        assert!(!sqlite.to_string().contains("dynamodb"), "SQLite state needs no DynamoDB");
    }

    #[test]
    fn every_arn_is_in_the_partition_of_the_region() {
        for (region, partition) in [("us-east-1", "aws"), ("cn-north-1", "aws-cn"), ("us-gov-west-1", "aws-us-gov")] {
            let partition_here = rekey_core::model::partition_of(region);
            assert_eq!(partition_here, partition);
            let toml = format!("{TARGETS}\n[org]\nrole_name = \"Audit\"\n");
            let file = ConfigFile::parse(&toml).unwrap();
            let p = policy(&file, &Location::Dynamo { table: "t".into() }, partition_here);
            let arns: Vec<String> = p["Statement"]
                .as_array()
                .unwrap()
                .iter()
                .flat_map(|s| s["Resource"].as_array().unwrap().iter().map(|r| r.as_str().unwrap().to_owned()))
                .filter(|r| r != "*")
                .collect();
            assert!(!arns.is_empty());
            for arn in arns {
                // The one ARN given whole in rekey.toml is kept as written.
                if arn.starts_with("arn:aws:secretsmanager:eu-west-1:111122223333") {
                    continue;
                }
                assert!(arn.starts_with(&format!("arn:{partition}:")), "{region}: {arn}");
            }
        }
    }

    #[test]
    fn exempt_rules_add_the_reads_their_selectors_need() {
        let actions = |toml: &str| -> Vec<String> {
            let p = policy_for(toml, "aws");
            let s = p["Statement"].as_array().unwrap().iter().find(|s| s["Sid"] == "RekeyExemptRules").cloned();
            s.map(|s| s["Action"].as_array().unwrap().iter().map(|a| a.as_str().unwrap().to_owned()).collect()).unwrap_or_default()
        };
        assert!(actions("").is_empty());
        assert!(actions("[[exempt]]\nreason = \"r\"\naccounts = [\"111111111111\"]\n").is_empty(), "accounts need no call");
        assert!(actions("[[exempt]]\nreason = \"r\"\ntag = { key = \"k\", value = \"v\" }\n").is_empty(), "tags: RekeyScan's ListUserTags");
        assert_eq!(actions("[[exempt]]\nreason = \"r\"\ngroup = \"g\"\n[[exempt]]\nreason = \"r\"\nous = [\"ou-abcd-12345678\"]\n"), ["iam:ListGroupsForUser", "organizations:ListParents"]);
    }

    #[test]
    fn scan_and_consumers_are_always_there_rotation_only_with_targets() {
        let p = policy_for("", "aws");
        let sids: Vec<&str> = p["Statement"].as_array().unwrap().iter().map(|s| s["Sid"].as_str().unwrap()).collect();
        assert_eq!(sids, ["RekeyScan", "RekeyConsumers", "RekeySecurityHubFindings", "RekeyImportFindings", "RekeyRolePlan"]);
        let off = policy_for("[securityhub]\nenabled = false\n", "aws");
        assert_eq!(off["Statement"].as_array().unwrap().len(), 3);
    }
}
