//! Starts the moto-based AWS emulator harness (`harness.py` beside this
//! crate) for one test: its own process on a free loopback port, seeded from
//! a scenario, stopped by PID when the [`Emulator`] is dropped. Tests run in
//! parallel because none shares an emulator.

use serde_json::Value;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The credentials every test signs with; moto accepts any.
pub const ACCESS_KEY_ID: &str = "testing";
pub const SECRET_ACCESS_KEY: &str = "testing";
pub const REGION: &str = "us-east-1";

const READY_TIMEOUT: Duration = Duration::from_secs(120);

pub struct Emulator {
    child: Child,
    pub endpoint: String,
    pub account_id: String,
    /// With IAM authorization on: the admin user's key, which [`Emulator::env`] hands out.
    admin: Option<(String, String)>,
    dir: tempfile::TempDir,
}

/// The folder of scenario files shipped with the harness.
pub fn scenarios_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios")
}

impl Emulator {
    /// An emulator with no users.
    pub fn empty() -> Emulator {
        Emulator::start(None, None, false)
    }

    /// Seeds a scenario given as JSON (see the harness README for the format).
    pub fn with_scenario(scenario: &Value) -> Emulator {
        Emulator::start(Some(scenario), None, false)
    }

    /// A scenario with IAM authorization enforced (`harness.py --iam-auth`):
    /// every request is allowed only by its caller's policies. [`Emulator::env`]
    /// then signs as an admin user allowed everything.
    pub fn with_iam_auth(scenario: &Value) -> Emulator {
        Emulator::start(Some(scenario), None, true)
    }

    /// Seeds a scenario file, with `as_of` overriding the file's.
    pub fn with_scenario_file(path: &Path, as_of: Option<&str>) -> Emulator {
        let scenario: Value = serde_json::from_str(&std::fs::read_to_string(path).expect("read scenario"))
            .expect("scenario is JSON");
        Emulator::start(Some(&scenario), as_of, false)
    }

    fn start(scenario: Option<&Value>, as_of: Option<&str>, iam_auth: bool) -> Emulator {
        let dir = tempfile::tempdir().expect("temp dir");
        let ready = dir.path().join("ready.json");
        let log = std::fs::File::create(dir.path().join("harness.log")).expect("log file");
        let mut cmd = Command::new(python());
        cmd.arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("harness.py"))
            .arg("--ready-file")
            .arg(&ready)
            .arg("--truth")
            .arg(dir.path().join("truth.json"))
            .arg("--watch-parent");
        if let Some(scenario) = scenario {
            let path = dir.path().join("scenario.json");
            std::fs::write(&path, scenario.to_string()).expect("write scenario");
            cmd.arg("--scenario").arg(path);
        }
        if let Some(as_of) = as_of {
            cmd.arg("--as-of").arg(as_of);
        }
        if iam_auth {
            cmd.arg("--iam-auth");
        }
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start harness.py");
        let started = Instant::now();
        let info: Value = loop {
            if let Ok(text) = std::fs::read_to_string(&ready) {
                break serde_json::from_str(&text).expect("ready file is JSON");
            }
            if let Some(status) = child.try_wait().expect("poll harness") {
                let log = std::fs::read_to_string(dir.path().join("harness.log")).unwrap_or_default();
                panic!("harness exited with {status} before it was ready:\n{log}");
            }
            if started.elapsed() > READY_TIMEOUT {
                let _ = child.kill();
                panic!("harness not ready after {READY_TIMEOUT:?}");
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        Emulator {
            child,
            endpoint: info["endpoint"].as_str().expect("endpoint").to_owned(),
            account_id: info["account_id"].as_str().unwrap_or("123456789012").to_owned(),
            admin: info["admin_access_key_id"].as_str().map(|id| (id.to_owned(), info["admin_secret_access_key"].as_str().expect("admin secret").to_owned())),
            dir,
        }
    }

    /// The expected IAM.3 result of every seeded key (the harness computes it).
    pub fn truth(&self) -> Value {
        let text = std::fs::read_to_string(self.dir.path().join("truth.json")).expect("truth file");
        serde_json::from_str(&text).expect("truth is JSON")
    }

    /// Environment for a process that should talk to this emulator, and to
    /// nothing else (no instance metadata lookups).
    /// With IAM authorization on, it signs as the admin user.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        let (id, secret) = self.admin.clone().unwrap_or((ACCESS_KEY_ID.into(), SECRET_ACCESS_KEY.into()));
        vec![
            ("AWS_ENDPOINT_URL", self.endpoint.clone()),
            ("AWS_ACCESS_KEY_ID", id),
            ("AWS_SECRET_ACCESS_KEY", secret),
            ("AWS_REGION", REGION.into()),
            ("AWS_DEFAULT_REGION", REGION.into()),
            ("AWS_EC2_METADATA_DISABLED", "true".into()),
        ]
    }

    /// AWS requests the emulator served, by `service:Operation`.
    pub fn calls(&self) -> Value {
        self.request("GET", "/_rekey/calls", None)
    }

    pub fn reset_calls(&self) {
        self.request("POST", "/_rekey/calls/reset", Some(&serde_json::json!({})));
    }

    /// The next `count` requests of `operation` (`iam:ListUsers`, or `*`) fail
    /// with `code` (`Throttling`, `AccessDenied`, ...).
    pub fn inject_fault(&self, operation: &str, code: &str, status: u16, count: u32) {
        self.add_fault(&serde_json::json!({
            "operation": operation, "code": code, "status": status,
            "message": format!("injected {code}"), "count": count,
        }));
    }

    /// Queues any fault the harness knows (`kind` error, slow, drop, lost
    /// or garbled; see the harness README): `fault` is the request body.
    pub fn add_fault(&self, fault: &Value) {
        self.request("POST", "/_rekey/faults", Some(fault));
    }

    /// The next `count` pages of IAM's paged user lists come back empty,
    /// with a marker to the same place, as IAM may answer.
    pub fn empty_iam_pages(&self, count: u32) {
        self.request("POST", "/_rekey/iam/empty-pages", Some(&serde_json::json!({"count": count})));
    }

    /// The member account's role gets `document` as its only inline
    /// policy (with IAM authorization on, it allows nothing without one).
    pub fn set_role_policy(&self, account: &str, document: &Value) {
        self.request("POST", &format!("/_rekey/accounts/{account}/role-policy"), Some(&serde_json::json!({"document": document})));
    }

    /// Like [`Emulator::inject_fault`], for requests acting in `account` only.
    pub fn inject_fault_in(&self, account: &str, operation: &str, code: &str, status: u16, count: u32) {
        self.add_fault(&serde_json::json!({
            "operation": operation, "code": code, "status": status,
            "message": format!("injected {code}"), "count": count, "account": account,
        }));
    }

    /// Requests the emulator served that acted in `account`.
    pub fn calls_in(&self, account: &str) -> Value {
        self.request("GET", &format!("/_rekey/calls?account={account}"), None)
    }

    /// Adds CloudTrail history for a key: `{"service", "event_name", "ago",
    /// "source_ip", "user_agent", "count", "every", "region"}`.
    pub fn add_trail_events(&self, access_key_id: &str, series: &Value) {
        let mut body = series.clone();
        body["access_key_id"] = Value::from(access_key_id);
        self.request("POST", "/_rekey/cloudtrail/events", Some(&body));
    }

    /// The CloudTrail events of a key, newest first.
    pub fn trail_events(&self, access_key_id: &str) -> Vec<Value> {
        self.request("GET", &format!("/_rekey/cloudtrail/events?access_key_id={access_key_id}"), None)["events"].as_array().cloned().unwrap_or_default()
    }

    /// CloudTrail on or off (`AccessDeniedException`) in the default account.
    pub fn set_cloudtrail(&self, enabled: bool) {
        self.request("POST", "/_rekey/cloudtrail/enabled", Some(&serde_json::json!({"enabled": enabled})));
    }

    /// LookupEvents allowed per window (default 2 a second).
    pub fn set_trail_rate_limit(&self, limit: u32, window_seconds: f64) {
        self.request("POST", "/_rekey/cloudtrail/rate-limit", Some(&serde_json::json!({"limit": limit, "window_seconds": window_seconds})));
    }

    pub fn trail_stats(&self) -> Value {
        self.request("GET", "/_rekey/cloudtrail/stats", None)
    }

    /// Drops every fault not yet served.
    pub fn clear_faults(&self) {
        self.request("DELETE", "/_rekey/faults", None);
    }

    /// The user's keys as the emulator holds them (no secrets).
    pub fn keys(&self, user: &str) -> Value {
        self.request("GET", &format!("/_rekey/keys?user={user}"), None)["keys"].clone()
    }

    /// The user's keys in `account`.
    pub fn keys_in(&self, user: &str, account: &str) -> Value {
        self.request("GET", &format!("/_rekey/keys?user={user}&account={account}"), None)["keys"].clone()
    }

    /// Back-dates or changes a key: `{"created_at", "status", "last_used"}`.
    pub fn set_key(&self, access_key_id: &str, change: &Value) {
        self.request("POST", &format!("/_rekey/keys/{access_key_id}"), Some(change));
    }

    /// Drops the credential report IAM would hand back (as if it were over
    /// 4 hours old): the next `GenerateCredentialReport` starts a new one.
    pub fn expire_credential_report(&self) {
        self.request("POST", "/_rekey/credential-report/expire", Some(&serde_json::json!({})));
    }

    /// Whether the credential report quotes fields with `,` (RFC 4180, the
    /// default) or writes them bare, as moto does.
    pub fn quote_credential_report(&self, quoted: bool) {
        self.request("POST", "/_rekey/credential-report/style", Some(&serde_json::json!({"quoted": quoted})));
    }

    /// Writes `value` as-is into `column` of `user`'s row of every report
    /// served from now on (a row rekey cannot read, for example).
    pub fn override_report_cell(&self, user: &str, column: &str, value: &str) {
        let body = serde_json::json!({"user": user, "column": column, "value": value});
        self.request("POST", "/_rekey/credential-report/override", Some(&body));
    }

    /// Gives the root user an active access key in reports generated from now on.
    pub fn set_root_access_key(&self, active: bool) {
        self.request("POST", "/_rekey/root", Some(&serde_json::json!({"access_key_active": active})));
    }

    /// Every Security Hub finding of the default account, with each one's
    /// `note_history`.
    pub fn findings(&self) -> Vec<Value> {
        self.request("GET", "/_rekey/securityhub/findings", None)["findings"].as_array().cloned().unwrap_or_default()
    }

    /// Security Hub's findings in another account of the organization.
    pub fn findings_in(&self, account: &str) -> Vec<Value> {
        self.request("GET", &format!("/_rekey/securityhub/findings?account={account}"), None)["findings"].as_array().cloned().unwrap_or_default()
    }

    /// Security Hub evaluates IAM.3 again from the users' keys now (or at `as_of`).
    pub fn evaluate_findings(&self, as_of: Option<&str>) -> Value {
        let body = as_of.map_or(serde_json::json!({}), |t| serde_json::json!({"as_of": t}));
        self.request("POST", "/_rekey/securityhub/evaluate", Some(&body))
    }

    /// Turns Security Hub on or off in the default account.
    pub fn set_security_hub(&self, enabled: bool) {
        self.request("POST", "/_rekey/securityhub/enabled", Some(&serde_json::json!({"enabled": enabled})));
    }

    /// The next `count` BatchUpdateFindings that include `user`'s finding
    /// leave it unprocessed.
    pub fn leave_unprocessed(&self, user: &str, count: u32) {
        self.request("POST", "/_rekey/securityhub/unprocessed", Some(&serde_json::json!({"user": user, "count": count})));
    }

    /// Security Hub's request counters (batch sizes, imports, throttling).
    pub fn security_hub_stats(&self) -> Value {
        self.request("GET", "/_rekey/securityhub/stats", None)
    }

    /// Every message published to an SNS topic.
    pub fn sns_messages(&self, topic: &str) -> Vec<Value> {
        self.request("GET", &format!("/_rekey/sns/messages?topic={topic}"), None)["messages"].as_array().cloned().unwrap_or_default()
    }

    /// One harness request; panics unless it answers 2xx.
    fn request(&self, method: &str, path: &str, body: Option<&Value>) -> Value {
        let host = self.endpoint.trim_start_matches("http://");
        let mut stream = TcpStream::connect(host).expect("connect to harness");
        stream.set_read_timeout(Some(Duration::from_secs(30))).expect("timeout");
        let body = body.map(Value::to_string).unwrap_or_default();
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .expect("send to harness");
        let mut answer = String::new();
        stream.read_to_string(&mut answer).expect("read harness answer");
        let (head, payload) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
        let status: u16 = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
        assert!((200..300).contains(&status), "harness {method} {path} answered {status}: {payload}");
        serde_json::from_str(payload).unwrap_or(Value::Null)
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        // By PID, never by name: other tests' emulators keep running.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The real interpreter, not a pyenv shim, so that killing the child's PID
/// stops the server itself. `REKEY_PYTHON` overrides.
pub fn python() -> &'static Path {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON.get_or_init(|| {
        if let Some(p) = std::env::var_os("REKEY_PYTHON") {
            return PathBuf::from(p);
        }
        let out = Command::new("python3")
            .args(["-c", "import sys; print(sys.executable)"])
            .output()
            .expect("python3 must be installed (see README)");
        PathBuf::from(String::from_utf8(out.stdout).expect("utf-8 path").trim())
    })
}
