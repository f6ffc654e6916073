//! The fault matrix: every AWS operation a rotation calls, times every way
//! AWS misbehaves (throttling, HTTP 500 and 503, a reply slower than rekey's
//! request timeout, a dropped connection, a reply lost after the request
//! succeeded, half a reply). The rotation delivers to a credentials file, a
//! Secrets Manager secret and an SSM parameter. After the faulty command,
//! whatever it did: every sink holds an active key, no half-written file is
//! left, no secret is in rekey's output or state. After the fault is gone,
//! `rekey run` converges to exactly one key, the new one, in every sink. The
//! same with the state in DynamoDB, its operations faulted; and scans, which
//! read right or stop naming the operation. Each case prints a line of the
//! matrix (`--nocapture` shows them).

mod support;

use serde_json::{json, Value};
use std::process::Command;
use support::{Rig, Run, LONG, OTHER_PROFILE};

/// Every AWS operation a rotation with these sinks calls.
const ROTATION_OPS: &[&str] = &[
    "sts:GetCallerIdentity",
    "iam:GetUser",
    "iam:ListAccessKeys",
    "iam:CreateAccessKey",
    "secretsmanager:GetSecretValue",
    "secretsmanager:PutSecretValue",
    "secretsmanager:UpdateSecretVersionStage",
    "ssm:GetParameter",
    "ssm:PutParameter",
    "iam:GetAccessKeyLastUsed",
    "iam:UpdateAccessKey",
    "iam:DeleteAccessKey",
    "securityhub:GetFindings",
    "securityhub:BatchUpdateFindings",
];

/// One attempt of a request may take this long (`[aws] request_timeout`)...
const REQUEST_TIMEOUT_SECS: u64 = 2;
/// ...and a slow fault answers after this long: too late.
const SLOW_SECS: u64 = 4;

const CONFIG: &str = "wait_unused = \"0s\"\nlast_used_lag = \"0s\"\ngrace = \"0s\"\nverify_timeout = \"10s\"\nretry_after = \"0s\"";

#[derive(Clone, Copy, Debug)]
enum Fault {
    Throttled,
    Error500,
    Error503,
    Slow,
    Dropped,
    Lost,
    Garbled,
}

impl Fault {
    /// The harness's fault for `op`, `count` times.
    fn body(self, op: &str, count: u32) -> Value {
        let error = |code: &str, status: u16| json!({"operation": op, "code": code, "status": status, "message": format!("injected {code}"), "count": count});
        match self {
            // IAM's own throttling shape: code Throttling, HTTP 400.
            Fault::Throttled => error("Throttling", 400),
            Fault::Error500 => error("InternalFailure", 500),
            Fault::Error503 => error("ServiceUnavailable", 503),
            Fault::Slow => json!({"operation": op, "kind": "slow", "delay": SLOW_SECS, "count": count}),
            Fault::Dropped => json!({"operation": op, "kind": "drop", "count": count}),
            Fault::Lost => json!({"operation": op, "kind": "lost", "count": count}),
            Fault::Garbled => json!({"operation": op, "kind": "garbled", "count": count}),
        }
    }
}

/// How long a fault lasts: once (the SDK's own retry meets a working AWS),
/// or longer than every retry of the first command.
#[derive(Clone, Copy, Debug)]
enum Lasting {
    Once,
    Outlasting,
}

impl Lasting {
    /// The harness fault's `count`.
    fn count(self) -> u32 {
        match self {
            Lasting::Once => 1,
            Lasting::Outlasting => 100,
        }
    }
}

/// The rig: the usual user and credentials file, plus a secret and a
/// parameter holding the old key, all three delivered to.
fn rig_with_three_sinks() -> Rig {
    let rig = Rig::new();
    let value = json!({"AccessKeyId": rig.old_key, "SecretAccessKey": rig.old_secret}).to_string();
    let script = "import boto3, sys\n\
                  boto3.client('secretsmanager').create_secret(Name='app/aws', SecretString=sys.argv[1])\n\
                  boto3.client('ssm').put_parameter(Name='/app/aws', Type='SecureString', Value=sys.argv[1])";
    let out = python(&rig, script, &[&value]);
    assert_eq!(out.code, 0, "seeding the sinks: {}", out.stderr);
    let deliver = format!(
        "{{ type = \"credentials-file\", path = \"{}\", profile = \"app\" }}, {{ type = \"secretsmanager\", secret_id = \"app/aws\" }}, {{ type = \"ssm\", name = \"/app/aws\" }}",
        rig.credentials().display()
    );
    rig.config(&format!("{CONFIG}\n\n[aws]\nrequest_timeout = \"{REQUEST_TIMEOUT_SECS}s\""), &deliver, "{ type = \"sts\" }");
    rig
}

/// boto3 as an admin of the emulator (one process: cheaper than the AWS CLI).
fn python(rig: &Rig, script: &str, args: &[&str]) -> Run {
    Command::new(rekey_emulator::python()).envs(rig.emu.env()).arg("-c").arg(script).args(args).output().expect("run python").into()
}

/// The key id each sink holds: the credentials file's `[app]`, the secret, the parameter.
fn sink_keys(rig: &Rig) -> Vec<String> {
    let script = "import boto3, json\n\
                  s = boto3.client('secretsmanager').get_secret_value(SecretId='app/aws')['SecretString']\n\
                  p = boto3.client('ssm').get_parameter(Name='/app/aws', WithDecryption=True)['Parameter']['Value']\n\
                  print(json.dumps([json.loads(s)['AccessKeyId'], json.loads(p)['AccessKeyId']]))";
    let out = python(rig, script, &[]);
    assert_eq!(out.code, 0, "reading the sinks: {}", out.stderr);
    let text = std::fs::read_to_string(rig.credentials()).unwrap();
    assert!(text.starts_with(OTHER_PROFILE), "the other profile is untouched:\n{text}");
    let file_key = profile_value(&text, "aws_access_key_id");
    let mut keys = vec![file_key];
    keys.extend(serde_json::from_str::<Vec<String>>(out.stdout.trim()).unwrap());
    keys
}

fn profile_value(file: &str, key: &str) -> String {
    let app = file.split("[app]").nth(1).expect("an [app] profile");
    app.lines().find_map(|l| l.strip_prefix(key)).map(|v| v.trim_start_matches([' ', '=']).trim().to_owned()).expect(key)
}

/// Where the rotation's state lives: the rig's SQLite file, or a DynamoDB
/// table in the emulator (its requests are then faulted too).
#[derive(Clone, Copy, Debug)]
enum Store {
    Sqlite,
    Dynamodb,
}

const TABLE: &str = "rekey-state";

fn rekey_cmd(rig: &Rig, store: Store) -> Command {
    match store {
        Store::Sqlite => rig.rekey_cmd(),
        Store::Dynamodb => {
            let mut cmd = support::rekey_cmd(Some(&rig.emu), rig.dir.path());
            cmd.arg("--state").arg(format!("dynamodb:{TABLE}"));
            cmd
        }
    }
}

fn rekey(rig: &Rig, store: Store, args: &[&str]) -> Run {
    rekey_cmd(rig, store).args(args).output().expect("run rekey").into()
}

/// The rotation, if one was started.
fn rotation(rig: &Rig, store: Store) -> Option<Value> {
    let run = rekey(rig, store, &["status", "--all", "--format", "json"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let all = run.json()["rotations"].as_array().unwrap().clone();
    assert!(all.len() <= 1, "one rotation at most: {all:?}");
    all.first().cloned()
}

fn stage(rig: &Rig, store: Store) -> Option<String> {
    rotation(rig, store).map(|r| r["stage"].as_str().unwrap().to_owned())
}

/// What must hold whenever rekey stops, faults or not: every sink holds a
/// key that is active (the application works), and no secret was written
/// where rekey keeps its own files.
fn assert_safe(rig: &Rig, store: Store, case: &str, finished: bool, outputs: &[&Run]) {
    let keys = rig.keys();
    for (sink, key) in ["credentials file", "secret", "parameter"].iter().zip(sink_keys(rig)) {
        assert!(keys.contains(&(key.clone(), "Active".to_owned())), "{case}: the {sink} holds {key}, which is not an active key: {keys:?}");
    }
    // A restore copy (the old profile, for a rollback) lives as long as its
    // rotation; a half-written copy never outlives the command.
    let temp: Vec<_> = rig.leftovers().into_iter().filter(|f| f.contains("rekey-tmp-") || (finished && f.contains("rekey-restore-"))).collect();
    assert!(temp.is_empty(), "{case}: files left: {temp:?}");
    let secret = profile_value(&std::fs::read_to_string(rig.credentials()).unwrap(), "aws_secret_access_key");
    rig.assert_secret_nowhere(&secret, outputs);
    rig.assert_secret_nowhere(&rig.old_secret, outputs);
    if let Store::Dynamodb = store {
        let dump = python(rig, &format!("import boto3\nprint(boto3.client('dynamodb').scan(TableName='{TABLE}')['Items'])"), &[]);
        assert_eq!(dump.code, 0, "{}", dump.stderr);
        assert!(!dump.stdout.contains(&secret) && !dump.stdout.contains(&rig.old_secret), "{case}: a secret reached the table");
    }
}

/// One case: the fault on `op`, `rekey rotate`, the checks, the fault gone,
/// `rekey run` until completed, the checks. Returns the matrix line.
fn case(store: Store, op: &str, fault: Fault, lasting: Lasting) -> String {
    let name = format!("{op} × {fault:?} ({lasting:?}), state in {store:?}");
    let rig = rig_with_three_sinks();
    if let Store::Dynamodb = store {
        let init = rekey(&rig, store, &["state", "init"]);
        assert_eq!(init.code, 0, "{}", init.stderr);
    }
    rig.emu.add_fault(&fault.body(op, lasting.count()));
    let mut cmd = rekey_cmd(&rig, store);
    if let Lasting::Outlasting = lasting {
        cmd.env("AWS_MAX_ATTEMPTS", "2"); // the fault outlasts the retries sooner
    }
    let first: Run = cmd.args(["rotate", "--user", &rig.user, "--yes"]).output().expect("run rekey").into();
    assert!(first.code == 0 || first.code == 2, "{name}: exit {} (0 or 2 only):\n{}", first.code, first.stderr);
    if first.code == 2 {
        assert!(first.stderr.contains(op), "{name}: the error names the operation:\n{}", first.stderr);
    }
    rig.emu.clear_faults();
    if let Fault::Slow = fault {
        // Requests held back are served once their delay is over; let them
        // land, so that what follows does not race them.
        std::thread::sleep(std::time::Duration::from_secs(SLOW_SECS + 1));
    }
    let stopped_at = stage(&rig, store).unwrap_or_else(|| "before starting".to_owned());
    assert_safe(&rig, store, &format!("{name}, after the fault"), false, &[&first]);

    let started = std::time::Instant::now();
    let mut runs = 0;
    let done = loop {
        let now = rotation(&rig, store);
        match &now {
            Some(r) if r["stage"] == "completed" => break r.clone(),
            _ => assert!(started.elapsed() < LONG, "{name}: not completed after {LONG:?}: {now:?}"),
        }
        // Refused before it started, it is started again, as a person would.
        let run = if now.is_none() { rekey(&rig, store, &["rotate", "--user", &rig.user, "--yes"]) } else { rekey(&rig, store, &["run", "--once"]) };
        runs += 1;
        assert_eq!(run.code, 0, "{name}: rekey run after the fault: {}", run.stderr);
    };
    let new_key = done["new_key_id"].as_str().unwrap().to_owned();
    assert_eq!(rig.keys(), [(new_key.clone(), "Active".to_owned())], "{name}: exactly one key, the new one");
    assert_eq!(sink_keys(&rig), [new_key.clone(), new_key.clone(), new_key], "{name}: every sink has the new key");
    assert_safe(&rig, store, &format!("{name}, at the end"), true, &[&first]);
    let history = rekey(&rig, store, &["history", "--format", "json"]).json();
    let noted: Vec<String> = history["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["event"].as_str())
        .filter(|e| ["step_failed", "deleted_unrecorded_key", "deleted_lost_key", "reactivated_old_key"].contains(e))
        .map(str::to_owned)
        .collect();
    let line = format!(
        "{op:32} {:10} {:10} {:8} first exit {}, stopped {stopped_at:20} then {runs} run(s) to completed; {}",
        format!("{fault:?}"),
        format!("{lasting:?}"),
        format!("{store:?}"),
        first.code,
        if noted.is_empty() { "-".to_owned() } else { noted.join(", ") }
    );
    eprintln!("{line}");
    line
}

fn matrix(faults: &[(Fault, Lasting)]) {
    for op in ROTATION_OPS {
        for &(fault, lasting) in faults {
            case(Store::Sqlite, op, fault, lasting);
        }
    }
}

#[test]
fn throttling() {
    matrix(&[(Fault::Throttled, Lasting::Outlasting)]);
}

#[test]
fn server_errors() {
    matrix(&[(Fault::Error500, Lasting::Outlasting), (Fault::Error503, Lasting::Outlasting)]);
}

#[test]
fn slow_replies() {
    matrix(&[(Fault::Slow, Lasting::Once), (Fault::Slow, Lasting::Outlasting)]);
}

#[test]
fn dropped_connections() {
    matrix(&[(Fault::Dropped, Lasting::Outlasting)]);
}

/// Half an answer: what AWS did, the client cannot read.
#[test]
fn garbled_replies() {
    matrix(&[(Fault::Garbled, Lasting::Once)]);
}

#[test]
fn lost_replies() {
    matrix(&[(Fault::Lost, Lasting::Once), (Fault::Lost, Lasting::Outlasting)]);
}

/// The state in DynamoDB: every DynamoDB operation a rotation makes (found
/// by a rotation without faults) under the faults that can leave a write
/// done but unknown to rekey, or undone but believed done.
#[test]
fn dynamodb_state() {
    let rig = rig_with_three_sinks();
    assert_eq!(rekey(&rig, Store::Dynamodb, &["state", "init"]).code, 0);
    rig.emu.reset_calls();
    assert_eq!(rekey(&rig, Store::Dynamodb, &["rotate", "--user", &rig.user, "--yes"]).code, 0);
    let ops: Vec<String> = rig.emu.calls()["by_operation"].as_object().unwrap().keys().filter(|op| op.starts_with("dynamodb:")).cloned().collect();
    assert!(ops.len() >= 3, "{ops:?}");
    for op in &ops {
        for (fault, lasting) in [(Fault::Error500, Lasting::Outlasting), (Fault::Dropped, Lasting::Outlasting), (Fault::Lost, Lasting::Once), (Fault::Lost, Lasting::Outlasting), (Fault::Garbled, Lasting::Once)] {
            case(Store::Dynamodb, op, fault, lasting);
        }
    }
}

/// A scan under every fault on every operation it calls (found by a scan
/// without faults), for both sources: it either reads the same keys as
/// without the fault (retried, or read another way) or stops with exit 2
/// naming the operation. Never a wrong answer, never another exit code.
#[test]
fn scans() {
    let emu = rekey_emulator::Emulator::with_scenario_file(&rekey_emulator::scenarios_dir().join("mixed.json"), Some("2026-11-28T12:00:00Z"));
    let home = tempfile::tempdir().unwrap();
    let scan = |env: &[(&str, &str)], source: &str| -> Run {
        let mut cmd = support::rekey_cmd(Some(&emu), home.path());
        cmd.envs(env.iter().copied()).args(["scan", "--source", source, "--as-of", "2026-11-28T12:00:00Z", "--format", "json"]);
        cmd.output().expect("run rekey").into()
    };
    let keys = |run: &Run| -> Vec<(String, String)> {
        let mut keys: Vec<_> = run.json()["keys"].as_array().unwrap().iter().map(|k| (k["user_name"].to_string(), k["result"].to_string())).collect();
        keys.sort();
        keys
    };
    let faults = [
        (Fault::Throttled, Lasting::Outlasting),
        (Fault::Error500, Lasting::Outlasting),
        (Fault::Error503, Lasting::Outlasting),
        (Fault::Slow, Lasting::Outlasting),
        (Fault::Dropped, Lasting::Outlasting),
        (Fault::Lost, Lasting::Outlasting),
        (Fault::Garbled, Lasting::Once),
    ];
    for source in ["credential-report", "api"] {
        emu.reset_calls();
        let baseline = scan(&[], source);
        assert_eq!(baseline.code, 1, "{source}: {}", baseline.stderr);
        let ops: Vec<String> = emu.calls()["by_operation"].as_object().unwrap().keys().cloned().collect();
        assert!(ops.len() >= 3, "{source}: {ops:?}");
        for op in &ops {
            for (fault, lasting) in faults {
                let name = format!("scan --source {source}: {op} × {fault:?} ({lasting:?})");
                emu.add_fault(&fault.body(op, lasting.count()));
                emu.expire_credential_report();
                let run = scan(&[("AWS_MAX_ATTEMPTS", "2")], source);
                emu.clear_faults();
                if let Fault::Slow = fault {
                    std::thread::sleep(std::time::Duration::from_secs(SLOW_SECS + 1));
                }
                let outcome = match run.code {
                    2 => {
                        assert!(run.stderr.contains(op.as_str()), "{name}: the error names the operation:\n{}", run.stderr);
                        "exit 2, named".to_owned()
                    }
                    1 => {
                        assert_eq!(keys(&run), keys(&baseline), "{name}: the same keys and results as without the fault");
                        format!("same result ({} warning(s))", run.json()["warnings"].as_array().map_or(0, Vec::len))
                    }
                    code => panic!("{name}: exit {code}:\n{}", run.stderr),
                };
                eprintln!("{:18} {op:36} {:10} {:10} {outcome}", source, format!("{fault:?}"), format!("{lasting:?}"));
            }
        }
    }
}

/// The other commands that read AWS: an organization scan (Organizations,
/// AssumeRole, then each account), `consumers` (CloudTrail) and `findings`
/// (Security Hub). Every operation each calls, under an error, a lost reply
/// and a cut-short answer: the same output as without the fault, or exit 2
/// naming the operation.
#[test]
fn other_commands() {
    let emu = rekey_emulator::Emulator::with_scenario_file(&rekey_emulator::scenarios_dir().join("cloudtrail-demo.json"), None);
    let home = tempfile::tempdir().unwrap();
    std::fs::write(home.path().join("rekey.toml"), "[org]\nrole_name = \"OrganizationAccountAccessRole\"\n").unwrap();
    let commands: [&[&str]; 3] = [
        &["scan", "--org", "--format", "json", "--as-of", "2026-11-28T12:00:00Z", "--fail-on", "never"],
        &["consumers", "--user", "ci-deployer", "--format", "json"],
        &["findings", "--format", "json"],
    ];
    let rekey = |args: &[&str], env: &[(&str, &str)]| -> Run {
        support::rekey_cmd(Some(&emu), home.path()).envs(env.iter().copied()).args(args).output().expect("run rekey").into()
    };
    // What a command said, without the moments it said it (a new report is
    // generated for each run).
    fn timeless(v: &mut Value) {
        match v {
            Value::Object(o) => {
                o.retain(|k, _| !k.contains("generated"));
                o.values_mut().for_each(timeless);
            }
            Value::Array(a) => a.iter_mut().for_each(timeless),
            _ => {}
        }
    }
    let said = |run: &Run| -> Value {
        let mut v = run.json();
        timeless(&mut v);
        v
    };
    for args in commands {
        emu.reset_calls();
        let baseline = rekey(args, &[]);
        assert!((0..=2).contains(&baseline.code), "{args:?}: {}", baseline.stderr);
        let ops: Vec<String> = emu.calls()["by_operation"].as_object().unwrap().keys().cloned().collect();
        for op in &ops {
            for (fault, lasting) in [(Fault::Error500, Lasting::Outlasting), (Fault::Lost, Lasting::Outlasting), (Fault::Garbled, Lasting::Once)] {
                let name = format!("{} {op} × {fault:?} ({lasting:?})", args[0]);
                emu.add_fault(&fault.body(op, lasting.count()));
                emu.expire_credential_report();
                let run = rekey(args, &[("AWS_MAX_ATTEMPTS", "2")]);
                emu.clear_faults();
                let outcome = if run.code == baseline.code && said(&run) == said(&baseline) {
                    "same output"
                } else {
                    if run.code != 2 {
                        let (a, b) = (said(&run), said(&baseline));
                        let differ: Vec<_> = a.as_object().unwrap().iter().filter(|(k, v)| b.get(k.as_str()) != Some(v)).map(|(k, v)| format!("{k}: {v} vs {}", b[k.as_str()])).collect();
                        panic!("{name}: a different answer must be an error: {differ:?}\n{}", run.stderr);
                    }
                    assert!(run.stderr.contains(op.as_str()), "{name}: the error names the operation:\n{}", run.stderr);
                    "exit 2, named"
                };
                eprintln!("{:10} {op:36} {:10} {:10} {outcome}", args[0], format!("{fault:?}"), format!("{lasting:?}"));
            }
        }
    }
}

/// A proxy's or load balancer's HTML error page is the server error it is,
/// not "an answer cut short" nor "Unknown: no message".
#[test]
fn an_html_error_page_is_reported_as_the_server_error_it_is() {
    let rig = Rig::new();
    rig.emu.add_fault(&serde_json::json!({"operation": "iam:ListUsers", "kind": "html", "status": 502, "count": 50}));
    let run = rig.rekey(&["scan", "--source", "api"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("iam:ListUsers failed: HTTP 502"), "{}", run.stderr);
    assert!(!run.stderr.contains("cut short") && !run.stderr.contains("Unknown"), "{}", run.stderr);
}
