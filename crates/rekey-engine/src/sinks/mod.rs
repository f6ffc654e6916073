//! Sinks: one module per kind of place a key is delivered to.

pub mod credentials_file;
