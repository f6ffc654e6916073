//! One file per subcommand, each with a `run()`.

pub mod confirm;
pub mod findings;
pub mod history;
pub mod notify;
pub mod owners;
pub mod policy;
pub mod rotate;
pub mod run;
pub mod scan;
pub mod status;
pub mod suppress;

use crate::settings::Settings;
use crate::terminal::Terminal;
use rekey_aws::Clients;
use rekey_engine::clock::SystemClock;
use rekey_engine::keys::AwsKeys;
use rekey_engine::runner::Engine;
use rekey_store::Store;
use std::sync::Arc;

pub fn open_store(settings: &Settings) -> anyhow::Result<Store> {
    Ok(Store::open(&settings.state)?)
}

/// The rotation engine as configured: the system clock, the actor, and
/// notes on findings when Security Hub is on.
pub fn engine<'a>(keys: &'a AwsKeys, clients: &'a Clients, store: &'a mut Store, settings: &Settings, may_reveal: bool) -> Engine<'a> {
    let mut engine = Engine::new(keys, clients, Arc::new(SystemClock), store, settings.actor.clone(), may_reveal);
    engine.finding_notes = settings.file.securityhub.enabled;
    engine
}

/// After rotations moved: their finding notes go to Security Hub. A
/// Security Hub that fails is a warning; the notes wait for the next run.
pub async fn send_finding_notes(store: &mut Store, settings: &Settings, clients: &Clients, term: &Terminal) -> anyhow::Result<()> {
    let Some(hub) = crate::hub::client(settings, clients) else { return Ok(()) };
    let flushed = crate::hub::flush(store, &hub, &settings.actor).await?;
    if !flushed.failed.is_empty() {
        term.warn(&flushed.summary());
    }
    Ok(())
}
