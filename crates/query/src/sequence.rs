//! EQL sequence semantics over step matches: the replay that turns events (each with
//! the steps it matched and its join keys) into completed sequences.
//!
//! Place in the flow: beside the parser and evaluator of [`eql`](crate::eql), knowing no
//! record. The caller evaluates each step's event query on its records
//! ([`StepEvent::of`]), puts the matches in event-time order (ties in a fixed order of
//! its own) and calls [`replay`]. The semantics are those of Elastic's reference engine
//! (PyPI `eql` 1.0), which `tests/eql_reference.rs` checks this against:
//!
//! - per join key and position, one partial sequence waits: an event matching the first
//!   step starts one (replacing the one waiting there for that key), an event matching
//!   step N takes the one waiting for step N and moves it on (replacing any waiting at
//!   N + 1); an event's steps are tried last to first, so one event never moves one
//!   sequence on twice;
//! - `maxspan`: a partial sequence whose first event is more than `maxspan` before the
//!   event at hand expires (a sequence completes when its last event is at most
//!   `maxspan` after its first);
//! - `until`: an event matching it cancels every partial sequence of its key;
//! - `[…] with runs=N`: the step N times, as Elasticsearch expands it.
//!
//! Join keys follow Elasticsearch ([`Sequence::join_values`]): a key without a value
//! never joins, a multi-valued key joins on each value. State is bounded by `maxspan`
//! and by the caller's cap on partial sequences (the oldest go first, counted).

use std::collections::{HashMap, VecDeque};

use crate::eql::Sequence;
use crate::field::{Field, Fields};

/// Join-key values of one event for one step: one value per key field.
pub type Key = Vec<String>;

/// One event that matched a step or the `until` of a sequence, as the replay needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StepEvent {
    /// Milliseconds since the epoch.
    pub time: i64,
    /// The steps (indices into the sequence's steps as written, before `runs` are
    /// expanded) it matched, with its join keys for each.
    pub steps: Vec<(u16, Vec<Key>)>,
    /// Its join keys for `until`, if it matched that.
    pub until: Option<Vec<Key>>,
}

impl StepEvent {
    /// What `source` at `time` is to the sequence: `None` if it matches no step and not
    /// `until`.
    pub fn of<F: Field>(seq: &Sequence<F>, time: i64, source: &dyn Fields<F>) -> Option<StepEvent> {
        let mut steps = Vec::new();
        for (i, step) in seq.steps.iter().enumerate() {
            if step.query.matches(source) {
                steps.push((i as u16, seq.join_values(step, source)));
            }
        }
        let until = seq
            .until
            .as_ref()
            .filter(|u| u.query.matches(source))
            .map(|u| seq.join_values(u, source));
        (!steps.is_empty() || until.is_some()).then_some(StepEvent { time, steps, until })
    }
}

/// What the replay needs of a sequence.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Shape {
    /// For each position (runs expanded), the index of its step as written.
    pub positions: Vec<u16>,
    /// `maxspan` in milliseconds.
    pub maxspan: Option<i64>,
}

impl Shape {
    /// The shape of a sequence.
    pub fn of<F: Field>(seq: &Sequence<F>) -> Shape {
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

/// A completed sequence.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Completed {
    /// The join key it completed on.
    pub key: Key,
    /// Its events (indices into the replayed events), one per position.
    pub events: Vec<usize>,
}

/// What a replay found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// The completed sequences, in the order they completed.
    pub completed: Vec<Completed>,
    /// Partial sequences dropped at the cap.
    pub dropped: u64,
}

/// A partial sequence waiting for position `stage`.
struct Pending {
    events: Vec<usize>,
    start: i64,
    stage: usize,
    key: Key,
}

/// Runs the sequence over `events`, which must be in time order; at most `cap` partial
/// sequences wait at once (past it the oldest is dropped and counted).
pub fn replay(shape: &Shape, events: &[StepEvent], cap: usize) -> Outcome {
    let n = shape.positions.len();
    let mut out = Outcome::default();
    // `waiting[p]`: for each key, the partial sequence waiting for position p (p >= 1).
    let mut waiting: Vec<HashMap<Key, u64>> = vec![HashMap::new(); n];
    let mut pending: HashMap<u64, Pending> = HashMap::new();
    // Partial sequences in the order they began, which is their first records' time
    // order; ids of ones gone since are skipped when met.
    let mut begun: VecDeque<u64> = VecDeque::new();
    let mut next_id = 0u64;
    let remove =
        |id: u64, pending: &mut HashMap<u64, Pending>, waiting: &mut Vec<HashMap<Key, u64>>| {
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
                for stage in waiting.iter_mut().skip(1) {
                    if let Some(id) = stage.remove(key) {
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
    fn ev(time: i64, steps: &[u16], k: &str) -> StepEvent {
        StepEvent {
            time,
            steps: steps
                .iter()
                .map(|&s| (s, vec![vec![k.to_string()]]))
                .collect(),
            until: None,
        }
    }

    fn until(time: i64, k: &str) -> StepEvent {
        StepEvent {
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
        let out = replay(&shape(&[0, 1], None), &events, 1_000_000);
        assert_eq!(done(&out), vec![vec![2, 3], vec![1, 5]]);
    }

    #[test]
    fn maxspan_is_inclusive_and_expires_the_partial_sequence() {
        let s = shape(&[0, 1], Some(10));
        let out = replay(&s, &[ev(0, &[0], "a"), ev(10, &[1], "a")], 1_000_000);
        assert_eq!(done(&out), vec![vec![0, 1]]);
        let out = replay(&s, &[ev(0, &[0], "a"), ev(11, &[1], "a")], 1_000_000);
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
        let out = replay(&shape(&[0, 1], None), &events, 1_000_000);
        assert_eq!(done(&out), vec![vec![1, 4]]);
    }

    #[test]
    fn one_record_matching_every_step_moves_a_sequence_on_once() {
        // runs=3 of one step: each record both starts a sequence and moves the others.
        let events: Vec<StepEvent> = (0..4).map(|t| ev(t, &[0], "a")).collect();
        let out = replay(&shape(&[0, 0, 0], None), &events, 1_000_000);
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
        let events: Vec<StepEvent> = (0..20_000).map(|t| ev(t, &[0], &t.to_string())).collect();
        let out = replay(&shape(&[0, 1], Some(10)), &events, 11);
        assert_eq!(out.dropped, 0);
        assert!(out.completed.is_empty());
    }
}
