//! `rekey run`: advances every rotation that is due. Only due rotations cost
//! AWS calls; the rest is one indexed query of the state store.

use super::{engine, open_store, send_finding_notes};
use crate::accounts::Accounts;
use crate::cli::RunArgs;
use crate::settings::Settings;
use crate::table::count;
use crate::terminal::Terminal;
use rekey_aws::Clients;
use rekey_core::hub::{note_text, Workflow};
use rekey_core::model::whole_seconds;
use rekey_core::AccountId;
use rekey_store::{AuditEntry, Change, EndExemption, Ended, NewFindingUpdate, Outlook, Store};
use std::collections::BTreeMap;

pub async fn run(args: RunArgs, settings: &Settings, term: &Terminal) -> anyhow::Result<u8> {
    let mut store = open_store(settings)?;
    let clients = Clients::new(&settings.aws).await;
    let may_reveal = args.reveal || term.stdout_is_terminal;
    loop {
        // Per pass: assumed roles' credentials last an hour.
        let accounts = Accounts::new(&clients, settings, None);
        reopen_expired(&mut store, settings, term)?;
        let (advanced, errors) = advance_due(&mut store, &accounts, args.account.as_ref(), settings, may_reveal).await?;
        send_finding_notes(&mut store, settings, &accounts, term).await?;
        for id in &advanced {
            let r = store.get(id)?;
            let note = r.blocked_reason.as_deref().map(|b| format!(": {b}")).unwrap_or_default();
            outln!("{id}: {}{note}", r.stage)?;
        }
        for e in &errors {
            term.error(e);
        }
        if !term.quiet {
            outln!("{}", summary(advanced.len(), &store.outlook()?))?;
        }
        term.report_calls(clients.calls());
        match args.interval {
            None => return Ok(if errors.is_empty() { 0 } else { 2 }),
            Some(every) => tokio::time::sleep(every.to_signed().unsigned_abs()).await,
        }
    }
}

/// Every due rotation (of `only` that account), advanced in its own
/// account (the caller's, or through `[org] role_name`). A rotation in an
/// account rekey cannot reach is an error and is left as it is; the others
/// go on.
async fn advance_due(store: &mut Store, accounts: &Accounts<'_>, only: Option<&AccountId>, settings: &Settings, may_reveal: bool) -> anyhow::Result<(Vec<String>, Vec<String>)> {
    let mut by_account: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for id in store.due(jiff::Timestamp::now())? {
        let account = store.get(&id)?.account_id;
        if only.is_none_or(|only| only.as_str() == account) {
            by_account.entry(account).or_default().push(id);
        }
    }
    let (mut advanced, mut errors) = (Vec::new(), Vec::new());
    for (account, ids) in by_account {
        let account = AccountId::new(account);
        let clients = match accounts.clients_for(&account).await {
            Ok(clients) => clients,
            Err(e) => {
                errors.extend(ids.iter().map(|id| format!("rotation {id}: {e:#}")));
                continue;
            }
        };
        let keys = super::keys(&clients, settings);
        let mut engine = engine(&keys, &clients, &account, store, settings, may_reveal);
        for id in ids {
            match engine.advance(&id).await {
                Ok(true) => advanced.push(id),
                Ok(false) => {}
                Err(e) => errors.push(e.to_string()),
            }
        }
    }
    Ok((advanced, errors))
}

/// Exemptions whose `until` has passed end, and their findings reopen
/// (NEW, with a note): the users' keys count again.
fn reopen_expired(store: &mut Store, settings: &Settings, term: &Terminal) -> anyhow::Result<()> {
    let now = whole_seconds(jiff::Timestamp::now());
    let expired = store.expired_exemptions(now)?;
    if expired.is_empty() {
        return Ok(());
    }
    let mut change = Change::default();
    for e in &expired {
        change.end.push(EndExemption { account_id: e.account_id.clone(), user_name: e.user_name.clone(), how: Ended::Expired });
        let until = e.until.map(|t| t.to_string()).unwrap_or_default();
        let detail = serde_json::json!({"account_id": e.account_id, "user_name": e.user_name, "reason": e.reason, "by": e.by, "until": until});
        change.audit.push(AuditEntry::about_owners(now, &settings.actor, "exemption_expired", detail));
        if settings.file.securityhub.enabled {
            let note = note_text(&format!("The exemption by {} ended at {until} (it said: {}); the user's keys count again", e.by, e.reason));
            change.finding_updates.push(NewFindingUpdate { account_id: e.account_id.clone(), user_name: e.user_name.clone(), workflow: Some(Workflow::New), note });
        }
    }
    store.record(&change, now, &settings.actor)?;
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
