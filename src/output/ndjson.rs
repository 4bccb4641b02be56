//! `--format ndjson`: one matched event per line, with its evidence and the rule's
//! metadata, in the same order as the JSON evidence.

use std::io::{self, Write};

use serde::Serialize;

use super::Exporter;
use super::json::{EvidenceOut, RuleOut};
use crate::engine::Report;

/// The NDJSON exporter.
pub struct Ndjson;

#[derive(Serialize)]
struct Line<'a> {
    rule: RuleOut<'a>,
    actor: Option<&'a str>,
    #[serde(flatten)]
    evidence: EvidenceOut<'a>,
}

impl Exporter for Ndjson {
    fn write(&self, report: &Report, out: &mut dyn Write) -> io::Result<()> {
        for actor in &report.actors {
            for e in &actor.evidence {
                let r = &report.rules[e.rule];
                let line = Line {
                    rule: RuleOut {
                        id: &r.id,
                        name: &r.name,
                        severity: &r.severity,
                        risk_score: r.risk_score,
                        query: None,
                    },
                    actor: actor.actor.as_deref(),
                    evidence: EvidenceOut::new(report, e),
                };
                serde_json::to_writer(&mut *out, &line)?;
                out.write_all(b"\n")?;
            }
        }
        Ok(())
    }
}
