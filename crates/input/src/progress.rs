//! Progress counters shared between the readers and whoever shows them.

use std::sync::atomic::{AtomicBool, AtomicU64};

/// How far a run has got, shared with whoever shows it (the binary's progress bar).
/// The engine only counts; it never prints.
#[derive(Debug, Default)]
pub struct Progress {
    /// Input bytes read so far (on-disk bytes: compressed ones for compressed inputs).
    pub done: AtomicU64,
    /// On-disk size of all file inputs (stdin is not counted in it).
    pub total: AtomicU64,
    /// Set when the scan is over.
    pub finished: AtomicBool,
}
