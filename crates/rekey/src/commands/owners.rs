//! `rekey owners`: FAILED and WARNING keys grouped by owner (the owner tag,
//! else the owners file), each key with its age, last use and the exact
//! command for each choice an owner has. What `rekey notify` sends.

use crate::cli::{ListFormat, OwnersArgs};
use crate::notices::owner_notices;
use crate::scanning::{collect, tell_problems, Scope};
use crate::settings::Settings;
use crate::terminal::Terminal;
use rekey_aws::Clients;
use rekey_core::notice::Notice;

pub async fn run(args: OwnersArgs, settings: &Settings, term: &Terminal) -> anyhow::Result<u8> {
    let clients = Clients::new(&settings.aws).await;
    let mut report = collect(&Scope::account(settings), settings, &clients, &clients, &term.progress()).await?;
    if args.consumers {
        crate::trail::fill_consumers(&mut report, settings, &crate::accounts::Accounts::new(&clients, settings, None)).await;
    }
    let notices = owner_notices(&report, settings, args.owner.as_deref())?;
    match args.format {
        ListFormat::Json => {
            let out = serde_json::json!({"as_of": report.as_of, "owners": notices});
            outln!("{}", serde_json::to_string_pretty(&out)?)?;
        }
        ListFormat::Table if notices.is_empty() => outln!("No FAILED or WARNING keys: nothing for an owner to decide.")?,
        ListFormat::Table => outln!("{}", notices.iter().map(Notice::brief).collect::<Vec<_>>().join("\n"))?,
    }
    term.report_calls(clients.calls());
    tell_problems(&report, term);
    Ok(if report.errors.is_empty() { 0 } else { 2 })
}
