//! `rekey scan`: read keys, evaluate IAM.3, print (how keys are read is
//! in [`crate::scanning`]).

use crate::accounts::Accounts;
use crate::cli::ScanArgs;
use crate::hub;
use crate::output::render_scan;
use crate::scanning::{at_or_above, collect, collect_many, org_accounts, tell_problems, Scope};
use crate::settings::{Settings, DEFAULT_CONCURRENCY};
use crate::terminal::Terminal;
use rekey_aws::Clients;
use std::io::Write;
use std::num::NonZeroUsize;

pub async fn run(args: ScanArgs, settings: &Settings, term: &Terminal) -> anyhow::Result<u8> {
    // A bad --output path fails before any AWS call; the file is replaced
    // only by a finished report, never emptied by a failed scan.
    let output = args.output.as_deref().map(Output::prepare).transpose()?;
    let clients = Clients::new(&settings.aws).await;
    let scope = Scope {
        source: args.source,
        users: &args.users,
        owner: args.owner.as_deref(),
        policy: settings.policy,
        as_of: args.as_of,
        concurrency: args.concurrency.map_or(DEFAULT_CONCURRENCY, NonZeroUsize::get),
        in_flight: None,
    };
    let accounts = Accounts::new(&clients, settings, args.role_name.as_deref());
    let mut report = if args.org || !args.accounts.is_empty() {
        let targets = if args.org { org_accounts(&clients, accounts.caller().await?, term).await? } else { args.accounts.iter().map(|a| (a.clone(), None)).collect() };
        accounts.check_reachable(targets.iter().map(|(a, _)| a)).await?;
        collect_many(&scope, &targets, &accounts, settings.account_concurrency(), settings, term).await?
    } else {
        collect(&scope, settings, &clients, &clients, &term.progress()).await?
    };
    if args.consumers {
        crate::trail::fill_consumers(&mut report, settings, &accounts).await;
    }
    let region = hub::region(settings, &clients);
    match output {
        Some(output) => output.write(|out| render_scan(&report, args.format, false, &region, out))?,
        None => {
            let mut out = std::io::stdout().lock();
            render_scan(&report, args.format, term.stdout_is_terminal, &region, &mut out)?;
            out.flush()?;
        }
    }
    let imported = if args.import_findings { hub::import(&report, settings, &accounts, term).await } else { Ok(()) };
    term.report_calls(clients.calls());
    tell_problems(&report, term);
    imported?;
    Ok(if !report.errors.is_empty() {
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
