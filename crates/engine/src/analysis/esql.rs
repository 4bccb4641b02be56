//! ES|QL rules replayed run by run over the archive.
//!
//! Place in the flow: the scan evaluates an ES|QL rule's per-record part on each
//! candidate; a record that gives rows is a match whose `esql_rows` evidence item holds
//! those rows, with only the columns the rest of the query reads ([`encode_rows`]).
//! After the merge, [`super::alerting`] hands this module the rule's matches in time
//! order, and the query's post part (`STATS … BY`, later `EVAL`/`WHERE`, `KEEP`,
//! `SORT`, `LIMIT`) runs over the rows of each rule run:
//!
//! - Elastic runs a rule every `interval` over `[now - from, now]`. Here the runs end
//!   at the multiples of `interval` since the Unix epoch (UTC), each over the `from`
//!   before it, start included, end excluded: the first run is the first end after the
//!   rule's earliest dated match, the last the last whose window still holds a match;
//!   runs whose window holds no match are skipped (they would return nothing, except a
//!   `STATS` without `BY`, whose one row over no input is not reported).
//! - An alert is a row a run returns; its evidence is the records whose rows fed it
//!   (`Row::from`). Each such record's `alert` item names the row (numbered per rule)
//!   and the runs that returned it; the row's columns are written on the earliest of
//!   its records only. Elastic gives an aggregating query's alert an id made from the
//!   run's window, so overlapping runs alert again on the same group: those runs are
//!   listed together, once per distinct row, not repeated.
//! - A query without a post part returns each record's own rows: every match alerts
//!   once, whatever the runs (Elastic deduplicates such alerts by the record's `_id`).
//! - A match without a time cannot be placed in a run: it never alerts in an
//!   aggregating query. Matches that feed no row are held back, as for `threshold`.
//!
//! Times are the records' `@timestamp` (Elastic's rules read `event.ingested`, which an
//! archive does not have). Memory: the matches' rows, holding the carried columns only,
//! and one run's rows at a time. The result depends only on the matches' times, input
//! positions and rows, so it is the same whatever the thread count, chunk size or
//! sharding.

use chrono::DateTime;
use rustc_hash::FxHashMap;
use serde_json::{Value as Json, json};

use crate::findings::{Finding, Text, Value};
use crate::rule::esql::{Row, Scalar};
use crate::rule::{ESQL_ROWS_EVIDENCE, Query, Rule, span};

/// A record's rows as the text of its `esql_rows` evidence item (`None`: no rows).
pub fn encode_rows(rows: &[Row]) -> Option<Text> {
    if rows.is_empty() {
        return None;
    }
    let encoded: Vec<Json> = rows
        .iter()
        .map(|row| {
            Json::Array(
                row.columns
                    .iter()
                    .map(|(name, values)| {
                        json!([name, values.iter().map(encode_scalar).collect::<Vec<_>>()])
                    })
                    .collect(),
            )
        })
        .collect();
    Some(Json::Array(encoded).to_string().into())
}

fn encode_scalar(s: &Scalar) -> Json {
    match s {
        Scalar::Bool(b) => json!(["b", b]),
        Scalar::Int(n) => json!(["i", n]),
        Scalar::Double(x) => json!(["d", x]),
        Scalar::Str(t) => json!(["s", t]),
        Scalar::Date(ms) => json!(["t", ms]),
        Scalar::Ip(_) => json!(["p", s.to_string()]),
        Scalar::Span(ms) => json!(["n", ms]),
    }
}

/// The rows [`encode_rows`] wrote (`None`: not such a text).
pub fn decode_rows(text: &str) -> Option<Vec<Row>> {
    let json: Json = serde_json::from_str(text).ok()?;
    json.as_array()?
        .iter()
        .map(|row| {
            let columns = row
                .as_array()?
                .iter()
                .map(|col| {
                    let [name, values] = col.as_array()?.as_slice() else {
                        return None;
                    };
                    let values = values
                        .as_array()?
                        .iter()
                        .map(decode_scalar)
                        .collect::<Option<Vec<_>>>()?;
                    Some((name.as_str()?.to_string(), values))
                })
                .collect::<Option<Vec<_>>>()?;
            Some(Row {
                columns,
                from: Vec::new(),
            })
        })
        .collect()
}

fn decode_scalar(v: &Json) -> Option<Scalar> {
    let [tag, x] = v.as_array()?.as_slice() else {
        return None;
    };
    Some(match tag.as_str()? {
        "b" => Scalar::Bool(x.as_bool()?),
        "i" => Scalar::Int(x.as_i64()?),
        "d" => Scalar::Double(x.as_f64()?),
        "s" => Scalar::Str(x.as_str()?.to_string()),
        "t" => Scalar::Date(x.as_i64()?),
        "p" => {
            let addr: std::net::IpAddr = x.as_str()?.parse().ok()?;
            Scalar::Ip(match addr {
                std::net::IpAddr::V4(v4) => u128::from(v4.to_ipv6_mapped()),
                std::net::IpAddr::V6(v6) => u128::from(v6),
            })
        }
        "n" => Scalar::Span(x.as_i64()?),
        _ => return None,
    })
}

/// Why each match (in time order) alerts, or `None` where it does not: the rows of
/// the rule's runs it fed. An aggregating query's rows are numbered per rule in the
/// order they are first returned; a row's columns are written on the earliest record
/// that fed it, the others name the row and its runs, so a row over many records is
/// held and written once (a `VALUES` column can be as long as the group), and records
/// with the same rows share one text.
pub fn alerts(matches: &[&Finding], rule: &Rule, window: i64, interval: i64) -> Vec<Option<Text>> {
    alerts_counted(matches, rule, window, interval).0
}

/// [`alerts`], and per match whether, when it does not alert, it is held back: a rule
/// with a trigger ([`crate::rule::Query::trigger`]) is replayed only in the runs whose
/// window holds a record meeting it (no other run can return a row), and its matches in
/// none of those runs are not counted (a run with the prefilter never reads them).
pub fn alerts_counted(
    matches: &[&Finding],
    rule: &Rule,
    window: i64,
    interval: i64,
) -> (Vec<Option<Text>>, Vec<bool>) {
    let Query::Esql(query) = &rule.query else {
        return (vec![None; matches.len()], vec![true; matches.len()]);
    };
    let slot = rule.evidence_index(ESQL_ROWS_EVIDENCE);
    let rows: Vec<Vec<Row>> = matches
        .iter()
        .map(|f| match f.field(slot) {
            Some(Value::Text(t)) => decode_rows(t).unwrap_or_default(),
            _ => Vec::new(),
        })
        .collect();
    if !query.aggregates() {
        let counted = vec![true; rows.len()];
        let alerts = rows
            .into_iter()
            .map(|r| {
                let out = query.finish(r);
                (!out.is_empty()).then(|| {
                    let shown: Vec<String> = out.iter().map(show_row).collect();
                    Text::from(format!("ES|QL row: {}", shown.join(" | ")))
                })
            })
            .collect();
        return (alerts, counted);
    }
    let trigger = query.trigger();
    let replayed = replay(
        query,
        trigger.as_ref(),
        matches,
        &rows,
        window * 1000,
        interval * 1000,
    );
    let mut shared: FxHashMap<String, Text> = FxHashMap::default();
    let alerts = replayed
        .fed
        .iter()
        .enumerate()
        .map(|(i, fed)| {
            if fed.is_empty() {
                return None;
            }
            let parts: Vec<String> = fed
                .iter()
                .map(|(row, ends)| {
                    let ends: Vec<String> = ends.iter().map(|&e| stamp(e)).collect();
                    let head = format!(
                        "ES|QL row {}, run{} ending {} (look-back {})",
                        row + 1,
                        if ends.len() == 1 { "" } else { "s" },
                        ends.join(", "),
                        span(window)
                    );
                    if replayed.first[*row] == i {
                        format!("{head}: {}", replayed.texts[*row])
                    } else {
                        head
                    }
                })
                .collect();
            let text = parts.join(" | ");
            Some(
                shared
                    .entry(text)
                    .or_insert_with_key(|t| Text::from(t.as_str()))
                    .clone(),
            )
        })
        .collect();
    (alerts, replayed.inside)
}

/// The times (Unix seconds) a second look at a gated rule must read
/// ([`crate::scan::Matcher::with_triggers`]): every run whose window holds one of its
/// matches meeting its trigger, as closed intervals covering each such run's window; and
/// how many such matches there were. `window` and `interval` in seconds.
pub fn trigger_windows(
    matches: &[&Finding],
    rule: &Rule,
    window: i64,
    interval: i64,
) -> (Vec<(i64, i64)>, u64) {
    let (Query::Esql(query), Some(trigger)) = (&rule.query, rule.query.trigger()) else {
        return (Vec::new(), 0);
    };
    let slot = rule.evidence_index(ESQL_ROWS_EVIDENCE);
    let (window, interval) = (window.saturating_mul(1000), interval.saturating_mul(1000));
    let mut out = Vec::new();
    let mut fired = 0;
    for f in matches {
        let Some(t) = f.timestamp.map(|t| t.timestamp_millis()) else {
            continue;
        };
        let rows = match f.field(slot) {
            Some(Value::Text(text)) => decode_rows(text).unwrap_or_default(),
            _ => Vec::new(),
        };
        if !query.aggregates() || !rows.iter().any(|r| trigger.fires(r)) {
            continue;
        }
        fired += 1;
        // The runs holding `t` end in (t, t + window]; each reads [end - window, end).
        let first = t
            .div_euclid(interval.max(1))
            .saturating_add(1)
            .saturating_mul(interval);
        let last = t
            .saturating_add(window)
            .div_euclid(interval.max(1))
            .saturating_mul(interval);
        if last < first {
            continue;
        }
        out.push((
            first.saturating_sub(window).div_euclid(1000),
            last.div_euclid(1000).saturating_add(1),
        ));
    }
    (out, fired)
}

fn show_row(row: &Row) -> String {
    if row.columns.is_empty() {
        "(the record)".to_string()
    } else {
        row.to_string()
    }
}

fn stamp(ms: i64) -> String {
    DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_else(|| ms.to_string())
}

/// What the runs returned: each distinct row's text and earliest record (a row is its
/// columns and the records that fed it), and per match the rows it fed (by number) with
/// the ends of the runs that returned them.
struct Replayed {
    texts: Vec<String>,
    first: Vec<usize>,
    fed: Vec<Vec<(usize, Vec<i64>)>>,
    /// Per match, whether a run that was replayed holds it (with no trigger: every
    /// match).
    inside: Vec<bool>,
}

/// Runs the query's post part over each run's rows. Window and interval in
/// milliseconds.
fn replay(
    query: &crate::rule::esql::Query,
    trigger: Option<&crate::rule::esql::Trigger>,
    matches: &[&Finding],
    rows: &[Vec<Row>],
    window: i64,
    interval: i64,
) -> Replayed {
    let mut out = Replayed {
        texts: Vec::new(),
        first: Vec::new(),
        fed: vec![Vec::new(); matches.len()],
        inside: vec![trigger.is_none(); matches.len()],
    };
    // A row is the same alert again when a later run returns it with the same columns
    // from the same records (overlapping look-backs).
    let mut numbered: FxHashMap<(String, Vec<usize>), usize> = FxHashMap::default();
    let times: Vec<Option<i64>> = matches
        .iter()
        .map(|f| f.timestamp.map(|t| t.timestamp_millis()))
        .collect();
    // The dated matches with rows, in time order (the matches come in time order).
    let dated: Vec<usize> = (0..matches.len())
        .filter(|&i| times[i].is_some() && !rows[i].is_empty())
        .collect();
    let t = |i: usize| times[dated[i]].unwrap_or_default();
    let first_end = |ms: i64| {
        ms.div_euclid(interval)
            .saturating_add(1)
            .saturating_mul(interval)
    };
    // With a trigger, the dated matches meeting it: only the runs holding one can
    // return a row.
    let fires: Vec<bool> = dated
        .iter()
        .map(|&i| trigger.is_none_or(|tr| rows[i].iter().any(|r| tr.fires(r))))
        .collect();
    let Some(&first) = dated.first() else {
        return out;
    };
    let mut end = first_end(times[first].unwrap_or_default());
    let mut lo = 0usize;
    // The first match meeting the trigger at or after `lo`.
    let mut next_fire = 0usize;
    loop {
        let start = end.saturating_sub(window);
        while lo < dated.len() && t(lo) < start {
            lo += 1;
        }
        if lo == dated.len() {
            break;
        }
        next_fire = next_fire.max(lo);
        while next_fire < dated.len() && !fires[next_fire] {
            next_fire += 1;
        }
        if next_fire == dated.len() {
            break;
        }
        if t(next_fire) >= end {
            // No match (or none meeting the trigger) in this run's window: on to the
            // first run that holds the next one.
            end = first_end(t(next_fire));
            continue;
        }
        let mut hi = lo;
        while hi < dated.len() && t(hi) < end {
            hi += 1;
        }
        for &i in &dated[lo..hi] {
            out.inside[i] = true;
        }
        let mut input: Vec<Row> = Vec::new();
        let mut owner: Vec<usize> = Vec::new();
        for &i in &dated[lo..hi] {
            for r in &rows[i] {
                input.push(r.clone());
                owner.push(i);
            }
        }
        for row in query.finish(input) {
            let mut owners: Vec<usize> = row.from.iter().map(|&j| owner[j as usize]).collect();
            owners.sort_unstable();
            owners.dedup();
            let Some(&earliest) = owners.first() else {
                continue;
            };
            let key = (row.to_string(), owners);
            let id = match numbered.get(&key) {
                Some(&id) => id,
                None => {
                    out.texts.push(key.0.clone());
                    out.first.push(earliest);
                    numbered.insert(key.clone(), out.texts.len() - 1);
                    out.texts.len() - 1
                }
            };
            for &i in &key.1 {
                match out.fed[i].iter_mut().find(|(r, _)| *r == id) {
                    Some((_, ends)) => ends.push(end),
                    None => out.fed[i].push((id, vec![end])),
                }
            }
        }
        match end.checked_add(interval) {
            Some(next) => end = next,
            None => break,
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rule::{Alerting, EvidenceKind, EvidenceSpec, RuleMeta};

    fn rule(query: &str, window: i64, interval: i64) -> Rule {
        let meta = RuleMeta {
            id: "r".into(),
            name: "r".into(),
            renamed: None,
            description: String::new(),
            rule_type: "esql".into(),
            language: "esql".into(),
            index: Vec::new(),
            severity: "low".into(),
            risk_score: 21,
            schedule: String::new(),
            false_positives: Vec::new(),
            author: None,
            references: Vec::new(),
            sigma_mapping: None,
            note: None,
            setup: None,
            building_block: None,
            query: query.into(),
            threat: Vec::new(),
            analyses: vec![crate::rule::ANALYSIS_BY_ACTOR.into()],
            evidence: vec![EvidenceSpec {
                name: "target".into(),
                fields: vec!["o365.audit.ObjectId".into()],
                kind: EvidenceKind::Keyword,
            }],
            context: Vec::new(),
            alerting: Some(Alerting::Esql { window, interval }),
        };
        Rule::compile(meta).unwrap()
    }

    /// A match at second `second` whose row has `user.id` = `user`.
    fn at(rule: &Rule, line: u64, second: i64, user: &str) -> Finding {
        let mut f = crate::findings::tests::finding(user, line, 1_700_000_400 + second);
        f.fields = vec![None; rule.evidence.len()];
        let row = Row {
            columns: vec![("user.id".into(), vec![Scalar::Str(user.into())])],
            from: Vec::new(),
        };
        f.fields[rule.evidence_index(ESQL_ROWS_EVIDENCE).unwrap()] =
            encode_rows(&[row]).map(Value::Text);
        f
    }

    fn alerted(out: &[Option<Text>]) -> Vec<usize> {
        (0..out.len()).filter(|&i| out[i].is_some()).collect()
    }

    #[test]
    fn rows_round_trip_through_their_evidence_text() {
        let row = Row {
            columns: vec![
                (
                    "a".into(),
                    vec![Scalar::Str("x\"y".into()), Scalar::Int(-3)],
                ),
                ("b".into(), vec![]),
                ("c".into(), vec![Scalar::Double(1.5), Scalar::Bool(true)]),
                ("d".into(), vec![Scalar::Date(1_700_000_000_123)]),
                (
                    "e".into(),
                    vec![Scalar::Ip(u128::from(std::net::Ipv6Addr::LOCALHOST))],
                ),
            ],
            from: Vec::new(),
        };
        let text = encode_rows(std::slice::from_ref(&row)).unwrap();
        assert_eq!(decode_rows(&text), Some(vec![row]));
        assert_eq!(decode_rows("[[[\"a\",[[\"z\",1]]]]]"), None);
        assert_eq!(decode_rows("not json"), None);
    }

    #[test]
    fn a_group_alerts_in_the_runs_whose_look_back_holds_enough() {
        // 3 matches by the same user within 2 minutes, runs every 5 minutes over 10.
        let r = rule(
            "from x | stats n = count(*) by user.id | where n >= 3",
            600,
            300,
        );
        // 1_700_000_400 is a multiple of 300: runs end at +300, +600, …
        let f = [
            at(&r, 1, 10, "alice"),
            at(&r, 2, 70, "alice"),
            at(&r, 3, 130, "alice"),
            at(&r, 4, 140, "bob"),
            at(&r, 5, 2000, "alice"),
        ];
        let refs: Vec<&Finding> = f.iter().collect();
        let out = alerts(&refs, &r, 600, 300);
        assert_eq!(alerted(&out), vec![0, 1, 2]);
        let why = out[0].as_deref().unwrap();
        // The runs ending at +300 and +600 both see the three (the look-back overlaps).
        assert!(
            why.starts_with("ES|QL row 1, runs ending 2023-11-14T22:25:00Z, 2023-11-14T22:30:00Z"),
            "{why}"
        );
        assert!(why.ends_with("n=3, user.id=alice"), "{why}");
        // The row's columns are on its earliest record; the others name it, sharing one
        // text.
        let other = out[1].clone().unwrap();
        assert!(!other.contains("n=3"), "{other}");
        assert!(other.starts_with("ES|QL row 1, runs ending"), "{other}");
        assert!(std::sync::Arc::ptr_eq(&other, out[2].as_ref().unwrap()));
    }

    #[test]
    fn a_look_back_cuts_a_burst_that_straddles_it() {
        // Two runs of 5 minutes with no overlap: 2 + 2 never reach 3.
        let r = rule(
            "from x | stats n = count(*) by user.id | where n >= 3",
            300,
            300,
        );
        let f = [
            at(&r, 1, 200, "alice"),
            at(&r, 2, 250, "alice"),
            at(&r, 3, 310, "alice"),
            at(&r, 4, 320, "alice"),
        ];
        let refs: Vec<&Finding> = f.iter().collect();
        assert!(alerted(&alerts(&refs, &r, 300, 300)).is_empty());
        // With a 10-minute look-back the run ending at +600 holds all four.
        let r = rule(
            "from x | stats n = count(*) by user.id | where n >= 3",
            600,
            300,
        );
        let f = [
            at(&r, 1, 200, "alice"),
            at(&r, 2, 250, "alice"),
            at(&r, 3, 310, "alice"),
            at(&r, 4, 320, "alice"),
        ];
        let refs: Vec<&Finding> = f.iter().collect();
        let out = alerts(&refs, &r, 600, 300);
        assert_eq!(alerted(&out), vec![0, 1, 2, 3]);
        assert!(out[0].as_deref().unwrap().contains("n=4"), "{:?}", out[0]);
    }

    /// A match at second `second` whose row has `a` = 1 when it meets the trigger.
    fn trigger_at(rule: &Rule, line: u64, second: i64, fires: bool) -> Finding {
        let mut f = at(rule, line, second, "u");
        let row = Row {
            columns: vec![(
                "a".into(),
                if fires { vec![Scalar::Int(1)] } else { vec![] },
            )],
            from: Vec::new(),
        };
        f.fields[rule.evidence_index(ESQL_ROWS_EVIDENCE).unwrap()] =
            encode_rows(&[row]).map(Value::Text);
        f
    }

    #[test]
    fn only_the_runs_holding_a_trigger_are_replayed_and_count_held_back() {
        let r = rule(
            "from x | eval a = case(user.id == \"mallory\", 1) | stats n = count(*), t = count(a) | where t > 0",
            600,
            300,
        );
        assert!(r.query.trigger().is_some());
        let f = [
            trigger_at(&r, 1, 10, false),
            trigger_at(&r, 2, 70, true),
            trigger_at(&r, 3, 5000, false),
        ];
        let refs: Vec<&Finding> = f.iter().collect();
        let (out, counted) = alerts_counted(&refs, &r, 600, 300);
        assert_eq!(alerted(&out), vec![0, 1]);
        assert!(
            out[0].as_deref().unwrap().ends_with("n=2, t=1"),
            "{:?}",
            out[0]
        );
        // The last is in no run that holds a trigger: not read with the prefilter, so
        // not counted as held back in any mode.
        assert_eq!(counted, vec![true, true, false]);
        // What a second look reads: the windows of the runs ending at +300 and +600.
        let (windows, fired) = trigger_windows(&refs, &r, 600, 300);
        assert_eq!(fired, 1);
        assert_eq!(windows, vec![(1_700_000_400 - 300, 1_700_000_400 + 601)]);
    }

    #[test]
    fn far_apart_matches_skip_the_empty_runs() {
        let r = rule("from x | stats n = count(*) by user.id", 60, 60);
        // A year apart: two runs, not half a million.
        let f = [at(&r, 1, 0, "a"), at(&r, 2, 366 * 86_400, "a")];
        let refs: Vec<&Finding> = f.iter().collect();
        let out = alerts(&refs, &r, 60, 60);
        assert_eq!(alerted(&out), vec![0, 1]);
        // Two rows with the same columns from different records: two alerts.
        assert!(out[1].as_deref().unwrap().starts_with("ES|QL row 2,"));
        assert!(out[1].as_deref().unwrap().contains("n=1"));
    }

    #[test]
    fn a_per_record_query_alerts_on_each_match_once() {
        let r = rule("from x | where user.id == \"a\" | keep user.id", 600, 60);
        let f = [at(&r, 1, 0, "a"), at(&r, 2, 5, "a")];
        let refs: Vec<&Finding> = f.iter().collect();
        let out = alerts(&refs, &r, 600, 60);
        assert_eq!(out[0].as_deref(), Some("ES|QL row: user.id=a"));
        assert_eq!(alerted(&out), vec![0, 1]);
    }

    #[test]
    fn an_undated_match_never_alerts_in_an_aggregating_query() {
        let r = rule("from x | stats n = count(*) by user.id", 600, 300);
        let mut f = at(&r, 1, 0, "a");
        f.timestamp = None;
        let out = alerts(&[&f], &r, 600, 300);
        assert_eq!(out, vec![None]);
    }
}
