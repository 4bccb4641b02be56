//! The default backend: zlib-rs inflating raw deflate, with the gzip framing (header,
//! CRC-32 and length trailer) read here. zlib-rs is driven directly through its C API
//! (`libz-rs-sys`): its input is the caller's compressed bytes (a memory map for files)
//! and its output the caller's block, so nothing is copied on either side. The CRC of
//! each window is taken by `crc`, on a helper thread once the stream is large, while
//! zlib-rs inflates the next window. The header is read by `header` (fields of any
//! length), the trailer here.
//!
//! Seek points (`crate::seek`): when one is due, inflate runs with `Z_BLOCK` until it
//! stops at a deflate block boundary, and the point (the bit position, the 32 KiB
//! window) is noted there. A member resumed at such a point ([`Zlib::resume`]) starts
//! with the bits and the window, and its trailer's CRC and length are not checked (the
//! output before the point was not seen).

use std::io;

use libz_rs_sys::{
    Z_BLOCK, Z_DATA_ERROR, Z_NO_FLUSH, Z_OK, Z_STREAM_END, inflate, inflateEnd,
    inflateGetDictionary, inflateInit2_, inflatePrime, inflateReset, inflateSetDictionary,
    z_stream, zlibVersion,
};

use super::crc::{Crc, Settle};
use super::header::{Header, Trailer};
use super::{Backend, Step, invalid};
use crate::seek::{Seeks, WINDOW};

/// Inflates gzip members with zlib-rs.
pub struct Zlib {
    // Boxed: zlib-rs's state points back at the stream.
    strm: Box<z_stream>,
    phase: Phase,
    /// CRC-32 and length (mod 2^32) of the member's output so far.
    crc: Crc,
    size: u32,
    /// Where points are noted, and where this member's deflate data starts in the
    /// stream (compressed offset, decompressed offset).
    seeks: Option<Seeks>,
    body_at: (u64, u64),
    /// The member was resumed part-way: its trailer is not checked.
    resumed: bool,
}

// SAFETY: the stream holds raw pointers only into zlib-rs's own allocation and, during
// a call, into buffers borrowed for that call; nothing is shared between threads.
unsafe impl Send for Zlib {}

enum Phase {
    Header(Header),
    Body,
    Trailer(Trailer),
}

impl Zlib {
    /// A backend noting seek points into `seeks`, if given.
    pub fn new(seeks: Option<Seeks>) -> Zlib {
        let mut strm = Box::<z_stream>::default();
        // SAFETY: `strm` is a default z_stream (allocator set), initialized here once;
        // the version and size are this library's own.
        let ret = unsafe {
            inflateInit2_(
                &mut *strm,
                -15,
                zlibVersion(),
                std::mem::size_of::<z_stream>() as i32,
            )
        };
        // Raw deflate, 32 KiB window: initialization fails only without memory.
        assert_eq!(ret, Z_OK, "zlib-rs inflateInit2 failed");
        Zlib {
            strm,
            phase: Phase::Header(Header::default()),
            crc: Crc::new(),
            size: 0,
            seeks,
            body_at: (0, 0),
            resumed: false,
        }
    }

    /// A backend inside a member's deflate data at a block boundary: the next block
    /// starts with the low `bits` of `prime` (the high bits of the byte before the
    /// input), and may refer back to `window`.
    pub fn resume(bits: u8, prime: u8, window: &[u8]) -> io::Result<Zlib> {
        let mut z = Zlib::new(None);
        let window = &window[window.len().saturating_sub(WINDOW)..];
        // SAFETY: the stream was initialized by `new`; `window` outlives the call.
        let ok = unsafe {
            inflateReset(&mut *z.strm) == Z_OK
                && (bits == 0
                    || inflatePrime(&mut *z.strm, i32::from(bits), i32::from(prime)) == Z_OK)
                && inflateSetDictionary(&mut *z.strm, window.as_ptr(), window.len() as u32) == Z_OK
        };
        if !ok {
            return Err(invalid("cannot resume deflate data at a seek point"));
        }
        z.phase = Phase::Body;
        z.resumed = true;
        Ok(z)
    }

    /// At a block boundary where a point is due: notes it.
    fn note_point(&mut self, seeks: &Seeks) {
        let mut window = vec![0u8; WINDOW];
        let mut len: u32 = 0;
        // SAFETY: `window` has room for 32 KiB, the most a raw 15-bit stream keeps.
        let ret = unsafe { inflateGetDictionary(&*self.strm, window.as_mut_ptr(), &mut len) };
        if ret != Z_OK {
            return;
        }
        window.truncate(len as usize);
        // The bits zlib-rs holds unused are the last ones of the bytes it took: the
        // next block starts that many bits before the end of what was consumed.
        let unused = (self.strm.data_type & 63) as u64;
        let Some(input) = (self.body_at.0 + self.strm.total_in).checked_sub(unused / 8) else {
            return;
        };
        seeks.block(
            self.body_at.1 + self.strm.total_out,
            input,
            (unused % 8) as u8,
            &window,
        );
    }
}

impl Drop for Zlib {
    fn drop(&mut self) {
        // SAFETY: the stream was initialized in `new` and is ended once.
        unsafe { inflateEnd(&mut *self.strm) };
    }
}

impl Backend for Zlib {
    type Guard = Settle;

    /// Output bytes per zlib-rs call: each call copies its last 32 KiB into zlib-rs's
    /// window, and the CRC helper takes one hand-off per window.
    const WINDOW: usize = 1 << 20;

    fn guard(&self) -> Settle {
        self.crc.guard()
    }

    fn begin(&mut self, at: (u64, u64)) {
        // SAFETY: the stream was initialized in `new`.
        unsafe { inflateReset(&mut *self.strm) };
        self.phase = Phase::Header(Header::default());
        self.crc.reset();
        self.size = 0;
        self.body_at = at;
        self.resumed = false;
    }

    fn step(&mut self, input: &[u8], out: &mut [u8]) -> (Step, io::Result<()>) {
        let mut step = Step::default();
        loop {
            let rest = &input[step.consumed..];
            match &mut self.phase {
                Phase::Header(header) => match header.read(rest) {
                    Ok(n) => {
                        step.consumed += n;
                        self.body_at.0 += n as u64;
                        if !header.done() {
                            return (step, Ok(()));
                        }
                        self.phase = Phase::Body;
                    }
                    Err(e) => return (step, Err(e)),
                },
                Phase::Body => {
                    let window = &mut out[step.produced..];
                    let seeks = self.seeks.clone();
                    let due = seeks
                        .as_ref()
                        .is_some_and(|s| s.due(self.body_at.1 + self.strm.total_out));
                    let in_len = rest.len().min(u32::MAX as usize);
                    let out_len = window.len().min(u32::MAX as usize);
                    self.strm.next_in = rest.as_ptr();
                    self.strm.avail_in = in_len as u32;
                    self.strm.next_out = window.as_mut_ptr();
                    self.strm.avail_out = out_len as u32;
                    let flush = if due { Z_BLOCK } else { Z_NO_FLUSH };
                    // SAFETY: next_in/avail_in describe `rest` (only read), next_out/
                    // avail_out describe `window`; both outlive the call.
                    let ret = unsafe { inflate(&mut *self.strm, flush) };
                    let consumed = in_len - self.strm.avail_in as usize;
                    let produced = out_len - self.strm.avail_out as usize;
                    // The pointers must not outlive the borrowed buffers.
                    self.strm.next_in = std::ptr::null();
                    self.strm.avail_in = 0;
                    self.strm.next_out = std::ptr::null_mut();
                    self.strm.avail_out = 0;
                    // SAFETY: the reader settles the CRC before its `read` returns (the
                    // guard), and nothing writes these bytes again before that: zlib-rs
                    // only reads back from them, further windows go after them.
                    unsafe { self.crc.update(&window[..produced]) };
                    self.size = self.size.wrapping_add(produced as u32);
                    step.consumed += consumed;
                    step.produced += produced;
                    match ret {
                        Z_STREAM_END => {
                            self.phase = Phase::Trailer(Trailer::default());
                        }
                        // A block boundary (bit 7), not after the last block (bit 6).
                        Z_OK if due && self.strm.data_type & 0xc0 == 0x80 => {
                            if let Some(s) = &seeks {
                                self.note_point(s);
                            }
                            return (step, Ok(()));
                        }
                        // Z_BUF_ERROR: no progress possible with this input (the caller
                        // tells an early end from a stall).
                        ret if ret == Z_OK || ret == libz_rs_sys::Z_BUF_ERROR => {
                            return (step, Ok(()));
                        }
                        Z_DATA_ERROR => {
                            let why = if self.strm.msg.is_null() {
                                "invalid data".to_string()
                            } else {
                                // SAFETY: zlib-rs's messages are static NUL-ended strings.
                                unsafe { std::ffi::CStr::from_ptr(self.strm.msg) }
                                    .to_string_lossy()
                                    .into_owned()
                            };
                            return (step, Err(invalid(&format!("corrupt deflate data: {why}"))));
                        }
                        other => {
                            return (
                                step,
                                Err(io::Error::other(format!("zlib-rs inflate: error {other}"))),
                            );
                        }
                    }
                }
                Phase::Trailer(trailer) => {
                    step.consumed += trailer.read(rest);
                    if !trailer.done() {
                        return (step, Ok(()));
                    }
                    step.end = true;
                    let crc = self.crc.settle();
                    if self.resumed {
                        return (step, Ok(()));
                    }
                    return (step, trailer.check(crc, self.size));
                }
            }
        }
    }
}
