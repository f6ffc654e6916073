//! The rotation workflow end to end against the emulator, with real
//! processes: the AWS CLI as the application, a real credentials file, a real
//! SQLite state file, exec verifiers as scripts.

mod support;

use serde_json::Value;
use std::time::Duration;
use support::{calls_of, Rig, OTHER_PROFILE};

/// No waits. Verifiers that should pass get two minutes (a busy machine
/// starts the AWS CLI slowly); ones meant to fail fail at once.
const ZERO_WAITS: &str = "wait_unused = \"0s\"\nlast_used_lag = \"0s\"\ngrace = \"0s\"\nverify_timeout = \"120s\"";
/// No waits, and a failing verifier gives up after 3 s.
const FAIL_FAST: &str = "wait_unused = \"0s\"\nlast_used_lag = \"0s\"\ngrace = \"0s\"\nverify_timeout = \"3s\"";
/// Stops after verification, in draining, for an hour.
const STOP_IN_DRAINING: &str = "wait_unused = \"1h\"\nlast_used_lag = \"0s\"\ngrace = \"0s\"\nverify_timeout = \"120s\"";
/// Stops after deactivation, in awaiting_delete, for an hour.
const STOP_IN_GRACE: &str = "wait_unused = \"0s\"\nlast_used_lag = \"0s\"\ngrace = \"1h\"\nverify_timeout = \"120s\"";

fn profile_value(file: &str, key: &str) -> String {
    let app = file.split("[app]").nth(1).expect("an [app] profile");
    app.lines().find_map(|l| l.strip_prefix(key)).map(|v| v.trim_start_matches([' ', '=']).trim().to_owned()).expect(key)
}

#[test]
fn happy_path_with_the_aws_cli_reading_a_credentials_file() {
    let rig = Rig::new();
    rig.config_app(ZERO_WAITS);
    use std::os::unix::fs::PermissionsExt;
    // Readable by the application's group: a rotation must not take that away.
    std::fs::set_permissions(rig.credentials(), std::fs::Permissions::from_mode(0o640)).unwrap();
    assert_eq!(rig.app().code, 0, "the application works before");

    let run = rig.rekey(&["rotate", "--user", &rig.user, "--yes", "-vvv"]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let r = rig.rotation();
    assert_eq!(r["stage"], "completed", "{r}");
    let new_key = r["new_key_id"].as_str().unwrap().to_owned();

    assert_eq!(rig.keys(), [(new_key.clone(), "Active".to_owned())], "exactly one key, the new one, active");
    let app = rig.app();
    assert_eq!(app.code, 0, "the application still works: {}", app.stderr);
    assert!(app.stdout.contains(&format!("user/{}", rig.user)));

    let file = std::fs::read_to_string(rig.credentials()).unwrap();
    assert!(file.starts_with(OTHER_PROFILE), "other profiles untouched");
    assert_eq!(profile_value(&file, "aws_access_key_id"), new_key);
    assert!(file.ends_with("region = us-east-1\n"));
    assert_eq!(rig.leftovers(), Vec::<String>::new(), "the restore copy (a dead key) is removed once the old key is deleted");
    assert_eq!(std::fs::metadata(rig.credentials()).unwrap().permissions().mode() & 0o777, 0o640, "the mode is kept");

    let new_secret = profile_value(&file, "aws_secret_access_key");
    let history = rig.rekey(&["history", "--format", "json"]);
    let status = rig.rekey(&["status"]);
    rig.assert_secret_nowhere(&new_secret, &[&run, &history, &status]);
    rig.assert_secret_nowhere(&rig.old_secret, &[&run, &history, &status]);

    let events: Vec<String> = history.json()["events"].as_array().unwrap().iter().map(|e| e["event"].as_str().unwrap().to_owned()).collect();
    for expected in ["rotation_started", "created_new_key", "delivered", "verified", "deactivated_old_key", "deleted_old_key", "stage_deleted"] {
        assert!(events.iter().any(|e| e == expected), "history has {expected}: {events:?}");
    }
    let created = history.json()["events"].as_array().unwrap().iter().find(|e| e["event"] == "created_new_key").unwrap().clone();
    assert!(created["aws_request_id"].as_str().is_some_and(|id| !id.is_empty()), "AWS request ids are audited");
}

#[test]
fn secretsmanager_and_ssm_sinks_hold_the_new_key() {
    let rig = Rig::new();
    let before = r#"{"AccessKeyId":"AKIABEFOREBEFOREXXXX","SecretAccessKey":"before","region":"eu-west-1"}"#;
    assert_eq!(rig.aws(&["secretsmanager", "create-secret", "--name", "app/aws", "--secret-string", before]).code, 0);
    assert_eq!(rig.aws(&["ssm", "put-parameter", "--name", "/app/aws", "--type", "SecureString", "--value", "old"]).code, 0);
    rig.config(
        ZERO_WAITS,
        r#"{ type = "secretsmanager", secret_id = "app/aws" }, { type = "ssm", name = "/app/aws" }, { type = "ssm", id_name = "/app/id", secret_name = "/app/secret" }"#,
        r#"{ type = "sts" }"#,
    );
    // -vvv: the SDK traces requests that carry the secret; none may show it.
    let run = rig.rekey(&["rotate", "--user", &rig.user, "--yes", "-vvv"]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert!(run.stderr.contains("PutSecretValue"), "the SDK traced its requests");
    let r = rig.rotation();
    assert_eq!(r["stage"], "completed");
    let new_key = r["new_key_id"].as_str().unwrap();

    let secret = rig.aws(&["secretsmanager", "get-secret-value", "--secret-id", "app/aws"]).json();
    let value: Value = serde_json::from_str(secret["SecretString"].as_str().unwrap()).unwrap();
    assert_eq!(value["AccessKeyId"], new_key);
    assert_eq!(value["region"], "eu-west-1", "other fields of the secret survive");
    let previous = rig.aws(&["secretsmanager", "get-secret-value", "--secret-id", "app/aws", "--version-stage", "AWSPREVIOUS"]).json();
    assert_eq!(previous["SecretString"], before, "the previous value stays reachable as AWSPREVIOUS");

    let param = |name: &str| rig.aws(&["ssm", "get-parameter", "--name", name, "--with-decryption"]).json()["Parameter"]["Value"].as_str().unwrap().to_owned();
    let json_param: Value = serde_json::from_str(&param("/app/aws")).unwrap();
    assert_eq!(json_param["AccessKeyId"], new_key);
    assert_eq!(param("/app/id"), new_key);
    // The stored secret is the one that works: sign with it.
    let secret_value = value["SecretAccessKey"].as_str().unwrap();
    assert_eq!(param("/app/secret"), secret_value);
    rig.assert_secret_nowhere(secret_value, &[&run]);
}

#[test]
fn rollback_restores_secretsmanager_and_ssm() {
    let rig = Rig::new();
    let before = r#"{"AccessKeyId":"AKIABEFOREBEFOREXXXX","SecretAccessKey":"before"}"#;
    assert_eq!(rig.aws(&["secretsmanager", "create-secret", "--name", "app/aws", "--secret-string", before]).code, 0);
    assert_eq!(rig.aws(&["ssm", "put-parameter", "--name", "/app/aws", "--type", "SecureString", "--value", "old-value"]).code, 0);
    rig.config(
        STOP_IN_DRAINING,
        r#"{ type = "secretsmanager", secret_id = "app/aws" }, { type = "ssm", name = "/app/aws" }, { type = "ssm", id_name = "/app/new-id", secret_name = "/app/new-secret" }"#,
        r#"{ type = "sts" }"#,
    );
    assert_eq!(rig.rekey(&["rotate", "--user", &rig.user, "--yes"]).code, 0);
    let r = rig.rotation();
    assert_eq!(r["stage"], "draining");
    let id = r["id"].as_str().unwrap();
    let run = rig.rekey(&["rollback", id]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(rig.rotation()["stage"], "rolled_back");
    let secret = rig.aws(&["secretsmanager", "get-secret-value", "--secret-id", "app/aws"]).json();
    assert_eq!(secret["SecretString"], before);
    let param = rig.aws(&["ssm", "get-parameter", "--name", "/app/aws", "--with-decryption"]).json();
    assert_eq!(param["Parameter"]["Value"], "old-value");
    assert_ne!(rig.aws(&["ssm", "get-parameter", "--name", "/app/new-id"]).code, 0, "a parameter rekey created is deleted");
    assert_eq!(rig.keys(), [(rig.old_key.clone(), "Active".to_owned())]);
}

/// Issue 6 item 13: restore went to whatever was AWSPREVIOUS at restore time.
#[test]
fn secretsmanager_restores_the_version_current_before_delivery_not_awsprevious() {
    let rig = Rig::new();
    let before = r#"{"AccessKeyId":"AKIABEFOREBEFOREXXXX","SecretAccessKey":"before"}"#;
    assert_eq!(rig.aws(&["secretsmanager", "create-secret", "--name", "app/aws", "--secret-string", before]).code, 0);
    rig.config(STOP_IN_DRAINING, r#"{ type = "secretsmanager", secret_id = "app/aws" }"#, r#"{ type = "sts" }"#);
    assert_eq!(rig.rekey(&["rotate", "--user", &rig.user, "--yes"]).code, 0);
    let r = rig.rotation();
    assert_eq!(r["stage"], "draining");
    // The application's team adds a field: the new key is now current twice
    // over, and AWSPREVIOUS holds the new key too.
    let current = rig.aws(&["secretsmanager", "get-secret-value", "--secret-id", "app/aws"]).json();
    let mut value: Value = serde_json::from_str(current["SecretString"].as_str().unwrap()).unwrap();
    value["Region"] = "us-east-1".into();
    assert_eq!(rig.aws(&["secretsmanager", "put-secret-value", "--secret-id", "app/aws", "--secret-string", &value.to_string()]).code, 0);

    let run = rig.rekey(&["rollback", r["id"].as_str().unwrap()]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let secret = rig.aws(&["secretsmanager", "get-secret-value", "--secret-id", "app/aws"]).json();
    let restored: Value = serde_json::from_str(secret["SecretString"].as_str().unwrap()).unwrap();
    // The key from before the rotation; the team's field stays (issue 4: a restore puts back only what rekey wrote).
    assert_eq!(restored, serde_json::json!({"AccessKeyId": "AKIABEFOREBEFOREXXXX", "SecretAccessKey": "before", "Region": "us-east-1"}));
    assert_eq!(rig.keys(), [(rig.old_key.clone(), "Active".to_owned())]);
}

#[test]
fn abort_and_rollback_leave_the_original_key_and_file() {
    for (timings, stop, command) in [
        (STOP_IN_DRAINING, "draining", "abort"),
        (STOP_IN_DRAINING, "draining", "rollback"),
        (STOP_IN_GRACE, "awaiting_delete", "rollback"),
    ] {
        let rig = Rig::new();
        rig.config_app(timings);
        let original = std::fs::read(rig.credentials()).unwrap();
        assert_eq!(rig.rekey(&["rotate", "--user", &rig.user, "--yes"]).code, 0);
        let r = rig.rotation();
        assert_eq!(r["stage"], stop);
        let run = rig.rekey(&[command, r["id"].as_str().unwrap()]);
        assert_eq!(run.code, 0, "{command} in {stop}: {}", run.stderr);
        let after = rig.rotation();
        assert_eq!(after["stage"], if command == "abort" { "aborted" } else { "rolled_back" });
        assert_eq!(rig.keys(), [(rig.old_key.clone(), "Active".to_owned())], "{command} in {stop}: only the original key, active");
        assert_eq!(std::fs::read(rig.credentials()).unwrap(), original, "{command} in {stop}: the file is back byte for byte");
        assert_eq!(rig.leftovers(), Vec::<String>::new(), "{command} in {stop}: the restore copy is removed when the rotation ends");
        assert_eq!(rig.app().code, 0, "{command} in {stop}: the application works");
        // Undoing twice is refused cleanly and changes nothing.
        let again = rig.rekey(&[command, r["id"].as_str().unwrap()]);
        assert_eq!(again.code, 2);
        assert!(again.stderr.contains("already ended"), "{}", again.stderr);
    }
}

#[test]
fn abort_is_refused_after_deactivation_and_rollback_after_deletion() {
    let rig = Rig::new();
    rig.config_app(STOP_IN_GRACE);
    assert_eq!(rig.rekey(&["rotate", "--user", &rig.user, "--yes"]).code, 0);
    let id = rig.rotation()["id"].as_str().unwrap().to_owned();
    let abort = rig.rekey(&["abort", &id]);
    assert_eq!(abort.code, 2);
    assert!(abort.stderr.contains(&format!("rekey rollback {id}")), "{}", abort.stderr);
    assert_eq!(rig.rotation()["stage"], "awaiting_delete", "a refused abort changes nothing");

    let done = Rig::new();
    done.config_app(ZERO_WAITS);
    assert_eq!(done.rekey(&["rotate", "--user", &done.user, "--yes"]).code, 0);
    let id = done.rotation()["id"].as_str().unwrap().to_owned();
    let rollback = done.rekey(&["rollback", &id]);
    assert_eq!(rollback.code, 2);
    assert!(rollback.stderr.contains("the old key is deleted"), "{}", rollback.stderr);
}

#[test]
fn verification_failing_after_deactivation_reactivates_the_old_key_and_keeps_the_new_one() {
    let rig = Rig::new();
    // A forgotten consumer: a batch job still holding the old key.
    let legacy = rig.path("legacy-credentials");
    std::fs::write(&legacy, format!("[app]\naws_access_key_id = {}\naws_secret_access_key = {}\n", rig.old_key, rig.old_secret)).unwrap();
    rig.config(
        "wait_unused = \"0s\"\nlast_used_lag = \"0s\"\ngrace = \"0s\"\nverify_timeout = \"30s\"",
        &format!("{{ type = \"credentials-file\", path = \"{}\", profile = \"app\" }}", rig.credentials().display()),
        &format!("{{ type = \"sts\" }}, {}", rig.app_verifier(&legacy)),
    );
    let delivered_before = std::fs::read(rig.credentials()).unwrap();
    let run = rig.rekey(&["rotate", "--user", &rig.user, "--yes"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let r = rig.rotation();
    assert_eq!((r["stage"].as_str(), r["came_from"].as_str()), (Some("blocked"), Some("draining")), "{r}");
    let reason = r["blocked_reason"].as_str().unwrap();
    assert!(reason.contains("after the old key was deactivated") && reason.contains("reactivated"), "{reason}");
    let new_key = r["new_key_id"].as_str().unwrap().to_owned();
    assert_eq!(rig.keys(), [(rig.old_key.clone(), "Active".to_owned()), (new_key, "Active".to_owned())], "old key reactivated, new key kept");
    assert_ne!(std::fs::read(rig.credentials()).unwrap(), delivered_before, "the sink keeps the new key");
    assert_eq!(support::app_call(&rig.emu, &legacy).code, 0, "the forgotten consumer works again");
    assert_eq!(rig.app().code, 0, "and so does the application, on the new key");
}

#[test]
fn a_failing_new_key_verification_rolls_back_before_the_old_key_is_touched() {
    let rig = Rig::new();
    rig.config(
        FAIL_FAST,
        &format!("{{ type = \"credentials-file\", path = \"{}\", profile = \"app\" }}", rig.credentials().display()),
        r#"{ type = "exec", command = ["sh", "-c", "echo 'health check failed' >&2; exit 1"] }"#,
    );
    let original = std::fs::read(rig.credentials()).unwrap();
    let run = rig.rekey(&["rotate", "--user", &rig.user, "--yes"]);
    assert_eq!(run.code, 2);
    let r = rig.rotation();
    assert_eq!(r["stage"], "rolled_back");
    assert!(r["blocked_reason"].as_str().unwrap().contains("health check failed"), "{r}");
    assert_eq!(rig.keys(), [(rig.old_key.clone(), "Active".to_owned())]);
    assert_eq!(std::fs::read(rig.credentials()).unwrap(), original);
}

#[test]
fn two_keys_one_inactive() {
    let rig = Rig::new();
    let (other, _) = rig.create_key();
    assert_eq!(rig.aws(&["iam", "update-access-key", "--user-name", &rig.user, "--access-key-id", &other, "--status", "Inactive"]).code, 0);
    rig.config_app(ZERO_WAITS);
    let run = rig.rekey(&["rotate", "--user", &rig.user, "--key", &rig.old_key, "--yes"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let r = rig.rotation();
    assert_eq!(r["stage"], "blocked");
    assert!(r["blocked_reason"].as_str().unwrap().contains(&format!("{other} is inactive")), "{r}");
    assert!(r["blocked_reason"].as_str().unwrap().contains("--delete-inactive"));
    assert_eq!(calls_of(&rig.emu, "iam:CreateAccessKey"), 2, "only the rig's own two keys were created");
    assert_eq!(rig.keys().len(), 2);

    // Abort it and rotate again, allowing rekey to delete the inactive key.
    assert_eq!(rig.rekey(&["abort", r["id"].as_str().unwrap()]).code, 0);
    assert_eq!(rig.keys().len(), 2, "aborting never deletes a key the rotation did not create");
    let run = rig.rekey(&["rotate", "--user", &rig.user, "--key", &rig.old_key, "--delete-inactive", "--yes"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    // Both started within a second or so: find the new one by its stage.
    let all = rig.rekey(&["status", "--all", "--format", "json"]).json();
    let stages: Vec<&str> = all["rotations"].as_array().unwrap().iter().map(|r| r["stage"].as_str().unwrap()).collect();
    assert_eq!(stages.iter().filter(|s| **s == "aborted").count(), 1, "{stages:?}");
    let last = all["rotations"].as_array().unwrap().iter().find(|r| r["stage"] == "completed").expect("the second rotation completed").clone();
    assert_eq!(rig.keys(), [(last["new_key_id"].as_str().unwrap().to_owned(), "Active".to_owned())]);
    let history = rig.rekey(&["history", "--format", "json"]).json();
    assert!(history["events"].as_array().unwrap().iter().any(|e| e["event"] == "deleted_inactive_key" && e["detail"]["key"] == other.as_str()));
}

#[test]
fn two_active_keys_block() {
    let rig = Rig::new();
    let (other, _) = rig.create_key();
    rig.config_app(ZERO_WAITS);
    let run = rig.rekey(&["rotate", "--user", &rig.user, "--key", &rig.old_key, "--delete-inactive", "--yes"]);
    assert_eq!(run.code, 0);
    let r = rig.rotation();
    assert_eq!(r["stage"], "blocked");
    assert!(r["blocked_reason"].as_str().unwrap().contains("both key slots are taken by active keys"), "{r}");
    assert_eq!(rig.keys(), [(rig.old_key.clone(), "Active".to_owned()), (other, "Active".to_owned())]);
}

#[test]
fn bad_input_changes_nothing() {
    let rig = Rig::new();
    rig.config_app(ZERO_WAITS);
    let cases: Vec<(Vec<String>, &str)> = vec![
        (vec!["--user".into(), "nobody".into(), "--deliver".into(), "{ type = \"manual\" }".into(), "--verify".into(), "{ type = \"manual\" }".into()], "no IAM user named \"nobody\""),
        // A key shown to a person must not be lost in the next process (issue 6, item 4).
        (vec!["--user".into(), rig.user.clone(), "--deliver".into(), "{ type = \"manual\" }".into()], "only a readable sink"),
        (vec!["--user".into(), rig.user.clone(), "--deliver".into(), "{ type = \"manual\" }".into(), "--deliver".into(), "{ type = \"exec\", command = [\"true\"] }".into()], "must come last"),
        (vec!["--user".into(), rig.user.clone(), "--key".into(), "AKIANOSUCHKEYNOSUCH1".into()], "has no access key AKIANOSUCHKEYNOSUCH1"),
        (vec!["--user".into(), rig.user.clone(), "--deliver".into(), "{ type = \"credentials-file\", path = \"/nonexistent/dir/credentials\" }".into()], "/nonexistent/dir"),
        (vec!["--user".into(), rig.user.clone(), "--deliver".into(), "{ type = \"pigeon\" }".into()], "pigeon"),
        (vec!["--user".into(), rig.user.clone(), "--deliver".into(), "{ type = \"secretsmanager\", secret_id = \"missing\" }".into()], "does not exist"),
        (vec!["--user".into(), rig.user.clone(), "--verify".into(), "{ type = \"exec\", command = [\"/nonexistent/check\"] }".into()], "/nonexistent/check"),
        (vec!["--user".into(), rig.user.clone(), "--account".into(), "210987654321".into()], "account 210987654321 is not the account of the credentials in use (123456789012), and no role is configured"),
        (vec!["--user".into(), rig.user.clone()], "pass --yes"),
    ];
    for (args, words) in cases {
        let mut full = vec!["rotate".to_owned()];
        full.extend(args);
        if words != "pass --yes" {
            full.push("--yes".into());
        }
        let full: Vec<&str> = full.iter().map(String::as_str).collect();
        let run = rig.rekey(&full);
        assert_eq!(run.code, 2, "{full:?}: {}", run.stdout);
        assert!(run.stderr.contains(words), "{full:?} should say {words:?}: {}", run.stderr);
    }
    // A target without deliver is a config error.
    std::fs::write(rig.path("rekey.toml"), format!("[[target]]\nuser = \"{}\"\n", rig.user)).unwrap();
    let run = rig.rekey(&["rotate", "--user", &rig.user, "--yes"]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("deliver"), "{}", run.stderr);

    assert_eq!(calls_of(&rig.emu, "iam:CreateAccessKey"), 1, "only the rig's own key was ever created");
    assert_eq!(rig.keys(), [(rig.old_key.clone(), "Active".to_owned())]);
    assert!(!rig.path("state.db").exists() || rig.rekey(&["status", "--all", "--format", "json"]).json()["rotations"] == serde_json::json!([]));
}

#[test]
fn dry_run_prints_the_plan_and_changes_nothing() {
    let rig = Rig::new();
    rig.config_app(ZERO_WAITS);
    rig.emu.reset_calls();
    let run = rig.rekey(&["rotate", "--user", &rig.user, "--dry-run"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    for step in ["iam:CreateAccessKey", "deliver to credentials-file", "kept beside the file", "verify: sts", "iam:UpdateAccessKey", "iam:DeleteAccessKey", "Nothing was changed"] {
        assert!(run.stdout.contains(step), "plan mentions {step}:\n{}", run.stdout);
    }
    let calls = rig.emu.calls();
    let ops: Vec<&String> = calls["by_operation"].as_object().unwrap().keys().collect();
    assert!(ops.iter().all(|op| ["sts:GetCallerIdentity", "iam:GetUser", "iam:ListAccessKeys"].contains(&op.as_str())), "read-only calls only: {ops:?}");
    assert!(!rig.path("state.db").exists());
    assert_eq!(rig.leftovers(), Vec::<String>::new());
}

#[test]
fn scan_shows_the_rotation_of_a_key() {
    let rig = Rig::new();
    rig.config_app(STOP_IN_DRAINING);
    assert_eq!(rig.rekey(&["rotate", "--user", &rig.user, "--yes"]).code, 0);
    let id = rig.rotation()["id"].clone();
    let scan = rig.rekey(&["scan", "--source", "api", "--format", "json"]).json();
    let old = scan["keys"].as_array().unwrap().iter().find(|k| k["access_key_id"] == rig.old_key.as_str()).unwrap().clone();
    assert_eq!(old["rotation"], serde_json::json!({"id": id, "stage": "draining"}));
    let _ = Duration::ZERO;
}

#[test]
fn a_failing_sink_that_prints_the_secret_does_not_leak_it() {
    let rig = Rig::new();
    let got = rig.path("got.json");
    let script = rig.path("leaky.sh");
    // A careless delivery script: echoes what it got, then fails.
    std::fs::write(&script, format!("#!/bin/sh\ntee {} >&2\necho\nexit 1\n", got.display())).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o700)).unwrap();
    rig.config(ZERO_WAITS, &format!("{{ type = \"exec\", command = [\"{}\"] }}", script.display()), r#"{ type = "sts" }"#);
    let run = rig.rekey(&["rotate", "--user", &rig.user, "--yes", "-vvv"]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("exec sink"), "{}", run.stderr);
    let delivered: Value = serde_json::from_str(&std::fs::read_to_string(&got).unwrap()).unwrap();
    let secret = delivered["SecretAccessKey"].as_str().unwrap();
    let status = rig.rekey(&["status", "--all", "--format", "json"]);
    let history = rig.rekey(&["history", "--format", "json"]);
    assert!(history.stdout.contains("step_failed"));
    rig.assert_secret_nowhere(secret, &[&run, &status, &history]);
    assert!(rig.keys().contains(&(rig.old_key.clone(), "Active".to_owned())), "the old key is untouched");
}

#[test]
fn an_unknown_rotation_id_is_named() {
    let rig = Rig::new();
    for command in ["confirm", "rollback", "abort", "status", "history"] {
        let run = rig.rekey(&[command, "rot-20260101-000000"]);
        assert_eq!(run.code, 2, "{command}");
        assert!(run.stderr.contains("no rotation rot-20260101-000000"), "{command}: {}", run.stderr);
    }
}
