//! The gzip member header (RFC 1952, 2.3), read by both backends as it streams by: a
//! header split over reads, or with an extra field, name or comment of any length, is
//! read in bounded memory, and its CRC-16 (FHCRC) is checked. (flate2 refuses fields
//! over 64 KiB, and ISA-L 2.30 miscounts the header CRC and fields split over calls.)
//! And the member trailer (CRC-32 and length), read and checked the same way by both.

use std::io;

use super::invalid;

const FHCRC: u8 = 1 << 1;
const FEXTRA: u8 = 1 << 2;
const FNAME: u8 = 1 << 3;
const FCOMMENT: u8 = 1 << 4;
const FRESERVED: u8 = 0b1110_0000;

/// Where the header parser is. Every stage takes its bytes as they come, so a header
/// split over reads, or with a field of megabytes, is read in bounded memory.
#[derive(Default)]
pub(super) struct Header {
    fixed: [u8; 10],
    have: usize,
    stage: Stage,
    /// Bytes of the extra field still to skip, or of a two-byte number read so far.
    left: usize,
    pair: [u8; 2],
    /// CRC-32 of the header bytes so far, for FHCRC.
    crc: u32,
}

#[derive(Default, Clone, Copy, PartialEq, Eq)]
enum Stage {
    #[default]
    Fixed,
    ExtraLen,
    Extra,
    Name,
    Comment,
    Hcrc,
    Done,
}

impl Header {
    /// Whether the whole header has been read.
    pub(super) fn done(&self) -> bool {
        self.stage == Stage::Done
    }

    fn flags(&self) -> u8 {
        self.fixed[3]
    }

    /// The stage after `stage`, skipping fields the flags say are absent.
    fn after(&self, stage: Stage) -> Stage {
        let order = [
            (Stage::ExtraLen, FEXTRA),
            (Stage::Name, FNAME),
            (Stage::Comment, FCOMMENT),
            (Stage::Hcrc, FHCRC),
        ];
        let from = match stage {
            Stage::Fixed => 0,
            Stage::ExtraLen | Stage::Extra => 1,
            Stage::Name => 2,
            Stage::Comment => 3,
            Stage::Hcrc | Stage::Done => 4,
        };
        order[from..]
            .iter()
            .find(|(_, flag)| self.flags() & flag != 0)
            .map_or(Stage::Done, |&(s, _)| s)
    }

    /// Reads header bytes from `input`; returns how many were consumed.
    pub(super) fn read(&mut self, input: &[u8]) -> io::Result<usize> {
        let mut at = 0;
        while self.stage != Stage::Done && at < input.len() {
            let rest = &input[at..];
            let stage = self.stage;
            let took = match stage {
                Stage::Fixed => {
                    let n = rest.len().min(10 - self.have);
                    self.fixed[self.have..self.have + n].copy_from_slice(&rest[..n]);
                    self.have += n;
                    if self.have == 10 {
                        self.check_fixed()?;
                        self.crc = zlib_rs::crc32::crc32(0, &self.fixed);
                        self.stage = self.after(Stage::Fixed);
                    }
                    n
                }
                Stage::ExtraLen | Stage::Hcrc => {
                    self.pair[self.left] = rest[0];
                    self.left += 1;
                    if self.left == 2 {
                        let value = u16::from_le_bytes(self.pair);
                        self.left = 0;
                        if stage == Stage::ExtraLen {
                            self.left = usize::from(value);
                            self.stage = if self.left == 0 {
                                self.after(Stage::Extra)
                            } else {
                                Stage::Extra
                            };
                        } else {
                            if value != (self.crc & 0xffff) as u16 {
                                return Err(invalid("gzip header checksum mismatch"));
                            }
                            self.stage = Stage::Done;
                        }
                    }
                    1
                }
                Stage::Extra => {
                    let n = rest.len().min(self.left);
                    self.left -= n;
                    if self.left == 0 {
                        self.stage = self.after(Stage::Extra);
                    }
                    n
                }
                Stage::Name | Stage::Comment => match memchr::memchr(0, rest) {
                    Some(i) => {
                        self.stage = self.after(stage);
                        i + 1
                    }
                    None => rest.len(),
                },
                Stage::Done => 0,
            };
            // The header CRC covers every header byte before it.
            if !matches!(stage, Stage::Fixed | Stage::Hcrc) {
                self.crc = zlib_rs::crc32::crc32(self.crc, &rest[..took]);
            }
            at += took;
        }
        Ok(at)
    }

    fn check_fixed(&self) -> io::Result<()> {
        if self.fixed[..2] != [0x1f, 0x8b] {
            return Err(invalid("not a gzip member (invalid header)"));
        }
        if self.fixed[2] != 8 {
            return Err(invalid("gzip member with an unknown compression method"));
        }
        if self.flags() & FRESERVED != 0 {
            return Err(invalid("gzip header with reserved flags set"));
        }
        Ok(())
    }
}

/// A member's trailer, read as it streams by: the CRC-32 and the length (mod 2^32) of
/// the member's output.
#[derive(Default)]
pub(super) struct Trailer {
    bytes: [u8; 8],
    have: usize,
}

impl Trailer {
    /// A trailer whose first `have` bytes the inflater had already read (ISA-L's read
    /// ahead into its bit buffer).
    #[cfg(feature = "isal")]
    pub(super) fn started(bytes: [u8; 8], have: usize) -> Trailer {
        Trailer {
            bytes,
            have: have.min(8),
        }
    }

    /// Takes what it still needs of `input`; returns how many bytes it took.
    pub(super) fn read(&mut self, input: &[u8]) -> usize {
        let n = input.len().min(8 - self.have);
        self.bytes[self.have..self.have + n].copy_from_slice(&input[..n]);
        self.have += n;
        n
    }

    /// Whether all eight bytes are in.
    pub(super) fn done(&self) -> bool {
        self.have == 8
    }

    /// Checks the member's output against it (once [`Trailer::done`]).
    pub(super) fn check(&self, crc: u32, size: u32) -> io::Result<()> {
        let b = &self.bytes;
        if crc != u32::from_le_bytes([b[0], b[1], b[2], b[3]]) {
            Err(invalid("gzip member checksum mismatch"))
        } else if size != u32::from_le_bytes([b[4], b[5], b[6], b[7]]) {
            Err(invalid("gzip member length mismatch"))
        } else {
            Ok(())
        }
    }
}
