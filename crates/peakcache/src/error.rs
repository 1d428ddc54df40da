//! Errors the caller sees.

use std::fmt;

/// Why a value was not stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InsertError {
    /// The value weighs more than the largest object the cache stores
    /// ([`crate::Builder::max_object_weight`]). Nothing was stored; waiters of a fill still got
    /// the value.
    TooLarge {
        /// The weight of the refused entry.
        weight: u64,
        /// The largest weight the cache stores.
        limit: u64,
    },
}

impl fmt::Display for InsertError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InsertError::TooLarge { weight, limit } => write!(
                f,
                "entry of weight {weight} is larger than the object limit {limit}; not cached"
            ),
        }
    }
}

impl std::error::Error for InsertError {}
