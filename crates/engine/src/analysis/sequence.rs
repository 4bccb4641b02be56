//! EQL sequences, replayed over the archive in event-time order.
//!
//! Place in the flow: in the scan, a record that matches one of a sequence rule's steps
//! (or its `until`) is a match of the rule like any other (one prefilter for all steps'
//! literals), and its `sequence` evidence item records which steps it matched and on
//! which join-key values ([`step_match`]). Those matches are merged like every finding
//! (chunks, files, shards), duplicates dropped; then, before alerting and the time
//! window, [`apply`] sorts each sequence rule's matches by event time (ties by input
//! position, so the result is the same for any thread count, chunk size or sharding) and
//! runs the sequence as Elastic's reference engine (PyPI `eql` 1.0) does:
//!
//! - per join key and step, one partial sequence waits: a record matching step 1 starts
//!   one (replacing the one waiting there for that key), a record matching step N takes
//!   the one waiting for step N and moves it on (replacing the one waiting at N + 1); a
//!   record's steps are tried last to first, so one record never moves one sequence on
//!   twice;
//! - `maxspan`: a partial sequence whose first record is more than `maxspan` before the
//!   record at hand expires (a sequence completes when its last step is at most
//!   `maxspan` after its first);
//! - `until`: a record matching it cancels every partial sequence of its key;
//! - join keys as Elasticsearch takes them: a key without a value never joins, a
//!   multi-valued key joins on each of its values (`Sequence::join_values`);
//! - `[…] with runs=N`: the step N times.
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

use std::collections::VecDeque;

use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

use crate::error::Warning;
use crate::field::Field;
use crate::findings::{Finding, Value, Why};
use crate::record::Record;
use crate::rule::{EvidenceKind, EvidenceSpec, Rule, eql, span};

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

/// Join-key values: one value per key field.
type Key = Vec<String>;

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
    let seq = rule.query.sequence()?;
    let mut m = StepMatch::default();
    for (i, step) in seq.steps.iter().enumerate() {
        if step.query.matches(record) {
            m.steps.push((i as u16, seq.join_values(step, record)));
        }
    }
    if let Some(until) = &seq.until
        && until.query.matches(record)
    {
        m.until = Some(seq.join_values(until, record));
    }
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
pub fn apply(findings: &mut Vec<Finding>, rules: &[Rule], names: &[String]) -> Replayed {
    let mut out = Replayed {
        held_back: vec![0; rules.len()],
        warnings: Vec::new(),
    };
    let mut replaced = vec![false; findings.len()];
    let mut completed: Vec<Finding> = Vec::new();
    for (r, rule) in rules.iter().enumerate() {
        let Some(seq) = rule.query.sequence() else {
            continue;
        };
        let Some(slot) = rule.evidence_index(SEQUENCE_EVIDENCE) else {
            continue;
        };
        let mut order: Vec<usize> = (0..findings.len())
            .filter(|&i| usize::from(findings[i].rule) == r && findings[i].why == Why::Rule)
            .collect();
        order.sort_by_key(|&i| findings[i].order_key());
        let mut events: Vec<Event> = Vec::new();
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
            events.push(Event {
                time: t.timestamp_millis(),
                steps: m.steps,
                until: m.until,
            });
            event_finding.push(i);
        }
        let shape = Shape::of(seq);
        let outcome = replay(&shape, &events, MAX_PENDING);
        let mut used = vec![false; events.len()];
        for done in &outcome.completed {
            for &e in &done.events {
                used[e] = true;
            }
            let steps: Vec<&Finding> = done.events.iter().map(|&e| &findings[event_finding[e]]).collect();
            completed.push(finding(rule, seq, slot, &done.key, &steps, names));
        }
        out.held_back[r] = order.len() as u64 - used.iter().filter(|u| **u).count() as u64;
        if outcome.dropped > 0 {
            out.warnings.push(Warning {
                path: rule.path.clone().unwrap_or_else(|| rule.meta.name.clone()),
                message: format!(
                    "EQL sequence rule {:?}: more than {MAX_PENDING} partial sequences at \
                     once; the {} oldest were dropped before they could complete, so some \
                     sequences may be missing",
                    rule.meta.name, outcome.dropped
                ),
            });
        }
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
    names: &[String],
) -> Finding {
    // A completed sequence has at least two steps (the parser's rule).
    let first = steps[0];
    let last = steps[steps.len() - 1];
    let mut f = (*last).clone();
    let millis = match (first.timestamp, last.timestamp) {
        (Some(a), Some(b)) => (b - a).num_milliseconds(),
        _ => 0,
    };
    let within = if millis % 1000 == 0 {
        span(millis / 1000)
    } else {
        format!("{millis}ms")
    };
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
        format!("{} steps by {} within {within}", steps.len(), keys.join(", "))
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
        let path = names
            .get(step.at.input as usize)
            .map(String::as_str)
            .unwrap_or("?");
        let id = step.record_id.as_deref().unwrap_or("(no id)");
        f.fields[item] = Some(Value::Text(
            format!("{when} {path}:{} {id}", step.at.line + 1).into(),
        ));
    }
    f
}

/// One step match, for the replay.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Event {
    /// Milliseconds since the epoch.
    time: i64,
    /// The steps (as written) it matched, with its join keys for each.
    steps: Vec<(u16, Vec<Key>)>,
    /// Its join keys for `until`, if it matched that.
    until: Option<Vec<Key>>,
}

/// What the replay needs of a sequence.
struct Shape {
    /// For each position (runs expanded), the index of its step as written.
    positions: Vec<u16>,
    /// `maxspan` in milliseconds.
    maxspan: Option<i64>,
}

impl Shape {
    fn of(seq: &eql::Sequence<Field>) -> Shape {
        let positions = seq
            .steps
            .iter()
            .enumerate()
            .flat_map(|(i, s)| std::iter::repeat_n(i as u16, s.runs.unwrap_or(1) as usize))
            .collect();
        Shape {
            positions,
            maxspan: seq
                .maxspan
                .map(|s| i64::try_from(s.millis()).unwrap_or(i64::MAX)),
        }
    }
}

/// A completed sequence: its key and its events (indices), one per position.
#[derive(Debug, PartialEq, Eq)]
struct Completed {
    key: Key,
    events: Vec<usize>,
}

/// What a replay found.
#[derive(Debug, Default)]
struct Outcome {
    completed: Vec<Completed>,
    /// Partial sequences dropped at the cap.
    dropped: u64,
}

/// A partial sequence waiting for position `stage`.
struct Pending {
    events: Vec<usize>,
    start: i64,
    stage: usize,
    key: Key,
}

/// Runs the sequence over `events`, which are in time order.
fn replay(shape: &Shape, events: &[Event], cap: usize) -> Outcome {
    let n = shape.positions.len();
    let mut out = Outcome::default();
    // `waiting[p]`: for each key, the partial sequence waiting for position p (p >= 1).
    let mut waiting: Vec<FxHashMap<Key, u64>> = vec![FxHashMap::default(); n];
    let mut pending: FxHashMap<u64, Pending> = FxHashMap::default();
    // Partial sequences in the order they began, which is their first records' time
    // order; ids of ones gone since are skipped when met.
    let mut begun: VecDeque<u64> = VecDeque::new();
    let mut next_id = 0u64;
    let remove = |id: u64,
                  pending: &mut FxHashMap<u64, Pending>,
                  waiting: &mut Vec<FxHashMap<Key, u64>>| {
        if let Some(p) = pending.remove(&id) {
            waiting[p.stage].remove(&p.key);
        }
    };
    for (idx, e) in events.iter().enumerate() {
        if let Some(maxspan) = shape.maxspan {
            let oldest = e.time.saturating_sub(maxspan);
            while let Some(&id) = begun.front() {
                match pending.get(&id) {
                    Some(p) if p.start >= oldest => break,
                    Some(_) => remove(id, &mut pending, &mut waiting),
                    None => {}
                }
                begun.pop_front();
            }
        }
        if let Some(keys) = &e.until {
            for key in keys {
                for stage in 1..n {
                    if let Some(id) = waiting[stage].remove(key) {
                        pending.remove(&id);
                    }
                }
            }
        }
        for pos in (0..n).rev() {
            let Some((_, keys)) = e.steps.iter().find(|(s, _)| *s == shape.positions[pos]) else {
                continue;
            };
            for key in keys {
                if pos == 0 {
                    let id = next_id;
                    next_id += 1;
                    if let Some(old) = waiting[1].insert(key.clone(), id) {
                        pending.remove(&old);
                    }
                    pending.insert(
                        id,
                        Pending {
                            events: vec![idx],
                            start: e.time,
                            stage: 1,
                            key: key.clone(),
                        },
                    );
                    begun.push_back(id);
                    continue;
                }
                let Some(id) = waiting[pos].remove(key) else {
                    continue;
                };
                // Every id in `waiting` is pending (they are removed together).
                let Some(mut p) = pending.remove(&id) else {
                    continue;
                };
                p.events.push(idx);
                if pos + 1 == n {
                    out.completed.push(Completed {
                        key: p.key,
                        events: p.events,
                    });
                } else {
                    p.stage = pos + 1;
                    if let Some(old) = waiting[pos + 1].insert(key.clone(), id) {
                        pending.remove(&old);
                    }
                    pending.insert(id, p);
                }
            }
        }
        while pending.len() > cap {
            let Some(id) = begun.pop_front() else {
                break;
            };
            if pending.contains_key(&id) {
                remove(id, &mut pending, &mut waiting);
                out.dropped += 1;
            }
        }
        if begun.len() > 2 * pending.len() + 1024 {
            begun.retain(|id| pending.contains_key(id));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(positions: &[u16], maxspan: Option<i64>) -> Shape {
        Shape {
            positions: positions.to_vec(),
            maxspan,
        }
    }

    /// An event at `time` matching `steps`, every one with the key `k`.
    fn ev(time: i64, steps: &[u16], k: &str) -> Event {
        Event {
            time,
            steps: steps
                .iter()
                .map(|&s| (s, vec![vec![k.to_string()]]))
                .collect(),
            until: None,
        }
    }

    fn until(time: i64, k: &str) -> Event {
        Event {
            time,
            steps: Vec::new(),
            until: Some(vec![vec![k.to_string()]]),
        }
    }

    fn done(outcome: &Outcome) -> Vec<Vec<usize>> {
        outcome.completed.iter().map(|c| c.events.clone()).collect()
    }

    #[test]
    fn two_steps_join_per_key_and_a_later_start_replaces_the_earlier() {
        let events = [
            ev(0, &[0], "a"),
            ev(1, &[0], "b"),
            ev(2, &[0], "a"),
            ev(3, &[1], "a"),
            ev(4, &[1], "a"),
            ev(5, &[1], "b"),
        ];
        let out = replay(&shape(&[0, 1], None), &events, MAX_PENDING);
        assert_eq!(done(&out), vec![vec![2, 3], vec![1, 5]]);
    }

    #[test]
    fn maxspan_is_inclusive_and_expires_the_partial_sequence() {
        let s = shape(&[0, 1], Some(10));
        let out = replay(&s, &[ev(0, &[0], "a"), ev(10, &[1], "a")], MAX_PENDING);
        assert_eq!(done(&out), vec![vec![0, 1]]);
        let out = replay(&s, &[ev(0, &[0], "a"), ev(11, &[1], "a")], MAX_PENDING);
        assert!(out.completed.is_empty());
    }

    #[test]
    fn until_cancels_only_its_key() {
        let events = [
            ev(0, &[0], "a"),
            ev(0, &[0], "b"),
            until(1, "a"),
            ev(2, &[1], "a"),
            ev(2, &[1], "b"),
        ];
        let out = replay(&shape(&[0, 1], None), &events, MAX_PENDING);
        assert_eq!(done(&out), vec![vec![1, 4]]);
    }

    #[test]
    fn one_record_matching_every_step_moves_a_sequence_on_once() {
        // runs=3 of one step: each record both starts a sequence and moves the others.
        let events: Vec<Event> = (0..4).map(|t| ev(t, &[0], "a")).collect();
        let out = replay(&shape(&[0, 0, 0], None), &events, MAX_PENDING);
        assert_eq!(done(&out), vec![vec![0, 1, 2], vec![1, 2, 3]]);
    }

    #[test]
    fn the_cap_drops_the_oldest_partial_sequence_and_counts_it() {
        let events = [
            ev(0, &[0], "a"),
            ev(1, &[0], "b"),
            ev(2, &[0], "c"),
            ev(3, &[1], "a"),
            ev(3, &[1], "c"),
        ];
        let out = replay(&shape(&[0, 1], None), &events, 2);
        assert_eq!(out.dropped, 1);
        assert_eq!(done(&out), vec![vec![2, 4]]);
    }

    #[test]
    fn state_stays_bounded_by_maxspan_over_many_keys() {
        // 20,000 starts that never complete, one per key: with a maxspan of 10 the
        // replay never holds more than the starts of the last 10 ms.
        let events: Vec<Event> = (0..20_000).map(|t| ev(t, &[0], &t.to_string())).collect();
        let out = replay(&shape(&[0, 1], Some(10)), &events, 11);
        assert_eq!(out.dropped, 0);
        assert!(out.completed.is_empty());
    }
}
