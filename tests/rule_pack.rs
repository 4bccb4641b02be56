//! Every KQL query rule, EQL event-query rule and ES|QL rule Elastic publishes for
//! Microsoft 365, run offline in one pass.
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
    common::corpus("elastic-rules", "the rule pack's checks")
}

fn records() -> PathBuf {
    root().join("tests/fixtures/rule_pack/records.jsonl")
}

/// Matches and near misses of the `new_terms` and `threshold` rules (a match, the same
/// terms a day later, a threshold's worth of matches, one too few).
fn alerting_records() -> PathBuf {
    root().join("tests/fixtures/rule_pack/alerting.jsonl")
}

/// The records of one alert and one near miss per ES|QL rule
/// (`tests/fixtures/make_esql_pack.py`).
fn esql_records() -> PathBuf {
    root().join("tests/fixtures/rule_pack/esql.jsonl")
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
        assert_eq!(report["rules"].as_array().unwrap().len(), 63);
        assert_eq!(report["not_run"].as_array().unwrap().len(), 0);
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

/// Records of each EQL sequence rule: its steps for one user within `maxspan` (a match)
/// and for another with the last step past it (a near miss), written last step first.
fn sequence_records() -> PathBuf {
    root().join("tests/fixtures/rule_pack/sequence.jsonl")
}

/// The sequence rule fires once, on its match's last step, with every step's record as
/// evidence, in every mode, though its steps arrive out of time order; its near miss
/// (the last step a minute past `maxspan`) does not fire, and its steps are held back.
#[test]
fn the_sequence_rule_fires_on_its_match_and_not_on_its_near_miss_in_every_mode() {
    let Some(dir) = rules_dir() else { return };
    let expected = expectations("sequence.json");
    assert_eq!(
        expected.len(),
        6,
        "one sequence rule of 3 steps: a match and a near miss"
    );
    let rule = expected[0]["rule_id"].as_str().unwrap();
    // In time order: the file holds them last step first.
    let mut steps: Vec<&str> = expected
        .iter()
        .filter(|e| e["kind"] == "match" || e["kind"] == "match_step")
        .map(|e| e["record_id"].as_str().unwrap())
        .collect();
    steps.reverse();
    for report in reports_in_every_mode(&dir, &sequence_records(), &expected) {
        let found: Vec<&Value> = common::by_rule_findings(&report)
            .into_iter()
            .filter(|(id, _)| *id == rule)
            .map(|(_, f)| f)
            .collect();
        assert_eq!(found.len(), 1, "{found:?}");
        let f = found[0];
        assert_eq!(f["sequence"], "3 steps by related.user=victim within 2m");
        for (n, id) in steps.iter().enumerate() {
            let item = f[format!("step_{}", n + 1)].as_str().unwrap();
            assert!(
                item.ends_with(&format!("sequence.jsonl:{} {id}", 3 - n)),
                "step {}: {item}",
                n + 1
            );
        }
        let entry = report["rules"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["id"] == rule)
            .unwrap();
        assert_eq!(entry["held_back"], 3, "the near miss's three steps");
    }
}

/// The six ES|QL rules, replayed run by run: the records behind each rule's alert row
/// fire, with the row and its runs as the `alert` item; the near misses (a group one
/// short, an excluded address or ASN, a rule name with a letter) do not.
#[test]
fn every_esql_rule_alerts_on_the_records_behind_its_rows_in_every_mode() {
    let Some(dir) = rules_dir() else { return };
    let expected = expectations("esql.json");
    let rules: BTreeSet<&str> = expected
        .iter()
        .map(|e| e["rule_id"].as_str().unwrap())
        .collect();
    assert_eq!(rules.len(), 6);
    for report in reports_in_every_mode(&dir, &esql_records(), &expected) {
        let mut spraying = 0;
        for (id, f) in common::by_rule_findings(&report) {
            if !rules.contains(id) {
                continue;
            }
            let alert = f["alert"].as_str().unwrap();
            assert!(alert.starts_with("ES|QL row"), "{alert}");
            if id == "26f68dba-ce29-497b-8e13-b4fde1db5a2d" {
                // Six runs of 10 minutes see the 5-minute bucket within their hour; the
                // row's columns are written once, on its earliest record.
                assert!(alert.starts_with("ES|QL row 1, runs ending"), "{alert}");
                if alert.contains("Esql.brute_force_type=password_spraying") {
                    assert!(alert.contains("Esql.event_count=15"), "{alert}");
                    spraying += 1;
                }
            }
            if id == "1c3d9346-4591-4894-935c-dad2824850f2" {
                assert!(alert.contains("Esql.inbox_rule_name=..."), "{alert}");
            }
        }
        assert_eq!(spraying, 1);
        // Held back: the near misses that gave rows (the 14 sprays, the OAuth flow from
        // one address, the 24 downloads); the others give no row at all.
        let held: u64 = report["rules"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| rules.contains(r["id"].as_str().unwrap()))
            .map(|r| r["held_back"].as_u64().unwrap())
            .sum();
        assert_eq!(held, 14 + 2 + 24);
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
    let mut config = ualhunt_engine::Config::new(vec![
        records(),
        alerting_records(),
        sequence_records(),
        esql_records(),
    ]);
    config.rules = set.rules;
    config.context = false;
    config.threads = 1;
    common::finding_pairs(&ualhunt_engine::run(&config).unwrap())
}

/// (rule id, record id) of every finding of a report.

#[test]
fn each_rule_alone_finds_what_it_finds_beside_all_the_others() {
    let Some(dir) = rules_dir() else { return };
    let all = findings(&dir, None);
    assert!(all.len() >= 53, "{all:?}");
    let set = ualhunt_engine::rule::load::load(std::slice::from_ref(&dir)).unwrap();
    assert_eq!(set.rules.len(), 63);
    for (i, rule) in set.rules.iter().enumerate() {
        let alone = findings(&dir, Some(&[i]));
        // An ES|QL rule reads enriched fields as absent (null), and its fixtures give them
        // where a clause needs one.
        if rule.meta.alerting.is_some()
            && rule.meta.language != "esql"
            && !rule.needs_enrichment(&Default::default()).is_empty()
        {
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

/// (rule id, record id) of every finding, and the candidates, of the 63 rules over the
/// fixtures with `tweak` applied to the configuration.
fn split_run(
    dir: &Path,
    tweak: impl FnOnce(&mut ualhunt_engine::Config),
) -> (BTreeSet<(String, String)>, u64) {
    let set = ualhunt_engine::rule::load::load(&[dir.to_path_buf()]).unwrap();
    let mut config = ualhunt_engine::Config::new(vec![
        records(),
        alerting_records(),
        sequence_records(),
        esql_records(),
    ]);
    config.rules = set.rules;
    config.context = false;
    tweak(&mut config);
    let report = ualhunt_engine::run(&config).unwrap();
    (common::finding_pairs(&report), report.counts.candidates)
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
    fn any_subset_finds_what_its_rules_find(keep in proptest::collection::btree_set(0usize..63, 1..12)) {
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
    assert!(text.contains("63 rules run, 0 not run"), "{text}");
    // The BloodHound rule's only selective clause is a case-insensitive regex: its
    // literals are searched in any case (`s` folds to `ſ` too, so `sharphound` gives
    // `harphound`); the one rule left without a literal is the ES|QL rule that
    // joins sign-ins and another index's alerts by address.
    assert!(
        text.contains(
            "  prefilter:         \"azurehound\" (any case) or \"bloodhound\" (any case) or \"harphound\" (any case)"
        ),
        "{text}"
    );
    // The ES|QL rule joining sign-ins and another index's alerts by address has no
    // literal of its own, but its rows need a network alert, which holds one: it is
    // searched for by that trigger (no longer making the pack parse every line), and
    // `rules` says so with what it costs.
    assert!(
        text.contains("1 rule with no literal of its own searched for by its trigger's literals")
            && text.contains("M365 or Entra ID Identity Sign-in from a Suspicious Source"),
        "{text}"
    );
    assert!(!text.contains("with no prefilter literal"), "{text}");
    assert!(
        text.contains(
            "  prefilter:         \"eb079c62-4481-4d6e-9643-3ca499df7aaa\" (its trigger: "
        ),
        "{text}"
    );
    // A rule whose only literal is a RecordType: no text search, yet not every line
    // parsed; whether it checks other literals (the sign-in errors' codes) or none (the
    // Purview signal).
    for (file, types, checks) in [
        (
            "initial_access_identity_unusual_sso_errors_for_user.toml",
            "15",
            true,
        ),
        (
            "initial_access_microsoft_purview_security_compliance_signal.toml",
            "40",
            false,
        ),
    ] {
        let out = run(&["rules", "--rules", dir.join(file).to_str().unwrap()]);
        let one = String::from_utf8_lossy(&out.stdout);
        let lane = format!("one prefilter for all: no text literal: RecordType {types} read");
        assert!(one.contains(&lane), "{one}");
        // Other literals are said to be checked only where there are some.
        assert_eq!(
            one.contains("literals checked before parsing"),
            checks,
            "{one}"
        );
    }
    assert_eq!(text.matches("  prefilter:").count(), 63, "{text}");
    // No rule is left parsing every record.
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
    // Every EQL rule runs, the sequence too, its steps' literals in the one prefilter;
    // the six ES|QL rules run, replayed run by run, their literals in the one search.
    assert!(
        text.contains(
            "  prefilter:         \"Add registered users to device.\" or \"OAuth2:Authorize\" \
             or \"OAuth2:Token\""
        ),
        "{text}"
    );
    assert!(!text.contains("reason:"), "{text}");
    assert_eq!(
        text.matches("  alerting:          ES|QL: the rows the query returns")
            .count(),
        6,
        "{text}"
    );
    assert!(
        text.contains("  prefilter:         \"New-InboxRule\" or \"Set-InboxRule\""),
        "{text}"
    );
    // The user-agent fields are parsed offline: no rule is said to need them.
    assert!(!text.contains("cannot match:      user_agent."), "{text}");
    // The travel rules are searched for by the key only an ECS document holds.
    assert_eq!(text.matches("it needs --geoip-db").count(), 2, "{text}");
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
    let (archive, esql) = (records(), esql_records());
    // The ES|QL fixtures too: an alert's rows come from records the shards split.
    let shared = [
        "--rules",
        dir.to_str().unwrap(),
        "--no-context",
        archive.to_str().unwrap(),
        esql.to_str().unwrap(),
    ];
    let single = run(&[&["hunt", "-q", "--format", "json"][..], &shared[..]].concat());
    let partials = common::shard_partials(tmp.path(), 3, &shared);
    let merged = common::merge(&partials, &["--format", "json"]);
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
    assert!(html.contains("<title>ualhunt: 63 rules"), "{html:.300}");
    assert!(html.contains("63 rules run, 44 fired, 0 not run."));
    let table = run(&[&base[..], &[archive.to_str().unwrap()]].concat());
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(
        table.starts_with("rules: 63 run, 44 fired, 0 not run"),
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

/// Lines of every kind the on-demand path must read exactly or leave to the full parse:
/// the rule pack's records as they are, spaced, with their integers as fractions, with a
/// decoy duplicate of every mapped key, with an escaped key, wrapped as PowerShell's
/// `AuditData` string, cut short, and generated archives in three key orders.
fn hostile_archive(dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(records()).unwrap();
    let mut out = String::new();
    for line in text.lines() {
        out.push_str(line);
        out.push('\n');
        out.push_str(&line.replace("\":", "\" : ").replace(",\"", " ,\t\""));
        out.push('\n');
        let mut fractions = String::new();
        let mut digits = String::new();
        for c in line.chars() {
            if c.is_ascii_digit() {
                digits.push(c);
                continue;
            }
            fractions.push_str(&digits);
            if !digits.is_empty() && (c == ',' || c == '}') {
                fractions.push_str(".0");
            }
            digits.clear();
            fractions.push(c);
        }
        out.push_str(&fractions);
        out.push('\n');
        let record: Value = serde_json::from_str(line).unwrap();
        let mut decoy = String::from("{");
        for key in record.as_object().unwrap().keys() {
            decoy.push_str(&format!("\"{key}\":\"decoy\","));
        }
        out.push_str(&line.replacen('{', &decoy, 1));
        out.push('\n');
        out.push_str(&line.replace("\"Workload\"", "\"Work\\u006coad\""));
        out.push('\n');
        let wrapped = serde_json::json!({
            "CreationDate": "5/2/2024 10:00:00 AM",
            "AuditData": line,
        });
        out.push_str(&wrapped.to_string());
        out.push('\n');
        out.push_str(&line[..line.len() / 2]);
        out.push('\n');
    }
    for (seed, order) in [
        (1, ualhunt_generate::KeyOrder::Generated),
        (2, ualhunt_generate::KeyOrder::Shuffled),
        (3, ualhunt_generate::KeyOrder::Purview),
    ] {
        let mut bytes = Vec::new();
        let opts = ualhunt_generate::GenOptions {
            size: 300_000,
            seed,
            shape: ualhunt_generate::GenShape::Ual,
            rate: 0.05,
            key_order: order,
        };
        ualhunt_generate::generate(&opts, &mut bytes).unwrap();
        out.push_str(&String::from_utf8(bytes).unwrap());
    }
    let path = dir.join("hostile.jsonl");
    std::fs::write(&path, out).unwrap();
    path
}

/// The on-demand path (`UALHUNT_ON_DEMAND=always`) and the full parse of every candidate
/// (the default) give the same report, byte for byte, for all the
/// published rules: findings, alerts, line accounting and malformed samples.
#[test]
fn on_demand_reading_reports_what_the_full_parse_reports() {
    let Some(rules) = rules_dir() else { return };
    let dir = tempfile::tempdir().unwrap();
    let archive = hostile_archive(dir.path());
    let report = |on_demand: &str, extra: &[&str]| {
        let mut cmd = Command::cargo_bin("ualhunt").unwrap();
        cmd.current_dir(root()).env("UALHUNT_ON_DEMAND", on_demand);
        cmd.args([
            "hunt",
            "--rules",
            rules.to_str().unwrap(),
            "--format",
            "json",
        ]);
        cmd.args(["--no-context", "--threads", "2", "--chunk-size", "64K"]);
        cmd.args(extra).arg(&archive);
        let out = cmd.output().unwrap();
        assert!(out.status.code().is_some_and(|c| c < 2), "{out:?}");
        out.stdout
    };
    let full = report("never", &[]);
    let parsed: Value = serde_json::from_slice(&full).unwrap();
    // The archive exercises both outcomes and the malformed accounting.
    assert!(
        parsed["scan"]["matched"].as_u64().unwrap() > 50,
        "{}",
        parsed["scan"]
    );
    assert!(
        parsed["scan"]["malformed"].as_u64().unwrap() > 40,
        "{}",
        parsed["scan"]
    );
    assert_eq!(
        String::from_utf8_lossy(&report("always", &[])),
        String::from_utf8_lossy(&full)
    );
    let reference: Value = serde_json::from_slice(&report("always", &["--no-prefilter"])).unwrap();
    assert_eq!(reference["by_rule"], parsed["by_rule"]);
    assert_eq!(reference["scan"]["matched"], parsed["scan"]["matched"]);
}

/// The records of `enriched.jsonl` each rule fired on, in each engine mode (after
/// checking that every mode finds the same), with `extra` flags.
fn enriched_findings(dir: &Path, extra: &[&str]) -> (BTreeMap<String, BTreeSet<String>>, Value) {
    let archive = root().join("tests/fixtures/rule_pack/enriched.jsonl");
    findings_in_every_mode(&archive, dir, extra)
}

/// The records of `archive` each rule fired on, in each engine mode and with three
/// threads and small chunks (after checking that every mode finds the same), with
/// `extra` flags.
fn findings_in_every_mode(
    archive: &Path,
    dir: &Path,
    extra: &[&str],
) -> (BTreeMap<String, BTreeSet<String>>, Value) {
    let mut first: Option<Value> = None;
    let split: &[&str] = &["--threads", "3", "--chunk-size", "200"];
    for mode in MODES.into_iter().chain([split]) {
        let mut args = vec![
            "hunt",
            "--rules",
            dir.to_str().unwrap(),
            "--format",
            "json",
            "--no-context",
        ];
        args.extend_from_slice(extra);
        args.extend_from_slice(mode);
        args.push(archive.to_str().unwrap());
        let out = run(&args);
        assert!(
            matches!(out.status.code(), Some(0 | 1)),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let report: Value = serde_json::from_slice(&out.stdout).unwrap();
        if let Some(f) = &first {
            assert_eq!(
                (&f["by_rule"], &f["actors"]),
                (&report["by_rule"], &report["actors"]),
                "mode {mode:?} differs from the default mode"
            );
        } else {
            first = Some(report);
        }
    }
    let report = first.unwrap();
    let mut by_rule: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (id, f) in common::by_rule_findings(&report) {
        let record = f["record_id"].as_str().unwrap().to_string();
        by_rule.entry(id.to_string()).or_default().insert(record);
    }
    (by_rule, report)
}

const TEAMFILTRATION: &str = "f541ca3a-5752-11f0-b44b-f661ea17fbcd";
const IMPOSSIBLE_TRAVEL: &str = "3896d4c0-6ad1-11ef-8c7b-f661ea17fbcc";
const ATYPICAL_REGION: &str = "32d3ad0e-6add-11ef-8c7b-f661ea17fbcc";

fn ids(suffixes: &[u8]) -> BTreeSet<String> {
    suffixes
        .iter()
        .map(|n| format!("e1000000-0000-4000-8000-00000000000{n}"))
        .collect()
}

/// The three rules whose fields only the pipeline's enrichment fills fire on records
/// written from their queries, in every engine mode: a Teams build's Electron agent
/// parsed into `user_agent.name`/`.os.name`/`.version` (no database needed), and two
/// sign-ins five minutes apart from Sweden and Bhutan with MaxMind's test databases
/// (an address in no database matches neither travel rule).
#[test]
fn the_enrichment_rules_fire_with_parsed_agents_and_geoip_in_every_mode() {
    let Some(dir) = rules_dir() else { return };
    let geo = root().join("tests/fixtures/geoip/GeoLite2-City-Test.mmdb");
    let asn = root().join("tests/fixtures/geoip/GeoLite2-ASN-Test.mmdb");
    let flags = [
        "--geoip-db",
        geo.to_str().unwrap(),
        "--geoip-db",
        asn.to_str().unwrap(),
    ];
    let (fired, report) = enriched_findings(&dir, &flags);
    assert_eq!(fired[TEAMFILTRATION], ids(&[4]), "{fired:?}");
    assert_eq!(fired[IMPOSSIBLE_TRAVEL], ids(&[1, 2]), "{fired:?}");
    assert_eq!(fired[ATYPICAL_REGION], ids(&[1]), "{fired:?}");
    assert_eq!(fired.len(), 3, "{fired:?}");
    assert_eq!(report["scan"]["warnings"], serde_json::json!([]));

    // Without a database the agent is still parsed; the travel rules run, find
    // nothing, and the report says why.
    let (fired, report) = enriched_findings(&dir, &[]);
    assert_eq!(fired[TEAMFILTRATION], ids(&[4]), "{fired:?}");
    assert_eq!(fired.len(), 1, "{fired:?}");
    let warnings = report["scan"]["warnings"].to_string();
    for name in [
        "M365 Identity Login from Impossible Travel Location",
        "M365 Identity Login from Atypical Region",
        "M365 Identity Device Code Grant with Unusual User and ASN",
    ] {
        assert!(warnings.contains(name), "{warnings}");
    }
    // Those three, and the ES|QL rules that read GeoIP or ASN fields.
    assert_eq!(warnings.matches("--geoip-db").count(), 14, "{warnings}");
}

/// The rule's line of `--stats` (run on `archive` with `extra` flags) and how many
/// records it was evaluated on.
fn rule_stats_line(dir: &Path, archive: &Path, extra: &[&str], name: &str) -> (String, u64) {
    let mut args = vec!["hunt", "-q", "--no-context", "--stats", "--format", "json"];
    args.extend_from_slice(&["-o", "/dev/null", "--rules", dir.to_str().unwrap()]);
    args.extend_from_slice(extra);
    args.push(archive.to_str().unwrap());
    let out = run(&args);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    let line = stderr
        .lines()
        .find(|l| l.contains(" evaluated (") && l.contains(&format!("  {name}  [")))
        .unwrap_or_else(|| panic!("no stats line for {name}: {stderr}"))
        .to_string();
    let evaluated = line.split_whitespace().next().unwrap().parse().unwrap();
    (line, evaluated)
}

/// Regression (issue 21): without a database the travel rules, whose every match needs
/// `source.geo.country_name`, had every raw `UserLoggedIn` record parsed for them (46 %
/// of the rule pack's candidates), though none could match. They are now searched for
/// by the field's key: no raw sign-in is evaluated for them, `--stats` says they need
/// `--geoip-db`; with a database the raw sign-ins are evaluated (and fire, above); an
/// ECS document carrying `source.geo.*` fires them in every mode, with a database or
/// without.
#[test]
fn a_travel_rule_without_a_database_parses_no_raw_sign_in_yet_fires_on_ecs_documents() {
    let Some(dir) = rules_dir() else { return };
    let raw = root().join("tests/fixtures/rule_pack/enriched.jsonl");
    let geo = root().join("tests/fixtures/geoip/GeoLite2-City-Test.mmdb");
    let with_db = ["--geoip-db", geo.to_str().unwrap()];
    for name in [
        "M365 Identity Login from Impossible Travel Location",
        "M365 Identity Login from Atypical Region",
    ] {
        let (line, evaluated) = rule_stats_line(&dir, &raw, &[], name);
        assert_eq!(evaluated, 0, "{line}");
        assert!(line.contains("\"country_name\""), "{line}");
        assert!(line.contains("it needs --geoip-db"), "{line}");
        let (line, evaluated) = rule_stats_line(&dir, &raw, &with_db, name);
        assert_eq!(evaluated, 3, "{line}");
        assert!(!line.contains("--geoip-db"), "{line}");
    }
    let ecs = root().join("tests/fixtures/rule_pack/enriched_ecs.ndjson");
    let signed_in: BTreeSet<String> = (1..=2)
        .map(|n| format!("e2000000-0000-4000-8000-00000000000{n}"))
        .collect();
    for extra in [&[][..], &with_db[..]] {
        let (fired, _) = findings_in_every_mode(&ecs, &dir, extra);
        assert_eq!(fired[IMPOSSIBLE_TRAVEL], signed_in, "{extra:?}: {fired:?}");
        assert_eq!(fired[ATYPICAL_REGION], signed_in, "{extra:?}: {fired:?}");
        assert_eq!(fired.len(), 2, "{extra:?}: {fired:?}");
    }
}

/// Regression: an ECS document that carries the raw record in `event.original` and its
/// own `source.geo.*` had the raw record evaluated and its own enrichment ignored, so a
/// GeoIP rule could not fire on it without `--geoip-db`. As Elastic evaluates the
/// document's fields, the document's own enrichment wins (a database fills only what it
/// lacks), in every mode.
#[test]
fn a_documents_own_enrichment_wins_over_its_event_original() {
    let Some(dir) = rules_dir() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let ecs = tmp.path().join("original.ndjson");
    // The two enriched sign-ins, each as a document that kept its raw record only as
    // `event.original` beside the pipeline's `source.*` (no `event.action`: the raw
    // record is what is read).
    let mut text = String::new();
    let source =
        std::fs::read_to_string(root().join("tests/fixtures/rule_pack/enriched_ecs.ndjson"))
            .unwrap();
    for line in source.lines() {
        let doc: Value = serde_json::from_str(line).unwrap();
        let mut raw = doc["o365"]["audit"].clone();
        raw["ClientIP"] = doc["source"]["ip"].clone();
        let wrapped = serde_json::json!({
            "@timestamp": doc["@timestamp"],
            "event": {"original": raw.to_string(), "dataset": "o365.audit"},
            "source": doc["source"],
        });
        text.push_str(&wrapped.to_string());
        text.push('\n');
    }
    std::fs::write(&ecs, &text).unwrap();
    let signed_in: BTreeSet<String> = (1..=2)
        .map(|n| format!("e2000000-0000-4000-8000-00000000000{n}"))
        .collect();
    let geo = root().join("tests/fixtures/geoip/GeoLite2-City-Test.mmdb");
    let with_db = ["--geoip-db", geo.to_str().unwrap()];
    for extra in [&[][..], &with_db[..]] {
        let (fired, report) = findings_in_every_mode(&ecs, &dir, extra);
        assert_eq!(fired[IMPOSSIBLE_TRAVEL], signed_in, "{extra:?}: {fired:?}");
        assert_eq!(fired[ATYPICAL_REGION], signed_in, "{extra:?}: {fired:?}");
        // The on-demand path finds the same.
        let mut args = vec![
            "hunt",
            "--rules",
            dir.to_str().unwrap(),
            "--format",
            "json",
            "--no-context",
        ];
        args.extend_from_slice(extra);
        args.push(ecs.to_str().unwrap());
        let out = Command::cargo_bin("ualhunt")
            .unwrap()
            .current_dir(root())
            .env("UALHUNT_ON_DEMAND", "always")
            .args(&args)
            .output()
            .unwrap();
        let on_demand: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(
            (&on_demand["by_rule"], &on_demand["actors"]),
            (&report["by_rule"], &report["actors"]),
            "on demand, {extra:?}"
        );
    }
    // The document's country is the one the rule saw, not the database's for the
    // address (the test database knows 89.160.20.112 as Sweden too, so a document that
    // says otherwise shows which won).
    let moved = text.replace("\"Sweden\"", "\"Norway\"");
    std::fs::write(&ecs, &moved).unwrap();
    let (_, report) = findings_in_every_mode(&ecs, &dir, &with_db);
    let shown = report.to_string();
    assert!(
        shown.contains("\"Norway\"") && !shown.contains("\"Sweden\""),
        "{shown}"
    );
}

/// `ualhunt rules` says which rules cannot match without a database, and no longer
/// says so of the user-agent fields or once the databases are given.
#[test]
fn rules_say_which_rules_need_a_geoip_database() {
    let Some(dir) = rules_dir() else { return };
    let out = run(&["rules", "--rules", dir.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    // The three enrichment rules' fields, and the ES|QL rules that read GeoIP or ASN
    // fields (in a clause or only in `values()`: either way null without a database).
    assert_eq!(text.matches("cannot match:").count(), 11, "{text}");
    assert!(!text.contains("cannot match:      user_agent."), "{text}");
    let geo = root().join("tests/fixtures/geoip/GeoLite2-City-Test.mmdb");
    let asn = root().join("tests/fixtures/geoip/GeoLite2-ASN-Test.mmdb");
    let out = run(&[
        "rules",
        "--rules",
        dir.to_str().unwrap(),
        "--geoip-db",
        geo.to_str().unwrap(),
        "--geoip-db",
        asn.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains("cannot match:"), "{text}");
    assert!(!text.contains("--geoip-db"), "{text}");
    let out = run(&["rules", "--geoip-db", "Cargo.toml"]);
    assert_eq!(out.status.code(), Some(2), "a file that is no database");
    assert!(String::from_utf8_lossy(&out.stderr).contains("--geoip-db"));
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

/// Three days of mailbox accesses from a few public addresses (every 3 minutes), and,
/// at the end of the file (so that only their times, not their places, say which runs
/// to read again), the network alerts of the suspicious-source rule: two from addresses
/// with mail access in the runs around them (rows), one from an address without (a
/// trigger that gives no row), and a record holding the alert rule's id that does not
/// meet the trigger (an `o365.audit` record).
fn suspicious_source_archive(dir: &Path, alerts: bool) -> PathBuf {
    let mut out = String::new();
    for i in 0..1440u32 {
        let (day, minute) = (4 + i / 480, (i % 480) * 3);
        let record = serde_json::json!({
            "CreationTime": format!("2024-03-{day:02}T{:02}:{:02}:00", minute / 60, minute % 60),
            "Id": format!("mail-{i}"),
            "Operation": "MailItemsAccessed",
            "RecordType": 50,
            "Workload": "Exchange",
            "UserId": format!("u{}@contoso.com", i % 5),
            "ResultStatus": "Succeeded",
            "ClientIPAddress": format!("81.2.69.{}", i % 7 + 1),
            "Pad": "x".repeat(200),
        });
        out.push_str(&format!("{record}\n"));
    }
    if alerts {
        let alert = |id: &str, time: &str, ip: &str, dataset: &str| {
            serde_json::json!({
                "@timestamp": time,
                "event": {"kind": "signal", "id": id},
                "data_stream": {"dataset": dataset},
                "source": {"ip": ip},
                "kibana": {"alert": {"rule": {"rule_id": "eb079c62-4481-4d6e-9643-3ca499df7aaa"}}},
            })
        };
        for a in [
            alert(
                "alert-1",
                "2024-03-04T10:07:00.000Z",
                "81.2.69.3",
                "panw.panos",
            ),
            alert(
                "alert-2",
                "2024-03-06T05:00:00.000Z",
                "81.2.69.5",
                "panw.panos",
            ),
            alert(
                "alert-3",
                "2024-03-05T12:00:00.000Z",
                "81.2.69.200",
                "panw.panos",
            ),
            alert(
                "alert-4",
                "2024-03-05T18:00:00.000Z",
                "81.2.69.6",
                "o365.audit",
            ),
        ] {
            out.push_str(&format!("{a}\n"));
        }
    }
    let path = dir.join(if alerts {
        "alerts.jsonl"
    } else {
        "quiet.jsonl"
    });
    std::fs::write(&path, out).unwrap();
    path
}

/// A rule whose rows need a record with a literal (its trigger) is searched for by that
/// literal alone, and its other records are read again only in the runs around the
/// records that meet it: the report is the one of parsing every line, whatever the
/// threads and chunks, with the rule firing on the records behind its rows.
#[test]
fn a_rule_searched_by_its_trigger_reports_what_parsing_every_line_reports() {
    let Some(dir) = rules_dir() else { return };
    let rule = dir.join("initial_access_azure_o365_with_network_alert.toml");
    let tmp = tempfile::tempdir().unwrap();
    for alerts in [true, false] {
        let archive = suspicious_source_archive(tmp.path(), alerts);
        let report = |extra: &[&str]| -> Value {
            let mut args = vec![
                "hunt",
                "--rules",
                rule.to_str().unwrap(),
                "--format",
                "json",
            ];
            args.extend_from_slice(extra);
            args.push(archive.to_str().unwrap());
            let out = run(&args);
            assert!(out.status.code().is_some_and(|c| c < 2), "{out:?}");
            serde_json::from_slice(&out.stdout).unwrap()
        };
        let reference = report(&["--no-prefilter", "--threads", "1"]);
        for mode in [
            &[][..],
            &["--threads", "1"],
            &["--threads", "2", "--chunk-size", "8K"],
            &["--chunk-size", "64K"],
        ] {
            let gated = report(mode);
            for key in ["by_rule", "actors", "rules"] {
                assert_eq!(gated[key], reference[key], "{mode:?} {key}");
            }
            for key in ["lines", "records", "matched", "held_back", "events"] {
                assert_eq!(gated["scan"][key], reference["scan"][key], "{mode:?} {key}");
            }
        }
        let fired: BTreeSet<String> = fired(&reference).into_keys().collect();
        if !alerts {
            assert!(fired.is_empty(), "{fired:?}");
            continue;
        }
        // The records behind the two rows: the alerts and the mail from their addresses
        // in the 8-hour runs around them; not the alert from an address without mail,
        // nor the record that only holds the literal.
        for id in ["alert-1", "alert-2", "mail-65", "mail-359", "mail-921"] {
            assert!(fired.contains(id), "{id}: {fired:?}");
        }
        for id in ["alert-3", "alert-4", "mail-58", "mail-366", "mail-914"] {
            assert!(!fired.contains(id), "{id}: {fired:?}");
        }
    }

    // Only the literal is searched, and the second look reads a part of the archive.
    let set = ualhunt_engine::rule::load::load(std::slice::from_ref(&rule)).unwrap();
    let archive = suspicious_source_archive(tmp.path(), true);
    let mut config = ualhunt_engine::Config::new(vec![archive]);
    config.rules = set.rules;
    config.context = false;
    config.chunk_size = 8192;
    let gated = ualhunt_engine::run(&config).unwrap();
    assert_eq!(gated.counts.candidates, 4, "{:?}", gated.counts);
    let triggers = gated.stats.triggers.as_ref().expect("a gated rule");
    assert_eq!(triggers.fired, 3);
    let second = triggers.pass.as_ref().expect("a second look");
    assert!(
        second.bytes < gated.bytes * 3 / 4,
        "{} of {}",
        second.bytes,
        gated.bytes
    );
    config.triggers = false;
    let every = ualhunt_engine::run(&config).unwrap();
    assert_eq!(every.counts.candidates, every.counts.records);
    assert_eq!(common::finding_pairs(&gated), common::finding_pairs(&every));
    assert_eq!(gated.held_back, every.held_back);
}
