//! The rotation workflow engine: sinks (where a new key is delivered),
//! verifiers (how the application is checked) and the runner that advances
//! due rotations.

pub mod sinks;
