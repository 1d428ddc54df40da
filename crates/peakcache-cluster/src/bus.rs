//! The purge bus: reading the stream, publishing the host's own purges, and watching the lag.

use crate::stats::incr;
use crate::{connect_timeout, Backoff, Purge, Shared, SoftPurgeReason, Start};
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, RedisResult, Script, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Entries read at once; a read that returns fewer proves the host has caught up.
const BATCH: usize = 256;

/// Where a host is on the purge bus: the last entry it read (its stream id) and that
/// entry's purge number. Saved as bytes by a host whose cache outlives its process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BusPosition {
    pub(crate) id: String,
    pub(crate) seq: u64,
}

type Position = BusPosition;

impl BusPosition {
    /// The purge number of the last entry read.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// The position as bytes (at most 48), for [`from_bytes`](Self::from_bytes).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = self.seq.to_le_bytes().to_vec();
        out.extend_from_slice(self.id.as_bytes());
        out
    }

    /// A position saved by [`to_bytes`](Self::to_bytes); `None` if `bytes` is not one (a
    /// stream id is `MILLISECONDS-SEQUENCE`).
    pub fn from_bytes(bytes: &[u8]) -> Option<BusPosition> {
        let (seq, id) = bytes.split_at_checked(8)?;
        let id = std::str::from_utf8(id).ok()?;
        let (ms, n) = id.split_once('-')?;
        ms.parse::<u64>().ok()?;
        n.parse::<u64>().ok()?;
        Some(BusPosition {
            id: id.to_string(),
            seq: u64::from_le_bytes(seq.try_into().ok()?),
        })
    }
}

/// One entry of the stream.
#[derive(Debug)]
pub(crate) struct Entry {
    pub(crate) id: String,
    pub(crate) seq: Option<u64>,
    pub(crate) host: Vec<u8>,
    pub(crate) purge: Option<Purge>,
}

/// Appends a purge: numbers it, adds it to the stream (trimmed), records the number as the
/// version of what it purged (so second-level copies fetched before it are unusable), and
/// keeps the cluster's freeze state.
/// KEYS: counter, stream, frozen flag, [version]. ARGV: max length, host, op, mode, arg,
/// version expiry in ms.
const PUBLISH: &str = r"
local s = redis.call('INCR', KEYS[1])
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[1], '*',
  'seq', s, 'host', ARGV[2], 'op', ARGV[3], 'mode', ARGV[4], 'arg', ARGV[5])
if ARGV[3] == 'freeze' then redis.call('SET', KEYS[3], '1')
elseif ARGV[3] == 'thaw' then redis.call('DEL', KEYS[3]) end
if KEYS[4] then redis.call('SET', KEYS[4], s, 'PX', ARGV[6]) end
return s
";

/// Where the bus is now, for a host that has never read it: the purge number and the last
/// entry's id (consistent, since both change only together), and whether the cluster is frozen.
/// KEYS: counter, stream, frozen flag.
const POSITION: &str = r"
local last = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)
local id = '0-0'
if last[1] then id = last[1][1] end
return {tonumber(redis.call('GET', KEYS[1]) or '0'), id, redis.call('EXISTS', KEYS[3])}
";

/// Reads the bus forever: from `start` (where the bus is at first contact, or a saved
/// position), then from the last entry read, reconnecting with back-off after a failure.
pub(crate) async fn read(shared: Arc<Shared>, start: Start) {
    let mut backoff = Backoff::new(&shared.config);
    let mut conn: Option<MultiplexedConnection> = None;
    let (mut pos, mut joined_unknown) = match start {
        Start::Fresh => (None, false),
        Start::Resume(p) => (Some(p), false),
        Start::Unknown => (None, true),
    };
    let mut had_connection = false;
    loop {
        if conn.is_none() {
            match connect(&shared).await {
                Ok(c) => {
                    if had_connection {
                        incr(&shared.counters.reconnects);
                    }
                    had_connection = true;
                    conn = Some(c);
                }
                Err(e) => {
                    shared.failed("connecting to read the bus", &e);
                    backoff.pause().await;
                    continue;
                }
            }
        }
        let Some(c) = conn.as_mut() else { continue };
        let sent = Instant::now();
        let step = match &pos {
            None => first_contact(&shared, c, joined_unknown)
                .await
                .map(|p| (p, None)),
            Some(p) => read_once(&shared, c, p).await,
        };
        match step {
            Ok((next, read)) => {
                backoff.reset();
                shared.answered();
                if let Some(at) = read.and_then(|r| r.synced_at(sent, shared.config.block())) {
                    if shared.lag.synced(at) {
                        tracing::info!(
                            "peakcache-cluster {}: caught up with the bus",
                            shared.config.name
                        );
                    }
                }
                if pos.as_ref() != Some(&next) {
                    shared.local.caught_up(&next);
                }
                joined_unknown = false;
                pos = Some(next);
            }
            Err(e) => {
                conn = None;
                shared.failed("reading the bus", &e);
                backoff.pause().await;
            }
        }
    }
}

/// What one read of the bus got.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Read {
    /// Nothing new: it blocked its full time.
    Empty,
    /// Every entry there was when the server answered.
    Everything,
    /// A full batch: there may be more.
    Batch,
    /// The bus's history was lost: read again from its start.
    Reset,
}

impl Read {
    /// When the host is known to have had every purge, for a read sent at `sent` that blocks
    /// at most `block`: when the server answered, which is no earlier than it was sent, and no
    /// earlier than `block` after that for a read that timed out empty.
    fn synced_at(self, sent: Instant, block: Duration) -> Option<Instant> {
        match self {
            Read::Empty => Some((sent + block).min(Instant::now())),
            Read::Everything => Some(sent),
            Read::Batch | Read::Reset => None,
        }
    }
}

/// A connection of its own for blocking reads, without a response timeout of its own (each
/// read has one).
pub(crate) async fn connect(shared: &Shared) -> RedisResult<MultiplexedConnection> {
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(connect_timeout(&shared.config)))
        .set_response_timeout(None);
    shared
        .client
        .get_multiplexed_async_connection_with_config(&config)
        .await
}

fn timed_out() -> redis::RedisError {
    redis::RedisError::from(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        "no answer in time",
    ))
}

/// The first read: where the bus is. A host that was cut off before this (it started while
/// Redis was away), or whose cache holds entries of unknown history (`joined_unknown`), cannot
/// know what it missed, so it marks everything stale.
async fn first_contact(
    shared: &Shared,
    c: &mut MultiplexedConnection,
    joined_unknown: bool,
) -> RedisResult<Position> {
    let keys = &shared.keys;
    let script = Script::new(POSITION);
    let mut call = script.key(keys.seq());
    call.key(keys.stream()).key(keys.frozen());
    let answer: (u64, String, u8) =
        tokio::time::timeout(shared.config.op_timeout, call.invoke_async(c))
            .await
            .map_err(|_| timed_out())??;
    let (seq, id, frozen) = answer;
    if frozen == 1 {
        shared.local.apply(&Purge::Freeze);
    }
    if shared.lag.is_lagging() {
        shared.soft_purge_everything(SoftPurgeReason::Lagging);
    } else if joined_unknown {
        shared.soft_purge_everything(SoftPurgeReason::Joined);
    }
    Ok(Position { id, seq })
}

/// One blocking read from `pos`; applies what it got and returns the new position and what
/// the read got.
async fn read_once(
    shared: &Shared,
    c: &mut MultiplexedConnection,
    pos: &Position,
) -> RedisResult<(Position, Option<Read>)> {
    let block = shared.config.block();
    let mut pipe = redis::pipe();
    pipe.cmd("GET")
        .arg(shared.keys.seq())
        .cmd("XREAD")
        .arg("COUNT")
        .arg(BATCH)
        .arg("BLOCK")
        .arg(block.as_millis() as u64)
        .arg("STREAMS")
        .arg(shared.keys.stream())
        .arg(&pos.id);
    let (counter, reply): (Option<u64>, Value) =
        tokio::time::timeout(block + shared.config.op_timeout, pipe.query_async(c))
            .await
            .map_err(|_| timed_out())??;
    if counter.unwrap_or(0) < pos.seq {
        // The counter went back: the server lost the bus's history. Read the new stream whole.
        shared.soft_purge_everything(SoftPurgeReason::Reset);
        let start = Position {
            id: "0-0".into(),
            seq: 0,
        };
        return Ok((start, Some(Read::Reset)));
    }
    let entries = parse_xread(reply);
    let read = match entries.len() {
        0 => Read::Empty,
        n if n < BATCH => Read::Everything,
        _ => Read::Batch,
    };
    Ok((apply(shared, pos.clone(), entries), Some(read)))
}

/// Applies other hosts' purges in order. A gap in the purge numbers means entries were trimmed
/// before this host read them (or, going back, that the history was lost): it cannot know
/// what they purged, so everything is marked stale, once per read.
pub(crate) fn apply(shared: &Shared, mut pos: Position, entries: Vec<Entry>) -> Position {
    let mut gap_seen = false;
    for e in entries {
        let seq = e.seq.unwrap_or(pos.seq + 1);
        if seq != pos.seq + 1 && !gap_seen {
            gap_seen = true;
            shared.soft_purge_everything(if seq <= pos.seq {
                SoftPurgeReason::Reset
            } else {
                SoftPurgeReason::Trimmed
            });
        }
        pos = Position { id: e.id, seq };
        if e.host == shared.host.as_bytes() {
            continue; // applied when it was made
        }
        match e.purge {
            Some(p) if e.seq.is_some() => {
                shared.local.apply(&p);
                incr(&shared.counters.purges_applied);
            }
            _ => shared.soft_purge_everything(SoftPurgeReason::Unreadable),
        }
    }
    pos
}

/// The entries of an `XREAD` reply for one stream (RESP2 arrays or RESP3 maps); nothing for a
/// timeout.
pub(crate) fn parse_xread(reply: Value) -> Vec<Entry> {
    let streams = match reply {
        Value::Array(streams) => streams
            .into_iter()
            .filter_map(|s| match s {
                Value::Array(mut pair) if pair.len() == 2 => pair.pop(),
                _ => None,
            })
            .collect(),
        Value::Map(pairs) => pairs.into_iter().map(|(_, v)| v).collect(),
        _ => Vec::new(),
    };
    streams
        .into_iter()
        .flat_map(|entries| match entries {
            Value::Array(entries) => entries,
            _ => Vec::new(),
        })
        .filter_map(parse_entry)
        .collect()
}

fn bytes(v: &Value) -> Option<&[u8]> {
    match v {
        Value::BulkString(b) => Some(b),
        Value::SimpleString(s) => Some(s.as_bytes()),
        _ => None,
    }
}

fn parse_entry(entry: Value) -> Option<Entry> {
    let Value::Array(parts) = entry else {
        return None;
    };
    let [id, Value::Array(fields)] = parts.as_slice() else {
        return None;
    };
    let id = String::from_utf8(bytes(id)?.to_vec()).ok()?;
    let field = |name: &[u8]| {
        fields
            .chunks(2)
            .find(|kv| bytes(&kv[0]) == Some(name))
            .and_then(|kv| kv.get(1))
            .and_then(bytes)
    };
    let seq = field(b"seq")
        .and_then(|s| std::str::from_utf8(s).ok())
        .and_then(|s| s.parse().ok());
    let purge = Purge::decode(
        field(b"op").unwrap_or_default(),
        field(b"mode").unwrap_or_default(),
        field(b"arg").unwrap_or_default(),
    );
    Some(Entry {
        id,
        seq,
        host: field(b"host").unwrap_or_default().to_vec(),
        purge,
    })
}

/// Publishes the outbox in order, retrying with back-off while Redis is unreachable.
pub(crate) async fn publish(shared: Arc<Shared>) {
    let mut backoff = Backoff::new(&shared.config);
    let script = Script::new(PUBLISH);
    loop {
        let Some((id, purge)) = shared.outbox.front() else {
            shared.outbox.ready.notified().await;
            continue;
        };
        let keys = &shared.keys;
        let mut call = script.key(keys.seq());
        call.key(keys.stream()).key(keys.frozen());
        match &purge {
            Purge::Key { key, .. } => call.key(keys.version_key(key)),
            Purge::Tag { tag, .. } => call.key(keys.version_tag(tag)),
            Purge::Everything { .. } => call.key(keys.version_all()),
            Purge::Freeze | Purge::Thaw => &mut call,
        };
        call.arg(shared.config.stream_max_len)
            .arg(&shared.host)
            .arg(purge.op())
            .arg(purge.mode())
            .arg(purge.arg())
            .arg(shared.config.l2_max_ttl.as_millis() as u64);
        let mut ops = shared.ops.clone();
        // A publish that timed out may still have landed: it is then sent twice, which purges
        // the same thing twice and nothing more.
        match tokio::time::timeout(shared.config.op_timeout, call.invoke_async::<u64>(&mut ops))
            .await
        {
            Ok(Ok(_)) => {
                shared.outbox.published(id);
                incr(&shared.counters.purges_published);
                shared.answered();
                backoff.reset();
            }
            Ok(Err(e)) => {
                shared.failed("publishing a purge", &e);
                backoff.pause().await;
            }
            Err(_) => {
                shared.failed("publishing a purge", &"timed out");
                backoff.pause().await;
            }
        }
    }
}

/// Watches the lag every tenth of `max_lag`: past it, the host marks every entry stale, and
/// again every `max_lag` while it stays cut off, so nothing it holds is served as fresh until
/// the reader has caught up.
pub(crate) async fn watch_lag(shared: Arc<Shared>) {
    let max = shared.config.max_lag;
    let tick = (max / 10).max(Duration::from_millis(5));
    let mut last_purge: Option<Instant> = None;
    loop {
        tokio::time::sleep(tick).await;
        let lag = shared.lag.lag();
        if lag <= max {
            last_purge = None;
            continue;
        }
        if shared.lag.enter() {
            incr(&shared.counters.lag_events);
            tracing::warn!(
                "peakcache-cluster {}: no purge read for {} ms (max lag {} ms): nothing is fresh \
                 until the host has caught up",
                shared.config.name,
                lag.as_millis(),
                max.as_millis()
            );
        }
        if last_purge.is_none_or(|t| t.elapsed() >= max) {
            shared.soft_purge_everything(SoftPurgeReason::Lagging);
            last_purge = Some(Instant::now());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    fn entry(id: &str, seq: &str, op: &str) -> Value {
        Value::Array(vec![
            bulk(id),
            Value::Array(vec![
                bulk("seq"),
                bulk(seq),
                bulk("host"),
                bulk("h1"),
                bulk("op"),
                bulk(op),
                bulk("mode"),
                bulk("soft"),
                bulk("arg"),
                bulk("post:1"),
            ]),
        ])
    }

    #[test]
    fn an_xread_reply_becomes_entries_in_order() {
        let reply = Value::Array(vec![Value::Array(vec![
            bulk("peakcache:{x}:bus"),
            Value::Array(vec![entry("1-0", "7", "tag"), entry("2-0", "8", "shred")]),
        ])]);
        let got = parse_xread(reply);
        assert_eq!(got.len(), 2);
        assert_eq!((got[0].id.as_str(), got[0].seq), ("1-0", Some(7)));
        assert_eq!(
            got[0].purge,
            Some(Purge::Tag {
                tag: bytes::Bytes::from_static(b"post:1"),
                mode: peakcache::PurgeMode::Soft
            })
        );
        assert_eq!(got[0].host, b"h1");
        assert_eq!(got[1].purge, None, "an unknown op is not guessed");
        assert!(parse_xread(Value::Nil).is_empty(), "a timed-out read");
    }
}
