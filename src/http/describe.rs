//! Building blocks of every operation's description, shared by the resources (which declare
//! their operations) and the document (which collects them): the envelope's schemas
//! ([`Success`], [`Empty`], [`Failure`]), the failures of an operation declared as error values
//! ([`failures!`]) and rendered by the real error mapping ([`super::envelope`]), and the failure
//! sets several operations share.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::marker::PhantomData;

use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde_json::{Value, json};
use utoipa::openapi::example::ExampleBuilder;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::schema::{
    AllOfBuilder, ArrayBuilder, ObjectBuilder, Ref, Schema, SchemaFormat, SchemaType, Type,
};
use utoipa::openapi::{ContentBuilder, KnownFormat, RefOr, ResponseBuilder};
use utoipa::{PartialSchema, ToSchema};

use super::envelope::{self, ApiError};
use crate::domain::values::{
    MAX_AVATAR_CHARS, MAX_GROUP_ID, MAX_NAME_CHARS, MAX_OPENID_CHARS, Role,
};
use crate::service::ServiceError;

/// The request id shown in examples.
const EXAMPLE_REQUEST_ID: &str = "8f0c5b1e-6a0f-4c55-9d1e-2f7b8c3a9d40";
// ----- schemas of the envelope ----------------------------------------------------------------

fn string_enum<I: IntoIterator<Item = S>, S: Into<Value>>(values: I) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(values))
}

fn request_id_schema() -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .format(Some(SchemaFormat::Custom("uuid".to_owned())))
        .description(Some(
            "The request's id, also in the `x-request-id` header (an incoming valid UUID there \
             is reused).",
        ))
}

/// `data: {}`: a write that returns nothing.
pub struct Empty;

impl PartialSchema for Empty {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .max_properties(Some(0))
            .description(Some("Always `{}`."))
            .examples([json!({})])
            .into()
    }
}

impl ToSchema for Empty {}

/// The envelope of a successful answer whose `data` is a `T`.
pub struct Success<T>(PhantomData<T>);

/// The example of a schema, if it has one.
pub fn example_of(schema: &RefOr<Schema>) -> Option<Value> {
    match schema {
        RefOr::T(Schema::Object(object)) => object
            .examples
            .first()
            .cloned()
            .or_else(|| object.example.clone()),
        RefOr::T(Schema::AllOf(all_of)) => all_of
            .examples
            .first()
            .cloned()
            .or_else(|| all_of.example.clone()),
        _ => None,
    }
}

impl<T: ToSchema> PartialSchema for Success<T> {
    fn schema() -> RefOr<Schema> {
        let data: RefOr<Schema> = Ref::from_schema_name(T::name()).into();
        let example = example_of(&T::schema()).map(|data| {
            json!({"code": "OK", "error": {"type": ""}, "data": data, "request_id": EXAMPLE_REQUEST_ID})
        });
        ObjectBuilder::new()
            .examples(example)
            .schema_type(Type::Object)
            .description(Some(
                "A successful answer: `code` is `OK` and `error.type` is empty.",
            ))
            .property("code", string_enum(["OK"]))
            .required("code")
            .property(
                "error",
                ObjectBuilder::new()
                    .schema_type(Type::Object)
                    .property("type", string_enum([""]))
                    .required("type"),
            )
            .required("error")
            .property("data", data)
            .required("data")
            .property("request_id", request_id_schema())
            .required("request_id")
            .into()
    }
}

impl<T: ToSchema> ToSchema for Success<T> {
    fn name() -> Cow<'static, str> {
        Cow::Owned(format!("{}Answer", T::name()))
    }

    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        schemas.push((T::name().into_owned(), T::schema()));
        T::schemas(schemas);
    }
}

/// The envelope of a failure. Each operation narrows `code` and `error.type` to the values it
/// can answer with at each status.
pub struct Failure;

impl PartialSchema for Failure {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .description(Some(
                "A failed answer: `code` is the class, `error.type` the precise reason, \
                 `error.message` a sentence for people (an extension), and `data` is `{}` \
                 (a refused sync puts its details there).",
            ))
            .property(
                "code",
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .description(Some(
                        "The class of the failure (one of the reference service's codes).",
                    )),
            )
            .required("code")
            .property(
                "error",
                ObjectBuilder::new()
                    .schema_type(Type::Object)
                    .property(
                        "type",
                        ObjectBuilder::new()
                            .schema_type(Type::String)
                            .description(Some("The precise reason.")),
                    )
                    .required("type")
                    .property(
                        "message",
                        ObjectBuilder::new()
                            .schema_type(Type::String)
                            .description(Some("A human-readable sentence; no internal details.")),
                    )
                    .required("message"),
            )
            .required("error")
            .property("data", ObjectBuilder::new().schema_type(Type::Object))
            .required("data")
            .property("request_id", request_id_schema())
            .required("request_id")
            .into()
    }
}

impl ToSchema for Failure {}

// ----- the validated values of `domain::values`, with their limits -------------------------

/// Control characters (Unicode `Cc`, what `char::is_control` refuses), as a character class
/// body of a pattern (ECMA-262 and Python alike read `\uXXXX`).
const CONTROL: &str = r"\u0000-\u001f\u007f-\u009f";

/// A string of `min..=max` characters without control characters and without any of `also`;
/// `trimmed`: at least one of them is not whitespace (the value is trimmed, then must be
/// non-empty).
fn text(min: usize, max: usize, also: &str, trimmed: bool) -> ObjectBuilder {
    let allowed = format!("[^{CONTROL}{also}]");
    let pattern = if trimmed {
        format!(r"^{allowed}*[^\s{CONTROL}{also}]{allowed}*$")
    } else {
        format!("^{allowed}*$")
    };
    ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length((min > 0).then_some(min))
        .max_length(Some(max))
        .pattern(Some(pattern))
}

/// Declares schema types for the string values `domain::values` checks, built from its limits.
macro_rules! text_schemas {
    ($($(#[$doc:meta])* $name:ident = $schema:expr;)*) => {$(
        $(#[$doc])*
        pub struct $name;

        impl PartialSchema for $name {
            fn schema() -> RefOr<Schema> {
                $schema.into()
            }
        }

        impl ToSchema for $name {}
    )*};
}

text_schemas! {
    /// A group's name ([`crate::domain::values::GroupName`]): 1..64 characters after
    /// trimming, no `/`, no control characters.
    GroupName = text(1, MAX_NAME_CHARS, "/", true);
    /// An org's name ([`crate::domain::values::OrgName`]).
    OrgName = text(1, MAX_NAME_CHARS, "", true);
    /// A remote id ([`crate::domain::values::RemoteId`]).
    RemoteId = text(0, MAX_NAME_CHARS, "", false);
    /// The remote id that keys a group of a snapshot: not empty.
    SnapshotRemoteId = text(1, MAX_NAME_CHARS, "", false);
    /// A nickname ([`crate::domain::values::Nickname`]).
    Nickname = text(0, MAX_NAME_CHARS, "", false);
    /// An avatar URL ([`crate::domain::values::Avatar`]).
    Avatar = text(0, MAX_AVATAR_CHARS, "", false);
    /// An openid ([`crate::domain::values::Openid`]).
    Openid = text(1, MAX_OPENID_CHARS, "", false);
}

/// A group id a client gives ([`crate::domain::values::group_id`]): `0` (the root) or a
/// group's id.
pub struct GroupIdValue;

impl PartialSchema for GroupIdValue {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::Integer)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
            .minimum(Some(0))
            .maximum(Some(MAX_GROUP_ID.get()))
            .into()
    }
}

impl ToSchema for GroupIdValue {}

/// `kind`, or `kind` or `null` for an optional field a client may send as `null`.
fn maybe_null(kind: Type, nullable: bool) -> SchemaType {
    if nullable {
        SchemaType::from_iter([kind, Type::Null])
    } else {
        SchemaType::new(kind)
    }
}

/// A role code a client may assign ([`Role::assignable`]), for a field's `schema_with`.
pub fn assignable_role(description: &str, nullable: bool) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(maybe_null(Type::Integer, nullable))
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
        .minimum(Some(Role::MIN_ASSIGNABLE_CODE))
        .maximum(Some(Role::MAX_CODE))
        .description(Some(description))
}

/// An array of `min..=max` [`GroupIdValue`]s, for a field's `schema_with`.
pub fn group_ids(
    description: &str,
    min: Option<usize>,
    max: usize,
    nullable: bool,
) -> ArrayBuilder {
    ArrayBuilder::new()
        .schema_type(maybe_null(Type::Array, nullable))
        .items(GroupIdValue::schema())
        .min_items(min)
        .max_items(Some(max))
        .description(Some(description))
}

// ----- failures -------------------------------------------------------------------------------

/// Declares `$name`, the failure answers of one operation, for `responses(...)` of its
/// `#[utoipa::path]`: `failures!(Name: base; error, error, ...)` where `base` is a function
/// giving the failures shared with other operations ([`team`], [`team_body`], [`claimed`],
/// [`claimed_body`], [`authenticated`], [`anonymous`]) and each `error` converts into an
/// [`ApiError`] (a `ServiceError`, a `RuleError`, or an `ApiError`). List an operation's own `invalid_argument` first: the first
/// error of each `error.type` gives the example.
macro_rules! failures {
    ($name:ident: $base:path; $($error:expr),* $(,)?) => {
        #[doc = concat!("The failures of `", stringify!($name), "` (see `describe::failures!`).")]
        pub enum $name {}

        impl utoipa::IntoResponses for $name {
            fn responses() -> std::collections::BTreeMap<
                String,
                utoipa::openapi::RefOr<utoipa::openapi::response::Response>,
            > {
                let mut errors: Vec<$crate::http::envelope::ApiError> = vec![$($error.into()),*];
                errors.extend($base());
                $crate::http::describe::failure_responses(errors)
            }
        }
    };
}
pub(crate) use failures;

/// What any call can fail with: a bug or a database failure.
pub fn anonymous() -> Vec<ApiError> {
    vec![ApiError::internal(String::new())]
}

/// What any call with a token can fail with, besides its own failures.
pub fn authenticated() -> Vec<ApiError> {
    let mut errors = vec![
        ApiError::invalid("access_token is given more than once"),
        ServiceError::MissingAccessToken.into(),
        ServiceError::InvalidAccessToken.into(),
        ServiceError::AccessTokenExpired.into(),
        ServiceError::RateLimited {
            retry_after_secs: 1,
        }
        .into(),
    ];
    errors.extend(anonymous());
    errors
}

/// What any call on an org's contacts (its org, directory or users) can fail with, besides its
/// own failures: the app's claim and the org's plan are checked.
pub fn claimed() -> Vec<ApiError> {
    let mut errors = vec![
        ServiceError::Claim.into(),
        ServiceError::Subscription.into(),
    ];
    errors.extend(authenticated());
    errors
}

/// What any call on a directory (`{team_id}`) can fail with, besides its own failures.
pub fn team() -> Vec<ApiError> {
    let mut errors = vec![ServiceError::TeamNotFound.into()];
    errors.extend(claimed());
    errors
}

/// What any call on a directory with a body can fail with, besides its own failures.
pub fn team_body() -> Vec<ApiError> {
    let mut errors = body_errors();
    errors.extend(team());
    errors
}

/// A body that cannot be read.
fn body_errors() -> Vec<ApiError> {
    vec![
        ApiError::invalid("invalid JSON body: expected value at line 1 column 1"),
        ApiError::too_large(),
    ]
}

/// What any call on an org's contacts with a body can fail with, besides its own failures.
pub fn claimed_body() -> Vec<ApiError> {
    let mut errors = body_errors();
    errors.extend(claimed());
    errors
}

/// One failure as the server renders it.
struct Rendered {
    status: StatusCode,
    code: String,
    error_type: String,
    message: String,
    retry_after: bool,
    body: Value,
}

fn render(error: ApiError) -> Rendered {
    let response = error.into_response();
    let body = envelope::rendered(&response, EXAMPLE_REQUEST_ID);
    let text = |pointer: &str| {
        body.pointer(pointer)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    Rendered {
        status: response.status(),
        code: text("/code"),
        error_type: text("/error/type"),
        message: text("/error/message"),
        retry_after: response.headers().contains_key(header::RETRY_AFTER),
        body,
    }
}

/// The responses of a list of failures: one per HTTP status, whose schema narrows `code` and
/// `error.type` to the values listed, with one example per `error.type`.
pub fn failure_responses(
    errors: Vec<ApiError>,
) -> BTreeMap<String, RefOr<utoipa::openapi::response::Response>> {
    let mut by_status: BTreeMap<u16, Vec<Rendered>> = BTreeMap::new();
    for error in errors {
        let rendered = render(error);
        let same = by_status.entry(rendered.status.as_u16()).or_default();
        if !same.iter().any(|r| r.error_type == rendered.error_type) {
            same.push(rendered);
        }
    }
    by_status
        .into_iter()
        .map(|(status, rendered)| (status.to_string(), failure_response(&rendered).into()))
        .collect()
}

fn failure_response(rendered: &[Rendered]) -> utoipa::openapi::response::Response {
    let mut codes: Vec<&str> = Vec::new();
    for r in rendered {
        if !codes.contains(&r.code.as_str()) {
            codes.push(&r.code);
        }
    }
    let types: Vec<&str> = rendered.iter().map(|r| r.error_type.as_str()).collect();
    let mut narrowed = ObjectBuilder::new()
        .property("code", string_enum(codes.clone()))
        .property(
            "error",
            ObjectBuilder::new().property("type", string_enum(types)),
        );
    if rendered
        .iter()
        .all(|r| r.body.get("data") == Some(&json!({})))
    {
        narrowed = narrowed.property("data", ObjectBuilder::new().max_properties(Some(0)));
    }
    let schema = AllOfBuilder::new()
        .item(Ref::from_schema_name(Failure::name()))
        .item(narrowed);
    let description = rendered
        .iter()
        .map(|r| format!("`{}` / `{}`: {}.", r.code, r.error_type, r.message))
        .collect::<Vec<_>>()
        .join("\n\n");
    let content = ContentBuilder::new()
        .schema(Some(schema))
        .examples_from_iter(rendered.iter().map(|r| {
            (
                r.error_type.clone(),
                ExampleBuilder::new()
                    .summary(format!("{} / {}", r.code, r.error_type))
                    .value(Some(r.body.clone())),
            )
        }))
        .build();
    let mut response = ResponseBuilder::new()
        .description(description)
        .content("application/json", content);
    if rendered.iter().any(|r| r.retry_after) {
        response = response.header(
            "Retry-After",
            HeaderBuilder::new()
                .schema(Some(
                    ObjectBuilder::new()
                        .schema_type(SchemaType::new(Type::Integer))
                        .minimum(Some(1)),
                ))
                .description(Some(
                    "Seconds to wait before the next call (with `request_rate_limited`).",
                ))
                .build(),
        );
    }
    response.build()
}
