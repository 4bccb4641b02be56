//! What a responder reads after a hunt with a rule pack: each bypassed account's next
//! steps in the table (commands naming the account, quoted for PowerShell), and
//! building-block rules (Elastic's `building_block_type`) marked in every report and
//! kept out of the exit status unless `--building-blocks`.
//!
//! The fixtures (`tests/fixtures/responder/`): the bypass rule with a guide, a
//! building-block sign-in signal and an inbox-rule rule with a hostile guide, and an
//! archive of one bypass change, two sign-ins and three inbox rules.

mod common;

use common::ualhunt;

const RULES: &str = "tests/fixtures/responder/rules";
const PACK: &str = "tests/fixtures/responder/pack.jsonl";
const SIGNALS: &str = "tests/fixtures/responder/signals_only.jsonl";

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8(out.stdout.clone()).unwrap()
}

#[test]
fn table_gives_each_bypassed_account_its_next_step() {
    let out = ualhunt(&["hunt", "--quiet", "--wide", "--rules", RULES, PACK]);
    assert_eq!(out.status.code(), Some(0));
    let table = stdout(&out);
    let next: Vec<&str> = table
        .lines()
        .filter(|l| l.trim_start().starts_with("next: confirm it is still on"))
        .collect();
    assert_eq!(next.len(), 1, "{table}");
    // The name as recorded, its quote doubled: the command names that mailbox only.
    for part in [
        "Get-MailboxAuditBypassAssociation -Identity 'o''brien@contoso.com'",
        "Set-MailboxAuditBypassAssociation -Identity 'o''brien@contoso.com' -AuditBypassEnabled $false",
        "review what it did unaudited, 2024-03-01T09:00:00Z – now",
    ] {
        assert!(next[0].contains(part), "{part:?} not in {:?}", next[0]);
    }
    // The other rules: a pointer to their guide.
    assert!(
        table.contains("next: follow each rule's investigation guide")
            && table.contains("M365 Inbox Rule Created"),
        "{table}"
    );
}

#[test]
fn table_next_step_keeps_a_hostile_name_inert() {
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("hostile.jsonl");
    let target = "x'\u{2019}\u{1b}[31m\u{202e}@contoso.com";
    let record = serde_json::json!({
        "CreationTime": "2024-03-01T09:00:00", "Id": "h1",
        "Operation": "Set-MailboxAuditBypassAssociation", "RecordType": 1,
        "ResultStatus": "True", "UserType": 2, "Workload": "Exchange",
        "UserId": "admin@contoso.com", "ObjectId": target,
        "Parameters": [{"Name": "Identity", "Value": target},
                       {"Name": "AuditBypassEnabled", "Value": "True"}]
    });
    std::fs::write(&archive, format!("{record}\n")).unwrap();
    let out = ualhunt(&["hunt", "--quiet", "--wide", archive.to_str().unwrap()]);
    let table = stdout(&out);
    assert!(!table.contains('\u{1b}') && !table.contains('\u{202e}'));
    assert!(
        table.contains(
            r"-Identity 'x''’’\u{1b}[31m\u{202e}@contoso.com' -AuditBypassEnabled $false"
        ),
        "{table}"
    );
}

#[test]
fn building_blocks_are_marked_and_do_not_make_the_exit_status() {
    // Only building-block findings: reported and marked, but no finding for the status.
    let out = ualhunt(&["hunt", "--quiet", "--wide", "--rules", RULES, SIGNALS]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let table = stdout(&out);
    assert!(
        table.contains("M365 Sign-in Signal [building block]"),
        "{table}"
    );
    assert!(
        table.contains("2 of building-block rules, not counted (--building-blocks)"),
        "{table}"
    );
    let counted = ualhunt(&[
        "hunt",
        "--quiet",
        "--building-blocks",
        "--rules",
        RULES,
        SIGNALS,
    ]);
    assert_eq!(counted.status.code(), Some(0));

    // JSON: the rule carries its mark, in `rules` and `by_rule`, and each NDJSON line.
    let json = ualhunt(&[
        "hunt", "--quiet", "--format", "json", "--rules", RULES, PACK,
    ]);
    let doc: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    let marked = |list: &serde_json::Value, key: &str| -> Vec<String> {
        list.as_array()
            .unwrap()
            .iter()
            .filter(|r| r["building_block"] == "default")
            .map(|r| r[key].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(marked(&doc["rules"], "name"), ["M365 Sign-in Signal"]);
    assert_eq!(marked(&doc["by_rule"], "name"), ["M365 Sign-in Signal"]);
    // The guide stays out of the JSON's findings (and out of its rules: the HTML has it).
    assert!(!String::from_utf8_lossy(&json.stdout).contains("alert(1)"));
    let ndjson = ualhunt(&[
        "hunt", "--quiet", "--format", "ndjson", "--rules", RULES, PACK,
    ]);
    let lines: Vec<serde_json::Value> = String::from_utf8(ndjson.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let marks: Vec<bool> = lines
        .iter()
        .map(|l| l["rule"]["building_block"] == "default")
        .collect();
    assert_eq!(marks.iter().filter(|m| **m).count(), 2, "{lines:#?}");

    // ECS: the signal's documents are of kind `signal` (not promoted to alerts) with a
    // `building_block` label; alerts again when building blocks are counted.
    let ecs_kinds = |extra: &[&str]| -> Vec<(String, String, String)> {
        let mut args = vec!["hunt", "--quiet", "--format", "ecs", "--rules", RULES];
        args.extend_from_slice(extra);
        args.push(PACK);
        let out = ualhunt(&args);
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .filter(|d| d.get("create").is_none())
            .map(|d| {
                let text = |v: &serde_json::Value| v.as_str().unwrap_or("").to_string();
                (
                    text(&d["rule"]["name"]),
                    text(&d["event"]["kind"]),
                    text(&d["labels"]["building_block"]),
                )
            })
            .collect()
    };
    for (extra, signal_kind) in [(&[][..], "signal"), (&["--building-blocks"][..], "alert")] {
        let docs = ecs_kinds(extra);
        assert!(
            docs.iter().any(|(n, _, _)| n == "M365 Sign-in Signal"),
            "{docs:?}"
        );
        for (name, kind, mark) in &docs {
            if name == "M365 Sign-in Signal" {
                assert_eq!((kind.as_str(), mark.as_str()), (signal_kind, "default"));
            } else {
                assert_ne!(kind, "signal", "{name}");
                assert_eq!(mark, "", "{name}");
            }
        }
    }

    // CSV: a building_block column, filled for the signal's rows only.
    let csv = ualhunt(&["hunt", "--quiet", "--format", "csv", "--rules", RULES, PACK]);
    let mut reader = csv::Reader::from_reader(&csv.stdout[..]);
    let header = reader.headers().unwrap().clone();
    let col = header.iter().position(|h| h == "building_block").unwrap();
    let name = header.iter().position(|h| h == "rule_name").unwrap();
    for row in reader.records() {
        let row = row.unwrap();
        let signal = &row[name] == "M365 Sign-in Signal";
        assert_eq!(&row[col], if signal { "default" } else { "" }, "{row:?}");
    }
}

#[test]
fn rules_command_marks_building_blocks_and_guides() {
    let out = ualhunt(&["rules", "--rules", RULES]);
    assert!(out.status.success());
    let text = stdout(&out);
    assert!(
        text.contains("M365 Sign-in Signal  [building block]"),
        "{text}"
    );
    assert_eq!(
        text.matches("  building block:    default").count(),
        1,
        "{text}"
    );
    assert_eq!(
        text.matches("  guide:             investigation guide")
            .count(),
        2,
        "{text}"
    );
}

/// Every rule of Elastic's pack that is a building block is marked as one, and no other.
#[test]
fn elastic_pack_building_blocks_are_the_marked_ones() {
    let dir = common::root().join("../shared/corpus/elastic-rules");
    if !dir.is_dir() {
        common::skipped(
            "Elastic's building-block rules",
            "../shared/corpus/elastic-rules absent",
        );
        return;
    }
    let mut expected: Vec<String> = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let doc: toml::Table = match toml::from_str(&text) {
            Ok(d) => d,
            Err(_) => continue,
        };
        let rule = &doc["rule"];
        if rule.get("building_block_type").is_some() {
            expected.push(rule["name"].as_str().unwrap().to_string());
        }
    }
    expected.sort();
    assert!(!expected.is_empty());
    let out = ualhunt(&["rules", "--rules", dir.to_str().unwrap()]);
    let mut marked: Vec<String> = stdout(&out)
        .lines()
        .filter_map(|l| l.strip_suffix("  [building block]"))
        .map(String::from)
        .collect();
    marked.sort();
    assert_eq!(marked, expected);
}

/// A sharded run's merge says the same: its partials keep each rule's building-block
/// mark, and `merge --building-blocks` counts them as `hunt --building-blocks` does.
#[test]
fn merged_shards_keep_guides_and_building_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let parts = common::shard_partials(dir.path(), 2, &["--rules", RULES, SIGNALS]);
    let merge = |extra: &[&str]| common::merge(&parts, extra);
    assert_eq!(merge(&[]).status.code(), Some(1));
    assert_eq!(merge(&["--building-blocks"]).status.code(), Some(0));
    let json = merge(&["--format", "json"]);
    let doc: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(doc["by_rule"][0]["building_block"], "default");
}
