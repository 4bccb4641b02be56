//! The KQL parser: any text parses or is refused, never panics; a query that parses
//! keeps the prefilter contract on real records: when it matches a record, the record
//! holds one of the literals the query says every match needs.

use simd_json::tape::Tape;
use ualhunt_engine::record::Record;
use ualhunt_engine::rule::kql::Query;

const RECORDS: &str = concat!(
    include_str!("../../../testdata/raw_ual_bypass_events.jsonl"),
    include_str!("../../../testdata/ecs_nested_agent.ndjson"),
    include_str!("../../../testdata/ecs_dotted_filebeat.ndjson"),
    include_str!("../../../testdata/es_hits_source.ndjson"),
);

fn main() {
    afl::fuzz!(|data: &[u8]| {
        let Ok(text) = std::str::from_utf8(data) else {
            return;
        };
        let Ok(query) = Query::parse(text) else {
            return;
        };
        let _ = query.fields();
        let literals = query.required_literals();
        for line in RECORDS.lines() {
            let mut buf = line.as_bytes().to_vec();
            buf.resize(line.len() + simd_json::INPUT_PADDING, 0);
            let mut buffers = simd_json::Buffers::new(line.len());
            let mut tape = Tape::null();
            if simd_json::fill_tape_padded(&mut buf, line.len(), &mut buffers, &mut tape).is_err() {
                continue;
            }
            let Ok(record) = Record::new(tape.as_value()) else {
                continue;
            };
            if query.matches(&record)
                && let Some(lits) = &literals
            {
                assert!(
                    lits.iter().any(|l| line.contains(l.as_str())),
                    "query {text:?} matched a record holding none of {lits:?}: {line}"
                );
            }
        }
    });
}
