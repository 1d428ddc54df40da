//! Helpers for tests that run children: the test binary run again with `PEAKCACHE_SHM_ROLE`
//! naming what to do (each binary's `child` test is the entry point and reads the role with
//! [`role`]), region paths removed on drop, and bounded waits on children.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

pub const ROLE: &str = "PEAKCACHE_SHM_ROLE";
pub const REGION: &str = "PEAKCACHE_SHM_REGION";
pub const ARG: &str = "PEAKCACHE_SHM_ARG";
pub const HOUR: Duration = Duration::from_secs(3600);

/// A region file path unique to this test, removed on drop.
pub struct TempRegion(pub PathBuf);

impl TempRegion {
    pub fn new(name: &str) -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = if Path::new("/dev/shm").is_dir() {
            PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        let p = dir.join(format!(
            "peakcache-test-{}-{}-{name}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_file(&p);
        TempRegion(p)
    }
}

impl Drop for TempRegion {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

pub fn spawn(role: &str, region: &Path, arg: &str) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child", "--nocapture", "--test-threads=1", "-q"])
        .env(ROLE, role)
        .env(REGION, region)
        .env(ARG, arg)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn child")
}

/// Reads the child's stdout until a line starting with `prefix`; returns that line.
pub fn read_until(child: &mut Child, prefix: &str, within: Duration) -> String {
    let out = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    let wanted = prefix.to_string();
    std::thread::spawn(move || {
        let mut reader = BufReader::new(out);
        let mut line = String::new();
        let mut found = None;
        while reader.read_line(&mut line).map(|n| n > 0).unwrap_or(false) {
            if found.is_none() && line.starts_with(&wanted) {
                found = Some(line.trim().to_string());
                let _ = tx.send(found.clone());
            }
            line.clear();
        }
        let _ = tx.send(None);
    });
    match rx.recv_timeout(within) {
        Ok(Some(line)) => line,
        _ => {
            let _ = child.kill();
            panic!("child did not print {prefix:?} within {within:?}");
        }
    }
}

/// Waits for the child to exit successfully within `within`, killing it otherwise.
pub fn finish(mut child: Child, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "child failed: {status}");
            return;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("child still running after {within:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

pub fn kill(mut child: Child) {
    child.kill().expect("SIGKILL");
    child.wait().expect("reap");
}

/// In a child: `(role, region path, argument)`; `None` in the parent (no role set).
pub fn role() -> Option<(String, PathBuf, String)> {
    let role = std::env::var(ROLE).ok()?;
    let path = PathBuf::from(std::env::var(REGION).unwrap());
    Some((role, path, std::env::var(ARG).unwrap_or_default()))
}
