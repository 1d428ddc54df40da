//! The C ABI of peakcache. The header, `include/peakcache.h`, is generated from this crate by a
//! pinned cbindgen (`gen-header.sh`) and checked in; its opening comment (in `cbindgen.toml`)
//! states the conventions every export follows:
//!
//! - Every fallible function returns a [`peakcache_result`]; out-parameters are written only on
//!   `PEAKCACHE_OK` (and on `PEAKCACHE_PENDING` where a function says so).
//! - Every pointer is checked: NULL gives `PEAKCACHE_ERR_NULL`, never a crash. Byte strings are
//!   `(ptr, len)`; a NULL `ptr` with `len == 0` is the empty string, with `len > 0` it is
//!   `PEAKCACHE_ERR_INVALID`.
//! - Each handle is freed by exactly one `peakcache_*_free` (or `_abandon`) function, which
//!   accepts NULL. Functions that consume a handle take its address (`peakcache_fill **`) and
//!   set it to NULL, so using it twice gives `PEAKCACHE_ERR_NULL`, not a use after free.
//! - No panic crosses the boundary: each export runs inside [`panic::boundary`], returning
//!   `PEAKCACHE_ERR_PANIC` with the message kept for `peakcache_last_error`.
//!
//! Modules follow the header's families: `cache` (config, create, purge, freeze), `lookup`,
//! `entry`, `response`, `ticket` (fill and refresh), `waiter`, `stats`, `log`, `result`, and
//! `http` (`peakcache_http_*`: keys, store decisions, revalidation and serving from
//! `peakcache-http`).
#![deny(unsafe_op_in_unsafe_fn)]
#![allow(non_camel_case_types)]
#![warn(missing_docs)]

pub mod abi;
pub mod bytes;
pub mod cache;
mod codec;
pub mod entry;
pub mod history;
pub mod http;
pub mod log;
pub mod lookup;
pub mod panic;
pub mod response;
pub mod result;
#[cfg(test)]
mod shared_tests;
pub mod stats;
pub mod ticket;
mod value;
pub mod version;
pub mod waiter;

pub use bytes::peakcache_bytes;
pub use cache::{peakcache_cache, peakcache_config, peakcache_region_info};
pub use entry::{peakcache_entry, peakcache_served};
pub use history::peakcache_host_counts;
pub use lookup::{peakcache_lookup_kind, peakcache_lookup_result};
pub use response::peakcache_response;
pub use result::peakcache_result;
pub use stats::{peakcache_buf, peakcache_stats};
pub use ticket::{peakcache_fill, peakcache_refresh};
pub use waiter::{peakcache_wait_kind, peakcache_wait_result, peakcache_waiter};

/// What the library's handles share: the value type stored in the core cache.
pub(crate) type Value = std::sync::Arc<value::Stored>;
