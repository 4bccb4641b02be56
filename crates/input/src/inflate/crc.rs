//! The CRC-32 of a member's output, taken on a helper thread while the inflater goes on
//! (both backends). On this machine the CRC (PCLMULQDQ folding, about 9.5 GB/s, the
//! same in zlib-rs and crc32fast) is a tenth of the inflating thread's time; on a second
//! core it costs the inflater one hand-off per window instead.
//!
//! The helper reads windows of the caller's output buffer that the inflater has
//! finished writing, while the inflater writes further on in the same buffer. Every
//! window handed over is done with before [`Crc::settle`] returns, and the reader
//! settles before each `read` returns (a [`Settle`] guard, so also on a panic): the
//! helper never touches a buffer after its borrow has ended.
//!
//! A stream starts with the CRC taken inline; the helper thread is started once the
//! stream has produced [`HELPER_FROM`] bytes, so a small stream (one of many zip
//! entries) never starts a thread, and only when fewer gzip streams are being read than
//! there are cores (the CRC stays inline when every core already inflates one).

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

/// Output bytes of a stream after which the CRC moves to the helper thread.
const HELPER_FROM: u64 = 4 << 20;

/// The running CRC-32 (and the helper that may be taking it).
pub(super) struct Crc {
    /// The CRC when no helper runs; with one, the helper's state is the truth.
    value: u32,
    /// Bytes checked so far in this stream.
    seen: u64,
    /// Made with the reader (so that a guard taken before the helper starts still
    /// waits for it); the thread is started later, if at all.
    shared: Arc<Shared>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// The helper was considered (once per stream): the CRC stays inline without one.
    tried: bool,
}

struct Shared {
    state: Mutex<State>,
    /// Signalled when a window is queued or the reader is dropped.
    work: Condvar,
    /// Signalled when the queue is empty and the helper idle.
    idle: Condvar,
}

struct State {
    /// Windows to check, in order: address and length.
    queue: VecDeque<(usize, usize)>,
    crc: u32,
    /// The helper is checking a window taken off the queue.
    busy: bool,
    closed: bool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A poisoned lock only means a thread panicked; the state is plain numbers.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits until every queued window is checked; returns the CRC so far.
    fn settle(&self) -> u32 {
        let mut state = self.lock();
        while state.busy || !state.queue.is_empty() {
            state = self.idle.wait(state).unwrap_or_else(|e| e.into_inner());
        }
        state.crc
    }

    fn run(&self) {
        let mut state = self.lock();
        loop {
            let Some((at, len)) = state.queue.pop_front() else {
                if state.closed {
                    return;
                }
                state = self.work.wait(state).unwrap_or_else(|e| e.into_inner());
                continue;
            };
            state.busy = true;
            let crc = state.crc;
            drop(state);
            // SAFETY: the window was fully written before it was queued and stays
            // borrowed by the reader until `settle` sees the queue empty and the helper
            // idle, which is after this read; nothing writes to it meanwhile.
            let window = unsafe { std::slice::from_raw_parts(at as *const u8, len) };
            let crc = zlib_rs::crc32::crc32(crc, window);
            state = self.lock();
            state.crc = crc;
            state.busy = false;
            if state.queue.is_empty() {
                self.idle.notify_all();
            }
        }
    }
}

impl Crc {
    pub(super) fn new() -> Crc {
        Crc {
            value: 0,
            seen: 0,
            shared: Arc::new(Shared {
                state: Mutex::new(State {
                    queue: VecDeque::new(),
                    crc: 0,
                    busy: false,
                    closed: false,
                }),
                work: Condvar::new(),
                idle: Condvar::new(),
            }),
            thread: None,
            tried: false,
        }
    }

    /// Starts a member: the CRC is zero again.
    pub(super) fn reset(&mut self) {
        self.value = 0;
        if self.thread.is_some() {
            self.shared.settle();
            self.shared.lock().crc = 0;
        }
    }

    /// Adds a window of output to the CRC.
    ///
    /// # Safety
    /// `window` must not be written to, nor its memory released, until
    /// [`Crc::settle`] has returned (the helper may read it until then).
    pub(super) unsafe fn update(&mut self, window: &[u8]) {
        self.seen += window.len() as u64;
        if !self.tried && self.seen >= HELPER_FROM {
            self.start_helper();
        }
        if self.thread.is_none() {
            self.value = zlib_rs::crc32::crc32(self.value, window);
        } else if !window.is_empty() {
            let at = window.as_ptr() as usize;
            self.shared.lock().queue.push_back((at, window.len()));
            self.shared.work.notify_one();
        }
    }

    /// Waits for the windows handed over; returns the member's CRC so far.
    pub(super) fn settle(&mut self) -> u32 {
        if self.thread.is_some() {
            self.value = self.shared.settle();
        }
        self.value
    }

    /// A guard that settles when dropped (a clone of the helper's handle).
    pub(super) fn guard(&self) -> Settle {
        Settle(self.shared.clone())
    }

    fn start_helper(&mut self) {
        self.tried = true;
        // A core no other gzip stream is inflating on, or the hand-offs only add work
        // (several files read at once on two cores: each inflater keeps its core busy).
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        if super::STREAMS.load(std::sync::atomic::Ordering::Relaxed) >= cores {
            return;
        }
        self.shared.lock().crc = self.value;
        let theirs = self.shared.clone();
        let spawned = std::thread::Builder::new()
            .name("ualhunt-crc".to_string())
            .spawn(move || theirs.run());
        // Without a thread the CRC simply stays inline.
        self.thread = spawned.ok();
    }
}

impl Drop for Crc {
    fn drop(&mut self) {
        if let Some(handle) = self.thread.take() {
            self.shared.settle();
            self.shared.lock().closed = true;
            self.shared.work.notify_all();
            let _ = handle.join();
        }
    }
}

/// Settles the CRC helper when dropped: every window handed over has been read.
pub(super) struct Settle(Arc<Shared>);

impl Drop for Settle {
    fn drop(&mut self) {
        self.0.settle();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_helper_gives_the_inline_crc() {
        let data: Vec<u8> = (0..(9usize << 20))
            .map(|i| (i * 31 + i / 7) as u8)
            .collect();
        let want = zlib_rs::crc32::crc32(0, &data);
        let mut crc = Crc::new();
        for window in data.chunks(300_000) {
            // SAFETY: `data` is neither written nor dropped before the settle below.
            unsafe { crc.update(window) };
        }
        assert_eq!(crc.settle(), want);
        crc.reset();
        // SAFETY: as above.
        unsafe { crc.update(&data[..1000]) };
        assert_eq!(crc.settle(), zlib_rs::crc32::crc32(0, &data[..1000]));
    }
}
