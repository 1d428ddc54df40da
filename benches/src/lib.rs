//! Shared code of the peakcache benchmarks.
