//! A `Cache-Status` member is built and written without allocating (the cache's name is
//! shared, the stale detail borrowed): what a host renewing memoized answers relies on
//! (`peakcache_http_clock`). Its own test binary: the allocator below counts allocations.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::fmt::Write;

use peakcache_http::{Config, Policy, StaleGrant, StaleUse};

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: forwards to the system allocator; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        // SAFETY: the caller's promises, forwarded.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's promises, forwarded.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static COUNTING: Counting = Counting;

/// Writes into a fixed buffer, as the C ABI's callers give one.
struct Fixed([u8; 256], usize);

impl Write for Fixed {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let end = self.1 + s.len();
        self.0
            .get_mut(self.1..end)
            .ok_or(std::fmt::Error)?
            .copy_from_slice(s.as_bytes());
        self.1 = end;
        Ok(())
    }
}

#[test]
fn a_member_is_built_and_written_without_allocating() {
    let policy = Policy::new(Config {
        cache_name: "edge-cache".to_owned(),
        ..Config::default()
    });
    let mut out = Fixed([0; 256], 0);
    let before = ALLOCATIONS.with(Cell::get);
    let member = policy
        .cache_status()
        .hit()
        .ttl(-12)
        .stale(StaleUse::WhileRevalidate, StaleGrant::Grace);
    write!(out, "{member}").unwrap();
    drop(member);
    let after = ALLOCATIONS.with(Cell::get);
    assert_eq!(
        std::str::from_utf8(&out.0[..out.1]).unwrap(),
        "edge-cache; hit; ttl=-12; detail=grace-while-revalidate"
    );
    assert_eq!(
        after - before,
        0,
        "allocations while building and writing a member"
    );
}
