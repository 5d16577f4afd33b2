//! Heap profiling for measuring what a connection costs (BENCHMARKS.md, "Lean
//! sockets"). Only with the `dhat-heap` feature: every allocation is then counted by
//! call site, and the profile (`$FERRY_DHAT_OUT`, default `dhat-heap.json` in the
//! working directory; read it with DHAT's viewer) is written when the process is asked
//! to stop, before any socket closes. Its "at t-gmax" figures are the heap at its
//! peak (with the most connections open), its "at end" figures the heap at SIGTERM.

use std::sync::Mutex;

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

static PROFILER: Mutex<Option<dhat::Profiler>> = Mutex::new(None);

/// Starts counting; call once, first thing in `main`.
pub(crate) fn start() {
    let out = std::env::var("FERRY_DHAT_OUT").unwrap_or_else(|_| "dhat-heap.json".into());
    *PROFILER.lock().unwrap() = Some(dhat::Profiler::builder().file_name(out).build());
}

/// Writes the profile (once; later calls do nothing).
pub(crate) fn write() {
    drop(PROFILER.lock().unwrap().take());
}
