//! `rekey scan`: read keys, evaluate IAM.3, print.
//!
//! With the credential report (a snapshot up to 4 hours old), only users
//! with a key old enough to be FAILED or WARNING cost a call each
//! (`ListAccessKeys`: their keys as they are now, with ids). Owners come from
//! `GetAccountAuthorizationDetails` (a call per 1,000 users); without that
//! permission, from `ListUserTags` for the users that need action (and for
//! every user when `--owner` filters on them).

use crate::cli::{FailOn, ScanArgs, SourceArg};
use crate::output::render_scan;
use crate::settings::{Settings, DEFAULT_CONCURRENCY};
use crate::table::count;
use crate::terminal::Terminal;
use rekey_aws::inventory::{Fetch, Inventory, UserError, Warning};
use rekey_aws::{Clients, Iam, Source};
use rekey_core::evaluate::{existed_at, old_enough_to_matter};
use rekey_core::model::whole_seconds;
use rekey_core::report::{key_rows, user_result, Note, OtherFinding, RotationRef, ScanReport, Summary};
use rekey_core::{Compliance, Policy};
use std::io::Write;

pub async fn run(args: ScanArgs, settings: &Settings, term: &Terminal) -> anyhow::Result<u8> {
    if args.owner.is_some() && settings.owner_tags.is_empty() {
        anyhow::bail!("--owner filters on owner tags, but policy.owner_tags is empty in rekey.toml; list the tags that name owners (e.g. owner_tags = [\"Owner\"]) or drop --owner");
    }
    let policy = Policy {
        max_age: args.max_age.unwrap_or(settings.policy.max_age),
        warn_within: args.warn_within.unwrap_or(settings.policy.warn_within),
    };
    let now = whole_seconds(jiff::Timestamp::now());
    let as_of = args.as_of.map(|a| whole_seconds(a.resolve(now))).unwrap_or(now);
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

    let mut inventory = match fetch.load(source, &args.users).await {
        // Under auto, a missing report permission is not worth failing for.
        Err(e) if args.source == SourceArg::Auto && e.is_report_denied() => {
            let mut inventory = fetch.load(Source::Api, &args.users).await?;
            let message = format!("{e}; read every user through the API instead (slower, same results)");
            inventory.warnings.insert(0, Warning { user: None, message });
            inventory
        }
        loaded => loaded?,
    };
    fetch.refresh_keys(&mut inventory, |k| old_enough_to_matter(k, &policy, as_of)).await;
    if !settings.owner_tags.is_empty() {
        let filtering = args.owner.is_some();
        let whole_account = args.users.is_empty();
        let needs_action = |u: &rekey_core::User| user_result(u, &policy, as_of) < Compliance::Suppressed;
        fetch.fill_tags(&mut inventory, whole_account, |u| filtering || needs_action(u)).await;
    }
    progress.finish();
    if let Some(owner) = &args.owner {
        if inventory.owners_unknown {
            anyhow::bail!("--owner {owner} needs the users' owner tags, and they cannot be read: grant iam:GetAccountAuthorizationDetails or iam:ListUserTags (see `rekey policy`)");
        }
        inventory.users.retain(|u| u.owner(&settings.owner_tags) == Some(owner.as_str()));
    }
    let not_yet_created = inventory.users.iter().flat_map(|u| &u.keys).filter(|k| !existed_at(k, as_of)).count();
    if not_yet_created > 0 {
        let verb = if not_yet_created == 1 { "is" } else { "are" };
        let message = format!("{} created after --as-of {as_of} {verb} not listed: they did not exist then", count(not_yet_created, "key"));
        inventory.warnings.push(Warning { user: None, message });
    }

    let mut keys = key_rows(&inventory.users, &policy, as_of, &settings.owner_tags);
    mark_rotations(&mut keys, settings)?;
    let Inventory { source, report_generated_at, root_with_active_key, users, errors, warnings, .. } = inventory;
    let report = ScanReport {
        generated_at: now,
        as_of,
        max_age_days: policy.max_age.whole_days(),
        max_age: policy.max_age,
        source: source.as_str(),
        report_generated_at,
        summary: Summary::of(users.len(), &keys),
        errors: errors.iter().map(error_note).collect(),
        warnings: warnings.iter().map(warning_note).collect(),
        other_findings: root_with_active_key.iter().map(|a| OtherFinding::root_access_key(a.as_str())).collect(),
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

    for w in &report.warnings {
        term.warn(&note_text(w));
    }
    for f in &report.other_findings {
        term.warn(&format!("{} {}: {}", f.control, f.account_id, f.reason));
    }
    for e in &report.errors {
        term.error(&note_text(e));
    }
    if !errors.is_empty() {
        let names: Vec<String> = errors.iter().map(|e| e.user.to_string()).collect();
        term.error(&format!("the scan is incomplete: the keys of {} could not be read and are missing from the output", names.join(", ")));
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

fn error_note(e: &UserError) -> Note {
    Note { account_id: None, user_name: Some(e.user.to_string()), message: e.error.to_string() }
}

fn warning_note(w: &Warning) -> Note {
    Note { account_id: None, user_name: w.user.as_ref().map(ToString::to_string), message: w.message.clone() }
}

fn note_text(n: &Note) -> String {
    match &n.user_name {
        Some(user) => format!("{user}: {}", n.message),
        None => n.message.clone(),
    }
}
