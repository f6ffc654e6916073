//! Who holds a rotation: a lease in the state store, taken per rotation,
//! renewed while a step runs and before every AWS write, and checked when
//! saving; its times are on AWS's clock. A process is named by machine id,
//! boot id, pid namespace, pid, start time and a random nonce, so a lease
//! left by a crashed process of this machine is taken over at once, one
//! held by a live process (in another container, say) never is, and two
//! hosts cloned from one image never share a name.

use crate::clock::Clock;
use jiff::SignedDuration;
use std::hash::{BuildHasher, Hasher};
use rekey_store::SharedStore;
use std::sync::Arc;

/// How long a lease lasts without renewal; renewed every third of it.
pub const LEASE: SignedDuration = SignedDuration::from_mins(5);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    /// Machine id, boot id and pid namespace: processes that see one pid
    /// space. Empty when any is unreadable (a sandbox hides `boot_id`):
    /// clones of one image would then look alike.
    pub space: String,
    pub pid: u32,
    /// When the process started (clock ticks since boot), against pid reuse.
    pub started: u64,
    /// Random per process: no two processes ever hold a lease under one name.
    pub nonce: u64,
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
        let parts = [read_trimmed("/etc/machine-id"), read_trimmed("/proc/sys/kernel/random/boot_id"), pidns];
        let space = if parts.iter().any(String::is_empty) { String::new() } else { parts.join(".") };
        let pid = std::process::id();
        Holder { space, pid, started: start_time(pid).unwrap_or(0), nonce: random() }
    }

    pub fn to_text(&self) -> String {
        format!("{}/{}/{}/{:016x}", self.space, self.pid, self.started, self.nonce)
    }

    pub fn parse(text: &str) -> Option<Holder> {
        let mut parts = text.rsplitn(4, '/');
        let nonce = u64::from_str_radix(parts.next()?, 16).ok()?;
        let started = parts.next()?.parse().ok()?;
        let pid = parts.next()?.parse().ok()?;
        Some(Holder { space: parts.next()?.to_owned(), pid, started, nonce })
    }

    /// True only when `other` is provably gone: same known pid space as
    /// this process, and no process with its pid and start time exists.
    pub fn is_gone(&self, other: &Holder) -> bool {
        !self.space.is_empty() && other.space == self.space && start_time(other.pid) != Some(other.started)
    }
}

/// A random number from the standard library's per-process hash seed:
/// enough to tell processes apart, with no dependency.
fn random() -> u64 {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos()));
    hasher.finish()
}

/// Renews a lease in the background until dropped, while the engine's
/// task is busy with the step.
pub struct Renewal(tokio::task::JoinHandle<()>);

impl Renewal {
    /// `offset` is AWS's clock minus this machine's: lease times are AWS's.
    pub fn start(store: SharedStore, id: String, holder: String, clock: Arc<dyn Clock>, offset: SignedDuration) -> Renewal {
        Renewal(tokio::spawn(async move {
            let every = (LEASE / 3).unsigned_abs();
            loop {
                tokio::time::sleep(every).await;
                let now = clock.now() + offset;
                // Lost to another process: the fence before the next write and
                // the next save refuse. A store error may pass (a throttled
                // table): try again at the next tick.
                if let Ok(false) = store.renew(&id, &holder, now, now + LEASE).await {
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
        let elsewhere = Holder { space: "other-machine".into(), pid: 999_999, started: 1, nonce: 7 };
        assert!(!me.is_gone(&elsewhere), "a process of another pid space is never declared dead");
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        assert!(me.is_gone(&Holder { pid, ..me.clone() }));
    }

    #[test]
    fn defect_8_holders_never_collide_and_an_unknown_space_is_never_declared_dead() {
        let (a, b) = (Holder::this_process(), Holder::this_process());
        assert_ne!(a.to_text(), b.to_text(), "a nonce per holder: clones of one image never share a name");
        // A sandbox that hides boot_id: every clone of the image would have
        // the same space and perhaps the same pid and start time.
        let blind = Holder { space: String::new(), ..a.clone() };
        let other_clone = Holder { space: String::new(), pid: 999_999, started: 1, nonce: 1 };
        assert!(!blind.is_gone(&other_clone), "without a known space, wait for expiry");
        assert_eq!(Holder::parse("old/123/456"), None, "a holder of the old form is not parsed, so never taken over early");
    }
}
