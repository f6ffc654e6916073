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
pub mod state;
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
use rekey_store::{DynamoStore, Location, SharedStore, SqliteStore, StoreError};
use std::sync::Arc;

/// The state store `--state` / `[state]` names: a SQLite file, or a
/// DynamoDB table reached with the caller's own credentials. Refused once
/// `rekey state migrate` moved it elsewhere: its rotations live on there.
pub async fn open_store(settings: &Settings) -> anyhow::Result<SharedStore> {
    let store = open_location(&settings.state, settings).await?;
    rekey_store::refuse_if_migrated(&*store).await?;
    Ok(store)
}

/// The state store, only to be read: one migrated elsewhere still answers,
/// as it was then, and the warning returned says so.
pub async fn open_store_to_read(settings: &Settings) -> anyhow::Result<(SharedStore, Option<String>)> {
    let store = open_location(&settings.state, settings).await?;
    let warning = match rekey_store::refuse_if_migrated(&*store).await {
        Ok(()) => None,
        Err(e @ StoreError::Migrated { .. }) => Some(format!("{e}; what follows is as it was then")),
        Err(e) => return Err(e.into()),
    };
    Ok((store, warning))
}

pub async fn open_location(location: &Location, settings: &Settings) -> anyhow::Result<SharedStore> {
    Ok(match location {
        Location::Sqlite(path) => Arc::new(SqliteStore::open(path)?),
        Location::Dynamo { table } => Arc::new(DynamoStore::new(Clients::new(&settings.aws).await.dynamodb(), table)),
    })
}

/// Stops a stream from the state store with what went wrong on our side
/// (writing the output, say).
pub fn stop(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> rekey_store::StoreError {
    rekey_store::StoreError::Stopped(e.into())
}

/// IAM for the engine, with CloudTrail in the configured regions for the
/// drain's consumer evidence.
pub fn keys(clients: &Clients, settings: &Settings) -> AwsKeys {
    AwsKeys::new(clients).with_cloudtrail(&settings.file.cloudtrail.regions(&clients.region()))
}

/// The rotation engine as configured: the system clock, the actor, notes
/// on findings when Security Hub is on, and the account `clients` act in
/// (as [`Accounts`] established it).
pub fn engine<'a>(keys: &'a AwsKeys, clients: &'a Clients, account: &AccountId, store: &SharedStore, settings: &Settings, may_reveal: bool) -> Engine<'a> {
    let mut engine = Engine::new(keys, clients, Arc::new(SystemClock), store.clone(), settings.actor.clone(), may_reveal).acting_in(account.clone());
    engine.finding_notes = settings.file.securityhub.enabled;
    engine
}

/// The rotation's account and clients acting there (the engine refuses
/// any other before every step). An unknown rotation is the engine's to
/// report: the caller's account then.
pub async fn clients_of_rotation(store: &SharedStore, accounts: &Accounts<'_>, id: &str) -> anyhow::Result<(AccountId, Clients)> {
    let account = match store.get(id).await {
        Ok(rotation) => AccountId::new(rotation.account_id),
        Err(_) => accounts.caller().await?.clone(),
    };
    let clients = accounts.clients_for(&account).await?;
    Ok((account, clients))
}

/// After rotations moved: their finding notes go to Security Hub. A
/// Security Hub that fails is a warning; the notes wait for the next run.
pub async fn send_finding_notes(store: &SharedStore, settings: &Settings, accounts: &Accounts<'_>, term: &Terminal) -> anyhow::Result<()> {
    let flushed = crate::hub::flush(store, accounts, settings).await?;
    if !flushed.failed.is_empty() {
        term.warn(&flushed.summary());
    }
    Ok(())
}
