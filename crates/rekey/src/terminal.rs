//! What rekey shows on the terminal besides its output: progress, call
//! counts and errors on stderr, within the limits of -q, -v and --no-progress.

use crate::cli::{GlobalArgs, LogFormat};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rekey_aws::CallCounter;
use std::io::IsTerminal;

pub struct Terminal {
    pub stdout_is_terminal: bool,
    show_progress: bool,
    pub quiet: bool,
    verbose: u8,
    /// `--log-format json`: messages are log events, one JSON line each.
    json: bool,
}

impl Terminal {
    pub fn new(global: &GlobalArgs) -> Self {
        Terminal {
            stdout_is_terminal: std::io::stdout().is_terminal(),
            show_progress: std::io::stderr().is_terminal() && !global.quiet && !global.no_progress && global.log_format == LogFormat::Text,
            quiet: global.quiet,
            verbose: global.verbose,
            json: global.log_format == LogFormat::Json,
        }
    }

    /// A progress bar on stderr, or nothing on a pipe.
    pub fn progress(&self) -> Progress {
        let bar = if self.show_progress {
            ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr())
        } else {
            ProgressBar::hidden()
        };
        Progress(bar)
    }

    /// Accounts scanned, keys seen and accounts failed, on stderr.
    pub fn accounts_progress(&self, total: usize) -> AccountsProgress {
        let bar = if self.show_progress { ProgressBar::with_draw_target(Some(total as u64), ProgressDrawTarget::stderr()) } else { ProgressBar::hidden() };
        // invariant: a constant template
        bar.set_style(ProgressStyle::with_template("{bar:30} {pos}/{len} accounts, {msg}").expect("a valid template"));
        let progress = AccountsProgress { bar, keys: Default::default(), failed: Default::default() };
        progress.show_counts();
        progress
    }

    /// With -v: how many AWS requests each operation took (retries
    /// included), and how many were retries.
    pub fn report_calls(&self, calls: &CallCounter) {
        if self.verbose == 0 || self.quiet {
            return;
        }
        let counts = calls.snapshot();
        let retries = calls.retries();
        let retried: u64 = retries.values().sum();
        eprintln!("AWS requests: {} in all, {retried} of them retries", counts.values().sum::<u64>());
        for (operation, n) in counts {
            match retries.get(&operation) {
                Some(r) => eprintln!("  {operation}: {n} ({r} retries)"),
                None => eprintln!("  {operation}: {n}"),
            }
        }
    }

    /// Unless -q: what a command did, when its output does not say it.
    pub fn info(&self, message: &str) {
        if self.json {
            tracing::info!("{message}");
        } else if !self.quiet {
            eprintln!("{message}");
        }
    }

    /// Unless -q: the result is complete, but a person should know this.
    pub fn warn(&self, message: &str) {
        if self.json {
            tracing::warn!("{message}");
        } else if !self.quiet {
            eprintln!("warning: {message}");
        }
    }

    pub fn error(&self, message: &str) {
        if self.json {
            tracing::error!("{message}");
        } else {
            eprintln!("error: {message}");
        }
    }
}

pub struct Progress(ProgressBar);

/// See [`Terminal::accounts_progress`].
pub struct AccountsProgress {
    bar: ProgressBar,
    keys: std::sync::atomic::AtomicUsize,
    failed: std::sync::atomic::AtomicUsize,
}

impl AccountsProgress {
    /// One account is done: with its key count, or `None` if it failed.
    pub fn account_done(&self, keys: Option<usize>) {
        use std::sync::atomic::Ordering::Relaxed;
        match keys {
            Some(n) => self.keys.fetch_add(n, Relaxed),
            None => self.failed.fetch_add(1, Relaxed),
        };
        self.bar.inc(1);
        self.show_counts();
    }

    fn show_counts(&self) {
        use std::sync::atomic::Ordering::Relaxed;
        self.bar.set_message(format!("{} keys, {} failed", self.keys.load(Relaxed), self.failed.load(Relaxed)));
    }

    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

impl rekey_aws::Progress for Progress {
    fn finish(&self) {
        self.0.finish_and_clear();
    }

    fn begin(&self, what: &str, total: u64) {
        self.0.set_style(
            ProgressStyle::with_template("{msg} {bar:30} {pos}/{len} users")
                // invariant: a constant template
                .expect("a valid template"),
        );
        self.0.set_message(what.to_owned());
        self.0.set_position(0);
        self.0.set_length(total);
    }

    fn advance(&self) {
        self.0.inc(1);
    }
}
