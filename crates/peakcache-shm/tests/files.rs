//! Region and snapshot files on a multi-user host: what is at the path is never trusted.
//!
//! These tests run as root (as `make test` does here): they give files to `nobody` (uid and
//! gid 65534) with `chown`, as another local user would have made them.

use peakcache_shm::{Opened, ShmCache, ShmError};
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

const NOBODY: u32 = 65534;
const HOUR: Duration = Duration::from_secs(3600);

/// A directory of its own under /dev/shm (where regions live), removed on drop.
struct Dir(PathBuf);

impl Dir {
    fn new(name: &str) -> Dir {
        static N: AtomicU32 = AtomicU32::new(0);
        let base = if Path::new("/dev/shm").is_dir() {
            PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        let d = base.join(format!(
            "peakcache-files-{}-{}-{name}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir(&d).unwrap();
        Dir(d)
    }

    fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    /// The names in the directory, sorted.
    fn names(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(&self.0)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn c(path: &Path) -> CString {
    CString::new(path.as_os_str().as_bytes()).unwrap()
}

fn chown(path: &Path, uid: u32, gid: u32) {
    // SAFETY: a valid NUL-terminated path; lchown changes the owner of the name itself.
    let r = unsafe { libc::lchown(c(path).as_ptr(), uid, gid) };
    assert_eq!(
        r,
        0,
        "chown {} to {uid}:{gid} (these tests run as root): {}",
        path.display(),
        std::io::Error::last_os_error()
    );
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn builder() -> peakcache_shm::Builder {
    ShmCache::builder().max_bytes(1 << 20).shards(1)
}

/// The refusal's fields, or a panic saying what came instead.
#[track_caller]
fn refused<T>(r: Result<T, ShmError>) -> (String, &'static str, u32, u32) {
    match r {
        Err(e @ ShmError::Refused { .. }) => {
            let msg = e.to_string();
            let ShmError::Refused {
                kind, uid, mode, ..
            } = e
            else {
                unreachable!()
            };
            (msg, kind, uid, mode)
        }
        Err(e) => panic!("expected a refusal, got: {e}"),
        Ok(_) => panic!("expected a refusal, the file was used"),
    }
}

#[test]
fn a_planted_empty_world_writable_file_of_another_user_is_refused_naming_owner_and_mode() {
    let dir = Dir::new("planted");
    let path = dir.join("region");
    std::fs::write(&path, b"").unwrap();
    chown(&path, NOBODY, NOBODY);
    chmod(&path, 0o666);
    let before = std::fs::metadata(&path).unwrap();
    // Refused by open (whose default would replace a stale region of ours) and by attach.
    let (msg, kind, uid, mode) = refused(builder().open(&path));
    assert_eq!((kind, uid, mode), ("regular file", NOBODY, 0o666));
    assert!(msg.contains(&path.display().to_string()), "{msg}");
    assert!(msg.contains("uid 65534"), "{msg}");
    assert!(msg.contains("0666"), "{msg}");
    assert!(msg.contains("owner must be uid 0"), "{msg}");
    refused(ShmCache::attach(&path));
    // Left exactly as it was: not written, not replaced.
    let after = std::fs::metadata(&path).unwrap();
    assert_eq!(
        (after.ino(), after.len(), after.uid()),
        (before.ino(), 0, NOBODY)
    );
    assert_eq!(dir.names(), ["region"], "no temporary file left");
}

#[test]
fn a_symlink_at_the_path_is_refused_and_neither_it_nor_its_target_is_touched() {
    let dir = Dir::new("symlink");
    let target = dir.join("precious");
    std::fs::write(&target, b"precious bytes").unwrap();
    chmod(&target, 0o600);
    let path = dir.join("region");
    std::os::unix::fs::symlink(&target, &path).unwrap();
    let (msg, kind, _, _) = refused(builder().open(&path));
    assert_eq!(kind, "symbolic link", "{msg}");
    refused(ShmCache::attach(&path));
    assert_eq!(std::fs::read(&target).unwrap(), b"precious bytes");
    assert!(std::fs::symlink_metadata(&path)
        .unwrap()
        .file_type()
        .is_symlink());
    // A dangling link: the file it names is not created either.
    let missing = dir.join("missing");
    let dangling = dir.join("dangling");
    std::os::unix::fs::symlink(&missing, &dangling).unwrap();
    refused(builder().open(&dangling));
    assert!(
        !missing.exists(),
        "the link was not followed to create a file"
    );
}

#[test]
fn a_valid_region_owned_by_another_user_is_refused_and_not_replaced() {
    let dir = Dir::new("foreign");
    let path = dir.join("region");
    let (cache, opened) = builder().open(&path).unwrap();
    assert_eq!(opened, Opened::Created);
    cache
        .insert(b"k", b"v", peakcache::Freshness::new(HOUR))
        .unwrap();
    drop(cache);
    chown(&path, NOBODY, NOBODY);
    let ino = std::fs::metadata(&path).unwrap().ino();
    let (msg, _, uid, mode) = refused(builder().open(&path));
    assert_eq!((uid, mode), (NOBODY, 0o600), "{msg}");
    // Even with recreate_on_mismatch (the default) and another configuration, which would
    // replace a stale region of ours: an attacker's file never decides what happens.
    refused(builder().max_bytes(2 << 20).open(&path));
    assert_eq!(std::fs::metadata(&path).unwrap().ino(), ino, "not replaced");
    // The same file is attached by whoever is configured as its owner.
    let (cache, opened) = builder().owner(NOBODY).group(NOBODY).open(&path).unwrap();
    assert_eq!(opened, Opened::Attached);
    assert_eq!(cache.get(b"k").as_deref(), Some(&b"v"[..]));
}

#[test]
fn group_or_other_permission_bits_are_refused_unless_the_group_is_allowed() {
    let dir = Dir::new("perms");
    let path = dir.join("region");
    drop(builder().open(&path).unwrap());
    let ino = std::fs::metadata(&path).unwrap().ino();
    for mode in [0o640, 0o604, 0o660, 0o606, 0o602] {
        chmod(&path, mode);
        let (msg, _, _, m) = refused(builder().open(&path));
        assert_eq!(m, mode, "{msg}");
        assert!(msg.contains(&format!("{mode:04o}")), "{msg}");
    }
    // Group sharing, set explicitly: 0660 with the allowed group attaches; other bits never.
    chown(&path, 0, NOBODY);
    chmod(&path, 0o660);
    let shared = || builder().owner(0).group(NOBODY).group_shared(true);
    let (_, opened) = shared().open(&path).unwrap();
    assert_eq!(opened, Opened::Attached);
    let (msg, _, _, _) = refused(builder().owner(0).group(0).group_shared(true).open(&path));
    assert!(msg.contains("gid 0"), "another group is refused: {msg}");
    chmod(&path, 0o664);
    refused(shared().open(&path));
    assert_eq!(
        std::fs::metadata(&path).unwrap().ino(),
        ino,
        "never replaced"
    );
}

#[test]
fn a_directory_or_a_fifo_at_the_path_is_refused_without_blocking() {
    let dir = Dir::new("special");
    let sub = dir.join("region-dir");
    std::fs::create_dir(&sub).unwrap();
    let (_, kind, _, _) = refused(builder().open(&sub));
    assert_eq!(kind, "directory");
    let fifo = dir.join("region-fifo");
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c(&fifo).as_ptr(), 0o600) }, 0);
    let started = Instant::now();
    let (_, kind, _, _) = refused(builder().open(&fifo));
    assert_eq!(kind, "FIFO");
    refused(ShmCache::attach(&fifo));
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "opening a FIFO blocks"
    );
    assert!(sub.is_dir());
}

#[test]
fn a_new_region_is_private_to_its_owner_and_leaves_no_temporary_file() {
    let dir = Dir::new("new");
    let path = dir.join("region");
    let (_cache, opened) = builder().open(&path).unwrap();
    assert_eq!(opened, Opened::Created);
    let md = std::fs::metadata(&path).unwrap();
    assert_eq!((md.mode() & 0o7777, md.uid()), (0o600, 0));
    // Every page is reserved: the file is not sparse.
    assert!(
        md.blocks() * 512 >= md.len(),
        "{} of {}",
        md.blocks() * 512,
        md.len()
    );
    assert_eq!(dir.names(), ["region"]);
    // Group sharing, set explicitly: mode 0660 and the group (given by a privileged creator).
    let shared = dir.join("shared");
    drop(
        builder()
            .owner(0)
            .group(NOBODY)
            .group_shared(true)
            .open(&shared)
            .unwrap(),
    );
    let md = std::fs::metadata(&shared).unwrap();
    assert_eq!((md.mode() & 0o7777, md.uid(), md.gid()), (0o660, 0, NOBODY));
}

#[test]
fn creators_racing_for_one_path_share_one_region() {
    let dir = Dir::new("race");
    let path = dir.join("region");
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(6));
    let handles: Vec<_> = (0..6u8)
        .map(|i| {
            let (path, barrier) = (path.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                let (cache, opened) = builder().open(&path).unwrap();
                cache
                    .insert(&[i], &[i; 10], peakcache::Freshness::new(HOUR))
                    .unwrap();
                (cache, opened)
            })
        })
        .collect();
    let opened: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let created = opened.iter().filter(|(_, o)| *o == Opened::Created).count();
    assert_eq!(created, 1, "one creator; the others attached to its region");
    for (cache, _) in &opened {
        for i in 0..6u8 {
            assert_eq!(cache.get(&[i]).as_deref(), Some(&[i; 10][..]));
        }
    }
    assert_eq!(dir.names(), ["region"]);
}

#[test]
fn a_truncated_region_is_refused_at_attach_never_mapped_past_its_end() {
    let dir = Dir::new("truncated");
    let path = dir.join("region");
    drop(builder().open(&path).unwrap());
    let len = std::fs::metadata(&path).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(len - 4096)
        .unwrap();
    match ShmCache::attach(&path) {
        Err(ShmError::Truncated { expected, found }) => {
            assert_eq!((expected, found), (len, len - 4096))
        }
        Err(e) => panic!("expected Truncated, got {e}"),
        Ok(_) => panic!("a truncated region was attached"),
    }
    match builder().recreate_on_mismatch(false).open(&path) {
        Err(e) => assert!(matches!(e, ShmError::Truncated { .. }), "{e}"),
        Ok(_) => panic!("a truncated region was attached"),
    }
}

#[test]
fn a_snapshot_temporary_path_planted_as_a_symlink_is_not_followed() {
    let dir = Dir::new("snaptmp");
    let victim = dir.join("victim");
    std::fs::write(&victim, b"do not overwrite").unwrap();
    let snap = dir.join("snap");
    let planted = dir.join(&format!("snap.tmp.{}", std::process::id()));
    std::os::unix::fs::symlink(&victim, &planted).unwrap();
    let cache = builder().anonymous().unwrap();
    cache
        .insert(b"k", b"v", peakcache::Freshness::new(HOUR))
        .unwrap();
    assert_eq!(cache.snapshot(&snap).unwrap(), 1);
    assert_eq!(std::fs::read(&victim).unwrap(), b"do not overwrite");
    assert!(std::fs::symlink_metadata(&planted)
        .unwrap()
        .file_type()
        .is_symlink());
    let md = std::fs::symlink_metadata(&snap).unwrap();
    assert!(md.file_type().is_file());
    assert_eq!(md.mode() & 0o7777, 0o600);
    // The snapshot path itself planted as a link: replaced by the snapshot, the target kept.
    std::fs::remove_file(&snap).unwrap();
    std::os::unix::fs::symlink(&victim, &snap).unwrap();
    assert_eq!(cache.snapshot(&snap).unwrap(), 1);
    assert_eq!(std::fs::read(&victim).unwrap(), b"do not overwrite");
    assert!(std::fs::symlink_metadata(&snap)
        .unwrap()
        .file_type()
        .is_file());
    let other = builder().anonymous().unwrap();
    assert_eq!(other.restore(&snap).unwrap().restored, 1);
    assert_eq!(other.get(b"k").as_deref(), Some(&b"v"[..]));
}

#[test]
fn a_snapshot_of_another_user_writable_by_others_or_behind_a_link_is_not_restored() {
    let dir = Dir::new("snapread");
    let snap = dir.join("snap");
    let cache = builder().anonymous().unwrap();
    cache
        .insert(b"k", b"v", peakcache::Freshness::new(HOUR))
        .unwrap();
    cache.snapshot(&snap).unwrap();
    let target = builder().anonymous().unwrap();
    chown(&snap, NOBODY, NOBODY);
    let (msg, _, uid, _) = refused(target.restore(&snap));
    assert_eq!(uid, NOBODY, "{msg}");
    chown(&snap, 0, 0);
    chmod(&snap, 0o666);
    refused(target.restore(&snap));
    chmod(&snap, 0o644);
    let link = dir.join("link");
    std::os::unix::fs::symlink(&snap, &link).unwrap();
    refused(target.restore(&link));
    assert!(
        target.get(b"k").is_none(),
        "nothing restored from refused files"
    );
    assert_eq!(
        target.restore(&snap).unwrap().restored,
        1,
        "a readable own file is fine"
    );
}
