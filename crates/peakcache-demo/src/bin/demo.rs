//! `demo`: the orchestrator behind `make demo`. Starts the demo origin, plays the campaign
//! scenario straight to it, then again through `peakcache-proxy`, stops everything it
//! started, and prints the side-by-side table; writes `summary.md` and the SVG chart.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::net::{SocketAddr, TcpListener as StdListener};
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use peakcache_demo::chart;
use peakcache_demo::cli::{self, OriginArgs, ScenarioArgs};
use peakcache_demo::client::{wait_until_answers, wait_until_listening};
use peakcache_demo::origin::OriginConfig;
use peakcache_demo::report::{self, Summary};
use peakcache_demo::scenario::{self, RunResult, Scenario};
use peakcache_demo::svg;
use tokio::process::{Child, Command};

/// Plays a campaign peak against a slow demo origin, straight to it and through
/// peakcache-proxy, and prints the side-by-side table; writes summary.md and the SVG chart.
#[derive(Debug, Parser)]
#[command(name = "demo")]
struct Cli {
    /// Where the chart and summary go [default: target/demo next to the binaries]
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// The demo-origin binary [default: next to this one]
    #[arg(long, value_name = "PATH")]
    origin_bin: Option<PathBuf>,
    /// The peakcache-proxy binary [default: next to this one]
    #[arg(long, value_name = "PATH")]
    proxy_bin: Option<PathBuf>,
    /// The proxy's --size
    #[arg(long, value_name = "SIZE", default_value = "256MiB")]
    proxy_size: String,
    /// Run only the direct half
    #[arg(long)]
    no_proxy: bool,
    /// Keep the pids of the processes started here in PATH (for the script's trap)
    #[arg(long, value_name = "PATH")]
    pidfile: Option<PathBuf>,
    /// Also write every request to requests-{direct,peakcache}.csv and the origin's per-page
    /// counts per second to origin-{direct,peakcache}.csv
    #[arg(long)]
    csv: bool,
    /// Exit 1 unless the run through peakcache met the demo's two goals
    #[arg(long)]
    check: bool,
    #[command(flatten)]
    origin: OriginArgs,
    #[command(flatten)]
    scenario: ScenarioArgs,
}

/// Pids of the children alive, mirrored to a file so `scripts/demo.sh` can kill them even if
/// this process dies without cleaning up.
#[derive(Debug, Default)]
struct PidFile {
    path: Option<PathBuf>,
    pids: Mutex<BTreeSet<u32>>,
}

impl PidFile {
    fn update(&self, f: impl FnOnce(&mut BTreeSet<u32>)) {
        let mut pids = self.pids.lock().unwrap();
        f(&mut pids);
        if let Some(path) = &self.path {
            let text: String = pids.iter().map(|p| format!("{p}\n")).collect();
            let _ = std::fs::write(path, text);
        }
    }
}

/// A child process, killed when dropped (also when the run is interrupted).
struct Proc {
    name: &'static str,
    child: Child,
    pid: u32,
    log: PathBuf,
    pids: Arc<PidFile>,
}

impl Proc {
    fn spawn(
        name: &'static str,
        bin: &Path,
        args: &[String],
        log: PathBuf,
        pids: &Arc<PidFile>,
    ) -> Result<Proc, String> {
        let out = std::fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
        let err = out.try_clone().map_err(|e| e.to_string())?;
        let child = Command::new(bin)
            .args(args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("start {}: {e}", bin.display()))?;
        let pid = child.id().unwrap_or(0);
        pids.update(|p| {
            p.insert(pid);
        });
        Ok(Proc {
            name,
            child,
            pid,
            log,
            pids: pids.clone(),
        })
    }

    /// An error naming the process, with the end of its log.
    fn failure(&self, what: &str) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(15).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        format!(
            "{} {what}; the end of {}:\n{}",
            self.name,
            self.log.display(),
            tail.join("\n")
        )
    }

    fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    async fn stop(mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        let pid = self.pid;
        self.pids.update(|p| {
            p.remove(&pid);
        });
    }
}

fn free_port() -> Result<u16, String> {
    StdListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free loopback port: {e}"))
}

/// Waits for `check` to succeed while making sure `proc` is still running.
async fn wait_ready(
    proc: &mut Proc,
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> Option<u16>,
) -> Result<u16, String> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return Ok(v);
        }
        if proc.exited() {
            return Err(proc.failure(&format!("exited before {what}")));
        }
        if Instant::now() > deadline {
            return Err(proc.failure(&format!("not {what} after {timeout:?}")));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

struct Setup {
    out: PathBuf,
    origin_bin: PathBuf,
    proxy_bin: Option<PathBuf>,
    proxy_size: String,
    origin: OriginConfig,
    scenario: Scenario,
    pids: Arc<PidFile>,
}

async fn start_origin(s: &Setup, run: &str) -> Result<(Proc, SocketAddr), String> {
    let port_file = s.out.join(format!("origin-{run}.port"));
    let _ = std::fs::remove_file(&port_file);
    let o = &s.origin;
    let args: Vec<String> = [
        "--listen",
        "127.0.0.1:0",
        "--port-file",
        &port_file.to_string_lossy(),
        "--delay-ms",
        &o.delay.as_millis().to_string(),
        "--workers",
        &o.workers.to_string(),
        "--max-age",
        &o.max_age.to_string(),
        "--swr",
        &o.swr.to_string(),
        "--sie",
        &o.sie.to_string(),
    ]
    .map(str::to_owned)
    .to_vec();
    let mut proc = Proc::spawn(
        "demo-origin",
        &s.origin_bin,
        &args,
        s.out.join(format!("origin-{run}.log")),
        &s.pids,
    )?;
    let port = wait_ready(&mut proc, "listening", Duration::from_secs(10), || {
        std::fs::read_to_string(&port_file)
            .ok()?
            .trim()
            .parse()
            .ok()
    })
    .await?;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let _ = std::fs::remove_file(&port_file);
    wait_until_answers(addr, "/__origin/stats", Duration::from_secs(5)).await?;
    Ok((proc, addr))
}

async fn start_proxy(
    s: &Setup,
    bin: &Path,
    origin: SocketAddr,
) -> Result<(Proc, SocketAddr), String> {
    let mut last = String::new();
    // The port is free when picked but could be taken before the proxy binds it: try twice.
    for _ in 0..2 {
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()?));
        let args = vec![
            "--listen".to_owned(),
            addr.to_string(),
            "--origin".to_owned(),
            format!("http://{origin}"),
            "--size".to_owned(),
            s.proxy_size.clone(),
        ];
        let mut proc = Proc::spawn(
            "peakcache-proxy",
            bin,
            &args,
            s.out.join("proxy.log"),
            &s.pids,
        )?;
        let deadline = Instant::now() + Duration::from_secs(15);
        let listening = loop {
            if wait_until_listening(addr, Duration::from_millis(50))
                .await
                .is_ok()
            {
                break true;
            }
            if proc.exited() || Instant::now() > deadline {
                break false;
            }
        };
        if !listening {
            last = proc.failure("did not start listening");
            continue;
        }
        // The origin's control endpoints are `no-store`: this checks the proxy forwards
        // without warming its cache with a page.
        wait_until_answers(addr, "/__origin/stats", Duration::from_secs(5))
            .await
            .map_err(|e| proc.failure(&format!("does not forward to the origin ({e})")))?;
        return Ok((proc, addr));
    }
    Err(last)
}

async fn run_direct(s: &Setup) -> Result<RunResult, String> {
    let (origin, addr) = start_origin(s, "direct").await?;
    println!("origin on http://{addr}; run 1: visitors straight to the origin");
    let run = scenario::run(&s.scenario, addr, addr).await;
    origin.stop().await;
    run
}

async fn run_proxied(s: &Setup, bin: &Path) -> Result<RunResult, String> {
    let (origin, origin_addr) = start_origin(s, "peakcache").await?;
    let (proxy, addr) = start_proxy(s, bin, origin_addr).await?;
    println!("origin on http://{origin_addr}, peakcache-proxy on http://{addr}; run 2: visitors through peakcache");
    let run = scenario::run(&s.scenario, addr, origin_addr).await;
    let mut proxy = proxy;
    if proxy.exited() {
        eprintln!("warning: {}", proxy.failure("exited during the run"));
    }
    proxy.stop().await;
    origin.stop().await;
    run
}

fn cache_status_line(run: &RunResult) -> String {
    let total: u64 = run.load.cache_status.values().sum();
    let parts: Vec<String> = run
        .load
        .cache_status
        .iter()
        .map(|(k, v)| {
            format!(
                "{k} {} ({:.2} %)",
                report::thousands(*v),
                100.0 * *v as f64 / total.max(1) as f64
            )
        })
        .collect();
    format!(
        "Cache-Status of the answers through peakcache: {}",
        parts.join(", ")
    )
}

/// Seconds for people: `8`, `2.5`.
fn secs(t: f64) -> String {
    let s = format!("{t:.1}");
    s.strip_suffix(".0").map(str::to_owned).unwrap_or(s)
}

fn describe(s: &Setup) -> String {
    let sc = &s.scenario;
    let live = sc.live.as_secs_f64();
    let down_end = live + sc.down.as_secs_f64();
    format!(
        "{} visitors, each on its own keep-alive connection, request one of {} pages (weights {:?}) \
         back to back with {} ms think time. The origin takes {} ms a page with {} workers and sends \
         `Cache-Control: {}`. Phases: campaign goes live 0–{} s, origin fails ({}) {}–{} s, \
         healed {}–{} s.",
        sc.load.visitors,
        sc.load.page_weights.len(),
        sc.load.page_weights,
        sc.load.think.as_millis(),
        s.origin.delay.as_millis(),
        s.origin.workers,
        s.origin.cache_control(),
        secs(live),
        sc.fail_mode,
        secs(live),
        secs(down_end),
        secs(down_end),
        secs(sc.duration().as_secs_f64())
    )
}

fn write_csv(path: &Path, run: &RunResult) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut w = std::io::BufWriter::new(std::fs::File::create(path)?);
    writeln!(w, "start_us,latency_us,status,page")?;
    for s in &run.load.samples {
        writeln!(w, "{},{},{},{}", s.start_us, s.latency_us, s.status, s.page)?;
    }
    w.flush()
}

fn write_origin_csv(path: &Path, run: &RunResult) -> std::io::Result<()> {
    let mut text = String::from("second,path,requests\n");
    for (p, stats) in &run.origin.paths {
        for (second, n) in stats.per_second.iter().enumerate().filter(|(_, n)| **n > 0) {
            let _ = writeln!(text, "{second},{p},{n}");
        }
    }
    std::fs::write(path, text)
}

const NOTES: &str = "\
Latency percentiles cover every request, errors and timeouts included; visitors run a closed \
loop, so the direct run's latency is the origin's queue. Hit ratio is 1 − origin requests / \
visitor requests. \"Origin requests per page per expiry\" is the most requests the origin \
received for one page in any max-age − 1 s window while healthy (a `Date` has one-second \
resolution, so a conforming cache may refresh a page max-age − 1 s after it arrived).";

async fn run(cli: Cli, scenario: Scenario) -> Result<bool, String> {
    let exe_dir = std::env::current_exe()
        .map_err(|e| e.to_string())?
        .parent()
        .ok_or("no executable directory")?
        .to_owned();
    let out = cli
        .out
        .unwrap_or_else(|| exe_dir.parent().unwrap_or(&exe_dir).join("demo"));
    let origin_bin = cli
        .origin_bin
        .unwrap_or_else(|| exe_dir.join("demo-origin"));
    let proxy_bin = cli
        .proxy_bin
        .unwrap_or_else(|| exe_dir.join("peakcache-proxy"));
    let (no_proxy, check, csv) = (cli.no_proxy, cli.check, cli.csv);
    let (pidfile, proxy_size) = (cli.pidfile, cli.proxy_size);
    let origin = cli.origin.config();
    std::fs::create_dir_all(&out).map_err(|e| format!("{}: {e}", out.display()))?;
    // What an earlier run left must not pass for this run's output.
    for name in [
        "summary.md",
        "peakcache-demo.svg",
        "proxy.log",
        "origin-direct.log",
        "origin-peakcache.log",
        "requests-direct.csv",
        "requests-peakcache.csv",
        "origin-direct.csv",
        "origin-peakcache.csv",
    ] {
        let _ = std::fs::remove_file(out.join(name));
    }
    let proxy_bin = if no_proxy {
        println!("--no-proxy: the run through peakcache is skipped");
        None
    } else if proxy_bin.is_file() {
        Some(proxy_bin)
    } else {
        println!(
            "{} not found (crates/peakcache-proxy not built yet): the run through peakcache is skipped",
            proxy_bin.display()
        );
        None
    };
    let setup = Setup {
        out: out.clone(),
        origin_bin,
        proxy_bin,
        proxy_size,
        origin,
        scenario,
        pids: Arc::new(PidFile {
            path: pidfile,
            pids: Mutex::default(),
        }),
    };
    println!("{}\n", describe(&setup));

    let direct = run_direct(&setup).await?;
    let proxied = match &setup.proxy_bin {
        Some(bin) => Some(run_proxied(&setup, bin).await?),
        None => None,
    };

    let max_age = setup.origin.max_age;
    let ds = report::summarize(&direct, max_age);
    let ps: Option<Summary> = proxied.as_ref().map(|r| report::summarize(r, max_age));
    let table = report::text_table(Some(&ds), ps.as_ref());
    println!("\n{table}");
    let mut md = format!(
        "# peakcache demo: a campaign peak, with and without peakcache\n\n{}\n{}\n\n",
        report::markdown_table(Some(&ds), ps.as_ref()),
        describe(&setup)
    );
    let mut goals_met = true;
    match (&proxied, &ps) {
        (Some(run), Some(p)) => {
            let line = cache_status_line(run);
            let one = p.max_origin_per_page_per_expiry <= 1;
            let no_errors = p.errors_while_down == 0;
            goals_met = one && no_errors;
            let mark = |ok: bool| if ok { "✔" } else { "✘" };
            let goals = format!(
                "{} the origin saw at most {} request(s) per page per expiry while {} visitors came\n\
                 {} visitors saw {} error(s) while the origin was down ({} requests answered meanwhile)",
                mark(one),
                p.max_origin_per_page_per_expiry,
                setup.scenario.load.visitors,
                mark(no_errors),
                report::thousands(p.errors_while_down),
                report::thousands(p.requests_while_down - p.errors_while_down),
            );
            println!("{line}\n{goals}");
            let _ = write!(md, "{line}.\n\n{}\n\n", goals.replace('\n', "  \n"));
        }
        _ => {
            println!("the run through peakcache was skipped");
            md.push_str("The run through peakcache was skipped (peakcache-proxy not built).\n\n");
        }
    }
    md.push_str(NOTES);
    md.push_str("\n\n![requests per second](peakcache-demo.svg)\n");

    if csv {
        for (name, run) in [("direct", Some(&direct)), ("peakcache", proxied.as_ref())] {
            if let Some(run) = run {
                let path = out.join(format!("requests-{name}.csv"));
                write_csv(&path, run).map_err(|e| format!("{}: {e}", path.display()))?;
                let opath = out.join(format!("origin-{name}.csv"));
                write_origin_csv(&opath, run).map_err(|e| format!("{}: {e}", opath.display()))?;
                println!("requests: {}, {}", path.display(), opath.display());
            }
        }
    }
    let chart = chart::build(
        &setup.scenario,
        &setup.origin,
        Some(&direct),
        proxied.as_ref(),
    );
    let svg_path = out.join("peakcache-demo.svg");
    std::fs::write(&svg_path, svg::render(&chart))
        .map_err(|e| format!("{}: {e}", svg_path.display()))?;
    let md_path = out.join("summary.md");
    std::fs::write(&md_path, md).map_err(|e| format!("{}: {e}", md_path.display()))?;
    println!(
        "\nchart:   {}\nsummary: {}",
        svg_path.display(),
        md_path.display()
    );
    Ok(goals_met || !check)
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let scenario = match cli.scenario.scenario() {
        Ok(s) => s,
        Err(e) => cli::usage_error::<Cli>(&e),
    };
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("demo: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Dropping the run's future on a signal drops its `Proc`s, which kills the children.
    let result = tokio::select! {
        r = run(cli, scenario) => r,
        _ = tokio::signal::ctrl_c() => Err("interrupted; stopped everything it started".into()),
        _ = term.recv() => Err("terminated; stopped everything it started".into()),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("demo: the run through peakcache missed a goal (--check)");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("demo: {e}");
            ExitCode::FAILURE
        }
    }
}
