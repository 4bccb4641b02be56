//! EQL conformance against Elastic's reference engine: the `eql` package of PyPI
//! (1.0.x, the version Elastic's detection-rules pins) and its Python engine.
//!
//! Each query below runs over the events below in both engines, and the events each
//! matches must be the same, except for the cases in [`KNOWN`]: there the Python
//! engine answers differently from Elasticsearch, which this crate follows; each is
//! listed with why, and must still differ (a listed case that agrees fails the test, so
//! the list stays true). The reference runs when `UALHUNT_EQL_PYTHON` names a python
//! with `eql` 1.0.x installed (`.ci/run` makes one); without it the test prints
//! "skipped: …" and passes.

use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::{Value, json};
use ualhunt_query::eql::Query;
use ualhunt_query::sequence::{Shape, StepEvent, replay};
use ualhunt_query::{Field, Fields, ValueType};

/// The test's fields: `n*` numeric, `flag*` boolean, the rest keyword.
#[derive(Clone, Debug, PartialEq)]
struct Name(String);

impl Field for Name {
    fn parse(name: &str) -> Name {
        Name(name.to_string())
    }

    fn name(&self) -> String {
        self.0.clone()
    }

    fn value_type(&self) -> ValueType {
        if self.0.starts_with('n') {
            ValueType::Number
        } else if self.0.starts_with("flag") {
            ValueType::Boolean
        } else {
            ValueType::Keyword
        }
    }
}

/// An event as a JSON object; dotted names walk nested objects.
struct Event<'a>(&'a Value);

impl Fields<Name> for Event<'_> {
    fn any_value(&self, field: &Name, pred: &mut dyn FnMut(&str) -> bool) -> bool {
        let mut value = self.0;
        for key in field.0.split('.') {
            match value.get(key) {
                Some(v) => value = v,
                None => return false,
            }
        }
        let mut one = |v: &Value| match v {
            Value::String(s) => pred(s),
            Value::Number(n) => pred(&n.to_string()),
            Value::Bool(b) => pred(if *b { "true" } else { "false" }),
            _ => false,
        };
        match value {
            Value::Array(items) => items.iter().any(&mut one),
            other => one(other),
        }
    }
}

fn events() -> Vec<Value> {
    vec![
        json!({"event": {"category": "web"}, "s": "Hello World", "a": "alpha", "n": 5, "ip": "10.1.2.3",
               "flag": true, "user": {"domain": "contoso.com"}, "to": "bob@contoso.com"}),
        json!({"event": {"category": "web"}, "s": "hello world", "a": "ALPHA", "n": 50, "ip": "192.168.0.7",
               "flag": false, "user": {"domain": "contoso.com"}, "to": "eve@gmail.com"}),
        json!({"event": {"category": "authentication"}, "s": "goodbye", "n": -3, "ip": "2001:db8::1",
               "user": {"domain": "fabrikam.com"}, "to": "carol@FABRIKAM.COM"}),
        json!({"event": {"category": "authentication"}, "a": "beta", "n": 5.5, "s": "path\\to\\file.exe"}),
        json!({"event": {"category": "web"}, "s": "", "a": null, "n": 0, "tags": ["x", "y"],
               "to": "dave@contoso.com.evil.net", "user": {"domain": "contoso.com"}}),
        json!({"event": {"category": "iam"}, "s": "Azurehound/2.1", "a": "gamma*", "n": 100}),
        json!({"event": {"category": "web"}, "s": "a?c", "a": "abc", "n": 7}),
        json!({"event": {"category": "web"}, "s": "xhello worldx", "a": "Alpha", "n": 12}),
    ]
}

/// Queries whose answers must agree.
const QUERIES: &[&str] = &[
    "any where true",
    "any where false",
    "web where true",
    "authentication where n > 0",
    "any where s == \"goodbye\"",
    "any where s != \"goodbye\"",
    "any where a : \"alpha\"",
    "any where a : (\"beta\", \"gamma*\")",
    "any where s : \"*world\"",
    "any where s : \"hello*\"",
    "any where s like~ \"*WORLD*\"",
    "any where s like~ (\"*bye\", \"azure*\")",
    "any where s regex~ \"(azure|sharp|blood)(hound)/.*\"",
    "any where s regex~ \"hello.*\"",
    "any where a in~ (\"alpha\", \"beta\")",
    "any where n in (5, 7)",
    "any where n not in (5, 7)",
    "any where n == 5",
    "any where n != 5",
    "any where n < 5",
    "any where n <= 5.5",
    "any where n >= 50",
    "any where n > -4 and n < 1",
    "any where a == null",
    "any where a != null",
    "any where ?missing == null",
    "any where ?missing != null",
    "any where ?missing == \"x\"",
    "any where not ?missing == \"x\"",
    "any where not a : \"alpha\"",
    "any where not (a : \"alpha\" or n > 10)",
    "any where a : \"alpha\" or ?missing == \"x\"",
    "any where not (a : \"alpha\" or ?missing == \"x\")",
    "any where a : \"alpha\" and ?missing == \"x\"",
    "any where not (a : \"beta\" and ?missing == \"x\")",
    "any where flag",
    "any where not flag",
    "any where flag == false",
    "any where endsWith~(s, \"WORLD\")",
    "any where startsWith~(s, \"hello\")",
    "any where stringContains~(s, \"LO WO\")",
    "any where endsWith~(to, user.domain)",
    "any where to != null and not endsWith~(to, user.domain)",
    "any where ?to != null and not endsWith~(?to, user.domain)",
    "any where length(s) == 11",
    "any where length(s) > 6",
    "any where length(?missing) == 0",
    "any where cidrMatch(ip, \"10.0.0.0/8\", \"192.168.0.0/16\")",
    "any where cidrMatch(ip, \"2001:db8::/32\")",
    "any where indexOf~(s, \"WORLD\") == 6",
    "any where indexOf~(s, \"o\", 5) == 7",
    "any where indexOf~(s, \"zzz\") == null",
    "any where substring(s, 0, 5) : \"hello\"",
    "any where substring(s, -5) : \"world\"",
    "any where substring(s, 1, -1) : \"hello world\"",
    "any where concat(a, \"-\", s) : \"alpha-hello world\"",
    "any where concat(a, ?missing) == null",
    "any where between~(s, \"HELLO \", \"LD\") : \"wor\"",
    "any where s : \"\"",
    "any where s == \"\"",
    "any where s : \"path\\\\to\\\\*\"",
    "any where s : \"\"\"path\\to\\file.exe\"\"\"",
    "any where a : \"gamma*\"",
    "any where /* a comment */ n == 5 // and another\n or n == 7",
    "web where n == 5 and a : \"alpha\"",
    "iam where s : \"azure*\"",
    "any where (n == 5 or n == 7) and not (a : \"abc\")",
    "any where s : \"hello\\u{20}world\"",
    "any where s > \"path\"",
];

/// Where Python's engine answers otherwise than Elasticsearch: (query, why). This
/// crate follows Elasticsearch on each; the test requires each still to differ.
const KNOWN: &[(&str, &str)] = &[
    (
        "any where s == \"Hello World\"",
        "Python's engine compares strings without case even with ==; Elasticsearch's == is case-sensitive since 7.12",
    ),
    ("any where s != \"Hello World\"", "the same for !="),
    (
        "any where a in (\"alpha\", \"beta\")",
        "the same for in: case-insensitive in Python, case-sensitive in Elasticsearch (in~ is the insensitive form)",
    ),
    (
        "any where s like \"hello*\"",
        "like is case-sensitive in Elasticsearch (like~ is not); Python's engine ignores case for both",
    ),
    (
        "any where s regex \"hello.*\"",
        "regex is case-sensitive in Elasticsearch (regex~ is not); Python's engine ignores case for both",
    ),
    (
        "any where endsWith(s, \"WORLD\")",
        "endsWith is case-sensitive in Elasticsearch (endsWith~ is not); Python's engine ignores case",
    ),
    (
        "any where a : \"a?c\"",
        "? is a one-character wildcard in Elasticsearch's : and like; Python's engine takes it literally",
    ),
    (
        "any where tags == \"y\"",
        "a field with several values matches when any value does in Elasticsearch; Python's engine compares the list as a whole",
    ),
    (
        "any where not stringContains(?missing, \"x\")",
        "a function of a missing field is null in Elasticsearch (so its negation is too); Python's stringContains answers false",
    ),
    (
        "any where not cidrMatch(?missing, \"10.0.0.0/8\")",
        "the same for cidrMatch: Python answers false on a missing address",
    ),
    (
        "any where between(s, \"zz\", \"yy\") == \"\"",
        "between gives an empty string in Elasticsearch when a delimiter is not found; Python's engine gives null",
    ),
    (
        "any where s < \"b\"",
        "strings order by code point in Elasticsearch (\"H\" < \"b\"); Python's engine lowercases them first",
    ),
];

/// Runs the queries in the Python engine: per query, the indexes of the events it
/// matched, or the word "error" if the reference refused it.
const REFERENCE: &str = r#"
import json, sys
import eql
from eql.parser import elasticsearch_syntax
job = json.load(sys.stdin)
events = [eql.Event(e["event"]["category"], 0, dict(e, i=i)) for i, e in enumerate(job["events"])]
out = []
for text in job["queries"]:
    try:
        with elasticsearch_syntax:
            query = eql.parse_query(text)
    except Exception as exc:
        out.append("error")
        continue
    found = []
    engine = eql.PythonEngine()
    engine.add_query(query)
    engine.add_output_hook(lambda result: found.extend(ev.data["i"] for ev in result.events))
    engine.stream_events(events)
    out.append(sorted(found))
json.dump(out, sys.stdout)
"#;

fn reference(python: &str, queries: &[&str], events: &[Value]) -> Vec<Value> {
    let mut child = Command::new(python)
        .arg("-c")
        .arg(REFERENCE)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("UALHUNT_EQL_PYTHON runs");
    let job = json!({"queries": queries, "events": events});
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(job.to_string().as_bytes())
        .expect("the reference reads its job");
    let output = child.wait_with_output().expect("the reference finishes");
    assert!(output.status.success(), "the reference engine failed");
    serde_json::from_slice(&output.stdout).expect("the reference writes JSON")
}

fn ours(query: &str, events: &[Value]) -> Value {
    match Query::<Name>::parse(query) {
        Ok(q) => json!(
            events
                .iter()
                .enumerate()
                .filter(|(_, e)| q.matches(&Event(e)))
                .map(|(i, _)| i)
                .collect::<Vec<_>>()
        ),
        Err(_) => json!("error"),
    }
}

#[test]
fn eql_answers_as_the_reference_engine_except_the_documented_differences() {
    let Ok(python) = std::env::var("UALHUNT_EQL_PYTHON") else {
        // Written to the process's stderr, not through the harness's captured output,
        // so that it shows in every run.
        let _ = writeln!(
            std::io::stderr(),
            "skipped: EQL reference conformance (set UALHUNT_EQL_PYTHON to a python with eql 1.0.x)"
        );
        return;
    };
    let events = events();
    let known: Vec<&str> = KNOWN.iter().map(|(q, _)| *q).collect();
    let all: Vec<&str> = QUERIES
        .iter()
        .copied()
        .chain(known.iter().copied())
        .collect();
    let theirs = reference(&python, &all, &events);
    let mut failures = Vec::new();
    for (query, theirs) in all.iter().zip(&theirs) {
        let mine = ours(query, &events);
        let listed = KNOWN.iter().find(|(q, _)| q == query);
        match listed {
            None if &mine != theirs => {
                failures.push(format!("{query:?}: ours {mine}, reference {theirs}"))
            }
            Some((_, why)) if &mine == theirs => failures.push(format!(
                "{query:?} is listed as a known difference ({why}) but both answer {mine}"
            )),
            _ => {}
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn the_documented_differences_follow_elasticsearch() {
    // Independent of Python: what this crate answers on each listed case.
    let events = events();
    let expect = |query: &str, matched: Value| assert_eq!(ours(query, &events), matched, "{query}");
    expect(KNOWN[0].0, json!([0]));
    expect(KNOWN[1].0, json!([1, 2, 3, 4, 5, 6, 7]));
    expect(KNOWN[2].0, json!([0, 3]));
    expect(KNOWN[3].0, json!([1]));
    expect(KNOWN[4].0, json!([1]));
    expect(KNOWN[5].0, json!([]));
    expect(KNOWN[6].0, json!([6]));
    expect(KNOWN[7].0, json!([4]));
    expect(KNOWN[8].0, json!([]));
    expect(KNOWN[9].0, json!([]));
    expect(KNOWN[10].0, json!([0, 1, 2, 3, 4, 5, 6, 7]));
    expect(KNOWN[11].0, json!([0, 4, 5, 6]));
}

// Sequences: each case's events are replayed in both engines, in time order (ties in
// the order written), and the completed sequences (their events' indices) must be the
// same, except for the cases in `SEQUENCE_KNOWN`.

/// An event of a sequence case: time in milliseconds, category, user, ip, action.
fn ev(t: i64, category: &str, user: Option<&str>, ip: &str, action: &str) -> Value {
    let mut e = json!({"t": t, "event": {"category": category}, "ip": ip, "action": action});
    if let Some(u) = user {
        e["user"] = json!(u);
    }
    e
}

/// The events of the sequence cases, deliberately not all in time order (the replay
/// sorts them; both engines then see the same stream).
fn sequence_events() -> Vec<Value> {
    vec![
        ev(0, "web", Some("a"), "10.0.0.1", "login"),
        ev(1_000, "web", Some("b"), "10.0.0.2", "login"),
        ev(2_000, "web", Some("a"), "10.0.0.3", "login"),
        ev(3_000, "authentication", Some("a"), "10.0.0.3", "token"),
        ev(4_000, "web", Some("b"), "10.0.0.2", "token"),
        ev(5_000, "web", Some("a"), "10.0.0.9", "device"),
        ev(70_000, "web", Some("b"), "10.0.0.2", "device"),
        ev(8_000, "iam", Some("b"), "10.0.0.2", "reset"),
        ev(9_000, "web", Some("c"), "10.0.0.4", "login"),
        ev(9_000, "web", Some("c"), "10.0.0.4", "token"),
        ev(9_500, "web", Some("c"), "10.0.0.5", "device"),
        ev(10_000, "web", Some("c"), "10.0.0.4", "login"),
        ev(11_000, "authentication", Some("c"), "10.0.0.4", "token"),
        ev(12_000, "web", Some("c"), "10.0.0.6", "device"),
        ev(13_000, "web", Some("d"), "10.0.0.7", "loginortoken"),
        ev(14_000, "web", Some("d"), "10.0.0.7", "loginortoken"),
        ev(15_000, "web", Some("d"), "10.0.0.7", "loginortoken"),
        ev(16_000, "iam", Some("c"), "10.0.0.4", "reset"),
        ev(17_000, "web", Some("c"), "10.0.0.4", "device"),
        ev(20_000, "web", Some("E"), "10.0.0.8", "case-login"),
        ev(21_000, "web", Some("e"), "10.0.0.8", "case-token"),
        ev(22_000, "web", None, "10.0.0.1", "keyless-login"),
        ev(23_000, "web", None, "10.0.0.1", "keyless-token"),
    ]
}

/// Sequence queries whose completed sequences must agree: (ours, the reference's
/// spelling of the same query, which differs only where eql 1.0 lacks `with runs`).
const SEQUENCES: &[(&str, &str)] = &[
    (
        "sequence by user [any where action == \"login\"] [any where action == \"token\"]",
        "",
    ),
    (
        "sequence by user with maxspan=1m [any where action == \"login\"] \
         [any where action == \"token\"] [any where action == \"device\"]",
        "",
    ),
    (
        "sequence by user with maxspan=3s [any where action == \"login\"] \
         [any where action == \"token\"] [any where action == \"device\"]",
        "",
    ),
    (
        "sequence by user with maxspan=2s [any where action == \"login\"] \
         [any where action == \"token\"]",
        "",
    ),
    (
        "sequence by user [any where action == \"login\"] [any where action == \"device\"] \
         until [iam where action == \"reset\"]",
        "",
    ),
    (
        "sequence by user [any where action == \"token\"] [any where action == \"device\"] \
         until [iam where action == \"reset\"]",
        "",
    ),
    (
        "sequence [any where action == \"login\"] by user [any where action == \"token\"] by user",
        "",
    ),
    (
        "sequence by user [any where action == \"login\"] by ip [any where action == \"token\"] by ip",
        "",
    ),
    (
        "sequence [any where action == \"token\"] by ip [any where action == \"device\"] by ip",
        "",
    ),
    (
        "sequence by user [any where action : \"login*\"] [any where action : \"*token\"]",
        "",
    ),
    (
        "sequence by user [any where action : \"loginortoken\"] with runs=3",
        "sequence by user [any where action : \"loginortoken\"] [any where action : \
         \"loginortoken\"] [any where action : \"loginortoken\"]",
    ),
    (
        "sequence by user [any where action : \"loginortoken\"] with runs=2 \
         [any where action == \"device\"]",
        "sequence by user [any where action : \"loginortoken\"] [any where action : \
         \"loginortoken\"] [any where action == \"device\"]",
    ),
    (
        "sequence by user [web where true] [authentication where true]",
        "",
    ),
    (
        "sequence with maxspan=1s [web where action == \"login\"] [any where action == \"token\"]",
        "",
    ),
    (
        "sequence by user with maxspan=1m [web where action == \"login\"] \
         [authentication where action == \"token\"] [web where action == \"device\"] \
         until [iam where true]",
        "",
    ),
];

/// Sequence cases where Python's engine answers otherwise than Elasticsearch:
/// (query, why). The test requires each still to differ.
const SEQUENCE_KNOWN: &[(&str, &str)] = &[
    (
        "sequence by user [any where action == \"case-login\"] \
         [any where action == \"case-token\"]",
        "Python's engine lowercases join keys (E joins e); Elasticsearch compares keyword keys exactly",
    ),
    (
        "sequence by user [any where action == \"keyless-login\"] \
         [any where action == \"keyless-token\"]",
        "Python's engine joins events that both lack the key (null == null); Elasticsearch \
         never joins on a null non-optional key",
    ),
];

/// Runs sequence queries in the Python engine over time-sorted events: per query, the
/// completed sequences as lists of event indices, sorted.
const SEQUENCE_REFERENCE: &str = r#"
import json, sys
import eql
from eql.parser import elasticsearch_syntax
job = json.load(sys.stdin)
events = [eql.Event(e["event"]["category"], e["t"], dict(e, i=i)) for i, e in enumerate(job["events"])]
events.sort(key=lambda e: e.time)
out = []
for text in job["queries"]:
    with elasticsearch_syntax:
        query = eql.parse_query(text)
    found = []
    engine = eql.PythonEngine({"time_unit": 1000})
    engine.add_query(query)
    engine.add_output_hook(lambda result: found.append([ev.data["i"] for ev in result.events]))
    engine.stream_events(events)
    out.append(sorted(found))
json.dump(out, sys.stdout)
"#;

fn sequence_reference(python: &str, queries: &[&str], events: &[Value]) -> Vec<Value> {
    let mut child = Command::new(python)
        .arg("-c")
        .arg(SEQUENCE_REFERENCE)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("UALHUNT_EQL_PYTHON runs");
    let job = json!({"queries": queries, "events": events});
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(job.to_string().as_bytes())
        .expect("the reference reads its job");
    let output = child.wait_with_output().expect("the reference finishes");
    assert!(output.status.success(), "the reference engine failed");
    serde_json::from_slice(&output.stdout).expect("the reference writes JSON")
}

/// Our replay of a sequence query over the events, in time order (ties as written).
fn our_sequences(query: &str, events: &[Value]) -> Value {
    let Ok(Query::Sequence(seq)) = Query::<Name>::parse(query) else {
        panic!("{query:?} is not a sequence");
    };
    let mut order: Vec<usize> = (0..events.len()).collect();
    order.sort_by_key(|&i| events[i]["t"].as_i64());
    let mut steps = Vec::new();
    let mut index = Vec::new();
    for i in order {
        let t = events[i]["t"].as_i64().expect("every event has a time");
        if let Some(step) = StepEvent::of(&seq, t, &Event(&events[i])) {
            steps.push(step);
            index.push(i);
        }
    }
    let outcome = replay(&Shape::of(&seq), &steps, usize::MAX);
    assert_eq!(outcome.dropped, 0);
    let mut found: Vec<Vec<usize>> = outcome
        .completed
        .iter()
        .map(|c| c.events.iter().map(|&e| index[e]).collect())
        .collect();
    found.sort();
    json!(found)
}

#[test]
fn sequences_complete_as_in_the_reference_engine_except_the_documented_differences() {
    let Ok(python) = std::env::var("UALHUNT_EQL_PYTHON") else {
        let _ = writeln!(
            std::io::stderr(),
            "skipped: EQL sequence reference conformance (set UALHUNT_EQL_PYTHON to a python with eql 1.0.x)"
        );
        return;
    };
    let events = sequence_events();
    let theirs_text: Vec<&str> = SEQUENCES
        .iter()
        .map(|(ours, theirs)| if theirs.is_empty() { *ours } else { *theirs })
        .chain(SEQUENCE_KNOWN.iter().map(|(q, _)| *q))
        .collect();
    let ours_text: Vec<&str> = SEQUENCES
        .iter()
        .map(|(ours, _)| *ours)
        .chain(SEQUENCE_KNOWN.iter().map(|(q, _)| *q))
        .collect();
    let theirs = sequence_reference(&python, &theirs_text, &events);
    let mut failures = Vec::new();
    for (i, (query, theirs)) in ours_text.iter().zip(&theirs).enumerate() {
        let mine = our_sequences(query, &events);
        let known = i >= SEQUENCES.len();
        if !known && &mine != theirs {
            failures.push(format!("{query:?}: ours {mine}, reference {theirs}"));
        }
        if known && &mine == theirs {
            failures.push(format!(
                "{query:?} is listed as a known difference but both answer {mine}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn sequences_follow_elasticsearch_where_the_reference_differs_and_complete_at_all() {
    // Independent of Python: what the replay answers on the listed cases, and that the
    // agreed cases are not all empty (a replay that never completes would agree on
    // nothing and fail above, but say so here too).
    let events = sequence_events();
    assert_eq!(our_sequences(SEQUENCE_KNOWN[0].0, &events), json!([]));
    assert_eq!(our_sequences(SEQUENCE_KNOWN[1].0, &events), json!([]));
    assert_eq!(
        our_sequences(SEQUENCES[0].0, &events),
        json!([[1, 4], [2, 3], [8, 9], [11, 12]])
    );
}
