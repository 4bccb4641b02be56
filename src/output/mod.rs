//! Writing a [`Report`]: one file per format behind one small trait.
//!
//! Place in the flow: last stage; the only module that formats findings. Everything
//! that came from an archive is escaped for its medium here: control and bidi characters
//! for a terminal, formula prefixes for a spreadsheet cell, entities and visible
//! `\u{..}` escapes for an HTML page; JSON escaping is serde's.

mod csv;
mod ecs;
mod html;
mod json;
mod ndjson;
mod stats;
mod svg;
mod table;
mod timeline;

pub use stats::write_stats;
pub use timeline::undated as timeline_undated;

use std::io::{self, Write};

use chrono::{DateTime, SecondsFormat, Utc};

use crate::config::OutputFormat;
use crate::engine::Report;

/// Something that writes a report in one format.
pub trait Exporter {
    /// Writes the whole report.
    fn write(&self, report: &Report, out: &mut dyn Write) -> io::Result<()>;
}

/// How a report is laid out where the format leaves a choice.
#[derive(Clone, Copy, Debug, Default)]
pub struct Layout {
    /// Columns the table may use (`None`: unlimited).
    pub width: Option<usize>,
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

/// RFC 3339 in UTC with a `Z`, fractional seconds only when present.
pub fn rfc3339(t: &DateTime<Utc>) -> String {
    Rfc3339::new(t).as_str().to_string()
}

/// A timestamp formatted as [`rfc3339`] does, without allocating: evidence lists can
/// hold hundreds of thousands of them.
#[derive(Clone, Copy)]
pub struct Rfc3339 {
    buf: [u8; 40],
    len: usize,
}

impl Rfc3339 {
    /// Formats `t` (chrono's `SecondsFormat::AutoSi` with `Z`).
    pub fn new(t: &DateTime<Utc>) -> Rfc3339 {
        use chrono::{Datelike, Timelike};
        let mut out = Rfc3339 {
            buf: [0; 40],
            len: 0,
        };
        let nanos = t.nanosecond();
        if !(0..=9999).contains(&t.year()) || nanos >= 1_000_000_000 {
            // Leap seconds and years outside 0..=9999: chrono's own formatting.
            let s = t.to_rfc3339_opts(SecondsFormat::AutoSi, true);
            let n = s.len().min(out.buf.len());
            out.buf[..n].copy_from_slice(&s.as_bytes()[..n]);
            out.len = n;
            return out;
        }
        let sep = |out: &mut Rfc3339, b: u8| {
            out.buf[out.len] = b;
            out.len += 1;
        };
        Rfc3339::digits(&mut out, t.year() as u32, 4);
        sep(&mut out, b'-');
        Rfc3339::digits(&mut out, t.month(), 2);
        sep(&mut out, b'-');
        Rfc3339::digits(&mut out, t.day(), 2);
        sep(&mut out, b'T');
        Rfc3339::digits(&mut out, t.hour(), 2);
        sep(&mut out, b':');
        Rfc3339::digits(&mut out, t.minute(), 2);
        sep(&mut out, b':');
        Rfc3339::digits(&mut out, t.second(), 2);
        if nanos != 0 {
            sep(&mut out, b'.');
            if nanos.is_multiple_of(1_000_000) {
                Rfc3339::digits(&mut out, nanos / 1_000_000, 3);
            } else if nanos.is_multiple_of(1_000) {
                Rfc3339::digits(&mut out, nanos / 1_000, 6);
            } else {
                Rfc3339::digits(&mut out, nanos, 9);
            }
        }
        sep(&mut out, b'Z');
        out
    }

    fn digits(out: &mut Rfc3339, value: u32, digits: u32) {
        for i in (0..digits).rev() {
            out.buf[out.len] = b'0' + (value / 10u32.pow(i) % 10) as u8;
            out.len += 1;
        }
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        // Only ASCII digits and separators, or chrono's own (UTF-8) output, are written.
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or_default()
    }
}

impl serde::Serialize for Rfc3339 {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// Whether a character would act rather than show when printed: control characters
/// (C0, DEL, C1), bidirectional marks, embeddings, overrides and isolates, and the
/// Unicode line and paragraph separators.
pub fn is_hidden_control(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{61c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
                | '\u{2028}' | '\u{2029}'
        )
}

/// Makes archive text safe to print on a terminal: control characters (C0, DEL, C1),
/// bidirectional controls and line separators become visible `\u{..}` escapes, so a
/// crafted actor name cannot move the cursor, recolour the screen, start a line or
/// reorder what is shown.
pub fn terminal_safe(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if is_hidden_control(c) {
            out.push_str(&format!("\\u{{{:x}}}", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

/// Makes a cell safe for a spreadsheet and for a terminal that shows the file: control,
/// bidi and line-separator characters become visible `\u{..}` escapes (as on a
/// terminal), and a value a spreadsheet would read as a formula (leading `=`, `+`,
/// `-`, `@`, tab or carriage return) gets a leading `'`.
pub fn spreadsheet_safe(text: &str) -> std::borrow::Cow<'_, str> {
    let formula = matches!(
        text.as_bytes().first(),
        Some(b'=' | b'+' | b'-' | b'@' | b'\t' | b'\r')
    );
    let visible: std::borrow::Cow<'_, str> = if text.chars().any(is_hidden_control) {
        terminal_safe(text).into()
    } else {
        text.into()
    };
    if formula {
        format!("'{visible}").into()
    } else {
        visible
    }
}

/// Writes `value` as compact JSON, as `serde_json::to_writer` does, except that the
/// characters that act on a terminal and that JSON lets through raw (DEL, C1 controls,
/// bidi controls, U+2028/U+2029) are written as `\uXXXX` escapes: the parsed value is
/// the same, but `cat`ing the file cannot recolour the terminal or reorder a line.
pub fn json_to_writer<W: Write, T: serde::Serialize + ?Sized>(out: W, value: &T) -> io::Result<()> {
    let mut ser = serde_json::Serializer::with_formatter(out, Inert);
    value.serialize(&mut ser).map_err(io::Error::other)
}

/// serde_json's compact formatter with hidden controls escaped (see [`json_to_writer`]).
struct Inert;

impl serde_json::ser::Formatter for Inert {
    fn write_string_fragment<W: ?Sized + Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        let mut from = 0;
        for (i, c) in fragment.char_indices() {
            if is_hidden_control(c) {
                writer.write_all(&fragment.as_bytes()[from..i])?;
                write!(writer, "\\u{:04x}", c as u32)?;
                from = i + c.len_utf8();
            }
        }
        writer.write_all(&fragment.as_bytes()[from..])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_format_like_chrono() {
        let mut rng = fastrand::Rng::with_seed(7);
        for _ in 0..20_000 {
            let secs = rng.i64(-62_000_000_000..253_000_000_000);
            let nanos = match rng.u8(0..4) {
                0 => 0,
                1 => rng.u32(0..1000) * 1_000_000,
                2 => rng.u32(0..1_000_000) * 1_000,
                _ => rng.u32(0..1_000_000_000),
            };
            let t = DateTime::from_timestamp(secs, nanos).unwrap();
            assert_eq!(
                Rfc3339::new(&t).as_str(),
                t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
            );
        }
    }

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
    fn json_escapes_what_acts_on_a_terminal_and_parses_back_the_same() {
        let text = "a\u{1b}[31m\u{9b}2J\u{202e}x\u{2028}y\u{7f}é\n\"";
        let mut out = Vec::new();
        json_to_writer(&mut out, &serde_json::json!({ "actor": text })).unwrap();
        let written = String::from_utf8(out).unwrap();
        assert_eq!(
            written,
            r#"{"actor":"a\u001b[31m\u009b2J\u202ex\u2028y\u007fé\n\""}"#
        );
        let back: serde_json::Value = serde_json::from_str(&written).unwrap();
        assert_eq!(back["actor"], text);
    }

    #[test]
    fn spreadsheet_escapes() {
        assert_eq!(spreadsheet_safe("=HYPERLINK(\"x\")"), "'=HYPERLINK(\"x\")");
        assert_eq!(spreadsheet_safe("+1"), "'+1");
        assert_eq!(spreadsheet_safe("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(spreadsheet_safe("alice@contoso.com"), "alice@contoso.com");
        assert_eq!(spreadsheet_safe("\tx\u{1b}[2J"), "'\\u{9}x\\u{1b}[2J");
        assert_eq!(
            spreadsheet_safe("a\u{202e}b\r\nc"),
            "a\\u{202e}b\\u{d}\\u{a}c"
        );
    }
}
