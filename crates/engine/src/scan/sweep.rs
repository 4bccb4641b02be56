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
