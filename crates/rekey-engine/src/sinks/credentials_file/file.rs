//! File handling for the credentials-file sink. A [`Place`] is a credentials
//! file (symbolic links followed, so a linked dotfile is updated where it
//! lives) and what rekey keeps next to it, all hidden and named after it:
//!
//! - `.NAME.rekey-lock`: `flock`ed around every read-modify-write. The lock
//!   is on a file of its own because the credentials file is replaced by a
//!   rename, and it is never removed (removing a lock file races its users);
//!   it holds nothing.
//! - `.NAME.rekey-tmp-XXXXXX`: a new copy being written (0600), renamed into
//!   place. Only written under the lock, so one found by whoever takes the
//!   lock was left by a crash, and is removed then.
//! - `.NAME.rekey-restore-ROTATION-INDEX`: one rotation's copy of one
//!   profile's previous key lines (0600), until that rotation ends.

use super::doc::Doc;
use super::{CredentialsFileError, Result};
use std::ffi::OsString;
use std::fs::{self, File, Metadata};
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

pub(super) struct Place {
    pub path: PathBuf,
    dir: PathBuf,
    name: OsString,
}

/// Held while a credentials file is read, changed and replaced; dropping it
/// (closing the file) releases the lock.
#[must_use]
pub(super) struct Lock(#[allow(dead_code)] File);

/// Mode, and owner and group if they must be set: what a new copy of a file gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Perms {
    mode: u32,
    owner: Option<(u32, u32)>,
}

impl Perms {
    /// rekey's own files: only rekey's user may read them.
    pub const PRIVATE: Perms = Perms { mode: 0o600, owner: None };

    /// Exactly those of an existing file, so the application keeps its access.
    pub fn of(meta: &Metadata) -> Perms {
        Perms { mode: meta.mode() & 0o7777, owner: Some((meta.uid(), meta.gid())) }
    }

    /// A new credentials file: 0600, owned like its directory (the
    /// application's, which rekey may run as root for), not like rekey.
    pub fn new_file_in(dir: &Path) -> Result<Perms> {
        let meta = fs::metadata(dir).map_err(|e| io_error("read", dir, e))?;
        Ok(Perms { mode: 0o600, owner: Some((meta.uid(), meta.gid())) })
    }

    fn apply(self, file: &File) -> io::Result<()> {
        if let Some((uid, gid)) = self.owner {
            let have = file.metadata()?;
            let differs = |have: u32, want: u32| (have != want).then_some(want);
            if have.uid() != uid || have.gid() != gid {
                std::os::unix::fs::fchown(file, differs(have.uid(), uid), differs(have.gid(), gid))?;
            }
        }
        // After the chown, which clears set-id bits.
        file.set_permissions(fs::Permissions::from_mode(self.mode))
    }
}

impl Place {
    pub fn new(path: &Path) -> Result<Place> {
        let path = match fs::symlink_metadata(path) {
            Ok(link) if link.file_type().is_symlink() => {
                let target = fs::canonicalize(path).map_err(|e| io_error("follow the symbolic link", path, e))?;
                let owner = fs::metadata(&target).map_err(|e| io_error("read", &target, e))?.uid();
                if owner != link.uid() {
                    return Err(CredentialsFileError::ForeignLink { link: path.to_owned(), target, link_owner: link.uid(), target_owner: owner });
                }
                target
            }
            _ => path.to_owned(),
        };
        let dir = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.to_owned(),
            _ => PathBuf::from("."),
        };
        let name = path.file_name().map(OsString::from).ok_or_else(|| CredentialsFileError::NotAFile { path: path.clone() })?;
        Ok(Place { path, dir, name })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `.NAME.<what>` in the file's directory.
    fn sidecar(&self, what: &str) -> PathBuf {
        let mut name = OsString::from(".");
        name.push(&self.name);
        name.push(".");
        name.push(what);
        self.dir.join(name)
    }

    fn temp_prefix(&self) -> OsString {
        // invariant: a sidecar is a name joined to a directory
        self.sidecar("rekey-tmp-").file_name().expect("a file name").to_owned()
    }

    /// Where `rotation_id` keeps sink `index`'s copy of the profile's previous lines.
    pub fn restore_copy(&self, rotation_id: &str, index: usize) -> PathBuf {
        let safe: String = rotation_id.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect();
        self.sidecar(&format!("rekey-restore-{safe}-{index}"))
    }

    /// Takes the file's lock (waiting for another writer to finish), then
    /// removes the temp files a crash left behind.
    pub fn lock(&self) -> Result<Lock> {
        let path = self.sidecar("rekey-lock");
        // Read-only is enough for flock, so another user can lock it too.
        let file = match File::open(&path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::OpenOptions::new().write(true).create(true).truncate(false).mode(0o644).open(&path)
            }
            opened => opened,
        }
        .map_err(|source| CredentialsFileError::DirectoryNotWritable { dir: self.dir.clone(), source })?;
        // SAFETY: flock(2) on a descriptor this function owns; no memory is involved.
        while unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(io_error("lock", &path, e));
            }
        }
        let lock = Lock(file);
        self.remove_stale_temps()?;
        Ok(lock)
    }

    fn remove_stale_temps(&self) -> Result<()> {
        let prefix = self.temp_prefix();
        let entries = fs::read_dir(&self.dir).map_err(|e| io_error("list", &self.dir, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| io_error("list", &self.dir, e))?;
            if entry.file_name().as_bytes().starts_with(prefix.as_bytes()) {
                remove(&entry.path())?;
            }
        }
        Ok(())
    }

    fn temp_file(&self) -> Result<tempfile::NamedTempFile> {
        // tempfile creates it 0600, so a secret is never readable by others.
        tempfile::Builder::new()
            .prefix(&self.temp_prefix())
            .tempfile_in(&self.dir)
            .map_err(|source| CredentialsFileError::DirectoryNotWritable { dir: self.dir.clone(), source })
    }

    /// Preflight: a directory anyone may write to lets anyone replace what
    /// rekey writes (the sticky bit protects names, not a file's first
    /// creation); a read-only one would fail the delivery after the new key
    /// exists.
    pub fn refuse_unsafe_directory(&self) -> Result<()> {
        let meta = fs::metadata(&self.dir).map_err(|e| io_error("read", &self.dir, e))?;
        if meta.mode() & 0o002 != 0 {
            return Err(CredentialsFileError::SharedDirectory { dir: self.dir.clone() });
        }
        let path = std::ffi::CString::new(self.dir.as_os_str().as_bytes()).map_err(|e| io_error("read", &self.dir, e.into()))?;
        let mut stat = std::mem::MaybeUninit::<libc::statvfs>::uninit();
        // SAFETY: statvfs(3) fills the buffer it is given from a NUL-terminated path.
        if unsafe { libc::statvfs(path.as_ptr(), stat.as_mut_ptr()) } != 0 {
            return Err(io_error("read", &self.dir, io::Error::last_os_error()));
        }
        // SAFETY: statvfs returned 0, so it filled the buffer.
        if unsafe { stat.assume_init() }.f_flag & libc::ST_RDONLY != 0 {
            return Err(CredentialsFileError::ReadOnly { dir: self.dir.clone() });
        }
        Ok(())
    }

    /// Preflight: a file with `perms` can be created next to the credentials file.
    pub fn probe(&self, perms: Perms) -> Result<()> {
        let probe = self.temp_file()?;
        perms.apply(probe.as_file()).map_err(|source| CredentialsFileError::Owner { path: self.path.clone(), source })?;
        probe.close().map_err(|source| CredentialsFileError::DirectoryNotWritable { dir: self.dir.clone(), source })
    }

    /// Replaces `dest` (the credentials file or a restore copy) with `text`:
    /// temp file, permissions, fsync, rename. Readers see the old file or the
    /// new one, never a part. Call under the lock.
    pub fn write(&self, dest: &Path, text: &str, perms: Perms) -> Result<()> {
        let mut tmp = self.temp_file()?;
        tmp.write_all(text.as_bytes()).map_err(|e| io_error("write a new copy of", dest, e))?;
        perms.apply(tmp.as_file()).map_err(|source| CredentialsFileError::Owner { path: dest.to_owned(), source })?;
        tmp.as_file().sync_all().map_err(|e| io_error("write a new copy of", dest, e))?;
        tmp.persist(dest).map_err(|e| io_error("replace", dest, e.error))?;
        sync_dir(&self.dir);
        Ok(())
    }
}

/// Reads and parses a credentials file, or `None` if it does not exist.
pub(super) fn load(path: &Path) -> Result<Option<(Metadata, Doc)>> {
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

/// Removes a file; one already gone is fine.
pub(super) fn remove(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_error("remove", path, e)),
        _ => {
            if let Some(dir) = path.parent() {
                sync_dir(dir);
            }
            Ok(())
        }
    }
}

pub(super) fn io_error(action: &'static str, path: &Path, source: io::Error) -> CredentialsFileError {
    CredentialsFileError::Io { action, path: path.to_owned(), source }
}

/// Makes a rename durable. Best effort: the new file is already in place,
/// and some file systems refuse to sync a directory.
fn sync_dir(dir: &Path) {
    if let Ok(dir) = File::open(dir) {
        let _ = dir.sync_all();
    }
}
