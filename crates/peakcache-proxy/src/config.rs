//! The proxy's settings, from the command line (clap).

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::error::ErrorKind;
use clap::{CommandFactory, Parser};

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
    /// How often the snapshot is written in the background (`--snapshot-interval`, at least a
    /// second; needs `snapshot`). Off by default: only on request and at stop.
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

/// The command line as clap reads it, one field a flag; [`Config::from_args`] turns it into a
/// [`Config`] and checks the rules that span several flags.
#[derive(Debug, Parser)]
#[command(
    name = "peakcache-proxy",
    version,
    about = "A caching reverse proxy in front of one HTTP origin, or the host agent of an nginx \
             or PHP-FPM shared region",
    override_usage = "peakcache-proxy --origin http://HOST:PORT [OPTIONS]\n       \
                      peakcache-proxy --region PATH --cluster URL [--origin http://HOST:PORT] [OPTIONS]",
    after_help = "DURATION is a number with ms, s or m; SIZE a number with B, KiB, MiB, GiB \
                  (or k, M, G). RUST_LOG filters the log lines (default info), e.g. \
                  RUST_LOG=warn or RUST_LOG=peakcache_proxy=debug."
)]
struct Cli {
    /// Where visitors connect [default: 127.0.0.1:8080]
    #[arg(long, value_name = "ADDR", value_parser = parse_addr)]
    listen: Option<SocketAddr>,
    /// The origin, http://host:port (required, except for an agent that serves nobody)
    #[arg(long, value_name = "URL", value_parser = parse_origin)]
    origin: Option<http::Uri>,
    /// Cache capacity, e.g. 256MiB, 1GiB (at least 1MiB)
    #[arg(long, value_name = "SIZE", value_parser = parse_size, default_value = "256MiB")]
    size: u64,
    /// Largest body stored, at most an eighth of --size; larger ones stream through
    #[arg(long, value_name = "SIZE", value_parser = parse_size, default_value = "8MiB")]
    max_object: u64,
    /// Admin listener for purge, freeze and /metrics [default: off]
    #[arg(long, value_name = "ADDR", value_parser = parse_addr)]
    admin: Option<SocketAddr>,
    /// How long waiters wait for a fill before fetching for themselves
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "5s")]
    lock_timeout: Duration,
    /// How long an origin request may take before it counts as failed
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "30s")]
    origin_timeout: Duration,
    /// Origin requests in flight at most; beyond it stale, or 503 with Retry-After
    #[arg(long, value_name = "N", value_parser = parse_positive, default_value = "64")]
    origin_concurrency: usize,
    /// How long an uncacheable URL passes through without coalescing
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "10s")]
    pass_hold: Duration,
    /// Serve stale this long past expiry when the origin fails, even without the origin's
    /// stale-if-error (0: off)
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "0")]
    stale_if_error_grace: Duration,
    /// Act on visitors' Cache-Control/Pragma (no-cache, max-age, no-store, only-if-cached) for
    /// that visitor alone; by default they are ignored (a visitor cannot refetch or bypass the
    /// cache)
    #[arg(long)]
    honour_request_directives: bool,
    /// One host of a cluster on Redis >= 7 or Valkey, redis://host:port: purges reach every
    /// host, misses read the second-level cache, one host fetches a page for all [default: off]
    #[arg(long, value_name = "URL")]
    cluster: Option<String>,
    /// The cluster's name; hosts with the same name and server act as one [default: peakcache]
    #[arg(long, value_name = "NAME")]
    cluster_name: Option<String>,
    /// Cut off from the cluster's purges longer than this, the host serves nothing as fresh
    /// until it has caught up [default: 1s]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    max_lag: Option<Duration>,
    /// Be the host agent of this shared memory region (an nginx shared zone's or a PHP-FPM
    /// pool's file; needs --cluster): its purges are published, the cluster's applied to it;
    /// with --origin, also the shield nginx proxies its misses to. Run it as the region's owner
    #[arg(long, value_name = "PATH")]
    region: Option<PathBuf>,
    /// The cache's snapshot file: restored at start when it exists (the first visitors get
    /// HITs), written on POST /snapshot (admin) and when stopped; POST /restore?freeze=1 rolls
    /// back to it [default: off]
    #[arg(long, value_name = "PATH")]
    snapshot: Option<PathBuf>,
    /// Also write the snapshot this often, in the background (at least 1s; needs --snapshot)
    /// [default: off]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    snapshot_interval: Option<Duration>,
}

impl Config {
    /// Parses a command line (the program's name first). The error is clap's, ready to be
    /// shown with [`clap::Error::exit`]: `--help` and `--version` print to stdout and exit 0,
    /// a bad flag or value, or flags that do not go together, print a message naming it and
    /// the usage to stderr and exit 2.
    pub fn from_args<I, T>(args: I) -> Result<Config, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        let cli = Cli::try_parse_from(args)?;
        Config::from_cli(cli).map_err(|e| Cli::command().error(ErrorKind::ArgumentConflict, e))
    }

    /// The configuration `cli` asks for, or what is wrong across its flags.
    fn from_cli(cli: Cli) -> Result<Config, String> {
        let mut c = Config {
            listen: cli.listen.unwrap_or(Config::default().listen),
            admin: cli.admin,
            size: cli.size,
            max_object: cli.max_object,
            lock_timeout: cli.lock_timeout,
            origin_timeout: cli.origin_timeout,
            origin_concurrency: cli.origin_concurrency,
            pass_hold: cli.pass_hold,
            stale_if_error_grace: cli.stale_if_error_grace,
            honour_request_directives: cli.honour_request_directives,
            region: cli.region,
            snapshot: cli.snapshot,
            snapshot_interval: cli.snapshot_interval,
            ..Config::default()
        };
        match (cli.origin, &c.region) {
            (Some(o), region) => {
                c.origin = o;
                c.shield = region.is_some();
            }
            (None, Some(_)) if cli.listen.is_some() => {
                return Err("--listen needs --origin (without it the agent serves nobody)".into())
            }
            (None, Some(_)) => c.serves = false,
            (None, None) => return Err("--origin is required".into()),
        }
        check_snapshot(&c)?;
        if c.region.is_some() && cli.cluster.is_none() {
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
        c.cluster = match cli.cluster {
            Some(url) => {
                let mut cluster = peakcache_cluster::Config::new(url);
                if let Some(name) = cli.cluster_name {
                    cluster.name = name;
                }
                if let Some(lag) = cli.max_lag {
                    cluster.max_lag = lag;
                }
                cluster.lock_timeout = c.lock_timeout;
                cluster.l2_max_body = cluster.l2_max_body.min(c.max_object as usize);
                cluster.validate()?;
                Some(cluster)
            }
            None if cli.cluster_name.is_some() || cli.max_lag.is_some() => {
                return Err("--cluster-name and --max-lag need --cluster".into())
            }
            None => None,
        };
        Ok(c)
    }
}

/// The rules of `--snapshot` and `--snapshot-interval`.
fn check_snapshot(c: &Config) -> Result<(), String> {
    if c.snapshot
        .as_ref()
        .is_some_and(|p| p.as_os_str().is_empty())
    {
        return Err("--snapshot needs a path".into());
    }
    match c.snapshot_interval {
        Some(_) if c.snapshot.is_none() => {
            return Err("--snapshot-interval needs --snapshot PATH".into())
        }
        Some(t) if t < Duration::from_secs(1) => {
            return Err("--snapshot-interval must be at least 1s".into())
        }
        _ => {}
    }
    if c.snapshot.is_some() && c.region.is_some() {
        return Err(
            "--snapshot is for the proxy's own cache, not an agent's (--region): the \
                    region's host (nginx, PHP) writes the region's snapshots"
                .into(),
        );
    }
    Ok(())
}

/// Parses `127.0.0.1:8080` or `[::1]:8080`.
fn parse_addr(s: &str) -> Result<SocketAddr, String> {
    s.parse()
        .map_err(|_| "not an address like 127.0.0.1:8080".to_string())
}

/// Parses the origin's base URL, which must be `http://host:port`.
fn parse_origin(s: &str) -> Result<http::Uri, String> {
    let uri: http::Uri = s.parse().map_err(|_| "not a URL".to_string())?;
    if uri.scheme_str() != Some("http") || uri.authority().is_none() {
        return Err("the origin must be http://host:port".into());
    }
    Ok(uri)
}

/// Parses a count of at least one.
fn parse_positive(s: &str) -> Result<usize, String> {
    s.parse()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| "not a positive number".to_string())
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

    fn parse(line: &str) -> Result<Config, clap::Error> {
        Config::from_args(std::iter::once("peakcache-proxy").chain(line.split_whitespace()))
    }

    /// The message a user sees for `line`, after checking it is a usage error (exit status 2).
    fn err(line: &str) -> String {
        let e = parse(line).unwrap_err();
        assert_eq!(e.exit_code(), 2, "{line}: {e}");
        e.to_string()
    }

    #[test]
    fn parses_the_documented_example() {
        let c =
            parse("--listen 127.0.0.1:8080 --origin http://127.0.0.1:9000 --size 256MiB").unwrap();
        assert_eq!(c.size, 256 << 20);
        assert_eq!(c.origin.authority().unwrap().as_str(), "127.0.0.1:9000");
        assert_eq!(c.stale_if_error_grace, Duration::ZERO);
        assert!(
            !c.honour_request_directives,
            "request directives are ignored by default"
        );
        let c = parse("--honour-request-directives --origin http://127.0.0.1:9000").unwrap();
        assert!(c.honour_request_directives);
        let c = parse("--origin=http://127.0.0.1:9000 --admin=[::1]:8081 --origin-concurrency 3")
            .unwrap();
        assert_eq!(c.admin, Some("[::1]:8081".parse().unwrap()));
        assert_eq!(c.origin_concurrency, 3);
    }

    #[test]
    fn the_flags_defaults_are_the_configs_defaults() {
        let (c, d) = (
            parse("--origin http://127.0.0.1:9000").unwrap(),
            Config::default(),
        );
        assert_eq!((c.listen, c.admin), (d.listen, d.admin));
        assert_eq!((c.size, c.max_object), (d.size, d.max_object));
        assert_eq!(
            (c.lock_timeout, c.origin_timeout, c.pass_hold),
            (d.lock_timeout, d.origin_timeout, d.pass_hold)
        );
        assert_eq!(c.origin_concurrency, d.origin_concurrency);
        assert_eq!(c.stale_if_error_grace, d.stale_if_error_grace);
    }

    #[test]
    fn help_and_version_are_not_errors_and_help_lists_every_flag() {
        for line in ["--help", "-h", "--version"] {
            assert_eq!(parse(line).unwrap_err().exit_code(), 0, "{line}");
        }
        let help = parse("--help").unwrap_err().to_string();
        for flag in [
            "--listen",
            "--origin ",
            "--size",
            "--max-object",
            "--admin",
            "--lock-timeout",
            "--origin-timeout",
            "--origin-concurrency",
            "--pass-hold",
            "--stale-if-error-grace",
            "--honour-request-directives",
            "--cluster ",
            "--cluster-name",
            "--max-lag",
            "--region",
            "--snapshot ",
            "--snapshot-interval",
            "DURATION is",
            "RUST_LOG",
        ] {
            assert!(help.contains(flag), "{flag} missing from --help:\n{help}");
        }
        assert!(
            help.contains("peakcache-proxy --region PATH --cluster URL"),
            "{help}"
        );
    }

    #[test]
    fn rfc9111_4_2_4_stale_if_error_grace_is_an_explicit_operator_setting() {
        let c = parse("--origin http://127.0.0.1:9000 --stale-if-error-grace 2m").unwrap();
        assert_eq!(c.stale_if_error_grace, Duration::from_secs(120));
    }

    #[test]
    fn bad_configuration_gets_a_clear_message() {
        assert!(err("--size 10MiB").contains("--origin is required"));
        assert!(err("--origin ftp://x").contains("must be http://"));
        assert!(err("--origin http://a:1 --size lots").contains("--size"));
        assert!(err("--origin http://a:1 --size lots").contains("not a size like 256MiB"));
        assert!(err("--origin http://a:1 --bogus 1").contains("unexpected argument '--bogus'"));
        assert!(err("--origin http://a:1 stray").contains("unexpected argument 'stray'"));
        assert!(err("--origin http://a:1 --lock-timeout 5h").contains("unknown duration unit"));
        assert!(err("--origin http://a:1 --listen").contains("a value is required for '--listen"));
        assert!(err("--origin http://a:1 --listen localhost").contains("not an address like"));
        assert!(err("--origin http://a:1 --origin-concurrency 0").contains("not a positive number"));
        assert!(err("--origin http://a:1 --size 512k").contains("at least 1MiB"));
        assert!(err("--origin http://a:1 --size 8MiB --max-object 2MiB")
            .contains("an eighth of --size (1048576 bytes)"));
        assert!(err("--origin http://a:1 --max-object 0").contains("between 1 byte"));
        let e = err("--origin http://a:1 --size 10MiB");
        assert!(
            e.contains("Usage: peakcache-proxy --origin http://HOST:PORT"),
            "{e}"
        );
    }

    #[test]
    fn the_cluster_options() {
        let c = parse(
            "--origin http://127.0.0.1:9000 --cluster redis://127.0.0.1:6379 --max-lag 250ms \
             --cluster-name shop --lock-timeout 2s",
        )
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
        let c = parse("--origin http://a:1 --cluster redis://r:6379").unwrap();
        assert_eq!(
            c.cluster.unwrap().max_lag,
            Duration::from_secs(1),
            "default"
        );
        assert!(parse("--origin http://a:1").unwrap().cluster.is_none());

        assert!(err("--origin http://a:1 --max-lag 1s").contains("need --cluster"));
        assert!(err("--origin http://a:1 --cluster-name shop").contains("need --cluster"));
        assert!(err("--origin http://a:1 --cluster http://r").contains("cluster URL"));
        assert!(
            err("--origin http://a:1 --cluster redis://r --cluster-name a{b}")
                .contains("cluster name")
        );
    }

    #[test]
    fn the_snapshot_options() {
        let c = parse(
            "--origin http://a:1 --snapshot /var/lib/peakcache/proxy.snapshot \
             --snapshot-interval 5m",
        )
        .unwrap();
        assert_eq!(
            c.snapshot.as_deref(),
            Some(std::path::Path::new("/var/lib/peakcache/proxy.snapshot"))
        );
        assert_eq!(c.snapshot_interval, Some(Duration::from_secs(300)));
        let plain = parse("--origin http://a:1").unwrap();
        assert_eq!((plain.snapshot, plain.snapshot_interval), (None, None));
        assert!(err("--origin http://a:1 --snapshot-interval 1m").contains("needs --snapshot"));
        assert!(
            err("--origin http://a:1 --snapshot /s --snapshot-interval 10ms")
                .contains("at least 1s")
        );
        assert!(err("--region /r --cluster redis://r:1 --snapshot /s").contains("--region"));
        assert!(
            err("--origin http://a:1 --snapshot /s --snapshot-interval soon")
                .contains("--snapshot-interval")
        );
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

    fn parse(line: &str) -> Result<Config, clap::Error> {
        Config::from_args(std::iter::once("peakcache-proxy").chain(line.split_whitespace()))
    }

    #[test]
    fn an_agent_without_origin_serves_nobody_and_a_shield_trusts_its_nginx() {
        let c = parse("--region /dev/shm/peakcache-main --cluster redis://127.0.0.1:6379").unwrap();
        assert_eq!(
            c.region.as_deref(),
            Some(std::path::Path::new("/dev/shm/peakcache-main"))
        );
        assert!(!c.serves && !c.shield);
        let shield = parse(
            "--region /dev/shm/peakcache-main --cluster redis://r:1 --listen 127.0.0.1:8090 \
             --origin http://127.0.0.1:9000",
        )
        .unwrap();
        assert!(shield.serves && shield.shield);
        let plain = parse("--origin http://a:1").unwrap();
        assert!(plain.serves && !plain.shield && plain.region.is_none());
        let err = |s: &str| {
            let e = parse(s).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{s}: {e}");
            e.to_string()
        };
        assert!(err("--region /x --cluster redis://r:1 --listen 127.0.0.1:1").contains("--origin"));
        assert!(err("--cluster redis://r:1").contains("--origin is required"));
        assert!(err("--region /dev/shm/x").contains("--region needs --cluster"));
        assert!(err("--region").contains("a value is required for '--region"));
        let e = Config::from_args([
            "peakcache-proxy",
            "--region",
            "",
            "--cluster",
            "redis://r:1",
        ])
        .unwrap_err();
        assert_eq!(e.exit_code(), 2, "an empty --region: {e}");
    }
}
