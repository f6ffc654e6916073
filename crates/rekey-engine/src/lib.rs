//! The rotation workflow engine: the runner ([`runner::Engine`]) that
//! advances due rotations, sinks (where a new key is delivered), verifiers
//! (how the application is checked), the drain rule ([`drain`]), leases
//! ([`lease`]), and the seams that make it testable without AWS: the IAM
//! calls behind [`keys::KeyApi`] and time behind [`clock::Clock`].
//!
//! A sink or verifier knows everything about itself, so a new kind touches
//! only its own module, its factory ([`sinks::of`], [`verify::of`]), for a
//! sink its [`sinks::RestorePoint`] variant, and its configuration in
//! `rekey-core/src/target.rs` (the lists are in [`sinks`] and [`verify`]).

pub mod audit;
pub mod clock;
pub mod http;
pub mod drain;
pub mod keys;
pub mod lease;
pub mod plan;
mod process;
pub mod runner;
pub mod sinks;
pub mod targets;
pub mod verify;

/// Test hook: `REKEY_CRASH_AFTER=<point>` kills the process (SIGKILL, no
/// cleanup) right after the named AWS call or save, to prove recovery.
pub(crate) fn crash_point(point: &str) {
    if std::env::var("REKEY_CRASH_AFTER").is_ok_and(|p| p == point) {
        // SAFETY: raise(3) on our own process; it does not return.
        unsafe { libc::raise(libc::SIGKILL) };
    }
}
