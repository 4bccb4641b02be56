//! Reports written from one scan: `--export FORMAT=FILE` beside `--format` and `-o`
//! (every file byte for byte what a separate run with that `--format` writes), and
//! clear errors for an unknown format or a file that cannot be created; the `timeline`
//! format: golden files (`UPDATE_GOLDEN=1 cargo test --test reports` rewrites them
//! after a deliberate change), what Timesketch's importer requires of every line, and
//! the same events as the JSON report.

use std::path::{Path, PathBuf};
use std::process::Output;

use assert_cmd::Command;
use serde_json::Value as Json;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

const S4: &str = "tests/fixtures/investigation/s4_trial_and_error.jsonl";
const S8: &str = "tests/fixtures/investigation/s8_audit_tampering.jsonl";
const INVESTIGATION: &str = "tests/fixtures/investigation";
const ALLOW: &str = "tests/fixtures/investigation/allowlist.toml";

/// Every investigation fixture, in name order.
fn scenarios() -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(root().join(INVESTIGATION))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".jsonl"))
        .map(|n| format!("{INVESTIGATION}/{n}"))
        .collect();
    out.sort();
    assert!(out.len() >= 9, "{out:?}");
    out
}

/// The binary, run from the repository root with a fixed table width.
fn ualhunt() -> Command {
    let mut cmd = Command::cargo_bin("ualhunt").unwrap();
    cmd.current_dir(root()).env_remove("COLUMNS");
    cmd.args(["hunt", "--quiet"]);
    cmd
}

fn run(args: &[&str]) -> Output {
    ualhunt().args(args).output().unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A finding run: exit status 0.
fn findings(args: &[&str]) -> Output {
    let out = run(args);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    out
}

fn arg(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// Compares with a golden file under `tests/fixtures/reports/`, or rewrites it when
/// `UPDATE_GOLDEN` is set.
fn golden(name: &str, bytes: &[u8]) {
    let path = root().join("tests/fixtures/reports").join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, bytes).unwrap();
    }
    let want = read(&path);
    assert!(
        bytes == want.as_slice(),
        "{name} differs from its golden file (UPDATE_GOLDEN=1 after a deliberate change):\n{}",
        String::from_utf8_lossy(bytes)
    );
}

/// Each line of JSON lines output, parsed.
fn lines(bytes: &[u8]) -> Vec<Json> {
    let text = std::str::from_utf8(bytes).expect("UTF-8");
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

fn read(path: &PathBuf) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn exports_are_byte_identical_to_separate_runs() {
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name);
    let formats = ["table", "csv", "ndjson", "timeline"];
    let mut args: Vec<String> = vec!["--format".into(), "json".into()];
    for f in formats {
        args.push("--export".into());
        args.push(format!("{f}={}", arg(&path(f))));
    }
    args.push(S4.into());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let main = findings(&args);
    assert_eq!(main.stdout, findings(&["--format", "json", S4]).stdout);
    for f in formats {
        let alone = findings(&["--format", f, S4]).stdout;
        assert!(!alone.is_empty(), "{f}: empty");
        assert_eq!(
            read(&path(f)),
            alone,
            "--export {f} differs from --format {f}"
        );
    }
}

#[test]
fn an_unknown_export_format_is_a_usage_error() {
    let out = run(&["--export", "xml=findings.xml", S4]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("unknown format \"xml\""), "{err}");
    assert!(err.contains("csv"), "the formats are listed: {err}");
    for bad in ["csv", "csv=", "=a.csv", "csv=-"] {
        let out = run(&["--export", bad, S4]);
        assert_eq!(out.status.code(), Some(2), "{bad}: {}", stderr(&out));
    }
}

#[test]
fn an_export_file_that_cannot_be_created_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no/such/dir/findings.csv");
    let out = run(&["--export", &format!("csv={}", arg(&missing)), S4]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains(arg(&missing)), "{err}");
    assert!(
        out.stdout.is_empty(),
        "nothing is written when a file fails"
    );
}

#[test]
fn one_file_named_twice_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("out");
    let f = arg(&file);
    let out = run(&["-o", f, "--export", &format!("csv={f}"), S4]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("named twice"), "{}", stderr(&out));
}

#[test]
fn timeline_golden() {
    for (fixture, name) in [(S4, "s4.timeline.jsonl"), (S8, "s8.timeline.jsonl")] {
        golden(name, &findings(&["--format", "timeline", fixture]).stdout);
    }
}

/// `datetime` as a time, checked to be RFC 3339 in UTC.
fn datetime(line: &Json) -> chrono::DateTime<chrono::Utc> {
    let text = line["datetime"].as_str().expect("datetime is a string");
    assert!(text.ends_with('Z'), "{text}");
    chrono::DateTime::parse_from_rfc3339(text)
        .unwrap_or_else(|e| panic!("{text}: {e}"))
        .to_utc()
}

#[test]
fn every_timeline_line_is_what_timesketch_imports_and_the_json_report_holds() {
    for fixture in scenarios() {
        let args = ["--allow", ALLOW, "--format"];
        let json: Json =
            serde_json::from_slice(&run(&[&args[..], &["json", &fixture]].concat()).stdout)
                .unwrap();
        let timeline = lines(&run(&[&args[..], &["timeline", &fixture]].concat()).stdout);
        let mut previous = None;
        for line in &timeline {
            // Timesketch's JSONL importer refuses a line without these three.
            for key in ["message", "timestamp_desc", "data_type", "rule_id"] {
                let text = line[key]
                    .as_str()
                    .unwrap_or_else(|| panic!("{fixture}: {key}: {line}"));
                assert!(!text.is_empty(), "{fixture}: {key}");
            }
            let t = datetime(line);
            assert_eq!(
                line["timestamp"].as_i64(),
                Some(t.timestamp_micros()),
                "{line}"
            );
            assert!(
                previous <= Some(t),
                "{fixture}: out of time order at {line}"
            );
            previous = Some(t);
            // The same common keys on every line.
            for key in [
                "actor",
                "target",
                "change",
                "outcome",
                "allowed",
                "source_ip",
                "record_id",
                "command_line",
                "path",
                "line",
            ] {
                assert!(line.get(key).is_some(), "{fixture}: {key} missing: {line}");
            }
        }
        let count = |kind: &str| timeline.iter().filter(|l| l["data_type"] == kind).count();
        let scan = &json["scan"];
        assert_eq!(
            count("ualhunt:rule_match") as u64,
            scan["events"].as_u64().unwrap(),
            "{fixture}"
        );
        assert_eq!(
            count("ualhunt:failed_attempt") as u64,
            scan["attempts"].as_u64().unwrap(),
            "{fixture}"
        );
        let accounts = json["bypass"]["accounts"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let periods: Vec<&Json> = accounts
            .iter()
            .flat_map(|a| a["periods"].as_array().unwrap())
            .collect();
        let starts = periods.iter().filter(|p| !p["start"].is_null()).count();
        let ends = periods.iter().filter(|p| !p["end"].is_null()).count();
        assert_eq!(count("ualhunt:bypass_period_start"), starts, "{fixture}");
        assert_eq!(count("ualhunt:bypass_period_end"), ends, "{fixture}");
        let contexts = json["bypass"]["actor_context"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let tampering: usize = contexts
            .iter()
            .map(|c| c["tampering"].as_array().unwrap().len())
            .sum();
        assert_eq!(count("ualhunt:audit_tampering"), tampering, "{fixture}");
    }
}

#[test]
fn timeline_ties_keep_input_order() {
    // s4: two failed attempts at 22:03, on lines 12 and 13 of the file; the enable at
    // 22:09 comes before the period it opens (same record).
    let timeline = lines(&findings(&["--format", "timeline", S4]).stdout);
    let at = |t: &str| -> Vec<(u64, &str)> {
        timeline
            .iter()
            .filter(|l| l["datetime"] == t)
            .map(|l| {
                (
                    l["line"].as_u64().unwrap(),
                    l["data_type"].as_str().unwrap(),
                )
            })
            .collect()
    };
    assert_eq!(
        at("2024-03-26T22:03:00Z"),
        vec![
            (12, "ualhunt:failed_attempt"),
            (13, "ualhunt:failed_attempt")
        ]
    );
    assert_eq!(
        at("2024-03-26T22:09:00Z"),
        vec![
            (25, "ualhunt:rule_match"),
            (25, "ualhunt:bypass_period_start")
        ]
    );
}
