//! Criterion benches of each pipeline stage on generated audit lines, in bytes/s:
//! the prefilter over a chunk, the block search of a rule pack (Elastic's rules, and
//! the Sigma corpus beside them, from `../shared/corpus` when it is there), a whole
//! chunk scan (rare matches), candidate parsing (every line a candidate), and gzip
//! inflation with the compiled-in backend.
//!
//!     cargo bench                     # zlib-rs gzip backend
//!     cargo bench --features isal     # ISA-L gzip backend (needs libisal-dev)

use std::hint::black_box;
use std::io::{Read, Write};
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ualhunt_engine::findings::Harvest;
use ualhunt_engine::prefilter::Prefilter;
use ualhunt_engine::rule::Rule;
use ualhunt_engine::scan::{Matcher, Pass, Scratch, scan_chunk};
use ualhunt_generate::{GenOptions, GenShape, generate};

const CHUNK: u64 = 8 << 20;

fn archive(rate: f64, shape: GenShape) -> Vec<u8> {
    let mut out = Vec::new();
    generate(
        &GenOptions {
            size: CHUNK,
            seed: 42,
            shape,
            rate,
            key_order: Default::default(),
        },
        &mut out,
    )
    .expect("in memory");
    out
}

fn prefilter(c: &mut Criterion) {
    let data = archive(0.00001, GenShape::Ual);
    let p = Prefilter::for_rules(&Rule::builtin());
    let mut g = c.benchmark_group("prefilter");
    g.throughput(Throughput::Bytes(data.len() as u64));
    g.bench_function("memmem over 8 MiB chunk", |b| {
        b.iter(|| {
            let mut hits = 0;
            let mut at = 0;
            while let Some(i) = p.find(&data[at..]) {
                hits += 1;
                at += i + 1;
            }
            black_box(hits)
        })
    });
    g.bench_function("line count (memchr newline) over 8 MiB chunk", |b| {
        b.iter(|| black_box(memchr::memchr_iter(b'\n', &data).count()))
    });
    g.finish();
}

/// The router's search of a block for everything a rule pack searches for at once
/// (`scan`'s block search), as the scan runs it.
fn block_search(c: &mut Criterion) {
    let corpus = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus");
    let data = archive(0.00001, GenShape::Ual);
    let mut g = c.benchmark_group("block search");
    g.throughput(Throughput::Bytes(data.len() as u64));
    let packs: [(&str, &[&str]); 2] = [
        ("Elastic's rules", &["elastic-rules"]),
        (
            "Elastic's rules and the Sigma corpus",
            &["elastic-rules", "sigma-m365"],
        ),
    ];
    for (name, dirs) in packs {
        let paths: Vec<std::path::PathBuf> = dirs.iter().map(|d| corpus.join(d)).collect();
        let Ok(set) = ualhunt_engine::rule::load::load(&paths) else {
            eprintln!("block search: no rules under {}, skipped", corpus.display());
            break;
        };
        let m = Matcher::new(set.rules, true, 64 << 20);
        let Some(router) = m.router() else {
            continue;
        };
        let mut hits = Vec::new();
        g.bench_function(name, |b| {
            b.iter(|| {
                router.block_hits(&data, 0, data.len(), &mut hits);
                black_box(hits.len())
            })
        });
    }
    g.finish();
}

fn chunk_scan(c: &mut Criterion) {
    let mut g = c.benchmark_group("chunk scan");
    for (name, rate, shape) in [
        ("rare matches, raw UAL", 0.00001, GenShape::Ual),
        ("rare matches, ECS", 0.00001, GenShape::Ecs),
        (
            "every line a candidate (parse), raw UAL",
            1.0,
            GenShape::Ual,
        ),
        ("every line a candidate (parse), ECS", 1.0, GenShape::Ecs),
    ] {
        let data = archive(rate, shape);
        let m = Matcher::new(Rule::builtin(), true, 64 << 20);
        let mut scratch = Scratch::default();
        g.throughput(Throughput::Bytes(data.len() as u64));
        g.bench_function(name, |b| {
            b.iter(|| {
                black_box(scan_chunk::<Harvest>(
                    &data,
                    0,
                    Pass::new(&m, &()),
                    &mut scratch,
                ))
            })
        });
    }
    let data = archive(0.00001, GenShape::Ual);
    let m = Matcher::new(Rule::builtin(), false, 64 << 20);
    let mut scratch = Scratch::default();
    g.throughput(Throughput::Bytes(data.len() as u64));
    g.bench_function("no prefilter (reference path), raw UAL", |b| {
        b.iter(|| {
            black_box(scan_chunk::<Harvest>(
                &data,
                0,
                Pass::new(&m, &()),
                &mut scratch,
            ))
        })
    });
    g.finish();
}

fn inflate(c: &mut Criterion) {
    let data = archive(0.00001, GenShape::Ual);
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
    enc.write_all(&data).expect("in memory");
    let gz: &'static [u8] = enc.finish().expect("in memory").leak();
    let mut g = c.benchmark_group("gzip inflate");
    g.throughput(Throughput::Bytes(data.len() as u64));
    let mut out = vec![0u8; 1 << 20];
    g.bench_function(ualhunt_input::inflate::BACKEND, |b| {
        b.iter(|| {
            // A cursor hands out the whole input at once, as the memory map of a file does.
            let input = std::io::Cursor::new(gz);
            let mut r = ualhunt_input::inflate::gzip_reader(Box::new(input), Default::default());
            let mut total = 0;
            while let Ok(n) = r.read(&mut out) {
                if n == 0 {
                    break;
                }
                total += n;
            }
            black_box(total)
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(15).measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = prefilter, block_search, chunk_scan, inflate
}
criterion_main!(benches);
