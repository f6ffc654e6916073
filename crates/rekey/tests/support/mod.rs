//! Runs the built `rekey` binary (the one cargo already built for these
//! tests, never a rebuild) in a clean environment: its own HOME and working
//! directory, no AWS settings but those of the emulator it is pointed at.

#![allow(dead_code)]

use rekey_emulator::Emulator;
use serde_json::Value;
use std::path::Path;
use std::io::{BufRead, Read, Write};
use std::process::{Command, Output};

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}\nstderr:\n{}", self.stdout, self.stderr))
    }
}

impl From<Output> for Run {
    fn from(out: Output) -> Run {
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

/// A command for the rekey binary with a clean environment, talking to
/// `emulator` if given.
pub fn rekey_cmd(emulator: Option<&Emulator>, home: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rekey"));
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join(".config"))
        .env("XDG_STATE_HOME", home.join(".state"))
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .current_dir(home);
    if let Some(emulator) = emulator {
        cmd.envs(emulator.env());
    }
    cmd
}

pub fn rekey(emulator: Option<&Emulator>, args: &[&str]) -> Run {
    let home = tempfile::tempdir().expect("temp home");
    rekey_cmd(emulator, home.path()).args(args).output().expect("run rekey").into()
}

/// The emulator's count of AWS requests of one operation.
pub fn calls_of(emulator: &Emulator, operation: &str) -> u64 {
    emulator.calls()["by_operation"][operation].as_u64().unwrap_or(0)
}

pub fn total_calls(emulator: &Emulator) -> u64 {
    emulator.calls()["total"].as_u64().expect("total")
}

/// The bound of waits for something that normally takes seconds: generous,
/// so a busy machine only makes a test slower, never failed.
pub const LONG: std::time::Duration = std::time::Duration::from_secs(300);

/// Polls `done` every 100 ms until it holds; fails after [`LONG`].
pub fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let started = std::time::Instant::now();
    while !done() {
        assert!(started.elapsed() < LONG, "still waiting for {what} after {LONG:?}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// A user with one real access key (created with the AWS CLI), an
/// application profile `[app]` holding it in a credentials file, and a
/// working directory with rekey.toml and the state store.
pub struct Rig {
    pub emu: Emulator,
    pub dir: tempfile::TempDir,
    pub user: String,
    pub old_key: String,
    pub old_secret: String,
}

pub const OTHER_PROFILE: &str = "# shared by several tools\n[other]\naws_access_key_id = AKIAOTHEROTHEROTHER1\naws_secret_access_key = otherotherotherotherotherotherotherother\n\n";

impl Rig {
    pub fn new() -> Rig {
        Rig::with_user("app-user")
    }

    pub fn with_user(user: &str) -> Rig {
        let emu = Emulator::with_scenario(&serde_json::json!({"users": [{"name": user, "tags": {"Owner": "team-app"}, "keys": []}]}));
        let dir = tempfile::tempdir().expect("temp dir");
        let mut rig = Rig { emu, dir, user: user.to_owned(), old_key: String::new(), old_secret: String::new() };
        let (id, secret) = rig.create_key();
        rig.old_key = id;
        rig.old_secret = secret;
        let creds = format!("{OTHER_PROFILE}[app]\naws_access_key_id = {}\naws_secret_access_key = {}\nregion = us-east-1\n", rig.old_key, rig.old_secret);
        std::fs::write(rig.credentials(), creds).unwrap();
        rig
    }

    /// A new key for the user, made with the AWS CLI as an admin would.
    pub fn create_key(&self) -> (String, String) {
        let out = self.aws(&["iam", "create-access-key", "--user-name", &self.user]);
        assert_eq!(out.code, 0, "create-access-key: {}", out.stderr);
        let key = &out.json()["AccessKey"];
        (key["AccessKeyId"].as_str().unwrap().to_owned(), key["SecretAccessKey"].as_str().unwrap().to_owned())
    }

    pub fn path(&self, name: &str) -> std::path::PathBuf {
        self.dir.path().join(name)
    }

    pub fn credentials(&self) -> std::path::PathBuf {
        self.path("credentials")
    }

    /// Writes rekey.toml: `[rotation]` timings, then the target for the user.
    pub fn config(&self, rotation: &str, deliver: &str, verify: &str) {
        let text = format!("[rotation]\n{rotation}\n\n[[target]]\nuser = \"{}\"\ndeliver = [{deliver}]\nverify = [{verify}]\n", self.user);
        std::fs::write(self.path("rekey.toml"), text).unwrap();
    }

    /// The usual target: the credentials file, verified by STS and by the
    /// application itself (the AWS CLI reading that file).
    pub fn config_app(&self, rotation: &str) {
        self.config(
            rotation,
            &format!("{{ type = \"credentials-file\", path = \"{}\", profile = \"app\" }}", self.credentials().display()),
            &format!("{{ type = \"sts\" }}, {}", self.app_verifier(&self.credentials())),
        );
    }

    /// An exec verifier that is the application: the AWS CLI signing with
    /// profile `app` of `credentials`. Exec commands get a clean
    /// environment, so the emulator's address comes through `env`.
    pub fn app_verifier(&self, credentials: &Path) -> String {
        format!(
            "{{ type = \"exec\", command = [\"aws\", \"sts\", \"get-caller-identity\", \"--profile\", \"app\"], env = {{ AWS_SHARED_CREDENTIALS_FILE = \"{}\", AWS_ENDPOINT_URL = \"{}\", AWS_REGION = \"us-east-1\", AWS_DEFAULT_REGION = \"us-east-1\", AWS_EC2_METADATA_DISABLED = \"true\" }} }}",
            credentials.display(),
            self.emu.endpoint
        )
    }

    /// What rekey left next to the credentials file besides its (empty)
    /// lock file: temp files and restore copies, which hold secrets.
    pub fn leftovers(&self) -> Vec<String> {
        std::fs::read_dir(self.dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|name| name.starts_with(".credentials.rekey-") && name != ".credentials.rekey-lock")
            .collect()
    }

    pub fn rekey_cmd(&self) -> Command {
        let mut cmd = rekey_cmd(Some(&self.emu), self.dir.path());
        cmd.arg("--state").arg(self.path("state.db"));
        cmd
    }

    pub fn rekey(&self, args: &[&str]) -> Run {
        self.rekey_cmd().args(args).output().expect("run rekey").into()
    }

    /// The AWS CLI as an admin, with the emulator's credentials.
    pub fn aws(&self, args: &[&str]) -> Run {
        Command::new("aws").envs(self.emu.env()).env("HOME", self.dir.path()).args(args).output().expect("run aws").into()
    }

    /// The application: the AWS CLI signing with the `[app]` profile of the
    /// credentials file, as a service reading its key would.
    pub fn app(&self) -> Run {
        app_call(&self.emu, &self.credentials())
    }

    /// The user's keys as (id, status), from the emulator.
    pub fn keys(&self) -> Vec<(String, String)> {
        self.emu
            .keys(&self.user)
            .as_array()
            .unwrap()
            .iter()
            .map(|k| (k["access_key_id"].as_str().unwrap().to_owned(), k["status"].as_str().unwrap().to_owned()))
            .collect()
    }

    /// The status JSON of the only rotation.
    pub fn rotation(&self) -> Value {
        let run = self.rekey(&["status", "--all", "--format", "json"]);
        assert_eq!(run.code, 0, "{}", run.stderr);
        let all = run.json()["rotations"].as_array().unwrap().clone();
        assert_eq!(all.len(), 1, "one rotation: {all:?}");
        all[0].clone()
    }

    /// `secret` is in no output of rekey's and not in its state store.
    pub fn assert_secret_nowhere(&self, secret: &str, outputs: &[&Run]) {
        for run in outputs {
            assert!(!run.stdout.contains(secret) && !run.stderr.contains(secret), "a secret reached rekey's output");
        }
        for name in ["state.db", "state.db-wal"] {
            if let Ok(bytes) = std::fs::read(self.path(name)) {
                assert!(!bytes.windows(secret.len()).any(|w| w == secret.as_bytes()), "a secret reached {name}");
            }
        }
    }

    /// Runs `rekey run --once` until the rotation reaches `stage` (bounded).
    pub fn run_until(&self, stage: &str, limit: std::time::Duration) -> Value {
        let started = std::time::Instant::now();
        loop {
            let run = self.rekey(&["run", "--once"]);
            assert_eq!(run.code, 0, "rekey run: {}", run.stderr);
            let r = self.rotation();
            if r["stage"] == stage {
                return r;
            }
            assert!(started.elapsed() < limit, "not {stage} after {limit:?}: {r}");
            std::thread::sleep(std::time::Duration::from_millis(300));
        }
    }
}

pub fn app_call(emu: &Emulator, credentials: &Path) -> Run {
    Command::new("aws")
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", credentials.parent().unwrap())
        .env("AWS_ENDPOINT_URL", &emu.endpoint)
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_SHARED_CREDENTIALS_FILE", credentials)
        .args(["sts", "get-caller-identity", "--profile", "app"])
        .output()
        .expect("run aws")
        .into()
}

/// The AWS CLI as an admin of the emulator's account.
pub fn aws(emulator: &Emulator, args: &[&str]) -> Run {
    let home = tempfile::tempdir().expect("temp home");
    let run: Run = Command::new("aws").envs(emulator.env()).env("HOME", home.path()).args(args).output().expect("run aws").into();
    assert_eq!(run.code, 0, "aws {args:?}: {}", run.stderr);
    run
}

/// The project's Python (tests/emulator/requirements.txt holds the
/// validators: cfn-lint, python-hcl2, py-ocsf-models).
pub fn python() -> std::path::PathBuf {
    match std::env::var_os("REKEY_PYTHON") {
        Some(p) => std::path::PathBuf::from(p),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/python"),
    }
}

/// `python -c script file`: its output; fails the test when it fails.
pub fn python_on(script: &str, file: &Path) -> String {
    let out = std::process::Command::new(python()).arg("-c").arg(script).arg(file).output().unwrap_or_else(|e| {
        panic!("cannot run {} ({e}): install the test tools with scripts/install-test-deps.sh, or set REKEY_PYTHON", python().display())
    });
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{} failed ({}):\n{text}", python().display(), out.status);
    text
}

/// A loopback webhook that records the bodies it accepted; while `failing`
/// it answers 500 and records nothing.
pub struct Webhook {
    pub url: String,
    bodies: std::sync::Arc<std::sync::Mutex<Vec<Value>>>,
    pub failing: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// [`Webhook::hold_next`]: 1 holds the next message, 2 holds it now, 0 answers.
    hold: std::sync::Arc<std::sync::atomic::AtomicU8>,
}

impl Webhook {
    pub fn start() -> Webhook {
        use std::sync::atomic::Ordering::SeqCst;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/hooks/T000/SECRET", listener.local_addr().unwrap());
        let hook = Webhook { url, bodies: Default::default(), failing: Default::default(), hold: Default::default() };
        let (seen, fail, hold) = (hook.bodies.clone(), hook.failing.clone(), hook.hold.clone());
        // Detached: it ends with the test process; a thread per message, so a held one holds no other.
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let (seen, fail, hold) = (seen.clone(), fail.clone(), hold.clone());
                std::thread::spawn(move || {
                    let mut reader = std::io::BufReader::new(conn);
                    let mut length = 0;
                    loop {
                        let mut line = String::new();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                            break;
                        }
                        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                            length = v.trim().parse().unwrap_or(0);
                        }
                    }
                    let mut body = vec![0; length];
                    let read = reader.read_exact(&mut body).is_ok();
                    let answer: &[u8] = if fail.load(SeqCst) {
                        b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 4\r\nConnection: close\r\n\r\nfail"
                    } else {
                        if read {
                            seen.lock().unwrap().push(serde_json::from_slice(&body).unwrap_or(Value::Null));
                        }
                        if hold.compare_exchange(1, 2, SeqCst, SeqCst).is_ok() {
                            while hold.load(SeqCst) == 2 {
                                std::thread::sleep(std::time::Duration::from_millis(10));
                            }
                        }
                        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
                    };
                    let _ = reader.get_mut().write_all(answer);
                });
            }
        });
        hook
    }

    /// The next message is received (and counted) but not answered until
    /// [`Webhook::release`]: its sender waits mid-send.
    pub fn hold_next(&self) {
        self.hold.store(1, std::sync::atomic::Ordering::SeqCst);
    }

    pub fn release(&self) {
        self.hold.store(0, std::sync::atomic::Ordering::SeqCst);
    }

    pub fn received(&self) -> Vec<Value> {
        self.bodies.lock().unwrap().clone()
    }
}

/// A working directory with rekey.toml and an emulator; every command runs
/// there.
pub struct Desk {
    pub emu: Emulator,
    pub dir: tempfile::TempDir,
}

impl Desk {
    pub fn new(scenario: Value, config: &str) -> Desk {
        let desk = Desk { emu: Emulator::with_scenario(&scenario), dir: tempfile::tempdir().unwrap() };
        desk.config(config);
        desk
    }

    /// Rewrites rekey.toml.
    pub fn config(&self, text: &str) {
        std::fs::write(self.dir.path().join("rekey.toml"), text).unwrap();
    }

    pub fn rekey(&self, args: &[&str]) -> Run {
        rekey_cmd(Some(&self.emu), self.dir.path()).args(args).output().unwrap().into()
    }

    /// `scan --format json` with `extra`, which must succeed.
    pub fn scan(&self, extra: &[&str]) -> Value {
        let mut args = vec!["scan", "--format", "json", "--fail-on", "never"];
        args.extend_from_slice(extra);
        let run = self.rekey(&args);
        assert_eq!(run.code, 0, "{}", run.stderr);
        run.json()
    }

    /// The user's IAM.3 finding in the emulator.
    pub fn finding(&self, user: &str) -> Value {
        Self::iam3_of(self.emu.findings(), user)
    }

    /// The IAM.3 finding of `user` in another account of the organization.
    pub fn finding_in(&self, account: &str, user: &str) -> Value {
        Self::iam3_of(self.emu.findings_in(account), user)
    }

    fn iam3_of(findings: Vec<Value>, user: &str) -> Value {
        findings
            .into_iter()
            .find(|f| f["Resources"][0]["Details"]["AwsIamUser"]["UserName"] == user && f["GeneratorId"] == "security-control/IAM.3")
            .unwrap_or_else(|| panic!("no IAM.3 finding for {user}"))
    }

    pub fn workflow(&self, user: &str) -> String {
        self.finding(user)["Workflow"]["Status"].as_str().unwrap().to_owned()
    }

    /// Every note the finding had, oldest first.
    pub fn notes(&self, user: &str) -> Vec<String> {
        let f = self.finding(user);
        f["note_history"].as_array().unwrap().iter().map(|n| n["Text"].as_str().unwrap().to_owned()).collect()
    }

    pub fn last_note(&self, user: &str) -> String {
        self.notes(user).pop().unwrap_or_default()
    }
}
