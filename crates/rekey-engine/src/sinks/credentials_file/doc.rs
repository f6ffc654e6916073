//! The line model of an AWS shared credentials file: [`Doc`] holds the file
//! as lines (each with its own line ending), classified with the rules of
//! Python's `configparser` (which the AWS CLI uses), so rekey sees the same
//! profiles and keys as the CLI. Edits change only the lines of one
//! profile's keys; every other byte stays as it was. Nothing here quotes a
//! line in an error, since any line may hold a secret.

use super::{CredentialsFileError, Result};
use rekey_core::Credentials;
use std::ops::Range;
use std::path::{Path, PathBuf};

const KEY_ID: &str = "aws_access_key_id";
const SECRET: &str = "aws_secret_access_key";
/// The keys rekey owns in a profile. botocore reads a session token under
/// either of the last two names; with a long-term key it breaks signing.
const KEYS: [&str; 4] = [KEY_ID, SECRET, "aws_session_token", "aws_security_token"];
/// configparser's section of defaults for every other one: no profile to the AWS CLI.
const DEFAULT_SECTION: &str = "DEFAULT";

/// What a line is, under configparser's rules.
#[derive(Clone, PartialEq)]
enum Kind {
    /// A blank line or a comment.
    Filler,
    Header(String),
    /// A `key = value` line (`head`) or an indented continuation of its value.
    Entry {
        key: String,
        head: bool,
    },
}

/// The file as lines, each with its own line ending. No `Debug`: it holds secrets.
#[derive(Clone)]
pub(super) struct Doc {
    path: PathBuf,
    lines: Vec<String>,
    kinds: Vec<Kind>,
    /// The file's line ending, used for the lines rekey writes.
    eol: &'static str,
    /// Whether the text ends with a line ending (an empty one counts as
    /// ending with one). Every line in `lines` has one; `text` takes the
    /// last one off again if the file had none, whatever lines were edited.
    final_eol: bool,
}

impl Doc {
    pub(super) fn new(path: &Path, text: String) -> Result<Doc> {
        let mut lines: Vec<String> = text.split_inclusive('\n').map(String::from).collect();
        let eol = if lines.first().is_some_and(|l| l.ends_with("\r\n")) { "\r\n" } else { "\n" };
        let final_eol = text.is_empty() || text.ends_with('\n');
        if let Some(last) = lines.last_mut().filter(|_| !final_eol) {
            last.push_str(eol);
        }
        let mut doc = Doc { path: path.to_owned(), lines, kinds: Vec::new(), eol, final_eol };
        doc.rescan()?;
        Ok(doc)
    }

    pub(super) fn text(&self) -> String {
        let text = self.lines.concat();
        match self.final_eol {
            true => text,
            false => content(&text).to_owned(),
        }
    }

    /// Puts `creds` into `profile`: replaces its key lines in place (adding
    /// a missing one after the section's last key, removing a session token)
    /// or appends the profile.
    pub(super) fn set_credentials(&mut self, profile: &str, creds: &Credentials) -> Result<()> {
        let id = creds.access_key_id.as_str();
        let secret = creds.secret_access_key.expose();
        for (what, value) in [("access key id", id), ("secret access key", secret)] {
            if value.is_empty() || value.trim() != value || value.chars().any(char::is_control) {
                let (path, profile) = (self.path.clone(), profile.to_owned());
                return Err(CredentialsFileError::InvalidValue { path, profile, what });
            }
        }
        for (key, value) in [(KEY_ID, id), (SECRET, secret)] {
            let line = self.line_for(profile, key, value)?;
            self.put(profile, key, &[line])?;
        }
        for key in &KEYS[2..] {
            self.put(profile, key, &[])?;
        }
        self.check_values(profile, [Some(id.to_owned()), Some(secret.to_owned()), None, None])
    }

    /// `profile`'s key lines, in file order under its header: a credentials
    /// file of their own, from which [`Doc::splice`] puts them back. `None`
    /// if the profile does not exist.
    pub(super) fn profile_copy(&self, profile: &str) -> Result<Option<String>> {
        let Some(entries) = self.entries(profile)? else { return Ok(None) };
        let mut lines: Vec<usize> = entries.into_iter().flatten().collect();
        lines.sort_unstable();
        let mut copy = format!("[{profile}]\n");
        for i in lines {
            copy.push_str(content(&self.lines[i]));
            copy.push('\n');
        }
        // Without the lines between them, indentation could read differently.
        if Doc::new(&self.path, copy.clone())?.values(profile)? != self.values(profile)? {
            return Err(CredentialsFileError::Unsafe { path: self.path.clone(), profile: profile.to_owned() });
        }
        Ok(Some(copy))
    }

    /// Gives `profile` the key lines it has in `old` (a [`Doc::profile_copy`]),
    /// changing no other line; with no `old`, removes its key lines, then its
    /// section if nothing else is left in it.
    pub(super) fn splice(&mut self, profile: &str, old: Option<&Doc>) -> Result<()> {
        let (old_lines, wanted) = match old {
            Some(old) => (old.entry_lines(profile)?.unwrap_or_default(), old.values(profile)?),
            None => Default::default(),
        };
        for (lines, key) in old_lines.iter().zip(KEYS) {
            self.put(profile, key, lines)?;
        }
        if old.is_none() {
            self.remove_section_if_empty(profile)?;
        }
        self.check_values(profile, wanted)
    }

    /// Refuses an edit that did not give `profile` the values meant.
    fn check_values(&self, profile: &str, wanted: [Option<String>; 4]) -> Result<()> {
        if self.values(profile)? == wanted {
            Ok(())
        } else {
            Err(CredentialsFileError::Unsafe { path: self.path.clone(), profile: profile.to_owned() })
        }
    }

    fn rescan(&mut self) -> Result<()> {
        self.kinds = scan(&self.lines).map_err(|(line, problem)| CredentialsFileError::Syntax {
            path: self.path.clone(),
            line,
            problem,
        })?;
        Ok(())
    }

    /// The lines of `profile`'s section, header first.
    fn section(&self, profile: &str) -> Result<Option<Range<usize>>> {
        let headers: Vec<(usize, &str)> = self
            .kinds
            .iter()
            .enumerate()
            .filter_map(|(i, kind)| match kind {
                Kind::Header(name) => Some((i, name.as_str())),
                _ => None,
            })
            .collect();
        let mut hits = headers.iter().filter(|(_, name)| *name == profile);
        match (hits.next(), hits.next()) {
            (None, _) => Ok(None),
            (Some(&(first, _)), Some(&(second, _))) => Err(CredentialsFileError::DuplicateProfile {
                path: self.path.clone(),
                profile: profile.to_owned(),
                first: first + 1,
                second: second + 1,
            }),
            (Some(&(start, _)), None) => {
                let end = headers.iter().map(|&(i, _)| i).find(|&i| i > start);
                Ok(Some(start..end.unwrap_or(self.lines.len())))
            }
        }
    }

    /// The lines holding `key` in section `sec`: its line, then any continuations.
    fn entry(&self, sec: &Range<usize>, profile: &str, key: &'static str) -> Result<Vec<usize>> {
        let lines: Vec<usize> = sec
            .clone()
            .filter(|&i| matches!(&self.kinds[i], Kind::Entry { key: k, .. } if k == key))
            .collect();
        let mut heads = lines.iter().filter(|&&i| matches!(self.kinds[i], Kind::Entry { head: true, .. }));
        if let (Some(first), Some(second)) = (heads.next(), heads.next()) {
            return Err(CredentialsFileError::DuplicateKey {
                path: self.path.clone(),
                profile: profile.to_owned(),
                key,
                first: first + 1,
                second: second + 1,
            });
        }
        Ok(lines)
    }

    /// The lines of each of [`KEYS`] in `profile`, if the profile exists.
    pub(super) fn entries(&self, profile: &str) -> Result<Option<[Vec<usize>; 4]>> {
        // configparser gives every profile the keys of its [DEFAULT] section,
        // also a profile rekey adds, and a key of it that breaks one breaks all.
        if let Some(sec) = self.section(DEFAULT_SECTION)? {
            if let Some(Kind::Entry { key, .. }) = sec.map(|i| &self.kinds[i]).find(|k| matches!(k, Kind::Entry { .. })) {
                return Err(CredentialsFileError::DefaultSection { path: self.path.clone(), key: key.clone() });
            }
        }
        let Some(sec) = self.section(profile)? else {
            return Ok(None);
        };
        let mut out: [Vec<usize>; 4] = Default::default();
        for (lines, key) in out.iter_mut().zip(KEYS) {
            *lines = self.entry(&sec, profile, key)?;
        }
        Ok(Some(out))
    }

    /// The values of [`KEYS`] in `profile`, as the AWS CLI reads them:
    /// a value's blank lines count, up to its last continuation line.
    pub(super) fn values(&self, profile: &str) -> Result<[Option<String>; 4]> {
        let entries = self.entries(profile)?.unwrap_or_default();
        Ok(entries.map(|lines| {
            let (&head, &last) = (lines.first()?, lines.last()?);
            let (_, value) = split_key(content(&self.lines[head]))?;
            let mut value = value.trim().to_owned();
            for i in head + 1..=last {
                let text = content(&self.lines[i]).trim();
                if lines.contains(&i) || text.is_empty() {
                    value.push('\n');
                    value.push_str(text);
                }
            }
            Some(value)
        }))
    }

    /// The text (without line endings) of each of [`KEYS`]' lines in `profile`.
    fn entry_lines(&self, profile: &str) -> Result<Option<[Vec<String>; 4]>> {
        let texts = |lines: Vec<usize>| lines.iter().map(|&i| content(&self.lines[i]).to_owned()).collect();
        Ok(self.entries(profile)?.map(|entries| entries.map(texts)))
    }

    /// The line setting `key` to `value`, spelled and spaced like the current one if any.
    fn line_for(&self, profile: &str, key: &'static str, value: &str) -> Result<String> {
        let head = match self.section(profile)? {
            Some(sec) => self.entry(&sec, profile, key)?.first().copied(),
            None => None,
        };
        let current = head.and_then(|i| split_key(content(&self.lines[i])));
        Ok(match current {
            Some((name, old)) => format!("{name}{}{value}", &old[..old.len() - old.trim_start().len()]),
            None => format!("{key} = {value}"),
        })
    }

    /// Replaces the lines of `key` in `profile` with `new` (texts without line
    /// endings; empty to remove the key). A key not yet there goes after the
    /// section's last key; a profile not yet there is appended.
    fn put(&mut self, profile: &str, key: &'static str, new: &[String]) -> Result<()> {
        let Some(sec) = self.section(profile)? else {
            if new.is_empty() {
                return Ok(());
            }
            self.insert(self.lines.len(), &format!("[{profile}]"));
            self.rescan()?;
            return self.put(profile, key, new);
        };
        let old = self.entry(&sec, profile, key)?;
        let at = match old.first() {
            Some(&i) => i,
            None => sec
                .clone()
                .rev()
                .find(|&i| matches!(self.kinds[i], Kind::Entry { .. }))
                .map_or(sec.start + 1, |i| i + 1),
        };
        for &i in old.iter().rev() {
            self.remove(i);
        }
        for (n, text) in new.iter().enumerate() {
            self.insert(at + n, text);
        }
        self.rescan()
    }

    /// Removes `profile`'s section if nothing but blank lines follow its header.
    fn remove_section_if_empty(&mut self, profile: &str) -> Result<()> {
        if let Some(sec) = self.section(profile)? {
            if (sec.start + 1..sec.end).all(|i| self.lines[i].trim().is_empty()) {
                for i in sec.rev() {
                    self.remove(i);
                }
                self.rescan()?;
            }
        }
        Ok(())
    }

    fn insert(&mut self, i: usize, text: &str) {
        self.lines.insert(i, format!("{text}{}", self.eol));
    }

    fn remove(&mut self, i: usize) {
        self.lines.remove(i);
    }
}

/// Classifies lines like Python's `configparser` (as used by the AWS CLI):
/// full-line `#`/`;` comments, `[name]` headers, `key = value` or `key: value`
/// split at the first delimiter, and lines indented deeper than the last
/// key's line continuing its value (as in nested `s3 =` settings), even past
/// blank lines and comments. Errors are (line number, problem).
fn scan(lines: &[String]) -> std::result::Result<Vec<Kind>, (usize, &'static str)> {
    let mut kinds = Vec::with_capacity(lines.len());
    let mut in_section = false;
    let mut open: Option<(String, usize)> = None;
    for (i, line) in lines.iter().enumerate() {
        let text = content(line);
        // Python reads a lone carriage return as a line break, and some
        // control characters as spaces: such a file could mean one thing to
        // rekey and another to the AWS CLI.
        if text.contains(|c: char| c.is_control() && c != '\t') {
            return Err((i + 1, "a control character (other than tab) inside a line"));
        }
        let trimmed = text.trim();
        // In characters, as Python counts it.
        let indent = text.chars().take_while(|c| c.is_whitespace()).count();
        let kind = if trimmed.is_empty() || trimmed.starts_with(['#', ';']) {
            Kind::Filler
        } else if let Some((key, _)) = open.as_ref().filter(|(_, at)| indent > *at) {
            Kind::Entry { key: key.clone(), head: false }
        } else if let Some(name) = header(trimmed) {
            in_section = true;
            open = None;
            Kind::Header(name.to_owned())
        } else if !in_section {
            return Err((i + 1, "a line before the first [profile] header"));
        } else {
            let (key, _) = split_key(trimmed)
                .ok_or((i + 1, "neither a [profile] header, a comment nor a key = value line"))?;
            let key = key[..key.len() - 1].trim().to_lowercase();
            if key.is_empty() {
                return Err((i + 1, "a value without a key name"));
            }
            open = Some((key.clone(), indent));
            Kind::Entry { key, head: true }
        };
        kinds.push(kind);
    }
    Ok(kinds)
}

/// The name of a `[name]` header line, as configparser's `\[(.+)\]`: not
/// trimmed, so `[ x ]` is profile " x " to the AWS CLI, not "x".
fn header(trimmed: &str) -> Option<&str> {
    let inner = trimmed.strip_prefix('[')?;
    let end = inner.rfind(']').filter(|&end| end > 0)?;
    Some(&inner[..end])
}

/// Splits a key line into the part up to and including its delimiter, and the rest.
fn split_key(text: &str) -> Option<(&str, &str)> {
    let at = text.find(['=', ':'])? + 1;
    Some(text.split_at(at))
}

/// A line without its line ending.
fn content(line: &str) -> &str {
    let line = line.strip_suffix('\n').unwrap_or(line);
    line.strip_suffix('\r').unwrap_or(line)
}

pub(super) fn valid_profile(profile: &str) -> Result<()> {
    let bad = |c: char| c.is_control() || c == '[' || c == ']';
    if profile.is_empty() || profile.trim() != profile || profile.contains(bad) || profile == DEFAULT_SECTION {
        return Err(CredentialsFileError::InvalidProfile { profile: profile.to_owned() });
    }
    Ok(())
}
