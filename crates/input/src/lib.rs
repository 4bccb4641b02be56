//! Bytes of any Microsoft 365 audit export to blocks and records.
//!
//! Place in the flow: the first stage of a hunt, below the engine, above nothing but the
//! file system. [`discover()`] expands the paths the user gave (directories recursively,
//! in sorted order; `-` is stdin; a `.zip` archive is each of its entries, an Excel
//! workbook the CSV export it was, [`xlsx`]). [`open`]
//! looks at the magic bytes, not the name: plain files are memory-mapped behind a guard
//! that notices a file cut under the scan ([`GuardedMap`]); gzip (multi-member, one
//! large file over several cores), zstd, zip entries and stdin become a stream, UTF-16
//! transcoded to UTF-8 on the way ([`utf16`]). [`Layout`] tells from the first bytes how
//! records are laid out: JSON lines are cut into line-aligned [`chunk`]s (mapped) or
//! [`Block`]s (streams, by [`BlockReader`], memory bounded by the block and the longest
//! line); CSV exports and JSON documents are cut into records by [`document`].
//!
//! Nothing here parses a record, knows a rule or prints: the one thing asked of the
//! caller is which byte strings make a line worth keeping ([`Literals`]), so that a line
//! too long to hold or a stray piece of a document can still be reported when it held
//! one. Progress is only counted ([`Progress`]).

#![deny(missing_docs)]

mod blocks;
pub mod chunk;
mod discover;
pub mod document;
mod failed;
mod guard;
pub mod inflate;
mod open;
mod progress;
pub mod seek;
mod sniff;
#[doc(hidden)]
pub mod testutil;
mod unzstd;
pub mod utf16;
pub mod xlsx;
mod zip;

pub use blocks::{Block, BlockReader, Filled};
pub use discover::{DiscoverError, discover};
pub use guard::{Change, GuardedMap};
pub use open::{Compression, Input, Mapped, Opened, disk_total, open, open_noting};
pub use progress::Progress;
pub use sniff::{Layout, SNIFF, read_sniff_head, sniff_head, strip_bom};
pub use zip::ZipSource;

/// The byte strings that make a line a candidate, as the caller's searcher finds them.
pub trait Literals: Send + Sync {
    /// Where the first hit in `haystack` starts, if there is one.
    fn find(&self, haystack: &[u8]) -> Option<usize>;

    /// How many bytes past a range's end a hit starting inside it can reach (a literal
    /// that straddles two reads is found when this many bytes are kept).
    fn overlap(&self) -> usize;
}
