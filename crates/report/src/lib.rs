//! Writing a hunt's [`Report`]: one module per format behind one small trait.
//!
//! Place in the flow: the last stage, below nothing but the binary: one `Report` from
//! `ualhunt-engine` in, every format out; the only crate that formats findings. Each
//! finding comes with what the engine decided of it (its change, its allowlist entry,
//! its rule's evidence items resolved once per rule), so an output looks nothing up
//! per finding. Everything
//! that came from an archive is escaped for its medium here: control and bidi characters
//! for a terminal, formula prefixes for a spreadsheet cell, entities and visible
//! `\u{..}` escapes for an HTML page; JSON escaping is serde's.

#![deny(missing_docs)]

mod csv;
mod ecs;
mod escape;
mod exporter;
mod html;
mod json;
mod markdown;
mod ndjson;
mod next;
mod stats;
mod svg;
mod table;
mod time;
mod timeline;

pub use escape::{is_hidden, json_to_writer, spreadsheet_safe, terminal_safe};
pub use exporter::{Exporter, Layout};
pub use stats::write_stats;
pub use time::{Rfc3339, rfc3339};
pub use timeline::undated as timeline_undated;

use std::io::{self, Write};

use ualhunt_engine::Report;

/// How findings are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum OutputFormat {
    /// One row per actor, then a scan summary.
    #[default]
    Table,
    /// One JSON document (schema version 3).
    Json,
    /// One row per matched event.
    Csv,
    /// One matched event per line.
    Ndjson,
    /// JSON lines for timeline tools: matches, failed attempts, bypass periods, audit
    /// tampering, in time order.
    Timeline,
    /// Elastic Common Schema documents as `_bulk` NDJSON: alerts for Elastic Security.
    Ecs,
    /// One self-contained HTML page (inline CSS and SVG, no script).
    Html,
}

/// The exporter for a format.
pub fn exporter(format: OutputFormat, layout: Layout) -> Box<dyn Exporter> {
    match format {
        OutputFormat::Table => Box::new(table::Table {
            width: layout.width,
        }),
        OutputFormat::Json => Box::new(json::Json),
        OutputFormat::Csv => Box::new(csv::Csv),
        OutputFormat::Ndjson => Box::new(ndjson::Ndjson),
        OutputFormat::Timeline => Box::new(timeline::Timeline),
        OutputFormat::Ecs => Box::new(ecs::Ecs),
        OutputFormat::Html => Box::new(html::Html),
    }
}

/// Writes a report in a format.
pub fn write(format: OutputFormat, report: &Report, out: &mut dyn Write) -> io::Result<()> {
    write_with(format, Layout::default(), report, out)
}

/// Writes a report in a format, laid out as asked.
pub fn write_with(
    format: OutputFormat,
    layout: Layout,
    report: &Report,
    out: &mut dyn Write,
) -> io::Result<()> {
    // Exporters make many small writes: buffer them here, in a concrete type, so each
    // one is a copy rather than a dynamic call.
    let mut buffered = io::BufWriter::with_capacity(1 << 20, out);
    exporter(format, layout).write(report, &mut buffered)?;
    buffered.flush()
}
