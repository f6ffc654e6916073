//! Security Hub from the commands' side: sending the store's outbox of
//! finding updates (exemptions, notices, rotation notes) in batches, and
//! importing rekey's own findings.
//!
//! The outbox is sent in order per user: a user's later update never
//! overtakes an earlier one that failed, so a retried suppression cannot
//! land after the unsuppression that followed it.

use crate::accounts::Accounts;
use crate::settings::Settings;
use crate::table::count;
use crate::terminal::Terminal;
use jiff::Timestamp;
use rekey_aws::securityhub::{to_sdk, Finding, FindingQuery, SecurityHub, Unprocessed, UPDATE_BATCH};
use rekey_aws::{AwsError, Clients};
use rekey_core::asff::{self, AsffContext};
use rekey_core::hub::Workflow;
use rekey_core::report::ScanReport;
use rekey_core::{AccountId, UserName};
use rekey_engine::audit::Audit;
use rekey_store::{FindingUpdate, SharedStore};
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::time::Duration;

/// Unprocessed findings are retried this many times within one command;
/// after that the update stays in the outbox for the next `rekey run`.
const UNPROCESSED_ATTEMPTS: u32 = 3;

/// Security Hub as configured, or `None` when `securityhub.enabled = false`.
pub fn client(settings: &Settings, clients: &Clients) -> Option<SecurityHub> {
    settings.file.securityhub.enabled.then(|| client_in(settings, clients))
}

/// Security Hub in the configured region, for `clients`' account.
fn client_in(settings: &Settings, clients: &Clients) -> SecurityHub {
    SecurityHub::new(clients, settings.file.securityhub.region.as_deref())
}

/// The region whose Security Hub holds the findings.
pub fn region(settings: &Settings, clients: &Clients) -> String {
    settings.file.securityhub.region.clone().unwrap_or_else(|| clients.region())
}

/// Security Hub's rate for `BatchImportFindings` is 10 requests a second:
/// a little slower, so no one-second window ever holds 11.
const IMPORT_INTERVAL: Duration = Duration::from_millis(110);
/// Findings in one `BatchImportFindings`.
const IMPORT_BATCH: usize = 100;

/// `scan --import-findings`: the report's findings (one per user) sent to
/// the Security Hub of each one's account with `BatchImportFindings`, 100 a
/// call, at most 10 calls a second. A finding Security Hub refuses is an
/// error naming it.
pub async fn import(report: &ScanReport, settings: &Settings, accounts: &Accounts<'_>, term: &Terminal) -> anyhow::Result<()> {
    if !settings.file.securityhub.enabled {
        anyhow::bail!("--import-findings sends findings to Security Hub, which is off in rekey.toml (securityhub.enabled = false)");
    }
    let ctx = AsffContext::new(&region(settings, accounts.own_clients()), report.generated_at);
    let mut by_account: BTreeMap<String, Vec<_>> = BTreeMap::new();
    for finding in asff::findings(&report.keys, &ctx) {
        by_account.entry(finding.aws_account_id.clone()).or_default().push(to_sdk(&finding));
    }
    let total: usize = by_account.values().map(Vec::len).sum();
    let mut refused = Vec::new();
    for (account, findings) in by_account {
        let hub = client_in(settings, &accounts.clients_for(&AccountId::new(account.as_str())).await?);
        let mut pace = tokio::time::interval(IMPORT_INTERVAL);
        for batch in findings.chunks(IMPORT_BATCH) {
            pace.tick().await;
            refused.extend(hub.import(batch.to_vec()).await?);
        }
    }
    if !refused.is_empty() {
        let lines: Vec<String> = refused.iter().map(|u| format!("{} ({}: {})", u.finding_id, u.code, u.message)).collect();
        anyhow::bail!("Security Hub refused {} of {total}: {}", count(refused.len(), "finding"), lines.join("; "));
    }
    term.info(&format!("imported {} into Security Hub", count(total, "finding")));
    Ok(())
}

/// What one [`flush`] did.
#[derive(Debug, Default)]
pub struct Flushed {
    /// Findings updated.
    pub updated: usize,
    /// Users with an update but no active IAM.3 finding to put it on.
    pub without_finding: Vec<String>,
    /// Why updates stay in the outbox, one line per user or account.
    pub failed: Vec<String>,
}

impl Flushed {
    /// One line for people, with what is left for the next run.
    pub fn summary(&self) -> String {
        let mut line = format!("{} updated in Security Hub", count(self.updated, "finding"));
        if !self.without_finding.is_empty() {
            line += &format!("; no IAM.3 finding yet for {} (Security Hub evaluates IAM.3 about twice a day)", self.without_finding.join(", "));
        }
        if !self.failed.is_empty() {
            line += &format!("; {} kept for the next `rekey run`: {}", count(self.failed.len(), "update"), self.failed.join("; "));
        }
        line
    }
}

/// Sends every pending finding update, each to the Security Hub of its
/// account. Failures stay pending (and are audited); they never fail the
/// caller's own change, which is already saved. Nothing when Security Hub
/// is off in rekey.toml.
pub async fn flush(store: &SharedStore, accounts: &Accounts<'_>, settings: &Settings) -> anyhow::Result<Flushed> {
    flush_settled(store, accounts, settings, &|_, _| true).await
}

/// [`flush`], of the users `settled` says are (given a user and the time
/// of their newest pending update): a rotation a pass is still moving
/// writes a note per stage, and Security Hub keeps only the last, so
/// sending the first would spend its quota for nothing.
async fn flush_settled(store: &SharedStore, accounts: &Accounts<'_>, settings: &Settings, settled: &dyn Fn(&(AccountId, UserName), Timestamp) -> bool) -> anyhow::Result<Flushed> {
    let actor = settings.actor.as_str();
    if !settings.file.securityhub.enabled {
        return Ok(Flushed::default());
    }
    let mut flushed = Flushed::default();
    let pending = store.pending_finding_updates().await?;
    let user = |u: &FindingUpdate| (u.update.account_id.clone(), u.update.user_name.clone());
    let mut newest: HashMap<(AccountId, UserName), Timestamp> = HashMap::new();
    for u in &pending {
        let at = newest.entry(user(u)).or_insert(u.created_at);
        *at = (*at).max(u.created_at);
    }
    let mut by_account: BTreeMap<AccountId, Vec<FindingUpdate>> = BTreeMap::new();
    for update in pending.iter().filter(|u| {
        let user = user(u);
        settled(&user, newest[&user])
    }) {
        by_account.entry(update.update.account_id.clone()).or_default().push(update.clone());
    }
    for (account, updates) in by_account {
        let outcome = match accounts.clients_for(&account).await {
            Ok(clients) => flush_account(&client_in(settings, &clients), actor, account.as_str(), &updates).await,
            Err(e) => AccountOutcome { failed: [(format!("{e:#}"), updates.iter().map(|u| u.seq).collect())].into(), ..AccountOutcome::default() },
        };
        let now = Timestamp::now();
        store.finding_updates_sent(&outcome.sent, now).await?;
        for (error, seqs) in &outcome.failed {
            let users: Vec<String> = updates.iter().filter(|u| seqs.contains(&u.seq)).map(|u| u.update.user_name.to_string()).collect();
            let failed = Audit::FindingUpdateFailed { account_id: account.to_string(), users: users.clone(), error: error.clone(), pending: seqs.len() };
            let line = failed.about_owners(now, actor);
            store.finding_updates_failed(seqs, error, &[line]).await?;
            flushed.failed.push(format!("{}: {error}", users.join(", ")));
        }
        flushed.updated += outcome.updated;
        flushed.without_finding.extend(outcome.without_finding);
    }
    Ok(flushed)
}

/// How often the outbox is sent while a pass runs.
const FLUSH_EVERY: Duration = Duration::from_millis(250);
/// While a pass runs, a user's notes are sent once the engine said its
/// rotation's advance ended (`settled`), or it wrote none for this long.
const SETTLED_FOR: jiff::SignedDuration = jiff::SignedDuration::from_secs(2);

/// Runs `work` (a pass of the engine) while sending the outbox as it
/// fills: Security Hub's quota (10 updates a second) is spent during the
/// pass instead of after it. `settled` hears from the engines which users'
/// rotations are done for this pass (see `Setup::settled`). After a
/// failure it sends nothing more until the caller's own [`flush`] after
/// `work`, which reports it.
pub async fn flushing_while<T>(
    store: &SharedStore,
    accounts: &Accounts<'_>,
    settings: &Settings,
    mut settled: tokio::sync::mpsc::UnboundedReceiver<(AccountId, UserName)>,
    work: impl std::future::Future<Output = T>,
) -> T {
    if !settings.file.securityhub.enabled {
        return work.await;
    }
    let (done, mut finished) = tokio::sync::watch::channel(false);
    let work = async move {
        let out = work.await;
        // The flusher may have stopped listening: nothing to tell then.
        let _ = done.send(true);
        out
    };
    let flusher = async {
        let mut done = HashSet::new();
        loop {
            tokio::select! {
                _ = finished.changed() => break,
                () = tokio::time::sleep(FLUSH_EVERY) => {}
            }
            while let Ok(user) = settled.try_recv() {
                done.insert(user);
            }
            let quiet_before = Timestamp::now() - SETTLED_FOR;
            // A failure is kept in the outbox and audited by flush; the
            // flushes of this pass stop there (one audit line, not one
            // every 250 ms), and the caller's own flush reports it.
            match flush_settled(store, accounts, settings, &|user, newest| done.contains(user) || newest < quiet_before).await {
                Ok(flushed) if flushed.failed.is_empty() => {}
                _ => break,
            }
        }
    };
    tokio::join!(work, flusher).0
}

#[derive(Default)]
struct AccountOutcome {
    sent: Vec<i64>,
    /// Error → the updates it kept back.
    failed: BTreeMap<String, Vec<i64>>,
    updated: usize,
    without_finding: Vec<String>,
}

async fn flush_account(hub: &SecurityHub, actor: &str, account: &str, updates: &[FindingUpdate]) -> AccountOutcome {
    let mut outcome = AccountOutcome::default();
    let mut queues: BTreeMap<&str, VecDeque<&FindingUpdate>> = BTreeMap::new();
    for u in updates {
        queues.entry(u.update.user_name.as_str()).or_default().push_back(u);
    }
    let users: Vec<String> = queues.keys().map(|u| (*u).to_owned()).collect();
    let query = FindingQuery { account_id: Some(account.to_owned()), users, ..FindingQuery::default() };
    let findings = match hub.iam3_findings(&query).await {
        Ok(findings) => findings,
        Err(e) => {
            outcome.failed.insert(e.to_string(), updates.iter().map(|u| u.seq).collect());
            return outcome;
        }
    };
    let mut of_user: HashMap<&str, Vec<&Finding>> = HashMap::new();
    for f in &findings {
        of_user.entry(f.user_name.as_str()).or_default().push(f);
    }

    // Rounds: each user's oldest pending update; a user whose update
    // failed sits out the rest, keeping its order for the next run.
    let mut stopped: HashSet<&str> = HashSet::new();
    loop {
        let heads: Vec<Head> = queues.iter_mut().filter(|(user, _)| !stopped.contains(*user)).filter_map(|(_, queue)| next_head(queue)).collect();
        if heads.is_empty() {
            break;
        }
        let mut groups: BTreeMap<(Option<Workflow>, &str), Vec<Head>> = BTreeMap::new();
        for head in heads {
            match of_user.get(head.last.update.user_name.as_str()) {
                Some(_) => groups.entry((head.last.update.workflow, head.last.update.note.as_str())).or_default().push(head),
                None => {
                    outcome.sent.extend(&head.seqs);
                    let user = head.last.update.user_name.to_string();
                    if !outcome.without_finding.contains(&user) {
                        outcome.without_finding.push(user);
                    }
                }
            }
        }
        // The groups of a round are other users' updates: sent at once,
        // as fast as Security Hub's quota lets (the pacer in `hub.update`).
        let sends = groups.iter().map(|((workflow, note), group)| {
            let targets: Vec<&Finding> = group.iter().flat_map(|h| of_user[h.last.update.user_name.as_str()].iter().copied()).collect();
            async move { update_all(hub, &targets, *workflow, note, actor).await }
        });
        let results = futures::future::join_all(sends).await;
        for (group, (updated, failed)) in groups.into_values().zip(results) {
            outcome.updated += updated;
            for head in group {
                match failed.get(head.last.update.user_name.as_str()) {
                    None => outcome.sent.extend(&head.seqs),
                    Some(error) => {
                        outcome.failed.entry(error.clone()).or_default().extend(&head.seqs);
                        stopped.insert(head.last.update.user_name.as_str());
                    }
                }
            }
        }
    }
    // Updates queued behind a failed one stay pending, in order.
    outcome
}

/// What one round sends for a user: its oldest pending update, or a run of
/// notes without a status change (a rotation's stages), of which Security
/// Hub would keep only the last anyway (the audit log keeps them all).
struct Head<'u> {
    seqs: Vec<i64>,
    last: &'u FindingUpdate,
}

fn next_head<'u>(queue: &mut VecDeque<&'u FindingUpdate>) -> Option<Head<'u>> {
    let first = queue.pop_front()?;
    let mut head = Head { seqs: vec![first.seq], last: first };
    while head.last.update.workflow.is_none() && queue.front().is_some_and(|next| next.update.workflow.is_none()) {
        // invariant: front() was just Some
        head.last = queue.pop_front().expect("just seen");
        head.seqs.push(head.last.seq);
    }
    Some(head)
}

/// Updates `targets` in batches of at most 100: the workflow status where
/// it applies, the note on all. Retries what Security Hub leaves
/// unprocessed; returns how many findings it updated, and the users whose
/// findings still failed, with why.
async fn update_all(hub: &SecurityHub, targets: &[&Finding], workflow: Option<Workflow>, note: &str, by: &str) -> (usize, HashMap<String, String>) {
    let (with_status, note_only): (Vec<&Finding>, Vec<&Finding>) =
        targets.iter().partition(|f| workflow.is_some_and(|w| w.applies_to(f.workflow_status)));
    let (mut updated, mut failed) = (0, HashMap::new());
    for (set, status) in [(with_status, workflow), (note_only, None)] {
        for batch in set.chunks(UPDATE_BATCH) {
            let mut left: Vec<&Finding> = batch.to_vec();
            for attempt in 1..=UNPROCESSED_ATTEMPTS {
                match hub.update(&left, status, note, by).await {
                    Ok(unprocessed) => {
                        updated += left.len() - unprocessed.len();
                        left.retain(|f| unprocessed.iter().any(|u| u.finding_id == f.id));
                        if left.is_empty() {
                            break;
                        }
                        if attempt == UNPROCESSED_ATTEMPTS {
                            for f in &left {
                                let why = unprocessed.iter().find(|u| u.finding_id == f.id).map(describe).unwrap_or_default();
                                failed.insert(f.user_name.clone(), why);
                            }
                        } else {
                            tokio::time::sleep(Duration::from_secs(u64::from(attempt))).await;
                        }
                    }
                    Err(e) => {
                        for f in &left {
                            failed.insert(f.user_name.clone(), e.to_string());
                        }
                        break;
                    }
                }
            }
        }
    }
    (updated, failed)
}

fn describe(u: &Unprocessed) -> String {
    format!("Security Hub did not update finding {} ({}: {})", u.finding_id, u.code, u.message)
}

/// Reads the IAM.3 findings of `users` before a change that will update
/// them, so a Security Hub that is off or out of reach stops the command
/// before anything is recorded.
pub async fn check_answers(hub: &SecurityHub, account: &AccountId, users: &[UserName]) -> Result<(), AwsError> {
    let probe = users.iter().take(1).map(UserName::to_string).collect();
    hub.iam3_findings(&FindingQuery { account_id: Some(account.to_string()), users: probe, ..FindingQuery::default() }).await?;
    Ok(())
}
