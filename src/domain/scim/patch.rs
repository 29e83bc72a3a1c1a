//! PATCH (RFC 7644 §3.5.2) applied to a resource held as a JSON object.
//!
//! The forms providers send all land here: `op` in any letter case (`Replace`, `add`), an
//! operation without `path` whose value is an object of attributes (Okta's
//! `{"op":"replace","value":{"active":false}}`), paths with a value filter
//! (`members[value eq "…"]`, `emails[type eq "work"].value`), and `remove` of some values of a
//! multi-valued attribute given as a value list. The result is validated afterwards by the
//! schema ([`super::schema`]), as if it had been sent whole.

use serde_json::{Map, Value};

use super::filter::{Filter, PatchPath, matches, parse_path};
use super::{ScimError, attribute_key};

/// Most operations accepted in one PATCH request.
pub const MAX_OPERATIONS: usize = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Add,
    Remove,
    Replace,
}

/// One operation of a PATCH request, parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct Operation {
    pub op: Op,
    pub path: Option<PatchPath>,
    pub value: Option<Value>,
}

/// The operations of a `PatchOp` request body.
pub fn parse_operations(body: &Value) -> Result<Vec<Operation>, ScimError> {
    let body = body
        .as_object()
        .ok_or_else(|| ScimError::invalid_syntax("the body must be a JSON object"))?;
    let operations = super::attribute(body, "Operations")
        .and_then(Value::as_array)
        .ok_or_else(|| ScimError::invalid_syntax("Operations must be an array"))?;
    if operations.len() > MAX_OPERATIONS {
        return Err(ScimError::invalid_syntax(format!(
            "at most {MAX_OPERATIONS} operations per request"
        )));
    }
    operations
        .iter()
        .map(|operation| {
            let operation = operation
                .as_object()
                .ok_or_else(|| ScimError::invalid_syntax("an operation must be an object"))?;
            let op = match super::attribute(operation, "op").and_then(Value::as_str) {
                Some(op) if op.eq_ignore_ascii_case("add") => Op::Add,
                Some(op) if op.eq_ignore_ascii_case("remove") => Op::Remove,
                Some(op) if op.eq_ignore_ascii_case("replace") => Op::Replace,
                _ => {
                    return Err(ScimError::invalid_syntax(
                        "op must be add, remove or replace",
                    ));
                }
            };
            let path = match super::attribute(operation, "path") {
                None | Some(Value::Null) => None,
                Some(Value::String(path)) if path.trim().is_empty() => None,
                Some(Value::String(path)) => Some(parse_path(path)?),
                Some(_) => return Err(ScimError::invalid_path("path must be a string")),
            };
            let value = super::attribute(operation, "value").cloned();
            if op != Op::Remove && value.is_none() {
                return Err(ScimError::invalid_value("add and replace need a value"));
            }
            if op == Op::Remove && path.is_none() {
                return Err(ScimError::no_target("remove needs a path"));
            }
            Ok(Operation { op, path, value })
        })
        .collect()
}

/// Apply `operations` in order to `resource`. `extensions` are the schema URNs whose
/// attributes live in an object of their own under the URN.
pub fn apply(
    resource: &mut Map<String, Value>,
    operations: &[Operation],
    extensions: &[&'static str],
) -> Result<(), ScimError> {
    for operation in operations {
        match &operation.path {
            Some(path) => apply_at(
                resource,
                operation.op,
                path,
                operation.value.clone(),
                extensions,
            )?,
            None => {
                let Some(Value::Object(values)) = &operation.value else {
                    return Err(ScimError::invalid_value(
                        "without a path, the value must be an object of attributes",
                    ));
                };
                // Each attribute as if given with its own path.
                let mut apply_one = |path: &str, value: &Value| {
                    let path = parse_path(path)?;
                    apply_at(
                        resource,
                        operation.op,
                        &path,
                        Some(value.clone()),
                        extensions,
                    )
                };
                for (key, value) in values {
                    if let Some(urn) = extensions.iter().find(|urn| urn.eq_ignore_ascii_case(key))
                        && let Value::Object(inner) = value
                    {
                        // `{"urn:…:enterprise:2.0:User": {"department": "x"}}`
                        for (name, value) in inner {
                            apply_one(&format!("{urn}:{name}"), value)?;
                        }
                        continue;
                    }
                    if key.eq_ignore_ascii_case("schemas") {
                        continue;
                    }
                    // Keys may be paths themselves (`name.givenName`, `urn:…:department`).
                    apply_one(key, value)?;
                }
            }
        }
    }
    Ok(())
}

/// The object holding the path's attribute: the resource, or the extension object.
fn container<'a>(
    resource: &'a mut Map<String, Value>,
    urn: Option<&str>,
    extensions: &[&'static str],
) -> Result<&'a mut Map<String, Value>, ScimError> {
    let Some(urn) = urn else {
        return Ok(resource);
    };
    let Some(extension) = extensions.iter().find(|e| e.eq_ignore_ascii_case(urn)) else {
        // The core schema's own URN.
        return Ok(resource);
    };
    let key = attribute_key(resource, extension).unwrap_or_else(|| (*extension).to_owned());
    let slot = resource
        .entry(key)
        .or_insert_with(|| Value::Object(Map::new()));
    if !slot.is_object() {
        *slot = Value::Object(Map::new());
    }
    match slot {
        Value::Object(object) => Ok(object),
        _ => Err(ScimError::invalid_path("not an object")),
    }
}

/// The key of attribute `name` in `object`, existing or new.
fn key_of(object: &Map<String, Value>, name: &str) -> String {
    attribute_key(object, name).unwrap_or_else(|| name.to_owned())
}

/// Does a multi-valued attribute already hold `value` (same `value` sub-attribute for
/// complex values, same JSON otherwise)?
/// Sets each of the `given` sub-attributes of a complex attribute, under the name it already
/// has there in any case.
fn set_sub_attributes(current: &mut Map<String, Value>, given: Map<String, Value>) {
    for (name, value) in given {
        let sub_key = key_of(current, &name);
        current.insert(sub_key, value);
    }
}

fn holds(items: &[Value], value: &Value) -> bool {
    let key = |v: &Value| match v {
        Value::Object(object) => super::attribute(object, "value").cloned(),
        other => Some(other.clone()),
    };
    let wanted = key(value);
    wanted.is_some() && items.iter().any(|item| key(item) == wanted)
}

fn as_items(value: Value) -> Vec<Value> {
    match value {
        Value::Array(items) => items,
        other => vec![other],
    }
}

/// A value to create when a filter of the form `attr eq "x"` matched nothing (Entra ID adds
/// `emails[type eq "work"].value` to a user without a work email).
fn seed_of(filter: &Filter) -> Option<Map<String, Value>> {
    let (path, value) = super::filter::equality(filter)?;
    if path.sub.is_some() || path.urn.is_some() {
        return None;
    }
    let mut seed = Map::new();
    seed.insert(path.name.clone(), Value::String(value.to_owned()));
    Some(seed)
}

/// The extension a path names as a whole (`"path": "urn:…:enterprise:2.0:User"`), if any.
fn whole_extension(path: &PatchPath, extensions: &[&'static str]) -> Option<&'static str> {
    let urn = path.attr.urn.as_deref()?;
    if path.attr.sub.is_some() || path.filter.is_some() {
        return None;
    }
    let named = format!("{urn}:{}", path.attr.name);
    extensions
        .iter()
        .find(|e| e.eq_ignore_ascii_case(&named))
        .copied()
}

/// An operation on a whole extension: its attributes one by one, or all of them removed.
fn apply_extension(
    resource: &mut Map<String, Value>,
    op: Op,
    urn: &str,
    value: Option<Value>,
    extensions: &[&'static str],
) -> Result<(), ScimError> {
    if op == Op::Remove {
        if let Some(key) = attribute_key(resource, urn) {
            resource.remove(&key);
        }
        return Ok(());
    }
    let Some(Value::Object(values)) = value else {
        return Err(ScimError::invalid_value(
            "an extension's value must be an object",
        ));
    };
    if op == Op::Replace
        && let Some(key) = attribute_key(resource, urn)
    {
        resource.remove(&key);
    }
    for (name, value) in values {
        if name.eq_ignore_ascii_case("schemas") {
            continue;
        }
        let path = parse_path(&format!("{urn}:{name}"))?;
        apply_at(resource, op, &path, Some(value), extensions)?;
    }
    Ok(())
}

fn apply_at(
    resource: &mut Map<String, Value>,
    op: Op,
    path: &PatchPath,
    value: Option<Value>,
    extensions: &[&'static str],
) -> Result<(), ScimError> {
    if let Some(urn) = whole_extension(path, extensions) {
        return apply_extension(resource, op, urn, value, extensions);
    }
    let object = container(resource, path.attr.urn.as_deref(), extensions)?;
    let key = key_of(object, &path.attr.name);
    if let Some(filter) = &path.filter {
        return apply_filtered(object, &key, op, filter, path.sub.as_deref(), value);
    }
    if let Some(sub) = &path.attr.sub {
        // `name.givenName`: a sub-attribute of a complex attribute (of every value, when it
        // is multi-valued).
        let slot = object
            .entry(key)
            .or_insert_with(|| Value::Object(Map::new()));
        let targets: Vec<&mut Map<String, Value>> = match slot {
            Value::Object(inner) => vec![inner],
            Value::Array(items) => items.iter_mut().filter_map(Value::as_object_mut).collect(),
            _ => {
                return Err(ScimError::invalid_path(
                    "the attribute has no sub-attributes",
                ));
            }
        };
        for inner in targets {
            let sub_key = key_of(inner, sub);
            match (op, &value) {
                (Op::Remove, _) => {
                    inner.remove(&sub_key);
                }
                (_, Some(value)) => {
                    inner.insert(sub_key, value.clone());
                }
                (_, None) => {}
            }
        }
        return Ok(());
    }
    match op {
        Op::Remove => {
            match (object.get_mut(&key), value) {
                // `{"op":"remove","path":"members","value":[{"value":"42"}]}`
                (Some(Value::Array(items)), Some(value)) => {
                    let removed = as_items(value);
                    items.retain(|item| !holds(&removed, item));
                }
                _ => {
                    object.remove(&key);
                }
            }
            Ok(())
        }
        Op::Replace => {
            if let Some(value) = value {
                match (object.get_mut(&key), value) {
                    // Replacing a complex attribute replaces the sub-attributes given.
                    (Some(Value::Object(current)), Value::Object(given)) => {
                        set_sub_attributes(current, given);
                    }
                    (_, value) => {
                        object.insert(key, value);
                    }
                }
            }
            Ok(())
        }
        Op::Add => {
            let Some(value) = value else { return Ok(()) };
            match (object.get_mut(&key), value) {
                (Some(Value::Array(items)), value) => {
                    for item in as_items(value) {
                        if !holds(items, &item) {
                            items.push(item);
                        }
                    }
                }
                (Some(Value::Object(current)), Value::Object(given)) => {
                    set_sub_attributes(current, given);
                }
                (_, value) => {
                    object.insert(key, value);
                }
            }
            Ok(())
        }
    }
}

fn apply_filtered(
    object: &mut Map<String, Value>,
    key: &str,
    op: Op,
    filter: &Filter,
    sub: Option<&str>,
    value: Option<Value>,
) -> Result<(), ScimError> {
    let items = match object.get_mut(key) {
        Some(Value::Array(items)) => items,
        _ => {
            if op == Op::Remove {
                return Ok(());
            }
            object.insert(key.to_owned(), Value::Array(Vec::new()));
            match object.get_mut(key) {
                Some(Value::Array(items)) => items,
                _ => return Err(ScimError::invalid_path("not a multi-valued attribute")),
            }
        }
    };
    let matched: Vec<usize> = items
        .iter()
        .enumerate()
        .filter(|(_, item)| item.as_object().is_some_and(|o| matches(filter, o)))
        .map(|(at, _)| at)
        .collect();
    match op {
        Op::Remove => {
            let mut at = 0;
            items.retain_mut(|item| {
                let hit = matched.contains(&at);
                at += 1;
                match (hit, sub, item.as_object_mut()) {
                    (true, Some(sub), Some(inner)) => {
                        let sub_key = key_of(inner, sub);
                        inner.remove(&sub_key);
                        true
                    }
                    (true, _, _) => false,
                    (false, _, _) => true,
                }
            });
            Ok(())
        }
        Op::Add | Op::Replace => {
            let Some(value) = value else { return Ok(()) };
            if matched.is_empty() {
                let mut seed = seed_of(filter)
                    .ok_or_else(|| ScimError::no_target("the value filter matches no value"))?;
                match (sub, value) {
                    (Some(sub), value) => {
                        seed.insert(sub.to_owned(), value);
                    }
                    (None, Value::Object(given)) => seed.extend(given),
                    (None, _) => {
                        return Err(ScimError::invalid_value("the value must be an object"));
                    }
                }
                items.push(Value::Object(seed));
                return Ok(());
            }
            for at in matched {
                let Some(inner) = items[at].as_object_mut() else {
                    continue;
                };
                match (sub, &value) {
                    (Some(sub), value) => {
                        let sub_key = key_of(inner, sub);
                        inner.insert(sub_key, value.clone());
                    }
                    (None, Value::Object(given)) => {
                        if op == Op::Replace {
                            inner.clear();
                        }
                        inner.extend(given.clone());
                    }
                    (None, _) => {
                        return Err(ScimError::invalid_value("the value must be an object"));
                    }
                }
            }
            Ok(())
        }
    }
}
