//! A Teddy-style SIMD search for lower-case literals in any ASCII case, over the bytes
//! as they are (no lower-cased copy of the block, no pattern per case variant).
//!
//! Place in the flow: [`super::Prefilter::case_insensitive`] builds it for the caseless
//! literals of a rule pack (Sigma values, Elastic's `:` comparisons on keyword fields)
//! and for watched names; the block search and the conjunct checks run it.
//!
//! How: each literal is searched through a rare four-byte window of its own (shared
//! with other literals where they can, [`super::shared_windows`]), and each window goes
//! to one of eight buckets. For each of the window's four bytes two 16-entry tables say
//! which buckets have a byte with that low half and which have one with that high half;
//! a letter sets the high halves of both its cases (the low halves of `a` and `A` are
//! the same). Thirty-two positions a step, a position is a candidate for a bucket when
//! each of the four bytes from it passes both tables for that bucket (two byte shuffles
//! a byte position, AVX2). A candidate's window is then compared whatever its case
//! (one masked 32-bit compare), and the literal around it whatever its case, before it
//! counts. Without AVX2 it is not built and the caller searches another way.

use super::{Source, WINDOW, rarity_any_case, shared_windows};

/// How many buckets a position is tested for at once (bits of a byte).
const BUCKETS: usize = 8;

/// The search: built only where the CPU has AVX2 ([`AnyCase::new`]).
#[derive(Clone, Debug)]
pub struct AnyCase {
    /// Per byte of the window: bucket bits by the byte's low half, the 16 entries
    /// twice (once per 128-bit lane of a shuffle).
    low: [[u8; 32]; WINDOW],
    /// Per byte of the window: bucket bits by the byte's high half (both cases of a
    /// letter), the 16 entries twice.
    high: [[u8; 32]; WINDOW],
    /// Bucket -> its windows.
    buckets: [Vec<Window>; BUCKETS],
    /// Length of the longest literal.
    longest: usize,
    /// How many literals.
    literals: usize,
}

/// A window and the literals searched through it.
#[derive(Clone, Debug)]
struct Window {
    /// The window's bytes in lower case, as a little-endian number.
    value: u32,
    /// `0x20` where the window has a letter: a byte ORed with it is in lower case.
    fold: u32,
    sources: Vec<Source>,
}

impl Window {
    /// Whether the four bytes at `at` are the window whatever their case.
    #[inline]
    fn is_at(&self, data: &[u8], at: usize) -> bool {
        let bytes: [u8; WINDOW] = match data.get(at..at + WINDOW) {
            Some(b) => [b[0], b[1], b[2], b[3]],
            None => return false,
        };
        u32::from_le_bytes(bytes) | self.fold == self.value
    }
}

impl AnyCase {
    /// The search for `lower` (lower case, non-empty, none holding another); `None`
    /// without AVX2, without a literal, or when a literal is shorter than a window.
    pub fn new(lower: &[&[u8]]) -> Option<AnyCase> {
        if !has_avx2() || lower.is_empty() || lower.iter().any(|l| l.len() < WINDOW) {
            return None;
        }
        Some(AnyCase::build(lower))
    }

    /// [`AnyCase::new`] whatever the CPU (the tables, the buckets; searching needs
    /// AVX2 only in [`AnyCase::candidates`], which falls back to the tables one byte
    /// at a time).
    fn build(lower: &[&[u8]]) -> AnyCase {
        let chosen = shared_windows(lower, rarity_any_case);
        let mut windows: Vec<([u8; WINDOW], Vec<Source>)> = Vec::new();
        for (index, (literal, (at, end))) in lower.iter().zip(chosen).enumerate() {
            // Every literal has `WINDOW` bytes or more, so each window is that long; its
            // first bytes otherwise.
            let at = if end - at == WINDOW { at } else { 0 };
            let mut key = [0u8; WINDOW];
            for (k, b) in key.iter_mut().zip(&literal[at..at + WINDOW]) {
                *k = b.to_ascii_lowercase();
            }
            let source = Source {
                at,
                literal: Box::from(*literal),
                index: index as u32,
            };
            match windows.iter_mut().find(|(w, _)| *w == key) {
                Some((_, sources)) => sources.push(source),
                None => windows.push((key, vec![source])),
            }
        }
        // A bucket passes any mix of its windows' bytes (`"Use` passes a bucket of
        // ` use` and `rch `): each window goes where it adds the fewest candidates by
        // the bytes' frequencies in audit text, the likeliest windows placed first.
        let mut halves = [[(0u16, 0u16); WINDOW]; BUCKETS];
        // Each window's rate reckoned once, not at every comparison.
        let mut windows: Vec<(f64, [u8; WINDOW], Vec<Source>)> = windows
            .into_iter()
            .map(|(key, sources)| (pass_rate(&window_halves(&key)), key, sources))
            .collect();
        windows.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        let mut low = [[0u8; 32]; WINDOW];
        let mut high = [[0u8; 32]; WINDOW];
        let mut buckets: [Vec<Window>; BUCKETS] = Default::default();
        for (_, key, sources) in windows {
            let own = window_halves(&key);
            let added = |b: &[(u16, u16); WINDOW]| {
                let mut with = *b;
                for (w, o) in with.iter_mut().zip(own) {
                    w.0 |= o.0;
                    w.1 |= o.1;
                }
                pass_rate(&with) - pass_rate(b)
            };
            // The first of the cheapest (an empty bucket adds the window's own rate).
            let cost: [f64; BUCKETS] = std::array::from_fn(|b| added(&halves[b]));
            let bucket = (0..BUCKETS)
                .min_by(|&a, &b| cost[a].total_cmp(&cost[b]))
                .unwrap_or(0);
            for (h, o) in halves[bucket].iter_mut().zip(own) {
                h.0 |= o.0;
                h.1 |= o.1;
            }
            let bit = 1u8 << bucket;
            let mut fold = [0u8; WINDOW];
            for (k, &b) in key.iter().enumerate() {
                let cases = [b.to_ascii_lowercase(), b.to_ascii_uppercase()];
                for c in cases {
                    for lane in [0, 16] {
                        low[k][lane + usize::from(c & 0x0f)] |= bit;
                        high[k][lane + usize::from(c >> 4)] |= bit;
                    }
                }
                if b.is_ascii_alphabetic() {
                    fold[k] = 0x20;
                }
            }
            buckets[bucket].push(Window {
                value: u32::from_le_bytes(key),
                fold: u32::from_le_bytes(fold),
                sources,
            });
        }
        let longest = lower.iter().map(|l| l.len()).max().unwrap_or(0);
        AnyCase {
            low,
            high,
            buckets,
            longest,
            literals: lower.len(),
        }
    }

    /// Length of the longest literal.
    pub fn longest(&self) -> usize {
        self.longest
    }

    /// How many literals it searches.
    pub fn literals(&self) -> usize {
        self.literals
    }

    /// How many distinct windows it searches.
    pub fn windows(&self) -> usize {
        self.buckets.iter().map(Vec::len).sum()
    }

    /// The first position in `data[from..to]` where a literal's window starts, the
    /// literal there whole (whatever its case) and ending by `to`.
    pub fn find_at(&self, data: &[u8], from: usize, to: usize) -> Option<usize> {
        let mut first = None;
        self.candidates(data, from, to, |at, bits| {
            if self.holds_literal(data, to, at, bits) {
                first = Some(at);
                return false;
            }
            true
        });
        first
    }

    /// Appends every position in `data[from..to]` where a literal's window starts, the
    /// literal there whole and ending by `to`, in increasing order.
    pub fn hits(&self, data: &[u8], from: usize, to: usize, out: &mut Vec<usize>) {
        self.candidates(data, from, to, |at, bits| {
            if self.holds_literal(data, to, at, bits) {
                out.push(at);
            }
            true
        });
    }

    /// Whether a literal of a bucket of `bits` whose window is at `at` is in `data`
    /// whatever its case, ending by `to`.
    #[inline]
    fn holds_literal(&self, data: &[u8], to: usize, at: usize, bits: u8) -> bool {
        let data = &data[..to];
        let mut bits = bits;
        while bits != 0 {
            let bucket = bits.trailing_zeros() as usize;
            bits &= bits - 1;
            for w in &self.buckets[bucket] {
                if w.is_at(data, at) && w.sources.iter().any(|s| s.is_at_any_case(data, at)) {
                    return true;
                }
            }
        }
        false
    }

    /// Calls `f` with each position `p` in `from..to` whose four bytes (inside
    /// `data[..to]`) pass the tables of some bucket, and the bits of those buckets, in
    /// increasing order, until `f` returns false.
    fn candidates(&self, data: &[u8], from: usize, to: usize, f: impl FnMut(usize, u8) -> bool) {
        let to = to.min(data.len());
        if to < from + WINDOW {
            return;
        }
        #[cfg(target_arch = "x86_64")]
        if has_avx2() {
            // SAFETY: the CPU has AVX2 (checked just above).
            unsafe { avx2::candidates(self, data, from, to, f) };
            return;
        }
        self.candidates_bytes(data, from, to, f);
    }

    /// [`AnyCase::candidates`] one position at a time, from `from` (`to` is at most
    /// `data.len()` and at least `from + WINDOW`); returns false when `f` did.
    fn candidates_bytes(
        &self,
        data: &[u8],
        from: usize,
        to: usize,
        mut f: impl FnMut(usize, u8) -> bool,
    ) -> bool {
        for p in from..=to - WINDOW {
            let bits = self.bits(&data[p..p + WINDOW]);
            if bits != 0 && !f(p, bits) {
                return false;
            }
        }
        true
    }

    /// The buckets whose tables the four bytes pass.
    #[inline]
    fn bits(&self, four: &[u8]) -> u8 {
        let mut bits = 0xff;
        for (k, &b) in four.iter().enumerate() {
            bits &= self.low[k][usize::from(b & 0x0f)] & self.high[k][usize::from(b >> 4)];
        }
        bits
    }
}

/// Per byte of a window: the low halves and the high halves (bit sets of 16) its
/// tables pass, both cases of a letter.
fn window_halves(window: &[u8; WINDOW]) -> [(u16, u16); WINDOW] {
    window.map(|b| {
        [b.to_ascii_lowercase(), b.to_ascii_uppercase()]
            .iter()
            .fold((0u16, 0u16), |(lo, hi), &c| {
                (lo | 1 << (c & 0x0f), hi | 1 << (c >> 4))
            })
    })
}

/// The share of positions in audit text whose four bytes pass tables of these halves,
/// each byte taken alone (by its frequency there).
fn pass_rate(halves: &[(u16, u16); WINDOW]) -> f64 {
    halves
        .iter()
        .map(|&(lo, hi)| {
            // The bytes in increasing order (high half, then low), as a walk of every
            // byte would add them.
            (0..16u8)
                .filter(|h| hi & (1 << h) != 0)
                .flat_map(|h| {
                    (0..16u8)
                        .filter(move |l| lo & (1 << l) != 0)
                        .map(move |l| h << 4 | l)
                })
                .map(|c| f64::from(super::frequency::PER_MILLION[usize::from(c)]) / 1e6)
                .sum::<f64>()
        })
        .product()
}

/// Whether the CPU has AVX2 (never, off x86-64).
pub(super) fn has_avx2() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::{
        __m256i, _mm256_and_si256, _mm256_cmpeq_epi8, _mm256_loadu_si256, _mm256_movemask_epi8,
        _mm256_set1_epi8, _mm256_setzero_si256, _mm256_shuffle_epi8, _mm256_srli_epi16,
        _mm256_storeu_si256,
    };

    use super::{AnyCase, WINDOW};

    /// 32 positions a step: per byte of the window, a load from the position on and
    /// two shuffles of its halves through the tables; the positions where some bucket
    /// passes all four go to `f`. The last positions go one at a time.
    #[target_feature(enable = "avx2")]
    pub(super) fn candidates(
        s: &AnyCase,
        data: &[u8],
        from: usize,
        to: usize,
        mut f: impl FnMut(usize, u8) -> bool,
    ) {
        let table = |t: &[u8; 32]| -> __m256i {
            // SAFETY: `t` is 32 bytes; the load is unaligned.
            unsafe { _mm256_loadu_si256(t.as_ptr().cast()) }
        };
        let low = [
            table(&s.low[0]),
            table(&s.low[1]),
            table(&s.low[2]),
            table(&s.low[3]),
        ];
        let high = [
            table(&s.high[0]),
            table(&s.high[1]),
            table(&s.high[2]),
            table(&s.high[3]),
        ];
        let nibble = _mm256_set1_epi8(0x0f);
        let zero = _mm256_setzero_si256();
        let base = data.as_ptr();
        // SAFETY (every `load` below): it reads 32 bytes from `at = p + k`, `k < 4`,
        // with `p + 32 + WINDOW - 1 <= to <= data.len()`: inside `data`. Unaligned.
        let load = |at: usize| -> __m256i { unsafe { _mm256_loadu_si256(base.add(at).cast()) } };
        // The steps of a group are tested first, their candidates then handed over: no
        // call between the vector instructions, which would put the tables on the
        // stack.
        const GROUP: usize = 8;
        let mut bits = [[0u8; 32]; GROUP];
        let mut found = [0u32; GROUP];
        let mut p = from;
        while p + 32 + WINDOW - 1 <= to {
            let steps = ((to + 1 - WINDOW - p) / 32).min(GROUP);
            let mut any = 0;
            for i in 0..steps {
                let at = p + 32 * i;
                let mut passed = _mm256_set1_epi8(-1);
                for k in 0..WINDOW {
                    let v = load(at + k);
                    let lo = _mm256_and_si256(v, nibble);
                    let hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), nibble);
                    let by_halves = _mm256_and_si256(
                        _mm256_shuffle_epi8(low[k], lo),
                        _mm256_shuffle_epi8(high[k], hi),
                    );
                    passed = _mm256_and_si256(passed, by_halves);
                }
                found[i] = !(_mm256_movemask_epi8(_mm256_cmpeq_epi8(passed, zero)) as u32);
                any |= found[i];
                // SAFETY: `bits[i]` is 32 bytes; the store is unaligned.
                unsafe { _mm256_storeu_si256(bits[i].as_mut_ptr().cast(), passed) };
            }
            if any != 0 {
                for i in 0..steps {
                    let mut m = found[i];
                    while m != 0 {
                        let j = m.trailing_zeros() as usize;
                        m &= m - 1;
                        if !f(p + 32 * i + j, bits[i][j]) {
                            return;
                        }
                    }
                }
            }
            p += 32 * steps;
        }
        if p + WINDOW <= to {
            s.candidates_bytes(data, p, to, f);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Where each literal is whole in `data`, whatever its case, ending by `to`, with
    /// its window starting in `from..to`: that window's start, found by comparing at
    /// every position; the reference the search must equal.
    fn naive(lower: &[&[u8]], s: &AnyCase, data: &[u8], from: usize, to: usize) -> Vec<usize> {
        let mut out = Vec::new();
        for w in s.buckets.iter().flatten() {
            for src in &w.sources {
                let literal = lower[src.index as usize];
                for start in 0..data.len() {
                    let window = start + src.at;
                    let end = start + literal.len();
                    if window >= from
                        && window + WINDOW <= to
                        && end <= to
                        && data[start..end].eq_ignore_ascii_case(literal)
                    {
                        out.push(window);
                    }
                }
            }
        }
        out.sort_unstable();
        out.dedup();
        out
    }

    fn recase(text: &str, flips: &[bool]) -> String {
        text.chars()
            .enumerate()
            .map(|(i, c)| match flips[i % flips.len()] {
                true => c.to_ascii_uppercase(),
                false => c.to_ascii_lowercase(),
            })
            .collect()
    }

    #[test]
    fn finds_each_case_and_only_whole_literals() {
        let lower: Vec<&[u8]> = vec![b"set-inboxrule", b"userloginfailed", b"add member to role."];
        let s = AnyCase::build(&lower);
        let text = b"xx SET-InboxRule yy UserLoginFailed \"Add Member To Role.\" userloginfaile";
        let mut hits = Vec::new();
        s.hits(text, 0, text.len(), &mut hits);
        assert_eq!(hits.len(), 3, "{hits:?}");
        assert_eq!(s.find_at(text, 0, text.len()), Some(hits[0]));
        // A literal that would end past `to` is not there.
        let end = text.len() - 25;
        let mut short = Vec::new();
        s.hits(text, 0, end, &mut short);
        assert_eq!(short, hits[..2].to_vec());
        assert_eq!(s.find_at(b"userloginfaile", 0, 14), None);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 300, ..Default::default() })]

        /// The SIMD search reports exactly the window positions of the whole literals a
        /// naive case-insensitive comparison at every position finds, for any range,
        /// and its first hit is the first of them.
        #[test]
        fn reports_what_a_naive_search_finds(
            literals in proptest::collection::vec("[a-zA-Z0-9@._ -]{4,20}", 1..60),
            noise in proptest::collection::vec("[a-zA-Z0-9@._ :,{}\"\n-]{0,90}", 1..30),
            picks in proptest::collection::vec((0usize..128, proptest::collection::vec(proptest::bool::ANY, 1..9), 0usize..90), 0..50),
            from in 0usize..400,
            less in 0usize..400,
        ) {
            let mut lower: Vec<String> = literals.iter().map(|l| l.to_ascii_lowercase()).collect();
            lower.sort();
            lower.dedup();
            let all = lower.clone();
            lower.retain(|a| !all.iter().any(|b| b != a && a.contains(b.as_str())));
            let bytes: Vec<&[u8]> = lower.iter().map(|l| l.as_bytes()).collect();
            let s = AnyCase::build(&bytes);
            let mut text = String::new();
            for (i, n) in noise.iter().enumerate() {
                let mut piece = n.clone();
                for (pick, flips, at) in picks.iter().filter(|p| p.0 % noise.len() == i) {
                    let literal = recase(&literals[pick % literals.len()], flips);
                    let at = (*at).min(piece.len());
                    piece.insert_str(at, &literal);
                }
                text.push_str(&piece);
            }
            let data = text.as_bytes();
            let to = data.len().saturating_sub(less);
            let from = from.min(to);
            let expected = naive(&bytes, &s, data, from, to);
            let mut hits = Vec::new();
            s.hits(data, from, to, &mut hits);
            proptest::prop_assert_eq!(&hits, &expected);
            proptest::prop_assert_eq!(s.find_at(data, from, to), expected.first().copied());
            // The byte-at-a-time path agrees.
            let mut slow = Vec::new();
            if to >= from + WINDOW {
                s.candidates_bytes(data, from, to, |at, bits| {
                    if s.holds_literal(data, to, at, bits) {
                        slow.push(at);
                    }
                    true
                });
            }
            proptest::prop_assert_eq!(&slow, &expected);
        }
    }
}
