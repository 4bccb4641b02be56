//! Zstandard frames decoded as a stream that hands out every byte decoded before damage.
//!
//! Place in the flow: beside `inflate`, between an opened input and `BlockReader`. zstd
//! drops what one call of its decoder wrote when that call fails: the `zstd` crate's
//! reader, decoding a whole read at once, lost up to a whole block of the chunk size, and
//! `zstd -dc` loses the block before the damaged one (its flush completes and the same
//! call goes on into the damaged block). Here each call gets only the input zstd asks for
//! (its hint: the rest of the current block and the next block's header), so one call
//! decodes at most one block (into the caller's buffer when it has room for a block, else
//! into one of the decoder's own), and what it decoded is handed out before the next
//! call: every block before the damaged one is recovered, whatever the reader's buffers
//! or the chunk size. Each frame's start is a seek point (`crate::seek`): a decoder made
//! there reads the frames from it on. Nothing here parses a record.

use std::io::{self, BufRead, Read};

use zstd::zstd_safe::{DCtx, InBuffer, OutBuffer};

use crate::failed::Failed;

/// A zstd stream (any number of frames, skippable ones included) read as its decoded
/// bytes.
pub(crate) struct Decoder<R> {
    inner: R,
    dctx: DCtx<'static>,
    out: Box<[u8]>,
    /// Decoded bytes in `out` not yet handed out: `out[at..filled]`.
    at: usize,
    filled: usize,
    /// zstd's hint after the last call: how much input the next one should get (the rest
    /// of the block and the next header); 0 when the last frame was complete.
    hint: usize,
    /// Whether any frame was started.
    started: bool,
    /// Set once the stream failed: later reads fail the same way rather than go on
    /// decoding with a decoder in an unknown state.
    failed: Option<Failed>,
    /// Where frame starts are noted, with the compressed bytes consumed and the
    /// decompressed bytes decoded so far.
    seeks: Option<crate::seek::Seeks>,
    pos: (u64, u64),
}

impl<R: BufRead> Decoder<R> {
    /// A decoder over `inner` (positioned at the first frame).
    pub(crate) fn new(inner: R) -> Decoder<R> {
        Decoder {
            inner,
            dctx: DCtx::create(),
            out: vec![0; DCtx::out_size()].into_boxed_slice(),
            at: 0,
            filled: 0,
            hint: 0,
            started: false,
            failed: None,
            seeks: None,
            pos: (0, 0),
        }
    }

    /// Notes each frame's start into `seeks` (when a point is due there).
    pub(crate) fn noting(mut self, seeks: Option<crate::seek::Seeks>) -> Decoder<R> {
        self.seeks = seeks;
        self
    }

    fn fail(&mut self, kind: io::ErrorKind, message: String) -> io::Error {
        let failed = Failed::new(io::Error::new(kind, message));
        let error = failed.error();
        self.failed = Some(failed);
        error
    }

    /// Decodes the next piece into the decoder's own buffer; leaves it empty at the end
    /// of the stream.
    fn refill(&mut self) -> io::Result<()> {
        let mut out = std::mem::take(&mut self.out);
        let written = self.decode(&mut out);
        self.out = out;
        self.at = 0;
        self.filled = written?;
        Ok(())
    }

    /// Decodes the next piece (at most one block: the input is what zstd asks for) into
    /// `out`; 0 at the end of the stream.
    fn decode(&mut self, out: &mut [u8]) -> io::Result<usize> {
        loop {
            let input = self.inner.fill_buf()?;
            let eof = input.is_empty();
            // At a frame's start the hint is 0: a byte at a time until zstd knows the
            // header's size.
            let input = &input[..input.len().min(self.hint.max(1))];
            if self.hint == 0
                && !input.is_empty()
                && let Some(seeks) = &self.seeks
            {
                // Between frames: the next byte starts one.
                seeks.start(self.pos.1, self.pos.0);
            }
            let mut src = InBuffer::around(input);
            let mut dst = OutBuffer::around(&mut *out);
            let result = self.dctx.decompress_stream(&mut dst, &mut src);
            let (read, written) = (src.pos(), dst.pos());
            self.inner.consume(read);
            self.pos.0 += read as u64;
            self.pos.1 += written as u64;
            self.started |= read > 0;
            match result {
                Err(code) => {
                    let name = zstd::zstd_safe::get_error_name(code);
                    return Err(self.fail(
                        io::ErrorKind::InvalidData,
                        format!("zstd data is damaged: {name}"),
                    ));
                }
                // Asked for more at the very end, zstd says what a next frame's header
                // would need: the hint that counts is the one of the last progress.
                Ok(hint) if read > 0 || written > 0 => self.hint = hint,
                Ok(_) => {}
            }
            if written > 0 {
                return Ok(written);
            }
            if eof {
                if self.started && self.hint != 0 {
                    return Err(self.fail(
                        io::ErrorKind::UnexpectedEof,
                        "zstd stream ends inside a frame".to_string(),
                    ));
                }
                return Ok(0);
            }
            if read == 0 {
                // Input there, room for output, and zstd took none of it: it never
                // will (a guard against a loop that would spin forever).
                return Err(self.fail(
                    io::ErrorKind::InvalidData,
                    "zstd decoder made no progress".to_string(),
                ));
            }
        }
    }
}

impl<R: BufRead> Read for Decoder<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(failed) = &self.failed {
            return Err(failed.error());
        }
        if buf.is_empty() {
            return Ok(0);
        }
        if self.at == self.filled {
            if buf.len() >= self.out.len() {
                // Room for a whole block: decoded in place, no copy.
                return self.decode(buf);
            }
            self.refill()?;
        }
        let n = buf.len().min(self.filled - self.at);
        buf[..n].copy_from_slice(&self.out[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the decoder hands out before it fails, read through `step`-byte reads.
    fn recovered(data: &[u8], step: usize) -> (Vec<u8>, Option<io::ErrorKind>) {
        let mut d = Decoder::new(io::BufReader::with_capacity(7919, data));
        let mut out = Vec::new();
        let mut buf = vec![0; step];
        loop {
            match d.read(&mut buf) {
                Ok(0) => return (out, None),
                Ok(n) => out.extend_from_slice(&buf[..n]),
                Err(e) => return (out, Some(e.kind())),
            }
        }
    }

    fn lines(n: usize) -> Vec<u8> {
        (0..n)
            .map(|i| format!("{{\"n\":{i},\"pad\":\"{}\"}}\n", i * 7919 % 104_729))
            .collect::<String>()
            .into_bytes()
    }

    #[test]
    fn whole_streams_and_concatenated_frames_decode_whole() {
        let a = lines(50_000);
        let b = lines(3);
        let mut z = zstd::encode_all(&a[..], 3).unwrap();
        z.extend(zstd::encode_all(&b[..], 19).unwrap());
        for step in [1, 1000, 1 << 20] {
            let (out, err) = recovered(&z, step);
            assert_eq!(err, None);
            assert_eq!(out.len(), a.len() + b.len());
            assert!(out == [&a[..], &b[..]].concat());
        }
    }

    #[test]
    fn a_cut_stream_is_an_early_end_after_every_whole_block() {
        let a = lines(50_000);
        let z = zstd::encode_all(&a[..], 3).unwrap();
        let (out, err) = recovered(&z[..z.len() / 2], 4 << 20);
        assert_eq!(err, Some(io::ErrorKind::UnexpectedEof));
        assert!(a.starts_with(&out));
        assert!(out.len() >= a.len() / 2 - (128 << 10), "{}", out.len());
    }

    #[test]
    fn zstd_damage_loses_nothing_decoded_before_it_whatever_the_read_size() {
        // Regression: the zstd crate's reader dropped what one read decoded when the
        // read failed, so a file with 64 zeroed bytes gave less than `zstd -dc` and a
        // different amount for each chunk size.
        let a = lines(200_000);
        let mut z = zstd::encode_all(&a[..], 3).unwrap();
        let at = z.len() * 3 / 10;
        z[at..at + 64].fill(0);
        let (first, err) = recovered(&z, 1);
        assert!(err.is_some());
        assert!(a.starts_with(&first));
        // Every whole block before the damage: at least the blocks whose compressed
        // bytes all lie before it (the damage is at 30 %).
        assert!(first.len() > a.len() / 5, "{} of {}", first.len(), a.len());
        for step in [4096, 65_536, 1 << 20, 4 << 20, 16 << 20] {
            let (out, err) = recovered(&z, step);
            assert!(err.is_some());
            assert_eq!(out.len(), first.len(), "read size {step}");
        }
    }
}
