//! Timestamps as every format writes them.

use chrono::{DateTime, SecondsFormat, Utc};

/// What "at the end" of a bypass verdict means for this run: the end of the window when
/// `--until` was given (the state there is computed from the whole history), else the
/// end of the data.
pub fn end_of(window: &ualhunt_engine::analysis::Window) -> String {
    match &window.until {
        Some(until) => format!("at the end of the window ({})", rfc3339(until)),
        None => "at the end of the data".to_string(),
    }
}

/// The time an open period is told open at: the end of the window under `--until` (the
/// time the verdict's state is of) for a period begun before it; `None` for a period
/// told open at the end of the data (no `--until`, or one begun at or after it).
pub fn open_as_of(
    p: &ualhunt_engine::analysis::bypass::Period,
    window: &ualhunt_engine::analysis::Window,
) -> Option<DateTime<Utc>> {
    let until = window.until?;
    (p.open && (p.predates_data || p.start.is_none_or(|s| s < until))).then_some(until)
}

/// `still open at T (--until)`: how every text output ends a period open at the end of
/// the window ([`open_as_of`]).
pub fn still_open_at(until: &DateTime<Utc>) -> String {
    format!("still open at {} (--until)", rfc3339(until))
}

/// RFC 3339 in UTC with a `Z`, fractional seconds only when present.
pub fn rfc3339(t: &DateTime<Utc>) -> String {
    Rfc3339::new(t).as_str().to_string()
}

/// A timestamp formatted as [`rfc3339`] does, without allocating: evidence lists can
/// hold hundreds of thousands of them.
#[derive(Clone, Copy)]
pub struct Rfc3339 {
    buf: [u8; 40],
    len: usize,
}

impl Rfc3339 {
    /// Formats `t` (chrono's `SecondsFormat::AutoSi` with `Z`).
    pub fn new(t: &DateTime<Utc>) -> Rfc3339 {
        use chrono::{Datelike, Timelike};
        let mut out = Rfc3339 {
            buf: [0; 40],
            len: 0,
        };
        let nanos = t.nanosecond();
        if !(0..=9999).contains(&t.year()) || nanos >= 1_000_000_000 {
            // Leap seconds and years outside 0..=9999: chrono's own formatting.
            let s = t.to_rfc3339_opts(SecondsFormat::AutoSi, true);
            let n = s.len().min(out.buf.len());
            out.buf[..n].copy_from_slice(&s.as_bytes()[..n]);
            out.len = n;
            return out;
        }
        let sep = |out: &mut Rfc3339, b: u8| {
            out.buf[out.len] = b;
            out.len += 1;
        };
        Rfc3339::digits(&mut out, t.year() as u32, 4);
        sep(&mut out, b'-');
        Rfc3339::digits(&mut out, t.month(), 2);
        sep(&mut out, b'-');
        Rfc3339::digits(&mut out, t.day(), 2);
        sep(&mut out, b'T');
        Rfc3339::digits(&mut out, t.hour(), 2);
        sep(&mut out, b':');
        Rfc3339::digits(&mut out, t.minute(), 2);
        sep(&mut out, b':');
        Rfc3339::digits(&mut out, t.second(), 2);
        if nanos != 0 {
            sep(&mut out, b'.');
            if nanos.is_multiple_of(1_000_000) {
                Rfc3339::digits(&mut out, nanos / 1_000_000, 3);
            } else if nanos.is_multiple_of(1_000) {
                Rfc3339::digits(&mut out, nanos / 1_000, 6);
            } else {
                Rfc3339::digits(&mut out, nanos, 9);
            }
        }
        sep(&mut out, b'Z');
        out
    }

    fn digits(out: &mut Rfc3339, value: u32, digits: u32) {
        for i in (0..digits).rev() {
            out.buf[out.len] = b'0' + (value / 10u32.pow(i) % 10) as u8;
            out.len += 1;
        }
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        // Only ASCII digits and separators, or chrono's own (UTF-8) output, are written.
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or_default()
    }
}

impl serde::Serialize for Rfc3339 {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_format_like_chrono() {
        let mut rng = fastrand::Rng::with_seed(7);
        for _ in 0..20_000 {
            let secs = rng.i64(-62_000_000_000..253_000_000_000);
            let nanos = match rng.u8(0..4) {
                0 => 0,
                1 => rng.u32(0..1000) * 1_000_000,
                2 => rng.u32(0..1_000_000) * 1_000,
                _ => rng.u32(0..1_000_000_000),
            };
            let t = DateTime::from_timestamp(secs, nanos).unwrap();
            assert_eq!(
                Rfc3339::new(&t).as_str(),
                t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
            );
        }
    }
}
