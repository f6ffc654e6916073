//! Owner notices from a scan report: what `rekey owners` prints and
//! `rekey notify` sends, one per owner, so the two never differ.

use crate::settings::Settings;
use rekey_core::notice::{notices, Notice};
use rekey_core::report::ScanReport;

/// The name `--owner` takes for users without an owner.
pub const UNOWNED: &str = "unowned";

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
