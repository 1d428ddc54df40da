//! Benchmarks and trace replay for peakcache, side by side with `moka::sync::Cache` and
//! `quick_cache::sync::Cache`.
//!
//! * [`trace`] reads the traces of `shared/traces/` (compressed in place).
//! * [`lru`] is a plain LRU, the reference hit ratios are checked against.
//! * [`adapters`] puts every cache behind one small trait, configured alike.
//! * [`replay`] runs a trace through a cache as a read-through cache.
//! * [`report`] prints the results as markdown.
//! * [`zipf`] draws the Zipf-distributed keys of the throughput benchmarks (`benches/hit.rs`).
//!
//! The `replay` binary ties them together; `replay-all.sh` runs every trace.

pub mod adapters;
pub mod lru;
pub mod replay;
pub mod report;
pub mod trace;
pub mod zipf;
