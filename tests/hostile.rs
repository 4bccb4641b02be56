//! Hostile text in every output format (issue 13): actor names, target identities and
//! the input's own path carrying ANSI escapes (C0 and C1), bidi overrides and isolates,
//! newlines and carriage returns, a Unicode line separator, spreadsheet formulas and
//! HTML markup. Each format must neutralise them for where it goes: visible `\u{..}`
//! on a terminal, in CSV cells and in the HTML page (with entities there, and `'` before
//! a formula), `\uXXXX` escapes in every JSON format (the value is kept: it parses back
//! the same). One test per format.

use std::path::{Path, PathBuf};
use std::process::Command;

use assert_cmd::cargo::CommandCargoExt;

const ACTOR: &str =
    "=HYPERLINK(\"http://x\")\u{1b}[31mred\u{9b}2J\u{202e}nimda\u{2066}<script>alert(1)</script>";
const TARGET: &str = "\tcmd|' /C calc'!A0\r\nforged line\u{2028}@SUM(A1)\u{7f}";
/// What may never reach any output raw.
const FORBIDDEN: &[char] = &[
    '\u{1b}', '\u{9b}', '\u{7f}', '\u{202a}', '\u{202b}', '\u{202c}', '\u{202d}', '\u{202e}',
    '\u{2066}', '\u{2067}', '\u{2068}', '\u{2069}', '\u{2028}', '\u{2029}', '\r',
];

/// An archive whose file name is hostile too; two matching records.
fn archive(dir: &Path) -> PathBuf {
    let path = dir.join("evil\u{1b}[2J\u{202e}lnosj.jsonl");
    let record = |id: &str| {
        serde_json::json!({
            "CreationTime": "2024-05-01T00:00:00",
            "Id": id,
            "Operation": "Set-MailboxAuditBypassAssociation",
            "Workload": "Exchange",
            "ResultStatus": "Succeeded",
            "UserId": ACTOR,
            "ClientIP": "192.0.2.1",
            "Parameters": [
                {"Name": "Identity", "Value": TARGET},
                {"Name": "AuditBypassEnabled", "Value": "True"}
            ]
        })
        .to_string()
    };
    std::fs::write(&path, format!("{}\n{}\n", record("h-1"), record("h-2"))).unwrap();
    path
}

/// Runs a hunt in `format`; returns stdout as text (lossy) and the archive's path.
fn hunt(format: &str) -> (String, PathBuf, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path = archive(dir.path());
    let out = Command::cargo_bin("ualhunt")
        .unwrap()
        .args(["hunt", "-q", "--no-context", "--format", format])
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(0), "{format}: {stderr}");
    for c in FORBIDDEN {
        assert!(!stderr.contains(*c), "stderr has raw {c:?}: {stderr:?}");
    }
    (String::from_utf8(out.stdout).unwrap(), path, dir)
}

fn no_raw_controls(format: &str, text: &str) {
    for c in FORBIDDEN {
        assert!(!text.contains(*c), "{format}: raw {c:?} in {text:?}");
    }
}

/// JSON-lines outputs: one JSON value per line (no forged line), none with raw
/// controls, and the hostile strings arrive as data, unchanged.
fn json_lines(format: &str) -> Vec<serde_json::Value> {
    let (text, _, _dir) = hunt(format);
    no_raw_controls(format, &text);
    let values: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{format}: {e}: {l}")))
        .collect();
    let all = serde_json::to_string(&values).unwrap();
    assert!(
        all.contains(&serde_json::to_string(ACTOR).unwrap()[1..20]),
        "{format}: actor lost"
    );
    values
}

fn strings(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::String(s) => out.push(s.clone()),
        serde_json::Value::Array(a) => a.iter().for_each(|v| strings(v, out)),
        serde_json::Value::Object(o) => o.values().for_each(|v| strings(v, out)),
        _ => {}
    }
}

fn has_string(values: &[serde_json::Value], want: &str) -> bool {
    let mut all = Vec::new();
    values.iter().for_each(|v| strings(v, &mut all));
    all.iter().any(|s| s.contains(want))
}

#[test]
fn table_shows_hostile_text_as_visible_escapes() {
    let (text, _, _dir) = hunt("table");
    no_raw_controls("table", &text);
    assert!(
        text.contains(r"\u{1b}[31mred\u{9b}2J\u{202e}nimda"),
        "{text}"
    );
    assert!(text.contains(r"\u{d}\u{a}forged line\u{2028}"), "{text}");
    assert!(
        !text.lines().any(|l| l.starts_with("forged line")),
        "{text}"
    );
}

#[test]
fn csv_cells_are_neither_formulas_nor_terminal_escapes() {
    let (text, _, _dir) = hunt("csv");
    no_raw_controls("csv", &text);
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let headers = reader.headers().unwrap().clone();
    let mut rows = 0;
    for row in reader.records() {
        let row = row.unwrap();
        rows += 1;
        for (h, cell) in headers.iter().zip(row.iter()) {
            assert!(
                !cell.starts_with(['=', '+', '-', '@', '\t', '\r']),
                "{h}: dangerous cell {cell:?}"
            );
            assert!(!cell.contains('\n'), "{h}: a newline in {cell:?}");
        }
        let actor = &row[headers.iter().position(|h| h == "actor").unwrap()];
        assert!(actor.starts_with("'=HYPERLINK"), "{actor}");
        let target = &row[headers.iter().position(|h| h == "target").unwrap()];
        assert!(target.starts_with(r"'\u{9}cmd"), "{target}");
    }
    assert_eq!(rows, 2);
}

#[test]
fn json_escapes_controls_and_keeps_the_values() {
    let values = json_lines("json");
    assert_eq!(values.len(), 1, "one document");
    let doc = &values[0];
    let actor = doc["actors"][0]["actor"].as_str().unwrap();
    assert_eq!(actor, ACTOR);
    let path = doc["actors"][0]["evidence"][0]["path"].as_str().unwrap();
    assert!(path.contains("evil\u{1b}[2J\u{202e}lnosj"), "{path}");
}

#[test]
fn ndjson_escapes_controls_one_event_per_line() {
    let values = json_lines("ndjson");
    assert_eq!(values.len(), 2, "one line per event, no forged line");
    assert!(has_string(&values, TARGET));
}

#[test]
fn timeline_escapes_controls_one_event_per_line() {
    let values = json_lines("timeline");
    assert!(
        values
            .iter()
            .all(|v| v["message"].is_string() && v["datetime"].is_string())
    );
    assert!(has_string(&values, ACTOR));
}

#[test]
fn ecs_escapes_controls_and_keeps_bulk_pairs() {
    let values = json_lines("ecs");
    // _bulk NDJSON: an action line then a document, for each alert.
    assert_eq!(values.len() % 2, 0);
    assert!(
        values.iter().step_by(2).all(|v| v.get("create").is_some()),
        "{values:?}"
    );
    assert!(has_string(&values, ACTOR));
}

#[test]
fn html_shows_hostile_text_as_inert_visible_text() {
    let (page, _, _dir) = hunt("html");
    no_raw_controls("html", &page);
    assert!(!page.contains("<script>alert"), "markup from the archive");
    assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(
        page.contains("U+202E"),
        "the bidi override is shown, not applied"
    );
}

/// Characters that show as nothing (or as a plain space): inserted in a name, the name
/// looks like another one.
const INVISIBLE: [char; 15] = [
    '\u{200b}',
    '\u{200c}',
    '\u{200d}',
    '\u{2060}',
    '\u{feff}',
    '\u{ad}',
    '\u{34f}',
    '\u{180e}',
    '\u{3164}',
    '\u{115f}',
    '\u{ffa0}',
    '\u{2061}',
    '\u{e0020}',
    '\u{e0041}',
    '\u{e007f}',
];

#[test]
fn look_alike_names_are_told_apart_in_every_format() {
    // Regression: 15 accounts that differ only by an invisible character printed as
    // 15 identical names in the table and CSV; the HTML showed only some of them.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lookalike.jsonl");
    let names: Vec<String> = INVISIBLE.iter().map(|c| format!("ad{c}min@x")).collect();
    let lines: Vec<String> = names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            serde_json::json!({
                "CreationTime": "2024-05-01T00:00:00",
                "Id": format!("look-{i}"),
                "Operation": "Set-MailboxAuditBypassAssociation",
                "Workload": "Exchange",
                "ResultStatus": "Succeeded",
                "UserId": name,
                "Parameters": [
                    {"Name": "Identity", "Value": format!("box{c}1", c = INVISIBLE[i])},
                    {"Name": "AuditBypassEnabled", "Value": "True"}
                ]
            })
            .to_string()
        })
        .collect();
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    for format in ["table", "csv", "html", "json", "ndjson", "timeline", "ecs"] {
        let out = Command::cargo_bin("ualhunt")
            .unwrap()
            .args(["hunt", "-q", "--no-context", "--format", format])
            .arg(&path)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{format}");
        let text = String::from_utf8(out.stdout).unwrap();
        for c in INVISIBLE {
            assert!(!text.contains(c), "{format}: raw {c:?}");
            let shown = if matches!(format, "json" | "ndjson" | "timeline" | "ecs") {
                c.encode_utf16(&mut [0; 2])
                    .iter()
                    .map(|u| format!("\\u{u:04x}"))
                    .collect::<String>()
            } else {
                format!("\\u{{{:x}}}", c as u32)
            };
            assert!(text.contains(&format!("ad{shown}min@x")), "{format}: {c:?}");
        }
        if format == "json" {
            let report: serde_json::Value = serde_json::from_str(&text).unwrap();
            let mut actors: Vec<&str> = report["actors"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a["actor"].as_str().unwrap())
                .collect();
            actors.sort();
            let mut want: Vec<&str> = names.iter().map(String::as_str).collect();
            want.sort();
            assert_eq!(actors, want, "the names parse back as they were");
        }
    }
}

#[test]
fn rules_listing_shows_hostile_rule_text_as_visible_escapes() {
    // A rule file is as untrusted as an archive (a rule pack downloaded from anywhere):
    // its title, description, false positives and values reach the terminal escaped,
    // while the description's own newlines stay line breaks.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("evil.yml");
    std::fs::write(
        &path,
        "title: \"Evil \\e[2J\\u202e rule\"\n\
         id: 11111111-2222-3333-4444-555555555555\n\
         description: \"line one\\nline two \\e]0;pwned\\a\"\n\
         falsepositives: [\"\\e[31mred\"]\n\
         logsource: {product: m365, service: exchange}\n\
         detection:\n  sel: {Operation: \"Set-Mailbox\\e[1m\"}\n  condition: sel\n\
         level: high\n",
    )
    .unwrap();
    let out = Command::cargo_bin("ualhunt")
        .unwrap()
        .args(["rules", "--rules"])
        .arg(&path)
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    no_raw_controls("rules", &text);
    assert!(text.contains("Evil \\u{1b}[2J\\u{202e} rule"), "{text}");
    assert!(text.contains("\\u{1b}[31mred"), "{text}");
    assert!(
        text.contains("\n    line two \\u{1b}]0;pwned\\u{7}"),
        "{text}"
    );
}

#[test]
fn a_rules_investigation_guide_reaches_the_terminal_escaped() {
    // `rules --guide` prints a rule file's Markdown on the terminal: the ESC and the bidi
    // override its note holds arrive as visible escapes, the Markdown otherwise as written.
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::cargo_bin("ualhunt")
        .unwrap()
        .current_dir(root)
        .args([
            "rules",
            "--rules",
            "tests/fixtures/responder/rules",
            "--guide",
            "inbox rule created",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    no_raw_controls("rules --guide", &text);
    assert!(
        text.contains("- adm\\u{202e}moc and \\u{1b}[31mred\n"),
        "{text}"
    );
    assert!(text.contains("\n## Triage\n"), "{text}");
    assert!(
        text.contains("Needs the **Exchange** audit <iframe"),
        "{text}"
    );
    // What the user typed comes back escaped in the error too.
    let out = Command::cargo_bin("ualhunt")
        .unwrap()
        .current_dir(root)
        .args(["rules", "--guide", "\u{1b}[2Jbypass\u{202e}"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    no_raw_controls("rules --guide", &String::from_utf8_lossy(&out.stderr));
}
