//! One contract, two backends: every test here runs against SQLite (a
//! temporary file) and against DynamoDB (a table of its own in the moto
//! emulator, one emulator for the whole file). Leases, the append-only
//! audit log, atomic saves, the due query, stakeholder changes and
//! migration between the two.

use jiff::Timestamp;
use rekey_core::hub::Workflow;
use rekey_core::model::{AccessKeyId, AccountId, UserName};
use rekey_core::workflow::Stage;
use rekey_emulator::Emulator;
use rekey_store::*;
use serde_json::json;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

fn rotation(id: &str, key: &str) -> RotationRecord {
    RotationRecord {
        id: id.into(),
        account_id: AccountId::new("123456789012"),
        user_name: UserName::new("ci"),
        old_key_id: AccessKeyId::new(key),
        new_key_id: None,
        stage: Stage::Planned,
        came_from: None,
        blocked_reason: None,
        plan: json!({"deliver": []}),
        progress: json!({}),
        started_at: ts("2026-11-28T12:00:00Z"),
        updated_at: ts("2026-11-28T12:00:00Z"),
        next_check_at: None,
    }
}

fn entry(id: &str, event: &str) -> AuditEntry {
    AuditEntry {
        at: ts("2026-11-28T12:00:00Z"),
        actor: "tester".into(),
        rotation_id: Some(id.into()),
        event: event.into(),
        from_stage: None,
        to_stage: Some(Stage::Planned),
        aws_request_id: None,
        detail: json!({"note": "x"}),
    }
}

fn exempt(user: &str, until: Option<&str>) -> ExemptionRecord {
    ExemptionRecord {
        account_id: AccountId::new("123456789012"),
        user_name: UserName::new(user),
        reason: "baked into firmware".into(),
        until: until.map(ts),
        by: "alice".into(),
        created_at: ts("2026-11-28T12:00:00Z"),
    }
}

fn update(user: &str, workflow: Option<Workflow>) -> NewFindingUpdate {
    NewFindingUpdate { account_id: AccountId::new("123456789012"), user_name: UserName::new(user), workflow, note: format!("note for {user}") }
}

async fn insert(store: &dyn StateStore, r: &RotationRecord) {
    store.insert(r, &entry(&r.id, "created"), &[]).await.unwrap();
}

async fn due_ids(store: &dyn StateStore, now: Timestamp) -> Vec<String> {
    store.due(now).await.unwrap().into_iter().map(|d| d.id).collect()
}

async fn ids(store: &dyn StateStore, query: ListQuery) -> Vec<String> {
    rotations(store, &query).await.unwrap().into_iter().map(|r| r.id).collect()
}

async fn events(store: &dyn StateStore, query: HistoryQuery) -> Vec<String> {
    rekey_store::events(store, &query).await.unwrap().into_iter().map(|e| e.event).collect()
}

/// Everything a store holds (the migration's view), in one order for
/// every backend: each exports a kind in its own, which the checksum
/// ignores; the audit log comes in sequence order everywhere.
async fn dump(store: &dyn StateStore) -> Vec<Item> {
    let mut items = Vec::new();
    store
        .export(&mut |item| {
            items.push(item);
            Ok(())
        })
        .await
        .unwrap();
    let mut runs: Vec<&str> = items.iter().map(Item::kind).collect();
    runs.dedup();
    let distinct: std::collections::BTreeSet<&str> = runs.iter().copied().collect();
    assert_eq!(runs.len(), distinct.len(), "each kind comes in one run, after the kinds it refers to: {runs:?}");
    items.sort_by_cached_key(|item| {
        let kind = runs.iter().position(|k| *k == item.kind());
        let within = match item {
            Item::Audit { seq, .. } => format!("{seq:020}"),
            other => serde_json::to_string(other).unwrap(),
        };
        (kind, within)
    });
    items
}

// --- the backends --------------------------------------------------------

struct Backend {
    store: Arc<dyn StateStore>,
    _dir: Option<tempfile::TempDir>,
}

fn sqlite() -> Backend {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("sub/state.db")).unwrap();
    Backend { store: Arc::new(store), _dir: Some(dir) }
}

fn emulator() -> &'static Emulator {
    static EMULATOR: OnceLock<Emulator> = OnceLock::new();
    EMULATOR.get_or_init(Emulator::empty)
}

async fn dynamodb_client() -> aws_sdk_dynamodb::Client {
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(&emulator().endpoint)
        .region(aws_config::Region::new(rekey_emulator::REGION))
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(rekey_emulator::ACCESS_KEY_ID, rekey_emulator::SECRET_ACCESS_KEY, None, None, "test"))
        .load()
        .await;
    aws_sdk_dynamodb::Client::new(&config)
}

/// A fresh table per test, in the one emulator.
async fn dynamodb() -> Backend {
    static N: AtomicUsize = AtomicUsize::new(0);
    let table = format!("rekey-test-{}", N.fetch_add(1, Ordering::SeqCst));
    let store = DynamoStore::new(dynamodb_client().await, &table);
    store.create_table().await.unwrap();
    Backend { store: Arc::new(store), _dir: None }
}

/// Each contract test, once per backend.
macro_rules! contract {
    ($($name:ident),* $(,)?) => {
        mod on_sqlite {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let b = super::sqlite();
                super::$name(b.store.clone()).await;
            })*
        }
        mod on_dynamodb {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let b = super::dynamodb().await;
                super::$name(b.store.clone()).await;
            })*
        }
    };
}

contract!(
    round_trips_and_lists_unfinished_then_finished_oldest_first,
    a_migration_of_several_batches_copies_every_item,
    one_open_rotation_per_key,
    due_reads_times_and_skips_finished_and_blocked,
    leases_exclude_other_owners_until_they_expire,
    a_lease_is_renewed_only_by_its_unexpired_holder,
    leases_are_exclusive_under_contention,
    the_outlook_counts_waiting_and_blocked_rotations,
    open_rotations_by_stage,
    the_stage_a_rotation_came_from_round_trips,
    a_save_and_its_audit_lines_commit_together,
    the_audit_log_keeps_order_and_streams_with_limit_and_since,
    concurrent_saves_leave_a_gapless_audit_sequence,
    an_exemption_replaces_the_users_open_one_and_ends_when_lifted,
    expiry_is_read_from_until_and_in_force_is_strictly_before,
    the_outbox_keeps_updates_until_sent_and_counts_failures,
    notices_are_found_by_digest,
    reminders_keep_each_owners_last_digest_and_each_keys_last_moment,
    a_reminder_is_claimed_by_one_process_and_given_back_by_it,
    a_change_is_all_or_nothing,
    a_change_of_many_users_is_recorded_whole,
    migration_copies_everything_and_refuses_while_leased,
    defect_14_a_migrated_store_starts_nothing_and_still_reads,
    defect_14_a_lease_taken_before_the_mark_still_saves,
    defect_14_a_store_marked_as_migrated_is_not_empty,
);

async fn round_trips_and_lists_unfinished_then_finished_oldest_first(store: Arc<dyn StateStore>) {
    let mut later = rotation("r2", "AKIA2");
    later.started_at = ts("2026-11-29T00:00:00Z");
    let mut done = rotation("r0", "AKIA0");
    (done.stage, done.started_at) = (Stage::Completed, ts("2026-11-27T00:00:00Z"));
    insert(&*store, &later).await;
    insert(&*store, &rotation("r1", "AKIA1")).await;
    insert(&*store, &done).await;
    assert_eq!(store.get("r1").await.unwrap(), rotation("r1", "AKIA1"));
    assert!(matches!(store.get("nope").await, Err(StoreError::NoSuchRotation(_))));
    assert_eq!(ids(&*store, ListQuery::default()).await, ["r1", "r2"], "unfinished only, oldest first");
    assert_eq!(ids(&*store, ListQuery { all: true, ..ListQuery::default() }).await, ["r1", "r2", "r0"]);
    assert_eq!(ids(&*store, ListQuery { all: true, limit: Some(2), ..ListQuery::default() }).await, ["r1", "r2"]);
    assert_eq!(ids(&*store, ListQuery { since: Some(ts("2026-11-28T12:00:01Z")), ..ListQuery::default() }).await, ["r2"]);
}

async fn one_open_rotation_per_key(store: Arc<dyn StateStore>) {
    insert(&*store, &rotation("r1", "AKIA1")).await;
    let err = store.insert(&rotation("r2", "AKIA1"), &entry("r2", "created"), &[]).await.unwrap_err();
    assert!(matches!(err, StoreError::AlreadyRotating { ref id, .. } if id == "r1"), "{err}");
    assert!(matches!(store.get("r2").await, Err(StoreError::NoSuchRotation(_))), "nothing of r2 was written");
    assert_eq!(store.open_rotation(&AccountId::new("123456789012"), &AccessKeyId::new("AKIA1")).await.unwrap().as_deref(), Some("r1"));
    assert_eq!(store.open_rotation(&AccountId::new("123456789012"), &AccessKeyId::new("AKIA9")).await.unwrap(), None);
    // Once finished, the key may be rotated again.
    let t0 = ts("2026-11-28T12:00:00Z");
    assert!(store.try_lease("r1", "me", t0, ts("2026-11-28T12:10:00Z")).await.unwrap());
    let mut done = store.get("r1").await.unwrap();
    done.stage = Stage::Aborted;
    store.save(&done, Stage::Planned, "me", t0, &[], &[]).await.unwrap();
    assert_eq!(store.open_rotation(&AccountId::new("123456789012"), &AccessKeyId::new("AKIA1")).await.unwrap(), None);
    insert(&*store, &rotation("r2", "AKIA1")).await;
}

async fn due_reads_times_and_skips_finished_and_blocked(store: Arc<dyn StateStore>) {
    let now = ts("2026-11-28T12:00:00Z");
    let mut waiting = rotation("wait", "AKIA1");
    waiting.next_check_at = Some(ts("2026-11-29T12:00:00Z"));
    let mut due = rotation("due", "AKIA2");
    due.next_check_at = Some(ts("2026-11-28T11:00:00Z"));
    let mut blocked = rotation("blocked", "AKIA3");
    blocked.stage = Stage::Blocked;
    let mut done = rotation("done", "AKIA4");
    done.stage = Stage::Completed;
    let fresh = rotation("fresh", "AKIA5");
    for r in [&waiting, &due, &blocked, &done, &fresh] {
        insert(&*store, r).await;
    }
    assert_eq!(due_ids(&*store, now).await, ["fresh", "due"], "due now first, then most overdue");
    assert!(due_ids(&*store, ts("2026-11-30T00:00:00Z")).await.contains(&"wait".to_string()));
    // A save moves a rotation in and out of the due index.
    assert!(store.try_lease("wait", "me", now, ts("2026-11-28T12:10:00Z")).await.unwrap());
    waiting.next_check_at = Some(ts("2026-11-28T11:30:00Z"));
    store.save(&waiting, Stage::Planned, "me", now, &[], &[]).await.unwrap();
    assert_eq!(due_ids(&*store, now).await, ["fresh", "due", "wait"]);
    assert_eq!(store.due(now).await.unwrap()[0], Due { id: "fresh".into(), account_id: AccountId::new("123456789012") });
}

async fn leases_exclude_other_owners_until_they_expire(store: Arc<dyn StateStore>) {
    insert(&*store, &rotation("r1", "AKIA1")).await;
    let t0 = ts("2026-11-28T12:00:00Z");
    let t1 = ts("2026-11-28T12:10:00Z");
    assert!(store.try_lease("r1", "a", t0, t1).await.unwrap());
    assert!(!store.try_lease("r1", "b", t0, t1).await.unwrap());
    assert!(!store.try_lease("nope", "a", t0, t1).await.unwrap(), "no rotation, no lease");
    assert_eq!(store.leases(t0).await.unwrap(), [("r1".to_string(), "a".to_string())]);
    let mut r = store.get("r1").await.unwrap();
    r.stage = Stage::Creating;
    assert!(matches!(store.save(&r, Stage::Planned, "b", t0, &[], &[]).await, Err(StoreError::LeaseLost(_))));
    store.save(&r, Stage::Planned, "a", t0, &[entry("r1", "stage")], &[]).await.unwrap();
    // The holder's own lease, once expired, no longer lets it save.
    assert!(matches!(store.save(&r, Stage::Creating, "a", ts("2026-11-28T12:10:01Z"), &[], &[]).await, Err(StoreError::LeaseLost(_))));
    assert!(store.leases(ts("2026-11-28T12:10:01Z")).await.unwrap().is_empty());
    // An expired lease can be taken over (its holder crashed).
    assert!(store.try_lease("r1", "b", ts("2026-11-28T12:11:00Z"), ts("2026-11-28T12:20:00Z")).await.unwrap());
    assert!(matches!(store.save(&r, Stage::Creating, "a", t1, &[], &[]).await, Err(StoreError::LeaseLost(_))));
    store.release("r1", "b").await.unwrap();
    assert!(store.try_lease("r1", "a", t0, t1).await.unwrap());
    // A dead holder's lease is taken over once, by one taker.
    assert_eq!(store.lease_holder("r1").await.unwrap().as_deref(), Some("a"));
    assert!(store.take_over("r1", "a", "c", t1).await.unwrap());
    assert!(!store.take_over("r1", "a", "d", t1).await.unwrap());
    assert_eq!(store.lease_holder("r1").await.unwrap().as_deref(), Some("c"));
    // Releasing someone else's lease changes nothing.
    store.release("r1", "a").await.unwrap();
    assert_eq!(store.lease_holder("r1").await.unwrap().as_deref(), Some("c"));
    assert_eq!(store.get("r1").await.unwrap().stage, Stage::Creating, "the failed saves changed nothing");
}

async fn a_lease_is_renewed_only_by_its_unexpired_holder(store: Arc<dyn StateStore>) {
    insert(&*store, &rotation("r1", "AKIA1")).await;
    let (t0, t1, t2) = (ts("2026-11-28T12:00:00Z"), ts("2026-11-28T12:10:00Z"), ts("2026-11-28T12:20:00Z"));
    assert!(store.try_lease("r1", "a", t0, t1).await.unwrap());
    assert!(!store.renew("r1", "b", t0, t2).await.unwrap());
    assert!(store.renew("r1", "a", t1, t2).await.unwrap());
    assert!(!store.try_lease("r1", "b", ts("2026-11-28T12:15:00Z"), t2).await.unwrap(), "renewed: still held");
    assert!(!store.renew("r1", "a", ts("2026-11-28T12:20:01Z"), t2).await.unwrap(), "expired: gone");
}

/// Sixteen takers at once, from as many tasks: exactly one wins.
async fn leases_are_exclusive_under_contention(store: Arc<dyn StateStore>) {
    insert(&*store, &rotation("r1", "AKIA1")).await;
    let (t0, t1) = (ts("2026-11-28T12:00:00Z"), ts("2026-11-28T12:10:00Z"));
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move { store.try_lease("r1", &format!("runner-{i}"), t0, t1).await.unwrap() })
        })
        .collect();
    let mut won = 0;
    for t in tasks {
        won += usize::from(t.await.unwrap());
    }
    assert_eq!(won, 1);
}

async fn the_outlook_counts_waiting_and_blocked_rotations(store: Arc<dyn StateStore>) {
    assert_eq!(store.outlook().await.unwrap(), Outlook { waiting: 0, next_due: None, blocked: 0 });
    let mut waiting = rotation("wait", "AKIA1");
    waiting.next_check_at = Some(ts("2026-11-29T12:00:00Z"));
    let mut blocked = rotation("blocked", "AKIA2");
    (blocked.stage, blocked.came_from) = (Stage::Blocked, Some(Stage::Draining));
    let mut done = rotation("done", "AKIA3");
    done.stage = Stage::Completed;
    for r in [&waiting, &blocked, &done] {
        insert(&*store, r).await;
    }
    assert_eq!(store.outlook().await.unwrap(), Outlook { waiting: 1, next_due: Some(ts("2026-11-29T12:00:00Z")), blocked: 1 });
    // Saves move rotations between the counts; one from a stale read changes nothing.
    let (t0, t1) = (ts("2026-11-28T12:00:00Z"), ts("2026-11-28T12:10:00Z"));
    assert!(store.try_lease("wait", "me", t0, t1).await.unwrap());
    (waiting.stage, waiting.came_from) = (Stage::Blocked, Some(Stage::Planned));
    store.save(&waiting, Stage::Planned, "me", t0, &[], &[]).await.unwrap();
    assert_eq!(store.outlook().await.unwrap(), Outlook { waiting: 0, next_due: None, blocked: 2 });
    waiting.stage = Stage::Aborted;
    let stale = store.save(&waiting, Stage::Planned, "me", t0, &[], &[]).await;
    assert!(matches!(stale, Err(StoreError::LeaseLost(_))), "{stale:?}");
    assert_eq!(store.get("wait").await.unwrap().stage, Stage::Blocked);
    store.save(&waiting, Stage::Blocked, "me", t0, &[], &[]).await.unwrap();
    assert_eq!(store.outlook().await.unwrap(), Outlook { waiting: 0, next_due: None, blocked: 1 });
    assert_eq!(store.open_by_stage().await.unwrap().0, [(Stage::Blocked, 1)]);
}

async fn open_rotations_by_stage(store: Arc<dyn StateStore>) {
    assert_eq!(store.open_by_stage().await.unwrap(), (vec![], None));
    let mut a = rotation("a", "AKIA1");
    (a.stage, a.started_at) = (Stage::Draining, ts("2026-11-20T00:00:00Z"));
    let mut b = rotation("b", "AKIA2");
    b.stage = Stage::Draining;
    let mut c = rotation("c", "AKIA3");
    (c.stage, c.came_from) = (Stage::Blocked, Some(Stage::Draining));
    let mut d = rotation("d", "AKIA4");
    (d.stage, d.started_at) = (Stage::Completed, ts("2026-11-01T00:00:00Z"));
    for r in [&a, &b, &c, &d] {
        insert(&*store, r).await;
    }
    let (mut by_stage, oldest) = store.open_by_stage().await.unwrap();
    by_stage.sort_by_key(|(s, _)| s.as_str());
    assert_eq!(by_stage, [(Stage::Blocked, 1), (Stage::Draining, 2)]);
    assert_eq!(oldest, Some(ts("2026-11-20T00:00:00Z")), "finished rotations do not count");
}

async fn the_stage_a_rotation_came_from_round_trips(store: Arc<dyn StateStore>) {
    let mut blocked = rotation("r1", "AKIA1");
    (blocked.stage, blocked.came_from) = (Stage::Blocked, Some(Stage::Draining));
    insert(&*store, &blocked).await;
    assert_eq!(store.get("r1").await.unwrap().came_from, Some(Stage::Draining));
    let mut undoing = rotation("r2", "AKIA2");
    (undoing.stage, undoing.came_from) = (Stage::RollingBack, Some(Stage::Blocked));
    insert(&*store, &undoing).await;
    assert_eq!(due_ids(&*store, ts("2026-11-28T12:00:00Z")).await, ["r2"], "an undo is due, a block is not");
}

async fn a_save_and_its_audit_lines_commit_together(store: Arc<dyn StateStore>) {
    insert(&*store, &rotation("r1", "AKIA1")).await;
    let (t0, t1) = (ts("2026-11-28T12:00:00Z"), ts("2026-11-28T12:10:00Z"));
    let mut r = store.get("r1").await.unwrap();
    r.stage = Stage::Creating;
    // Not the holder: neither the stage, nor the lines, nor the notes.
    let lost = store.save(&r, Stage::Planned, "me", t0, &[entry("r1", "stage_created")], &[update("ci", None)]).await;
    assert!(matches!(lost, Err(StoreError::LeaseLost(_))));
    assert_eq!(store.get("r1").await.unwrap().stage, Stage::Planned);
    assert_eq!(events(&*store, HistoryQuery::default()).await, ["created"]);
    assert!(store.pending_finding_updates().await.unwrap().is_empty());
    // The holder: all of it.
    assert!(store.try_lease("r1", "me", t0, t1).await.unwrap());
    store.save(&r, Stage::Planned, "me", t0, &[entry("r1", "stage_created")], &[update("ci", None)]).await.unwrap();
    assert_eq!(store.get("r1").await.unwrap().stage, Stage::Creating);
    assert_eq!(events(&*store, HistoryQuery::default()).await, ["created", "stage_created"]);
    assert_eq!(store.pending_finding_updates().await.unwrap().len(), 1);
}

async fn the_audit_log_keeps_order_and_streams_with_limit_and_since(store: Arc<dyn StateStore>) {
    insert(&*store, &rotation("r1", "AKIA1")).await;
    insert(&*store, &rotation("r2", "AKIA2")).await;
    let (t0, t1) = (ts("2026-11-28T12:00:00Z"), ts("2026-11-28T13:00:00Z"));
    assert!(store.try_lease("r1", "me", t0, t1).await.unwrap());
    let r1 = store.get("r1").await.unwrap();
    for (i, minute) in ["12:01", "12:02", "12:03"].iter().enumerate() {
        let mut line = entry("r1", &format!("step{i}"));
        line.at = ts(&format!("2026-11-28T{minute}:00Z"));
        store.save(&r1, Stage::Planned, "me", t0, &[line], &[]).await.unwrap();
    }
    let owners = AuditEntry::about_owners(ts("2026-11-28T12:04:00Z"), "alice", "suppressed", json!({"user_name": "x"}));
    store.record(&Change { audit: vec![owners], ..Change::default() }, t0, "alice").await.unwrap();
    assert_eq!(events(&*store, HistoryQuery::default()).await, ["created", "created", "step0", "step1", "step2", "suppressed"]);
    let of_r1 = HistoryQuery { rotation_id: Some("r1".into()), ..HistoryQuery::default() };
    assert_eq!(events(&*store, of_r1.clone()).await, ["created", "step0", "step1", "step2"]);
    assert_eq!(events(&*store, HistoryQuery { limit: Some(2), ..of_r1.clone() }).await, ["step1", "step2"], "the newest, oldest first");
    assert_eq!(events(&*store, HistoryQuery { since: Some(ts("2026-11-28T12:02:00Z")), ..HistoryQuery::default() }).await, ["step1", "step2", "suppressed"]);
    assert_eq!(events(&*store, HistoryQuery { since: Some(ts("2026-11-28T12:02:00Z")), limit: Some(1), ..of_r1 }).await, ["step2"]);
    // A stream stops at the first error the receiver returns.
    let mut seen = 0;
    let stopped = store
        .history(&HistoryQuery::default(), &mut |_| {
            seen += 1;
            Err(StoreError::Refused("enough".into()))
        })
        .await;
    assert!(stopped.is_err());
    assert_eq!(seen, 1);
}

/// Eight writers append at once: every line is kept, numbered without a
/// gap, each writer's in its own order.
async fn concurrent_saves_leave_a_gapless_audit_sequence(store: Arc<dyn StateStore>) {
    let (t0, t1) = (ts("2026-11-28T12:00:00Z"), ts("2026-11-28T13:00:00Z"));
    for i in 0..8 {
        let id = format!("r{i}");
        insert(&*store, &rotation(&id, &format!("AKIA{i}"))).await;
        assert!(store.try_lease(&id, "me", t0, t1).await.unwrap());
    }
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                let id = format!("r{i}");
                let r = store.get(&id).await.unwrap();
                for step in 0..5 {
                    store.save(&r, Stage::Planned, "me", t0, &[entry(&id, &format!("step{step}"))], &[update(&id, None)]).await.unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let items = dump(&*store).await;
    let seqs: Vec<i64> = items.iter().filter_map(|i| if let Item::Audit { seq, .. } = i { Some(*seq) } else { None }).collect();
    assert_eq!(seqs, (1..=48).collect::<Vec<_>>(), "8 creations and 40 steps, numbered 1..=48");
    for i in 0..8 {
        let steps = events(&*store, HistoryQuery { rotation_id: Some(format!("r{i}")), ..HistoryQuery::default() }).await;
        assert_eq!(steps, ["created", "step0", "step1", "step2", "step3", "step4"]);
    }
    let outbox: Vec<i64> = store.pending_finding_updates().await.unwrap().iter().map(|u| u.seq).collect();
    assert_eq!(outbox, (1..=40).collect::<Vec<_>>());
}

async fn an_exemption_replaces_the_users_open_one_and_ends_when_lifted(store: Arc<dyn StateStore>) {
    let at = ts("2026-11-28T12:00:00Z");
    let change = Change { open: vec![exempt("a", None), exempt("b", Some("2026-12-01T00:00:00Z"))], ..Change::default() };
    store.record(&change, at, "alice").await.unwrap();
    let renewed = Change { open: vec![exempt("b", Some("2027-01-01T00:00:00Z"))], ..Change::default() };
    store.record(&renewed, ts("2026-11-28T12:00:01Z"), "alice").await.unwrap();
    let open = store.open_exemptions().await.unwrap();
    assert_eq!(open.iter().map(|e| (e.user_name.as_str(), e.until)).collect::<Vec<_>>(), [("a", None), ("b", Some(ts("2027-01-01T00:00:00Z")))]);

    let lift = Change { end: vec![EndExemption { account_id: AccountId::new("123456789012"), user_name: UserName::new("a"), how: Ended::Unsuppressed }], ..Change::default() };
    store.record(&lift, at, "bob").await.unwrap();
    assert_eq!(store.open_exemptions().await.unwrap().len(), 1);
    // Ended ones are kept, with how they ended.
    let mut ended: Vec<_> = dump(&*store)
        .await
        .into_iter()
        .filter_map(|item| match item {
            Item::Exemption { record, ended: Some(end) } => Some((record.user_name, end.how, end.by)),
            _ => None,
        })
        .collect();
    ended.sort_by_key(|e| e.0.clone());
    assert_eq!(ended, [(UserName::new("a"), Ended::Unsuppressed, "bob".into()), (UserName::new("b"), Ended::Replaced, "alice".into())]);
}

async fn expiry_is_read_from_until_and_in_force_is_strictly_before(store: Arc<dyn StateStore>) {
    let change = Change { open: vec![exempt("a", Some("2026-12-01T00:00:00Z")), exempt("b", None)], ..Change::default() };
    store.record(&change, ts("2026-11-28T12:00:00Z"), "alice").await.unwrap();
    assert!(store.expired_exemptions(ts("2026-11-30T23:59:59Z")).await.unwrap().is_empty());
    let expired = store.expired_exemptions(ts("2026-12-01T00:00:00Z")).await.unwrap();
    assert_eq!(expired.len(), 1);
    assert!(!expired[0].in_force(ts("2026-12-01T00:00:00Z")));
    assert!(expired[0].in_force(ts("2026-11-30T23:59:59Z")));
    assert!(exempt("b", None).in_force(ts("2100-01-01T00:00:00Z")));
}

async fn the_outbox_keeps_updates_until_sent_and_counts_failures(store: Arc<dyn StateStore>) {
    let at = ts("2026-11-28T12:00:00Z");
    let change = Change { finding_updates: vec![update("a", Some(Workflow::Suppressed)), update("b", None)], ..Change::default() };
    store.record(&change, at, "alice").await.unwrap();
    let pending = store.pending_finding_updates().await.unwrap();
    assert_eq!(pending.iter().map(|p| p.update.clone()).collect::<Vec<_>>(), [update("a", Some(Workflow::Suppressed)), update("b", None)]);
    store.finding_updates_failed(&[pending[0].seq], "InvalidAccessException", &[]).await.unwrap();
    store.finding_updates_sent(&[pending[1].seq], at).await.unwrap();
    let left = store.pending_finding_updates().await.unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!((left[0].attempts, left[0].last_error.as_deref()), (1, Some("InvalidAccessException")));
}

async fn notices_are_found_by_digest(store: Arc<dyn StateStore>) {
    assert_eq!(store.last_notice("abc").await.unwrap(), None);
    let notice = NoticeRecord { owner: None, channel: "webhook".into(), digest: "abc".into(), keys: 2 };
    store.record(&Change { notices: vec![notice.clone()], ..Change::default() }, ts("2026-11-28T12:00:00Z"), "alice").await.unwrap();
    store.record(&Change { notices: vec![notice], ..Change::default() }, ts("2026-11-29T12:00:00Z"), "alice").await.unwrap();
    let other = NoticeRecord { owner: Some("x".into()), channel: "sns".into(), digest: "abd".into(), keys: 1 };
    store.record(&Change { notices: vec![other], ..Change::default() }, ts("2026-11-30T12:00:00Z"), "alice").await.unwrap();
    assert_eq!(store.last_notice("abc").await.unwrap(), Some(ts("2026-11-29T12:00:00Z")));
}

fn reminded(user: &str, created: &str, moment: &str) -> KeyReminded {
    KeyReminded { account_id: AccountId::new("123456789012"), user_name: UserName::new(user), key_created_at: ts(created), moment: ts(moment) }
}

async fn reminders_keep_each_owners_last_digest_and_each_keys_last_moment(store: Arc<dyn StateStore>) {
    assert_eq!(store.reminders_sent().await.unwrap(), RemindersSent::default());
    let (k1, k2) = (reminded("u1", "2026-08-01T00:00:00Z", "2026-10-16T00:00:00Z"), reminded("u2", "2026-08-02T00:00:00Z", "2026-10-17T00:00:00Z"));
    let first = Change {
        reminders: vec![ReminderSent { owner: Some("team".into()), keys: vec![k1.clone(), k2.clone()] }, ReminderSent { owner: None, keys: vec![] }],
        audit: vec![AuditEntry::about_owners(ts("2026-11-28T12:00:00Z"), "alice", "owner_reminded", json!({}))],
        ..Change::default()
    };
    store.record(&first, ts("2026-11-28T12:00:00Z"), "alice").await.unwrap();
    // A later digest moves the owner's time and the key's moment; an
    // empty owner name is an owner, not the unowned.
    let k1_later = reminded("u1", "2026-08-01T00:00:00Z", "2026-10-23T00:00:00Z");
    let later = Change { reminders: vec![ReminderSent { owner: Some("team".into()), keys: vec![k1_later.clone()] }, ReminderSent { owner: Some(String::new()), keys: vec![] }], ..Change::default() };
    store.record(&later, ts("2026-11-29T12:00:00Z"), "alice").await.unwrap();
    let sent = store.reminders_sent().await.unwrap();
    let owners: Vec<_> = sent.owners.iter().map(|o| (o.owner.as_deref(), o.last_sent_at)).collect();
    assert_eq!(owners, [(None, ts("2026-11-28T12:00:00Z")), (Some(""), ts("2026-11-29T12:00:00Z")), (Some("team"), ts("2026-11-29T12:00:00Z"))]);
    assert_eq!(sent.keys, [k1_later, k2]);
    assert_eq!(events(&*store, HistoryQuery::default()).await, ["owner_reminded"]);
}

async fn a_reminder_is_claimed_by_one_process_and_given_back_by_it(store: Arc<dyn StateStore>) {
    let (monday, tuesday) = (ts("2026-11-30T06:00:00Z"), ts("2026-12-01T06:00:00Z"));
    let last = |sent: RemindersSent, owner: Option<&str>| sent.owners.iter().find(|o| o.owner.as_deref() == owner).map(|o| o.last_sent_at);
    // Two runners read "never" for team; the first claim wins, the second loses.
    assert!(store.swap_last_reminder(Some("team"), None, Some(monday)).await.unwrap());
    assert!(!store.swap_last_reminder(Some("team"), None, Some(monday)).await.unwrap());
    assert_eq!(last(store.reminders_sent().await.unwrap(), Some("team")), Some(monday));
    // The unowned are an owner of their own.
    assert!(store.swap_last_reminder(None, None, Some(monday)).await.unwrap());
    // A claim from a stale read loses; one from the time stored wins.
    assert!(!store.swap_last_reminder(Some("team"), Some(tuesday), Some(tuesday)).await.unwrap());
    assert!(store.swap_last_reminder(Some("team"), Some(monday), Some(tuesday)).await.unwrap());
    // Given back (no channel took the digest): as it was, "never" included.
    assert!(store.swap_last_reminder(Some("team"), Some(tuesday), Some(monday)).await.unwrap());
    assert!(store.swap_last_reminder(None, Some(monday), None).await.unwrap());
    let sent = store.reminders_sent().await.unwrap();
    assert_eq!((last(sent.clone(), Some("team")), last(sent, None)), (Some(monday), None));
}

async fn a_change_is_all_or_nothing(store: Arc<dyn StateStore>) {
    // An audit line about a rotation that does not exist fails the whole change.
    let bad_line = AuditEntry { rotation_id: Some("no-such-rotation".into()), ..AuditEntry::about_owners(ts("2026-11-28T12:00:00Z"), "x", "suppressed", json!({})) };
    let change = Change { finding_updates: vec![update("a", None)], audit: vec![bad_line], ..Change::default() };
    assert!(store.record(&change, ts("2026-11-28T12:00:00Z"), "alice").await.is_err());
    assert!(store.pending_finding_updates().await.unwrap().is_empty());
    assert!(events(&*store, HistoryQuery::default()).await.is_empty());
    assert!(store.is_empty().await.unwrap());
}

/// 150 users suppressed at once: more writes than one DynamoDB
/// transaction holds, all recorded, in order.
async fn a_change_of_many_users_is_recorded_whole(store: Arc<dyn StateStore>) {
    let users: Vec<String> = (0..150).map(|i| format!("svc-{i:03}")).collect();
    let change = Change {
        open: users.iter().map(|u| exempt(u, None)).collect(),
        finding_updates: users.iter().map(|u| update(u, Some(Workflow::Suppressed))).collect(),
        audit: users.iter().map(|u| AuditEntry::about_owners(ts("2026-11-28T12:00:00Z"), "alice", "suppressed", json!({"user_name": u}))).collect(),
        ..Change::default()
    };
    store.record(&change, ts("2026-11-28T12:00:00Z"), "alice").await.unwrap();
    assert_eq!(store.open_exemptions().await.unwrap().len(), 150);
    let pending: Vec<String> = store.pending_finding_updates().await.unwrap().into_iter().map(|u| u.update.user_name.to_string()).collect();
    assert_eq!(pending, users);
    assert_eq!(events(&*store, HistoryQuery::default()).await.len(), 150);
}

/// One of each kind of item, in a rotation's life and its owner's.
async fn populate(store: &dyn StateStore) {
    let (t0, t1) = (ts("2026-11-28T12:00:00Z"), ts("2026-11-28T13:00:00Z"));
    let mut r1 = rotation("r1", "AKIA1");
    r1.next_check_at = Some(ts("2026-11-29T00:00:00Z"));
    store.insert(&r1, &entry("r1", "created"), &[update("ci", None)]).await.unwrap();
    let mut r2 = rotation("r2", "AKIA2");
    r2.started_at = ts("2026-11-28T12:30:00Z");
    insert(store, &r2).await;
    assert!(store.try_lease("r2", "me", t0, t1).await.unwrap());
    (r2.stage, r2.new_key_id) = (Stage::Completed, Some(AccessKeyId::new("AKIANEW")));
    store.save(&r2, Stage::Planned, "me", t0, &[entry("r2", "stage_completed")], &[update("ci", Some(Workflow::Notified))]).await.unwrap();
    store.release("r2", "me").await.unwrap();
    let pending = store.pending_finding_updates().await.unwrap();
    store.finding_updates_sent(&[pending[0].seq], t0).await.unwrap();
    let notice = NoticeRecord { owner: Some("team".into()), channel: "sns".into(), digest: "d1".into(), keys: 3 };
    let reminder = ReminderSent { owner: Some("team".into()), keys: vec![reminded("ci", "2026-08-01T00:00:00Z", "2026-10-16T00:00:00Z")] };
    let change = Change { open: vec![exempt("a", None), exempt("b", Some("2027-01-01T00:00:00Z"))], notices: vec![notice], reminders: vec![reminder], ..Change::default() };
    store.record(&change, t0, "alice").await.unwrap();
    let lift = Change { end: vec![EndExemption { account_id: AccountId::new("123456789012"), user_name: UserName::new("a"), how: Ended::Unsuppressed }], ..Change::default() };
    store.record(&lift, t1, "bob").await.unwrap();
}

async fn migration_copies_everything_and_refuses_while_leased(store: Arc<dyn StateStore>) {
    populate(&*store).await;
    let original = dump(&*store).await;
    let kinds: Vec<_> = original.iter().map(Item::kind).collect();
    assert_eq!(kinds, ["rotations", "rotations", "audit events", "audit events", "audit events", "exemptions", "exemptions", "finding updates", "finding updates", "notices", "owners reminded", "keys reminded"]);
    let now = ts("2026-11-28T12:10:00Z");
    // Into the other backend and back again: nothing lost, nothing changed.
    for other in [sqlite(), dynamodb().await] {
        let copied = copy(&*store, &*other.store, now).await.unwrap();
        assert_eq!(copied.counts.values().sum::<usize>(), original.len());
        assert_eq!(dump(&*other.store).await, original);
        assert_eq!(other.store.outlook().await.unwrap(), store.outlook().await.unwrap(), "the counts came along");
        // Not into a store that holds anything.
        let again = copy(&*store, &*other.store, now).await.unwrap_err();
        assert!(again.to_string().contains("migrate only into an empty store"), "{again}");
        // What happens next on the copy continues the sequences.
        insert(&*other.store, &rotation("r3", "AKIA3")).await;
        let seqs: Vec<i64> = dump(&*other.store).await.iter().filter_map(|i| if let Item::Audit { seq, .. } = i { Some(*seq) } else { None }).collect();
        assert_eq!(seqs, [1, 2, 3, 4]);
        let back = sqlite();
        assert_eq!(copy(&*other.store, &*back.store, now).await.unwrap().counts["audit events"], 4);
    }
    // Not while a runner holds a lease.
    assert!(store.try_lease("r1", "runner", now, ts("2026-11-28T12:15:00Z")).await.unwrap());
    let target = sqlite();
    let refused = copy(&*store, &*target.store, now).await.unwrap_err();
    assert!(refused.to_string().contains("rotation r1 is leased by runner"), "{refused}");
    assert!(target.store.is_empty().await.unwrap());
}

/// More items than one import batch (500): the copy streams them in
/// batches, blocking the export between them, and loses none.
async fn a_migration_of_several_batches_copies_every_item(store: Arc<dyn StateStore>) {
    let users: Vec<String> = (0..700).map(|i| format!("svc-{i:03}")).collect();
    let change = Change {
        open: users.iter().map(|u| exempt(u, None)).collect(),
        audit: users.iter().map(|u| AuditEntry::about_owners(ts("2026-11-28T12:00:00Z"), "alice", "suppressed", json!({"user_name": u}))).collect(),
        ..Change::default()
    };
    store.record(&change, ts("2026-11-28T12:00:00Z"), "alice").await.unwrap();
    let original = dump(&*store).await;
    assert_eq!(original.len(), 1_400, "three batches");
    for other in [sqlite(), dynamodb().await] {
        let copied = copy(&*store, &*other.store, ts("2026-11-28T12:10:00Z")).await.unwrap();
        assert_eq!((copied.counts["exemptions"], copied.counts["audit events"]), (700, 700));
        assert_eq!(dump(&*other.store).await, original);
    }
}

fn is_migrated_to(e: &StoreError, to: &str) -> bool {
    matches!(e, StoreError::Migrated { migrated, .. } if migrated.to == to)
}

/// Defect 14: `state migrate` left its source live, and a runner still
/// pointed at it acted on stale rotations. The source is now marked, and
/// nothing starts on it: no rotation, no lease, no stakeholder change.
async fn defect_14_a_migrated_store_starts_nothing_and_still_reads(store: Arc<dyn StateStore>) {
    populate(&*store).await;
    let original = dump(&*store).await;
    assert_eq!(store.migrated().await.unwrap(), None);
    let now = ts("2026-11-28T12:10:00Z");
    let (until, to) = (ts("2026-11-28T12:15:00Z"), "dynamodb:rekey-state");
    let target = sqlite();
    migrate(&*store, &*target.store, to, now, "alice").await.unwrap();
    assert_eq!(dump(&*target.store).await, original, "the copy is the state, without the mark");
    assert_eq!(target.store.migrated().await.unwrap(), None, "the copy is live");
    assert_eq!(store.migrated().await.unwrap(), Some(Migrated { to: to.into(), at: now, by: "alice".into() }));
    let mut marked = original.clone();
    let line = rekey_store::events(&*store, &HistoryQuery::default()).await.unwrap().pop().unwrap();
    assert_eq!((line.event.as_str(), line.actor.as_str(), line.detail["to"].as_str()), ("state_migrated", "alice", Some(to)));
    let after_audit = marked.iter().rposition(|i| matches!(i, Item::Audit { .. })).unwrap() + 1;
    marked.insert(after_audit, Item::Audit { seq: 4, entry: line });

    // Nothing starts.
    let refused = store.insert(&rotation("r3", "AKIA3"), &entry("r3", "created"), &[]).await.unwrap_err();
    assert!(is_migrated_to(&refused, to), "{refused}");
    let message = refused.to_string();
    assert!(message.contains(&format!("was migrated to {to} at 2026-11-28T12:10:00Z")) && message.contains(&format!("at {to}")), "{message}");
    let refused = store.try_lease("r1", "runner", now, until).await.unwrap_err();
    assert!(is_migrated_to(&refused, to), "{refused}");
    let refused = store.take_over("r1", "dead", "runner", until).await.unwrap_err();
    assert!(is_migrated_to(&refused, to), "{refused}");
    let change = Change { open: vec![exempt("c", None)], audit: vec![AuditEntry::about_owners(now, "bob", "suppressed", json!({}))], ..Change::default() };
    let refused = store.record(&change, now, "bob").await.unwrap_err();
    assert!(is_migrated_to(&refused, to), "{refused}");
    let refused = store.swap_last_reminder(Some("team"), None, Some(now)).await.unwrap_err();
    assert!(is_migrated_to(&refused, to), "a reminder is not claimed either: {refused}");
    assert_eq!(store.lease_holder("r1").await.unwrap(), None);
    assert_eq!(dump(&*store).await, marked, "nothing written but the mark");

    // Reads answer as before.
    assert_eq!(store.get("r1").await.unwrap().stage, Stage::Planned);
    assert_eq!(ids(&*store, ListQuery { all: true, ..ListQuery::default() }).await, ["r1", "r2"]);
    assert_eq!(due_ids(&*store, ts("2026-11-29T00:00:00Z")).await, ["r1"]);
    assert_eq!(store.open_exemptions().await.unwrap().len(), 1);

    // Not migrated twice, and the target of a refused migration is untouched.
    let other = sqlite();
    let again = migrate(&*store, &*other.store, "sqlite:/elsewhere.db", now, "alice").await.unwrap_err();
    assert!(is_migrated_to(&again, to), "{again}");
    assert!(other.store.is_empty().await.unwrap());
}

/// A step under way when the mark came (its lease taken before) still
/// records what it did; only the next step is refused.
async fn defect_14_a_lease_taken_before_the_mark_still_saves(store: Arc<dyn StateStore>) {
    let (t0, t1) = (ts("2026-11-28T12:00:00Z"), ts("2026-11-28T12:05:00Z"));
    let mut r1 = rotation("r1", "AKIA1");
    insert(&*store, &r1).await;
    assert!(store.try_lease("r1", "runner", t0, t1).await.unwrap());
    let migrated = Migrated { to: "sqlite:/new/state.db".into(), at: t0, by: "alice".into() };
    store.mark_migrated(&migrated, &AuditEntry::about_owners(t0, "alice", "state_migrated", json!({}))).await.unwrap();
    assert!(store.renew("r1", "runner", t0, t1).await.unwrap());
    r1.stage = Stage::Creating;
    store.save(&r1, Stage::Planned, "runner", t0, &[entry("r1", "stage_creating")], &[]).await.unwrap();
    store.release("r1", "runner").await.unwrap();
    assert_eq!(store.get("r1").await.unwrap().stage, Stage::Creating);
    let refused = store.try_lease("r1", "runner", t0, t1).await.unwrap_err();
    assert!(is_migrated_to(&refused, "sqlite:/new/state.db"), "{refused}");
    let twice = store.mark_migrated(&Migrated { to: "sqlite:/other.db".into(), ..migrated.clone() }, &AuditEntry::about_owners(t0, "alice", "state_migrated", json!({}))).await;
    assert!(twice.is_err(), "marked once");
    assert_eq!(store.migrated().await.unwrap(), Some(migrated));
}

/// A store migrated with nothing in it holds the mark: no migration may
/// copy into it (the copy would be refused everything).
async fn defect_14_a_store_marked_as_migrated_is_not_empty(store: Arc<dyn StateStore>) {
    let empty = sqlite();
    migrate(&*store, &*empty.store, "sqlite:/new/state.db", ts("2026-11-28T12:00:00Z"), "alice").await.unwrap();
    assert!(!store.is_empty().await.unwrap());
    let source = sqlite();
    populate(&*source.store).await;
    let refused = copy(&*source.store, &*store, ts("2026-11-28T12:10:00Z")).await.unwrap_err();
    assert!(refused.to_string().contains("migrate only into an empty store"), "{refused}");
}
