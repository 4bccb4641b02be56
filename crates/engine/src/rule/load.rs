//! Rule packs: rule files as Elastic publishes them, loaded from files and directories.
//!
//! Place in the flow: `cli` calls [`load`] for each `--rules PATH`; the result is the
//! rule set a `Config` runs. Two layouts are read, told apart by their tables:
//!
//! - Elastic's own (`elastic/detection-rules`): `[metadata]`, `[rule]` with `rule_id`,
//!   `name`, `type`, `language`, `query`, `severity`, `risk_score`, `index`, `from`,
//!   `[[rule.threat]]` (tactic, techniques, sub-techniques), and so on;
//! - ualhunt's flat one (the built-in rule file): the same metadata at the top level,
//!   plus the analyses, evidence items and context selections that drive the
//!   investigation.
//!
//! A published rule whose `rule_id` is a built-in rule's keeps its published query and
//! metadata and takes the built-in rule's analyses, evidence and context selections, so
//! the bypass investigation runs the same whether the rule comes built in or from
//! Elastic's file. KQL rules (`query`, `new_terms`, `threshold`), EQL rules (`type =
//! "eql"`, event queries and sequences) and ES|QL rules (`type = "esql"`, replayed run by
//! run) run; every other rule is kept as [`NotRun`] with the reason, so nothing is
//! skipped silently. Sigma rules (`.yml`, `.yaml`, one rule per YAML document) load
//! beside them through [`super::sigma`], into the same pack; all the Sigma files of a
//! load go together ([`super::sigma::load_pack`]), so that a correlation may name the
//! rules of another file.

use std::path::PathBuf;

use serde::Deserialize;

use super::{Alerting, BUILTIN, EvidenceSpec, Rule, RuleError, RuleMeta, Threat, parse_relative};

/// The rules a run uses, and those it was given but cannot run.
#[derive(Clone, Debug, Default)]
pub struct RuleSet {
    /// Rules that run, in load order (files in sorted path order).
    pub rules: Vec<Rule>,
    /// Rules that were loaded but cannot run offline, with the reason.
    pub not_run: Vec<NotRun>,
}

/// A rule that was loaded and does not run.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NotRun {
    /// Elastic's `rule_id`.
    pub id: String,
    /// The rule's name.
    pub name: String,
    /// The file it came from.
    pub path: String,
    /// Elastic rule type (`eql`, `esql`, `new_terms`, `threshold`, …).
    pub rule_type: String,
    /// Query language.
    pub language: String,
    /// Why it does not run.
    pub reason: String,
    /// Its investigation guide (Elastic's `note`, Markdown), for `ualhunt rules
    /// --guide`: a rule that does not run may still be read about. Not part of a report
    /// or a partial (serde skips it).
    #[serde(skip)]
    pub note: Option<String>,
    /// What it needs set up (Elastic's `setup`, Markdown); like `note`.
    #[serde(skip)]
    pub setup: Option<String>,
}

/// A rule file that could not be read.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct LoadError {
    /// The file (or directory) at fault.
    pub path: String,
    /// What was wrong.
    pub message: String,
}

impl RuleSet {
    /// The built-in rules.
    pub fn builtin() -> RuleSet {
        RuleSet {
            rules: Rule::builtin(),
            not_run: Vec::new(),
        }
    }
}

/// Loads every rule file under `paths` with the built-in Sigma field mapping (see
/// [`load_with`]).
pub fn load(paths: &[PathBuf]) -> Result<RuleSet, LoadError> {
    load_with(paths, None)
}

/// Whether a path names a Sigma rule file (`.yml`, `.yaml`).
pub fn is_sigma(path: &std::path::Path) -> bool {
    path.extension()
        .is_some_and(|x| x.eq_ignore_ascii_case("yml") || x.eq_ignore_ascii_case("yaml"))
}

/// Loads every rule file under `paths`: a file is read whatever its name (as Sigma YAML
/// when it ends in `.yml` or `.yaml`, else as TOML); a directory is walked recursively in
/// sorted order and its `*.toml`, `*.yml` and `*.yaml` files are read. A Sigma file may
/// hold several rules (YAML documents); `sigma_mapping` is the text of the field mapping
/// they are read through (`None`: the built-in one). Two rules with the same id are an
/// error naming both files.
pub fn load_with(paths: &[PathBuf], sigma_mapping: Option<&str>) -> Result<RuleSet, LoadError> {
    let mut files = Vec::new();
    for path in paths {
        let meta = std::fs::metadata(path).map_err(|e| LoadError {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        if meta.is_dir() {
            for entry in walkdir::WalkDir::new(path).sort_by_file_name() {
                let entry = entry.map_err(|e| LoadError {
                    path: path.display().to_string(),
                    message: e.to_string(),
                })?;
                let p = entry.path();
                if entry.file_type().is_file()
                    && (p.extension().is_some_and(|x| x == "toml") || is_sigma(p))
                {
                    files.push(p.to_path_buf());
                }
            }
        } else {
            files.push(path.clone());
        }
    }
    let mut texts = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).map_err(|e| LoadError {
            path: file.display().to_string(),
            message: e.to_string(),
        })?;
        texts.push(text);
    }
    let mut read = read_all(&files, &texts);
    // The Sigma files load together: a correlation may name rules of another file.
    // Each read once: its error names its file.
    let sigma_files: Vec<usize> = (0..files.len()).filter(|&i| is_sigma(&files[i])).collect();
    let mut sigma_docs = Vec::with_capacity(sigma_files.len());
    for &i in &sigma_files {
        let Some(Read::Sigma(docs)) = read[i].take() else {
            unreachable!("a Sigma file is read as Sigma");
        };
        sigma_docs.push(docs.map_err(|e| {
            LoadError {
                path: files[i].display().to_string(),
                message: RuleError::Invalid {
                    name: "Sigma file".into(),
                    message: e.to_string(),
                }
                .to_string(),
            }
        })?);
    }
    let mut sigma_loaded = if sigma_docs.is_empty() {
        Vec::new()
    } else {
        super::sigma::load_parsed(sigma_docs, sigma_mapping).map_err(|e| LoadError {
            path: files[sigma_files[0]].display().to_string(),
            message: e.to_string(),
        })?
    }
    .into_iter();
    let mut set = RuleSet::default();
    let mut seen: Vec<(String, String)> = Vec::new();
    for (file, read) in files.iter().zip(&mut read) {
        let shown = file.display().to_string();
        let fail = |e: RuleError| LoadError {
            path: shown.clone(),
            message: e.to_string(),
        };
        let loaded = match read.take() {
            Some(Read::Elastic(elastic)) => vec![elastic.map_err(fail)?],
            _ => sigma_loaded.next().unwrap_or_default(),
        };
        for loaded in loaded {
            let id = match &loaded {
                Loaded::Runs(rule) => rule.meta.id.clone(),
                Loaded::NotRun(n) => n.id.clone(),
            };
            if let Some((_, first)) = seen.iter().find(|(i, _)| *i == id) {
                return Err(LoadError {
                    path: shown,
                    message: format!("rule id {id} is already defined in {first}"),
                });
            }
            seen.push((id, shown.clone()));
            match loaded {
                Loaded::Runs(mut rule) => {
                    rule.path = Some(shown.clone());
                    set.rules.push(*rule);
                }
                Loaded::NotRun(mut n) => {
                    n.path = shown.clone();
                    set.not_run.push(n);
                }
            }
        }
    }
    if set.rules.len() > usize::from(u16::MAX) {
        return Err(LoadError {
            path: paths
                .first()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            message: format!(
                "{} rules: at most {} run at once",
                set.rules.len(),
                u16::MAX
            ),
        });
    }
    Ok(set)
}

/// One rule file's text, parsed: Elastic's layout (or ualhunt's) or Sigma YAML.
enum Read {
    Elastic(Result<Loaded, RuleError>),
    Sigma(Result<Vec<ualhunt_query::sigma::Document>, ualhunt_query::sigma::ParseError>),
}

/// Each file's text parsed, in file order. A pack of many files is parsed on several
/// threads (TOML, YAML and queries are most of what a hunt over a small input costs);
/// each file alone, so the results are the one-thread reading's.
fn read_all(files: &[PathBuf], texts: &[String]) -> Vec<Option<Read>> {
    let read = |i: usize| match is_sigma(&files[i]) {
        true => Read::Sigma(ualhunt_query::sigma::parse(&texts[i])),
        false => Read::Elastic(parse(&texts[i])),
    };
    let workers = std::thread::available_parallelism()
        .map_or(1, std::num::NonZeroUsize::get)
        .min(files.len() / FILES_A_THREAD + 1);
    if workers <= 1 {
        return (0..files.len()).map(|i| Some(read(i))).collect();
    }
    let mut out: Vec<Option<Read>> = (0..files.len()).map(|_| None).collect();
    std::thread::scope(|scope| {
        let read = &read;
        let parts: Vec<_> = (0..workers)
            .map(|w| {
                scope.spawn(move || {
                    (w..files.len())
                        .step_by(workers)
                        .map(|i| (i, read(i)))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        for part in parts {
            match part.join() {
                Ok(part) => part.into_iter().for_each(|(i, r)| out[i] = Some(r)),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
    });
    out
}

/// How many rule files make another parsing thread worth starting.
const FILES_A_THREAD: usize = 16;

/// One rule file, read.
pub enum Loaded {
    /// A rule that runs.
    Runs(Box<Rule>),
    /// A rule that does not, and why.
    NotRun(NotRun),
}

/// Reads one rule file's text, in either layout.
pub fn parse(text: &str) -> Result<Loaded, RuleError> {
    // One reading of the text tells the layouts apart and reads Elastic's; only a file
    // it cannot read is read again as before (a table, then Elastic's layout), so that
    // its error is the one that reading gives.
    let r = match toml::from_str::<AnyLayout>(text) {
        Ok(AnyLayout { rule: Some(r) }) => r,
        Ok(AnyLayout { rule: None }) => {
            return Rule::from_toml(text).map(|r| Loaded::Runs(Box::new(r)));
        }
        Err(_) => {
            let value: toml::Table = toml::from_str(text)?;
            if !value.contains_key("rule") {
                return Rule::from_toml(text).map(|r| Loaded::Runs(Box::new(r)));
            }
            let file: ElasticFile = toml::from_str(text)?;
            file.rule
        }
    };
    let mut alerting = None;
    // An ES|QL rule names its indices in its query (`FROM …`), not in `index`.
    let mut from_sources: Vec<String> = Vec::new();
    let why_not = match (r.rule_type.as_str(), r.language.as_deref().unwrap_or("")) {
        ("query", "kuery") => None,
        ("new_terms" | "threshold", "kuery") => match alerting_of(&r) {
            Ok(a) => {
                alerting = Some(a);
                None
            }
            Err(why) => Some(why),
        },
        ("query" | "new_terms" | "threshold", other) => Some(format!(
            "a {} rule in {other:?}; only KQL (\"kuery\") queries run",
            r.rule_type
        )),
        // An event query and a sequence run; a query that does not parse is the file's
        // error, below.
        ("eql", "eql") => None,
        ("eql", other) => Some(format!(
            "an eql rule in {other:?}; EQL rules are in \"eql\""
        )),
        ("esql", "esql") => match esql_runs(&r) {
            Ok((a, sources)) => {
                alerting = Some(a);
                from_sources = sources;
                None
            }
            Err(why) => Some(why),
        },
        ("esql", other) => Some(format!(
            "an esql rule in {other:?}; ES|QL rules are in \"esql\""
        )),
        ("machine_learning", _) => Some("needs an Elastic machine-learning job".into()),
        (other, _) => Some(format!("rule type {other:?} is not a per-record query")),
    };
    if let Some(reason) = why_not {
        return Ok(Loaded::NotRun(NotRun {
            id: r.rule_id,
            name: r.name,
            path: String::new(),
            rule_type: r.rule_type,
            language: r.language.unwrap_or_default(),
            reason,
            note: non_empty(r.note),
            setup: non_empty(r.setup),
        }));
    }
    let threat = r
        .threat
        .iter()
        .flat_map(|t| {
            let tactic = t.tactic.as_ref().map(|x| x.label()).unwrap_or_default();
            let techniques: Vec<(String, Option<String>)> = t
                .technique
                .iter()
                .flat_map(|tech| {
                    let name = tech.label();
                    if tech.subtechnique.is_empty() {
                        vec![(name, None)]
                    } else {
                        tech.subtechnique
                            .iter()
                            .map(|s| (name.clone(), Some(s.label())))
                            .collect()
                    }
                })
                .collect();
            if techniques.is_empty() {
                vec![Threat {
                    tactic: tactic.clone(),
                    technique: String::new(),
                    subtechnique: None,
                }]
            } else {
                techniques
                    .into_iter()
                    .map(|(technique, subtechnique)| Threat {
                        tactic: tactic.clone(),
                        technique,
                        subtechnique,
                    })
                    .collect()
            }
        })
        .collect();
    let mut meta = RuleMeta {
        id: r.rule_id,
        name: r.name,
        renamed: None,
        description: r.description,
        rule_type: r.rule_type,
        language: r.language.unwrap_or_default(),
        index: if r.index.is_empty() {
            from_sources
        } else {
            r.index
        },
        severity: r.severity,
        risk_score: r.risk_score,
        schedule: r.from.map(|f| format!("from {f}")).unwrap_or_default(),
        false_positives: r.false_positives,
        query: r.query.unwrap_or_default().trim().to_string(),
        threat,
        analyses: super::default_analyses(),
        evidence: default_evidence(),
        context: Vec::new(),
        alerting,
        author: None,
        references: r.references,
        sigma_mapping: None,
        note: non_empty(r.note),
        setup: non_empty(r.setup),
        building_block: non_empty(r.building_block_type),
    };
    if let Some(builtin) = builtin_extension(&meta.id) {
        meta.analyses = builtin.analyses;
        meta.evidence = builtin.evidence;
        meta.context = builtin.context;
    }
    Rule::compile(meta).map(|r| Loaded::Runs(Box::new(r)))
}

/// A text field of a rule file, `None` when absent or blank.
fn non_empty(text: Option<String>) -> Option<String> {
    text.filter(|t| !t.trim().is_empty())
}

/// Elastic's default rule interval, when a rule file names none.
const DEFAULT_INTERVAL: i64 = 300;

/// An ES|QL rule's runs: its look-back (`from`) and its `interval` (Elastic's default
/// 5 minutes when absent), or why it cannot run. A query that does not parse or uses
/// what is not supported is a reason too: the rule is listed as not run, with it.
fn esql_runs(r: &ElasticRule) -> Result<(Alerting, Vec<String>), String> {
    let window = r
        .from
        .as_deref()
        .and_then(parse_relative)
        .ok_or_else(|| format!("esql: look-back {:?} is not now-<n><s|m|h|d|w>", r.from))?;
    let interval = match r.interval.as_deref() {
        None => DEFAULT_INTERVAL,
        Some(text) => parse_relative(&format!("now-{text}"))
            .ok_or_else(|| format!("esql: interval {text:?} is not <n><s|m|h|d|w>"))?,
    };
    let query = super::esql::Query::parse(r.query.as_deref().unwrap_or(""))
        .map_err(|e| format!("ES|QL: {e}"))?;
    let alerting = Alerting::Esql { window, interval };
    match alerting.invalid() {
        Some(why) => Err(format!("esql: {why}")),
        None => Ok((alerting, query.sources)),
    }
}

/// A `new_terms` or `threshold` rule's alerting, or why it cannot run.
fn alerting_of(r: &ElasticRule) -> Result<Alerting, String> {
    let alerting = read_alerting(r)?;
    match alerting.invalid() {
        Some(why) => Err(format!("{}: {why}", r.rule_type)),
        None => Ok(alerting),
    }
}

fn read_alerting(r: &ElasticRule) -> Result<Alerting, String> {
    if r.rule_type == "threshold" {
        let t: Threshold = r
            .threshold
            .clone()
            .ok_or("threshold: the rule has no [rule.threshold]")?
            .try_into()
            .map_err(|e| format!("threshold: [rule.threshold] is not read: {e}"))?;
        let window = r.from.as_deref().and_then(parse_relative).ok_or_else(|| {
            format!(
                "threshold: look-back {:?} is not now-<n><s|m|h|d|w>",
                r.from
            )
        })?;
        let cardinality = match t.cardinality.as_slice() {
            [] => None,
            [c] => Some((c.field.clone(), c.value)),
            _ => return Err("threshold: more than one cardinality condition".into()),
        };
        return Ok(Alerting::Threshold {
            fields: t.field.clone().into_vec(),
            value: t.value,
            cardinality,
            window,
            at_most: None,
            not: None,
        });
    }
    let n: NewTerms = r
        .new_terms
        .clone()
        .ok_or("new_terms: the rule has no [rule.new_terms]")?
        .try_into()
        .map_err(|e| format!("new_terms: [rule.new_terms] is not read: {e}"))?;
    let start = n
        .history_window_start
        .first()
        .map(|h| h.value.as_str())
        .unwrap_or("");
    let history = parse_relative(start).ok_or_else(|| {
        format!("new_terms: history window start {start:?} is not now-<n><s|m|h|d|w>")
    })?;
    Ok(Alerting::NewTerms {
        fields: n.value.clone(),
        history,
    })
}

/// The investigation a built-in rule file adds to the published rule of the same id.
fn builtin_extension(id: &str) -> Option<RuleMeta> {
    // Read once: every published rule of a pack asks.
    static META: std::sync::OnceLock<Option<RuleMeta>> = std::sync::OnceLock::new();
    let meta = META.get_or_init(|| toml::from_str(BUILTIN).ok()).as_ref()?;
    (meta.id == id).then(|| meta.clone())
}

/// What a finding of a published rule shows besides actor, time, record id and source
/// address: what was acted on, the command line (Exchange and other cmdlets), the
/// result, who the actor is and from which client.
pub(crate) fn default_evidence() -> Vec<EvidenceSpec> {
    use super::EvidenceKind::{CommandLine, Keyword, UserType};
    let item = |name: &str, fields: &[&str], kind| EvidenceSpec {
        name: name.to_string(),
        fields: fields.iter().map(|f| f.to_string()).collect(),
        kind,
    };
    vec![
        // What the cmdlet acted on (`-Identity`), else whom it acted for (`-User`: a
        // role assignee), else the record's object.
        item(
            "target",
            &[
                "o365.audit.Parameters.Identity",
                "o365.audit.Parameters.User",
                "o365.audit.ObjectId",
            ],
            Keyword,
        ),
        item("command_line", &[], CommandLine),
        item(
            "result_status",
            &["o365.audit.ResultStatus", "event.outcome"],
            Keyword,
        ),
        item("user_type", &["o365.audit.UserType"], UserType),
        item(
            "user_agent",
            &[
                "user_agent.original",
                "o365.audit.UserAgent",
                "o365.audit.ClientInfoString",
            ],
            Keyword,
        ),
        item("tenant", &["o365.audit.OrganizationName"], Keyword),
    ]
}

/// `elastic/detection-rules` rule file: only what ualhunt reads.
#[derive(Deserialize)]
struct ElasticFile {
    rule: ElasticRule,
}

/// A rule file of either layout: Elastic's has a `rule` table, ualhunt's flat one none.
#[derive(Deserialize)]
struct AnyLayout {
    rule: Option<ElasticRule>,
}

#[derive(Deserialize)]
struct ElasticRule {
    rule_id: String,
    name: String,
    #[serde(rename = "type")]
    rule_type: String,
    #[serde(default)]
    language: Option<String>,
    #[serde(default)]
    query: Option<String>,
    #[serde(default)]
    description: String,
    severity: String,
    risk_score: u32,
    #[serde(default)]
    index: Vec<String>,
    #[serde(default)]
    from: Option<String>,
    #[serde(default)]
    interval: Option<String>,
    #[serde(default)]
    false_positives: Vec<String>,
    /// Where to read more (Microsoft's documentation, write-ups of the technique).
    #[serde(default)]
    references: Vec<String>,
    #[serde(default)]
    threat: Vec<ElasticThreat>,
    /// The investigation guide (Markdown).
    #[serde(default)]
    note: Option<String>,
    /// What the rule needs set up (Markdown).
    #[serde(default)]
    setup: Option<String>,
    /// `"default"` for a building-block rule.
    #[serde(default)]
    building_block_type: Option<String>,
    // Read as they are and checked by `alerting_of`: a malformed table makes its rule
    // not run, never the whole pack fail.
    #[serde(default)]
    new_terms: Option<toml::Value>,
    #[serde(default)]
    threshold: Option<toml::Value>,
}

/// `[rule.new_terms]`: `field = "new_terms_fields"`, `value` the fields, and
/// `[[rule.new_terms.history_window_start]]` with `value = "now-14d"`.
#[derive(Deserialize)]
struct NewTerms {
    value: Vec<String>,
    #[serde(default)]
    history_window_start: Vec<HistoryStart>,
}

#[derive(Deserialize)]
struct HistoryStart {
    value: String,
}

/// `[rule.threshold]`: `field` (one or a list), `value`, and `[[…cardinality]]`.
#[derive(Deserialize)]
struct Threshold {
    #[serde(default)]
    field: OneOrMany,
    value: u64,
    #[serde(default)]
    cardinality: Vec<Cardinality>,
}

#[derive(Deserialize)]
struct Cardinality {
    field: String,
    value: u64,
}

#[derive(Clone, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl Default for OneOrMany {
    fn default() -> Self {
        OneOrMany::Many(Vec::new())
    }
}

impl OneOrMany {
    fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(s) if s.is_empty() => Vec::new(),
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        }
    }
}

#[derive(Deserialize)]
struct ElasticThreat {
    #[serde(default)]
    tactic: Option<Named>,
    #[serde(default)]
    technique: Vec<Technique>,
}

#[derive(Deserialize)]
struct Technique {
    id: String,
    name: String,
    #[serde(default)]
    subtechnique: Vec<Named>,
}

impl Technique {
    fn label(&self) -> String {
        format!("{} {}", self.id, self.name)
    }
}

#[derive(Deserialize)]
struct Named {
    id: String,
    name: String,
}

impl Named {
    fn label(&self) -> String {
        format!("{} {}", self.id, self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PUBLISHED: &str = r#"
[metadata]
creation_date = "2020/11/20"
integration = ["o365"]

[rule]
author = ["Elastic"]
description = "A transport rule was created."
from = "now-30m"
index = ["logs-o365.audit-*"]
language = "kuery"
name = "New Transport Rule"
references = ["https://learn.microsoft.com/en-us/powershell/module/exchange/new-transportrule"]
risk_score = 47
rule_id = "ff4dd44a-0ac6-44c4-8609-3f81bc820f02"
severity = "medium"
type = "query"
query = '''
data_stream.dataset:o365.audit and event.action:"New-TransportRule" and event.outcome:success
'''

[[rule.threat]]
framework = "MITRE ATT&CK"
[[rule.threat.technique]]
id = "T1537"
name = "Transfer Data to Cloud Account"
[rule.threat.tactic]
id = "TA0010"
name = "Exfiltration"
"#;

    #[test]
    fn a_published_query_rule_runs_with_its_metadata() {
        let Loaded::Runs(rule) = parse(PUBLISHED).unwrap() else {
            panic!("not run");
        };
        assert_eq!(rule.meta.id, "ff4dd44a-0ac6-44c4-8609-3f81bc820f02");
        assert_eq!(rule.meta.severity, "medium");
        assert_eq!(rule.meta.schedule, "from now-30m");
        assert_eq!(
            rule.meta.references,
            ["https://learn.microsoft.com/en-us/powershell/module/exchange/new-transportrule"]
        );
        assert_eq!(rule.meta.threat[0].tactic, "TA0010 Exfiltration");
        assert_eq!(
            rule.meta.threat[0].technique,
            "T1537 Transfer Data to Cloud Account"
        );
        assert!(rule.evidence_index("target").is_some());
        assert!(!rule.has_analysis(super::super::ANALYSIS_BYPASS));
    }

    /// `PUBLISHED` as an EQL rule with this query.
    fn eql_rule(query: &str) -> String {
        PUBLISHED
            .replace("type = \"query\"", "type = \"eql\"")
            .replace("language = \"kuery\"", "language = \"eql\"")
            .replace(
                "data_stream.dataset:o365.audit and event.action:\"New-TransportRule\" and event.outcome:success",
                query,
            )
    }

    #[test]
    fn an_eql_event_query_and_a_sequence_run() {
        let event =
            "web where event.action == \"New-TransportRule\" and event.outcome == \"success\"";
        let Loaded::Runs(rule) = parse(&eql_rule(event)).unwrap() else {
            panic!("an EQL event query must run");
        };
        assert!(matches!(rule.query, super::super::Query::Eql(_)));
        assert_eq!(
            rule.query.required_literals(),
            Some(vec![crate::field::Literal::operation("New-TransportRule")])
        );
        let sequence = "sequence by user.id with maxspan=5m [web where event.action == \"A\"] \
            [web where event.action == \"B\"]";
        let Loaded::Runs(rule) = parse(&eql_rule(sequence)).unwrap() else {
            panic!("a sequence must run");
        };
        assert!(rule.query.sequence().is_some());
        // One prefilter for the steps: a record may match either.
        assert_eq!(
            rule.query.required_literals(),
            Some(vec![
                crate::field::Literal::operation("A"),
                crate::field::Literal::operation("B")
            ])
        );
        let items: Vec<&str> = rule.evidence.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(items[items.len() - 3..], ["sequence", "step_1", "step_2"]);
        // An EQL query that does not parse is the file's error, with the offset.
        let Err(e) = parse(&eql_rule("web where event.action = \"A\"")) else {
            panic!("a bad EQL query must not load");
        };
        assert!(
            e.to_string().contains("EQL syntax error at offset 23"),
            "{e}"
        );
    }

    /// `PUBLISHED` as an ES|QL rule with this query (and no `index`, as Elastic's).
    fn esql_rule(query: &str) -> String {
        PUBLISHED
            .replace("index = [\"logs-o365.audit-*\"]\n", "")
            .replace("type = \"query\"", "type = \"esql\"")
            .replace("language = \"kuery\"", "language = \"esql\"")
            .replace(
                "data_stream.dataset:o365.audit and event.action:\"New-TransportRule\" and event.outcome:success",
                query,
            )
    }

    #[test]
    fn an_esql_rule_runs_with_its_runs_and_an_unsupported_one_says_why_not() {
        let query = "from logs-o365.audit-* | where event.action == \"New-TransportRule\" \
            | stats n = count(*) by user.id";
        let Loaded::Runs(rule) = parse(&esql_rule(query)).unwrap() else {
            panic!("an ES|QL rule must run");
        };
        assert!(matches!(rule.query, super::super::Query::Esql(_)));
        // No `interval` in the file: Elastic's default, 5 minutes.
        assert_eq!(
            rule.meta.alerting,
            Some(Alerting::Esql {
                window: 30 * 60,
                interval: 300
            })
        );
        assert_eq!(
            rule.query.required_literals(),
            Some(vec![crate::field::Literal::operation("New-TransportRule")])
        );
        assert!(
            rule.evidence_index(super::super::ESQL_ROWS_EVIDENCE)
                .is_some()
        );
        assert!(rule.evidence_index(super::super::ALERT_EVIDENCE).is_some());
        // The indices come from FROM when the file names none.
        assert_eq!(rule.meta.index, ["logs-o365.audit-*"]);
        let with_interval =
            esql_rule(query).replace("from = \"now-30m\"", "from = \"now-9m\"\ninterval = \"8m\"");
        let Loaded::Runs(rule) = parse(&with_interval).unwrap() else {
            panic!("runs");
        };
        assert_eq!(
            rule.meta.alerting,
            Some(Alerting::Esql {
                window: 9 * 60,
                interval: 8 * 60
            })
        );
        // What is not supported: the rule does not run, and says why.
        let Loaded::NotRun(n) = parse(&esql_rule("from x | rename a as b")).unwrap() else {
            panic!("RENAME must not run");
        };
        assert!(n.reason.contains("rename is not supported"), "{}", n.reason);
        let bad = esql_rule(query).replace(
            "from = \"now-30m\"",
            "from = \"now-30m\"\ninterval = \"soon\"",
        );
        let Loaded::NotRun(n) = parse(&bad).unwrap() else {
            panic!("a bad interval must not run");
        };
        assert!(n.reason.contains("interval"), "{}", n.reason);
    }

    #[test]
    fn other_rule_types_are_kept_with_the_reason() {
        let text = PUBLISHED.replace("type = \"query\"", "type = \"eql\"");
        let Loaded::NotRun(n) = parse(&text).unwrap() else {
            panic!("runs");
        };
        assert_eq!(n.rule_type, "eql");
        assert!(n.reason.contains("EQL"), "{}", n.reason);
        // A new-terms rule without its terms cannot run either, and says why.
        let text = PUBLISHED.replace("type = \"query\"", "type = \"new_terms\"");
        let Loaded::NotRun(n) = parse(&text).unwrap() else {
            panic!("runs");
        };
        assert!(n.reason.contains("[rule.new_terms]"), "{}", n.reason);
    }

    #[test]
    fn new_terms_and_threshold_rules_run_with_their_alerting() {
        let text = PUBLISHED.replace("type = \"query\"", "type = \"new_terms\"")
            + r#"
[rule.new_terms]
field = "new_terms_fields"
value = ["user.id", "source.ip"]
[[rule.new_terms.history_window_start]]
field = "history_window_start"
value = "now-14d"
"#;
        let Loaded::Runs(rule) = parse(&text).unwrap() else {
            panic!("not run");
        };
        assert_eq!(
            rule.meta.alerting,
            Some(Alerting::NewTerms {
                fields: vec!["user.id".into(), "source.ip".into()],
                history: 14 * 86_400,
            })
        );
        assert!(rule.evidence_index("source.ip").is_some());
        assert!(rule.evidence_index(super::super::ALERT_EVIDENCE).is_some());

        let text = PUBLISHED.replace("type = \"query\"", "type = \"threshold\"")
            + "\n[rule.threshold]\nfield = [\"source.ip\"]\nvalue = 25\n";
        let Loaded::Runs(rule) = parse(&text).unwrap() else {
            panic!("not run");
        };
        assert_eq!(
            rule.meta.alerting,
            Some(Alerting::Threshold {
                fields: vec!["source.ip".into()],
                value: 25,
                cardinality: None,
                window: 30 * 60,
                at_most: None,
                not: None,
            })
        );
        assert_eq!(
            rule.meta.alerting.unwrap().to_string(),
            "threshold: 25 matches with the same source.ip within 30m"
        );
    }

    #[test]
    fn a_malformed_alerting_table_makes_its_rule_not_run_not_the_pack_fail() {
        for (rule_type, table) in [
            ("new_terms", "[rule.new_terms]\nvalue = \"user.id\"\n"),
            (
                "new_terms",
                "[rule.new_terms]\nvalue = []\n[[rule.new_terms.history_window_start]]\nvalue = \"now-7d\"\n",
            ),
            (
                "new_terms",
                "[rule.new_terms]\nvalue = [\"user.id\"]\n[[rule.new_terms.history_window_start]]\nvalue = \"now-99999w\"\n",
            ),
            ("threshold", "[rule.threshold]\nfield = [\"source.ip\"]\n"),
            (
                "threshold",
                "[rule.threshold]\nfield = [\"source.ip\"]\nvalue = 0\n",
            ),
        ] {
            let text = PUBLISHED.replace("type = \"query\"", &format!("type = \"{rule_type}\""))
                + "\n"
                + table;
            let Loaded::NotRun(n) = parse(&text).unwrap() else {
                panic!("runs: {table}");
            };
            assert!(n.reason.starts_with(rule_type), "{}", n.reason);
        }
    }

    #[test]
    fn relative_times_are_read_and_spans_printed() {
        assert_eq!(parse_relative("now-9m"), Some(540));
        assert_eq!(parse_relative("now-2w"), Some(14 * 86_400));
        assert_eq!(parse_relative("now-0d"), None);
        assert_eq!(parse_relative("now-5y"), None);
        assert_eq!(parse_relative("now"), None);
        assert_eq!(parse_relative("now-99999999999999999d"), None);
        assert_eq!(super::super::span(45), "45s");
        assert_eq!(super::super::span(90), "1m30s");
        assert_eq!(super::super::span(3418), "56m58s");
        assert_eq!(super::super::span(86_400 + 7_200), "1d2h");
        assert_eq!(super::super::span(-61), "-1m1s");
        assert_eq!(super::super::span(3 * 3600), "3h");
        assert_eq!(super::super::span(0), "0s");
    }

    #[test]
    fn the_published_bypass_rule_gets_the_builtin_investigation() {
        let text = PUBLISHED
            .replace(
                "ff4dd44a-0ac6-44c4-8609-3f81bc820f02",
                "675239ea-c1bc-4467-a6d3-b9e2cc7f676d",
            )
            .replace("New-TransportRule", "Set-MailboxAuditBypassAssociation");
        let Loaded::Runs(rule) = parse(&text).unwrap() else {
            panic!("not run");
        };
        assert!(rule.has_analysis(super::super::ANALYSIS_BYPASS));
        assert!(rule.evidence_index("bypass_enabled").is_some());
        assert_eq!(rule.contexts.len(), 1);
        assert!(rule.meta.query.contains("New-") || rule.meta.query.contains("Set-Mailbox"));
    }

    #[test]
    fn duplicate_ids_name_both_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.toml"), PUBLISHED).unwrap();
        std::fs::write(dir.path().join("b.toml"), PUBLISHED).unwrap();
        std::fs::write(dir.path().join("notes.md"), "not a rule").unwrap();
        let err = load(&[dir.path().to_path_buf()]).unwrap_err();
        assert!(err.path.ends_with("b.toml"), "{err}");
        assert!(err.message.contains("a.toml"), "{err}");
    }
}
