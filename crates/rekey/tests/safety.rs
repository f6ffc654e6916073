//! The safety rules of a rotation, each pinned by the failure it prevents
//! (issue 6): wrong account, rollback without an old key, a key a command or
//! a person may hold, undo of a blocked rotation, failure after
//! deactivation, stale decisions.

mod support;

use serde_json::Value;
use support::{Run, Rig, LONG};

const ZERO_WAITS: &str = "wait_unused = \"0s\"\nlast_used_lag = \"0s\"\ngrace = \"0s\"\nverify_timeout = \"120s\"";
const STOP_IN_DRAINING: &str = "wait_unused = \"1h\"\nlast_used_lag = \"0s\"\ngrace = \"0s\"\nverify_timeout = \"120s\"";

fn rotations(rig: &Rig) -> Vec<Value> {
    rig.rekey(&["status", "--format", "json"]).json()["rotations"].as_array().unwrap().clone()
}

fn events(rig: &Rig) -> Vec<String> {
    let history = rig.rekey(&["history", "--format", "json"]).json();
    history["events"].as_array().unwrap().iter().map(|e| e["event"].as_str().unwrap().to_owned()).collect()
}

fn active(key: &str) -> (String, String) {
    (key.to_owned(), "Active".to_owned())
}

fn inactive(key: &str) -> (String, String) {
    (key.to_owned(), "Inactive".to_owned())
}

#[test]
fn credentials_of_another_account_change_nothing_anywhere() {
    let rig = Rig::new();
    rig.config_app(ZERO_WAITS);
    // Interrupted in account A, due at once.
    let crashed: Run = rig.rekey_cmd().env("REKEY_CRASH_AFTER", "save:creating").args(["rotate", "--user", &rig.user, "--yes"]).output().unwrap().into();
    assert_eq!(crashed.code, -1);
    let file_before = std::fs::read(rig.credentials()).unwrap();
    let state_before = rotations(&rig);

    // Account B has a user of the same name, with a key.
    let b = rig.aws(&["sts", "assume-role", "--role-arn", "arn:aws:iam::222222222222:role/admin", "--role-session-name", "test"]).json();
    let creds = &b["Credentials"];
    let as_b = |cmd: &mut std::process::Command| {
        cmd.env("AWS_ACCESS_KEY_ID", creds["AccessKeyId"].as_str().unwrap())
            .env("AWS_SECRET_ACCESS_KEY", creds["SecretAccessKey"].as_str().unwrap())
            .env("AWS_SESSION_TOKEN", creds["SessionToken"].as_str().unwrap());
    };
    let aws_b = |args: &[&str]| -> Run {
        let mut cmd = std::process::Command::new("aws");
        cmd.envs(rig.emu.env()).env("HOME", rig.dir.path()).args(args);
        as_b(&mut cmd);
        cmd.output().unwrap().into()
    };
    assert_eq!(aws_b(&["iam", "create-user", "--user-name", &rig.user]).code, 0);
    assert_eq!(aws_b(&["iam", "create-access-key", "--user-name", &rig.user]).code, 0);
    let b_keys = || aws_b(&["iam", "list-access-keys", "--user-name", &rig.user]).json()["AccessKeyMetadata"].clone();
    let b_before = b_keys();
    let id = state_before[0]["id"].as_str().unwrap().to_owned();

    for args in [vec!["run", "--once"], vec!["rollback", &id], vec!["abort", &id], vec!["confirm", &id]] {
        let mut cmd = rig.rekey_cmd();
        as_b(&mut cmd);
        let run: Run = cmd.args(&args).output().unwrap().into();
        assert_eq!(run.code, 2, "{args:?}: {}", run.stdout);
        assert!(run.stderr.contains("account 123456789012") && run.stderr.contains("222222222222"), "{args:?}: {}", run.stderr);
        assert_eq!(b_keys(), b_before, "{args:?}: account B untouched");
        assert_eq!(rig.keys(), [active(&rig.old_key)], "{args:?}: account A untouched");
        assert_eq!(std::fs::read(rig.credentials()).unwrap(), file_before, "{args:?}: the application's file untouched");
        assert_eq!(rotations(&rig), state_before, "{args:?}: the state untouched");
    }
    // With account A's credentials it goes on.
    let r = rig.run_until("completed", LONG);
    assert_eq!(rig.keys(), [active(r["new_key_id"].as_str().unwrap())]);
}

#[test]
fn rollback_is_refused_when_the_old_key_is_gone() {
    let rig = Rig::new();
    rig.config_app(STOP_IN_DRAINING);
    assert_eq!(rig.rekey(&["rotate", "--user", &rig.user, "--yes"]).code, 0);
    let r = rig.rotation();
    let new_key = r["new_key_id"].as_str().unwrap().to_owned();
    assert_eq!(rig.aws(&["iam", "delete-access-key", "--user-name", &rig.user, "--access-key-id", &rig.old_key]).code, 0);
    let file = std::fs::read(rig.credentials()).unwrap();
    let run = rig.rekey(&["rollback", r["id"].as_str().unwrap()]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("no longer exists") && run.stderr.contains("nothing was changed"), "{}", run.stderr);
    assert_eq!(rig.keys(), [active(&new_key)], "the user keeps a working key");
    assert_eq!(std::fs::read(rig.credentials()).unwrap(), file, "the file still holds the working key");
    assert_eq!(rig.rotation()["stage"], "draining");
    assert_eq!(rig.app().code, 0);
}

#[test]
fn a_key_a_command_may_hold_is_never_deleted_by_recovery() {
    // The exec sink got the key, then rekey died before recording it: the
    // next run cannot read the secret back, and must not delete the key.
    let rig = Rig::new();
    let got = rig.path("got.json");
    let script = rig.path("deliver.sh");
    std::fs::write(&script, format!("#!/bin/sh\ncat > {}\nkill -9 $PPID\n", got.display())).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o700)).unwrap();
    rig.config(ZERO_WAITS, &format!("{{ type = \"exec\", command = [\"{}\"] }}", script.display()), r#"{ type = "exec", command = ["true"] }"#);
    let crashed = rig.rekey(&["rotate", "--user", &rig.user, "--yes"]);
    assert_eq!(crashed.code, -1, "{}", crashed.stderr);
    let handed: Value = serde_json::from_str(&std::fs::read_to_string(&got).unwrap()).unwrap();
    let r = rig.run_until("blocked", LONG);
    assert!(r["blocked_reason"].as_str().unwrap().contains("may already hold it"), "{r}");
    assert_eq!(rig.keys(), [active(&rig.old_key), active(handed["AccessKeyId"].as_str().unwrap())], "the key the command got still exists");
    assert!(!events(&rig).iter().any(|e| e.starts_with("deleted")), "{:?}", events(&rig));
}

#[test]
fn a_manual_sink_after_a_readable_one_works_across_processes() {
    let rig = Rig::new();
    rig.config(
        ZERO_WAITS,
        &format!("{{ type = \"credentials-file\", path = \"{}\", profile = \"app\" }}, {{ type = \"manual\" }}", rig.credentials().display()),
        r#"{ type = "sts" }"#,
    );
    let run = rig.rekey(&["rotate", "--user", &rig.user, "--yes", "--reveal"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let shown = run.stdout.lines().find(|l| l.contains("aws_access_key_id")).unwrap().rsplit(' ').next().unwrap().to_owned();
    let id = rig.rotation()["id"].as_str().unwrap().to_owned();
    // Each confirm is a new process: the secret comes back from the file.
    let confirm = rig.rekey(&["confirm", &id]);
    assert_eq!(confirm.code, 0, "{}", confirm.stderr);
    let r = rig.run_until("completed", LONG);
    assert_eq!(r["new_key_id"], shown.as_str());
    assert_eq!(rig.keys(), [active(&shown)], "the key the person installed is the one left");
    assert_eq!(events(&rig).iter().filter(|e| *e == "created_new_key").count(), 1);
}

#[test]
fn an_undo_of_a_blocked_rotation_cut_short_is_finished_by_run() {
    let rig = Rig::new();
    rig.config_app(&format!("{STOP_IN_DRAINING}\nretry_after = \"0s\""));
    let original = std::fs::read(rig.credentials()).unwrap();
    // Blocked: the other slot holds an inactive key.
    let (other, _) = rig.create_key();
    assert_eq!(rig.aws(&["iam", "update-access-key", "--user-name", &rig.user, "--access-key-id", &other, "--status", "Inactive"]).code, 0);
    assert_eq!(rig.rekey(&["rotate", "--user", &rig.user, "--key", &rig.old_key, "--yes"]).code, 0);
    assert_eq!(rig.rotation()["stage"], "blocked");
    // Unblocked by a person, delivered, then rolled back under throttling.
    assert_eq!(rig.aws(&["iam", "delete-access-key", "--user-name", &rig.user, "--access-key-id", &other]).code, 0);
    let id = rig.rotation()["id"].as_str().unwrap().to_owned();
    assert_eq!(rig.rekey(&["confirm", &id]).code, 0);
    assert_eq!(rig.rotation()["stage"], "draining");
    rig.emu.inject_fault("iam:DeleteAccessKey", "Throttling", 400, 100);
    let cut: Run = rig.rekey_cmd().env("AWS_MAX_ATTEMPTS", "1").args(["rollback", &id]).output().unwrap().into();
    assert_eq!(cut.code, 2, "{}", cut.stderr);
    let r = rig.rotation();
    assert_eq!((r["stage"].as_str(), r["came_from"].as_str()), (Some("rolling_back"), Some("draining")), "status shows the undo: {r}");
    rig.emu.clear_faults();
    let r = rig.run_until("rolled_back", LONG);
    assert_eq!(rig.keys(), [active(&rig.old_key)], "{r}");
    assert_eq!(std::fs::read(rig.credentials()).unwrap(), original);
}

#[test]
fn rollback_deactivates_a_new_key_something_else_used_and_deletes_it_after_grace() {
    let rig = Rig::new();
    rig.config_app("wait_unused = \"1h\"\nlast_used_lag = \"0s\"\nlast_used_margin = \"0s\"\ngrace = \"0s\"\nverify_timeout = \"120s\"");
    let original = std::fs::read(rig.credentials()).unwrap();
    assert_eq!(rig.rekey(&["rotate", "--user", &rig.user, "--yes"]).code, 0);
    let r = rig.rotation();
    let new_key = r["new_key_id"].as_str().unwrap().to_owned();
    std::thread::sleep(std::time::Duration::from_millis(1100)); // a use in a later second than rekey's verification
    assert_eq!(rig.app().code, 0, "the application uses the new key");
    let run = rig.rekey(&["rollback", r["id"].as_str().unwrap()]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(events(&rig).contains(&"deactivated_new_key".to_owned()), "{:?}", events(&rig));
    assert_eq!(std::fs::read(rig.credentials()).unwrap(), original);
    let r = rig.run_until("rolled_back", LONG);
    assert_eq!(rig.keys(), [active(&rig.old_key)], "{r}");
    assert!(!rig.keys().contains(&inactive(&new_key)));
}

#[test]
fn deleting_only_deletes_a_key_still_inactive() {
    let rig = Rig::new();
    rig.config_app(ZERO_WAITS);
    let crashed: Run = rig.rekey_cmd().env("REKEY_CRASH_AFTER", "save:deleting").args(["rotate", "--user", &rig.user, "--yes"]).output().unwrap().into();
    assert_eq!(crashed.code, -1);
    // Someone needed the old key and turned it back on.
    assert_eq!(rig.aws(&["iam", "update-access-key", "--user-name", &rig.user, "--access-key-id", &rig.old_key, "--status", "Active"]).code, 0);
    let r = rig.run_until("blocked", LONG);
    assert!(r["blocked_reason"].as_str().unwrap().contains("reactivated"), "{r}");
    assert!(rig.keys().contains(&active(&rig.old_key)), "not deleted");
}

#[test]
fn delete_inactive_never_deletes_another_rotations_old_key() {
    let rig = Rig::new();
    rig.config_app("wait_unused = \"0s\"\nlast_used_lag = \"0s\"\ngrace = \"1h\"\nverify_timeout = \"120s\"");
    assert_eq!(rig.rekey(&["rotate", "--user", &rig.user, "--yes"]).code, 0);
    let first = rotations(&rig)[0].clone();
    assert_eq!(first["stage"], "awaiting_delete");
    let new_key = first["new_key_id"].as_str().unwrap().to_owned();
    let run = rig.rekey(&["rotate", "--user", &rig.user, "--key", &new_key, "--delete-inactive", "--yes"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let second = rotations(&rig)[1].clone();
    assert_eq!(second["stage"], "blocked");
    assert!(second["blocked_reason"].as_str().unwrap().contains(first["id"].as_str().unwrap()), "{second}");
    assert_eq!(rig.keys(), [inactive(&rig.old_key), active(&new_key)], "the first rotation's old key is kept for its grace period");
}

/// A credentials file an attacker could swap (its directory is writable by
/// everyone) or that points at another user's file: refused before any key
/// exists, and nothing is recorded.
#[test]
fn a_hostile_credentials_path_is_refused_before_any_key_exists() {
    use std::os::unix::fs::PermissionsExt;
    let rig = Rig::new();
    rig.config_app(ZERO_WAITS);
    std::fs::set_permissions(rig.dir.path(), std::fs::Permissions::from_mode(0o1777)).unwrap();
    let before = std::fs::read(rig.credentials()).unwrap();
    let run = rig.rekey(&["rotate", "--user", &rig.user, "--yes"]);
    assert_eq!(run.code, 2, "{}", run.stdout);
    assert!(run.stderr.contains("writable by every user") && run.stderr.contains("chmod o-w"), "{}", run.stderr);
    assert_eq!(rig.keys(), [active(&rig.old_key)], "no key was created");
    assert_eq!(std::fs::read(rig.credentials()).unwrap(), before);
    assert!(rotations(&rig).is_empty(), "nothing recorded");

    std::fs::set_permissions(rig.dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let run = rig.rekey(&["rotate", "--user", &rig.user, "--yes"]);
    assert_eq!(run.code, 0, "the same path, made private, is fine: {}", run.stderr);
}
