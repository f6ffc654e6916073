//! `rekey run`: a pass of the engine over every rotation that is due
//! (`rekey_engine::runner::run_due`), up to `[rotation] concurrency` at
//! once, each in its own account and under its own lease; then the
//! finding notes, expired exemptions, reminders (`[notify] remind`, see
//! `crate::reminders`) and metrics. Only due rotations cost AWS calls, and
//! besides: with Security Hub on, one `GetFindings` (the account's IAM.3
//! findings, to mirror `[[exempt]]` rules, see `crate::exemptions`); with
//! reminders configured, a scan of the account (a credential report, which
//! IAM reuses while it is younger than 4 hours). The rest is one indexed
//! query of the state store.

use super::{send_finding_notes, setup, Reaching};
use crate::store::open_store;
use crate::accounts::Accounts;
use crate::cli::RunArgs;
use crate::settings::Settings;
use crate::table::count;
use crate::terminal::Terminal;
use rekey_aws::Clients;
use rekey_core::hub::{note_text, Workflow};
use rekey_core::metrics::{self, Gauges};
use rekey_core::model::whole_seconds;
use rekey_engine::audit::Audit;
use rekey_store::{Change, EndExemption, Ended, NewFindingUpdate, Outlook, SharedStore};

pub async fn run(args: RunArgs, settings: &Settings, term: &Terminal) -> anyhow::Result<u8> {
    let store = open_store(settings).await?;
    let clients = Clients::new(&settings.aws).await;
    let may_reveal = args.reveal || term.stdout_is_terminal;
    // Assumed roles are renewed as their sessions age (see Accounts).
    let accounts = Accounts::new(&clients, settings, None);
    loop {
        // A daemon stops once its store was migrated elsewhere.
        rekey_store::refuse_if_migrated(&*store).await?;
        let started = jiff::Timestamp::now();
        reopen_expired(&store, settings, term).await?;
        crate::exemptions::mirror_rules(&store, settings, &accounts, args.account.as_ref(), term).await?;
        let reach = Reaching { accounts: &accounts, settings };
        let mut engine = setup(&store, settings, may_reveal);
        let (settled, settled_users) = tokio::sync::mpsc::unbounded_channel();
        engine.settled = Some(settled);
        let pass = rekey_engine::runner::run_due(&engine, &reach, args.account.as_ref(), settings.rotation_concurrency());
        let pass = crate::hub::flushing_while(&store, &accounts, settings, settled_users, pass).await?;
        let (advanced, errors) = (pass.advanced, pass.errors);
        send_finding_notes(&store, settings, &accounts, term).await?;
        // After the engine's pass, which knows nothing of owners.
        let reminded = match &settings.reminders {
            Some(cadence) => crate::reminders::send_due(&store, settings, cadence, &clients, term).await?,
            None => crate::reminders::Outcome::default(),
        };
        for id in &advanced {
            let r = store.get(id).await?;
            let note = r.blocked_reason.as_deref().map(|b| format!(": {b}")).unwrap_or_default();
            outln!("{id}: {}{note}", r.stage)?;
        }
        for e in &errors {
            term.error(&e.to_string());
        }
        for f in &reminded.failures {
            term.error(f);
        }
        let outlook = store.outlook().await?;
        if !term.quiet {
            outln!("{}", summary(advanced.len(), &outlook))?;
        }
        if let Some(path) = &args.metrics {
            let (by_stage, oldest_open) = store.open_by_stage().await?;
            let gauges = Gauges { by_stage, blocked: outlook.blocked, oldest_open, last_run: started, advanced: advanced.len(), errors: errors.len() };
            // Read by a collector running as another user: no secret in it.
            crate::output::write_atomically(path, &metrics::render(&gauges), true).map_err(|e| anyhow::anyhow!("--metrics: {e}"))?;
        }
        term.report_calls(clients.calls());
        match args.interval {
            None => return Ok(if errors.is_empty() && reminded.failures.is_empty() { 0 } else { 2 }),
            Some(every) => tokio::time::sleep(every.to_signed().unsigned_abs()).await,
        }
    }
}

/// Exemptions whose `until` has passed end, and their findings reopen
/// (NEW, with a note): the users' keys count again.
async fn reopen_expired(store: &SharedStore, settings: &Settings, term: &Terminal) -> anyhow::Result<()> {
    let now = whole_seconds(jiff::Timestamp::now());
    let expired = store.expired_exemptions(now).await?;
    if expired.is_empty() {
        return Ok(());
    }
    let mut change = Change::default();
    for e in &expired {
        change.end.push(EndExemption { account_id: e.account_id.clone(), user_name: e.user_name.clone(), how: Ended::Expired });
        let until = e.until.map(|t| t.to_string()).unwrap_or_default();
        let expired = Audit::ExemptionExpired { account_id: e.account_id.to_string(), user_name: e.user_name.to_string(), reason: e.reason.clone(), by: e.by.clone(), until: until.clone() };
        change.audit.push(expired.about_owners(now, &settings.actor));
        if settings.file.securityhub.enabled {
            let note = note_text(&format!("The exemption by {} ended at {until} (it said: {}); the user's keys count again", e.by, e.reason));
            change.finding_updates.push(NewFindingUpdate { account_id: e.account_id.clone(), user_name: e.user_name.clone(), workflow: Some(Workflow::New), note });
        }
    }
    store.record(&change, now, &settings.actor).await?;
    let users: Vec<&str> = expired.iter().map(|e| e.user_name.as_str()).collect();
    term.info(&format!("{} expired and ended: {}", count(expired.len(), "exemption"), users.join(", ")));
    Ok(())
}

/// One line per pass, for a cron log: what it did and when there is more to do.
fn summary(advanced: usize, outlook: &Outlook) -> String {
    let mut line = format!("advanced {}; {} waiting", count(advanced, "rotation"), outlook.waiting);
    if let Some(next) = outlook.next_due {
        line += &format!(", next due at {next}");
    }
    if outlook.blocked > 0 {
        line += &format!("; {} blocked, waiting for a person (see rekey status)", outlook.blocked);
    }
    line
}
