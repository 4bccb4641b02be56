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
//! This file opens an input and recognises its compression; the crate's root lists the
//! other parts.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use std::sync::Arc;
use std::sync::atomic::Ordering;

use memmap2::Mmap;

use crate::progress::Progress;
use crate::{Change, GuardedMap, ZipSource, guard, strip_bom};

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
        /// The entry's place among the archive's file entries, in input order (its name
        /// is read from the archive when asked for: see [`ZipSource::name`]).
        entry: u32,
    },
}

impl Input {
    /// The name used in reports: the path as given (and as found under a directory),
    /// or `-` for stdin.
    pub fn display(&self) -> String {
        match self {
            Input::Stdin => "-".to_string(),
            Input::File(p) => p.display().to_string(),
            Input::ZipEntry { archive, entry } => {
                format!("{}!{}", archive.path.display(), archive.name(*entry))
            }
        }
    }

    /// The entry's name in its archive, for a zip entry (`name#k` for the k-th of
    /// several entries of one name).
    pub fn member(&self) -> Option<String> {
        match self {
            Input::ZipEntry { archive, entry } => Some(archive.name(*entry)),
            _ => None,
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
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) || starts_skippable(head) {
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

/// Whether `head` opens with a zstd skippable frame (magic `0x184D2A50` to `0x184D2A5F`,
/// little-endian), as parallel zstd writers put before every frame to note its size.
fn starts_skippable(head: &[u8]) -> bool {
    matches!(head, [b0, 0x2a, 0x4d, 0x18, ..] if b0 & 0xf0 == 0x50)
}

/// The bytes of a plain input held in memory.
pub enum Mapped {
    /// A memory map of the file, guarded against the file being cut under it.
    Map(GuardedMap),
    /// The file read into memory (mapping was refused).
    Read(Vec<u8>),
}

impl Mapped {
    /// The bytes, with a leading UTF-8 byte order mark removed.
    pub fn bytes(&self) -> &[u8] {
        let data = match self {
            Mapped::Map(m) => m.bytes(),
            Mapped::Read(v) => &v[..],
        };
        strip_bom(data)
    }

    /// How many bytes of the whole map [`bytes`](Mapped::bytes) leaves out at its
    /// start (a byte order mark).
    pub fn skipped(&self) -> usize {
        let data = match self {
            Mapped::Map(m) => m.bytes(),
            Mapped::Read(v) => &v[..],
        };
        data.len() - strip_bom(data).len()
    }

    /// Bytes held, the byte order mark included.
    pub fn len_held(&self) -> usize {
        match self {
            Mapped::Map(m) => m.bytes().len(),
            Mapped::Read(v) => v.len(),
        }
    }

    /// Gives back the page table entries of `range` (offsets counted with the byte
    /// order mark) of a map ([`GuardedMap::release`]); nothing for bytes read into
    /// memory.
    pub fn release(&self, range: std::ops::Range<usize>) {
        if let Mapped::Map(m) = self {
            m.release(range);
        }
    }

    /// Whether the file changed while it was mapped (see [`GuardedMap::change`]).
    pub fn change(&self) -> Option<Change> {
        match self {
            Mapped::Map(m) => m.change(),
            Mapped::Read(_) => None,
        }
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
        /// The seek points noted as the stream is read, for a compressed file whose
        /// decompressed bytes are the stream's (not transcoded from UTF-16).
        seeks: Option<(crate::seek::Codec, crate::seek::Seeks)>,
    },
}

/// Opens an input and recognises its compression. Bytes read from a stream (compressed
/// bytes, for compressed inputs) are added to `progress` as they are read.
pub fn open(input: &Input, progress: &Option<Arc<Progress>>) -> io::Result<Opened> {
    open_noting(input, progress, crate::seek::SPACING)
}

/// [`open`], a compressed file noting a seek point every `spacing` bytes of output (see
/// `crate::seek`).
pub fn open_noting(
    input: &Input,
    progress: &Option<Arc<Progress>>,
    spacing: u64,
) -> io::Result<Opened> {
    match input {
        Input::Stdin => {
            let counted = Counted {
                inner: io::stdin(),
                progress: progress.clone(),
            };
            stream(Box::new(BufReader::with_capacity(1 << 20, counted)), None)
        }
        Input::File(path) => open_file(path, progress, spacing),
        Input::ZipEntry { archive, entry } => {
            let (entry, compressed, size) = archive.open(*entry)?;
            stream(
                Box::new(BufReader::new(ZipProgress {
                    inner: entry,
                    progress: progress.clone(),
                    compressed,
                    size,
                    read: 0,
                    counted: 0,
                })),
                None,
            )
        }
    }
}

impl Input {
    /// Its size on disk, for the progress bar's total (compressed bytes of a zip entry;
    /// none for stdin).
    pub fn disk_len(&self) -> Option<u64> {
        match self {
            Input::File(path) => std::fs::metadata(path).ok().map(|m| m.len()),
            Input::ZipEntry { archive, entry } => archive.sizes(*entry).ok().map(|s| s.0),
            Input::Stdin => None,
        }
    }
}

/// The inputs' size on disk, for the progress bar's total: [`Input::disk_len`] summed,
/// an archive all of whose entries are inputs counted at once from its directory (not
/// one record read per entry).
pub fn disk_total(inputs: &[Input]) -> u64 {
    let mut total = 0u64;
    let mut rest = inputs;
    while let Some(first) = rest.first() {
        let run = match first {
            Input::ZipEntry { archive, .. } => rest
                .iter()
                .take_while(
                    |i| matches!(i, Input::ZipEntry { archive: a, .. } if Arc::ptr_eq(a, archive)),
                )
                .count(),
            _ => 1,
        };
        let (these, after) = rest.split_at(run);
        total += match first {
            Input::ZipEntry { archive, .. } if run == archive.len() as usize => {
                archive.compressed()
            }
            _ => these.iter().filter_map(Input::disk_len).sum(),
        };
        rest = after;
    }
    total
}

/// Counts a zip entry's progress in compressed bytes (what the bar's total counts),
/// in proportion to the bytes decompressed so far, the rest when it ends.
struct ZipProgress<R> {
    inner: R,
    progress: Option<Arc<Progress>>,
    compressed: u64,
    size: u64,
    read: u64,
    counted: u64,
}

impl<R: Read> Read for ZipProgress<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        if let Some(p) = &self.progress {
            let due = if n == 0 || self.read >= self.size {
                self.compressed
            } else {
                (u128::from(self.compressed) * u128::from(self.read) / u128::from(self.size.max(1)))
                    as u64
            };
            if due > self.counted {
                p.done.fetch_add(due - self.counted, Ordering::Relaxed);
                self.counted = due;
            }
        }
        Ok(n)
    }
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

fn open_file(path: &Path, progress: &Option<Arc<Progress>>, spacing: u64) -> io::Result<Opened> {
    let file = open_special(path)?;
    let meta = file.metadata()?;
    let mut head = [0u8; crate::utf16::SNIFF];
    let n = read_head(&file, &mut head)?;
    // Exports (issue 8): a UTF-16 file is transcoded as a stream, never mapped.
    let utf16 = crate::utf16::sniff(&head[..n]).is_some();
    let compression = Compression::sniff(&head[..n]);
    // Discovery keeps a zip archive as a file input only when it is an Excel workbook.
    if head[..n].starts_with(b"PK\x03\x04") && meta.is_file() {
        let csv = crate::xlsx::csv_reader(path, progress.clone())?;
        return stream(Box::new(BufReader::with_capacity(1 << 20, csv)), None);
    }
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
                Some((map, registration)) => {
                    Box::new(MappedInput::new(map, registration, file, progress.clone()))
                }
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
        // Offsets in a regular file's stream are offsets in the file: seekable.
        return stream(reader, meta.is_file().then_some(spacing));
    }
    if meta.len() == 0 {
        return Ok(Opened::Mapped(Mapped::Read(Vec::new())));
    }
    match GuardedMap::map(file) {
        Ok(map) => Ok(Opened::Mapped(Mapped::Map(map))),
        Err(_) => {
            let mut data = Vec::with_capacity(meta.len() as usize);
            File::open(path)?.read_to_end(&mut data)?;
            Ok(Opened::Mapped(Mapped::Read(data)))
        }
    }
}

/// Opens a path for reading, refusing what would never end or never start: a
/// character device (`/dev/zero`, a terminal: `-` is the way to read standard input)
/// and a FIFO that no process has open for writing (opening it would wait for one).
fn open_special(path: &Path) -> io::Result<File> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
        let kind = std::fs::metadata(path)?.file_type();
        if kind.is_char_device() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a character device, not a file (it may never end; give - to read standard \
                 input)",
            ));
        }
        if kind.is_fifo() {
            // Opening without O_NONBLOCK waits for a writer; with it, a read that finds
            // no writer ends at once (0) while one that finds a writer with nothing
            // written yet would block (EAGAIN).
            let file = std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(path)?;
            let mut probe = [0u8; 1];
            let first = match (&file).read(&mut probe) {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        "a FIFO that no process is writing to (nothing to read)",
                    ));
                }
                Ok(_) => Some(probe[0]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => None,
                Err(e) => return Err(e),
            };
            set_blocking(&file)?;
            return match first {
                // The probe took a byte off the pipe: hand it back in front of the rest.
                Some(b) => pipe_with_first_byte(file, b),
                None => Ok(file),
            };
        }
    }
    File::open(path)
}

/// Clears O_NONBLOCK so that reads wait for the writer again.
#[cfg(unix)]
fn set_blocking(file: &File) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let fd = file.as_raw_fd();
    // SAFETY: fcntl on a descriptor this File owns, with integer arguments only.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0
        // SAFETY: as above.
        || unsafe { libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_NONBLOCK) } < 0
    {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// A FIFO whose first byte was already read: a new pipe fed with that byte and then the
/// FIFO's stream, by a thread (the FIFO is read once, in order, so nothing is lost).
#[cfg(unix)]
fn pipe_with_first_byte(fifo: File, first: u8) -> io::Result<File> {
    use std::os::fd::OwnedFd;
    let (reader, mut writer) = io::pipe()?;
    std::thread::spawn(move || {
        use std::io::Write;
        let mut fifo = fifo;
        if writer.write_all(&[first]).is_ok() {
            let _ = io::copy(&mut fifo, &mut writer);
        }
    });
    Ok(File::from(OwnedFd::from(reader)))
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
            Some((map, registration)) => Box::new(MappedInput::new(map, registration, file, None)),
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
        reader: crate::utf16::utf8_reader(reader, notes.clone()),
        compression: Compression::Gzip,
        notes,
        // rapidgzip's chunks are not member or block boundaries it tells of.
        seeks: None,
    })
}

pub(crate) fn read_exact_at(file: &File, buf: &mut [u8], at: u64) -> io::Result<()> {
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

/// Maps a file for reading, registered with the SIGBUS guard, or `None` when it is
/// empty, mapping is refused or the guard has no room (then the file is read, not
/// mapped).
fn map_file(file: &File) -> Option<(Mmap, guard::Registration)> {
    // SAFETY: as for plain files: read-only, private; a truncation by another process
    // while mapped raises SIGBUS, which the registration turns into zero pages (the
    // inflater then reports the stream as corrupt or cut where it stopped).
    let map = unsafe { Mmap::map(file) }.ok()?;
    #[cfg(unix)]
    {
        let _ = map.advise(memmap2::Advice::Sequential);
    }
    if map.is_empty() {
        return None;
    }
    let registration = guard::register(&map)?;
    Some((map, registration))
}

/// A mapped file read as a stream, a window at a time: each window is copied out of the
/// map and only then checked against the file, so the zero pages the guard puts past a
/// cut never reach a decompressor (they would be inflated into made-up text). A file
/// found cut ends the stream with an error that holds the [`Change`], after every byte
/// that was the file's.
struct MappedInput {
    // Dropped before the map: fields drop in declaration order.
    guard: guard::Registration,
    map: Mmap,
    file: File,
    len_before: u64,
    /// Where the next window starts in the map.
    pos: usize,
    window: Vec<u8>,
    /// Bytes of `window` consumed.
    at: usize,
    /// The file's end as found when it was cut under the stream.
    cut: Option<Change>,
    progress: Option<Arc<Progress>>,
}

/// The compressed bytes copied out of a map at a time (a copy costs far less than the
/// inflating of them).
const WINDOW: usize = 1 << 20;

/// Consumed bytes of a mapped stream are unmapped in steps of this much, so the
/// resident size stays bounded whatever the file's size.
const RELEASE: usize = 8 << 20;

impl MappedInput {
    fn new(
        map: Mmap,
        guard: guard::Registration,
        file: File,
        progress: Option<Arc<Progress>>,
    ) -> MappedInput {
        MappedInput {
            guard,
            len_before: map.len() as u64,
            map,
            file,
            pos: 0,
            window: Vec::new(),
            at: 0,
            cut: None,
            progress,
        }
    }

    /// Copies the next window out of the map, cut back to what the file still holds.
    fn next_window(&mut self) {
        let start = self.pos;
        let end = (start + WINDOW).min(self.map.len());
        self.window.clear();
        self.window.extend_from_slice(&self.map[start..end]);
        self.at = 0;
        // After the copy: a cut before it shows in the size, a page that failed while
        // copying in the fault (the rest of the page holding the new end reads as
        // zeros without one: the size says where those start).
        let len_now = self.file.metadata().map_or(0, |m| m.len());
        let fault = self.guard.fault().unwrap_or(u64::MAX);
        let valid = (end as u64).min(len_now).min(fault);
        if valid < end as u64 {
            self.window.truncate((valid as usize).saturating_sub(start));
            self.cut = Some(Change {
                valid,
                truncated: true,
                len_before: self.len_before,
                len_after: len_now,
            });
        }
        self.pos = end;
        #[cfg(unix)]
        if start / RELEASE != end / RELEASE {
            let (from, to) = (start / RELEASE * RELEASE, end / RELEASE * RELEASE);
            // SAFETY: the map is a read-only, private map of a file: dropping its pages
            // loses nothing (they are read again from the file if touched), and the
            // bytes before `end` are never read from the map again (they were copied);
            // no slice of the map is borrowed.
            let _ = unsafe {
                self.map
                    .unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, from, to - from)
            };
        }
    }
}

impl Read for MappedInput {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.fill_buf()?.read(buf)?;
        self.consume(n);
        Ok(n)
    }
}

impl BufRead for MappedInput {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        if self.at == self.window.len() && self.cut.is_none() && self.pos < self.map.len() {
            self.next_window();
        }
        if self.at == self.window.len()
            && let Some(change) = self.cut
        {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, change));
        }
        Ok(&self.window[self.at..])
    }

    fn consume(&mut self, n: usize) {
        let n = n.min(self.window.len() - self.at);
        self.at += n;
        if let Some(p) = &self.progress {
            p.done.fetch_add(n as u64, Ordering::Relaxed);
        }
    }
}

pub(crate) fn read_head(mut file: &File, head: &mut [u8]) -> io::Result<usize> {
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

/// A stream from `reader`, decompressed as its magic bytes say; with `spacing`, its
/// offsets are a file's and seek points are noted that far apart.
fn stream(mut reader: Box<dyn BufRead + Send>, spacing: Option<u64>) -> io::Result<Opened> {
    use crate::seek::{Codec, Seeks};
    // The magic bytes may arrive split over reads (a slow pipe): gather them first.
    let mut head = Vec::with_capacity(4);
    (&mut reader).take(4).read_to_end(&mut head)?;
    let compression = Compression::sniff(&head);
    let reader: Box<dyn BufRead + Send> = Box::new(io::Cursor::new(head).chain(reader));
    let notes = crate::inflate::Notes::default();
    let seeks = spacing.map(Seeks::spaced);
    let (reader, codec): (Box<dyn Read + Send>, _) = match compression {
        Compression::Gzip => (
            crate::inflate::gzip_reader_noting(reader, notes.clone(), seeks.clone()),
            Codec::Gzip,
        ),
        Compression::Zstd => (
            Box::new(crate::unzstd::Decoder::new(reader).noting(seeks.clone())),
            Codec::Zstd,
        ),
        Compression::None => (Box::new(reader), Codec::Gzip),
    };
    // Exports (issue 8): UTF-16 text (after decompression) is transcoded to UTF-8.
    let (reader, transcoded) = crate::utf16::utf8_reader_told(reader, notes.clone());
    let seeks = seeks.filter(|_| compression != Compression::None && !transcoded);
    Ok(Opened::Stream {
        reader,
        compression,
        notes,
        seeks: seeks.map(|s| (codec, s)),
    })
}

/// A compressed file's bytes from offset `at` on, as a stream (mapped behind the same
/// guard as a first read, or read).
pub(crate) fn input_at(file: File, at: u64) -> io::Result<Box<dyn BufRead + Send>> {
    match map_file(&file) {
        Some((map, registration)) => {
            let mut input = MappedInput::new(map, registration, file, None);
            input.pos = usize::try_from(at)
                .unwrap_or(usize::MAX)
                .min(input.map.len());
            Ok(Box::new(input))
        }
        None => {
            use std::io::{Seek, SeekFrom};
            let mut file = file;
            file.seek(SeekFrom::Start(at))?;
            Ok(Box::new(BufReader::with_capacity(1 << 20, file)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discover;
    use std::io::Write;

    #[test]
    fn compression_is_sniffed_from_magic_bytes_skippable_zstd_frames_included() {
        assert_eq!(Compression::sniff(&[0x1f, 0x8b, 8]), Compression::Gzip);
        assert_eq!(
            Compression::sniff(&[0x28, 0xb5, 0x2f, 0xfd]),
            Compression::Zstd
        );
        for first in [0x50, 0x5a, 0x5f] {
            let head = [first, 0x2a, 0x4d, 0x18, 4, 0, 0, 0];
            assert_eq!(Compression::sniff(&head), Compression::Zstd, "{first:#x}");
        }
        for head in [
            &[0x4f, 0x2a, 0x4d, 0x18][..],
            &[0x60, 0x2a, 0x4d, 0x18],
            b"{\"a\"",
            b"P*M",
        ] {
            assert_eq!(Compression::sniff(head), Compression::None, "{head:?}");
        }
    }

    #[test]
    fn zip_entries_of_one_name_are_all_read_and_their_bytes_counted_in_progress() {
        // Regression: the second entry of a repeated name was never read, and the
        // progress bar did not count bytes inside zip archives.
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/fixtures/zip/duplicate_names.zip");
        let (inputs, errors) = discover(std::slice::from_ref(&path));
        assert!(errors.is_empty(), "{errors:?}");
        let names: Vec<String> = inputs
            .iter()
            .map(|i| i.display().rsplit('!').next().unwrap().to_string())
            .collect();
        assert_eq!(
            names,
            [
                "export.jsonl#1",
                "export.jsonl#2",
                "export.jsonl#3",
                "other.jsonl"
            ]
        );
        let shared = Arc::new(Progress::default());
        let progress = Some(shared.clone());
        let mut total = 0;
        for (input, want) in inputs
            .iter()
            .zip(["first@x", "second@x", "third@x", "other@x"])
        {
            total += input.disk_len().unwrap();
            let Opened::Stream { mut reader, .. } = open(input, &progress).unwrap() else {
                panic!("a zip entry streams")
            };
            let mut text = String::new();
            reader.read_to_string(&mut text).unwrap();
            assert!(text.contains(want), "{}: {text}", input.display());
        }
        let done = shared.done.load(Ordering::Relaxed);
        assert_eq!(done, total);
        assert!(total > 0);
    }

    #[test]
    fn an_input_stays_three_words() {
        // Discovery holds one per zip entry: an archive may hold a million.
        assert!(std::mem::size_of::<Input>() <= 24);
    }

    #[test]
    fn zstd_is_sniffed_and_streamed() {
        let data = b"a\nb\n".repeat(1000);
        let z = zstd::encode_all(&data[..], 3).unwrap();
        let Opened::Stream {
            mut reader,
            compression,
            ..
        } = stream(Box::new(BufReader::new(io::Cursor::new(z.clone()))), None).unwrap()
        else {
            panic!("zstd must stream")
        };
        assert_eq!(compression, Compression::Zstd);
        let mut out = Vec::new();
        reader.read_to_end(&mut out).unwrap();
        assert_eq!(out, data);
        let Opened::Stream { mut reader, .. } = stream(
            Box::new(BufReader::new(io::Cursor::new(z[..z.len() / 2].to_vec()))),
            None,
        )
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
        } = stream(Box::new(BufReader::new(io::Cursor::new(gz))), None).unwrap()
        else {
            panic!("gzip must stream")
        };
        assert_eq!(compression, Compression::Gzip);
        let mut out = Vec::new();
        reader.read_to_end(&mut out).unwrap();
        assert_eq!(out, b"a\nb\n");
    }
}
