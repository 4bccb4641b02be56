//! A counting global allocator, so `--stats` can report peak heap memory apart from the
//! resident size (which, for a memory-mapped archive, includes the file's cached pages).
//!
//! The binary installs it with `#[global_allocator]`; the library only reads it. It
//! counts only once asked to ([`start_counting`]: the binary does for `--stats`):
//! every allocation counted is two atomic updates of counters all threads share, and
//! two threads allocating for each event fought over their cache line (7 % of the
//! wall time of a run reporting 15,000 events per 128 MiB).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicIsize, AtomicUsize, Ordering};

static COUNTING: AtomicBool = AtomicBool::new(false);
/// Live bytes counted: signed, as memory allocated before counting began is freed
/// after it (the peak is then low by at most what was live when it began).
static CURRENT: AtomicIsize = AtomicIsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

/// Counts live bytes and their peak from now on ([`peak_heap`]).
pub fn start_counting() {
    COUNTING.store(true, Ordering::Relaxed);
}

/// Whether allocations are counted.
#[inline]
fn counting() -> bool {
    COUNTING.load(Ordering::Relaxed)
}

/// The system allocator, counting live bytes and their peak once asked to.
pub struct CountingAlloc;

// SAFETY: every call is forwarded unchanged to the system allocator; the counters are
// plain atomics and never affect the memory handed out.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's layout.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() && counting() {
            grow(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's layout.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() && counting() {
            grow(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by `System` with this layout.
        unsafe { System.dealloc(ptr, layout) };
        if counting() {
            CURRENT.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded unchanged.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() && counting() {
            CURRENT.fetch_sub(layout.size() as isize, Ordering::Relaxed);
            grow(new_size);
        }
        p
    }
}

fn grow(size: usize) {
    let size = size as isize;
    let now = CURRENT.fetch_add(size, Ordering::Relaxed) + size;
    PEAK.fetch_max(now.max(0) as usize, Ordering::Relaxed);
}

/// Peak live heap bytes since counting began (0 when the counting allocator is not
/// installed or was not asked to count).
pub fn peak_heap() -> usize {
    PEAK.load(Ordering::Relaxed)
}

/// Peak resident set size of the process in bytes, where the OS tells it.
pub fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}
