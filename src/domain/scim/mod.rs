//! SCIM 2.0 (RFC 7643, RFC 7644) without I/O: the filter and path grammar ([`filter`]), PATCH
//! applied to a resource ([`patch`]), and the resource schemas with the validation of what a
//! client sends ([`schema`]).
//!
//! Resources are handled as JSON objects with the attribute names of their schema; the service
//! maps them onto users, members and groups.

pub mod filter;
pub mod patch;
pub mod schema;

#[cfg(test)]
mod filter_properties;

/// A refused SCIM request, as RFC 7644 §3.12 answers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScimError {
    pub status: u16,
    /// `scimType` (only for 400, 409 and 413 answers).
    pub scim_type: Option<&'static str>,
    pub detail: String,
}

impl ScimError {
    fn bad(scim_type: &'static str, detail: impl Into<String>) -> ScimError {
        ScimError {
            status: 400,
            scim_type: Some(scim_type),
            detail: detail.into(),
        }
    }

    pub fn invalid_filter(detail: impl Into<String>) -> ScimError {
        ScimError::bad("invalidFilter", detail)
    }

    pub fn invalid_path(detail: impl Into<String>) -> ScimError {
        ScimError::bad("invalidPath", detail)
    }

    pub fn invalid_value(detail: impl Into<String>) -> ScimError {
        ScimError::bad("invalidValue", detail)
    }

    pub fn invalid_syntax(detail: impl Into<String>) -> ScimError {
        ScimError::bad("invalidSyntax", detail)
    }

    pub fn no_target(detail: impl Into<String>) -> ScimError {
        ScimError::bad("noTarget", detail)
    }

    pub fn mutability(detail: impl Into<String>) -> ScimError {
        ScimError::bad("mutability", detail)
    }

    pub fn uniqueness(detail: impl Into<String>) -> ScimError {
        ScimError {
            status: 409,
            scim_type: Some("uniqueness"),
            detail: detail.into(),
        }
    }

    pub fn not_found(detail: impl Into<String>) -> ScimError {
        ScimError {
            status: 404,
            scim_type: None,
            detail: detail.into(),
        }
    }

    pub fn status(status: u16, detail: impl Into<String>) -> ScimError {
        ScimError {
            status,
            scim_type: None,
            detail: detail.into(),
        }
    }
}

/// The JSON value of `object`'s attribute `name`, matched without regard to case (RFC 7643
/// §2.1: attribute names are case-insensitive).
pub fn attribute<'a>(
    object: &'a serde_json::Map<String, serde_json::Value>,
    name: &str,
) -> Option<&'a serde_json::Value> {
    object.get(name).or_else(|| {
        object
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value)
    })
}

/// The key under which `object` holds attribute `name`, whatever its case.
pub fn attribute_key(
    object: &serde_json::Map<String, serde_json::Value>,
    name: &str,
) -> Option<String> {
    object
        .keys()
        .find(|key| key.eq_ignore_ascii_case(name))
        .cloned()
}
