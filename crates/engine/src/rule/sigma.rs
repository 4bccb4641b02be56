//! Sigma rules in a rule pack: YAML documents made into rules beside Elastic's.
//!
//! Place in the flow: `load` hands each `.yml`/`.yaml` file's text to [`load_text`];
//! every document becomes a [`Rule`] whose query is a [`SigmaQuery`] (the detection over
//! the fields the field mapping names, ANDed with the records its log source sees), or a
//! [`NotRun`] with the reason; an `event_count` or `value_count` correlation of detection
//! rules becomes a rule over the rules it counts with a threshold (`Alerting`, its
//! condition's bounds included) that the alerting analysis replays; a `temporal` or
//! `temporal_ordered` one, a metric one (`value_sum`, `value_avg`, `value_percentile`),
//! or a chained one (naming other correlations, at most
//! `correlation::MAX_DEPTH` deep, no cycle), a rule over the detection rules of the chain
//! whose matches `analysis::sequence` replays ([`Temporal`]). A correlation finds the
//! rules it names (by `name` or `id`) in its own file first, then anywhere in the pack
//! ([`load_pack`]). A rule's [`RuleMeta`] holds the document's own text and,
//! when it is not the built-in one, the mapping's, so a shard's merge recompiles it
//! exactly ([`compile`]). Nothing here reads records or bytes.

use std::fmt;

use ualhunt_query::correlation::{self, Condition};
use ualhunt_query::sequence::Key;
use ualhunt_query::sigma::{self, Document, Mapping};
use ualhunt_query::temporal;

use super::load::{Loaded, NotRun};
use super::{Alerting, Query, Rule, RuleError, RuleMeta, Threat};
use crate::field::{Field, Fields};

/// The built-in field mapping (`--sigma-mapping FILE` replaces it).
pub const BUILTIN_MAPPING: &str = include_str!("../../rules/sigma_mapping.yml");

/// The `type` and `language` of a Sigma rule in reports.
pub const SIGMA: &str = "sigma";

/// A Sigma rule's query: its detection, and the records its log source sees; for a
/// correlation rule, those of each rule it counts, any of which may hold.
#[derive(Clone, Debug)]
pub struct SigmaQuery {
    parts: Vec<Part>,
    /// A replayed correlation's chain (`parts` are the detection rules it names, at
    /// any depth, in the order the chain names them).
    temporal: Option<Temporal>,
}

/// A correlation replayed by `ualhunt_query::correlation` over its rules' matches: a
/// `temporal` or `temporal_ordered` one, or a chained one (a correlation it names is a
/// correlation); and how its findings name what they joined.
#[derive(Clone, Debug)]
pub struct Temporal {
    /// The replay: the correlation, and the correlations it names, down to the
    /// detection rules (the query's parts, one per place a chain names one).
    pub chain: correlation::Node,
    /// `temporal`, `temporal_ordered`, `event_count`, `value_count`, `value_sum`,
    /// `value_avg`, `value_percentile`.
    pub kind: String,
    /// The `group-by` names, as written.
    pub group_by: Vec<String>,
    /// Per rule the correlation names, its title.
    pub titles: Vec<String>,
    /// value_count and the metric correlations: the counted field's name, as written.
    pub counted: Option<String>,
    /// Per part, per `group-by` name of the correlation that names it, the fields it
    /// reads (the first that has a value).
    keys: Vec<Vec<Vec<Field>>>,
    /// Per part named by a value_count correlation, the counted field's fields.
    values: Vec<Option<Vec<Field>>>,
}

impl Temporal {
    /// How many rules the correlation names.
    pub fn rules(&self) -> usize {
        self.chain.inputs.len()
    }

    /// Its `timespan`, in milliseconds.
    pub fn span(&self) -> i64 {
        match &self.chain.kind {
            correlation::Kind::Temporal(t) => t.span,
            correlation::Kind::Count { span, .. }
            | correlation::Kind::Rules { span, .. }
            | correlation::Kind::Metric { span, .. } => *span,
        }
    }

    /// What its condition asks: `in the order listed`, `at least 2 of 3 rules`,
    /// `at least 10 events`, `1 to 4 distinct ClientIP`.
    pub fn condition(&self) -> String {
        match &self.chain.kind {
            correlation::Kind::Temporal(t) if t.ordered => "in the order listed".into(),
            correlation::Kind::Temporal(t) => {
                format!("at least {} of {} rules", t.at_least, t.rules)
            }
            correlation::Kind::Rules { condition, .. } => {
                format!("{condition} of {} rules", self.rules())
            }
            correlation::Kind::Count {
                condition,
                distinct: true,
                ..
            } => format!(
                "{condition} distinct {}",
                self.counted.as_deref().unwrap_or("values")
            ),
            correlation::Kind::Count { condition, .. } => format!("{condition} events"),
            correlation::Kind::Metric {
                metric, condition, ..
            } => format!(
                "{} {condition}",
                metric.describe(self.counted.as_deref().unwrap_or("values"))
            ),
        }
    }
}

/// One rule's detection and log source.
#[derive(Clone, Debug)]
struct Part {
    /// The mapping's condition on the log source's records (`None`: every record).
    records: Option<sigma::Query<Field>>,
    /// The rule's detection.
    detection: sigma::Query<Field>,
}

impl SigmaQuery {
    /// A temporal correlation's replay, if the query is one.
    pub fn temporal(&self) -> Option<&Temporal> {
        self.temporal.as_ref()
    }

    /// For a replayed correlation: the parts (detection rules, in the chain's order) a
    /// record matches, each with the record's group for it (none when a `group-by` field
    /// has no value), followed, for a part a value_count counts, by the counted value
    /// when the record has one; `None` when it matches none, or the query is no replayed
    /// correlation.
    pub fn temporal_steps(&self, record: &dyn Fields<Field>) -> Option<Vec<(u16, Vec<Key>)>> {
        let t = self.temporal.as_ref()?;
        let first = |fields: &[Field]| {
            fields.iter().find_map(|f| {
                let mut value = None;
                record.any_value(f, &mut |v| {
                    value = Some(v.to_string());
                    true
                });
                value
            })
        };
        let mut out = Vec::new();
        for (i, ((p, keys), counted)) in self.parts.iter().zip(&t.keys).zip(&t.values).enumerate() {
            if !p.matches(record) {
                continue;
            }
            let key: Option<Key> = keys
                .iter()
                .map(|fields| first(fields))
                .collect::<Option<Key>>()
                .map(|mut key| {
                    key.extend(counted.as_deref().and_then(first));
                    key
                });
            out.push((i as u16, key.into_iter().collect()));
        }
        (!out.is_empty()).then_some(out)
    }

    /// Whether a record is one of a log source's and matches its rule's detection.
    pub fn matches(&self, record: &dyn Fields<Field>) -> bool {
        self.parts.iter().any(|p| p.matches(record))
    }

    /// The detections' literals for a case-sensitive search (a log source's condition
    /// only narrows): see `ualhunt_query::sigma::Query::required_literals`.
    pub fn required_literals(&self) -> Option<Vec<String>> {
        union(self.parts.iter().map(|p| p.detection.required_literals()))
    }

    /// The detection's literal sets (one rule), or the whole query's literals.
    pub fn required_conjuncts(&self) -> Vec<Vec<String>> {
        match self.parts.as_slice() {
            [one] => one.detection.required_conjuncts(),
            _ => self.required_literals().into_iter().collect(),
        }
    }

    /// The detection's alternatives (one rule), or one branch of the whole query's
    /// literal sets.
    pub fn required_branches(&self) -> ualhunt_query::Branches {
        match self.parts.as_slice() {
            [one] => one.detection.required_branches(),
            _ => vec![self.required_conjuncts()],
        }
    }

    /// The detections' literals, lower-cased, for a search that folds ASCII case.
    pub fn folded_literals(&self) -> Option<Vec<String>> {
        union(self.parts.iter().map(|p| p.detection.folded_literals()))
    }

    /// Every field read.
    pub fn fields(&self) -> Vec<&Field> {
        let mut out = Vec::new();
        for p in &self.parts {
            out.extend(p.detection.fields());
            if let Some(r) = &p.records {
                out.extend(r.fields());
            }
        }
        out
    }
}

impl Part {
    fn matches(&self, record: &dyn Fields<Field>) -> bool {
        self.records.as_ref().is_none_or(|r| r.matches(record)) && self.detection.matches(record)
    }
}

/// Every set's literals, deduplicated (any set `None`: `None`).
fn union(sets: impl Iterator<Item = Option<Vec<String>>>) -> Option<Vec<String>> {
    let mut out = Vec::new();
    for set in sets {
        out.extend(set?);
    }
    out.sort();
    out.dedup();
    (!out.is_empty()).then_some(out)
}

impl fmt::Display for SigmaQuery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.parts.iter().enumerate() {
            if i > 0 {
                f.write_str(" OR ")?;
            }
            p.detection.fmt(f)?;
        }
        if let Some(t) = &self.temporal {
            write!(
                f,
                " | {} {} of [{}]",
                t.kind,
                t.condition(),
                t.titles.join(", ")
            )?;
            if !t.group_by.is_empty() {
                write!(f, " by {}", t.group_by.join(", "))?;
            }
            write!(f, " within {}", super::span(t.span() / 1000))?;
        }
        Ok(())
    }
}

/// The mapping a rule's metadata names (its own text, else the built-in one).
fn mapping_of(meta: &RuleMeta) -> Result<Mapping, RuleError> {
    let text = meta.sigma_mapping.as_deref().unwrap_or(BUILTIN_MAPPING);
    Mapping::parse(text).map_err(|e| RuleError::Invalid {
        name: meta.name.clone(),
        message: format!("Sigma field mapping: {e}"),
    })
}

/// Compiles a Sigma document through a mapping.
fn query_of(doc: &Document, mapping: &Mapping) -> Result<SigmaQuery, sigma::Unsupported> {
    Ok(SigmaQuery {
        parts: vec![part_of(doc, mapping)?],
        temporal: None,
    })
}

/// One document's detection and log source, through a mapping.
fn part_of(doc: &Document, mapping: &Mapping) -> Result<Part, sigma::Unsupported> {
    if let Some(why) = doc.unsupported() {
        return Err(why.clone());
    }
    let scope = mapping.scope(&doc.meta.logsource)?;
    let keywords = mapping.keywords().map(Field::parse);
    let detection = doc.query(
        &mut |name| {
            scope
                .resolve(name)
                .iter()
                .map(|f| Field::parse(f))
                .collect()
        },
        keywords.as_ref(),
    )?;
    let records = scope.records::<Field>().transpose()?;
    Ok(Part { records, detection })
}

/// The rule a correlation (`docs[at]`) names, by `name` or `id` (its index in `docs`):
/// in its own file (`files[i]` is the file of `docs[i]`) first, else in the one other
/// file of the pack that defines it; or why there is none.
fn referenced(docs: &[Document], files: &[usize], at: usize, name: &str) -> Result<usize, String> {
    let named = |d: &Document| {
        d.meta.name.as_deref() == Some(name) || (!d.meta.id.is_empty() && d.meta.id == name)
    };
    let found: Vec<usize> = (0..docs.len())
        .filter(|&i| i != at && named(&docs[i]))
        .collect();
    match found.iter().find(|&&i| files[i] == files[at]) {
        Some(&i) => Ok(i),
        None => match found.as_slice() {
            [] => Err(format!(
                "it names rule {name:?}, which no file of the rule pack defines"
            )),
            [i] => Ok(*i),
            _ => Err(format!(
                "it names rule {name:?}, which several files of the rule pack define"
            )),
        },
    }
}

/// Whether a correlation (`docs[at]`) names another correlation.
fn is_chained(docs: &[Document], files: &[usize], at: usize) -> bool {
    docs[at].correlation.as_ref().is_some_and(|c| {
        c.rules.iter().any(|name| {
            referenced(docs, files, at, name).is_ok_and(|i| docs[i].correlation.is_some())
        })
    })
}

/// A correlation rule (`docs[at]`) as a query over the rules it names. An `event_count`
/// or `value_count` that names detection rules only comes with the threshold that
/// replays it (matches grouped by `group-by`, windows of `timespan`; for `value_count`,
/// the distinct values of its field); `temporal`, `temporal_ordered` and chained
/// correlations carry their replay in the query ([`Temporal`]). What cannot be replayed
/// is refused with the reason.
fn correlation_of(
    docs: &[Document],
    files: &[usize],
    at: usize,
    mapping: &Mapping,
) -> Result<(SigmaQuery, Option<Alerting>), sigma::Unsupported> {
    let no = |why: String| Err(sigma::Unsupported(why));
    let Some(c) = &docs[at].correlation else {
        return no("not a correlation rule".into());
    };
    if c.kind.starts_with("temporal") || is_metric(&c.kind) || is_chained(docs, files, at) {
        let mut built = Chain::default();
        let chain = node_of(docs, files, at, mapping, &mut vec![at], &mut built)?;
        let titles = c
            .rules
            .iter()
            .filter_map(|name| referenced(docs, files, at, name).ok())
            .map(|i| docs[i].meta.title.clone())
            .collect();
        let counted = (c.kind == "value_count" || is_metric(&c.kind))
            .then(|| c.condition.iter().find(|(k, _)| k == "field"))
            .flatten()
            .map(|(_, v)| v.clone());
        let query = SigmaQuery {
            temporal: Some(Temporal {
                chain,
                kind: c.kind.clone(),
                group_by: c.group_by.clone(),
                titles,
                counted,
                keys: built.keys,
                values: built.values,
            }),
            parts: built.parts,
        };
        return Ok((query, None));
    }
    if !matches!(c.kind.as_str(), "event_count" | "value_count") {
        return no(unknown_kind(&c.kind));
    }
    if !c.aliases.is_empty() {
        return no(format!(
            "correlation rule ({}): aliases are replayed for temporal correlations only",
            c.kind
        ));
    }
    let mut parts = Vec::new();
    let mut named = Vec::new();
    for name in &c.rules {
        let i = referenced(docs, files, at, name)
            .map_err(|why| sigma::Unsupported(format!("correlation rule: {why}")))?;
        if named.contains(&i) {
            return no(format!("correlation rule: it names rule {name:?} twice"));
        }
        parts.push(named_part(&docs[i], name, mapping)?);
        named.push(i);
    }
    let Some(&first) = named.first() else {
        return no("correlation rule: it names no rule".into());
    };
    let window = timespan(&c.timespan)?;
    let scope = mapping.scope(&docs[first].meta.logsource)?;
    let field = |name: &str| -> Result<String, sigma::Unsupported> {
        scope.resolve(name).into_iter().next().ok_or_else(|| {
            sigma::Unsupported(format!(
                "correlation field {name:?}: the mapping maps it to nothing"
            ))
        })
    };
    let fields = c
        .group_by
        .iter()
        .map(|g| field(g))
        .collect::<Result<Vec<_>, _>>()?;
    let ops = operators(c);
    let alerting = if c.kind == "event_count" {
        let n = Condition::parse(&ops, 1).map_err(sigma::Unsupported)?;
        Alerting::Threshold {
            fields,
            value: n.min,
            cardinality: None,
            window,
            at_most: n.max,
            not: n.not,
        }
    } else {
        let Some((_, name)) = c.condition.iter().find(|(k, _)| k == "field") else {
            return no("value_count correlation without a condition field".into());
        };
        let n = Condition::parse(&ops, 0).map_err(sigma::Unsupported)?;
        Alerting::Threshold {
            fields,
            value: 1,
            cardinality: Some((field(name)?, n.min)),
            window,
            at_most: n.max,
            not: n.not,
        }
    };
    if let Some(why) = alerting.invalid() {
        return no(format!("correlation rule: {why}"));
    }
    Ok((
        SigmaQuery {
            parts,
            temporal: None,
        },
        Some(alerting),
    ))
}

fn unknown_kind(kind: &str) -> String {
    format!(
        "correlation rule ({kind}): only event_count, value_count, value_sum, value_avg, \
         value_percentile, temporal and temporal_ordered are replayed"
    )
}

/// Whether a correlation `type` is a metric one (specification 2.1): `value_sum`,
/// `value_avg`, `value_percentile`.
fn is_metric(kind: &str) -> bool {
    matches!(kind, "value_sum" | "value_avg" | "value_percentile")
}

/// A correlation's condition operators (`field` left out).
fn operators(c: &sigma::Correlation) -> Vec<(String, String)> {
    c.condition
        .iter()
        .filter(|(k, _)| k != "field")
        .cloned()
        .collect()
}

/// A metric correlation's computation and condition: `value_percentile` needs
/// `percentile: p` (a whole number from 0 to 100) in its condition, as pySigma reads it
/// (the specification's text names no key for which percentile, and its example's
/// `lte: 1` alone cannot say which); the other operators are compared with the result.
fn metric_of(c: &sigma::Correlation) -> Result<(correlation::Metric, correlation::Bound), String> {
    let ops: Vec<(String, String)> = operators(c)
        .into_iter()
        .filter(|(k, _)| k != "percentile")
        .collect();
    let percentile = c.condition.iter().find(|(k, _)| k == "percentile");
    let metric = match (c.kind.as_str(), percentile) {
        ("value_sum", None) => correlation::Metric::Sum,
        ("value_avg", None) => correlation::Metric::Avg,
        ("value_percentile", Some((_, p))) => match p.trim().parse::<u8>() {
            Ok(p) if p <= 100 => correlation::Metric::Percentile(p),
            _ => {
                return Err(format!(
                    "value_percentile correlation: percentile {p}: not a whole number from 0 \
                     to 100"
                ));
            }
        },
        ("value_percentile", None) => {
            return Err(
                "value_percentile correlation without a condition percentile (which \
                 percentile, 0 to 100, as pySigma reads it): the specification does not say \
                 which"
                    .into(),
            );
        }
        (kind, _) => {
            return Err(format!(
                "correlation condition percentile: only for value_percentile, not {kind}"
            ));
        }
    };
    Ok((metric, correlation::Bound::parse(&ops)?))
}

/// The part of a detection rule a correlation names (as `name`), or why it does not run.
fn named_part(doc: &Document, name: &str, mapping: &Mapping) -> Result<Part, sigma::Unsupported> {
    part_of(doc, mapping).map_err(|why| {
        sigma::Unsupported(format!(
            "correlation rule: the rule it names {name:?} does not run: {}",
            why.0
        ))
    })
}

/// The most rules a chain may name in all, counting each place a rule is named.
const MAX_CHAIN_RULES: usize = 256;

/// What building a replayed correlation gathers: per place the chain names a detection
/// rule, its part, its group's fields and its counted field's; and every document used.
#[derive(Default)]
struct Chain {
    /// How many rules it named in all, counting each place (a rule named from several
    /// correlations of the chain counts for each).
    named: usize,
    parts: Vec<Part>,
    keys: Vec<Vec<Vec<Field>>>,
    values: Vec<Option<Vec<Field>>>,
}

/// The replay of the correlation `docs[at]` and of the correlations it names (`stack`:
/// the correlations being built, outermost first, for cycles and depth), its detection
/// rules' parts gathered into `built`.
fn node_of(
    docs: &[Document],
    files: &[usize],
    at: usize,
    mapping: &Mapping,
    stack: &mut Vec<usize>,
    built: &mut Chain,
) -> Result<correlation::Node, sigma::Unsupported> {
    let no = |why: String| Err(sigma::Unsupported(why));
    let Some(c) = &docs[at].correlation else {
        return no("not a correlation rule".into());
    };
    let count = match c.kind.as_str() {
        "event_count" | "value_count" | "value_sum" | "value_avg" | "value_percentile" => true,
        "temporal" | "temporal_ordered" => false,
        other => return no(unknown_kind(other)),
    };
    if count && !c.aliases.is_empty() {
        return no(format!(
            "correlation rule ({}): aliases are replayed for temporal correlations only",
            c.kind
        ));
    }
    let counted = c
        .condition
        .iter()
        .find(|(k, _)| k == "field")
        .map(|(_, v)| v.as_str());
    if (c.kind == "value_count" || is_metric(&c.kind)) && counted.is_none() {
        return no(format!("{} correlation without a condition field", c.kind));
    }
    let span = timespan(&c.timespan)?
        .checked_mul(1000)
        .ok_or_else(|| sigma::Unsupported("correlation timespan too long".into()))?;
    // The field a `group-by` name reads in the events of the rule `name` (`doc`).
    let aliased = |g: &str, name: &str, doc: &Document| -> Result<String, sigma::Unsupported> {
        match c.aliases.iter().find(|(alias, _)| alias == g) {
            None => Ok(g.to_string()),
            Some((_, per_rule)) => per_rule
                .iter()
                .find(|(r, _)| {
                    r == name || doc.meta.name.as_deref() == Some(r.as_str()) || doc.meta.id == *r
                })
                .map(|(_, f)| f.clone())
                .ok_or_else(|| {
                    sigma::Unsupported(format!(
                        "correlation alias {g:?} names no field for rule {name:?}"
                    ))
                }),
        }
    };
    let mut inputs = Vec::new();
    let mut named = Vec::new();
    for name in &c.rules {
        let i = referenced(docs, files, at, name)
            .map_err(|why| sigma::Unsupported(format!("correlation rule: {why}")))?;
        if named.contains(&i) {
            return no(format!("correlation rule: it names rule {name:?} twice"));
        }
        named.push(i);
        // Correlations naming the same correlations at every level multiply: the chain
        // is built (and replayed) once per place, so their number is bounded.
        built.named += 1;
        if built.named > MAX_CHAIN_RULES {
            return no(format!(
                "correlation chain: more than {MAX_CHAIN_RULES} rules named in all"
            ));
        }
        let doc = &docs[i];
        let Some(inner) = &doc.correlation else {
            let part = named_part(doc, name, mapping)?;
            let scope = mapping.scope(&doc.meta.logsource)?;
            let resolve = |field: &str| -> Result<Vec<Field>, sigma::Unsupported> {
                let fields: Vec<Field> = scope
                    .resolve(field)
                    .iter()
                    .map(|f| Field::parse(f))
                    .collect();
                if fields.is_empty() {
                    return Err(sigma::Unsupported(format!(
                        "correlation field {field:?}: the mapping maps it to nothing"
                    )));
                }
                Ok(fields)
            };
            let mut keys = Vec::new();
            for g in &c.group_by {
                keys.push(resolve(&aliased(g, name, doc)?)?);
            }
            let value = counted.map(resolve).transpose()?;
            let slot = u16::try_from(built.parts.len())
                .map_err(|_| sigma::Unsupported("correlation chain: too many rules".into()))?;
            built.parts.push(part);
            built.keys.push(keys);
            built.values.push(value);
            inputs.push(correlation::Input::Rule(slot));
            continue;
        };
        if stack.contains(&i) {
            return no(format!(
                "correlation chain: it names {name:?}, which names it back (a cycle)"
            ));
        }
        if stack.len() >= correlation::MAX_DEPTH {
            return no(format!(
                "correlation chain: more than {} correlations deep",
                correlation::MAX_DEPTH
            ));
        }
        stack.push(i);
        let node = node_of(docs, files, i, mapping, stack, built).map_err(|why| {
            sigma::Unsupported(format!(
                "the correlation rule it names {name:?} is not replayed: {}",
                why.0
            ))
        })?;
        stack.pop();
        // A correlation's firings carry its group only: the outer group and counted
        // field must be among the inner group's names.
        let position = |field: &str| -> Result<usize, sigma::Unsupported> {
            inner
                .group_by
                .iter()
                .position(|g| g == field)
                .ok_or_else(|| {
                    sigma::Unsupported(format!(
                        "correlation chain: {field:?} is not among the group-by fields of the \
                     correlation rule {name:?} it names ({}): its firings carry only those",
                        inner.group_by.join(", ")
                    ))
                })
        };
        let mut group = Vec::new();
        for g in &c.group_by {
            group.push(position(&aliased(g, name, doc)?)?);
        }
        let value = counted.map(position).transpose()?;
        inputs.push(correlation::Input::Correlation {
            node: Box::new(node),
            group,
            value,
        });
    }
    if inputs.is_empty() {
        return no("correlation rule: it names no rule".into());
    }
    let ops = operators(c);
    let k = inputs.len();
    let kind = match c.kind.as_str() {
        "event_count" => correlation::Kind::Count {
            condition: Condition::parse(&ops, 1).map_err(sigma::Unsupported)?,
            distinct: false,
            span,
        },
        "value_count" => correlation::Kind::Count {
            condition: Condition::parse(&ops, 0).map_err(sigma::Unsupported)?,
            distinct: true,
            span,
        },
        "value_sum" | "value_avg" | "value_percentile" => {
            let (metric, condition) = metric_of(c).map_err(sigma::Unsupported)?;
            correlation::Kind::Metric {
                metric,
                condition,
                span,
            }
        }
        kind => {
            let ordered = kind == "temporal_ordered";
            let condition = if ops.is_empty() {
                Condition::at_least(k as u64)
            } else {
                Condition::parse(&ops, 1).map_err(sigma::Unsupported)?
            };
            // The numbers of its rules that satisfy the condition: "at least m" when
            // they run from m to all of them, which the temporal replay fires on as soon
            // as m are present.
            let counts: Vec<u64> = (1..=k as u64).filter(|&n| condition.holds(n)).collect();
            let Some(&least) = counts.first() else {
                return no(format!(
                    "correlation condition ({condition}): no number of its {k} rules \
                     satisfies it"
                ));
            };
            let at_least = counts.len() as u64 == k as u64 - least + 1;
            if ordered && !(at_least && least == k as u64) {
                return no(format!(
                    "correlation condition ({condition} of its {k} rules): temporal_ordered \
                     with fewer than all of its rules: which of them must keep the order is \
                     not defined; only all of them are replayed"
                ));
            }
            if at_least {
                correlation::Kind::Temporal(temporal::Temporal {
                    rules: k,
                    at_least: least as usize,
                    ordered,
                    span,
                })
            } else {
                correlation::Kind::Rules { condition, span }
            }
        }
    };
    Ok(correlation::Node {
        kind,
        groups: c.group_by.len(),
        inputs,
    })
}

/// A Sigma timespan (`30s`, `5m`, `1h`, `2d`, `1w`) in seconds, at most `MAX_SPAN`.
fn timespan(text: &str) -> Result<i64, sigma::Unsupported> {
    super::parse_relative(&format!("now-{}", text.trim())).ok_or_else(|| {
        sigma::Unsupported(format!(
            "correlation timespan {text:?} is not <n><s|m|h|d|w>"
        ))
    })
}

/// The query of a Sigma rule's metadata: its document (`query`) through its mapping.
pub fn compile(meta: &RuleMeta) -> Result<Query, RuleError> {
    let invalid = |message: String| RuleError::Invalid {
        name: meta.name.clone(),
        message,
    };
    let docs = sigma::parse(&meta.query).map_err(|e| invalid(e.to_string()))?;
    let mapping = mapping_of(meta)?;
    let query = match docs.as_slice() {
        [.., last] if last.correlation.is_some() => {
            let files = vec![0; docs.len()];
            correlation_of(&docs, &files, docs.len() - 1, &mapping).map(|(q, _)| q)
        }
        [doc] => query_of(doc, &mapping),
        _ => return Err(invalid("a Sigma rule's text holds one document".into())),
    };
    query
        .map(|q| Query::Sigma(Box::new(q)))
        .map_err(|e| invalid(e.0))
}

/// Every document of a Sigma file: a rule that runs, or one that does not and why.
/// `mapping` is the text of `--sigma-mapping` (`None`: the built-in mapping). Only text
/// that is not YAML, or a mapping that is not one, fails the file.
pub fn load_text(text: &str, mapping: Option<&str>) -> Result<Vec<Loaded>, RuleError> {
    load_pack(&[text], mapping).map(|mut files| files.pop().unwrap_or_default())
}

/// Every document of a rule pack's Sigma files (their texts, in load order), per file: a
/// rule that runs, or one that does not and why. A correlation names rules of its own
/// file or of another; a rule a correlation that runs names reports only through it,
/// unless one such correlation says `generate: true`. Only text that is not YAML, or a
/// mapping that is not one, fails the pack.
pub fn load_pack(texts: &[&str], mapping: Option<&str>) -> Result<Vec<Vec<Loaded>>, RuleError> {
    let parsed = read_mapping(mapping)?;
    let mut per_file = Vec::with_capacity(texts.len());
    for (f, text) in texts.iter().enumerate() {
        per_file.push(sigma::parse(text).map_err(|e| RuleError::Invalid {
            name: format!("Sigma file {}", f + 1),
            message: e.to_string(),
        })?);
    }
    load_documents(per_file, &parsed, mapping)
}

/// [`load_pack`] of files already read (`sigma::parse` of each text, in load order).
pub fn load_parsed(
    per_file: Vec<Vec<sigma::Document>>,
    mapping: Option<&str>,
) -> Result<Vec<Vec<Loaded>>, RuleError> {
    load_documents(per_file, &read_mapping(mapping)?, mapping)
}

/// The field mapping of `--sigma-mapping`'s text (`None`: the built-in one).
fn read_mapping(mapping: Option<&str>) -> Result<Mapping, RuleError> {
    Mapping::parse(mapping.unwrap_or(BUILTIN_MAPPING)).map_err(|e| RuleError::Invalid {
        name: "--sigma-mapping".into(),
        message: e.to_string(),
    })
}

/// [`load_pack`] of read files, `parsed` the mapping of the text `mapping`.
fn load_documents(
    per_file: Vec<Vec<sigma::Document>>,
    parsed: &Mapping,
    mapping: Option<&str>,
) -> Result<Vec<Vec<Loaded>>, RuleError> {
    let n_files = per_file.len();
    let mut docs = Vec::new();
    let mut files = Vec::new();
    for (f, file_docs) in per_file.into_iter().enumerate() {
        files.extend(std::iter::repeat_n(f, file_docs.len()));
        docs.extend(file_docs);
    }
    // The correlations that run, and the rules they count without `generate: true`:
    // those report their matches only through the correlation.
    let correlations: Vec<(usize, CorrelationResult)> = docs
        .iter()
        .enumerate()
        .filter(|(_, d)| d.correlation.is_some())
        .map(|(i, _)| (i, correlation_of(&docs, &files, i, parsed).map(|(_, a)| a)))
        .collect();
    // A counted rule reports alone when no correlation that runs counts it, or when one
    // that does asks so (`generate: true`).
    let counted_by = |doc: usize| {
        let counting: Vec<&Document> = correlations
            .iter()
            .filter(|(_, result)| result.is_ok())
            .map(|(i, _)| (*i, &docs[*i]))
            .filter(|(i, c)| {
                c.correlation.as_ref().is_some_and(|c| {
                    c.rules
                        .iter()
                        .any(|name| referenced(&docs, &files, *i, name) == Ok(doc))
                })
            })
            .map(|(_, c)| c)
            .collect();
        let generates = counting
            .iter()
            .any(|c| c.correlation.as_ref().is_some_and(|c| c.generate));
        (!generates)
            .then(|| counting.first().map(|c| c.meta.title.clone()))
            .flatten()
    };
    let not_run = |meta: RuleMeta, why: String| {
        Loaded::NotRun(NotRun {
            id: meta.id,
            name: meta.name,
            path: String::new(),
            rule_type: meta.rule_type,
            language: SIGMA.into(),
            reason: format!("Sigma: {why}"),
            note: meta.note,
            setup: meta.setup,
        })
    };
    let mut out: Vec<Vec<Loaded>> = (0..n_files).map(|_| Vec::new()).collect();
    for (i, doc) in docs.iter().enumerate() {
        let mut meta = meta_of(doc, mapping);
        let file = &mut out[files[i]];
        if let Some(c) = &doc.correlation {
            meta.rule_type = format!("{SIGMA} {}", c.kind);
            let result = correlations
                .iter()
                .find(|(at, _)| *at == i)
                .map(|(_, a)| a.clone());
            let result = result.map(|r| {
                r.and_then(|alerting| {
                    let used = chain_docs(&docs, &files, i);
                    unambiguous(&docs, &used).map(|()| (alerting, used))
                })
            });
            let named_by = counted_by(i);
            match result {
                Some(Ok(_)) if named_by.is_some() => {
                    let title = named_by.unwrap_or_default();
                    file.push(not_run(
                        meta,
                        format!(
                            "named by the correlation rule {title:?} (generate: false): its \
                             firings are reported through it"
                        ),
                    ));
                }
                Some(Ok((alerting, used))) => {
                    // The rules it names at any depth, then the correlation: the rule's
                    // text (so that it recompiles alone, wherever they came from).
                    let mut text = String::new();
                    for d in used {
                        text.push_str(&as_document(&docs[d].text));
                    }
                    meta.query = text;
                    meta.alerting = alerting;
                    file.push(Loaded::Runs(Box::new(Rule::compile(meta)?)));
                }
                Some(Err(why)) => file.push(not_run(meta, why.0)),
                None => file.push(not_run(meta, "correlation rule not read".into())),
            }
            continue;
        }
        if let Some(title) = counted_by(i) {
            file.push(not_run(
                meta,
                format!(
                    "counted by the correlation rule {title:?} (generate: false): its matches \
                     are reported through it"
                ),
            ));
            continue;
        }
        match query_of(doc, parsed) {
            Err(why) => file.push(not_run(meta, why.0)),
            Ok(query) => {
                let rule = Rule::assemble(meta, Query::Sigma(Box::new(query)))?;
                file.push(Loaded::Runs(Box::new(rule)));
            }
        }
    }
    Ok(out)
}

/// The documents a correlation (`docs[at]`) is built of: the rules it names at any
/// depth, each after those it names, then itself (each once).
fn chain_docs(docs: &[Document], files: &[usize], at: usize) -> Vec<usize> {
    fn visit(docs: &[Document], files: &[usize], at: usize, out: &mut Vec<usize>) {
        if out.contains(&at) {
            return;
        }
        if let Some(c) = &docs[at].correlation {
            // `out` holds `at` while its rules are visited, so a cycle ends here (a
            // correlation that runs has none; this only bounds the walk).
            out.push(at);
            for name in &c.rules {
                if let Ok(i) = referenced(docs, files, at, name) {
                    visit(docs, files, i, out);
                }
            }
            out.retain(|&d| d != at);
        }
        out.push(at);
    }
    let mut out = Vec::new();
    visit(docs, files, at, &mut out);
    out
}

/// Refuses a chain whose documents (`used`) share a `name` or `id`: joined into one
/// text, the rule would no longer say which of them it names.
fn unambiguous(docs: &[Document], used: &[usize]) -> Result<(), sigma::Unsupported> {
    for (n, &a) in used.iter().enumerate() {
        for &b in &used[n + 1..] {
            let (x, y) = (&docs[a].meta, &docs[b].meta);
            let same_name = x.name.is_some() && x.name == y.name;
            let same_id = !x.id.is_empty() && x.id == y.id;
            if same_name || same_id {
                return Err(sigma::Unsupported(format!(
                    "correlation chain: two of the rules it is built of are both named {:?}",
                    if same_name {
                        x.name.clone().unwrap_or_default()
                    } else {
                        x.id.clone()
                    }
                )));
            }
        }
    }
    Ok(())
}

/// A correlation's threshold (`None` for a temporal one), or why it does not run.
type CorrelationResult = Result<Option<Alerting>, sigma::Unsupported>;

/// A document's text starting with its own `---` line, so that texts join into a file.
fn as_document(text: &str) -> String {
    let mut out = String::new();
    if !text.starts_with("---") {
        out.push_str("---\n");
    }
    out.push_str(text);
    if !text.ends_with('\n') {
        out.push('\n');
    }
    out
}

/// A Sigma document's metadata as a rule's: `level` gives the severity (and Elastic's
/// risk score of that severity), `tags` the ATT&CK mapping, `id` the rule id, and the
/// author, false positives and references are kept for every report.
fn meta_of(doc: &Document, mapping: Option<&str>) -> RuleMeta {
    let m = &doc.meta;
    let (severity, risk_score) = match m.level.as_deref().map(str::to_ascii_lowercase) {
        Some(l) if l == "critical" => ("critical", 99),
        Some(l) if l == "high" => ("high", 73),
        Some(l) if l == "medium" => ("medium", 47),
        _ => ("low", 21),
    };
    let id = if m.id.is_empty() {
        format!("sigma:{}", m.title)
    } else {
        m.id.clone()
    };
    RuleMeta {
        id,
        name: m.title.clone(),
        renamed: None,
        description: m.description.trim().to_string(),
        rule_type: SIGMA.into(),
        language: SIGMA.into(),
        index: Vec::new(),
        severity: severity.into(),
        risk_score,
        schedule: String::new(),
        false_positives: m.falsepositives.clone(),
        query: doc.text.clone(),
        threat: threats(&m.tags),
        analyses: super::default_analyses(),
        evidence: super::load::default_evidence(),
        context: Vec::new(),
        alerting: None,
        author: m.author.clone(),
        references: m.references.clone(),
        sigma_mapping: mapping.map(str::to_string),
        note: None,
        setup: None,
        building_block: None,
    }
}

/// ATT&CK tactics by the names Sigma tags use.
const TACTICS: [(&str, &str, &str); 14] = [
    ("reconnaissance", "TA0043", "Reconnaissance"),
    ("resource-development", "TA0042", "Resource Development"),
    ("initial-access", "TA0001", "Initial Access"),
    ("execution", "TA0002", "Execution"),
    ("persistence", "TA0003", "Persistence"),
    ("privilege-escalation", "TA0004", "Privilege Escalation"),
    ("defense-evasion", "TA0005", "Defense Evasion"),
    ("credential-access", "TA0006", "Credential Access"),
    ("discovery", "TA0007", "Discovery"),
    ("lateral-movement", "TA0008", "Lateral Movement"),
    ("collection", "TA0009", "Collection"),
    ("command-and-control", "TA0011", "Command and Control"),
    ("exfiltration", "TA0010", "Exfiltration"),
    ("impact", "TA0040", "Impact"),
];

/// The ATT&CK mapping of Sigma tags (`attack.defense-evasion`, `attack.t1562.001`): one
/// entry per technique (a sub-technique's tag covers its technique's), with the rule's
/// tactics; only tactics when it names no technique.
fn threats(tags: &[String]) -> Vec<Threat> {
    let attack: Vec<String> = tags
        .iter()
        .filter_map(|t| {
            t.to_ascii_lowercase()
                .strip_prefix("attack.")
                .map(String::from)
        })
        .collect();
    let tactics: Vec<String> = attack
        .iter()
        .filter_map(|t| {
            TACTICS
                .iter()
                .find(|(tag, id, _)| tag == t || id.eq_ignore_ascii_case(t))
                .map(|(_, id, name)| format!("{id} {name}"))
        })
        .collect();
    let tactic = tactics.join(", ");
    let techniques: Vec<&String> = attack
        .iter()
        .filter(|t| {
            t.len() >= 5 && t.starts_with('t') && t[1..5].bytes().all(|b| b.is_ascii_digit())
        })
        .collect();
    let mut out: Vec<Threat> = Vec::new();
    for t in &techniques {
        let upper = t.to_ascii_uppercase();
        let (technique, sub) = match upper.split_once('.') {
            Some((tech, _)) => (tech.to_string(), Some(upper.clone())),
            None => (upper.clone(), None),
        };
        let covered = sub.is_none()
            && techniques.iter().any(|o| {
                o.len() > t.len() && o.starts_with(t.as_str()) && o.as_bytes()[t.len()] == b'.'
            });
        if !covered {
            out.push(Threat {
                tactic: tactic.clone(),
                technique,
                subtechnique: sub,
            });
        }
    }
    if out.is_empty() {
        out.extend(tactics.into_iter().map(|tactic| Threat {
            tactic,
            technique: String::new(),
            subtechnique: None,
        }));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULE: &str = "title: Mailbox audit age limit changed
id: a1f0c2e1-000c-4a00-8a01-00000000000c
author: Someone
level: high
tags: [attack.defense-evasion, attack.t1562, attack.t1562.008]
falsepositives: [Retention changes]
references: ['https://example.org/r']
logsource: {product: azure, service: m365}
detection:
    selection:
        Operation: 'Set-Mailbox'
        Parameters.AuditLogAgeLimit|exists: true
    condition: selection
---
title: Correlated
id: c0
correlation: {type: event_count, rules: [x], group-by: [UserId], timespan: 5m, condition: {gte: 3}}
---
title: Elsewhere
id: w1
logsource: {product: windows, category: process_creation}
detection:
    s: {Image|endswith: '\\cmd.exe'}
    condition: s
";

    #[test]
    fn a_file_of_documents_loads_rules_and_says_why_others_do_not_run() {
        let loaded = load_text(RULE, None).unwrap();
        assert_eq!(loaded.len(), 3);
        let Loaded::Runs(rule) = &loaded[0] else {
            panic!("the first document runs");
        };
        assert_eq!(rule.meta.id, "a1f0c2e1-000c-4a00-8a01-00000000000c");
        assert_eq!(rule.meta.severity, "high");
        assert_eq!(rule.meta.risk_score, 73);
        assert_eq!(rule.meta.author.as_deref(), Some("Someone"));
        assert_eq!(rule.meta.references, vec!["https://example.org/r"]);
        assert_eq!(rule.meta.false_positives, vec!["Retention changes"]);
        assert_eq!(rule.meta.threat.len(), 1, "{:?}", rule.meta.threat);
        assert_eq!(rule.meta.threat[0].tactic, "TA0005 Defense Evasion");
        assert_eq!(
            rule.meta.threat[0].subtechnique.as_deref(),
            Some("T1562.008")
        );
        // The rule recompiles from its metadata alone (a shard's merge does).
        let again = Rule::compile(rule.meta.clone()).unwrap();
        assert_eq!(again.query.to_string(), rule.query.to_string());
        let Loaded::NotRun(n) = &loaded[1] else {
            panic!("a correlation of a rule elsewhere does not run");
        };
        assert!(
            n.reason.contains("no file of the rule pack defines"),
            "{}",
            n.reason
        );
        let Loaded::NotRun(n) = &loaded[2] else {
            panic!("a windows rule has no mapping");
        };
        assert!(n.reason.contains("product=windows"), "{}", n.reason);
    }

    const CORRELATED: &str = "title: Failed login
id: f-1
name: failed_login
logsource: {product: azure, service: m365}
detection:
    s: {Operation: UserLoginFailed}
    condition: s
---
title: Many failed logins
id: c-1
author: Someone
level: high
correlation:
    type: event_count
    rules: [failed_login]
    group-by: [UserId]
    timespan: 10m
    condition: {gte: 3}
---
title: Many addresses
id: c-2
correlation:
    type: value_count
    rules: [f-1]
    group-by: [UserId]
    timespan: 1h
    generate: true
    condition: {field: ClientIP, gt: 1}
---
title: In order
id: c-3
correlation: {type: temporal_ordered, rules: [f-1], group-by: [UserId], timespan: 5m, condition: {lt: 2}}
";

    #[test]
    fn counting_correlations_run_as_thresholds_and_what_is_not_replayed_says_why() {
        let loaded = load_text(CORRELATED, None).unwrap();
        assert_eq!(loaded.len(), 4);
        // `generate: true` on one correlation keeps the counted rule reporting.
        assert!(matches!(&loaded[0], Loaded::Runs(_)));
        let Loaded::Runs(count) = &loaded[1] else {
            panic!("event_count runs");
        };
        assert_eq!(
            count.meta.alerting,
            Some(Alerting::Threshold {
                fields: vec!["o365.audit.UserId".into()],
                value: 3,
                cardinality: None,
                window: 600,
                at_most: None,
                not: None,
            })
        );
        assert_eq!(count.meta.rule_type, "sigma event_count");
        // It recompiles from its metadata (the counted rule's text travels with it).
        let again = Rule::compile(count.meta.clone()).unwrap();
        assert_eq!(again.query.to_string(), count.query.to_string());
        let Loaded::Runs(values) = &loaded[2] else {
            panic!("value_count runs");
        };
        assert_eq!(
            values.meta.alerting,
            Some(Alerting::Threshold {
                fields: vec!["o365.audit.UserId".into()],
                value: 1,
                cardinality: Some(("o365.audit.ClientIP".into(), 2)),
                window: 3600,
                at_most: None,
                not: None,
            })
        );
        // `lt: 2` of one rule is all of it: replayed as temporal_ordered.
        let Loaded::Runs(ordered) = &loaded[3] else {
            panic!("temporal_ordered with lt: 2 of its one rule runs");
        };
        let t = ordered.query.temporal().expect("replayed");
        assert!(matches!(t.chain.kind, correlation::Kind::Temporal(ref s) if s.at_least == 1));
        // Every operator of the specification, ANDed.
        let range = CORRELATED.replace("condition: {gte: 3}", "condition: {gt: 2, lte: 5, neq: 4}");
        let Loaded::Runs(count) = &load_text(&range, None).unwrap()[1] else {
            panic!("a range runs");
        };
        assert_eq!(
            count.meta.alerting,
            Some(Alerting::Threshold {
                fields: vec!["o365.audit.UserId".into()],
                value: 3,
                cardinality: None,
                window: 600,
                at_most: Some(5),
                not: Some(4),
            })
        );
        assert_eq!(
            count.meta.alerting.as_ref().unwrap().to_string(),
            "threshold: 3 to 5, not 4 matches with the same o365.audit.UserId within 10m"
        );
        let fewer = CORRELATED.replace("{field: ClientIP, gt: 1}", "{field: ClientIP, lt: 3}");
        let Loaded::Runs(values) = &load_text(&fewer, None).unwrap()[2] else {
            panic!("value_count lt runs");
        };
        assert_eq!(
            values.meta.alerting.as_ref().unwrap().to_string(),
            "threshold: 1 match with the same o365.audit.UserId and at most 2 distinct \
             o365.audit.ClientIP within 1h"
        );
        // What no window can satisfy is refused with the reason.
        for (bad, why) in [
            ("condition: {lt: 1}", "no count of 1 or more satisfies it"),
            ("condition: {gte: 5, lt: 5}", "no count of 1 or more"),
            ("condition: {gte: many}", "not a whole number"),
            (
                "condition: {about: 5}",
                "not one of gt, gte, lt, lte, eq, neq",
            ),
        ] {
            let text = CORRELATED.replace("condition: {gte: 3}", bad);
            let Loaded::NotRun(n) = &load_text(&text, None).unwrap()[1] else {
                panic!("{bad} is refused");
            };
            assert!(n.reason.contains(why), "{bad}: {}", n.reason);
        }
        // Without `generate: true` anywhere, the counted rule reports only through the
        // correlation, and says so.
        let text = CORRELATED.replace("    generate: true\n", "");
        let loaded = load_text(&text, None).unwrap();
        let Loaded::NotRun(n) = &loaded[0] else {
            panic!("the counted rule does not report alone");
        };
        assert!(
            n.reason.contains("counted by the correlation rule"),
            "{}",
            n.reason
        );
    }

    #[test]
    fn fields_resolve_through_the_mapping() {
        let Loaded::Runs(rule) = &load_text(RULE, None).unwrap()[0] else {
            panic!("runs");
        };
        let names: Vec<String> = rule.query.fields().iter().map(|f| f.name()).collect();
        assert!(
            names.contains(&"o365.audit.Operation".to_string()),
            "{names:?}"
        );
        assert!(names.contains(&"event.action".to_string()), "{names:?}");
        assert!(
            names.contains(&"o365.audit.Parameters.AuditLogAgeLimit".to_string()),
            "{names:?}"
        );
        // A replaced mapping: its own names, carried in the metadata.
        let mapping = "default: o365.audit.\nlogsources:\n  - product: azure\n    service: m365\n";
        let Loaded::Runs(rule) = &load_text(RULE, Some(mapping)).unwrap()[0] else {
            panic!("runs");
        };
        let names: Vec<String> = rule.query.fields().iter().map(|f| f.name()).collect();
        assert!(!names.contains(&"event.action".to_string()), "{names:?}");
        assert_eq!(rule.meta.sigma_mapping.as_deref(), Some(mapping));
        assert!(load_text(RULE, Some("[not a map")).is_err());
    }

    const TEMPORAL: &str = "title: Inbox rule
id: t-1
name: inbox_rule
logsource: {product: m365, service: exchange}
detection:
    s: {Operation: New-InboxRule}
    condition: s
---
title: Login
id: t-2
name: login
logsource: {product: azure, service: m365}
detection:
    s: {Operation: UserLoggedIn}
    condition: s
---
title: Login then inbox rule
id: tc-1
level: high
correlation:
    type: temporal_ordered
    rules: [login, t-1]
    group-by: [actor]
    timespan: 1h
    aliases:
        actor:
            login: UserId
            inbox_rule: MailboxOwnerUPN
";

    #[test]
    fn a_temporal_correlation_runs_with_a_step_per_rule_and_its_aliases() {
        let loaded = load_text(TEMPORAL, None).unwrap();
        assert_eq!(loaded.len(), 3);
        for l in &loaded[..2] {
            let Loaded::NotRun(n) = l else {
                panic!("a correlated rule reports through its correlation");
            };
            assert!(n.reason.contains("Login then inbox rule"), "{}", n.reason);
        }
        let Loaded::Runs(rule) = &loaded[2] else {
            panic!("temporal_ordered runs");
        };
        assert_eq!(rule.meta.rule_type, "sigma temporal_ordered");
        let t = rule.query.temporal().expect("a temporal query");
        assert_eq!(
            t.chain.kind,
            correlation::Kind::Temporal(temporal::Temporal {
                rules: 2,
                at_least: 2,
                ordered: true,
                span: 3_600_000,
            })
        );
        assert_eq!(t.titles, vec!["Login", "Inbox rule"]);
        // Each rule reads the group through its own alias.
        let names = |k: &[Field]| k.iter().map(|f| f.name()).collect::<Vec<_>>();
        assert_eq!(names(&t.keys[0][0])[0], "o365.audit.UserId");
        assert_eq!(names(&t.keys[1][0])[0], "o365.audit.MailboxOwnerUPN");
        for item in ["sequence", "step_1", "step_2"] {
            assert!(rule.evidence_index(item).is_some(), "{item}");
        }
        // It recompiles from its metadata alone (a shard's merge does).
        let again = Rule::compile(rule.meta.clone()).unwrap();
        assert_eq!(again.query.temporal().unwrap().chain, t.chain);
        assert_eq!(again.evidence.len(), rule.evidence.len());
    }

    #[test]
    fn a_correlation_names_rules_of_other_files_of_the_pack() {
        let (rules, correlation) =
            TEMPORAL.split_at(TEMPORAL.find("---\ntitle: Login then").unwrap());
        let files = load_pack(&[rules, correlation], None).unwrap();
        assert_eq!(files.len(), 2);
        assert!(matches!(&files[1][0], Loaded::Runs(_)));
        assert!(files[0].iter().all(|l| matches!(l, Loaded::NotRun(_))));
        // Alone, the correlation's file says what it lacks.
        let alone = load_text(correlation, None).unwrap();
        let Loaded::NotRun(n) = &alone[0] else {
            panic!("the rules it names are elsewhere");
        };
        assert!(
            n.reason.contains("\"login\", which no file"),
            "{}",
            n.reason
        );
    }

    #[test]
    fn a_temporal_correlation_that_cannot_be_replayed_says_why() {
        let cases = [
            // A rule it names does not run: its reason is given.
            (
                TEMPORAL.replace("Operation: New-InboxRule", "Operation|windash: '-x'"),
                "\"t-1\" does not run: selection s: ",
            ),
            (
                TEMPORAL.replace("            inbox_rule: MailboxOwnerUPN\n", ""),
                "alias \"actor\" names no field for rule \"t-1\"",
            ),
            (
                TEMPORAL.replace("timespan: 1h", "timespan: 1 hour"),
                "timespan",
            ),
            (
                TEMPORAL.replace("rules: [login, t-1]", "rules: [login, login]"),
                "twice",
            ),
            (
                TEMPORAL.replace(
                    "    timespan: 1h",
                    "    timespan: 1h\n    condition: {gte: 1}",
                ),
                "which of them must keep the order",
            ),
            (
                TEMPORAL.replace("temporal_ordered", "temporal").replace(
                    "    timespan: 1h",
                    "    timespan: 1h\n    condition: {gte: 3}",
                ),
                "(at least 3): no number of its 2 rules satisfies it",
            ),
            (
                // The outer groups by a field the inner correlation's firings lack.
                format!(
                    "{TEMPORAL}---\ntitle: Chained\nid: ch\ncorrelation: {{type: temporal, \
                     rules: [tc-1, login], group-by: [UserId], timespan: 1h}}\n"
                ),
                "\"UserId\" is not among the group-by fields of the correlation rule \"tc-1\"",
            ),
        ];
        for (text, why) in cases {
            let loaded = load_text(&text, None).unwrap();
            let reasons: Vec<&str> = loaded
                .iter()
                .filter_map(|l| match l {
                    Loaded::NotRun(n) if n.rule_type.starts_with("sigma temporal") => {
                        Some(n.reason.as_str())
                    }
                    _ => None,
                })
                .collect();
            assert!(
                reasons.iter().any(|r| r.contains(why)),
                "{why}: {reasons:?}"
            );
        }
    }

    /// The specification's example of a chain, on audit records: many failed logins
    /// (event_count) followed by a successful login (temporal_ordered), by user.
    const CHAIN: &str = "title: Correlation - Multiple Failed Logins Followed by Successful Login
id: b180ead8-d58f-40b2-ae54-c8940995b9b6
level: high
correlation:
    type: temporal_ordered
    rules:
        - multiple_failed_login
        - successful_login
    group-by:
        - UserId
    timespan: 10m
---
title: Multiple failed logons
id: a8418a5a-5fc4-46b5-b23b-6c73beb19d41
name: multiple_failed_login
correlation:
    type: event_count
    rules:
        - failed_login
    group-by:
        - UserId
    timespan: 10m
    condition:
        gte: 3
---
title: Single failed login
id: 53ba33fd-3a50-4468-a5ef-c583635cfa92
name: failed_login
logsource: {product: azure, service: m365}
detection:
    selection: {Operation: UserLoginFailed}
    condition: selection
---
title: Successful login
id: 4d0a2c83-c62c-4ed4-b475-c7e23a9269b8
name: successful_login
logsource: {product: azure, service: m365}
detection:
    selection: {Operation: UserLoggedIn}
    condition: selection
";

    fn reason(l: &Loaded) -> String {
        match l {
            Loaded::NotRun(n) => n.reason.clone(),
            Loaded::Runs(r) => panic!("{} runs", r.meta.name),
        }
    }

    #[test]
    fn a_chained_correlation_replays_the_correlation_it_names() {
        let loaded = load_text(CHAIN, None).unwrap();
        assert_eq!(loaded.len(), 4);
        let Loaded::Runs(outer) = &loaded[0] else {
            panic!("the chain runs: {}", reason(&loaded[0]));
        };
        let t = outer.query.temporal().expect("replayed");
        assert_eq!(t.chain.inputs.len(), 2);
        let correlation::Input::Correlation { node, group, value } = &t.chain.inputs[0] else {
            panic!("the first rule it names is a correlation");
        };
        assert_eq!((group.as_slice(), value), (&[0][..], &None));
        assert_eq!(
            node.kind,
            correlation::Kind::Count {
                condition: Condition::at_least(3),
                distinct: false,
                span: 600_000,
            }
        );
        assert_eq!(t.chain.inputs[1], correlation::Input::Rule(1));
        assert_eq!(t.titles, vec!["Multiple failed logons", "Successful login"]);
        // Per spec, the rules a correlation names report only through it: the inner
        // correlation and both detection rules.
        assert!(reason(&loaded[1]).contains("named by the correlation rule"));
        assert!(reason(&loaded[2]).contains("counted by the correlation rule"));
        assert!(reason(&loaded[3]).contains("counted by the correlation rule"));
        // It recompiles from its metadata alone (a shard's merge does).
        let again = Rule::compile(outer.meta.clone()).unwrap();
        assert_eq!(again.query.temporal().unwrap().chain, t.chain);
        assert_eq!(again.query.to_string(), outer.query.to_string());
        // `generate: true` on the outer one: the inner correlation runs on its own (a
        // threshold), and so does the successful login; the failed login is still named
        // by the inner one, which does not generate.
        let generating = CHAIN.replace(
            "    timespan: 10m\n---",
            "    timespan: 10m\n    generate: true\n---",
        );
        let loaded = load_text(&generating, None).unwrap();
        let Loaded::Runs(inner) = &loaded[1] else {
            panic!("the inner correlation runs: {}", reason(&loaded[1]));
        };
        assert!(inner.meta.alerting.is_some());
        assert!(reason(&loaded[2]).contains("Multiple failed logons"));
        assert!(matches!(&loaded[3], Loaded::Runs(_)));
    }

    #[test]
    fn a_chain_with_a_cycle_or_too_deep_is_refused() {
        let cycle = "title: A\nname: a\ncorrelation: {type: event_count, rules: [b], group-by: [UserId], timespan: 1m, condition: {gte: 1}}
---
title: B\nname: b\ncorrelation: {type: event_count, rules: [a], group-by: [UserId], timespan: 1m, condition: {gte: 1}}
";
        let loaded = load_text(cycle, None).unwrap();
        for l in &loaded {
            assert!(reason(l).contains("(a cycle)"), "{}", reason(l));
        }
        let selfish = "title: A\nname: a\ncorrelation: {type: event_count, rules: [a], group-by: [UserId], timespan: 1m, condition: {gte: 1}}\n";
        // Naming itself: a rule never names itself, so `a` is not defined elsewhere.
        assert!(reason(&load_text(selfish, None).unwrap()[0]).contains("no file"));
        // A chain nine correlations deep: c0 names c1 … c8 names the login rule.
        let mut deep = String::from(
            "title: Login\nname: login\nlogsource: {product: azure, service: m365}\ndetection: {s: {Operation: UserLoggedIn}, condition: s}\n",
        );
        for n in 0..9 {
            let inner = if n == 8 {
                "login".to_string()
            } else {
                format!("c{}", n + 1)
            };
            deep.push_str(&format!(
                "---\ntitle: C{n}\nname: c{n}\ncorrelation: {{type: event_count, rules: [{inner}], group-by: [UserId], timespan: 1h, condition: {{gte: 1}}}}\n"
            ));
        }
        let loaded = load_text(&deep, None).unwrap();
        assert!(
            reason(&loaded[1]).contains("more than 8 correlations deep"),
            "{}",
            reason(&loaded[1])
        );
        // Eight deep runs.
        let Loaded::Runs(_) = &loaded[2] else {
            panic!("c1 … c8 run: {}", reason(&loaded[2]));
        };
    }

    #[test]
    fn an_outer_value_count_counts_a_field_the_inner_group_has() {
        let text = format!(
            "{CHAIN}---\ntitle: Outer\nid: o\ncorrelation: {{type: value_count, rules: [multiple_failed_login], group-by: [], timespan: 1d, condition: {{field: UserId, gte: 2}}}}\n"
        );
        let loaded = load_text(&text, None).unwrap();
        let Loaded::Runs(outer) = &loaded[4] else {
            panic!("runs: {}", reason(&loaded[4]));
        };
        let t = outer.query.temporal().unwrap();
        let correlation::Input::Correlation { group, value, .. } = &t.chain.inputs[0] else {
            panic!("a correlation input");
        };
        assert_eq!((group.len(), *value), (0, Some(0)));
        let missing = text.replace("field: UserId", "field: ClientIP");
        let loaded = load_text(&missing, None).unwrap();
        assert!(reason(&loaded[4]).contains("\"ClientIP\" is not among the group-by fields"));
    }

    #[test]
    fn a_chain_whose_correlations_multiply_is_refused_not_built() {
        // Seven levels of three correlations, each naming the three of the level below:
        // 3^7 places, built in an instant as a refusal.
        let mut text = String::from(
            "title: Login\nname: login\nlogsource: {product: azure, service: m365}\ndetection: {s: {Operation: UserLoggedIn}, condition: s}\n",
        );
        for level in 0..7 {
            for k in 0..3 {
                let below = if level == 6 {
                    "login".to_string()
                } else {
                    format!("l{}a, l{}b, l{}c", level + 1, level + 1, level + 1)
                };
                let me = format!("l{level}{}", ["a", "b", "c"][k]);
                text.push_str(&format!(
                    "---\ntitle: {me}\nname: {me}\ncorrelation: {{type: event_count, rules: [{below}], group-by: [UserId], timespan: 1h, condition: {{gte: 1}}}}\n"
                ));
            }
        }
        let loaded = load_text(&text, None).unwrap();
        assert!(
            reason(&loaded[1]).contains("more than 256 rules named in all"),
            "{}",
            reason(&loaded[1])
        );
    }
}
