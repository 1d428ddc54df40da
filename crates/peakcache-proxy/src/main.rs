//! `peakcache-proxy --listen 127.0.0.1:8080 --origin http://127.0.0.1:9000 --size 256MiB`, or
//! the host agent of a shared region:
//! `peakcache-proxy --region /dev/shm/peakcache-main --cluster redis://10.0.0.5:6379`.

use peakcache_proxy::agent::Agent;
use peakcache_proxy::{admin, listen, serve, Config, Proxy};
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use tokio::net::TcpListener;
use tracing::{error, info};
use tracing_subscriber::filter::{EnvFilter, LevelFilter};

fn main() -> ExitCode {
    let config = match Config::from_args(std::env::args_os()) {
        Ok(c) => c,
        Err(e) => e.exit(),
    };
    if let Err(e) = init_logging() {
        eprintln!("peakcache-proxy: {e}");
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            error!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let listener = match config.serves.then(|| listen(config.listen)).transpose() {
            Ok(l) => l,
            Err(e) => {
                error!("cannot listen on {}: {e}", config.listen);
                return ExitCode::FAILURE;
            }
        };
        let admin = match config.admin {
            Some(addr) => match listen(addr) {
                Ok(l) => Some(l),
                Err(e) => {
                    error!("cannot listen on {addr} (admin): {e}");
                    return ExitCode::FAILURE;
                }
            },
            None => None,
        };
        if let Some(region) = config.region.clone() {
            return run_agent(config, region, listener, admin).await;
        }
        let Some(listener) = listener else {
            return ExitCode::FAILURE;
        };
        info!(
            "listening on {}, origin {}, cache {} bytes{}{}",
            bound(&listener, config.listen),
            config.origin,
            config.size,
            admin
                .as_ref()
                .zip(config.admin)
                .map(|(l, a)| format!(", admin on {}", bound(l, a)))
                .unwrap_or_default(),
            config
                .cluster
                .as_ref()
                .map(|c| format!(", cluster {} on {}", c.name, c.url))
                .unwrap_or_default()
        );
        // Restores the snapshot, if any, before the first visitor is answered (this thread is
        // not one of the runtime's workers: nothing else waits for it meanwhile).
        let proxy = match Proxy::try_new(config) {
            Ok(p) => Arc::new(p),
            Err(e) => {
                error!("{e}");
                return ExitCode::FAILURE;
            }
        };
        tokio::select! {
            _ = serve(proxy.clone(), listener, admin) => {}
            _ = stopped() => {}
        }
        write_last_snapshot(proxy).await;
        ExitCode::SUCCESS
    })
}

/// Writes the snapshot (`--snapshot`) once more when the proxy stops, so that a restart
/// serves what was cached up to the stop.
async fn write_last_snapshot(proxy: Arc<Proxy>) {
    let Some(path) = proxy.config().snapshot.clone() else {
        return;
    };
    let to = path.clone();
    match tokio::task::spawn_blocking(move || proxy.snapshot(&to)).await {
        Ok(Ok(w)) => info!(
            "wrote {} responses to {} in {:.2} s",
            w.responses,
            path.display(),
            w.took.as_secs_f64()
        ),
        Ok(Err(e)) => error!("last snapshot not written: {e}"),
        Err(e) => error!("last snapshot not written: {e}"),
    }
}

/// The host agent of `region` (and, with a listener, the shield), until stopped.
async fn run_agent(
    config: Config,
    region: PathBuf,
    listener: Option<TcpListener>,
    admin: Option<TcpListener>,
) -> ExitCode {
    let Some(cluster) = config.cluster.clone() else {
        error!("--region needs --cluster");
        return ExitCode::from(2);
    };
    let attach = {
        let (region, cluster) = (region.clone(), cluster.clone());
        tokio::task::spawn_blocking(move || Agent::attach(&region, &cluster)).await
    };
    let agent = match attach {
        Ok(Ok(a)) => Arc::new(a),
        Ok(Err(e)) => {
            error!("{e}");
            return ExitCode::FAILURE;
        }
        Err(e) => {
            error!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let shield = match listener {
        Some(_) => {
            let joined = Proxy::try_new_joined(config.clone(), |local| {
                agent.join(cluster.clone(), Some(local)).map(Some)
            });
            match joined {
                Ok(p) => Some(Arc::new(p)),
                Err(e) => {
                    error!("{e}");
                    return ExitCode::FAILURE;
                }
            }
        }
        None => match agent.join(cluster, None) {
            Ok(_) => None,
            Err(e) => {
                error!("{e}");
                return ExitCode::FAILURE;
            }
        },
    };
    if let Some(admin) = admin {
        let (agent, shield) = (agent.clone(), shield.clone());
        tokio::spawn(peakcache_proxy::accept(admin, move |req| {
            admin::handle_agent(agent.clone(), shield.clone(), req)
        }));
    }
    if let (Some(proxy), Some(listener)) = (shield, listener) {
        info!(
            "shield listening on {}, origin {}, cache {} bytes",
            bound(&listener, config.listen),
            config.origin,
            config.size
        );
        tokio::select! {
            _ = serve(proxy, listener, None) => {}
            _ = stopped() => {}
        }
    } else {
        stopped().await;
    }
    info!(
        "stopping ({} stays followed from where it stopped)",
        region.display()
    );
    ExitCode::SUCCESS
}

/// The address `listener` is bound to (the port picked when `asked` had port 0).
fn bound(listener: &TcpListener, asked: SocketAddr) -> SocketAddr {
    listener.local_addr().unwrap_or(asked)
}

/// Log lines go to stderr through `tracing`, filtered by `RUST_LOG` (`info` when unset), with
/// colours only on a terminal. Fails on a `RUST_LOG` it cannot read.
fn init_logging() -> Result<(), String> {
    let filter = EnvFilter::builder()
        .with_default_directive(LevelFilter::INFO.into())
        .from_env()
        .map_err(|e| {
            let value = std::env::var_os("RUST_LOG").unwrap_or_default();
            format!("RUST_LOG={value:?}: {e} (try RUST_LOG=info or RUST_LOG=peakcache_proxy=debug)")
        })?;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    Ok(())
}

/// Resolves on SIGINT or SIGTERM (systemd's stop).
async fn stopped() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
