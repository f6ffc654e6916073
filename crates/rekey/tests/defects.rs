//! The safety review's defects that the emulator can show end to end, with
//! the real binary and the AWS CLI as the person and the application (the
//! engine's own regression tests are in crates/rekey-engine/tests/decisions.rs).

mod support;

use support::{Rig, LONG};

/// Stops in `draining`: the window is an hour.
const STOP_IN_DRAINING: &str = "wait_unused = \"1h\"\nlast_used_lag = \"0s\"\ngrace = \"0s\"\nverify_timeout = \"120s\"\nretry_after = \"0s\"";
/// Stops in `awaiting_delete` for 45 s: longer than `rotate` takes from
/// the deactivation on a busy machine, short enough to wait out.
const STOP_BEFORE_DELETION: &str = "wait_unused = \"0s\"\nlast_used_lag = \"0s\"\ngrace = \"45s\"\nverify_timeout = \"120s\"\nretry_after = \"0s\"";

fn key_status(rig: &Rig, key: &str) -> Option<String> {
    rig.keys().into_iter().find(|(id, _)| id == key).map(|(_, status)| status)
}

fn rotate(rig: &Rig) -> String {
    let started = rig.rekey(&["rotate", "--user", &rig.user, "--yes"]);
    assert_eq!(started.code, 0, "{}", started.stderr);
    rig.rotation()["id"].as_str().unwrap().to_owned()
}

/// An exec-only target verified by `sts`: after deactivation no check can
/// sign with the new key (no sink gives it back), so only a fresh look at
/// the user's keys protects the user.
fn exec_only(rig: &Rig, rotation: &str) {
    let deliver = format!("{{ type = \"exec\", command = [\"sh\", \"-c\", \"cat > {}\"] }}", rig.path("delivered.json").display());
    rig.config(rotation, &deliver, r#"{ type = "sts" }"#);
}

#[test]
fn defect_1_an_admin_deleting_the_new_key_while_draining_never_leaves_the_user_without_a_key() {
    let rig = Rig::new();
    exec_only(&rig, STOP_IN_DRAINING);
    let id = rotate(&rig);
    assert_eq!(rig.rotation()["stage"], "draining");
    let new_key = rig.rotation()["new_key_id"].as_str().unwrap().to_owned();
    // "An unknown second key": an admin removes it with the AWS CLI.
    assert_eq!(rig.aws(&["iam", "delete-access-key", "--user-name", &rig.user, "--access-key-id", &new_key]).code, 0);
    // A person ends the drain early; the next step would deactivate the old key.
    let confirmed = rig.rekey(&["confirm", &id, "--force"]);
    assert_eq!(confirmed.code, 0, "{}", confirmed.stderr);
    let r = rig.rotation();
    assert_eq!(r["stage"], "blocked", "{r}");
    assert_eq!(key_status(&rig, &rig.old_key).as_deref(), Some("Active"), "the old key is not touched");
    let reason = r["blocked_reason"].as_str().unwrap();
    assert!(reason.contains("no longer exists") && reason.contains(&format!("rekey rollback {id}")), "{reason}");
    // The way out it names works: the exec sink cannot be put back by
    // rekey and holds the deleted new key, so the rollback asks a person to
    // put the old key there by hand, and ends once they confirm.
    let rolled = rig.rekey(&["rollback", &id]);
    assert_eq!(rolled.code, 0, "{}", rolled.stderr);
    let r = rig.rotation();
    assert_eq!(r["stage"], "blocked", "{r}");
    let reason = r["blocked_reason"].as_str().unwrap();
    assert!(reason.contains(&format!("put the old key {} in place there by hand", rig.old_key)) && reason.contains(&format!("rekey confirm {id}")), "{reason}");
    let confirmed = rig.rekey(&["confirm", &id]);
    assert_eq!(rig.rotation()["stage"], "rolled_back", "{}", confirmed.stderr);
    assert_eq!(confirmed.code, 2, "a rotation that ends rolled back is exit 2, as for `rekey rotate`");
    assert_eq!(rig.keys(), [(rig.old_key.clone(), "Active".to_owned())]);
}

#[test]
fn defect_3_after_a_throttled_create_a_key_made_by_hand_is_never_deleted() {
    let rig = Rig::new();
    rig.config_app(STOP_IN_DRAINING);
    rig.emu.inject_fault("iam:CreateAccessKey", "Throttling", 400, 100);
    let failed = rig.rekey_cmd().env("AWS_MAX_ATTEMPTS", "1").args(["rotate", "--user", &rig.user, "--yes"]).output().unwrap();
    assert_eq!(failed.status.code(), Some(2), "{}", String::from_utf8_lossy(&failed.stderr));
    rig.emu.clear_faults();
    let id = rig.rotation()["id"].as_str().unwrap().to_owned();
    assert_eq!(rig.rotation()["stage"], "creating");
    // Meanwhile a person makes a key by hand.
    let (persons_key, _) = rig.create_key();
    let r = rig.run_until("blocked", LONG);
    assert_eq!(key_status(&rig, &persons_key).as_deref(), Some("Active"), "the person's key is kept: {r}");
    let reason = r["blocked_reason"].as_str().unwrap();
    assert!(reason.contains(&persons_key) && reason.contains(&format!("rekey abort {id}")), "{reason}");
    // abort, as named, leaves both keys as they are.
    assert_eq!(rig.rekey(&["abort", &id]).code, 0);
    assert_eq!(rig.rotation()["stage"], "aborted");
    assert_eq!(rig.keys().len(), 2);
}

#[test]
fn defect_7_an_old_key_reactivated_while_awaiting_deletion_can_be_rolled_back() {
    let rig = Rig::new();
    let original = std::fs::read(rig.credentials()).unwrap();
    rig.config_app(STOP_BEFORE_DELETION);
    let id = rotate(&rig);
    assert_eq!(rig.rotation()["stage"], "awaiting_delete");
    // A person turns the old key back on (a forgotten consumer broke).
    assert_eq!(rig.aws(&["iam", "update-access-key", "--user-name", &rig.user, "--access-key-id", &rig.old_key, "--status", "Active"]).code, 0);
    // At the end of the grace period, rekey looks again before deleting.
    let r = rig.run_until("blocked", LONG);
    let reason = r["blocked_reason"].as_str().unwrap();
    assert!(reason.contains(&format!("rekey rollback {id}")), "{reason}");
    assert_eq!(key_status(&rig, &rig.old_key).as_deref(), Some("Active"), "not deleted");
    let rolled = rig.rekey(&["rollback", &id]);
    assert_eq!(rolled.code, 0, "the rollback the message names works: {}", rolled.stderr);
    assert_eq!(rig.rotation()["stage"], "rolled_back");
    assert_eq!(rig.keys(), [(rig.old_key.clone(), "Active".to_owned())]);
    assert_eq!(std::fs::read(rig.credentials()).unwrap(), original);
    assert_eq!(rig.app().code, 0, "the application works on the old key");
}

#[test]
fn defect_13_an_old_key_reactivated_and_quarantined_between_two_runs_is_not_reenabled() {
    let rig = Rig::new();
    rig.config_app(STOP_BEFORE_DELETION);
    let id = rotate(&rig);
    assert_eq!(rig.rotation()["stage"], "awaiting_delete");
    // Between two runs a person turns the old key back on, then off again
    // (a leak found): to IAM's API it looks as rekey left it; CloudTrail's
    // UpdateAccessKey events show it is not.
    for status in ["Active", "Inactive"] {
        assert_eq!(rig.aws(&["iam", "update-access-key", "--user-name", &rig.user, "--access-key-id", &rig.old_key, "--status", status]).code, 0);
    }
    let refused = rig.rekey(&["rollback", &id]);
    assert_eq!(refused.code, 2, "{}", refused.stdout);
    assert!(refused.stderr.contains("deactivated by someone other than rekey"), "{}", refused.stderr);
    assert_eq!(key_status(&rig, &rig.old_key).as_deref(), Some("Inactive"), "not re-enabled");
    assert_eq!(rig.rotation()["stage"], "awaiting_delete", "nothing changed");
}
