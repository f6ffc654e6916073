//! One file per subcommand, each with a `run()`.

pub mod scan;
