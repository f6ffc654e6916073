//! The `rekey` binary: parses the command line, loads settings, runs one
//! subcommand and maps the outcome to an exit code (0 ok, 1 findings at or
//! above `--fail-on`, 2 error).

/// `println!` that returns the write's error rather than panicking, so that
/// a closed pipe ends rekey quietly (see [`is_closed_pipe`]).
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout(), $($arg)*)
    }};
}

mod accounts;
mod cli;
mod commands;
mod exemptions;
mod hub;
mod notices;
mod output;
mod reminders;
mod rotations;
mod scanning;
mod settings;
mod store;
mod table;
mod trail;
mod terminal;

use std::process::ExitCode;

/// Reserved, not used: the kernel commits stack pages as they are touched.
const STACK_SIZE: usize = 64 << 20;

fn main() -> ExitCode {
    let cli = cli::parse();
    init_logging(&cli.global);
    let term = terminal::Terminal::new(&cli.global);
    // The Security Hub SDK's finding types nest deeply: reading a page of
    // findings in a debug build needs more than the main thread's 8 MiB.
    let outcome = std::thread::scope(|s| {
        let worker = std::thread::Builder::new().stack_size(STACK_SIZE).spawn_scoped(s, || run(cli, &term));
        match worker {
            Ok(worker) => worker.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
            Err(e) => Err(anyhow::anyhow!("cannot start rekey's worker thread: {e}")),
        }
    });
    match outcome {
        Ok(code) => ExitCode::from(code),
        Err(err) if is_closed_pipe(&err) => ExitCode::SUCCESS,
        Err(err) => {
            term.error(&format!("{err:#}"));
            ExitCode::from(2)
        }
    }
}

fn run(cli: cli::Cli, term: &terminal::Terminal) -> anyhow::Result<u8> {
    use clap::CommandFactory;
    // Made from the clap definitions alone: no rekey.toml read, no AWS.
    match &cli.command {
        cli::Command::Completions(args) => {
            // clap_complete panics on a failed write: buffer, then write.
            let mut script = Vec::new();
            clap_complete::generate(args.shell, &mut cli::Cli::command(), "rekey", &mut script);
            std::io::Write::write_all(&mut std::io::stdout(), &script)?;
            return Ok(0);
        }
        cli::Command::Man => {
            clap_mangen::Man::new(cli::Cli::command()).render(&mut std::io::stdout())?;
            return Ok(0);
        }
        _ => {}
    }
    let settings = settings::Settings::load(&cli.global, cli.command.policy().unwrap_or(&cli::PolicyArgs::default()))?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().thread_stack_size(STACK_SIZE).build()?;
    use cli::Command as C;
    runtime.block_on(async {
        match cli.command {
            C::Scan(args) => commands::scan::run(args, &settings, term).await,
            C::Findings(args) => commands::findings::run(args, &settings, term).await,
            C::Consumers(args) => commands::consumers::run(args, &settings, term).await,
            C::RolePlan(args) => commands::role_plan::run(args, &settings, term).await,
            C::Owners(args) => commands::owners::run(args, &settings, term).await,
            C::Notify(args) => commands::notify::run(args, &settings, term).await,
            C::Suppress(args) => commands::suppress::suppress(args, &settings, term).await,
            C::Unsuppress(args) => commands::suppress::unsuppress(args, &settings, term).await,
            C::Rotate(args) => commands::rotate::run(args, &settings, term).await,
            C::Retire(args) => commands::rotate::run(args.into(), &settings, term).await,
            C::Run(args) => commands::run::run(args, &settings, term).await,
            C::Status(args) => commands::status::run(args, &settings, term).await,
            C::Confirm(args) => commands::confirm::confirm(args, &settings, term).await,
            C::Rollback(args) => commands::confirm::cancel(args, false, &settings, term).await,
            C::Abort(args) => commands::confirm::cancel(args, true, &settings, term).await,
            C::History(args) => commands::history::run(args, &settings, term).await,
            C::Policy => commands::policy::run(&settings).await,
            C::State(command) => commands::state::run(command, &settings, term).await,
            C::Completions(_) | C::Man => unreachable!("answered before settings are loaded"),
        }
    })
}

/// The reader of stdout went away (`rekey scan | head`): what it wanted
/// was written, as `rg ... | head` ends. Rust ignores SIGPIPE, so the
/// write fails with EPIPE, wrapped by whichever writer met it.
fn is_closed_pipe(err: &anyhow::Error) -> bool {
    use std::io::ErrorKind::BrokenPipe;
    err.chain().any(|e| {
        e.downcast_ref::<std::io::Error>().is_some_and(|e| e.kind() == BrokenPipe)
            || e.downcast_ref::<serde_json::Error>().is_some_and(|e| e.io_error_kind() == Some(BrokenPipe))
            || e.downcast_ref::<csv::Error>().is_some_and(|e| matches!(e.kind(), csv::ErrorKind::Io(io) if io.kind() == BrokenPipe))
    })
}

/// rekey's own warnings by default (and its events of each rotation in
/// JSON); -vv adds rekey's and the SDK's debug logs, -vvv their traces.
/// The SDK never logs secret keys.
fn init_logging(global: &cli::GlobalArgs) {
    use tracing_subscriber::filter::{LevelFilter, Targets};
    use tracing_subscriber::prelude::*;
    let json = global.log_format == cli::LogFormat::Json;
    let (own, sdk) = match (global.quiet, global.verbose) {
        (true, _) => (LevelFilter::ERROR, LevelFilter::OFF),
        (_, 0 | 1) if json => (LevelFilter::INFO, LevelFilter::OFF),
        (_, 0 | 1) => (LevelFilter::WARN, LevelFilter::OFF),
        (_, 2) => (LevelFilter::DEBUG, LevelFilter::DEBUG),
        _ => (LevelFilter::TRACE, LevelFilter::TRACE),
    };
    let filter = Targets::new().with_target("rekey", own).with_default(sdk);
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    if json {
        // One object per line: time, level, target and the event's fields.
        tracing_subscriber::registry().with(fmt.json().flatten_event(true).with_current_span(false).with_span_list(false)).with(filter).init();
    } else {
        let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
        tracing_subscriber::registry().with(fmt.with_ansi(ansi)).with(filter).init();
    }
}
