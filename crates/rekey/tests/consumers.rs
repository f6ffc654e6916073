//! Who uses a key, from CloudTrail, against the emulator: consumers told
//! apart, pages and the 2-a-second limit, a drain that names the host left
//! and one that goes on by itself once every consumer moved, and a scan
//! without CloudTrail.

mod support;

use serde_json::{json, Value};
use support::{Rig, LONG};

/// The drain window is 3 s and a use right after delivery already counts.
/// The drain window: long enough that `rotate` (which verifies with the
/// AWS CLI) is back in `draining` on a busy machine, not past it.
const WINDOW_SECS: i64 = 30;
const QUICK_DRAIN: &str = "wait_unused = \"30s\"\nlast_used_lag = \"0s\"\nlast_used_margin = \"0s\"\ngrace = \"0s\"";

fn series(ip: &str, agent: &str, count: u32) -> Value {
    json!({"service": "s3", "event_name": "ListBuckets", "ago": "0s", "source_ip": ip, "user_agent": agent, "count": count, "every": "1m"})
}

fn consumers(rig: &Rig, args: &[&str]) -> Value {
    let mut all = vec!["consumers", "--user", rig.user.as_str(), "--format", "json"];
    all.extend_from_slice(args);
    let run = rig.rekey(&all);
    assert_eq!(run.code, 0, "{}", run.stderr);
    run.json()
}

#[test]
fn two_consumers_are_told_apart_by_source_and_user_agent() {
    let rig = Rig::new();
    rig.emu.add_trail_events(&rig.old_key, &series("10.0.1.5", "aws-cli/2.15.0 Python/3.11.6 Linux/5.10", 40));
    rig.emu.add_trail_events(&rig.old_key, &series("10.0.2.7", "Boto3/1.34 exec-env/AWS_Lambda_python3.12", 3));
    let found = consumers(&rig, &[]);
    let list = found["consumers"].as_array().unwrap();
    let by_ip = |ip: &str| list.iter().find(|c| c["source_ip"] == ip && c["service"] == "s3").unwrap_or_else(|| panic!("{ip} in {found}"));
    assert_eq!(by_ip("10.0.1.5")["calls"], 40);
    assert_eq!(by_ip("10.0.2.7")["calls"], 3);
    assert_eq!(by_ip("10.0.2.7")["inside_aws"], true);
    assert_eq!(by_ip("10.0.1.5")["inside_aws"], false);
    assert_eq!(by_ip("10.0.1.5")["top_calls"], json!(["ListBuckets"]));
    assert!(found["role_candidate"].is_null(), "a consumer outside AWS: no role hint");
    let table = rig.rekey(&["consumers", "--user", &rig.user]);
    assert!(table.stdout.contains("10.0.1.5") && table.stdout.contains("10.0.2.7"), "{}", table.stdout);
}

#[test]
fn three_hundred_events_take_six_pages_within_the_rate_and_give_the_same_result() {
    let rig = Rig::new();
    rig.emu.add_trail_events(&rig.old_key, &series("10.0.1.5", "cron/1", 300));
    rig.emu.set_trail_rate_limit(100_000, 1.0);
    let unthrottled = consumers(&rig, &["--key", &rig.old_key]);
    rig.emu.set_trail_rate_limit(2, 1.0);
    rig.emu.reset_calls();
    let paced = consumers(&rig, &["--key", &rig.old_key]);
    assert_eq!(paced, unthrottled, "the same consumers at CloudTrail's real rate");
    assert_eq!(paced["consumers"][0]["calls"], 300);
    let stats = rig.emu.trail_stats();
    assert_eq!(stats["lookup_events_requests"].as_u64().unwrap() - stats["lookup_events_throttled"].as_u64().unwrap(), 2 * 6, "6 pages of 50, twice: {stats}");
    assert_eq!(support::calls_of(&rig.emu, "cloudtrail:LookupEvents"), 6, "paced, not throttled and retried");
}

#[test]
fn without_cloudtrail_a_scan_warns_once_and_consumers_says_why() {
    let rig = Rig::new();
    rig.emu.set_key(&rig.old_key, &json!({"created_at": "2020-01-01T00:00:00Z"}));
    rig.emu.set_cloudtrail(false);
    let run = rig.rekey(&["scan", "--consumers", "--format", "json", "--fail-on", "never"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let scan = run.json();
    let warnings: Vec<&str> = scan["warnings"].as_array().unwrap().iter().filter_map(|w| w["message"].as_str()).filter(|m| m.contains("CloudTrail")).collect();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(scan["keys"][0].get("consumers").is_none(), "unknown, not empty: {}", scan["keys"][0]);
    let consumers = rig.rekey(&["consumers", "--user", &rig.user]);
    assert_eq!(consumers.code, 2);
    assert!(consumers.stderr.contains("CloudTrail"), "{}", consumers.stderr);
}

/// Starts a rotation that drains for [`WINDOW_SECS`]; returns the new key's id.
fn rotate(rig: &Rig) -> String {
    rig.config_app(QUICK_DRAIN);
    let run = rig.rekey(&["rotate", "--user", &rig.user, "--yes"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let r = rig.rotation();
    assert_eq!(r["stage"], "draining", "{r}");
    r["new_key_id"].as_str().unwrap().to_owned()
}

/// Waits until the drain window since `since` has passed.
fn wait_past_window(since: jiff::Timestamp) {
    support::wait_for("the drain window to pass", || jiff::Timestamp::now() > since + jiff::SignedDuration::from_secs(WINDOW_SECS + 1));
}

/// A call with `key` from `ip` now: in CloudTrail, and as IAM's last use.
fn call(rig: &Rig, key: &str, ip: &str) -> jiff::Timestamp {
    rig.emu.add_trail_events(key, &series(ip, &format!("app on {ip}"), 1));
    let at: jiff::Timestamp = rig.emu.trail_events(key)[0]["event_time"].as_str().unwrap().parse().unwrap();
    rig.emu.set_key(key, &json!({"last_used": {"at": at.to_string(), "service": "s3", "region": "us-east-1"}}));
    at
}

#[test]
fn a_drain_names_the_host_left_on_the_old_key() {
    let rig = Rig::new();
    let new_key = rotate(&rig);
    std::thread::sleep(std::time::Duration::from_secs(1));
    let moved_at = call(&rig, &rig.old_key, "10.0.0.1");
    wait_past_window(moved_at);
    call(&rig, &new_key, "10.0.0.1");
    call(&rig, &rig.old_key, "10.0.0.9");
    let run = rig.rekey(&["run", "--once"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let r = rig.rotation();
    assert_eq!(r["stage"], "draining", "a consumer is left: a person decides\n{r}");
    let status = rig.rekey(&["status", r["id"].as_str().unwrap()]);
    assert!(status.stdout.contains("still on the old key: 10.0.0.9"), "{}", status.stdout);
    assert!(status.stdout.contains("moved to the new key: 10.0.0.1"), "{}", status.stdout);
    assert_eq!(rig.keys()[0], (rig.old_key.clone(), "Active".to_owned()));
}

#[test]
fn a_drain_goes_on_by_itself_once_every_consumer_moved() {
    let rig = Rig::new();
    let new_key = rotate(&rig);
    std::thread::sleep(std::time::Duration::from_secs(1));
    let last_old = call(&rig, &rig.old_key, "10.0.0.1");
    // CloudTrail has whole seconds: the new key's first use comes later.
    support::wait_for("the next second", || jiff::Timestamp::now().as_second() > last_old.as_second());
    call(&rig, &new_key, "10.0.0.1");
    wait_past_window(last_old);
    let done = rig.run_until("completed", LONG);
    let id = done["id"].as_str().unwrap();
    let history = rig.rekey(&["history", id, "--format", "json"]).json();
    let evidence = history["events"].as_array().unwrap().iter().find(|e| e["event"] == "consumers_moved").cloned();
    let evidence = evidence.unwrap_or_else(|| panic!("the evidence is audited: {history}"));
    assert!(evidence["detail"]["consumers"][0].as_str().unwrap().contains("10.0.0.1"), "{evidence}");
    assert!(rig.keys().iter().all(|(id, _)| *id != rig.old_key), "the old key is deleted");
}
