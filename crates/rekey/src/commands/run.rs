//! `rekey run`: advances every rotation that is due. Only due rotations cost
//! AWS calls; the rest is one indexed query of the state store.

use super::open_store;
use crate::cli::RunArgs;
use crate::settings::Settings;
use crate::table::count;
use crate::terminal::Terminal;
use rekey_aws::Clients;
use rekey_engine::clock::SystemClock;
use rekey_engine::keys::AwsKeys;
use rekey_engine::runner::Engine;
use rekey_store::Outlook;
use std::sync::Arc;

pub async fn run(args: RunArgs, settings: &Settings, term: &Terminal) -> anyhow::Result<u8> {
    let mut store = open_store(settings)?;
    let clients = Clients::new(&settings.aws).await;
    let keys = AwsKeys::new(&clients);
    let may_reveal = args.reveal || term.stdout_is_terminal;
    loop {
        let mut engine = Engine::new(&keys, &clients, Arc::new(SystemClock), &mut store, settings.actor.clone(), may_reveal);
        let (advanced, errors) = engine.run_due().await?;
        for id in &advanced {
            let r = store.get(id)?;
            let note = r.blocked_reason.as_deref().map(|b| format!(": {b}")).unwrap_or_default();
            outln!("{id}: {}{note}", r.stage)?;
        }
        for e in &errors {
            term.error(&e.to_string());
        }
        if !term.quiet {
            outln!("{}", summary(advanced.len(), &store.outlook()?))?;
        }
        term.report_calls(clients.calls());
        match args.interval {
            None => return Ok(if errors.is_empty() { 0 } else { 2 }),
            Some(every) => tokio::time::sleep(every.to_signed().unsigned_abs()).await,
        }
    }
}

/// One line per pass, for a cron log: what it did and when there is more to do.
fn summary(advanced: usize, outlook: &Outlook) -> String {
    let mut line = format!("advanced {}; {} waiting", count(advanced, "rotation"), outlook.waiting);
    if let Some(next) = outlook.next_due {
        line += &format!(", next due at {next}");
    }
    if outlook.blocked > 0 {
        line += &format!("; {} blocked, waiting for a person (see rekey status)", outlook.blocked);
    }
    line
}
