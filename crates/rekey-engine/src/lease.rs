//! Who holds a rotation: a lease in the state store, taken per rotation,
//! renewed while a step runs, and checked when saving. A process is named by
//! machine id, boot id, pid namespace, pid and start time, so a lease left by
//! a crashed process of this machine is taken over at once, and one held by
//! a live process (in another container, say) never is.

use crate::clock::Clock;
use jiff::SignedDuration;
use rekey_store::SharedStore;
use std::sync::Arc;

/// How long a lease lasts without renewal; renewed every third of it.
pub const LEASE: SignedDuration = SignedDuration::from_mins(5);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    /// Machine id, boot id and pid namespace: processes that see one pid space.
    pub space: String,
    pub pid: u32,
    /// When the process started (clock ticks since boot), against pid reuse.
    pub started: u64,
}

fn read_trimmed(path: &str) -> String {
    std::fs::read_to_string(path).map(|s| s.trim().to_owned()).unwrap_or_default()
}

fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Field 22, counted after the command name (which may hold spaces).
    stat.rsplit_once(')')?.1.split_whitespace().nth(19)?.parse().ok()
}

impl Holder {
    pub fn this_process() -> Holder {
        let pidns = std::fs::read_link("/proc/self/ns/pid").map(|p| p.display().to_string()).unwrap_or_default();
        let space = format!("{}.{}.{}", read_trimmed("/etc/machine-id"), read_trimmed("/proc/sys/kernel/random/boot_id"), pidns);
        let pid = std::process::id();
        Holder { space, pid, started: start_time(pid).unwrap_or(0) }
    }

    pub fn to_text(&self) -> String {
        format!("{}/{}/{}", self.space, self.pid, self.started)
    }

    pub fn parse(text: &str) -> Option<Holder> {
        let mut parts = text.rsplitn(3, '/');
        let started = parts.next()?.parse().ok()?;
        let pid = parts.next()?.parse().ok()?;
        Some(Holder { space: parts.next()?.to_owned(), pid, started })
    }

    /// True only when `other` is provably gone: same pid space as this
    /// process, and no process with its pid and start time exists.
    pub fn is_gone(&self, other: &Holder) -> bool {
        !self.space.is_empty() && other.space == self.space && start_time(other.pid) != Some(other.started)
    }
}

/// Renews a lease in the background until dropped, while the engine's
/// task is busy with the step.
pub struct Renewal(tokio::task::JoinHandle<()>);

impl Renewal {
    pub fn start(store: SharedStore, id: String, holder: String, clock: Arc<dyn Clock>) -> Renewal {
        Renewal(tokio::spawn(async move {
            let every = (LEASE / 3).unsigned_abs();
            loop {
                tokio::time::sleep(every).await;
                let now = clock.now();
                // A lost lease shows at the next save, which then fails.
                if !matches!(store.renew(&id, &holder, now, now + LEASE).await, Ok(true)) {
                    return;
                }
            }
        }))
    }
}

impl Drop for Renewal {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_holder_round_trips_and_is_alive_while_its_process_is() {
        let me = Holder::this_process();
        assert_eq!(Holder::parse(&me.to_text()), Some(me.clone()));
        assert!(me.started > 0);
        assert!(!me.is_gone(&me));
        let reused_pid = Holder { started: me.started + 1, ..me.clone() };
        assert!(me.is_gone(&reused_pid), "same pid, other start time: another process");
        let elsewhere = Holder { space: "other-machine".into(), pid: 999_999, started: 1 };
        assert!(!me.is_gone(&elsewhere), "a process of another pid space is never declared dead");
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        assert!(me.is_gone(&Holder { pid, ..me.clone() }));
    }
}
