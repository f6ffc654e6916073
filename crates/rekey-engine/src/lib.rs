//! The rotation workflow engine: sinks (where a new key is delivered),
//! verifiers (how the application is checked) and the runner that advances
//! due rotations.

pub mod plan;
mod process;
pub mod runner;
pub mod sinks;
pub mod verify;

/// Test hook: `REKEY_CRASH_AFTER=<point>` kills the process (SIGKILL, no
/// cleanup) right after the named AWS call or save, to prove recovery.
pub(crate) fn crash_point(point: &str) {
    if std::env::var("REKEY_CRASH_AFTER").is_ok_and(|p| p == point) {
        // SAFETY: raise(3) on our own process; it does not return.
        unsafe { libc::raise(libc::SIGKILL) };
    }
}
