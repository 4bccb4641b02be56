//! Sigma rules for Microsoft 365 (SigmaHQ's and Suzaku's, read from
//! `../shared/corpus/sigma-m365/`, not copied: Detection Rule License) run in the same
//! pack and the same pass as Elastic's.
//!
//! `tests/fixtures/sigma_pack/` holds, per Sigma rule, one raw record that matches it and
//! one near miss, written by `tests/fixtures/make_sigma_pack.py` from the rule's
//! detection alone and checked there by an evaluator of its own.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde_json::Value;

const MODES: [&[&str]; 4] = [
    &[],
    &["--threads", "1"],
    &["--threads", "2", "--chunk-size", "64"],
    &["--no-prefilter"],
];

fn corpus(name: &str) -> Option<PathBuf> {
    let dir = common::root().join("../shared/corpus").join(name);
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!("skipped: {} is absent", dir.display());
        None
    }
}

fn fixture(path: &str) -> PathBuf {
    common::root().join("tests/fixtures").join(path)
}

fn expectations(path: &str) -> Vec<Value> {
    let text = std::fs::read(fixture(path)).unwrap();
    serde_json::from_slice::<Value>(&text)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

/// Record id -> the rule ids that fired on it.
fn fired(report: &Value) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (id, f) in common::by_rule_findings(report) {
        let record = f["record_id"].as_str().unwrap().to_string();
        out.entry(record).or_default().insert(id.to_string());
    }
    out
}

/// The failures of `expected` in a report: a match that did not fire, a near miss that
/// did.
fn failures(report: &Value, expected: &[Value]) -> Vec<String> {
    let fired = fired(report);
    expected
        .iter()
        .filter_map(|e| {
            let record = e["record_id"].as_str().unwrap();
            let rule = e["rule_id"].as_str().unwrap();
            let hit = fired.get(record).is_some_and(|s| s.contains(rule));
            (hit != (e["kind"] == "match")).then(|| {
                format!(
                    "{} ({}): {record} {}",
                    e["file"],
                    e["kind"],
                    if hit { "fired" } else { "did not fire" }
                )
            })
        })
        .collect()
}

/// The JSON report of `rules` over `archives` in each engine mode; every mode must
/// succeed, meet `expected`, and report what the default mode reports.
fn reports_in_every_mode(rules: &[&Path], archives: &[&Path], expected: &[Value]) -> Vec<Value> {
    let mut reports: Vec<Value> = Vec::new();
    for mode in MODES {
        let mut args = vec!["hunt", "--format", "json", "--no-context"];
        for r in rules {
            args.extend(["--rules", r.to_str().unwrap()]);
        }
        args.extend_from_slice(mode);
        args.extend(archives.iter().map(|a| a.to_str().unwrap()));
        let out = common::ualhunt(&args);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let report: Value = serde_json::from_slice(&out.stdout).unwrap();
        let failed = failures(&report, expected);
        assert!(failed.is_empty(), "mode {mode:?}:\n{}", failed.join("\n"));
        if let Some(first) = reports.first() {
            assert_eq!(
                (&first["by_rule"], &first["actors"]),
                (&report["by_rule"], &report["actors"]),
                "mode {mode:?} differs from the default mode"
            );
        }
        reports.push(report);
    }
    reports
}

#[test]
fn every_sigma_rule_fires_on_its_match_and_not_on_its_near_miss_in_every_mode() {
    let Some(sigma) = corpus("sigma-m365") else {
        return;
    };
    let expected = expectations("sigma_pack/expected.json");
    assert_eq!(expected.len(), 84, "42 rules, a match and a near miss each");
    let records = fixture("sigma_pack/records.jsonl");
    for report in reports_in_every_mode(&[&sigma], &[&records], &expected) {
        assert_eq!(report["rules"].as_array().unwrap().len(), 42);
        assert_eq!(report["not_run"].as_array().unwrap().len(), 0);
        // Every rule listed names its author (the Detection Rule License).
        for rule in report["rules"].as_array().unwrap() {
            assert!(
                rule["author"].as_str().is_some_and(|a| !a.is_empty()),
                "{rule}"
            );
        }
    }
}

/// Elastic's published rules and the Sigma rules in one pack and one pass: each set
/// still fires exactly where it did alone.
#[test]
fn sigma_and_elastic_rules_run_in_one_pass() {
    let (Some(sigma), Some(elastic)) = (corpus("sigma-m365"), corpus("elastic-rules")) else {
        return;
    };
    let mut expected = expectations("sigma_pack/expected.json");
    expected.extend(expectations("rule_pack/expected.json"));
    let archives = [
        fixture("sigma_pack/records.jsonl"),
        fixture("rule_pack/records.jsonl"),
    ];
    let archives: Vec<&Path> = archives.iter().map(PathBuf::as_path).collect();
    let reports = reports_in_every_mode(&[&elastic, &sigma], &archives, &expected);
    assert_eq!(reports[0]["rules"].as_array().unwrap().len(), 63 + 42);
}

/// A rule outside the supported subset is listed with the reason, never skipped: in
/// `ualhunt rules` and in the report.
#[test]
fn a_sigma_rule_outside_the_subset_is_listed_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("pack.yaml");
    std::fs::write(
        &rules,
        "title: Runs\nid: r-1\nauthor: Tester\nlogsource: {product: m365, service: audit}\n\
         detection:\n  s: {Operation: New-InboxRule}\n  condition: s\n\
         ---\ntitle: Windash\nid: r-2\nlogsource: {product: m365, service: audit}\n\
         detection:\n  s: {Operation|windash: '-x'}\n  condition: s\n\
         ---\ntitle: Correlated\nid: r-3\ncorrelation: {type: value_median, rules: [r-1], \
         group-by: [UserId], timespan: 5m, condition: {field: x, gte: 3}}\n",
    )
    .unwrap();
    let out = common::ualhunt(&["rules", "--rules", rules.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("windash"), "{text}");
    assert!(text.contains("correlation rule (value_median)"), "{text}");
    let records = fixture("sigma_pack/records.jsonl");
    let out = common::ualhunt(&[
        "hunt",
        "--rules",
        rules.to_str().unwrap(),
        "--format",
        "json",
        records.to_str().unwrap(),
    ]);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let not_run = report["not_run"].as_array().unwrap();
    assert_eq!(not_run.len(), 2, "{not_run:?}");
    assert!(
        not_run
            .iter()
            .all(|n| n["reason"].as_str().unwrap().starts_with("Sigma: "))
    );
}

/// `--sigma-mapping` replaces the built-in mapping: a mapping that reads the alert
/// name from another field makes an alert rule miss its match.
#[test]
fn a_replaced_mapping_changes_what_the_rules_read() {
    let Some(sigma) = corpus("sigma-m365") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mapping = dir.path().join("mapping.yml");
    let builtin =
        std::fs::read_to_string(common::root().join("crates/engine/rules/sigma_mapping.yml"))
            .unwrap();
    std::fs::write(
        &mapping,
        builtin.replace(
            "eventName: [rule.name]",
            "eventName: [o365.audit.AlertName]",
        ),
    )
    .unwrap();
    let rule = sigma.join("sigmahq/microsoft365_activity_by_terminated_user.yml");
    let records = fixture("sigma_pack/records.jsonl");
    let run = |extra: &[&str]| {
        let mut args = vec![
            "hunt",
            "--rules",
            rule.to_str().unwrap(),
            "--format",
            "json",
        ];
        args.extend_from_slice(extra);
        args.push(records.to_str().unwrap());
        let out = common::ualhunt(&args);
        serde_json::from_slice::<Value>(&out.stdout).unwrap()
    };
    let default = run(&[]);
    assert_eq!(common::by_rule_findings(&default).len(), 1);
    let replaced = run(&["--sigma-mapping", mapping.to_str().unwrap()]);
    assert_eq!(common::by_rule_findings(&replaced).len(), 0);
}

/// A sharded run of Sigma rules (with a replaced mapping, carried in the partials)
/// merges into the single run's report, byte for byte.
#[test]
fn a_sharded_run_of_sigma_rules_merges_into_the_single_run() {
    let Some(sigma) = corpus("sigma-m365") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mapping = dir.path().join("mapping.yml");
    let builtin =
        std::fs::read_to_string(common::root().join("crates/engine/rules/sigma_mapping.yml"))
            .unwrap();
    // The same mapping with one more alternative, so that it is not the built-in text.
    std::fs::write(
        &mapping,
        builtin.replace(
            "Payload: [o365.audit.Data]",
            "Payload: [o365.audit.Data, o365.audit.Payload]",
        ),
    )
    .unwrap();
    let records = fixture("sigma_pack/records.jsonl");
    let rule_pack = fixture("rule_pack/records.jsonl");
    let common_args = [
        "--rules",
        sigma.to_str().unwrap(),
        "--sigma-mapping",
        mapping.to_str().unwrap(),
        "--no-context",
    ];
    let mut args = common_args.to_vec();
    args.extend([records.to_str().unwrap(), rule_pack.to_str().unwrap()]);
    common::shards_merge_into_single_run(dir.path(), 3, &args);
}

/// An `event_count` correlation replayed over the archive like a threshold rule: three
/// failed logins of one user within ten minutes alert (all three reported), two of
/// another do not; the counted rule reports only through the correlation.
#[test]
fn an_event_count_correlation_alerts_on_a_group_over_its_count_within_its_timespan() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("spray.yml");
    std::fs::write(
        &rules,
        "title: Failed login\nid: f-1\nname: failed_login\nauthor: Tester\n\
         logsource: {product: azure, service: m365}\n\
         detection:\n  s: {Operation: UserLoginFailed}\n  condition: s\n\
         ---\ntitle: Many failed logins\nid: c-1\nauthor: Tester\nlevel: high\n\
         correlation:\n  type: event_count\n  rules: [failed_login]\n  group-by: [UserId]\n\
         \x20 timespan: 10m\n  condition: {gte: 3}\n",
    )
    .unwrap();
    let line = |id: usize, user: &str, minute: u32| {
        format!(
            r#"{{"CreationTime":"2024-06-03T10:{minute:02}:00","Id":"id-{id}","Operation":"UserLoginFailed","RecordType":15,"ResultStatus":"Failed","UserId":"{user}","Workload":"AzureActiveDirectory","ClientIP":"203.0.113.{id}"}}"#
        )
    };
    let records = [
        line(1, "a@contoso.com", 0),
        line(2, "b@contoso.com", 1),
        line(3, "a@contoso.com", 4),
        line(4, "b@contoso.com", 30),
        line(5, "a@contoso.com", 9),
    ]
    .join("\n")
        + "\n";
    let archive = dir.path().join("a.jsonl");
    std::fs::write(&archive, records).unwrap();
    for mode in MODES {
        let mut args = vec![
            "hunt",
            "--format",
            "json",
            "--rules",
            rules.to_str().unwrap(),
        ];
        args.extend_from_slice(mode);
        args.push(archive.to_str().unwrap());
        let out = common::ualhunt(&args);
        let report: Value = serde_json::from_slice(&out.stdout).unwrap();
        let found: BTreeSet<(&str, &str)> = common::by_rule_findings(&report)
            .into_iter()
            .map(|(rule, f)| (rule, f["record_id"].as_str().unwrap()))
            .collect();
        let want: BTreeSet<(&str, &str)> =
            [("c-1", "id-1"), ("c-1", "id-3"), ("c-1", "id-5")].into();
        assert_eq!(found, want, "mode {mode:?}");
        assert_eq!(report["not_run"][0]["id"], "f-1");
    }
}

/// A raw audit record for the temporal correlations' tests: `who` did `operation` at
/// `time` (`HH:MM`, 2024-06-03), on mailbox `identity` if given.
fn audit_line(id: &str, time: &str, operation: &str, who: &str, identity: Option<&str>) -> String {
    let parameters = identity
        .map(|i| format!(r#","Parameters":[{{"Name":"Identity","Value":"{i}"}}]"#))
        .unwrap_or_default();
    format!(
        r#"{{"CreationTime":"2024-06-03T{time}:00","Id":"{id}","Operation":"{operation}","RecordType":1,"ResultStatus":"True","UserId":"{who}","Workload":"Exchange","ClientIP":"203.0.113.9"{parameters}}}"#
    )
}

/// The rules the temporal correlations name, in a file of their own.
const CORRELATED_RULES: &str = "title: Login\nid: t-login\nname: login\nauthor: Tester\n\
    logsource: {product: m365, service: audit}\n\
    detection:\n  s: {Operation: UserLoggedIn}\n  condition: s\n\
    ---\ntitle: Mailbox changed\nid: t-setmbx\nname: setmbx\nauthor: Tester\n\
    logsource: {product: m365, service: audit}\n\
    detection:\n  s: {Operation: Set-Mailbox}\n  condition: s\n";

/// Each mode's (rule id, record id, sequence, step items) of every finding of `rules`
/// over `archives`; every mode must report the same, and the table the same as the
/// default mode's.
fn correlated_findings(rules: &Path, archives: &[&Path]) -> BTreeSet<Vec<String>> {
    let mut first: Option<(BTreeSet<Vec<String>>, Value)> = None;
    for mode in MODES
        .iter()
        .chain([&["--threads", "3", "--chunk-size", "200"][..]].iter())
    {
        let out = common::hunt_rules_json(rules, mode, archives);
        assert!(
            matches!(out.status.code(), Some(0 | 1)),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let report: Value = serde_json::from_slice(&out.stdout).unwrap();
        let found: BTreeSet<Vec<String>> = common::by_rule_findings(&report)
            .into_iter()
            .map(|(rule, f)| {
                let mut row = vec![rule.to_string(), f["record_id"].as_str().unwrap().into()];
                for item in ["sequence", "step_1", "step_2", "step_3"] {
                    if let Some(text) = f[item].as_str() {
                        row.push(format!("{item}: {text}"));
                    }
                }
                row
            })
            .collect();
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
    first.map(|(found, _)| found).unwrap_or_default()
}

/// `temporal_ordered`, in a file apart from the rules it names: a login followed by a
/// mailbox change by the same user within the hour fires, with both records as
/// evidence, although the input has them the other way round and in two files. Near
/// misses do not: the wrong order, more than the timespan apart, another user.
#[test]
fn a_temporal_ordered_correlation_fires_on_its_rules_in_order_within_its_timespan() {
    let dir = tempfile::tempdir().unwrap();
    let pack = dir.path().join("pack");
    std::fs::create_dir(&pack).unwrap();
    std::fs::write(pack.join("a_rules.yml"), CORRELATED_RULES).unwrap();
    std::fs::write(
        pack.join("b_correlation.yml"),
        "title: Login then mailbox change\nid: tc-1\nauthor: Tester\nlevel: high\n\
         correlation:\n  type: temporal_ordered\n  rules: [login, t-setmbx]\n\
         \x20 group-by: [UserId]\n  timespan: 1h\n",
    )
    .unwrap();
    let later = [
        audit_line("a-set", "10:20", "Set-Mailbox", "a@contoso.com", None),
        // The wrong order.
        audit_line("b-set", "10:00", "Set-Mailbox", "b@contoso.com", None),
        // Beyond the hour.
        audit_line("c-set", "11:01", "Set-Mailbox", "c@contoso.com", None),
        // Another user's change.
        audit_line("e-set", "10:05", "Set-Mailbox", "e@contoso.com", None),
    ];
    let earlier = [
        audit_line("a-login", "10:00", "UserLoggedIn", "a@contoso.com", None),
        audit_line("b-login", "10:10", "UserLoggedIn", "b@contoso.com", None),
        audit_line("c-login", "10:00", "UserLoggedIn", "c@contoso.com", None),
        audit_line("d-login", "10:00", "UserLoggedIn", "d@contoso.com", None),
    ];
    let one = dir.path().join("1.jsonl");
    let two = dir.path().join("2.jsonl");
    std::fs::write(&one, later.join("\n") + "\n").unwrap();
    std::fs::write(&two, earlier.join("\n") + "\n").unwrap();
    let found = correlated_findings(&pack, &[&one, &two]);
    let want: BTreeSet<Vec<String>> = [vec![
        "tc-1".to_string(),
        "a-set".into(),
        "sequence: temporal_ordered: 2 rules in order by UserId=a@contoso.com within 20m".into(),
        format!(
            "step_1: 2024-06-03T10:00:00Z {}:1 a-login (Login)",
            two.display()
        ),
        format!(
            "step_2: 2024-06-03T10:20:00Z {}:1 a-set (Mailbox changed)",
            one.display()
        ),
    ]]
    .into();
    assert_eq!(found, want);
    // The rules it names report only through it (generate: false).
    let out = common::ualhunt(&["rules", "--rules", pack.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("counted by the correlation rule \"Login then mailbox change\""),
        "{text}"
    );
}

/// `temporal` (any order) with an alias: a mailbox change on account X and a login by
/// X within the hour fire together, whichever came first; another account, or more
/// than the hour apart, do not.
#[test]
fn a_temporal_correlation_joins_rules_through_an_alias_in_any_order() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.yml");
    std::fs::write(
        &rules,
        format!(
            "{CORRELATED_RULES}---\ntitle: Changed mailbox's owner logs in\nid: tc-2\n\
             author: Tester\ncorrelation:\n  type: temporal\n  rules: [setmbx, login]\n\
             \x20 group-by: [account]\n  timespan: 1h\n  aliases:\n    account:\n\
             \x20     setmbx: Parameters.Identity\n      login: UserId\n"
        ),
    )
    .unwrap();
    let lines = [
        // x's mailbox changed by an admin, then x logs in: fires.
        audit_line(
            "x-set",
            "10:00",
            "Set-Mailbox",
            "admin@contoso.com",
            Some("x@contoso.com"),
        ),
        audit_line("x-login", "10:30", "UserLoggedIn", "x@contoso.com", None),
        // y logs in, then y's mailbox changes two hours later: too far apart.
        audit_line("y-login", "10:00", "UserLoggedIn", "y@contoso.com", None),
        audit_line(
            "y-set",
            "12:00",
            "Set-Mailbox",
            "admin@contoso.com",
            Some("y@contoso.com"),
        ),
        // z's mailbox changed, but the admin (not z) logs in.
        audit_line(
            "z-set",
            "13:00",
            "Set-Mailbox",
            "admin@contoso.com",
            Some("z@contoso.com"),
        ),
        audit_line(
            "adm-login",
            "13:05",
            "UserLoggedIn",
            "admin@contoso.com",
            None,
        ),
    ];
    let archive = dir.path().join("a.jsonl");
    std::fs::write(&archive, lines.join("\n") + "\n").unwrap();
    let found = correlated_findings(&rules, &[&archive]);
    let want: BTreeSet<Vec<String>> = [vec![
        "tc-2".to_string(),
        "x-login".into(),
        "sequence: temporal: 2 of 2 rules by account=x@contoso.com within 30m".into(),
        format!(
            "step_1: 2024-06-03T10:00:00Z {}:1 x-set (Mailbox changed)",
            archive.display()
        ),
        format!(
            "step_2: 2024-06-03T10:30:00Z {}:2 x-login (Login)",
            archive.display()
        ),
    ]]
    .into();
    assert_eq!(found, want);
}

/// A sharded run of a temporal correlation whose records fall in different shards
/// merges into the single run's report, byte for byte.
#[test]
fn a_sharded_run_of_a_temporal_correlation_merges_into_the_single_run() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.yml");
    std::fs::write(
        &rules,
        format!(
            "{CORRELATED_RULES}---\ntitle: Login then mailbox change\nid: tc-3\n\
             author: Tester\ncorrelation:\n  type: temporal_ordered\n  rules: [login, setmbx]\n\
             \x20 group-by: [UserId]\n  timespan: 1h\n"
        ),
    )
    .unwrap();
    let mut archives = Vec::new();
    for (k, (id, time, op)) in [
        ("p-set", "10:20", "Set-Mailbox"),
        ("p-login", "10:00", "UserLoggedIn"),
        ("q-login", "11:00", "UserLoggedIn"),
        ("q-set", "11:59", "Set-Mailbox"),
    ]
    .into_iter()
    .enumerate()
    {
        let user = if id.starts_with('p') {
            "p@contoso.com"
        } else {
            "q@contoso.com"
        };
        let path = dir.path().join(format!("{k}.jsonl"));
        std::fs::write(&path, audit_line(id, time, op, user, None) + "\n").unwrap();
        archives.push(path);
    }
    let mut args = vec!["--no-context", "--rules", rules.to_str().unwrap()];
    args.extend(archives.iter().map(|p| p.to_str().unwrap()));
    let report = common::shards_merge_into_single_run(dir.path(), 3, &args);
    assert_eq!(common::by_rule_findings(&report).len(), 2);
}
