//! UTF-16 inputs, transcoded to UTF-8 as they are read.
//!
//! Place in the flow: part of opening an input, after decompression and before anything
//! looks at lines. Windows PowerShell 5.1 writes `Out-File` and `>` as UTF-16LE with a
//! byte order mark, so many exports a responder is handed are UTF-16. [`utf8_reader`]
//! recognises such a stream from its first bytes and wraps it in a [`Utf16Reader`],
//! a streaming `Read` adapter (bounded memory) that gives UTF-8: every code unit
//! U+000A stays one `\n`, so line numbers are those of the original file. A byte order
//! mark becomes the UTF-8 one, which the layers above strip. Unpaired surrogates and an
//! odd last byte become U+FFFD; nothing from the input can make it panic. A byte lost
//! (or added) mid-file would turn the rest into CJK text: four code units in a row that
//! read as ASCII with its bytes swapped are taken for that, the stream is realigned by
//! one byte and a note names the line. It knows nothing about JSON.

use std::io::{self, Read};

/// The byte order of a UTF-16 stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ByteOrder {
    /// Little endian (what Windows writes).
    Little,
    /// Big endian.
    Big,
}

/// How many leading bytes decide whether a stream without a byte order mark is UTF-16.
pub const SNIFF: usize = 1024;

/// Recognises UTF-16 from the first bytes of a stream: a byte order mark (`FF FE`,
/// `FE FF`), or, without one, text that is clearly UTF-16: in the first KiB, at least
/// 4 code units and 9 in 10 of them an ASCII character with the other byte NUL.
/// UTF-8 text has no NUL bytes, so it is never taken for UTF-16.
pub fn sniff(head: &[u8]) -> Option<ByteOrder> {
    match head {
        [0xFF, 0xFE, ..] => return Some(ByteOrder::Little),
        [0xFE, 0xFF, ..] => return Some(ByteOrder::Big),
        _ => {}
    }
    let units = &head[..head.len().min(SNIFF) & !1];
    let n = units.len() / 2;
    if n < 4 {
        return None;
    }
    let ascii = |lo: u8, hi: u8| hi == 0 && lo != 0 && lo < 0x80;
    let (mut le, mut be) = (0, 0);
    for pair in units.chunks_exact(2) {
        le += usize::from(ascii(pair[0], pair[1]));
        be += usize::from(ascii(pair[1], pair[0]));
    }
    if le * 10 >= n * 9 {
        Some(ByteOrder::Little)
    } else if be * 10 >= n * 9 {
        Some(ByteOrder::Big)
    } else {
        None
    }
}

/// Wraps `reader` in a [`Utf16Reader`] when its first bytes are UTF-16; otherwise gives
/// the same bytes back unchanged. A read error met while looking is returned by the
/// wrapped reader after the bytes read before it.
pub fn utf8_reader(
    reader: Box<dyn Read + Send>,
    notes: crate::inflate::Notes,
) -> Box<dyn Read + Send> {
    utf8_reader_told(reader, notes).0
}

/// [`utf8_reader`], and whether it transcodes (the bytes it hands out are then not the
/// inner reader's).
pub(crate) fn utf8_reader_told(
    mut reader: Box<dyn Read + Send>,
    notes: crate::inflate::Notes,
) -> (Box<dyn Read + Send>, bool) {
    let mut head = Vec::with_capacity(SNIFF);
    let failed = (&mut reader)
        .take(SNIFF as u64)
        .read_to_end(&mut head)
        .err();
    let order = sniff(&head);
    let rest: Box<dyn Read + Send> = match failed {
        Some(e) => Box::new(crate::document::FailWith(Some(e))),
        None => reader,
    };
    let whole = Box::new(io::Cursor::new(head).chain(rest));
    match order {
        Some(order) => (
            Box::new(Utf16Reader::new(whole, order).with_notes(notes)),
            true,
        ),
        None => (whole, false),
    }
}

/// Input bytes read from the inner stream at a time.
const IN_BLOCK: usize = 64 * 1024;

/// A `Read` adapter: UTF-16 bytes in, UTF-8 bytes out, in bounded memory.
pub struct Utf16Reader<R> {
    inner: R,
    order: ByteOrder,
    /// Input bytes not decoded yet: `input[start..end]`.
    input: Box<[u8]>,
    start: usize,
    end: usize,
    /// A high surrogate waiting for its low half (it may come in the next read).
    high: Option<u16>,
    /// UTF-8 bytes of a character that did not fit in the caller's buffer.
    spill: [u8; 4],
    spill_at: usize,
    spill_len: usize,
    /// An error met after some output was produced, returned by the next read.
    deferred: Option<io::Error>,
    eof: bool,
    /// Newlines handed out so far.
    newlines: u64,
    /// Set by `decode` when it realigned the stream (and stopped there).
    realigned: bool,
    realignments: u64,
    notes: Option<crate::inflate::Notes>,
}

/// Realignments named one by one in the notes (the rest are counted).
const MAX_NOTES: u64 = 16;

/// Whether `u` is an ASCII character (printable, tab, CR or LF) with its two bytes
/// swapped: what UTF-16 text looks like read one byte off.
fn swapped(u: u16) -> bool {
    let (lo, hi) = (u & 0xFF, u >> 8);
    lo == 0 && (matches!(hi, 0x09 | 0x0A | 0x0D) || (0x20..0x7F).contains(&hi))
}

impl<R: Read> Utf16Reader<R> {
    /// Wraps a UTF-16 byte stream of the given byte order.
    pub fn new(inner: R, order: ByteOrder) -> Utf16Reader<R> {
        Utf16Reader {
            inner,
            order,
            input: vec![0; IN_BLOCK].into_boxed_slice(),
            start: 0,
            end: 0,
            high: None,
            spill: [0; 4],
            spill_at: 0,
            spill_len: 0,
            deferred: None,
            eof: false,
            newlines: 0,
            realigned: false,
            realignments: 0,
            notes: None,
        }
    }

    /// Says where the stream was realigned in `notes`.
    pub fn with_notes(mut self, notes: crate::inflate::Notes) -> Self {
        self.notes = Some(notes);
        self
    }

    /// Whether the three code units after the one just read are swapped ASCII too.
    fn misaligned(&self) -> bool {
        let at = self.start;
        self.end - at >= 6
            && (0..3).all(|k| {
                let pair = [self.input[at + 2 * k], self.input[at + 2 * k + 1]];
                swapped(match self.order {
                    ByteOrder::Little => u16::from_le_bytes(pair),
                    ByteOrder::Big => u16::from_be_bytes(pair),
                })
            })
    }

    /// Reads more input, keeping an undecoded odd byte; returns false at the end.
    fn refill(&mut self) -> io::Result<bool> {
        self.input.copy_within(self.start..self.end, 0);
        self.end -= self.start;
        self.start = 0;
        loop {
            match self.inner.read(&mut self.input[self.end..]) {
                Ok(0) => return Ok(false),
                Ok(n) => {
                    self.end += n;
                    return Ok(true);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// The next code unit, if two input bytes are there.
    #[inline]
    fn unit(&mut self) -> Option<u16> {
        if self.end - self.start < 2 {
            return None;
        }
        let pair = [self.input[self.start], self.input[self.start + 1]];
        self.start += 2;
        Some(match self.order {
            ByteOrder::Little => u16::from_le_bytes(pair),
            ByteOrder::Big => u16::from_be_bytes(pair),
        })
    }

    /// Decodes the buffered units into `out`; returns how many bytes were written.
    /// Stops when `out` has no room for one more character (4 bytes), or the input
    /// runs out; a character cut by the end of `out` goes to `spill`.
    fn decode(&mut self, out: &mut [u8]) -> usize {
        let mut n = 0;
        if self.high.is_none() {
            n = self.decode_ascii(out);
        }
        while let Some(u) = self.unit() {
            let c = match (self.high.take(), u) {
                (None, 0xD800..=0xDBFF) => {
                    self.high = Some(u);
                    continue;
                }
                (Some(h), 0xDC00..=0xDFFF) => {
                    let c = 0x10000 + ((u32::from(h) - 0xD800) << 10) + (u32::from(u) - 0xDC00);
                    char::from_u32(c).unwrap_or(char::REPLACEMENT_CHARACTER)
                }
                (Some(_), _) => {
                    // The high surrogate was unpaired; this unit is read afresh.
                    self.start -= 2;
                    char::REPLACEMENT_CHARACTER
                }
                (None, u) if swapped(u) && self.end - self.start < 6 && !self.eof => {
                    // Too few units after it to tell: read this one again with more.
                    self.start -= 2;
                    return n;
                }
                (None, u) if swapped(u) && self.misaligned() => {
                    // A byte was lost before this unit: its second byte starts a
                    // character. Stop here so that the caller knows the line.
                    self.start -= 1;
                    self.realigned = true;
                    return n;
                }
                (None, u) => char::from_u32(u32::from(u)).unwrap_or(char::REPLACEMENT_CHARACTER),
            };
            n += self.put(c, &mut out[n..]);
            if out.len() - n < 4 {
                break;
            }
            if c.is_ascii() {
                n += self.decode_ascii(&mut out[n..]);
            }
        }
        n
    }

    /// The fast path: a run of ASCII characters, 4 code units (one 8-byte word) at a
    /// time; stops before the first word that holds anything else. Returns how many
    /// bytes were written.
    #[inline]
    fn decode_ascii(&mut self, out: &mut [u8]) -> usize {
        // Per code unit, the bits that must be clear for ASCII (the high byte and the top
        // bit of the low byte), as the word reads them.
        let mask = match self.order {
            ByteOrder::Little => 0xFF80_FF80_FF80_FF80_u64,
            ByteOrder::Big => 0x80FF_80FF_80FF_80FF_u64,
        };
        let shift = if self.order == ByteOrder::Big { 8 } else { 0 };
        let mut n = 0;
        while self.end - self.start >= 8 && out.len() - n >= 4 {
            let mut bytes = [0u8; 8];
            bytes.copy_from_slice(&self.input[self.start..self.start + 8]);
            let word = u64::from_le_bytes(bytes);
            if word & mask != 0 {
                break;
            }
            // The four low bytes, packed: 0a0b0c0d -> abcd.
            let x = word >> shift;
            let x = (x | (x >> 8)) & 0x0000_FFFF_0000_FFFF;
            let x = (x | (x >> 16)) & 0xFFFF_FFFF;
            out[n..n + 4].copy_from_slice(&(x as u32).to_le_bytes());
            self.start += 8;
            n += 4;
        }
        n
    }

    /// Writes `c` into `out`, or as much as fits with the rest kept in `spill`.
    #[inline]
    fn put(&mut self, c: char, out: &mut [u8]) -> usize {
        if c.is_ascii() && !out.is_empty() {
            out[0] = c as u8;
            return 1;
        }
        let mut tmp = [0u8; 4];
        let bytes = c.encode_utf8(&mut tmp).as_bytes();
        let fit = bytes.len().min(out.len());
        out[..fit].copy_from_slice(&bytes[..fit]);
        self.spill_len = bytes.len() - fit;
        self.spill[..self.spill_len].copy_from_slice(&bytes[fit..]);
        self.spill_at = 0;
        fit
    }

    /// At the end of the input: what is left undecoded (a lone high surrogate, an odd
    /// last byte) becomes U+FFFD each.
    fn finish(&mut self, out: &mut [u8]) -> usize {
        let mut n = 0;
        if self.high.take().is_some() {
            n += self.put(char::REPLACEMENT_CHARACTER, &mut out[n..]);
        }
        if self.start < self.end {
            self.start = self.end;
            if self.spill_len > 0 || n >= out.len() {
                // No room left: keep it for the next read.
                self.start -= 1;
                return n;
            }
            n += self.put(char::REPLACEMENT_CHARACTER, &mut out[n..]);
        }
        n
    }
}

impl<R: Read> Read for Utf16Reader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.read_some(buf)?;
        self.newlines += memchr::memchr_iter(b'\n', &buf[..n]).count() as u64;
        Ok(n)
    }
}

impl<R: Read> Utf16Reader<R> {
    /// Notes a realignment after `written` bytes of this read.
    fn realignment(&mut self, written: &[u8]) {
        self.realigned = false;
        self.realignments += 1;
        let line = self.newlines + memchr::memchr_iter(b'\n', written).count() as u64 + 1;
        if let Some(notes) = &self.notes {
            if self.realignments <= MAX_NOTES {
                notes.push(format!(
                    "line {line}: UTF-16 text one byte off (a byte lost or added before \
                     here); read on realigned"
                ));
            } else if self.realignments == MAX_NOTES + 1 {
                notes.push("more UTF-16 realignments after these".to_string());
            }
        }
    }

    fn read_some(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if self.spill_at < self.spill_len {
            let k = (self.spill_len - self.spill_at).min(buf.len());
            buf[..k].copy_from_slice(&self.spill[self.spill_at..self.spill_at + k]);
            self.spill_at += k;
            if self.spill_at == self.spill_len {
                self.spill_len = 0;
                self.spill_at = 0;
            }
            return Ok(k);
        }
        if let Some(e) = self.deferred.take() {
            return Err(e);
        }
        let mut n = 0;
        loop {
            n += self.decode(&mut buf[n..]);
            if self.realigned {
                self.realignment(&buf[..n]);
                continue;
            }
            if self.spill_len > 0 || buf.len() - n < 4 && n > 0 {
                return Ok(n);
            }
            if self.eof {
                n += self.finish(&mut buf[n..]);
                return Ok(n);
            }
            match self.refill() {
                Ok(true) => {}
                Ok(false) => self.eof = true,
                Err(e) if n > 0 => {
                    self.deferred = Some(e);
                    return Ok(n);
                }
                Err(e) => return Err(e),
            }
            if n > 0 && self.end - self.start < 2 && !self.eof {
                // Hand over what is decoded rather than wait for more input.
                return Ok(n);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::Trickle;

    fn encode(text: &str, order: ByteOrder) -> Vec<u8> {
        text.encode_utf16()
            .flat_map(|u| match order {
                ByteOrder::Little => u.to_le_bytes(),
                ByteOrder::Big => u.to_be_bytes(),
            })
            .collect()
    }

    /// Decodes `bytes`, the input arriving `feed` bytes at a time and read out `take`
    /// bytes at a time.
    fn decode_with(bytes: &[u8], order: ByteOrder, feed: usize, take: usize) -> Vec<u8> {
        let mut r = Utf16Reader::new(Trickle(bytes, feed), order);
        let mut out = Vec::new();
        let mut buf = vec![0u8; take];
        loop {
            let n = r.read(&mut buf).unwrap();
            if n == 0 {
                return out;
            }
            out.extend_from_slice(&buf[..n]);
        }
    }

    const TEXT: &str = "{\"UserId\":\"ren\u{e9}e@x\"}\r\n{\"Note\":\"\u{1F600} \u{4e2d}\u{6587} \u{10FFFF}\"}\n\n last";

    #[test]
    fn any_split_of_reads_and_writes_gives_the_same_text() {
        for order in [ByteOrder::Little, ByteOrder::Big] {
            let bytes = encode(TEXT, order);
            for feed in 1..=bytes.len().min(40) {
                for take in [1, 2, 3, 4, 5, 7, 64, 4096] {
                    let out = decode_with(&bytes, order, feed, take);
                    assert_eq!(
                        String::from_utf8(out).unwrap(),
                        TEXT,
                        "{order:?} feed {feed} take {take}"
                    );
                }
            }
        }
    }

    #[test]
    fn every_byte_boundary_of_a_surrogate_pair() {
        let text = "a\u{1F600}b\u{10400}\n";
        let bytes = encode(text, ByteOrder::Little);
        for cut in 0..=bytes.len() {
            let input = io::Cursor::new(bytes[..cut].to_vec()).chain(&bytes[cut..]);
            let mut out = String::new();
            Utf16Reader::new(input, ByteOrder::Little)
                .read_to_string(&mut out)
                .unwrap();
            assert_eq!(out, text, "cut at {cut}");
        }
    }

    #[test]
    fn unpaired_surrogates_and_an_odd_last_byte_become_replacement_characters() {
        let units: [u16; 6] = [0x61, 0xD800, 0x62, 0xDC00, 0xD83D, 0xD83D];
        let mut bytes: Vec<u8> = units.iter().flat_map(|u| u.to_le_bytes()).collect();
        bytes.extend([0x0A, 0x00, 0x41]);
        for feed in 1..bytes.len() + 1 {
            for take in [1, 2, 3, 5, 100] {
                let out = decode_with(&bytes, ByteOrder::Little, feed, take);
                assert_eq!(
                    String::from_utf8(out).unwrap(),
                    "a\u{FFFD}b\u{FFFD}\u{FFFD}\u{FFFD}\n\u{FFFD}",
                    "feed {feed} take {take}"
                );
            }
        }
        // A lone high surrogate at the very end, then an odd byte.
        let bytes = [0x3D, 0xD8, 0x41];
        let out = decode_with(&bytes, ByteOrder::Little, 1, 1);
        assert_eq!(String::from_utf8(out).unwrap(), "\u{FFFD}\u{FFFD}");
    }

    #[test]
    fn random_units_decode_like_the_standard_library() {
        let mut rng = fastrand::Rng::with_seed(8);
        for _ in 0..2000 {
            // Mostly ASCII runs (the fast path) broken by anything else.
            let units: Vec<u16> = (0..rng.usize(0..120))
                .map(|_| match rng.u8(0..16) {
                    0 => rng.u16(0xD800..0xE000),
                    1 => rng.u16(..),
                    2 => rng.u16(0x80..0x100),
                    _ => rng.u16(0..0x80),
                })
                .collect();
            let order = if rng.bool() {
                ByteOrder::Little
            } else {
                ByteOrder::Big
            };
            let mut want: String = char::decode_utf16(units.iter().copied())
                .map(|c| c.unwrap_or(char::REPLACEMENT_CHARACTER))
                .collect();
            let mut bytes: Vec<u8> = units
                .iter()
                .flat_map(|&u| match order {
                    ByteOrder::Little => u.to_le_bytes(),
                    ByteOrder::Big => u.to_be_bytes(),
                })
                .collect();
            if rng.bool() {
                bytes.push(rng.u8(..));
                want.push(char::REPLACEMENT_CHARACTER);
            }
            let (feed, take) = (rng.usize(1..40), rng.usize(1..40));
            let out = decode_with(&bytes, order, feed, take);
            assert_eq!(String::from_utf8(out).unwrap(), want, "{units:x?}");
        }
    }

    #[test]
    fn line_feeds_stay_one_per_line() {
        let text = "1\n2\r\n\n4\u{2028}still 4\n";
        let out = decode_with(&encode(text, ByteOrder::Big), ByteOrder::Big, 3, 5);
        assert_eq!(out.iter().filter(|&&b| b == b'\n').count(), 4);
    }

    #[test]
    fn a_read_error_comes_after_the_text_before_it() {
        struct Fails<'a>(&'a [u8]);
        impl Read for Fails<'_> {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                if self.0.is_empty() {
                    return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "cut"));
                }
                let n = self.0.len().min(buf.len());
                buf[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        let bytes = encode("abc\n", ByteOrder::Little);
        let mut r = Utf16Reader::new(Fails(&bytes), ByteOrder::Little);
        let mut buf = [0u8; 64];
        assert_eq!(r.read(&mut buf).unwrap(), 4);
        assert!(r.read(&mut buf).is_err());
    }

    #[test]
    fn sniffing() {
        assert_eq!(sniff(b"\xFF\xFE{\x00"), Some(ByteOrder::Little));
        assert_eq!(sniff(b"\xFE\xFF\x00{"), Some(ByteOrder::Big));
        assert_eq!(
            sniff(&encode("{\"a\":1}\n", ByteOrder::Little)),
            Some(ByteOrder::Little)
        );
        assert_eq!(
            sniff(&encode("{\"a\":1}\n", ByteOrder::Big)),
            Some(ByteOrder::Big)
        );
        assert_eq!(sniff(b"{\"a\":1}\n{\"b\":2}\n"), None);
        assert_eq!(sniff("{\"é\":\"中文\"}".as_bytes()), None);
        assert_eq!(sniff(b"\x1f\x8b\x08\x00\x00\x00\x00\x00"), None);
        assert_eq!(sniff(b"a\x00"), None, "too short to tell");
        assert_eq!(sniff(&[0u8; 64]), None, "NULs alone are not text");
    }

    #[test]
    fn utf8_reader_passes_other_text_through() {
        let text = b"{\"a\":1}\n".repeat(300);
        let mut out = Vec::new();
        utf8_reader(Box::new(io::Cursor::new(text.clone())), Default::default())
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, text);
        let mut bytes = vec![0xFF, 0xFE];
        bytes.extend(encode("{\"a\":1}\n", ByteOrder::Little));
        let mut out = Vec::new();
        utf8_reader(Box::new(io::Cursor::new(bytes)), Default::default())
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, b"\xEF\xBB\xBF{\"a\":1}\n");
    }

    #[test]
    fn a_byte_lost_mid_file_is_realigned_and_noted_with_its_line() {
        // Regression: one byte missing turned the rest of the file into CJK text.
        let text: String = (0..200)
            .map(|i| format!("{{\"Id\":\"{i}\",\"UserId\":\"ren\u{e9}e{i}@x\"}}\r\n"))
            .collect();
        for order in [ByteOrder::Little, ByteOrder::Big] {
            let whole = encode(&text, order);
            for lost in [whole.len() / 2, whole.len() / 2 + 1, 1001, 4000] {
                let mut bytes = whole.clone();
                bytes.remove(lost);
                for (feed, take) in [(1, 1), (3, 7), (1 << 16, 1 << 16)] {
                    let notes = crate::inflate::Notes::default();
                    let mut r =
                        Utf16Reader::new(Trickle(&bytes, feed), order).with_notes(notes.clone());
                    let mut out = Vec::new();
                    let mut buf = vec![0u8; take];
                    loop {
                        let n = r.read(&mut buf).unwrap();
                        if n == 0 {
                            break;
                        }
                        out.extend_from_slice(&buf[..n]);
                    }
                    let out = String::from_utf8(out).unwrap();
                    let case = format!("{order:?} lost {lost} feed {feed} take {take}");
                    // The lines before the loss and after it are whole; at most the line
                    // of the loss differs.
                    let got: Vec<&str> = out.lines().collect();
                    let want: Vec<&str> = text.lines().collect();
                    assert_eq!(got.len(), want.len(), "{case}");
                    let line = text
                        .encode_utf16()
                        .take(lost / 2)
                        .filter(|&u| u == 0x0A)
                        .count();
                    for (k, (g, w)) in got.iter().zip(&want).enumerate() {
                        if k != line {
                            assert_eq!(g, w, "{case}: line {}", k + 1);
                        }
                    }
                    let note = notes.take().unwrap_or_default();
                    assert!(
                        note.starts_with(&format!("line {}: UTF-16 text one byte off", line + 1)),
                        "{case}: {note}"
                    );
                }
            }
        }
    }
}
