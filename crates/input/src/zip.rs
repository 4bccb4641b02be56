//! Zip archives. Discovery reads an archive's central directory once, as a stream, and
//! keeps of each file entry only where its directory record starts (8 bytes, in input
//! order): an entry's name, sizes and place are read again from that record when the
//! entry is opened or named, so an archive of a million entries costs a few bytes per
//! entry, not a parsed directory and a name each. An entry, stored or deflated, is read
//! from one open file with positional reads and its CRC and size are checked at its end;
//! it is never held whole in memory (one of up to 256 KiB is read at once), and an error
//! met while decompressing reaches the reader, after every byte decoded before it,
//! instead of passing for a clean end of stream. Nothing here knows what an entry holds.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::failed::Failed;

/// A `.zip` archive whose directory has been read.
#[derive(Debug)]
pub struct ZipSource {
    /// Where it is.
    pub path: PathBuf,
    file: SharedFile,
    /// Bytes before the archive proper (a self-extractor's stub): added to every offset
    /// the directory gives.
    prefix: u64,
    /// Where each file entry's directory record starts in the file, in input order: by
    /// name, the entries of one name in directory order.
    records: Vec<u64>,
    /// The entries whose name repeats: (place in `records`, number among the entries of
    /// that name from 1, in directory order), by place.
    repeats: Vec<(u32, u32)>,
    /// Compressed bytes of all its file entries.
    compressed: u64,
}

impl PartialEq for ZipSource {
    fn eq(&self, other: &ZipSource) -> bool {
        self.path == other.path
    }
}

impl Eq for ZipSource {}

const LOCAL: u32 = 0x0403_4b50;
const CENTRAL: u32 = 0x0201_4b50;
const END: u32 = 0x0605_4b50;
const END64: u32 = 0x0606_4b50;
const LOCATOR64: u32 = 0x0706_4b50;

/// A directory record's fixed part.
const RECORD: usize = 46;

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

fn invalid(what: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.into())
}

fn unsupported(what: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::Unsupported, what.into())
}

/// Where the central directory is.
#[derive(Debug, PartialEq, Eq)]
struct End {
    /// Its first record, as a file offset.
    start: u64,
    /// How many records it says it holds.
    count: u64,
    /// Bytes before the archive proper.
    prefix: u64,
}

/// Finds the end of central directory record (the last one that makes sense: an
/// archive comment may hold the signature) and, for zip64, the record it points to.
fn find_end(file: &SharedFile) -> io::Result<End> {
    let tail_len = file.len.min(22 + 0xFFFF);
    let base = file.len - tail_len;
    let mut tail = vec![0u8; tail_len as usize];
    file.read_exact_at(&mut tail, base)?;
    let mut why = invalid("no end of central directory record");
    for at in (0..tail.len().saturating_sub(21)).rev() {
        if u32_at(&tail, at) == Some(END) {
            match end_at(file, &tail[at..], base + at as u64) {
                Ok(end) => return Ok(end),
                Err(e) => why = e,
            }
        }
    }
    Err(why)
}

/// Reads the end of central directory record at `pos` (`record`: the file from there).
fn end_at(file: &SharedFile, record: &[u8], pos: u64) -> io::Result<End> {
    let short = || invalid("end of central directory record cut short");
    let comment = u64::from(u16_at(record, 20).ok_or_else(short)?);
    if pos + 22 + comment > file.len {
        return Err(invalid("archive comment runs past the end of the file"));
    }
    let mut disks = (u16_at(record, 4), u16_at(record, 6));
    let mut count = u64::from(u16_at(record, 10).ok_or_else(short)?);
    let mut size = u64::from(u32_at(record, 12).ok_or_else(short)?);
    let mut offset = u64::from(u32_at(record, 16).ok_or_else(short)?);
    // The directory ends where this record starts, or the zip64 one.
    let mut ends_at = pos;
    let mut locator = [0u8; 20];
    if pos >= 20
        && file.read_exact_at(&mut locator, pos - 20).is_ok()
        && u32_at(&locator, 0) == Some(LOCATOR64)
    {
        let claimed = u64_at(&locator, 8).unwrap_or(u64::MAX);
        if u32_at(&locator, 16).is_some_and(|n| n > 1) {
            return Err(unsupported("multi-disk zip archives are not read"));
        }
        // Where the locator says, or right before the locator (bytes before the archive
        // move it).
        let mut record64 = [0u8; 56];
        let found = [Some(claimed), (pos - 20).checked_sub(56)]
            .into_iter()
            .flatten()
            .find(|&at| {
                at < pos
                    && file.read_exact_at(&mut record64, at).is_ok()
                    && u32_at(&record64, 0) == Some(END64)
            })
            .ok_or_else(|| invalid("zip64 end of central directory record not found"))?;
        disks = (
            u32_at(&record64, 16).map(|d| d as u16),
            u32_at(&record64, 20).map(|d| d as u16),
        );
        count = u64_at(&record64, 32).unwrap_or(0);
        size = u64_at(&record64, 40).unwrap_or(0);
        offset = u64_at(&record64, 48).unwrap_or(0);
        ends_at = found;
    }
    if disks.0 != disks.1 {
        return Err(unsupported("multi-disk zip archives are not read"));
    }
    // The directory's offset counts from the archive's start: bytes before it (a
    // self-extractor's stub) shift everything by as much.
    let prefix = ends_at
        .checked_sub(size)
        .and_then(|start| start.checked_sub(offset))
        .unwrap_or(0);
    for prefix in [prefix, 0] {
        let start = offset.saturating_add(prefix);
        let mut sig = [0u8; 4];
        let records_there = count == 0
            || (start < ends_at
                && file.read_exact_at(&mut sig, start).is_ok()
                && u32::from_le_bytes(sig) == CENTRAL);
        if records_there {
            return Ok(End {
                start,
                count,
                prefix,
            });
        }
    }
    Err(invalid("no central directory where the end record says"))
}

/// What a directory record says of its entry.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Record {
    flags: u16,
    method: u16,
    crc: u32,
    compressed: u64,
    size: u64,
    /// Its local header, as an offset from the archive's start.
    header: u64,
    /// Its length in the directory (fixed part, name, extra field, comment).
    len: u64,
    /// Its name's length.
    name_len: usize,
    /// Its extra field's length.
    extra_len: usize,
}

impl Record {
    /// Reads a record from its fixed part and its name and extra field.
    fn parse(fixed: &[u8; RECORD], variable: &[u8]) -> Record {
        let at16 = |at| u16_at(fixed, at).unwrap_or(0);
        let at32 = |at| u32_at(fixed, at).unwrap_or(0);
        let (name, extra, comment) = lengths(fixed);
        let mut r = Record {
            flags: at16(8),
            method: at16(10),
            crc: at32(16),
            compressed: u64::from(at32(20)),
            size: u64::from(at32(24)),
            header: u64::from(at32(42)),
            len: (RECORD + name + extra + comment) as u64,
            name_len: name,
            extra_len: extra,
        };
        // Zip64: the sizes and offset that do not fit are in extra field 1, in order. A
        // field that still says "does not fit" is read again from the next one (as the
        // zip crate does: it writes one such placeholder before the real field).
        let extra = variable.get(name..name + extra).unwrap_or_default();
        for body in extra_fields(extra).filter(|f| f.0 == 0x0001).map(|f| f.1) {
            let mut k = 0;
            for v in [&mut r.size, &mut r.compressed, &mut r.header] {
                if *v == 0xFFFF_FFFF
                    && let Some(wide) = u64_at(body, k)
                {
                    *v = wide;
                    k += 8;
                }
            }
        }
        r
    }
}

/// A record's name, extra field and comment lengths.
fn lengths(fixed: &[u8; RECORD]) -> (usize, usize, usize) {
    let at = |k| usize::from(u16_at(fixed, k).unwrap_or(0));
    (at(28), at(30), at(32))
}

/// The fields of an extra field, (id, body), up to the first that is cut short.
fn extra_fields(mut extra: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        let (id, len) = (u16_at(extra, 0)?, usize::from(u16_at(extra, 2)?));
        let body = extra.get(4..4 + len)?;
        extra = &extra[4 + len..];
        Some((id, body))
    })
}

/// The body of extra field `id` (the first such).
fn extra_field(extra: &[u8], id: u16) -> Option<&[u8]> {
    extra_fields(extra).find(|f| f.0 == id).map(|f| f.1)
}

/// An entry's name as the zip crate decodes it: the Info-ZIP Unicode Path extra field
/// when it matches the name, else UTF-8 when the record's flag says so, else IBM code
/// page 437.
fn decode_name(raw: &[u8], flags: u16, extra: &[u8]) -> String {
    if let Some(body) = extra_field(extra, 0x7075)
        && body.first() == Some(&1)
        && u32_at(body, 1) == Some(crc32(raw))
    {
        return String::from_utf8_lossy(&body[5..]).into_owned();
    }
    if flags & (1 << 11) != 0 {
        return String::from_utf8_lossy(raw).into_owned();
    }
    raw.iter()
        .map(|&b| match b {
            0..0x80 => char::from(b),
            _ => CP437[usize::from(b - 0x80)],
        })
        .collect()
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = flate2::Crc::new();
    crc.update(bytes);
    crc.sum()
}

/// Code page 437 from 0x80 on (below it is ASCII).
const CP437: [char; 128] = [
    '\u{00c7}', '\u{00fc}', '\u{00e9}', '\u{00e2}', '\u{00e4}', '\u{00e0}', '\u{00e5}', '\u{00e7}',
    '\u{00ea}', '\u{00eb}', '\u{00e8}', '\u{00ef}', '\u{00ee}', '\u{00ec}', '\u{00c4}', '\u{00c5}',
    '\u{00c9}', '\u{00e6}', '\u{00c6}', '\u{00f4}', '\u{00f6}', '\u{00f2}', '\u{00fb}', '\u{00f9}',
    '\u{00ff}', '\u{00d6}', '\u{00dc}', '\u{00a2}', '\u{00a3}', '\u{00a5}', '\u{20a7}', '\u{0192}',
    '\u{00e1}', '\u{00ed}', '\u{00f3}', '\u{00fa}', '\u{00f1}', '\u{00d1}', '\u{00aa}', '\u{00ba}',
    '\u{00bf}', '\u{2310}', '\u{00ac}', '\u{00bd}', '\u{00bc}', '\u{00a1}', '\u{00ab}', '\u{00bb}',
    '\u{2591}', '\u{2592}', '\u{2593}', '\u{2502}', '\u{2524}', '\u{2561}', '\u{2562}', '\u{2556}',
    '\u{2555}', '\u{2563}', '\u{2551}', '\u{2557}', '\u{255d}', '\u{255c}', '\u{255b}', '\u{2510}',
    '\u{2514}', '\u{2534}', '\u{252c}', '\u{251c}', '\u{2500}', '\u{253c}', '\u{255e}', '\u{255f}',
    '\u{255a}', '\u{2554}', '\u{2569}', '\u{2566}', '\u{2560}', '\u{2550}', '\u{256c}', '\u{2567}',
    '\u{2568}', '\u{2564}', '\u{2565}', '\u{2559}', '\u{2558}', '\u{2552}', '\u{2553}', '\u{256b}',
    '\u{256a}', '\u{2518}', '\u{250c}', '\u{2588}', '\u{2584}', '\u{258c}', '\u{2590}', '\u{2580}',
    '\u{03b1}', '\u{00df}', '\u{0393}', '\u{03c0}', '\u{03a3}', '\u{03c3}', '\u{00b5}', '\u{03c4}',
    '\u{03a6}', '\u{0398}', '\u{03a9}', '\u{03b4}', '\u{221e}', '\u{03c6}', '\u{03b5}', '\u{2229}',
    '\u{2261}', '\u{00b1}', '\u{2265}', '\u{2264}', '\u{2320}', '\u{2321}', '\u{00f7}', '\u{2248}',
    '\u{00b0}', '\u{2219}', '\u{00b7}', '\u{221a}', '\u{207f}', '\u{00b2}', '\u{25a0}', '\u{00a0}',
];

impl ZipSource {
    /// Reads an archive's directory: each file entry (not a directory, whose name ends in
    /// `/`) becomes a place in input order, by name, the entries of one name in
    /// directory order. The names are held only while they are sorted.
    pub(crate) fn read(path: PathBuf) -> io::Result<ZipSource> {
        let file = SharedFile::open(&path)?;
        let end = find_end(&file)?;
        // A count the file cannot hold (46 bytes a record) is not believed for allocating.
        let room = (file.len.saturating_sub(end.start) / RECORD as u64).min(end.count);
        let mut offsets: Vec<u64> = Vec::with_capacity(room as usize);
        let mut ends: Vec<u32> = Vec::with_capacity(room as usize);
        let mut names = String::new();
        let mut compressed = 0u64;
        let mut reader = BufReader::with_capacity(64 << 10, file.at(end.start));
        let (mut at, mut variable) = (end.start, Vec::new());
        for k in 1..=end.count {
            let damaged = |what: &str| invalid(format!("directory record {k}: {what}"));
            let mut fixed = [0u8; RECORD];
            reader
                .read_exact(&mut fixed)
                .map_err(|_| damaged("cut short"))?;
            if u32_at(&fixed, 0) != Some(CENTRAL) {
                return Err(damaged("no record signature"));
            }
            let (name, extra, comment) = lengths(&fixed);
            variable.resize(name + extra + comment, 0);
            reader
                .read_exact(&mut variable)
                .map_err(|_| damaged("cut short"))?;
            let record = Record::parse(&fixed, &variable);
            let decoded = decode_name(
                &variable[..name],
                record.flags,
                &variable[name..name + extra],
            );
            if !decoded.ends_with('/') {
                names.push_str(&decoded);
                let end = u32::try_from(names.len())
                    .map_err(|_| unsupported("zip directory names over 4 GiB"))?;
                offsets.push(at);
                ends.push(end);
                compressed = compressed.saturating_add(record.compressed);
            }
            at += record.len;
        }
        let count = u32::try_from(offsets.len())
            .map_err(|_| unsupported("zip archive of more than 4 G entries"))?;
        let name = |i: u32| {
            let i = i as usize;
            let start = if i == 0 { 0 } else { ends[i - 1] as usize };
            &names.as_bytes()[start..ends[i] as usize]
        };
        // Name order; entries of one name in directory order. Every key differs.
        let mut order: Vec<u32> = (0..count).collect();
        order.sort_unstable_by(|&a, &b| name(a).cmp(name(b)).then(a.cmp(&b)));
        let mut repeats = Vec::new();
        for (place, group) in chunk_by_name(&order, name) {
            if group.len() > 1 {
                repeats.extend((place..).zip(1..=group.len() as u32));
            }
        }
        let records = order.iter().map(|&i| offsets[i as usize]).collect();
        Ok(ZipSource {
            path,
            file,
            prefix: end.prefix,
            records,
            repeats,
            compressed,
        })
    }

    /// How many file entries it holds (its inputs).
    pub fn len(&self) -> u32 {
        // At most u32::MAX entries are kept (see `read`).
        self.records.len() as u32
    }

    /// Whether it holds no file entry.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Compressed bytes of all its file entries.
    pub fn compressed(&self) -> u64 {
        self.compressed
    }

    /// The directory record of entry `entry` (its place in input order), and its name
    /// and extra field.
    fn record(&self, entry: u32) -> io::Result<(Record, Vec<u8>)> {
        let at = *self
            .records
            .get(entry as usize)
            .ok_or_else(|| invalid("no such zip entry"))?;
        let mut fixed = [0u8; RECORD];
        self.file.read_exact_at(&mut fixed, at)?;
        if u32_at(&fixed, 0) != Some(CENTRAL) {
            return Err(invalid(
                "zip directory record no longer where it was (the archive changed)",
            ));
        }
        let (name, extra, _) = lengths(&fixed);
        let mut variable = vec![0u8; name + extra];
        self.file.read_exact_at(&mut variable, at + RECORD as u64)?;
        Ok((Record::parse(&fixed, &variable), variable))
    }

    /// The name of entry `entry` in the archive (`name#k` for the k-th, in directory
    /// order, of several entries of one name), read again from its directory record.
    pub fn name(&self, entry: u32) -> String {
        let base = match self.record(entry) {
            Ok((record, variable)) => {
                let (name, extra) = name_and_extra(&variable, &record);
                decode_name(name, record.flags, extra)
            }
            Err(e) => return format!("(entry {} of the archive: {e})", u64::from(entry) + 1),
        };
        match self.repeats.binary_search_by_key(&entry, |r| r.0) {
            Ok(i) => format!("{base}#{}", self.repeats[i].1),
            Err(_) => base,
        }
    }

    /// Entry `entry`'s compressed and decompressed sizes, as its directory record says.
    pub fn sizes(&self, entry: u32) -> io::Result<(u64, u64)> {
        let (record, _) = self.record(entry)?;
        Ok((record.compressed, record.size))
    }

    /// Opens entry `entry` (its place in input order): stored or deflated, its CRC and
    /// size checked at its end. An entry of up to [`SMALL_ENTRY`] bytes is read here,
    /// whole. Gives the decompressed stream and the compressed and decompressed sizes
    /// the directory claims.
    pub(crate) fn open(&self, entry: u32) -> io::Result<(Box<dyn Read + Send>, u64, u64)> {
        let (e, _) = self.record(entry)?;
        if e.flags & 1 != 0 {
            return Err(unsupported("encrypted zip entry: not read"));
        }
        if e.method != 0 && e.method != 8 {
            return Err(unsupported(format!(
                "zip entry compressed with method {} (only stored and deflated entries are read)",
                e.method
            )));
        }
        let header = e.header.saturating_add(self.prefix);
        let mut local = [0u8; 30];
        self.file.read_exact_at(&mut local, header)?;
        if u32_at(&local, 0) != Some(LOCAL) {
            return Err(invalid(
                "zip entry has no local header where its directory says",
            ));
        }
        let skip = 30
            + u64::from(u16_at(&local, 26).unwrap_or(0))
            + u64::from(u16_at(&local, 28).unwrap_or(0));
        // The compressed bytes are read in pieces of up to 256 KiB (fewer for a small
        // entry: one buffer per entry of an archive of a million).
        let data = BufReader::with_capacity(
            e.compressed.clamp(512, 256 << 10) as usize,
            self.file.at(header + skip).take(e.compressed),
        );
        let inner: Box<dyn Read + Send> = match e.method {
            0 => Box::new(data),
            _ => Box::new(Inflate::new(data)),
        };
        let mut checked = Checked {
            inner,
            crc: flate2::Crc::new(),
            want: e.crc,
            size: e.size,
        };
        if e.size <= SMALL_ENTRY {
            // The usual export part: read whole here. The directory's size is only a
            // claim: read one byte past it to see, and stream on if there is more. An
            // error comes after the bytes read before it, as it would from the stream.
            let mut data = Vec::with_capacity(e.size as usize);
            if let Err(error) = (&mut checked).take(SMALL_ENTRY + 1).read_to_end(&mut data) {
                let failed = Failed::new(error);
                return Ok((
                    Box::new(io::Cursor::new(data).chain(failed)),
                    e.compressed,
                    e.size,
                ));
            }
            if data.len() as u64 <= SMALL_ENTRY {
                return Ok((Box::new(io::Cursor::new(data)), e.compressed, e.size));
            }
            return Ok((
                Box::new(io::Cursor::new(data).chain(checked)),
                e.compressed,
                e.size,
            ));
        }
        Ok((Box::new(checked), e.compressed, e.size))
    }
}

/// A record's name and extra field, from the bytes after its fixed part.
fn name_and_extra<'a>(variable: &'a [u8], record: &Record) -> (&'a [u8], &'a [u8]) {
    let (name, rest) = variable.split_at(record.name_len.min(variable.len()));
    (name, &rest[..record.extra_len.min(rest.len())])
}

/// The runs of equal names in `order`, each with its first place.
fn chunk_by_name<'a>(
    order: &'a [u32],
    name: impl Fn(u32) -> &'a [u8] + 'a,
) -> impl Iterator<Item = (u32, &'a [u32])> + 'a {
    let mut place = 0u32;
    order
        .chunk_by(move |&a, &b| name(a) == name(b))
        .map(move |group| {
            let first = place;
            place += group.len() as u32;
            (first, group)
        })
}

/// Entries up to this size are read whole when opened.
const SMALL_ENTRY: u64 = 256 << 10;

/// A zip entry's deflate stream as its inflated bytes. What one call of the inflater
/// wrote before it met damage is handed out first and the error comes with the next
/// read (flate2's reader drops that output, up to a whole read: with the scanner's
/// large reads, hundreds of kilobytes decoded before a flipped bit were lost); later
/// reads fail the same way. A stream cut short ends without an error here: the entry's
/// CRC and size check says so.
struct Inflate<R> {
    input: R,
    inflater: flate2::Decompress,
    state: Stream,
}

enum Stream {
    Open,
    Ended,
    Failed(Failed),
}

impl<R: BufRead> Inflate<R> {
    fn new(input: R) -> Inflate<R> {
        Inflate {
            input,
            inflater: flate2::Decompress::new(false),
            state: Stream::Open,
        }
    }
}

impl<R: BufRead> Read for Inflate<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        loop {
            match &mut self.state {
                Stream::Ended => return Ok(0),
                Stream::Failed(failed) => return Err(failed.error()),
                Stream::Open if out.is_empty() => return Ok(0),
                Stream::Open => {}
            }
            let input = self.input.fill_buf()?;
            let end = input.is_empty();
            let (before_in, before_out) = (self.inflater.total_in(), self.inflater.total_out());
            let result = self
                .inflater
                .decompress(input, out, flate2::FlushDecompress::None);
            let consumed = (self.inflater.total_in() - before_in) as usize;
            let produced = (self.inflater.total_out() - before_out) as usize;
            self.input.consume(consumed);
            match result {
                Ok(flate2::Status::StreamEnd) => self.state = Stream::Ended,
                Ok(_) if produced > 0 => {}
                Ok(_) if end => self.state = Stream::Ended,
                Ok(_) if consumed > 0 => continue,
                Ok(_) => {
                    let stuck = io::Error::other("deflate decoder made no progress");
                    self.state = Stream::Failed(Failed::new(stuck));
                }
                Err(e) => {
                    let damaged = match e.message() {
                        Some(why) => invalid(format!("corrupt deflate stream: {why}")),
                        None => invalid("corrupt deflate stream"),
                    };
                    self.state = Stream::Failed(Failed::new(damaged));
                }
            }
            if produced > 0 {
                return Ok(produced);
            }
        }
    }
}

/// Checks a zip entry's CRC and size when its stream ends.
struct Checked {
    inner: Box<dyn Read + Send>,
    crc: flate2::Crc,
    want: u32,
    size: u64,
}

impl Read for Checked {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.crc.update(&buf[..n]);
        if n == 0
            && !buf.is_empty()
            && (self.crc.sum() != self.want
                || u64::from(self.crc.amount()) != self.size & 0xFFFF_FFFF)
        {
            return Err(invalid(
                "zip entry's CRC or size does not match its directory",
            ));
        }
        Ok(n)
    }
}

/// A file read at its own offset by each clone (positional reads), so every entry of an
/// archive can be read at once from one open file.
#[derive(Clone, Debug)]
struct SharedFile {
    file: Arc<File>,
    pos: u64,
    len: u64,
}

impl SharedFile {
    fn open(path: &Path) -> io::Result<SharedFile> {
        let file = File::open(path)?;
        let len = file.metadata()?.len();
        Ok(SharedFile {
            file: Arc::new(file),
            pos: 0,
            len,
        })
    }

    /// A clone reading from `pos` on.
    fn at(&self, pos: u64) -> SharedFile {
        SharedFile {
            pos,
            ..self.clone()
        }
    }

    /// Fills `buf` from `pos`, or fails (a file that ends first included).
    fn read_exact_at(&self, buf: &mut [u8], pos: u64) -> io::Result<()> {
        self.at(pos).read_exact(buf)
    }
}

impl Read for SharedFile {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        #[cfg(unix)]
        let n = std::os::unix::fs::FileExt::read_at(&*self.file, buf, self.pos)?;
        #[cfg(windows)]
        let n = std::os::windows::fs::FileExt::seek_read(&*self.file, buf, self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::io::Write;

    /// One entry of a hand-built archive.
    #[derive(Clone, Debug, Default)]
    struct Raw {
        name: Vec<u8>,
        data: Vec<u8>,
        flags: u16,
        method: u16,
        /// Sizes and offset in a zip64 extra field.
        zip64: bool,
        /// A CRC that does not match the data.
        bad_crc: bool,
        extra: Vec<u8>,
    }

    fn raw(name: &str, data: &str) -> Raw {
        Raw {
            name: name.as_bytes().to_vec(),
            data: data.as_bytes().to_vec(),
            ..Raw::default()
        }
    }

    /// A zip archive after `prefix`, written byte by byte (the zip crate writes no
    /// repeated names, no CP437 and no bad CRCs).
    fn build(prefix: &[u8], entries: &[Raw]) -> Vec<u8> {
        let mut out = prefix.to_vec();
        let mut central = Vec::new();
        for e in entries {
            let body = if e.method == 8 {
                let mut z =
                    flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::fast());
                z.write_all(&e.data).unwrap();
                z.finish().unwrap()
            } else {
                e.data.clone()
            };
            let crc = crc32(&e.data) ^ u32::from(e.bad_crc);
            let offset = (out.len() - prefix.len()) as u64;
            let descriptor = e.flags & 8 != 0;
            out.extend(LOCAL.to_le_bytes());
            out.extend([20, 0]);
            out.extend(e.flags.to_le_bytes());
            out.extend(e.method.to_le_bytes());
            out.extend([0; 4]);
            for v in [crc, body.len() as u32, e.data.len() as u32] {
                out.extend(if descriptor { 0 } else { v }.to_le_bytes());
            }
            out.extend((e.name.len() as u16).to_le_bytes());
            out.extend([0, 0]);
            out.extend(&e.name);
            out.extend(&body);
            let mut extra = e.extra.clone();
            let (mut compressed, mut size, mut at) =
                (body.len() as u32, e.data.len() as u32, offset as u32);
            if e.zip64 {
                extra.extend(1u16.to_le_bytes());
                extra.extend(24u16.to_le_bytes());
                for v in [e.data.len() as u64, body.len() as u64, offset] {
                    extra.extend(v.to_le_bytes());
                }
                (compressed, size, at) = (u32::MAX, u32::MAX, u32::MAX);
            }
            central.extend(CENTRAL.to_le_bytes());
            central.extend([20, 0, 20, 0]);
            central.extend(e.flags.to_le_bytes());
            central.extend(e.method.to_le_bytes());
            central.extend([0; 4]);
            for v in [crc, compressed, size] {
                central.extend(v.to_le_bytes());
            }
            central.extend((e.name.len() as u16).to_le_bytes());
            central.extend((extra.len() as u16).to_le_bytes());
            central.extend([0; 10]);
            central.extend(at.to_le_bytes());
            central.extend(&e.name);
            central.extend(&extra);
        }
        let start = (out.len() - prefix.len()) as u32;
        out.extend(&central);
        out.extend(END.to_le_bytes());
        out.extend([0; 4]);
        out.extend((entries.len() as u16).to_le_bytes());
        out.extend((entries.len() as u16).to_le_bytes());
        out.extend((central.len() as u32).to_le_bytes());
        out.extend(start.to_le_bytes());
        out.extend([0, 0]);
        out
    }

    fn source_of(bytes: &[u8]) -> (tempfile::TempDir, io::Result<ZipSource>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.zip");
        std::fs::write(&path, bytes).unwrap();
        let source = ZipSource::read(path);
        (dir, source)
    }

    /// Each entry's name and content (or the error opening or reading it gave).
    fn entries(source: &ZipSource) -> Vec<(String, io::Result<Vec<u8>>)> {
        (0..source.len())
            .map(|i| {
                let read = source.open(i).and_then(|(mut r, _, _)| {
                    let mut out = Vec::new();
                    r.read_to_end(&mut out).map(|_| out)
                });
                (source.name(i), read)
            })
            .collect()
    }

    fn contents(source: &ZipSource) -> Vec<(String, String)> {
        entries(source)
            .into_iter()
            .map(|(n, r)| (n, String::from_utf8(r.unwrap()).unwrap()))
            .collect()
    }

    #[test]
    fn entries_are_in_name_order_and_a_repeated_name_is_numbered_in_directory_order() {
        let (_dir, source) = source_of(&build(
            b"",
            &[
                raw("b", "1"),
                raw("a", "2"),
                raw("dir/", ""),
                raw("a", "3"),
                raw("a#", "4"),
            ],
        ));
        let source = source.unwrap();
        let want = [("a#1", "2"), ("a#2", "3"), ("a#", "4"), ("b", "1")];
        let want: Vec<(String, String)> = want
            .iter()
            .map(|(n, d)| (n.to_string(), d.to_string()))
            .collect();
        assert_eq!(contents(&source), want);
        assert_eq!(source.compressed(), 4);
    }

    #[test]
    fn names_decode_as_the_zip_crate_decodes_them() {
        let mut cp437 = raw("", "x");
        cp437.name = (0x80..=0xFF).chain(*b"-cp437").collect();
        let mut utf8 = raw("été-utf8", "y");
        utf8.flags = 1 << 11;
        // An Info-ZIP Unicode Path field that matches the name wins over it.
        let mut unicode = raw("", "z");
        unicode.name = b"\x82t\x82-unicode".to_vec();
        let mut body = vec![1];
        body.extend(crc32(&unicode.name).to_le_bytes());
        body.extend("ÉTÉ-unicode".as_bytes());
        unicode.extra.extend(0x7075u16.to_le_bytes());
        unicode.extra.extend((body.len() as u16).to_le_bytes());
        unicode.extra.extend(body);
        let bytes = build(b"", &[cp437, utf8, unicode]);
        let (_dir, source) = source_of(&bytes);
        let ours: Vec<String> = contents(&source.unwrap())
            .into_iter()
            .map(|e| e.0)
            .collect();
        let crate_reads = ::zip::ZipArchive::new(io::Cursor::new(bytes)).unwrap();
        let mut theirs: Vec<String> = crate_reads.file_names().map(str::to_string).collect();
        theirs.sort();
        assert_eq!(ours, theirs);
        assert!(ours.contains(&"ÉTÉ-unicode".to_string()), "{ours:?}");
    }

    #[test]
    fn zip64_fields_a_data_descriptor_deflate_and_a_prefix_are_followed() {
        let mut wide = raw("wide.jsonl", "{\"a\":1}\n");
        wide.zip64 = true;
        let mut later = raw("later.jsonl", "{\"b\":2}\n");
        later.flags = 8;
        later.method = 8;
        let (_dir, source) = source_of(&build(b"#!/bin/sh\nexit 0\n", &[wide, later]));
        assert_eq!(
            contents(&source.unwrap()),
            [
                ("later.jsonl".to_string(), "{\"b\":2}\n".to_string()),
                ("wide.jsonl".to_string(), "{\"a\":1}\n".to_string())
            ]
        );
    }

    #[test]
    fn damaged_encrypted_and_unsupported_entries_fail_with_why() {
        let mut crc = raw("crc", "abc\n");
        crc.bad_crc = true;
        let mut big = raw("", "");
        big.name = b"crc-big".to_vec();
        big.data = vec![b'x'; SMALL_ENTRY as usize * 2];
        big.bad_crc = true;
        big.method = 8;
        let mut locked = raw("locked", "secret\n");
        locked.flags = 1;
        let mut bzip = raw("method", "bz\n");
        bzip.method = 12;
        let (_dir, source) = source_of(&build(b"", &[crc, big, locked, bzip, raw("ok", "ok\n")]));
        let got: Vec<(String, Result<Vec<u8>, String>)> = entries(&source.unwrap())
            .into_iter()
            .map(|(n, r)| (n, r.map_err(|e| e.to_string())))
            .collect();
        let why = |i: usize| got[i].1.as_ref().unwrap_err().clone();
        assert_eq!(
            got.iter().map(|g| g.0.as_str()).collect::<Vec<_>>(),
            ["crc", "crc-big", "locked", "method", "ok"]
        );
        assert!(why(0).contains("CRC"), "{}", why(0));
        assert!(why(1).contains("CRC"), "{}", why(1));
        assert!(why(2).contains("encrypted"), "{}", why(2));
        assert!(why(3).contains("method 12"), "{}", why(3));
        assert_eq!(got[4].1.as_deref(), Ok(&b"ok\n"[..]));
    }

    #[test]
    fn a_damaged_deflate_stream_gives_the_bytes_decoded_before_the_damage_whatever_the_reads() {
        for lines in [2_000, 30_000] {
            let text: String = (0..lines)
                .map(|i| format!("{{\"n\":{i},\"op\":\"op-{}\"}}\n", i * 7919 % 1013))
                .collect();
            let mut entry = raw("a", &text);
            entry.method = 8;
            let mut bytes = build(b"", &[entry]);
            let body = u32_at(&bytes, 18).unwrap() as usize;
            bytes[30 + 1 + body / 2] ^= 0x10;
            let (_dir, source) = source_of(&bytes);
            let source = source.unwrap();
            let read_by = |size: usize| {
                let (mut r, _, _) = source.open(0).unwrap();
                let (mut out, mut buf) = (Vec::new(), vec![0; size]);
                loop {
                    match r.read(&mut buf) {
                        Ok(0) => return (out, None),
                        Ok(n) => out.extend_from_slice(&buf[..n]),
                        Err(e) => return (out, Some(e.to_string())),
                    }
                }
            };
            let (small, why) = read_by(64);
            assert!(why.is_some(), "{lines} lines: the damage is reported");
            let (large, large_why) = read_by(1 << 20);
            assert!(
                large == small && large_why == why,
                "{lines} lines: {} bytes then {large_why:?} against {} bytes then {why:?}",
                large.len(),
                small.len()
            );
            let kept = small
                .iter()
                .zip(text.as_bytes())
                .take_while(|(a, b)| a == b);
            assert!(
                kept.count() > text.len() / 4,
                "{lines} lines: {} bytes",
                small.len()
            );
        }
    }

    #[test]
    fn not_a_zip_archive_is_an_error() {
        for bytes in [&b"PK\x03\x04 not really"[..], b"", b"PK\x05\x06"] {
            let (_dir, source) = source_of(bytes);
            assert!(source.is_err(), "{bytes:?}");
        }
    }

    /// An archive the zip crate writes: stored or deflated entries (zip64 fields for
    /// some), names with directories and non-ASCII text, bytes before it.
    fn written(entries: &[(String, Vec<u8>, bool, bool)], prefix: &[u8]) -> Vec<u8> {
        let mut w = ::zip::ZipWriter::new(io::Cursor::new(Vec::new()));
        w.set_raw_comment(b"a comment".to_vec().into());
        for (name, data, deflate, large) in entries {
            let method = if *deflate {
                ::zip::CompressionMethod::Deflated
            } else {
                ::zip::CompressionMethod::Stored
            };
            let options = ::zip::write::SimpleFileOptions::default()
                .compression_method(method)
                .large_file(*large);
            if name.ends_with('/') {
                w.add_directory(name.as_str(), options).unwrap();
            } else {
                w.start_file(name.as_str(), options).unwrap();
                w.write_all(data).unwrap();
            }
        }
        let mut out = prefix.to_vec();
        out.extend(w.finish().unwrap().into_inner());
        out
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        /// Differential: the entries, their names, order and bytes, are what the zip
        /// crate reads (its names sorted, directories left out).
        #[test]
        fn entries_read_as_the_zip_crate_reads_them(
            names in proptest::collection::btree_set("[ab/é]{1,6}", 0..12),
            data in proptest::collection::vec(
                (proptest::collection::vec(any::<u8>(), 0..2000), any::<bool>(), any::<bool>()),
                12,
            ),
            prefix in proptest::collection::vec(any::<u8>(), 0..40),
        ) {
            let made: Vec<(String, Vec<u8>, bool, bool)> = names
                .into_iter()
                .zip(data)
                .map(|(n, (d, deflate, large))| (n, d, deflate, large))
                .collect();
            let bytes = written(&made, &prefix);
            let mut theirs = ::zip::ZipArchive::new(io::Cursor::new(bytes.clone())).unwrap();
            let mut want: Vec<(String, Vec<u8>)> = Vec::new();
            for i in 0..theirs.len() {
                let mut f = theirs.by_index(i).unwrap();
                if !f.name().ends_with('/') {
                    let mut out = Vec::new();
                    f.read_to_end(&mut out).unwrap();
                    want.push((f.name().to_string(), out));
                }
            }
            want.sort();
            let (_dir, source) = source_of(&bytes);
            let source = source.unwrap();
            let got: Vec<(String, Vec<u8>)> =
                entries(&source).into_iter().map(|(n, r)| (n, r.unwrap())).collect();
            prop_assert_eq!(got, want);
        }

        /// Damage anywhere (a byte changed, the file cut) is an error for the archive or
        /// for an entry, never a panic or a hang.
        #[test]
        fn a_damaged_archive_is_an_error_not_a_panic(
            at in any::<prop::sample::Index>(),
            byte in any::<u8>(),
            cut in any::<bool>(),
        ) {
            let mut bytes = build(b"", &[raw("a", "1\n"), raw("b", "22\n"), raw("a", "3\n")]);
            let at = at.index(bytes.len());
            if cut {
                bytes.truncate(at);
            } else {
                bytes[at] = byte;
            }
            let (_dir, source) = source_of(&bytes);
            if let Ok(source) = source {
                prop_assert!(source.len() <= 3);
                let _ = entries(&source);
            }
        }
    }
}
