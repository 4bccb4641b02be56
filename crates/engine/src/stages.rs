//! The stages of a hunt: inputs in, a [`Report`] out.
//!
//! Place in the flow: the engine's public surface. [`run`] is its stages in a row:
//! [`discover`] the inputs, [`first_pass`] (the rules' matches and context selections,
//! [`Harvest`]), [`plan_context`] from all first-pass findings (duplicates dropped,
//! alerting replayed, whom each bypass rule's context pass watches), a
//! [`context_pass`] per planned rule (what the watched names did, [`Activity`]), and
//! [`finish`] (the analyses, the time window, the [`Report`]). Each stage is public so
//! that a run split over machines (`crate::shard`) does a stage on its share of the
//! inputs and merges between stages; the passes themselves are `crate::scan`'s. Nothing
//! here prints.

use std::time::{Duration, Instant};

use ualhunt_input::{self as source, Input};

use crate::analysis::actors;
use crate::analysis::alerting;
use crate::analysis::bypass::{self, Reader};
use crate::analysis::context::{Activity, Watch};
use crate::analysis::sequence;
use crate::analysis::{Evidence, Window};
use crate::config::Config;
use crate::coverage::verdict;
use crate::error::{Error, InputError, Later, Warning, add_later};
use crate::findings::{Finding, Harvest, Partial, Tallies, Why, drop_duplicates};
use crate::report::{MalformedLine, Names, Report, RuleStats, RunStats};
use crate::rule::ANALYSIS_BYPASS;
use crate::scan::{Maps, Matcher, Pass, Scanned, scan_all, scan_all_within};

/// The inputs of a run, found (the first stage).
pub struct Found {
    /// The inputs, in input order; findings refer to them by index. Their names are
    /// made when asked for ([`Input::display`], [`Names`]): a zip archive of a million
    /// entries holds no name per entry.
    pub inputs: Vec<Input>,
    /// Paths that could not be expanded into inputs.
    pub errors: Vec<InputError>,
    /// On-disk size of the file inputs (for the progress bar).
    pub disk_total: u64,
}

/// Expands the configured paths into inputs.
pub fn discover(config: &Config) -> Found {
    let (mut inputs, discover_errors) = source::discover(&config.paths);
    if !config.skip.is_empty() {
        inputs.retain(|i| !is_skipped(i, &config.skip));
    }
    let disk_total = source::disk_total(&inputs);
    let errors = discover_errors
        .into_iter()
        .map(|e| InputError::Discover {
            path: e.path,
            message: e.message,
        })
        .collect();
    Found {
        inputs,
        errors,
        disk_total,
    }
}

/// Whether `input` is one of the files `skip` names (the same file, by name first, then
/// by device and inode).
fn is_skipped(input: &Input, skip: &[std::path::PathBuf]) -> bool {
    let Input::File(path) = input else {
        return false;
    };
    skip.iter()
        .filter(|s| s.file_name() == path.file_name())
        .any(|s| same_file(s, path))
}

#[cfg(unix)]
fn same_file(a: &std::path::Path, b: &std::path::Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(a), Ok(b)) => (a.dev(), a.ino()) == (b.dev(), b.ino()),
        _ => false,
    }
}

#[cfg(not(unix))]
fn same_file(a: &std::path::Path, b: &std::path::Path) -> bool {
    std::fs::canonicalize(a).ok() == std::fs::canonicalize(b).ok()
}

/// The first pass over the inputs with `matcher` (made by [`first_matcher`]): the rules'
/// matches and context selections. Runs on the current rayon pool.
pub fn first_pass(inputs: &[Input], matcher: &Matcher, config: &Config) -> Scanned<Harvest> {
    scan_all(inputs, Pass::new(matcher, &()), config)
}

/// What the first pass selects: made once per run (or per merge of a sharded run).
pub fn first_matcher(config: &Config) -> Matcher {
    Matcher::new_enriched(
        config.rules.clone(),
        config.prefilter,
        config.max_line,
        config.enrichment.clone(),
    )
    .with_timing(config.timing)
    .with_block(config.scan_block)
}

/// What the first pass of a whole run selects: [`first_matcher`], where a rule with a
/// trigger and no literal of its own is searched for by its trigger's literals
/// ([`Matcher::with_triggers`]), its other records read by [`around_triggers`]. Only
/// with the prefilter (`--no-prefilter` evaluates every rule on every record), and not
/// in a shard, whose findings are merged before anyone knows every trigger.
pub fn run_matcher(config: &Config) -> Matcher {
    if !config.prefilter || !config.triggers {
        return first_matcher(config);
    }
    Matcher::with_triggers_enriched(
        config.rules.clone(),
        config.max_line,
        config.enrichment.clone(),
    )
    .with_timing(config.timing)
    .with_block(config.scan_block)
}

/// The second look at the rules `matcher` searched for by their trigger only
/// ([`Matcher::gated`]): the runs whose window holds one of their matches meeting the
/// trigger are read again (only the stretches the block `index` says hold those times,
/// from the `seeks` of a compressed file; inputs the index does not describe whole),
/// every record evaluated against those rules, and their matches replace theirs in
/// `findings`, in input order. Every run that can return a row of such a rule then has
/// all its records, as with every record evaluated. `None`: no rule is gated.
pub fn around_triggers(
    inputs: &[Input],
    matcher: &Matcher,
    index: &[crate::index::Span],
    seeks: &[crate::index::Seekable],
    findings: &mut Vec<Finding>,
    config: &Config,
) -> Option<TriggerStats> {
    around_triggers_keeping(inputs, matcher, index, seeks, findings, config, None)
}

/// [`around_triggers`], reading the mappings `maps` keeps ([`Pass::keeping`]).
fn around_triggers_keeping(
    inputs: &[Input],
    matcher: &Matcher,
    index: &[crate::index::Span],
    seeks: &[crate::index::Seekable],
    findings: &mut Vec<Finding>,
    config: &Config,
    maps: Option<&Maps>,
) -> Option<TriggerStats> {
    let gated = matcher.gated();
    if gated.is_empty() {
        return None;
    }
    let mut spans = Vec::new();
    let mut fired = 0;
    for &r in gated {
        let rule = &config.rules[usize::from(r)];
        let Some(crate::rule::Alerting::Esql { window, interval }) = rule.meta.alerting else {
            continue;
        };
        let mut matches: Vec<&Finding> = findings
            .iter()
            .filter(|f| f.rule == r && f.why == Why::Rule)
            .collect();
        matches.sort_by_key(|f| f.order_key());
        let (windows, n) = crate::analysis::esql::trigger_windows(&matches, rule, window, interval);
        spans.extend(windows);
        fired += n;
    }
    let mut stats = TriggerStats {
        fired,
        pass: None,
        errors: Vec::new(),
        warnings: Vec::new(),
    };
    // The rules' own matches so far are those holding a trigger literal: read again.
    findings.retain(|f| !gated.contains(&f.rule));
    if spans.is_empty() {
        return Some(stats);
    }
    let times = crate::index::Times::new(spans);
    let within = crate::index::within_each(index, seeks, inputs.len(), &times);
    let second = gated_matcher(config, gated);
    let pass = Pass::new(&second, &());
    let pass = maps.map_or(pass, |m| pass.keeping(m));
    let scanned: Scanned<Harvest> = scan_all_within(inputs, &within, pass, config);
    findings.extend(scanned.partial.sink.findings);
    // Input order, each record's findings in selection order (a stable sort: records
    // that share a position keep theirs).
    findings.sort_by_key(|f| (f.at, f.rule, f.why));
    stats.pass = Some(scanned.stats);
    stats.errors = scanned.errors;
    stats.warnings = scanned.warnings;
    Some(stats)
}

/// What the second look at the `gated` rules selects ([`Matcher::around_triggers`]).
pub fn gated_matcher(config: &Config, gated: &[u16]) -> Matcher {
    Matcher::around_triggers_enriched(
        config.rules.clone(),
        gated,
        config.max_line,
        config.enrichment.clone(),
    )
    .with_timing(config.timing)
    .with_block(config.scan_block)
}

/// What [`around_triggers`] did, for `--stats`.
#[derive(Debug)]
pub struct TriggerStats {
    /// Matches of the gated rules that met their trigger.
    pub fired: u64,
    /// The second look, when one was needed.
    pub pass: Option<crate::scan::PassStats>,
    /// What the second look could not read ([`add_later`] reports it).
    pub errors: Vec<InputError>,
    /// What the second look doubted.
    pub warnings: Vec<Warning>,
}

/// What the context pass watching `watch` selects.
pub fn context_matcher(config: &Config, watch: &Watch) -> Matcher {
    Matcher::for_literals(config.rules.clone(), watch.literals(), config.max_line)
        .with_timing(config.timing)
        .with_block(config.scan_block)
        // `--context-full-read` is the reference: every candidate parsed.
        .with_screen(!config.context_full_read)
}

/// What the analyses need from the first pass over all inputs, and whom each bypass
/// rule's context pass must watch.
pub struct ContextPlan {
    /// Every finding, duplicates dropped (unless kept), in input order.
    pub findings: Vec<Finding>,
    /// Per rule, the records its query matched (before duplicates are dropped and its
    /// alerting keeps some).
    pub matched: Vec<u64>,
    /// Rule matches dropped as duplicates.
    pub duplicates: u64,
    /// Per rule, matches its alerting held back (`analysis::alerting`), or step
    /// matches of a sequence in no completed sequence (`analysis::sequence`).
    pub held_back: Vec<u64>,
    /// What the analyses here warn of (a sequence replay past its cap).
    pub warnings: Vec<crate::error::Warning>,
    /// Each rule with the bypass investigation, in rule order, and whom its context
    /// pass watches (`None`: no pass, for want of findings in the window, of names, or
    /// with `--no-context`).
    pub rules: Vec<(u16, Option<Watch>)>,
}

/// Plans the context passes from all of the first pass's findings (in input order),
/// once duplicates are dropped, EQL sequences replayed and the rules' alerting has kept
/// the matches that alert; `archive_start` is the earliest record time of the inputs
/// (the coverage's), `names` the inputs' names.
pub fn plan_context(
    mut findings: Vec<Finding>,
    archive_start: Option<i64>,
    names: &dyn Fn(usize) -> String,
    config: &Config,
) -> ContextPlan {
    let mut matched = vec![0u64; config.rules.len()];
    for f in findings.iter().filter(|f| f.why == Why::Rule) {
        if let Some(n) = matched.get_mut(usize::from(f.rule)) {
            *n += 1;
        }
    }
    let duplicates = if config.keep_duplicates {
        0
    } else {
        drop_duplicates(&mut findings)
    };
    let archive_start = archive_start.and_then(|t| chrono::DateTime::from_timestamp(t, 0));
    let replayed = sequence::apply(&mut findings, &config.rules, names);
    let mut held_back = alerting::apply(&mut findings, &config.rules, archive_start);
    for (held, by_sequence) in held_back.iter_mut().zip(&replayed.held_back) {
        *held += by_sequence;
    }
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
            let watch = bypass::watch(
                &accounts,
                config.context_window,
                config.context_horizon,
                window,
            );
            if !watch.is_empty() {
                watched = Some(watch);
            }
        }
        rules.push((r, watched));
    }
    ContextPlan {
        findings,
        matched,
        duplicates,
        held_back,
        warnings: replayed.warnings,
        rules,
    }
}

/// The context pass of one rule: what the watched names did. Runs on the current
/// rayon pool.
pub fn context_pass(inputs: &[Input], watch: &Watch, config: &Config) -> Scanned<Activity> {
    context_pass_within(inputs, watch, &[], &[], config)
}

/// [`context_pass`] reading of each JSON-lines input only the stretches that the first
/// pass's block `index` (`Partial::index`) says hold records at watched times
/// (`Watch::times`), a gzip or zstd file from the nearest of its `seeks`
/// (`Partial::seeks`) before each; inputs the index does not describe are read whole,
/// and so is everything with `config.context_full_read`.
pub fn context_pass_within(
    inputs: &[Input],
    watch: &Watch,
    index: &[crate::index::Span],
    seeks: &[crate::index::Seekable],
    config: &Config,
) -> Scanned<Activity> {
    context_pass_keeping(inputs, watch, index, seeks, config, None)
}

/// [`context_pass_within`], reading the mappings `maps` keeps ([`Pass::keeping`]).
fn context_pass_keeping(
    inputs: &[Input],
    watch: &Watch,
    index: &[crate::index::Span],
    seeks: &[crate::index::Seekable],
    config: &Config,
    maps: Option<&Maps>,
) -> Scanned<Activity> {
    let within = if config.context_full_read {
        Vec::new()
    } else {
        crate::index::within_each(index, seeks, inputs.len(), &watch.times())
    };
    let matcher = context_matcher(config, watch);
    let pass = Pass::new(&matcher, watch);
    let pass = maps.map_or(pass, |m| pass.keeping(m));
    scan_all_within(inputs, &within, pass, config)
}

/// Everything the last stage turns into a [`Report`].
pub struct Finish {
    /// Input names, in input order.
    pub names: Names,
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

    // Pass 1: the rules and their context selections. The plain files it maps stay
    // mapped for the passes after it (`Maps`), dropped once none is left to run; when
    // a context pass may run, the inflated blocks of compressed files are kept too
    // (`scan::cache`), within their budget.
    let matcher = run_matcher(config);
    let budget = if config.context && !config.context_full_read {
        config.context_cache.unwrap_or(0)
    } else {
        0
    };
    let maps = Maps::with_cache(budget);
    let Scanned {
        mut partial,
        errors: scan_errors,
        mut warnings,
        stats: scan_stats,
    } = pool.install(|| {
        scan_all(
            &found.inputs,
            Pass::<Harvest>::new(&matcher, &()).keeping(&maps),
            config,
        )
    });
    // Exports (issue 8): an empty directory, or a run that read nothing, says so.
    let explained = !found.errors.is_empty() || !scan_errors.is_empty() || !warnings.is_empty();
    warnings.extend(crate::warnings::no_input(
        &config.paths,
        &found.inputs,
        scan_stats.bytes,
        explained,
    ));
    maps.cache.close();
    let mut phases = Phases::since(started);
    phases.end("first pass");
    let cache = (budget > 0).then(|| maps.cache.stats());
    // The rules searched for by their trigger: their records around it.
    let mut findings = std::mem::take(&mut partial.sink.findings);
    let mut triggers = pool.install(|| {
        around_triggers_keeping(
            &found.inputs,
            &matcher,
            &partial.index,
            &partial.seeks,
            &mut findings,
            config,
            Some(&maps),
        )
    });
    if triggers.is_some() {
        phases.end("trigger look");
    }
    // On the run's pool: the duplicates' keys are hashed in parallel.
    let plan = pool.install(|| {
        plan_context(
            findings,
            partial.coverage.first,
            &|i| {
                found
                    .inputs
                    .get(i)
                    .map_or_else(|| "?".to_string(), Input::display)
            },
            config,
        )
    });
    phases.end("duplicates and context plan");
    let rule_stats = rule_stats(&matcher, &partial.evaluated, &plan.matched);
    if plan.rules.iter().all(|(_, watch)| watch.is_none()) {
        // No context pass to run: the kept blocks go now, not at the end of the run.
        maps.cache.clear();
    }

    // Pass 2, for each rule that asks for it.
    let mut activities = Vec::new();
    let mut context_stats = Vec::new();
    let mut later_errors = triggers.as_mut().map_or_else(Vec::new, |t| {
        let errors = std::mem::take(&mut t.errors);
        vec![(Later::Triggers, errors, std::mem::take(&mut t.warnings))]
    });
    for &(rule, ref watch) in &plan.rules {
        let activity = watch.as_ref().map(|watch| {
            if let Some(p) = &config.progress {
                p.total
                    .fetch_add(found.disk_total, std::sync::atomic::Ordering::Relaxed);
            }
            let second = pool.install(|| {
                context_pass_keeping(
                    &found.inputs,
                    watch,
                    &partial.index,
                    &partial.seeks,
                    config,
                    Some(&maps),
                )
            });
            context_stats.push(crate::report::ContextStats {
                rule: config.rules[usize::from(rule)]
                    .meta
                    .shown_name()
                    .into_owned(),
                attributed: second.partial.sink.records,
                pass: second.stats,
            });
            later_errors.push((Later::Context, second.errors, second.warnings));
            second.partial.sink
        });
        activities.push(activity);
    }
    if !context_stats.is_empty() {
        phases.end("context pass");
    }
    // The context cache's blocks go before the report is made.
    maps.cache.clear();

    let watched = (!context_stats.is_empty())
        .then(|| crate::report::Watched::of(plan.rules.iter().filter_map(|(_, w)| w.as_ref())));
    let Found {
        inputs, mut errors, ..
    } = found;
    let names = Names::of(inputs);
    errors.extend(scan_errors);
    for (pass, later, later_warnings) in later_errors {
        add_later(&mut errors, &mut warnings, pass, later, later_warnings);
    }
    // Unmapped on every thread (`Maps::release`) while the findings are grouped:
    // clearing the page tables of the pages the passes faulted in is work of its own,
    // about 9 ms for 512 MiB on one thread, and the grouping's first steps use one.
    let ((), mut report) = pool.join(
        || maps.release(),
        || {
            finish(
                Finish {
                    names,
                    errors,
                    warnings,
                    first: partial,
                    bytes: scan_stats.bytes,
                    plan,
                    activities,
                    stats: RunStats {
                        wall: Duration::ZERO,
                        phases: Vec::new(),
                        threads: pool.current_num_threads(),
                        chunk_size: config.chunk_size,
                        scan: scan_stats,
                        watched,
                        context: context_stats,
                        rules: rule_stats,
                        routed_literals: matcher.router().map(|r| r.literals()),
                        triggers,
                        cache,
                    },
                },
                config,
                &pool,
            )
        },
    );
    drop(maps);
    phases.end("investigations and grouping beside unmapping");
    report.stats.wall = started.elapsed();
    report.stats.phases = phases.done;
    Ok(report)
}

/// The wall time of each stage of a run, one after the other ([`RunStats::phases`]).
struct Phases {
    last: Instant,
    done: Vec<(&'static str, Duration)>,
}

impl Phases {
    fn since(start: Instant) -> Phases {
        Phases {
            last: start,
            done: Vec::new(),
        }
    }

    /// Ends the stage `name`, which ran since the last one ended.
    fn end(&mut self, name: &'static str) {
        let now = Instant::now();
        self.done.push((name, now - self.last));
        self.last = now;
    }
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
        errors,
        mut warnings,
        first: partial,
        bytes,
        plan,
        activities,
        stats,
    } = parts;
    let window = window(config);
    let ContextPlan {
        findings,
        matched: _,
        duplicates,
        held_back,
        warnings: plan_warnings,
        rules,
    } = plan;
    warnings.extend(plan_warnings);
    let mut activities = activities;
    for a in activities.iter_mut().flatten() {
        if a.ids_overflow {
            warnings.push(Warning {
                path: "context pass".to_string(),
                message: format!(
                    "more than {} distinct records counted; a record the \
                     inputs repeat is counted as often as it appears",
                    crate::analysis::context::MAX_IDS
                ),
            });
        }
        if !config.keep_duplicates {
            a.drop_duplicates();
        }
    }
    let context_ran = activities.iter().any(Option::is_some);
    warnings.extend(crate::warnings::missing_enrichment(
        &config.rules,
        &config.enrichment,
    ));
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
    // Made as the grouping takes it: a whole list of them first was one more move of
    // every finding, on one thread.
    let evidence = findings
        .into_iter()
        .filter(|f| f.why == Why::Rule)
        .filter(|f| {
            let inside = window.contains(f.timestamp);
            outside_window += u64::from(!inside);
            inside
        })
        .map(|finding| match readers[usize::from(finding.rule)] {
            Some(reader) => reader.evidence(finding, &config.allowlist),
            None => Evidence::of(finding, None, None, &config.allowlist),
        });
    let actors = pool.install(|| actors::group(evidence, &config.rules));

    if let Some(p) = &config.progress {
        p.finished.store(true, std::sync::atomic::Ordering::Relaxed);
    }
    let first_malformed = partial
        .samples
        .first()
        .map(|s| (names.path(s.file), s.line + 1));
    let coverage = verdict::doubt(
        verdict::report(&partial.coverage),
        partial.counts.malformed,
        first_malformed.as_ref().map(|(p, l)| (&**p, *l)),
        &errors.iter().map(InputError::path).collect::<Vec<_>>(),
    );
    let malformed = partial
        .samples
        .iter()
        .map(|s| MalformedLine {
            path: names.path(s.file).into_owned(),
            line: s.line + 1,
            reason: s.reason.clone(),
            excerpt: s.excerpt.clone(),
        })
        .collect();
    Report {
        rules: config.rules.iter().map(|r| r.meta.clone()).collect(),
        items: config.rules.iter().map(|r| r.items).collect(),
        not_run: config.not_run.clone(),
        files: names.len() as u64,
        inputs: names,
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
        coverage,
        allowlist: config.allowlist.clone(),
        context_ran,
        building_blocks: config.building_blocks,
        stats,
    }
}

/// Each rule's literals and evaluation count, from its query's selection.
pub fn rule_stats(matcher: &Matcher, evaluated: &Tallies, matched: &[u64]) -> Vec<RuleStats> {
    let mut out: Vec<RuleStats> = Vec::new();
    for (i, sel) in matcher.selections().iter().enumerate() {
        if sel.why != Why::Rule {
            continue;
        }
        let literals = matcher.requirements()[i].clone();
        out.push(RuleStats {
            matched: matched.get(usize::from(sel.rule)).copied().unwrap_or(0),
            trigger: matcher
                .gated()
                .contains(&sel.rule)
                .then(|| sel.query.as_ref().and_then(crate::rule::Query::trigger))
                .flatten()
                .map(|t| t.column),
            why_none: match (&literals, &sel.query) {
                (None, Some(q)) => Some(crate::prefilter::why_no_literal(q)),
                _ => None,
            },
            literals,
            unenriched: matcher.unenriched()[i].map(crate::enrich::unenriched_note),
            evaluated: evaluated.get(i),
        });
    }
    out
}
