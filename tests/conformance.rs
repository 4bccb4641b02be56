//! Conformance with Elastic's own o365 pipeline: every raw audit record of Elastic's
//! test data (in `../shared/corpus/elastic-o365/`, beside the repository) is mapped by
//! ualhunt's record view and compared with the ECS document Elastic's pipeline made of
//! it. The corpus is not copied into the project; without it the test says so and passes.

use std::path::{Path, PathBuf};

use serde_json::Value as Json;
use ualhunt_engine::field::Field;
use ualhunt_engine::record::{Record, parse_timestamp};

mod common;

fn corpus_dir() -> Option<PathBuf> {
    common::corpus("elastic-o365", "conformance with Elastic's pipeline")
}

/// A field of an expected document, whether its keys are dotted or nested.
fn expected<'a>(doc: &'a Json, path: &str) -> Option<&'a Json> {
    if let Some(v) = doc.get(path) {
        return Some(v);
    }
    path.match_indices('.')
        .find_map(|(i, _)| expected(doc.get(&path[..i])?, &path[i + 1..]))
}

/// One check: a raw record (JSON text) and what Elastic made of it.
struct Case {
    origin: String,
    raw: String,
    ecs: Json,
    /// The pipeline that made `ecs` is the older Filebeat module.
    beats: bool,
}

fn load_cases(dir: &Path) -> Vec<Case> {
    let read = |name: &str| std::fs::read_to_string(dir.join(name)).expect("corpus file");
    let mut cases = Vec::new();
    for log in ["ip-formats.log", "str-params.log"] {
        let docs: Vec<Json> = serde_json::from_str(&read(&format!("{log}-expected.json"))).unwrap();
        let lines: Vec<String> = read(log).lines().map(String::from).collect();
        assert_eq!(
            lines.len(),
            docs.len(),
            "{log}: one expected document per line"
        );
        for (i, (raw, ecs)) in lines.into_iter().zip(docs).enumerate() {
            cases.push(Case {
                origin: format!("{log}:{}", i + 1),
                raw,
                ecs,
                beats: true,
            });
        }
    }
    for events in ["test-ip-formats-events.json", "test-parameter-string.json"] {
        let input: Json = serde_json::from_str(&read(events)).unwrap();
        let output: Json = serde_json::from_str(&read(&format!("{events}-expected.json"))).unwrap();
        let input = input["events"].as_array().unwrap();
        let output = output["expected"].as_array().unwrap();
        assert_eq!(
            input.len(),
            output.len(),
            "{events}: one expected document per event"
        );
        for (i, (event, ecs)) in input.iter().zip(output).enumerate() {
            // The CEL input wraps each record as {"o365audit": record}.
            let raw = serde_json::to_string(&event["o365audit"]).unwrap();
            cases.push(Case {
                origin: format!("{events}#{i}"),
                raw,
                ecs: ecs.clone(),
                beats: false,
            });
        }
    }
    cases
}

/// Where the older Filebeat module differs from the current integration pipeline and
/// from DESIGN §2, which follows the integration: it did not reduce a bracketed IP
/// without port (`[ip]`) and kept `::ffff:a.b.c.d` as it was.
fn known_beats_divergence(case: &Case, field: &str) -> bool {
    let client = serde_json::from_str::<Json>(&case.raw).ok();
    let client = client
        .as_ref()
        .and_then(|r| r["ClientIP"].as_str().map(str::to_string));
    case.beats
        && field == "source.ip"
        && client.is_some_and(|c| c.contains("::ffff:") || (c.starts_with('[') && c.ends_with(']')))
}

#[test]
fn raw_records_map_like_elastics_pipeline() {
    let Some(dir) = corpus_dir() else { return };
    let cases = load_cases(&dir);
    assert!(cases.len() >= 30, "corpus has {} records", cases.len());
    let fields = [
        "event.action",
        "event.provider",
        "event.outcome",
        "user.id",
        "@timestamp",
        "source.ip",
    ];
    let mut checked = 0;
    let mut diverged = Vec::new();
    for case in &cases {
        let mut bytes = case.raw.clone().into_bytes();
        let tape =
            simd_json::to_tape(&mut bytes).unwrap_or_else(|e| panic!("{}: {e}", case.origin));
        let record = Record::new(tape.as_value()).expect("an object");
        for name in fields {
            let ours = record.text(&Field::parse(name)).map(|s| s.into_owned());
            let theirs = expected(&case.ecs, name)
                .and_then(Json::as_str)
                .map(str::to_string);
            let same = match name {
                // Compare instants: Elastic writes `.000Z`, the raw record no offset.
                "@timestamp" => {
                    ours.as_deref().and_then(parse_timestamp)
                        == theirs.as_deref().and_then(parse_timestamp)
                }
                _ => ours == theirs,
            };
            if !same && known_beats_divergence(case, name) {
                diverged.push(format!(
                    "{} {name}: ours {ours:?}, Filebeat {theirs:?}",
                    case.origin
                ));
                continue;
            }
            assert!(
                same,
                "{} {name}: ualhunt {ours:?}, Elastic {theirs:?}",
                case.origin
            );
            checked += 1;
        }
    }
    eprintln!(
        "conformance: {checked} field values equal; known Filebeat divergences: {diverged:#?}"
    );
    // ip-formats.log lines 4, 5 (::ffff:) and 8, 9 ([ip]); the integration agrees with us there.
    assert_eq!(diverged.len(), 4, "unexpected divergences: {diverged:#?}");
}

/// Every value of a field in an expected document, as text, the way Elasticsearch
/// indexes it: arrays anywhere on the path give one value per element, keys may be
/// dotted or nested.
fn expected_values(doc: &Json, path: &str) -> Vec<String> {
    let mut out = Vec::new();
    collect(doc, path, &mut out);
    out
}

fn collect(v: &Json, path: &str, out: &mut Vec<String>) {
    match v {
        Json::Array(items) => items.iter().for_each(|i| collect(i, path, out)),
        Json::String(s) if path.is_empty() => out.push(s.clone()),
        Json::Bool(b) if path.is_empty() => out.push(b.to_string()),
        Json::Number(n) if path.is_empty() => out.push(n.to_string()),
        Json::Object(map) if !path.is_empty() => {
            if let Some(child) = map.get(path) {
                collect(child, "", out);
            }
            for (i, _) in path.match_indices('.') {
                if let Some(child) = map.get(&path[..i]) {
                    collect(child, &path[i + 1..], out);
                }
            }
        }
        _ => {}
    }
}

/// A date's text as the instant it names (RFC 3339, or ISO 8601 without an offset:
/// UTC), in RFC 3339 with milliseconds; text that is no date stays as it is.
fn instant(text: &str) -> String {
    let parsed = chrono::DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&chrono::Utc))
        .or_else(|_| {
            chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f").map(|t| t.and_utc())
        });
    match parsed {
        Ok(t) => t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
        Err(_) => text.to_string(),
    }
}

/// Every field a published rule reads (but those that need enrichment: GeoIP,
/// user-agent parsing), mapped from the raw record and compared with what Elastic's
/// pipeline made of it, value for value, wherever the expected document has the field.
#[test]
fn every_field_the_published_rules_read_maps_like_elastics_pipeline() {
    let Some(dir) = corpus_dir() else { return };
    let rules_dir = dir.join("../elastic-rules");
    let set = ualhunt_engine::rule::load::load(&[rules_dir]).expect("the published rules load");
    let mut fields: Vec<String> = set
        .rules
        .iter()
        .flat_map(|r| r.query.fields().into_iter().map(|f| f.name()))
        .filter(|f| !f.starts_with("user_agent.") || f == "user_agent.original")
        .filter(|f| !f.starts_with("source.geo.") && !f.starts_with("source.as."))
        .collect();
    fields.sort();
    fields.dedup();
    assert!(fields.len() >= 30, "{fields:?}");
    let mut compared: std::collections::BTreeMap<&str, usize> = Default::default();
    for case in load_cases(&dir).iter().filter(|c| !c.beats) {
        let mut bytes = case.raw.clone().into_bytes();
        let tape = simd_json::to_tape(&mut bytes).unwrap();
        let record = Record::new(tape.as_value()).expect("an object");
        for name in &fields {
            let mut theirs = expected_values(&case.ecs, name);
            let field = Field::parse(name);
            let mut ours = Vec::new();
            ualhunt_engine::field::Fields::any_value(&record, &field, &mut |v| {
                ours.push(v.to_string());
                false
            });
            // The dataset comes from the index, not the document, in Elastic.
            if theirs.is_empty() && name.ends_with("dataset") {
                continue;
            }
            // A date (the ES|QL rules read `@timestamp`) is compared as the instant it
            // names: the pipeline writes `…000Z` for a raw `CreationTime` without either.
            if field.value_type() == ualhunt_engine::field::ValueType::Date {
                ours = ours.iter().map(|t| instant(t)).collect();
                theirs = theirs.iter().map(|t| instant(t)).collect();
            }
            ours.sort();
            ours.dedup();
            theirs.sort();
            theirs.dedup();
            assert_eq!(ours, theirs, "{} {name}", case.origin);
            if !theirs.is_empty() {
                *compared.entry(name).or_default() += 1;
            }
        }
    }
    eprintln!("rule fields compared where Elastic's documents have them: {compared:?}");
    assert!(compared.len() >= 8, "{compared:?}");
}

/// MaxMind's test databases (`tests/fixtures/geoip/`), the ones Elastic's pipeline
/// tests enrich with.
fn test_enrichment() -> ualhunt_engine::enrich::Enrichment {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/geoip");
    let geoip = ualhunt_engine::enrich::GeoIp::open(&[
        dir.join("GeoLite2-City-Test.mmdb"),
        dir.join("GeoLite2-ASN-Test.mmdb"),
    ])
    .expect("the test databases open");
    ualhunt_engine::enrich::Enrichment::new(geoip)
}

/// `source.geo.*` and `source.as.*` of every raw record, derived with MaxMind's test
/// databases, equal what Elastic's pipeline wrote (both pipelines, every field the
/// documents hold, and no value where they hold none).
#[test]
fn geoip_fields_derive_like_elastics_pipeline() {
    let Some(dir) = corpus_dir() else {
        eprintln!("notice: ../shared/corpus/elastic-o365 is absent; conformance not checked");
        return;
    };
    let enrichment = test_enrichment();
    let fields = [
        "source.geo.continent_name",
        "source.geo.country_iso_code",
        "source.geo.country_name",
        "source.geo.region_iso_code",
        "source.geo.region_name",
        "source.geo.city_name",
        "source.geo.location.lat",
        "source.geo.location.lon",
        "source.as.number",
        "source.as.organization.name",
    ];
    let mut compared = 0;
    let mut with_values = std::collections::BTreeSet::new();
    for case in load_cases(&dir) {
        let mut bytes = case.raw.clone().into_bytes();
        let tape = simd_json::to_tape(&mut bytes).unwrap();
        let record = Record::new(tape.as_value()).expect("an object");
        let view = ualhunt_engine::enrich::Enriched::new(&record, &enrichment);
        for name in fields {
            let theirs = expected_values(&case.ecs, name);
            let mut ours = Vec::new();
            ualhunt_engine::field::Fields::any_value(&view, &Field::parse(name), &mut |v| {
                ours.push(v.to_string());
                false
            });
            // Coordinates compare as numbers (`62.0` and `62`).
            let number = |v: &Vec<String>| -> Vec<Option<f64>> {
                v.iter().map(|s| s.parse::<f64>().ok()).collect()
            };
            let same = if name.contains("location") {
                number(&ours) == number(&theirs)
            } else {
                ours == theirs
            };
            assert!(
                same,
                "{} {name}: ualhunt {ours:?}, Elastic {theirs:?}",
                case.origin
            );
            compared += 1;
            if !theirs.is_empty() {
                with_values.insert(name);
            }
        }
    }
    eprintln!("geoip: {compared} values compared; fields with values: {with_values:?}");
    // Every field the documents hold at least once: Linköping (City, region, ASN with
    // its organization), Bhutan (ASN number only), an IPv6 address in Norway.
    assert_eq!(with_values.len(), fields.len(), "{with_values:?}");
}
