//! Opening and making the files of the shared tier without trusting what is at their paths;
//! other files whose contents are served to visitors (the proxy's snapshots) follow the same
//! rules through [`open_trusted`] and [`NewFile`].
//!
//! A region file is memory every attached process reads pages from and writes lock words into:
//! whoever can write it can serve any page to every visitor and wedge every worker. Under
//! `/dev/shm` (world-writable, sticky) any local user can put a file at the path before the
//! cache starts. So:
//!
//! - An existing file is looked at (`lstat`) before it is opened, opened with `O_NOFOLLOW`
//!   (a symbolic link is not followed), `O_NONBLOCK` (a FIFO put there in between does not
//!   block), `O_NOCTTY` and `O_CLOEXEC`, and checked again on the descriptor, the authority,
//!   before a byte is read: see `Owner::check_region`.
//! - A new file is made under a name of its own in the same directory with `O_CREAT |
//!   O_EXCL | O_NOFOLLOW`, its mode set exactly (whatever the umask) and its owner given
//!   (`fchown`, for a privileged creator working for another user), filled, and only then put
//!   at the path: without replacing what another process put there meanwhile
//!   (`renameat2(RENAME_NOREPLACE)`, or `link` where the file system lacks it), or replacing a
//!   stale file of ours (`rename`). No process ever sees a half-made file at the path.

use crate::error::ShmError;
use std::ffi::{CString, OsString};
use std::fs::{File, Metadata, OpenOptions};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

/// Temporary names tried before giving up (the first is `<path>.tmp.<pid>`, the others add a
/// random part: a name planted in advance only costs one try).
const TEMP_TRIES: u32 = 8;

/// Who must own a region file, and whether its group may share it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Owner {
    pub(crate) uid: u32,
    pub(crate) gid: u32,
    pub(crate) group_shared: bool,
}

/// This process's effective user id.
pub(crate) fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// This process's effective group id.
pub(crate) fn egid() -> u32 {
    // SAFETY: getegid has no preconditions and cannot fail.
    unsafe { libc::getegid() }
}

impl Owner {
    /// The effective user and group of this process, no group sharing.
    pub(crate) fn effective() -> Owner {
        Owner {
            uid: euid(),
            gid: egid(),
            group_shared: false,
        }
    }

    /// The mode a new region file gets.
    pub(crate) fn mode(&self) -> u32 {
        if self.group_shared {
            0o660
        } else {
            0o600
        }
    }

    /// Whether a region file found at `path` may be used: a regular file, owned by this
    /// owner, with no permission bit for other users, and group bits only when group sharing
    /// is allowed and the file's group is this owner's group.
    pub(crate) fn check_region(&self, path: &Path, md: &Metadata) -> Result<(), ShmError> {
        if !md.file_type().is_file() {
            return Err(refused(
                path,
                md,
                "a region must be a regular file, and what is there may lead anywhere: \
                 remove it"
                    .into(),
            ));
        }
        if md.uid() != self.uid {
            return Err(refused(
                path,
                md,
                format!(
                    "the region's owner must be uid {}: another user may have put it there \
                     to read or change what every visitor is served; remove it (or set the \
                     expected owner if that user is meant to own it)",
                    self.uid
                ),
            ));
        }
        let mode = md.mode();
        if mode & 0o007 != 0 {
            return Err(refused(
                path,
                md,
                "every user may read or write it (permission bits for others): its pages \
                 could be read or planted; remove it"
                    .into(),
            ));
        }
        if mode & 0o070 != 0 && !self.group_shared {
            return Err(refused(
                path,
                md,
                "its group may read or write it, and group sharing is not allowed: remove \
                 it, or allow group sharing explicitly"
                    .into(),
            ));
        }
        if mode & 0o070 != 0 && md.gid() != self.gid {
            return Err(refused(
                path,
                md,
                format!(
                    "its group is not gid {}, the group allowed to share it: remove it",
                    self.gid
                ),
            ));
        }
        Ok(())
    }

    /// Whether a snapshot file found at `path` may be restored: a regular file, owned by this
    /// process's user, by this owner or by root, that no other user may write (what it holds is
    /// served to every visitor).
    pub(crate) fn check_snapshot(&self, path: &Path, md: &Metadata) -> Result<(), ShmError> {
        if !md.file_type().is_file() {
            return Err(refused(
                path,
                md,
                "a snapshot must be a regular file".into(),
            ));
        }
        if ![euid(), self.uid, 0].contains(&md.uid()) {
            return Err(refused(
                path,
                md,
                format!(
                    "a snapshot must be owned by uid {}, uid {} or root: its entries would be \
                     served to every visitor",
                    euid(),
                    self.uid
                ),
            ));
        }
        if md.mode() & 0o022 != 0 {
            return Err(refused(
                path,
                md,
                "other users may write it: its entries would be served to every visitor".into(),
            ));
        }
        Ok(())
    }
}

/// What kind of file `md` describes, in words ("regular file", "symbolic link", "FIFO", ...).
pub fn kind(md: &Metadata) -> &'static str {
    let t = md.file_type();
    if t.is_file() {
        "regular file"
    } else if t.is_symlink() {
        "symbolic link"
    } else if t.is_dir() {
        "directory"
    } else if t.is_fifo() {
        "FIFO"
    } else if t.is_socket() {
        "socket"
    } else if t.is_block_device() {
        "block device"
    } else if t.is_char_device() {
        "character device"
    } else {
        "special file"
    }
}

fn refused(path: &Path, md: &Metadata, reason: String) -> ShmError {
    ShmError::Refused {
        path: path.to_path_buf(),
        kind: kind(md),
        uid: md.uid(),
        gid: md.gid(),
        mode: md.mode() & 0o7777,
        reason,
    }
}

/// Opens the file at `path` (for writing too if `write`), without following a symbolic link,
/// after `check` accepted what the path names and again what was opened. `None` if there is
/// no file.
pub(crate) fn open_checked(
    path: &Path,
    write: bool,
    check: impl Fn(&Metadata) -> Result<(), ShmError>,
) -> Result<Option<File>, ShmError> {
    // Looked at before opening: a FIFO or a device is refused without being opened at all.
    match std::fs::symlink_metadata(path) {
        Ok(md) => check(&md)?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(ShmError::io("stat", Some(path), e)),
    }
    let opened = OpenOptions::new()
        .read(true)
        .write(write)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path);
    let file = match opened {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            // Replaced between the look and the open (ELOOP: now a symbolic link): refuse
            // what is there now, if it is refused.
            if let Ok(md) = std::fs::symlink_metadata(path) {
                check(&md)?;
            }
            return Err(ShmError::io("open", Some(path), e));
        }
    };
    let md = file
        .metadata()
        .map_err(|e| ShmError::io("fstat", Some(path), e))?;
    check(&md)?;
    Ok(Some(file))
}

/// Opens the file at `path` for reading as the shared tier opens a snapshot to restore: not
/// through a symbolic link, not blocking on a FIFO, and only if it is a regular file owned by
/// this process's user or root that no other user may write (checked on the path, then on
/// what was opened). `None` if there is no file; [`ShmError::Refused`] says why one is not
/// trusted.
pub fn open_trusted(path: &Path) -> Result<Option<File>, ShmError> {
    let owner = Owner::effective();
    open_checked(path, false, |md| owner.check_snapshot(path, md))
}

fn c_path(path: &Path) -> Result<CString, ShmError> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| {
        ShmError::io(
            "open",
            Some(path),
            io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"),
        )
    })
}

/// A file being made, under a temporary name in its final directory; removed on drop unless
/// it was put in place.
pub struct NewFile {
    /// The file, open for reading and writing.
    pub file: File,
    tmp: PathBuf,
    placed: bool,
}

impl NewFile {
    /// A new, empty file beside `path`, created exclusively (nothing followed, nothing
    /// reused), with exactly `mode` and, if `owner` (uid, gid) differs from this process's
    /// ids, given to that user and group.
    pub fn create(path: &Path, mode: u32, owner: Option<(u32, u32)>) -> Result<NewFile, ShmError> {
        for attempt in 0..TEMP_TRIES {
            let tmp = temp_name(path, attempt);
            let opened = OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .mode(mode)
                .custom_flags(libc::O_NOFOLLOW | libc::O_NOCTTY)
                .open(&tmp);
            match opened {
                Ok(file) => {
                    let new = NewFile {
                        file,
                        tmp,
                        placed: false,
                    };
                    new.own(mode, owner)?;
                    return Ok(new);
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(ShmError::io("create", Some(&tmp), e)),
            }
        }
        Err(ShmError::io(
            "create",
            Some(path),
            io::Error::new(
                io::ErrorKind::AlreadyExists,
                "every temporary name tried beside it is taken",
            ),
        ))
    }

    /// Sets the mode exactly (the umask may have taken bits off) and the owner.
    fn own(&self, mode: u32, owner: Option<(u32, u32)>) -> Result<(), ShmError> {
        let fd = self.file.as_raw_fd();
        if let Some((uid, gid)) = owner.filter(|&o| o != (euid(), egid())) {
            // SAFETY: `fd` is our open descriptor; fchown only changes its file's owner.
            if unsafe { libc::fchown(fd, uid, gid) } != 0 {
                return Err(ShmError::io(
                    "fchown",
                    Some(&self.tmp),
                    io::Error::last_os_error(),
                ));
            }
        }
        // SAFETY: as above; fchmod only changes its file's mode.
        if unsafe { libc::fchmod(fd, mode as libc::mode_t) } != 0 {
            return Err(ShmError::io(
                "fchmod",
                Some(&self.tmp),
                io::Error::last_os_error(),
            ));
        }
        Ok(())
    }

    /// Puts the file at `path` unless something is there already: false then (another
    /// process won the race; this file is discarded).
    pub(crate) fn place(mut self, path: &Path) -> Result<bool, ShmError> {
        let (from, to) = (c_path(&self.tmp)?, c_path(path)?);
        // SAFETY: two valid NUL-terminated paths; renameat2 reads them and moves a name.
        let r = unsafe {
            libc::renameat2(
                libc::AT_FDCWD,
                from.as_ptr(),
                libc::AT_FDCWD,
                to.as_ptr(),
                libc::RENAME_NOREPLACE,
            )
        };
        if r == 0 {
            self.placed = true;
            return Ok(true);
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EEXIST) => Ok(false),
            // No RENAME_NOREPLACE on this file system: link() never replaces either; the
            // temporary name is then removed on drop.
            Some(libc::EINVAL | libc::ENOSYS) => {
                // SAFETY: as above; link creates a second name for the file.
                if unsafe { libc::link(from.as_ptr(), to.as_ptr()) } == 0 {
                    return Ok(true);
                }
                let e = io::Error::last_os_error();
                if e.raw_os_error() == Some(libc::EEXIST) {
                    Ok(false)
                } else {
                    Err(ShmError::io("link", Some(path), e))
                }
            }
            _ => Err(ShmError::io("rename", Some(path), e)),
        }
    }

    /// The temporary name the file has until it is put in place.
    pub fn temp_path(&self) -> &Path {
        &self.tmp
    }

    /// Puts the file at `path`, replacing what is there (a stale file of ours), and syncs the
    /// directory so that the new name survives a crash too.
    pub fn replace(mut self, path: &Path) -> Result<(), ShmError> {
        std::fs::rename(&self.tmp, path).map_err(|e| ShmError::io("rename", Some(path), e))?;
        self.placed = true;
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| ShmError::io("fsync", Some(dir), e))
    }
}

impl Drop for NewFile {
    fn drop(&mut self) {
        if !self.placed {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// `<path>.tmp.<pid>`, then with a random part.
fn temp_name(path: &Path, attempt: u32) -> PathBuf {
    let mut name = OsString::from(path.as_os_str());
    name.push(format!(".tmp.{}", std::process::id()));
    if attempt > 0 {
        name.push(format!(".{:016x}", crate::region::random_u64()));
    }
    PathBuf::from(name)
}

/// Bytes available to this process on the file system of `file` (`fstatvfs`); `None` when
/// unknown or unbounded (an internal memory file system reports no size).
fn available(file: &File) -> Option<u64> {
    // SAFETY: an all-zero statvfs is a valid value for fstatvfs to overwrite.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `file` is an open descriptor and `st` a valid, writable statvfs.
    if unsafe { libc::fstatvfs(file.as_raw_fd(), &mut st) } != 0 || st.f_blocks == 0 {
        return None;
    }
    Some((st.f_bavail as u64).saturating_mul(st.f_frsize as u64))
}

/// Sizes `file` to `len` bytes and reserves every page (`posix_fallocate`, which tmpfs
/// supports), so that no access through a mapping of it can meet a page without room behind
/// it (`SIGBUS`). Too little room is `NoSpace`, naming what is needed and what is available.
pub(crate) fn reserve(file: &File, len: u64, path: Option<&Path>) -> Result<(), ShmError> {
    let no_space = |available| ShmError::NoSpace {
        path: path.map(Path::to_path_buf),
        needed: len,
        available,
    };
    if let Some(a) = available(file).filter(|&a| a < len) {
        return Err(no_space(Some(a)));
    }
    file.set_len(len)
        .map_err(|e| ShmError::io("truncate", path, e))?;
    let len_off = libc::off_t::try_from(len).map_err(|_| no_space(None))?;
    // SAFETY: `file` is an open descriptor; posix_fallocate allocates its blocks.
    let r = unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, len_off) };
    match r {
        0 => Ok(()),
        libc::ENOSPC | libc::ENOMEM | libc::EFBIG => Err(no_space(available(file))),
        e => Err(ShmError::io(
            "posix_fallocate",
            path,
            io::Error::from_raw_os_error(e),
        )),
    }
}
