//! gzip inflation: the framing of a stream of members, and the backends that inflate
//! them, chosen at build time by measurement.
//!
//! Place in the flow: `source` wraps a gzip input in [`gzip_reader`]; the engine's
//! reading thread pulls decompressed bytes from it straight into the blocks the scanner
//! reads. Any number of concatenated members are read, each member's CRC and length
//! checked; a stream that ends inside a member is [`std::io::ErrorKind::UnexpectedEof`]
//! after every byte before the cut came out. Zero bytes after the last member (tape and
//! `dd` padding) end the stream with a note, as `gzip -d` warns; other bytes there are
//! an error. Nothing here looks at lines.
//!
//! - default: zlib-rs, driven directly on raw deflate with the gzip framing read here
//!   (`zlib`): no buffer between the compressed bytes and the inflater, no copy of its
//!   output, the CRC taken over each window while it is in cache;
//! - feature `isal`: Intel ISA-L's igzip inflate (system `libisal`) on raw deflate, with
//!   the same framing and CRC helper (`isal`), faster still on this machine (see the
//!   README's benchmark table).
//!
//! Seek points (`crate::seek`): every member start is one (when due); inside a member the
//! default build notes deflate block boundaries with their window (`zlib`), the `isal`
//! build none (ISA-L does not stop at block boundaries). A member resumed at a block
//! boundary is always inflated by zlib-rs ([`resume_member`]).

use std::io::{self, BufRead, Read};
use std::sync::{Arc, Mutex};

use crate::seek::Seeks;

mod crc;
mod header;
#[cfg(feature = "isal")]
mod isal;
pub mod parallel;
mod zlib;

/// The name of the compiled-in gzip backend, for `--stats`.
pub const BACKEND: &str = if cfg!(feature = "isal") {
    "ISA-L"
} else {
    "zlib-rs"
};

/// Things said about a stream that are not errors (zero padding after the last member),
/// to be read once the stream has been read to its end. Cloned handles share one list.
#[derive(Clone, Debug, Default)]
pub struct Notes(Arc<Mutex<Vec<String>>>);

impl Notes {
    /// Adds a note.
    pub fn push(&self, note: String) {
        // A poisoned lock only means another thread panicked mid-push; the list is fine.
        self.0.lock().unwrap_or_else(|e| e.into_inner()).push(note);
    }

    /// Takes the notes so far, joined with "; ", or `None` when there are none.
    pub fn take(&self) -> Option<String> {
        let notes = std::mem::take(&mut *self.0.lock().unwrap_or_else(|e| e.into_inner()));
        (!notes.is_empty()).then(|| notes.join("; "))
    }
}

/// A reader of the decompressed bytes of a gzip stream, inflated with the compiled-in
/// backend. `input` should hand out large slices (a memory map, or a large buffer):
/// each is given to the inflater as it is.
pub fn gzip_reader(input: Box<dyn BufRead + Send>, notes: Notes) -> Box<dyn Read + Send> {
    gzip_reader_noting(input, notes, None)
}

/// [`gzip_reader`], noting seek points into `seeks` as it inflates (positions from the
/// input's first byte).
pub fn gzip_reader_noting(
    input: Box<dyn BufRead + Send>,
    notes: Notes,
    seeks: Option<Seeks>,
) -> Box<dyn Read + Send> {
    #[cfg(feature = "isal")]
    {
        Box::new(GzipReader::new(input, isal::Isal::new(), notes, seeks))
    }
    #[cfg(not(feature = "isal"))]
    {
        let backend = zlib::Zlib::new(seeks.clone());
        Box::new(GzipReader::new(input, backend, notes, seeks))
    }
}

/// A reader of a gzip stream resumed inside a member at a deflate block boundary:
/// `input` starts at the byte after the one whose high `bits` bits (`prime`, shifted
/// down) begin the next block, `window` is the output before the boundary. The
/// resumed member's trailer is read but not checked; later members are read and
/// checked as usual. Always zlib-rs, whatever the build.
pub fn resume_member(
    input: Box<dyn BufRead + Send>,
    bits: u8,
    prime: u8,
    window: &[u8],
) -> io::Result<Box<dyn Read + Send>> {
    let backend = zlib::Zlib::resume(bits, prime, window)?;
    let mut reader = GzipReader::new(input, backend, Notes::default(), None);
    reader.state = State::Member;
    Ok(Box::new(reader))
}

/// How a large gzip file is read, from the environment variable
/// `UALHUNT_GZIP_PARALLEL`: `auto` (the default: in parallel when it is large and cores
/// are idle, see [`parallel_workers`]), `always` (every gzip file that can be, however small: the test mode that
/// checks the parallel path gives the same reports), or `never`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParallelMode {
    /// In parallel when the file is large and cores are idle.
    Auto,
    /// In parallel whenever the input is a seekable file.
    Always,
    /// Never in parallel.
    Never,
}

impl ParallelMode {
    /// The mode the environment asks for (read once).
    pub fn from_env() -> ParallelMode {
        static MODE: std::sync::OnceLock<ParallelMode> = std::sync::OnceLock::new();
        *MODE.get_or_init(|| match std::env::var("UALHUNT_GZIP_PARALLEL").as_deref() {
            Ok("always") => ParallelMode::Always,
            Ok("never") => ParallelMode::Never,
            _ => ParallelMode::Auto,
        })
    }
}

/// Compressed size from which a gzip file is inflated in parallel (mode `auto`): below
/// it, starting the workers costs more than they save.
pub const PARALLEL_MIN: u64 = 32 << 20;

/// Idle threads from which mode `auto` inflates one file in parallel. Measured on the
/// 2-core development VM, the parallel path with 2 workers took 1.6× igzip's time where
/// the sequential one took 1.3× (the speculative decoding costs more than a second core
/// gives back), so two cores are not enough; rapidgzip pays on many cores.
pub const PARALLEL_MIN_IDLE: usize = 3;

/// gzip streams being read right now, on every thread.
static STREAMS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Counts a gzip stream as being read while it lives.
struct Reading;

impl Reading {
    fn start() -> Reading {
        STREAMS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Reading
    }
}

impl Drop for Reading {
    fn drop(&mut self) {
        STREAMS.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// How many workers should inflate a seekable gzip file of `len` compressed bytes, or
/// `None` for the sequential path: in mode `auto`, a file of at least [`PARALLEL_MIN`]
/// gets the scan's threads that no other gzip stream is reading and that the machine's
/// load average leaves idle, when that is at least [`PARALLEL_MIN_IDLE`].
pub fn parallel_workers(len: u64) -> Option<usize> {
    // Called on the scan's pool: its size is the thread count the user asked for.
    let threads = rayon::current_num_threads();
    match ParallelMode::from_env() {
        ParallelMode::Never => None,
        ParallelMode::Always => Some(threads.max(2)),
        ParallelMode::Auto => {
            let ours = threads.saturating_sub(STREAMS.load(std::sync::atomic::Ordering::Relaxed));
            // Cores other processes keep busy are not idle: on a loaded machine the
            // speculative work of the parallel decoder only slows the scan down.
            let cores = std::thread::available_parallelism().map_or(threads, |n| n.get());
            let idle = ours.min(cores.saturating_sub(busy_cores()));
            (len >= PARALLEL_MIN && idle >= PARALLEL_MIN_IDLE).then_some(idle)
        }
    }
}

/// Cores kept busy by the whole machine lately: the one-minute load average, rounded
/// down (0 where it cannot be read).
fn busy_cores() -> usize {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(0, |load| load.max(0.0) as usize)
}

/// What one backend call did.
#[derive(Debug, Default)]
struct Step {
    /// Input bytes consumed.
    consumed: usize,
    /// Output bytes written (all valid, even when the call failed).
    produced: usize,
    /// The member's trailer was read (and, unless the call failed, checked).
    end: bool,
}

/// An inflater of gzip members, one after another.
trait Backend: Send {
    /// Held while a `read` runs; dropped, it waits for any work the backend handed to
    /// another thread over the caller's buffer.
    type Guard;
    /// Output bytes one call writes at most (the caller's block may be far larger).
    const WINDOW: usize;
    /// The guard for one `read`.
    fn guard(&self) -> Self::Guard;
    /// Gets ready for a member whose first byte is the next input byte, `at`
    /// (compressed, decompressed) bytes into the stream.
    fn begin(&mut self, at: (u64, u64));
    /// Inflates what it can of `input` into `out`: header, deflate body and trailer.
    fn step(&mut self, input: &[u8], out: &mut [u8]) -> (Step, io::Result<()>);
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Between members (`first`: before the first one).
    Boundary {
        first: bool,
    },
    /// Inside a member.
    Member,
    Done,
}

/// Streaming multi-member gzip inflation over a [`Backend`].
struct GzipReader<B> {
    input: Box<dyn BufRead + Send>,
    backend: B,
    state: State,
    /// An error met after some bytes of a read were produced: returned by the next read.
    pending: Option<io::Error>,
    notes: Notes,
    /// Where member starts are noted as seek points.
    seeks: Option<Seeks>,
    /// Compressed bytes consumed and decompressed bytes produced so far.
    at: (u64, u64),
    _reading: Reading,
}

impl<B: Backend> GzipReader<B> {
    fn new(
        input: Box<dyn BufRead + Send>,
        backend: B,
        notes: Notes,
        seeks: Option<Seeks>,
    ) -> GzipReader<B> {
        GzipReader {
            input,
            backend,
            state: State::Boundary { first: true },
            pending: None,
            notes,
            seeks,
            at: (0, 0),
            _reading: Reading::start(),
        }
    }

    /// Reads zero padding after the last member to the end of the input: its length,
    /// or an error when something else follows it.
    fn skip_zeros(&mut self) -> io::Result<u64> {
        let mut zeros = 0u64;
        loop {
            let buf = self.input.fill_buf()?;
            if buf.is_empty() {
                return Ok(zeros);
            }
            let (n, other) = match buf.iter().position(|&b| b != 0) {
                Some(i) => (i, true),
                None => (buf.len(), false),
            };
            self.input.consume(n);
            zeros += n as u64;
            if other {
                return Err(invalid(&format!(
                    "trailing garbage after the last gzip member (after {zeros} zero bytes)"
                )));
            }
        }
    }

    /// One turn of the loop: what happens next.
    fn advance(&mut self, out: &mut [u8]) -> io::Result<usize> {
        match self.state {
            State::Done => Ok(0),
            State::Boundary { first } => {
                let input = self.input.fill_buf()?;
                match input.first() {
                    None => self.state = State::Done,
                    Some(&b) if first || b == 0x1f => {
                        if let Some(seeks) = &self.seeks {
                            seeks.start(self.at.1, self.at.0);
                        }
                        self.backend.begin(self.at);
                        self.state = State::Member;
                    }
                    Some(0) => {
                        let zeros = self.skip_zeros()?;
                        self.notes.push(format!(
                            "decompression OK, trailing zero bytes ignored ({zeros} bytes of \
                             zero padding after the last gzip member)"
                        ));
                        self.state = State::Done;
                    }
                    Some(_) => return Err(invalid("trailing garbage after the last gzip member")),
                }
                Ok(0)
            }
            State::Member => {
                let input = self.input.fill_buf()?;
                let eof = input.is_empty();
                let room = out.len().min(B::WINDOW);
                let (step, result) = self.backend.step(input, &mut out[..room]);
                self.input.consume(step.consumed);
                self.at.0 += step.consumed as u64;
                self.at.1 += step.produced as u64;
                if step.end {
                    self.state = State::Boundary { first: false };
                }
                if let Err(e) = result {
                    if step.produced > 0 {
                        // Deliver the valid bytes before the error; the error comes next.
                        self.pending = Some(e);
                        self.state = State::Done;
                        return Ok(step.produced);
                    }
                    return Err(e);
                }
                if step.consumed == 0 && step.produced == 0 && !step.end {
                    return Err(if eof {
                        io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "gzip stream ends inside a member",
                        )
                    } else {
                        // Backends take all the input they are given, or make output.
                        io::Error::other("gzip decoder made no progress")
                    });
                }
                Ok(step.produced)
            }
        }
    }
}

impl<B: Backend> Read for GzipReader<B> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if let Some(e) = self.pending.take() {
            return Err(e);
        }
        // Dropped last: whatever another thread still reads of `out` is done before
        // the borrow ends.
        let _settle = self.backend.guard();
        let (base, len) = (out.as_mut_ptr(), out.len());
        let mut produced = 0;
        while produced < len && self.state != State::Done {
            // SAFETY: `produced <= len`, inside `out`. The bytes before `produced`
            // (which a CRC helper may be reading) are not part of this slice: it is
            // taken from the raw pointer, not by reborrowing all of `out`.
            let rest =
                unsafe { std::slice::from_raw_parts_mut(base.add(produced), len - produced) };
            match self.advance(rest) {
                Ok(n) => produced += n,
                Err(e) => {
                    self.state = State::Done;
                    if produced == 0 {
                        return Err(e);
                    }
                    // The bytes before the error come out first.
                    self.pending = Some(e);
                    break;
                }
            }
        }
        Ok(produced)
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
        let mut r = gzip_reader(
            Box::new(BufReader::with_capacity(buf_size, io::Cursor::new(data))),
            Notes::default(),
        );
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
                let mut r = gzip_reader(Box::new(input), Notes::default());
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

    /// A gzip member with every optional header field, the given comment, and FHCRC.
    fn member_with_fields(data: &[u8], extra: usize, comment: usize) -> Vec<u8> {
        let mut deflated =
            flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::new(6));
        deflated.write_all(data).unwrap();
        let body = deflated.finish().unwrap();
        let mut header = vec![0x1f, 0x8b, 8, 0b0001_1110, 0, 0, 0, 0, 0, 255];
        let extra = extra.min(u16::MAX as usize);
        header.extend((extra as u16).to_le_bytes());
        header.extend(std::iter::repeat_n(b'x', extra));
        header.extend(b"name.jsonl\0");
        header.extend(std::iter::repeat_n(b'c', comment));
        header.push(0);
        let hcrc = zlib_rs::crc32::crc32(0, &header) as u16;
        header.extend(hcrc.to_le_bytes());
        let mut crc = flate2::Crc::new();
        crc.update(data);
        [
            header,
            body,
            crc.sum().to_le_bytes().to_vec(),
            (data.len() as u32).to_le_bytes().to_vec(),
        ]
        .concat()
    }

    #[test]
    fn header_fields_of_any_length_are_skipped() {
        // Regression (issue 13): flate2 refused a header field over 64 KiB; gzip reads it.
        let data = sample(100_000);
        for (extra, comment) in [(0, 0), (65_535, 3 << 20), (10, 70_000)] {
            let gz = member_with_fields(&data, extra, comment);
            let two = [gz.clone(), gz].concat();
            for (buf, read) in [(1 << 20, 1 << 16), (4096, 1000), (7, 5)] {
                let out = inflate(two.clone(), buf, read).unwrap();
                assert_eq!(
                    out,
                    [data.clone(), data.clone()].concat(),
                    "{extra}/{comment}"
                );
            }
        }
    }

    #[test]
    fn a_bad_header_checksum_is_an_error() {
        let mut gz = member_with_fields(b"a\n", 3, 3);
        let at = 10 + 2 + 3 + 11 + 4;
        gz[at] ^= 1;
        for buf in [1, 4096] {
            let err = inflate(gz.clone(), buf, 4096).unwrap_err();
            assert!(err.to_string().contains("header checksum"), "{err}");
        }
    }

    fn read_all(data: Vec<u8>, buf: usize) -> (io::Result<Vec<u8>>, Option<String>) {
        let notes = Notes::default();
        let mut r = gzip_reader(
            Box::new(BufReader::with_capacity(buf, io::Cursor::new(data))),
            notes.clone(),
        );
        let mut out = Vec::new();
        let res = r.read_to_end(&mut out).map(|_| out);
        (res, notes.take())
    }

    #[test]
    fn zero_padding_after_the_last_member_is_a_note_not_an_error() {
        let data = sample(50_000);
        let gz = gz(&[&data, b"x\n"]);
        for pad in [1usize, 512, 100_000] {
            for buf in [3, 1 << 16] {
                let padded = [gz.clone(), vec![0; pad]].concat();
                let (out, note) = read_all(padded, buf);
                assert_eq!(out.unwrap(), [&data[..], b"x\n"].concat());
                let note = note.expect("a note");
                assert!(note.contains("trailing zero bytes ignored"), "{note}");
                assert!(note.contains(&format!("{pad} bytes")), "{note}");
            }
        }
        let (out, note) = read_all(gz.clone(), 1 << 16);
        assert!(out.is_ok() && note.is_none());
    }

    #[test]
    fn other_bytes_after_the_last_member_are_an_error_after_its_data() {
        let data = sample(20_000);
        for tail in [&b"garbage"[..], b"\0\0\0junk", b"\x1f\x8bnot a header"] {
            let (out, _) = read_all([gz(&[&data]), tail.to_vec()].concat(), 4096);
            let err = out.unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");
        }
        // The data before the garbage still came out.
        let mut r = gzip_reader(
            Box::new(io::Cursor::new(
                [gz(&[&data]), b"garbage".to_vec()].concat(),
            )),
            Notes::default(),
        );
        let mut out = Vec::new();
        assert!(r.read_to_end(&mut out).is_err());
        assert_eq!(out, data);
    }

    /// Input handed out in the given pieces, one `fill_buf` each.
    struct Pieces {
        data: Vec<u8>,
        ends: Vec<usize>,
        at: usize,
    }

    impl Read for Pieces {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            let n = self.fill_buf()?.len().min(out.len());
            out[..n].copy_from_slice(&self.data[self.at..self.at + n]);
            self.consume(n);
            Ok(n)
        }
    }

    impl BufRead for Pieces {
        fn fill_buf(&mut self) -> io::Result<&[u8]> {
            // `ends` is sorted: the first one past `at`.
            let i = self.ends.partition_point(|&e| e <= self.at);
            let end = self.ends.get(i).copied().unwrap_or(self.data.len());
            Ok(&self.data[self.at..end])
        }
        fn consume(&mut self, n: usize) {
            self.at += n;
        }
    }

    fn inflate_pieces(data: &[u8], ends: Vec<usize>) -> (io::Result<Vec<u8>>, Vec<u8>) {
        let input = Pieces {
            data: data.to_vec(),
            ends,
            at: 0,
        };
        let mut r = gzip_reader(Box::new(input), Notes::default());
        let mut out = Vec::new();
        let mut buf = vec![0u8; 1 << 16];
        loop {
            match r.read(&mut buf) {
                Ok(0) => return (Ok(out.clone()), out),
                Ok(n) => out.extend_from_slice(&buf[..n]),
                Err(e) => return (Err(e), out),
            }
        }
    }

    #[test]
    fn members_split_at_any_byte_are_read_whole() {
        // Stored, fixed-Huffman and dynamic-Huffman members: the inflater may read
        // past the end of the deflate data into the trailer before it stops.
        let mut stored = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::none());
        stored.write_all(b"stored\n").unwrap();
        let (a, b) = (b"short\n".to_vec(), sample(3000));
        let data = [stored.finish().unwrap(), gz(&[&a, &b, b""])].concat();
        let want = [&b"stored\n"[..], &a, &b].concat();
        for cut in 0..=data.len() {
            let (got, _) = inflate_pieces(&data, vec![cut]);
            assert_eq!(got.unwrap(), want, "cut at {cut}");
        }
        let (got, _) = inflate_pieces(&data, (1..data.len()).collect());
        assert_eq!(got.unwrap(), want, "one byte at a time");
    }

    #[test]
    fn a_bad_trailer_is_an_error_after_every_byte_of_its_member() {
        let a = sample(200_000);
        let good = gz(&[&a]);
        let n = good.len();
        for (at, what) in [(n - 8, "checksum"), (n - 1, "length")] {
            let mut bad = good.clone();
            bad[at] ^= 1;
            let one_byte = (1..bad.len()).collect();
            for ends in [vec![], vec![n - 9], vec![n - 5], vec![n - 1], one_byte] {
                let (got, out) = inflate_pieces(&bad, ends);
                let err = got.unwrap_err();
                assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");
                assert!(err.to_string().contains(what), "{what}: {err}");
                assert_eq!(out, a, "{what}");
            }
        }
    }

    #[test]
    fn corrupt_data_is_an_error_at_the_same_byte_whatever_the_read_sizes() {
        let mut data = gz(&[&sample(400_000)]);
        let mid = data.len() / 2;
        data[mid] ^= 0x5a;
        data[mid + 1] ^= 0xa5;
        let got: Vec<(usize, String)> = [(1 << 20, 1 << 20), (4096, 4096), (100, 7)]
            .into_iter()
            .map(|(buf, read)| {
                let mut r = gzip_reader(
                    Box::new(BufReader::with_capacity(buf, io::Cursor::new(data.clone()))),
                    Notes::default(),
                );
                let mut out = Vec::new();
                let mut chunk = vec![0u8; read];
                loop {
                    match r.read(&mut chunk) {
                        Ok(0) => panic!("corrupt data read to the end"),
                        Ok(n) => out.extend_from_slice(&chunk[..n]),
                        Err(e) => return (out.len(), e.kind().to_string()),
                    }
                }
            })
            .collect();
        // Every byte decoded before the error comes out, so the count is fixed.
        assert!(got.windows(2).all(|w| w[0] == w[1]), "{got:?}");
    }

    /// Log-like lines: words repeated near and far, so the deflate data holds long
    /// matches and distances up to the whole window, in dynamic-Huffman blocks.
    fn log_lines(n: usize, seed: u64) -> Vec<u8> {
        const WORDS: [&str; 12] = [
            "\"Operation\":",
            "\"MailboxLogin\"",
            "\"UserId\":",
            "\"alice@contoso.com\"",
            "\"ClientIP\":",
            "\"10.1.2.3\"",
            "\"Workload\":",
            "\"Exchange\"",
            "{",
            "}",
            ",",
            "\"Set-Mailbox\"",
        ];
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut out = Vec::with_capacity(n + 100);
        while out.len() < n {
            for _ in 0..rng.usize(4..30) {
                if rng.u8(0..5) == 0 {
                    out.extend(format!("{:08x}", rng.u32(..)).bytes());
                } else {
                    out.extend(WORDS[rng.usize(..WORDS.len())].bytes());
                }
            }
            out.push(b'\n');
        }
        out
    }

    /// How reads are asked of an inflater: the sizes of the reads, in turn.
    #[derive(Clone, Debug)]
    enum Reads {
        /// Every read of this size.
        Fixed(usize),
        /// Blocks of `block` bytes filled as the block reader fills a fresh buffer:
        /// doubling from 8 KiB.
        Doubling(usize),
        /// Sizes from 1 byte to 2 MiB, drawn with this seed.
        Random(u64),
    }

    /// Every byte a gzip reader with `backend` gives of `data` before it stops, and
    /// how it stopped, read in `reads` from input handed out `piece` bytes at a time.
    fn recover<B: Backend>(
        data: &[u8],
        backend: B,
        reads: &Reads,
        piece: usize,
    ) -> (Vec<u8>, String) {
        let input = BufReader::with_capacity(piece, io::Cursor::new(data.to_vec()));
        let mut r = GzipReader::new(Box::new(input), backend, Notes::default(), None);
        let mut rng = fastrand::Rng::new();
        let mut out = Vec::new();
        let mut buf = vec![0u8; 2 << 20];
        let mut held = 0;
        loop {
            let size = match reads {
                Reads::Fixed(n) => *n,
                Reads::Doubling(block) => {
                    let room = (held * 2).max(8 << 10).min(*block);
                    if held == room {
                        held = 0;
                        continue;
                    }
                    room - held
                }
                Reads::Random(seed) => {
                    if out.is_empty() {
                        rng.seed(*seed);
                    }
                    rng.usize(1..=2 << 20)
                }
            };
            match r.read(&mut buf[..size]) {
                Ok(0) => return (out, "end".into()),
                Ok(n) => {
                    out.extend_from_slice(&buf[..n]);
                    held += n;
                }
                Err(e) => return (out, e.kind().to_string()),
            }
        }
    }

    /// A gzip member around raw deflate data `body` (the trailer zero: the data is
    /// damaged before it anyway).
    fn member(body: &[u8]) -> Vec<u8> {
        [&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255][..], body, &[0; 8]].concat()
    }

    /// Damaged gzip members, each with what it is and whether every backend must
    /// recover what zlib-rs does (else it must recover the given text before the
    /// damage): whole blocks then a header of the reserved type 3; whole blocks then
    /// garbage (stored lengths that disagree, bad code lengths, bad codes), a burst of
    /// garbage in the first blocks (a distance too far back) or in the middle (often
    /// only a wrong checksum): ISA-L takes more of some garbage for data than zlib-rs,
    /// and how much can depend on its calls (README, "Known limitations"); the stream
    /// cut (ISA-L keeps the last codes it read unwritten: the same whatever the reads).
    fn damaged() -> Vec<(String, Vec<u8>, Option<Vec<u8>>)> {
        let text = log_lines(3 << 19, 7);
        let good = gz(&[&text]);
        let mut out = Vec::new();
        let mut rng = fastrand::Rng::with_seed(19);
        for (i, len) in [1000, 33_000, 700_000, 1 << 20, (1 << 20) + 5, 1_400_000]
            .into_iter()
            .enumerate()
        {
            // Whole blocks ending on a byte (a sync flush), then the next header.
            let mut z = flate2::Compress::new(flate2::Compression::new(6), false);
            let mut body = Vec::with_capacity(len + 1000);
            z.compress_vec(&text[..len], &mut body, flate2::FlushCompress::Sync)
                .unwrap();
            let mut bad = body.clone();
            bad.extend([0b110, 0xab, 0xcd, 0xef, 0x12, 0x34, 0x56, 0x78, 0x9a]);
            out.push((
                format!("block type 3 after {len} bytes"),
                member(&bad),
                None,
            ));
            for seed in 0..2 {
                let mut bad = body.clone();
                rng.seed(i as u64 * 10 + seed);
                bad.extend(std::iter::repeat_with(|| rng.u8(..)).take(400));
                let what = format!("garbage {seed} after {len} bytes");
                out.push((what, member(&bad), Some(text[..len].to_vec())));
            }
        }
        for i in 0..6 {
            let mut bad = good.clone();
            let at = if i < 3 {
                20 + rng.usize(..2000)
            } else {
                20 + rng.usize(..good.len() - 100)
            };
            let len = rng.usize(1..80);
            for b in &mut bad[at..at + len] {
                *b ^= rng.u8(1..);
            }
            out.push((
                format!("{len} bytes garbled at byte {at}"),
                bad,
                Some(Vec::new()),
            ));
        }
        for cut in [11, 5000, good.len() * 2 / 3, good.len() - 3] {
            out.push((
                format!("cut at byte {cut}"),
                good[..cut].to_vec(),
                Some(Vec::new()),
            ));
        }
        out
    }

    /// What a backend recovers of a damaged stream never depends on the sizes of the
    /// reads asked of it (a forensic run reports the same twice): zlib-rs's not on the
    /// input pieces either, ISA-L's not on them where the damage is unambiguous (it is
    /// then what zlib-rs recovers; of garbage, how much still decodes as codes depends
    /// on how ISA-L's input is cut: a file's is cut the same way every run).
    #[test]
    fn what_is_recovered_of_a_damaged_stream_never_depends_on_the_read_sizes() {
        let schedules = [
            Reads::Fixed(1 << 20),
            Reads::Fixed(65_536),
            Reads::Fixed(300),
            Reads::Doubling(4 << 20),
            Reads::Doubling(100_000),
            Reads::Random(1),
        ];
        for (what, data, sure) in damaged() {
            let (want, how) = recover(&data, zlib::Zlib::new(None), &schedules[0], 1 << 22);
            assert_ne!(how, "end", "{what}: not damaged");
            if let Some(sure) = &sure {
                assert!(want.starts_with(sure), "zlib-rs: {what}");
            }
            for piece in [1 << 22, 4093] {
                #[cfg(feature = "isal")]
                let isal = {
                    let (got, stop) = recover(&data, isal::Isal::new(), &schedules[0], piece);
                    let tag = format!("ISA-L: {what}, input pieces {piece}");
                    assert_eq!(stop, how, "{tag}");
                    match &sure {
                        None => assert!(got == want, "{tag}"),
                        Some(sure) => assert!(got.starts_with(sure), "{tag}"),
                    }
                    if what.starts_with("cut") {
                        assert!(want.starts_with(&got), "{tag}");
                    }
                    got
                };
                for reads in &schedules {
                    let tag = format!("{what}, reads {reads:?}, input pieces {piece}");
                    let (got, stop) = recover(&data, zlib::Zlib::new(None), reads, piece);
                    assert_eq!((got.len(), &stop), (want.len(), &how), "zlib-rs: {tag}");
                    assert!(got == want, "zlib-rs: {tag}");
                    #[cfg(feature = "isal")]
                    {
                        let (got, stop) = recover(&data, isal::Isal::new(), reads, piece);
                        assert_eq!((got.len(), &stop), (isal.len(), &how), "ISA-L: {tag}");
                        assert!(got == isal, "ISA-L: {tag}");
                    }
                }
            }
        }
    }
}
