//! Sigma rules in a rule pack: YAML documents made into rules beside Elastic's.
//!
//! Place in the flow: `load` hands each `.yml`/`.yaml` file's text to [`load_text`];
//! every document becomes a [`Rule`] whose query is a [`SigmaQuery`] (the detection over
//! the fields the field mapping names, ANDed with the records its log source sees), or a
//! [`NotRun`] with the reason; an `event_count` or `value_count` correlation becomes a
//! rule over the rules it counts with a threshold (`Alerting`) that the alerting analysis
//! replays. A rule's [`RuleMeta`] holds the document's own text and,
//! when it is not the built-in one, the mapping's, so a shard's merge recompiles it
//! exactly ([`compile`]). Nothing here reads records or bytes.

use std::fmt;

use ualhunt_query::sigma::{self, Document, Mapping};

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
    /// Whether a record is one of a log source's and matches its rule's detection.
    pub fn matches(&self, record: &dyn Fields<Field>) -> bool {
        self.parts.iter().any(|p| {
            p.records.as_ref().is_none_or(|r| r.matches(record)) && p.detection.matches(record)
        })
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

/// The rule a correlation counts the matches of, by `name` or `id`, in `docs`.
fn referenced<'d>(docs: &'d [Document], name: &str) -> Option<&'d Document> {
    docs.iter().find(|d| {
        d.correlation.is_none() && (d.meta.name.as_deref() == Some(name) || d.meta.id == name)
    })
}

/// A correlation rule (`docs[at]`) as a query over the rules it counts and the
/// threshold that replays it: `event_count` (`gte`/`gt`) as a threshold on the matches
/// grouped by `group-by` within `timespan`, `value_count` as one on the distinct values
/// of its field. `temporal` and `temporal_ordered` are refused with the reason.
fn correlation_of(
    docs: &[Document],
    at: usize,
    mapping: &Mapping,
) -> Result<(SigmaQuery, Alerting), sigma::Unsupported> {
    let no = |why: String| Err(sigma::Unsupported(why));
    let Some(c) = &docs[at].correlation else {
        return no("not a correlation rule".into());
    };
    if c.kind != "event_count" && c.kind != "value_count" {
        return no(format!(
            "correlation rule ({}): only event_count and value_count are replayed over the \
             archive yet",
            c.kind
        ));
    }
    let mut parts = Vec::new();
    let mut first = None;
    for name in &c.rules {
        let Some(doc) = referenced(docs, name) else {
            return no(format!(
                "correlation rule: it counts rule {name:?}, which is not in the same file"
            ));
        };
        first.get_or_insert(doc);
        parts.push(part_of(doc, mapping)?);
    }
    let Some(first) = first else {
        return no("correlation rule: it names no rule".into());
    };
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
    let window = timespan(&c.timespan).ok_or_else(|| {
        sigma::Unsupported(format!(
            "correlation timespan {:?} is not <n><s|m|h|d|w>",
            c.timespan
        ))
    })?;
    let count = |op: &str, v: &str| -> Option<u64> {
        let n: u64 = v.trim().parse().ok()?;
        match op {
            "gte" => Some(n.max(1)),
            "gt" => n.checked_add(1),
            _ => None,
        }
    };
    let ops: Vec<&(String, String)> = c.condition.iter().filter(|(k, _)| k != "field").collect();
    let [(op, v)] = ops.as_slice() else {
        return no("correlation condition: one of gte or gt expected".into());
    };
    let Some(n) = count(op, v) else {
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
    Ok((SigmaQuery { parts }, alerting))
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
            correlation_of(&docs, docs.len() - 1, &mapping).map(|(q, _)| q)
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
    let parsed =
        Mapping::parse(mapping.unwrap_or(BUILTIN_MAPPING)).map_err(|e| RuleError::Invalid {
            name: "--sigma-mapping".into(),
            message: e.to_string(),
        })?;
    let docs = sigma::parse(text).map_err(|e| RuleError::Invalid {
        name: "Sigma file".into(),
        message: e.to_string(),
    })?;
    // The correlations that run, and the rules they count without `generate: true`:
    // those report their matches only through the correlation.
    let correlations: Vec<(usize, Result<Alerting, sigma::Unsupported>)> = docs
        .iter()
        .enumerate()
        .filter(|(_, d)| d.correlation.is_some())
        .map(|(i, _)| (i, correlation_of(&docs, i, &parsed).map(|(_, a)| a)))
        .collect();
    // A counted rule reports alone when no correlation that runs counts it, or when one
    // that does asks so (`generate: true`).
    let counted_by = |doc: &Document| {
        let counting: Vec<&Document> = correlations
            .iter()
            .filter(|(_, result)| result.is_ok())
            .map(|(i, _)| &docs[*i])
            .filter(|c| {
                c.correlation.as_ref().is_some_and(|c| {
                    c.rules
                        .iter()
                        .any(|name| referenced(&docs, name).is_some_and(|d| std::ptr::eq(d, doc)))
                })
            })
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
    let mut out = Vec::new();
    for (i, doc) in docs.iter().enumerate() {
        let mut meta = meta_of(doc, mapping);
        if let Some(c) = &doc.correlation {
            meta.rule_type = format!("{SIGMA} {}", c.kind);
            let alerting = correlations
                .iter()
                .find(|(at, _)| *at == i)
                .map(|(_, a)| a.clone());
            match alerting {
                Some(Ok(alerting)) => {
                    // The counted rules' documents, then the correlation: the rule's text.
                    let mut text = String::new();
                    for name in &c.rules {
                        if let Some(d) = referenced(&docs, name) {
                            text.push_str(&as_document(&d.text));
                        }
                    }
                    text.push_str(&as_document(&doc.text));
                    meta.query = text;
                    meta.alerting = Some(alerting);
                    out.push(Loaded::Runs(Box::new(Rule::compile(meta)?)));
                }
                Some(Err(why)) => out.push(not_run(meta, why.0)),
                None => out.push(not_run(meta, "correlation rule not read".into())),
            }
            continue;
        }
        if let Some(title) = counted_by(doc) {
            out.push(not_run(
                meta,
                format!(
                    "counted by the correlation rule {title:?} (generate: false): its matches \
                     are reported through it"
                ),
            ));
            continue;
        }
        match query_of(doc, &parsed) {
            Err(why) => out.push(not_run(meta, why.0)),
            Ok(query) => {
                let rule = Rule::assemble(meta, Query::Sigma(Box::new(query)))?;
                out.push(Loaded::Runs(Box::new(rule)));
            }
        }
    }
    Ok(out)
}

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
        assert!(n.reason.contains("not in the same file"), "{}", n.reason);
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
correlation: {type: temporal_ordered, rules: [f-1], group-by: [UserId], timespan: 5m}
";

    #[test]
    fn counting_correlations_run_as_thresholds_and_the_others_say_why() {
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
            panic!("temporal_ordered does not run");
        };
        assert!(n.reason.contains("temporal_ordered"), "{}", n.reason);
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
}
