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
    // The chart's band too (it said "still ON at the end of the data").
    assert!(
        html.contains(&format!("→ still ON at {at} (--until)</title>")),
        "html chart band title"
    );
    assert!(
        !html.contains("still ON at the end of the data"),
        "html chart"
    );
    let timeline = hunt("timeline", &until);
    assert!(
        timeline.contains(&format!("still open at {at} (--until)")),
        "{timeline}"
    );
    let start: serde_json::Value = timeline
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|l| l["data_type"] == "ualhunt:bypass_period_start")
        .unwrap();
    assert_eq!(start["open_as_of"], at);
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
    assert!(hunt("html", &[]).contains("→ still ON at the end of the data</title>"));
}

#[test]
fn json_and_timeline_periods_locate_the_records_that_set_and_ended_them() {
    // Regression: the table and HTML said where the enable and the disable were
    // (`path:line`), the JSON and timeline periods did not. Here the disable (line 19)
    // comes before the enable (line 38) in the file.
    const S1: &str = "tests/fixtures/investigation/s1_bypass_window_then_resume.jsonl";
    let place = |line: u64| serde_json::json!({"path": S1, "line": line});
    let out = ualhunt(&["hunt", "-q", "--format", "json", S1]);
    assert_eq!(out.status.code(), Some(0));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let period = &json["investigations"][0]["accounts"][0]["periods"][0];
    assert_eq!(period["set_by"], "adm.jones@contoso.com");
    assert_eq!(period["set_at"], place(38));
    assert_eq!(period["ended_at"], place(19));
    let table = String::from_utf8(ualhunt(&["hunt", "-q", "--wide", S1]).stdout).unwrap();
    assert!(
        table.contains(&format!(
            "set by adm.jones@contoso.com ({S1}:38)  ended by adm.jones@contoso.com ({S1}:19)"
        )),
        "{table}"
    );
    let out = ualhunt(&["hunt", "-q", "--format", "timeline", S1]);
    let lines: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let periods: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|l| {
            l["data_type"]
                .as_str()
                .is_some_and(|t| t.starts_with("ualhunt:bypass_period"))
        })
        .collect();
    assert_eq!(periods.len(), 2, "a start and an end");
    for p in periods {
        assert_eq!(p["set_at"], place(38));
        assert_eq!(p["ended_at"], place(19));
    }
    // A period open at the end of the data has no end record; one that predates the
    // data, no start record.
    let json: serde_json::Value = serde_json::from_str(&hunt("json", &[])).unwrap();
    let period = &json["investigations"][0]["accounts"][0]["periods"][0];
    assert_eq!(period["set_at"], place_of(OPEN, 24));
    assert_eq!(period["ended_at"], serde_json::Value::Null);
}

fn place_of(path: &str, line: u64) -> serde_json::Value {
    serde_json::json!({"path": path, "line": line})
}
