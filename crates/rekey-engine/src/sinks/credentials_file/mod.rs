//! The `credentials-file` sink: delivers a new access key into one profile of
//! an AWS shared credentials file (`~/.aws/credentials`) and can undo that.
//!
//! The application reads this file, so every write is atomic and changes only
//! the target profile's key lines ([`doc`]), and the file keeps its mode,
//! owner and group ([`file`]). The restore point is the profile's own
//! previous key lines, copied (0600) per rotation and per sink next to the
//! file, so rotations and profiles sharing a file never share a backup; the
//! copy is removed when the rotation ends. No error message ever quotes a
//! line of the file, since any line may hold a secret.

mod doc;
mod file;

use super::{Delivered, DeliverySink, Grant, PolicyScope, RestorePoint as AnyRestorePoint, Restored, SinkCtx, SinkError};
use doc::{valid_profile, Doc};
use file::{load, remove, Perms, Place};
use rekey_core::{AccessKeyId, Credentials, Secret};
use serde::{Deserialize, Serialize};
use std::io;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum CredentialsFileError {
    #[error("profile name {profile:?} cannot be used in a credentials file: it must be non-empty, without surrounding spaces, brackets or line breaks, and not DEFAULT (the defaults of every profile)")]
    InvalidProfile { profile: String },
    #[error("the {what} to deliver into profile [{profile}] of {} is empty, has surrounding spaces or spans several lines", path.display())]
    InvalidValue { path: PathBuf, profile: String, what: &'static str },
    #[error("the directory {} of the credentials file does not exist or is not a directory", dir.display())]
    MissingDirectory { dir: PathBuf },
    #[error("rekey cannot create files in {}, so it could not replace the credentials file there: {source}", dir.display())]
    DirectoryNotWritable { dir: PathBuf, source: io::Error },
    #[error("{} is not a regular file", path.display())]
    NotAFile { path: PathBuf },
    #[error("{} is a symbolic link to {}, which belongs to another user (uid {target_owner}, the link's is {link_owner}); rekey follows a link only to a file of the link's own owner, so that nobody can point it at someone else's file", link.display(), target.display())]
    ForeignLink { link: PathBuf, target: PathBuf, link_owner: u32, target_owner: u32 },
    #[error("the directory {} is writable by every user, so anyone could swap the credentials file rekey writes there; remove that permission (chmod o-w) or use another directory", dir.display())]
    SharedDirectory { dir: PathBuf },
    #[error("the directory {} is on a read-only file system: rekey could not deliver the new key there", dir.display())]
    ReadOnly { dir: PathBuf },
    #[error("cannot {action} {}: {source}", path.display())]
    Io { action: &'static str, path: PathBuf, source: io::Error },
    #[error("cannot give {} the owner, group and mode the application needs (those of the file it replaces, or of its directory for a new file): {source}; run rekey as that owner or as root", path.display())]
    Owner { path: PathBuf, source: io::Error },
    #[error("{} line {line} is not valid credentials-file syntax: {problem}", path.display())]
    Syntax { path: PathBuf, line: usize, problem: &'static str },
    #[error("profile [{profile}] appears twice in {} (lines {first} and {second}); rekey will not guess which one to change", path.display())]
    DuplicateProfile { path: PathBuf, profile: String, first: usize, second: usize },
    #[error("profile [{profile}] in {} sets {key} twice (lines {first} and {second}); rekey will not guess which one counts", path.display())]
    DuplicateKey { path: PathBuf, profile: String, key: &'static str, first: usize, second: usize },
    #[error("the [DEFAULT] section of {} sets {key}, which Python's configparser (the AWS CLI's) gives to every profile; rekey will not edit this file", path.display())]
    DefaultSection { path: PathBuf, key: String },
    #[error("rekey could not rewrite profile [{profile}] of {} without changing what it means (unusual indentation?); the file was left unchanged", path.display())]
    Unsafe { path: PathBuf, profile: String },
}

type Result<T> = std::result::Result<T, CredentialsFileError>;

/// What the profile was before the rotation's first delivery. No secret:
/// the previous lines are in the copy the path names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestorePoint {
    pub before: Before,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Before {
    /// rekey created the file: restoring removes it, unless others wrote to it since.
    NoFile,
    /// rekey added the profile: restoring removes its key lines, then the section if empty.
    NoProfile,
    /// The profile's key lines were copied here (0600).
    Profile { copy: PathBuf },
}

pub struct CredentialsFile<'a> {
    pub path: &'a Path,
    pub profile: &'a str,
}

impl CredentialsFile<'_> {
    fn place(&self) -> Result<Place> {
        valid_profile(self.profile)?;
        Place::new(self.path)
    }

    /// Preflight, before any AWS change: the directory exists, is not
    /// writable by everyone nor read-only, rekey can create a file there with
    /// the owner and mode a delivery would give it, and the file, if it
    /// exists, is a regular file (or a link to one of the link's owner) that
    /// parses. Changes nothing but creating the (empty) lock file.
    pub fn check(&self) -> Result<()> {
        let place = self.place()?;
        if !place.dir().is_dir() {
            return Err(CredentialsFileError::MissingDirectory { dir: place.dir().to_owned() });
        }
        // Parse first: a path that is no file must not get a lock file beside it.
        let perms = match load(&place.path)? {
            Some((meta, doc)) => {
                doc.entries(self.profile)?;
                Perms::of(&meta)
            }
            None => Perms::new_file_in(place.dir())?,
        };
        place.refuse_unsafe_directory()?;
        let _lock = place.lock()?;
        place.probe(perms)
    }

    /// Copies the profile's key lines (0600) for `restore`, or records that
    /// the profile or the file did not exist. Taking it again before the
    /// first delivery overwrites the copy with the same lines.
    pub fn restore_point(&self, rotation_id: &str, index: usize) -> Result<RestorePoint> {
        let place = self.place()?;
        let _lock = place.lock()?;
        let before = match load(&place.path)? {
            None => Before::NoFile,
            Some((_, doc)) => match doc.profile_copy(self.profile)? {
                None => Before::NoProfile,
                Some(lines) => {
                    let copy = place.restore_copy(rotation_id, index);
                    place.write(&copy, &lines, Perms::PRIVATE)?;
                    Before::Profile { copy }
                }
            },
        };
        Ok(RestorePoint { before })
    }

    /// Writes `creds` into the profile. Idempotent: a profile that already
    /// holds them is left alone ([`Delivered::AlreadyThere`]). The file keeps
    /// its mode, owner and group; a new one is 0600 and owned like its directory.
    pub fn deliver(&self, creds: &Credentials) -> Result<Delivered> {
        let place = self.place()?;
        let _lock = place.lock()?;
        let (perms, mut doc) = match load(&place.path)? {
            Some((meta, doc)) => (Perms::of(&meta), doc),
            None => (Perms::new_file_in(place.dir())?, Doc::new(&place.path, String::new())?),
        };
        let [id, secret, ..] = doc.values(self.profile)?;
        if id.as_deref() == Some(creds.access_key_id.as_str()) && secret.as_deref() == Some(creds.secret_access_key.expose()) {
            return Ok(Delivered::AlreadyThere);
        }
        doc.set_credentials(self.profile, creds)?;
        place.write(&place.path, &doc.text(), perms)?;
        Ok(Delivered::Now)
    }

    /// The profile's credentials (for crash recovery), if present.
    pub fn read_back(&self) -> Result<Option<Credentials>> {
        let Some((_, doc)) = load(&self.place()?.path)? else {
            return Ok(None);
        };
        Ok(match doc.values(self.profile)? {
            [Some(id), Some(secret), ..] => {
                Some(Credentials { access_key_id: AccessKeyId::new(id), secret_access_key: Secret::new(secret) })
            }
            _ => None,
        })
    }

    /// Puts the profile's previous key lines back, only if it still holds
    /// `new_key` (otherwise someone changed it since, and their change wins).
    /// Changes no other byte, so changes to other profiles made since are
    /// kept. Removes the profile, or the file, if rekey created it and
    /// nothing else was added since.
    pub fn restore(&self, new_key: &AccessKeyId, point: &RestorePoint) -> Result<Restored> {
        let place = self.place()?;
        let _lock = place.lock()?;
        let Some((meta, mut doc)) = load(&place.path)? else {
            return Ok(Restored::NothingToRestore);
        };
        if doc.values(self.profile)?[0].as_deref() != Some(new_key.as_str()) {
            return Ok(Restored::NothingToRestore);
        }
        let old = match &point.before {
            Before::Profile { copy } => match load(copy)? {
                Some((_, old)) => Some(old),
                None => {
                    return Ok(Restored::CannotRestore(format!(
                        "the copy of profile [{}]'s previous key lines ({}) is gone: put the old key back into {} by hand",
                        self.profile,
                        copy.display(),
                        place.path.display()
                    )))
                }
            },
            Before::NoFile | Before::NoProfile => None,
        };
        doc.splice(self.profile, old.as_ref())?;
        let text = doc.text();
        if point.before == Before::NoFile && text.trim().is_empty() {
            remove(&place.path)?;
        } else {
            place.write(&place.path, &text, Perms::of(&meta))?;
        }
        Ok(Restored::Restored)
    }

    /// Removes this rotation's copy of the profile's previous lines (it holds
    /// an old secret). A missing copy is fine. The path comes from the
    /// rotation and sink, not the restore point, so a copy written just
    /// before a crash, whose restore point was never saved, goes too.
    pub fn finish(&self, rotation_id: &str, index: usize) -> Result<()> {
        remove(&self.place()?.restore_copy(rotation_id, index))
    }
}

#[async_trait::async_trait]
impl DeliverySink for CredentialsFile<'_> {
    fn describe(&self) -> String {
        format!("credentials-file {} [{}]", self.path.display(), self.profile)
    }

    fn plan_line(&self) -> String {
        format!("deliver to {} (the profile's previous lines kept beside the file until the rotation ends)", self.describe())
    }

    fn readable(&self) -> bool {
        true
    }

    fn awaits_person(&self) -> bool {
        false
    }

    /// A local file: no AWS permission.
    fn permissions(&self, _: &PolicyScope<'_>) -> Vec<Grant> {
        Vec::new()
    }

    async fn check(&self, _: &SinkCtx<'_>) -> std::result::Result<(), SinkError> {
        Ok(CredentialsFile::check(self)?)
    }

    async fn restore_point(&self, ctx: &SinkCtx<'_>) -> std::result::Result<AnyRestorePoint, SinkError> {
        Ok(AnyRestorePoint::CredentialsFile(CredentialsFile::restore_point(self, ctx.rotation_id, ctx.index)?))
    }

    async fn deliver(&self, _: &SinkCtx<'_>, creds: &Credentials) -> std::result::Result<Delivered, SinkError> {
        Ok(CredentialsFile::deliver(self, creds)?)
    }

    async fn read_back(&self, _: &SinkCtx<'_>) -> std::result::Result<Option<Credentials>, SinkError> {
        Ok(CredentialsFile::read_back(self)?)
    }

    async fn restore(&self, _: &SinkCtx<'_>, new_key: &AccessKeyId, point: &AnyRestorePoint) -> std::result::Result<Restored, SinkError> {
        match point {
            AnyRestorePoint::CredentialsFile(point) => Ok(CredentialsFile::restore(self, new_key, point)?),
            AnyRestorePoint::Nothing => Ok(Restored::NothingToRestore),
            _ => Err(SinkError::WrongRestorePoint { sink: self.describe() }),
        }
    }

    async fn finish(&self, ctx: &SinkCtx<'_>, _: &AnyRestorePoint) -> std::result::Result<(), SinkError> {
        Ok(CredentialsFile::finish(self, ctx.rotation_id, ctx.index)?)
    }
}


#[cfg(test)]
mod tests;
#[cfg(test)]
mod properties;
