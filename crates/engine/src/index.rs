//! The block index: what the first pass learned about each chunk it scanned (where it
//! is, how many lines, the time range of its records), so that the context pass reads
//! only the chunks whose times meet what it watches.
//!
//! Place in the flow: `scan` makes one [`Span`] per chunk or stream block from the
//! chunk's coverage tally (no work per record beyond the tally's); the spans travel in
//! the first pass's `Partial` and merge like it (shifted when appended, in input
//! order). `stages` turns the watch into [`Times`] and asks [`within`] which byte
//! ranges of a JSON-lines file hold records of those times. For a gzip or zstd file the
//! first pass also keeps its seek points ([`Seekable`], from `ualhunt_input::seek`), so
//! that the context pass inflates only from the nearest point before each range. The
//! index never decides what a record means: a span whose records' times could not all
//! be read is always read again.

use std::ops::Range;

use serde::{Deserialize, Serialize};

/// One chunk (or stream block) of an input, as the first pass saw it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Span {
    /// The input's index in input order.
    pub input: u32,
    /// Where the chunk starts (decompressed bytes, from the input's start).
    pub offset: u64,
    /// Its length in bytes.
    pub len: u64,
    /// Lines before it in its input.
    pub line: u64,
    /// Its lines.
    pub lines: u64,
    /// Earliest record time in it (Unix seconds).
    pub first: Option<i64>,
    /// Latest record time in it.
    pub last: Option<i64>,
    /// Records in it whose time could not be read from their bytes.
    pub undated: u64,
}

impl Span {
    /// Whether the context pass must read this span to see every record whose time is
    /// in `times`: it holds an undated record, or its time range meets `times`.
    pub fn needed(&self, times: &Times) -> bool {
        if self.undated > 0 {
            return true;
        }
        match (self.first, self.last) {
            (Some(first), Some(last)) => times.meets(first, last),
            // No dated and no undated record: blank lines only.
            _ => false,
        }
    }
}

/// The seek points of one compressed file, and what the file was when they were taken
/// (a file of another size or modification time is read whole).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Seekable {
    /// The input's index in input order.
    pub input: u32,
    /// Its compression.
    pub codec: ualhunt_input::seek::Codec,
    /// Its size on disk.
    pub disk_len: u64,
    /// Its modification time (nanoseconds since the Unix epoch), where known.
    pub modified: Option<i128>,
    /// The points, in output order (none: read from the file's start).
    pub points: Vec<ualhunt_input::seek::Point>,
    /// Decompressed bytes before the first block (a byte order mark the reader dropped):
    /// a point's `out` is this much ahead of the blocks' positions.
    #[serde(default)]
    pub lead: u64,
}

impl Seekable {
    /// Size and modification time of the file at `path` now, as [`Seekable`] keeps
    /// them.
    pub fn identity(path: &std::path::Path) -> Option<(u64, Option<i128>)> {
        let md = std::fs::metadata(path).ok()?;
        let modified = md
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_nanos() as i128);
        Some((md.len(), modified))
    }

    /// The last point at or before decompressed offset `at` (`None`: the file's start).
    pub fn before(&self, at: u64) -> Option<&ualhunt_input::seek::Point> {
        let i = self.points.partition_point(|p| p.out <= at);
        i.checked_sub(1).map(|i| &self.points[i])
    }
}

/// A set of times (Unix seconds), as sorted, disjoint closed intervals.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Times(Vec<(i64, i64)>);

impl Times {
    /// The union of closed intervals `[start, end]` (empty ones are dropped).
    pub fn new(mut spans: Vec<(i64, i64)>) -> Times {
        spans.retain(|(s, e)| s <= e);
        spans.sort_unstable();
        let mut merged: Vec<(i64, i64)> = Vec::with_capacity(spans.len());
        for (s, e) in spans {
            match merged.last_mut() {
                Some(last) if s <= last.1.saturating_add(1) => last.1 = last.1.max(e),
                _ => merged.push((s, e)),
            }
        }
        Times(merged)
    }

    /// Whether `[first, last]` meets the set.
    pub fn meets(&self, first: i64, last: i64) -> bool {
        // The first interval that does not end before `first`.
        let i = self.0.partition_point(|&(_, e)| e < first);
        self.0.get(i).is_some_and(|&(s, _)| s <= last)
    }

    /// Whether `t` is in the set.
    pub fn contains(&self, t: i64) -> bool {
        self.meets(t, t)
    }

    /// The intervals.
    pub fn intervals(&self) -> &[(i64, i64)] {
        &self.0
    }
}

/// A byte range of an input to read, with the lines before it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stretch {
    /// The bytes (line-aligned: they start at a line start and end after a newline or
    /// at the end of the input).
    pub bytes: Range<u64>,
    /// Lines before it in its input.
    pub line: u64,
}

/// What the context pass reads of one input: some stretches of it, as the index
/// described it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Within {
    /// The input's length (decompressed) when the index was made: an input of another
    /// length has changed and is read whole.
    pub len: u64,
    /// The stretches to read, in order.
    pub stretches: Vec<Stretch>,
    /// A compressed file's seek points.
    pub seek: Option<Seekable>,
}

impl Within {
    /// The same stretches, those that meet end to start joined into one.
    pub fn joined(&self) -> Within {
        let mut stretches: Vec<Stretch> = Vec::with_capacity(self.stretches.len());
        for s in &self.stretches {
            match stretches.last_mut() {
                Some(last) if last.bytes.end == s.bytes.start => last.bytes.end = s.bytes.end,
                _ => stretches.push(s.clone()),
            }
        }
        Within {
            len: self.len,
            stretches,
            seek: self.seek.clone(),
        }
    }

    /// The stretches inside `bytes` (a piece of the input, in a sharded run), joined;
    /// `None` when a stretch runs across one of its ends (the index was not made on
    /// the same piece boundaries: the piece is then read whole).
    pub fn inside(&self, bytes: Range<u64>) -> Option<Within> {
        let mut stretches = Vec::new();
        for s in &self.stretches {
            let (a, b) = (s.bytes.start, s.bytes.end);
            if b <= bytes.start || a >= bytes.end {
                continue;
            }
            if a < bytes.start || b > bytes.end {
                return None;
            }
            stretches.push(s.clone());
        }
        Some(
            Within {
                len: self.len,
                stretches,
                seek: None,
            }
            .joined(),
        )
    }
}

/// What the context pass reads of each of `inputs` inputs, from an index in input
/// order (as a pass merges it): [`within`] each input's spans, with its seek points
/// (`seeks`) if it is a compressed file. The list ends with the last input the index
/// describes (an input past its end is read whole).
pub fn within_each(
    index: &[Span],
    seeks: &[Seekable],
    inputs: usize,
    times: &Times,
) -> Vec<Option<Within>> {
    within_each_as(index, seeks, inputs, times, true)
}

/// [`within_each`] with each needed span a stretch of its own (not joined to the next):
/// a sharded run's context plan, whose shards each read the stretches inside their
/// pieces of a file ([`Within::inside`]), the pieces' boundaries being span boundaries.
pub fn spans_each(
    index: &[Span],
    seeks: &[Seekable],
    inputs: usize,
    times: &Times,
) -> Vec<Option<Within>> {
    within_each_as(index, seeks, inputs, times, false)
}

fn within_each_as(
    index: &[Span],
    seeks: &[Seekable],
    inputs: usize,
    times: &Times,
    join: bool,
) -> Vec<Option<Within>> {
    // Up to the last input the index describes: the others are read whole anyway.
    let described = index
        .iter()
        .map(|s| s.input as usize + 1)
        .max()
        .unwrap_or(0);
    let mut out = vec![None; described.min(inputs)];
    for spans in index.chunk_by(|a, b| a.input == b.input) {
        if let Some(slot) = out.get_mut(spans[0].input as usize) {
            // An input with two runs of spans is not in input order: read it whole.
            *slot = match slot {
                None => within_as(spans, times, join),
                Some(_) => None,
            };
        }
    }
    for s in seeks {
        if let Some(Some(w)) = out.get_mut(s.input as usize) {
            w.seek = Some(s.clone());
        }
    }
    out
}

/// The stretches of one input (its spans, in order) that hold every record whose
/// time is in `times`, adjacent needed spans joined; `None` when the spans do not
/// tile the input from its start (then it is read whole).
pub fn within(spans: &[Span], times: &Times) -> Option<Within> {
    within_as(spans, times, true)
}

fn within_as(spans: &[Span], times: &Times, join: bool) -> Option<Within> {
    let mut at = 0u64;
    let mut line = 0u64;
    let mut out: Vec<Stretch> = Vec::new();
    let mut any = false;
    for s in spans {
        any = true;
        if s.offset != at || s.line != line {
            return None;
        }
        if s.needed(times) {
            match out.last_mut() {
                Some(last) if join && last.bytes.end == s.offset => last.bytes.end += s.len,
                _ => out.push(Stretch {
                    bytes: s.offset..s.offset + s.len,
                    line: s.line,
                }),
            }
        }
        at += s.len;
        line += s.lines;
    }
    any.then_some(Within {
        len: at,
        stretches: out,
        seek: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(offset: u64, len: u64, line: u64, times: Option<(i64, i64)>) -> Span {
        Span {
            input: 0,
            offset,
            len,
            line,
            lines: 10,
            first: times.map(|t| t.0),
            last: times.map(|t| t.1),
            undated: 0,
        }
    }

    #[test]
    fn times_merge_and_meet() {
        let t = Times::new(vec![(50, 60), (10, 20), (15, 30), (31, 40), (9, 5)]);
        assert_eq!(t.intervals(), &[(10, 40), (50, 60)]);
        assert!(t.meets(0, 10));
        assert!(t.meets(41, 50));
        assert!(!t.meets(41, 49));
        assert!(!t.meets(61, 100));
        assert!(t.meets(0, 100));
        assert!(t.contains(55));
        assert!(!Times::default().meets(i64::MIN, i64::MAX));
    }

    #[test]
    fn needed_spans_are_joined_and_an_index_that_does_not_tile_is_refused() {
        let index = [
            span(0, 100, 0, Some((0, 10))),
            span(100, 100, 10, Some((11, 20))),
            span(200, 100, 20, Some((21, 30))),
            span(300, 100, 30, None),
            Span {
                undated: 1,
                ..span(400, 100, 40, Some((31, 40)))
            },
        ];
        let times = Times::new(vec![(12, 25)]);
        let w = within(&index, &times).unwrap();
        assert_eq!(w.len, 500);
        assert_eq!(
            w.stretches,
            vec![
                Stretch {
                    bytes: 100..300,
                    line: 10
                },
                Stretch {
                    bytes: 400..500,
                    line: 40
                }
            ]
        );
        // A gap in the index.
        assert_eq!(within(&index[1..], &times), None);
        let mut moved = index;
        moved[2].line += 1;
        assert_eq!(within(&moved, &times), None);
        // Inputs without spans, or whose spans come in two runs, are read whole.
        let mut two = index.to_vec();
        two.push(Span {
            input: 1,
            ..span(0, 7, 0, Some((0, 1)))
        });
        let each = within_each(&two, &[], 3, &times);
        assert_eq!(each[0].as_ref(), Some(&w));
        assert_eq!(each[1].as_ref().map(|w| w.len), Some(7));
        // Past the last input described: no entry, read whole.
        assert_eq!(each.len(), 2);
        two.push(span(0, 100, 0, Some((0, 10))));
        assert_eq!(within_each(&two, &[], 3, &times)[0], None);
    }
}
