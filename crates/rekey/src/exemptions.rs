//! Whether named users are exempt right now, for the commands that act on
//! users rather than scan them: `rotate`/`retire` (refuse an exempt user)
//! and `run` (mirror `[[exempt]]` rules to Security Hub). The decision is
//! the scan's own ([`crate::scanning::rule_exemptions`] and
//! [`rekey_core::exempt::choose`]); only the reads differ: a few users
//! cost a call or two each, many one `GetAccountAuthorizationDetails` per
//! 1,000 users.

use crate::scanning::{recorded_exemption, rule_exemptions, Unreadable};
use crate::settings::Settings;
use rekey_aws::iam::USERS_PER_DETAILS_PAGE;
use rekey_aws::{Clients, Iam};
use rekey_core::exempt::choose;
use rekey_core::report::{Exemption, Note};
use rekey_core::{AccountId, User, UserName};
use rekey_store::ExemptionRecord;
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
    let mut facts: Vec<User> = users
        .iter()
        .map(|name| User { account_id: account.clone(), name: name.clone(), arn: String::new(), tags: None, groups: None, keys: Vec::new() })
        .collect();
    let mut unreadable = Unreadable::default();
    let mut ous = None;
    if !users.is_empty() && (needs.groups || needs.tags) {
        let iam = Iam::new(clients);
        let per_user = usize::from(needs.groups) + usize::from(needs.tags);
        let details = if users.len() * per_user > users.len().div_ceil(USERS_PER_DETAILS_PAGE) { iam.all_user_details().await.ok() } else { None };
        match details {
            Some(mut all) => {
                for user in &mut facts {
                    let d = all.remove(&user.name).unwrap_or_default();
                    (user.tags, user.groups) = (Some(d.tags), Some(d.groups));
                }
            }
            None => {
                for user in &mut facts {
                    if needs.groups && unreadable.groups.is_none() {
                        match iam.list_groups_for_user(&user.name).await {
                            Ok(groups) => user.groups = Some(groups),
                            Err(e) => unreadable.groups = Some(e),
                        }
                    }
                    if needs.tags && unreadable.tags.is_none() {
                        match iam.list_user_tags(&user.name).await {
                            Ok(tags) => user.tags = Some(tags),
                            Err(e) => unreadable.tags = Some(e),
                        }
                    }
                }
            }
        }
    }
    if !users.is_empty() && needs.ous {
        match rekey_aws::org::parents_of(organization, account).await {
            Ok(parents) => ous = Some(parents),
            Err(e) => unreadable.ous = Some(e),
        }
    }
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

