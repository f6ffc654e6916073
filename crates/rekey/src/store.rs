//! The CLI's way to the state store `--state` / `[state]` names, shared by
//! the commands and the scan (which marks keys under rotation).

use crate::settings::Settings;
use rekey_aws::Clients;
use rekey_store::{DynamoStore, Location, SharedStore, SqliteStore, StoreError};
use std::sync::Arc;

/// The state store: a SQLite file, or a
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
