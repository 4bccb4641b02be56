//! The default backend: zlib-rs inflating raw deflate, with the gzip framing (header,
//! CRC-32 and length trailer) read here. zlib-rs is driven directly: its input is the
//! caller's compressed bytes (a memory map for files) and its output the caller's block,
//! so nothing is copied on either side. The CRC of each window is taken by `crc`, on a
//! helper thread once the stream is large, while zlib-rs inflates the next window.
//! The header is read by `header` (fields of any length), the trailer here.

use std::io;

use zlib_rs::{Inflate, InflateError, InflateFlush, Status};

use super::crc::{Crc, Settle};
use super::header::{Header, Trailer};
use super::{Backend, Step, invalid};

/// Inflates gzip members with zlib-rs.
pub struct Zlib {
    inflate: Inflate,
    phase: Phase,
    /// CRC-32 and length (mod 2^32) of the member's output so far.
    crc: Crc,
    size: u32,
}

enum Phase {
    Header(Header),
    Body,
    Trailer(Trailer),
}

impl Zlib {
    pub fn new() -> Zlib {
        Zlib {
            // Raw deflate, 32 KiB window: the gzip framing is read here.
            inflate: Inflate::new(false, 15),
            phase: Phase::Header(Header::default()),
            crc: Crc::new(),
            size: 0,
        }
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

    fn begin(&mut self) {
        self.inflate.reset(false);
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
                    let (in0, out0) = (self.inflate.total_in(), self.inflate.total_out());
                    let window = &mut out[step.produced..];
                    let status = self.inflate.decompress(rest, window, InflateFlush::NoFlush);
                    let consumed = (self.inflate.total_in() - in0) as usize;
                    let produced = (self.inflate.total_out() - out0) as usize;
                    // SAFETY: the reader settles the CRC before its `read` returns (the
                    // guard), and nothing writes these bytes again before that: zlib-rs
                    // only reads back from them, further windows go after them.
                    unsafe { self.crc.update(&window[..produced]) };
                    self.size = self.size.wrapping_add(produced as u32);
                    step.consumed += consumed;
                    step.produced += produced;
                    match status {
                        Ok(Status::StreamEnd) => {
                            self.phase = Phase::Trailer(Trailer::default());
                        }
                        Ok(_) => return (step, Ok(())),
                        Err(InflateError::DataError) => {
                            let why = self.inflate.error_message().unwrap_or("invalid data");
                            let why = why.trim_end_matches('\0');
                            return (step, Err(invalid(&format!("corrupt deflate data: {why}"))));
                        }
                        Err(e) => {
                            return (
                                step,
                                Err(io::Error::other(format!("zlib-rs inflate: {}", e.as_str()))),
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
                    return (step, trailer.check(self.crc.settle(), self.size));
                }
            }
        }
    }
}
