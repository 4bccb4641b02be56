//! The generator's key orders (issue 19, benchmarks that do not flatter): the same
//! archive in every layout parses, and the hunt finds the planted events in each, with
//! the same report.

use std::path::PathBuf;

use ualhunt_engine::Config;
use ualhunt_generate::{GenOptions, GenShape, KeyOrder, generate};
use ualhunt_report::OutputFormat;

fn report(path: PathBuf, prefilter: bool) -> serde_json::Value {
    let mut config = Config::new(vec![path]);
    config.prefilter = prefilter;
    let report = ualhunt_engine::run(&config).unwrap();
    let mut out = Vec::new();
    ualhunt_report::write(OutputFormat::Json, &report, &mut out).unwrap();
    serde_json::from_slice(&out).unwrap()
}

#[test]
fn planted_events_are_found_in_every_key_order() {
    let dir = tempfile::tempdir().unwrap();
    for shape in [GenShape::Ual, GenShape::Ecs] {
        let mut reports = Vec::new();
        for key_order in [KeyOrder::Generated, KeyOrder::Purview, KeyOrder::Shuffled] {
            let mut data = Vec::new();
            let opts = GenOptions {
                size: 300_000,
                seed: 5,
                shape,
                rate: 0.01,
                key_order,
            };
            let summary = generate(&opts, &mut data).unwrap();
            assert!(summary.expected_matches > 0);
            let path = dir.path().join(format!("{shape:?}-{key_order:?}.jsonl"));
            std::fs::write(&path, &data).unwrap();
            let fast = report(path.clone(), true);
            let slow = report(path, false);
            let scan = &fast["scan"];
            assert_eq!(
                scan["events"].as_u64(),
                Some(summary.expected_matches),
                "{key_order:?}"
            );
            assert_eq!(scan["malformed"].as_u64(), Some(0), "{key_order:?}");
            assert_eq!(scan["records"].as_u64(), Some(summary.lines));
            assert_eq!(fast["actors"], slow["actors"], "{key_order:?}");
            reports.push(fast["actors"].clone());
        }
        // The same findings whatever the layout (evidence names no byte offsets that
        // the layout would move: compare actors without them).
        let strip = |mut a: serde_json::Value| {
            for actor in a.as_array_mut().unwrap() {
                for e in actor["evidence"].as_array_mut().into_iter().flatten() {
                    e.as_object_mut()
                        .unwrap()
                        .retain(|k, _| k != "path" && k != "offset");
                }
            }
            a
        };
        assert_eq!(strip(reports[0].clone()), strip(reports[1].clone()));
        assert_eq!(strip(reports[0].clone()), strip(reports[2].clone()));
    }
}
