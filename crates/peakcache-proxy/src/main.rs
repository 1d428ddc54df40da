//! `peakcache-proxy --listen 127.0.0.1:8080 --origin http://127.0.0.1:9000 --size 256MiB`

use peakcache_proxy::{config::USAGE, listen, serve, Config, Proxy};
use std::process::ExitCode;
use std::sync::Arc;

fn main() -> ExitCode {
    let config = match Config::from_args(std::env::args().skip(1)) {
        Ok(Some(c)) => c,
        Ok(None) => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("peakcache-proxy: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("peakcache-proxy: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let listener = match listen(config.listen) {
            Ok(l) => l,
            Err(e) => {
                eprintln!("peakcache-proxy: cannot listen on {}: {e}", config.listen);
                return ExitCode::FAILURE;
            }
        };
        let admin = match config.admin {
            Some(addr) => match listen(addr) {
                Ok(l) => Some(l),
                Err(e) => {
                    eprintln!("peakcache-proxy: cannot listen on {addr} (admin): {e}");
                    return ExitCode::FAILURE;
                }
            },
            None => None,
        };
        eprintln!(
            "peakcache-proxy: listening on {}, origin {}, cache {} bytes{}{}",
            config.listen,
            config.origin,
            config.size,
            config
                .admin
                .map(|a| format!(", admin on {a}"))
                .unwrap_or_default(),
            config
                .cluster
                .as_ref()
                .map(|c| format!(", cluster {} on {}", c.name, c.url))
                .unwrap_or_default()
        );
        let proxy = match Proxy::try_new(config) {
            Ok(p) => Arc::new(p),
            Err(e) => {
                eprintln!("peakcache-proxy: {e}");
                return ExitCode::FAILURE;
            }
        };
        tokio::select! {
            _ = serve(proxy, listener, admin) => ExitCode::SUCCESS,
            _ = tokio::signal::ctrl_c() => ExitCode::SUCCESS,
        }
    })
}
