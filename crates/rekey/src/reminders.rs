//! Reminders on a cadence (`[notify] remind`): after each pass of the
//! engine, `rekey run` scans the account, asks `rekey_core::reminder` which
//! owners get a digest now, sends each to every channel, and records it in
//! the state store, so that nothing goes twice across runs, processes and
//! crashes. `rekey notify --dry-run` shows the same plan without sending.
//! The engine knows nothing of this: it happens after its pass.

use crate::commands::notify::Channel;
use crate::notices::UNOWNED;
use crate::scanning::{collect, Scope};
use crate::settings::Settings;
use crate::cli::AsOf;
use crate::terminal::Terminal;
use jiff::Timestamp;
use rekey_aws::sns::Sns;
use rekey_aws::Clients;
use rekey_core::model::whole_seconds;
use rekey_core::notice::{reminder_notice, Notice};
use rekey_core::reminder::{plan, Cadence, Held, KeyRef, Plan, Sent};
use rekey_core::report::ScanReport;
use rekey_core::{AccountId, UserName};
use rekey_engine::audit::Audit;
use rekey_store::{Change, KeyReminded, ReminderSent, RemindersSent, SharedStore};

/// The time reminders are planned, sent and recorded at: the system clock.
/// A debug build (the tests) may be told another with `REKEY_NOW` (RFC
/// 3339), to live through thirty days in minutes; a release build never
/// lets its environment move its clock.
pub fn now() -> anyhow::Result<Timestamp> {
    if cfg!(debug_assertions) {
        if let Ok(text) = std::env::var("REKEY_NOW") {
            let at: Timestamp = text.parse().map_err(|e| anyhow::anyhow!("REKEY_NOW {text:?} is not an RFC 3339 time: {e}"))?;
            return Ok(whole_seconds(at));
        }
    }
    Ok(whole_seconds(Timestamp::now()))
}

/// The account's keys as of `now`, for reminders.
pub async fn scan(settings: &Settings, clients: &Clients, term: &Terminal, now: Timestamp) -> anyhow::Result<ScanReport> {
    let scope = Scope { as_of: Some(AsOf::At(now)), ..Scope::account(settings) };
    collect(&scope, settings, clients, clients, &term.progress()).await
}

/// What the store says was sent, as the schedule reads it.
pub fn sent_from(store: &RemindersSent) -> Sent {
    Sent {
        owners: store.owners.iter().map(|o| (o.owner.clone(), o.last_sent_at)).collect(),
        keys: store
            .keys
            .iter()
            .map(|k| (KeyRef { account_id: k.account_id.to_string(), user_name: k.user_name.to_string(), created_at: k.key_created_at }, k.moment))
            .collect(),
    }
}

/// The digests due at `now` and the owners held back, each digest as the
/// notice its owner reads.
pub fn due(report: &ScanReport, settings: &Settings, cadence: &Cadence, sent: &Sent, now: Timestamp) -> anyhow::Result<(Plan, Vec<Notice>)> {
    let owners = settings.owners_map()?;
    let contact = |o: Option<&str>| o.and_then(|o| owners.as_ref()?.contact_for(o)).map(str::to_owned);
    let plan = plan(&report.keys, settings.policy.max_age, cadence, sent, now);
    let notices = plan.digests.iter().map(|d| reminder_notice(d, now, contact(d.owner.as_deref()))).collect();
    Ok((plan, notices))
}

/// What one pass of reminders did.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Owners who got a digest on at least one channel.
    pub sent: usize,
    pub held: Vec<Held>,
    /// Owners whose digest another runner claimed first.
    pub claimed_elsewhere: usize,
    /// A channel that failed, or a scan error: reported, exit 2.
    pub failures: Vec<String>,
}

/// Sends the digests due now and records each one sent. Each is claimed
/// first (the owner's last digest moved to now, if no other runner moved
/// it since this one read it), so two runners passing at once send it
/// once. A digest is recorded once a channel took it (the others'
/// failures are reported); one no channel took is given back, and goes
/// again on the next pass. A crash between the claim and the record holds
/// the owner's next digest for `min_interval`: late rather than twice.
pub async fn send_due(store: &SharedStore, settings: &Settings, cadence: &Cadence, clients: &Clients, term: &Terminal) -> anyhow::Result<Outcome> {
    let now = now()?;
    let report = scan(settings, clients, term, now).await?;
    let sent = sent_from(&store.reminders_sent().await?);
    let (plan, notices) = due(&report, settings, cadence, &sent, now)?;
    let channels = Channel::all(&settings.file.notify);
    let sns = Sns::new(clients);
    let mut outcome = Outcome { held: plan.held, ..Outcome::default() };
    // Keys the scan could not read get their reminders on a later pass.
    outcome.failures.extend(report.errors.iter().map(|e| format!("reminders: the scan could not read {}: {}", e.user_name.as_deref().unwrap_or("the account"), e.message)));
    for (digest, notice) in plan.digests.iter().zip(&notices) {
        let owner = digest.owner.as_deref().unwrap_or(UNOWNED);
        let read = sent.owners.get(&digest.owner).copied();
        if !store.swap_last_reminder(digest.owner.as_deref(), read, Some(now)).await? {
            outcome.claimed_elsewhere += 1;
            continue;
        }
        let mut took = Vec::new();
        for channel in &channels {
            match channel.send(notice, now, &sns).await {
                Ok(()) => took.push(channel.name().to_owned()),
                Err(e) => outcome.failures.push(format!("reminder to {owner} via {}: {e}", channel.describe())),
            }
        }
        if took.is_empty() {
            store.swap_last_reminder(digest.owner.as_deref(), Some(now), read).await?;
            continue;
        }
        let keys = digest
            .keys
            .iter()
            .map(|(row, due)| KeyReminded { account_id: AccountId::new(&row.account_id), user_name: UserName::new(&row.user_name), key_created_at: row.created_at, moment: due.moment })
            .collect();
        let lines = digest.keys.iter().map(|(row, due)| format!("{} in {}: {}", row.user_name, row.account_id, due.reminder.label())).collect();
        let reminded = Audit::OwnerReminded { owner: digest.owner.clone(), channels: took, keys: lines };
        let change = Change { reminders: vec![ReminderSent { owner: digest.owner.clone(), keys }], audit: vec![reminded.about_owners(now, &settings.actor)], ..Change::default() };
        store.record(&change, now, &settings.actor).await?;
        outcome.sent += 1;
    }
    if outcome.sent > 0 || outcome.claimed_elsewhere > 0 || !outcome.held.is_empty() {
        term.info(&summary(&outcome));
    }
    Ok(outcome)
}

/// `reminded 2 owners; 1 held back by min_interval (next at ...)`.
fn summary(outcome: &Outcome) -> String {
    let mut line = format!("reminded {}", crate::table::count(outcome.sent, "owner"));
    if outcome.claimed_elsewhere > 0 {
        line += &format!("; {} by another runner at the same time", crate::table::count(outcome.claimed_elsewhere, "owner"));
    }
    if let Some(next) = outcome.held.iter().map(|h| h.until).min() {
        line += &format!("; {} held back by notify.min_interval (next at {next})", crate::table::count(outcome.held.len(), "owner"));
    }
    line
}
