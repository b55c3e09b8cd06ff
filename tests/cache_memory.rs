//! The verified-token cache at a million entries: what it holds and what it costs in memory,
//! counted by a global allocator (so this test has a binary of its own).
//!
//! The claims are one shared `Arc` for every token, so the count is the cache's own cost per
//! entry: the table, the eviction queues, the key digest, the expiry and the `Arc` pointer.

use std::{
    alloc::{GlobalAlloc, Layout, System},
    sync::{
        Arc,
        atomic::{AtomicIsize, Ordering},
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

/// Accepts every token with the same claims.
#[derive(Clone)]
struct Shared(Arc<StandardClaims>);

impl ValidateToken for Shared {
    type Claims = StandardClaims;
    type Future = std::future::Pending<Result<Arc<StandardClaims>, AuthError>>;

    fn validate(&self, _token: &BearerToken) -> Verdict<Arc<StandardClaims>, Self::Future> {
        Verdict::Decided(Ok(self.0.clone()))
    }
}

const ENTRIES: usize = 1_000_000;
/// The budget per entry, beyond the claims themselves.
const BUDGET: isize = 300;

#[test]
fn a_million_entries_within_capacity_and_budget() {
    let exp = jsonwebtoken::get_current_timestamp() + 3600;
    let inner = Shared(Arc::new(StandardClaims {
        exp: Some(exp),
        ..Default::default()
    }));
    let before = IN_USE.load(Ordering::Relaxed);
    let cache = CachedValidator::new(inner)
        .max_entries(ENTRIES)
        .max_ttl(Duration::from_secs(600));
    // 10% more tokens than entries: the cache stays at its capacity.
    for i in 0..ENTRIES + ENTRIES / 10 {
        let token = BearerToken::new(&format!("token.{i:08x}")).unwrap();
        assert!(matches!(cache.validate(&token), Verdict::Decided(Ok(_))));
    }
    let per_entry = (IN_USE.load(Ordering::Relaxed) - before) / cache.len() as isize;
    println!("{} entries, {per_entry} bytes each", cache.len());
    assert!(cache.len() <= ENTRIES, "{} entries", cache.len());
    assert!(cache.len() >= ENTRIES * 95 / 100, "{} entries", cache.len());
    assert!(per_entry <= BUDGET, "{per_entry} bytes per entry");
}
