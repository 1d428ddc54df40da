//! `demo-origin`: the slow demo origin on its own (see `peakcache_demo::origin`).

use std::process::ExitCode;

use peakcache_demo::cli::{self, Args};
use peakcache_demo::client::parse_loopback_url;
use peakcache_demo::origin;

const USAGE: &str = "\
usage: demo-origin --listen 127.0.0.1:9000 [options]
  --listen ADDR     loopback address to listen on; port 0 picks a free one
  --port-file PATH  write the port actually bound to PATH once listening";

async fn run() -> Result<(), String> {
    let mut args = Args::parse(std::env::args().skip(1), &["help"])?;
    if args.flag("help") {
        println!("{USAGE}\n{}", cli::ORIGIN_FLAGS);
        return Ok(());
    }
    let listen = parse_loopback_url(&args.string("listen").ok_or("--listen is required")?)?;
    let port_file = args.string("port-file");
    let config = cli::origin_config(&mut args)?;
    args.finish()?;
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
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("demo-origin: {e}");
            ExitCode::FAILURE
        }
    }
}
