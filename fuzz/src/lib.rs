//! What the fuzz targets share: a reader that hands out input in pieces of chosen
//! sizes, and the line-accounting identities every partial result must satisfy.

use std::io::{self, Read};

use ualhunt_engine::findings::{Counts, Harvest, Partial};

/// Hands out at most `.1` bytes per read (a slow pipe), cycling through the sizes.
pub struct Pieces<'a> {
    data: &'a [u8],
    sizes: Vec<usize>,
    turn: usize,
}

impl<'a> Pieces<'a> {
    /// `sizes` is taken from the fuzzer's bytes: each is 1..=256.
    pub fn new(data: &'a [u8], seed: &[u8]) -> Pieces<'a> {
        let mut sizes: Vec<usize> = seed.iter().map(|&b| usize::from(b) + 1).collect();
        if sizes.is_empty() {
            sizes.push(usize::MAX);
        }
        Pieces {
            data,
            sizes,
            turn: 0,
        }
    }
}

impl Read for Pieces<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let size = self.sizes[self.turn % self.sizes.len()];
        self.turn += 1;
        let n = self.data.len().min(buf.len()).min(size);
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

/// The accounting identities of DESIGN §3 (`records = not_candidate + candidates` is
/// the definition of `not_candidate`, so it is checked as `candidates <= records`).
pub fn check_counts(c: &Counts, json_lines: bool) {
    assert!(c.candidates <= c.records, "{c:?}");
    assert_eq!(
        c.candidates,
        c.matched + c.not_matched + c.malformed,
        "candidates = matched + not_matched + malformed: {c:?}"
    );
    assert!(c.context <= c.not_matched, "{c:?}");
    if json_lines {
        assert_eq!(
            c.lines,
            c.blank + c.records,
            "lines = blank + records: {c:?}"
        );
    }
}

/// The findings of a partial, as (line, offset, record id) in order.
pub fn found(p: &Partial<Harvest>) -> Vec<(u64, u64, Option<String>)> {
    p.sink
        .findings
        .iter()
        .map(|f| {
            (
                f.at.line,
                f.at.offset,
                f.record_id.as_deref().map(str::to_string),
            )
        })
        .collect()
}

/// Splits the fuzzer's bytes into a few control bytes and the data.
pub fn split_control(data: &[u8], n: usize) -> Option<(&[u8], &[u8])> {
    (data.len() >= n).then(|| data.split_at(n))
}
