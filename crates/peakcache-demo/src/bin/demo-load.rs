//! `demo-load`: plays the campaign scenario once against any loopback target and prints its
//! figures (the `demo` orchestrator does this twice and compares).

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::Parser;
use peakcache_demo::cli::{self, ScenarioArgs};
use peakcache_demo::client::parse_loopback_url;
use peakcache_demo::origin::OriginConfig;
use peakcache_demo::report;
use peakcache_demo::scenario;

/// Plays the campaign scenario once against any loopback target and prints its figures.
#[derive(Debug, Parser)]
#[command(name = "demo-load")]
struct Cli {
    /// Where the visitors send requests (the proxy, or the origin itself)
    #[arg(long, value_name = "URL", value_parser = parse_loopback_url)]
    target: SocketAddr,
    /// The demo origin, for its /__origin/ switches and counters
    #[arg(long, value_name = "URL", value_parser = parse_loopback_url)]
    origin: SocketAddr,
    /// The pages' max-age, for the per-expiry figure
    #[arg(long, value_name = "N", default_value_t = OriginConfig::default().max_age)]
    max_age: u32,
    #[command(flatten)]
    scenario: ScenarioArgs,
}

async fn run(cli: Cli) -> Result<(), String> {
    let (target, origin, max_age) = (cli.target, cli.origin, cli.max_age);
    let sc = match cli.scenario.scenario() {
        Ok(sc) => sc,
        Err(e) => cli::usage_error::<Cli>(&e),
    };
    let run = scenario::run(&sc, target, origin).await?;
    let s = report::summarize(&run, max_age);
    let label = if target == origin {
        "direct"
    } else {
        "through the target"
    };
    let table = if target == origin {
        report::text_table(Some(&s), None)
    } else {
        report::text_table(None, Some(&s))
    };
    println!("{label}, {:.1} s:\n{table}", run.wall.as_secs_f64());
    for (k, v) in &run.load.cache_status {
        println!("Cache-Status {k}: {}", report::thousands(*v));
    }
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    match run(Cli::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("demo-load: {e}");
            ExitCode::FAILURE
        }
    }
}
