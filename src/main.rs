//! The `ualhunt` binary: parse flags, run the library, map the result to an exit
//! status (0 findings, 1 none, 2 something could not be read or written; 130 / 143
//! interrupted by SIGINT / SIGTERM).

mod cli;
mod outputs;

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufWriter, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use anyhow::Context;
use clap::Parser;

use cli::{
    Cli, Command, GenerateArgs, HuntArgs, KeyOrderArg, MergeArgs, Outputs, RulesArgs, Shape,
};
use outputs::{Inputs, Named, Pending};
use ualhunt_engine::rule::load::RuleSet;
use ualhunt_engine::shard::{self, Shard};
use ualhunt_generate::{GenOptions, GenShape, KeyOrder, Plot, Storyline};
use ualhunt_input::Progress;
use ualhunt_report::{self as output, OutputFormat, terminal_safe};

#[global_allocator]
static ALLOC: ualhunt_engine::alloc::CountingAlloc = ualhunt_engine::alloc::CountingAlloc;

/// An error message made safe for a terminal line by line: a message of several lines
/// (a TOML parse error points at its line and column) prints as lines, indented under
/// the first, not as one line of escaped newlines.
fn error_lines(message: &str) -> String {
    message
        .trim_end()
        .lines()
        .map(terminal_safe)
        .collect::<Vec<_>>()
        .join("\n  ")
}

/// Warnings of one kind printed one by one before the rest are summed up in a line.
const WARNINGS_PER_KIND: usize = 10;

/// Prints the run's warnings on stderr: the first [`WARNINGS_PER_KIND`] of each kind
/// (the message up to its first detail), then one line for the rest of that kind. A
/// directory of unrelated files then says so in a dozen lines, not thousands; every
/// warning stays in the JSON report (`scan.warnings`).
fn print_warnings(
    err: &mut impl Write,
    warnings: &[ualhunt_engine::error::Warning],
) -> io::Result<()> {
    let kind = |message: &str| -> String {
        let end = message.find(['(', ':', '"']).unwrap_or(message.len());
        message[..end].trim_end().to_string()
    };
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for w in warnings {
        let n = seen.entry(kind(&w.message)).or_default();
        *n += 1;
        if *n <= WARNINGS_PER_KIND {
            writeln!(
                err,
                "ualhunt: warning: {}: {}",
                terminal_safe(&w.path),
                terminal_safe(&w.message)
            )?;
        }
    }
    for (kind, n) in seen.iter().filter(|(_, n)| **n > WARNINGS_PER_KIND) {
        writeln!(
            err,
            "ualhunt: warning: {} more like this: {} (all {n} are in the JSON report's scan.warnings)",
            n - WARNINGS_PER_KIND,
            terminal_safe(kind)
        )?;
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The heap is counted only for the statistics that report it (`hunt` and `merge`).
    let stats = match &cli.command {
        Command::Hunt(a) => a.stats,
        Command::Merge(a) => a.stats,
        _ => false,
    };
    if stats {
        ualhunt_engine::alloc::start_counting();
    }
    let writes = matches!(cli.command, Command::Hunt(_) | Command::Merge(_));
    if writes && let Err(e) = outputs::on_signals() {
        eprintln!("ualhunt: {e:#}");
        return ExitCode::from(2);
    }
    let result = match cli.command {
        Command::Hunt(args) => hunt(&args),
        Command::Rules(args) => rules(&args).map(|()| ExitCode::SUCCESS),
        Command::Generate(args) => generate(&args).map(|()| ExitCode::SUCCESS),
        Command::Merge(args) => merge(&args),
    };
    match result {
        Ok(code) => code,
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ualhunt: {}", error_lines(&format!("{e:#}")));
            ExitCode::from(2)
        }
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain()
        .filter_map(|c| c.downcast_ref::<io::Error>())
        .any(|e| e.kind() == io::ErrorKind::BrokenPipe)
}

fn hunt(args: &HuntArgs) -> anyhow::Result<ExitCode> {
    args.check_paths()?;
    if let Some(shard) = &args.shard {
        return hunt_shard(args, shard);
    }
    let outputs = args.outputs();
    outputs.check_destinations().map_err(anyhow::Error::msg)?;
    let inputs = hunt_inputs(args);
    outputs::check(&outputs.named(), &inputs)?;
    if outputs.output.is_none() {
        outputs::check_stdout(&inputs)?;
    }
    let mut config = args.to_config()?;
    // Every destination is created before the scan: a file that cannot be created ends
    // the run at once, not after hours of reading.
    let destinations = Destinations::create(&outputs)?;
    config.skip = destinations.temporaries();
    let bar = (!args.quiet && io::stderr().is_terminal()).then(|| {
        let progress = Arc::new(Progress::default());
        config.progress = Some(progress.clone());
        std::thread::spawn(move || show_progress(&progress))
    });
    let report = ualhunt_engine::run(&config)?;
    if let Some(bar) = bar {
        // The bar thread ends once the run is marked finished; it cannot panic on input.
        let _ = bar.join();
    }
    emit(&outputs, destinations, report)
}

/// Everything a hunt reads: its paths, and its rules, allowlist and context plan.
fn hunt_inputs(args: &HuntArgs) -> Inputs {
    let extra: Vec<&Path> = args
        .rules
        .iter()
        .chain(&args.allow)
        .chain(&args.context_from)
        .map(PathBuf::as_path)
        .collect();
    Inputs::of(&args.paths, &extra)
}

/// The main output (stdout, or a file being written) and the exports being written.
struct Destinations {
    out: Option<Pending>,
    exports: Vec<Pending>,
}

impl Destinations {
    /// The temporaries being written.
    fn temporaries(&self) -> Vec<PathBuf> {
        self.out
            .iter()
            .chain(&self.exports)
            .map(|p| p.temporary().to_path_buf())
            .collect()
    }

    fn create(outputs: &Outputs<'_>) -> anyhow::Result<Destinations> {
        let mut named = outputs.named().into_iter();
        let out = match outputs.output {
            Some(_) => named
                .next()
                .map(|n| Pending::create(&n, false))
                .transpose()?,
            None => None,
        };
        let exports = named
            .map(|n| Pending::create(&n, false))
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Destinations { out, exports })
    }
}

/// Writes a report in every asked format, says on stderr what went wrong, and gives
/// the exit status (0 findings, 1 none, 2 something could not be read).
fn emit(
    outputs: &Outputs<'_>,
    destinations: Destinations,
    report: ualhunt_engine::Report,
) -> anyhow::Result<ExitCode> {
    if report.files == 0 && !report.errors.is_empty() {
        // Nothing could even be found: a verdict would speak for inputs never read.
        let mut err = io::stderr().lock();
        for e in &report.errors {
            writeln!(
                err,
                "ualhunt: {}: {}",
                terminal_safe(e.path()),
                terminal_safe(&e.to_string())
            )?;
        }
        writeln!(
            err,
            "ualhunt: no input could be read: no report and no verdict (no output file was replaced)"
        )?;
        return Ok(ExitCode::from(2));
    }
    let Destinations { out, mut exports } = destinations;
    // One report, every format written from it: the main output, then each export.
    let to_terminal = outputs.output.is_none() && io::stdout().is_terminal();
    let layout = output::Layout {
        width: table_width(outputs.wide, to_terminal),
    };
    let mut files = Vec::new();
    let writing = std::time::Instant::now();
    let written = match out {
        Some(mut file) => {
            let result = output::write_with(outputs.format.into(), layout, &report, file.writer())
                .with_context(|| {
                    format!("cannot write {}; no output file was replaced", file.flag())
                });
            files.push(file);
            result
        }
        None => {
            let mut out = BufWriter::new(io::stdout().lock());
            output::write_with(outputs.format.into(), layout, &report, &mut out)
                .and_then(|()| out.flush())
                .context("cannot write findings")
        }
    };
    let layout = output::Layout {
        width: table_width(outputs.wide, false),
    };
    let mut exported = Ok(());
    for (export, file) in outputs.exports.iter().zip(&mut exports) {
        let result = output::write_with(export.format.into(), layout, &report, file.writer())
            .with_context(|| format!("cannot write {}; no output file was replaced", file.flag()));
        if exported.is_ok() {
            exported = result;
        }
    }
    files.extend(exports);
    // Every output complete, or none replaces its file.
    let committed = if written.is_ok() && exported.is_ok() {
        outputs::commit(files)
    } else {
        Ok(())
    };
    let writing = writing.elapsed();

    let mut err = io::stderr().lock();
    print_warnings(&mut err, &report.warnings)?;
    for e in &report.errors {
        writeln!(
            err,
            "ualhunt: {}: {}",
            terminal_safe(e.path()),
            terminal_safe(&e.to_string())
        )?;
    }
    if report.counts.malformed > 0 {
        writeln!(
            err,
            "ualhunt: {} malformed lines skipped; first ones:",
            report.counts.malformed
        )?;
        for m in report.malformed.iter().take(5) {
            writeln!(
                err,
                "  {}:{}: {} ({:?})",
                terminal_safe(&m.path),
                m.line,
                terminal_safe(&m.reason),
                terminal_safe(&m.excerpt)
            )?;
        }
    }
    for i in report.allowlist.expired() {
        let e = &report.allowlist.entries[i];
        writeln!(
            err,
            "ualhunt: warning: allowlist entry for {} expired on {} and no longer applies",
            terminal_safe(&e.account),
            e.expires.map(|d| d.to_string()).unwrap_or_default()
        )?;
    }
    if !report.coverage.conclusive && report.events() == 0 && report.files > 0 {
        writeln!(
            err,
            "ualhunt: note: no findings, but the archive cannot vouch for it: {}",
            terminal_safe(&report.coverage.reasons.join("; "))
        )?;
    }
    let formats = std::iter::once(outputs.format).chain(outputs.exports.iter().map(|e| e.format));
    if formats
        .into_iter()
        .any(|f| OutputFormat::from(f) == OutputFormat::Timeline)
    {
        let undated = output::timeline_undated(&report);
        if undated > 0 {
            writeln!(
                err,
                "ualhunt: note: {undated} events without a time are not in the timeline (the json report has them)"
            )?;
        }
    }
    if outputs.stats {
        output::write_stats(&report, &mut err)?;
        writeln!(
            err,
            "report        written in {:.3} s (wall, every output and export)",
            writing.as_secs_f64()
        )?;
    }
    written?;
    exported?;
    committed?;

    let failed = !report.errors.is_empty() || (outputs.strict && report.counts.malformed > 0);
    // Allowlisted findings and building-block rules' (unless --building-blocks) are
    // reported without making the status 0.
    let events = report.verdict_events();
    let malformed = report.counts.malformed;
    // The process ends right after this: freeing hundreds of thousands of evidence
    // strings one by one would only delay the exit.
    std::mem::forget(report);
    Ok(if failed {
        if outputs.strict && malformed > 0 {
            writeln!(err, "ualhunt: --strict: {malformed} malformed lines")?;
        }
        ExitCode::from(2)
    } else if events > 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// One shard of a sharded run: list what it reads, or write its partial result.
fn hunt_shard(args: &HuntArgs, spec: &str) -> anyhow::Result<ExitCode> {
    let shard = if spec.trim() == "auto" {
        let (shard, from) = shard::env::from_env(args.shard_count, |name| std::env::var(name).ok())
            .map_err(anyhow::Error::msg)?;
        if !args.quiet {
            eprintln!("ualhunt: shard {shard} (from {from})");
        }
        shard
    } else {
        let shard = Shard::parse(spec).map_err(anyhow::Error::msg)?;
        if let Some(n) = args.shard_count.filter(|&n| n != shard.count) {
            anyhow::bail!("--shard-count {n} disagrees with --shard {spec}");
        }
        shard
    };
    let config = args.to_config()?;
    if args.list_shard {
        let listing = shard::list(&config, shard)?;
        let mut out = BufWriter::new(io::stdout().lock());
        writeln!(
            out,
            "# shard {shard}: {} of {} inputs ({} bytes in all), plan {}",
            listing.units.len(),
            listing.key.inputs,
            listing.key.input_bytes,
            listing.key.digest()
        )?;
        for (name, size, piece) in &listing.units {
            let share = match piece {
                None => format!("whole\t{size}"),
                Some(p) => {
                    let r = p.range(*size);
                    let end = if p.end.is_some() {
                        r.end.to_string()
                    } else {
                        "end".to_string()
                    };
                    format!(
                        "bytes {}..{end} (line-aligned when read)\t{}",
                        r.start,
                        r.end - r.start
                    )
                }
            };
            writeln!(out, "{}\t{share}", terminal_safe(name))?;
        }
        out.flush()?;
        return Ok(ExitCode::SUCCESS);
    }
    let Some(path) = &args.partial else {
        anyhow::bail!(
            "--shard needs --partial FILE (where this shard's result goes) or --list-shard"
        );
    };
    let named = Named::new("--partial", path);
    outputs::check(std::slice::from_ref(&named), &hunt_inputs(args))?;
    let file = Pending::create(&named, true)?;
    let mut config = config;
    config.skip = vec![file.temporary().to_path_buf()];
    let context = match &args.context_from {
        Some(p) => Some((p.display().to_string(), shard::merge::load_context_plan(p)?)),
        None => None,
    };
    let part = shard::run(
        &config,
        shard,
        context.as_ref().map(|(p, c)| (p.as_str(), c)),
    )?;
    write_partial(file, &part)?;
    // Input errors are in the partial (the merge reports them and exits 2); the task
    // itself succeeded, so that a scheduler's dependent merge job still runs.
    let mut err = io::stderr().lock();
    let segments_errors: Vec<String> = part
        .scan
        .iter()
        .flat_map(|s| s.segments.iter().flat_map(|seg| &seg.errors))
        .map(|e| ualhunt_engine::error::InputError::from(e.clone()).to_string())
        .collect();
    for e in &segments_errors {
        writeln!(err, "ualhunt: shard {shard}: {}", terminal_safe(e))?;
    }
    if !args.quiet {
        let read: u64 = part.stats.passes.iter().map(|p| p.bytes).sum();
        writeln!(
            err,
            "ualhunt: shard {shard}: {} stage, {} units, {read} bytes scanned, partial written to {}",
            match part.stage {
                shard::partial::Stage::Scan => "first (scan)",
                shard::partial::Stage::Context => "second (context)",
            },
            part.units.len(),
            path.display()
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `ualhunt merge`: the report of a sharded run, or its context plan.
fn merge(args: &MergeArgs) -> anyhow::Result<ExitCode> {
    let today = chrono::Utc::now().date_naive();
    let inputs = Inputs::of(&args.partials, &[]);
    if let Some(path) = &args.context_plan {
        let named = Named::new("--context-plan", path);
        outputs::check(std::slice::from_ref(&named), &inputs)?;
        let file = Pending::create(&named, true)?;
        let files = shard::merge::load(&args.partials)?;
        let plan = shard::merge::context_plan(files, today)?;
        write_partial(file, &plan)?;
        // Distinct names: an account that is also an actor, or a name of two rules, once.
        let watches: Vec<_> = plan
            .rules
            .iter()
            .filter_map(|(_, w)| w.as_ref().map(|w| w.watch()))
            .collect();
        let watched = ualhunt_engine::report::Watched::of(&watches);
        eprintln!(
            "ualhunt: context plan written to {}: {}",
            path.display(),
            if plan.needed() {
                format!(
                    "the second stage watches {} names ({} bypassed accounts, {} actors)",
                    watched.names, watched.accounts, watched.actors
                )
            } else {
                "no context pass needed (the second stage reads nothing)".to_string()
            }
        );
        return Ok(ExitCode::SUCCESS);
    }
    let outputs = args.outputs();
    outputs.check_destinations().map_err(anyhow::Error::msg)?;
    outputs::check(&outputs.named(), &inputs)?;
    if outputs.output.is_none() {
        outputs::check_stdout(&inputs)?;
    }
    let destinations = Destinations::create(&outputs)?;
    let files = shard::merge::load(&args.partials)?;
    let mut report = shard::merge::merge(files, today)?;
    report.building_blocks = args.building_blocks;
    emit(&outputs, destinations, report)
}

/// Writes a partial or a context plan into its temporary and renames it over its file.
fn write_partial<T: serde::Serialize>(mut file: Pending, value: &T) -> anyhow::Result<()> {
    let flag = file.flag().to_string();
    shard::partial::write_to(file.writer(), value)
        .with_context(|| format!("cannot write {flag}; no file was replaced"))?;
    outputs::commit(vec![file])
}

/// The width the table may use: unlimited with `--wide` or when it does not go to a
/// terminal (unless `COLUMNS` says otherwise), else the terminal's.
fn table_width(wide: bool, to_terminal: bool) -> Option<usize> {
    if wide {
        return None;
    }
    let columns = std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.trim().parse::<usize>().ok());
    if to_terminal {
        terminal_size::terminal_size()
            .map(|(w, _)| usize::from(w.0))
            .or(columns)
            .or(Some(80))
    } else {
        columns
    }
    .map(|w| w.max(40))
}

/// Draws a progress bar on stderr (bytes read of the inputs' total, throughput, ETA)
/// until the run is finished, then clears it.
fn show_progress(progress: &Progress) {
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] [{wide_bar}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    while !progress.finished.load(Ordering::Relaxed) {
        bar.set_length(progress.total.load(Ordering::Relaxed));
        bar.set_position(progress.done.load(Ordering::Relaxed));
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    bar.finish_and_clear();
}

fn rules(args: &RulesArgs) -> anyhow::Result<()> {
    let set = if args.rules.is_empty() {
        RuleSet::builtin()
    } else {
        cli::load_rules(&args.rules, args.sigma_mapping.as_deref()).context("--rules")?
    };
    if let Some(wanted) = &args.guide {
        return guide(&set, wanted);
    }
    let enrichment = crate::cli::enrichment(&args.geoip_db)?;
    // As a hunt's first pass sees them: a rule with a trigger searched for by it.
    let matcher = ualhunt_engine::scan::Matcher::with_triggers_enriched(
        set.rules.clone(),
        usize::MAX,
        enrichment.clone(),
    );
    let mut out = BufWriter::new(io::stdout().lock());
    // A rule file is as untrusted as an archive: every text from it reaches the terminal
    // through `terminal_safe`; a multi-line text (query, description) keeps its line
    // breaks, each line escaped and indented under its heading.
    let t = |text: &str| terminal_safe(text);
    let block = |text: &str| {
        text.trim()
            .lines()
            .map(|line| terminal_safe(line.trim_end_matches('\r')))
            .collect::<Vec<_>>()
            .join("\n    ")
    };
    for (r, rule) in set.rules.iter().enumerate() {
        let m = &rule.meta;
        let mark = if m.is_building_block() {
            "  [building block]"
        } else {
            ""
        };
        writeln!(out, "{}{mark}", t(&m.name))?;
        if let Some(renamed) = &m.renamed {
            writeln!(out, "  renamed upstream:  {}", t(renamed))?;
        }
        writeln!(out, "  id:                {}", t(&m.id))?;
        if let Some(author) = &m.author {
            writeln!(out, "  author:            {}", t(author))?;
        }
        if let Some(path) = &rule.path {
            writeln!(out, "  file:              {}", t(path))?;
        }
        writeln!(
            out,
            "  type / language:   {} / {}",
            t(&m.rule_type),
            t(&m.language)
        )?;
        writeln!(
            out,
            "  severity / risk:   {} / {}",
            t(&m.severity),
            m.risk_score
        )?;
        writeln!(out, "  indices:           {}", t(&m.index.join(", ")))?;
        if !m.schedule.is_empty() {
            writeln!(out, "  schedule:          {}", t(&m.schedule))?;
        }
        if let Some(alerting) = &m.alerting {
            writeln!(out, "  alerting:          {}", t(&alerting.to_string()))?;
        }
        for threat in &m.threat {
            let sub = threat
                .subtechnique
                .as_deref()
                .map(|s| format!(" > {s}"))
                .unwrap_or_default();
            writeln!(
                out,
                "  threat:            {}",
                t(&format!("{} > {}{sub}", threat.tactic, threat.technique))
            )?;
        }
        for fp in &m.false_positives {
            writeln!(out, "  false positives:   {}", t(fp))?;
        }
        for reference in &m.references {
            writeln!(out, "  reference:         {}", t(reference))?;
        }
        if matches!(rule.query, ualhunt_engine::rule::Query::Sigma(_)) {
            // The detection as it runs: each Sigma field with the record fields it reads.
            writeln!(out, "  detection:         {}", t(&rule.query.to_string()))?;
        }
        for (i, sel) in matcher.selections().iter().enumerate() {
            if usize::from(sel.rule) != r {
                continue;
            }
            let what = match sel.why {
                ualhunt_engine::findings::Why::Rule => "prefilter:        ".to_string(),
                ualhunt_engine::findings::Why::Context(c) => {
                    format!("context {:?}:", rule.meta.context[usize::from(c)].name)
                }
            };
            let trigger = (sel.why == ualhunt_engine::findings::Why::Rule
                && matcher.gated().contains(&sel.rule))
            .then(|| rule.query.trigger())
            .flatten();
            let literals = match &matcher.requirements()[i] {
                Some(lits) if trigger.is_some() => format!(
                    "{} (its trigger: a run returns a row only when a record in it gives \
                     the aggregate {} the value its WHERE needs; the first pass searches \
                     for these, and the records in the runs around each one that meets it \
                     are read again, every one evaluated; where none is found nothing more \
                     is read; none of its own, without the trigger: {})",
                    lits.iter()
                        .map(|l| ualhunt_engine::field::show_literal(l))
                        .collect::<Vec<_>>()
                        .join(" or "),
                    trigger.map(|t| t.column).unwrap_or_default(),
                    ualhunt_engine::prefilter::why_no_literal(&rule.query)
                ),
                Some(lits) => {
                    let shown = lits
                        .iter()
                        .map(|l| ualhunt_engine::field::show_literal(l))
                        .collect::<Vec<_>>()
                        .join(" or ");
                    match matcher.unenriched()[i] {
                        Some(field) => format!(
                            "{shown} ({})",
                            ualhunt_engine::enrich::unenriched_note(field)
                        ),
                        None => shown,
                    }
                }
                None => format!(
                    "none: every record is parsed for it ({})",
                    ualhunt_engine::prefilter::why_no_literal(
                        sel.query.as_ref().expect("rule selections have a query")
                    )
                ),
            };
            writeln!(out, "  {what} {}", t(&literals))?;
        }
        for (field, why) in rule.needs_enrichment(&enrichment) {
            writeln!(
                out,
                "  cannot match:      {}",
                t(&format!("{field}: {why}"))
            )?;
        }
        if let Some(kind) = &m.building_block {
            writeln!(
                out,
                "  building block:    {} (signals for other rules; its findings count in the verdict only with --building-blocks)",
                t(kind)
            )?;
        }
        if m.note.is_some() || m.setup.is_some() {
            let what: Vec<&str> = [("investigation guide", &m.note), ("setup", &m.setup)]
                .into_iter()
                .filter(|(_, text)| text.is_some())
                .map(|(w, _)| w)
                .collect();
            writeln!(
                out,
                "  guide:             {} (shown in the HTML report when the rule fires; \
                 `ualhunt rules --guide {}` prints it)",
                what.join(" and "),
                t(&m.id)
            )?;
        }
        if !rule.meta.analyses.is_empty() {
            writeln!(
                out,
                "  analyses:          {}",
                rule.meta.analyses.join(", ")
            )?;
        }
        writeln!(out, "  query:\n    {}", block(&m.query))?;
        writeln!(out, "  description:\n    {}", block(&m.description))?;
        writeln!(out)?;
    }
    if !set.not_run.is_empty() {
        writeln!(out, "Not run ({} rules):", set.not_run.len())?;
        for n in &set.not_run {
            writeln!(out, "  {} ({})", t(&n.name), t(&n.id))?;
            writeln!(out, "    file:   {}", t(&n.path))?;
            writeln!(out, "    type:   {} / {}", t(&n.rule_type), t(&n.language))?;
            writeln!(out, "    reason: {}", block(&n.reason))?;
        }
    }
    writeln!(
        out,
        "{} rules run, {} not run; one prefilter for all: {}",
        set.rules.len(),
        set.not_run.len(),
        matcher.describe_prefilter()
    )?;
    // A rule with no literal makes every line a candidate, for every rule: named here
    // with that cost.
    let unfiltered: Vec<&str> = matcher
        .selections()
        .iter()
        .zip(matcher.requirements())
        .filter(|(sel, req)| sel.why == ualhunt_engine::findings::Why::Rule && req.is_none())
        .map(|(sel, _)| set.rules[usize::from(sel.rule)].meta.name.as_str())
        .collect();
    let gated: Vec<&str> = matcher
        .gated()
        .iter()
        .map(|&r| set.rules[usize::from(r)].meta.name.as_str())
        .collect();
    if !gated.is_empty() {
        writeln!(
            out,
            "{} with no literal of its own searched for by its trigger's literals (the \
             records around each record meeting the trigger are read a second time, with \
             `--no-prefilter` every record is parsed for it): {}",
            match gated.len() {
                1 => "1 rule".to_string(),
                n => format!("{n} rules"),
            },
            gated.join("; ")
        )?;
    }
    if !unfiltered.is_empty() {
        writeln!(
            out,
            "{} with no prefilter literal, so every line of an archive is parsed: {}",
            match unfiltered.len() {
                1 => "1 rule".to_string(),
                n => format!("{n} rules"),
            },
            t(&unfiltered.join("; "))
        )?;
    }
    out.flush()?;
    Ok(())
}

/// `ualhunt rules --guide NAME-OR-ID`: the investigation guide and setup of the one
/// rule `wanted` names, as the rule file has them (Markdown), every line through
/// `terminal_safe` like the rest of a rule file's text. A name that fits no rule, or
/// several, is an error naming the close ones.
fn guide(set: &RuleSet, wanted: &str) -> anyhow::Result<()> {
    use ualhunt_engine::rule::lookup::{Entry, Lookup};
    // Error messages reach the terminal through `error_lines`, which escapes them.
    let named = |e: &Entry<'_>| format!("{} ({})", e.name(), e.id());
    let rule = match set.lookup(wanted) {
        Lookup::Found(rule) => rule,
        Lookup::Ambiguous(all) => {
            const SHOWN: usize = 20;
            let mut lines: Vec<String> = all.iter().take(SHOWN).map(named).collect();
            if all.len() > SHOWN {
                lines.push(format!("… and {} more", all.len() - SHOWN));
            }
            anyhow::bail!(
                "--guide {wanted:?} fits {} rules; give one's id or whole name:\n{}",
                all.len(),
                lines.join("\n")
            );
        }
        Lookup::Unknown(close) if close.is_empty() => anyhow::bail!(
            "--guide {wanted:?}: no rule has that id or name, nor a name holding it \
             ({} rules loaded; `ualhunt rules` lists them)",
            set.rules.len() + set.not_run.len()
        ),
        Lookup::Unknown(close) => anyhow::bail!(
            "--guide {wanted:?}: no rule has that id or name, nor a name holding it; the \
             closest:\n{}",
            close.iter().map(named).collect::<Vec<_>>().join("\n")
        ),
    };
    if rule.note().is_none() && rule.setup().is_none() {
        anyhow::bail!(
            "{} has no investigation guide: its rule file has neither `note` nor `setup`{}",
            named(&rule),
            if rule.path().is_none() {
                " (Elastic's published file of the rule, given with --rules, may have one)"
            } else {
                ""
            }
        );
    }
    let mut out = BufWriter::new(io::stdout().lock());
    let text = |out: &mut BufWriter<_>, markdown: &str| -> io::Result<()> {
        for line in markdown.trim().lines() {
            writeln!(out, "{}", terminal_safe(line.trim_end_matches('\r')))?;
        }
        Ok(())
    };
    writeln!(out, "{}", terminal_safe(&named(&rule)))?;
    if let Some(path) = rule.path() {
        writeln!(out, "file: {}", terminal_safe(path))?;
    }
    if let Some(why) = rule.not_run() {
        writeln!(out, "not run: {}", terminal_safe(why))?;
    }
    for (heading, markdown) in [
        ("Investigation guide", rule.note()),
        ("Setup", rule.setup()),
    ] {
        if let Some(markdown) = markdown {
            writeln!(out, "\n=== {heading} ===\n")?;
            text(&mut out, markdown)?;
        }
    }
    out.flush()?;
    Ok(())
}

fn generate(args: &GenerateArgs) -> anyhow::Result<()> {
    let opts = GenOptions {
        size: args.size as u64,
        seed: args.seed,
        shape: match args.shape {
            Shape::Ual => GenShape::Ual,
            Shape::Ecs => GenShape::Ecs,
        },
        rate: args.rate,
        key_order: match args.key_order {
            KeyOrderArg::Generated => KeyOrder::Generated,
            KeyOrderArg::Purview => KeyOrder::Purview,
            KeyOrderArg::Shuffled => KeyOrder::Shuffled,
        },
    };
    let plot = match args.plot {
        cli::PlotArg::Investigation => Plot::Investigation,
        cli::PlotArg::TwoPeriods => Plot::TwoPeriods,
    };
    let story = args.scenarios.map(|days| Storyline { days, plot });
    let sink: Box<dyn Write> = match &args.output {
        Some(path) => Box::new(
            File::create(path).with_context(|| format!("cannot create {}", path.display()))?,
        ),
        None => Box::new(io::stdout().lock()),
    };
    let summary = if args.gzip {
        let mut gz = flate2::write::GzEncoder::new(sink, flate2::Compression::default());
        let s = ualhunt_generate::generate_with(&opts, story, &mut gz)?;
        gz.finish()?.flush()?;
        s
    } else {
        let mut w = BufWriter::new(sink);
        ualhunt_generate::generate_with(&opts, story, &mut w)?
    };
    eprintln!(
        "generated {} lines, {} bytes; planted {} Set-MailboxAuditBypassAssociation events, \
         {} successful (the rule should match {}; {} enable the bypass)",
        summary.lines,
        summary.bytes,
        summary.planted,
        summary.expected_matches,
        summary.expected_matches,
        summary.enabled
    );
    if !summary.scenario.is_empty() {
        eprintln!("storyline planted:");
        for s in &summary.scenario {
            eprintln!("  {s}");
        }
    }
    Ok(())
}
