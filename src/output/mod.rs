//! Writing a [`Report`]: one file per format behind one small trait.
//!
//! Place in the flow: last stage; the only module that formats findings. Everything
//! that came from an archive is escaped for its medium here: control and bidi characters
//! for a terminal, formula prefixes for a spreadsheet cell; JSON escaping is serde's.

mod csv;
mod json;
mod ndjson;
mod stats;
mod table;

pub use stats::write_stats;

use std::io::{self, Write};

use chrono::{DateTime, SecondsFormat, Utc};

use crate::config::OutputFormat;
use crate::engine::Report;

/// Something that writes a report in one format.
pub trait Exporter {
    /// Writes the whole report.
    fn write(&self, report: &Report, out: &mut dyn Write) -> io::Result<()>;
}

/// The exporter for a format.
pub fn exporter(format: OutputFormat) -> Box<dyn Exporter> {
    match format {
        OutputFormat::Table => Box::new(table::Table),
        OutputFormat::Json => Box::new(json::Json),
        OutputFormat::Csv => Box::new(csv::Csv),
        OutputFormat::Ndjson => Box::new(ndjson::Ndjson),
    }
}

/// Writes a report in a format.
pub fn write(format: OutputFormat, report: &Report, out: &mut dyn Write) -> io::Result<()> {
    exporter(format).write(report, out)?;
    out.flush()
}

/// RFC 3339 in UTC with a `Z`, fractional seconds only when present.
pub fn rfc3339(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// Makes archive text safe to print on a terminal: control characters (C0, DEL, C1)
/// and bidirectional overrides become visible `\u{..}` escapes, so a crafted actor name
/// cannot move the cursor, recolour the screen or reorder what is shown.
pub fn terminal_safe(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        let bidi = matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
        if c.is_control() || bidi {
            out.push_str(&format!("\\u{{{:x}}}", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

/// Makes a cell safe for a spreadsheet: a value a spreadsheet would read as a formula
/// (leading `=`, `+`, `-`, `@`, tab or carriage return) gets a leading `'`.
pub fn spreadsheet_safe(text: &str) -> std::borrow::Cow<'_, str> {
    match text.as_bytes().first() {
        Some(b'=' | b'+' | b'-' | b'@' | b'\t' | b'\r') => format!("'{text}").into(),
        _ => text.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_escapes() {
        assert_eq!(terminal_safe("a\x1b[31mb"), "a\\u{1b}[31mb");
        assert_eq!(terminal_safe("x\u{202e}y\u{9b}"), "x\\u{202e}y\\u{9b}");
        assert_eq!(
            terminal_safe(r"NT AUTHORITY\SYSTEM é"),
            r"NT AUTHORITY\SYSTEM é"
        );
    }

    #[test]
    fn spreadsheet_escapes() {
        assert_eq!(spreadsheet_safe("=HYPERLINK(\"x\")"), "'=HYPERLINK(\"x\")");
        assert_eq!(spreadsheet_safe("+1"), "'+1");
        assert_eq!(spreadsheet_safe("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(spreadsheet_safe("alice@contoso.com"), "alice@contoso.com");
    }
}
