//! The first pass's sink: a selected record becomes a [`Finding`] carrying the evidence
//! items its rule declares.
//!
//! Place in the flow: `scan` hands each selected record to [`Harvest`]'s
//! [`Sink::selected`] with the selections it satisfied; this module reads the common
//! fields (time, actor, record id, source IP) and the rule file's evidence list, typed
//! (text, flag, user type name, command line). It knows no rule by name.

use crate::enrich::Enrichment;
use crate::field::Field;
use crate::findings::{Finding, Harvest, Text, Value};
use crate::record::{Record, parse_flag};
use crate::rule::{Evidence, EvidenceKind, Query, Rule, user_type_name};
use crate::scan::{Interner, Sink, SinkCx};

impl Sink for Harvest {
    type Params = ();

    fn selected(
        &mut self,
        hits: &[usize],
        record: &Record<'_, '_>,
        at: crate::findings::At,
        cx: &mut SinkCx<'_, ()>,
    ) {
        for &i in hits {
            let sel = &cx.matcher.selections()[i];
            let rule = &cx.matcher.rules()[usize::from(sel.rule)];
            self.findings.push(Finding {
                rule: sel.rule,
                why: sel.why,
                at,
                timestamp: record.timestamp(),
                actor: record.actor().map(|s| cx.texts.text(&s)),
                action: record.operation().map(|s| cx.texts.text(&s)),
                record_id: record.text(&Field::EventId).map(|s| Text::from(&*s)),
                source_ip: record.client_address().and_then(|a| cx.texts.ip(a)),
                fields: read_evidence(record, rule, cx.matcher.enrichment(), cx.texts),
            });
        }
    }
}

/// The rule's evidence items of a record, in the rule file's order; derived fields
/// (`user_agent.name`, `source.geo.*`) read through `enrichment`.
pub fn read_evidence(
    record: &Record<'_, '_>,
    rule: &Rule,
    enrichment: &Enrichment,
    texts: &mut Interner,
) -> Vec<Option<Value>> {
    rule.evidence
        .iter()
        .map(|e| read(record, rule, e, enrichment, texts))
        .collect()
}

fn read(
    record: &Record<'_, '_>,
    rule: &Rule,
    e: &Evidence,
    enrichment: &Enrichment,
    texts: &mut Interner,
) -> Option<Value> {
    let first = || e.fields.iter().find_map(|f| enrichment.shown(record, f));
    match e.kind {
        EvidenceKind::Keyword => first().map(|s| Value::Text(texts.text(&s))),
        EvidenceKind::Flag => first().and_then(|s| parse_flag(&s)).map(Value::Bool),
        EvidenceKind::UserType => first().map(|s| Value::Text(texts.text(&user_type_name(&s)))),
        // Built in the interner's buffer and copied out once: the text is kept as a
        // shared string, so a `String` of its own would only be grown and freed.
        EvidenceKind::CommandLine => {
            let line = texts.buffer();
            let written = record.write_command_line(line);
            written.then(|| Value::Text(Text::from(line.as_str())))
        }
        // Written after the scan, by the rule's alerting or the sequence's replay.
        EvidenceKind::Alert | EvidenceKind::Step => None,
        EvidenceKind::Sequence => crate::analysis::sequence::step_match(record, rule),
        EvidenceKind::EsqlRows => match &rule.query {
            // The rows see the derived fields (an ASN, a country) as the query did.
            Query::Esql(q) => {
                let view = crate::enrich::Enriched::new(record, enrichment);
                crate::analysis::esql::encode_rows(&q.rows(&view)).map(Value::Text)
            }
            _ => None,
        },
    }
}
