//! What people read, snapshotted (insta): `status`, `history` and `rotate
//! --dry-run` at 80 and 120 columns, `policy`, and the errors a newcomer
//! meets first. A change to any of them shows up as a reviewed diff in
//! `tests/snapshots/`. Ids, keys, times and paths that differ per run are
//! replaced by placeholders.

mod support;

use support::Rig;

/// Stops in `draining`: the window is an hour.
const STOP_IN_DRAINING: &str = "wait_unused = \"1h\"\nlast_used_lag = \"0s\"\ngrace = \"0s\"\nverify_timeout = \"120s\"\nretry_after = \"0s\"";

/// Snapshot settings: what differs per run replaced by a placeholder.
fn settings(rig: &Rig, suffix: Option<usize>) -> insta::Settings {
    let mut settings = insta::Settings::clone_current();
    settings.add_filter(&regex_escape(&rig.dir.path().display().to_string()), "[DIR]");
    settings.add_filter(r"AKIA[A-Z0-9]{16}", "AKIA[KEY]");
    settings.add_filter(r"rot-\d{8}-[0-9a-f]{6}", "rot-[ID]");
    settings.add_filter(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", "[TIME]");
    settings.add_filter(r"\d{4}-\d\d-\d\d \d\d:\d\d", "[TIME]");
    settings.add_filter(r"in \d+[smh]( \d+[sm])?", "in [WAIT]");
    if let Some(columns) = suffix {
        settings.set_snapshot_suffix(columns.to_string());
    }
    settings
}

fn regex_escape(text: &str) -> String {
    text.chars().map(|c| if c.is_ascii_alphanumeric() || c == '/' { c.to_string() } else { format!("\\{c}") }).collect()
}

fn read(rig: &Rig, columns: usize, args: &[&str]) -> String {
    let run: support::Run = rig.rekey_cmd().env("COLUMNS", columns.to_string()).args(args).output().unwrap().into();
    assert_eq!(run.code, 0, "{args:?}: {}", run.stderr);
    assert!(run.stdout.lines().all(|l| l.chars().count() <= columns), "{args:?} fits {columns} columns:\n{}", run.stdout);
    run.stdout
}

#[test]
fn status_history_and_the_dry_run_at_80_and_120_columns() {
    let rig = Rig::new();
    rig.config_app(STOP_IN_DRAINING);
    let dry_run = |columns| read(&rig, columns, &["rotate", "--user", &rig.user, "--dry-run"]);
    let planned = [dry_run(80), dry_run(120)];
    let started = rig.rekey(&["rotate", "--user", &rig.user, "--yes"]);
    assert_eq!(started.code, 0, "{}", started.stderr);
    for (i, columns) in [80, 120].into_iter().enumerate() {
        settings(&rig, Some(columns)).bind(|| {
            insta::assert_snapshot!("rotate_dry_run", planned[i]);
            insta::assert_snapshot!("status", read(&rig, columns, &["status"]));
            insta::assert_snapshot!("history", read(&rig, columns, &["history"]));
        });
    }
}

#[test]
fn the_policy_for_a_target_of_every_sink() {
    let rig = Rig::new();
    let deliver = format!(
        "{{ type = \"credentials-file\", path = \"{}\", profile = \"app\" }}, {{ type = \"secretsmanager\", secret_id = \"prod/app/aws\" }}, {{ type = \"ssm\", name = \"/prod/app/aws\" }}",
        rig.credentials().display()
    );
    rig.config(STOP_IN_DRAINING, &deliver, "{ type = \"sts\" }");
    settings(&rig, None).bind(|| insta::assert_snapshot!("policy", read(&rig, 120, &["policy"])));
}

/// The first errors a newcomer meets: each one line that says what to do,
/// exit 2, nothing changed.
#[test]
fn the_first_errors_a_newcomer_meets() {
    let rig = Rig::new();
    rig.config_app(STOP_IN_DRAINING);
    let mut seen = String::new();
    for args in [
        &["rotate", "--user", "nobody", "--yes"][..],
        &["rotate", "--user", &rig.user, "--key", "AKIAIOSFODNN7EXAMPLE", "--yes"],
        &["rotate", "--user", &rig.user, "--account", "999999999999", "--yes"],
        &["confirm", "rot-20261206-000000"],
        &["rollback", "rot-20261206-000000"],
        &["status", "--state", "dynamodb:"],
        &["scan", "--max-age", "ninety days"],
        &["history", "--since", "yesterday"],
        &["suppress", "--user", &rig.user],
        &["state", "migrate"],
    ] {
        let run = rig.rekey(args);
        assert_eq!(run.code, 2, "{args:?}: {}{}", run.stdout, run.stderr);
        seen.push_str(&format!("$ rekey {}\n{}\n", args.join(" "), run.stderr.trim_end()));
    }
    settings(&rig, None).bind(|| insta::assert_snapshot!("first_errors", seen));
}
