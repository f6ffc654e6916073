//! What rekey shows on the terminal besides its output: progress, call
//! counts and errors on stderr, within the limits of -q, -v and --no-progress.

use crate::cli::GlobalArgs;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rekey_aws::CallCounter;
use std::io::IsTerminal;

pub struct Terminal {
    pub stdout_is_terminal: bool,
    show_progress: bool,
    pub quiet: bool,
    verbose: u8,
}

impl Terminal {
    pub fn new(global: &GlobalArgs) -> Self {
        Terminal {
            stdout_is_terminal: std::io::stdout().is_terminal(),
            show_progress: std::io::stderr().is_terminal() && !global.quiet && !global.no_progress,
            quiet: global.quiet,
            verbose: global.verbose,
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

    /// With -v: how many AWS requests each operation took (retries included).
    pub fn report_calls(&self, calls: &CallCounter) {
        if self.verbose == 0 || self.quiet {
            return;
        }
        let counts = calls.snapshot();
        eprintln!("AWS requests: {} in all", counts.values().sum::<u64>());
        for (operation, n) in counts {
            eprintln!("  {operation}: {n}");
        }
    }

    /// Unless -q: what a command did, when its output does not say it.
    pub fn info(&self, message: &str) {
        if !self.quiet {
            eprintln!("{message}");
        }
    }

    /// Unless -q: the result is complete, but a person should know this.
    pub fn warn(&self, message: &str) {
        if !self.quiet {
            eprintln!("warning: {message}");
        }
    }

    pub fn error(&self, message: &str) {
        eprintln!("error: {message}");
    }
}

pub struct Progress(ProgressBar);

impl Progress {
    pub fn finish(&self) {
        self.0.finish_and_clear();
    }
}

impl rekey_aws::Progress for Progress {
    fn begin(&self, what: &str, total: u64) {
        self.0.set_style(
            ProgressStyle::with_template("{msg} {bar:30} {pos}/{len} users")
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
