//! The block index and the context pass it drives (issue 19, items 1 and 2): the index
//! describes each chunk's times exactly whatever the order of the records, and the
//! context pass that reads only the chunks it points to (of a gzip or zstd file, each
//! inflated from the seek point before it) gives the very report of a pass that reads
//! everything (`Config::context_full_read`, the reference).

use std::io::Write;
use std::path::{Path, PathBuf};

use proptest::prelude::*;
use ualhunt_engine::Config;
use ualhunt_engine::coverage::probe;
use ualhunt_generate::{GenOptions, GenShape, KeyOrder, Plot, Storyline, generate_with};
use ualhunt_report::OutputFormat;

fn story(days: u32, plot: Plot, size: u64, seed: u64, shape: GenShape) -> Vec<u8> {
    story_in(days, plot, size, seed, shape, KeyOrder::Generated)
}

fn story_in(
    days: u32,
    plot: Plot,
    size: u64,
    seed: u64,
    shape: GenShape,
    key_order: KeyOrder,
) -> Vec<u8> {
    let opts = GenOptions {
        size,
        seed,
        shape,
        rate: 0.0,
        key_order,
    };
    let mut out = Vec::new();
    generate_with(&opts, Some(Storyline { days, plot }), &mut out).unwrap();
    out
}

/// The storyline's records with their keys in the generator's order, Purview's, a
/// shuffled order per record, or (`3`) each line from one of the three at random: the
/// coverage probe looks its keys up differently for each, and must count the same.
fn keyed(days: u32, size: u64, seed: u64, order: u8) -> Vec<u8> {
    let orders = [KeyOrder::Generated, KeyOrder::Purview, KeyOrder::Shuffled];
    let each = |o| story_in(days, Plot::TwoPeriods, size, seed, GenShape::Ual, o);
    match orders.get(usize::from(order)) {
        Some(&o) => each(o),
        None => {
            let all: Vec<Vec<u8>> = orders.iter().map(|&o| each(o)).collect();
            let lines: Vec<Vec<&[u8]>> = all
                .iter()
                .map(|d| d.split_inclusive(|&b| b == b'\n').collect())
                .collect();
            let mut rng = fastrand::Rng::with_seed(seed);
            let n = lines.iter().map(Vec::len).min().unwrap_or(0);
            (0..n)
                .flat_map(|i| lines[rng.usize(0..3)][i].to_vec())
                .collect()
        }
    }
}

fn write(dir: &Path, name: &str, data: &[u8], gzip: bool) -> PathBuf {
    let path = dir.join(name);
    let mut f = std::fs::File::create(&path).unwrap();
    if gzip {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(data).unwrap();
        f.write_all(&enc.finish().unwrap()).unwrap();
    } else {
        f.write_all(data).unwrap();
    }
    path
}

/// Lines in another order: shuffled, reversed (a descending export), or runs of lines
/// reversed and interleaved (merged files).
fn reorder(data: &[u8], how: u8, seed: u64) -> Vec<u8> {
    let mut lines: Vec<&[u8]> = data.split_inclusive(|&b| b == b'\n').collect();
    let mut rng = fastrand::Rng::with_seed(seed);
    match how % 4 {
        0 => {}
        1 => rng.shuffle(&mut lines),
        2 => lines.reverse(),
        _ => {
            for run in lines.chunks_mut(1 + rng.usize(..200)) {
                if rng.bool() {
                    run.reverse();
                }
            }
            let (a, b) = lines.split_at(lines.len() / 2);
            let mut merged = Vec::with_capacity(lines.len());
            let (mut i, mut j) = (0, 0);
            while i < a.len() || j < b.len() {
                if j >= b.len() || (i < a.len() && rng.bool()) {
                    merged.push(a[i]);
                    i += 1;
                } else {
                    merged.push(b[j]);
                    j += 1;
                }
            }
            lines = merged;
        }
    }
    lines.concat()
}

/// The report in every format that shows the investigation, and the context pass's
/// bytes read.
fn reports(paths: &[PathBuf], tweak: &dyn Fn(&mut Config)) -> (String, u64) {
    let mut config = Config::new(paths.to_vec());
    tweak(&mut config);
    let report = ualhunt_engine::run(&config).unwrap();
    let mut out = Vec::new();
    for format in [
        OutputFormat::Json,
        OutputFormat::Table,
        OutputFormat::Timeline,
    ] {
        ualhunt_report::write(format, &report, &mut out).unwrap();
    }
    // Bytes scanned, and those inflated only to reach them: all were read.
    let read = report
        .stats
        .context
        .iter()
        .map(|c| c.pass.bytes + c.pass.lead_in)
        .sum();
    (String::from_utf8(out).unwrap(), read)
}

/// The index-driven context pass against the full read, with `tweak` on both.
fn same_as_full_read(paths: &[PathBuf], tweak: &dyn Fn(&mut Config)) -> (u64, u64) {
    let (indexed, read) = reports(paths, tweak);
    let (full, all) = reports(paths, &|c| {
        tweak(c);
        c.context_full_read = true;
    });
    assert_eq!(
        indexed, full,
        "index-driven context pass differs from a full read"
    );
    (read, all)
}

fn fixtures() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/investigation");
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .collect();
    out.sort();
    out
}

/// A change to the configuration of a run.
type Mode = Box<dyn Fn(&mut Config)>;

/// Every engine mode the context pass can run in.
fn modes() -> Vec<Mode> {
    vec![
        Box::new(|_| {}),
        Box::new(|c| c.prefilter = false),
        Box::new(|c| {
            c.threads = 1;
            c.chunk_size = 512;
        }),
        Box::new(|c| {
            c.threads = 3;
            c.chunk_size = 4096;
            c.scan_block = 100;
        }),
        Box::new(|c| {
            c.chunk_size = 1000;
            c.context_horizon = chrono::Duration::days(1);
        }),
        Box::new(|c| {
            c.chunk_size = 2000;
            c.context_window = chrono::Duration::hours(2);
            c.context_horizon = chrono::Duration::zero();
        }),
        // Seek points every few blocks of a compressed file.
        Box::new(|c| {
            c.threads = 2;
            c.chunk_size = 3000;
            c.seek_spacing = 20_000;
        }),
    ]
}

#[test]
fn the_index_driven_context_pass_reports_what_a_full_read_reports_on_the_fixtures() {
    let all = fixtures();
    assert!(all.len() >= 10, "{all:?}");
    for mode in modes() {
        for path in &all {
            same_as_full_read(std::slice::from_ref(path), &*mode);
        }
        same_as_full_read(&all, &*mode);
    }
}

#[test]
fn the_index_driven_context_pass_reports_what_a_full_read_reports_on_generated_archives() {
    let dir = tempfile::tempdir().unwrap();
    let mut cases = Vec::new();
    for (i, (plot, shape)) in [
        (Plot::TwoPeriods, GenShape::Ual),
        (Plot::Investigation, GenShape::Ual),
        (Plot::TwoPeriods, GenShape::Ecs),
    ]
    .into_iter()
    .enumerate()
    {
        let data = story(120, plot, 400_000, i as u64, shape);
        for gzip in [false, true] {
            let name = format!("{i}.jsonl{}", if gzip { ".gz" } else { "" });
            cases.push(write(dir.path(), &name, &data, gzip));
        }
    }
    for mode in modes() {
        for path in &cases {
            same_as_full_read(std::slice::from_ref(path), &*mode);
        }
        same_as_full_read(&cases, &*mode);
    }
}

#[test]
fn the_context_pass_reads_only_the_chunks_of_watched_times() {
    // Two closed periods of a few days in a year: with the default 7-day horizon the
    // pass needs about 10 % of the archive.
    let dir = tempfile::tempdir().unwrap();
    let data = story(365, Plot::TwoPeriods, 3_000_000, 7, GenShape::Ual);
    let plain = write(dir.path(), "year.jsonl", &data, false);
    let (read, all) = same_as_full_read(std::slice::from_ref(&plain), &|c| {
        c.chunk_size = 16 << 10;
    });
    assert_eq!(all, data.len() as u64);
    assert!(read * 100 < all * 15, "read {read} of {all}");
    assert!(read > 0);
    // A wider horizon reads more.
    let (wider, _) = same_as_full_read(std::slice::from_ref(&plain), &|c| {
        c.chunk_size = 16 << 10;
        c.context_horizon = chrono::Duration::days(60);
    });
    assert!(wider > read, "{wider} <= {read}");
    // A compressed file: with seek points close together, about what a plain file
    // needs; with none, from its start to the end of the last stretch. (Without the
    // context cache, which would hand over the kept text instead: tests/context_cache.rs.)
    for (name, bytes) in compressed(&data, 6) {
        let path = write(dir.path(), &format!("year.jsonl.{name}"), &bytes, false);
        let (near, all) = same_as_full_read(std::slice::from_ref(&path), &|c| {
            c.chunk_size = 16 << 10;
            c.seek_spacing = 32 << 10;
            c.context_cache = Some(0);
        });
        assert_eq!(all, data.len() as u64, "{name}");
        let gzip = name.ends_with("gz");
        // The parallel gzip path notes no point: such a file is read whole.
        if gzip && std::env::var("UALHUNT_GZIP_PARALLEL").as_deref() == Ok("always") {
            assert_eq!(near, all, "{name}");
            continue;
        }
        // One zstd frame, or gzip in one or two members in the ISA-L build (which
        // notes member starts only), has no seek point but its start (and the middle).
        let start_only = name == "zst"
            || (ualhunt_input::inflate::BACKEND == "ISA-L" && (name == "gz" || name == "cat.gz"));
        if start_only {
            assert!(near < all, "{name}: read {near} of {all}");
        } else {
            assert!(near * 100 < all * 20, "{name}: read {near} of {all}");
        }
        let (far, _) = same_as_full_read(std::slice::from_ref(&path), &|c| {
            c.chunk_size = 16 << 10;
            c.seek_spacing = u64::MAX;
            c.context_cache = Some(0);
        });
        assert!(
            far >= near && far < all,
            "{name}: {far} of {all}, {near} with points"
        );
    }
}

/// `data` compressed every way the context pass seeks in: gzip in one member, in
/// members of some 60 KB, two gzip files concatenated; zstd in one frame and in many.
fn compressed(data: &[u8], level: u32) -> Vec<(&'static str, Vec<u8>)> {
    let gz = |part: &[u8]| {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(level));
        enc.write_all(part).unwrap();
        enc.finish().unwrap()
    };
    let lines = |size: usize| -> Vec<&[u8]> {
        let mut out = Vec::new();
        let mut rest = data;
        while !rest.is_empty() {
            let cut = rest
                .iter()
                .skip(size.min(rest.len() - 1))
                .position(|&b| b == b'\n')
                .map_or(rest.len(), |i| size.min(rest.len() - 1) + i + 1);
            out.push(&rest[..cut]);
            rest = &rest[cut..];
        }
        out
    };
    let half = lines(data.len() / 2);
    vec![
        ("gz", gz(data)),
        (
            "members.gz",
            lines(60_000).into_iter().flat_map(gz).collect(),
        ),
        ("cat.gz", half.iter().flat_map(|h| gz(h)).collect()),
        ("zst", zstd::encode_all(data, 3).unwrap()),
        (
            "frames.zst",
            lines(60_000)
                .into_iter()
                .flat_map(|p| zstd::encode_all(p, 3).unwrap())
                .collect(),
        ),
    ]
}

#[test]
fn the_context_pass_over_compressed_files_reports_what_a_full_read_reports() {
    let dir = tempfile::tempdir().unwrap();
    let data = story(120, Plot::Investigation, 500_000, 11, GenShape::Ual);
    let mut all = Vec::new();
    for level in [6, 1, 9] {
        for (name, bytes) in compressed(&data, level) {
            all.push(write(dir.path(), &format!("{level}-{name}"), &bytes, false));
        }
    }
    for mode in modes() {
        for path in &all[..5] {
            same_as_full_read(std::slice::from_ref(path), &*mode);
        }
    }
    for spacing in [10_000, 100_000] {
        same_as_full_read(&all, &|c| c.seek_spacing = spacing);
    }
}

/// A text that begins with a UTF-8 byte order mark (dropped by the reader), alone or
/// followed by blank lines: the context pass finds its stretches where the first pass
/// saw them, in a plain file and inflated from seek points of a compressed one, with
/// the cache off, holding a part of the file, or all of it (then every stretch is read
/// from the blocks the first pass kept: the lines it reads are the stretches' own).
#[test]
fn a_byte_order_mark_does_not_move_the_stretches_of_the_context_pass() {
    // Two closed periods of a few days in a year: the pass reads a small part.
    let dir = tempfile::tempdir().unwrap();
    let data = story(365, Plot::TwoPeriods, 1_000_000, 7, GenShape::Ual);
    for (n, lead) in [&b"\xEF\xBB\xBF"[..], b"\xEF\xBB\xBF\n\n\r\n\n", b"\n\n"]
        .into_iter()
        .enumerate()
    {
        let text = [lead, &data].concat();
        let mut all = vec![("jsonl", text.clone())];
        all.extend(compressed(&text, 6));
        for (name, bytes) in all {
            let path = write(dir.path(), &format!("{n}.{name}"), &bytes, false);
            let mut seen = None;
            for (spacing, cache) in [
                (7_000, Some(0)),
                (32 << 10, Some(100_000)),
                (32 << 10, Some(1 << 30)),
            ] {
                let tweak = |c: &mut Config| {
                    c.chunk_size = 16 << 10;
                    c.seek_spacing = spacing;
                    c.context_cache = cache;
                };
                let (read, all) = same_as_full_read(std::slice::from_ref(&path), &tweak);
                assert!(read < all, "{n}.{name}: read {read} of {all}");
                let mut config = Config::new(vec![path.clone()]);
                tweak(&mut config);
                let report = ualhunt_engine::run(&config).unwrap();
                let [c] = &report.stats.context[..] else {
                    panic!("one context pass")
                };
                let counts = (c.pass.counts.lines, c.pass.counts.malformed);
                assert_eq!(
                    *seen.get_or_insert(counts),
                    counts,
                    "{n}.{name}: lines read from seek points, every {spacing} bytes, \
                     with a cache of {cache:?}"
                );
            }
        }
    }
}

#[test]
fn a_compressed_file_changed_after_the_first_pass_is_read_whole() {
    // Its seek points are for the bytes the first pass read: a file of another size
    // or time is read from its start, as any input the index does not describe.
    let dir = tempfile::tempdir().unwrap();
    let data = story(365, Plot::TwoPeriods, 1_000_000, 5, GenShape::Ual);
    let path = dir.path().join("y.jsonl.gz");
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
    enc.write_all(&data).unwrap();
    std::fs::write(&path, enc.finish().unwrap()).unwrap();
    let mut config = Config::new(vec![path.clone()]);
    config.seek_spacing = 32 << 10;
    config.chunk_size = 16 << 10;
    let found = ualhunt_engine::stages::discover(&config);
    let matcher = ualhunt_engine::stages::first_matcher(&config);
    let first = ualhunt_engine::stages::first_pass(&found.inputs, &matcher, &config);
    let seeks = &first.partial.seeks;
    if std::env::var("UALHUNT_GZIP_PARALLEL").as_deref() == Ok("always")
        || ualhunt_input::inflate::BACKEND == "ISA-L"
    {
        // No point inside a member on these paths: nothing to go stale.
        return;
    }
    assert_eq!(seeks.len(), 1);
    // Generated lines compress well: deflate blocks of some 300 KB here.
    assert!(seeks[0].points.len() >= 2, "{}", seeks[0].points.len());
    let plan = ualhunt_engine::stages::plan_context(
        first.partial.sink.findings.clone(),
        first.partial.coverage.first,
        &|i| found.inputs[i].display(),
        &config,
    );
    let watch = plan.rules[0].1.clone().expect("a watch");
    let pass = |c: &Config| {
        ualhunt_engine::stages::context_pass_within(
            &found.inputs,
            &watch,
            &first.partial.index,
            seeks,
            c,
        )
    };
    let sought = pass(&config);
    assert!(sought.stats.bytes < data.len() as u64 / 2);
    let mut full = config.clone();
    full.context_full_read = true;
    assert_eq!(pass(&full).partial.sink, sought.partial.sink);
    // The same bytes written again: another modification time.
    std::thread::sleep(std::time::Duration::from_millis(20));
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes).unwrap();
    let again = pass(&config);
    assert_eq!(again.stats.bytes, data.len() as u64);
    assert_eq!(again.partial.sink, sought.partial.sink);
}

#[test]
fn mailbox_records_beyond_the_horizon_are_not_counted() {
    let dir = tempfile::tempdir().unwrap();
    let rec = |t: &str, op: &str, rt: u32, user: &str, extra: &str| {
        format!(
            r#"{{"CreationTime":"{t}","Id":"{t}-{op}","Operation":"{op}","OrganizationId":"o","RecordType":{rt},"ResultStatus":"Succeeded","UserId":"{user}","Workload":"Exchange"{extra}}}"#
        )
    };
    let bypass = |t: &str, flag: &str| {
        rec(
            t,
            "Set-MailboxAuditBypassAssociation",
            1,
            "adm@contoso.com",
            &format!(
                r#","ObjectId":"victim@contoso.com","Parameters":[{{"Name":"Identity","Value":"victim@contoso.com"}},{{"Name":"AuditBypassEnabled","Value":"{flag}"}}]"#
            ),
        )
    };
    let lines = [
        rec(
            "2024-01-01T10:00:00",
            "MailItemsAccessed",
            2,
            "victim@contoso.com",
            "",
        ),
        rec(
            "2024-01-25T10:00:00",
            "MailItemsAccessed",
            2,
            "victim@contoso.com",
            "",
        ),
        bypass("2024-01-30T10:00:00", "True"),
        bypass("2024-02-02T10:00:00", "False"),
        rec(
            "2024-02-05T10:00:00",
            "MailItemsAccessed",
            2,
            "victim@contoso.com",
            "",
        ),
        rec(
            "2024-03-20T10:00:00",
            "MailItemsAccessed",
            2,
            "victim@contoso.com",
            "",
        ),
    ];
    let path = write(
        dir.path(),
        "h.jsonl",
        (lines.join("\n") + "\n").as_bytes(),
        false,
    );
    let blind = |horizon_days: i64| {
        let mut config = Config::new(vec![path.clone()]);
        config.context_horizon = chrono::Duration::days(horizon_days);
        config.chunk_size = 64;
        let report = ualhunt_engine::run(&config).unwrap();
        let mut out = Vec::new();
        ualhunt_report::write(OutputFormat::Json, &report, &mut out).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        let b = v["investigations"][0]["accounts"][0]["blind_spot"].clone();
        (
            b["mailbox_audit_before"].as_u64().unwrap(),
            b["mailbox_audit_after"].as_u64().unwrap(),
            b["mailbox_audit_per_day"].as_array().unwrap().len(),
        )
    };
    assert_eq!(blind(7), (1, 1, 2));
    assert_eq!(blind(30), (2, 1, 3));
    assert_eq!(blind(60), (2, 2, 4));
}

/// The reference: each record's time and kind read on its own.
fn reference_coverage(data: &[u8]) -> (Option<i64>, Option<i64>, u64, u64, u64) {
    let (mut first, mut last, mut undated, mut admin, mut records) = (None, None, 0, 0, 0);
    for line in data.split(|&b| b == b'\n') {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        records += 1;
        let (t, a) = probe(line);
        admin += u64::from(a);
        match t {
            Some(t) => {
                first = Some(first.map_or(t, |f: i64| f.min(t)));
                last = Some(last.map_or(t, |l: i64| l.max(t)));
            }
            None => undated += 1,
        }
    }
    (first, last, undated, admin, records)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    #[test]
    fn the_index_is_exact_for_records_in_any_order(
        seed in any::<u64>(),
        how in 0u8..4,
        order in 0u8..4,
        chunk in prop_oneof![64usize..2048, 2048usize..65_536],
        threads in 1usize..4,
        block in prop_oneof![16usize..1024, Just(1 << 18)],
        prefilter in any::<bool>(),
    ) {
        let data = reorder(&keyed(60, 120_000, seed, order), how, seed);
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "a.jsonl", &data, false);
        let mut config = Config::new(vec![path.clone()]);
        config.chunk_size = chunk;
        config.threads = threads;
        config.scan_block = block;
        config.prefilter = prefilter;
        let found = ualhunt_engine::stages::discover(&config);
        let matcher = ualhunt_engine::stages::first_matcher(&config);
        // On the global pool: the thread count is varied in the run below.
        let first = ualhunt_engine::stages::first_pass(&found.inputs, &matcher, &config);
        let index = &first.partial.index;
        // The spans tile the file, and each one's times and lines are those of its
        // records read one by one.
        let mut at = 0u64;
        let mut line = 0u64;
        for s in index {
            prop_assert_eq!((s.offset, s.line), (at, line));
            let bytes = &data[s.offset as usize..(s.offset + s.len) as usize];
            let (f, l, undated, _, _) = reference_coverage(bytes);
            prop_assert_eq!((s.first, s.last, s.undated), (f, l, undated));
            prop_assert_eq!(s.lines, bytes.split_inclusive(|&b| b == b'\n').count() as u64);
            at += s.len;
            line += s.lines;
        }
        prop_assert_eq!(at, data.len() as u64);
        // The coverage is the per-record reference's.
        let c = &first.partial.coverage;
        let (f, l, undated, admin, records) = reference_coverage(&data);
        prop_assert_eq!((c.first, c.last, c.undated, c.exchange_admin, c.records()), (f, l, undated, admin, records));
        let mut days = std::collections::BTreeMap::<i32, u64>::new();
        for line in data.split(|&b| b == b'\n') {
            if let (Some(t), _) = probe(line) {
                *days.entry(t.div_euclid(86_400) as i32).or_default() += 1;
            }
        }
        prop_assert_eq!(&c.days, &days);
        // And the context pass it drives reports what a full read reports.
        same_as_full_read(&[path], &move |c: &mut Config| {
            c.chunk_size = chunk;
            c.threads = threads;
            c.scan_block = block;
            c.prefilter = prefilter;
        });
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 10, ..ProptestConfig::default() })]

    #[test]
    fn the_context_pass_over_compressed_files_is_the_full_read_for_any_points_and_sizes(
        seed in any::<u64>(),
        how in 0u8..4,
        form in 0usize..5,
        level in prop_oneof![Just(1u32), Just(6), Just(9)],
        chunk in prop_oneof![256usize..4096, 4096usize..65_536],
        threads in 1usize..4,
        spacing in prop_oneof![1u64..5_000, 5_000u64..200_000, Just(u64::MAX)],
    ) {
        let data = reorder(&story(90, Plot::TwoPeriods, 150_000, seed, GenShape::Ual), how, seed);
        let (name, bytes) = compressed(&data, level).swap_remove(form);
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), &format!("a.jsonl.{name}"), &bytes, false);
        let (read, all) = same_as_full_read(&[path], &move |c: &mut Config| {
            c.chunk_size = chunk;
            c.threads = threads;
            c.seek_spacing = spacing;
        });
        prop_assert!(read <= all, "{} of {}", read, all);
    }
}
