//! The `make demo` harness of peakcache: a slow demo origin ([`origin`]), a closed-loop load
//! generator ([`load`]), the campaign-peak scenario ([`scenario`]), and the report: the
//! side-by-side table ([`report`]) and the chart ([`svg`]).
//!
//! Binaries: `demo-origin` (the origin alone), `demo-load` (one scenario run against any
//! loopback target), and `demo` (the orchestrator `scripts/demo.sh` runs).

#![deny(missing_docs)]

pub mod chart;
pub mod cli;
pub mod client;
pub mod load;
pub mod origin;
pub mod report;
pub mod scenario;
pub mod svg;
