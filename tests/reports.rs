//! Reports written from one scan: `--export FORMAT=FILE` beside `--format` and `-o`
//! (every file byte for byte what a separate run with that `--format` writes), and
//! clear errors for an unknown format or a file that cannot be created; the `timeline`
//! format: golden files (`UPDATE_GOLDEN=1 cargo test --test reports` rewrites them
//! after a deliberate change), what Timesketch's importer requires of every line, and
//! the same events as the JSON report; the `ecs` format: golden files, `_bulk` action
//! lines, and every field of every document exported from the fixtures checked against
//! ECS 9.4's own field list (`../shared/corpus/ecs/fields.csv`, beside the repository;
//! never copied in: without it the test says so and checks the rest); hostile strings
//! from an archive arrive as data in both.

mod common;

use std::collections::HashMap;
use std::net::IpAddr;
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
    let formats = ["table", "csv", "ndjson", "timeline", "ecs"];
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
        let accounts = json["investigations"][0]["accounts"]
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
        let contexts = json["investigations"][0]["actor_context"]
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

#[test]
fn ecs_golden() {
    for (fixture, name) in [(S4, "s4.ecs.ndjson"), (S8, "s8.ecs.ndjson")] {
        golden(name, &findings(&["--format", "ecs", fixture]).stdout);
    }
}

/// ECS 9.4: field name -> type, from ECS's own field list beside the repository.
fn ecs_fields() -> Option<HashMap<String, String>> {
    let path = common::corpus("ecs/fields.csv", "ECS field names and types")?;
    let mut reader = csv::Reader::from_path(&path).unwrap();
    let header = reader.headers().unwrap().clone();
    let column = |name: &str| header.iter().position(|h| h == name).unwrap();
    let (version, field, ty) = (column("ECS_Version"), column("Field"), column("Type"));
    let mut out = HashMap::new();
    for row in reader.records() {
        let row = row.unwrap();
        assert!(
            row[version].starts_with("9.4"),
            "ECS version {}",
            &row[version]
        );
        out.insert(row[field].to_string(), row[ty].to_string());
    }
    assert!(out.len() > 1000, "{} fields", out.len());
    Some(out)
}

/// Whether a JSON value can be indexed as an ECS field of this type.
fn compatible(ty: &str, value: &Json) -> Result<(), String> {
    if let Json::Array(items) = value {
        return items.iter().try_for_each(|v| compatible(ty, v));
    }
    let ok = match ty {
        "keyword" | "constant_keyword" | "wildcard" | "text" | "match_only_text" => {
            value.is_string()
        }
        "ip" => value.as_str().is_some_and(|s| s.parse::<IpAddr>().is_ok()),
        "long" | "integer" | "short" | "byte" | "unsigned_long" => value.is_i64() || value.is_u64(),
        "float" | "double" | "scaled_float" | "half_float" => value.is_number(),
        "date" => value
            .as_str()
            .is_some_and(|s| chrono::DateTime::parse_from_rfc3339(s).is_ok()),
        "boolean" => value.is_boolean(),
        // `labels`: keyword values under plain names.
        "object" | "flattened" => value.as_object().is_some_and(|m| {
            m.iter()
                .all(|(k, v)| !k.contains('.') && (v.is_string() || v.is_array()))
        }),
        _ => return Err(format!("type {ty} is not expected in an export")),
    };
    if ok {
        Ok(())
    } else {
        Err(format!("{value} is not a valid {ty}"))
    }
}

/// Checks every field of a document (nested objects flattened to dotted names).
fn check_fields(
    fields: &HashMap<String, String>,
    prefix: &str,
    doc: &Json,
    errors: &mut Vec<String>,
) {
    let Some(map) = doc.as_object() else {
        errors.push(format!("{prefix}: not an object"));
        return;
    };
    for (key, value) in map {
        let name = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        match fields.get(&name) {
            Some(ty) => {
                if let Err(e) = compatible(ty, value) {
                    errors.push(format!("{name}: {e}"));
                }
            }
            None if value.is_object() => check_fields(fields, &name, value, errors),
            None => errors.push(format!("{name}: not an ECS 9.4 field")),
        }
    }
}

/// `_bulk` NDJSON: pairs of an action line and a document.
fn bulk_documents(bytes: &[u8]) -> Vec<Json> {
    let text = std::str::from_utf8(bytes).expect("UTF-8");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len() % 2, 0, "action and document lines pair up");
    lines
        .chunks(2)
        .map(|pair| {
            assert_eq!(pair[0], r#"{"create":{}}"#, "a data stream takes create");
            serde_json::from_str(pair[1]).unwrap_or_else(|e| panic!("{e}: {}", pair[1]))
        })
        .collect()
}

/// What Elastic Security's "External Alerts" rule reads of a document.
fn check_promotable(doc: &Json) {
    let event = &doc["event"];
    let failed = event["outcome"] == "failure";
    assert_eq!(
        event["kind"],
        if failed { "event" } else { "alert" },
        "{doc}"
    );
    assert!(
        doc["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{doc}"
    );
    assert!(
        [21, 47, 73, 99].contains(&event["severity"].as_u64().unwrap()),
        "{doc}"
    );
    assert!(event["risk_score"].is_number(), "{doc}");
    assert_eq!(doc["data_stream"]["dataset"], "ualhunt.alerts");
    assert_eq!(event["dataset"], "ualhunt.alerts");
    assert!(doc["rule"]["id"].is_string() && doc["rule"]["name"].is_string());
    assert!(doc.get("event").and_then(|e| e.get("original")).is_none());
}

#[test]
fn every_ecs_document_names_ecs_fields_with_their_types() {
    let fields = ecs_fields();
    let mut inputs = scenarios();
    inputs.push("testdata".to_string());
    let (mut documents, mut alerts) = (0, 0);
    for input in inputs {
        let out = run(&["--allow", ALLOW, "--format", "ecs", &input]);
        for doc in bulk_documents(&out.stdout) {
            check_promotable(&doc);
            if let Some(fields) = &fields {
                let mut errors = Vec::new();
                check_fields(fields, "", &doc, &mut errors);
                assert!(errors.is_empty(), "{input}: {errors:#?}\n{doc}");
            }
            documents += 1;
            alerts += usize::from(doc["event"]["kind"] == "alert");
        }
    }
    assert!(
        alerts >= 30 && documents > alerts,
        "{documents} documents, {alerts} alerts"
    );
}

#[test]
fn ecs_documents_carry_the_rule_threat_and_the_evidence() {
    let docs = bulk_documents(&findings(&["--format", "ecs", S4]).stdout);
    let json: Json = serde_json::from_slice(&findings(&["--format", "json", S4]).stdout).unwrap();
    assert_eq!(
        docs.len() as u64,
        json["scan"]["events"].as_u64().unwrap() + json["scan"]["attempts"].as_u64().unwrap()
    );
    let first = &docs[0];
    assert_eq!(first["@timestamp"], "2024-03-26T22:09:00Z");
    assert_eq!(first["rule"]["id"], "675239ea-c1bc-4467-a6d3-b9e2cc7f676d");
    assert_eq!(first["threat"]["tactic"]["id"][0], "TA0005");
    assert_eq!(
        first["threat"]["technique"]["subtechnique"]["id"][0],
        "T1562.001"
    );
    assert_eq!(first["user"]["id"], "helpdesk-temp@contoso.com");
    assert_eq!(first["user"]["target"]["name"], "CFO@contoso.com");
    assert_eq!(first["source"]["ip"], "192.0.2.44");
    assert_eq!(first["related"]["ip"][0], "192.0.2.44");
    assert_eq!(first["labels"]["change"], "enable");
    assert_eq!(first["labels"]["allowlisted"], "false");
    assert_eq!(
        first["event"]["action"],
        "Set-MailboxAuditBypassAssociation"
    );
    assert_eq!(
        first["event"]["id"],
        json["actors"][0]["evidence"][0]["record_id"]
    );
}

/// A raw audit record with hostile text where an archive could put it.
fn hostile_record(actor: &str, target: &str, ip: &str) -> String {
    let record = serde_json::json!({
        "CreationTime": "2024-06-01T10:00:00",
        "Id": "hostile-1",
        "Operation": "Set-MailboxAuditBypassAssociation",
        "OrganizationId": "org",
        "RecordType": 1,
        "ResultStatus": "True",
        "UserId": actor,
        "UserType": 2,
        "Workload": "Exchange",
        "ClientIP": ip,
        "Parameters": [
            {"Name": "Identity", "Value": target},
            {"Name": "AuditBypassEnabled", "Value": "True"}
        ]
    });
    record.to_string()
}

#[test]
fn hostile_strings_arrive_as_data_in_timeline_and_ecs() {
    let actor = "<script>alert(1)</script>\u{1b}[31m=cmd|\u{202e}nimda";
    let target = "=HYPERLINK(\"x\")\r\n{\"create\":{}}\u{202e}";
    let ip = "not-an-ip\u{7}";
    let dir = tempfile::tempdir().unwrap();
    let fixture = dir.path().join("hostile.jsonl");
    std::fs::write(&fixture, hostile_record(actor, target, ip) + "\n").unwrap();
    let fixture = arg(&fixture);

    let out = findings(&["--format", "timeline", fixture]).stdout;
    assert!(
        !out.contains(&0x1b) && !out.contains(&b'\r'),
        "control bytes stay escaped"
    );
    let timeline = lines(&out);
    assert_eq!(timeline.len(), 2, "the match and the period it opens");
    for line in &timeline {
        assert_eq!(line["actor"], actor);
        assert_eq!(
            line["target"].as_str().map(str::to_lowercase),
            Some(target.trim().to_lowercase())
        );
        assert!(line["message"].as_str().unwrap().contains(actor));
    }
    // The scan keeps only what reads as an address.
    assert_eq!(timeline[0]["source_ip"], Json::Null);

    let out = findings(&["--format", "ecs", fixture]).stdout;
    assert!(
        !out.contains(&0x1b) && !out.contains(&b'\r'),
        "control bytes stay escaped"
    );
    let docs = bulk_documents(&out);
    assert_eq!(
        docs.len(),
        1,
        "one alert: the target's {{\"create\"}} is data"
    );
    let doc = &docs[0];
    assert_eq!(doc["user"]["id"], actor);
    assert_eq!(doc["user"]["target"]["name"], target);
    assert_eq!(doc["related"]["user"], serde_json::json!([actor, target]));
    assert!(doc.get("source").is_none(), "not an address: no source.ip");
    assert!(doc["related"].get("ip").is_none());
    if let Some(fields) = ecs_fields() {
        let mut errors = Vec::new();
        check_fields(&fields, "", doc, &mut errors);
        assert!(errors.is_empty(), "{errors:#?}");
    }
}

#[test]
fn the_ecs_check_catches_wrong_names_and_types() {
    let Some(fields) = ecs_fields() else { return };
    let doc = serde_json::json!({
        "@timestamp": "yesterday",
        "event": {"severity": "high", "kind": "alert"},
        "source": {"ip": "not-an-ip"},
        "ualhunt": {"line": 3},
        "labels": {"a": {"nested": "x"}},
        "related": {"user": ["ok", 1]}
    });
    let mut errors = Vec::new();
    check_fields(&fields, "", &doc, &mut errors);
    errors.sort();
    let names: Vec<&str> = errors
        .iter()
        .map(|e| e.split(':').next().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "@timestamp",
            "event.severity",
            "labels",
            "related.user",
            "source.ip",
            "ualhunt.line"
        ],
        "{errors:#?}"
    );
}

/// The README's jq command that turns a timeline into CSV for Timeline Explorer.
fn readme_jq_recipe() -> String {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let mut lines = readme
        .lines()
        .skip_while(|l| !l.trim_start().starts_with("jq -rn '"));
    let mut recipe = Vec::new();
    for line in lines.by_ref() {
        recipe.push(line.trim_start());
        if line.trim_end().ends_with("> timeline.csv") {
            return recipe.join("\n");
        }
    }
    panic!("the README's jq recipe (from `jq -rn '` to `> timeline.csv`) is missing");
}

#[test]
fn the_readme_jq_recipe_makes_a_csv_for_timeline_explorer() {
    let recipe = readme_jq_recipe();
    if std::process::Command::new("jq")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("notice: jq is not installed; the README's CSV recipe not run");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // A formula in a target: the recipe must guard it as the csv format does.
    let hostile = dir.path().join("hostile.jsonl");
    let record = hostile_record("adm@contoso.com", "=HYPERLINK(\"x\")", "192.0.2.1");
    std::fs::write(&hostile, record + "\n").unwrap();
    let timeline = findings(&["--format", "timeline", S4, S8, arg(&hostile)]).stdout;
    std::fs::write(dir.path().join("timeline.jsonl"), &timeline).unwrap();
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(&recipe)
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut reader = csv::Reader::from_path(dir.path().join("timeline.csv")).unwrap();
    let header: Vec<String> = reader.headers().unwrap().iter().map(String::from).collect();
    assert_eq!(header[..3], ["datetime", "timestamp_desc", "message"]);
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    let events = lines(&timeline);
    assert_eq!(rows.len(), events.len());
    let target = header.iter().position(|h| h == "target").unwrap();
    for (row, event) in rows.iter().zip(&events) {
        assert_eq!(row.len(), header.len());
        assert_eq!(&row[0], event["datetime"].as_str().unwrap());
        assert!(!row[target].starts_with('='), "formula guarded: {row:?}");
    }
    assert!(rows.iter().any(|r| r[target].starts_with("'=HYPERLINK")));
}

#[test]
fn events_without_a_time_are_left_out_of_the_timeline_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let fixture = dir.path().join("undated.jsonl");
    let mut record: Json =
        serde_json::from_str(&hostile_record("adm@x.com", "svc@x.com", "192.0.2.1")).unwrap();
    record.as_object_mut().unwrap().remove("CreationTime");
    std::fs::write(&fixture, record.to_string() + "\n").unwrap();
    let out = findings(&["--format", "timeline", arg(&fixture)]);
    assert!(out.stdout.is_empty());
    // The match and the period it opens.
    assert!(
        stderr(&out).contains("2 events without a time are not in the timeline"),
        "{}",
        stderr(&out)
    );
    let json: Json =
        serde_json::from_slice(&findings(&["--format", "json", arg(&fixture)]).stdout).unwrap();
    assert_eq!(json["scan"]["events"], 1, "the json report has it");
}
