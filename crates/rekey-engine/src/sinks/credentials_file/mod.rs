//! The `credentials-file` sink: delivers a new access key into one profile of
//! an AWS shared credentials file (`~/.aws/credentials`) and can undo that.
//!
//! The application reads this file, so every write is atomic and changes only
//! the target profile's key lines: every other byte stays as it was. The file
//! is handled as lines, parsed with the rules of Python's `configparser`
//! (which the AWS CLI uses), so rekey sees the same profiles and keys as the
//! CLI does. No error message ever quotes a line of the file, since any line
//! may hold a secret.

use super::{Delivered, Restored};
use rekey_core::{AccessKeyId, Credentials, Secret};
use std::ffi::OsString;
use std::fs::{self, File, Metadata};
use std::io::{self, Write};
use std::ops::Range;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

const KEY_ID: &str = "aws_access_key_id";
const SECRET: &str = "aws_secret_access_key";
/// The keys rekey owns in a profile. botocore reads a session token under
/// either of the last two names; with a long-term key it breaks signing.
const KEYS: [&str; 4] = [KEY_ID, SECRET, "aws_session_token", "aws_security_token"];

#[derive(Debug, thiserror::Error)]
pub enum CredentialsFileError {
    #[error("profile name {profile:?} cannot be used in a credentials file: it must be non-empty, without surrounding spaces, brackets or line breaks")]
    InvalidProfile { profile: String },
    #[error("the {what} to deliver into profile [{profile}] of {} is empty, has surrounding spaces or spans several lines", path.display())]
    InvalidValue { path: PathBuf, profile: String, what: &'static str },
    #[error("the directory {} of the credentials file does not exist or is not a directory", dir.display())]
    MissingDirectory { dir: PathBuf },
    #[error("rekey cannot create files in {}, so it could not replace the credentials file there: {source}", dir.display())]
    DirectoryNotWritable { dir: PathBuf, source: io::Error },
    #[error("{} is not a regular file", path.display())]
    NotAFile { path: PathBuf },
    #[error("cannot {action} {}: {source}", path.display())]
    Io { action: &'static str, path: PathBuf, source: io::Error },
    #[error("cannot give a new copy of {} the owner of the current one, so the application could lose access to it: {source}", path.display())]
    Owner { path: PathBuf, source: io::Error },
    #[error("{} line {line} is not valid credentials-file syntax: {problem}", path.display())]
    Syntax { path: PathBuf, line: usize, problem: &'static str },
    #[error("profile [{profile}] appears twice in {} (lines {first} and {second}); rekey will not guess which one to change", path.display())]
    DuplicateProfile { path: PathBuf, profile: String, first: usize, second: usize },
    #[error("profile [{profile}] in {} sets {key} twice (lines {first} and {second}); rekey will not guess which one counts", path.display())]
    DuplicateKey { path: PathBuf, profile: String, key: &'static str, first: usize, second: usize },
    #[error("rekey could not rewrite profile [{profile}] of {} without changing what it means (unusual indentation?); the file was left unchanged", path.display())]
    Unsafe { path: PathBuf, profile: String },
}

type Result<T> = std::result::Result<T, CredentialsFileError>;

/// Preflight, before any AWS change: the directory exists and rekey can create
/// a file there (try creating and removing a temp file), and the file, if it
/// exists, is a readable regular file that parses. Changes nothing.
pub fn check(path: &Path, profile: &str) -> Result<()> {
    valid_profile(profile)?;
    let path = resolve(path)?;
    let dir = parent(&path);
    if !dir.is_dir() {
        return Err(CredentialsFileError::MissingDirectory { dir: dir.to_owned() });
    }
    let not_writable = |source| CredentialsFileError::DirectoryNotWritable { dir: dir.to_owned(), source };
    let probe = temp_file_in(dir).map_err(not_writable)?;
    if let Some((meta, doc)) = load(&path)? {
        // The same fchown that `deliver` will need: fails now rather than after the AWS change.
        match_owner(probe.as_file(), &meta)
            .map_err(|source| CredentialsFileError::Owner { path: path.clone(), source })?;
        doc.entries(profile)?;
    }
    probe.close().map_err(not_writable)
}

/// Writes `creds` into `profile`. Idempotent: if the profile already holds
/// them, returns [`Delivered::AlreadyThere`] and touches nothing, so the backup
/// keeps the content from before the first delivery of this key. Otherwise
/// saves the current file as `FILE.rekey-bak` (0600), replaces the profile's
/// key lines in place (adding a missing one after the section's last key,
/// removing a session token) or appends the profile, and atomically replaces
/// the file with permissions no wider than before and at most 0600.
pub fn deliver(path: &Path, profile: &str, creds: &Credentials) -> Result<Delivered> {
    valid_profile(profile)?;
    let path = resolve(path)?;
    let id = creds.access_key_id.as_str();
    let secret = creds.secret_access_key.expose();
    for (what, value) in [("access key id", id), ("secret access key", secret)] {
        if value.is_empty() || value.trim() != value || value.chars().any(char::is_control) {
            let (path, profile) = (path.clone(), profile.to_owned());
            return Err(CredentialsFileError::InvalidValue { path, profile, what });
        }
    }
    let current = load(&path)?;
    let mut doc = match &current {
        Some((_, doc)) => doc.clone(),
        None => Doc::new(&path, String::new())?,
    };
    let [now_id, now_secret, ..] = doc.values(profile)?;
    if now_id.as_deref() == Some(id) && now_secret.as_deref() == Some(secret) {
        return Ok(Delivered::AlreadyThere);
    }

    for (key, value) in [(KEY_ID, id), (SECRET, secret)] {
        let line = doc.line_for(profile, key, value)?;
        doc.put(profile, key, &[line])?;
    }
    for key in &KEYS[2..] {
        doc.put(profile, key, &[])?;
    }
    let wanted = [Some(id.to_owned()), Some(secret.to_owned()), None, None];
    if doc.values(profile)? != wanted {
        return Err(CredentialsFileError::Unsafe { path, profile: profile.to_owned() });
    }

    match &current {
        Some((meta, old)) => {
            write_atomic(&backup_path(&path), &old.text(), 0o600, None)?;
            write_atomic(&path, &doc.text(), meta.mode() & 0o600, Some(meta))?;
        }
        None => write_atomic(&path, &doc.text(), 0o600, None)?,
    }
    Ok(Delivered::Now)
}

/// Reads the profile's credentials back (for crash recovery), if present.
pub fn read_back(path: &Path, profile: &str) -> Result<Option<Credentials>> {
    valid_profile(profile)?;
    let Some((_, doc)) = load(&resolve(path)?)? else {
        return Ok(None);
    };
    Ok(match doc.values(profile)? {
        [Some(id), Some(secret), ..] => {
            Some(Credentials { access_key_id: AccessKeyId::new(id), secret_access_key: Secret::new(secret) })
        }
        _ => None,
    })
}

/// Undoes a delivery of `new_key_id`, only if the profile still holds it
/// (otherwise someone else changed it since, and their change wins). Splices
/// the profile's key lines from `FILE.rekey-bak` into the current file, so
/// changes made to other profiles since the delivery are kept; without a
/// backup or without the profile in it, removes the key lines, then the
/// section if empty, then the file if empty and there was no backup. Keeps
/// the backup.
pub fn restore(path: &Path, profile: &str, new_key_id: &AccessKeyId) -> Result<Restored> {
    valid_profile(profile)?;
    let path = resolve(path)?;
    let Some((meta, mut doc)) = load(&path)? else {
        return Ok(Restored::NothingToRestore);
    };
    if doc.values(profile)?[0].as_deref() != Some(new_key_id.as_str()) {
        return Ok(Restored::NothingToRestore);
    }
    let backup = load(&backup_path(&path))?.map(|(_, doc)| doc);
    let (old_lines, wanted) = match &backup {
        Some(backup) => (backup.entry_lines(profile)?, backup.values(profile)?),
        None => (None, Default::default()),
    };

    for (i, key) in KEYS.into_iter().enumerate() {
        let lines = old_lines.as_ref().map_or(&[][..], |old| &old[i][..]);
        doc.put(profile, key, lines)?;
    }
    if old_lines.is_none() {
        doc.remove_section_if_empty(profile)?;
    }
    if doc.values(profile)? != wanted {
        return Err(CredentialsFileError::Unsafe { path, profile: profile.to_owned() });
    }

    let text = doc.text();
    if backup.is_none() && text.trim().is_empty() {
        // rekey created this file: undoing that means it no longer exists.
        fs::remove_file(&path).map_err(|source| io_error("remove", &path, source))?;
        sync_dir(parent(&path));
    } else {
        write_atomic(&path, &text, meta.mode() & 0o600, Some(&meta))?;
    }
    Ok(Restored::Restored)
}

/// Removes `FILE.rekey-bak` once the rotation is finished (it holds a dead
/// key). A missing backup is fine.
pub fn discard_backup(path: &Path) -> Result<()> {
    let backup = backup_path(&resolve(path)?);
    match fs::remove_file(&backup) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_error("remove", &backup, e)),
        _ => Ok(()),
    }
}

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
struct Doc {
    path: PathBuf,
    lines: Vec<String>,
    kinds: Vec<Kind>,
    /// The file's line ending, used for the lines rekey writes.
    eol: &'static str,
}

impl Doc {
    fn new(path: &Path, text: String) -> Result<Doc> {
        let lines: Vec<String> = text.split_inclusive('\n').map(String::from).collect();
        let eol = if lines.first().is_some_and(|l| l.ends_with("\r\n")) { "\r\n" } else { "\n" };
        let mut doc = Doc { path: path.to_owned(), lines, kinds: Vec::new(), eol };
        doc.rescan()?;
        Ok(doc)
    }

    fn text(&self) -> String {
        self.lines.concat()
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
    fn entries(&self, profile: &str) -> Result<Option<[Vec<usize>; 4]>> {
        let Some(sec) = self.section(profile)? else {
            return Ok(None);
        };
        let mut out: [Vec<usize>; 4] = Default::default();
        for (lines, key) in out.iter_mut().zip(KEYS) {
            *lines = self.entry(&sec, profile, key)?;
        }
        Ok(Some(out))
    }

    /// The values of [`KEYS`] in `profile`, as the AWS CLI reads them.
    fn values(&self, profile: &str) -> Result<[Option<String>; 4]> {
        let entries = self.entries(profile)?.unwrap_or_default();
        Ok(entries.map(|lines| {
            let (&head, rest) = lines.split_first()?;
            let (_, value) = split_key(content(&self.lines[head]))?;
            let mut value = value.trim().to_owned();
            for &i in rest {
                value.push('\n');
                value.push_str(content(&self.lines[i]).trim());
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

    /// Inserts a line at `i`. At the end of a file lacking a final newline,
    /// the new line becomes the one lacking it, so that property is kept.
    fn insert(&mut self, i: usize, text: &str) {
        let at_end = i == self.lines.len();
        match self.lines.last_mut() {
            Some(last) if at_end && !last.ends_with('\n') => {
                last.push_str(self.eol);
                self.lines.push(text.to_owned());
            }
            _ => self.lines.insert(i, format!("{text}{}", self.eol)),
        }
    }

    /// Removes line `i`, keeping a missing final newline missing (see `insert`).
    fn remove(&mut self, i: usize) {
        let line = self.lines.remove(i);
        if i == self.lines.len() && !line.ends_with('\n') {
            if let Some(last) = self.lines.last_mut() {
                last.truncate(content(last).len());
            }
        }
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
        let trimmed = text.trim();
        let indent = text.len() - text.trim_start().len();
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

/// The name of a `[name]` header line (trimmed), as configparser's `\[(.+)\]`.
fn header(trimmed: &str) -> Option<&str> {
    let inner = trimmed.strip_prefix('[')?;
    let end = inner.rfind(']').filter(|&end| end > 0)?;
    Some(inner[..end].trim())
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

fn valid_profile(profile: &str) -> Result<()> {
    let bad = |c: char| c.is_control() || c == '[' || c == ']';
    if profile.is_empty() || profile.trim() != profile || profile.contains(bad) {
        return Err(CredentialsFileError::InvalidProfile { profile: profile.to_owned() });
    }
    Ok(())
}

/// Follows a symbolic link, so a linked credentials file (dotfiles) is
/// updated where it lives instead of the link being replaced by a file.
fn resolve(path: &Path) -> Result<PathBuf> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_symlink() => {
            fs::canonicalize(path).map_err(|e| io_error("follow the symbolic link", path, e))
        }
        _ => Ok(path.to_owned()),
    }
}

fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}

fn backup_path(path: &Path) -> PathBuf {
    let mut name = OsString::from(path.as_os_str());
    name.push(".rekey-bak");
    PathBuf::from(name)
}

fn io_error(action: &'static str, path: &Path, source: io::Error) -> CredentialsFileError {
    CredentialsFileError::Io { action, path: path.to_owned(), source }
}

/// Reads and parses the file, or `None` if it does not exist.
fn load(path: &Path) -> Result<Option<(Metadata, Doc)>> {
    let meta = match fs::metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_error("read", path, e)),
        Ok(meta) => meta,
    };
    if !meta.is_file() {
        return Err(CredentialsFileError::NotAFile { path: path.to_owned() });
    }
    let bytes = fs::read(path).map_err(|e| io_error("read", path, e))?;
    let text = String::from_utf8(bytes).map_err(|e| {
        let line = 1 + e.as_bytes()[..e.utf8_error().valid_up_to()].iter().filter(|&&b| b == b'\n').count();
        CredentialsFileError::Syntax { path: path.to_owned(), line, problem: "not UTF-8 text" }
    })?;
    Ok(Some((meta, Doc::new(path, text)?)))
}

fn temp_file_in(dir: &Path) -> io::Result<tempfile::NamedTempFile> {
    // tempfile creates it 0600, so a secret is never readable by others.
    tempfile::Builder::new().prefix(".rekey-").tempfile_in(dir)
}

/// Gives `file` the owner of `like`. If rekey runs as root for another user's
/// file, a root-owned 0600 copy would lock the application out.
fn match_owner(file: &File, like: &Metadata) -> io::Result<()> {
    let have = file.metadata()?;
    if have.uid() != like.uid() {
        std::os::unix::fs::fchown(file, Some(like.uid()), Some(like.gid()))?;
    } else if have.gid() != like.gid() {
        // Best effort: with permissions at most 0600 the group grants nothing.
        let _ = std::os::unix::fs::fchown(file, None, Some(like.gid()));
    }
    Ok(())
}

/// Temp file in the same directory, fsync, rename: readers see the old file
/// or the new one, never a part.
fn write_atomic(path: &Path, text: &str, mode: u32, owner: Option<&Metadata>) -> Result<()> {
    let dir = parent(path);
    let mut tmp = temp_file_in(dir)
        .map_err(|source| CredentialsFileError::DirectoryNotWritable { dir: dir.to_owned(), source })?;
    let write = |tmp: &mut tempfile::NamedTempFile| -> io::Result<()> {
        tmp.write_all(text.as_bytes())?;
        tmp.as_file().set_permissions(fs::Permissions::from_mode(mode))
    };
    write(&mut tmp).map_err(|e| io_error("write a new copy of", path, e))?;
    if let Some(owner) = owner {
        match_owner(tmp.as_file(), owner)
            .map_err(|source| CredentialsFileError::Owner { path: path.to_owned(), source })?;
    }
    tmp.as_file().sync_all().map_err(|e| io_error("write a new copy of", path, e))?;
    tmp.persist(path).map_err(|e| io_error("replace", path, e.error))?;
    sync_dir(dir);
    Ok(())
}

/// Makes a rename durable. Best effort: the new file is already in place,
/// and some file systems refuse to sync a directory.
fn sync_dir(dir: &Path) {
    if let Ok(dir) = File::open(dir) {
        let _ = dir.sync_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tempfile::TempDir;

    /// Comments, blank lines, three profiles, odd spacing, extra keys, a
    /// header with inner spaces and no final newline.
    const ORIGINAL: &str = "\
# managed by hand
; second comment style

[default]
aws_access_key_id=AKIAOLDDEFAULT
aws_secret_access_key   =   oldDefaultSecret
region = eu-west-1

[app]
region=us-east-1
aws_access_key_id = AKIAOLDAPP
# the app's key
aws_secret_access_key = oldAppSecret
output = json

[ other ]
aws_access_key_id = AKIAOTHER
aws_secret_access_key = otherSecret";

    fn creds(id: &str, secret: &str) -> Credentials {
        Credentials { access_key_id: AccessKeyId::new(id), secret_access_key: Secret::new(secret) }
    }

    fn new_creds() -> Credentials {
        creds("AKIANEW", "newSecret")
    }

    fn setup(content: Option<&str>, mode: u32) -> (TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("credentials");
        if let Some(content) = content {
            fs::write(&path, content).unwrap();
            fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
        }
        (dir, path)
    }

    fn read(path: &Path) -> String {
        fs::read_to_string(path).unwrap()
    }

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().mode() & 0o777
    }

    fn bak(path: &Path) -> PathBuf {
        backup_path(path)
    }

    #[test]
    fn deliver_changes_only_the_two_value_lines() {
        // (profile, [(0-based line, old value, new value)])
        let cases = [
            ("default", [(4, "AKIAOLDDEFAULT", "AKIANEW"), (5, "oldDefaultSecret", "newSecret")]),
            ("app", [(10, "AKIAOLDAPP", "AKIANEW"), (12, "oldAppSecret", "newSecret")]),
            ("other", [(16, "AKIAOTHER", "AKIANEW"), (17, "otherSecret", "newSecret")]),
        ];
        for eol in ["\n", "\r\n"] {
            for (profile, changes) in &cases {
                let original = ORIGINAL.replace('\n', eol);
                let (_dir, path) = setup(Some(&original), 0o644);
                assert_eq!(deliver(&path, profile, &new_creds()).unwrap(), Delivered::Now);

                let after = read(&path);
                let before: Vec<&str> = original.split_inclusive('\n').collect();
                let after: Vec<&str> = after.split_inclusive('\n').collect();
                assert_eq!(before.len(), after.len(), "{profile} {eol:?}");
                for (i, (b, a)) in before.iter().zip(&after).enumerate() {
                    match changes.iter().find(|c| c.0 == i) {
                        Some((_, old, new)) => assert_eq!(*a, b.replace(old, new), "{profile} line {i}"),
                        None => assert_eq!(a, b, "{profile} line {i}"),
                    }
                }
                assert_eq!(mode(&path), 0o600);
                assert_eq!(read(&bak(&path)), original);
                assert_eq!(mode(&bak(&path)), 0o600);
            }
        }
    }

    #[test]
    fn deliver_never_widens_permissions() {
        let (_dir, path) = setup(Some(ORIGINAL), 0o400);
        deliver(&path, "app", &new_creds()).unwrap();
        assert_eq!(mode(&path), 0o400);
        assert_eq!(mode(&bak(&path)), 0o600);
    }

    #[test]
    fn absent_profile_is_appended() {
        let (_dir, path) = setup(Some(ORIGINAL), 0o600);
        deliver(&path, "new", &new_creds()).unwrap();
        // The original lacked a final newline: it gets a separating one, and
        // the file still ends without one.
        let added = "\n[new]\naws_access_key_id = AKIANEW\naws_secret_access_key = newSecret";
        assert_eq!(read(&path), format!("{ORIGINAL}{added}"));

        let crlf = format!("{}\r\n", ORIGINAL.replace('\n', "\r\n"));
        let (_dir, path) = setup(Some(&crlf), 0o600);
        deliver(&path, "new", &new_creds()).unwrap();
        let added = "[new]\r\naws_access_key_id = AKIANEW\r\naws_secret_access_key = newSecret\r\n";
        assert_eq!(read(&path), format!("{crlf}{added}"));
    }

    #[test]
    fn absent_file_is_created_0600_without_backup() {
        let (_dir, path) = setup(None, 0);
        assert_eq!(deliver(&path, "app", &new_creds()).unwrap(), Delivered::Now);
        assert_eq!(read(&path), "[app]\naws_access_key_id = AKIANEW\naws_secret_access_key = newSecret\n");
        assert_eq!(mode(&path), 0o600);
        assert!(!bak(&path).exists());
    }

    #[test]
    fn missing_key_lines_are_added_after_the_last_key() {
        let (_dir, path) =
            setup(Some("[app]\nregion = x\naws_access_key_id = AKIAOLD\n# note\n\n[b]\nk = v\n"), 0o600);
        deliver(&path, "app", &new_creds()).unwrap();
        assert_eq!(
            read(&path),
            "[app]\nregion = x\naws_access_key_id = AKIANEW\naws_secret_access_key = newSecret\n# note\n\n[b]\nk = v\n"
        );

        let (_dir, path) = setup(Some("[app]\nregion = x\n\n[b]\nk = v\n"), 0o600);
        deliver(&path, "app", &new_creds()).unwrap();
        assert_eq!(
            read(&path),
            "[app]\nregion = x\naws_access_key_id = AKIANEW\naws_secret_access_key = newSecret\n\n[b]\nk = v\n"
        );
    }

    #[test]
    fn session_token_is_removed_and_restored() {
        let original = "[app]\naws_access_key_id = ASIAOLD\naws_secret_access_key = s\naws_session_token = tok\nregion = r\n\n[b]\naws_security_token = keep\n";
        let (_dir, path) = setup(Some(original), 0o600);
        deliver(&path, "app", &new_creds()).unwrap();
        assert_eq!(
            read(&path),
            "[app]\naws_access_key_id = AKIANEW\naws_secret_access_key = newSecret\nregion = r\n\n[b]\naws_security_token = keep\n"
        );
        assert_eq!(restore(&path, "app", &AccessKeyId::new("AKIANEW")).unwrap(), Restored::Restored);
        // A line absent from the current profile comes back after its last key.
        assert_eq!(
            read(&path),
            original
                .replace("aws_session_token = tok\nregion = r\n", "region = r\naws_session_token = tok\n")
        );

        // The token is the last line and has no final newline.
        let original =
            "[app]\naws_access_key_id = ASIAOLD\naws_secret_access_key = s\naws_security_token = tok";
        let (_dir, path) = setup(Some(original), 0o600);
        deliver(&path, "app", &new_creds()).unwrap();
        assert_eq!(read(&path), "[app]\naws_access_key_id = AKIANEW\naws_secret_access_key = newSecret");
        restore(&path, "app", &AccessKeyId::new("AKIANEW")).unwrap();
        assert_eq!(read(&path), original);
    }

    #[test]
    fn continuation_lines_are_not_keys() {
        let original = "[app]\ns3 =\n  aws_access_key_id = NOTAKEY\n\n  max_concurrent_requests = 10\naws_access_key_id = AKIAOLD\naws_secret_access_key = old\n";
        let (_dir, path) = setup(Some(original), 0o600);
        assert_eq!(read_back(&path, "app").unwrap(), Some(creds("AKIAOLD", "old")));
        deliver(&path, "app", &new_creds()).unwrap();
        assert_eq!(read(&path), original.replace("AKIAOLD", "AKIANEW").replace("= old", "= newSecret"));
    }

    #[test]
    fn deliver_twice_keeps_the_original_backup() {
        let (_dir, path) = setup(Some(ORIGINAL), 0o600);
        assert_eq!(deliver(&path, "app", &new_creds()).unwrap(), Delivered::Now);
        let delivered = read(&path);
        assert_eq!(deliver(&path, "app", &new_creds()).unwrap(), Delivered::AlreadyThere);
        assert_eq!(read(&path), delivered);
        assert_eq!(read(&bak(&path)), ORIGINAL);
    }

    #[test]
    fn read_back_returns_delivered_credentials() {
        let (_dir, path) = setup(Some(ORIGINAL), 0o600);
        deliver(&path, "app", &new_creds()).unwrap();
        assert_eq!(read_back(&path, "app").unwrap(), Some(new_creds()));
        assert_eq!(read_back(&path, "other").unwrap(), Some(creds("AKIAOTHER", "otherSecret")));
        assert_eq!(read_back(&path, "absent").unwrap(), None);
        assert_eq!(read_back(&path.with_file_name("nope"), "app").unwrap(), None);
    }

    #[test]
    fn restore_keeps_other_profiles_changed_since() {
        let (_dir, path) = setup(Some(ORIGINAL), 0o600);
        deliver(&path, "app", &new_creds()).unwrap();
        let edited = read(&path).replace("region = eu-west-1", "region = us-west-2");
        fs::write(&path, &edited).unwrap();

        assert_eq!(restore(&path, "app", &AccessKeyId::new("AKIANEW")).unwrap(), Restored::Restored);
        assert_eq!(read(&path), ORIGINAL.replace("region = eu-west-1", "region = us-west-2"));
        assert_eq!(mode(&path), 0o600);
        assert_eq!(read(&bak(&path)), ORIGINAL, "the backup is kept");
    }

    #[test]
    fn restore_leaves_a_key_changed_by_someone_else() {
        let (_dir, path) = setup(Some(ORIGINAL), 0o600);
        deliver(&path, "app", &new_creds()).unwrap();
        let changed = read(&path).replace("AKIANEW", "AKIATHEIRS");
        fs::write(&path, &changed).unwrap();
        assert_eq!(restore(&path, "app", &AccessKeyId::new("AKIANEW")).unwrap(), Restored::NothingToRestore);
        assert_eq!(read(&path), changed);
    }

    #[test]
    fn restore_removes_a_created_file() {
        let (_dir, path) = setup(None, 0);
        deliver(&path, "app", &new_creds()).unwrap();
        assert_eq!(restore(&path, "app", &AccessKeyId::new("AKIANEW")).unwrap(), Restored::Restored);
        assert!(!path.exists());
        assert_eq!(restore(&path, "app", &AccessKeyId::new("AKIANEW")).unwrap(), Restored::NothingToRestore);
    }

    #[test]
    fn restore_removes_an_appended_profile() {
        for original in [ORIGINAL.to_owned(), format!("{ORIGINAL}\n")] {
            let (_dir, path) = setup(Some(&original), 0o600);
            deliver(&path, "new", &new_creds()).unwrap();
            assert_eq!(restore(&path, "new", &AccessKeyId::new("AKIANEW")).unwrap(), Restored::Restored);
            assert_eq!(read(&path), original);
        }
    }

    #[test]
    fn discard_backup_removes_it_and_tolerates_absence() {
        let (_dir, path) = setup(Some(ORIGINAL), 0o600);
        deliver(&path, "app", &new_creds()).unwrap();
        discard_backup(&path).unwrap();
        assert!(!bak(&path).exists());
        discard_backup(&path).unwrap();
        assert_eq!(read_back(&path, "app").unwrap(), Some(new_creds()));
    }

    #[test]
    fn a_symlinked_file_is_updated_where_it_lives() {
        let (dir, real) = setup(Some(ORIGINAL), 0o600);
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        deliver(&link, "app", &new_creds()).unwrap();
        assert!(fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
        assert_eq!(read_back(&real, "app").unwrap(), Some(new_creds()));
        assert_eq!(read(&bak(&real)), ORIGINAL);
    }

    #[test]
    fn check_accepts_a_good_file_or_none_and_changes_nothing() {
        let (dir, path) = setup(Some(ORIGINAL), 0o600);
        check(&path, "app").unwrap();
        check(&path, "absent").unwrap();
        check(&dir.path().join("not-yet"), "app").unwrap();
        let names: Vec<_> = fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, ["credentials"]);
        assert_eq!(read(&path), ORIGINAL);
    }

    #[test]
    fn check_rejects_a_missing_directory() {
        let (dir, _) = setup(None, 0);
        let err = check(&dir.path().join("nope/credentials"), "app").unwrap_err();
        assert!(matches!(err, CredentialsFileError::MissingDirectory { .. }), "{err}");
        assert!(err.to_string().contains(&dir.path().join("nope").display().to_string()), "{err}");
    }

    #[test]
    fn check_rejects_a_read_only_directory() {
        let (dir, path) = setup(None, 0);
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o500)).unwrap();
        // Root ignores directory permissions: then there is nothing to assert.
        let writable = File::create(dir.path().join("probe")).is_ok();
        let result = check(&path, "app");
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o700)).unwrap();
        if !writable {
            let err = result.unwrap_err();
            assert!(matches!(err, CredentialsFileError::DirectoryNotWritable { .. }), "{err}");
            assert!(err.to_string().contains(&dir.path().display().to_string()), "{err}");
        }
    }

    #[test]
    fn check_rejects_a_directory_and_bad_files() {
        let (dir, _) = setup(None, 0);
        let err = check(dir.path(), "app").unwrap_err();
        assert!(matches!(err, CredentialsFileError::NotAFile { .. }), "{err}");

        let (_dir, path) = setup(Some("[app]\nregion = x\njust words\n"), 0o600);
        let err = check(&path, "app").unwrap_err();
        assert!(matches!(err, CredentialsFileError::Syntax { line: 3, .. }), "{err}");

        let (_dir, path) = setup(Some("[app]\nk = v\n[ app ]\nk = w\n"), 0o600);
        let err = check(&path, "app").unwrap_err();
        assert!(matches!(err, CredentialsFileError::DuplicateProfile { first: 1, second: 3, .. }), "{err}");
        assert!(matches!(
            deliver(&path, "app", &new_creds()),
            Err(CredentialsFileError::DuplicateProfile { .. })
        ));
        assert_eq!(read(&path), "[app]\nk = v\n[ app ]\nk = w\n");

        let err = check(&path, "bad]name").unwrap_err();
        assert!(matches!(err, CredentialsFileError::InvalidProfile { .. }), "{err}");
    }

    #[test]
    fn errors_never_show_secrets() {
        let secret = "wJalrXUtnFEMIsecret";
        let files = [
            format!("aws_secret_access_key = {secret}\n[app]\n"),
            format!("[app]\n{secret}\n"),
            format!("[app]\naws_secret_access_key = {secret}\nAWS_SECRET_ACCESS_KEY = {secret}2\n"),
            format!("[app]\naws_secret_access_key = \u{1}{secret}\n[app]\n"),
        ];
        for file in &files {
            let (_dir, path) = setup(Some(file), 0o600);
            let errors = [
                check(&path, "app").unwrap_err(),
                deliver(&path, "app", &new_creds()).unwrap_err(),
                read_back(&path, "app").unwrap_err(),
                restore(&path, "app", &AccessKeyId::new("AKIANEW")).unwrap_err(),
            ];
            for err in errors {
                let shown = format!("{err} {err:?}");
                assert!(!shown.contains("wJalr"), "{shown}");
                assert!(shown.contains(&path.display().to_string()), "{shown}");
            }
            assert_eq!(&read(&path), file);
        }

        let (_dir, path) = setup(None, 0);
        let err = deliver(&path, "app", &creds("AKIANEW", &format!("{secret}\n[evil]"))).unwrap_err();
        let shown = format!("{err} {err:?}");
        assert!(!shown.contains("wJalr") && shown.contains("secret access key"), "{shown}");
        assert!(!path.exists());
    }
}
