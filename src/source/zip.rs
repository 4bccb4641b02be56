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

/// Streams one zip entry, decompressed on its own thread through a pipe; an error the
/// thread meets is handed to the reader at the end instead of a clean end of stream.
pub(super) fn zip_entry(source: &ZipSource, index: usize) -> io::Result<Box<dyn BufRead + Send>> {
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
