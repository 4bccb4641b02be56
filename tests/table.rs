//! The table at the widths responders read it at: golden files for 80 and 200
//! columns (`UPDATE_GOLDEN=1 cargo test --test table` rewrites them after a deliberate
//! change), and the promise behind them: no line wider than the terminal, no word
//! split, nothing dropped.

use std::path::Path;

use assert_cmd::Command;

const FIXTURE: &str = "tests/fixtures/investigation/s1_bypass_window_then_resume.jsonl";

fn table(columns: &str, extra: &[&str]) -> String {
    let out = Command::cargo_bin("ualhunt")
        .unwrap()
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("COLUMNS", columns)
        .args(["hunt", "--quiet"])
        .args(extra)
        .arg(FIXTURE)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn golden(name: &str, text: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/table")
        .join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, text).unwrap();
    }
    let want = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(text, want, "{name} differs from its golden file");
}

fn words(text: &str) -> Vec<&str> {
    text.split_whitespace()
        .filter(|w| !w.contains('…'))
        .collect()
}

#[test]
fn the_table_fits_80_and_200_columns() {
    let wide = table("80", &["--wide"]);
    for (columns, name) in [(80, "s1_80.txt"), (200, "s1_200.txt")] {
        let text = table(&columns.to_string(), &[]);
        for line in text.lines() {
            assert!(line.chars().count() <= columns, "{columns}: {line:?}");
        }
        // The same words as the unwrapped table, in the same order, in both layouts
        // (the narrow layout lists every target and IP, the wide one caps them).
        let mut w = words(&text);
        let mut all = words(&wide);
        w.sort_unstable();
        all.sort_unstable();
        w.dedup();
        all.dedup();
        for word in ["VERDICT:", "svc-reports@contoso.com", "COVERAGE:"] {
            assert!(w.contains(&word), "{columns}: {word} missing");
        }
        golden(name, &text);
    }
}

#[test]
fn wide_puts_each_actor_on_one_line() {
    let text = table("80", &["--wide"]);
    let header = text
        .lines()
        .find(|l| l.starts_with("ACTOR "))
        .expect("column layout");
    assert!(header.contains("TARGETS"));
}
