//! A Teddy-style SIMD search for literals, each exact or in any ASCII case, over the
//! bytes as they are (no lower-cased copy of the block, no pattern per case variant).
//!
//! Place in the flow: the router's block search runs it over every block for all it
//! searches at once (the exact literals, the guards, the caseless literals:
//! [`super::Router::block_hits`]); a conjunct's literals, a prefilter's caseless
//! literals and watched names are searched with it too ([`super::Prefilter::Nibbles`]).
//!
//! How: each literal is searched through a rare four-byte window of its own (shared
//! with other literals where they can, [`super::shared_windows`]), and each window goes
//! to one of eight buckets. For each of the window's four bytes two 16-entry tables say
//! which buckets have a byte with that low half and which have one with that high half;
//! a caseless window's letter sets the high halves of both its cases (the low halves of
//! `a` and `A` are the same). Sixty-four positions a step with AVX-512 (thirty-two with
//! AVX2), a position is a candidate for a bucket when each of the four bytes from it
//! passes both tables for that bucket (two byte shuffles a byte position). A
//! candidate's window is then compared (one masked 32-bit compare, which passes either
//! case of a caseless window's letters), and the literal around it, before it counts.
//! Without AVX2 it is not built and the caller searches another way.
//!
//! One pass for all of them, rather than aho-corasick's Teddy for the exact ones and
//! another pass for the caseless ones: each bucket is the one its window adds the
//! fewest candidates to by the bytes' frequencies in audit text and the four-byte
//! strings common there (Teddy buckets by pattern order), and the wider steps of
//! AVX-512 where the CPU has it (Teddy's widest are AVX2's).

use super::{COMMON_TEXT, Source, WINDOW, frequency, rarity, rarity_any_case, shared_windows};

/// How many buckets a position is tested for at once (bits of a byte).
const BUCKETS: usize = 8;

/// The search: built only where the CPU has AVX2 ([`Nibbles::new`]).
#[derive(Clone, Debug)]
pub struct Nibbles {
    /// Per byte of the window: bucket bits by the byte's low half, the 16 entries
    /// twice (once per 128-bit lane of a shuffle).
    low: [[u8; 32]; WINDOW],
    /// Per byte of the window: bucket bits by the byte's high half (both cases of a
    /// caseless window's letter), the 16 entries twice.
    high: [[u8; 32]; WINDOW],
    /// Bucket -> its windows.
    buckets: [Vec<Window>; BUCKETS],
    /// The widest SIMD the CPU has (chosen once, when built).
    simd: Simd,
    /// Length of the longest literal.
    longest: usize,
    /// How many literals.
    literals: usize,
    /// The buckets with a window shorter than [`WINDOW`] (a literal of fewer bytes):
    /// each of the last positions of a search, too few for a whole window, is a
    /// candidate for them.
    short: u8,
}

/// The instructions a search steps with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Simd {
    /// One position at a time (tests: the reference the others are checked against).
    #[cfg_attr(not(test), allow(dead_code))]
    Bytes,
    /// 32 positions a step.
    Avx2,
    /// 64 positions a step (AVX-512BW).
    Avx512,
}

/// A window's bytes (in lower case for a caseless one; zero past a short one's) and
/// how many it has.
type Key = ([u8; WINDOW], usize);

/// A window and the literals searched through it.
#[derive(Clone, Debug)]
struct Window {
    /// The window's bytes (in lower case for a caseless one), as a little-endian
    /// number.
    value: u32,
    /// `0x20` where a caseless window has a letter: a byte ORed with it is in lower
    /// case (zero for an exact window: compared as it is).
    fold: u32,
    /// How many bytes it has: [`WINDOW`], or a shorter literal's length (the rest of
    /// `value` and `fold` zero; its tables pass any byte there).
    len: usize,
    /// Whether its literals match whatever their ASCII case.
    any_case: bool,
    sources: Vec<Source>,
}

impl Window {
    /// Whether the bytes at `at` are the window (whatever their case, for a caseless
    /// one).
    #[inline]
    fn is_at(&self, data: &[u8], at: usize) -> bool {
        if self.len < WINDOW {
            return self.is_short_at(data, at);
        }
        let bytes: [u8; WINDOW] = match data.get(at..at + WINDOW) {
            Some(b) => [b[0], b[1], b[2], b[3]],
            None => return false,
        };
        u32::from_le_bytes(bytes) | self.fold == self.value
    }

    /// [`Window::is_at`] for a window shorter than [`WINDOW`] (rare: kept out of the
    /// common path).
    #[cold]
    fn is_short_at(&self, data: &[u8], at: usize) -> bool {
        let Some(b) = data.get(at..at + self.len) else {
            return false;
        };
        let mut bytes = [0u8; WINDOW];
        bytes[..self.len].copy_from_slice(b);
        u32::from_le_bytes(bytes) | self.fold == self.value
    }
}

impl Nibbles {
    /// The search for `exact` literals (matched as they are) and `lower` ones (lower
    /// case, matched whatever their ASCII case), numbered in that order: `exact`'s
    /// first, then `lower`'s. `None` without AVX2, without a literal, or with an empty
    /// one. A literal shorter than a window is its own window, its tables passing any
    /// byte after it.
    pub fn new(exact: &[&[u8]], lower: &[&[u8]]) -> Option<Nibbles> {
        let simd = best_simd()?;
        let all = || exact.iter().chain(lower);
        if all().next().is_none() || all().any(|l| l.is_empty()) {
            return None;
        }
        Some(Nibbles::build(exact, lower, simd))
    }

    /// [`Nibbles::new`] whatever the CPU, stepping with `simd`.
    fn build(exact: &[&[u8]], lower: &[&[u8]], simd: Simd) -> Nibbles {
        let mut windows: Vec<(Key, bool, Vec<Source>)> = Vec::new();
        let chosen = shared_windows(exact, rarity)
            .into_iter()
            .zip(exact)
            .map(|(w, l)| (w, l, false))
            .chain(
                shared_windows(lower, rarity_any_case)
                    .into_iter()
                    .zip(lower)
                    .map(|(w, l)| (w, l, true)),
            );
        for (index, ((at, end), literal, any_case)) in chosen.enumerate() {
            // A window is `WINDOW` bytes (its literal's first ones otherwise), or the
            // whole of a shorter literal.
            let (at, len) = match end - at {
                WINDOW => (at, WINDOW),
                _ => (0, literal.len().min(WINDOW)),
            };
            let mut bytes = [0u8; WINDOW];
            bytes[..len].copy_from_slice(&literal[at..at + len]);
            if any_case {
                bytes.make_ascii_lowercase();
            }
            let key = (bytes, len);
            let source = Source {
                at,
                literal: Box::from(*literal),
                index: index as u32,
            };
            match windows
                .iter_mut()
                .find(|(w, a, _)| *w == key && *a == any_case)
            {
                Some((_, _, sources)) => sources.push(source),
                None => windows.push((key, any_case, vec![source])),
            }
        }
        // Each window's halves and rate reckoned once, not at every comparison; the
        // likeliest windows are placed first.
        let mut windows: Vec<_> = windows
            .into_iter()
            .map(|(key, any_case, sources)| {
                let own = window_halves(&key, any_case);
                (pass_rate(&own), key, any_case, sources, own)
            })
            .collect();
        windows.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
        let halves: Vec<[(u16, u16); WINDOW]> = windows.iter().map(|w| w.4).collect();
        let mut low = [[0u8; 32]; WINDOW];
        let mut high = [[0u8; 32]; WINDOW];
        let mut buckets: [Vec<Window>; BUCKETS] = Default::default();
        for ((_, key, any_case, sources, own), bucket) in windows.into_iter().zip(plan(&halves)) {
            let bit = 1u8 << bucket;
            for (k, (lo, hi)) in own.into_iter().enumerate() {
                for half in set_bits(lo) {
                    for lane in [0, 16] {
                        low[k][lane + usize::from(half)] |= bit;
                    }
                }
                for half in set_bits(hi) {
                    for lane in [0, 16] {
                        high[k][lane + usize::from(half)] |= bit;
                    }
                }
            }
            let (bytes, len) = key;
            let mut fold = [0u8; WINDOW];
            for (k, &b) in bytes[..len].iter().enumerate() {
                if any_case && b.is_ascii_alphabetic() {
                    fold[k] = 0x20;
                }
            }
            buckets[bucket].push(Window {
                value: u32::from_le_bytes(bytes),
                fold: u32::from_le_bytes(fold),
                len,
                any_case,
                sources,
            });
        }
        let all = exact.iter().chain(lower);
        Nibbles {
            low,
            high,
            short: (0..BUCKETS)
                .filter(|&b| buckets[b].iter().any(|w| w.len < WINDOW))
                .fold(0, |bits, b| bits | 1 << b),
            buckets,
            simd,
            longest: all.clone().map(|l| l.len()).max().unwrap_or(0),
            literals: all.count(),
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

    /// What it searches, for `--stats`: "5 literals (one SIMD pass, AVX-512, over a
    /// window of each, 2 of them in any case: 4 windows)".
    pub fn describe(&self) -> String {
        let caseless: usize = self
            .buckets
            .iter()
            .flatten()
            .filter(|w| w.any_case)
            .map(|w| w.sources.len())
            .sum();
        let simd = match self.simd {
            Simd::Bytes => "one byte at a time",
            Simd::Avx2 => "AVX2",
            Simd::Avx512 => "AVX-512",
        };
        let kinds = match caseless {
            n if n == self.literals => "in any case".to_string(),
            0 => "as it is".to_string(),
            n => format!("{n} of them in any case"),
        };
        format!(
            "{} literals (one SIMD pass, {simd}, over a window of each, {kinds}: {} windows)",
            self.literals,
            self.windows()
        )
    }

    /// The first position in `data[from..to]` where a literal's window starts, the
    /// literal there whole and ending by `to`.
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

    /// Calls `found` with the window's position and the literal's number
    /// ([`Nibbles::new`]) of each literal whole in `data[..to]` whose window starts in
    /// `from..to`, once per occurrence, in increasing order of position (literals at
    /// one position in no set order).
    pub fn each_hit(&self, data: &[u8], from: usize, to: usize, mut found: impl FnMut(usize, u32)) {
        let data = &data[..to.min(data.len())];
        self.candidates(data, from, to, |at, bits| {
            self.each_window(bits, |w| {
                if w.is_at(data, at) {
                    for s in &w.sources {
                        if s.is_at_as(data, at, w.any_case) {
                            found(at, s.index);
                        }
                    }
                }
                true
            });
            true
        });
    }

    /// Whether a literal of a bucket of `bits` whose window is at `at` is whole in
    /// `data`, ending by `to`.
    #[inline]
    fn holds_literal(&self, data: &[u8], to: usize, at: usize, bits: u8) -> bool {
        let data = &data[..to];
        !self.each_window(bits, |w| {
            !(w.is_at(data, at) && w.sources.iter().any(|s| s.is_at_as(data, at, w.any_case)))
        })
    }

    /// Calls `f` with each window of the buckets of `bits` until it returns false;
    /// returns whether it never did.
    #[inline]
    fn each_window(&self, bits: u8, mut f: impl FnMut(&Window) -> bool) -> bool {
        let mut bits = bits;
        while bits != 0 {
            let bucket = bits.trailing_zeros() as usize;
            bits &= bits - 1;
            for w in &self.buckets[bucket] {
                if !f(w) {
                    return false;
                }
            }
        }
        true
    }

    /// Calls `f` with each position `p` in `from..to` whose four bytes (inside
    /// `data[..to]`) pass the tables of some bucket, and the bits of those buckets, in
    /// increasing order, until `f` returns false; then, where a window is shorter than
    /// [`WINDOW`], with each of the last positions (too few bytes for a whole window)
    /// and the buckets of the short windows.
    fn candidates(
        &self,
        data: &[u8],
        from: usize,
        to: usize,
        mut f: impl FnMut(usize, u8) -> bool,
    ) {
        let to = to.min(data.len());
        // Whether `f` said stop.
        let mut stopped = false;
        if to >= from + WINDOW {
            let g = |at, bits| {
                let go = f(at, bits);
                stopped |= !go;
                go
            };
            match self.simd {
                // SAFETY: `simd` is only ever a level the CPU has (`best_simd`; tests
                // build the others only where it has them).
                #[cfg(target_arch = "x86_64")]
                Simd::Avx512 => unsafe { x86::steps_avx512(self, data, from, to, g) },
                #[cfg(target_arch = "x86_64")]
                Simd::Avx2 => unsafe { x86::steps_avx2(self, data, from, to, g) },
                _ => {
                    self.candidates_bytes(data, from, to, g);
                }
            }
        }
        // The last positions, too few bytes for a whole window, for the short ones.
        if self.short != 0 && !stopped {
            for at in from.max((to + 1).saturating_sub(WINDOW))..to {
                if !f(at, self.short) {
                    return;
                }
            }
        }
    }

    /// [`Nibbles::candidates`] one position at a time, from `from` (`to` is at most
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

/// The bytes a window's byte passes: itself, and its other case in a caseless window.
fn cases(b: u8, any_case: bool) -> impl Iterator<Item = u8> {
    let other = b.to_ascii_uppercase();
    std::iter::once(b).chain((any_case && other != b).then_some(other))
}

/// Per byte of a window: the low halves and the high halves (bit sets of 16) its
/// tables pass.
fn window_halves(window: &Key, any_case: bool) -> [(u16, u16); WINDOW] {
    let (bytes, len) = window;
    std::array::from_fn(|k| match k < *len {
        true => cases(bytes[k], any_case).fold((0u16, 0u16), |(lo, hi), c| {
            (lo | 1 << (c & 0x0f), hi | 1 << (c >> 4))
        }),
        // Past a short window: any byte.
        false => (u16::MAX, u16::MAX),
    })
}

/// Which bucket each window (by its halves, likeliest first) goes to. A bucket passes any mix of its
/// windows' bytes (`"Use` passes a bucket of ` use` and `rch `): each window goes
/// where it adds the least to that share (the first of the cheapest; an empty bucket
/// adds the window's own), a bucket's share reckoned by its bytes' frequencies
/// ([`pass_rate`]) and, for each string common in audit text it passes, the least
/// share such a string has ([`frequency::COMMON_SHARE`]): the bytes alone do not know
/// that `Mail` or `Succ` is in almost every record.
fn plan(windows: &[[(u16, u16); WINDOW]]) -> Vec<usize> {
    // Only the strings all the windows' tables together pass can pass a bucket's;
    // they are told apart by their first byte (in order: the list is sorted).
    let all = windows.iter().fold([(0, 0); WINDOW], |a, w| merged(&a, w));
    let common: Vec<[u8; WINDOW]> = common_grams()
        .iter()
        .filter(|g| passes(&all, g))
        .copied()
        .collect();
    let mut first = [0u32; 257];
    for g in &common {
        first[usize::from(g[0]) + 1] += 1;
    }
    for b in 1..first.len() {
        first[b] += first[b - 1];
    }
    let share = |h: &[(u16, u16); WINDOW]| {
        let mut passed = 0;
        for hi in set_bits(h[0].1) {
            for lo in set_bits(h[0].0) {
                let b = usize::from(hi << 4 | lo);
                let starting = &common[first[b] as usize..first[b + 1] as usize];
                passed += starting.iter().filter(|g| passes(h, g)).count();
            }
        }
        pass_rate(h) + frequency::COMMON_SHARE * passed as f64
    };
    let mut halves = [[(0u16, 0u16); WINDOW]; BUCKETS];
    let mut shares = [0.0; BUCKETS];
    let mut chosen = Vec::with_capacity(windows.len());
    for own in windows {
        // (share added, bucket, the bucket's share with the window)
        let mut best = (f64::INFINITY, 0, 0.0);
        for (b, bucket) in halves.iter().enumerate() {
            let with = merged(bucket, own);
            let share = share(&with);
            if share - shares[b] < best.0 {
                best = (share - shares[b], b, share);
            }
        }
        halves[best.1] = merged(&halves[best.1], own);
        shares[best.1] = best.2;
        chosen.push(best.1);
    }
    chosen
}

/// The halves tables of both `a` and `b` pass.
fn merged(a: &[(u16, u16); WINDOW], b: &[(u16, u16); WINDOW]) -> [(u16, u16); WINDOW] {
    std::array::from_fn(|k| (a[k].0 | b[k].0, a[k].1 | b[k].1))
}

/// Whether tables of these halves pass four bytes.
fn passes(halves: &[(u16, u16); WINDOW], gram: &[u8; WINDOW]) -> bool {
    halves
        .iter()
        .zip(gram)
        .all(|(h, &b)| h.0 >> (b & 0x0f) & 1 != 0 && h.1 >> (b >> 4) & 1 != 0)
}

/// The four-byte strings common in audit text ([`frequency::COMMON`], and those of
/// [`COMMON_TEXT`]), sorted; reckoned once.
fn common_grams() -> &'static [[u8; WINDOW]] {
    static GRAMS: std::sync::OnceLock<Vec<[u8; WINDOW]>> = std::sync::OnceLock::new();
    GRAMS.get_or_init(|| {
        let mut grams: Vec<[u8; WINDOW]> = frequency::COMMON.to_vec();
        for text in COMMON_TEXT {
            grams.extend(
                text.windows(WINDOW)
                    .filter_map(|w| <[u8; WINDOW]>::try_from(w).ok()),
            );
        }
        grams.sort_unstable();
        grams.dedup();
        grams
    })
}

/// The share of positions in audit text whose four bytes pass tables of these halves,
/// each byte taken alone (by its frequency there).
fn pass_rate(halves: &[(u16, u16); WINDOW]) -> f64 {
    halves
        .iter()
        .map(|&(lo, hi)| {
            // The bytes in increasing order (high half, then low), as a walk of every
            // byte would add them; only the halves set are visited (a plan weighs each
            // window against every bucket: thousands of calls for a rule pack).
            let mut sum = 0.0;
            for h in set_bits(hi) {
                for l in set_bits(lo) {
                    let c = usize::from(h << 4 | l);
                    sum += f64::from(super::frequency::PER_MILLION[c]) / 1e6;
                }
            }
            sum
        })
        .product()
}

/// The positions of the bits set in `bits`, in increasing order.
fn set_bits(mut bits: u16) -> impl Iterator<Item = u8> {
    std::iter::from_fn(move || {
        let at = bits.trailing_zeros();
        (bits != 0).then(|| {
            bits &= bits - 1;
            at as u8
        })
    })
}

/// The widest SIMD the CPU has for the search; `None` without AVX2 (or off x86-64).
fn best_simd() -> Option<Simd> {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512bw") {
            return Some(Simd::Avx512);
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            return Some(Simd::Avx2);
        }
    }
    None
}

/// Whether the CPU has AVX2 (never, off x86-64).
#[cfg(test)]
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
mod x86 {
    use std::arch::x86_64::{
        __m256i, __m512i, _mm256_and_si256, _mm256_cmpeq_epi8, _mm256_loadu_si256,
        _mm256_movemask_epi8, _mm256_set1_epi8, _mm256_setzero_si256, _mm256_shuffle_epi8,
        _mm256_srli_epi16, _mm256_storeu_si256, _mm512_and_si512, _mm512_broadcast_i64x4,
        _mm512_loadu_si512, _mm512_set1_epi8, _mm512_shuffle_epi8, _mm512_srli_epi16,
        _mm512_storeu_si512, _mm512_test_epi8_mask,
    };

    use super::{Nibbles, WINDOW};

    /// The vector instructions a step takes, for one register width. Every method is
    /// `unsafe`: the CPU must have the instructions (the callers' `target_feature`s), and
    /// `load`/`store` take raw pointers.
    trait Lanes: Copy {
        /// Positions a step.
        const WIDTH: usize;
        /// A table of 16 entries (given twice, 32 bytes) in every 128-bit lane.
        unsafe fn table(t: &[u8; 32]) -> Self;
        unsafe fn splat(b: i8) -> Self;
        /// `WIDTH` bytes from `p`, unaligned.
        unsafe fn load(p: *const u8) -> Self;
        unsafe fn and(self, other: Self) -> Self;
        /// Each byte's high half, as a byte.
        unsafe fn high_half(self, nibble: Self) -> Self;
        /// Each byte of `index` (below 16) looked up in the table `self`.
        unsafe fn shuffle(self, index: Self) -> Self;
        /// A bit per byte that is not zero.
        unsafe fn nonzero(self) -> u64;
        /// The `WIDTH` bytes to `p`, unaligned.
        unsafe fn store(self, p: *mut u8);
    }

    impl Lanes for __m256i {
        const WIDTH: usize = 32;
        #[inline(always)]
        unsafe fn table(t: &[u8; 32]) -> Self {
            // SAFETY: `t` is 32 bytes; AVX2 (the caller's).
            unsafe { _mm256_loadu_si256(t.as_ptr().cast()) }
        }
        #[inline(always)]
        unsafe fn splat(b: i8) -> Self {
            // SAFETY: AVX (the caller's).
            unsafe { _mm256_set1_epi8(b) }
        }
        #[inline(always)]
        unsafe fn load(p: *const u8) -> Self {
            // SAFETY: 32 readable bytes at `p` (the caller's).
            unsafe { _mm256_loadu_si256(p.cast()) }
        }
        #[inline(always)]
        unsafe fn and(self, other: Self) -> Self {
            // SAFETY: AVX2 (the caller's).
            unsafe { _mm256_and_si256(self, other) }
        }
        #[inline(always)]
        unsafe fn high_half(self, nibble: Self) -> Self {
            // SAFETY: AVX2 (the caller's).
            unsafe { _mm256_and_si256(_mm256_srli_epi16(self, 4), nibble) }
        }
        #[inline(always)]
        unsafe fn shuffle(self, index: Self) -> Self {
            // SAFETY: AVX2 (the caller's).
            unsafe { _mm256_shuffle_epi8(self, index) }
        }
        #[inline(always)]
        unsafe fn nonzero(self) -> u64 {
            // SAFETY: AVX2 (the caller's).
            let zero =
                unsafe { _mm256_movemask_epi8(_mm256_cmpeq_epi8(self, _mm256_setzero_si256())) };
            u64::from(!(zero as u32))
        }
        #[inline(always)]
        unsafe fn store(self, p: *mut u8) {
            // SAFETY: 32 writable bytes at `p` (the caller's).
            unsafe { _mm256_storeu_si256(p.cast(), self) }
        }
    }

    impl Lanes for __m512i {
        const WIDTH: usize = 64;
        #[inline(always)]
        unsafe fn table(t: &[u8; 32]) -> Self {
            // SAFETY: `t` is 32 bytes; AVX-512F (the caller's).
            unsafe { _mm512_broadcast_i64x4(_mm256_loadu_si256(t.as_ptr().cast())) }
        }
        #[inline(always)]
        unsafe fn splat(b: i8) -> Self {
            // SAFETY: AVX-512F (the caller's).
            unsafe { _mm512_set1_epi8(b) }
        }
        #[inline(always)]
        unsafe fn load(p: *const u8) -> Self {
            // SAFETY: 64 readable bytes at `p` (the caller's).
            unsafe { _mm512_loadu_si512(p.cast()) }
        }
        #[inline(always)]
        unsafe fn and(self, other: Self) -> Self {
            // SAFETY: AVX-512F (the caller's).
            unsafe { _mm512_and_si512(self, other) }
        }
        #[inline(always)]
        unsafe fn high_half(self, nibble: Self) -> Self {
            // SAFETY: AVX-512BW (the caller's).
            unsafe { _mm512_and_si512(_mm512_srli_epi16(self, 4), nibble) }
        }
        #[inline(always)]
        unsafe fn shuffle(self, index: Self) -> Self {
            // SAFETY: AVX-512BW (the caller's).
            unsafe { _mm512_shuffle_epi8(self, index) }
        }
        #[inline(always)]
        unsafe fn nonzero(self) -> u64 {
            // SAFETY: AVX-512BW (the caller's).
            unsafe { _mm512_test_epi8_mask(self, self) }
        }
        #[inline(always)]
        unsafe fn store(self, p: *mut u8) {
            // SAFETY: 64 writable bytes at `p` (the caller's).
            unsafe { _mm512_storeu_si512(p.cast(), self) }
        }
    }

    /// 32 positions a step ([`steps`]).
    #[target_feature(enable = "avx2")]
    pub(super) fn steps_avx2(
        s: &Nibbles,
        data: &[u8],
        from: usize,
        to: usize,
        f: impl FnMut(usize, u8) -> bool,
    ) {
        // SAFETY: the CPU has AVX2 (this function's feature).
        unsafe { steps::<__m256i>(s, data, from, to, f) }
    }

    /// 64 positions a step ([`steps`]).
    #[target_feature(enable = "avx512bw")]
    pub(super) fn steps_avx512(
        s: &Nibbles,
        data: &[u8],
        from: usize,
        to: usize,
        f: impl FnMut(usize, u8) -> bool,
    ) {
        // SAFETY: the CPU has AVX-512BW (this function's feature), and so AVX-512F.
        unsafe { steps::<__m512i>(s, data, from, to, f) }
    }

    /// How many steps are tested before their candidates are handed over: no call
    /// between the vector instructions, which would put the tables on the stack.
    const GROUP: usize = 8;

    /// `V::WIDTH` positions a step: per byte of the window, a load from the position on
    /// and two shuffles of its halves through the tables; the positions where some
    /// bucket passes all four go to `f`. The last positions are one step that ends
    /// where the data does (a line is rarely a multiple of the step), those already
    /// tested masked off; data shorter than a step goes one position at a time.
    ///
    /// # Safety
    ///
    /// The CPU has `V`'s instructions; `to <= data.len()` and `from + WINDOW <= to`.
    #[inline(always)]
    unsafe fn steps<V: Lanes>(
        s: &Nibbles,
        data: &[u8],
        from: usize,
        to: usize,
        mut f: impl FnMut(usize, u8) -> bool,
    ) {
        let width = V::WIDTH;
        // SAFETY (every vector call below): the CPU has `V`'s instructions (the
        // caller's), and each `load` reads `width` bytes from `at + k`, `k < 4`, with
        // `at + width + WINDOW - 1 <= to <= data.len()` (a step of the loop's `at`, and
        // the last step's `to + 1 - WINDOW - width`): inside `data`.
        let mut low = [unsafe { V::splat(0) }; WINDOW];
        let mut high = low;
        for k in 0..WINDOW {
            unsafe {
                low[k] = V::table(&s.low[k]);
                high[k] = V::table(&s.high[k]);
            }
        }
        let tables = Tables {
            low,
            high,
            nibble: unsafe { V::splat(0x0f) },
        };
        let base = data.as_ptr();
        let mut bits = [[0u8; 64]; GROUP];
        let mut found = [0u64; GROUP];
        let mut p = from;
        while p + width + WINDOW - 1 <= to {
            let steps = ((to + 1 - WINDOW - p) / width).min(GROUP);
            let mut any = 0;
            for i in 0..steps {
                found[i] = unsafe { tables.step(base, p + width * i, &mut bits[i]) };
                any |= found[i];
            }
            if any != 0 && !hand_over(p, width, steps, &found, &bits, &mut f) {
                return;
            }
            p += width * steps;
        }
        if p + WINDOW > to {
            return;
        }
        if to - from < width + WINDOW - 1 {
            s.candidates_bytes(data, p, to, f);
            return;
        }
        let at = to + 1 - WINDOW - width;
        found[0] = unsafe { tables.step(base, at, &mut bits[0]) } & (u64::MAX << (p - at));
        if found[0] != 0 {
            hand_over(at, width, 1, &found, &bits, &mut f);
        }
    }

    /// A search's tables in registers.
    struct Tables<V> {
        low: [V; WINDOW],
        high: [V; WINDOW],
        /// `0x0f` in every byte.
        nibble: V,
    }

    impl<V: Lanes> Tables<V> {
        /// The buckets each of the `V::WIDTH` positions from `at` passes, into `bits`;
        /// a bit per position that passes some bucket.
        ///
        /// # Safety
        ///
        /// The CPU has `V`'s instructions; `V::WIDTH + WINDOW - 1` bytes are readable
        /// from `base + at`.
        #[inline(always)]
        unsafe fn step(&self, base: *const u8, at: usize, bits: &mut [u8; 64]) -> u64 {
            // SAFETY: the caller's; `bits` is 64 bytes, `V::WIDTH` at most.
            unsafe {
                let mut passed = V::splat(-1);
                for k in 0..WINDOW {
                    let v = V::load(base.add(at + k));
                    let by_halves = self.low[k]
                        .shuffle(v.and(self.nibble))
                        .and(self.high[k].shuffle(v.high_half(self.nibble)));
                    passed = passed.and(by_halves);
                }
                passed.store(bits.as_mut_ptr());
                passed.nonzero()
            }
        }
    }

    /// Hands each candidate of a group of steps of `width` positions from `p`
    /// (`found`: per step, a bit per position; `bits`: per step, the buckets per
    /// position) to `f`; false when `f` said stop.
    #[inline(always)]
    fn hand_over(
        p: usize,
        width: usize,
        steps: usize,
        found: &[u64; GROUP],
        bits: &[[u8; 64]; GROUP],
        f: &mut impl FnMut(usize, u8) -> bool,
    ) -> bool {
        for i in 0..steps {
            let mut m = found[i];
            while m != 0 {
                let j = m.trailing_zeros() as usize;
                m &= m - 1;
                if !f(p + width * i + j, bits[i][j]) {
                    return false;
                }
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Where each literal is whole in `data` (an exact one as it is, a caseless one
    /// whatever its case), ending by `to`, with its window starting in `from..to`: that
    /// window's start and the literal's number, found by comparing at every position;
    /// the reference the search must equal.
    fn naive(
        literals: &[(&[u8], bool)],
        s: &Nibbles,
        data: &[u8],
        from: usize,
        to: usize,
    ) -> Vec<(usize, u32)> {
        let mut out = Vec::new();
        for w in s.buckets.iter().flatten() {
            for src in &w.sources {
                let (literal, any_case) = literals[src.index as usize];
                for start in 0..data.len() {
                    let window = start + src.at;
                    let end = start + literal.len();
                    // A literal of `WINDOW` bytes or more holds its window.
                    if window >= from
                        && end <= to
                        && match any_case {
                            true => data[start..end].eq_ignore_ascii_case(literal),
                            false => data[start..end] == *literal,
                        }
                    {
                        out.push((window, src.index));
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

    /// Every way of stepping this CPU has: one byte at a time always.
    fn simds() -> Vec<Simd> {
        let mut out = vec![Simd::Bytes];
        if has_avx2() {
            out.push(Simd::Avx2);
        }
        if best_simd() == Some(Simd::Avx512) {
            out.push(Simd::Avx512);
        }
        out
    }

    #[test]
    fn finds_each_case_and_only_whole_literals() {
        let lower: Vec<&[u8]> = vec![b"set-inboxrule", b"userloginfailed", b"add member to role."];
        for simd in simds() {
            let s = Nibbles::build(&[], &lower, simd);
            let text =
                b"xx SET-InboxRule yy UserLoginFailed \"Add Member To Role.\" userloginfaile";
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
    }

    #[test]
    fn an_exact_literal_is_found_only_as_it_is() {
        let exact: Vec<&[u8]> = vec![b"OAuth2:Token", b"\"event"];
        let lower: Vec<&[u8]> = vec![b"oauth2:token", b"houn"];
        let text = b"{\"a\":\"oauth2:TOKEN\",\"b\":\"OAuth2:Token\",\"Event\":\"AzureHound\"}";
        for simd in simds() {
            let s = Nibbles::build(&exact, &lower, simd);
            let mut hits = Vec::new();
            s.each_hit(text, 0, text.len(), |at, i| hits.push((at, i)));
            hits.sort_unstable();
            let numbered = [
                (exact[0], false),
                (exact[1], false),
                (lower[0], true),
                (lower[1], true),
            ];
            assert_eq!(hits, naive(&numbered, &s, text, 0, text.len()), "{simd:?}");
            // The exact one once (as it is), the caseless one twice, `houn` in
            // `AzureHound`; `"Event` is no `"event`.
            let count = |n: u32| hits.iter().filter(|h| h.1 == n).count();
            assert_eq!(
                [count(0), count(1), count(2), count(3)],
                [1, 0, 2, 1],
                "{simd:?}"
            );
        }
    }

    /// A bucket passes any mix of its windows' bytes: the plan keeps windows apart
    /// whose mixes are strings common in audit text (a bucket holding `main`, any case,
    /// and `IdsL` passes `Mail`, which starts keys of most mailbox records), though by
    /// the bytes alone each adds little to the other's bucket. Planned for literals of
    /// the block search of Elastic's rules with the Sigma corpus, no bucket passes such
    /// a string that is no window of it (without the common strings in the plan:
    /// `Audi`, `Iden`, `Mail`, `xAud`).
    #[test]
    fn no_bucket_passes_a_common_string_its_windows_do_not_hold() {
        let exact: Vec<&[u8]> = vec![
            b"IdsLocked",
            b"Allow sideloading and interaction of custom apps",
            b"ComplianceDLMExchange",
            b"00000003-0000-0000-c000-000000000000",
            b"kali365-live",
            b"eb079c62-4481-4d6e-9643-3ca499df7aaa",
            b"1-6178",
            b"Teams/1.3.00.30866 Chrome/80.0.3987.165 Electron/8.5.1",
            b"uditData\"",
            b"MicrosoftDefenderForIdentityAudit",
            b"Email reported by user as malware or phish",
            b"\"event",
            b"Ransomware activity",
            b"\\u00",
            b"DefenderExpertsforXDRAdmin",
            b"Electron",
            b"Cmsi:Cmsi",
            b"OAuth2:Token",
            b"AadRiskDetection",
            b"ComplianceDLMSharePoint",
            b"country_name",
        ];
        let lower: Vec<&[u8]> = vec![
            b"domain",
            b"data exfiltration to unsanctioned apps",
            b"activity from anonymous ip addresses",
            b"set-mailbox",
            b"disable strong authentication.",
            b"suspicious inbox forwarding",
            b"activity performed by terminated user",
            b"impossible travel activity",
            b"new-compliancesearchaction",
            b"windowspowershell",
            b"ediscovery search started or exported",
            b"azurehound",
            b"new-inboxrule",
            b"unusual volume of file deletion",
            b"suspicious oauth app file download activities",
            b"log on from a risky ip address",
        ];
        for simd in simds() {
            let s = Nibbles::build(&exact, &lower, simd);
            let windows: Vec<u32> = s.buckets.iter().flatten().map(|w| w.value).collect();
            let passed: Vec<String> = frequency::COMMON
                .iter()
                .filter(|g| {
                    let folded = u32::from_le_bytes(g.map(|b| b.to_ascii_lowercase()));
                    s.bits(&g[..]) != 0
                        && !windows.contains(&u32::from_le_bytes(**g))
                        && !windows.contains(&folded)
                })
                .map(|g| String::from_utf8_lossy(g).into_owned())
                .collect();
            assert_eq!(passed, Vec::<String>::new(), "{simd:?}");
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 300, ..Default::default() })]

        /// Every way of stepping reports exactly the window positions and numbers of the
        /// whole literals a naive comparison at every position finds (exact ones as they
        /// are, caseless ones in any case), for any range, and the first hit is the
        /// first of them.
        #[test]
        fn reports_what_a_naive_search_finds(
            literals in proptest::collection::vec(("[a-zA-Z0-9@._ -]{1,20}", proptest::bool::ANY), 1..60),
            noise in proptest::collection::vec("[a-zA-Z0-9@._ :,{}\"\n-]{0,90}", 1..30),
            picks in proptest::collection::vec((0usize..128, proptest::collection::vec(proptest::bool::ANY, 1..9), 0usize..90), 0..50),
            from in 0usize..400,
            less in 0usize..400,
        ) {
            let mut lower: Vec<String> = literals
                .iter()
                .filter(|l| l.1)
                .map(|l| l.0.to_ascii_lowercase())
                .collect();
            lower.sort();
            lower.dedup();
            let all = lower.clone();
            lower.retain(|a| !all.iter().any(|b| b != a && a.contains(b.as_str())));
            let mut exact: Vec<String> = literals.iter().filter(|l| !l.1).map(|l| l.0.clone()).collect();
            exact.sort();
            exact.dedup();
            let exact: Vec<&[u8]> = exact.iter().map(|l| l.as_bytes()).collect();
            let bytes: Vec<&[u8]> = lower.iter().map(|l| l.as_bytes()).collect();
            let numbered: Vec<(&[u8], bool)> = exact
                .iter()
                .map(|l| (*l, false))
                .chain(bytes.iter().map(|l| (*l, true)))
                .collect();
            let mut text = String::new();
            for (i, n) in noise.iter().enumerate() {
                let mut piece = n.clone();
                for (pick, flips, at) in picks.iter().filter(|p| p.0 % noise.len() == i) {
                    let (literal, any_case) = &literals[pick % literals.len()];
                    // An exact literal is planted as it is half the time.
                    let literal = match *any_case || flips[0] {
                        true => recase(literal, flips),
                        false => literal.clone(),
                    };
                    let at = (*at).min(piece.len());
                    piece.insert_str(at, &literal);
                }
                text.push_str(&piece);
            }
            let data = text.as_bytes();
            let to = data.len().saturating_sub(less);
            let from = from.min(to);
            for simd in simds() {
                let s = Nibbles::build(&exact, &bytes, simd);
                let expected = naive(&numbered, &s, data, from, to);
                let mut each = Vec::new();
                s.each_hit(data, from, to, |at, i| each.push((at, i)));
                each.sort_unstable();
                proptest::prop_assert_eq!(&each, &expected, "{:?}", simd);
                let mut positions: Vec<usize> = expected.iter().map(|h| h.0).collect();
                positions.dedup();
                let mut hits = Vec::new();
                s.hits(data, from, to, &mut hits);
                proptest::prop_assert_eq!(&hits, &positions, "{:?}", simd);
                proptest::prop_assert_eq!(s.find_at(data, from, to), positions.first().copied());
            }
        }
    }
}
