//! EQL (Elastic's Event Query Language): parser, printer, evaluator of event queries
//! and prefilter literals.
//!
//! A query text is parsed once into a [`Query`] over the caller's field type. An event
//! query (`CATEGORY where CONDITION`) is evaluated against each record's [`Fields`] view
//! ([`Query::matches`]); a sequence (`sequence by F with maxspan=30m [..] [..] until
//! [..]`) is parsed into [`Query::Sequence`] and printed, but matching it needs events
//! in time order across records, which is the caller's to replay: [`Query::matches`]
//! answers `false` for it. [`Query`] prints back (`Display`) as EQL text that parses to
//! the same query, and gives the literals a matching record must hold
//! ([`Query::required_literals`], [`Query::required_conjuncts`]) as the KQL module does.
//!
//! Semantics are Elasticsearch's EQL (8.x):
//!
//! - The category is tested against `event.category`, which may hold several values;
//!   `any` matches every event.
//! - `==`, `!=`, `<`, `<=`, `>`, `>=` compare strings exactly and case-sensitively
//!   (ranges by code point), numbers numerically; values of different types never
//!   compare. `:` is case-insensitive equality with `*` and `?` wildcards; `like` is
//!   case-sensitive with wildcards and `like~` not; `regex` and `regex~` must match the
//!   whole value; `in` is case-sensitive equality with any element of a list, `in~`
//!   case-insensitive; `not in` its negation. The right side of `:`, `like` and `regex`
//!   may be one string or a parenthesised list.
//! - Functions: `between`, `cidrMatch`, `concat`, `endsWith`, `indexOf`, `length`,
//!   `startsWith`, `stringContains`, `substring`; `between`, `endsWith`, `indexOf`,
//!   `startsWith` and `stringContains` are case-sensitive, their `~` forms not. Their
//!   arguments may be fields (`endsWith~(?a, user.domain)`).
//! - A field's values are typed by the field ([`Field::value_type`]): numbers for
//!   numeric fields, booleans for boolean ones, text otherwise. A field with several
//!   values (an array) satisfies a comparison or a function when any value does; `!=`
//!   and `not in` are the negation of `==` and `in` (no value equal).
//! - Null: a missing field (`?field` is the same, the `?` only says it may be absent
//!   from the mapping) is null. A comparison or function with a null operand is null,
//!   `not null` is null, `and`/`or` follow three-valued logic, and a null condition
//!   does not match. `field == null` and `field != null` test whether the field holds a
//!   value.
//! - Strings are double-quoted with the escapes `\" \\ \n \r \t \'` and `\u{HEX}`, or
//!   raw between `"""` with no escapes; comments are `//` to the end of the line and
//!   `/* */`.
//! - Regular expressions are read with Rust's `regex` syntax, which agrees with the
//!   Lucene syntax Elasticsearch uses on alternation, groups, classes, `.` and the
//!   repetition operators; `.` matches any character, newlines included.
//!
//! Rejected with a clear error: pipes (`| head`), `join` and `sample`, missing-event
//! steps (`![..]`), arithmetic, array indexes, single-quoted strings, functions other
//! than the above, a condition that is not boolean, and nesting deeper than
//! [`MAX_DEPTH`].
//!
//! This module never touches bytes from an archive: it only sees field values through
//! the [`Fields`] trait.

use std::cmp::Ordering;
use std::fmt;

use crate::field::{Field, Fields, Spelling, ValueType};
use crate::kql::{
    IpBlock, is_literal_text, parse_ip, parse_ip_block, parse_number, safe_fragment,
    safe_spellings, selectivity, union,
};
use crate::literal::Literal;

/// How deep parentheses and `not`s may nest.
pub const MAX_DEPTH: usize = 64;

/// A parsed EQL query.
#[derive(Clone, Debug, PartialEq)]
pub enum Query<F> {
    /// `CATEGORY where CONDITION`: one event.
    Event(EventQuery<F>),
    /// `sequence …`: events in order, joined by keys. Parsed, not evaluated here.
    Sequence(Sequence<F>),
}

/// `CATEGORY where CONDITION`.
#[derive(Clone, Debug, PartialEq)]
pub struct EventQuery<F> {
    /// Which events the query looks at.
    pub category: Category,
    /// What they must satisfy.
    pub condition: Expr<F>,
    /// `event.category`, resolved once.
    category_field: F,
}

/// The category an event query names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Category {
    /// `any`: every event.
    Any,
    /// An event whose `event.category` holds this value.
    Named(String),
}

/// `sequence [by KEYS] [with maxspan=SPAN] STEP STEP… [until STEP]`.
#[derive(Clone, Debug, PartialEq)]
pub struct Sequence<F> {
    /// Join keys every step shares (`sequence by user.id`).
    pub by: Vec<F>,
    /// How far apart in time the first and last step may be.
    pub maxspan: Option<Span>,
    /// The steps, in the order their events must happen (at least two).
    pub steps: Vec<Step<F>>,
    /// An event that ends a partial sequence.
    pub until: Option<Step<F>>,
}

/// One `[event query] [by KEYS] [with runs=N]` of a sequence.
#[derive(Clone, Debug, PartialEq)]
pub struct Step<F> {
    /// The event this step stands for.
    pub query: EventQuery<F>,
    /// This step's own join keys, after the sequence's.
    pub by: Vec<F>,
    /// `with runs=N`: the step repeated N times.
    pub runs: Option<u32>,
}

/// A length of time, as written (`30m`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    /// How many units.
    pub amount: u64,
    /// The unit.
    pub unit: SpanUnit,
}

/// The unit of a [`Span`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpanUnit {
    /// `ms`
    Millis,
    /// `s`
    Seconds,
    /// `m`
    Minutes,
    /// `h`
    Hours,
    /// `d`
    Days,
}

impl Span {
    /// The span in milliseconds (saturating).
    pub fn millis(&self) -> u64 {
        let per = match self.unit {
            SpanUnit::Millis => 1,
            SpanUnit::Seconds => 1000,
            SpanUnit::Minutes => 60_000,
            SpanUnit::Hours => 3_600_000,
            SpanUnit::Days => 86_400_000,
        };
        self.amount.saturating_mul(per)
    }
}

/// An EQL expression: a condition, or an operand of one.
#[derive(Clone, Debug, PartialEq)]
pub enum Expr<F> {
    /// Every part must hold.
    And(Vec<Expr<F>>),
    /// At least one part must hold.
    Or(Vec<Expr<F>>),
    /// The part must not hold (null stays null).
    Not(Box<Expr<F>>),
    /// `left OP right`.
    Compare {
        /// Left operand.
        left: Box<Expr<F>>,
        /// The operator.
        op: CompareOp,
        /// Right operand.
        right: Box<Expr<F>>,
    },
    /// `value : patterns`, `value like[~] patterns`, `value regex[~] patterns`.
    Matches {
        /// What is matched.
        value: Box<Expr<F>>,
        /// The patterns, any of which may match.
        patterns: Patterns,
    },
    /// `value [not] in[~] (list)`.
    In {
        /// What is looked up.
        value: Box<Expr<F>>,
        /// The constants it is compared with.
        list: Vec<Value>,
        /// `in~`: case-insensitive.
        insensitive: bool,
        /// `not in`.
        negated: bool,
    },
    /// `function[~](args)`.
    Call {
        /// The function.
        function: Function,
        /// The `~` form: case-insensitive.
        insensitive: bool,
        /// Its arguments.
        args: Vec<Expr<F>>,
    },
    /// A field (`?field`: optional).
    Field {
        /// The field, resolved once at parse time.
        field: F,
        /// Written with `?`.
        optional: bool,
    },
    /// A constant.
    Value(Value),
}

/// A constant of the language.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// `null`.
    Null,
    /// `true` or `false`.
    Bool(bool),
    /// A number.
    Number(f64),
    /// A string.
    String(String),
}

/// A comparison operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CompareOp {
    /// `==`
    Eq,
    /// `!=`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Lte,
    /// `>`
    Gt,
    /// `>=`
    Gte,
}

/// A function EQL offers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Function {
    /// `between(source, left, right[, greedy])`: the text between two others.
    Between,
    /// `cidrMatch(ip, cidr, …)`: whether an address lies in one of the blocks.
    CidrMatch,
    /// `concat(value, …)`: the values as one string.
    Concat,
    /// `endsWith(source, suffix)`.
    EndsWith,
    /// `indexOf(source, substring[, start])`: where the substring starts, or null.
    IndexOf,
    /// `length(source)`: the number of characters.
    Length,
    /// `startsWith(source, prefix)`.
    StartsWith,
    /// `stringContains(source, substring)`.
    StringContains,
    /// `substring(source, start[, end])`: negative positions count from the end.
    Substring,
}

/// The right side of `:`, `like` and `regex`: patterns compiled into one matcher.
///
/// Wildcard patterns (`:`, `like`) are compiled when first matched: most rules of a
/// pack never see a candidate, and a wildcard list cannot fail to compile (its text is
/// escaped, and a bound on its length, 16 KiB of expression, keeps it far below the
/// size limit). Regular expressions, and wildcard lists past that bound, are compiled
/// as they are parsed, so that a bad one is the query's error.
#[derive(Clone, Debug)]
pub struct Patterns {
    kind: PatternKind,
    insensitive: bool,
    texts: Vec<String>,
    /// The matcher's regular expression.
    source: String,
    /// The compiled matcher, shared by the query's clones.
    matcher: std::sync::Arc<std::sync::OnceLock<regex::Regex>>,
}

/// The compiled size limit of a pattern list's matcher.
const PATTERN_SIZE_LIMIT: usize = 1 << 24;

/// The longest source of a wildcard list compiled on first use (bytes of the regular
/// expression); a test compiles the costliest such source within a quarter of
/// [`PATTERN_SIZE_LIMIT`].
const LAZY_SOURCE: usize = 16 << 10;

fn compile_patterns(source: &str) -> Result<regex::Regex, regex::Error> {
    regex::RegexBuilder::new(source)
        .size_limit(PATTERN_SIZE_LIMIT)
        .build()
}

/// How the patterns of a [`Patterns`] read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PatternKind {
    /// `:`: case-insensitive, `*` and `?` wildcards.
    Colon,
    /// `like` / `like~`: `*` and `?` wildcards.
    Like,
    /// `regex` / `regex~`: a regular expression matching the whole value.
    Regex,
}

impl PartialEq for Patterns {
    fn eq(&self, other: &Patterns) -> bool {
        self.kind == other.kind
            && self.insensitive == other.insensitive
            && self.texts == other.texts
    }
}

impl Patterns {
    fn new(
        kind: PatternKind,
        insensitive: bool,
        texts: Vec<String>,
    ) -> Result<Patterns, regex::Error> {
        let mut source = String::from(if insensitive { "(?is)^(?:" } else { "(?s)^(?:" });
        for (i, text) in texts.iter().enumerate() {
            if i > 0 {
                source.push('|');
            }
            source.push_str("(?:");
            match kind {
                PatternKind::Regex => source.push_str(text),
                PatternKind::Colon | PatternKind::Like => {
                    for c in text.chars() {
                        match c {
                            '*' => source.push_str(".*"),
                            '?' => source.push('.'),
                            c => source.push_str(&regex::escape(c.encode_utf8(&mut [0; 4]))),
                        }
                    }
                }
            }
            source.push(')');
        }
        source.push_str(")$");
        let matcher = std::sync::OnceLock::new();
        if kind == PatternKind::Regex || source.len() > LAZY_SOURCE {
            let _ = matcher.set(compile_patterns(&source)?);
        }
        Ok(Patterns {
            kind,
            insensitive,
            texts,
            source,
            matcher: std::sync::Arc::new(matcher),
        })
    }

    /// Whether the matcher is compiled yet.
    pub fn is_compiled(&self) -> bool {
        self.matcher.get().is_some()
    }

    /// The patterns as written.
    pub fn texts(&self) -> &[String] {
        &self.texts
    }

    /// How they read.
    pub fn kind(&self) -> PatternKind {
        self.kind
    }

    /// Whether they ignore case (`:`, `like~`, `regex~`).
    pub fn is_insensitive(&self) -> bool {
        self.insensitive
    }

    /// Whether a text matches any of them.
    pub fn is_match(&self, text: &str) -> bool {
        self.matcher
            .get_or_init(|| {
                // Only an escaped wildcard list within `LAZY_SOURCE` gets here.
                compile_patterns(&self.source).expect("a wildcard list compiles")
            })
            .is_match(text)
    }
}

/// A query text that could not be parsed, with the byte offset of the problem.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("EQL syntax error at offset {offset}: {message}")]
pub struct ParseError {
    /// Byte offset in the query text.
    pub offset: usize,
    /// What was wrong.
    pub message: String,
}

// ---------------------------------------------------------------------------------
// Evaluation.

/// A value met during evaluation; text borrowed where it can be.
#[derive(Clone, Copy, Debug)]
enum Scalar<'a> {
    Bool(bool),
    Num(f64),
    Str(&'a str),
}

/// An owned [`Scalar`], as computed values (a field's collected values, a function's
/// result) are held.
#[derive(Clone, Debug)]
enum Owned {
    Bool(bool),
    Num(f64),
    Str(String),
}

impl Owned {
    fn get(&self) -> Scalar<'_> {
        match self {
            Owned::Bool(b) => Scalar::Bool(*b),
            Owned::Num(n) => Scalar::Num(*n),
            Owned::Str(s) => Scalar::Str(s),
        }
    }
}

impl Scalar<'_> {
    fn owned(self) -> Owned {
        match self {
            Scalar::Bool(b) => Owned::Bool(b),
            Scalar::Num(n) => Owned::Num(n),
            Scalar::Str(s) => Owned::Str(s.to_string()),
        }
    }
}

/// A field value's text, typed by its field.
fn typed(kind: ValueType, text: &str) -> Option<Scalar<'_>> {
    match kind {
        ValueType::Number => parse_number(text).map(Scalar::Num),
        ValueType::Boolean => match text {
            "true" => Some(Scalar::Bool(true)),
            "false" => Some(Scalar::Bool(false)),
            _ => None,
        },
        _ => Some(Scalar::Str(text)),
    }
}

/// Three-valued "any": true if any outcome is, else false if any is, else null.
#[derive(Default)]
struct AnyOf {
    hit: bool,
    miss: bool,
}

impl AnyOf {
    /// Records one outcome; returns whether it settles the answer (true).
    fn add(&mut self, outcome: Option<bool>) -> bool {
        match outcome {
            Some(true) => self.hit = true,
            Some(false) => self.miss = true,
            None => {}
        }
        self.hit
    }

    fn result(&self) -> Option<bool> {
        if self.hit {
            Some(true)
        } else if self.miss {
            Some(false)
        } else {
            None
        }
    }
}

/// Characters compared without case, as Elasticsearch's case-insensitive queries do.
fn fold(s: &str) -> impl Iterator<Item = char> + '_ {
    s.chars().flat_map(char::to_lowercase)
}

fn equal(a: Scalar, b: Scalar, insensitive: bool) -> Option<bool> {
    match (a, b) {
        (Scalar::Str(a), Scalar::Str(b)) if insensitive => Some(fold(a).eq(fold(b))),
        (Scalar::Str(a), Scalar::Str(b)) => Some(a == b),
        (Scalar::Num(a), Scalar::Num(b)) => Some(a == b),
        (Scalar::Bool(a), Scalar::Bool(b)) => Some(a == b),
        _ => None,
    }
}

fn order(a: Scalar, b: Scalar) -> Option<Ordering> {
    match (a, b) {
        (Scalar::Str(a), Scalar::Str(b)) => Some(a.cmp(b)),
        (Scalar::Num(a), Scalar::Num(b)) => a.partial_cmp(&b),
        (Scalar::Bool(a), Scalar::Bool(b)) => Some(a.cmp(&b)),
        _ => None,
    }
}

impl CompareOp {
    fn holds(self, a: Scalar, b: Scalar) -> Option<bool> {
        let ord = order(a, b)?;
        Some(match self {
            CompareOp::Eq | CompareOp::Ne => unreachable!("equality is not an order"),
            CompareOp::Lt => ord == Ordering::Less,
            CompareOp::Lte => ord != Ordering::Greater,
            CompareOp::Gt => ord == Ordering::Greater,
            CompareOp::Gte => ord != Ordering::Less,
        })
    }

    fn symbol(self) -> &'static str {
        match self {
            CompareOp::Eq => "==",
            CompareOp::Ne => "!=",
            CompareOp::Lt => "<",
            CompareOp::Lte => "<=",
            CompareOp::Gt => ">",
            CompareOp::Gte => ">=",
        }
    }
}

/// `source` ends with / starts with / contains `part`, with or without case.
fn string_test(function: Function, insensitive: bool, source: &str, part: &str) -> bool {
    if insensitive {
        let (source, part) = (source.to_lowercase(), part.to_lowercase());
        return string_test(function, false, &source, &part);
    }
    match function {
        Function::EndsWith => source.ends_with(part),
        Function::StartsWith => source.starts_with(part),
        _ => source.contains(part),
    }
}

impl Value {
    fn scalar(&self) -> Option<Scalar<'_>> {
        match self {
            Value::Null => None,
            Value::Bool(b) => Some(Scalar::Bool(*b)),
            Value::Number(n) => Some(Scalar::Num(*n)),
            Value::String(s) => Some(Scalar::Str(s)),
        }
    }
}

impl<F: Field> Query<F> {
    /// Whether a record matches. An event query matches when the record's category
    /// fits and the condition is true (not false, not null); a sequence never matches
    /// one record alone.
    pub fn matches(&self, source: &dyn Fields<F>) -> bool {
        match self {
            Query::Event(event) => event.matches(source),
            Query::Sequence(_) => false,
        }
    }

    /// Whether this is a sequence.
    pub fn is_sequence(&self) -> bool {
        matches!(self, Query::Sequence(_))
    }
}

/// At most this many join-key tuples per record and step: a record whose multi-valued
/// keys make more (their cartesian product) joins on the first this many, in value order.
pub const MAX_KEY_TUPLES: usize = 64;

impl<F: Field> Sequence<F> {
    /// The steps in order, `[q] with runs=N` written out as N steps (as Elasticsearch
    /// expands it).
    pub fn expanded(&self) -> Vec<&Step<F>> {
        self.steps
            .iter()
            .flat_map(|s| std::iter::repeat_n(s, s.runs.unwrap_or(1) as usize))
            .collect()
    }

    /// Whether a record matches one of the steps or the `until` step: whether the
    /// sequence's replay needs it.
    pub fn matches_any(&self, source: &dyn Fields<F>) -> bool {
        self.steps
            .iter()
            .chain(&self.until)
            .any(|s| s.query.matches(source))
    }

    /// A record's join keys for `step` (the sequence's keys, then the step's own): one
    /// tuple per combination of their values, as Elasticsearch joins a multi-valued key
    /// on each of its values. A key without a value gives no tuple (a non-optional key
    /// never joins on null); without keys there is one empty tuple. At most
    /// [`MAX_KEY_TUPLES`].
    pub fn join_values(&self, step: &Step<F>, source: &dyn Fields<F>) -> Vec<Vec<String>> {
        let mut tuples: Vec<Vec<String>> = vec![Vec::new()];
        for field in self.by.iter().chain(&step.by) {
            let mut values: Vec<String> = Vec::new();
            source.any_value(field, &mut |v| {
                values.push(v.to_string());
                false
            });
            values.sort_unstable();
            values.dedup();
            let mut next = Vec::new();
            'out: for tuple in &tuples {
                for v in &values {
                    if next.len() == MAX_KEY_TUPLES {
                        break 'out;
                    }
                    let mut t = tuple.clone();
                    t.push(v.clone());
                    next.push(t);
                }
            }
            tuples = next;
        }
        tuples
    }
}

impl<F: Field> EventQuery<F> {
    /// Whether a record is of this query's category and satisfies its condition.
    pub fn matches(&self, source: &dyn Fields<F>) -> bool {
        let category = match &self.category {
            Category::Any => true,
            Category::Named(name) => source.any_value(&self.category_field, &mut |v| v == name),
        };
        category && self.condition.test(source) == Some(true)
    }
}

impl<F: Field> Expr<F> {
    /// The condition's truth for a record: `Some(true)`, `Some(false)`, or `None` (null).
    pub fn test(&self, source: &dyn Fields<F>) -> Option<bool> {
        match self {
            Expr::And(parts) => {
                let mut null = false;
                for part in parts {
                    match part.test(source) {
                        Some(false) => return Some(false),
                        None => null = true,
                        Some(true) => {}
                    }
                }
                (!null).then_some(true)
            }
            Expr::Or(parts) => {
                let mut null = false;
                for part in parts {
                    match part.test(source) {
                        Some(true) => return Some(true),
                        None => null = true,
                        Some(false) => {}
                    }
                }
                (!null).then_some(false)
            }
            Expr::Not(inner) => inner.test(source).map(|b| !b),
            Expr::Compare { left, op, right } => {
                if let (CompareOp::Eq | CompareOp::Ne, Some(other)) = (op, null_side(left, right)) {
                    return Some(other.is_null(source) == (*op == CompareOp::Eq));
                }
                match op {
                    CompareOp::Eq => binary(left, right, source, &mut |a, b| equal(a, b, false)),
                    CompareOp::Ne => {
                        binary(left, right, source, &mut |a, b| equal(a, b, false)).map(|eq| !eq)
                    }
                    op => binary(left, right, source, &mut |a, b| op.holds(a, b)),
                }
            }
            Expr::Matches { value, patterns } => value.any(source, &mut |v| match v {
                Scalar::Str(s) => Some(patterns.is_match(s)),
                _ => None,
            }),
            Expr::In {
                value,
                list,
                insensitive,
                negated,
            } => {
                let found = value.any(source, &mut |v| {
                    let mut any = AnyOf::default();
                    for item in list.iter().filter_map(Value::scalar) {
                        if any.add(equal(v, item, *insensitive)) {
                            break;
                        }
                    }
                    any.result()
                });
                if *negated { found.map(|b| !b) } else { found }
            }
            Expr::Call {
                function,
                insensitive,
                args,
            } => match function {
                Function::EndsWith | Function::StartsWith | Function::StringContains => {
                    binary(&args[0], &args[1], source, &mut |a, b| match (a, b) {
                        (Scalar::Str(a), Scalar::Str(b)) => {
                            Some(string_test(*function, *insensitive, a, b))
                        }
                        _ => None,
                    })
                }
                Function::CidrMatch => {
                    let blocks: Vec<IpBlock> = args[1..]
                        .iter()
                        .filter_map(|a| match a {
                            Expr::Value(Value::String(s)) => parse_ip_block(s.trim()),
                            _ => None,
                        })
                        .collect();
                    args[0].any(source, &mut |v| match v {
                        Scalar::Str(s) => Some(
                            parse_ip(s).is_some_and(|ip| blocks.iter().any(|b| b.contains(ip))),
                        ),
                        _ => None,
                    })
                }
                _ => self.truth_of_values(source),
            },
            Expr::Field { field, .. } if field.value_type() == ValueType::Boolean => {
                self.any(source, &mut |v| match v {
                    Scalar::Bool(b) => Some(b),
                    _ => None,
                })
            }
            Expr::Field { .. } | Expr::Value(_) => self.truth_of_values(source),
        }
    }

    fn truth_of_values(&self, source: &dyn Fields<F>) -> Option<bool> {
        let mut any = AnyOf::default();
        for v in self.values(source) {
            any.add(match v {
                Owned::Bool(b) => Some(b),
                _ => None,
            });
        }
        any.result()
    }

    /// Whether the expression is null for this record.
    fn is_null(&self, source: &dyn Fields<F>) -> bool {
        match self {
            Expr::Field { field, .. } => !source.any_value(field, &mut |_| true),
            other => other.values(source).is_empty(),
        }
    }

    /// A constant operand's value (not null).
    fn constant(&self) -> Option<Scalar<'_>> {
        match self {
            Expr::Value(v) => v.scalar(),
            _ => None,
        }
    }

    /// Three-valued "any value of this expression satisfies `pred`": a field's values
    /// are visited where they lie, without copying.
    fn any(
        &self,
        source: &dyn Fields<F>,
        pred: &mut dyn FnMut(Scalar) -> Option<bool>,
    ) -> Option<bool> {
        let mut any = AnyOf::default();
        match self {
            Expr::Field { field, .. } => {
                let kind = field.value_type();
                source.any_value(field, &mut |text| {
                    typed(kind, text).is_some_and(|v| any.add(pred(v)))
                });
            }
            other => {
                for v in other.values(source) {
                    if any.add(pred(v.get())) {
                        break;
                    }
                }
            }
        }
        any.result()
    }

    /// Every value of the expression (none: null).
    fn values(&self, source: &dyn Fields<F>) -> Vec<Owned> {
        match self {
            Expr::Value(v) => v.scalar().map(Scalar::owned).into_iter().collect(),
            Expr::Field { field, .. } => {
                let kind = field.value_type();
                let mut out = Vec::new();
                source.any_value(field, &mut |text| {
                    out.extend(typed(kind, text).map(Scalar::owned));
                    false
                });
                out
            }
            Expr::Call {
                function,
                insensitive,
                args,
            } if function.is_value() => {
                let lists: Vec<Vec<Owned>> = args.iter().map(|a| a.values(source)).collect();
                let mut out = Vec::new();
                for_each_combination(&lists, &mut Vec::new(), &mut |combo| {
                    out.extend(function.apply(*insensitive, combo));
                });
                out
            }
            condition => condition
                .test(source)
                .map(Owned::Bool)
                .into_iter()
                .collect(),
        }
    }
}

/// The operand of `==`/`!=` compared with the literal `null`, if either side is one.
fn null_side<'a, F>(left: &'a Expr<F>, right: &'a Expr<F>) -> Option<&'a Expr<F>> {
    match (left, right) {
        (_, Expr::Value(Value::Null)) => Some(left),
        (Expr::Value(Value::Null), _) => Some(right),
        _ => None,
    }
}

/// Three-valued "some value of `a` and some value of `b` satisfy `test`"; a field
/// compared with a constant is tested value by value where it lies.
fn binary<F: Field>(
    a: &Expr<F>,
    b: &Expr<F>,
    source: &dyn Fields<F>,
    test: &mut dyn FnMut(Scalar, Scalar) -> Option<bool>,
) -> Option<bool> {
    if let Some(c) = b.constant() {
        return a.any(source, &mut |x| test(x, c));
    }
    if let Some(c) = a.constant() {
        return b.any(source, &mut |y| test(c, y));
    }
    let right = b.values(source);
    if right.is_empty() {
        return None;
    }
    a.any(source, &mut |x| {
        let mut any = AnyOf::default();
        for y in &right {
            if any.add(test(x, y.get())) {
                break;
            }
        }
        any.result()
    })
}

fn for_each_combination<'a>(
    lists: &'a [Vec<Owned>],
    picked: &mut Vec<&'a Owned>,
    visit: &mut dyn FnMut(&[&'a Owned]),
) {
    match lists.split_first() {
        None => visit(picked),
        Some((first, rest)) => {
            for v in first {
                picked.push(v);
                for_each_combination(rest, picked, visit);
                picked.pop();
            }
        }
    }
}

impl Function {
    const ALL: [Function; 9] = [
        Function::Between,
        Function::CidrMatch,
        Function::Concat,
        Function::EndsWith,
        Function::IndexOf,
        Function::Length,
        Function::StartsWith,
        Function::StringContains,
        Function::Substring,
    ];

    /// The name EQL gives the function.
    pub fn name(self) -> &'static str {
        match self {
            Function::Between => "between",
            Function::CidrMatch => "cidrMatch",
            Function::Concat => "concat",
            Function::EndsWith => "endsWith",
            Function::IndexOf => "indexOf",
            Function::Length => "length",
            Function::StartsWith => "startsWith",
            Function::StringContains => "stringContains",
            Function::Substring => "substring",
        }
    }

    /// Whether it has a `~` (case-insensitive) form.
    fn has_insensitive_form(self) -> bool {
        matches!(
            self,
            Function::Between
                | Function::EndsWith
                | Function::IndexOf
                | Function::StartsWith
                | Function::StringContains
        )
    }

    /// How many arguments it takes (least, most).
    fn arity(self) -> (usize, usize) {
        match self {
            Function::Between => (3, 4),
            Function::CidrMatch => (2, usize::MAX),
            Function::Concat => (1, usize::MAX),
            Function::IndexOf | Function::Substring => (2, 3),
            Function::Length => (1, 1),
            Function::EndsWith | Function::StartsWith | Function::StringContains => (2, 2),
        }
    }

    /// Whether it returns a value rather than a truth.
    fn is_value(self) -> bool {
        matches!(
            self,
            Function::Between
                | Function::Concat
                | Function::IndexOf
                | Function::Length
                | Function::Substring
        )
    }

    /// A value function on one combination of its arguments' values (null: `None`).
    fn apply(self, insensitive: bool, args: &[&Owned]) -> Option<Owned> {
        let text = |i: usize| match args.get(i) {
            Some(Owned::Str(s)) => Some(s.as_str()),
            _ => None,
        };
        let int = |i: usize| match args.get(i) {
            Some(Owned::Num(n)) if n.fract() == 0.0 => Some(*n as i64),
            _ => None,
        };
        match self {
            Function::Length => Some(Owned::Num(text(0)?.chars().count() as f64)),
            Function::Concat => {
                let mut out = String::new();
                for arg in args {
                    match arg {
                        Owned::Str(s) => out.push_str(s),
                        Owned::Num(n) => out.push_str(&number_text(*n)),
                        Owned::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
                    }
                }
                Some(Owned::Str(out))
            }
            Function::Substring => {
                let chars: Vec<char> = text(0)?.chars().collect();
                let len = chars.len() as i64;
                // Positions as Python slices read them: negative from the end, clamped.
                let at = |i: i64| (if i < 0 { len + i } else { i }).clamp(0, len) as usize;
                let start = at(int(1)?);
                let end = if args.len() > 2 {
                    at(int(2)?)
                } else {
                    len as usize
                };
                Some(Owned::Str(chars[start..end.max(start)].iter().collect()))
            }
            Function::IndexOf => {
                let (source, part) = (text(0)?, text(1)?);
                let start = if args.len() > 2 {
                    int(2)?.max(0) as usize
                } else {
                    0
                };
                let (source, part) = if insensitive {
                    (source.to_lowercase(), part.to_lowercase())
                } else {
                    (source.to_string(), part.to_string())
                };
                let chars: Vec<char> = source.chars().collect();
                if start > chars.len() {
                    return None;
                }
                let tail: String = chars[start..].iter().collect();
                let found = tail.find(&part)?;
                Some(Owned::Num((start + tail[..found].chars().count()) as f64))
            }
            Function::Between => {
                let (source, left, right) = (text(0)?, text(1)?, text(2)?);
                let greedy = match args.get(3) {
                    Some(Owned::Bool(b)) => *b,
                    Some(_) => return None,
                    None => false,
                };
                Some(Owned::Str(between(
                    source,
                    left,
                    right,
                    greedy,
                    insensitive,
                )))
            }
            Function::CidrMatch
            | Function::EndsWith
            | Function::StartsWith
            | Function::StringContains => None,
        }
    }
}

/// The text between the first `left` and the next (greedy: the last) `right` after it;
/// empty when either is not found, as Elasticsearch answers.
fn between(source: &str, left: &str, right: &str, greedy: bool, insensitive: bool) -> String {
    // Lowercasing may change byte lengths: search on characters.
    let norm = |s: &str| -> Vec<char> {
        if insensitive {
            s.chars()
                .map(|c| c.to_lowercase().next().unwrap_or(c))
                .collect()
        } else {
            s.chars().collect()
        }
    };
    let (hay, l, r) = (norm(source), norm(left), norm(right));
    let find = |from: usize, needle: &[char], last: bool| -> Option<usize> {
        let mut positions = (from..=hay.len().saturating_sub(needle.len()))
            .filter(|&i| i + needle.len() <= hay.len() && hay[i..i + needle.len()] == *needle);
        if last {
            positions.next_back()
        } else {
            positions.next()
        }
    };
    let Some(start) = find(0, &l, false).map(|i| i + l.len()) else {
        return String::new();
    };
    match find(start, &r, greedy) {
        Some(end) => source.chars().skip(start).take(end - start).collect(),
        None => String::new(),
    }
}

/// A number as EQL prints it: whole numbers without a fraction.
fn number_text(n: f64) -> String {
    if n.fract() == 0.0 && n.abs() < 1e15 {
        format!("{}", n as i64)
    } else {
        format!("{n}")
    }
}

// ---------------------------------------------------------------------------------
// Prefilter literals, as the KQL module gives them.

impl<F: Field> Query<F> {
    /// The literal byte strings a matching line must contain (`None`: every line must
    /// be parsed). Values of verbatim keyword fields compared case-sensitively (`==`,
    /// `in`, `like`, `endsWith`…) give literals; a case-insensitive comparison (`:`,
    /// `in~`, `like~`, the `~` functions) gives a caseless one ([`crate::Literal`]: the
    /// longest piece of its value every matching record holds in some ASCII case); a
    /// regular expression the pieces every match holds (caseless for `regex~`); a
    /// conjunction its most selective clause (exact literals before caseless ones), an
    /// `or` the union;
    /// negations none. Where a condition has none, a clause that needs a field's value
    /// gives the field's key ([`Field::key_literal`]). A sequence's lines are each one
    /// of its steps': the union of the steps'.
    pub fn required_literals(&self) -> Option<Vec<String>> {
        match self {
            Query::Event(event) => event.literals(false).or_else(|| event.literals(true)),
            Query::Sequence(seq) => union(seq.steps.iter().chain(&seq.until).map(|step| {
                step.query
                    .literals(false)
                    .or_else(|| step.query.literals(true))
            })),
        }
    }

    /// Literal sets a matching line must hold a literal of each: every clause of an
    /// event query's conjunction gives its own set (clauses on broad values none), as
    /// the KQL module's `required_conjuncts`.
    pub fn required_conjuncts(&self) -> Vec<Vec<String>> {
        match self {
            Query::Event(event) => {
                let mut out: Vec<Vec<String>> = event.category_literals().into_iter().collect();
                out.extend(event.condition.conjuncts());
                out
            }
            Query::Sequence(_) => self.required_literals().into_iter().collect(),
        }
    }

    /// Every field the query reads.
    pub fn fields(&self) -> Vec<&F> {
        let mut out = Vec::new();
        match self {
            Query::Event(event) => event.condition.collect_fields(&mut out),
            Query::Sequence(seq) => {
                out.extend(&seq.by);
                for step in seq.steps.iter().chain(&seq.until) {
                    step.query.condition.collect_fields(&mut out);
                    out.extend(&step.by);
                }
            }
        }
        out
    }
}

impl<F: Field> EventQuery<F> {
    /// The category as a clause `event.category == NAME`, if the field spells it.
    fn category_literals(&self) -> Option<Vec<String>> {
        match &self.category {
            Category::Any => None,
            Category::Named(name) => exact_literals(&self.category_field, name),
        }
    }

    fn literals(&self, keys: bool) -> Option<Vec<String>> {
        let category = self.category_literals().map(|set| (false, true, set));
        let condition = match self.condition.literals(false) {
            Some(set) => Some((self.condition.is_broad(&set), true, set)),
            None if keys => self
                .condition
                .literals(true)
                .map(|set| (self.condition.is_broad(&set), false, set)),
            None => None,
        };
        category
            .into_iter()
            .chain(condition)
            .max_by_key(|(broad, value, set)| (!broad, *value, selectivity(set)))
            .map(|(_, _, set)| set)
    }
}

/// The spellings of a keyword field's exact value, as KQL's exact values give them.
fn exact_literals<F: Field>(field: &F, value: &str) -> Option<Vec<String>> {
    if field.value_type() != ValueType::Keyword || !is_literal_text(value) {
        return None;
    }
    let mut out = Vec::new();
    for form in field.spellings(value)? {
        match form {
            Spelling::Text(t) => out.extend(safe_spellings(&t)?),
            Spelling::Exact(literal) => out.push(literal),
        }
    }
    (!out.is_empty()).then_some(out)
}

/// The longest literal piece of a verbatim field's value containing `pieces`: for a
/// comparison without case, a caseless literal ([`crate::literal::caseless_literal`]).
fn piece_literal<'a>(
    pieces: impl Iterator<Item = &'a str>,
    insensitive: bool,
) -> Option<Vec<String>> {
    pieces
        .filter_map(|p| {
            if insensitive {
                crate::literal::caseless_literal(p)
            } else {
                safe_fragment(p).map(str::to_string)
            }
        })
        .max_by_key(|f| Literal::parse(f).text().len())
        .map(|f| vec![f])
}

impl<F: Field> Expr<F> {
    /// The field this expression is, if it is one.
    fn as_field(&self) -> Option<&F> {
        match self {
            Expr::Field { field, .. } => Some(field),
            _ => None,
        }
    }

    /// Whether this clause's literals `set` are shared by whole classes of records
    /// (see [`Field::is_broad_literal`]), so a poor prefilter.
    fn is_broad(&self, set: &[String]) -> bool {
        let field = match self {
            Expr::Compare { left, right, .. } => left.as_field().or(right.as_field()),
            Expr::Matches { value, .. } | Expr::In { value, .. } => value.as_field(),
            _ => None,
        };
        field.is_some_and(|f| f.is_broad_set(set))
    }

    /// The key literal of the field a clause needs a value of.
    fn key_of(field: Option<&F>, keys: bool) -> Option<Vec<String>> {
        keys.then(|| field?.key_literal().map(|k| vec![k]))?
    }

    fn literals(&self, keys: bool) -> Option<Vec<String>> {
        match self {
            Expr::And(parts) => parts
                .iter()
                .filter_map(|q| match q.literals(false) {
                    Some(set) => Some((q.is_broad(&set), true, set)),
                    None if keys => {
                        let set = q.literals(true)?;
                        Some((q.is_broad(&set), false, set))
                    }
                    None => None,
                })
                .max_by_key(|(broad, value, set)| (!broad, *value, selectivity(set)))
                .map(|(_, _, set)| set),
            Expr::Or(parts) => union(parts.iter().map(|q| q.literals(keys))),
            Expr::Not(_) | Expr::Value(_) => None,
            Expr::Compare { left, op, right } => {
                if null_side(left, right).is_some() {
                    // `x != null` needs a value of x; `x == null` holds without one.
                    return match op {
                        CompareOp::Ne => {
                            Self::key_of(null_side(left, right).and_then(Expr::as_field), keys)
                        }
                        _ => None,
                    };
                }
                let (field, constant) = match (left.as_field(), right.as_field()) {
                    (Some(f), None) => (f, right.constant()),
                    (None, Some(f)) => (f, left.constant()),
                    (Some(f), Some(_)) => return Self::key_of(Some(f), keys),
                    (None, None) => return None,
                };
                let exact = match (op, constant) {
                    (CompareOp::Eq, Some(Scalar::Str(s))) => exact_literals(field, s),
                    _ => None,
                };
                exact.or_else(|| Self::key_of(Some(field), keys))
            }
            Expr::Matches { value, patterns } => {
                let field = value.as_field()?;
                let pieces = match patterns.kind {
                    _ if field.value_type() != ValueType::Keyword || !field.is_verbatim() => None,
                    PatternKind::Regex => union(
                        patterns
                            .texts
                            .iter()
                            .map(|text| crate::literal::regex_literals(text, patterns.insensitive)),
                    ),
                    _ => union(patterns.texts.iter().map(|text| {
                        let wildcard = text.contains(['*', '?']);
                        if !wildcard && !patterns.insensitive {
                            return exact_literals(field, text);
                        }
                        piece_literal(text.split(['*', '?']), patterns.insensitive)
                    })),
                };
                pieces.or_else(|| Self::key_of(Some(field), keys))
            }
            Expr::In {
                value,
                list,
                insensitive,
                negated,
            } => {
                let field = value.as_field()?;
                if *negated {
                    return None;
                }
                let values = union(list.iter().map(|item| match item {
                    Value::String(s) if *insensitive => {
                        if field.value_type() != ValueType::Keyword || !field.is_verbatim() {
                            return None;
                        }
                        piece_literal(std::iter::once(s.as_str()), true)
                    }
                    Value::String(s) => exact_literals(field, s),
                    _ => None,
                }));
                values.or_else(|| Self::key_of(Some(field), keys))
            }
            Expr::Call {
                function,
                insensitive,
                args,
            } => {
                let field = args.first()?.as_field();
                let piece = match (function, field, args.get(1).and_then(Expr::constant)) {
                    (
                        Function::EndsWith | Function::StartsWith | Function::StringContains,
                        Some(f),
                        Some(Scalar::Str(s)),
                    ) if f.value_type() == ValueType::Keyword && f.is_verbatim() => {
                        piece_literal(std::iter::once(s), *insensitive)
                    }
                    _ => None,
                };
                piece.or_else(|| Self::key_of(field, keys))
            }
            Expr::Field { field, .. } => Self::key_of(Some(field), keys),
        }
    }

    fn conjuncts(&self) -> Vec<Vec<String>> {
        match self {
            Expr::And(parts) => parts
                .iter()
                .filter(|q| {
                    let set = q.literals(false).or_else(|| q.literals(true));
                    !set.is_some_and(|set| q.is_broad(&set))
                })
                .flat_map(Expr::conjuncts)
                .collect(),
            other => other
                .literals(false)
                .or_else(|| other.literals(true))
                .into_iter()
                .collect(),
        }
    }

    fn collect_fields<'a>(&'a self, out: &mut Vec<&'a F>) {
        match self {
            Expr::And(parts) | Expr::Or(parts) => parts.iter().for_each(|q| q.collect_fields(out)),
            Expr::Not(inner) => inner.collect_fields(out),
            Expr::Compare { left, right, .. } => {
                left.collect_fields(out);
                right.collect_fields(out);
            }
            Expr::Matches { value, .. } | Expr::In { value, .. } => value.collect_fields(out),
            Expr::Call { args, .. } => args.iter().for_each(|a| a.collect_fields(out)),
            Expr::Field { field, .. } => out.push(field),
            Expr::Value(_) => {}
        }
    }
}

// ---------------------------------------------------------------------------------
// The lexer: tokens with their byte offsets.

#[derive(Clone, Debug, PartialEq)]
enum Token {
    /// A name or keyword; `tilde` when a `~` follows at once (`like~`, `endsWith~`).
    Word {
        text: String,
        tilde: bool,
    },
    /// A backquoted field name.
    Quoted(String),
    Str(String),
    Num(f64),
    /// `30m`: a whole number with a unit glued to it.
    Duration(u64, String),
    Punct(&'static str),
}

const PUNCTS: [&str; 17] = [
    "==", "!=", "<=", ">=", "<", ">", "(", ")", "[", "]", ",", ":", "?", "=", "|", "!", "-",
];

fn lex(text: &str) -> Result<Vec<(usize, Token)>, ParseError> {
    let err = |offset: usize, message: String| ParseError { offset, message };
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        if text[i..].starts_with("//") {
            i = text[i..].find('\n').map_or(bytes.len(), |n| i + n);
            continue;
        }
        if text[i..].starts_with("/*") {
            let Some(end) = text[i + 2..].find("*/") else {
                return Err(err(i, "unterminated /* comment".into()));
            };
            i += 2 + end + 2;
            continue;
        }
        let start = i;
        if text[i..].starts_with("\"\"\"") {
            let Some(end) = text[i + 3..].find("\"\"\"") else {
                return Err(err(i, "unterminated \"\"\" string".into()));
            };
            out.push((start, Token::Str(text[i + 3..i + 3 + end].to_string())));
            i += 3 + end + 3;
            continue;
        }
        match c {
            b'"' => {
                let (s, len) = string_literal(text, i)?;
                out.push((start, Token::Str(s)));
                i += len;
            }
            b'\'' => {
                return Err(err(
                    i,
                    "single-quoted strings are not EQL: use double quotes".into(),
                ));
            }
            b'`' => {
                let mut name = String::new();
                i += 1;
                loop {
                    match text[i..].chars().next() {
                        None => return Err(err(start, "unterminated ` field name".into())),
                        Some('`') if text[i + 1..].starts_with('`') => {
                            name.push('`');
                            i += 2;
                        }
                        Some('`') => {
                            i += 1;
                            break;
                        }
                        Some(c) => {
                            name.push(c);
                            i += c.len_utf8();
                        }
                    }
                }
                if name.is_empty() {
                    return Err(err(start, "empty ` field name".into()));
                }
                out.push((start, Token::Quoted(name)));
            }
            b'0'..=b'9' => {
                let mut end = i;
                while end < bytes.len() && bytes[end].is_ascii_digit() {
                    end += 1;
                }
                let mut float = false;
                if bytes.get(end) == Some(&b'.')
                    && bytes.get(end + 1).is_some_and(u8::is_ascii_digit)
                {
                    float = true;
                    end += 1;
                    while end < bytes.len() && bytes[end].is_ascii_digit() {
                        end += 1;
                    }
                }
                if matches!(bytes.get(end), Some(b'e' | b'E'))
                    && (bytes.get(end + 1).is_some_and(u8::is_ascii_digit)
                        || (matches!(bytes.get(end + 1), Some(b'+' | b'-'))
                            && bytes.get(end + 2).is_some_and(u8::is_ascii_digit)))
                {
                    float = true;
                    end += 2;
                    while end < bytes.len() && bytes[end].is_ascii_digit() {
                        end += 1;
                    }
                }
                let number = &text[i..end];
                let unit_end = end
                    + text[end..]
                        .bytes()
                        .take_while(u8::is_ascii_alphabetic)
                        .count();
                if unit_end > end && !float {
                    let amount = number
                        .parse()
                        .map_err(|_| err(i, format!("{number} is too large")))?;
                    out.push((
                        start,
                        Token::Duration(amount, text[end..unit_end].to_string()),
                    ));
                    i = unit_end;
                    continue;
                }
                let value: f64 = number
                    .parse()
                    .ok()
                    .filter(|n: &f64| n.is_finite())
                    .ok_or_else(|| err(i, format!("{number} is not a finite number")))?;
                out.push((start, Token::Num(value)));
                i = end;
            }
            c if c.is_ascii_alphabetic() || c == b'_' || c == b'@' => {
                let mut end = i;
                while end < bytes.len()
                    && (bytes[end].is_ascii_alphanumeric() || b"_@.".contains(&bytes[end]))
                {
                    end += 1;
                }
                let word = &text[i..end];
                if word.ends_with('.') || word.contains("..") {
                    return Err(err(i, format!("{word:?} is not a field name")));
                }
                let tilde = bytes.get(end) == Some(&b'~');
                out.push((
                    start,
                    Token::Word {
                        text: word.to_string(),
                        tilde,
                    },
                ));
                i = end + usize::from(tilde);
            }
            _ => {
                let Some(p) = PUNCTS.iter().find(|p| text[i..].starts_with(**p)) else {
                    let c = text[i..].chars().next().unwrap_or('?');
                    return Err(err(i, format!("unexpected {c:?}")));
                };
                out.push((start, Token::Punct(p)));
                i += p.len();
            }
        }
    }
    Ok(out)
}

/// A double-quoted string at `at`: its value and its length in the text.
fn string_literal(text: &str, at: usize) -> Result<(String, usize), ParseError> {
    let err = |offset: usize, message: String| ParseError { offset, message };
    let mut out = String::new();
    let mut i = at + 1;
    loop {
        let Some(c) = text[i..].chars().next() else {
            return Err(err(at, "unterminated string".into()));
        };
        match c {
            '"' => return Ok((out, i + 1 - at)),
            '\\' => {
                let next = text[i + 1..].chars().next();
                let ch = match next {
                    Some('"') => '"',
                    Some('\\') => '\\',
                    Some('\'') => '\'',
                    Some('n') => '\n',
                    Some('r') => '\r',
                    Some('t') => '\t',
                    Some('u') if text[i + 2..].starts_with('{') => {
                        let close = text[i + 3..].find('}').map(|n| i + 3 + n);
                        let code = close
                            .map(|close| &text[i + 3..close])
                            .filter(|hex| (1..=8).contains(&hex.len()))
                            .and_then(|hex| u32::from_str_radix(hex, 16).ok())
                            .and_then(char::from_u32);
                        match (code, close) {
                            (Some(ch), Some(close)) => {
                                out.push(ch);
                                i = close + 1;
                                continue;
                            }
                            _ => {
                                return Err(err(
                                    i,
                                    "\\u{…} needs 1 to 8 hex digits of a character".into(),
                                ));
                            }
                        }
                    }
                    _ => {
                        let shown: String = text[i..].chars().take(2).collect();
                        return Err(err(
                            i,
                            format!(
                                "{shown:?} is not an EQL escape (\\\" \\\\ \\' \\n \\r \\t \\u{{HEX}})"
                            ),
                        ));
                    }
                };
                out.push(ch);
                i += 2;
            }
            '\n' | '\r' => {
                return Err(err(
                    i,
                    "a line break in a string (use \\n or \"\"\")".into(),
                ));
            }
            c => {
                out.push(c);
                i += c.len_utf8();
            }
        }
    }
}

// ---------------------------------------------------------------------------------
// The parser: a recursive descent over the tokens.

/// Words that are keywords and so cannot name a field unquoted.
const KEYWORDS: [&str; 18] = [
    "and", "or", "not", "in", "like", "regex", "where", "sequence", "by", "with", "until", "join",
    "sample", "of", "true", "false", "null", "any",
];

struct Parser<'a, F> {
    text: &'a str,
    tokens: Vec<(usize, Token)>,
    pos: usize,
    depth: usize,
    category_field: F,
}

impl<F: Field> Query<F> {
    /// Parses an EQL query text.
    pub fn parse(text: &str) -> Result<Query<F>, ParseError> {
        let mut p = Parser {
            text,
            tokens: lex(text)?,
            pos: 0,
            depth: 0,
            category_field: F::parse("event.category"),
        };
        if p.tokens.is_empty() {
            return Err(ParseError {
                offset: 0,
                message: "empty query".into(),
            });
        }
        let query = if p.keyword("sequence") {
            Query::Sequence(p.sequence()?)
        } else if p.peek_word() == Some("join") || p.peek_word() == Some("sample") {
            return Err(p.error(format!(
                "{} queries are not supported",
                p.peek_word().unwrap_or("")
            )));
        } else {
            Query::Event(p.event_query()?)
        };
        match p.peek() {
            None => Ok(query),
            Some(Token::Punct("|")) => {
                Err(p.error("pipes (| head, | tail, …) are not supported".into()))
            }
            Some(_) => Err(p.error(format!(
                "unexpected {}; expected the end of the query",
                p.shown()
            ))),
        }
    }
}

impl<F: Field> Parser<'_, F> {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos).map(|(_, t)| t)
    }

    fn offset(&self) -> usize {
        self.tokens
            .get(self.pos)
            .map_or(self.text.len(), |(at, _)| *at)
    }

    fn error(&self, message: String) -> ParseError {
        ParseError {
            offset: self.offset(),
            message,
        }
    }

    fn shown(&self) -> String {
        match self.peek() {
            None => "the end".into(),
            Some(Token::Word { text, tilde }) => {
                format!("'{text}{}'", if *tilde { "~" } else { "" })
            }
            Some(Token::Quoted(name)) => format!("`{name}`"),
            Some(Token::Str(s)) => format!("{s:?}"),
            Some(Token::Num(n)) => number_text(*n),
            Some(Token::Duration(n, unit)) => format!("{n}{unit}"),
            Some(Token::Punct(p)) => format!("'{p}'"),
        }
    }

    fn peek_word(&self) -> Option<&str> {
        match self.peek() {
            Some(Token::Word { text, tilde: false }) => Some(text),
            _ => None,
        }
    }

    /// Consumes the keyword `word` (no `~`) if it is next.
    fn keyword(&mut self, word: &str) -> bool {
        if self.peek_word() == Some(word) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn punct(&mut self, p: &str) -> bool {
        if matches!(self.peek(), Some(Token::Punct(q)) if *q == p) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expect_punct(&mut self, p: &str, what: &str) -> Result<(), ParseError> {
        if self.punct(p) {
            Ok(())
        } else {
            Err(self.error(format!("expected '{p}' {what}, found {}", self.shown())))
        }
    }

    fn descend(&mut self) -> Result<(), ParseError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.error(format!("nesting deeper than {MAX_DEPTH} levels")));
        }
        Ok(())
    }

    fn sequence(&mut self) -> Result<Sequence<F>, ParseError> {
        let mut by = Vec::new();
        let mut maxspan = None;
        for _ in 0..2 {
            if by.is_empty() && self.keyword("by") {
                by = self.join_keys()?;
            } else if maxspan.is_none() && self.keyword("with") {
                if !self.keyword("maxspan") {
                    return Err(self.error(format!("expected 'maxspan', found {}", self.shown())));
                }
                self.expect_punct("=", "after maxspan")?;
                maxspan = Some(self.span()?);
            }
        }
        let mut steps = Vec::new();
        while matches!(self.peek(), Some(Token::Punct("[" | "!"))) {
            steps.push(self.step()?);
        }
        // `[q] with runs=N` counts N times, as Elasticsearch expands it.
        let expanded: u32 = steps.iter().map(|s| s.runs.unwrap_or(1)).sum();
        if expanded < 2 {
            return Err(self.error(format!(
                "a sequence needs at least two [ … ] steps, found {}",
                self.shown()
            )));
        }
        let until = if self.keyword("until") {
            Some(self.step()?)
        } else {
            None
        };
        let keys = steps
            .iter()
            .chain(&until)
            .map(|s| s.by.len())
            .collect::<Vec<_>>();
        if keys.iter().any(|&n| n != keys[0]) {
            return Err(self.error(format!(
                "every step of a sequence needs the same number of join keys (found {keys:?})"
            )));
        }
        Ok(Sequence {
            by,
            maxspan,
            steps,
            until,
        })
    }

    fn span(&mut self) -> Result<Span, ParseError> {
        let (amount, unit) = match self.peek() {
            Some(Token::Duration(n, unit)) => (*n, unit.clone()),
            _ => {
                return Err(self.error(format!(
                    "expected a time span such as 30m, found {}",
                    self.shown()
                )));
            }
        };
        let unit = match unit.as_str() {
            "ms" => SpanUnit::Millis,
            "s" => SpanUnit::Seconds,
            "m" => SpanUnit::Minutes,
            "h" => SpanUnit::Hours,
            "d" => SpanUnit::Days,
            other => {
                return Err(self.error(format!("unknown time unit {other:?} (ms, s, m, h, d)")));
            }
        };
        self.pos += 1;
        Ok(Span { amount, unit })
    }

    fn step(&mut self) -> Result<Step<F>, ParseError> {
        if self.punct("!") {
            return Err(ParseError {
                offset: self.offset() - 1,
                message: "missing-event steps (![ … ]) are not supported".into(),
            });
        }
        self.expect_punct("[", "to open a sequence step")?;
        let query = self.event_query()?;
        self.expect_punct("]", "to close the sequence step")?;
        let by = if self.keyword("by") {
            self.join_keys()?
        } else {
            Vec::new()
        };
        let runs = if self.peek_word() == Some("with")
            && matches!(self.tokens.get(self.pos + 1), Some((_, Token::Word { text, .. })) if text == "runs")
        {
            self.pos += 2;
            self.expect_punct("=", "after runs")?;
            match self.peek() {
                Some(Token::Num(n)) if n.fract() == 0.0 && *n >= 1.0 && *n <= 100.0 => {
                    let n = *n as u32;
                    self.pos += 1;
                    Some(n)
                }
                _ => {
                    return Err(self.error(format!(
                        "expected a number of runs (1 to 100), found {}",
                        self.shown()
                    )));
                }
            }
        } else {
            None
        };
        Ok(Step { query, by, runs })
    }

    /// Join keys. An optional key (`?field`), which Elasticsearch lets join on null, is
    /// refused: every key here must have a value.
    fn join_keys(&mut self) -> Result<Vec<F>, ParseError> {
        let mut keys = Vec::new();
        loop {
            let at = self.offset();
            let (field, optional) = self.field_name()?;
            if optional {
                return Err(ParseError {
                    offset: at,
                    message: "optional join keys (?field) are not supported".into(),
                });
            }
            keys.push(field);
            if !self.punct(",") {
                return Ok(keys);
            }
        }
    }

    /// A field name (with `?`: optional).
    fn field_name(&mut self) -> Result<(F, bool), ParseError> {
        let optional = self.punct("?");
        let name = match self.peek() {
            Some(Token::Word { text, tilde: false }) if !KEYWORDS.contains(&text.as_str()) => {
                text.clone()
            }
            Some(Token::Quoted(name)) => name.clone(),
            _ => return Err(self.error(format!("expected a field name, found {}", self.shown()))),
        };
        self.pos += 1;
        Ok((F::parse(&name), optional))
    }

    fn event_query(&mut self) -> Result<EventQuery<F>, ParseError> {
        let category = match self.peek() {
            Some(Token::Word { text, tilde: false }) if text == "any" => Category::Any,
            Some(Token::Word { text, tilde: false }) if !KEYWORDS.contains(&text.as_str()) => {
                Category::Named(text.clone())
            }
            Some(Token::Str(s)) => Category::Named(s.clone()),
            _ => {
                return Err(self.error(format!(
                    "expected an event category (any, web, authentication, …), found {}",
                    self.shown()
                )));
            }
        };
        self.pos += 1;
        if !self.keyword("where") {
            return Err(self.error(format!("expected 'where', found {}", self.shown())));
        }
        let at = self.offset();
        let condition = self.or_expr()?;
        self.boolean(&condition, at)?;
        Ok(EventQuery {
            category,
            condition,
            category_field: self.category_field.clone(),
        })
    }

    /// Refuses an expression that cannot be true or false (a string, a number, a
    /// function giving a value, a field that is not boolean).
    fn boolean(&self, expr: &Expr<F>, at: usize) -> Result<(), ParseError> {
        let what = match expr {
            Expr::Value(Value::String(_)) => "a string",
            Expr::Value(Value::Number(_)) => "a number",
            Expr::Call { function, .. } if function.is_value() => function.name(),
            Expr::Field { field, .. } if field.value_type() != ValueType::Boolean => {
                return Err(ParseError {
                    offset: at,
                    message: format!(
                        "field {} is not boolean: compare it (== != : like in …)",
                        field.name()
                    ),
                });
            }
            _ => return Ok(()),
        };
        Err(ParseError {
            offset: at,
            message: format!("expected a condition, found {what}"),
        })
    }

    fn or_expr(&mut self) -> Result<Expr<F>, ParseError> {
        let mut parts = vec![self.and_expr()?];
        while self.keyword("or") {
            let at = self.offset();
            parts.push(self.and_expr()?);
            self.boolean(&parts[parts.len() - 1], at)?;
        }
        if parts.len() > 1 {
            self.boolean(&parts[0], self.offset())?;
        }
        Ok(one_or(parts, Expr::Or))
    }

    fn and_expr(&mut self) -> Result<Expr<F>, ParseError> {
        let first_at = self.offset();
        let mut parts = vec![self.not_expr()?];
        while self.keyword("and") {
            let at = self.offset();
            parts.push(self.not_expr()?);
            self.boolean(&parts[parts.len() - 1], at)?;
        }
        if parts.len() > 1 {
            self.boolean(&parts[0], first_at)?;
        }
        Ok(one_or(parts, Expr::And))
    }

    fn not_expr(&mut self) -> Result<Expr<F>, ParseError> {
        if self.keyword("not") {
            self.descend()?;
            let at = self.offset();
            let inner = self.not_expr()?;
            self.boolean(&inner, at)?;
            self.depth -= 1;
            return Ok(Expr::Not(Box::new(inner)));
        }
        self.predicate()
    }

    fn predicate(&mut self) -> Result<Expr<F>, ParseError> {
        let value = self.operand()?;
        let op = match self.peek() {
            Some(Token::Punct(p)) => match *p {
                "==" => Some(CompareOp::Eq),
                "!=" => Some(CompareOp::Ne),
                "<" => Some(CompareOp::Lt),
                "<=" => Some(CompareOp::Lte),
                ">" => Some(CompareOp::Gt),
                ">=" => Some(CompareOp::Gte),
                "=" => return Err(self.error("'=' is not an EQL operator: use '==' or ':'".into())),
                ":" => {
                    self.pos += 1;
                    let patterns = self.patterns(PatternKind::Colon, true)?;
                    return Ok(Expr::Matches {
                        value: Box::new(value),
                        patterns,
                    });
                }
                _ => None,
            },
            _ => None,
        };
        if let Some(op) = op {
            self.pos += 1;
            let right = self.operand()?;
            return Ok(Expr::Compare {
                left: Box::new(value),
                op,
                right: Box::new(right),
            });
        }
        let (word, tilde) = match self.peek() {
            Some(Token::Word { text, tilde }) => (text.clone(), *tilde),
            _ => return Ok(value),
        };
        let kind = match word.as_str() {
            "like" => PatternKind::Like,
            "regex" => PatternKind::Regex,
            "in" => {
                self.pos += 1;
                return self.in_list(value, tilde, false);
            }
            "not" if matches!(self.tokens.get(self.pos + 1), Some((_, Token::Word { text, .. })) if text == "in") =>
            {
                let tilde = matches!(
                    self.tokens.get(self.pos + 1),
                    Some((_, Token::Word { tilde: true, .. }))
                );
                self.pos += 2;
                return self.in_list(value, tilde, true);
            }
            _ => return Ok(value),
        };
        self.pos += 1;
        let patterns = self.patterns(kind, tilde)?;
        Ok(Expr::Matches {
            value: Box::new(value),
            patterns,
        })
    }

    /// One string or a parenthesised list of strings.
    fn patterns(&mut self, kind: PatternKind, insensitive: bool) -> Result<Patterns, ParseError> {
        let at = self.offset();
        let mut texts = Vec::new();
        let list = self.punct("(");
        loop {
            match self.peek() {
                Some(Token::Str(s)) => texts.push(s.clone()),
                _ => {
                    return Err(
                        self.error(format!("expected a string pattern, found {}", self.shown()))
                    );
                }
            }
            self.pos += 1;
            if !list || !self.punct(",") {
                break;
            }
        }
        if list {
            self.expect_punct(")", "to close the list of patterns")?;
        }
        Patterns::new(kind, insensitive, texts).map_err(|e| ParseError {
            offset: at,
            message: format!("bad regular expression: {e}"),
        })
    }

    fn in_list(
        &mut self,
        value: Expr<F>,
        insensitive: bool,
        negated: bool,
    ) -> Result<Expr<F>, ParseError> {
        self.expect_punct("(", "to open the list after 'in'")?;
        let mut list = Vec::new();
        loop {
            let at = self.offset();
            match self.operand()? {
                Expr::Value(v) => list.push(v),
                _ => {
                    return Err(ParseError {
                        offset: at,
                        message: "an 'in' list holds constants only".into(),
                    });
                }
            }
            if !self.punct(",") {
                break;
            }
        }
        self.expect_punct(")", "to close the 'in' list")?;
        Ok(Expr::In {
            value: Box::new(value),
            list,
            insensitive,
            negated,
        })
    }

    fn operand(&mut self) -> Result<Expr<F>, ParseError> {
        let token = self.peek().cloned();
        match token {
            Some(Token::Punct("(")) => {
                self.descend()?;
                self.pos += 1;
                let inner = self.or_expr()?;
                self.expect_punct(")", "to close the group")?;
                self.depth -= 1;
                Ok(inner)
            }
            Some(Token::Punct("-")) => {
                self.pos += 1;
                match self.peek() {
                    Some(Token::Num(n)) => {
                        let n = -*n;
                        self.pos += 1;
                        Ok(Expr::Value(Value::Number(n)))
                    }
                    _ => {
                        Err(self
                            .error("arithmetic is not supported: '-' only before a number".into()))
                    }
                }
            }
            Some(Token::Num(n)) => {
                self.pos += 1;
                Ok(Expr::Value(Value::Number(n)))
            }
            Some(Token::Str(s)) => {
                self.pos += 1;
                Ok(Expr::Value(Value::String(s)))
            }
            Some(Token::Word { text, tilde }) => {
                let call = matches!(self.tokens.get(self.pos + 1), Some((_, Token::Punct("("))));
                if call {
                    return self.call(&text, tilde);
                }
                if tilde {
                    return Err(self.error(format!("unexpected '~' after {text:?}")));
                }
                let value = match text.as_str() {
                    "null" => Some(Value::Null),
                    "true" => Some(Value::Bool(true)),
                    "false" => Some(Value::Bool(false)),
                    _ => None,
                };
                if let Some(value) = value {
                    self.pos += 1;
                    return Ok(Expr::Value(value));
                }
                self.field_operand()
            }
            Some(Token::Punct("?")) | Some(Token::Quoted(_)) => self.field_operand(),
            _ => Err(self.error(format!(
                "expected a value, a field or a function, found {}",
                self.shown()
            ))),
        }
    }

    fn field_operand(&mut self) -> Result<Expr<F>, ParseError> {
        let (field, optional) = self.field_name()?;
        if matches!(self.peek(), Some(Token::Punct("["))) {
            return Err(self.error("array indexes (field[0]) are not supported".into()));
        }
        Ok(Expr::Field { field, optional })
    }

    fn call(&mut self, name: &str, tilde: bool) -> Result<Expr<F>, ParseError> {
        let at = self.offset();
        let Some(function) = Function::ALL
            .into_iter()
            .find(|f| f.name().eq_ignore_ascii_case(name))
        else {
            return Err(self.error(format!(
                "unknown function {name:?} (supported: {})",
                Function::ALL.map(Function::name).join(", ")
            )));
        };
        if tilde && !function.has_insensitive_form() {
            return Err(self.error(format!("{} has no ~ form", function.name())));
        }
        self.pos += 2; // the name and '('
        self.descend()?;
        let mut args = Vec::new();
        if !self.punct(")") {
            loop {
                args.push(self.or_expr()?);
                if !self.punct(",") {
                    break;
                }
            }
            self.expect_punct(")", "to close the arguments")?;
        }
        self.depth -= 1;
        let (least, most) = function.arity();
        if args.len() < least || args.len() > most {
            return Err(ParseError {
                offset: at,
                message: format!(
                    "{} takes {least}{} arguments, found {}",
                    function.name(),
                    if most == usize::MAX {
                        " or more".to_string()
                    } else if most > least {
                        format!(" to {most}")
                    } else {
                        String::new()
                    },
                    args.len()
                ),
            });
        }
        if function == Function::CidrMatch {
            for arg in &args[1..] {
                match arg {
                    Expr::Value(Value::String(s)) if parse_ip_block(s.trim()).is_some() => {}
                    _ => {
                        return Err(ParseError {
                            offset: at,
                            message: "cidrMatch's blocks must be strings such as \"10.0.0.0/8\""
                                .into(),
                        });
                    }
                }
            }
        }
        if function == Function::Between
            && args.len() == 4
            && !matches!(args[3], Expr::Value(Value::Bool(_)))
        {
            return Err(ParseError {
                offset: at,
                message: "between's greedy argument must be true or false".into(),
            });
        }
        Ok(Expr::Call {
            function,
            insensitive: tilde,
            args,
        })
    }
}

fn one_or<T>(mut parts: Vec<T>, join: fn(Vec<T>) -> T) -> T {
    if parts.len() == 1 {
        // Checked just above: one element.
        parts.pop().expect("one part")
    } else {
        join(parts)
    }
}

// ---------------------------------------------------------------------------------
// Printing: EQL text that parses back to the same query.

impl<F: Field> fmt::Display for Query<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Query::Event(event) => write!(f, "{event}"),
            Query::Sequence(seq) => {
                f.write_str("sequence")?;
                if !seq.by.is_empty() {
                    f.write_str(" by ")?;
                    write_keys(f, &seq.by)?;
                }
                if let Some(span) = seq.maxspan {
                    write!(f, " with maxspan={span}")?;
                }
                for step in &seq.steps {
                    write!(f, " {step}")?;
                }
                if let Some(until) = &seq.until {
                    write!(f, " until {until}")?;
                }
                Ok(())
            }
        }
    }
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unit = match self.unit {
            SpanUnit::Millis => "ms",
            SpanUnit::Seconds => "s",
            SpanUnit::Minutes => "m",
            SpanUnit::Hours => "h",
            SpanUnit::Days => "d",
        };
        write!(f, "{}{unit}", self.amount)
    }
}

impl<F: Field> fmt::Display for Step<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}]", self.query)?;
        if !self.by.is_empty() {
            f.write_str(" by ")?;
            write_keys(f, &self.by)?;
        }
        if let Some(runs) = self.runs {
            write!(f, " with runs={runs}")?;
        }
        Ok(())
    }
}

fn write_keys<F: Field>(f: &mut fmt::Formatter<'_>, keys: &[F]) -> fmt::Result {
    for (i, key) in keys.iter().enumerate() {
        if i > 0 {
            f.write_str(", ")?;
        }
        write_field(f, key, false)?;
    }
    Ok(())
}

impl<F: Field> fmt::Display for EventQuery<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.category {
            Category::Any => f.write_str("any")?,
            Category::Named(name) if plain_name(name) && !name.contains('.') => {
                f.write_str(name)?
            }
            Category::Named(name) => write_string(f, name)?,
        }
        write!(f, " where {}", self.condition)
    }
}

impl<F: Field> fmt::Display for Expr<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write(f, 0)
    }
}

impl<F: Field> Expr<F> {
    /// Binding strength: `or` 1, `and` 2, `not` 3, predicates 4, operands 5.
    fn precedence(&self) -> u8 {
        match self {
            Expr::Or(_) => 1,
            Expr::And(_) => 2,
            Expr::Not(_) => 3,
            Expr::Compare { .. } | Expr::Matches { .. } | Expr::In { .. } => 4,
            Expr::Call { .. } | Expr::Field { .. } | Expr::Value(_) => 5,
        }
    }

    /// Writes the expression, in parentheses if it binds looser than `min`.
    fn write(&self, f: &mut fmt::Formatter<'_>, min: u8) -> fmt::Result {
        if self.precedence() < min {
            f.write_str("(")?;
            self.write(f, 0)?;
            return f.write_str(")");
        }
        match self {
            Expr::And(parts) | Expr::Or(parts) => {
                let (joiner, inner) = match self {
                    Expr::And(_) => (" and ", 3),
                    _ => (" or ", 2),
                };
                for (i, part) in parts.iter().enumerate() {
                    if i > 0 {
                        f.write_str(joiner)?;
                    }
                    part.write(f, inner)?;
                }
                Ok(())
            }
            Expr::Not(inner) => {
                f.write_str("not ")?;
                inner.write(f, 3)
            }
            Expr::Compare { left, op, right } => {
                left.write(f, 5)?;
                write!(f, " {} ", op.symbol())?;
                right.write(f, 5)
            }
            Expr::Matches { value, patterns } => {
                value.write(f, 5)?;
                let tilde = if patterns.insensitive { "~" } else { "" };
                match patterns.kind {
                    PatternKind::Colon => f.write_str(" : ")?,
                    PatternKind::Like => write!(f, " like{tilde} ")?,
                    PatternKind::Regex => write!(f, " regex{tilde} ")?,
                }
                write_list(f, &patterns.texts, write_string)
            }
            Expr::In {
                value,
                list,
                insensitive,
                negated,
            } => {
                value.write(f, 5)?;
                f.write_str(if *negated { " not in" } else { " in" })?;
                f.write_str(if *insensitive { "~ (" } else { " (" })?;
                for (i, v) in list.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{v}")?;
                }
                f.write_str(")")
            }
            Expr::Call {
                function,
                insensitive,
                args,
            } => {
                f.write_str(function.name())?;
                if *insensitive {
                    f.write_str("~")?;
                }
                f.write_str("(")?;
                for (i, arg) in args.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    arg.write(f, 0)?;
                }
                f.write_str(")")
            }
            Expr::Field { field, optional } => write_field(f, field, *optional),
            Expr::Value(v) => write!(f, "{v}"),
        }
    }
}

fn write_list(
    f: &mut fmt::Formatter<'_>,
    texts: &[String],
    item: impl Fn(&mut fmt::Formatter<'_>, &str) -> fmt::Result,
) -> fmt::Result {
    if let [one] = texts {
        return item(f, one);
    }
    f.write_str("(")?;
    for (i, t) in texts.iter().enumerate() {
        if i > 0 {
            f.write_str(", ")?;
        }
        item(f, t)?;
    }
    f.write_str(")")
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Null => f.write_str("null"),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Number(n) if *n < 0.0 => write!(f, "-{}", number_text(-n)),
            Value::Number(n) => f.write_str(&number_text(*n)),
            Value::String(s) => write_string(f, s),
        }
    }
}

/// Whether a name reads back unquoted as a field (not a keyword, name characters only).
fn plain_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_' || b == b'@')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_@.".contains(&b))
        && !name.ends_with('.')
        && !name.contains("..")
        && !KEYWORDS.contains(&name)
}

fn write_field<F: Field>(f: &mut fmt::Formatter<'_>, field: &F, optional: bool) -> fmt::Result {
    if optional {
        f.write_str("?")?;
    }
    let name = field.name();
    if plain_name(&name) {
        f.write_str(&name)
    } else {
        write!(f, "`{}`", name.replace('`', "``"))
    }
}

fn write_string(f: &mut fmt::Formatter<'_>, text: &str) -> fmt::Result {
    f.write_str("\"")?;
    for c in text.chars() {
        match c {
            '"' => f.write_str("\\\"")?,
            '\\' => f.write_str("\\\\")?,
            '\n' => f.write_str("\\n")?,
            '\r' => f.write_str("\\r")?,
            '\t' => f.write_str("\\t")?,
            c if c.is_control() => write!(f, "\\u{{{:X}}}", u32::from(c))?,
            c => write!(f, "{c}")?,
        }
    }
    f.write_str("\"")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Named;
    use std::collections::HashMap;

    /// A wildcard list is compiled when first matched, and matches as the list compiled
    /// at once does; a regular expression is compiled as it is parsed, so a bad one is
    /// still the query's error.
    #[test]
    fn wildcards_compile_on_first_use_and_bad_regexes_fail_the_parse() {
        let texts: Vec<String> = ["*password*", "*api key*", "a?c", "*1099*", "k*ſ", "x.y+(z)"]
            .iter()
            .map(|t| t.to_string())
            .collect();
        for kind in [PatternKind::Colon, PatternKind::Like] {
            for insensitive in [false, true] {
                let lazy = Patterns::new(kind, insensitive, texts.clone()).unwrap();
                assert!(!lazy.is_compiled());
                let eager = compile_patterns(&lazy.source).unwrap();
                let copy = lazy.clone();
                for value in [
                    "my PASSWORD is",
                    "password",
                    "api key",
                    "abc",
                    "a\nc",
                    "a\u{212a}c",
                    "KELVIN \u{212a} ſ",
                    "\u{212a}xs",
                    "x.y+(z)",
                    "xay+(z)",
                    "",
                    "form 1099-MISC",
                ] {
                    assert_eq!(lazy.is_match(value), eager.is_match(value), "{value:?}");
                }
                // The clones share the compiled matcher.
                assert!(copy.is_compiled());
            }
        }
        let re =
            Patterns::new(PatternKind::Regex, true, vec!["(azure|sharp)hound".into()]).unwrap();
        assert!(re.is_compiled());
        for bad in ["(azure", "a{2,1}", "[z-a]"] {
            let text = format!("any where user_agent.original regex~ \"{bad}\"");
            let err = Query::<Named>::parse(&text).unwrap_err();
            assert!(
                err.message.starts_with("bad regular expression: "),
                "{bad}: {err}"
            );
        }
    }

    /// The costliest wildcard lists compiled on first use (the longest source made of
    /// any-character wildcards, of case-folded letters, of many alternatives) compile
    /// within a quarter of the size limit: compiling one later cannot fail.
    #[test]
    fn the_largest_lazy_wildcard_lists_compile_well_within_the_size_limit() {
        let fill = |unit: &str, per_text: usize| -> Vec<String> {
            let mut texts = Vec::new();
            loop {
                texts.push(unit.repeat(per_text));
                let p = Patterns::new(PatternKind::Like, true, texts.clone()).unwrap();
                if p.source.len() > LAZY_SOURCE {
                    texts.pop();
                    return texts;
                }
            }
        };
        for (unit, per_text) in [
            ("?", 64),
            ("k", 64),
            ("?k", 32),
            ("*", 1),
            ("ǅ", 32),
            ("ſ?", 8),
        ] {
            let texts = fill(unit, per_text);
            let p = Patterns::new(PatternKind::Like, true, texts).unwrap();
            assert!(!p.is_compiled(), "{unit}");
            assert!(p.source.len() > LAZY_SOURCE - 8 * per_text - 64, "{unit}");
            let small = regex::RegexBuilder::new(&p.source)
                .size_limit(PATTERN_SIZE_LIMIT / 4)
                .build();
            assert!(small.is_ok(), "{unit}: {:?}", small.err());
            assert!(p.is_match(&unit.replace(['?', '*'], "x").repeat(per_text)) || unit == "*");
        }
    }

    /// A schema for the tests: `event.dataset` computed (no literal), `event.provider`
    /// broad (but `OneDrive`), `n*` numeric.
    #[derive(Clone, Debug, PartialEq)]
    struct Ecs(String);

    impl Field for Ecs {
        fn parse(name: &str) -> Ecs {
            Ecs(name.to_string())
        }

        fn name(&self) -> String {
            self.0.clone()
        }

        fn value_type(&self) -> ValueType {
            if self.0.starts_with('n') {
                ValueType::Number
            } else {
                ValueType::Keyword
            }
        }

        fn is_verbatim(&self) -> bool {
            !matches!(self.0.as_str(), "event.dataset" | "event.category")
        }

        fn spellings(&self, value: &str) -> Option<Vec<Spelling>> {
            self.is_verbatim()
                .then(|| vec![Spelling::Text(value.to_string())])
        }

        fn key_literal(&self) -> Option<String> {
            Some(format!("\"{}\"", self.0))
        }

        fn is_broad_literal(&self, literal: &str) -> bool {
            self.0 == "event.provider" && literal != "OneDrive"
        }
    }

    struct Fake(HashMap<String, Vec<String>>);

    fn record(pairs: &[(&str, &str)]) -> Fake {
        let mut map: HashMap<String, Vec<String>> = HashMap::new();
        for (k, v) in pairs {
            map.entry(k.to_string()).or_default().push(v.to_string());
        }
        Fake(map)
    }

    impl<F: Field> Fields<F> for Fake {
        fn any_value(&self, field: &F, pred: &mut dyn FnMut(&str) -> bool) -> bool {
            self.0
                .get(&field.name())
                .is_some_and(|vs| vs.iter().any(|v| pred(v)))
        }
    }

    fn q(text: &str) -> Query<Ecs> {
        Query::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    /// The published EQL rules of the corpus beside the repository, if it is there.
    fn corpus_queries() -> Vec<(String, String)> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../../shared/corpus/elastic-rules");
        let Ok(entries) = std::fs::read_dir(&dir) else {
            // Written to the process's stderr, not the harness's captured output, so that
            // every run shows it; CI (UALHUNT_TESTS_STRICT=1) fails instead.
            assert_ne!(
                std::env::var("UALHUNT_TESTS_STRICT").as_deref(),
                Ok("1"),
                "{} is absent",
                dir.display()
            );
            use std::io::Write;
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED published EQL rules: {} is absent",
                dir.display()
            );
            return Vec::new();
        };
        let mut out = Vec::new();
        for entry in entries.flatten() {
            let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
            if !text.contains("language = \"eql\"") {
                continue;
            }
            let Some(start) = text.find("query = '''") else {
                continue;
            };
            let body = &text[start + 11..];
            let query = &body[..body.find("'''").unwrap_or(body.len())];
            out.push((
                entry.file_name().to_string_lossy().into_owned(),
                query.to_string(),
            ));
        }
        out.sort();
        out
    }

    #[test]
    fn the_corpus_eql_rules_parse_and_print_back() {
        let queries = corpus_queries();
        if queries.is_empty() {
            return;
        }
        assert_eq!(queries.len(), 5);
        let sequences = queries
            .iter()
            .filter(|(name, text)| {
                let parsed = Query::<Ecs>::parse(text).unwrap_or_else(|e| panic!("{name}: {e}"));
                let printed = parsed.to_string();
                assert_eq!(
                    Query::<Ecs>::parse(&printed).as_ref(),
                    Ok(&parsed),
                    "{printed}"
                );
                parsed.is_sequence()
            })
            .count();
        assert_eq!(sequences, 1);
    }

    #[test]
    fn inbox_forwarding_rule_compares_two_fields() {
        let rule = q("web where event.provider == \"Exchange\" and \
            event.action in (\"New-InboxRule\", \"Set-Mailbox\") and \
            (?o365.audit.Parameters.ForwardTo != null and \
             not endsWith~(?o365.audit.Parameters.ForwardTo, user.domain))");
        let base = [
            ("event.category", "web"),
            ("event.provider", "Exchange"),
            ("event.action", "New-InboxRule"),
            ("user.domain", "contoso.com"),
        ];
        let with = |to: &str| {
            let mut pairs = base.to_vec();
            pairs.push(("o365.audit.Parameters.ForwardTo", to));
            record(&pairs)
        };
        assert!(rule.matches(&with("eve@gmail.com")));
        assert!(!rule.matches(&with("bob@CONTOSO.COM")));
        // No forwarding parameter: the condition is false, not a match.
        assert!(!rule.matches(&record(&base)));
        // No user.domain: endsWith~ is null, so is its negation: no match.
        let mut pairs = base[..3].to_vec();
        pairs.push(("o365.audit.Parameters.ForwardTo", "eve@gmail.com"));
        assert!(!rule.matches(&record(&pairs)));
        // Another category.
        let mut pairs = base.to_vec();
        pairs[0] = ("event.category", "iam");
        pairs.push(("o365.audit.Parameters.ForwardTo", "eve@gmail.com"));
        assert!(!rule.matches(&record(&pairs)));
    }

    #[test]
    fn a_category_matches_any_of_the_events_categories() {
        let query = q("authentication where true");
        assert!(query.matches(&record(&[
            ("event.category", "web"),
            ("event.category", "authentication")
        ])));
        assert!(!query.matches(&record(&[("event.category", "web")])));
        assert!(q("any where true").matches(&record(&[])));
    }

    #[test]
    fn equality_is_case_sensitive_and_colon_is_not() {
        let r = record(&[("a", "Hello")]);
        assert!(!q("any where a == \"hello\"").matches(&r));
        assert!(q("any where a : \"hello\"").matches(&r));
        assert!(q("any where a : \"h?LL*\"").matches(&r));
        assert!(!q("any where a like \"h*\"").matches(&r));
        assert!(q("any where a like~ \"h*\"").matches(&r));
        assert!(!q("any where a in (\"hello\")").matches(&r));
        assert!(q("any where a in~ (\"hello\")").matches(&r));
        assert!(q("any where a regex \"H.l+o\"").matches(&r));
        assert!(
            !q("any where a regex \"H.l\"").matches(&r),
            "regex must match the whole value"
        );
    }

    #[test]
    fn nulls_propagate_and_never_match() {
        let r = record(&[("a", "x")]);
        assert!(!q("any where ?b == \"y\"").matches(&r));
        assert!(!q("any where not ?b == \"y\"").matches(&r));
        assert!(!q("any where ?b != \"y\"").matches(&r));
        assert!(q("any where ?b == null and a != null").matches(&r));
        assert!(q("any where a == \"x\" or ?b == \"y\"").matches(&r));
        assert!(!q("any where not (a == \"z\" or ?b == \"y\")").matches(&r));
        assert!(!q("any where not startsWith(?b, \"y\")").matches(&r));
    }

    #[test]
    fn arrays_match_when_any_value_does_and_not_equal_when_none_does() {
        let r = record(&[("a", "x"), ("a", "y")]);
        assert!(q("any where a == \"y\"").matches(&r));
        assert!(!q("any where a != \"y\"").matches(&r));
        assert!(q("any where a != \"z\"").matches(&r));
        assert!(!q("any where a not in (\"x\", \"q\")").matches(&r));
    }

    #[test]
    fn functions_compute_values() {
        let r = record(&[
            ("a", "C:\\Windows\\cmd.exe"),
            ("n", "7"),
            ("ip", "10.2.3.4"),
        ]);
        assert!(q("any where length(a) == 18").matches(&r));
        assert!(q("any where substring(a, -7) == \"cmd.exe\"").matches(&r));
        assert!(q("any where indexOf(a, \"cmd\") == 11").matches(&r));
        assert!(q("any where between~(a, \"windows\\\\\", \".EXE\") == \"cmd\"").matches(&r));
        assert!(q("any where concat(a, \"|\", n) == \"C:\\\\Windows\\\\cmd.exe|7\"").matches(&r));
        assert!(q("any where cidrMatch(ip, \"10.0.0.0/8\")").matches(&r));
        assert!(!q("any where cidrMatch(ip, \"10.3.0.0/16\")").matches(&r));
        assert!(q("any where n > 6.5 and n < 8").matches(&r));
    }

    #[test]
    fn literals_follow_case_sensitivity() {
        let literals = |text: &str| q(text).required_literals();
        assert_eq!(
            literals(
                "any where event.action in (\"SoftDelete\", \"HardDelete\") and s like~ \"*mfa*\""
            ),
            Some(vec!["HardDelete".into(), "SoftDelete".into()])
        );
        // Case-insensitive values give caseless literals (exact when they have no
        // letter), cut before `s` and `k`, which fold to non-ASCII letters too.
        assert_eq!(
            literals("any where s : \"*1099*\""),
            Some(vec!["1099".into()])
        );
        assert_eq!(
            literals("any where s : \"abc\""),
            Some(vec![Literal::any_case("abc")])
        );
        assert_eq!(
            literals("any where s in~ (\"Kali365\", \"azurehound\")"),
            Some(vec![
                Literal::any_case("ali365"),
                Literal::any_case("azurehound")
            ])
        );
        assert_eq!(
            literals("any where s regex~ \"(azure|blood)hound/.*\""),
            Some(vec![
                Literal::any_case("azurehound"),
                Literal::any_case("bloodhound")
            ])
        );
        assert_eq!(
            literals("any where s regex \".*Mimi[k]atz.*\""),
            Some(vec!["Mimikatz".into()])
        );
        assert_eq!(
            literals("any where s regex~ \"[a-z]+\""),
            Some(vec!["\"s\"".into()])
        );
        assert_eq!(
            literals("any where a like \"*Invoke-*\""),
            Some(vec!["Invoke-".into()])
        );
        assert_eq!(
            literals("any where endsWith(a, \"@gmail.com\")"),
            Some(vec!["@gmail.com".into()])
        );
        // Or: the union; a branch without literals: none.
        assert_eq!(
            literals("any where a == \"Alpha\" or b == \"Beta\""),
            Some(vec!["Alpha".into(), "Beta".into()])
        );
        // Negations give none; a computed field gives none, so the key of another.
        assert_eq!(literals("any where not a == \"Alpha\""), None);
        assert_eq!(
            literals(
                "web where event.dataset == \"o365.audit\" and event.provider == \"Exchange\""
            ),
            Some(vec!["Exchange".into()])
        );
        assert_eq!(
            q("any where event.provider == \"Exchange\" and a == \"Set-Mailbox\"")
                .required_conjuncts(),
            vec![vec!["Set-Mailbox".to_string()]]
        );
        // A workload that is no broad class is a conjunct.
        assert_eq!(
            q("any where event.provider == \"OneDrive\" and a == \"FileDownloaded\"")
                .required_conjuncts(),
            vec![
                vec!["OneDrive".to_string()],
                vec!["FileDownloaded".to_string()]
            ]
        );
    }

    #[test]
    fn a_sequence_refuses_steps_with_unequal_keys_and_optional_keys() {
        let unequal = "sequence [any where a == \"x\"] by c [any where b == \"y\"]";
        assert!(Query::<Ecs>::parse(unequal).is_err());
        let optional = "sequence by ?c [any where a == \"x\"] [any where b == \"y\"]";
        let e = Query::<Ecs>::parse(optional).unwrap_err();
        assert!(e.message.contains("optional join keys"), "{e}");
        // One step run twice is a sequence of two.
        assert!(Query::<Ecs>::parse("sequence [any where a == \"x\"] with runs=2").is_ok());
        assert!(Query::<Ecs>::parse("sequence [any where a == \"x\"]").is_err());
    }

    #[test]
    fn a_sequence_parses_with_its_keys_span_and_until() {
        let text = "sequence by user.id with maxspan=30m \
            [authentication where a == \"x\"] by e [web where b : \"y\"] by c with runs=2 \
            until [any where d == \"z\"] by f";
        let Query::Sequence(seq) = q(text) else {
            panic!("not a sequence");
        };
        assert_eq!(seq.by, vec![Ecs::parse("user.id")]);
        assert_eq!(seq.maxspan.map(|s| s.millis()), Some(1_800_000));
        assert_eq!(seq.steps.len(), 2);
        assert_eq!(seq.steps[1].by, vec![Ecs::parse("c")]);
        assert_eq!(seq.steps[1].runs, Some(2));
        assert!(seq.until.is_some());
        let query = q(text);
        assert_eq!(q(&query.to_string()), query);
        assert!(!query.matches(&record(&[("a", "x")])));
        assert_eq!(
            query.required_literals(),
            Some(vec!["x".into(), "z".into(), "\"b\"".into()]).map(|mut v: Vec<String>| {
                v.sort();
                v
            })
        );
    }

    #[test]
    fn printing_parses_back_to_the_same_query() {
        for text in [
            "any where a == \"q\\\"uote\\\\\" and not (b : (\"x*\", \"y?\") or c like~ \"z\")",
            "web where ?`odd name` != null and n >= -2.5 and `and` in~ (\"a\", 1, true, null)",
            "\"my category\" where not not startsWith~(a, b) and length(c) > 3",
            "any where a regex~ \"(azure|blood)hound/.*\" and x not in (\"1\")",
            "any where \"\"\"raw \\ string\"\"\" == a // comment\n and /* c */ true",
            "any where (a == \"1\" or b == \"2\") and (c == \"3\" or d == \"4\")",
        ] {
            let query = Query::<Named>::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            let printed = query.to_string();
            assert_eq!(
                Query::<Named>::parse(&printed),
                Ok(query),
                "{text} -> {printed}"
            );
        }
    }

    #[test]
    fn syntax_errors_name_the_offset() {
        let error = |text: &str| Query::<Ecs>::parse(text).expect_err(text);
        assert_eq!(error("any where a = \"x\"").offset, 12);
        assert_eq!(error("any where a == 'x'").offset, 15);
        assert_eq!(error("web a == \"x\"").offset, 4);
        assert_eq!(error("any where a == \"x\" | head 5").offset, 19);
        assert_eq!(error("any where nosuch(a)").offset, 10);
        assert_eq!(error("any where a").offset, 10);
        assert_eq!(error("any where length(a)").offset, 10);
        assert_eq!(error("any where a : (\"x\"").offset, 18);
        assert_eq!(error("any where a regex \"(\"").offset, 18);
        assert_eq!(error("sequence [any where true]").offset, 25);
        assert_eq!(error("any where a == \"\\q\"").offset, 16);
        let deep = format!("any where {}a == \"x\"{}", "(".repeat(70), ")".repeat(70));
        assert!(error(&deep).message.contains("nesting"));
    }
}
