//! Time, injected: the engine asks a [`Clock`] instead of the system, so its
//! decisions about waits are unit-tested without sleeping.

use jiff::Timestamp;
use rekey_core::model::whole_seconds;
use std::sync::{Arc, Mutex};

pub trait Clock: Send + Sync {
    /// This machine's time, in whole seconds.
    fn now(&self) -> Timestamp;
}

pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        whole_seconds(Timestamp::now())
    }
}

/// A clock that moves only when told to (tests).
#[derive(Clone)]
pub struct ManualClock(Arc<Mutex<Timestamp>>);

impl ManualClock {
    pub fn at(t: Timestamp) -> Self {
        ManualClock(Arc::new(Mutex::new(t)))
    }

    pub fn advance(&self, by: jiff::SignedDuration) {
        // invariant: a poisoned lock means a thread already panicked
        *self.0.lock().expect("clock lock") += by;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        // invariant: a poisoned lock means a thread already panicked
        *self.0.lock().expect("clock lock")
    }
}
