//! One record: the record view and its ECS field mapping on any bytes of one line, and
//! the line scan with the prefilter against the reference path that parses every line
//! (same matches, the accounting identities on both).

use simd_json::tape::Tape;
use ualhunt_engine::field::Field;
use ualhunt_engine::findings::{Harvest, Partial};
use ualhunt_engine::record::Record;
use ualhunt_engine::rule::Rule;
use ualhunt_engine::scan::{Matcher, Pass, Scratch, scan_chunk};
use ualhunt_fuzz::{check_counts, found};

const FIELDS: &[&str] = &[
    "event.dataset",
    "data_stream.dataset",
    "event.provider",
    "event.action",
    "event.outcome",
    "user.id",
    "@timestamp",
    "event.id",
    "organization.id",
    "source.ip",
    "o365.audit.Parameters.Identity",
    "o365.audit.Parameters.AuditBypassEnabled",
    "o365.audit.Parameters._raw",
    "o365.audit.RecordType",
    "o365.audit.ObjectId",
];

fn main() {
    let rules = Rule::builtin();
    let fast = Matcher::new(rules.clone(), true, 1 << 20);
    let slow = Matcher::new(rules, false, 1 << 20);
    let fields: Vec<Field> = FIELDS.iter().map(|f| Field::parse(f)).collect();
    afl::fuzz!(|data: &[u8]| {
        // The record view alone, on whatever parses.
        let mut buf = data.to_vec();
        buf.resize(data.len() + simd_json::INPUT_PADDING, 0);
        let mut buffers = simd_json::Buffers::new(data.len());
        let mut tape = Tape::null();
        if simd_json::fill_tape_padded(&mut buf, data.len(), &mut buffers, &mut tape).is_ok()
            && let Ok(record) = Record::new(tape.as_value())
        {
            for f in &fields {
                let _ = record.text(f);
            }
            let _ = (record.actor(), record.timestamp(), record.client_address());
            let _ = (record.command_line(), record.embedded(), record.shape());
        }
        // The scan of the same bytes as a chunk of lines: prefilter or not, the same
        // rule matches.
        let a: Partial<Harvest> =
            scan_chunk(data, 0, Pass::new(&fast, &()), &mut Scratch::default());
        let b: Partial<Harvest> =
            scan_chunk(data, 0, Pass::new(&slow, &()), &mut Scratch::default());
        check_counts(&a.counts, true);
        check_counts(&b.counts, true);
        assert_eq!(a.counts.lines, b.counts.lines);
        assert_eq!(a.counts.records, b.counts.records);
        assert_eq!(
            a.counts.matched, b.counts.matched,
            "prefilter path != reference path"
        );
        assert_eq!(found(&a), found(&b), "prefilter path != reference path");
    });
}
