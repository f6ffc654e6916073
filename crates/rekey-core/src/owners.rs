//! The owners map: who owns the users no owner tag names, and how to reach
//! owners. A user's owner is the first configured owner tag it has (see
//! [`crate::User::owner`]); this file fills in for untagged users, so a
//! team can claim a whole IAM path without tagging every user on it, and it
//! gives contacts for owners whichever way they were found.
//!
//! The file is TOML with three optional tables:
//!
//! ```toml
//! # Exact user names (IAM user names: letters, digits and +=,.@_-).
//! [users]
//! "ci-deployer" = { owner = "team-payments", contact = "payments-oncall@example.com" }
//! "legacy,batch" = { owner = "data-platform" }            # contact optional
//!
//! # IAM path prefixes: the longest matching prefix wins. A prefix starts
//! # and ends with "/"; "/" alone matches every user.
//! [paths]
//! "/ci/" = { owner = "platform", contact = "#platform-alerts" }
//! "/ci/legacy/" = { owner = "legacy-team" }
//!
//! # Contacts of owners, also of owners that come from tags.
//! [owners]
//! "team-payments" = { contact = "payments-oncall@example.com" }
//! ```
//!
//! An exact user name beats any path. An owner's contact is its `[owners]`
//! entry, else the contact its `[users]` and `[paths]` entries give, if they
//! agree on one. Unknown tables and keys are errors, with their line: a
//! misspelt `contcat` would otherwise drop a contact without a word.

use crate::model::UserName;
use serde::{Deserialize, Deserializer};
use std::collections::{BTreeMap, BTreeSet};

/// A parsed owners map. The default is the empty map (no file).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OwnersMap {
    users: BTreeMap<String, Entry>,
    paths: BTreeMap<String, Entry>,
    contacts: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table like { owner = \"team\", contact = \"team@example.com\" }")]
struct Entry {
    #[serde(deserialize_with = "owner")]
    owner: String,
    #[serde(default, deserialize_with = "some_contact")]
    contact: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table like { contact = \"team@example.com\" }")]
struct OwnerEntry {
    #[serde(deserialize_with = "contact")]
    contact: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    users: BTreeMap<UserName, Entry>,
    #[serde(default)]
    paths: BTreeMap<PathPrefix, Entry>,
    #[serde(default)]
    owners: BTreeMap<String, OwnerEntry>,
}

/// A `[paths]` key, checked while parsing so that a bad one is reported
/// with its line.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct PathPrefix(String);

impl<'de> Deserialize<'de> for PathPrefix {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let path = String::deserialize(d)?;
        check_path_prefix(&path).map_err(serde::de::Error::custom)?;
        Ok(PathPrefix(path))
    }
}

/// IAM's rule for paths: `/`, or `/` then printable ASCII then `/`, at most
/// 512 characters. A prefix that breaks it could never match a user.
fn check_path_prefix(path: &str) -> Result<(), String> {
    let printable = path.bytes().all(|b| (0x21..=0x7e).contains(&b));
    if path.starts_with('/') && path.ends_with('/') && printable && path.len() <= 512 {
        Ok(())
    } else {
        Err(format!(
            "{path:?} is not an IAM path prefix \
             (printable ASCII without spaces, starting and ending with \"/\", like \"/ci/\")"
        ))
    }
}

/// An owner or contact: not blank, and on one line, since it ends up in
/// message subjects and headers.
fn name<'de, D: Deserializer<'de>>(d: D, what: &str) -> Result<String, D::Error> {
    let value = String::deserialize(d)?;
    if value.trim().is_empty() {
        return Err(serde::de::Error::custom(format!("{what} is empty")));
    }
    if value.chars().any(char::is_control) {
        return Err(serde::de::Error::custom(format!("{what} {value:?} has a control character (a line break?)")));
    }
    Ok(value)
}

fn owner<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    name(d, "owner")
}

fn contact<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    name(d, "contact")
}

fn some_contact<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    contact(d).map(Some)
}

/// Why an owners map was rejected, with the line when `toml` knows it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{}", .line.map(|l| format!("line {l}: ")).unwrap_or_default(), .message)]
pub struct OwnersMapError {
    pub line: Option<usize>,
    pub message: String,
}

impl OwnersMap {
    pub fn parse(text: &str) -> Result<OwnersMap, OwnersMapError> {
        let file: File = toml::from_str(text).map_err(|e| OwnersMapError {
            line: e.span().and_then(|span| line_of(text, span.start)),
            message: e.message().trim_end().to_owned(),
        })?;
        Ok(OwnersMap {
            users: file.users.into_iter().map(|(user, entry)| (user.as_str().to_owned(), entry)).collect(),
            paths: file.paths.into_iter().map(|(path, entry)| (path.0, entry)).collect(),
            contacts: file.owners.into_iter().map(|(owner, entry)| (owner, entry.contact)).collect(),
        })
    }

    /// The owner the map gives a user: its exact name first, then the
    /// longest path prefix of `user_path` (see [`user_path`]).
    pub fn owner_for(&self, user_name: &str, user_path: &str) -> Option<&str> {
        self.users.get(user_name).or_else(|| self.path_entry(user_path)).map(|e| e.owner.as_str())
    }

    fn path_entry(&self, user_path: &str) -> Option<&Entry> {
        self.paths
            .iter()
            .filter(|(prefix, _)| user_path.starts_with(prefix.as_str()))
            .max_by_key(|(prefix, _)| prefix.len())
            .map(|(_, entry)| entry)
    }

    /// How to reach `owner`: its `[owners]` entry, else the one contact its
    /// `[users]` and `[paths]` entries give. Entries that disagree give none:
    /// picking one would send a notice to whoever happened to sort first.
    pub fn contact_for(&self, owner: &str) -> Option<&str> {
        if let Some(contact) = self.contacts.get(owner) {
            return Some(contact);
        }
        let given: BTreeSet<&str> = self
            .users
            .values()
            .chain(self.paths.values())
            .filter(|e| e.owner == owner)
            .filter_map(|e| e.contact.as_deref())
            .collect();
        match given.len() {
            1 => given.into_iter().next(),
            _ => None,
        }
    }
}

/// 1-based line of the byte at `offset`.
fn line_of(text: &str, offset: usize) -> Option<usize> {
    Some(text.get(..offset)?.matches('\n').count() + 1)
}

/// The IAM path of the user an ARN names, with both slashes:
/// `arn:aws:iam::123456789012:user/ci/legacy/name` → `/ci/legacy/`, and `/`
/// for a user without a path (or an ARN that names no user). User names
/// cannot contain `/`, so the path is everything up to the last one.
pub fn user_path(user_arn: &str) -> &str {
    // Paths may contain ':', so the resource is everything after the fifth.
    let resource = user_arn.splitn(6, ':').nth(5).unwrap_or_default();
    match resource.strip_prefix("user") {
        Some(rest) if rest.starts_with('/') => rest.rfind('/').map_or("/", |end| &rest[..=end]),
        _ => "/",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r##"
# exact user names
[users]
"ci-deployer" = { owner = "team-payments", contact = "payments-oncall@example.com" }
"legacy,batch" = { owner = "data-platform" }            # contact optional
# IAM path prefixes (the longest matching prefix wins; must start and end with "/")
[paths]
"/ci/" = { owner = "platform", contact = "#platform-alerts" }
"/ci/legacy/" = { owner = "legacy-team" }
# contacts of owners (also for owners that come from tags)
[owners]
"team-payments" = { contact = "payments-oncall@example.com" }
"##;

    fn example() -> OwnersMap {
        OwnersMap::parse(EXAMPLE).unwrap()
    }

    fn error(text: &str) -> OwnersMapError {
        OwnersMap::parse(text).unwrap_err()
    }

    #[test]
    fn the_documented_example_parses() {
        let map = example();
        assert_eq!(map.owner_for("legacy,batch", "/"), Some("data-platform"));
        assert_eq!(map.contact_for("team-payments"), Some("payments-oncall@example.com"));
        assert_eq!(OwnersMap::parse("").unwrap(), OwnersMap::default());
    }

    #[test]
    fn exact_user_name_beats_any_path() {
        let map = example();
        assert_eq!(map.owner_for("ci-deployer", "/ci/legacy/"), Some("team-payments"));
        assert_eq!(map.owner_for("CI-DEPLOYER", "/"), None, "names are matched exactly");
    }

    #[test]
    fn longest_path_prefix_wins() {
        let map = example();
        assert_eq!(map.owner_for("x", "/ci/"), Some("platform"));
        assert_eq!(map.owner_for("x", "/ci/legacy/"), Some("legacy-team"));
        assert_eq!(map.owner_for("x", "/ci/legacy/deep/"), Some("legacy-team"));
        assert_eq!(map.owner_for("x", "/ci/other/"), Some("platform"));
        assert_eq!(map.owner_for("x", "/cicd/"), None, "a prefix matches whole path segments");
        assert_eq!(map.owner_for("x", "/"), None);
        let catch_all = OwnersMap::parse("[paths]\n\"/\" = { owner = \"security\" }\n").unwrap();
        assert_eq!(catch_all.owner_for("anyone", "/any/path/"), Some("security"));
    }

    #[test]
    fn contacts_come_from_owners_then_from_agreeing_entries() {
        let map = example();
        assert_eq!(map.contact_for("platform"), Some("#platform-alerts"));
        assert_eq!(map.contact_for("legacy-team"), None, "no contact given");
        assert_eq!(map.contact_for("team-from-a-tag"), None);
        let text = r#"
[users]
a = { owner = "t", contact = "one@example.com" }
b = { owner = "t", contact = "two@example.com" }
c = { owner = "u", contact = "u@example.com" }
d = { owner = "u" }
e = { owner = "v", contact = "v-user@example.com" }
[paths]
"/u/" = { owner = "u", contact = "u@example.com" }
[owners]
v = { contact = "v@example.com" }
"#;
        let map = OwnersMap::parse(text).unwrap();
        assert_eq!(map.contact_for("t"), None, "two contacts: none is picked");
        assert_eq!(map.contact_for("u"), Some("u@example.com"), "the same contact twice is one");
        assert_eq!(map.contact_for("v"), Some("v@example.com"), "[owners] first");
    }

    #[test]
    fn unknown_tables_and_keys_are_named_with_their_line() {
        let e = error("[users]\na = { owner = \"t\" }\n\n[groups]\nb = 1\n");
        assert_eq!(e.line, Some(4), "{e}");
        assert!(e.message.contains("groups"), "{e}");
        let e = error("[users]\na = { owner = \"t\", contcat = \"x\" }\n");
        assert_eq!(e.line, Some(2), "{e}");
        assert!(e.to_string().starts_with("line 2: ") && e.message.contains("contcat"), "{e}");
        let e = error("[owners]\nt = { contact = \"x\", owner = \"y\" }\n");
        assert!(e.line == Some(2) && e.message.contains("owner"), "{e}");
    }

    #[test]
    fn empty_owners_and_contacts_are_rejected() {
        for (text, words) in [
            ("[users]\na = { owner = \"\" }\n", "owner is empty"),
            ("[users]\na = { owner = \"  \" }\n", "owner is empty"),
            ("[paths]\n\"/x/\" = { owner = \"t\", contact = \"\" }\n", "contact is empty"),
            ("[owners]\nt = { contact = \"\" }\n", "contact is empty"),
            ("[users]\na = { owner = \"t\\nBcc: x\" }\n", "control character"),
            ("[users]\na = { contact = \"c\" }\n", "owner"),
            ("[owners]\nt = {}\n", "contact"),
            ("[users]\na = \"t\"\n", "expected a table like { owner = "),
        ] {
            let e = error(text);
            assert_eq!(e.line, Some(2), "{text:?} gave {e}");
            assert!(e.message.contains(words), "{text:?} gave {e}");
        }
    }

    #[test]
    fn path_prefixes_and_user_names_are_checked() {
        for bad in ["ci/", "/ci", "", "/c i/", "/ü/"] {
            let e = error(&format!("[paths]\n{bad:?} = {{ owner = \"t\" }}\n"));
            assert!(e.message.contains("not an IAM path prefix"), "{bad:?} gave {e}");
            assert_eq!(e.line, Some(2), "{bad:?} gave {e}");
        }
        let e = error("[users]\n\"ci/deployer\" = { owner = \"t\" }\n");
        assert!(e.message.contains("not an IAM user name") && e.line == Some(2), "{e}");
    }

    #[test]
    fn user_path_comes_from_the_arn() {
        assert_eq!(user_path("arn:aws:iam::123456789012:user/ci/legacy/name"), "/ci/legacy/");
        assert_eq!(user_path("arn:aws:iam::123456789012:user/name"), "/");
        assert_eq!(user_path("arn:aws-cn:iam::123456789012:user/a:b/name"), "/a:b/");
        assert_eq!(user_path("arn:aws:iam::123456789012:role/x/name"), "/");
        assert_eq!(user_path("arn:aws:iam::123456789012:root"), "/");
        assert_eq!(user_path("not an arn"), "/");
        assert_eq!(user_path(""), "/");
    }
}
