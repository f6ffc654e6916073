//! A pass of `rekey run`: every due rotation, in its own account, up to
//! `concurrency` at once, each under its own lease. The one loop the binary
//! and the tests run.

use super::*;
use futures::StreamExt;

/// Keys and clients that act in one account.
pub struct Acting {
    pub account: AccountId,
    pub clients: Clients,
    pub keys: Arc<dyn KeyApi>,
}

/// Reaches an account: the caller's own, or another through a role.
#[async_trait::async_trait]
pub trait Reach: Send + Sync {
    /// Asked before each rotation is advanced, not once per pass, so that
    /// an assumed role's credentials are fresh for its steps.
    async fn reach(&self, account: &AccountId) -> Result<Acting, String>;
}

/// What every engine of a pass shares.
#[derive(Clone)]
pub struct Setup {
    pub clock: Arc<dyn Clock>,
    pub store: SharedStore,
    pub actor: String,
    pub may_reveal: bool,
    /// Each stage change also leaves a note on the user's IAM.3 finding.
    pub finding_notes: bool,
    /// Told (account, user) once a rotation's advance of this pass wrote
    /// its last note: those notes may go out at once (see `Engine::settled`).
    pub settled: Option<Settled>,
    pub targets: Arc<dyn Targets>,
    /// Who the engines are; this process unless set (a test's hosts).
    pub holder: Option<Holder>,
}

impl Setup {
    pub fn new(clock: Arc<dyn Clock>, store: SharedStore, actor: String) -> Setup {
        Setup { clock, store, actor, may_reveal: false, finding_notes: false, settled: None, targets: Arc::new(Configured), holder: None }
    }

    /// An engine acting in `acting`'s account.
    pub fn engine<'a>(&self, acting: &'a Acting) -> Engine<'a> {
        let mut engine = Engine::new(&*acting.keys, &acting.clients, self.clock.clone(), self.store.clone(), self.actor.clone(), self.may_reveal)
            .with_targets(self.targets.clone())
            .acting_in(acting.account.clone());
        (engine.finding_notes, engine.settled) = (self.finding_notes, self.settled.clone());
        match &self.holder {
            Some(holder) => engine.with_holder(holder.clone()),
            None => engine,
        }
    }
}

/// Where a pass tells which users' finding notes are final for now.
pub type Settled = tokio::sync::mpsc::UnboundedSender<(AccountId, UserName)>;

/// What a pass did: the rotations it advanced, most overdue first, and the
/// errors it met (one rotation's error never stops the others).
#[derive(Debug, Default)]
pub struct Pass {
    pub advanced: Vec<String>,
    pub errors: Vec<EngineError>,
}

/// Every rotation due now (of `only` that account), advanced as far as each
/// can go in its own account. A rotation in an account that cannot be
/// reached is an error and is left as it is.
pub async fn run_due(setup: &Setup, reach: &dyn Reach, only: Option<&AccountId>, concurrency: usize) -> Result<Pass, EngineError> {
    let due = setup.store.due(setup.clock.now()).await?;
    let work = due.into_iter().filter(|d| only.is_none_or(|only| *only == d.account_id)).enumerate().map(|(order, d)| async move {
        let account = d.account_id.clone();
        let outcome = match reach.reach(&account).await {
            Ok(acting) => setup.engine(&acting).advance(&d.id).await,
            Err(reason) => Err(EngineError::Unreachable { id: d.id.clone(), account, reason }),
        };
        (order, d.id, outcome)
    });
    let mut done: Vec<_> = futures::stream::iter(work).buffer_unordered(concurrency.max(1)).collect().await;
    done.sort_by_key(|(order, ..)| *order);
    let mut pass = Pass::default();
    for (_, id, outcome) in done {
        match outcome {
            Ok(true) => pass.advanced.push(id),
            Ok(false) => tracing::info!(rotation = %id, result = "leased elsewhere", "another rekey process holds the rotation"),
            Err(e) => pass.errors.push(e),
        }
    }
    Ok(pass)
}
