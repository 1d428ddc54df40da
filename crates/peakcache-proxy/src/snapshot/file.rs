//! The snapshot file, without trusting what is at its path: the same rules as the shared
//! tier's snapshots (`peakcache-shm`).
//!
//! - Read: the path is looked at (`lstat`) before it is opened, opened with `O_NOFOLLOW` (a
//!   symbolic link is not followed) and `O_NONBLOCK` (a FIFO put there does not block), and
//!   checked again on the descriptor: a regular file, owned by this process's user or root,
//!   that no other user may write. Its pages would be served to every visitor.
//! - Written: under a name of its own beside the path (`O_CREAT | O_EXCL | O_NOFOLLOW`, mode
//!   0600), synced, renamed over the path, the directory synced. A file at the path that is not
//!   a proxy snapshot is never replaced: a mistyped path does not destroy someone's file.

use super::format::MAGIC;
use super::SnapshotError;
use std::fs::{File, Metadata, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

pub(super) fn io_error<'a>(
    op: &'static str,
    path: &'a Path,
) -> impl FnOnce(io::Error) -> SnapshotError + 'a {
    move |source| SnapshotError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// What a file is, in words.
fn kind(md: &Metadata) -> &'static str {
    let t = md.file_type();
    if t.is_file() {
        "regular file"
    } else if t.is_symlink() {
        "symbolic link"
    } else if t.is_dir() {
        "directory"
    } else {
        "special file"
    }
}

/// This process's effective user.
fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// Whether a snapshot found at `path` may be restored: a regular file, owned by this process's
/// user or root, that no other user may write.
fn check_trust(path: &Path, md: &Metadata) -> Result<(), SnapshotError> {
    let refused = |reason: String| SnapshotError::Refused {
        path: path.to_path_buf(),
        reason,
    };
    if !md.file_type().is_file() {
        return Err(refused(format!(
            "a snapshot must be a regular file, this is a {}",
            kind(md)
        )));
    }
    if md.uid() != euid() && md.uid() != 0 {
        return Err(refused(format!(
            "owned by uid {}: a snapshot must be owned by this process's user (uid {}) or \
             root, since its pages would be served to every visitor",
            md.uid(),
            euid()
        )));
    }
    if md.mode() & 0o022 != 0 {
        return Err(refused(format!(
            "mode {:o}: other users may write it, and its pages would be served to every \
             visitor",
            md.mode() & 0o7777
        )));
    }
    Ok(())
}

/// Opens the snapshot at `path` for reading after checking what the path names and what was
/// opened; returns it and its length.
pub(super) fn open_checked(path: &Path) -> Result<(File, u64), SnapshotError> {
    match std::fs::symlink_metadata(path) {
        Ok(md) => check_trust(path, &md)?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(SnapshotError::Missing(path.to_path_buf()))
        }
        Err(e) => return Err(io_error("stat", path)(e)),
    }
    let file = OpenOptions::new()
        .read(true)
        // Replaced by a symbolic link since: not followed (ELOOP); by a FIFO: not blocking.
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(io_error("open", path))?;
    let md = file.metadata().map_err(io_error("fstat", path))?;
    check_trust(path, &md)?;
    Ok((file, md.len()))
}

/// Refuses to replace what is at `path` unless it is a regular file holding a proxy snapshot
/// (of any version, whole or not), an empty file, or nothing.
pub(super) fn check_replaceable(path: &Path) -> Result<(), SnapshotError> {
    let md = match std::fs::symlink_metadata(path) {
        Ok(md) => md,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_error("stat", path)(e)),
    };
    if !md.file_type().is_file() {
        return Err(SnapshotError::Refused {
            path: path.to_path_buf(),
            reason: format!("a {} is there, not a snapshot: not replaced", kind(&md)),
        });
    }
    if md.len() == 0 {
        return Ok(());
    }
    let mut magic = [0u8; 8];
    let read = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .and_then(|mut f| f.read_exact(&mut magic));
    if read.is_err() || &magic != MAGIC {
        return Err(SnapshotError::Refused {
            path: path.to_path_buf(),
            reason: "the file there is not a peakcache-proxy snapshot: not replaced (remove it, \
                     or give another path)"
                .into(),
        });
    }
    Ok(())
}

/// A file being written under a temporary name beside its final path; removed unless renamed.
pub(super) struct TempFile {
    pub(super) file: File,
    pub(super) path: PathBuf,
    placed: bool,
}

impl TempFile {
    /// A new file beside `path`, made exclusively (nothing followed or reused) with mode 0600.
    pub(super) fn create(path: &Path) -> Result<TempFile, SnapshotError> {
        static MADE: AtomicU64 = AtomicU64::new(0);
        let mut name = path.as_os_str().to_owned();
        name.push(format!(
            ".tmp.{}.{}",
            std::process::id(),
            MADE.fetch_add(1, Ordering::Relaxed)
        ));
        let temp = PathBuf::from(name);
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NOCTTY)
            .open(&temp)
            .map_err(io_error("create", &temp))?;
        Ok(TempFile {
            file,
            path: temp,
            placed: false,
        })
    }

    /// Puts the file at `path` (replacing what is there) and syncs the directory, so that the
    /// new name survives a crash too.
    pub(super) fn rename_to(mut self, path: &Path) -> Result<(), SnapshotError> {
        std::fs::rename(&self.path, path).map_err(io_error("rename", path))?;
        self.placed = true;
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io_error("fsync", dir))
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.placed {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}
