//! What permissions rekey needs, proven: the emulator enforces IAM
//! authorization (`Emulator::with_iam_auth`), an operator user holds exactly
//! the policy `rekey policy` prints, and every command runs as that operator.
//! Then each action of the policy is taken away in turn: the command that
//! needs it exits 2 naming it (or, for the reads of `role-plan` that only
//! bound its proposals, exits 0 with a warning naming it), another command
//! still works, and AWS and the sinks end as they were.
//!
//! One emulator for the whole file; the operator's policy is swapped by the
//! admin (the AWS CLI, `iam put-user-policy`) between cases.

mod support;

use rekey_emulator::Emulator;
use serde_json::{json, Value};
use std::path::PathBuf;
use support::{aws, rekey_cmd, Run, LONG};

/// No waits, and a failed step is tried again at once.
const ZERO_WAITS: &str = "wait_unused = \"0s\"\nlast_used_lag = \"0s\"\ngrace = \"0s\"\nverify_timeout = \"120s\"\nretry_after = \"0s\"";
/// Stops after verification, in draining, for an hour: a rotation to roll back.
const STOP_IN_DRAINING: &str = "wait_unused = \"1h\"\nlast_used_lag = \"0s\"\ngrace = \"0s\"\nverify_timeout = \"120s\"\nretry_after = \"0s\"";

const OPERATOR: &str = "rekey-operator";
const POLICY_NAME: &str = "rekey";
const TOPIC: &str = "arn:aws:sns:us-east-1:123456789012:rekey-notices";
const SECRET: &str = "app-sm/aws";
const PARAM_ID: &str = "/app-ssm/id";
const PARAM_SECRET: &str = "/app-ssm/secret";

/// The target users, one per sink type (`manual` needs no AWS).
const FILE_USER: &str = "app-file";
const SSM_USER: &str = "app-ssm";
const SM_USER: &str = "app-sm";
const EXEC_USER: &str = "app-exec";
const TARGETS: [&str; 4] = [FILE_USER, SSM_USER, SM_USER, EXEC_USER];
/// The user `role-plan` plans for: a policy of every kind it reads (inline,
/// attached, and its group's inline and attached), so each read is made.
const PLAN_USER: &str = "app-plan";

struct Lab {
    emu: Emulator,
    dir: tempfile::TempDir,
    operator: (String, String),
    /// Every output of rekey, to check that no secret reached one.
    outputs: std::cell::RefCell<Vec<String>>,
}

impl Lab {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The AWS CLI as the admin.
    fn aws(&self, args: &[&str]) -> Run {
        aws(&self.emu, args)
    }

    /// rekey as the operator, with its own state file and rekey.toml.
    fn rekey(&self, args: &[&str]) -> Run {
        let run: Run = rekey_cmd(Some(&self.emu), self.dir.path())
            .env("AWS_ACCESS_KEY_ID", &self.operator.0)
            .env("AWS_SECRET_ACCESS_KEY", &self.operator.1)
            .arg("--state")
            .arg(self.path("state.db"))
            .args(args)
            .output()
            .expect("run rekey")
            .into();
        self.outputs.borrow_mut().push(format!("{}\n{}", run.stdout, run.stderr));
        run
    }

    fn ok(&self, args: &[&str]) -> Run {
        let run = self.rekey(args);
        assert_eq!(run.code, 0, "rekey {args:?} as the operator: {}", run.stderr);
        run
    }

    fn config(&self, rotation: &str) {
        let file = self.path("credentials");
        let exec_out = self.path("exec.json");
        let text = format!(
            r#"[rotation]
{rotation}

[notify]
sns_topic_arn = "{TOPIC}"

[[target]]
user = "{FILE_USER}"
deliver = [{{ type = "credentials-file", path = "{}", profile = "app" }}]
verify = [{{ type = "sts" }}]

[[target]]
user = "{SSM_USER}"
deliver = [{{ type = "ssm", id_name = "{PARAM_ID}", secret_name = "{PARAM_SECRET}" }}]
verify = [{{ type = "sts" }}]

[[target]]
user = "{SM_USER}"
deliver = [{{ type = "secretsmanager", secret_id = "{SECRET}" }}]
verify = [{{ type = "sts" }}]

[[target]]
user = "{EXEC_USER}"
deliver = [{{ type = "exec", command = ["sh", "-c", "cat > '{}'"] }}]
verify = [{{ type = "sts" }}]
"#,
            file.display(),
            exec_out.display()
        );
        std::fs::write(self.path("rekey.toml"), text).unwrap();
    }

    /// The operator's only policy.
    fn grant(&self, policy: &Value) {
        self.aws(&["iam", "put-user-policy", "--user-name", OPERATOR, "--policy-name", POLICY_NAME, "--policy-document", &policy.to_string()]);
    }

    /// Every user's keys and every sink's content: what must not change.
    fn snapshot(&self) -> Value {
        let keys: Vec<Value> = TARGETS.iter().map(|u| self.emu.keys(u)).collect();
        let params = self.aws(&["ssm", "get-parameters", "--names", PARAM_ID, PARAM_SECRET, "--with-decryption"]).json();
        // Values only: a restore writes the old value again, as a new version.
        let mut params: Vec<Value> = params["Parameters"].as_array().unwrap().iter().map(|p| json!([p["Name"], p["Value"]])).collect();
        params.sort_by_key(|p| p[0].to_string());
        let secret = self.aws(&["secretsmanager", "get-secret-value", "--secret-id", SECRET]).json();
        json!({
            "keys": keys,
            "file": std::fs::read_to_string(self.path("credentials")).unwrap_or_default(),
            "exec": std::fs::read_to_string(self.path("exec.json")).unwrap_or_default(),
            "ssm": params,
            "secret": secret["SecretString"],
        })
    }

    /// Unfinished rotations: (id, stage).
    fn open_rotations(&self) -> Vec<(String, String)> {
        let run = self.ok(&["status", "--format", "json"]);
        run.json()["rotations"].as_array().unwrap().iter().map(|r| (r["id"].as_str().unwrap().to_owned(), r["stage"].as_str().unwrap().to_owned())).collect()
    }

    /// How many rotations completed.
    fn completed(&self) -> usize {
        let all = self.ok(&["status", "--all", "--format", "json"]).json();
        all["rotations"].as_array().unwrap().iter().filter(|r| r["stage"] == "completed").count()
    }

    /// `rekey rotate` and then `rekey run` until the rotation is done or a
    /// command fails: the first failure, else the last run.
    fn rotate(&self, user: &str) -> Run {
        let run = self.rekey(&["rotate", "--user", user, "--yes"]);
        if run.code != 0 {
            return run;
        }
        let started = std::time::Instant::now();
        loop {
            if self.open_rotations().is_empty() {
                return run;
            }
            let run = self.rekey(&["run", "--once"]);
            if run.code != 0 {
                return run;
            }
            assert!(started.elapsed() < LONG, "rotation of {user} not finished after {LONG:?}");
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    }

    /// A rotation of `user` stopped in draining; its id.
    fn rotation_to_roll_back(&self, user: &str) -> String {
        self.config(STOP_IN_DRAINING);
        self.ok(&["rotate", "--user", user, "--yes"]);
        self.config(ZERO_WAITS);
        let open = self.open_rotations();
        assert_eq!(open.len(), 1, "{open:?}");
        assert_eq!(open[0].1, "draining");
        open[0].0.clone()
    }

    /// With the full policy back: every unfinished rotation undone (or
    /// finished where it is past undoing).
    fn clean_up(&self) {
        // A suppress whose Security Hub update was denied still exempts the user in rekey.
        self.rekey(&["unsuppress", "--user", "stale"]);
        for (id, _) in self.open_rotations() {
            if self.rekey(&["rollback", &id]).code != 0 {
                self.ok(&["run", "--once"]);
            }
        }
        let started = std::time::Instant::now();
        while !self.open_rotations().is_empty() {
            self.ok(&["run", "--once"]);
            assert!(started.elapsed() < LONG, "rotations left: {:?}", self.open_rotations());
        }
    }
}

/// The parts of two snapshots that differ, by name: snapshots hold
/// secrets and are never printed.
fn parts_changed(before: &Value, after: &Value) -> Vec<&'static str> {
    ["keys", "file", "exec", "ssm", "secret"].into_iter().filter(|part| before[part] != after[part]).collect()
}

fn assert_same(before: &Value, after: &Value, what: &str) {
    let changed = parts_changed(before, after);
    assert!(changed.is_empty(), "{what}: {changed:?} changed");
}

/// The printed policy without one action (a statement left empty goes).
fn without(policy: &Value, action: &str) -> Value {
    let mut policy = policy.clone();
    let statements = policy["Statement"].as_array_mut().unwrap();
    for s in statements.iter_mut() {
        s["Action"].as_array_mut().unwrap().retain(|a| a != action);
    }
    statements.retain(|s| !s["Action"].as_array().unwrap().is_empty());
    policy
}

fn actions(policy: &Value) -> Vec<String> {
    policy["Statement"].as_array().unwrap().iter().flat_map(|s| s["Action"].as_array().unwrap().iter().map(|a| a.as_str().unwrap().to_owned())).collect()
}

fn setup() -> Lab {
    let scenario = json!({
        "users": [
            {"name": FILE_USER, "tags": {"Owner": "team-app"}, "keys": []},
            {"name": SSM_USER, "tags": {"Owner": "team-app"}, "keys": []},
            {"name": SM_USER, "path": "/services/payments/", "tags": {"Owner": "team-app"}, "keys": []},
            {"name": EXEC_USER, "tags": {"Owner": "team-app"}, "keys": []},
            // An old key: a FAILED finding, so that there is a notice to send.
            {"name": "stale", "tags": {"Owner": "team-data"}, "keys": [{"age": "200d"}]},
            {"name": PLAN_USER, "tags": {"Owner": "team-app"}, "keys": [{"age": "10d"}]},
        ],
        "sns_topics": ["rekey-notices"],
    });
    let emu = Emulator::with_iam_auth(&scenario);
    let lab = Lab { emu, dir: tempfile::tempdir().unwrap(), operator: (String::new(), String::new()), outputs: Default::default() };
    let key_of = |user: &str| {
        let key = lab.aws(&["iam", "create-access-key", "--user-name", user]).json()["AccessKey"].clone();
        (key["AccessKeyId"].as_str().unwrap().to_owned(), key["SecretAccessKey"].as_str().unwrap().to_owned())
    };
    let mut sinks = Vec::new();
    for user in TARGETS {
        sinks.push(key_of(user));
    }
    let (file_id, file_secret) = &sinks[0];
    std::fs::write(lab.path("credentials"), format!("[app]\naws_access_key_id = {file_id}\naws_secret_access_key = {file_secret}\n")).unwrap();
    lab.aws(&["ssm", "put-parameter", "--name", PARAM_ID, "--type", "SecureString", "--value", &sinks[1].0]);
    lab.aws(&["ssm", "put-parameter", "--name", PARAM_SECRET, "--type", "SecureString", "--value", &sinks[1].1]);
    let value = json!({"AccessKeyId": sinks[2].0, "SecretAccessKey": sinks[2].1}).to_string();
    lab.aws(&["secretsmanager", "create-secret", "--name", SECRET, "--secret-string", &value]);
    let read = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}]}).to_string();
    let managed = lab.aws(&["iam", "create-policy", "--policy-name", "app-read", "--policy-document", &read]).json()["Policy"]["Arn"].as_str().unwrap().to_owned();
    lab.aws(&["iam", "put-user-policy", "--user-name", PLAN_USER, "--policy-name", "app-read", "--policy-document", &read]);
    lab.aws(&["iam", "attach-user-policy", "--user-name", PLAN_USER, "--policy-arn", &managed]);
    lab.aws(&["iam", "create-group", "--group-name", "app-readers"]);
    lab.aws(&["iam", "add-user-to-group", "--group-name", "app-readers", "--user-name", PLAN_USER]);
    lab.aws(&["iam", "put-group-policy", "--group-name", "app-readers", "--policy-name", "app-read", "--policy-document", &read]);
    lab.aws(&["iam", "attach-group-policy", "--group-name", "app-readers", "--policy-arn", &managed]);
    lab.aws(&["iam", "create-user", "--user-name", OPERATOR]);
    let operator = key_of(OPERATOR);
    Lab { operator, ..lab }
}

/// The commands of the matrix, each as the operator.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Cmd {
    ScanReport,
    ScanApi,
    ScanUser,
    ScanOwner,
    Import,
    Findings,
    Suppress,
    Notify,
    Consumers,
    RolePlan,
    Rotate(&'static str),
    Rollback(&'static str),
}

impl Cmd {
    fn run(self, lab: &Lab) -> Run {
        match self {
            Cmd::ScanReport => lab.rekey(&["scan", "--source", "credential-report", "--format", "json", "--fail-on", "never"]),
            Cmd::ScanApi => lab.rekey(&["scan", "--source", "api", "--format", "json", "--fail-on", "never"]),
            Cmd::ScanUser => lab.rekey(&["scan", "--source", "api", "--user", "stale", "--format", "json", "--fail-on", "never"]),
            Cmd::ScanOwner => lab.rekey(&["scan", "--source", "api", "--owner", "team-data", "--format", "json", "--fail-on", "never"]),
            Cmd::Import => lab.rekey(&["scan", "--source", "api", "--format", "json", "--fail-on", "never", "--import-findings"]),
            Cmd::Findings => lab.rekey(&["findings", "--format", "json", "--fail-on", "never"]),
            // Ended at once: the notices need the user's finding open.
            Cmd::Suppress => {
                let run = lab.rekey(&["suppress", "--user", "stale", "--reason", "proving the policy", "--until", "1h"]);
                if run.code != 0 {
                    return run;
                }
                lab.rekey(&["unsuppress", "--user", "stale"])
            }
            Cmd::Notify => lab.rekey(&["notify", "--force"]),
            Cmd::Consumers => lab.rekey(&["consumers", "--user", FILE_USER, "--format", "json"]),
            Cmd::RolePlan => lab.rekey(&["role-plan", "--user", PLAN_USER, "--format", "json"]),
            Cmd::Rotate(user) => lab.rotate(user),
            Cmd::Rollback(user) => {
                let id = lab.rotation_to_roll_back(user);
                lab.rekey(&["rollback", &id])
            }
        }
    }
}

#[test]
fn the_printed_policy_is_enough_and_every_action_in_it_is_needed() {
    let started = std::time::Instant::now();
    let lab = setup();
    lab.config(ZERO_WAITS);
    let run = lab.ok(&["policy"]);
    let policy = run.json();
    lab.grant(&policy);

    // Everything, as the operator holding exactly the printed policy.
    for cmd in [Cmd::ScanReport, Cmd::ScanApi, Cmd::ScanUser, Cmd::ScanOwner, Cmd::Import, Cmd::Findings, Cmd::Notify, Cmd::Suppress, Cmd::Consumers, Cmd::RolePlan] {
        let run = cmd.run(&lab);
        assert_eq!(run.code, 0, "{cmd:?} under the printed policy: {}", run.stderr);
    }
    assert!(!lab.emu.sns_messages(TOPIC).is_empty(), "notify published to the topic");
    for user in TARGETS {
        let before = lab.emu.keys(user);
        let run = lab.rotate(user);
        assert_eq!(run.code, 0, "rotation of {user} under the printed policy: {}", run.stderr);
        let after = lab.emu.keys(user);
        assert_eq!(after.as_array().unwrap().len(), 1, "{user}: one key left");
        assert_ne!(after[0]["access_key_id"], before[0]["access_key_id"], "{user}: a new key");
    }
    let status = lab.ok(&["status", "--all", "--format", "json"]).json();
    assert!(status["rotations"].as_array().unwrap().iter().all(|r| r["stage"] == "completed"), "{status}");
    for user in [FILE_USER, SSM_USER, SM_USER] {
        let before = lab.snapshot();
        let run = Cmd::Rollback(user).run(&lab);
        assert_eq!(run.code, 0, "rollback of {user} under the printed policy: {}", run.stderr);
        assert_same(&before, &lab.snapshot(), &format!("rollback of {user}"));
    }

    // Each action taken away in turn. The outcomes are gathered first and
    // checked after, so that a failure shows the whole matrix.
    let mut table = Vec::new();
    let mut wrong = Vec::new();
    for action in actions(&policy) {
        let (needs, unaffected) = expected(&action);
        if action == "ssm:DeleteParameter" {
            // Parameters that did not exist before the rotation: a rollback deletes them.
            lab.aws(&["ssm", "delete-parameters", "--names", PARAM_ID, PARAM_SECRET]);
        }
        let before = lab.snapshot();
        let completed_before = lab.completed();
        lab.grant(&without(&policy, &action));
        let run = needs.run(&lab);
        let unchanged = parts_changed(&before, &lab.snapshot()).is_empty();
        let message = run.stderr.lines().find(|l| l.contains(&action)).unwrap_or("").trim().to_owned();
        let other = unaffected.run(&lab);
        lab.grant(&policy);
        lab.clean_up();
        let mut changed = parts_changed(&before, &lab.snapshot());
        if PAST_UNDOING.contains(&action.as_str()) {
            // The old key is already inactive: the rotation finishes once the permission is back.
            assert_eq!(lab.completed(), completed_before + 1, "{action}: the rotation finished");
            changed.clear();
        }
        table.push(format!("{action} | {needs:?} | exit {} | {} | {unaffected:?}: exit {} | {message}", run.code, if unchanged { "nothing changed" } else { "changed, undone" }, other.code));
        let want = if WARNED.contains(&action.as_str()) { 0 } else { 2 };
        if run.code != want || message.is_empty() || other.code != 0 || !changed.is_empty() {
            wrong.push(format!("{action}: {needs:?} exit {}, named: {}, {unaffected:?} exit {}, changed after undo: {changed:?}\n{}", run.code, !message.is_empty(), other.code, run.stderr));
        }
    }
    eprintln!("{}", table.join("\n"));
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));

    let operator_secret = &lab.operator.1;
    let sink_secret = lab.snapshot()["file"].as_str().unwrap().lines().find_map(|l| l.strip_prefix("aws_secret_access_key = ")).unwrap().to_owned();
    for output in lab.outputs.borrow().iter() {
        assert!(!output.contains(operator_secret.as_str()) && !output.contains(&sink_secret), "a secret reached rekey's output");
    }
    eprintln!("privilege: {:?}", started.elapsed());
}

/// Denied at a stage a rotation cannot be undone from (the old key is
/// deactivated): the rotation is finished instead of rolled back.
const PAST_UNDOING: &[&str] = &["iam:DeleteAccessKey"];

/// Denied, these make their command warn (naming the action) and go on:
/// a role plan without the user's policies still proposes roles.
const WARNED: &[&str] = &[
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

/// For an action of the policy: a command that needs it, and one that does not.
fn expected(action: &str) -> (Cmd, Cmd) {
    match action {
        "iam:GenerateCredentialReport" | "iam:GetCredentialReport" => (Cmd::ScanReport, Cmd::ScanApi),
        "iam:ListUsers" | "iam:GetAccessKeyLastUsed" => (Cmd::ScanApi, Cmd::Findings),
        // Both scan sources and `findings` list each user's keys.
        "iam:ListAccessKeys" => (Cmd::ScanApi, Cmd::Suppress),
        "iam:GetUser" => (Cmd::ScanUser, Cmd::Findings),
        // Without tags, owners are unknown: `scan --owner` is refused (a plain scan warns).
        "iam:ListUserTags" => (Cmd::ScanOwner, Cmd::Findings),
        "cloudtrail:LookupEvents" => (Cmd::Consumers, Cmd::ScanApi),
        a if WARNED.contains(&a) => (Cmd::RolePlan, Cmd::ScanApi),
        "iam:CreateAccessKey" | "iam:UpdateAccessKey" | "iam:DeleteAccessKey" => (Cmd::Rotate(FILE_USER), Cmd::ScanApi),
        a if a.starts_with("secretsmanager:") => (Cmd::Rotate(SM_USER), Cmd::ScanApi),
        // Only a parameter rekey created is deleted (see `prepare`).
        "ssm:DeleteParameter" => (Cmd::Rollback(SSM_USER), Cmd::ScanApi),
        a if a.starts_with("ssm:") => (Cmd::Rotate(SSM_USER), Cmd::ScanApi),
        "securityhub:GetFindings" => (Cmd::Findings, Cmd::ScanApi),
        "securityhub:BatchUpdateFindings" => (Cmd::Suppress, Cmd::ScanApi),
        "securityhub:BatchImportFindings" => (Cmd::Import, Cmd::ScanApi),
        "sns:Publish" => (Cmd::Notify, Cmd::ScanApi),
        other => panic!("no command named for {other}"),
    }
}

/// An organization scan: the caller lists the accounts and assumes the
/// member role; the role holds the printed policy less those two actions.
/// Either taken from the caller, or a scanning action from the role, makes
/// the scan exit 2 naming it.
#[test]
fn an_organization_scan_needs_its_printed_actions_on_both_sides() {
    const MEMBER: &str = "111111111111";
    const ROLE: &str = "OrganizationAccountAccessRole";
    let scenario = json!({
        "users": [{"name": "mgmt-user", "keys": [{"age": "200d"}]}],
        "organization": {"role_name": ROLE},
        "accounts": [{"id": MEMBER, "name": "prod", "users": [{"name": "member-user", "keys": [{"age": "150d"}]}]}],
    });
    let emu = Emulator::with_iam_auth(&scenario);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("rekey.toml"), format!("[securityhub]\nenabled = false\n\n[org]\nrole_name = \"{ROLE}\"\n")).unwrap();
    aws(&emu, &["iam", "create-user", "--user-name", OPERATOR]);
    let key = aws(&emu, &["iam", "create-access-key", "--user-name", OPERATOR]).json()["AccessKey"].clone();
    let rekey = |args: &[&str]| -> Run {
        rekey_cmd(Some(&emu), dir.path())
            .env("AWS_ACCESS_KEY_ID", key["AccessKeyId"].as_str().unwrap())
            .env("AWS_SECRET_ACCESS_KEY", key["SecretAccessKey"].as_str().unwrap())
            .args(args)
            .output()
            .expect("run rekey")
            .into()
    };
    let policy = rekey(&["policy"]).json();
    let caller_only = ["organizations:ListAccounts", "sts:AssumeRole"];
    let member_policy = actions(&policy).into_iter().filter(|a| caller_only.contains(&a.as_str())).fold(policy.clone(), |p, a| without(&p, &a));
    let grant = |p: &Value| aws(&emu, &["iam", "put-user-policy", "--user-name", OPERATOR, "--policy-name", POLICY_NAME, "--policy-document", &p.to_string()]);
    grant(&policy);
    emu.set_role_policy(MEMBER, &member_policy);

    let scan = &["scan", "--org", "--format", "json", "--fail-on", "never"];
    let run = rekey(scan);
    assert_eq!(run.code, 0, "the printed policy is enough: {}", run.stderr);
    let users: Vec<String> = run.json()["keys"].as_array().unwrap().iter().map(|k| k["user_name"].as_str().unwrap().to_owned()).collect();
    assert!(users.contains(&"mgmt-user".to_owned()) && users.contains(&"member-user".to_owned()), "both accounts scanned: {users:?}");

    for action in caller_only {
        grant(&without(&policy, action));
        let run = rekey(scan);
        assert_eq!(run.code, 2, "without {action} for the caller: {}", run.stdout);
        assert!(run.stderr.contains(action), "without {action}: the error names it:\n{}", run.stderr);
        grant(&policy);
    }
    // The report is denied to the role: the scan reads that account through the API.
    emu.set_role_policy(MEMBER, &without(&member_policy, "iam:GenerateCredentialReport"));
    let run = rekey(scan);
    assert_eq!((run.code, run.json()["accounts"][1]["source"].as_str()), (0, Some("api")), "{}", run.stderr);
    emu.set_role_policy(MEMBER, &without(&member_policy, "iam:ListAccessKeys"));
    let run = rekey(scan);
    assert_eq!(run.code, 2, "the member role without iam:ListAccessKeys: {}", run.stdout);
    assert!(run.stderr.contains("iam:ListAccessKeys") && run.stderr.contains(MEMBER), "{}", run.stderr);
}
