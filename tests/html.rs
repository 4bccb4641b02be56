//! The HTML report in a real browser: headless Chromium loads each page from disk and
//! dumps its DOM, and the test reads that DOM and the browser's console. A page must
//! load without a console message (a CSP violation is one), show the verdict and the
//! timelines, keep hostile archive strings as inert text, and point at nothing but
//! itself (`#…`) or `data:`.
//!
//! Needs `chromium` on PATH (`apt-get install -y chromium`; CI installs it) or its path
//! in `UALHUNT_CHROMIUM`. Without it only the checks of the written file run, and each
//! test says so in a `SKIPPED` line; under `UALHUNT_TESTS_STRICT=1` (CI) they fail.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command as Process, Stdio};
use std::time::{Duration, Instant};

use assert_cmd::Command;

fn ualhunt() -> Command {
    let mut cmd = Command::cargo_bin("ualhunt").unwrap();
    cmd.current_dir(env!("CARGO_MANIFEST_DIR"));
    cmd
}

/// The browser, or `None` when the tests are told to skip it.
fn browser() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("UALHUNT_CHROMIUM") {
        return Some(PathBuf::from(path));
    }
    let names = [
        "chromium",
        "chromium-browser",
        "google-chrome",
        "google-chrome-stable",
    ];
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .flat_map(|dir| names.iter().map(move |n| dir.join(n)))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        common::skipped(
            "the HTML report in a browser",
            "chromium not found (apt-get install -y chromium, or UALHUNT_CHROMIUM=/path/to/it)",
        );
    }
    found
}

/// What the browser made of a page.
struct Loaded {
    /// The DOM after load, serialized.
    dom: String,
    /// The console messages (`INFO:CONSOLE` lines of the browser's log).
    console: Vec<String>,
}

/// Loads a page in headless Chromium with a fresh profile and no network helpers.
fn load(browser: &Path, page: &Path) -> Loaded {
    load_with(browser, page, &[])
}

/// Loads a page with more browser flags (`--window-size=375,812`: a phone).
fn load_with(browser: &Path, page: &Path, flags: &[&str]) -> Loaded {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("dom.html");
    let log = dir.path().join("log.txt");
    let mut child = Process::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--enable-logging=stderr",
            "--v=0",
            "--virtual-time-budget=1000",
        ])
        .args(flags)
        .arg(format!(
            "--user-data-dir={}",
            dir.path().join("profile").display()
        ))
        .arg("--dump-dom")
        .arg(format!("file://{}", page.display()))
        .stdin(Stdio::null())
        .stdout(fs::File::create(&out).unwrap())
        .stderr(fs::File::create(&log).unwrap())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", browser.display()));
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > Duration::from_secs(120) {
            let _ = child.kill();
            panic!(
                "{} did not finish loading {}",
                browser.display(),
                page.display()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let log = fs::read_to_string(&log).unwrap_or_default();
    assert!(status.success(), "{status}: {log}");
    let dom = fs::read_to_string(&out).unwrap();
    assert!(dom.contains("</html>"), "no DOM dumped: {log}");
    Loaded {
        dom,
        console: log
            .lines()
            .filter(|l| l.contains(":CONSOLE"))
            .map(String::from)
            .collect(),
    }
}

/// Writes the HTML report of a hunt, checking the exit status.
fn report(args: &[&str], out: &Path, status: i32) -> String {
    let run = ualhunt()
        .args(["hunt", "--quiet", "--format", "html", "-o"])
        .arg(out)
        .args(args)
        .output()
        .unwrap();
    assert_eq!(
        run.status.code(),
        Some(status),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    fs::read_to_string(out).unwrap()
}

/// Every tag of a page as (name, attributes): since all text is escaped, each `<`
/// opens a tag. Attribute values may be quoted with `"` or `'`, or not at all.
fn tags(html: &str) -> Vec<(String, Vec<(String, String)>)> {
    let mut out = Vec::new();
    let mut rest = html;
    while let Some(i) = rest.find('<') {
        let tag = &rest[i + 1..];
        let b = tag.as_bytes();
        let mut j = 0;
        while j < b.len() && !b[j].is_ascii_whitespace() && b[j] != b'>' {
            j += 1;
        }
        let name = tag[..j].to_ascii_lowercase();
        let mut attrs = Vec::new();
        loop {
            while j < b.len() && (b[j].is_ascii_whitespace() || b[j] == b'/') {
                j += 1;
            }
            if j >= b.len() || b[j] == b'>' {
                break;
            }
            let k = j;
            while j < b.len() && !b[j].is_ascii_whitespace() && !matches!(b[j], b'=' | b'>') {
                j += 1;
            }
            let attr = tag[k..j].to_ascii_lowercase();
            let mut value = String::new();
            if j < b.len() && b[j] == b'=' {
                j += 1;
                if j < b.len() && matches!(b[j], b'"' | b'\'') {
                    let q = b[j];
                    let end = tag[j + 1..]
                        .bytes()
                        .position(|c| c == q)
                        .map_or(b.len(), |p| j + 1 + p);
                    value = tag[j + 1..end].to_string();
                    j = (end + 1).min(b.len());
                } else {
                    let k = j;
                    while j < b.len() && !b[j].is_ascii_whitespace() && b[j] != b'>' {
                        j += 1;
                    }
                    value = tag[k..j].to_string();
                }
            }
            attrs.push((attr, value));
        }
        out.push((name, attrs));
        rest = &tag[j.min(tag.len())..];
    }
    out
}

/// The page is self-contained: no script, no embedded object, no event handler, no URL
/// but `#…` and `data:` (and a rule guide's `http(s):` link, which loads nothing and
/// sends no referrer), and the strict CSP.
fn assert_self_contained(html: &str) {
    assert!(
        html.contains(r#"<meta http-equiv="Content-Security-Policy" content="default-src 'none';"#),
        "no CSP"
    );
    for (name, attrs) in tags(html) {
        assert!(
            !matches!(
                name.as_str(),
                "script"
                    | "img"
                    | "iframe"
                    | "object"
                    | "embed"
                    | "link"
                    | "base"
                    | "form"
                    | "image"
                    | "use"
            ),
            "<{name}>"
        );
        // A guide's link: http(s) on an <a>, without referrer or opener.
        let guide_link = name == "a"
            && attrs
                .iter()
                .any(|(k, v)| k == "rel" && v.contains("noreferrer") && v.contains("noopener"));
        for (attr, value) in &attrs {
            assert!(!attr.starts_with("on"), "<{name} {attr}>");
            if guide_link
                && attr == "href"
                && (value.starts_with("https://") || value.starts_with("http://"))
            {
                continue;
            }
            if matches!(
                attr.as_str(),
                "src" | "href" | "xlink:href" | "action" | "srcset"
            ) {
                assert!(
                    value.starts_with('#') || value.starts_with("data:"),
                    "<{name} {attr}={value:?}>"
                );
            }
        }
    }
    for (i, _) in html.match_indices("url(") {
        assert!(
            html[i + 4..].starts_with('#'),
            "{}",
            &html[i..(i + 40).min(html.len())]
        );
    }
}

fn assert_no_network(html: &str) {
    for scheme in ["http://", "https://", "//cdn", "@import"] {
        assert!(!html.contains(scheme), "{scheme} in the page");
    }
}

fn assert_quiet(loaded: &Loaded) {
    assert!(
        loaded.console.is_empty(),
        "console messages: {:#?}",
        loaded.console
    );
}

#[test]
fn sample_archive_report_loads_in_a_browser() {
    let browser = browser();
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("report.html");
    let html = report(&["testdata/"], &page, 0);
    assert_self_contained(&html);
    assert_no_network(&html);

    // The verdict the JSON gives, in words.
    let json = ualhunt()
        .args(["hunt", "--quiet", "--format", "json", "testdata/"])
        .output()
        .unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    let on = doc["investigations"][0]["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["state_at_end"] == "on")
        .count();
    assert!(on > 1);
    let verdict = format!("{on} accounts have mailbox audit bypass ON at the end of the data");
    assert!(html.contains(&verdict), "verdict missing");

    let Some(browser) = browser else { return };
    let loaded = load(&browser, &page);
    assert_quiet(&loaded);
    let dom = loaded.dom.replace("<wbr>", "");
    assert!(dom.contains(&verdict), "verdict missing from the DOM");
    assert!(dom.contains("Coverage: "), "coverage verdict missing");
    assert!(
        dom.contains(r#"<svg class="chart timeline""#),
        "no timeline"
    );
    assert!(dom.contains(r#"<rect class="period"#), "no period drawn");
    assert!(
        dom.contains(r#"<svg class="chart" viewBox"#),
        "no records-per-day chart"
    );
    assert!(dom.contains("T1562.001"), "no MITRE mapping");
    assert!(dom.contains(r#"id="evidence""#));
    // What the browser holds is what was written: nothing added, nothing run.
    assert_self_contained(&loaded.dom);
}

#[test]
fn storyline_timelines_show_open_and_predated_periods_gaps_and_attempts() {
    let browser = browser();
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("story.jsonl");
    let generated = ualhunt()
        .args(["generate", "--size", "1M", "--scenarios", "-o"])
        .arg(&archive)
        .output()
        .unwrap();
    assert!(generated.status.success());
    let allow = dir.path().join("allow.toml");
    fs::write(
        &allow,
        "[[allow]]\naccount = \"svc-backup@contoso.onmicrosoft.com\"\n\
         reason = \"Veeam Backup for Microsoft 365\"\nowner = \"it-ops@contoso.com\"\n\
         expires = 2099-12-31\n",
    )
    .unwrap();
    let page = dir.path().join("story.html");
    let html = report(
        &[
            "--allow",
            allow.to_str().unwrap(),
            archive.to_str().unwrap(),
        ],
        &page,
        0,
    );
    assert_self_contained(&html);
    assert_no_network(&html);
    let Some(browser) = browser else { return };
    let loaded = load(&browser, &page);
    assert_quiet(&loaded);
    let dom = loaded.dom.replace("<wbr>", "");
    for needle in [
        "2 accounts have mailbox audit bypass ON at the end of the data (1 allowlisted)",
        "allowlisted: Veeam Backup for Microsoft 365",
        "Coverage: INCONCLUSIVE",
        r#"class="period open""#,
        r#"class="period predates""#,
        r#"<rect class="period" "#,
        r#"class="gap""#,
        r#"class="mark m-enable""#,
        r#"class="mark m-disable""#,
        r#"class="mark m-attempt""#,
        r#"<rect class="mbar""#,
        "still ON at the end of the data",
        "failed attempts only",
        "Audit tampering",
        "Set-AdminAuditLogConfig -UnifiedAuditLogIngestionEnabled $false",
    ] {
        assert!(dom.contains(needle), "{needle:?} missing");
    }
    // The bypassed account's blind spot shows as a hole: no mailbox bar of
    // finance.assistant inside its period (2024-01-06T10 .. 2024-01-13T16).
    let lane = &dom[dom
        .find("finance.assistant@contoso.onmicrosoft.com</span> <span class=\"badge off\"")
        .unwrap()..];
    let lane = &lane[..lane.find("</svg>").unwrap()];
    let bars: Vec<&str> = lane
        .split(r#"<rect class="mbar""#)
        .skip(1)
        .map(|bar| &bar[bar.find("<title>").unwrap() + 7..][..10])
        .collect();
    assert!(!bars.is_empty(), "no mailbox audit bar");
    for day in bars {
        assert!(
            !("2024-01-07".."2024-01-13").contains(&day),
            "a mailbox audit bar inside the blind spot on {day}"
        );
    }
}

/// Records whose actor, target, record id, command line and input name are crafted to
/// break out of the page or reorder what it shows; one of them a failed attempt.
fn hostile_archive(dir: &Path) -> PathBuf {
    let script = "<script>alert(1)</script>";
    let img = "\"><img src=x onerror=alert(1)>";
    let bidi = "adm\u{202e}moc.osotnoc@nimda";
    let record = |time: &str, id: &str, actor: &str, target: &str, status: &str, extra: &str| {
        serde_json::json!({
            "CreationTime": time, "Id": id, "Operation": "Set-MailboxAuditBypassAssociation",
            "OrganizationId": "4a7c8238-5799-4b16-9fc6-9ad8fce5a7d9", "RecordType": 1,
            "ResultStatus": status, "UserKey": "10032001", "UserType": 2, "Version": 1,
            "Workload": "Exchange", "ClientIP": "198.51.100.7:4431", "UserId": actor,
            "ObjectId": target,
            "Parameters": [{"Name": "Identity", "Value": target},
                           {"Name": "AuditBypassEnabled", "Value": "True"},
                           {"Name": "Comment", "Value": extra}]
        })
        .to_string()
    };
    let lines = [
        record(
            "2024-03-01T09:00:00",
            "<b>id-1</b>",
            script,
            img,
            "True",
            "198.51.100.7:4431",
        ),
        record(
            "2024-03-01T10:00:00",
            "id-2'\"",
            bidi,
            &format!("{script}\u{2066}x"),
            "True",
            "<svg onload=alert(3)>",
        ),
        record(
            "2024-03-01T11:00:00",
            "id-3",
            img,
            bidi,
            "Failed",
            "198.51.100.8",
        ),
        record(
            "2024-03-02T09:00:00",
            "id-4",
            "admin@contoso.com",
            "mbx\u{1b}[31m\u{202d}@contoso.com",
            "True",
            "[2001:db8::1]:443",
        ),
    ];
    let path = dir.join("<i>evil'.jsonl");
    fs::write(&path, lines.join("\n") + "\n").unwrap();
    path
}

#[test]
fn hostile_strings_stay_inert_text() {
    let browser = browser();
    let dir = tempfile::tempdir().unwrap();
    let archive = hostile_archive(dir.path());
    let page = dir.path().join("hostile.html");
    let html = report(&[archive.to_str().unwrap()], &page, 0);
    assert_self_contained(&html);
    // No bidi or control character reaches the page as itself.
    for c in ('\u{202a}'..='\u{202e}')
        .chain('\u{2066}'..='\u{2069}')
        .chain(['\u{1b}'])
    {
        assert!(!html.contains(c), "{c:?} written as is");
    }

    let Some(browser) = browser else { return };
    let loaded = load(&browser, &page);
    assert_quiet(&loaded);
    let dom = &loaded.dom;
    assert_self_contained(dom);
    assert!(!dom.contains("<script"), "a script element from the data");
    assert!(!dom.contains("<img"), "an img element from the data");
    assert!(
        !dom.contains("<b>id-1") && !dom.contains("<i>evil"),
        "markup from the data"
    );
    assert!(!dom.contains('\u{202e}') && !dom.contains('\u{2066}'));
    let text = dom.replace("<wbr>", "");
    for shown in [
        "&lt;script&gt;alert(1)&lt;/script&gt;",
        "\"&gt;&lt;img src=x onerror=alert(1)&gt;",
        "&lt;b&gt;id-1&lt;/b&gt;",
        "&lt;svg onload=alert(3)&gt;",
        "&lt;i&gt;evil'.jsonl",
        r"\u{202e}",
        r"\u{2066}",
        r"\u{1b}</span>[31m",
    ] {
        assert!(text.contains(shown), "{shown:?} not shown as text");
    }
    // The bidi escape is highlighted, so a reader sees it is not part of the name.
    assert!(dom.contains(r#"<span class="ctl" title="U+202E">\u{202e}</span>"#));
}

/// The console check above would see a CSP violation: a page that breaks its own
/// policy makes console messages in this browser.
#[test]
fn the_console_check_sees_a_csp_violation() {
    let Some(browser) = browser() else { return };
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("violation.html");
    fs::write(
        &page,
        "<!DOCTYPE html><html><head><meta http-equiv=\"Content-Security-Policy\" \
         content=\"default-src 'none'; style-src 'unsafe-inline'; img-src data:\"></head>\
         <body><img src=\"http://127.0.0.1:9/x.png\"><p>x</p></body></html>",
    )
    .unwrap();
    let loaded = load(&browser, &page);
    assert!(
        loaded
            .console
            .iter()
            .any(|l| l.contains("Content Security Policy")),
        "{:#?}",
        loaded.console
    );
}

/// Measures a page's timelines in the browser: a copy of the page, its policy opened to
/// one inline script (the report itself has none), lists every pair of timeline texts
/// and marks whose boxes intersect, as `chart: a / b` lines.
fn timeline_overlaps(browser: &Path, page: &Path, width: u32) -> Vec<String> {
    const SCRIPT: &str = r#"<script>
addEventListener('load', () => {
  const out = [];
  const hit = (a, b) => a.left < b.right - 0.5 && b.left < a.right - 0.5
      && a.top < b.bottom - 0.5 && b.top < a.bottom - 0.5;
  document.querySelectorAll('svg.chart.timeline').forEach((svg, i) => {
    const items = [...svg.querySelectorAll('text, g.mark')].map(el => ({
      r: el.getBoundingClientRect(),
      name: el.tagName === 'text' ? 'text ' + JSON.stringify(el.textContent)
                                  : el.getAttribute('class'),
      mark: el.tagName !== 'text',
    }));
    for (let a = 0; a < items.length; a++)
      for (let b = a + 1; b < items.length; b++) {
        const x = items[a], y = items[b];
        // Two changes at (almost) one time may touch; everything else must not.
        const changes = x.mark && y.mark && !x.name.includes('attempt')
            && !y.name.includes('attempt');
        if (!changes && x.r.width > 0 && y.r.width > 0 && hit(x.r, y.r))
          out.push(i + ': ' + x.name + ' / ' + y.name);
      }
  });
  const pre = document.createElement('pre');
  pre.id = 'overlaps';
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>"#;
    let html = fs::read_to_string(page).unwrap();
    let html = html
        .replacen(
            "default-src 'none';",
            "default-src 'none'; script-src 'unsafe-inline';",
            1,
        )
        .replacen("</body>", &format!("{SCRIPT}</body>"), 1);
    let measured = page.with_extension("measured.html");
    fs::write(&measured, html).unwrap();
    let size = format!("--window-size={width},900");
    let loaded = load_with(browser, &measured, &[&size]);
    let dom = &loaded.dom;
    let start = dom
        .find(r#"<pre id="overlaps">"#)
        .expect("the measuring script did not run")
        + r#"<pre id="overlaps">"#.len();
    let json = &dom[start..start + dom[start..].find("</pre>").unwrap()];
    let json = json
        .replace("&quot;", "\"")
        .replace("&amp;", "&")
        .replace("&lt;", "<")
        .replace("&gt;", ">");
    serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}: {json}"))
}

/// One account's changes and failed attempts minutes apart (a ✕ beside a ▲, marks
/// grouped as ×N), another account's a month later.
fn crowded_archive(dir: &Path) -> PathBuf {
    let record = |time: &str, id: &str, target: &str, status: &str, on: &str| {
        serde_json::json!({
            "CreationTime": time, "Id": id, "Operation": "Set-MailboxAuditBypassAssociation",
            "OrganizationId": "4a7c8238-5799-4b16-9fc6-9ad8fce5a7d9", "RecordType": 1,
            "ResultStatus": status, "UserKey": "10032001", "UserType": 2, "Version": 1,
            "Workload": "Exchange", "ClientIP": "198.51.100.7", "UserId": "admin@contoso.com",
            "ObjectId": target,
            "Parameters": [{"Name": "Identity", "Value": target},
                           {"Name": "AuditBypassEnabled", "Value": on}]
        })
        .to_string()
    };
    let a = "crowded@contoso.com";
    let lines = [
        record("2024-03-01T09:00:00", "c1", a, "Failed", "True"),
        record("2024-03-01T09:00:30", "c2", a, "True", "True"),
        record("2024-03-01T09:01:00", "c3", a, "Failed", "True"),
        record("2024-03-01T09:02:00", "c4", a, "Failed", "True"),
        record("2024-03-01T09:03:00", "c5", a, "True", "True"),
        record("2024-03-01T13:00:00", "c6", a, "Failed", "True"),
        record("2024-03-01T20:00:00", "c7", a, "True", "True"),
        record("2024-03-02T02:00:00", "c8", a, "Failed", "True"),
        record(
            "2024-03-31T09:00:00",
            "c9",
            "other@contoso.com",
            "True",
            "True",
        ),
    ];
    let path = dir.join("crowded.jsonl");
    fs::write(&path, lines.join("\n") + "\n").unwrap();
    path
}

/// At phone width (375 px) no text of a timeline covers another or a mark, and a
/// failed attempt's ✕ never covers a change's ▲ (they used to share a row, and the
/// lane captions grew into the chart).
#[test]
fn timeline_labels_do_not_overlap_at_phone_width() {
    let Some(browser) = browser() else { return };
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("story.jsonl");
    let generated = ualhunt()
        .args(["generate", "--size", "1M", "--scenarios", "-o"])
        .arg(&archive)
        .output()
        .unwrap();
    assert!(generated.status.success());
    let crowded = crowded_archive(dir.path());
    for (name, args) in [
        ("crowded", vec![crowded.to_str().unwrap()]),
        ("story", vec![archive.to_str().unwrap()]),
        ("sample", vec!["testdata/"]),
    ] {
        let page = dir.path().join(format!("{name}.html"));
        report(&args, &page, 0);
        for width in [375, 1280] {
            let overlaps = timeline_overlaps(&browser, &page, width);
            assert!(
                overlaps.is_empty(),
                "{name} at {width} px: {} overlaps: {overlaps:#?}",
                overlaps.len()
            );
        }
    }
}

const RULES: &str = "tests/fixtures/responder/rules";
const PACK: &str = "tests/fixtures/responder/pack.jsonl";

/// The section of a page that starts at `id="{id}"`.
fn section<'a>(html: &'a str, id: &str) -> &'a str {
    let at = html
        .find(&format!(r#"id="{id}""#))
        .unwrap_or_else(|| panic!("no section {id}"));
    let rest = &html[at..];
    &rest[..rest.find("</section>").unwrap()]
}

/// A pack of three rules over one bypass change, two sign-in signals (a building block)
/// and three inbox rules: the verdict counts the one bypass change and says apart what
/// the other rules found; the header names the pack, not its first rule; the evidence
/// names each finding's rule and its next step; descriptions keep their paragraphs;
/// each rule that fired shows its guide, a hostile one as inert text.
#[test]
fn rule_pack_report_reads_for_a_responder() {
    let browser = browser();
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("pack.html");
    let html = report(&["--rules", RULES, PACK], &page, 0);
    assert_self_contained(&html);

    let verdict = section(&html, "verdict");
    for part in [
        "1 account has mailbox audit bypass ON at the end of the data",
        "1 bypass change by 1 actor (0 allowlisted)",
        "<b>Other rules:</b> 1 rule fired, 3 events by 2 actors",
        "Building blocks: 1 rule fired, 2 events",
        "What to do now:",
    ] {
        assert!(
            verdict.contains(part),
            "{part:?} not in the verdict: {verdict}"
        );
    }
    // The header: the pack, never its first rule as if it were the only one.
    let header = &html[html.find("<header").unwrap()..html.find("</header>").unwrap()];
    assert!(header.contains("<h1>3 rules</h1>"), "{header}");
    assert!(header.contains("3 run, 3 fired, 0 not run"), "{header}");
    assert!(!header.contains("rule <span"), "{header}");

    // The evidence: a Rule column, and each finding's next step.
    let evidence = section(&html, "evidence");
    assert!(evidence.contains("<th>Rule</th>"), "no Rule column");
    assert_eq!(evidence.matches(r#"<td data-l="Rule">"#).count(), 6);
    assert!(
        evidence.contains(r#"<span class="badge bb""#),
        "building block not marked"
    );
    assert!(
        evidence.contains("Get-MailboxAuditBypassAssociation -Identity &#39;o&#39;&#39;brien@<wbr>contoso.com&#39;"),
        "{evidence}"
    );
    assert!(
        evidence.contains("-AuditBypassEnabled $false</code>"),
        "no removal command"
    );
    assert!(
        evidence.contains(r##"<a href="#guide-"##),
        "no pointer to a guide"
    );
    // The account's own next steps, under its timeline.
    assert!(section(&html, "accounts").contains(r#"<div class="nextbox">"#));

    // Descriptions: paragraphs, no escaped newline.
    assert!(!html.contains(r"\u{a}"), "a newline shown as an escape");
    assert!(html.contains("<p>Second paragraph.</p>"));

    // Each rule that fired has its guide, collapsed; the hostile one is text.
    assert_eq!(html.matches(r#"<details class="guide""#).count(), 2);
    let rules = section(&html, "rule");
    for shown in [
        "&lt;script&gt;alert(1)&lt;/script&gt;",
        "&lt;img src=x onerror=alert(2)&gt;",
        "javascript:alert(3)",
        "[image: pixel]",
        r"\u{202e}",
        r"\u{1b}",
        "&lt;iframe",
    ] {
        assert!(rules.contains(shown), "{shown:?} not shown as text");
    }
    assert!(rules.contains(
        r#"<a href="https://learn.microsoft.com/exchange/inbox-rules" rel="noreferrer noopener">docs</a>"#
    ));
    for c in ['\u{202e}', '\u{1b}'] {
        assert!(!html.contains(c), "{c:?} written as is");
    }

    let Some(browser) = browser else { return };
    let loaded = load(&browser, &page);
    assert_quiet(&loaded);
    let dom = &loaded.dom;
    assert_self_contained(dom);
    assert!(!dom.contains("<script"), "a script element from a guide");
    assert!(!dom.contains("<img"), "an img element from a guide");
    assert!(!dom.contains("<iframe"), "an iframe from a guide");
    assert!(
        !dom.contains("href=\"javascript"),
        "a script link from a guide"
    );
    assert!(dom.contains("1 bypass change by 1 actor"));
}
