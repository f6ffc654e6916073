//! The engine's decisions against a fake IAM and a clock that moves only
//! when told: drain, recovery of an unrecorded key, undo without an old key,
//! account binding. Fast and exact; the emulator tests prove the same paths
//! end to end.

use jiff::{SignedDuration, Timestamp};
use rekey_aws::iam::{ListedKey, RequestId};
use rekey_aws::{AwsError, AwsSettings, Clients};
use rekey_core::target::{Sink, Verifier};
use rekey_core::workflow::Stage;
use rekey_core::{AccessKeyId, AccountId, Credentials, Duration, KeyStatus, LastUsed, Secret, UserName};
use rekey_engine::clock::{Clock, ManualClock};
use rekey_engine::keys::KeyApi;
use rekey_engine::plan::{Plan, Timings};
use rekey_engine::runner::{Engine, EngineError, Prepared};
use rekey_store::{HistoryQuery, SharedStore, SqliteStore};
use rekey_core::consumers::TrailEvent;
use std::sync::{Arc, Mutex};

const ACCOUNT: &str = "123456789012";
const USER: &str = "batch";
const OLD: &str = "AKIAOLD";

struct Key {
    id: String,
    status: KeyStatus,
    created: Timestamp,
    last_used: Option<Timestamp>,
}

/// IAM for one user, in memory, on the test's clock.
struct FakeIam {
    clock: ManualClock,
    account: String,
    keys: Mutex<Vec<Key>>,
    created: Mutex<u32>,
    /// CloudTrail's event history; `None`: not configured.
    trail: Mutex<Option<Vec<TrailEvent>>>,
}

impl FakeIam {
    fn new(clock: &ManualClock) -> FakeIam {
        let old = Key { id: OLD.into(), status: KeyStatus::Active, created: clock.now() - SignedDuration::from_hours(24 * 200), last_used: None };
        FakeIam { clock: clock.clone(), account: ACCOUNT.into(), keys: Mutex::new(vec![old]), created: Mutex::new(0), trail: Mutex::new(None) }
    }

    fn keys(&self) -> Vec<(String, KeyStatus)> {
        self.keys.lock().unwrap().iter().map(|k| (k.id.clone(), k.status)).collect()
    }

    fn use_key(&self, id: &str, at: Timestamp) {
        self.keys.lock().unwrap().iter_mut().find(|k| k.id == id).unwrap().last_used = Some(at);
    }

    /// A call with `key` from `ip`: in IAM's last use and in CloudTrail.
    fn call(&self, key: &str, at: Timestamp, ip: &str) {
        self.use_key(key, at);
        let event = TrailEvent {
            access_key_id: key.into(),
            time: at,
            event_name: "GetObject".into(),
            service: "s3".into(),
            region: "us-east-1".into(),
            source_ip: ip.into(),
            user_agent: format!("app on {ip}"),
        };
        self.trail.lock().unwrap().get_or_insert_with(Vec::new).push(event);
    }

    fn add_key(&self, id: &str, created: Timestamp) {
        self.keys.lock().unwrap().push(Key { id: id.into(), status: KeyStatus::Active, created, last_used: None });
    }
}

#[async_trait::async_trait]
impl KeyApi for FakeIam {
    async fn caller_account(&self) -> Result<AccountId, AwsError> {
        Ok(AccountId::new(&self.account))
    }
    async fn user_arn(&self, user: &UserName) -> Result<Option<String>, AwsError> {
        Ok(Some(format!("arn:aws:iam::{ACCOUNT}:user/{user}")))
    }
    async fn list_keys(&self, _user: &UserName) -> Result<Vec<ListedKey>, AwsError> {
        Ok(self.keys.lock().unwrap().iter().map(|k| ListedKey { id: AccessKeyId::new(&k.id), status: k.status, created_at: k.created }).collect())
    }
    async fn last_used(&self, key: &AccessKeyId) -> Result<LastUsed, AwsError> {
        let at = self.keys.lock().unwrap().iter().find(|k| k.id == key.as_str()).and_then(|k| k.last_used);
        Ok(LastUsed { at, service: at.map(|_| "s3".into()), region: at.map(|_| "eu-west-1".into()) })
    }
    async fn create_key(&self, _user: &UserName) -> Result<(Credentials, RequestId), AwsError> {
        let n = {
            let mut created = self.created.lock().unwrap();
            *created += 1;
            *created
        };
        let id = format!("AKIANEW{n}");
        self.add_key(&id, self.clock.now());
        Ok((Credentials { access_key_id: AccessKeyId::new(&id), secret_access_key: Secret::new(format!("secret{n}")) }, None))
    }
    async fn set_status(&self, _user: &UserName, key: &AccessKeyId, status: KeyStatus) -> Result<RequestId, AwsError> {
        self.keys.lock().unwrap().iter_mut().find(|k| k.id == key.as_str()).unwrap().status = status;
        Ok(None)
    }
    async fn delete_key(&self, _user: &UserName, key: &AccessKeyId) -> Result<RequestId, AwsError> {
        self.keys.lock().unwrap().retain(|k| k.id != key.as_str());
        Ok(None)
    }
    fn clock_offset(&self) -> SignedDuration {
        SignedDuration::ZERO
    }
    async fn key_events(&self, key: &AccessKeyId, from: Timestamp) -> Result<Option<Vec<TrailEvent>>, AwsError> {
        let trail = self.trail.lock().unwrap();
        let now = self.clock.now();
        Ok(trail.as_ref().map(|events| events.iter().filter(|e| e.access_key_id == key.as_str() && e.time >= from && e.time <= now).cloned().collect()))
    }
}

struct World {
    clock: ManualClock,
    iam: FakeIam,
    clients: Clients,
    store: SharedStore,
    _dir: tempfile::TempDir,
    sink_file: std::path::PathBuf,
}

/// Real days: `wait_unused` 24h, `last_used_lag` 4h, `drain_timeout` 14d, `grace` 7d.
fn timings() -> Timings {
    Timings { verify_timeout: Duration::from_secs(60), ..Timings::default() }
}

impl World {
    async fn new() -> World {
        let clock = ManualClock::at("2026-11-01T12:00:00Z".parse().unwrap());
        let iam = FakeIam::new(&clock);
        let settings = AwsSettings { region: Some("us-east-1".into()), endpoint_url: Some("http://127.0.0.1:9".into()), ..Default::default() };
        let clients = Clients::new(&settings).await;
        let dir = tempfile::tempdir().unwrap();
        let store: SharedStore = Arc::new(SqliteStore::open(&dir.path().join("state.db")).unwrap());
        let sink_file = dir.path().join("credentials");
        World { clock, iam, clients, store, sink_file, _dir: dir }
    }

    fn engine(&mut self) -> Engine<'_> {
        let clock: Arc<dyn Clock> = Arc::new(self.clock.clone());
        Engine::new(&self.iam, &self.clients, clock, self.store.clone(), "tester".into(), false)
    }

    async fn start(&mut self) -> String {
        let plan = Plan {
            deliver: vec![Sink::CredentialsFile { path: self.sink_file.clone(), profile: "app".into() }],
            verify: vec![Verifier::Exec { command: vec!["true".into()], env: Default::default() }],
            timings: timings(),
            delete_inactive: false,
        };
        let prepared = Prepared {
            user: UserName::new(USER),
            user_arn: format!("arn:aws:iam::{ACCOUNT}:user/{USER}"),
            account: AccountId::new(ACCOUNT),
            old_key: AccessKeyId::new(OLD),
            plan,
        };
        self.engine().start(prepared, "rot-1".into()).await.unwrap()
    }

    async fn stage(&self) -> Stage {
        self.store.get("rot-1").await.unwrap().stage
    }

    async fn run_after(&mut self, hours: i64) -> Stage {
        self.clock.advance(SignedDuration::from_hours(hours));
        self.engine().run_due().await.unwrap();
        self.stage().await
    }
}

#[tokio::test]
async fn an_unused_old_key_drains_after_wait_unused_plus_the_lag() {
    let mut w = World::new().await;
    w.start().await;
    assert_eq!(w.stage().await, Stage::Draining);
    assert_eq!(w.run_after(27).await, Stage::Draining, "24h + 4h not yet over");
    assert_eq!(w.run_after(1).await, Stage::AwaitingDelete);
    assert_eq!(w.iam.keys(), [(OLD.into(), KeyStatus::Inactive), ("AKIANEW1".into(), KeyStatus::Active)]);
    assert_eq!(w.run_after(7 * 24).await, Stage::Completed);
    assert_eq!(w.iam.keys(), [("AKIANEW1".into(), KeyStatus::Active)]);
}

#[tokio::test]
async fn a_nightly_job_on_the_old_key_is_never_deactivated_without_a_person() {
    let mut w = World::new().await;
    w.start().await;
    let delivered = w.clock.now();
    // The job ran once, 10 hours after delivery, then was quiet for days.
    w.iam.use_key(OLD, delivered + SignedDuration::from_hours(10));
    for _ in 0..13 {
        assert_eq!(w.run_after(24).await, Stage::Draining);
        assert_eq!(w.iam.keys()[0], (OLD.into(), KeyStatus::Active));
    }
    assert_eq!(w.run_after(24).await, Stage::Blocked, "blocked at drain_timeout, not deactivated");
    let r = w.store.get("rot-1").await.unwrap();
    assert!(r.blocked_reason.unwrap().contains("by s3 in eu-west-1"));

    // The job was moved to the new key: the window restarts from the confirmation.
    w.engine().confirm("rot-1", false).await.unwrap();
    assert_eq!(w.stage().await, Stage::Draining);
    assert_eq!(w.run_after(27).await, Stage::Draining);
    assert_eq!(w.run_after(1).await, Stage::AwaitingDelete);
}

#[tokio::test]
async fn force_deactivates_at_once_and_only_once() {
    let mut w = World::new().await;
    w.start().await;
    let delivered = w.clock.now();
    w.iam.use_key(OLD, delivered + SignedDuration::from_hours(2));
    assert_eq!(w.run_after(28).await, Stage::Draining);
    w.engine().confirm("rot-1", true).await.unwrap();
    assert_eq!(w.stage().await, Stage::AwaitingDelete, "--force deactivated at once");
    let r = rekey_engine::runner::Rotation::decode(w.store.get("rot-1").await.unwrap()).unwrap();
    assert!(!r.progress.force, "--force is spent by the one step");
}

#[tokio::test]
async fn a_key_rekey_did_not_create_is_never_deleted_by_recovery() {
    let mut w = World::new().await;
    w.start().await;
    assert_eq!(w.stage().await, Stage::Draining);
    let mut r = w.store.get("rot-1").await.unwrap();
    // Rewind to "creating" with an attempt recorded now and no key id: an
    // admin's key made an hour before the attempt appears in the free slot.
    r.stage = Stage::Creating;
    (r.new_key_id, r.next_check_at) = (None, None);
    r.progress["create_attempted_at"] = serde_json::json!(w.clock.now());
    w.iam.delete_key(&UserName::new(USER), &AccessKeyId::new("AKIANEW1")).await.unwrap();
    w.iam.add_key("AKIASOMEONEELSE", w.clock.now() - SignedDuration::from_hours(1));
    assert!(w.store.try_lease("rot-1", "test", w.clock.now(), w.clock.now() + SignedDuration::from_mins(1)).await.unwrap());
    w.store.save(&r, Stage::Draining, "test", w.clock.now(), &[], &[]).await.unwrap();
    w.store.release("rot-1", "test").await.unwrap();
    w.engine().advance("rot-1").await.unwrap();
    assert_eq!(w.stage().await, Stage::Blocked);
    assert!(w.iam.keys().contains(&("AKIASOMEONEELSE".into(), KeyStatus::Active)), "someone else's key is kept");

    // A key created after the attempt, never recorded, is this rotation's own: removed.
    w.iam.delete_key(&UserName::new(USER), &AccessKeyId::new("AKIASOMEONEELSE")).await.unwrap();
    w.iam.add_key("AKIAORPHAN", w.clock.now());
    w.engine().confirm("rot-1", false).await.unwrap();
    let keys: Vec<String> = w.iam.keys().into_iter().map(|k| k.0).collect();
    assert!(!keys.contains(&"AKIAORPHAN".to_owned()), "{keys:?}");
    assert_eq!(w.stage().await, Stage::Draining);
}

#[tokio::test]
async fn rollback_without_the_old_key_is_refused_and_changes_nothing() {
    let mut w = World::new().await;
    w.start().await;
    w.iam.delete_key(&UserName::new(USER), &AccessKeyId::new(OLD)).await.unwrap();
    let file = std::fs::read(&w.sink_file).unwrap();
    let err = w.engine().cancel("rot-1", false).await.unwrap_err();
    assert!(matches!(err, EngineError::Refused { .. }) && err.to_string().contains("no longer exists"), "{err}");
    assert_eq!(w.stage().await, Stage::Draining);
    assert_eq!(w.iam.keys(), [("AKIANEW1".into(), KeyStatus::Active)]);
    assert_eq!(std::fs::read(&w.sink_file).unwrap(), file);
}

#[tokio::test]
async fn another_accounts_credentials_are_refused_before_anything() {
    let mut w = World::new().await;
    w.start().await;
    w.iam.account = "210987654321".into();
    let before = (w.store.get("rot-1").await.unwrap(), w.iam.keys());
    w.clock.advance(SignedDuration::from_hours(28));
    let mut engine = w.engine();
    let (advanced, errors) = engine.run_due().await.unwrap();
    assert!(advanced.is_empty());
    assert!(matches!(errors.as_slice(), [EngineError::WrongAccount { .. }]), "{errors:?}");
    for refused in [engine.cancel("rot-1", false).await, engine.confirm("rot-1", false).await] {
        assert!(matches!(refused, Err(EngineError::WrongAccount { .. })));
    }
    drop(engine);
    assert_eq!((w.store.get("rot-1").await.unwrap(), w.iam.keys()), before);
}

#[tokio::test]
async fn consumers_seen_moving_to_the_new_key_let_the_drain_go_on_by_itself() {
    let mut w = World::new().await;
    w.start().await;
    let delivered = w.clock.now();
    let hours = |h: i64| delivered + SignedDuration::from_hours(h);
    // The application kept its old key for an hour, then picked up the new one.
    w.iam.call(OLD, hours(1), "10.0.0.1");
    w.iam.call("AKIANEW1", hours(2), "10.0.0.1");
    assert_eq!(w.run_after(29).await, Stage::Draining, "its last old use is not a whole drain window (28h) ago yet");
    let watch = w.store.get("rot-1").await.unwrap().progress["consumers"].clone();
    assert_eq!((watch["left"].as_array().unwrap().len(), watch["moved"].as_array().unwrap().len()), (1, 0), "{watch}");
    assert_eq!(w.run_after(1).await, Stage::AwaitingDelete, "quiet on the old key since hour 1, seen on the new one: moved");
    let history = history(&w.store).await;
    let evidence = history.iter().find(|e| e.event == "consumers_moved").expect("the evidence is audited");
    assert!(evidence.detail["consumers"][0].as_str().unwrap().contains("10.0.0.1"), "{}", evidence.detail);
}

#[tokio::test]
async fn a_consumer_left_on_the_old_key_leaves_the_decision_to_a_person() {
    let mut w = World::new().await;
    w.start().await;
    let delivered = w.clock.now();
    let hours = |h: i64| delivered + SignedDuration::from_hours(h);
    w.iam.call(OLD, hours(1), "10.0.0.1");
    w.iam.call("AKIANEW1", hours(2), "10.0.0.1");
    // A cron host used the old key once after delivery and never the new one.
    w.iam.call(OLD, hours(3), "10.0.0.9");
    assert_eq!(w.run_after(48).await, Stage::Draining);
    let r = w.store.get("rot-1").await.unwrap();
    let left: Vec<&str> = r.progress["consumers"]["left"].as_array().unwrap().iter().map(|c| c["source_ip"].as_str().unwrap()).collect();
    assert_eq!(left, ["10.0.0.9"]);
    let waiting = r.progress["waiting_for"].as_str().unwrap_or_default().to_owned();
    assert!(waiting.contains("10.0.0.9"), "status names the host left: {waiting}");
    assert_eq!(w.run_after(14 * 24).await, Stage::Blocked, "after drain_timeout, as without CloudTrail");
    assert_eq!(w.iam.keys()[0], (OLD.into(), KeyStatus::Active));
}

#[tokio::test]
async fn a_use_iam_saw_that_cloudtrail_does_not_show_yet_keeps_draining() {
    let mut w = World::new().await;
    w.start().await;
    let delivered = w.clock.now();
    let hours = |h: i64| delivered + SignedDuration::from_hours(h);
    w.iam.call(OLD, hours(1), "10.0.0.1");
    w.iam.call("AKIANEW1", hours(2), "10.0.0.1");
    // IAM saw a later use of the old key; CloudTrail has not delivered it.
    w.iam.use_key(OLD, hours(20));
    assert_eq!(w.run_after(31).await, Stage::Draining);
    assert_eq!(w.iam.keys()[0], (OLD.into(), KeyStatus::Active));
    assert!(history(&w.store).await.iter().all(|e| e.event != "consumers_moved"));
}

async fn history(store: &SharedStore) -> Vec<rekey_store::AuditEntry> {
    let query = HistoryQuery { rotation_id: Some("rot-1".into()), ..HistoryQuery::default() };
    rekey_store::events(&**store, &query).await.unwrap()
}
