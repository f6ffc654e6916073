//! The engine tests' IAM: one user's keys in memory, on the test's clock,
//! with CloudTrail's event history, faults on the next call of an
//! operation, and a runner that steals the lease mid-step.

use jiff::{SignedDuration, Timestamp};
use rekey_aws::cloudtrail::KeyEvents;
use rekey_aws::iam::{ListedKey, RequestId};
use rekey_aws::AwsError;
use rekey_core::consumers::TrailEvent;
use rekey_core::{AccessKeyId, AccountId, Credentials, KeyStatus, LastUsed, Secret, UserName};
use rekey_engine::clock::{Clock, ManualClock};
use rekey_engine::keys::KeyApi;
use rekey_store::SharedStore;
use std::sync::Mutex;

pub const ACCOUNT: &str = "123456789012";
pub const USER: &str = "batch";
pub const OLD: &str = "AKIAOLD";

pub struct Key {
    pub id: String,
    pub status: KeyStatus,
    pub created: Timestamp,
    /// When, by which service, in which region.
    pub last_used: Option<(Timestamp, &'static str, &'static str)>,
    /// IAM shows `last_used` only from this time on (its reporting lag).
    pub shown_from: Option<Timestamp>,
}

/// What the next call of an operation meets.
#[derive(Clone, Copy, PartialEq)]
pub enum Fault {
    /// AWS answers with an error: nothing happened.
    Throttled,
    /// The call takes effect, and its answer is lost.
    Lost,
}

/// IAM for one user, in memory, on the test's clock.
pub struct FakeIam {
    pub clock: ManualClock,
    pub account: Mutex<String>,
    pub keys: Mutex<Vec<Key>>,
    pub created: Mutex<u32>,
    /// CloudTrail's event history; `None`: not configured.
    pub trail: Mutex<Option<Vec<TrailEvent>>>,
    /// Events CloudTrail returned that cannot be read.
    pub unreadable: Mutex<usize>,
    /// The next call of an operation ("create", "set_status") fails so.
    pub faults: Mutex<Vec<(&'static str, Fault)>>,
    /// Another runner takes the lease during the next `list_keys` (a step that stalled).
    pub thief: Mutex<Option<(SharedStore, String)>>,
}

impl FakeIam {
    pub fn new(clock: &ManualClock) -> FakeIam {
        let old = Key { id: OLD.into(), status: KeyStatus::Active, created: clock.now() - SignedDuration::from_hours(24 * 200), last_used: None, shown_from: None };
        FakeIam {
            clock: clock.clone(),
            account: Mutex::new(ACCOUNT.into()),
            keys: Mutex::new(vec![old]),
            created: Mutex::new(0),
            trail: Mutex::new(None),
            unreadable: Mutex::new(0),
            faults: Mutex::new(Vec::new()),
            thief: Mutex::new(None),
        }
    }

    pub fn fail_next(&self, operation: &'static str, fault: Fault) {
        self.faults.lock().unwrap().push((operation, fault));
    }

    pub fn fault(&self, operation: &str) -> Option<Fault> {
        let mut faults = self.faults.lock().unwrap();
        let i = faults.iter().position(|(op, _)| *op == operation)?;
        Some(faults.remove(i).1)
    }

    pub fn set(&self, id: &str, status: KeyStatus) {
        self.keys.lock().unwrap().iter_mut().find(|k| k.id == id).unwrap().status = status;
    }

    pub fn status(&self, id: &str) -> Option<KeyStatus> {
        self.keys.lock().unwrap().iter().find(|k| k.id == id).map(|k| k.status)
    }

    pub fn keys(&self) -> Vec<(String, KeyStatus)> {
        self.keys.lock().unwrap().iter().map(|k| (k.id.clone(), k.status)).collect()
    }

    /// A data call (S3 objects, say) with `key`: IAM's last use records it,
    /// CloudTrail's event history never shows it.
    pub fn use_key(&self, id: &str, at: Timestamp) {
        self.keys.lock().unwrap().iter_mut().find(|k| k.id == id).unwrap().last_used = Some((at, "s3", "eu-west-1"));
    }

    /// A use IAM's last-used data shows only `lag` later.
    pub fn use_key_reported_late(&self, id: &str, at: Timestamp, lag: SignedDuration) {
        self.use_key(id, at);
        self.keys.lock().unwrap().iter_mut().find(|k| k.id == id).unwrap().shown_from = Some(at + lag);
    }

    /// A management call with `key` from `ip`: in IAM's last use and in CloudTrail.
    pub fn call(&self, key: &str, at: Timestamp, ip: &str) {
        self.keys.lock().unwrap().iter_mut().find(|k| k.id == key).unwrap().last_used = Some((at, "s3", "us-east-1"));
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

    pub fn add_key(&self, id: &str, created: Timestamp) {
        self.keys.lock().unwrap().push(Key { id: id.into(), status: KeyStatus::Active, created, last_used: None, shown_from: None });
    }
}

#[async_trait::async_trait]
impl KeyApi for FakeIam {
    async fn caller_account(&self) -> Result<AccountId, AwsError> {
        Ok(AccountId::new(&*self.account.lock().unwrap()))
    }
    async fn user_arn(&self, user: &UserName) -> Result<Option<String>, AwsError> {
        Ok(Some(format!("arn:aws:iam::{ACCOUNT}:user/{user}")))
    }
    async fn list_keys(&self, _user: &UserName) -> Result<Vec<ListedKey>, AwsError> {
        let thief = self.thief.lock().unwrap().take();
        if let Some((store, id)) = thief {
            let later = self.clock.now() + SignedDuration::from_mins(10);
            assert!(store.try_lease(&id, "another-runner", later, later + SignedDuration::from_mins(5)).await.unwrap());
        }
        Ok(self.keys.lock().unwrap().iter().map(|k| ListedKey { id: AccessKeyId::new(&k.id), status: k.status, created_at: k.created }).collect())
    }
    async fn last_used(&self, key: &AccessKeyId) -> Result<LastUsed, AwsError> {
        let now = self.clock.now();
        let shown = |k: &&Key| k.shown_from.is_none_or(|from| from <= now);
        let used = self.keys.lock().unwrap().iter().find(|k| k.id == key.as_str()).filter(shown).and_then(|k| k.last_used);
        Ok(LastUsed { at: used.map(|u| u.0), service: used.map(|u| u.1.into()), region: used.map(|u| u.2.into()) })
    }
    async fn create_key(&self, _user: &UserName) -> Result<(Credentials, RequestId), AwsError> {
        let fault = self.fault("create");
        if fault == Some(Fault::Throttled) {
            return Err(throttled("iam:CreateAccessKey"));
        }
        let n = {
            let mut created = self.created.lock().unwrap();
            *created += 1;
            *created
        };
        let id = format!("AKIANEW{n}");
        self.add_key(&id, self.clock.now());
        if fault == Some(Fault::Lost) {
            return Err(AwsError::Unreachable { operation: "iam:CreateAccessKey", endpoint: "fake".into(), detail: "connection reset".into() });
        }
        Ok((Credentials { access_key_id: AccessKeyId::new(&id), secret_access_key: Secret::new(format!("secret{n}")) }, None))
    }
    async fn set_status(&self, _user: &UserName, key: &AccessKeyId, status: KeyStatus) -> Result<RequestId, AwsError> {
        let fault = self.fault(if status == KeyStatus::Active { "activate" } else { "deactivate" });
        if fault == Some(Fault::Throttled) {
            return Err(throttled("iam:UpdateAccessKey"));
        }
        self.keys.lock().unwrap().iter_mut().find(|k| k.id == key.as_str()).unwrap().status = status;
        if fault == Some(Fault::Lost) {
            return Err(AwsError::Unreachable { operation: "iam:UpdateAccessKey", endpoint: "fake".into(), detail: "connection reset".into() });
        }
        Ok(None)
    }
    async fn delete_key(&self, _user: &UserName, key: &AccessKeyId) -> Result<RequestId, AwsError> {
        self.keys.lock().unwrap().retain(|k| k.id != key.as_str());
        Ok(None)
    }
    fn clock_offset(&self) -> SignedDuration {
        SignedDuration::ZERO
    }
    async fn key_events(&self, key: &AccessKeyId, from: Timestamp) -> Result<Option<KeyEvents>, AwsError> {
        let trail = self.trail.lock().unwrap();
        let now = self.clock.now();
        let unreadable = *self.unreadable.lock().unwrap();
        Ok(trail.as_ref().map(|events| KeyEvents {
            events: events.iter().filter(|e| e.access_key_id == key.as_str() && e.time >= from && e.time <= now).cloned().collect(),
            unreadable,
        }))
    }
}

pub fn throttled(operation: &'static str) -> AwsError {
    AwsError::Throttled { operation, message: "Rate exceeded".into() }
}
