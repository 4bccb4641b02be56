//! Elastic's `new_terms` and `threshold` rules, replayed offline over their matches'
//! times: the published rule files (read from `../shared/corpus/elastic-rules/`, not
//! copied) over archives written here, in every engine mode.

mod common;

use std::path::PathBuf;

use common::ualhunt;
use serde_json::{Value, json};

const MODES: [&[&str]; 4] = [
    &[],
    &["--threads", "1"],
    &["--threads", "2", "--chunk-size", "64"],
    &["--no-prefilter"],
];

fn rule_file(name: &str) -> Option<PathBuf> {
    let path = common::corpus("elastic-rules", "the alerting rules' checks")?.join(name);
    if path.is_file() {
        Some(path)
    } else {
        common::skipped(
            "the alerting rules' checks",
            &format!("{} is absent", path.display()),
        );
        None
    }
}

const SPRAY: &str = "credential_access_microsoft_365_potential_password_spraying_attack.toml";
const ROPC: &str = "initial_access_identity_ropc_grant_via_legacy_authenticated_client.toml";

/// A raw Entra ID sign-in record (`AzureActiveDirectoryStsLogon`) at `minute` minutes
/// after 2024-05-01T00:00:00Z.
fn sign_in(id: &str, minute: i64, operation: &str, user: &str, ip: &str, agent: &str) -> Value {
    let t = chrono::DateTime::from_timestamp(1_714_521_600 + minute * 60, 0).unwrap();
    json!({
        "CreationTime": t.format("%Y-%m-%dT%H:%M:%S").to_string(),
        "Id": id,
        "Operation": operation,
        "OrganizationId": "3f2a9c1e-7b4d-4e8a-9c6f-2d1b5a8e7c30",
        "RecordType": 15,
        "ResultStatus": if operation == "UserLoggedIn" { "Success" } else { "Failed" },
        "UserKey": "10032001A1B2C3D4",
        "UserType": 0,
        "Version": 1,
        "Workload": "AzureActiveDirectory",
        "ClientIP": ip,
        "ObjectId": "00000002-0000-0ff1-ce00-000000000000",
        "UserId": user,
        "ExtendedProperties": [{"Name": "UserAgent", "Value": agent}],
    })
}

fn write_archive(records: &[Value]) -> tempfile::NamedTempFile {
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

/// The JSON report of `hunt` over `archive` with `rules`, the same in every mode.
fn hunt(rules: &[&PathBuf], archive: &std::path::Path, extra: &[&str]) -> Value {
    let mut first: Option<Value> = None;
    for mode in MODES {
        let mut args = vec!["hunt", "--format", "json", "--no-context"];
        for r in rules {
            args.extend(["--rules", r.to_str().unwrap()]);
        }
        args.extend_from_slice(extra);
        args.extend_from_slice(mode);
        args.push(archive.to_str().unwrap());
        let out = ualhunt(&args);
        assert!(
            matches!(out.status.code(), Some(0 | 1)),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let report: Value = serde_json::from_slice(&out.stdout).unwrap();
        match &first {
            None => first = Some(report),
            Some(f) => {
                assert_eq!(f["by_rule"], report["by_rule"], "mode {mode:?}");
                assert_eq!(f["actors"], report["actors"], "mode {mode:?}");
            }
        }
    }
    first.unwrap()
}

/// Rule id -> (record id, alert text) of its findings.
fn alerts(report: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (_, f) in common::by_rule_findings(report) {
        out.push((
            f["record_id"].as_str().unwrap().to_string(),
            f["alert"].as_str().unwrap_or("").to_string(),
        ));
    }
    out.sort();
    out
}

#[test]
fn password_spraying_alerts_on_25_failures_from_one_address_within_30_minutes() {
    let Some(spray) = rule_file(SPRAY) else {
        return;
    };
    let mut records = Vec::new();
    // 203.0.113.7: 27 failures a minute apart, all within 30 minutes: one alert of 27.
    for i in 0..27 {
        let user = format!("user{i}@contoso.com");
        records.push(sign_in(
            &format!("a{i:02}"),
            i,
            "UserLoginFailed",
            &user,
            "203.0.113.7",
            "x",
        ));
    }
    // 198.51.100.9: 24 within 30 minutes: none.
    for i in 0..24 {
        let user = format!("user{i}@contoso.com");
        records.push(sign_in(
            &format!("b{i:02}"),
            100 + i,
            "UserLoginFailed",
            &user,
            "198.51.100.9",
            "x",
        ));
    }
    // 192.0.2.4: 25 spread over two hours: none.
    for i in 0..25 {
        let user = format!("user{i}@contoso.com");
        records.push(sign_in(
            &format!("c{i:02}"),
            300 + 5 * i,
            "UserLoginFailed",
            &user,
            "192.0.2.4",
            "x",
        ));
    }
    // Successful sign-ins are not the rule's matches.
    for i in 0..30 {
        records.push(sign_in(
            &format!("d{i:02}"),
            600 + i,
            "UserLoggedIn",
            "eve@contoso.com",
            "192.0.2.99",
            "x",
        ));
    }
    let archive = write_archive(&records);
    let report = hunt(&[&spray], archive.path(), &[]);
    let found = alerts(&report);
    let ids: Vec<&str> = found.iter().map(|(id, _)| id.as_str()).collect();
    let want: Vec<String> = (0..27).map(|i| format!("a{i:02}")).collect();
    assert_eq!(ids, want);
    assert_eq!(
        found[0].1,
        "threshold 25: 27 matches with source.ip=203.0.113.7 within 30m \
         (2024-05-01T00:00:00Z to 2024-05-01T00:26:00Z)"
    );
    let rule = &report["rules"][0];
    assert_eq!(rule["held_back"], 49);
    assert_eq!(rule["alerting"]["kind"], "threshold");
    assert_eq!(rule["alerting"]["value"], 25);
    assert_eq!(report["scan"]["held_back"], 49);
}

#[test]
fn a_new_terms_rule_alerts_on_a_user_not_seen_in_its_history_window() {
    let Some(ropc) = rule_file(ROPC) else { return };
    let day = 24 * 60;
    let ropc_sign_in = |id: &str, minute: i64, user: &str| {
        sign_in(id, minute, "UserLoggedIn", user, "203.0.113.50", "BAV2ROPC")
    };
    let records = vec![
        ropc_sign_in("alice-0", 0, "alice@contoso.com"),
        ropc_sign_in("alice-3", 3 * day, "alice@contoso.com"),
        ropc_sign_in("bob-5", 5 * day, "bob@contoso.com"),
        ropc_sign_in("alice-12", 12 * day, "alice@contoso.com"),
        // Not the rule's: another client.
        sign_in(
            "carol-13",
            13 * day,
            "UserLoggedIn",
            "carol@contoso.com",
            "203.0.113.50",
            "Mozilla/5.0",
        ),
    ];
    let archive = write_archive(&records);
    let report = hunt(&[&ropc], archive.path(), &[]);
    let found = alerts(&report);
    assert_eq!(
        found,
        vec![
            (
                "alice-0".to_string(),
                "new terms o365.audit.UserId=alice@contoso.com: first in the archive, whose \
                 records begin 0s before (history 7d: incomplete)"
                    .to_string()
            ),
            (
                "alice-12".to_string(),
                "new terms o365.audit.UserId=alice@contoso.com: last seen 9d before (history 7d)"
                    .to_string()
            ),
            (
                "bob-5".to_string(),
                "new terms o365.audit.UserId=bob@contoso.com: first in the archive, whose \
                 records begin 5d before (history 7d: incomplete)"
                    .to_string()
            ),
        ]
    );
    assert_eq!(report["rules"][0]["held_back"], 1);

    // A window keeps the history before it: alice's sign-in on day 12 is still new (and
    // only it is inside the window), her day-3 one is still held back.
    let report = hunt(
        &[&ropc],
        archive.path(),
        &["--since", "2024-05-10T00:00:00Z"],
    );
    let found = alerts(&report);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].0, "alice-12");
    assert_eq!(report["scan"]["outside_window"], 2);
}

#[test]
fn alerting_rules_are_listed_with_how_they_alert() {
    let (Some(spray), Some(ropc)) = (rule_file(SPRAY), rule_file(ROPC)) else {
        return;
    };
    let out = ualhunt(&[
        "rules",
        "--rules",
        spray.to_str().unwrap(),
        "--rules",
        ropc.to_str().unwrap(),
    ]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(
            "alerting:          threshold: 25 matches with the same source.ip within 30m"
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "alerting:          new terms: a value of o365.audit.UserId not seen in the 7d before"
        ),
        "{text}"
    );
    assert!(text.contains("2 rules run, 0 not run"), "{text}");
}
