//! One pass over a block that finds its newlines and every place where one of the
//! coverage probe's keys (`CreationTime`, `RecordType`) can be, together.
//!
//! Place in the flow: `scan` runs it over a block the literal search just left in cache
//! when the records come in a key order the probe's fast path does not know (keys
//! shuffled, other writers' layouts). The probe then reads each record's keys from the
//! places found here ([`crate::coverage::Keys`]) instead of searching each record for
//! each key, a substring search per key per record (a third of the first pass on such
//! records). The places are candidates, a superset of the keys' places: the probe checks
//! each against the whole key, so an answer never depends on this module, only the
//! speed does.
//!
//! A key place is the key's capital `T` (`Creation[T]ime`, `Record[T]ype`): a `T` with
//! an `n` or a `d` before it and an `e` three bytes on. Every occurrence of either key
//! has one; in audit text about two per record do (the two keys, `UserType`'s `T` is
//! not one).
//!
//! When the block's literal search is for one literal ([`crate::prefilter::Prefilter::One`]),
//! [`sweep_with`] finds its places in the same pass ([`Literal`]): the block is read
//! once, from memory, instead of once by the literal search and again by the sweep.

/// Appends to `newlines` the position of every `\n` in `data[from..to]`, and to `keys`
/// every position `p` in that range where `data[p]` is `T`, `data[p - 1]` is `n` or `d`
/// and `data[p + 3]` is `e` (positions in `data`; the bytes around may lie outside the
/// range, never outside `data`). Both lists come out in increasing order.
pub fn sweep(
    data: &[u8],
    from: usize,
    to: usize,
    newlines: &mut Vec<usize>,
    keys: &mut Vec<usize>,
) {
    let to = to.min(data.len());
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2 (checked just above).
        unsafe { avx2::sweep(data, from, to, newlines, keys) };
        return;
    }
    sweep_bytes(data, from, to, newlines, keys);
}

/// A literal found by [`sweep_with`]: its bytes and two places in it of bytes rare in
/// audit text, compared at every position before the whole literal is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Literal {
    bytes: Box<[u8]>,
    first: usize,
    second: usize,
}

impl Literal {
    /// The literal `bytes`, with the places of its rarest byte and of the rarest at
    /// another place (the same place for a one-byte literal); `None` when empty.
    pub fn new(bytes: &[u8]) -> Option<Literal> {
        if bytes.is_empty() {
            return None;
        }
        let rarity = |i: usize| crate::prefilter::frequency::PER_MILLION[usize::from(bytes[i])];
        let first = (0..bytes.len()).min_by_key(|&i| (rarity(i), i))?;
        let second = (0..bytes.len())
            .filter(|&i| i != first)
            .min_by_key(|&i| (rarity(i), i))
            .unwrap_or(first);
        Some(Literal {
            bytes: bytes.into(),
            first,
            second,
        })
    }

    /// The literal's bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Whether the literal starts at `p` of `data` (wholly inside it).
    #[inline]
    fn at(&self, data: &[u8], p: usize) -> bool {
        data.get(p..)
            .is_some_and(|rest| rest.starts_with(&self.bytes))
    }
}

/// [`sweep`], and in the same pass every position `p` in `data[from..to]` where
/// `literal` starts, appended to `hits` in increasing order (the literal lies wholly in
/// `data`, and may run past `to`).
pub fn sweep_with(
    data: &[u8],
    from: usize,
    to: usize,
    literal: &Literal,
    newlines: &mut Vec<usize>,
    keys: &mut Vec<usize>,
    hits: &mut Vec<usize>,
) {
    let to = to.min(data.len());
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2 (checked just above).
        unsafe { avx2::sweep_with(data, from, to, literal, newlines, keys, hits) };
        return;
    }
    sweep_with_bytes(data, from, to, literal, newlines, keys, hits);
}

/// [`sweep_with`] a byte at a time: the fallback and the tests' reference.
pub fn sweep_with_bytes(
    data: &[u8],
    from: usize,
    to: usize,
    literal: &Literal,
    newlines: &mut Vec<usize>,
    keys: &mut Vec<usize>,
    hits: &mut Vec<usize>,
) {
    for p in from..to.min(data.len()) {
        at(data, p, newlines, keys);
        if literal.at(data, p) {
            hits.push(p);
        }
    }
}

/// [`sweep`] a byte at a time: the fallback and the tests' reference.
pub fn sweep_bytes(
    data: &[u8],
    from: usize,
    to: usize,
    newlines: &mut Vec<usize>,
    keys: &mut Vec<usize>,
) {
    for p in from..to.min(data.len()) {
        at(data, p, newlines, keys);
    }
}

/// The byte at `p`: a newline, a key place, or neither.
#[inline]
fn at(data: &[u8], p: usize, newlines: &mut Vec<usize>, keys: &mut Vec<usize>) {
    match data[p] {
        b'\n' => newlines.push(p),
        b'T' if p > 0 && matches!(data[p - 1], b'n' | b'd') && data.get(p + 3) == Some(&b'e') => {
            keys.push(p)
        }
        _ => {}
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::{
        __m256i, _mm256_and_si256, _mm256_cmpeq_epi8, _mm256_loadu_si256, _mm256_movemask_epi8,
        _mm256_or_si256, _mm256_set1_epi8,
    };

    /// 64 bytes a step, without a branch on the bytes: the newlines, and the `T`s with
    /// an `e` three bytes on and an `n` or `d` before (a `T` is in about every other
    /// step, too often to test for one first).
    #[target_feature(enable = "avx2")]
    pub(super) fn sweep(
        data: &[u8],
        from: usize,
        to: usize,
        newlines: &mut Vec<usize>,
        keys: &mut Vec<usize>,
    ) {
        let mut p = from;
        // The vector loop reads from `p - 1` to `p + 67`: the first byte and the last
        // few go a byte at a time.
        if p == 0 && p < to {
            super::at(data, 0, newlines, keys);
            p = 1;
        }
        let end = to.min(data.len().saturating_sub(3));
        let nl = _mm256_set1_epi8(b'\n' as i8);
        let t = _mm256_set1_epi8(b'T' as i8);
        let e = _mm256_set1_epi8(b'e' as i8);
        let n = _mm256_set1_epi8(b'n' as i8);
        let d = _mm256_set1_epi8(b'd' as i8);
        let base = data.as_ptr();
        // SAFETY (every `load` below): it reads 32 bytes from `at`, and `at` is at
        // least `q - 1 >= 0` and at most `q + 35` for a step at `q`, with `q >= 1` and
        // `q + 64 <= end <= len - 3`: the bytes are inside `data`. The loads are
        // unaligned.
        let load = |at: usize| -> __m256i { unsafe { _mm256_loadu_si256(base.add(at).cast()) } };
        let mask = |v: __m256i| -> u64 { u64::from(_mm256_movemask_epi8(v) as u32) };
        let before = |v: __m256i| _mm256_or_si256(_mm256_cmpeq_epi8(v, n), _mm256_cmpeq_epi8(v, d));
        // Masks of a group of steps are made first, then turned into positions: no
        // call (a list growing) between the vector instructions, which would make
        // the compiler keep the vectors on the stack.
        const GROUP: usize = 16;
        let mut lines = [0u64; GROUP];
        let mut found = [0u64; GROUP];
        while p + 64 <= end {
            let steps = ((end - p) / 64).min(GROUP);
            for i in 0..steps {
                let at = p + 64 * i;
                let (a, b) = (load(at), load(at + 32));
                lines[i] = mask(_mm256_cmpeq_epi8(a, nl)) | mask(_mm256_cmpeq_epi8(b, nl)) << 32;
                let ka = _mm256_and_si256(
                    _mm256_and_si256(_mm256_cmpeq_epi8(a, t), _mm256_cmpeq_epi8(load(at + 3), e)),
                    before(load(at - 1)),
                );
                let kb = _mm256_and_si256(
                    _mm256_and_si256(_mm256_cmpeq_epi8(b, t), _mm256_cmpeq_epi8(load(at + 35), e)),
                    before(load(at + 31)),
                );
                found[i] = mask(ka) | mask(kb) << 32;
            }
            for i in 0..steps {
                let at = p + 64 * i;
                let mut m = lines[i];
                while m != 0 {
                    newlines.push(at + m.trailing_zeros() as usize);
                    m &= m - 1;
                }
                let mut m = found[i];
                while m != 0 {
                    keys.push(at + m.trailing_zeros() as usize);
                    m &= m - 1;
                }
            }
            p += 64 * steps;
        }
        while p < to {
            super::at(data, p, newlines, keys);
            p += 1;
        }
    }

    /// [`sweep`]'s steps, each also comparing the literal's two rare bytes at every
    /// position; a position where both are is checked against the whole literal.
    #[target_feature(enable = "avx2")]
    pub(super) fn sweep_with(
        data: &[u8],
        from: usize,
        to: usize,
        literal: &super::Literal,
        newlines: &mut Vec<usize>,
        keys: &mut Vec<usize>,
        hits: &mut Vec<usize>,
    ) {
        let (first, second) = (literal.first, literal.second);
        let one =
            |p: usize, newlines: &mut Vec<usize>, keys: &mut Vec<usize>, hits: &mut Vec<usize>| {
                super::at(data, p, newlines, keys);
                if literal.at(data, p) {
                    hits.push(p);
                }
            };
        let mut p = from;
        // The vector loop reads from `p - 1` to `p + 67` and to `p + 63 + len - 1` for
        // the literal's bytes: the first byte and the last few go a byte at a time.
        if p == 0 && p < to {
            one(0, newlines, keys, hits);
            p = 1;
        }
        let reach = 3.max(literal.bytes.len() - 1);
        let end = to.min(data.len().saturating_sub(reach));
        let nl = _mm256_set1_epi8(b'\n' as i8);
        let t = _mm256_set1_epi8(b'T' as i8);
        let e = _mm256_set1_epi8(b'e' as i8);
        let n = _mm256_set1_epi8(b'n' as i8);
        let d = _mm256_set1_epi8(b'd' as i8);
        let r1 = _mm256_set1_epi8(literal.bytes[first] as i8);
        let r2 = _mm256_set1_epi8(literal.bytes[second] as i8);
        let base = data.as_ptr();
        // SAFETY (every `load` below): it reads 32 bytes from `at`, and `at` is at
        // least `q - 1 >= 0` and at most `q + 35` or `q + 32 + second` (`second <=
        // len - 1`) for a step at `q`, with `q >= 1` and `q + 64 <= end <= data.len()
        // - max(3, len - 1)`: the bytes are inside `data`. The loads are unaligned.
        let load = |at: usize| -> __m256i { unsafe { _mm256_loadu_si256(base.add(at).cast()) } };
        let mask = |v: __m256i| -> u64 { u64::from(_mm256_movemask_epi8(v) as u32) };
        let before = |v: __m256i| _mm256_or_si256(_mm256_cmpeq_epi8(v, n), _mm256_cmpeq_epi8(v, d));
        let pair = |at: usize| {
            _mm256_and_si256(
                _mm256_cmpeq_epi8(load(at + first), r1),
                _mm256_cmpeq_epi8(load(at + second), r2),
            )
        };
        const GROUP: usize = 16;
        let mut lines = [0u64; GROUP];
        let mut found = [0u64; GROUP];
        let mut pairs = [0u64; GROUP];
        while p + 64 <= end {
            let steps = ((end - p) / 64).min(GROUP);
            for i in 0..steps {
                let at = p + 64 * i;
                let (a, b) = (load(at), load(at + 32));
                lines[i] = mask(_mm256_cmpeq_epi8(a, nl)) | mask(_mm256_cmpeq_epi8(b, nl)) << 32;
                let ka = _mm256_and_si256(
                    _mm256_and_si256(_mm256_cmpeq_epi8(a, t), _mm256_cmpeq_epi8(load(at + 3), e)),
                    before(load(at - 1)),
                );
                let kb = _mm256_and_si256(
                    _mm256_and_si256(_mm256_cmpeq_epi8(b, t), _mm256_cmpeq_epi8(load(at + 35), e)),
                    before(load(at + 31)),
                );
                found[i] = mask(ka) | mask(kb) << 32;
                pairs[i] = mask(pair(at)) | mask(pair(at + 32)) << 32;
            }
            for i in 0..steps {
                let at = p + 64 * i;
                let mut m = lines[i];
                while m != 0 {
                    newlines.push(at + m.trailing_zeros() as usize);
                    m &= m - 1;
                }
                let mut m = found[i];
                while m != 0 {
                    keys.push(at + m.trailing_zeros() as usize);
                    m &= m - 1;
                }
                let mut m = pairs[i];
                while m != 0 {
                    let c = at + m.trailing_zeros() as usize;
                    if literal.at(data, c) {
                        hits.push(c);
                    }
                    m &= m - 1;
                }
            }
            p += 64 * steps;
        }
        while p < to {
            one(p, newlines, keys, hits);
            p += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn both(data: &[u8], from: usize, to: usize) -> [(Vec<usize>, Vec<usize>); 2] {
        let mut fast = (Vec::new(), Vec::new());
        sweep(data, from, to, &mut fast.0, &mut fast.1);
        let mut slow = (Vec::new(), Vec::new());
        sweep_bytes(data, from, to, &mut slow.0, &mut slow.1);
        [fast, slow]
    }

    proptest! {
        /// Bytes drawn from the ones the sweep looks at, so that newlines and key
        /// places fall at every offset of a vector step, at the range's ends and at
        /// the data's.
        #[test]
        fn the_vector_sweep_finds_what_the_byte_loop_finds(
            data in proptest::collection::vec(
                prop_oneof![Just(b'\n'), Just(b'T'), Just(b'e'), Just(b'n'), Just(b'd'), Just(b'x')],
                0..600,
            ),
            a in 0usize..600,
            b in 0usize..600,
        ) {
            let (from, to) = (a.min(b).min(data.len()), a.max(b).min(data.len()));
            let [fast, slow] = both(&data, from, to);
            prop_assert_eq!(fast, slow);
        }
    }

    proptest! {
        /// The sweep with a literal finds the newlines and key places the sweep alone
        /// finds, and every place the literal starts, as the byte loop and a plain
        /// substring search do: literals of one byte to past a vector step, made of the
        /// bytes the data is, so that they overlap, repeat and cross the range's ends.
        #[test]
        fn the_vector_sweep_with_a_literal_finds_what_the_byte_loop_finds(
            data in proptest::collection::vec(
                prop_oneof![Just(b'\n'), Just(b'T'), Just(b'e'), Just(b'n'), Just(b'd'), Just(b'x'), Just(b'B')],
                0..700,
            ),
            literal in proptest::collection::vec(
                prop_oneof![Just(b'\n'), Just(b'T'), Just(b'e'), Just(b'x'), Just(b'B')],
                1..80,
            ),
            planted in proptest::collection::vec(0usize..700, 0..6),
            a in 0usize..700,
            b in 0usize..700,
        ) {
            let mut data = data;
            for &at in &planted {
                if at + literal.len() <= data.len() {
                    data[at..at + literal.len()].copy_from_slice(&literal);
                }
            }
            let (from, to) = (a.min(b).min(data.len()), a.max(b).min(data.len()));
            let literal = Literal::new(&literal).unwrap();
            let mut fast = (Vec::new(), Vec::new(), Vec::new());
            sweep_with(&data, from, to, &literal, &mut fast.0, &mut fast.1, &mut fast.2);
            let mut slow = (Vec::new(), Vec::new(), Vec::new());
            sweep_with_bytes(&data, from, to, &literal, &mut slow.0, &mut slow.1, &mut slow.2);
            prop_assert_eq!(&fast, &slow);
            let [alone, _] = both(&data, from, to);
            prop_assert_eq!((&fast.0, &fast.1), (&alone.0, &alone.1));
            let searched: Vec<usize> = (from..to)
                .filter(|&p| data[p..].starts_with(literal.bytes()))
                .collect();
            prop_assert_eq!(&fast.2, &searched);
        }
    }

    #[test]
    fn a_literal_is_compared_at_its_rarest_bytes() {
        let literal = Literal::new(b"Set-MailboxAuditBypassAssociation").unwrap();
        assert_ne!(literal.first, literal.second);
        let rarity =
            |i: usize| crate::prefilter::frequency::PER_MILLION[usize::from(literal.bytes[i])];
        assert!((0..literal.bytes.len()).all(|i| rarity(i) >= rarity(literal.first)));
        assert_eq!(Literal::new(b"").map(|l| l.first), None);
        let one = Literal::new(b"B").unwrap();
        assert_eq!((one.first, one.second), (0, 0));
    }

    #[test]
    fn keys_and_newlines_of_records_are_found() {
        let line = br#"{"UserType":2,"RecordType":15,"X":"\"CreationTime\":1","CreationTime":"2024-01-01T00:00:04"}"#;
        let mut data = Vec::new();
        for _ in 0..5 {
            data.extend_from_slice(line);
            data.push(b'\n');
        }
        let [fast, slow] = both(&data, 0, data.len());
        assert_eq!(fast, slow);
        let (newlines, keys) = fast;
        assert_eq!(newlines.len(), 5);
        assert_eq!(keys.len(), 15);
        let word = |p: usize| &data[p - 6..p + 4];
        assert_eq!(word(keys[0]), b"RecordType");
        assert!(keys.iter().all(|&p| data[p] == b'T'));
    }
}
