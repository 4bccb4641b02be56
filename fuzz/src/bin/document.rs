//! The record-oriented splitters: a Purview CSV export and a JSON document, read in
//! pieces of any sizes, give the same result as read whole; with the prefilter they
//! find what the reference path finds; the accounting identities hold.
//! Control bytes: [0] CSV or JSON document, [1..4] read sizes.

use ualhunt_engine::scan::document::{scan_csv, scan_json_document};
use ualhunt_engine::findings::Harvest;
use ualhunt_engine::rule::Rule;
use ualhunt_engine::scan::{Matcher, Pass, Scratch};
use ualhunt_fuzz::{Pieces, check_counts, found, split_control};

fn main() {
    let rules = Rule::builtin();
    let fast = Matcher::new(rules.clone(), true, 1 << 16);
    let slow = Matcher::new(rules, false, 1 << 16);
    afl::fuzz!(|data: &[u8]| {
        let Some((control, text)) = split_control(data, 4) else {
            return;
        };
        let csv = control[0] & 1 == 1;
        let run = |m: &Matcher, reads: &[u8]| {
            let input = Pieces::new(text, reads);
            let pass = Pass::<Harvest>::new(m, &());
            let mut scratch = Scratch::default();
            let ((partial, error), extent) = if csv {
                scan_csv(input, 0, pass, &mut scratch)
            } else {
                scan_json_document(input, 0, pass, &mut scratch)
            };
            assert_eq!(extent.bytes, text.len() as u64);
            (partial, error.map(|e| e.to_string()))
        };
        let (whole, e1) = run(&fast, &[]);
        let (pieces, e2) = run(&fast, &control[1..]);
        let (reference, _) = run(&slow, &control[1..]);
        check_counts(&whole.counts, false);
        check_counts(&reference.counts, false);
        assert_eq!(whole.counts, pieces.counts, "reads change the counts");
        assert_eq!(found(&whole), found(&pieces), "reads change the findings");
        assert_eq!(e1, e2);
        assert_eq!(whole.counts.lines, reference.counts.lines);
        assert_eq!(whole.counts.records, reference.counts.records);
        assert_eq!(
            found(&whole),
            found(&reference),
            "prefilter path != reference path"
        );
    });
}
