//! The binary's command line and log lines, as an operator meets them: usage errors exit 2
//! with the usage, the start-up line names the address actually bound, and `RUST_LOG` filters
//! the log lines (an unreadable one is a usage error).

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::process::{Command, Output, Stdio};

fn proxy() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_peakcache-proxy"));
    c.env_remove("RUST_LOG").stdin(Stdio::null());
    c
}

fn run(c: &mut Command) -> Output {
    c.output().expect("peakcache-proxy runs")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn usage_errors_exit_2_with_the_usage_and_help_exits_0() {
    let out = run(proxy().args(["--origin", "http://127.0.0.1:9", "--bogus", "1"]));
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("unexpected argument '--bogus'"), "{err}");
    assert!(err.contains("Usage: peakcache-proxy --origin"), "{err}");

    let out = run(proxy().args(["--size", "10MiB"]));
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("--origin is required"), "{err}");

    let out = run(proxy().arg("--help"));
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out.stdout).contains("--stale-if-error-grace <DURATION>"));
}

#[test]
fn the_start_up_line_names_the_port_actually_bound() {
    let mut child = proxy()
        .args(["--listen", "127.0.0.1:0", "--origin", "http://127.0.0.1:9"])
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert!(first.contains(" INFO "), "{first}");
    let addr: SocketAddr = first
        .split("listening on ")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no address in {first:?}"));
    assert_ne!(addr.port(), 0, "{first}");
    assert!(first.contains("origin http://127.0.0.1:9/"), "{first}");
}

#[test]
fn rust_log_filters_the_lines_and_errors_always_show() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let args = ["--listen", addr.as_str(), "--origin", "http://127.0.0.1:9"];
    let out = run(proxy().args(args).env("RUST_LOG", "error"));
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains(" ERROR "), "{err}");
    assert!(err.contains(&format!("cannot listen on {addr}")), "{err}");
    assert!(
        !err.contains(" INFO "),
        "RUST_LOG=error shows no info line: {err}"
    );

    let out = run(proxy().args(args).env("RUST_LOG", "[["));
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("RUST_LOG=\"[[\""), "{err}");
}
