//! Whether named users are exempt right now, for the commands that act on
//! users rather than scan them: `rotate`/`retire` (refuse an exempt user)
//! and `run` (mirror `[[exempt]]` rules to Security Hub). The decision is
//! the scan's own ([`crate::scanning::rule_exemptions`] and
//! [`rekey_core::exempt::choose`]); only the reads differ: a few users
//! cost a call or two each, many one `GetAccountAuthorizationDetails` per
//! 1,000 users.

use crate::scanning::{read_rule_facts, recorded_exemption, rule_exemptions, Scope};
use crate::settings::Settings;
use rekey_aws::inventory::{Fetch, Inventory};
use rekey_aws::{Clients, Iam};
use rekey_core::exempt::choose;
use rekey_core::report::{Exemption, Note};
use rekey_core::{AccountId, User, UserName};
use crate::accounts::Accounts;
use crate::terminal::Terminal;
use rekey_aws::securityhub::FindingQuery;
use rekey_aws::AwsError;
use rekey_core::hub::{note_text, Workflow};
use rekey_core::model::whole_seconds;
use rekey_engine::audit::Audit;
use rekey_store::{Change, ExemptionRecord, NewFindingUpdate, SharedStore};
use std::collections::HashMap;

/// What the rules and records say about some users of one account.
#[derive(Debug, Default)]
pub struct Decided {
    pub exempt: HashMap<UserName, Exemption>,
    /// Rules that could not be checked (a read was denied), one line each.
    pub unknown: Vec<Note>,
}

/// The exemption of each of `users` in `account` at `as_of`: a recorded
/// one (`recorded`, the store's open exemptions) first, else the first
/// `[[exempt]]` rule that matches. Reads only what the rules in force need.
pub async fn decide(
    settings: &Settings,
    clients: &Clients,
    organization: &Clients,
    account: &AccountId,
    users: &[UserName],
    recorded: &[ExemptionRecord],
    as_of: jiff::Timestamp,
) -> Decided {
    let rules = &settings.file.exempt;
    let needs = rules.needs(as_of);
    let users_without_facts = users.iter().map(|name| User { account_id: account.clone(), name: name.clone(), arn: String::new(), tags: None, groups: None, keys: Vec::new() });
    let mut inventory = Inventory::of(users_without_facts.collect());
    // The scan's own reads: a call per user, several at once, or for many
    // users every user's details at once (one call per 1,000 in the
    // account), never for one user.
    let iam = Iam::new(clients);
    let fetch = Fetch { iam: &iam, concurrency: Scope::account(settings).concurrency, in_flight: None, progress: &() };
    let many = users.len() > 1;
    if needs.tags {
        fetch.fill_tags(&mut inventory, many, |_| true).await;
    }
    let (ous, unreadable) = read_rule_facts(&fetch, &mut inventory, organization, &needs, many, |_| true).await;
    let facts = inventory.users;
    let mut unknown = Vec::new();
    let mut by_rule = rule_exemptions(&facts, rules, ous.as_deref(), as_of, |_| true, &unreadable, &mut unknown);
    let mut exempt = HashMap::new();
    for name in users {
        let record = recorded.iter().find(|e| &e.account_id == account && &e.user_name == name && e.in_force(as_of)).map(recorded_exemption);
        let rule = by_rule.remove(&(account.to_string(), name.to_string()));
        if let Some(e) = choose(record, rule) {
            exempt.insert(name.clone(), e);
        }
    }
    for note in &mut unknown {
        note.account_id = Some(account.to_string());
    }
    Decided { exempt, unknown }
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
pub async fn mirror_rules(store: &SharedStore, settings: &Settings, accounts: &Accounts<'_>, account: Option<&AccountId>, term: &Terminal) -> anyhow::Result<()> {
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
