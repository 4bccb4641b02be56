//! The EQL, ES|QL and Sigma front ends: any text parses or is refused, never panics; a
//! query that parses keeps the prefilter contract on real records: when it matches a
//! record, the record's line holds one of the literals the query says every match needs
//! (a caseless one in some ASCII case) and one literal of each of its conjunct sets, as
//! a run without GeoIP databases searches them (the records are evaluated without
//! enrichment): a GeoIP field's key resolved to its text.
//! The first byte picks the language: EQL, ES|QL or a Sigma file (YAML, any number of
//! documents, through the built-in field mapping).

use simd_json::tape::Tape;
use ualhunt_engine::enrich::Enrichment;
use ualhunt_engine::record::Record;
use ualhunt_engine::rule::load::Loaded;
use ualhunt_engine::rule::{Query, eql, esql, sigma};
use ualhunt_query::Literal;

const RECORDS: &str = concat!(
    include_str!("../../../testdata/raw_ual_bypass_events.jsonl"),
    include_str!("../../../testdata/ecs_nested_agent.ndjson"),
    include_str!("../../../testdata/ecs_dotted_filebeat.ndjson"),
    include_str!("../../../testdata/es_hits_source.ndjson"),
    include_str!("../../../testdata/raw_field_mapping_edge_cases.jsonl"),
);

/// Whether `line` holds `literal` as the prefilter searches it (an operation: its name,
/// which a record naming it holds, these records escaping none).
fn holds(line: &str, literal: &str) -> bool {
    match Literal::parse(literal) {
        Literal::Exact(text) | Literal::Operation(text) => line.contains(text),
        Literal::AnyCase(text) | Literal::OperationAnyCase(text) => line
            .to_ascii_lowercase()
            .contains(&text.to_ascii_lowercase()),
    }
}

/// The queries `text` gives in the language `lang` picks.
fn queries(lang: u8, text: &str) -> Vec<Query> {
    match lang % 3 {
        0 => eql::Query::parse(text).map(Query::Eql).into_iter().collect(),
        1 => esql::Query::parse(text)
            .map(|q| Query::Esql(Box::new(q)))
            .into_iter()
            .collect(),
        _ => sigma::load_text(text, None)
            .map(|loaded| {
                loaded
                    .into_iter()
                    .filter_map(|l| match l {
                        Loaded::Runs(rule) => Some(rule.query),
                        Loaded::NotRun(_) => None,
                    })
                    .collect()
            })
            .unwrap_or_default(),
    }
}

fn main() {
    afl::fuzz!(|data: &[u8]| {
        let Some((&lang, rest)) = data.split_first() else {
            return;
        };
        let Ok(text) = std::str::from_utf8(rest) else {
            return;
        };
        for query in queries(lang, text) {
            let _ = query.to_string();
            let _ = query.fields();
            let searched = query.searched(&Enrichment::default());
            let (literals, conjuncts) = (searched.literals, searched.conjuncts);
            for line in RECORDS.lines() {
                let mut buf = line.as_bytes().to_vec();
                buf.resize(line.len() + simd_json::INPUT_PADDING, 0);
                let mut buffers = simd_json::Buffers::new(line.len());
                let mut tape = Tape::null();
                if simd_json::fill_tape_padded(&mut buf, line.len(), &mut buffers, &mut tape)
                    .is_err()
                {
                    continue;
                }
                let Ok(record) = Record::new(tape.as_value()) else {
                    continue;
                };
                if !query.matches(&record) {
                    continue;
                }
                if let Some(lits) = &literals {
                    assert!(
                        lits.iter().any(|l| holds(line, l)),
                        "query {text:?} matched a record holding none of {lits:?}: {line}"
                    );
                }
                for set in &conjuncts {
                    assert!(
                        set.iter().any(|l| holds(line, l)),
                        "query {text:?} matched a record holding none of {set:?}: {line}"
                    );
                }
            }
        }
    });
}
