//! How every report format ends a bypass period: one still open under `--until` is open
//! as of the window's end, not "now"; each period names where the records that set and
//! ended it are.

mod common;

use common::ualhunt;

const OPEN: &str = "tests/fixtures/investigation/s2_open_period.jsonl";

fn hunt(format: &str, extra: &[&str]) -> String {
    let mut args = vec!["hunt", "-q", "--format", format];
    args.extend_from_slice(extra);
    args.push(OPEN);
    let out = ualhunt(&args);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{format}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn an_open_period_under_until_is_open_at_until_in_every_format() {
    // Regression: the next step said "– now" for a period open at the end of a run
    // limited by --until.
    let until = ["--until", "2024-03-14"];
    let at = "2024-03-15T00:00:00Z";
    let table = hunt("table", &["--wide", until[0], until[1]]);
    assert!(
        table.contains(&format!("2024-03-13T11:00:00Z -> OPEN at {at} (--until)")),
        "{table}"
    );
    assert!(
        table.contains(&format!(
            "review what it did unaudited, 2024-03-13T11:00:00Z – still open at {at} (--until)"
        )),
        "{table}"
    );
    assert!(!table.contains("– now"), "{table}");
    let json: serde_json::Value = serde_json::from_str(&hunt("json", &until)).unwrap();
    let period = &json["investigations"][0]["accounts"][0]["periods"][0];
    assert_eq!(period["open"], true);
    assert_eq!(period["end"], serde_json::Value::Null);
    assert_eq!(period["open_as_of"], at);
    let html = hunt("html", &until);
    assert!(
        html.contains(&format!(
            r#"<b class="red">still ON</b> at {at} (<code>--until</code>)"#
        )),
        "html"
    );
    assert!(
        html.contains(&format!("– still open at {at} (--until)")),
        "html next steps"
    );
    assert!(!html.contains("– now"), "html");
    let timeline = hunt("timeline", &until);
    assert!(
        timeline.contains(&format!("still open at {at} (--until)")),
        "{timeline}"
    );
    // Without --until: open at the end of the data, as before.
    let table = hunt("table", &["--wide"]);
    assert!(
        table.contains("2024-03-13T11:00:00Z -> OPEN  set by"),
        "{table}"
    );
    assert!(table.contains("2024-03-13T11:00:00Z – now"), "{table}");
    let json: serde_json::Value = serde_json::from_str(&hunt("json", &[])).unwrap();
    let period = &json["investigations"][0]["accounts"][0]["periods"][0];
    assert_eq!(period["open_as_of"], serde_json::Value::Null);
    assert!(hunt("timeline", &[]).contains("; still on at the end of the data"));
}
