//! Many accounts against the emulator: an organization scanned from one
//! process through assumed roles, an account that refuses, one that
//! throttles, and rotations in a member account.

mod support;

use rekey_emulator::Emulator;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use support::Run;

const AS_OF: &str = "2026-11-28T12:00:00Z";
const ROLE: &str = "OrganizationAccountAccessRole";
const FIRST: u64 = 100000000001;
const NO_ROLE: &str = "222222222222";
const APPS: &str = "333333333333";

/// 20 member accounts × 50 users, one without the role, and one with an
/// application's user.
fn organization() -> Emulator {
    Emulator::with_scenario(&json!({
        "as_of": AS_OF,
        "users": [{"name": "admin", "keys": [{"status": "Active", "age": "200d"}]}],
        "organization": {"role_name": ROLE},
        "accounts_bulk": {"count": 20, "first_id": FIRST, "users": 50, "seed": 3},
        "accounts": [
            {"id": NO_ROLE, "name": "locked", "role": false, "users": [{"name": "x", "keys": [{"age": "100d"}]}]},
            {"id": APPS, "name": "apps", "users": [{"name": "app", "keys": [{"age": "120d"}]}]},
        ],
    }))
}

fn rekey_in(emu: &Emulator, dir: &std::path::Path, args: &[&str]) -> Run {
    support::rekey_cmd(Some(emu), dir).args(args).output().unwrap().into()
}

fn with_role() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("rekey.toml"), format!("[org]\nrole_name = \"{ROLE}\"\nconcurrency = 8\n")).unwrap();
    dir
}

/// (user, creation time, result) of each key, by account (a key's own
/// `account_id`, else `account`, as in a truth file).
fn keys_by_account(keys: &Value, account: Option<&str>) -> BTreeMap<String, BTreeSet<(String, String, String)>> {
    let mut out: BTreeMap<String, BTreeSet<_>> = BTreeMap::new();
    for k in keys.as_array().unwrap() {
        let account = k["account_id"].as_str().or(account).unwrap().to_owned();
        let key = (k["user_name"].as_str().unwrap().to_owned(), k["created_at"].as_str().unwrap().to_owned(), k["result"].as_str().unwrap().to_owned());
        out.entry(account).or_default().insert(key);
    }
    out
}

#[test]
fn an_organization_is_scanned_through_roles_and_one_refusing_account_does_not_stop_it() {
    let emu = organization();
    let dir = with_role();
    let run = rekey_in(&emu, dir.path(), &["scan", "--org", "--format", "json", "--as-of", AS_OF, "--fail-on", "never"]);
    assert_eq!(run.code, 2, "one account failed: exit 2\n{}", run.stderr);
    let scan = run.json();

    let errors = scan["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0]["account_id"], NO_ROLE);
    assert_eq!(errors[0]["operation"], "sts:AssumeRole");
    assert_eq!(errors[0]["code"], "AccessDenied");
    assert!(run.stderr.contains(NO_ROLE), "{}", run.stderr);

    let truth = emu.truth();
    let mut want = BTreeMap::new();
    for (account, t) in truth["accounts"].as_object().unwrap() {
        if account != NO_ROLE {
            want.extend(keys_by_account(&t["keys"], Some(account)));
        }
    }
    let got = keys_by_account(&scan["keys"], None);
    assert_eq!(got.len(), 22, "the management account and 21 members");
    assert_eq!(got, want, "every account's keys and results equal its ground truth");

    let accounts = scan["accounts"].as_array().unwrap();
    assert_eq!(accounts.len(), 23);
    let locked = accounts.iter().find(|a| a["account_id"] == NO_ROLE).unwrap();
    assert_eq!((locked["scanned"].clone(), locked["name"].clone()), (json!(false), json!("locked")));
    let failed: u64 = accounts.iter().map(|a| a["summary"]["failed"].as_u64().unwrap()).sum();
    assert_eq!(scan["summary"]["failed"].as_u64().unwrap(), failed);

    // Per account: AssumeRole, then the report and the users that need action.
    let member = format!("{FIRST}");
    let calls = emu.calls_in(&member);
    assert!(calls["by_operation"]["iam:GetCredentialReport"].as_u64().unwrap() >= 1, "{calls}");

    let table = rekey_in(&emu, dir.path(), &["scan", "--org", "--as-of", AS_OF, "--fail-on", "never"]);
    assert!(table.stdout.contains(&format!("account {member}")), "grouped by account:\n{}", table.stdout);
}

#[test]
fn a_throttling_account_is_retried_and_completes() {
    let emu = organization();
    let dir = with_role();
    let member = format!("{}", FIRST + 3);
    emu.inject_fault_in(&member, "iam:*", "Throttling", 400, 3);
    let run = rekey_in(&emu, dir.path(), &["-v", "scan", "--accounts", &member, "--format", "json", "--as-of", AS_OF, "--fail-on", "never"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let scan = run.json();
    assert_eq!(keys_by_account(&scan["keys"], None), keys_by_account(&emu.truth()["accounts"][&member]["keys"], Some(&member)));
    assert!(run.stderr.contains("3 of them retries"), "-v shows the retries: {}", run.stderr);
}

#[test]
fn other_accounts_need_a_role_and_are_never_reached_with_the_callers_credentials() {
    let emu = organization();
    let dir = tempfile::tempdir().unwrap();
    let member = APPS;
    for args in [
        vec!["scan", "--accounts", member],
        vec!["scan", "--org"],
        vec!["rotate", "--user", "app", "--account", member, "--deliver", "{ type = \"exec\", command = [\"true\"] }", "--yes"],
        vec!["suppress", "--user", "app", "--account", member, "--reason", "x"],
        vec!["findings", "--account", member],
    ] {
        emu.reset_calls();
        let run = rekey_in(&emu, dir.path(), &args);
        assert_eq!(run.code, 2, "{args:?}: {}", run.stderr);
        assert!(run.stderr.contains("no role is configured"), "{args:?}: {}", run.stderr);
        assert_eq!(emu.calls_in(member)["total"], 0, "{args:?}: nothing reached {member}");
    }
}

#[test]
fn a_rotation_in_a_member_account_runs_through_the_role() {
    let emu = organization();
    let dir = with_role();
    let member = APPS.to_owned();
    let user = "app";
    let keys = emu.keys_in(user, &member);
    let active: Vec<&Value> = keys.as_array().unwrap().iter().filter(|k| k["status"] == "Active").collect();
    assert!(!active.is_empty() && keys.as_array().unwrap().len() < 2, "a user with one active key: {keys}");
    let old = active[0]["access_key_id"].as_str().unwrap().to_owned();
    let config = format!(
        "[org]\nrole_name = \"{ROLE}\"\n\n[rotation]\nwait_unused = \"2s\"\nlast_used_lag = \"0s\"\ngrace = \"0s\"\n\n[[target]]\nuser = \"{user}\"\naccount = \"{member}\"\ndeliver = [{{ type = \"exec\", command = [\"true\"] }}]\nverify = [{{ type = \"sts\" }}]\n"
    );
    std::fs::write(dir.path().join("rekey.toml"), config).unwrap();
    let run = rekey_in(&emu, dir.path(), &["rotate", "--user", user, "--account", &member, "--yes"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    // Draining for 2 s: then due, and `run` finishes it in the member account.
    let status = || rekey_in(&emu, dir.path(), &["status", "--all", "--format", "json"]).json()["rotations"][0].clone();
    assert_eq!(status()["stage"], "draining");
    let due: jiff::Timestamp = status()["next_check_at"].as_str().unwrap().parse().unwrap();
    support::wait_for("the drain window to pass", || jiff::Timestamp::now() > due);
    let elsewhere = rekey_in(&emu, dir.path(), &["run", "--once", "--account", "123456789012"]);
    assert!(elsewhere.stdout.starts_with("advanced 0 rotations"), "only that account's: {}", elsewhere.stdout);
    assert_eq!(status()["stage"], "draining");
    let run = rekey_in(&emu, dir.path(), &["run", "--once", "--account", &member]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let status = rekey_in(&emu, dir.path(), &["status", "--all", "--format", "json"]).json();
    let rotation = &status["rotations"][0];
    assert_eq!(rotation["account_id"], member.as_str());
    assert_eq!(rotation["stage"], "completed", "{rotation}");
    let after = emu.keys_in(user, &member);
    let ids: Vec<&str> = after.as_array().unwrap().iter().map(|k| k["access_key_id"].as_str().unwrap()).collect();
    assert!(!ids.contains(&old.as_str()) && ids.len() == 1, "the old key is gone in {member}: {after}");
    assert_eq!(emu.keys("admin").as_array().unwrap().len(), 1, "nothing happened in the management account");
}

/// Defect 2: a `[[target]]` with `account = B` was taken by
/// `rotate --user NAME` without `--account`, which then rotated the
/// same-named user of the caller's account A and delivered A's new key
/// into B's sinks. Now the target's account is where the rotation acts
/// (through the role), or rotate refuses; `--account` only takes a target
/// of that account.
#[test]
fn defect_2_a_target_of_another_account_never_rotates_the_callers_user() {
    const CALLER: &str = "123456789012";
    let emu = Emulator::with_scenario(&json!({
        "users": [{"name": "app", "keys": [{"age": "120d"}]}],
        "organization": {"role_name": ROLE},
        "accounts": [{"id": APPS, "name": "apps", "users": [{"name": "app", "keys": [{"age": "120d"}]}]}],
    }));
    let dir = tempfile::tempdir().unwrap();
    let creds = dir.path().join("credentials");
    let original = "[app]\naws_access_key_id = AKIAOLDOLDOLDOLDOLD1\naws_secret_access_key = old\n";
    std::fs::write(&creds, original).unwrap();
    let configure = |role: bool, account: &str| {
        let org = if role { format!("[org]\nrole_name = \"{ROLE}\"\n\n") } else { String::new() };
        let text = format!(
            "{org}[rotation]\nwait_unused = \"1h\"\n\n[[target]]\nuser = \"app\"\naccount = \"{account}\"\ndeliver = [{{ type = \"credentials-file\", path = \"{}\", profile = \"app\" }}]\nverify = [{{ type = \"sts\" }}]\n",
            creds.display()
        );
        std::fs::write(dir.path().join("rekey.toml"), text).unwrap();
    };
    let keys = |account: &str| -> Vec<(String, String)> {
        let keys = emu.keys_in("app", account);
        keys.as_array().unwrap().iter().map(|k| (k["access_key_id"].as_str().unwrap().to_owned(), k["status"].as_str().unwrap().to_owned())).collect()
    };
    let (in_caller, in_apps) = (keys(CALLER), keys(APPS));
    let unchanged = |what: &str| {
        assert_eq!(keys(CALLER), in_caller, "{what}: nothing changed in the caller's account");
        assert_eq!(keys(APPS), in_apps, "{what}: nothing changed in {APPS}");
        assert_eq!(std::fs::read_to_string(&creds).unwrap(), original, "{what}: the sink is as it was");
    };

    // No role to reach B: refused, naming both accounts and the way out.
    configure(false, APPS);
    for args in [&["rotate", "--user", "app", "--yes"][..], &["rotate", "--user", "app", "--dry-run"]] {
        emu.reset_calls();
        let run = rekey_in(&emu, dir.path(), args);
        assert_eq!(run.code, 2, "{args:?}: {}\n{}", run.stdout, run.stderr);
        for needed in [APPS, CALLER, "role_name", "--account"] {
            assert!(run.stderr.contains(needed), "{args:?}: the message names {needed}: {}", run.stderr);
        }
        assert_eq!(emu.calls_in(APPS)["total"], 0, "{args:?}: nothing reached {APPS}");
        unchanged(&format!("{args:?}"));
    }

    // `--account A` never takes B's target, and `--account B` never A's.
    let run = rekey_in(&emu, dir.path(), &["rotate", "--user", "app", "--account", CALLER, "--yes"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("no delivery target"), "{}", run.stderr);
    unchanged("--account of the caller");
    configure(true, CALLER);
    let run = rekey_in(&emu, dir.path(), &["rotate", "--user", "app", "--account", APPS, "--yes"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("no delivery target"), "{}", run.stderr);
    unchanged("--account of the other account");

    // With the role: the rotation is B's, through the role; A is untouched.
    configure(true, APPS);
    let plan = rekey_in(&emu, dir.path(), &["rotate", "--user", "app", "--dry-run"]);
    assert_eq!(plan.code, 0, "{}", plan.stderr);
    assert!(plan.stdout.contains(&format!("in account {APPS}")), "{}", plan.stdout);
    let run = rekey_in(&emu, dir.path(), &["rotate", "--user", "app", "--yes"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let status = rekey_in(&emu, dir.path(), &["status", "--format", "json"]).json();
    let rotation = &status["rotations"][0];
    assert_eq!(rotation["account_id"], APPS, "{rotation}");
    assert_eq!(keys(CALLER), in_caller, "no key created or changed in the caller's account");
    let new_key = rotation["new_key_id"].as_str().unwrap();
    assert!(keys(APPS).iter().any(|(id, _)| id == new_key), "the new key is {APPS}'s");
    assert!(std::fs::read_to_string(&creds).unwrap().contains(new_key), "the sink holds {APPS}'s new key");
}
