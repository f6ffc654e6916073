use super::*;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use tempfile::TempDir;

/// Comments, blank lines, three profiles, odd spacing, extra keys, a
/// header with trailing spaces and no final newline.
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

[other]  
aws_access_key_id = AKIAOTHER
aws_secret_access_key = otherSecret";

fn creds(id: &str, secret: &str) -> Credentials {
    Credentials { access_key_id: AccessKeyId::new(id), secret_access_key: Secret::new(secret) }
}

fn new_creds() -> Credentials {
    creds("AKIANEW", "newSecret")
}

fn new_key() -> AccessKeyId {
    AccessKeyId::new("AKIANEW")
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

fn sink<'a>(path: &'a Path, profile: &'a str) -> CredentialsFile<'a> {
    CredentialsFile { path, profile }
}

fn check(path: &Path, profile: &str) -> Result<()> {
    sink(path, profile).check()
}

fn deliver(path: &Path, profile: &str, creds: &Credentials) -> Result<Delivered> {
    sink(path, profile).deliver(creds)
}

fn read_back(path: &Path, profile: &str) -> Result<Option<Credentials>> {
    sink(path, profile).read_back()
}

fn restore(path: &Path, profile: &str, key: &AccessKeyId, point: &RestorePoint) -> Result<Restored> {
    sink(path, profile).restore(key, point)
}

/// A rotation's delivery as the runner does it: restore point, then deliver.
fn rotate(path: &Path, profile: &str, rotation: &str, creds: &Credentials) -> RestorePoint {
    let point = sink(path, profile).restore_point(rotation, 0).unwrap();
    assert_eq!(deliver(path, profile, creds).unwrap(), Delivered::Now);
    point
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap()
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().mode() & 0o7777
}

fn copy_of(point: &RestorePoint) -> &Path {
    match &point.before {
        Before::Profile { copy } => copy,
        other => panic!("no copy: {other:?}"),
    }
}

/// The names in `dir`, sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    names
}

fn is_root() -> bool {
    // SAFETY: geteuid(2) only reads the process's user id.
    unsafe { libc::geteuid() == 0 }
}

#[test]
fn deliver_changes_only_the_two_value_lines_and_restore_puts_them_back() {
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
            let point = rotate(&path, profile, "rot-1", &new_creds());

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
            assert_eq!(mode(&path), 0o644, "the mode is kept");
            assert_eq!(mode(copy_of(&point)), 0o600);
            assert!(read(copy_of(&point)).contains(changes[1].1), "the copy holds the profile's old lines");
            assert!(!read(copy_of(&point)).contains("region"), "and nothing else");

            assert_eq!(restore(&path, profile, &new_key(), &point).unwrap(), Restored::Restored);
            assert_eq!(read(&path), original, "{profile} {eol:?}");
            assert_eq!(mode(&path), 0o644);
        }
    }
}

#[test]
fn deliver_and_restore_keep_the_mode() {
    for m in [0o640, 0o400, 0o604] {
        let (_dir, path) = setup(Some(ORIGINAL), m);
        let point = rotate(&path, "app", "rot-1", &new_creds());
        assert_eq!(mode(&path), m);
        restore(&path, "app", &new_key(), &point).unwrap();
        assert_eq!(mode(&path), m);
        assert_eq!(read(&path), ORIGINAL);
    }
}

#[test]
fn deliver_and_restore_keep_owner_and_group() {
    if !is_root() {
        return; // only root can give files away
    }
    let (_dir, path) = setup(Some(ORIGINAL), 0o640);
    std::os::unix::fs::chown(&path, Some(1234), Some(5678)).unwrap();
    let owner = |path: &Path| fs::metadata(path).map(|m| (m.uid(), m.gid())).unwrap();
    check(&path, "app").unwrap();
    let point = rotate(&path, "app", "rot-1", &new_creds());
    assert_eq!((owner(&path), mode(&path)), ((1234, 5678), 0o640));
    assert_eq!(owner(copy_of(&point)), (0, 0), "rekey's copy of an old secret is rekey's own");
    restore(&path, "app", &new_key(), &point).unwrap();
    assert_eq!((owner(&path), mode(&path)), ((1234, 5678), 0o640));
}

#[test]
fn a_new_file_is_0600_and_owned_like_its_directory() {
    let (dir, path) = setup(None, 0);
    if is_root() {
        std::os::unix::fs::chown(dir.path(), Some(1234), Some(5678)).unwrap();
    }
    let dir_owner = fs::metadata(dir.path()).map(|m| (m.uid(), m.gid())).unwrap();
    check(&path, "app").unwrap();
    let point = rotate(&path, "app", "rot-1", &new_creds());
    assert_eq!(point.before, Before::NoFile);
    assert_eq!(read(&path), "[app]\naws_access_key_id = AKIANEW\naws_secret_access_key = newSecret\n");
    assert_eq!(mode(&path), 0o600);
    assert_eq!(fs::metadata(&path).map(|m| (m.uid(), m.gid())).unwrap(), dir_owner);
    assert_eq!(names(dir.path()), [".credentials.rekey-lock", "credentials"]);
}

#[test]
fn absent_profile_is_appended_and_removed_again() {
    for original in [ORIGINAL.to_owned(), format!("{ORIGINAL}\n")] {
        let (_dir, path) = setup(Some(&original), 0o600);
        let point = rotate(&path, "new", "rot-1", &new_creds());
        assert_eq!(point.before, Before::NoProfile);
        assert_eq!(restore(&path, "new", &new_key(), &point).unwrap(), Restored::Restored);
        assert_eq!(read(&path), original);
    }
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
fn missing_key_lines_are_added_after_the_last_key() {
    let original = "[app]\nregion = x\naws_access_key_id = AKIAOLD\n# note\n\n[b]\nk = v\n";
    let (_dir, path) = setup(Some(original), 0o600);
    let point = rotate(&path, "app", "rot-1", &new_creds());
    assert_eq!(
        read(&path),
        "[app]\nregion = x\naws_access_key_id = AKIANEW\naws_secret_access_key = newSecret\n# note\n\n[b]\nk = v\n"
    );
    restore(&path, "app", &new_key(), &point).unwrap();
    assert_eq!(read(&path), original);

    let original = "[app]\nregion = x\n\n[b]\nk = v\n";
    let (_dir, path) = setup(Some(original), 0o600);
    let point = rotate(&path, "app", "rot-1", &new_creds());
    assert_eq!(
        read(&path),
        "[app]\nregion = x\naws_access_key_id = AKIANEW\naws_secret_access_key = newSecret\n\n[b]\nk = v\n"
    );
    restore(&path, "app", &new_key(), &point).unwrap();
    assert_eq!(read(&path), original, "a profile without key lines keeps its section");
}

#[test]
fn session_token_is_removed_and_restored() {
    let original = "[app]\naws_access_key_id = ASIAOLD\naws_secret_access_key = s\naws_session_token = tok\nregion = r\n\n[b]\naws_security_token = keep\n";
    let (_dir, path) = setup(Some(original), 0o600);
    let point = rotate(&path, "app", "rot-1", &new_creds());
    assert_eq!(
        read(&path),
        "[app]\naws_access_key_id = AKIANEW\naws_secret_access_key = newSecret\nregion = r\n\n[b]\naws_security_token = keep\n"
    );
    assert_eq!(restore(&path, "app", &new_key(), &point).unwrap(), Restored::Restored);
    // A line absent from the current profile comes back after its last key.
    assert_eq!(
        read(&path),
        original.replace("aws_session_token = tok\nregion = r\n", "region = r\naws_session_token = tok\n")
    );

    // The token is the last line and has no final newline.
    let original = "[app]\naws_access_key_id = ASIAOLD\naws_secret_access_key = s\naws_security_token = tok";
    let (_dir, path) = setup(Some(original), 0o600);
    let point = rotate(&path, "app", "rot-1", &new_creds());
    assert_eq!(read(&path), "[app]\naws_access_key_id = AKIANEW\naws_secret_access_key = newSecret");
    restore(&path, "app", &new_key(), &point).unwrap();
    assert_eq!(read(&path), original);
}

#[test]
fn continuation_lines_are_not_keys() {
    let original = "[app]\ns3 =\n  aws_access_key_id = NOTAKEY\n\n  max_concurrent_requests = 10\naws_access_key_id = AKIAOLD\naws_secret_access_key = old\n";
    let (_dir, path) = setup(Some(original), 0o600);
    assert_eq!(read_back(&path, "app").unwrap(), Some(creds("AKIAOLD", "old")));
    let point = rotate(&path, "app", "rot-1", &new_creds());
    assert_eq!(read(&path), original.replace("AKIAOLD", "AKIANEW").replace("= old", "= newSecret"));
    restore(&path, "app", &new_key(), &point).unwrap();
    assert_eq!(read(&path), original);
}

#[test]
fn a_multi_line_key_value_round_trips_through_the_copy() {
    let original = "[app]\naws_access_key_id = AKIAOLD\naws_secret_access_key =\n    part-one\n    part-two\nregion = r\n";
    let (_dir, path) = setup(Some(original), 0o600);
    let point = rotate(&path, "app", "rot-1", &new_creds());
    // The new line keeps the old one's spacing, here none after the `=`.
    assert_eq!(read(&path), "[app]\naws_access_key_id = AKIANEW\naws_secret_access_key =newSecret\nregion = r\n");
    restore(&path, "app", &new_key(), &point).unwrap();
    assert_eq!(read(&path), original);
}

#[test]
fn deliver_twice_changes_nothing_the_second_time() {
    let (_dir, path) = setup(Some(ORIGINAL), 0o600);
    let point = rotate(&path, "app", "rot-1", &new_creds());
    let delivered = read(&path);
    assert_eq!(deliver(&path, "app", &new_creds()).unwrap(), Delivered::AlreadyThere);
    assert_eq!(read(&path), delivered);
    // Taking the restore point again (a crash before it was saved) is harmless too.
    restore(&path, "app", &new_key(), &point).unwrap();
    assert_eq!(read(&path), ORIGINAL);
    assert_eq!(restore(&path, "app", &new_key(), &point).unwrap(), Restored::NothingToRestore, "restore is idempotent");
    assert_eq!(read(&path), ORIGINAL);
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
fn restore_changes_no_other_byte_even_if_other_profiles_changed_since() {
    let (_dir, path) = setup(Some(ORIGINAL), 0o600);
    let point = rotate(&path, "app", "rot-1", &new_creds());
    let edited = read(&path).replace("region = eu-west-1", "region = us-west-2").replace("AKIAOTHER", "AKIAOTHER2");
    fs::write(&path, &edited).unwrap();

    assert_eq!(restore(&path, "app", &new_key(), &point).unwrap(), Restored::Restored);
    assert_eq!(read(&path), ORIGINAL.replace("region = eu-west-1", "region = us-west-2").replace("AKIAOTHER", "AKIAOTHER2"));
    assert!(copy_of(&point).exists(), "the copy stays until the rotation ends");
}

#[test]
fn two_profiles_of_one_file_in_two_rotations_restore_in_either_order() {
    for order in [["rot-a", "rot-b"], ["rot-b", "rot-a"]] {
        let (dir, path) = setup(Some(ORIGINAL), 0o600);
        let a = rotate(&path, "app", "rot-a", &creds("AKIANEWA", "secretA"));
        let b = rotate(&path, "default", "rot-b", &creds("AKIANEWB", "secretB"));
        assert_ne!(copy_of(&a), copy_of(&b));
        let mut expected = ORIGINAL.replace("AKIAOLDAPP", "AKIANEWA").replace("oldAppSecret", "secretA");
        expected = expected.replace("AKIAOLDDEFAULT", "AKIANEWB").replace("oldDefaultSecret", "secretB");
        assert_eq!(read(&path), expected);
        for rotation in order {
            let (profile, key, point) = match rotation {
                "rot-a" => ("app", "AKIANEWA", &a),
                _ => ("default", "AKIANEWB", &b),
            };
            assert_eq!(restore(&path, profile, &AccessKeyId::new(key), point).unwrap(), Restored::Restored);
            let [id, ..] = sink(&path, profile).read_back().unwrap().map(|c| [c.access_key_id]).unwrap();
            assert!(id.as_str().starts_with("AKIAOLD"), "{profile} back on its old key");
        }
        assert_eq!(read(&path), ORIGINAL, "the exact original bytes");
        // Each rotation's end removes its own copy only.
        sink(&path, "app").finish("rot-a", 0).unwrap();
        assert!(!copy_of(&a).exists() && copy_of(&b).exists(), "finishing one rotation leaves the other's copy");
        sink(&path, "default").finish("rot-b", 0).unwrap();
        sink(&path, "default").finish("rot-b", 0).unwrap();
        assert_eq!(names(dir.path()), [".credentials.rekey-lock", "credentials"]);
    }
}

#[test]
fn two_rotations_of_one_profile_keep_their_own_copies() {
    let (_dir, path) = setup(Some(ORIGINAL), 0o600);
    let first = rotate(&path, "app", "rot-1", &new_creds());
    sink(&path, "app").finish("rot-1", 0).unwrap();
    let second = rotate(&path, "app", "rot-2", &creds("AKIANEWER", "newerSecret"));
    assert!(!copy_of(&first).exists());
    restore(&path, "app", &AccessKeyId::new("AKIANEWER"), &second).unwrap();
    assert_eq!(read_back(&path, "app").unwrap(), Some(new_creds()), "back to the key the second rotation replaced");
}

#[test]
fn restore_leaves_a_key_changed_by_someone_else() {
    let (_dir, path) = setup(Some(ORIGINAL), 0o600);
    let point = rotate(&path, "app", "rot-1", &new_creds());
    let changed = read(&path).replace("AKIANEW", "AKIATHEIRS");
    fs::write(&path, &changed).unwrap();
    assert_eq!(restore(&path, "app", &new_key(), &point).unwrap(), Restored::NothingToRestore);
    assert_eq!(read(&path), changed);
}

#[test]
fn restore_removes_a_created_file() {
    let (dir, path) = setup(None, 0);
    let point = rotate(&path, "app", "rot-1", &new_creds());
    assert_eq!(restore(&path, "app", &new_key(), &point).unwrap(), Restored::Restored);
    assert!(!path.exists());
    assert_eq!(restore(&path, "app", &new_key(), &point).unwrap(), Restored::NothingToRestore);
    assert_eq!(names(dir.path()), [".credentials.rekey-lock"]);
}

#[test]
fn a_lost_copy_is_left_to_a_person() {
    let (_dir, path) = setup(Some(ORIGINAL), 0o600);
    let point = rotate(&path, "app", "rot-1", &new_creds());
    fs::remove_file(copy_of(&point)).unwrap();
    let outcome = restore(&path, "app", &new_key(), &point).unwrap();
    assert!(matches!(&outcome, Restored::CannotRestore(why) if why.contains("by hand")), "{outcome:?}");
    assert_eq!(read_back(&path, "app").unwrap(), Some(new_creds()), "the new key stays: it is what works");
}

#[test]
fn a_stale_temp_file_is_removed_by_the_next_deliver() {
    let (dir, path) = setup(Some(ORIGINAL), 0o600);
    let stale = dir.path().join(".credentials.rekey-tmp-Ab12Cd");
    fs::write(&stale, "[app]\naws_secret_access_key = leftOverSecret\n").unwrap();
    let unrelated = dir.path().join(".other.rekey-tmp-Ab12Cd");
    fs::write(&unrelated, "not ours").unwrap();
    deliver(&path, "app", &new_creds()).unwrap();
    assert!(!stale.exists(), "a crash's temp file is gone after the next run");
    assert!(unrelated.exists(), "another file's temp files are not ours to remove");
}

#[test]
fn the_lock_excludes_a_second_writer() {
    let (_dir, path) = setup(Some(ORIGINAL), 0o600);
    let writer = |profile: &'static str| {
        let path = path.clone();
        std::thread::spawn(move || {
            for n in 0..60 {
                let mine = creds(&format!("AKIA{profile}{n}"), &format!("secret{n}"));
                deliver(&path, profile, &mine).unwrap();
                // Without the lock the other writer's rename brings back an older copy.
                assert_eq!(read_back(&path, profile).unwrap(), Some(mine), "{profile} lost update {n}");
            }
        })
    };
    let (a, b) = (writer("app"), writer("default"));
    a.join().unwrap();
    b.join().unwrap();
    assert_eq!(read_back(&path, "app").unwrap(), Some(creds("AKIAapp59", "secret59")));
    assert_eq!(read_back(&path, "default").unwrap(), Some(creds("AKIAdefault59", "secret59")));
    assert_eq!(read_back(&path, "other").unwrap(), Some(creds("AKIAOTHER", "otherSecret")));
}

#[test]
fn the_restore_point_holds_no_secret() {
    let (_dir, path) = setup(Some(ORIGINAL), 0o600);
    let point = rotate(&path, "app", "rot-1", &new_creds());
    let saved = serde_json::to_string(&AnyRestorePoint::CredentialsFile(point.clone())).unwrap();
    for secret in ["oldAppSecret", "newSecret", "otherSecret", "oldDefaultSecret"] {
        assert!(!saved.contains(secret), "{saved}");
    }
    assert_eq!(serde_json::from_str::<AnyRestorePoint>(&saved).unwrap(), AnyRestorePoint::CredentialsFile(point));
}

#[test]
fn a_symlinked_file_is_updated_where_it_lives() {
    let (dir, real) = setup(Some(ORIGINAL), 0o600);
    let link = dir.path().join("link");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let point = rotate(&link, "app", "rot-1", &new_creds());
    assert!(fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
    assert_eq!(read_back(&real, "app").unwrap(), Some(new_creds()));
    assert_eq!(copy_of(&point).parent(), real.parent());
    restore(&link, "app", &new_key(), &point).unwrap();
    assert_eq!(read(&real), ORIGINAL);
}

/// Refused at preflight, and by every later step: a link planted to
/// make rekey (often root) rewrite another user's file.
#[test]
fn a_link_to_another_users_file_is_refused() {
    let (dir, real) = setup(Some(ORIGINAL), 0o600);
    if let Err(e) = std::os::unix::fs::chown(&real, Some(65534), Some(65534)) {
        eprintln!("skipped: giving a file to another user needs root ({e})");
        return;
    }
    let link = dir.path().join("link");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let err = check(&link, "app").unwrap_err();
    assert!(matches!(err, CredentialsFileError::ForeignLink { target_owner: 65534, .. }), "{err}");
    assert!(err.to_string().contains("belongs to another user"), "{err}");
    assert!(deliver(&link, "app", &new_creds()).is_err());
    assert_eq!(read(&real), ORIGINAL);
}

#[test]
fn a_directory_anyone_may_write_to_is_refused() {
    for mode in [0o777, 0o1777, 0o703] {
        let (dir, path) = setup(Some(ORIGINAL), 0o600);
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(mode)).unwrap();
        let err = check(&path, "app").unwrap_err();
        assert!(matches!(err, CredentialsFileError::SharedDirectory { .. }), "{mode:o}: {err}");
        assert!(err.to_string().contains("chmod o-w"), "{err}");
    }
    let (dir, path) = setup(Some(ORIGINAL), 0o600);
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o775)).unwrap();
    check(&path, "app").expect("a group may share the directory");
}

#[test]
fn a_read_only_file_system_is_refused() {
    let (dir, _) = setup(None, 0o600);
    let mount = dir.path().join("ro");
    fs::create_dir(&mount).unwrap();
    let mounted = std::process::Command::new("mount").args(["-t", "tmpfs", "-o", "ro,mode=0755", "tmpfs"]).arg(&mount).output();
    if !mounted.as_ref().is_ok_and(|o| o.status.success()) {
        eprintln!("skipped: mounting a read-only file system needs root ({mounted:?})");
        return;
    }
    let err = check(&mount.join("credentials"), "app").unwrap_err();
    let unmounted = std::process::Command::new("umount").arg(&mount).status();
    assert!(matches!(err, CredentialsFileError::ReadOnly { .. }), "{err}");
    assert!(err.to_string().contains("read-only file system"), "{err}");
    assert!(unmounted.is_ok_and(|s| s.success()), "unmount {}", mount.display());
}

#[test]
fn check_accepts_a_good_file_or_none_and_changes_nothing() {
    let (dir, path) = setup(Some(ORIGINAL), 0o600);
    check(&path, "app").unwrap();
    check(&path, "absent").unwrap();
    check(&dir.path().join("not-yet"), "app").unwrap();
    // Only the lock files, which hold nothing.
    assert_eq!(names(dir.path()), [".credentials.rekey-lock", ".not-yet.rekey-lock", "credentials"]);
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
    let writable = fs::File::create(dir.path().join("probe")).is_ok();
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

    let (_dir, path) = setup(Some("[app]\nk = v\n[app]  \nk = w\n"), 0o600);
    let err = check(&path, "app").unwrap_err();
    assert!(matches!(err, CredentialsFileError::DuplicateProfile { first: 1, second: 3, .. }), "{err}");
    assert!(matches!(deliver(&path, "app", &new_creds()), Err(CredentialsFileError::DuplicateProfile { .. })));
    assert_eq!(read(&path), "[app]\nk = v\n[app]  \nk = w\n");

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
        let point = RestorePoint { before: Before::NoProfile };
        let errors = [
            check(&path, "app").unwrap_err(),
            sink(&path, "app").restore_point("rot-1", 0).unwrap_err(),
            deliver(&path, "app", &new_creds()).unwrap_err(),
            read_back(&path, "app").unwrap_err(),
            restore(&path, "app", &new_key(), &point).unwrap_err(),
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

// Found by the property tests (properties.rs), each read differently by botocore before the fix.

#[test]
fn a_header_with_inner_spaces_is_another_profile() {
    // configparser does not trim `[ other ]`: the AWS CLI calls it " other ".
    let original = "[ other ]\naws_access_key_id = AKIAOTHER\naws_secret_access_key = otherSecret\n";
    let (_dir, path) = setup(Some(original), 0o600);
    assert_eq!(read_back(&path, "other").unwrap(), None);
    deliver(&path, "other", &new_creds()).unwrap();
    assert_eq!(read(&path), format!("{original}[other]\naws_access_key_id = AKIANEW\naws_secret_access_key = newSecret\n"));
}

#[test]
fn control_characters_are_refused() {
    // Python splits lines at a lone carriage return, and reads \x1c as a space.
    for odd in ["\r", "\u{1c}"] {
        let original = format!("[app]\naws_access_key_id = AKIAOLD{odd}[b]\naws_secret_access_key = old\n");
        let (_dir, path) = setup(Some(&original), 0o600);
        let err = deliver(&path, "app", &new_creds()).unwrap_err();
        assert!(matches!(err, CredentialsFileError::Syntax { line: 2, .. }), "{err}");
        assert_eq!(read(&path), original);
    }
}

#[test]
fn blank_lines_inside_a_value_count() {
    let (_dir, path) = setup(Some("[app]\naws_access_key_id = AKIAOLD\naws_secret_access_key = a\n\n  b\n"), 0o600);
    assert_eq!(read_back(&path, "app").unwrap(), Some(creds("AKIAOLD", "a\n\nb")));
}

#[test]
fn keys_in_the_default_section_are_refused() {
    // configparser gives [DEFAULT]'s keys to every profile.
    let original = "[DEFAULT]\naws_session_token = tok\n[app]\naws_access_key_id = AKIAOLD\naws_secret_access_key = old\n";
    let (_dir, path) = setup(Some(original), 0o600);
    let err = deliver(&path, "app", &new_creds()).unwrap_err();
    assert!(matches!(&err, CredentialsFileError::DefaultSection { key, .. } if key == "aws_session_token"), "{err}");
    assert_eq!(read(&path), original);
    let err = check(&path, "DEFAULT").unwrap_err();
    assert!(matches!(err, CredentialsFileError::InvalidProfile { .. }), "{err}");
    // Any key: a new profile would get this broken nested value, and botocore then reads no profile at all.
    let original = "[DEFAULT]\noutput:\n  z = 6\n  no-equals\n";
    let (_dir, path) = setup(Some(original), 0o600);
    assert!(matches!(deliver(&path, "new", &new_creds()), Err(CredentialsFileError::DefaultSection { .. })));
    assert_eq!(read(&path), original);
}
