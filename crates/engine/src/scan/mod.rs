//! The hot loop: one line-aligned chunk in, one [`Partial`] out.
//!
//! Place in the flow: `engine` hands each chunk (a slice of a mapped file or of a
//! decompressed block) to [`scan_chunk`] on a rayon worker. The chunk is walked in
//! cache-sized blocks: the prefilter searches the whole block for the selections'
//! literals, then one newline pass over the same, still cache-hot, block counts lines,
//! spots blank ones, numbers the candidate lines and tallies each record's time for the
//! coverage. Only candidates are copied into the worker's scratch buffer and parsed
//! (simd-json parses in place; the mapping stays read-only).
//!
//! The split is ripgrep's: the [`Matcher`] says which records are selected and why (a
//! rule's query, a context selection's query, or, for the context pass, any record
//! holding a literal); this module finds them; a [`Sink`] decides what to keep of each.
//! No I/O and no printing happen here.

pub mod cache;
pub mod document;
pub mod inputs;
pub mod sweep;

pub use inputs::{
    KEPT_BYTES, KEPT_MAPS, Maps, PassStats, Piece, Scanned, Unit, UnitResult, scan_units,
};
pub(crate) use inputs::{scan_all, scan_all_within};

use std::time::{Duration, Instant};

use memchr::{memchr, memchr_iter, memrchr};

use rustc_hash::{FxHashMap, FxHashSet};
use simd_json::tape::Tape;

use crate::config::DEFAULT_SCAN_BLOCK;
use crate::coverage::Tally;
use crate::enrich::{Enriched, Enrichment};
use crate::field::{Field, Fields};
use crate::findings::{At, Merge, Partial, Text, Why};
use crate::prefilter::{Alternative, Prefilter, Router};
use crate::record::{Embedded, Record, canonical_ip, ip_host};
use crate::rule::Query;
use crate::rule::Rule;

/// One class of records the scan selects.
#[derive(Clone, Debug)]
pub struct Selection {
    /// The rule it belongs to.
    pub rule: u16,
    /// A rule match or a context selection.
    pub why: Why,
    /// What a record must satisfy; `None` selects every parsed candidate (the context
    /// pass, whose sink decides).
    pub query: Option<Query>,
}

/// What a scan selects and how; shared read-only by all workers.
#[derive(Debug)]
pub struct Matcher {
    rules: Vec<Rule>,
    selections: Vec<Selection>,
    prefilter: Prefilter,
    /// The literals of the rules' selections, searched for whatever `prefilter` is
    /// (exports, issue 8: a record holding one must be accounted for even with
    /// `--no-prefilter`, and in the context pass too).
    literals: Prefilter,
    /// Which selections a candidate can satisfy, from the literals it holds (`None`:
    /// evaluate every selection on every candidate).
    router: Option<Router>,
    /// Each selection's literals (`None`: it has none and sees every record).
    requirements: Vec<Option<Vec<String>>>,
    /// `RecordType` numbers that make a record a candidate whatever literals it holds
    /// (an `event.code` clause: raw records carry the number), indexed by number.
    record_types: Vec<bool>,
    max_line: usize,
    block: usize,
    timed: bool,
    coverage: bool,
    /// The pipeline's enrichment the queries and evidence read derived fields through.
    enrichment: std::sync::Arc<Enrichment>,
    /// Whether candidates are first evaluated on demand from their bytes
    /// ([`crate::ondemand`]), parsed in full only when they match or cannot be read so.
    on_demand: bool,
    /// Whether candidates the sink's [`Sink::may_select`] turns down are counted without
    /// being parsed ([`Matcher::with_screen`]).
    screen: bool,
    /// The rules whose query is searched for by its trigger's literals in this pass
    /// ([`Matcher::with_triggers`]).
    gated: Vec<u16>,
    /// Per selection, whether its query reads a derived field (user agent, GeoIP), which
    /// the on-demand view does not have.
    derived: Vec<bool>,
    /// Per selection of a rule with a trigger that this pass does not gate: its
    /// trigger's literals. Its match counts in the line accounting only on a record that
    /// holds one, as in a pass that gates it, so `matched` is the same in every mode.
    counted_by: Vec<Option<Prefilter>>,
    /// Per selection: a field (GeoIP, ASN) every match needs that this run cannot
    /// derive, whose key is searched for instead ([`crate::rule::Query::searched`]).
    unenriched: Vec<Option<crate::enrich::Derived>>,
    /// How the first pass's search was planned (with the prefilter, with triggers), to
    /// plan it again for the run's enrichment; `None` for the other passes.
    planned: Option<(bool, bool)>,
}

/// Whether the on-demand path is used: only with `UALHUNT_ON_DEMAND=always` for now
/// (its first measurement showed no gain over the full parse, so it stays off by default
/// until it is profiled); read once.
fn on_demand_allowed() -> bool {
    static ALLOWED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ALLOWED.get_or_init(|| std::env::var("UALHUNT_ON_DEMAND").as_deref() == Ok("always"))
}

impl Matcher {
    /// The first pass: each rule's query and its context selections. With `prefilter`
    /// false every non-blank line is parsed (the slow reference path). Lines longer than
    /// `max_line` bytes are counted as malformed instead of being parsed.
    pub fn new(rules: Vec<Rule>, prefilter: bool, max_line: usize) -> Matcher {
        Matcher::build(rules, prefilter, max_line, false, Default::default())
    }

    /// [`Matcher::new`] planned once for this enrichment (what
    /// [`Matcher::with_enrichment`] gives, without planning twice).
    pub fn new_enriched(
        rules: Vec<Rule>,
        prefilter: bool,
        max_line: usize,
        enrichment: std::sync::Arc<Enrichment>,
    ) -> Matcher {
        Matcher::build(rules, prefilter, max_line, false, enrichment)
    }

    /// [`Matcher::new`] with the prefilter, where a rule with no literal of its own but
    /// a trigger ([`crate::rule::Query::trigger`]) is evaluated only on the records that
    /// hold one of its trigger's literals: a run of it returns a row only when some
    /// record holds one, and [`Matcher::around_triggers`] reads its other records around
    /// those ([`Matcher::gated`]).
    pub fn with_triggers(rules: Vec<Rule>, max_line: usize) -> Matcher {
        Matcher::build(rules, true, max_line, true, Default::default())
    }

    /// [`Matcher::with_triggers`] planned once for this enrichment (what
    /// [`Matcher::with_enrichment`] gives, without planning twice).
    pub fn with_triggers_enriched(
        rules: Vec<Rule>,
        max_line: usize,
        enrichment: std::sync::Arc<Enrichment>,
    ) -> Matcher {
        Matcher::build(rules, true, max_line, true, enrichment)
    }

    /// The second look at the rules [`Matcher::with_triggers`] gated: their queries on
    /// every record of the stretches it is given; no coverage is counted.
    pub fn around_triggers(rules: Vec<Rule>, gated: &[u16], max_line: usize) -> Matcher {
        Matcher::around_triggers_enriched(rules, gated, max_line, Default::default())
    }

    /// [`Matcher::around_triggers`] with this enrichment (what
    /// [`Matcher::with_enrichment`] gives, without making the rule literals twice).
    pub fn around_triggers_enriched(
        rules: Vec<Rule>,
        gated: &[u16],
        max_line: usize,
        enrichment: std::sync::Arc<Enrichment>,
    ) -> Matcher {
        let mut selections = Vec::new();
        for &r in gated {
            let rule = &rules[usize::from(r)];
            selections.push(Selection {
                rule: r,
                why: Why::Rule,
                query: Some(rule.query.clone()),
            });
            for (c, q) in rule.contexts.iter().enumerate() {
                selections.push(Selection {
                    rule: r,
                    why: Why::Context(c as u16),
                    query: Some(q.clone()),
                });
            }
        }
        Matcher::selecting(
            rules,
            selections,
            Prefilter::Everything,
            max_line,
            enrichment,
        )
    }

    /// A pass that parses every record `prefilter` lets through and evaluates
    /// `selections` on it: no router, no coverage (the first pass counted it), nothing
    /// decided on demand. Its malformed lines are those holding a rule literal, as in
    /// the first pass: a record is malformed in both passes or in neither.
    fn selecting(
        rules: Vec<Rule>,
        selections: Vec<Selection>,
        prefilter: Prefilter,
        max_line: usize,
        enrichment: std::sync::Arc<Enrichment>,
    ) -> Matcher {
        Matcher {
            literals: rule_literals(&rules, &enrichment),
            derived: derived_fields(&selections),
            requirements: vec![None; selections.len()],
            unenriched: vec![None; selections.len()],
            planned: None,
            rules,
            selections,
            prefilter,
            router: None,
            record_types: Vec::new(),
            max_line,
            block: DEFAULT_SCAN_BLOCK,
            timed: false,
            coverage: false,
            on_demand: false,
            screen: false,
            enrichment,
            gated: Vec::new(),
            counted_by: Vec::new(),
        }
    }

    /// The rules this pass searches for by their trigger only (in rule order).
    pub fn gated(&self) -> &[u16] {
        &self.gated
    }

    fn build(
        rules: Vec<Rule>,
        prefilter: bool,
        max_line: usize,
        triggers: bool,
        enrichment: std::sync::Arc<Enrichment>,
    ) -> Matcher {
        let mut selections = Vec::new();
        for (i, rule) in rules.iter().enumerate() {
            selections.push(Selection {
                rule: i as u16,
                why: Why::Rule,
                query: Some(rule.query.clone()),
            });
            for (c, q) in rule.contexts.iter().enumerate() {
                selections.push(Selection {
                    rule: i as u16,
                    why: Why::Context(c as u16),
                    query: Some(q.clone()),
                });
            }
        }
        let mut m = Matcher {
            derived: derived_fields(&selections),
            counted_by: Vec::new(),
            gated: Vec::new(),
            rules,
            selections,
            prefilter: Prefilter::Everything,
            literals: Prefilter::Everything,
            router: None,
            requirements: Vec::new(),
            unenriched: Vec::new(),
            planned: Some((prefilter, triggers)),
            record_types: Vec::new(),
            max_line,
            block: DEFAULT_SCAN_BLOCK,
            timed: false,
            coverage: true,
            on_demand: false,
            screen: false,
            enrichment,
        };
        m.plan(prefilter, triggers);
        m
    }

    /// Plans the first pass's search for the selections as the run's enrichment reads
    /// them: the literals, the router, the `RecordType` lane, the gated rules.
    fn plan(&mut self, prefilter: bool, triggers: bool) {
        let enrichment = &*self.enrichment;
        let selections = &self.selections;
        let searched: Vec<crate::rule::Searched> = selections
            .iter()
            .map(|s| {
                s.query
                    .as_ref()
                    .map_or_else(Default::default, |q| q.searched(enrichment))
            })
            .collect();
        // The selections are the rules' queries and context selections in rule order
        // (`build`), so their searches make the rule literals without asking every
        // query again.
        debug_assert!(
            selections
                .iter()
                .map(|s| (s.rule, s.why, s.query.is_some()))
                .eq(self.rules.iter().enumerate().flat_map(|(i, r)| {
                    std::iter::once((i as u16, Why::Rule, true)).chain(
                        (0..r.contexts.len())
                            .map(move |c| (i as u16, Why::Context(c as u16), true)),
                    )
                }))
        );
        let literals = literals_of(&searched);
        let mut requirements: Vec<Option<Vec<String>>> =
            searched.iter().map(|s| s.literals.clone()).collect();
        let mut gated = Vec::new();
        if triggers && prefilter {
            for (req, sel) in requirements.iter_mut().zip(selections) {
                if req.is_none()
                    && sel.why == Why::Rule
                    && let Some(trigger) = sel.query.as_ref().and_then(Query::trigger)
                {
                    *req = Some(trigger.literals);
                    gated.push(sel.rule);
                }
            }
        }
        let alternatives: Vec<Vec<Alternative>> = searched
            .iter()
            .zip(&requirements)
            .map(|(s, req)| s.alternatives(req.as_ref()))
            .collect();
        let mut record_types = Vec::new();
        for n in requirements
            .iter()
            .flatten()
            .flatten()
            .filter_map(|l| crate::field::marked_record_type(l))
        {
            let n = usize::from(n);
            if record_types.len() <= n {
                record_types.resize(n + 1, false);
            }
            record_types[n] = true;
        }
        // The reference path (`--no-prefilter`) parses every record in full.
        self.on_demand = prefilter && on_demand_allowed();
        // The reference path (`--no-prefilter`) evaluates every selection on every line.
        self.router = if prefilter {
            Router::with_alternatives(&alternatives)
        } else {
            None
        };
        self.prefilter = if !prefilter {
            Prefilter::Everything
        } else if gated.is_empty() {
            literals.clone()
        } else {
            searched_literals(requirements.iter().map(Option::as_ref))
        };
        self.counted_by = selections
            .iter()
            .map(|sel| {
                let trigger = sel.query.as_ref().and_then(Query::trigger)?;
                // A `RecordType` is read, not searched: such a trigger is not checked.
                let searchable = trigger
                    .literals
                    .iter()
                    .all(|l| crate::field::marked_record_type(l).is_none());
                (sel.why == Why::Rule && !gated.contains(&sel.rule) && searchable)
                    .then(|| Prefilter::from_literals(trigger.literals))
            })
            .collect();
        self.unenriched = searched.iter().map(|s| s.unenriched).collect();
        self.gated = gated;
        self.literals = literals;
        self.requirements = requirements;
        self.record_types = record_types;
    }

    /// A pass that hands every parsed record holding one of `literals` (ASCII case
    /// ignored; `None`: every record) to the sink; no coverage is counted (the first
    /// pass did).
    pub fn for_literals(
        rules: Vec<Rule>,
        literals: Option<Vec<String>>,
        max_line: usize,
    ) -> Matcher {
        // Every record it parses is selected (a selection with no query).
        let every = vec![Selection {
            rule: 0,
            why: Why::Context(u16::MAX),
            query: None,
        }];
        let prefilter = literals.map_or(Prefilter::Everything, Prefilter::case_insensitive);
        Matcher::selecting(rules, every, prefilter, max_line, Default::default())
    }

    /// Measures time spent parsing candidates (for `--stats`; costs two clock reads
    /// per candidate).
    pub fn with_timing(mut self, timed: bool) -> Matcher {
        self.timed = timed;
        self
    }

    /// Lets the sink turn candidates down from their bytes ([`Sink::may_select`]): one it
    /// turns down is not parsed, nor handed to the sink, and is counted as `screened`,
    /// not as a candidate (so `candidates` counts what was parsed; a turned-down line
    /// that would not have parsed is not counted malformed either). Only for a matcher
    /// whose every selection is a context selection with no query (what
    /// [`Matcher::for_literals`] builds: each parsed candidate goes to the sink); ignored
    /// otherwise.
    pub fn with_screen(mut self, on: bool) -> Matcher {
        self.screen = on
            && self
                .selections
                .iter()
                .all(|s| s.query.is_none() && matches!(s.why, Why::Context(_)));
        self
    }

    /// Whether the sink may turn candidates down from their bytes
    /// ([`Matcher::with_screen`]).
    pub fn screens(&self) -> bool {
        self.screen
    }

    /// Turns the on-demand path ([`crate::ondemand`]) on or off (differential tests;
    /// with the prefilter, it is on when `UALHUNT_ON_DEMAND=always`).
    pub fn with_on_demand(mut self, on: bool) -> Matcher {
        self.on_demand = on;
        self
    }

    /// Derived fields (`user_agent.*`, GeoIP) computed with this enrichment (its
    /// databases); without it only the user-agent fields have values.
    pub fn with_enrichment(mut self, enrichment: std::sync::Arc<Enrichment>) -> Matcher {
        self.enrichment = enrichment;
        // What is searched depends on which fields the run can derive (planning
        // computes the literals too).
        match self.planned {
            Some((prefilter, triggers)) => {
                let on_demand = self.on_demand;
                self.plan(prefilter, triggers);
                self.on_demand = on_demand;
            }
            None => self.literals = rule_literals(&self.rules, &self.enrichment),
        }
        self
    }

    /// Per selection: a field (GeoIP, ASN) every match needs that this run cannot
    /// derive without a database, whose key is searched for instead, so that only an
    /// ECS document carrying the field is a candidate (`ualhunt rules`, `--stats`).
    pub fn unenriched(&self) -> &[Option<crate::enrich::Derived>] {
        &self.unenriched
    }

    /// The enrichment derived fields are computed with.
    pub fn enrichment(&self) -> &Enrichment {
        &self.enrichment
    }

    /// Sets how many bytes are searched at a time inside a chunk (tests use tiny blocks
    /// to force literals across block edges).
    pub fn with_block(mut self, block: usize) -> Matcher {
        self.block = block.max(1);
        self
    }

    /// The prefilter in use.
    pub fn prefilter(&self) -> &Prefilter {
        &self.prefilter
    }

    /// Each selection's prefilter literals (`None`: it has none and is evaluated on
    /// every record).
    pub fn requirements(&self) -> &[Option<Vec<String>>] {
        &self.requirements
    }

    /// Whether a record with these bytes is a candidate: it holds a literal, or its
    /// `RecordType` is one a selection accepts.
    pub fn is_candidate(&self, bytes: &[u8]) -> bool {
        self.prefilter.is_everything()
            || self.prefilter.find(bytes).is_some()
            || self.wants_record_type_of(bytes)
    }

    /// The prefilter as `--stats` and `ualhunt rules` show it: the text search, and the
    /// `RecordType`s read from each line (a rule whose only literal is a `RecordType`
    /// has no text search, yet parses only records of its types).
    pub fn describe_prefilter(&self) -> String {
        let mut text = self.describe_search();
        if let Some(n) = self
            .router
            .as_ref()
            .map(Router::operations_read)
            .filter(|&n| n > 0)
        {
            text +=
                &format!("; {n} literals are operations, read from each line's `Operation` key");
        }
        if let Some(block) = self.router.as_ref().and_then(Router::describe_block) {
            text += &format!("; each block searched for {block}");
        }
        text
    }

    /// [`Matcher::describe_prefilter`] but for the operations read.
    fn describe_search(&self) -> String {
        let types: Vec<String> = self
            .record_types
            .iter()
            .enumerate()
            .filter(|(_, wanted)| **wanted)
            .map(|(n, _)| n.to_string())
            .collect();
        if types.is_empty() {
            return self.prefilter.describe();
        }
        let lane = format!("RecordType {} read from each line", types.join(", "));
        if !self.prefilter.is_everything() {
            format!("{}, and {lane}", self.prefilter.describe())
        } else if let Some(router) = &self.router
            && self.requirements.iter().all(Option::is_some)
        {
            match router.checks_conjuncts() {
                true => format!("no text literal: {lane}, literals checked before parsing"),
                false => format!("no text literal: {lane}"),
            }
        } else {
            self.prefilter.describe()
        }
    }

    /// Whether a selection accepts the `RecordType` of the record in `bytes`; a record
    /// whose `RecordType` cannot be read (missing, or a name the pipeline's table does
    /// not know) is accepted whenever a selection reads one, and evaluated in full.
    #[inline]
    pub fn wants_record_type_of(&self, bytes: &[u8]) -> bool {
        !self.record_types.is_empty()
            && self.wants_record_type(crate::coverage::record_type_number(bytes))
    }

    /// Whether a selection accepts a record whose `RecordType` reads `number`.
    #[inline]
    fn wants_record_type(&self, number: Option<u16>) -> bool {
        number.is_none_or(|n| self.record_types.get(usize::from(n)) == Some(&true))
    }

    /// The literal router, when candidates are evaluated only against the selections
    /// whose literals they hold.
    pub fn router(&self) -> Option<&Router> {
        self.router.as_ref()
    }

    /// The longest line that is parsed.
    pub fn max_line(&self) -> usize {
        self.max_line
    }

    /// The rules.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// The selections.
    pub fn selections(&self) -> &[Selection] {
        &self.selections
    }

    /// Whether record coverage is counted.
    pub fn counts_coverage(&self) -> bool {
        self.coverage
    }

    /// The search for the literals of the rules' selections (their queries and context
    /// selections), whatever `--no-prefilter` says and in either pass (it is
    /// `Everything` only when a selection requires no literal).
    pub fn literals(&self) -> &Prefilter {
        &self.literals
    }

    /// Whether `bytes` hold a literal a rule's selection requires (always, when one
    /// requires none).
    pub fn holds_literal(&self, bytes: &[u8]) -> bool {
        self.literals.is_everything() || self.literals.find(bytes).is_some()
    }
}

/// The search for the literals of the first pass's selections (each rule's query and
/// its context selections).
fn rule_literals(rules: &[Rule], enrichment: &Enrichment) -> Prefilter {
    Prefilter::for_queries(
        rules
            .iter()
            .flat_map(|r| std::iter::once(&r.query).chain(&r.contexts)),
        enrichment,
    )
}

/// [`rule_literals`] from the searches of the rules' queries and context selections,
/// in rule order.
fn literals_of(searched: &[crate::rule::Searched]) -> Prefilter {
    searched_literals(searched.iter().map(|s| s.literals.as_ref()))
}

/// The search for selections' literals (each `None`: every record is a candidate), as
/// [`Prefilter::for_queries`] makes it from their queries.
fn searched_literals<'a>(
    requirements: impl IntoIterator<Item = Option<&'a Vec<String>>>,
) -> Prefilter {
    let mut literals = Vec::new();
    for req in requirements {
        match req {
            // A `RecordType` requirement is read from each record, not searched for.
            Some(set) => literals.extend(
                set.iter()
                    .filter(|l| crate::field::marked_record_type(l).is_none())
                    .cloned(),
            ),
            None => return Prefilter::Everything,
        }
    }
    Prefilter::from_literals(literals)
}

/// Per selection, whether its query reads a derived field (user agent, GeoIP).
fn derived_fields(selections: &[Selection]) -> Vec<bool> {
    selections
        .iter()
        .map(|s| {
            s.query
                .as_ref()
                .is_some_and(|q| q.fields().iter().any(|f| matches!(f, Field::Derived(_))))
        })
        .collect()
}

/// Receives each selected record: what a pass keeps of it. Implementations are
/// per-chunk states that merge in input order ([`Merge`]).
pub trait Sink: Merge {
    /// What every sink of a pass reads besides the records (the context pass: whom to
    /// watch, and when); shared read-only by the workers.
    type Params: Sync;

    /// A record satisfied the selections `hits` (indexes into
    /// [`Matcher::selections`], at least one); `at` is chunk-relative.
    fn selected(
        &mut self,
        hits: &[usize],
        record: &Record<'_, '_>,
        at: At,
        cx: &mut SinkCx<'_, Self::Params>,
    );

    /// Whether a candidate line (trimmed) may be one `selected` changes the sink with,
    /// told from its bytes before it is parsed; `false` only when it surely is not
    /// (a matcher [`Matcher::with_screen`] then counts it without parsing it).
    fn may_select(_line: &[u8], _params: &Self::Params) -> bool {
        true
    }
}

/// What a sink may use besides the record.
pub struct SinkCx<'a, P> {
    /// The matcher that selected the record.
    pub matcher: &'a Matcher,
    /// The pass's parameters.
    pub params: &'a P,
    /// Shared evidence text of this worker.
    pub texts: &'a mut Interner,
}

/// A pass: what selects records and what its sinks read. Copied freely.
pub struct Pass<'a, S: Sink> {
    /// What is selected.
    pub matcher: &'a Matcher,
    /// What the sinks read.
    pub params: &'a S::Params,
    /// The mappings kept between passes, taken and kept by this one ([`Pass::keeping`]).
    pub maps: Option<&'a Maps>,
}

impl<S: Sink> Clone for Pass<'_, S> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<S: Sink> Copy for Pass<'_, S> {}

impl<'a, S: Sink> Pass<'a, S> {
    /// A pass of `matcher` whose sinks read `params`.
    pub fn new(matcher: &'a Matcher, params: &'a S::Params) -> Pass<'a, S> {
        Pass {
            matcher,
            params,
            maps: None,
        }
    }

    /// This pass reading an input's mapping that `maps` keeps instead of mapping the
    /// file again, and keeping in `maps` each whole input it maps ([`Maps`]).
    pub fn keeping(self, maps: &'a Maps) -> Pass<'a, S> {
        Pass {
            maps: Some(maps),
            ..self
        }
    }
}

/// A candidate line of a block: its start, its end without the newline, its line
/// index, and its `RecordType` number when the newline pass read it (`None`: not read
/// there; the router reads it if it needs it).
type Candidate = (usize, usize, u64, Option<Option<u16>>);

/// Per-worker reusable buffers.
#[derive(Default)]
pub struct Scratch {
    buf: Vec<u8>,
    buffers: Option<simd_json::Buffers>,
    /// The tape of the last parse, kept (empty) for its allocation.
    tape: Option<Tape<'static>>,
    /// Candidate lines of the current block ([`Candidate`]).
    candidates: Vec<Candidate>,
    /// Prefilter hits of the current block, for a prefilter that collects them.
    hit_starts: Vec<usize>,
    /// Newlines of the current block and the places of the coverage keys from the
    /// current line on, when the block is swept for both ([`sweep`]).
    newlines: Vec<usize>,
    key_places: Vec<usize>,
    /// Selections a candidate satisfied.
    hits: Vec<usize>,
    /// Selections a candidate may satisfy (from the router).
    route: Vec<u32>,
    /// `route` already holds the next candidate's selections, from the literals the
    /// block search found in it ([`Router::route_found`]).
    routed: bool,
    /// The block search's hits when it is the router's ([`Router::block_hits`]).
    found: Vec<(usize, u32)>,
    /// The top-level entries of a line read on demand.
    entries: Vec<crate::ondemand::Entry>,
    /// Shared evidence text.
    texts: Interner,
    /// Buffers of the second parse of a record held as JSON text in a string (exports,
    /// issue 8); made on first use.
    reparse: Option<Box<Reparse>>,
    /// Time spent parsing and evaluating candidates.
    pub parse_time: Duration,
}

/// Reusable buffers of a second parse: a record held as JSON text in a string of the
/// object first parsed (PowerShell's `AuditData` string, Elastic's `event.original`).
#[derive(Default)]
struct Reparse {
    buf: Vec<u8>,
    buffers: Option<simd_json::Buffers>,
    tape: Option<Tape<'static>>,
}

/// Scans one line-aligned chunk of file `file`. Positions in the result are relative
/// to the chunk's start.
pub fn scan_chunk<S: Sink>(
    data: &[u8],
    file: usize,
    pass: Pass<'_, S>,
    scratch: &mut Scratch,
) -> Partial<S> {
    let m = pass.matcher;
    let mut out = Partial::<S> {
        bytes: data.len() as u64,
        ..Partial::default()
    };
    if data.is_empty() {
        return out;
    }
    let mut tally = Tally::default();
    if m.prefilter.is_everything() {
        scan_every_line(data, file, pass, scratch, &mut out, &mut tally);
    } else {
        scan_prefiltered(data, file, pass, scratch, &mut out, &mut tally);
    }
    if m.coverage {
        // The block index's last entry for the chunk: what the blocks' entries left.
        let (at, line) = out
            .index
            .iter()
            .fold((0, 0), |(at, line), s| (at + s.len, line + s.lines));
        let (first, last, undated) = tally.take_span();
        out.index.push(crate::index::Span {
            input: file as u32,
            offset: at,
            len: data.len() as u64 - at,
            line,
            lines: out.counts.lines - line,
            first,
            last,
            undated,
        });
    }
    out.coverage = tally.finish();
    out
}

/// The reference path: every non-blank line is a candidate (runs of blank lines are
/// counted in bulk here too: a rule with no literal reads newline runs as fast).
fn scan_every_line<S: Sink>(
    data: &[u8],
    file: usize,
    pass: Pass<'_, S>,
    scratch: &mut Scratch,
    out: &mut Partial<S>,
    tally: &mut Tally,
) {
    let m = pass.matcher;
    let mut start = 0;
    let mut index = 0u64;
    while start < data.len() {
        // A run of blank lines at once, as in the fast path.
        if is_space(data[start]) {
            let (stop, newlines) = blank_run(data, start, data.len());
            if newlines > 0 {
                // The run holds `newlines` newlines, so one is found.
                start += memrchr(b'\n', &data[start..stop]).map_or(0, |i| i + 1);
                index += newlines;
                out.counts.blank += newlines;
                continue;
            }
        }
        let end = memchr(b'\n', &data[start..]).map_or(data.len(), |i| start + i);
        let line = &data[start..end];
        if is_blank(line) {
            out.counts.blank += 1;
        } else {
            if m.coverage {
                tally.record(line);
            }
            candidate(line, file, index, start as u64, pass, scratch, out);
        }
        index += 1;
        start = end + 1;
    }
    out.counts.lines = index;
    out.counts.records = index - out.counts.blank;
}

/// The fast path: search each block for the literals, then count its lines in one pass
/// while it is cache-hot, numbering the candidate lines and tallying each record's time
/// on the way.
fn scan_prefiltered<S: Sink>(
    data: &[u8],
    file: usize,
    pass: Pass<'_, S>,
    scratch: &mut Scratch,
    out: &mut Partial<S>,
    tally: &mut Tally,
) {
    let m = pass.matcher;
    let len = data.len();
    // With a router, the block search is its own: each hit says which literal it is, so
    // a candidate's selections are known without searching its line again.
    let routed = m.router.as_ref();
    let overlap = match routed {
        Some(r) => r.overlap().max(m.prefilter.overlap()),
        None => m.prefilter.overlap(),
    };
    let mut lines_before_block = 0u64;
    // Hits before this position belong to lines already taken.
    let mut search_from = 0usize;
    // Lines that start before this were taken as candidates by the literal search (the
    // search itself moves on past whole blocks without taking their lines).
    let mut taken_to = 0usize;
    let mut block_start = 0usize;
    // The first line of the chunk starts at 0; every other line starts after a newline.
    let mut line_start = 0usize;
    let mut line_blank = is_blank_at(data, 0);
    if line_blank {
        out.counts.blank += 1;
    }
    let mut cands = std::mem::take(&mut scratch.candidates);
    let mut hits = std::mem::take(&mut scratch.hit_starts);
    let mut found_hits = std::mem::take(&mut scratch.found);
    let types = !m.record_types.is_empty();
    // Lines taken for their `RecordType` or their operation, read in the newline pass.
    let mut by_type: Vec<Candidate> = Vec::new();
    // Whether the router reads operations, and the operation literals read in a block.
    let reads = routed.is_some_and(Router::reads_operations);
    let mut read_found: Vec<(usize, u32)> = Vec::new();
    // Where the block index's next entry starts (`crate::index`).
    let (mut span_start, mut span_line) = (0usize, 0u64);
    // Whether the coverage keys are swept for with the newlines (`sweep`), not searched
    // for in each record: while the records are not in the API's own key order, which
    // the probe reads without a search. Decided again after each block.
    let mut sweep_keys = m.coverage && !data.starts_with(b"{\"CreationTime\":\"");
    // The end of the last block swept for keys (the places before it are known).
    let mut swept_to = 0usize;
    let mut newlines = std::mem::take(&mut scratch.newlines);
    let mut places = std::mem::take(&mut scratch.key_places);
    // Positions in the last chunk scanned with this scratch mean nothing here.
    places.clear();
    // One literal searched for in a block swept for the keys: found by the sweep, in
    // the same pass over the block (`sweep::sweep_with`).
    let swept_literal = match (&m.prefilter, routed) {
        (Prefilter::One(finder), None) if m.coverage => sweep::Literal::new(finder.needle()),
        _ => None,
    };
    while block_start < len {
        let block_end = (block_start + m.block).min(len);

        // 1. Literal search over the block (a hit may run past its end by `overlap`).
        cands.clear();
        // Lines that start before this were taken by an earlier block's search.
        let taken_before = taken_to;
        let window_end = (block_end + overlap).min(len);
        let mut from = search_from.max(block_start);
        // Where the block search begins: a line starting here or later is searched whole.
        let searched_from = from;
        if sweep_keys {
            // The current line's places are kept; a line that began before the last
            // swept block is swept again from its start (it holds no newline there).
            let sweep_from = if swept_to == block_start {
                let passed = places.partition_point(|&p| p < line_start);
                places.drain(..passed);
                block_start
            } else {
                places.clear();
                line_start
            };
            newlines.clear();
            swept_to = block_end;
            match &swept_literal {
                // The literal's hits are every place it starts in the block: those
                // before `from` are passed over below, and one starting before the
                // block's end ends inside the search's window.
                Some(literal) if from < block_end => {
                    sweep::sweep(data, sweep_from, block_start, &mut newlines, &mut places);
                    hits.clear();
                    sweep::sweep_with(
                        data,
                        block_start,
                        block_end,
                        literal,
                        &mut newlines,
                        &mut places,
                        &mut hits,
                    );
                }
                _ => sweep::sweep(data, sweep_from, block_end, &mut newlines, &mut places),
            }
        }
        let swept_hits = sweep_keys && swept_literal.is_some() && from < block_end;
        let collected =
            routed.is_none() && (m.prefilter.collects_hits() || swept_hits) && from < block_end;
        if collected && !swept_hits {
            m.prefilter.hits(data, from, window_end, &mut hits);
        }
        // Every literal the lines taken in this block hold, each with where it is.
        let have_found = routed.is_some() && from < block_end;
        found_hits.clear();
        if let Some(r) = routed
            && have_found
        {
            r.block_hits(data, from, window_end, &mut found_hits);
        }
        let mut next_hit = 0;
        while from < block_end {
            // A hit is where a literal's searched window starts; the literal may begin
            // before it (even before the block: its line is in no earlier block's hits).
            let found = if routed.is_some() {
                while next_hit < found_hits.len()
                    && (found_hits[next_hit].0 < from || found_hits[next_hit].1 == Router::GUARD)
                {
                    next_hit += 1;
                }
                found_hits.get(next_hit).map(|h| h.0)
            } else if collected {
                while next_hit < hits.len() && hits[next_hit] < from {
                    next_hit += 1;
                }
                hits.get(next_hit).copied()
            } else {
                m.prefilter.find_at(data, from, window_end)
            };
            let Some(hit) = found else {
                break;
            };
            if hit >= block_end {
                break;
            }
            let start = memrchr(b'\n', &data[..hit]).map_or(0, |i| i + 1);
            let end = memchr(b'\n', &data[hit..]).map_or(len, |i| hit + i);
            cands.push((start, end, 0, None));
            from = end + 1;
            taken_to = from;
        }
        search_from = search_from.max(from);

        // 2. One newline pass: count lines, spot blank ones, number the candidates,
        //    tally each finished record's time while it is cache-hot.
        let mut seen = 0u64;
        let mut next = 0usize;
        // Where the newline search resumes: past a run of blank lines skipped in bulk.
        let mut resume = block_start;
        let general_before = tally.general();
        let mut place = 0usize;
        // The block search's hits from the current line on (its guards among them).
        let mut guard_at = 0usize;
        read_found.clear();
        'lines: loop {
            let found = if sweep_keys {
                let listed = newlines.partition_point(|&p| p < resume);
                Newlines::Listed(newlines[listed..].iter())
            } else {
                Newlines::Search(memchr_iter(b'\n', &data[resume..block_end]), resume)
            };
            for nl in found {
                while next < cands.len() && cands[next].0 <= nl {
                    cands[next].2 =
                        lines_before_block + seen_before(cands[next].0, block_start, seen);
                    next += 1;
                }
                let line = &data[line_start..nl];
                // The tally reads the record's `RecordType` on its way; the
                // `RecordType` lane takes it from there.
                let probed_type = if m.coverage && !line_blank {
                    if sweep_keys {
                        // The places inside this line (a few a record: walked, not
                        // bisected).
                        while place < places.len() && places[place] < line_start {
                            place += 1;
                        }
                        let mut end = place;
                        while end < places.len() && places[end] < nl {
                            end += 1;
                        }
                        let keys = crate::coverage::Keys::new(&places[place..end], line_start);
                        place = end;
                        tally.record_keyed(line, keys)
                    } else {
                        tally.record(line)
                    }
                } else {
                    None
                };
                // The operations a line names join the block search's hits, and take
                // the line when it holds no literal found.
                let mut named = false;
                if let Some(r) = routed
                    .filter(|_| reads && have_found && !line_blank && line_start >= taken_before)
                {
                    while guard_at < found_hits.len() && found_hits[guard_at].0 < line_start {
                        guard_at += 1;
                    }
                    let mut end = guard_at;
                    while end < found_hits.len() && found_hits[end].0 < nl {
                        end += 1;
                    }
                    let before = read_found.len();
                    // A line begun in an earlier block was not searched whole here.
                    let found = (line_start >= searched_from).then(|| &found_hits[guard_at..end]);
                    r.operations(line, line_start, found, &mut read_found);
                    guard_at = end;
                    named = read_found.len() > before;
                }
                let taken = next > 0 && cands[next - 1].0 == line_start;
                // The `RecordType` the tally read, for the router's checks.
                let read_type = probed_type.map(crate::coverage::record_type_value_number);
                if taken {
                    cands[next - 1].3 = read_type;
                }
                if named && !taken {
                    let index = lines_before_block + seen_before(line_start, block_start, seen);
                    by_type.push((line_start, nl, index, read_type));
                } else if !line_blank && types && line_start >= taken_before && !taken {
                    let number = match read_type {
                        Some(n) => n,
                        None => crate::coverage::record_type_number(line),
                    };
                    if m.wants_record_type(number) {
                        let index = lines_before_block + seen_before(line_start, block_start, seen);
                        by_type.push((line_start, nl, index, Some(number)));
                    }
                }
                seen += 1;
                line_start = nl + 1;
                // A run of blank lines (`\n\n…`, `\r\n\r\n…`, whitespace) is counted in
                // bulk: no step per line, so a block of newlines goes at memory speed.
                // Lines almost always start with `{`: one compare, and the line is
                // not blank.
                if !data.get(line_start).is_some_and(|&b| is_space(b)) {
                    line_blank = false;
                    continue;
                }
                let (stop, newlines) = blank_run(data, line_start, block_end);
                if newlines > 0 {
                    // The run holds `newlines` newlines, so one is found.
                    let last = line_start + memrchr(b'\n', &data[line_start..stop]).unwrap_or(0);
                    seen += newlines;
                    out.counts.blank += newlines;
                    line_start = last + 1;
                }
                line_blank = is_blank_at(data, line_start);
                if line_blank {
                    out.counts.blank += 1;
                }
                if newlines > 0 {
                    resume = stop;
                    continue 'lines;
                }
            }
            break;
        }
        for c in &mut cands[next..] {
            c.2 = lines_before_block + seen_before(c.0, block_start, seen);
        }
        // Sweep the next block for the keys when more than a quarter of this block's
        // records needed a search for them.
        sweep_keys = m.coverage && (tally.general() - general_before) * 4 > seen;

        // The operations read join the block search's hits, in order.
        if !read_found.is_empty() {
            found_hits.append(&mut read_found);
            found_hits.sort_unstable();
        }
        // Records selected by their `RecordType` or operation join the literal hits, in
        // line order.
        if !by_type.is_empty() {
            cands.append(&mut by_type);
            cands.sort_unstable_by_key(|c| c.0);
        }

        // 3. Parse the candidates while the block is still warm.
        let mut next_found = 0;
        for &(start, end, index, record_type) in &cands {
            // A line ending where the search reached holds no literal it did not find:
            // the search began at the line or where an earlier block's, which found
            // nothing in it, left off (a literal whose window starts before a block's
            // end ends inside its overlap).
            if let Some(r) = routed
                && have_found
                && end <= window_end
            {
                while next_found < found_hits.len() && found_hits[next_found].0 < start {
                    next_found += 1;
                }
                let mut stop = next_found;
                while stop < found_hits.len() && found_hits[stop].0 < end {
                    stop += 1;
                }
                let hits = &found_hits[next_found..stop];
                // A line ending past the block (in the search's overlap) had its
                // operation read by no newline pass.
                let mut read = Vec::new();
                if reads && end >= block_end {
                    let whole = (start >= searched_from).then_some(hits);
                    r.operations(&data[start..end], start, whole, &mut read);
                }
                let literals = hits.iter().chain(&read).map(|&(_, l)| l);
                r.route_found(&data[start..end], literals, record_type, &mut scratch.route);
                scratch.routed = true;
                next_found = stop;
            }
            candidate(
                &data[start..end],
                file,
                index,
                start as u64,
                pass,
                scratch,
                out,
            );
        }
        lines_before_block += seen;
        block_start = block_end;
        if m.coverage && line_start > span_start && block_start < len {
            // The block index's entry for the lines that ended in this block.
            let (first, last, undated) = tally.take_span();
            out.index.push(crate::index::Span {
                input: file as u32,
                offset: span_start as u64,
                len: (line_start - span_start) as u64,
                line: span_line,
                lines: lines_before_block - span_line,
                first,
                last,
                undated,
            });
            (span_start, span_line) = (line_start, lines_before_block);
        }
    }
    if m.coverage && line_start < len && !line_blank {
        tally.record(&data[line_start..]);
    }
    // The last line, without a newline: a candidate by its `RecordType`, or by an
    // operation it names (the newline pass did not read it), only if the literal search
    // did not already take it.
    if line_start < len && !line_blank && taken_to <= line_start {
        let line = &data[line_start..];
        let named = routed.filter(|_| reads).is_some_and(|r| {
            r.route(line, &mut scratch.route);
            !scratch.route.is_empty()
        });
        // The route is its own (`candidate` routes the line again otherwise).
        scratch.routed = named;
        if named || types && m.wants_record_type_of(line) {
            candidate(
                line,
                file,
                lines_before_block,
                line_start as u64,
                pass,
                scratch,
                out,
            );
        }
    }
    scratch.candidates = cands;
    scratch.hit_starts = hits;
    scratch.newlines = newlines;
    scratch.key_places = places;
    scratch.found = found_hits;
    out.counts.lines = lines_before_block + u64::from(data[len - 1] != b'\n');
    out.counts.records = out.counts.lines - out.counts.blank;
}

/// The newlines of a block from some position on: searched for, or listed by a sweep.
enum Newlines<'a> {
    /// A search of the bytes from the position (added back to each).
    Search(memchr::Memchr<'a>, usize),
    /// A sweep's list, from the position on.
    Listed(std::slice::Iter<'a, usize>),
}

impl Iterator for Newlines<'_> {
    type Item = usize;

    #[inline]
    fn next(&mut self) -> Option<usize> {
        match self {
            Newlines::Search(found, at) => found.next().map(|i| *at + i),
            Newlines::Listed(listed) => listed.next().copied(),
        }
    }
}

/// Newlines of the current block before a line start: a line that began in an earlier
/// block has none between its start and the block start.
#[inline]
fn seen_before(line_start: usize, block_start: usize, seen: u64) -> u64 {
    if line_start < block_start { 0 } else { seen }
}

/// Whether the line starting at `start` is blank; a position at the very end of the
/// data starts no line.
#[inline]
fn is_blank_at(data: &[u8], start: usize) -> bool {
    match data.get(start) {
        None => false,
        // Lines almost always start with `{`: one compare decides.
        Some(b'\n' | b'\r' | b' ' | b'\t' | b'\x0c') => {
            let end = memchr(b'\n', &data[start..]).map_or(data.len(), |i| start + i);
            is_blank(&data[start..end])
        }
        Some(_) => false,
    }
}

fn is_blank(line: &[u8]) -> bool {
    line.iter()
        .all(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\x0c'))
}

/// A byte of a blank line, or the newline ending one.
#[inline]
fn is_space(b: u8) -> bool {
    matches!(b, b'\n' | b' ' | b'\t' | b'\r' | b'\x0c')
}

/// The run of blank-line bytes in `data[start..end]`: where it stops (the first other
/// byte, or `end`) and how many newlines it holds. Whole 64-byte stretches are tested
/// and counted without a branch per byte (the compiler vectorises both folds).
#[inline]
fn blank_run(data: &[u8], start: usize, end: usize) -> (usize, u64) {
    const STRETCH: usize = 64;
    let mut at = start;
    let mut newlines = 0u64;
    while at + STRETCH <= end {
        let stretch = &data[at..at + STRETCH];
        if !stretch.iter().fold(true, |all, &b| all & is_space(b)) {
            break;
        }
        newlines += stretch.iter().map(|&b| u8::from(b == b'\n')).sum::<u8>() as u64;
        at += STRETCH;
    }
    while at < end && is_space(data[at]) {
        newlines += u64::from(data[at] == b'\n');
        at += 1;
    }
    (at, newlines)
}

/// Parses one candidate record (a line, a CSV cell or a JSON object) and hands it to
/// the sink with the selections it satisfies; `index` is the 0-based line where it
/// starts and `offset` the byte offset of that line.
pub(crate) fn candidate<S: Sink>(
    line: &[u8],
    file: usize,
    index: u64,
    offset: u64,
    pass: Pass<'_, S>,
    scratch: &mut Scratch,
    out: &mut Partial<S>,
) {
    let m = pass.matcher;
    let started = m.timed.then(Instant::now);
    let line = line.trim_ascii();
    if line.len() > m.max_line {
        let reason = format!(
            "line of {} bytes is longer than the limit of {}",
            line.len(),
            m.max_line
        );
        out.malformed(file, index, reason, line);
    } else {
        let at = At {
            input: file as u32,
            line: index,
            offset,
        };
        evaluate(line, at, pass, scratch, out);
    }
    if let Some(t) = started {
        scratch.parse_time += t.elapsed();
    }
    // A route found for this candidate is for it only.
    scratch.routed = false;
}

fn evaluate<S: Sink>(
    line: &[u8],
    at: At,
    pass: Pass<'_, S>,
    scratch: &mut Scratch,
    out: &mut Partial<S>,
) {
    let Scratch {
        buf,
        buffers,
        tape: spare,
        texts,
        hits,
        route,
        routed,
        reparse,
        entries,
        ..
    } = scratch;
    let file = at.input as usize;
    if pass.matcher.screen && !S::may_select(line, pass.params) {
        // Turned down unparsed: counted apart from the candidates, which were parsed.
        let m = pass.matcher;
        out.counts.screened += 1;
        (0..m.selections.len()).for_each(|i| out.evaluated.bump(i));
        return;
    }
    // Which selections this candidate can satisfy, from the literals its text holds (the
    // whole text: an embedded record's literals are in it too).
    let route = pass.matcher.router.as_ref().map(|r| {
        if !std::mem::take(routed) {
            r.route(line, route);
        } else if cfg!(debug_assertions) {
            // Every test checks the route the block search's hits gave against the
            // search of the line.
            let mut searched = Vec::new();
            r.route(line, &mut searched);
            debug_assert_eq!(*route, searched, "route from the block's hits: {line:?}");
        }
        &route[..]
    });
    // The literal it holds is not all a selection needs: no candidate after all.
    if route.is_some_and(|r| r.is_empty()) {
        return;
    }
    // Most candidates match nothing: read the fields the selections ask for from the
    // bytes, and parse in full only a record that matches (for its evidence) or that
    // cannot be read so.
    if pass.matcher.on_demand
        && let Some(record) = crate::ondemand::RawLine::read(line, entries)
        && !any_selected(&record, pass.matcher, route)
    {
        let m = pass.matcher;
        out.counts.candidates += 1;
        out.counts.not_matched += 1;
        match route {
            Some(route) => route.iter().for_each(|&i| out.evaluated.bump(i as usize)),
            None => (0..m.selections.len()).for_each(|i| out.evaluated.bump(i)),
        }
        return;
    }
    // One copy of the line, padded as simd-json's SIMD loads need, parsed in place
    // into a tape whose allocation is reused from line to line.
    buf.clear();
    buf.extend_from_slice(line);
    buf.resize(line.len() + simd_json::INPUT_PADDING, 0);
    let buffers = buffers.get_or_insert_with(|| simd_json::Buffers::new(line.len()));
    let mut tape = spare.take().unwrap_or_else(Tape::null).reset();
    if let Err(e) = simd_json::fill_tape_padded(buf, line.len(), buffers, &mut tape) {
        out.malformed(file, at.line, format!("invalid JSON: {e}"), line);
        *spare = Some(tape.reset());
        return;
    }
    let Ok(record) = Record::new(tape.as_value()) else {
        out.malformed(file, at.line, "not a JSON object".to_string(), line);
        *spare = Some(tape.reset());
        return;
    };
    // Exports (issue 8): a record held as JSON text in a string is parsed once more.
    if let Some(inner) = record.embedded() {
        let reparse = reparse.get_or_insert_with(Box::default);
        let document = record.ecs_document();
        evaluate_embedded(
            inner, document, line, at, pass, reparse, route, hits, texts, out,
        );
    } else {
        judge(&record, line, at, pass, route, hits, texts, out);
    }
    *spare = Some(tape.reset());
}

/// Exports (issue 8): parses a record held as JSON text in a string of its wrapper
/// (PowerShell's `AuditData` string, Elastic's `event.original`) from a second scratch
/// buffer, then judges it like any record, at the wrapper's position. `line` is the
/// wrapper's text, for the sample of a malformed one; `document` the wrapper when it is
/// an ECS document, whose own enrichment fields the record is seen with.
#[allow(clippy::too_many_arguments)]
fn evaluate_embedded<S: Sink>(
    embedded: Embedded<'_>,
    document: Option<simd_json::tape::Value<'_, '_>>,
    line: &[u8],
    at: At,
    pass: Pass<'_, S>,
    r: &mut Reparse,
    route: Option<&[u32]>,
    hits: &mut Vec<usize>,
    texts: &mut Interner,
    out: &mut Partial<S>,
) {
    let file = at.input as usize;
    let json = embedded.json.trim().as_bytes();
    r.buf.clear();
    r.buf.extend_from_slice(json);
    r.buf.resize(json.len() + simd_json::INPUT_PADDING, 0);
    let buffers = r
        .buffers
        .get_or_insert_with(|| simd_json::Buffers::new(json.len()));
    let mut tape = r.tape.take().unwrap_or_else(Tape::null).reset();
    match simd_json::fill_tape_padded(&mut r.buf, json.len(), buffers, &mut tape) {
        Err(e) => {
            let reason = format!("invalid JSON in the record's JSON text: {e}");
            out.malformed(file, at.line, reason, line);
        }
        Ok(()) => match Record::new(tape.as_value()) {
            Ok(record) => {
                let record = record
                    .with_fallback_time(embedded.fallback_time)
                    .with_document(document);
                judge(&record, json, at, pass, route, hits, texts, out);
            }
            Err(_) => {
                let reason = "the record's JSON text is not an object".to_string();
                out.malformed(file, at.line, reason, line);
            }
        },
    }
    r.tape = Some(tape.reset());
}

/// Whether a record satisfies any selection of `route` (`None`: all), without counting.
fn any_selected(record: &dyn Fields<Field>, m: &Matcher, route: Option<&[u32]>) -> bool {
    // A query that reads a derived field (user agent, GeoIP) is not judged on demand:
    // the enrichment is not in that view, so the record is parsed in full for it.
    let selects = |i: usize| {
        m.selections[i]
            .query
            .as_ref()
            .is_none_or(|q| m.derived[i] || q.matches(record))
    };
    match route {
        Some(route) => route.iter().any(|&i| selects(i as usize)),
        None => (0..m.selections.len()).any(selects),
    }
}

/// Counts a parsed record and hands it to the sink with the selections it satisfies;
/// `text` is its JSON text; `route` the selections it may satisfy (`None`: all).
#[allow(clippy::too_many_arguments)]
fn judge<S: Sink>(
    record: &Record<'_, '_>,
    text: &[u8],
    at: At,
    pass: Pass<'_, S>,
    route: Option<&[u32]>,
    hits: &mut Vec<usize>,
    texts: &mut Interner,
    out: &mut Partial<S>,
) {
    let m = pass.matcher;
    // Exports (issue 8): an object of no record shape that holds a rule literal is
    // malformed, never silently "not matched".
    if !record.is_recognised() && m.holds_literal(text) {
        let reason = "JSON object of no audit record shape (no Operation, event, AuditData, \
                      _source or o365audit)";
        out.malformed(at.input as usize, at.line, reason.to_string(), text);
        return;
    }
    out.counts.candidates += 1;
    hits.clear();
    let view = Enriched::new(record, &m.enrichment);
    let mut consider = |i: usize| {
        let sel = &m.selections[i];
        out.evaluated.bump(i);
        if sel.query.as_ref().is_none_or(|q| q.matches(&view)) {
            hits.push(i);
        }
    };
    match route {
        Some(route) => route.iter().for_each(|&i| consider(i as usize)),
        None => (0..m.selections.len()).for_each(consider),
    }
    // A rule with a trigger counts a match only on a record holding its trigger's
    // literal (what a pass that gates it evaluates first).
    let counted = |i: usize| {
        m.selections[i].why == Why::Rule
            && m.counted_by
                .get(i)
                .and_then(Option::as_ref)
                .is_none_or(|p| p.find(text).is_some())
    };
    if hits.iter().any(|&i| counted(i)) {
        out.counts.matched += 1;
    } else {
        out.counts.not_matched += 1;
        out.counts.context += u64::from(
            hits.iter()
                .any(|&i| matches!(m.selections[i].why, Why::Context(_))),
        );
    }
    if !hits.is_empty() {
        let mut cx = SinkCx {
            matcher: m,
            params: pass.params,
            texts,
        };
        out.sink.selected(hits, record, at, &mut cx);
    }
}

/// Shares the text of repeated evidence values (actors, targets, addresses) and the
/// reduction of each distinct client address, per worker. Bounded: it starts afresh
/// past `Interner::MAX` entries, so unique-per-record values cannot grow it forever.
#[derive(Default)]
pub struct Interner {
    texts: FxHashSet<Text>,
    ips: FxHashMap<Text, Option<Text>>,
    /// A buffer for text built from a record before it is copied into a `Text`.
    buffer: String,
}

impl Interner {
    const MAX: usize = 1 << 16;

    /// The shared text of `s`.
    pub fn text(&mut self, s: &str) -> Text {
        if let Some(t) = self.texts.get(s) {
            return t.clone();
        }
        if self.texts.len() >= Self::MAX {
            self.texts.clear();
        }
        let t: Text = s.into();
        self.texts.insert(t.clone());
        t
    }

    /// The reusable buffer for text built from a record (a command line), cleared by
    /// whoever writes it; its capacity is kept (at most 64 KiB).
    pub fn buffer(&mut self) -> &mut String {
        if self.buffer.capacity() > Self::BUFFER_MAX {
            self.buffer = String::new();
        }
        &mut self.buffer
    }

    /// The most capacity the buffer keeps between uses (a record may hold a command
    /// line of megabytes: its buffer is not held on to).
    const BUFFER_MAX: usize = 1 << 16;

    /// The IP a client address reduces to, shared. Reductions are kept by the
    /// address's host ([`ip_host`]): the same IP seen with many client ports (most
    /// Exchange records give one) is reduced once.
    pub fn ip(&mut self, address: &str) -> Option<Text> {
        let host = ip_host(address)?;
        if let Some(ip) = self.ips.get(host) {
            return ip.clone();
        }
        if self.ips.len() >= Self::MAX {
            self.ips.clear();
        }
        let ip: Option<Text> = canonical_ip(host).map(|ip| self.text(&ip));
        // A host that is its own IP (the usual case) shares that text as its key.
        let key = match &ip {
            Some(t) if **t == *host => t.clone(),
            _ => host.into(),
        };
        self.ips.insert(key, ip.clone());
        ip
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::findings::Value;
    use crate::record::reduce_ip;

    /// The interner's IP of an address is `reduce_ip`'s, whatever it saw before: a
    /// host met first with one port and then with another, bare or bracketed, and
    /// addresses that are no IP.
    #[test]
    fn interned_ips_are_the_reduced_addresses() {
        let addresses = [
            "[2001:db8::abcd]:12345",
            "[2001:db8::abcd]:443",
            "2001:db8::abcd",
            "[2001:db8::abcd]",
            "2001:DB8:0::ABCD",
            "10.11.12.13:12345",
            "10.11.12.13:80",
            "10.11.12.13",
            "[10.11.12.13]",
            " 10.11.12.13 ",
            "::ffff:10.11.12.13",
            "[::ffff:10.11.12.13]:1",
            "localhost",
            "localhost:12345",
            "[localhost]:12345",
            "[1.2.3.4]junk",
            "[1.2.3.4]:99999999",
            "",
        ];
        // Forwards, backwards, and each twice: every order of first sight.
        let mut interner = Interner::default();
        let order = addresses.iter().chain(addresses.iter().rev());
        for address in order.clone().chain(order) {
            let got = interner.ip(address);
            assert_eq!(got.as_deref(), reduce_ip(address).as_deref(), "{address:?}");
        }
    }

    /// Planning makes the rule literals from the selections' searches; they must be
    /// what asking every rule's queries gives, for the published rules and the
    /// built-in one, planned with and without triggers.
    #[test]
    fn planned_rule_literals_are_those_of_the_rules_queries() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../../shared/corpus/elastic-rules");
        let mut packs = vec![Rule::builtin()];
        if dir.is_dir() {
            packs.push(crate::rule::load::load(&[dir]).expect("loads").rules);
        } else {
            eprintln!("skipped the corpus rules: {} is absent", dir.display());
        }
        for rules in packs {
            let expected = format!("{:?}", rule_literals(&rules, &Enrichment::default()));
            for m in [
                Matcher::new(rules.clone(), true, 1 << 20),
                Matcher::new(rules.clone(), false, 1 << 20),
                Matcher::with_triggers(rules.clone(), 1 << 20),
            ] {
                assert_eq!(format!("{:?}", m.literals()), expected);
            }
        }
    }

    /// Lines the context pass's screen turns down are counted apart, as screened out
    /// unparsed: `candidates` are the lines parsed, and a turned-down line that would
    /// not have parsed is not counted malformed (it used to be a candidate either way).
    #[test]
    fn screened_lines_are_counted_apart_from_the_candidates() {
        use crate::analysis::context::{Activity, Watch};
        // 2024-01-01T00:00:00Z + 1000 s .. + 2000 s.
        const T0: i64 = 1_704_067_200;
        let mut watch = Watch::new(
            vec![(
                "svc@contoso.com".into(),
                vec![(Some(T0 + 1000), Some(T0 + 2000))],
            )],
            Vec::new(),
        );
        watch.horizon = 0;
        let at = |secs: i64| {
            chrono::DateTime::from_timestamp(T0 + secs, 0)
                .unwrap()
                .format("%Y-%m-%dT%H:%M:%S")
                .to_string()
        };
        let record = |secs: i64| {
            format!(
                r#"{{"CreationTime":"{}","UserId":"svc@contoso.com","Operation":"MailItemsAccessed","RecordType":50,"Workload":"Exchange"}}"#,
                at(secs)
            )
        };
        let cut = record(5000);
        let data = format!(
            "{}\n{}\n{}\n",
            record(1500),
            record(5000),
            &cut[..cut.len() - 20]
        );
        let scan = |screen: bool| {
            let m = Matcher::for_literals(Rule::builtin(), watch.literals(), 1 << 20)
                .with_screen(screen);
            assert_eq!(m.screens(), screen);
            let p: crate::findings::Partial<Activity> = scan_chunk(
                data.as_bytes(),
                0,
                Pass::new(&m, &watch),
                &mut Scratch::default(),
            );
            let c = p.counts;
            assert_eq!(c.records, c.not_candidate() + c.screened + c.candidates);
            assert_eq!(c.candidates, c.matched + c.not_matched + c.malformed);
            (c.candidates, c.screened, c.malformed, p.sink.records)
        };
        assert_eq!(scan(true), (1, 2, 0, 1));
        assert_eq!(scan(false), (3, 0, 1, 1));
    }

    const HIT: &str = r#"{"Operation":"Set-MailboxAuditBypassAssociation","Workload":"Exchange","UserId":"u","CreationTime":"2024-01-01T00:00:00","Id":"1","Parameters":[{"Name":"Identity","Value":"m"},{"Name":"AuditBypassEnabled","Value":"True"}]}"#;
    const MISS: &str = r#"{"Operation":"Set-Mailbox","Workload":"Exchange","UserId":"u"}"#;
    const DECOY: &str = r#"{"Operation":"Set-Mailbox","Workload":"Exchange","ObjectId":"Set-MailboxAuditBypassAssociation"}"#;

    use crate::findings::Harvest;

    fn scan(data: &str, prefilter: bool) -> Partial<Harvest> {
        let m = Matcher::new(Rule::builtin(), prefilter, 1 << 20);
        scan_chunk(
            data.as_bytes(),
            0,
            Pass::new(&m, &()),
            &mut Scratch::default(),
        )
    }

    fn lines(p: &Partial<Harvest>) -> Vec<u64> {
        p.sink.findings.iter().map(|f| f.at.line).collect()
    }

    #[test]
    fn counts_and_numbers_lines() {
        let data = format!(
            "{MISS}\n\n{HIT}\n  \n{DECOY}\n{{broken Set-MailboxAuditBypassAssociation\n{HIT}"
        );
        for prefilter in [true, false] {
            let p = scan(&data, prefilter);
            assert_eq!(p.counts.lines, 7, "prefilter={prefilter}");
            assert_eq!(p.counts.blank, 2);
            assert_eq!(p.counts.matched, 2);
            assert_eq!(p.counts.malformed, 1);
            assert_eq!(lines(&p), vec![2, 6]);
            let offsets: Vec<u64> = p.sink.findings.iter().map(|f| f.at.offset).collect();
            let starts: Vec<u64> = data.match_indices(HIT).map(|(i, _)| i as u64).collect();
            assert_eq!(offsets, starts);
            assert_eq!(p.coverage.records(), p.counts.records);
            assert_eq!(p.samples[0].line, 5);
            let c = p.counts;
            assert_eq!(c.lines, c.blank + c.not_candidate() + c.candidates);
            assert_eq!(c.candidates, c.matched + c.not_matched + c.malformed);
        }
        assert_eq!(scan(&data, true).counts.candidates, 4);
        assert_eq!(scan(&data, false).counts.candidates, 5);
    }

    #[test]
    fn evidence_fields_are_read() {
        let p = scan(HIT, true);
        let e = &p.sink.findings[0];
        let rule = &Rule::builtin()[0];
        assert_eq!(e.actor.as_deref(), Some("u"));
        let field = |name| e.field(rule.evidence_index(name)).cloned();
        assert_eq!(field("target"), Some(Value::Text("m".into())));
        assert_eq!(field("bypass_enabled"), Some(Value::Bool(true)));
        assert_eq!(
            field("command_line"),
            Some(Value::Text(
                "Set-MailboxAuditBypassAssociation -Identity \"m\" -AuditBypassEnabled $true"
                    .into()
            ))
        );
        assert_eq!(e.record_id.as_deref(), Some("1"));
    }

    #[test]
    fn embedded_records_reach_the_sink_at_the_wrapper_in_both_passes() {
        // PowerShell's AuditData string without CreationTime: CreationDate stands in.
        let inner = HIT.replace("\"CreationTime\":\"2024-01-01T00:00:00\",", "");
        let wrapper = serde_json::json!({
            "CreationDate": "/Date(1704153600000)/",
            "Operations": "Set-MailboxAuditBypassAssociation",
            "AuditData": inner,
        })
        .to_string();
        let noshape = r#"{"UserId":"u","what":"Set-MailboxAuditBypassAssociation"}"#;
        let data = format!("{MISS}\n{wrapper}\n{noshape}\n");
        let first = Matcher::new(Rule::builtin(), true, 1 << 20);
        let second = Matcher::for_literals(Rule::builtin(), Some(vec!["u".into()]), 1 << 20);
        for m in [first, second] {
            let p: Partial<Harvest> = scan_chunk(
                data.as_bytes(),
                0,
                Pass::new(&m, &()),
                &mut Scratch::default(),
            );
            assert_eq!(p.counts.malformed, 1, "the object of no record shape");
            assert_eq!(p.samples[0].line, 2);
            assert_eq!(lines(&p).last(), Some(&1));
            let f = p.sink.findings.iter().find(|f| f.at.line == 1).unwrap();
            assert_eq!(f.at.offset, MISS.len() as u64 + 1);
            let t = f.timestamp.map(|t| t.to_rfc3339());
            assert_eq!(t.as_deref(), Some("2024-01-02T00:00:00+00:00"));
        }
    }

    #[test]
    fn failures_are_selected_as_context_not_matched() {
        let failed = HIT.replace("\"Workload\"", "\"ResultStatus\":\"Failed\",\"Workload\"");
        let p = scan(&format!("{HIT}\n{failed}\n"), true);
        assert_eq!(
            (p.counts.matched, p.counts.not_matched, p.counts.context),
            (1, 1, 1)
        );
        let whys: Vec<Why> = p.sink.findings.iter().map(|f| f.why).collect();
        assert_eq!(whys, vec![Why::Rule, Why::Context(0)]);
    }

    #[test]
    fn crlf_lines_and_hits_across_block_boundaries() {
        // Lines long enough that hits straddle the 256 KiB blocks.
        let pad = "x".repeat(DEFAULT_SCAN_BLOCK / 3);
        let line = HIT.replace("\"Id\":\"1\"", &format!("\"Pad\":\"{pad}\",\"Id\":\"1\""));
        let data = [line.as_str(); 7].join("\r\n") + "\r\n";
        let p = scan(&data, true);
        assert_eq!(p.counts.lines, 7);
        assert_eq!(p.counts.matched, 7);
        assert_eq!(lines(&p), (0..7).collect::<Vec<_>>());
    }

    #[test]
    fn overlong_lines_are_malformed_not_parsed() {
        let m = Matcher::new(Rule::builtin(), true, 16);
        let p: Partial<Harvest> = scan_chunk(
            HIT.as_bytes(),
            0,
            Pass::new(&m, &()),
            &mut Scratch::default(),
        );
        assert_eq!(p.counts.malformed, 1);
        assert!(
            p.samples[0].reason.contains("longer than"),
            "{}",
            p.samples[0].reason
        );
    }

    /// Records and runs of blank lines mixed at random: newline runs, CRLF runs,
    /// whitespace lines, CRLF records, no final newline.
    fn blank_heavy(pieces: &[(u8, u16)]) -> String {
        let mut data = String::new();
        for &(kind, n) in pieces {
            let n = usize::from(n);
            match kind % 9 {
                0 => data.push_str(&"\n".repeat(n)),
                1 => data.push_str(&"\r\n".repeat(n)),
                2 => data.push_str(&" \t\r\x0c\n".repeat(n % 7)),
                3 => data.push_str(&" ".repeat(n % 100)),
                4 => data.push_str(&format!("{HIT}\n")),
                5 => data.push_str(&format!("{HIT}\r\n")),
                6 => data.push_str(&format!("{MISS}\n")),
                7 => data.push_str(&format!("{DECOY}\n")),
                _ => data.push_str(&format!("  {HIT}\n")),
            }
        }
        data
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 256, ..Default::default() })]

        /// Blank runs skipped in bulk count, number and find exactly what the line by
        /// line reference path does, whatever the block size.
        #[test]
        fn blank_runs_count_as_the_reference_does(
            pieces in proptest::collection::vec((0u8..9, 0u16..700), 0..40),
            block in proptest::prop_oneof![1usize..80, 80usize..3000],
        ) {
            let data = blank_heavy(&pieces);
            // Lines and blank lines counted the plainest way.
            let mut naive = data.split('\n').collect::<Vec<_>>();
            if naive.last() == Some(&"") {
                naive.pop();
            }
            let blank = naive.iter().filter(|l| l.bytes().all(|b| b" \t\r\x0c".contains(&b))).count();
            let reference = scan(&data, false);
            proptest::prop_assert_eq!((reference.counts.lines, reference.counts.blank), (naive.len() as u64, blank as u64));
            let m = Matcher::new(Rule::builtin(), true, 1 << 20).with_block(block);
            let fast: Partial<Harvest> =
                scan_chunk(data.as_bytes(), 0, Pass::new(&m, &()), &mut Scratch::default());
            let counts = |p: &Partial<Harvest>| {
                (p.counts.lines, p.counts.blank, p.counts.records, p.counts.matched)
            };
            proptest::prop_assert_eq!(counts(&fast), counts(&reference));
            proptest::prop_assert_eq!(lines(&fast), lines(&reference));
            let offsets = |p: &Partial<Harvest>| {
                p.sink.findings.iter().map(|f| f.at.offset).collect::<Vec<_>>()
            };
            proptest::prop_assert_eq!(offsets(&fast), offsets(&reference));
            proptest::prop_assert_eq!(fast.coverage.records(), reference.coverage.records());
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 64, ..Default::default() })]

        /// The context pass's watched names searched through case-variant windows take
        /// the same candidates as the folded search did, whatever the block size.
        #[test]
        fn watched_names_take_the_lines_the_folded_search_took(
            names in proptest::collection::vec("[a-z0-9._-]{3,12}@[a-z]{3,8}\\.com", 1..6),
            records in proptest::collection::vec((0usize..8, "[a-zA-Z]{0,6}", proptest::bool::ANY), 1..60),
            block in 1usize..600,
        ) {
            let mut data = String::new();
            for (pick, other, upper) in &records {
                let user = match names.get(*pick) {
                    Some(n) if *upper => n.to_ascii_uppercase(),
                    Some(n) => n.clone(),
                    None => format!("{other}@elsewhere.org"),
                };
                data.push_str(&MISS.replace("\"u\"", &format!("\"{user}\"")));
                data.push('\n');
            }
            let fast = Matcher::for_literals(Rule::builtin(), Some(names.clone()), 1 << 20).with_block(block);
            let mut folded = Matcher::for_literals(Rule::builtin(), Some(names.clone()), 1 << 20).with_block(block);
            folded.prefilter = Prefilter::folded(names.clone());
            let run = |m: &Matcher| -> Partial<Harvest> {
                scan_chunk(data.as_bytes(), 0, Pass::new(m, &()), &mut Scratch::default())
            };
            let (a, b) = (run(&fast), run(&folded));
            // Two names' variants always fit one slim Teddy searcher.
            if names.len() <= 2 {
                proptest::prop_assert!(!fast.prefilter.folds_case());
            }
            proptest::prop_assert_eq!(a.counts.candidates, b.counts.candidates);
            proptest::prop_assert_eq!(lines(&a), lines(&b));
            let watched = records.iter().filter(|r| r.0 < names.len()).count() as u64;
            proptest::prop_assert!(a.counts.candidates >= watched);
        }
    }

    /// The built-in rule's fast path over `data` in blocks of `block` bytes, with a
    /// scratch that has scanned another chunk first, as a worker's has (it keeps the
    /// places of the last one).
    fn scan_after_another_chunk(data: &str, block: usize) -> Partial<Harvest> {
        let m = Matcher::new(Rule::builtin(), true, 1 << 20).with_block(block);
        let mut scratch = Scratch::default();
        let other = keyed_record(1, 3, 5, 1, 30).repeat(3);
        let _: Partial<Harvest> = scan_chunk(other.as_bytes(), 0, Pass::new(&m, &()), &mut scratch);
        scan_chunk(data.as_bytes(), 0, Pass::new(&m, &()), &mut scratch)
    }

    /// A record with its keys in one of several orders and spellings: the API's own
    /// order, shuffled keys, keys only as values or escaped inside a string, the
    /// `@timestamp` of ECS, no time at all, padding that makes it span blocks.
    fn keyed_record(kind: u8, day: u8, second: u32, rt: u8, pad: usize) -> String {
        let time = format!(
            "2024-03-{:02}T{:02}:{:02}:{:02}",
            1 + day % 28,
            second / 3600 % 24,
            second / 60 % 60,
            second % 60
        );
        let pad = "nTxe dTyye".repeat(pad);
        match kind % 8 {
            0 => format!(
                r#"{{"CreationTime":"{time}","Id":"0b8f1c4e-4d3a-4f4e-9a61-6a0f3f6f2a11","Operation":"Op","OrganizationId":"4a7c8238-5799-4b16-9fc6-9ad8fce5a7d9","RecordType":{rt},"P":"{pad}"}}"#
            ),
            1 => {
                format!(r#"{{"UserType":2,"P":"{pad}","RecordType":{rt},"CreationTime":"{time}"}}"#)
            }
            2 => format!(
                r#"{{"Operation":"RecordType","CreationTime" : "{time}Z","RecordType": {rt}}}"#
            ),
            3 => format!(
                r#"{{"AuditData":"{{\"RecordType\":{rt},\"P\":\"{pad}\",\"CreationTime\":\"{time}\"}}"}}"#
            ),
            4 => format!(
                r#"{{"@timestamp":"{time}.000Z","event":{{"code":"ExchangeAdmin"}},"P":"{pad}"}}"#
            ),
            5 => format!(r#"{{"X":"CreationTime","RecordType":"ExchangeAdmin","P":"{pad}"}}"#),
            6 => format!(r#"{{"P":"{pad}","CreationTime":"{time}+02:00","RecordTypes":3}}"#),
            _ => format!(r#"{{"RecordType":{rt},"Id":"x","CreationTime":"{time}","P":"{pad}"}}"#),
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 256, ..Default::default() })]

        /// The coverage and every block index entry of the fast path, whose keys are
        /// swept for on blocks of records in other key orders, equal a tally of the
        /// same lines searched record by record, whatever the block size and the
        /// mix of layouts; the reference path's coverage too.
        #[test]
        fn swept_keys_count_as_searched_keys(
            records in proptest::collection::vec(
                (0u8..10, 0u8..40, 0u32..86_400, proptest::prop_oneof![proptest::strategy::Just(1u8), 2u8..40], 0usize..40),
                1..60,
            ),
            block in proptest::prop_oneof![1usize..64, 64usize..4000],
            final_newline in proptest::bool::ANY,
        ) {
            let mut data = String::new();
            for &(kind, day, second, rt, pad) in &records {
                match kind {
                    8 => data.push('\n'),
                    9 => data.push_str(&keyed_record(0, day, second, rt, pad)),
                    _ => data.push_str(&keyed_record(kind, day, second, rt, pad)),
                }
                data.push('\n');
            }
            if !final_newline {
                data.pop();
            }
            let fast = scan_after_another_chunk(&data, block);
            let reference = scan(&data, false);
            proptest::prop_assert_eq!(&fast.coverage, &reference.coverage);
            let bytes = data.as_bytes();
            for span in &fast.index {
                let piece = &bytes[span.offset as usize..(span.offset + span.len) as usize];
                let mut tally = Tally::default();
                let mut lines = 0;
                for line in piece.split_inclusive(|&b| b == b'\n') {
                    lines += 1;
                    let line = line.strip_suffix(b"\n").unwrap_or(line);
                    if !is_blank(line) {
                        tally.record(line);
                    }
                }
                proptest::prop_assert_eq!(span.lines, lines);
                proptest::prop_assert_eq!(tally.take_span(), (span.first, span.last, span.undated));
            }
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 256, ..Default::default() })]

        /// Where the literal is found by the keys' sweep (one literal, records in other
        /// key orders), the fast path takes the lines the reference path matches, at
        /// the same lines and offsets, and as candidates exactly the lines that hold
        /// the literal, with the reference's line counts and coverage: literals inside
        /// records, twice in a line, across blocks, lines in the API's order between
        /// (the sweep stops and starts again), CRLF, blank runs, any block size.
        #[test]
        fn a_literal_found_by_the_sweep_takes_the_lines_the_search_takes(
            records in proptest::collection::vec(
                (0u8..11, 0u8..40, 0u32..86_400, 0u8..4, 0usize..40),
                1..60,
            ),
            block in proptest::prop_oneof![1usize..64, 64usize..4000],
            crlf in proptest::bool::ANY,
            final_newline in proptest::bool::ANY,
        ) {
            let literal = "Set-MailboxAuditBypassAssociation";
            let eol = if crlf { "\r\n" } else { "\n" };
            let mut data = String::new();
            for &(kind, day, second, lit, pad) in &records {
                let record = match kind {
                    8 => String::new(),
                    9 => "  \n\n \t".to_string(),
                    10 => HIT.to_string(),
                    _ => keyed_record(kind, day, second, 2, pad),
                };
                let record = match lit {
                    1 => record.replacen("\"P\":\"", &format!("\"P\":\"{literal}"), 1),
                    2 => record.replacen("\"P\":\"", &format!("\"P\":\"{literal}{literal}"), 1),
                    3 => record.replace("nTxe", literal),
                    _ => record,
                };
                data.push_str(&record);
                data.push_str(eol);
            }
            if !final_newline {
                data.truncate(data.len() - eol.len());
            }
            let fast = scan_after_another_chunk(&data, block);
            let reference = scan(&data, false);
            let at = |p: &Partial<Harvest>| -> Vec<(u64, u64, Why)> {
                p.sink.findings.iter().map(|f| (f.at.line, f.at.offset, f.why)).collect()
            };
            proptest::prop_assert_eq!(at(&fast), at(&reference));
            proptest::prop_assert_eq!(fast.counts.lines, reference.counts.lines);
            proptest::prop_assert_eq!(fast.counts.blank, reference.counts.blank);
            proptest::prop_assert_eq!(fast.counts.matched, reference.counts.matched);
            proptest::prop_assert_eq!(&fast.coverage, &reference.coverage);
            let holding = data
                .split('\n')
                .filter(|line| line.contains(literal))
                .count() as u64;
            proptest::prop_assert_eq!(fast.counts.candidates, holding);
        }
    }

    #[test]
    fn long_blank_runs_across_blocks_are_counted() {
        // 3 records between runs far longer than the block.
        let data = format!(
            "\n{HIT}\n{}{MISS}\r\n{}{HIT}",
            "\n".repeat(5000),
            "\r\n \n".repeat(3000)
        );
        let m = Matcher::new(Rule::builtin(), true, 1 << 20).with_block(1000);
        let p: Partial<Harvest> = scan_chunk(
            data.as_bytes(),
            0,
            Pass::new(&m, &()),
            &mut Scratch::default(),
        );
        assert_eq!(
            (p.counts.lines, p.counts.blank),
            (1 + 1 + 5000 + 1 + 6000 + 1, 1 + 5000 + 6000)
        );
        assert_eq!(lines(&p), vec![1, 5000 + 1 + 1 + 6000 + 1]);
        let reference = scan(&data, false);
        assert_eq!(
            (reference.counts.lines, reference.counts.blank),
            (p.counts.lines, p.counts.blank)
        );
        assert_eq!(lines(&reference), lines(&p));
    }

    #[test]
    fn only_whitespace_is_blank() {
        let p = scan("\n \t\r\n\n", true);
        assert_eq!((p.counts.lines, p.counts.blank), (3, 3));
        let p = scan("\r", false);
        assert_eq!((p.counts.lines, p.counts.blank), (1, 1));
    }
}
