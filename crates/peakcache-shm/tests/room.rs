//! No SIGBUS: a region's pages are reserved when it is made, so a file system too small for it
//! (Docker's 64 MiB /dev/shm, say) is an error at start-up, naming the size needed and the
//! room available, instead of a worker killed later when it first writes a page with no room
//! behind it.
//!
//! Each test mounts a small tmpfs of its own (these tests run as root, as `make test` does
//! here) and unmounts it at the end, also when the test fails.

use peakcache::Freshness;
use peakcache_shm::{Opened, ShmCache, ShmError};
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

const MIB: u64 = 1 << 20;

/// A tmpfs of `size_mib` mounted on a new directory; unmounted and removed on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(name: &str, size_mib: u64) -> Tmpfs {
        let dir =
            std::env::temp_dir().join(format!("peakcache-room-{}-{name}", std::process::id()));
        let _ = std::fs::create_dir(&dir);
        let target = CString::new(dir.as_os_str().as_bytes()).unwrap();
        let data = CString::new(format!("size={size_mib}m,mode=0700")).unwrap();
        // SAFETY: valid NUL-terminated strings; mounts a new tmpfs on our own directory.
        let r = unsafe {
            libc::mount(
                c"tmpfs".as_ptr(),
                target.as_ptr(),
                c"tmpfs".as_ptr(),
                0,
                data.as_ptr().cast(),
            )
        };
        if r != 0 {
            let e = std::io::Error::last_os_error();
            let _ = std::fs::remove_dir(&dir);
            panic!(
                "mount -t tmpfs -o size={size_mib}m on {} failed: {e} (these tests need root)",
                dir.display()
            );
        }
        Tmpfs(dir)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    fn names(&self) -> Vec<String> {
        std::fs::read_dir(&self.0)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let target = CString::new(self.0.as_os_str().as_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path: our own mount point.
        unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
        let _ = std::fs::remove_dir(&self.0);
    }
}

fn available(dir: &Path) -> u64 {
    let p = CString::new(dir.as_os_str().as_bytes()).unwrap();
    // SAFETY: an all-zero statvfs is valid to overwrite; the path is NUL-terminated.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    assert_eq!(unsafe { libc::statvfs(p.as_ptr(), &mut st) }, 0);
    st.f_bavail as u64 * st.f_frsize as u64
}

#[test]
fn a_region_larger_than_its_file_system_fails_at_creation_naming_need_and_room() {
    let fs = Tmpfs::mount("big", 8);
    let path = fs.path("region");
    let err = ShmCache::builder()
        .max_bytes(64 * MIB)
        .open(&path)
        .err()
        .expect("a 64 MiB region in an 8 MiB tmpfs must fail at creation");
    let msg = err.to_string();
    let ShmError::NoSpace {
        needed, available, ..
    } = err
    else {
        panic!("expected NoSpace, got {err}")
    };
    assert!(needed >= 64 * MIB, "{needed}");
    assert!(available.is_some_and(|a| a <= 8 * MIB), "{available:?}");
    assert!(msg.contains(&needed.to_string()), "{msg}");
    assert!(msg.contains(&available.unwrap().to_string()), "{msg}");
    assert!(msg.contains(&path.display().to_string()), "{msg}");
    assert!(
        fs.names().is_empty(),
        "nothing left behind: {:?}",
        fs.names()
    );
}

#[test]
fn a_region_that_fits_owns_its_pages_and_the_next_one_is_refused_up_front() {
    let fs = Tmpfs::mount("fits", 8);
    let before = available(&fs.0);
    let builder = || ShmCache::builder().max_bytes(3 * MIB).shards(1);
    let (first, opened) = builder().open(fs.path("first")).unwrap();
    assert_eq!(opened, Opened::Created);
    let size = first.region_info().region_bytes;
    assert!(
        before - available(&fs.0) >= size,
        "the region's {size} bytes are reserved on the file system"
    );
    // A second region no longer fits: refused now, not by a SIGBUS later.
    let err = builder()
        .open(fs.path("second"))
        .err()
        .expect("no room left");
    assert!(matches!(err, ShmError::NoSpace { .. }), "{err}");
    assert_eq!(fs.names(), ["first"]);
    // Every page of the first is usable: fill it well past its capacity.
    let ttl = Freshness::new(Duration::from_secs(3600));
    for i in 0..20_000u32 {
        first
            .insert(&i.to_le_bytes(), &[i as u8; 600], ttl)
            .unwrap();
    }
    let s = first.stats();
    assert!(s.evictions > 0 && s.weight > s.capacity * 9 / 10, "{s:?}");
    assert_eq!(
        first.get(&19_999u32.to_le_bytes()).as_deref(),
        Some(&[31u8; 600][..])
    );
}
