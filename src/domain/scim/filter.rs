//! The filter and attribute-path grammar of RFC 7644 §3.4.2.2 and §3.5.2, and filter
//! evaluation over a resource held as JSON.
//!
//! Operators and keywords are case-insensitive; attribute names may carry a schema URN
//! (`urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department`) and a
//! sub-attribute (`name.familyName`, `meta.lastModified`). Values are JSON literals
//! (`"…"`, numbers, `true`, `false`, `null`).

use chrono::DateTime;
use serde_json::{Map, Value};

use super::{ScimError, attribute};

/// Longest filter or path accepted, in bytes.
pub const MAX_FILTER_LEN: usize = 4096;
/// Deepest nesting of parentheses, `not` and value filters accepted.
const MAX_NESTING: usize = 32;

/// An attribute named in a filter or a path.
#[derive(Debug, Clone, PartialEq)]
pub struct AttrPath {
    /// The schema URN it was qualified with, if any.
    pub urn: Option<String>,
    pub name: String,
    pub sub: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompareOp {
    Eq,
    Ne,
    Co,
    Sw,
    Ew,
    Gt,
    Ge,
    Lt,
    Le,
}

impl CompareOp {
    fn parse(word: &str) -> Option<CompareOp> {
        Some(match word.to_ascii_lowercase().as_str() {
            "eq" => CompareOp::Eq,
            "ne" => CompareOp::Ne,
            "co" => CompareOp::Co,
            "sw" => CompareOp::Sw,
            "ew" => CompareOp::Ew,
            "gt" => CompareOp::Gt,
            "ge" => CompareOp::Ge,
            "lt" => CompareOp::Lt,
            "le" => CompareOp::Le,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    And(Box<Filter>, Box<Filter>),
    Or(Box<Filter>, Box<Filter>),
    Not(Box<Filter>),
    Present(AttrPath),
    Compare(AttrPath, CompareOp, Value),
    /// `emails[type eq "work" and value co "@example.com"]`: some value of the multi-valued
    /// attribute matches the inner filter.
    Values(AttrPath, Box<Filter>),
}

/// The target of a PATCH operation: `attr`, `attr.sub`, `attr[filter]` or `attr[filter].sub`.
#[derive(Debug, Clone, PartialEq)]
pub struct PatchPath {
    pub attr: AttrPath,
    pub filter: Option<Filter>,
    /// Sub-attribute after a value filter.
    pub sub: Option<String>,
}

struct Parser<'a> {
    input: &'a str,
    at: usize,
    depth: usize,
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '$' | ':' | '.')
}

impl<'a> Parser<'a> {
    fn new(input: &'a str) -> Result<Parser<'a>, ScimError> {
        if input.len() > MAX_FILTER_LEN {
            return Err(ScimError::invalid_filter("the filter is too long"));
        }
        Ok(Parser {
            input,
            at: 0,
            depth: 0,
        })
    }

    fn rest(&self) -> &'a str {
        &self.input[self.at..]
    }

    fn skip_spaces(&mut self) {
        let rest = self.rest();
        self.at += rest.len() - rest.trim_start().len();
    }

    fn error(&self, what: &str) -> ScimError {
        ScimError::invalid_filter(format!("{what} at character {}", self.at + 1))
    }

    fn eat(&mut self, c: char) -> bool {
        self.skip_spaces();
        if self.rest().starts_with(c) {
            self.at += c.len_utf8();
            true
        } else {
            false
        }
    }

    /// The next word made of name characters, without consuming it.
    fn peek_word(&self) -> &'a str {
        let rest = self.rest().trim_start();
        let end = rest.find(|c: char| !is_name_char(c)).unwrap_or(rest.len());
        &rest[..end]
    }

    fn word(&mut self) -> &'a str {
        self.skip_spaces();
        let word = self.peek_word();
        self.at += word.len();
        word
    }

    fn keyword(&mut self, keyword: &str) -> bool {
        let word = self.peek_word();
        if word.eq_ignore_ascii_case(keyword) {
            // A keyword must be followed by a space or a parenthesis.
            self.skip_spaces();
            let after = &self.rest()[word.len()..];
            if after.is_empty() || after.starts_with([' ', '(']) {
                self.at += word.len();
                return true;
            }
        }
        false
    }

    fn enter(&mut self) -> Result<(), ScimError> {
        self.depth += 1;
        if self.depth > MAX_NESTING {
            return Err(self.error("the filter is nested too deeply"));
        }
        Ok(())
    }

    fn or(&mut self) -> Result<Filter, ScimError> {
        let mut left = self.and()?;
        while self.keyword("or") {
            let right = self.and()?;
            left = Filter::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Filter, ScimError> {
        let mut left = self.unary()?;
        while self.keyword("and") {
            let right = self.unary()?;
            left = Filter::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Filter, ScimError> {
        self.enter()?;
        let filter = if self.keyword("not") {
            if !self.eat('(') {
                return Err(self.error("expected ( after not"));
            }
            let inner = self.or()?;
            if !self.eat(')') {
                return Err(self.error("expected )"));
            }
            Filter::Not(Box::new(inner))
        } else if self.eat('(') {
            let inner = self.or()?;
            if !self.eat(')') {
                return Err(self.error("expected )"));
            }
            inner
        } else {
            let path = self.attr_path()?;
            if self.eat('[') {
                let inner = self.or()?;
                if !self.eat(']') {
                    return Err(self.error("expected ]"));
                }
                Filter::Values(path, Box::new(inner))
            } else {
                let op = self.word();
                if op.eq_ignore_ascii_case("pr") {
                    Filter::Present(path)
                } else {
                    let op = CompareOp::parse(op)
                        .ok_or_else(|| self.error("expected an operator (eq, ne, co, …, pr)"))?;
                    let value = self.value()?;
                    Filter::Compare(path, op, value)
                }
            }
        };
        self.depth -= 1;
        Ok(filter)
    }

    fn attr_path(&mut self) -> Result<AttrPath, ScimError> {
        let word = self.word();
        attr_path(word).ok_or_else(|| self.error("expected an attribute name"))
    }

    fn value(&mut self) -> Result<Value, ScimError> {
        self.skip_spaces();
        let rest = self.rest();
        if rest.starts_with('"') {
            let mut stream = serde_json::Deserializer::from_str(rest).into_iter::<Value>();
            let value = match stream.next() {
                Some(Ok(value)) => value,
                _ => return Err(self.error("expected a JSON string")),
            };
            self.at += stream.byte_offset();
            return Ok(value);
        }
        let end = rest
            .find(|c: char| c.is_whitespace() || c == ')' || c == ']')
            .unwrap_or(rest.len());
        let literal = &rest[..end];
        let value = match literal.to_ascii_lowercase().as_str() {
            "true" => Value::Bool(true),
            "false" => Value::Bool(false),
            "null" => Value::Null,
            _ => match serde_json::from_str::<serde_json::Number>(literal) {
                Ok(number) => Value::Number(number),
                Err(_) => return Err(self.error("expected a value")),
            },
        };
        self.at += end;
        Ok(value)
    }

    fn finish(&mut self) -> Result<(), ScimError> {
        self.skip_spaces();
        if self.at == self.input.len() {
            Ok(())
        } else {
            Err(self.error("unexpected text"))
        }
    }
}

/// `urn:…:name.sub`, `name.sub` or `name`.
fn attr_path(word: &str) -> Option<AttrPath> {
    let (urn, rest) = if word.len() > 4 && word[..4].eq_ignore_ascii_case("urn:") {
        let at = word.rfind(':')?;
        (Some(word[..at].to_owned()), &word[at + 1..])
    } else {
        (None, word)
    };
    let (name, sub) = match rest.split_once('.') {
        Some((name, sub)) => (name, Some(sub)),
        None => (rest, None),
    };
    let valid = |part: &str| {
        part.chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '$')
            && part
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '$'))
    };
    if !valid(name) || sub.is_some_and(|s| !valid(s)) {
        return None;
    }
    Some(AttrPath {
        urn,
        name: name.to_owned(),
        sub: sub.map(str::to_owned),
    })
}

/// Parse a `filter` query parameter.
pub fn parse_filter(input: &str) -> Result<Filter, ScimError> {
    let mut parser = Parser::new(input)?;
    let filter = parser.or()?;
    parser.finish()?;
    Ok(filter)
}

/// Parse the `path` of a PATCH operation.
pub fn parse_path(input: &str) -> Result<PatchPath, ScimError> {
    let invalid = |e: ScimError| ScimError::invalid_path(e.detail);
    let mut parser = Parser::new(input).map_err(invalid)?;
    let attr = parser.attr_path().map_err(invalid)?;
    let mut path = PatchPath {
        attr,
        filter: None,
        sub: None,
    };
    if parser.eat('[') {
        path.filter = Some(parser.or().map_err(invalid)?);
        if !parser.eat(']') {
            return Err(ScimError::invalid_path("expected ]"));
        }
        if path.attr.sub.is_some() {
            return Err(ScimError::invalid_path(
                "a value filter follows an attribute",
            ));
        }
        if parser.rest().starts_with('.') {
            parser.at += 1;
            let sub = parser.word();
            if attr_path(sub).is_none_or(|p| p.sub.is_some() || p.urn.is_some()) {
                return Err(ScimError::invalid_path("expected a sub-attribute"));
            }
            path.sub = Some(sub.to_owned());
        }
    }
    parser.finish().map_err(invalid)?;
    Ok(path)
}

// ----- evaluation ----------------------------------------------------------------------------

/// Attributes compared exactly (RFC 7643 `caseExact`); every other string compares without
/// regard to case.
fn case_exact(name: &str) -> bool {
    ["id", "externalId", "$ref"]
        .iter()
        .any(|exact| exact.eq_ignore_ascii_case(name))
}

/// The object an attribute path starts from: the resource, or its extension object when the
/// path names the extension's URN.
fn container<'a>(resource: &'a Map<String, Value>, urn: Option<&str>) -> &'a Map<String, Value> {
    match urn.and_then(|urn| attribute(resource, urn)) {
        Some(Value::Object(extension)) => extension,
        _ => resource,
    }
}

/// Every value the path designates (the values of a multi-valued attribute one by one; for a
/// multi-valued complex attribute without a sub-attribute, its `value`s).
fn values_at<'a>(resource: &'a Map<String, Value>, path: &AttrPath) -> Vec<&'a Value> {
    let Some(top) = attribute(container(resource, path.urn.as_deref()), &path.name) else {
        return Vec::new();
    };
    let items: Vec<&Value> = match top {
        Value::Array(items) => items.iter().collect(),
        other => vec![other],
    };
    let sub = path.sub.as_deref();
    items
        .into_iter()
        .filter_map(|item| match (item, sub) {
            (Value::Object(object), Some(sub)) => attribute(object, sub),
            (Value::Object(object), None) => attribute(object, "value"),
            (_, Some(_)) => None,
            (value, None) => Some(value),
        })
        .collect()
}

fn as_time(text: &str) -> Option<i64> {
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.timestamp_millis())
}

fn compare(actual: &Value, op: CompareOp, expected: &Value, exact: bool) -> bool {
    use std::cmp::Ordering;
    let ordering: Option<Ordering> = match (actual, expected) {
        (Value::String(a), Value::String(e)) => {
            if let (Some(a), Some(e)) = (as_time(a), as_time(e)) {
                Some(a.cmp(&e))
            } else {
                let (a, e) = if exact {
                    (a.clone(), e.clone())
                } else {
                    (a.to_lowercase(), e.to_lowercase())
                };
                match op {
                    CompareOp::Co => return a.contains(&e),
                    CompareOp::Sw => return a.starts_with(&e),
                    CompareOp::Ew => return a.ends_with(&e),
                    _ => Some(a.cmp(&e)),
                }
            }
        }
        (Value::Number(a), Value::Number(e)) => a
            .as_f64()
            .zip(e.as_f64())
            .and_then(|(a, e)| a.partial_cmp(&e)),
        (Value::Bool(a), Value::Bool(e)) => {
            return match op {
                CompareOp::Eq => a == e,
                CompareOp::Ne => a != e,
                _ => false,
            };
        }
        _ => None,
    };
    match (op, ordering) {
        (CompareOp::Eq, Some(o)) => o == Ordering::Equal,
        (CompareOp::Ne, Some(o)) => o != Ordering::Equal,
        (CompareOp::Ne, None) => true,
        (CompareOp::Gt, Some(o)) => o == Ordering::Greater,
        (CompareOp::Ge, Some(o)) => o != Ordering::Less,
        (CompareOp::Lt, Some(o)) => o == Ordering::Less,
        (CompareOp::Le, Some(o)) => o != Ordering::Greater,
        _ => false,
    }
}

fn present(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::String(s) => !s.is_empty(),
        Value::Array(items) => !items.is_empty(),
        Value::Object(object) => !object.is_empty(),
        _ => true,
    }
}

/// Does `resource` (or a value of a multi-valued complex attribute) match `filter`?
pub fn matches(filter: &Filter, resource: &Map<String, Value>) -> bool {
    match filter {
        Filter::And(left, right) => matches(left, resource) && matches(right, resource),
        Filter::Or(left, right) => matches(left, resource) || matches(right, resource),
        Filter::Not(inner) => !matches(inner, resource),
        Filter::Present(path) => values_at(resource, path).into_iter().any(present),
        Filter::Compare(path, op, expected) => {
            let exact = case_exact(path.sub.as_deref().unwrap_or(&path.name));
            let values = values_at(resource, path);
            if values.is_empty() {
                // An absent attribute equals only null.
                return match op {
                    CompareOp::Eq => expected.is_null(),
                    CompareOp::Ne => !expected.is_null(),
                    _ => false,
                };
            }
            match op {
                // "ne" holds when no value equals.
                CompareOp::Ne => !values
                    .iter()
                    .any(|v| compare(v, CompareOp::Eq, expected, exact)),
                _ => values.iter().any(|v| compare(v, *op, expected, exact)),
            }
        }
        Filter::Values(path, inner) => {
            let Some(Value::Array(items)) =
                attribute(container(resource, path.urn.as_deref()), &path.name)
            else {
                return match attribute(container(resource, path.urn.as_deref()), &path.name) {
                    Some(Value::Object(object)) => matches(inner, object),
                    _ => false,
                };
            };
            items.iter().any(|item| match item {
                Value::Object(object) => matches(inner, object),
                _ => false,
            })
        }
    }
}

/// For a filter of the form `attr eq "value"` (what providers send to look a user up by
/// name), that attribute and value.
pub fn equality(filter: &Filter) -> Option<(&AttrPath, &str)> {
    match filter {
        Filter::Compare(path, CompareOp::Eq, Value::String(value)) => Some((path, value)),
        _ => None,
    }
}
