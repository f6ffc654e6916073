//! One file per subcommand, each with a `run()`.

pub mod confirm;
pub mod history;
pub mod policy;
pub mod rotate;
pub mod run;
pub mod scan;
pub mod status;

use crate::settings::Settings;
use rekey_store::Store;

pub fn open_store(settings: &Settings) -> anyhow::Result<Store> {
    Ok(Store::open(&settings.state)?)
}
