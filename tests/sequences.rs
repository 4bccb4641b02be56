//! EQL sequences replayed over archives: a sequence whose steps are split across files,
//! shards and chunk boundaries, and arrive out of time order, completes exactly when its
//! steps happen in order within `maxspan` and before an `until`, with every step's
//! record as evidence; the report is the same for any thread count, chunk size, scan
//! block, shard count, and with or without the prefilter.
//!
//! The archives are written here: per user, a story of known outcome (complete, expired,
//! cancelled by `until`, a step missing), its records shuffled over three files among
//! noise, so the expected findings are known by construction, not by running the replay.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use proptest::prelude::*;
use ualhunt_engine::shard::merge;
use ualhunt_engine::shard::partial::{self, CONTEXT_FORMAT, ContextPlanFile};
use ualhunt_engine::shard::{self, Shard};
use ualhunt_engine::{Config, Report, rule::Rule};
use ualhunt_report::OutputFormat;

/// A sequence rule of three steps by `user.id` within 10 minutes, cancelled by `Reset`.
const RULE: &str = r#"
id = "seq-test"
name = "Three steps"
severity = "high"
risk_score = 70
language = "eql"
query = '''sequence by user.id with maxspan=10m
  [any where event.action == "StepA"]
  [any where event.action == "StepB"]
  [any where event.action == "StepC"]
until [any where event.action == "Reset"]'''
"#;

/// What happens to one user.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Story {
    /// A, B, C a minute apart: one finding.
    Complete,
    /// A, B, then C 11 minutes after A: past maxspan.
    Expired,
    /// A, B, Reset, C: cancelled.
    Cancelled,
    /// A and C only.
    Missing,
}

fn story() -> impl Strategy<Value = Story> {
    prop_oneof![
        Just(Story::Complete),
        Just(Story::Expired),
        Just(Story::Cancelled),
        Just(Story::Missing)
    ]
}

/// One record: (user, action, seconds after the archive's start, record id).
type Event = (String, &'static str, i64, String);

fn events(stories: &[(Story, i64)]) -> Vec<Event> {
    let mut out = Vec::new();
    for (u, (story, start)) in stories.iter().enumerate() {
        let user = format!("user{u}@contoso.com");
        let steps: Vec<(&str, i64)> = match story {
            Story::Complete => vec![("StepA", 0), ("StepB", 60), ("StepC", 120)],
            Story::Expired => vec![("StepA", 0), ("StepB", 60), ("StepC", 660)],
            Story::Cancelled => {
                vec![("StepA", 0), ("StepB", 60), ("Reset", 90), ("StepC", 120)]
            }
            Story::Missing => vec![("StepA", 0), ("StepC", 120)],
        };
        for (action, dt) in steps {
            let id = format!("{user}/{action}");
            out.push((user.clone(), action, start + dt, id));
        }
    }
    out
}

fn line(e: &Event) -> String {
    let t = chrono::DateTime::from_timestamp(1_714_608_000 + e.2, 0).unwrap();
    format!(
        r#"{{"CreationTime":"{}","Id":"{}","Operation":"{}","RecordType":1,"ResultStatus":"Succeeded","Workload":"Exchange","UserId":"{}","ClientIP":"203.0.113.5"}}"#,
        t.format("%Y-%m-%dT%H:%M:%S"),
        e.3,
        e.1,
        e.0
    )
}

fn noise(i: usize) -> String {
    format!(
        r#"{{"CreationTime":"2024-05-02T00:00:00","Id":"noise-{i}","Operation":"MailItemsAccessed","RecordType":50,"Workload":"Exchange","UserId":"noise@contoso.com"}}"#
    )
}

/// Writes the events over `files` files in the order `placement` gives (file index,
/// sort key per event), noise between them; returns the paths and where each record
/// id went (`name:line`).
fn write_archive(
    dir: &Path,
    events: &[Event],
    placement: &[(usize, u64)],
    files: usize,
) -> (Vec<PathBuf>, std::collections::BTreeMap<String, String>) {
    let mut order: Vec<usize> = (0..events.len()).collect();
    order.sort_by_key(|&i| (placement[i].0 % files, placement[i].1, i));
    let mut lines: Vec<Vec<String>> = vec![Vec::new(); files];
    let mut at = std::collections::BTreeMap::new();
    let paths: Vec<PathBuf> = (0..files)
        .map(|f| dir.join(format!("part{f}.jsonl")))
        .collect();
    for i in order {
        let f = placement[i].0 % files;
        let filler = noise(lines[f].len());
        lines[f].push(filler);
        lines[f].push(line(&events[i]));
        at.insert(
            events[i].3.clone(),
            format!("{}:{}", paths[f].display(), lines[f].len()),
        );
    }
    for (f, l) in lines.iter().enumerate() {
        std::fs::write(&paths[f], l.join("\n") + "\n").unwrap();
    }
    (paths, at)
}

fn config(paths: Vec<PathBuf>) -> Config {
    let mut config = Config::new(paths);
    config.rules = vec![Rule::from_toml(RULE).unwrap()];
    config.context = false;
    config
}

fn render(report: &Report) -> String {
    let mut out = Vec::new();
    ualhunt_report::write(OutputFormat::Json, report, &mut out).unwrap();
    let mut doc: serde_json::Value = serde_json::from_slice(&out).unwrap();
    // Measurements differ from run to run; everything else must not.
    doc.as_object_mut().unwrap().remove("stats");
    doc.to_string()
}

fn render_without_scan(report: &Report) -> String {
    let mut doc: serde_json::Value = serde_json::from_str(&render(report)).unwrap();
    doc.as_object_mut().unwrap().remove("scan");
    doc.to_string()
}

/// Each finding as (record id of its last step, the text of each step item).
fn sequences(report: &Report) -> BTreeSet<(String, Vec<String>)> {
    report
        .actors
        .iter()
        .flat_map(|a| &a.evidence)
        .map(|e| {
            let f = &e.finding;
            let items = report.sequence_items(f);
            let steps = items
                .iter()
                .filter(|(name, _)| name.starts_with("step_"))
                .map(|(_, text)| text.to_string())
                .collect();
            (f.record_id.as_deref().unwrap_or("").to_string(), steps)
        })
        .collect()
}

/// What the stories must give: per complete story, its last step and each step's
/// `time path:line id`.
fn expected(
    stories: &[(Story, i64)],
    events: &[Event],
    at: &std::collections::BTreeMap<String, String>,
) -> BTreeSet<(String, Vec<String>)> {
    let mut out = BTreeSet::new();
    for (u, (story, _)) in stories.iter().enumerate() {
        if *story != Story::Complete {
            continue;
        }
        let user = format!("user{u}@contoso.com");
        let steps: Vec<String> = ["StepA", "StepB", "StepC"]
            .iter()
            .map(|action| {
                let e = events
                    .iter()
                    .find(|e| e.0 == user && e.1 == *action)
                    .unwrap();
                let t = chrono::DateTime::from_timestamp(1_714_608_000 + e.2, 0).unwrap();
                format!("{} {} {}", t.format("%Y-%m-%dT%H:%M:%SZ"), at[&e.3], e.3)
            })
            .collect();
        out.insert((format!("{user}/StepC"), steps));
    }
    out
}

/// Both stages of a sharded run on `count` shards, through partial files, merged.
fn sharded(config: &Config, count: u32, dir: &Path) -> Report {
    let parts = dir.join(format!("parts-{count}"));
    std::fs::create_dir_all(&parts).unwrap();
    let today = chrono::Utc::now().date_naive();
    let load = |paths: Vec<PathBuf>| merge::load(&paths).unwrap();
    let mut first = Vec::new();
    for k in 0..count {
        let p = shard::run(config, Shard::new(k, count).unwrap(), None).unwrap();
        let path = parts.join(format!("p1-{k}"));
        partial::write_atomic(&path, &p).unwrap();
        first.push(path);
    }
    let plan = merge::context_plan(load(first.clone()), today).unwrap();
    let plan_path = parts.join("context-plan");
    partial::write_atomic(&plan_path, &plan).unwrap();
    let plan: ContextPlanFile = partial::read(&plan_path, CONTEXT_FORMAT).unwrap();
    let mut all = first;
    for k in 0..count {
        let p = shard::run(config, Shard::new(k, count).unwrap(), Some(("plan", &plan))).unwrap();
        let path = parts.join(format!("p2-{k}"));
        partial::write_atomic(&path, &p).unwrap();
        all.push(path);
    }
    merge::merge(load(all), today).unwrap()
}

/// Each user's story and start (seconds), and where each of their records goes: (file,
/// sort key within it).
type Case = (Vec<(Story, i64)>, Vec<(usize, u64)>);

fn case() -> impl Strategy<Value = Case> {
    proptest::collection::vec((story(), 0i64..7_200), 1..10).prop_flat_map(|stories| {
        let n = events(&stories).len();
        (
            Just(stories),
            proptest::collection::vec((0usize..3, any::<u64>()), n),
        )
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    #[test]
    fn a_sequence_split_across_files_chunks_and_shards_completes_as_its_story_says(
        (stories, placement) in case(),
        chunk in 64usize..2048,
        block in 1usize..512,
        threads in 1usize..4,
        shards in 1u32..4,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let events = events(&stories);
        let (paths, at) = write_archive(dir.path(), &events, &placement, 3);
        let want = expected(&stories, &events, &at);

        let mut one = config(paths.clone());
        one.threads = 1;
        let reference = ualhunt_engine::run(&one).unwrap();
        prop_assert_eq!(sequences(&reference), want.clone());
        let completed = want.len() as u64;
        // Every record the replay saw (steps and `until`) and no completed sequence holds.
        prop_assert_eq!(reference.held_back[0], events.len() as u64 - 3 * completed);
        let json = render(&reference);

        let mut split = config(paths.clone());
        split.chunk_size = chunk;
        split.scan_block = block;
        split.threads = threads;
        prop_assert_eq!(&render(&ualhunt_engine::run(&split).unwrap()), &json);

        // Without the prefilter every line is a candidate: the same report but for the
        // scan's accounting.
        let mut every_line = config(paths.clone());
        every_line.prefilter = false;
        let unfiltered = ualhunt_engine::run(&every_line).unwrap();
        prop_assert_eq!(sequences(&unfiltered), sequences(&reference));
        prop_assert_eq!(render_without_scan(&unfiltered), render_without_scan(&reference));

        let sharded = sharded(&config(paths.clone()), shards, dir.path());
        prop_assert_eq!(&render(&sharded), &json);
    }
}

/// The steps in one file, in reverse time order: still one sequence, its steps' lines
/// as they are in the file.
#[test]
fn steps_written_last_first_complete_in_event_time_order() {
    let dir = tempfile::tempdir().unwrap();
    let stories = [(Story::Complete, 0), (Story::Expired, 30)];
    let events = events(&stories);
    // One file, the events written in reverse.
    let placement: Vec<(usize, u64)> = (0..events.len())
        .map(|i| (0, (events.len() - i) as u64))
        .collect();
    let (paths, at) = write_archive(dir.path(), &events, &placement, 1);
    let report = ualhunt_engine::run(&config(paths)).unwrap();
    assert_eq!(sequences(&report), expected(&stories, &events, &at));
    assert_eq!(sequences(&report).len(), 1);
    // The finding is the last step's record, its time when the sequence completed.
    let f = &report.actors[0].evidence[0].finding;
    assert_eq!(f.actor.as_deref(), Some("user0@contoso.com"));
    assert_eq!(
        report.sequence_items(f)[0],
        ("sequence", "3 steps by user.id=user0@contoso.com within 2m")
    );
}

/// Step records carry archive text (record ids, the actor, the join key) into every
/// output: escaped there like every evidence item (markup in HTML, control characters
/// everywhere).
#[test]
fn hostile_text_in_a_step_is_escaped_in_the_html_and_the_table() {
    let dir = tempfile::tempdir().unwrap();
    let user = "<img src=x onerror=alert(1)>\u{1b}[31m@contoso.com";
    let lines: Vec<String> = ["StepA", "StepB", "StepC"]
        .iter()
        .enumerate()
        .map(|(i, action)| {
            let id = format!("<script>{action}</script>\u{1b}[2J");
            let e: Event = (user.to_string(), action, i as i64 * 60, id);
            // `line` writes the id and user raw: make them valid JSON strings.
            let v: serde_json::Value = serde_json::json!({
                "CreationTime": chrono::DateTime::from_timestamp(1_714_608_000 + e.2, 0)
                    .unwrap()
                    .format("%Y-%m-%dT%H:%M:%S")
                    .to_string(),
                "Id": e.3,
                "Operation": e.1,
                "RecordType": 1,
                "Workload": "Exchange",
                "UserId": e.0,
            });
            v.to_string()
        })
        .collect();
    let path = dir.path().join("hostile.jsonl");
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    let report = ualhunt_engine::run(&config(vec![path])).unwrap();
    assert_eq!(sequences(&report).len(), 1);
    for format in [OutputFormat::Html, OutputFormat::Table] {
        let mut out = Vec::new();
        ualhunt_report::write(format, &report, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("StepA"), "{format:?}: the steps are shown");
        assert!(
            !text.contains('\u{1b}'),
            "{format:?}: a terminal escape got through"
        );
        if format == OutputFormat::Html {
            // Markup only as text (a terminal shows it as it is).
            assert!(!text.contains("<script>StepA"), "{text}");
            assert!(!text.contains("<img src=x"), "{text}");
        }
    }
}
