//! What an owner reads (`rekey owners`, `rekey notify`): one [`Notice`] per
//! owner listing their FAILED and WARNING keys, each with the exact commands
//! of the choices they have. Rendered as text (terminals, webhooks, `.md`
//! files), as a self-contained HTML page, or as JSON (the field names and
//! `null`s here are that contract). Whoever reads it may never have heard of
//! rekey, so it says what IAM.3 is and what to decide.
//!
//! Nothing here sends anything: [`Notice::digest`] lets the caller tell a
//! notice it already sent from a new one.

use crate::evaluate::Compliance;
use crate::model::whole_seconds;
use crate::report::{KeyRow, RotationRef};
use jiff::{SignedDuration, Timestamp};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// How long the offered suppression lasts: long enough to fix the reason,
/// short enough that it comes back to someone.
const SUPPRESS_DAYS: i64 = 30;

#[derive(Debug, Clone, Serialize)]
pub struct Notice {
    /// `None` for the users nobody owns.
    pub owner: Option<String>,
    pub contact: Option<String>,
    pub keys: Vec<NoticeKey>,
}

#[derive(Debug, Clone, Serialize)]
pub struct NoticeKey {
    pub account_id: String,
    pub user_name: String,
    pub access_key_id: Option<String>,
    pub created_at: Timestamp,
    pub age_days: i64,
    pub last_used_at: Option<Timestamp>,
    pub last_used_service: Option<String>,
    pub last_used_region: Option<String>,
    pub result: Compliance,
    pub reason: String,
    /// A key already being rotated has nothing to decide: no choices.
    pub rotation: Option<RotationRef>,
    /// A hint that a role could replace the key (see the scan's field).
    pub role_candidate: bool,
    /// Who uses the key, from CloudTrail, when it was read: what must be
    /// updated before the key is rotated.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub consumers: Option<Vec<crate::consumers::Consumer>>,
    pub choices: Vec<Choice>,
    /// In a reminder digest (`[notify] remind`): which reminder this is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reminder: Option<ReminderNote>,
}

/// Which reminder a key's line in a digest is, and when the key fails.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReminderNote {
    /// `fails in 7 days`, `fails now`, `overdue by 14 days`.
    pub label: String,
    /// The moment of the reminder (what the state store records).
    pub moment: Timestamp,
    /// When IAM.3 fails the key: created + max_age.
    pub fails_at: Timestamp,
}

impl ReminderNote {
    /// `fails in 7 days (IAM.3 fails it at 2026-12-08 12:00 UTC)`, or
    /// `overdue by 7 days (IAM.3 has failed it since ...)`.
    fn text(&self) -> String {
        let when = self.fails_at.strftime("%Y-%m-%d %H:%M UTC");
        if self.moment < self.fails_at {
            format!("{} (IAM.3 fails it at {when})", self.label)
        } else {
            format!("{} (IAM.3 has failed it since {when})", self.label)
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Choice {
    pub action: Action,
    /// A shell command, arguments quoted, ready to paste.
    pub command: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Unused for `[policy] unused_after`: nothing needs a new key.
    Retire,
    Rotate,
    Suppress,
    Deactivate,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Retire => "retire",
            Action::Rotate => "rotate",
            Action::Suppress => "suppress",
            Action::Deactivate => "deactivate",
        }
    }
}

/// The notices for `rows`: their FAILED and WARNING keys grouped by owner,
/// owners by name and the unowned last; in each, the worst keys first, then
/// the oldest. `contact` says how to reach an owner (`None`: the unowned).
/// `as_of` dates the suppression the notices offer.
pub fn notices(rows: &[KeyRow], as_of: Timestamp, contact: impl Fn(Option<&str>) -> Option<String>) -> Vec<Notice> {
    let mut groups: BTreeMap<Option<&str>, Vec<&KeyRow>> = BTreeMap::new();
    for row in rows.iter().filter(|r| matches!(r.result, Compliance::Failed | Compliance::Warning)) {
        groups.entry(row.owner.as_deref()).or_default().push(row);
    }
    // `None` sorts first in a map; the unowned go last.
    let mut groups: Vec<_> = groups.into_iter().collect();
    groups.sort_by_key(|(owner, _)| (owner.is_none(), *owner));
    groups
        .into_iter()
        .map(|(owner, rows)| {
            let keys = rows.into_iter().map(|row| notice_key(row, as_of)).collect();
            Notice { owner: owner.map(str::to_owned), contact: contact(owner), keys: worst_then_oldest(keys) }
        })
        .collect()
}

/// A reminder digest as a notice: the digest's keys, each with its
/// reminder, in the order of [`notices`].
pub fn reminder_notice(digest: &crate::reminder::Digest, as_of: Timestamp, contact: Option<String>) -> Notice {
    let keys = digest
        .keys
        .iter()
        .map(|(row, due)| NoticeKey {
            reminder: Some(ReminderNote {
                label: due.reminder.label(),
                moment: due.moment,
                fails_at: due.fails_at,
            }),
            ..notice_key(row, as_of)
        })
        .collect();
    Notice { owner: digest.owner.clone(), contact, keys: worst_then_oldest(keys) }
}

fn worst_then_oldest(mut keys: Vec<NoticeKey>) -> Vec<NoticeKey> {
    keys.sort_by(|a, b| {
        (a.result, a.created_at, &a.account_id, &a.user_name, &a.access_key_id).cmp(&(b.result, b.created_at, &b.account_id, &b.user_name, &b.access_key_id))
    });
    keys
}

fn notice_key(row: &KeyRow, as_of: Timestamp) -> NoticeKey {
    NoticeKey {
        account_id: row.account_id.clone(),
        user_name: row.user_name.clone(),
        access_key_id: row.access_key_id.clone(),
        created_at: row.created_at,
        age_days: row.age_days,
        last_used_at: row.last_used_at,
        last_used_service: row.last_used_service.clone(),
        last_used_region: row.last_used_region.clone(),
        result: row.result,
        reason: row.reason.clone(),
        rotation: row.rotation.as_deref().cloned(),
        role_candidate: row.role_candidate,
        consumers: row.consumers.as_ref().map(|c| c.all.clone()),
        choices: if row.rotation.is_some() { Vec::new() } else { choices(row, as_of) },
        reminder: None,
    }
}

/// The commands for what an owner can do with a key. Without its id (not
/// listed yet) `rekey rotate` finds the key itself, and nothing can be
/// deactivated by hand.
fn choices(row: &KeyRow, as_of: Timestamp) -> Vec<Choice> {
    let user = shell_quote(&row.user_name);
    let account = shell_quote(&row.account_id);
    let key = row.access_key_id.as_deref().map(shell_quote);
    let mut choices = Vec::new();

    let key_flag = key.as_ref().map(|key| format!(" --key {key}")).unwrap_or_default();
    // An unused key is retired, not rotated: that choice comes first.
    if row.retire {
        choices.push(Choice { action: Action::Retire, command: format!("rekey retire --user {user} --account {account}{key_flag}") });
    }
    choices.push(Choice { action: Action::Rotate, command: format!("rekey rotate --user {user} --account {account}{key_flag}") });

    // Only a timestamp near year 9999 has no date 30 days later.
    if let Ok(until) = as_of.checked_add(SignedDuration::from_hours(24 * SUPPRESS_DAYS)) {
        let reason = shell_quote("<why this key cannot be rotated>");
        let until = whole_seconds(until);
        let command = format!("rekey suppress --user {user} --account {account} --reason {reason} --until {until}");
        choices.push(Choice { action: Action::Suppress, command });
    }

    if let Some(key) = &key {
        let command = format!("aws iam update-access-key --user-name {user} --access-key-id {key} --status Inactive");
        choices.push(Choice { action: Action::Deactivate, command });
    }
    choices
}

/// `s` as one word for a POSIX shell: as is when nothing in it is special,
/// else in single quotes, a `'` inside becoming `'\''`. A leading `=` is
/// quoted too (zsh expands `=name` to a command's path).
pub fn shell_quote(s: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "+=,.@_-/:".contains(c);
    if !s.is_empty() && !s.starts_with('=') && s.chars().all(plain) {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

impl Notice {
    /// `rekey: 3 access keys of team-payments need a decision`.
    pub fn subject(&self) -> String {
        // On one line whatever the owner holds: subjects become mail headers.
        let subject = format!("rekey: {}", self.headline());
        subject.chars().map(|c| if c.is_control() { ' ' } else { c }).collect()
    }

    fn headline(&self) -> String {
        let n = self.keys.len();
        let (keys, need) = if n == 1 { ("key", "needs") } else { ("keys", "need") };
        let reminder = if self.is_reminder() { "reminder: " } else { "" };
        format!("{reminder}{n} access {keys} of {} {need} a decision", self.owner_name())
    }

    /// A reminder digest (`[notify] remind`), not a notice.
    pub fn is_reminder(&self) -> bool {
        self.keys.iter().any(|k| k.reminder.is_some())
    }

    fn owner_name(&self) -> &str {
        self.owner.as_deref().unwrap_or("unowned users")
    }

    /// The paragraph that tells a newcomer what this is and what to do.
    fn introduction(&self, as_of: Timestamp) -> String {
        let whose = match &self.owner {
            Some(owner) => format!("belong to IAM users owned by {owner}"),
            None => "belong to IAM users that nobody is recorded as owning (no owner tag, no owners map entry)"
                .to_owned(),
        };
        format!(
            "AWS Security Hub control IAM.3 requires the access keys of IAM users to be rotated every 90 days \
             or less, so that a leaked key does not work for long. The keys below {whose}, and on {} they \
             were too old (FAILED) or soon will be (WARNING). For each key, decide and run one command: \
             rotate it (a new key replaces it where it is used, then the old one is removed), suppress \
             the finding for {SUPPRESS_DAYS} days with the reason it cannot be rotated yet, or deactivate it \
             if nothing uses it any more.",
            as_of.strftime("%Y-%m-%d %H:%M UTC")
        )
    }

    /// Plain text that is also Markdown: a heading, the introduction, then
    /// one line per key and the command of each of its choices.
    pub fn text(&self, as_of: Timestamp) -> String {
        format!("# {}\n\n{}\n\n{}", self.headline(), self.introduction(as_of), self.key_lines())
    }

    /// The short form for the security team (`rekey owners`): the heading
    /// with the contact, and the keys, without the introduction.
    pub fn brief(&self) -> String {
        let contact = self.contact.as_deref().map(|c| format!(" ({c})")).unwrap_or_default();
        format!("# {}{contact}\n\n{}", self.headline(), self.key_lines())
    }

    fn key_lines(&self) -> String {
        let mut out = String::new();
        for key in &self.keys {
            let line = KeyLine::of(key);
            writeln!(out, "- {}: {}. {}: {}", line.who, line.facts, key.result.as_str(), key.reason).ok();
            if let Some(reminder) = &key.reminder {
                writeln!(out, "  - reminder: {}", reminder.text()).ok();
            }
            for c in key.consumers.iter().flatten() {
                let seen = c.last_seen.strftime("%Y-%m-%d");
                writeln!(out, "  - used by {} ({}) calling {} {}, last {seen}", c.source_ip, c.user_agent, c.service, c.top_calls.join("/")).ok();
            }
            if let Some(consumers) = key.consumers.as_deref().filter(|c| key.role_candidate && crate::consumers::role_reason(c).is_some()) {
                writeln!(out, "  - role candidate: {}", crate::role_plan::hint(consumers.len(), &key.user_name, &key.account_id)).ok();
            }
            match &key.rotation {
                Some(rotation) => {
                    writeln!(out, "  - {}", rotation_text(rotation)).ok();
                }
                None => {
                    for choice in &key.choices {
                        writeln!(out, "  - {}: `{}`", choice.action.as_str(), choice.command).ok();
                    }
                }
            }
        }
        out
    }

    /// A self-contained page (inline CSS, no scripts, nothing fetched) for
    /// mail and browsers. Every value is escaped: user names, owners and
    /// reasons come from outside.
    pub fn html(&self, as_of: Timestamp) -> String {
        let mut out = String::new();
        out.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
        out.push_str(
            "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">\n",
        );
        out.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
        writeln!(out, "<title>{}</title>", escape_html(&self.subject())).ok();
        out.push_str(STYLE);
        out.push_str("</head>\n<body>\n");
        writeln!(out, "<h1>{}</h1>", escape_html(&self.headline())).ok();
        writeln!(out, "<p>{}</p>", escape_html(&self.introduction(as_of))).ok();
        out.push_str("<ul class=\"keys\">\n");
        for key in &self.keys {
            let line = KeyLine::of(key);
            let class = key.result.as_str().to_ascii_lowercase();
            writeln!(
                out,
                "<li><p><strong>{}</strong>: {}. <span class=\"{class}\">{}</span>: {}</p>",
                escape_html(&line.who),
                escape_html(&line.facts),
                key.result.as_str(),
                escape_html(&key.reason)
            )
            .ok();
            out.push_str("<ul>\n");
            if let Some(reminder) = &key.reminder {
                writeln!(out, "<li>reminder: {}</li>", escape_html(&reminder.text())).ok();
            }
            match &key.rotation {
                Some(rotation) => {
                    writeln!(out, "<li>{}</li>", escape_html(&rotation_text(rotation))).ok();
                }
                None => {
                    for choice in &key.choices {
                        let (action, command) = (choice.action.as_str(), escape_html(&choice.command));
                        writeln!(out, "<li>{action}: <code>{command}</code></li>").ok();
                    }
                }
            }
            out.push_str("</ul></li>\n");
        }
        out.push_str("</ul>\n</body>\n</html>\n");
        out
    }

    /// A stable hex digest of who the notice is for and which keys it lists
    /// with their results: the same notice has the same digest (ages and
    /// last uses do not count), a new key or a changed result changes it.
    /// FNV-1a, not `DefaultHasher`, whose output may change with Rust.
    pub fn digest(&self) -> String {
        let mut keys: Vec<_> = self
            .keys
            .iter()
            .map(|k| {
                // A key without an id is told apart by its creation, which
                // never changes.
                let created = k.access_key_id.is_none().then(|| whole_seconds(k.created_at).as_second());
                (&k.account_id, &k.user_name, &k.access_key_id, created, k.result)
            })
            .collect();
        keys.sort();
        let mut hash = Fnv1a::new();
        hash.field(self.owner.as_deref().map(str::as_bytes));
        for (account, user, key, created, result) in keys {
            hash.field(Some(account.as_bytes()));
            hash.field(Some(user.as_bytes()));
            hash.field(key.as_deref().map(str::as_bytes));
            hash.field(created.map(|c| c.to_string()).as_deref().map(str::as_bytes));
            hash.field(Some(result.as_str().as_bytes()));
        }
        format!("{:016x}", hash.0)
    }
}

const STYLE: &str = "<style>
body { font-family: -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif; color: #222; line-height: 1.45;
  max-width: 60em; margin: 2em auto; padding: 0 1em; }
h1 { font-size: 1.3em; }
ul.keys > li { margin-bottom: 1em; }
code { font-family: Menlo, Consolas, monospace; font-size: 0.9em; background: #f3f3f3; padding: 0.1em 0.3em;
  word-break: break-all; }
.failed { color: #b00020; font-weight: bold; }
.warning { color: #8a5300; font-weight: bold; }
</style>
";

/// The parts of a key's line shared by text and HTML.
struct KeyLine {
    /// `ci-deployer in account 123456789012, key AKIA...`
    who: String,
    /// `200 days old, last used 2026-11-27 by s3 in us-east-1`
    facts: String,
}

impl KeyLine {
    fn of(key: &NoticeKey) -> KeyLine {
        let which = match &key.access_key_id {
            Some(id) => format!("key {id}"),
            None => format!("key created {} (id not known yet)", key.created_at.strftime("%Y-%m-%d")),
        };
        let days = if key.age_days == 1 { "day" } else { "days" };
        KeyLine {
            who: format!("{} in account {}, {which}", key.user_name, key.account_id),
            facts: format!("{} {days} old, {}", key.age_days, last_use(key)),
        }
    }
}

/// `never used`, or `last used 2026-11-27 by s3 in us-east-1` with what is known.
fn last_use(key: &NoticeKey) -> String {
    let Some(at) = key.last_used_at else { return "never used".to_owned() };
    let mut text = format!("last used {}", at.strftime("%Y-%m-%d"));
    if let Some(service) = &key.last_used_service {
        write!(text, " by {service}").ok();
    }
    if let Some(region) = &key.last_used_region {
        write!(text, " in {region}").ok();
    }
    text
}

fn rotation_text(rotation: &RotationRef) -> String {
    format!("already being rotated (rotation {}, stage {}): nothing to decide", rotation.id, rotation.stage)
}

pub(crate) fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// 64-bit FNV-1a, fed fields that cannot run into each other.
struct Fnv1a(u64);

impl Fnv1a {
    fn new() -> Self {
        Fnv1a(0xcbf2_9ce4_8422_2325)
    }

    fn bytes(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    /// A field with its length, so ("ab", "c") and ("a", "bc") differ, and
    /// `None` apart from `Some("")`.
    fn field(&mut self, value: Option<&[u8]>) {
        match value {
            None => self.bytes(&[0]),
            Some(v) => {
                self.bytes(&[1]);
                self.bytes(&(v.len() as u64).to_le_bytes());
                self.bytes(v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::KeyStatus;

    const AS_OF: &str = "2026-11-28T12:00:00Z";

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn row(user: &str, key: Option<&str>, owner: Option<&str>, result: Compliance, age_days: i64) -> KeyRow {
        KeyRow {
            account_id: "123456789012".into(),
            user_name: user.into(),
            user_arn: format!("arn:aws:iam::123456789012:user/{user}"),
            access_key_id: key.map(str::to_owned),
            status: KeyStatus::Active,
            created_at: ts(AS_OF) - SignedDuration::from_hours(24 * age_days),
            age_days,
            last_used_at: None,
            last_used_service: None,
            last_used_region: None,
            owner: owner.map(str::to_owned),
            result,
            reason: format!("active key is {age_days} days old (limit 90)"),
            exemption: None,
            rotation: None,
            role_candidate: true,
            retire: false,
            role_reason: None,
            consumers: None,
        }
    }

    fn no_contact(_: Option<&str>) -> Option<String> {
        None
    }

    fn one(rows: &[KeyRow]) -> Notice {
        let mut all = notices(rows, ts(AS_OF), no_contact);
        assert_eq!(all.len(), 1);
        all.remove(0)
    }

    #[test]
    fn grouped_by_owner_unowned_last_worst_then_oldest_first() {
        use Compliance::*;
        let rows = [
            row("a", Some("AKIA1"), None, Failed, 100),
            row("b", Some("AKIA2"), Some("zeta"), Warning, 80),
            row("c", Some("AKIA3"), Some("alpha"), Warning, 85),
            row("d", Some("AKIA4"), Some("alpha"), Failed, 120),
            row("e", Some("AKIA5"), Some("alpha"), Failed, 300),
            row("f", Some("AKIA6"), Some("alpha"), Passed, 10),
            row("g", Some("AKIA7"), Some("beta"), Suppressed, 400),
        ];
        let contact = |owner: Option<&str>| owner.map(|o| format!("{o}@example.com"));
        let all = notices(&rows, ts(AS_OF), contact);
        let owners: Vec<_> = all.iter().map(|n| n.owner.as_deref()).collect();
        assert_eq!(owners, [Some("alpha"), Some("zeta"), None], "PASSED and SUPPRESSED keys are left out");
        let users: Vec<_> = all[0].keys.iter().map(|k| k.user_name.as_str()).collect();
        assert_eq!(users, ["e", "d", "c"]);
        assert_eq!(all[0].contact.as_deref(), Some("alpha@example.com"));
        assert_eq!(all[2].contact, None);
        assert!(notices(&rows[5..], ts(AS_OF), no_contact).is_empty());
    }

    #[test]
    fn the_brief_form_has_the_contact_and_the_keys_but_no_introduction() {
        let rows = [row("a", Some("AKIA1"), Some("team-a"), Compliance::Failed, 100)];
        let n = Notice { contact: Some("a@example.com".into()), ..one(&rows) };
        let brief = n.brief();
        assert!(brief.starts_with("# 1 access key of team-a needs a decision (a@example.com)\n\n- a in account"), "{brief}");
        assert!(brief.contains("rekey rotate --user a --account 123456789012 --key AKIA1"), "{brief}");
        assert!(!brief.contains("Security Hub control IAM.3 requires"), "{brief}");
        assert!(n.text(ts(AS_OF)).ends_with(&brief[brief.find("\n\n").unwrap() + 2..]), "the same key lines");
    }

    #[test]
    fn subjects_count_keys_in_words() {
        use Compliance::*;
        let n = one(&[row("a", None, Some("team-payments"), Failed, 100)]);
        assert_eq!(n.subject(), "rekey: 1 access key of team-payments needs a decision");
        let rows = [
            row("a", None, None, Failed, 100),
            row("b", None, None, Warning, 80),
            row("c", None, None, Failed, 95),
        ];
        assert_eq!(one(&rows).subject(), "rekey: 3 access keys of unowned users need a decision");
        let odd = Notice { owner: Some("x\nBcc: y".into()), ..one(&rows) };
        assert_eq!(odd.subject(), "rekey: 3 access keys of x Bcc: y need a decision");
    }

    #[test]
    fn shell_quoting() {
        assert_eq!(shell_quote("ci-deployer"), "ci-deployer");
        assert_eq!(shell_quote("svc+x=y,z.w@example_1-2"), "svc+x=y,z.w@example_1-2");
        assert_eq!(shell_quote("2026-12-28T12:00:00Z"), "2026-12-28T12:00:00Z");
        assert_eq!(shell_quote("=ls"), "'=ls'");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("two words"), "'two words'");
        assert_eq!(shell_quote("$(rm -rf /)"), "'$(rm -rf /)'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote("<why>"), "'<why>'");
    }

    #[test]
    fn choices_are_commands_to_paste() {
        let n = one(&[row("=odd", Some("AKIAEXAMPLE"), None, Compliance::Failed, 100)]);
        let commands: Vec<_> = n.keys[0].choices.iter().map(|c| (c.action, c.command.as_str())).collect();
        assert_eq!(
            commands,
            [
                (Action::Rotate, "rekey rotate --user '=odd' --account 123456789012 --key AKIAEXAMPLE"),
                (
                    Action::Suppress,
                    "rekey suppress --user '=odd' --account 123456789012 \
                     --reason '<why this key cannot be rotated>' --until 2026-12-28T12:00:00Z"
                ),
                (
                    Action::Deactivate,
                    "aws iam update-access-key --user-name '=odd' --access-key-id AKIAEXAMPLE --status Inactive"
                ),
            ]
        );
    }

    #[test]
    fn an_unused_key_offers_retire_first() {
        let unused = KeyRow { retire: true, ..row("u", Some("AKIA1"), None, Compliance::Failed, 100) };
        let n = one(&[unused]);
        let actions: Vec<_> = n.keys[0].choices.iter().map(|c| c.action).collect();
        assert_eq!(actions, [Action::Retire, Action::Rotate, Action::Suppress, Action::Deactivate]);
        assert_eq!(n.keys[0].choices[0].command, "rekey retire --user u --account 123456789012 --key AKIA1");
    }

    #[test]
    fn without_a_key_id_rotate_finds_the_key_and_there_is_no_deactivate() {
        let n = one(&[row("u", None, None, Compliance::Failed, 100)]);
        let actions: Vec<_> = n.keys[0].choices.iter().map(|c| c.action).collect();
        assert_eq!(actions, [Action::Rotate, Action::Suppress]);
        assert_eq!(n.keys[0].choices[0].command, "rekey rotate --user u --account 123456789012");
    }

    #[test]
    fn a_key_under_rotation_offers_no_choices() {
        let mut r = row("u", Some("AKIAEXAMPLE"), None, Compliance::Failed, 100);
        r.rotation = Some(Box::new(RotationRef { id: "r-1".into(), stage: "delivering".into(), retirement: false }));
        let n = one(&[r]);
        assert!(n.keys[0].choices.is_empty());
        let text = n.text(ts(AS_OF));
        let line = "  - already being rotated (rotation r-1, stage delivering): nothing to decide\n";
        assert!(text.contains(line), "{text}");
        assert!(!text.contains("rekey rotate"), "{text}");
    }

    #[test]
    fn text_reads_like_this() {
        let mut used = row("ci-deployer", Some("AKIAEXAMPLE"), Some("team-payments"), Compliance::Failed, 200);
        used.last_used_at = Some(ts("2026-11-27T08:00:00Z"));
        used.last_used_service = Some("s3".into());
        used.last_used_region = Some("us-east-1".into());
        let mut warned = row("batch", None, Some("team-payments"), Compliance::Warning, 80);
        warned.reason = "active key is 80 days old, fails at 2026-12-08 12:00 UTC (limit 90)".into();
        let text = one(&[warned, used]).text(ts(AS_OF));
        let expected = "\
# 2 access keys of team-payments need a decision

AWS Security Hub control IAM.3 requires the access keys of IAM users to be rotated every 90 days or less, \
so that a leaked key does not work for long. The keys below belong to IAM users owned by team-payments, and on \
2026-11-28 12:00 UTC they were too old (FAILED) or soon will be (WARNING). For each key, decide and run one \
command: rotate it (a new key replaces it where it is used, then the old one is removed), suppress the finding \
for 30 days with the reason it cannot be rotated yet, or deactivate it if nothing uses it any more.

- ci-deployer in account 123456789012, key AKIAEXAMPLE: 200 days old, last used 2026-11-27 by s3 in us-east-1. \
FAILED: active key is 200 days old (limit 90)
  - rotate: `rekey rotate --user ci-deployer --account 123456789012 --key AKIAEXAMPLE`
  - suppress: `rekey suppress --user ci-deployer --account 123456789012 --reason '<why this key cannot be rotated>' \
--until 2026-12-28T12:00:00Z`
  - deactivate: `aws iam update-access-key --user-name ci-deployer --access-key-id AKIAEXAMPLE --status Inactive`
- batch in account 123456789012, key created 2026-09-09 (id not known yet): 80 days old, never used. \
WARNING: active key is 80 days old, fails at 2026-12-08 12:00 UTC (limit 90)
  - rotate: `rekey rotate --user batch --account 123456789012`
  - suppress: `rekey suppress --user batch --account 123456789012 --reason '<why this key cannot be rotated>' \
--until 2026-12-28T12:00:00Z`
";
        assert_eq!(text, expected);
    }

    #[test]
    fn a_role_candidate_with_consumers_read_names_the_plan_command() {
        let lambda = crate::consumers::consumers(&[crate::consumers::TrailEvent {
            access_key_id: "AKIAEXAMPLE".into(),
            time: ts("2026-11-27T08:00:00Z"),
            event_name: "Decrypt".into(),
            service: "kms".into(),
            region: "us-east-1".into(),
            source_ip: "3.1.2.3".into(),
            user_agent: "Boto3/1.34 exec-env/AWS_Lambda_python3.12".into(),
        }]);
        let mut r = row("=app", Some("AKIAEXAMPLE"), None, Compliance::Failed, 100);
        r.consumers = Some(Box::new(crate::report::ConsumerCount::of(lambda.clone())));
        let text = one(&[r.clone()]).brief();
        assert!(text.contains("  - role candidate: 1 consumer, plan: `rekey role-plan --user '=app' --account 123456789012`\n"), "{text}");
        r.role_candidate = false;
        assert!(!one(&[r.clone()]).brief().contains("role candidate"));
        let mut outside = lambda;
        outside[0].user_agent = "aws-cli/2.15".into();
        r.role_candidate = true;
        r.consumers = Some(Box::new(crate::report::ConsumerCount::of(outside)));
        assert!(!one(&[r]).brief().contains("role candidate"), "a consumer outside AWS: no plan hint");
    }

    #[test]
    fn last_use_says_what_is_known() {
        let mut r = row("u", None, None, Compliance::Failed, 1);
        let n = one(std::slice::from_ref(&r));
        assert_eq!(last_use(&n.keys[0]), "never used");
        assert!(n.text(ts(AS_OF)).contains(": 1 day old, never used."));
        r.last_used_at = Some(ts("2026-11-27T23:59:59Z"));
        assert_eq!(last_use(&one(std::slice::from_ref(&r)).keys[0]), "last used 2026-11-27");
        r.last_used_region = Some("eu-west-1".into());
        assert_eq!(last_use(&one(&[r]).keys[0]), "last used 2026-11-27 in eu-west-1");
    }

    #[test]
    fn a_reminder_digest_says_which_reminder_each_key_is() {
        use crate::reminder::{Digest, Due, Reminder};
        use crate::Duration;
        let soon = row("soon", Some("AKIA1"), Some("team-a"), Compliance::Warning, 83);
        let late = row("late", Some("AKIA2"), Some("team-a"), Compliance::Failed, 104);
        let fails_at = |r: &KeyRow| r.created_at + jiff::SignedDuration::from_hours(90 * 24);
        let before = Due { moment: ts(AS_OF), reminder: Reminder::Before(Duration::from_days(7)), fails_at: fails_at(&soon) };
        let overdue = Due { moment: ts(AS_OF), reminder: Reminder::Overdue(Duration::from_days(14)), fails_at: fails_at(&late) };
        let digest = Digest { owner: Some("team-a".into()), keys: vec![(soon, before), (late, overdue)] };
        let n = reminder_notice(&digest, ts(AS_OF), None);
        assert!(n.is_reminder());
        assert_eq!(n.subject(), "rekey: reminder: 2 access keys of team-a need a decision");
        let text = n.text(ts(AS_OF));
        assert!(text.contains("  - reminder: fails in 7 days (IAM.3 fails it at 2026-12-05 12:00 UTC)\n"), "{text}");
        assert!(text.contains("  - reminder: overdue by 14 days (IAM.3 has failed it since 2026-11-14 12:00 UTC)\n"), "{text}");
        assert!(text.find("late in account").unwrap() < text.find("soon in account").unwrap(), "worst first: {text}");
        assert!(n.html(ts(AS_OF)).contains("<li>reminder: fails in 7 days"));
        let json = serde_json::to_value(&n).unwrap();
        assert_eq!(json["keys"][1]["reminder"]["label"], "fails in 7 days");
        let plain = one(&[row("u", None, None, Compliance::Failed, 100)]);
        assert!(!plain.is_reminder() && serde_json::to_value(&plain).unwrap()["keys"][0].get("reminder").is_none(), "a notice is as before");
    }

    #[test]
    fn unowned_notices_say_nobody_owns_the_users() {
        let text = one(&[row("u", None, None, Compliance::Failed, 100)]).text(ts(AS_OF));
        assert!(text.starts_with("# 1 access key of unowned users needs a decision\n"), "{text}");
        assert!(text.contains("users that nobody is recorded as owning"), "{text}");
    }

    #[test]
    fn html_escapes_every_value_and_fetches_nothing() {
        let mut r = row("<script>alert(1)</script>", Some("AKIAEXAMPLE"), Some("a&b"), Compliance::Failed, 100);
        r.reason = "\"quoted\" <b>".into();
        let html = one(&[r]).html(ts(AS_OF));
        assert!(!html.contains("<script>"), "{html}");
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt; in account"), "{html}");
        assert!(html.contains("owned by a&amp;b"), "{html}");
        assert!(html.contains("&quot;quoted&quot; &lt;b&gt;"), "{html}");
        assert!(html.contains("--user &#39;&lt;script&gt;alert(1)&lt;/script&gt;&#39;"), "{html}");
        assert!(html.starts_with("<!DOCTYPE html>") && html.ends_with("</html>\n"));
        for external in ["src=", "href=", "url(", "@import", "<link", "<img"] {
            assert!(!html.contains(external), "{external} in {html}");
        }
        assert_eq!(escape_html("<>&\"'é"), "&lt;&gt;&amp;&quot;&#39;é");
    }

    #[test]
    fn fnv1a_matches_published_values() {
        let hash = |s: &str| {
            let mut h = Fnv1a::new();
            h.bytes(s.as_bytes());
            h.0
        };
        assert_eq!(hash(""), 0xcbf29ce484222325);
        assert_eq!(hash("a"), 0xaf63dc4c8601ec8c);
        assert_eq!(hash("foobar"), 0x85944171f73967e8);
    }

    #[test]
    fn digest_is_stable_and_ignores_ages_and_uses() {
        use Compliance::*;
        let rows = [row("a", Some("AKIA1"), Some("t"), Failed, 100), row("b", None, Some("t"), Warning, 80)];
        let digest = one(&rows).digest();
        // Pinned (checked against an independent FNV-1a): a change here
        // re-sends every notice already sent.
        assert_eq!(digest, "ac7a2b31233b4723");
        let mut later = rows.clone();
        later[0].age_days = 130;
        later[0].last_used_at = Some(ts("2026-11-27T00:00:00Z"));
        later[1].age_days = 81;
        later[1].reason = "another wording".into();
        assert_eq!(one(&later).digest(), digest);
        later.reverse();
        assert_eq!(one(&later).digest(), digest, "order does not count");
    }

    #[test]
    fn digest_changes_with_results_keys_and_owner() {
        use Compliance::*;
        let rows = vec![row("a", Some("AKIA1"), Some("t"), Failed, 100), row("b", None, Some("t"), Warning, 80)];
        let digest = one(&rows).digest();
        let mut failed = rows.clone();
        failed[1].result = Failed;
        assert_ne!(one(&failed).digest(), digest, "a result changed");
        let mut more = rows.clone();
        more.push(row("c", Some("AKIA3"), Some("t"), Warning, 80));
        assert_ne!(one(&more).digest(), digest, "a new key");
        let mut other_key = rows.clone();
        other_key[0].access_key_id = Some("AKIA9".into());
        assert_ne!(one(&other_key).digest(), digest, "the key was replaced");
        let mut other_owner = rows.clone();
        other_owner.iter_mut().for_each(|r| r.owner = Some("u".into()));
        assert_ne!(one(&other_owner).digest(), digest);
        let mut unowned = rows;
        unowned.iter_mut().for_each(|r| r.owner = None);
        assert_ne!(one(&unowned).digest(), digest);
    }

    #[test]
    fn json_fields_are_snake_case_with_nulls() {
        let n = one(&[row("u", None, None, Compliance::Warning, 80)]);
        let v = serde_json::to_value(&n).unwrap();
        assert_eq!(v["owner"], serde_json::Value::Null);
        assert_eq!(v["contact"], serde_json::Value::Null);
        let key = &v["keys"][0];
        for field in ["access_key_id", "last_used_at", "last_used_service", "last_used_region", "rotation"] {
            assert_eq!(key[field], serde_json::Value::Null, "{field}");
        }
        assert_eq!(key["result"], "WARNING");
        assert_eq!(key["created_at"], "2026-09-09T12:00:00Z");
        assert_eq!(key["choices"][0]["action"], "rotate");
        assert_eq!(key["choices"][1]["action"], "suppress");
    }
}
