//! The proxy's settings, from the command line.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Everything the proxy is told at start.
#[derive(Clone, Debug)]
pub struct Config {
    /// Where visitors connect.
    pub listen: SocketAddr,
    /// The origin's base URL, `http://host:port`.
    pub origin: http::Uri,
    /// The admin listener (purge, freeze, metrics); off unless given, so no visitor can purge.
    pub admin: Option<SocketAddr>,
    /// The cache's capacity in bytes.
    pub size: u64,
    /// The largest response body stored; larger ones pass through unbuffered.
    pub max_object: u64,
    /// How long waiters wait for a fill before fetching for themselves.
    pub lock_timeout: Duration,
    /// How long an origin request may take before it counts as failed.
    pub origin_timeout: Duration,
    /// How many origin requests may be in flight at once; beyond it the proxy serves stale or
    /// answers 503 with `Retry-After`.
    pub origin_concurrency: usize,
    /// How long a URL whose response was not cacheable passes through without coalescing.
    pub pass_hold: Duration,
    /// Operator grace for stale-if-error: how long after going stale a response may still be
    /// served when the origin fails or answers 5xx, beyond what the origin granted. RFC 9111
    /// §4.2.4 allows serving stale when disconnected or by out-of-band configuration; never
    /// where `must-revalidate`, `proxy-revalidate`, `no-cache` or `s-maxage` forbid it, and
    /// `Cache-Status` says `detail=grace-if-error`. Default zero: only the origin's windows.
    pub stale_if_error_grace: Duration,
    /// Act on visitors' own `Cache-Control` / `Pragma` (`no-store`, `no-cache`, `max-age`,
    /// `min-fresh`, `only-if-cached`), for the visitor who sent them alone. Default false: they
    /// are ignored for shared entries, as Varnish, Fastly and Cloudflare do; never applied
    /// while the cache is frozen. Fills and refreshes never carry them either way.
    pub honour_request_directives: bool,
    /// The cluster this proxy is one host of (`--cluster redis://HOST:PORT`): purges made on
    /// any host reach every host, a page missing here is read from the second-level cache in
    /// Redis before the origin, and one host at a time fetches it for all. Off by default.
    pub cluster: Option<peakcache_cluster::Config>,
    /// The host's shared memory region (an nginx shared zone's or a PHP-FPM pool's file) that
    /// this process joins to the cluster as the host's agent (`--region PATH`, with
    /// `--cluster`): the region's purges are published, the bus's applied to it. See
    /// [`agent`](crate::agent).
    pub region: Option<PathBuf>,
    /// Whether this process answers visitors on `listen` (and fetches from `origin`): always,
    /// except an agent given no `--origin`.
    pub serves: bool,
    /// This proxy is the shield of the host's nginx (`--region` with `--origin`), which it
    /// hears alone, on loopback: a request's key takes its scheme from `X-Forwarded-Proto`
    /// (`http` or `https`), so that it is the key nginx computes and purges; and the origin's
    /// `Surrogate-Key` and targeted fields (`CDN-Cache-Control`, `Surrogate-Control`) go on to
    /// nginx, the cache in front, which needs the tags to purge and the same lifetimes.
    pub shield: bool,
    /// The snapshot file (`--snapshot PATH`): restored at start when it exists (a warm
    /// restart), written at every `snapshot_interval`, on the admin's `POST /snapshot` and when
    /// the proxy is stopped, restored on `POST /restore` (see [`snapshot`](crate::snapshot)).
    /// Off by default.
    pub snapshot: Option<PathBuf>,
    /// How often the snapshot is written in the background (`--snapshot-interval`; needs
    /// `snapshot`). Off by default: only on request and at stop.
    pub snapshot_interval: Option<Duration>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: ([127, 0, 0, 1], 8080).into(),
            origin: http::Uri::from_static("http://127.0.0.1:9000"),
            admin: None,
            size: 256 << 20,
            max_object: 8 << 20,
            lock_timeout: Duration::from_secs(5),
            origin_timeout: Duration::from_secs(30),
            origin_concurrency: 64,
            pass_hold: Duration::from_secs(10),
            stale_if_error_grace: Duration::ZERO,
            honour_request_directives: false,
            cluster: None,
            region: None,
            serves: true,
            shield: false,
            snapshot: None,
            snapshot_interval: None,
        }
    }
}

/// The usage text printed by `--help` and after a bad argument.
pub const USAGE: &str = "\
usage: peakcache-proxy --origin http://HOST:PORT [options]
       peakcache-proxy --region PATH --cluster URL [--origin http://HOST:PORT] [options]

  --listen ADDR              where visitors connect (default 127.0.0.1:8080)
  --origin URL               the origin, http://host:port (required)
  --size SIZE                cache capacity, e.g. 256MiB, 1GiB (default 256MiB)
  --max-object SIZE          largest body stored; larger ones stream through (default 8MiB)
  --admin ADDR               admin listener for purge, freeze and /metrics (default: off)
  --lock-timeout DURATION    how long waiters wait for a fill (default 5s)
  --origin-timeout DURATION  how long an origin request may take (default 30s)
  --origin-concurrency N     origin requests in flight at most (default 64)
  --pass-hold DURATION       how long an uncacheable URL passes through (default 10s)
  --stale-if-error-grace DURATION
                             serve stale this long past expiry when the origin fails, even
                             without the origin's stale-if-error (default 0: off)
  --honour-request-directives
                             act on visitors' Cache-Control/Pragma (no-cache, max-age,
                             no-store, only-if-cached) for that visitor alone; by default
                             they are ignored (a visitor cannot refetch or bypass the cache)
  --cluster URL              one host of a cluster on Redis >= 7 or Valkey, redis://host:port:
                             purges reach every host, misses read the second-level cache,
                             one host fetches a page for all (default: off)
  --cluster-name NAME        the cluster's name; hosts with the same name and server act as
                             one (default peakcache)
  --max-lag DURATION         cut off from the cluster's purges longer than this, the host
                             serves nothing as fresh until it has caught up (default 1s)
  --region PATH              be the host agent of this shared memory region (an nginx shared
                             zone's or a PHP-FPM pool's file; needs --cluster): its purges are
                             published, the cluster's applied to it; with --origin, also the
                             shield nginx proxies its misses to. Run it as the region's owner
  --snapshot PATH            the cache's snapshot file: restored at start when it exists (the
                             first visitors get HITs), written on POST /snapshot (admin) and
                             when stopped; POST /restore?freeze=1 rolls back to it (default: off)
  --snapshot-interval DURATION
                             also write the snapshot this often, in the background (needs
                             --snapshot; default: off)

DURATION is a number with ms, s or m; SIZE a number with B, KiB, MiB, GiB (or k, M, G).
";

impl Config {
    /// Parses command-line arguments (without the program name). `Ok(None)` for `--help`.
    pub fn from_args(args: impl IntoIterator<Item = String>) -> Result<Option<Config>, String> {
        let mut c = Config::default();
        let mut origin = None;
        let mut listen_given = false;
        let (mut cluster_url, mut cluster_name, mut max_lag) = (None, None, None);
        let mut args = args.into_iter();
        while let Some(flag) = args.next() {
            if flag == "--help" || flag == "-h" {
                return Ok(None);
            }
            if flag == "--honour-request-directives" {
                c.honour_request_directives = true;
                continue;
            }
            let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
            let bad = |what: &str| format!("{flag} {value:?}: {what}");
            match flag.as_str() {
                "--listen" => {
                    listen_given = true;
                    c.listen = value
                        .parse()
                        .map_err(|_| bad("not an address like 127.0.0.1:8080"))?
                }
                "--admin" => {
                    c.admin = Some(
                        value
                            .parse()
                            .map_err(|_| bad("not an address like 127.0.0.1:8081"))?,
                    )
                }
                "--origin" => {
                    let uri: http::Uri = value.parse().map_err(|_| bad("not a URL"))?;
                    if uri.scheme_str() != Some("http") || uri.authority().is_none() {
                        return Err(bad("the origin must be http://host:port"));
                    }
                    origin = Some(uri);
                }
                "--size" => c.size = parse_size(&value).map_err(|e| bad(&e))?,
                "--max-object" => c.max_object = parse_size(&value).map_err(|e| bad(&e))?,
                "--lock-timeout" => c.lock_timeout = parse_duration(&value).map_err(|e| bad(&e))?,
                "--origin-timeout" => {
                    c.origin_timeout = parse_duration(&value).map_err(|e| bad(&e))?
                }
                "--pass-hold" => c.pass_hold = parse_duration(&value).map_err(|e| bad(&e))?,
                "--stale-if-error-grace" => {
                    c.stale_if_error_grace = parse_duration(&value).map_err(|e| bad(&e))?
                }
                "--cluster" => cluster_url = Some(value),
                "--region" => {
                    if value.is_empty() {
                        return Err(bad("an empty path"));
                    }
                    c.region = Some(PathBuf::from(value));
                }
                "--cluster-name" => cluster_name = Some(value),
                "--snapshot" => {
                    if value.is_empty() {
                        return Err(bad("an empty path"));
                    }
                    c.snapshot = Some(PathBuf::from(value));
                }
                "--snapshot-interval" => {
                    c.snapshot_interval = Some(
                        parse_duration(&value)
                            .map_err(|e| bad(&e))?
                            .max(Duration::from_secs(1)),
                    )
                }
                "--max-lag" => max_lag = Some(parse_duration(&value).map_err(|e| bad(&e))?),
                "--origin-concurrency" => {
                    c.origin_concurrency = value
                        .parse()
                        .ok()
                        .filter(|n| *n > 0)
                        .ok_or_else(|| bad("not a positive number"))?
                }
                _ => return Err(format!("unknown option {flag}")),
            }
        }
        match (origin, &c.region) {
            (Some(o), region) => {
                c.origin = o;
                c.shield = region.is_some();
            }
            (None, Some(_)) if listen_given => {
                return Err("--listen needs --origin (without it the agent serves nobody)".into())
            }
            (None, Some(_)) => c.serves = false,
            (None, None) => return Err("--origin is required".into()),
        }
        if c.snapshot_interval.is_some() && c.snapshot.is_none() {
            return Err("--snapshot-interval needs --snapshot PATH".into());
        }
        if c.snapshot.is_some() && c.region.is_some() {
            return Err("--snapshot is for the proxy's own cache, not an agent's (--region):                         the region's host (nginx, PHP) writes the region's snapshots"
                .into());
        }
        if c.region.is_some() && cluster_url.is_none() {
            return Err("--region needs --cluster: the agent joins the region to a cluster".into());
        }
        if c.size < 1 << 20 {
            return Err("--size must be at least 1MiB".into());
        }
        if c.max_object == 0 || c.max_object > c.size / 8 {
            return Err(format!(
                "--max-object must be between 1 byte and an eighth of --size ({} bytes)",
                c.size / 8
            ));
        }
        c.cluster = match cluster_url {
            Some(url) => {
                let mut cluster = peakcache_cluster::Config::new(url);
                if let Some(name) = cluster_name {
                    cluster.name = name;
                }
                if let Some(lag) = max_lag {
                    cluster.max_lag = lag;
                }
                cluster.lock_timeout = c.lock_timeout;
                cluster.l2_max_body = cluster.l2_max_body.min(c.max_object as usize);
                cluster.validate()?;
                Some(cluster)
            }
            None if cluster_name.is_some() || max_lag.is_some() => {
                return Err("--cluster-name and --max-lag need --cluster".into())
            }
            None => None,
        };
        Ok(Some(c))
    }
}

/// Parses `256MiB`, `1G`, `4096`, ...
pub fn parse_size(s: &str) -> Result<u64, String> {
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| "not a size like 256MiB".to_string())?;
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "k" | "K" | "KB" | "KiB" => 1 << 10,
        "m" | "M" | "MB" | "MiB" => 1 << 20,
        "g" | "G" | "GB" | "GiB" => 1 << 30,
        other => return Err(format!("unknown size unit {other:?}")),
    };
    n.checked_mul(mult)
        .ok_or_else(|| "size too large".to_string())
}

/// Parses `5s`, `250ms`, `2m`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| "not a duration like 5s".to_string())?;
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "s" | "" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        other => Err(format!("unknown duration unit {other:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn parses_the_documented_example() {
        let c = Config::from_args(args(
            "--listen 127.0.0.1:8080 --origin http://127.0.0.1:9000 --size 256MiB",
        ))
        .unwrap()
        .unwrap();
        assert_eq!(c.size, 256 << 20);
        assert_eq!(c.origin.authority().unwrap().as_str(), "127.0.0.1:9000");
        assert_eq!(c.stale_if_error_grace, Duration::ZERO);
        assert!(
            !c.honour_request_directives,
            "request directives are ignored by default"
        );
        let c = Config::from_args(args(
            "--honour-request-directives --origin http://127.0.0.1:9000",
        ))
        .unwrap()
        .unwrap();
        assert!(c.honour_request_directives);
    }

    #[test]
    fn rfc9111_4_2_4_stale_if_error_grace_is_an_explicit_operator_setting() {
        let c = Config::from_args(args(
            "--origin http://127.0.0.1:9000 --stale-if-error-grace 2m",
        ))
        .unwrap()
        .unwrap();
        assert_eq!(c.stale_if_error_grace, Duration::from_secs(120));
    }

    #[test]
    fn bad_configuration_gets_a_clear_message() {
        let err = |s: &str| Config::from_args(args(s)).unwrap_err();
        assert!(err("--size 10MiB").contains("--origin is required"));
        assert!(err("--origin ftp://x").contains("must be http://"));
        assert!(err("--origin http://a:1 --size lots").contains("--size"));
        assert!(err("--origin http://a:1 --bogus 1").contains("unknown option"));
        assert!(err("--origin http://a:1 --lock-timeout 5h").contains("unknown duration unit"));
        assert!(err("--origin http://a:1 --listen").contains("needs a value"));
    }

    #[test]
    fn the_cluster_options() {
        let c = Config::from_args(args(
            "--origin http://127.0.0.1:9000 --cluster redis://127.0.0.1:6379 --max-lag 250ms \
             --cluster-name shop --lock-timeout 2s",
        ))
        .unwrap()
        .unwrap();
        let cluster = c.cluster.unwrap();
        assert_eq!(cluster.url, "redis://127.0.0.1:6379");
        assert_eq!(cluster.name, "shop");
        assert_eq!(cluster.max_lag, Duration::from_millis(250));
        assert_eq!(
            cluster.lock_timeout,
            Duration::from_secs(2),
            "one lock timeout"
        );
        let c = Config::from_args(args("--origin http://a:1 --cluster redis://r:6379"))
            .unwrap()
            .unwrap();
        assert_eq!(
            c.cluster.unwrap().max_lag,
            Duration::from_secs(1),
            "default"
        );
        assert!(Config::from_args(args("--origin http://a:1"))
            .unwrap()
            .unwrap()
            .cluster
            .is_none());

        let err = |s: &str| Config::from_args(args(s)).unwrap_err();
        assert!(err("--origin http://a:1 --max-lag 1s").contains("need --cluster"));
        assert!(err("--origin http://a:1 --cluster http://r").contains("cluster URL"));
        assert!(
            err("--origin http://a:1 --cluster redis://r --cluster-name a{b}")
                .contains("cluster name")
        );
    }

    #[test]
    fn the_snapshot_options() {
        let c = Config::from_args(args(
            "--origin http://a:1 --snapshot /var/lib/peakcache/proxy.snapshot \
             --snapshot-interval 5m",
        ))
        .unwrap()
        .unwrap();
        assert_eq!(
            c.snapshot.as_deref(),
            Some(std::path::Path::new("/var/lib/peakcache/proxy.snapshot"))
        );
        assert_eq!(c.snapshot_interval, Some(Duration::from_secs(300)));
        let plain = Config::from_args(args("--origin http://a:1"))
            .unwrap()
            .unwrap();
        assert_eq!((plain.snapshot, plain.snapshot_interval), (None, None));
        let err = |s: &str| Config::from_args(args(s)).unwrap_err();
        assert!(err("--origin http://a:1 --snapshot-interval 1m").contains("needs --snapshot"));
        assert!(err("--region /r --cluster redis://r:1 --snapshot /s").contains("--region"));
        assert!(err("--origin http://a:1 --snapshot-interval soon").contains("--snapshot"));
    }

    #[test]
    fn sizes_and_durations() {
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("512k"), Ok(512 << 10));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert!(parse_size("99999999999999G").is_err());
    }
}

#[cfg(test)]
mod agent_tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn an_agent_without_origin_serves_nobody_and_a_shield_trusts_its_nginx() {
        let c = Config::from_args(args(
            "--region /dev/shm/peakcache-main --cluster redis://127.0.0.1:6379",
        ))
        .unwrap()
        .unwrap();
        assert_eq!(
            c.region.as_deref(),
            Some(std::path::Path::new("/dev/shm/peakcache-main"))
        );
        assert!(!c.serves && !c.shield);
        let shield = Config::from_args(args(
            "--region /dev/shm/peakcache-main --cluster redis://r:1 --listen 127.0.0.1:8090 \
             --origin http://127.0.0.1:9000",
        ))
        .unwrap()
        .unwrap();
        assert!(shield.serves && shield.shield);
        let plain = Config::from_args(args("--origin http://a:1"))
            .unwrap()
            .unwrap();
        assert!(plain.serves && !plain.shield && plain.region.is_none());
        let err = |s: &str| Config::from_args(args(s)).unwrap_err();
        assert!(err("--region /x --cluster redis://r:1 --listen 127.0.0.1:1").contains("--origin"));
        assert!(err("--cluster redis://r:1").contains("--origin is required"));
        assert!(err("--region /dev/shm/x").contains("--region needs --cluster"));
        assert!(err("--region").contains("needs a value"));
    }
}
