//! One file per subcommand, each with a `run()`.

pub mod confirm;
pub mod history;
pub mod rotate;
pub mod run;
pub mod scan;
pub mod status;

use crate::settings::Settings;
use rekey_store::Store;

/// Who is acting, for the audit log: the OS user (or its uid).
pub fn actor() -> String {
    use std::os::unix::fs::MetadataExt;
    std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| match std::fs::metadata("/proc/self") {
            Ok(m) => format!("uid {}", m.uid()),
            Err(_) => "unknown".to_owned(),
        })
}

pub fn open_store(settings: &Settings) -> anyhow::Result<Store> {
    Ok(Store::open(&settings.state)?)
}
