//! `--format html`: one self-contained page a responder can mail or attach to a ticket.
//!
//! No script, no network: styles are inline, charts are inline SVG, and a strict
//! Content-Security-Policy (`default-src 'none'`) forbids the page to load anything.
//! It reads on a screen, on a phone (charts scroll sideways) and on paper (print CSS).
//! Every string that came from an archive goes through [`Esc`] or [`Txt`]: `& < > " '`
//! become entities and control, bidi and zero-width characters become visible `\u{..}`
//! escapes, so a crafted actor name stays inert text. Size is bounded: tables stop at
//! [`ROWS_MAX`] rows, timelines at [`TIMELINES_MAX`] and any one string at
//! `escape::TEXT_MAX` characters, each saying how much more the JSON holds, so hundreds of
//! thousands of events still make a page a browser opens.
//!
//! Order of the page: verdict, coverage (with records per day), one timeline per
//! bypassed account with its next steps, failed attempts, actors and their context, the
//! evidence (with each finding's next step), the rules with their MITRE ATT&CK mapping
//! and, for each rule that fired, its investigation guide, the scan accounting.
//!
//! The verdict speaks of the bypass investigation's own findings; other rules that
//! fired are counted apart, and building-block rules (signals for other rules) are
//! marked everywhere and left out of the verdict unless `--building-blocks`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::{self, Write as _};
use std::io::{self, Write};

use chrono::{DateTime, NaiveDate, Utc};

use crate::escape::{Brk, Esc, Txt};
use crate::exporter::Exporter;
use crate::markdown;
use crate::next;
use crate::svg::{self, Axis, Mark, MarkKind, Span, Timeline};
use crate::time::Rfc3339;
use ualhunt_engine::Report;
use ualhunt_engine::allow::{Entry, key};
use ualhunt_engine::analysis::Change;
use ualhunt_engine::analysis::actors::ActorFindings;
use ualhunt_engine::analysis::bypass::{Account, ActorContext, Investigation, Period, State};
use ualhunt_engine::analysis::context::{OpKey, OpStat};
use ualhunt_engine::coverage::verdict::summarize_days;
use ualhunt_engine::findings::{Finding, Value};
use ualhunt_engine::rule::RuleMeta;

/// The HTML exporter.
pub struct Html;

/// At most this many rows per table; the rest is counted and left to the JSON.
pub const ROWS_MAX: usize = 500;
/// At most this many account timelines.
pub const TIMELINES_MAX: usize = 30;
/// At most this many rows in the tables under one timeline or one actor's context.
const SUB_ROWS_MAX: usize = 20;
/// At most this many operations per table (most records first).
const OPS_MAX: usize = 10;
/// At most this many actors' context blocks.
const CONTEXT_MAX: usize = 50;
/// At most this many items of an inline list (source IPs, targets, spellings).
const LIST_MAX: usize = 12;

/// Writes to a `String`, which cannot fail.
macro_rules! w {
    ($dst:expr, $($arg:tt)*) => {{
        // Writing into a String never fails.
        let _ = write!($dst, $($arg)*);
    }};
}

impl Exporter for Html {
    fn write(&self, report: &Report, out: &mut dyn Write) -> io::Result<()> {
        out.write_all(render(report).as_bytes())
    }
}

/// `1234567` → `1,234,567`.
fn num(n: impl Into<u64>) -> String {
    let digits = n.into().to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Bytes in binary units.
fn size(bytes: u64) -> String {
    let units = ["bytes", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < units.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} bytes")
    } else {
        format!("{v:.1} {}", units[u])
    }
}

fn when(t: &Option<DateTime<Utc>>) -> String {
    t.as_ref()
        .map_or_else(|| "-".to_string(), |t| Rfc3339::new(t).as_str().to_string())
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{} {}", num(n as u64), if n == 1 { one } else { many })
}

/// A finding's evidence item (an index from its rule's `Items`) as text, `-` when it
/// has none.
fn item_text(f: &Finding, index: Option<usize>) -> String {
    f.field(index)
        .map_or_else(|| "-".to_string(), Value::to_string)
}

/// A table cell, labelled for the phone layout (where each row becomes a card).
fn td(s: &mut String, label: &str, class: &str, body: impl fmt::Display) {
    w!(s, r#"<td data-l="{label}" class="{class}">{body}</td>"#);
}

/// A cell of archive text (monospace, wraps at separators).
fn cell(s: &mut String, label: &str, text: &str) {
    td(s, label, "mono wrap", Brk(text));
}

/// A cell with a time.
fn time_cell(s: &mut String, label: &str, t: &Option<DateTime<Utc>>) {
    td(s, label, "t", when(t));
}

/// A cell with a count.
fn num_cell(s: &mut String, label: &str, n: Option<u64>) {
    match n {
        Some(n) => td(s, label, "n", num(n)),
        None => td(s, label, "n muted", "?"),
    }
}

/// A cell with a command line (given room on a wide screen).
fn cmd_cell(s: &mut String, text: &str) {
    td(s, "Command line", "mono wrap cmd", Brk(text));
}

/// A cell with the record's actor, and its source IP under it.
fn actor_cell(s: &mut String, f: &Finding) {
    w!(
        s,
        r#"<td data-l="Actor" class="mono wrap">{}"#,
        Brk(f.actor.as_deref().unwrap_or("(none)"))
    );
    if let Some(ip) = f.source_ip.as_deref() {
        w!(s, r#"<br><span class="rid">from {}</span>"#, Brk(ip));
    }
    s.push_str("</td>");
}

/// A cell with the record's input and line, and its record id under it.
fn where_cell(s: &mut String, report: &Report, f: &Finding) {
    w!(
        s,
        r#"<td data-l="Where" class="mono wrap">{}"#,
        Brk(&location(report, f))
    );
    if let Some(id) = f.record_id.as_deref() {
        w!(s, r#"<br><span class="rid">{}</span>"#, Brk(id));
    }
    // A completed EQL sequence: what it joined and every step's record.
    for (name, text) in report.sequence_items(f) {
        w!(
            s,
            r#"<br><span class="rid">{}: {}</span>"#,
            Esc(name),
            Brk(text)
        );
    }
    s.push_str("</td>");
}

fn location(report: &Report, f: &Finding) -> String {
    let i = f.at.input as usize;
    let path = if i < report.inputs.len() {
        report.inputs.path(i)
    } else {
        "?".into()
    };
    format!("{path}:{}", f.at.line + 1)
}

/// The row that says how many rows a capped table left out.
fn more_row(s: &mut String, cols: usize, total: usize, shown: usize, what: &str) {
    if total > shown {
        w!(
            s,
            r#"<tr class="more"><td colspan="{cols}">… {} more {what} — see the JSON (<code>--format json</code>)</td></tr>"#,
            num((total - shown) as u64)
        );
    }
}

/// An inline list, capped, each item escaped.
fn list<'a>(items: impl ExactSizeIterator<Item = &'a str>, max: usize) -> String {
    let total = items.len();
    if total == 0 {
        return "-".to_string();
    }
    let mut out = String::new();
    for (i, t) in items.take(max).enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        w!(out, "{}", Brk(t));
    }
    if total > max {
        w!(
            out,
            r#" <span class="muted">+{} more</span>"#,
            num((total - max) as u64)
        );
    }
    out
}

fn change_badge(c: Change) -> &'static str {
    match c {
        Change::Enable => r#"<span class="badge on">enable</span>"#,
        Change::Disable => r#"<span class="badge off">disable</span>"#,
        Change::Unknown => r#"<span class="badge unk">unknown</span>"#,
    }
}

/// The state badge; `until`: the state is at `--until`, not at the end of the data.
fn state_badge(s: State, until: bool) -> &'static str {
    match (s, until) {
        (State::On, false) => r#"<span class="badge on">ON at end of data</span>"#,
        (State::Off, false) => r#"<span class="badge off">off at end of data</span>"#,
        (State::On, true) => r#"<span class="badge on">ON at end of window</span>"#,
        (State::Off, true) => r#"<span class="badge off">off at end of window</span>"#,
        (State::Unknown, _) => r#"<span class="badge unk">state unknown</span>"#,
    }
}

fn allowed_badge(e: &Entry) -> String {
    let mut tip = format!("allowlist entry {}", e.account);
    if let Some(o) = &e.owner {
        w!(tip, "; owner {o}");
    }
    if let Some(x) = e.expires {
        w!(tip, "; expires {x}");
    }
    format!(
        r#"<span class="badge allowed" title="{}">allowlisted: {}</span>"#,
        Esc(&tip),
        Txt(&e.reason)
    )
}

/// The findings of the rules one picks: events, allowlisted events, distinct actors,
/// rules that fired.
#[derive(Default)]
struct Tally {
    events: usize,
    allowed: usize,
    actors: usize,
    rules: usize,
}

fn tally(report: &Report, pick: impl Fn(&RuleMeta) -> bool) -> Tally {
    let mut t = Tally::default();
    let mut rules = BTreeSet::new();
    for a in &report.actors {
        let mut any = false;
        for e in &a.evidence {
            let rule = e.finding.rule;
            if !report.rules.get(usize::from(rule)).is_some_and(&pick) {
                continue;
            }
            any = true;
            t.events += 1;
            t.allowed += usize::from(e.allowed.is_some());
            rules.insert(rule);
        }
        t.actors += usize::from(any);
    }
    t.rules = rules.len();
    t
}

/// The bypass investigation's own findings.
fn bypass_tally(report: &Report) -> Tally {
    tally(report, RuleMeta::is_bypass)
}

/// Other rules' findings that count for the verdict.
fn other_tally(report: &Report) -> Tally {
    tally(report, |r| {
        !r.is_bypass() && (report.building_blocks || !r.is_building_block())
    })
}

/// Building-block rules' findings left out of the verdict.
fn building_tally(report: &Report) -> Tally {
    tally(report, |r| {
        !r.is_bypass() && !report.building_blocks && r.is_building_block()
    })
}

/// The mark of a building-block rule.
const BUILDING_BLOCK: &str = r#"<span class="badge bb" title="Elastic building block: a signal for other rules, not an alert">building block</span>"#;

/// A rule's name as shown (with its author), and its building-block mark.
fn rule_name(r: &RuleMeta) -> String {
    let mut out = Txt(&r.shown_name()).to_string();
    if r.is_building_block() {
        out.push(' ');
        out.push_str(BUILDING_BLOCK);
    }
    out
}

/// Renders the whole page.
pub fn render(report: &Report) -> String {
    let mut s = String::with_capacity(64 << 10);
    let inv = report.investigations.first();
    head(&mut s, report, inv);
    s.push_str("<main>\n");
    nav(
        &mut s,
        inv.is_some(),
        report.rules.len() > 1 || !report.not_run.is_empty(),
    );
    verdict(&mut s, report, inv);
    coverage(&mut s, report);
    if let Some(inv) = inv {
        timelines(&mut s, report, inv);
        attempts(&mut s, report, inv);
    }
    actors(&mut s, report);
    if let Some(inv) = inv {
        actor_context(&mut s, inv);
    }
    evidence(&mut s, report);
    rules(&mut s, report);
    scan(&mut s, report);
    w!(
        s,
        "</main>\n<footer>Written by ualhunt {}. This page is a summary bounded in size; \
         the JSON output (<code>--format json</code>) is the complete record.</footer>\n</body>\n</html>\n",
        env!("CARGO_PKG_VERSION")
    );
    s
}

/// The accounts with the bypass on at the end of the data.
fn on_accounts(inv: &Investigation) -> Vec<&Account> {
    let mut on: Vec<&Account> = inv
        .accounts
        .iter()
        .filter(|a| a.state_at_end == State::On)
        .collect();
    on.sort_by_key(|a| a.allowed.is_some());
    on
}

fn verdict_line(report: &Report, inv: Option<&Investigation>) -> String {
    match inv {
        Some(inv) => {
            let on = on_accounts(inv);
            let allowed = on.iter().filter(|a| a.allowed.is_some()).count();
            let end = crate::time::end_of(&report.window);
            match on.len() {
                0 => format!("No account has mailbox audit bypass ON {end}"),
                n => format!(
                    "{} mailbox audit bypass ON {end}{}",
                    if n == 1 {
                        "1 account has".to_string()
                    } else {
                        format!("{} accounts have", num(n as u64))
                    },
                    if allowed > 0 {
                        format!(" ({} allowlisted)", num(allowed as u64))
                    } else {
                        String::new()
                    }
                ),
            }
        }
        None => {
            let t = other_tally(report);
            let bb = building_tally(report);
            if t.events == 0 && bb.events > 0 {
                format!(
                    "No alert; {} of building-block rules",
                    plural(bb.events, "signal", "signals")
                )
            } else {
                format!(
                    "{} by {}",
                    plural(t.events, "event", "events"),
                    plural(t.actors, "actor", "actors")
                )
            }
        }
    }
}

/// Several rules: those that fired (severity first) with their events and actors, and
/// the rules that could not run, with why.
fn rule_summary(s: &mut String, report: &Report) {
    let fired = report.fired_rules();
    w!(
        s,
        r#"<section id="rules"><h2>Rules</h2><p>{} rules run, {} fired, {} not run.</p>"#,
        report.rules.len(),
        fired.len(),
        report.not_run.len()
    );
    let blocks = report
        .rules
        .iter()
        .filter(|r| r.is_building_block())
        .count();
    if blocks > 0 {
        w!(
            s,
            r#"<p class="muted">{} of them {} (Elastic's <code>building_block_type</code>): signals for other rules, marked {BUILDING_BLOCK}; {}.</p>"#,
            num(blocks as u64),
            if blocks == 1 {
                "is a building block"
            } else {
                "are building blocks"
            },
            if report.building_blocks {
                "counted in the verdict and the exit status (<code>--building-blocks</code>)"
            } else {
                "not counted in the verdict nor in the exit status (<code>--building-blocks</code> counts them)"
            }
        );
    }
    if !fired.is_empty() {
        s.push_str(concat!(
            r#"<div class="scroll"><table><thead><tr><th>Severity</th><th class="n">Events</th>"#,
            r#"<th class="n">Actors</th><th>Rule</th></tr></thead><tbody>"#
        ));
        for sum in &fired {
            let r = &report.rules[usize::from(sum.rule)];
            s.push_str("<tr>");
            cell(s, "Severity", &r.severity);
            td(s, "Events", "n", sum.events);
            td(s, "Actors", "n", sum.actors);
            let guide = if r.note.is_some() {
                format!(
                    r##" · <a href="#guide-{}">investigation guide</a>"##,
                    sum.rule
                )
            } else {
                String::new()
            };
            w!(
                s,
                r##"<td data-l="Rule"><a class="rule" href="#rule-{}">{}</a>{guide}</td>"##,
                sum.rule,
                rule_name(r)
            );
            s.push_str("</tr>");
        }
        s.push_str("</tbody></table></div>");
    }
    if !report.not_run.is_empty() {
        s.push_str("<h3>Not run</h3><ul>");
        for n in &report.not_run {
            w!(
                s,
                "<li>{} ({} / {}): {}</li>",
                Txt(&n.name),
                Txt(&n.rule_type),
                Txt(&n.language),
                Txt(&n.reason)
            );
        }
        s.push_str("</ul>");
    }
    s.push_str("</section>\n");
}

fn head(s: &mut String, report: &Report, inv: Option<&Investigation>) {
    let several = format!("ualhunt: {} rules", report.rules.len());
    let rule = match report.rules.as_slice() {
        [one] => one.name.as_str(),
        [] => "ualhunt",
        _ => several.as_str(),
    };
    w!(
        s,
        concat!(
            "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n",
            "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; ",
            "style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'\">\n",
            "<meta name=\"referrer\" content=\"no-referrer\">\n",
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n",
            "<meta name=\"generator\" content=\"ualhunt {version}\">\n",
            "<title>{rule}: {verdict}</title>\n<style>\n{css}</style>\n</head>\n<body>\n"
        ),
        version = env!("CARGO_PKG_VERSION"),
        rule = Esc(rule),
        verdict = Esc(&verdict_line(report, inv)),
        css = CSS
    );
    s.push_str("<header class=\"top\"><div class=\"in\">");
    match report.rules.as_slice() {
        [r] => {
            w!(s, "<h1>{}</h1>", Txt(&r.shown_name()));
            w!(
                s,
                r#"<p class="sub">ualhunt hunt report · rule <span class="mono">{}</span> · {} / risk {}</p>"#,
                Esc(&r.id),
                Esc(&r.severity),
                r.risk_score
            );
        }
        [] => w!(s, "<h1>ualhunt</h1>"),
        rules => {
            // A pack: how many rules ran and fired, never one of them as if it were all.
            w!(s, "<h1>{} rules</h1>", num(rules.len() as u64));
            w!(
                s,
                r##"<p class="sub">ualhunt hunt report · <a href="#rules">{} run, {} fired, {} not run</a> · <a href="#rule">every rule</a></p>"##,
                num(rules.len() as u64),
                num(report.fired_rules().len() as u64),
                num(report.not_run.len() as u64)
            );
        }
    }
    let c = &report.coverage;
    w!(
        s,
        r#"<p class="sub">{} ({}) · data {} → {}"#,
        plural(report.files as usize, "input", "inputs"),
        size(report.bytes),
        when(&c.first),
        when(&c.last)
    );
    let win = &report.window;
    if !win.is_open() {
        w!(
            s,
            " · window {} → {} (<code>--since</code>/<code>--until</code>)",
            when(&win.since),
            when(&win.until)
        );
    }
    if !report.allowlist.entries.is_empty() {
        w!(
            s,
            " · allowlist of {}",
            plural(report.allowlist.entries.len(), "entry", "entries")
        );
    }
    s.push_str("</p></div></header>\n");
}

fn nav(s: &mut String, bypass: bool, several: bool) {
    s.push_str(r##"<nav><a href="#verdict">Verdict</a><a href="#coverage">Coverage</a>"##);
    if bypass {
        s.push_str(
            r##"<a href="#timelines">Timelines</a><a href="#accounts">Accounts</a><a href="#attempts">Failed attempts</a>"##,
        );
    }
    s.push_str(r##"<a href="#actors">Actors</a>"##);
    if bypass {
        s.push_str(r##"<a href="#context">Actor context</a>"##);
    }
    s.push_str(r##"<a href="#evidence">Evidence</a>"##);
    if several {
        s.push_str(r##"<a href="#rules">Rules</a><a href="#rule">Each rule</a>"##);
    } else {
        s.push_str(r##"<a href="#rule">Rule</a>"##);
    }
    s.push_str(r##"<a href="#scan">Scan</a></nav>"##);
    s.push('\n');
}

fn verdict(s: &mut String, report: &Report, inv: Option<&Investigation>) {
    let on = inv.map(on_accounts).unwrap_or_default();
    let unallowed = on.iter().any(|a| a.allowed.is_none());
    let touched = inv.is_some_and(|i| !i.accounts.is_empty() || !i.attempts.is_empty());
    let counted = report.verdict_events();
    let class = if unallowed || (inv.is_none() && counted > 0) {
        "bad"
    } else if !on.is_empty() || touched || counted > 0 {
        "warn"
    } else {
        "ok"
    };
    w!(
        s,
        r#"<section id="verdict" class="verdict {class}"><h2>Verdict</h2><p class="big">{}</p>"#,
        Esc(&verdict_line(report, inv))
    );
    // The bypass investigation's own findings; other rules' apart.
    let other = other_tally(report);
    if let Some(inv) = inv {
        let b = bypass_tally(report);
        w!(
            s,
            r#"<p class="muted">{} by {} ({} allowlisted) · {} · {} touched</p>"#,
            plural(b.events, "bypass change", "bypass changes"),
            plural(b.actors, "actor", "actors"),
            num(b.allowed as u64),
            plural(report.attempts(), "failed attempt", "failed attempts"),
            plural(inv.accounts.len(), "account", "accounts")
        );
        if other.events > 0 {
            w!(
                s,
                r##"<p><b>Other rules:</b> {} fired, {} by {} ({} allowlisted) — see <a href="#rules">Rules</a>.</p>"##,
                plural(other.rules, "rule", "rules"),
                plural(other.events, "event", "events"),
                plural(other.actors, "actor", "actors"),
                num(other.allowed as u64)
            );
        }
    } else if other.events > 0 {
        w!(
            s,
            r##"<p class="muted">{} allowlisted · from {} (see <a href="#rules">Rules</a>)</p>"##,
            num(other.allowed as u64),
            plural(other.rules, "rule", "rules")
        );
    }
    let bb = building_tally(report);
    if bb.events > 0 {
        w!(
            s,
            r#"<p class="muted">Building blocks: {} fired, {} — signals for other rules, not counted in this verdict nor in the exit status (<code>--building-blocks</code> counts them).</p>"#,
            plural(bb.rules, "rule", "rules"),
            plural(bb.events, "event", "events")
        );
    }
    if !on.is_empty() {
        // An allowlist column only when there is an allowlist.
        let allowlist = !report.allowlist.entries.is_empty();
        s.push_str(concat!(
            r#"<div class="scroll"><table><thead><tr><th>Account</th><th>ON since</th><th>Set by</th>"#,
            r#"<th class="n">Mailbox audit before</th><th class="n">during</th>"#,
            r#"<th class="n">Other records while bypassed</th>"#
        ));
        if allowlist {
            s.push_str("<th>Allowlist</th>");
        }
        s.push_str("</tr></thead><tbody>");
        for a in on.iter().take(ROWS_MAX) {
            let p = a.periods.last();
            s.push_str("<tr>");
            cell(s, "Account", &a.identity);
            let since = match p {
                Some(p) if p.predates_data => "(before the data)".to_string(),
                Some(p) => when(&p.start),
                None => "-".to_string(),
            };
            td(s, "ON since", "t", since);
            cell(
                s,
                "Set by",
                p.and_then(|p| p.set_by.as_deref()).unwrap_or("-"),
            );
            let b = a.blind_spot.as_ref();
            num_cell(s, "Mailbox audit before", b.map(|b| b.before));
            num_cell(s, "during", b.map(|b| b.during));
            num_cell(
                s,
                "Other records while bypassed",
                b.map(|b| b.other_during.iter().map(|(_, st)| st.count).sum()),
            );
            match a.allowed.and_then(|i| report.allowlist.entries.get(i)) {
                Some(e) => td(s, "Allowlist", "", allowed_badge(e)),
                None if allowlist => td(
                    s,
                    "Allowlist",
                    "",
                    r#"<span class="badge on">not allowlisted</span>"#,
                ),
                None => {}
            }
            s.push_str("</tr>");
        }
        let cols = 6 + usize::from(allowlist);
        more_row(s, cols, on.len(), on.len().min(ROWS_MAX), "accounts");
        s.push_str("</tbody></table></div>");
        s.push_str(r##"<p><b>What to do now:</b> for each account, confirm the live state, remove the bypass and review what it did unaudited — the commands are under its timeline (<a href="#accounts">Accounts</a>) and beside each change (<a href="#evidence">Evidence</a>).</p>"##);
    }
    if let Some(inv) = inv {
        let off: Vec<&str> = inv
            .accounts
            .iter()
            .filter(|a| a.state_at_end == State::Off)
            .map(|a| a.identity.as_str())
            .collect();
        if !off.is_empty() {
            w!(
                s,
                "<p>Bypassed for a while, off {}: {}</p>",
                crate::time::end_of(&report.window),
                list(off.iter().copied(), LIST_MAX)
            );
        }
        if !report.context_ran && !inv.accounts.is_empty() {
            s.push_str(
                r#"<p class="muted">The context pass did not run (<code>--no-context</code>): the blind spot and the actors' context are unknown.</p>"#,
            );
        }
    }
    if !report.errors.is_empty() {
        w!(
            s,
            r##"<p class="red"><b>{} could not be read in full</b> (see <a href="#scan">Scan</a>): this verdict covers what was read.</p>"##,
            plural(report.errors.len(), "input", "inputs")
        );
    }
    if report.counts.malformed > 0 {
        w!(
            s,
            r##"<p class="muted">{} holding the rule's literal could not be parsed (see <a href="#scan">Scan</a>).</p>"##,
            plural(
                report.counts.malformed as usize,
                "malformed line",
                "malformed lines"
            )
        );
    }
    s.push_str("</section>\n");
}

/// The days the charts span: the archive's, widened to every dated change and attempt.
fn page_axis(report: &Report) -> Option<Axis> {
    let c = &report.coverage;
    let mut lo: Option<NaiveDate> = None;
    let mut hi: Option<NaiveDate> = None;
    let mut see = |t: Option<DateTime<Utc>>| {
        if let Some(d) = t.map(|t| t.date_naive()) {
            lo = Some(lo.map_or(d, |l| l.min(d)));
            hi = Some(hi.map_or(d, |h| h.max(d)));
        }
    };
    see(c.first);
    see(c.last);
    for inv in &report.investigations {
        for a in &inv.accounts {
            for ch in &a.changes {
                see(ch.finding.timestamp);
            }
        }
        for e in &inv.attempts {
            see(e.finding.timestamp);
        }
    }
    Some(Axis::new(lo?, hi?, 0.0, svg::WIDTH))
}

fn coverage(s: &mut String, report: &Report) {
    let c = &report.coverage;
    let class = if c.conclusive { "ok" } else { "warn" };
    w!(
        s,
        r#"<section id="coverage" class="verdict {class}"><h2>Coverage: {}</h2>"#,
        if c.conclusive {
            "conclusive"
        } else {
            "INCONCLUSIVE"
        }
    );
    if c.reasons.is_empty() {
        s.push_str("<p>Records on every day of the archive's span and Exchange admin records present: the absence of a finding means something.</p>");
    } else {
        s.push_str("<ul class=\"reasons\">");
        for r in &c.reasons {
            w!(s, "<li>{}</li>", Txt(r));
        }
        s.push_str("</ul>");
    }
    w!(
        s,
        concat!(
            r#"<dl class="facts"><div><dt>First record</dt><dd>{}</dd></div>"#,
            r#"<div><dt>Last record</dt><dd>{}</dd></div><div><dt>Records</dt><dd>{}</dd></div>"#,
            r#"<div><dt>Days with records</dt><dd>{}</dd></div><div><dt>Gap days</dt><dd>{}</dd></div>"#,
            r#"<div><dt>Exchange admin records</dt><dd>{}</dd></div><div><dt>Undated records</dt><dd>{}</dd></div></dl>"#
        ),
        when(&c.first),
        when(&c.last),
        num(c.records),
        num(c.days.len() as u64),
        if c.gap_days.is_empty() {
            "0".to_string()
        } else {
            format!(
                "{} ({})",
                num(c.gap_days.len() as u64),
                Esc(&summarize_days(&c.gap_days))
            )
        },
        num(c.exchange_admin_records),
        num(c.undated)
    );
    if let Some(note) = crate::table::repeated_records(report) {
        w!(s, r#"<p class="muted">{}</p>"#, Txt(&note));
    }
    if let (Some(axis), false) = (page_axis(report), c.days.is_empty()) {
        let per = if axis.bucket_days() > 1 {
            format!(" (bars of {} days)", axis.bucket_days())
        } else {
            String::new()
        };
        w!(
            s,
            r#"<h3>Records per day{per}</h3><div class="chart-wrap">"#
        );
        svg::records_per_day(s, axis, &c.days, &c.gap_days);
        s.push_str(r#"</div><p class="legend"><span class="key k-bar"></span>records <span class="key k-gap"></span>day without any record (gap)</p>"#);
    }
    s.push_str("</section>\n");
}

/// One timeline: a bypassed account, or a target of failed attempts only.
struct Lane<'a> {
    identity: String,
    account: Option<&'a Account>,
    attempts: Vec<&'a Finding>,
}

impl Lane<'_> {
    /// Not allowlisted first; then on, off, attempts only, unknown.
    fn rank(&self) -> (bool, u8) {
        match self.account {
            Some(a) => (
                a.allowed.is_some(),
                match a.state_at_end {
                    State::On => 0,
                    State::Off => 1,
                    State::Unknown => 3,
                },
            ),
            None => (false, 2),
        }
    }
}

fn lanes<'a>(report: &Report, inv: &'a Investigation) -> Vec<Lane<'a>> {
    let mut attempts: BTreeMap<String, Vec<&'a Finding>> = BTreeMap::new();
    for f in inv.attempts.iter().map(|e| &e.finding) {
        if let Some(t) = report.text(f, report.items(f).target) {
            let k = key(t);
            if !k.is_empty() {
                attempts.entry(k).or_default().push(f);
            }
        }
    }
    let mut out: Vec<Lane<'a>> = inv
        .accounts
        .iter()
        .map(|a| Lane {
            identity: a.identity.clone(),
            account: Some(a),
            attempts: attempts.remove(&a.identity).unwrap_or_default(),
        })
        .collect();
    out.extend(attempts.into_iter().map(|(identity, attempts)| Lane {
        identity,
        account: None,
        attempts,
    }));
    // Stable: identity order within a rank.
    out.sort_by_key(Lane::rank);
    out
}

fn legend() -> &'static str {
    concat!(
        r#"<p class="legend">"#,
        r#"<span><svg class="sym" viewBox="-7 -7 14 14"><path class="m-enable" d="M0 -6 L6 5 L-6 5 Z"/></svg> enable</span> "#,
        r#"<span><svg class="sym" viewBox="-7 -7 14 14"><path class="m-disable" d="M0 6 L6 -5 L-6 -5 Z"/></svg> disable</span> "#,
        r#"<span><svg class="sym" viewBox="-7 -7 14 14"><path class="m-unknown" d="M0 -6 L6 0 L0 6 L-6 0 Z"/></svg> change of unknown direction</span> "#,
        r#"<span><svg class="sym" viewBox="-7 -7 14 14"><path class="m-attempt" d="M-5 -5 L5 5 M5 -5 L-5 5"/></svg> failed attempt</span> "#,
        r#"<span><span class="key k-period"></span>bypassed (an arrow out: still ON at the end; in: on before the data)</span> "#,
        r#"<span><span class="key k-span"></span>archive span</span> "#,
        r#"<span><span class="key k-mbar"></span>the account's mailbox audit records per day</span> "#,
        r#"<span><span class="key k-gap"></span>day without any record</span></p>"#
    )
}

fn timelines(s: &mut String, report: &Report, inv: &Investigation) {
    let lanes = lanes(report, inv);
    s.push_str(r#"<section id="timelines"><h2>Timelines</h2>"#);
    if lanes.is_empty() {
        s.push_str("<p>No bypass change and no failed attempt.</p></section>\n");
        return;
    }
    w!(
        s,
        "<p>One per account whose bypass was changed, then the targets of failed attempts only. \
         Hover a mark or a bar for details.</p>{}",
        legend()
    );
    let axis = page_axis(report);
    let c = &report.coverage;
    let span = c
        .first
        .zip(c.last)
        .map(|(a, b)| (a.timestamp(), b.timestamp()));
    let more = |s: &mut String| {
        if lanes.len() > TIMELINES_MAX {
            w!(
                s,
                r#"<p class="more">… {} more timelines — see the JSON (<code>--format json</code>)</p>"#,
                num((lanes.len() - TIMELINES_MAX) as u64)
            );
        }
    };
    for (i, lane) in lanes.iter().take(TIMELINES_MAX).enumerate() {
        lane_chart(s, report, lane, i, axis, span);
    }
    more(s);
    s.push_str("</section>\n");
    s.push_str(r#"<section id="accounts"><h2>Accounts</h2><p class="muted">Under each timeline: its periods, its changes and failed attempts in time order, and what the account did while bypassed.</p>"#);
    for (i, lane) in lanes.iter().take(TIMELINES_MAX).enumerate() {
        lane_details(s, report, lane, i);
    }
    more(s);
    s.push_str("</section>\n");
}

/// The account's name with its state and allowlist entry.
fn lane_title(s: &mut String, report: &Report, lane: &Lane<'_>) {
    w!(
        s,
        r#"<span class="mono wrap">{}</span> "#,
        Txt(&lane.identity)
    );
    match lane.account {
        Some(a) => {
            s.push_str(state_badge(a.state_at_end, report.window.until.is_some()));
            if let Some(e) = a.allowed.and_then(|i| report.allowlist.entries.get(i)) {
                w!(s, " {}", allowed_badge(e));
            }
        }
        None => s.push_str(r#"<span class="badge attempt">failed attempts only</span>"#),
    }
}

fn period_span(p: &Period, window: &ualhunt_engine::analysis::Window) -> Option<Span> {
    let start = if p.predates_data {
        None
    } else {
        Some(p.start?.timestamp())
    };
    let end = if p.open {
        None
    } else {
        Some(p.end?.timestamp())
    };
    Some(Span {
        start,
        end,
        open_as_of: crate::time::open_as_of(p, window).map(|t| t.timestamp()),
    })
}

fn lane_marks(report: &Report, lane: &Lane<'_>) -> Vec<Mark> {
    let mut marks = Vec::new();
    if let Some(a) = lane.account {
        for c in &a.changes {
            let f = &c.finding;
            if let Some(t) = f.timestamp {
                marks.push(Mark {
                    t: t.timestamp(),
                    kind: match c.change {
                        Change::Enable => MarkKind::Enable,
                        Change::Disable => MarkKind::Disable,
                        Change::Unknown => MarkKind::Unknown,
                    },
                    title: format!(
                        "{} {} by {} ({})",
                        c.change.name(),
                        Rfc3339::new(&t).as_str(),
                        f.actor.as_deref().unwrap_or("(no actor)"),
                        location(report, f)
                    ),
                });
            }
        }
    }
    for f in &lane.attempts {
        if let Some(t) = f.timestamp {
            marks.push(Mark {
                t: t.timestamp(),
                kind: MarkKind::Attempt,
                title: format!(
                    "failed attempt {} by {}: {} ({})",
                    Rfc3339::new(&t).as_str(),
                    f.actor.as_deref().unwrap_or("(no actor)"),
                    item_text(f, report.items(f).result_status),
                    location(report, f)
                ),
            });
        }
    }
    marks
}

/// One account's timeline, with what it adds up to.
fn lane_chart(
    s: &mut String,
    report: &Report,
    lane: &Lane<'_>,
    i: usize,
    axis: Option<Axis>,
    span: Option<(i64, i64)>,
) {
    w!(s, r#"<article class="lane" id="lane-{i}"><h3>"#);
    lane_title(s, report, lane);
    w!(
        s,
        r##" <a class="jump" href="#acct-{i}">details ↓</a></h3>"##
    );
    let mut facts: Vec<String> = Vec::new();
    if let Some(a) = lane.account {
        if a.spellings.len() > 1 || a.spellings.first().is_some_and(|sp| *sp != a.identity) {
            facts.push(format!(
                "spelled {}",
                list(a.spellings.iter().map(|x| x.as_str()), LIST_MAX)
            ));
        }
        facts.push(plural(a.changes.len(), "change", "changes"));
        facts.push(plural(a.periods.len(), "bypass period", "bypass periods"));
        if let Some(b) = &a.blind_spot {
            let other: u64 = b.other_during.iter().map(|(_, st)| st.count).sum();
            facts.push(format!(
                "mailbox audit records {} before / <b>{} during</b> / {} after",
                num(b.before),
                num(b.during),
                num(b.after)
            ));
            facts.push(format!("{} other records while bypassed", num(other)));
        }
    }
    if !lane.attempts.is_empty() {
        facts.push(plural(
            lane.attempts.len(),
            "failed attempt",
            "failed attempts",
        ));
    }
    w!(s, r#"<p class="muted">{}</p>"#, facts.join(" · "));

    if let Some(axis) = axis {
        let spans: Vec<Span> = lane
            .account
            .map(|a| {
                a.periods
                    .iter()
                    .filter_map(|p| period_span(p, &report.window))
                    .collect()
            })
            .unwrap_or_default();
        let tl = Timeline {
            id: i,
            label: &lane.identity,
            coverage: span,
            gaps: &report.coverage.gap_days,
            spans: &spans,
            marks: lane_marks(report, lane),
            per_day: match lane.account {
                Some(a) => match &a.blind_spot {
                    Some(b) => Ok(b.per_day.as_slice()),
                    None => Err("mailbox audit records unknown: the context pass did not run"),
                },
                None => Err("mailbox audit records are gathered for bypassed accounts only"),
            },
        };
        s.push_str(r#"<div class="chart-wrap">"#);
        svg::timeline(s, axis, &tl);
        s.push_str("</div>");
    }
    s.push_str("</article>\n");
}

/// One account's periods, changes and attempts, and other activity while bypassed.
fn lane_details(s: &mut String, report: &Report, lane: &Lane<'_>, i: usize) {
    w!(s, r#"<article class="lane" id="acct-{i}"><h3>"#);
    lane_title(s, report, lane);
    w!(
        s,
        r##" <a class="jump" href="#lane-{i}">timeline ↑</a></h3>"##
    );
    if let Some(a) = lane.account {
        s.push_str(r#"<div class="nextbox"><b>Next steps</b>"#);
        steps_list(s, &next::bypass(a, next::spelled(a), &report.window));
        if !a.periods.is_empty() {
            s.push_str(r#"<p class="muted">The mailbox audit has nothing of those spans: look at the account's sign-ins, message trace and other workloads' records (its other activity while bypassed is below).</p>"#);
        }
        s.push_str("</div>");
    }
    if let Some(a) = lane.account.filter(|a| !a.periods.is_empty()) {
        s.push_str(concat!(
            r#"<div class="scroll"><table class="sub"><thead><tr><th>Bypassed from</th><th>to</th>"#,
            r#"<th>Set by</th><th>Ended by</th><th class="n">Mailbox audit before</th>"#,
            r#"<th class="n">during</th><th class="n">after</th></tr></thead><tbody>"#
        ));
        for p in a.periods.iter().take(SUB_ROWS_MAX) {
            let from = if p.predates_data {
                "(before the data)".to_string()
            } else {
                when(&p.start)
            };
            let to = match crate::time::open_as_of(p, &report.window) {
                Some(until) => format!(
                    r#"<b class="red">still ON</b> at {} (<code>--until</code>)"#,
                    Rfc3339::new(&until).as_str()
                ),
                None if p.open => r#"<b class="red">still ON</b>"#.to_string(),
                None => when(&p.end),
            };
            s.push_str("<tr>");
            td(s, "Bypassed from", "t", from);
            td(s, "to", "t", to);
            cell(s, "Set by", p.set_by.as_deref().unwrap_or("-"));
            cell(s, "Ended by", p.ended_by.as_deref().unwrap_or("-"));
            let m = p.mailbox_audit;
            num_cell(s, "Mailbox audit before", m.map(|m| m[0]));
            num_cell(s, "during", m.map(|m| m[1]));
            num_cell(s, "after", m.map(|m| m[2]));
            s.push_str("</tr>");
        }
        more_row(
            s,
            7,
            a.periods.len(),
            a.periods.len().min(SUB_ROWS_MAX),
            "periods",
        );
        s.push_str("</tbody></table></div>");
    }

    // Changes and failed attempts, in time order.
    let mut events: Vec<(&Finding, Option<Change>)> = lane
        .account
        .map(|a| {
            a.changes
                .iter()
                .map(|c| (&c.finding, Some(c.change)))
                .collect()
        })
        .unwrap_or_default();
    events.extend(lane.attempts.iter().map(|f| (*f, None)));
    events.sort_by_key(|(f, _)| f.order_key());
    s.push_str(concat!(
        r#"<div class="scroll"><table class="sub"><thead><tr><th>Time</th><th>What</th><th>Actor / source IP</th>"#,
        r#"<th>Where / record id</th><th>Command line</th></tr></thead><tbody>"#
    ));
    for (f, change) in events.iter().take(SUB_ROWS_MAX) {
        s.push_str("<tr>");
        time_cell(s, "Time", &f.timestamp);
        match change {
            Some(c) => td(s, "What", "", change_badge(*c)),
            None => td(
                s,
                "What",
                "",
                format!(
                    r#"<span class="badge attempt">failed: {}</span>"#,
                    Txt(&item_text(f, report.items(f).result_status))
                ),
            ),
        }
        actor_cell(s, f);
        where_cell(s, report, f);
        cmd_cell(s, &item_text(f, report.items(f).command_line));
        s.push_str("</tr>");
    }
    more_row(
        s,
        5,
        events.len(),
        events.len().min(SUB_ROWS_MAX),
        "changes and attempts",
    );
    s.push_str("</tbody></table></div>");

    if let Some(b) = lane.account.and_then(|a| a.blind_spot.as_ref())
        && !b.other_during.is_empty()
    {
        s.push_str("<h4>Its other activity while bypassed</h4>");
        ops_table(s, &b.other_during);
    }
    s.push_str("</article>\n");
}

/// Operations by count (most first), capped.
fn ops_table(s: &mut String, ops: &[(OpKey, OpStat)]) {
    let mut sorted: Vec<&(OpKey, OpStat)> = ops.iter().collect();
    sorted.sort_by(|a, b| b.1.count.cmp(&a.1.count).then_with(|| a.0.cmp(&b.0)));
    s.push_str(concat!(
        r#"<div class="scroll"><table class="sub"><thead><tr><th>Workload</th><th>Operation</th>"#,
        r#"<th class="n">Records</th><th>First</th><th>Last</th><th>Source IPs</th></tr></thead><tbody>"#
    ));
    for (k, st) in sorted.iter().take(OPS_MAX) {
        s.push_str("<tr>");
        cell(s, "Workload", &k.0);
        cell(s, "Operation", &k.1);
        num_cell(s, "Records", Some(st.count));
        time_cell(s, "First", &st.first);
        time_cell(s, "Last", &st.last);
        td(
            s,
            "Source IPs",
            "mono wrap",
            list(st.source_ips.iter().map(|t| &**t), 5),
        );
        s.push_str("</tr>");
    }
    more_row(s, 6, sorted.len(), sorted.len().min(OPS_MAX), "operations");
    s.push_str("</tbody></table></div>");
}

fn attempts(s: &mut String, report: &Report, inv: &Investigation) {
    w!(
        s,
        r#"<section id="attempts"><h2>Failed attempts ({})</h2>"#,
        num(inv.attempts.len() as u64)
    );
    if inv.attempts_outside_window > 0 {
        w!(
            s,
            r#"<p class="muted">{} outside <code>--since</code>/<code>--until</code> not listed.</p>"#,
            num(inv.attempts_outside_window)
        );
    }
    if inv.attempts.is_empty() {
        s.push_str("<p>None.</p></section>\n");
        return;
    }
    s.push_str(concat!(
        r#"<p class="muted">The same cmdlet failing: trial and error, context rather than findings.</p>"#,
        r#"<div class="scroll"><table><thead><tr><th>Time</th><th>Actor / source IP</th><th>Target</th>"#,
        r#"<th>Result</th><th>Where / record id</th><th>Command line</th></tr></thead><tbody>"#
    ));
    for f in inv.attempts.iter().take(ROWS_MAX).map(|e| &e.finding) {
        s.push_str("<tr>");
        time_cell(s, "Time", &f.timestamp);
        actor_cell(s, f);
        cell(s, "Target", &item_text(f, report.items(f).target));
        cell(s, "Result", &item_text(f, report.items(f).result_status));
        where_cell(s, report, f);
        cmd_cell(s, &item_text(f, report.items(f).command_line));
        s.push_str("</tr>");
    }
    more_row(
        s,
        6,
        inv.attempts.len(),
        inv.attempts.len().min(ROWS_MAX),
        "failed attempts",
    );
    s.push_str("</tbody></table></div></section>\n");
}

fn actor_kinds(a: &ActorFindings) -> String {
    if a.user_types.is_empty() {
        return "-".to_string();
    }
    list(a.user_types.iter().map(|t| &**t), LIST_MAX)
}

fn actors(s: &mut String, report: &Report) {
    w!(
        s,
        r#"<section id="actors"><h2>Actors ({})</h2>"#,
        num(report.actors.len() as u64)
    );
    if report.actors.is_empty() {
        s.push_str("<p>No findings.</p></section>\n");
        return;
    }
    s.push_str(concat!(
        r#"<div class="scroll"><table><thead><tr><th>Actor</th><th>User type</th><th class="n">Events</th>"#,
        r#"<th>First seen</th><th>Last seen</th><th>Source IPs</th><th>Targets (bypass as last set, events)</th></tr></thead><tbody>"#
    ));
    for a in report.actors.iter().take(ROWS_MAX) {
        s.push_str("<tr>");
        cell(s, "Actor", a.actor.as_deref().unwrap_or("(none)"));
        td(s, "User type", "", actor_kinds(a));
        num_cell(s, "Events", Some(a.evidence.len() as u64));
        time_cell(s, "First seen", &a.first_seen);
        time_cell(s, "Last seen", &a.last_seen);
        td(
            s,
            "Source IPs",
            "mono wrap",
            list(a.source_ips.iter().map(|t| &**t), LIST_MAX),
        );
        s.push_str(r#"<td data-l="Targets" class="mono wrap">"#);
        for (i, t) in a.targets.iter().take(LIST_MAX).enumerate() {
            if i > 0 {
                s.push_str("<br>");
            }
            let flag = match t.flag {
                _ if !t.has_state(&report.items) => "",
                Some(true) => r#"<b class="red">on</b>, "#,
                Some(false) => r#"<span class="green">off</span>, "#,
                None => "?, ",
            };
            w!(
                s,
                "{} ({flag}{})",
                Brk(t.identity.as_deref().unwrap_or("(none)")),
                num(t.events)
            );
            if report.rules.len() > 1 {
                w!(
                    s,
                    r#" <span class="muted">{}</span>"#,
                    Txt(&report.rules[usize::from(t.rule)].shown_name())
                );
            }
        }
        if a.targets.len() > LIST_MAX {
            w!(
                s,
                r#"<br><span class="muted">+{} more</span>"#,
                num((a.targets.len() - LIST_MAX) as u64)
            );
        }
        s.push_str("</td></tr>");
    }
    more_row(
        s,
        7,
        report.actors.len(),
        report.actors.len().min(ROWS_MAX),
        "actors",
    );
    s.push_str("</tbody></table></div></section>\n");
}

fn actor_context(s: &mut String, inv: &Investigation) {
    let Some(list_) = &inv.actor_context else {
        return;
    };
    let hours = list_.first().map_or(0, |c| c.window.num_hours());
    w!(
        s,
        r#"<section id="context"><h2>Actor context (±{hours} h around each change)</h2>"#
    );
    if list_.is_empty() {
        s.push_str("<p>Nothing.</p></section>\n");
        return;
    }
    s.push_str(r#"<p class="muted">What each actor did around its bypass changes: operations, source IPs and audit tampering (<code>Set-AdminAuditLogConfig</code>, retention policies, <code>Audit…</code> parameters).</p>"#);
    // Actors that tampered with auditing first.
    let mut ordered: Vec<&ActorContext> = list_.iter().collect();
    ordered.sort_by_key(|c| c.tampering.is_empty());
    for c in ordered.iter().take(CONTEXT_MAX) {
        let records: u64 = c.operations.iter().map(|(_, st)| st.count).sum();
        w!(
            s,
            r#"<article class="ctx"><h3><span class="mono wrap">{}</span></h3><p class="muted">{} · {} in the windows · source IPs: <span class="mono">{}</span></p>"#,
            Txt(&c.actor),
            plural(c.changes as usize, "change", "changes"),
            plural(records as usize, "record", "records"),
            list(c.source_ips.iter().map(|t| &**t), LIST_MAX)
        );
        if !c.tampering.is_empty() {
            w!(
                s,
                r#"<div class="tamper"><b>Audit tampering ({}):</b><ul>"#,
                num(c.tampering.len() as u64)
            );
            for t in c.tampering.iter().take(SUB_ROWS_MAX) {
                w!(
                    s,
                    r#"<li><span class="t">{}</span> <span class="mono wrap">{}</span></li>"#,
                    Rfc3339::new(&t.timestamp).as_str(),
                    Txt(t.command_line.as_deref().unwrap_or(&t.operation))
                );
            }
            if c.tampering.len() > SUB_ROWS_MAX {
                w!(
                    s,
                    r#"<li class="muted">… {} more — see the JSON</li>"#,
                    num((c.tampering.len() - SUB_ROWS_MAX) as u64)
                );
            }
            s.push_str("</ul></div>");
        }
        if !c.operations.is_empty() {
            ops_table(s, &c.operations);
        }
        s.push_str("</article>");
    }
    if ordered.len() > CONTEXT_MAX {
        w!(
            s,
            r#"<p class="more">… {} more actors — see the JSON (<code>--format json</code>)</p>"#,
            num((ordered.len() - CONTEXT_MAX) as u64)
        );
    }
    s.push_str("</section>\n");
}

fn evidence(s: &mut String, report: &Report) {
    let total = report.events();
    w!(
        s,
        r#"<section id="evidence"><h2>Evidence ({})</h2>"#,
        plural(total, "event", "events")
    );
    if total == 0 {
        s.push_str("<p>No matched event.</p></section>\n");
        return;
    }
    // A Rule column when more than one rule ran.
    let several = report.rules.len() > 1;
    s.push_str(concat!(
        r#"<p class="muted">By actor, then time. <b>Where</b> is the input and its 1-based line, then the record id. <b>Next step</b>: what to do about the finding.</p>"#,
        r#"<div class="scroll"><table class="evidence"><thead><tr><th>Time</th><th>Actor / source IP</th>"#,
    ));
    if several {
        s.push_str("<th>Rule</th>");
    }
    s.push_str(concat!(
        r#"<th>Target</th><th>Change</th><th>Where / record id</th><th>Command line</th>"#,
        r#"<th>Next step</th></tr></thead><tbody>"#
    ));
    let accounts = bypassed_accounts(report);
    for e in report
        .actors
        .iter()
        .flat_map(|a| &a.evidence)
        .take(ROWS_MAX)
    {
        let f = &e.finding;
        s.push_str("<tr>");
        time_cell(s, "Time", &f.timestamp);
        actor_cell(s, f);
        if several {
            let name = report
                .rules
                .get(usize::from(f.rule))
                .map_or_else(|| "?".to_string(), rule_name);
            w!(
                s,
                r##"<td data-l="Rule"><a class="rule" href="#rule-{}">{name}</a></td>"##,
                f.rule
            );
        }
        cell(s, "Target", &item_text(f, report.items(f).target));
        w!(
            s,
            r#"<td data-l="Change">{}"#,
            e.change.map_or("-", change_badge)
        );
        if let Some(entry) = e.allowed.and_then(|i| report.allowlist.entries.get(i)) {
            w!(s, "<br>{}", allowed_badge(entry));
        }
        s.push_str("</td>");
        where_cell(s, report, f);
        cmd_cell(s, &item_text(f, report.items(f).command_line));
        next_cell(s, report, &accounts, f);
        s.push_str("</tr>");
    }
    more_row(
        s,
        7 + usize::from(several),
        total,
        total.min(ROWS_MAX),
        "events",
    );
    s.push_str("</tbody></table></div></section>\n");
}

/// The bypass investigations' accounts, by rule and account key, for the findings'
/// next steps.
fn bypassed_accounts(report: &Report) -> BTreeMap<(u16, String), &Account> {
    report
        .investigations
        .iter()
        .flat_map(|inv| {
            inv.accounts
                .iter()
                .map(move |a| ((inv.rule, a.identity.clone()), a))
        })
        .collect()
}

/// Next steps as a list: what to do, and the command that does it.
fn steps_list(s: &mut String, steps: &[next::Step]) {
    s.push_str(r#"<ol class="steps">"#);
    for st in steps {
        w!(s, "<li>{}", Txt(&st.what));
        if let Some(cmd) = &st.command {
            w!(s, r#": <code class="cmd wrap">{}</code>"#, Brk(cmd));
        }
        s.push_str("</li>");
    }
    s.push_str("</ol>");
}

/// A finding's next step: a bypass change's account's steps; another rule's guide.
fn next_cell(
    s: &mut String,
    report: &Report,
    accounts: &BTreeMap<(u16, String), &Account>,
    f: &Finding,
) {
    s.push_str(r#"<td data-l="Next step" class="next">"#);
    let Some(rule) = report.rules.get(usize::from(f.rule)) else {
        s.push_str("-</td>");
        return;
    };
    if rule.is_bypass() {
        let target = report.text(f, report.items(f).target);
        match target.and_then(|t| accounts.get(&(f.rule, key(t))).map(|a| (t, *a))) {
            Some((t, a)) => steps_list(s, &next::change(a, t, f.at, &report.window)),
            None => w!(
                s,
                "confirm the live state: <code>{} -Identity &lt;the account&gt;</code>",
                next::GET
            ),
        }
    } else {
        if rule.is_building_block() {
            s.push_str("a signal for other rules; ");
        }
        if rule.note.is_some() {
            w!(
                s,
                r##"follow <a href="#guide-{}">its investigation guide</a>"##,
                f.rule
            );
        } else {
            w!(
                s,
                r##"review the record against <a href="#rule-{}">the rule's description</a> (it has no investigation guide)"##,
                f.rule
            );
        }
    }
    s.push_str("</td>");
}

/// The name of a rule's query language in the rule card.
fn query_language(language: &str) -> &'static str {
    match language {
        "eql" => "EQL",
        "sigma" => "Sigma YAML",
        "esql" => "ES|QL",
        _ => "KQL",
    }
}

fn rules(s: &mut String, report: &Report) {
    if report.rules.len() > 1 || !report.not_run.is_empty() {
        rule_summary(s, report);
    }
    s.push_str(if report.rules.len() > 1 {
        r#"<section id="rule"><h2>Each rule</h2>"#
    } else {
        r#"<section id="rule"><h2>Rule</h2>"#
    });
    let fired: BTreeSet<u16> = report.fired_rules().iter().map(|f| f.rule).collect();
    for (i, r) in report.rules.iter().enumerate() {
        w!(s, r#"<h3 id="rule-{i}">{}</h3>"#, rule_name(r));
        s.push_str(r#"<dl class="kv">"#);
        let mut kv = |k: &str, v: String| w!(s, "<dt>{k}</dt><dd>{v}</dd>");
        if let Some(renamed) = &r.renamed {
            kv("Renamed upstream", Txt(renamed).to_string());
        }
        kv(
            "Rule id",
            format!(r#"<span class="mono">{}</span>"#, Esc(&r.id)),
        );
        if let Some(author) = &r.author {
            kv("Author", Txt(author).to_string());
        }
        kv(
            "Type / language",
            format!("{} / {}", Txt(&r.rule_type), Txt(&r.language)),
        );
        kv(
            "Severity / risk score",
            format!("{} / {}", Txt(&r.severity), r.risk_score),
        );
        kv(
            "Indices",
            list(r.index.iter().map(|x| x.as_str()), LIST_MAX),
        );
        kv("Schedule", Txt(&r.schedule).to_string());
        if let Some(alerting) = &r.alerting {
            kv("Alerting", Txt(&alerting.to_string()).to_string());
        }
        // Its lines kept (an EQL sequence or an ES|QL pipeline spans several).
        let mut query = String::from(r#"<pre class="query"><code>"#);
        markdown::block_text(&mut query, r.query.trim());
        query.push_str("</code></pre>");
        kv(&format!("Query ({})", query_language(&r.language)), query);
        for fp in &r.false_positives {
            let mut text = String::new();
            markdown::prose(&mut text, fp);
            kv("False positives", text);
        }
        for reference in &r.references {
            kv("Reference", Txt(reference).to_string());
        }
        let mut description = String::new();
        markdown::prose(&mut description, &r.description);
        kv("Description", description);
        s.push_str("</dl>");
        // The guide of a rule that fired: what to do about its findings.
        let fired = u16::try_from(i).is_ok_and(|i| fired.contains(&i));
        if fired && (r.note.is_some() || r.setup.is_some()) {
            w!(s, r#"<details class="guide" id="guide-{i}">"#);
            s.push_str("<summary>Investigation guide</summary>");
            if let Some(note) = &r.note {
                markdown::guide(s, note);
            }
            if let Some(setup) = &r.setup {
                s.push_str("<h4>Setup</h4>");
                markdown::guide(s, setup);
            }
            s.push_str("</details>");
        }
        if !r.threat.is_empty() {
            s.push_str(concat!(
                r#"<h4>MITRE ATT&amp;CK</h4><div class="scroll"><table class="sub"><thead><tr>"#,
                r#"<th>Tactic</th><th>Technique</th><th>Sub-technique</th></tr></thead><tbody>"#
            ));
            for t in &r.threat {
                s.push_str("<tr>");
                td(s, "Tactic", "", Txt(&t.tactic));
                td(s, "Technique", "", Txt(&t.technique));
                td(
                    s,
                    "Sub-technique",
                    "",
                    Txt(t.subtechnique.as_deref().unwrap_or("-")),
                );
                s.push_str("</tr>");
            }
            s.push_str("</tbody></table></div>");
        }
    }
    s.push_str("</section>\n");
}

fn scan(s: &mut String, report: &Report) {
    let c = &report.counts;
    s.push_str(
        r#"<section id="scan"><h2>Scan</h2><div class="scroll"><table class="counts"><tbody>"#,
    );
    let rows: [(&str, u64, &str); 17] = [
        ("inputs", report.files, ""),
        ("bytes (decompressed)", report.bytes, ""),
        ("lines", c.lines, "blank + records"),
        ("blank lines", c.blank, ""),
        ("records", c.records, "not candidates + candidates"),
        (
            "not candidates",
            c.not_candidate(),
            "no rule literal: not parsed",
        ),
        (
            "candidates",
            c.candidates,
            "matched + not matched + malformed",
        ),
        ("matched", c.matched, "the rule's query"),
        ("not matched", c.not_matched, ""),
        ("context selected", c.context, "e.g. failed attempts"),
        (
            "malformed",
            c.malformed,
            "holds a rule literal, not a JSON object",
        ),
        (
            "duplicates dropped",
            report.duplicates,
            "same rule and record id",
        ),
        (
            "held back by alerting",
            report.held_back.iter().sum(),
            "new-terms and threshold rules: matches that do not alert; EQL sequences: step matches in no completed sequence",
        ),
        ("outside --since/--until", report.outside_window, ""),
        ("events reported", report.events() as u64, ""),
        ("failed attempts reported", report.attempts() as u64, ""),
        (
            "errors",
            report.errors.len() as u64,
            "inputs not read in full",
        ),
    ];
    for (name, n, note) in rows {
        let shown = if name.starts_with("bytes") {
            format!("{} ({})", num(n), size(n))
        } else {
            num(n)
        };
        w!(
            s,
            r#"<tr><th>{name}</th><td class="n">{shown}</td><td class="muted">{note}</td></tr>"#
        );
    }
    w!(
        s,
        r#"<tr><th>warnings</th><td class="n">{}</td><td class="muted">inputs read with a doubt</td></tr><tr><th>context pass</th><td class="n">{}</td><td class="muted">blind spot and actor context</td></tr>"#,
        num(report.warnings.len() as u64),
        if report.context_ran {
            "ran"
        } else {
            "did not run"
        }
    );
    s.push_str("</tbody></table></div>");

    if !report.errors.is_empty() {
        w!(
            s,
            r#"<h3 class="red">Errors ({})</h3><div class="scroll"><table class="sub"><thead><tr><th>Input</th><th>Kind</th><th>Message</th></tr></thead><tbody>"#,
            num(report.errors.len() as u64)
        );
        for e in report.errors.iter().take(ROWS_MAX) {
            s.push_str("<tr>");
            cell(s, "Input", e.path());
            td(s, "Kind", "", Esc(e.kind()));
            cell(s, "Message", &e.to_string());
            s.push_str("</tr>");
        }
        more_row(
            s,
            3,
            report.errors.len(),
            report.errors.len().min(ROWS_MAX),
            "errors",
        );
        s.push_str("</tbody></table></div>");
    }
    if !report.warnings.is_empty() {
        w!(
            s,
            r#"<h3>Warnings ({})</h3><div class="scroll"><table class="sub"><thead><tr><th>Input</th><th>Message</th></tr></thead><tbody>"#,
            num(report.warnings.len() as u64)
        );
        for wn in report.warnings.iter().take(ROWS_MAX) {
            s.push_str("<tr>");
            cell(s, "Input", &wn.path);
            cell(s, "Message", &wn.message);
            s.push_str("</tr>");
        }
        more_row(
            s,
            2,
            report.warnings.len(),
            report.warnings.len().min(ROWS_MAX),
            "warnings",
        );
        s.push_str("</tbody></table></div>");
    }
    if !report.malformed.is_empty() {
        w!(
            s,
            r#"<h3>Malformed lines (first {} of {})</h3><div class="scroll"><table class="sub"><thead><tr><th>Where</th><th>Reason</th><th>First bytes</th></tr></thead><tbody>"#,
            num(report.malformed.len() as u64),
            num(c.malformed)
        );
        for m in report.malformed.iter().take(ROWS_MAX) {
            s.push_str("<tr>");
            cell(s, "Where", &format!("{}:{}", m.path, m.line));
            cell(s, "Reason", &m.reason);
            cell(s, "First bytes", &m.excerpt);
            s.push_str("</tr>");
        }
        s.push_str("</tbody></table></div>");
    }
    let expired = report.allowlist.expired();
    if !expired.is_empty() {
        s.push_str(r#"<h3>Expired allowlist entries (no longer applied)</h3><ul>"#);
        for i in expired.iter().take(ROWS_MAX) {
            if let Some(e) = report.allowlist.entries.get(*i) {
                w!(
                    s,
                    r#"<li><span class="mono">{}</span> — {} (expired {})</li>"#,
                    Txt(&e.account),
                    Txt(&e.reason),
                    e.expires.map(|d| d.to_string()).unwrap_or_default()
                );
            }
        }
        s.push_str("</ul>");
    }
    w!(
        s,
        r#"<h3>Inputs ({})</h3><ol class="inputs mono wrap">"#,
        num(report.inputs.len() as u64)
    );
    for p in report.inputs.paths().take(ROWS_MAX) {
        w!(s, "<li>{}</li>", Txt(&p));
    }
    if report.inputs.len() > ROWS_MAX {
        w!(
            s,
            r#"<li class="muted">… {} more — see the JSON</li>"#,
            num((report.inputs.len() - ROWS_MAX) as u64)
        );
    }
    s.push_str("</ol></section>\n");
}

const CSS: &str = r#":root{--fg:#1b2430;--muted:#5d6b7a;--line:#dde2e8;--bg:#f4f6f8;--card:#fff;
--red:#c62828;--red-bg:#fdecea;--amber:#9a5b00;--amber-bg:#fff4de;--green:#2e7d32;--green-bg:#e7f4e8;
--blue:#1565c0;--period:#d32f2f}
*{box-sizing:border-box}
html{-webkit-text-size-adjust:100%;text-size-adjust:100%}
body{margin:0;background:var(--bg);color:var(--fg);font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Noto Sans","DejaVu Sans",sans-serif}
header.top{background:#16202c;color:#fff;padding:18px 16px 14px}
header.top .in,main,footer{max-width:1200px;margin:0 auto}
header.top h1{font-size:22px;margin:0 0 4px;font-weight:650}
header.top .sub{margin:2px 0;color:#c4ceda;font-size:13px}
nav{display:flex;flex-wrap:wrap;gap:4px 14px;padding:10px 2px;font-size:13px}
nav a{color:var(--blue);text-decoration:none}
main{padding:0 16px 8px}
section{background:var(--card);border:1px solid var(--line);border-radius:8px;padding:14px 18px;margin:0 0 14px}
h2{font-size:18px;margin:0 0 8px}
h3{font-size:15px;margin:16px 0 4px}
h4{font-size:13px;margin:10px 0 4px;color:var(--muted)}
p{margin:6px 0}
.verdict{border-left:6px solid var(--line)}
.verdict.bad{border-left-color:var(--red)}
.verdict.bad h2,.verdict.bad .big{color:var(--red)}
.verdict.warn{border-left-color:#e0a000}
.verdict.warn h2{color:var(--amber)}
.verdict.ok{border-left-color:var(--green)}
.verdict.ok h2{color:var(--green)}
.big{font-size:20px;font-weight:650;margin:4px 0 6px}
.reasons{margin:6px 0;padding-left:20px;color:var(--amber)}
table{border-collapse:collapse;width:100%;font-size:13px;margin:6px 0}
th,td{text-align:left;padding:4px 8px;border-bottom:1px solid var(--line);vertical-align:top}
thead th{background:#eef1f5;font-weight:600}
table.counts{width:auto}
table.counts th{font-weight:500;white-space:nowrap}
.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.scroll{overflow-x:auto}
.mono,code{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,"DejaVu Sans Mono",monospace;font-size:12px}
.wrap{overflow-wrap:break-word}
.t{white-space:nowrap;font-variant-numeric:tabular-nums}
.muted{color:var(--muted)}
.rid{color:var(--muted);font-size:11px}
@media (min-width:900px){td.cmd{min-width:24em}}
.red{color:var(--red)}
.green{color:var(--green)}
.badge{display:inline-block;padding:1px 8px;border-radius:10px;font-size:12px;font-weight:600;white-space:nowrap;font-family:system-ui,sans-serif}
.badge.on{background:var(--red-bg);color:var(--red)}
.badge.off{background:var(--green-bg);color:var(--green)}
.badge.unk{background:#eceff1;color:#455a64}
.badge.allowed{background:#e3eefc;color:#0d47a1;white-space:normal}
.badge.attempt{background:#fff0e0;color:#b34700}
.badge.bb{background:#ede7f6;color:#4527a0;font-weight:500}
header.top a{color:#9cc7ff}
a.rule{color:inherit}
ol.steps{margin:0;padding-left:18px}
ol.steps li{margin:0 0 2px}
td.next{min-width:14em;font-size:12px}
.nextbox{background:#eef5fd;border-left:4px solid var(--blue);padding:6px 10px;margin:6px 0;border-radius:4px}
details.guide{border:1px solid var(--line);border-radius:6px;padding:4px 12px;margin:8px 0 14px;background:#fafbfc}
details.guide summary{cursor:pointer;font-weight:600;color:var(--blue)}
details.guide h3,details.guide h4,details.guide h5,details.guide h6{margin:12px 0 4px}
details.guide blockquote{margin:6px 0;padding:2px 10px;border-left:3px solid var(--line);color:var(--muted)}
details.guide pre,pre.raw{background:#f0f2f5;padding:6px 8px;border-radius:4px;overflow-x:auto;white-space:pre-wrap;overflow-wrap:break-word}
dd p{margin:0 0 6px}
pre.query{margin:0;white-space:pre-wrap;overflow-wrap:break-word}
.ctl{background:#ffe08a;color:#5c3d00;border-radius:2px;padding:0 2px;font-family:ui-monospace,monospace;font-size:11px}
.more,.more td{color:var(--muted);font-style:italic}
dl.facts{display:flex;flex-wrap:wrap;gap:4px 22px;margin:8px 0}
dl.facts dt{font-size:12px;color:var(--muted)}
dl.facts dd{margin:0;font-weight:600;font-variant-numeric:tabular-nums}
dl.kv{display:grid;grid-template-columns:max-content 1fr;gap:4px 14px;margin:6px 0}
dl.kv dt{color:var(--muted)}
dl.kv dd{margin:0}
.lane,.ctx{border-top:1px solid var(--line);padding-top:4px;margin-top:10px}
.lane h3{margin-top:8px}
.jump{font-size:12px;font-weight:400;color:var(--blue);text-decoration:none;margin-left:6px}
.tamper{background:var(--red-bg);border-left:4px solid var(--red);padding:6px 10px;margin:6px 0;border-radius:4px}
.tamper ul{margin:4px 0;padding-left:18px}
.legend{font-size:12px;color:var(--muted)}
.legend>span{white-space:nowrap}
.key{display:inline-block;width:12px;height:10px;margin:0 4px 0 10px;vertical-align:-1px;border-radius:2px}
.k-bar{background:#607d8b}.k-mbar{background:#1e88e5}.k-period{background:linear-gradient(90deg,#d32f2f,rgba(211,47,47,.2))}
.k-span{background:#e3e7ec;border:1px solid #c3cad3}
.k-gap{background:repeating-linear-gradient(45deg,#f6c9c9 0 3px,#c62828 3px 5px)}
.sym{width:12px;height:12px;vertical-align:-2px;margin-left:8px}
.chart-wrap{overflow-x:auto}
svg.chart{display:block;width:100%;height:auto}
svg text{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif}
svg .tl{font-size:10px;fill:#5d6b7a;text-anchor:middle}
svg .yl{font-size:10px;fill:#5d6b7a;text-anchor:end}
svg .lane{font-size:10.5px;fill:#5d6b7a}
svg .note{font-size:11px;fill:#8a96a3;font-style:italic}
svg .bl{font-size:11px;fill:#fff;font-weight:600}
svg .ml{font-size:10px;fill:#1b2430}
svg .tick{stroke:#c3cad3}
svg .axis{stroke:#8a96a3}
svg .grid{stroke:#eef1f5}
svg .bar{fill:#607d8b}
svg .bar:hover,svg .mbar:hover{fill:#1b2430}
svg .mbar{fill:#1e88e5}
svg .span{fill:#e9edf1;stroke:#c3cad3;stroke-width:.5}
svg .gap{opacity:.55}
svg .gap-bg{fill:#fbe3e3}
svg .gap-line{stroke:#c62828;stroke-width:2.5}
svg .period{fill:var(--period)}
svg .s-full{stop-color:#d32f2f;stop-opacity:1}
svg .s-faint{stop-color:#d32f2f;stop-opacity:.18}
svg .shade{fill:#d32f2f;opacity:.07}
svg .arrow{fill:#b71c1c}
svg .guide{stroke:#8a96a3;stroke-dasharray:2 3;stroke-width:.8}
svg .m-enable,.sym .m-enable{fill:#c62828;stroke:#fff;stroke-width:1}
svg .m-disable,.sym .m-disable{fill:#2e7d32;stroke:#fff;stroke-width:1}
svg .m-unknown,.sym .m-unknown{fill:#78909c;stroke:#fff;stroke-width:1}
svg .m-attempt,.sym .m-attempt{fill:none;stroke:#ef6c00;stroke-width:2.4}
footer{padding:4px 16px 24px;font-size:12px;color:var(--muted)}
@media screen and (max-width:720px){
body{font-size:13px}
table,tbody,tr,td{display:block;width:auto}
thead{display:none}
tr{border-bottom:1px solid var(--line);padding:6px 0}
td{border:none;padding:1px 2px}
td[data-l]::before{content:attr(data-l);display:inline-block;min-width:8.5em;margin-right:6px;color:var(--muted);font:11px system-ui,sans-serif}
td.n{text-align:left}
table.counts tr{display:table-row;padding:0}
table.counts th,table.counts td{display:table-cell;border-bottom:1px solid var(--line)}
table.counts,table.counts tbody{display:table}
.legend>span{white-space:normal}
svg .tl,svg .yl{font-size:15px}
svg .lane{font-size:13px}
svg .note,svg .bl{font-size:15px}
main{padding:0 6px 6px}
section{padding:10px 10px;border-radius:6px}
header.top{padding:12px 10px}
header.top h1{font-size:18px}
.big{font-size:17px}
svg.chart{min-width:680px}
dl.kv{grid-template-columns:1fr}
dl.kv dd{margin-bottom:6px}
}
@media print{
@page{margin:12mm}
body{background:#fff;font-size:10.5px}
header.top{background:#fff;color:#000;border-bottom:2px solid #000;padding:0 0 6px}
header.top .sub{color:#333}
nav,.jump{display:none}
main{padding:0}
section{border:none;border-radius:0;padding:0;margin:0 0 14px}
.verdict{border-left-width:4px;padding-left:10px}
.scroll,.chart-wrap{overflow:visible}
svg.chart{min-width:0}
table{font-size:9.5px}
h2,h3,h4{break-after:avoid}
tr,svg.chart,.tamper,dl{break-inside:avoid}
*{-webkit-print-color-adjust:exact;print-color-adjust:exact}
}
"#;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::escape::{TEXT_MAX, is_hidden};

    #[test]
    fn escapes_markup_and_hidden_characters() {
        assert_eq!(
            Esc(r#"<script>alert('1')</script> & "x""#).to_string(),
            "&lt;script&gt;alert(&#39;1&#39;)&lt;/script&gt; &amp; &quot;x&quot;"
        );
        assert_eq!(
            Esc("\"><img src=x onerror=alert(1)>").to_string(),
            "&quot;&gt;&lt;img src=x onerror=alert(1)&gt;"
        );
        // Bidi overrides, isolates, zero-width and control characters become visible.
        assert_eq!(
            Esc("a\u{202e}b\u{2066}c\u{200b}d\u{1b}[31m\u{0}\u{feff}").to_string(),
            r"a\u{202e}b\u{2066}c\u{200b}d\u{1b}[31m\u{0}\u{feff}"
        );
        for c in ('\u{202a}'..='\u{202e}').chain('\u{2066}'..='\u{2069}') {
            let out = Txt(&format!("x{c}y")).to_string();
            assert!(!out.contains(c), "{c:?} left as is");
            assert!(out.contains(r#"<span class="ctl""#), "{out}");
        }
        // Everything else is left as it is.
        assert_eq!(
            Esc(r"NT AUTHORITY\SYSTEM björn.müller@x.com 日本").to_string(),
            r"NT AUTHORITY\SYSTEM björn.müller@x.com 日本"
        );
        assert_eq!(
            Txt("a\u{202e}b").to_string(),
            r#"a<span class="ctl" title="U+202E">\u{202e}</span>b"#
        );
    }

    #[test]
    fn long_text_is_cut_and_counted() {
        let long = format!("{}<{}", "é".repeat(TEXT_MAX - 1), "y".repeat(10));
        let out = Esc(&long).to_string();
        assert!(out.ends_with("&lt;… (+10 characters)"), "{out}");
        let exact = "z".repeat(TEXT_MAX);
        assert_eq!(Esc(&exact).to_string(), exact);
    }

    #[test]
    fn escaped_text_has_no_markup_characters() {
        let mut rng = fastrand::Rng::with_seed(3);
        let alphabet: Vec<char> = "<>&\"' a=/\\\u{202e}\u{2069}\u{0}\u{7f}\u{85}é"
            .chars()
            .collect();
        for _ in 0..2000 {
            let text: String = (0..rng.usize(0..40))
                .map(|_| alphabet[rng.usize(..alphabet.len())])
                .collect();
            let out = Esc(&text).to_string();
            assert!(!out.contains(['<', '>', '"', '\'']), "{text:?} -> {out:?}");
            assert!(!out.chars().any(is_hidden), "{text:?} -> {out:?}");
            // Every & starts an entity.
            for (i, _) in out.match_indices('&') {
                let rest = &out[i..];
                assert!(
                    ["&amp;", "&lt;", "&gt;", "&quot;", "&#39;"]
                        .iter()
                        .any(|e| rest.starts_with(e)),
                    "{out:?}"
                );
            }
        }
    }

    /// The report of the investigation fixtures, blown up to hundreds of thousands of
    /// events, thousands of actors and accounts, and long lists everywhere.
    fn huge_report() -> Report {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/fixtures/investigation");
        let mut config = ualhunt_engine::Config::new(vec![dir]);
        config.threads = 1;
        let mut report = ualhunt_engine::run(&config).unwrap();
        assert!(!report.actors.is_empty() && !report.investigations.is_empty());
        let mut actors = Vec::new();
        for i in 0..200 {
            for a in &report.actors {
                let mut a = a.clone();
                a.actor = Some(format!("actor-{i}@{}", a.actor.as_deref().unwrap_or("")).into());
                let one = a.evidence.clone();
                while a.evidence.len() < 150 {
                    a.evidence.extend(one.iter().cloned());
                }
                a.source_ips = (0..500)
                    .map(|n| format!("10.0.{}.{}", n / 256, n % 256).into())
                    .collect();
                a.targets = (0..500)
                    .map(|n| ualhunt_engine::analysis::actors::Target {
                        rule: 0,
                        identity: Some(format!("mbx-{n}").into()),
                        events: 1,
                        flag: Some(true),
                    })
                    .collect();
                actors.push(a);
            }
        }
        report.actors = actors;
        let inv = &mut report.investigations[0];
        let (accounts, attempts) = (inv.accounts.clone(), inv.attempts.clone());
        let contexts = inv.actor_context.clone().unwrap_or_default();
        assert!(!accounts.is_empty() && !attempts.is_empty() && !contexts.is_empty());
        inv.accounts.clear();
        inv.attempts.clear();
        let mut ctx = Vec::new();
        for i in 0..300 {
            for a in &accounts {
                let mut a = a.clone();
                a.identity = format!("{i}-{}", a.identity);
                let changes = a.changes.clone();
                while a.changes.len() < 300 {
                    a.changes.extend(changes.iter().cloned());
                }
                a.periods = (0..300).flat_map(|_| a.periods.clone()).collect();
                inv.accounts.push(a);
            }
            inv.attempts.extend(attempts.iter().cloned());
            for c in &contexts {
                let mut c = c.clone();
                c.actor = format!("{i}-{}", c.actor);
                c.tampering = (0..200).flat_map(|_| c.tampering.clone()).collect();
                ctx.push(c);
            }
        }
        inv.actor_context = Some(ctx);
        // Megabyte strings: an account, an actor, a command line.
        let huge = "x".repeat(1 << 20);
        inv.accounts[0].identity = huge.clone();
        report.actors[0].actor = Some(huge.as_str().into());
        let cmd = report.rules[0]
            .evidence
            .iter()
            .position(|e| e.name == "command_line")
            .unwrap();
        report.actors[0].evidence[0].finding.fields[cmd] = Some(Value::Text(huge.as_str().into()));
        report
    }

    #[test]
    fn size_is_bounded_whatever_the_event_count() {
        let report = huge_report();
        assert!(report.events() >= 200_000, "{}", report.events());
        let page = render(&report);
        assert!(
            page.len() < 3 << 20,
            "{} bytes for {} events",
            page.len(),
            report.events()
        );
        // Each capped table says how many rows the JSON has beyond it.
        assert!(page.contains("… (+1047576 characters — see the JSON)"));
        for what in [
            "more events",
            "more actors",
            "more failed attempts",
            "more timelines",
        ] {
            assert!(page.contains(what), "no '{what}' line");
        }
        let evidence = &page[page.find(r#"id="evidence""#).unwrap()..];
        let evidence = &evidence[..evidence.find("</section>").unwrap()];
        assert_eq!(
            evidence.matches("<tr>").count(),
            ROWS_MAX + 1,
            "header + capped rows"
        );
        assert_eq!(
            page.matches(r#"<svg class="chart timeline""#).count(),
            TIMELINES_MAX
        );
    }

    #[test]
    fn numbers_and_sizes() {
        assert_eq!(num(0u64), "0");
        assert_eq!(num(999u64), "999");
        assert_eq!(num(1000u64), "1,000");
        assert_eq!(num(1234567u64), "1,234,567");
        assert_eq!(size(512), "512 bytes");
        assert_eq!(size(5 << 20), "5.0 MiB");
    }
}
