//! Sigma correlations end to end: chained correlations (a correlation whose rules are
//! correlations) and every condition operator of the specification (`gt`, `gte`, `lt`,
//! `lte`, `eq`, `neq`, ANDed), replayed over archives whatever their order, identical in
//! every engine mode and in a sharded run.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::Value;

const MODES: [&[&str]; 5] = [
    &[],
    &["--threads", "1"],
    &["--threads", "2", "--chunk-size", "64"],
    &["--no-prefilter"],
    &["--threads", "3", "--chunk-size", "200"],
];

/// A raw login record: `who` at `time` (`HH:MM`, 2024-06-03) from `ip`, failed or not.
fn login(id: &str, time: &str, who: &str, ok: bool, ip: &str) -> String {
    let (op, status) = if ok {
        ("UserLoggedIn", "Succeeded")
    } else {
        ("UserLoginFailed", "Failed")
    };
    format!(
        r#"{{"CreationTime":"2024-06-03T{time}:00","Id":"{id}","Operation":"{op}","RecordType":15,"ResultStatus":"{status}","UserId":"{who}","Workload":"AzureActiveDirectory","ClientIP":"{ip}"}}"#
    )
}

/// The detection rules the correlations name.
const LOGINS: &str = "title: Single failed login\nid: f-1\nname: failed_login\nauthor: Tester\n\
    logsource: {product: azure, service: m365}\n\
    detection:\n  s: {Operation: UserLoginFailed}\n  condition: s\n\
    ---\ntitle: Successful login\nid: s-1\nname: successful_login\nauthor: Tester\n\
    logsource: {product: azure, service: m365}\n\
    detection:\n  s: {Operation: UserLoggedIn}\n  condition: s\n";

/// The specification's example of a chain: many failed logins (event_count, at least 3
/// within 10 minutes) followed by a successful login (temporal_ordered, 10 minutes), by
/// user; the outer correlation first, the rules after, as the specification writes it.
fn chain_rules() -> String {
    format!(
        "title: Multiple failed logins followed by a successful login\nid: chain-1\n\
         author: Tester\nlevel: high\n\
         correlation:\n  type: temporal_ordered\n  rules: [multiple_failed_login, successful_login]\n\
         \x20 group-by: [UserId]\n  timespan: 10m\n\
         ---\ntitle: Multiple failed logins\nid: many-1\nname: multiple_failed_login\n\
         author: Tester\n\
         correlation:\n  type: event_count\n  rules: [failed_login]\n  group-by: [UserId]\n\
         \x20 timespan: 10m\n  condition: {{gte: 3}}\n---\n{LOGINS}"
    )
}

/// The chain's records, later ones first: user a fires; b fails twice only; c's success
/// comes 11 minutes after its third failure; d's success comes before its failures.
fn chain_records() -> (Vec<String>, Vec<String>) {
    let ip = "203.0.113.9";
    let later = vec![
        login("a-ok", "10:08", "a@contoso.com", true, ip),
        login("a-f3", "10:04", "a@contoso.com", false, ip),
        login("b-ok", "10:05", "b@contoso.com", true, ip),
        login("c-ok", "10:13", "c@contoso.com", true, ip),
        login("d-f3", "10:02", "d@contoso.com", false, ip),
        login("d-f2", "10:01", "d@contoso.com", false, ip),
    ];
    let earlier = vec![
        login("a-f2", "10:02", "a@contoso.com", false, ip),
        login("a-f1", "10:00", "a@contoso.com", false, ip),
        login("b-f2", "10:01", "b@contoso.com", false, ip),
        login("b-f1", "10:00", "b@contoso.com", false, ip),
        login("c-f3", "10:02", "c@contoso.com", false, ip),
        login("c-f2", "10:01", "c@contoso.com", false, ip),
        login("c-f1", "10:00", "c@contoso.com", false, ip),
        login("d-f1", "10:00", "d@contoso.com", false, ip),
        login("d-ok", "09:59", "d@contoso.com", true, ip),
    ];
    (later, earlier)
}

fn write_lines(path: &Path, lines: &[String]) {
    std::fs::write(path, lines.join("\n") + "\n").unwrap();
}

/// Each mode's (rule id, record id, sequence, step items) of every finding of `rules`
/// over `archives`; every mode must report the same, and the same report as the default
/// mode's. Returns the findings and the default mode's report.
fn findings_in_every_mode(rules: &Path, archives: &[&Path]) -> (BTreeSet<Vec<String>>, Value) {
    let mut first: Option<(BTreeSet<Vec<String>>, Value)> = None;
    for mode in MODES {
        let out = common::hunt_rules_json(rules, mode, archives);
        assert!(
            matches!(out.status.code(), Some(0 | 1)),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let report: Value = serde_json::from_slice(&out.stdout).unwrap();
        let found = rows(&report);
        match &first {
            None => first = Some((found, report)),
            Some((want, report0)) => {
                assert_eq!(&found, want, "mode {mode:?}");
                assert_eq!(
                    (&report0["by_rule"], &report0["actors"]),
                    (&report["by_rule"], &report["actors"]),
                    "mode {mode:?} differs from the default mode"
                );
            }
        }
    }
    first.expect("at least one mode")
}

/// (rule id, record id, the sequence and step items) of every finding of a report.
fn rows(report: &Value) -> BTreeSet<Vec<String>> {
    common::by_rule_findings(report)
        .into_iter()
        .map(|(rule, f)| {
            let mut row = vec![rule.to_string(), f["record_id"].as_str().unwrap().into()];
            for item in ["sequence", "step_1", "step_2"] {
                if let Some(text) = f[item].as_str() {
                    row.push(format!("{item}: {text}"));
                }
            }
            row
        })
        .collect()
}

/// The specification's chain over two archives whose records are out of order: only
/// user a's failures followed by a success fire, with the record where the inner
/// correlation fired and the success as its steps; the near misses (too few failures,
/// the success too late, the success first) do not. The inner correlation and the
/// detection rules report only through it (no `generate: true`).
#[test]
fn a_chained_correlation_fires_on_the_inner_correlations_firings() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("chain.yml");
    std::fs::write(&rules, chain_rules()).unwrap();
    let (later, earlier) = chain_records();
    let one = dir.path().join("1.jsonl");
    let two = dir.path().join("2.jsonl");
    write_lines(&one, &later);
    write_lines(&two, &earlier);
    let (found, report) = findings_in_every_mode(&rules, &[&one, &two]);
    let want: BTreeSet<Vec<String>> = [vec![
        "chain-1".to_string(),
        "a-ok".into(),
        "sequence: temporal_ordered: 2 rules in order by UserId=a@contoso.com within 8m".into(),
        format!(
            "step_1: 2024-06-03T10:04:00Z {}:2 a-f3 (Multiple failed logins)",
            one.display()
        ),
        format!(
            "step_2: 2024-06-03T10:08:00Z {}:1 a-ok (Successful login)",
            one.display()
        ),
    ]]
    .into();
    assert_eq!(found, want);
    let not_run: BTreeSet<&str> = report["not_run"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["id"].as_str().unwrap())
        .collect();
    assert_eq!(not_run, ["f-1", "many-1", "s-1"].into());
    // The same archives the other way round: the same findings.
    let (again, _) = findings_in_every_mode(&rules, &[&two, &one]);
    let ids = |rows: &BTreeSet<Vec<String>>| -> Vec<String> {
        rows.iter().map(|r| r[1].clone()).collect()
    };
    assert_eq!(ids(&again), ids(&found));
    let out = common::ualhunt(&["rules", "--rules", rules.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("named by the correlation rule \"Multiple failed logins followed"),
        "{text}"
    );
}

/// `generate: true` on the outer correlation: the inner one reports its own alerts
/// (every failure of its window) and the successful logins report on their own.
#[test]
fn generate_true_reports_the_rules_a_chain_names_as_well() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("chain.yml");
    std::fs::write(
        &rules,
        chain_rules().replace(
            "  timespan: 10m\n---",
            "  timespan: 10m\n  generate: true\n---",
        ),
    )
    .unwrap();
    let (later, earlier) = chain_records();
    let archive = dir.path().join("a.jsonl");
    write_lines(&archive, &[later, earlier].concat());
    let (found, _) = findings_in_every_mode(&rules, &[&archive]);
    let pairs: BTreeSet<(String, String)> =
        found.iter().map(|r| (r[0].clone(), r[1].clone())).collect();
    let mut want: BTreeSet<(String, String)> = BTreeSet::new();
    want.insert(("chain-1".into(), "a-ok".into()));
    for id in [
        "a-f1", "a-f2", "a-f3", "c-f1", "c-f2", "c-f3", "d-f1", "d-f2", "d-f3",
    ] {
        want.insert(("many-1".into(), id.into()));
    }
    for id in ["a-ok", "b-ok", "c-ok", "d-ok"] {
        want.insert(("s-1".into(), id.into()));
    }
    assert_eq!(pairs, want);
}

/// A sharded run of the chain, its records spread over four archives, merges into the
/// single run's report byte for byte.
#[test]
fn a_sharded_run_of_a_chained_correlation_merges_into_the_single_run() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("chain.yml");
    std::fs::write(&rules, chain_rules()).unwrap();
    let (later, earlier) = chain_records();
    let all = [later, earlier].concat();
    let mut archives: Vec<PathBuf> = Vec::new();
    for k in 0..4 {
        let path = dir.path().join(format!("{k}.jsonl"));
        let lines: Vec<String> = all.iter().skip(k).step_by(4).cloned().collect();
        write_lines(&path, &lines);
        archives.push(path);
    }
    let mut args = vec!["--no-context", "--rules", rules.to_str().unwrap()];
    args.extend(archives.iter().map(|p| p.to_str().unwrap()));
    let report = common::shards_merge_into_single_run(dir.path(), 3, &args);
    assert_eq!(common::by_rule_findings(&report).len(), 1);
}

/// Users 1 to 4 fail to log in 1, 2, 3 and 4 times within 10 minutes (each from another
/// address), an hour apart; user 5 fails 3 times spread over 30 minutes.
fn bursts() -> Vec<String> {
    let mut out = Vec::new();
    for user in 1..=4u32 {
        for n in 0..user {
            out.push(login(
                &format!("u{user}-{n}"),
                &format!("{:02}:{:02}", 9 + user, n * 2),
                &format!("u{user}@contoso.com"),
                false,
                &format!("198.51.100.{n}"),
            ));
        }
    }
    for n in 0..3u32 {
        out.push(login(
            &format!("u5-{n}"),
            &format!("15:{:02}", n * 15),
            "u5@contoso.com",
            false,
            "198.51.100.1",
        ));
    }
    // Input order is not time order.
    out.reverse();
    out
}

/// The users whose failed logins alert under each condition.
fn alerting_users(dir: &Path, archive: &Path, correlation: &str, modes: &[&[&str]]) -> Vec<u32> {
    let rules = dir.join("count.yml");
    std::fs::write(&rules, format!("{LOGINS}---\n{correlation}")).unwrap();
    let mut users: Option<Vec<u32>> = None;
    for mode in modes {
        let out = common::hunt_rules_json(&rules, mode, &[archive]);
        let report: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|_| panic!("{correlation}: {}", String::from_utf8_lossy(&out.stderr)));
        let mut records: Vec<String> = common::by_rule_findings(&report)
            .into_iter()
            .filter(|(rule, _)| *rule == "cnt")
            .map(|(_, f)| f["record_id"].as_str().unwrap().to_string())
            .collect();
        records.sort();
        let mut found: Vec<u32> = records
            .iter()
            .filter_map(|r| r[1..].split('-').next()?.parse().ok())
            .collect();
        found.dedup();
        // An alert holds every failure of its user's burst.
        for u in &found {
            let held = records
                .iter()
                .filter(|r| r.starts_with(&format!("u{u}-")))
                .count();
            let burst = if *u == 5 { 1 } else { *u as usize };
            assert!(held >= burst, "{correlation}: user {u}: {records:?}");
        }
        match &users {
            None => users = Some(found),
            Some(want) => assert_eq!(&found, want, "{correlation} in mode {mode:?}"),
        }
    }
    users.unwrap_or_default()
}

/// Every operator, and a range, on `event_count` and `value_count`: each alerts on the
/// users whose burst satisfies it and on no near miss (one count off on either side; a
/// burst with too many never alerts through its tail; user 5's failures are spread
/// beyond the timespan, so each of its windows holds one).
#[test]
fn every_condition_operator_alerts_on_its_counts_and_not_one_off() {
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("bursts.jsonl");
    write_lines(&archive, &bursts());
    let event_count = |condition: &str| {
        format!(
            "title: Counted\nid: cnt\ncorrelation:\n  type: event_count\n  rules: [failed_login]\n\
             \x20 group-by: [UserId]\n  timespan: 10m\n  condition: {condition}\n"
        )
    };
    let value_count = |condition: &str| {
        format!(
            "title: Counted\nid: cnt\ncorrelation:\n  type: value_count\n  rules: [failed_login]\n\
             \x20 group-by: [UserId]\n  timespan: 10m\n  condition: {{field: ClientIP, {condition}}}\n"
        )
    };
    let cases: [(&str, &[u32]); 7] = [
        ("{gte: 3}", &[3, 4]),
        ("{gt: 3}", &[4]),
        ("{lt: 3}", &[1, 2, 5]),
        ("{lte: 3}", &[1, 2, 3, 5]),
        ("{eq: 3}", &[3]),
        ("{neq: 3}", &[1, 2, 4, 5]),
        ("{gt: 1, lte: 3}", &[2, 3]),
    ];
    let default: &[&[&str]] = &[&[]];
    for (condition, want) in cases {
        let got = alerting_users(dir.path(), &archive, &event_count(condition), default);
        assert_eq!(got, want, "event_count {condition}");
        let inner = condition.trim_start_matches('{').trim_end_matches('}');
        let got = alerting_users(dir.path(), &archive, &value_count(inner), default);
        assert_eq!(got, want, "value_count {inner}");
    }
    // The same in every engine mode.
    let got = alerting_users(dir.path(), &archive, &event_count("{lt: 3}"), &MODES);
    assert_eq!(got, [1, 2, 5]);
}

/// An `event_count` of another `event_count`'s firings: bursts of failed logins (2 within
/// 5 minutes) twice within the hour fire once, at the second burst; a third burst two
/// hours later is alone.
#[test]
fn an_event_count_counts_the_firings_of_the_correlation_it_names() {
    let dir = tempfile::tempdir().unwrap();
    let rules = bursts_of_bursts(dir.path());
    let ip = "203.0.113.9";
    let lines: Vec<String> = [
        "12:01", "10:22", "10:21", "12:00", "10:20", "10:01", "10:00",
    ]
    .iter()
    .map(|t| login(&format!("x-{t}"), t, "x@contoso.com", false, ip))
    .collect();
    let archive = dir.path().join("a.jsonl");
    write_lines(&archive, &lines);
    let (found, _) = findings_in_every_mode(&rules, &[&archive]);
    let want: BTreeSet<Vec<String>> = [vec![
        "bursts".to_string(),
        "x-10:22".into(),
        "sequence: event_count: 2 events (at least 2) by UserId=x@contoso.com within 22m".into(),
        format!(
            "step_1: 2024-06-03T10:22:00Z {}:2 x-10:22 (Burst)",
            archive.display()
        ),
    ]]
    .into();
    assert_eq!(found, want);
}

/// Writes the failed-login rule, a `burst` correlation (two failures of a user within
/// 5 minutes) and a `bursts` correlation counting two bursts within an hour.
fn bursts_of_bursts(dir: &std::path::Path) -> std::path::PathBuf {
    let rules = dir.join("bursts.yml");
    std::fs::write(
        &rules,
        format!(
            "{LOGINS}---\ntitle: Burst\nid: burst\nname: burst\ncorrelation: {{type: event_count, \
             rules: [failed_login], group-by: [UserId], timespan: 5m, condition: {{gte: 2}}}}\n\
             ---\ntitle: Repeated bursts\nid: bursts\ncorrelation: {{type: event_count, \
             rules: [burst], group-by: [UserId], timespan: 1h, condition: {{gte: 2}}}}\n"
        ),
    )
    .unwrap();
    rules
}

/// A firing whose span is not whole minutes says how long it took as a human reads it
/// (`56m58s`, not `3418s`), as every span in the reports is written: two bursts, the
/// first failure 56 minutes 58 seconds before the last.
#[test]
fn a_span_of_minutes_and_seconds_is_written_in_both() {
    let dir = tempfile::tempdir().unwrap();
    let rules = bursts_of_bursts(dir.path());
    let ip = "203.0.113.9";
    let lines: Vec<String> = ["10:00:00", "10:00:30", "10:56:30", "10:56:58"]
        .iter()
        .map(|t| {
            let id = format!("y-{t}");
            let line = login(&id, &t[..5], "y@contoso.com", false, ip);
            line.replace(&format!("T{}:00", &t[..5]), &format!("T{t}"))
        })
        .collect();
    let archive = dir.path().join("a.jsonl");
    write_lines(&archive, &lines);
    let (found, _) = findings_in_every_mode(&rules, &[&archive]);
    let texts: Vec<&String> = found
        .iter()
        .filter(|f| f[0] == "bursts")
        .map(|f| &f[2])
        .collect();
    assert_eq!(
        texts,
        ["sequence: event_count: 2 events (at least 2) by UserId=y@contoso.com within 56m58s"]
    );
}
