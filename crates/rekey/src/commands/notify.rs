//! `rekey notify`: each owner's notice (see `rekey owners`) sent to every
//! configured channel (SNS topic, webhook, files), recorded so the same
//! notice is not sent again within `notify.resend_after`, and the owners'
//! findings marked NOTIFIED with a note. `--dry-run` sends and records
//! nothing.

use crate::accounts::Accounts;
use crate::cli::{ListFormat, NotifyArgs};
use crate::hub;
use crate::notices::{owner_notices, UNOWNED};
use crate::scanning::tell_problems;
use crate::settings::{NotifySection, Settings};
use crate::table::count;
use crate::terminal::Terminal;
use anyhow::bail;
use jiff::Timestamp;
use rekey_aws::sns::Sns;
use rekey_aws::Clients;
use rekey_core::asff::truncate_chars;
use rekey_core::hub::{note_text, Workflow};
use rekey_core::notice::Notice;
use rekey_core::reminder::Held;
use rekey_core::{AccountId, Duration, UserName};
use rekey_engine::audit::Audit;
use rekey_store::{Change, NewFindingUpdate, NoticeRecord, SharedStore};
use std::path::Path;
use std::time::Instant;

/// The same notice is not sent again within this long, unless configured.
const DEFAULT_RESEND_AFTER: Duration = Duration::from_days(7);
/// SNS limits a subject to 100 characters.
const SNS_SUBJECT_MAX: usize = 100;
const WEBHOOK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Where notices (and reminders) go.
pub(crate) enum Channel<'a> {
    Sns(&'a str),
    Webhook(&'a str),
    Files(&'a Path),
}

impl Channel<'_> {
    pub(crate) fn all(section: &NotifySection) -> Vec<Channel<'_>> {
        let mut channels = Vec::new();
        channels.extend(section.sns_topic_arn.as_deref().map(Channel::Sns));
        channels.extend(section.webhook_url.as_deref().map(Channel::Webhook));
        channels.extend(section.out_dir.as_deref().map(Channel::Files));
        channels
    }

    pub(crate) fn name(&self) -> &'static str {
        match self {
            Channel::Sns(_) => "sns",
            Channel::Webhook(_) => "webhook",
            Channel::Files(_) => "files",
        }
    }

    pub(crate) fn describe(&self) -> String {
        match self {
            Channel::Sns(arn) => format!("SNS topic {arn}"),
            Channel::Webhook(url) => format!("webhook {}", redacted(url)),
            Channel::Files(dir) => format!("files in {}", dir.display()),
        }
    }

    pub(crate) async fn send(&self, notice: &Notice, as_of: Timestamp, sns: &Sns) -> Result<(), String> {
        let owner = notice.owner.as_deref().unwrap_or(UNOWNED);
        match self {
            Channel::Sns(topic) => {
                let subject = truncate_chars(&notice.subject(), SNS_SUBJECT_MAX);
                let attributes = [("owner", owner), ("digest", &notice.digest())];
                sns.publish(topic, &subject, &notice.text(as_of), &attributes).await.map(drop).map_err(|e| e.to_string())
            }
            Channel::Webhook(url) => {
                // `text` is what Slack and its look-alikes show; the rest is for scripts.
                let body = serde_json::json!({
                    "text": notice.text(as_of),
                    "subject": notice.subject(),
                    "owner": notice.owner,
                    "contact": notice.contact,
                    "keys": notice.keys,
                });
                rekey_engine::http::post_json(url, &body, Instant::now() + WEBHOOK_TIMEOUT).await.map_err(|e| redacted(&e))
            }
            Channel::Files(dir) => {
                let stem = file_stem(owner);
                crate::output::write_atomically(&dir.join(format!("{stem}.md")), &notice.text(as_of), false)?;
                crate::output::write_atomically(&dir.join(format!("{stem}.html")), &notice.html(as_of), false)
            }
        }
    }
}

pub async fn run(args: NotifyArgs, settings: &Settings, term: &Terminal) -> anyhow::Result<u8> {
    let section = &settings.file.notify;
    let channels = Channel::all(section);
    if channels.is_empty() && !args.dry_run {
        bail!("no notice channel: set notify.sns_topic_arn, notify.webhook_url or notify.out_dir in rekey.toml (or try --dry-run)");
    }
    let resend_after = section.resend_after.unwrap_or(DEFAULT_RESEND_AFTER);
    let clients = Clients::new(&settings.aws).await;
    // The reminders' clock (see `crate::reminders::now`): the system's.
    let now = crate::reminders::now()?;
    let mut report = crate::reminders::scan(settings, &clients, term, now).await?;
    if args.consumers {
        crate::trail::fill_consumers(&mut report, settings, &Accounts::new(&clients, settings, None)).await;
    }
    let notices = owner_notices(&report, settings, args.owner.as_deref())?;
    // A dry run never creates the store, and only reads it; a real one
    // records what it sent.
    let store = match (args.dry_run, settings.state_exists()) {
        (true, false) => None,
        (true, true) => {
            let (store, warning) = crate::store::open_store_to_read(settings).await?;
            if let Some(warning) = warning {
                term.warn(&warning);
            }
            Some(store)
        }
        (false, _) => Some(crate::store::open_store(settings).await?),
    };
    async fn last_sent(store: Option<&SharedStore>, n: &Notice) -> anyhow::Result<Option<Timestamp>> {
        Ok(match store {
            Some(store) => store.last_notice(&n.digest()).await?,
            None => None,
        })
    }
    let recent = |sent: Option<Timestamp>| !args.force && sent.is_some_and(|at| now < at + resend_after.to_signed());

    if args.dry_run {
        let mut planned = Vec::new();
        for n in &notices {
            let sent = last_sent(store.as_ref(), n).await?;
            planned.push((n, sent, !recent(sent)));
        }
        let reminders = match &settings.reminders {
            Some(cadence) => {
                let sent = match &store {
                    Some(store) => crate::reminders::sent_from(&store.reminders_sent().await?),
                    None => Default::default(),
                };
                let (plan, notices) = crate::reminders::due(&report, settings, cadence, &sent, now)?;
                let only = |owner: &Option<String>| args.owner.as_deref().is_none_or(|o| owner.as_deref().unwrap_or(UNOWNED) == o);
                let due = notices.into_iter().filter(|n| only(&n.owner)).collect();
                let held = plan.held.into_iter().filter(|h| only(&h.owner)).collect();
                Some((due, held))
            }
            None => None,
        };
        print_dry_run(&planned, reminders.as_ref(), &channels, report.as_of, args.format)?;
        tell_problems(&report, term);
        return Ok(if report.errors.is_empty() { 0 } else { 2 });
    }
    // invariant: the store is None only in a dry run, which returned above
    let store = store.as_ref().expect("opened unless a dry run");
    let mirror = settings.file.securityhub.enabled;
    let sns = Sns::new(&clients);
    let (mut sent, mut skipped, mut failures) = (0, 0, Vec::new());
    for notice in &notices {
        if recent(last_sent(Some(store), notice).await?) {
            skipped += 1;
            continue;
        }
        let owner = notice.owner.as_deref().unwrap_or(UNOWNED);
        let mut change = Change::default();
        for channel in &channels {
            match channel.send(notice, report.as_of, &sns).await {
                Ok(()) => change.notices.push(NoticeRecord {
                    owner: notice.owner.clone(),
                    channel: channel.name().to_owned(),
                    digest: notice.digest(),
                    keys: notice.keys.len(),
                }),
                Err(e) => failures.push(format!("{owner} via {}: {e}", channel.describe())),
            }
        }
        if change.notices.is_empty() {
            continue;
        }
        sent += 1;
        let channels: Vec<String> = change.notices.iter().map(|n| n.channel.clone()).collect();
        let via = channels.join(", ");
        let notified = Audit::OwnerNotified { owner: notice.owner.clone(), channels, digest: notice.digest(), keys: notice.keys.len() };
        change.audit.push(notified.about_owners(now, &settings.actor));
        if mirror {
            let note = note_text(&format!("rekey notified {owner} ({}) on {}: rotate, suppress with a reason, or deactivate", via, now.strftime("%Y-%m-%d")));
            let mut users: Vec<(&str, &str)> = notice.keys.iter().map(|k| (k.account_id.as_str(), k.user_name.as_str())).collect();
            users.dedup();
            change.finding_updates.extend(users.into_iter().map(|(account, user)| NewFindingUpdate {
                account_id: AccountId::new(account),
                user_name: UserName::new(user),
                workflow: Some(Workflow::Notified),
                note: note.clone(),
            }));
        }
        store.record(&change, now, &settings.actor).await?;
    }
    let mut line = format!("notified {}", count(sent, "owner"));
    if skipped > 0 {
        line += &format!("; {skipped} skipped: the same notice went out within {resend_after} (--force sends it again)");
    }
    term.info(&line);
    let flushed = hub::flush(store, &Accounts::new(&clients, settings, None), settings).await?;
    if !flushed.failed.is_empty() {
        failures.push(flushed.summary());
    }
    term.report_calls(clients.calls());
    tell_problems(&report, term);
    for f in &failures {
        term.error(f);
    }
    Ok(if failures.is_empty() && report.errors.is_empty() { 0 } else { 2 })
}

/// The reminder digests due now (as notices) and the owners held back by
/// `min_interval`: what `rekey run` would send.
type DueReminders = (Vec<Notice>, Vec<Held>);

fn print_dry_run(planned: &[(&Notice, Option<Timestamp>, bool)], reminders: Option<&DueReminders>, channels: &[Channel<'_>], as_of: Timestamp, format: ListFormat) -> anyhow::Result<()> {
    let via: Vec<String> = channels.iter().map(Channel::describe).collect();
    match format {
        ListFormat::Json => {
            let items: Vec<_> = planned
                .iter()
                .map(|(n, last, send)| {
                    serde_json::json!({
                        "owner": n.owner, "contact": n.contact, "subject": n.subject(), "digest": n.digest(),
                        "would_send": send, "last_sent_at": last, "channels": via, "text": n.text(as_of), "keys": n.keys,
                    })
                })
                .collect();
            let mut out = serde_json::json!({"dry_run": true, "notices": items});
            // Only with `[notify] remind`: notify's output is otherwise as before.
            if let Some((due, held)) = reminders {
                let due: Vec<_> = due
                    .iter()
                    .map(|n| serde_json::json!({"owner": n.owner, "contact": n.contact, "subject": n.subject(), "channels": via, "text": n.text(as_of), "keys": n.keys}))
                    .collect();
                let held: Vec<_> = held.iter().map(|h| serde_json::json!({"owner": h.owner, "keys": h.keys, "until": h.until})).collect();
                out["reminders"] = serde_json::json!({"due": due, "held": held});
            }
            outln!("{}", serde_json::to_string_pretty(&out)?)?;
        }
        ListFormat::Table => {
            if planned.is_empty() {
                outln!("No FAILED or WARNING keys: no notice to send.")?;
            }
            let via = if via.is_empty() { "no channel configured".to_owned() } else { via.join(", ") };
            for (n, last, send) in planned {
                let to = n.contact.as_deref().map(|c| format!(" <{c}>")).unwrap_or_default();
                let status = match (send, last) {
                    (true, _) => "would send".to_owned(),
                    (false, Some(at)) => format!("would skip: sent at {at}"),
                    (false, None) => "would skip".to_owned(),
                };
                outln!("To: {}{to} via {via} ({status})\nSubject: {}\n\n{}\n", n.owner.as_deref().unwrap_or(UNOWNED), n.subject(), n.text(as_of))?;
            }
            if let Some((due, held)) = reminders {
                print_reminders(due, held, &via)?;
            }
        }
    }
    Ok(())
}

/// For people: who `rekey run` would remind now, of which keys, with
/// which reminder; and who waits for `min_interval`.
fn print_reminders(due: &[Notice], held: &[Held], via: &str) -> anyhow::Result<()> {
    outln!("Reminders (notify.remind) that `rekey run` would send now:")?;
    if due.is_empty() && held.is_empty() {
        outln!("  none due")?;
    }
    for n in due {
        let to = n.contact.as_deref().map(|c| format!(" <{c}>")).unwrap_or_default();
        outln!("  To: {}{to} via {via}", n.owner.as_deref().unwrap_or(UNOWNED))?;
        for k in &n.keys {
            let key = k.access_key_id.as_deref().map(|id| format!(", key {id}")).unwrap_or_default();
            let which = k.reminder.as_ref().map(|r| r.label.as_str()).unwrap_or_default();
            outln!("    - {} in account {}{key}: {which}", k.user_name, k.account_id)?;
        }
    }
    for h in held {
        outln!("  Held: {} ({}) until {}: notify.min_interval since the last reminder", h.owner.as_deref().unwrap_or(UNOWNED), count(h.keys, "key"), h.until)?;
    }
    Ok(())
}

/// A file name from an owner name: itself when it is plain, else its plain
/// characters and a hash, so two owners never share a file.
fn file_stem(owner: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "._-".contains(c);
    if !owner.is_empty() && !owner.starts_with('.') && owner.chars().all(plain) {
        return owner.to_owned();
    }
    let cleaned: String = owner.chars().map(|c| if plain(c) { c } else { '_' }).collect();
    let hash = owner.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
    format!("{}-{hash:016x}", cleaned.trim_start_matches('.'))
}


/// A webhook URL's path and query often hold its secret token.
fn redacted(text: &str) -> String {
    text.split_whitespace()
        .map(|word| match word.find("://").and_then(|i| word[i + 3..].find('/').map(|j| i + 3 + j)) {
            Some(path) => format!("{}/…", &word[..path]),
            None => word.to_owned(),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_are_plain_and_distinct() {
        assert_eq!(file_stem("team-payments"), "team-payments");
        assert_ne!(file_stem("a/b"), file_stem("a_b"));
        assert!(file_stem("../etc").chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)));
        assert!(!file_stem("..").starts_with('.'));
    }

    #[test]
    fn webhook_tokens_are_not_printed() {
        assert_eq!(redacted("https://hooks.example.com/services/T000/B000/XXXX"), "https://hooks.example.com/…");
        assert_eq!(redacted("\"http://127.0.0.1:9/x?token=1\" answered 500"), "\"http://127.0.0.1:9/… answered 500");
    }
}
