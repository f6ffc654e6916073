//! `rekey confirm`, `rekey rollback`, `rekey abort`: a person acting on one
//! rotation.

use super::{acting_for_rotation, engine, send_finding_notes};
use crate::store::open_store;
use crate::accounts::Accounts;
use crate::cli::{ConfirmArgs, IdArgs};
use crate::rotations::{exit_code, print_one};
use crate::settings::Settings;
use crate::terminal::Terminal;
use rekey_aws::Clients;

pub async fn confirm(args: ConfirmArgs, settings: &Settings, term: &Terminal) -> anyhow::Result<u8> {
    let store = open_store(settings).await?;
    let base = Clients::new(&settings.aws).await;
    let accounts = Accounts::new(&base, settings, None);
    let acting = acting_for_rotation(&store, &accounts, &args.id, settings).await?;
    let mut engine = engine(&acting, &store, settings, args.reveal || term.stdout_is_terminal);
    let result = engine.confirm(&args.id, args.force).await;
    send_finding_notes(&store, settings, &accounts, term).await?;
    let r = store.get(&args.id).await?;
    let printed = print_one(&r);
    result?;
    printed?;
    Ok(exit_code(r.stage))
}

/// `abort` is `true` for `rekey abort`, `false` for `rekey rollback`.
pub async fn cancel(args: IdArgs, abort: bool, settings: &Settings, term: &Terminal) -> anyhow::Result<u8> {
    let store = open_store(settings).await?;
    let base = Clients::new(&settings.aws).await;
    let accounts = Accounts::new(&base, settings, None);
    let acting = acting_for_rotation(&store, &accounts, &args.id, settings).await?;
    let mut engine = engine(&acting, &store, settings, false);
    let result = engine.cancel(&args.id, abort).await;
    send_finding_notes(&store, settings, &accounts, term).await?;
    if let Ok(r) = store.get(&args.id).await {
        if result.is_ok() || r.stage.is_undo() || r.came_from.is_some_and(|s| s.is_undo()) {
            print_one(&r)?;
        }
    }
    result?;
    Ok(0)
}
