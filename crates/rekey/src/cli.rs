//! Every command-line flag, in one place. Precedence of settings is
//! CLI > environment > rekey.toml > built-in default (see `settings`).

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};
use rekey_core::{Duration, UserName};
use std::path::PathBuf;

/// Find IAM access keys that fail Security Hub IAM.3 (older than 90 days)
/// and rotate them safely.
#[derive(Debug, Parser)]
#[command(name = "rekey", version, about, max_term_width = 100)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Parses the command line, or exits with clap's message.
pub fn parse() -> Cli {
    match Cli::try_parse() {
        Ok(cli) => cli,
        // clap counts a value from the environment as typed, so the usage
        // line of a missing-argument error would show AWS_REGION and the
        // like as `--region <REGION>`, as if required. The same parse
        // without environment fails the same way (no required flag reads
        // the environment) with the usage line of what was typed.
        Err(e) if e.kind() == clap::error::ErrorKind::MissingRequiredArgument => {
            fn without_env(cmd: clap::Command) -> clap::Command {
                cmd.mut_args(|a| a.env(None)).mut_subcommands(without_env)
            }
            match without_env(Cli::command()).try_get_matches() {
                Err(plain) if plain.kind() == e.kind() => plain.exit(),
                Ok(m) => Cli::from_arg_matches(&m).unwrap_or_else(|e| e.exit()),
                Err(_) => e.exit(),
            }
        }
        Err(e) => e.exit(),
    }
}

/// Flags every command takes; listed apart from a command's own in `--help`.
#[derive(Debug, Args)]
#[command(next_help_heading = "Global options")]
pub struct GlobalArgs {
    /// Config file [default: ./rekey.toml if present, else rekey/rekey.toml in the user config dir]
    #[arg(long, global = true, env = "REKEY_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// State store: a SQLite FILE (or sqlite:FILE), or dynamodb:TABLE [default: [state] in the config, else rekey/state.db in the user state dir]
    #[arg(long, global = true, env = "REKEY_STATE", value_name = "FILE", value_parser = state_location)]
    pub state: Option<rekey_store::Location>,

    /// AWS profile from the shared config files
    #[arg(long, global = true, env = "AWS_PROFILE", value_name = "NAME")]
    pub profile: Option<String>,

    /// AWS region [default: the profile's, else us-east-1]
    #[arg(long, global = true, env = "AWS_REGION", value_name = "REGION")]
    pub region: Option<String>,

    /// Send AWS requests to this endpoint (an emulator, a VPC endpoint)
    #[arg(long, global = true, env = "AWS_ENDPOINT_URL", value_name = "URL", value_parser = parse_endpoint)]
    pub endpoint_url: Option<String>,

    /// More detail on stderr: -v counts AWS calls, -vv logs them
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// Only errors on stderr
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,

    /// Never draw a progress bar
    #[arg(long, global = true)]
    pub no_progress: bool,

    /// How stderr reads: text for people, or json (one event per line, with each rotation's stage and result) for a scheduler's log
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "REKEY_LOG_FORMAT")]
    pub log_format: LogFormat,

    /// Who is acting, for the audit log [default: the OS user]
    #[arg(long, global = true, env = "REKEY_BY", value_name = "WHO")]
    pub by: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Evaluate access keys against IAM.3 and print them
    Scan(ScanArgs),
    /// Security Hub's IAM.3 findings, with each user's keys
    Findings(FindingsArgs),
    /// FAILED and WARNING keys by owner, with the choices each owner has
    Owners(OwnersArgs),
    /// Send each owner their list; mark their findings NOTIFIED
    Notify(NotifyArgs),
    /// Exempt users: their keys count as SUPPRESSED, in rekey and in Security Hub
    Suppress(SuppressArgs),
    /// End users' exemptions: their keys count again, their findings reopen
    Unsuppress(UnsuppressArgs),
    /// Who uses a user's keys, from CloudTrail: source, user agent, service, calls
    Consumers(ConsumersArgs),
    /// Roles to replace a user's keys, from CloudTrail: trust and permissions per consumer
    RolePlan(RolePlanArgs),
    /// Start a rotation of a user's key and advance it as far as it can go now
    Rotate(RotateArgs),
    /// Retire a key whose consumers moved to roles (or that nobody uses): drain, deactivate, verify, delete; no new key
    Retire(RetireArgs),
    /// Advance every rotation that is due
    Run(RunArgs),
    /// Rotations, their stage, and what each waits for
    Status(StatusArgs),
    /// Confirm what a blocked rotation waits for (a manual step, a resolved block)
    Confirm(ConfirmArgs),
    /// Undo a rotation: old key active, sinks restored, new key deleted
    Rollback(IdArgs),
    /// Cancel a rotation before its old key was touched, undoing what it did
    Abort(IdArgs),
    /// The audit log
    History(HistoryArgs),
    /// Print the least-privilege IAM policy for what rekey.toml configures
    Policy,
    /// The state store: create the DynamoDB table, copy state between backends
    #[command(subcommand)]
    State(StateCommand),
    /// Print shell completions: `rekey completions bash > /etc/bash_completion.d/rekey`
    Completions(CompletionsArgs),
    /// Print the man page (roff): `rekey man > ~/.local/share/man/man1/rekey.1`
    #[command(hide = true)]
    Man,
}

impl Command {
    /// The policy flags, for the commands that evaluate keys.
    pub fn policy(&self) -> Option<&PolicyArgs> {
        match self {
            Command::Scan(a) => Some(&a.policy),
            Command::Findings(a) => Some(&a.policy),
            Command::Owners(a) => Some(&a.policy),
            Command::Notify(a) => Some(&a.policy),
            _ => None,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum StateCommand {
    /// Create the DynamoDB state table, or check an existing one (idempotent)
    Init(StateInitArgs),
    /// Copy every rotation, audit event, exemption and notice into an empty store, verified by count and checksum
    Migrate(StateMigrateArgs),
}

#[derive(Debug, Args)]
pub struct StateInitArgs {
    /// The table [default: --state dynamodb:TABLE, else [state] table, else rekey-state]
    #[arg(long, value_name = "NAME")]
    pub table: Option<String>,

    /// Print the table as a CloudFormation template instead of creating it
    #[arg(long)]
    pub print: bool,
}

#[derive(Debug, Args)]
pub struct StateMigrateArgs {
    /// Where the state is now: sqlite:PATH or dynamodb:TABLE
    #[arg(long, value_name = "STORE")]
    pub from: rekey_store::Location,

    /// Where to copy it (must hold nothing yet): sqlite:PATH or dynamodb:TABLE
    #[arg(long, value_name = "STORE")]
    pub to: rekey_store::Location,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Args)]
pub struct RotateArgs {
    /// The IAM user whose key to rotate
    #[arg(long, value_name = "NAME")]
    pub user: UserName,

    /// The account the user is in [default: the credentials' own; another through org.role_name]
    #[arg(long, value_name = "ID")]
    pub account: Option<rekey_core::AccountId>,

    /// The key to rotate [default: the user's oldest active key]
    #[arg(long, value_name = "ID")]
    pub key: Option<String>,

    /// Where to deliver the new key, as in rekey.toml (repeatable), e.g.
    /// '{ type = "credentials-file", path = "/etc/app/credentials", profile = "app" }'
    #[arg(long, value_name = "TOML")]
    pub deliver: Vec<String>,

    /// How to check the application, as in rekey.toml (repeatable), e.g. '{ type = "sts" }'
    #[arg(long, value_name = "TOML")]
    pub verify: Vec<String>,

    /// The old key must stay unused this long after delivery [default: rotation.wait_unused, else 24h]
    #[arg(long, value_name = "DUR")]
    pub wait_unused: Option<Duration>,

    /// Keep the old key deactivated this long before deleting it [default: rotation.grace, else 7d]
    #[arg(long, value_name = "DUR")]
    pub grace: Option<Duration>,

    /// If the user's other key is inactive, delete it to free a key slot
    #[arg(long)]
    pub delete_inactive: bool,

    /// Print every AWS call and sink write the rotation would make, and change nothing
    #[arg(long)]
    pub dry_run: bool,

    /// Do not ask for confirmation
    #[arg(long, short)]
    pub yes: bool,

    /// Allow a manual sink to print the new secret although stdout is not a terminal
    #[arg(long)]
    pub reveal: bool,

    /// Rotate a user exempt by `rekey suppress` or an [[exempt]] rule anyway (the audit log records it)
    #[arg(long)]
    pub ignore_exemption: bool,

    /// `rekey retire`: no new key, no sinks (not a flag of `rotate`)
    #[arg(skip)]
    pub retire: bool,
}

#[derive(Debug, Args)]
pub struct RetireArgs {
    /// The IAM user whose key to retire
    #[arg(long, value_name = "NAME")]
    pub user: UserName,

    /// The account the user is in [default: the credentials' own; another through org.role_name]
    #[arg(long, value_name = "ID")]
    pub account: Option<rekey_core::AccountId>,

    /// The key to retire [default: the user's oldest active key]
    #[arg(long, value_name = "ID")]
    pub key: Option<String>,

    /// How to check that the consumers work without the key, as in rekey.toml (repeatable), e.g.
    /// '{ type = "exec", command = ["app-healthcheck"] }' [default: the user's [[target]] verifiers, less sts]
    #[arg(long, value_name = "TOML")]
    pub verify: Vec<String>,

    /// The key must stay unused this long after the retirement begins [default: rotation.wait_unused, else 24h]
    #[arg(long, value_name = "DUR")]
    pub wait_unused: Option<Duration>,

    /// Keep the key deactivated this long before deleting it [default: rotation.grace, else 7d]
    #[arg(long, value_name = "DUR")]
    pub grace: Option<Duration>,

    /// Print every AWS call the retirement would make, and change nothing
    #[arg(long)]
    pub dry_run: bool,

    /// Do not ask for confirmation
    #[arg(long, short)]
    pub yes: bool,

    /// Retire a key of a user exempt by `rekey suppress` or an [[exempt]] rule anyway (the audit log records it)
    #[arg(long)]
    pub ignore_exemption: bool,
}

impl From<RetireArgs> for RotateArgs {
    /// A retirement starts like a rotation, with no sinks.
    fn from(a: RetireArgs) -> RotateArgs {
        RotateArgs {
            user: a.user,
            account: a.account,
            key: a.key,
            deliver: Vec::new(),
            verify: a.verify,
            wait_unused: a.wait_unused,
            grace: a.grace,
            delete_inactive: false,
            dry_run: a.dry_run,
            yes: a.yes,
            reveal: false,
            ignore_exemption: a.ignore_exemption,
            retire: true,
        }
    }
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// One pass over what is due, then exit (the default)
    #[arg(long, conflicts_with = "interval")]
    pub once: bool,

    /// Keep running, a pass every DUR
    #[arg(long, value_name = "DUR")]
    pub interval: Option<Duration>,

    /// Allow a manual sink to print the new secret although stdout is not a terminal
    #[arg(long)]
    pub reveal: bool,

    /// Only rotations in this account [default: every account's, each through org.role_name unless it is the credentials' own]
    #[arg(long, value_name = "ID")]
    pub account: Option<rekey_core::AccountId>,

    /// After each pass, write Prometheus text-format gauges to FILE (atomically), for a scheduled job to be watched
    #[arg(long, value_name = "FILE")]
    pub metrics: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Only this rotation
    pub id: Option<String>,

    /// Finished rotations too (after the unfinished ones)
    #[arg(long, conflicts_with = "id")]
    pub all: bool,

    /// Only rotations started since: an RFC 3339 time, or a duration back from now (7d)
    #[arg(long, value_name = "TIME", value_parser = parse_when, conflicts_with = "id")]
    pub since: Option<When>,

    /// At most this many rotations, oldest first
    #[arg(long, value_name = "N", conflicts_with = "id")]
    pub limit: Option<usize>,

    /// A table for people, or JSON for scripts
    #[arg(long, value_enum, default_value_t = ListFormat::Table)]
    pub format: ListFormat,
}

#[derive(Debug, Args)]
pub struct ConfirmArgs {
    /// The rotation, as `rekey status` lists it
    pub id: String,

    /// Deactivate the old key even though it is still being used
    #[arg(long)]
    pub force: bool,

    /// Allow a manual sink to print the new secret although stdout is not a terminal
    #[arg(long)]
    pub reveal: bool,
}

#[derive(Debug, Args)]
pub struct IdArgs {
    /// The rotation, as `rekey status` lists it
    pub id: String,
}

#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// Only this rotation
    pub id: Option<String>,

    /// Only events since: an RFC 3339 time, or a duration back from now (7d)
    #[arg(long, value_name = "TIME", value_parser = parse_when)]
    pub since: Option<When>,

    /// Only the newest N events (still printed oldest first)
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,

    /// A table for people, or JSON for scripts
    #[arg(long, value_enum, default_value_t = ListFormat::Table)]
    pub format: ListFormat,
}

#[derive(Debug, Args)]
pub struct FindingsArgs {
    #[command(flatten)]
    pub policy: PolicyArgs,

    /// The account whose findings to read [default: the credentials' own; another through org.role_name]
    #[arg(long, value_name = "ID")]
    pub account: Option<rekey_core::AccountId>,

    /// Only this user's finding (repeatable)
    #[arg(long = "user", value_name = "NAME")]
    pub users: Vec<UserName>,

    /// Only findings with this workflow status (repeatable)
    #[arg(long = "workflow-status", value_enum, value_name = "STATUS")]
    pub workflow: Vec<WorkflowArg>,

    /// Only findings with this compliance status (repeatable)
    #[arg(long = "compliance-status", value_enum, value_name = "STATUS")]
    pub compliance: Vec<ComplianceArg>,

    /// A table for people, or json or csv for scripts
    #[arg(long, value_enum, default_value_t = FindingsFormat::Table)]
    pub format: FindingsFormat,

    /// Exit 1 when an open finding (not suppressed or resolved) is at or above this
    #[arg(long, value_enum, default_value_t = FailOn::Failed)]
    pub fail_on: FailOn,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
#[value(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum WorkflowArg {
    New,
    Notified,
    Suppressed,
    Resolved,
}

impl From<WorkflowArg> for rekey_core::hub::Workflow {
    fn from(w: WorkflowArg) -> Self {
        use rekey_core::hub::Workflow as W;
        match w {
            WorkflowArg::New => W::New,
            WorkflowArg::Notified => W::Notified,
            WorkflowArg::Suppressed => W::Suppressed,
            WorkflowArg::Resolved => W::Resolved,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
#[value(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ComplianceArg {
    Failed,
    Warning,
    Passed,
    NotAvailable,
}

impl ComplianceArg {
    pub fn as_str(self) -> &'static str {
        match self {
            ComplianceArg::Failed => "FAILED",
            ComplianceArg::Warning => "WARNING",
            ComplianceArg::Passed => "PASSED",
            ComplianceArg::NotAvailable => "NOT_AVAILABLE",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FindingsFormat {
    Table,
    Json,
    Csv,
}

#[derive(Debug, Args)]
pub struct ConsumersArgs {
    /// The IAM user whose keys to look up
    #[arg(long, value_name = "NAME")]
    pub user: UserName,

    /// The account the user is in [default: the credentials' own; another through org.role_name]
    #[arg(long, value_name = "ID")]
    pub account: Option<rekey_core::AccountId>,

    /// Only this key of the user [default: all of them]
    #[arg(long, value_name = "ID")]
    pub key: Option<String>,

    /// How far back to look (CloudTrail keeps 90 days)
    #[arg(long, value_name = "DUR", default_value = "90d")]
    pub since: Duration,

    /// A table for people, or JSON for scripts
    #[arg(long, value_enum, default_value_t = ListFormat::Table)]
    pub format: ListFormat,
}

#[derive(Debug, Args)]
pub struct RolePlanArgs {
    /// The IAM user whose keys the roles would replace
    #[arg(long, value_name = "NAME")]
    pub user: UserName,

    /// The account the user is in [default: the credentials' own; another through org.role_name]
    #[arg(long, value_name = "ID")]
    pub account: Option<rekey_core::AccountId>,

    /// Only this key of the user [default: all of them]
    #[arg(long, value_name = "ID")]
    pub key: Option<String>,

    /// How far back to look (CloudTrail keeps 90 days)
    #[arg(long, value_name = "DUR", default_value = "90d")]
    pub since: Duration,

    /// Text for people, JSON for scripts, or a CloudFormation template or Terraform snippet to deploy
    #[arg(long, value_enum, default_value_t = RolePlanFormat::Text)]
    pub format: RolePlanFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RolePlanFormat {
    Text,
    Json,
    Cloudformation,
    Terraform,
}

#[derive(Debug, Args)]
pub struct OwnersArgs {
    #[command(flatten)]
    pub policy: PolicyArgs,

    /// Only this owner ("unowned" for users without one)
    #[arg(long, value_name = "OWNER")]
    pub owner: Option<String>,

    /// List who uses each key, from CloudTrail
    #[arg(long)]
    pub consumers: bool,

    /// Text for people, or JSON for scripts
    #[arg(long, value_enum, default_value_t = ListFormat::Table)]
    pub format: ListFormat,
}

#[derive(Debug, Args)]
pub struct NotifyArgs {
    #[command(flatten)]
    pub policy: PolicyArgs,

    /// Only this owner ("unowned" for users without one)
    #[arg(long, value_name = "OWNER")]
    pub owner: Option<String>,

    /// List who uses each key, from CloudTrail
    #[arg(long)]
    pub consumers: bool,

    /// Print what would be sent; send nothing, change nothing
    #[arg(long)]
    pub dry_run: bool,

    /// Send even a notice sent within notify.resend_after
    #[arg(long)]
    pub force: bool,

    /// Text for people, or JSON for scripts
    #[arg(long, value_enum, default_value_t = ListFormat::Table)]
    pub format: ListFormat,
}

#[derive(Debug, Args)]
pub struct SuppressArgs {
    /// The user to exempt (repeatable)
    #[arg(long = "user", value_name = "NAME", required = true)]
    pub users: Vec<UserName>,

    /// The account the users are in [default: the credentials' own; another through org.role_name]
    #[arg(long, value_name = "ID")]
    pub account: Option<rekey_core::AccountId>,

    /// Why the key can be neither rotated nor deactivated (recorded, and noted on the finding)
    #[arg(long, value_name = "TEXT", required = true)]
    pub reason: String,

    /// When the exemption ends: an RFC 3339 time, or a duration from now (30d) [default: until unsuppressed]
    #[arg(long, value_name = "TIME", value_parser = parse_when)]
    pub until: Option<When>,
}

#[derive(Debug, Args)]
pub struct UnsuppressArgs {
    /// The user whose exemption ends (repeatable)
    #[arg(long = "user", value_name = "NAME", required = true)]
    pub users: Vec<UserName>,

    /// The account the users are in [default: the credentials' own; another through org.role_name]
    #[arg(long, value_name = "ID")]
    pub account: Option<rekey_core::AccountId>,

    /// Why, for the finding's note
    #[arg(long, value_name = "TEXT")]
    pub reason: Option<String>,
}

/// `--until` and `--since`: a fixed time, or a duration from when the
/// command runs (ahead for `--until`, back for `--since`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    At(jiff::Timestamp),
    Within(Duration),
}

impl When {
    pub fn ahead_of(self, now: jiff::Timestamp) -> jiff::Timestamp {
        match self {
            When::At(at) => at,
            // invariant: a SignedDuration has no calendar units, the only failure
            When::Within(d) => now.saturating_add(d.to_signed()).expect("a duration, not a calendar span"),
        }
    }

    pub fn back_from(self, now: jiff::Timestamp) -> jiff::Timestamp {
        match self {
            When::At(at) => at,
            // invariant: a SignedDuration has no calendar units, the only failure
            When::Within(d) => now.saturating_sub(d.to_signed()).expect("a duration, not a calendar span"),
        }
    }
}

pub fn parse_when(text: &str) -> Result<When, String> {
    text.parse()
        .map(When::At)
        .or_else(|_| text.parse().map(When::Within))
        .map_err(|_| "not a time; write an RFC 3339 time like 2027-01-31T00:00:00Z, or a duration like 30d".to_owned())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ListFormat {
    Table,
    Json,
}

/// The policy flags of every command that evaluates keys; `Settings::load`
/// merges them over `[policy]` once.
#[derive(Debug, Args, Default, Clone)]
pub struct PolicyArgs {
    /// An active key older than this fails [default: policy.max_age, else 90d]
    #[arg(long, env = "REKEY_MAX_AGE", value_name = "DUR")]
    pub max_age: Option<Duration>,

    /// A key failing within this long is a WARNING [default: policy.warn_within, else 14d]
    #[arg(long, env = "REKEY_WARN_WITHIN", value_name = "DUR")]
    pub warn_within: Option<Duration>,
}

#[derive(Debug, Args)]
pub struct ScanArgs {
    /// Where keys are read from: auto uses the API for --user, else the credential report
    #[arg(long, value_enum, default_value_t = SourceArg::Auto)]
    pub source: SourceArg,

    #[command(flatten)]
    pub policy: PolicyArgs,

    /// Evaluate today's keys as of TIME instead of now: an RFC 3339 time
    /// (2026-11-28T00:00:00Z) or a duration back from now (-1d). Keys age or
    /// grow younger, but no deleted key comes back; keys created after TIME
    /// are not listed
    #[arg(long, value_name = "TIME", value_parser = parse_as_of, allow_hyphen_values = true)]
    pub as_of: Option<AsOf>,

    /// Only this user (repeatable)
    #[arg(long = "user", value_name = "NAME")]
    pub users: Vec<UserName>,

    /// Only users whose owner tag has this value
    #[arg(long, value_name = "OWNER")]
    pub owner: Option<String>,

    /// A table for people (worst first), json, jsonl, csv or asff for scripts, or an html page
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,

    /// Write the output to FILE instead of stdout
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,

    /// Exit 1 when a key is at or above this result
    #[arg(long, value_enum, default_value_t = FailOn::Failed)]
    pub fail_on: FailOn,

    /// Add who uses each FAILED and WARNING key, from CloudTrail (2 requests a second per region)
    #[arg(long)]
    pub consumers: bool,

    /// Also send the findings (one per user) to Security Hub with
    /// BatchImportFindings, for accounts that do not run the IAM.3 control
    #[arg(long)]
    pub import_findings: bool,

    /// Scan every active account of the AWS Organization (assuming --role-name in each)
    #[arg(long, conflicts_with = "accounts")]
    pub org: bool,

    /// Scan these accounts (comma-separated; assuming --role-name in each but the caller's own)
    #[arg(long, value_name = "ID,...", value_delimiter = ',')]
    pub accounts: Vec<rekey_core::AccountId>,

    /// The role to assume in other accounts [default: org.role_name]
    #[arg(long, value_name = "NAME")]
    pub role_name: Option<String>,

    /// AWS requests in flight at once within an account [default: 16]
    #[arg(long, value_name = "N")]
    pub concurrency: Option<std::num::NonZeroUsize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SourceArg {
    Auto,
    CredentialReport,
    Api,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Table,
    Json,
    Jsonl,
    Csv,
    // AWS Security Finding Format: one finding per user, as Security Hub's own.
    Asff,
    // One self-contained page: totals, an age histogram, filters, the keys.
    Html,
    // OCSF 1.5.0 Detection Findings, one per key, as Prowler emits them.
    Ocsf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FailOn {
    Failed,
    Warning,
    Never,
}

/// `--as-of`: a fixed time, or a time relative to when the command runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AsOf {
    At(jiff::Timestamp),
    Ago(Duration),
}

impl AsOf {
    pub fn resolve(self, now: jiff::Timestamp) -> jiff::Timestamp {
        match self {
            AsOf::At(at) => at,
            // invariant: a SignedDuration has no calendar units, the only failure
            AsOf::Ago(ago) => now.saturating_sub(ago.to_signed()).expect("a duration, not a calendar span"),
        }
    }
}

pub fn parse_as_of(text: &str) -> Result<AsOf, String> {
    match text.strip_prefix('-') {
        Some(ago) => ago.parse().map(AsOf::Ago).map_err(|e| e.to_string()),
        None => text.parse().map(AsOf::At).map_err(|_| {
            "not a time; write an RFC 3339 time like 2026-11-28T00:00:00Z, or a duration back from now like -1d or -36h".to_owned()
        }),
    }
}

/// Rejects what the SDK would only fail on later, with a worse message.
pub fn parse_endpoint(url: &str) -> Result<String, String> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or_else(|| format!("{url:?} is not an http:// or https:// URL"))?;
    if rest.is_empty() || rest.starts_with('/') {
        return Err(format!("{url:?} has no host"));
    }
    Ok(url.to_owned())
}

/// `--state`: a path is a SQLite file; `sqlite:` and `dynamodb:` say which.
fn state_location(text: &str) -> Result<rekey_store::Location, String> {
    if text.starts_with("sqlite:") || text.starts_with("dynamodb:") {
        text.parse()
    } else {
        Ok(rekey_store::Location::Sqlite(text.into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_definitions_are_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn every_flag_and_argument_says_what_it_is() {
        fn check(cmd: &clap::Command, path: &str) {
            for arg in cmd.get_arguments().filter(|a| !a.is_hide_set()) {
                let id = arg.get_id().as_str();
                if id == "help" || id == "version" {
                    continue;
                }
                let help = arg.get_help().map(ToString::to_string).unwrap_or_default();
                assert!(!help.trim().is_empty(), "{path} {id} has no description");
            }
            for sub in cmd.get_subcommands() {
                assert!(sub.get_about().is_some(), "{path} {} has no description", sub.get_name());
                check(sub, &format!("{path} {}", sub.get_name()));
            }
        }
        let mut cmd = Cli::command();
        cmd.build();
        check(&cmd, "rekey");
    }
}
