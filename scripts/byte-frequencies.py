#!/usr/bin/env python3
"""Writes src/prefilter/frequency.rs: how often each byte occurs in audit text, per
million bytes, counted over the sample archives in testdata/ (raw records, ECS
documents, exports; files over 200 kB and gzip files, whatever their name, left out so that no single
file dominates). The prefilter searches each literal from its rarest four bytes.

Usage: scripts/byte-frequencies.py > src/prefilter/frequency.rs
"""
import pathlib

root = pathlib.Path(__file__).resolve().parent.parent
counts = [0] * 256
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
total = sum(counts)
per_million = [round(c * 1_000_000 / total) for c in counts]
print("//! How often each byte occurs in audit text, per million bytes: written by")
print("//! `scripts/byte-frequencies.py` from the sample archives in `testdata/`")
print(f"//! ({len(files)} files, {total} bytes). The prefilter searches each literal from its")
print("//! four bytes that are rarest by this table (see `super::window`).")
print()
print("/// Occurrences per million bytes of audit text, by byte value.")
print("pub const PER_MILLION: [u32; 256] = [")
for row in range(0, 256, 8):
    cells = ", ".join(str(v) for v in per_million[row:row + 8])
    print(f"    {cells}, // {row:#04x}")
print("];")
