//! The rotation workflow engine: sinks (where a new key is delivered),
//! verifiers (how the application is checked) and the runner that advances
//! due rotations.

pub mod plan;
mod process;
pub mod runner;
pub mod sinks;
pub mod verify;
