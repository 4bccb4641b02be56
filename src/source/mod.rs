//! Inputs: finding them, recognising their compression, and reading them.
//!
//! Place in the flow: first stage. [`discover()`] expands the paths the user gave
//! (directories recursively, in sorted order; `-` is stdin; a `.zip` archive is each of
//! its entries). [`open`] looks at the magic bytes, not the name: plain files are
//! memory-mapped (read into memory where mapping is refused), gzip (multi-member
//! included), zstd, zip entries and stdin become a stream that [`BlockReader`] cuts into
//! large blocks at the last newline, carrying the tail into the next block, so a stream is
//! never held whole in memory. UTF-16 text (a byte order mark, or NUL every other byte)
//! is streamed too, transcoded to UTF-8 after decompression (`crate::utf16`). [`Layout`]
//! tells from the first bytes how the records are laid out. Nothing here parses lines, and nothing here prints: progress is only counted.
//!
//! The parts: `discover` (paths → inputs), `zip` (entries of `.zip` archives, streamed),
//! `sniff` (the layout, from the first bytes), `blocks` (a stream cut into line-aligned
//! blocks); this file opens an input and recognises its compression.

mod blocks;
mod discover;
mod sniff;
mod zip;

pub use self::blocks::{Block, BlockReader, Filled};
pub use self::discover::{DiscoverError, discover};
pub use self::sniff::{Layout, strip_bom};
pub use self::zip::ZipSource;

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use memmap2::Mmap;

use self::zip::zip_entry;

/// One input to scan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    /// Standard input.
    Stdin,
    /// A file on disk.
    File(PathBuf),
    /// A file inside a `.zip` archive (found by its magic bytes).
    ZipEntry {
        /// The archive, its directory read once for all its entries.
        archive: Arc<ZipSource>,
        /// The entry's index in the archive.
        index: usize,
        /// The entry's name in the archive.
        name: String,
    },
}

impl Input {
    /// The name used in reports: the path as given (and as found under a directory),
    /// or `-` for stdin.
    pub fn display(&self) -> String {
        match self {
            Input::Stdin => "-".to_string(),
            Input::File(p) => p.display().to_string(),
            Input::ZipEntry { archive, name, .. } => format!("{}!{name}", archive.path.display()),
        }
    }
}

/// Compression recognised from the first bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    /// Not compressed.
    None,
    /// gzip (RFC 1952), any number of members.
    Gzip,
    /// Zstandard (RFC 8878), any number of frames.
    Zstd,
}

impl Compression {
    /// Recognises compression from magic bytes.
    pub fn sniff(head: &[u8]) -> Compression {
        if head.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compression::Zstd
        } else {
            Compression::None
        }
    }

    /// A short name for reports.
    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "plain",
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
        }
    }
}

/// The bytes of a plain input held in memory.
pub enum Mapped {
    /// A memory map of the file.
    Map(Mmap),
    /// The file read into memory (mapping was refused).
    Read(Vec<u8>),
}

impl Mapped {
    /// The bytes, with a leading UTF-8 byte order mark removed.
    pub fn bytes(&self) -> &[u8] {
        let data = match self {
            Mapped::Map(m) => &m[..],
            Mapped::Read(v) => &v[..],
        };
        strip_bom(data)
    }
}

/// An opened input.
pub enum Opened {
    /// A plain file, mapped.
    Mapped(Mapped),
    /// A stream to read in blocks (gzip, stdin, or a file that could not be mapped).
    Stream {
        /// The decompressed byte stream.
        reader: Box<dyn Read + Send>,
        /// What was recognised.
        compression: Compression,
        /// What the decompressor had to say that is no error (zero padding after the
        /// last gzip member), to read once the stream is read.
        notes: crate::inflate::Notes,
    },
}

/// Opens an input and recognises its compression. Bytes read from a stream (compressed
/// bytes, for compressed inputs) are added to `progress` as they are read.
pub fn open(input: &Input, progress: &Option<Arc<Progress>>) -> io::Result<Opened> {
    match input {
        Input::Stdin => {
            let counted = Counted {
                inner: io::stdin(),
                progress: progress.clone(),
            };
            stream(Box::new(BufReader::with_capacity(1 << 20, counted)))
        }
        Input::File(path) => open_file(path, progress),
        Input::ZipEntry { archive, index, .. } => stream(zip_entry(archive, *index)?),
    }
}

/// How far a run has got, shared with whoever shows it (the binary's progress bar).
/// The engine only counts; it never prints.
#[derive(Debug, Default)]
pub struct Progress {
    /// Input bytes read so far (on-disk bytes: compressed ones for compressed inputs).
    pub done: AtomicU64,
    /// On-disk size of all file inputs (stdin is not counted in it).
    pub total: AtomicU64,
    /// Set when the scan is over.
    pub finished: std::sync::atomic::AtomicBool,
}

/// A reader that adds the bytes it reads to a shared progress counter.
struct Counted<R> {
    inner: R,
    progress: Option<Arc<Progress>>,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some(p) = &self.progress {
            p.done.fetch_add(n as u64, Ordering::Relaxed);
        }
        Ok(n)
    }
}

fn open_file(path: &Path, progress: &Option<Arc<Progress>>) -> io::Result<Opened> {
    let file = File::open(path)?;
    let meta = file.metadata()?;
    let mut head = [0u8; crate::utf16::SNIFF];
    let n = read_head(&file, &mut head)?;
    // Exports (issue 8): a UTF-16 file is transcoded as a stream, never mapped.
    let utf16 = crate::utf16::sniff(&head[..n]).is_some();
    let compression = Compression::sniff(&head[..n]);
    if compression == Compression::Gzip
        && meta.is_file()
        && let Some(opened) = open_parallel_gzip(path, &file, meta.len(), progress)
    {
        return Ok(opened);
    }
    if compression != Compression::None || utf16 || !meta.is_file() {
        // Pipes and devices cannot be mapped; reopen so the stream starts at byte 0.
        let reader: Box<dyn BufRead + Send> = if meta.is_file() {
            match map_file(&file) {
                // The decompressor reads the mapped bytes in place: no read buffer,
                // no copy.
                Some(map) => Box::new(MappedInput {
                    map,
                    pos: 0,
                    progress: progress.clone(),
                }),
                None => {
                    let counted = Counted {
                        inner: File::open(path)?,
                        progress: progress.clone(),
                    };
                    Box::new(BufReader::with_capacity(1 << 20, counted))
                }
            }
        } else {
            let chained = io::Cursor::new(head[..n].to_vec()).chain(file);
            Box::new(BufReader::with_capacity(
                1 << 20,
                Counted {
                    inner: chained,
                    progress: progress.clone(),
                },
            ))
        };
        return stream(reader);
    }
    if meta.len() == 0 {
        return Ok(Opened::Mapped(Mapped::Read(Vec::new())));
    }
    // SAFETY: the map is read-only and private to this process. Another process
    // truncating the file while it is mapped could raise SIGBUS; that is the same
    // trade-off ripgrep makes for single large files, and it is what makes a scan at
    // memory speed possible. Where mapping fails we fall back to reading.
    match unsafe { Mmap::map(&file) } {
        Ok(map) => {
            #[cfg(unix)]
            {
                let _ = map.advise(memmap2::Advice::Sequential);
            }
            Ok(Opened::Mapped(Mapped::Map(map)))
        }
        Err(_) => {
            let mut data = Vec::with_capacity(meta.len() as usize);
            File::open(path)?.read_to_end(&mut data)?;
            Ok(Opened::Mapped(Mapped::Read(data)))
        }
    }
}

/// A large gzip file inflated by several workers (see `inflate::parallel`), when the
/// cores are idle; `None` for the sequential path.
fn open_parallel_gzip(
    path: &Path,
    file: &File,
    len: u64,
    progress: &Option<Arc<Progress>>,
) -> Option<Opened> {
    let workers = crate::inflate::parallel_workers(len)?;
    // Zero padding at the end (tape, dd) would make the parallel decoder fail and the
    // file be read twice: read such a file sequentially from the start.
    let mut tail = [0u8; 8];
    let at = len.saturating_sub(tail.len() as u64);
    if len < 18 || read_exact_at(file, &mut tail, at).is_err() || tail == [0; 8] {
        return None;
    }
    let again = path.to_path_buf();
    let sequential = Box::new(move |notes| {
        let file = File::open(&again)?;
        let input: Box<dyn BufRead + Send> = match map_file(&file) {
            Some(map) => Box::new(MappedInput {
                map,
                pos: 0,
                progress: None,
            }),
            None => Box::new(BufReader::with_capacity(1 << 20, file)),
        };
        Ok(crate::inflate::gzip_reader(input, notes))
    });
    let notes = crate::inflate::Notes::default();
    let reader = crate::inflate::parallel::reader(
        File::open(path).ok()?,
        workers,
        progress.clone(),
        notes.clone(),
        sequential,
    )
    .ok()?;
    Some(Opened::Stream {
        reader: crate::utf16::utf8_reader(reader),
        compression: Compression::Gzip,
        notes,
    })
}

fn read_exact_at(file: &File, buf: &mut [u8], at: u64) -> io::Result<()> {
    #[cfg(unix)]
    {
        std::os::unix::fs::FileExt::read_exact_at(file, buf, at)
    }
    #[cfg(not(unix))]
    {
        use std::io::{Seek, SeekFrom};
        let mut f = file.try_clone()?;
        f.seek(SeekFrom::Start(at))?;
        f.read_exact(buf)
    }
}

/// Maps a file for reading, or `None` when it is empty or mapping is refused.
fn map_file(file: &File) -> Option<Mmap> {
    // SAFETY: as for plain files below: read-only, private; a truncation by another
    // process while mapped could raise SIGBUS, the trade-off ripgrep makes too.
    let map = unsafe { Mmap::map(file) }.ok()?;
    #[cfg(unix)]
    {
        let _ = map.advise(memmap2::Advice::Sequential);
    }
    (!map.is_empty()).then_some(map)
}

/// A mapped file read as a stream: [`BufRead::fill_buf`] hands out all the bytes not
/// yet consumed, so a decompressor reads them in place. Consumed bytes count as progress.
struct MappedInput {
    map: Mmap,
    pos: usize,
    progress: Option<Arc<Progress>>,
}

/// Consumed bytes of a mapped stream are unmapped in steps of this much, so the
/// resident size stays bounded whatever the file's size.
const RELEASE: usize = 8 << 20;

impl Read for MappedInput {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.fill_buf()?.read(buf)?;
        self.consume(n);
        Ok(n)
    }
}

impl BufRead for MappedInput {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        Ok(&self.map[self.pos..])
    }

    fn consume(&mut self, n: usize) {
        let n = n.min(self.map.len() - self.pos);
        let before = self.pos;
        self.pos += n;
        if let Some(p) = &self.progress {
            p.done.fetch_add(n as u64, Ordering::Relaxed);
        }
        #[cfg(unix)]
        if before / RELEASE != self.pos / RELEASE {
            let (start, end) = (before / RELEASE * RELEASE, self.pos / RELEASE * RELEASE);
            // SAFETY: the map is a read-only, private map of a file: dropping its pages
            // loses nothing (they are read again from the file if touched), and the
            // bytes before `pos` are never read again; no slice of them is borrowed
            // (`consume` takes `&mut self`).
            let _ = unsafe {
                self.map.unchecked_advise_range(
                    memmap2::UncheckedAdvice::DontNeed,
                    start,
                    end - start,
                )
            };
        }
    }
}

fn read_head(mut file: &File, head: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < head.len() {
        match file.read(&mut head[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

fn stream(mut reader: Box<dyn BufRead + Send>) -> io::Result<Opened> {
    // The magic bytes may arrive split over reads (a slow pipe): gather them first.
    let mut head = Vec::with_capacity(4);
    (&mut reader).take(4).read_to_end(&mut head)?;
    let compression = Compression::sniff(&head);
    let reader: Box<dyn BufRead + Send> = Box::new(io::Cursor::new(head).chain(reader));
    let notes = crate::inflate::Notes::default();
    let reader: Box<dyn Read + Send> = match compression {
        Compression::Gzip => crate::inflate::gzip_reader(reader, notes.clone()),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(reader)?),
        Compression::None => Box::new(reader),
    };
    // Exports (issue 8): UTF-16 text (after decompression) is transcoded to UTF-8.
    let reader = crate::utf16::utf8_reader(reader);
    Ok(Opened::Stream {
        reader,
        compression,
        notes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn zstd_is_sniffed_and_streamed() {
        let data = b"a\nb\n".repeat(1000);
        let z = zstd::encode_all(&data[..], 3).unwrap();
        let Opened::Stream {
            mut reader,
            compression,
            ..
        } = stream(Box::new(BufReader::new(io::Cursor::new(z.clone())))).unwrap()
        else {
            panic!("zstd must stream")
        };
        assert_eq!(compression, Compression::Zstd);
        let mut out = Vec::new();
        reader.read_to_end(&mut out).unwrap();
        assert_eq!(out, data);
        let Opened::Stream { mut reader, .. } = stream(Box::new(BufReader::new(io::Cursor::new(
            z[..z.len() / 2].to_vec(),
        ))))
        .unwrap() else {
            panic!()
        };
        assert!(
            reader.read_to_end(&mut Vec::new()).is_err(),
            "a cut zstd stream is an error"
        );
    }

    #[test]
    fn gzip_is_sniffed_and_multi_member_streams_are_read_whole() {
        let mut gz = Vec::new();
        for part in [&b"a\n"[..], b"b\n"] {
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            enc.write_all(part).unwrap();
            gz.extend(enc.finish().unwrap());
        }
        let Opened::Stream {
            mut reader,
            compression,
            ..
        } = stream(Box::new(BufReader::new(io::Cursor::new(gz)))).unwrap()
        else {
            panic!("gzip must stream")
        };
        assert_eq!(compression, Compression::Gzip);
        let mut out = Vec::new();
        reader.read_to_end(&mut out).unwrap();
        assert_eq!(out, b"a\nb\n");
    }
}
