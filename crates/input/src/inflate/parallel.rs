//! One large gzip file over several cores: rapidgzip's marker/window method (the
//! `rapidgzip-core` crate, zlib-rs underneath), for a seekable file whose members are
//! large, when cores are idle.
//!
//! The bytes that come out are those of the sequential path, and so is every report:
//! should the parallel decoder fail anywhere (a cut or corrupt stream, zero padding or
//! garbage after the last member), the file is read again by the sequential reader of
//! the build, the bytes already handed out are skipped, and what that reader says from
//! there on (the rest of the bytes, then its error or note) is what the caller gets.
//! A damaged file costs up to twice the time on this path; a sound one, never.
//!
//! Memory: rapidgzip keeps `threads + 2` decoded chunks of [`CHUNK`] in flight plus, per
//! worker, a compressed input page of [`PAGE`] and its decoding state; the README gives
//! the measured peak.

use std::fs::File;
use std::io::{self, Read};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use rapidgzip_core::{Decoder, DecoderReader, ReadAt};

use super::{Notes, Reading};
use crate::Progress;

/// Decoded bytes per chunk handed between rapidgzip's workers and the reader.
pub const CHUNK: usize = 4 << 20;
/// Compressed bytes read at a time, and the spacing of speculative chunk starts
/// (rapidgzip's minimum).
pub const PAGE: usize = 1 << 20;

/// The compressed file, read at offsets by rapidgzip's workers. Bytes count as progress
/// once, however many workers read them.
struct Source {
    file: File,
    len: u64,
    high: AtomicU64,
    progress: Option<Arc<Progress>>,
}

impl ReadAt for Source {
    fn len(&self) -> io::Result<u64> {
        Ok(self.len)
    }

    fn read_at(&self, offset: u64, buffer: &mut [u8]) -> io::Result<usize> {
        let n = ReadAt::read_at(&self.file, offset, buffer)?;
        if let Some(p) = &self.progress {
            let end = offset + n as u64;
            let before = self.high.fetch_max(end, Ordering::Relaxed);
            if end > before {
                p.done.fetch_add(end - before, Ordering::Relaxed);
            }
        }
        Ok(n)
    }
}

/// A reader of the decompressed bytes of a gzip file, inflated by `threads` workers.
/// `sequential` opens the same file for the sequential reader, should it be needed.
pub fn reader(
    file: File,
    threads: usize,
    progress: Option<Arc<Progress>>,
    notes: Notes,
    sequential: Box<dyn Fn(Notes) -> io::Result<Box<dyn Read + Send>> + Send>,
) -> io::Result<Box<dyn Read + Send>> {
    let len = file.metadata()?.len();
    let decoder = Decoder::builder()
        .decoder_threads(threads.max(1))
        .decoded_chunk_size(CHUNK)
        .input_page_size(PAGE)
        .compressed_chunk_size(PAGE)
        .build()
        .map_err(io::Error::other)?;
    let source = Source {
        file,
        len,
        high: AtomicU64::new(0),
        progress,
    };
    let inner = decoder.reader(source).map_err(io::Error::other)?;
    Ok(Box::new(Parallel {
        inner: Some(inner),
        delivered: 0,
        fallback: None,
        sequential,
        notes,
        _reading: Reading::start(),
    }))
}

struct Parallel {
    inner: Option<DecoderReader>,
    /// Bytes handed out so far.
    delivered: u64,
    /// After the parallel decoder failed: the sequential reader, and how many of its
    /// bytes are still to be skipped.
    fallback: Option<(Box<dyn Read + Send>, u64)>,
    sequential: Box<dyn Fn(Notes) -> io::Result<Box<dyn Read + Send>> + Send>,
    notes: Notes,
    _reading: Reading,
}

impl Read for Parallel {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        loop {
            if let Some((reader, skip)) = &mut self.fallback {
                while *skip > 0 {
                    let want = out.len().min(usize::try_from(*skip).unwrap_or(usize::MAX));
                    match reader.read(&mut out[..want]) {
                        // Fewer bytes than the parallel decoder gave: cannot happen
                        // for a decoder that hands out only verified bytes.
                        Ok(0) => {
                            return Err(io::Error::other(
                                "gzip: the parallel and sequential decoders disagree",
                            ));
                        }
                        Ok(n) => *skip -= n as u64,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(e),
                    }
                }
                return reader.read(out);
            }
            let Some(inner) = &mut self.inner else {
                return Ok(0);
            };
            match inner.read(out) {
                Ok(n) => {
                    self.delivered += n as u64;
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    // Let the sequential reader tell exactly what is wrong, and where.
                    self.inner = None;
                    let reader = (self.sequential)(self.notes.clone())?;
                    self.fallback = Some((reader, self.delivered));
                }
            }
        }
    }
}
