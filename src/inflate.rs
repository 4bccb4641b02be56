//! gzip inflation backends, chosen at build time by measurement.
//!
//! Place in the flow: `source` wraps a gzip input in [`gzip_reader`]; the engine's
//! reading thread pulls decompressed bytes from it. Both backends read any number of
//! concatenated members, check each member's CRC, and report a stream that ends inside
//! a member as [`std::io::ErrorKind::UnexpectedEof`]. Nothing here looks at lines.
//!
//! - default: flate2 with the zlib-rs backend (pure Rust, runtime CPU detection);
//! - feature `isal`: Intel ISA-L's igzip inflate (system `libisal`), about twice as fast
//!   on this machine (see the README's benchmark table).

use std::io::{BufRead, Read};

/// The name of the compiled-in gzip backend, for `--stats`.
pub const BACKEND: &str = if cfg!(feature = "isal") {
    "ISA-L"
} else {
    "zlib-rs"
};

/// A reader of the decompressed bytes of a gzip stream.
pub fn gzip_reader(input: Box<dyn BufRead + Send>) -> Box<dyn Read + Send> {
    #[cfg(feature = "isal")]
    {
        Box::new(isal::GzipReader::new(input))
    }
    #[cfg(not(feature = "isal"))]
    {
        Box::new(flate2::bufread::MultiGzDecoder::new(input))
    }
}

#[cfg(feature = "isal")]
mod isal {
    use std::io::{self, BufRead, Read};

    use isal_sys::igzip_lib as ffi;

    /// Streaming multi-member gzip inflation with ISA-L. Input is taken straight from
    /// the `BufRead`'s buffer, so no compressed byte is copied.
    pub struct GzipReader {
        input: Box<dyn BufRead + Send>,
        // Boxed: the state is large and ISA-L keeps pointers into it.
        state: Box<ffi::inflate_state>,
        /// Inside a member (a header was started and its trailer not yet checked).
        in_member: bool,
        done: bool,
    }

    // SAFETY: the state holds raw pointers only into itself and, during a call, into
    // buffers borrowed for that call; nothing is shared between threads.
    unsafe impl Send for GzipReader {}

    impl GzipReader {
        pub fn new(input: Box<dyn BufRead + Send>) -> GzipReader {
            // SAFETY: inflate_state is a plain C struct; zeroed is a valid start and
            // isal_inflate_init sets every field it needs.
            let mut state: Box<ffi::inflate_state> = Box::new(unsafe { std::mem::zeroed() });
            // SAFETY: `state` points to a live, owned inflate_state.
            unsafe { ffi::isal_inflate_init(&mut *state) };
            state.crc_flag = ffi::ISAL_GZIP;
            GzipReader {
                input,
                state,
                in_member: false,
                done: false,
            }
        }
    }

    fn finished(state: &ffi::inflate_state) -> bool {
        state.block_state == ffi::isal_block_state_ISAL_BLOCK_FINISH
    }

    impl Read for GzipReader {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            if out.is_empty() || self.done {
                return Ok(0);
            }
            loop {
                let available = self.input.fill_buf()?;
                if finished(&self.state) {
                    self.in_member = false;
                    if available.is_empty() {
                        self.done = true;
                        return Ok(0);
                    }
                    // Another member follows.
                    // SAFETY: `state` is a live inflate_state.
                    unsafe { ffi::isal_inflate_reset(&mut *self.state) };
                    self.state.crc_flag = ffi::ISAL_GZIP;
                    continue;
                }
                let eof = available.is_empty();
                if eof && !self.in_member {
                    self.done = true;
                    return Ok(0);
                }
                let in_len = available.len().min(u32::MAX as usize);
                let out_len = out.len().min(u32::MAX as usize);
                self.state.next_in = available.as_ptr() as *mut u8;
                self.state.avail_in = in_len as u32;
                self.state.next_out = out.as_mut_ptr();
                self.state.avail_out = out_len as u32;
                // SAFETY: next_in/avail_in describe `available` (ISA-L only reads it),
                // next_out/avail_out describe `out`; both outlive the call.
                let ret = unsafe { ffi::isal_inflate(&mut *self.state) };
                let consumed = in_len - self.state.avail_in as usize;
                let produced = out_len - self.state.avail_out as usize;
                // The pointers must not outlive the borrowed buffers.
                self.state.next_in = std::ptr::null_mut();
                self.state.avail_in = 0;
                self.state.next_out = std::ptr::null_mut();
                self.state.avail_out = 0;
                self.input.consume(consumed);
                if ret < 0 {
                    self.done = true;
                    let what = match ret {
                        ffi::ISAL_INCORRECT_CHECKSUM => "gzip member checksum mismatch",
                        ffi::ISAL_INVALID_WRAPPER => "not a gzip member (invalid header)",
                        _ => "corrupt deflate data",
                    };
                    return Err(io::Error::new(io::ErrorKind::InvalidData, what));
                }
                self.in_member = true;
                if produced > 0 {
                    return Ok(produced);
                }
                if finished(&self.state) {
                    continue;
                }
                if eof {
                    // Input is over and ISA-L has nothing more buffered: cut mid-member.
                    self.done = true;
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "gzip stream ends inside a member",
                    ));
                }
                if consumed == 0 {
                    // ISA-L takes all input it is given into its own buffer when it
                    // cannot finish a symbol; no progress at all would mean a loop.
                    self.done = true;
                    return Err(io::Error::other("gzip decoder made no progress"));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{self, BufReader, Write};

    fn gz(parts: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for part in parts {
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
            enc.write_all(part).unwrap();
            out.extend(enc.finish().unwrap());
        }
        out
    }

    fn inflate(data: Vec<u8>, buf_size: usize, read_size: usize) -> io::Result<Vec<u8>> {
        let mut r = gzip_reader(Box::new(BufReader::with_capacity(
            buf_size,
            io::Cursor::new(data),
        )));
        let mut out = Vec::new();
        let mut buf = vec![0u8; read_size];
        loop {
            match r.read(&mut buf) {
                Ok(0) => return Ok(out),
                Ok(n) => out.extend_from_slice(&buf[..n]),
                Err(e) => return Err(e),
            }
        }
    }

    fn sample(n: usize) -> Vec<u8> {
        let mut rng = fastrand::Rng::with_seed(n as u64);
        (0..n)
            .map(|i| {
                if i % 97 == 96 {
                    b'\n'
                } else {
                    b'a' + rng.u8(0..6)
                }
            })
            .collect()
    }

    #[test]
    fn members_are_read_whole_whatever_the_buffer_sizes() {
        let (a, b) = (sample(300_000), sample(1234));
        let data = gz(&[&a, b"", &b]);
        let want = [a.clone(), b.clone()].concat();
        for (buf, read) in [(1, 1), (7, 3), (4096, 100), (1 << 20, 1 << 16)] {
            assert_eq!(
                inflate(data.clone(), buf, read).unwrap(),
                want,
                "{buf}/{read}"
            );
        }
    }

    #[test]
    fn a_cut_stream_is_unexpected_eof_after_the_bytes_before_the_cut() {
        let a = sample(200_000);
        let data = gz(&[&a]);
        for cut in [10, data.len() / 2, data.len() - 4] {
            // Small reads from a big input buffer: the decoder holds decoded bytes
            // that must all come out before the cut is reported.
            for (buf, read) in [(1 << 20, 64), (8192, 8192), (3, 1)] {
                let input = BufReader::with_capacity(buf, io::Cursor::new(data[..cut].to_vec()));
                let mut r = gzip_reader(Box::new(input));
                let mut out = Vec::new();
                let mut chunk = vec![0u8; read];
                let err = loop {
                    match r.read(&mut chunk) {
                        Ok(0) => panic!("cut at {cut}: clean end"),
                        Ok(n) => out.extend_from_slice(&chunk[..n]),
                        Err(e) => break e,
                    }
                };
                assert_eq!(
                    err.kind(),
                    io::ErrorKind::UnexpectedEof,
                    "cut at {cut}: {err}"
                );
                assert!(a.starts_with(&out));
                if cut == data.len() - 4 {
                    assert_eq!(
                        out.len(),
                        a.len(),
                        "all data before a cut trailer comes out"
                    );
                }
            }
        }
    }

    #[test]
    fn corrupt_data_is_an_error_not_a_hang() {
        let mut data = gz(&[&sample(50_000)]);
        let mid = data.len() / 2;
        for b in &mut data[mid..mid + 64] {
            *b ^= 0x5a;
        }
        assert!(inflate(data, 4096, 4096).is_err());
    }
}
