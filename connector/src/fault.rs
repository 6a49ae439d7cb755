//! Fault injection for tests of the connector's failure paths, driven by one environment
//! variable and inert when it is unset.
//!
//! `DESTINATION_DELTA_LAKE_FAIL_COMMIT=N` makes the N-th data commit of the process (1-based)
//! and every later one fail before reaching storage, as a storage outage would. Tests use it to
//! prove that no STATE is echoed for data that was not committed.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

static FAIL_FROM: OnceLock<Option<u64>> = OnceLock::new();
static COMMITS: AtomicU64 = AtomicU64::new(0);

/// Counts a commit attempt and says whether it must fail.
pub fn fail_this_commit() -> bool {
    let fail_from = *FAIL_FROM.get_or_init(|| {
        std::env::var("DESTINATION_DELTA_LAKE_FAIL_COMMIT").ok().and_then(|v| v.trim().parse().ok())
    });
    let n = COMMITS.fetch_add(1, Ordering::Relaxed) + 1;
    fail_from.is_some_and(|from| n >= from)
}
