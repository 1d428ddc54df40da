//! peakcache: an embedded edge cache.
mod cache;
mod clock;
mod error;
mod flight;
pub mod freshness;
mod lifecycle;
mod policy;
mod shard;
mod stats;
mod tags;

pub use cache::{Builder, Cache, ENTRY_OVERHEAD};
pub use clock::{Clock, ManualClock, SystemClock};
pub use error::InsertError;
pub use freshness::Freshness;
pub use lifecycle::{Fill, Hit, Lookup, Refresh, Resolved, Served, Waiter};
pub use stats::Stats;
pub use tags::PurgeMode;
