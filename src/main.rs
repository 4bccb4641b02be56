//! The `ualhunt` binary: parse flags, run the library, map the result to an exit
//! status (0 findings, 1 none, 2 something could not be read).

mod cli;

use std::fs::File;
use std::io::{self, BufWriter, IsTerminal, Write};
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use anyhow::Context;
use clap::Parser;

use cli::{Cli, Command, GenerateArgs, HuntArgs, RulesArgs, Shape};
use ualhunt::config::OutputFormat;
use ualhunt::generate::{GenOptions, GenShape, Storyline};
use ualhunt::output::{self, terminal_safe};
use ualhunt::rule::load::RuleSet;
use ualhunt::source::Progress;

#[global_allocator]
static ALLOC: ualhunt::alloc::CountingAlloc = ualhunt::alloc::CountingAlloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Hunt(args) => hunt(&args),
        Command::Rules(args) => rules(&args).map(|()| ExitCode::SUCCESS),
        Command::Generate(args) => generate(&args).map(|()| ExitCode::SUCCESS),
    };
    match result {
        Ok(code) => code,
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ualhunt: {}", terminal_safe(&format!("{e:#}")));
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
    args.check_destinations().map_err(anyhow::Error::msg)?;
    let mut config = args.to_config()?;
    // Every destination is created before the scan: a file that cannot be created ends
    // the run at once, not after hours of reading.
    let mut out: Box<dyn Write> = match &args.output {
        Some(path) => Box::new(BufWriter::new(create(path)?)),
        None => Box::new(BufWriter::new(io::stdout().lock())),
    };
    let mut exports = args
        .exports
        .iter()
        .map(|e| Ok((e, BufWriter::new(create(&e.path)?))))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let bar = (!args.quiet && io::stderr().is_terminal()).then(|| {
        let progress = Arc::new(Progress::default());
        config.progress = Some(progress.clone());
        std::thread::spawn(move || show_progress(&progress))
    });
    let report = ualhunt::run(&config)?;
    if let Some(bar) = bar {
        // The bar thread ends once the run is marked finished; it cannot panic on input.
        let _ = bar.join();
    }

    // One report, every format written from it: the main output, then each export.
    let to_terminal = args.output.is_none() && io::stdout().is_terminal();
    let layout = output::Layout {
        width: table_width(args, to_terminal),
    };
    let written = output::write_with(args.format.into(), layout, &report, &mut out)
        .and_then(|()| out.flush())
        .with_context(|| match &args.output {
            Some(path) => format!("cannot write {}", path.display()),
            None => "cannot write findings".to_string(),
        });
    let layout = output::Layout {
        width: table_width(args, false),
    };
    let mut exported = Ok(());
    for (export, file) in &mut exports {
        let result = output::write_with(export.format.into(), layout, &report, file)
            .and_then(|()| file.flush())
            .with_context(|| format!("cannot write {}", export.path.display()));
        if exported.is_ok() {
            exported = result;
        }
    }

    let mut err = io::stderr().lock();
    for w in &report.warnings {
        writeln!(
            err,
            "ualhunt: warning: {}: {}",
            terminal_safe(&w.path),
            terminal_safe(&w.message)
        )?;
    }
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
    let formats = std::iter::once(args.format).chain(args.exports.iter().map(|e| e.format));
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
    if args.stats {
        output::write_stats(&report, &mut err)?;
    }
    written?;
    exported?;

    let failed = !report.errors.is_empty() || (args.strict && report.counts.malformed > 0);
    let events = report.unallowed_events();
    let malformed = report.counts.malformed;
    // The process ends right after this: freeing hundreds of thousands of evidence
    // strings one by one would only delay the exit.
    std::mem::forget(report);
    Ok(if failed {
        if args.strict && malformed > 0 {
            writeln!(err, "ualhunt: --strict: {malformed} malformed lines")?;
        }
        ExitCode::from(2)
    } else if events > 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Creates an output file, naming it if that fails.
fn create(path: &Path) -> anyhow::Result<File> {
    File::create(path).with_context(|| format!("cannot create {}", path.display()))
}

/// The width the table may use: unlimited with `--wide` or when it does not go to a
/// terminal (unless `COLUMNS` says otherwise), else the terminal's.
fn table_width(args: &HuntArgs, to_terminal: bool) -> Option<usize> {
    if args.wide {
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
        ualhunt::rule::load::load(&args.rules)?
    };
    let matcher = ualhunt::scan::Matcher::new(set.rules.clone(), true, usize::MAX);
    let mut out = BufWriter::new(io::stdout().lock());
    for (r, rule) in set.rules.iter().enumerate() {
        let m = &rule.meta;
        writeln!(out, "{}", m.name)?;
        if let Some(renamed) = &m.renamed {
            writeln!(out, "  renamed upstream:  {renamed}")?;
        }
        writeln!(out, "  id:                {}", m.id)?;
        if let Some(path) = &rule.path {
            writeln!(out, "  file:              {path}")?;
        }
        writeln!(out, "  type / language:   {} / {}", m.rule_type, m.language)?;
        writeln!(
            out,
            "  severity / risk:   {} / {}",
            m.severity, m.risk_score
        )?;
        writeln!(out, "  indices:           {}", m.index.join(", "))?;
        if !m.schedule.is_empty() {
            writeln!(out, "  schedule:          {}", m.schedule)?;
        }
        for t in &m.threat {
            let sub = t
                .subtechnique
                .as_deref()
                .map(|s| format!(" > {s}"))
                .unwrap_or_default();
            writeln!(
                out,
                "  threat:            {} > {}{sub}",
                t.tactic, t.technique
            )?;
        }
        for fp in &m.false_positives {
            writeln!(out, "  false positives:   {fp}")?;
        }
        for (i, sel) in matcher.selections().iter().enumerate() {
            if usize::from(sel.rule) != r {
                continue;
            }
            let what = match sel.why {
                ualhunt::findings::Why::Rule => "prefilter:        ".to_string(),
                ualhunt::findings::Why::Context(c) => {
                    format!("context {:?}:", rule.meta.context[usize::from(c)].name)
                }
            };
            let literals = match &matcher.requirements()[i] {
                Some(lits) => lits
                    .iter()
                    .map(|l| format!("{l:?}"))
                    .collect::<Vec<_>>()
                    .join(" or "),
                None => format!(
                    "none: every record is parsed for it ({})",
                    ualhunt::prefilter::why_no_literal(
                        sel.query.as_ref().expect("rule selections have a query")
                    )
                ),
            };
            writeln!(out, "  {what} {literals}")?;
        }
        for (field, why) in rule.needs_enrichment() {
            writeln!(out, "  cannot match:      {field}: {why}")?;
        }
        if !rule.meta.analyses.is_empty() {
            writeln!(
                out,
                "  analyses:          {}",
                rule.meta.analyses.join(", ")
            )?;
        }
        writeln!(
            out,
            "  query:\n    {}",
            m.query.trim().replace('\n', "\n    ")
        )?;
        writeln!(out, "  description:\n    {}", m.description.trim())?;
        writeln!(out)?;
    }
    if !set.not_run.is_empty() {
        writeln!(out, "Not run ({} rules):", set.not_run.len())?;
        for n in &set.not_run {
            writeln!(out, "  {} ({})", n.name, n.id)?;
            writeln!(out, "    file:   {}", n.path)?;
            writeln!(out, "    type:   {} / {}", n.rule_type, n.language)?;
            writeln!(out, "    reason: {}", n.reason)?;
        }
    }
    writeln!(
        out,
        "{} rules run, {} not run; one prefilter for all: {}",
        set.rules.len(),
        set.not_run.len(),
        matcher.prefilter().describe()
    )?;
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
    };
    let story = args.scenarios.map(|days| Storyline { days });
    let sink: Box<dyn Write> = match &args.output {
        Some(path) => Box::new(
            File::create(path).with_context(|| format!("cannot create {}", path.display()))?,
        ),
        None => Box::new(io::stdout().lock()),
    };
    let summary = if args.gzip {
        let mut gz = flate2::write::GzEncoder::new(sink, flate2::Compression::default());
        let s = ualhunt::generate::generate_with(&opts, story, &mut gz)?;
        gz.finish()?.flush()?;
        s
    } else {
        let mut w = BufWriter::new(sink);
        ualhunt::generate::generate_with(&opts, story, &mut w)?
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
