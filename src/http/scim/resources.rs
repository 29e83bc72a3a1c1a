//! The SCIM endpoints: discovery, and Users and Groups (get, list with filter and paging,
//! create, replace, patch, delete), with `attributes`/`excludedAttributes` and ETags.

use axum::body::Bytes;
use axum::extract::{Extension, Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use super::{ScimState, Scope, authenticate, error_response, json_body, scim_json, to_scim};
use crate::domain::scim::filter::{Filter, parse_filter};
use crate::domain::scim::patch::{Operation, parse_operations};
use crate::domain::scim::schema::{self, ENTERPRISE_SCHEMA, GROUP_EXTENSION_SCHEMA};
use crate::domain::scim::{ScimError, attribute_key};
use crate::service::scim::{ScimResult, Versioned};

/// Most resources in one list page (`maxResults`).
const MAX_RESULTS: usize = 1000;
const LIST_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";

/// The query parameters of a read.
#[derive(Default)]
struct ReadParams {
    filter: Option<Filter>,
    start_index: usize,
    count: usize,
    attributes: Vec<String>,
    excluded: Vec<String>,
}

/// The parameters of a `POST …/.search` body (RFC 7644 §3.4.3), as query pairs.
fn search_params(body: &Value) -> Result<ReadParams, ScimError> {
    let body = body
        .as_object()
        .ok_or_else(|| ScimError::invalid_syntax("the body must be a JSON object"))?;
    let mut pairs = Vec::new();
    for (key, value) in body {
        let text = match value {
            Value::String(text) => text.clone(),
            Value::Number(number) => number.to_string(),
            Value::Array(items) => items
                .iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(","),
            _ => continue,
        };
        pairs.push((key.clone(), text));
    }
    let query = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish();
    read_params(Some(query))
}

fn read_params(query: Option<String>) -> Result<ReadParams, ScimError> {
    let mut params = ReadParams {
        start_index: 1,
        count: MAX_RESULTS,
        ..ReadParams::default()
    };
    let list = |raw: &str| {
        raw.split(',')
            .map(|a| a.trim().to_owned())
            .filter(|a| !a.is_empty())
            .collect()
    };
    for (key, value) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        match key.as_ref() {
            "filter" => params.filter = Some(parse_filter(&value)?),
            "startIndex" => {
                params.start_index = value
                    .parse::<i64>()
                    .map_err(|_| ScimError::invalid_value("startIndex must be an integer"))?
                    .max(1) as usize;
            }
            "count" => {
                params.count = (value
                    .parse::<i64>()
                    .map_err(|_| ScimError::invalid_value("count must be an integer"))?
                    .max(0) as usize)
                    .min(MAX_RESULTS);
            }
            "attributes" => params.attributes = list(&value),
            "excludedAttributes" => params.excluded = list(&value),
            _ => {}
        }
    }
    Ok(params)
}

/// Does `name` (as a client writes it in `attributes`) name top-level `key` of a resource?
fn names(name: &str, key: &str) -> bool {
    let top = name.split('.').next().unwrap_or(name);
    top.eq_ignore_ascii_case(key) || name.eq_ignore_ascii_case(key)
}

/// `attributes` / `excludedAttributes` (RFC 7644 §3.4.2.5) on one resource: `id`, `schemas`
/// and `meta` are always returned.
fn project(mut resource: Map<String, Value>, params: &ReadParams) -> Map<String, Value> {
    let always = ["id", "schemas", "meta"];
    let extensions = [ENTERPRISE_SCHEMA, GROUP_EXTENSION_SCHEMA];
    let split = |name: &str| -> (Option<&'static str>, String) {
        for urn in extensions {
            if name.len() > urn.len() + 1 && name[..urn.len()].eq_ignore_ascii_case(urn) {
                return (Some(urn), name[urn.len() + 1..].to_owned());
            }
        }
        for core in [schema::USER_SCHEMA, schema::GROUP_SCHEMA] {
            if name.len() > core.len() + 1 && name[..core.len()].eq_ignore_ascii_case(core) {
                return (None, name[core.len() + 1..].to_owned());
            }
        }
        (None, name.to_owned())
    };
    if !params.attributes.is_empty() {
        let wanted: Vec<(Option<&str>, String)> =
            params.attributes.iter().map(|a| split(a)).collect();
        resource.retain(|key, value| {
            if always.contains(&key.as_str()) {
                return true;
            }
            if let Some(urn) = extensions.iter().find(|u| u.eq_ignore_ascii_case(key)) {
                if wanted
                    .iter()
                    .any(|(u, n)| u.is_none() && n.eq_ignore_ascii_case(urn))
                {
                    return true;
                }
                if let Value::Object(inner) = value {
                    inner
                        .retain(|k, _| wanted.iter().any(|(u, n)| *u == Some(*urn) && names(n, k)));
                    return !inner.is_empty();
                }
                return false;
            }
            wanted.iter().any(|(u, n)| u.is_none() && names(n, key))
        });
    }
    for name in &params.excluded {
        let (urn, name) = split(name);
        let container = match urn {
            Some(urn) => match resource.get_mut(urn) {
                Some(Value::Object(inner)) => inner,
                _ => continue,
            },
            None => &mut resource,
        };
        if let Some(key) = attribute_key(container, &name)
            && !always.contains(&key.as_str())
        {
            container.remove(&key);
        }
    }
    resource
}

fn one(
    result: ScimResult<Versioned>,
    status: StatusCode,
    headers: &HeaderMap,
    query: Option<String>,
) -> Response {
    let params = match read_params(query) {
        Ok(params) => params,
        Err(error) => return error_response(&error),
    };
    match result {
        Ok(found) => {
            let unchanged = headers
                .get(header::IF_NONE_MATCH)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|tags| {
                    tags.split(',')
                        .any(|t| t.trim() == found.version || t.trim() == "*")
                });
            if unchanged && status == StatusCode::OK {
                let mut response = StatusCode::NOT_MODIFIED.into_response();
                if let Ok(etag) = HeaderValue::from_str(&found.version) {
                    response.headers_mut().insert(header::ETAG, etag);
                }
                return response;
            }
            let location = found
                .resource
                .get("meta")
                .and_then(|m| m.get("location"))
                .and_then(Value::as_str)
                .map(str::to_owned);
            let body = Value::Object(project(found.resource, &params));
            let mut response = scim_json(status, &body, Some(&found.version));
            if status == StatusCode::CREATED
                && let Some(location) = location.and_then(|l| HeaderValue::from_str(&l).ok())
            {
                response.headers_mut().insert(header::LOCATION, location);
            }
            response
        }
        Err(failure) => error_response(&to_scim(failure)),
    }
}

fn list(result: ScimResult<Vec<Versioned>>, params: &ReadParams) -> Response {
    match result {
        Ok(all) => {
            let total = all.len();
            let page: Vec<Value> = all
                .into_iter()
                .skip(params.start_index - 1)
                .take(params.count)
                .map(|r| Value::Object(project(r.resource, params)))
                .collect();
            scim_json(
                StatusCode::OK,
                &json!({
                    "schemas": [LIST_SCHEMA],
                    "totalResults": total,
                    "startIndex": params.start_index,
                    "itemsPerPage": page.len(),
                    "Resources": page,
                }),
                None,
            )
        }
        Err(failure) => error_response(&to_scim(failure)),
    }
}

fn if_match(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::IF_MATCH)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

macro_rules! authed {
    ($state:expr, $headers:expr) => {
        match authenticate(&$state, &$headers).await {
            Ok(found) => found,
            Err(response) => return response,
        }
    };
}

macro_rules! body {
    ($bytes:expr) => {
        match json_body(&$bytes) {
            Ok(body) => body,
            Err(error) => return error_response(&error),
        }
    };
}

pub(super) async fn service_provider_config(
    State(state): State<ScimState>,
    headers: HeaderMap,
) -> Response {
    let scope = authed!(state, headers);
    scim_json(
        StatusCode::OK,
        &json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"],
            "documentationUri": "https://github.com/contactsd/contactsd#scim-provisioning",
            "patch": {"supported": true},
            "bulk": {"supported": false, "maxOperations": 0, "maxPayloadSize": 0},
            "filter": {"supported": true, "maxResults": MAX_RESULTS},
            "changePassword": {"supported": false},
            "sort": {"supported": false},
            "etag": {"supported": true},
            "authenticationSchemes": [{
                "type": "oauthbearertoken",
                "name": "SCIM bearer token",
                "description": "A token made with `contactsd admin scim-token create`.",
                "primary": true,
            }],
            "meta": {"resourceType": "ServiceProviderConfig", "location": format!("{}/ServiceProviderConfig", scope.location.0)},
        }),
        None,
    )
}

fn listing(resources: Vec<Value>) -> Response {
    scim_json(
        StatusCode::OK,
        &json!({
            "schemas": [LIST_SCHEMA],
            "totalResults": resources.len(),
            "startIndex": 1,
            "itemsPerPage": resources.len(),
            "Resources": resources,
        }),
        None,
    )
}

fn located(mut resource: Value, base: &str) -> Value {
    if let Some(location) = resource.pointer_mut("/meta/location")
        && let Some(relative) = location.as_str()
    {
        *location = json!(format!("{base}{relative}"));
    }
    resource
}

/// A discovery collection (`/ResourceTypes`, `/Schemas`; an `Extension` on its routes): its
/// documents, and what one of them is called in a `not found` error.
#[derive(Clone, Copy)]
pub(super) struct Discovery {
    documents: fn() -> Vec<Value>,
    noun: &'static str,
}

impl Discovery {
    pub(super) const RESOURCE_TYPES: Discovery = Discovery {
        documents: schema::resource_types,
        noun: "resource type",
    };
    pub(super) const SCHEMAS: Discovery = Discovery {
        documents: schema::schemas,
        noun: "schema",
    };
}

/// Every document of a discovery collection.
pub(super) async fn discovery_list(
    Extension(discovery): Extension<Discovery>,
    State(state): State<ScimState>,
    headers: HeaderMap,
) -> Response {
    let scope = authed!(state, headers);
    listing(
        (discovery.documents)()
            .into_iter()
            .map(|document| located(document, &scope.location.0))
            .collect(),
    )
}

/// One document of a discovery collection, by id.
pub(super) async fn discovery_one(
    Extension(discovery): Extension<Discovery>,
    State(state): State<ScimState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let scope = authed!(state, headers);
    match (discovery.documents)()
        .into_iter()
        .find(|document| document["id"] == id.as_str())
    {
        Some(found) => scim_json(StatusCode::OK, &located(found, &scope.location.0), None),
        None => error_response(&ScimError::not_found(format!("no {} {id}", discovery.noun))),
    }
}

/// The SCIM resource type a route serves (an `Extension` on its routes): the handlers below
/// serve both, and only this picks the service calls.
#[derive(Clone, Copy)]
pub(super) enum Resource {
    Users,
    Groups,
}

impl Resource {
    async fn list(self, scope: &Scope, filter: Option<&Filter>) -> ScimResult<Vec<Versioned>> {
        let (service, team, location) = scope.parts();
        match self {
            Self::Users => service.scim_list_users(team, filter, location).await,
            Self::Groups => service.scim_list_groups(team, filter, location).await,
        }
    }

    async fn get(self, scope: &Scope, id: &str) -> ScimResult<Versioned> {
        let (service, team, location) = scope.parts();
        match self {
            Self::Users => service.scim_get_user(team, id, location).await,
            Self::Groups => service.scim_get_group(team, id, location).await,
        }
    }

    async fn create(self, scope: &Scope, body: &Value) -> ScimResult<Versioned> {
        let (service, team, location) = scope.parts();
        match self {
            Self::Users => service.scim_create_user(team, body, location).await,
            Self::Groups => service.scim_create_group(team, body, location).await,
        }
    }

    /// Replace or patch one resource; `if_match`: the `If-Match` header, as for
    /// [`Resource::delete`].
    async fn edit(
        self,
        scope: &Scope,
        id: &str,
        edit: Edit<'_>,
        if_match: Option<&str>,
    ) -> ScimResult<Versioned> {
        let (service, target) = scope.target(id, if_match);
        match (self, edit) {
            (Self::Users, Edit::Replace(body)) => service.scim_replace_user(target, body).await,
            (Self::Groups, Edit::Replace(body)) => service.scim_replace_group(target, body).await,
            (Self::Users, Edit::Patch(operations)) => {
                service.scim_patch_user(target, operations).await
            }
            (Self::Groups, Edit::Patch(operations)) => {
                service.scim_patch_group(target, operations).await
            }
        }
    }

    async fn delete(self, scope: &Scope, id: &str, if_match: Option<&str>) -> ScimResult<()> {
        let (service, target) = scope.target(id, if_match);
        match self {
            Self::Users => service.scim_delete_user(target).await,
            Self::Groups => service.scim_delete_group(target).await,
        }
    }
}

pub(super) async fn list_all(
    Extension(resource): Extension<Resource>,
    State(state): State<ScimState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let scope = authed!(state, headers);
    read_listing(resource, &scope, read_params(query)).await
}

pub(super) async fn search(
    Extension(resource): Extension<Resource>,
    State(state): State<ScimState>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Response {
    let scope = authed!(state, headers);
    read_listing(resource, &scope, search_params(&body!(bytes))).await
}

/// The listing of `resource` read with `params` (from the query, or the body of `.search`).
async fn read_listing(
    resource: Resource,
    scope: &Scope,
    params: Result<ReadParams, ScimError>,
) -> Response {
    match params {
        Ok(params) => list(resource.list(scope, params.filter.as_ref()).await, &params),
        Err(error) => error_response(&error),
    }
}

pub(super) async fn get_one(
    Extension(resource): Extension<Resource>,
    State(state): State<ScimState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let scope = authed!(state, headers);
    let result = resource.get(&scope, &id).await;
    one(result, StatusCode::OK, &headers, query)
}

pub(super) async fn create(
    Extension(resource): Extension<Resource>,
    State(state): State<ScimState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    bytes: Bytes,
) -> Response {
    let scope = authed!(state, headers);
    let body = body!(bytes);
    let result = resource.create(&scope, &body).await;
    one(result, StatusCode::CREATED, &headers, query)
}

/// A change to one resource: its whole new body (`PUT`) or operations on it (`PATCH`).
#[derive(Clone, Copy)]
enum Edit<'a> {
    Replace(&'a Value),
    Patch(&'a [Operation]),
}

/// `PUT` (replace) and `PATCH` of one resource.
pub(super) async fn edit(
    Extension(resource): Extension<Resource>,
    method: Method,
    State(state): State<ScimState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
    bytes: Bytes,
) -> Response {
    let scope = authed!(state, headers);
    let body = body!(bytes);
    let operations = match method {
        Method::PATCH => match parse_operations(&body) {
            Ok(operations) => Some(operations),
            Err(error) => return error_response(&error),
        },
        _ => None,
    };
    let edit = match &operations {
        Some(operations) => Edit::Patch(operations),
        None => Edit::Replace(&body),
    };
    let if_match = if_match(&headers);
    let result = resource.edit(&scope, &id, edit, if_match.as_deref()).await;
    one(result, StatusCode::OK, &headers, query)
}

pub(super) async fn delete(
    Extension(resource): Extension<Resource>,
    State(state): State<ScimState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let scope = authed!(state, headers);
    let if_match = if_match(&headers);
    match resource.delete(&scope, &id, if_match.as_deref()).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(failure) => error_response(&to_scim(failure)),
    }
}

/// `POST /.search` at the root: users, then groups.
pub(super) async fn search_all(
    State(state): State<ScimState>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Response {
    let scope = authed!(state, headers);
    let params = match search_params(&body!(bytes)) {
        Ok(params) => params,
        Err(error) => return error_response(&error),
    };
    let filter = params.filter.as_ref();
    let result = match Resource::Users.list(&scope, filter).await {
        Ok(mut all) => Resource::Groups.list(&scope, filter).await.map(|groups| {
            all.extend(groups);
            all
        }),
        Err(failure) => Err(failure),
    };
    list(result, &params)
}
