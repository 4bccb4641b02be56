//! `--format json`: one document, schema version 1 (DESIGN §4).

use std::io::{self, Write};

use serde::Serialize;

use super::{Exporter, Rfc3339, rfc3339};
use crate::engine::{MalformedLine, Report, ScanError};
use crate::findings::{ActorFindings, Event, Target};

/// The JSON exporter.
pub struct Json;

#[derive(Serialize)]
struct Document<'a> {
    version: u32,
    rules: Vec<RuleOut<'a>>,
    scan: ScanOut<'a>,
    actors: Vec<ActorOut<'a>>,
}

#[derive(Serialize)]
pub(super) struct RuleOut<'a> {
    pub id: &'a str,
    pub name: &'a str,
    pub severity: &'a str,
    pub risk_score: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub query: Option<&'a str>,
}

#[derive(Serialize)]
struct ScanOut<'a> {
    files: u64,
    bytes: u64,
    lines: u64,
    blank: u64,
    records: u64,
    not_candidate: u64,
    candidates: u64,
    matched: u64,
    not_matched: u64,
    malformed: u64,
    outside_window: u64,
    duplicates: u64,
    events: usize,
    errors: &'a [ScanError],
    warnings: &'a [ScanError],
    malformed_samples: &'a [MalformedLine],
}

#[derive(Serialize)]
struct ActorOut<'a> {
    actor: Option<&'a str>,
    events: usize,
    first_seen: Option<String>,
    last_seen: Option<String>,
    targets: &'a [Target],
    source_ips: &'a [String],
    evidence: Vec<EvidenceOut<'a>>,
}

#[derive(Serialize)]
pub(super) struct EvidenceOut<'a> {
    pub rule_id: &'a str,
    pub path: &'a str,
    pub line: u64,
    pub timestamp: Option<Rfc3339>,
    pub record_id: Option<&'a str>,
    pub target: Option<&'a str>,
    pub bypass_enabled: Option<bool>,
    pub source_ip: Option<&'a str>,
}

impl<'a> EvidenceOut<'a> {
    pub(super) fn new(report: &'a Report, e: &'a Event) -> EvidenceOut<'a> {
        EvidenceOut {
            rule_id: &report.rules[e.rule].id,
            path: &report.inputs[e.file],
            line: e.line + 1,
            timestamp: e.timestamp.as_ref().map(Rfc3339::new),
            record_id: e.record_id.as_deref(),
            target: e.target.as_deref(),
            bypass_enabled: e.bypass_enabled,
            source_ip: e.source_ip.as_deref(),
        }
    }
}

fn actor_out<'a>(report: &'a Report, a: &'a ActorFindings) -> ActorOut<'a> {
    ActorOut {
        actor: a.actor.as_deref(),
        events: a.evidence.len(),
        first_seen: a.first_seen.as_ref().map(rfc3339),
        last_seen: a.last_seen.as_ref().map(rfc3339),
        targets: &a.targets,
        source_ips: &a.source_ips,
        evidence: a
            .evidence
            .iter()
            .map(|e| EvidenceOut::new(report, e))
            .collect(),
    }
}

impl Exporter for Json {
    fn write(&self, report: &Report, out: &mut dyn Write) -> io::Result<()> {
        let c = &report.counts;
        let doc = Document {
            version: 1,
            rules: report
                .rules
                .iter()
                .map(|r| RuleOut {
                    id: &r.id,
                    name: &r.name,
                    severity: &r.severity,
                    risk_score: r.risk_score,
                    query: Some(&r.query),
                })
                .collect(),
            scan: ScanOut {
                files: report.files,
                bytes: report.bytes,
                lines: c.lines,
                blank: c.blank,
                records: c.records,
                not_candidate: c.not_candidate(),
                candidates: c.candidates,
                matched: c.matched,
                not_matched: c.not_matched,
                malformed: c.malformed,
                outside_window: c.outside_window,
                duplicates: report.duplicates,
                events: report.events(),
                errors: &report.errors,
                warnings: &report.warnings,
                malformed_samples: &report.malformed,
            },
            actors: report.actors.iter().map(|a| actor_out(report, a)).collect(),
        };
        serde_json::to_writer(&mut *out, &doc)?;
        writeln!(out)
    }
}
