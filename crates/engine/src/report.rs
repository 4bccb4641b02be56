//! What a hunt found and counted: the [`Report`] every output format renders.
//!
//! Place in the flow: the last stage ([`finish`](crate::finish)) fills it; the
//! `ualhunt-report` crate writes it in every format. Each finding is held once, with what
//! the analyses made of it (its change, its allowlist entry), grouped by actor.

use std::borrow::Cow;
use std::time::Duration;

use ualhunt_input::Input;

use crate::allow::Allowlist;
use crate::analysis::Window;
use crate::analysis::actors::{self, ActorFindings};
use crate::analysis::bypass::Investigation;
use crate::coverage::verdict::CoverageReport;
use crate::error::{InputError, Warning};
use crate::findings::Counts;
use crate::findings::{Finding, Value};
use crate::rule::load::NotRun;
use crate::rule::{EvidenceKind, Items, RuleMeta};
use crate::scan::PassStats;

/// The names of a run's inputs, in input order: made from the inputs when asked for
/// (an archive of a million entries holds no name per entry; a zip member's name is read
/// again from its archive's directory), or listed (a merge of shards' partials).
#[derive(Clone, Debug)]
pub struct Names(Listing);

#[derive(Clone, Debug)]
enum Listing {
    Inputs(Vec<Input>),
    Listed {
        paths: Vec<String>,
        members: Vec<Option<String>>,
    },
}

impl Names {
    /// The names of these inputs.
    pub fn of(inputs: Vec<Input>) -> Names {
        Names(Listing::Inputs(inputs))
    }

    /// Names already made: each input's path and, for a zip member, its member name
    /// (`paths` and `members` of one length).
    pub fn listed(paths: Vec<String>, members: Vec<Option<String>>) -> Names {
        Names(Listing::Listed { paths, members })
    }

    /// How many inputs.
    pub fn len(&self) -> usize {
        match &self.0 {
            Listing::Inputs(inputs) => inputs.len(),
            Listing::Listed { paths, .. } => paths.len(),
        }
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Input `i`'s name in reports: its path (`archive.zip!member` for a zip member),
    /// `-` for stdin. Findings refer to inputs by index, so `i` is one of them.
    pub fn path(&self, i: usize) -> Cow<'_, str> {
        match &self.0 {
            Listing::Inputs(inputs) => match &inputs[i] {
                Input::File(p) => p.to_string_lossy(),
                input => Cow::Owned(input.display()),
            },
            Listing::Listed { paths, .. } => Cow::Borrowed(&paths[i]),
        }
    }

    /// Input `i`'s member name, for a zip member.
    pub fn member(&self, i: usize) -> Option<Cow<'_, str>> {
        match &self.0 {
            Listing::Inputs(inputs) => inputs[i].member().map(Cow::Owned),
            Listing::Listed { members, .. } => members[i].as_deref().map(Cow::Borrowed),
        }
    }

    /// Every input's name, in input order.
    pub fn paths(&self) -> impl Iterator<Item = Cow<'_, str>> {
        (0..self.len()).map(|i| self.path(i))
    }
}

/// A malformed line, located.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct MalformedLine {
    /// The input's path.
    pub path: String,
    /// 1-based line number in the (decompressed) input.
    pub line: u64,
    /// Why it was rejected.
    pub reason: String,
    /// Its first bytes.
    pub excerpt: String,
}

/// Measurements of a run.
#[derive(Debug)]
pub struct RunStats {
    /// Wall time of the whole run.
    pub wall: Duration,
    /// The run's stages in the order they ran, each with its wall time (`--stats`):
    /// where a run that finds much spends what its scan does not. Empty for a merge
    /// of shards.
    pub phases: Vec<(&'static str, Duration)>,
    /// Worker threads used.
    pub threads: usize,
    /// Target chunk size.
    pub chunk_size: usize,
    /// The first pass.
    pub scan: PassStats,
    /// Each context pass that ran, in rule order (one per rule with the bypass
    /// investigation that had someone to watch).
    pub context: Vec<ContextStats>,
    /// Whom the context pass watched, when it ran.
    pub watched: Option<Watched>,
    /// Per rule: its prefilter literals and how many records it was evaluated on.
    pub rules: Vec<RuleStats>,
    /// Distinct literals the router maps back to rules (`None`: no routing).
    pub routed_literals: Option<usize>,
    /// The second look at the rules searched for by their trigger only
    /// (`stages::around_triggers`; `None`: no such rule).
    pub triggers: Option<crate::stages::TriggerStats>,
    /// What the context cache kept of the compressed inputs after the first pass
    /// (`None`: no cache, as with `--no-context`).
    pub cache: Option<crate::scan::cache::CacheStats>,
}

/// One context pass, for `--stats`.
#[derive(Debug)]
pub struct ContextStats {
    /// The rule whose investigation it gathered for.
    pub rule: String,
    /// The pass.
    pub pass: PassStats,
    /// Records it attributed to a watched name.
    pub attributed: u64,
}

/// Whom the context pass watched, for `--stats`: distinct names (trimmed, any case, as
/// the pass compares them), over every rule's watch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Watched {
    /// Distinct names: a bypassed account that is also an actor, or a name two rules
    /// watch, counts once.
    pub names: usize,
    /// Distinct bypassed accounts.
    pub accounts: usize,
    /// Distinct actors.
    pub actors: usize,
    /// Distinct spellings of them in the findings (case and spacing variants of one
    /// name each count): what the count of names was before they were told apart.
    pub spellings: usize,
}

impl Watched {
    /// Counts the names of `watches`.
    pub fn of<'a>(
        watches: impl IntoIterator<Item = &'a crate::analysis::context::Watch>,
    ) -> Watched {
        use std::collections::BTreeSet;
        let (mut accounts, mut actors, mut spellings) =
            (BTreeSet::new(), BTreeSet::new(), BTreeSet::new());
        for w in watches {
            accounts.extend(w.accounts.iter().map(|(k, _)| k.as_str()));
            actors.extend(w.actors.iter().map(|(k, _)| k.as_str()));
            spellings.extend(w.spellings.iter().map(String::as_str));
        }
        Watched {
            names: accounts.union(&actors).count(),
            accounts: accounts.len(),
            actors: actors.len(),
            spellings: spellings.len(),
        }
    }
}

/// How one rule fared in the first pass, for `--stats`.
#[derive(Debug, Clone)]
pub struct RuleStats {
    /// Its literals (`None`: it has none; every record is parsed and evaluated for it).
    pub literals: Option<Vec<String>>,
    /// Why it has no literal, when it has none.
    pub why_none: Option<String>,
    /// When its literals are the key of a field the run cannot derive (no
    /// `--geoip-db`): why, said to the user (`enrich::unenriched_note`).
    pub unenriched: Option<String>,
    /// Records its query was evaluated on (the candidates its literals gave).
    pub evaluated: u64,
    /// Records its query matched, in both looks (before duplicates are dropped and its
    /// alerting keeps some).
    pub matched: u64,
    /// When its literals are its trigger's ([`crate::rule::Query::trigger`]): the
    /// aggregate column that needs it; its other records are read only around the
    /// records meeting it.
    pub trigger: Option<String>,
}

/// Everything a hunt found and counted.
#[derive(Debug)]
pub struct Report {
    /// The rules that ran.
    pub rules: Vec<RuleMeta>,
    /// Each rule's evidence items by role, resolved once (see [`Items`]).
    pub items: Vec<Items>,
    /// Rules that were loaded but cannot run offline, with why.
    pub not_run: Vec<NotRun>,
    /// Input names in input order (`archive.zip!member` for a zip member); findings
    /// refer to them by index.
    pub inputs: Names,
    /// Inputs read.
    pub files: u64,
    /// Bytes scanned (decompressed).
    pub bytes: u64,
    /// Line accounting.
    pub counts: Counts,
    /// Rule matches dropped because an earlier one had the same rule and record id.
    pub duplicates: u64,
    /// Per rule, matches its alerting held back (`new_terms`, `threshold`).
    pub held_back: Vec<u64>,
    /// Rule matches outside `--since`/`--until` (after duplicates were dropped).
    pub outside_window: u64,
    /// The window.
    pub window: Window,
    /// Inputs that could not be read in full.
    pub errors: Vec<InputError>,
    /// Inputs read with a doubt (not recognised as any known layout).
    pub warnings: Vec<Warning>,
    /// The first malformed lines.
    pub malformed: Vec<MalformedLine>,
    /// Rule matches inside the window, grouped by actor.
    pub actors: Vec<ActorFindings>,
    /// The bypass investigations (one per rule that asks for it).
    pub investigations: Vec<Investigation>,
    /// What the archive covers.
    pub coverage: CoverageReport,
    /// The allowlist used.
    pub allowlist: Allowlist,
    /// Whether the context pass ran (it runs only when there are findings).
    pub context_ran: bool,
    /// Whether building-block rules' findings count toward the verdict and the exit
    /// status (`--building-blocks`); see [`Report::counts`].
    pub building_blocks: bool,
    /// Measurements.
    pub stats: RunStats,
}

impl Report {
    /// The evidence items of a finding's rule, by role.
    pub fn items(&self, f: &Finding) -> &Items {
        &self.items[usize::from(f.rule)]
    }

    /// A finding's evidence item at `index` (from its rule's [`Items`]), as text.
    pub fn text<'f>(&self, f: &'f Finding, index: Option<usize>) -> Option<&'f str> {
        f.field(index).and_then(Value::as_text)
    }

    /// The items a completed EQL sequence's finding carries (`analysis::sequence`):
    /// what it joined, then each step's record (time, path:line, record id), as
    /// `(name, text)`; empty for every other finding.
    pub fn sequence_items<'f>(&self, f: &'f Finding) -> Vec<(&str, &'f str)> {
        let Some(rule) = self.rules.get(usize::from(f.rule)) else {
            return Vec::new();
        };
        rule.evidence
            .iter()
            .zip(&f.fields)
            .filter(|(spec, _)| matches!(spec.kind, EvidenceKind::Sequence | EvidenceKind::Step))
            .filter_map(|(spec, v)| Some((spec.name.as_str(), v.as_ref()?.as_text()?)))
            .collect()
    }

    /// Number of matched events reported.
    pub fn events(&self) -> usize {
        self.actors.iter().map(|a| a.evidence.len()).sum()
    }

    /// Number of reported events that no allowlist entry covers: these, not the
    /// allowed ones, make a finding for the exit status.
    pub fn unallowed_events(&self) -> usize {
        self.actors
            .iter()
            .flat_map(|a| &a.evidence)
            .filter(|e| e.allowed.is_none())
            .count()
    }

    /// Whether a finding counts toward the verdict and the exit status: its rule is no
    /// building block, or `--building-blocks` counts them (allowlisting aside).
    pub fn counts(&self, f: &Finding) -> bool {
        self.building_blocks
            || !self
                .rules
                .get(usize::from(f.rule))
                .is_some_and(RuleMeta::is_building_block)
    }

    /// Number of reported events that make a finding for the verdict and the exit
    /// status: not allowlisted, and of a rule that counts ([`Report::counts`]).
    pub fn verdict_events(&self) -> usize {
        self.actors
            .iter()
            .flat_map(|a| &a.evidence)
            .filter(|e| e.allowed.is_none() && self.counts(&e.finding))
            .count()
    }

    /// Per rule, in rule order: events and actors.
    pub fn by_rule(&self) -> Vec<actors::RuleSummary> {
        actors::per_rule(&self.actors, self.rules.len())
    }

    /// The rules that fired, in the order every output lists them: severity (critical
    /// first), risk score, events (most first), rule order.
    pub fn fired_rules(&self) -> Vec<actors::RuleSummary> {
        let mut fired: Vec<actors::RuleSummary> = self
            .by_rule()
            .into_iter()
            .filter(|s| s.events > 0)
            .collect();
        fired.sort_by_key(|s| {
            let r = &self.rules[usize::from(s.rule)];
            (
                actors::severity_rank(&r.severity),
                std::cmp::Reverse(r.risk_score),
                std::cmp::Reverse(s.events),
                s.rule,
            )
        });
        fired
    }

    /// Failed attempts reported (inside the window).
    pub fn attempts(&self) -> usize {
        self.investigations.iter().map(|i| i.attempts.len()).sum()
    }
}
