//! Several runners sharing one DynamoDB state table, as a team schedules
//! them (two cron hosts, a CronJob): each runner has its own HOME and no
//! state file; they meet only in the table. No step runs twice, no
//! rotation is skipped, a runner killed mid-step is taken over, a lease
//! held by a live runner elsewhere is respected until it expires, and a
//! third process sees everything with `rekey status`.

mod support;

use rekey_emulator::Emulator;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use support::{aws, calls_of, rekey_cmd, Run, LONG};

const USERS: usize = 6;
const TABLE: &str = "rekey-state";

struct Fleet {
    emu: Emulator,
    dir: tempfile::TempDir,
}

impl Fleet {
    fn new() -> Fleet {
        let users: Vec<Value> = (0..USERS).map(|i| json!({"name": format!("svc-{i}"), "keys": []})).collect();
        let fleet = Fleet { emu: Emulator::with_scenario(&json!({ "users": users })), dir: tempfile::tempdir().unwrap() };
        let mut targets = String::new();
        for i in 0..USERS {
            let user = format!("svc-{i}");
            let key = &aws(&fleet.emu, &["iam", "create-access-key", "--user-name", &user]).json()["AccessKey"];
            let creds = fleet.credentials(i);
            let text = format!("[app]\naws_access_key_id = {}\naws_secret_access_key = {}\n", key["AccessKeyId"].as_str().unwrap(), key["SecretAccessKey"].as_str().unwrap());
            std::fs::write(&creds, text).unwrap();
            targets += &format!(
                "\n[[target]]\nuser = \"{user}\"\ndeliver = [{{ type = \"credentials-file\", path = \"{}\", profile = \"app\" }}]\nverify = [{{ type = \"sts\" }}]\n",
                creds.display()
            );
        }
        // A short drain, so that every rotation waits once and the runners
        // meet over due rotations; three at a time in each runner.
        let config = format!(
            "[state]\nbackend = \"dynamodb\"\ntable = \"{TABLE}\"\n\n[rotation]\nwait_unused = \"2s\"\nlast_used_lag = \"0s\"\ngrace = \"0s\"\nverify_timeout = \"120s\"\nconcurrency = 3\n{targets}"
        );
        std::fs::write(fleet.config(), config).unwrap();
        fleet
    }

    fn config(&self) -> PathBuf {
        self.dir.path().join("rekey.toml")
    }

    fn credentials(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("credentials-{i}"))
    }

    /// rekey on a "host" of its own: a fresh HOME, no state file.
    fn runner(&self) -> (tempfile::TempDir, Command) {
        let home = tempfile::tempdir().unwrap();
        let mut cmd = rekey_cmd(Some(&self.emu), home.path());
        cmd.arg("--config").arg(self.config());
        (home, cmd)
    }

    fn rekey(&self, args: &[&str]) -> Run {
        let (_home, mut cmd) = self.runner();
        cmd.args(args).output().unwrap().into()
    }

    fn rotations(&self) -> Vec<Value> {
        let run = self.rekey(&["status", "--all", "--format", "json"]);
        assert_eq!(run.code, 0, "{}", run.stderr);
        run.json()["rotations"].as_array().unwrap().clone()
    }

    fn history(&self, id: &str) -> Vec<Value> {
        let run = self.rekey(&["history", id, "--format", "json"]);
        assert_eq!(run.code, 0, "{}", run.stderr);
        run.json()["events"].as_array().unwrap().clone()
    }
}

fn epoch_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

/// A lease on the rotation held by a runner of another host (its holder
/// names another machine, so no one may declare it dead) until `until`.
fn lease_elsewhere(emu: &Emulator, id: &str, until: i64) {
    let key = json!({"pk": {"S": format!("rotation#{id}")}, "sk": {"S": "rotation"}}).to_string();
    let values = json!({":o": {"S": "other-host.boot.pidns/4242/1"}, ":u": {"N": until.to_string()}}).to_string();
    aws(emu, &["dynamodb", "update-item", "--table-name", TABLE, "--key", &key, "--update-expression", "SET lease_owner = :o, lease_until = :u", "--expression-attribute-values", &values]);
}

#[test]
fn two_runners_share_a_table_and_never_run_a_step_twice() {
    let fleet = Fleet::new();
    let init = fleet.rekey(&["state", "init"]);
    assert_eq!(init.code, 0, "{}", init.stderr);
    assert!(init.stdout.contains("created"), "{}", init.stdout);
    let again = fleet.rekey(&["state", "init"]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert!(again.stdout.contains("exists"), "idempotent: {}", again.stdout);

    for i in 0..USERS {
        let run = fleet.rekey(&["rotate", "--user", &format!("svc-{i}"), "--yes"]);
        assert_eq!(run.code, 0, "{}", run.stderr);
    }
    let started = fleet.rotations();
    assert_eq!(started.len(), USERS);
    assert!(started.iter().all(|r| r["stage"] == "draining"), "each waits in its drain: {started:?}");
    let held = started.iter().find(|r| r["user_name"] == "svc-0").unwrap()["id"].as_str().unwrap().to_owned();
    let held_until = epoch_now() + 10;
    lease_elsewhere(&fleet.emu, &held, held_until);

    // Runner A alone until it is killed mid-step (after deactivating an old
    // key, before saving that), holding that rotation's lease; then rounds
    // of two runners at once until everything is done.
    let begun = std::time::Instant::now();
    loop {
        let (_home, mut a) = fleet.runner();
        let a: Run = a.env("REKEY_CRASH_AFTER", "deactivate").args(["run", "--once"]).output().unwrap().into();
        if a.code == -1 {
            break;
        }
        assert_eq!(a.code, 0, "runner A: {}", a.stderr);
        assert!(begun.elapsed() < LONG, "runner A never reached a deactivation");
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
    // Runner B logs JSON and writes metrics, as a scheduled job would.
    let metrics = fleet.dir.path().join("metrics/rekey.prom");
    let mut events = Vec::new();
    loop {
        let (_a_home, mut a) = fleet.runner();
        let (_b_home, mut b) = fleet.runner();
        let a = a.args(["run", "--once"]).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::piped()).spawn().unwrap();
        let b: Run = b.args(["--log-format", "json", "run", "--once", "--metrics"]).arg(&metrics).output().unwrap().into();
        let a: Run = a.wait_with_output().unwrap().into();
        assert_eq!((a.code, b.code), (0, 0), "runner A: {}\nrunner B: {}", a.stderr, b.stderr);
        for line in b.stderr.lines() {
            let event: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not one JSON event per line ({e}): {line}"));
            events.push(event);
        }
        let stages: Vec<Value> = fleet.rotations().iter().map(|r| r["stage"].clone()).collect();
        if stages.iter().all(|s| s == "completed") {
            break;
        }
        assert!(begun.elapsed() < LONG, "not all completed after {LONG:?}: {stages:?}");
        std::thread::sleep(std::time::Duration::from_millis(500));
    }

    // B's log: each stage change of each rotation it advanced is an event.
    let moved: Vec<&Value> = events.iter().filter(|e| e["result"] == "moved").collect();
    assert!(!moved.is_empty(), "{events:?}");
    for e in &moved {
        assert!(e["rotation"].as_str().is_some_and(|r| r.starts_with("rot-")) && e["stage"].is_string() && e["from"].is_string() && e["level"] == "INFO", "{e}");
    }
    // Its metrics, from the last pass: nothing left open.
    let text = std::fs::read_to_string(&metrics).unwrap();
    assert!(text.contains("rekey_rotations{stage=\"draining\"} 0\n") && text.contains("rekey_rotations_blocked 0\n"), "{text}");
    assert!(text.contains("# TYPE rekey_last_run_timestamp_seconds gauge\n"), "{text}");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&metrics).unwrap().permissions().mode() & 0o777, 0o644, "a collector of another user reads it");

    // Every user: one key, the new one, active, and in the application's file.
    for r in fleet.rotations() {
        let user = r["user_name"].as_str().unwrap();
        let i: usize = user.trim_start_matches("svc-").parse().unwrap();
        let new_key = r["new_key_id"].as_str().unwrap();
        let keys = fleet.emu.keys(user);
        assert_eq!(keys.as_array().unwrap().len(), 1, "{user}: {keys}");
        assert_eq!((keys[0]["access_key_id"].as_str(), keys[0]["status"].as_str()), (Some(new_key), Some("Active")));
        let file = std::fs::read_to_string(fleet.credentials(i)).unwrap();
        assert!(file.contains(new_key), "{user}: {file}");
    }
    // No secret in the table or in the JSON log: the new secrets are in
    // the applications' files only.
    let table = aws(&fleet.emu, &["dynamodb", "scan", "--table-name", TABLE]).stdout;
    let log = serde_json::to_string(&events).unwrap();
    for i in 0..USERS {
        let file = std::fs::read_to_string(fleet.credentials(i)).unwrap();
        let secret = file.lines().find_map(|l| l.strip_prefix("aws_secret_access_key = ")).unwrap();
        assert!(!table.contains(secret) && !log.contains(secret), "svc-{i}'s secret is stored or logged");
    }
    assert!(table.contains("rotation#"), "the scan read the table");
    // No step ran twice: one new key per rotation, one deactivation and one
    // deletion per old key, and each stage entered once per rotation.
    assert_eq!(calls_of(&fleet.emu, "iam:CreateAccessKey"), 2 * USERS as u64, "the seeds' keys and one new key each");
    assert_eq!(calls_of(&fleet.emu, "iam:DeleteAccessKey"), USERS as u64);
    for r in fleet.rotations() {
        let id = r["id"].as_str().unwrap();
        let events = fleet.history(id);
        let mut entered: BTreeMap<String, usize> = BTreeMap::new();
        for e in events.iter().filter_map(|e| e["to_stage"].as_str()) {
            *entered.entry(e.to_owned()).or_default() += 1;
        }
        assert!(entered.values().all(|n| *n == 1), "{id}: {entered:?}");
        assert_eq!(entered.get("completed"), Some(&1), "{id}: {entered:?}");
    }
    // The lease held elsewhere was respected until it expired.
    let taken = fleet.history(&held).into_iter().find(|e| e["from_stage"] == "draining").expect("it left draining");
    let at: jiff::Timestamp = taken["at"].as_str().unwrap().parse().unwrap();
    assert!(at.as_second() >= held_until, "left draining at {at}, while another host held it until {held_until}");
}

#[test]
fn migrate_copies_a_sqlite_store_into_dynamodb_and_back_and_refuses_a_full_target() {
    let fleet = Fleet::new();
    let sqlite = fleet.dir.path().join("state.db");
    let local = |args: &[&str]| -> Run {
        let (_home, mut cmd) = fleet.runner();
        cmd.arg("--state").arg(&sqlite).args(args).output().unwrap().into()
    };
    for i in 0..2 {
        let run = local(&["rotate", "--user", &format!("svc-{i}"), "--yes"]);
        assert_eq!(run.code, 0, "{}", run.stderr);
    }
    let before = local(&["history", "--format", "json"]).json();

    let no_table = fleet.rekey(&["state", "migrate", "--from", &format!("sqlite:{}", sqlite.display()), "--to", &format!("dynamodb:{TABLE}")]);
    assert_eq!(no_table.code, 2);
    assert!(no_table.stderr.contains("rekey state init"), "{}", no_table.stderr);
    assert_eq!(fleet.rekey(&["state", "init"]).code, 0);
    let typo = fleet.rekey(&["state", "migrate", "--from", "sqlite:/no/such/state.db", "--to", &format!("dynamodb:{TABLE}")]);
    assert_eq!(typo.code, 2);
    assert!(typo.stderr.contains("no such file"), "{}", typo.stderr);

    let from = format!("sqlite:{}", sqlite.display());
    let run = fleet.rekey(&["state", "migrate", "--from", &from, "--to", &format!("dynamodb:{TABLE}")]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.contains("2 rotations") && run.stdout.contains("verified"), "{}", run.stdout);
    // The table now answers as the file did.
    assert_eq!(fleet.rekey(&["history", "--format", "json"]).json(), before);
    assert_eq!(fleet.rotations().len(), 2);
    // Not into a store that holds anything (from a file that was not migrated).
    let other = fleet.dir.path().join("other.db");
    let (_home, mut cmd) = fleet.runner();
    let created: Run = cmd.arg("--state").arg(&other).args(["status"]).output().unwrap().into();
    assert_eq!(created.code, 0, "{}", created.stderr);
    let full = fleet.rekey(&["state", "migrate", "--from", &format!("sqlite:{}", other.display()), "--to", &format!("dynamodb:{TABLE}")]);
    assert_eq!(full.code, 2);
    assert!(full.stderr.contains("empty store"), "{}", full.stderr);
    // And back, into a new file: the same again.
    let back = fleet.dir.path().join("back.db");
    let run = fleet.rekey(&["state", "migrate", "--from", &format!("dynamodb:{TABLE}"), "--to", &format!("sqlite:{}", back.display())]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let (_home, mut cmd) = fleet.runner();
    let copied: Run = cmd.arg("--state").arg(&back).args(["history", "--format", "json"]).output().unwrap().into();
    assert_eq!(copied.json(), before);
    assert!(Path::new(&back).is_file());
}

/// Defect 14: after `rekey state migrate`, a runner still configured for
/// the old store went on acting on its (now stale) rotations. The source
/// is now marked as migrated, to where and when: every command that would
/// act refuses on it (exit 2, naming the new store), reads still work with
/// a warning, and nothing changes in AWS. Both ways: SQLite to DynamoDB,
/// and DynamoDB to SQLite.
#[test]
fn defect_14_a_migrated_store_refuses_to_run() {
    let fleet = Fleet::new();
    let sqlite = fleet.dir.path().join("state.db");
    let local = |args: &[&str]| -> Run {
        let (_home, mut cmd) = fleet.runner();
        cmd.arg("--state").arg(&sqlite).args(args).output().unwrap().into()
    };
    for i in 0..2 {
        let run = local(&["rotate", "--user", &format!("svc-{i}"), "--yes"]);
        assert_eq!(run.code, 0, "{}", run.stderr);
    }
    let status = local(&["status", "--format", "json"]).json();
    let id = status["rotations"][0]["id"].as_str().unwrap().to_owned();
    assert_eq!(fleet.rekey(&["state", "init"]).code, 0);
    let table = format!("dynamodb:{TABLE}");
    let run = fleet.rekey(&["state", "migrate", "--from", &format!("sqlite:{}", sqlite.display()), "--to", &table]);
    assert_eq!(run.code, 0, "{}", run.stderr);

    // The rotations are due now: a runner on the old file would advance them.
    for r in status["rotations"].as_array().unwrap() {
        let due: jiff::Timestamp = r["next_check_at"].as_str().unwrap().parse().unwrap();
        support::wait_for("the drain windows to pass", || jiff::Timestamp::now() > due);
    }
    let keys_before: Vec<Value> = (0..USERS).map(|i| fleet.emu.keys(&format!("svc-{i}"))).collect();
    let history_before = local(&["history", "--format", "json"]).json();
    let creates = calls_of(&fleet.emu, "iam:CreateAccessKey");
    for args in [
        vec!["run", "--once"],
        vec!["rotate", "--user", "svc-2", "--yes"],
        vec!["confirm", &id],
        vec!["rollback", &id],
        vec!["abort", &id],
        vec!["suppress", "--user", "svc-3", "--reason", "x"],
        vec!["unsuppress", "--user", "svc-3"],
    ] {
        let run = local(&args);
        assert_eq!(run.code, 2, "{args:?}: {}\n{}", run.stdout, run.stderr);
        assert!(run.stderr.contains(&format!("was migrated to {table} at ")) && run.stderr.contains(&format!("at {table}")), "{args:?}: {}", run.stderr);
    }
    let keys_after: Vec<Value> = (0..USERS).map(|i| fleet.emu.keys(&format!("svc-{i}"))).collect();
    assert_eq!(keys_after, keys_before, "no key changed in AWS");
    assert_eq!(calls_of(&fleet.emu, "iam:CreateAccessKey"), creates);
    // Reads still answer, and say what they read.
    let history = local(&["history", "--format", "json"]);
    assert_eq!(history.code, 0, "{}", history.stderr);
    assert_eq!(history.json(), history_before, "nothing was written to the old store");
    assert!(history.stderr.contains(&format!("was migrated to {table}")), "{}", history.stderr);
    let status = local(&["status"]);
    assert_eq!(status.code, 0, "{}", status.stderr);
    assert!(status.stderr.contains(&format!("was migrated to {table}")), "{}", status.stderr);

    // The table is the live store; once migrated on, it refuses in turn.
    let run = fleet.rekey(&["run", "--once"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let back = fleet.dir.path().join("back.db");
    let run = fleet.rekey(&["state", "migrate", "--from", &table, "--to", &format!("sqlite:{}", back.display())]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let keys_before: Vec<Value> = (0..USERS).map(|i| fleet.emu.keys(&format!("svc-{i}"))).collect();
    let run = fleet.rekey(&["run", "--once"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains(&format!("was migrated to sqlite:{}", back.display())), "{}", run.stderr);
    let again = fleet.rekey(&["state", "migrate", "--from", &table, "--to", &format!("sqlite:{}", fleet.dir.path().join("third.db").display())]);
    assert_eq!(again.code, 2, "a migrated store is not migrated again: {}", again.stderr);
    assert!(again.stderr.contains("was migrated to"), "{}", again.stderr);
    let keys_after: Vec<Value> = (0..USERS).map(|i| fleet.emu.keys(&format!("svc-{i}"))).collect();
    assert_eq!(keys_after, keys_before, "no key changed in AWS");
}
