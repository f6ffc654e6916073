//! `rekey suppress` / `rekey unsuppress`: a person's decision that a user's
//! keys may stay as they are (or no longer may), recorded in the state store
//! with who and why, and mirrored to the users' IAM.3 findings.
//!
//! Everything is checked before anything is recorded: the reason, the end
//! time, the account, that every user exists, and that Security Hub answers.
//! Then the exemptions, their finding updates and audit lines are saved in
//! one transaction, and the updates are sent; what Security Hub does not
//! take stays in the outbox for `rekey run` (exit 2, saying so).

use crate::store::open_store;
use crate::cli::{SuppressArgs, UnsuppressArgs};
use crate::accounts::Accounts;
use crate::hub;
use crate::settings::Settings;
use crate::table::count;
use crate::terminal::Terminal;
use anyhow::bail;
use jiff::Timestamp;
use rekey_aws::{Clients, Iam};
use rekey_core::hub::{note_text, Workflow};
use rekey_core::model::whole_seconds;
use rekey_core::UserName;
use rekey_engine::audit::Audit;
use rekey_store::{Change, EndExemption, Ended, ExemptionRecord, NewFindingUpdate, SharedStore};

pub async fn suppress(args: SuppressArgs, settings: &Settings, term: &Terminal) -> anyhow::Result<u8> {
    let now = whole_seconds(Timestamp::now());
    let reason = args.reason.trim();
    if reason.is_empty() {
        bail!("--reason is empty: say why the key can be neither rotated nor deactivated (it is recorded and noted on the finding)");
    }
    let until = args.until.map(|u| u.ahead_of(now));
    if let Some(until) = until.filter(|u| *u <= now) {
        bail!("--until {until} is not in the future; give a later time, or leave --until out for an exemption that lasts until `rekey unsuppress`");
    }
    let base = Clients::new(&settings.aws).await;
    let accounts = Accounts::new(&base, settings, None);
    let (account, clients) = accounts.account_and_clients(args.account.as_ref()).await?;
    let users = existing_users(&clients, &args.users).await?;
    let hub = hub::client(settings, &clients);
    if let Some(hub) = &hub {
        hub::check_answers(hub, &account, &users).await?;
    }

    let until_text = until.map(|u| format!(" until {u}")).unwrap_or_default();
    let note = note_text(&format!("Suppressed by rekey for {}{until_text}: {reason}", settings.actor));
    let mut change = Change::default();
    for user in &users {
        change.open.push(ExemptionRecord {
            account_id: account.clone(),
            user_name: user.clone(),
            reason: reason.to_owned(),
            until,
            by: settings.actor.clone(),
            created_at: now,
        });
        let suppressed = Audit::Suppressed { account_id: account.to_string(), user_name: user.to_string(), reason: reason.to_owned(), until };
        change.audit.push(suppressed.about_owners(now, &settings.actor));
        if hub.is_some() {
            change.finding_updates.push(NewFindingUpdate {
                account_id: account.clone(),
                user_name: user.clone(),
                workflow: Some(Workflow::Suppressed),
                note: note.clone(),
            });
        }
    }
    let store = open_store(settings).await?;
    store.record(&change, now, &settings.actor).await?;
    term.info(&format!("exempted {}{until_text}", count(users.len(), "user")));
    mirror(&store, &accounts, settings, term).await
}

pub async fn unsuppress(args: UnsuppressArgs, settings: &Settings, term: &Terminal) -> anyhow::Result<u8> {
    let now = whole_seconds(Timestamp::now());
    let base = Clients::new(&settings.aws).await;
    let accounts = Accounts::new(&base, settings, None);
    let (account, clients) = accounts.account_and_clients(args.account.as_ref()).await?;
    let store = open_store(settings).await?;
    let open = store.open_exemptions().await?;
    let wanted: Vec<UserName> = args.users.clone();
    let missing: Vec<&str> = wanted
        .iter()
        .filter(|u| !open.iter().any(|e| e.account_id == account && &e.user_name == *u))
        .map(UserName::as_str)
        .collect();
    if !missing.is_empty() {
        bail!("no exemption to end for {} in account {account}; `rekey scan` shows the exemptions in force", missing.join(", "));
    }
    let hub = hub::client(settings, &clients);
    if let Some(hub) = &hub {
        hub::check_answers(hub, &account, &wanted).await?;
    }
    let why = args.reason.as_deref().map(|r| format!(": {}", r.trim())).unwrap_or_default();
    let note = note_text(&format!("Exemption ended by {} with rekey{why}; the user's keys count again", settings.actor));
    let mut change = Change::default();
    for user in &wanted {
        change.end.push(EndExemption { account_id: account.clone(), user_name: user.clone(), how: Ended::Unsuppressed });
        let ended = Audit::Unsuppressed { account_id: account.to_string(), user_name: user.to_string(), reason: args.reason.clone() };
        change.audit.push(ended.about_owners(now, &settings.actor));
        if hub.is_some() {
            change.finding_updates.push(NewFindingUpdate { account_id: account.clone(), user_name: user.clone(), workflow: Some(Workflow::New), note: note.clone() });
        }
    }
    store.record(&change, now, &settings.actor).await?;
    term.info(&format!("ended the exemption of {}", count(wanted.len(), "user")));
    mirror(&store, &accounts, settings, term).await
}

/// Sends the outbox; exit 2 if some update is left for the next run.
async fn mirror(store: &SharedStore, accounts: &Accounts<'_>, settings: &Settings, term: &Terminal) -> anyhow::Result<u8> {
    if !settings.file.securityhub.enabled {
        term.info("Security Hub is off in rekey.toml (securityhub.enabled = false): recorded in rekey only");
        return Ok(0);
    }
    let flushed = hub::flush(store, accounts, settings).await?;
    if flushed.failed.is_empty() {
        term.info(&flushed.summary());
        Ok(0)
    } else {
        term.error(&flushed.summary());
        Ok(2)
    }
}

/// Up to this many users are looked up one `GetUser` each; more are found
/// in one `ListUsers` pass (100 users a page), which costs less for the
/// hundreds of users a suppression of a whole team names.
const LOOK_UP_EACH_UP_TO: usize = 10;

/// The users, each checked to exist; all unknown ones are named at once.
async fn existing_users(clients: &Clients, users: &[UserName]) -> anyhow::Result<Vec<UserName>> {
    let iam = Iam::new(clients);
    let mut found = Vec::new();
    let mut unknown = Vec::new();
    if users.len() <= LOOK_UP_EACH_UP_TO {
        for user in users {
            match iam.get_user(user).await? {
                Some(_) => found.push(user.clone()),
                None => unknown.push(user.to_string()),
            }
        }
    } else {
        let all: std::collections::HashSet<UserName> = iam.list_users().await?.into_iter().map(|u| u.name).collect();
        for user in users {
            match all.contains(user) {
                true => found.push(user.clone()),
                false => unknown.push(user.to_string()),
            }
        }
    }
    if !unknown.is_empty() {
        bail!("no IAM user named {} in this account; nothing was changed", unknown.join(", "));
    }
    found.sort();
    found.dedup();
    Ok(found)
}
