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
    /// The last line the command wrote on stderr, after [`redact`], cut to
    /// [`SHOWN_CHARS`].
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
        Ok((status, err)) => (status?, zeroize::Zeroizing::new(err)),
        Err(_) => {
            if let Some(pid) = child.id() {
                // SAFETY: kill(2) on the process group we created; no memory is involved.
                unsafe { libc::kill(-(pid as i32), libc::SIGKILL) };
            }
            let _ = child.kill().await;
            return Ok(Finished { success: false, status: format!("timed out after {}s", timeout.as_secs()), last_error_line: None });
        }
    };
    // Redacted whole, then cut: a cut first could split the secret and keep its start.
    let text = match redact {
        Some(secret) => self::redact(&String::from_utf8_lossy(&err), secret),
        None => zeroize::Zeroizing::new(String::from_utf8_lossy(&err).into_owned()),
    };
    let last_error_line = text.lines().rev().find(|l| !l.trim().is_empty()).map(|l| l.trim().chars().take(SHOWN_CHARS).collect());
    let status_text = match status.code() {
        Some(code) => format!("exit code {code}"),
        None => "killed by a signal".to_owned(),
    };
    Ok(Finished { success: status.success(), status: status_text, last_error_line })
}

/// How much of a command's last stderr line is kept.
pub const SHOWN_CHARS: usize = 300;

/// Runs of this many characters of the secret are hidden wherever they are;
/// a shorter run tells next to nothing of a 40-character random secret.
const SHORTEST_HIDDEN: usize = 6;

/// `text` with every run of [`SHORTEST_HIDDEN`] or more characters of
/// `secret`, or of its base64 forms, replaced by `***`. Whitespace inside a
/// run does not end it, so a secret wrapped over lines is hidden whole; a
/// partial print (a cut, one half) is hidden as far as it goes.
pub fn redact(text: &str, secret: &str) -> zeroize::Zeroizing<String> {
    let bytes = text.as_bytes();
    // Where each non-whitespace byte is: runs are matched on these alone.
    let solid: Vec<usize> = (0..bytes.len()).filter(|&i| !bytes[i].is_ascii_whitespace()).collect();
    let mut hidden = vec![false; bytes.len()];
    for form in forms(secret).iter() {
        let form = form.as_bytes();
        let shortest = SHORTEST_HIDDEN.min(form.len());
        for start in 0..solid.len() {
            let run = |from: usize| (0..).take_while(|&k| start + k < solid.len() && from + k < form.len() && bytes[solid[start + k]] == form[from + k]).count();
            let longest = (0..form.len()).map(run).max().unwrap_or(0);
            if longest >= shortest {
                solid[start..start + longest].iter().for_each(|&i| hidden[i] = true);
            }
        }
    }
    let mut out = zeroize::Zeroizing::new(Vec::with_capacity(bytes.len()));
    for (i, &byte) in bytes.iter().enumerate() {
        match hidden[i] {
            false => out.push(byte),
            true if i == 0 || !hidden[i - 1] => out.extend_from_slice(b"***"),
            true => {}
        }
    }
    // Only whole ASCII runs are hidden (the secret's bytes), so this is UTF-8 still.
    zeroize::Zeroizing::new(String::from_utf8_lossy(&out).into_owned())
}

/// The secret, and the part of its base64 encoding that depends on it
/// alone at each of the three offsets it can have inside a longer input
/// (the first group also encodes bytes before it, the last bytes after).
fn forms(secret: &str) -> Vec<zeroize::Zeroizing<String>> {
    if secret.is_empty() {
        return Vec::new();
    }
    let mut forms = vec![zeroize::Zeroizing::new(secret.to_owned())];
    for offset in 0..3 {
        let mut input = zeroize::Zeroizing::new(vec![0u8; offset]);
        input.extend_from_slice(secret.as_bytes());
        let encoded = base64(&input);
        // Unpadded, a last partial group ends in one character that also encodes the next byte.
        let (first, last) = (if offset == 0 { 0 } else { 4 }, encoded.len() - usize::from(input.len() % 3 != 0));
        if let Some(core) = encoded.get(first..last).filter(|core| !core.is_empty()) {
            forms.push(zeroize::Zeroizing::new(core.to_owned()));
        }
    }
    forms
}

/// Standard base64, without padding.
fn base64(input: &[u8]) -> zeroize::Zeroizing<String> {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = zeroize::Zeroizing::new(String::with_capacity(input.len().div_ceil(3) * 4));
    for chunk in input.chunks(3) {
        let group = chunk.iter().enumerate().fold(0u32, |acc, (i, &b)| acc | u32::from(b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(char::from(ALPHABET[(group >> (18 - 6 * i) & 63) as usize]));
        }
    }
    out
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

    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";

    /// The text without its `***`, once each run of `secret` is hidden.
    fn left_of(text: &str) -> String {
        redact(text, SECRET).replace("***", "")
    }

    #[tokio::test]
    async fn the_secret_is_redacted_before_the_line_is_cut() {
        // The secret starts 20 characters before the cut.
        let script = format!("printf 'failed: %0270d {SECRET} done\\n' 0 >&2; exit 1");
        let done = run(&sh(&script), &Env::new(), None, Duration::from_secs(5), Some(SECRET)).await.unwrap();
        let line = done.last_error_line.unwrap();
        assert!(line.starts_with("failed: 000") && line.ends_with(" *** done"), "{line}");
    }

    #[test]
    fn every_long_run_of_the_secret_is_hidden() {
        // A cut print, a print wrapped over lines (with indentation), the end alone.
        assert_eq!(left_of(&format!("key {}", &SECRET[..12])), "key ");
        assert_eq!(left_of(&format!("a {}\n    {} b", &SECRET[..17], &SECRET[17..])), "a \n     b");
        assert_eq!(left_of(&SECRET[30..]), "");
        // Too short to tell anything, and text with none of it, stay.
        assert_eq!(left_of(&format!("x{}x", &SECRET[..5])), format!("x{}x", &SECRET[..5]));
        assert_eq!(redact("permission denied: /etc/app", SECRET).as_str(), "permission denied: /etc/app");
        assert_eq!(redact("a secret", "").as_str(), "a secret");
    }

    #[test]
    fn the_secret_in_base64_is_hidden_at_any_offset() {
        assert_eq!(base64(b"hello").as_str(), "aGVsbG8");
        for before in ["", "{", "{\""] {
            let encoded = base64(format!("{before}{SECRET}\"}}").as_bytes());
            // At most the first and the last group, which also encode other bytes.
            let left = left_of(&encoded);
            assert!(left.len() <= 8, "{before:?}: {left}");
            let wrapped = format!("{}\n{}", &encoded[..30], &encoded[30..]);
            assert!(left_of(&wrapped).split_whitespace().map(str::len).sum::<usize>() <= 8, "{before:?}: wrapped");
        }
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
