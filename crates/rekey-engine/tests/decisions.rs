//! The engine's decisions against a fake IAM and a clock that moves only
//! when told: drain, recovery of an unrecorded key, undo without an old key,
//! account binding. Fast and exact; the emulator tests prove the same paths
//! end to end.

use jiff::SignedDuration;
use rekey_aws::{AwsSettings, Clients};
use rekey_core::target::{Sink, Verifier};
use rekey_core::workflow::Stage;
use rekey_core::{AccessKeyId, AccountId, Duration, KeyStatus, UserName};
use rekey_engine::clock::{Clock, ManualClock};
use rekey_engine::keys::KeyApi;
use rekey_engine::plan::{Plan, Timings};
use rekey_engine::runner::{run_due, Acting, Engine, EngineError, Pass, Reach, Request, Setup};
use rekey_store::{HistoryQuery, SharedStore, SqliteStore};
use rekey_engine::sinks::DeliverySink;
use rekey_engine::targets::Targets;
use rekey_engine::verify::{Check, Verdict, VerifyCtx};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

mod support;

use support::*;

/// The configured sinks, and verifiers that report what the test says
/// (`manual` stays the real one, waiting for `rekey confirm`).
struct TestTargets {
    healthy: Arc<AtomicBool>,
}

struct Switch(Arc<AtomicBool>);

#[async_trait::async_trait]
impl Check for Switch {
    fn describe(&self) -> String {
        "the application".into()
    }
    fn needs_secret(&self) -> bool {
        false
    }
    fn preflight(&self) -> Result<(), String> {
        Ok(())
    }
    async fn verify(&self, _: &VerifyCtx<'_>) -> Verdict {
        if self.0.load(Ordering::SeqCst) {
            Verdict::Healthy
        } else {
            Verdict::Unhealthy("the application fails".into())
        }
    }
}

impl Targets for TestTargets {
    fn sink<'s>(&self, config: &'s Sink) -> Box<dyn DeliverySink + 's> {
        rekey_engine::sinks::of(config)
    }
    fn verifier<'s>(&self, config: &'s Verifier) -> Box<dyn Check + 's> {
        match config {
            Verifier::Manual {} => rekey_engine::verify::of(config),
            _ => Box::new(Switch(self.healthy.clone())),
        }
    }
}

/// The one account there is, acting with the fake's credentials.
#[async_trait::async_trait]
impl Reach for World {
    async fn reach(&self, _: &AccountId) -> Result<Acting, String> {
        let account = self.iam.caller_account().await.map_err(|e| e.to_string())?;
        Ok(Acting { account, clients: self.clients.clone(), keys: self.iam.clone() })
    }
}

struct World {
    /// What the application's verifiers report.
    healthy: Arc<AtomicBool>,
    clock: ManualClock,
    iam: Arc<FakeIam>,
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
        let iam = Arc::new(FakeIam::new(&clock));
        let settings = AwsSettings { region: Some("us-east-1".into()), endpoint_url: Some("http://127.0.0.1:9".into()), ..Default::default() };
        let clients = Clients::new(&settings).await;
        let dir = tempfile::tempdir().unwrap();
        let store: SharedStore = Arc::new(SqliteStore::open(&dir.path().join("state.db")).unwrap());
        let sink_file = dir.path().join("credentials");
        World { healthy: Arc::new(AtomicBool::new(true)), clock, iam, clients, store, sink_file, _dir: dir }
    }

    fn engine(&mut self) -> Engine<'_> {
        let clock: Arc<dyn Clock> = Arc::new(self.clock.clone());
        let targets = Arc::new(TestTargets { healthy: self.healthy.clone() });
        Engine::new(&*self.iam, &self.clients, clock, self.store.clone(), "tester".into(), false).with_targets(targets)
    }

    async fn start(&mut self) -> String {
        self.start_verified_by(Verifier::Exec { command: vec!["true".into()], env: Default::default() }).await
    }

    async fn start_verified_by(&mut self, verifier: Verifier) -> String {
        self.try_start_verified_by(verifier).await.unwrap()
    }

    async fn try_start(&mut self) -> Result<String, EngineError> {
        self.try_start_verified_by(Verifier::Exec { command: vec!["true".into()], env: Default::default() }).await
    }

    async fn try_start_verified_by(&mut self, verifier: Verifier) -> Result<String, EngineError> {
        let plan = Plan {
            deliver: vec![Sink::CredentialsFile { path: self.sink_file.clone(), profile: "app".into() }],
            verify: vec![verifier],
            timings: timings(),
            delete_inactive: false,
            retire: false,
        };
        self.try_start_plan(plan).await
    }

    async fn try_start_plan(&mut self, plan: Plan) -> Result<String, EngineError> {
        let request = Request { user: UserName::new(USER), key: None, account: Some(AccountId::new(ACCOUNT)), plan };
        let targets = TestTargets { healthy: self.healthy.clone() };
        let prepared = Engine::plan(&*self.iam, &self.clients, &targets, false, request).await?;
        assert_eq!(prepared.old_key(), &AccessKeyId::new(OLD), "the oldest active key");
        self.engine().start(prepared, "rot-1".into()).await
    }

    async fn stage(&self) -> Stage {
        self.store.get("rot-1").await.unwrap().stage
    }

    async fn reason(&self) -> String {
        self.store.get("rot-1").await.unwrap().blocked_reason.unwrap_or_default()
    }

    /// The application's credentials file, holding the old key before the rotation.
    fn app_on_the_old_key(&self) {
        std::fs::write(&self.sink_file, format!("[app]\naws_access_key_id = {OLD}\naws_secret_access_key = old-secret\n")).unwrap();
    }

    fn sink_holds(&self, key: &str) -> bool {
        std::fs::read_to_string(&self.sink_file).unwrap_or_default().contains(key)
    }

    /// A pass of `rekey run`: the loop the binary runs.
    async fn run_due(&self) -> Pass {
        let mut setup = Setup::new(Arc::new(self.clock.clone()), self.store.clone(), "tester".into());
        setup.targets = Arc::new(TestTargets { healthy: self.healthy.clone() });
        run_due(&setup, self, None, 1).await.unwrap()
    }

    async fn run_after(&mut self, hours: i64) -> Stage {
        self.clock.advance(SignedDuration::from_hours(hours));
        self.run_due().await;
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

    // A key created after the attempt, never recorded, is this rotation's
    // own: held deactivated, then removed once a use would show.
    w.iam.delete_key(&UserName::new(USER), &AccessKeyId::new("AKIASOMEONEELSE")).await.unwrap();
    w.iam.add_key("AKIAORPHAN", w.clock.now());
    w.engine().confirm("rot-1", false).await.unwrap();
    assert_eq!(w.iam.status("AKIAORPHAN"), Some(KeyStatus::Inactive));
    w.run_after(4).await;
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
    *w.iam.account.lock().unwrap() = "210987654321".into();
    let before = (w.store.get("rot-1").await.unwrap(), w.iam.keys());
    w.clock.advance(SignedDuration::from_hours(28));
    let pass = w.run_due().await;
    assert!(pass.advanced.is_empty());
    assert!(matches!(pass.errors.as_slice(), [EngineError::WrongAccount { .. }]), "{:?}", pass.errors);
    let mut engine = w.engine();
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

// The defects of the safety review (SPEC section 5), one test each.

fn user() -> UserName {
    UserName::new(USER)
}

const NEW: &str = "AKIANEW1";

#[tokio::test]
async fn defect_1_a_new_key_deleted_while_draining_leaves_the_old_key_active() {
    let mut w = World::new().await;
    w.app_on_the_old_key();
    w.start().await;
    // An admin removes "the unknown second key".
    w.iam.delete_key(&user(), &AccessKeyId::new(NEW)).await.unwrap();
    assert_eq!(w.run_after(28).await, Stage::Blocked);
    assert_eq!(w.iam.keys(), [(OLD.into(), KeyStatus::Active)], "the old key is not touched");
    let reason = w.reason().await;
    assert!(reason.contains("AKIANEW1 no longer exists") && reason.contains("rekey rollback rot-1"), "{reason}");
    // The way out it names works: the sink is back on the old key.
    w.engine().cancel("rot-1", false).await.unwrap();
    assert_eq!(w.stage().await, Stage::RolledBack);
    assert!(w.sink_holds(OLD) && !w.sink_holds(NEW));
}

#[tokio::test]
async fn defect_1_a_new_key_deactivated_before_deletion_gets_the_old_key_back() {
    let mut w = World::new().await;
    w.start().await;
    assert_eq!(w.run_after(28).await, Stage::AwaitingDelete);
    w.iam.set(NEW, KeyStatus::Inactive);
    assert_eq!(w.run_after(7 * 24).await, Stage::Blocked);
    assert_eq!(w.iam.status(OLD), Some(KeyStatus::Active), "reactivated, not deleted");
    let reason = w.reason().await;
    assert!(reason.contains("deactivated outside rekey") && reason.contains("rekey rollback rot-1"), "{reason}");
}

#[tokio::test]
async fn defect_3_after_a_definite_create_error_a_persons_key_is_never_deleted() {
    let mut w = World::new().await;
    w.iam.fail_next("create", Fault::Throttled);
    assert!(w.try_start().await.is_err());
    assert_eq!(w.stage().await, Stage::Creating);
    // While rekey waits to retry, a person creates a key by hand.
    w.clock.advance(SignedDuration::from_secs(30));
    w.iam.add_key("AKIAPERSON", w.clock.now());
    assert_eq!(w.run_after(1).await, Stage::Blocked);
    assert_eq!(w.iam.status("AKIAPERSON"), Some(KeyStatus::Active), "a key rekey did not make is kept");
    let reason = w.reason().await;
    assert!(reason.contains("AKIAPERSON") && reason.contains("rekey abort rot-1"), "{reason}");
    // The person frees the slot and confirms: the rotation goes on.
    w.iam.delete_key(&user(), &AccessKeyId::new("AKIAPERSON")).await.unwrap();
    w.engine().confirm("rot-1", false).await.unwrap();
    assert_eq!(w.stage().await, Stage::Draining);
}

#[tokio::test]
async fn defect_3_a_key_a_lost_create_made_is_taken_back_only_if_unused() {
    let mut w = World::new().await;
    w.iam.fail_next("create", Fault::Lost);
    assert!(w.try_start().await.is_err());
    assert_eq!(w.iam.status(NEW), Some(KeyStatus::Active), "made, and the answer lost");
    assert_eq!(w.run_after(1).await, Stage::Creating);
    assert_eq!(w.iam.status(NEW), Some(KeyStatus::Inactive), "inside the attempt's window, no use shown: held, deactivated");
    assert_eq!(w.run_after(3).await, Stage::Creating, "a use may show up to 4h late");
    assert_eq!(w.run_after(1).await, Stage::Draining);
    assert_eq!(w.iam.status(NEW), None, "still no use shown: rekey's own, removed");
    assert_eq!(w.iam.status("AKIANEW2"), Some(KeyStatus::Active));

    let mut w = World::new().await;
    w.iam.fail_next("create", Fault::Lost);
    assert!(w.try_start().await.is_err());
    w.iam.use_key(NEW, w.clock.now());
    assert_eq!(w.run_after(1).await, Stage::Blocked, "used: someone has it");
    assert_eq!(w.iam.status(NEW), Some(KeyStatus::Active));
}

/// A person's key made inside a lost attempt's window and used a moment
/// before recovery looks: IAM does not show the use yet, so rekey holds
/// it deactivated; the use shows before the deletion is due, and the key
/// is turned back on and left to its owner.
#[tokio::test]
async fn defect_3_a_key_used_where_iam_does_not_show_it_yet_is_held_not_deleted() {
    let mut w = World::new().await;
    w.iam.fail_next("create", Fault::Lost);
    assert!(w.try_start().await.is_err());
    w.iam.use_key_reported_late(NEW, w.clock.now(), SignedDuration::from_hours(3));
    assert_eq!(w.run_after(1).await, Stage::Creating);
    assert_eq!(w.iam.status(NEW), Some(KeyStatus::Inactive), "held");
    assert_eq!(w.run_after(4).await, Stage::Blocked, "the use showed: someone has it");
    assert_eq!(w.iam.status(NEW), Some(KeyStatus::Active), "turned back on, not deleted");
}

#[tokio::test]
async fn defect_5_an_undo_deletes_the_new_key_only_once_last_used_data_can_show_its_users() {
    let mut w = World::new().await;
    w.start().await;
    w.engine().cancel("rot-1", false).await.unwrap();
    assert_eq!(w.stage().await, Stage::RollingBack);
    assert_eq!(w.iam.status(NEW), Some(KeyStatus::Inactive), "deactivated at once, kept");
    assert_eq!(w.run_after(3).await, Stage::RollingBack, "IAM may report a use up to 4h late");
    assert_eq!(w.iam.status(NEW), Some(KeyStatus::Inactive));
    assert_eq!(w.run_after(1).await, Stage::RolledBack);
    assert_eq!(w.iam.status(NEW), None);
}

#[tokio::test]
async fn an_undone_new_key_someone_used_waits_the_grace_period() {
    let mut w = World::new().await;
    w.start().await;
    w.iam.use_key(NEW, w.clock.now() + SignedDuration::from_hours(1));
    w.clock.advance(SignedDuration::from_hours(2));
    w.engine().cancel("rot-1", false).await.unwrap();
    assert_eq!(w.run_after(4).await, Stage::RollingBack);
    assert_eq!(w.run_after(6 * 24).await, Stage::RollingBack, "grace is 7 days");
    assert_eq!(w.iam.status(NEW), Some(KeyStatus::Inactive));
    assert_eq!(w.run_after(24).await, Stage::RolledBack);
}

#[tokio::test]
async fn defect_6_an_interrupted_deactivation_of_the_new_key_keeps_its_wait() {
    let mut w = World::new().await;
    w.start().await;
    w.iam.use_key(NEW, w.clock.now() + SignedDuration::from_hours(1));
    w.clock.advance(SignedDuration::from_hours(2));
    // The deactivation happens; its answer (or the process) is lost.
    w.iam.fail_next("deactivate", Fault::Lost);
    assert!(w.engine().cancel("rot-1", false).await.is_err());
    assert_eq!(w.iam.status(NEW), Some(KeyStatus::Inactive));
    assert_eq!(w.run_after(1).await, Stage::RollingBack);
    assert_eq!(w.iam.status(NEW), Some(KeyStatus::Inactive), "its time was saved before the call: not deleted at once");
    assert_eq!(w.run_after(7 * 24).await, Stage::RolledBack);
}

#[tokio::test]
async fn defect_7_an_old_key_reactivated_while_awaiting_deletion_can_be_rolled_back() {
    let mut w = World::new().await;
    w.app_on_the_old_key();
    w.start().await;
    assert_eq!(w.run_after(28).await, Stage::AwaitingDelete);
    w.iam.set(OLD, KeyStatus::Active);
    assert_eq!(w.run_after(7 * 24).await, Stage::Blocked);
    assert_eq!(w.iam.status(OLD), Some(KeyStatus::Active), "not deleted");
    let reason = w.reason().await;
    assert!(reason.contains("rekey rollback rot-1") && reason.contains("rekey confirm rot-1"), "{reason}");
    w.engine().cancel("rot-1", false).await.expect("the rollback it names works");
    assert_eq!(w.run_after(4).await, Stage::RolledBack);
    assert_eq!(w.iam.keys(), [(OLD.into(), KeyStatus::Active)]);
    assert!(w.sink_holds(OLD));
}

#[tokio::test]
async fn defect_7_confirming_it_drains_again_and_waits_a_new_grace_period() {
    let mut w = World::new().await;
    w.start().await;
    assert_eq!(w.run_after(28).await, Stage::AwaitingDelete);
    w.iam.set(OLD, KeyStatus::Active);
    assert_eq!(w.run_after(7 * 24).await, Stage::Blocked);
    w.engine().confirm("rot-1", false).await.unwrap();
    assert_eq!(w.stage().await, Stage::Draining);
    assert_eq!(w.run_after(28).await, Stage::AwaitingDelete);
    assert_eq!(w.run_after(6 * 24).await, Stage::AwaitingDelete, "a whole new grace period");
    assert_eq!(w.iam.status(OLD), Some(KeyStatus::Inactive));
    assert_eq!(w.run_after(24).await, Stage::Completed);
}

#[tokio::test]
async fn defect_8_a_step_that_lost_its_lease_makes_no_aws_write() {
    let mut w = World::new().await;
    w.start().await;
    // The step stalls; meanwhile its lease expires and another runner takes it.
    *w.iam.thief.lock().unwrap() = Some((w.store.clone(), "rot-1".into()));
    w.clock.advance(SignedDuration::from_hours(28));
    let pass = w.run_due().await;
    assert_eq!(pass.errors.len(), 1, "{:?}", pass.errors);
    assert_eq!(w.iam.status(OLD), Some(KeyStatus::Active), "no deactivation without the lease");
}

#[tokio::test]
async fn defect_9_a_failed_reactivation_is_retried_before_any_verifier_runs_again() {
    let mut w = World::new().await;
    w.start().await;
    // After deactivation the application fails, and the reactivation is refused (an expired role session).
    w.healthy.store(false, Ordering::SeqCst);
    w.iam.fail_next("activate", Fault::Throttled);
    assert_eq!(w.run_after(28).await, Stage::VerifyingDeactivated);
    assert_eq!(w.iam.status(OLD), Some(KeyStatus::Inactive));
    // The application looks healthy again (a retry, a cache): the reactivation is still owed.
    w.healthy.store(true, Ordering::SeqCst);
    assert_eq!(w.run_after(1).await, Stage::Blocked);
    assert_eq!(w.iam.status(OLD), Some(KeyStatus::Active));
}

#[tokio::test]
async fn defect_11_a_manual_confirmation_counts_for_one_check_only() {
    let mut w = World::new().await;
    w.start_verified_by(Verifier::Manual {}).await;
    assert_eq!(w.stage().await, Stage::Blocked, "verifying the new key waits for a person");
    w.engine().confirm("rot-1", false).await.unwrap();
    assert_eq!(w.run_after(28).await, Stage::Blocked, "and so does the check after deactivation");
    w.engine().confirm("rot-1", false).await.unwrap();
    assert_eq!(w.stage().await, Stage::AwaitingDelete);
    // A person reactivates the old key; confirmed, it drains and is deactivated again.
    w.iam.set(OLD, KeyStatus::Active);
    assert_eq!(w.run_after(7 * 24).await, Stage::Blocked);
    w.engine().confirm("rot-1", false).await.unwrap();
    assert_eq!(w.run_after(28).await, Stage::Blocked, "the earlier confirmation is not counted again");
    assert!(w.reason().await.contains("waiting for a person to verify"), "{}", w.reason().await);
}

#[tokio::test]
async fn defect_11_force_is_withdrawn_by_a_later_confirmation() {
    let mut w = World::new().await;
    w.start().await;
    w.iam.use_key(OLD, w.clock.now() + SignedDuration::from_hours(2));
    assert_eq!(w.run_after(28).await, Stage::Draining);
    w.iam.fail_next("deactivate", Fault::Throttled);
    assert!(w.engine().confirm("rot-1", true).await.is_err(), "the forced deactivation was throttled");
    // On second thoughts: the consumer was found and fixed instead.
    w.engine().confirm("rot-1", false).await.unwrap();
    assert_eq!(w.run_after(1).await, Stage::Draining);
    assert_eq!(w.iam.status(OLD), Some(KeyStatus::Active), "--force was withdrawn");
}

#[tokio::test]
async fn defect_11_an_old_key_used_after_deactivation_is_not_deleted() {
    let mut w = World::new().await;
    w.start().await;
    assert_eq!(w.run_after(28).await, Stage::AwaitingDelete);
    // Someone turned it on for an hour, used it, and turned it off again.
    w.iam.use_key(OLD, w.clock.now() + SignedDuration::from_hours(1));
    assert_eq!(w.run_after(7 * 24).await, Stage::Blocked);
    assert_eq!(w.iam.status(OLD), Some(KeyStatus::Inactive), "kept");
    assert!(w.reason().await.contains("after it was deactivated"), "{}", w.reason().await);
    w.engine().confirm("rot-1", false).await.unwrap();
    assert_eq!(w.stage().await, Stage::AwaitingDelete, "a new grace period");
    assert_eq!(w.run_after(7 * 24).await, Stage::Completed);
}

#[tokio::test]
async fn defect_12_a_consumer_cloudtrail_cannot_see_keeps_the_drain_waiting() {
    let mut w = World::new().await;
    w.start().await;
    let delivered = w.clock.now();
    let hours = |h: i64| delivered + SignedDuration::from_hours(h);
    w.iam.call(OLD, hours(1), "10.0.0.1");
    assert_eq!(w.run_after(28).await, Stage::Draining);
    // A batch job reads S3 objects with the old key: data calls, never in event history.
    w.iam.use_key(OLD, hours(28) + SignedDuration::from_mins(30));
    assert_eq!(w.run_after(1).await, Stage::Draining);
    // Then the visible consumer moves, after the batch job's use.
    w.iam.call(OLD, hours(30), "10.0.0.1");
    w.iam.call(NEW, hours(31), "10.0.0.1");
    assert_eq!(w.run_after(31).await, Stage::Draining, "the batch job's use is not explained by any consumer CloudTrail shows");
    assert_eq!(w.iam.status(OLD), Some(KeyStatus::Active));
    assert!(history(&w.store).await.iter().all(|e| e.event != "consumers_moved"));
    let waiting = w.store.get("rot-1").await.unwrap().progress["waiting_for"].as_str().unwrap_or_default().to_owned();
    assert!(waiting.contains("a consumer CloudTrail does not show"), "{waiting}");
}

#[tokio::test]
async fn defect_12_an_unreadable_event_is_an_unknown_consumer() {
    let mut w = World::new().await;
    w.start().await;
    let delivered = w.clock.now();
    let hours = |h: i64| delivered + SignedDuration::from_hours(h);
    w.iam.call(OLD, hours(1), "10.0.0.1");
    w.iam.call(NEW, hours(2), "10.0.0.1");
    *w.iam.unreadable.lock().unwrap() = 1;
    assert_eq!(w.run_after(30).await, Stage::Draining, "moved, but for the event rekey cannot read");
}

#[tokio::test]
async fn defect_13_rollback_never_reenables_a_key_someone_else_deactivated() {
    let mut w = World::new().await;
    w.app_on_the_old_key();
    w.start().await;
    // The old key leaked and was quarantined.
    w.iam.set(OLD, KeyStatus::Inactive);
    let err = w.engine().cancel("rot-1", false).await.unwrap_err();
    assert!(err.to_string().contains("deactivated by someone other than rekey"), "{err}");
    assert_eq!(w.iam.status(OLD), Some(KeyStatus::Inactive));
    assert_eq!(w.stage().await, Stage::Draining);
    assert!(w.sink_holds(NEW), "nothing changed");

    // Found so at deactivation, it is not rekey's doing later either.
    assert_eq!(w.run_after(28).await, Stage::AwaitingDelete);
    assert!(w.engine().cancel("rot-1", false).await.is_err());
    assert_eq!(w.iam.status(OLD), Some(KeyStatus::Inactive));
}

#[tokio::test]
async fn defect_13_an_old_key_seen_reactivated_then_quarantined_is_not_rekeys_to_reenable() {
    // No CloudTrail here: what rekey saw through IAM's API is all it knows.
    let mut w = World::new().await;
    w.start().await;
    assert_eq!(w.run_after(28).await, Stage::AwaitingDelete);
    w.iam.set(OLD, KeyStatus::Active);
    assert_eq!(w.run_after(7 * 24).await, Stage::Blocked, "rekey saw the person's reactivation");
    // Then the key leaked and was quarantined: a deactivation, but not rekey's.
    w.iam.set(OLD, KeyStatus::Inactive);
    let err = w.engine().cancel("rot-1", false).await.unwrap_err();
    assert!(err.to_string().contains("deactivated by someone other than rekey"), "{err}");
    assert_eq!(w.iam.status(OLD), Some(KeyStatus::Inactive));
}

#[tokio::test]
async fn an_old_key_someone_deleted_while_draining_ends_the_rotation_without_an_error_loop() {
    let mut w = World::new().await;
    w.start().await;
    w.iam.delete_key(&user(), &AccessKeyId::new(OLD)).await.unwrap();
    assert_eq!(w.run_after(28).await, Stage::AwaitingDelete);
    w.clock.advance(SignedDuration::from_hours(7 * 24));
    let pass = w.run_due().await;
    assert!(pass.errors.is_empty(), "{:?}", pass.errors);
    assert_eq!(w.stage().await, Stage::Completed);
    assert_eq!(w.iam.keys(), [(NEW.into(), KeyStatus::Active)]);
}

/// `rekey retire`: no sinks, no new key; verified by `verify` after the
/// deactivation.
fn retirement(verify: Vec<Verifier>) -> Plan {
    Plan { deliver: Vec::new(), verify, timings: timings(), delete_inactive: false, retire: true }
}

fn exec_true() -> Verifier {
    Verifier::Exec { command: vec!["true".into()], env: Default::default() }
}

#[tokio::test]
async fn retiring_an_unused_key_drains_deactivates_and_deletes_it_making_none() {
    let mut w = World::new().await;
    w.try_start_plan(retirement(vec![])).await.unwrap();
    assert_eq!(w.stage().await, Stage::Draining, "no key to create or deliver");
    assert_eq!(w.run_after(27).await, Stage::Draining, "unused for wait_unused + last_used_lag first");
    assert_eq!(w.iam.status(OLD), Some(KeyStatus::Active));
    assert_eq!(w.run_after(1).await, Stage::AwaitingDelete);
    assert_eq!(w.iam.status(OLD), Some(KeyStatus::Inactive));
    assert_eq!(w.run_after(7 * 24).await, Stage::Completed);
    assert!(w.iam.keys().is_empty(), "the key is gone and none was made: {:?}", w.iam.keys());
    assert!(history(&w.store).await.iter().any(|e| e.event == "retirement_started"), "the history says it was a retirement");
}

#[tokio::test]
async fn retiring_a_key_a_consumer_still_calls_never_deactivates_it_and_names_the_consumer() {
    let mut w = World::new().await;
    w.try_start_plan(retirement(vec![])).await.unwrap();
    let began = w.clock.now();
    w.iam.call(OLD, began + SignedDuration::from_hours(3), "10.0.0.9");
    assert_eq!(w.run_after(48).await, Stage::Draining);
    let waiting = w.store.get("rot-1").await.unwrap().progress["waiting_for"].as_str().unwrap_or_default().to_owned();
    assert!(waiting.contains("after the retirement began") && waiting.contains("10.0.0.9"), "{waiting}");
    assert_eq!(w.run_after(14 * 24).await, Stage::Blocked, "after drain_timeout");
    let reason = w.reason().await;
    assert!(reason.contains("10.0.0.9") && reason.contains("rekey confirm rot-1"), "{reason}");
    assert_eq!(w.iam.status(OLD), Some(KeyStatus::Active), "never deactivated");
}

#[tokio::test]
async fn a_retirement_whose_check_fails_after_deactivation_reactivates_the_key() {
    let mut w = World::new().await;
    w.try_start_plan(retirement(vec![exec_true()])).await.unwrap();
    w.healthy.store(false, Ordering::SeqCst);
    assert_eq!(w.run_after(28).await, Stage::Blocked);
    assert_eq!(w.iam.status(OLD), Some(KeyStatus::Active), "reactivated at once");
    let reason = w.reason().await;
    assert!(reason.contains("reactivated") && !reason.contains("new key"), "{reason}");
}

#[tokio::test]
async fn a_retirement_with_a_sink_or_the_sts_check_is_refused_before_anything() {
    let mut w = World::new().await;
    let mut with_sink = retirement(vec![]);
    with_sink.deliver = vec![Sink::CredentialsFile { path: w.sink_file.clone(), profile: "app".into() }];
    let refused = w.try_start_plan(with_sink).await.unwrap_err().to_string();
    assert!(refused.contains("delivers to no sink"), "{refused}");
    let refused = w.try_start_plan(retirement(vec![Verifier::Sts {}])).await.unwrap_err().to_string();
    assert!(refused.contains("sts"), "{refused}");
    assert_eq!(w.iam.keys(), [(OLD.to_owned(), KeyStatus::Active)], "nothing changed");
}

/// `rekey run` sends a user's Security Hub note once the pass says the
/// rotation's advance ended: by then the note of its last stage is in the
/// outbox, and nothing of this pass follows it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pass_says_a_rotation_settled_only_after_its_last_note_is_written() {
    let mut w = World::new().await;
    w.start().await;
    w.clock.advance(SignedDuration::from_hours(28));
    let mut setup = Setup::new(Arc::new(w.clock.clone()), w.store.clone(), "tester".into());
    setup.targets = Arc::new(TestTargets { healthy: w.healthy.clone() });
    setup.finding_notes = true;
    let (settled, mut told) = tokio::sync::mpsc::unbounded_channel();
    setup.settled = Some(settled);
    // Reads the outbox the moment the pass says so, on another thread
    // while the pass goes on (a signal sent early would find the note missing).
    let store = w.store.clone();
    let listen = tokio::spawn(async move {
        let user = told.recv().await.unwrap();
        (user, store.pending_finding_updates().await.unwrap(), told)
    });
    assert_eq!(run_due(&setup, &w, None, 1).await.unwrap().advanced, ["rot-1"]);
    let (user, outbox, mut told) = listen.await.unwrap();
    let record = w.store.get("rot-1").await.unwrap();
    assert_ne!(record.stage, Stage::Draining, "the pass moved it");
    assert_eq!(user, (record.account_id.clone(), record.user_name.clone()));
    let newest = outbox.iter().filter(|u| u.update.user_name == record.user_name).max_by_key(|u| u.seq).expect("the pass's notes");
    assert!(newest.update.note.ends_with(record.stage.as_str()), "{} (stage {})", newest.update.note, record.stage);
    assert!(told.try_recv().is_err(), "told once per advance");
}
