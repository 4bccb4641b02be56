//! The driver: inputs in, a [`Report`] out.
//!
//! Place in the flow: ties `source` → `chunk` → `scan` → `findings` → `analysis`
//! together on a rayon pool. Files are scanned in parallel and each mapped file's chunks
//! are too; a gzip or stdin stream is inflated on its own thread into blocks that the
//! scanning side takes through a bounded channel, so inflating overlaps scanning and
//! memory stays bounded. Results are merged in input order, so the report does not
//! depend on scheduling.
//!
//! A run has up to two passes over the same inputs, both generic over their
//! [`Sink`]: the first selects the rules' matches and context selections
//! ([`Harvest`]); when a rule with the bypass investigation found something, a second,
//! prefiltered on the names of the bypassed accounts and the actors, gathers what they
//! did ([`Activity`]). Then the analyses run and the time window is applied. Nothing
//! here prints.
//!
//! [`run`] is its stages in a row: [`discover`] the inputs, [`first_pass`],
//! [`plan_context`] from all first-pass findings, a [`context_pass`] per planned rule,
//! and [`finish`] into a [`Report`]. Each stage is public so that a run split over
//! machines can do a stage on its share of the inputs and merge between stages.

use std::io::{self, Read};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use rayon::prelude::*;

use crate::allow::Allowlist;
use crate::analysis::actors::{self, ActorFindings};
use crate::analysis::alerting;
use crate::analysis::bypass::{self, Investigation, Reader};
use crate::analysis::context::{Activity, Watch};
use crate::analysis::coverage::{self as verdict, CoverageReport};
use crate::analysis::{Change, Evidence, Window};
use crate::config::Config;
use crate::document;
use crate::error::{Error, InputError, Warning};
use crate::findings::{Counts, Finding, Harvest, Partial, Why, drop_duplicates};
use crate::rule::load::NotRun;
use crate::rule::{ANALYSIS_BYPASS, RuleMeta};
use crate::scan::{Matcher, Pass, Scratch, Sink, scan_chunk};
use crate::shard::{Piece, Unit};
use crate::source::{self, Block, BlockReader, Compression, Input, Layout, Opened};

pub use crate::error::Warning as ScanWarning;

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

/// Measurements of one pass, for `--stats`; never part of the findings.
#[derive(Debug)]
pub struct PassStats {
    /// Wall time of the pass.
    pub wall: Duration,
    /// What the prefilter searches for.
    pub prefilter: String,
    /// Bytes scanned (decompressed).
    pub bytes: u64,
    /// Line accounting of the pass.
    pub counts: Counts,
    /// Inputs read, per recognised kind (`plain`, `gzip`, `stdin`…).
    pub formats: Vec<(String, u64)>,
    /// Time to scan one chunk or block, in microseconds.
    pub chunk_latency_us: Histogram<u64>,
    /// Summed time workers spent scanning chunks (prefilter, line count, parse).
    pub scan_time: Duration,
    /// Summed time spent parsing and evaluating candidates (with timing on).
    pub parse_time: Duration,
    /// Summed time spent inflating/reading streams.
    pub read_time: Duration,
    /// Compressed (on-disk) bytes of the inputs that were streamed from files.
    pub compressed_bytes: u64,
}

/// Measurements of a run.
#[derive(Debug)]
pub struct RunStats {
    /// Wall time of the whole run.
    pub wall: Duration,
    /// Worker threads used.
    pub threads: usize,
    /// Target chunk size.
    pub chunk_size: usize,
    /// The first pass.
    pub scan: PassStats,
    /// The context pass, when it ran; with the records it attributed to a watched name.
    pub context: Option<(PassStats, u64)>,
    /// Per rule: its prefilter literals and how many records it was evaluated on.
    pub rules: Vec<RuleStats>,
    /// Distinct literals the router maps back to rules (`None`: no routing).
    pub routed_literals: Option<usize>,
}

/// How one rule fared in the first pass, for `--stats`.
#[derive(Debug, Clone)]
pub struct RuleStats {
    /// Its literals (`None`: it has none; every record is parsed and evaluated for it).
    pub literals: Option<Vec<String>>,
    /// Why it has no literal, when it has none.
    pub why_none: Option<String>,
    /// Records its query was evaluated on.
    pub evaluated: u64,
}

/// Everything a hunt found and counted.
#[derive(Debug)]
pub struct Report {
    /// The rules that ran.
    pub rules: Vec<RuleMeta>,
    /// Rules that were loaded but cannot run offline, with why.
    pub not_run: Vec<NotRun>,
    /// Input names in input order (`archive.zip!member` for a zip member); findings
    /// refer to them by index.
    pub inputs: Vec<String>,
    /// The zip member of each input, if it is one.
    pub members: Vec<Option<String>>,
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
    /// Measurements.
    pub stats: RunStats,
}

impl Report {
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

/// What one pass over all inputs gave, merged in input order.
pub struct Scanned<S> {
    /// Counts, samples, coverage and the sink's state.
    pub partial: Partial<S>,
    /// Inputs that could not be read in full, in input order.
    pub errors: Vec<InputError>,
    /// Inputs read with a doubt, in input order.
    pub warnings: Vec<Warning>,
    /// Measurements.
    pub stats: PassStats,
}

/// What one scanned input gave.
struct FileResult<S> {
    partial: Partial<S>,
    bytes: u64,
    kind: String,
    error: Option<InputError>,
    warning: Option<String>,
    latencies: Vec<Duration>,
    scan_time: Duration,
    parse_time: Duration,
    read_time: Duration,
    compressed_bytes: u64,
}

impl<S: Sink> FileResult<S> {
    fn new(kind: String) -> FileResult<S> {
        FileResult {
            partial: Partial::default(),
            bytes: 0,
            kind,
            error: None,
            warning: None,
            latencies: Vec::new(),
            scan_time: Duration::ZERO,
            parse_time: Duration::ZERO,
            read_time: Duration::ZERO,
            compressed_bytes: 0,
        }
    }

    fn record(&mut self, partial: Partial<S>, took: Duration, parse: Duration) {
        self.partial.append(partial);
        self.latencies.push(took);
        self.scan_time += took;
        self.parse_time += parse;
    }
}

/// The inputs of a run, found (the first stage).
pub struct Found {
    /// The inputs, in input order.
    pub inputs: Vec<Input>,
    /// Their names (`archive.zip!member` for a zip member); findings refer to them by
    /// index.
    pub names: Vec<String>,
    /// The zip member of each input, if it is one.
    pub members: Vec<Option<String>>,
    /// Paths that could not be expanded into inputs.
    pub errors: Vec<InputError>,
    /// On-disk size of the file inputs (for the progress bar).
    pub disk_total: u64,
}

/// Expands the configured paths into inputs.
pub fn discover(config: &Config) -> Found {
    let (inputs, discover_errors) = source::discover(&config.paths);
    let disk_total: u64 = inputs.iter().filter_map(Input::disk_len).sum();
    let names: Vec<String> = inputs.iter().map(Input::display).collect();
    let members: Vec<Option<String>> = inputs
        .iter()
        .map(|i| match i {
            Input::ZipEntry { name, .. } => Some(name.clone()),
            _ => None,
        })
        .collect();
    let errors = discover_errors
        .into_iter()
        .map(|e| InputError::Discover {
            path: e.path,
            message: e.message,
        })
        .collect();
    Found {
        inputs,
        names,
        members,
        errors,
        disk_total,
    }
}

/// The first pass over the inputs: the rules' matches and context selections. Runs on
/// the current rayon pool.
pub fn first_pass(inputs: &[Input], config: &Config) -> Scanned<Harvest> {
    scan_all(inputs, Pass::new(&first_matcher(config), &()), config)
}

/// What the first pass selects.
pub(crate) fn first_matcher(config: &Config) -> Matcher {
    Matcher::new(config.rules.clone(), config.prefilter, config.max_line)
        .with_timing(config.timing)
        .with_block(config.scan_block)
}

/// What the context pass watching `watch` selects.
pub(crate) fn context_matcher(config: &Config, watch: &Watch) -> Matcher {
    Matcher::for_literals(config.rules.clone(), watch.literals(), config.max_line)
        .with_timing(config.timing)
        .with_block(config.scan_block)
}

/// What the analyses need from the first pass over all inputs, and whom each bypass
/// rule's context pass must watch.
pub struct ContextPlan {
    /// Every finding, duplicates dropped (unless kept), in input order.
    pub findings: Vec<Finding>,
    /// Rule matches dropped as duplicates.
    pub duplicates: u64,
    /// Per rule, matches its alerting held back (`analysis::alerting`).
    pub held_back: Vec<u64>,
    /// Each rule with the bypass investigation, in rule order, and whom its context
    /// pass watches (`None`: no pass, for want of findings in the window, of names, or
    /// with `--no-context`).
    pub rules: Vec<(u16, Option<Watch>)>,
}

/// Plans the context passes from all of the first pass's findings (in input order),
/// once duplicates are dropped and the rules' alerting has kept the matches that alert;
/// `archive_start` is the earliest record time of the inputs (the coverage's).
pub fn plan_context(
    mut findings: Vec<Finding>,
    archive_start: Option<i64>,
    config: &Config,
) -> ContextPlan {
    let duplicates = if config.keep_duplicates {
        0
    } else {
        drop_duplicates(&mut findings)
    };
    let archive_start = archive_start.and_then(|t| chrono::DateTime::from_timestamp(t, 0));
    let held_back = alerting::apply(&mut findings, &config.rules, archive_start);
    let window = window(config);
    let mut rules = Vec::new();
    for (r, rule) in config.rules.iter().enumerate() {
        if !rule.has_analysis(ANALYSIS_BYPASS) {
            continue;
        }
        let r = r as u16;
        let found = findings
            .iter()
            .any(|f| f.rule == r && f.why == Why::Rule && window.contains(f.timestamp));
        let mut watched = None;
        if found && config.context {
            let accounts = bypass::accounts(&findings, r, Reader::new(rule));
            let watch = bypass::watch(&accounts, config.context_window);
            if !watch.is_empty() {
                watched = Some(watch);
            }
        }
        rules.push((r, watched));
    }
    ContextPlan {
        findings,
        duplicates,
        held_back,
        rules,
    }
}

/// The context pass of one rule: what the watched names did. Runs on the current
/// rayon pool.
pub fn context_pass(inputs: &[Input], watch: &Watch, config: &Config) -> Scanned<Activity> {
    scan_all(
        inputs,
        Pass::new(&context_matcher(config, watch), watch),
        config,
    )
}

/// Everything the last stage turns into a [`Report`].
pub struct Finish {
    /// Input names, in input order.
    pub names: Vec<String>,
    /// The zip member of each input, if it is one.
    pub members: Vec<Option<String>>,
    /// Discovery errors, then the inputs that could not be read in full.
    pub errors: Vec<InputError>,
    /// Every warning.
    pub warnings: Vec<Warning>,
    /// The first pass's counts, samples and coverage (its findings are in `plan`).
    pub first: Partial<Harvest>,
    /// Bytes scanned (decompressed) in the first pass.
    pub bytes: u64,
    /// The findings and the context plan.
    pub plan: ContextPlan,
    /// The activity each planned context pass gathered (`None` where none ran), in the
    /// order of `plan.rules`.
    pub activities: Vec<Option<Activity>>,
    /// Measurements.
    pub stats: RunStats,
}

/// Runs a hunt.
pub fn run(config: &Config) -> Result<Report, Error> {
    let started = Instant::now();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(config.threads)
        .build()?;
    let found = discover(config);
    if let Some(p) = &config.progress {
        p.total
            .store(found.disk_total, std::sync::atomic::Ordering::Relaxed);
    }

    // Pass 1: the rules and their context selections.
    let matcher = Matcher::new(config.rules.clone(), config.prefilter, config.max_line);
    let Scanned {
        mut partial,
        errors: scan_errors,
        mut warnings,
        stats: scan_stats,
    } = pool.install(|| first_pass(&found.inputs, config));
    // Exports (issue 8): an empty directory, or a run that read nothing, says so.
    let explained = !found.errors.is_empty() || !scan_errors.is_empty() || !warnings.is_empty();
    warnings.extend(crate::warnings::no_input(
        &config.paths,
        &found.inputs,
        scan_stats.bytes,
        explained,
    ));
    let plan = plan_context(
        std::mem::take(&mut partial.sink.findings),
        partial.coverage.first,
        config,
    );
    let rule_stats = rule_stats(&matcher, &partial.evaluated);

    // Pass 2, for each rule that asks for it.
    let mut activities = Vec::new();
    let mut context_stats = None;
    for (_, watch) in &plan.rules {
        let activity = watch.as_ref().map(|watch| {
            if let Some(p) = &config.progress {
                p.total
                    .fetch_add(found.disk_total, std::sync::atomic::Ordering::Relaxed);
            }
            let second = pool.install(|| context_pass(&found.inputs, watch, config));
            let attributed = second.partial.sink.records;
            context_stats = Some((second.stats, attributed));
            second.partial.sink
        });
        activities.push(activity);
    }

    let Found {
        names,
        members,
        mut errors,
        ..
    } = found;
    errors.extend(scan_errors);
    let mut report = finish(
        Finish {
            names,
            members,
            errors,
            warnings,
            first: partial,
            bytes: scan_stats.bytes,
            plan,
            activities,
            stats: RunStats {
                wall: Duration::ZERO,
                threads: pool.current_num_threads(),
                chunk_size: config.chunk_size,
                scan: scan_stats,
                context: context_stats,
                rules: rule_stats,
                routed_literals: matcher.router().map(|r| r.literals()),
            },
        },
        config,
        &pool,
    );
    report.stats.wall = started.elapsed();
    Ok(report)
}

fn window(config: &Config) -> Window {
    Window {
        since: config.since,
        until: config.until,
    }
}

/// The last stage: the investigations, the rule matches inside the window grouped by
/// actor, and the report.
pub fn finish(parts: Finish, config: &Config, pool: &rayon::ThreadPool) -> Report {
    let Finish {
        names,
        members,
        errors,
        warnings,
        first: partial,
        bytes,
        plan,
        activities,
        stats,
    } = parts;
    let window = window(config);
    let ContextPlan {
        findings,
        duplicates,
        held_back,
        rules,
    } = plan;
    let context_ran = activities.iter().any(Option::is_some);
    let investigations = rules
        .iter()
        .zip(&activities)
        .map(|((r, watch), activity)| {
            bypass::investigate(
                &findings,
                *r,
                &config.rules,
                window,
                &config.allowlist,
                watch.as_ref().zip(activity.as_ref()),
                config.context_window,
            )
        })
        .collect();

    // The rule matches inside the window, with what the analyses made of them.
    let readers: Vec<Option<Reader>> = config
        .rules
        .iter()
        .map(|r| r.has_analysis(ANALYSIS_BYPASS).then(|| Reader::new(r)))
        .collect();
    let mut outside_window = 0;
    let evidence: Vec<Evidence> = findings
        .into_iter()
        .filter(|f| f.why == Why::Rule)
        .filter(|f| {
            let inside = window.contains(f.timestamp);
            outside_window += u64::from(!inside);
            inside
        })
        .map(|finding| annotate(finding, &readers, &config.allowlist))
        .collect();
    let actors = pool.install(|| actors::group(evidence, &config.rules));

    if let Some(p) = &config.progress {
        p.finished.store(true, std::sync::atomic::Ordering::Relaxed);
    }
    let malformed = partial
        .samples
        .iter()
        .map(|s| MalformedLine {
            path: names[s.file].clone(),
            line: s.line + 1,
            reason: s.reason.clone(),
            excerpt: s.excerpt.clone(),
        })
        .collect();
    Report {
        rules: config.rules.iter().map(|r| r.meta.clone()).collect(),
        not_run: config.not_run.clone(),
        files: names.len() as u64,
        inputs: names,
        members,
        bytes,
        counts: partial.counts,
        duplicates,
        held_back,
        outside_window,
        window,
        errors,
        warnings,
        malformed,
        actors,
        investigations,
        coverage: verdict::report(&partial.coverage),
        allowlist: config.allowlist.clone(),
        context_ran,
        stats,
    }
}

/// Each rule's literals and evaluation count, from its query's selection.
pub(crate) fn rule_stats(
    matcher: &Matcher,
    evaluated: &crate::findings::Tallies,
) -> Vec<RuleStats> {
    let mut out: Vec<RuleStats> = Vec::new();
    for (i, sel) in matcher.selections().iter().enumerate() {
        if sel.why != Why::Rule {
            continue;
        }
        let literals = matcher.requirements()[i].clone();
        out.push(RuleStats {
            why_none: match (&literals, &sel.query) {
                (None, Some(q)) => Some(crate::prefilter::why_no_literal(q)),
                _ => None,
            },
            literals,
            evaluated: evaluated.get(i),
        });
    }
    out
}

/// A rule match with its change (bypass rules) and allowlist entry (actor, else target).
fn annotate(finding: Finding, readers: &[Option<Reader>], allow: &Allowlist) -> Evidence {
    let reader = readers[usize::from(finding.rule)];
    let change: Option<Change> = reader.map(|r| r.change(&finding));
    let allowed = finding
        .actor
        .as_deref()
        .and_then(|a| allow.find(a))
        .or_else(|| {
            reader
                .and_then(|r| r.target(&finding))
                .and_then(|t| allow.find(t))
        });
    Evidence {
        finding,
        change,
        allowed,
    }
}

/// One pass over every input, merged in input order.
fn scan_all<S: Sink>(inputs: &[Input], pass: Pass<'_, S>, config: &Config) -> Scanned<S> {
    let units: Vec<Unit> = (0..inputs.len())
        .map(|i| Unit {
            input: i as u32,
            piece: None,
        })
        .collect();
    let (results, mut stats) = scan_units(inputs, &units, pass, config);
    let mut errors = Vec::new();
    let mut warnings = Vec::new();
    let mut all = Partial::<S>::default();
    for r in results {
        errors.extend(r.error);
        warnings.extend(r.warning);
        all.absorb_file(r.partial);
    }
    stats.counts = all.counts;
    Scanned {
        stats,
        partial: all,
        errors,
        warnings,
    }
}

/// What reading one unit (an input, or a piece of one) gave.
pub(crate) struct UnitResult<S> {
    /// Its partial result; a piece's positions are relative to the piece's start.
    pub partial: Partial<S>,
    /// Bytes scanned (decompressed).
    pub bytes: u64,
    /// Why it could not be read in full.
    pub error: Option<InputError>,
    /// A doubt about it.
    pub warning: Option<Warning>,
}

/// One pass over some units of the inputs (in parallel), their results in unit order;
/// the returned statistics count no lines (the caller merges).
pub(crate) fn scan_units<S: Sink>(
    inputs: &[Input],
    units: &[Unit],
    pass: Pass<'_, S>,
    config: &Config,
) -> (Vec<UnitResult<S>>, PassStats) {
    let started = Instant::now();
    let results: Vec<FileResult<S>> = units
        .par_iter()
        .map(|u| {
            let i = u.input as usize;
            scan_input(i, &inputs[i], u.piece, pass, config)
        })
        .collect();
    let mut out = Vec::with_capacity(results.len());
    let mut bytes = 0;
    let mut formats: std::collections::BTreeMap<String, u64> = Default::default();
    // 1 µs to 1 hour, 3 significant figures: always valid bounds.
    let mut latency = Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).expect("valid bounds");
    let (mut scan_time, mut parse_time, mut read_time) = Default::default();
    let mut compressed_bytes = 0;
    for (unit, r) in units.iter().zip(results) {
        let warning = r.warning.map(|message| Warning {
            path: inputs[unit.input as usize].display(),
            message,
        });
        // A piece after a file's first is not an input of its own in the statistics.
        if unit.piece.is_none_or(|p| p.start == 0) {
            *formats.entry(r.kind.clone()).or_default() += 1;
        }
        bytes += r.bytes;
        for t in &r.latencies {
            latency.saturating_record(t.as_micros().min(u128::from(u64::MAX)) as u64);
        }
        scan_time += r.scan_time;
        parse_time += r.parse_time;
        read_time += r.read_time;
        compressed_bytes += r.compressed_bytes;
        out.push(UnitResult {
            partial: r.partial,
            bytes: r.bytes,
            error: r.error,
            warning,
        });
    }
    let stats = PassStats {
        wall: started.elapsed(),
        prefilter: pass.matcher.describe_prefilter(),
        bytes,
        counts: Counts::default(),
        formats: formats.into_iter().collect(),
        chunk_latency_us: latency,
        scan_time,
        parse_time,
        read_time,
        compressed_bytes,
    };
    (out, stats)
}

/// A piece of an input that is not (or no longer) a plain JSON-lines file: the shard
/// plan was made from other bytes.
fn not_splittable<S: Sink>(input: &Input) -> FileResult<S> {
    let mut r = FileResult::new("unreadable".to_string());
    r.error = Some(InputError::Open {
        path: input.display(),
        message: "changed since the shard plan was made (no longer a plain JSON-lines file)"
            .to_string(),
    });
    r
}

fn scan_input<S: Sink>(
    file: usize,
    input: &Input,
    piece: Option<Piece>,
    pass: Pass<'_, S>,
    config: &Config,
) -> FileResult<S> {
    let opened = match source::open(input, &config.progress) {
        Ok(o) => o,
        Err(e) => {
            let mut r = FileResult::new("unreadable".to_string());
            r.error = Some(InputError::Open {
                path: input.display(),
                message: e.to_string(),
            });
            return r;
        }
    };
    match opened {
        Opened::Mapped(mapped) => scan_mapped(file, input, &mapped, piece, pass, config),
        Opened::Stream { .. } if piece.is_some() => not_splittable(input),
        Opened::Stream {
            reader,
            compression,
            notes,
        } => {
            let kind = match (input, compression) {
                (Input::Stdin, Compression::None) => "stdin".to_string(),
                (Input::Stdin, c) => format!("stdin {}", c.name()),
                (Input::ZipEntry { .. }, c) => format!("zip {}", c.name()),
                (_, c) => c.name().to_string(),
            };
            let compressed = compression != Compression::None;
            // Sniff from the first SNIFF bytes however the stream delivers them (a pipe
            // may hand over one byte at a time), then read on from those same bytes.
            let mut reader = reader;
            let mut first = Vec::with_capacity(SNIFF);
            if let Err(e) = (&mut reader).take(SNIFF as u64).read_to_end(&mut first) {
                // Scan what came before the error, then meet the error again there.
                reader = Box::new(document::FailWith(Some(e)));
            }
            let head = &first[..];
            let layout = if head.is_empty() {
                None
            } else {
                Some(Layout::sniff(head))
            };
            let doubt = Layout::doubt(head).filter(|_| layout == Some(Layout::JsonLines));
            let name = match (layout, &doubt) {
                (None, _) => "empty",
                (Some(_), Some(_)) => "unrecognised (read as jsonl)",
                (Some(l), None) => l.name(),
            };
            let kind = format!("{name}+{kind}");
            let mut r = match layout {
                Some(layout @ (Layout::PurviewCsv | Layout::JsonDocument)) => {
                    let reader = io::Cursor::new(first).chain(reader);
                    let mut r = FileResult::new(kind.clone());
                    let t = Instant::now();
                    let mut scratch = Scratch::default();
                    let ((partial, error), bytes) =
                        scan_document(layout, reader, file, pass, &mut scratch);
                    r.bytes = bytes;
                    r.record(
                        partial,
                        t.elapsed(),
                        std::mem::take(&mut scratch.parse_time),
                    );
                    r.error = error.map(|e| {
                        let lines = r.partial.counts.lines;
                        InputError::stopped(input.display(), &e, compressed, bytes, lines)
                    });
                    r
                }
                _ => {
                    let reader = Box::new(io::Cursor::new(first).chain(reader));
                    let mut r = scan_stream(file, input, reader, &kind, compressed, pass, config);
                    r.warning = doubt;
                    r
                }
            };
            if let Input::File(path) = input {
                r.compressed_bytes = std::fs::metadata(path).map_or(0, |md| md.len());
            }
            // Issue 13: zero padding after the last gzip member is a warning.
            if let Some(note) = notes.take() {
                r.warning = Some(match r.warning.take() {
                    Some(doubt) => format!("{doubt}; {note}"),
                    None => note,
                });
            }
            r
        }
    }
}

/// A mapped file (or, in a sharded run, a piece of one): line-aligned chunks scanned in
/// parallel, merged in order. A file cut or changed under the scan keeps only the
/// results of the bytes read as they were (see [`source::GuardedMap`]) and is reported
/// as stopped there.
fn scan_mapped<S: Sink>(
    file: usize,
    input: &Input,
    mapped: &source::Mapped,
    piece: Option<Piece>,
    pass: Pass<'_, S>,
    config: &Config,
) -> FileResult<S> {
    let data = mapped.bytes();
    let layout = Layout::sniff(&data[..data.len().min(SNIFF)]);
    if layout != Layout::JsonLines && piece.is_some() {
        return not_splittable(input);
    }
    let hook = TruncateHook::from_env(input);
    let mut result = FileResult::new(layout.name().to_string());
    if layout != Layout::JsonLines {
        // Records may span lines: read sequentially. Every record is cut out and
        // counted (and tallied for the coverage); only those holding a literal are parsed.
        let t = Instant::now();
        let mut scratch = Scratch::default();
        let ((partial, error), _) = scan_document(layout, data, file, pass, &mut scratch);
        hook.fire(1);
        result.bytes = data.len() as u64;
        result.record(partial, t.elapsed(), scratch.parse_time);
        result.error = error.map(|e| {
            let lines = result.partial.counts.lines;
            InputError::stopped(input.display(), &e, false, data.len() as u64, lines)
        });
        bump(&config.progress, data.len());
        if let Some(valid) = valid_bytes(mapped) {
            result.bytes = valid as u64;
        }
        changed(&mut result, input, mapped);
        return result;
    }
    if Layout::doubt(&data[..data.len().min(SNIFF)]).is_some() {
        result.kind = "unrecognised (read as jsonl)".to_string();
    }
    // Sharded runs: only the first piece of a file warns about it.
    if piece.is_none_or(|p| p.start == 0) {
        result.warning = Layout::doubt(&data[..data.len().min(SNIFF)]);
    }
    // A piece is read from the line start at or after its nominal start up to the line
    // start at or after its nominal end.
    let (offset, data) = match piece {
        None => (0, data),
        Some(p) => {
            let r = p.range(data.len() as u64);
            let start = crate::chunk::align(data, r.start);
            let end = crate::chunk::align(data, r.end).max(start);
            (start, &data[start..end])
        }
    };
    result.bytes = data.len() as u64;
    let chunks = crate::chunk::split(data, config.chunk_size);
    let done = std::sync::atomic::AtomicUsize::new(0);
    let mut parts: Vec<(Partial<S>, Duration, Duration)> = chunks
        .par_iter()
        .map_init(Scratch::default, |scratch, range| {
            let t = Instant::now();
            let p = scan_chunk(&data[range.clone()], file, pass, scratch);
            bump(&config.progress, range.len());
            hook.fire(done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1);
            (p, t.elapsed(), std::mem::take(&mut scratch.parse_time))
        })
        .collect();
    // Cut under the scan: what was read past the cut is zeros (no newline, no literal)
    // and cannot be read again (the file's pages are gone). Chunks that start past it
    // are dropped; the one it falls in is kept, its last line running into the zeros
    // counts as one line, as the unfinished last line of a cut gzip stream does.
    if let Some(valid) = valid_bytes(mapped) {
        let valid = valid.saturating_sub(offset).min(data.len());
        let keep = chunks.iter().take_while(|r| r.start < valid).count();
        parts.truncate(keep);
        result.bytes = valid as u64;
    }
    for (p, took, parse) in parts {
        result.record(p, took, parse);
    }
    changed(&mut result, input, mapped);
    result
}

/// How many bytes of `mapped.bytes()` were read from the file as it was, when it was
/// cut under the scan.
fn valid_bytes(mapped: &source::Mapped) -> Option<usize> {
    let change = mapped.change().filter(|c| c.truncated)?;
    Some((change.valid as usize).saturating_sub(mapped.skipped()))
}

/// Reports a file that changed under the scan as stopped, with how far the scan got.
/// Findings come only from records read whole from the file: the zeros past a cut hold
/// no newline and no rule literal, so a record the cut runs through does not parse (it
/// counts malformed if it held a literal) and nothing past it is a record.
fn changed<S: Sink>(result: &mut FileResult<S>, input: &Input, mapped: &source::Mapped) {
    if let Some(change) = mapped.change() {
        // An error met while reading what was left says less than the cut itself.
        result.error = Some(InputError::Stopped {
            path: input.display(),
            what: change.describe(),
            message: if change.truncated {
                "bytes past the cut were not used".to_string()
            } else {
                "read as it was when opened; what changed after may be missed".to_string()
            },
            offset: result.bytes,
            line: result.partial.counts.lines,
            data: "input",
        });
    }
}

/// A test hook (hidden, for tests/changing.rs): with `UALHUNT_TEST_TRUNCATE_AFTER_CHUNKS=N`
/// the scan itself cuts a mapped file to nothing once N of its chunks are scanned, a
/// real truncation at a known point of the scan, so a test need not race a timer.
struct TruncateHook<'a> {
    after: Option<usize>,
    path: Option<&'a std::path::Path>,
}

impl<'a> TruncateHook<'a> {
    fn from_env(input: &'a Input) -> TruncateHook<'a> {
        let after = std::env::var("UALHUNT_TEST_TRUNCATE_AFTER_CHUNKS")
            .ok()
            .and_then(|v| v.parse().ok());
        let path = match input {
            Input::File(p) => Some(p.as_path()),
            _ => None,
        };
        TruncateHook { after, path }
    }

    fn fire(&self, chunks_done: usize) {
        if self.after == Some(chunks_done)
            && let Some(path) = self.path
        {
            let _ = std::fs::OpenOptions::new()
                .write(true)
                .open(path)
                .and_then(|f| f.set_len(0));
        }
    }
}

/// How many leading bytes decide the layout of an input.
pub(crate) const SNIFF: usize = 4096;

/// Reads a CSV export or a JSON document sequentially (records may span lines).
fn scan_document<S: Sink>(
    layout: Layout,
    input: impl io::Read,
    file: usize,
    pass: Pass<'_, S>,
    scratch: &mut Scratch,
) -> (document::Outcome<S>, u64) {
    match layout {
        Layout::PurviewCsv => document::scan_csv(input, file, pass, scratch),
        _ => document::scan_json_document(input, file, pass, scratch),
    }
}

fn bump(progress: &Option<std::sync::Arc<source::Progress>>, bytes: usize) {
    if let Some(p) = progress {
        p.done
            .fetch_add(bytes as u64, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Largest block a stream is cut into, whatever the chunk size: a few blocks are in
/// flight per stream, so this bounds the memory of decompression.
const MAX_STREAM_BLOCK: usize = 16 << 20;

/// What the reading thread sends: blocks, then at most one error.
enum Msg {
    Block(Block),
    Failed { error: io::Error, consumed: u64 },
}

/// A stream: inflated and cut into blocks on a reading thread, scanned here as the
/// blocks arrive. At most a few blocks are in flight (bounded channel, recycled buffers).
fn scan_stream<S: Sink>(
    file: usize,
    input: &Input,
    reader: Box<dyn io::Read + Send>,
    kind: &str,
    compressed: bool,
    pass: Pass<'_, S>,
    config: &Config,
) -> FileResult<S> {
    let mut result = FileResult::new(kind.to_string());
    let (tx, rx) = mpsc::sync_channel::<Msg>(2);
    let (recycle_tx, recycle_rx) = mpsc::channel::<Vec<u8>>();
    let mut read_time = Duration::ZERO;
    let m = pass.matcher;
    std::thread::scope(|s| {
        let reading = s.spawn(move || {
            let block = config.chunk_size.min(MAX_STREAM_BLOCK);
            let mut blocks = BlockReader::new(reader, block, config.max_line)
                .with_prefilter(m.prefilter().clone());
            let mut busy = Duration::ZERO;
            loop {
                let buf = recycle_rx.try_recv().unwrap_or_default();
                let t = Instant::now();
                let next = blocks.next_block(buf);
                busy += t.elapsed();
                let msg = match next {
                    Ok(Some(block)) => Msg::Block(block),
                    Ok(None) => break,
                    Err(error) => {
                        let tail = blocks.take_tail();
                        if !tail.is_empty()
                            && tx.send(Msg::Block(Block::Lines(tail.into()))).is_err()
                        {
                            break;
                        }
                        Msg::Failed {
                            error,
                            consumed: blocks.consumed,
                        }
                    }
                };
                let last = matches!(msg, Msg::Failed { .. });
                if tx.send(msg).is_err() || last {
                    break;
                }
            }
            busy
        });
        let mut scratch = Scratch::default();
        for msg in rx {
            match msg {
                Msg::Block(Block::Lines(data)) => {
                    result.bytes += data.len() as u64;
                    let t = Instant::now();
                    let p = scan_chunk(&data, file, pass, &mut scratch);
                    result.record(p, t.elapsed(), std::mem::take(&mut scratch.parse_time));
                    let _ = recycle_tx.send(data.into_buffer());
                }
                Msg::Block(Block::Overlong {
                    bytes,
                    newline,
                    candidate,
                }) => {
                    result.bytes += bytes + u64::from(newline);
                    let mut p = Partial::<S> {
                        bytes: bytes + u64::from(newline),
                        ..Partial::default()
                    };
                    p.counts.lines = 1;
                    p.counts.records = 1;
                    if m.counts_coverage() {
                        p.coverage.undated = 1;
                    }
                    if candidate {
                        let limit = config.max_line;
                        let reason =
                            format!("line of {bytes} bytes is longer than the limit of {limit}");
                        p.malformed(file, 0, reason, b"");
                    }
                    result.partial.append(p);
                }
                Msg::Failed { error, consumed } => {
                    let lines = result.partial.counts.lines;
                    result.error = Some(InputError::stopped(
                        input.display(),
                        &error,
                        compressed,
                        consumed,
                        lines,
                    ));
                }
            }
        }
        // The reading thread cannot panic on input; if it did, say so rather than hide it.
        read_time = reading.join().unwrap_or_default();
    });
    result.read_time = read_time;
    result
}
