//! Archive coverage: when the records are from, and whether Exchange admin records are
//! there at all, counted at byte level for every record without parsing it.
//!
//! Place in the flow: `scan` and `document` call [`Tally::record`] on the bytes of each
//! record (a line, a CSV row, a JSON object) while they are cache-hot from the newline
//! pass; the per-chunk [`Coverage`] merges like the rest of a partial. The analysis turns
//! it into a verdict: an archive without a single Exchange admin record, or with days
//! missing, cannot show a bypass on those days, and "no findings" must say so.
//!
//! The probe looks for the record's time key (`CreationTime`, else `@timestamp`) and
//! for `RecordType` (else `ExchangeAdmin`), whatever quoting surrounds them (`"k":"v"`,
//! CSV's `""k"":""v""`, an escaped `\"k\":\"v\"` string), and reads the fixed-width
//! ISO 8601 time after it. It never allocates and reads only a record's prefix in the
//! usual case (the Management Activity API writes `CreationTime` first); a record in
//! any other key order costs one substring search per key.

pub mod verdict;

use std::collections::BTreeMap;
use std::sync::LazyLock;

use chrono::{DateTime, NaiveDate, Utc};
use memchr::memmem::Finder;
use serde::{Deserialize, Serialize};

/// Record times and kinds of some records; merges by addition.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Coverage {
    /// Records per UTC day (days since 1970-01-01).
    pub days: BTreeMap<i32, u64>,
    /// Earliest record time (Unix seconds).
    pub first: Option<i64>,
    /// Latest record time (Unix seconds).
    pub last: Option<i64>,
    /// Records whose time could not be read from their bytes.
    pub undated: u64,
    /// Exchange admin records (`RecordType` 1 / `ExchangeAdmin`).
    pub exchange_admin: u64,
}

impl Coverage {
    /// Adds another coverage (commutative and associative).
    pub fn merge(&mut self, other: Coverage) {
        if self.days.is_empty() {
            self.days = other.days;
        } else {
            for (day, n) in other.days {
                *self.days.entry(day).or_default() += n;
            }
        }
        self.first = min_opt(self.first, other.first);
        self.last = max_opt(self.last, other.last);
        self.undated += other.undated;
        self.exchange_admin += other.exchange_admin;
    }

    /// Records counted (dated and undated).
    pub fn records(&self) -> u64 {
        self.days.values().sum::<u64>() + self.undated
    }
}

fn min_opt(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn max_opt(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

/// Counts records into a [`Coverage`]; keeps the current day's count in a register
/// (records mostly come in time order) and touches the map only when the day changes.
#[derive(Debug, Default)]
pub struct Tally {
    coverage: Coverage,
    day: i32,
    in_day: u64,
    /// The date bytes (`YYYY-MM-DD`) last parsed and their day number: records of the
    /// same day skip the calendar arithmetic.
    date: [u8; 10],
    date_day: i64,
    /// The earliest and latest `HH:MM:SS` of the records of the cached date counted on
    /// the clock path ([`Tally::clock`]), as big-endian numbers (ordered as the times
    /// are): the earliest complemented, so that 0 is "none" for both. Folded into the
    /// span's first and last when the date changes or the span is taken.
    clock_earliest: u64,
    clock_latest: u64,
    /// The time range and undated records since the last [`Tally::take_span`] (the
    /// block index's entry; folded into the coverage when taken).
    span_first: Option<i64>,
    span_last: Option<i64>,
    span_undated: u64,
    /// Records probed in full ([`Tally::general`]).
    general: u64,
}

impl Tally {
    /// Counts one record from its bytes; returns its `RecordType` value whenever the
    /// probe read one (on the way, so the scan need not read it again:
    /// [`record_type_value_number`]).
    #[inline]
    pub fn record<'b>(&mut self, bytes: &'b [u8]) -> Option<&'b [u8]> {
        self.probe(bytes, None)
    }

    /// [`Tally::record`], the record's keys read from the places a block sweep found
    /// (`crate::scan::sweep`) instead of searched for: the same count, the same value.
    #[inline]
    pub fn record_keyed<'b>(&mut self, bytes: &'b [u8], keys: Keys<'_>) -> Option<&'b [u8]> {
        self.probe(bytes, Some(keys))
    }

    /// Records probed in full since the tally began (their layout is not the
    /// Management Activity API's, `canonical_parts`): the scan sweeps for the keys of
    /// the next block when they are many.
    pub fn general(&self) -> u64 {
        self.general
    }

    #[inline]
    fn probe<'b>(&mut self, bytes: &'b [u8], keys: Option<Keys<'_>>) -> Option<&'b [u8]> {
        let (value, record_type, admin) = match canonical_parts(bytes) {
            Some((value, record_type)) => {
                (Some(value), Some(record_type), admin_value(record_type))
            }
            None => {
                self.general += 1;
                let (record_type, time) = match keys {
                    Some(k) => (
                        k.record_type(bytes),
                        time_value_with(bytes, |b| k.creation_time(b)),
                    ),
                    None => (record_type(bytes), time_value(bytes)),
                };
                let admin = match record_type {
                    Some(v) => admin_value(v),
                    None => EXCHANGE_ADMIN.find(bytes).is_some(),
                };
                (time, record_type, admin)
            }
        };
        self.coverage.exchange_admin += u64::from(admin);
        if let Some(key) = value.and_then(|v| self.clock(v)) {
            // A UTC time on the cached date: count it with no arithmetic at all.
            let day = self.date_day as i32;
            if day != self.day {
                self.flush();
                self.day = day;
            }
            self.in_day += 1;
            self.clock_earliest = self.clock_earliest.max(!key);
            self.clock_latest = self.clock_latest.max(key);
            return record_type;
        }
        match value
            .and_then(|v| self.parse_time_cached(v))
            .or_else(|| creation_date(bytes))
        {
            Some(t) => self.dated(t),
            None => self.span_undated += 1,
        }
        record_type
    }

    /// The `HH:MM:SS` bytes of a time on the cached date, as a big-endian number, when
    /// the time is spelled the usual way (`[T ]HH:MM:SS`, seconds below 60, then a
    /// fraction, `Z` or nothing: UTC). Byte order is then time order, so the span's
    /// earliest and latest are kept as these numbers and parsed only when taken. Any
    /// other spelling (an offset, a leap second, a bad digit) is `None`: [`parse_time`]
    /// reads it.
    #[inline]
    fn clock(&self, b: &[u8]) -> Option<u64> {
        if b.len() < 20 || b[..10] != self.date || self.date[0] == 0 {
            return None;
        }
        let c: [u8; 8] = b[11..19].try_into().ok()?;
        let digit = |x: u8, max: u8| (b'0'..=max).contains(&x);
        let usual = matches!(b[10], b'T' | b' ')
            && (digit(c[0], b'1') && digit(c[1], b'9') || c[0] == b'2' && digit(c[1], b'3'))
            && c[2] == b':'
            && digit(c[3], b'5')
            && digit(c[4], b'9')
            && c[5] == b':'
            && digit(c[6], b'5')
            && digit(c[7], b'9')
            && match b[19] {
                b'"' | b'Z' | b'\\' => true,
                _ => offset_of(&b[19..]) == Some(0),
            };
        usual.then(|| u64::from_be_bytes(c))
    }

    /// Folds the clock path's earliest and latest times into the span's.
    fn fold_clock(&mut self) {
        if self.clock_latest == 0 {
            return;
        }
        let day = self.date_day * 86_400;
        let first = day + clock_seconds(!self.clock_earliest);
        let last = day + clock_seconds(self.clock_latest);
        self.span_first = min_opt(self.span_first, Some(first));
        self.span_last = max_opt(self.span_last, Some(last));
        self.clock_earliest = 0;
        self.clock_latest = 0;
    }

    /// [`parse_time`], with the day number of the last date reused.
    #[inline]
    fn parse_time_cached(&mut self, b: &[u8]) -> Option<i64> {
        if b.len() >= 19 && b[..10] == self.date && self.date[0] != 0 {
            let day = self.date_day;
            return time_of_day(b).map(|secs| day * 86_400 + secs);
        }
        let t = parse_time(b)?;
        let day = parse_date(b)?;
        // The clock path's times belong to the date being replaced.
        self.fold_clock();
        self.date.copy_from_slice(&b[..10]);
        self.date_day = day;
        Some(t)
    }

    /// Counts a record whose bytes are not at hand (a line too long to keep).
    pub fn undated(&mut self) {
        self.span_undated += 1;
    }

    /// The earliest and latest time and the undated records counted since the last
    /// call (an entry of the block index, `crate::index`).
    pub fn take_span(&mut self) -> (Option<i64>, Option<i64>, u64) {
        self.fold_clock();
        let span = (
            self.span_first.take(),
            self.span_last.take(),
            std::mem::take(&mut self.span_undated),
        );
        let c = &mut self.coverage;
        c.first = min_opt(c.first, span.0);
        c.last = max_opt(c.last, span.1);
        c.undated += span.2;
        span
    }

    fn dated(&mut self, t: i64) {
        let day = t.div_euclid(86_400) as i32;
        if day != self.day {
            self.flush();
            self.day = day;
        }
        self.in_day += 1;
        if self.span_first.is_none_or(|f| t < f) {
            self.span_first = Some(t);
        }
        if self.span_last.is_none_or(|l| t > l) {
            self.span_last = Some(t);
        }
    }

    fn flush(&mut self) {
        if self.in_day > 0 {
            *self.coverage.days.entry(self.day).or_default() += self.in_day;
            self.in_day = 0;
        }
    }

    /// The coverage counted.
    pub fn finish(mut self) -> Coverage {
        self.take_span();
        self.flush();
        self.coverage
    }
}

static CREATION_TIME: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new("CreationTime"));
static AT_TIMESTAMP: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new("@timestamp"));
static CREATION_DATE: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new("CreationDate"));
static EXCHANGE_ADMIN: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new("ExchangeAdmin"));
static RECORD_TYPE: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new("RecordType"));

/// The time of a record (Unix seconds) and whether it is an Exchange admin record,
/// read from its bytes.
pub fn probe(bytes: &[u8]) -> (Option<i64>, bool) {
    (
        time_value(bytes).and_then(parse_time),
        is_exchange_admin(bytes),
    )
}

/// The time of a PowerShell `Search-UnifiedAuditLog` object whose `AuditData` has no
/// `CreationTime`: its `CreationDate` (`\/Date(ms)\/`, ISO or culture-formatted), read
/// as the record view reads it. Only reached when no `CreationTime` or `@timestamp` was.
fn creation_date(bytes: &[u8]) -> Option<i64> {
    let v = value_after(bytes, &CREATION_DATE)?;
    let end = v.iter().take(64).position(|&b| b == b'"')?;
    let text = std::str::from_utf8(&v[..end]).ok()?;
    let text = text.trim_end_matches('\\').replace("\\/", "/");
    crate::record::parse_creation_date(&text).map(|t| t.timestamp())
}

/// The bytes where a record's time value starts.
#[inline]
fn time_value(bytes: &[u8]) -> Option<&[u8]> {
    time_value_with(bytes, |b| value_after(b, &CREATION_TIME))
}

/// [`time_value`], the `CreationTime` key's value read by `creation_time`.
#[inline]
fn time_value_with<'a>(
    bytes: &'a [u8],
    creation_time: impl FnOnce(&'a [u8]) -> Option<&'a [u8]>,
) -> Option<&'a [u8]> {
    if let Some(rest) = bytes.strip_prefix(b"{\"CreationTime\":\"") {
        Some(rest)
    } else if let Some(rest) = bytes.strip_prefix(b"{\"@timestamp\":\"") {
        Some(rest)
    } else {
        creation_time(bytes).or_else(|| value_after(bytes, &AT_TIMESTAMP))
    }
}

/// Where a record's `CreationTime` and `RecordType` keys can be, as a block sweep found
/// them (`crate::scan::sweep`): positions of a capital `T` in the data the record is
/// part of, a superset of the keys' `T`s, in increasing order. Each is checked against
/// the whole key, so the values read are those the substring searches read.
#[derive(Clone, Copy, Debug)]
pub struct Keys<'a> {
    places: &'a [usize],
    start: usize,
}

impl<'a> Keys<'a> {
    /// The places found in the record that starts at `start` in the swept data (those
    /// before its start are passed over; the caller leaves out those past its end).
    pub fn new(places: &'a [usize], start: usize) -> Keys<'a> {
        Keys { places, start }
    }

    /// The value after the first `key` (whose `T` is at `t`) followed by a colon, as
    /// [`value_after`] reads it.
    #[inline]
    fn value<'b>(&self, bytes: &'b [u8], key: &[u8], t: usize) -> Option<&'b [u8]> {
        self.places.iter().find_map(|&p| {
            let at = p.checked_sub(self.start)?.checked_sub(t)?;
            let after = at + key.len();
            if bytes.get(at..after)? != key {
                return None;
            }
            colon_after(bytes, after)
        })
    }

    fn creation_time<'b>(&self, bytes: &'b [u8]) -> Option<&'b [u8]> {
        self.value(bytes, b"CreationTime", 8)
    }

    fn record_type<'b>(&self, bytes: &'b [u8]) -> Option<&'b [u8]> {
        self.value(bytes, b"RecordType", 6)
    }
}

fn is_exchange_admin(bytes: &[u8]) -> bool {
    match record_type(bytes) {
        Some(v) => admin_value(v),
        None => EXCHANGE_ADMIN.find(bytes).is_some(),
    }
}

fn admin_value(v: &[u8]) -> bool {
    match v.first() {
        Some(b'1') => !v.get(1).is_some_and(u8::is_ascii_digit),
        Some(_) => v.starts_with(b"ExchangeAdmin"),
        None => false,
    }
}

/// The fast path for records in the Management Activity API's own key order
/// (`CreationTime`, `Id`, `Operation`, `OrganizationId`, `RecordType`, …), which is how
/// the API, `Search-UnifiedAuditLog`'s `AuditData` and most collectors write them: the
/// time value and the `RecordType` value, read with a few compares and two short
/// `memchr`s. `None` for any other layout (the general probe then runs).
#[inline]
fn canonical_parts(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    let time = bytes.strip_prefix(b"{\"CreationTime\":\"")?;
    Some((time, canonical_record_type(bytes)?))
}

/// [`canonical_parts`] with whether the record is Exchange admin.
#[cfg(test)]
fn canonical(bytes: &[u8]) -> Option<(&[u8], bool)> {
    canonical_parts(bytes).map(|(time, record_type)| (time, admin_value(record_type)))
}

/// The bytes after the closing quote of a JSON string whose text starts `s`; `usual`
/// is its usual length (a GUID's 36, a time's 19), checked first. A quote found by
/// mistake (an escaped `\"`) only makes the caller's next key check fail, so the
/// general probe takes over: never a wrong answer, at worst a slower one.
#[inline]
fn after_string(s: &[u8], usual: usize) -> Option<&[u8]> {
    if usual > 0 && s.get(usual) == Some(&b'"') && s[usual - 1] != b'\\' {
        return Some(&s[usual + 1..]);
    }
    let n = first_quote(s)?;
    (n == 0 || s[n - 1] != b'\\').then(|| &s[n + 1..])
}

/// The first `"` in `s`. Strings here are short (an operation's name): eight bytes at a
/// time in a register for the first 64, where a `memchr` call cost more than the
/// search (a tenth of the first pass on the API's own key order), then `memchr`.
#[inline]
fn first_quote(s: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    let mut at = 0;
    while at + 8 <= s.len().min(64) {
        let word = u64::from_le_bytes(s[at..at + 8].try_into().expect("8 bytes"));
        let x = word ^ (ONES * u64::from(b'"'));
        // The lowest byte of `x` that is zero has its high bit set here; a bit above
        // it may be a false one, never a bit below.
        let zero = x.wrapping_sub(ONES) & !x & (ONES << 7);
        if zero != 0 {
            return Some(at + zero.trailing_zeros() as usize / 8);
        }
        at += 8;
    }
    memchr::memchr(b'"', &s[at..]).map(|i| at + i)
}

/// The `RecordType` of a record read from its bytes: its number, or the number of the
/// name PowerShell writes (`ExchangeAdmin`), whatever quoting surrounds it.
pub fn record_type_number(bytes: &[u8]) -> Option<u16> {
    let v = match canonical_record_type(bytes) {
        Some(v) => v,
        None => record_type(bytes)?,
    };
    record_type_value_number(v)
}

/// The number of a `RecordType` value (the bytes after its key): its digits, or the
/// number of the name PowerShell writes.
pub fn record_type_value_number(v: &[u8]) -> Option<u16> {
    let digits = v.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits > 0 {
        return std::str::from_utf8(&v[..digits]).ok()?.parse().ok();
    }
    let name = v
        .iter()
        .take(64)
        .take_while(|b| b.is_ascii_alphanumeric())
        .count();
    crate::field::record_type_number(std::str::from_utf8(&v[..name]).ok()?)
}

/// The `RecordType` value of a record in the Management Activity API's key order.
#[inline]
fn canonical_record_type(bytes: &[u8]) -> Option<&[u8]> {
    let time = bytes.strip_prefix(b"{\"CreationTime\":\"")?;
    let rest = after_string(time, 19)?;
    let rest = rest.strip_prefix(b",\"Id\":\"")?;
    let rest = after_string(rest, 36)?;
    let rest = rest.strip_prefix(b",\"Operation\":\"")?;
    let rest = after_string(rest, 0)?;
    let rest = rest.strip_prefix(b",\"OrganizationId\":\"")?;
    let rest = after_string(rest, 36)?;
    rest.strip_prefix(b",\"RecordType\":")
}

/// The value after the `RecordType` key. Found with a substring search, as the time
/// key is: a `memchr` loop on its capital `R` stopped at every `R` before the key,
/// which cost a third of the first pass on records whose keys come in any order (a
/// call per `R`, about three per record).
fn record_type(bytes: &[u8]) -> Option<&[u8]> {
    value_after(bytes, &RECORD_TYPE)
}

/// The bytes after a key and the quoting, colon and spaces that follow it (at most 8
/// such bytes: `":"`, `"":""`, `\":\"`, `": "`).
fn value_after<'a>(bytes: &'a [u8], key: &Finder<'_>) -> Option<&'a [u8]> {
    let mut from = 0;
    while let Some(i) = key.find(&bytes[from..]) {
        let after = from + i + key.needle().len();
        if let Some(value) = colon_after(bytes, after) {
            return Some(value);
        }
        // The name appeared as a value, not a key: look further.
        from = after;
    }
    None
}

/// The value after a key that ends at `after`, when the quoting, colon and spaces
/// that follow it (at most 8 bytes) hold a colon.
#[inline]
fn colon_after(bytes: &[u8], after: usize) -> Option<&[u8]> {
    let rest = &bytes[after..];
    let skip = rest
        .iter()
        .take(8)
        .take_while(|b| matches!(b, b'"' | b'\\' | b':' | b' '))
        .count();
    rest[..skip].contains(&b':').then(|| &rest[skip..])
}

/// Seconds into the day (offset applied) of a time whose date part is already known.
#[inline]
fn time_of_day(b: &[u8]) -> Option<i64> {
    if !matches!(b[10], b'T' | b' ') || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let d = |i: usize| -> Option<i64> {
        let (a, c) = (b[i], b[i + 1]);
        (a.is_ascii_digit() && c.is_ascii_digit())
            .then(|| i64::from(a - b'0') * 10 + i64::from(c - b'0'))
    };
    let (h, mi, s) = (d(11)?, d(14)?, d(17)?);
    if h > 23 || mi > 59 || s > 60 {
        return None;
    }
    Some(h * 3600 + mi * 60 + s - offset_of(&b[19..])?)
}

/// The UTC offset (seconds) after the seconds: an optional fraction, then `Z`, nothing
/// or `±HH:MM`.
#[inline]
fn offset_of(mut rest: &[u8]) -> Option<i64> {
    if let Some(frac) = rest.strip_prefix(b".") {
        let n = frac.iter().take_while(|c| c.is_ascii_digit()).count();
        rest = &frac[n..];
    }
    Some(match rest {
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2, ..] => {
            let digits = [*h1, *h2, *m1, *m2];
            if !digits.iter().all(u8::is_ascii_digit) {
                return None;
            }
            let v = |a: u8, b: u8| i64::from(a - b'0') * 10 + i64::from(b - b'0');
            let secs = v(*h1, *h2) * 3600 + v(*m1, *m2) * 60;
            if *sign == b'+' { secs } else { -secs }
        }
        _ => 0,
    })
}

/// Reads `YYYY-MM-DD[T ]HH:MM:SS[.frac][Z|±HH:MM]` at the start of `b` (a missing offset
/// is UTC, as `CreationTime` is written). The fraction is dropped: coverage counts in
/// seconds.
fn parse_time(b: &[u8]) -> Option<i64> {
    if b.len() < 19 {
        return None;
    }
    Some(parse_date(b)? * 86_400 + time_of_day(b)?)
}

/// The day number of the `YYYY-MM-DD` at the start of `b` (at least 10 bytes).
fn parse_date(b: &[u8]) -> Option<i64> {
    if b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        b[r].iter().try_fold(0i64, |n, &d| {
            d.is_ascii_digit().then(|| n * 10 + i64::from(d - b'0'))
        })
    };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) {
        return None;
    }
    Some(days_from_civil(y, mo, d))
}

/// Seconds into the day of a [`Tally::clock`] number (`HH:MM:SS`, checked there).
fn clock_seconds(key: u64) -> i64 {
    let c = key.to_be_bytes();
    let two = |i: usize| i64::from(c[i] - b'0') * 10 + i64::from(c[i + 1] - b'0');
    two(0) * 3600 + two(3) * 60 + two(6)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The calendar date of a day number.
pub fn date_of(day: i32) -> NaiveDate {
    DateTime::<Utc>::from_timestamp(i64::from(day) * 86_400, 0)
        .map(|t| t.date_naive())
        .unwrap_or_default()
}

/// The day number of a time.
pub fn day_of(t: &DateTime<Utc>) -> i32 {
    t.timestamp().div_euclid(86_400) as i32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: &str) -> i64 {
        crate::record::parse_timestamp(s).unwrap().timestamp()
    }

    #[test]
    fn times_are_read_in_every_quoting() {
        let t = secs("2024-03-05T10:11:12Z");
        let cases: [&[u8]; 6] = [
            br#"{"CreationTime":"2024-03-05T10:11:12","Id":"x"}"#,
            br#"{"Id":"x","CreationTime": "2024-03-05T10:11:12.1234567"}"#,
            br#"2024-03-05T10:11:12.0000000Z,u,Op,"{""CreationTime"":""2024-03-05T10:11:12"",""x"":1}""#,
            br#"{"AuditData":"{\"CreationTime\":\"2024-03-05T10:11:12\"}"}"#,
            br#"{"@timestamp":"2024-03-05T10:11:12.000Z","event":{}}"#,
            br#"{"event":{},"@timestamp":"2024-03-05T12:11:12+02:00"}"#,
        ];
        for c in cases {
            assert_eq!(probe(c).0, Some(t), "{}", String::from_utf8_lossy(c));
        }
        assert_eq!(probe(br#"{"Operation":"CreationTime"}"#).0, None);
        assert_eq!(probe(br#"{"CreationTime":"yesterday"}"#).0, None);
        assert_eq!(probe(br#"{"CreationTime":"2024-13-05T10:11:12"}"#).0, None);
    }

    #[test]
    fn powershell_creation_dates_are_read_when_there_is_no_creation_time() {
        let mut t = Tally::default();
        t.record(
            br#"{"CreationDate": "\/Date(1684580820000)\/", "AuditData": "{\"Operation\":\"X\"}"}"#,
        );
        t.record(br#"{"CreationDate":"5/20/2023 11:07:00 AM","Operations":"X"}"#);
        let c = t.finish();
        assert_eq!(c.undated, 0, "{c:?}");
        assert_eq!(c.first, Some(1_684_580_820));
    }

    #[test]
    fn day_numbers_agree_with_chrono() {
        let mut rng = fastrand::Rng::with_seed(3);
        for _ in 0..10_000 {
            let t = rng.i64(-2_000_000_000..8_000_000_000);
            let dt = DateTime::from_timestamp(t, 0).unwrap();
            let text = dt.format("%Y-%m-%dT%H:%M:%S").to_string();
            assert_eq!(parse_time(text.as_bytes()), Some(t), "{text}");
            assert_eq!(date_of(day_of(&dt)), dt.date_naive());
        }
    }

    #[test]
    fn the_cached_day_gives_the_same_times() {
        let mut t = Tally::default();
        for text in [
            "2024-03-05T10:11:12",
            "2024-03-05T23:59:59.5Z",
            "2024-03-05T01:00:00+02:00",
            "2024-03-05 00:00:00",
            "2024-03-05T25:00:00",
            "2024-03-06T00:00:00",
        ] {
            assert_eq!(
                t.parse_time_cached(text.as_bytes()),
                parse_time(text.as_bytes()),
                "{text}"
            );
        }
        let api = br#"{"CreationTime":"2024-03-05T10:11:12","Id":"x","Operation":"Op","OrganizationId":"o","RecordType":1,"UserId":"u"}"#;
        let (time, admin) = canonical(api).unwrap();
        assert!(admin);
        assert_eq!(parse_time(time), probe(api).0);
        let other = br#"{"CreationTime":"2024-03-05T10:11:12","Id":"x","Operation":"Op","OrganizationId":"o","RecordType":15}"#;
        assert_eq!(canonical(other).map(|c| c.1), Some(false));
        assert_eq!(
            canonical(br#"{"CreationTime":"2024-03-05T10:11:12","RecordType":1}"#),
            None
        );
    }

    /// `parse_time` as it was before the clock path: the reference.
    fn full_parse(b: &[u8]) -> Option<i64> {
        if b.len() < 19
            || b[4] != b'-'
            || b[7] != b'-'
            || !matches!(b[10], b'T' | b' ')
            || b[13] != b':'
            || b[16] != b':'
        {
            return None;
        }
        let num = |r: std::ops::Range<usize>| -> Option<i64> {
            b[r].iter().try_fold(0i64, |n, &d| {
                d.is_ascii_digit().then(|| n * 10 + i64::from(d - b'0'))
            })
        };
        let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
        let (h, mi, s) = (num(11..13)?, num(14..16)?, num(17..19)?);
        if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || s > 60 {
            return None;
        }
        let offset = offset_of(&b[19..])?;
        Some(days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + s - offset)
    }

    /// The per-record computation the tally replaces: every time parsed in full.
    #[derive(Default)]
    struct Reference {
        coverage: Coverage,
        span: (Option<i64>, Option<i64>, u64),
    }

    impl Reference {
        fn record(&mut self, b: &[u8]) {
            let (value, admin) = match canonical_parts(b) {
                Some((v, rt)) => (Some(v), admin_value(rt)),
                None => (time_value(b), is_exchange_admin(b)),
            };
            self.coverage.exchange_admin += u64::from(admin);
            match value.and_then(full_parse).or_else(|| creation_date(b)) {
                Some(t) => {
                    *self
                        .coverage
                        .days
                        .entry(t.div_euclid(86_400) as i32)
                        .or_default() += 1;
                    self.span.0 = min_opt(self.span.0, Some(t));
                    self.span.1 = max_opt(self.span.1, Some(t));
                }
                None => self.span.2 += 1,
            }
        }

        fn take_span(&mut self) -> (Option<i64>, Option<i64>, u64) {
            let span = std::mem::take(&mut self.span);
            let c = &mut self.coverage;
            c.first = min_opt(c.first, span.0);
            c.last = max_opt(c.last, span.1);
            c.undated += span.2;
            span
        }
    }

    /// A record of time `t` (seconds into 2024-03-04 and the few days after) in one of
    /// the spellings and layouts the probe reads, some of them not a time at all.
    fn spelled(rng: &mut fastrand::Rng, t: i64) -> String {
        let dt = DateTime::from_timestamp(1_709_510_400 + t, 0).unwrap();
        let date = dt.format("%Y-%m-%d");
        let clock = dt.format("%H:%M:%S");
        let time = match rng.u8(0..16) {
            0..=5 => format!("{date}T{clock}"),
            6 => format!("{date} {clock}"),
            7 => format!("{date}T{clock}.1234567"),
            8 => format!("{date}T{clock}Z"),
            9 => format!("{date}T{clock}.000Z"),
            10 => format!("{date}T{clock}+02:00"),
            11 => format!("{date}T{clock}.5-05:30"),
            12 => format!("{date}T23:59:60"),
            13 => format!(
                "{date}T{}",
                ["25:00:00", "10:60:00", "10:00:61", "1a:00:00", "10:0:00"][rng.usize(0..5)]
            ),
            14 => format!("{date}T00:00:00+00:00"),
            _ => format!("{date}T{clock}+0a:00"),
        };
        let rt = [1, 15, 18][rng.usize(0..3)];
        match rng.u8(0..8) {
            0..=3 => format!(
                r#"{{"CreationTime":"{time}","Id":"0b8f1c4e-4d3a-4f4e-9a61-6a0f3f6f2a11","Operation":"Op","OrganizationId":"4a7c8238-5799-4b16-9fc6-9ad8fce5a7d9","RecordType":{rt},"UserId":"u"}}"#
            ),
            4 => format!(r#"{{"Id":"x","CreationTime": "{time}","RecordType":{rt}}}"#),
            5 => format!(r#"{{"@timestamp":"{time}","event":{{"code":"ExchangeAdmin"}}}}"#),
            6 => {
                format!(r#"{{"AuditData":"{{\"CreationTime\":\"{time}\",\"RecordType\":{rt}}}"}}"#)
            }
            _ => format!(r#"{{"Operation":"Op","RecordType":{rt}}}"#),
        }
    }

    #[test]
    fn the_tally_counts_as_a_full_parse_of_every_record_in_any_order() {
        let mut rng = fastrand::Rng::with_seed(19);
        for round in 0..300 {
            let n = rng.usize(1..400);
            let spread = [59, 3_600, 86_400, 4 * 86_400][round % 4];
            let mut times: Vec<i64> = (0..n).map(|_| rng.i64(0..spread)).collect();
            match round % 3 {
                0 => times.sort_unstable(),
                1 => times.sort_unstable_by(|a, b| b.cmp(a)),
                _ => {}
            }
            let records: Vec<String> = times.iter().map(|&t| spelled(&mut rng, t)).collect();
            let (mut tally, mut reference) = (Tally::default(), Reference::default());
            for r in &records {
                if let Some(v) = time_value(r.as_bytes()) {
                    assert_eq!(parse_time(v), full_parse(v), "{r}");
                }
                tally.record(r.as_bytes());
                reference.record(r.as_bytes());
                if rng.u8(0..50) == 0 {
                    assert_eq!(tally.take_span(), reference.take_span(), "round {round}");
                }
            }
            assert_eq!(tally.take_span(), reference.take_span(), "round {round}");
            assert_eq!(tally.finish(), reference.coverage, "round {round}");
        }
    }

    /// The value after `key` at the start of `rest`, when `key` is a key there.
    fn key_value<'a>(rest: &'a [u8], key: &[u8]) -> Option<&'a [u8]> {
        let rest = rest.strip_prefix(key)?;
        let skip = rest
            .iter()
            .take(8)
            .take_while(|b| matches!(b, b'"' | b'\\' | b':' | b' '))
            .count();
        rest[..skip].contains(&b':').then(|| &rest[skip..])
    }

    /// `record_type` as it was (a `memchr` loop on `R`): the reference.
    fn record_type_by_r(bytes: &[u8]) -> Option<&[u8]> {
        let mut from = 0;
        while let Some(k) = memchr::memchr(b'R', &bytes[from..]) {
            let at = from + k;
            if let Some(v) = key_value(&bytes[at..], b"RecordType") {
                return Some(v);
            }
            from = at + 1;
        }
        None
    }

    #[test]
    fn the_record_type_is_read_in_any_key_order_and_handed_back() {
        let mut rng = fastrand::Rng::with_seed(1919);
        let parts = [
            r#""Operation":"RecordType""#,
            r#""XRecordType":7"#,
            r#""Blob":"{\"RecordType\":\"ExchangeAdmin\"}""#,
            r#""Inner":{"RecordType":1}"#,
            r#""RecordType" : 18"#,
            r#""RecordType":"ExchangeAdmin""#,
            r#""RecordType":1"#,
            r#""RecordTypes":2"#,
            r#""CreationTime":"2024-03-05T10:11:12""#,
            r#""Workload":"ExchangeAdmin""#,
        ];
        for _ in 0..5_000 {
            let mut picked: Vec<&str> = parts.iter().copied().filter(|_| rng.bool()).collect();
            rng.shuffle(&mut picked);
            let record = format!("{{{}}}", picked.join(","));
            let b = record.as_bytes();
            assert_eq!(record_type(b), record_type_by_r(b), "{record}");
            let mut t = Tally::default();
            let handed = t.record(b);
            assert_eq!(
                handed.and_then(record_type_value_number),
                record_type_number(b),
                "{record}"
            );
            let admin = match record_type_by_r(b) {
                Some(v) => admin_value(v),
                None => EXCHANGE_ADMIN.find(b).is_some(),
            };
            assert_eq!(t.finish().exchange_admin, u64::from(admin), "{record}");
        }
    }

    #[test]
    fn exchange_admin_records_are_recognised() {
        assert!(probe(br#"{"RecordType":1,"Workload":"Exchange"}"#).1);
        assert!(probe(br#"{"RecordType": 1}"#).1);
        assert!(!probe(br#"{"RecordType":15}"#).1);
        assert!(!probe(br#"{"RecordType":2,"Operation":"ExchangeAdmin"}"#).1);
        assert!(probe(br#"{"RecordType":"ExchangeAdmin"}"#).1);
        assert!(probe(br#"{"event":{"code":"ExchangeAdmin"}}"#).1);
        assert!(!probe(br#"{"event":{"code":"ExchangeItem"}}"#).1);
    }

    #[test]
    fn tally_merges_like_one_tally() {
        let lines: Vec<String> = (0..50)
            .map(|i| {
                format!(
                    r#"{{"CreationTime":"2024-01-{:02}T0{}:00:00","RecordType":{}}}"#,
                    1 + (i * 7) % 5,
                    i % 10,
                    i % 3
                )
            })
            .collect();
        let mut whole = Tally::default();
        lines.iter().for_each(|l| {
            whole.record(l.as_bytes());
        });
        whole.undated();
        let whole = whole.finish();
        let mut merged = Coverage::default();
        for part in lines.chunks(7) {
            let mut t = Tally::default();
            part.iter().for_each(|l| {
                t.record(l.as_bytes());
            });
            merged.merge(t.finish());
        }
        merged.undated += 1;
        assert_eq!(merged, whole);
        assert_eq!(whole.records(), 51);
        assert_eq!(whole.days.len(), 5);
        assert_eq!(whole.exchange_admin, 17);
    }
}
