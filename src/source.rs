//! Inputs: finding them, recognising their compression, and reading them.
//!
//! Place in the flow: first stage. [`discover`] expands the paths the user gave
//! (directories recursively, in sorted order; `-` is stdin). [`open`] looks at the magic
//! bytes, not the name: plain files are memory-mapped (read into memory where mapping is
//! refused), gzip (multi-member included) and stdin become a stream that
//! [`BlockReader`] cuts into large blocks at the last newline, carrying the tail into the
//! next block, so a stream is never held whole in memory. Nothing here parses lines.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use memmap2::Mmap;

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

const ZIP_MAGIC: &[u8] = b"PK\x03\x04";

/// Adds a file to the inputs: itself, or, for a `.zip` archive (by magic bytes), each
/// file entry in it, in name order.
fn add_file(path: PathBuf, inputs: &mut Vec<Input>, errors: &mut Vec<DiscoverError>) {
    let mut head = [0u8; 4];
    let is_zip = File::open(&path)
        .and_then(|f| read_head(&f, &mut head))
        .is_ok_and(|n| head[..n] == *ZIP_MAGIC);
    if !is_zip {
        inputs.push(Input::File(path));
        return;
    }
    let listed = SharedFile::open(&path)
        .map_err(zip::result::ZipError::Io)
        .and_then(|f| {
            let archive = zip::ZipArchive::new(f)?;
            let mut entries: Vec<(String, usize)> = archive
                .file_names()
                .enumerate()
                .filter(|(_, n)| !n.ends_with('/'))
                .map(|(i, n)| (n.to_string(), i))
                .collect();
            entries.sort();
            Ok((archive, entries))
        });
    match listed {
        Ok((archive, entries)) => {
            let source = Arc::new(ZipSource {
                path: path.clone(),
                archive,
            });
            inputs.extend(entries.into_iter().map(|(name, index)| Input::ZipEntry {
                archive: source.clone(),
                index,
                name,
            }));
        }
        Err(e) => errors.push(DiscoverError {
            path: path.display().to_string(),
            message: format!("cannot read zip archive: {e}"),
        }),
    }
}

/// A `.zip` archive whose directory has been read.
#[derive(Debug)]
pub struct ZipSource {
    /// Where it is.
    pub path: PathBuf,
    archive: zip::ZipArchive<SharedFile>,
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

/// Streams one zip entry, decompressed on its own thread through a pipe; an error the
/// thread meets is handed to the reader at the end instead of a clean end of stream.
fn zip_entry(source: &ZipSource, index: usize) -> io::Result<Box<dyn BufRead + Send>> {
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

/// A path that could not be expanded into inputs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscoverError {
    /// The path.
    pub path: String,
    /// Why.
    pub message: String,
}

/// Expands paths into inputs: a file is itself, a directory is every file below it in
/// sorted order (symbolic links are not followed inside directories), `-` is stdin.
pub fn discover(paths: &[PathBuf]) -> (Vec<Input>, Vec<DiscoverError>) {
    let mut inputs = Vec::new();
    let mut errors = Vec::new();
    for path in paths {
        if path.as_os_str() == "-" {
            inputs.push(Input::Stdin);
            continue;
        }
        match std::fs::metadata(path) {
            Ok(meta) if meta.is_dir() => {
                let walk = walkdir::WalkDir::new(path).sort_by_file_name();
                for entry in walk {
                    match entry {
                        Ok(e) if e.file_type().is_file() => {
                            add_file(e.into_path(), &mut inputs, &mut errors);
                        }
                        Ok(_) => {}
                        Err(e) => errors.push(DiscoverError {
                            path: e.path().map_or_else(
                                || path.display().to_string(),
                                |p| p.display().to_string(),
                            ),
                            message: e.to_string(),
                        }),
                    }
                }
            }
            Ok(meta) if meta.is_file() => add_file(path.clone(), &mut inputs, &mut errors),
            Ok(_) => inputs.push(Input::File(path.clone())),
            Err(e) => errors.push(DiscoverError {
                path: path.display().to_string(),
                message: e.to_string(),
            }),
        }
    }
    (inputs, errors)
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
    if Compression::sniff(&head[..n]) != Compression::None || utf16 || !meta.is_file() {
        // Pipes and devices cannot be mapped; reopen so the stream starts at byte 0.
        let reader: Box<dyn BufRead + Send> = if meta.is_file() {
            let counted = Counted {
                inner: File::open(path)?,
                progress: progress.clone(),
            };
            Box::new(BufReader::with_capacity(1 << 20, counted))
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
    let reader: Box<dyn Read + Send> = match compression {
        Compression::Gzip => crate::inflate::gzip_reader(reader),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(reader)?),
        Compression::None => Box::new(reader),
    };
    // Exports (issue 8): UTF-16 text (after decompression) is transcoded to UTF-8.
    let reader = crate::utf16::utf8_reader(reader);
    Ok(Opened::Stream {
        reader,
        compression,
    })
}

/// How the records of an input are laid out, recognised from its first bytes (after
/// decompression).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// One JSON record per line (also: empty input, and anything not recognised as one
    /// of the layouts below, whose lines are then counted as malformed where they hold
    /// a rule literal).
    JsonLines,
    /// A Purview / `Search-UnifiedAuditLog` CSV export (a header naming `AuditData`).
    PurviewCsv,
    /// A JSON document: a top-level array, or a pretty-printed object over many lines.
    JsonDocument,
}

impl Layout {
    /// Recognises the layout. Deliberately conservative: only an unmistakable CSV
    /// header or JSON document start is taken for one, so a JSON-lines archive whose
    /// first line is damaged is still read as JSON lines.
    pub fn sniff(head: &[u8]) -> Layout {
        let head = strip_bom(head);
        let start = head
            .iter()
            .position(|b| !b.is_ascii_whitespace())
            .unwrap_or(head.len());
        let head = &head[start..];
        let first_line = head
            .split(|&b| b == b'\n')
            .next()
            .unwrap_or_default()
            .trim_ascii();
        match head.first() {
            // Exports (issue 8): `[metadata]` (TOML) or `[garbage` is no JSON array, and
            // Elastic's one-line `{"events":[…]}` is a document, not one record.
            Some(b'[') if crate::document::opens_json_array(head) => Layout::JsonDocument,
            Some(b'{') if first_line == b"{" || crate::document::is_events_wrapper(head) => {
                Layout::JsonDocument
            }
            Some(b'{') => Layout::JsonLines,
            Some(_)
                if first_line.contains(&b',')
                    && memchr::memmem::find(first_line, b"AuditData").is_some() =>
            {
                Layout::PurviewCsv
            }
            _ => Layout::JsonLines,
        }
    }

    /// Why an input read as JSON lines does not look like JSON lines (it does not start
    /// with an object), for a warning; `None` when it does, or is empty.
    pub fn doubt(head: &[u8]) -> Option<String> {
        let head = strip_bom(head);
        let start = head.iter().position(|b| !b.is_ascii_whitespace())?;
        let first = &head[start..head.len().min(start + 24)];
        (first[0] != b'{').then(|| {
            format!(
                "not recognised as JSON lines, a CSV export or a JSON document (starts with {:?}); \
                 read as JSON lines",
                String::from_utf8_lossy(first)
            )
        })
    }

    /// A short name for reports.
    pub fn name(self) -> &'static str {
        match self {
            Layout::JsonLines => "jsonl",
            Layout::PurviewCsv => "purview-csv",
            Layout::JsonDocument => "json-document",
        }
    }
}

/// Removes a leading UTF-8 byte order mark.
pub fn strip_bom(data: &[u8]) -> &[u8] {
    data.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(data)
}

/// A block buffer and how much of it holds data. The buffer keeps its full length so
/// that, recycled, it can be read into again without being zeroed.
#[derive(Debug)]
pub struct Filled {
    buf: Vec<u8>,
    len: usize,
}

impl Filled {
    /// The buffer, to be recycled.
    pub fn into_buffer(self) -> Vec<u8> {
        self.buf
    }
}

impl From<Vec<u8>> for Filled {
    fn from(buf: Vec<u8>) -> Filled {
        let len = buf.len();
        Filled { buf, len }
    }
}

impl std::ops::Deref for Filled {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

/// What a stream yields.
#[derive(Debug)]
pub enum Block {
    /// Whole lines (the last one without newline only at the end of the stream).
    Lines(Filled),
    /// A line longer than the limit was skipped unparsed (memory stays bounded); it
    /// counts as one line, malformed if it held a rule literal.
    Overlong {
        /// Its length in bytes, newline excluded.
        bytes: u64,
        /// Whether a newline ended it (else the stream did).
        newline: bool,
        /// Whether it held a rule literal.
        candidate: bool,
    },
}

/// Cuts a byte stream into blocks of about `block` bytes that end after a newline.
/// Memory stays bounded by `block + max_line`: a longer line is skipped, not buffered.
pub struct BlockReader<R> {
    inner: R,
    block: usize,
    max_line: usize,
    /// Tells whether a skipped overlong line held a rule literal (a candidate).
    prefilter: Option<crate::prefilter::Prefilter>,
    /// An error met while skipping an overlong line, returned after that line.
    deferred: Option<io::Error>,
    carry: Vec<u8>,
    /// Bytes consumed from the decompressed stream so far.
    pub consumed: u64,
    at_start: bool,
    done: bool,
}

impl<R: Read> BlockReader<R> {
    /// Wraps a stream.
    pub fn new(inner: R, block: usize, max_line: usize) -> BlockReader<R> {
        BlockReader {
            inner,
            block: block.max(1),
            max_line: max_line.max(1),
            prefilter: None,
            deferred: None,
            carry: Vec::new(),
            consumed: 0,
            at_start: true,
            done: false,
        }
    }

    /// Uses `prefilter` to tell whether a skipped overlong line is a candidate (without
    /// it, every overlong line is one).
    pub fn with_prefilter(mut self, prefilter: crate::prefilter::Prefilter) -> BlockReader<R> {
        self.prefilter = Some(prefilter);
        self
    }

    /// The next block, reusing `buf`'s allocation; `None` at the end of the stream.
    /// On an error the bytes read before it have all been returned in earlier blocks
    /// except an unfinished last line, which is returned once more as the final block
    /// before the error (so it is still counted).
    pub fn next_block(&mut self, mut buf: Vec<u8>) -> io::Result<Option<Block>> {
        if let Some(e) = self.deferred.take() {
            return Err(e);
        }
        if self.done {
            return Ok(None);
        }
        // `buf` is a recycled block: its bytes are initialized already, so reading into
        // it needs no zero-filling (only growth is zeroed).
        if buf.len() < self.carry.len() {
            buf.resize(self.carry.len(), 0);
        }
        let mut len = self.carry.len();
        buf[..len].copy_from_slice(&self.carry);
        self.carry.clear();
        // The carry is the tail after the last newline, except after an overlong line
        // was skipped, when it may hold whole lines: look at it once, then only at new
        // bytes.
        let mut scanned_to = 0;
        loop {
            // Always ask for more than is held, so every turn makes progress.
            let target = if len < self.block {
                self.block
            } else {
                len + self.block
            };
            let eof = match self.fill(&mut buf, &mut len, target) {
                Ok(eof) => eof,
                Err(e) => {
                    self.done = true;
                    // Keep the unfinished tail for the caller to scan, then report.
                    let tail = &buf[..len];
                    let tail = if self.at_start { strip_bom(tail) } else { tail };
                    self.carry = tail.to_vec();
                    return Err(e);
                }
            };
            if self.at_start {
                const BOM: &[u8] = b"\xEF\xBB\xBF";
                if !eof && len < BOM.len() && BOM.starts_with(&buf[..len]) {
                    continue; // Too few bytes yet to tell whether a BOM starts the stream.
                }
                self.at_start = false;
                if buf[..len].starts_with(BOM) {
                    buf.copy_within(BOM.len()..len, 0);
                    len -= BOM.len();
                }
            }
            if eof {
                self.done = true;
                return Ok((len > 0).then_some(Block::Lines(Filled { buf, len })));
            }
            let fresh = scanned_to.min(len);
            if let Some(end) = crate::chunk::last_line_end(&buf[fresh..len]) {
                self.carry.extend_from_slice(&buf[fresh + end..len]);
                return Ok(Some(Block::Lines(Filled {
                    buf,
                    len: fresh + end,
                })));
            }
            if len > self.max_line {
                let hit = self.hit(&buf[..len]);
                let seen = &buf[len.saturating_sub(self.overlap())..len];
                let (more, newline, hit_later) = self.skip_line(seen);
                return Ok(Some(Block::Overlong {
                    bytes: len as u64 + more,
                    newline,
                    candidate: hit || hit_later,
                }));
            }
            scanned_to = len;
        }
    }

    fn hit(&self, bytes: &[u8]) -> bool {
        self.prefilter
            .as_ref()
            .is_none_or(|p| p.is_everything() || p.find(bytes).is_some())
    }

    fn overlap(&self) -> usize {
        self.prefilter.as_ref().map_or(0, |p| p.overlap())
    }

    /// The unfinished tail left by an error, if any.
    pub fn take_tail(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.carry)
    }

    /// Reads until `buf[..len]` holds `target` bytes; returns whether the stream ended
    /// first.
    fn fill(&mut self, buf: &mut Vec<u8>, len: &mut usize, target: usize) -> io::Result<bool> {
        if buf.len() < target {
            buf.resize(target, 0);
        }
        while *len < target {
            match self.inner.read(&mut buf[*len..target]) {
                Ok(0) => return Ok(true),
                Ok(n) => {
                    *len += n;
                    self.consumed += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(false)
    }

    /// Discards the rest of an overlong line (through its newline): returns how many
    /// more bytes it had (newline excluded), whether a newline ended it, and whether a
    /// rule literal was in them. `seen` is the line's last bytes already read, so a
    /// literal across the edge is found too.
    /// An error ends the line there; it is kept to be returned by the next call.
    fn skip_line(&mut self, seen: &[u8]) -> (u64, bool, bool) {
        let keep = seen.len();
        let mut tmp = vec![0u8; keep + 64 * 1024];
        tmp[..keep].copy_from_slice(seen);
        let (mut len, mut hit) = (0u64, false);
        loop {
            let n = match self.inner.read(&mut tmp[keep..]) {
                Ok(0) => {
                    self.done = true;
                    return (len, false, hit);
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.done = true;
                    self.deferred = Some(e);
                    return (len, false, hit);
                }
            };
            self.consumed += n as u64;
            let end = memchr::memchr(b'\n', &tmp[keep..keep + n]).map(|i| keep + i);
            hit = hit || self.hit(&tmp[..end.unwrap_or(keep + n)]);
            match end {
                Some(i) => {
                    self.carry.extend_from_slice(&tmp[i + 1..keep + n]);
                    return (len + (i - keep) as u64, true, hit);
                }
                None => {
                    len += n as u64;
                    // Keep the last bytes for a literal across reads.
                    tmp.copy_within(n..keep + n, 0);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn blocks(data: &[u8], block: usize, max_line: usize) -> Vec<Block> {
        let mut r = BlockReader::new(data, block, max_line);
        let mut out = Vec::new();
        while let Some(b) = r.next_block(Vec::new()).unwrap() {
            out.push(b);
        }
        out
    }

    fn lines_of(blocks: &[Block]) -> Vec<u8> {
        blocks
            .iter()
            .flat_map(|b| match b {
                Block::Lines(v) => v.to_vec(),
                Block::Overlong { .. } => b"<long>\n".to_vec(),
            })
            .collect()
    }

    #[test]
    fn blocks_end_at_newlines_and_cover_the_stream() {
        let data = b"one\ntwo\nthree\nfour";
        for size in 1..20 {
            let bs = blocks(data, size, 1 << 20);
            assert_eq!(lines_of(&bs), data.to_vec(), "block size {size}");
            for b in &bs[..bs.len() - 1] {
                let Block::Lines(v) = b else { panic!() };
                assert_eq!(v.last(), Some(&b'\n'));
            }
        }
    }

    #[test]
    fn whole_lines_carried_after_an_overlong_one_are_kept() {
        // Regression: lines read along with the end of a skipped overlong line were lost
        // when another overlong line followed.
        let mut data = vec![b'x'; 5_000];
        data.push(b'\n');
        for i in 0..10 {
            data.extend(format!("line {i}\n").bytes());
        }
        data.extend(std::iter::repeat_n(b'y', 6_000));
        data.push(b'\n');
        let bs = blocks(&data, 64, 1_000);
        let text = String::from_utf8(lines_of(&bs)).unwrap();
        assert_eq!(text.matches("line ").count(), 10, "{text}");
        // Every line is there: the first skipped, the last read whole or skipped.
        assert_eq!(text.lines().count(), 12);
    }

    #[test]
    fn an_overlong_line_is_a_candidate_only_with_the_literal() {
        let rules = crate::rule::Rule::builtin();
        let p = crate::prefilter::Prefilter::for_rules(&rules);
        let lit = b"Set-MailboxAuditBypassAssociation";
        for at in [0usize, 100, 4_990, 70_000] {
            let mut data = vec![b'z'; 80_000];
            data[at..at + lit.len()].copy_from_slice(lit);
            data.extend(b"\nok\n");
            let mut r = BlockReader::new(&data[..], 64, 5_000).with_prefilter(p.clone());
            let first = r.next_block(Vec::new()).unwrap().unwrap();
            assert!(
                matches!(
                    first,
                    Block::Overlong {
                        candidate: true,
                        bytes: 80_000,
                        ..
                    }
                ),
                "at {at}: {first:?}"
            );
        }
        let data = [vec![b'z'; 80_000], b"\n".to_vec()].concat();
        let mut r = BlockReader::new(&data[..], 64, 5_000).with_prefilter(p);
        assert!(matches!(
            r.next_block(Vec::new()).unwrap().unwrap(),
            Block::Overlong {
                candidate: false,
                ..
            }
        ));
    }

    #[test]
    fn an_overlong_line_cut_by_an_error_is_still_counted() {
        struct CutAfter<'a>(&'a [u8]);
        impl Read for CutAfter<'_> {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                if self.0.is_empty() {
                    return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "cut"));
                }
                let n = self.0.len().min(buf.len()).min(1000);
                buf[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        let data = [b"ok\n".to_vec(), vec![b'x'; 50_000]].concat();
        let mut r = BlockReader::new(CutAfter(&data), 64, 1_000);
        assert!(matches!(
            r.next_block(Vec::new()).unwrap(),
            Some(Block::Lines(_))
        ));
        assert!(matches!(
            r.next_block(Vec::new()).unwrap(),
            Some(Block::Overlong { newline: false, .. })
        ));
        assert!(r.next_block(Vec::new()).is_err());
    }

    #[test]
    fn bom_is_dropped_once() {
        let bs = blocks(b"\xEF\xBB\xBFa\n\xEF\xBB\xBFb\n", 4, 100);
        assert_eq!(lines_of(&bs), b"a\n\xEF\xBB\xBFb\n".to_vec());
    }

    #[test]
    fn overlong_lines_are_skipped_with_bounded_memory() {
        let mut data = b"ok\n".to_vec();
        data.extend(std::iter::repeat_n(b'x', 10_000));
        data.extend(b"\nafter\n");
        let bs = blocks(&data, 8, 100);
        assert_eq!(lines_of(&bs), b"ok\n<long>\nafter\n".to_vec());
        assert!(bs.iter().any(|b| matches!(
            b,
            Block::Overlong {
                bytes: 10_000,
                newline: true,
                candidate: true
            }
        )));
    }

    #[test]
    fn layouts() {
        assert_eq!(Layout::sniff(b"{\"Operation\":\"X\"}\n"), Layout::JsonLines);
        assert_eq!(
            Layout::sniff(b"\xEF\xBB\xBF  {\"Operation\":\"X\n"),
            Layout::JsonLines
        );
        assert_eq!(Layout::sniff(b""), Layout::JsonLines);
        assert_eq!(Layout::sniff(b"garbage Set-Mailbox\n{}"), Layout::JsonLines);
        assert_eq!(Layout::sniff(b"[\n  {\"a\":1}\n]"), Layout::JsonDocument);
        assert_eq!(Layout::sniff(b"{\r\n  \"a\": 1\r\n}"), Layout::JsonDocument);
        assert_eq!(Layout::sniff(b"[metadata]\nx = 1\n"), Layout::JsonLines);
        assert_eq!(Layout::sniff(b"[garbage Set-Mailbox\n"), Layout::JsonLines);
        assert_eq!(Layout::sniff(b"[ ]"), Layout::JsonDocument);
        assert_eq!(
            Layout::sniff(b"{\"events\": [{\"a\":1}]}"),
            Layout::JsonDocument
        );
        assert_eq!(
            Layout::sniff(b"CreationDate,UserIds,Operations,AuditData\r\n2024,..."),
            Layout::PurviewCsv
        );
        assert_eq!(
            Layout::sniff(b"\"RecordId\",\"CreationDate\",\"RecordType\",\"Operation\",\"UserId\",\"AuditData\"\n"),
            Layout::PurviewCsv
        );
    }

    #[test]
    fn doubts() {
        assert_eq!(Layout::doubt(b"  \n{\"a\":1}"), None);
        assert_eq!(Layout::doubt(b""), None);
        let d = Layout::doubt(b"PK\x03\x04binary").unwrap();
        assert!(d.contains("PK"), "{d}");
    }

    #[test]
    fn zstd_is_sniffed_and_streamed() {
        let data = b"a\nb\n".repeat(1000);
        let z = zstd::encode_all(&data[..], 3).unwrap();
        let Opened::Stream {
            mut reader,
            compression,
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
