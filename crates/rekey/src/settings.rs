//! Settings: what the command line, the environment (through clap's `env`),
//! `rekey.toml` and the built-in defaults say, merged in that order of
//! precedence. The file's schema is SPEC section 4, validated strictly:
//! unknown keys, wrong types and impossible values stop rekey before it
//! calls AWS, with the file, line and key in the message.

use crate::cli::{GlobalArgs, PolicyArgs};
use anyhow::{bail, Context};
use rekey_aws::AwsSettings;
use rekey_core::exempt::{ExemptRule, ExemptRules, Selector};
use rekey_core::owners::OwnersMap;
use rekey_core::reminder::Cadence;
use rekey_core::target::Target;
use rekey_core::{Duration, Policy};
use rekey_store::Location;
use serde::Deserialize;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // sections read by the commands that arrive later
pub struct ConfigFile {
    #[serde(default)]
    pub aws: AwsSection,
    #[serde(default)]
    pub policy: PolicySection,
    #[serde(default)]
    pub rotation: RotationSection,
    #[serde(default, rename = "target")]
    pub targets: Vec<Target>,
    #[serde(default)]
    pub securityhub: SecurityHubSection,
    #[serde(default)]
    pub notify: NotifySection,
    #[serde(default)]
    pub org: OrgSection,
    #[serde(default)]
    pub cloudtrail: CloudTrailSection,
    #[serde(default)]
    pub state: StateSection,
    /// `[[exempt]]`: users whose keys count as SUPPRESSED, by policy.
    #[serde(default, rename = "exempt", deserialize_with = "exempt_rules")]
    pub exempt: ExemptRules,
}

/// One `[[exempt]]` entry as written; [`exempt_rules`] checks it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExemptEntry {
    reason: Option<String>,
    group: Option<String>,
    tag: Option<TagSelector>,
    accounts: Option<Vec<String>>,
    ous: Option<Vec<String>>,
    until: Option<TimeText>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TagSelector {
    key: String,
    value: String,
}

/// A time quoted (`"2027-03-31T00:00:00Z"`) or as a TOML date-time.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum TimeText {
    Text(String),
    Toml(toml::value::Datetime),
}

/// Every `[[exempt]]` entry, each checked; an error names the entry
/// (`[[exempt]] #2`, counted from 1) and what is wrong with it.
fn exempt_rules<'de, D: serde::Deserializer<'de>>(d: D) -> Result<ExemptRules, D::Error> {
    struct Entries;
    impl<'de> serde::de::Visitor<'de> for Entries {
        type Value = ExemptRules;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("[[exempt]] tables")
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<ExemptRules, A::Error> {
            let mut rules = Vec::new();
            loop {
                let n = rules.len() + 1;
                let entry = seq.next_element::<ExemptEntry>().map_err(|e| serde::de::Error::custom(format!("[[exempt]] #{n}: {e}")))?;
                let Some(entry) = entry else { break };
                rules.push(exempt_rule(entry).map_err(|e| serde::de::Error::custom(format!("[[exempt]] #{n}: {e}")))?);
            }
            Ok(ExemptRules(rules))
        }
    }
    d.deserialize_seq(Entries)
}

fn exempt_rule(entry: ExemptEntry) -> Result<ExemptRule, String> {
    let reason = entry.reason.filter(|r| !r.trim().is_empty()).ok_or("needs a reason (reason = \"...\"), saying why these users are exempt")?;
    let mut selectors = Vec::new();
    if let Some(group) = entry.group {
        if !(1..=128).contains(&group.len()) || !group.chars().all(|c| c.is_ascii_alphanumeric() || "+=,.@_-".contains(c)) {
            return Err(format!("group {group:?} is not an IAM group name (1 to 128 letters, digits and +=,.@_-)"));
        }
        selectors.push(Selector::Group(group));
    }
    if let Some(TagSelector { key, value }) = entry.tag {
        if !(1..=128).contains(&key.chars().count()) || value.chars().count() > 256 {
            return Err("tag key must be 1 to 128 characters and its value at most 256".into());
        }
        selectors.push(Selector::Tag { key, value });
    }
    if let Some(accounts) = entry.accounts {
        if accounts.is_empty() {
            return Err("accounts is empty: list the 12-digit account ids".into());
        }
        let ids = accounts.iter().map(|a| a.parse::<rekey_core::AccountId>().map_err(|e| format!("accounts: {e}"))).collect::<Result<_, _>>()?;
        selectors.push(Selector::Accounts(ids));
    }
    if let Some(ous) = entry.ous {
        if ous.is_empty() {
            return Err("ous is empty: list organizational unit ids (ou-abcd-12345678)".into());
        }
        if let Some(bad) = ous.iter().find(|o| !is_ou_or_root_id(o)) {
            return Err(format!("ous: {bad:?} is not an organizational unit id (ou-abcd-12345678) or root id (r-abcd)"));
        }
        selectors.push(Selector::Ous(ous));
    }
    if selectors.len() != 1 {
        let what = if selectors.is_empty() { "no selector" } else { "more than one selector" };
        return Err(format!("has {what}: give exactly one of group, tag, accounts or ous"));
    }
    let until = match entry.until {
        None => None,
        Some(TimeText::Text(t)) => Some(parse_until(&t)?),
        Some(TimeText::Toml(t)) => Some(parse_until(&t.to_string())?),
    };
    Ok(ExemptRule { reason, selector: selectors.remove(0), until })
}

fn parse_until(text: &str) -> Result<jiff::Timestamp, String> {
    text.parse().map_err(|e| format!("until {text:?} is not an RFC 3339 time with an offset (2027-03-31T00:00:00Z): {e}"))
}

/// Organizations' ids: `ou-` root part `-` 8 to 32 more, or a root `r-...`.
fn is_ou_or_root_id(id: &str) -> bool {
    let alnum = |s: &str, min: usize, max: usize| (min..=max).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    match id.split('-').collect::<Vec<_>>()[..] {
        ["ou", root, rest] => alnum(root, 4, 32) && alnum(rest, 8, 32),
        ["r", root] => alnum(root, 4, 32),
        _ => false,
    }
}

/// `[cloudtrail]`: where to look for a key's events.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CloudTrailSection {
    /// Regions whose event history is read [default: the client's region
    /// and us-east-1, where IAM and STS events land].
    pub regions: Option<Vec<String>>,
}

impl CloudTrailSection {
    /// The configured regions, else the client's and us-east-1 (once).
    pub fn regions(&self, client_region: &str) -> Vec<String> {
        match &self.regions {
            Some(regions) => regions.clone(),
            None if client_region == "us-east-1" => vec![client_region.to_owned()],
            None => vec![client_region.to_owned(), "us-east-1".to_owned()],
        }
    }
}

/// `[state]`: where rotations and the audit log live.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateSection {
    #[serde(default)]
    pub backend: StateBackend,
    /// The SQLite file (`~` is the home directory).
    pub path: Option<PathBuf>,
    /// The DynamoDB table (default `rekey-state`).
    pub table: Option<String>,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StateBackend {
    #[default]
    Sqlite,
    Dynamodb,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AwsSection {
    pub profile: Option<String>,
    pub region: Option<String>,
    #[serde(default, deserialize_with = "endpoint")]
    pub endpoint_url: Option<String>,
    pub request_timeout: Option<Duration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicySection {
    pub max_age: Option<Duration>,
    pub warn_within: Option<Duration>,
    /// An active key unused this long is retired, not rotated.
    pub unused_after: Option<Duration>,
    #[serde(default, deserialize_with = "tag_names")]
    pub owner_tags: Option<Vec<String>>,
    /// Owners of untagged users and owners' contacts (relative to rekey.toml).
    pub owners_file: Option<PathBuf>,
}

/// `[securityhub]`: whether exemptions, notices and rotations are mirrored
/// to the users' IAM.3 findings, and where the findings are.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecurityHubSection {
    #[serde(default = "enabled")]
    pub enabled: bool,
    /// The region whose Security Hub holds the findings [default: the client's].
    pub region: Option<String>,
}

impl Default for SecurityHubSection {
    fn default() -> Self {
        SecurityHubSection { enabled: true, region: None }
    }
}

fn enabled() -> bool {
    true
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RotationSection {
    pub wait_unused: Option<Duration>,
    pub last_used_lag: Option<Duration>,
    pub drain_timeout: Option<Duration>,
    pub grace: Option<Duration>,
    /// Bounded: a step holds the rotation's lease while it verifies.
    #[serde(default, deserialize_with = "verify_timeout")]
    pub verify_timeout: Option<Duration>,
    pub retry_after: Option<Duration>,
    pub last_used_margin: Option<Duration>,
    /// Due rotations `rekey run` advances at once, each under its own lease.
    pub concurrency: Option<NonZeroUsize>,
}

/// The longest `verify_timeout`: an application that needs longer to
/// reload is better checked by a `manual` verifier.
const MAX_VERIFY_TIMEOUT: Duration = Duration::from_secs(30 * 60);

fn verify_timeout<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    let t = Duration::deserialize(d)?;
    if t > MAX_VERIFY_TIMEOUT || t == Duration::from_secs(0) {
        return Err(serde::de::Error::custom(format!("must be more than 0s and at most {MAX_VERIFY_TIMEOUT}")));
    }
    Ok(Some(t))
}

/// `[notify]`: where owner notices go (any of the three), and how long
/// before the same notice is sent again.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifySection {
    pub sns_topic_arn: Option<String>,
    #[serde(default, deserialize_with = "webhook")]
    pub webhook_url: Option<String>,
    pub out_dir: Option<PathBuf>,
    pub resend_after: Option<Duration>,
    /// Reminders this long before a key fails (`rekey run` sends them).
    pub remind: Option<Vec<Duration>>,
    /// After a key failed, a reminder this often.
    pub overdue_every: Option<Duration>,
    /// At most one reminder digest per owner this often (default 1d).
    pub min_interval: Option<Duration>,
}

impl NotifySection {
    /// Whether any channel is configured.
    pub fn has_channel(&self) -> bool {
        self.sns_topic_arn.is_some() || self.webhook_url.is_some() || self.out_dir.is_some()
    }

    /// The reminder cadence, checked against `max_age`; `None` without
    /// `remind`. The error names the key.
    pub fn cadence(&self, max_age: Duration) -> Result<Option<Cadence>, String> {
        let Some(remind) = &self.remind else {
            return match (self.overdue_every, self.min_interval) {
                (None, None) => Ok(None),
                _ => Err("overdue_every and min_interval pace reminders: set remind too (like remind = [\"14d\", \"7d\", \"1d\"])".to_owned()),
            };
        };
        let cadence = Cadence::new(remind, self.overdue_every, self.min_interval, max_age)?;
        if !self.has_channel() {
            return Err("remind needs a channel: set sns_topic_arn, webhook_url or out_dir".to_owned());
        }
        Ok(Some(cadence))
    }
}

fn webhook<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let url = String::deserialize(d)?;
    rekey_engine::http::parse(&url).map_err(serde::de::Error::custom)?;
    Ok(Some(url))
}

/// `[org]`: how rekey reaches other accounts.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrgSection {
    /// The role assumed in every account but the caller's own.
    pub role_name: Option<String>,
    /// Accounts scanned at once (default 16).
    pub concurrency: Option<NonZeroUsize>,
    /// The `ExternalId` the roles' trust policies require, if any.
    pub external_id: Option<String>,
    /// The session name CloudTrail records for rekey's calls (default `rekey`).
    pub session_name: Option<String>,
}

const DEFAULT_OWNER_TAGS: [&str; 3] = ["Owner", "owner", "Team"];

/// The DynamoDB table `[state] backend = "dynamodb"` uses by default.
pub const DEFAULT_TABLE: &str = "rekey-state";

/// `[rotation] concurrency` by default.
pub const DEFAULT_ROTATION_CONCURRENCY: usize = 8;

/// Per-account request concurrency of `--source api` and of key/tag lookups.
pub const DEFAULT_CONCURRENCY: usize = 16;

/// The merged settings every command starts from.
#[derive(Debug)]
pub struct Settings {
    pub aws: AwsSettings,
    pub policy: Policy,
    pub owner_tags: Vec<String>,
    pub owners_file: Option<PathBuf>,
    /// Where rotations and the audit log live: `--state`, else `[state]`.
    pub state: Location,
    /// Who is acting, for the audit log: `--by`, else the OS user.
    pub actor: String,
    /// `[notify] remind`, checked: what `rekey run` reminds owners of.
    pub reminders: Option<Cadence>,
    pub file: ConfigFile,
}

impl Settings {
    /// Every setting resolved once, for every command: flag, else its
    /// environment variable (clap reads both), else rekey.toml, else the default.
    pub fn load(global: &GlobalArgs, flags: &PolicyArgs) -> anyhow::Result<Settings> {
        let path = config_path(global.config.as_deref())?;
        let file = match &path {
            Some(path) => ConfigFile::read(path)?,
            None => ConfigFile::default(),
        };
        // Relative to rekey.toml, wherever rekey runs from.
        let config_dir = path.as_deref().and_then(Path::parent).unwrap_or(Path::new(""));
        let owners_file = file.policy.owners_file.as_deref().map(|f| config_dir.join(expand_home(f)));
        let aws = AwsSettings {
            profile: global.profile.clone().or_else(|| file.aws.profile.clone()),
            region: global.region.clone().or_else(|| file.aws.region.clone()),
            endpoint_url: global.endpoint_url.clone().or_else(|| file.aws.endpoint_url.clone()),
            request_timeout: match file.aws.request_timeout {
                Some(t) if t == Duration::ZERO => bail!("[aws] request_timeout must be at least 1s"),
                t => t.map(|t| std::time::Duration::from_secs(t.as_secs())),
            },
        };
        let defaults = Policy::default();
        let policy = Policy {
            max_age: flags.max_age.or(file.policy.max_age).unwrap_or(defaults.max_age),
            warn_within: flags.warn_within.or(file.policy.warn_within).unwrap_or(defaults.warn_within),
            unused_after: file.policy.unused_after.unwrap_or(defaults.unused_after),
        };
        let owner_tags = file
            .policy
            .owner_tags
            .clone()
            .unwrap_or_else(|| DEFAULT_OWNER_TAGS.map(String::from).to_vec());
        let state = match (global.state.clone(), file.state.backend) {
            (Some(flag), _) => flag,
            (None, StateBackend::Dynamodb) => {
                let table = file.state.table.clone().unwrap_or_else(|| DEFAULT_TABLE.to_owned());
                format!("dynamodb:{table}").parse().map_err(|e: String| anyhow::anyhow!("[state] table: {e}"))?
            }
            (None, StateBackend::Sqlite) => match file.state.path.as_deref().map(expand_home) {
                Some(path) => Location::Sqlite(path),
                None => Location::Sqlite(
                    dirs::state_dir()
                        .or_else(dirs::data_local_dir)
                        .ok_or_else(|| anyhow::anyhow!("no user state directory; pass --state FILE"))?
                        .join("rekey")
                        .join("state.db"),
                ),
            },
        };
        let actor = global.by.clone().unwrap_or_else(os_user);
        let reminders = file.notify.cadence(policy.max_age).map_err(|e| {
            let path = path.as_deref().map(|p| p.display().to_string()).unwrap_or_default();
            anyhow::anyhow!("invalid config file {path}: [notify] {e}")
        })?;
        Ok(Settings { aws, policy, owner_tags, owners_file, state, actor, reminders, file })
    }

    /// Whether the state store exists: a scan or a dry run never creates
    /// a SQLite file (a DynamoDB table is made by `rekey state init`).
    pub fn state_exists(&self) -> bool {
        match &self.state {
            Location::Sqlite(path) => path.is_file(),
            Location::Dynamo { .. } => true,
        }
    }

    /// Due rotations advanced at once by `rekey run`.
    pub fn rotation_concurrency(&self) -> usize {
        self.file.rotation.concurrency.map_or(DEFAULT_ROTATION_CONCURRENCY, NonZeroUsize::get)
    }

    /// Accounts read at once by `--org`, `--accounts` and `--consumers`.
    pub fn account_concurrency(&self) -> usize {
        self.file.org.concurrency.map_or(16, NonZeroUsize::get)
    }

    /// The owners file, read and checked, if configured.
    pub fn owners_map(&self) -> anyhow::Result<Option<OwnersMap>> {
        let Some(path) = &self.owners_file else { return Ok(None) };
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read policy.owners_file {}", path.display()))?;
        let map = OwnersMap::parse(&text).map_err(|e| anyhow::anyhow!("invalid owners file {}: {e}", path.display()))?;
        Ok(Some(map))
    }

    /// `[rotation]` over the built-in defaults.
    pub fn timings(&self) -> rekey_engine::plan::Timings {
        let d = rekey_engine::plan::Timings::default();
        let r = &self.file.rotation;
        rekey_engine::plan::Timings {
            wait_unused: r.wait_unused.unwrap_or(d.wait_unused),
            last_used_lag: r.last_used_lag.unwrap_or(d.last_used_lag),
            drain_timeout: r.drain_timeout.unwrap_or(d.drain_timeout),
            grace: r.grace.unwrap_or(d.grace),
            verify_timeout: r.verify_timeout.unwrap_or(d.verify_timeout),
            retry_after: r.retry_after.unwrap_or(d.retry_after),
            last_used_margin: r.last_used_margin.unwrap_or(d.last_used_margin),
        }
    }
}

/// `~/x` as a path under the home directory.
fn expand_home(path: &std::path::Path) -> PathBuf {
    match (path.strip_prefix("~"), dirs::home_dir()) {
        (Ok(rest), Some(home)) => home.join(rest),
        _ => path.to_owned(),
    }
}

/// The OS user (or its uid).
fn os_user() -> String {
    use std::os::unix::fs::MetadataExt;
    std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| match std::fs::metadata("/proc/self") {
            Ok(m) => format!("uid {}", m.uid()),
            Err(_) => "unknown".to_owned(),
        })
}

/// An explicit `--config` must exist; the implicit ones are optional.
fn config_path(explicit: Option<&Path>) -> anyhow::Result<Option<PathBuf>> {
    if let Some(path) = explicit {
        if !path.is_file() {
            bail!("config file {} does not exist; fix --config or REKEY_CONFIG", path.display());
        }
        return Ok(Some(path.to_owned()));
    }
    let local = PathBuf::from("rekey.toml");
    if local.is_file() {
        return Ok(Some(local));
    }
    Ok(dirs::config_dir().map(|d| d.join("rekey").join("rekey.toml")).filter(|p| p.is_file()))
}

impl ConfigFile {
    pub fn read(path: &Path) -> anyhow::Result<ConfigFile> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config file {}", path.display()))?;
        ConfigFile::parse(&text).map_err(|e| anyhow::anyhow!("invalid config file {}: {e}", path.display()))
    }

    /// toml's errors name the line, column and key, and quote the line.
    pub fn parse(text: &str) -> Result<ConfigFile, toml::de::Error> {
        toml::from_str(text)
    }
}

fn endpoint<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let url = String::deserialize(d)?;
    crate::cli::parse_endpoint(&url).map(Some).map_err(serde::de::Error::custom)
}

fn tag_names<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
    let tags = Vec::<String>::deserialize(d)?;
    if tags.iter().any(|t| t.trim().is_empty()) {
        return Err(serde::de::Error::custom("tag names cannot be empty"));
    }
    Ok(Some(tags))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rekey_core::target::{Sink, Verifier};

    /// Settings as `rekey ARGS` resolves them with rekey.toml holding `file`.
    fn resolved(file: &str, args: &[&str]) -> Settings {
        use clap::Parser;
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("rekey.toml");
        std::fs::write(&config, file).unwrap();
        let argv = ["rekey", "--config", config.to_str().unwrap()].into_iter().chain(args.iter().copied());
        let cli = crate::cli::Cli::try_parse_from(argv).unwrap();
        Settings::load(&cli.global, cli.command.policy().unwrap_or(&PolicyArgs::default())).unwrap()
    }

    /// Flag over rekey.toml over the default, for every setting, resolved
    /// once for every command (the environment is clap's `env` of each
    /// flag: see the next test).
    #[test]
    fn every_setting_is_flag_then_file_then_default() {
        let file = "[policy]\nmax_age = \"30d\"\nwarn_within = \"3d\"\nunused_after = \"45d\"\n[state]\npath = \"/from/file.db\"\n";
        let days = |d: i64| Duration::from_days(d as u64);
        for command in ["scan", "owners", "notify", "findings"] {
            let default = resolved("", &[command]);
            assert_eq!((default.policy.max_age, default.policy.warn_within), (days(90), days(14)), "{command}: default");
            let from_file = resolved(file, &[command]);
            assert_eq!((from_file.policy.max_age, from_file.policy.warn_within), (days(30), days(3)), "{command}: file");
            let flagged = resolved(file, &[command, "--max-age", "35d", "--warn-within", "5d"]);
            assert_eq!((flagged.policy.max_age, flagged.policy.warn_within), (days(35), days(5)), "{command}: flag");
            assert_eq!((default.policy.unused_after, from_file.policy.unused_after), (days(90), days(45)), "{command}: unused_after (no flag)");
        }
        assert_eq!(resolved(file, &["status"]).state, Location::Sqlite("/from/file.db".into()));
        assert_eq!(resolved(file, &["--state", "/flag.db", "status"]).state, Location::Sqlite("/flag.db".into()));
        assert_eq!(resolved("", &["--by", "alice", "status"]).actor, "alice");
    }

    /// Every command that evaluates keys takes the same policy flags, with
    /// the same environment variables.
    #[test]
    fn every_evaluating_command_reads_the_policy_variables() {
        use clap::CommandFactory;
        let cli = crate::cli::Cli::command();
        for name in ["scan", "owners", "notify", "findings"] {
            let command = cli.find_subcommand(name).unwrap();
            for (flag, variable) in [("max_age", "REKEY_MAX_AGE"), ("warn_within", "REKEY_WARN_WITHIN")] {
                let arg = command.get_arguments().find(|a| a.get_id() == flag).unwrap_or_else(|| panic!("{name} has no --{flag}"));
                assert_eq!(arg.get_env().and_then(|e| e.to_str()), Some(variable), "{name} --{flag}");
            }
        }
    }

    const FULL: &str = r#"
[aws]
profile = "security-admin"
region = "us-east-1"
endpoint_url = "http://127.0.0.1:4566"

[policy]
max_age = "90d"
warn_within = "14d"
owner_tags = ["Owner", "owner", "Team"]

[rotation]
wait_unused = "24h"
last_used_lag = "4h"
drain_timeout = "14d"
grace = "7d"
verify_timeout = "2m"

[[target]]
user = "ci-deployer"
account = "123456789012"
deliver = [
  { type = "credentials-file", path = "/etc/app/aws/credentials", profile = "default" },
  { type = "secretsmanager", secret_id = "prod/ci-deployer/aws" },
  { type = "ssm", name = "/prod/ci-deployer/aws" },
  { type = "exec", command = ["./push-to-ci.sh"] },
  { type = "manual" },
]
verify = [
  { type = "sts" },
  { type = "exec", command = ["aws", "sts", "get-caller-identity", "--profile", "app"] },
  { type = "http", url = "http://127.0.0.1:8080/health" },
  { type = "manual" },
]

[notify]
sns_topic_arn = "arn:aws:sns:us-east-1:123456789012:key-owners"
webhook_url = "https://hooks.example.com/x"
out_dir = "./notices"

[org]
role_name = "OrganizationAccountAccessRole"
concurrency = 16
"#;

    #[test]
    fn the_spec_example_parses_whole() {
        let c = ConfigFile::parse(FULL).unwrap();
        assert_eq!(c.aws.endpoint_url.as_deref(), Some("http://127.0.0.1:4566"));
        assert_eq!(c.policy.max_age, Some(Duration::from_days(90)));
        assert_eq!(c.rotation.verify_timeout, Some(Duration::from_secs(120)));
        let t = &c.targets[0];
        assert_eq!(t.user.as_str(), "ci-deployer");
        assert_eq!(t.deliver.len(), 5);
        assert!(matches!(&t.deliver[1], Sink::Secretsmanager { id_field, .. } if id_field == "AccessKeyId"));
        assert_eq!(t.verify[0], Verifier::Sts {});
        assert_eq!(c.org.concurrency.map(NonZeroUsize::get), Some(16));
    }

    fn error_of(text: &str) -> String {
        ConfigFile::parse(text).unwrap_err().to_string()
    }

    /// The error `rekey ARGS` stops with when rekey.toml holds `file`.
    fn load_error(file: &str, args: &[&str]) -> String {
        use clap::Parser;
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("rekey.toml");
        std::fs::write(&config, file).unwrap();
        let argv = ["rekey", "--config", config.to_str().unwrap()].into_iter().chain(args.iter().copied());
        let cli = crate::cli::Cli::try_parse_from(argv).unwrap();
        Settings::load(&cli.global, cli.command.policy().unwrap_or(&PolicyArgs::default())).unwrap_err().to_string()
    }

    #[test]
    fn reminders_are_checked_when_the_config_is_read() {
        let channel = "webhook_url = \"https://hooks.example.com/x\"\n";
        let ok = resolved(&format!("[notify]\n{channel}remind = [\"7d\", \"14d\", \"1d\"]\noverdue_every = \"7d\"\n"), &["run"]);
        let cadence = ok.reminders.expect("configured");
        assert_eq!(cadence.min_interval(), Duration::from_days(1), "the default");
        assert!(resolved(&format!("[notify]\n{channel}"), &["run"]).reminders.is_none(), "no remind, no reminders");
        for (file, args, words) in [
            (format!("[notify]\n{channel}remind = [\"90d\"]\n"), &["run"][..], "[notify] remind: 90d is not less than [policy] max_age 90d"),
            (format!("[policy]\nmax_age = \"30d\"\n[notify]\n{channel}remind = [\"30d\"]\n"), &["run"], "max_age 30d"),
            (format!("[notify]\n{channel}remind = [\"14d\"]\n"), &["notify", "--max-age", "10d"], "14d is not less than"),
            (format!("[notify]\n{channel}remind = [\"0s\"]\n"), &["run"], "remind: 0s"),
            (format!("[notify]\n{channel}remind = []\n"), &["run"], "remind is empty"),
            (format!("[notify]\n{channel}remind = [\"7d\"]\noverdue_every = \"0s\"\n"), &["run"], "overdue_every must be more than 0s"),
            (format!("[notify]\n{channel}remind = [\"7d\"]\nmin_interval = \"0s\"\n"), &["run"], "min_interval must be more than 0s"),
            (format!("[notify]\n{channel}overdue_every = \"7d\"\n"), &["run"], "set remind too"),
            ("[notify]\nremind = [\"7d\"]\n".to_owned(), &["run"], "remind needs a channel"),
        ] {
            let e = load_error(&file, args);
            assert!(e.starts_with("invalid config file ") && e.contains(words), "{file}: {e}");
        }
        let e = error_of("[notify]\nremind = [\"-7d\"]\n");
        assert!(e.contains("line 2") && e.contains("negative"), "{e}");
        let e = error_of("[notify]\nremind = \"7d\"\n");
        assert!(e.contains("line 2") && e.contains("remind"), "{e}");
    }

    #[test]
    fn unknown_keys_are_named_with_their_line() {
        let e = error_of("[policy]\nmax_age = \"90d\"\nmax_agee = \"1d\"\n");
        assert!(e.contains("line 3") && e.contains("max_agee"), "{e}");
        let e = error_of("[[target]]\nuser = \"u\"\ndeliver = [{ type = \"credentials-file\", path = \"/x\", profil = \"a\" }]\n");
        assert!(e.contains("line 3") && e.contains("profil"), "{e}");
        let e = error_of("[polcy]\n");
        assert!(e.contains("line 1") && e.contains("polcy"), "{e}");
    }

    #[test]
    fn impossible_values_are_rejected() {
        for (text, line, words) in [
            ("[rotation]\ngrace = \"-1d\"\n", "line 2", "negative"),
            ("[policy]\n\nmax_age = \"ninety days\"\n", "line 3", "invalid duration"),
            ("[policy]\nmax_age = 90\n", "line 2", "string"),
            ("[[target]]\nuser = \"u\"\ndeliver = []\n", "line 3", "at least one"),
            ("[[target]]\nuser = \"bad user\"\ndeliver = [{ type = \"manual\" }]\n", "line 2", "IAM user name"),
            ("[[target]]\nuser = \"u\"\naccount = \"12\"\ndeliver = [{ type = \"manual\" }]\n", "line 3", "account id"),
            ("[[target]]\nuser = \"u\"\ndeliver = [{ type = \"carrier-pigeon\" }]\n", "line 3", "carrier-pigeon"),
            ("[org]\nconcurrency = 0\n", "line 2", "concurrency"),
            ("[aws]\nendpoint_url = \"localhost:4566\"\n", "line 2", "http://"),
            ("[policy]\nowner_tags = [\"Owner\", \"\"]\n", "line 2", "empty"),
        ] {
            let e = error_of(text);
            assert!(e.contains(line) && e.contains(words), "{text:?} gave: {e}");
        }
    }

    const EXEMPT: &str = r#"
[[exempt]]
reason = "break-glass users, reviewed quarterly"
group = "KeyRotationExempt"
[[exempt]]
reason = "vendor appliance"
tag = { key = "rekey:exempt", value = "true" }
until = "2027-03-31T00:00:00Z"
[[exempt]]
reason = "sandbox accounts"
accounts = ["111111111111"]
[[exempt]]
reason = "lab OU"
ous = ["ou-abcd-12345678"]
until = 2027-01-01T00:00:00Z
"#;

    #[test]
    fn exempt_rules_parse_in_order() {
        let rules = ConfigFile::parse(EXEMPT).unwrap().exempt.0;
        assert_eq!(rules.len(), 4);
        assert_eq!(rules[0].selector, Selector::Group("KeyRotationExempt".into()));
        assert_eq!(rules[1].selector, Selector::Tag { key: "rekey:exempt".into(), value: "true".into() });
        assert_eq!(rules[1].until, Some("2027-03-31T00:00:00Z".parse().unwrap()));
        assert_eq!(rules[2].selector, Selector::Accounts(vec![rekey_core::AccountId::new("111111111111")]));
        assert_eq!(rules[3].selector, Selector::Ous(vec!["ou-abcd-12345678".into()]));
        assert_eq!(rules[3].until, Some("2027-01-01T00:00:00Z".parse().unwrap()), "a TOML date-time too");
        assert!(ConfigFile::parse("").unwrap().exempt.is_empty());
    }

    #[test]
    fn bad_exempt_entries_are_named_by_number() {
        let ok = "[[exempt]]\nreason = \"fine\"\ngroup = \"g\"\n";
        for (entry, words) in [
            ("group = \"g\"\n", "needs a reason"),
            ("reason = \" \"\ngroup = \"g\"\n", "needs a reason"),
            ("reason = \"r\"\n", "no selector"),
            ("reason = \"r\"\ngroup = \"g\"\naccounts = [\"111111111111\"]\n", "more than one selector"),
            ("reason = \"r\"\naccounts = [\"11111111111\"]\n", "12 digits"),
            ("reason = \"r\"\naccounts = []\n", "accounts is empty"),
            ("reason = \"r\"\nous = [\"lab\"]\n", "organizational unit id"),
            ("reason = \"r\"\ngroup = \"has space\"\n", "IAM group name"),
            ("reason = \"r\"\ngroup = \"g\"\nuntil = \"next year\"\n", "RFC 3339"),
            ("reason = \"r\"\ngroup = \"g\"\nuntill = \"2027-01-01T00:00:00Z\"\n", "unknown field `untill`"),
            ("reason = \"r\"\ntag = { key = \"k\" }\n", "value"),
        ] {
            let text = format!("{ok}[[exempt]]\n{entry}");
            let e = error_of(&text);
            assert!(e.contains("[[exempt]] #2") && e.contains(words), "{entry:?} gave: {e}");
        }
    }

    #[test]
    fn a_target_needs_deliver() {
        let e = error_of("[[target]]\nuser = \"u\"\n");
        assert!(e.contains("deliver"), "{e}");
    }

    /// Property tests (`PROPTEST_CASES` cases each; bench/fuzz.sh runs 10⁶):
    /// any text, and near-valid configs built from edge values of the known
    /// keys, load or fail with a message, never panic; valid values are kept.
    mod properties {
        use super::*;
        use proptest::prelude::*;
        use proptest::sample::select;

        const DURATIONS: [&str; 10] = ["90d", "0s", "1d12h", "-1d", "", "5x", "250000000000s", "250000000001s", "99999999999999999999d", "30m"];
        const ACCOUNTS: [&str; 4] = ["123456789012", "12", "12345678901a", ""];
        const SINKS: [&str; 6] = [
            r#"{ type = "credentials-file", path = "/etc/app/credentials", profile = "app" }"#,
            r#"{ type = "ssm", name = "/aws/x" }"#,
            r#"{ type = "exec", command = [] }"#,
            r#"{ type = "manual" }"#,
            r#"{ type = "secretsmanager", secret_id = "" }"#,
            r#"{ type = "nope" }"#,
        ];
        const VERIFIERS: [&str; 4] = [r#"{ type = "sts" }"#, r#"{ type = "http", url = "ftp://x" }"#, r#"{ type = "exec", command = ["x"], env = { "A=B" = "c" } }"#, r#"{ type = "manual" }"#];

        /// A config: [policy] and [rotation] durations, [org] concurrency, one target.
        fn config() -> impl Strategy<Value = (String, String, String, i64, String, String)> {
            (select(DURATIONS.as_slice()), select(DURATIONS.as_slice()), select(DURATIONS.as_slice()), -1i64..40, select(ACCOUNTS.as_slice()), select(SINKS.as_slice()))
                .prop_map(|(a, b, c, n, acct, sink)| (a.into(), b.into(), c.into(), n, acct.into(), sink.into()))
        }

        proptest! {
            #[test]
            fn any_text_loads_or_fails_with_a_message(text in "(\\PC|\n|\\[|\\]|=|\"){0,200}") {
                if let Err(e) = ConfigFile::parse(&text) {
                    prop_assert!(!e.to_string().trim().is_empty());
                }
            }

            #[test]
            fn near_valid_configs_load_as_written_or_fail_with_a_message(
                (max_age, grace, verify, concurrency, account, sink) in config(),
                verifier in select(VERIFIERS.as_slice()),
                user in "[A-Za-z0-9+=,.@_ -]{0,66}",
            ) {
                let text = format!(
                    "[policy]\nmax_age = \"{max_age}\"\n[rotation]\ngrace = \"{grace}\"\nverify_timeout = \"{verify}\"\n[org]\nconcurrency = {concurrency}\n\n[[target]]\nuser = \"{user}\"\naccount = \"{account}\"\ndeliver = [{sink}]\nverify = [{verifier}]\n"
                );
                match ConfigFile::parse(&text) {
                    Err(e) => prop_assert!(!e.to_string().trim().is_empty()),
                    Ok(c) => {
                        prop_assert_eq!(c.policy.max_age, max_age.parse().ok());
                        prop_assert_eq!(c.rotation.grace, grace.parse().ok());
                        prop_assert_eq!(c.rotation.verify_timeout.map(|d| d.to_string()), verify.parse::<Duration>().ok().map(|d| d.to_string()));
                        prop_assert_eq!(c.org.concurrency.map(|n| n.get() as i64), Some(concurrency));
                        prop_assert_eq!(c.targets[0].user.as_str(), user.as_str());
                        prop_assert_eq!(c.targets[0].account.as_ref().map(|a| a.as_str()), Some(account.as_str()));
                    }
                }
            }
        }
    }
}
