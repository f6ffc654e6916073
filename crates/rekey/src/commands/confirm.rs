//! `rekey confirm`, `rekey rollback`, `rekey abort`: a person acting on one
//! rotation.

use super::open_store;
use crate::cli::{ConfirmArgs, IdArgs};
use crate::commands::rotate::exit_code;
use crate::commands::status::print_one;
use crate::settings::Settings;
use crate::terminal::Terminal;
use rekey_aws::Clients;
use rekey_core::workflow::Event;
use rekey_engine::runner::Engine;

pub async fn confirm(args: ConfirmArgs, settings: &Settings, term: &Terminal) -> anyhow::Result<u8> {
    let mut store = open_store(settings)?;
    let clients = Clients::new(&settings.aws).await;
    let mut engine = Engine::new(&clients, &mut store, settings.actor.clone(), args.reveal || term.stdout_is_terminal);
    let result = engine.confirm(&args.id, args.force).await;
    let r = store.get(&args.id)?;
    print_one(&r)?;
    result?;
    Ok(exit_code(r.stage))
}

pub async fn cancel(args: IdArgs, event: Event, settings: &Settings) -> anyhow::Result<u8> {
    let mut store = open_store(settings)?;
    let clients = Clients::new(&settings.aws).await;
    let mut engine = Engine::new(&clients, &mut store, settings.actor.clone(), false);
    engine.cancel(&args.id, event).await?;
    print_one(&store.get(&args.id)?)?;
    Ok(0)
}
