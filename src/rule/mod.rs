//! Rules as data: published metadata plus a KQL query text, compiled once.
//!
//! Place in the flow: `Config` holds the compiled rules; `prefilter` takes the literals
//! they require; `scan` evaluates them against each parsed candidate and, on a match,
//! reads the rule's evidence fields. Nothing here knows about bytes, chunks or files.

pub mod kql;

use serde::{Deserialize, Serialize};

use crate::field::Field;
use kql::Query;

/// The built-in rule, as published by Elastic.
const BUILTIN: &str = include_str!("../../rules/o365_mailbox_audit_bypass.toml");

/// A rule's published description.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct RuleMeta {
    /// Elastic's `rule_id`.
    pub id: String,
    /// The rule's name.
    pub name: String,
    /// A later name of the same rule upstream, if any.
    #[serde(default)]
    pub renamed: Option<String>,
    /// What the rule detects.
    #[serde(default)]
    pub description: String,
    /// Elastic rule type (`query`).
    #[serde(rename = "type", default)]
    pub rule_type: String,
    /// Query language (`kuery`).
    #[serde(default)]
    pub language: String,
    /// Index patterns the rule runs on in Elastic.
    #[serde(default)]
    pub index: Vec<String>,
    /// `low`, `medium`, `high` or `critical`.
    pub severity: String,
    /// 0–100.
    pub risk_score: u32,
    /// How Elastic schedules the rule.
    #[serde(default)]
    pub schedule: String,
    /// Known benign causes.
    #[serde(default)]
    pub false_positives: Vec<String>,
    /// The KQL query text, as published.
    pub query: String,
    /// MITRE ATT&CK mapping.
    #[serde(default)]
    pub threat: Vec<Threat>,
    /// Which fields a finding shows as its target and flag.
    #[serde(default)]
    pub evidence: EvidenceSpec,
}

/// One MITRE ATT&CK mapping.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct Threat {
    /// Tactic id and name.
    pub tactic: String,
    /// Technique id and name.
    pub technique: String,
    /// Sub-technique id and name.
    #[serde(default)]
    pub subtechnique: Option<String>,
}

/// The ECS fields a finding reports besides actor, time, record id and source IP.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct EvidenceSpec {
    /// The target: the first of these fields that has a value.
    #[serde(default)]
    pub target: Vec<String>,
    /// A boolean-like flag (`True`/`False`, any case).
    #[serde(default)]
    pub flag: Option<String>,
}

/// A rule ready to run: its metadata, parsed query and resolved evidence fields.
#[derive(Clone, Debug)]
pub struct Rule {
    /// Published metadata.
    pub meta: RuleMeta,
    /// The parsed query.
    pub query: Query,
    /// Target fields, resolved.
    pub target: Vec<Field>,
    /// Flag field, resolved.
    pub flag: Option<Field>,
}

/// A rule that could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum RuleError {
    /// The rule file is not valid TOML or lacks a field.
    #[error("rule file: {0}")]
    Toml(#[from] toml::de::Error),
    /// The query text does not parse.
    #[error("rule {name:?}: {source}")]
    Query {
        /// The rule's name.
        name: String,
        /// What was wrong with the query.
        source: kql::ParseError,
    },
}

impl Rule {
    /// Compiles a rule from its TOML description.
    pub fn from_toml(text: &str) -> Result<Rule, RuleError> {
        let meta: RuleMeta = toml::from_str(text)?;
        Rule::compile(meta)
    }

    /// Compiles a rule from its metadata.
    pub fn compile(meta: RuleMeta) -> Result<Rule, RuleError> {
        let query = Query::parse(&meta.query).map_err(|source| RuleError::Query {
            name: meta.name.clone(),
            source,
        })?;
        let target = meta
            .evidence
            .target
            .iter()
            .map(|f| Field::parse(f))
            .collect();
        let flag = meta.evidence.flag.as_deref().map(Field::parse);
        Ok(Rule {
            meta,
            query,
            target,
            flag,
        })
    }

    /// The rules shipped with ualhunt.
    pub fn builtin() -> Vec<Rule> {
        // The built-in rule file is part of the binary and covered by tests.
        vec![Rule::from_toml(BUILTIN).expect("the built-in rule compiles")]
    }
}

/// Reads a boolean-like flag value: `True`/`False` in any case (also `$true`, `1`, `0`).
pub fn parse_flag(text: &str) -> Option<bool> {
    let t = text.trim().trim_start_matches('$');
    if t.eq_ignore_ascii_case("true") || t == "1" {
        Some(true)
    } else if t.eq_ignore_ascii_case("false") || t == "0" {
        Some(false)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_rule_compiles_with_published_metadata() {
        let rules = Rule::builtin();
        let rule = &rules[0];
        assert_eq!(rule.meta.id, "675239ea-c1bc-4467-a6d3-b9e2cc7f676d");
        assert_eq!(rule.meta.severity, "medium");
        assert_eq!(rule.meta.risk_score, 47);
        assert_eq!(rule.query.fields().len(), 4);
        assert_eq!(
            rule.query.required_literals(),
            Some(vec!["Set-MailboxAuditBypassAssociation".to_string()])
        );
        assert_eq!(rule.target[0], Field::Audit("Parameters.Identity".into()));
    }

    #[test]
    fn flags() {
        assert_eq!(parse_flag("True"), Some(true));
        assert_eq!(parse_flag("FALSE"), Some(false));
        assert_eq!(parse_flag("$true"), Some(true));
        assert_eq!(parse_flag("maybe"), None);
    }

    #[test]
    fn a_bad_query_is_reported_with_the_rule_name() {
        let err =
            Rule::from_toml("id='x'\nname='broken'\nseverity='low'\nrisk_score=1\nquery='a:(b'\n")
                .unwrap_err();
        assert!(err.to_string().contains("broken"), "{err}");
    }
}
