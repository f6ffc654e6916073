//! `rekey run`: a pass of the engine over every rotation that is due
//! (`rekey_engine::runner::run_due`), up to `[rotation] concurrency` at
//! once, each in its own account and under its own lease; then the
//! finding notes, expired exemptions, reminders (`[notify] remind`, see
//! `crate::reminders`) and metrics. Only due rotations cost AWS calls, and
//! with reminders configured a scan of the account (a credential report,
//! which IAM reuses while it is younger than 4 hours); the rest is one
//! indexed query of the state store.

use super::{send_finding_notes, setup, Reaching};
use crate::store::open_store;
use crate::accounts::Accounts;
use crate::cli::RunArgs;
use crate::settings::Settings;
use crate::table::count;
use crate::terminal::Terminal;
use rekey_aws::Clients;
use rekey_aws::securityhub::FindingQuery;
use rekey_aws::AwsError;
use rekey_core::hub::{note_text, Workflow};
use rekey_core::report::Exemption;
use rekey_core::{AccountId, UserName};
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
        mirror_rules(&store, settings, &accounts, args.account.as_ref(), term).await?;
        let reach = Reaching { accounts: &accounts, settings };
        let engine = setup(&store, settings, may_reveal);
        let pass = rekey_engine::runner::run_due(&engine, &reach, args.account.as_ref(), settings.rotation_concurrency());
        let pass = crate::hub::flushing_while(&store, &accounts, settings, pass).await?;
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

/// The mark at the start of every note rekey writes for an `[[exempt]]`
/// rule: how a later pass knows which suppressed findings are a rule's to
/// reopen (Security Hub itself is the record of what was mirrored).
const RULE_NOTE: &str = "rekey: exempt by [[exempt]] #";

/// The note a finding suppressed by a rule carries.
fn rule_note(exemption: &Exemption) -> String {
    let until = exemption.until.map(|t| format!(" until {t}")).unwrap_or_default();
    note_text(&format!("{RULE_NOTE}{} of rekey.toml{until}: {}", exemption.rule().unwrap_or_default(), exemption.reason))
}

/// Mirrors `[[exempt]]` rules to Security Hub in the account (`--account`,
/// else the caller's): each FAILED IAM.3 finding of a user a rule exempts
/// (and no recorded exemption covers: `rekey suppress` mirrors those) is
/// SUPPRESSED with a note naming the rule; a finding a rule suppressed
/// (its note starts with [`RULE_NOTE`]) whose rule no longer matches, or
/// has expired, reopens (NEW, with a note). Only what differs is sent, so
/// passes do not flip findings. Reads: the account's FAILED findings, and
/// only the facts the rules in force need. Without rules, one read of the
/// SUPPRESSED findings, to reopen those of rules since removed.
async fn mirror_rules(store: &SharedStore, settings: &Settings, accounts: &Accounts<'_>, account: Option<&AccountId>, term: &Terminal) -> anyhow::Result<()> {
    if !settings.file.securityhub.enabled {
        return Ok(());
    }
    let now = whole_seconds(jiff::Timestamp::now());
    let rules = &settings.file.exempt;
    let account = match account {
        Some(a) => a.clone(),
        None => accounts.caller().await?.clone(),
    };
    let clients = accounts.clients_for(&account).await?;
    // invariant: checked enabled above
    let hub = crate::hub::client(settings, &clients).expect("Security Hub is enabled");
    let workflow = if rules.is_empty() { vec![Workflow::Suppressed] } else { Vec::new() };
    let query = FindingQuery { account_id: Some(account.to_string()), compliance: vec!["FAILED".into()], workflow, ..FindingQuery::default() };
    let findings = match hub.iam3_findings(&query).await {
        Ok(findings) => findings,
        // Nothing of rekey's can be there: no rule, and no hub.
        Err(AwsError::HubNotEnabled { .. }) if rules.is_empty() => return Ok(()),
        Err(e) => {
            term.warn(&format!("[[exempt]] rules were not mirrored to Security Hub in account {account}: {e}"));
            return Ok(());
        }
    };
    let mut users: Vec<UserName> = findings.iter().map(|f| UserName::new(&f.user_name)).collect();
    users.sort();
    users.dedup();
    let recorded = store.open_exemptions().await?;
    let decided = crate::exemptions::decide(settings, &clients, accounts.own_clients(), &account, &users, &recorded, now).await;
    for unknown in &decided.unknown {
        term.warn(&format!("[[exempt]] rules in account {account}: {}", unknown.message));
    }
    let undecided = !decided.unknown.is_empty();
    let mut change = Change::default();
    let mut done: Vec<String> = Vec::new();
    for user in &users {
        let of_user: Vec<_> = findings.iter().filter(|f| f.user_name == user.as_str()).collect();
        let by_rule_note = of_user.iter().any(|f| f.workflow_status == Workflow::Suppressed && f.note.as_deref().is_some_and(|n| n.starts_with(RULE_NOTE)));
        let update = match decided.exempt.get(user) {
            // A recorded exemption is mirrored by suppress/unsuppress/expiry.
            Some(e) if e.rule().is_none() => None,
            Some(e) => {
                let note = rule_note(e);
                let current = of_user.iter().all(|f| f.workflow_status == Workflow::Suppressed && f.note.as_deref() == Some(note.as_str()));
                (!current).then(|| (Some(Workflow::Suppressed), note, e.rule()))
            }
            // A rule that cannot be checked leaves the finding as it is.
            None if by_rule_note && !undecided => {
                Some((Some(Workflow::New), note_text("rekey: the [[exempt]] rule that suppressed this finding no longer applies (removed, changed or expired); the user's keys count again"), None))
            }
            None => None,
        };
        let Some((workflow, note, rule)) = update else { continue };
        let audit = Audit::ExemptionRuleMirrored { account_id: account.to_string(), user_name: user.to_string(), rule, workflow: workflow.map(|w| w.as_str().to_owned()).unwrap_or_default() };
        change.audit.push(audit.about_owners(now, &settings.actor));
        change.finding_updates.push(NewFindingUpdate { account_id: account.clone(), user_name: user.clone(), workflow, note });
        done.push(format!("{user} {}", if rule.is_some() { "suppressed" } else { "reopened" }));
    }
    if change.finding_updates.is_empty() {
        return Ok(());
    }
    store.record(&change, now, &settings.actor).await?;
    term.info(&format!("[[exempt]] rules mirrored to Security Hub: {}", done.join(", ")));
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
