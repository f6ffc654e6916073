//! `rekey scan`: read keys, evaluate IAM.3, print.
//!
//! With the credential report, only users with a FAILED or WARNING key cost
//! a call each (`ListAccessKeys`, for their key ids). Owners come from
//! `GetAccountAuthorizationDetails` (a call per 1,000 users); without that
//! permission, from `ListUserTags` for the users that need action (and for
//! every user when `--owner` filters on them).

use crate::cli::{FailOn, ScanArgs, SourceArg};
use crate::output::render_scan;
use crate::settings::{Settings, DEFAULT_CONCURRENCY};
use crate::terminal::Terminal;
use rekey_aws::inventory::{Fetch, UserError};
use rekey_aws::{Clients, Iam, Source};
use rekey_core::model::whole_seconds;
use rekey_core::report::{key_rows, user_result, RotationRef, ScanError, ScanReport, Summary};
use rekey_core::{Compliance, Policy};
use std::io::Write;

pub async fn run(args: ScanArgs, settings: &Settings, term: &Terminal) -> anyhow::Result<u8> {
    let policy = Policy {
        max_age: args.max_age.unwrap_or(settings.policy.max_age),
        warn_within: args.warn_within.unwrap_or(settings.policy.warn_within),
    };
    let now = whole_seconds(jiff::Timestamp::now());
    let as_of = args.as_of.map(whole_seconds).unwrap_or(now);
    let source = match args.source {
        SourceArg::CredentialReport => Source::CredentialReport,
        SourceArg::Api => Source::Api,
        // A few named users cost fewer calls, and give fresher data, by API.
        SourceArg::Auto if !args.users.is_empty() => Source::Api,
        SourceArg::Auto => Source::CredentialReport,
    };
    // A bad --output path fails before any AWS call; the file is replaced
    // only by a finished report, never emptied by a failed scan.
    let output = args.output.as_deref().map(Output::prepare).transpose()?;

    let clients = Clients::new(&settings.aws).await;
    let iam = Iam::new(&clients);
    let progress = term.progress();
    let fetch = Fetch { iam: &iam, concurrency: DEFAULT_CONCURRENCY, progress: &progress };

    let (mut users, mut errors) = fetch.load(source, &args.users).await?;
    let needs_action = |u: &rekey_core::User| user_result(u, &policy, as_of) < Compliance::Suppressed;
    errors.extend(fetch.fill_key_ids(&mut users, needs_action).await);
    if !settings.owner_tags.is_empty() {
        let filtering = args.owner.is_some();
        let whole_account = args.users.is_empty();
        errors.extend(fetch.fill_tags(&mut users, whole_account, |u| filtering || needs_action(u)).await);
    }
    progress.finish();
    if let Some(owner) = &args.owner {
        users.retain(|u| u.owner(&settings.owner_tags) == Some(owner.as_str()));
    }

    let mut keys = key_rows(&users, &policy, as_of, &settings.owner_tags);
    mark_rotations(&mut keys, settings)?;
    let report = ScanReport {
        generated_at: now,
        as_of,
        max_age_days: policy.max_age.whole_days(),
        source: source.as_str(),
        summary: Summary::of(users.len(), &keys),
        errors: errors.iter().map(scan_error).collect(),
        keys,
    };
    match output {
        Some(output) => output.write(|out| render_scan(&report, args.format, false, out))?,
        None => {
            let mut out = std::io::stdout().lock();
            render_scan(&report, args.format, term.stdout_is_terminal, &mut out)?;
            out.flush()?;
        }
    }
    term.report_calls(clients.calls());

    for e in &errors {
        term.error(&format!("{}: {}", e.user, e.error));
    }
    Ok(if !errors.is_empty() {
        2
    } else if report.keys.iter().any(|k| at_or_above(k.result, args.fail_on)) {
        1
    } else {
        0
    })
}

/// The `--output` file: written to a temporary file beside it, renamed over
/// it when complete.
struct Output<'p> {
    path: &'p std::path::Path,
    temp: tempfile::NamedTempFile,
}

impl<'p> Output<'p> {
    fn prepare(path: &'p std::path::Path) -> anyhow::Result<Self> {
        let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
        let temp = tempfile::NamedTempFile::new_in(dir).map_err(|e| anyhow::anyhow!("cannot write --output {}: {e}", path.display()))?;
        Ok(Output { path, temp })
    }

    fn write(mut self, render: impl FnOnce(&mut dyn Write) -> anyhow::Result<()>) -> anyhow::Result<()> {
        let mut out = std::io::BufWriter::new(self.temp.as_file_mut());
        render(&mut out)?;
        out.flush()?;
        drop(out);
        self.temp.persist(self.path).map_err(|e| anyhow::anyhow!("cannot write --output {}: {e}", self.path.display()))?;
        Ok(())
    }
}

/// Keys under rotation show its id and stage. Reads the state store only if
/// it exists: a scan never creates one.
fn mark_rotations(keys: &mut [rekey_core::report::KeyRow], settings: &Settings) -> anyhow::Result<()> {
    if !settings.state.is_file() {
        return Ok(());
    }
    let open: Vec<_> = super::open_store(settings)?.list()?.into_iter().filter(|r| !r.stage.is_terminal()).collect();
    for key in keys.iter_mut() {
        let rotation = open.iter().find(|r| Some(r.old_key_id.as_str()) == key.access_key_id.as_deref() && r.account_id == key.account_id);
        key.rotation = rotation.map(|r| RotationRef { id: r.id.clone(), stage: r.stage.as_str().to_owned() });
    }
    Ok(())
}

fn at_or_above(result: Compliance, fail_on: FailOn) -> bool {
    match fail_on {
        FailOn::Failed => result == Compliance::Failed,
        FailOn::Warning => matches!(result, Compliance::Failed | Compliance::Warning),
        FailOn::Never => false,
    }
}

fn scan_error(e: &UserError) -> ScanError {
    ScanError { account_id: None, user_name: Some(e.user.to_string()), message: e.error.to_string() }
}
