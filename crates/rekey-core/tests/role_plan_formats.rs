//! The deployment formats of `rekey role-plan`, checked by the real tools:
//! the CloudFormation template by cfn-lint (no error, warning or anything
//! else reported) and the Terraform snippet by python-hcl2's HCL parser.
//! Both come from the project's Python environment
//! (tests/emulator/requirements.txt): `REKEY_PYTHON`, else `.venv/bin/python`
//! at the repository root. A missing tool fails the test: it never skips.

use rekey_core::role_plan::{Compute, PlanEvent, RolePlan};
use std::path::{Path, PathBuf};
use std::process::Command;

fn event(ip: &str, agent: &str, source: &str, name: &str, resources: &[&str]) -> PlanEvent {
    PlanEvent {
        time: "2026-11-28T09:00:00Z".parse().unwrap(),
        event_source: source.into(),
        event_name: name.into(),
        region: "eu-west-1".into(),
        source_ip: ip.into(),
        user_agent: agent.into(),
        resources: resources.iter().map(|r| (*r).to_owned()).collect(),
        error_code: None,
        vpc_endpoint_id: None,
        readable: true,
    }
}

/// A plan with a proposal of every compute, resources, a GitHub consumer
/// with and one without its repository, and an unknown consumer.
fn plan() -> RolePlan {
    let events = [
        event("3.1.2.3", "Boto3/1.34 exec-env/AWS_Lambda_python3.12", "s3.amazonaws.com", "ListBuckets", &[]),
        event("3.1.2.3", "Boto3/1.34 exec-env/AWS_Lambda_python3.12", "kms.amazonaws.com", "Decrypt", &["arn:aws:kms:eu-west-1:123456789012:key/k1"]),
        event("10.0.4.4", "aws-cli/2.15.0 exec-env/AWS_ECS_FARGATE", "sqs.amazonaws.com", "GetQueueUrl", &[]),
        event("10.0.1.5", "aws-cli/2.15.0 Linux/5.10.210-201.852.amzn2.x86_64", "s3.amazonaws.com", "GetBucketPolicy", &["arn:aws:s3:::reports"]),
        event("3.1.2.4", "aws-cli/2.15.0 exec-env/CodeBuild", "ecr.amazonaws.com", "GetAuthorizationToken", &[]),
        event("20.1.2.3", "aws-cli/2.15.0 github-actions repo:acme/deploy:ref:refs/heads/main", "cloudformation.amazonaws.com", "DescribeStacks", &[]),
        event("20.1.2.4", "aws-cli/2.15.0 GITHUB_ACTIONS", "s3.amazonaws.com", "ListBuckets", &[]),
        event("10.0.3.4", "aws-sdk-go/1.44 external-dns/0.14", "route53.amazonaws.com", "ListHostedZones", &[]),
        event("198.51.100.7", "aws-cli/2.15.0 Darwin/23.1.0", "iam.amazonaws.com", "GetUser", &["arn:aws:iam::123456789012:user/${aws:username}"]),
        event("198.51.100.7", "aws-cli/2.15.0 Darwin/23.1.0", "signin.amazonaws.com", "ConsoleLogin", &[]),
        event("AWS Internal", "AWS Internal", "s3.amazonaws.com", "ListBuckets", &[]),
    ];
    let plan = RolePlan::build("123456789012", "app-user", &events, &["s3:*".to_owned()]);
    let mut computes: Vec<Compute> = plan.proposals.iter().map(|p| p.compute).collect();
    computes.dedup();
    assert_eq!(computes.len(), 8, "every compute: {computes:?}");
    plan
}

/// The project's Python: `REKEY_PYTHON`, else the repository's `.venv`.
fn python() -> PathBuf {
    match std::env::var_os("REKEY_PYTHON") {
        Some(p) => PathBuf::from(p),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/python"),
    }
}

/// Runs `python -c script args...`; panics, saying how to install the
/// tools, when Python cannot start or the script fails.
fn run(script: &str, args: &[&Path]) -> String {
    let python = python();
    let out = Command::new(&python).arg("-c").arg(script).args(args).output().unwrap_or_else(|e| {
        panic!("cannot run {} ({e}): install the test tools with scripts/install-test-deps.sh, or set REKEY_PYTHON", python.display())
    });
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{} -c ... failed ({}):\n{text}", python.display(), out.status);
    text
}

/// A fresh directory for this test's files.
fn workdir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("rekey-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn the_cloudformation_template_passes_cfn_lint() {
    let dir = workdir("role-plan-cfn");
    let template = dir.join("role-plan.json");
    std::fs::write(&template, plan().to_cloudformation()).unwrap();
    // cfn-lint's own entry point; it exits non-zero on any finding.
    let report = run("import sys; from cfnlint.runner import main; sys.argv[0] = 'cfn-lint'; sys.exit(main())", &[&template]);
    assert_eq!(report.trim(), "", "cfn-lint reported:\n{report}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_terraform_snippet_parses_as_hcl() {
    let dir = workdir("role-plan-tf");
    let main = dir.join("main.tf");
    std::fs::write(&main, plan().to_terraform()).unwrap();
    // What the parser read: resources by type, and the policies as JSON.
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
    let counts: serde_json::Value = serde_json::from_str(run(script, &[&main]).trim()).unwrap();
    // Eight roles: every proposal but the unknown one.
    assert_eq!(
        counts,
        serde_json::json!({"aws_iam_role": 8, "aws_iam_role_policy": 8, "aws_iam_instance_profile": 1, "aws_iam_openid_connect_provider": 1})
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
