//! The exports responders actually get (issue 8): `Search-UnifiedAuditLog` objects from
//! PowerShell (AuditData an object or a JSON string, arrays, single objects, JSON lines),
//! UTF-16 text, Elastic's pipeline-test wrapper; and nothing holding a rule literal goes
//! unaccounted. Fixtures and their expectations are written by
//! `tests/fixtures/make_exports.py`.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Output;

use assert_cmd::Command;
mod common;

use common::as_csv;
use proptest::prelude::*;
use serde_json::Value as Json;
use ualhunt_engine::Config;
use ualhunt_generate::{GenOptions, GenShape, generate};
use ualhunt_report::OutputFormat;

/// The rule's action literal.
const ACTION: &str = concat!("Set-Mailbox", "AuditBypassAssociation");

const MODES: [&[&str]; 4] = [
    &[],
    &["--threads", "1"],
    &["--threads", "2", "--chunk-size", "64"],
    &["--no-prefilter"],
];

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn run(args: &[&str]) -> Output {
    let mut cmd = Command::cargo_bin("ualhunt").unwrap();
    cmd.current_dir(root()).args(args).output().unwrap()
}

fn hunt(path: &str, mode: &[&str]) -> (Option<i32>, Json, String) {
    let mut args = vec!["hunt", "--format", "json", "--keep-duplicates", path];
    args.extend_from_slice(mode);
    let out = run(&args);
    let report = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{path} {mode:?}: not JSON ({e}): {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out.status.code(), report, stderr)
}

/// What one matched event says (values as JSON text: `"…"` or `null`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Finding {
    actor: String,
    record_id: String,
    target: String,
    timestamp: String,
    bypass_enabled: String,
    source_ip: String,
}

/// Every event of a report: (path, line, finding), sorted.
fn events(report: &Json) -> Vec<(String, u64, Finding)> {
    let mut v = Vec::new();
    for a in report["actors"].as_array().unwrap() {
        for e in a["evidence"].as_array().unwrap() {
            let finding = Finding {
                actor: a["actor"].as_str().unwrap_or_default().to_string(),
                record_id: e["record_id"].as_str().unwrap().to_string(),
                target: e["target"].to_string(),
                timestamp: e["timestamp"].to_string(),
                bypass_enabled: e["bypass_enabled"].to_string(),
                source_ip: e["source_ip"].to_string(),
            };
            let path = e["path"].as_str().unwrap().to_string();
            v.push((path, e["line"].as_u64().unwrap(), finding));
        }
    }
    v.sort();
    v
}

/// The findings of the JSON-lines original, by record id.
fn reference() -> BTreeMap<String, Finding> {
    let (code, report, _) = hunt("testdata/raw_ual_bypass_events.jsonl", &[]);
    assert_eq!(code, Some(0));
    let by_id: BTreeMap<String, Finding> = events(&report)
        .into_iter()
        .map(|(_, _, f)| (f.record_id.clone(), f))
        .collect();
    assert_eq!(by_id.len(), 6);
    by_id
}

/// What `make_exports.py` says each fixture (or zip entry) must give.
fn expectations() -> BTreeMap<String, Json> {
    let text = std::fs::read_to_string(root().join("tests/fixtures/expected_exports.json"))
        .expect("expectations written by make_exports.py");
    serde_json::from_str(&text).unwrap()
}

#[test]
fn every_export_gives_the_json_lines_findings_at_the_outer_object_line() {
    let want = reference();
    let expected = expectations();
    let mut files: BTreeMap<&str, Vec<(&String, &Json)>> = BTreeMap::new();
    for (path, exp) in &expected {
        if exp.get("malformed_lines").is_none() {
            files
                .entry(path.split('!').next().unwrap())
                .or_default()
                .push((path, exp));
        }
    }
    assert!(files.len() >= 13, "fixtures: {}", files.len());
    for (file, parts) in &files {
        for mode in MODES {
            let what = format!("{file} {mode:?}");
            let (code, report, stderr) = hunt(file, mode);
            assert_eq!(code, Some(0), "{what}: {stderr}");
            let scan = &report["scan"];
            let sum = |key: &str| {
                parts
                    .iter()
                    .map(|(_, e)| e[key].as_u64().unwrap())
                    .sum::<u64>()
            };
            assert_eq!(scan["records"], sum("records"), "{what}: scan.records");
            assert_eq!(scan["lines"], sum("lines"), "{what}: scan.lines");
            assert_eq!(scan["malformed"], 0, "{what}: scan.malformed");
            assert!(scan["warnings"].as_array().unwrap().is_empty(), "{what}");
            let got = events(&report);
            for (path, exp) in parts {
                let lines: BTreeMap<String, u64> = got
                    .iter()
                    .filter(|(p, ..)| p == *path)
                    .map(|(_, line, f)| (f.record_id.clone(), *line))
                    .collect();
                let exp_lines: BTreeMap<String, u64> =
                    serde_json::from_value(exp["events"].clone()).unwrap();
                assert_eq!(lines, exp_lines, "{what}: evidence lines of {path}");
            }
            for (_, _, finding) in &got {
                assert_eq!(Some(finding), want.get(&finding.record_id), "{what}");
            }
        }
    }
}

#[test]
fn a_utf16_export_on_stdin_is_read_too() {
    let path = "tests/fixtures/formats/exports/utf16le_bom_ps51_array_object.json";
    let data = std::fs::read(root().join(path)).unwrap();
    let out = Command::cargo_bin("ualhunt")
        .unwrap()
        .args(["hunt", "--format", "json", "-"])
        .write_stdin(data)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let from_stdin: Json = serde_json::from_slice(&out.stdout).unwrap();
    let (_, from_file, _) = hunt(path, &[]);
    let strip = |v: Vec<(String, u64, Finding)>| -> Vec<(u64, Finding)> {
        v.into_iter().map(|(_, l, f)| (l, f)).collect()
    };
    assert_eq!(strip(events(&from_stdin)), strip(events(&from_file)));
    assert_eq!(from_stdin["scan"]["lines"], from_file["scan"]["lines"]);
}

#[test]
fn a_non_audit_file_holding_the_literal_is_malformed_with_its_lines() {
    let path = "tests/fixtures/formats/exports/not_audit_rule.toml";
    let exp = &expectations()[path];
    let want: Vec<u64> = serde_json::from_value(exp["malformed_lines"].clone()).unwrap();
    assert!(!want.is_empty());
    for mode in MODES {
        let (code, report, stderr) = hunt(path, mode);
        assert_eq!(code, Some(1), "{mode:?}: no findings");
        let scan = &report["scan"];
        assert_eq!(scan["lines"], exp["lines"]);
        let samples: Vec<u64> = scan["malformed_samples"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["line"].as_u64().unwrap())
            .collect();
        if mode.contains(&"--no-prefilter") {
            // Every line is parsed: those with the literal are among the malformed.
            assert!(want.iter().all(|l| samples.contains(l)), "{samples:?}");
        } else {
            assert_eq!(samples, want, "{mode:?}");
            assert_eq!(scan["malformed"], want.len() as u64);
            assert!(
                stderr.contains(&format!("{path}:{}", want[0])),
                "file:line on stderr: {stderr}"
            );
        }
        assert!(stderr.contains("warning"), "{stderr}");
    }
}

/// Writes `text` to `name` in `dir`.
fn write(dir: &Path, name: &str, text: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn nothing_holding_the_literal_goes_unaccounted() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        // Not JSON at all, and not a JSON array either.
        (
            write(
                dir.path(),
                "garbage.txt",
                format!("[garbage {ACTION}\n").as_bytes(),
            ),
            1,
            "invalid JSON",
        ),
        // A JSON object of no record shape.
        (
            write(
                dir.path(),
                "noshape.jsonl",
                format!("{{\"foo\":\"{ACTION}\"}}\n").as_bytes(),
            ),
            1,
            "no audit record shape",
        ),
        (
            write(
                dir.path(),
                "noshape.json",
                format!("{{\n  \"what\": {{\"cmd\": \"{ACTION}\"}}\n}}\n").as_bytes(),
            ),
            1,
            "no audit record shape",
        ),
        // The literal between the records of a document.
        (
            write(
                dir.path(),
                "stray.json",
                format!("[\n  \"{ACTION}\",\n  {{\"Operation\": \"X\"}}\n]\n").as_bytes(),
            ),
            2,
            "outside any record",
        ),
        // Embedded JSON text that is broken, or not an object.
        (
            write(
                dir.path(),
                "broken_auditdata.jsonl",
                format!("{{\"Operations\":\"{ACTION}\",\"AuditData\":\"{{\\\"Operation\\\":\"}}\n")
                    .as_bytes(),
            ),
            1,
            "invalid JSON in the record's JSON text",
        ),
        (
            write(
                dir.path(),
                "string_original.jsonl",
                format!("{{\"event\":{{\"original\":\"{{\\\"x\\\":\\\"{ACTION}\\\"}}\"}}}}\n")
                    .as_bytes(),
            ),
            1,
            "no audit record shape",
        ),
    ];
    for (path, line, reason) in &cases {
        let path = path.to_str().unwrap();
        for mode in MODES {
            let (code, report, _) = hunt(path, mode);
            assert_eq!(code, Some(1), "{path} {mode:?}");
            let scan = &report["scan"];
            assert_eq!(scan["malformed"], 1, "{path} {mode:?}");
            let sample = &scan["malformed_samples"][0];
            assert_eq!(sample["line"], *line, "{path} {mode:?}");
            assert!(
                sample["reason"].as_str().unwrap().contains(reason),
                "{path} {mode:?}: {sample}"
            );
        }
    }
}

#[test]
fn an_empty_directory_or_an_empty_run_is_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("nothing");
    std::fs::create_dir(&empty).unwrap();
    let (code, report, stderr) = hunt(empty.to_str().unwrap(), &[]);
    assert_eq!(code, Some(1));
    assert!(
        stderr.contains("warning") && stderr.contains("holds no files"),
        "{stderr}"
    );
    assert_eq!(report["scan"]["warnings"].as_array().unwrap().len(), 1);
    let file = write(dir.path(), "empty.jsonl", b"");
    let (_, _, stderr) = hunt(file.to_str().unwrap(), &[]);
    assert!(stderr.contains("no input was read"), "{stderr}");
    let (_, report, _) = hunt("testdata/raw_ual_bypass_events.jsonl", &[]);
    assert!(report["scan"]["warnings"].as_array().unwrap().is_empty());
}

fn corpus() -> Option<PathBuf> {
    common::corpus("elastic-o365", "exports of Elastic's pipeline tests")
}

/// The 1-based lines where the elements of `{"events": [...]}` start, in a file pretty-
/// printed with `indent` spaces per level.
fn element_lines(text: &str, indent: usize) -> Vec<u64> {
    let opening = format!("{}{{", " ".repeat(2 * indent));
    (1..)
        .zip(text.lines())
        .filter(|(_, l)| l.trim_end() == opening)
        .map(|(i, _)| i)
        .collect()
}

#[test]
fn elastic_pipeline_tests_yield_each_event_at_its_line() {
    let Some(dir) = corpus() else { return };
    for name in ["test-ip-formats-events.json", "test-parameter-string.json"] {
        let path = dir.join(name);
        let text = std::fs::read_to_string(&path).unwrap();
        let doc: Json = serde_json::from_str(&text).unwrap();
        let n = doc["events"].as_array().unwrap().len() as u64;
        for mode in MODES {
            let (_, report, _) = hunt(path.to_str().unwrap(), mode);
            assert_eq!(report["scan"]["records"], n, "{name} {mode:?}");
            assert_eq!(report["scan"]["malformed"], 0, "{name} {mode:?}");
        }
        let (_, report, _) = hunt(path.to_str().unwrap(), &["--no-prefilter"]);
        assert_eq!(
            report["scan"]["candidates"], n,
            "{name}: every event parsed"
        );
    }
    // Elastic's own events made bypass events: with both `event.original` and
    // `o365audit` (the record is `o365audit`), and with `event.original` alone.
    let text = std::fs::read_to_string(dir.join("test-parameter-string.json"))
        .unwrap()
        .replace("UserLoggedIn", ACTION)
        .replace("\"AzureActiveDirectory\"", "\"Exchange\"");
    let both = write_temp("both.json", &text);
    let text = std::fs::read_to_string(dir.join("test-ip-formats-events.json")).unwrap();
    let doc: Json = serde_json::from_str(&text).unwrap();
    let inject =
        format!("{{\"Operation\":\"{ACTION}\",\"Workload\":\"Exchange\",\"UserId\":\"u@x\",");
    let originals: Vec<Json> = doc["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let original = e["event"]["original"]
                .as_str()
                .unwrap()
                .replacen('{', &inject, 1);
            serde_json::json!({"event": {"original": original}})
        })
        .collect();
    let original_only =
        serde_json::to_string_pretty(&serde_json::json!({"events": originals})).unwrap();
    let only = write_temp("original.json", &original_only);
    let cases = [
        (
            &both,
            element_lines(&std::fs::read_to_string(&both.0).unwrap(), 4)[..1].to_vec(),
            "root@testsiem4.onmicrosoft.com",
            "2021-02-05T09:06:07Z",
        ),
        (
            &only,
            element_lines(&original_only, 2),
            "u@x",
            "2020-02-17T17:12:03Z",
        ),
    ];
    for (path, want, actor, time) in cases {
        assert!(!want.is_empty());
        for mode in MODES {
            let (code, report, _) = hunt(path.0.to_str().unwrap(), mode);
            assert_eq!(code, Some(0), "{mode:?}");
            let found = events(&report);
            let mut lines: Vec<u64> = found.iter().map(|(_, l, _)| *l).collect();
            lines.sort();
            assert_eq!(lines, want, "{} {mode:?}", path.0.display());
            for (_, _, f) in found {
                assert_eq!(
                    (f.actor.as_str(), f.timestamp),
                    (actor, format!("\"{time}\""))
                );
            }
        }
    }
}

/// A file in a temporary directory that lives as long as the returned guard.
fn write_temp(name: &str, text: &str) -> (PathBuf, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    (write(dir.path(), name, text.as_bytes()), dir)
}

// ---------------------------------------------------------------------------------------
// The same records in every container: the same `records` count and the same findings.

fn report(paths: Vec<PathBuf>, threads: usize, chunk: usize) -> Json {
    let mut config = Config::new(paths);
    config.threads = threads;
    config.chunk_size = chunk;
    let report = ualhunt_engine::run(&config).unwrap();
    let mut out = Vec::new();
    ualhunt_report::write(OutputFormat::Json, &report, &mut out).unwrap();
    serde_json::from_slice(&out).unwrap()
}

/// The findings without where they were found.
fn placeless(report: &Json) -> Vec<Finding> {
    let mut v: Vec<Finding> = events(report).into_iter().map(|(_, _, f)| f).collect();
    v.sort();
    v
}

fn utf16le(text: &[u8], bom: bool) -> Vec<u8> {
    let text = String::from_utf8(text.to_vec()).unwrap();
    let mut out = if bom { vec![0xFF, 0xFE] } else { Vec::new() };
    out.extend(text.encode_utf16().flat_map(u16::to_le_bytes));
    out
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

/// A `Search-UnifiedAuditLog` result object around a record.
fn ps_object(r: &Json, audit_data: Json) -> Json {
    serde_json::json!({
        "RecordType": r["RecordType"], "CreationDate": r["CreationTime"],
        "UserIds": r["UserId"], "Operations": r["Operation"], "AuditData": audit_data,
        "ResultIndex": 1, "ResultCount": 1, "Identity": r["Id"], "IsValid": true,
        "ObjectState": "Unchanged"
    })
}

/// Pretty JSON as PowerShell 5.1 writes it: CRLF line ends, two spaces after the colon.
fn powershell_pretty(value: &Json) -> Vec<u8> {
    serde_json::to_string_pretty(value)
        .unwrap()
        .replace("\": ", "\":  ")
        .replace('\n', "\r\n")
        .into_bytes()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 8, ..ProptestConfig::default() })]

    #[test]
    fn records_and_findings_are_the_same_in_every_container(
        seed in any::<u64>(),
        rate in prop_oneof![Just(0.0), Just(0.05)],
        threads in 1usize..3,
        chunk in prop_oneof![Just(64usize), Just(4096), Just(4 << 20)],
    ) {
        let dir = tempfile::tempdir().unwrap();
        let mut jsonl = Vec::new();
        generate(&GenOptions { size: 30_000, seed, shape: GenShape::Ual, rate, key_order: Default::default() }, &mut jsonl).unwrap();
        let records: Vec<Json> = jsonl
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_slice(l).unwrap())
            .collect();
        let array = serde_json::to_vec_pretty(&records).unwrap();
        let ps_objects = Json::Array(records.iter().map(|r| ps_object(r, r.clone())).collect());
        let ps_strings: Vec<Json> = records.iter().map(|r| ps_object(r, r.to_string().into())).collect();
        let ps_lines: Vec<u8> = ps_strings.iter().flat_map(|o| format!("{o}\r\n").into_bytes()).collect();
        let events = serde_json::json!({"events": records.iter()
            .map(|r| serde_json::json!({"event": {"original": r.to_string()}})).collect::<Vec<_>>()});
        let csv = as_csv(&records);
        let containers: Vec<(&str, Vec<u8>)> = vec![
            ("a.jsonl", jsonl.clone()),
            ("b.json", array.clone()),
            ("c.csv", csv.clone()),
            ("d.json.gz", gzip(&array)),
            ("e.jsonl", utf16le(&jsonl, true)),
            ("f.csv", utf16le(&csv, false)),
            ("g.json", powershell_pretty(&ps_objects)),
            ("h.json", powershell_pretty(&Json::Array(ps_strings))),
            ("i.jsonl", ps_lines.clone()),
            ("j.jsonl.gz", gzip(&utf16le(&ps_lines, true))),
            ("k.json", serde_json::to_vec(&events).unwrap()),
        ];
        let mut reference = None;
        for (name, data) in containers {
            let path = write(dir.path(), name, &data);
            let got = report(vec![path], threads, chunk);
            let (want_records, want_findings) = reference
                .get_or_insert_with(|| (got["scan"]["records"].clone(), placeless(&got)))
                .clone();
            prop_assert_eq!(&got["scan"]["records"], &want_records, "{}", name);
            prop_assert_eq!(got["scan"]["records"].as_u64(), Some(records.len() as u64), "{}", name);
            prop_assert_eq!(&got["scan"]["malformed"], &Json::from(0), "{}", name);
            prop_assert_eq!(placeless(&got), want_findings, "{}", name);
        }
    }
}
