//! Layout sniffing: how the records of an input are laid out (JSON lines, a Purview CSV
//! export, or a JSON document), recognised from its first bytes after decompression, and
//! a doubt to warn about when an input read as JSON lines does not look like it. Only
//! looks at the head it is given: it never reads, and never parses a record.

/// How many leading bytes decide the layout of an input.
pub const SNIFF: usize = 4096;

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
        match head.first() {
            // Exports (issue 8): `[metadata]` (TOML) or `[garbage` is no JSON array, and
            // Elastic's one-line `{"events":[…]}` is a document, not one record.
            Some(b'[') if crate::document::opens_json_array(head) => Layout::JsonDocument,
            Some(b'{')
                if first_line == b"{"
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
    fn doubts() {
        assert_eq!(Layout::doubt(b"  \n{\"a\":1}"), None);
        assert_eq!(Layout::doubt(b""), None);
        let d = Layout::doubt(b"PK\x03\x04binary").unwrap();
        assert!(d.contains("PK"), "{d}");
    }
}
