//! The second-level cache in Redis and the cluster's fill leases.

use crate::stats::incr;
use crate::{Cluster, Shared};
use bytes::Bytes;
use peakcache::Freshness;
use redis::{Script, Value};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A committed response as the second-level cache keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct L2Entry {
    /// The host's own encoding of everything but the body (for HTTP: status, header fields
    /// and the facts `Age` needs); the cluster stores it as it is.
    pub head: Bytes,
    /// The body.
    pub body: Bytes,
    /// When the host stored it; its windows count from here.
    pub stored_at: SystemTime,
    /// How long it is fresh, then servable stale, from `stored_at`.
    pub freshness: Freshness,
    /// The primary key whose purge retires it (a `Purge::Key` names the primary key of every
    /// variant).
    pub primary: Bytes,
    /// Its tags, whose purges retire it.
    pub tags: Vec<Bytes>,
}

/// Why a host cannot use a second-level copy it was handed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reject {
    /// The copy could not be decoded (counted as an error).
    Unreadable,
    /// The copy answers another request (for HTTP: another variant); counted as a miss.
    OtherVariant,
}

/// What [`Cluster::lookup`] found.
pub enum L2Lookup<T> {
    /// A fresh copy from the second-level cache, as the host's `accept` turned it.
    Hit(T),
    /// Fetch from the origin, holding the lease if it was won; hand the answer to
    /// [`Lease::put`], or drop the lease if there is nothing to store.
    Fetch(Lease),
}

/// The right to fill a key for the whole cluster (when [`is_held`](Lease::is_held)), and the
/// purge number read before the fetch, which makes a second-level copy safe to write.
/// Dropped, it is released and the hosts waiting for it are woken (they then fetch).
#[must_use = "a dropped lease is released without a copy: other hosts then fetch"]
pub struct Lease {
    shared: Arc<Shared>,
    key: Bytes,
    token: Option<String>,
    seq: Option<u64>,
}

/// A copy, or the lease: one round trip for a local miss.
///
/// The copy is usable while fresh and while no purge of its primary key, of one of its tags or
/// of everything is newer than the purge number it was fetched under. A purged copy is deleted.
/// KEYS: entry, lease, counter, version of everything. ARGV: token, lease ms, now (unix ms),
/// version key prefix, '1' for a copy or '0' for the lease only.
const GET_OR_LEASE: &str = r"
local function newer(key, s)
  local v = redis.call('GET', key)
  return v and tonumber(v) > s
end
local function usable()
  local e = redis.call('HMGET', KEYS[1], 's', 'f', 'k', 't')
  if not e[1] or not e[2] or not e[3] or not e[4] then return false end
  if tonumber(e[2]) <= tonumber(ARGV[3]) then return false end
  local s = tonumber(e[1])
  local purged = newer(KEYS[4], s) or newer(ARGV[4] .. 'k:' .. e[3], s)
  local t, i = e[4], 1
  while not purged and i <= #t do
    local n, at = struct.unpack('>I4', t, i)
    purged = newer(ARGV[4] .. 't:' .. string.sub(t, at, at + n - 1), s)
    i = at + n
  end
  if purged then redis.call('DEL', KEYS[1]) end
  return not purged
end
if ARGV[5] == '1' and usable() then
  local e = redis.call('HMGET', KEYS[1], 'h', 'b', 'm', 'k', 't')
  return {1, e[1], e[2], e[3], e[4], e[5]}
end
local seq = tonumber(redis.call('GET', KEYS[3]) or '0')
if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return {2, seq}
end
return {3, seq, redis.call('PTTL', KEYS[2])}
";

/// Writes a copy, releases the lease (compare-and-delete: only the holder's token deletes it)
/// and announces the key.
///
/// The race this avoids: a purge that lands while the response is being fetched. The versions
/// are compared with the purge number read *before* the fetch (with the lease), not with one
/// read now: a purge of one of its tags between the origin's answer and this write has a
/// higher number, so the old copy is not written here, nor handed out by `GET_OR_LEASE` if
/// the purge comes later still.
/// KEYS: entry, lease, versions (everything, primary key, each tag). ARGV: token ('' for
/// none), purge number, expiry ms, channel, key, head, body, times, fresh-until ms, primary,
/// tags.
const PUT: &str = r"
local s = tonumber(ARGV[2])
local purged = false
for i = 3, #KEYS do
  local v = redis.call('GET', KEYS[i])
  if v and tonumber(v) > s then purged = true end
end
if not purged then
  redis.call('DEL', KEYS[1])
  redis.call('HSET', KEYS[1], 'h', ARGV[6], 'b', ARGV[7], 'm', ARGV[8], 'f', ARGV[9],
    's', ARGV[2], 'k', ARGV[10], 't', ARGV[11])
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
end
if ARGV[1] ~= '' and redis.call('GET', KEYS[2]) == ARGV[1] then redis.call('DEL', KEYS[2]) end
redis.call('PUBLISH', ARGV[4], ARGV[5])
if purged then return 0 end
return 1
";

/// Releases a lease without a copy (compare-and-delete) and announces the key, so waiting
/// hosts fetch at once instead of at the lock timeout.
/// KEYS: lease. ARGV: token, channel, key.
const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
redis.call('PUBLISH', ARGV[2], ARGV[3])
return 1
";

/// What the lookup script answered.
enum Answer {
    Copy(Option<L2Entry>),
    Won(u64),
    Lost(u64, Duration),
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn ms(d: Duration) -> u64 {
    d.as_millis() as u64
}

impl L2Entry {
    /// Its freshness if stored again at `now` (the windows it has left): what a host inserts
    /// when it takes the copy.
    pub fn remaining(&self, now: SystemTime) -> Freshness {
        let age = now.duration_since(self.stored_at).unwrap_or_default();
        let f = self.freshness;
        let stale_for = age.saturating_sub(f.ttl);
        Freshness::new(f.ttl.saturating_sub(age))
            .with_swr(f.swr.saturating_sub(stale_for))
            .with_sie(f.sie.saturating_sub(stale_for))
    }

    fn fresh_until(&self) -> SystemTime {
        self.stored_at + self.freshness.ttl
    }

    /// How long Redis keeps it: to the end of its last stale window, at most `max`; zero for
    /// a copy that is no longer fresh (it would never be handed out).
    fn expiry(&self, now: SystemTime, max: Duration) -> Duration {
        let f = self.freshness;
        let end = self.fresh_until() + f.swr.max(f.sie);
        if self.fresh_until() <= now {
            return Duration::ZERO;
        }
        end.duration_since(now).unwrap_or_default().min(max)
    }

    fn times(&self) -> Vec<u8> {
        let f = self.freshness;
        [unix_ms(self.stored_at), ms(f.ttl), ms(f.swr), ms(f.sie)]
            .iter()
            .flat_map(|v| v.to_be_bytes())
            .collect()
    }

    fn decode(fields: &[Value]) -> Option<L2Entry> {
        let field = |i: usize| match fields.get(i)? {
            Value::BulkString(b) => Some(b.as_slice()),
            _ => None,
        };
        let times = field(2)?;
        if times.len() != 32 {
            return None;
        }
        let t = |i: usize| {
            let mut b = [0; 8];
            b.copy_from_slice(&times[i * 8..i * 8 + 8]);
            u64::from_be_bytes(b)
        };
        Some(L2Entry {
            head: Bytes::copy_from_slice(field(0)?),
            body: Bytes::copy_from_slice(field(1)?),
            stored_at: UNIX_EPOCH + Duration::from_millis(t(0)),
            freshness: Freshness::new(Duration::from_millis(t(1)))
                .with_swr(Duration::from_millis(t(2)))
                .with_sie(Duration::from_millis(t(3))),
            primary: Bytes::copy_from_slice(field(3)?),
            tags: decode_tags(field(4)?)?,
        })
    }
}

/// Tags as one field: each a 4-byte big-endian length, then its bytes (the lookup script reads
/// them with `struct.unpack('>I4')`).
fn encode_tags(tags: &[Bytes]) -> Vec<u8> {
    let mut out = Vec::new();
    for t in tags {
        out.extend_from_slice(&(t.len() as u32).to_be_bytes());
        out.extend_from_slice(t);
    }
    out
}

fn decode_tags(mut b: &[u8]) -> Option<Vec<Bytes>> {
    let mut tags = Vec::new();
    while !b.is_empty() {
        let (len, rest) = b.split_at_checked(4)?;
        let len = u32::from_be_bytes(len.try_into().ok()?) as usize;
        let (tag, rest) = rest.split_at_checked(len)?;
        tags.push(Bytes::copy_from_slice(tag));
        b = rest;
    }
    Some(tags)
}

fn parse_answer(v: Value) -> Option<Answer> {
    let Value::Array(items) = v else {
        return None;
    };
    let int = |i: usize| match items.get(i)? {
        Value::Int(n) => Some(*n),
        _ => None,
    };
    Some(match int(0)? {
        1 => Answer::Copy(L2Entry::decode(&items[1..])),
        2 => Answer::Won(u64::try_from(int(1)?).ok()?),
        3 => Answer::Lost(
            u64::try_from(int(1)?).ok()?,
            Duration::from_millis(u64::try_from(int(2)?).unwrap_or(0)),
        ),
        _ => return None,
    })
}

impl Cluster {
    /// On a local miss: a fresh second-level copy of `key` that `accept` can use, or the
    /// cluster's lease to fetch it. When another host holds the lease, waits (woken by its
    /// announcement, not polling) for its copy, at most `lock_timeout`; then, or when Redis
    /// is unreachable or slow (`op_timeout`), answers `Fetch` with a lease not held, so the
    /// host fetches alone. Never an error: Redis is an optimisation here.
    pub async fn lookup<T>(
        &self,
        key: &[u8],
        accept: impl Fn(&L2Entry) -> Result<T, Reject>,
    ) -> L2Lookup<T> {
        let shared = &self.shared;
        let lease = |token, seq| Lease {
            shared: shared.clone(),
            key: Bytes::copy_from_slice(key),
            token,
            seq,
        };
        if !shared.available() {
            incr(&shared.counters.l2_bypassed);
            return L2Lookup::Fetch(lease(None, None));
        }
        let token = shared.token();
        let deadline = Instant::now() + shared.config.lock_timeout;
        // A host with purges not yet on the stream could read back what it just purged (their
        // versions are not set yet), and its copy would be refused for a purge number read
        // before them: let them land first, briefly.
        let _ = shared.outbox.drain(shared.config.op_timeout).await;
        let mut lost = false;
        let mut copy_rejected = false;
        loop {
            let want_copy = !copy_rejected && shared.outbox.len() == 0;
            let notify = shared.wakeups.register(key);
            let woken = notify.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            let answer = self.ask(key, &token, want_copy).await;
            if !matches!(answer, Ok(Answer::Lost(..))) {
                shared.wakeups.forget(key, &notify);
            }
            match answer {
                Err(e) => {
                    shared.failed("reading the second-level cache", &e);
                    incr(&shared.counters.l2_errors);
                    return L2Lookup::Fetch(lease(None, None));
                }
                Ok(Answer::Copy(copy)) => match copy.as_ref().map(&accept) {
                    Some(Ok(t)) => {
                        incr(&shared.counters.l2_hits);
                        return L2Lookup::Hit(t);
                    }
                    // Unusable here: ask again, for the lease alone.
                    Some(Err(Reject::OtherVariant)) => copy_rejected = true,
                    Some(Err(Reject::Unreadable)) | None => {
                        incr(&shared.counters.l2_errors);
                        copy_rejected = true;
                    }
                },
                Ok(Answer::Won(seq)) => {
                    incr(&shared.counters.l2_misses);
                    incr(&shared.counters.leases_won);
                    return L2Lookup::Fetch(lease(Some(token), Some(seq)));
                }
                Ok(Answer::Lost(seq, left)) => {
                    if !lost {
                        lost = true;
                        incr(&shared.counters.leases_lost);
                    }
                    let now = Instant::now();
                    if now >= deadline {
                        shared.wakeups.forget(key, &notify);
                        incr(&shared.counters.l2_misses);
                        incr(&shared.counters.lease_waits_timed_out);
                        return L2Lookup::Fetch(lease(None, Some(seq)));
                    }
                    // Woken by the holder's announcement, or at the latest when its lease ends.
                    let wait = left.max(Duration::from_millis(1)).min(deadline - now);
                    let _ = tokio::time::timeout(wait, woken).await;
                    shared.wakeups.forget(key, &notify);
                }
            }
        }
    }

    async fn ask(&self, key: &[u8], token: &str, want_copy: bool) -> Result<Answer, String> {
        let shared = &self.shared;
        let keys = &shared.keys;
        let script = Script::new(GET_OR_LEASE);
        let mut call = script.key(keys.entry(key));
        call.key(keys.lease(key))
            .key(keys.seq())
            .key(keys.version_all())
            .arg(token)
            .arg(ms(shared.config.lock_timeout))
            .arg(unix_ms(SystemTime::now()))
            .arg(keys.versions())
            .arg(if want_copy { "1" } else { "0" });
        let mut ops = shared.ops.clone();
        match tokio::time::timeout(
            shared.config.op_timeout,
            call.invoke_async::<Value>(&mut ops),
        )
        .await
        {
            Ok(Ok(v)) => parse_answer(v).ok_or_else(|| "unexpected answer".to_string()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("timed out".into()),
        }
    }
}

impl Lease {
    /// Whether this host holds the cluster's lease for the key (others wait for its copy).
    pub fn is_held(&self) -> bool {
        self.token.is_some()
    }

    /// Writes `entry` to the second-level cache, releases the lease and wakes the hosts waiting
    /// for it, in the background. Not written: a body above `l2_max_body`, an entry no longer
    /// fresh, or one fetched while Redis was unreachable (no purge number to check it with).
    pub fn put(mut self, entry: L2Entry) {
        let shared = self.shared.clone();
        let Some(seq) = self.seq else {
            return; // dropped: released, if held
        };
        if entry.body.len() > shared.config.l2_max_body {
            incr(&shared.counters.l2_too_large);
            return;
        }
        let expiry = entry.expiry(SystemTime::now(), shared.config.l2_max_ttl);
        if expiry.is_zero() {
            return;
        }
        let token = self.token.take().unwrap_or_default();
        let key = self.key.clone();
        shared.runtime.clone().spawn(async move {
            let keys = &shared.keys;
            let script = Script::new(PUT);
            let mut call = script.key(keys.entry(&key));
            call.key(keys.lease(&key))
                .key(keys.version_all())
                .key(keys.version_key(&entry.primary));
            for t in &entry.tags {
                call.key(keys.version_tag(t));
            }
            call.arg(&token)
                .arg(seq)
                .arg(ms(expiry).max(1))
                .arg(keys.filled())
                .arg(&key[..])
                .arg(&entry.head[..])
                .arg(&entry.body[..])
                .arg(entry.times())
                .arg(unix_ms(entry.fresh_until()))
                .arg(&entry.primary[..])
                .arg(encode_tags(&entry.tags));
            let mut ops = shared.ops.clone();
            match tokio::time::timeout(shared.config.op_timeout, call.invoke_async::<u8>(&mut ops))
                .await
            {
                Ok(Ok(1)) => incr(&shared.counters.l2_writes),
                Ok(Ok(_)) => {} // purged while it was fetched: not written
                Ok(Err(e)) => {
                    incr(&shared.counters.l2_errors);
                    shared.failed("writing the second-level cache", &e);
                }
                Err(_) => {
                    incr(&shared.counters.l2_errors);
                    shared.failed("writing the second-level cache", &"timed out");
                }
            }
        });
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let Some(token) = self.token.take() else {
            return;
        };
        let shared = self.shared.clone();
        let key = self.key.clone();
        shared.runtime.clone().spawn(async move {
            let script = Script::new(RELEASE);
            let mut call = script.key(shared.keys.lease(&key));
            call.arg(token).arg(shared.keys.filled()).arg(&key[..]);
            let mut ops = shared.ops.clone();
            // A release that fails leaves the lease to expire: waiting hosts fetch then.
            match tokio::time::timeout(shared.config.op_timeout, call.invoke_async::<u8>(&mut ops))
                .await
            {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => shared.failed("releasing a lease", &e),
                Err(_) => shared.failed("releasing a lease", &"timed out"),
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> L2Entry {
        L2Entry {
            head: Bytes::from_static(b"head"),
            body: Bytes::from_static(b"body"),
            stored_at: UNIX_EPOCH + Duration::from_secs(1_700_000_000),
            freshness: Freshness::new(Duration::from_secs(60))
                .with_swr(Duration::from_secs(30))
                .with_sie(Duration::from_secs(300)),
            primary: Bytes::from_static(b"GET http://a/"),
            tags: vec![Bytes::from_static(b"post:1"), Bytes::from_static(b"")],
        }
    }

    #[test]
    fn an_entry_survives_its_fields() {
        let e = entry();
        let fields: Vec<Value> = [
            e.head.to_vec(),
            e.body.to_vec(),
            e.times(),
            e.primary.to_vec(),
            encode_tags(&e.tags),
        ]
        .into_iter()
        .map(Value::BulkString)
        .collect();
        assert_eq!(L2Entry::decode(&fields), Some(e));
        assert_eq!(L2Entry::decode(&fields[..4]), None, "a field missing");
        let mut short = fields.clone();
        short[2] = Value::BulkString(vec![0; 31]);
        assert_eq!(L2Entry::decode(&short), None, "times cut short");
        assert_eq!(decode_tags(&[0, 0, 0, 9, b'x']), None, "a tag cut short");
    }

    #[test]
    fn windows_left_count_from_the_first_store() {
        let e = entry();
        let f = e.remaining(e.stored_at + Duration::from_secs(10));
        assert_eq!(f.ttl, Duration::from_secs(50));
        assert_eq!(f.swr, Duration::from_secs(30));
        let f = e.remaining(e.stored_at + Duration::from_secs(70));
        assert_eq!(f.ttl, Duration::ZERO);
        assert_eq!(f.swr, Duration::from_secs(20));
        assert_eq!(f.sie, Duration::from_secs(290));
    }

    #[test]
    fn redis_keeps_a_copy_to_the_end_of_its_last_stale_window() {
        let e = entry();
        let max = Duration::from_secs(86_400);
        assert_eq!(
            e.expiry(e.stored_at + Duration::from_secs(10), max),
            Duration::from_secs(350)
        );
        assert_eq!(
            e.expiry(e.stored_at, Duration::from_secs(100)),
            Duration::from_secs(100),
            "capped"
        );
        assert_eq!(
            e.expiry(e.stored_at + Duration::from_secs(60), max),
            Duration::ZERO,
            "no longer fresh: never handed out, not written"
        );
    }
}
