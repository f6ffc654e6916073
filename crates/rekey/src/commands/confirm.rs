//! `rekey confirm`, `rekey rollback`, `rekey abort`: a person acting on one
//! rotation.

use super::open_store;
use crate::cli::{ConfirmArgs, IdArgs};
use crate::commands::rotate::exit_code;
use crate::commands::status::print_one;
use crate::settings::Settings;
use crate::terminal::Terminal;
use rekey_aws::Clients;
use rekey_engine::clock::SystemClock;
use rekey_engine::keys::AwsKeys;
use rekey_engine::runner::Engine;
use std::sync::Arc;

pub async fn confirm(args: ConfirmArgs, settings: &Settings, term: &Terminal) -> anyhow::Result<u8> {
    let mut store = open_store(settings)?;
    let clients = Clients::new(&settings.aws).await;
    let keys = AwsKeys::new(&clients);
    let mut engine = Engine::new(&keys, &clients, Arc::new(SystemClock), &mut store, settings.actor.clone(), args.reveal || term.stdout_is_terminal);
    let result = engine.confirm(&args.id, args.force).await;
    let r = store.get(&args.id)?;
    let printed = print_one(&r);
    result?;
    printed?;
    Ok(exit_code(r.stage))
}

/// `abort` is `true` for `rekey abort`, `false` for `rekey rollback`.
pub async fn cancel(args: IdArgs, abort: bool, settings: &Settings) -> anyhow::Result<u8> {
    let mut store = open_store(settings)?;
    let clients = Clients::new(&settings.aws).await;
    let keys = AwsKeys::new(&clients);
    let mut engine = Engine::new(&keys, &clients, Arc::new(SystemClock), &mut store, settings.actor.clone(), false);
    let result = engine.cancel(&args.id, abort).await;
    if let Ok(r) = store.get(&args.id) {
        if result.is_ok() || r.stage.is_undo() || r.came_from.is_some_and(|s| s.is_undo()) {
            print_one(&r)?;
        }
    }
    result?;
    Ok(0)
}
