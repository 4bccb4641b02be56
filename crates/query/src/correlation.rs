//! Sigma correlation conditions on counts, and chained correlations: a correlation whose
//! rules are other correlations, replayed over rule matches.
//!
//! Place in the flow: beside [`temporal`], knowing no record. [`Condition`] is a
//! correlation's `condition` map (`gt`, `gte`, `lt`, `lte`, `eq`, `neq`, several of them
//! ANDed); [`count_windows`] finds, in one group's time-ordered matches, the windows an
//! `event_count` or `value_count` correlation (or an Elastic threshold rule) alerts on,
//! and [`metric_windows`] those a `value_sum`, `value_avg` or `value_percentile` one does
//! (the same windows, the condition on a [`Bound`] of the window's numbers);
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

/// A number a metric correlation computed or compares with (finite; equal when its bits
/// are, so a replay's firings compare exactly).
#[derive(Clone, Copy, Debug)]
pub struct Number(pub f64);

impl PartialEq for Number {
    fn eq(&self, other: &Number) -> bool {
        self.0.to_bits() == other.0.to_bits()
    }
}

impl Eq for Number {}

impl fmt::Display for Number {
    /// The shortest decimal that reads back as the same number (`1200`, `12.5`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A counted value as a number: its text is a finite decimal number (a JSON number, or
/// a number the record writes as text); anything else is no number and adds nothing.
pub fn number(text: &str) -> Option<f64> {
    let n: f64 = text.trim().parse().ok()?;
    // `inf` and `NaN` parse, and a long run of digits may overflow to infinity.
    n.is_finite().then_some(n)
}

/// What a metric correlation computes over a window's numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Metric {
    /// `value_sum`: their sum.
    Sum,
    /// `value_avg`: their sum over how many there are.
    Avg,
    /// `value_percentile` with `percentile: p` (0 to 100): the nearest-rank percentile,
    /// the `⌈p·n/100⌉`-th smallest of the `n` numbers (the smallest for `p` 0), always one
    /// of the numbers seen.
    Percentile(u8),
}

impl Metric {
    /// The correlation `type` it is, with what it reads (`sum of BytesOut`, `95th
    /// percentile of Latency`).
    pub fn describe(&self, field: &str) -> String {
        match self {
            Metric::Sum => format!("sum of {field}"),
            Metric::Avg => format!("average of {field}"),
            Metric::Percentile(p) => format!("percentile {p} of {field}"),
        }
    }
}

/// A comparison of a metric condition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// `gt`
    Gt,
    /// `gte`
    Gte,
    /// `lt`
    Lt,
    /// `lte`
    Lte,
    /// `eq`
    Eq,
    /// `neq`
    Neq,
}

/// A condition on a number (a sum, average or percentile): its comparisons, ANDed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bound {
    /// Each comparison with its number, as written.
    pub ops: Vec<(Op, Number)>,
}

impl Bound {
    /// A metric correlation's `condition` operators (`field` and `percentile` left out),
    /// ANDed. Values may be whole or decimal numbers (the specification: "an integer or
    /// float threshold"); unknown operators, values that are no finite number and
    /// conditions no number satisfies (`gt: 5, lt: 3`; `gte: 2, lte: 2, neq: 2`) are
    /// refused.
    pub fn parse(ops: &[(String, String)]) -> Result<Bound, String> {
        if ops.is_empty() {
            return Err("correlation condition: none given (gte, gt, lt, lte, eq or neq)".into());
        }
        let mut out = Vec::new();
        for (op, value) in ops {
            let n = number(value)
                .ok_or_else(|| format!("correlation condition {op}: {value}: not a number"))?;
            let op = match op.as_str() {
                "gt" => Op::Gt,
                "gte" => Op::Gte,
                "lt" => Op::Lt,
                "lte" => Op::Lte,
                "eq" => Op::Eq,
                "neq" => Op::Neq,
                other => {
                    return Err(format!(
                        "correlation condition {other}: not one of gt, gte, lt, lte, eq, neq"
                    ));
                }
            };
            out.push((op, Number(n)));
        }
        let bound = Bound { ops: out };
        if !bound.satisfiable() {
            return Err(format!(
                "correlation condition ({bound}): no number satisfies it"
            ));
        }
        Ok(bound)
    }

    /// Whether some number satisfies it: the interval its lower and upper bounds leave
    /// is not empty, and is not one number `neq` excludes.
    fn satisfiable(&self) -> bool {
        // (value, inclusive) of the greatest lower bound and the least upper bound.
        let mut lo = (f64::NEG_INFINITY, true);
        let mut hi = (f64::INFINITY, true);
        let tighter_lo = |lo: &mut (f64, bool), b: (f64, bool)| {
            if b.0 > lo.0 || (b.0 == lo.0 && !b.1) {
                *lo = b;
            }
        };
        let tighter_hi = |hi: &mut (f64, bool), b: (f64, bool)| {
            if b.0 < hi.0 || (b.0 == hi.0 && !b.1) {
                *hi = b;
            }
        };
        for &(op, Number(n)) in &self.ops {
            match op {
                Op::Gt => tighter_lo(&mut lo, (n, false)),
                Op::Gte => tighter_lo(&mut lo, (n, true)),
                Op::Lt => tighter_hi(&mut hi, (n, false)),
                Op::Lte => tighter_hi(&mut hi, (n, true)),
                Op::Eq => {
                    tighter_lo(&mut lo, (n, true));
                    tighter_hi(&mut hi, (n, true));
                }
                Op::Neq => {}
            }
        }
        if lo.0 > hi.0 || (lo.0 == hi.0 && !(lo.1 && hi.1)) {
            return false;
        }
        // A single number left: some `neq` must not exclude it.
        let point = lo.0 == hi.0;
        !(point && self.ops.contains(&(Op::Neq, Number(lo.0))))
    }

    /// Whether `x` satisfies every comparison.
    pub fn holds(&self, x: f64) -> bool {
        self.ops.iter().all(|&(op, Number(n))| match op {
            Op::Gt => x > n,
            Op::Gte => x >= n,
            Op::Lt => x < n,
            Op::Lte => x <= n,
            Op::Eq => x == n,
            Op::Neq => x != n,
        })
    }

    /// Whether `x` is below a lower bound (`gt`, `gte`, `eq`): a window that gathers
    /// more numbers may yet reach it.
    pub fn below(&self, x: f64) -> bool {
        self.ops.iter().any(|&(op, Number(n))| match op {
            Op::Gt => x <= n,
            Op::Gte | Op::Eq => x < n,
            _ => false,
        })
    }
}

impl fmt::Display for Bound {
    /// `above 1000`, `at least 10, below 20`, `exactly 5`, `not 3`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (op, n)) in self.ops.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            let word = match op {
                Op::Gt => "above",
                Op::Gte => "at least",
                Op::Lt => "below",
                Op::Lte => "at most",
                Op::Eq => "exactly",
                Op::Neq => "not",
            };
            write!(f, "{word} {n}")?;
        }
        Ok(())
    }
}

/// A window a metric correlation alerts on: indices into the group's matches, and what
/// it computed.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MetricWindow {
    /// Its first match.
    pub first: usize,
    /// Its last match.
    pub last: usize,
    /// The sum, average or percentile of its numbers.
    pub value: f64,
}

/// The windows one group's matches alert on for a metric: `times` in time order,
/// `values` each match's number (`None`: the match has no number, it is in the window
/// but adds none). The windows are [`count_windows`]'s: anchored at each match, `[t, t +
/// span]`; a window whose metric satisfies `condition` alerts and the next window starts
/// after it; one whose metric is below a lower bound of the condition, or that holds no
/// number (no sum, average or percentile to compare), moves the anchor to the next
/// match; one whose metric fails otherwise (above an upper bound, or the number `neq`
/// excludes) is closed without an alert and the next window starts after it.
///
/// A sum is kept by adding each number as it enters and subtracting it as it leaves:
/// exact for whole numbers whose sums stay below 2^53 (sizes, counts), otherwise rounded
/// as floating-point sums are; the same matches in the same order always give the same
/// result. Work: O(n log n) for n matches.
pub fn metric_windows(
    times: &[i64],
    values: &[Option<f64>],
    span: i64,
    metric: Metric,
    condition: &Bound,
) -> Vec<MetricWindow> {
    let value = |i: usize| values.get(i).copied().flatten();
    // The percentile's order statistics: each distinct number's rank, and a Fenwick tree
    // of how many of each the window holds.
    let mut order: Vec<f64> = values.iter().flatten().copied().collect();
    order.sort_by(f64::total_cmp);
    order.dedup_by(|a, b| a.total_cmp(b).is_eq());
    let rank = |v: f64| order.partition_point(|o| o.total_cmp(&v).is_lt());
    let mut held = Fenwick::new(if matches!(metric, Metric::Percentile(_)) {
        order.len()
    } else {
        0
    });
    let (mut sum, mut n) = (0f64, 0u64);
    let add = |v: f64, sign: i64, sum: &mut f64, n: &mut u64, held: &mut Fenwick| {
        if sign > 0 {
            *sum += v;
            *n += 1;
        } else {
            *sum -= v;
            *n -= 1;
        }
        if let Metric::Percentile(_) = metric {
            held.add(rank(v), sign);
        }
    };
    let mut out = Vec::new();
    let (mut a, mut end) = (0usize, 0usize);
    while a < times.len() {
        let limit = times[a].saturating_add(span);
        while end < times.len() && times[end] <= limit {
            if let Some(v) = value(end) {
                add(v, 1, &mut sum, &mut n, &mut held);
            }
            end += 1;
        }
        let computed = (n > 0).then(|| match metric {
            Metric::Sum => sum,
            Metric::Avg => sum / n as f64,
            Metric::Percentile(p) => {
                let k = (u64::from(p) * n).div_ceil(100).max(1);
                order[held.kth(k)]
            }
        });
        let ok = computed.is_some_and(|v| condition.holds(v));
        let below = computed.is_none_or(|v| condition.below(v));
        if ok || !below {
            if let (true, Some(v)) = (ok, computed) {
                out.push(MetricWindow {
                    first: a,
                    last: end - 1,
                    value: v,
                });
            }
            for i in a..end {
                if let Some(v) = value(i) {
                    add(v, -1, &mut sum, &mut n, &mut held);
                }
            }
            // Afresh: no rounding carried over from the window before.
            sum = 0.0;
            a = end;
            continue;
        }
        if let Some(v) = value(a) {
            add(v, -1, &mut sum, &mut n, &mut held);
        }
        if n == 0 {
            sum = 0.0;
        }
        a += 1;
    }
    out
}

/// Counts per rank, with prefix sums and the k-th smallest in O(log n).
struct Fenwick {
    tree: Vec<i64>,
}

impl Fenwick {
    fn new(len: usize) -> Fenwick {
        Fenwick {
            tree: vec![0; len + 1],
        }
    }

    fn add(&mut self, rank: usize, by: i64) {
        let mut i = rank + 1;
        while i < self.tree.len() {
            self.tree[i] += by;
            i += i & i.wrapping_neg();
        }
    }

    /// The rank of the `k`-th smallest held (1-based `k`, at most how many are held).
    fn kth(&self, k: u64) -> usize {
        let mut pos = 0usize;
        let mut left = k as i64;
        let mut step = (self.tree.len() - 1).next_power_of_two();
        while step > 0 {
            let next = pos + step;
            if next < self.tree.len() && self.tree[next] < left {
                pos = next;
                left -= self.tree[next];
            }
            step >>= 1;
        }
        pos
    }
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
    /// `value_sum`, `value_avg` or `value_percentile`: the windows anchored at each
    /// match, as for counts, whose sum, average or percentile of the counted field's
    /// numbers satisfies the condition ([`metric_windows`]).
    Metric {
        /// What is computed.
        metric: Metric,
        /// The condition on it.
        condition: Bound,
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
    /// What its condition counted: events, distinct values or distinct rules (for a
    /// metric, the numbers it was computed from).
    pub count: u64,
    /// A metric correlation's sum, average or percentile (`None` for the others).
    pub value: Option<Number>,
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
        Kind::Metric {
            metric,
            condition,
            span,
        } => metrics(node, &stream, *metric, condition, *span),
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
        value: None,
        inputs,
        events,
    }
}

/// The firings of a metric over a node's stream: per group, [`metric_windows`] of the
/// events' counted values.
fn metrics(
    node: &Node,
    stream: &[Event],
    metric: Metric,
    condition: &Bound,
    span: i64,
) -> Vec<Fired> {
    let mut groups: BTreeMap<&Key, Vec<usize>> = BTreeMap::new();
    for (i, e) in stream.iter().enumerate() {
        groups.entry(&e.key).or_default().push(i);
    }
    let mut out = Vec::new();
    for (key, members) in groups {
        let times: Vec<i64> = members.iter().map(|&i| stream[i].time).collect();
        let values: Vec<Option<f64>> = members
            .iter()
            .map(|&i| stream[i].value.as_deref().and_then(number))
            .collect();
        for w in metric_windows(&times, &values, span, metric, condition) {
            let numbers = values[w.first..=w.last].iter().flatten().count();
            let mut f = fired(
                node,
                stream,
                key.clone(),
                &members[w.first..=w.last],
                numbers as u64,
            );
            f.value = Some(Number(w.value));
            out.push(f);
        }
    }
    out
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
                value: None,
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

    fn bound(pairs: &[(&str, &str)]) -> Bound {
        Bound::parse(&ops(pairs)).unwrap()
    }

    #[test]
    fn metric_conditions_take_decimal_thresholds_and_refuse_what_no_number_satisfies() {
        let b = bound(&[("gt", "12.5"), ("lte", "20")]);
        assert!(!b.holds(12.5) && b.holds(12.51) && b.holds(20.0) && !b.holds(20.5));
        assert!(b.below(12.5) && !b.below(30.0));
        assert_eq!(b.to_string(), "above 12.5, at most 20");
        assert!(bound(&[("lt", "0")]).holds(-1.0), "a sum may be negative");
        assert!(bound(&[("neq", "3")]).holds(2.0));
        for refused in [
            &[("gt", "5"), ("lt", "3")][..],
            &[("gt", "5"), ("lte", "5")],
            &[("gte", "2"), ("lte", "2"), ("neq", "2")],
            &[("eq", "1"), ("eq", "2")],
            &[("gt", "many")],
            &[("gt", "inf")],
            &[("gt", "NaN")],
            &[("over", "1")],
            &[],
        ] {
            assert!(Bound::parse(&ops(refused)).is_err(), "{refused:?}");
        }
        // A single number some `neq` does not exclude is fine.
        assert!(bound(&[("gte", "2"), ("lte", "2"), ("neq", "3")]).holds(2.0));
    }

    #[test]
    fn a_number_is_a_finite_decimal_whether_written_as_a_number_or_as_text() {
        assert_eq!(number("1200"), Some(1200.0));
        assert_eq!(number(" -2.5 "), Some(-2.5));
        assert_eq!(number("1e3"), Some(1000.0));
        for no in ["", "abc", "12 MB", "inf", "NaN", "true", "1e999"] {
            assert_eq!(number(no), None, "{no:?}");
        }
    }

    #[test]
    fn the_percentile_is_the_nearest_rank_one_of_the_numbers_seen() {
        // Every match in one window (span 100); the condition always holds.
        let times = [0, 1, 2, 3];
        let values = [Some(4.0), Some(1.0), Some(3.0), Some(2.0)];
        let any = bound(&[("gte", "-1000")]);
        let p = |p: u8| metric_windows(&times, &values, 100, Metric::Percentile(p), &any)[0].value;
        // Sorted 1, 2, 3, 4: rank ⌈p·4/100⌉.
        assert_eq!(p(0), 1.0);
        assert_eq!(p(25), 1.0);
        assert_eq!(p(26), 2.0);
        assert_eq!(
            p(50),
            2.0,
            "the median of an even count is the lower middle"
        );
        assert_eq!(p(75), 3.0);
        assert_eq!(p(95), 4.0);
        assert_eq!(p(100), 4.0);
        let sum = metric_windows(&times, &values, 100, Metric::Sum, &any);
        let avg = metric_windows(&times, &values, 100, Metric::Avg, &any);
        assert_eq!((sum[0].value, avg[0].value), (10.0, 2.5));
    }

    #[test]
    fn a_match_without_a_number_is_in_the_window_but_adds_none() {
        let times = [0, 1, 2];
        let values = [Some(10.0), None, Some(20.0)];
        let avg = metric_windows(&times, &values, 5, Metric::Avg, &bound(&[("eq", "15")]));
        assert_eq!(
            avg,
            vec![MetricWindow {
                first: 0,
                last: 2,
                value: 15.0
            }]
        );
        // A window with no number has nothing to compare: even `lt` does not alert.
        let none = [None, None, None];
        assert!(metric_windows(&times, &none, 5, Metric::Sum, &bound(&[("lt", "1")])).is_empty());
        assert!(metric_windows(&times, &none, 5, Metric::Avg, &bound(&[("neq", "1")])).is_empty());
    }

    #[test]
    fn metric_windows_are_the_count_windows_anchored_at_each_match() {
        // Values 600 at 0, 500 at 50, 700 at 120 (span 60).
        let times = [0, 50, 120];
        let values = [Some(600.0), Some(500.0), Some(700.0)];
        let w = |m: Metric, pairs: &[(&str, &str)]| -> Vec<(usize, usize, f64)> {
            metric_windows(&times, &values, 60, m, &bound(pairs))
                .iter()
                .map(|w| (w.first, w.last, w.value))
                .collect()
        };
        assert_eq!(w(Metric::Sum, &[("gt", "1000")]), vec![(0, 1, 1100.0)]);
        // 1100 is the greatest sum: above 1100 is a near miss.
        assert!(w(Metric::Sum, &[("gt", "1100")]).is_empty());
        // Too low from 0 (average 550) and from 50 (500 alone): the anchor moves on to
        // 120, whose window holds 700.
        assert_eq!(w(Metric::Avg, &[("gt", "600")]), vec![(2, 2, 700.0)]);
        assert!(w(Metric::Avg, &[("gt", "700")]).is_empty());
        assert_eq!(
            w(Metric::Avg, &[("gte", "550")]),
            vec![(0, 1, 550.0), (2, 2, 700.0)]
        );
        // At most 600: the window from 0 (1100) is too much, closed; 700 alone too.
        assert!(w(Metric::Sum, &[("lte", "600")]).is_empty());
        assert_eq!(w(Metric::Sum, &[("lte", "700")]), vec![(2, 2, 700.0)]);
        assert_eq!(
            w(Metric::Percentile(50), &[("eq", "500")]),
            vec![(0, 1, 500.0)]
        );
        assert!(w(Metric::Percentile(51), &[("eq", "500")]).is_empty());
        // Inclusive at both ends: 600 at 0 and 500 at 60 share the window.
        let edge = metric_windows(
            &[0, 60],
            &values[..2],
            60,
            Metric::Sum,
            &bound(&[("gt", "1000")]),
        );
        assert_eq!(edge.len(), 1);
        let out = metric_windows(
            &[0, 61],
            &values[..2],
            60,
            Metric::Sum,
            &bound(&[("gt", "1000")]),
        );
        assert!(out.is_empty());
    }

    #[test]
    fn a_chain_feeds_a_metric_correlations_firings_to_the_outer_one() {
        // Inner: value_sum above 10 within 5 by user (the value after the group); outer:
        // temporal_ordered of the inner firing then rule 1, within 10.
        let inner = Node {
            kind: Kind::Metric {
                metric: Metric::Sum,
                condition: Bound::parse(&ops(&[("gt", "10")])).unwrap(),
                span: 5,
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
                    node: Box::new(inner.clone()),
                    group: vec![0],
                    value: None,
                },
                Input::Rule(1),
            ],
        };
        let valued = |time: i64, key: &str, v: &str| StepEvent {
            time,
            steps: vec![(0, vec![vec![key.to_string(), v.to_string()]])],
            until: None,
        };
        let events = [
            valued(0, "a", "6"),
            valued(1, "b", "6"),
            valued(2, "a", "5"), // a: 11 within 5, fires at 2
            valued(3, "b", "4"), // b: 10, not above 10
            ev(4, 1, "b"),
            ev(6, 1, "a"),
        ];
        let fired = evaluate(&inner, &events);
        assert_eq!(fired.len(), 1);
        assert_eq!((fired[0].time, fired[0].value), (2, Some(Number(11.0))));
        assert_eq!(fired[0].events, vec![0, 2]);
        let out = evaluate(&outer, &events);
        assert_eq!(out.len(), 1);
        assert_eq!(
            (out[0].key.clone(), out[0].time),
            (vec!["a".to_string()], 6)
        );
        assert_eq!(out[0].inputs, vec![Some(2), Some(5)]);
    }

    /// A metric's windows by brute force: each anchor's window computed from scratch.
    fn brute_metric(
        times: &[i64],
        values: &[Option<f64>],
        span: i64,
        metric: Metric,
        c: &Bound,
    ) -> Vec<(usize, usize, f64)> {
        let mut out = Vec::new();
        let mut a = 0;
        while a < times.len() {
            let inside: Vec<usize> = (a..times.len())
                .filter(|&i| times[i] - times[a] <= span)
                .collect();
            let mut vs: Vec<f64> = inside.iter().filter_map(|&i| values[i]).collect();
            vs.sort_by(f64::total_cmp);
            let last = *inside.last().unwrap();
            let v = (!vs.is_empty()).then(|| match metric {
                Metric::Sum => vs.iter().sum::<f64>(),
                Metric::Avg => vs.iter().sum::<f64>() / vs.len() as f64,
                Metric::Percentile(p) => {
                    // The smallest number with at least p% of them at or below it.
                    *vs.iter()
                        .find(|&&x| {
                            let at_or_below = vs.iter().filter(|&&y| y <= x).count();
                            at_or_below * 100 >= usize::from(p) * vs.len()
                        })
                        .unwrap()
                }
            });
            match v {
                Some(v) if c.holds(v) => {
                    out.push((a, last, v));
                    a = last + 1;
                }
                Some(v) if !c.below(v) => a = last + 1,
                _ => a += 1,
            }
        }
        out
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

        /// The sliding sums, averages and percentiles are the brute-force ones (whole
        /// numbers, so sums are exact either way), for every operator and ranges.
        #[test]
        fn metric_windows_match_brute_force(
            mut raw in proptest::collection::vec((0i64..30, proptest::option::of(-3i32..20)), 0..16),
            span in 0i64..8,
            op in 0usize..6,
            n in -5i32..40,
            upper in proptest::option::of(0i32..50),
            kind in 0u8..3,
            p in 0u8..=100,
        ) {
            raw.sort_by_key(|r| r.0);
            let times: Vec<i64> = raw.iter().map(|r| r.0).collect();
            let values: Vec<Option<f64>> = raw.iter().map(|r| r.1.map(f64::from)).collect();
            let name = ["gt", "gte", "lt", "lte", "eq", "neq"][op];
            let mut pairs = vec![(name.to_string(), n.to_string())];
            if let Some(u) = upper {
                pairs.push(("lte".to_string(), u.to_string()));
            }
            let Ok(c) = Bound::parse(&pairs) else {
                return Ok(());
            };
            let metric = [Metric::Sum, Metric::Avg, Metric::Percentile(p)][usize::from(kind)];
            let got: Vec<(usize, usize, f64)> = metric_windows(&times, &values, span, metric, &c)
                .iter()
                .map(|w| (w.first, w.last, w.value))
                .collect();
            proptest::prop_assert_eq!(got, brute_metric(&times, &values, span, metric, &c));
        }
    }
}
