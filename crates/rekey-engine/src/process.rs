//! Runs the commands of `exec` sinks and verifiers: a real process, input on
//! stdin only (never argv or environment, which other users can read), a
//! clean environment, a time limit, and output that never reaches rekey's
//! own output unredacted.

use rekey_core::target::Env;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Debug)]
pub struct Finished {
    pub success: bool,
    /// Exit code, or a description ("timed out after 5s", "killed by a signal").
    pub status: String,
    /// The last line the command wrote on stderr, with `redact` removed.
    pub last_error_line: Option<String>,
}

impl Finished {
    pub fn describe(&self) -> String {
        match &self.last_error_line {
            Some(line) => format!("{}: {line}", self.status),
            None => self.status.clone(),
        }
    }
}

/// What a command gets of rekey's own environment. Nothing else: rekey's
/// AWS credentials, profile and settings would make a command act (or a
/// verifier check) as rekey instead of as the application.
const PASSED_ON: [&str; 4] = ["PATH", "HOME", "LANG", "TZ"];

/// Runs `command` with `input` on stdin, in a clean environment plus `env`;
/// kills it (by PID) after `timeout`.
pub async fn run(command: &[String], env: &Env, input: Option<&[u8]>, timeout: Duration, redact: Option<&str>) -> std::io::Result<Finished> {
    let (program, args) = command.split_first().ok_or_else(|| std::io::Error::other("empty command"))?;
    let passed_on = PASSED_ON.iter().filter_map(|name| Some((*name, std::env::var_os(name)?)));
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .env_clear()
        .envs(passed_on)
        .envs(env)
        .stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        // Its own process group, so a timeout stops the children it started too.
        .process_group(0)
        .spawn()?;
    if let (Some(mut stdin), Some(input)) = (child.stdin.take(), input) {
        // A command that exits without reading its input is its own business.
        let _ = stdin.write_all(input).await;
    }
    // invariant: stderr was set to piped above
    let mut stderr = child.stderr.take().expect("stderr is piped");
    let outcome = tokio::time::timeout(timeout, async {
        let mut err = Vec::new();
        let _ = stderr.read_to_end(&mut err).await;
        (child.wait().await, err)
    })
    .await;
    let (status, err) = match outcome {
        Ok((status, err)) => (status?, err),
        Err(_) => {
            if let Some(pid) = child.id() {
                // SAFETY: kill(2) on the process group we created; no memory is involved.
                unsafe { libc::kill(-(pid as i32), libc::SIGKILL) };
            }
            let _ = child.kill().await;
            return Ok(Finished { success: false, status: format!("timed out after {}s", timeout.as_secs()), last_error_line: None });
        }
    };
    let text = String::from_utf8_lossy(&err);
    let last_error_line = text.lines().rev().find(|l| !l.trim().is_empty()).map(|l| {
        let line = l.trim().chars().take(300).collect::<String>();
        match redact {
            Some(secret) if !secret.is_empty() => line.replace(secret, "***"),
            _ => line,
        }
    });
    let status_text = match status.code() {
        Some(code) => format!("exit code {code}"),
        None => "killed by a signal".to_owned(),
    };
    Ok(Finished { success: status.success(), status: status_text, last_error_line })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Vec<String> {
        vec!["sh".into(), "-c".into(), script.into()]
    }

    #[tokio::test]
    async fn passes_stdin_and_reports_exit() {
        let ok = run(&sh("read line; [ \"$line\" = hello ]"), &Env::new(), Some(b"hello\n"), Duration::from_secs(5), None).await.unwrap();
        assert!(ok.success, "{ok:?}");
        let bad = run(&sh("echo 'went wrong: s3cr3t' >&2; exit 3"), &Env::new(), None, Duration::from_secs(5), Some("s3cr3t")).await.unwrap();
        assert!(!bad.success);
        assert_eq!(bad.describe(), "exit code 3: went wrong: ***");
    }

    #[tokio::test]
    async fn a_slow_command_is_killed_at_the_timeout() {
        let started = std::time::Instant::now();
        let slow = run(&sh("sleep 30"), &Env::new(), None, Duration::from_millis(300), None).await.unwrap();
        assert!(!slow.success);
        assert!(slow.status.contains("timed out"));
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[tokio::test]
    async fn a_missing_program_is_an_error() {
        assert!(run(&["/nonexistent/program".into()], &Env::new(), None, Duration::from_secs(1), None).await.is_err());
    }

    #[tokio::test]
    async fn the_environment_is_clean_but_for_path_home_and_env() {
        let dir = tempfile::tempdir().unwrap();
        let seen = dir.path().join("env");
        let env = Env::from([("FOO".to_owned(), "bar".to_owned())]);
        let done = run(&sh(&format!("env > {}", seen.display())), &env, None, Duration::from_secs(5), None).await.unwrap();
        assert!(done.success, "{done:?}");
        let seen = std::fs::read_to_string(seen).unwrap();
        let names: Vec<&str> = seen.lines().filter_map(|l| l.split_once('=')).map(|(name, _)| name).collect();
        assert!(names.contains(&"PATH") && names.contains(&"FOO"), "{names:?}");
        // The shell adds its own few; nothing of the test runner's environment.
        let shell = ["PWD", "OLDPWD", "SHLVL", "_"];
        assert!(names.iter().all(|n| PASSED_ON.contains(n) || *n == "FOO" || shell.contains(n)), "{names:?}");
    }
}
