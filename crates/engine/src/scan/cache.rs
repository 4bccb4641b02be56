//! The context cache: the inflated blocks of compressed files that the first pass keeps
//! for the passes after it, so that a context pass reads them from memory instead of
//! inflating the file a second time from its seek points.
//!
//! Place in the flow: `stages::run` makes one [`Cache`] with a budget (`--context-cache`,
//! off by default; `auto` is [`default_budget`]) when a context pass may run, and hands it to the first pass
//! through `Maps`. While a gzip or zstd file is streamed, a [`Keeper`] takes each block
//! the scan is done with instead of recycling its buffer (the block is handed over, not
//! copied), as long as the budget has room; when the budget fills, the file keeps the
//! blocks it has, a prefix of its decompressed bytes, and the rest are recycled as
//! before. A file is kept only when its first pass ended without error and its seek
//! points were kept (the same condition under which the context pass reads it by
//! stretches): a damaged file is read again as it always was. The context pass
//! (`inputs::scan_seeking`) reads of each stretch what is kept from memory and inflates
//! from the seek points only the rest. The cache is emptied as soon as no pass is left
//! that could read it.
//!
//! Positions are those of the scan: a kept block starts where the bytes of the blocks
//! before it end, as the block index counts them.

use std::ops::Range;
use std::sync::{Arc, Mutex};

use rustc_hash::FxHashMap;
use ualhunt_input::Filled;

/// The budget of `--context-cache auto`: the smaller of 1 GiB and a quarter of physical
/// memory (1 GiB where physical memory cannot be read).
pub fn default_budget() -> u64 {
    const CAP: u64 = 1 << 30;
    physical_memory().map_or(CAP, |m| CAP.min(m / 4))
}

/// Physical memory in bytes, from `/proc/meminfo` (Linux); `None` elsewhere.
fn physical_memory() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line
        .trim_start_matches("MemTotal:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    kib.checked_mul(1024)
}

/// What the cache held, for `--stats`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// The budget, in bytes of allocated buffers.
    pub budget: u64,
    /// Decompressed bytes kept, over every file.
    pub kept: u64,
    /// Bytes of buffers holding them (what counted against the budget).
    pub held: u64,
    /// Files kept, whole or in part.
    pub files: u64,
    /// Decompressed bytes of the kept files' streams that were not kept: the budget
    /// was full (or a line too long to hold was met).
    pub not_kept: u64,
}

/// The inflated blocks kept for the passes after the first, within a budget.
pub struct Cache {
    budget: u64,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Whether the first pass may still add blocks.
    open: bool,
    /// Bytes of buffers reserved, by keepers still filling and by kept files.
    held: u64,
    files: FxHashMap<usize, Arc<Kept>>,
    kept: u64,
    not_kept: u64,
}

impl Default for Cache {
    /// A cache that keeps nothing.
    fn default() -> Cache {
        Cache::new(0)
    }
}

impl Cache {
    /// A cache of at most `budget` bytes of buffers, open for the first pass (`0`: one
    /// that keeps nothing).
    pub fn new(budget: u64) -> Cache {
        Cache {
            budget,
            state: Mutex::new(State {
                open: budget > 0,
                ..State::default()
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A poisoned lock only means a scanning thread panicked; the counts are whole.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether a stream read now may keep its blocks.
    pub fn open(&self) -> bool {
        self.lock().open
    }

    /// Ends the filling: the first pass is done.
    pub fn close(&self) {
        self.lock().open = false;
    }

    /// A keeper for one stream of input `file`, or `None` when the cache is closed.
    pub fn keeper(&self, file: usize) -> Option<Keeper<'_>> {
        self.open().then(|| Keeper {
            cache: self,
            file,
            blocks: Vec::new(),
            at: 0,
            reserved: 0,
            full: false,
            not_kept: 0,
        })
    }

    /// Input `file`'s kept blocks, if any.
    pub fn get(&self, file: usize) -> Option<Arc<Kept>> {
        self.lock().files.get(&file).cloned()
    }

    /// What it holds now.
    pub fn stats(&self) -> CacheStats {
        let s = self.lock();
        CacheStats {
            budget: self.budget,
            kept: s.kept,
            held: s.held,
            files: s.files.len() as u64,
            not_kept: s.not_kept,
        }
    }

    /// Frees every kept block (a pass still reading a file's blocks frees them when
    /// it is done) and closes the cache.
    pub fn clear(&self) {
        let files = {
            let mut s = self.lock();
            s.open = false;
            s.held = 0;
            std::mem::take(&mut s.files)
        };
        drop(files);
    }

    /// Reserves `bytes` of the budget.
    fn reserve(&self, bytes: u64) -> bool {
        let mut s = self.lock();
        if s.open && s.held + bytes <= self.budget {
            s.held += bytes;
            true
        } else {
            false
        }
    }

    fn release(&self, bytes: u64) {
        let mut s = self.lock();
        s.held = s.held.saturating_sub(bytes);
    }
}

/// The kept blocks of one file: its decompressed bytes from the start up to
/// [`Kept::end`], block after block.
pub struct Kept {
    blocks: Vec<Filled>,
    /// Where each block starts.
    starts: Vec<u64>,
    end: u64,
}

impl Kept {
    /// Where the kept bytes end (they start at the file's start).
    pub fn end(&self) -> u64 {
        self.end
    }

    /// The kept bytes of `range` (which must end at or before [`Kept::end`]), as slices
    /// of the blocks, in order; each starts at a line start when `range` does.
    pub fn slices(&self, range: Range<u64>) -> Vec<&[u8]> {
        let first = self.starts.partition_point(|&s| s <= range.start);
        let first = first.saturating_sub(1);
        let mut out = Vec::new();
        for (block, &start) in self.blocks[first..].iter().zip(&self.starts[first..]) {
            if start >= range.end {
                break;
            }
            let from = range.start.saturating_sub(start) as usize;
            let to = ((range.end - start) as usize).min(block.len());
            if from < to {
                out.push(&block[from..to]);
            }
        }
        out
    }
}

/// Collects the blocks of one stream as the scan is done with them, within the cache's
/// budget; dropped without [`Keeper::commit`], it frees them.
pub struct Keeper<'a> {
    cache: &'a Cache,
    file: usize,
    blocks: Vec<Filled>,
    /// Where the next block starts.
    at: u64,
    reserved: u64,
    /// The budget had no room (or a block could not be kept): later blocks are not.
    full: bool,
    not_kept: u64,
}

impl Keeper<'_> {
    /// Whether it still keeps blocks.
    pub fn keeping(&self) -> bool {
        !self.full
    }

    /// Keeps `block` (the next one of the stream) if the budget has room; otherwise
    /// gives it back to be recycled.
    pub fn offer(&mut self, mut block: Filled) -> Option<Filled> {
        let len = block.len() as u64;
        if !self.full {
            block.trim();
        }
        if !self.full && self.cache.reserve(block.capacity() as u64) {
            self.reserved += block.capacity() as u64;
            self.blocks.push(block);
            self.at += len;
            None
        } else {
            self.full = true;
            self.not_kept += len;
            Some(block)
        }
    }

    /// Stream bytes that could not be held (a line longer than the limit, skipped
    /// unread): nothing after them is kept.
    pub fn skip(&mut self, bytes: u64) {
        self.full = true;
        self.not_kept += bytes;
    }

    /// Keeps what was collected as input `file`'s blocks (nothing when none was).
    pub fn commit(mut self) {
        let blocks = std::mem::take(&mut self.blocks);
        let reserved = std::mem::take(&mut self.reserved);
        let mut s = self.cache.lock();
        if !s.open {
            drop(s);
            self.cache.release(reserved);
            return;
        }
        s.not_kept += self.not_kept;
        if blocks.is_empty() {
            return;
        }
        let mut starts = Vec::with_capacity(blocks.len());
        let mut at = 0;
        for b in &blocks {
            starts.push(at);
            at += b.len() as u64;
        }
        s.kept += at;
        s.files.insert(
            self.file,
            Arc::new(Kept {
                blocks,
                starts,
                end: at,
            }),
        );
    }
}

impl Drop for Keeper<'_> {
    fn drop(&mut self) {
        if self.reserved > 0 {
            self.cache.release(self.reserved);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(text: &str) -> Filled {
        Filled::from(text.as_bytes().to_vec())
    }

    #[test]
    fn slices_cut_the_kept_blocks_at_the_range() {
        let cache = Cache::new(1 << 20);
        let mut k = cache.keeper(3).unwrap();
        for b in ["a\nbb\n", "ccc\n", "dddd\ne\n"] {
            assert!(k.offer(block(b)).is_none());
        }
        k.commit();
        let kept = cache.get(3).unwrap();
        assert_eq!(kept.end(), 16);
        let all: Vec<u8> = kept.slices(0..16).concat();
        assert_eq!(all, b"a\nbb\nccc\ndddd\ne\n");
        for a in 0..=16 {
            for b in a..=16 {
                let got: Vec<u8> = kept.slices(a..b).concat();
                assert_eq!(got, all[a as usize..b as usize], "{a}..{b}");
            }
        }
        assert_eq!(kept.slices(2..9), vec![&b"bb\n"[..], b"ccc\n"]);
    }

    #[test]
    fn a_full_budget_keeps_a_prefix_and_says_what_it_did_not_keep() {
        let cache = Cache::new(10);
        let mut k = cache.keeper(0).unwrap();
        assert!(k.offer(block("0123456\n")).is_none());
        assert!(k.offer(block("abc\n")).is_some(), "no room: given back");
        assert!(!k.keeping());
        assert!(k.offer(block("d\n")).is_some(), "nothing after a refusal");
        k.commit();
        let s = cache.stats();
        assert_eq!((s.kept, s.held, s.files, s.not_kept), (8, 8, 1, 6));
        assert_eq!(cache.get(0).unwrap().end(), 8);
        cache.clear();
        assert!(cache.get(0).is_none());
        assert_eq!(cache.stats().held, 0);
        assert!(cache.keeper(1).is_none(), "closed once cleared");
    }

    #[test]
    fn a_keeper_dropped_uncommitted_frees_its_room() {
        let cache = Cache::new(10);
        let mut k = cache.keeper(0).unwrap();
        assert!(k.offer(block("0123456\n")).is_none());
        drop(k);
        assert_eq!(cache.stats().held, 0);
        assert!(cache.get(0).is_none());
        let mut k = cache.keeper(1).unwrap();
        assert!(k.offer(block("0123456\n")).is_none(), "the room is back");
        k.commit();
        cache.close();
        assert!(cache.keeper(2).is_none());
        assert!(cache.get(1).is_some(), "closing keeps what is kept");
        assert_eq!(Cache::new(0).keeper(0).map(|_| ()), None, "0: off");
    }
}
