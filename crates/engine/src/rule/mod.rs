//! Rules as data: published metadata plus a query text (KQL, an EQL event query, or
//! ES|QL), compiled once.
//!
//! Place in the flow: `Config` holds the compiled rules; `prefilter` takes the literals
//! they require; `scan` evaluates them against each parsed candidate and, on a match,
//! reads the rule's evidence fields. Nothing here knows about bytes, chunks or files.

/// KQL over the ECS view of audit records: `ualhunt_query`'s language with
/// [`Field`] as its field type.
pub mod kql {
    pub use ualhunt_query::kql::*;

    /// A KQL query over the ECS fields of audit records.
    pub type Query = ualhunt_query::kql::Query<crate::field::Field>;
}

/// EQL over the ECS view of audit records: `ualhunt_query`'s language with [`Field`]
/// as its field type.
pub mod eql {
    pub use ualhunt_query::eql::*;

    /// An EQL query over the ECS fields of audit records.
    pub type Query = ualhunt_query::eql::Query<crate::field::Field>;
}
/// ES|QL over the ECS view of audit records: `ualhunt_query`'s language with [`Field`]
/// as its field type. The scan evaluates its per-record part; its post part runs per
/// rule run in `analysis::esql`.
pub mod esql {
    pub use ualhunt_query::esql::*;

    /// An ES|QL query over the ECS fields of audit records.
    pub type Query = ualhunt_query::esql::Query<crate::field::Field>;

    /// What some record of a rule run must meet for the run to return a row.
    pub type Trigger = ualhunt_query::esql::Trigger<crate::field::Field>;
}
pub mod load;
pub mod lookup;
pub mod sigma;

use std::fmt;

use serde::{Deserialize, Serialize};
use ualhunt_query::Branches;
use ualhunt_query::correlation::Condition;

use crate::enrich::{Derived, Enrichment, marked_key};
use crate::field::{Field, Fields};
use crate::prefilter::Alternative;

/// What a run searches for a query ([`Query::searched`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Searched {
    /// The literals one of which every matching line holds (`None`: every line is a
    /// candidate).
    pub literals: Option<Vec<String>>,
    /// Literal sets a matching line holds a literal of each.
    pub conjuncts: Vec<Vec<String>>,
    /// The query's alternatives ([`ualhunt_query::Branches`], keys resolved as the
    /// conjuncts' are): empty when it has fewer than two or a field lacks its database.
    pub branches: Branches,
    /// A field (GeoIP, ASN) every match needs a value of that the run cannot derive
    /// without a database: its key is what is searched for, so no raw record is a
    /// candidate, only an ECS document carrying the field.
    pub unenriched: Option<Derived>,
}

impl Searched {
    /// The ways a line may meet the query, for the router
    /// ([`crate::prefilter::Router::with_alternatives`]), when a line is a candidate
    /// for it by holding one of `required` (its literals, or a trigger's): one per
    /// branch, requiring the branch's own set of them where it has one (a branch's set
    /// all of whose literals are required: only lines holding it meet the branch), and
    /// needing every conjunct of the whole plus the branch's sets; one, the whole's,
    /// when there are no branches or nothing is required.
    pub fn alternatives(&self, required: Option<&Vec<String>>) -> Vec<Alternative> {
        let whole = || vec![(required.cloned(), self.conjuncts.clone())];
        let Some(required) =
            required.filter(|_| self.literals.is_some() && self.branches.len() >= 2)
        else {
            return whole();
        };
        let mut out: Vec<Alternative> = Vec::new();
        for branch in &self.branches {
            let own = branch
                .iter()
                .filter(|set| !set.is_empty() && set.iter().all(|l| required.contains(l)))
                .min_by_key(|set| set.len())
                .unwrap_or(required);
            // A set holding all of the branch's own literals is met by every line
            // routed to it: not checked.
            let mut sets = self.conjuncts.clone();
            sets.extend(branch.iter().cloned());
            sets.retain(|set| !own.iter().all(|l| set.contains(l)));
            let alternative = (Some(own.clone()), sets);
            if !out.contains(&alternative) {
                out.push(alternative);
            }
        }
        out
    }
}

/// A rule's query in its language: the one interface the scan, the prefilter and
/// `ualhunt rules` use, whatever the language.
#[derive(Clone, Debug)]
pub enum Query {
    /// A KQL query (`language = "kuery"`, and every context selection).
    Kql(kql::Query),
    /// An EQL query (`language = "eql"`): an event query, or a sequence, whose step
    /// matches the scan collects and `analysis::sequence` replays in time order.
    Eql(eql::Query),
    /// An ES|QL query (`language = "esql"`): a record matches when its per-record part
    /// gives it a row; what alerts is decided per rule run (`analysis::esql`).
    Esql(Box<esql::Query>),
    /// A Sigma rule's detection over the fields its field mapping names (`language =
    /// "sigma"`).
    Sigma(Box<sigma::SigmaQuery>),
}

impl Query {
    /// Whether a record matches; for an EQL sequence, whether it matches one of its
    /// steps (or its `until`), so that the replay sees it.
    pub fn matches(&self, record: &dyn Fields<Field>) -> bool {
        match self {
            Query::Kql(q) => q.matches(record),
            Query::Eql(eql::Query::Sequence(seq)) => seq.matches_any(record),
            Query::Eql(q) => q.matches(record),
            Query::Esql(q) => q.matches(record),
            Query::Sigma(q) => q.matches(record),
        }
    }

    /// The EQL sequence, if the query is one.
    pub fn sequence(&self) -> Option<&eql::Sequence<Field>> {
        match self {
            Query::Eql(eql::Query::Sequence(seq)) => Some(seq),
            _ => None,
        }
    }

    /// The Sigma temporal correlation, if the query is one.
    pub fn temporal(&self) -> Option<&sigma::Temporal> {
        match self {
            Query::Sigma(q) => q.temporal(),
            _ => None,
        }
    }

    /// Whether its matches are steps that `analysis::sequence` replays (an EQL
    /// sequence, a Sigma temporal correlation).
    pub fn is_replayed(&self) -> bool {
        self.sequence().is_some() || self.temporal().is_some()
    }

    /// The literals one of which every matching line holds (`None`: every line is
    /// parsed); see `ualhunt_query`'s `required_literals` of each language. A GeoIP or
    /// ASN field's key is marked (`enrich::KEY_MARK`): a run searches
    /// [`Query::searched`], which resolves it.
    pub fn required_literals(&self) -> Option<Vec<String>> {
        match self {
            Query::Kql(q) => q.required_literals(),
            Query::Eql(q) => q.required_literals(),
            Query::Esql(q) => q.required_literals(),
            Query::Sigma(q) => q.required_literals(),
        }
    }

    /// Literal sets a matching line holds a literal of each.
    pub fn required_conjuncts(&self) -> Vec<Vec<String>> {
        match self {
            Query::Kql(q) => q.required_conjuncts(),
            Query::Eql(q) => q.required_conjuncts(),
            Query::Esql(q) => q.required_conjuncts(),
            Query::Sigma(q) => q.required_conjuncts(),
        }
    }

    /// The query's prefilter as alternatives (a disjunction's sides); see each
    /// language's `required_branches` (one branch of [`Query::required_conjuncts`]
    /// where the language gives none).
    pub fn required_branches(&self) -> Branches {
        match self {
            Query::Kql(q) => q.required_branches(),
            Query::Sigma(q) => q.required_branches(),
            _ => vec![self.required_conjuncts()],
        }
    }

    /// What a run with `enrichment` searches for this query: its literals and literal
    /// sets with every GeoIP or ASN field's key resolved ([`Enrichment::resolve`]), and
    /// where a set of them is only keys of fields the run cannot derive (no raw record
    /// has a value: only an ECS document carrying the field can match), that set as the
    /// literals searched for, the query's own literals then checked as one more set.
    pub fn searched(&self, enrichment: &Enrichment) -> Searched {
        let literals = self.required_literals();
        let mut conjuncts = self.required_conjuncts();
        let lacking = conjuncts
            .iter()
            .chain(&literals)
            .find(|set| enrichment.lacks_all(set))
            .cloned();
        let literals = match &lacking {
            Some(set) => {
                conjuncts.extend(literals);
                Some(set.clone())
            }
            None => literals,
        };
        let conjuncts: Vec<Vec<String>> = conjuncts
            .iter()
            .filter_map(|set| enrichment.resolve(set))
            .collect();
        // Literals that were a derived field's key the run reads from a database
        // require nothing: another set every match needs does (the one whose shortest
        // literal is longest, the likeliest rare).
        let literals = match literals {
            Some(set) => enrichment.resolve(&set).or_else(|| {
                conjuncts
                    .iter()
                    .filter(|set| !set.is_empty())
                    .max_by_key(|set| set.iter().map(String::len).min())
                    .cloned()
            }),
            None => None,
        };
        let branches = match lacking {
            Some(_) => Vec::new(),
            None => self
                .required_branches()
                .iter()
                .map(|branch| {
                    branch
                        .iter()
                        .filter_map(|set| enrichment.resolve(set))
                        .collect()
                })
                .collect(),
        };
        Searched {
            literals,
            conjuncts,
            branches: if branches.len() < 2 {
                Vec::new()
            } else {
                branches
            },
            unenriched: lacking.and_then(|set| set.first().and_then(|l| marked_key(l))),
        }
    }

    /// An aggregating ES|QL query's trigger: a literal-bearing condition that some record
    /// of a rule run must meet for the run to return a row (`ualhunt_query`'s
    /// `esql::Trigger`); `None` for every other query.
    pub fn trigger(&self) -> Option<esql::Trigger> {
        match self {
            Query::Esql(q) => q.trigger(),
            _ => None,
        }
    }

    /// Every field the query reads.
    pub fn fields(&self) -> Vec<&Field> {
        match self {
            Query::Kql(q) => q.fields(),
            Query::Eql(q) => q.fields(),
            Query::Esql(q) => q.fields(),
            Query::Sigma(q) => q.fields(),
        }
    }
}

impl fmt::Display for Query {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Query::Kql(q) => q.fmt(f),
            Query::Eql(q) => q.fmt(f),
            Query::Esql(q) => q.fmt(f),
            Query::Sigma(q) => q.fmt(f),
        }
    }
}

/// The built-in rule, as published by Elastic.
const BUILTIN: &str = include_str!("../../rules/o365_mailbox_audit_bypass.toml");

/// A rule's published description.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct RuleMeta {
    /// Elastic's `rule_id`.
    pub id: String,
    /// The rule's name.
    pub name: String,
    /// A later name of the same rule upstream, if any.
    #[serde(default)]
    pub renamed: Option<String>,
    /// What the rule detects.
    #[serde(default)]
    pub description: String,
    /// Elastic rule type (`query`).
    #[serde(rename = "type", default)]
    pub rule_type: String,
    /// Query language (`kuery`; `eql` for an EQL event query).
    #[serde(default)]
    pub language: String,
    /// Index patterns the rule runs on in Elastic.
    #[serde(default)]
    pub index: Vec<String>,
    /// `low`, `medium`, `high` or `critical`.
    pub severity: String,
    /// 0–100.
    pub risk_score: u32,
    /// How Elastic schedules the rule.
    #[serde(default)]
    pub schedule: String,
    /// Known benign causes.
    #[serde(default)]
    pub false_positives: Vec<String>,
    /// The KQL query text, as published.
    pub query: String,
    /// MITRE ATT&CK mapping.
    #[serde(default)]
    pub threat: Vec<Threat>,
    /// The analyses that read the rule's findings (`by_actor`, `mailbox_audit_bypass`).
    #[serde(default = "default_analyses")]
    pub analyses: Vec<String>,
    /// What a finding shows besides actor, time, record id and source IP, in order.
    #[serde(default)]
    pub evidence: Vec<EvidenceSpec>,
    /// Records selected beside the rule's matches, as context (never findings).
    #[serde(default)]
    pub context: Vec<ContextSpec>,
    /// What decides which of the query's matches alert (Elastic's `new_terms` and
    /// `threshold` rule types); none: every match does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alerting: Option<Alerting>,
    /// Who wrote the rule (a Sigma rule's `author`: the Detection Rule License asks that
    /// every report of its matches keep it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    /// Where to read more (a Sigma rule's `references`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub references: Vec<String>,
    /// A Sigma rule's field mapping, when it is not the built-in one (its YAML text).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sigma_mapping: Option<String>,
    /// The rule's investigation guide (Elastic's `note`, Markdown: triage, investigation
    /// steps, response). The HTML report shows it once per rule that fired; no
    /// per-finding output repeats it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// What the rule needs set up to work (Elastic's `setup`, Markdown); shown beside
    /// the guide.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub setup: Option<String>,
    /// Elastic's `building_block_type` (`"default"`): the rule makes signals for other
    /// rules to build on, not alerts. Its findings are marked in every report and, unless
    /// `--building-blocks`, count neither in the verdict nor in the exit status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub building_block: Option<String>,
}

impl RuleMeta {
    /// The rule's name as every text output shows it: with its author when it has one
    /// (`Name (by Author)`), as the Detection Rule License asks of Sigma rules' reports.
    pub fn shown_name(&self) -> std::borrow::Cow<'_, str> {
        match self.author.as_deref().map(str::trim) {
            Some(author) if !author.is_empty() => format!("{} (by {author})", self.name).into(),
            _ => self.name.as_str().into(),
        }
    }

    /// Whether the rule is a building block (see [`RuleMeta::building_block`]).
    pub fn is_building_block(&self) -> bool {
        self.building_block.is_some()
    }

    /// Whether the rule's findings go to the mailbox audit bypass investigation.
    pub fn is_bypass(&self) -> bool {
        self.analyses.iter().any(|a| a == ANALYSIS_BYPASS)
    }
}

/// How a `new_terms` or `threshold` rule turns its query's matches into alerts, replayed
/// over the matches' own times (`analysis::alerting`).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Alerting {
    /// A match alerts when no earlier match in the `history` before it had the same
    /// values of all `fields` (Elastic's `new_terms`).
    NewTerms {
        /// The terms' fields (ECS names); a match without a value for one never alerts.
        fields: Vec<String>,
        /// How far back a term counts as seen, in seconds (`history_window_start`).
        history: i64,
    },
    /// Matches grouped by their values of `fields` alert together when `value` of them
    /// fall within `window` (Elastic's `threshold`).
    Threshold {
        /// The group's fields (none: all matches are one group).
        fields: Vec<String>,
        /// How many matches make an alert.
        value: u64,
        /// Also needed: at least this many distinct values of the field.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cardinality: Option<(String, u64)>,
        /// The rule's look-back (`from`), in seconds.
        window: i64,
        /// A Sigma correlation's condition's upper bound on what it counts (the distinct
        /// values with `cardinality`, else the matches): at most this many.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        at_most: Option<u64>,
        /// Likewise, a count that does not alert (`neq`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        not: Option<u64>,
    },
    /// The rows an ES|QL query returns, run after run: every `interval` over the
    /// `window` before (Elastic's `esql` rule type; `analysis::esql`).
    Esql {
        /// The rule's look-back (`from`), in seconds.
        window: i64,
        /// How often the rule runs (`interval`), in seconds.
        interval: i64,
    },
}

/// The name of the evidence item that says why a match alerted (`new_terms`,
/// `threshold`, `esql`).
pub const ALERT_EVIDENCE: &str = "alert";

impl RuleMeta {
    /// Whether the rule is an EQL sequence (its findings are completed sequences, its
    /// held-back matches step matches in none): it has the `sequence` evidence item.
    pub fn is_sequence(&self) -> bool {
        self.evidence
            .iter()
            .any(|e| e.kind == EvidenceKind::Sequence)
    }
}

/// The name of the evidence item that holds an ES|QL rule's rows of a record.
pub const ESQL_ROWS_EVIDENCE: &str = "esql_rows";

impl Alerting {
    /// What is wrong with it, if anything.
    pub fn invalid(&self) -> Option<String> {
        let span_ok = |s: i64| s > 0 && s <= MAX_SPAN;
        match self {
            Alerting::NewTerms { fields, history } if fields.is_empty() || !span_ok(*history) => {
                Some(format!(
                    "new terms need at least one field and a history window of 1 s to {}",
                    span(MAX_SPAN)
                ))
            }
            Alerting::Threshold { value, window, .. } if *value == 0 || !span_ok(*window) => {
                Some(format!(
                    "a threshold needs a value of at least 1 and a look-back of 1 s to {}",
                    span(MAX_SPAN)
                ))
            }
            Alerting::Esql { window, interval } if !span_ok(*window) || !span_ok(*interval) => {
                Some(format!(
                    "an ES|QL rule needs a look-back and an interval of 1 s to {}",
                    span(MAX_SPAN)
                ))
            }
            _ => None,
        }
    }

    /// A threshold's conditions: on its number of matches, and, with a cardinality, on
    /// the number of distinct values of that field (`None`: not a threshold).
    pub fn counts(&self) -> Option<(Condition, Option<(&str, Condition)>)> {
        let Alerting::Threshold {
            value,
            cardinality,
            at_most,
            not,
            ..
        } = self
        else {
            return None;
        };
        let bounded = |min: u64| Condition {
            min,
            max: *at_most,
            not: *not,
        };
        Some(match cardinality {
            None => (bounded(*value), None),
            Some((field, n)) => (
                Condition::at_least(*value),
                Some((field.as_str(), bounded(*n))),
            ),
        })
    }

    /// The fields whose values alerting reads.
    pub fn fields(&self) -> Vec<&str> {
        match self {
            Alerting::NewTerms { fields, .. } => fields.iter().map(String::as_str).collect(),
            Alerting::Threshold {
                fields,
                cardinality,
                ..
            } => fields
                .iter()
                .map(String::as_str)
                .chain(cardinality.iter().map(|(f, _)| f.as_str()))
                .collect(),
            // Its query's rows carry what it reads (the `esql_rows` item).
            Alerting::Esql { .. } => Vec::new(),
        }
    }
}

impl fmt::Display for Alerting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Alerting::NewTerms { fields, history } => write!(
                f,
                "new terms: a value of {} not seen in the {} before",
                fields.join(" + "),
                span(*history)
            ),
            Alerting::Threshold { fields, window, .. } => {
                let Some((events, distinct)) = self.counts() else {
                    return Ok(());
                };
                match distinct {
                    None if events.is_at_least() => write!(
                        f,
                        "threshold: {} match{}",
                        events.min,
                        if events.min == 1 { "" } else { "es" }
                    )?,
                    None => write!(f, "threshold: {events} matches")?,
                    Some(_) => write!(
                        f,
                        "threshold: {} match{}",
                        events.min,
                        if events.min == 1 { "" } else { "es" }
                    )?,
                }
                if !fields.is_empty() {
                    write!(f, " with the same {}", fields.join(" + "))?;
                }
                if let Some((field, c)) = distinct {
                    if c.is_at_least() {
                        write!(f, " and {} distinct {field}", c.min)?;
                    } else {
                        write!(f, " and {c} distinct {field}")?;
                    }
                }
                write!(f, " within {}", span(*window))
            }
            Alerting::Esql { window, interval } => write!(
                f,
                "ES|QL: the rows the query returns, run every {} over the {} before",
                span(*interval),
                span(*window)
            ),
        }
    }
}

/// `30m`, `14d`, `56m58s`, `1d2h`: a span of seconds in days, hours, minutes and
/// seconds, largest first, the units it has none of left out (`0s` for none).
pub fn span(seconds: i64) -> String {
    if seconds == 0 {
        return "0s".into();
    }
    let mut text = if seconds < 0 { "-" } else { "" }.to_string();
    let mut rest = seconds.unsigned_abs();
    for (unit, len) in [("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)] {
        if rest >= len {
            text.push_str(&format!("{}{unit}", rest / len));
            rest %= len;
        }
    }
    text
}

/// The longest history or look-back a rule may have: 100 years, in seconds.
pub const MAX_SPAN: i64 = 100 * 366 * 86_400;

/// Elastic's relative time `now-14d` (units `s`, `m`, `h`, `d`, `w`) as seconds, at most
/// [`MAX_SPAN`].
pub fn parse_relative(text: &str) -> Option<i64> {
    let rest = text.trim().strip_prefix("now-")?;
    let unit = rest.chars().last()?;
    let n: i64 = rest[..rest.len() - unit.len_utf8()].parse().ok()?;
    let len = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3_600,
        'd' => 86_400,
        'w' => 604_800,
        _ => return None,
    };
    (n > 0)
        .then(|| n.checked_mul(len))
        .flatten()
        .filter(|&s| s <= MAX_SPAN)
}

/// Parses a rule's EQL query (an event query or a sequence).
fn compile_eql(name: &str, text: &str) -> Result<eql::Query, RuleError> {
    eql::Query::parse(text).map_err(|source| RuleError::Eql {
        name: name.to_string(),
        source,
    })
}

fn default_analyses() -> Vec<String> {
    vec![ANALYSIS_BY_ACTOR.to_string()]
}

/// The grouping of findings by actor.
pub const ANALYSIS_BY_ACTOR: &str = "by_actor";
/// The mailbox audit bypass investigation.
pub const ANALYSIS_BYPASS: &str = "mailbox_audit_bypass";
const KNOWN_ANALYSES: [&str; 2] = [ANALYSIS_BY_ACTOR, ANALYSIS_BYPASS];

/// One MITRE ATT&CK mapping.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct Threat {
    /// Tactic id and name.
    pub tactic: String,
    /// Technique id and name.
    pub technique: String,
    /// Sub-technique id and name.
    #[serde(default)]
    pub subtechnique: Option<String>,
}

/// One item of a finding's evidence, as a rule file declares it.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct EvidenceSpec {
    /// The name it has in every output.
    pub name: String,
    /// ECS fields it is read from: the first one that has a value.
    #[serde(default)]
    pub fields: Vec<String>,
    /// How the value is read.
    #[serde(rename = "type", default)]
    pub kind: EvidenceKind,
}

/// How an evidence value is read from a record.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EvidenceKind {
    /// The text as it is.
    #[default]
    Keyword,
    /// `True`/`False`/`$true`/`$false` (any case), `1`/`0`: a boolean.
    Flag,
    /// The `UserType` number, named (`2` -> `Admin`).
    UserType,
    /// The cmdlet rebuilt from the record's `Parameters`.
    CommandLine,
    /// Why the match alerted, written by the rule's alerting (`new_terms`, `threshold`,
    /// `esql`), not read from the record.
    Alert,
    /// An EQL sequence's match: in the scan, which steps the record matched and on
    /// which join keys; once replayed, the sequence's steps, keys and span
    /// (`analysis::sequence`).
    Sequence,
    /// Step N of a completed EQL sequence (its record's time, path:line and id),
    /// written by the replay.
    Step,
    /// The rows an ES|QL query's per-record part gives the record (the columns its
    /// post part reads), written by the scan for `analysis::esql`.
    EsqlRows,
}

impl EvidenceKind {
    /// Whether the item is read from fields it names (every kind but the command line,
    /// the alert, the sequence's items and the ES|QL rows).
    pub fn reads_fields(self) -> bool {
        !matches!(
            self,
            EvidenceKind::CommandLine
                | EvidenceKind::Alert
                | EvidenceKind::Sequence
                | EvidenceKind::Step
                | EvidenceKind::EsqlRows
        )
    }
}

/// A context selection: a second class of records with its own query (and so its own
/// prefilter literals), handed to the analyses beside the rule's matches.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct ContextSpec {
    /// Its name in outputs (`failed_attempt`).
    pub name: String,
    /// Its KQL query.
    pub query: String,
}

/// The evidence items that the analyses and every output read by their role, resolved
/// once per rule: each is the item's index in a finding's `fields` (see
/// [`Finding::field`](crate::findings::Finding::field)), so nothing looks an item up by
/// name per finding.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Items {
    /// `target`: whom the change was made to.
    pub target: Option<usize>,
    /// `command_line`: the cmdlet with its parameters.
    pub command_line: Option<usize>,
    /// `result_status`.
    pub result_status: Option<usize>,
    /// `user_type`.
    pub user_type: Option<usize>,
    /// `user_agent`.
    pub user_agent: Option<usize>,
    /// `tenant`.
    pub tenant: Option<usize>,
    /// `organization_id`.
    pub organization_id: Option<usize>,
    /// The first item of the flag kind (the bypass rule's `AuditBypassEnabled`).
    pub flag: Option<usize>,
}

impl Items {
    /// The roles of a rule's evidence items.
    pub fn of(evidence: &[EvidenceSpec]) -> Items {
        let named = |name: &str| evidence.iter().position(|e| e.name == name);
        Items {
            target: named("target"),
            command_line: named("command_line"),
            result_status: named("result_status"),
            user_type: named("user_type"),
            user_agent: named("user_agent"),
            tenant: named("tenant"),
            organization_id: named("organization_id"),
            flag: evidence.iter().position(|e| e.kind == EvidenceKind::Flag),
        }
    }
}

/// A rule ready to run: its metadata, parsed queries and resolved evidence fields.
#[derive(Clone, Debug)]
pub struct Rule {
    /// Its evidence items by role.
    pub items: Items,
    /// Published metadata.
    pub meta: RuleMeta,
    /// The parsed query.
    pub query: Query,
    /// Evidence items, their fields resolved.
    pub evidence: Vec<Evidence>,
    /// Context selections, their queries parsed.
    pub contexts: Vec<Query>,
    /// The file it was loaded from (`None`: built in).
    pub path: Option<String>,
}

/// An evidence item ready to read.
#[derive(Clone, Debug)]
pub struct Evidence {
    /// Its name in outputs.
    pub name: String,
    /// Its fields, resolved.
    pub fields: Vec<Field>,
    /// How it is read.
    pub kind: EvidenceKind,
}

/// Names an evidence item may not take: the fields every finding has.
const RESERVED: [&str; 12] = [
    "rule_id",
    "path",
    "member",
    "line",
    "offset",
    "timestamp",
    "record_id",
    "source_ip",
    "actor",
    "change",
    "allowed",
    "outcome",
];

/// A rule that could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum RuleError {
    /// The rule file is not valid TOML or lacks a field.
    #[error("rule file: {0}")]
    Toml(#[from] toml::de::Error),
    /// The query text does not parse.
    #[error("rule {name:?}: {source}")]
    Query {
        /// The rule's name.
        name: String,
        /// What was wrong with the query.
        source: kql::ParseError,
    },
    /// The ES|QL query text does not parse, or uses what is not supported.
    #[error("rule {name:?}: {source}")]
    Esql {
        /// The rule's name.
        name: String,
        /// What was wrong with the query.
        source: esql::ParseError,
    },
    /// The EQL query text does not parse, or is a sequence.
    #[error("rule {name:?}: {source}")]
    Eql {
        /// The rule's name.
        name: String,
        /// What was wrong with the query.
        source: eql::ParseError,
    },
    /// The rule file declares something ualhunt does not know.
    #[error("rule {name:?}: {message}")]
    Invalid {
        /// The rule's name.
        name: String,
        /// What is wrong.
        message: String,
    },
}

impl Rule {
    /// Compiles a rule from its TOML description.
    pub fn from_toml(text: &str) -> Result<Rule, RuleError> {
        let meta: RuleMeta = toml::from_str(text)?;
        Rule::compile(meta)
    }

    /// Compiles a rule from its metadata. A rule with alerting gets an evidence item per
    /// field alerting reads (named after it) and the `alert` item, unless it has them.
    pub fn compile(mut meta: RuleMeta) -> Result<Rule, RuleError> {
        let sequence = match meta.language.as_str() {
            "eql" => Some(compile_eql(&meta.name, &meta.query)?),
            _ => None,
        };
        if let Some(steps) = sequence.as_ref().and_then(|q| match q {
            eql::Query::Sequence(seq) => Some(seq.expanded().len()),
            eql::Query::Event(_) => None,
        }) {
            crate::analysis::sequence::add_evidence(&mut meta.evidence, steps);
        }
        if let Some(alerting) = &meta.alerting {
            for field in alerting.fields() {
                if !meta.evidence.iter().any(|e| e.name == field) {
                    meta.evidence.push(EvidenceSpec {
                        name: field.to_string(),
                        fields: vec![field.to_string()],
                        kind: EvidenceKind::Keyword,
                    });
                }
            }
            if matches!(alerting, Alerting::Esql { .. })
                && !meta.evidence.iter().any(|e| e.name == ESQL_ROWS_EVIDENCE)
            {
                meta.evidence.push(EvidenceSpec {
                    name: ESQL_ROWS_EVIDENCE.to_string(),
                    fields: Vec::new(),
                    kind: EvidenceKind::EsqlRows,
                });
            }
            if !meta.evidence.iter().any(|e| e.name == ALERT_EVIDENCE) {
                meta.evidence.push(EvidenceSpec {
                    name: ALERT_EVIDENCE.to_string(),
                    fields: Vec::new(),
                    kind: EvidenceKind::Alert,
                });
            }
        }
        let parse = |text: &str| {
            kql::Query::parse(text)
                .map(Query::Kql)
                .map_err(|source| RuleError::Query {
                    name: meta.name.clone(),
                    source,
                })
        };
        let invalid = |message: String| RuleError::Invalid {
            name: meta.name.clone(),
            message,
        };
        if let Some(why) = meta.alerting.as_ref().and_then(Alerting::invalid) {
            return Err(invalid(why));
        }
        let query = match (sequence, meta.language.as_str()) {
            (Some(q), _) => Query::Eql(q),
            (None, "esql") => {
                let query = esql::Query::parse(&meta.query).map_err(|source| RuleError::Esql {
                    name: meta.name.clone(),
                    source,
                })?;
                if !matches!(meta.alerting, Some(Alerting::Esql { .. })) {
                    return Err(invalid(
                        "an ES|QL rule needs its runs (alerting kind \"esql\": window and \
                         interval)"
                            .to_string(),
                    ));
                }
                Query::Esql(Box::new(query))
            }
            (None, sigma::SIGMA) => sigma::compile(&meta)?,
            _ => parse(&meta.query)?,
        };
        if query.sequence().is_some() && meta.alerting.is_some() {
            return Err(invalid(
                "an EQL sequence has no new-terms, threshold or ES|QL alerting".to_string(),
            ));
        }
        if matches!(meta.alerting, Some(Alerting::Esql { .. })) && !matches!(query, Query::Esql(_))
        {
            return Err(invalid(
                "alerting kind \"esql\" needs an ES|QL query (language = \"esql\")".to_string(),
            ));
        }
        if let Some(t) = query.temporal() {
            if meta.alerting.is_some() {
                return Err(invalid(
                    "a Sigma temporal correlation has no threshold alerting".to_string(),
                ));
            }
            crate::analysis::sequence::add_evidence(&mut meta.evidence, t.rules());
        }
        Rule::assemble(meta, query)
    }

    /// A rule of compiled metadata and its query: the context selections parsed, the
    /// analyses and evidence items checked.
    pub fn assemble(meta: RuleMeta, query: Query) -> Result<Rule, RuleError> {
        let parse = |text: &str| {
            kql::Query::parse(text)
                .map(Query::Kql)
                .map_err(|source| RuleError::Query {
                    name: meta.name.clone(),
                    source,
                })
        };
        let invalid = |message: String| RuleError::Invalid {
            name: meta.name.clone(),
            message,
        };
        let contexts = meta
            .context
            .iter()
            .map(|c| parse(&c.query))
            .collect::<Result<Vec<_>, _>>()?;
        if let Some(a) = meta
            .analyses
            .iter()
            .find(|a| !KNOWN_ANALYSES.contains(&a.as_str()))
        {
            return Err(invalid(format!(
                "unknown analysis {a:?} (known: {})",
                KNOWN_ANALYSES.join(", ")
            )));
        }
        let mut evidence: Vec<Evidence> = Vec::new();
        for e in &meta.evidence {
            if RESERVED.contains(&e.name.as_str()) || evidence.iter().any(|x| x.name == e.name) {
                return Err(invalid(format!(
                    "evidence name {:?} is reserved or repeated",
                    e.name
                )));
            }
            if e.fields.is_empty() == e.kind.reads_fields() {
                return Err(invalid(format!(
                    "evidence {:?}: a command_line, alert or esql_rows item has no fields, \
                     every other item has some",
                    e.name
                )));
            }
            if e.kind == EvidenceKind::EsqlRows && !matches!(query, Query::Esql(_)) {
                return Err(invalid(format!(
                    "evidence {:?}: an esql_rows item needs an ES|QL query",
                    e.name
                )));
            }
            let sequence_item = matches!(e.kind, EvidenceKind::Sequence | EvidenceKind::Step);
            if sequence_item && !query.is_replayed() {
                return Err(invalid(format!(
                    "evidence {:?}: a sequence or step item needs an EQL sequence or a Sigma \
                     temporal correlation",
                    e.name
                )));
            }
            if e.kind == EvidenceKind::Alert && meta.alerting.is_none() {
                return Err(invalid(format!(
                    "evidence {:?}: an alert item needs the rule's alerting (new terms or a \
                     threshold)",
                    e.name
                )));
            }
            evidence.push(Evidence {
                name: e.name.clone(),
                fields: e.fields.iter().map(|f| Field::parse(f)).collect(),
                kind: e.kind,
            });
        }
        Ok(Rule {
            items: Items::of(&meta.evidence),
            meta,
            query,
            evidence,
            contexts,
            path: None,
        })
    }

    /// The index of the evidence item with this name (for items of no [`Items`] role;
    /// look it up once per rule, not per finding).
    pub fn evidence_index(&self, name: &str) -> Option<usize> {
        self.evidence.iter().position(|e| e.name == name)
    }

    /// Whether the rule's findings go to this analysis.
    pub fn has_analysis(&self, name: &str) -> bool {
        self.meta.analyses.iter().any(|a| a == name)
    }

    /// The fields the query (or the alerting) reads that need enrichment `enrichment`
    /// lacks (a GeoIP database not given), with what that is: clauses on them never
    /// hold for a raw record, and a match without a term's value never alerts.
    pub fn needs_enrichment(
        &self,
        enrichment: &crate::enrich::Enrichment,
    ) -> Vec<(String, &'static str)> {
        let alerting = self.meta.alerting.iter().flat_map(|a| a.fields());
        let names: Vec<String> = self
            .query
            .fields()
            .into_iter()
            .map(|f| f.name())
            .chain(alerting.map(|f| Field::parse(f).name()))
            .collect();
        crate::enrich::missing(names.iter().map(String::as_str), enrichment)
    }

    /// The rules shipped with ualhunt.
    pub fn builtin() -> Vec<Rule> {
        // The built-in rule file is part of the binary and covered by tests.
        vec![Rule::from_toml(BUILTIN).expect("the built-in rule compiles")]
    }
}

/// The name of a `UserType` value (Microsoft's `Microsoft.Office365.Audit.UserType`):
/// a number becomes its name; a name is kept as it is.
pub fn user_type_name(text: &str) -> std::borrow::Cow<'_, str> {
    let name = match text.trim() {
        "0" => "Regular",
        "1" => "Reserved",
        "2" => "Admin",
        "3" => "DcAdmin",
        "4" => "System",
        "5" => "Application",
        "6" => "ServicePrincipal",
        "7" => "CustomPolicy",
        "8" => "SystemPolicy",
        "9" => "PartnerTechnician",
        "10" => "Guest",
        _ => return text.into(),
    };
    name.into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::parse_flag;
    use std::path::Path;

    #[test]
    fn builtin_rule_compiles_with_published_metadata() {
        let rules = Rule::builtin();
        let rule = &rules[0];
        assert_eq!(rule.meta.id, "675239ea-c1bc-4467-a6d3-b9e2cc7f676d");
        assert_eq!(rule.meta.severity, "medium");
        assert_eq!(rule.meta.risk_score, 47);
        assert_eq!(rule.query.fields().len(), 4);
        assert_eq!(
            rule.query.required_literals(),
            Some(vec![crate::field::Literal::operation(
                "Set-MailboxAuditBypassAssociation"
            )])
        );
        assert_eq!(
            rule.evidence[0].fields[0],
            Field::Audit("Parameters.Identity".into())
        );
        assert_eq!(rule.evidence_index("bypass_enabled"), Some(1));
        assert_eq!(rule.contexts.len(), 1);
        assert!(rule.has_analysis(ANALYSIS_BYPASS));
    }

    /// A query every match of which needs a GeoIP field is searched for by the field's
    /// key when the run has no database (only an ECS document carrying it can match),
    /// its own literals then checked as a conjunct; with a database the key is no
    /// requirement (a raw record's value is looked up, not in its bytes).
    #[test]
    fn a_geoip_fields_key_is_searched_only_without_a_database() {
        let q = Query::Kql(
            kql::Query::parse("event.action:UserLoggedIn and source.geo.country_name:*").unwrap(),
        );
        let without = q.searched(&Enrichment::default());
        assert_eq!(without.literals, Some(vec!["country_name".to_string()]));
        assert!(
            without
                .conjuncts
                .contains(&vec![crate::field::Literal::operation("UserLoggedIn")])
        );
        assert_eq!(without.unenriched, Some(Derived::CountryName));
        let db = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/fixtures/geoip/GeoLite2-City-Test.mmdb");
        let with = Enrichment::new(crate::enrich::GeoIp::open(&[db]).unwrap());
        let with = q.searched(&with);
        let action = crate::field::Literal::operation("UserLoggedIn");
        assert_eq!(with.literals, Some(vec![action.clone()]));
        assert_eq!(with.conjuncts, [vec![action]]);
        assert_eq!(with.unenriched, None);
        // Alone, the field's key is all there is: with a database, no literal.
        let alone = Query::Kql(kql::Query::parse("source.geo.country_name:*").unwrap());
        assert_eq!(
            alone.searched(&Enrichment::default()).literals,
            Some(vec!["country_name".to_string()])
        );
        let with = Enrichment::new(
            crate::enrich::GeoIp::open(&[Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../tests/fixtures/geoip/GeoLite2-City-Test.mmdb")])
            .unwrap(),
        );
        assert_eq!(alone.searched(&with).literals, None);
        // An ASN database gives no country: still searched by the key.
        let asn = Enrichment::new(
            crate::enrich::GeoIp::open(&[Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../tests/fixtures/geoip/GeoLite2-ASN-Test.mmdb")])
            .unwrap(),
        );
        assert_eq!(q.searched(&asn).unenriched, Some(Derived::CountryName));
    }

    /// Each side of a disjunction is routed by its own action and checked for what
    /// only it needs; a side with no literal of the searched set of its own is
    /// routed by the whole set; a trigger's literals or no branches give one
    /// alternative, the whole's.
    #[test]
    fn each_branch_is_routed_by_its_own_literals_with_its_own_conjuncts() {
        let set = |items: &[&str]| items.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        // An action is a record's whole operation ([`crate::field::Literal::operation`]).
        let ops = |items: &[&str]| {
            items
                .iter()
                .map(|s| crate::field::Literal::operation(s))
                .collect::<Vec<_>>()
        };
        let q = Query::Kql(
            kql::Query::parse(
                "event.provider:Exchange and \
                 ((event.action:Add-MailboxPermission and o365.audit.Parameters.AccessRights:FullAccess) \
                 or (event.action:Set-Mailbox and o365.audit.Parameters.GrantSendOnBehalfTo:*))",
            )
            .unwrap(),
        );
        let searched = q.searched(&Enrichment::default());
        let required = ops(&["Add-MailboxPermission", "Set-Mailbox"]);
        assert_eq!(searched.literals.as_ref(), Some(&required));
        assert_eq!(
            searched.alternatives(Some(&required)),
            vec![
                (
                    Some(ops(&["Add-MailboxPermission"])),
                    vec![set(&["FullAccess"])]
                ),
                (
                    Some(ops(&["Set-Mailbox"])),
                    vec![set(&["GrantSendOnBehalfTo"])]
                ),
            ]
        );
        // Searched for other literals (a trigger's): every branch is routed by them.
        let trigger = set(&["Other"]);
        let alternatives = searched.alternatives(Some(&trigger));
        assert_eq!(alternatives.len(), 2);
        assert!(
            alternatives
                .iter()
                .all(|(req, _)| req.as_ref() == Some(&trigger))
        );
        assert_eq!(
            searched.alternatives(None),
            vec![(None, searched.conjuncts.clone())]
        );
        // No disjunction: no branches, one alternative.
        let one = Query::Kql(kql::Query::parse("event.action:Set-Mailbox").unwrap());
        let one = one.searched(&Enrichment::default());
        assert!(one.branches.is_empty());
        assert_eq!(one.alternatives(one.literals.as_ref()).len(), 1);
    }

    #[test]
    fn flags() {
        assert_eq!(parse_flag("True"), Some(true));
        assert_eq!(parse_flag("FALSE"), Some(false));
        assert_eq!(parse_flag("$true"), Some(true));
        assert_eq!(parse_flag("maybe"), None);
    }

    #[test]
    fn a_bad_query_is_reported_with_the_rule_name() {
        let err =
            Rule::from_toml("id='x'\nname='broken'\nseverity='low'\nrisk_score=1\nquery='a:(b'\n")
                .unwrap_err();
        assert!(err.to_string().contains("broken"), "{err}");
    }
}
