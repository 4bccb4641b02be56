//! The block reader: cuts a decompressed byte stream into large blocks that end after a
//! newline, carrying the unfinished tail into the next block, dropping a leading byte
//! order mark, and recycling the caller's buffers. Memory stays bounded: a line longer
//! than the limit is skipped (and reported as one overlong line), never buffered whole.
//! It does not parse lines; it only finds their ends.

use std::io::{self, Read};

use crate::{Literals, strip_bom};

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

    /// The bytes its buffer holds allocated (what keeping the block costs).
    pub fn capacity(&self) -> usize {
        self.buf.capacity()
    }

    /// Gives back the buffer's room past the data when that is more than an eighth of
    /// it (a short last block of a stream), before the block is kept.
    pub fn trim(&mut self) {
        if self.buf.capacity() - self.len > self.buf.capacity() / 8 {
            self.buf.truncate(self.len);
            self.buf.shrink_to_fit();
        }
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
    literals: Option<Box<dyn Literals>>,
    /// An error met while skipping an overlong line, returned after that line.
    deferred: Option<io::Error>,
    carry: Vec<u8>,
    /// Bytes consumed from the decompressed stream so far.
    pub consumed: u64,
    /// Bytes dropped at the stream's start (a byte order mark): where in the stream the
    /// first block's first byte is.
    pub dropped: u64,
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
            literals: None,
            deferred: None,
            carry: Vec::new(),
            consumed: 0,
            dropped: 0,
            at_start: true,
            done: false,
        }
    }

    /// Uses `literals` to tell whether a skipped overlong line is a candidate (without
    /// them, every overlong line is one).
    pub fn with_literals(mut self, literals: Box<dyn Literals>) -> BlockReader<R> {
        self.literals = Some(literals);
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
                    self.dropped += (len - tail.len()) as u64;
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
                    self.dropped = BOM.len() as u64;
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
        self.literals
            .as_ref()
            .is_none_or(|p| p.find(bytes).is_some())
    }

    fn overlap(&self) -> usize {
        self.literals.as_ref().map_or(0, |p| p.overlap())
    }

    /// The unfinished tail left by an error, if any.
    pub fn take_tail(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.carry)
    }

    /// Reads until `buf[..len]` holds `target` bytes; returns whether the stream ended
    /// first.
    fn fill(&mut self, buf: &mut Vec<u8>, len: &mut usize, target: usize) -> io::Result<bool> {
        while *len < target {
            // Grow as the data comes (doubling from 8 KiB), not to the full block at
            // once: a small input (one of 100 000 zip entries) must not cost a zeroed
            // block of several MiB. Recycled buffers keep their length.
            if buf.len() <= *len {
                let grown = (*len * 2).max(8 << 10).min(target);
                buf.resize(grown, 0);
            }
            let room = buf.len().min(target);
            match self.inner.read(&mut buf[*len..room]) {
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
        /// One literal, found by `memmem`.
        struct One(&'static [u8]);
        impl Literals for One {
            fn find(&self, haystack: &[u8]) -> Option<usize> {
                memchr::memmem::find(haystack, self.0)
            }
            fn overlap(&self) -> usize {
                self.0.len() - 1
            }
        }
        let lit = b"Set-MailboxAuditBypassAssociation";
        let p = || Box::new(One(lit));
        for at in [0usize, 100, 4_990, 70_000] {
            let mut data = vec![b'z'; 80_000];
            data[at..at + lit.len()].copy_from_slice(lit);
            data.extend(b"\nok\n");
            let mut r = BlockReader::new(&data[..], 64, 5_000).with_literals(p());
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
        let mut r = BlockReader::new(&data[..], 64, 5_000).with_literals(p());
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
        // How many bytes were dropped is told (the stream's offset of the first block).
        for (data, dropped) in [
            (&b"\xEF\xBB\xBFa\n"[..], 3),
            (b"\xEF\xBB\xBF", 3),
            (b"a\n", 0),
        ] {
            let mut r = BlockReader::new(data, 4, 100);
            while r.next_block(Vec::new()).unwrap().is_some() {}
            assert_eq!(r.dropped, dropped, "{data:?}");
        }
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
}
