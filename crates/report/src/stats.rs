//! `--stats`: the line accounting (DESIGN §3), throughput, prefilter selectivity,
//! chunk latency percentiles, per-stage times and peak memory, written to stderr.

use std::io::{self, Write};

use ualhunt_engine::Report;

/// Writes the statistics block.
pub fn write_stats(report: &Report, out: &mut dyn Write) -> io::Result<()> {
    let c = &report.counts;
    let run = &report.stats;
    let s = &run.scan;
    let secs = run.wall.as_secs_f64().max(1e-9);
    let gb = report.bytes as f64 / 1e9;
    writeln!(out, "--- ualhunt stats ---")?;
    let formats: Vec<String> = s.formats.iter().map(|(k, n)| format!("{n} {k}")).collect();
    writeln!(
        out,
        "inputs        {} ({})",
        report.files,
        formats.join(", ")
    )?;
    writeln!(
        out,
        "bytes         {} scanned{}",
        report.bytes,
        if s.compressed_bytes > 0 {
            format!(" ({} compressed on disk)", s.compressed_bytes)
        } else {
            String::new()
        }
    )?;
    writeln!(out, "lines         {} ({} blank)", c.lines, c.blank)?;
    writeln!(
        out,
        "records       {} = {} not candidate + {} candidates",
        c.records,
        c.not_candidate(),
        c.candidates
    )?;
    writeln!(
        out,
        "candidates    {} = {} matched + {} not matched ({} of them context) + {} malformed",
        c.candidates, c.matched, c.not_matched, c.context, c.malformed
    )?;
    writeln!(
        out,
        "events        {} by {} actors",
        report.events(),
        report.actors.len()
    )?;
    writeln!(out, "errors        {}", report.errors.len())?;
    writeln!(out, "prefilter     {}", s.prefilter)?;
    writeln!(out, "gzip backend  {}", ualhunt_input::inflate::BACKEND)?;
    if gb > 0.0 {
        writeln!(
            out,
            "selectivity   {:.1} candidates per GB",
            c.candidates as f64 / gb
        )?;
    }
    writeln!(
        out,
        "wall time     {:.3} s on {} threads, chunk size {}",
        secs, run.threads, run.chunk_size
    )?;
    writeln!(
        out,
        "throughput    {:.1} MB/s, {:.0} lines/s",
        report.bytes as f64 / 1e6 / secs,
        c.lines as f64 / secs
    )?;
    let h = &s.chunk_latency_us;
    if !h.is_empty() {
        writeln!(
            out,
            "chunk latency {} chunks; p50 {} us, p90 {} us, p99 {} us, max {} us",
            h.len(),
            h.value_at_quantile(0.5),
            h.value_at_quantile(0.9),
            h.value_at_quantile(0.99),
            h.max()
        )?;
    }
    writeln!(
        out,
        "stage time    scan {:.3} s (of which parse+rule {:.3} s), read/inflate {:.3} s (summed over threads)",
        s.scan_time.as_secs_f64(),
        s.parse_time.as_secs_f64(),
        s.read_time.as_secs_f64()
    )?;
    if !run.phases.is_empty() {
        let phases: Vec<String> = run
            .phases
            .iter()
            .map(|(name, took)| format!("{name} {:.3} s", took.as_secs_f64()))
            .collect();
        writeln!(out, "phases        {} (wall)", phases.join(", "))?;
    }
    if let Some(c) = &run.cache {
        let mib = |b: u64| b as f64 / (1 << 20) as f64;
        writeln!(
            out,
            "context cache budget {:.1} MiB: kept {} bytes of {} compressed files ({:.1} MiB of buffers){}",
            mib(c.budget),
            c.kept,
            c.files,
            mib(c.held),
            if c.not_kept > 0 {
                format!(
                    "; full: {} bytes of theirs not kept, inflated again from seek points if needed",
                    c.not_kept
                )
            } else {
                String::new()
            }
        )?;
    }
    if run.context.is_empty() {
        writeln!(out, "context pass  not run")?;
    }
    // Several rules with the investigation: a pass each, named.
    let several = run.context.len() > 1;
    for (k, c) in run.context.iter().enumerate() {
        let p = &c.pass;
        if several {
            writeln!(
                out,
                "context rule  {}",
                crate::escape::terminal_safe(&c.rule)
            )?;
        }
        writeln!(
            out,
            "context pass  {:.3} s, {} bytes, prefilter {}, {} candidates (parsed), {} screened out unparsed, {} records of watched names",
            p.wall.as_secs_f64(),
            p.bytes,
            p.prefilter,
            p.counts.candidates,
            p.counts.screened,
            c.attributed
        )?;
        if let Some(w) = run.watched.as_ref().filter(|_| k == 0) {
            writeln!(
                out,
                "context names {} watched ({} bypassed accounts, {} actors; {} spellings in the findings)",
                w.names, w.accounts, w.actors, w.spellings
            )?;
        }
        // The block index lets the pass skip what holds no watched time; what a
        // compressed file's stretches needed inflated before them from a seek
        // point is read too.
        let read = p.bytes + p.lead_in;
        let skipped = s.bytes.saturating_sub(read);
        let share = if s.bytes == 0 {
            0.0
        } else {
            100.0 * read as f64 / s.bytes as f64
        };
        writeln!(
            out,
            "context read  {read} of {} bytes ({share:.1} %), {skipped} skipped ({} scanned, {} inflated to reach them from seek points)",
            s.bytes, p.bytes, p.lead_in
        )?;
        if run.cache.is_some() {
            // Of the compressed inputs' bytes: what came from memory, what was
            // inflated again (scanned, or only to reach a stretch).
            writeln!(
                out,
                "context cache {} bytes read from the cache, {} inflated again ({} scanned, {} to reach them), {} skipped",
                p.cached,
                p.bytes - p.cached + p.lead_in,
                p.bytes - p.cached,
                p.lead_in,
                skipped
            )?;
        }
    }
    if let Some(t) = &run.triggers {
        match &t.pass {
            Some(p) => {
                let share = if s.bytes == 0 {
                    0.0
                } else {
                    100.0 * (p.bytes + p.lead_in) as f64 / s.bytes as f64
                };
                writeln!(
                    out,
                    "trigger look  {} records met a trigger: {:.3} s, {} of {} bytes read again ({share:.1} %), {} records evaluated",
                    t.fired,
                    p.wall.as_secs_f64(),
                    p.bytes + p.lead_in,
                    s.bytes,
                    p.counts.candidates
                )?;
            }
            None => writeln!(
                out,
                "trigger look  no record met a trigger: nothing read again"
            )?,
        }
    }
    writeln!(
        out,
        "coverage      {} records, {} days, {} gap days, {} Exchange admin records",
        report.coverage.records,
        report.coverage.days.len(),
        report.coverage.gap_days.len(),
        report.coverage.exchange_admin_records
    )?;
    if report.rules.len() > 1 || !report.not_run.is_empty() {
        write_rules(report, gb, out)?;
    }
    let heap = ualhunt_engine::alloc::peak_heap();
    let rss = ualhunt_engine::alloc::peak_rss();
    writeln!(
        out,
        "memory        peak heap {:.1} MiB, peak RSS {} (RSS includes mapped file pages)",
        heap as f64 / (1 << 20) as f64,
        rss.map_or("unknown".to_string(), |r| format!(
            "{:.1} MiB",
            r as f64 / (1 << 20) as f64
        ))
    )
}

/// Per rule: its literals, the records it was evaluated on (per GB), its events; the
/// rules with no literal (evaluated on every record: their cost); the rules not run.
fn write_rules(report: &Report, gb: f64, out: &mut dyn Write) -> io::Result<()> {
    let run = &report.stats;
    writeln!(
        out,
        "rules         {} run ({}), {} not run",
        report.rules.len(),
        match run.routed_literals {
            Some(n) => format!("{n} distinct literals routed back to their rules"),
            None => "every candidate evaluated against every rule".to_string(),
        },
        report.not_run.len()
    )?;
    let summaries = report.by_rule();
    for (i, ((meta, stats), sum)) in report
        .rules
        .iter()
        .zip(&run.rules)
        .zip(&summaries)
        .enumerate()
    {
        let per_gb = if gb > 0.0 {
            format!("{:.0}/GB", stats.evaluated as f64 / gb)
        } else {
            "-".to_string()
        };
        let shown = |l: &[String]| match l.len() {
            0..=3 => l
                .iter()
                .map(|x| ualhunt_engine::field::show_literal(x))
                .collect::<Vec<_>>()
                .join(" or "),
            n => format!("{n} literals"),
        };
        let literals = match (&stats.literals, &stats.why_none) {
            (Some(l), _) if stats.trigger.is_some() => format!(
                "trigger {}: {} (its other records read only around a record meeting it)",
                crate::escape::terminal_safe(stats.trigger.as_deref().unwrap_or("")),
                shown(l)
            ),
            (Some(l), _) => match &stats.unenriched {
                Some(why) => format!("{} ({why})", shown(l)),
                None => shown(l),
            },
            (None, why) => format!(
                "NO LITERAL: evaluated on every record ({})",
                why.as_deref().unwrap_or("")
            ),
        };
        writeln!(
            out,
            "  {:>10} evaluated ({per_gb:>8}), {:>8} matched, {:>6} events  {}  [{}]",
            stats.evaluated,
            stats.matched,
            sum.events,
            crate::escape::terminal_safe(&meta.shown_name()),
            literals
        )?;
        if meta.is_sequence() {
            let held = report.held_back.get(i).copied().unwrap_or(0);
            let replay = if meta.rule_type.starts_with("sigma temporal") {
                "Sigma temporal correlation replay"
            } else {
                "EQL sequence replay"
            };
            writeln!(
                out,
                "  {held:>10} step matches in no completed sequence ({replay})"
            )?;
        }
        if let Some(alerting) = &meta.alerting {
            let held = report.held_back.get(i).copied().unwrap_or(0);
            writeln!(
                out,
                "  {:>10} held back by its alerting ({})",
                held,
                crate::escape::terminal_safe(&alerting.to_string())
            )?;
        }
    }
    for n in &report.not_run {
        writeln!(
            out,
            "  not run: {} ({} / {}): {}",
            crate::escape::terminal_safe(&n.name),
            n.rule_type,
            n.language,
            n.reason
        )?;
    }
    Ok(())
}
