//! `rekey scan` against the emulator: both sources against the harness's
//! ground truth, every output format, filters, exit codes, AWS errors.

mod support;

use rekey_emulator::{scenarios_dir, Emulator};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use support::{calls_of, rekey, total_calls};

const AS_OF: &str = "2026-11-28T12:00:00Z";

fn mixed() -> Emulator {
    Emulator::with_scenario_file(&scenarios_dir().join("mixed.json"), Some(AS_OF))
}

/// Keys by (user, creation time): the one identity both sources share.
fn by_key(keys: &Value) -> BTreeMap<(String, String), Value> {
    keys.as_array()
        .expect("keys array")
        .iter()
        .map(|k| ((k["user_name"].as_str().unwrap().to_owned(), k["created_at"].as_str().unwrap().to_owned()), k.clone()))
        .collect()
}

/// Checks a scan's keys against the ground truth. Owners and key ids are
/// looked up for keys that need action (FAILED, WARNING) under every source.
fn assert_matches_truth(scan: &Value, truth: &Value, source: &str) {
    let got = by_key(&scan["keys"]);
    let want = by_key(&truth["keys"]);
    assert_eq!(got.keys().collect::<Vec<_>>(), want.keys().collect::<Vec<_>>(), "{source}: same keys");
    for (id, w) in &want {
        let g = &got[id];
        for field in ["status", "age_days", "result", "last_used_at", "user_arn"] {
            assert_eq!(g[field], w[field], "{source}: {field} of {id:?}");
        }
        if w["result"] != "PASSED" {
            assert_eq!(g["owner"], w["owner"], "{source}: owner of {id:?}");
            assert_eq!(g["access_key_id"], w["access_key_id"], "{source}: key id of {id:?}");
        }
        assert_eq!(g["account_id"], "123456789012");
        assert_eq!(g["exemption"], Value::Null);
        assert_eq!(g["rotation"], Value::Null);
    }
    for field in ["users", "keys", "failed", "warning", "suppressed", "passed"] {
        assert_eq!(scan["summary"][field], truth["summary"][field], "{source}: summary.{field}");
    }
}

#[test]
fn both_sources_match_the_ground_truth() {
    let emu = mixed();
    let truth = emu.truth();
    for source in ["credential-report", "api"] {
        let run = rekey(Some(&emu), &["scan", "--source", source, "--as-of", AS_OF, "--format", "json", "--fail-on", "never"]);
        assert_eq!(run.code, 0, "{source}: {}", run.stderr);
        assert_eq!(run.stderr, "", "nothing on stderr when it is not a terminal");
        let scan = run.json();
        assert_eq!(scan["source"], source);
        assert_eq!(scan["as_of"], AS_OF);
        assert_eq!(scan["max_age_days"], 90);
        assert_eq!(scan["errors"], json!([]));
        assert_matches_truth(&scan, &truth, source);
    }
}

#[test]
fn boundaries_are_exact_to_the_second() {
    let emu = mixed();
    let scan = rekey(Some(&emu), &["scan", "--as-of", AS_OF, "--format", "json"]).json();
    let result = |user: &str| {
        scan["keys"].as_array().unwrap().iter().find(|k| k["user_name"] == user).unwrap()["result"].clone()
    };
    assert_eq!(result("edge-90d-exact"), "WARNING");
    assert_eq!(result("edge-90d-plus-1s"), "FAILED");
    assert_eq!(result("edge-90d-minus-1s"), "WARNING");
    assert_eq!(result("edge-76d-exact"), "PASSED");
    assert_eq!(result("edge-76d-plus-1s"), "WARNING");
    assert_eq!(result("inactive-just-over"), "PASSED");
}

/// Users with a key old enough to be FAILED or WARNING were it active
/// (over 76 days at the defaults), whatever its status: the report may be
/// hours old, so those are listed again.
fn users_with_an_old_key(truth: &Value) -> u64 {
    let as_of: jiff::Timestamp = truth["as_of"].as_str().unwrap().parse().unwrap();
    let users: std::collections::BTreeSet<_> = truth["keys"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|k| {
            let created: jiff::Timestamp = k["created_at"].as_str().unwrap().parse().unwrap();
            as_of.as_second() - created.as_second() > 76 * 86_400
        })
        .map(|k| k["user_name"].as_str().unwrap())
        .collect();
    users.len() as u64
}

fn users_needing_action(truth: &Value) -> u64 {
    let users: std::collections::BTreeSet<_> = truth["keys"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|k| k["result"] != "PASSED")
        .map(|k| k["user_name"].as_str().unwrap())
        .collect();
    users.len() as u64
}

fn assert_every_owner_matches(scan: &Value, truth: &Value) {
    let (got, want) = (by_key(&scan["keys"]), by_key(&truth["keys"]));
    for (id, w) in &want {
        assert_eq!(got[id]["owner"], w["owner"], "owner of {id:?}");
    }
}

#[test]
fn credential_report_costs_three_calls_plus_one_per_user_with_an_old_key() {
    let emu = mixed();
    let truth = emu.truth();
    emu.reset_calls();
    let run = rekey(Some(&emu), &["scan", "--source", "credential-report", "--as-of", AS_OF, "--format", "json", "-v"]);
    assert_eq!(run.code, 1, "FAILED keys exist: {}", run.stderr);
    let n = users_with_an_old_key(&truth);
    assert!(n > users_needing_action(&truth), "inactive old keys are listed again too");
    assert_eq!(calls_of(&emu, "iam:GetCredentialReport"), 1);
    assert!(calls_of(&emu, "iam:GenerateCredentialReport") <= 2);
    assert_eq!(calls_of(&emu, "iam:ListAccessKeys"), n, "keys listed again only for users with an old key");
    assert_eq!(calls_of(&emu, "iam:GetAccountAuthorizationDetails"), 1, "every owner in one call");
    assert_eq!(calls_of(&emu, "iam:ListUserTags"), 0);
    assert_eq!(calls_of(&emu, "iam:ListUsers"), 0);
    assert_eq!(total_calls(&emu), 3 + n + 1);
    assert_every_owner_matches(&run.json(), &truth);
    // -v reports the same count rekey itself made.
    assert!(run.stderr.contains(&format!("iam:ListAccessKeys: {n}")), "{}", run.stderr);
    assert!(run.stderr.contains(&format!("AWS requests: {} in all", total_calls(&emu))), "{}", run.stderr);
}

#[test]
fn without_account_details_owners_cost_one_call_per_user_needing_action() {
    let emu = mixed();
    let truth = emu.truth();
    emu.inject_fault("iam:GetAccountAuthorizationDetails", "AccessDenied", 403, 1);
    emu.reset_calls();
    let run = rekey(Some(&emu), &["scan", "--as-of", AS_OF, "--format", "json"]);
    assert_eq!(run.code, 1, "a missing optional permission is not an error: {}", run.stderr);
    assert_eq!(run.json()["errors"], json!([]));
    assert_eq!(calls_of(&emu, "iam:ListUserTags"), users_needing_action(&truth));
    assert_matches_truth(&run.json(), &truth, "fallback");
}

#[test]
fn owners_of_more_than_a_thousand_users() {
    let emu = Emulator::with_scenario(&json!({"as_of": AS_OF, "bulk": {"users": 1100, "seed": 3}}));
    let truth = emu.truth();
    let run = rekey(Some(&emu), &["scan", "--as-of", AS_OF, "--format", "json", "--fail-on", "never"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(calls_of(&emu, "iam:GetAccountAuthorizationDetails"), 2, "two pages of 1,000 users");
    assert_matches_truth(&run.json(), &truth, "1100 users");
    assert_every_owner_matches(&run.json(), &truth);
}

#[test]
fn sources_agree_beyond_one_page_of_users() {
    let emu = Emulator::with_scenario(&json!({"as_of": AS_OF, "bulk": {"users": 300, "seed": 11}}));
    let truth = emu.truth();
    assert_eq!(truth["summary"]["users"], 300);
    let mut scans = Vec::new();
    for source in ["credential-report", "api"] {
        emu.reset_calls();
        let run = rekey(Some(&emu), &["scan", "--source", source, "--as-of", AS_OF, "--format", "json", "--fail-on", "never"]);
        assert_eq!(run.code, 0, "{source}: {}", run.stderr);
        let scan = run.json();
        assert_matches_truth(&scan, &truth, source);
        if source == "api" {
            assert!(calls_of(&emu, "iam:ListUsers") >= 3, "300 users take several pages: {}", emu.calls());
        }
        scans.push(scan);
    }
    // The two sources agree with each other on every evaluated field.
    let (report, api) = (by_key(&scans[0]["keys"]), by_key(&scans[1]["keys"]));
    for (id, r) in &report {
        for field in ["status", "age_days", "result", "reason", "last_used_at", "role_candidate"] {
            assert_eq!(r[field], api[id][field], "{field} of {id:?}");
        }
    }
}

#[test]
fn every_output_format_parses_back() {
    let emu = mixed();
    let base = ["scan", "--as-of", AS_OF, "--fail-on", "never"];
    let json = rekey(Some(&emu), &[&base[..], &["--format", "json"]].concat()).json();
    let keys = json["keys"].as_array().unwrap();

    let jsonl = rekey(Some(&emu), &[&base[..], &["--format", "jsonl"]].concat());
    let lines: Vec<Value> = jsonl.stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(&lines, keys);

    let csv = rekey(Some(&emu), &[&base[..], &["--format", "csv"]].concat());
    let mut rows = csv.stdout.lines();
    let header: Vec<&str> = rows.next().unwrap().split(',').collect();
    let key_fields: Vec<&str> = keys[0].as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(header.iter().copied().collect::<std::collections::BTreeSet<_>>(), key_fields.into_iter().collect());
    let parsed: Vec<Vec<String>> = csv.stdout.lines().skip(1).map(parse_csv_line).collect();
    assert_eq!(parsed.len(), keys.len());
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
    for (row, key) in parsed.iter().zip(keys) {
        assert_eq!(row[col("user_name")], key["user_name"].as_str().unwrap());
        assert_eq!(row[col("result")], key["result"].as_str().unwrap());
        assert_eq!(row[col("age_days")], key["age_days"].to_string());
        assert_eq!(row[col("owner")], key["owner"].as_str().unwrap_or(""), "null is an empty cell");
    }

    let table = rekey(Some(&emu), &[&base[..], &["--format", "table"]].concat());
    assert_eq!(table.code, 0);
    assert!(!table.stdout.contains('\u{1b}'), "no colour on a pipe");
    for key in keys {
        assert!(table.stdout.contains(key["user_name"].as_str().unwrap()));
    }
    let first_failed = table.stdout.find("FAILED").unwrap();
    let first_passed = table.stdout.find("PASSED").unwrap();
    assert!(first_failed < table.stdout.find("WARNING").unwrap() && first_failed < first_passed, "worst first");
    let s = &json["summary"];
    assert!(table.stdout.contains(&format!("{} users, {} keys: {} failed", s["users"], s["keys"], s["failed"])));

    // --output writes the same JSON to a file, nothing to stdout.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("scan.json");
    let run = rekey(Some(&emu), &[&base[..], &["--format", "json", "--output", file.to_str().unwrap()]].concat());
    assert_eq!((run.code, run.stdout.as_str()), (0, ""));
    let written: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(written["keys"], json["keys"]);
}

/// Enough CSV for the test: quoted fields with commas and doubled quotes.
fn parse_csv_line(line: &str) -> Vec<String> {
    let (mut fields, mut cur, mut quoted, mut chars) = (Vec::new(), String::new(), false, line.chars().peekable());
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            ('"', _) => quoted = !quoted,
            (',', false) => fields.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    fields.push(cur);
    fields
}

#[test]
fn fail_on_sets_the_exit_code() {
    let emu = Emulator::with_scenario(&json!({"as_of": AS_OF, "users": [
        {"name": "warn-only", "keys": [{"status": "Active", "age": "80d"}]},
        {"name": "fresh", "keys": [{"status": "Active", "age": "1d"}]},
    ]}));
    let code = |fail_on: &str| rekey(Some(&emu), &["scan", "--as-of", AS_OF, "--format", "json", "--fail-on", fail_on]).code;
    assert_eq!(code("failed"), 0);
    assert_eq!(code("warning"), 1);
    assert_eq!(code("never"), 0);
    // --as-of in the future: the warning becomes a failure.
    let later = rekey(Some(&emu), &["scan", "--as-of", "2026-12-20T00:00:00Z", "--format", "json"]);
    assert_eq!(later.code, 1);
    assert_eq!(later.json()["summary"]["failed"], 1);
}

#[test]
fn user_and_owner_filters() {
    let emu = mixed();
    let users = |run: &support::Run| -> Vec<String> {
        run.json()["keys"].as_array().unwrap().iter().map(|k| k["user_name"].as_str().unwrap().to_owned()).collect()
    };
    for source in ["credential-report", "api", "auto"] {
        let run = rekey(Some(&emu), &["scan", "--source", source, "--as-of", AS_OF, "--format", "json",
            "--user", "A.Mixed+Case=User,x@y_z-1", "--user", "path-ci"]);
        assert_eq!(run.code, 1, "{source}: {}", run.stderr);
        assert_eq!(users(&run), ["A.Mixed+Case=User,x@y_z-1", "A.Mixed+Case=User,x@y_z-1", "path-ci"], "{source}");
        assert_eq!(run.json()["summary"]["users"], 2);
        assert_eq!(run.json()["keys"][2]["user_arn"], "arn:aws:iam::123456789012:user/ci/path-ci");
    }
    // Owner tags are read for every user when --owner filters on them,
    // passing keys included; "Owner" wins over "Team" on the same user.
    let run = rekey(Some(&emu), &["scan", "--as-of", AS_OF, "--format", "json", "--owner", "team-d", "--fail-on", "never"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let mut got = users(&run);
    got.dedup();
    assert_eq!(got, ["fresh-0s", "two-keys-rotating"]);
    assert!(run.json()["keys"].as_array().unwrap().iter().all(|k| k["owner"] == "team-d"));
}

#[test]
fn an_unknown_user_is_an_error() {
    let emu = mixed();
    for source in ["credential-report", "api"] {
        let run = rekey(Some(&emu), &["scan", "--source", source, "--user", "nobody-here"]);
        assert_eq!(run.code, 2, "{source}");
        assert!(run.stderr.contains("no IAM user named \"nobody-here\""), "{source}: {}", run.stderr);
        assert_eq!(run.stdout, "");
    }
}

#[test]
fn aws_errors_exit_2_with_one_clear_line() {
    let emu = mixed();
    emu.inject_fault("iam:GenerateCredentialReport", "AccessDenied", 403, 1);
    let run = rekey(Some(&emu), &["scan", "--source", "credential-report", "--format", "json"]);
    assert_eq!(run.code, 2);
    assert_eq!(run.stdout, "");
    assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
    assert!(run.stderr.starts_with("error: access denied for iam:GenerateCredentialReport"), "{}", run.stderr);

    // Throttled past the retries (2 attempts here to keep the test short).
    emu.inject_fault("iam:ListUsers", "Throttling", 400, 10);
    let home = tempfile::tempdir().unwrap();
    let run: support::Run = support::rekey_cmd(Some(&emu), home.path())
        .env("AWS_MAX_ATTEMPTS", "2")
        .args(["scan", "--source", "api"])
        .output()
        .unwrap()
        .into();
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("iam:ListUsers was throttled"), "{}", run.stderr);
    assert_eq!(calls_of(&emu, "iam:ListUsers"), 2, "retried exactly AWS_MAX_ATTEMPTS times");
}

#[test]
fn throttling_within_the_retries_is_invisible() {
    let emu = mixed();
    emu.inject_fault("iam:GetCredentialReport", "Throttling", 400, 2);
    let run = rekey(Some(&emu), &["scan", "--as-of", AS_OF, "--format", "json"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert_matches_truth(&run.json(), &emu.truth(), "retried");
}

#[test]
fn a_failing_user_is_reported_and_the_rest_still_scanned() {
    let emu = mixed();
    emu.inject_fault("iam:ListAccessKeys", "AccessDenied", 403, 1);
    let run = rekey(Some(&emu), &["scan", "--source", "api", "--as-of", AS_OF, "--format", "json"]);
    assert_eq!(run.code, 2, "a partial failure is an error");
    let scan = run.json();
    let errors = scan["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1);
    assert!(errors[0]["message"].as_str().unwrap().contains("access denied for iam:ListAccessKeys"));
    assert_eq!(scan["summary"]["users"].as_u64().unwrap(), 22, "23 users less the one that failed");
    assert!(run.stderr.contains("error: "), "{}", run.stderr);
}

#[test]
fn unreachable_endpoint() {
    // A port that was free a moment ago: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let home = tempfile::tempdir().unwrap();
    let run: support::Run = support::rekey_cmd(None, home.path())
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_MAX_ATTEMPTS", "1")
        .args(["scan", "--endpoint-url", &format!("http://127.0.0.1:{port}")])
        .output()
        .unwrap()
        .into();
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains(&format!("cannot reach http://127.0.0.1:{port}")), "{}", run.stderr);
    assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
}

#[test]
fn no_credentials() {
    let emu = Emulator::empty();
    let home = tempfile::tempdir().unwrap();
    let run: support::Run = support::rekey_cmd(None, home.path())
        .env("AWS_ENDPOINT_URL", &emu.endpoint)
        .args(["scan"])
        .output()
        .unwrap()
        .into();
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("no AWS credentials"), "{}", run.stderr);
    assert_eq!(total_calls(&emu), 0);
}

#[test]
fn a_failed_scan_leaves_the_previous_output_file_alone() {
    let emu = mixed();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("iam3.json");
    std::fs::write(&file, "last week's report").unwrap();
    emu.inject_fault("iam:GenerateCredentialReport", "AccessDenied", 403, 1);
    let run = rekey(Some(&emu), &["scan", "--source", "credential-report", "--format", "json", "--output", file.to_str().unwrap()]);
    assert_eq!(run.code, 2);
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "last week's report");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "no temporary file left behind");
}
