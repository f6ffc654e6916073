//! `rekey role-plan` end to end, against the emulator's
//! `scenarios/role-plan.json`: a key used by a Lambda function, an ECS
//! task, an EC2 host, a CodeBuild project, a GitHub Actions workflow and a
//! laptop, each event naming its resources as CloudTrail does, and a job
//! that reads S3 objects only (in the key's last use, never in event
//! history). The user's policies (inline, attached, a group's) are made
//! with the AWS CLI, as an admin would.
//!
//! Checked: each compute's trust policy, exactly the permissions each
//! consumer used (actions and resources), the events that map to no
//! action, what the policies allow that history cannot show, the
//! warnings; the CloudFormation template by cfn-lint and the Terraform
//! snippet by python-hcl2 (from the project's Python environment, as
//! `crates/rekey-core/tests/role_plan_formats.rs` runs them); bad input
//! and a user without events.

mod support;

use rekey_emulator::{scenarios_dir, Emulator};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use support::{aws, python_on, rekey, Run};

const ACCOUNT: &str = "123456789012";
const USER: &str = "app-user";
const KMS_KEY: &str = "arn:aws:kms:us-east-1:123456789012:key/0f1e2d3c-aaaa-bbbb-cccc-000000000001";
const SECRET: &str = "arn:aws:secretsmanager:us-east-1:123456789012:secret:app/db-AbCdEf";
const TABLE: &str = "arn:aws:dynamodb:us-east-1:123456789012:table/orders";
const QUEUE: &str = "arn:aws:sqs:us-east-1:123456789012:jobs";
const REPOSITORY: &str = "arn:aws:ecr:us-east-1:123456789012:repository/app";
const BUCKET: &str = "arn:aws:s3:::reports";
const STACK: &str = "arn:aws:cloudformation:us-east-1:123456789012:stack/app/8c9d0e1f-2a3b-4c5d-6e7f-001122334455";

fn emulator() -> Emulator {
    Emulator::with_scenario_file(&scenarios_dir().join("role-plan.json"), None)
}

/// The user's policies, one of each kind rekey reads: a managed policy
/// attached to the user (with a Deny), an inline one, and a group's inline
/// (with a wildcard and a NotAction) and attached (conditional) policies.
fn grant(emu: &Emulator) {
    let policy = |statements: Value| json!({"Version": "2012-10-17", "Statement": statements}).to_string();
    let managed = |name: &str, document: String| {
        aws(emu, &["iam", "create-policy", "--policy-name", name, "--policy-document", &document]);
        format!("arn:aws:iam::{ACCOUNT}:policy/{name}")
    };
    let data = managed(
        "app-data",
        policy(json!([
            {"Effect": "Allow", "Action": ["s3:GetObject", "s3:ListAllMyBuckets", "s3:GetBucketPolicy", "kms:Decrypt", "secretsmanager:GetSecretValue"], "Resource": "*"},
            {"Effect": "Deny", "Action": "s3:DeleteBucket", "Resource": "*"}
        ])),
    );
    aws(emu, &["iam", "attach-user-policy", "--user-name", USER, "--policy-arn", &data]);
    let build = policy(json!([{"Effect": "Allow", "Resource": "*", "Action": [
        "ecr:GetAuthorizationToken", "ecr:InitiateLayerUpload", "cloudformation:DescribeStacks", "cloudformation:UpdateStack", "iam:GetUser", "sqs:GetQueueAttributes"]}]));
    aws(emu, &["iam", "put-user-policy", "--user-name", USER, "--policy-name", "app-build", "--policy-document", &build]);
    aws(emu, &["iam", "create-group", "--group-name", "app-readers"]);
    aws(emu, &["iam", "add-user-to-group", "--group-name", "app-readers", "--user-name", USER]);
    let readers = policy(json!([
        {"Effect": "Allow", "Action": ["dynamodb:DescribeTable", "dynamodb:Get*"], "Resource": "*"},
        {"Effect": "Allow", "NotAction": "iam:*", "Resource": "arn:aws:s3:::reports/*"}
    ]));
    aws(emu, &["iam", "put-group-policy", "--group-name", "app-readers", "--policy-name", "readers", "--policy-document", &readers]);
    let queue = managed("app-queue", policy(json!([{"Effect": "Allow", "Action": "sqs:SendMessage", "Resource": QUEUE, "Condition": {"Bool": {"aws:SecureTransport": "true"}}}])));
    aws(emu, &["iam", "attach-group-policy", "--group-name", "app-readers", "--policy-arn", &queue]);
}

fn role_plan(emu: &Emulator, args: &[&str]) -> Run {
    let mut all = vec!["role-plan"];
    all.extend_from_slice(args);
    rekey(Some(emu), &all)
}

fn proposal<'a>(plan: &'a Value, compute: &str) -> &'a Value {
    plan["proposals"].as_array().unwrap().iter().find(|p| p["compute"] == compute).unwrap_or_else(|| panic!("no {compute} proposal in {plan:#}"))
}

/// A permissions policy as (action, its resources) pairs.
fn permissions(p: &Value) -> BTreeSet<(String, Vec<String>)> {
    let mut out = BTreeSet::new();
    for s in p["permissions_policy"]["Statement"].as_array().unwrap() {
        assert_eq!(s["Effect"], "Allow");
        let resources: Vec<String> = s["Resource"].as_array().unwrap().iter().map(|r| r.as_str().unwrap().to_owned()).collect();
        for a in s["Action"].as_array().unwrap() {
            out.insert((a.as_str().unwrap().to_owned(), resources.clone()));
        }
    }
    out
}

fn pairs(list: &[(&str, &str)]) -> BTreeSet<(String, Vec<String>)> {
    list.iter().map(|(a, r)| ((*a).to_owned(), vec![(*r).to_owned()])).collect()
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array().unwrap().iter().map(|s| s.as_str().unwrap().to_owned()).collect()
}

#[test]
fn each_consumer_gets_the_role_of_its_compute_and_exactly_the_permissions_it_used() {
    let started = std::time::Instant::now();
    let emu = emulator();
    grant(&emu);
    // A second key, whose secret must appear nowhere.
    let created = aws(&emu, &["iam", "create-access-key", "--user-name", USER]).json();
    let secret = created["AccessKey"]["SecretAccessKey"].as_str().unwrap().to_owned();
    let key = emu.keys(USER).as_array().unwrap().iter().map(|k| k["access_key_id"].as_str().unwrap().to_owned()).find(|k| *k != created["AccessKey"]["AccessKeyId"]).unwrap();

    let run = role_plan(&emu, &["--user", USER, "--format", "json"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let plan = run.json();
    assert_eq!((plan["account_id"].as_str(), plan["user_name"].as_str()), (Some(ACCOUNT), Some(USER)));
    let computes: Vec<&str> = plan["proposals"].as_array().unwrap().iter().map(|p| p["compute"].as_str().unwrap()).collect();
    assert_eq!(computes, ["lambda", "ecs", "ec2", "codebuild", "github-actions", "outside-aws"]);

    // Trust: the compute's principal.
    let service = |compute: &str| proposal(&plan, compute)["trust_policy"]["Statement"][0]["Principal"]["Service"].clone();
    assert_eq!(service("lambda"), "lambda.amazonaws.com");
    assert_eq!(service("ecs"), "ecs-tasks.amazonaws.com");
    assert_eq!(service("ec2"), "ec2.amazonaws.com");
    assert_eq!(service("codebuild"), "codebuild.amazonaws.com");
    assert_eq!(service("outside-aws"), "rolesanywhere.amazonaws.com");
    let github = &proposal(&plan, "github-actions")["trust_policy"]["Statement"][0];
    assert_eq!(github["Principal"]["Federated"], format!("arn:aws:iam::{ACCOUNT}:oidc-provider/token.actions.githubusercontent.com"));
    assert_eq!(github["Action"], json!(["sts:AssumeRoleWithWebIdentity"]));
    assert_eq!(github["Condition"]["StringEquals"]["token.actions.githubusercontent.com:sub"], "repo:acme/deploy-tools:ref:refs/heads/main");
    for compute in &computes {
        let p = proposal(&plan, compute);
        assert_eq!(p["confidence"], "high", "{compute}: {:?}", p["evidence"]);
        assert_eq!(p["role_name"], format!("{USER}-{compute}"));
    }
    assert!(strings(&proposal(&plan, "ec2")["evidence"]).iter().any(|e| e.contains("vpce-0a1b2c3d4e5f")), "the VPC endpoint is evidence");
    let lambda = proposal(&plan, "lambda");
    let calls: Vec<(String, u64)> = lambda["consumers"].as_array().unwrap().iter().map(|c| (c["source_ip"].as_str().unwrap().to_owned(), c["calls"].as_u64().unwrap())).collect();
    assert_eq!(calls, [("3.91.12.40".to_owned(), 48), ("3.91.12.41".to_owned(), 5)], "one function from two addresses");

    // Permissions: exactly the actions seen, on the resources the events name.
    assert_eq!(permissions(lambda), pairs(&[("kms:Decrypt", KMS_KEY), ("secretsmanager:GetSecretValue", SECRET), ("dynamodb:DescribeTable", TABLE)]));
    assert_eq!(permissions(proposal(&plan, "ecs")), pairs(&[("ecr:GetAuthorizationToken", "*"), ("sqs:GetQueueAttributes", QUEUE)]));
    assert_eq!(permissions(proposal(&plan, "ec2")), pairs(&[("s3:ListAllMyBuckets", "*"), ("s3:GetBucketPolicy", BUCKET)]), "the denied GetBucketAcl grants nothing");
    assert_eq!(permissions(proposal(&plan, "codebuild")), pairs(&[("ecr:GetAuthorizationToken", "*"), ("ecr:InitiateLayerUpload", REPOSITORY)]));
    assert_eq!(permissions(proposal(&plan, "github-actions")), pairs(&[("cloudformation:DescribeStacks", STACK), ("cloudformation:UpdateStack", STACK)]));
    assert_eq!(permissions(proposal(&plan, "outside-aws")), pairs(&[("iam:GetUser", "*")]));

    // Unmapped events, and what the policies allow that history cannot show.
    assert_eq!(proposal(&plan, "outside-aws")["unmapped_events"], json!([{"event_source": "sso.amazonaws.com", "event_name": "GetRoleCredentials", "calls": 1}]));
    for compute in ["lambda", "ecs", "ec2", "codebuild", "github-actions"] {
        assert_eq!(proposal(&plan, compute)["unmapped_events"], json!([]), "{compute}");
    }
    assert_eq!(
        strings(&lambda["allowed_not_seen"]),
        [
            "cloudformation:DescribeStacks", "cloudformation:UpdateStack", "dynamodb:GetItem", "dynamodb:GetRecords", "dynamodb:GetShardIterator",
            "ecr:GetAuthorizationToken", "ecr:InitiateLayerUpload", "iam:GetUser", "s3:GetBucketPolicy", "s3:GetObject", "s3:ListAllMyBuckets",
            "sqs:GetQueueAttributes", "sqs:SendMessage",
        ],
        "every action the policies name but the Lambda function's, and the data calls their wildcards allow"
    );
    let ec2_gap = strings(&proposal(&plan, "ec2")["allowed_not_seen"]);
    assert!(ec2_gap.contains(&"s3:GetObject".to_owned()) && !ec2_gap.contains(&"s3:GetBucketPolicy".to_owned()), "{ec2_gap:?}");

    // Warnings: what history cannot show, what the policies' reading leaves out, the data-only consumer.
    let warnings = strings(&plan["warnings"]);
    let said = |part: &str| warnings.iter().any(|w| w.contains(part));
    assert!(said("CloudTrail event history holds management events only"), "{warnings:#?}");
    assert!(said("user's 4 policies") && said("1 Deny statement, 1 NotAction statement, 1 conditional Allow statement"), "{warnings:#?}");
    assert!(said(&format!("{key} was last used at")) && said("no CloudTrail event explains it"), "the S3-objects job: {warnings:#?}");
    assert!(said("app-user-ec2: calls the key was denied are left out of its permissions: s3.amazonaws.com GetBucketAcl (1)"), "{warnings:#?}");
    assert!(said("through wildcards (dynamodb:Get*)"), "{warnings:#?}");
    assert!(!said("do not allow") && !said("were not given"), "{warnings:#?}");
    assert_eq!(run.stderr.lines().filter(|l| l.starts_with("warning: ")).count(), warnings.len(), "JSON's warnings on stderr too:\n{}", run.stderr);

    let text = role_plan(&emu, &["--user", USER]);
    assert_eq!(text.code, 0, "{}", text.stderr);
    for line in ["6 proposals", "1. lambda, high confidence: role app-user-lambda", "trust: Service lambda.amazonaws.com may sts:AssumeRole", &format!("kms:Decrypt on {KMS_KEY}"), "events that map to no IAM action: sso.amazonaws.com GetRoleCredentials (1)", "allowed today, not seen:", "Warnings:"] {
        assert!(text.stdout.contains(line), "{line:?} in:\n{}", text.stdout);
    }
    assert_eq!(text.stderr, "", "the text holds its warnings");
    for out in [&run.stdout, &run.stderr, &text.stdout, &text.stderr] {
        assert!(!out.contains(&secret), "a secret reached role-plan's output");
    }
    eprintln!("role-plan: {:?}", started.elapsed());
}

#[test]
fn the_cloudformation_passes_cfn_lint_and_the_terraform_parses_as_hcl() {
    let emu = emulator();
    let dir = tempfile::tempdir().unwrap();

    let cfn = role_plan(&emu, &["--user", USER, "--format", "cloudformation"]);
    assert_eq!(cfn.code, 0, "{}", cfn.stderr);
    let template: Value = serde_json::from_str(&cfn.stdout).unwrap_or_else(|e| panic!("not JSON ({e}):\n{}", cfn.stdout));
    let kinds: Vec<&str> = template["Resources"].as_object().unwrap().values().map(|r| r["Type"].as_str().unwrap()).collect();
    assert_eq!(kinds.iter().filter(|k| **k == "AWS::IAM::Role").count(), 6, "{kinds:?}");
    assert!(cfn.stderr.contains("warning: "), "the warnings go to stderr: {}", cfn.stderr);
    let path = dir.path().join("role-plan.json");
    std::fs::write(&path, &cfn.stdout).unwrap();
    let report = python_on("import sys; from cfnlint.runner import main; sys.argv[0] = 'cfn-lint'; sys.exit(main())", &path);
    assert_eq!(report.trim(), "", "cfn-lint reported:\n{report}");

    let tf = role_plan(&emu, &["--user", USER, "--format", "terraform"]);
    assert_eq!(tf.code, 0, "{}", tf.stderr);
    let path = dir.path().join("main.tf");
    std::fs::write(&path, &tf.stdout).unwrap();
    let script = r#"
import hcl2, json, sys
with open(sys.argv[1]) as f:
    doc = hcl2.load(f)
counts = {}
for block in doc.get("resource", []):
    for kind, named in block.items():
        counts[kind.strip('"')] = counts.get(kind.strip('"'), 0) + len(named)
print(json.dumps(counts, sort_keys=True))
"#;
    let counts: Value = serde_json::from_str(python_on(script, &path).trim()).unwrap();
    assert_eq!(counts, json!({"aws_iam_role": 6, "aws_iam_role_policy": 6, "aws_iam_instance_profile": 1, "aws_iam_openid_connect_provider": 1}));
}

#[test]
fn bad_input_exits_2_and_a_user_without_events_gets_no_proposal() {
    let emu = emulator();
    let nope = role_plan(&emu, &["--user", USER, "--format", "nope"]);
    assert_eq!(nope.code, 2);
    assert!(nope.stderr.contains("invalid value 'nope'") && nope.stderr.contains("cloudformation"), "{}", nope.stderr);
    assert_eq!(nope.stdout, "");
    for args in [&["--user", "nobody"][..], &["--user", "nobody", "--key", "AKIAIOSFODNN7EXAMPLE"]] {
        let run = role_plan(&emu, args);
        assert_eq!(run.code, 2, "{args:?}: {}", run.stdout);
        assert!(run.stderr.contains("there is no IAM user named \"nobody\""), "{args:?}: {}", run.stderr);
        assert_eq!(run.stdout, "");
    }
    let since = role_plan(&emu, &["--user", USER, "--since", "ninety days"]);
    assert_eq!(since.code, 2, "{}", since.stderr);

    // No event: a plan without proposals, which says why (exit 0).
    let idle = role_plan(&emu, &["--user", "idle-user", "--format", "json"]);
    assert_eq!(idle.code, 0, "{}", idle.stderr);
    let plan = idle.json();
    assert_eq!(plan["proposals"], json!([]));
    let warnings = strings(&plan["warnings"]);
    assert!(warnings.iter().any(|w| w.contains("no CloudTrail event of the user's keys")), "{warnings:#?}");
    assert!(warnings.iter().any(|w| w.contains("the user has no IAM policy")), "{warnings:#?}");
    let text = role_plan(&emu, &["--user", "idle-user"]);
    assert!(text.stdout.contains("0 proposals") && text.stdout.contains("nothing to propose"), "{}", text.stdout);

    // Without CloudTrail: exit 2, saying so.
    emu.set_cloudtrail(false);
    let denied = role_plan(&emu, &["--user", USER]);
    assert_eq!(denied.code, 2, "{}", denied.stdout);
    assert!(denied.stderr.contains("CloudTrail's event history cannot be read") && denied.stderr.contains("cloudtrail:LookupEvents"), "{}", denied.stderr);
}

#[test]
fn scan_and_owners_name_the_plan_of_a_role_candidate() {
    let emu = emulator();
    // idle-user's 120-day key (FAILED), now used by a Lambda function only.
    let key = emu.keys("idle-user")[0]["access_key_id"].as_str().unwrap().to_owned();
    let agent = "Boto3/1.34.0 md/Botocore#1.34.0 ua/2.0 os/linux#5.10.0 exec-env/AWS_Lambda_python3.12";
    emu.add_trail_events(&key, &json!({"service": "sqs", "event_name": "GetQueueUrl", "ago": "1h", "source_ip": "3.91.12.50", "user_agent": agent, "count": 3, "every": "1h"}));
    let hint = "1 consumer, plan: `rekey role-plan --user idle-user --account 123456789012`";

    let owners = rekey(Some(&emu), &["owners", "--consumers"]);
    assert_eq!(owners.code, 0, "{}", owners.stderr);
    assert!(owners.stdout.contains(&format!("  - role candidate: {hint}")), "{}", owners.stdout);
    assert!(!owners.stdout.contains("rekey role-plan --user app-user"), "app-user has consumers outside AWS: {}", owners.stdout);
    let html = rekey(Some(&emu), &["scan", "--consumers", "--format", "html", "--fail-on", "never"]);
    assert_eq!(html.code, 0, "{}", html.stderr);
    assert!(html.stdout.contains(&format!("yes<br><span class=\"sub\">{hint}</span>")), "the role cell names the plan");

    let plan = role_plan(&emu, &["--user", "idle-user", "--account", ACCOUNT, "--format", "json"]);
    assert_eq!(plan.code, 0, "{}", plan.stderr);
    assert_eq!(proposal(&plan.json(), "lambda")["permissions_policy"]["Statement"][0]["Action"], json!(["sqs:GetQueueUrl"]));
}
