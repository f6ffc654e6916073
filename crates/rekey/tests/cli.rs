//! Bad input gets exit code 2, a message that names the problem, and no AWS
//! call; settings follow CLI > environment > rekey.toml > default.

mod support;

use rekey_emulator::Emulator;
use serde_json::json;
use support::{rekey, rekey_cmd, total_calls, Run};

fn assert_rejected(run: &Run, words: &[&str]) {
    assert_eq!(run.code, 2, "stdout: {}\nstderr: {}", run.stdout, run.stderr);
    assert_eq!(run.stdout, "");
    for w in words {
        assert!(run.stderr.contains(w), "stderr should mention {w:?}:\n{}", run.stderr);
    }
}

#[test]
fn bad_flags_are_rejected_before_any_aws_call() {
    let emu = Emulator::empty();
    for (args, words) in [
        (&["scan", "--no-such-flag"][..], &["--no-such-flag"][..]),
        (&["scan", "--max-age", "90x"], &["invalid duration", "90x"]),
        (&["scan", "--max-age=-5d"], &["negative"]),
        (&["scan", "--warn-within", "soon"], &["invalid duration"]),
        (&["scan", "--as-of", "yesterday"], &["--as-of", "yesterday", "RFC 3339", "2026-11-28T00:00:00Z", "-1d"]),
        (&["scan", "--as-of", "-1x"], &["--as-of", "-1x", "unit"]),
        (&["scan", "--user", "no spaces allowed"], &["IAM user name"]),
        (&["scan", "--format", "yaml"], &["yaml"]),
        (&["scan", "--fail-on", "sometimes"], &["sometimes"]),
        (&["scan", "--source", "guess"], &["guess"]),
        (&["scan", "--endpoint-url", "localhost:4566"], &["http://"]),
        (&["scan", "--config", "/nonexistent/rekey.toml"], &["/nonexistent/rekey.toml", "does not exist"]),
        (&["scan", "--output", "/nonexistent/dir/out.json"], &["--output", "/nonexistent/dir/out.json"]),
        (&["frobnicate"], &["frobnicate"]),
    ] {
        let run = rekey(Some(&emu), args);
        assert_rejected(&run, words);
    }
    assert_eq!(total_calls(&emu), 0, "no AWS call for bad input: {}", emu.calls());
}

#[test]
fn as_of_accepts_a_duration_back_from_now() {
    let emu = Emulator::with_scenario(&json!({"users": [{"name": "u", "keys": [{"status": "Active", "age": "1d"}]}]}));
    for flag in [&["--as-of", "-1d"][..], &["--as-of=-36h"]] {
        let run = rekey(Some(&emu), &[&["scan", "--format", "json"][..], flag].concat());
        assert_eq!(run.code, 0, "{}", run.stderr);
        let scan = run.json();
        let at = |k: &str| scan[k].as_str().unwrap().parse::<jiff::Timestamp>().unwrap().as_second();
        let back = if flag.len() == 2 { 86_400 } else { 36 * 3_600 };
        assert_eq!(at("generated_at") - at("as_of"), back, "{flag:?}");
    }
}

/// Issue 7: `Usage: rekey rotate --user <NAME> --region <REGION> --endpoint-url <URL>`
/// listed flags set only through the environment, as if required.
#[test]
fn the_usage_line_shows_what_is_required_not_the_environment() {
    let home = tempfile::tempdir().unwrap();
    let run: Run = rekey_cmd(None, home.path())
        .envs([("AWS_REGION", "eu-west-1"), ("AWS_ENDPOINT_URL", "http://127.0.0.1:9"), ("AWS_PROFILE", "p"), ("REKEY_BY", "me")])
        .args(["rotate", "--yes"])
        .output()
        .unwrap()
        .into();
    assert_rejected(&run, &["--user <NAME>"]);
    let usage = run.stderr.lines().find(|l| l.starts_with("Usage:")).unwrap_or_else(|| panic!("a usage line: {}", run.stderr));
    assert_eq!(usage, "Usage: rekey rotate --user <NAME> --yes");
}

#[test]
fn a_malformed_config_names_file_line_and_key() {
    let emu = Emulator::empty();
    let home = tempfile::tempdir().unwrap();
    for (text, words) in [
        ("[policy]\nmax_age = \"90d\"\nmax_agee = \"1d\"\n", &["line 3", "max_agee"][..]),
        ("[rotation]\ngrace = \"-1d\"\n", &["line 2", "grace", "negative"]),
        ("[[target]]\nuser = \"ci\"\n", &["deliver"]),
        ("[[target]]\nuser = \"ci\"\ndeliver = []\n", &["line 3", "at least one"]),
        ("[policy\n", &["line 1"]),
    ] {
        std::fs::write(home.path().join("rekey.toml"), text).unwrap();
        // Found implicitly in the working directory, and given with --config.
        let implicit: Run = rekey_cmd(Some(&emu), home.path()).arg("scan").output().unwrap().into();
        assert_rejected(&implicit, &[&["rekey.toml"][..], words].concat());
        let config = home.path().join("rekey.toml");
        let explicit = rekey(Some(&emu), &["scan", "--config", config.to_str().unwrap()]);
        assert_rejected(&explicit, &[&[config.to_str().unwrap()][..], words].concat());
    }
    assert_eq!(total_calls(&emu), 0);
}

/// The policy's environment variable reaches every command that evaluates
/// keys, not only `scan` (the precedence itself is a table test in
/// settings.rs).
#[test]
fn the_max_age_variable_reaches_owners_as_it_reaches_scan() {
    let emu = Emulator::with_scenario(&json!({"users": [
        {"name": "sixty", "keys": [{"status": "Active", "age": "60d"}]},
    ]}));
    let home = tempfile::tempdir().unwrap();
    let listed = |command: &str, max_age: Option<&str>| {
        let mut cmd = rekey_cmd(Some(&emu), home.path());
        cmd.args([command, "--format", "json"]);
        if let Some(v) = max_age {
            cmd.env("REKEY_MAX_AGE", v);
        }
        let run: Run = cmd.output().unwrap().into();
        // (scan exits 1 when a key fails)
        assert!(run.code < 2, "{command}: {}", run.stderr);
        run.stdout.contains("\"FAILED\"")
    };
    for command in ["scan", "owners"] {
        assert!(!listed(command, None), "{command}: 60 days pass the default 90");
        assert!(listed(command, Some("30d")), "{command}: REKEY_MAX_AGE=30d fails them");
    }
}

#[test]
fn the_endpoint_can_come_from_the_config_file() {
    let emu = Emulator::with_scenario(&json!({"users": [{"name": "u", "keys": [{"status": "Active", "age": "1d"}]}]}));
    let home = tempfile::tempdir().unwrap();
    std::fs::write(home.path().join("rekey.toml"), format!("[aws]\nendpoint_url = \"{}\"\nregion = \"us-east-1\"\n", emu.endpoint)).unwrap();
    let run: Run = rekey_cmd(None, home.path())
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .args(["scan", "--format", "json"])
        .output()
        .unwrap()
        .into();
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.json()["summary"]["keys"], 1);
    assert!(total_calls(&emu) > 0);
}

#[test]
fn help_and_version_exit_0() {
    let help = rekey(None, &["scan", "--help"]);
    assert_eq!(help.code, 0);
    for flag in ["--source", "--max-age", "--warn-within", "--as-of", "--user", "--owner", "--format", "--output", "--fail-on", "--endpoint-url", "--no-progress"] {
        assert!(help.stdout.contains(flag), "help lists {flag}");
    }
    assert_eq!(rekey(None, &["--version"]).code, 0);
}

#[test]
fn help_sets_global_flags_apart() {
    let help = rekey(None, &["scan", "--help"]).stdout;
    let global = help.find("Global options:").unwrap_or_else(|| panic!("a Global options heading:\n{help}"));
    for own in ["--format", "--as-of", "--fail-on"] {
        assert!(help.find(own).unwrap() < global, "{own} is scan's own");
    }
    for shared in ["--region", "--endpoint-url", "--state", "--quiet"] {
        assert!(help.find(shared).unwrap() > global, "{shared} is global");
    }
    let format = help.lines().find(|l| l.trim_start().starts_with("--format")).unwrap();
    assert!(format.contains("table for people"), "{format}");
}

#[test]
fn completions_and_man_page() {
    let home = tempfile::tempdir().unwrap();
    // A broken rekey.toml does not matter: nothing is read but the flags.
    std::fs::write(home.path().join("rekey.toml"), "[policy\n").unwrap();
    let bash: Run = rekey_cmd(None, home.path()).args(["completions", "bash"]).output().unwrap().into();
    assert_eq!(bash.code, 0, "{}", bash.stderr);
    assert!(bash.stdout.starts_with("_rekey() {"), "{}", bash.stdout);
    assert!(bash.stdout.contains("complete -F _rekey"), "registers the function");
    for word in ["scan", "rotate", "--as-of", "--endpoint-url", "credential-report"] {
        assert!(bash.stdout.contains(word), "completes {word}");
    }
    let check = std::process::Command::new("bash").arg("-n").stdin(std::process::Stdio::piped()).spawn().and_then(|mut c| {
        use std::io::Write;
        c.stdin.take().unwrap().write_all(bash.stdout.as_bytes())?;
        c.wait()
    });
    assert!(check.unwrap().success(), "bash parses it");
    for shell in ["zsh", "fish"] {
        let run: Run = rekey_cmd(None, home.path()).args(["completions", shell]).output().unwrap().into();
        assert_eq!(run.code, 0, "{shell}: {}", run.stderr);
        assert!(run.stdout.contains("rotate"), "{shell}");
    }
    assert_eq!(rekey(None, &["completions", "tcsh"]).code, 2);
    let man: Run = rekey_cmd(None, home.path()).arg("man").output().unwrap().into();
    assert_eq!(man.code, 0, "{}", man.stderr);
    assert!(man.stdout.contains(".TH rekey 1") && man.stdout.contains("Security Hub IAM.3"), "{}", man.stdout);
}

#[test]
fn run_once_says_what_it_did_unless_quiet() {
    let emu = Emulator::empty();
    let home = tempfile::tempdir().unwrap();
    let state = home.path().join("state.db");
    let run = |quiet: bool| -> Run {
        let mut cmd = rekey_cmd(Some(&emu), home.path());
        cmd.arg("--state").arg(&state).args(["run", "--once"]);
        if quiet {
            cmd.arg("-q");
        }
        cmd.output().unwrap().into()
    };
    let said = run(false);
    assert_eq!((said.code, said.stdout.as_str()), (0, "advanced 0 rotations; 0 waiting\n"), "{}", said.stderr);
    assert_eq!(run(true).stdout, "");
}

#[test]
fn policy_covers_scan_and_each_configured_target() {
    let bare = rekey(None, &["policy"]);
    assert_eq!(bare.code, 0, "{}", bare.stderr);
    let policy: serde_json::Value = serde_json::from_str(&bare.stdout).unwrap();
    assert_eq!(policy["Version"], "2012-10-17");
    let statements = policy["Statement"].as_array().unwrap();
    let sids: Vec<&str> = statements.iter().map(|s| s["Sid"].as_str().unwrap()).collect();
    assert_eq!(sids, ["RekeyScan", "RekeyConsumers", "RekeySecurityHubFindings", "RekeyImportFindings", "RekeyRolePlan"], "scanning, consumers, role plans, and Security Hub unless it is off");
    let scan_actions = statements[0]["Action"].as_array().unwrap();
    for action in ["iam:GenerateCredentialReport", "iam:GetCredentialReport", "iam:ListUsers", "iam:ListAccessKeys", "iam:GetAccessKeyLastUsed", "iam:ListUserTags"] {
        assert!(scan_actions.contains(&json!(action)), "{action}");
    }

    let home = tempfile::tempdir().unwrap();
    std::fs::write(
        home.path().join("rekey.toml"),
        "[[target]]\nuser = \"ci\"\naccount = \"123456789012\"\ndeliver = [{ type = \"secretsmanager\", secret_id = \"prod/ci\" }, { type = \"ssm\", name = \"/prod/ci\" }]\n",
    )
    .unwrap();
    let run: Run = rekey_cmd(None, home.path()).arg("policy").output().unwrap().into();
    assert_eq!(run.code, 0, "{}", run.stderr);
    let policy: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    let by_sid = |sid: &str| policy["Statement"].as_array().unwrap().iter().find(|s| s["Sid"] == sid).cloned().unwrap();
    assert_eq!(
        by_sid("RekeyRotateKeys")["Resource"],
        json!(["arn:aws:iam::123456789012:user/ci", "arn:aws:iam::123456789012:user/*/ci"])
    );
    assert_eq!(by_sid("RekeyDeliverSecretsManager")["Resource"], json!(["arn:aws:secretsmanager:*:123456789012:secret:prod/ci-??????"]));
    assert_eq!(by_sid("RekeyDeliverParameters")["Resource"], json!(["arn:aws:ssm:*:123456789012:parameter/prod/ci"]));

    let topic = "arn:aws:sns:us-east-1:123456789012:key-owners";
    std::fs::write(home.path().join("rekey.toml"), format!("[securityhub]\nenabled = false\n[notify]\nsns_topic_arn = \"{topic}\"\n[org]\nrole_name = \"Audit\"\n")).unwrap();
    let run: Run = rekey_cmd(None, home.path()).arg("policy").output().unwrap().into();
    let policy: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    let sids: Vec<&str> = policy["Statement"].as_array().unwrap().iter().map(|s| s["Sid"].as_str().unwrap()).collect();
    assert_eq!(sids, ["RekeyScan", "RekeyConsumers", "RekeyListOrganization", "RekeyAssumeMemberRoles", "RekeyNotifyOwners", "RekeyRolePlan"], "no Security Hub when it is off; the org role; SNS for the topic");
    let by_sid = |sid: &str| policy["Statement"].as_array().unwrap().iter().find(|s| s["Sid"] == sid).cloned().unwrap();
    assert_eq!(by_sid("RekeyAssumeMemberRoles")["Resource"], json!(["arn:aws:iam::*:role/Audit"]));
    assert_eq!(by_sid("RekeyNotifyOwners")["Action"], json!(["sns:Publish"]));
    assert_eq!(by_sid("RekeyNotifyOwners")["Resource"], json!([topic]));

    // State in DynamoDB: the runner's actions and the setup's, on that table only.
    let run: Run = rekey_cmd(None, home.path()).args(["--state", "dynamodb:team-rekey", "policy"]).output().unwrap().into();
    let policy: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    let state: Vec<&serde_json::Value> = policy["Statement"].as_array().unwrap().iter().filter(|s| s["Sid"].as_str().unwrap().starts_with("RekeyState")).collect();
    assert_eq!(state.len(), 2, "{policy}");
    for s in &state {
        assert_eq!(s["Resource"], json!(["arn:aws:dynamodb:*:*:table/team-rekey", "arn:aws:dynamodb:*:*:table/team-rekey/index/*"]));
    }
    assert!(state[0]["Action"].as_array().unwrap().contains(&json!("dynamodb:ConditionCheckItem")));
    assert!(!state[0]["Action"].as_array().unwrap().contains(&json!("dynamodb:Scan")), "a runner never scans the table");
}

#[test]
fn the_state_file_comes_from_the_flag_then_the_config_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("rekey.toml"), "[state]\nbackend = \"sqlite\"\npath = \"~/from-config/state.db\"\n").unwrap();
    let status = |args: &[&str]| -> Run { support::rekey_cmd(None, dir.path()).args(args).output().unwrap().into() };
    assert_eq!(status(&["status"]).code, 0);
    assert!(dir.path().join("from-config/state.db").exists(), "~ is the home directory");
    assert_eq!(status(&["--state", "flag.db", "status"]).code, 0);
    assert!(dir.path().join("flag.db").exists(), "the flag wins");

    // A table reached with the caller's credentials: none here, said plainly.
    std::fs::write(dir.path().join("rekey.toml"), "[state]\nbackend = \"dynamodb\"\ntable = \"rekey-state\"\n").unwrap();
    let run = status(&["status"]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("DynamoDB table rekey-state") && run.stderr.contains("no AWS credentials"), "{}", run.stderr);
    assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
    std::fs::write(dir.path().join("rekey.toml"), "[state]\nbackend = \"dynamodb\"\ntable = \"no\"\n").unwrap();
    assert_rejected(&status(&["status"]), &["[state] table", "not a DynamoDB table name"]);
    assert_rejected(&status(&["--state", "dynamodb:a/b", "status"]), &["--state", "not a DynamoDB table name"]);
    std::fs::write(dir.path().join("rekey.toml"), "[state]\nbackend = \"postgres\"\n").unwrap();
    assert_rejected(&status(&["status"]), &["backend", "line 2"]);
}
