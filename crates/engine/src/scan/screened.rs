//! The context pass's loop: the name search over each block, each line that holds a
//! name handed to [`candidate`] (whose screen, [`Sink::may_select`], turns most down
//! unparsed), and the lines counted in bulk between candidates instead of one newline
//! at a time.
//!
//! Place in the flow: [`super::scan_chunk`] runs it for a matcher that screens
//! ([`super::Matcher::with_screen`]: the context pass without `--context-full-read`),
//! which has no router, no `RecordType` lane and counts no coverage, so nothing but a
//! candidate's line number needs the lines. The reference is the general loop, which
//! `--context-full-read` runs: the same candidates, at the same lines, with the same
//! counts.

use memchr::{memchr, memchr_iter, memrchr};

use super::{Pass, Scratch, Sink, candidate, is_blank_at, is_space};
use crate::findings::Partial;

/// Scans one chunk of the context pass (see the module's documentation).
pub(super) fn scan_screened<S: Sink>(
    data: &[u8],
    file: usize,
    pass: Pass<'_, S>,
    scratch: &mut Scratch,
    out: &mut Partial<S>,
) {
    let m = pass.matcher;
    let len = data.len();
    let overlap = m.prefilter.overlap();
    let mut lines = Lines::new(data);
    let mut hits = std::mem::take(&mut scratch.hit_starts);
    // Lines that start before this were taken (or hold no hit the search found).
    let mut from = 0usize;
    let mut block_start = 0usize;
    while block_start < len {
        let block_end = (block_start + m.block).min(len);
        // A hit starting in the block may run past its end by `overlap`.
        let window_end = (block_end + overlap).min(len);
        from = from.max(block_start);
        let collected = m.prefilter.collects_hits() && from < block_end;
        if collected {
            m.prefilter.hits(data, from, window_end, &mut hits);
        }
        let mut next_hit = 0;
        while from < block_end {
            let found = if collected {
                while next_hit < hits.len() && hits[next_hit] < from {
                    next_hit += 1;
                }
                hits.get(next_hit).copied()
            } else {
                m.prefilter.find_at(data, from, window_end)
            };
            let Some(hit) = found else { break };
            if hit >= block_end {
                break;
            }
            let start = memrchr(b'\n', &data[..hit]).map_or(0, |i| i + 1);
            let end = memchr(b'\n', &data[hit..]).map_or(len, |i| hit + i);
            let index = lines.before(start);
            candidate(
                &data[start..end],
                file,
                index,
                start as u64,
                pass,
                scratch,
                out,
            );
            from = end + 1;
        }
        block_start = block_end;
    }
    let (newlines, blank) = lines.finish();
    scratch.hit_starts = hits;
    out.counts.lines = newlines + u64::from(data[len - 1] != b'\n');
    out.counts.blank = blank;
    out.counts.records = out.counts.lines - blank;
}

/// The lines of a chunk counted up to a position: its newlines, and the blank lines
/// (a line of spaces, tabs, `\r` or `\x0c` only) that start before it.
struct Lines<'a> {
    data: &'a [u8],
    /// Where counting stopped.
    at: usize,
    newlines: u64,
    blank: u64,
}

impl<'a> Lines<'a> {
    fn new(data: &'a [u8]) -> Lines<'a> {
        Lines {
            data,
            at: 0,
            newlines: 0,
            // The chunk's first line starts at 0, every other one after a newline.
            blank: u64::from(is_blank_at(data, 0)),
        }
    }

    /// The newlines before `to` (at or past where counting stopped): the 0-based line
    /// of a line starting there.
    fn before(&mut self, to: usize) -> u64 {
        let (data, from) = (self.data, self.at);
        self.newlines += memchr_iter(b'\n', &data[from..to]).count() as u64;
        self.blank += blank_after_newlines(data, from, to);
        self.at = to;
        self.newlines
    }

    /// The chunk's newlines and blank lines.
    fn finish(mut self) -> (u64, u64) {
        self.before(self.data.len());
        (self.newlines, self.blank)
    }
}

/// How many of the lines that start after a newline in `data[from..to]` are blank.
/// Such a line's first byte is a space or a newline: whole 64-byte stretches are
/// checked for a newline followed by one without a branch per byte, and only a
/// stretch that has one is read line by line.
fn blank_after_newlines(data: &[u8], from: usize, to: usize) -> u64 {
    const STRETCH: usize = 64;
    let mut blank = 0;
    let mut at = from;
    while at < to {
        let stop = (at + STRETCH).min(to);
        // Every byte of the stretch with the byte after it (the data's last byte has
        // none: that stretch is read line by line).
        let suspect = stop >= data.len()
            || data[at..stop]
                .iter()
                .zip(&data[at + 1..stop + 1])
                .fold(0u8, |any, (&b, &next)| {
                    any | (u8::from(b == b'\n') & u8::from(is_space(next)))
                })
                != 0;
        if suspect {
            blank += memchr_iter(b'\n', &data[at..stop])
                .filter(|&i| is_blank_at(data, at + i + 1))
                .count() as u64;
        }
        at = stop;
    }
    blank
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The newlines and the blank lines, counted one line at a time.
    fn counted(data: &[u8]) -> (u64, u64) {
        let mut blank = u64::from(is_blank_at(data, 0));
        let mut newlines = 0;
        for i in memchr_iter(b'\n', data) {
            newlines += 1;
            blank += u64::from(is_blank_at(data, i + 1));
        }
        (newlines, blank)
    }

    proptest::proptest! {
        #[test]
        fn lines_counted_in_bulk_are_the_lines_counted_one_by_one(
            parts in proptest::collection::vec(
                proptest::sample::select(vec![
                    "\n", "\r\n", " ", "\t", "\x0c", "\r", "{\"a\":1}", "x", "  \n",
                    "{\"UserId\":\"adm@contoso.com\"}",
                ]),
                0..200,
            ),
            cuts in proptest::collection::vec(0usize..2000, 0..6),
        ) {
            let text = parts.concat();
            let data = text.as_bytes();
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(data.len())).collect();
            cuts.sort_unstable();
            let mut lines = Lines::new(data);
            for &c in &cuts {
                let want = memchr_iter(b'\n', &data[..c]).count() as u64;
                proptest::prop_assert_eq!(lines.before(c), want);
            }
            proptest::prop_assert_eq!(lines.finish(), counted(data));
        }
    }
}
