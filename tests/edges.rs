//! Right answers at the edges of the bypass investigation: a `--since`/`--until` window
//! and what counts as audit tampering.

mod common;

use common::ualhunt;
use serde_json::{Value, json};

/// A raw `Set-MailboxAuditBypassAssociation` record.
fn bypass(id: u32, time: &str, actor: &str, target: &str, on: bool) -> Value {
    json!({
        "CreationTime": time, "Id": format!("00000000-0000-0000-0000-{id:012}"),
        "Operation": "Set-MailboxAuditBypassAssociation", "RecordType": 1,
        "ResultStatus": "True", "UserType": 2, "Workload": "Exchange",
        "ClientIP": "203.0.113.25", "ObjectId": target, "UserId": actor,
        "Parameters": [
            {"Name": "Identity", "Value": target},
            {"Name": "AuditBypassEnabled", "Value": if on { "True" } else { "False" }}
        ]
    })
}

/// A raw `Set-Mailbox` record with the given parameters.
fn set_mailbox(id: u32, time: &str, actor: &str, params: &[(&str, &str)]) -> Value {
    let params: Vec<Value> = params
        .iter()
        .map(|(n, v)| json!({"Name": n, "Value": v}))
        .collect();
    json!({
        "CreationTime": time, "Id": format!("10000000-0000-0000-0000-{id:012}"),
        "Operation": "Set-Mailbox", "RecordType": 1, "ResultStatus": "True",
        "UserType": 2, "Workload": "Exchange", "ClientIP": "203.0.113.25",
        "ObjectId": "x", "UserId": actor, "Parameters": params
    })
}

fn archive(records: &[Value]) -> tempfile::NamedTempFile {
    let mut text = String::new();
    for r in records {
        text.push_str(&r.to_string());
        text.push('\n');
    }
    let file = tempfile::Builder::new()
        .suffix(".jsonl")
        .tempfile()
        .unwrap();
    std::fs::write(file.path(), text).unwrap();
    file
}

fn window_archive() -> tempfile::NamedTempFile {
    archive(&[
        // bob: on inside the window, off after it.
        bypass(1, "2024-03-05T10:00:00", "a1@c.com", "bob@c.com", true),
        bypass(2, "2024-03-15T10:00:00", "a1@c.com", "bob@c.com", false),
        // carol: on before the window, off after it (no change inside).
        bypass(3, "2024-02-25T10:00:00", "a2@c.com", "carol@c.com", true),
        bypass(4, "2024-03-20T10:00:00", "a2@c.com", "carol@c.com", false),
        // dave: on inside the window, never off.
        bypass(5, "2024-03-02T10:00:00", "a3@c.com", "dave@c.com", true),
    ])
}

const WINDOW: [&str; 4] = ["--since", "2024-03-01", "--until", "2024-03-10"];

#[test]
fn on_at_the_end_means_at_until_from_the_whole_history() {
    let file = window_archive();
    let path = file.path().to_str().unwrap();
    let mut args = vec!["hunt", "--format", "json"];
    args.extend(WINDOW);
    args.push(path);
    let out = ualhunt(&args);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let accounts = report["bypass"][0]["accounts"]
        .as_array()
        .or_else(|| report["investigations"][0]["accounts"].as_array())
        .or_else(|| report["rules"][0]["bypass"]["accounts"].as_array());
    let accounts = accounts.unwrap_or_else(|| panic!("no accounts in {report:#}"));
    let states: Vec<(&str, &str)> = accounts
        .iter()
        .map(|a| {
            (
                a["identity"].as_str().unwrap(),
                a["state_at_end"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        states,
        vec![
            ("bob@c.com", "on"),
            ("carol@c.com", "on"),
            ("dave@c.com", "on")
        ]
    );

    let mut args = vec!["hunt"];
    args.extend(WINDOW);
    args.push(path);
    let table = String::from_utf8(ualhunt(&args).stdout).unwrap();
    assert!(
        table.contains("VERDICT: 3 accounts have mailbox audit bypass ON at the end of the window (2024-03-11T00:00:00Z)"),
        "{table}"
    );
    // Actor context: only the actors with a change inside the window.
    let context: Vec<&str> = table
        .lines()
        .skip_while(|l| !l.starts_with("ACTOR CONTEXT"))
        .skip(1)
        .take_while(|l| !l.is_empty())
        .collect();
    assert_eq!(context.len(), 2, "{table}");
    assert!(context.iter().all(|l| !l.contains("a2@c.com")), "{table}");

    // Without a window, the end of the data: only dave is still on.
    let table = String::from_utf8(ualhunt(&["hunt", path]).stdout).unwrap();
    assert!(
        table.contains("VERDICT: 1 account has mailbox audit bypass ON at the end of the data"),
        "{table}"
    );
}

#[test]
fn turning_auditing_on_is_not_audit_tampering() {
    let file = archive(&[
        bypass(1, "2024-03-05T10:00:00", "adm@c.com", "bob@c.com", true),
        set_mailbox(
            2,
            "2024-03-05T10:05:00",
            "adm@c.com",
            &[("AuditEnabled", "True")],
        ),
        set_mailbox(
            3,
            "2024-03-05T10:06:00",
            "adm@c.com",
            &[("AuditEnabled", "False")],
        ),
    ]);
    let out = ualhunt(&["hunt", "--format", "json", file.path().to_str().unwrap()]);
    let text = String::from_utf8(out.stdout).unwrap();
    let report: Value = serde_json::from_str(&text).unwrap();
    let mut found = Vec::new();
    fn walk<'a>(v: &'a Value, out: &mut Vec<&'a Value>) {
        match v {
            Value::Object(m) => {
                if let Some(Value::Array(t)) = m.get("tampering") {
                    out.extend(t);
                }
                m.values().for_each(|v| walk(v, out));
            }
            Value::Array(a) => a.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    walk(&report, &mut found);
    let lines: Vec<u64> = found.iter().map(|t| t["line"].as_u64().unwrap()).collect();
    assert_eq!(
        lines,
        vec![3],
        "only -AuditEnabled $false is tampering: {text}"
    );
}

/// A raw OneDrive download (`SharePointFileOperation`) of `file` by mallory at second
/// `k` of one minute, in one session, from one address and application.
fn download(k: u32, file: &str) -> Value {
    json!({
        "CreationTime": format!("2024-05-01T10:00:{k:02}"),
        "Id": format!("20000000-0000-0000-0000-{k:012}"),
        "Operation": "FileDownloaded", "RecordType": 6, "ResultStatus": "Succeeded",
        "Workload": "OneDrive", "UserId": "mallory@contoso.com", "ClientIP": "198.51.100.7",
        "ApplicationId": "11111111-2222-3333-4444-555555555555",
        "AppAccessContext": {"AADSessionId": "session-1"},
        "ObjectId": format!("https://contoso-my.sharepoint.com/personal/m/Documents/{file}"),
        "SourceFileName": file, "SourceFileExtension": "xlsx",
        "SourceRelativeUrl": "personal/m/Documents"
    })
}

#[test]
fn raw_file_operations_give_the_file_names_a_rule_counts() {
    // The OneDrive rule counts distinct `file.name` values, which Elastic's pipeline
    // takes from a file operation's `SourceFileName`: 25 distinct files in 3 minutes
    // alert; 24 distinct (one downloaded twice) do not.
    let Some(rules) = common::corpus("elastic-rules", "OneDrive rule on raw records") else {
        return;
    };
    let rule = rules.join("collection_onedrive_excessive_file_downloads.toml");
    let fired = |records: &[Value]| {
        let file = archive(records);
        let out = ualhunt(&[
            "hunt",
            "--format",
            "json",
            "--rules",
            rule.to_str().unwrap(),
            file.path().to_str().unwrap(),
        ]);
        let report: Value = serde_json::from_slice(&out.stdout).unwrap();
        common::by_rule_findings(&report).len()
    };
    let distinct: Vec<Value> = (0..25)
        .map(|k| download(k, &format!("f{k}.xlsx")))
        .collect();
    assert!(
        fired(&distinct) > 0,
        "25 distinct files downloaded: an alert"
    );
    let mut repeated = distinct.clone();
    repeated[24] = download(24, "f0.xlsx");
    assert_eq!(fired(&repeated), 0, "24 distinct files: no alert");
}
