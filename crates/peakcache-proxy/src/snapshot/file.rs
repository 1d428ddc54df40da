//! The snapshot file, without trusting what is at its path: the shared tier's own rules and
//! code (`peakcache_shm::file`).
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
use peakcache_shm::file::{self, NewFile};
use peakcache_shm::ShmError;
use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

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

/// A refusal or failure of the shared tier's file rules, as a snapshot error about `path`.
fn from_shm(path: &Path, e: ShmError) -> SnapshotError {
    match e {
        ShmError::Io {
            op,
            path: at,
            source,
        } => SnapshotError::Io {
            op,
            path: at.unwrap_or_else(|| path.to_path_buf()),
            source,
        },
        ShmError::Refused {
            kind,
            uid,
            gid,
            mode,
            reason,
            ..
        } => SnapshotError::Refused {
            path: path.to_path_buf(),
            reason: format!(
                "a {kind} owned by uid {uid} (gid {gid}) with mode {mode:04o}: {reason}"
            ),
        },
        e => SnapshotError::Refused {
            path: path.to_path_buf(),
            reason: e.to_string(),
        },
    }
}

/// Opens the snapshot at `path` for reading as the shared tier opens its own (nothing followed,
/// a regular file owned by this process's user or root that no other user may write: its pages
/// would be served to every visitor); returns it and its length.
pub(super) fn open_checked(path: &Path) -> Result<(File, u64), SnapshotError> {
    let file = file::open_trusted(path)
        .map_err(|e| from_shm(path, e))?
        .ok_or_else(|| SnapshotError::Missing(path.to_path_buf()))?;
    let len = file.metadata().map_err(io_error("fstat", path))?.len();
    Ok((file, len))
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
            reason: format!(
                "a {} is there, not a snapshot: not replaced",
                file::kind(&md)
            ),
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

/// A new file beside `path` (exclusive, nothing followed, mode 0600), removed unless put in
/// place with [`place`].
pub(super) fn create_temp(path: &Path) -> Result<NewFile, SnapshotError> {
    NewFile::create(path, 0o600, None).map_err(|e| from_shm(path, e))
}

/// Puts `temp` at `path` (replacing what is there) and syncs the directory.
pub(super) fn place(temp: NewFile, path: &Path) -> Result<(), SnapshotError> {
    temp.replace(path).map_err(|e| from_shm(path, e))
}
