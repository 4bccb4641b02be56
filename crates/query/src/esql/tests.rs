//! Each command, function and operator against Elastic's ES|QL semantics.

use super::*;

/// A test field typed by its name, as an ECS mapping types it.
#[derive(Clone, Debug, PartialEq)]
struct T(String);

impl Field for T {
    fn parse(name: &str) -> T {
        T(name.to_string())
    }
    fn name(&self) -> String {
        self.0.clone()
    }
    fn value_type(&self) -> ValueType {
        match self.0.as_str() {
            "@timestamp" => ValueType::Date,
            "file.size" | "n" => ValueType::Number,
            "source.ip" => ValueType::Ip,
            _ => ValueType::Keyword,
        }
    }
    fn is_broad_literal(&self, literal: &str) -> bool {
        self.0 == "event.provider" && literal != "OneDrive"
    }
    fn key_literal(&self) -> Option<String> {
        self.0.strip_prefix("o365.audit.").map(str::to_string)
    }
}

/// A record: each field with its values (several: an array).
struct Rec(Vec<(&'static str, Vec<&'static str>)>);

impl Fields<T> for Rec {
    fn any_value(&self, field: &T, pred: &mut dyn FnMut(&str) -> bool) -> bool {
        self.0
            .iter()
            .filter(|(k, _)| *k == field.0)
            .any(|(_, vs)| vs.iter().any(|v| pred(v)))
    }
}

fn q(text: &str) -> Query<T> {
    Query::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"))
}

/// The value of `EVAL x = EXPR` over a record.
fn eval(expr: &str, rec: &Rec) -> Value {
    let query = q(&format!("from x | eval x = {expr} | keep x"));
    let rows = query.rows(rec);
    assert_eq!(rows.len(), 1);
    rows[0].get("x").cloned().unwrap()
}

fn empty() -> Rec {
    Rec(Vec::new())
}

fn s(x: &str) -> Scalar {
    Scalar::Str(x.to_string())
}

#[test]
fn integer_and_double_division() {
    assert_eq!(eval("7 / 2", &empty()), vec![Scalar::Int(3)]);
    assert_eq!(eval("-7 / 2", &empty()), vec![Scalar::Int(-3)]);
    assert_eq!(eval("7 / 2.0", &empty()), vec![Scalar::Double(3.5)]);
    assert_eq!(eval("7 % 3", &empty()), vec![Scalar::Int(1)]);
    assert_eq!(eval("1 / 0", &empty()), Vec::<Scalar>::new());
    assert_eq!(eval("1.0 / 0", &empty()), Vec::<Scalar>::new());
    assert_eq!(
        eval("9223372036854775807 + 1", &empty()),
        Vec::<Scalar>::new()
    );
    assert_eq!(eval("2 + 3 * 4", &empty()), vec![Scalar::Int(14)]);
}

#[test]
fn null_and_multi_values_in_comparisons() {
    let rec = Rec(vec![("a", vec!["x", "y"]), ("b", vec!["x"])]);
    // A multi-valued operand makes a comparison null, so WHERE drops the row both ways.
    assert_eq!(eval("a == \"x\"", &rec), Vec::<Scalar>::new());
    assert_eq!(eval("a != \"x\"", &rec), Vec::<Scalar>::new());
    assert_eq!(eval("b == \"x\"", &rec), vec![Scalar::Bool(true)]);
    assert_eq!(eval("missing == \"x\"", &rec), Vec::<Scalar>::new());
    assert_eq!(eval("missing is null", &rec), vec![Scalar::Bool(true)]);
    assert_eq!(eval("a is not null", &rec), vec![Scalar::Bool(true)]);
    assert!(!q("from x | where a != \"z\"").matches(&rec));
    assert!(q("from x | where b != \"z\"").matches(&rec));
    assert!(!q("from x | where missing != \"z\"").matches(&rec));
}

#[test]
fn three_valued_logic() {
    let rec = Rec(vec![("b", vec!["x"])]);
    assert_eq!(eval("null and false", &rec), vec![Scalar::Bool(false)]);
    assert_eq!(eval("null and true", &rec), Vec::<Scalar>::new());
    assert_eq!(eval("null or true", &rec), vec![Scalar::Bool(true)]);
    assert_eq!(eval("null or false", &rec), Vec::<Scalar>::new());
    assert_eq!(eval("not (missing == \"x\")", &rec), Vec::<Scalar>::new());
    assert_eq!(eval("not b == \"y\"", &rec), vec![Scalar::Bool(true)]);
}

#[test]
fn in_and_not_in_with_nulls() {
    let rec = Rec(vec![("b", vec!["x"])]);
    assert_eq!(eval("b in (\"y\", \"x\")", &rec), vec![Scalar::Bool(true)]);
    assert_eq!(eval("b in (\"y\", \"z\")", &rec), vec![Scalar::Bool(false)]);
    assert_eq!(eval("b in (\"y\", null)", &rec), Vec::<Scalar>::new());
    assert_eq!(
        eval("b not in (\"y\", \"z\")", &rec),
        vec![Scalar::Bool(true)]
    );
    assert_eq!(eval("missing not in (\"y\")", &rec), Vec::<Scalar>::new());
    // Case-sensitive.
    assert_eq!(eval("b in (\"X\")", &rec), vec![Scalar::Bool(false)]);
}

#[test]
fn like_and_rlike_are_case_sensitive_and_whole_value() {
    let rec = Rec(vec![("a", vec!["New-InboxRule"]), ("m", vec!["x", "y"])]);
    assert_eq!(eval("a like \"New-*\"", &rec), vec![Scalar::Bool(true)]);
    assert_eq!(eval("a like \"new-*\"", &rec), vec![Scalar::Bool(false)]);
    assert_eq!(eval("a rlike \"New.*\"", &rec), vec![Scalar::Bool(true)]);
    assert_eq!(eval("a rlike \"Inbox\"", &rec), vec![Scalar::Bool(false)]);
    assert_eq!(
        eval("a not rlike \"Inbox\"", &rec),
        vec![Scalar::Bool(true)]
    );
    assert_eq!(eval("m like \"x\"", &rec), Vec::<Scalar>::new());
    assert_eq!(eval("missing like \"*\"", &rec), Vec::<Scalar>::new());
}

#[test]
fn functions() {
    let rec = Rec(vec![
        ("a", vec!["MiXed"]),
        ("m", vec!["A", "b"]),
        ("@timestamp", vec!["2024-03-01T10:07:31.250Z"]),
        ("t2", vec!["2024-03-01T10:12:31Z"]),
        ("source.ip", vec!["203.0.113.9"]),
        ("ip_text", vec!["10.1.2.3"]),
        ("bad_ip", vec!["not an ip"]),
        ("file.size", vec!["3", "4"]),
    ]);
    assert_eq!(eval("to_lower(a)", &rec), vec![s("mixed")]);
    assert_eq!(eval("to_upper(m)", &rec), vec![s("A"), s("B")]);
    assert_eq!(eval("coalesce(missing, null, a)", &rec), vec![s("MiXed")]);
    assert_eq!(eval("coalesce(missing, null)", &rec), Vec::<Scalar>::new());
    assert_eq!(
        eval("case(a == \"x\", 1, a == \"MiXed\", 2, 3)", &rec),
        vec![Scalar::Int(2)]
    );
    assert_eq!(eval("case(a == \"x\", 1, 3)", &rec), vec![Scalar::Int(3)]);
    assert_eq!(eval("case(a == \"x\", 1)", &rec), Vec::<Scalar>::new());
    // A null condition is not true.
    assert_eq!(
        eval("case(missing == \"x\", 1, 2)", &rec),
        vec![Scalar::Int(2)]
    );
    let t = |text: &str| vec![Scalar::Date(parse_date(text).unwrap())];
    assert_eq!(
        eval("date_trunc(5 minutes, @timestamp)", &rec),
        t("2024-03-01T10:05:00Z")
    );
    assert_eq!(
        eval("date_trunc(1 hour, @timestamp)", &rec),
        t("2024-03-01T10:00:00Z")
    );
    assert_eq!(
        eval(
            "date_diff(\"seconds\", @timestamp, to_datetime_missing)",
            &rec
        ),
        Vec::<Scalar>::new()
    );
    assert!(Query::<T>::parse("from x | eval d = date_trunc(1 month, @timestamp)").is_err());
    assert_eq!(
        eval("to_ip(source.ip)", &rec),
        vec![Scalar::Ip(parse_ip("203.0.113.9").unwrap())]
    );
    assert_eq!(eval("to_ip(bad_ip)", &rec), Vec::<Scalar>::new());
    assert_eq!(
        eval("cidr_match(to_ip(ip_text), \"10.0.0.0/8\")", &rec),
        vec![Scalar::Bool(true)]
    );
    assert_eq!(
        eval(
            "cidr_match(source.ip, \"10.0.0.0/8\", \"::1\", \"FE80::/10\")",
            &rec
        ),
        vec![Scalar::Bool(false)]
    );
    assert_eq!(
        eval("cidr_match(to_ip(bad_ip), \"10.0.0.0/8\")", &rec),
        vec![]
    );
    assert_eq!(eval("mv_sum(file.size)", &rec), vec![Scalar::Int(7)]);
    assert_eq!(eval("mv_count(m)", &rec), vec![Scalar::Int(2)]);
    assert_eq!(eval("mv_min(m)", &rec), vec![s("A")]);
    assert_eq!(eval("round(2.345, 2)", &rec), vec![Scalar::Double(2.35)]);
    assert_eq!(eval("round(-2.5)", &rec), vec![Scalar::Double(-3.0)]);
    assert_eq!(eval("round(7)", &rec), vec![Scalar::Int(7)]);
    assert_eq!(eval("length(a)", &rec), vec![Scalar::Int(5)]);
    assert!(Query::<T>::parse("from x | eval y = frobnicate(a)").is_err());
    assert!(Query::<T>::parse("from x | eval y = count(a)").is_err());
}

#[test]
fn date_diff_counts_whole_units_from_start_to_end() {
    let rec = Rec(vec![
        ("@timestamp", vec!["2024-03-01T10:07:31.250Z"]),
        ("t2", vec!["2024-03-01T10:12:31Z"]),
    ]);
    let query = q("from x | stats a = min(@timestamp), b = max(@timestamp) \
         | eval d = date_diff(\"seconds\", a, b), e = date_diff(\"minutes\", b, a)");
    let r1 = query.rows(&rec);
    let rec2 = Rec(vec![("@timestamp", vec!["2024-03-01T10:12:31Z"])]);
    let mut rows = r1;
    rows.extend(query.rows(&rec2));
    let out = query.finish(rows);
    assert_eq!(out[0].get("d"), Some(&vec![Scalar::Int(299)]));
    assert_eq!(out[0].get("e"), Some(&vec![Scalar::Int(-4)]));
}

#[test]
fn grok_captures_or_nulls() {
    let query =
        q(r#"from x | grok o365.audit.ObjectId """.*\\\\(?<Esql.name>.*)$""" | keep Esql.name"#);
    // Triple-quoted strings keep their backslashes: the regex wants two in a row.
    let two = Rec(vec![("o365.audit.ObjectId", vec![r"org\\alice\\..."])]);
    assert_eq!(query.rows(&two)[0].get("Esql.name"), Some(&vec![s("...")]));
    let one = Rec(vec![("o365.audit.ObjectId", vec![r"org\alice\..."])]);
    assert_eq!(query.rows(&one)[0].get("Esql.name"), Some(&vec![]));
    assert_eq!(query.rows(&empty())[0].get("Esql.name"), Some(&vec![]));
    // In a quoted string, `\\` is one backslash: `"a\\\\(?<y>.*)"` is the regex `a\\(?<y>.*)`.
    let query = q(r#"from x | grok o "a\\\\(?<y>.*)" | keep y"#);
    let rec = Rec(vec![("o", vec![r"xa\bc"])]);
    assert_eq!(query.rows(&rec)[0].get("y"), Some(&vec![s("bc")]));
}

#[test]
fn mv_expand_makes_a_row_per_value() {
    let query = q("from x | mv_expand event.category | where event.category == \"authentication\"");
    let rec = Rec(vec![("event.category", vec!["web", "authentication"])]);
    // The comparison on the multi-value would be null; per value it holds once.
    assert_eq!(query.rows(&rec).len(), 1);
    assert!(!q("from x | where event.category == \"authentication\"").matches(&rec));
    let none = Rec(vec![("event.category", vec![])]);
    assert_eq!(q("from x | mv_expand event.category").rows(&none).len(), 1);
}

fn rows_of(query: &Query<T>, recs: &[Rec]) -> Vec<Row> {
    recs.iter().flat_map(|r| query.rows(r)).collect()
}

#[test]
fn keyword_multi_values_load_sorted_without_duplicates_numbers_keep_them() {
    let rec = Rec(vec![
        ("m", vec!["b", "a", "b"]),
        ("file.size", vec!["2", "1", "2"]),
    ]);
    assert_eq!(eval("m", &rec), vec![s("a"), s("b")]);
    assert_eq!(
        eval("file.size", &rec),
        vec![Scalar::Int(1), Scalar::Int(2), Scalar::Int(2)]
    );
    assert_eq!(eval("mv_count(m)", &rec), vec![Scalar::Int(2)]);
}

#[test]
fn count_star_counts_rows_count_field_counts_values() {
    let query = q(
        "from x | stats a = count(*), b = count(m), c = count_distinct(m), \
         d = values(m), e = count(missing)",
    );
    let recs = [
        Rec(vec![("m", vec!["x", "y"])]),
        Rec(vec![("m", vec!["x"])]),
        Rec(vec![]),
    ];
    let out = query.finish(rows_of(&query, &recs));
    assert_eq!(out.len(), 1);
    let r = &out[0];
    assert_eq!(r.get("a"), Some(&vec![Scalar::Int(3)]));
    assert_eq!(r.get("b"), Some(&vec![Scalar::Int(3)]));
    assert_eq!(r.get("c"), Some(&vec![Scalar::Int(2)]));
    assert_eq!(r.get("d"), Some(&vec![s("x"), s("y")]));
    assert_eq!(r.get("e"), Some(&vec![Scalar::Int(0)]));
    assert_eq!(r.from, vec![0, 1, 2]);
}

#[test]
fn stats_without_by_over_no_rows_gives_one_row() {
    let query = q("from x | stats n = count(*), v = values(m)");
    let out = query.finish(Vec::new());
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].get("n"), Some(&vec![Scalar::Int(0)]));
    assert_eq!(out[0].get("v"), Some(&vec![]));
    let query = q("from x | stats n = count(*) by g");
    assert!(query.finish(Vec::new()).is_empty());
}

#[test]
fn stats_by_groups_multi_values_and_nulls() {
    let query = q("from x | stats n = count(*) by g");
    let recs = [
        Rec(vec![("g", vec!["a", "b"])]),
        Rec(vec![("g", vec!["a"])]),
        Rec(vec![]),
    ];
    let out = query.finish(rows_of(&query, &recs));
    let got: Vec<(String, Vec<u32>)> = out
        .iter()
        .map(|r| (show(r.get("g").unwrap()), r.from.clone()))
        .collect();
    assert_eq!(
        got,
        vec![
            ("a".into(), vec![0, 1]),
            ("b".into(), vec![0]),
            ("null".into(), vec![2])
        ]
    );
    // Columns: the aggregates, then the keys.
    assert_eq!(out[0].columns[0].0, "n");
    assert_eq!(out[0].columns[1].0, "g");
}

#[test]
fn aggregates_inside_expressions_and_by_assignments() {
    let query = q(
        "from x | stats mb = round(mv_sum(values(file.size)) / 1048576.0, 2), \
         top = max(file.size) by ip = to_ip(source.ip)",
    );
    let recs = [
        Rec(vec![
            ("file.size", vec!["1048576"]),
            ("source.ip", vec!["198.51.100.1"]),
        ]),
        Rec(vec![
            ("file.size", vec!["2097152"]),
            ("source.ip", vec!["198.51.100.1"]),
        ]),
        Rec(vec![
            ("file.size", vec!["1048576"]),
            ("source.ip", vec!["198.51.100.1"]),
        ]),
    ];
    let out = query.finish(rows_of(&query, &recs));
    assert_eq!(out.len(), 1);
    // VALUES is distinct: 1 MiB counted once.
    assert_eq!(out[0].get("mb"), Some(&vec![Scalar::Double(3.0)]));
    assert_eq!(out[0].get("top"), Some(&vec![Scalar::Int(2097152)]));
    assert_eq!(show(out[0].get("ip").unwrap()), "198.51.100.1");
}

#[test]
fn keep_wildcards_where_sort_limit_after_stats() {
    let query = q("from x | stats Esql.n = count(*), other = count(*) by g \
         | where Esql.n >= 2 | keep Esql.*, g | sort g desc | limit 1");
    let recs = [
        Rec(vec![("g", vec!["a"])]),
        Rec(vec![("g", vec!["a"])]),
        Rec(vec![("g", vec!["b"])]),
        Rec(vec![("g", vec!["b"])]),
        Rec(vec![("g", vec!["c"])]),
    ];
    let out = query.finish(rows_of(&query, &recs));
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].to_string(), "Esql.n=2, g=b");
    assert_eq!(out[0].from, vec![2, 3]);
}

#[test]
fn per_record_rows_carry_only_what_stats_reads() {
    let query = q(
        "from x | eval lower = to_lower(u) | where lower != \"n/a\" \
         | stats n = count_distinct(lower) by w = date_trunc(5 minutes, @timestamp)",
    );
    let rec = Rec(vec![
        ("u", vec!["Alice"]),
        ("@timestamp", vec!["2024-03-01T10:07:31Z"]),
        ("unused", vec!["big"]),
    ]);
    let rows = query.rows(&rec);
    assert_eq!(rows.len(), 1);
    let names: Vec<&str> = rows[0].columns.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["lower", "@timestamp"]);
    assert!(query.aggregates());
}

#[test]
fn keep_before_stats_closes_the_record() {
    let query = q("from x | keep a | eval b2 = b, a2 = a | stats n = count(b2), m = count(a2)");
    let rec = Rec(vec![("a", vec!["1"]), ("b", vec!["2"])]);
    let out = query.finish(query.rows(&rec));
    assert_eq!(out[0].get("n"), Some(&vec![Scalar::Int(0)]));
    assert_eq!(out[0].get("m"), Some(&vec![Scalar::Int(1)]));
}

#[test]
fn literals_come_from_where_clauses_on_record_fields() {
    let query = q("from x | where event.provider == \"Exchange\" and \
         event.action in (\"New-InboxRule\", \"Set-InboxRule\") | eval x = to_lower(y) \
         | where x == \"abc\"");
    assert_eq!(
        query.required_literals(),
        Some(vec![
            "New-InboxRule".to_string(),
            "Set-InboxRule".to_string()
        ])
    );
    // A computed column is not the record's: no literal from it.
    let computed = q("from x | eval a = to_lower(b) | where a == \"abcdef\"");
    assert_eq!(computed.required_literals(), None);
    // An `or` with a side of no literal gives none.
    let open = q("from x | where a == \"abcdef\" or b is null");
    assert_eq!(open.required_literals(), None);
    // A broad field's literal is used only when nothing else gives one.
    let broad = q("from x | where event.provider == \"Exchange\"");
    assert_eq!(
        broad.required_literals(),
        Some(vec!["Exchange".to_string()])
    );
    assert!(broad.required_conjuncts().is_empty());
    // A workload that is no broad class is a conjunct; in a set with a broad one, not.
    let narrow = q("from x | where event.provider == \"OneDrive\" and \
         event.action == \"FileDownloaded\"");
    assert_eq!(
        narrow.required_conjuncts(),
        [
            vec!["OneDrive".to_string()],
            vec!["FileDownloaded".to_string()]
        ]
    );
    let mixed = q(
        "from x | where event.provider in (\"OneDrive\", \"Exchange\") and \
         event.action == \"FileDownloaded\"",
    );
    assert_eq!(
        mixed.required_conjuncts(),
        [vec!["FileDownloaded".to_string()]]
    );
}

#[test]
fn a_field_that_must_have_a_value_gives_its_key_after_every_value_literal() {
    let query = q("from x | where event.action == \"FileDownloaded\" and \
         (user.id is not null and o365.audit.ApplicationId is not null)");
    assert_eq!(
        query.required_literals(),
        Some(vec!["FileDownloaded".to_string()])
    );
    assert_eq!(
        query.required_conjuncts(),
        [
            vec!["FileDownloaded".to_string()],
            vec!["ApplicationId".to_string()]
        ]
    );
    // With no value's literal, the key is the required one.
    let alone = q("from x | where o365.audit.ApplicationId is not null");
    assert_eq!(
        alone.required_literals(),
        Some(vec!["ApplicationId".to_string()])
    );
    // `IS NULL`, a negation and a computed column give none.
    for text in [
        "from x | where o365.audit.ApplicationId is null",
        "from x | where not o365.audit.ApplicationId == \"abcdef\"",
        "from x | eval a = o365.audit.ApplicationId | where a is not null",
        "from x | eval o365.audit.ApplicationId = \"abcdef\" \
         | where o365.audit.ApplicationId is not null",
    ] {
        assert_eq!(q(text).required_literals(), None, "{text}");
        assert!(q(text).required_conjuncts().is_empty(), "{text}");
    }
}

/// The suspicious-source rule's shape: no literal for its rows, but its groups pass
/// only with a network alert in them, which holds one.
const GATED: &str = "from x | where to_ip(source.ip) is not null \
     | keep source.ip, kibana.alert.rule.rule_id, data_stream.dataset \
     | eval alert = case(kibana.alert.rule.rule_id == \"eb079c62\" and not data_stream.dataset in (\"o365.audit\"), to_ip(source.ip)), \
            mail = case(data_stream.dataset == \"o365.audit\", to_ip(source.ip)) \
     | stats n = count(*), alerts = count_distinct(alert), mails = count_distinct(mail) by ip = to_ip(source.ip) \
     | where alerts > 0 and (mails > 0 or n > 5)";

#[test]
fn a_where_over_an_aggregate_of_a_case_column_is_a_trigger() {
    let query = q(GATED);
    assert_eq!(query.required_literals(), None);
    let trigger = query.trigger().expect("a trigger");
    assert_eq!(trigger.literals, vec!["eb079c62".to_string()]);
    assert_eq!(trigger.column, "alerts");
    let alert = Rec(vec![
        ("source.ip", vec!["81.2.69.160"]),
        ("kibana.alert.rule.rule_id", vec!["eb079c62"]),
        ("data_stream.dataset", vec!["panw.panos"]),
    ]);
    let mail = Rec(vec![
        ("source.ip", vec!["81.2.69.160"]),
        ("data_stream.dataset", vec!["o365.audit"]),
    ]);
    let fires = |r: &Rec| query.rows(r).iter().any(|row| trigger.fires(row));
    assert!(fires(&alert));
    assert!(!fires(&mail));
    // The group with the trigger passes; without it, nothing does.
    let both = [query.rows(&mail), query.rows(&alert)].concat();
    assert_eq!(query.finish(both).len(), 1);
    assert!(query.finish(query.rows(&mail)).is_empty());
}

#[test]
fn conditions_true_at_no_values_or_after_a_new_row_are_no_trigger() {
    let with = |post: &str| {
        q(&format!(
            "from x | eval a = case(f == \"lit\", 1) | stats c = count(a), v = values(a), k = count(*) by g {post}"
        ))
        .trigger()
        .map(|t| t.column)
    };
    for gated in [
        "| where c > 0",
        "| where c >= 1",
        "| where 0 < c",
        "| where c != 0",
        "| where c == 2",
        "| where v is not null",
        "| where v == 1",
        "| sort g | where c > 0 and k > 3",
    ] {
        assert!(with(gated).is_some(), "{gated}");
    }
    for open in [
        "| where c >= 0",
        "| where c < 3",
        "| where c == 0",
        "| where c > 0 or k > 3",
        "| where k > 0",
        "| where c is not null",
        "| where v is null",
        // A column made again is not the aggregate any more.
        "| eval c = k | where c > 0",
        // A STATS without BY gives a row over no input.
        "| stats z = count(*) | where c > 0",
    ] {
        assert_eq!(with(open), None, "{open}");
    }
    // An `else` with no literal, or an argument no literal guards, gives none.
    let open = q("from x | eval a = case(f == \"lit\", 1, 2) | stats c = count(a) | where c > 0");
    assert!(open.trigger().is_none());
    let field = q("from x | stats c = count(f) | where c > 0");
    assert!(field.trigger().is_none());
    let both = q(
        "from x | eval a = case(f == \"lit\", 1, g == \"other\", 2) | stats c = count(a) | where c > 0",
    );
    assert_eq!(
        both.trigger().unwrap().literals,
        vec!["lit".to_string(), "other".to_string()]
    );
}

#[test]
fn lexing_names_strings_and_comments() {
    let query = q(
        "from logs-o365.audit-*, .alerts-security.* metadata _id, _version\n\
         // a comment | where nothing\n\
         | where source.`as`.organization.name != \"a//b\" /* inline */ and x == \"\"\"q\"uote\"\"\"",
    );
    assert_eq!(query.sources, ["logs-o365.audit-*", ".alerts-security.*"]);
    let rec = Rec(vec![
        ("source.as.organization.name", vec!["ACME"]),
        ("x", vec!["q\"uote"]),
    ]);
    assert!(query.matches(&rec));
    assert!(Query::<T>::parse("from x | where a == \"open").is_err());
    assert!(Query::<T>::parse("from x | rename a as b").is_err());
    assert!(Query::<T>::parse("where a == 1").is_err());
    assert!(Query::<T>::parse("from x | keep user.*").is_err());
}

#[test]
fn deep_nesting_is_refused_not_overflowed() {
    let deep = format!(
        "from x | where {}a == 1{}",
        "(".repeat(500),
        ")".repeat(500)
    );
    assert!(Query::<T>::parse(&deep).is_err());
    let nots = format!("from x | where {} a == 1", "not ".repeat(500));
    assert!(Query::<T>::parse(&nots).is_err());
}

#[test]
fn values_and_distinct_are_typed() {
    let query = q("from x | stats d = count_distinct(n), v = values(n)");
    let recs = [
        Rec(vec![("n", vec!["1"])]),
        Rec(vec![("n", vec!["1.0"])]),
        Rec(vec![("n", vec!["2"])]),
    ];
    let out = query.finish(rows_of(&query, &recs));
    // 1 and 1.0 are the same number.
    assert_eq!(out[0].get("d"), Some(&vec![Scalar::Int(2)]));
}

#[test]
fn dissect_makes_keyword_columns_or_nulls() {
    let query = q(r#"from x | dissect o "%{mailbox}\\%{rule}" | keep rule, mailbox"#);
    let rec = Rec(vec![("o", vec![r"alice\Forward all"])]);
    let rows = query.rows(&rec);
    assert_eq!(rows[0].to_string(), "rule=Forward all, mailbox=alice");
    let miss = Rec(vec![("o", vec!["no backslash"])]);
    assert_eq!(query.rows(&miss)[0].to_string(), "rule=null, mailbox=null");
    let query = q(r#"from x | dissect o "%{a} %{+a}" append_separator = "/" | keep a"#);
    let rec = Rec(vec![("o", vec!["x y"])]);
    assert_eq!(query.rows(&rec)[0].to_string(), "a=x/y");
}

/// A record's fields and their values.
type Pairs = Vec<(&'static str, Vec<&'static str>)>;

/// A generated record: `g` and `m` each with 0 to 3 values from a small alphabet.
fn arb_record() -> impl proptest::strategy::Strategy<Value = Pairs> {
    use proptest::prelude::*;
    let values = prop::collection::vec(prop::sample::select(vec!["a", "b", "c"]), 0..4);
    (values.clone(), values).prop_map(|(g, m)| vec![("g", g), ("m", m)])
}

proptest::proptest! {
    /// `STATS … BY` against a naive model of Elastic's semantics: a row goes to the
    /// group of each distinct value of a multi-valued key (a null key: the null group),
    /// `COUNT(*)` counts rows, `COUNT(m)` values, `COUNT_DISTINCT` and `VALUES` the
    /// distinct values.
    #[test]
    fn stats_by_agrees_with_a_naive_model(records in proptest::collection::vec(arb_record(), 0..40)) {
        use std::collections::{BTreeMap, BTreeSet};
        let query = q("from x | stats c = count(*), n = count(m), d = count_distinct(m), \
             v = values(m) by g");
        let recs: Vec<Rec> = records.iter().map(|r| Rec(r.clone())).collect();
        let out = query.finish(rows_of(&query, &recs));
        // group -> (rows, values, distinct values, record indexes)
        type Group<'a> = (i64, i64, BTreeSet<&'a str>, Vec<u32>);
        let mut model: BTreeMap<Option<&str>, Group<'_>> = BTreeMap::new();
        for (i, r) in records.iter().enumerate() {
            let g: BTreeSet<&str> = r[0].1.iter().copied().collect();
            let keys: Vec<Option<&str>> = if g.is_empty() {
                vec![None]
            } else {
                g.into_iter().map(Some).collect()
            };
            // A keyword multi-value is loaded without duplicates.
            let m: BTreeSet<&str> = r[1].1.iter().copied().collect();
            for k in keys {
                let e = model.entry(k).or_default();
                e.0 += 1;
                e.1 += m.len() as i64;
                e.2.extend(r[1].1.iter().copied());
                e.3.push(i as u32);
            }
        }
        proptest::prop_assert_eq!(out.len(), model.len());
        for row in &out {
            let key = match row.get("g").unwrap().as_slice() {
                [] => None,
                [Scalar::Str(s)] => Some(s.as_str()),
                other => panic!("a group key is one value: {other:?}"),
            };
            let (c, n, d, from) = &model[&key];
            proptest::prop_assert_eq!(row.get("c"), Some(&vec![Scalar::Int(*c)]));
            proptest::prop_assert_eq!(row.get("n"), Some(&vec![Scalar::Int(*n)]));
            proptest::prop_assert_eq!(row.get("d"), Some(&vec![Scalar::Int(d.len() as i64)]));
            let v: Vec<Scalar> = d.iter().map(|x| s(x)).collect();
            proptest::prop_assert_eq!(row.get("v"), Some(&v));
            proptest::prop_assert_eq!(&row.from, from);
        }
    }

    /// `WHERE m == "a"` keeps a record exactly when `m` holds the one value `a` (a
    /// multi-value makes the comparison null); `NOT` of it when `m` holds one other value.
    #[test]
    fn where_on_multi_values_agrees_with_a_naive_model(record in arb_record()) {
        let rec = Rec(record.clone());
        // A keyword multi-value is loaded sorted, without duplicates.
        let mut m = record[1].1.clone();
        m.sort();
        m.dedup();
        proptest::prop_assert_eq!(q("from x | where m == \"a\"").matches(&rec), m.as_slice() == ["a"]);
        proptest::prop_assert_eq!(
            q("from x | where not m == \"a\"").matches(&rec),
            m.len() == 1 && m[0] != "a"
        );
        proptest::prop_assert_eq!(
            q("from x | where m in (\"a\", \"b\")").matches(&rec),
            m.len() == 1 && m[0] != "c"
        );
        proptest::prop_assert_eq!(q("from x | where m is null").matches(&rec), m.is_empty());
        // MV_EXPAND then WHERE: a row per value equal to "a".
        let expanded = q("from x | mv_expand m | where m == \"a\"").rows(&rec).len();
        proptest::prop_assert_eq!(expanded, usize::from(m.contains(&"a")));
    }
}

/// [`parse_date`] as it read every text through chrono alone.
fn chrono_date(text: &str) -> Option<i64> {
    let t = text.trim();
    if let Ok(d) = DateTime::parse_from_rfc3339(t) {
        return Some(d.timestamp_millis());
    }
    if let Ok(d) = NaiveDateTime::parse_from_str(t, "%Y-%m-%dT%H:%M:%S%.f") {
        return Some(d.and_utc().timestamp_millis());
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(t, "%Y-%m-%d") {
        return Some(d.and_hms_opt(0, 0, 0)?.and_utc().timestamp_millis());
    }
    None
}

#[test]
fn dates_read_without_chrono_read_as_chrono_reads_them() {
    for t in [
        "2024-01-01T00:00:00",
        "2024-02-29T23:59:59.999",
        "2023-02-29T00:00:00",
        "2024-13-01T00:00:00",
        "2024-01-01T24:00:00",
        "2024-01-01T00:00:60",
        "2024-01-01T00:00:00.",
        "2024-01-01T00:00:00.1234567891",
        "2024-01-01T00:00:00.000000001",
        "2024-01-01T00:00:00Z",
        "2024-01-01T00:00:00+02:00",
        "2024-1-01T00:00:00",
        " 2024-01-01T00:00:00.5 ",
        "0000-01-01T00:00:00",
        "2024-01-01",
    ] {
        assert_eq!(parse_date(t), chrono_date(t), "{t:?}");
    }
}

proptest::proptest! {
    /// Texts near the audit log's date-times: digits, separators and fractions moved,
    /// dropped and doubled; the fast reading agrees with chrono's on each.
    #[test]
    fn date_texts_read_as_chrono_reads_them(
        t in "[0-9]{2,5}-[0-9]{1,2}-[0-9]{1,3}[T ][0-9]{1,2}:[0-9]{2}:[0-9]{1,2}(\\.[0-9]{0,11})?(Z|[+-][0-9]{2}:[0-9]{2})?",
        u in "[0-9]{4}-[01][0-9]-[0-3][0-9]T[0-2][0-9]:[0-5][0-9]:[0-6][0-9](\\.[0-9]{1,10})?Z?"
    ) {
        proptest::prop_assert_eq!(parse_date(&t), chrono_date(&t));
        proptest::prop_assert_eq!(parse_date(&u), chrono_date(&u));
    }
}

thread_local! {
    /// Set: a comparison reads its column as [`Scope::column`] does, copying the value
    /// (the reference for the borrowed reading).
    pub(super) static OWNED_ONLY: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// A query's rows over a record, the columns read borrowed or (`owned`) copied.
fn rows_read(query: &Query<T>, rec: &Rec, owned: bool) -> Vec<Row> {
    OWNED_ONLY.set(owned);
    let rows = query.rows(rec);
    OWNED_ONLY.set(false);
    rows
}

/// The conditions the differential test below runs: every operator the published rules'
/// `WHERE`s use (comparisons, `IN`, `IS [NOT] NULL`, `LIKE`, `RLIKE`, `NOT`, `AND`,
/// `OR`), with the column on either side, against each type, on record fields and on
/// columns an `EVAL` made.
const CONDITIONS: &[&str] = &[
    "k == \"a\"",
    "\"a\" == k",
    "k != \"a\"",
    "k < \"b\"",
    "k <= \"b\"",
    "\"b\" > k",
    "k >= \"B\"",
    "k == null",
    "k in (\"a\", \"b\")",
    "k in (\"a\", null)",
    "k not in (\"a\", \"10\")",
    "k in (\"x\", e)",
    "k is null",
    "k is not null",
    "k like \"a*\"",
    "k like \"*0*\"",
    "k rlike \"[ab]\"",
    "not k == \"a\"",
    "k == \"a\" or k == \"b\"",
    "k == \"a\" and n > 1",
    "not (k is null or n is null)",
    "n == 1",
    "n > 1.2",
    "n <= \"2\"",
    "1 < n",
    "n in (1, 2, 1.5)",
    "n is null",
    "@timestamp > \"2024-01-01T00:00:00\"",
    "@timestamp == \"2024-01-01\"",
    "\"2024-01-02\" >= @timestamp",
    "@timestamp is not null",
    "source.ip == \"10.0.0.1\"",
    "source.ip != \"::ffff:10.0.0.1\"",
    "source.ip in (\"10.0.0.1\", \"10.0.0.2\")",
    "e == \"a\"",
    "e like \"*\"",
    "k == e",
    "to_lower(k) == \"a\"",
    "case(k == \"a\", true, n > 1, true, false)",
];

/// A generated record: each typed field with 0 to 2 values, some not of the field's
/// type, some repeated.
fn arb_typed_record() -> impl proptest::strategy::Strategy<Value = Pairs> {
    use proptest::prelude::*;
    let of = |values: Vec<&'static str>| prop::collection::vec(prop::sample::select(values), 0..3);
    (
        of(vec!["a", "b", "A", "10", "2024-01-01", " a", ""]),
        of(vec!["1", "2", "1.5", "x", " 2 ", "-3", "1e400"]),
        of(vec![
            "2024-01-01T00:00:00",
            "2024-01-01",
            "2024-01-02T10:00:00.5Z",
            "soon",
            "0",
        ]),
        of(vec![
            "10.0.0.1",
            "10.0.0.2",
            "::ffff:10.0.0.1",
            "999.1.1.1",
            "fe80::1",
        ]),
    )
        .prop_map(|(k, n, t, ip)| vec![("k", k), ("n", n), ("@timestamp", t), ("source.ip", ip)])
}

proptest::proptest! {
    /// Reading a column borrowed (a comparison with literals on a single value) gives
    /// the rows reading it copied gives, for every condition above, on the record's
    /// fields and after an `EVAL` made the column a row's.
    #[test]
    fn borrowed_and_copied_column_reads_agree(record in arb_typed_record()) {
        let rec = Rec(record);
        for condition in CONDITIONS {
            for text in [
                format!("from x | eval e = k | where {condition}"),
                format!("from x | eval k = k, n = n, e = k | where {condition}"),
                format!("from x | where {condition} | keep k, n"),
                format!("from x | eval c = {condition} | keep c"),
            ] {
                let query = q(&text);
                proptest::prop_assert_eq!(
                    rows_read(&query, &rec, false),
                    rows_read(&query, &rec, true),
                    "{}", text
                );
            }
        }
    }
}

/// The borrowed reading is what the rules use: a comparison on a single-valued field
/// does not fall back to copying it, and a multi-value, which it cannot borrow, is read
/// copied, with the same outcome.
#[test]
fn single_values_are_read_borrowed_and_multi_values_copied() {
    let scope_rows = Row::default();
    let rec = Rec(vec![("k", vec!["a"]), ("m", vec!["a", "a"])]);
    let scope = Scope::<T> {
        row: &scope_rows,
        record: Some(&rec),
        aggs: &[],
    };
    let col = |name: &str| Column {
        name: name.to_string(),
        field: T::parse(name),
    };
    let seen = scope.with_one(&col("k"), |x| matches!(x, Some(View::Str("a"))));
    assert_eq!(seen, Some(true));
    assert_eq!(scope.with_one(&col("z"), |x| x.is_none()), Some(true));
    assert_eq!(scope.with_one(&col("m"), |_| ()), None);
    assert!(q("from x | where m == \"a\"").matches(&rec));
}

/// A `WHERE` conjunct that reads record fields only is tested before the commands in
/// front of it; one reading a column an `EVAL`, an extraction or an `MV_EXPAND` made,
/// or coming after a `KEEP`, is not; and the rows are the pipeline's own either way.
#[test]
fn record_only_where_conjuncts_are_tested_first_with_the_same_rows() {
    let query = q("from x | mv_expand event.category \
         | eval lower = to_lower(user.id), event.provider = \"made\" \
         | where event.action in (\"A\", \"B\") and lower != \"x\" and event.category == \"web\" \
             and n > 2 and event.provider == \"made\" \
         | keep event.action, lower | where event.action == \"A\"");
    let shown: Vec<String> = query.early.iter().map(|c| format!("{c:?}")).collect();
    assert_eq!(query.early.len(), 2, "{shown:#?}");
    let mut cols = Vec::new();
    query.early.iter().for_each(|c| c.columns(&mut cols));
    let names: Vec<&str> = cols.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["event.action", "n"]);
    let mut plain = query.clone();
    plain.early.clear();
    let recs = [
        Rec(vec![
            ("event.action", vec!["A"]),
            ("user.id", vec!["Y"]),
            ("event.category", vec!["web", "authentication"]),
            ("n", vec!["3"]),
        ]),
        Rec(vec![("event.action", vec!["C"]), ("n", vec!["3"])]),
        Rec(vec![("event.action", vec!["B"]), ("n", vec!["1"])]),
        Rec(vec![
            ("event.action", vec!["B"]),
            ("user.id", vec!["X"]),
            ("event.category", vec!["web"]),
            ("n", vec!["5"]),
        ]),
        Rec(vec![
            ("event.action", vec!["A", "B"]),
            ("event.category", vec!["web"]),
            ("n", vec!["5"]),
        ]),
        empty(),
    ];
    for rec in &recs {
        assert_eq!(query.rows(rec), plain.rows(rec));
    }
    assert_eq!(rows_of(&query, &recs).len(), 1);
}
