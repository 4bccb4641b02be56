//! A guard over memory-mapped inputs: a file truncated while it is mapped must not kill
//! the process.
//!
//! Reading a page of a mapping that lies past the end of its file raises SIGBUS, whose
//! default action ends the process (exit 135, every finding lost). While a map is
//! registered here, a SIGBUS handler (installed once, chained to the one before it)
//! that sees the faulting address inside it maps anonymous zero pages over the rest of
//! the mapping (`MAP_FIXED`) and notes the offset of the first page that failed; the
//! read is then retried and sees zeros. After the scan, [`GuardedMap::change`] says
//! whether the file was cut under the scan (a fault) or changed otherwise (size or
//! modification time, before and after), and up to which byte what was read is the
//! file's: `engine` keeps only the results of those bytes and reports the input as
//! stopped. Nothing here parses or prints; the handler only does async-signal-safe work
//! (atomics and one `mmap` system call).

use std::fs::File;
use std::time::SystemTime;

use memmap2::Mmap;

/// A memory map registered with the SIGBUS guard for as long as it lives.
pub struct GuardedMap {
    // Field order matters: the registration is dropped (unregistered) before the map is
    // unmapped.
    slot: Option<slot::Registration>,
    map: Mmap,
    file: File,
    before: Snapshot,
}

/// Size and modification time of a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Snapshot {
    len: u64,
    modified: Option<SystemTime>,
}

impl Snapshot {
    fn of(file: &File) -> Option<Snapshot> {
        let meta = file.metadata().ok()?;
        Some(Snapshot {
            len: meta.len(),
            modified: meta.modified().ok(),
        })
    }
}

/// How a mapped file changed while it was read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Change {
    /// Bytes from the start of the map that were read from the file as it was (past
    /// them, a cut file read as zeros and nothing of them may be used).
    pub valid: u64,
    /// Whether reading met the end of the file inside the map (it was truncated).
    pub truncated: bool,
    /// Size when it was mapped.
    pub len_before: u64,
    /// Size after the scan.
    pub len_after: u64,
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} at byte {}", self.describe(), self.valid)
    }
}

/// A stream read from a mapped file ends with this error (inside an `io::Error`) when the
/// file was cut under it.
impl std::error::Error for Change {}

impl Change {
    /// A one-line description for the report.
    pub fn describe(&self) -> String {
        if self.truncated {
            format!(
                "file truncated while being read (size {} bytes when opened, {} after)",
                self.len_before, self.len_after
            )
        } else {
            format!(
                "file changed while being read (size {} bytes when opened, {} after, or \
                 modified)",
                self.len_before, self.len_after
            )
        }
    }
}

/// Registers a map made elsewhere (a gzip file read in place) with the guard for as long
/// as the returned registration lives: a cut under it reads as zero pages (the inflater
/// then reports corrupt or truncated data) instead of ending the process.
pub fn register(map: &Mmap) -> Option<Registration> {
    slot::register(map.as_ptr() as usize, map.len()).map(Registration)
}

/// A map's registration with the guard (see [`register`]); freed on drop.
pub struct Registration(slot::Registration);

impl Registration {
    /// Offset from the map's start of the first page that failed, if one did.
    pub fn fault(&self) -> Option<u64> {
        self.0.fault()
    }
}

impl GuardedMap {
    /// Maps `file` (of non-zero size) read-only and registers the map with the guard.
    pub fn map(file: File) -> std::io::Result<GuardedMap> {
        let before = Snapshot::of(&file).unwrap_or(Snapshot {
            len: 0,
            modified: None,
        });
        // SAFETY: the map is read-only and private to this process. Another process may
        // truncate or rewrite the file while it is mapped: the bytes may then change
        // under the scan (the scan treats them as untrusted input anyway, and `change`
        // tells afterwards), and reading past the new end raises SIGBUS, which the
        // registration below turns into zero pages instead of the end of the process.
        let map = unsafe { Mmap::map(&file)? };
        #[cfg(unix)]
        {
            let _ = map.advise(memmap2::Advice::Sequential);
        }
        let slot = slot::register(map.as_ptr() as usize, map.len());
        Ok(GuardedMap {
            slot,
            map,
            file,
            before,
        })
    }

    /// The mapped bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.map
    }

    /// Whether the file changed while mapped; `None` when it did not (as far as its
    /// size, its modification time and the reads can tell).
    pub fn change(&self) -> Option<Change> {
        let fault = self.slot.as_ref().and_then(slot::Registration::fault);
        let after = Snapshot::of(&self.file);
        let len = self.map.len() as u64;
        let len_after = after.map_or(0, |a| a.len);
        if fault.is_none() && after == Some(self.before) {
            return None;
        }
        let valid = match fault {
            // Every byte before the first page that failed was read from the file: either
            // before the cut, or after it inside the new size (a page past the new end
            // would have failed too). One exception: the rest of the page that holds the
            // new end reads as zeros after the cut, so when it holds a zero the scan
            // stops at the new end.
            Some(at) => {
                let at = at.min(len);
                let page = slot::page() as u64;
                let page_end = len_after.next_multiple_of(page).min(at);
                let zeroed = len_after < page_end
                    && self.map[len_after as usize..page_end as usize].contains(&0);
                if zeroed { len_after } else { at }
            }
            None => len,
        };
        Some(Change {
            valid,
            truncated: fault.is_some(),
            len_before: self.before.len,
            len_after,
        })
    }

    /// Gives back the pages of `range` (offsets into the map, clamped to it) from this
    /// process's page tables; the file's cached pages stay, and a later read of the
    /// range faults them in from the file again. Dropping a map clears the page table
    /// entries of all its pages on one thread (about 9 ms for 512 MiB of faulted-in
    /// pages): releasing pieces of it first, on several threads, spreads that work.
    pub fn release(&self, range: std::ops::Range<usize>) {
        let end = range.end.min(self.map.len());
        let start = range.start.min(end);
        if start == end {
            return;
        }
        #[cfg(unix)]
        // SAFETY: the map is a shared, read-only mapping of a file (`Mmap::map`): the
        // advice drops only this process's page table entries of `start..end`, which
        // lies inside the map (memmap2 widens it down to a page start, still inside);
        // nothing was written through the map, so nothing is lost, and a later read of
        // the range sees the file's bytes, as any read of the map does.
        unsafe {
            // Advice only: when it fails the pages are cleared at the drop as before.
            let _ = self.map.unchecked_advise_range(
                memmap2::UncheckedAdvice::DontNeed,
                start,
                end - start,
            );
        }
    }

    /// Whether the map is watched (false only when every guard slot was in use: then a
    /// truncation still ends the process, as without the guard).
    pub fn is_guarded(&self) -> bool {
        self.slot.is_some()
    }
}

#[cfg(unix)]
mod slot {
    //! The registry the signal handler reads: a fixed array of slots, claimed and freed
    //! with atomics (no allocation, no lock: the handler may interrupt anything).

    use std::sync::Once;
    use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};

    const FREE: u8 = 0;
    const CLAIMED: u8 = 1;
    const ACTIVE: u8 = 2;
    /// Maps scanned at once are about one per worker thread (a few more when a thread
    /// steals work while waiting): far fewer than this.
    const SLOTS: usize = 1024;
    const NO_FAULT: usize = usize::MAX;

    struct Slot {
        state: AtomicU8,
        start: AtomicUsize,
        end: AtomicUsize,
        /// Offset from `start` of the first page that faulted, or `NO_FAULT`.
        fault: AtomicUsize,
    }

    #[allow(clippy::declare_interior_mutable_const)] // only to initialise the array
    const EMPTY: Slot = Slot {
        state: AtomicU8::new(FREE),
        start: AtomicUsize::new(0),
        end: AtomicUsize::new(0),
        fault: AtomicUsize::new(NO_FAULT),
    };
    static TABLE: [Slot; SLOTS] = [EMPTY; SLOTS];
    static PAGE: AtomicUsize = AtomicUsize::new(4096);

    /// The page size.
    pub fn page() -> usize {
        PAGE.load(Ordering::Relaxed)
    }
    static INSTALL: Once = Once::new();
    /// The handler that was there before ours, called for faults that are not ours.
    static mut PREVIOUS: Option<libc::sigaction> = None;

    /// A claimed slot, freed on drop.
    pub struct Registration(usize);

    impl Registration {
        /// Offset of the first page that faulted, if one did.
        pub fn fault(&self) -> Option<u64> {
            let at = TABLE[self.0].fault.load(Ordering::Acquire);
            (at != NO_FAULT).then_some(at as u64)
        }
    }

    impl Drop for Registration {
        fn drop(&mut self) {
            let slot = &TABLE[self.0];
            slot.state.store(CLAIMED, Ordering::Release);
            slot.fault.store(NO_FAULT, Ordering::Relaxed);
            slot.state.store(FREE, Ordering::Release);
        }
    }

    /// Registers `len` mapped bytes at `start`; `None` when no slot is free or the
    /// handler could not be installed.
    pub fn register(start: usize, len: usize) -> Option<Registration> {
        INSTALL.call_once(install);
        if !installed() {
            return None;
        }
        let page = PAGE.load(Ordering::Relaxed);
        // The kernel maps whole pages: the last one runs past `len`.
        let end = start.checked_add(len)?.checked_next_multiple_of(page)?;
        for (i, slot) in TABLE.iter().enumerate() {
            if slot
                .state
                .compare_exchange(FREE, CLAIMED, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
            {
                slot.start.store(start, Ordering::Relaxed);
                slot.end.store(end, Ordering::Relaxed);
                slot.fault.store(NO_FAULT, Ordering::Relaxed);
                slot.state.store(ACTIVE, Ordering::Release);
                return Some(Registration(i));
            }
        }
        None
    }

    static INSTALLED: AtomicU8 = AtomicU8::new(0);

    fn installed() -> bool {
        INSTALLED.load(Ordering::Acquire) == 1
    }

    fn install() {
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        if page > 0 {
            PAGE.store(page as usize, Ordering::Relaxed);
        }
        // SAFETY: a zeroed sigaction is a valid value to fill in; `previous` is written
        // by the kernel. PREVIOUS is written once here, inside `Once`, before the new
        // handler can run (it is installed by this same call), and only read after.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_sigbus as *const () as usize;
            action.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK | libc::SA_NODEFER;
            libc::sigemptyset(&mut action.sa_mask);
            let mut previous: libc::sigaction = std::mem::zeroed();
            libc::sigaction(libc::SIGBUS, std::ptr::null(), &mut previous);
            PREVIOUS = Some(previous);
            if libc::sigaction(libc::SIGBUS, &action, std::ptr::null_mut()) == 0 {
                INSTALLED.store(1, Ordering::Release);
            }
        }
    }

    /// The SIGBUS handler: a fault inside a registered map gets zero pages from the
    /// faulting page to the map's end and is retried; any other goes to the handler
    /// that was there before (Rust's own, for stack guard pages), or to the default
    /// action, which ends the process as it would have without us.
    extern "C" fn on_sigbus(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
        // SAFETY: the kernel hands a valid siginfo_t to an SA_SIGINFO handler.
        let addr = unsafe { (*info).si_addr() } as usize;
        let page = PAGE.load(Ordering::Relaxed);
        for slot in &TABLE {
            if slot.state.load(Ordering::Acquire) != ACTIVE {
                continue;
            }
            let (start, end) = (
                slot.start.load(Ordering::Relaxed),
                slot.end.load(Ordering::Relaxed),
            );
            if addr < start || addr >= end {
                continue;
            }
            let at = addr - addr % page;
            // SAFETY: [at, end) lies inside a live private read-only mapping of ours
            // (the slot is active only while its map exists); replacing those pages
            // with anonymous zero pages changes only what later reads of it see. mmap
            // is a plain system call, safe in a signal handler.
            let zeroed = unsafe {
                libc::mmap(
                    at as *mut libc::c_void,
                    end - at,
                    libc::PROT_READ,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED,
                    -1,
                    0,
                )
            };
            if zeroed != libc::MAP_FAILED {
                slot.fault.fetch_min(at - start, Ordering::AcqRel);
                return;
            }
        }
        // Not ours.
        // SAFETY: PREVIOUS was set before this handler was installed and never changes.
        let previous = unsafe { *std::ptr::addr_of!(PREVIOUS) };
        match previous {
            Some(p) if p.sa_sigaction != libc::SIG_DFL && p.sa_sigaction != libc::SIG_IGN => {
                if p.sa_flags & libc::SA_SIGINFO != 0 {
                    // SAFETY: the previous handler was installed as an SA_SIGINFO one.
                    let f: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
                        unsafe { std::mem::transmute(p.sa_sigaction) };
                    f(sig, info, ctx);
                } else {
                    // SAFETY: the previous handler was installed as a plain one.
                    let f: extern "C" fn(libc::c_int) =
                        unsafe { std::mem::transmute(p.sa_sigaction) };
                    f(sig);
                }
            }
            _ => {
                // Back to the default action; returning retries the access, which
                // faults again and ends the process with SIGBUS, as it would have.
                // SAFETY: a zeroed sigaction with SIG_DFL is valid.
                unsafe {
                    let mut action: libc::sigaction = std::mem::zeroed();
                    action.sa_sigaction = libc::SIG_DFL;
                    libc::sigaction(libc::SIGBUS, &action, std::ptr::null_mut());
                }
            }
        }
    }
}

#[cfg(not(unix))]
mod slot {
    //! Without SIGBUS there is nothing to catch: truncation under a map is an OS error
    //! elsewhere (Windows refuses to truncate a mapped file).

    /// Never handed out.
    pub struct Registration;

    impl Registration {
        pub fn fault(&self) -> Option<u64> {
            None
        }
    }

    pub fn register(_start: usize, _len: usize) -> Option<Registration> {
        None
    }

    pub fn page() -> usize {
        4096
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::io::Write;

    /// Resident kilobytes of the mapping that starts at `at`, from `/proc/self/smaps`.
    #[cfg(target_os = "linux")]
    fn resident_kb(at: usize) -> u64 {
        let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
        let head = format!("{at:x}-");
        let mut lines = smaps.lines().skip_while(|l| !l.starts_with(&head)).skip(1);
        let rss = lines.find(|l| l.starts_with("Rss:")).unwrap();
        rss.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn released_pages_leave_the_process_and_read_as_the_file_again() {
        let mut tmp = tempfile::NamedTempFile::new().unwrap();
        let page = 4096;
        let bytes: Vec<u8> = (0..64 * page + 123).map(|i| (i * 7 % 251) as u8).collect();
        tmp.write_all(&bytes).unwrap();
        tmp.flush().unwrap();
        let map = GuardedMap::map(File::open(tmp.path()).unwrap()).unwrap();
        let at = map.bytes().as_ptr() as usize;
        let touch = |map: &GuardedMap| {
            map.bytes()
                .iter()
                .step_by(512)
                .map(|&b| b as u64)
                .sum::<u64>()
        };
        let sum = touch(&map);
        assert!(resident_kb(at) >= 64 * 4, "every page faulted in");
        // Unaligned ends, an empty range, a range past the end: clamped, never an error.
        map.release(10..3 * page + 5);
        map.release(7..7);
        map.release(60 * page..usize::MAX);
        map.release(usize::MAX - 1..usize::MAX);
        assert!(
            resident_kb(at) < 64 * 4,
            "released pages left the page tables"
        );
        map.release(0..map.bytes().len());
        assert_eq!(resident_kb(at), 0);
        assert_eq!(touch(&map), sum);
        assert_eq!(map.bytes(), &bytes[..]);
        assert_eq!(map.change(), None);
    }

    #[test]
    fn a_file_cut_while_mapped_reads_as_zeros_past_the_cut_and_says_where() {
        let mut tmp = tempfile::NamedTempFile::new().unwrap();
        let page = 4096;
        tmp.write_all(&vec![b'a'; 5 * page + 100]).unwrap();
        tmp.flush().unwrap();
        let map = GuardedMap::map(File::open(tmp.path()).unwrap()).unwrap();
        assert!(map.is_guarded());
        assert_eq!(map.change(), None);
        assert_eq!(map.bytes()[0], b'a');
        tmp.as_file().set_len(2 * page as u64 + 10).unwrap();
        // Past the new end: would be SIGBUS; reads zeros instead.
        let past: usize = map.bytes()[3 * page..].iter().map(|&b| b as usize).sum();
        assert_eq!(past, 0);
        // Before it: the file as it is.
        assert_eq!(map.bytes()[page], b'a');
        let change = map.change().unwrap();
        assert!(change.truncated);
        assert_eq!(change.valid, 2 * page as u64 + 10);
        assert_eq!(change.len_before, 5 * page as u64 + 100);
        assert!(
            change.describe().contains("truncated"),
            "{}",
            change.describe()
        );
    }

    #[test]
    fn a_file_grown_while_mapped_is_a_change_but_all_read_bytes_hold() {
        let mut tmp = tempfile::NamedTempFile::new().unwrap();
        tmp.write_all(b"one\n").unwrap();
        tmp.flush().unwrap();
        let map = GuardedMap::map(File::open(tmp.path()).unwrap()).unwrap();
        tmp.write_all(b"two\n").unwrap();
        tmp.flush().unwrap();
        let change = map.change().unwrap();
        assert!(!change.truncated);
        assert_eq!((change.valid, change.len_after), (4, 8));
    }
}
