//! The caseless prefilter literals are sound: whenever an EQL comparison without case
//! (`:`, `in~`, `like~`, `regex~`, a `~` function) matches a value, the value's JSON text
//! holds one of the query's required literals, exact ones as they are and caseless ones
//! in some ASCII case, however the value is cased, whichever letters are replaced by
//! the non-ASCII ones that fold to ASCII (`ſ`, the Kelvin sign, `İ`), and whether a
//! writer escapes non-ASCII characters and `/` or not.

use proptest::prelude::*;
use ualhunt_query::eql::Query;
use ualhunt_query::{Fields, Literal, Named};

struct Record<'a>(&'a str);

impl Fields<Named> for Record<'_> {
    fn any_value(&self, field: &Named, pred: &mut dyn FnMut(&str) -> bool) -> bool {
        field.name() == "f" && pred(self.0)
    }
}

/// The value as a JSON writer that escapes every non-ASCII character and `/` writes it.
fn escaped_json(value: &str) -> String {
    let mut out = String::from("\"");
    for c in value.chars() {
        match c {
            '/' => out.push_str("\\/"),
            c if c.is_ascii() => {
                out.push_str(&serde_json::to_string(&c.to_string()).unwrap()[1..2])
            }
            c => {
                let mut units = [0u16; 2];
                for u in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{u:04x}"));
                }
            }
        }
    }
    out.push('"');
    out
}

fn holds(json: &str, literal: &str) -> bool {
    match Literal::parse(literal) {
        Literal::Exact(t) | Literal::Operation(t) => json.contains(t),
        Literal::AnyCase(t) | Literal::OperationAnyCase(t) => {
            json.to_ascii_lowercase().contains(&t.to_ascii_lowercase())
        }
    }
}

/// `value` with its letters' case flipped where `flips` says, and some letters replaced
/// by a non-ASCII letter folding to them where `swaps` says.
fn disguise(value: &str, flips: &[bool], swaps: &[u8]) -> String {
    value
        .chars()
        .enumerate()
        .map(|(i, c)| {
            let swap = swaps[i % swaps.len()] == 0;
            match c.to_ascii_lowercase() {
                's' if swap => "\u{17f}".to_string(),
                'k' if swap => "\u{212a}".to_string(),
                'i' if swap => "\u{130}".to_string(),
                _ if flips[i % flips.len()] => {
                    if c.is_ascii_lowercase() {
                        c.to_ascii_uppercase().to_string()
                    } else {
                        c.to_ascii_lowercase().to_string()
                    }
                }
                _ => c.to_string(),
            }
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn a_caseless_match_holds_a_required_literal_in_its_json(
        value in "[a-zA-Z0-9 ./-]{1,16}",
        around in ("[a-z/ ]{0,4}", "[a-z/ ]{0,4}"),
        flips in proptest::collection::vec(any::<bool>(), 1..8),
        swaps in proptest::collection::vec(0u8..3, 1..8),
        form in 0usize..6,
    ) {
        let text = match form {
            0 => format!("any where f : \"{value}\""),
            1 => format!("any where f in~ (\"{value}\", \"zz9\")"),
            2 => format!("any where f like~ \"*{value}*\""),
            3 => format!("any where f regex~ \".*{}.*\"", regex::escape(&value).replace('\\', "\\\\")),
            4 => format!("any where stringContains~(f, \"{value}\")"),
            _ => format!("any where endsWith~(f, \"{value}\")"),
        };
        let query = Query::<Named>::parse(&text).unwrap();
        let literals = query.required_literals();
        let disguised = disguise(&value, &flips, &swaps);
        let candidates = [
            disguised.clone(),
            format!("{}{disguised}{}", around.0, around.1),
            format!("{}{disguised}", around.0),
        ];
        for record in candidates {
            if !query.matches(&Record(&record)) {
                continue;
            }
            let Some(set) = &literals else { continue };
            for json in [serde_json::to_string(&record).unwrap(), escaped_json(&record)] {
                prop_assert!(
                    set.iter().any(|l| holds(&json, l)),
                    "{text}: {json} holds none of {set:?}"
                );
            }
        }
    }
}
