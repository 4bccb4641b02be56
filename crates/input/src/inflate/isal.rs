//! The `isal` backend: Intel ISA-L's igzip inflate (system `libisal`) on raw deflate,
//! with the gzip framing read here as in the default build: the header by `header`
//! (ISA-L's own header reader fails on fields split over calls), the trailer here, and
//! the CRC-32 of each output window by `crc`, on a helper thread once the stream is
//! large, while ISA-L inflates the next window. Input is taken straight from the
//! caller's compressed bytes and output written straight into the caller's block.
//!
//! What ISA-L makes of damaged data depends on how its calls cut the output: how far
//! garbage still decodes as codes before it is found invalid, and how much of what it
//! decoded it hands out before the error, change with each call's output window. So
//! the calls cut a member's output on a fixed grid ([`GRID`] bytes from the member's
//! start): each call fills up to the next grid line, straight into the caller's block
//! when it has room for that, else into a staging buffer that later reads empty. The
//! sizes of the reads (and so which buffer the block reader reads into) change
//! nothing; the input is cut as the source hands it out, which for a file is on a grid
//! of its own (a mapped file in fixed windows), so two runs over one file recover the
//! same bytes of a damaged member.
//!
//! ISA-L reads its input up to eight bytes ahead into a bit buffer, and on raw deflate
//! does not give back what it read past the end of the final block: those whole bytes
//! (the low bits of `read_in`, after the unused bits of the last deflate byte) are the
//! first bytes of the trailer, taken from the buffer when the body ends.

use std::io;

use isal_sys::igzip_lib as ffi;

use super::crc::{Crc, Settle};
use super::header::{Header, Trailer};
use super::{Backend, Step, invalid};

/// A member's output is cut into ISA-L calls on lines this far apart (from the
/// member's first byte of output), whatever the reads.
pub const GRID: usize = 1 << 20;

/// Inflates gzip members with ISA-L.
pub struct Isal {
    // Boxed: the state is large and ISA-L keeps pointers into it.
    state: Box<ffi::inflate_state>,
    phase: Phase,
    /// CRC-32 and length (mod 2^32) of the member's output handed out so far.
    crc: Crc,
    size: u32,
    /// Output of the member decoded so far (handed out or staged).
    decoded: u64,
    /// Output of a call whose grid cell was larger than the caller's room, or after an
    /// error the bytes ISA-L held back: `stage[staged.0..staged.1]` are still to be
    /// handed out (allocated when first needed).
    stage: Vec<u8>,
    staged: (usize, usize),
}

enum Phase {
    Header(Header),
    Body,
    /// The deflate data ended: the trailer follows once the staged bytes are out.
    Ended,
    /// The deflate data was found corrupt: the error follows once the staged bytes are
    /// out.
    Damaged,
    Trailer(Trailer),
}

// SAFETY: the state holds raw pointers only into itself and, during a call, into
// buffers borrowed for that call; nothing is shared between threads.
unsafe impl Send for Isal {}

impl Isal {
    pub fn new() -> Isal {
        // SAFETY: inflate_state is a plain C struct; zeroed is a valid start and
        // isal_inflate_init sets every field it needs.
        let mut state: Box<ffi::inflate_state> = Box::new(unsafe { std::mem::zeroed() });
        // SAFETY: `state` points to a live, owned inflate_state.
        unsafe { ffi::isal_inflate_init(&mut *state) };
        state.crc_flag = ffi::IGZIP_DEFLATE;
        Isal {
            state,
            phase: Phase::Header(Header::default()),
            crc: Crc::new(),
            size: 0,
            decoded: 0,
            stage: Vec::new(),
            staged: (0, 0),
        }
    }

    /// The input bytes ISA-L read past the end of the deflate stream into its bit
    /// buffer (at most 8: the buffer is 64 bits), in stream order, after the unused
    /// bits of the last deflate byte.
    fn read_ahead(&self) -> ([u8; 8], usize) {
        let bits = self.state.read_in_length.max(0) as u32;
        let n = (bits / 8).min(8) as usize;
        let rest = self.state.read_in >> (bits % 8);
        (rest.to_le_bytes(), n)
    }

    /// After an error, the bytes ISA-L decoded before it but did not write to the
    /// call's window: they wait in its internal output buffer, from
    /// `tmp_out_processed` to `tmp_out_valid` (it drops them from its count, not from
    /// the buffer).
    fn held_back(&self) -> &[u8] {
        let buf = &self.state.tmp_out_buffer;
        let end = (self.state.tmp_out_valid.max(0) as usize).min(buf.len());
        let start = (self.state.tmp_out_processed.max(0) as usize).min(end);
        &buf[start..end]
    }

    /// One ISA-L call from `input` into `out`: (consumed, produced, ISA-L's return).
    fn call(&mut self, input: &[u8], out: &mut [u8]) -> (usize, usize, i32) {
        let in_len = input.len().min(u32::MAX as usize);
        let out_len = out.len().min(u32::MAX as usize);
        self.state.next_in = input.as_ptr() as *mut u8;
        self.state.avail_in = in_len as u32;
        self.state.next_out = out.as_mut_ptr();
        self.state.avail_out = out_len as u32;
        // SAFETY: next_in/avail_in describe `input` (ISA-L only reads it),
        // next_out/avail_out describe `out`; both outlive the call.
        let ret = unsafe { ffi::isal_inflate(&mut *self.state) };
        let consumed = in_len - self.state.avail_in as usize;
        let produced = out_len - self.state.avail_out as usize;
        // The pointers must not outlive the borrowed buffers.
        self.state.next_in = std::ptr::null_mut();
        self.state.avail_in = 0;
        self.state.next_out = std::ptr::null_mut();
        self.state.avail_out = 0;
        (consumed, produced, ret)
    }

    /// Counts `out` (bytes handed out, final) into the member's CRC and length.
    fn count(&mut self, out: &[u8]) {
        // SAFETY: the reader settles the CRC before its `read` returns (the guard), and
        // nothing writes these bytes again before that: ISA-L only reads back from
        // them, further output goes after them.
        unsafe { self.crc.update(out) };
        self.size = self.size.wrapping_add(out.len() as u32);
    }
}

impl Backend for Isal {
    type Guard = Settle;

    /// Output bytes per ISA-L call at most: each call copies its last 32 KiB into
    /// ISA-L's history buffer, and the CRC helper takes one hand-off per window.
    const WINDOW: usize = GRID;

    fn guard(&self) -> Settle {
        self.crc.guard()
    }

    fn begin(&mut self, _at: (u64, u64)) {
        // SAFETY: `state` is a live inflate_state.
        unsafe { ffi::isal_inflate_reset(&mut *self.state) };
        self.state.crc_flag = ffi::IGZIP_DEFLATE;
        self.phase = Phase::Header(Header::default());
        self.crc.reset();
        self.size = 0;
        self.decoded = 0;
        self.staged = (0, 0);
    }

    fn step(&mut self, input: &[u8], out: &mut [u8]) -> (Step, io::Result<()>) {
        let mut step = Step::default();
        loop {
            let rest = &input[step.consumed..];
            // Staged bytes first, whatever the phase: they come before anything else.
            if self.staged.0 < self.staged.1 {
                let (from, to) = self.staged;
                let window = &mut out[step.produced..];
                let n = window.len().min(to - from);
                window[..n].copy_from_slice(&self.stage[from..from + n]);
                self.count(&window[..n]);
                self.staged.0 += n;
                step.produced += n;
                if self.staged.0 < self.staged.1 {
                    return (step, Ok(()));
                }
            }
            match &mut self.phase {
                Phase::Header(header) => match header.read(rest) {
                    Ok(n) => {
                        step.consumed += n;
                        if !header.done() {
                            return (step, Ok(()));
                        }
                        self.phase = Phase::Body;
                    }
                    Err(e) => return (step, Err(e)),
                },
                Phase::Body => {
                    let room = out.len() - step.produced;
                    if room == 0 {
                        return (step, Ok(()));
                    }
                    // Up to the next grid line: straight into the caller's room when
                    // it holds that much, else into the stage.
                    let cell = GRID - (self.decoded % GRID as u64) as usize;
                    let direct = room >= cell;
                    let (consumed, produced, ret) = if direct {
                        let window = &mut out[step.produced..step.produced + cell];
                        let (c, p, ret) = self.call(rest, window);
                        self.count(&window[..p]);
                        step.produced += p;
                        (c, p, ret)
                    } else {
                        let mut stage = std::mem::take(&mut self.stage);
                        stage.resize(GRID, 0);
                        let (c, p, ret) = self.call(rest, &mut stage[..cell]);
                        self.stage = stage;
                        self.staged = (0, p);
                        (c, p, ret)
                    };
                    step.consumed += consumed;
                    self.decoded += produced as u64;
                    if ret < 0 {
                        // Every byte decoded before the damage is handed out, as the
                        // default build does: those of the call's window, then those
                        // ISA-L decoded into its own buffer (or carried over from the
                        // last code) and did not copy out, because the window was full
                        // or the error came first.
                        let held = self.held_back().to_vec();
                        let (from, to) = self.staged;
                        let mut pending = self.stage[from..to].to_vec();
                        pending.extend_from_slice(&held);
                        self.staged = (0, pending.len());
                        self.stage = pending;
                        self.phase = Phase::Damaged;
                        continue;
                    }
                    if self.state.block_state == ffi::isal_block_state_ISAL_BLOCK_FINISH {
                        self.phase = Phase::Ended;
                        continue;
                    }
                    if direct || produced == 0 {
                        return (step, Ok(()));
                    }
                }
                Phase::Ended => {
                    let (bytes, have) = self.read_ahead();
                    self.state.read_in = 0;
                    self.state.read_in_length = 0;
                    self.phase = Phase::Trailer(Trailer::started(bytes, have));
                }
                Phase::Damaged => return (step, Err(invalid("corrupt deflate data"))),
                Phase::Trailer(trailer) => {
                    step.consumed += trailer.read(rest);
                    if !trailer.done() {
                        return (step, Ok(()));
                    }
                    step.end = true;
                    return (step, trailer.check(self.crc.settle(), self.size));
                }
            }
        }
    }
}
