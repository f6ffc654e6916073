//! `rekey owners`: FAILED and WARNING keys grouped by owner (the owner tag,
//! else the owners file), each key with its age, last use and the exact
//! command for each choice an owner has. What `rekey notify` sends.

use super::scan::{collect, tell_problems, Scope};
use crate::cli::{ListFormat, OwnersArgs};
use crate::settings::Settings;
use crate::terminal::Terminal;
use rekey_aws::Clients;
use rekey_core::notice::{notices, Notice};
use rekey_core::report::ScanReport;

/// The name `--owner` takes for users without an owner.
pub const UNOWNED: &str = "unowned";

pub async fn run(args: OwnersArgs, settings: &Settings, term: &Terminal) -> anyhow::Result<u8> {
    let clients = Clients::new(&settings.aws).await;
    let mut report = collect(&Scope::account(settings), settings, &clients, &term.progress()).await?;
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

/// One notice per owner with FAILED or WARNING keys, with the owner's
/// contact from the owners file; only `owner`'s when given.
pub fn owner_notices(report: &ScanReport, settings: &Settings, owner: Option<&str>) -> anyhow::Result<Vec<Notice>> {
    let owners = settings.owners_map()?;
    let contact = |o: Option<&str>| o.and_then(|o| owners.as_ref()?.contact_for(o)).map(str::to_owned);
    let mut notices = notices(&report.keys, report.as_of, contact);
    if let Some(owner) = owner {
        notices.retain(|n| n.owner.as_deref().unwrap_or(UNOWNED) == owner);
    }
    Ok(notices)
}
