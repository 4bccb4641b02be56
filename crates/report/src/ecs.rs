//! `--format ecs`: the findings as Elastic Common Schema 9.4 documents, in the `_bulk`
//! NDJSON form for a `logs-ualhunt.alerts-default` data stream: for each document a
//! `{"create":{}}` action line (a data stream takes only `create`), then the document.
//!
//! A rule match is an alert (`event.kind: alert`), so Elastic Security's prebuilt
//! "External Alerts" rule promotes it: that rule names the alert from `message`, maps
//! `event.severity` 21/47/73/99 to low/medium/high/critical and takes the risk score
//! from `event.risk_score`. A failed attempt is a document of kind `event` with
//! `event.outcome: failure`: searchable beside the alerts, never promoted. A
//! building-block rule's match (Elastic's `building_block_type`, in `labels`) is of
//! kind `signal`, not promoted either, unless the run counts building blocks
//! (`--building-blocks`).
//!
//! Every field written is an ECS field with its ECS type (`tests/reports.rs` checks
//! them against ECS's own field list). What ECS has no field for — the change
//! (`enable`/`disable`), the allowlist mark, the line, the rule's other evidence items
//! — goes to `labels`, as text. `event.action` and `event.provider` are the values the
//! rule's query pins (`event.action:Set-MailboxAuditBypassAssociation`), so every
//! matched record has them. `source.ip` and `related.ip` are written only for a real
//! address (the scan keeps nothing else, and Elasticsearch would reject the document
//! otherwise: checked again here). `event.original` is absent: the raw record is not
//! kept.

use std::borrow::Cow;
use std::io::{self, Write};
use std::net::IpAddr;

use serde::Serialize;
use serde::ser::SerializeMap;

use crate::exporter::Exporter;
use crate::time::Rfc3339;
use crate::timeline::{describe, evidence_text};
use ualhunt_engine::Report;
use ualhunt_engine::allow::Entry;
use ualhunt_engine::analysis::Change;
use ualhunt_engine::field::Field;
use ualhunt_engine::findings::{Finding, Value, Why};
use ualhunt_engine::rule::RuleMeta;
use ualhunt_engine::rule::kql::{Pattern, Query, ValueExpr};
use ualhunt_engine::rule::sigma::SIGMA;

/// The ECS exporter.
pub struct Ecs;

/// The ECS version the documents follow.
pub const ECS_VERSION: &str = "9.4.0";
/// `data_stream.dataset` and `event.dataset`.
pub const DATASET: &str = "ualhunt.alerts";
/// `data_stream.namespace`.
pub const NAMESPACE: &str = "default";

/// The `_bulk` action line before each document.
const ACTION: &[u8] = b"{\"create\":{}}\n";

/// Evidence items that have an ECS field of their own; the others go to `labels`.
const MAPPED: [&str; 4] = ["target", "organization_id", "tenant", "user_agent"];

/// `event.severity` for a rule severity: the values the "External Alerts" rule maps
/// back to low, medium, high and critical.
fn severity_number(severity: &str) -> Option<u32> {
    match severity.trim().to_ascii_lowercase().as_str() {
        "low" => Some(21),
        "medium" => Some(47),
        "high" => Some(73),
        "critical" => Some(99),
        _ => None,
    }
}

/// The exact value a query requires of `field` in every record it matches: a clause
/// `field:value` of its top-level conjunction.
fn pinned(query: &Query, field: &Field) -> Option<String> {
    match query {
        Query::Match {
            field: f,
            value: ValueExpr::Term(Pattern::Exact(v)),
        } if f == field => Some(v.clone()),
        Query::And(parts) => parts.iter().find_map(|q| pinned(q, field)),
        _ => None,
    }
}

/// `event.action` and `event.provider` that a query pins.
#[derive(Default)]
struct Pins {
    action: Option<String>,
    provider: Option<String>,
}

impl Pins {
    fn of(query: &str) -> Pins {
        match Query::parse(query) {
            Ok(q) => Pins {
                action: pinned(&q, &Field::Action),
                provider: pinned(&q, &Field::Provider),
            },
            Err(_) => Pins::default(),
        }
    }
}

/// ATT&CK ids, names and references, as ECS's parallel arrays.
#[derive(Default, Serialize)]
struct Names {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    id: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    name: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    reference: Vec<String>,
}

impl Names {
    fn is_empty(&self) -> bool {
        self.id.is_empty() && self.name.is_empty()
    }

    /// Adds `TA0005 Defense Evasion` (id, then name) unless it is there already.
    fn add(&mut self, text: &str, reference: impl Fn(&str) -> String) {
        let text = text.trim();
        let looks_like_id = |s: &str| {
            s.starts_with('T')
                && s[1..]
                    .trim_start_matches('A')
                    .starts_with(|c: char| c.is_ascii_digit())
        };
        let (id, name) = match text.split_once(' ') {
            Some((id, name)) if looks_like_id(id) => (Some(id), name.trim()),
            _ if looks_like_id(text) => (Some(text), ""),
            _ => (None, text),
        };
        if let Some(id) = id {
            if self.id.iter().any(|i| i == id) {
                return;
            }
            self.id.push(id.to_string());
            self.reference.push(reference(id));
        } else if self.name.iter().any(|n| n == name) {
            return;
        }
        if !name.is_empty() {
            self.name.push(name.to_string());
        }
    }
}

#[derive(Serialize)]
struct Technique {
    #[serde(flatten)]
    names: Names,
    #[serde(skip_serializing_if = "Names::is_empty")]
    subtechnique: Names,
}

#[derive(Serialize)]
struct Threat {
    framework: &'static str,
    tactic: Names,
    technique: Technique,
}

fn threat(rule: &RuleMeta) -> Option<Threat> {
    if rule.threat.is_empty() {
        return None;
    }
    let mut tactic = Names::default();
    let mut technique = Names::default();
    let mut subtechnique = Names::default();
    for t in &rule.threat {
        tactic.add(&t.tactic, |id| {
            format!("https://attack.mitre.org/tactics/{id}/")
        });
        technique.add(&t.technique, |id| {
            format!("https://attack.mitre.org/techniques/{id}/")
        });
        if let Some(s) = &t.subtechnique {
            subtechnique.add(s, |id| {
                format!(
                    "https://attack.mitre.org/techniques/{}/",
                    id.replace('.', "/")
                )
            });
        }
    }
    Some(Threat {
        framework: "MITRE ATT&CK",
        tactic,
        technique: Technique {
            names: technique,
            subtechnique,
        },
    })
}

/// What the documents of one rule share.
struct RuleDocs<'a> {
    meta: &'a RuleMeta,
    severity: Option<u32>,
    threat: Option<Threat>,
    /// What the rule's query pins, then each context selection's.
    pins: Pins,
    context_pins: Vec<Pins>,
}

impl<'a> RuleDocs<'a> {
    fn new(meta: &'a RuleMeta) -> RuleDocs<'a> {
        RuleDocs {
            meta,
            severity: severity_number(&meta.severity),
            threat: threat(meta),
            // A Sigma rule's query is YAML, not KQL: nothing to pin.
            pins: if meta.language == SIGMA {
                Pins::default()
            } else {
                Pins::of(&meta.query)
            },
            context_pins: meta.context.iter().map(|c| Pins::of(&c.query)).collect(),
        }
    }

    fn pins(&self, why: Why) -> &Pins {
        static NONE: Pins = Pins {
            action: None,
            provider: None,
        };
        match why {
            Why::Rule => &self.pins,
            Why::Context(i) => self.context_pins.get(usize::from(i)).unwrap_or(&NONE),
        }
    }
}

#[derive(Serialize)]
struct Doc<'a> {
    #[serde(rename = "@timestamp", skip_serializing_if = "Option::is_none")]
    timestamp: Option<Rfc3339>,
    message: String,
    ecs: EcsOut,
    data_stream: DataStreamOut,
    event: EventOut<'a>,
    rule: RuleOut<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    threat: Option<&'a Threat>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<UserOut<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    source: Option<SourceOut<'a>>,
    #[serde(skip_serializing_if = "RelatedOut::is_empty")]
    related: RelatedOut<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    organization: Option<OrganizationOut<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user_agent: Option<UserAgentOut<'a>>,
    log: LogOut<'a>,
    labels: Labels<'a>,
}

#[derive(Serialize)]
struct EcsOut {
    version: &'static str,
}

#[derive(Serialize)]
struct DataStreamOut {
    #[serde(rename = "type")]
    kind: &'static str,
    dataset: &'static str,
    namespace: &'static str,
}

#[derive(Serialize)]
struct EventOut<'a> {
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    severity: Option<u32>,
    risk_score: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    dataset: &'static str,
    module: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    provider: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    action: Option<&'a str>,
    outcome: &'static str,
}

#[derive(Serialize)]
struct RuleOut<'a> {
    id: &'a str,
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    author: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reference: Option<&'a str>,
    ruleset: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'a str>,
}

#[derive(Serialize)]
struct UserOut<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    target: Option<TargetOut<'a>>,
}

#[derive(Serialize)]
struct TargetOut<'a> {
    name: &'a str,
}

#[derive(Serialize)]
struct SourceOut<'a> {
    address: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    ip: Option<&'a str>,
}

#[derive(Serialize)]
struct RelatedOut<'a> {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    user: Vec<&'a str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    ip: Vec<&'a str>,
}

impl RelatedOut<'_> {
    fn is_empty(&self) -> bool {
        self.user.is_empty() && self.ip.is_empty()
    }
}

#[derive(Serialize)]
struct OrganizationOut<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
}

#[derive(Serialize)]
struct UserAgentOut<'a> {
    original: &'a str,
}

#[derive(Serialize)]
struct LogOut<'a> {
    file: FileOut<'a>,
}

#[derive(Serialize)]
struct FileOut<'a> {
    path: Cow<'a, str>,
}

/// `labels`: text values under names without dots, in a fixed order.
struct Labels<'a>(Vec<(Cow<'a, str>, Cow<'a, str>)>);

impl Labels<'_> {
    fn has(&self, name: &str) -> bool {
        self.0.iter().any(|(k, _)| k == name)
    }
}

impl Serialize for Labels<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

/// Text that says something (empty values are left out of the documents).
fn some(text: Option<&str>) -> Option<&str> {
    text.filter(|t| !t.trim().is_empty())
}

fn doc<'a>(
    report: &'a Report,
    rules: &'a [RuleDocs<'a>],
    f: &'a Finding,
    change: Option<Change>,
    allowed: Option<&'a Entry>,
) -> Doc<'a> {
    let r = &rules[usize::from(f.rule)];
    let meta = r.meta;
    let failed = f.why != Why::Rule;
    let pins = r.pins(f.why);
    let items = report.items(f);
    let text = |index| some(evidence_text(f, index));
    let actor = some(f.actor.as_deref());
    let target = text(items.target);
    let address = some(f.source_ip.as_deref());
    let ip = address.filter(|a| a.parse::<IpAddr>().is_ok());

    let mut related_users: Vec<&str> = Vec::new();
    for u in [actor, target].into_iter().flatten() {
        if !related_users.contains(&u) {
            related_users.push(u);
        }
    }

    let mut labels: Vec<(Cow<str>, Cow<str>)> = Vec::new();
    if let Some(c) = change {
        labels.push(("change".into(), c.name().into()));
    }
    let allowlisted = if allowed.is_some() { "true" } else { "false" };
    labels.push(("allowlisted".into(), allowlisted.into()));
    if let Some(entry) = allowed {
        labels.push(("allow_reason".into(), entry.reason.as_str().into()));
        if let Some(owner) = some(entry.owner.as_deref()) {
            labels.push(("allow_owner".into(), owner.into()));
        }
    }
    labels.push(("line".into(), (f.at.line + 1).to_string().into()));
    if let Some(kind) = meta.building_block.as_deref() {
        labels.push(("building_block".into(), kind.into()));
    }
    let mut labels = Labels(labels);
    for (spec, value) in meta.evidence.iter().zip(&f.fields) {
        if MAPPED.contains(&spec.name.as_str()) {
            continue;
        }
        let name = spec.name.replace('.', "_");
        let value: Cow<str> = match value {
            Some(Value::Bool(b)) => b.to_string().into(),
            Some(Value::Text(t)) if !t.trim().is_empty() => t.as_ref().into(),
            _ => continue,
        };
        if !labels.has(&name) {
            labels.0.push((name.into(), value));
        }
    }

    let organization = (text(items.organization_id).is_some() || text(items.tenant).is_some())
        .then(|| OrganizationOut {
            id: text(items.organization_id),
            name: text(items.tenant),
        });
    Doc {
        timestamp: f.timestamp.as_ref().map(Rfc3339::new),
        message: format!(
            "{}: {}",
            meta.shown_name(),
            describe(items, f, change, failed, allowed)
        ),
        ecs: EcsOut {
            version: ECS_VERSION,
        },
        data_stream: DataStreamOut {
            kind: "logs",
            dataset: DATASET,
            namespace: NAMESPACE,
        },
        event: EventOut {
            // A building-block rule's match is a signal for other rules: kept out of
            // the alerts (as Elastic keeps building-block alerts out of its alerts
            // table) unless the run counts building blocks.
            kind: if failed {
                "event"
            } else if meta.is_building_block() && !report.building_blocks {
                "signal"
            } else {
                "alert"
            },
            severity: r.severity,
            risk_score: meta.risk_score,
            id: some(f.record_id.as_deref()),
            dataset: DATASET,
            module: "ualhunt",
            provider: pins.provider.as_deref(),
            // The record's own `Operation`, raw (as every report lists actions); what
            // the query pins when the record had none.
            action: some(f.action.as_deref()).or(pins.action.as_deref()),
            outcome: if failed { "failure" } else { "success" },
        },
        rule: RuleOut {
            id: &meta.id,
            name: &meta.name,
            author: meta.author.as_deref(),
            reference: meta.references.first().map(String::as_str),
            ruleset: if meta.language == SIGMA {
                "Sigma"
            } else {
                "Elastic prebuilt rules"
            },
            description: some(Some(meta.description.trim())),
        },
        threat: r.threat.as_ref(),
        user: (actor.is_some() || target.is_some()).then(|| UserOut {
            id: actor,
            target: target.map(|name| TargetOut { name }),
        }),
        source: address.map(|address| SourceOut { address, ip }),
        related: RelatedOut {
            user: related_users,
            ip: ip.into_iter().collect(),
        },
        organization,
        user_agent: text(items.user_agent).map(|original| UserAgentOut { original }),
        log: LogOut {
            file: FileOut {
                path: report.inputs.path(f.at.input as usize),
            },
        },
        labels,
    }
}

impl Exporter for Ecs {
    fn write(&self, report: &Report, out: &mut dyn Write) -> io::Result<()> {
        let rules: Vec<RuleDocs> = report.rules.iter().map(RuleDocs::new).collect();
        let mut write = |d: Doc| -> io::Result<()> {
            out.write_all(ACTION)?;
            crate::escape::json_to_writer(&mut *out, &d)?;
            out.write_all(b"\n")
        };
        for e in report.actors.iter().flat_map(|a| &a.evidence) {
            let allowed = e.allowed.map(|i| &report.allowlist.entries[i]);
            write(doc(report, &rules, &e.finding, e.change, allowed))?;
        }
        for e in report.investigations.iter().flat_map(|i| &i.attempts) {
            let allowed = e.allowed.map(|i| &report.allowlist.entries[i]);
            write(doc(report, &rules, &e.finding, None, allowed))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ualhunt_engine::rule::Rule;

    #[test]
    fn the_builtin_query_pins_action_and_provider() {
        let rule = &Rule::builtin()[0].meta;
        let docs = RuleDocs::new(rule);
        let action = Some("Set-MailboxAuditBypassAssociation");
        assert_eq!(docs.pins(Why::Rule).action.as_deref(), action);
        assert_eq!(docs.pins(Why::Rule).provider.as_deref(), Some("Exchange"));
        assert_eq!(docs.pins(Why::Context(0)).action.as_deref(), action);
        assert_eq!(docs.pins(Why::Context(7)).action, None);
        let q = Query::parse("event.action:(a or b) and not event.provider:x").unwrap();
        assert_eq!(pinned(&q, &Field::Action), None);
        assert_eq!(pinned(&q, &Field::Provider), None);
    }

    #[test]
    fn threat_ids_names_and_references() {
        let rule = &Rule::builtin()[0].meta;
        let t = threat(rule).unwrap();
        assert_eq!(t.tactic.id, ["TA0005"]);
        assert_eq!(t.tactic.name, ["Defense Evasion"]);
        assert_eq!(
            t.tactic.reference,
            ["https://attack.mitre.org/tactics/TA0005/"]
        );
        assert_eq!(t.technique.names.id, ["T1562"]);
        assert_eq!(t.technique.names.name, ["Impair Defenses"]);
        assert_eq!(t.technique.subtechnique.id, ["T1562.001"]);
        assert_eq!(
            t.technique.subtechnique.reference,
            ["https://attack.mitre.org/techniques/T1562/001/"]
        );
        let mut n = Names::default();
        n.add("Defense Evasion", |id| id.to_string());
        n.add("Defense Evasion", |id| id.to_string());
        assert!(n.id.is_empty());
        assert_eq!(n.name, ["Defense Evasion"]);
    }

    #[test]
    fn severities_map_to_the_external_alerts_values() {
        assert_eq!(severity_number("low"), Some(21));
        assert_eq!(severity_number("Medium"), Some(47));
        assert_eq!(severity_number("high"), Some(73));
        assert_eq!(severity_number("critical"), Some(99));
        assert_eq!(severity_number("severe"), None);
    }
}
