//! The `isal` backend: Intel ISA-L's igzip inflate (system `libisal`) on raw deflate,
//! with the gzip framing read here as in the default build: the header by `header`
//! (ISA-L's own header reader fails on fields split over calls), the trailer here, and
//! the CRC-32 of each output window by `crc`, on a helper thread once the stream is
//! large, while ISA-L inflates the next window. Input is taken straight from the
//! caller's compressed bytes and output written straight into the caller's block.
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

/// Inflates gzip members with ISA-L.
pub struct Isal {
    // Boxed: the state is large and ISA-L keeps pointers into it.
    state: Box<ffi::inflate_state>,
    phase: Phase,
    /// CRC-32 and length (mod 2^32) of the member's output so far.
    crc: Crc,
    size: u32,
}

enum Phase {
    Header(Header),
    Body,
    Trailer(Trailer),
    /// The deflate data was found corrupt: `left[at..]` are bytes decoded before the
    /// damage still to be handed out, then the error.
    Damaged {
        left: Vec<u8>,
        at: usize,
    },
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
    /// caller's window: they wait in its internal output buffer, from
    /// `tmp_out_processed` to `tmp_out_valid` (it drops them from its count, not from
    /// the buffer).
    fn undelivered(&self) -> Vec<u8> {
        let buf = &self.state.tmp_out_buffer;
        let end = (self.state.tmp_out_valid.max(0) as usize).min(buf.len());
        let start = (self.state.tmp_out_processed.max(0) as usize).min(end);
        buf[start..end].to_vec()
    }
}

impl Backend for Isal {
    type Guard = Settle;

    /// Output bytes per ISA-L call: each call copies its last 32 KiB into ISA-L's
    /// history buffer, and the CRC helper takes one hand-off per window.
    const WINDOW: usize = 1 << 20;

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
    }

    fn step(&mut self, input: &[u8], out: &mut [u8]) -> (Step, io::Result<()>) {
        let mut step = Step::default();
        loop {
            let rest = &input[step.consumed..];
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
                    let window = &mut out[step.produced..];
                    let in_len = rest.len().min(u32::MAX as usize);
                    let out_len = window.len().min(u32::MAX as usize);
                    self.state.next_in = rest.as_ptr() as *mut u8;
                    self.state.avail_in = in_len as u32;
                    self.state.next_out = window.as_mut_ptr();
                    self.state.avail_out = out_len as u32;
                    // SAFETY: next_in/avail_in describe `rest` (ISA-L only reads it),
                    // next_out/avail_out describe `window`; both outlive the call.
                    let ret = unsafe { ffi::isal_inflate(&mut *self.state) };
                    let consumed = in_len - self.state.avail_in as usize;
                    let produced = out_len - self.state.avail_out as usize;
                    // The pointers must not outlive the borrowed buffers.
                    self.state.next_in = std::ptr::null_mut();
                    self.state.avail_in = 0;
                    self.state.next_out = std::ptr::null_mut();
                    self.state.avail_out = 0;
                    // SAFETY: the reader settles the CRC before its `read` returns (the
                    // guard), and nothing writes these bytes again before that: ISA-L
                    // only reads back from them, further windows go after them.
                    unsafe { self.crc.update(&window[..produced]) };
                    self.size = self.size.wrapping_add(produced as u32);
                    step.consumed += consumed;
                    step.produced += produced;
                    if ret < 0 {
                        // Every byte decoded before the damage is handed out, as the
                        // default build does, whatever the output windows were: those
                        // ISA-L wrote into `window`, then those it decoded into its own
                        // buffer (or carried over from the last symbol) and did not copy
                        // out, because the window was full or the error came first.
                        let left = self.undelivered();
                        self.phase = Phase::Damaged { left, at: 0 };
                        continue;
                    }
                    if self.state.block_state != ffi::isal_block_state_ISAL_BLOCK_FINISH {
                        return (step, Ok(()));
                    }
                    let (bytes, have) = self.read_ahead();
                    self.state.read_in = 0;
                    self.state.read_in_length = 0;
                    self.phase = Phase::Trailer(Trailer::started(bytes, have));
                }
                Phase::Trailer(trailer) => {
                    step.consumed += trailer.read(rest);
                    if !trailer.done() {
                        return (step, Ok(()));
                    }
                    step.end = true;
                    return (step, trailer.check(self.crc.settle(), self.size));
                }
                Phase::Damaged { left, at } => {
                    let window = &mut out[step.produced..];
                    let n = window.len().min(left.len() - *at);
                    window[..n].copy_from_slice(&left[*at..*at + n]);
                    *at += n;
                    step.produced += n;
                    if *at < left.len() {
                        return (step, Ok(()));
                    }
                    // Ended again at once if read again; the reader stops here.
                    *left = Vec::new();
                    *at = 0;
                    return (step, Err(invalid("corrupt deflate data")));
                }
            }
        }
    }
}
