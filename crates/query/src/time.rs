//! Date-times as audit records write them, read without chrono's format interpreter.
//!
//! Place in the flow: beside the query languages, which know no record; the engine
//! reads a record's time with it, and [`crate::esql`] its date fields, before falling
//! back to chrono's general parsers for any other spelling.

use chrono::{DateTime, NaiveDate, NaiveTime, Utc};

/// `YYYY-MM-DDTHH:MM:SS`, an optional fraction of one to nine digits and an optional
/// `Z`, nothing around it, as UTC: what chrono's `%Y-%m-%dT%H:%M:%S%.f` (and RFC 3339,
/// for the `Z` form) reads such a text as. `None` for any other text (an offset, a
/// space, a tenth fraction digit, an invalid date, a leap second), which a general
/// parser then reads.
pub fn audit_date_time(b: &[u8]) -> Option<DateTime<Utc>> {
    if b.len() < 19
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        b[r].iter().try_fold(0u32, |n, &d| {
            d.is_ascii_digit().then(|| n * 10 + u32::from(d - b'0'))
        })
    };
    let date = NaiveDate::from_ymd_opt(num(0..4)? as i32, num(5..7)?, num(8..10)?)?;
    let mut rest = &b[19..];
    let mut nanos = 0u32;
    if let Some(frac) = rest.strip_prefix(b".") {
        let digits = frac.iter().take_while(|d| d.is_ascii_digit()).count();
        if digits == 0 || digits > 9 {
            return None;
        }
        nanos = num(20..20 + digits)? * 10u32.pow(9 - digits as u32);
        rest = &frac[digits..];
    }
    if !(rest.is_empty() || rest == b"Z") {
        return None;
    }
    let time = NaiveTime::from_hms_nano_opt(num(11..13)?, num(14..16)?, num(17..19)?, nanos)?;
    Some(date.and_time(time).and_utc())
}
