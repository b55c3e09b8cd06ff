//! The verified-token cache at a million entries: what it holds and what it costs in memory,
//! counted by a global allocator (so these tests have a binary of their own, and take turns).
//!
//! The claims are one shared `Arc` for every token, so the count is the cache's own cost per
//! entry: the table, the eviction queues, the key digest, the expiry and the `Arc` pointer.

use std::{
    alloc::{GlobalAlloc, Layout, System},
    sync::{
        Arc, Mutex,
        atomic::{AtomicIsize, AtomicUsize, Ordering},
    },
    time::Duration,
};

use tower_bearer::{
    failure::AuthError,
    token::BearerToken,
    validate::{CachedValidator, StandardClaims, ValidateToken, Verdict},
};

/// The system allocator, keeping a count of the bytes in use.
struct Counting;

static IN_USE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        IN_USE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        IN_USE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        IN_USE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// The allocation count is global: one test at a time.
static SERIAL: Mutex<()> = Mutex::new(());

/// Accepts every token with the same claims, counting its calls: each one is a cache miss.
#[derive(Clone)]
struct Shared(Arc<StandardClaims>, Arc<AtomicUsize>);

impl Shared {
    fn new() -> Self {
        let exp = jsonwebtoken::get_current_timestamp() + 3600;
        let claims = StandardClaims {
            exp: Some(exp),
            ..Default::default()
        };
        Self(Arc::new(claims), Arc::default())
    }

    fn calls(&self) -> usize {
        self.1.load(Ordering::Relaxed)
    }
}

impl ValidateToken for Shared {
    type Claims = StandardClaims;
    type Future = std::future::Pending<Result<Arc<StandardClaims>, AuthError>>;

    fn validate(&self, _token: &BearerToken) -> Verdict<Arc<StandardClaims>, Self::Future> {
        self.1.fetch_add(1, Ordering::Relaxed);
        Verdict::Decided(Ok(self.0.clone()))
    }
}

fn token(i: usize) -> BearerToken {
    BearerToken::new(&format!("token.{i:08x}")).unwrap()
}

const ENTRIES: usize = 1_000_000;
/// The budget per entry, beyond the claims themselves.
const BUDGET: isize = 300;

#[test]
fn a_million_entries_within_capacity_and_budget() {
    let _turn = SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let inner = Shared::new();
    let before = IN_USE.load(Ordering::Relaxed);
    let cache = CachedValidator::new(inner)
        .max_entries(ENTRIES)
        .max_ttl(Duration::from_secs(600));
    // 10% more tokens than entries: the cache stays at its capacity.
    for i in 0..ENTRIES + ENTRIES / 10 {
        assert!(matches!(cache.validate(&token(i)), Verdict::Decided(Ok(_))));
    }
    let per_entry = (IN_USE.load(Ordering::Relaxed) - before) / cache.len() as isize;
    println!("{} entries, {per_entry} bytes each", cache.len());
    assert!(cache.len() <= ENTRIES, "{} entries", cache.len());
    assert!(cache.len() >= ENTRIES * 95 / 100, "{} entries", cache.len());
    assert!(per_entry <= BUDGET, "{per_entry} bytes per entry");
}

/// The configured capacity is honoured at a million entries: a working set of 0.9 × capacity,
/// visited in a cycle, is answered from the cache after the first round (the bound is
/// under 1% misses; S3-FIFO with room to spare evicts nothing).
#[test]
fn a_cyclic_working_set_of_nine_tenths_of_a_million_stays_cached() {
    let _turn = SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let inner = Shared::new();
    let cache = CachedValidator::new(inner.clone())
        .max_entries(ENTRIES)
        .max_ttl(Duration::from_secs(600));
    let working_set = ENTRIES * 9 / 10;
    for round in 0..2 {
        for i in 0..working_set {
            assert!(matches!(cache.validate(&token(i)), Verdict::Decided(Ok(_))));
        }
        println!("after round {round}: {} misses in all", inner.calls());
    }
    let misses = inner.calls() - working_set;
    assert!(
        misses * 100 < working_set,
        "{misses} misses in the second round"
    );
    assert_eq!(misses, 0, "{misses} misses in the second round");
    assert_eq!(cache.len(), working_set);
}
