//! One cache shared by several processes: 4 worker processes (this program started again
//! with `worker`) look the same key up at once in one region file; one of them computes the
//! value, the others wait for it across processes and read it from the region.
//!
//! `cargo run -p peakcache-shm --example processes`

use peakcache_shm::{Freshness, Lookup, Resolved, ShmCache};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

const KEY: &[u8] = b"/spring";

/// One worker process: serves KEY and says whether it computed the value or was given it.
fn worker(region: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let (cache, _opened) = ShmCache::builder().max_bytes(4 << 20).open(region)?;
    let ttl = Freshness::new(Duration::from_secs(60));
    let compute = || {
        std::thread::sleep(Duration::from_millis(300)); // the expensive part
        b"<h1>Spring campaign</h1>".to_vec()
    };
    let (how, value) = match cache.lookup(KEY) {
        Lookup::Fresh(hit) | Lookup::Stale(hit, _) => ("hit", hit.into_value().to_vec()),
        Lookup::Miss(fill) => {
            let value = compute();
            fill.commit(&value, ttl)?;
            ("computed", value)
        }
        Lookup::Wait(waiter) => match waiter.wait(Duration::from_secs(5)) {
            Resolved::Hit(hit) => ("waited", hit.into_value().to_vec()),
            _ => ("computed alone", compute()),
        },
        Lookup::Pass => ("computed alone", compute()),
    };
    println!("{how} {}", String::from_utf8_lossy(&value));
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() == 3 && args[1] == "worker" {
        return worker(Path::new(&args[2]));
    }
    let dir = std::env::temp_dir().join(format!("peakcache-example-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let region = dir.join("cache.shm");
    // The parent creates the region, so the workers all attach to the same one.
    drop(ShmCache::builder().max_bytes(4 << 20).open(&region)?);

    let workers: Vec<_> = (0..4)
        .map(|_| {
            Command::new(&args[0])
                .arg("worker")
                .arg(&region)
                .stdout(Stdio::piped())
                .spawn()
        })
        .collect::<Result<_, _>>()?;
    let mut computed = 0;
    for child in workers {
        let said = String::from_utf8(child.wait_with_output()?.stdout)?;
        print!("worker: {said}");
        computed += usize::from(said.starts_with("computed"));
    }
    std::fs::remove_dir_all(&dir)?;
    assert_eq!(computed, 1, "one process computes, the others wait for it");
    Ok(())
}
