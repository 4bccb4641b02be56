//! Integration tests of the mailbox audit bypass investigation (schema version 3): the
//! real binary on the scenario archives in `tests/fixtures/investigation/`, checked
//! against what `tests/fixtures/make_investigation.py` computed independently when it
//! planted them (`tests/fixtures/investigation_expected/<scenario>.json`).
//!
//! An expectation lists only the fields it means: the report is projected onto its
//! shape (object keys it does not name are not compared; arrays must have the same
//! length) and the first difference is reported with its path.

use std::path::Path;
use std::process::Output;

use assert_cmd::Command;
use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, TestCaseError, TestRunner};
use serde_json::{Map, Value as Json, json};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn run(args: &[&str]) -> Output {
    let mut cmd = Command::cargo_bin("ualhunt").unwrap();
    cmd.current_dir(root());
    cmd.args(args).output().unwrap()
}

fn json_of(out: &Output) -> Json {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

const MODES: [&[&str]; 4] = [
    &[],
    &["--threads", "1"],
    &["--threads", "2", "--chunk-size", "64"],
    &["--no-prefilter"],
];

const EXPECTED: &str = "tests/fixtures/investigation_expected";

fn expectation(scenario: &str) -> Json {
    let path = root().join(EXPECTED).join(format!("{scenario}.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (run tests/fixtures/make_investigation.py)",
            path.display()
        )
    });
    serde_json::from_str(&text).unwrap()
}

/// `actual` cut down to the shape of `want`: only the keys `want` names, arrays element
/// by element (an empty expected array keeps the elements whole). Source IP lists are
/// sets: sorted.
fn project(actual: &Json, want: &Json) -> Json {
    match (actual, want) {
        (Json::Object(a), Json::Object(w)) => {
            let mut out = Map::new();
            for (k, wv) in w {
                let av = a.get(k).cloned().unwrap_or(Json::Null);
                let av = if k == "source_ips" {
                    sorted_strings(&av)
                } else {
                    av
                };
                out.insert(k.clone(), project(&av, wv));
            }
            Json::Object(out)
        }
        (Json::Array(a), Json::Array(w)) => Json::Array(
            a.iter()
                .enumerate()
                .map(|(i, av)| match w.get(i).or(w.first()) {
                    Some(wv) => project(av, wv),
                    None => av.clone(),
                })
                .collect(),
        ),
        _ => actual.clone(),
    }
}

fn sorted_strings(v: &Json) -> Json {
    match v.as_array() {
        Some(items) if items.iter().all(Json::is_string) => {
            let mut items = items.clone();
            items.sort_by(|a, b| a.as_str().cmp(&b.as_str()));
            Json::Array(items)
        }
        _ => v.clone(),
    }
}

/// Every place where `got` and `want` differ (the innermost differing values), with
/// its path.
fn differences_at(got: &Json, want: &Json, path: &str) -> Vec<String> {
    match (got, want) {
        (Json::Object(g), Json::Object(w)) => w
            .iter()
            .flat_map(|(k, wv)| {
                differences_at(g.get(k).unwrap_or(&Json::Null), wv, &format!("{path}.{k}"))
            })
            .collect(),
        (Json::Array(g), Json::Array(w)) if g.len() == w.len() => g
            .iter()
            .zip(w)
            .enumerate()
            .flat_map(|(i, (gv, wv))| differences_at(gv, wv, &format!("{path}[{i}]")))
            .collect(),
        _ if got == want => Vec::new(),
        _ => vec![format!(
            "{path}:\n  got  {}\n  want {}",
            short(got),
            short(want)
        )],
    }
}

fn short(v: &Json) -> String {
    let s = v.to_string();
    if s.chars().count() > 1500 {
        format!("{}…", s.chars().take(1500).collect::<String>())
    } else {
        s
    }
}

/// Every matched event of a report, flattened out of the actor groups, by (path, line).
fn evidence_of(report: &Json) -> Json {
    let mut items: Vec<Json> = report["actors"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .flat_map(|a| {
            a["evidence"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default()
                .iter()
                .map(move |e| {
                    json!({
                        "actor": a["actor"],
                        "path": e["path"],
                        "line": e["line"],
                        "change": e["change"],
                        "allowed": e["allowed"],
                    })
                })
        })
        .collect();
    items.sort_by(|a, b| {
        (a["path"].as_str(), a["line"].as_u64()).cmp(&(b["path"].as_str(), b["line"].as_u64()))
    });
    Json::Array(items)
}

/// Compares a report with one expected run; returns the differences found.
fn differences(report: &Json, want: &Json) -> Vec<String> {
    let mut out = Vec::new();
    // An expectation's `bypass` is the report's first investigation (schema 3 writes
    // it once, in `investigations`).
    for (part, got) in [
        ("bypass", &report["investigations"][0]),
        ("coverage", &report["coverage"]),
    ] {
        if let Some(w) = want.get(part) {
            let got = project(got, w);
            out.extend(differences_at(&got, w, part));
        }
    }
    if let Some(w) = want.get("evidence") {
        out.extend(differences_at(&evidence_of(report), w, "actors[].evidence"));
    }
    if let Some(w) = want.get("coverage") {
        let reasons = report["coverage"]["reasons"].as_array().map_or(0, Vec::len);
        if w["conclusive"].as_bool() == Some(reasons > 0) {
            out.push(format!(
                "coverage.reasons: {} with conclusive {}",
                report["coverage"]["reasons"], w["conclusive"]
            ));
        }
    }
    out
}

/// Runs every run of a scenario in every engine mode; fails with every difference.
fn check_scenario(scenario: &str) {
    let exp = expectation(scenario);
    assert_eq!(exp["scenario"], scenario);
    let mut failures = Vec::new();
    for want in exp["runs"].as_array().unwrap() {
        let args: Vec<&str> = want["args"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap())
            .collect();
        for mode in MODES {
            let mut full = vec!["hunt", "--format", "json"];
            full.extend_from_slice(&args);
            full.extend_from_slice(mode);
            let out = run(&full);
            let what = format!("`ualhunt {}`", full.join(" "));
            let code = out.status.code();
            if code.map(i64::from) != want["exit_code"].as_i64() {
                failures.push(format!(
                    "{what}: exit status {code:?}, want {}; stderr: {}",
                    want["exit_code"],
                    String::from_utf8_lossy(&out.stderr)
                ));
            }
            let report = json_of(&out);
            assert_eq!(report["version"], 3, "{what}: schema version");
            failures.extend(
                differences(&report, want)
                    .into_iter()
                    .map(|d| format!("{what}: {d}")),
            );
        }
    }
    assert!(
        failures.is_empty(),
        "{scenario}: {} difference(s):\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn every_expectation_has_a_test() {
    let mut names: Vec<String> = std::fs::read_dir(root().join(EXPECTED))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let tested: Vec<String> = SCENARIOS.iter().map(|s| format!("{s}.json")).collect();
    assert_eq!(names, tested, "scenario tests and expectation files");
    // The archive folder holds the archives and the allowlist, never an expectation.
    for entry in std::fs::read_dir(root().join("tests/fixtures/investigation")).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        assert!(
            name.ends_with(".jsonl") || name == "allowlist.toml",
            "unexpected {name}"
        );
    }
}

const SCENARIOS: [&str; 11] = [
    "s1_bypass_window_then_resume",
    "s2_open_period",
    "s3_predates_data",
    "s4_trial_and_error",
    "s5_allowlisted_tool",
    "s5b_allowlisted_only",
    "s6a_gap_day",
    "s6b_no_exchange_admin",
    "s7_repeated_enables_spellings",
    "s8_audit_tampering",
    "s9_window",
];

/// (1) Enable, the account's mailbox-audit records stop, a disable, they resume.
#[test]
fn s1_bypass_window_then_resume() {
    check_scenario("s1_bypass_window_then_resume");
}

/// (2) An enable and no disable: an open period, state on.
#[test]
fn s2_open_period() {
    check_scenario("s2_open_period");
}

/// (3) A disable without any enable: a period that predates the data.
#[test]
fn s3_predates_data() {
    check_scenario("s3_predates_data");
}

/// (4) Failed attempts, then a success: attempts listed, never changes.
#[test]
fn s4_trial_and_error() {
    check_scenario("s4_trial_and_error");
}

/// (5) An allowlisted tool account (in-force entry) and an expired entry that marks
/// nothing; with and without `--allow`.
#[test]
fn s5_allowlisted_tool() {
    check_scenario("s5_allowlisted_tool");
}

/// (5) Every finding allowlisted: exit 1 with `--allow`, 0 without.
#[test]
fn s5b_allowlisted_only() {
    check_scenario("s5b_allowlisted_only");
}

/// (6) A gap day: no findings, not conclusive.
#[test]
fn s6a_gap_day() {
    check_scenario("s6a_gap_day");
}

/// (6) No Exchange admin record at all: no findings, not conclusive.
#[test]
fn s6b_no_exchange_admin() {
    check_scenario("s6b_no_exchange_admin");
}

/// (7) Repeated enables and mixed-case spellings of one account.
#[test]
fn s7_repeated_enables_spellings() {
    check_scenario("s7_repeated_enables_spellings");
}

/// (8) Audit tampering by the actor near its change, not 3 days away.
#[test]
fn s8_audit_tampering() {
    check_scenario("s8_audit_tampering");
}

/// (9) An enable before `--since`, the disable inside the window.
#[test]
fn s9_window() {
    check_scenario("s9_window");
}

/// Identity, spellings and periods of every account (an investigation's `accounts`): what must not depend on how the
/// records are split across files or in which order the files are given.
fn periods_of(accounts: &Json) -> Json {
    let template = json!([{
        "identity": "",
        "spellings": [],
        "state_at_end": "",
        "periods": [{
            "start": "", "end": "", "open": false, "predates_data": false,
            "set_by": "", "ended_by": "",
            "mailbox_audit_before": 0, "mailbox_audit_during": 0, "mailbox_audit_after": 0,
        }],
    }]);
    project(accounts, &template)
}

/// The records of one scenario split across 2 to 4 files, each in its own order: the
/// accounts' periods (with their mailbox-audit counts) are the single file's, whatever
/// the order of the files on the command line. (The scenario's changes never share a
/// second, so the file order cannot break a tie.)
#[test]
fn periods_do_not_depend_on_file_split_or_order() {
    let scenario = "s7_repeated_enables_spellings";
    let exp = expectation(scenario);
    let want = periods_of(&exp["runs"][0]["bypass"]["accounts"]);
    let text = std::fs::read_to_string(root().join(exp["path"].as_str().unwrap())).unwrap();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let n = lines.len();
    let dir = tempfile::tempdir().unwrap();

    let strategy = (
        2usize..=4,
        proptest::collection::vec(any::<u32>(), n),
        proptest::sample::select(vec![0usize, 1, 2, 3]),
        any::<u64>(),
    );
    let mut runner = TestRunner::new(ProptestConfig {
        cases: 16,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    let case = std::sync::atomic::AtomicU32::new(0);
    let result = runner.run(&strategy, |(files, keys, mode, order_seed)| {
        let case = case.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // Line i goes to file keys[i] % files; inside a file, lines sort by the rest of
        // their key (a shuffle).
        let mut parts: Vec<Vec<(u32, &str)>> = vec![Vec::new(); files];
        for (line, k) in lines.iter().zip(&keys) {
            parts[*k as usize % files].push((k / 4, line));
        }
        let mut paths = Vec::new();
        for (j, part) in parts.iter_mut().enumerate() {
            part.sort();
            let body: String = part.iter().map(|(_, l)| format!("{l}\n")).collect();
            let path = dir.path().join(format!("case{case}-part{j}.jsonl"));
            std::fs::write(&path, body).unwrap();
            paths.push(path.to_str().unwrap().to_string());
        }
        // Two command-line orders: as written, and a rotation, reversed.
        let mut other = paths.clone();
        other.rotate_left((order_seed % files as u64) as usize);
        other.reverse();
        for order in [&paths, &other] {
            let mut args = vec!["hunt", "--format", "json"];
            args.extend(order.iter().map(String::as_str));
            args.extend_from_slice(MODES[mode]);
            let out = run(&args);
            prop_assert_eq!(out.status.code(), Some(0), "{:?}", args);
            let got = periods_of(&json_of(&out)["investigations"][0]["accounts"]);
            let diffs = differences_at(&got, &want, "bypass.accounts");
            if !diffs.is_empty() {
                return Err(TestCaseError::fail(format!(
                    "{args:?}: {}",
                    diffs.join("\n")
                )));
            }
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}
