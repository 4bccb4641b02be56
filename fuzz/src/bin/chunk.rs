//! The line/chunk splitter and the block reader over arbitrary reads: chunks cover the
//! data on line boundaries; the blocks give back the stream's lines exactly, an
//! overlong line as one skipped line of the right length, and as many lines as a naive
//! split; memory stays bounded by two blocks + max line (+ the 64 KiB read that ends a
//! skipped overlong line).
//! Control bytes: [0] chunk target, [1] block size, [2] max line, [3..6] read sizes.

use ualhunt_input::chunk;
use ualhunt_input::{Block, BlockReader};
use ualhunt_fuzz::{Pieces, split_control};

fn main() {
    afl::fuzz!(|data: &[u8]| {
        let Some((control, text)) = split_control(data, 6) else {
            return;
        };
        let target = usize::from(control[0]) + 1;
        let ranges = chunk::split(text, target);
        let mut pos = 0;
        for r in &ranges {
            assert_eq!(r.start, pos);
            assert!(r.end > r.start);
            if r.end < text.len() {
                assert_eq!(text[r.end - 1], b'\n');
            }
            pos = r.end;
        }
        assert_eq!(pos, text.len());

        let block = usize::from(control[1]) + 1;
        let max_line = usize::from(control[2]) * 4 + 1;
        let mut reader = BlockReader::new(Pieces::new(text, &control[3..]), block, max_line);
        // The stream as the blocks give it back, an overlong line as its length.
        let mut lines: Vec<Result<Vec<u8>, u64>> = Vec::new();
        let mut partial: Vec<u8> = Vec::new();
        let mut buf = Vec::new();
        while let Some(b) = reader.next_block(std::mem::take(&mut buf)).unwrap() {
            match b {
                Block::Lines(filled) => {
                    // A block holds at most a block read past a line of max_line; after
                    // a skipped overlong line, what its last 64 KiB read brought along.
                    let bound = 2 * block + max_line + (64 << 10) + 256;
                    assert!(filled.len() <= bound, "block of {}", filled.len());
                    for piece in filled.split_inclusive(|&c| c == b'\n') {
                        partial.extend_from_slice(piece);
                        if piece.ends_with(b"\n") {
                            lines.push(Ok(std::mem::take(&mut partial)));
                        }
                    }
                    buf = filled.into_buffer();
                }
                Block::Overlong { bytes, newline, .. } => {
                    assert!(partial.is_empty(), "an overlong line starts a line");
                    assert!(bytes as usize > max_line);
                    lines.push(Err(bytes + u64::from(newline)));
                }
            }
        }
        if !partial.is_empty() {
            lines.push(Ok(partial));
        }
        // Against a naive split of the input, BOM dropped.
        let body = text.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(text);
        let naive: Vec<&[u8]> = body.split_inclusive(|&c| c == b'\n').collect();
        assert_eq!(lines.len(), naive.len(), "line count");
        for (got, want) in lines.iter().zip(&naive) {
            match got {
                Ok(l) => assert_eq!(l.as_slice(), *want),
                Err(n) => assert_eq!(*n as usize, want.len()),
            }
        }
    });
}
