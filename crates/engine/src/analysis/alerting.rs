//! Alerting of `new_terms` and `threshold` rules, replayed over the matches' own times.
//!
//! Place in the flow: after the first pass, on all of its findings (duplicates dropped),
//! before the context plan and the time window. Elastic runs such a rule every few
//! minutes over recent data and alerts on some of its query's matches only; offline,
//! each match is judged at its own time against the matches before it:
//!
//! - **new terms**: a match alerts when no match of the rule in the history window
//!   before it (`history_window_start`, e.g. 14 days) had the same values of all the
//!   rule's fields; a match without a value for one of them never alerts (Elastic's
//!   term aggregation leaves it out). A match in the first history window of the archive
//!   says that its history is incomplete.
//! - **threshold**: the matches with the same values of the rule's fields (a group)
//!   alert together when `value` of them (and, with a cardinality condition, that many
//!   distinct values of its field) fall within the rule's look-back (`from`, e.g. 30
//!   minutes); the alert holds every match of the group in the look-back from the first
//!   of them, and counting starts afresh after it, as Elastic's threshold history leaves
//!   out what an alert already holds.
//!
//! - **esql**: the rows an ES|QL query returns, run after run ([`super::esql`]).
//!
//! The matches that do not alert are held back (counted per rule, never shown). The
//! result depends only on the findings' times and input positions, so it is the same
//! whatever the thread count, chunk size or sharding.

use chrono::{DateTime, Utc};
use rustc_hash::FxHashMap;
use ualhunt_query::correlation::{Condition, count_windows};

use crate::findings::{Finding, Text, Value, Why};
use crate::rule::{ALERT_EVIDENCE, Alerting, Rule, span};

/// Applies each rule's alerting to its matches: drops the matches that do not alert,
/// writes into the others' `alert` evidence why they do, and returns per rule how many
/// matches were held back. `archive_start` is the earliest record time of the inputs.
pub fn apply(
    findings: &mut Vec<Finding>,
    rules: &[Rule],
    archive_start: Option<DateTime<Utc>>,
) -> Vec<u64> {
    let mut held = vec![0u64; rules.len()];
    let mut keep = vec![true; findings.len()];
    // Each alerting rule's matches, in input order (one pass, not one per rule).
    let mut by_rule: Vec<Vec<usize>> = vec![Vec::new(); rules.len()];
    for (i, f) in findings.iter().enumerate() {
        if f.why == Why::Rule
            && rules
                .get(usize::from(f.rule))
                .is_some_and(|r| r.meta.alerting.is_some())
        {
            by_rule[usize::from(f.rule)].push(i);
        }
    }
    for (r, rule) in rules.iter().enumerate() {
        let Some(alerting) = &rule.meta.alerting else {
            continue;
        };
        let mut order = std::mem::take(&mut by_rule[r]);
        order.sort_by_key(|&i| findings[i].order_key());
        let matches: Vec<&Finding> = order.iter().map(|&i| &findings[i]).collect();
        let texts = |why: Vec<Option<String>>| -> Vec<Option<Text>> {
            why.into_iter().map(|w| w.map(Text::from)).collect()
        };
        // Whether a match that does not alert counts as held back (an ES|QL rule's
        // matches outside the runs that hold its trigger do not).
        let mut counted: Vec<bool> = Vec::new();
        // ES|QL alerts share one text among the records of a row (`Text` is shared).
        let alerts: Vec<Option<Text>> = match alerting {
            Alerting::NewTerms { fields, history } => {
                let terms = terms_of(&matches, rule, fields);
                texts(new_terms(&matches, &terms, fields, *history, archive_start))
            }
            Alerting::Threshold {
                fields,
                cardinality,
                window,
                ..
            } => {
                let groups = terms_of(&matches, rule, fields);
                // A threshold always has its counts (`Alerting::counts`).
                let (events, on) = alerting.counts().unwrap_or((Condition::at_least(1), None));
                let distinct = cardinality
                    .as_ref()
                    .zip(on)
                    .map(|((field, _), (_, condition))| Distinct {
                        values: terms_of(&matches, rule, std::slice::from_ref(field)),
                        condition,
                        field,
                    });
                texts(threshold(
                    &matches, &groups, fields, &events, distinct, *window,
                ))
            }
            Alerting::Esql { window, interval } => {
                let (alerts, held) =
                    super::esql::alerts_counted(&matches, rule, *window, *interval);
                counted = held;
                alerts
            }
        };
        let slot = rule
            .evidence_index(ALERT_EVIDENCE)
            .expect("a rule with alerting has the alert evidence item (Rule::compile)");
        for (n, (i, alert)) in order.into_iter().zip(alerts).enumerate() {
            match alert {
                Some(why) => findings[i].fields[slot] = Some(Value::Text(why)),
                None => {
                    keep[i] = false;
                    held[r] += u64::from(counted.get(n).is_none_or(|&c| c));
                }
            }
        }
    }
    let mut keep = keep.into_iter();
    findings.retain(|_| keep.next().unwrap_or(true));
    held
}

/// A match's values of the alerting's fields (`None`: one has no value).
type Terms = Option<Vec<Text>>;

/// A threshold's cardinality condition: each match's value of `field`, and the
/// condition on the number of distinct ones.
struct Distinct<'a> {
    values: Vec<Terms>,
    condition: Condition,
    field: &'a str,
}

/// Each match's values of `fields`.
fn terms_of(matches: &[&Finding], rule: &Rule, fields: &[String]) -> Vec<Terms> {
    let slots: Vec<Option<usize>> = fields.iter().map(|f| rule.evidence_index(f)).collect();
    matches
        .iter()
        .map(|f| {
            slots
                .iter()
                .map(|&slot| match f.field(slot)? {
                    Value::Text(t) => Some(t.clone()),
                    Value::Bool(b) => Some(Text::from(b.to_string())),
                })
                .collect()
        })
        .collect()
}

/// `user.id=alice, source.ip=203.0.113.5`.
fn describe(fields: &[String], values: &[Text]) -> String {
    fields
        .iter()
        .zip(values)
        .map(|(f, v)| format!("{f}={v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn seconds(f: &Finding) -> Option<i64> {
    f.timestamp.map(|t| t.timestamp())
}

/// Why each match (in time order) alerts, or `None` where it does not.
fn new_terms(
    matches: &[&Finding],
    terms: &[Terms],
    fields: &[String],
    history: i64,
    archive_start: Option<DateTime<Utc>>,
) -> Vec<Option<String>> {
    let start = archive_start.map(|t| t.timestamp());
    let mut last_seen: FxHashMap<&[Text], i64> = FxHashMap::default();
    matches
        .iter()
        .zip(terms)
        .map(|(f, terms)| {
            let terms = terms.as_deref()?;
            let what = describe(fields, terms);
            let Some(t) = seconds(f) else {
                return Some(format!(
                    "new terms {what}? the record has no time: not compared with the history"
                ));
            };
            let before = last_seen.insert(terms, t);
            match before {
                Some(seen) if t - seen <= history => None,
                Some(seen) => Some(format!(
                    "new terms {what}: last seen {} before (history {})",
                    span(t - seen),
                    span(history)
                )),
                None => match start {
                    Some(s) if t - s < history => Some(format!(
                        "new terms {what}: first in the archive, whose records begin {} \
                         before (history {}: incomplete)",
                        span(t - s),
                        span(history)
                    )),
                    _ => Some(format!(
                        "new terms {what}: not seen in the {} before",
                        span(history)
                    )),
                },
            }
        })
        .collect()
}

/// Why each match (in time order) alerts, or `None` where it does not: per group, the
/// windows `ualhunt_query::correlation::count_windows` finds (anchored at each match, the
/// first that satisfies the conditions alerts with all it holds, then afresh after it).
fn threshold(
    matches: &[&Finding],
    groups: &[Terms],
    fields: &[String],
    events: &Condition,
    distinct: Option<Distinct<'_>>,
    window: i64,
) -> Vec<Option<String>> {
    let mut out: Vec<Option<String>> = vec![None; matches.len()];
    // Each group's dated matches, in time order (a match without a time or a value of a
    // group field cannot be counted).
    let mut members: FxHashMap<&[Text], Vec<usize>> = FxHashMap::default();
    let mut first_seen: Vec<&[Text]> = Vec::new();
    for (i, (f, group)) in matches.iter().zip(groups).enumerate() {
        let (Some(group), Some(_)) = (group.as_deref(), f.timestamp) else {
            continue;
        };
        members
            .entry(group)
            .or_insert_with(|| {
                first_seen.push(group);
                Vec::new()
            })
            .push(i);
    }
    let time = |i: usize| seconds(matches[i]).unwrap_or_default();
    let card = |i: usize| -> Option<&Text> { distinct.as_ref()?.values[i].as_ref()?.first() };
    for group in first_seen {
        let list = &members[group];
        let times: Vec<i64> = list.iter().map(|&i| time(i)).collect();
        let values: Vec<Option<&Text>> = list.iter().map(|&i| card(i)).collect();
        let on = distinct.as_ref().map(|d| (values.as_slice(), &d.condition));
        for (start, end) in count_windows(&times, window, events, on) {
            let n = end - start + 1;
            let mut why = if events.is_at_least() {
                format!("threshold {}: {n} matches", events.min)
            } else {
                format!("threshold {events}: {n} matches")
            };
            if !fields.is_empty() {
                why.push_str(&format!(" with {}", describe(fields, group)));
            }
            if let Some(Distinct {
                condition, field, ..
            }) = &distinct
            {
                let mut all: Vec<&Text> = values[start..=end].iter().flatten().copied().collect();
                all.sort();
                all.dedup();
                let wanted = if condition.is_at_least() {
                    format!("at least {}", condition.min)
                } else {
                    condition.to_string()
                };
                why.push_str(&format!(" and {} distinct {field} ({wanted})", all.len()));
            }
            why.push_str(&format!(
                " within {} ({} to {})",
                span(window),
                stamp(matches[list[start]]),
                stamp(matches[list[end]])
            ));
            for &j in &list[start..=end] {
                out[j] = Some(why.clone());
            }
        }
    }
    out
}

fn stamp(f: &Finding) -> String {
    f.timestamp
        .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rule::{EvidenceSpec, RuleMeta};

    fn rule(alerting: Alerting) -> Rule {
        let meta = RuleMeta {
            id: "r".into(),
            name: "r".into(),
            renamed: None,
            description: String::new(),
            rule_type: "new_terms".into(),
            language: "kuery".into(),
            index: Vec::new(),
            severity: "low".into(),
            risk_score: 21,
            schedule: String::new(),
            false_positives: Vec::new(),
            query: "event.action:x".into(),
            threat: Vec::new(),
            analyses: vec![crate::rule::ANALYSIS_BY_ACTOR.into()],
            evidence: vec![EvidenceSpec {
                name: "target".into(),
                fields: vec!["o365.audit.ObjectId".into()],
                kind: crate::rule::EvidenceKind::Keyword,
            }],
            context: Vec::new(),
            alerting: Some(alerting),
            author: None,
            references: Vec::new(),
            sigma_mapping: None,
            note: None,
            setup: None,
            building_block: None,
        };
        Rule::compile(meta).unwrap()
    }

    /// A match at minute `minute` with these values of the rule's evidence items (in
    /// order: `target`, then the alerting fields).
    fn at(rule: &Rule, line: u64, minute: i64, values: &[Option<&str>]) -> Finding {
        let mut f = crate::findings::tests::finding("someone", line, 1_700_000_000 + minute * 60);
        f.fields = vec![None; rule.evidence.len()];
        for (slot, v) in f.fields.iter_mut().zip(values) {
            *slot = v.map(|v| Value::Text(v.into()));
        }
        f
    }

    fn alerted(findings: &[Finding]) -> Vec<u64> {
        findings.iter().map(|f| f.at.line).collect()
    }

    const DAY: i64 = 24 * 60;

    #[test]
    fn a_term_alerts_again_only_after_its_history_window() {
        let r = rule(Alerting::NewTerms {
            fields: vec!["user.id".into()],
            history: 7 * 86_400,
        });
        // Lines out of time order: alerting goes by time.
        let mut f = vec![
            at(&r, 0, 3 * DAY, &[None, Some("alice")]),
            at(&r, 1, 0, &[None, Some("alice")]),
            at(&r, 2, 10 * DAY, &[None, Some("alice")]),
            at(&r, 3, 18 * DAY, &[None, Some("alice")]),
            at(&r, 4, 1, &[None, Some("bob")]),
            at(&r, 5, 2, &[None, None]),
        ];
        let held = apply(&mut f, std::slice::from_ref(&r), None);
        // 3 days after the first: seen; 10 days: seen 7 days before (inclusive); 18: new.
        assert_eq!(alerted(&f), vec![1, 3, 4]);
        assert_eq!(held, vec![3]);
        let why = f[1].field(r.evidence_index(ALERT_EVIDENCE)).unwrap();
        assert_eq!(
            why.to_string(),
            "new terms user.id=alice: last seen 8d before (history 7d)"
        );
    }

    #[test]
    fn a_term_in_the_first_history_window_says_its_history_is_incomplete() {
        let r = rule(Alerting::NewTerms {
            fields: vec!["user.id".into(), "source.ip".into()],
            history: 7 * 86_400,
        });
        let mut f = vec![
            at(&r, 0, 2 * DAY, &[None, Some("alice"), Some("203.0.113.5")]),
            at(&r, 1, 9 * DAY, &[None, Some("alice"), Some("198.51.100.7")]),
        ];
        let start = DateTime::from_timestamp(1_700_000_000, 0);
        apply(&mut f, std::slice::from_ref(&r), start);
        let slot = r.evidence_index(ALERT_EVIDENCE);
        assert_eq!(
            f[0].field(slot).unwrap().to_string(),
            "new terms user.id=alice, source.ip=203.0.113.5: first in the archive, whose \
             records begin 2d before (history 7d: incomplete)"
        );
        assert_eq!(
            f[1].field(slot).unwrap().to_string(),
            "new terms user.id=alice, source.ip=198.51.100.7: not seen in the 7d before"
        );
    }

    #[test]
    fn a_threshold_alerts_once_per_burst_with_the_whole_look_back() {
        let r = rule(Alerting::Threshold {
            fields: vec!["source.ip".into()],
            value: 3,
            cardinality: None,
            window: 30 * 60,
            at_most: None,
            not: None,
        });
        let ip = |line, minute, ip| at(&r, line, minute, &[None, Some(ip)]);
        let mut f = vec![
            // a: 2 in 30 minutes, then a third 31 minutes after the first: no alert.
            ip(0, 0, "a"),
            ip(1, 10, "a"),
            ip(2, 41, "a"),
            // b: 3 within 30 minutes, a fourth inside the look-back from the first, a
            // fifth after it (counted afresh: alone, no alert).
            ip(3, 100, "b"),
            ip(4, 110, "b"),
            ip(5, 120, "b"),
            ip(6, 130, "b"),
            ip(7, 131, "b"),
            // no group value: never counted.
            at(&r, 8, 100, &[None, None]),
        ];
        let held = apply(&mut f, std::slice::from_ref(&r), None);
        assert_eq!(alerted(&f), vec![3, 4, 5, 6]);
        assert_eq!(held, vec![5]);
        assert_eq!(
            f[0].field(r.evidence_index(ALERT_EVIDENCE))
                .unwrap()
                .to_string(),
            "threshold 3: 4 matches with source.ip=b within 30m \
             (2023-11-14T23:53:20Z to 2023-11-15T00:23:20Z)"
        );
    }

    #[test]
    fn a_threshold_with_cardinality_needs_distinct_values_too() {
        let r = rule(Alerting::Threshold {
            fields: vec!["user.id".into()],
            value: 1,
            cardinality: Some(("source.geo.country_name".into(), 2)),
            window: 15 * 60,
            at_most: None,
            not: None,
        });
        let m =
            |line, minute, user, country| at(&r, line, minute, &[None, Some(user), Some(country)]);
        let mut f = vec![
            m(0, 0, "alice", "NL"),
            m(1, 5, "alice", "NL"),
            m(2, 30, "alice", "NL"),
            m(3, 40, "alice", "BR"),
        ];
        apply(&mut f, std::slice::from_ref(&r), None);
        assert_eq!(alerted(&f), vec![2, 3]);
    }

    #[test]
    fn rules_without_alerting_and_context_selections_are_untouched() {
        let r = rule(Alerting::Threshold {
            fields: Vec::new(),
            value: 2,
            cardinality: None,
            window: 60,
            at_most: None,
            not: None,
        });
        let mut plain = r.clone();
        plain.meta.alerting = None;
        let mut f = vec![at(&r, 0, 0, &[]), at(&r, 1, 5, &[])];
        f[1].rule = 1;
        f[0].why = Why::Context(0);
        let held = apply(&mut f, &[r, plain], None);
        assert_eq!(alerted(&f), vec![0, 1]);
        assert_eq!(held, vec![0, 0]);
    }
}
