//! One file per subcommand, each with a `run()`.

pub mod confirm;
pub mod consumers;
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

use crate::accounts::Accounts;
use crate::settings::Settings;
use crate::terminal::Terminal;
use rekey_aws::Clients;
use rekey_engine::clock::SystemClock;
use rekey_engine::keys::AwsKeys;
use rekey_engine::runner::Engine;
use rekey_core::AccountId;
use rekey_store::Store;
use std::sync::Arc;

pub fn open_store(settings: &Settings) -> anyhow::Result<Store> {
    Ok(Store::open(&settings.state)?)
}

/// IAM for the engine, with CloudTrail in the configured regions for the
/// drain's consumer evidence.
pub fn keys(clients: &Clients, settings: &Settings) -> AwsKeys {
    AwsKeys::new(clients).with_cloudtrail(&settings.file.cloudtrail.regions(&clients.region()))
}

/// The rotation engine as configured: the system clock, the actor, notes
/// on findings when Security Hub is on, and the account `clients` act in
/// (as [`Accounts`] established it).
pub fn engine<'a>(keys: &'a AwsKeys, clients: &'a Clients, account: &AccountId, store: &'a mut Store, settings: &Settings, may_reveal: bool) -> Engine<'a> {
    let mut engine = Engine::new(keys, clients, Arc::new(SystemClock), store, settings.actor.clone(), may_reveal).acting_in(account.clone());
    engine.finding_notes = settings.file.securityhub.enabled;
    engine
}

/// The rotation's account and clients acting there (the engine refuses
/// any other before every step). An unknown rotation is the engine's to
/// report: the caller's account then.
pub async fn clients_of_rotation(store: &Store, accounts: &Accounts<'_>, id: &str) -> anyhow::Result<(AccountId, Clients)> {
    let account = match store.get(id) {
        Ok(rotation) => AccountId::new(rotation.account_id),
        Err(_) => accounts.caller().await?.clone(),
    };
    let clients = accounts.clients_for(&account).await?;
    Ok((account, clients))
}

/// After rotations moved: their finding notes go to Security Hub. A
/// Security Hub that fails is a warning; the notes wait for the next run.
pub async fn send_finding_notes(store: &mut Store, settings: &Settings, accounts: &Accounts<'_>, term: &Terminal) -> anyhow::Result<()> {
    let flushed = crate::hub::flush(store, accounts, settings).await?;
    if !flushed.failed.is_empty() {
        term.warn(&flushed.summary());
    }
    Ok(())
}
