//! Integration tests: the real binary on the committed fixtures in `testdata/` and
//! `tests/fixtures/`, checked against the expectations `tests/fixtures/make_fixtures.py`
//! computed independently when it wrote them.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Output;

use assert_cmd::Command;
use serde_json::Value as Json;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn ualhunt() -> Command {
    let mut cmd = Command::cargo_bin("ualhunt").unwrap();
    cmd.current_dir(root());
    cmd
}

fn run(args: &[&str]) -> Output {
    ualhunt().args(args).output().unwrap()
}

/// Asserts a run found something (exit 0), showing its stderr otherwise.
fn assert_found(out: &Output, what: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{what}: {stderr}");
}

fn json_of(out: &Output) -> Json {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)))
}

fn expectations() -> Vec<(PathBuf, Json)> {
    let mut out = Vec::new();
    for entry in walkdir::WalkDir::new(root().join("tests/fixtures/expected")).sort_by_file_name() {
        let entry = entry.unwrap();
        if entry.file_type().is_file() && entry.file_name() != "_totals.json" {
            let doc: Json =
                serde_json::from_str(&std::fs::read_to_string(entry.path()).unwrap()).unwrap();
            out.push((entry.path().to_path_buf(), doc));
        }
    }
    assert!(out.len() >= 20, "expectations found: {}", out.len());
    out
}

/// (actor, line, record id, target, flag, source ip, timestamp) of one event.
type EventRow = (String, u64, Json, Json, Json, Json, Json);

fn event_row(actor: &str, e: &Json) -> EventRow {
    let field = |k: &str| e[k].clone();
    let line = e["line"].as_u64().unwrap();
    (
        actor.to_string(),
        line,
        field("record_id"),
        field("target"),
        field("bypass_enabled"),
        field("source_ip"),
        field("timestamp"),
    )
}

fn sorted(mut v: Vec<EventRow>) -> Vec<EventRow> {
    v.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
    v
}

/// Every event of a report.
fn events_of_report(report: &Json) -> Vec<EventRow> {
    let actors = report["actors"].as_array().unwrap();
    sorted(
        actors
            .iter()
            .flat_map(|a| {
                let actor = a["actor"].as_str().unwrap_or("");
                a["evidence"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(move |e| event_row(actor, e))
            })
            .collect(),
    )
}

/// Every event an expectation file lists.
fn events_of_expectation(exp: &Json) -> Vec<EventRow> {
    let actors = exp["actors"].as_object().unwrap();
    sorted(
        actors
            .iter()
            .flat_map(|(actor, events)| {
                events
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(move |e| event_row(actor, e))
            })
            .collect(),
    )
}

const MODES: [&[&str]; 4] = [
    &[],
    &["--threads", "1"],
    &["--threads", "2", "--chunk-size", "64"],
    &["--no-prefilter"],
];

#[test]
fn every_fixture_gives_its_expected_findings_in_every_mode() {
    for (exp_path, exp) in expectations() {
        let path = exp["path"].as_str().unwrap();
        for mode in MODES {
            let mut args = vec!["hunt", "--format", "json", path];
            args.extend_from_slice(mode);
            let out = run(&args);
            let what = format!("{path} {mode:?} ({})", exp_path.display());
            assert_eq!(
                out.status.code(),
                exp["exit_code_alone"].as_i64().map(|c| c as i32),
                "{what}"
            );
            let report = json_of(&out);
            let scan = &report["scan"];
            for key in ["lines", "blank", "matched"] {
                assert_eq!(scan[key], exp[key], "{what}: scan.{key}");
            }
            if !mode.contains(&"--no-prefilter") {
                for key in ["candidates", "malformed", "not_matched"] {
                    assert_eq!(scan[key], exp[key], "{what}: scan.{key}");
                }
            }
            assert_eq!(
                events_of_report(&report),
                events_of_expectation(&exp),
                "{what}"
            );
            let errors = scan["errors"].as_array().unwrap();
            assert_eq!(
                errors.len(),
                usize::from(!exp["error"].is_null()),
                "{what}: errors"
            );
        }
    }
}

#[test]
fn the_sample_archive_matches_its_totals_and_exits_zero() {
    let totals: Json = serde_json::from_str(
        &std::fs::read_to_string(root().join("tests/fixtures/expected/_totals.json")).unwrap(),
    )
    .unwrap();
    let want = &totals["testdata/"];
    let out = run(&["hunt", "--format", "json", "testdata/"]);
    assert_found(&out, "testdata/");
    let report = json_of(&out);
    for key in [
        "files",
        "lines",
        "blank",
        "candidates",
        "matched",
        "not_matched",
        "malformed",
    ] {
        assert_eq!(report["scan"][key], want[key], "scan.{key}");
    }
    let actors = want["actors"].as_object().unwrap();
    let got = report["actors"].as_array().unwrap();
    assert_eq!(got.len(), actors.len());
    for a in got {
        let w = &actors[a["actor"].as_str().unwrap()];
        for key in ["events", "first_seen", "last_seen"] {
            assert_eq!(a[key], w[key], "{} {key}", a["actor"]);
        }
    }
    // The directory walk is sorted: evidence paths appear in walk order per timestamp tie.
    let paths: Vec<&str> = got
        .iter()
        .flat_map(|a| a["evidence"].as_array().unwrap())
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    assert!(
        paths.iter().any(|p| p.starts_with("testdata/tree/a/b/c/")),
        "walks into the tree"
    );
}

#[test]
fn json_output_is_byte_identical_across_modes() {
    let reference = run(&["hunt", "--format", "json", "testdata/"]).stdout;
    for args in [
        &["--threads", "1"][..],
        &["--threads", "2", "--chunk-size", "1"],
        &["--threads", "3", "--chunk-size", "4K"],
        &["--chunk-size", "1G"],
    ] {
        let mut full = vec!["hunt", "--format", "json", "testdata/"];
        full.extend_from_slice(args);
        assert!(
            run(&full).stdout == reference,
            "output differs with {args:?}"
        );
    }
}

#[test]
fn exit_status_is_one_without_findings() {
    let out = run(&["hunt", "testdata/decoys_no_match.jsonl"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("no findings"));
}

#[test]
fn a_missing_input_is_reported_and_the_rest_still_scanned() {
    let out = run(&[
        "hunt",
        "--format",
        "json",
        "no/such/file.jsonl",
        "testdata/raw_ual_bypass_events.jsonl",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no/such/file.jsonl"), "{stderr}");
    let report = json_of(&out);
    assert_eq!(report["scan"]["errors"][0]["path"], "no/such/file.jsonl");
    assert!(report["scan"]["matched"].as_u64().unwrap() > 0);
}

#[test]
fn a_truncated_gzip_names_the_path_and_how_far_it_got() {
    let path = "tests/fixtures/bad/gzip_truncated_midstream.jsonl.gz";
    let out = run(&["hunt", "--format", "json", path]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(path) && stderr.contains("7419 bytes") && stderr.contains("line 8"),
        "{stderr}"
    );
    assert_eq!(
        json_of(&out)["scan"]["matched"],
        2,
        "events before the cut are reported"
    );
}

#[test]
fn stdin_plain_and_gzip() {
    for file in [
        "testdata/raw_ual_bypass_events.jsonl",
        "testdata/gzip_multi_member.jsonl.gz",
    ] {
        let data = std::fs::read(root().join(file)).unwrap();
        let from_file = json_of(&run(&["hunt", "--format", "json", file]));
        let out = ualhunt()
            .args(["hunt", "--format", "json", "-"])
            .write_stdin(data)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0));
        let from_stdin = json_of(&out);
        assert_eq!(
            from_stdin["scan"]["lines"], from_file["scan"]["lines"],
            "{file}"
        );
        assert_eq!(
            from_stdin["actors"].as_array().unwrap().len(),
            from_file["actors"].as_array().unwrap().len()
        );
        assert_eq!(from_stdin["actors"][0]["evidence"][0]["path"], "-");
    }
}

/// A fixture written at test time whose actor and target try to attack the reader.
fn hostile_archive(dir: &Path) -> PathBuf {
    let path = dir.join("hostile.jsonl");
    let mut f = std::fs::File::create(&path).unwrap();
    let actors = [
        r#"=HYPERLINK(\"http://x\",\"y\")"#,
        r"\u001b[31mred\u001b[0m\u009b2J",
        "+cmd|' /C calc'!A0",
        "<script>alert(1)</script>",
    ];
    for (i, actor) in actors.iter().enumerate() {
        writeln!(
            f,
            r#"{{"CreationTime":"2024-05-0{}T00:00:00","Id":"id-{i}","Operation":"Set-MailboxAuditBypassAssociation","Workload":"Exchange","ResultStatus":"Succeeded","UserId":"{actor}","Parameters":[{{"Name":"Identity","Value":"-2+3"}},{{"Name":"AuditBypassEnabled","Value":"True"}}]}}"#,
            i + 1
        )
        .unwrap();
    }
    path
}

#[test]
fn csv_cells_cannot_become_formulas() {
    let dir = tempfile::tempdir().unwrap();
    let path = hostile_archive(dir.path());
    let out = run(&["hunt", "--format", "csv", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0));
    let mut reader = csv::Reader::from_reader(&out.stdout[..]);
    let headers = reader.headers().unwrap().clone();
    let actor_col = headers.iter().position(|h| h == "actor").unwrap();
    let target_col = headers.iter().position(|h| h == "target").unwrap();
    let mut rows = 0;
    for row in reader.records() {
        let row = row.unwrap();
        rows += 1;
        for cell in [&row[actor_col], &row[target_col]] {
            assert!(
                !cell.starts_with(['=', '+', '-', '@']),
                "dangerous cell {cell:?}"
            );
        }
    }
    assert_eq!(rows, 4);
}

#[test]
fn the_table_escapes_terminal_control_sequences() {
    let dir = tempfile::tempdir().unwrap();
    let path = hostile_archive(dir.path());
    let out = run(&["hunt", path.to_str().unwrap()]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        !text.contains('\x1b') && !text.contains('\u{9b}'),
        "{text:?}"
    );
    assert!(text.contains("\\u{1b}[31mred"), "{text}");
}

#[test]
fn ndjson_has_one_event_per_line_with_rule_metadata() {
    let out = run(&[
        "hunt",
        "--format",
        "ndjson",
        "testdata/raw_ual_bypass_events.jsonl",
    ]);
    let json = json_of(&run(&[
        "hunt",
        "--format",
        "json",
        "testdata/raw_ual_bypass_events.jsonl",
    ]));
    let lines: Vec<Json> = out
        .stdout
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).unwrap())
        .collect();
    assert_eq!(lines.len() as u64, json["scan"]["events"].as_u64().unwrap());
    assert_eq!(
        lines[0]["rule"]["id"],
        "675239ea-c1bc-4467-a6d3-b9e2cc7f676d"
    );
    assert!(lines[0]["line"].as_u64().unwrap() >= 1);
}

#[test]
fn output_file_and_schema_fields() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("out.json");
    let out = run(&[
        "hunt",
        "--format",
        "json",
        "-o",
        file.to_str().unwrap(),
        "testdata/raw_ual_bypass_events.jsonl",
    ]);
    assert_eq!(out.status.code(), Some(0));
    assert!(out.stdout.is_empty());
    let doc: Json = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    for key in ["id", "name", "severity", "risk_score", "query"] {
        assert!(!doc["rules"][0][key].is_null(), "rules[0].{key}");
    }
    for key in [
        "files",
        "bytes",
        "lines",
        "candidates",
        "matched",
        "malformed",
        "errors",
    ] {
        assert!(!doc["scan"][key].is_null(), "scan.{key}");
    }
    let actor = &doc["actors"][0];
    for key in [
        "actor",
        "events",
        "first_seen",
        "last_seen",
        "targets",
        "source_ips",
        "evidence",
    ] {
        assert!(actor.get(key).is_some(), "actors[0].{key}");
    }
    for key in ["identity", "events", "bypass_enabled"] {
        assert!(actor["targets"][0].get(key).is_some(), "targets[0].{key}");
    }
    for key in [
        "path",
        "line",
        "timestamp",
        "record_id",
        "target",
        "bypass_enabled",
        "source_ip",
    ] {
        assert!(actor["evidence"][0].get(key).is_some(), "evidence[0].{key}");
    }
    assert!(actor["first_seen"].as_str().unwrap().ends_with('Z'));
}

#[test]
fn strict_turns_malformed_lines_into_failure() {
    assert_eq!(
        run(&["hunt", "testdata/malformed_lines.jsonl"])
            .status
            .code(),
        Some(0)
    );
    let out = run(&["hunt", "--strict", "testdata/malformed_lines.jsonl"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("testdata/malformed_lines.jsonl:"),
        "samples name file:line: {stderr}"
    );
}

#[test]
fn stats_print_the_accounting() {
    let out = run(&["hunt", "--stats", "testdata/"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    for needle in [
        "lines         160 (6 blank)",
        "records       154 = 70 not candidate + 84 candidates",
        "candidates    84 = 60 matched",
        "chunk latency",
        "peak heap",
    ] {
        assert!(stderr.contains(needle), "missing {needle:?} in {stderr}");
    }
}

/// `--stats` names the run's stages in the order they ran, each with its wall time,
/// and the time the report took to write: the context pass only when one ran, the
/// trigger look only when a rule waits for a trigger.
#[test]
fn stats_time_each_stage_of_the_run() {
    let phases = |stderr: &str| -> Vec<String> {
        let line = stderr
            .lines()
            .find_map(|l| l.strip_prefix("phases        "))
            .unwrap_or_else(|| panic!("no phases line in {stderr}"));
        let line = line.strip_suffix(" (wall)").expect("wall times");
        line.split(", ")
            .map(|p| {
                let (name, secs) = p
                    .rsplit_once(' ')
                    .and_then(|(n, unit)| {
                        assert_eq!(unit, "s", "{p}");
                        n.rsplit_once(' ')
                    })
                    .unwrap_or_else(|| panic!("not `name N s`: {p}"));
                assert!(secs.parse::<f64>().is_ok_and(|t| t >= 0.0), "{p}");
                name.to_string()
            })
            .collect()
    };
    let with_context = stats(&["testdata/"]);
    assert_eq!(
        phases(&with_context),
        [
            "first pass",
            "duplicates and context plan",
            "context pass",
            "investigations and grouping beside unmapping"
        ]
    );
    let without = stats(&["--no-context", "testdata/"]);
    assert_eq!(
        phases(&without),
        [
            "first pass",
            "duplicates and context plan",
            "investigations and grouping beside unmapping"
        ]
    );
    for stderr in [&with_context, &without] {
        let written = stderr
            .lines()
            .find_map(|l| l.strip_prefix("report        written in "))
            .unwrap_or_else(|| panic!("no report line in {stderr}"));
        assert!(
            written.ends_with(" s (wall, every output and export)"),
            "{written}"
        );
    }
}

/// `hunt --stats` of `args` into nothing: what it prints on standard error.
fn stats(args: &[&str]) -> String {
    let mut all = vec![
        "hunt",
        "-q",
        "--stats",
        "--format",
        "json",
        "-o",
        "/dev/null",
    ];
    all.extend_from_slice(args);
    let out = run(&all);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    stderr
}

#[test]
fn stats_show_every_context_pass() {
    // Regression: with two rules running the bypass investigation, `--stats` showed
    // only the last context pass. The built-in rule's file twice, the second copy under
    // its own id and name, with the investigation.
    let dir = tempfile::tempdir().unwrap();
    let text =
        std::fs::read_to_string("crates/engine/rules/o365_mailbox_audit_bypass.toml").unwrap();
    std::fs::write(dir.path().join("a.toml"), &text).unwrap();
    let copy = text
        .replace(
            "675239ea-c1bc-4467-a6d3-b9e2cc7f676d",
            "00000000-0000-4000-8000-000000000001",
        )
        .replace(
            "name = \"O365 Mailbox Audit Logging Bypass\"",
            "name = \"Bypass, a second look\"",
        );
    assert_ne!(copy, text);
    std::fs::write(dir.path().join("b.toml"), copy).unwrap();
    let stderr = stats(&[
        "--rules",
        dir.path().to_str().unwrap(),
        "tests/fixtures/investigation/s1_bypass_window_then_resume.jsonl",
    ]);
    let rules: Vec<&str> = stderr
        .lines()
        .filter_map(|l| l.strip_prefix("context rule  "))
        .collect();
    assert_eq!(rules.len(), 2, "{stderr}");
    assert!(rules.contains(&"Bypass, a second look"), "{stderr}");
    let passes = stderr
        .lines()
        .filter(|l| l.starts_with("context pass  ") && l.contains("records of watched names"))
        .count();
    assert_eq!(passes, 2, "{stderr}");
    assert_eq!(stderr.matches("context read  ").count(), 2, "{stderr}");
}

#[test]
fn stats_count_screened_lines_apart_and_watched_names_once() {
    // Regression: lines the context pass's screen turned down unparsed counted as
    // candidates, and the names watched were counted before telling spellings and
    // roles of one name apart.
    let s1 = "tests/fixtures/investigation/s1_bypass_window_then_resume.jsonl";
    let screened = stats(&[s1]);
    assert!(
        screened.contains(
            "25 candidates (parsed), 4 screened out unparsed, 25 records of watched names"
        ),
        "{screened}"
    );
    // Read in full, the same lines are all parsed.
    let full = stats(&["--context-full-read", s1]);
    assert!(
        full.contains(
            "29 candidates (parsed), 0 screened out unparsed, 25 records of watched names"
        ),
        "{full}"
    );
    // An actor that is also a bypassed account is one name; spellings are counted apart.
    let s5 = stats(&["tests/fixtures/investigation/s5_allowlisted_tool.jsonl"]);
    assert!(
        s5.contains(
            "context names 5 watched (3 bypassed accounts, 3 actors; 6 spellings in the findings)"
        ),
        "{s5}"
    );
    let s7 = stats(&["tests/fixtures/investigation/s7_repeated_enables_spellings.jsonl"]);
    assert!(
        s7.contains(
            "context names 3 watched (1 bypassed accounts, 2 actors; 6 spellings in the findings)"
        ),
        "{s7}"
    );
    // The sharded run's context plan says the same.
    let dir = tempfile::tempdir().unwrap();
    let part = dir.path().join("part0");
    let plan = dir.path().join("plan");
    let out = run(&[
        "hunt",
        "-q",
        "--shard",
        "0/1",
        "--partial",
        part.to_str().unwrap(),
        "tests/fixtures/investigation/s5_allowlisted_tool.jsonl",
    ]);
    assert!(out.status.code().is_some_and(|c| c < 2));
    let out = run(&[
        "merge",
        "--context-plan",
        plan.to_str().unwrap(),
        part.to_str().unwrap(),
    ]);
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("the second stage watches 5 names (3 bypassed accounts, 3 actors)"),
        "{said}"
    );
}

#[test]
fn coverage_says_records_are_counted_as_read_when_matches_repeat() {
    // Regression: coverage counted a record the inputs repeat each time while the
    // findings dropped the repeat, and no report said so.
    let file = "testdata/raw_ual_bypass_events.jsonl";
    let json = |args: &[&str]| {
        let mut all = vec!["hunt", "-q", "--format", "json"];
        all.extend_from_slice(args);
        json_of(&run(&all))
    };
    let once = json(&[file]);
    let twice = json(&[file, file]);
    assert_eq!(once["coverage"]["repeated_matches"], 0);
    let repeated = twice["scan"]["duplicates"].as_u64().unwrap();
    assert!(repeated > 0);
    assert_eq!(twice["coverage"]["repeated_matches"], repeated);
    assert_eq!(
        twice["coverage"]["records"].as_u64().unwrap(),
        2 * once["coverage"]["records"].as_u64().unwrap(),
        "counted as read"
    );
    let note = format!(
        "records are counted as read: {repeated} rule matches repeated an earlier one's record id"
    );
    let table = String::from_utf8(run(&["hunt", "-q", "--wide", file, file]).stdout).unwrap();
    assert!(table.contains(&format!("\n  {note}")), "{table}");
    let table = String::from_utf8(run(&["hunt", "-q", "--wide", file]).stdout).unwrap();
    assert!(!table.contains("records are counted as read"), "{table}");
    let html =
        String::from_utf8(run(&["hunt", "-q", "--format", "html", file, file]).stdout).unwrap();
    assert!(html.contains(&note.replace('\'', "&#39;")), "html");
}

#[test]
fn rules_prints_metadata_and_query() {
    let out = run(&["rules"]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("675239ea-c1bc-4467-a6d3-b9e2cc7f676d"));
    assert!(text.contains("event.action:Set-MailboxAuditBypassAssociation"));
    assert!(text.contains("T1562.001"));
}

#[test]
fn rules_guide_prints_the_investigation_guide_of_the_rule_named() {
    let rules = "tests/fixtures/responder/rules";
    // By id, by a part of the name, by words that begin the name's words: the same guide.
    for wanted in [
        "675239EA-c1bc-4467-a6d3-b9e2cc7f676d",
        "audit logging bypass",
        "mailbox bypas",
    ] {
        let out = run(&["rules", "--rules", rules, "--guide", wanted]);
        let text = String::from_utf8(out.stdout).unwrap();
        assert_eq!(out.status.code(), Some(0), "{wanted}: {text}");
        assert!(
            text.starts_with(
                "M365 Exchange Mailbox Audit Logging Bypass Added \
                 (675239ea-c1bc-4467-a6d3-b9e2cc7f676d)\n"
            ),
            "{wanted}: {text}"
        );
        assert!(
            text.contains("=== Investigation guide ===\n\n## Triage and analysis\n"),
            "{wanted}: {text}"
        );
    }
    // A text several names hold: an error listing them.
    let out = run(&["rules", "--rules", rules, "--guide", "m365"]);
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{said}");
    assert!(out.stdout.is_empty());
    assert!(said.contains("fits 3 rules"), "{said}");
    assert!(
        said.contains("\n  M365 Sign-in Signal (0b0b0b0b-0000-4000-8000-000000000001)"),
        "{said}"
    );
    // A misspelt name: an error offering the close one.
    let out = run(&["rules", "--rules", rules, "--guide", "inbx rul creatd"]);
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{said}");
    assert!(
        said.contains(
            "the closest:\n  M365 Inbox Rule Created (0b0b0b0b-0000-4000-8000-000000000002)"
        ),
        "{said}"
    );
    // The built-in rule has none, and says so.
    let out = run(&["rules", "--guide", "bypass"]);
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{said}");
    assert!(said.contains("has no investigation guide"), "{said}");
}

#[test]
fn bad_flags_are_refused() {
    assert_eq!(
        run(&["hunt", "--chunk-size", "lots", "testdata/"])
            .status
            .code(),
        Some(2)
    );
    assert_eq!(
        run(&["hunt", "--format", "xml", "testdata/"]).status.code(),
        Some(2)
    );
}

#[test]
fn a_closed_pipe_is_not_an_error() {
    let bin = assert_cmd::cargo::cargo_bin("ualhunt");
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("'{}' hunt --format ndjson testdata/raw_ual_bypass_events.jsonl testdata/tree | head -c 1 >/dev/null", bin.display()))
        .current_dir(root())
        .output()
        .unwrap();
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn generate_is_deterministic_and_its_plants_are_found() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.jsonl.gz");
    let make = |p: &Path| {
        run(&[
            "generate",
            "--size",
            "2M",
            "--seed",
            "9",
            "--rate",
            "0.01",
            "--gzip",
            "-o",
            p.to_str().unwrap(),
        ])
    };
    let out = make(&a);
    assert_eq!(out.status.code(), Some(0));
    let b = dir.path().join("b.jsonl.gz");
    make(&b);
    assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
    let said = String::from_utf8_lossy(&out.stderr);
    let expected: u64 = said
        .split("the rule should match ")
        .nth(1)
        .and_then(|s| s.split(';').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("summary: {said}"));
    let report = json_of(&run(&["hunt", "--format", "json", a.to_str().unwrap()]));
    assert_eq!(report["scan"]["events"].as_u64(), Some(expected));
}

#[test]
fn since_and_until_bound_the_event_time() {
    let file = "testdata/raw_ual_bypass_events.jsonl";
    let all = json_of(&run(&["hunt", "--format", "json", file]));
    assert_eq!(all["scan"]["events"], 6);
    let day = json_of(&run(&[
        "hunt",
        "--format",
        "json",
        "--since",
        "2024-03-06",
        "--until",
        "2024-03-06",
        file,
    ]));
    assert_eq!(
        day["scan"]["events"], 2,
        "a date as --until includes that whole day"
    );
    assert_eq!(day["scan"]["outside_window"], 4);
    let to_the_second = json_of(&run(&[
        "hunt",
        "--format",
        "json",
        "--since",
        "2024-03-07T23:59:59Z",
        file,
    ]));
    assert_eq!(to_the_second["scan"]["events"], 1, "--since is inclusive");
    let out = run(&["hunt", "--since", "2024-03-08", file]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "nothing in the window: no findings"
    );
    assert_eq!(
        run(&["hunt", "--since", "soon", file]).status.code(),
        Some(2)
    );
}

#[test]
fn a_record_repeated_across_exports_is_reported_once() {
    let file = "testdata/raw_ual_bypass_events.jsonl";
    let twice = json_of(&run(&[
        "hunt",
        "--format",
        "json",
        file,
        "testdata/gzip_content_named.json",
        file,
    ]));
    let once = json_of(&run(&[
        "hunt",
        "--format",
        "json",
        file,
        "testdata/gzip_content_named.json",
    ]));
    assert_eq!(twice["scan"]["events"], once["scan"]["events"]);
    assert_eq!(twice["scan"]["duplicates"], 6);
    assert_eq!(
        twice["actors"], once["actors"],
        "the first occurrence (input order) is kept"
    );
    let kept = json_of(&run(&[
        "hunt",
        "--format",
        "json",
        "--keep-duplicates",
        file,
        file,
    ]));
    assert_eq!(kept["scan"]["events"], 12);
    assert_eq!(kept["scan"]["duplicates"], 0);
}

#[test]
fn the_elastic_agent_cel_wrapper_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cel.ndjson");
    let raw = std::fs::read_to_string(root().join("testdata/raw_ual_bypass_events.jsonl")).unwrap();
    let wrapped: String = raw
        .lines()
        .map(|l| format!("{{\"o365audit\":{l}}}\n"))
        .collect();
    std::fs::write(&path, wrapped).unwrap();
    let a = json_of(&run(&[
        "hunt",
        "--format",
        "json",
        "testdata/raw_ual_bypass_events.jsonl",
    ]));
    let b = json_of(&run(&["hunt", "--format", "json", path.to_str().unwrap()]));
    assert_eq!(b["scan"]["events"], a["scan"]["events"]);
    assert_eq!(events_of_report(&a), events_of_report(&b));
}

/// The sample file compressed as `z` (named `name`) reads like the plain file: same
/// events, same line count, recognised as zstd from its bytes.
fn reads_like_the_plain_sample(dir: &std::path::Path, name: &str, z: &[u8]) {
    let path = dir.join(name);
    std::fs::write(&path, z).unwrap();
    let a = json_of(&run(&[
        "hunt",
        "--format",
        "json",
        "testdata/raw_ual_bypass_events.jsonl",
    ]));
    let out = run(&[
        "hunt",
        "--format",
        "json",
        "--stats",
        path.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let b = json_of(&out);
    assert_eq!(events_of_report(&a), events_of_report(&b));
    assert_eq!(a["scan"]["lines"], b["scan"]["lines"]);
    assert!(stderr.contains("1 jsonl+zstd"), "{stderr}");
}

#[test]
fn zstd_archives_are_read_like_plain_ones() {
    let dir = tempfile::tempdir().unwrap();
    let raw = std::fs::read(root().join("testdata/raw_ual_bypass_events.jsonl")).unwrap();
    // Two frames, named misleadingly: the magic bytes decide.
    let mut z = zstd::encode_all(&raw[..raw.len() / 2], 3).unwrap();
    z.extend(zstd::encode_all(&raw[raw.len() / 2..], 19).unwrap());
    reads_like_the_plain_sample(dir.path(), "export.json", &z);
    let cut = dir.path().join("cut.zst");
    std::fs::write(&cut, &z[..z.len() - 10]).unwrap();
    assert_eq!(run(&["hunt", cut.to_str().unwrap()]).status.code(), Some(2));
}

#[test]
fn zstd_archives_that_open_with_a_skippable_frame_are_read() {
    // Parallel zstd writers put a skippable frame (magic `0x184D2A50`, its length, its
    // bytes: here the next frame's size) before every frame.
    let dir = tempfile::tempdir().unwrap();
    let raw = std::fs::read(root().join("testdata/raw_ual_bypass_events.jsonl")).unwrap();
    let (first, second) = raw.split_at(raw.len() / 2);
    let mut z = Vec::new();
    for part in [first, second] {
        let frame = zstd::encode_all(part, 3).unwrap();
        z.extend([0x50, 0x2a, 0x4d, 0x18, 4, 0, 0, 0]);
        z.extend((frame.len() as u32).to_le_bytes());
        z.extend(frame);
    }
    reads_like_the_plain_sample(dir.path(), "export.jsonl.zst", &z);
}

/// Events without where they were found: the same records must give these whatever
/// container they come in.
fn findings_of(report: &Json) -> Vec<(String, Json, Json, Json, Json, Json)> {
    let mut v: Vec<_> = events_of_report(report)
        .into_iter()
        .map(|(actor, _, id, target, flag, ip, ts)| (actor, id, target, flag, ip, ts))
        .collect();
    v.sort_by(|a, b| (&a.0, a.1.to_string()).cmp(&(&b.0, b.1.to_string())));
    v
}

#[test]
fn every_export_container_gives_the_same_findings_at_the_record_start_line() {
    let reference = json_of(&run(&[
        "hunt",
        "--format",
        "json",
        "testdata/raw_ual_bypass_events.jsonl",
    ]));
    let want = findings_of(&reference);
    assert_eq!(want.len(), 6);
    let dir = root().join("tests/fixtures/formats");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if !path.is_file() {
            continue;
        }
        seen += 1;
        let rel = path
            .strip_prefix(root())
            .unwrap()
            .to_str()
            .unwrap()
            .to_string();
        for mode in MODES {
            let mut args = vec!["hunt", "--format", "json", rel.as_str()];
            args.extend_from_slice(mode);
            let out = run(&args);
            assert_found(&out, &format!("{rel} {mode:?}"));
            let report = json_of(&out);
            assert_eq!(findings_of(&report), want, "{rel} {mode:?}");
            assert_eq!(
                report["scan"]["records"], reference["scan"]["records"],
                "{rel} {mode:?}"
            );
        }
        // The evidence line is where the record starts: it opens an object, and the
        // record's id follows within the record.
        let report = json_of(&run(&["hunt", "--format", "json", rel.as_str()]));
        let text = if rel.ends_with(".gz") || rel.ends_with(".zst") {
            let data = std::fs::read(&path).unwrap();
            if rel.ends_with(".gz") {
                let mut s = String::new();
                std::io::Read::read_to_string(
                    &mut flate2::read::MultiGzDecoder::new(&data[..]),
                    &mut s,
                )
                .unwrap();
                s
            } else {
                String::from_utf8(zstd::decode_all(&data[..]).unwrap()).unwrap()
            }
        } else {
            std::fs::read_to_string(&path).unwrap()
        };
        let lines: Vec<&str> = text.lines().collect();
        for (_, line, id, ..) in events_of_report(&report) {
            let at = lines[line as usize - 1];
            assert!(
                at.contains('{'),
                "{rel}:{line} does not open a record: {at:?}"
            );
            let window = lines[line as usize - 1..(line as usize + 40).min(lines.len())].join("\n");
            let first_id = window.find(id.as_str().unwrap());
            assert!(
                first_id.is_some(),
                "{rel}:{line}: record {id} not found from there"
            );
        }
    }
    assert!(seen >= 10, "format fixtures found: {seen}");
}

#[test]
fn overlapping_exports_report_shared_records_once() {
    let dir = "tests/fixtures/formats/overlap";
    let report = json_of(&run(&["hunt", "--format", "json", dir]));
    let reference = json_of(&run(&[
        "hunt",
        "--format",
        "json",
        "testdata/raw_ual_bypass_events.jsonl",
    ]));
    assert_eq!(findings_of(&report), findings_of(&reference));
    assert_eq!(report["scan"]["duplicates"], 2);
    let kept = json_of(&run(&[
        "hunt",
        "--format",
        "json",
        "--keep-duplicates",
        dir,
    ]));
    assert_eq!(kept["scan"]["events"], 8);
}

#[test]
fn stats_list_the_formats_read() {
    let out = run(&[
        "hunt",
        "--stats",
        "-o",
        "/dev/null",
        "tests/fixtures/formats",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    for needle in [
        "purview-csv",
        "json-document+zstd",
        "purview-csv+gzip",
        "jsonl",
    ] {
        assert!(stderr.contains(needle), "{needle} missing: {stderr}");
    }
}

#[test]
fn an_unrecognised_file_is_reported_with_its_reason() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.txt");
    std::fs::write(
        &path,
        "%PDF-1.4 not an audit export\nSet-MailboxAuditBypassAssociation\n",
    )
    .unwrap();
    let out = run(&[
        "hunt",
        "--format",
        "json",
        path.to_str().unwrap(),
        "testdata/raw_ual_bypass_events.jsonl",
    ]);
    assert_eq!(out.status.code(), Some(0), "a warning, not an error");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("notes.txt") && stderr.contains("not recognised"),
        "{stderr}"
    );
    let report = json_of(&out);
    assert_eq!(
        report["scan"]["warnings"][0]["path"],
        path.to_str().unwrap()
    );
    assert_eq!(
        report["scan"]["malformed"], 1,
        "its lines are still accounted for"
    );
}

#[test]
fn a_zip_of_exports_is_read_entry_by_entry() {
    let zip = "tests/fixtures/zip/exports.zip";
    let out = run(&[
        "hunt",
        "--format",
        "json",
        "--keep-duplicates",
        "--stats",
        zip,
    ]);
    assert_found(&out, "testdata/");
    let report = json_of(&out);
    assert_eq!(
        report["scan"]["files"], 3,
        "three file entries, the directory entry skipped"
    );
    assert_eq!(
        report["scan"]["events"], 18,
        "each entry holds the same 6 events"
    );
    let paths: std::collections::BTreeSet<&str> = report["actors"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|a| a["evidence"].as_array().unwrap())
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    assert!(
        paths.contains("tests/fixtures/zip/exports.zip!2024-03/purview_classic.csv"),
        "{paths:?}"
    );
    let deduplicated = json_of(&run(&["hunt", "--format", "json", zip]));
    assert_eq!(deduplicated["scan"]["events"], 6);
    assert_eq!(deduplicated["scan"]["duplicates"], 12);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("json-document+zip zstd"), "{stderr}");
}

#[test]
fn a_corrupt_zip_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broken.zip");
    std::fs::write(&path, b"PK\x03\x04 this is not really a zip archive").unwrap();
    let out = run(&["hunt", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read zip archive"));
}

#[test]
fn a_truncated_gzip_with_a_bom_still_yields_the_lines_before_the_cut() {
    // Regression: the sniffing read met the error first and the whole input was dropped;
    // and the BOM was left on the unfinished tail.
    let raw = std::fs::read_to_string(root().join("testdata/raw_ual_bypass_events.jsonl")).unwrap();
    let text = format!("\u{feff}{raw}");
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut enc, text.as_bytes()).unwrap();
    let gz = enc.finish().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cut.jsonl.gz");
    std::fs::write(&path, &gz[..gz.len() - 4]).unwrap();
    let out = run(&["hunt", "--format", "json", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let report = json_of(&out);
    let whole = json_of(&run(&[
        "hunt",
        "--format",
        "json",
        "testdata/raw_ual_bypass_events.jsonl",
    ]));
    assert_eq!(report["scan"]["lines"], whole["scan"]["lines"]);
    assert_eq!(report["scan"]["events"], whole["scan"]["events"]);
    assert_eq!(report["scan"]["malformed"], 0);
}
