//! How long a snapshot takes to write and to restore: N entries of SIZE bytes (default 10,000 of
//! 1 KiB, a quick check) in a region under /dev/shm, a snapshot on DIR's file system (default the
//! temp directory), restored into a new, empty region, as after a reboot. The README's figures:
//!
//! `cargo run --release -p peakcache-shm --example restore_time 100000 10240` (about 1 GiB)

use peakcache_shm::{Freshness, Lookup, ShmCache};
use std::time::{Duration, Instant};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let n: u64 = args.next().map_or(Ok(10_000), |a| a.parse())?;
    let size: usize = args.next().map_or(Ok(1 << 10), |a| a.parse())?;
    let dir = args.next().map_or_else(std::env::temp_dir, Into::into);
    let shm = std::path::Path::new("/dev/shm");
    let id = std::process::id();
    let (a, b) = (
        shm.join(format!("pc-restore-{id}-a")),
        shm.join(format!("pc-restore-{id}-b")),
    );
    let snap = dir.join(format!("pc-restore-{id}.snapshot"));
    // Room for every record (80 bytes of header, the key, the value, rounded to 64) and slack.
    let heap = n * (size as u64 + 192) * 5 / 4;
    let open = |p: &std::path::Path| {
        ShmCache::builder()
            .max_bytes(heap)
            .max_entries(n * 2)
            .max_object_bytes(size as u64 + 1024)
            .open(p)
            .map(|(c, _)| c)
    };
    let cache = open(&a)?;
    let value = vec![b'x'; size];
    let ttl = Freshness::new(Duration::from_secs(3600));
    for i in 0..n {
        if let Lookup::Miss(fill) = cache.lookup(format!("https://example.com/page/{i}").as_bytes())
        {
            fill.commit(&value, ttl)?;
        }
    }
    let stored = cache.len();
    let t = Instant::now();
    let written = cache.snapshot(&snap)?;
    let write = t.elapsed();
    let bytes = std::fs::metadata(&snap)?.len();
    drop(cache);
    std::fs::remove_file(&a)?;
    let fresh = open(&b)?;
    let t = Instant::now();
    let restored = fresh.restore(&snap)?;
    let restore = t.elapsed();
    println!(
        "{stored} entries of {size} B stored; snapshot {written} entries, {:.1} MiB, written in \
         {:.0} ms; restored {} (skipped {}) into a new region in {:.0} ms ({:.0} MiB/s)",
        bytes as f64 / (1 << 20) as f64,
        write.as_secs_f64() * 1e3,
        restored.restored,
        restored.skipped,
        restore.as_secs_f64() * 1e3,
        bytes as f64 / (1 << 20) as f64 / restore.as_secs_f64()
    );
    drop(fresh);
    std::fs::remove_file(&b)?;
    std::fs::remove_file(&snap)?;
    Ok(())
}
