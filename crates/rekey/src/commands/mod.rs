//! One file per subcommand, each with a `run()`.

pub mod confirm;
pub mod consumers;
pub mod findings;
pub mod history;
pub mod notify;
pub mod owners;
pub mod policy;
pub mod role_plan;
pub mod rotate;
pub mod run;
pub mod scan;
pub mod state;
pub mod status;
pub mod suppress;

use crate::accounts::Accounts;
use crate::settings::Settings;
use crate::terminal::Terminal;
use rekey_aws::Clients;
use rekey_engine::clock::SystemClock;
use rekey_engine::keys::AwsKeys;
use rekey_engine::runner::{Acting, Engine, Reach, Setup};
use rekey_core::AccountId;
use rekey_store::SharedStore;
use std::sync::Arc;

/// IAM for the engine, with CloudTrail in the configured regions for the
/// drain's consumer evidence.
pub fn keys(clients: &Clients, settings: &Settings) -> AwsKeys {
    AwsKeys::new(clients).with_cloudtrail(&settings.file.cloudtrail.regions(&clients.region()))
}

/// What every engine shares, as configured: the system clock, the actor,
/// notes on findings when Security Hub is on.
pub fn setup(store: &SharedStore, settings: &Settings, may_reveal: bool) -> Setup {
    let mut setup = Setup::new(Arc::new(SystemClock), store.clone(), settings.actor.clone());
    (setup.may_reveal, setup.finding_notes) = (may_reveal, settings.file.securityhub.enabled);
    setup
}

/// Keys and clients acting in `account`, as [`Accounts`] established it.
pub fn acting(clients: Clients, account: &AccountId, settings: &Settings) -> Acting {
    Acting { account: account.clone(), keys: Arc::new(keys(&clients, settings)), clients }
}

/// The rotation engine as configured, acting in `account` with `clients`.
pub fn engine<'a>(acting: &'a Acting, store: &SharedStore, settings: &Settings, may_reveal: bool) -> Engine<'a> {
    setup(store, settings, may_reveal).engine(acting)
}

/// Each account reached through [`Accounts`] (the caller's, or a role).
pub struct Reaching<'a> {
    pub accounts: &'a Accounts<'a>,
    pub settings: &'a Settings,
}

#[async_trait::async_trait]
impl Reach for Reaching<'_> {
    async fn reach(&self, account: &AccountId) -> Result<Acting, String> {
        let clients = self.accounts.clients_for(account).await.map_err(|e| format!("{e:#}"))?;
        Ok(acting(clients, account, self.settings))
    }
}

/// Keys and clients acting in the rotation's account (the engine refuses
/// any other before every step). An unknown rotation is the engine's to
/// report: the caller's account then.
pub async fn acting_for_rotation(store: &SharedStore, accounts: &Accounts<'_>, id: &str, settings: &Settings) -> anyhow::Result<Acting> {
    let account = match store.get(id).await {
        Ok(rotation) => rotation.account_id,
        Err(_) => accounts.caller().await?.clone(),
    };
    let clients = accounts.clients_for(&account).await?;
    Ok(acting(clients, &account, settings))
}

/// After rotations moved: their finding notes go to Security Hub. A
/// Security Hub that fails is a warning; the notes wait for the next run.
pub async fn send_finding_notes(store: &SharedStore, settings: &Settings, accounts: &Accounts<'_>, term: &Terminal) -> anyhow::Result<()> {
    let flushed = crate::hub::flush(store, accounts, settings).await?;
    if !flushed.failed.is_empty() {
        term.warn(&flushed.summary());
    }
    Ok(())
}
