//! Every KQL query rule and EQL event-query rule Elastic publishes for Microsoft 365,
//! run offline in one pass.
//!
//! `tests/fixtures/rule_pack/` holds, per rule, one raw record that matches it and one
//! near miss, written by `tests/fixtures/make_rule_pack.py` from the rule's query alone
//! (a parser, a satisfying assignment and the inverse of the pipeline's mapping, all in
//! the script). The rule files are read from `../shared/corpus/elastic-rules/` (not
//! copied: Elastic License 2.0).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use assert_cmd::prelude::*;
use proptest::prelude::*;
use serde_json::Value;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn run(args: &[&str]) -> Output {
    let mut cmd = Command::cargo_bin("ualhunt").unwrap();
    cmd.current_dir(root());
    cmd.args(args).output().unwrap()
}

const MODES: [&[&str]; 4] = [
    &[],
    &["--threads", "1"],
    &["--threads", "2", "--chunk-size", "64"],
    &["--no-prefilter"],
];

fn rules_dir() -> Option<PathBuf> {
    let dir = root().join("../shared/corpus/elastic-rules");
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!("skipped: {} is absent", dir.display());
        None
    }
}

fn records() -> PathBuf {
    root().join("tests/fixtures/rule_pack/records.jsonl")
}

/// Matches and near misses of the `new_terms` and `threshold` rules (a match, the same
/// terms a day later, a threshold's worth of matches, one too few).
fn alerting_records() -> PathBuf {
    root().join("tests/fixtures/rule_pack/alerting.jsonl")
}

/// Record id -> the rule ids that fired on it, from a JSON report's `by_rule`.
fn fired(report: &Value) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (id, f) in common::by_rule_findings(report) {
        let record = f["record_id"].as_str().unwrap().to_string();
        out.entry(record).or_default().insert(id.to_string());
    }
    out
}

/// The expectations of a fixture (`expected.json`, `alerting.json`): record id, rule id,
/// rule file and kind (`match` fires; anything else does not).
fn expectations(name: &str) -> Vec<Value> {
    let path = root().join("tests/fixtures/rule_pack").join(name);
    let expected: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    expected.as_array().unwrap().clone()
}

/// The JSON report of all the published rules over `archive` in each engine mode, after
/// checking that every mode succeeds, fires exactly on the expected matches and finds
/// what the default mode finds.
fn reports_in_every_mode(dir: &Path, archive: &Path, expected: &[Value]) -> Vec<Value> {
    let mut reports: Vec<Value> = Vec::new();
    for mode in MODES {
        let mut args = vec![
            "hunt",
            "--rules",
            dir.to_str().unwrap(),
            "--format",
            "json",
            "--no-context",
        ];
        args.extend_from_slice(mode);
        args.push(archive.to_str().unwrap());
        let out = run(&args);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let report: Value = serde_json::from_slice(&out.stdout).unwrap();
        let fired = fired(&report);
        let failures: Vec<String> = expected
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
            .collect();
        assert!(
            failures.is_empty(),
            "mode {mode:?}:\n{}",
            failures.join("\n")
        );
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
fn every_query_rule_fires_on_its_match_and_not_on_its_near_miss_in_every_mode() {
    let Some(dir) = rules_dir() else { return };
    let expected = expectations("expected.json");
    assert_eq!(
        expected.len(),
        88,
        "44 rules (4 EQL), a match and a near miss each"
    );
    for report in reports_in_every_mode(&dir, &records(), &expected) {
        assert_eq!(report["rules"].as_array().unwrap().len(), 56);
        assert_eq!(report["not_run"].as_array().unwrap().len(), 7);
        assert!(
            report["scan"]["malformed"] == 0,
            "{}",
            report["scan"]["malformed_samples"]
        );
    }
}

/// The nine `new_terms` and `threshold` rules that can alert offline (the other three
/// need GeoIP or ASN enrichment): a rule's first match alerts, the same terms a day later
/// do not, a threshold's worth of matches within minutes alert together, one too few do
/// not, and the near miss is no match at all.
#[test]
fn every_alerting_rule_alerts_on_what_is_new_or_over_its_threshold_in_every_mode() {
    let Some(dir) = rules_dir() else { return };
    let expected = expectations("alerting.json");
    let rules: BTreeSet<&str> = expected
        .iter()
        .map(|e| e["rule_id"].as_str().unwrap())
        .collect();
    assert_eq!(rules.len(), 9);
    for report in reports_in_every_mode(&dir, &alerting_records(), &expected) {
        // What was held back is counted: per new-terms rule the repeat, for the
        // threshold rule the matches one short of it.
        let held: u64 = report["rules"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| rules.contains(r["id"].as_str().unwrap()))
            .map(|r| r["held_back"].as_u64().unwrap())
            .sum();
        assert_eq!(held, 8 + 24);
    }
}

/// The findings of one run, as (rule id, record id) pairs.
fn findings(dir: &Path, only: Option<&[usize]>) -> BTreeSet<(String, String)> {
    static LOADED: std::sync::OnceLock<ualhunt_engine::rule::load::RuleSet> =
        std::sync::OnceLock::new();
    let mut set = LOADED
        .get_or_init(|| ualhunt_engine::rule::load::load(&[dir.to_path_buf()]).unwrap())
        .clone();
    if let Some(keep) = only {
        let rules = std::mem::take(&mut set.rules);
        set.rules = rules
            .into_iter()
            .enumerate()
            .filter(|(i, _)| keep.contains(i))
            .map(|(_, r)| r)
            .collect();
    }
    let mut config = ualhunt_engine::Config::new(vec![records(), alerting_records()]);
    config.rules = set.rules;
    config.context = false;
    config.threads = 1;
    pairs(&ualhunt_engine::run(&config).unwrap())
}

/// (rule id, record id) of every finding of a report.
fn pairs(report: &ualhunt_engine::Report) -> BTreeSet<(String, String)> {
    report
        .actors
        .iter()
        .flat_map(|a| &a.evidence)
        .map(|e| {
            (
                report.rules[usize::from(e.finding.rule)].id.clone(),
                e.finding.record_id.as_deref().unwrap_or("").to_string(),
            )
        })
        .collect()
}

#[test]
fn each_rule_alone_finds_what_it_finds_beside_all_the_others() {
    let Some(dir) = rules_dir() else { return };
    let all = findings(&dir, None);
    assert!(all.len() >= 53, "{all:?}");
    let set = ualhunt_engine::rule::load::load(std::slice::from_ref(&dir)).unwrap();
    assert_eq!(set.rules.len(), 56);
    for (i, rule) in set.rules.iter().enumerate() {
        let alone = findings(&dir, Some(&[i]));
        if rule.meta.alerting.is_some() && !rule.needs_enrichment().is_empty() {
            // Its terms or its query need GeoIP/ASN enrichment: it cannot alert offline.
            assert!(alone.is_empty(), "rule {i}");
            continue;
        }
        let id = alone.iter().next().map(|(r, _)| r.clone());
        let beside: BTreeSet<_> = all
            .iter()
            .filter(|(r, _)| Some(r) == id.as_ref())
            .cloned()
            .collect();
        assert!(!alone.is_empty(), "rule {i} found nothing alone");
        assert_eq!(alone, beside, "rule {i}");
    }
}

/// (rule id, record id) of every finding, and the candidates, of the 56 rules over the
/// fixtures with `tweak` applied to the configuration.
fn split_run(
    dir: &Path,
    tweak: impl FnOnce(&mut ualhunt_engine::Config),
) -> (BTreeSet<(String, String)>, u64) {
    let set = ualhunt_engine::rule::load::load(&[dir.to_path_buf()]).unwrap();
    let mut config = ualhunt_engine::Config::new(vec![records(), alerting_records()]);
    config.rules = set.rules;
    config.context = false;
    tweak(&mut config);
    let report = ualhunt_engine::run(&config).unwrap();
    (pairs(&report), report.counts.candidates)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// The literals are searched from their rarest bytes on, so a literal may begin in
    /// one block or chunk and its searched window in the next: the candidates and the
    /// findings are the same whatever the cut, and the findings those of parsing every
    /// line.
    #[test]
    fn the_rule_pack_finds_the_same_whatever_the_blocks_chunks_and_threads(
        block in prop_oneof![1usize..48, 48usize..2048],
        chunk in 64usize..8192,
        threads in 1usize..4,
    ) {
        let Some(dir) = rules_dir() else { return Ok(()) };
        let (reference, candidates) = split_run(&dir, |c| c.threads = 1);
        let (every_line, _) = split_run(&dir, |c| c.prefilter = false);
        prop_assert_eq!(&reference, &every_line);
        let (split, split_candidates) = split_run(&dir, |c| {
            c.scan_block = block;
            c.chunk_size = chunk;
            c.threads = threads;
        });
        prop_assert_eq!(&split, &reference);
        prop_assert_eq!(split_candidates, candidates);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    /// Any subset of the rules in one pass finds exactly the union of what each finds.
    #[test]
    fn any_subset_finds_what_its_rules_find(keep in proptest::collection::btree_set(0usize..56, 1..12)) {
        let Some(dir) = rules_dir() else { return Ok(()) };
        let keep: Vec<usize> = keep.into_iter().collect();
        let together = findings(&dir, Some(&keep));
        let mut union = BTreeSet::new();
        for &i in &keep {
            union.extend(findings(&dir, Some(&[i])));
        }
        prop_assert_eq!(together, union);
    }
}

#[test]
fn rules_lists_what_runs_what_does_not_and_every_literal() {
    let Some(dir) = rules_dir() else { return };
    let out = run(&["rules", "--rules", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("56 rules run, 7 not run"), "{text}");
    // The BloodHound rule's only selective clause is a case-insensitive regex: its
    // literals are searched in any case (`s` folds to `ſ` too, so `sharphound` gives
    // `harphound`); no rule is left without a literal.
    assert!(
        text.contains(
            "  prefilter:         \"azurehound\" (any case) or \"bloodhound\" (any case) or \"harphound\" (any case)"
        ),
        "{text}"
    );
    assert!(!text.contains("none (every line is parsed)"), "{text}");
    assert!(!text.contains("with no prefilter literal"), "{text}");
    // A rule whose only literal is a RecordType: no text search, yet not every line
    // parsed.
    let ropc = dir.join("initial_access_identity_ropc_grant_via_legacy_authenticated_client.toml");
    let out = run(&["rules", "--rules", ropc.to_str().unwrap()]);
    let one = String::from_utf8_lossy(&out.stdout);
    assert!(
        one.contains("one prefilter for all: no text literal: RecordType 15 read from each line"),
        "{one}"
    );
    assert_eq!(text.matches("  prefilter:").count(), 56, "{text}");
    assert_eq!(text.matches("none: every record").count(), 0, "{text}");
    // The EQL event queries' literals: their actions.
    assert!(
        text.contains(
            "  prefilter:         \"HardDelete\" or \"MoveToDeletedItems\" or \"SoftDelete\""
        ),
        "{text}"
    );
    assert!(
        text.contains("  prefilter:         \"SearchQueryPerformed\""),
        "{text}"
    );
    assert_eq!(
        text.matches("  alerting:          new terms").count(),
        10,
        "{text}"
    );
    assert_eq!(
        text.matches("  alerting:          threshold").count(),
        2,
        "{text}"
    );
    assert!(
        text.contains("cannot match:      source.as.number: ASN enrichment"),
        "{text}"
    );
    // The one EQL rule not run is the sequence, with the true reason; the others not
    // run are the six ES|QL rules.
    assert_eq!(
        text.matches("reason: EQL sequence: replay over the archive not built yet")
            .count(),
        1,
        "{text}"
    );
    assert_eq!(text.matches("reason: ES|QL").count(), 6, "{text}");
    assert!(
        text.contains("cannot match:      user_agent.name: user-agent parsing"),
        "{text}"
    );
}

#[test]
fn the_bypass_investigation_runs_unchanged_beside_the_other_rules() {
    let Some(dir) = rules_dir() else { return };
    let archive = root().join("tests/fixtures/investigation/s1_bypass_window_then_resume.jsonl");
    let alone = run(&["hunt", "--format", "json", archive.to_str().unwrap()]);
    let pack = run(&[
        "hunt",
        "--format",
        "json",
        "--rules",
        dir.to_str().unwrap(),
        archive.to_str().unwrap(),
    ]);
    let alone: Value = serde_json::from_slice(&alone.stdout).unwrap();
    let pack: Value = serde_json::from_slice(&pack.stdout).unwrap();
    let accounts = |v: &Value| v["investigations"][0]["accounts"].clone();
    assert!(!accounts(&alone).as_array().unwrap().is_empty());
    assert_eq!(accounts(&alone), accounts(&pack));
    assert_eq!(alone["coverage"], pack["coverage"]);
}

#[test]
fn a_sharded_run_of_the_rule_pack_merges_into_the_single_run() {
    let Some(dir) = rules_dir() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let archive = records();
    let common = [
        "--rules",
        dir.to_str().unwrap(),
        "--no-context",
        archive.to_str().unwrap(),
    ];
    let single = run(&[&["hunt", "-q", "--format", "json"][..], &common[..]].concat());
    let mut partials = Vec::new();
    for k in 0..3 {
        let p = tmp.path().join(format!("p{k}"));
        let shard = format!("{k}/3");
        let args = [
            &[
                "hunt",
                "-q",
                "--shard",
                shard.as_str(),
                "--partial",
                p.to_str().unwrap(),
            ][..],
            &common[..],
        ]
        .concat();
        let out = run(&args);
        assert!(
            out.status.code().is_some_and(|c| c < 2),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        partials.push(p);
    }
    let mut args = vec!["merge", "--format", "json"];
    args.extend(partials.iter().map(|p| p.to_str().unwrap()));
    let merged = run(&args);
    assert_eq!(
        String::from_utf8_lossy(&merged.stdout),
        String::from_utf8_lossy(&single.stdout),
        "{}",
        String::from_utf8_lossy(&merged.stderr)
    );
}

#[test]
fn the_html_report_and_the_table_summarise_the_rules() {
    let Some(dir) = rules_dir() else { return };
    let archive = records();
    let base = [
        "hunt",
        "-q",
        "--no-context",
        "--rules",
        dir.to_str().unwrap(),
    ];
    let html = run(&[&base[..], &["--format", "html", archive.to_str().unwrap()]].concat());
    let html = String::from_utf8_lossy(&html.stdout);
    assert!(html.contains("<title>ualhunt: 56 rules"), "{html:.300}");
    assert!(html.contains("56 rules run, 44 fired, 7 not run."));
    let table = run(&[&base[..], &[archive.to_str().unwrap()]].concat());
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(
        table.starts_with("rules: 56 run, 44 fired, 7 not run"),
        "{table}"
    );
    // Severity first: the high rules come before the medium ones.
    let high = table.find("  HIGH ").unwrap();
    let medium = table.find("  MEDIUM ").unwrap();
    assert!(high < medium, "{table}");
}

/// The documented limit of the prefilter: a rule literal whose plain ASCII letters a
/// writer spelled with JSON `\u` escapes is not a candidate (no audit export writes it so);
/// the reference path finds it, because the parsed value is the same.
#[test]
fn a_literal_spelled_with_json_escapes_is_found_only_without_the_prefilter() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("escaped.jsonl");
    let record = concat!(
        r#"{"CreationTime":"2024-05-02T10:00:00","Id":"6d3c1a52-0b6f-4a51-9d7e-6c1b9a0e2f11","#,
        r#""Operation":"\u0053et-MailboxAuditBypassAssociation","RecordType":1,"#,
        r#""ResultStatus":"True","UserId":"admin@contoso.com","Workload":"Exchange","#,
        r#""Parameters":[{"Name":"Identity","Value":"cfo@contoso.com"},"#,
        r#"{"Name":"AuditBypassEnabled","Value":"True"}]}"#,
        "\n"
    );
    std::fs::write(&path, record).unwrap();
    let p = path.to_str().unwrap();
    let fast = run(&["hunt", "-q", "--format", "json", p]);
    assert_eq!(fast.status.code(), Some(1), "the prefilter misses it");
    let slow = run(&["hunt", "-q", "--format", "json", "--no-prefilter", p]);
    assert_eq!(slow.status.code(), Some(0), "the reference path finds it");
}

/// The same records in a Purview CSV export (the record in the `AuditData` cell, quotes
/// doubled) and in a JSON array document: the same rules fire on the same records,
/// whether a record is a candidate by a literal or by its `RecordType`.
#[test]
fn the_rule_pack_finds_the_same_in_csv_exports_and_json_documents() {
    let Some(dir) = rules_dir() else { return };
    let text = std::fs::read_to_string(records()).unwrap();
    let recs: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let tmp = tempfile::tempdir().unwrap();
    let csv_path = tmp.path().join("export.csv");
    std::fs::write(&csv_path, common::as_csv(&recs)).unwrap();
    let doc_path = tmp.path().join("export.json");
    std::fs::write(&doc_path, serde_json::to_vec_pretty(&recs).unwrap()).unwrap();
    let hunt = |p: &Path| {
        let out = run(&[
            "hunt",
            "-q",
            "--no-context",
            "--format",
            "json",
            "--rules",
            dir.to_str().unwrap(),
            p.to_str().unwrap(),
        ]);
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        fired(&v)
    };
    let lines = hunt(&records());
    assert!(lines.len() >= 40, "{lines:?}");
    assert_eq!(hunt(&csv_path), lines, "CSV export");
    assert_eq!(hunt(&doc_path), lines, "JSON document");
}

/// A user agent in every spelling a record may give it: the BloodHound rule's caseless
/// literals find, with the prefilter on, exactly the records the reference path
/// (`--no-prefilter`) finds, whatever the case, an escaped `/`, or a long `ſ` (which the
/// case-insensitive regex matches for `s`), raw or `\u`-escaped; alone and beside the
/// other rules, whatever the threads and chunks.
#[test]
fn caseless_literals_find_every_spelling_the_reference_path_finds() {
    let Some(dir) = rules_dir() else { return };
    let rule = dir.join("discovery_bloodhound_user_agents_detected.toml");
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("agents.jsonl");
    // (user agent as written in the JSON, whether the BloodHound rule matches it).
    let agents = [
        (r"AzureHound/2.1.0", true),
        (r"BLOODHOUND/1.0", true),
        (r"sharphound/4", true),
        (r"SharpHound\/4.3", true),
        (r"\u017fharphound/1", true),
        ("\u{17f}HARPHOUND/1", true),
        (r"azurehound\u002f2", true),
        (r"bLoOdHoUnD/x (compatible)", true),
        (r"bloodhound", false),
        (r"AzureHounds/1", false),
        (r"Mozilla/5.0 azurehound", false),
        (r"x-azurehound/1", false),
    ];
    let mut text = String::new();
    for (i, (agent, _)) in agents.iter().enumerate() {
        // Both places a raw record keeps a user agent; the keys in either order.
        let record = if i % 2 == 0 {
            format!(
                r#"{{"CreationTime":"2024-05-02T10:00:{i:02}","Id":"00000000-0000-0000-0000-0000000000{i:02}","Operation":"UserLoggedIn","OrganizationId":"o","RecordType":15,"UserId":"u{i}@contoso.com","Workload":"AzureActiveDirectory","UserAgent":"{agent}"}}"#
            )
        } else {
            format!(
                r#"{{"ExtendedProperties":[{{"Name":"UserAgent","Value":"{agent}"}}],"Workload":"AzureActiveDirectory","UserId":"u{i}@contoso.com","RecordType":15,"Operation":"UserLoggedIn","Id":"00000000-0000-0000-0000-0000000000{i:02}","CreationTime":"2024-05-02T10:00:{i:02}"}}"#
            )
        };
        text.push_str(&record);
        text.push('\n');
    }
    std::fs::write(&path, &text).unwrap();
    let p = path.to_str().unwrap();
    let ids = |args: &[&str]| -> BTreeSet<String> {
        let out = run(args);
        assert!(
            out.status.code().is_some_and(|c| c <= 1),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let report: Value = serde_json::from_slice(&out.stdout).unwrap();
        fired(&report).into_keys().collect()
    };
    let expected: BTreeSet<String> = agents
        .iter()
        .enumerate()
        .filter(|(_, (_, m))| *m)
        .map(|(i, _)| format!("00000000-0000-0000-0000-0000000000{i:02}"))
        .collect();
    let alone = rule.to_str().unwrap();
    for rules in [alone, dir.to_str().unwrap()] {
        let base = [
            "hunt",
            "-q",
            "--format",
            "json",
            "--no-context",
            "--rules",
            rules,
        ];
        let mut reference = base.to_vec();
        reference.extend(["--no-prefilter", p]);
        let reference = ids(&reference);
        for mode in MODES {
            let mut args = base.to_vec();
            args.extend_from_slice(mode);
            args.push(p);
            assert_eq!(ids(&args), reference, "{rules} {mode:?}");
        }
        if rules == alone {
            assert_eq!(reference, expected);
        }
    }
}

/// A rule whose query gives no literal is named by `ualhunt rules` with its cost.
#[test]
fn a_rule_with_no_literal_is_named_with_its_cost() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("agents.toml");
    let rule = r#"[rule]
name = "Any agent"
rule_id = "00000000-0000-4000-8000-000000000001"
type = "eql"
language = "eql"
severity = "low"
risk_score = 21
description = "d"
query = '''any where user_agent.original regex~ "[a-z]+/.*"'''
"#;
    std::fs::write(&path, rule).unwrap();
    let out = run(&["rules", "--rules", path.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(
            "1 rule with no prefilter literal, so every line of an archive is parsed: Any agent"
        ),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
