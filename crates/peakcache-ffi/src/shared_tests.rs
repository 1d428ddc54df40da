//! The shared backend through the exports: a value in the region that is not a valid encoded
//! response gives `PEAKCACHE_ERR_CORRUPT` on every path that decodes one, and the key is purged;
//! `peakcache_get_body` on both backends.

use crate::cache::*;
use crate::lookup::{peakcache_get, peakcache_get_body, peakcache_lookup_sized};
use crate::result::*;
use crate::ticket::{peakcache_fill_fail, FillKind};
use crate::waiter::{
    peakcache_wait_kind::*, peakcache_waiter_poll_sized, peakcache_waiter_wait_sized,
};
use crate::{peakcache_lookup_kind::*, peakcache_lookup_result, peakcache_wait_result};
use peakcache::Freshness;
use std::mem::MaybeUninit;
use std::ptr::{null, null_mut};
use std::time::Duration;

fn shared_cache() -> *mut peakcache_cache {
    let mut cfg = peakcache_config {
        backend: PEAKCACHE_BACKEND_SHARED,
        capacity_bytes: 1 << 20,
        ..Default::default()
    };
    cfg.retry_backoff_min_ms = 1;
    let mut c = null_mut();
    assert_eq!(
        unsafe { peakcache_cache_new_sized(&cfg, &mut c, std::mem::size_of::<peakcache_config>()) },
        PEAKCACHE_OK
    );
    c
}

/// A cache of the default configuration: the local backend.
fn local_cache() -> *mut peakcache_cache {
    let mut c = null_mut();
    assert_eq!(
        unsafe {
            peakcache_cache_new_sized(null(), &mut c, std::mem::size_of::<peakcache_config>())
        },
        PEAKCACHE_OK
    );
    c
}

fn shm(c: *mut peakcache_cache) -> peakcache_shm::ShmCache {
    match unsafe { &(*c).backend } {
        Backend::Shared(s) => s.shm.clone(),
        Backend::Local(_) => unreachable!(),
    }
}

fn lookup(c: *mut peakcache_cache, key: &[u8]) -> (peakcache_result, peakcache_lookup_result) {
    let mut r = MaybeUninit::<peakcache_lookup_result>::zeroed();
    let rc = unsafe {
        peakcache_lookup_sized(
            c,
            key.as_ptr(),
            key.len(),
            r.as_mut_ptr(),
            std::mem::size_of::<peakcache_lookup_result>(),
        )
    };
    (rc, unsafe { r.assume_init() })
}

const JUNK: &[u8] = &[1, 200, 0, 0xff, 0xff, 0xff, 0x7f];
const FRESH: Duration = Duration::from_secs(60);

#[test]
fn corrupt_values_are_an_error_and_purged() {
    let c = shared_cache();
    let s = shm(c);
    // get
    s.insert(b"k", JUNK, Freshness::new(FRESH)).unwrap();
    let mut e = null_mut();
    assert_eq!(
        unsafe { peakcache_get(c, b"k".as_ptr(), 1, &mut e) },
        PEAKCACHE_ERR_CORRUPT
    );
    assert!(e.is_null());
    assert!(s.get(b"k").is_none(), "purged");
    // lookup, fresh and stale
    s.insert(b"k", JUNK, Freshness::new(FRESH)).unwrap();
    assert_eq!(lookup(c, b"k").0, PEAKCACHE_ERR_CORRUPT);
    let (rc, r) = lookup(c, b"k");
    assert_eq!(rc, PEAKCACHE_OK);
    assert_eq!(r.kind, PEAKCACHE_LOOKUP_MISS);
    // a waiter resolving to a value committed raw by the filler
    let (_, w) = lookup(c, b"k");
    assert_eq!(w.kind, PEAKCACHE_LOOKUP_WAIT);
    let fill = unsafe { Box::from_raw(r.fill) };
    match fill.fill {
        FillKind::Shared(f, _) => f.commit(JUNK, Freshness::new(FRESH)).unwrap(),
        FillKind::Local(_) => unreachable!(),
    }
    let mut waiter = w.waiter;
    let mut out = MaybeUninit::<peakcache_wait_result>::zeroed();
    assert_eq!(
        unsafe {
            peakcache_waiter_wait_sized(
                &mut waiter,
                1000,
                out.as_mut_ptr(),
                std::mem::size_of::<peakcache_wait_result>(),
            )
        },
        PEAKCACHE_ERR_CORRUPT
    );
    assert!(waiter.is_null());
    // polling, and a failed fill handing out a corrupt stale-if-error value
    s.insert(
        b"p",
        JUNK,
        Freshness::new(Duration::from_millis(1)).with_sie(FRESH),
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(20));
    let (rc, m) = lookup(c, b"p");
    assert_eq!((rc, m.kind), (PEAKCACHE_OK, PEAKCACHE_LOOKUP_MISS));
    let (_, w) = lookup(c, b"p");
    assert_eq!(w.kind, PEAKCACHE_LOOKUP_WAIT);
    let mut fill = m.fill;
    let mut stale = null_mut();
    assert_eq!(
        unsafe { peakcache_fill_fail(&mut fill, &mut stale) },
        PEAKCACHE_ERR_CORRUPT
    );
    assert!(fill.is_null() && stale.is_null());
    let mut waiter = w.waiter;
    let rc = unsafe {
        peakcache_waiter_poll_sized(
            &mut waiter,
            out.as_mut_ptr(),
            std::mem::size_of::<peakcache_wait_result>(),
        )
    };
    // The waiter was handed the same stale value (corrupt); or, once it was purged, failed; or,
    // when the key's 1 ms back-off had passed by then (a loaded machine), the fill: the key is
    // free again and the waiter is the next to fetch. Never a value.
    assert!(rc == PEAKCACHE_ERR_CORRUPT || rc == PEAKCACHE_OK, "{rc:?}");
    if rc == PEAKCACHE_OK {
        let w = unsafe { out.assume_init() };
        assert!(
            w.entry.is_null(),
            "a corrupt value handed out as {:?}",
            w.kind
        );
        if w.kind == PEAKCACHE_WAIT_FILL {
            unsafe { crate::ticket::peakcache_fill_abandon(w.fill) };
        } else {
            assert_eq!(w.kind, PEAKCACHE_WAIT_FAILED);
        }
    }
    let (rc, r) = lookup(c, b"p");
    assert_eq!((rc, r.kind), (PEAKCACHE_OK, PEAKCACHE_LOOKUP_MISS));
    unsafe { crate::ticket::peakcache_fill_abandon(r.fill) };
    unsafe { peakcache_cache_free(c) };
}

#[test]
fn local_only_and_shared_only_calls() {
    let local = local_cache();
    let p = b"/nonexistent/x";
    assert_eq!(
        unsafe { peakcache_cache_snapshot(local, p.as_ptr(), p.len(), null_mut()) },
        PEAKCACHE_ERR_UNSUPPORTED
    );
    let mut info = peakcache_region_info::default();
    assert_eq!(
        unsafe {
            peakcache_cache_region_info_sized(
                local,
                &mut info,
                std::mem::size_of::<peakcache_region_info>(),
            )
        },
        PEAKCACHE_OK
    );
    assert_eq!(info, peakcache_region_info::default());
    unsafe { peakcache_cache_free(local) };

    let c = shared_cache();
    assert_eq!(
        unsafe {
            peakcache_cache_region_info_sized(
                c,
                &mut info,
                std::mem::size_of::<peakcache_region_info>(),
            )
        },
        PEAKCACHE_OK
    );
    assert_eq!(info.backend, PEAKCACHE_BACKEND_SHARED);
    assert_eq!(info.opened, PEAKCACHE_REGION_ANONYMOUS);
    assert!(info.heap_bytes > 0 && info.shards > 0);
    assert_eq!(
        unsafe { peakcache_cache_snapshot(c, p.as_ptr(), p.len(), null_mut()) },
        PEAKCACHE_ERR_IO
    );
    let bad = b"a\0b";
    assert_eq!(
        unsafe { peakcache_cache_restore(c, bad.as_ptr(), bad.len(), null_mut(), null_mut()) },
        PEAKCACHE_ERR_INVALID
    );
    unsafe { peakcache_cache_free(c) };

    let cfg = peakcache_config {
        backend: 7,
        ..Default::default()
    };
    let mut c = null_mut();
    assert_eq!(
        unsafe { peakcache_cache_new_sized(&cfg, &mut c, std::mem::size_of::<peakcache_config>()) },
        PEAKCACHE_ERR_INVALID
    );
}

/// `peakcache_get_body` of `key`: the result, and the body and flags if found.
fn get_body(c: *mut peakcache_cache, key: &[u8]) -> (peakcache_result, Option<(Vec<u8>, u32)>) {
    let (mut found, mut ptr, mut len, mut flags) = (true, null(), usize::MAX, u32::MAX);
    let rc = unsafe {
        peakcache_get_body(
            c,
            key.as_ptr(),
            key.len(),
            &mut found,
            &mut ptr,
            &mut len,
            &mut flags,
        )
    };
    let body = (rc == PEAKCACHE_OK && found).then(|| {
        (
            unsafe { std::slice::from_raw_parts(ptr, len) }.to_vec(),
            flags,
        )
    });
    (rc, body)
}

/// Stores `body` with `flags` under `key` through `peakcache_insert`, with headers and metadata
/// (which `peakcache_get_body` skips).
fn insert(c: *mut peakcache_cache, key: &[u8], body: &[u8], flags: u32) {
    use crate::response::*;
    let mut resp = null_mut();
    unsafe {
        assert_eq!(peakcache_response_new(200, &mut resp), PEAKCACHE_OK);
        assert_eq!(
            peakcache_response_add_header(resp, b"x-h".as_ptr(), 3, b"v".as_ptr(), 1),
            PEAKCACHE_OK
        );
        assert_eq!(
            peakcache_response_set_meta(resp, b"meta".as_ptr(), 4),
            PEAKCACHE_OK
        );
        assert_eq!(peakcache_response_set_flags(resp, flags), PEAKCACHE_OK);
        assert_eq!(
            peakcache_response_append_body(resp, body.as_ptr(), body.len()),
            PEAKCACHE_OK
        );
        assert_eq!(
            crate::ticket::peakcache_insert(
                c,
                key.as_ptr(),
                key.len(),
                &mut resp,
                60_000,
                0,
                0,
                null(),
                0
            ),
            PEAKCACHE_OK
        );
    }
}

#[test]
fn get_body_gives_the_body_and_flags_on_both_backends() {
    let local = local_cache();
    for c in [local, shared_cache()] {
        assert_eq!(get_body(c, b"k"), (PEAKCACHE_OK, None));
        insert(c, b"k", b"hello", 7);
        insert(c, b"empty", b"", 0);
        let big = vec![b'b'; 100_000];
        insert(c, b"big", &big, 1);
        assert_eq!(
            get_body(c, b"k"),
            (PEAKCACHE_OK, Some((b"hello".to_vec(), 7)))
        );
        assert_eq!(get_body(c, b"big"), (PEAKCACHE_OK, Some((big, 1))));
        // After a larger one, a smaller one: the thread's buffer holds only it.
        assert_eq!(
            get_body(c, b"k"),
            (PEAKCACHE_OK, Some((b"hello".to_vec(), 7)))
        );
        assert_eq!(get_body(c, b"empty"), (PEAKCACHE_OK, Some((Vec::new(), 0))));
        assert_eq!(get_body(c, b"nope"), (PEAKCACHE_OK, None));
        // Misuse: codes, not crashes.
        let (mut found, mut ptr, mut len, mut flags) = (false, null(), 0, 0);
        unsafe {
            assert_eq!(
                peakcache_get_body(
                    null(),
                    b"k".as_ptr(),
                    1,
                    &mut found,
                    &mut ptr,
                    &mut len,
                    &mut flags
                ),
                PEAKCACHE_ERR_NULL
            );
            assert_eq!(
                peakcache_get_body(c, null(), 1, &mut found, &mut ptr, &mut len, &mut flags),
                PEAKCACHE_ERR_INVALID
            );
            for rc in [
                peakcache_get_body(
                    c,
                    b"k".as_ptr(),
                    1,
                    null_mut(),
                    &mut ptr,
                    &mut len,
                    &mut flags,
                ),
                peakcache_get_body(
                    c,
                    b"k".as_ptr(),
                    1,
                    &mut found,
                    null_mut(),
                    &mut len,
                    &mut flags,
                ),
                peakcache_get_body(
                    c,
                    b"k".as_ptr(),
                    1,
                    &mut found,
                    &mut ptr,
                    null_mut(),
                    &mut flags,
                ),
                peakcache_get_body(
                    c,
                    b"k".as_ptr(),
                    1,
                    &mut found,
                    &mut ptr,
                    &mut len,
                    null_mut(),
                ),
            ] {
                assert_eq!(rc, PEAKCACHE_ERR_NULL);
            }
        }
        unsafe { peakcache_cache_free(c) };
    }
}

#[test]
fn get_body_of_a_corrupt_value_is_an_error_and_purged() {
    let c = shared_cache();
    let s = shm(c);
    s.insert(b"k", JUNK, Freshness::new(FRESH)).unwrap();
    assert_eq!(get_body(c, b"k"), (PEAKCACHE_ERR_CORRUPT, None));
    assert!(s.get(b"k").is_none(), "purged");
    unsafe { peakcache_cache_free(c) };
}
