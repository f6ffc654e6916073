//! The `rekey` binary: parses the command line, loads settings, runs one
//! subcommand and maps the outcome to an exit code (0 ok, 1 findings at or
//! above `--fail-on`, 2 error).

mod cli;
mod commands;
mod output;
mod settings;
mod terminal;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    init_logging(cli.global.verbose, cli.global.quiet);
    let term = terminal::Terminal::new(&cli.global);
    match run(cli, &term) {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            term.error(&format!("{err:#}"));
            ExitCode::from(2)
        }
    }
}

fn run(cli: cli::Cli, term: &terminal::Terminal) -> anyhow::Result<u8> {
    let settings = settings::Settings::load(&cli.global)?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        match cli.command {
            cli::Command::Scan(args) => commands::scan::run(args, &settings, term).await,
        }
    })
}

/// -vv logs rekey's and the SDK's requests; the SDK never logs secret keys.
fn init_logging(verbose: u8, quiet: bool) {
    let level = match (quiet, verbose) {
        (true, _) => tracing::Level::ERROR,
        (_, 0 | 1) => tracing::Level::WARN,
        (_, 2) => tracing::Level::DEBUG,
        _ => tracing::Level::TRACE,
    };
    tracing_subscriber::fmt().with_max_level(level).with_writer(std::io::stderr).init();
}
