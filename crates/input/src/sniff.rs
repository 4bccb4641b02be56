//! Layout sniffing: how the records of an input are laid out (JSON lines, a Purview CSV
//! export, or a JSON document), recognised from its first bytes after decompression, and
//! a doubt to warn about when an input read as JSON lines does not look like it. The
//! judgements look only at the head they are given and never parse a record; `sniff_head` and
//! `read_sniff_head` say which bytes that head is, the same for a mapped file and a stream.

use std::io::{self, Read};

/// How many bytes from the first non-blank one decide the layout of an input.
pub const SNIFF: usize = 4096;

/// How far into leading whitespace (blank lines before the first record) the head is
/// looked for. An archive may open with any number of blank lines: a layout judged from
/// a window of blank lines and the first byte or two after them would be a guess. Past
/// this, the head is blank and the input is read as JSON lines; the bound keeps what a
/// stream's sniffing holds in memory small.
pub const LEADING: usize = 1 << 20;

/// The bytes an input's layout is recognised from: after a byte order mark and at most
/// `LEADING` bytes of whitespace, the next `SNIFF` bytes (fewer at the end of the data).
pub fn sniff_head(data: &[u8]) -> &[u8] {
    let data = strip_bom(data);
    let start = leading_blank(data);
    &data[start..data.len().min(start + SNIFF)]
}

/// Reads from the start of a stream into `buf` until it holds the bytes `sniff_head` takes its
/// head from (or the stream ends): at most a byte order mark, `LEADING` bytes of
/// whitespace and `SNIFF` bytes more, however the stream delivers them (a pipe may hand
/// over one byte at a time). Everything read stays in `buf`, to be read on from.
pub fn read_sniff_head(reader: &mut impl Read, buf: &mut Vec<u8>) -> io::Result<()> {
    loop {
        let text = strip_bom(buf);
        let need = (buf.len() - text.len()) + leading_blank(text) + SNIFF;
        if buf.len() >= need || reader.take((need - buf.len()) as u64).read_to_end(buf)? == 0 {
            return Ok(());
        }
    }
}

/// How many leading bytes of `data` are whitespace, at most `LEADING`.
fn leading_blank(data: &[u8]) -> usize {
    let window = &data[..data.len().min(LEADING)];
    window
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(window.len())
}

/// How the records of an input are laid out, recognised from its first bytes (after
/// decompression).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// One JSON record per line (also: empty input, and anything not recognised as one
    /// of the layouts below, whose lines are then counted as malformed where they hold
    /// a rule literal).
    JsonLines,
    /// A Purview / `Search-UnifiedAuditLog` CSV export (a header naming `AuditData`).
    PurviewCsv,
    /// A JSON document: a top-level array, or a pretty-printed object over many lines.
    JsonDocument,
}

impl Layout {
    /// Recognises the layout. Deliberately conservative: only an unmistakable CSV
    /// header or JSON document start is taken for one, so a JSON-lines archive whose
    /// first line is damaged is still read as JSON lines.
    pub fn sniff(head: &[u8]) -> Layout {
        let head = strip_bom(head);
        let start = head
            .iter()
            .position(|b| !b.is_ascii_whitespace())
            .unwrap_or(head.len());
        let head = &head[start..];
        let first_line = head
            .split(|&b| b == b'\n')
            .next()
            .unwrap_or_default()
            .trim_ascii();
        // A head cut short inside its first line (a lone `{` at the end of the window)
        // is no evidence of a document.
        let first_line_whole = head.contains(&b'\n');
        match head.first() {
            // Exports (issue 8): `[metadata]` (TOML) or `[garbage` is no JSON array, and
            // Elastic's one-line `{"events":[…]}` is a document, not one record.
            Some(b'[') if crate::document::opens_json_array(head) => Layout::JsonDocument,
            Some(b'{')
                if (first_line == b"{" && first_line_whole)
                    || crate::document::is_events_wrapper(head)
                    || crate::document::is_graph_page(head) =>
            {
                Layout::JsonDocument
            }
            Some(b'{') => Layout::JsonLines,
            // Purview's `AuditData`, Microsoft Graph's `auditData` column.
            Some(_)
                if first_line.contains(&b',')
                    && first_line
                        .windows(9)
                        .any(|w| w.eq_ignore_ascii_case(b"AuditData")) =>
            {
                Layout::PurviewCsv
            }
            _ => Layout::JsonLines,
        }
    }

    /// Why an input read as JSON lines does not look like JSON lines (it does not start
    /// with an object), for a warning; `None` when it does, or is empty.
    pub fn doubt(head: &[u8]) -> Option<String> {
        let head = strip_bom(head);
        let start = head.iter().position(|b| !b.is_ascii_whitespace())?;
        let first = &head[start..head.len().min(start + 24)];
        (first[0] != b'{').then(|| {
            format!(
                "not recognised as JSON lines, a CSV export or a JSON document (starts with {:?}); \
                 read as JSON lines",
                String::from_utf8_lossy(first)
            )
        })
    }

    /// Which of ualhunt's own reports an input is, from its first bytes: a report left
    /// in the evidence folder by an earlier run is no audit record, and is skipped with
    /// a note instead of being read as malformed lines.
    pub fn own_report(head: &[u8]) -> Option<&'static str> {
        let head = strip_bom(head);
        let start = head.iter().position(|b| !b.is_ascii_whitespace())?;
        let head = &head[start..];
        let first_line = head.split(|&b| b == b'\n').next().unwrap_or_default();
        let has = |hay: &[u8], needle: &[u8]| memchr::memmem::find(hay, needle).is_some();
        let json_report = head.starts_with(b"{\"version\":")
            && head[11..]
                .iter()
                .position(|b| !b.is_ascii_digit())
                .is_some_and(|i| i > 0 && head[11 + i..].starts_with(b",\"rules\":["));
        if json_report {
            Some("JSON")
        } else if head
            .starts_with(b"rule_id,rule_name,severity,actor,timestamp,path,line,record_id,")
        {
            Some("CSV")
        } else if head.starts_with(b"{\"rule\":{\"id\":") && has(first_line, b"\"rule_id\":") {
            Some("NDJSON")
        } else if head.starts_with(b"{") && has(first_line, b"\"data_type\":\"ualhunt:") {
            Some("timeline")
        } else if head.starts_with(b"{\"create\":{}}") && has(head, b"\"dataset\":\"ualhunt") {
            Some("ECS")
        } else if head.len() >= 15
            && head[..15].eq_ignore_ascii_case(b"<!DOCTYPE html>")
            && has(head, b"<meta name=\"generator\" content=\"ualhunt")
        {
            Some("HTML")
        } else if head.starts_with(b"rule: ") && has(head, b"\nVERDICT: ") {
            Some("table")
        } else {
            None
        }
    }

    /// A short name for reports.
    pub fn name(self) -> &'static str {
        match self {
            Layout::JsonLines => "jsonl",
            Layout::PurviewCsv => "purview-csv",
            Layout::JsonDocument => "json-document",
        }
    }
}

/// Removes a leading UTF-8 byte order mark.
pub fn strip_bom(data: &[u8]) -> &[u8] {
    data.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts() {
        assert_eq!(Layout::sniff(b"{\"Operation\":\"X\"}\n"), Layout::JsonLines);
        assert_eq!(
            Layout::sniff(b"\xEF\xBB\xBF  {\"Operation\":\"X\n"),
            Layout::JsonLines
        );
        assert_eq!(Layout::sniff(b""), Layout::JsonLines);
        assert_eq!(Layout::sniff(b"garbage Set-Mailbox\n{}"), Layout::JsonLines);
        assert_eq!(Layout::sniff(b"[\n  {\"a\":1}\n]"), Layout::JsonDocument);
        assert_eq!(Layout::sniff(b"{\r\n  \"a\": 1\r\n}"), Layout::JsonDocument);
        assert_eq!(Layout::sniff(b"[metadata]\nx = 1\n"), Layout::JsonLines);
        assert_eq!(Layout::sniff(b"[garbage Set-Mailbox\n"), Layout::JsonLines);
        assert_eq!(Layout::sniff(b"[ ]"), Layout::JsonDocument);
        assert_eq!(
            Layout::sniff(b"{\"events\": [{\"a\":1}]}"),
            Layout::JsonDocument
        );
        assert_eq!(
            Layout::sniff(b"CreationDate,UserIds,Operations,AuditData\r\n2024,..."),
            Layout::PurviewCsv
        );
        assert_eq!(
            Layout::sniff(b"\"RecordId\",\"CreationDate\",\"RecordType\",\"Operation\",\"UserId\",\"AuditData\"\n"),
            Layout::PurviewCsv
        );
    }

    #[test]
    fn the_head_is_found_past_leading_blank_lines() {
        // A pretty-printed document after many blank lines is still one, and a JSON-lines
        // archive whose blank lines fill a whole window is not taken for one.
        let mut doc = b"\r\n".repeat(3000);
        doc.extend_from_slice(b"{\n  \"a\": 1\n}\n");
        assert_eq!(Layout::sniff(sniff_head(&doc)), Layout::JsonDocument);
        let mut lines = b"\r\n".repeat(2047);
        lines.extend_from_slice(b"{\"Operation\":\"X\"}\n");
        assert_eq!(Layout::sniff(sniff_head(&lines)), Layout::JsonLines);
        // The window of the old sniffing ended on that record's `{`.
        assert_eq!(Layout::sniff(&lines[..SNIFF - 1]), Layout::JsonLines);
        assert_eq!(sniff_head(b"\xEF\xBB\xBF \n{}"), b"{}");
        // Past LEADING bytes of whitespace the head is blank: JSON lines.
        let mut far = vec![b'\n'; LEADING + SNIFF + 10];
        far.extend_from_slice(b"{\n\"a\":1}\n");
        assert!(sniff_head(&far).iter().all(u8::is_ascii_whitespace));
        assert_eq!(Layout::sniff(sniff_head(&far)), Layout::JsonLines);
    }

    #[test]
    fn a_stream_is_read_to_the_same_head() {
        // One byte at a time, as a pipe may deliver it.
        struct Trickle<'a>(&'a [u8]);
        impl Read for Trickle<'_> {
            fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
                let Some((&b, rest)) = self.0.split_first() else {
                    return Ok(0);
                };
                if out.is_empty() {
                    return Ok(0);
                }
                out[0] = b;
                self.0 = rest;
                Ok(1)
            }
        }
        let mut cases = vec![Vec::new(), b"{}".to_vec(), b"\xEF\xBB\xBF{}".to_vec()];
        for blank in [0, 5, SNIFF - 1, SNIFF + 3, 3 * SNIFF, LEADING + 5] {
            let mut data = b"\xEF\xBB\xBF".to_vec();
            data.extend(std::iter::repeat_n(b'\n', blank));
            data.extend(std::iter::repeat_n(b'x', 2 * SNIFF));
            cases.push(data);
        }
        for data in cases {
            let mut buf = Vec::new();
            read_sniff_head(&mut Trickle(&data), &mut buf).unwrap();
            assert!(data.starts_with(&buf));
            assert_eq!(sniff_head(&buf), sniff_head(&data), "{} bytes", data.len());
            assert!(buf.len() <= 3 + LEADING + SNIFF);
        }
    }

    #[test]
    fn doubts() {
        assert_eq!(Layout::doubt(b"  \n{\"a\":1}"), None);
        assert_eq!(Layout::doubt(b""), None);
        let d = Layout::doubt(b"PK\x03\x04binary").unwrap();
        assert!(d.contains("PK"), "{d}");
    }
}
