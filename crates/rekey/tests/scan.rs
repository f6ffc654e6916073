//! `rekey scan` against the emulator: both sources against the harness's
//! ground truth, every output format, filters, exit codes, AWS errors.

mod support;

use rekey_emulator::{scenarios_dir, Emulator};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use support::{calls_of, python_on, rekey, total_calls};

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
    assert!(table.stdout.contains(&format!("{} users, {} keys: {} failed", s["users"], s["keys"], s["failed"])), "{}", table.stdout);

    // --output writes the same JSON to a file, nothing to stdout.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("scan.json");
    let run = rekey(Some(&emu), &[&base[..], &["--format", "json", "--output", file.to_str().unwrap()]].concat());
    assert_eq!((run.code, run.stdout.as_str()), (0, ""));
    let written: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(written["keys"], json["keys"]);
}

/// `--format ocsf` is read by the OCSF models Prowler publishes
/// (py-ocsf-models): each finding validates as a Detection Finding, and
/// dumping the model gives back exactly what rekey wrote, so no field was
/// unknown to the model and dropped.
#[test]
fn ocsf_output_validates_against_the_ocsf_models() {
    let emu = mixed();
    let base = ["scan", "--as-of", AS_OF, "--fail-on", "never"];
    let json = rekey(Some(&emu), &[&base[..], &["--format", "json"]].concat()).json();
    let run = rekey(Some(&emu), &[&base[..], &["--format", "ocsf"]].concat());
    assert_eq!(run.code, 0, "{}", run.stderr);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("scan.ocsf.json");
    std::fs::write(&path, &run.stdout).unwrap();
    let script = r#"
import json, sys
from py_ocsf_models.events.findings.detection_finding import DetectionFinding
findings = json.load(open(sys.argv[1]))
for f in findings:
    model = DetectionFinding.model_validate(f)
    back = json.loads(model.model_dump_json(exclude_none=True))
    assert back == {k: v for k, v in f.items() if v is not None}, (f, back)
print(json.dumps([[f["finding_info"]["uid"], f["status_code"], f["status_id"], f["severity_id"], f["unmapped"]["rekey"]["result"]] for f in findings]))
"#;
    let seen: Vec<(String, String, u64, u64, String)> = serde_json::from_str(python_on(script, &path).trim()).unwrap();
    let keys = json["keys"].as_array().unwrap();
    assert_eq!(seen.len(), keys.len(), "one finding per key");
    let uids: std::collections::BTreeSet<&String> = seen.iter().map(|s| &s.0).collect();
    assert_eq!(uids.len(), seen.len(), "every finding has its own uid");
    for ((_, code, status, severity, result), key) in seen.iter().zip(keys) {
        assert_eq!(result, key["result"].as_str().unwrap());
        let want = match result.as_str() {
            "FAILED" => ("FAIL", 1, 3),
            "WARNING" => ("PASS", 1, 2),
            "SUPPRESSED" => ("FAIL", 3, 1),
            _ => ("PASS", 1, 1),
        };
        let status_id = if key["rotation"].is_null() || result == "SUPPRESSED" { want.1 } else { 2 };
        assert_eq!((code.as_str(), *status, *severity), (want.0, status_id, want.2), "{key}");
    }
    assert!(seen.iter().any(|s| s.4 == "FAILED") && seen.iter().any(|s| s.4 == "PASSED"), "the scenario has both: {seen:?}");
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

/// Issue 7: the message blamed the network while the endpoint was up.
#[test]
fn no_credentials() {
    let emu = Emulator::empty();
    let home = tempfile::tempdir().unwrap();
    // With the instance role disabled, and with it tried (it then fails
    // against the emulator's address rather than finding nothing).
    for imds_disabled in [true, false] {
        let mut cmd = support::rekey_cmd(None, home.path());
        if !imds_disabled {
            cmd.env_remove("AWS_EC2_METADATA_DISABLED");
        }
        let run: support::Run = cmd.env("AWS_ENDPOINT_URL", &emu.endpoint).args(["scan"]).output().unwrap().into();
        assert_eq!(run.code, 2);
        for words in ["no AWS credentials found", "environment", "AWS_ACCESS_KEY_ID", "profile", "SSO", "instance role"] {
            assert!(run.stderr.contains(words), "{words:?} in: {}", run.stderr);
        }
        assert!(!run.stderr.contains("cannot reach") && !run.stderr.contains("network"), "{}", run.stderr);
    }
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

// ---------------------------------------------------------------------------
// Regression tests of issue 12 (scan correctness) and of the report parsing
// part of issue 9.
// ---------------------------------------------------------------------------

fn key_of<'a>(scan: &'a Value, user: &str) -> Vec<&'a Value> {
    scan["keys"].as_array().unwrap().iter().filter(|k| k["user_name"] == user).collect()
}

fn messages(notes: &Value) -> String {
    notes.as_array().unwrap().iter().map(|n| format!("{}: {}\n", n["user_name"], n["message"].as_str().unwrap())).collect()
}

/// The emulator's id of the user's only key with `status`.
fn emulator_key(emu: &Emulator, user: &str, status: &str) -> String {
    let keys = emu.keys(user);
    let matching: Vec<_> = keys.as_array().unwrap().iter().filter(|k| k["status"] == status).collect();
    assert_eq!(matching.len(), 1, "{keys}");
    matching[0]["access_key_id"].as_str().unwrap().to_owned()
}

#[test]
fn a_report_hours_old_is_only_an_index_of_candidates() {
    // as_of is now: keys created during the test exist at scan time.
    let emu = Emulator::with_scenario(&json!({"users": [
        {"name": "reactivated", "keys": [{"status": "Inactive", "age": "300d"}]},
        {"name": "deactivated", "keys": [{"status": "Active", "age": "300d"}]},
        {"name": "rotated", "keys": [{"status": "Active", "age": "300d"}]},
        {"name": "leaver", "keys": [{"status": "Active", "age": "300d"}]},
        {"name": "young", "keys": [{"status": "Active", "age": "10d"}]},
    ]}));
    let scan = |source: &str| rekey(Some(&emu), &["scan", "--source", source, "--format", "json", "--fail-on", "never"]);
    let before = scan("credential-report");
    assert_eq!(before.code, 0, "{}", before.stderr);
    let taken = before.json()["report_generated_at"].clone();
    assert!(taken.is_string(), "{}", before.stdout);

    // After the report: changes IAM's snapshot does not show for hours.
    emu.set_key(&emulator_key(&emu, "reactivated", "Inactive"), &json!({"status": "Active"}));
    emu.set_key(&emulator_key(&emu, "deactivated", "Active"), &json!({"status": "Inactive"}));
    let old = emulator_key(&emu, "rotated", "Active");
    let new = support::aws(&emu, &["iam", "create-access-key", "--user-name", "rotated"]).json()["AccessKey"]["AccessKeyId"]
        .as_str()
        .unwrap()
        .to_owned();
    support::aws(&emu, &["iam", "delete-access-key", "--user-name", "rotated", "--access-key-id", &old]);
    let leaver_key = emulator_key(&emu, "leaver", "Active");
    support::aws(&emu, &["iam", "delete-access-key", "--user-name", "leaver", "--access-key-id", &leaver_key]);
    support::aws(&emu, &["iam", "delete-user", "--user-name", "leaver"]);

    emu.reset_calls();
    let run = scan("credential-report");
    assert_eq!(run.code, 0, "a user deleted since the report is not an error: {}", run.stderr);
    let report = run.json();
    assert_eq!(report["report_generated_at"], taken, "the same snapshot");
    assert_eq!(calls_of(&emu, "iam:ListAccessKeys"), 4, "every user with an old key, whatever its status");
    let reactivated = key_of(&report, "reactivated");
    assert_eq!((&reactivated[0]["status"], &reactivated[0]["result"]), (&json!("Active"), &json!("FAILED")));
    assert_eq!(reactivated[0]["access_key_id"], emulator_key(&emu, "reactivated", "Active"));
    let deactivated = key_of(&report, "deactivated");
    assert_eq!((&deactivated[0]["status"], &deactivated[0]["result"]), (&json!("Inactive"), &json!("PASSED")));
    let rotated = key_of(&report, "rotated");
    assert_eq!(rotated.len(), 1, "the deleted key is gone, the new one is there: {rotated:?}");
    assert_eq!((&rotated[0]["access_key_id"], &rotated[0]["result"]), (&json!(new), &json!("PASSED")));
    assert!(key_of(&report, "leaver").is_empty());
    assert!(messages(&report["warnings"]).contains("\"leaver\": deleted since the credential report"), "{}", report["warnings"]);
    assert_eq!(report["errors"], json!([]));
    assert!(run.stderr.contains("warning: leaver: deleted since"), "{}", run.stderr);

    // The API gives the same results.
    let api = scan("api").json();
    assert_eq!(api["report_generated_at"], Value::Null);
    for (id, k) in by_key(&api["keys"]) {
        let r = &by_key(&report["keys"])[&id];
        for field in ["status", "result"] {
            assert_eq!(r[field], k[field], "{field} of {id:?}");
        }
        if !r["access_key_id"].is_null() {
            assert_eq!(r["access_key_id"], k["access_key_id"], "id of {id:?}");
        }
    }

    // The table says how old the report is.
    let table = rekey(Some(&emu), &["scan", "--source", "credential-report", "--fail-on", "never"]);
    assert!(table.stdout.contains("credential report generated at"), "{}", table.stdout);

    // Once the snapshot expires, the new report knows the leaver is gone.
    emu.expire_credential_report();
    let fresh = scan("credential-report").json();
    assert_eq!(fresh["warnings"], json!([]));
    assert_eq!(by_key(&fresh["keys"]).len(), by_key(&report["keys"]).len());
}

#[test]
fn keys_created_in_the_same_second_keep_their_own_ids() {
    let emu = Emulator::with_scenario(&json!({"as_of": AS_OF, "users": [
        {"name": "twins", "keys": [{"status": "Active", "age": "300d", "last_used": {"ago": "1d"}},
                                   {"status": "Inactive", "age": "300d"}]},
        {"name": "alike", "keys": [{"status": "Active", "age": "300d", "last_used": {"ago": "1d"}},
                                   {"status": "Active", "age": "300d", "last_used": {"ago": "5d"}}]},
    ]}));
    let run = rekey(Some(&emu), &["scan", "--source", "credential-report", "--as-of", AS_OF, "--format", "json"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let scan = run.json();
    let twins = key_of(&scan, "twins");
    let failed: Vec<_> = twins.iter().filter(|k| k["result"] == "FAILED").collect();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["access_key_id"], emulator_key(&emu, "twins", "Active"), "the failing key under its own id");
    assert_ne!(twins[0]["access_key_id"], twins[1]["access_key_id"]);
    assert!(failed[0]["last_used_at"].is_string(), "the Active key's last use, told apart by status");
    // Two Active keys of the same second: ids are right, which last use is
    // whose cannot be known, and the scan says so.
    let alike = key_of(&scan, "alike");
    assert_ne!(alike[0]["access_key_id"], alike[1]["access_key_id"]);
    assert!(alike.iter().all(|k| k["last_used_at"].is_null()), "{alike:?}");
    assert!(messages(&scan["warnings"]).contains("same second"), "{}", scan["warnings"]);
}

#[test]
fn a_max_age_no_timestamp_can_hold_is_bad_input() {
    // Regression: exit 101 (a panic) on overflow.
    let emu = mixed();
    let run = rekey(Some(&emu), &["scan", "--max-age", "3000000d"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("longer than a timestamp can hold"), "{}", run.stderr);
    assert_eq!(total_calls(&emu), 0);
    let long = rekey(Some(&emu), &["scan", "--max-age", "2800000d", "--warn-within", "2800000d", "--as-of", AS_OF, "--format", "json"]);
    assert_eq!(long.code, 0, "{}", long.stderr);
}

#[test]
fn an_owner_filter_without_owner_tags_is_refused() {
    // Regression: 0 users and exit 0 although team-a has a FAILED key.
    let emu = mixed();
    let home = tempfile::tempdir().unwrap();
    std::fs::write(home.path().join("rekey.toml"), "[policy]\nowner_tags = []\n").unwrap();
    let run: support::Run = support::rekey_cmd(Some(&emu), home.path()).args(["scan", "--owner", "team-a"]).output().unwrap().into();
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("owner_tags is empty"), "{}", run.stderr);
    assert_eq!(total_calls(&emu), 0, "refused before any AWS call");
}

#[test]
fn without_permission_to_read_tags_owners_are_null_with_one_warning() {
    // Regression: one error per user and exit 2.
    let emu = mixed();
    let truth = emu.truth();
    emu.inject_fault("iam:GetAccountAuthorizationDetails", "AccessDenied", 403, 100);
    emu.inject_fault("iam:ListUserTags", "AccessDenied", 403, 100);
    let run = rekey(Some(&emu), &["scan", "--as-of", AS_OF, "--format", "json"]);
    assert_eq!(run.code, 1, "FAILED keys, no error: {}", run.stderr);
    let scan = run.json();
    assert_eq!(scan["errors"], json!([]));
    assert_eq!(scan["warnings"].as_array().unwrap().len(), 1, "{}", scan["warnings"]);
    assert!(messages(&scan["warnings"]).contains("owners are unknown"), "{}", scan["warnings"]);
    assert!(scan["keys"].as_array().unwrap().iter().all(|k| k["owner"].is_null()));
    assert_eq!(by_key(&scan["keys"]).len(), by_key(&truth["keys"]).len(), "every key is there");
    // Filtering on owners that cannot be read is an error, not an empty list.
    let run = rekey(Some(&emu), &["scan", "--as-of", AS_OF, "--owner", "team-a"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("cannot be read"), "{}", run.stderr);
}

#[test]
fn auto_reads_through_the_api_when_the_report_is_denied() {
    let emu = mixed();
    emu.inject_fault("iam:GenerateCredentialReport", "AccessDenied", 403, 1);
    let run = rekey(Some(&emu), &["scan", "--as-of", AS_OF, "--format", "json"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let scan = run.json();
    assert_eq!(scan["source"], "api");
    assert_eq!(scan["report_generated_at"], Value::Null);
    assert!(messages(&scan["warnings"]).contains("access denied for iam:GenerateCredentialReport"), "{}", scan["warnings"]);
    assert_matches_truth(&scan, &emu.truth(), "fallback");
}

#[test]
fn keys_created_after_as_of_are_not_listed() {
    // Regression: such a key was PASSED with a negative age.
    let emu = Emulator::with_scenario(&json!({"as_of": AS_OF, "users": [
        {"name": "old", "keys": [{"age": "300d"}]},
        {"name": "new", "keys": [{"age": "1d"}]},
    ]}));
    for source in ["credential-report", "api"] {
        let run = rekey(Some(&emu), &["scan", "--source", source, "--as-of", "2026-11-20T00:00:00Z", "--format", "json"]);
        let scan = run.json();
        assert_eq!(key_of(&scan, "new").len(), 0, "{source}");
        assert_eq!(scan["summary"]["keys"], 1, "{source}");
        assert!(scan["keys"].as_array().unwrap().iter().all(|k| k["age_days"].as_i64().unwrap() >= 0));
        assert!(messages(&scan["warnings"]).contains("created after --as-of"), "{source}: {}", scan["warnings"]);
    }
    let help = rekey(None, &["scan", "--help"]);
    assert!(help.stdout.contains("today's keys"), "{}", help.stdout);
}

#[test]
fn a_max_age_in_hours_is_carried_as_written() {
    let emu = Emulator::with_scenario(&json!({"as_of": AS_OF, "users": [{"name": "u", "keys": [{"age": "2d"}]}]}));
    let scan = rekey(Some(&emu), &["scan", "--as-of", AS_OF, "--max-age", "36h", "--format", "json"]).json();
    assert_eq!((&scan["max_age"], &scan["max_age_days"]), (&json!("36h"), &json!(1)));
    assert_eq!(scan["keys"][0]["reason"], "active key is 2 days old (limit 36h)");
    let full = rekey(Some(&emu), &["scan", "--as-of", AS_OF, "--format", "json"]).json();
    assert_eq!(full["max_age"], "90d");
}

#[test]
fn csv_cells_cannot_run_as_formulas() {
    let emu = Emulator::with_scenario(&json!({"as_of": AS_OF, "users": [
        {"name": "=cmd", "keys": [{"age": "300d"}]},
        {"name": "+ci", "keys": [{"age": "300d"}]},
        {"name": "-deploy", "keys": [{"age": "300d"}]},
        {"name": "@corp", "tags": {"Owner": "=HYPERLINK"}, "keys": [{"age": "300d"}]},
    ]}));
    let csv = rekey(Some(&emu), &["scan", "--as-of", AS_OF, "--format", "csv"]);
    let names: Vec<String> = csv.stdout.lines().skip(1).map(|l| parse_csv_line(l)[1].clone()).collect();
    assert_eq!(names, ["'+ci", "'-deploy", "'=cmd", "'@corp"]);
    assert!(csv.stdout.contains(",'=HYPERLINK,"), "{}", csv.stdout);
    let json = rekey(Some(&emu), &["scan", "--as-of", AS_OF, "--format", "json"]).json();
    assert_eq!(key_of(&json, "=cmd").len(), 1, "JSON keeps exact values");
    assert_eq!(key_of(&json, "@corp")[0]["owner"], "=HYPERLINK");
}

#[test]
fn the_summary_counts_users_as_security_hub_does() {
    let emu = mixed();
    let truth = emu.truth();
    let scan = rekey(Some(&emu), &["scan", "--as-of", AS_OF, "--format", "json"]).json();
    let worst = |result: &str| -> u64 {
        let mut by_user: BTreeMap<&str, u8> = BTreeMap::new();
        let rank = |r: &str| ["FAILED", "WARNING", "SUPPRESSED", "PASSED"].iter().position(|x| *x == r).unwrap() as u8;
        for k in truth["keys"].as_array().unwrap() {
            let e = by_user.entry(k["user_name"].as_str().unwrap()).or_insert(9);
            *e = (*e).min(rank(k["result"].as_str().unwrap()));
        }
        by_user.values().filter(|r| **r == rank(result)).count() as u64
    };
    assert_eq!(scan["summary"]["users_failed"], worst("FAILED"));
    assert_eq!(scan["summary"]["users_warning"], worst("WARNING"));
    assert!(scan["summary"]["users_failed"].as_u64().unwrap() < scan["summary"]["failed"].as_u64().unwrap());
}

#[test]
fn an_active_root_access_key_is_reported_as_iam_4() {
    let emu = mixed();
    let plain = rekey(Some(&emu), &["scan", "--as-of", AS_OF, "--format", "json"]).json();
    assert_eq!(plain["other_findings"], json!([]));
    emu.set_root_access_key(true);
    emu.expire_credential_report();
    let run = rekey(Some(&emu), &["scan", "--as-of", AS_OF, "--format", "json"]);
    assert_eq!(run.json()["other_findings"], json!([{"control": "IAM.4", "account_id": "123456789012",
        "user_name": "<root_account>", "reason": "the root user has an active access key"}]));
    assert!(run.stderr.contains("IAM.4"), "{}", run.stderr);
    let table = rekey(Some(&emu), &["scan", "--as-of", AS_OF]);
    assert!(table.stdout.contains("IAM.4 123456789012 <root_account>"), "{}", table.stdout);
}

#[test]
fn a_partial_scan_is_visible_in_every_format() {
    let emu = mixed();
    for format in ["csv", "jsonl", "table"] {
        emu.inject_fault("iam:ListAccessKeys", "AccessDenied", 403, 1);
        let run = rekey(Some(&emu), &["scan", "--source", "api", "--as-of", AS_OF, "--format", format]);
        assert_eq!(run.code, 2, "{format}: {}", run.stderr);
        let line = run.stderr.lines().find(|l| l.contains("the scan is incomplete")).unwrap_or_else(|| panic!("{format}: {}", run.stderr));
        assert!(line.contains("could not be read"), "{line}");
        assert!(run.stderr.contains("access denied for iam:ListAccessKeys"), "{}", run.stderr);
    }
}

#[test]
fn names_with_commas_read_from_a_quoted_or_unquoted_report() {
    // Regression: moto's unquoted report failed the whole account.
    let emu = mixed();
    let truth = emu.truth();
    for quoted in [true, false] {
        emu.quote_credential_report(quoted);
        let run = rekey(Some(&emu), &["scan", "--source", "credential-report", "--as-of", AS_OF, "--format", "json"]);
        assert_eq!(run.code, 1, "quoted {quoted}: {}", run.stderr);
        let scan = run.json();
        assert_eq!(scan["source"], "credential-report");
        assert_eq!(scan["warnings"], json!([]), "quoted {quoted}");
        assert_matches_truth(&scan, &truth, if quoted { "quoted" } else { "unquoted" });
    }
}

#[test]
fn an_odd_report_row_is_read_through_the_api() {
    let emu = mixed();
    let truth = emu.truth();
    emu.quote_credential_report(false);
    emu.override_report_cell("ops,legacy", "access_key_1_last_rotated", "last tuesday");
    emu.reset_calls();
    let run = rekey(Some(&emu), &["scan", "--source", "credential-report", "--as-of", AS_OF, "--format", "json"]);
    assert_eq!(run.code, 1, "one odd row never fails the account: {}", run.stderr);
    let scan = run.json();
    assert_eq!(scan["source"], "credential-report");
    assert!(messages(&scan["warnings"]).contains("\"ops,legacy\": line"), "{}", scan["warnings"]);
    assert_eq!(calls_of(&emu, "iam:GetUser"), 1, "only that user through the API");
    assert_matches_truth(&scan, &truth, "odd row");

    // A row whose user cannot be told: the whole account through the API.
    emu.override_report_cell("svc=ci", "user", "svc=ci (bad)");
    emu.expire_credential_report();
    let run = rekey(Some(&emu), &["scan", "--source", "credential-report", "--as-of", AS_OF, "--format", "json"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let scan = run.json();
    assert_eq!(scan["source"], "api");
    assert!(messages(&scan["warnings"]).contains("every user was read through the API"), "{}", scan["warnings"]);
    assert_matches_truth(&scan, &truth, "unreadable user");
}

/// Answers that are well-formed but odd: empty pages that say more is to
/// come, a key created in the future, a status IAM does not have. Read
/// right or named, never a panic.
#[test]
fn odd_answers_are_read_right_or_named() {
    let emu = mixed();
    let truth = emu.truth();
    emu.empty_iam_pages(3);
    let run = rekey(Some(&emu), &["scan", "--source", "api", "--as-of", AS_OF, "--format", "json"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert_matches_truth(&run.json(), &truth, "empty pages");

    emu.override_report_cell("ops,legacy", "access_key_1_last_rotated", "2999-01-01T00:00:00+00:00");
    emu.override_report_cell("svc=ci", "access_key_1_active", "perhaps");
    let run = rekey(Some(&emu), &["scan", "--source", "credential-report", "--as-of", AS_OF, "--format", "json"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let scan = run.json();
    let warnings = messages(&scan["warnings"]);
    assert!(warnings.contains("\"ops,legacy\"") && warnings.contains("\"svc=ci\""), "both rows are named: {warnings}");
    assert_matches_truth(&scan, &truth, "future date and unknown status, read through the API");
}

// ---------------------------------------------------------------------------
// Issue 7: output that fits, and a closed pipe.
// ---------------------------------------------------------------------------

/// The table at a given width (`COLUMNS`), key ids masked (same length,
/// so the columns stay aligned).
fn table_at(emu: &Emulator, columns: Option<&str>) -> String {
    let home = tempfile::tempdir().unwrap();
    let mut cmd = support::rekey_cmd(Some(emu), home.path());
    if let Some(c) = columns {
        cmd.env("COLUMNS", c);
    }
    let run: support::Run = cmd.args(["scan", "--source", "api", "--as-of", AS_OF, "--fail-on", "never"]).output().unwrap().into();
    assert_eq!(run.code, 0, "{}", run.stderr);
    run.stdout
}

#[test]
fn the_table_fits_80_and_120_columns_without_breaking_names_or_ids() {
    let emu = Emulator::with_scenario_file(&scenarios_dir().join("demo.json"), Some(AS_OF));
    let scan = rekey(Some(&emu), &["scan", "--source", "api", "--as-of", AS_OF, "--format", "json", "--fail-on", "never"]).json();
    for width in [80, 120] {
        let table = table_at(&emu, Some(&width.to_string()));
        assert!(table.lines().all(|l| l.chars().count() <= width), "fits {width}:\n{table}");
        for key in scan["keys"].as_array().unwrap() {
            let (user, id) = (key["user_name"].as_str().unwrap(), key["access_key_id"].as_str().unwrap());
            assert!(table.lines().any(|l| l.contains(user) && l.contains(id)), "{user} and {id} whole on one line at {width}:\n{table}");
        }
        insta::with_settings!({filters => vec![(r"AKIA[A-Z0-9]{16}", "AKIAXXXXXXXXXXXXXXXX")], snapshot_suffix => width.to_string()}, {
            insta::assert_snapshot!("scan_table", table);
        });
    }
    assert_eq!(table_at(&emu, None), table_at(&emu, Some("120")), "no terminal, no COLUMNS: 120 columns");
}

/// `rekey scan | head`: the reader is gone before rekey writes a byte.
#[test]
fn a_closed_pipe_ends_quietly() {
    let emu = mixed();
    for format in ["json", "table", "csv"] {
        let home = tempfile::tempdir().unwrap();
        let mut child = support::rekey_cmd(Some(&emu), home.path())
            .args(["scan", "--as-of", AS_OF, "--format", format])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{format}: {}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(String::from_utf8_lossy(&out.stderr), "", "{format}: no error text");
    }
}
