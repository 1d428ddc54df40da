//! `demo-origin`: the slow demo origin on its own (see `peakcache_demo::origin`).

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::Parser;
use peakcache_demo::cli::OriginArgs;
use peakcache_demo::client::parse_loopback_url;
use peakcache_demo::origin;

/// The slow demo origin on its own: pages that take a worker for a while, with cacheable
/// headers, and the /__origin/ switches and counters.
#[derive(Debug, Parser)]
#[command(name = "demo-origin")]
struct Cli {
    /// Loopback address to listen on; port 0 picks a free one
    #[arg(long, value_name = "ADDR", value_parser = parse_loopback_url)]
    listen: SocketAddr,
    /// Write the port actually bound to PATH once listening
    #[arg(long, value_name = "PATH")]
    port_file: Option<String>,
    #[command(flatten)]
    origin: OriginArgs,
}

async fn run(cli: Cli) -> Result<(), String> {
    let (listen, port_file, config) = (cli.listen, cli.port_file, cli.origin.config());
    let handle = origin::spawn(listen, config.clone())
        .await
        .map_err(|e| format!("listen on {listen}: {e}"))?;
    if let Some(path) = port_file {
        let tmp = format!("{path}.tmp");
        std::fs::write(&tmp, handle.addr().port().to_string())
            .and_then(|_| std::fs::rename(&tmp, &path))
            .map_err(|e| format!("{path}: {e}"))?;
    }
    println!(
        "demo-origin listening on http://{} ({} ms a page, {} workers, Cache-Control: {})",
        handle.addr(),
        config.delay.as_millis(),
        config.workers,
        config.cache_control()
    );
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| e.to_string())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    match run(Cli::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("demo-origin: {e}");
            ExitCode::FAILURE
        }
    }
}
