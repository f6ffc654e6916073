//! `[[exempt]]` rules against the emulator: each selector (group, tag,
//! accounts, ous) suppresses in scans with the rule named; `rekey run`
//! mirrors the rule to Security Hub and reopens the finding once the rule
//! is gone, changing nothing on a pass with nothing new; an expired rule
//! suppresses nothing; rotate and retire refuse an exempt user unless
//! `--ignore-exemption`, which the audit log records.

mod support;

use serde_json::{json, Value};
use support::{calls_of, Desk};

const ACCOUNT: &str = "123456789012";
const LAB: &str = "111111111111";

fn key_of<'a>(scan: &'a Value, user: &str) -> &'a Value {
    scan["keys"].as_array().unwrap().iter().find(|k| k["user_name"] == user).unwrap_or_else(|| panic!("no key of {user}: {scan}"))
}

fn scenario() -> Value {
    json!({
        "users": [
            {"name": "break-glass", "groups": ["KeyRotationExempt"], "keys": [{"age": "200d"}]},
            {"name": "appliance", "tags": {"rekey:exempt": "true"}, "keys": [{"age": "200d"}]},
            {"name": "warned", "groups": ["KeyRotationExempt"], "keys": [{"age": "80d"}]},
            {"name": "plain", "groups": ["Developers"], "tags": {"rekey:exempt": "false"}, "keys": [{"age": "200d"}]},
        ],
        "organization": {"role_name": "OrganizationAccountAccessRole"},
        "accounts": [
            {"id": LAB, "ou": ["ou-abcd-11111111", "ou-abcd-12345678"], "users": [{"name": "lab-user", "keys": [{"age": "200d"}]}]},
        ],
    })
}

const GROUP: &str = "[[exempt]]\nreason = \"break-glass users, reviewed quarterly\"\ngroup = \"KeyRotationExempt\"\n";
const TAG: &str = "[[exempt]]\nreason = \"vendor appliance\"\ntag = { key = \"rekey:exempt\", value = \"true\" }\nuntil = \"2099-03-31T00:00:00Z\"\n";

#[test]
fn group_and_tag_rules_suppress_in_scans_and_mirror_to_security_hub_until_removed() {
    let desk = Desk::new(scenario(), &format!("{GROUP}{TAG}"));
    let scan = desk.scan(&[]);
    let glass = key_of(&scan, "break-glass");
    assert_eq!(glass["result"], "SUPPRESSED");
    assert_eq!(glass["exemption"], json!({"source": "rule", "rule": 1, "reason": "break-glass users, reviewed quarterly", "until": null}));
    assert!(glass["reason"].as_str().unwrap().contains("[[exempt]] #1"), "{}", glass["reason"]);
    let appliance = key_of(&scan, "appliance");
    assert_eq!((appliance["result"].as_str(), appliance["exemption"]["rule"].as_u64()), (Some("SUPPRESSED"), Some(2)));
    assert_eq!(appliance["exemption"]["until"], "2099-03-31T00:00:00Z");
    assert_eq!(key_of(&scan, "warned")["result"], "SUPPRESSED", "a WARNING key too");
    assert_eq!(key_of(&scan, "plain")["result"], "FAILED");
    assert!(key_of(&scan, "plain")["exemption"].is_null());
    assert_eq!(scan["summary"]["suppressed"], 3);

    for format in ["csv", "table", "html"] {
        let run = desk.rekey(&["scan", "--format", format, "--fail-on", "never"]);
        assert!(run.stdout.contains("[[exempt]] #1") && run.stdout.contains("SUPPRESSED"), "{format}:\n{}", run.stdout);
    }
    let asff = desk.rekey(&["scan", "--format", "asff", "--fail-on", "never"]);
    assert!(asff.stdout.contains("Suppressed by [[exempt]] #2"), "{}", asff.stdout);
    let owners = desk.rekey(&["owners", "--format", "json"]);
    assert!(!owners.stdout.contains("break-glass") && owners.stdout.contains("plain"), "owners list only what needs a decision: {}", owners.stdout);

    // run mirrors the rules to Security Hub, once.
    let run = desk.rekey(&["run", "--once"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(desk.workflow("break-glass"), "SUPPRESSED");
    assert!(desk.last_note("break-glass").contains("[[exempt]] #1") && desk.last_note("break-glass").contains("break-glass users"), "{}", desk.last_note("break-glass"));
    assert_eq!(desk.workflow("appliance"), "SUPPRESSED");
    assert_eq!(desk.workflow("plain"), "NEW");
    desk.emu.reset_calls();
    let again = desk.rekey(&["run", "--once"]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert_eq!(calls_of(&desk.emu, "securityhub:BatchUpdateFindings"), 0, "nothing differs, nothing is sent: {}", desk.emu.calls());

    // The group rule goes: its finding reopens, the tag rule's stays.
    desk.config(TAG);
    let run = desk.rekey(&["run", "--once"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(desk.workflow("break-glass"), "NEW");
    assert!(desk.last_note("break-glass").contains("no longer applies"), "{}", desk.last_note("break-glass"));
    assert_eq!(desk.workflow("appliance"), "SUPPRESSED");
    assert_eq!(key_of(&desk.scan(&[]), "break-glass")["result"], "FAILED");

    // Every rule goes: the last one's finding reopens too.
    desk.config("");
    assert_eq!(desk.rekey(&["run", "--once"]).code, 0);
    assert_eq!(desk.workflow("appliance"), "NEW");
    let history = desk.rekey(&["history", "--format", "json"]).json();
    let mirrored = history["events"].as_array().unwrap().iter().filter(|e| e["event"] == "exemption_rule_mirrored").count();
    // The tag rule became #1 when #1 went: its note was rewritten once.
    assert_eq!(mirrored, 5, "two suppressed, one renumbered, two reopened: {history}");
}

#[test]
fn a_recorded_exemption_comes_before_a_rule() {
    let desk = Desk::new(scenario(), GROUP);
    let run = desk.rekey(&["suppress", "--user", "break-glass", "--reason", "owner on leave", "--by", "alice"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let glass = key_of(&desk.scan(&[]), "break-glass").clone();
    assert_eq!(glass["exemption"]["source"], "recorded");
    assert_eq!(glass["exemption"]["by"], "alice");
    assert_eq!(desk.rekey(&["run", "--once"]).code, 0);
    assert!(desk.last_note("break-glass").contains("owner on leave"), "the recorded note stays: {}", desk.last_note("break-glass"));
}

#[test]
fn an_expired_rule_suppresses_nothing_and_reads_nothing() {
    let desk = Desk::new(scenario(), "[[exempt]]\nreason = \"was a pilot\"\ngroup = \"KeyRotationExempt\"\nuntil = \"2020-01-01T00:00:00Z\"\n");
    desk.emu.reset_calls();
    let scan = desk.scan(&[]);
    assert_eq!(key_of(&scan, "break-glass")["result"], "FAILED");
    assert!(key_of(&scan, "break-glass")["exemption"].is_null());
    assert_eq!(calls_of(&desk.emu, "iam:ListGroupsForUser"), 0);
}

#[test]
fn accounts_and_ous_rules_suppress_a_whole_account() {
    let accounts = format!("[org]\nrole_name = \"OrganizationAccountAccessRole\"\n[[exempt]]\nreason = \"sandbox\"\naccounts = [\"{ACCOUNT}\"]\n");
    let desk = Desk::new(scenario(), &accounts);
    let scan = desk.scan(&[]);
    assert!(scan["keys"].as_array().unwrap().iter().filter(|k| k["status"] == "Active").all(|k| k["result"] == "SUPPRESSED" && k["exemption"]["rule"] == 1), "{scan}");
    assert_eq!(desk.rekey(&["run", "--once"]).code, 0);
    assert_eq!(desk.workflow("plain"), "SUPPRESSED");
    assert!(desk.last_note("plain").contains("sandbox"));

    desk.config("[org]\nrole_name = \"OrganizationAccountAccessRole\"\n[[exempt]]\nreason = \"lab OU\"\nous = [\"ou-abcd-11111111\"]\n");
    desk.emu.reset_calls();
    let lab = desk.scan(&["--accounts", LAB]);
    let key = key_of(&lab, "lab-user");
    assert_eq!(key["result"], "SUPPRESSED", "an OU above the account's own: {lab}");
    assert_eq!(key["exemption"]["reason"], "lab OU");
    assert_eq!(calls_of(&desk.emu, "organizations:ListParents"), 3, "one per level, two OUs and the root, once per account: {}", desk.emu.calls());
    let own = desk.scan(&[]);
    assert_eq!(key_of(&own, "plain")["result"], "FAILED", "the management account is under the root only");

    // A runner for the member account mirrors the OU rule to its Security
    // Hub, and reopens the finding once the rule is gone.
    let lab_finding = || {
        let f = desk.finding_in(LAB, "lab-user");
        let note = f["note_history"].as_array().and_then(|n| n.last()).map(|n| n["Text"].as_str().unwrap_or_default().to_owned()).unwrap_or_default();
        (f["Workflow"]["Status"].as_str().unwrap_or_default().to_owned(), note)
    };
    assert_eq!(lab_finding().0, "NEW");
    let run = desk.rekey(&["run", "--once", "--account", LAB]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let (workflow, note) = lab_finding();
    assert_eq!(workflow, "SUPPRESSED", "{note}");
    assert!(note.contains("[[exempt]] #1") && note.contains("lab OU"), "{note}");
    desk.config("[org]\nrole_name = \"OrganizationAccountAccessRole\"\n");
    let run = desk.rekey(&["run", "--once", "--account", LAB]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let (workflow, note) = lab_finding();
    assert_eq!(workflow, "NEW", "{note}");
    assert!(note.contains("no longer applies"), "{note}");
}

#[test]
fn rotate_and_retire_refuse_an_exempt_user_unless_told_and_record_it() {
    let desk = Desk::new(scenario(), GROUP);
    let keys_before = desk.emu.keys("break-glass");
    let refused = desk.rekey(&["retire", "--user", "break-glass", "--yes"]);
    assert_eq!(refused.code, 2, "{}", refused.stderr);
    assert!(refused.stderr.contains("[[exempt]] #1") && refused.stderr.contains("--ignore-exemption"), "{}", refused.stderr);
    let rotate = desk.rekey(&["rotate", "--user", "break-glass", "--dry-run", "--reveal", "--deliver", "{ type = \"manual\" }", "--verify", "{ type = \"manual\" }"]);
    assert_eq!(rotate.code, 2, "{}", rotate.stderr);
    assert!(rotate.stderr.contains("--ignore-exemption"), "{}", rotate.stderr);
    assert_eq!(desk.emu.keys("break-glass"), keys_before, "nothing changed");

    let retired = desk.rekey(&["retire", "--user", "break-glass", "--yes", "--ignore-exemption", "--wait-unused", "1d"]);
    assert!(retired.code == 0 || retired.code == 1, "{}", retired.stderr);
    let history = desk.rekey(&["history", "--format", "json"]).json();
    let ignored = history["events"].as_array().unwrap().iter().find(|e| e["event"] == "exemption_ignored").unwrap_or_else(|| panic!("{history}"));
    assert_eq!(ignored["detail"]["rule"], 1);
    assert_eq!(ignored["detail"]["source"], "rule");
    assert!(ignored["rotation_id"].is_string(), "{ignored}");
}
