//! `demo-load`: plays the campaign scenario once against any loopback target and prints its
//! figures (the `demo` orchestrator does this twice and compares).

use std::process::ExitCode;

use peakcache_demo::cli::{self, Args};
use peakcache_demo::client::parse_loopback_url;
use peakcache_demo::report;
use peakcache_demo::scenario;

const USAGE: &str = "\
usage: demo-load --target http://127.0.0.1:8080 --origin http://127.0.0.1:9000 [options]
  --target URL      where the visitors send requests (the proxy, or the origin itself)
  --origin URL      the demo origin, for its /__origin/ switches and counters
  --max-age N       the pages' max-age, for the per-expiry figure (4)";

async fn run() -> Result<(), String> {
    let mut args = Args::parse(std::env::args().skip(1), &["help"])?;
    if args.flag("help") {
        println!("{USAGE}\n{}", cli::SCENARIO_FLAGS);
        return Ok(());
    }
    let target = parse_loopback_url(&args.string("target").ok_or("--target is required")?)?;
    let origin = parse_loopback_url(&args.string("origin").ok_or("--origin is required")?)?;
    let max_age: u32 = args.get("max-age", 4)?;
    let sc = cli::scenario(&mut args)?;
    args.finish()?;
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
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("demo-load: {e}");
            ExitCode::FAILURE
        }
    }
}
