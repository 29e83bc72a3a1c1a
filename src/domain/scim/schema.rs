//! The resource schemas served (RFC 7643 §4, §8.7) and the validation of resources as clients
//! send them: only declared, writable attributes are kept, under their declared names, with
//! the declared types (`"False"` is read as `false`, as Entra ID sends it).

use serde_json::{Map, Value, json};

use super::{ScimError, attribute};

pub const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
pub const ENTERPRISE_SCHEMA: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
pub const GROUP_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
/// Our extension of groups: the parent group, for providers that build a department tree.
pub const GROUP_EXTENSION_SCHEMA: &str = "urn:contactsd:params:scim:schemas:extension:2.0:Group";

/// Longest string value accepted.
pub const MAX_STRING_CHARS: usize = 1024;
/// Most values of one multi-valued attribute accepted (a group's members included).
pub const MAX_VALUES: usize = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mutability {
    ReadWrite,
    ReadOnly,
    Immutable,
}

#[derive(Debug, Clone, Copy)]
pub enum Type {
    String,
    Boolean,
    Reference(&'static [&'static str]),
    Complex(&'static [Attr]),
}

/// One attribute of a schema.
#[derive(Debug, Clone, Copy)]
pub struct Attr {
    pub name: &'static str,
    pub kind: Type,
    pub multi: bool,
    pub required: bool,
    pub mutability: Mutability,
    pub unique: bool,
    pub canonical: &'static [&'static str],
    pub description: &'static str,
}

const fn attr(name: &'static str, kind: Type, description: &'static str) -> Attr {
    Attr {
        name,
        kind,
        multi: false,
        required: false,
        mutability: Mutability::ReadWrite,
        unique: false,
        canonical: &[],
        description,
    }
}

const fn many(a: Attr) -> Attr {
    Attr { multi: true, ..a }
}

const fn read_only(a: Attr) -> Attr {
    Attr {
        mutability: Mutability::ReadOnly,
        ..a
    }
}

const fn immutable(a: Attr) -> Attr {
    Attr {
        mutability: Mutability::Immutable,
        ..a
    }
}

const fn canonical(a: Attr, values: &'static [&'static str]) -> Attr {
    Attr {
        canonical: values,
        ..a
    }
}

const NAME: &[Attr] = &[
    attr("formatted", Type::String, "The full name."),
    attr("familyName", Type::String, "The family name."),
    attr("givenName", Type::String, "The given name."),
];

const EMAIL: &[Attr] = &[
    attr("value", Type::String, "The email address."),
    canonical(
        attr("type", Type::String, "work, home or other."),
        &["work", "home", "other"],
    ),
    attr("primary", Type::Boolean, "The preferred address."),
];

const PHONE: &[Attr] = &[
    attr("value", Type::String, "The phone number."),
    canonical(
        attr(
            "type",
            Type::String,
            "work, home, mobile, fax, pager or other.",
        ),
        &["work", "home", "mobile", "fax", "pager", "other"],
    ),
    attr("primary", Type::Boolean, "The preferred number."),
];

const USER_GROUP: &[Attr] = &[
    read_only(attr("value", Type::String, "The group's id.")),
    read_only(attr(
        "$ref",
        Type::Reference(&["Group"]),
        "The group's URI.",
    )),
    read_only(attr("display", Type::String, "The group's displayName.")),
    read_only(attr("type", Type::String, "Always direct.")),
];

pub const USER_ATTRS: &[Attr] = &[
    Attr {
        required: true,
        unique: true,
        ..attr(
            "userName",
            Type::String,
            "Unique in the directory, compared without regard to case.",
        )
    },
    attr("name", Type::Complex(NAME), "The user's name."),
    attr(
        "displayName",
        Type::String,
        "The member's nickname in the directory (at most 64 characters shown).",
    ),
    attr("title", Type::String, "The user's title."),
    attr(
        "active",
        Type::Boolean,
        "A member of the directory while true; false keeps the user but takes them out of \
         the directory and every group.",
    ),
    many(attr("emails", Type::Complex(EMAIL), "Email addresses.")),
    many(attr("phoneNumbers", Type::Complex(PHONE), "Phone numbers.")),
    read_only(many(attr(
        "groups",
        Type::Complex(USER_GROUP),
        "The groups the user is a direct member of.",
    ))),
];

const MANAGER: &[Attr] = &[
    attr("value", Type::String, "The manager's id."),
    attr("$ref", Type::Reference(&["User"]), "The manager's URI."),
];

pub const ENTERPRISE_ATTRS: &[Attr] = &[
    attr("employeeNumber", Type::String, "The employee number."),
    attr("department", Type::String, "The department's name."),
    attr("manager", Type::Complex(MANAGER), "The user's manager."),
];

const MEMBER: &[Attr] = &[
    immutable(attr("value", Type::String, "The id of a user or a group.")),
    immutable(attr(
        "$ref",
        Type::Reference(&["User", "Group"]),
        "The member's URI.",
    )),
    immutable(canonical(
        attr("type", Type::String, "User or Group."),
        &["User", "Group"],
    )),
];

pub const GROUP_ATTRS: &[Attr] = &[
    Attr {
        required: true,
        ..attr(
            "displayName",
            Type::String,
            "The group's name: 1 to 64 characters, no '/'.",
        )
    },
    many(attr(
        "members",
        Type::Complex(MEMBER),
        "Users in the group, and groups placed directly under it.",
    )),
];

const PARENT: &[Attr] = &[
    attr("value", Type::String, "The parent group's id."),
    attr(
        "$ref",
        Type::Reference(&["Group"]),
        "The parent group's URI.",
    ),
];

pub const GROUP_EXTENSION_ATTRS: &[Attr] = &[attr(
    "parent",
    Type::Complex(PARENT),
    "The group this group sits under; absent for a top-level group.",
)];

/// A kind of resource: its core schema and its extension.
#[derive(Debug, Clone, Copy)]
pub struct ResourceSchema {
    pub name: &'static str,
    pub endpoint: &'static str,
    pub schema: &'static str,
    pub attrs: &'static [Attr],
    pub extension: &'static str,
    pub extension_attrs: &'static [Attr],
    pub description: &'static str,
    pub extension_name: &'static str,
}

pub const USER: ResourceSchema = ResourceSchema {
    name: "User",
    endpoint: "/Users",
    schema: USER_SCHEMA,
    attrs: USER_ATTRS,
    extension: ENTERPRISE_SCHEMA,
    extension_attrs: ENTERPRISE_ATTRS,
    description: "A user of the directory's SCIM app and, while active, a member.",
    extension_name: "EnterpriseUser",
};

pub const GROUP: ResourceSchema = ResourceSchema {
    name: "Group",
    endpoint: "/Groups",
    schema: GROUP_SCHEMA,
    attrs: GROUP_ATTRS,
    extension: GROUP_EXTENSION_SCHEMA,
    extension_attrs: GROUP_EXTENSION_ATTRS,
    description: "A group of the directory's group tree.",
    extension_name: "ContactsGroup",
};

fn normalize_value(attr: &Attr, value: &Value) -> Result<Option<Value>, ScimError> {
    if value.is_null() {
        return Ok(None);
    }
    if attr.multi {
        let items: Vec<&Value> = match value {
            Value::Array(items) => items.iter().collect(),
            single => vec![single],
        };
        if items.len() > MAX_VALUES {
            return Err(ScimError::invalid_value(format!(
                "{} holds more than {MAX_VALUES} values",
                attr.name
            )));
        }
        let single = Attr {
            multi: false,
            ..*attr
        };
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            if let Some(item) = normalize_value(&single, item)?
                && !out.contains(&item)
            {
                out.push(item);
            }
        }
        let primaries = out
            .iter()
            .filter(|item| item.get("primary") == Some(&Value::Bool(true)))
            .count();
        if primaries > 1 {
            return Err(ScimError::invalid_value(format!(
                "at most one of {} may be primary",
                attr.name
            )));
        }
        return Ok((!out.is_empty()).then_some(Value::Array(out)));
    }
    match (attr.kind, value) {
        (Type::String | Type::Reference(_), Value::String(text)) => {
            if text.chars().count() > MAX_STRING_CHARS {
                return Err(ScimError::invalid_value(format!(
                    "{} is longer than {MAX_STRING_CHARS} characters",
                    attr.name
                )));
            }
            Ok(Some(Value::String(text.clone())))
        }
        (Type::Boolean, Value::Bool(flag)) => Ok(Some(Value::Bool(*flag))),
        (Type::Boolean, Value::String(text)) if text.eq_ignore_ascii_case("true") => {
            Ok(Some(Value::Bool(true)))
        }
        (Type::Boolean, Value::String(text)) if text.eq_ignore_ascii_case("false") => {
            Ok(Some(Value::Bool(false)))
        }
        (Type::Complex(subs), Value::Object(object)) => {
            let inner = normalize_attrs(object, subs)?;
            Ok((!inner.is_empty()).then_some(Value::Object(inner)))
        }
        _ => Err(ScimError::invalid_value(format!(
            "{} has the wrong type",
            attr.name
        ))),
    }
}

fn normalize_attrs(
    input: &Map<String, Value>,
    attrs: &[Attr],
) -> Result<Map<String, Value>, ScimError> {
    let mut out = Map::new();
    for attr in attrs {
        if attr.mutability == Mutability::ReadOnly {
            continue;
        }
        if let Some(value) = attribute(input, attr.name)
            && let Some(value) = normalize_value(attr, value)?
        {
            out.insert(attr.name.to_owned(), value);
        }
    }
    Ok(out)
}

/// What a client sent, reduced to the declared writable attributes of `schema` (plus
/// `externalId`), with the extension's attributes in an object under its URN. Required
/// attributes must be there.
pub fn normalize(input: &Value, schema: &ResourceSchema) -> Result<Map<String, Value>, ScimError> {
    let input = input
        .as_object()
        .ok_or_else(|| ScimError::invalid_syntax("the resource must be a JSON object"))?;
    let mut out = normalize_attrs(input, schema.attrs)?;
    match attribute(input, "externalId") {
        None | Some(Value::Null) => {}
        Some(Value::String(external)) if external.chars().count() <= MAX_STRING_CHARS => {
            out.insert("externalId".to_owned(), Value::String(external.clone()));
        }
        Some(_) => {
            return Err(ScimError::invalid_value(
                "externalId must be a short string",
            ));
        }
    }
    if let Some(extension) = attribute(input, schema.extension) {
        let extension = extension.as_object().ok_or_else(|| {
            ScimError::invalid_value(format!("{} must be an object", schema.extension))
        })?;
        let inner = normalize_attrs(extension, schema.extension_attrs)?;
        if !inner.is_empty() {
            out.insert(schema.extension.to_owned(), Value::Object(inner));
        }
    }
    for attr in schema.attrs.iter().filter(|a| a.required) {
        match out.get(attr.name) {
            Some(Value::String(text)) if !text.trim().is_empty() => {}
            _ => {
                return Err(ScimError::invalid_value(format!(
                    "{} is required",
                    attr.name
                )));
            }
        }
    }
    Ok(out)
}

fn attr_json(attr: &Attr) -> Value {
    let (kind, subs, references) = match attr.kind {
        Type::String => ("string", None, None),
        Type::Boolean => ("boolean", None, None),
        Type::Reference(types) => ("reference", None, Some(types)),
        Type::Complex(subs) => ("complex", Some(subs), None),
    };
    let mut out = json!({
        "name": attr.name,
        "type": kind,
        "multiValued": attr.multi,
        "description": attr.description,
        "required": attr.required,
        "caseExact": matches!(attr.name, "value" | "$ref") && references.is_some(),
        "mutability": match attr.mutability {
            Mutability::ReadWrite => "readWrite",
            Mutability::ReadOnly => "readOnly",
            Mutability::Immutable => "immutable",
        },
        "returned": "default",
        "uniqueness": if attr.unique { "server" } else { "none" },
    });
    if let Some(subs) = subs {
        out["subAttributes"] = subs.iter().map(attr_json).collect();
    }
    if let Some(references) = references {
        out["referenceTypes"] = json!(references);
    }
    if !attr.canonical.is_empty() {
        out["canonicalValues"] = json!(attr.canonical);
    }
    out
}

fn schema_json(id: &str, name: &str, description: &str, attrs: &[Attr]) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Schema"],
        "id": id,
        "name": name,
        "description": description,
        "attributes": attrs.iter().map(attr_json).collect::<Vec<_>>(),
        "meta": {"resourceType": "Schema", "location": format!("/Schemas/{id}")},
    })
}

/// Every schema served by `/Schemas`, as RFC 7643 §7 describes them (locations relative to
/// the service's base URL).
pub fn schemas() -> Vec<Value> {
    [USER, GROUP]
        .iter()
        .flat_map(|r| {
            [
                schema_json(r.schema, r.name, r.description, r.attrs),
                schema_json(
                    r.extension,
                    r.extension_name,
                    r.description,
                    r.extension_attrs,
                ),
            ]
        })
        .collect()
}

/// The resource types served by `/ResourceTypes` (locations relative to the base URL).
pub fn resource_types() -> Vec<Value> {
    [USER, GROUP]
        .iter()
        .map(|r| {
            json!({
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ResourceType"],
                "id": r.name,
                "name": r.name,
                "endpoint": r.endpoint,
                "description": r.description,
                "schema": r.schema,
                "schemaExtensions": [{"schema": r.extension, "required": false}],
                "meta": {"resourceType": "ResourceType", "location": format!("/ResourceTypes/{}", r.name)},
            })
        })
        .collect()
}
