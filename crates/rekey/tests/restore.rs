//! Restores and writes into values rekey shares with others (issue 4), and
//! what an `exec` command's stderr may show (issue 10). Each test is named
//! after the defect it pins.

mod support;

use serde_json::{json, Value};
use std::process::{Child, Command};
use support::{calls_of, wait_for, Rig, Run};

/// Stops after verification, in draining, for an hour.
const STOP_IN_DRAINING: &str = "wait_unused = \"1h\"\nlast_used_lag = \"0s\"\ngrace = \"0s\"\nverify_timeout = \"120s\"\nretry_after = \"0s\"";
const SECRET: &str = "app/shared";
const PARAM: &str = "/app/aws";
/// A held-back request is served this late: long enough for the other
/// writer (a busy machine starts a Python process slowly), far below the
/// SDK's request timeout (30 s).
const HELD_BACK_SECS: u64 = 10;

/// A second IAM user in the rig's emulator, with one key: (id, secret).
fn add_user(rig: &Rig, user: &str) -> (String, String) {
    assert_eq!(rig.aws(&["iam", "create-user", "--user-name", user]).code, 0);
    let key = rig.aws(&["iam", "create-access-key", "--user-name", user]).json()["AccessKey"].clone();
    (key["AccessKeyId"].as_str().unwrap().to_owned(), key["SecretAccessKey"].as_str().unwrap().to_owned())
}

/// rekey.toml in `dir`: the timings, then one target per (user, deliver).
fn write_config(dir: &std::path::Path, timings: &str, targets: &[(&str, String)]) {
    let mut text = format!("[rotation]\n{timings}\n");
    for (user, deliver) in targets {
        text.push_str(&format!("\n[[target]]\nuser = \"{user}\"\ndeliver = [{deliver}]\nverify = [{{ type = \"sts\" }}]\n"));
    }
    std::fs::write(dir.join("rekey.toml"), text).unwrap();
}

/// A Secrets Manager sink of the shared secret with the key in `prefix`Id / `prefix`Secret.
fn shared_secret(prefix: &str) -> String {
    format!("{{ type = \"secretsmanager\", secret_id = \"{SECRET}\", id_field = \"{prefix}Id\", secret_field = \"{prefix}Secret\" }}")
}

fn secret_value(rig: &Rig) -> Value {
    let out = rig.aws(&["secretsmanager", "get-secret-value", "--secret-id", SECRET]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    serde_json::from_str(out.json()["SecretString"].as_str().unwrap()).unwrap()
}

fn param_value(rig: &Rig) -> Value {
    let out = rig.aws(&["ssm", "get-parameter", "--name", PARAM, "--with-decryption"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    serde_json::from_str(out.json()["Parameter"]["Value"].as_str().unwrap()).unwrap()
}

fn rotations(rig: &Rig) -> Vec<Value> {
    rig.rekey(&["status", "--all", "--format", "json"]).json()["rotations"].as_array().unwrap().clone()
}

fn rotation_of<'a>(all: &'a [Value], user: &str) -> &'a Value {
    all.iter().find(|r| r["user_name"] == user).unwrap_or_else(|| panic!("a rotation of {user}: {all:?}"))
}

/// boto3 as an admin of the emulator: a person's edit of a shared value.
fn python(rig: &Rig, script: &str, args: &[&str]) -> Run {
    Command::new(rekey_emulator::python()).envs(rig.emu.env()).arg("-c").arg(script).args(args).output().expect("run python").into()
}

fn hold_back(rig: &Rig, operation: &str, count: u32) {
    rig.emu.add_fault(&json!({"operation": operation, "kind": "slow", "delay": HELD_BACK_SECS, "count": count}));
}

/// Whether `operation` was called after this call.
fn called_again<'a>(rig: &'a Rig, operation: &'a str) -> impl FnMut() -> bool + 'a {
    let before = calls_of(&rig.emu, operation);
    move || calls_of(&rig.emu, operation) > before
}

fn finish(child: Child) -> Run {
    child.wait_with_output().expect("wait for rekey").into()
}

#[test]
fn defect_4_a_rollback_keeps_another_rotations_key_in_a_shared_secret() {
    let rig = Rig::new();
    let (other_old, other_secret) = add_user(&rig, "other-app");
    let original = json!({"AppId": rig.old_key, "AppSecret": rig.old_secret, "OtherId": other_old, "OtherSecret": other_secret, "region": "eu-west-1"});
    assert_eq!(rig.aws(&["secretsmanager", "create-secret", "--name", SECRET, "--secret-string", &original.to_string()]).code, 0);
    write_config(rig.dir.path(), STOP_IN_DRAINING, &[(&rig.user, shared_secret("App")), ("other-app", shared_secret("Other"))]);
    for user in [rig.user.as_str(), "other-app"] {
        let run = rig.rekey(&["rotate", "--user", user, "--yes"]);
        assert_eq!(run.code, 0, "{}", run.stderr);
    }
    let all = rotations(&rig);
    let (mine, other) = (rotation_of(&all, &rig.user), rotation_of(&all, "other-app"));
    assert!(all.iter().all(|r| r["stage"] == "draining"), "{all:?}");
    let delivered = secret_value(&rig);
    assert_eq!((&delivered["AppId"], &delivered["OtherId"]), (&mine["new_key_id"], &other["new_key_id"]), "both rotations delivered");

    let run = rig.rekey(&["rollback", mine["id"].as_str().unwrap()]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let after = secret_value(&rig);
    assert_eq!((&after["AppId"], &after["AppSecret"]), (&original["AppId"], &original["AppSecret"]), "the rolled-back rotation's fields are back");
    assert_eq!((&after["OtherId"], &after["OtherSecret"]), (&delivered["OtherId"], &delivered["OtherSecret"]), "the other rotation's new key stays");
    assert_eq!(after["region"], "eu-west-1");

    let run = rig.rekey(&["rollback", other["id"].as_str().unwrap()]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(secret_value(&rig), original, "both rolled back: the value from before");
}

#[test]
fn defect_4_a_rollback_keeps_a_field_a_person_changed() {
    let rig = Rig::new();
    let original = json!({"AccessKeyId": rig.old_key, "SecretAccessKey": rig.old_secret, "region": "eu-west-1"});
    assert_eq!(rig.aws(&["secretsmanager", "create-secret", "--name", SECRET, "--secret-string", &original.to_string()]).code, 0);
    assert_eq!(rig.aws(&["ssm", "put-parameter", "--name", PARAM, "--type", "SecureString", "--value", &original.to_string()]).code, 0);
    let deliver = format!("{{ type = \"secretsmanager\", secret_id = \"{SECRET}\" }}, {{ type = \"ssm\", name = \"{PARAM}\" }}");
    write_config(rig.dir.path(), STOP_IN_DRAINING, &[(&rig.user, deliver)]);
    assert_eq!(rig.rekey(&["rotate", "--user", &rig.user, "--yes"]).code, 0);
    let r = rig.rotation();
    assert_eq!(r["stage"], "draining");

    // A person moves the application to another region, and adds a field.
    let mut secret = secret_value(&rig);
    assert_eq!(secret["AccessKeyId"], r["new_key_id"]);
    secret["region"] = "us-west-2".into();
    secret["endpoint"] = "https://example.com".into();
    assert_eq!(rig.aws(&["secretsmanager", "put-secret-value", "--secret-id", SECRET, "--secret-string", &secret.to_string()]).code, 0);
    let mut param = param_value(&rig);
    param["region"] = "us-west-2".into();
    assert_eq!(rig.aws(&["ssm", "put-parameter", "--name", PARAM, "--type", "SecureString", "--overwrite", "--value", &param.to_string()]).code, 0);

    // Sinks are restored last first: the parameter, then the secret, whose
    // restore is killed between its write and making it current.
    let id = r["id"].as_str().unwrap();
    let crashed: Run = rig.rekey_cmd().env("REKEY_CRASH_AFTER", format!("secretsmanager-staged:{SECRET}")).args(["rollback", id]).output().unwrap().into();
    assert_eq!(crashed.code, -1, "killed mid-restore: {}", crashed.stderr);
    let param_restored = json!({"AccessKeyId": rig.old_key, "SecretAccessKey": rig.old_secret, "region": "us-west-2"});
    assert_eq!(param_value(&rig), param_restored);
    assert_eq!(secret_value(&rig)["AccessKeyId"], r["new_key_id"], "a write not made current changes nothing");
    let run = rig.rekey(&["rollback", id]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let expected = json!({"AccessKeyId": rig.old_key, "SecretAccessKey": rig.old_secret, "region": "us-west-2", "endpoint": "https://example.com"});
    assert_eq!(secret_value(&rig), expected, "the old key is back, the person's fields stay");
    assert_eq!(param_value(&rig), param_restored);
    assert_eq!(rig.rotation()["stage"], "rolled_back");
    assert_eq!(rig.keys(), [(rig.old_key.clone(), "Active".to_owned())]);
}

/// The person's edit lands between rekey's read and its write: rekey's
/// write is held back by the emulator until the edit is in.
#[test]
fn defect_4_a_delivery_keeps_a_field_a_person_changed_meanwhile() {
    let rig = Rig::new();
    let original = json!({"AccessKeyId": rig.old_key, "SecretAccessKey": rig.old_secret, "region": "eu-west-1"});
    assert_eq!(rig.aws(&["secretsmanager", "create-secret", "--name", SECRET, "--secret-string", &original.to_string()]).code, 0);
    assert_eq!(rig.aws(&["ssm", "put-parameter", "--name", PARAM, "--type", "SecureString", "--value", &original.to_string()]).code, 0);
    let deliver = format!("{{ type = \"secretsmanager\", secret_id = \"{SECRET}\" }}, {{ type = \"ssm\", name = \"{PARAM}\" }}");
    write_config(rig.dir.path(), STOP_IN_DRAINING, &[(&rig.user, deliver)]);
    hold_back(&rig, "secretsmanager:PutSecretValue", 1);
    hold_back(&rig, "ssm:PutParameter", 1);
    let (secret_put, param_put) = (called_again(&rig, "secretsmanager:PutSecretValue"), called_again(&rig, "ssm:PutParameter"));
    let rotate = rig.rekey_cmd().args(["rotate", "--user", &rig.user, "--yes"]).spawn().unwrap();

    wait_for("rekey's PutSecretValue", secret_put);
    let edit = python(
        &rig,
        "import boto3, json, sys\n\
         c = boto3.client('secretsmanager')\n\
         v = json.loads(c.get_secret_value(SecretId='app/shared')['SecretString'])\n\
         assert v['AccessKeyId'] == sys.argv[1], 'rekey wrote before the edit: the test is void'\n\
         v['region'] = 'us-west-2'\n\
         c.put_secret_value(SecretId='app/shared', SecretString=json.dumps(v))",
        &[&rig.old_key],
    );
    assert_eq!(edit.code, 0, "{}", edit.stderr);
    wait_for("rekey's PutParameter", param_put);
    let edit = python(
        &rig,
        "import boto3, json, sys\n\
         c = boto3.client('ssm')\n\
         v = json.loads(c.get_parameter(Name='/app/aws', WithDecryption=True)['Parameter']['Value'])\n\
         assert v['AccessKeyId'] == sys.argv[1], 'rekey wrote before the edit: the test is void'\n\
         v['region'] = 'us-west-2'\n\
         c.put_parameter(Name='/app/aws', Type='SecureString', Overwrite=True, Value=json.dumps(v))",
        &[&rig.old_key],
    );
    assert_eq!(edit.code, 0, "{}", edit.stderr);

    let run = finish(rotate);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let r = rig.rotation();
    assert_eq!(r["stage"], "draining");
    let wrong: Vec<String> = [("secret", secret_value(&rig)), ("parameter", param_value(&rig))]
        .into_iter()
        .filter(|(_, value)| value["AccessKeyId"] != r["new_key_id"] || value["region"] != "us-west-2")
        .map(|(sink, value)| format!("the {sink} should hold the new key and the person's region: {value}"))
        .collect();
    assert!(wrong.is_empty(), "{wrong:?}");
}

#[test]
fn defect_4_two_rotations_into_one_secret_in_one_pass_lose_no_write() {
    let rig = Rig::new();
    let (other_old, other_secret) = add_user(&rig, "other-app");
    let original = json!({"AppId": rig.old_key, "AppSecret": rig.old_secret, "OtherId": other_old, "OtherSecret": other_secret});
    assert_eq!(rig.aws(&["secretsmanager", "create-secret", "--name", SECRET, "--secret-string", &original.to_string()]).code, 0);
    write_config(rig.dir.path(), STOP_IN_DRAINING, &[(&rig.user, shared_secret("App")), ("other-app", shared_secret("Other"))]);
    // Both rotations stop before creating a key (AWS answers an error)...
    rig.emu.inject_fault("iam:CreateAccessKey", "ServiceUnavailable", 503, 100);
    for user in [rig.user.as_str(), "other-app"] {
        assert_eq!(rig.rekey(&["rotate", "--user", user, "--yes"]).code, 2);
    }
    rig.emu.clear_faults();
    // ...and one `rekey run` advances both at once; each write is served
    // late, so both deliveries read the secret before either write lands.
    hold_back(&rig, "secretsmanager:PutSecretValue", 1);
    let run = rig.rekey(&["run", "--once"]);
    assert_eq!(run.code, 0, "{}", run.stderr);

    let all = rotations(&rig);
    assert!(all.iter().all(|r| r["stage"] == "draining"), "{all:?}");
    let value = secret_value(&rig);
    assert_eq!(value["AppId"], rotation_of(&all, &rig.user)["new_key_id"], "{value}");
    assert_eq!(value["OtherId"], rotation_of(&all, "other-app")["new_key_id"], "{value}");
}

/// Two `rekey` processes (two hosts, two state stores) deliver into one
/// secret at the same time: no in-process lock can order them.
#[test]
fn defect_4_two_rekey_processes_into_one_secret_lose_no_write() {
    let rig = Rig::new();
    let (other_old, other_secret) = add_user(&rig, "other-app");
    let original = json!({"AppId": rig.old_key, "AppSecret": rig.old_secret, "OtherId": other_old, "OtherSecret": other_secret});
    assert_eq!(rig.aws(&["secretsmanager", "create-secret", "--name", SECRET, "--secret-string", &original.to_string()]).code, 0);
    write_config(rig.dir.path(), STOP_IN_DRAINING, &[(&rig.user, shared_secret("App"))]);
    let other_host = tempfile::tempdir().unwrap();
    write_config(other_host.path(), STOP_IN_DRAINING, &[("other-app", shared_secret("Other"))]);
    let rekey_on_other_host = || {
        let mut cmd = support::rekey_cmd(Some(&rig.emu), other_host.path());
        cmd.arg("--state").arg(other_host.path().join("state.db"));
        cmd
    };
    // The first write of each is served late: both read before either lands.
    hold_back(&rig, "secretsmanager:PutSecretValue", 2);
    let mine = rig.rekey_cmd().args(["rotate", "--user", &rig.user, "--yes"]).spawn().unwrap();
    let theirs = rekey_on_other_host().args(["rotate", "--user", "other-app", "--yes"]).spawn().unwrap();
    let (mine, theirs) = (finish(mine), finish(theirs));
    assert_eq!((mine.code, theirs.code), (0, 0), "{}\n{}", mine.stderr, theirs.stderr);

    let status = |cmd: &mut Command| -> Value { Run::from(cmd.args(["status", "--format", "json"]).output().unwrap()).json()["rotations"][0].clone() };
    let (r_mine, r_theirs) = (status(&mut rig.rekey_cmd()), status(&mut rekey_on_other_host()));
    assert_eq!((r_mine["stage"].as_str(), r_theirs["stage"].as_str()), (Some("draining"), Some("draining")));
    let value = secret_value(&rig);
    assert_eq!(value["AppId"], r_mine["new_key_id"], "{value}");
    assert_eq!(value["OtherId"], r_theirs["new_key_id"], "{value}");
}

/// No run of 8 or more characters of `secret` in rekey's output or state.
fn assert_no_part_of(rig: &Rig, secret: &str, outputs: &[&Run]) {
    const SHORTEST: usize = 8;
    let mut texts: Vec<(String, String)> = outputs.iter().map(|r| ("output".to_owned(), format!("{}\n{}", r.stdout, r.stderr))).collect();
    for name in ["state.db", "state.db-wal"] {
        if let Ok(bytes) = std::fs::read(rig.path(name)) {
            texts.push((name.to_owned(), String::from_utf8_lossy(&bytes).into_owned()));
        }
    }
    for (what, text) in &texts {
        for part in secret.as_bytes().windows(SHORTEST) {
            let part = std::str::from_utf8(part).unwrap();
            assert!(!text.contains(part), "{SHORTEST} characters of the secret reached the {what}");
        }
    }
}

/// What a command wrote on stderr, around the secret: (name, shell code
/// printing `$secret`).
const LEAKS: &[(&str, &str)] = &[
    // The secret straddles the 300th character.
    ("cut", "printf 'failed: %0270d %s\\n' 0 \"$secret\" >&2"),
    ("wrapped", "printf 'failed: %s\\n%s\\n' \"${secret%????????????????????}\" \"${secret#????????????????????}\" >&2"),
    ("base64", "printf '%s' \"$secret\" | base64 >&2"),
];

/// Runs rekey until the exec step failed, and checks its output, `status`,
/// `history` and the state store for any part of the secret that
/// `seen` recorded.
fn check_exec_leak(rig: &Rig, name: &str, seen: &std::path::Path) {
    let run = rig.rekey(&["rotate", "--user", &rig.user, "--yes"]);
    assert_eq!(run.code, 2, "{name}: the command's failure stops the rotation: {}", run.stderr);
    let secret = std::fs::read_to_string(seen).unwrap_or_else(|e| panic!("{name}: the command saw the secret: {e}"));
    let secret = secret.trim();
    assert_eq!(secret.len(), 40, "{name}");
    let status = rig.rekey(&["status"]);
    let json = rig.rekey(&["status", "--all", "--format", "json"]);
    let history = rig.rekey(&["history", "--format", "json"]);
    let shown = [&run, &status, &json, &history].iter().any(|r| r.stdout.contains("exit code 1: ") || r.stderr.contains("exit code 1: "));
    assert!(shown, "{name}: the command's last stderr line is shown: {}", run.stderr);
    let mut forms = vec![secret.to_owned()];
    if name == "base64" {
        let out = Command::new("sh").arg("-c").arg("printf '%s' \"$1\" | base64 -w0").arg("sh").arg(secret).output().unwrap();
        forms.push(String::from_utf8(out.stdout).unwrap());
    }
    for form in &forms {
        assert_no_part_of(rig, form, &[&run, &status, &json, &history]);
    }
}

#[test]
fn defect_10_an_exec_sinks_stderr_never_shows_part_of_the_secret() {
    for (name, print) in LEAKS {
        let rig = Rig::new();
        let seen = rig.path("seen");
        let script = format!(
            "input=$(cat); secret=$(printf '%s' \"$input\" | sed 's/.*\"SecretAccessKey\":\"\\([^\"]*\\)\".*/\\1/'); printf '%s' \"$secret\" > '{}'; {print}; exit 1",
            seen.display()
        );
        let deliver = format!(
            "{{ type = \"credentials-file\", path = \"{}\", profile = \"app\" }}, {{ type = \"exec\", command = [\"sh\", \"-c\", {}] }}",
            rig.credentials().display(),
            toml_string(&script)
        );
        rig.config(STOP_IN_DRAINING, &deliver, "{ type = \"sts\" }");
        check_exec_leak(&rig, name, &seen);
    }
}

#[test]
fn defect_10_an_exec_verifiers_stderr_never_shows_part_of_the_secret() {
    for (name, print) in LEAKS {
        let rig = Rig::new();
        let seen = rig.path("seen");
        // The application's health check prints the key it reads.
        let script = format!(
            "secret=$(sed -n '/^\\[app\\]/,$ s/^aws_secret_access_key = //p' '{}'); printf '%s' \"$secret\" > '{}'; {print}; exit 1",
            rig.credentials().display(),
            seen.display()
        );
        let deliver = format!("{{ type = \"credentials-file\", path = \"{}\", profile = \"app\" }}", rig.credentials().display());
        let verify = format!("{{ type = \"exec\", command = [\"sh\", \"-c\", {}] }}", toml_string(&script));
        rig.config(&STOP_IN_DRAINING.replace("\"120s\"", "\"1s\""), &deliver, &verify);
        check_exec_leak(&rig, name, &seen);
    }
}

/// `text` as a TOML basic string.
fn toml_string(text: &str) -> String {
    Value::String(text.to_owned()).to_string()
}
