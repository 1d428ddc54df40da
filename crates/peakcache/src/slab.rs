//! The nodes of one shard, addressed by `u32` index, in fixed-size chunks.
//!
//! A `Vec` that doubles would keep up to half its memory unused after growing (measured: 20 to
//! 30 bytes per entry); chunks bound the slack to one chunk per shard.

use crate::shard::Node;

const CHUNK_BITS: u32 = 8;
const CHUNK: usize = 1 << CHUNK_BITS;

/// One chunk of nodes, aligned to a cache line: a node of 64 bytes (`u64` values) then sits on
/// one line instead of straddling two, one memory access per hit instead of two.
#[repr(C, align(64))]
struct Chunk<V>([Option<Node<V>>; CHUNK]);

/// Nodes by index; freed indexes are reused first.
pub(crate) struct Slab<V> {
    chunks: Vec<Box<Chunk<V>>>,
    free: Vec<u32>,
    used: u32,
}

impl<V> Slab<V> {
    pub(crate) fn new() -> Self {
        Slab {
            chunks: Vec::new(),
            free: Vec::new(),
            used: 0,
        }
    }

    fn slot(&self, i: u32) -> &Option<Node<V>> {
        &self.chunks[(i >> CHUNK_BITS) as usize].0[i as usize & (CHUNK - 1)]
    }

    fn slot_mut(&mut self, i: u32) -> &mut Option<Node<V>> {
        &mut self.chunks[(i >> CHUNK_BITS) as usize].0[i as usize & (CHUNK - 1)]
    }

    /// Stores `node` and returns its index.
    pub(crate) fn insert(&mut self, node: Node<V>) -> u32 {
        let i = match self.free.pop() {
            Some(i) => i,
            None => {
                let i = self.used;
                self.used += 1;
                if (i as usize >> CHUNK_BITS) == self.chunks.len() {
                    self.chunks
                        .push(Box::new(Chunk(std::array::from_fn(|_| None))));
                }
                i
            }
        };
        *self.slot_mut(i) = Some(node);
        i
    }

    /// Takes the node at `i` out; its index will be reused.
    pub(crate) fn remove(&mut self, i: u32) -> Node<V> {
        let node = self.slot_mut(i).take().expect("removed node exists");
        self.free.push(i);
        node
    }

    /// The node at `i`, which must exist.
    #[inline]
    pub(crate) fn get(&self, i: u32) -> &Node<V> {
        self.slot(i).as_ref().expect("indexed node exists")
    }

    /// The node at `i`, which must exist.
    #[inline]
    pub(crate) fn get_mut(&mut self, i: u32) -> &mut Node<V> {
        self.slot_mut(i).as_mut().expect("indexed node exists")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::KeyBytes;
    use crate::shard::Links;

    fn node(v: u32) -> Node<u32> {
        Node {
            key: KeyBytes::new(&v.to_le_bytes()),
            value: v,
            stored_at: 0,
            ttl_ms: 0,
            swr_ms: 0,
            sie_ms: 0,
            tags: None,
            links: Links::new(),
        }
    }

    #[test]
    fn nodes_are_found_by_index_across_chunks() {
        let mut slab = Slab::new();
        let idx: Vec<u32> = (0..1_000).map(|v| slab.insert(node(v))).collect();
        assert_eq!(idx, (0..1_000).collect::<Vec<_>>());
        for (v, &i) in idx.iter().enumerate() {
            assert_eq!(slab.get(i).value, v as u32);
        }
        slab.get_mut(700).value = 7;
        assert_eq!(slab.get(700).value, 7);
    }

    #[test]
    fn a_freed_index_is_reused_before_a_new_one() {
        let mut slab = Slab::new();
        for v in 0..10 {
            slab.insert(node(v));
        }
        assert_eq!(slab.remove(3).value, 3);
        assert_eq!(slab.remove(7).value, 7);
        assert_eq!(slab.insert(node(70)), 7);
        assert_eq!(slab.insert(node(30)), 3);
        assert_eq!(slab.insert(node(10)), 10);
    }

    #[test]
    #[should_panic(expected = "removed node exists")]
    fn removing_a_free_index_is_a_bug_caught_at_once() {
        let mut slab = Slab::new();
        let i = slab.insert(node(1));
        slab.remove(i);
        slab.remove(i);
    }
}
