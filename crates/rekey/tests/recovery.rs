//! What happens around a rotation: crashes at every step, two runners at
//! once, an application calling AWS throughout, a consumer that keeps using
//! the old key, manual and exec steps.

mod support;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use support::{app_call, calls_of, wait_for, Rig, Run, LONG};

/// No waits. Verifiers get two minutes: on a busy machine the AWS CLI
/// (the application) can take seconds to start, and it must still pass.
const ZERO_WAITS: &str = "wait_unused = \"0s\"\nlast_used_lag = \"0s\"\ngrace = \"0s\"\nverify_timeout = \"120s\"";

fn rotate_crashing_at(rig: &Rig, point: &str) -> Run {
    rig.rekey_cmd()
        .env("REKEY_CRASH_AFTER", point)
        .args(["rotate", "--user", &rig.user, "--yes"])
        .output()
        .expect("run rekey")
        .into()
}

#[test]
fn a_crash_after_any_step_converges_to_one_new_key() {
    let points = [
        "save:creating",
        "create-key",
        "save:delivering",
        "deliver-0",
        "save:verifying_new",
        "save:draining",
        "save:deactivating",
        "deactivate",
        "save:verifying_deactivated",
        "save:awaiting_delete",
        "save:deleting",
        "delete-key",
    ];
    // Two at a time: each case is its own emulator and state.
    for pair in points.chunks(2) {
        std::thread::scope(|s| {
            for point in pair {
                s.spawn(move || {
                    let rig = Rig::new();
                    rig.config_app(ZERO_WAITS);
                    let crashed = rotate_crashing_at(&rig, point);
                    assert_eq!(crashed.code, -1, "{point}: the process was killed: {}", crashed.stderr);
                    let r = rig.run_until("completed", LONG);
                    let new_key = r["new_key_id"].as_str().unwrap().to_owned();
                    assert_eq!(rig.keys(), [(new_key, "Active".to_owned())], "{point}: exactly one key, the new one");
                    assert_eq!(rig.app().code, 0, "{point}: the application works");
                    let history = rig.rekey(&["history", "--format", "json"]).json();
                    let count = |event: &str| history["events"].as_array().unwrap().iter().filter(|e| e["event"] == event).count();
                    // A crash before the new key was saved loses its secret:
                    // that key is deleted (it was never used) and another made.
                    let (created, removed) = match *point {
                        "create-key" => (1, count("deleted_unrecorded_key")),
                        "save:delivering" => (2, count("deleted_lost_key")),
                        _ => (1, 0),
                    };
                    assert_eq!(count("created_new_key"), created, "{point}: keys created");
                    assert_eq!(removed, usize::from(created == 2 || *point == "create-key"), "{point}: lost keys deleted");
                    assert_eq!(calls_of(&rig.emu, "iam:CreateAccessKey"), 1 + if *point == "create-key" || *point == "save:delivering" { 2 } else { 1 }, "{point}");
                });
            }
        });
    }
}

#[test]
fn an_undo_interrupted_by_a_crash_converges() {
    for point in ["reactivate", "restore-0", "delete-new-key"] {
        let rig = Rig::new();
        rig.config_app("wait_unused = \"0s\"\nlast_used_lag = \"0s\"\ngrace = \"1h\"\nverify_timeout = \"120s\"");
        let original = std::fs::read(rig.credentials()).unwrap();
        assert_eq!(rig.rekey(&["rotate", "--user", &rig.user, "--yes"]).code, 0);
        let id = rig.rotation()["id"].as_str().unwrap().to_owned();
        let crashed: Run = rig.rekey_cmd().env("REKEY_CRASH_AFTER", point).args(["rollback", &id]).output().unwrap().into();
        assert_eq!(crashed.code, -1, "{point}");
        let again = rig.rekey(&["rollback", &id]);
        assert_eq!(again.code, 0, "{point}: {}", again.stderr);
        assert_eq!(rig.rotation()["stage"], "rolled_back");
        assert_eq!(rig.keys(), [(rig.old_key.clone(), "Active".to_owned())], "{point}");
        assert_eq!(std::fs::read(rig.credentials()).unwrap(), original, "{point}");
    }
}

#[test]
fn two_runners_never_run_a_step_twice() {
    let rig = Rig::new();
    rig.config_app(ZERO_WAITS);
    // Leave a due rotation behind, its lease held by a dead process.
    assert_eq!(rotate_crashing_at(&rig, "save:creating").code, -1);
    let children: Vec<_> = (0..2).map(|_| rig.rekey_cmd().args(["run", "--once"]).stdout(std::process::Stdio::null()).spawn().unwrap()).collect();
    for mut child in children {
        assert!(child.wait().unwrap().success());
    }
    let r = rig.run_until("completed", LONG);
    assert_eq!(calls_of(&rig.emu, "iam:CreateAccessKey"), 2, "the rig's own key and exactly one new key");
    assert_eq!(rig.keys(), [(r["new_key_id"].as_str().unwrap().to_owned(), "Active".to_owned())]);
}

#[test]
fn no_outage_while_a_rotation_runs() {
    let rig = Rig::new();
    rig.config_app("wait_unused = \"3s\"\nlast_used_lag = \"0s\"\ngrace = \"1s\"\nverify_timeout = \"120s\"");
    let stop = AtomicBool::new(false);
    let calls = AtomicUsize::new(0);
    let failures = std::thread::scope(|s| {
        let app = s.spawn(|| {
            let mut failures = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let run = rig.app();
                calls.fetch_add(1, Ordering::Relaxed);
                if run.code != 0 {
                    failures.push(run.stderr);
                }
            }
            failures
        });
        wait_for("the application's first call", || calls.load(Ordering::Relaxed) >= 1);
        let run = rig.rekey(&["rotate", "--user", &rig.user, "--yes"]);
        assert_eq!(run.code, 0, "{}", run.stderr);
        rig.run_until("completed", LONG);
        // The application goes on working once the old key is gone.
        let at_completion = calls.load(Ordering::Relaxed);
        wait_for("two application calls after completion", || calls.load(Ordering::Relaxed) >= at_completion + 2);
        stop.store(true, Ordering::Relaxed);
        app.join().unwrap()
    });
    let calls = calls.into_inner();
    assert!(failures.is_empty(), "{} of {calls} application calls failed: {failures:?}", failures.len());
    let r = rig.rotation();
    assert_eq!(rig.keys(), [(r["new_key_id"].as_str().unwrap().to_owned(), "Active".to_owned())]);
}

#[test]
fn an_old_key_still_in_use_is_never_deactivated() {
    let rig = Rig::new();
    // Any use after delivery counts (the emulator's last-used data is exact).
    rig.config_app("wait_unused = \"5s\"\nlast_used_lag = \"0s\"\nlast_used_margin = \"0s\"\ndrain_timeout = \"8s\"\ngrace = \"0s\"\nverify_timeout = \"120s\"");
    // A consumer nobody told about: it keeps the old key.
    let legacy = rig.path("legacy");
    std::fs::create_dir(&legacy).unwrap();
    let legacy_file = legacy.join("credentials");
    std::fs::write(&legacy_file, format!("[app]\naws_access_key_id = {}\naws_secret_access_key = {}\n", rig.old_key, rig.old_secret)).unwrap();
    assert_eq!(rig.rekey(&["rotate", "--user", &rig.user, "--yes"]).code, 0);
    assert_eq!(rig.rotation()["stage"], "draining");

    let stop = AtomicBool::new(false);
    let used = AtomicUsize::new(0);
    let blocked = std::thread::scope(|s| {
        s.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                assert_eq!(app_call(&rig.emu, &legacy_file).code, 0, "the old key keeps working while draining");
                used.fetch_add(1, Ordering::Relaxed);
            }
        });
        // The consumer used the old key after delivery, however slow the machine.
        wait_for("the forgotten consumer's first call", || used.load(Ordering::Relaxed) >= 1);
        let started = Instant::now();
        let blocked = loop {
            assert_eq!(rig.rekey(&["run", "--once"]).code, 0);
            let r = rig.rotation();
            assert!(rig.keys().contains(&(rig.old_key.clone(), "Active".to_owned())), "old key still active: {r}");
            if r["stage"] == "blocked" {
                break r;
            }
            assert_eq!(r["stage"], "draining", "{r}");
            assert!(started.elapsed() < LONG, "not blocked after drain_timeout: {r}");
            std::thread::sleep(Duration::from_millis(400));
        };
        stop.store(true, Ordering::Relaxed);
        blocked
    });
    let reason = blocked["blocked_reason"].as_str().unwrap();
    assert!(reason.contains("still in use") && reason.contains("by sts in us-east-1"), "{reason}");
    assert_eq!(blocked["old_key_used_after_delivery"]["service"], "sts");
    assert!(rig.keys().contains(&(rig.old_key.clone(), "Active".to_owned())));

    // The consumer was found and moved: confirm, and the rotation finishes.
    let confirm = rig.rekey(&["confirm", blocked["id"].as_str().unwrap()]);
    assert_eq!(confirm.code, 0, "{}", confirm.stderr);
    let r = rig.run_until("completed", LONG);
    assert_eq!(rig.keys(), [(r["new_key_id"].as_str().unwrap().to_owned(), "Active".to_owned())]);
}

#[test]
fn manual_delivery_and_verification_wait_for_a_person() {
    let rig = Rig::new();
    rig.config(ZERO_WAITS, r#"{ type = "manual" }"#, r#"{ type = "manual" }"#);
    let refused = rig.rekey(&["rotate", "--user", &rig.user, "--yes"]);
    assert_eq!(refused.code, 2, "a manual sink would print a secret to a pipe");
    assert!(refused.stderr.contains("--reveal"), "{}", refused.stderr);

    let run = rig.rekey(&["rotate", "--user", &rig.user, "--yes", "--reveal"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let r = rig.rotation();
    assert_eq!(r["stage"], "blocked");
    assert!(r["blocked_reason"].as_str().unwrap().contains("rekey confirm"), "{r}");
    let shown = |name: &str| run.stdout.lines().find(|l| l.contains(name)).expect("the key, shown once").rsplit(' ').next().unwrap().to_owned();
    let (shown_id, secret) = (shown("aws_access_key_id"), shown("aws_secret_access_key"));
    let secret = secret.as_str();
    assert_eq!(secret.len(), 40);
    assert_eq!(r["new_key_id"], shown_id.as_str());
    let id = r["id"].as_str().unwrap().to_owned();

    // Delivery confirmed; then manual verification, before and after deactivation.
    for expected in ["blocked", "blocked", "completed"] {
        let confirm = rig.rekey(&["confirm", &id]);
        assert_eq!(confirm.code, 0, "{}", confirm.stderr);
        assert!(!confirm.stdout.contains(secret), "the secret is shown only once");
        assert_eq!(rig.rotation()["stage"], expected);
    }
    assert_eq!(rig.keys(), [(shown_id, "Active".to_owned())], "the key the person received is the one left");
    for name in ["state.db", "state.db-wal"] {
        if let Ok(bytes) = std::fs::read(rig.path(name)) {
            assert!(!bytes.windows(40).any(|w| w == secret.as_bytes()), "no secret in {name}");
        }
    }
}

#[test]
fn exec_delivery_passes_the_key_on_stdin_only() {
    let rig = Rig::new();
    let out = rig.path("delivered.json");
    let seen = rig.path("seen.txt");
    let script = rig.path("deliver.sh");
    std::fs::write(&script, format!("#!/bin/sh\ncat > {}\n{{ echo \"$@\"; env; }} > {}\necho 'delivered, thanks' >&2\n", out.display(), seen.display())).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o700)).unwrap();
    rig.config(ZERO_WAITS, &format!("{{ type = \"exec\", command = [\"{}\", \"--flag\"] }}", script.display()), r#"{ type = "sts" }"#);
    let run = rig.rekey(&["rotate", "--user", &rig.user, "--yes", "-vv"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let r = rig.rotation();
    assert_eq!(r["stage"], "completed");
    let delivered: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert_eq!(delivered["AccessKeyId"], r["new_key_id"]);
    assert_eq!(delivered["UserName"], rig.user.as_str());
    let secret = delivered["SecretAccessKey"].as_str().unwrap();
    let argv_and_env = std::fs::read_to_string(&seen).unwrap();
    assert!(argv_and_env.contains("--flag"));
    assert!(!argv_and_env.contains(secret), "the secret is not in argv or the environment");
    assert!(!run.stdout.contains(secret) && !run.stderr.contains(secret));
}

#[test]
fn exec_commands_get_a_clean_environment() {
    let rig = Rig::new();
    // rekey itself runs with a profile and the admin's keys in its environment.
    let aws = rig.path(".aws");
    std::fs::create_dir_all(&aws).unwrap();
    let env: std::collections::HashMap<_, _> = rig.emu.env().into_iter().collect();
    let profile = format!("[rekey-admin]\naws_access_key_id = {}\naws_secret_access_key = {}\n", env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"]);
    std::fs::write(aws.join("credentials"), profile).unwrap();
    let script = |name: &str| {
        let path = rig.path(name);
        std::fs::write(&path, format!("#!/bin/sh\ncat > /dev/null\nenv > {}.env\n", path.display())).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o700)).unwrap();
        path.display().to_string()
    };
    rig.config(
        ZERO_WAITS,
        &format!("{{ type = \"exec\", command = [\"{}\"], env = {{ FOO = \"sink\" }} }}", script("deliver.sh")),
        &format!("{{ type = \"sts\" }}, {{ type = \"exec\", command = [\"{}\"], env = {{ FOO = \"verifier\" }} }}", script("verify.sh")),
    );
    let run: Run = rig.rekey_cmd().env("AWS_PROFILE", "rekey-admin").args(["rotate", "--user", &rig.user, "--yes"]).output().unwrap().into();
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(rig.rotation()["stage"], "completed");
    for (name, foo) in [("deliver.sh", "sink"), ("verify.sh", "verifier")] {
        let seen = std::fs::read_to_string(rig.path(&format!("{name}.env"))).unwrap();
        let vars: Vec<&str> = seen.lines().collect();
        assert!(!vars.iter().any(|v| v.starts_with("AWS_")), "{name} sees none of rekey's AWS settings: {vars:?}");
        for wanted in [format!("HOME={}", rig.dir.path().display()), format!("FOO={foo}")] {
            assert!(vars.contains(&wanted.as_str()), "{name} sees {wanted}: {vars:?}");
        }
        assert!(vars.iter().any(|v| v.starts_with("PATH=")), "{name}: {vars:?}");
    }
}

#[test]
fn abort_after_a_crash_in_creating_or_delivering_restores_everything() {
    for point in ["create-key", "deliver-0"] {
        let rig = Rig::new();
        rig.config_app(ZERO_WAITS);
        let original = std::fs::read(rig.credentials()).unwrap();
        assert_eq!(rotate_crashing_at(&rig, point).code, -1, "{point}");
        let r = rig.rotation();
        assert_eq!(r["stage"], if point == "create-key" { "creating" } else { "delivering" }, "{point}");
        let abort = rig.rekey(&["abort", r["id"].as_str().unwrap()]);
        assert_eq!(abort.code, 0, "{point}: {}", abort.stderr);
        assert_eq!(rig.rotation()["stage"], "aborted");
        assert_eq!(rig.keys(), [(rig.old_key.clone(), "Active".to_owned())], "{point}: the key made before the crash is gone");
        assert_eq!(std::fs::read(rig.credentials()).unwrap(), original, "{point}");
        assert_eq!(rig.leftovers(), Vec::<String>::new(), "{point}: no restore copy or temp file is left");
        assert_eq!(rig.app().code, 0);
    }
}

#[test]
fn a_crash_after_deleting_the_inactive_key_converges() {
    let rig = Rig::new();
    let (other, _) = rig.create_key();
    assert_eq!(rig.aws(&["iam", "update-access-key", "--user-name", &rig.user, "--access-key-id", &other, "--status", "Inactive"]).code, 0);
    rig.config_app(ZERO_WAITS);
    let crashed: Run = rig
        .rekey_cmd()
        .env("REKEY_CRASH_AFTER", "delete-inactive")
        .args(["rotate", "--user", &rig.user, "--key", &rig.old_key, "--delete-inactive", "--yes"])
        .output()
        .unwrap()
        .into();
    assert_eq!(crashed.code, -1);
    let r = rig.run_until("completed", LONG);
    assert_eq!(rig.keys(), [(r["new_key_id"].as_str().unwrap().to_owned(), "Active".to_owned())]);
}

#[test]
fn the_audit_log_names_who_acted() {
    let rig = Rig::new();
    rig.config_app("wait_unused = \"1h\"\nlast_used_lag = \"0s\"\nverify_timeout = \"120s\"");
    assert_eq!(rig.rekey(&["--by", "alice@example.com", "rotate", "--user", &rig.user, "--yes"]).code, 0);
    let id = rig.rotation()["id"].as_str().unwrap().to_owned();
    assert_eq!(rig.rekey_cmd().env("REKEY_BY", "bob").args(["rollback", &id]).output().unwrap().status.code(), Some(0));
    let events = rig.rekey(&["history", &id, "--format", "json"]).json()["events"].as_array().unwrap().clone();
    let actor_of = |event: &str| events.iter().find(|e| e["event"] == event).unwrap()["actor"].clone();
    assert_eq!(actor_of("created_new_key"), "alice@example.com");
    assert_eq!(actor_of("deleted_new_key"), "bob");
}

#[test]
fn throttling_mid_rotation_stops_cleanly_and_the_next_run_converges() {
    let rig = Rig::new();
    rig.config_app(&format!("{ZERO_WAITS}\nretry_after = \"0s\""));
    rig.emu.inject_fault("iam:UpdateAccessKey", "Throttling", 400, 100);
    let run: Run = rig.rekey_cmd().env("AWS_MAX_ATTEMPTS", "2").args(["rotate", "--user", &rig.user, "--yes"]).output().unwrap().into();
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("iam:UpdateAccessKey was throttled"), "{}", run.stderr);
    let r = rig.rotation();
    assert_eq!(r["stage"], "deactivating", "the step did not happen, and nothing says it did");
    assert!(r["waiting_for"].as_str().unwrap().contains("retry after an error"), "{r}");
    assert!(rig.keys().contains(&(rig.old_key.clone(), "Active".to_owned())), "the old key is untouched");
    assert_eq!(rig.app().code, 0);

    rig.emu.clear_faults();
    let r = rig.run_until("completed", LONG);
    assert_eq!(rig.keys(), [(r["new_key_id"].as_str().unwrap().to_owned(), "Active".to_owned())]);
    let history = rig.rekey(&["history", "--format", "json"]).json();
    assert!(history["events"].as_array().unwrap().iter().any(|e| e["event"] == "step_failed"), "the failure is audited");
}

#[test]
fn an_exec_only_target_finishes_across_processes() {
    // The secret went to a command only; a later `rekey run` cannot sign
    // with it, and need not: the new key was proven before deactivation.
    let rig = Rig::new();
    rig.config(ZERO_WAITS, r#"{ type = "exec", command = ["sh", "-c", "cat > /dev/null"] }"#, "");
    let crashed = rotate_crashing_at(&rig, "save:verifying_deactivated");
    assert_eq!(crashed.code, -1);
    let r = rig.run_until("completed", LONG);
    assert_eq!(rig.keys(), [(r["new_key_id"].as_str().unwrap().to_owned(), "Active".to_owned())]);
    let history = rig.rekey(&["history", "--format", "json"]).json();
    assert!(history["events"].as_array().unwrap().iter().any(|e| e["event"] == "verification_skipped"));
}

#[test]
fn an_interrupted_restore_of_an_ssm_pair_restores_both_parameters() {
    // Killed between the two parameters: of a restore (the id is back, the
    // secret not yet), or of the delivery (the secret is new, the id not yet).
    for (command, crash) in [("rollback", "ssm-restored:/app/id"), ("abort", "ssm-delivered:/app/secret")] {
        let rig = Rig::new();
        for (name, value) in [("/app/id", "AKIAOLDOLDOLDOLDOLD1"), ("/app/secret", "old-secret")] {
            assert_eq!(rig.aws(&["ssm", "put-parameter", "--name", name, "--type", "SecureString", "--value", value]).code, 0);
        }
        rig.config(
            "wait_unused = \"1h\"\nlast_used_lag = \"0s\"\nverify_timeout = \"20s\"",
            r#"{ type = "ssm", id_name = "/app/id", secret_name = "/app/secret" }"#,
            r#"{ type = "sts" }"#,
        );
        let value = |name: &str| rig.aws(&["ssm", "get-parameter", "--name", name, "--with-decryption"]).json()["Parameter"]["Value"].as_str().unwrap().to_owned();
        if command == "rollback" {
            assert_eq!(rig.rekey(&["rotate", "--user", &rig.user, "--yes"]).code, 0);
            let id = rig.rotation()["id"].as_str().unwrap().to_owned();
            let crashed: Run = rig.rekey_cmd().env("REKEY_CRASH_AFTER", crash).args(["rollback", &id]).output().unwrap().into();
            assert_eq!(crashed.code, -1);
            assert_eq!(value("/app/id"), "AKIAOLDOLDOLDOLDOLD1", "the id goes back first");
            assert_ne!(value("/app/secret"), "old-secret", "cut short before the secret");
        } else {
            assert_eq!(rotate_crashing_at(&rig, crash).code, -1);
            assert_eq!(value("/app/id"), "AKIAOLDOLDOLDOLDOLD1", "the id goes last");
            assert_ne!(value("/app/secret"), "old-secret", "the secret went first");
        }
        let id = rig.rotation()["id"].as_str().unwrap().to_owned();
        let again = rig.rekey(&[command, &id]);
        assert_eq!(again.code, 0, "{command}: {}", again.stderr);
        assert_eq!(value("/app/secret"), "old-secret", "{command}: never the new secret left behind");
        assert_eq!(value("/app/id"), "AKIAOLDOLDOLDOLDOLD1", "{command}");
        assert_eq!(rig.keys(), [(rig.old_key.clone(), "Active".to_owned())], "{command}");
    }
}

#[test]
fn an_undo_that_fails_on_aws_is_finished_by_the_next_run_not_undone() {
    // Rolled back by a failed verification of the new key, and by a person.
    for requested in [false, true] {
        let rig = Rig::new();
        let original = std::fs::read(rig.credentials()).unwrap();
        let unhealthy = r#"{ type = "exec", command = ["sh", "-c", "exit 1"] }"#;
        rig.config(
            &format!("{}\nretry_after = \"0s\"", if requested { "wait_unused = \"1h\"\nlast_used_lag = \"0s\"\nverify_timeout = \"120s\"" } else { "last_used_lag = \"0s\"\nverify_timeout = \"2s\"" }),
            &format!("{{ type = \"credentials-file\", path = \"{}\", profile = \"app\" }}", rig.credentials().display()),
            if requested { r#"{ type = "sts" }"# } else { unhealthy },
        );
        if requested {
            assert_eq!(rig.rekey(&["rotate", "--user", &rig.user, "--yes"]).code, 0);
        }
        rig.emu.inject_fault("iam:DeleteAccessKey", "Throttling", 400, 100);
        let args: Vec<String> = if requested {
            vec!["rollback".into(), rig.rotation()["id"].as_str().unwrap().into()]
        } else {
            vec!["rotate".into(), "--user".into(), rig.user.clone(), "--yes".into()]
        };
        let failed: Run = rig.rekey_cmd().env("AWS_MAX_ATTEMPTS", "1").args(&args).output().unwrap().into();
        assert_eq!(failed.code, 2, "requested={requested}: {}", failed.stderr);
        assert!(failed.stderr.contains("iam:DeleteAccessKey was throttled"), "{}", failed.stderr);

        rig.emu.clear_faults();
        let r = rig.run_until("rolled_back", LONG);
        assert_eq!(rig.keys(), [(rig.old_key.clone(), "Active".to_owned())], "requested={requested}: {r}");
        assert_eq!(std::fs::read(rig.credentials()).unwrap(), original, "requested={requested}");
        let history = rig.rekey(&["history", "--format", "json"]).json();
        let events: Vec<&str> = history["events"].as_array().unwrap().iter().map(|e| e["event"].as_str().unwrap()).collect();
        assert!(events.contains(&"step_failed"), "{events:?}");
        assert!(!events.contains(&"stage_deactivation_verified"), "the rotation never went forward again: {events:?}");
    }
}
