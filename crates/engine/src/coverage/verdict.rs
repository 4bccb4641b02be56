//! What the archive covers, and whether its silence means anything.
//!
//! An archive without a single Exchange admin record cannot show a bypass (the cmdlet
//! is one), and a day with no record at all inside the archive's span is a day nobody
//! can vouch for. The verdict says so instead of a bare "no findings".

use chrono::{DateTime, NaiveDate, Utc};

use crate::coverage::{Coverage, date_of};

/// The coverage verdict.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CoverageReport {
    /// Earliest record time.
    pub first: Option<DateTime<Utc>>,
    /// Latest record time.
    pub last: Option<DateTime<Utc>>,
    /// Records counted (dated and undated).
    pub records: u64,
    /// Records whose time could not be read.
    pub undated: u64,
    /// Records per day, in date order.
    pub days: Vec<(NaiveDate, u64)>,
    /// Days between the first and the last with no record.
    pub gap_days: Vec<NaiveDate>,
    /// Exchange admin records.
    pub exchange_admin_records: u64,
    /// Whether the absence of findings means anything.
    pub conclusive: bool,
    /// Why not, when it does not.
    pub reasons: Vec<String>,
}

/// Adds what the reading itself leaves in doubt: lines holding a rule literal that could
/// not be read (a finding may be among them), and inputs that could not be read in
/// full. Either makes the coverage inconclusive, whatever the records say.
pub fn doubt(
    mut report: CoverageReport,
    malformed: u64,
    first_malformed: Option<(&str, u64)>,
    unread: &[&str],
) -> CoverageReport {
    if malformed > 0 {
        let at = first_malformed.map_or(String::new(), |(path, line)| {
            format!(", the first at {path}:{line}")
        });
        report.reasons.push(format!(
            "{malformed} line(s) holding a rule literal could not be read{at}: a finding \
             may be among them"
        ));
    }
    if let Some(first) = unread.first() {
        report.reasons.push(format!(
            "{} input(s) could not be read in full (the first: {first}): what they hold \
             past that is not in this report",
            unread.len()
        ));
    }
    if malformed > 0 || !unread.is_empty() {
        report.conclusive = false;
    }
    report
}

/// Judges a coverage.
pub fn report(c: &Coverage) -> CoverageReport {
    let days: Vec<(NaiveDate, u64)> = c.days.iter().map(|(&d, &n)| (date_of(d), n)).collect();
    let gap_days: Vec<NaiveDate> = match (c.days.keys().next(), c.days.keys().next_back()) {
        (Some(&lo), Some(&hi)) => (lo..=hi)
            .filter(|d| !c.days.contains_key(d))
            .map(date_of)
            .collect(),
        _ => Vec::new(),
    };
    let mut reasons = Vec::new();
    let records = c.records();
    if records == 0 {
        reasons.push("no records were read".to_string());
    } else if c.exchange_admin == 0 {
        reasons.push(
            "no Exchange admin record (RecordType 1): this archive cannot show a bypass change"
                .to_string(),
        );
    }
    if !gap_days.is_empty() {
        reasons.push(format!(
            "{} day(s) without any record inside the archive's span ({}): no finding there means nothing",
            gap_days.len(),
            summarize_days(&gap_days)
        ));
    }
    if c.undated > 0 && records > 0 {
        reasons.push(format!("{} record(s) without a readable time", c.undated));
    }
    CoverageReport {
        first: c.first.and_then(|t| DateTime::from_timestamp(t, 0)),
        last: c.last.and_then(|t| DateTime::from_timestamp(t, 0)),
        records,
        undated: c.undated,
        days,
        gap_days,
        exchange_admin_records: c.exchange_admin,
        conclusive: records > 0 && c.exchange_admin > 0 && reasons.is_empty(),
        reasons,
    }
}

/// `2024-01-03, 2024-01-05..2024-01-09` (runs of consecutive days joined).
pub fn summarize_days(days: &[NaiveDate]) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut i = 0;
    while i < days.len() {
        let mut j = i;
        while j + 1 < days.len() && days[j + 1] == days[j] + chrono::Days::new(1) {
            j += 1;
        }
        parts.push(if i == j {
            days[i].to_string()
        } else {
            format!("{}..{}", days[i], days[j])
        });
        i = j + 1;
    }
    if parts.len() > 6 {
        let more = parts.len() - 6;
        parts.truncate(6);
        parts.push(format!("and {more} more"));
    }
    parts.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gaps_and_verdict() {
        let mut c = Coverage::default();
        for d in [19723, 19724, 19727] {
            c.days.insert(d, 5);
        }
        c.first = Some(19723 * 86_400);
        c.last = Some(19727 * 86_400 + 10);
        let r = report(&c);
        assert_eq!(r.gap_days.len(), 2);
        assert!(!r.conclusive);
        assert_eq!(r.reasons.len(), 2, "{:?}", r.reasons);
        c.exchange_admin = 3;
        c.days.insert(19725, 1);
        c.days.insert(19726, 1);
        let r = report(&c);
        assert!(r.conclusive, "{:?}", r.reasons);
        assert!(!report(&Coverage::default()).conclusive);
    }

    #[test]
    fn unreadable_literal_lines_and_inputs_make_it_inconclusive() {
        let mut c = Coverage::default();
        c.days.insert(19_700, 5);
        c.exchange_admin = 3;
        let whole = report(&c);
        assert!(whole.conclusive, "{:?}", whole.reasons);
        assert_eq!(doubt(whole.clone(), 0, None, &[]), whole);
        let r = doubt(whole.clone(), 2, Some(("a.jsonl", 7)), &[]);
        assert!(!r.conclusive);
        assert_eq!(
            r.reasons,
            [
                "2 line(s) holding a rule literal could not be read, the first at a.jsonl:7: a \
              finding may be among them"
            ]
        );
        let r = doubt(whole, 0, None, &["b.gz", "c.zst"]);
        assert!(!r.conclusive);
        assert!(r.reasons[0].starts_with("2 input(s) could not be read in full (the first: b.gz)"));
    }

    #[test]
    fn day_runs() {
        let d = |s: &str| s.parse::<NaiveDate>().unwrap();
        let days = [
            d("2024-01-01"),
            d("2024-01-03"),
            d("2024-01-04"),
            d("2024-01-05"),
        ];
        assert_eq!(summarize_days(&days), "2024-01-01, 2024-01-03..2024-01-05");
    }
}
