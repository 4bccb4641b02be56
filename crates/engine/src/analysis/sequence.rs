//! EQL sequences and Sigma temporal correlations, replayed over the archive in
//! event-time order.
//!
//! Place in the flow: in the scan, a record that matches one of a sequence rule's steps
//! (or its `until`) is a match of the rule like any other (one prefilter for all steps'
//! literals), and its `sequence` evidence item records which steps it matched and on
//! which join-key values ([`step_match`]). Those matches are merged like every finding
//! (chunks, files, shards), duplicates dropped; then, before alerting and the time
//! window, [`apply`] sorts each sequence rule's matches by event time (ties by input
//! position, so the result is the same for any thread count, chunk size or sharding) and
//! replays them with `ualhunt_query::sequence` (the semantics of Elastic's reference
//! engine, PyPI `eql` 1.0: per key one partial sequence per step, `maxspan` expiry,
//! `until` cancelling; join keys as Elasticsearch takes them).
//!
//! Each completed sequence is one finding: the record of its last step (its time, actor,
//! record id, source IP: when the sequence completed, and who did that), its `sequence`
//! item saying the keys and span, and its `step_N` items each step's record (time,
//! path:line, record id). The step matches in no completed sequence are held back
//! (counted per rule); a match without a time cannot be placed and is held back too.
//!
//! State is bounded: a partial sequence lives at most `maxspan`, and at most
//! [`MAX_PENDING`] live per rule at once; past that the oldest is dropped, counted, and
//! a warning names the rule. Nothing here reads input.
//!
//! A Sigma `temporal` or `temporal_ordered` correlation, or a chained one (a
//! correlation naming correlations), goes the same way: its `sequence` item records, in
//! the scan, which of the detection rules of the chain the record matched and its group
//! (and counted value) for each; the replay is `ualhunt_query::correlation`'s (state:
//! per group that matched in the last `timespan`, one match per rule or one partial
//! chain per position; per count, the matches it was given). Each correlation that
//! fires is one finding, the record of its latest match, with `step_N` naming the
//! latest record behind rule N of the correlation (with the rule's title).

use serde::{Deserialize, Serialize};
use ualhunt_query::correlation::{Fired, Kind, Metric};
use ualhunt_query::sequence::{Key, Shape, StepEvent, replay};

use crate::error::Warning;
use crate::field::Field;
use crate::findings::{Finding, Value, Why};
use crate::record::Record;
use crate::rule::sigma::Temporal;
use crate::rule::{EvidenceKind, EvidenceSpec, Query, Rule, eql, span};

/// The name of a sequence rule's evidence item that says what the sequence joined.
pub const SEQUENCE_EVIDENCE: &str = "sequence";

/// The name of the evidence item of step `n` (1-based) of a sequence.
pub fn step_evidence(n: usize) -> String {
    format!("step_{n}")
}

/// The most partial sequences one rule's replay holds at once (a year of archives with
/// `maxspan` set holds far fewer: see the README's resource bounds).
pub const MAX_PENDING: usize = 1_000_000;

/// Adds a sequence rule's evidence items (`sequence`, `step_1` … `step_N`), unless the
/// rule file declares them.
pub fn add_evidence(evidence: &mut Vec<EvidenceSpec>, steps: usize) {
    let names = std::iter::once((SEQUENCE_EVIDENCE.to_string(), EvidenceKind::Sequence))
        .chain((1..=steps).map(|n| (step_evidence(n), EvidenceKind::Step)));
    for (name, kind) in names {
        if !evidence.iter().any(|e| e.name == name) {
            evidence.push(EvidenceSpec {
                name,
                fields: Vec::new(),
                kind,
            });
        }
    }
}

/// What the scan keeps of a record for the replay: the steps (indices into the
/// sequence's steps as written, before `runs` are expanded) it matched with its join
/// keys for each, and its keys for `until` if it matched that. Kept as the `sequence`
/// evidence item's text until the replay replaces it, so that it merges and persists
/// (shard partials) as every other item does.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct StepMatch {
    #[serde(rename = "s")]
    steps: Vec<(u16, Vec<Key>)>,
    #[serde(rename = "u", default, skip_serializing_if = "Option::is_none")]
    until: Option<Vec<Key>>,
}

/// The `sequence` item of a record that matched one of `rule`'s steps (`None` if the
/// rule is no sequence).
pub fn step_match(record: &Record<'_, '_>, rule: &Rule) -> Option<Value> {
    let m = match &rule.query {
        Query::Sigma(q) => StepMatch {
            steps: q.temporal_steps(record)?,
            until: None,
        },
        query => {
            // The time is the finding's own; the replay takes it from there.
            let event = StepEvent::of(query.sequence()?, 0, record)?;
            StepMatch {
                steps: event.steps,
                until: event.until,
            }
        }
    };
    serde_json::to_string(&m)
        .ok()
        .map(|text| Value::Text(text.into()))
}

/// What the replay made of the rules' step matches.
#[derive(Debug, Default)]
pub struct Replayed {
    /// Per rule, the step matches in no completed sequence.
    pub held_back: Vec<u64>,
    /// A warning per rule whose partial sequences went past [`MAX_PENDING`].
    pub warnings: Vec<Warning>,
}

/// Replays each sequence rule's step matches: replaces them with one finding per
/// completed sequence (kept in input order with the other findings). `names` are the
/// inputs' names, for the steps' `path:line`.
pub fn apply(
    findings: &mut Vec<Finding>,
    rules: &[Rule],
    names: &dyn Fn(usize) -> String,
) -> Replayed {
    apply_capped(findings, rules, names, MAX_PENDING)
}

/// [`apply`] with at most `cap` partial sequences per rule.
fn apply_capped(
    findings: &mut Vec<Finding>,
    rules: &[Rule],
    names: &dyn Fn(usize) -> String,
    cap: usize,
) -> Replayed {
    let mut out = Replayed {
        held_back: vec![0; rules.len()],
        warnings: Vec::new(),
    };
    let mut replaced = vec![false; findings.len()];
    let mut completed: Vec<Finding> = Vec::new();
    for (r, rule) in rules.iter().enumerate() {
        if !rule.query.is_replayed() {
            continue;
        }
        let Some(slot) = rule.evidence_index(SEQUENCE_EVIDENCE) else {
            continue;
        };
        let mut order: Vec<usize> = (0..findings.len())
            .filter(|&i| usize::from(findings[i].rule) == r && findings[i].why == Why::Rule)
            .collect();
        order.sort_by_key(|&i| findings[i].order_key());
        let mut events: Vec<StepEvent> = Vec::new();
        let mut event_finding: Vec<usize> = Vec::new();
        for &i in &order {
            replaced[i] = true;
            let f = &findings[i];
            let parsed = f
                .field(Some(slot))
                .and_then(Value::as_text)
                .and_then(|t| serde_json::from_str::<StepMatch>(t).ok());
            let (Some(m), Some(t)) = (parsed, f.timestamp) else {
                continue;
            };
            events.push(StepEvent {
                time: t.timestamp_millis(),
                steps: m.steps,
                until: m.until,
            });
            event_finding.push(i);
        }
        let mut used = vec![false; events.len()];
        if let Some(t) = rule.query.temporal() {
            for fired in ualhunt_query::correlation::evaluate(&t.chain, &events) {
                for &e in &fired.events {
                    used[e] = true;
                }
                let steps: Vec<Option<&Finding>> = fired
                    .inputs
                    .iter()
                    .map(|e| e.map(|e| &findings[event_finding[e]]))
                    .collect();
                let held: Vec<&Finding> = fired
                    .events
                    .iter()
                    .map(|&e| &findings[event_finding[e]])
                    .collect();
                completed.push(correlated(rule, t, slot, &fired, &held, &steps, names));
            }
            out.held_back[r] = order.len() as u64 - used.iter().filter(|u| **u).count() as u64;
            continue;
        }
        let Some(seq) = rule.query.sequence() else {
            continue;
        };
        let shape = Shape::of(seq);
        let outcome = replay(&shape, &events, cap);
        for done in &outcome.completed {
            for &e in &done.events {
                used[e] = true;
            }
            let steps: Vec<&Finding> = done
                .events
                .iter()
                .map(|&e| &findings[event_finding[e]])
                .collect();
            completed.push(finding(rule, seq, slot, &done.key, &steps, names));
        }
        out.held_back[r] = order.len() as u64 - used.iter().filter(|u| **u).count() as u64;
        if outcome.dropped > 0 {
            out.warnings.push(Warning {
                path: rule.path.clone().unwrap_or_else(|| rule.meta.name.clone()),
                message: format!(
                    "EQL sequence rule {:?}: more than {cap} partial sequences at once; the \
                     {} oldest were dropped before they could complete, so some sequences \
                     may be missing",
                    rule.meta.name, outcome.dropped
                ),
            });
        }
    }
    if !replaced.contains(&true) {
        // No sequence rule matched anything: the findings stay exactly as they were.
        return out;
    }
    let mut keep = replaced.into_iter();
    findings.retain(|_| !keep.next().unwrap_or(false));
    findings.extend(completed);
    // Back into input order (stable: the other findings keep theirs).
    findings.sort_by_key(|f| f.at);
    out
}

/// The finding of a completed sequence: its last step's record, with the sequence's
/// items written.
fn finding(
    rule: &Rule,
    seq: &eql::Sequence<Field>,
    slot: usize,
    key: &Key,
    steps: &[&Finding],
    names: &dyn Fn(usize) -> String,
) -> Finding {
    // A completed sequence has at least two steps (the parser's rule).
    let first = steps[0];
    let last = steps[steps.len() - 1];
    let mut f = (*last).clone();
    let within = elapsed(first, last);
    let key_names: Vec<String> = seq
        .by
        .iter()
        .chain(&seq.expanded()[steps.len() - 1].by)
        .map(|f| f.name())
        .collect();
    let keys: Vec<String> = key_names
        .iter()
        .zip(key)
        .map(|(n, v)| format!("{n}={v}"))
        .collect();
    let what = if keys.is_empty() {
        format!("{} steps within {within}", steps.len())
    } else {
        format!(
            "{} steps by {} within {within}",
            steps.len(),
            keys.join(", ")
        )
    };
    f.fields[slot] = Some(Value::Text(what.into()));
    for (n, step) in steps.iter().enumerate() {
        let Some(item) = rule.evidence_index(&step_evidence(n + 1)) else {
            continue;
        };
        let when = step
            .timestamp
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
            .unwrap_or_else(|| "(no time)".into());
        let path = names(step.at.input as usize);
        let id = step.record_id.as_deref().unwrap_or("(no id)");
        f.fields[item] = Some(Value::Text(
            format!("{when} {path}:{} {id}", step.at.line + 1).into(),
        ));
    }
    f
}

/// The finding of a replayed Sigma correlation that fired: the record of its latest
/// match (`held`: every match behind it; `steps`: per rule it names, in the listed order,
/// the latest match behind what that rule gave), with what it joined in the `sequence`
/// item and each rule's record in `step_N`.
fn correlated(
    rule: &Rule,
    t: &Temporal,
    slot: usize,
    fired: &Fired,
    held: &[&Finding],
    steps: &[Option<&Finding>],
    names: &dyn Fn(usize) -> String,
) -> Finding {
    // A correlation fires on at least one match (its condition holds for no empty
    // window, and a temporal one needs at least one rule).
    let last = held
        .iter()
        .max_by_key(|f| f.order_key())
        .expect("a fired correlation has a match");
    let first = held
        .iter()
        .min_by_key(|f| f.order_key())
        .expect("a fired correlation has a match");
    let mut f = (*last).clone();
    let within = elapsed(first, last);
    let k = t.rules();
    let present = steps.iter().flatten().count();
    let rules = match &t.chain.kind {
        Kind::Temporal(shape) if shape.ordered => format!("{k} rules in order"),
        Kind::Temporal(_) => format!("{present} of {k} rules"),
        Kind::Rules { condition, .. } => format!("{present} of {k} rules ({condition})"),
        Kind::Count {
            condition,
            distinct: true,
            ..
        } => format!(
            "{} distinct {} ({condition})",
            fired.count,
            t.counted.as_deref().unwrap_or("values")
        ),
        Kind::Count { condition, .. } => format!("{} events ({condition})", fired.count),
        Kind::Metric {
            metric, condition, ..
        } => {
            let value = fired.value.map(|v| v.to_string()).unwrap_or_default();
            let field = t.counted.as_deref().unwrap_or("values");
            match metric {
                Metric::Percentile(p) => {
                    format!("{value} at percentile {p} of {field} ({condition})")
                }
                _ => format!("{value} of {field} ({condition})"),
            }
        }
    };
    let keys: Vec<String> = t
        .group_by
        .iter()
        .zip(&fired.key)
        .map(|(n, v)| format!("{n}={v}"))
        .collect();
    let what = if keys.is_empty() {
        format!("{}: {rules} within {within}", t.kind)
    } else {
        format!("{}: {rules} by {} within {within}", t.kind, keys.join(", "))
    };
    f.fields[slot] = Some(Value::Text(what.into()));
    for (n, step) in steps.iter().enumerate() {
        let Some(item) = rule.evidence_index(&step_evidence(n + 1)) else {
            continue;
        };
        f.fields[item] = step.map(|step| {
            let when = step
                .timestamp
                .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
                .unwrap_or_else(|| "(no time)".into());
            let path = names(step.at.input as usize);
            let id = step.record_id.as_deref().unwrap_or("(no id)");
            let title = t.titles.get(n).map(String::as_str).unwrap_or("?");
            Value::Text(format!("{when} {path}:{} {id} ({title})", step.at.line + 1).into())
        });
    }
    f
}

/// How long from `first`'s match to `last`'s, as every span is written (`20m`,
/// `56m58s`), any part of a second after it in milliseconds (`2m1s250ms`, `500ms`);
/// `0s` when either has no time.
fn elapsed(first: &Finding, last: &Finding) -> String {
    let millis = match (first.timestamp, last.timestamp) {
        (Some(a), Some(b)) => (b - a).num_milliseconds(),
        _ => 0,
    };
    // Whole seconds as every span is written, the rest in milliseconds after them.
    match (millis / 1000, millis % 1000) {
        (s, 0) => span(s),
        (0, ms) => format!("{ms}ms"),
        (s, ms) => format!("{}{}ms", span(s), ms.abs()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::findings::At;

    const RULE: &str = r#"
id = "s"
name = "two steps"
severity = "low"
risk_score = 1
language = "eql"
query = '''sequence by user.id with maxspan=5m
  [any where event.action == "A"] [any where event.action == "B"]'''
"#;

    /// A match of step `step` by `user` at `minute`, on line `line` of input 0.
    fn step(rule: &Rule, line: u64, minute: i64, step: u16, user: &str) -> Finding {
        let m = StepMatch {
            steps: vec![(step, vec![vec![user.to_string()]])],
            until: None,
        };
        let mut fields = vec![None; rule.evidence.len()];
        fields[rule.evidence_index(SEQUENCE_EVIDENCE).unwrap()] =
            Some(Value::Text(serde_json::to_string(&m).unwrap().into()));
        Finding {
            rule: 0,
            why: Why::Rule,
            at: At {
                input: 0,
                line,
                offset: line * 100,
            },
            timestamp: chrono::DateTime::from_timestamp(1_700_000_000 + minute * 60, 0),
            actor: Some(user.into()),
            action: None,
            record_id: Some(format!("r{line}").into()),
            source_ip: None,
            fields,
        }
    }

    #[test]
    fn a_completed_sequence_is_its_last_step_with_every_step_named() {
        let rule = Rule::from_toml(RULE).unwrap();
        // Written out of time order: B (line 0) happens after A (line 1).
        let mut findings = vec![step(&rule, 0, 3, 1, "eve"), step(&rule, 1, 1, 0, "eve")];
        let names = |_: usize| "a.jsonl".to_string();
        let out = apply(&mut findings, std::slice::from_ref(&rule), &names);
        assert_eq!(out.held_back, vec![0]);
        assert!(out.warnings.is_empty());
        assert_eq!(findings.len(), 1);
        let f = &findings[0];
        assert_eq!(f.record_id.as_deref(), Some("r0"));
        let text = |name: &str| f.field(rule.evidence_index(name)).unwrap().to_string();
        assert_eq!(text("sequence"), "2 steps by user.id=eve within 2m");
        assert_eq!(text("step_1"), "2023-11-14T22:14:20Z a.jsonl:2 r1");
        assert_eq!(text("step_2"), "2023-11-14T22:16:20Z a.jsonl:1 r0");
    }

    #[test]
    fn past_the_cap_the_oldest_partial_sequence_is_dropped_with_a_warning_naming_the_rule() {
        let rule = Rule::from_toml(RULE).unwrap();
        let mut findings = vec![
            step(&rule, 0, 0, 0, "a"),
            step(&rule, 1, 0, 0, "b"),
            step(&rule, 2, 0, 0, "c"),
            step(&rule, 3, 1, 1, "a"),
            step(&rule, 4, 1, 1, "c"),
        ];
        let out = apply_capped(
            &mut findings,
            std::slice::from_ref(&rule),
            &|_| "?".to_string(),
            2,
        );
        // `a` began first and was dropped; `c` completes.
        assert_eq!(findings.len(), 1);
        assert_eq!(findings[0].record_id.as_deref(), Some("r4"));
        assert_eq!(out.held_back, vec![3]);
        assert_eq!(out.warnings.len(), 1);
        let w = &out.warnings[0].message;
        assert!(
            w.contains("\"two steps\"") && w.contains("the 1 oldest"),
            "{w}"
        );
    }
}
