//! Sigma rules in a rule pack: YAML documents made into rules beside Elastic's.
//!
//! Place in the flow: `load` hands each `.yml`/`.yaml` file's text to [`load_text`];
//! every document becomes a [`Rule`] whose query is a [`SigmaQuery`] (the detection over
//! the fields the field mapping names, ANDed with the records its log source sees), or a
//! [`NotRun`] with the reason. A rule's [`RuleMeta`] holds the document's own text and,
//! when it is not the built-in one, the mapping's, so a shard's merge recompiles it
//! exactly ([`compile`]). Nothing here reads records or bytes.

use std::fmt;

use ualhunt_query::sigma::{self, Document, Mapping};

use super::load::{Loaded, NotRun};
use super::{Query, Rule, RuleError, RuleMeta, Threat};
use crate::field::{Field, Fields};

/// The built-in field mapping (`--sigma-mapping FILE` replaces it).
pub const BUILTIN_MAPPING: &str = include_str!("../../rules/sigma_mapping.yml");

/// The `type` and `language` of a Sigma rule in reports.
pub const SIGMA: &str = "sigma";

/// A Sigma rule's query: its detection, and the records its log source sees.
#[derive(Clone, Debug)]
pub struct SigmaQuery {
    /// The mapping's condition on the log source's records (`None`: every record).
    records: Option<sigma::Query<Field>>,
    /// The rule's detection.
    detection: sigma::Query<Field>,
}

impl SigmaQuery {
    /// Whether a record is one of the log source's and matches the detection.
    pub fn matches(&self, record: &dyn Fields<Field>) -> bool {
        self.records.as_ref().is_none_or(|r| r.matches(record)) && self.detection.matches(record)
    }

    /// The detection's literals for a case-sensitive search (the log source's condition
    /// only narrows): see `ualhunt_query::sigma::Query::required_literals`.
    pub fn required_literals(&self) -> Option<Vec<String>> {
        self.detection.required_literals()
    }

    /// The detection's literal sets.
    pub fn required_conjuncts(&self) -> Vec<Vec<String>> {
        self.detection.required_conjuncts()
    }

    /// The detection's literals, lower-cased, for a search that folds ASCII case.
    pub fn folded_literals(&self) -> Option<Vec<String>> {
        self.detection.folded_literals()
    }

    /// Every field read.
    pub fn fields(&self) -> Vec<&Field> {
        let mut out = self.detection.fields();
        if let Some(r) = &self.records {
            out.extend(r.fields());
        }
        out
    }
}

impl fmt::Display for SigmaQuery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.detection.fmt(f)
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
    Ok(SigmaQuery { records, detection })
}

/// The query of a Sigma rule's metadata: its document (`query`) through its mapping.
pub fn compile(meta: &RuleMeta) -> Result<Query, RuleError> {
    let invalid = |message: String| RuleError::Invalid {
        name: meta.name.clone(),
        message,
    };
    let docs = sigma::parse(&meta.query).map_err(|e| invalid(e.to_string()))?;
    let [doc] = docs.as_slice() else {
        return Err(invalid("a Sigma rule's text holds one document".into()));
    };
    let mapping = mapping_of(meta)?;
    query_of(doc, &mapping)
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
    let mut out = Vec::new();
    for doc in &docs {
        let meta = meta_of(doc, mapping);
        match query_of(doc, &parsed) {
            Err(why) => out.push(Loaded::NotRun(NotRun {
                id: meta.id,
                name: meta.name,
                path: String::new(),
                rule_type: SIGMA.into(),
                language: SIGMA.into(),
                reason: format!("Sigma: {why}"),
            })),
            Ok(query) => {
                let rule = Rule::assemble(meta, Query::Sigma(Box::new(query)))?;
                out.push(Loaded::Runs(Box::new(rule)));
            }
        }
    }
    Ok(out)
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
            panic!("a correlation does not run yet");
        };
        assert!(n.reason.contains("event_count"), "{}", n.reason);
        let Loaded::NotRun(n) = &loaded[2] else {
            panic!("a windows rule has no mapping");
        };
        assert!(n.reason.contains("product=windows"), "{}", n.reason);
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
