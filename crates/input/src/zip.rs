//! Zip archives: an archive's directory is read once (by discovery) and shared by all its
//! entries; each entry is decompressed on its own thread and handed over through a pipe
//! as a stream, read from one open file with positional reads. An entry is never held
//! whole in memory, and an error met while decompressing reaches the reader instead of
//! passing for a clean end of stream.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A `.zip` archive whose directory has been read.
#[derive(Debug)]
pub struct ZipSource {
    /// Where it is.
    pub path: PathBuf,
    pub(super) archive: ::zip::ZipArchive<SharedFile>,
}

/// An entry the zip crate does not hand out: an earlier entry of the same name as a
/// later one (the crate keeps one entry per name, the last), read from the central
/// directory's own record of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shadowed {
    /// Offset of its local header in the file.
    header: u64,
    compressed: u64,
    size: u64,
    method: u16,
    flags: u16,
    crc: u32,
}

/// One file entry of the central directory, in directory order.
#[derive(Debug)]
pub(super) struct DirEntry {
    pub(super) name: String,
    pub(super) shadowed: Shadowed,
}

/// The central directory's file entries, read directly (the zip crate keeps one entry
/// per name): `None` when it cannot be read this way (then the crate's list is used).
pub(super) fn central_directory(source: &ZipSource) -> Option<Vec<DirEntry>> {
    let mut file = source.archive.clone().into_inner();
    let start = source.archive.central_directory_start();
    let prefix = source.archive.offset();
    let end = file.len;
    let mut dir = vec![0u8; usize::try_from(end.checked_sub(start)?).ok()?.min(1 << 30)];
    io::Seek::seek(&mut file, io::SeekFrom::Start(start)).ok()?;
    file.read_exact(&mut dir).ok()?;
    let u16_at =
        |b: &[u8], at: usize| Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?));
    let u32_at =
        |b: &[u8], at: usize| Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?));
    let u64_at =
        |b: &[u8], at: usize| Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?));
    let mut entries = Vec::new();
    let mut at = 0;
    while u32_at(&dir, at) == Some(0x0201_4b50) {
        let h = dir.get(at..)?;
        let (flags, method, crc) = (u16_at(h, 8)?, u16_at(h, 10)?, u32_at(h, 16)?);
        let (mut compressed, mut size) = (u64::from(u32_at(h, 20)?), u64::from(u32_at(h, 24)?));
        let (name_len, extra_len, comment_len) = (
            usize::from(u16_at(h, 28)?),
            usize::from(u16_at(h, 30)?),
            usize::from(u16_at(h, 32)?),
        );
        let mut header = u64::from(u32_at(h, 42)?);
        let name = String::from_utf8_lossy(h.get(46..46 + name_len)?).into_owned();
        // Zip64: the sizes and offset that do not fit are in extra field 0x0001, in order.
        let mut extra = h.get(46 + name_len..46 + name_len + extra_len)?;
        while extra.len() >= 4 {
            let (id, len) = (u16_at(extra, 0)?, usize::from(u16_at(extra, 2)?));
            let body = extra.get(4..4 + len)?;
            if id == 1 {
                let mut k = 0;
                for v in [&mut size, &mut compressed, &mut header] {
                    if *v == 0xFFFF_FFFF {
                        *v = u64_at(body, k)?;
                        k += 8;
                    }
                }
            }
            extra = &extra[4 + len..];
        }
        if !name.ends_with('/') {
            entries.push(DirEntry {
                name,
                shadowed: Shadowed {
                    header: header + prefix,
                    compressed,
                    size,
                    method,
                    flags,
                    crc,
                },
            });
        }
        at += 46 + name_len + extra_len + comment_len;
    }
    Some(entries)
}

/// Streams an entry the crate does not hand out: stored or deflated, its CRC checked at
/// the end.
pub(super) fn shadowed_entry(
    source: &ZipSource,
    e: Shadowed,
) -> io::Result<Box<dyn BufRead + Send>> {
    let unsupported =
        |what: &str| Err(io::Error::new(io::ErrorKind::Unsupported, what.to_string()));
    if e.flags & 1 != 0 {
        return unsupported("encrypted zip entry");
    }
    let mut file = source.archive.clone().into_inner();
    let mut local = [0u8; 30];
    io::Seek::seek(&mut file, io::SeekFrom::Start(e.header))?;
    file.read_exact(&mut local)?;
    if local[..4] != [0x50, 0x4b, 0x03, 0x04] {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "zip entry has no local header",
        ));
    }
    let skip = u64::from(u16::from_le_bytes([local[26], local[27]]))
        + u64::from(u16::from_le_bytes([local[28], local[29]]));
    io::Seek::seek(&mut file, io::SeekFrom::Start(e.header + 30 + skip))?;
    let data = file.take(e.compressed);
    let reader: Box<dyn Read + Send> = match e.method {
        0 => Box::new(data),
        8 => Box::new(flate2::read::DeflateDecoder::new(data)),
        _ => return unsupported("zip entry compressed with a method other than deflate"),
    };
    Ok(Box::new(BufReader::with_capacity(
        1 << 20,
        Checked {
            inner: reader,
            crc: flate2::Crc::new(),
            want: e.crc,
            size: e.size,
        },
    )))
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
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "zip entry's CRC or size does not match its directory",
            ));
        }
        Ok(n)
    }
}

impl ZipSource {
    /// An entry's compressed and decompressed sizes, as its directory says.
    pub fn sizes(&self, index: usize, shadowed: Option<Shadowed>) -> (u64, u64) {
        match shadowed {
            Some(e) => (e.compressed, e.size),
            None => self
                .archive
                .clone()
                .by_index_raw(index)
                .map_or((0, 0), |f| (f.compressed_size(), f.size())),
        }
    }
}

impl PartialEq for ZipSource {
    fn eq(&self, other: &ZipSource) -> bool {
        self.path == other.path
    }
}

impl Eq for ZipSource {}

/// A file read at its own offset by each clone (positional reads), so every entry of an
/// archive can be read at once from one open file and one parsed directory.
#[derive(Clone, Debug)]
pub(super) struct SharedFile {
    file: Arc<File>,
    pos: u64,
    len: u64,
}

impl SharedFile {
    pub(super) fn open(path: &Path) -> io::Result<SharedFile> {
        let file = File::open(path)?;
        let len = file.metadata()?.len();
        Ok(SharedFile {
            file: Arc::new(file),
            pos: 0,
            len,
        })
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

impl io::Seek for SharedFile {
    fn seek(&mut self, to: io::SeekFrom) -> io::Result<u64> {
        let target = match to {
            io::SeekFrom::Start(p) => Some(p),
            io::SeekFrom::End(d) => self.len.checked_add_signed(d),
            io::SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        self.pos = target
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "seek before start"))?;
        Ok(self.pos)
    }
}

/// Entries up to this size are read whole, without a thread.
const SMALL_ENTRY: u64 = 256 << 10;

/// Streams one zip entry, decompressed on its own thread through a pipe; an error the
/// thread meets is handed to the reader at the end instead of a clean end of stream.
pub(super) fn zip_entry(source: &ZipSource, index: usize) -> io::Result<Box<dyn BufRead + Send>> {
    // A small entry (the usual export part) is read here, whole: a thread and a pipe
    // per entry cost more than the entry when an archive holds 100 000 of them.
    let mut archive = source.archive.clone();
    let size = archive
        .by_index_raw(index)
        .map(|f| f.size())
        .unwrap_or(u64::MAX);
    if size <= SMALL_ENTRY {
        let mut data = Vec::with_capacity(size as usize);
        let mut entry = archive.by_index(index)?;
        // The directory's size is only a claim: read one byte past it to see.
        (&mut entry).take(SMALL_ENTRY + 1).read_to_end(&mut data)?;
        if data.len() as u64 <= SMALL_ENTRY {
            return Ok(Box::new(io::Cursor::new(data)));
        }
    }
    let (reader, mut writer) = io::pipe()?;
    let failure: Arc<std::sync::Mutex<Option<io::Error>>> = Arc::default();
    // A clone shares the parsed directory and reads the file at its own offset.
    let (mut archive, slot) = (source.archive.clone(), failure.clone());
    std::thread::spawn(move || {
        let copied = (|| -> io::Result<()> {
            let mut entry = archive.by_index(index)?;
            io::copy(&mut entry, &mut writer)?;
            Ok(())
        })();
        if let Err(e) = copied {
            // A closed pipe means the reader stopped early (e.g. an unsupported layout).
            if e.kind() != io::ErrorKind::BrokenPipe
                && let Ok(mut slot) = slot.lock()
            {
                *slot = Some(e);
            }
        }
        drop(writer);
    });
    Ok(Box::new(BufReader::with_capacity(
        1 << 20,
        PipeEnd { reader, failure },
    )))
}

/// The reading end of a zip entry's pipe.
struct PipeEnd {
    reader: io::PipeReader,
    failure: Arc<std::sync::Mutex<Option<io::Error>>>,
}

impl Read for PipeEnd {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.reader.read(buf)?;
        if n == 0 && !buf.is_empty() {
            // The writer is gone: was it an error?
            if let Some(e) = self.failure.lock().ok().and_then(|mut s| s.take()) {
                return Err(e);
            }
        }
        Ok(n)
    }
}
