//! Inline SVG for the HTML report: a day axis, a bar chart of records per day and the
//! timeline of one bypassed account. Plain data in, markup out; every text that came
//! from an archive is escaped here with [`Esc`].
//!
//! Size is bounded whatever the archive: at most [`MAX_BARS`] bars (days are grouped
//! into buckets beyond that), markers that fall within a few units of each other are
//! drawn as one, and periods that nearly touch are drawn as one band.

use std::fmt::Write as _;

use chrono::NaiveDate;

use crate::escape::Esc;

/// Width of every chart's view box; charts scale to their container.
pub const WIDTH: f64 = 1000.0;
/// At most this many bars per chart: longer spans group days into buckets.
pub const MAX_BARS: i64 = 400;
/// Markers of one kind closer than this (view-box units) are drawn as one: they are
/// 12 units wide, so two drawn apart never cover each other.
const MARK_MERGE: f64 = 13.0;
/// Periods closer than this are drawn as one band (their marks still show apart).
const SPAN_MERGE: f64 = 2.0;
/// Widest bar (a short archive has few, wide days).
const BAR_MAX: f64 = 40.0;

const DAY: i64 = 86_400;

/// Writes to a `String`, which cannot fail.
macro_rules! w {
    ($dst:expr, $($arg:tt)*) => {{
        // Writing into a String never fails.
        let _ = write!($dst, $($arg)*);
    }};
}

/// Maps days and times onto the x axis of a chart.
#[derive(Clone, Copy, Debug)]
pub struct Axis {
    lo: NaiveDate,
    days: i64,
    bucket: i64,
    left: f64,
    right: f64,
}

fn midnight(d: NaiveDate) -> i64 {
    d.and_time(chrono::NaiveTime::MIN).and_utc().timestamp()
}

impl Axis {
    /// An axis from the start of `lo` to the end of `hi`, drawn between `left` and
    /// `right`.
    pub fn new(lo: NaiveDate, hi: NaiveDate, left: f64, right: f64) -> Axis {
        let days = (hi - lo).num_days().max(0) + 1;
        let bucket = (days + MAX_BARS - 1) / MAX_BARS;
        Axis {
            lo,
            days,
            bucket: bucket.max(1),
            left,
            right,
        }
    }

    /// The same days drawn between other edges.
    pub fn between(self, left: f64, right: f64) -> Axis {
        Axis {
            left,
            right,
            ..self
        }
    }

    /// Days per bar.
    pub fn bucket_days(&self) -> i64 {
        self.bucket
    }

    fn t0(&self) -> i64 {
        midnight(self.lo)
    }

    /// The x of a time (seconds since the epoch), clamped to the axis.
    pub fn x(&self, t: i64) -> f64 {
        let span = (self.days * DAY) as f64;
        let f = ((t - self.t0()) as f64 / span).clamp(0.0, 1.0);
        self.left + f * (self.right - self.left)
    }

    fn day_index(&self, d: NaiveDate) -> i64 {
        (d - self.lo).num_days()
    }

    fn buckets(&self) -> i64 {
        (self.days + self.bucket - 1) / self.bucket
    }

    /// The bucket of a day, if it is on the axis.
    fn bucket_of(&self, d: NaiveDate) -> Option<usize> {
        let i = self.day_index(d);
        (0..self.days)
            .contains(&i)
            .then_some((i / self.bucket) as usize)
    }

    /// Left and right x of a bucket.
    fn bucket_x(&self, b: usize) -> (f64, f64) {
        let first = b as i64 * self.bucket;
        let last = (first + self.bucket).min(self.days);
        let t0 = self.t0();
        (self.x(t0 + first * DAY), self.x(t0 + last * DAY))
    }

    /// The first day of a bucket, and its last.
    fn bucket_days_of(&self, b: usize) -> (NaiveDate, NaiveDate) {
        let first = b as i64 * self.bucket;
        let last = (first + self.bucket).min(self.days) - 1;
        (
            self.lo + chrono::Days::new(first as u64),
            self.lo + chrono::Days::new(last as u64),
        )
    }

    /// Sums per-day values into buckets.
    fn sum(&self, values: &[(NaiveDate, u64)]) -> Vec<u64> {
        let mut out = vec![0u64; self.buckets() as usize];
        for (d, n) in values {
            if let Some(b) = self.bucket_of(*d) {
                out[b] = out[b].saturating_add(*n);
            }
        }
        out
    }

    /// Buckets that hold at least one of `days`.
    fn hit(&self, days: &[NaiveDate]) -> Vec<bool> {
        let mut out = vec![false; self.buckets() as usize];
        for d in days {
            if let Some(b) = self.bucket_of(*d) {
                out[b] = true;
            }
        }
        out
    }

    /// Runs of buckets holding gap days: (left x, right x, what the run holds).
    fn gap_runs(&self, gaps: &[NaiveDate]) -> Vec<(f64, f64, String)> {
        let hit = self.hit(gaps);
        let mut out = Vec::new();
        let mut b = 0;
        while b < hit.len() {
            if !hit[b] {
                b += 1;
                continue;
            }
            let first = b;
            while b + 1 < hit.len() && hit[b + 1] {
                b += 1;
            }
            let (x0, _) = self.bucket_x(first);
            let (_, x1) = self.bucket_x(b);
            let (d0, _) = self.bucket_days_of(first);
            let (_, d1) = self.bucket_days_of(b);
            let n = gaps.iter().filter(|d| (d0..=d1).contains(d)).count();
            let what = if d0 == d1 {
                format!("{d0}: no record in the archive")
            } else {
                format!("{d0}..{d1}: {n} day(s) without any record in the archive")
            };
            out.push((x0, x1, what));
            b += 1;
        }
        out
    }

    /// Day ticks with date labels: at most about ten, on round steps.
    fn ticks(&self, out: &mut String, top: f64, bottom: f64) {
        const STEPS: [i64; 12] = [1, 2, 7, 14, 28, 56, 91, 182, 364, 728, 1820, 3640];
        let step = STEPS
            .iter()
            .copied()
            // At most eight labels: a date is about 90 units wide in a phone's font.
            .find(|s| self.days / s <= 7)
            .unwrap_or(self.days.max(1));
        let mut i = 0;
        while i < self.days {
            let d = self.lo + chrono::Days::new(i as u64);
            let x = self.x(midnight(d));
            w!(
                out,
                r#"<line class="tick" x1="{x:.1}" y1="{top:.1}" x2="{x:.1}" y2="{:.1}"/><text class="tl" x="{x:.1}" y="{:.1}">{d}</text>"#,
                bottom + 4.0,
                bottom + 15.0
            );
            i += step;
        }
    }
}

/// Writes a bar chart of records per day with the gap days marked.
pub fn records_per_day(
    out: &mut String,
    axis: Axis,
    days: &[(NaiveDate, u64)],
    gaps: &[NaiveDate],
) {
    let (top, base, height) = (12.0, 122.0, 144.0);
    let axis = axis.between(56.0, WIDTH - 8.0);
    let sums = axis.sum(days);
    let max = sums.iter().copied().max().unwrap_or(0).max(1);
    w!(
        out,
        r#"<svg class="chart" viewBox="0 0 {WIDTH} {height}" role="img" aria-label="records per day">"#
    );
    gap_pattern(out, "gapc");
    w!(
        out,
        r#"<line class="grid" x1="{l:.1}" y1="{top}" x2="{r:.1}" y2="{top}"/><line class="grid" x1="{l:.1}" y1="{mid:.1}" x2="{r:.1}" y2="{mid:.1}"/><text class="yl" x="{yl:.1}" y="{:.1}">{max}</text><text class="yl" x="{yl:.1}" y="{:.1}">0</text>"#,
        top + 4.0,
        base + 4.0,
        l = axis.left,
        r = axis.right,
        mid = (top + base) / 2.0,
        yl = axis.left - 6.0,
    );
    let per = if axis.bucket_days() == 1 {
        String::new()
    } else {
        format!(" ({} days)", axis.bucket_days())
    };
    for (x0, x1, what) in axis.gap_runs(gaps) {
        w!(
            out,
            r#"<rect class="gap" x="{x0:.1}" y="{top}" width="{:.1}" height="{:.1}" fill="url(#gapc)"><title>{what}</title></rect>"#,
            (x1 - x0).max(1.0),
            base - top
        );
    }
    for (b, n) in sums.iter().enumerate() {
        let (x0, x1) = axis.bucket_x(b);
        let (d0, d1) = axis.bucket_days_of(b);
        let when = if d0 == d1 {
            d0.to_string()
        } else {
            format!("{d0}..{d1}")
        };
        if *n > 0 {
            let h = (*n as f64 / max as f64 * (base - top)).max(1.0);
            let wd = ((x1 - x0) * 0.8).clamp(0.6, BAR_MAX);
            w!(
                out,
                r#"<rect class="bar" x="{:.1}" y="{:.1}" width="{wd:.1}" height="{h:.1}"><title>{when}{per}: {n} records</title></rect>"#,
                x0 + (x1 - x0 - wd) / 2.0,
                base - h
            );
        }
    }
    w!(
        out,
        r#"<line class="axis" x1="{:.1}" y1="{base}" x2="{:.1}" y2="{base}"/>"#,
        axis.left,
        axis.right
    );
    axis.ticks(out, base, base);
    out.push_str("</svg>");
}

/// A bypass period on a timeline, in seconds: `None` start predates the data, `None`
/// end is still open at the end of the data, or at `open_as_of` when the run ends
/// there (`--until`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    /// When it began.
    pub start: Option<i64>,
    /// When it ended.
    pub end: Option<i64>,
    /// The end of the window an open period is told open at (`--until`), when not the
    /// end of the data.
    pub open_as_of: Option<i64>,
}

/// What a marker shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum MarkKind {
    /// The bypass was turned on.
    Enable,
    /// The bypass was turned off.
    Disable,
    /// A change whose direction is unknown.
    Unknown,
    /// A failed attempt.
    Attempt,
}

impl MarkKind {
    fn class(self) -> &'static str {
        match self {
            MarkKind::Enable => "m-enable",
            MarkKind::Disable => "m-disable",
            MarkKind::Unknown => "m-unknown",
            MarkKind::Attempt => "m-attempt",
        }
    }

    fn plural(self) -> &'static str {
        match self {
            MarkKind::Enable => "enables",
            MarkKind::Disable => "disables",
            MarkKind::Unknown => "changes of unknown direction",
            MarkKind::Attempt => "failed attempts",
        }
    }
}

/// One event on a timeline.
#[derive(Clone, Debug)]
pub struct Mark {
    /// When (seconds since the epoch).
    pub t: i64,
    /// What.
    pub kind: MarkKind,
    /// The tooltip, unescaped.
    pub title: String,
}

/// Everything one account's timeline shows.
pub struct Timeline<'a> {
    /// Unique among the page's charts (pattern and gradient ids).
    pub id: usize,
    /// The account, for screen readers.
    pub label: &'a str,
    /// The archive's first and last record time.
    pub coverage: Option<(i64, i64)>,
    /// Days inside the archive's span without any record.
    pub gaps: &'a [NaiveDate],
    /// Bypass periods in time order.
    pub spans: &'a [Span],
    /// Changes and failed attempts.
    pub marks: Vec<Mark>,
    /// The account's mailbox-audit records per day (the context pass), or why they
    /// are not known.
    pub per_day: Result<&'a [(NaiveDate, u64)], &'a str>,
}

/// The y layout of a timeline: failed attempts on a row of their own above the changes
/// (a ✕ never covers a ▲), then the bypass band, then the bars.
const ATTEMPT_Y: f64 = 9.0;
const MARK_Y: f64 = 25.0;
const BAND_TOP: f64 = 38.0;
const BAND_H: f64 = 20.0;
const BARS_TOP: f64 = 68.0;
const BARS_BASE: f64 = 124.0;
const TL_HEIGHT: f64 = 146.0;
/// Room for the lane captions, in a phone's larger font.
const TL_LEFT: f64 = 112.0;
/// Width of a character of a caption in the largest font the page gives it (15 units
/// on a phone), rounded up: a caption is drawn only where it fits.
const CAPTION_CHAR: f64 = 9.0;
/// Width of a character of a `×N` label (10 units).
const LABEL_CHAR: f64 = 6.5;

/// Writes an account's timeline: the archive's span, the bypass periods (open ones fade
/// out to the right edge with an arrow, ones that predate the data fade in from the left
/// edge), the changes and failed attempts, and its mailbox-audit records per day, so the
/// blind spot shows as a hole in the bars.
pub fn timeline(out: &mut String, axis: Axis, tl: &Timeline<'_>) {
    let axis = axis.between(TL_LEFT, WIDTH - 14.0);
    let id = tl.id;
    w!(
        out,
        r#"<svg class="chart timeline" viewBox="0 0 {WIDTH} {TL_HEIGHT}" role="img" aria-label="bypass timeline of {}">"#,
        Esc(tl.label)
    );
    w!(
        out,
        concat!(
            r#"<defs><linearGradient id="fo{id}" x1="0" x2="1" y1="0" y2="0">"#,
            r#"<stop offset="0" class="s-full"/><stop offset="1" class="s-faint"/></linearGradient>"#,
            r#"<linearGradient id="fi{id}" x1="0" x2="1" y1="0" y2="0">"#,
            r#"<stop offset="0" class="s-faint"/><stop offset="1" class="s-full"/></linearGradient></defs>"#
        ),
        id = id
    );
    gap_pattern(out, &format!("gp{id}"));
    // Lane labels, one line each, a phone's line height apart.
    w!(
        out,
        r#"<text class="lane" x="4" y="{:.1}">bypass</text><text class="lane" x="4" y="{:.1}">mailbox audit</text><text class="lane" x="4" y="{:.1}">records / day</text>"#,
        BAND_TOP + 14.0,
        BARS_TOP + 26.0,
        BARS_TOP + 42.0
    );
    // The archive's span and its gap days, behind everything.
    if let Some((first, last)) = tl.coverage {
        w!(
            out,
            r#"<rect class="span" x="{:.1}" y="{BAND_TOP}" width="{:.1}" height="{BAND_H}"><title>archive span</title></rect>"#,
            axis.x(first),
            (axis.x(last) - axis.x(first)).max(1.0)
        );
    }
    for (x0, x1, what) in axis.gap_runs(tl.gaps) {
        w!(
            out,
            r#"<rect class="gap" x="{x0:.1}" y="{BAND_TOP}" width="{:.1}" height="{:.1}" fill="url(#gp{id})"><title>{what}</title></rect>"#,
            (x1 - x0).max(1.0),
            BARS_BASE - BAND_TOP
        );
    }
    // The periods: a shaded column over the bars (where the hole shows) and a band.
    for (x0, x1, span) in merged_spans(&axis, tl.spans) {
        w!(
            out,
            r#"<rect class="shade" x="{x0:.1}" y="{BARS_TOP}" width="{:.1}" height="{:.1}"/>"#,
            (x1 - x0).max(1.0),
            BARS_BASE - BARS_TOP
        );
        let (class, fill) = match (span.start, span.end) {
            (None, _) => ("period predates", format!(r#" fill="url(#fi{id})""#)),
            (_, None) => ("period open", format!(r#" fill="url(#fo{id})""#)),
            _ => ("period", String::new()),
        };
        w!(
            out,
            r#"<rect class="{class}" x="{x0:.1}" y="{BAND_TOP}" width="{:.1}" height="{BAND_H}"{fill}><title>{}</title></rect>"#,
            (x1 - x0).max(1.5),
            span_title(span)
        );
        let mid = BAND_TOP + BAND_H / 2.0;
        // The captions inside the band, where they fit (both when both do).
        let open = if span.open_as_of.is_some() {
            "still ON at --until"
        } else {
            "still ON at the end of the data"
        };
        const BEFORE: &str = "on before the data";
        let room = x1 - x0 - 24.0;
        let open_w = caption_width(open);
        let before_w = caption_width(BEFORE);
        let (show_open, show_before) = match (span.end.is_none(), span.start.is_none()) {
            (true, true) => {
                let both = open_w + before_w + 16.0 <= room;
                (both || open_w <= room, both)
            }
            (open, before) => (open && open_w <= room, before && before_w <= room),
        };
        if span.end.is_none() {
            // An arrow out of the right edge: still on when the data ends.
            w!(
                out,
                r#"<path class="arrow" d="M{:.1} {:.1} L{:.1} {mid:.1} L{:.1} {:.1} Z"/>"#,
                x1 - 1.0,
                BAND_TOP - 3.0,
                x1 + 11.0,
                x1 - 1.0,
                BAND_TOP + BAND_H + 3.0
            );
            if show_open {
                w!(
                    out,
                    r#"<text class="bl" x="{:.1}" y="{:.1}" text-anchor="end">{open}</text>"#,
                    x1 - 8.0,
                    mid + 4.0
                );
            }
        }
        if span.start.is_none() {
            w!(
                out,
                r#"<path class="arrow" d="M{:.1} {:.1} L{:.1} {mid:.1} L{:.1} {:.1} Z"/>"#,
                x0 + 1.0,
                BAND_TOP - 3.0,
                x0 - 11.0,
                x0 + 1.0,
                BAND_TOP + BAND_H + 3.0
            );
            if show_before {
                w!(
                    out,
                    r#"<text class="bl" x="{:.1}" y="{:.1}">{BEFORE}</text>"#,
                    x0 + 6.0,
                    mid + 4.0
                );
            }
        }
    }
    // Mailbox-audit records per day.
    match tl.per_day {
        Ok(per_day) => {
            let sums = axis.sum(per_day);
            let max = sums.iter().copied().max().unwrap_or(0);
            for (b, n) in sums.iter().enumerate() {
                if *n == 0 {
                    continue;
                }
                let (x0, x1) = axis.bucket_x(b);
                let (d0, d1) = axis.bucket_days_of(b);
                let h = (*n as f64 / max.max(1) as f64 * (BARS_BASE - BARS_TOP - 4.0)).max(1.0);
                let wd = ((x1 - x0) * 0.75).clamp(0.6, BAR_MAX);
                let when = if d0 == d1 {
                    d0.to_string()
                } else {
                    format!("{d0}..{d1}")
                };
                w!(
                    out,
                    r#"<rect class="mbar" x="{:.1}" y="{:.1}" width="{wd:.1}" height="{h:.1}"><title>{when}: {n} mailbox audit records</title></rect>"#,
                    x0 + (x1 - x0 - wd) / 2.0,
                    BARS_BASE - h
                );
            }
            w!(
                out,
                r#"<text class="yl" x="{:.1}" y="{:.1}">{max}</text>"#,
                TL_LEFT - 4.0,
                BARS_TOP + 8.0
            );
            if max == 0 {
                w!(
                    out,
                    r#"<text class="note" x="{:.1}" y="{:.1}">no mailbox audit record of this account in the archive</text>"#,
                    axis.left + 8.0,
                    BARS_TOP + 26.0
                );
            }
        }
        Err(why) => w!(
            out,
            r#"<text class="note" x="{:.1}" y="{:.1}">{}</text>"#,
            axis.left + 8.0,
            BARS_TOP + 26.0,
            Esc(why)
        ),
    }
    w!(
        out,
        r#"<line class="axis" x1="{:.1}" y1="{BARS_BASE}" x2="{:.1}" y2="{BARS_BASE}"/>"#,
        axis.left,
        axis.right
    );
    // Changes (with a guide down through the bars) and failed attempts, on top.
    let marks = merged_marks(&axis, &tl.marks);
    let labels = count_labels(&marks);
    for ((x, kind, n, title), label_x) in marks.into_iter().zip(labels) {
        let class = kind.class();
        let tip = if n == 1 {
            Esc(&title).to_string()
        } else {
            format!("{n} {}, first: {}", kind.plural(), Esc(&title))
        };
        if kind != MarkKind::Attempt {
            w!(
                out,
                r#"<line class="guide" x1="{x:.1}" y1="{:.1}" x2="{x:.1}" y2="{BARS_BASE}"/>"#,
                MARK_Y + 6.0
            );
        }
        let shape = match kind {
            MarkKind::Enable => format!(
                "M{:.1} {:.1} L{:.1} {:.1} L{:.1} {:.1} Z",
                x,
                MARK_Y - 6.0,
                x + 6.0,
                MARK_Y + 5.0,
                x - 6.0,
                MARK_Y + 5.0
            ),
            MarkKind::Disable => format!(
                "M{:.1} {:.1} L{:.1} {:.1} L{:.1} {:.1} Z",
                x,
                MARK_Y + 6.0,
                x + 6.0,
                MARK_Y - 5.0,
                x - 6.0,
                MARK_Y - 5.0
            ),
            MarkKind::Unknown => format!(
                "M{:.1} {:.1} L{:.1} {:.1} L{:.1} {:.1} L{:.1} {:.1} Z",
                x,
                MARK_Y - 6.0,
                x + 6.0,
                MARK_Y,
                x,
                MARK_Y + 6.0,
                x - 6.0,
                MARK_Y
            ),
            MarkKind::Attempt => format!(
                "M{:.1} {:.1} L{:.1} {:.1} M{:.1} {:.1} L{:.1} {:.1}",
                x - 5.0,
                ATTEMPT_Y - 5.0,
                x + 5.0,
                ATTEMPT_Y + 5.0,
                x + 5.0,
                ATTEMPT_Y - 5.0,
                x - 5.0,
                ATTEMPT_Y + 5.0
            ),
        };
        let label = match label_x {
            Some(lx) => format!(
                r#"<text class="ml" x="{lx:.1}" y="{:.1}">×{n}</text>"#,
                row_y(kind) + 4.0
            ),
            None => String::new(),
        };
        w!(
            out,
            r#"<g class="mark {class}"><path d="{shape}"/><title>{tip}</title></g>{label}"#
        );
    }
    axis.ticks(out, BARS_BASE, BARS_BASE);
    out.push_str("</svg>");
}

/// The estimated width of a band caption in a phone's font.
fn caption_width(text: &str) -> f64 {
    text.chars().count() as f64 * CAPTION_CHAR
}

/// The y of a mark's row.
fn row_y(kind: MarkKind) -> f64 {
    match kind {
        MarkKind::Attempt => ATTEMPT_Y,
        _ => MARK_Y,
    }
}

/// Where each grouped mark's `×N` label starts: right of the mark, else left of it,
/// where it covers no other mark or label of its row; `None`: a single mark, or no room
/// (the tooltip still counts the group).
fn count_labels(marks: &[(f64, MarkKind, usize, String)]) -> Vec<Option<f64>> {
    const HALF: f64 = 6.0;
    let mut out = vec![None; marks.len()];
    for attempts in [false, true] {
        let mut row: Vec<usize> = (0..marks.len())
            .filter(|&i| (marks[i].1 == MarkKind::Attempt) == attempts)
            .collect();
        row.sort_by(|&a, &b| marks[a].0.total_cmp(&marks[b].0));
        // What is taken on the row: every mark, then each label placed.
        let mut taken: Vec<(f64, f64)> = row
            .iter()
            .map(|&i| (marks[i].0 - HALF, marks[i].0 + HALF))
            .collect();
        for &i in &row {
            let (x, _, n, _) = &marks[i];
            if *n < 2 {
                continue;
            }
            let w = (1 + n.to_string().len()) as f64 * LABEL_CHAR;
            let free = |(a, b): (f64, f64)| taken.iter().all(|&(l, r)| b < l || r < a);
            let right = (x + HALF + 1.0, x + HALF + 1.0 + w);
            let left = (x - HALF - 1.0 - w, x - HALF - 1.0);
            if let Some(place) = [right, left].into_iter().find(|&p| free(p)) {
                out[i] = Some(place.0);
                taken.push(place);
            }
        }
    }
    out
}

fn span_title(s: Span) -> String {
    let at = |t: Option<i64>, none: &str| {
        t.and_then(|t| chrono::DateTime::from_timestamp(t, 0))
            .map_or(none.to_string(), |t| crate::time::rfc3339(&t))
    };
    let open = match s
        .open_as_of
        .and_then(|t| chrono::DateTime::from_timestamp(t, 0))
    {
        Some(until) => format!("still ON at {} (--until)", crate::time::rfc3339(&until)),
        None => "still ON at the end of the data".to_string(),
    };
    format!(
        "bypassed {} → {}",
        at(s.start, "(before the data)"),
        at(s.end, &open)
    )
}

/// Periods as x ranges; periods that nearly touch are drawn as one (the first one's
/// start kind, the last one's end kind).
fn merged_spans(axis: &Axis, spans: &[Span]) -> Vec<(f64, f64, Span)> {
    let mut out: Vec<(f64, f64, Span)> = Vec::new();
    for s in spans {
        let x0 = s.start.map_or(axis.left, |t| axis.x(t));
        let x1 = s.end.map_or(axis.right, |t| axis.x(t));
        match out.last_mut() {
            Some(last) if x0 - last.1 < SPAN_MERGE => {
                last.1 = last.1.max(x1);
                last.2.end = s.end;
                last.2.open_as_of = s.open_as_of;
            }
            _ => out.push((x0, x1, *s)),
        }
    }
    out
}

/// Markers of one kind within [`MARK_MERGE`] of the first of their group are drawn as
/// one: (x, kind, how many, the first one's title).
fn merged_marks(axis: &Axis, marks: &[Mark]) -> Vec<(f64, MarkKind, usize, String)> {
    let mut sorted: Vec<&Mark> = marks.iter().collect();
    sorted.sort_by_key(|m| (m.kind, m.t));
    let mut out: Vec<(f64, MarkKind, usize, String)> = Vec::new();
    for m in sorted {
        let x = axis.x(m.t);
        match out.last_mut() {
            Some(last) if last.1 == m.kind && x - last.0 < MARK_MERGE => last.2 += 1,
            _ => out.push((x, m.kind, 1, m.title.clone())),
        }
    }
    // Draw enables and disables over failed attempts.
    out.sort_by_key(|m| std::cmp::Reverse(m.1));
    out
}

fn gap_pattern(out: &mut String, id: &str) {
    w!(
        out,
        r#"<defs><pattern id="{id}" width="6" height="6" patternUnits="userSpaceOnUse" patternTransform="rotate(45)"><rect class="gap-bg" width="6" height="6"/><line class="gap-line" x1="0" y1="0" x2="0" y2="6"/></pattern></defs>"#
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    #[test]
    fn long_spans_are_bucketed() {
        let a = Axis::new(d("2000-01-01"), d("2024-12-31"), 0.0, 1000.0);
        assert!(a.buckets() <= MAX_BARS);
        let short = Axis::new(d("2024-01-01"), d("2024-01-31"), 0.0, 1000.0);
        assert_eq!(short.bucket_days(), 1);
        assert_eq!(short.buckets(), 31);
        assert_eq!(short.x(midnight(d("2024-01-01"))), 0.0);
        assert_eq!(short.x(midnight(d("2024-02-01"))), 1000.0);
        assert_eq!(short.x(0), 0.0, "clamped");
    }

    #[test]
    fn gap_days_are_drawn_as_runs() {
        let a = Axis::new(d("2024-01-01"), d("2024-01-31"), 0.0, 1000.0);
        let gaps = [
            d("2024-01-03"),
            d("2024-01-04"),
            d("2024-01-05"),
            d("2024-01-20"),
        ];
        let runs = a.gap_runs(&gaps);
        assert_eq!(runs.len(), 2);
        assert_eq!(
            runs[0].2,
            "2024-01-03..2024-01-05: 3 day(s) without any record in the archive"
        );
        assert_eq!(runs[1].2, "2024-01-20: no record in the archive");
    }

    #[test]
    fn periods_that_nearly_touch_make_one_band() {
        let a = Axis::new(d("2024-01-01"), d("2024-12-31"), 0.0, 1000.0);
        let t = midnight(d("2024-01-01"));
        // A toggle every hour for a year, then an open period.
        let mut spans: Vec<Span> = (0..8000)
            .map(|h| Span {
                start: Some(t + h * 3600),
                end: Some(t + h * 3600 + 1800),
                open_as_of: None,
            })
            .collect();
        spans.push(Span {
            start: Some(t + 8000 * 3600 + 600),
            end: None,
            open_as_of: None,
        });
        let bands = merged_spans(&a, &spans);
        assert_eq!(bands.len(), 1);
        assert_eq!(bands[0].2.end, None, "the last one's end: still open");
        let apart = [
            Span {
                start: None,
                end: Some(t + 86_400),
                open_as_of: None,
            },
            Span {
                start: Some(t + 100 * 86_400),
                end: Some(t + 101 * 86_400),
                open_as_of: None,
            },
        ];
        let bands = merged_spans(&a, &apart);
        assert_eq!(bands.len(), 2);
        assert_eq!(bands[0].0, 0.0, "predates: from the left edge");
    }

    #[test]
    fn close_marks_merge_per_kind() {
        let a = Axis::new(d("2024-01-01"), d("2024-12-31"), 0.0, 1000.0);
        let t = midnight(d("2024-06-01"));
        let marks: Vec<Mark> = (0..1000)
            .map(|i| Mark {
                t: t + i,
                kind: if i % 2 == 0 {
                    MarkKind::Enable
                } else {
                    MarkKind::Disable
                },
                title: String::new(),
            })
            .collect();
        let merged = merged_marks(&a, &marks);
        assert_eq!(merged.len(), 2);
        assert_eq!(merged.iter().map(|m| m.2).sum::<usize>(), 1000);
    }
}
