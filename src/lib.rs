//! ualhunt: runs Elastic's "O365 Mailbox Audit Logging Bypass" detection rule offline
//! over Microsoft 365 audit archives, at the speed of the hardware.
//!
//! The modules follow the data:
//!
//! `source` (find, sniff, map or stream inputs) → `chunk` (line-aligned ranges) →
//! `prefilter` (byte search for the rules' literals) → `record` (simd-json parse of the
//! candidates, ECS field view) → `rule` (KQL, evaluated) → `findings` (mergeable partial
//! results, grouped by actor) → `output` (table, JSON, CSV, NDJSON). `scan` is the hot
//! loop over one chunk; `engine` drives it all on a rayon pool. `utf16` transcodes UTF-16
//! inputs to UTF-8 as they are read; `warnings` says when a path gave nothing to read.
#![deny(missing_docs)]

pub mod alloc;
pub mod allow;
pub mod analysis;
pub mod chunk;
pub mod config;
pub mod coverage;
pub mod document;
pub mod engine;
pub mod error;
pub mod evidence;
pub mod field;
pub mod findings;
pub mod generate;
pub mod inflate;
pub mod output;
pub mod prefilter;
pub mod record;
pub mod rule;
pub mod scan;
pub mod shard;
pub mod source;
pub mod utf16;
pub mod warnings;

#[cfg(test)]
mod testutil;

pub use config::{Config, OutputFormat};
pub use engine::{Report, run};
