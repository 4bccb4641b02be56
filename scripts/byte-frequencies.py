#!/usr/bin/env python3
"""Writes crates/engine/src/prefilter/frequency.rs: how often each byte occurs in audit text, per
million bytes, and the four-byte strings common in it (JSON keys every record has,
`User`, `Mail`, `Set-`), counted over the sample archives in testdata/ (raw records, ECS
documents, exports; files over 200 kB and gzip files, whatever their name, left out so
that no single file dominates). The prefilter searches each literal through four of its
bytes that are rare by these.

Usage: scripts/byte-frequencies.py > crates/engine/src/prefilter/frequency.rs
"""
import pathlib

root = pathlib.Path(__file__).resolve().parent.parent
COMMON_AT_LEAST = 50  # occurrences in the sample for a four-byte string to be common
counts = [0] * 256
grams = {}
files = []
for path in sorted((root / "testdata").rglob("*")):
    if not path.is_file() or path.suffix in (".gz", ".zip") or path.stat().st_size > 200_000:
        continue
    data = path.read_bytes()
    if data[:2] == b"\x1f\x8b":  # gzip under another name
        continue
    files.append(path.relative_to(root).as_posix())
    for b in data:
        counts[b] += 1
    for i in range(len(data) - 3):
        gram = data[i:i + 4]
        grams[gram] = grams.get(gram, 0) + 1
total = sum(counts)
per_million = [round(c * 1_000_000 / total) for c in counts]
common = sorted(g for g, n in grams.items() if n >= COMMON_AT_LEAST)
print("//! How often each byte occurs in audit text, per million bytes, and the four-byte")
print("//! strings common in it: written by `scripts/byte-frequencies.py` from the sample")
print(f"//! archives in `testdata/` ({len(files)} files, {total} bytes). The prefilter searches each")
print("//! literal through four of its bytes that are rare by these (`super::rarity`).")
print()
print("/// Occurrences per million bytes of audit text, by byte value.")
print("pub const PER_MILLION: [u32; 256] = [")
for row in range(0, 256, 8):
    cells = ", ".join(str(v) for v in per_million[row:row + 8])
    print(f"    {cells}, // {row:#04x}")
print("];")
print()
print(f"/// The least share of positions in the sample a string of [`COMMON`] starts at")
print(f"/// ({COMMON_AT_LEAST} in {total}).")
print(f"pub const COMMON_SHARE: f64 = {COMMON_AT_LEAST}.0 / {total}.0;")
print()
print(f"/// Four-byte strings found at least {COMMON_AT_LEAST} times in the sample, sorted.")
print(f"pub const COMMON: [[u8; 4]; {len(common)}] = [")
for g in common:
    print("    *b\"" + "".join(chr(b) if 32 <= b < 127 and chr(b) not in '"\\' else f"\\x{b:02x}" for b in g) + "\",")
print("];")
