//! Sigma rules in a rule pack: YAML documents made into rules beside Elastic's.
//!
//! Place in the flow: `load` hands each `.yml`/`.yaml` file's text to [`load_text`];
//! every document becomes a [`Rule`] whose query is a [`SigmaQuery`] (the detection over
//! the fields the field mapping names, ANDed with the records its log source sees), or a
//! [`NotRun`] with the reason; an `event_count` or `value_count` correlation becomes a
//! rule over the rules it counts with a threshold (`Alerting`) that the alerting analysis
//! replays, a `temporal` or `temporal_ordered` one a rule over the rules it correlates
//! whose matches `analysis::sequence` replays ([`Temporal`]). A correlation finds the
//! rules it names (by `name` or `id`) in its own file first, then anywhere in the pack
//! ([`load_pack`]). A rule's [`RuleMeta`] holds the document's own text and,
//! when it is not the built-in one, the mapping's, so a shard's merge recompiles it
//! exactly ([`compile`]). Nothing here reads records or bytes.

use std::fmt;

use ualhunt_query::sequence::Key;
use ualhunt_query::sigma::{self, Document, Mapping};
use ualhunt_query::temporal;

use super::load::{Loaded, NotRun};
use super::{Alerting, Query, Rule, RuleError, RuleMeta, Threat};
use crate::field::{Field, Fields};

/// The built-in field mapping (`--sigma-mapping FILE` replaces it).
pub const BUILTIN_MAPPING: &str = include_str!("../../rules/sigma_mapping.yml");

/// The `type` and `language` of a Sigma rule in reports.
pub const SIGMA: &str = "sigma";

/// A Sigma rule's query: its detection, and the records its log source sees; for a
/// correlation rule, those of each rule it counts, any of which may hold.
#[derive(Clone, Debug)]
pub struct SigmaQuery {
    parts: Vec<Part>,
    /// A `temporal` or `temporal_ordered` correlation's replay (`parts` are its rules,
    /// in the listed order).
    temporal: Option<Temporal>,
}

/// What a `temporal` or `temporal_ordered` correlation replays, and how its findings
/// name what they joined.
#[derive(Clone, Debug)]
pub struct Temporal {
    /// The replay's parameters.
    pub shape: temporal::Temporal,
    /// `temporal` or `temporal_ordered`.
    pub kind: String,
    /// The `group-by` names, as written.
    pub group_by: Vec<String>,
    /// Per correlated rule, its title.
    pub titles: Vec<String>,
    /// Per correlated rule, per `group-by` name, the fields it reads (the first that
    /// has a value).
    keys: Vec<Vec<Vec<Field>>>,
}

/// One rule's detection and log source.
#[derive(Clone, Debug)]
struct Part {
    /// The mapping's condition on the log source's records (`None`: every record).
    records: Option<sigma::Query<Field>>,
    /// The rule's detection.
    detection: sigma::Query<Field>,
}

impl SigmaQuery {
    /// A temporal correlation's replay, if the query is one.
    pub fn temporal(&self) -> Option<&Temporal> {
        self.temporal.as_ref()
    }

    /// For a temporal correlation: the rules (their index in the listed order) a record
    /// matches, each with the record's group for it (none when a `group-by` field has
    /// no value); `None` when it matches none, or the query is no temporal correlation.
    pub fn temporal_steps(&self, record: &dyn Fields<Field>) -> Option<Vec<(u16, Vec<Key>)>> {
        let t = self.temporal.as_ref()?;
        let mut out = Vec::new();
        for (i, (p, keys)) in self.parts.iter().zip(&t.keys).enumerate() {
            if !p.matches(record) {
                continue;
            }
            let key: Option<Key> = keys
                .iter()
                .map(|fields| {
                    fields.iter().find_map(|f| {
                        let mut value = None;
                        record.any_value(f, &mut |v| {
                            value = Some(v.to_string());
                            true
                        });
                        value
                    })
                })
                .collect();
            out.push((i as u16, key.into_iter().collect()));
        }
        (!out.is_empty()).then_some(out)
    }

    /// Whether a record is one of a log source's and matches its rule's detection.
    pub fn matches(&self, record: &dyn Fields<Field>) -> bool {
        self.parts.iter().any(|p| p.matches(record))
    }

    /// The detections' literals for a case-sensitive search (a log source's condition
    /// only narrows): see `ualhunt_query::sigma::Query::required_literals`.
    pub fn required_literals(&self) -> Option<Vec<String>> {
        union(self.parts.iter().map(|p| p.detection.required_literals()))
    }

    /// The detection's literal sets (one rule), or the whole query's literals.
    pub fn required_conjuncts(&self) -> Vec<Vec<String>> {
        match self.parts.as_slice() {
            [one] => one.detection.required_conjuncts(),
            _ => self.required_literals().into_iter().collect(),
        }
    }

    /// The detections' literals, lower-cased, for a search that folds ASCII case.
    pub fn folded_literals(&self) -> Option<Vec<String>> {
        union(self.parts.iter().map(|p| p.detection.folded_literals()))
    }

    /// Every field read.
    pub fn fields(&self) -> Vec<&Field> {
        let mut out = Vec::new();
        for p in &self.parts {
            out.extend(p.detection.fields());
            if let Some(r) = &p.records {
                out.extend(r.fields());
            }
        }
        out
    }
}

impl Part {
    fn matches(&self, record: &dyn Fields<Field>) -> bool {
        self.records.as_ref().is_none_or(|r| r.matches(record)) && self.detection.matches(record)
    }
}

/// Every set's literals, deduplicated (any set `None`: `None`).
fn union(sets: impl Iterator<Item = Option<Vec<String>>>) -> Option<Vec<String>> {
    let mut out = Vec::new();
    for set in sets {
        out.extend(set?);
    }
    out.sort();
    out.dedup();
    (!out.is_empty()).then_some(out)
}

impl fmt::Display for SigmaQuery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.parts.iter().enumerate() {
            if i > 0 {
                f.write_str(" OR ")?;
            }
            p.detection.fmt(f)?;
        }
        if let Some(t) = &self.temporal {
            let how = if t.shape.ordered {
                "in the order listed".to_string()
            } else {
                format!("at least {} of {}", t.shape.at_least, t.shape.rules)
            };
            write!(f, " | {} {how}", t.kind)?;
            if !t.group_by.is_empty() {
                write!(f, " by {}", t.group_by.join(", "))?;
            }
            write!(f, " within {}", super::span(t.shape.span / 1000))?;
        }
        Ok(())
    }
}

/// The mapping a rule's metadata names (its own text, else the built-in one).
fn mapping_of(meta: &RuleMeta) -> Result<Mapping, RuleError> {
    let text = meta.sigma_mapping.as_deref().unwrap_or(BUILTIN_MAPPING);
    Mapping::parse(text).map_err(|e| RuleError::Invalid {
        name: meta.name.clone(),
        message: format!("Sigma field mapping: {e}"),
    })
}

/// Compiles a Sigma document through a mapping.
fn query_of(doc: &Document, mapping: &Mapping) -> Result<SigmaQuery, sigma::Unsupported> {
    Ok(SigmaQuery {
        parts: vec![part_of(doc, mapping)?],
        temporal: None,
    })
}

/// One document's detection and log source, through a mapping.
fn part_of(doc: &Document, mapping: &Mapping) -> Result<Part, sigma::Unsupported> {
    if let Some(why) = doc.unsupported() {
        return Err(why.clone());
    }
    let scope = mapping.scope(&doc.meta.logsource)?;
    let keywords = mapping.keywords().map(Field::parse);
    let detection = doc.query(
        &mut |name| {
            scope
                .resolve(name)
                .iter()
                .map(|f| Field::parse(f))
                .collect()
        },
        keywords.as_ref(),
    )?;
    let records = scope.records::<Field>().transpose()?;
    Ok(Part { records, detection })
}

/// The rule a correlation (`docs[at]`) names, by `name` or `id`: in its own file
/// (`files[i]` is the file of `docs[i]`) first, else in the one other file of the pack
/// that defines it; or why there is none it can replay.
fn referenced<'d>(
    docs: &'d [Document],
    files: &[usize],
    at: usize,
    name: &str,
) -> Result<&'d Document, String> {
    let named = |d: &Document| {
        d.meta.name.as_deref() == Some(name) || (!d.meta.id.is_empty() && d.meta.id == name)
    };
    let found: Vec<usize> = (0..docs.len())
        .filter(|&i| i != at && named(&docs[i]))
        .collect();
    let pick = match found.iter().find(|&&i| files[i] == files[at]) {
        Some(&i) => i,
        None => match found.as_slice() {
            [] => {
                return Err(format!(
                    "it names rule {name:?}, which no file of the rule pack defines"
                ));
            }
            [i] => *i,
            _ => {
                return Err(format!(
                    "it names rule {name:?}, which several files of the rule pack define"
                ));
            }
        },
    };
    let doc = &docs[pick];
    if doc.correlation.is_some() {
        return Err(format!(
            "it names the correlation rule {name:?}: chained correlations are not replayed"
        ));
    }
    Ok(doc)
}

/// A correlation rule (`docs[at]`) as a query over the rules it names, and, for
/// `event_count` (`gte`/`gt`) and `value_count`, the threshold that replays it (matches
/// grouped by `group-by` within `timespan`; for `value_count`, the distinct values of
/// its field); `temporal` and `temporal_ordered` carry their replay in the query
/// ([`Temporal`]). What cannot be replayed is refused with the reason.
fn correlation_of(
    docs: &[Document],
    files: &[usize],
    at: usize,
    mapping: &Mapping,
) -> Result<(SigmaQuery, Option<Alerting>), sigma::Unsupported> {
    let no = |why: String| Err(sigma::Unsupported(why));
    let Some(c) = &docs[at].correlation else {
        return no("not a correlation rule".into());
    };
    let temporal = match c.kind.as_str() {
        "event_count" | "value_count" => false,
        "temporal" | "temporal_ordered" => true,
        other => {
            return no(format!(
                "correlation rule ({other}): only event_count, value_count, temporal and \
                 temporal_ordered are replayed"
            ));
        }
    };
    let mut parts = Vec::new();
    let mut named = Vec::new();
    for name in &c.rules {
        let doc = referenced(docs, files, at, name)
            .map_err(|why| sigma::Unsupported(format!("correlation rule: {why}")))?;
        if named.iter().any(|d: &&Document| std::ptr::eq(*d, doc)) {
            return no(format!("correlation rule: it names rule {name:?} twice"));
        }
        let part = part_of(doc, mapping).map_err(|why| {
            sigma::Unsupported(format!(
                "correlation rule: the rule it names {name:?} does not run: {}",
                why.0
            ))
        })?;
        parts.push(part);
        named.push(doc);
    }
    let Some(first) = named.first() else {
        return no("correlation rule: it names no rule".into());
    };
    let window = timespan(&c.timespan).ok_or_else(|| {
        sigma::Unsupported(format!(
            "correlation timespan {:?} is not <n><s|m|h|d|w>",
            c.timespan
        ))
    })?;
    let ops: Vec<&(String, String)> = c.condition.iter().filter(|(k, _)| k != "field").collect();
    // At least n (`gte: n`, `gt: n - 1`); `None`: another comparison.
    let at_least = |op: &str, v: &str| -> Option<u64> {
        let n: u64 = v.trim().parse().ok()?;
        match op {
            "gte" => Some(n.max(1)),
            "gt" => n.checked_add(1),
            _ => None,
        }
    };
    if temporal {
        let k = parts.len();
        let needed = match ops.as_slice() {
            [] => k as u64,
            [(op, v)] => at_least(op, v).ok_or_else(|| {
                sigma::Unsupported(format!(
                    "correlation condition {op}: {v}: only gte and gt (at least n rules) are \
                     replayed"
                ))
            })?,
            _ => return no("correlation condition: one of gte or gt expected".into()),
        };
        if needed > k as u64 {
            return no(format!(
                "correlation condition: at least {needed} of its {k} rules can never match"
            ));
        }
        let ordered = c.kind == "temporal_ordered";
        if ordered && needed < k as u64 {
            return no(format!(
                "correlation condition: temporal_ordered with {needed} of its {k} rules: \
                 which of them must keep the order is not defined; only all of them are \
                 replayed"
            ));
        }
        let mut keys = Vec::new();
        for (doc, name) in named.iter().zip(&c.rules) {
            let scope = mapping.scope(&doc.meta.logsource)?;
            let mut per_group = Vec::new();
            for g in &c.group_by {
                let field = match c.aliases.iter().find(|(alias, _)| alias == g) {
                    None => g.as_str(),
                    Some((_, per_rule)) => per_rule
                        .iter()
                        .find(|(r, _)| {
                            r == name
                                || doc.meta.name.as_deref() == Some(r.as_str())
                                || doc.meta.id == *r
                        })
                        .map(|(_, f)| f.as_str())
                        .ok_or_else(|| {
                            sigma::Unsupported(format!(
                                "correlation alias {g:?} names no field for rule {name:?}"
                            ))
                        })?,
                };
                let fields: Vec<Field> = scope
                    .resolve(field)
                    .iter()
                    .map(|f| Field::parse(f))
                    .collect();
                if fields.is_empty() {
                    return no(format!(
                        "correlation field {field:?}: the mapping maps it to nothing"
                    ));
                }
                per_group.push(fields);
            }
            keys.push(per_group);
        }
        let span = window
            .checked_mul(1000)
            .ok_or_else(|| sigma::Unsupported("correlation timespan too long".into()))?;
        let query = SigmaQuery {
            temporal: Some(Temporal {
                shape: temporal::Temporal {
                    rules: k,
                    at_least: needed as usize,
                    ordered,
                    span,
                },
                kind: c.kind.clone(),
                group_by: c.group_by.clone(),
                titles: named.iter().map(|d| d.meta.title.clone()).collect(),
                keys,
            }),
            parts,
        };
        return Ok((query, None));
    }
    if !c.aliases.is_empty() {
        return no(format!(
            "correlation rule ({}): aliases are replayed for temporal correlations only",
            c.kind
        ));
    }
    let scope = mapping.scope(&first.meta.logsource)?;
    let field = |name: &str| -> Result<String, sigma::Unsupported> {
        scope.resolve(name).into_iter().next().ok_or_else(|| {
            sigma::Unsupported(format!(
                "correlation field {name:?}: the mapping maps it to nothing"
            ))
        })
    };
    let fields = c
        .group_by
        .iter()
        .map(|g| field(g))
        .collect::<Result<Vec<_>, _>>()?;
    let [(op, v)] = ops.as_slice() else {
        return no("correlation condition: one of gte or gt expected".into());
    };
    let Some(n) = at_least(op, v) else {
        return no(format!(
            "correlation condition {op}: {v}: only gte and gt (at least n) are replayed"
        ));
    };
    let alerting = if c.kind == "event_count" {
        Alerting::Threshold {
            fields,
            value: n,
            cardinality: None,
            window,
        }
    } else {
        let Some((_, name)) = c.condition.iter().find(|(k, _)| k == "field") else {
            return no("value_count correlation without a condition field".into());
        };
        Alerting::Threshold {
            fields,
            value: 1,
            cardinality: Some((field(name)?, n)),
            window,
        }
    };
    if let Some(why) = alerting.invalid() {
        return no(format!("correlation rule: {why}"));
    }
    Ok((
        SigmaQuery {
            parts,
            temporal: None,
        },
        Some(alerting),
    ))
}

/// A Sigma timespan (`30s`, `5m`, `1h`, `2d`, `1w`) in seconds, at most `MAX_SPAN`.
fn timespan(text: &str) -> Option<i64> {
    super::parse_relative(&format!("now-{}", text.trim()))
}

/// The query of a Sigma rule's metadata: its document (`query`) through its mapping.
pub fn compile(meta: &RuleMeta) -> Result<Query, RuleError> {
    let invalid = |message: String| RuleError::Invalid {
        name: meta.name.clone(),
        message,
    };
    let docs = sigma::parse(&meta.query).map_err(|e| invalid(e.to_string()))?;
    let mapping = mapping_of(meta)?;
    let query = match docs.as_slice() {
        [.., last] if last.correlation.is_some() => {
            let files = vec![0; docs.len()];
            correlation_of(&docs, &files, docs.len() - 1, &mapping).map(|(q, _)| q)
        }
        [doc] => query_of(doc, &mapping),
        _ => return Err(invalid("a Sigma rule's text holds one document".into())),
    };
    query
        .map(|q| Query::Sigma(Box::new(q)))
        .map_err(|e| invalid(e.0))
}

/// Every document of a Sigma file: a rule that runs, or one that does not and why.
/// `mapping` is the text of `--sigma-mapping` (`None`: the built-in mapping). Only text
/// that is not YAML, or a mapping that is not one, fails the file.
pub fn load_text(text: &str, mapping: Option<&str>) -> Result<Vec<Loaded>, RuleError> {
    load_pack(&[text], mapping).map(|mut files| files.pop().unwrap_or_default())
}

/// Every document of a rule pack's Sigma files (their texts, in load order), per file: a
/// rule that runs, or one that does not and why. A correlation names rules of its own
/// file or of another; a rule a correlation that runs names reports only through it,
/// unless one such correlation says `generate: true`. Only text that is not YAML, or a
/// mapping that is not one, fails the pack.
pub fn load_pack(texts: &[&str], mapping: Option<&str>) -> Result<Vec<Vec<Loaded>>, RuleError> {
    let parsed =
        Mapping::parse(mapping.unwrap_or(BUILTIN_MAPPING)).map_err(|e| RuleError::Invalid {
            name: "--sigma-mapping".into(),
            message: e.to_string(),
        })?;
    let mut docs = Vec::new();
    let mut files = Vec::new();
    for (f, text) in texts.iter().enumerate() {
        let file_docs = sigma::parse(text).map_err(|e| RuleError::Invalid {
            name: format!("Sigma file {}", f + 1),
            message: e.to_string(),
        })?;
        files.extend(std::iter::repeat_n(f, file_docs.len()));
        docs.extend(file_docs);
    }
    // The correlations that run, and the rules they count without `generate: true`:
    // those report their matches only through the correlation.
    let correlations: Vec<(usize, CorrelationResult)> = docs
        .iter()
        .enumerate()
        .filter(|(_, d)| d.correlation.is_some())
        .map(|(i, _)| (i, correlation_of(&docs, &files, i, &parsed).map(|(_, a)| a)))
        .collect();
    // A counted rule reports alone when no correlation that runs counts it, or when one
    // that does asks so (`generate: true`).
    let counted_by = |doc: &Document| {
        let counting: Vec<&Document> = correlations
            .iter()
            .filter(|(_, result)| result.is_ok())
            .map(|(i, _)| (*i, &docs[*i]))
            .filter(|(i, c)| {
                c.correlation.as_ref().is_some_and(|c| {
                    c.rules.iter().any(|name| {
                        referenced(&docs, &files, *i, name).is_ok_and(|d| std::ptr::eq(d, doc))
                    })
                })
            })
            .map(|(_, c)| c)
            .collect();
        let generates = counting
            .iter()
            .any(|c| c.correlation.as_ref().is_some_and(|c| c.generate));
        (!generates)
            .then(|| counting.first().map(|c| c.meta.title.clone()))
            .flatten()
    };
    let not_run = |meta: RuleMeta, why: String| {
        Loaded::NotRun(NotRun {
            id: meta.id,
            name: meta.name,
            path: String::new(),
            rule_type: meta.rule_type,
            language: SIGMA.into(),
            reason: format!("Sigma: {why}"),
        })
    };
    let mut out: Vec<Vec<Loaded>> = texts.iter().map(|_| Vec::new()).collect();
    for (i, doc) in docs.iter().enumerate() {
        let mut meta = meta_of(doc, mapping);
        let file = &mut out[files[i]];
        if let Some(c) = &doc.correlation {
            meta.rule_type = format!("{SIGMA} {}", c.kind);
            let result = correlations
                .iter()
                .find(|(at, _)| *at == i)
                .map(|(_, a)| a.clone());
            match result {
                Some(Ok(alerting)) => {
                    // The rules it names, then the correlation: the rule's text (so that
                    // it recompiles alone, wherever the rules it names came from).
                    let mut text = String::new();
                    for name in &c.rules {
                        if let Ok(d) = referenced(&docs, &files, i, name) {
                            text.push_str(&as_document(&d.text));
                        }
                    }
                    text.push_str(&as_document(&doc.text));
                    meta.query = text;
                    meta.alerting = alerting;
                    file.push(Loaded::Runs(Box::new(Rule::compile(meta)?)));
                }
                Some(Err(why)) => file.push(not_run(meta, why.0)),
                None => file.push(not_run(meta, "correlation rule not read".into())),
            }
            continue;
        }
        if let Some(title) = counted_by(doc) {
            file.push(not_run(
                meta,
                format!(
                    "counted by the correlation rule {title:?} (generate: false): its matches \
                     are reported through it"
                ),
            ));
            continue;
        }
        match query_of(doc, &parsed) {
            Err(why) => file.push(not_run(meta, why.0)),
            Ok(query) => {
                let rule = Rule::assemble(meta, Query::Sigma(Box::new(query)))?;
                file.push(Loaded::Runs(Box::new(rule)));
            }
        }
    }
    Ok(out)
}

/// A correlation's threshold (`None` for a temporal one), or why it does not run.
type CorrelationResult = Result<Option<Alerting>, sigma::Unsupported>;

/// A document's text starting with its own `---` line, so that texts join into a file.
fn as_document(text: &str) -> String {
    let mut out = String::new();
    if !text.starts_with("---") {
        out.push_str("---\n");
    }
    out.push_str(text);
    if !text.ends_with('\n') {
        out.push('\n');
    }
    out
}

/// A Sigma document's metadata as a rule's: `level` gives the severity (and Elastic's
/// risk score of that severity), `tags` the ATT&CK mapping, `id` the rule id, and the
/// author, false positives and references are kept for every report.
fn meta_of(doc: &Document, mapping: Option<&str>) -> RuleMeta {
    let m = &doc.meta;
    let (severity, risk_score) = match m.level.as_deref().map(str::to_ascii_lowercase) {
        Some(l) if l == "critical" => ("critical", 99),
        Some(l) if l == "high" => ("high", 73),
        Some(l) if l == "medium" => ("medium", 47),
        _ => ("low", 21),
    };
    let id = if m.id.is_empty() {
        format!("sigma:{}", m.title)
    } else {
        m.id.clone()
    };
    RuleMeta {
        id,
        name: m.title.clone(),
        renamed: None,
        description: m.description.trim().to_string(),
        rule_type: SIGMA.into(),
        language: SIGMA.into(),
        index: Vec::new(),
        severity: severity.into(),
        risk_score,
        schedule: String::new(),
        false_positives: m.falsepositives.clone(),
        query: doc.text.clone(),
        threat: threats(&m.tags),
        analyses: super::default_analyses(),
        evidence: super::load::default_evidence(),
        context: Vec::new(),
        alerting: None,
        author: m.author.clone(),
        references: m.references.clone(),
        sigma_mapping: mapping.map(str::to_string),
        note: None,
        setup: None,
        building_block: None,
    }
}

/// ATT&CK tactics by the names Sigma tags use.
const TACTICS: [(&str, &str, &str); 14] = [
    ("reconnaissance", "TA0043", "Reconnaissance"),
    ("resource-development", "TA0042", "Resource Development"),
    ("initial-access", "TA0001", "Initial Access"),
    ("execution", "TA0002", "Execution"),
    ("persistence", "TA0003", "Persistence"),
    ("privilege-escalation", "TA0004", "Privilege Escalation"),
    ("defense-evasion", "TA0005", "Defense Evasion"),
    ("credential-access", "TA0006", "Credential Access"),
    ("discovery", "TA0007", "Discovery"),
    ("lateral-movement", "TA0008", "Lateral Movement"),
    ("collection", "TA0009", "Collection"),
    ("command-and-control", "TA0011", "Command and Control"),
    ("exfiltration", "TA0010", "Exfiltration"),
    ("impact", "TA0040", "Impact"),
];

/// The ATT&CK mapping of Sigma tags (`attack.defense-evasion`, `attack.t1562.001`): one
/// entry per technique (a sub-technique's tag covers its technique's), with the rule's
/// tactics; only tactics when it names no technique.
fn threats(tags: &[String]) -> Vec<Threat> {
    let attack: Vec<String> = tags
        .iter()
        .filter_map(|t| {
            t.to_ascii_lowercase()
                .strip_prefix("attack.")
                .map(String::from)
        })
        .collect();
    let tactics: Vec<String> = attack
        .iter()
        .filter_map(|t| {
            TACTICS
                .iter()
                .find(|(tag, id, _)| tag == t || id.eq_ignore_ascii_case(t))
                .map(|(_, id, name)| format!("{id} {name}"))
        })
        .collect();
    let tactic = tactics.join(", ");
    let techniques: Vec<&String> = attack
        .iter()
        .filter(|t| {
            t.len() >= 5 && t.starts_with('t') && t[1..5].bytes().all(|b| b.is_ascii_digit())
        })
        .collect();
    let mut out: Vec<Threat> = Vec::new();
    for t in &techniques {
        let upper = t.to_ascii_uppercase();
        let (technique, sub) = match upper.split_once('.') {
            Some((tech, _)) => (tech.to_string(), Some(upper.clone())),
            None => (upper.clone(), None),
        };
        let covered = sub.is_none()
            && techniques.iter().any(|o| {
                o.len() > t.len() && o.starts_with(t.as_str()) && o.as_bytes()[t.len()] == b'.'
            });
        if !covered {
            out.push(Threat {
                tactic: tactic.clone(),
                technique,
                subtechnique: sub,
            });
        }
    }
    if out.is_empty() {
        out.extend(tactics.into_iter().map(|tactic| Threat {
            tactic,
            technique: String::new(),
            subtechnique: None,
        }));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULE: &str = "title: Mailbox audit age limit changed
id: a1f0c2e1-000c-4a00-8a01-00000000000c
author: Someone
level: high
tags: [attack.defense-evasion, attack.t1562, attack.t1562.008]
falsepositives: [Retention changes]
references: ['https://example.org/r']
logsource: {product: azure, service: m365}
detection:
    selection:
        Operation: 'Set-Mailbox'
        Parameters.AuditLogAgeLimit|exists: true
    condition: selection
---
title: Correlated
id: c0
correlation: {type: event_count, rules: [x], group-by: [UserId], timespan: 5m, condition: {gte: 3}}
---
title: Elsewhere
id: w1
logsource: {product: windows, category: process_creation}
detection:
    s: {Image|endswith: '\\cmd.exe'}
    condition: s
";

    #[test]
    fn a_file_of_documents_loads_rules_and_says_why_others_do_not_run() {
        let loaded = load_text(RULE, None).unwrap();
        assert_eq!(loaded.len(), 3);
        let Loaded::Runs(rule) = &loaded[0] else {
            panic!("the first document runs");
        };
        assert_eq!(rule.meta.id, "a1f0c2e1-000c-4a00-8a01-00000000000c");
        assert_eq!(rule.meta.severity, "high");
        assert_eq!(rule.meta.risk_score, 73);
        assert_eq!(rule.meta.author.as_deref(), Some("Someone"));
        assert_eq!(rule.meta.references, vec!["https://example.org/r"]);
        assert_eq!(rule.meta.false_positives, vec!["Retention changes"]);
        assert_eq!(rule.meta.threat.len(), 1, "{:?}", rule.meta.threat);
        assert_eq!(rule.meta.threat[0].tactic, "TA0005 Defense Evasion");
        assert_eq!(
            rule.meta.threat[0].subtechnique.as_deref(),
            Some("T1562.008")
        );
        // The rule recompiles from its metadata alone (a shard's merge does).
        let again = Rule::compile(rule.meta.clone()).unwrap();
        assert_eq!(again.query.to_string(), rule.query.to_string());
        let Loaded::NotRun(n) = &loaded[1] else {
            panic!("a correlation of a rule elsewhere does not run");
        };
        assert!(
            n.reason.contains("no file of the rule pack defines"),
            "{}",
            n.reason
        );
        let Loaded::NotRun(n) = &loaded[2] else {
            panic!("a windows rule has no mapping");
        };
        assert!(n.reason.contains("product=windows"), "{}", n.reason);
    }

    const CORRELATED: &str = "title: Failed login
id: f-1
name: failed_login
logsource: {product: azure, service: m365}
detection:
    s: {Operation: UserLoginFailed}
    condition: s
---
title: Many failed logins
id: c-1
author: Someone
level: high
correlation:
    type: event_count
    rules: [failed_login]
    group-by: [UserId]
    timespan: 10m
    condition: {gte: 3}
---
title: Many addresses
id: c-2
correlation:
    type: value_count
    rules: [f-1]
    group-by: [UserId]
    timespan: 1h
    generate: true
    condition: {field: ClientIP, gt: 1}
---
title: In order
id: c-3
correlation: {type: temporal_ordered, rules: [f-1], group-by: [UserId], timespan: 5m, condition: {lt: 2}}
";

    #[test]
    fn counting_correlations_run_as_thresholds_and_what_is_not_replayed_says_why() {
        let loaded = load_text(CORRELATED, None).unwrap();
        assert_eq!(loaded.len(), 4);
        // `generate: true` on one correlation keeps the counted rule reporting.
        assert!(matches!(&loaded[0], Loaded::Runs(_)));
        let Loaded::Runs(count) = &loaded[1] else {
            panic!("event_count runs");
        };
        assert_eq!(
            count.meta.alerting,
            Some(Alerting::Threshold {
                fields: vec!["o365.audit.UserId".into()],
                value: 3,
                cardinality: None,
                window: 600,
            })
        );
        assert_eq!(count.meta.rule_type, "sigma event_count");
        // It recompiles from its metadata (the counted rule's text travels with it).
        let again = Rule::compile(count.meta.clone()).unwrap();
        assert_eq!(again.query.to_string(), count.query.to_string());
        let Loaded::Runs(values) = &loaded[2] else {
            panic!("value_count runs");
        };
        assert_eq!(
            values.meta.alerting,
            Some(Alerting::Threshold {
                fields: vec!["o365.audit.UserId".into()],
                value: 1,
                cardinality: Some(("o365.audit.ClientIP".into(), 2)),
                window: 3600,
            })
        );
        let Loaded::NotRun(n) = &loaded[3] else {
            panic!("a condition of less than is not replayed");
        };
        assert!(n.reason.contains("only gte and gt"), "{}", n.reason);
        // Without `generate: true` anywhere, the counted rule reports only through the
        // correlation, and says so.
        let text = CORRELATED.replace("    generate: true\n", "");
        let loaded = load_text(&text, None).unwrap();
        let Loaded::NotRun(n) = &loaded[0] else {
            panic!("the counted rule does not report alone");
        };
        assert!(
            n.reason.contains("counted by the correlation rule"),
            "{}",
            n.reason
        );
    }

    #[test]
    fn fields_resolve_through_the_mapping() {
        let Loaded::Runs(rule) = &load_text(RULE, None).unwrap()[0] else {
            panic!("runs");
        };
        let names: Vec<String> = rule.query.fields().iter().map(|f| f.name()).collect();
        assert!(
            names.contains(&"o365.audit.Operation".to_string()),
            "{names:?}"
        );
        assert!(names.contains(&"event.action".to_string()), "{names:?}");
        assert!(
            names.contains(&"o365.audit.Parameters.AuditLogAgeLimit".to_string()),
            "{names:?}"
        );
        // A replaced mapping: its own names, carried in the metadata.
        let mapping = "default: o365.audit.\nlogsources:\n  - product: azure\n    service: m365\n";
        let Loaded::Runs(rule) = &load_text(RULE, Some(mapping)).unwrap()[0] else {
            panic!("runs");
        };
        let names: Vec<String> = rule.query.fields().iter().map(|f| f.name()).collect();
        assert!(!names.contains(&"event.action".to_string()), "{names:?}");
        assert_eq!(rule.meta.sigma_mapping.as_deref(), Some(mapping));
        assert!(load_text(RULE, Some("[not a map")).is_err());
    }

    const TEMPORAL: &str = "title: Inbox rule
id: t-1
name: inbox_rule
logsource: {product: m365, service: exchange}
detection:
    s: {Operation: New-InboxRule}
    condition: s
---
title: Login
id: t-2
name: login
logsource: {product: azure, service: m365}
detection:
    s: {Operation: UserLoggedIn}
    condition: s
---
title: Login then inbox rule
id: tc-1
level: high
correlation:
    type: temporal_ordered
    rules: [login, t-1]
    group-by: [actor]
    timespan: 1h
    aliases:
        actor:
            login: UserId
            inbox_rule: MailboxOwnerUPN
";

    #[test]
    fn a_temporal_correlation_runs_with_a_step_per_rule_and_its_aliases() {
        let loaded = load_text(TEMPORAL, None).unwrap();
        assert_eq!(loaded.len(), 3);
        for l in &loaded[..2] {
            let Loaded::NotRun(n) = l else {
                panic!("a correlated rule reports through its correlation");
            };
            assert!(n.reason.contains("Login then inbox rule"), "{}", n.reason);
        }
        let Loaded::Runs(rule) = &loaded[2] else {
            panic!("temporal_ordered runs");
        };
        assert_eq!(rule.meta.rule_type, "sigma temporal_ordered");
        let t = rule.query.temporal().expect("a temporal query");
        assert_eq!(
            t.shape,
            temporal::Temporal {
                rules: 2,
                at_least: 2,
                ordered: true,
                span: 3_600_000,
            }
        );
        assert_eq!(t.titles, vec!["Login", "Inbox rule"]);
        // Each rule reads the group through its own alias.
        let names = |k: &[Field]| k.iter().map(|f| f.name()).collect::<Vec<_>>();
        assert_eq!(names(&t.keys[0][0])[0], "o365.audit.UserId");
        assert_eq!(names(&t.keys[1][0])[0], "o365.audit.MailboxOwnerUPN");
        for item in ["sequence", "step_1", "step_2"] {
            assert!(rule.evidence_index(item).is_some(), "{item}");
        }
        // It recompiles from its metadata alone (a shard's merge does).
        let again = Rule::compile(rule.meta.clone()).unwrap();
        assert_eq!(again.query.temporal().unwrap().shape, t.shape);
        assert_eq!(again.evidence.len(), rule.evidence.len());
    }

    #[test]
    fn a_correlation_names_rules_of_other_files_of_the_pack() {
        let (rules, correlation) =
            TEMPORAL.split_at(TEMPORAL.find("---\ntitle: Login then").unwrap());
        let files = load_pack(&[rules, correlation], None).unwrap();
        assert_eq!(files.len(), 2);
        assert!(matches!(&files[1][0], Loaded::Runs(_)));
        assert!(files[0].iter().all(|l| matches!(l, Loaded::NotRun(_))));
        // Alone, the correlation's file says what it lacks.
        let alone = load_text(correlation, None).unwrap();
        let Loaded::NotRun(n) = &alone[0] else {
            panic!("the rules it names are elsewhere");
        };
        assert!(
            n.reason.contains("\"login\", which no file"),
            "{}",
            n.reason
        );
    }

    #[test]
    fn a_temporal_correlation_that_cannot_be_replayed_says_why() {
        let cases = [
            // A rule it names does not run: its reason is given.
            (
                TEMPORAL.replace("Operation: New-InboxRule", "Operation|windash: '-x'"),
                "\"t-1\" does not run: selection s: ",
            ),
            (
                TEMPORAL.replace("            inbox_rule: MailboxOwnerUPN\n", ""),
                "alias \"actor\" names no field for rule \"t-1\"",
            ),
            (
                TEMPORAL.replace("timespan: 1h", "timespan: 1 hour"),
                "timespan",
            ),
            (
                TEMPORAL.replace("rules: [login, t-1]", "rules: [login, login]"),
                "twice",
            ),
            (
                TEMPORAL.replace(
                    "    timespan: 1h",
                    "    timespan: 1h\n    condition: {gte: 1}",
                ),
                "which of them must keep the order",
            ),
            (
                TEMPORAL.replace("temporal_ordered", "temporal").replace(
                    "    timespan: 1h",
                    "    timespan: 1h\n    condition: {gte: 3}",
                ),
                "at least 3 of its 2 rules",
            ),
            (
                format!(
                    "{TEMPORAL}---\ntitle: Chained\nid: ch\ncorrelation: {{type: temporal, \
                     rules: [tc-1, login], group-by: [UserId], timespan: 1h}}\n"
                ),
                "chained correlations",
            ),
        ];
        for (text, why) in cases {
            let loaded = load_text(&text, None).unwrap();
            let reasons: Vec<&str> = loaded
                .iter()
                .filter_map(|l| match l {
                    Loaded::NotRun(n) if n.rule_type.starts_with("sigma temporal") => {
                        Some(n.reason.as_str())
                    }
                    _ => None,
                })
                .collect();
            assert!(
                reasons.iter().any(|r| r.contains(why)),
                "{why}: {reasons:?}"
            );
        }
    }
}
