//! The whole hunt of one input through the library entry point, in any container: the
//! fuzzer's bytes are written plain, gzip (two members), zstd, in a zip (twice, under
//! the same name), or as UTF-16 LE/BE, and hunted with the prefilter (one thread,
//! default chunks), with tiny chunks and scan blocks on two threads (byte-identical
//! JSON), and without the prefilter (the same findings and records). The accounting
//! identities hold, and the heap stays under a bound.
//! Control byte: [0] container.

use std::io::Write;
use std::path::PathBuf;

use ualhunt_engine::alloc::CountingAlloc;
use ualhunt_engine::Config;
use ualhunt_report::OutputFormat;
use ualhunt_fuzz::{check_counts, split_control};

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

/// Peak heap allowed: inputs are small, so this is far more than any run needs (the
/// scan's own bound is blocks of 16 MiB and --max-line-size, set to 1 MiB here).
const HEAP_BOUND: usize = 256 << 20;

fn container(kind: u8, text: &[u8]) -> Vec<u8> {
    match kind % 7 {
        1 => {
            let mut out = Vec::new();
            let mid = text.len() / 2;
            for part in [&text[..mid], &text[mid..]] {
                let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                e.write_all(part).unwrap();
                out.extend(e.finish().unwrap());
            }
            out
        }
        2 => zstd::encode_all(text, 1).unwrap(),
        3 => {
            let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
            let opts = zip::write::SimpleFileOptions::default()
                .compression_method(zip::CompressionMethod::Deflated);
            for name in ["a/export.jsonl", "b.csv"] {
                w.start_file(name, opts).unwrap();
                w.write_all(text).unwrap();
            }
            w.finish().unwrap().into_inner()
        }
        4 | 5 => {
            let s = String::from_utf8_lossy(text);
            let mut out = Vec::new();
            if kind % 7 == 4 {
                out.extend([0xFF, 0xFE]);
                s.encode_utf16().for_each(|u| out.extend(u.to_le_bytes()));
            } else {
                out.extend([0xFE, 0xFF]);
                s.encode_utf16().for_each(|u| out.extend(u.to_be_bytes()));
            }
            out
        }
        6 => {
            // gzip holding UTF-16 (a PowerShell export, gzipped).
            container(1, &container(4, text))
        }
        _ => text.to_vec(),
    }
}

fn hunt(path: &PathBuf, tweak: impl FnOnce(&mut Config)) -> (ualhunt_engine::Report, Vec<u8>) {
    let mut config = Config::new(vec![path.clone()]);
    config.threads = 1;
    config.context = true;
    config.max_line = 1 << 20;
    tweak(&mut config);
    let report = ualhunt_engine::run(&config).unwrap();
    let mut out = Vec::new();
    ualhunt_report::write(OutputFormat::Json, &report, &mut out).unwrap();
    (report, out)
}

fn main() {
    ualhunt_engine::alloc::start_counting();
    let dir = std::env::var_os("UALHUNT_FUZZ_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/dev/shm"));
    let path = dir.join(format!("ualhunt-fuzz-{}.bin", std::process::id()));
    afl::fuzz!(|data: &[u8]| {
        let Some((control, text)) = split_control(data, 1) else {
            return;
        };
        std::fs::write(&path, container(control[0], text)).unwrap();
        let (a, json_a) = hunt(&path, |_| {});
        let (_, json_b) = hunt(&path, |c| {
            c.threads = 2;
            c.chunk_size = 64;
            c.scan_block = 16;
        });
        let (c, _) = hunt(&path, |c| c.prefilter = false);
        check_counts(&a.counts, false);
        check_counts(&c.counts, false);
        assert_eq!(
            String::from_utf8_lossy(&json_a),
            String::from_utf8_lossy(&json_b),
            "chunking or threads change the output"
        );
        assert_eq!(a.counts.lines, c.counts.lines);
        assert_eq!(a.counts.records, c.counts.records);
        assert_eq!(
            a.counts.matched, c.counts.matched,
            "prefilter path != reference path"
        );
        assert_eq!(a.events(), c.events());
        assert_eq!(a.errors, c.errors);
        assert!(
            ualhunt_engine::alloc::peak_heap() < HEAP_BOUND,
            "heap {}",
            ualhunt_engine::alloc::peak_heap()
        );
        let _ = std::fs::remove_file(&path);
    });
}
