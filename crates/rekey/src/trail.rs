//! Consumers of keys from CloudTrail, for `rekey consumers` and `scan`,
//! `owners`, `notify --consumers`: the configured regions of each account.

use crate::accounts::Accounts;
use crate::settings::Settings;
use futures::stream::{self, StreamExt};
use jiff::Timestamp;
use rekey_aws::cloudtrail::{Trails, HISTORY};
use rekey_aws::{AwsError, Clients};
use rekey_core::consumers::{consumers, role_reason, TrailEvent};
use rekey_core::role_plan::PlanEvent;
use rekey_core::report::{ConsumerCount, Note, ScanReport};
use rekey_core::{AccountId, Compliance};
use std::collections::{BTreeMap, HashMap};

/// CloudTrail in each configured region of `clients`' account.
pub fn trails(settings: &Settings, clients: &Clients) -> Trails {
    Trails::new(clients, &settings.file.cloudtrail.regions(&clients.region()))
}

/// The events of `keys` since `from`, with a warning for events that could
/// not be read.
pub async fn events(trails: &Trails, keys: &[String], from: Timestamp) -> Result<Read, AwsError> {
    let found = trails.events(keys, from).await?;
    let warnings = match found.unreadable {
        0 => Vec::new(),
        n => vec![format!("{n} CloudTrail events could not be read and are not counted")],
    };
    Ok((found.events, warnings))
}

/// The events of `keys` since `from` as role plans read them, with a
/// warning for events that could not be read (they make one consumer of
/// unknown compute).
pub async fn plan_events(trails: &Trails, keys: &[String], from: Timestamp) -> Result<(Vec<PlanEvent>, Vec<String>), AwsError> {
    let events = trails.plan_events(keys, from).await?;
    let warnings = match events.iter().filter(|e| !e.readable).count() {
        0 => Vec::new(),
        n => vec![format!("{n} CloudTrail events could not be read: their consumer is unknown, and so is its compute")],
    };
    Ok((events, warnings))
}

/// Events read, and warnings about the ones that could not be.
type Read = (Vec<TrailEvent>, Vec<String>);

/// Fills in the consumers of the report's FAILED and WARNING keys (the
/// only ones a person must decide on, which keeps CloudTrail's 2 requests a
/// second per region affordable), and marks a key whose consumers all run
/// inside AWS as a role candidate. An account whose event history cannot
/// be read gets one warning; its keys keep `consumers: null`.
pub async fn fill_consumers(report: &mut ScanReport, settings: &Settings, accounts: &Accounts<'_>) {
    let mut by_account: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for k in report.keys.iter().filter(|k| matches!(k.result, Compliance::Failed | Compliance::Warning)) {
        if let Some(id) = &k.access_key_id {
            by_account.entry(k.account_id.clone()).or_default().push(id.clone());
        }
    }
    let from = Timestamp::now() - HISTORY;
    // Accounts have their own budgets: read `[org] concurrency` at once.
    let found: Vec<(String, anyhow::Result<Read>)> = stream::iter(by_account)
        .map(|(account, keys)| async move {
            let read = async {
                let clients = accounts.clients_for(&AccountId::new(account.as_str())).await?;
                Ok::<_, anyhow::Error>(events(&trails(settings, &clients), &keys, from).await?)
            }
            .await;
            (account, read)
        })
        .buffer_unordered(settings.account_concurrency())
        .collect()
        .await;
    for (account, read) in found {
        match read {
            Ok((events, warnings)) => {
                let mut of_key: HashMap<String, Vec<TrailEvent>> = HashMap::new();
                for e in events {
                    of_key.entry(e.access_key_id.clone()).or_default().push(e);
                }
                for key in report.keys.iter_mut().filter(|k| k.account_id == account && matches!(k.result, Compliance::Failed | Compliance::Warning)) {
                    let Some(id) = &key.access_key_id else { continue };
                    let found = consumers(of_key.get(id).map(Vec::as_slice).unwrap_or_default());
                    if let Some(reason) = role_reason(&found) {
                        key.role_candidate = true;
                        key.role_reason = Some(reason);
                    }
                    key.consumers = Some(Box::new(ConsumerCount::of(found)));
                }
                report.warnings.extend(warnings.into_iter().map(|message| Note { account_id: Some(account.clone()), message, ..Note::default() }));
            }
            Err(e) => report.warnings.push(Note {
                account_id: Some(account.clone()),
                message: format!("consumers are unknown (null): CloudTrail's event history cannot be read in account {account} ({e:#}); the last use shown comes from IAM"),
                ..Note::default()
            }),
        }
    }
}
