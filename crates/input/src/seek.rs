//! Seek points of a compressed file: where its decoder can start again part-way, so that
//! a later pass inflates only from the nearest point before the bytes it needs.
//!
//! Place in the flow: the first pass's decoders ([`crate::inflate`], `unzstd`) note
//! points into a [`Seeks`] handle as they decode; the engine keeps them beside its block
//! index and, in the context pass, asks [`resume`] for a reader that starts at one. A
//! point is a gzip member's or a zstd frame's start (nothing to keep but two offsets)
//! or, inside a gzip member, a deflate block boundary with the 32 KiB of output before
//! it (the window, as zran and rapidgzip indexes keep it), stored zstd-compressed.
//! Nothing here looks at lines.
//!
//! Memory: a point is taken at most every [`SPACING`] bytes of output (the first one a
//! member start or block boundary at or past that), and a file keeps at most
//! [`MAX_POINTS`]: past that, every other point is dropped and the spacing doubles. A
//! point costs 32 bytes plus its compressed window (none for a member or frame start;
//! at most 32 KiB, a few KiB for audit JSON lines), so a file's points take at most
//! `MAX_POINTS` × 32 KiB whatever its size.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;
use std::sync::{Arc, Mutex};

/// Output bytes between two points (at least), until a file has [`MAX_POINTS`].
pub const SPACING: u64 = 8 << 20;

/// Points kept per file at most: past that, every other one is dropped and the
/// spacing doubles.
pub const MAX_POINTS: usize = 1024;

/// The size of a deflate window: the output a block may refer back to.
pub const WINDOW: usize = 32 << 10;

/// Where a decoder can start again.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Point {
    /// Decompressed bytes before it.
    pub out: u64,
    /// Compressed bytes before it: a member's or frame's first byte, or the first byte
    /// of the deflate stream not wholly consumed.
    pub input: u64,
    /// Inside a gzip member: bits of the byte before `input` that the next block
    /// starts with (0 to 7).
    pub bits: u8,
    /// Inside a gzip member: the 32 KiB of output before the point, zstd-compressed
    /// (empty: a member or frame start, where no earlier output is referred to).
    pub window: Vec<u8>,
}

impl Point {
    /// Whether the point is a member's or a frame's start (no window).
    pub fn is_start(&self) -> bool {
        self.window.is_empty()
    }
}

/// The points taken so far, thinned to [`MAX_POINTS`].
#[derive(Debug)]
struct Recorder {
    points: Vec<Point>,
    spacing: u64,
    /// Output offset from which the next point is wanted.
    due: u64,
}

impl Default for Recorder {
    fn default() -> Recorder {
        Recorder {
            points: Vec::new(),
            spacing: SPACING,
            due: SPACING,
        }
    }
}

impl Recorder {
    fn push(&mut self, point: Point) {
        self.due = point.out.saturating_add(self.spacing);
        self.points.push(point);
        if self.points.len() > MAX_POINTS {
            // Keep every other point (the later of each pair, so the spacing between
            // those kept is at least twice the old one).
            let mut k = 0;
            self.points.retain(|_| {
                k += 1;
                k % 2 == 0
            });
            self.spacing = self.spacing.saturating_mul(2);
            let last = self.points.last().map_or(0, |p| p.out);
            self.due = last.saturating_add(self.spacing);
        }
    }
}

/// A handle the decoders note points into; clones share one list.
#[derive(Clone, Debug, Default)]
pub struct Seeks(Arc<Mutex<Recorder>>);

impl Seeks {
    /// A handle that wants a point every `spacing` bytes of output ([`SPACING`] unless
    /// a test asks for closer ones).
    pub fn spaced(spacing: u64) -> Seeks {
        let spacing = spacing.max(1);
        Seeks(Arc::new(Mutex::new(Recorder {
            points: Vec::new(),
            spacing,
            due: spacing,
        })))
    }

    fn with<T>(&self, f: impl FnOnce(&mut Recorder) -> T) -> T {
        // A poisoned lock only means another thread panicked mid-push; the list is fine.
        f(&mut self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Whether a point is wanted at output offset `out`.
    pub fn due(&self, out: u64) -> bool {
        self.with(|r| out >= r.due)
    }

    /// Notes a member's or frame's start (when a point is due there).
    pub fn start(&self, out: u64, input: u64) {
        self.with(|r| {
            if out >= r.due {
                r.push(Point {
                    out,
                    input,
                    bits: 0,
                    window: Vec::new(),
                });
            }
        });
    }

    /// Notes a deflate block boundary inside a member: `window` is the output before
    /// it (its last [`WINDOW`] bytes are kept).
    pub fn block(&self, out: u64, input: u64, bits: u8, window: &[u8]) {
        if !self.due(out) || window.is_empty() {
            return;
        }
        let window = &window[window.len().saturating_sub(WINDOW)..];
        // zstd at level 1: a few hundred microseconds per point, a few KiB kept.
        let Ok(compressed) = zstd::bulk::compress(window, 1) else {
            return;
        };
        self.with(|r| {
            r.push(Point {
                out,
                input,
                bits,
                window: compressed,
            })
        });
    }

    /// The points so far, in output order.
    pub fn points(&self) -> Vec<Point> {
        self.with(|r| r.points.clone())
    }
}

/// Which decoder a file's points are for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Codec {
    /// gzip: member starts and deflate block boundaries.
    Gzip,
    /// zstd: frame starts.
    Zstd,
}

impl Codec {
    /// The compression's name.
    pub fn name(self) -> &'static str {
        match self {
            Codec::Gzip => "gzip",
            Codec::Zstd => "zstd",
        }
    }
}

/// A reader of a compressed file's decompressed bytes from `point` on (bytes
/// `point.out..` of the whole file's), with nothing of what comes before checked: a
/// member resumed part-way has no CRC to check against. The caller makes sure the
/// file is the one the point was taken in.
pub fn resume(path: &Path, codec: Codec, point: &Point) -> io::Result<Box<dyn Read + Send>> {
    let file = File::open(path)?;
    let len = file.metadata()?.len();
    if point.input > len || (point.bits > 0 && point.input == 0) || point.bits > 7 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "seek point past the end of the file",
        ));
    }
    let mut prime = 0u8;
    if point.bits > 0 {
        let mut byte = [0u8; 1];
        crate::open::read_exact_at(&file, &mut byte, point.input - 1)?;
        prime = byte[0] >> (8 - point.bits);
    }
    let input = crate::open::input_at(file, point.input)?;
    Ok(match codec {
        Codec::Zstd => Box::new(crate::unzstd::Decoder::new(input)),
        Codec::Gzip if point.is_start() => {
            crate::inflate::gzip_reader(input, crate::inflate::Notes::default())
        }
        Codec::Gzip => {
            let window = zstd::bulk::decompress(&point.window, WINDOW)?;
            crate::inflate::resume_member(input, point.bits, prime, &window)?
        }
    })
}

/// Input bytes handed out after `skip` of them are dropped, at most `take` of them.
pub struct Stretch<R> {
    inner: R,
    skip: u64,
    take: u64,
    /// Bytes dropped so far (the lead-in before the stretch).
    pub skipped: u64,
}

impl<R: Read> Stretch<R> {
    /// `take` bytes of `inner` after the first `skip`.
    pub fn new(inner: R, skip: u64, take: u64) -> Stretch<R> {
        Stretch {
            inner,
            skip,
            take,
            skipped: 0,
        }
    }
}

impl<R: Read> Read for Stretch<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.skip > 0 {
            let want = buf
                .len()
                .min(usize::try_from(self.skip).unwrap_or(usize::MAX));
            if want == 0 {
                return Ok(0);
            }
            let n = self.inner.read(&mut buf[..want])?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "compressed file ends before a seek point's stretch",
                ));
            }
            self.skip -= n as u64;
            self.skipped += n as u64;
        }
        let want = buf
            .len()
            .min(usize::try_from(self.take).unwrap_or(usize::MAX));
        if want == 0 {
            return Ok(0);
        }
        let n = self.inner.read(&mut buf[..want])?;
        self.take -= n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn text(n: usize, seed: u64) -> Vec<u8> {
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut out = Vec::with_capacity(n + 100);
        while out.len() < n {
            let k = rng.u32(..1_000_000);
            out.extend(
                format!(
                    "{{\"n\":{k},\"pad\":\"{}\"}}\n",
                    "ab".repeat(rng.usize(..40))
                )
                .bytes(),
            );
        }
        out
    }

    fn gz(parts: &[&[u8]], level: u32) -> Vec<u8> {
        let mut out = Vec::new();
        for part in parts {
            let mut enc =
                flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(level));
            enc.write_all(part).unwrap();
            out.extend(enc.finish().unwrap());
        }
        out
    }

    /// Reads `data` (a file's bytes) once noting points `spacing` apart, then checks
    /// that every point resumes to the very bytes the whole read gave from there on.
    fn every_point_resumes(data: &[u8], codec: Codec, spacing: u64) -> usize {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, data).unwrap();
        let seeks = Seeks::spaced(spacing);
        let input: Box<dyn io::BufRead + Send> = Box::new(io::BufReader::with_capacity(
            7919,
            io::Cursor::new(data.to_vec()),
        ));
        let mut whole = Vec::new();
        let mut reader: Box<dyn Read + Send> = match codec {
            Codec::Gzip => crate::inflate::gzip_reader_noting(
                input,
                crate::inflate::Notes::default(),
                Some(seeks.clone()),
            ),
            Codec::Zstd => Box::new(crate::unzstd::Decoder::new(input).noting(Some(seeks.clone()))),
        };
        reader.read_to_end(&mut whole).unwrap();
        let points = seeks.points();
        for p in &points {
            let mut again = Vec::new();
            resume(&path, codec, p)
                .unwrap()
                .read_to_end(&mut again)
                .unwrap();
            assert!(
                again == whole[p.out as usize..],
                "point {:?}",
                (p.out, p.input, p.bits)
            );
            // A stretch after a lead-in.
            let lead = (whole.len() - p.out as usize).min(1000);
            let mut part = Vec::new();
            Stretch::new(resume(&path, codec, p).unwrap(), lead as u64, 5000)
                .read_to_end(&mut part)
                .unwrap();
            let from = p.out as usize + lead;
            assert!(part == whole[from..(from + 5000).min(whole.len())]);
        }
        points.len()
    }

    #[test]
    fn gzip_points_resume_to_the_same_bytes_in_one_member_and_many() {
        let a = text(3 << 20, 1);
        let b = text(700_000, 2);
        // One member, levels that make fixed, dynamic and stored blocks.
        for level in [0, 6, 9, 1] {
            let n = every_point_resumes(&gz(&[&a], level), Codec::Gzip, 256 << 10);
            // A point needs a block boundary: highly repetitive text makes blocks of
            // a MiB and more at some levels.
            #[cfg(not(feature = "isal"))]
            assert!(n >= 1 && (level > 0 || n >= 8), "level {level}: {n} points");
            #[cfg(feature = "isal")]
            assert_eq!(n, 0, "the isal build notes member starts only");
        }
        // Many members, an empty one among them.
        let many = gz(&[&b, &a, b"", &b, &b[..1000]], 6);
        let n = every_point_resumes(&many, Codec::Gzip, 100_000);
        // The isal build: the three member starts at least the spacing apart.
        assert!(n >= 3, "{n} points");
        // Member starts alone (each member shorter than the spacing).
        let small: Vec<&[u8]> = b.chunks(50_000).collect();
        let n = every_point_resumes(&gz(&small, 6), Codec::Gzip, 120_000);
        assert!(n >= 4, "{n} points");
    }

    #[test]
    fn zstd_frame_starts_resume_to_the_same_bytes() {
        let a = text(1 << 20, 3);
        let mut data = Vec::new();
        for (k, part) in a.chunks(100_000).enumerate() {
            data.extend(zstd::encode_all(part, 1 + (k as i32 % 5)).unwrap());
        }
        let n = every_point_resumes(&data, Codec::Zstd, 150_000);
        assert!(n >= 4, "{n} points");
        // One frame: no point.
        let one = zstd::encode_all(&a[..], 3).unwrap();
        assert_eq!(every_point_resumes(&one, Codec::Zstd, 1000), 0);
    }

    #[test]
    fn points_are_spaced_and_thinned_to_the_cap() {
        let s = Seeks::default();
        assert!(!s.due(SPACING - 1));
        s.start(SPACING - 1, 10);
        assert!(s.points().is_empty());
        let mut out = 0;
        for k in 0..(3 * MAX_POINTS as u64) {
            out += SPACING / 2 + k % 7;
            s.start(out, k);
        }
        let points = s.points();
        assert!(points.len() <= MAX_POINTS, "{}", points.len());
        assert!(points.len() > MAX_POINTS / 4, "{}", points.len());
        assert!(points.windows(2).all(|w| w[0].out < w[1].out));
        // Thinned at least once: the spacing doubled.
        let min_gap = points
            .windows(2)
            .map(|w| w[1].out - w[0].out)
            .min()
            .unwrap();
        assert!(min_gap >= SPACING, "{min_gap}");
    }
}
