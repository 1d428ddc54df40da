//! What a host is told about its cluster.

use std::time::Duration;

/// The settings of one host's link to its cluster. `Config::new(url)` holds the defaults.
#[derive(Clone, Debug)]
pub struct Config {
    /// The Redis (>= 7) or Valkey server, `redis://HOST:PORT[/DB]`.
    pub url: String,
    /// The cluster's name: hosts with the same name on the same server purge together and
    /// share one second-level cache. Every key the cluster uses starts `peakcache:{NAME}:`
    /// (the braces keep them in one slot should the server be a Redis Cluster).
    pub name: String,
    /// How long the host may go without reading the purge bus before it stops serving entries
    /// as fresh (default 1 s).
    pub max_lag: Duration,
    /// How long one Redis operation may take before the host gives up on it and acts alone
    /// (default 100 ms). A visitor never waits longer than this for Redis, except for another
    /// host's fill (see `lock_timeout`).
    pub op_timeout: Duration,
    /// How long a fill lease lasts, and the longest a host waits for another host's fill
    /// before fetching for itself (default 5 s, as the core's lock timeout).
    pub lock_timeout: Duration,
    /// How many purges the stream keeps (approximately: `XADD ... MAXLEN ~`); a host that falls
    /// further behind soft-purges everything (default 100,000).
    pub stream_max_len: u64,
    /// The largest body written to the second-level cache (default 1 MiB).
    pub l2_max_body: usize,
    /// The longest a response stays in the second-level cache, and how long a purge is
    /// remembered there (default one day).
    pub l2_max_ttl: Duration,
    /// The first pause before reconnecting after a failure; it doubles up to
    /// `backoff_max` while failures repeat (default 50 ms).
    pub backoff_min: Duration,
    /// The longest pause between reconnection attempts (default 1 s).
    pub backoff_max: Duration,
    /// How many of the host's own purges may wait for Redis to come back; beyond it they are
    /// replaced by one soft purge of everything (default 10,000).
    pub outbox_limit: usize,
}

impl Config {
    /// The defaults for the server at `url`, in the cluster named `peakcache`.
    pub fn new(url: impl Into<String>) -> Self {
        Config {
            url: url.into(),
            name: "peakcache".into(),
            max_lag: Duration::from_secs(1),
            op_timeout: Duration::from_millis(100),
            lock_timeout: Duration::from_secs(5),
            stream_max_len: 100_000,
            l2_max_body: 1 << 20,
            l2_max_ttl: Duration::from_secs(86_400),
            backoff_min: Duration::from_millis(50),
            backoff_max: Duration::from_secs(1),
            outbox_limit: 10_000,
        }
    }

    /// Checks the settings; the error says which one is wrong and why.
    pub fn validate(&self) -> Result<(), String> {
        redis::Client::open(self.url.as_str())
            .map_err(|e| format!("cluster URL {:?}: {e}", self.url))?;
        if self.name.is_empty()
            || self
                .name
                .bytes()
                .any(|b| b == b'{' || b == b'}' || !b.is_ascii_graphic())
        {
            return Err(format!(
                "cluster name {:?}: use printable characters without braces or spaces",
                self.name
            ));
        }
        let positive = [
            ("max lag", self.max_lag),
            ("operation timeout", self.op_timeout),
            ("lock timeout", self.lock_timeout),
            ("L2 max TTL", self.l2_max_ttl),
            ("back-off", self.backoff_min),
        ];
        if let Some((what, _)) = positive.iter().find(|(_, d)| d.is_zero()) {
            return Err(format!("the cluster's {what} must be more than zero"));
        }
        if self.backoff_max < self.backoff_min {
            return Err("the longest back-off must not be shorter than the first".into());
        }
        if self.stream_max_len == 0 || self.outbox_limit == 0 {
            return Err("the stream length and the outbox limit must be at least 1".into());
        }
        Ok(())
    }

    /// How long one read of the bus blocks: a quarter of `max_lag`, so a host that reads
    /// nothing still proves several times per `max_lag` that it missed nothing.
    pub(crate) fn block(&self) -> Duration {
        (self.max_lag / 4).clamp(Duration::from_millis(5), Duration::from_secs(1))
    }
}

/// The key names of one cluster, all in the hash slot of `{NAME}`.
pub(crate) struct Keys {
    prefix: String,
}

impl Keys {
    pub(crate) fn new(name: &str) -> Self {
        Keys {
            prefix: format!("peakcache:{{{name}}}:"),
        }
    }

    fn named(&self, what: &str) -> String {
        format!("{}{what}", self.prefix)
    }

    fn with_bytes(&self, what: &str, bytes: &[u8]) -> Vec<u8> {
        let mut k = self.named(what).into_bytes();
        k.extend_from_slice(bytes);
        k
    }

    /// The purge stream.
    pub(crate) fn stream(&self) -> String {
        self.named("bus")
    }

    /// The purge counter: every purge on the stream carries the next number.
    pub(crate) fn seq(&self) -> String {
        self.named("seq")
    }

    /// Present while the cluster is frozen.
    pub(crate) fn frozen(&self) -> String {
        self.named("frozen")
    }

    /// The purge number of the last purge of everything.
    pub(crate) fn version_all(&self) -> String {
        self.named("v:all")
    }

    /// The prefix of per-key and per-tag versions, which scripts complete.
    pub(crate) fn versions(&self) -> String {
        self.named("v:")
    }

    /// The purge number of the last purge of primary key `key` (and its variants).
    pub(crate) fn version_key(&self, key: &[u8]) -> Vec<u8> {
        self.with_bytes("v:k:", key)
    }

    /// The purge number of the last purge of `tag`.
    pub(crate) fn version_tag(&self, tag: &[u8]) -> Vec<u8> {
        self.with_bytes("v:t:", tag)
    }

    /// The second-level copy of `key`.
    pub(crate) fn entry(&self, key: &[u8]) -> Vec<u8> {
        self.with_bytes("l2:", key)
    }

    /// The fill lease of `key`.
    pub(crate) fn lease(&self, key: &[u8]) -> Vec<u8> {
        self.with_bytes("lease:", key)
    }

    /// The channel on which a released lease is announced (the message is the key).
    pub(crate) fn filled(&self) -> String {
        self.named("filled")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_is_in_the_clusters_hash_slot() {
        let k = Keys::new("shop");
        assert_eq!(k.stream(), "peakcache:{shop}:bus");
        assert_eq!(
            k.entry(b"GET http://a/"),
            b"peakcache:{shop}:l2:GET http://a/"
        );
        assert_eq!(k.version_tag(b"post:1"), b"peakcache:{shop}:v:t:post:1");
        assert_eq!(
            k.version_key(b"x"),
            [k.versions().as_bytes(), b"k:x"].concat()
        );
    }

    #[test]
    fn bad_settings_get_a_clear_message() {
        let ok = Config::new("redis://127.0.0.1:6379");
        assert_eq!(ok.validate(), Ok(()));
        let bad = |f: fn(&mut Config)| {
            let mut c = ok.clone();
            f(&mut c);
            c.validate().unwrap_err()
        };
        assert!(bad(|c| c.url = "http://x".into()).contains("cluster URL"));
        assert!(bad(|c| c.name = "a{b}".into()).contains("cluster name"));
        assert!(bad(|c| c.name = String::new()).contains("cluster name"));
        assert!(bad(|c| c.max_lag = Duration::ZERO).contains("max lag"));
        assert!(bad(|c| c.backoff_max = Duration::from_millis(1)).contains("back-off"));
        assert!(bad(|c| c.stream_max_len = 0).contains("stream length"));
    }

    #[test]
    fn a_read_blocks_for_a_quarter_of_the_max_lag() {
        let mut c = Config::new("redis://127.0.0.1");
        assert_eq!(c.block(), Duration::from_millis(250));
        c.max_lag = Duration::from_millis(8);
        assert_eq!(c.block(), Duration::from_millis(5));
    }
}
