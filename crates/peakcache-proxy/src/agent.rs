//! The host agent: `peakcache-proxy --region PATH --cluster redis://HOST:PORT`, one process per
//! host that joins the host's shared memory region (an nginx shared zone, a PHP-FPM pool's
//! cache) to the cluster.
//!
//! - **The region's purges reach every host.** Every purge an nginx worker or a PHP worker
//!   makes in the region is recorded in the region's purge journal (`peakcache-shm`); the
//!   agent follows it (woken by a futex, no polling) and publishes each purge on the bus. A
//!   purge it cannot know (the journal went round before it read it, one that could not be
//!   recorded) is published as a soft purge of everything.
//! - **The bus's purges reach every process of the host.** The agent applies other hosts'
//!   purges to the region (a key purge also purges the key's variants, which are tagged with
//!   it), marked as coming from the cluster so that it never publishes them back.
//! - **Bounded staleness applies to the region.** Cut off from the bus longer than `max_lag`,
//!   the agent marks every entry of the region stale (one mark, constant time) until it has
//!   caught up, as the proxy does with its own cache.
//! - **Restarts lose nothing.** The agent keeps its place in the journal and on the bus in the
//!   region (the region's follower state): started again, it publishes the purges made while
//!   it was away and applies those it missed on the bus (or, if the bus no longer holds them,
//!   marks everything stale). Its place in the journal is saved only once what it read is
//!   published, so purges waiting for Redis are published again after a restart rather than
//!   lost. A region that has never had an agent is marked stale once when the agent first
//!   reads the bus (its entries were stored without the cluster's purges), and its earlier
//!   purges are not published (they predate the cluster).
//! - **One agent per region**: a second one exits, naming the first's pid. A region file that
//!   the host replaces (nginx after a change of the zone's size) is noticed within a second and
//!   followed from its first purge.
//! - **It runs as the region's owner**: the user of the nginx workers (`www-data`) or of the
//!   PHP-FPM pool. The region file is refused to anyone else (`peakcache-shm`: a file of
//!   another user could be planted), so an agent run as another user stops at once, saying
//!   who owns the file.
//!
//! With `--origin`, the agent is also the host's **shield**: nginx sends its misses to it
//! (`proxy_pass`), and it answers from a small cache of its own, the cluster's second-level
//! cache in Redis, or the origin under the cluster's fill lease (one origin request per page
//! for the whole cluster). Its cache is a plain in-process one, not the region: the region's
//! fill for a page is held by the nginx worker that asks the shield, so the shield filling the
//! same key in the region would wait for itself. Every purge reaches the shield's cache too:
//! the bus's, and the region's own as the agent reads them from the journal. The shield hears
//! only nginx: a key takes its scheme from `X-Forwarded-Proto` (so it is nginx's key, which
//! nginx's URL purges name), and the origin's `Surrogate-Key` and targeted fields go on to
//! nginx (its tag purges need the tags). Give nginx's upstream the origin as a `backup`
//! server: with the agent stopped, misses go straight to the origin instead of failing.
//!
//! While the agent is stopped, the host's workers go on serving from the region without the
//! cluster's purges (nothing bounds their staleness then); started again, it applies what it
//! missed. Run it under a supervisor that restarts it, and alert on
//! `peakcache_cluster_caught_up`. A zone or pool without a file (an anonymous mapping) cannot
//! join: the agent needs the file.

use parking_lot::{Mutex, RwLock};
use peakcache::PurgeMode;
use peakcache_cluster::{BusPosition, Cluster, LocalCache, Purge, Start};
use peakcache_shm::{
    Follower, JournalCursor, JournalEvent, JournalOp, LostReason, PurgeOrigin, ShmCache, ShmError,
};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use tracing::{error, info, warn};

/// Records read from the journal at once.
const BATCH: usize = 256;
/// The longest the follower sleeps without looking at the journal and the region file.
const TICK: Duration = Duration::from_millis(200);
/// How often the region file is looked at (a host may have replaced it).
const FILE_CHECK: Duration = Duration::from_secs(1);
/// The version of the state the agent keeps in the region.
const STATE_VERSION: u8 = 1;

/// The region the agent follows now, and its claim on it.
struct Attached {
    /// Where the bus's purges are applied: marked as the cluster's in the journal.
    from_cluster: ShmCache,
    follower: Follower,
}

/// What the agent keeps in the region: the cluster it belongs to, how far its purges are
/// published, and how far it has applied the bus.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Saved {
    cluster: u64,
    journal: Option<JournalCursor>,
    bus: Option<BusPosition>,
}

impl Saved {
    fn encode(&self) -> Vec<u8> {
        let mut out = vec![STATE_VERSION];
        out.extend_from_slice(&self.cluster.to_le_bytes());
        match &self.journal {
            Some(c) => {
                out.push(1);
                out.extend_from_slice(&c.to_bytes());
            }
            None => out.push(0),
        }
        if let Some(b) = &self.bus {
            out.extend_from_slice(&b.to_bytes());
        }
        out
    }

    fn decode(bytes: &[u8]) -> Option<Saved> {
        let (&version, rest) = bytes.split_first()?;
        if version != STATE_VERSION {
            return None;
        }
        let (cluster, rest) = rest.split_at_checked(8)?;
        let (&has_journal, rest) = rest.split_first()?;
        let (journal, rest) = match has_journal {
            0 => (None, rest),
            1 => {
                let (c, rest) = rest.split_at_checked(JournalCursor::BYTES)?;
                (Some(JournalCursor::from_bytes(c)?), rest)
            }
            _ => return None,
        };
        let bus = match rest {
            [] => None,
            b => Some(BusPosition::from_bytes(b)?),
        };
        Some(Saved {
            cluster: u64::from_le_bytes(cluster.try_into().ok()?),
            journal,
            bus,
        })
    }
}

/// Which cluster a saved state belongs to: FNV-1a over its server and name (stable across
/// builds, unlike std's hasher).
fn cluster_id(config: &peakcache_cluster::Config) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in config.url.bytes().chain([0]).chain(config.name.bytes()) {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// What the agent counts (on `/metrics` as `peakcache_agent_*`).
#[derive(Default)]
struct Counters {
    published: AtomicU64,
    from_cluster: AtomicU64,
    lost: [AtomicU64; 3],
    reattached: AtomicU64,
}

fn lost_index(why: LostReason) -> usize {
    match why {
        LostReason::Overwritten => 0,
        LostReason::Unrecorded => 1,
        LostReason::Torn => 2,
    }
}

/// What the agent's parts share.
struct Inner {
    path: PathBuf,
    region: RwLock<Arc<Attached>>,
    saved: Mutex<Saved>,
    /// The shield's caches, when this process serves.
    shield: OnceLock<Arc<dyn LocalCache>>,
    /// Taken when the agent stops: the link holds this (through `HostPurges`), so keeping it
    /// would keep both alive.
    cluster: Mutex<Option<Cluster>>,
    counters: Counters,
    stop: AtomicBool,
}

/// The host agent of one region. Dropping it stops following the journal and gives up the
/// region's follower claim (the cluster link stops with its last clone).
pub struct Agent {
    inner: Arc<Inner>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

/// Purges as the cluster sees the host: the region, and the shield's caches if any.
struct HostPurges(Arc<Inner>);

impl LocalCache for HostPurges {
    fn apply(&self, purge: &Purge) {
        let region = self.0.region.read().clone();
        apply_to_region(&region.from_cluster, purge);
        if let Some(shield) = self.0.shield.get() {
            shield.apply(purge);
        }
    }

    fn caught_up(&self, position: &BusPosition) {
        let mut saved = self.0.saved.lock();
        saved.bus = Some(position.clone());
        self.0.save(&saved);
    }
}

/// Applies a purge from the bus to the region.
fn apply_to_region(region: &ShmCache, purge: &Purge) {
    match purge {
        // Variants are tagged with their primary key (nginx, the HTTP family of the C ABI).
        Purge::Key { key, mode } => {
            region.purge(key, *mode);
            region.purge_tag(key, *mode);
        }
        Purge::Tag { tag, mode } => region.purge_tag(tag, *mode),
        Purge::Everything { mode } => region.purge_everything(*mode),
        Purge::Freeze => region.freeze(true),
        Purge::Thaw => region.freeze(false),
    }
}

/// A journal record as the bus carries it.
fn to_purge(op: JournalOp, mode: PurgeMode) -> Purge {
    match op {
        JournalOp::Key(key) => Purge::Key { key, mode },
        JournalOp::Tag(tag) => Purge::Tag { tag, mode },
        JournalOp::Everything => Purge::Everything { mode },
        JournalOp::Freeze => Purge::Freeze,
        JournalOp::Thaw => Purge::Thaw,
    }
}

/// Attaches to the region at `path` and claims it; waits for a file that does not exist yet
/// (the host has not started), gives up at once on anything else.
fn attach(path: &Path) -> Result<Attached, String> {
    let mut said = false;
    loop {
        match ShmCache::builder().attach(path) {
            Ok(cache) => {
                let follower = cache
                    .follow()
                    .map_err(|e| format!("region {}: {e}: one agent per region", path.display()))?;
                return Ok(Attached {
                    from_cluster: cache.with_origin(PurgeOrigin::Cluster),
                    follower,
                });
            }
            Err(ShmError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                if !said {
                    info!(
                        "waiting for region {} (not made yet: is the host \
                         started?)",
                        path.display()
                    );
                    said = true;
                }
                std::thread::sleep(FILE_CHECK);
            }
            Err(e) => {
                return Err(format!(
                    "region {}: {e} (run the agent as the region's owner: the nginx worker \
                     user, or the PHP-FPM pool's user)",
                    path.display()
                ))
            }
        }
    }
}

impl Inner {
    /// Saves `saved` in the region.
    fn save(&self, saved: &Saved) {
        self.region.read().follower.save(&saved.encode());
    }

    fn cluster(&self) -> Option<Cluster> {
        self.cluster.lock().clone()
    }

    /// Hands a purge read from the journal to the shield and the bus.
    fn publish(&self, purge: Purge) {
        if let Some(shield) = self.shield.get() {
            shield.apply(&purge);
        }
        if let Some(cluster) = self.cluster() {
            cluster.publish(purge);
        }
        self.counters.published.fetch_add(1, Ordering::Relaxed);
    }

    /// Acts on what the journal said.
    fn handle(&self, events: Vec<JournalEvent>) {
        for event in events {
            match event {
                JournalEvent::Record(r) if r.origin == PurgeOrigin::Cluster => {
                    // Applied from the bus: every host has it already.
                    self.counters.from_cluster.fetch_add(1, Ordering::Relaxed);
                }
                JournalEvent::Record(r) => self.publish(to_purge(r.op, r.mode)),
                JournalEvent::Lost { purges, why } => {
                    warn!(
                        "{purges} purge(s) of region {} could not be read \
                         ({}): publishing a soft purge of everything",
                        self.path.display(),
                        why.as_str()
                    );
                    self.counters.lost[lost_index(why)].fetch_add(purges, Ordering::Relaxed);
                    self.publish(Purge::Everything {
                        mode: PurgeMode::Soft,
                    });
                }
            }
        }
    }

    /// Follows the region's journal until told to stop.
    fn follow(&self, mut cursor: JournalCursor) {
        let mut checked = Instant::now();
        while !self.stop.load(Ordering::Relaxed) {
            let region = self.region.read().clone();
            let cache = region.follower.cache();
            cache.wait_journal(&cursor, TICK);
            let events = cache.read_journal(&mut cursor, BATCH);
            self.handle(events);
            let published = self.cluster().is_none_or(|c| c.unpublished() == 0);
            let mut saved = self.saved.lock();
            if published && saved.journal != Some(cursor) {
                saved.journal = Some(cursor);
                self.save(&saved);
            }
            drop(saved);
            if checked.elapsed() >= FILE_CHECK {
                checked = Instant::now();
                if let Some(next) = self.replaced(&region, &mut cursor) {
                    cursor = next;
                }
            }
        }
    }

    /// If the host replaced the region file, publishes what is left in the old region's
    /// journal (`cursor`), then follows the new region from its first purge and returns the
    /// cursor to read it from.
    fn replaced(&self, region: &Attached, cursor: &mut JournalCursor) -> Option<JournalCursor> {
        use std::os::unix::fs::MetadataExt;
        let now = std::fs::metadata(&self.path)
            .ok()
            .map(|m| (m.dev(), m.ino()))?;
        if Some(now) == region.follower.cache().file_id() {
            return None;
        }
        loop {
            let events = region.follower.cache().read_journal(cursor, BATCH);
            if events.is_empty() {
                break;
            }
            self.handle(events);
        }
        let attached = match attach(&self.path) {
            Ok(a) => a,
            Err(e) => {
                error!("the region file was replaced: {e}");
                return None;
            }
        };
        warn!(
            "region {} was replaced by the host: following the new one",
            self.path.display()
        );
        // Its entries were stored while the bus was applied to the old region.
        attached.from_cluster.purge_everything(PurgeMode::Soft);
        *self.region.write() = Arc::new(attached);
        self.counters.reattached.fetch_add(1, Ordering::Relaxed);
        let cursor = JournalCursor::default();
        let mut saved = self.saved.lock();
        saved.journal = Some(cursor);
        self.save(&saved);
        Some(cursor)
    }
}

impl Agent {
    /// Attaches to the region at `path` (waiting for the host to make it) and claims it for
    /// this process. Errors: the file is refused (another owner, a link, group or world
    /// access), is not a region of this version, or another live agent follows it.
    pub fn attach(path: &Path, cluster: &peakcache_cluster::Config) -> Result<Agent, String> {
        let attached = attach(path)?;
        let id = cluster_id(cluster);
        let saved = attached
            .follower
            .state()
            .and_then(|s| Saved::decode(&s))
            .filter(|s| s.cluster == id)
            .unwrap_or(Saved {
                cluster: id,
                ..Saved::default()
            });
        Ok(Agent {
            inner: Arc::new(Inner {
                path: path.to_path_buf(),
                region: RwLock::new(Arc::new(attached)),
                saved: Mutex::new(saved),
                shield: OnceLock::new(),
                cluster: Mutex::new(None),
                counters: Counters::default(),
                stop: AtomicBool::new(false),
            }),
            thread: Mutex::new(None),
        })
    }

    /// Starts the cluster link (on the current Tokio runtime) and the journal's follower: the
    /// bus from where this region's last agent stopped (or, for a region that never had one,
    /// after marking it stale), the journal likewise (or from now). With `shield`, purges
    /// reach the shield's caches too. Returns the link (for the shield's proxy).
    pub fn join(
        &self,
        config: peakcache_cluster::Config,
        shield: Option<Arc<dyn LocalCache>>,
    ) -> Result<Cluster, String> {
        let inner = &self.inner;
        if inner.cluster.lock().is_some() {
            return Err("the agent has joined its cluster already".into());
        }
        if let Some(s) = shield {
            let _ = inner.shield.set(s);
        }
        let saved = inner.saved.lock().clone();
        let start = match saved.bus {
            Some(p) => Start::Resume(p),
            None => Start::Unknown,
        };
        let cursor = saved
            .journal
            .unwrap_or_else(|| inner.region.read().follower.cache().journal_end());
        let cluster = Cluster::start_from(config, Arc::new(HostPurges(inner.clone())), start)
            .map_err(|e| e.to_string())?;
        *inner.cluster.lock() = Some(cluster.clone());
        info!(
            "region {} joined cluster {} on {}: {} the journal at purge {}",
            inner.path.display(),
            cluster.config().name,
            cluster.config().url,
            if saved.journal.is_some() {
                "resuming"
            } else {
                "following"
            },
            cursor.seq()
        );
        let follower = inner.clone();
        let thread = std::thread::Builder::new()
            .name("peakcache-agent".into())
            .spawn(move || follower.follow(cursor))
            .map_err(|e| format!("cannot start the journal's follower: {e}"))?;
        *self.thread.lock() = Some(thread);
        Ok(cluster)
    }

    /// The cluster link, once joined.
    pub fn cluster(&self) -> Option<Cluster> {
        self.inner.cluster()
    }

    /// The region followed now.
    pub fn region(&self) -> ShmCache {
        self.inner.region.read().follower.cache().clone()
    }

    /// Applies `purge` to the region as a local purge: the journal carries it to the shield
    /// and the other hosts (the agent's admin listener).
    pub fn purge(&self, purge: &Purge) {
        apply_to_region(&self.region(), purge);
    }

    /// The agent's, the region's and the cluster link's counters, Prometheus text.
    pub fn metrics(&self) -> String {
        let c = &self.inner.counters;
        let region = self.region();
        let info = region.region_info();
        let mut out = region.stats().to_prometheus("peakcache_region");
        let mut family = |name: &str, kind: &str, help: &str, rows: &[(&str, u64)]| {
            let _ = writeln!(out, "# HELP peakcache_agent_{name} {help}");
            let _ = writeln!(out, "# TYPE peakcache_agent_{name} {kind}");
            for (labels, v) in rows {
                let _ = writeln!(out, "peakcache_agent_{name}{labels} {v}");
            }
        };
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        family(
            "published_total",
            "counter",
            "The region's own purges read from its journal and published to the cluster.",
            &[("", get(&c.published))],
        );
        family(
            "from_cluster_total",
            "counter",
            "Journal records of purges applied from the bus (not published back).",
            &[("", get(&c.from_cluster))],
        );
        family(
            "journal_lost_total",
            "counter",
            "Purges of the region that could not be read (a soft purge of everything was published instead).",
            &[
                ("{reason=\"overwritten\"}", get(&c.lost[0])),
                ("{reason=\"unrecorded\"}", get(&c.lost[1])),
                ("{reason=\"torn\"}", get(&c.lost[2])),
            ],
        );
        family(
            "region_replaced_total",
            "counter",
            "Times the host replaced the region file and the agent followed the new one.",
            &[("", get(&c.reattached))],
        );
        family(
            "journal_records_total",
            "counter",
            "Purges recorded in the region's journal since the region was made.",
            &[("", info.journal_records)],
        );
        if let Some(cluster) = self.cluster() {
            out.push_str(&cluster.stats().to_prometheus("peakcache_cluster"));
        }
        out
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.inner.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.lock().take() {
            let _ = t.join();
        }
        self.inner.cluster.lock().take();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_saved_state_reads_back_and_refuses_what_it_does_not_know() {
        let bus = BusPosition::from_bytes(&[7, 0, 0, 0, 0, 0, 0, 0, b'1', b'-', b'0']).unwrap();
        let full = Saved {
            cluster: 42,
            journal: Some(JournalCursor::default()),
            bus: Some(bus),
        };
        assert_eq!(Saved::decode(&full.encode()), Some(full.clone()));
        assert!(full.encode().len() <= peakcache_shm::FOLLOWER_STATE_MAX);
        let empty = Saved {
            cluster: 1,
            ..Saved::default()
        };
        assert_eq!(Saved::decode(&empty.encode()), Some(empty));
        assert_eq!(Saved::decode(&[9, 1, 2]), None, "another version");
        assert_eq!(Saved::decode(&[]), None);
    }

    #[test]
    fn the_cluster_id_names_the_server_and_the_cluster() {
        let a = peakcache_cluster::Config::new("redis://r:6379");
        let mut b = a.clone();
        b.name = "shop".into();
        assert_ne!(cluster_id(&a), cluster_id(&b));
        assert_eq!(cluster_id(&a), cluster_id(&a.clone()));
    }
}
