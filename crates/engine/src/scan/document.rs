//! Record-oriented layouts scanned: Purview CSV exports and JSON documents.
//!
//! Place in the flow: [`inputs`](super::inputs) sends an input here instead of to the
//! line-chunk scan when its [`Layout`](ualhunt_input::Layout) is a CSV export or a JSON
//! document. `ualhunt_input::document` cuts the records; here each one is counted and
//! tallied for the coverage, and only those holding a literal are parsed
//! (`scan::candidate`), with the line where the record starts and that line's byte offset.
//! A rule literal outside every record of a JSON document is counted malformed.

use std::io::{self, Read};

use ualhunt_input::document::{self, Item, Pos};

use crate::coverage::Tally;
use crate::findings::Partial;

use super::{Pass, Scratch, Sink, candidate};

/// What reading an input gave: its partial result, and the error that stopped it early.
pub type Outcome<S> = (Partial<S>, Option<io::Error>);

/// How far reading an input went, and the damage it read past.
#[derive(Debug, Default)]
pub struct Extent {
    /// Bytes read.
    pub bytes: u64,
    /// Damage read past, each with its 1-based line (`line 7: stray closing bracket…`).
    pub warnings: Vec<String>,
}

/// Scans a Purview / `Search-UnifiedAuditLog` CSV export: the record of a row is the
/// JSON in its `AuditData` cell, unquoted and parsed only when the row holds a literal.
/// Returns how far it read too.
pub fn scan_csv<S: Sink>(
    input: impl Read,
    file: usize,
    pass: Pass<'_, S>,
    scratch: &mut Scratch,
) -> (Outcome<S>, Extent) {
    let m = pass.matcher;
    let literals = m.literals();
    let literals = (!literals.is_everything()).then_some(literals as &dyn ualhunt_input::Literals);
    scan_records(file, pass, scratch, |on| {
        document::read_csv(input, m.max_line(), literals, on)
    })
}

/// Scans a JSON document as a stream of record objects. Returns how far it read too.
pub fn scan_json_document<S: Sink>(
    input: impl Read,
    file: usize,
    pass: Pass<'_, S>,
    scratch: &mut Scratch,
) -> (Outcome<S>, Extent) {
    let m = pass.matcher;
    // Text outside the records is searched for the rules' literals too.
    let literals = m.literals();
    let strays = (!literals.is_everything()).then_some(literals as &dyn ualhunt_input::Literals);
    scan_records(file, pass, scratch, |on| {
        document::read_json(input, m.max_line(), strays, on)
    })
}

/// Counts, tallies and parses each record a reader cuts.
fn scan_records<S: Sink>(
    file: usize,
    pass: Pass<'_, S>,
    scratch: &mut Scratch,
    read: impl FnOnce(&mut document::OnItem<'_>) -> document::Outcome,
) -> (Outcome<S>, Extent) {
    let m = pass.matcher;
    let mut out = Partial::default();
    let mut tally = Tally::default();
    let mut json = Vec::new();
    let read = read(&mut |item: Item<'_>, pos: Pos| match item {
        Item::Blank => out.counts.blank += 1,
        Item::Skipped => {
            out.counts.records += 1;
            if m.counts_coverage() {
                tally.undated();
            }
        }
        Item::Unkept(why) => {
            out.counts.records += 1;
            if m.counts_coverage() {
                tally.undated();
            }
            out.malformed(file, pos.line, why.to_string(), b"");
        }
        Item::Record(record) => {
            out.counts.records += 1;
            let bytes = record.bytes();
            if m.counts_coverage() {
                tally.record(bytes);
            }
            if !m.is_candidate(bytes) {
                return;
            }
            match record.json(&mut json) {
                Ok(json) => candidate(json, file, pos.line, pos.offset, pass, scratch, &mut out),
                Err(why) => out.malformed(file, pos.line, why.to_string(), bytes),
            }
        }
    });
    out.counts.lines = read.lines;
    out.coverage = tally.finish();
    out.bytes = read.bytes;
    let mut warnings: Vec<String> = read
        .warnings
        .iter()
        .map(|(pos, what)| format!("line {}: {what}", pos.line + 1))
        .collect();
    if read.more_warnings > 0 {
        warnings.push(format!("{} more of these", read.more_warnings));
    }
    let extent = Extent {
        bytes: read.bytes,
        warnings,
    };
    ((out, read.error), extent)
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::findings::Harvest;
    use crate::rule::Rule;
    use crate::scan::Matcher;
    use ualhunt_input::testutil::Trickle;

    const REC: &str = r#"{"CreationTime":"2024-03-05T10:11:12","Id":"ID","Operation":"Set-MailboxAuditBypassAssociation","Workload":"Exchange","ResultStatus":"Succeeded","UserId":"u@x","Parameters":[{"Name":"Identity","Value":"m"},{"Name":"AuditBypassEnabled","Value":"True"}]}"#;
    const MISS: &str = r#"{"CreationTime":"2024-03-05T10:11:12","Id":"N","Operation":"Set-Mailbox","Workload":"Exchange","UserId":"u@x"}"#;

    fn matcher() -> Matcher {
        Matcher::new(Rule::builtin(), true, 1 << 20)
    }

    fn lines_of(p: &Partial<Harvest>) -> Vec<u64> {
        p.sink.findings.iter().map(|f| f.at.line + 1).collect()
    }

    fn doc(text: &str) -> Partial<Harvest> {
        doc_in_reads(text, usize::MAX)
    }

    /// Reads the document at most `max_read` bytes at a time, like a slow pipe.
    fn doc_in_reads(text: &str, max_read: usize) -> Partial<Harvest> {
        let input = Trickle(text.as_bytes(), max_read);
        let m = matcher();
        let ((p, err), _): (Outcome<Harvest>, Extent) =
            scan_json_document(input, 0, Pass::new(&m, &()), &mut Scratch::default());
        assert!(err.is_none(), "{err:?}");
        p
    }

    #[test]
    fn arrays_pretty_and_concatenated_objects() {
        let pretty = |r: &str| {
            let v: serde_json::Value = serde_json::from_str(r).unwrap();
            serde_json::to_string_pretty(&v).unwrap()
        };
        let height = pretty(REC).lines().count() as u64;
        let array = format!("[\n{},\n{MISS},\n{}\n]\n", pretty(REC), pretty(REC));
        let p = doc(&array);
        assert_eq!(p.counts.records, 3);
        assert_eq!(p.counts.candidates, 2);
        assert_eq!(lines_of(&p), vec![2, 2 + height + 1]);
        assert_eq!(p.counts.lines, 2 * height + 3);
        let concatenated = format!("{}\n{MISS}{REC}\n", pretty(REC));
        let p = doc(&concatenated);
        assert_eq!(p.counts.records, 3);
        assert_eq!(lines_of(&p), vec![1, height + 1]);
        assert_eq!(p.counts.lines, height + 1);
    }

    #[test]
    fn a_record_cut_by_the_end_of_the_document_is_malformed_not_lost() {
        let p = doc(&format!("[{REC},\n{}", &REC[..60]));
        assert_eq!(p.counts.records, 2);
        assert_eq!(p.counts.matched, 1);
        assert_eq!(p.counts.malformed, 1);
        assert_eq!(p.samples[0].line, 1);
    }

    #[test]
    fn a_record_nested_too_deep_is_malformed_and_the_rest_is_read() {
        let deep = format!("{{\"a\":{}1{}}}", "[".repeat(600), "]".repeat(600));
        let p = doc(&format!("[\n{deep},\n{REC}\n]"));
        assert_eq!(p.counts.records, 2);
        assert_eq!(p.counts.malformed, 1);
        assert_eq!(lines_of(&p), vec![3]);
        assert_eq!(p.counts.lines, 4);
    }

    #[test]
    fn an_oversized_last_csv_row_without_newline_is_counted() {
        let m = Matcher::new(Rule::builtin(), true, 100);
        let text = format!("CreationDate,AuditData\n1,x\n2,\"{}\"", "y".repeat(500));
        let ((p, _), _): (Outcome<Harvest>, Extent) = scan_csv(
            text.as_bytes(),
            0,
            Pass::new(&m, &()),
            &mut Scratch::default(),
        );
        assert_eq!(p.counts.records, 2);
        // No rule literal in it: skipped, no loss.
        assert_eq!(p.counts.malformed, 0);
    }

    #[test]
    fn oversized_records_are_malformed_only_when_they_hold_a_literal_in_any_reads() {
        // Regression: every over-long CSV row counted malformed, so --strict failed on
        // an export with long rows that no rule could match.
        let m = Matcher::new(Rule::builtin(), true, 100);
        let long = "y".repeat(300);
        let lit = "Set-MailboxAuditBypassAssociation";
        let csv = format!(
            "CreationDate,AuditData\n1,\"{long}\"\n2,\"{long}{lit}\"\n3,\"{lit}{long}\"\n\
             4,\"{long}\"\n"
        );
        let json =
            format!("[{{\"a\":\"{long}\"}},\n{{\"a\":\"{long}{lit}\"}},\n{{\"a\":\"{long}\"}}]");
        for piece in [1, 7, 64, 1 << 20] {
            let ((p, _), _): (Outcome<Harvest>, Extent) = scan_csv(
                Trickle(csv.as_bytes(), piece),
                0,
                Pass::new(&m, &()),
                &mut Scratch::default(),
            );
            assert_eq!(p.counts.records, 4, "pieces of {piece}");
            assert_eq!(p.counts.malformed, 2, "pieces of {piece}");
            let lines: Vec<u64> = p.samples.iter().map(|s| s.line + 1).collect();
            assert_eq!(lines, [3, 4], "pieces of {piece}");
            let ((p, _), _): (Outcome<Harvest>, Extent) = scan_json_document(
                Trickle(json.as_bytes(), piece),
                0,
                Pass::new(&m, &()),
                &mut Scratch::default(),
            );
            assert_eq!(p.counts.records, 3, "pieces of {piece}");
            assert_eq!(p.counts.malformed, 1, "pieces of {piece}");
            assert_eq!(p.samples[0].line, 1, "pieces of {piece}");
        }
    }

    #[test]
    fn nesting_too_deep_outside_a_record_spoils_nothing() {
        let deep = format!("{}{}", "[".repeat(600), "]".repeat(600));
        let p = doc(&format!("[\n{deep},\n{REC}\n]"));
        assert_eq!(p.counts.matched, 1);
        assert_eq!(p.counts.malformed, 0);
    }

    #[test]
    fn a_search_response_is_recognised_from_its_first_64_kib_even_in_small_reads() {
        let hit = format!(r#"{{"_index":"logs","_source":{REC}}}"#);
        let text = format!(
            "{{\n\"note\": \"{}\",\n\"hits\": {{\"hits\": [\n{hit},\n{hit}\n]}}}}",
            "x".repeat(5000)
        );
        let p = doc_in_reads(&text, 4096);
        assert_eq!(p.counts.records, 2);
        assert_eq!(p.counts.matched, 2);
    }

    #[test]
    fn a_search_response_is_recognised_by_its_structure_past_the_first_64_kib() {
        // Regression: `"hits"` and `"_source"` had to be in the first 64 KiB.
        let hit = format!(r#"{{"_index":"logs","_source":{REC}}}"#);
        let aggs = format!(
            r#"{{"by_user":{{"buckets":[{}]}}}}"#,
            vec![r#"{"key":"x"}"#; 30_000].join(",")
        );
        let text = format!(
            "{{\"took\":3,\"aggregations\":{aggs},\n\"hits\": {{\"total\":2,\"hits\": [\n{hit},\n{hit}\n]}}}}"
        );
        assert!(text.find("\"hits\"").unwrap() > 1 << 18);
        let p = doc_in_reads(&text, 4096);
        assert_eq!((p.counts.records, p.counts.matched), (2, 2));
        assert_eq!(lines_of(&p), vec![3, 4]);
        // A pretty record is still one record however long.
        let p = doc(&format!(
            "{{\n\"pad\":\"{}\",\n\"r\":{REC}}}\n{REC}\n",
            "p".repeat(100_000)
        ));
        assert_eq!(p.counts.records, 2);
    }

    #[test]
    fn search_responses_yield_their_hits() {
        let hit = |r: &str| format!(r#"{{"_index":"logs","_id":"x","_source":{r}}}"#);
        let text = format!(
            "{{\"took\":3,\"hits\":{{\"total\":{{\"value\":2}},\"hits\":[\n{},\n{}\n]}}}}",
            hit(REC),
            hit(MISS)
        );
        let p = doc(&text);
        assert_eq!(p.counts.records, 2);
        assert_eq!(lines_of(&p), vec![2]);
    }

    #[test]
    fn records_split_across_reads_and_braces_in_strings() {
        let tricky = REC.replace(
            "\"Id\":\"ID\"",
            "\"Id\":\"ID\",\"Note\":\"} ] { [ \\\" \\\\\"",
        );
        let text = format!("[{tricky},{tricky}]");
        let p = doc_in_reads(&text, 7);
        assert_eq!(p.counts.matched, 2);
    }

    #[test]
    fn csv_rows_may_span_lines_and_evidence_is_the_row_start() {
        let cell = |r: &str| format!("\"{}\"", r.replace('"', "\"\""));
        let multi = REC.replace("\"UserId\"", "\n\"UserId\"");
        let text = format!(
            "CreationDate,UserIds,Operations,AuditData\r\n2024-03-05,u@x,Set-Mailbox,{}\r\n2024-03-05,u@x,Set-MailboxAuditBypassAssociation,{}\r\n2024-03-05,u@x,Set-MailboxAuditBypassAssociation,{}\r\n",
            cell(MISS),
            cell(&multi),
            cell(REC)
        );
        let m = matcher();
        let ((p, err), _): (Outcome<Harvest>, Extent) = scan_csv(
            text.as_bytes(),
            0,
            Pass::new(&m, &()),
            &mut Scratch::default(),
        );
        assert!(err.is_none(), "{err:?}");
        assert_eq!(p.counts.records, 3);
        assert_eq!(p.counts.lines, 5);
        assert_eq!(lines_of(&p), vec![3, 5]);
    }

    #[test]
    fn a_literal_outside_every_record_is_malformed_in_any_reads() {
        let lit = "Set-MailboxAuditBypassAssociation";
        let text = format!("[\n\"{lit}\", \"{lit}\",\n{REC}\n] {lit}\n");
        let p = doc(&text);
        let lines: Vec<u64> = p.samples.iter().map(|s| s.line + 1).collect();
        assert_eq!(lines, vec![2, 4]);
        assert_eq!(
            p.samples[0].reason,
            "rule literal outside any record of the JSON document"
        );
        assert_eq!((p.counts.records, p.counts.matched), (3, 1));
        // A stray literal is a record of the coverage too (undated).
        assert_eq!(p.coverage.records(), p.counts.records);
        // No literal, nothing stray.
        let p = doc("[\"text\", 1, {\"a\": [\"b\"]}]");
        assert_eq!((p.counts.records, p.counts.malformed), (1, 0));
    }

    #[test]
    fn elastic_pipeline_tests_yield_their_events() {
        let original = serde_json::to_string(REC).unwrap();
        let text = format!(
            "{{\n  \"events\": [\n    {{\"o365audit\": {REC}}},\n    {{\"event\": {{\"original\": {original}}}}},\n    {MISS}\n  ]\n}}\n"
        );
        let p = doc(&text);
        assert_eq!(p.counts.records, 3);
        assert_eq!(lines_of(&p), vec![3, 4]);
        let one_line = text.replace('\n', "");
        assert_eq!(doc(&one_line).counts.matched, 2);
    }

    #[test]
    fn a_stray_quote_in_an_unquoted_cell_does_not_run_rows_together() {
        // Regression: rows were cut by quote parity, so `bob"s` in an unquoted cell
        // made every following row one record, up to the next stray quote.
        let cell = |r: &str| format!("\"{}\"", r.replace('"', "\"\""));
        let text = format!(
            "CreationDate,UserIds,Operations,AuditData\r\n2024-03-05,bob\"s,Set-Mailbox,{}\r\n2024-03-05,u@x,Set-MailboxAuditBypassAssociation,{}\r\n2024-03-05,x\"y\"z\",Set-MailboxAuditBypassAssociation,{}\r\n",
            cell(MISS),
            cell(REC),
            cell(REC)
        );
        for piece in [1, 2, 7, usize::MAX] {
            let m = matcher();
            let input = Trickle(text.as_bytes(), piece);
            let ((p, err), _): (Outcome<Harvest>, Extent) =
                scan_csv(input, 0, Pass::new(&m, &()), &mut Scratch::default());
            assert!(err.is_none(), "{err:?}");
            assert_eq!(p.counts.records, 3, "pieces of {piece}");
            assert_eq!(p.counts.malformed, 0);
            assert_eq!(lines_of(&p), vec![3, 4], "pieces of {piece}");
        }
    }

    #[test]
    fn the_newer_purview_layout_and_a_quoted_header() {
        let cell = |r: &str| format!("\"{}\"", r.replace('"', "\"\""));
        let text = format!(
            "\"RecordId\",\"CreationDate\",\"RecordType\",\"Operation\",\"UserId\",\"AuditData\",\"AssociatedAdminUnits\",\"AssociatedAdminUnitsNames\"\n1,2024-03-05,1,Set-MailboxAuditBypassAssociation,u@x,{},,\n",
            cell(REC)
        );
        let m = matcher();
        let ((p, err), _): (Outcome<Harvest>, Extent) = scan_csv(
            text.as_bytes(),
            0,
            Pass::new(&m, &()),
            &mut Scratch::default(),
        );
        assert!(err.is_none(), "{err:?}");
        assert_eq!(lines_of(&p), vec![2]);
        assert_eq!(p.counts.matched, 1);
    }

    #[test]
    fn csv_without_audit_data_is_an_error() {
        let m = matcher();
        let ((_, err), _): (Outcome<Harvest>, Extent) = scan_csv(
            &b"a,b\n1,2\n"[..],
            0,
            Pass::new(&m, &()),
            &mut Scratch::default(),
        );
        assert!(err.is_some());
    }

    #[test]
    fn oversized_records_are_malformed_and_memory_stays_bounded() {
        let m = Matcher::new(Rule::builtin(), true, 64);
        let text = format!("[{REC},{REC}]");
        let ((p, _), _): (Outcome<Harvest>, Extent) = scan_json_document(
            text.as_bytes(),
            0,
            Pass::new(&m, &()),
            &mut Scratch::default(),
        );
        assert_eq!(p.counts.malformed, 2);
        assert_eq!(p.counts.records, 2);
    }
}
