//! Properties of the filter grammar: any filter written out parses back to itself, whatever
//! the letter case of its keywords and the spacing; evaluation follows boolean logic; and no
//! input makes the parser panic.

use proptest::prelude::*;
use serde_json::{Map, Value, json};

use super::filter::{AttrPath, CompareOp, Filter, matches, parse_filter, parse_path};

const OPS: [(CompareOp, &str); 9] = [
    (CompareOp::Eq, "eq"),
    (CompareOp::Ne, "ne"),
    (CompareOp::Co, "co"),
    (CompareOp::Sw, "sw"),
    (CompareOp::Ew, "ew"),
    (CompareOp::Gt, "gt"),
    (CompareOp::Ge, "ge"),
    (CompareOp::Lt, "lt"),
    (CompareOp::Le, "le"),
];

fn op_name(op: CompareOp) -> &'static str {
    OPS.iter().find(|(o, _)| *o == op).map_or("eq", |(_, n)| n)
}

fn path() -> impl Strategy<Value = AttrPath> {
    (
        prop::option::of(Just(
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User".to_owned(),
        )),
        "[a-zA-Z][a-zA-Z0-9_]{0,8}",
        prop::option::of("[a-zA-Z][a-zA-Z0-9]{0,6}"),
    )
        .prop_map(|(urn, name, sub)| AttrPath { urn, name, sub })
}

fn value() -> impl Strategy<Value = Value> {
    prop_oneof![
        ".{0,12}".prop_map(Value::String),
        any::<i32>().prop_map(|n| json!(n)),
        any::<bool>().prop_map(Value::Bool),
        Just(Value::Null),
    ]
}

fn filter() -> impl Strategy<Value = Filter> {
    let leaf = prop_oneof![
        path().prop_map(Filter::Present),
        (path(), 0..OPS.len(), value()).prop_map(|(p, op, v)| Filter::Compare(p, OPS[op].0, v)),
    ];
    leaf.prop_recursive(4, 24, 2, |inner| {
        prop_oneof![
            (inner.clone(), inner.clone()).prop_map(|(a, b)| Filter::And(Box::new(a), Box::new(b))),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| Filter::Or(Box::new(a), Box::new(b))),
            inner.clone().prop_map(|a| Filter::Not(Box::new(a))),
            ("[a-z]{1,6}", inner).prop_map(|(name, a)| Filter::Values(
                AttrPath {
                    urn: None,
                    name,
                    sub: None
                },
                Box::new(a)
            )),
        ]
    })
}

fn write_path(p: &AttrPath) -> String {
    let mut out = String::new();
    if let Some(urn) = &p.urn {
        out.push_str(urn);
        out.push(':');
    }
    out.push_str(&p.name);
    if let Some(sub) = &p.sub {
        out.push('.');
        out.push_str(sub);
    }
    out
}

/// Written out fully parenthesized, keywords in the given case.
fn write(f: &Filter, upper: bool) -> String {
    let kw = |k: &str| {
        if upper {
            k.to_uppercase()
        } else {
            k.to_owned()
        }
    };
    match f {
        Filter::And(a, b) => format!("({}) {} ({})", write(a, upper), kw("and"), write(b, upper)),
        Filter::Or(a, b) => format!("({})  {}  ({})", write(a, upper), kw("or"), write(b, upper)),
        Filter::Not(a) => format!("{} ({})", kw("not"), write(a, upper)),
        Filter::Present(p) => format!("{} {}", write_path(p), kw("pr")),
        Filter::Compare(p, op, v) => format!("{} {} {}", write_path(p), kw(op_name(*op)), v),
        Filter::Values(p, a) => format!("{}[{}]", write_path(p), write(a, upper)),
    }
}

proptest! {
    #[test]
    fn a_written_filter_parses_back_to_itself(f in filter(), upper in any::<bool>()) {
        let text = write(&f, upper);
        prop_assert_eq!(parse_filter(&text), Ok(f), "{}", text);
    }

    #[test]
    fn not_negates_and_and_or_follow_boolean_logic(
        a in filter(),
        b in filter(),
        resource in prop::collection::btree_map("[a-z]{1,3}", value(), 0..4),
    ) {
        let resource: Map<String, Value> = resource.into_iter().collect();
        let (ma, mb) = (matches(&a, &resource), matches(&b, &resource));
        prop_assert_eq!(matches(&Filter::Not(Box::new(a.clone())), &resource), !ma);
        prop_assert_eq!(matches(&Filter::And(Box::new(a.clone()), Box::new(b.clone())), &resource), ma && mb);
        prop_assert_eq!(matches(&Filter::Or(Box::new(a), Box::new(b)), &resource), ma || mb);
    }

    #[test]
    fn no_input_makes_the_parsers_panic(text in ".{0,80}") {
        let _ = parse_filter(&text);
        let _ = parse_path(&text);
    }
}

#[test]
fn every_operator_compares_as_rfc_7644_says() {
    let user = json!({
        "userName": "Ada@Example.com",
        "externalId": "E-7",
        "emails": [{"value": "ada@work.example", "type": "work"}, {"value": "ada@home.example"}],
        "active": true,
        "meta": {"lastModified": "2026-01-02T03:04:05Z"},
    });
    let user = user.as_object().expect("object");
    let cases = [
        ("userName eq \"ada@example.com\"", true),
        ("userName ne \"ada@example.com\"", false),
        ("userName co \"EXAMPLE\"", true),
        ("userName sw \"ada\"", true),
        ("userName ew \".com\"", true),
        ("userName gt \"a\"", true),
        ("userName ge \"ada@example.com\"", true),
        ("userName lt \"b\"", true),
        ("userName le \"ada\"", false),
        ("externalId eq \"e-7\"", false),
        ("emails.value co \"@home\"", true),
        ("emails[type eq \"work\" and value sw \"ada@w\"]", true),
        ("emails[type eq \"home\"]", false),
        ("active eq true and not (userName pr)", false),
        ("title pr or active eq true", true),
        ("meta.lastModified gt \"2026-01-01T00:00:00Z\"", true),
        ("meta.lastModified lt \"2026-01-02T04:04:05+01:00\"", false),
        (
            "(userName eq \"x\" or externalId eq \"E-7\") and active eq true",
            true,
        ),
    ];
    for (text, expected) in cases {
        let filter = parse_filter(text).unwrap_or_else(|e| panic!("{text}: {e:?}"));
        assert_eq!(matches(&filter, user), expected, "{text}");
    }
    for bad in [
        "userName",
        "userName eq",
        "userName xx \"a\"",
        "(userName pr",
        "userName pr)",
    ] {
        assert!(parse_filter(bad).is_err(), "{bad}");
    }
}

#[test]
fn patch_paths_take_value_filters_and_sub_attributes() {
    let path = parse_path("emails[type eq \"work\"].value").expect("path");
    assert_eq!(path.attr.name, "emails");
    assert_eq!(path.sub.as_deref(), Some("value"));
    assert!(path.filter.is_some());
    let path =
        parse_path("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value")
            .expect("path");
    assert_eq!(
        path.attr.urn.as_deref(),
        Some("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User")
    );
    assert_eq!(path.attr.sub.as_deref(), Some("value"));
    assert!(parse_path("members[value eq \"1\"").is_err());
}
