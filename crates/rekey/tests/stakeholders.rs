//! Owners and Security Hub against the emulator: findings read with
//! server-side filters, exemptions mirrored in batches, notices sent once,
//! expiry, rotation notes, ASFF import, and what bad input or a Security
//! Hub that is off does (nothing changed, one clear line).

mod support;

use serde_json::{json, Value};
use support::{calls_of, wait_for, Desk, Webhook, LONG};

fn user(name: &str, age: &str, tags: Value) -> Value {
    json!({"name": name, "tags": tags, "keys": [{"status": "Active", "age": age, "last_used": null}]})
}

/// a and c fail IAM.3, b passes, d is only a WARNING (Security Hub: PASSED).
fn four_users() -> Value {
    json!({"users": [
        user("alice", "200d", json!({"Owner": "team-a"})),
        user("bob", "10d", json!({"Owner": "team-a"})),
        user("carol", "150d", json!({})),
        user("dave", "80d", json!({"Owner": "team-d"})),
    ]})
}

fn names(findings: &Value) -> Vec<String> {
    let mut names: Vec<String> = findings["findings"].as_array().unwrap().iter().map(|f| f["user_name"].as_str().unwrap().to_owned()).collect();
    names.sort();
    names
}

#[test]
fn findings_are_filtered_by_security_hub_and_joined_with_keys() {
    let desk = Desk::new(four_users(), "");
    let all = desk.rekey(&["findings", "--format", "json", "--fail-on", "never"]);
    assert_eq!(all.code, 0, "{}", all.stderr);
    let all = all.json();
    assert_eq!(names(&all), ["alice", "bob", "carol", "dave"]);
    let alice = all["findings"].as_array().unwrap().iter().find(|f| f["user_name"] == "alice").unwrap();
    assert_eq!(alice["compliance_status"], "FAILED");
    assert_eq!(alice["workflow_status"], "NEW");
    assert!(alice["finding_id"].as_str().unwrap().contains("security-control/IAM.3/finding/"));
    assert_eq!(alice["keys"][0]["age_days"], 200);
    assert_eq!(alice["keys"][0]["result"], "FAILED");

    let failed = desk.rekey(&["findings", "--format", "json", "--compliance-status", "FAILED"]);
    assert_eq!(failed.code, 1, "open FAILED findings: exit 1\n{}", failed.stderr);
    assert_eq!(names(&failed.json()), ["alice", "carol"]);

    let suppressed = desk.rekey(&["suppress", "--user", "carol", "--reason", "vendor appliance"]);
    assert_eq!(suppressed.code, 0, "{}", suppressed.stderr);
    desk.emu.reset_calls();
    let open = desk.rekey(&["findings", "--format", "json", "--compliance-status", "FAILED", "--workflow-status", "NEW", "--workflow-status", "NOTIFIED"]);
    assert_eq!(names(&open.json()), ["alice"]);
    assert_eq!(calls_of(&desk.emu, "securityhub:GetFindings"), 1, "one page, filtered by Security Hub");
    let none = desk.rekey(&["findings", "--format", "json", "--user", "bob", "--compliance-status", "FAILED"]);
    assert_eq!((none.code, names(&none.json()).len()), (0, 0));

    let csv = desk.rekey(&["findings", "--format", "csv", "--fail-on", "never"]);
    assert_eq!(csv.stdout.lines().count(), 5, "a header and four findings:\n{}", csv.stdout);
    let table = desk.rekey(&["findings", "--fail-on", "never"]);
    assert!(table.stdout.contains("SUPPRESSED") && table.stdout.contains("alice"), "{}", table.stdout);
}

#[test]
fn suppressing_250_users_takes_three_batches_and_retries_what_is_left() {
    let users: Vec<Value> = (0..250).map(|i| user(&format!("svc-{i:03}"), "200d", json!({}))).collect();
    let desk = Desk::new(json!({ "users": users }), "");
    desk.emu.leave_unprocessed("svc-042", 1);
    desk.emu.leave_unprocessed("svc-199", 4);
    let mut args = vec!["suppress", "--reason", "baked into the vendor appliance; replaced in Q3", "--until", "90d", "--by", "alice@example.com"];
    let names: Vec<String> = (0..250).map(|i| format!("svc-{i:03}")).collect();
    for n in &names {
        args.extend(["--user", n.as_str()]);
    }
    let run = desk.rekey(&args);
    // svc-199 stays unprocessed through the three attempts of this command.
    assert_eq!(run.code, 2, "{}", run.stderr);
    // The users are found in one ListUsers pass (100 a page), not one GetUser each.
    assert_eq!((calls_of(&desk.emu, "iam:ListUsers"), calls_of(&desk.emu, "iam:GetUser")), (3, 0), "{}", desk.emu.calls());
    assert!(run.stderr.contains("svc-199") && run.stderr.contains("rekey run"), "{}", run.stderr);
    let batches = desk.emu.security_hub_stats()["batch_update_sizes"].clone();
    let sizes: Vec<u64> = batches.as_array().unwrap().iter().map(|b| b.as_u64().unwrap()).collect();
    let full: Vec<u64> = sizes.iter().copied().filter(|s| *s > 1).collect();
    assert_eq!(full, [100, 100, 50], "250 findings in batches of at most 100: {sizes:?}");
    assert_eq!(sizes.len(), 3 + 1 + 2, "svc-042 retried once, svc-199 twice: {sizes:?}");

    for n in names.iter().filter(|n| *n != "svc-199") {
        assert_eq!(desk.workflow(n), "SUPPRESSED", "{n}");
    }
    assert_eq!(desk.workflow("svc-199"), "NEW", "not updated yet");
    let note = &desk.notes("svc-000")[0];
    assert!(note.contains("alice@example.com") && note.contains("vendor appliance"), "{note}");

    // The next run sends what is left (the injection's fourth refusal, then success).
    let run = desk.rekey(&["run", "--once"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(desk.workflow("svc-199"), "SUPPRESSED");

    let scan = desk.scan(&[]);
    assert_eq!(scan["summary"]["suppressed"], 250);
    assert_eq!(scan["summary"]["failed"], 0);
    let exemption = &scan["keys"][0]["exemption"];
    assert_eq!(exemption["by"], "alice@example.com");
    assert_eq!(exemption["reason"], "baked into the vendor appliance; replaced in Q3");
    assert!(exemption["until"].is_string());
    let history = desk.rekey(&["history", "--format", "json"]).json();
    let events: Vec<&str> = history["events"].as_array().unwrap().iter().map(|e| e["event"].as_str().unwrap()).collect();
    assert_eq!(events.iter().filter(|e| **e == "suppressed").count(), 250);
    assert!(events.contains(&"finding_update_failed"), "the failure is audited: {events:?}");
}

#[test]
fn an_expired_exemption_reopens_the_finding_and_the_key_counts_again() {
    let desk = Desk::new(four_users(), "");
    let run = desk.rekey(&["suppress", "--user", "alice", "--reason", "batch job, owner on leave", "--until", "4s"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(desk.workflow("alice"), "SUPPRESSED");
    let until: jiff::Timestamp = desk.scan(&["--as-of", "-1s"])["keys"][0]["exemption"]["until"].as_str().unwrap().parse().unwrap();
    let before = (until - jiff::SignedDuration::from_secs(1)).to_string();
    let exempt = desk.scan(&["--as-of", &before]);
    assert_eq!(exempt["keys"][0]["result"], "SUPPRESSED");
    let after = (until + jiff::SignedDuration::from_secs(1)).to_string();
    let expired = desk.scan(&["--as-of", &after]);
    assert_eq!(expired["keys"][0]["result"], "FAILED", "past --until the key counts again");
    assert!(expired["keys"][0]["exemption"].is_null());

    wait_for("the exemption to expire", || jiff::Timestamp::now() > until);
    let run = desk.rekey(&["run", "--once"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stderr.contains("1 exemption expired"), "{}", run.stderr);
    assert_eq!(desk.workflow("alice"), "NEW");
    assert!(desk.notes("alice").last().unwrap().contains("ended"), "{:?}", desk.notes("alice"));
    let now = desk.scan(&[]);
    assert_eq!(now["keys"][0]["result"], "FAILED");
    let again = desk.rekey(&["run", "--once"]);
    assert!(!again.stderr.contains("expired"), "reopened once: {}", again.stderr);

    let unsuppress = desk.rekey(&["unsuppress", "--user", "alice"]);
    assert_eq!(unsuppress.code, 2, "nothing to end");
    assert!(unsuppress.stderr.contains("no exemption"), "{}", unsuppress.stderr);
}

#[test]
fn unsuppress_reopens_at_once() {
    let desk = Desk::new(four_users(), "");
    assert_eq!(desk.rekey(&["suppress", "--user", "carol", "--reason", "x"]).code, 0);
    let run = desk.rekey(&["unsuppress", "--user", "carol", "--reason", "the appliance is gone"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(desk.workflow("carol"), "NEW");
    assert!(desk.notes("carol").last().unwrap().contains("the appliance is gone"));
    assert_eq!(desk.scan(&["--user", "carol"])["keys"][0]["result"], "FAILED");
}

/// Findings are found by the user's ARN (`ResourceId`), which every IAM.3
/// finding carries: a user with a path, and a user whose name begins
/// another's, each get their own finding and no other.
#[test]
fn findings_are_matched_by_arn_whatever_the_path_or_a_longer_name() {
    let mut ci = user("svc-1", "200d", json!({}));
    ci["path"] = json!("/ci/");
    let desk = Desk::new(json!({"users": [ci, user("svc-10", "200d", json!({})), user("svc-1x", "200d", json!({}))]}), "");
    let run = desk.rekey(&["suppress", "--user", "svc-1", "--reason", "appliance"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!((desk.workflow("svc-1").as_str(), desk.workflow("svc-10").as_str(), desk.workflow("svc-1x").as_str()), ("SUPPRESSED", "NEW", "NEW"));
    let findings = desk.rekey(&["findings", "--user", "svc-1", "--format", "json", "--fail-on", "never"]);
    assert_eq!(names(&findings.json()), ["svc-1"], "{}", findings.stdout);
}

#[test]
fn bad_input_changes_nothing_in_security_hub_or_the_store() {
    let desk = Desk::new(four_users(), "");
    let in_the_past = (jiff::Timestamp::now() - jiff::SignedDuration::from_hours(1)).to_string();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["suppress", "--user", "alice"], "--reason"),
        (vec!["suppress", "--user", "alice", "--reason", "  "], "--reason is empty"),
        (vec!["suppress", "--user", "alice", "--reason", "x", "--until", &in_the_past], "not in the future"),
        (vec!["suppress", "--user", "alice", "--reason", "x", "--until", "someday"], "RFC 3339"),
        (vec!["suppress", "--user", "alice", "--user", "nobody", "--reason", "x"], "nobody"),
        (vec!["suppress", "--user", "alice", "--reason", "x", "--account", "999999999999"], "999999999999"),
        (vec!["unsuppress", "--user", "alice"], "no exemption"),
    ];
    for (args, says) in cases {
        let run = desk.rekey(&args);
        assert_eq!(run.code, 2, "{args:?}: {}", run.stderr);
        assert!(run.stderr.contains(says), "{args:?} should say {says:?}: {}", run.stderr);
    }
    assert_eq!(calls_of(&desk.emu, "securityhub:BatchUpdateFindings"), 0);
    assert!(desk.notes("alice").is_empty());
    assert_eq!(desk.workflow("alice"), "NEW");
    assert!(desk.scan(&[])["keys"].as_array().unwrap().iter().all(|k| k["exemption"].is_null()));
}

#[test]
fn without_security_hub_scan_and_rotation_work_and_findings_say_so() {
    let rig = support::Rig::new();
    rig.emu.set_security_hub(false);
    rig.config_app("wait_unused = \"0s\"\nlast_used_lag = \"0s\"\ngrace = \"0s\"");
    let findings = rig.rekey(&["findings"]);
    assert_eq!(findings.code, 2);
    assert_eq!(findings.stderr.trim().lines().count(), 1, "one line: {}", findings.stderr);
    assert!(findings.stderr.contains("not enabled"), "{}", findings.stderr);
    let suppress = rig.rekey(&["suppress", "--user", &rig.user, "--reason", "x"]);
    assert_eq!(suppress.code, 2);
    assert!(suppress.stderr.contains("not enabled"), "{}", suppress.stderr);
    assert_eq!(rig.rekey(&["scan", "--fail-on", "never"]).code, 0);

    let rotate = rig.rekey(&["rotate", "--user", &rig.user.clone(), "--yes"]);
    assert_eq!(rotate.code, 0, "{}", rotate.stderr);
    assert!(rotate.stderr.contains("kept for the next `rekey run`"), "a warning, not a failure: {}", rotate.stderr);
    let done = rig.run_until("completed", LONG);
    assert_eq!(done["stage"], "completed");
    let history = rig.rekey(&["history", "--format", "json"]).json();
    assert!(history["events"].as_array().unwrap().iter().any(|e| e["event"] == "finding_update_failed"));
    assert!(rig.rekey(&["scan", "--format", "json", "--fail-on", "never"]).json()["keys"][0]["exemption"].is_null());
}

#[test]
fn a_rotation_leaves_a_note_on_the_finding_as_it_moves() {
    let rig = support::Rig::new();
    rig.emu.evaluate_findings(None);
    rig.config_app("wait_unused = \"0s\"\nlast_used_lag = \"0s\"\ngrace = \"0s\"");
    let rotate = rig.rekey(&["rotate", "--user", &rig.user, "--yes"]);
    assert_eq!(rotate.code, 0, "{}", rotate.stderr);
    let done = rig.run_until("completed", LONG);
    let id = done["id"].as_str().unwrap();
    let finding = rig.emu.findings().into_iter().find(|f| f["Resources"][0]["Details"]["AwsIamUser"]["UserName"] == rig.user.as_str()).unwrap();
    let notes: Vec<&str> = finding["note_history"].as_array().unwrap().iter().map(|n| n["Text"].as_str().unwrap()).collect();
    assert!(notes.iter().all(|n| n.contains(id)), "{notes:?}");
    assert!(notes.last().unwrap().ends_with("completed"), "{notes:?}");
    // Security Hub keeps one note: the stages one command passed through
    // are sent as their last, one call per command, not one per stage.
    let history = rig.rekey(&["history", id, "--format", "json"]).json();
    let stages = history["events"].as_array().unwrap().iter().filter(|e| e["to_stage"].is_string()).count();
    assert!(notes.len() < stages, "{} notes for {stages} stages: {notes:?}", notes.len());
    assert_eq!(calls_of(&rig.emu, "securityhub:BatchUpdateFindings") as usize, notes.len());
}

#[test]
fn notify_sends_each_owner_one_notice_once_and_marks_findings_notified() {
    let hook = Webhook::start();
    let topic = "arn:aws:sns:us-east-1:123456789012:key-owners";
    let config = format!(
        "[policy]\nowners_file = \"owners.toml\"\n\n[notify]\nsns_topic_arn = \"{topic}\"\nwebhook_url = \"{}\"\nout_dir = \"notices\"\n",
        hook.url
    );
    let mut scenario = four_users();
    scenario["sns_topics"] = json!(["key-owners"]);
    let desk = Desk::new(scenario, &config);
    std::fs::write(desk.dir.path().join("owners.toml"), "[users]\n\"carol\" = { owner = \"team-c\", contact = \"c@example.com\" }\n").unwrap();

    let owners = desk.rekey(&["owners", "--format", "json"]);
    assert_eq!(owners.code, 0, "{}", owners.stderr);
    let owners = owners.json();
    let groups: Vec<&str> = owners["owners"].as_array().unwrap().iter().map(|o| o["owner"].as_str().unwrap()).collect();
    assert_eq!(groups, ["team-a", "team-c", "team-d"], "bob passes; carol's owner comes from the owners file");
    assert_eq!(owners["owners"][1]["contact"], "c@example.com");
    let choices: Vec<&str> = owners["owners"][0]["keys"][0]["choices"].as_array().unwrap().iter().map(|c| c["command"].as_str().unwrap()).collect();
    // alice's key was never used: retire it, before rotating it.
    assert!(choices[0].starts_with("rekey retire --user alice") && choices[1].starts_with("rekey rotate --user alice"), "{choices:?}");
    let text = desk.rekey(&["owners"]).stdout;
    assert!(text.contains("rekey suppress --user carol") && text.contains("aws iam update-access-key"), "{text}");

    let dry = desk.rekey(&["notify", "--dry-run"]);
    assert_eq!(dry.code, 0, "{}", dry.stderr);
    assert!(dry.stdout.contains("would send") && !dry.stdout.contains("SECRET"), "{}", dry.stdout);
    assert!(hook.received().is_empty() && desk.emu.sns_messages(topic).is_empty());
    assert!(!desk.dir.path().join("notices").exists());

    let sent = desk.rekey(&["notify"]);
    assert_eq!(sent.code, 0, "{}", sent.stderr);
    assert!(sent.stderr.contains("notified 3 owners"), "{}", sent.stderr);
    let bodies = hook.received();
    assert_eq!(bodies.len(), 3);
    assert!(bodies.iter().all(|b| b["text"].as_str().is_some_and(|t| t.contains("IAM.3"))), "Slack-style text: {bodies:?}");
    let messages = desk.emu.sns_messages(topic);
    assert_eq!(messages.len(), 3, "{messages:?}");
    for stem in ["team-a", "team-c", "team-d"] {
        let md = std::fs::read_to_string(desk.dir.path().join(format!("notices/{stem}.md"))).unwrap();
        assert!(md.contains("rekey rotate"), "{md}");
        assert!(desk.dir.path().join(format!("notices/{stem}.html")).is_file());
    }
    assert_eq!(desk.workflow("alice"), "NOTIFIED");
    assert_eq!(desk.workflow("carol"), "NOTIFIED");
    assert!(desk.notes("alice")[0].contains("team-a"));

    let again = desk.rekey(&["notify"]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert!(again.stderr.contains("3 skipped"), "{}", again.stderr);
    assert_eq!((hook.received().len(), desk.emu.sns_messages(topic).len()), (3, 3), "no duplicate notice");
    let forced = desk.rekey(&["notify", "--force", "--owner", "team-c"]);
    assert_eq!(forced.code, 0, "{}", forced.stderr);
    assert_eq!(hook.received().len(), 4);
}

#[test]
fn asff_output_and_import_for_accounts_without_the_control() {
    let desk = Desk::new(four_users(), "");
    let asff = desk.rekey(&["scan", "--format", "asff", "--fail-on", "never"]);
    assert_eq!(asff.code, 0, "{}", asff.stderr);
    let findings: Vec<Value> = serde_json::from_str(&asff.stdout).unwrap();
    assert_eq!(findings.len(), 4, "one per user");
    let alice = findings.iter().find(|f| f["Resources"][0]["Details"]["AwsIamUser"]["UserName"] == "alice").unwrap();
    assert_eq!(alice["Compliance"]["Status"], "FAILED");
    assert_eq!(alice["ProductArn"], "arn:aws:securityhub:us-east-1:123456789012:product/123456789012/default");

    let import = desk.rekey(&["scan", "--import-findings", "--format", "json", "--fail-on", "never"]);
    assert_eq!(import.code, 0, "{}", import.stderr);
    assert!(import.stderr.contains("imported 4 findings"), "{}", import.stderr);
    let ours: Vec<Value> = desk.emu.findings().into_iter().filter(|f| f["GeneratorId"] == "rekey/IAM.3").collect();
    assert_eq!(ours.len(), 4);
    let again = desk.rekey(&["scan", "--import-findings", "--fail-on", "never"]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert_eq!(desk.emu.findings().into_iter().filter(|f| f["GeneratorId"] == "rekey/IAM.3").count(), 4, "updated, not added");
}
