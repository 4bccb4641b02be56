//! Actions read whole from each line's `Operation` key (`Literal::Operation`) against
//! the reference path: Elastic's rules (and Sigma's beside them, whose operations match
//! in any case) over their fixture records rewritten into every shape where the key
//! the fast path reads is not the one the full parse reads (a repeated key, whose last
//! value counts; an escaped key; spaces around the colon; a nested `Operation`; a list;
//! wrappers that hold the record as an object, as JSON text or as an ECS document) find
//! what parsing every line finds, whatever the blocks, chunks and threads.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The operation a line names (its first `"Operation":"…"`), and where its value is.
fn operation(line: &str) -> Option<(usize, usize)> {
    let key = "\"Operation\":\"";
    let start = line.find(key)? + key.len();
    let end = start + line[start..].find('"')?;
    Some((start, end))
}

/// The shapes of [`reshape`] (0: the line as it is). A letter of a value spelled as an
/// escape is none: no writer escapes one, and only an action's literal, read whole, is
/// sure to be found so (the prefilter's unit tests).
const SHAPES: [u8; 14] = [0, 1, 2, 3, 4, 6, 7, 8, 9, 10, 11, 12, 13, 14];

/// `line` in shape `shape` (see the match).
fn reshape(line: &str, shape: u8) -> String {
    let Some((start, end)) = operation(line) else {
        return line.to_string();
    };
    let name = &line[start..end];
    let body = &line[1..line.len() - 1];
    match shape {
        // A repeated key before the record's own: the last one counts.
        1 => format!("{{\"Operation\":\"Unknown\",{body}}}"),
        // The record's own last, another first.
        2 => format!(
            "{}Unknown{},\"Operation\":\"{name}\"}}",
            &line[..start],
            &line[end..line.len() - 1]
        ),
        // Another one last: the record is that one's.
        3 => format!("{{{body},\"Operation\":\"Unknown\"}}"),
        // The key spelled with an escape.
        4 => line.replacen("\"Operation\":", "\"Op\\u0065ration\":", 1),
        // Spaces around the colon.
        6 => line.replacen("\"Operation\":\"", "\"Operation\" : \"", 1),
        // An Elasticsearch hit.
        7 => format!("{{\"_index\":\"x\",\"_source\":{line}}}"),
        // A PowerShell export: the record as JSON text.
        8 => format!(
            "{{\"CreationDate\":\"5/2/2024 10:00:00 AM\",\"Operations\":\"{name}\",\"AuditData\":{}}}",
            serde_json::to_string(line).unwrap()
        ),
        // A nested `Operation` before the record's own.
        9 => format!("{{\"Extra\":{{\"Operation\":\"Unknown\"}},{body}}}"),
        // The operation as a list.
        10 => format!("{}[\"{name}\"]{}", &line[..start - 1], &line[end + 1..]),
        // Another operation beside the record as JSON text: the record is the text's.
        11 => format!(
            "{{\"Operation\":\"Unknown\",\"AuditData\":{}}}",
            serde_json::to_string(line).unwrap()
        ),
        // Another operation first, the record's own spelled with an escape (the same
        // key: the last one counts).
        12 => format!(
            "{{\"Operation\":\"Unknown\",{}",
            &line[1..].replacen("\"Operation\":", "\"Op\\u0065ration\":", 1)
        ),
        // Another operation beside an ECS document of the record, whose action is the
        // record's (an ECS document's action is its `event.action`).
        13 => {
            let mut audit: serde_json::Map<String, serde_json::Value> =
                serde_json::from_str(line).unwrap();
            audit.remove("Operation");
            let text = |key: &str| audit.get(key).and_then(|v| v.as_str()).unwrap_or("");
            let outcome = match text("ResultStatus") {
                "Succeeded" | "Success" | "True" | "PartiallySucceeded" => "success",
                "" => "unknown",
                _ => "failure",
            };
            let event = serde_json::json!({
                "action": name,
                "dataset": "o365.audit",
                "provider": text("Workload"),
                "outcome": outcome,
            });
            let user = serde_json::json!({"id": text("UserId")});
            format!(
                "{{\"Operation\":\"Unknown\",\"event\":{event},\"user\":{user},\"o365\":{{\"audit\":{}}}}}",
                serde_json::Value::Object(audit)
            )
        }
        // The operation in upper case (Sigma's values match in any case).
        14 => format!(
            "{}{}{}",
            &line[..start],
            name.to_ascii_uppercase(),
            &line[end..]
        ),
        _ => line.to_string(),
    }
}

fn run(
    dirs: &[PathBuf],
    input: &Path,
    tweak: impl FnOnce(&mut ualhunt_engine::Config),
) -> BTreeSet<(String, String)> {
    let set = ualhunt_engine::rule::load::load(dirs).unwrap();
    let mut config = ualhunt_engine::Config::new(vec![input.to_path_buf()]);
    config.rules = set.rules;
    config.context = false;
    tweak(&mut config);
    common::finding_pairs(&ualhunt_engine::run(&config).unwrap())
}

#[test]
fn operations_read_whole_find_what_parsing_every_line_finds() {
    let Some(dir) = common::corpus("elastic-rules", "operations read whole") else {
        return;
    };
    check(&[dir], &["tests/fixtures/rule_pack/records.jsonl"], 7);
}

/// Sigma's operations match in any case: read whole too, beside Elastic's.
#[test]
fn operations_in_any_case_read_whole_find_what_parsing_every_line_finds() {
    let name = "operations read whole in any case";
    let (Some(elastic), Some(sigma)) = (
        common::corpus("elastic-rules", name),
        common::corpus("sigma-m365", name),
    ) else {
        return;
    };
    let fixtures = [
        "tests/fixtures/rule_pack/records.jsonl",
        "tests/fixtures/sigma_pack/records.jsonl",
    ];
    check(&[elastic, sigma], &fixtures, 11);
}

/// The records of `fixtures` in every shape, then in random ones (`seed`): the rules
/// in `dirs` find in them what parsing every line finds, whatever the blocks, chunks
/// and threads.
fn check(dirs: &[PathBuf], fixtures: &[&str], seed: u64) {
    let mut lines: Vec<String> = Vec::new();
    for fixture in fixtures {
        let text = std::fs::read_to_string(common::root().join(fixture)).unwrap();
        lines.extend(
            text.lines()
                .filter(|l| !l.trim().is_empty())
                .map(String::from),
        );
    }
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut text = String::new();
    // Every line in every shape once, then in random shapes, in random order; each
    // copy with its own record id (a finding of one copy cannot stand for another's,
    // and none is dropped as a duplicate).
    let copy = |line: &str, n: usize, shape: u8| {
        reshape(
            &line.replacen("\"Id\":\"", &format!("\"Id\":\"{n}-{shape}-"), 1),
            shape,
        )
    };
    let mut shaped: Vec<String> = Vec::new();
    for shape in SHAPES {
        shaped.extend(lines.iter().enumerate().map(|(n, l)| copy(l, n, shape)));
    }
    for n in 0..400 {
        let shape = SHAPES[rng.usize(..SHAPES.len())];
        let line = &lines[rng.usize(..lines.len())];
        shaped.push(copy(line, lines.len() + n, shape));
    }
    rng.shuffle(&mut shaped);
    for line in &shaped {
        text.push_str(line);
        text.push('\n');
    }
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("operations.jsonl");
    std::fs::write(&input, text).unwrap();

    let reference = run(dirs, &input, |c| c.prefilter = false);
    assert!(
        reference.len() > 20,
        "few findings: the comparison would prove little ({})",
        reference.len()
    );
    let same = |got: &BTreeSet<(String, String)>, how: &str| {
        let missed: Vec<_> = reference.difference(got).take(5).collect();
        let more: Vec<_> = got.difference(&reference).take(5).collect();
        assert!(
            missed.is_empty() && more.is_empty(),
            "{how}: missed {missed:?}, more {more:?}"
        );
    };
    same(&run(dirs, &input, |_| {}), "default");
    for (block, chunk, threads) in [(7, 300, 3), (64, 4096, 2), (1000, 64, 1)] {
        let got = run(dirs, &input, |c| {
            c.scan_block = block;
            c.chunk_size = chunk;
            c.threads = threads;
        });
        same(
            &got,
            &format!("block {block}, chunk {chunk}, threads {threads}"),
        );
    }
}
