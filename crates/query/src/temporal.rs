//! Sigma `temporal` and `temporal_ordered` correlations over rule matches: the replay
//! that turns events (each with the correlated rules it matched and its group for each)
//! into fired correlations.
//!
//! Place in the flow: beside [`sequence`](crate::sequence), knowing no record. The
//! caller finds, per record, which of the correlation's rules it matches and the values
//! of the correlation's `group-by` fields for each (a field alias may name another
//! field per rule), puts those events in event-time order (ties in a fixed order of its
//! own) and calls [`replay`] (through [`correlation`](crate::correlation), which also
//! replays conditions on fewer rules and chains). The semantics, one reading of the Sigma correlation
//! specification (v2):
//!
//! - **temporal**: a group fires when matches of at least `at_least` distinct rules (all
//!   of them unless the rule's condition says fewer) fall within `timespan`: the
//!   last match is at most `timespan` after the first. Per group and rule the latest
//!   match is kept, so a window slides rather than being cut at fixed boundaries.
//! - **temporal_ordered**: a group fires when the rules match in the listed order within
//!   `timespan`: matches `m1 … mk` of rules `1 … k`, each at the same time as or later
//!   than the one before, the last at most `timespan` after the first. Per group and
//!   position one partial chain is kept, the one that began latest (it has the most
//!   time left), so no completion that the order allows is missed.
//! - Events at the same time are taken together, so their order in the input never
//!   matters; a record that matches several of the rules counts for each of them.
//! - Once a group fires, its state starts afresh: the matches that fired are reported
//!   once, and a later correlation of the group needs new matches.
//!
//! State is bounded: per group at most one match per rule (temporal) or one partial
//! chain per position (temporal_ordered), and a group whose newest match is more than
//! `timespan` old is swept away, so the replay holds only the groups that matched in the
//! last `timespan` (and at most as many as the events it was given).

use std::collections::HashMap;

use crate::sequence::{Key, StepEvent};

/// What the replay needs of a correlation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Temporal {
    /// How many rules it correlates.
    pub rules: usize,
    /// How many distinct rules must match (`temporal`); `temporal_ordered` needs all.
    pub at_least: usize,
    /// Whether the rules must match in their listed order (`temporal_ordered`).
    pub ordered: bool,
    /// `timespan`, in milliseconds.
    pub span: i64,
}

/// A correlation that fired.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fired {
    /// The group it fired for.
    pub key: Key,
    /// Per rule (in the listed order), the event (index into the replayed events) that
    /// matched it, if one did.
    pub events: Vec<Option<usize>>,
}

/// A partial ordered chain: its events (positions `0..=p`) and its first event's time.
#[derive(Clone, Debug)]
struct Chain {
    start: i64,
    events: Vec<usize>,
}

/// One group's state.
#[derive(Clone, Debug)]
struct Group {
    /// Its newest event's time (for the sweep).
    newest: i64,
    /// temporal: per rule, the latest match `(time, event)`.
    latest: Vec<Option<(i64, usize)>>,
    /// temporal_ordered: per position, the chain that began latest.
    chains: Vec<Option<Chain>>,
}

impl Group {
    fn new(rules: usize) -> Group {
        Group {
            newest: i64::MIN,
            latest: vec![None; rules],
            chains: vec![None; rules],
        }
    }
}

/// One group's matches at one time: each event with the rules it matched for the group.
type Batch = Vec<(usize, Vec<usize>)>;

/// Replays the correlation over `events`, which must be in time order. An event's
/// `steps` are the rules it matched (their index in the listed order), each with the
/// group it belongs to for that rule (an empty list: a group field has no value, so it
/// counts for no group); `until` is not read.
pub fn replay(t: &Temporal, events: &[StepEvent]) -> Vec<Fired> {
    run(t, events).0
}

/// [`replay`], and the most groups it held at once.
fn run(t: &Temporal, events: &[StepEvent]) -> (Vec<Fired>, usize) {
    let mut out = Vec::new();
    let mut most = 0;
    if t.rules == 0 || t.at_least == 0 {
        return (out, most);
    }
    let mut groups: HashMap<Key, Group> = HashMap::new();
    let mut live_after_sweep = 0usize;
    let mut start = 0;
    while start < events.len() {
        let now = events[start].time;
        let mut end = start;
        while end < events.len() && events[end].time == now {
            end += 1;
        }
        let oldest = now.saturating_sub(t.span);
        // The batch's matches per group, groups in the order the batch first touches
        // them: (event, the rules it matched for that group).
        let mut touched: Vec<(Key, Batch)> = Vec::new();
        let mut at: HashMap<&Key, usize> = HashMap::new();
        for (i, e) in events.iter().enumerate().take(end).skip(start) {
            for (r, keys) in &e.steps {
                let r = usize::from(*r);
                if r >= t.rules {
                    continue;
                }
                for key in keys {
                    let slot = *at.entry(key).or_insert_with(|| {
                        touched.push((key.clone(), Vec::new()));
                        touched.len() - 1
                    });
                    let batch = &mut touched[slot].1;
                    match batch.last_mut() {
                        Some((j, rules)) if *j == i => rules.push(r),
                        _ => batch.push((i, vec![r])),
                    }
                }
            }
        }
        for (key, batch) in touched {
            let g = groups
                .entry(key.clone())
                .or_insert_with(|| Group::new(t.rules));
            if g.newest < oldest {
                *g = Group::new(t.rules);
            }
            g.newest = now;
            let fired = if t.ordered {
                extend_chains(g, &batch, now, oldest, t.rules)
            } else {
                count_rules(g, &batch, now, oldest, t.at_least)
            };
            if let Some(events) = fired {
                out.push(Fired { key, events });
                *g = Group::new(t.rules);
            }
        }
        start = end;
        most = most.max(groups.len());
        if groups.len() > 2 * live_after_sweep + 1024 {
            groups.retain(|_, g| g.newest >= oldest);
            live_after_sweep = groups.len();
        }
    }
    (out, most)
}

/// Empties the slots (a rule's latest match, a position's chain) that began before
/// `oldest`: they can no longer fall within the timespan of anything to come.
fn expire<T>(slots: &mut [Option<T>], began: impl Fn(&T) -> i64, oldest: i64) {
    for slot in slots {
        if slot.as_ref().is_some_and(|s| began(s) < oldest) {
            *slot = None;
        }
    }
}

/// temporal: records the batch's matches (at `now`), forgets those older than `oldest`,
/// and fires when at least `at_least` rules have a match.
fn count_rules(
    g: &mut Group,
    batch: &[(usize, Vec<usize>)],
    now: i64,
    oldest: i64,
    at_least: usize,
) -> Option<Vec<Option<usize>>> {
    for (i, rules) in batch {
        for &r in rules {
            g.latest[r] = Some((now, *i));
        }
    }
    expire(&mut g.latest, |&(t, _)| t, oldest);
    let present = g.latest.iter().filter(|s| s.is_some()).count();
    (present >= at_least).then(|| g.latest.iter().map(|s| s.map(|(_, i)| i)).collect())
}

/// temporal_ordered: moves the chains on with the batch's matches, position by position
/// (so matches at the same time chain in the listed order whatever their input order),
/// and fires when a chain reaches the last position.
fn extend_chains(
    g: &mut Group,
    batch: &[(usize, Vec<usize>)],
    now: i64,
    oldest: i64,
    rules: usize,
) -> Option<Vec<Option<usize>>> {
    expire(&mut g.chains, |c| c.start, oldest);
    for p in 0..rules {
        for (i, matched) in batch {
            if !matched.contains(&p) {
                continue;
            }
            let candidate = if p == 0 {
                Chain {
                    start: now,
                    events: vec![*i],
                }
            } else {
                let Some(prev) = &g.chains[p - 1] else {
                    continue;
                };
                let mut events = prev.events.clone();
                events.push(*i);
                Chain {
                    start: prev.start,
                    events,
                }
            };
            // The chain that began latest has the most time left; at the same start,
            // the newer events.
            if g.chains[p]
                .as_ref()
                .is_none_or(|c| candidate.start >= c.start)
            {
                g.chains[p] = Some(candidate);
            }
        }
    }
    // A group starts afresh once it fires, so a chain at the last position is this
    // batch's.
    let done = g.chains[rules - 1].as_ref()?;
    Some(done.events.iter().map(|&e| Some(e)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An event at `time` (seconds) matching `rules`, each in group `k`.
    fn ev(time: i64, rules: &[u16], k: &str) -> StepEvent {
        StepEvent {
            time: time * 1000,
            steps: rules
                .iter()
                .map(|&r| (r, vec![vec![k.to_string()]]))
                .collect(),
            until: None,
        }
    }

    fn temporal(rules: usize, span_s: i64) -> Temporal {
        Temporal {
            rules,
            at_least: rules,
            ordered: false,
            span: span_s * 1000,
        }
    }

    fn ordered(rules: usize, span_s: i64) -> Temporal {
        Temporal {
            ordered: true,
            ..temporal(rules, span_s)
        }
    }

    fn fired(out: &[Fired]) -> Vec<(String, Vec<Option<usize>>)> {
        out.iter()
            .map(|f| (f.key.join("+"), f.events.clone()))
            .collect()
    }

    #[test]
    fn temporal_fires_when_every_rule_matches_within_the_timespan_in_any_order() {
        let events = [ev(0, &[2], "a"), ev(60, &[0], "a"), ev(120, &[1], "a")];
        let out = replay(&temporal(3, 300), &events);
        assert_eq!(
            fired(&out),
            vec![("a".into(), vec![Some(1), Some(2), Some(0)])]
        );
    }

    #[test]
    fn the_timespan_is_inclusive_and_measured_from_the_first_match_to_the_last() {
        let at = |last: i64| [ev(0, &[0], "a"), ev(last, &[1], "a")];
        assert_eq!(replay(&temporal(2, 300), &at(300)).len(), 1);
        assert!(replay(&temporal(2, 300), &at(301)).is_empty());
        assert_eq!(replay(&ordered(2, 300), &at(300)).len(), 1);
        assert!(replay(&ordered(2, 300), &at(301)).is_empty());
    }

    #[test]
    fn the_window_slides_the_latest_match_of_a_rule_counts() {
        // A at 0 is too old for C at 400, but A again at 200 is not.
        let events = [
            ev(0, &[0], "a"),
            ev(150, &[1], "a"),
            ev(200, &[0], "a"),
            ev(400, &[2], "a"),
        ];
        let out = replay(&temporal(3, 300), &events);
        assert_eq!(
            fired(&out),
            vec![("a".into(), vec![Some(2), Some(1), Some(3)])]
        );
    }

    #[test]
    fn groups_never_mix() {
        let events = [ev(0, &[0], "a"), ev(10, &[1], "b"), ev(20, &[1], "a")];
        let out = replay(&temporal(2, 300), &events);
        assert_eq!(fired(&out), vec![("a".into(), vec![Some(0), Some(2)])]);
        assert_eq!(replay(&ordered(2, 300), &events).len(), 1);
    }

    #[test]
    fn at_least_n_distinct_rules_of_a_temporal_condition() {
        let t = Temporal {
            at_least: 2,
            ..temporal(3, 300)
        };
        let events = [ev(0, &[2], "a"), ev(5, &[2], "a"), ev(10, &[0], "a")];
        let out = replay(&t, &events);
        assert_eq!(
            fired(&out),
            vec![("a".into(), vec![Some(2), None, Some(1)])]
        );
    }

    #[test]
    fn ordered_needs_the_listed_order() {
        let wrong = [ev(0, &[1], "a"), ev(10, &[0], "a")];
        assert!(replay(&ordered(2, 300), &wrong).is_empty());
        assert_eq!(replay(&temporal(2, 300), &wrong).len(), 1);
        let right = [ev(0, &[0], "a"), ev(10, &[1], "a"), ev(20, &[2], "a")];
        assert_eq!(
            fired(&replay(&ordered(3, 300), &right)),
            vec![("a".into(), vec![Some(0), Some(1), Some(2)])]
        );
    }

    #[test]
    fn ordered_keeps_the_chain_that_began_latest() {
        // A at 0, A at 200, B at 250, C at 450: only the chain from 200 fits 300 s.
        let events = [
            ev(0, &[0], "a"),
            ev(200, &[0], "a"),
            ev(250, &[1], "a"),
            ev(450, &[2], "a"),
        ];
        assert_eq!(
            fired(&replay(&ordered(3, 300), &events)),
            vec![("a".into(), vec![Some(1), Some(2), Some(3)])]
        );
        // An earlier B does not advance a later A.
        let events = [ev(0, &[1], "a"), ev(10, &[0], "a"), ev(20, &[2], "a")];
        assert!(replay(&ordered(3, 300), &events).is_empty());
    }

    #[test]
    fn matches_at_the_same_time_chain_whatever_their_input_order() {
        let events = [ev(5, &[1], "a"), ev(5, &[0], "a")];
        assert_eq!(
            fired(&replay(&ordered(2, 300), &events)),
            vec![("a".into(), vec![Some(1), Some(0)])]
        );
    }

    #[test]
    fn a_group_starts_afresh_once_it_fired() {
        let events = [
            ev(0, &[0], "a"),
            ev(10, &[1], "a"),
            ev(20, &[1], "a"),
            ev(30, &[0], "a"),
        ];
        let out = replay(&temporal(2, 300), &events);
        assert_eq!(
            fired(&out),
            vec![
                ("a".into(), vec![Some(0), Some(1)]),
                ("a".into(), vec![Some(3), Some(2)])
            ]
        );
        let out = replay(&ordered(2, 300), &events);
        assert_eq!(fired(&out), vec![("a".into(), vec![Some(0), Some(1)])]);
    }

    #[test]
    fn a_match_without_a_group_counts_for_none() {
        let events = [
            ev(0, &[0], "a"),
            StepEvent {
                time: 10_000,
                steps: vec![(1, Vec::new())],
                until: None,
            },
        ];
        assert!(replay(&temporal(2, 300), &events).is_empty());
    }

    #[test]
    fn state_stays_bounded_by_the_timespan_over_many_groups() {
        // 50,000 groups that never fire, one match each a second apart: with a timespan
        // of 10 s the replay never holds more than the sweep's slack over the groups of
        // the last 10 s.
        let events: Vec<StepEvent> = (0..50_000).map(|t| ev(t, &[0], &t.to_string())).collect();
        let (out, most) = run(&temporal(2, 10), &events);
        assert!(out.is_empty());
        assert!(most <= 2 * 11 + 1024 + 1, "{most} groups held at once");
    }

    /// The first time (ms) a correlation can fire for a group, by brute force over
    /// every choice of one event per rule: `None` if none can.
    fn first_completion(t: &Temporal, events: &[StepEvent], key: &str) -> Option<i64> {
        let of_rule = |r: usize| -> Vec<i64> {
            events
                .iter()
                .filter(|e| {
                    e.steps
                        .iter()
                        .any(|(s, keys)| usize::from(*s) == r && keys.iter().any(|k| k[0] == key))
                })
                .map(|e| e.time)
                .collect()
        };
        let times: Vec<Vec<i64>> = (0..t.rules).map(of_rule).collect();
        let wanted = if t.ordered { t.rules } else { t.at_least };
        let mut best: Option<i64> = None;
        // Every subset of rules of the size needed, every choice of one time per rule.
        for mask in 0u32..(1 << t.rules) {
            let chosen: Vec<usize> = (0..t.rules).filter(|r| mask & (1 << r) != 0).collect();
            if chosen.len() != wanted {
                continue;
            }
            let mut pick = vec![0usize; chosen.len()];
            'choices: loop {
                let picked: Option<Vec<i64>> = chosen
                    .iter()
                    .zip(&pick)
                    .map(|(&r, &i)| times[r].get(i).copied())
                    .collect();
                let Some(picked) = picked else { break };
                let (lo, hi) = (picked.iter().min().unwrap(), picked.iter().max().unwrap());
                let in_order = !t.ordered || picked.windows(2).all(|w| w[0] <= w[1]);
                if hi - lo <= t.span && in_order {
                    best = Some(best.map_or(*hi, |b| b.min(*hi)));
                }
                for (slot, &r) in pick.iter_mut().zip(&chosen) {
                    *slot += 1;
                    if *slot < times[r].len() {
                        continue 'choices;
                    }
                    *slot = 0;
                }
                break;
            }
        }
        best
    }

    proptest::proptest! {
        /// The replay fires for a group first exactly when some choice of matches first
        /// satisfies the correlation (brute force), whatever order events at the same
        /// time come in.
        #[test]
        fn the_first_firing_is_the_first_completion_by_brute_force(
            raw in proptest::collection::vec((0i64..20, 0u16..3, 0usize..2), 0..12),
            ordered in proptest::bool::ANY,
            at_least in 1usize..4,
            span in 0i64..8,
        ) {
            let mut events: Vec<StepEvent> = raw
                .iter()
                .map(|&(time, rule, key)| ev(time, &[rule], ["a", "b"][key]))
                .collect();
            events.sort_by_key(|e| e.time);
            let t = Temporal {
                rules: 3,
                at_least: if ordered { 3 } else { at_least },
                ordered,
                span: span * 1000,
            };
            let out = replay(&t, &events);
            let mut reversed = events.clone();
            reversed.reverse();
            reversed.sort_by_key(|e| e.time);
            let again = replay(&t, &reversed);
            proptest::prop_assert_eq!(out.len(), again.len());
            for key in ["a", "b"] {
                let fired = out
                    .iter()
                    .filter(|f| f.key[0] == key)
                    .map(|f| f.events.iter().flatten().map(|&e| events[e].time).max().unwrap())
                    .min();
                proptest::prop_assert_eq!(fired, first_completion(&t, &events, key), "{}", key);
            }
        }
    }
}
