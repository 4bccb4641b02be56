//! `--format table` (default): the verdict first, then the bypass periods with each
//! account's next steps, failed attempts, the actors, their context, the coverage and a
//! one-line scan summary. Building-block rules are marked and counted apart.
//! Every value from an archive is made terminal-safe. The actors table is laid out in
//! columns when it fits the width (the terminal's, `COLUMNS`, or unlimited with
//! `--wide`), else one block per actor, one item per line, long lines cut with `…`.

use std::fmt::Write as _;
use std::io::{self, Write};

use crate::escape::terminal_safe;
use crate::exporter::Exporter;
use crate::time::rfc3339;
use ualhunt_engine::Report;
use ualhunt_engine::analysis::actors::{ActorFindings, Target};
use ualhunt_engine::analysis::bypass::{Account, Investigation, Period, State};
use ualhunt_engine::coverage::verdict::summarize_days;
use ualhunt_engine::findings::{At, Value};
use ualhunt_engine::rule::RuleMeta;

/// The table exporter.
pub struct Table {
    /// Columns available; `None`: unlimited (one line per actor whatever its length).
    pub width: Option<usize>,
}

const HEADER: [&str; 6] = [
    "ACTOR",
    "EVENTS",
    "FIRST SEEN",
    "LAST SEEN",
    "SOURCE IPS",
    "TARGETS (BYPASS, EVENTS)",
];

/// At most this many targets and source IPs are listed per actor in the column layout;
/// the JSON, CSV and NDJSON outputs have all of them.
const TARGETS_MAX: usize = 8;
const IPS_MAX: usize = 3;
const RULES_MAX: usize = 3;
/// At most this many items of a list (periods, attempts, operations) in the table.
const LIST_MAX: usize = 20;
/// At most this many completed EQL sequences listed step by step in the table.
const LIST_MAX_SEQUENCES: usize = 50;

fn listing(items: impl ExactSizeIterator<Item = String>, max: usize) -> String {
    let total = items.len();
    if total == 0 {
        return "-".to_string();
    }
    let mut shown: Vec<String> = items.take(max).collect();
    if total > max {
        shown.push(format!("+{} more", total - max));
    }
    shown.join(", ")
}

fn when(t: &Option<chrono::DateTime<chrono::Utc>>) -> String {
    t.as_ref().map_or("-".to_string(), rfc3339)
}

/// The actor's name, with its kind when it is not a person (`[System]`).
fn actor_name(a: &ActorFindings) -> String {
    let mut name = terminal_safe(a.actor.as_deref().unwrap_or("(none)"));
    let kinds: Vec<&str> = a
        .user_types
        .iter()
        .map(|t| &**t)
        .filter(|t| matches!(*t, "System" | "ServicePrincipal" | "Application"))
        .collect();
    if !kinds.is_empty() {
        let _ = write!(name, " [{}]", kinds.join(", "));
    }
    name
}

/// A target with its events, and the bypass state as its last event set it when its
/// rule has one (`on`, `off`, `?` when that event did not say).
fn target_text(t: &Target, report: &Report) -> String {
    let name = terminal_safe(t.identity.as_deref().unwrap_or("(none)"));
    if !t.has_state(&report.items) {
        return format!("{name} ({})", t.events);
    }
    let flag = match t.flag {
        Some(true) => "on",
        Some(false) => "off",
        None => "?",
    };
    format!("{name} ({flag}, {})", t.events)
}

/// An actor's targets by rule (rule order), each rule's targets by identity.
fn targets_by_rule(a: &ActorFindings) -> Vec<(u16, Vec<&Target>)> {
    let mut out: Vec<(u16, Vec<&Target>)> = Vec::new();
    for t in &a.targets {
        match out.last_mut() {
            Some((r, list)) if *r == t.rule => list.push(t),
            _ => out.push((t.rule, vec![t])),
        }
    }
    out
}

/// Whether an actor's targets come from more than one rule (then each rule's targets
/// are listed under its name; one rule is named by the actor's rules already).
fn several_rules(a: &ActorFindings) -> bool {
    a.targets.windows(2).any(|w| w[0].rule != w[1].rule)
}

/// The targets cell: with several rules, each rule's name before its targets.
fn targets_cell(a: &ActorFindings, report: &Report) -> String {
    if !several_rules(a) {
        return listing(
            a.targets.iter().map(|t| target_text(t, report)),
            TARGETS_MAX,
        );
    }
    let groups: Vec<String> = targets_by_rule(a)
        .into_iter()
        .map(|(r, list)| {
            format!(
                "{}: {}",
                terminal_safe(&report.rules[usize::from(r)].shown_name()),
                listing(
                    list.into_iter().map(|t| target_text(t, report)),
                    TARGETS_MAX
                )
            )
        })
        .collect();
    if groups.is_empty() {
        "-".to_string()
    } else {
        groups.join("; ")
    }
}

/// `path:line` of a record, as every list of the table names it.
fn located(report: &Report, at: &At) -> String {
    format!(
        "{}:{}",
        terminal_safe(&report.inputs.path(at.input as usize)),
        at.line + 1
    )
}

fn row(a: &ActorFindings, report: &Report) -> Vec<String> {
    let mut cells = vec![
        actor_name(a),
        a.evidence.len().to_string(),
        when(&a.first_seen),
        when(&a.last_seen),
        listing(a.source_ips.iter().map(|ip| terminal_safe(ip)), IPS_MAX),
        targets_cell(a, report),
    ];
    if report.rules.len() > 1 {
        cells.insert(2, listing(rule_names(a, report).into_iter(), RULES_MAX));
    }
    cells
}

/// The names of the rules an actor's events matched, in rule order.
fn rule_names(a: &ActorFindings, report: &Report) -> Vec<String> {
    let mut rules: Vec<u16> = a.evidence.iter().map(|e| e.finding.rule).collect();
    rules.sort_unstable();
    rules.dedup();
    rules
        .into_iter()
        .map(|r| {
            let rule = &report.rules[usize::from(r)];
            let name = terminal_safe(&rule.shown_name());
            if rule.is_building_block() {
                format!("{name} [building block]")
            } else {
                name
            }
        })
        .collect()
}

/// Cuts a word to `width` characters, ending it with `…` when cut.
fn cut(word: &str, width: usize) -> String {
    if word.chars().count() <= width || width < 2 {
        return word.to_string();
    }
    let mut s: String = word.chars().take(width - 1).collect();
    s.push('…');
    s
}

/// Wraps a line at spaces to `width` columns; continuation lines are indented four
/// more than the line. A single word wider than a line is cut with `…`, never split.
fn fit(line: &str, width: Option<usize>) -> String {
    let Some(w) = width else {
        return line.to_string();
    };
    if line.chars().count() <= w {
        return line.to_string();
    }
    let text = line.trim_start();
    let lead = line.len() - text.len();
    let more = (lead + 4).min(w / 2);
    let mut lines: Vec<String> = Vec::new();
    let mut current = String::new();
    let mut len = 0;
    let mut room = w.saturating_sub(lead).max(1);
    for word in text.split(' ') {
        let mut piece = cut(word, room);
        if len > 0 && len + 1 + piece.chars().count() > room {
            lines.push(std::mem::take(&mut current).trim_end().to_string());
            len = 0;
            room = w - more;
            piece = cut(word, room);
        }
        if len > 0 {
            current.push(' ');
            len += 1;
        }
        len += piece.chars().count();
        current.push_str(&piece);
    }
    lines.push(current.trim_end().to_string());
    let mut out = String::new();
    for (i, l) in lines.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        out.push_str(&" ".repeat(if i == 0 { lead } else { more }));
        out.push_str(l);
    }
    out
}

impl Table {
    fn line(&self, out: &mut dyn Write, text: &str) -> io::Result<()> {
        writeln!(out, "{}", fit(text, self.width))
    }

    /// Each completed EQL sequence with every step's record, after the actors.
    fn sequences(&self, report: &Report, out: &mut dyn Write) -> io::Result<()> {
        let found: Vec<_> = report
            .actors
            .iter()
            .flat_map(|a| &a.evidence)
            .map(|e| (&e.finding, report.sequence_items(&e.finding)))
            .filter(|(_, items)| !items.is_empty())
            .collect();
        if found.is_empty() {
            return Ok(());
        }
        writeln!(out)?;
        writeln!(out, "SEQUENCES")?;
        for (f, items) in found.iter().take(LIST_MAX_SEQUENCES) {
            let rule = report
                .rules
                .get(usize::from(f.rule))
                .map_or("?", |r| r.name.as_str());
            self.line(
                out,
                &format!(
                    "{}  {}",
                    terminal_safe(f.actor.as_deref().unwrap_or("(no actor)")),
                    terminal_safe(rule)
                ),
            )?;
            for (name, text) in items {
                self.line(out, &format!("  {name}: {}", terminal_safe(text)))?;
            }
        }
        if found.len() > LIST_MAX_SEQUENCES {
            writeln!(
                out,
                "… {} more sequences — see the JSON (--format json)",
                found.len() - LIST_MAX_SEQUENCES
            )?;
        }
        Ok(())
    }

    fn actors(&self, report: &Report, out: &mut dyn Write) -> io::Result<()> {
        let rows: Vec<Vec<String>> = report.actors.iter().map(|a| row(a, report)).collect();
        let mut header: Vec<String> = HEADER.map(String::from).to_vec();
        let last = header.len() - 1;
        if report.rules.len() > 1 {
            header.insert(2, "RULES".to_string());
            header[last + 1] = "TARGETS BY RULE (BYPASS STATE, EVENTS)".to_string();
        } else if report.items.iter().all(|i| i.flag.is_none()) {
            header[last] = "TARGETS (EVENTS)".to_string();
        }
        let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
        for r in &rows {
            for (w, cell) in widths.iter_mut().zip(r) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let total: usize = widths.iter().sum::<usize>() + 2 * (widths.len() - 1);
        if self.width.is_none_or(|w| total <= w) {
            let line = |cells: &[String]| {
                let mut s = String::new();
                for (i, (cell, &w)) in cells.iter().zip(&widths).enumerate() {
                    if i == cells.len() - 1 {
                        s.push_str(cell);
                    } else if i == 1 {
                        let _ = write!(s, "{cell:>w$}  ");
                    } else {
                        let _ = write!(s, "{cell:<w$}  ");
                    }
                }
                s
            };
            writeln!(out, "{}", line(&header))?;
            for r in &rows {
                writeln!(out, "{}", line(r))?;
            }
            return Ok(());
        }
        // Narrow: one block per actor, one item per line.
        for a in &report.actors {
            self.line(
                out,
                &format!(
                    "{}  {} events, {} .. {}",
                    actor_name(a),
                    a.evidence.len(),
                    when(&a.first_seen),
                    when(&a.last_seen)
                ),
            )?;
            let ips: Vec<String> = a.source_ips.iter().map(|ip| terminal_safe(ip)).collect();
            if report.rules.len() > 1 {
                self.line(
                    out,
                    &format!("  rules:      {}", rule_names(a, report).join("; ")),
                )?;
            }
            self.line(
                out,
                &format!(
                    "  source IPs: {}",
                    if ips.is_empty() {
                        "-".into()
                    } else {
                        ips.join(", ")
                    }
                ),
            )?;
            let label = |i: usize| {
                if i == 0 {
                    "  targets:    "
                } else {
                    "              "
                }
            };
            if !several_rules(a) {
                for (i, t) in a.targets.iter().enumerate() {
                    self.line(out, &format!("{}{}", label(i), target_text(t, report)))?;
                }
            } else {
                // Which rule hit which target: each rule's name, then its targets.
                for (i, (r, list)) in targets_by_rule(a).into_iter().enumerate() {
                    let name = terminal_safe(&report.rules[usize::from(r)].shown_name());
                    self.line(out, &format!("{}{name}", label(i)))?;
                    for t in list {
                        self.line(out, &format!("                {}", target_text(t, report)))?;
                    }
                }
            }
        }
        Ok(())
    }

    fn verdict(&self, report: &Report, inv: &Investigation, out: &mut dyn Write) -> io::Result<()> {
        let on: Vec<&Account> = inv
            .accounts
            .iter()
            .filter(|a| a.state_at_end == State::On)
            .collect();
        let allowed = on.iter().filter(|a| a.allowed.is_some()).count();
        let end = crate::time::end_of(&report.window);
        match on.len() {
            0 => writeln!(out, "VERDICT: no account has mailbox audit bypass ON {end}")?,
            n => writeln!(
                out,
                "VERDICT: {n} account{} mailbox audit bypass ON {end}{}",
                if n == 1 { " has" } else { "s have" },
                if allowed > 0 {
                    format!(" ({allowed} allowlisted)")
                } else {
                    String::new()
                }
            )?,
        }
        for a in on.iter().take(LIST_MAX) {
            let p = a.periods.last();
            let mut text = format!(
                "  {}  since {}, set by {}",
                terminal_safe(&a.identity),
                p.map_or("-".into(), |p| when(&p.start)),
                p.and_then(|p| p.set_by.as_deref())
                    .map_or("-".into(), terminal_safe)
            );
            if let Some(b) = &a.blind_spot {
                let _ = write!(
                    text,
                    "; mailbox audit records {} before, {} during",
                    b.before, b.during
                );
                let other: u64 = b.other_during.iter().map(|(_, s)| s.count).sum();
                let _ = write!(text, "; {other} other records while bypassed");
            }
            if let Some(i) = a.allowed {
                let _ = write!(
                    text,
                    "  [allowed: {}]",
                    terminal_safe(&report.allowlist.entries[i].reason)
                );
            }
            self.line(out, &text)?;
        }
        if on.len() > LIST_MAX {
            writeln!(out, "  +{} more — see the JSON", on.len() - LIST_MAX)?;
        }
        if on.iter().any(|a| a.allowed.is_none()) {
            self.line(
                out,
                "  next: confirm, remove and review each account: the commands are under BYPASS PERIODS",
            )?;
        }
        Ok(())
    }

    fn periods(&self, report: &Report, inv: &Investigation, out: &mut dyn Write) -> io::Result<()> {
        if inv.accounts.is_empty() {
            return Ok(());
        }
        writeln!(out, "\nBYPASS PERIODS")?;
        for a in inv.accounts.iter().take(LIST_MAX) {
            let mut head = format!(
                "  {} [{}]",
                terminal_safe(&a.identity),
                state_name(a.state_at_end)
            );
            if a.spellings.len() > 1 || a.spellings.first().is_some_and(|s| *s != a.identity) {
                let spellings: Vec<String> = a.spellings.iter().map(|s| terminal_safe(s)).collect();
                let _ = write!(head, " spelled {}", spellings.join(" | "));
            }
            if let Some(i) = a.allowed {
                let _ = write!(
                    head,
                    "  [allowed: {}]",
                    terminal_safe(&report.allowlist.entries[i].reason)
                );
            }
            self.line(out, &head)?;
            for p in &a.periods {
                self.line(out, &format!("    {}", period_text(p, report)))?;
            }
            if a.periods.is_empty() {
                let at: Vec<String> = a
                    .changes
                    .iter()
                    .map(|c| located(report, &c.finding.at))
                    .collect();
                self.line(
                    out,
                    &format!(
                        "    {} change(s), direction unknown: {}",
                        a.changes.len(),
                        listing(at.into_iter(), LIST_MAX)
                    ),
                )?;
            }
            let steps = crate::next::bypass(a, crate::next::spelled(a), &report.window);
            self.line(
                out,
                &format!("    next: {}", terminal_safe(&crate::next::line(&steps))),
            )?;
        }
        if inv.accounts.len() > LIST_MAX {
            writeln!(
                out,
                "  +{} more accounts — see the JSON",
                inv.accounts.len() - LIST_MAX
            )?;
        }
        Ok(())
    }

    fn attempts(
        &self,
        report: &Report,
        inv: &Investigation,
        out: &mut dyn Write,
    ) -> io::Result<()> {
        if inv.attempts.is_empty() {
            return Ok(());
        }
        writeln!(out, "\nFAILED ATTEMPTS ({})", inv.attempts.len())?;
        let items = &report.items[usize::from(inv.rule)];
        let item = |f: &ualhunt_engine::findings::Finding, index: Option<usize>| {
            f.field(index)
                .map(Value::to_string)
                .unwrap_or_else(|| "-".into())
        };
        for f in inv.attempts.iter().take(LIST_MAX).map(|e| &e.finding) {
            self.line(
                out,
                &format!(
                    "  {}  {} -> {}  ({})  {}",
                    when(&f.timestamp),
                    terminal_safe(f.actor.as_deref().unwrap_or("(none)")),
                    terminal_safe(&item(f, items.target)),
                    terminal_safe(&item(f, items.result_status)),
                    located(report, &f.at)
                ),
            )?;
        }
        if inv.attempts.len() > LIST_MAX {
            writeln!(
                out,
                "  +{} more — see the JSON",
                inv.attempts.len() - LIST_MAX
            )?;
        }
        Ok(())
    }

    /// The other rules' matches by the people involved in the bypass.
    fn related(&self, report: &Report, inv: &Investigation, out: &mut dyn Write) -> io::Result<()> {
        if inv.related.is_empty() {
            return Ok(());
        }
        writeln!(
            out,
            "\nOTHER RULES BY THE PEOPLE INVOLVED ({})",
            inv.related.len()
        )?;
        for r in inv.related.iter().take(LIST_MAX) {
            let f = &r.finding;
            let rule = &report.rules[usize::from(f.rule)];
            let role = match r.role {
                ualhunt_engine::analysis::bypass::Role::Changer => "changer",
                ualhunt_engine::analysis::bypass::Role::Bypassed => "while bypassed",
            };
            self.line(
                out,
                &format!(
                    "  {}  {} ({role})  {} [{}]  {}",
                    when(&f.timestamp),
                    terminal_safe(f.actor.as_deref().unwrap_or("(none)")),
                    terminal_safe(&rule.shown_name()),
                    rule.severity,
                    located(report, &f.at)
                ),
            )?;
        }
        if inv.related.len() > LIST_MAX {
            writeln!(
                out,
                "  … {} more (JSON has all)",
                inv.related.len() - LIST_MAX
            )?;
        }
        Ok(())
    }

    fn context(&self, inv: &Investigation, out: &mut dyn Write) -> io::Result<()> {
        let Some(list) = &inv.actor_context else {
            return Ok(());
        };
        if list.is_empty() {
            return Ok(());
        }
        let hours = list.first().map_or(0, |c| c.window.num_hours());
        writeln!(out, "\nACTOR CONTEXT (±{hours}h around each change)")?;
        for c in list.iter().take(LIST_MAX) {
            let records: u64 = c.operations.iter().map(|(_, s)| s.count).sum();
            let mut ops: Vec<&(
                ualhunt_engine::analysis::context::OpKey,
                ualhunt_engine::analysis::context::OpStat,
            )> = c.operations.iter().collect();
            ops.sort_by(|a, b| b.1.count.cmp(&a.1.count).then_with(|| a.0.cmp(&b.0)));
            let top: Vec<String> = ops
                .iter()
                .take(5)
                .map(|(k, s)| format!("{} x{}", terminal_safe(&k.1), s.count))
                .collect();
            self.line(
                out,
                &format!(
                    "  {}: {records} records ({}), IPs {}",
                    terminal_safe(&c.spelled),
                    if top.is_empty() {
                        "-".into()
                    } else {
                        top.join(", ")
                    },
                    listing(c.source_ips.iter().map(|ip| terminal_safe(ip)), IPS_MAX)
                ),
            )?;
            for t in c.tampering.iter().take(LIST_MAX) {
                self.line(
                    out,
                    &format!(
                        "    audit tampering: {}  {}",
                        rfc3339(&t.timestamp),
                        terminal_safe(t.command_line.as_deref().unwrap_or(&t.operation))
                    ),
                )?;
            }
        }
        Ok(())
    }

    fn coverage(&self, report: &Report, out: &mut dyn Write) -> io::Result<()> {
        let c = &report.coverage;
        writeln!(out)?;
        self.line(
            out,
            &format!(
                "COVERAGE: {} .. {}, {} records on {} days, {} Exchange admin records: {}",
                when(&c.first),
                when(&c.last),
                c.records,
                c.days.len(),
                c.exchange_admin_records,
                if c.conclusive {
                    "conclusive"
                } else {
                    "INCONCLUSIVE"
                }
            ),
        )?;
        for r in &c.reasons {
            self.line(out, &format!("  {}", terminal_safe(r)))?;
        }
        if !c.gap_days.is_empty() && c.reasons.is_empty() {
            self.line(out, &format!("  gap days: {}", summarize_days(&c.gap_days)))?;
        }
        if let Some(note) = repeated_records(report) {
            self.line(out, &format!("  {note}"))?;
        }
        Ok(())
    }
}

/// What the coverage says of records the inputs repeat, when rule matches showed some:
/// the coverage counts records as read (telling copies apart would cost the first pass
/// an id per record), while the findings drop a repeated match.
pub(crate) fn repeated_records(report: &Report) -> Option<String> {
    (report.duplicates > 0).then(|| {
        format!(
            "records are counted as read: {} rule match{} repeated an earlier one's record id \
             (overlapping exports?), so the inputs repeat records and the counts above \
             include every copy",
            report.duplicates,
            if report.duplicates == 1 { "" } else { "es" }
        )
    })
}

fn state_name(s: State) -> &'static str {
    match s {
        State::On => "ON at end",
        State::Off => "off at end",
        State::Unknown => "state unknown",
    }
}

fn period_text(p: &Period, report: &Report) -> String {
    let start = if p.predates_data {
        "(before the data)".to_string()
    } else {
        when(&p.start)
    };
    let end = match crate::time::open_as_of(p, &report.window) {
        Some(until) => format!("OPEN at {} (--until)", rfc3339(&until)),
        None if p.open => "OPEN".to_string(),
        None => when(&p.end),
    };
    let mut s = format!("{start} -> {end}");
    if let Some(by) = &p.set_by {
        let _ = write!(s, "  set by {}", terminal_safe(by));
        if let Some(at) = &p.start_at {
            let _ = write!(s, " ({})", located(report, at));
        }
    }
    if let Some(by) = &p.ended_by {
        let _ = write!(s, "  ended by {}", terminal_safe(by));
        if let Some(at) = &p.end_at {
            let _ = write!(s, " ({})", located(report, at));
        }
    }
    if let Some([b, d, a]) = p.mailbox_audit {
        let _ = write!(s, "  mailbox audit {b} before / {d} during / {a} after");
    }
    s
}

impl Table {
    /// Several rules: one line per rule that fired (severity first), then how many
    /// did not and which could not run.
    fn rules(&self, report: &Report, out: &mut dyn Write) -> io::Result<()> {
        let fired = report.fired_rules();
        self.line(
            out,
            &format!(
                "rules: {} run, {} fired, {} not run (see `ualhunt rules`)",
                report.rules.len(),
                fired.len(),
                report.not_run.len()
            ),
        )?;
        if fired.is_empty() {
            return Ok(());
        }
        let rows: Vec<[String; 4]> = fired
            .iter()
            .map(|s| {
                let r = &report.rules[usize::from(s.rule)];
                let events = if s.allowed > 0 {
                    format!("{} ({} allowed)", s.events, s.allowed)
                } else {
                    s.events.to_string()
                };
                let mut name = terminal_safe(&r.shown_name());
                if r.is_building_block() {
                    name.push_str(" [building block]");
                }
                [
                    r.severity.to_uppercase(),
                    events,
                    s.actors.to_string(),
                    name,
                ]
            })
            .collect();
        let header = ["SEVERITY", "EVENTS", "ACTORS", "RULE"].map(String::from);
        let mut widths = header.clone().map(|h| h.chars().count());
        for r in &rows {
            for (w, cell) in widths.iter_mut().zip(r) {
                *w = (*w).max(cell.chars().count());
            }
        }
        for cells in std::iter::once(&header).chain(&rows) {
            let line = format!(
                "  {:<a$}  {:>b$}  {:>c$}  {}",
                cells[0],
                cells[1],
                cells[2],
                cells[3],
                a = widths[0],
                b = widths[1],
                c = widths[2]
            );
            self.line(out, &line)?;
        }
        let blocks = fired
            .iter()
            .filter(|s| report.rules[usize::from(s.rule)].is_building_block())
            .count();
        if blocks > 0 {
            self.line(
                out,
                &format!(
                    "  [building block]: a signal for other rules (Elastic's building_block_type); {}",
                    if report.building_blocks {
                        "counted in the verdict and the exit status (--building-blocks)"
                    } else {
                        "not counted in the verdict nor in the exit status (--building-blocks counts it)"
                    }
                ),
            )?;
        }
        let guides: Vec<String> = fired
            .iter()
            .map(|s| &report.rules[usize::from(s.rule)])
            .filter(|r| !r.is_bypass() && r.note.is_some())
            .map(|r| terminal_safe(&r.name))
            .collect();
        if !guides.is_empty() {
            self.line(
                out,
                &format!(
                    "  next: follow each rule's investigation guide, in the HTML report (--format html, under the rule) or its file's `note`: {}",
                    listing(guides.into_iter(), RULES_MAX)
                ),
            )?;
        }
        Ok(())
    }
}

impl Exporter for Table {
    fn write(&self, report: &Report, out: &mut dyn Write) -> io::Result<()> {
        if report.rules.len() == 1 && report.not_run.is_empty() {
            let r = &report.rules[0];
            self.line(
                out,
                &format!(
                    "rule: {} [{} / risk {}] {}",
                    terminal_safe(&r.shown_name()),
                    r.severity,
                    r.risk_score,
                    r.id
                ),
            )?;
        } else {
            self.rules(report, out)?;
        }
        for inv in &report.investigations {
            self.verdict(report, inv, out)?;
        }
        // Where the verdict is read: a "no findings" that cannot be trusted says so.
        let c = &report.coverage;
        if !c.conclusive && !c.reasons.is_empty() {
            let reasons: Vec<String> = c.reasons.iter().map(|r| terminal_safe(r)).collect();
            self.line(
                out,
                &format!("COVERAGE INCONCLUSIVE: {}", reasons.join("; ")),
            )?;
        }
        for inv in &report.investigations {
            self.periods(report, inv, out)?;
            self.attempts(report, inv, out)?;
        }
        writeln!(out)?;
        if report.actors.is_empty() {
            writeln!(out, "no findings")?;
        } else {
            self.actors(report, out)?;
            self.sequences(report, out)?;
        }
        for inv in &report.investigations {
            self.context(inv, out)?;
            self.related(report, inv, out)?;
        }
        self.coverage(report, out)?;
        let c = &report.counts;
        let allowed = report.events() - report.unallowed_events();
        writeln!(out)?;
        let blocks = report
            .actors
            .iter()
            .flat_map(|a| &a.evidence)
            .filter(|e| !report.counts(&e.finding))
            .count();
        let blocks = if blocks > 0 {
            format!(" {blocks} of building-block rules, not counted (--building-blocks);")
        } else {
            String::new()
        };
        writeln!(
            out,
            "{} events by {} actors ({} allowlisted);{blocks} {} failed attempts;",
            report.events(),
            report.actors.len(),
            allowed,
            report.attempts(),
        )?;
        let held_by = |pick: &dyn Fn(&RuleMeta) -> bool| -> Option<u64> {
            let rules = report.rules.iter().zip(&report.held_back);
            let picked: Vec<u64> = rules.filter(|(r, _)| pick(r)).map(|(_, h)| *h).collect();
            (!picked.is_empty()).then(|| picked.iter().sum())
        };
        let mut held = String::new();
        if let Some(n) = held_by(&|r| r.alerting.is_some()) {
            // Which rules held them back, the most first.
            let mut by_rule: Vec<(u64, &str)> = report
                .rules
                .iter()
                .zip(&report.held_back)
                .filter(|(r, h)| r.alerting.is_some() && **h > 0)
                .map(|(r, h)| (*h, r.name.as_str()))
                .collect();
            by_rule.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(b.1)));
            let mut named: Vec<String> = by_rule
                .iter()
                .take(3)
                .map(|(h, name)| format!("{} {h}", terminal_safe(name)))
                .collect();
            if by_rule.len() > 3 {
                named.push(format!("+{} more rules", by_rule.len() - 3));
            }
            let which = if named.is_empty() {
                String::new()
            } else {
                format!(" ({})", named.join(", "))
            };
            held.push_str(&format!(
                " {n} matches held back by new-terms/threshold/ES|QL alerting{which};"
            ));
        }
        if let Some(n) = held_by(&|r| r.is_sequence()) {
            held.push_str(&format!(" {n} step matches in no completed sequence;"));
        }
        writeln!(
            out,
            "{} duplicates dropped; {} outside --since/--until;{held}",
            report.duplicates, report.outside_window,
        )?;
        writeln!(
            out,
            "scanned {} files, {} bytes, {} lines ({} candidates, {} malformed), {} errors",
            report.files,
            report.bytes,
            c.lines,
            c.candidates,
            c.malformed,
            report.errors.len()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_wrap_at_spaces_and_never_split_words() {
        let line = "  svc-backup@contoso.onmicrosoft.com  since 2024-01-03T09:00:00Z, set by it-helpdesk@contoso.onmicrosoft.com";
        let wrapped = fit(line, Some(50));
        for l in wrapped.lines() {
            assert!(l.chars().count() <= 50, "{l:?}");
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        let back: Vec<&str> = wrapped.split_whitespace().collect();
        assert_eq!(words, back);
        assert!(
            wrapped.lines().nth(1).unwrap().starts_with("      "),
            "{wrapped}"
        );
        let long = format!("  {}", "x".repeat(80));
        assert_eq!(fit(&long, Some(40)).chars().count(), 40);
        assert_eq!(fit("short", Some(40)), "short");
    }
}
