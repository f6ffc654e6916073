//! Reminders on a cadence against the emulator: thirty simulated days of
//! `rekey run --once` every six hours (the binary told the time with
//! `REKEY_NOW`), the messages a webhook actually received counted per
//! owner and compared with the schedule worked out here, independently of
//! rekey's own; a second run at the same moment sends nothing; a webhook
//! that fails is retried on the next pass, never recorded as sent.

mod support;

use jiff::{SignedDuration, Timestamp};
use rekey_emulator::Emulator;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;
use support::{Run, Webhook};

fn user(name: &str, age: &str, status: &str, owner: Option<&str>) -> Value {
    let tags = owner.map(|o| json!({"Owner": o})).unwrap_or(json!({}));
    json!({"name": name, "tags": tags, "keys": [{"status": status, "age": age, "last_used": null}]})
}

struct Desk {
    emu: Emulator,
    dir: tempfile::TempDir,
}

impl Desk {
    fn rekey_at(&self, now: Option<Timestamp>, args: &[&str]) -> Run {
        let mut cmd = support::rekey_cmd(Some(&self.emu), self.dir.path());
        if let Some(now) = now {
            cmd.env("REKEY_NOW", now.to_string());
        }
        cmd.args(args).output().unwrap().into()
    }
}

const DAY: i64 = 24;

/// The schedule, worked out from the keys' creation times as a person
/// would from the documentation: moments at fail - 14d, - 7d, - 1d, at
/// fail, then every 7 days; a key is due when its latest passed moment is
/// later than the last one sent; an owner hears at most once a day.
struct Model {
    /// (owner, fail_at) per key.
    keys: Vec<(Option<String>, Timestamp)>,
    last_moment: HashMap<usize, Timestamp>,
    last_digest: HashMap<Option<String>, Timestamp>,
}

impl Model {
    fn latest_moment(fail: Timestamp, now: Timestamp) -> Option<Timestamp> {
        let mut moments: Vec<Timestamp> = [14, 7, 1].iter().map(|d| fail - SignedDuration::from_hours(d * DAY)).collect();
        let mut overdue = fail;
        while overdue <= now {
            moments.push(overdue);
            overdue += SignedDuration::from_hours(7 * DAY);
        }
        moments.into_iter().filter(|m| *m <= now).max()
    }

    /// The owners who get a digest at `now`, each with how many keys; the
    /// pass is recorded only when `delivered`.
    fn pass(&mut self, now: Timestamp, delivered: bool) -> BTreeMap<Option<String>, usize> {
        let mut due: BTreeMap<Option<String>, Vec<(usize, Timestamp)>> = BTreeMap::new();
        for (i, (owner, fail)) in self.keys.iter().enumerate() {
            if let Some(m) = Self::latest_moment(*fail, now) {
                if self.last_moment.get(&i).is_none_or(|last| m > *last) {
                    due.entry(owner.clone()).or_default().push((i, m));
                }
            }
        }
        due.retain(|owner, _| self.last_digest.get(owner).is_none_or(|last| now >= *last + SignedDuration::from_hours(DAY)));
        if delivered {
            for (owner, keys) in &due {
                self.last_digest.insert(owner.clone(), now);
                for (i, m) in keys {
                    self.last_moment.insert(*i, *m);
                }
            }
        }
        due.into_iter().map(|(o, k)| (o, k.len())).collect()
    }
}

fn owner_of(body: &Value) -> Option<String> {
    body["owner"].as_str().map(str::to_owned)
}

#[test]
fn thirty_days_of_runs_send_each_owner_the_reminders_of_the_schedule_once() {
    let hook = Webhook::start();
    let scenario = json!({"users": [
        user("a-young", "70d", "Active", Some("team-a")),     // 14d at day 6, ..., fails at 20, overdue 27
        user("a-older", "80d", "Active", Some("team-a")),     // fails at day 10
        user("a-half", "79d12h", "Active", Some("team-a")),   // 12 hours after a-older: held by min_interval, then digested with it
        user("a-inactive", "100d", "Inactive", Some("team-a")), // passes: never reminded
        user("a-exempt", "100d", "Active", Some("team-a")),   // suppressed: never reminded
        user("b-soon", "85d", "Active", Some("team-b")),      // fails at day 5
        user("b-failed", "100d", "Active", Some("team-b")),   // failed 10 days ago
        user("c-new", "60d", "Active", Some("team-c")),       // 14d at day 16, 7d at 23, 1d at 29
        user("nobody", "200d", "Active", None),               // overdue since long ago
    ]});
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "[securityhub]\nenabled = false\n\n[notify]\nwebhook_url = \"{}\"\nremind = [\"14d\", \"7d\", \"1d\"]\noverdue_every = \"7d\"\nmin_interval = \"1d\"\n",
        hook.url
    );
    std::fs::write(dir.path().join("rekey.toml"), config).unwrap();
    let desk = Desk { emu: Emulator::with_scenario(&scenario), dir };

    let suppressed = desk.rekey_at(None, &["suppress", "--user", "a-exempt", "--reason", "vendor appliance"]);
    assert_eq!(suppressed.code, 0, "{}", suppressed.stderr);
    let scan = desk.rekey_at(None, &["scan", "--source", "api", "--format", "json", "--fail-on", "never"]);
    assert_eq!(scan.code, 0, "{}", scan.stderr);
    let scan = scan.json();
    let created: HashMap<String, Timestamp> =
        scan["keys"].as_array().unwrap().iter().map(|k| (k["user_name"].as_str().unwrap().to_owned(), k["created_at"].as_str().unwrap().parse().unwrap())).collect();
    let remindable = ["a-young", "a-older", "a-half", "b-soon", "b-failed", "c-new", "nobody"];
    let mut model = Model {
        keys: remindable
            .iter()
            .map(|u| {
                let owner = scan["keys"].as_array().unwrap().iter().find(|k| k["user_name"] == *u).unwrap()["owner"].as_str().map(str::to_owned);
                (owner, created[*u] + SignedDuration::from_hours(90 * DAY))
            })
            .collect(),
        last_moment: HashMap::new(),
        last_digest: HashMap::new(),
    };

    // Nothing is sent or recorded by a dry run, which names who would get what.
    let start = Timestamp::from_second(Timestamp::now().as_second()).unwrap();
    let dry = desk.rekey_at(Some(start), &["notify", "--dry-run", "--format", "json"]);
    assert_eq!(dry.code, 0, "{}", dry.stderr);
    let dry = dry.json();
    let due: Vec<Option<&str>> = dry["reminders"]["due"].as_array().unwrap().iter().map(|d| d["owner"].as_str()).collect();
    assert_eq!(due, [Some("team-a"), Some("team-b"), None], "{dry:#}");
    let b_keys: Vec<(&str, &str)> = dry["reminders"]["due"][1]["keys"].as_array().unwrap().iter().map(|k| (k["user_name"].as_str().unwrap(), k["reminder"]["label"].as_str().unwrap())).collect();
    assert_eq!(b_keys, [("b-failed", "overdue by 7 days"), ("b-soon", "fails in 7 days")]);
    let text = desk.rekey_at(Some(start), &["notify", "--dry-run"]).stdout;
    assert!(text.contains("To: team-b via webhook http://127.0.0.1") && text.contains("- b-soon in account 123456789012") && !text.contains("SECRET"), "{text}");
    assert!(hook.received().is_empty());

    // Thirty days, a pass every six hours; at some passes a second run at
    // the same moment (a crash and a restart, a cron overlap), and at one
    // the webhook fails.
    let (step, steps) = (6, 30 * DAY / 6);
    let mut expected: BTreeMap<Option<String>, usize> = BTreeMap::new();
    let (mut failed_once, mut held_back, mut most_keys) = (false, false, 0);
    for i in 0..=steps {
        let now = start + SignedDuration::from_hours(i * step);
        let before = hook.received().len();
        // The first pass with a message after day 3 fails: nothing is recorded.
        let would = model.pass(now, false);
        let fail = !failed_once && i * step >= 3 * DAY && !would.is_empty();
        hook.failing.store(fail, Ordering::SeqCst);
        let run = desk.rekey_at(Some(now), &["run", "--once"]);
        hook.failing.store(false, Ordering::SeqCst);
        let sent = model.pass(now, !fail);
        if fail {
            failed_once = true;
            assert_eq!(run.code, 2, "a failed send is an error: {}", run.stderr);
            assert!(run.stderr.contains("reminder to ") && run.stderr.contains("via webhook http://127.0.0.1") && !run.stderr.contains("SECRET"), "{}", run.stderr);
            assert_eq!(hook.received().len(), before, "the failing hook accepted nothing");
            continue;
        }
        assert_eq!(run.code, 0, "day {} hour {}: {}", i * step / DAY, i * step % DAY, run.stderr);
        held_back |= run.stderr.contains("held back by notify.min_interval");
        let bodies = hook.received()[before..].to_vec();
        let mut got: BTreeMap<Option<String>, usize> = BTreeMap::new();
        for b in &bodies {
            assert!(b["subject"].as_str().unwrap().starts_with("rekey: reminder: "), "{b}");
            assert!(b["keys"].as_array().unwrap().iter().all(|k| k["reminder"]["label"].is_string()), "{b}");
            *got.entry(owner_of(b)).or_default() += b["keys"].as_array().unwrap().len();
            most_keys = most_keys.max(b["keys"].as_array().unwrap().len());
        }
        assert_eq!(got, sent, "day {} hour {}: received {bodies:#?}", i * step / DAY, i * step % DAY);
        for owner in sent.keys() {
            *expected.entry(owner.clone()).or_default() += 1;
        }
        if i % 20 == 0 || !sent.is_empty() && i % 3 == 0 {
            let again = desk.rekey_at(Some(now), &["run", "--once"]);
            assert_eq!(again.code, 0, "{}", again.stderr);
            assert_eq!(hook.received().len(), before + bodies.len(), "a second run at the same moment sends nothing");
        }
    }
    assert!(failed_once);
    assert!(held_back, "some reminder waited for min_interval");
    assert!(most_keys >= 2, "some digest listed several keys");
    let mut delivered: BTreeMap<Option<String>, usize> = BTreeMap::new();
    for b in hook.received() {
        *delivered.entry(owner_of(&b)).or_default() += 1;
    }
    eprintln!("messages per owner over 30 days: {delivered:?}");
    assert_eq!(delivered, expected);
    for owner in ["team-a", "team-b", "team-c"] {
        assert!(delivered.get(&Some(owner.to_owned())).is_some_and(|n| *n >= 3), "{owner}: {delivered:?}");
    }
    let reminded: Vec<String> = hook.received().iter().flat_map(|b| b["keys"].as_array().unwrap().iter().map(|k| k["user_name"].as_str().unwrap().to_owned()).collect::<Vec<_>>()).collect();
    assert!(!reminded.iter().any(|u| u == "a-inactive" || u == "a-exempt"), "inactive and suppressed keys get none");
    // Every digest is in the audit log.
    let history = desk.rekey_at(None, &["history", "--format", "json"]).json();
    let lines = history["events"].as_array().unwrap().iter().filter(|e| e["event"] == "owner_reminded").count();
    assert_eq!(lines, hook.received().len());
}

/// Two runners on one store pass at the same moment (a cron overlap, two
/// schedulers for availability): each owner's digest goes once. The first
/// runner is held mid-send by the webhook while the second passes: the
/// second skips the owner the first claimed, and sends the other; the
/// first, released, skips that one.
#[test]
fn two_runners_passing_at_once_send_each_owner_one_digest() {
    let hook = Webhook::start();
    let scenario = json!({"users": [user("a-failed", "100d", "Active", Some("team-a")), user("b-failed", "120d", "Active", Some("team-b"))]});
    let dir = tempfile::tempdir().unwrap();
    let config = format!("[securityhub]\nenabled = false\n\n[notify]\nwebhook_url = \"{}\"\nremind = [\"7d\"]\noverdue_every = \"7d\"\n", hook.url);
    std::fs::write(dir.path().join("rekey.toml"), config).unwrap();
    let desk = Desk { emu: Emulator::with_scenario(&scenario), dir };
    let now = Timestamp::from_second(Timestamp::now().as_second()).unwrap().to_string();

    hook.hold_next();
    let mut first = support::rekey_cmd(Some(&desk.emu), desk.dir.path());
    let mut first = first.env("REKEY_NOW", &now).args(["run", "--once"]).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::piped()).spawn().unwrap();
    support::wait_for("the first runner's first digest", || !hook.received().is_empty());
    let held = owner_of(&hook.received()[0]);
    let second = desk.rekey_at(now.parse().ok(), &["run", "--once"]);
    hook.release();
    let first_status = first.wait().unwrap();
    let mut first_err = String::new();
    std::io::Read::read_to_string(first.stderr.as_mut().unwrap(), &mut first_err).unwrap();
    assert!(first_status.success(), "{first_err}");
    assert_eq!(second.code, 0, "{}", second.stderr);

    let mut owners: Vec<Option<String>> = hook.received().iter().map(owner_of).collect();
    owners.sort();
    assert_eq!(owners, [Some("team-a".to_owned()), Some("team-b".to_owned())], "one digest per owner");
    // The second runner read the first one's claim as a digest just sent;
    // the first, released, found the other owner claimed since it read.
    assert!(second.stderr.contains("reminded 1 owner; 1 owner held back"), "the second runner left {held:?} to the first: {}", second.stderr);
    assert!(first_err.contains("reminded 1 owner; 1 owner by another runner"), "{first_err}");
    // Recorded once each: a third pass sends nothing.
    let third = desk.rekey_at(now.parse().ok(), &["run", "--once"]);
    assert_eq!((third.code, hook.received().len()), (0, 2), "{}", third.stderr);
}
