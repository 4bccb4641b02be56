//! Sigma's metric correlations (specification 2.1): `value_sum`, `value_avg` and
//! `value_percentile`, replayed over archives whatever their order, each case beside its
//! near miss, in a chain, identical in every engine mode and in a sharded run; and the
//! ones that cannot run, said.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

const MODES: [&[&str]; 5] = [
    &[],
    &["--threads", "1"],
    &["--threads", "2", "--chunk-size", "64"],
    &["--no-prefilter"],
    &["--threads", "3", "--chunk-size", "200"],
];

/// A download by `who` at `time` (`HH:MM`, 2024-06-03) of `size`, a JSON value written
/// as given (`1200`, `"500"`, `null`), or no size at all (`None`).
fn download(id: &str, time: &str, who: &str, size: Option<&str>) -> String {
    let size = size
        .map(|s| format!(r#","FileSizeBytes":{s}"#))
        .unwrap_or_default();
    format!(
        r#"{{"CreationTime":"2024-06-03T{time}:00","Id":"{id}","Operation":"FileDownloaded","RecordType":6,"UserId":"{who}","Workload":"SharePoint","ClientIP":"203.0.113.9"{size}}}"#
    )
}

/// A successful login by `who` at `time`.
fn login(id: &str, time: &str, who: &str) -> String {
    format!(
        r#"{{"CreationTime":"2024-06-03T{time}:00","Id":"{id}","Operation":"UserLoggedIn","RecordType":15,"ResultStatus":"Succeeded","UserId":"{who}","Workload":"AzureActiveDirectory","ClientIP":"203.0.113.9"}}"#
    )
}

/// The detection rules the correlations name.
const RULES: &str = "title: File downloaded\nid: d-1\nname: download\nauthor: Tester\n\
    logsource: {product: azure, service: m365}\n\
    detection:\n  s: {Operation: FileDownloaded}\n  condition: s\n\
    ---\ntitle: Successful login\nid: s-1\nname: login\nauthor: Tester\n\
    logsource: {product: azure, service: m365}\n\
    detection:\n  s: {Operation: UserLoggedIn}\n  condition: s\n";

/// A metric correlation `m-1` of the downloads by user within 1 hour.
fn metric(kind: &str, condition: &str) -> String {
    format!(
        "title: Metric\nid: m-1\nname: metric\nauthor: Tester\ncorrelation:\n  type: {kind}\n\
         \x20 rules: [download]\n  group-by: [UserId]\n  timespan: 1h\n\
         \x20 condition: {{field: FileSizeBytes, {condition}}}\n"
    )
}

/// Per user, downloads within the hour unless said: `a` 600 + 500; `b` 600 + 400 (a sum
/// of exactly 1000); `c` 600 + 500 61 minutes apart; `d` 600 + "500" (a number written
/// as text); `e` 600, a download without a size, one of `null` and one of `"big"`; `f`
/// 100, 200, 300, 400, 1000 (a skewed spread: average 400, median 300, 95th 1000).
fn downloads() -> Vec<String> {
    let mut out = vec![
        download("a-1", "10:00", "a", Some("600")),
        download("a-2", "10:30", "a", Some("500")),
        download("b-1", "10:00", "b", Some("600")),
        download("b-2", "10:30", "b", Some("400")),
        download("c-1", "10:00", "c", Some("600")),
        download("c-2", "11:01", "c", Some("500")),
        download("d-1", "10:00", "d", Some("600")),
        download("d-2", "10:30", "d", Some(r#""500""#)),
        download("e-1", "10:00", "e", Some("600")),
        download("e-2", "10:10", "e", None),
        download("e-3", "10:20", "e", Some("null")),
        download("e-4", "10:30", "e", Some(r#""big""#)),
    ];
    for (n, size) in [100, 200, 300, 400, 1000].iter().enumerate() {
        out.push(download(
            &format!("f-{n}"),
            &format!("10:{:02}", n * 5),
            "f",
            Some(&size.to_string()),
        ));
    }
    // Input order is not time order.
    out.reverse();
    out
}

fn write_lines(path: &Path, lines: &[String]) {
    std::fs::write(path, lines.join("\n") + "\n").unwrap();
}

/// Per user, the `sequence` items of the correlation `m-1`'s findings, the same in every
/// mode given; and the report of the first mode.
fn fired(dir: &Path, rules: &str, archives: &[&Path], modes: &[&[&str]]) -> (Fired, Value) {
    let path = dir.join("metric.yml");
    std::fs::write(&path, rules).unwrap();
    let mut first: Option<(Fired, Value)> = None;
    for mode in modes {
        let out = common::hunt_rules_json(&path, mode, archives);
        assert!(
            matches!(out.status.code(), Some(0 | 1)),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let report: Value = serde_json::from_slice(&out.stdout).unwrap();
        let mut found: Fired = BTreeMap::new();
        for (rule, f) in common::by_rule_findings(&report) {
            if rule != "m-1" {
                continue;
            }
            let id = f["record_id"].as_str().unwrap();
            let user = id.split('-').next().unwrap().to_string();
            let what = f["sequence"].as_str().unwrap_or_default().to_string();
            found.entry(user).or_default().push(what);
        }
        match &first {
            None => first = Some((found, report)),
            Some((want, _)) => assert_eq!(&found, want, "{rules} in mode {mode:?}"),
        }
    }
    first.expect("a mode")
}

type Fired = BTreeMap<String, Vec<String>>;

/// The users a correlation fires for.
fn users(found: &Fired) -> Vec<&str> {
    found.keys().map(String::as_str).collect()
}

/// Each metric with conditions from the specification's examples, each beside its near
/// miss (the threshold at the computed value, one window too long, a value that is no
/// number): a match without the field or with a value that is no number is in the window
/// but adds nothing; a number written as text counts.
#[test]
fn each_metric_fires_on_what_it_computes_and_not_on_its_near_miss() {
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("downloads.jsonl");
    write_lines(&archive, &downloads());
    let default: &[&[&str]] = &[&[]];
    let cases: [(&str, &str, &[&str]); 17] = [
        // Sums: a 1100, b 1000, c two windows of 600 and 500, d 1100, e 600, f 2000.
        ("value_sum", "gt: 1000", &["a", "d", "f"]),
        ("value_sum", "gte: 1000", &["a", "b", "d", "f"]),
        ("value_sum", "gt: 1100", &["f"]),
        // At most 600: c's first window (600) and e's; a burst above closes its window.
        ("value_sum", "lte: 600", &["c", "e"]),
        // Averages: a 550, b 500, c 600 then 500, d 550, e 600, f 400; an average below
        // the condition moves the anchor on: f's window from 10:10 (300, 400, 1000)
        // averages 566.67, b's from 10:30 holds 400.
        ("value_avg", "gt: 500", &["a", "c", "d", "e", "f"]),
        ("value_avg", "gte: 550, lt: 600", &["a", "d", "f"]),
        ("value_avg", "gt: 550.5", &["c", "e", "f"]),
        // f's last window holds 1000 alone.
        ("value_avg", "gte: 1000", &["f"]),
        ("value_avg", "gt: 1000", &[]),
        // An average above `eq` closes its window: only f's first is exactly 400.
        ("value_avg", "eq: 400", &["f"]),
        // Percentiles (nearest rank): f's median is 300, its 80th 400, its 81st 1000; a
        // pair's 50th is its smaller number, its 51st its larger.
        ("value_percentile", "percentile: 50, eq: 300", &["f"]),
        ("value_percentile", "percentile: 80, lte: 400", &["f"]),
        ("value_percentile", "percentile: 81, lte: 400", &[]),
        ("value_percentile", "percentile: 81, gte: 1000", &["f"]),
        // (c's later window holds 500 alone.)
        (
            "value_percentile",
            "percentile: 50, eq: 500",
            &["a", "c", "d"],
        ),
        ("value_percentile", "percentile: 51, eq: 500", &["c"]),
        // The 0th is the smallest: f's window from 10:20 holds 1000 alone.
        (
            "value_percentile",
            "percentile: 0, gte: 600",
            &["c", "e", "f"],
        ),
    ];
    for (kind, condition, want) in cases {
        let rules = format!("{RULES}---\n{}", metric(kind, condition));
        let (found, _) = fired(dir.path(), &rules, &[&archive], default);
        assert_eq!(users(&found), want, "{kind} {condition}: {found:?}");
    }
    // What was computed, in the `sequence` item.
    let rules = format!("{RULES}---\n{}", metric("value_sum", "gt: 1000"));
    let (found, report) = fired(dir.path(), &rules, &[&archive], &MODES);
    assert_eq!(
        found["a"],
        ["value_sum: 1100 of FileSizeBytes (above 1000) by UserId=a within 30m"]
    );
    assert_eq!(
        found["f"],
        ["value_sum: 2000 of FileSizeBytes (above 1000) by UserId=f within 20m"]
    );
    // The finding is the latest match of the window, with it every match held.
    let a: Vec<&str> = common::by_rule_findings(&report)
        .into_iter()
        .filter(|(rule, f)| *rule == "m-1" && f["sequence"].as_str().unwrap().contains("=a "))
        .map(|(_, f)| f["record_id"].as_str().unwrap())
        .collect();
    assert_eq!(a, ["a-2"]);
    let rules = format!(
        "{RULES}---\n{}",
        metric("value_percentile", "percentile: 95, gte: 1000")
    );
    let (found, _) = fired(dir.path(), &rules, &[&archive], &MODES);
    assert_eq!(
        found["f"],
        [
            "value_percentile: 1000 at percentile 95 of FileSizeBytes (at least 1000) by UserId=f \
          within 20m"
        ]
    );
    let rules = format!("{RULES}---\n{}", metric("value_avg", "gt: 500"));
    let (found, _) = fired(dir.path(), &rules, &[&archive], &MODES);
    // e: 600 over its one number; the three matches without one are in the window.
    assert_eq!(
        found["e"],
        ["value_avg: 600 of FileSizeBytes (above 500) by UserId=e within 30m"]
    );
}

/// A chain naming a metric correlation: a large download total (value_sum above 1000
/// within the hour) followed by a login within 30 minutes; the near misses: a total of
/// exactly 1000, and a login 31 minutes after.
#[test]
fn a_chain_names_a_metric_correlation() {
    let dir = tempfile::tempdir().unwrap();
    let mut lines = downloads();
    lines.push(login("a-ok", "10:45", "a"));
    lines.push(login("b-ok", "10:45", "b"));
    lines.push(login("d-ok", "11:01", "d"));
    let archive = dir.path().join("a.jsonl");
    write_lines(&archive, &lines);
    let rules = format!(
        "title: Large downloads then a login\nid: m-1\nauthor: Tester\ncorrelation:\n\
         \x20 type: temporal_ordered\n  rules: [metric, login]\n  group-by: [UserId]\n\
         \x20 timespan: 30m\n---\n{}---\n{RULES}",
        metric("value_sum", "gt: 1000").replace("id: m-1", "id: m-inner")
    );
    let (found, report) = fired(dir.path(), &rules, &[&archive], &MODES);
    assert_eq!(
        found,
        [(
            "a".to_string(),
            vec!["temporal_ordered: 2 rules in order by UserId=a within 45m".to_string()]
        )]
        .into()
    );
    let step = common::by_rule_findings(&report)
        .into_iter()
        .find(|(rule, _)| *rule == "m-1")
        .map(|(_, f)| f["step_1"].as_str().unwrap().to_string())
        .unwrap();
    assert!(step.ends_with(" a-2 (Metric)"), "{step}");
}

/// A sharded run of each metric, the downloads spread over four archives, merges into
/// the single run's report byte for byte.
#[test]
fn a_sharded_run_of_each_metric_merges_into_the_single_run() {
    let dir = tempfile::tempdir().unwrap();
    let all = downloads();
    let mut archives: Vec<PathBuf> = Vec::new();
    for k in 0..4 {
        let path = dir.path().join(format!("{k}.jsonl"));
        let lines: Vec<String> = all.iter().skip(k).step_by(4).cloned().collect();
        write_lines(&path, &lines);
        archives.push(path);
    }
    for (kind, condition, fires) in [
        ("value_sum", "gt: 1000", 3),
        ("value_avg", "gt: 500", 5),
        ("value_percentile", "percentile: 95, gte: 600", 6),
    ] {
        let rules = dir.path().join(format!("{kind}.yml"));
        std::fs::write(&rules, format!("{RULES}---\n{}", metric(kind, condition))).unwrap();
        let mut args = vec!["--no-context", "--rules", rules.to_str().unwrap()];
        args.extend(archives.iter().map(|p| p.to_str().unwrap()));
        let report = common::shards_merge_into_single_run(dir.path(), 3, &args);
        let n = common::by_rule_findings(&report)
            .iter()
            .filter(|(rule, _)| *rule == "m-1")
            .count();
        assert_eq!(n, fires, "{kind} {condition}");
    }
}

/// What a metric correlation cannot run on is said, with the reason: no `percentile` for
/// `value_percentile` (the specification names none; pySigma's key is read), one beyond
/// 100, no `field`, a threshold that is no number, a condition no number satisfies,
/// `percentile` on another kind, and `aliases`.
#[test]
fn a_metric_correlation_that_cannot_run_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("a.jsonl");
    write_lines(&archive, &downloads());
    let with = |kind: &str, condition: &str| {
        format!(
            "title: Metric\nid: m-1\nauthor: Tester\ncorrelation:\n  type: {kind}\n\
             \x20 rules: [download]\n  group-by: [UserId]\n  timespan: 1h\n\
             \x20 condition: {{{condition}}}\n"
        )
    };
    let cases = [
        (
            with("value_percentile", "field: FileSizeBytes, lte: 1"),
            "without a condition percentile",
        ),
        (
            with(
                "value_percentile",
                "field: FileSizeBytes, percentile: 101, gt: 1",
            ),
            "percentile 101",
        ),
        (
            with("value_sum", "gt: 1000"),
            "value_sum correlation without a condition field",
        ),
        (
            with("value_avg", "field: FileSizeBytes, gt: lots"),
            "gt: lots: not a number",
        ),
        (
            with("value_avg", "field: FileSizeBytes, gt: 5, lt: 3"),
            "no number satisfies it",
        ),
        (
            with("value_sum", "field: FileSizeBytes, percentile: 50, gt: 3"),
            "only for value_percentile",
        ),
        (
            metric("value_sum", "gt: 1").replace(
                "  timespan: 1h\n",
                "  timespan: 1h\n  aliases: {who: {download: UserId}}\n",
            ),
            "aliases are replayed for temporal correlations only",
        ),
    ];
    for (correlation, why) in cases {
        let path = dir.path().join("bad.yml");
        std::fs::write(&path, format!("{RULES}---\n{correlation}")).unwrap();
        let out = common::hunt_rules_json(&path, &[], &[&archive]);
        let report: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&out.stderr)));
        let reason = report["not_run"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["id"] == "m-1")
            .map(|n| n["reason"].as_str().unwrap().to_string())
            .unwrap_or_else(|| panic!("{correlation}: runs"));
        assert!(reason.contains(why), "{correlation}: {reason}");
    }
}
