//! Sigma correlation conditions on counts, and chained correlations: a correlation whose
//! rules are other correlations, replayed over rule matches.
//!
//! Place in the flow: beside [`temporal`], knowing no record. [`Condition`] is a
//! correlation's `condition` map (`gt`, `gte`, `lt`, `lte`, `eq`, `neq`, several of them
//! ANDed); [`count_windows`] finds, in one group's time-ordered matches, the windows an
//! `event_count` or `value_count` correlation (or an Elastic threshold rule) alerts on;
//! [`evaluate`] replays a chain of correlations ([`Node`]) over the events the caller
//! gives (in event-time order, each with the rules it matched and its group for each).
//!
//! The offline meaning of a count condition (one reading of the Sigma correlation
//! specification, v2): per group, a window of `timespan` is anchored at each match, in
//! time order: `[t, t + timespan]` from the match at `t`, both ends inclusive, holding
//! the group's matches in it. A window whose count satisfies the condition alerts with
//! every match it holds, and counting starts afresh with the first match after it. A
//! window with too few (below the condition's least count) moves the anchor to the next
//! match, as a later window may hold more; a window with too many (above `lt`/`lte`/`eq`,
//! or the count `neq` excludes) is one burst: it closes without an alert and counting
//! starts afresh after it, so the tail of a burst never passes for a quiet window. A
//! window's count is only known once it closed, which offline is always the case. A group never seen has no match, so no window: it cannot alert, as a query
//! backend's `GROUP BY` gives it no row; an `event_count` window holds at least the
//! match it is anchored at, so a condition only a count of 0 satisfies is refused. For
//! "at least n" conditions this is the sliding window of Elastic's threshold rules (the
//! first window from the earliest match that reaches n), not fixed buckets.
//!
//! A chained correlation's input is another correlation's firings: each is one event at
//! the time the inner correlation fired (the time of its latest match), in the inner
//! group, whose values the outer correlation's `group-by` names pick.
//!
//! Memory: per correlation of the chain, the events it was given and what fired, never
//! more than the matches of the rules it names (which the run holds as findings).

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::hash::Hash;

use crate::sequence::{Key, StepEvent};
use crate::temporal;

/// The most correlations one chain may nest (the outermost counts as one).
pub const MAX_DEPTH: usize = 8;

/// A condition on a count: at least `min`, at most `max`, never `not`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Condition {
    /// The least count that satisfies it.
    pub min: u64,
    /// The greatest, if any.
    pub max: Option<u64>,
    /// A count that does not (`neq`).
    pub not: Option<u64>,
}

impl Condition {
    /// At least `n`.
    pub fn at_least(n: u64) -> Condition {
        Condition {
            min: n,
            max: None,
            not: None,
        }
    }

    /// Whether `n` satisfies it.
    pub fn holds(&self, n: u64) -> bool {
        n >= self.min && self.max.is_none_or(|m| n <= m) && self.not != Some(n)
    }

    /// Whether it only says "at least n" (so a larger count never fails it).
    pub fn is_at_least(&self) -> bool {
        self.max.is_none() && self.not.is_none()
    }

    /// A correlation's `condition` operators (`field` left out), ANDed. `floor` is the
    /// least count a window can have (1 match; 0 distinct values): a condition no count
    /// from `floor` up satisfies is refused, as are unknown operators and values that are
    /// not whole numbers.
    pub fn parse(ops: &[(String, String)], floor: u64) -> Result<Condition, String> {
        if ops.is_empty() {
            return Err("correlation condition: none given (gte, gt, lt, lte, eq or neq)".into());
        }
        let mut c = Condition::at_least(floor);
        for (op, value) in ops {
            let n: u64 = value.trim().parse().map_err(|_| {
                format!("correlation condition {op}: {value}: not a whole number of 0 or more")
            })?;
            let below = |m: u64| Some(c.max.map_or(m, |old| old.min(m)));
            match op.as_str() {
                "gte" => c.min = c.min.max(n),
                "gt" => c.min = c.min.max(n.saturating_add(1)),
                "lte" => c.max = below(n),
                "lt" => match n.checked_sub(1) {
                    Some(m) => c.max = below(m),
                    None => return Err("correlation condition lt: 0: no count is below 0".into()),
                },
                "eq" => {
                    c.min = c.min.max(n);
                    c.max = below(n);
                }
                "neq" => c.not = Some(n),
                other => {
                    return Err(format!(
                        "correlation condition {other}: not one of gt, gte, lt, lte, eq, neq"
                    ));
                }
            }
        }
        let empty =
            c.max.is_some_and(|m| m < c.min) || (c.max == Some(c.min) && c.not == Some(c.min));
        if empty {
            return Err(format!(
                "correlation condition ({}): no count of {floor} or more satisfies it",
                ops.iter()
                    .map(|(k, v)| format!("{k}: {v}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        Ok(c)
    }
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.max {
            Some(m) if m == self.min => write!(f, "exactly {m}")?,
            Some(m) if self.min == 0 => write!(f, "at most {m}")?,
            Some(m) => write!(f, "{} to {m}", self.min)?,
            None => write!(f, "at least {}", self.min)?,
        }
        if let Some(n) = self.not {
            write!(f, ", not {n}")?;
        }
        Ok(())
    }
}

/// The windows one group's matches alert on (see the module's text): `times` in time
/// order; `events` the condition on a window's number of matches; with `distinct`, also
/// the condition on its number of distinct `values` (a match's value of the counted
/// field; `None`: it has none and adds no value). Each window is `(first, last)`, indices
/// into `times`, in order and disjoint.
pub fn count_windows<V: Eq + Hash>(
    times: &[i64],
    span: i64,
    events: &Condition,
    distinct: Option<(&[Option<V>], &Condition)>,
) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let value = |i: usize| distinct.and_then(|(values, _)| values.get(i)?.as_ref());
    let mut seen: HashMap<&V, u32> = HashMap::new();
    // The window anchored at `a` holds `a..end` (`end` only grows: anchors only move on).
    let (mut a, mut end) = (0usize, 0usize);
    while a < times.len() {
        let limit = times[a].saturating_add(span);
        while end < times.len() && times[end] <= limit {
            if let Some(v) = value(end) {
                *seen.entry(v).or_default() += 1;
            }
            end += 1;
        }
        let count = (end - a) as u64;
        let ok = events.holds(count) && distinct.is_none_or(|(_, c)| c.holds(seen.len() as u64));
        let below =
            count < events.min || distinct.is_some_and(|(_, c)| (seen.len() as u64) < c.min);
        if ok || !below {
            // An alert, or a window with too many (or the excluded count): either way
            // the window is closed, and counting starts afresh after it.
            if ok {
                out.push((a, end - 1));
            }
            a = end;
            seen.clear();
            continue;
        }
        // Too few: a later window may hold more.
        if let Some(v) = value(a)
            && let Some(n) = seen.get_mut(v)
        {
            *n -= 1;
            if *n == 0 {
                seen.remove(v);
            }
        }
        a += 1;
    }
    out
}

/// What one correlation of a chain does with its inputs' events.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `temporal` or `temporal_ordered` (its rules are the node's inputs, in order).
    Temporal(temporal::Temporal),
    /// `event_count` (`distinct: false`: the condition is on the number of events) or
    /// `value_count` (on the number of distinct values), over windows of `span` ms.
    Count {
        /// The condition.
        condition: Condition,
        /// Whether distinct values are counted.
        distinct: bool,
        /// `timespan`, in milliseconds.
        span: i64,
    },
    /// `temporal` with a condition that bounds the number of its rules from above
    /// (`lt`, `lte`, `eq`, `neq`): the windows anchored at each match, as for counts,
    /// whose number of distinct rules matched satisfies it.
    Rules {
        /// The condition on the number of distinct rules.
        condition: Condition,
        /// `timespan`, in milliseconds.
        span: i64,
    },
}

/// One correlation of a chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    /// What it does.
    pub kind: Kind,
    /// How many `group-by` values make its group.
    pub groups: usize,
    /// The rules it names, in order.
    pub inputs: Vec<Input>,
}

/// A rule a correlation of a chain names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    /// A detection rule: the replayed events' steps numbered `slot`, each key the
    /// node's group values, then (value_count) the counted value if the match has one.
    Rule(u16),
    /// Another correlation: each firing is one event in its group.
    Correlation {
        /// The inner correlation.
        node: Box<Node>,
        /// Per group value of this node, which value of the inner group it is.
        group: Vec<usize>,
        /// value_count: which value of the inner group is counted.
        value: Option<usize>,
    },
}

/// A correlation of a chain that fired.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fired {
    /// Its group.
    pub key: Key,
    /// When it fired: the time of its latest event (ms).
    pub time: i64,
    /// What its condition counted: events, distinct values or distinct rules.
    pub count: u64,
    /// Per input, the latest replayed event (index) behind what it gave, if it gave any.
    pub inputs: Vec<Option<usize>>,
    /// Every replayed event behind it, in order.
    pub events: Vec<usize>,
}

/// One event of a node's input stream.
#[derive(Clone, Debug)]
struct Event {
    time: i64,
    input: usize,
    key: Key,
    value: Option<String>,
    /// The latest replayed event behind it, and all of them.
    last: usize,
    events: Vec<usize>,
}

/// Replays a chain over `events` (in time order; an event's steps are the detection
/// rules' slots it matched, with its keys for each): the outermost correlation's
/// firings, in time order. Nodes nested deeper than [`MAX_DEPTH`] give nothing (the
/// caller refuses such chains).
pub fn evaluate(node: &Node, events: &[StepEvent]) -> Vec<Fired> {
    fire(node, events, 1)
}

fn fire(node: &Node, events: &[StepEvent], depth: usize) -> Vec<Fired> {
    if depth > MAX_DEPTH {
        return Vec::new();
    }
    let mut stream: Vec<Event> = Vec::new();
    for (input, source) in node.inputs.iter().enumerate() {
        match source {
            Input::Rule(slot) => {
                for (i, e) in events.iter().enumerate() {
                    for (s, keys) in &e.steps {
                        if s != slot {
                            continue;
                        }
                        for key in keys {
                            let (key, value) = match key.split_at_checked(node.groups) {
                                Some((k, rest)) => (k.to_vec(), rest.first().cloned()),
                                None => continue,
                            };
                            stream.push(Event {
                                time: e.time,
                                input,
                                key,
                                value,
                                last: i,
                                events: vec![i],
                            });
                        }
                    }
                }
            }
            Input::Correlation {
                node: inner,
                group,
                value,
            } => {
                for f in fire(inner, events, depth + 1) {
                    let key: Option<Key> = group.iter().map(|&g| f.key.get(g).cloned()).collect();
                    let Some(key) = key else { continue };
                    stream.push(Event {
                        time: f.time,
                        input,
                        key,
                        value: value.and_then(|v| f.key.get(v).cloned()),
                        last: f.events.last().copied().unwrap_or_default(),
                        events: f.events,
                    });
                }
            }
        }
    }
    // Event-time order; at the same time, by the latest replayed event behind each (so
    // by input position), then by input.
    stream.sort_by_key(|e| (e.time, e.last, e.input));
    let mut out = match &node.kind {
        Kind::Temporal(t) => {
            let steps: Vec<StepEvent> = stream
                .iter()
                .map(|e| StepEvent {
                    time: e.time,
                    steps: vec![(e.input as u16, vec![e.key.clone()])],
                    until: None,
                })
                .collect();
            temporal::replay(t, &steps)
                .into_iter()
                .map(|f| {
                    let chosen: Vec<usize> = f.events.iter().flatten().copied().collect();
                    let count = chosen.len() as u64;
                    fired(node, &stream, f.key, &chosen, count)
                })
                .collect()
        }
        Kind::Count {
            condition,
            distinct,
            span,
        } => count(node, &stream, condition, *distinct, false, *span),
        Kind::Rules { condition, span } => count(node, &stream, condition, true, true, *span),
    };
    out.sort_by(|a, b| (a.time, a.events.last(), &a.key).cmp(&(b.time, b.events.last(), &b.key)));
    out
}

/// The firings of a count over a node's stream: per group, [`count_windows`] of the
/// events (`distinct: false`), of the distinct values, or (`rules`) of the distinct
/// rules.
fn count(
    node: &Node,
    stream: &[Event],
    condition: &Condition,
    distinct: bool,
    rules: bool,
    span: i64,
) -> Vec<Fired> {
    let mut groups: BTreeMap<&Key, Vec<usize>> = BTreeMap::new();
    for (i, e) in stream.iter().enumerate() {
        groups.entry(&e.key).or_default().push(i);
    }
    let mut out = Vec::new();
    for (key, members) in groups {
        let times: Vec<i64> = members.iter().map(|&i| stream[i].time).collect();
        // What is counted distinct: the counted field's value, or the rule.
        let values: Vec<Option<String>> = members
            .iter()
            .map(|&i| match rules {
                true => Some(stream[i].input.to_string()),
                false => stream[i].value.clone(),
            })
            .collect();
        let (events, on) = if distinct {
            (Condition::at_least(1), Some((values.as_slice(), condition)))
        } else {
            (*condition, None)
        };
        for (a, b) in count_windows(&times, span, &events, on) {
            let count = if distinct {
                let mut held: Vec<&String> = values[a..=b].iter().flatten().collect();
                held.sort_unstable();
                held.dedup();
                held.len()
            } else {
                b - a + 1
            };
            out.push(fired(
                node,
                stream,
                key.clone(),
                &members[a..=b],
                count as u64,
            ));
        }
    }
    out
}

/// The firing made of `chosen` events of a node's stream.
fn fired(node: &Node, stream: &[Event], key: Key, chosen: &[usize], count: u64) -> Fired {
    let mut inputs: Vec<Option<usize>> = vec![None; node.inputs.len()];
    let mut events = Vec::new();
    let mut time = i64::MIN;
    for &c in chosen {
        let e = &stream[c];
        time = time.max(e.time);
        let slot = &mut inputs[e.input];
        if slot.is_none_or(|l| l < e.last) {
            *slot = Some(e.last);
        }
        events.extend(&e.events);
    }
    events.sort_unstable();
    events.dedup();
    Fired {
        key,
        time,
        count,
        inputs,
        events,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ops(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn cond(pairs: &[(&str, &str)]) -> Condition {
        Condition::parse(&ops(pairs), 1).unwrap()
    }

    #[test]
    fn every_operator_of_the_specification_and_their_conjunction() {
        // The specification's own examples: `gte: 100`, and "101 to 200" as
        // `gt: 100, lte: 200`.
        let c = cond(&[("gte", "100")]);
        assert!(!c.holds(99) && c.holds(100) && c.holds(10_000));
        let c = cond(&[("gt", "100"), ("lte", "200")]);
        assert!(!c.holds(100) && c.holds(101) && c.holds(200) && !c.holds(201));
        assert_eq!(c.to_string(), "101 to 200");
        let c = cond(&[("lt", "5")]);
        assert!(c.holds(1) && c.holds(4) && !c.holds(5));
        assert_eq!(c.to_string(), "1 to 4");
        let c = cond(&[("lte", "5")]);
        assert!(c.holds(5) && !c.holds(6));
        let c = cond(&[("eq", "3")]);
        assert!(!c.holds(2) && c.holds(3) && !c.holds(4));
        assert_eq!(c.to_string(), "exactly 3");
        let c = cond(&[("neq", "3")]);
        assert!(c.holds(2) && !c.holds(3) && c.holds(4));
        assert_eq!(c.to_string(), "at least 1, not 3");
        // Distinct values may be 0 (no match of the window has the field).
        let c = Condition::parse(&ops(&[("lt", "2")]), 0).unwrap();
        assert!(c.holds(0) && c.holds(1) && !c.holds(2));
        assert_eq!(c.to_string(), "at most 1");
    }

    #[test]
    fn a_condition_no_window_can_satisfy_is_refused() {
        for bad in [
            &[("lt", "1")][..],
            &[("lte", "0")],
            &[("eq", "0")],
            &[("lt", "0")],
            &[("gte", "5"), ("lt", "5")],
            &[("eq", "2"), ("neq", "2")],
            &[("gte", "-1")],
            &[("gte", "2.5")],
            &[("above", "2")],
            &[],
        ] {
            assert!(Condition::parse(&ops(bad), 1).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn windows_are_anchored_at_each_match_and_start_afresh_after_an_alert() {
        // Matches at 0, 1, 2, 10, 11 (span 5): the window from 0 holds 3, from 10 holds 2.
        let times = [0, 1, 2, 10, 11];
        let w = |c: &Condition| count_windows::<u8>(&times, 5, c, None);
        assert_eq!(w(&cond(&[("gte", "3")])), vec![(0, 2)]);
        assert_eq!(w(&cond(&[("gte", "2")])), vec![(0, 2), (3, 4)]);
        // At most 2: the window from 0 holds 3, too many: it closes without an alert
        // (its tail, 1 and 2, is not a quiet window); the one from 10 holds 2.
        assert_eq!(w(&cond(&[("lte", "2")])), vec![(3, 4)]);
        assert_eq!(w(&cond(&[("eq", "2")])), vec![(3, 4)]);
        assert!(w(&cond(&[("eq", "1")])).is_empty());
        assert_eq!(w(&cond(&[("neq", "3")])), vec![(3, 4)]);
        // Too few moves the anchor on: at least 2 within 1 from 1 (1 and 2).
        assert_eq!(
            count_windows::<u8>(&times, 1, &cond(&[("gte", "2"), ("lte", "2")]), None),
            vec![(0, 1), (3, 4)]
        );
        assert_eq!(
            count_windows::<u8>(&[0, 2, 3], 1, &cond(&[("eq", "2")]), None),
            vec![(1, 2)]
        );
        // The window is inclusive at both ends.
        assert_eq!(
            count_windows::<u8>(&[0, 5], 5, &cond(&[("gte", "2")]), None),
            vec![(0, 1)]
        );
        assert!(count_windows::<u8>(&[0, 6], 5, &cond(&[("gte", "2")]), None).is_empty());
    }

    #[test]
    fn distinct_values_are_counted_in_the_window_and_a_missing_value_adds_none() {
        let times = [0, 1, 2, 3];
        let values = [Some("a"), Some("a"), None, Some("b")];
        let c = cond(&[("gte", "2")]);
        let any = Condition::at_least(1);
        assert_eq!(
            count_windows(&times, 10, &any, Some((&values[..], &c))),
            vec![(0, 3)]
        );
        // Within 2: the window from 0 has only a; the one from 1 has a and b.
        assert_eq!(
            count_windows(&times, 2, &any, Some((&values[..], &c))),
            vec![(1, 3)]
        );
        assert!(count_windows(&times, 1, &any, Some((&values[..], &c))).is_empty());
        let one = Condition::parse(&ops(&[("lt", "2")]), 0).unwrap();
        assert_eq!(
            count_windows(&times, 2, &any, Some((&values[..], &one))),
            vec![(0, 2), (3, 3)]
        );
    }

    /// The windows by brute force: each anchor's window counted from scratch.
    fn brute(
        times: &[i64],
        values: &[Option<u8>],
        span: i64,
        c: &Condition,
        distinct: bool,
    ) -> Vec<(usize, usize)> {
        let mut out = Vec::new();
        let mut a = 0;
        while a < times.len() {
            let inside: Vec<usize> = (a..times.len())
                .filter(|&i| times[i] - times[a] <= span)
                .collect();
            let mut vs: Vec<u8> = inside.iter().filter_map(|&i| values[i]).collect();
            vs.sort();
            vs.dedup();
            let n = if distinct { vs.len() } else { inside.len() } as u64;
            let last = *inside.last().unwrap();
            if c.holds(n) {
                out.push((a, last));
                a = last + 1;
            } else if n < c.min {
                a += 1;
            } else {
                a = last + 1;
            }
        }
        out
    }

    /// The first time an "at least n" window can alert, by brute force over every pair
    /// of matches: the earliest match that is the n-th within `span` of an earlier one.
    fn first_at_least(times: &[i64], span: i64, n: usize) -> Option<i64> {
        (0..times.len())
            .filter(|&j| (0..=j).any(|i| j + 1 - i >= n && times[j] - times[i] <= span))
            .map(|j| times[j])
            .next()
    }

    fn ev(time: i64, slot: u16, key: &str) -> StepEvent {
        StepEvent {
            time,
            steps: vec![(slot, vec![vec![key.to_string()]])],
            until: None,
        }
    }

    #[test]
    fn a_chain_feeds_the_inner_firings_to_the_outer_correlation() {
        // The specification's example: many failed logins (event_count, gte 3 within
        // 10) followed by a successful login (temporal_ordered within 10), by user.
        let inner = Node {
            kind: Kind::Count {
                condition: Condition::at_least(3),
                distinct: false,
                span: 10,
            },
            groups: 1,
            inputs: vec![Input::Rule(0)],
        };
        let outer = Node {
            kind: Kind::Temporal(temporal::Temporal {
                rules: 2,
                at_least: 2,
                ordered: true,
                span: 10,
            }),
            groups: 1,
            inputs: vec![
                Input::Correlation {
                    node: Box::new(inner),
                    group: vec![0],
                    value: None,
                },
                Input::Rule(1),
            ],
        };
        let events = [
            ev(0, 1, "a"), // a success before the failures: no order
            ev(1, 0, "a"),
            ev(2, 0, "a"),
            ev(3, 0, "b"),
            ev(4, 0, "a"), // the third failure of a: the inner fires at 4
            ev(9, 1, "b"), // b failed once only
            ev(12, 1, "a"),
        ];
        let out = evaluate(&outer, &events);
        assert_eq!(
            out,
            vec![Fired {
                key: vec!["a".into()],
                time: 12,
                count: 2,
                inputs: vec![Some(4), Some(6)],
                events: vec![1, 2, 4, 6],
            }]
        );
        // A success 11 after the inner fired is too late.
        let mut late = events.to_vec();
        late[6].time = 15;
        assert!(evaluate(&outer, &late).is_empty());
    }

    #[test]
    fn an_outer_count_counts_the_inner_firings_per_group_of_the_inner_values() {
        // Inner: temporal of slots 0 and 1 by (user, ip); outer: value_count of ip by
        // user, at least 2 distinct within 100.
        let pair = Node {
            kind: Kind::Temporal(temporal::Temporal {
                rules: 2,
                at_least: 2,
                ordered: false,
                span: 5,
            }),
            groups: 2,
            inputs: vec![Input::Rule(0), Input::Rule(1)],
        };
        let outer = Node {
            kind: Kind::Count {
                condition: Condition::at_least(2),
                distinct: true,
                span: 100,
            },
            groups: 1,
            inputs: vec![Input::Correlation {
                node: Box::new(pair),
                group: vec![0],
                value: Some(1),
            }],
        };
        let two = |t: i64, slot: u16, user: &str, ip: &str| StepEvent {
            time: t,
            steps: vec![(slot, vec![vec![user.to_string(), ip.to_string()]])],
            until: None,
        };
        let events = [
            two(0, 0, "u", "1.1.1.1"),
            two(1, 1, "u", "1.1.1.1"),
            two(10, 0, "u", "1.1.1.1"),
            two(11, 1, "u", "1.1.1.1"),
            two(20, 0, "u", "2.2.2.2"),
            two(21, 1, "u", "2.2.2.2"),
        ];
        let out = evaluate(&outer, &events);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].key, vec!["u".to_string()]);
        assert_eq!(out[0].time, 21);
        assert_eq!(out[0].events, vec![0, 1, 2, 3, 4, 5]);
        assert_eq!(out[0].count, 2);
    }

    #[test]
    fn a_temporal_condition_on_fewer_rules_counts_distinct_rules_per_window() {
        // Exactly one of three rules within 10: rule 0 alone at 0 and 5 (one window),
        // then rules 1 and 2 together at 30 and 32 (two rules: a window with too many,
        // closed without an alert), then rule 2 at 50.
        let node = Node {
            kind: Kind::Rules {
                condition: Condition::parse(&ops(&[("eq", "1")]), 1).unwrap(),
                span: 10,
            },
            groups: 1,
            inputs: vec![Input::Rule(0), Input::Rule(1), Input::Rule(2)],
        };
        let events = [
            ev(0, 0, "a"),
            ev(5, 0, "a"),
            ev(30, 1, "a"),
            ev(32, 2, "a"),
            ev(50, 2, "a"),
        ];
        let out = evaluate(&node, &events);
        let got: Vec<(i64, Vec<usize>)> = out.iter().map(|f| (f.time, f.events.clone())).collect();
        assert_eq!(got, vec![(5, vec![0, 1]), (50, vec![4])]);
        assert!(out.iter().all(|f| f.count == 1));
    }

    proptest::proptest! {
        /// The two-pointer windows are the brute-force windows, for every operator and
        /// their ranges, counting events or distinct values.
        #[test]
        fn count_windows_match_brute_force(
            mut raw in proptest::collection::vec((0i64..30, proptest::option::of(0u8..4)), 0..16),
            span in 0i64..8,
            op in 0usize..6,
            n in 0u64..5,
            upper in proptest::option::of(0u64..6),
            distinct in proptest::bool::ANY,
        ) {
            raw.sort_by_key(|r| r.0);
            let times: Vec<i64> = raw.iter().map(|r| r.0).collect();
            let values: Vec<Option<u8>> = raw.iter().map(|r| r.1).collect();
            let name = ["gt", "gte", "lt", "lte", "eq", "neq"][op];
            let mut pairs = vec![(name.to_string(), n.to_string())];
            if let Some(u) = upper {
                pairs.push(("lte".to_string(), u.to_string()));
            }
            let floor = u64::from(!distinct);
            let Ok(c) = Condition::parse(&pairs, floor) else {
                return Ok(());
            };
            let any = Condition::at_least(1);
            let got = if distinct {
                count_windows(&times, span, &any, Some((&values[..], &c)))
            } else {
                count_windows::<u8>(&times, span, &c, None)
            };
            proptest::prop_assert_eq!(&got, &brute(&times, &values, span, &c, distinct));
            if !distinct && c.is_at_least() {
                let first = got.first().map(|&(a, _)| times[a + c.min.max(1) as usize - 1]);
                proptest::prop_assert_eq!(first, first_at_least(&times, span, c.min.max(1) as usize));
            }
        }
    }
}
