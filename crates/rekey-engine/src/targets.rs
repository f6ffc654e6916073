//! What a target's configuration becomes: its sinks and its verifiers. The
//! engine asks a [`Targets`] for them, so the model test
//! (`tests/model.rs`) can put fakes with the same contracts in their
//! place; [`Configured`] is the real thing.

use crate::sinks::{self, DeliverySink};
use crate::verify::{self, Check};
use rekey_core::target::{Sink, Verifier};

pub trait Targets: Send + Sync {
    fn sink<'s>(&self, config: &'s Sink) -> Box<dyn DeliverySink + 's>;
    fn verifier<'s>(&self, config: &'s Verifier) -> Box<dyn Check + 's>;
}

/// The sinks and verifiers a `rekey.toml` configures.
pub struct Configured;

impl Targets for Configured {
    fn sink<'s>(&self, config: &'s Sink) -> Box<dyn DeliverySink + 's> {
        sinks::of(config)
    }
    fn verifier<'s>(&self, config: &'s Verifier) -> Box<dyn Check + 's> {
        verify::of(config)
    }
}
