//! What travels on the purge bus, and the trait through which a host applies it.

use bytes::Bytes;
use peakcache::PurgeMode;

/// One purge, as every host of the cluster applies it.
///
/// On the stream a purge is one entry with five fields: `seq` (the cluster's purge number,
/// one more than the previous entry's), `host` (the publishing host's id, so it does not
/// apply its own purge twice), `op` (`key`, `tag`, `all`, `freeze` or `thaw`), `mode`
/// (`hard` or `soft`) and `arg` (the key or the tag, raw bytes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Purge {
    /// A primary cache key and every variant stored under it. The message carries the primary
    /// key only (for HTTP: scheme, host, path and query, less the ignored parameters), not the
    /// variants: each host purges the variants it holds, which are not the same on every host.
    Key {
        /// The primary key.
        key: Bytes,
        /// Hard (gone) or soft (stale now).
        mode: PurgeMode,
    },
    /// Every entry carrying a tag (a surrogate key).
    Tag {
        /// The tag.
        tag: Bytes,
        /// Hard (gone) or soft (stale now).
        mode: PurgeMode,
    },
    /// Every entry: `Hard` clears the cache, `Soft` marks everything stale.
    Everything {
        /// Hard (gone) or soft (stale now).
        mode: PurgeMode,
    },
    /// Serve whatever is stored as fresh; only misses reach the origin.
    Freeze,
    /// End a freeze.
    Thaw,
}

impl Purge {
    /// The `op` field.
    pub(crate) fn op(&self) -> &'static str {
        match self {
            Purge::Key { .. } => "key",
            Purge::Tag { .. } => "tag",
            Purge::Everything { .. } => "all",
            Purge::Freeze => "freeze",
            Purge::Thaw => "thaw",
        }
    }

    /// The `mode` field.
    pub(crate) fn mode(&self) -> &'static str {
        match self {
            Purge::Key { mode, .. } | Purge::Tag { mode, .. } | Purge::Everything { mode } => {
                match mode {
                    PurgeMode::Hard => "hard",
                    PurgeMode::Soft => "soft",
                }
            }
            Purge::Freeze | Purge::Thaw => "hard",
        }
    }

    /// The `arg` field.
    pub(crate) fn arg(&self) -> &[u8] {
        match self {
            Purge::Key { key, .. } => key,
            Purge::Tag { tag, .. } => tag,
            _ => b"",
        }
    }

    /// Reads the fields of a stream entry back; `None` for anything this version does not know.
    pub(crate) fn decode(op: &[u8], mode: &[u8], arg: &[u8]) -> Option<Purge> {
        let mode = match mode {
            b"hard" => PurgeMode::Hard,
            b"soft" => PurgeMode::Soft,
            _ => return None,
        };
        let arg = Bytes::copy_from_slice(arg);
        Some(match op {
            b"key" => Purge::Key { key: arg, mode },
            b"tag" => Purge::Tag { tag: arg, mode },
            b"all" => Purge::Everything { mode },
            b"freeze" => Purge::Freeze,
            b"thaw" => Purge::Thaw,
            _ => return None,
        })
    }
}

/// The host's own cache, as the cluster sees it: the host implements this so that purges read
/// from the bus (and its own, at once) reach its entries. The crate depends on the core
/// (`peakcache`) only, never on a particular host.
///
/// `apply` is called from the cluster's tasks and must not block for long: purges in the
/// core are constant-time.
pub trait LocalCache: Send + Sync + 'static {
    /// Applies `purge` to the local cache. A `Purge::Everything { mode: Soft }` also comes from
    /// the cluster itself when the host may have missed purges (trimmed stream, lost history,
    /// cut off longer than `max_lag`): afterwards no entry may be served as fresh.
    fn apply(&self, purge: &Purge);

    /// The host has applied every purge up to `position` on the bus. A host whose cache
    /// outlives the process (a shared memory region) saves it, to start from there next time
    /// ([`Start::Resume`](crate::Start::Resume)); the default does nothing.
    fn caught_up(&self, position: &crate::BusPosition) {
        let _ = position;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_purge_survives_the_stream() {
        let all = [
            Purge::Key {
                key: Bytes::from_static(b"GET http://a/\0x"),
                mode: PurgeMode::Hard,
            },
            Purge::Tag {
                tag: Bytes::from_static(b"post:1"),
                mode: PurgeMode::Soft,
            },
            Purge::Everything {
                mode: PurgeMode::Soft,
            },
            Purge::Everything {
                mode: PurgeMode::Hard,
            },
            Purge::Freeze,
            Purge::Thaw,
        ];
        for p in all {
            let back = Purge::decode(p.op().as_bytes(), p.mode().as_bytes(), p.arg());
            assert_eq!(back, Some(p));
        }
    }

    #[test]
    fn unknown_fields_are_not_guessed() {
        assert_eq!(Purge::decode(b"shred", b"hard", b""), None);
        assert_eq!(Purge::decode(b"key", b"gentle", b"k"), None);
    }
}
