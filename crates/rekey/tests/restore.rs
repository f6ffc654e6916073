//! What an `exec` command's stderr may show (issue 10). Each test is named
//! after the defect it pins.

mod support;

use serde_json::Value;
use std::process::Command;
use support::{Rig, Run};

/// Stops after verification, in draining, for an hour.
const STOP_IN_DRAINING: &str = "wait_unused = \"1h\"\nlast_used_lag = \"0s\"\ngrace = \"0s\"\nverify_timeout = \"120s\"\nretry_after = \"0s\"";

/// No run of 8 or more characters of `secret` in rekey's output or state.
fn assert_no_part_of(rig: &Rig, secret: &str, outputs: &[&Run]) {
    const SHORTEST: usize = 8;
    let mut texts: Vec<(String, String)> = outputs.iter().map(|r| ("output".to_owned(), format!("{}\n{}", r.stdout, r.stderr))).collect();
    for name in ["state.db", "state.db-wal"] {
        if let Ok(bytes) = std::fs::read(rig.path(name)) {
            texts.push((name.to_owned(), String::from_utf8_lossy(&bytes).into_owned()));
        }
    }
    for (what, text) in &texts {
        for part in secret.as_bytes().windows(SHORTEST) {
            let part = std::str::from_utf8(part).unwrap();
            assert!(!text.contains(part), "{SHORTEST} characters of the secret reached the {what}");
        }
    }
}

/// What a command wrote on stderr, around the secret: (name, shell code
/// printing `$secret`).
const LEAKS: &[(&str, &str)] = &[
    // The secret straddles the 300th character.
    ("cut", "printf 'failed: %0270d %s\\n' 0 \"$secret\" >&2"),
    ("wrapped", "printf 'failed: %s\\n%s\\n' \"${secret%????????????????????}\" \"${secret#????????????????????}\" >&2"),
    ("base64", "printf '%s' \"$secret\" | base64 >&2"),
];

/// Runs rekey until the exec step failed, and checks its output, `status`,
/// `history` and the state store for any part of the secret that
/// `seen` recorded.
fn check_exec_leak(rig: &Rig, name: &str, seen: &std::path::Path) {
    let run = rig.rekey(&["rotate", "--user", &rig.user, "--yes"]);
    assert_eq!(run.code, 2, "{name}: the command's failure stops the rotation: {}", run.stderr);
    let secret = std::fs::read_to_string(seen).unwrap_or_else(|e| panic!("{name}: the command saw the secret: {e}"));
    let secret = secret.trim();
    assert_eq!(secret.len(), 40, "{name}");
    let status = rig.rekey(&["status"]);
    let json = rig.rekey(&["status", "--all", "--format", "json"]);
    let history = rig.rekey(&["history", "--format", "json"]);
    let shown = [&run, &status, &json, &history].iter().any(|r| r.stdout.contains("exit code 1: ") || r.stderr.contains("exit code 1: "));
    assert!(shown, "{name}: the command's last stderr line is shown: {}", run.stderr);
    let mut forms = vec![secret.to_owned()];
    if name == "base64" {
        let out = Command::new("sh").arg("-c").arg("printf '%s' \"$1\" | base64 -w0").arg("sh").arg(secret).output().unwrap();
        forms.push(String::from_utf8(out.stdout).unwrap());
    }
    for form in &forms {
        assert_no_part_of(rig, form, &[&run, &status, &json, &history]);
    }
}

#[test]
fn defect_10_an_exec_sinks_stderr_never_shows_part_of_the_secret() {
    for (name, print) in LEAKS {
        let rig = Rig::new();
        let seen = rig.path("seen");
        let script = format!(
            "input=$(cat); secret=$(printf '%s' \"$input\" | sed 's/.*\"SecretAccessKey\":\"\\([^\"]*\\)\".*/\\1/'); printf '%s' \"$secret\" > '{}'; {print}; exit 1",
            seen.display()
        );
        let deliver = format!(
            "{{ type = \"credentials-file\", path = \"{}\", profile = \"app\" }}, {{ type = \"exec\", command = [\"sh\", \"-c\", {}] }}",
            rig.credentials().display(),
            toml_string(&script)
        );
        rig.config(STOP_IN_DRAINING, &deliver, "{ type = \"sts\" }");
        check_exec_leak(&rig, name, &seen);
    }
}

#[test]
fn defect_10_an_exec_verifiers_stderr_never_shows_part_of_the_secret() {
    for (name, print) in LEAKS {
        let rig = Rig::new();
        let seen = rig.path("seen");
        // The application's health check prints the key it reads.
        let script = format!(
            "secret=$(sed -n '/^\\[app\\]/,$ s/^aws_secret_access_key = //p' '{}'); printf '%s' \"$secret\" > '{}'; {print}; exit 1",
            rig.credentials().display(),
            seen.display()
        );
        let deliver = format!("{{ type = \"credentials-file\", path = \"{}\", profile = \"app\" }}", rig.credentials().display());
        let verify = format!("{{ type = \"exec\", command = [\"sh\", \"-c\", {}] }}", toml_string(&script));
        rig.config(&STOP_IN_DRAINING.replace("\"120s\"", "\"1s\""), &deliver, &verify);
        check_exec_leak(&rig, name, &seen);
    }
}

/// `text` as a TOML basic string.
fn toml_string(text: &str) -> String {
    Value::String(text.to_owned()).to_string()
}
