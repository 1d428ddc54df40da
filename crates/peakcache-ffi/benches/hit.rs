//! A hit through the C ABI against the same hit through the Rust API, in one run.
//!
//! Both look up one fresh key of a cache holding 1000 entries of a 1 KiB body, and read the
//! status and body: Rust with `Cache::lookup` on `Arc` values, C with `peakcache_lookup` (whose
//! answer carries the status and a view of the body) and `peakcache_entry_free`, called through
//! the rlib: real calls, no inlining across the boundary. A third line, `c_abi_accessors`, reads
//! them with `peakcache_entry_status` and `peakcache_entry_body` instead, as a host reading an
//! entry it kept does. The goal is a C-ABI hit within 1.2x of the Rust hit; the best-of-rounds
//! line printed first is the number to read on a busy machine.

use criterion::{criterion_group, criterion_main, Criterion};
use peakcache::{Cache, Freshness, Lookup};
use peakcache_ffi::cache::{peakcache_cache_free, peakcache_cache_new_sized, peakcache_config};
use peakcache_ffi::entry::{peakcache_entry_body, peakcache_entry_free, peakcache_entry_status};
use peakcache_ffi::lookup::peakcache_lookup_sized;
use peakcache_ffi::response::{peakcache_response_append_body, peakcache_response_new};
use peakcache_ffi::ticket::peakcache_fill_commit;
use peakcache_ffi::{peakcache_lookup_kind, peakcache_lookup_result, peakcache_result};
use std::hint::black_box;
use std::ptr::{null, null_mut};
use std::sync::Arc;
use std::time::{Duration, Instant};

const ENTRIES: usize = 1000;
const BODY: usize = 1024;

/// The Rust side's value: the same shape the C ABI stores (status and body behind an `Arc`).
struct Value {
    status: u16,
    body: Vec<u8>,
}

fn key(i: usize) -> Vec<u8> {
    format!("https://example.com/page/{i}").into_bytes()
}

fn rust_cache() -> Cache<Arc<Value>> {
    let cache = Cache::builder()
        .weigher(|k, v: &Arc<Value>| (k.len() + v.body.len()) as u64 + peakcache::ENTRY_OVERHEAD)
        .build();
    for i in 0..ENTRIES {
        let v = Arc::new(Value {
            status: 200,
            body: vec![b'x'; BODY],
        });
        cache
            .insert(&key(i), v, Freshness::new(Duration::from_secs(3600)))
            .unwrap();
    }
    cache
}

unsafe fn c_cache() -> *mut peakcache_ffi::peakcache_cache {
    let mut cache = null_mut();
    assert_eq!(
        unsafe {
            peakcache_cache_new_sized(null(), &mut cache, std::mem::size_of::<peakcache_config>())
        },
        peakcache_result::PEAKCACHE_OK
    );
    let body = vec![b'x'; BODY];
    for i in 0..ENTRIES {
        let k = key(i);
        let mut r = std::mem::MaybeUninit::<peakcache_lookup_result>::uninit();
        unsafe {
            assert_eq!(
                peakcache_lookup_sized(
                    cache,
                    k.as_ptr(),
                    k.len(),
                    r.as_mut_ptr(),
                    std::mem::size_of::<peakcache_lookup_result>()
                ),
                peakcache_result::PEAKCACHE_OK
            );
            let mut r = r.assume_init();
            assert_eq!(r.kind, peakcache_lookup_kind::PEAKCACHE_LOOKUP_MISS);
            let mut resp = null_mut();
            peakcache_response_new(200, &mut resp);
            peakcache_response_append_body(resp, body.as_ptr(), body.len());
            let rc = peakcache_fill_commit(&mut r.fill, &mut resp, 3_600_000, 0, 0, null(), 0);
            assert_eq!(rc, peakcache_result::PEAKCACHE_OK);
        }
    }
    cache
}

#[inline(always)]
fn rust_hit(cache: &Cache<Arc<Value>>, key: &[u8]) {
    match cache.lookup(black_box(key)) {
        Lookup::Fresh(hit) => {
            let v = hit.value();
            black_box((v.status, v.body.as_ptr(), v.body.len()));
        }
        _ => unreachable!(),
    }
}

/// # Safety
/// `cache` is live and holds `key`.
#[inline(always)]
unsafe fn c_hit(cache: *const peakcache_ffi::peakcache_cache, key: &[u8]) {
    let k = black_box(key);
    let mut r = std::mem::MaybeUninit::<peakcache_lookup_result>::uninit();
    unsafe {
        peakcache_lookup_sized(
            cache,
            k.as_ptr(),
            k.len(),
            r.as_mut_ptr(),
            std::mem::size_of::<peakcache_lookup_result>(),
        );
        let r = r.assume_init();
        black_box((r.status, r.body, r.body_len));
        peakcache_entry_free(r.entry);
    }
}

/// The same hit reading status and body through the entry's accessors.
///
/// # Safety
/// `cache` is live and holds `key`.
#[inline(always)]
unsafe fn c_hit_accessors(cache: *const peakcache_ffi::peakcache_cache, key: &[u8]) {
    let k = black_box(key);
    let mut r = std::mem::MaybeUninit::<peakcache_lookup_result>::uninit();
    unsafe {
        peakcache_lookup_sized(
            cache,
            k.as_ptr(),
            k.len(),
            r.as_mut_ptr(),
            std::mem::size_of::<peakcache_lookup_result>(),
        );
        let r = r.assume_init();
        let (mut ptr, mut len) = (null(), 0);
        peakcache_entry_body(r.entry, &mut ptr, &mut len);
        black_box((peakcache_entry_status(r.entry), ptr, len));
        peakcache_entry_free(r.entry);
    }
}

/// The ratio on a busy machine: both sides timed in alternating rounds, each side's best round
/// kept (noise only ever adds time).
fn best_of_rounds(
    rust: &Cache<Arc<Value>>,
    c: *const peakcache_ffi::peakcache_cache,
    keys: &[Vec<u8>],
) {
    const ROUNDS: usize = 200;
    const ITERS: usize = 20_000;
    let (mut best_rust, mut best_c, mut best_acc) = (f64::MAX, f64::MAX, f64::MAX);
    for _ in 0..ROUNDS {
        let t = Instant::now();
        for i in 0..ITERS {
            rust_hit(rust, &keys[i % ENTRIES]);
        }
        best_rust = best_rust.min(t.elapsed().as_nanos() as f64 / ITERS as f64);
        let t = Instant::now();
        for i in 0..ITERS {
            // SAFETY: a live cache holding every key.
            unsafe { c_hit(c, &keys[i % ENTRIES]) };
        }
        best_c = best_c.min(t.elapsed().as_nanos() as f64 / ITERS as f64);
        let t = Instant::now();
        for i in 0..ITERS {
            // SAFETY: a live cache holding every key.
            unsafe { c_hit_accessors(c, &keys[i % ENTRIES]) };
        }
        best_acc = best_acc.min(t.elapsed().as_nanos() as f64 / ITERS as f64);
    }
    eprintln!(
        "hit best-of-{ROUNDS}: rust {best_rust:.1} ns, c_abi {best_c:.1} ns, ratio {:.2} \
         (c_abi_accessors {best_acc:.1} ns, ratio {:.2})",
        best_c / best_rust,
        best_acc / best_rust
    );
}

fn hit(c: &mut Criterion) {
    let keys: Vec<Vec<u8>> = (0..ENTRIES).map(key).collect();
    let rust = rust_cache();
    // SAFETY: the C ABI used as documented: every handle freed once, views read while held.
    let cache = unsafe { c_cache() };
    best_of_rounds(&rust, cache, &keys);

    let mut g = c.benchmark_group("hit");
    let mut i = 0;
    g.bench_function("rust", |b| {
        b.iter(|| {
            i = (i + 1) % ENTRIES;
            rust_hit(&rust, &keys[i]);
        })
    });
    let mut i = 0;
    g.bench_function("c_abi", |b| {
        b.iter(|| {
            i = (i + 1) % ENTRIES;
            // SAFETY: a live cache holding every key.
            unsafe { c_hit(cache, &keys[i]) };
        })
    });
    let mut i = 0;
    g.bench_function("c_abi_accessors", |b| {
        b.iter(|| {
            i = (i + 1) % ENTRIES;
            // SAFETY: a live cache holding every key.
            unsafe { c_hit_accessors(cache, &keys[i]) };
        })
    });
    g.finish();
    // SAFETY: created above, freed once.
    unsafe { peakcache_cache_free(cache) };
}

criterion_group!(benches, hit);
criterion_main!(benches);
