//! The plan of a sharded run: which share of the inputs each of N shards reads.
//!
//! The inputs are laid end to end in input order (the sorted list discovery gives) and
//! the total cut into N equal byte ranges. A file that is compressed, UTF-16, a zip entry,
//! a CSV export or a JSON document (read sequentially: records may span lines) stays
//! whole and goes to the shard its middle byte falls in; a plain JSON-lines file is cut
//! where the shard boundaries cross it, so one huge file spreads over several shards.
//! A cut is a nominal byte offset; the shard reading a piece moves each end to the next
//! line start ([`ualhunt_input::chunk::align`]), so neighbouring pieces meet exactly, whatever
//! the lines. Nothing here reads more than the first bytes of a plain file (to recognise
//! its layout).

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::scan::{Piece, Unit};
use crate::stages::Found;
use ualhunt_input::{Compression, Input, Layout};

/// One shard of a run split `count` ways; `index` counts from 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    /// This shard's position, `0..count`.
    pub index: u32,
    /// How many shards the run has.
    pub count: u32,
}

impl Shard {
    /// A checked shard.
    pub fn new(index: u32, count: u32) -> Result<Shard, String> {
        if count == 0 {
            return Err("the shard count must be at least 1".to_string());
        }
        if index >= count {
            return Err(format!(
                "shard index {index} is out of range for {count} shards (indexes count from 0: 0..{})",
                count - 1
            ));
        }
        Ok(Shard { index, count })
    }

    /// Parses `K/N` (K from 0 to N - 1).
    pub fn parse(text: &str) -> Result<Shard, String> {
        let bad =
            || format!("invalid shard {text:?}: expected K/N, e.g. 0/4 (K counts from 0), or auto");
        let (k, n) = text.trim().split_once('/').ok_or_else(bad)?;
        let k: u32 = k.trim().parse().map_err(|_| bad())?;
        let n: u32 = n.trim().parse().map_err(|_| bad())?;
        Shard::new(k, n)
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// What tells one version of a file from another besides its size: its modification
/// time (nanoseconds since the epoch) and inode (0 where unknown). A file rewritten
/// between two shards' runs changes the plan, so their partials do not merge.
fn identity(path: &std::path::Path) -> (u64, u64) {
    let Ok(meta) = std::fs::metadata(path) else {
        return (0, 0);
    };
    let modified = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos() as u64);
    #[cfg(unix)]
    let inode = std::os::unix::fs::MetadataExt::ino(&meta);
    #[cfg(not(unix))]
    let inode = 0;
    (modified, inode)
}

/// A zip archive as the plan sees it, found once however many entries it has: its
/// length, its entry count and its [`identity`].
struct ZipFacts {
    len: u64,
    entries: u64,
    identity: (u64, u64),
}

/// How an input weighs in the plan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sized {
    /// Bytes on disk (an equal share of its archive for a zip entry).
    pub size: u64,
    /// A plain JSON-lines file: may be cut into pieces.
    pub splittable: bool,
}

/// The plan: every input's weight, and the boundaries of the N shares.
#[derive(Clone, Debug)]
pub struct Plan {
    /// The shard count.
    pub count: u32,
    /// Each input's weight, in input order.
    pub inputs: Vec<Sized>,
    /// Sum of the weights.
    pub total: u64,
    /// A digest of the inputs, their weights and the discovery errors: equal plans,
    /// equal digests.
    pub digest: String,
}

impl Plan {
    /// Plans `count` shards over what discovery found.
    pub fn new(found: &Found, count: u32) -> Plan {
        // One `stat` per archive, not per entry: a zip of a million entries is one file.
        let mut zips: std::collections::HashMap<&std::path::Path, ZipFacts> = Default::default();
        for i in &found.inputs {
            if let Input::ZipEntry { archive, .. } = i {
                zips.entry(archive.path.as_path())
                    .or_insert_with(|| ZipFacts {
                        len: std::fs::metadata(&archive.path).map_or(0, |m| m.len()),
                        entries: 0,
                        identity: identity(&archive.path),
                    })
                    .entries += 1;
            }
        }
        let inputs: Vec<Sized> = found
            .inputs
            .iter()
            .map(|i| match i {
                Input::File(path) => size_file(path),
                Input::ZipEntry { archive, .. } => {
                    let zip = &zips[archive.path.as_path()];
                    Sized {
                        size: zip.len / zip.entries.max(1),
                        splittable: false,
                    }
                }
                Input::Stdin => Sized {
                    size: 0,
                    splittable: false,
                },
            })
            .collect();
        let total = inputs.iter().map(|s| s.size).sum();
        let mut d = Digest::default();
        for (s, input) in inputs.iter().zip(&found.inputs) {
            let (modified, inode) = match input {
                Input::File(path) => {
                    d.text(&input.display());
                    d.text("");
                    identity(path)
                }
                Input::ZipEntry { archive, entry } => {
                    // The archive's path and the entry's name, as `display` and
                    // `member` give them, with the name read once.
                    let name = archive.name(*entry);
                    d.text(&format!("{}!{name}", archive.path.display()));
                    d.text(&name);
                    zips[archive.path.as_path()].identity
                }
                Input::Stdin => {
                    d.text(&input.display());
                    d.text("");
                    (0, 0)
                }
            };
            d.number(s.size);
            d.number(u64::from(s.splittable));
            d.number(modified);
            d.number(inode);
        }
        for e in &found.errors {
            d.text(e.path());
            d.text(&e.to_string());
        }
        Plan {
            count,
            inputs,
            total,
            digest: d.hex(),
        }
    }

    /// Where share `k` begins in the inputs laid end to end (`k` up to `count`).
    fn boundary(&self, k: u32) -> u64 {
        (u128::from(self.total) * u128::from(k) / u128::from(self.count)) as u64
    }

    /// The shard whose share holds byte `pos`.
    fn shard_of(&self, pos: u64) -> u32 {
        if self.total == 0 {
            return 0;
        }
        let mut k = ((u128::from(pos) * u128::from(self.count)) / u128::from(self.total))
            .min(u128::from(self.count - 1)) as u32;
        // The estimate may be one off where a boundary was rounded down.
        while k + 1 < self.count && self.boundary(k + 1) <= pos {
            k += 1;
        }
        while k > 0 && self.boundary(k) > pos {
            k -= 1;
        }
        k
    }

    /// What shard `index` reads, in input order.
    pub fn units(&self, index: u32) -> Vec<Unit> {
        let (lo, hi) = (self.boundary(index), self.boundary(index + 1));
        let mut units = Vec::new();
        let mut pos = 0u64;
        for (i, s) in self.inputs.iter().enumerate() {
            let (start, end) = (pos, pos + s.size);
            pos = end;
            if s.splittable && s.size > 0 {
                let (a, b) = (start.max(lo), end.min(hi));
                if a >= b {
                    continue;
                }
                let piece = (a > start || b < end).then(|| Piece {
                    start: a - start,
                    end: (b < end).then(|| b - start),
                });
                units.push(Unit {
                    input: i as u32,
                    piece,
                });
            } else if self.shard_of(start + s.size / 2) == index {
                units.push(Unit {
                    input: i as u32,
                    piece: None,
                });
            }
        }
        units
    }
}

/// Weighs a file: its size, and whether it is a plain JSON-lines file (from its first
/// bytes, recognised the way `source::open` and the engine do).
fn size_file(path: &std::path::Path) -> Sized {
    let Ok(meta) = std::fs::metadata(path) else {
        return Sized {
            size: 0,
            splittable: false,
        };
    };
    let size = meta.len();
    if !meta.is_file() || size == 0 {
        return Sized {
            size,
            splittable: false,
        };
    }
    // The layout's head (past a byte order mark and leading blank lines) is at least
    // SNIFF bytes from the start: more than compression and UTF-16 detection read.
    let mut head = Vec::with_capacity(ualhunt_input::SNIFF);
    let read = std::fs::File::open(path)
        .and_then(|mut f| ualhunt_input::read_sniff_head(&mut f, &mut head));
    let splittable = read.is_ok() && {
        let utf16 =
            ualhunt_input::utf16::sniff(&head[..head.len().min(ualhunt_input::utf16::SNIFF)])
                .is_some();
        Compression::sniff(&head) == Compression::None
            && !utf16
            && Layout::sniff(ualhunt_input::sniff_head(&head)) == Layout::JsonLines
    };
    Sized { size, splittable }
}

/// FNV-1a, 64 bits: a stable digest (the same on every machine and build) for telling
/// whether two shards planned the same run. A consistency check, not a security one.
#[derive(Clone, Copy, Debug)]
pub struct Digest(u64);

impl Default for Digest {
    fn default() -> Digest {
        Digest(0xcbf2_9ce4_8422_2325)
    }
}

impl Digest {
    /// Adds bytes.
    pub fn bytes(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    /// Adds a text, length first (so that `ab`,`c` and `a`,`bc` differ).
    pub fn text(&mut self, text: &str) {
        self.number(text.len() as u64);
        self.bytes(text.as_bytes());
    }

    /// Adds a number.
    pub fn number(&mut self, n: u64) {
        self.bytes(&n.to_le_bytes());
    }

    /// The digest in hex.
    pub fn hex(&self) -> String {
        let mut s = String::with_capacity(16);
        let _ = write!(s, "{:016x}", self.0);
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(sizes: &[(u64, bool)], count: u32) -> Plan {
        let inputs: Vec<Sized> = sizes
            .iter()
            .map(|&(size, splittable)| Sized { size, splittable })
            .collect();
        Plan {
            count,
            total: inputs.iter().map(|s| s.size).sum(),
            inputs,
            digest: String::new(),
        }
    }

    #[test]
    fn shards_parse_from_k_over_n() {
        assert_eq!(Shard::parse("0/4"), Ok(Shard { index: 0, count: 4 }));
        assert_eq!(Shard::parse(" 3/4 "), Ok(Shard { index: 3, count: 4 }));
        assert!(Shard::parse("4/4").unwrap_err().contains("from 0"));
        assert!(Shard::parse("0/0").is_err());
        assert!(Shard::parse("1").is_err());
        assert!(Shard::parse("a/b").is_err());
    }

    #[test]
    fn every_input_is_read_once_and_pieces_meet() {
        let sizes = [
            (100, false),
            (1000, true),
            (0, false),
            (10, true),
            (500, false),
            (7, true),
            (0, true),
        ];
        for count in 1..9 {
            let p = plan(&sizes, count);
            let mut whole = vec![0; sizes.len()];
            let mut pieces: Vec<Vec<Piece>> = vec![Vec::new(); sizes.len()];
            for k in 0..count {
                let units = p.units(k);
                assert!(units.windows(2).all(|w| w[0].input < w[1].input));
                for u in units {
                    match u.piece {
                        None => whole[u.input as usize] += 1,
                        Some(piece) => pieces[u.input as usize].push(piece),
                    }
                }
            }
            for (i, ps) in pieces.iter().enumerate() {
                if ps.is_empty() {
                    assert_eq!(whole[i], 1, "input {i} read once whole ({count} shards)");
                    continue;
                }
                assert_eq!(whole[i], 0);
                assert!(sizes[i].1, "only plain files are cut");
                assert_eq!(ps[0].start, 0);
                assert_eq!(ps.last().unwrap().end, None);
                for w in ps.windows(2) {
                    assert_eq!(w[0].end, Some(w[1].start));
                }
            }
        }
    }

    #[test]
    fn shares_are_balanced_and_big_plain_files_spread() {
        let p = plan(&[(4000, true), (10, false), (10, false)], 4);
        let share = |k| -> u64 {
            p.units(k)
                .iter()
                .map(|u| match u.piece {
                    None => p.inputs[u.input as usize].size,
                    Some(piece) => {
                        let r = piece.range(p.inputs[u.input as usize].size);
                        r.end - r.start
                    }
                })
                .sum()
        };
        let shares: Vec<u64> = (0..4).map(share).collect();
        assert_eq!(shares.iter().sum::<u64>(), 4020);
        assert!(
            shares.iter().all(|&s| (995..=1025).contains(&s)),
            "{shares:?}"
        );
        let gz = plan(&[(4000, false), (10, false)], 4);
        assert_eq!(
            gz.units(0).len() + gz.units(1).len(),
            1,
            "a compressed file stays whole"
        );
    }

    #[test]
    fn an_empty_run_goes_to_the_first_shard() {
        let p = plan(&[(0, false), (0, false)], 3);
        assert_eq!(p.units(0).len(), 2);
        assert!(p.units(1).is_empty() && p.units(2).is_empty());
    }

    #[test]
    fn digests_are_stable() {
        let mut d = Digest::default();
        d.bytes(b"a");
        assert_eq!(d.hex(), "af63dc4c8601ec8c");
    }
}
