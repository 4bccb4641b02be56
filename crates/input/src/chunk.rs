//! Line-aligned chunking of a byte buffer.
//!
//! Place in the flow: `source` hands over a mapped file or a decompressed block; this
//! module cuts it into ranges that `scan` processes in parallel. A chunk starts at a line
//! start and ends just after a newline (or at the end of the data). Chunking knows
//! nothing about JSON; a line longer than the target size makes a longer chunk.

use std::ops::Range;

/// Splits `data` into consecutive line-aligned ranges of about `target` bytes each.
/// The ranges cover `data` exactly, in order.
pub fn split(data: &[u8], target: usize) -> Vec<Range<usize>> {
    let target = target.max(1);
    let mut ranges = Vec::with_capacity(data.len() / target + 1);
    let mut start = 0;
    while start < data.len() {
        let want = start.saturating_add(target);
        let end = if want >= data.len() {
            data.len()
        } else {
            // Extend to just past the next newline at or after the target end.
            match memchr::memchr(b'\n', &data[want - 1..]) {
                Some(i) => want + i,
                None => data.len(),
            }
        };
        ranges.push(start..end);
        start = end;
    }
    ranges
}

/// The line start at or after `at`: `at` itself when a line starts there, else the
/// position just past the next newline (or the end of `data`). Two readers that cut the
/// same data at the same nominal offset agree on where a piece ends and the next begins.
pub fn align(data: &[u8], at: u64) -> usize {
    let at = usize::try_from(at).unwrap_or(usize::MAX).min(data.len());
    if at == 0 || data[at - 1] == b'\n' {
        return at;
    }
    memchr::memchr(b'\n', &data[at..]).map_or(data.len(), |i| at + i + 1)
}

/// The position just past the last newline of `data`, if it has one.
pub fn last_line_end(data: &[u8]) -> Option<usize> {
    memchr::memrchr(b'\n', data).map(|i| i + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn align_moves_to_the_next_line_start() {
        let data = b"ab\ncd\n\nef";
        assert_eq!(align(data, 0), 0);
        assert_eq!(align(data, 1), 3);
        assert_eq!(align(data, 3), 3);
        assert_eq!(align(data, 4), 6);
        assert_eq!(align(data, 6), 6);
        assert_eq!(align(data, 7), 7);
        assert_eq!(align(data, 8), 9);
        assert_eq!(align(data, 99), 9);
    }
    use proptest::prelude::*;

    #[test]
    fn chunks_end_after_newlines() {
        let data = b"aa\nbbbb\nc\n\nddd";
        let ranges = split(data, 3);
        assert_eq!(ranges, vec![0..3, 3..8, 8..11, 11..14]);
        assert_eq!(split(data, 100), vec![0..14]);
        assert!(split(b"", 10).is_empty());
    }

    #[test]
    fn a_line_longer_than_a_chunk_is_one_chunk() {
        let data = b"x\nyyyyyyyyyyyyyyyy\nz\n";
        assert_eq!(split(data, 4), vec![0..19, 19..21]);
        assert_eq!(split(data, 2), vec![0..2, 2..19, 19..21]);
    }

    proptest! {
        #[test]
        fn chunks_cover_the_data_on_line_boundaries(
            data in proptest::collection::vec(prop_oneof![Just(b'\n'), Just(b'a'), Just(b'{')], 0..400),
            target in 1usize..64,
        ) {
            let ranges = split(&data, target);
            let mut pos = 0;
            for r in &ranges {
                prop_assert_eq!(r.start, pos);
                prop_assert!(r.end > r.start);
                if r.end < data.len() {
                    prop_assert_eq!(data[r.end - 1], b'\n');
                }
                pos = r.end;
            }
            prop_assert_eq!(pos, data.len());
        }
    }
}
