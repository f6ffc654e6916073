//! `rekey retire` against the emulator: an unused key retired to
//! `completed` with no key made, a key a consumer still calls never
//! deactivated (the block names the consumer), and a check that fails
//! after the deactivation turns the key back on.

mod support;

use serde_json::json;
use support::{calls_of, Rig, LONG};

const NO_WAITS: &str = "wait_unused = \"0s\"\nlast_used_lag = \"0s\"\ngrace = \"0s\"\nverify_timeout = \"5s\"";

/// The user's target: the credentials file (a retirement writes no sink)
/// and `verify` (a retirement drops `sts`: there is no new key to sign with).
fn config(rig: &Rig, rotation: &str, verify: &str) {
    let file = format!("{{ type = \"credentials-file\", path = \"{}\", profile = \"app\" }}", rig.credentials().display());
    rig.config(rotation, &file, verify);
}

#[test]
fn retiring_an_unused_key_deletes_it_and_makes_none() {
    let rig = Rig::new();
    config(&rig, NO_WAITS, "{ type = \"sts\" }");
    let before = std::fs::read(rig.credentials()).unwrap();
    let plan = rig.rekey(&["retire", "--user", &rig.user, "--dry-run"]);
    assert_eq!(plan.code, 0, "{}", plan.stderr);
    assert!(plan.stdout.contains(&format!("Plan: retire key {}", rig.old_key)) && plan.stdout.contains("no key is created"), "{}", plan.stdout);
    let run = rig.rekey(&["retire", "--user", &rig.user, "--yes"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let r = rig.run_until("completed", LONG);
    assert!(r["new_key_id"].is_null(), "no new key: {r}");
    assert!(rig.keys().is_empty(), "the key is gone: {:?}", rig.keys());
    assert_eq!(calls_of(&rig.emu, "iam:CreateAccessKey"), 1, "only the rig's own key was ever made");
    assert_eq!(std::fs::read(rig.credentials()).unwrap(), before, "no sink written");
    let history = rig.rekey(&["history", "--format", "json"]).json();
    let events: Vec<&str> = history["events"].as_array().unwrap().iter().filter_map(|e| e["event"].as_str()).collect();
    assert!(events.contains(&"retirement_started") && events.contains(&"deleted_old_key"), "{events:?}");
    rig.assert_secret_nowhere(&rig.old_secret, &[&plan, &run]);
}

#[test]
fn retiring_a_key_a_consumer_still_calls_never_deactivates_it_and_names_the_consumer() {
    let rig = Rig::new();
    let waits = "wait_unused = \"5s\"\nlast_used_lag = \"0s\"\nlast_used_margin = \"0s\"\ngrace = \"0s\"\ndrain_timeout = \"1s\"";
    config(&rig, waits, "");
    let run = rig.rekey(&["retire", "--user", &rig.user, "--yes"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(rig.rotation()["stage"], "draining");
    std::thread::sleep(std::time::Duration::from_secs(2));
    // A cron host still calls with the key: in CloudTrail, and as IAM's last use.
    let series = json!({"service": "s3", "event_name": "ListBuckets", "ago": "0s", "source_ip": "10.0.0.9", "user_agent": "cron on 10.0.0.9", "count": 1, "every": "1m"});
    rig.emu.add_trail_events(&rig.old_key, &series);
    let at = rig.emu.trail_events(&rig.old_key)[0]["event_time"].as_str().unwrap().to_owned();
    rig.emu.set_key(&rig.old_key, &json!({"last_used": {"at": at, "service": "s3", "region": "us-east-1"}}));
    let r = rig.run_until("blocked", LONG);
    let reason = r["blocked_reason"].as_str().unwrap_or_default();
    assert!(reason.contains("after the retirement began") && reason.contains("10.0.0.9"), "the block names the consumer: {reason}");
    assert_eq!(rig.keys(), [(rig.old_key.clone(), "Active".to_owned())], "never deactivated");
    let scan = rig.rekey(&["scan", "--source", "api", "--format", "json"]).json();
    let row = scan["keys"].as_array().unwrap().iter().find(|k| k["access_key_id"] == rig.old_key.as_str()).unwrap().clone();
    assert_eq!(row["rotation"]["retirement"], true, "scans show a retirement: {row}");
}

#[test]
fn a_retirement_whose_check_fails_after_deactivation_turns_the_key_back_on() {
    let rig = Rig::new();
    // The application still reads the key from the credentials file.
    config(&rig, NO_WAITS, &rig.app_verifier(&rig.credentials()));
    let run = rig.rekey(&["retire", "--user", &rig.user, "--yes"]);
    assert_eq!(run.code, 0, "blocked is a stage, not an error: {}", run.stderr);
    let r = rig.rotation();
    assert_eq!(r["stage"], "blocked", "{r}");
    assert!(r["blocked_reason"].as_str().unwrap_or_default().contains("was reactivated"), "{r}");
    assert_eq!(rig.keys(), [(rig.old_key.clone(), "Active".to_owned())], "reactivated at once");
    assert_eq!(rig.app().code, 0, "the application works again");
    let rollback = rig.rekey(&["rollback", r["id"].as_str().unwrap()]);
    assert_eq!(rollback.code, 0, "{}", rollback.stderr);
    assert_eq!(rig.rotation()["stage"], "rolled_back");
    assert_eq!(rig.keys(), [(rig.old_key.clone(), "Active".to_owned())]);
}

#[test]
fn a_retirement_refuses_a_deliver_flag_and_an_inactive_key_changing_nothing() {
    let rig = Rig::new();
    config(&rig, NO_WAITS, "");
    let flag = rig.rekey(&["retire", "--user", &rig.user, "--deliver", "{ type = \"manual\" }", "--yes"]);
    assert_eq!(flag.code, 2, "retire has no --deliver: {}", flag.stderr);
    rig.aws(&["iam", "update-access-key", "--user-name", &rig.user, "--access-key-id", &rig.old_key, "--status", "Inactive"]);
    let inactive = rig.rekey(&["retire", "--user", &rig.user, "--key", &rig.old_key, "--yes"]);
    assert_eq!(inactive.code, 2);
    assert!(inactive.stderr.contains("is inactive") && inactive.stderr.contains("rather than retire it"), "{}", inactive.stderr);
    assert!(!rig.path("state.db").exists(), "no state store made on bad input");
}
