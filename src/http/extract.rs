//! Reading requests: query strings (with the array forms of §1), bodies (JSON or forms), and
//! the caller.
//!
//! Every failure here is an [`ApiError`] in the contract's envelope, never axum's plain-text
//! rejections.

use std::ops::Range;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::header;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::AppState;
use super::envelope::ApiError;
use super::form::from_form;
use crate::domain::access::Caller;
use crate::domain::values::TeamId;
use crate::domain::values::{MAX_ARRAY_ITEMS, Page};

/// The decoded pairs of a query string, in order. Shared: a request's query is decoded once,
/// for the caller's token and for the handler's parameters.
#[derive(Debug, Clone, Default)]
pub struct QueryParams {
    decoded: Arc<DecodedQuery>,
}

/// Every decoded name and value in one string, and where each pair lies in it: three
/// allocations per request instead of two per pair.
#[derive(Debug, Default)]
struct DecodedQuery {
    text: String,
    pairs: Vec<(Range<usize>, Range<usize>)>,
}

impl DecodedQuery {
    fn push(&mut self, name: &str, value: &str) {
        let start = self.text.len();
        self.text.push_str(name);
        let middle = self.text.len();
        self.text.push_str(value);
        self.pairs.push((start..middle, middle..self.text.len()));
    }
}

impl QueryParams {
    /// Decoded as `application/x-www-form-urlencoded` (the `form_urlencoded` crate's rules).
    pub fn parse(raw: Option<&str>) -> QueryParams {
        let Some(query) = raw else {
            return QueryParams::default();
        };
        let mut decoded = DecodedQuery {
            text: String::with_capacity(query.len()),
            pairs: Vec::with_capacity(query.bytes().filter(|b| *b == b'&').count() + 1),
        };
        if query.contains(['%', '+']) {
            for (name, value) in form_urlencoded::parse(query.as_bytes()) {
                decoded.push(&name, &value);
            }
        } else {
            // Nothing to decode: the pairs are the query's own text (as the crate would
            // split it: empty pieces skipped, a piece without `=` a name with an empty value).
            for piece in query.split('&').filter(|piece| !piece.is_empty()) {
                let (name, value) = piece.split_once('=').unwrap_or((piece, ""));
                decoded.push(name, value);
            }
        }
        QueryParams {
            decoded: Arc::new(decoded),
        }
    }

    /// The request's query, decoded on first use and kept with the request.
    fn of(parts: &mut Parts) -> QueryParams {
        if let Some(query) = parts.extensions.get::<QueryParams>() {
            return query.clone();
        }
        let query = QueryParams::parse(parts.uri.query());
        parts.extensions.insert(query.clone());
        query
    }

    /// The pairs in their order.
    fn pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        let text = self.decoded.text.as_str();
        self.decoded
            .pairs
            .iter()
            .map(move |(name, value)| (&text[name.clone()], &text[value.clone()]))
    }

    /// The value of a parameter given once; given twice is an error.
    pub fn single(&self, name: &str) -> Result<Option<&str>, ApiError> {
        let mut values = self.pairs().filter(|(k, _)| *k == name);
        let first = values.next().map(|(_, v)| v);
        if values.next().is_some() {
            return Err(ApiError::invalid(format!("{name} is given more than once")));
        }
        Ok(first)
    }

    pub fn int(&self, name: &str) -> Result<Option<i64>, ApiError> {
        self.single(name)?
            .map(|raw| {
                raw.trim()
                    .parse::<i64>()
                    .map_err(|_| ApiError::invalid(format!("{name} must be an integer")))
            })
            .transpose()
    }

    /// `true`/`false` (also `1`/`0`); absent is `false`.
    pub fn flag(&self, name: &str) -> Result<bool, ApiError> {
        Ok(self.optional_flag(name)?.unwrap_or(false))
    }

    /// [`QueryParams::flag`], `None` when absent (for a default decided elsewhere).
    pub fn optional_flag(&self, name: &str) -> Result<Option<bool>, ApiError> {
        self.single(name)?
            .map(|raw| match raw {
                "true" | "1" => Ok(true),
                "false" | "0" | "" => Ok(false),
                _ => Err(ApiError::invalid(format!("{name} must be true or false"))),
            })
            .transpose()
    }

    /// An array parameter (§1): repeated keys `a=x&a=y`, bracket keys `a[]=x&a[]=y`, one
    /// comma-separated value `a=x,y`, or one JSON array `a=["x","y"]`. Empty items are dropped.
    pub fn array(&self, name: &str) -> Result<Option<Vec<String>>, ApiError> {
        let bracket = format!("{name}[]");
        let values: Vec<&str> = self
            .pairs()
            .filter(|(k, _)| *k == name || *k == bracket)
            .map(|(_, v)| v)
            .collect();
        let items: Vec<String> = match values.as_slice() {
            [] => return Ok(None),
            [one] if one.trim_start().starts_with('[') => parse_json_array(name, one)?,
            [one] => one.split(',').map(|s| s.trim().to_owned()).collect(),
            many => many.iter().map(|s| (*s).to_owned()).collect(),
        };
        let items: Vec<String> = items.into_iter().filter(|s| !s.is_empty()).collect();
        if items.len() > MAX_ARRAY_ITEMS {
            return Err(ApiError::invalid(format!(
                "{name} may hold at most {MAX_ARRAY_ITEMS} values"
            )));
        }
        Ok(Some(items))
    }

    /// `page` and `per_page` (§5.1).
    pub fn page(&self) -> Result<Page, ApiError> {
        let page = self.int("page")?.unwrap_or(1);
        let per_page = self.int("per_page")?.unwrap_or(10);
        let page = u64::try_from(page).map_err(|_| ApiError::invalid("page must be at least 1"))?;
        let per_page = u64::try_from(per_page)
            .map_err(|_| ApiError::invalid("per_page must be between 1 and 1000"))?;
        Ok(Page::new(page, per_page)?)
    }
}

fn parse_json_array(name: &str, raw: &str) -> Result<Vec<String>, ApiError> {
    let values: Vec<serde_json::Value> = serde_json::from_str(raw)
        .map_err(|_| ApiError::invalid(format!("{name} is not a valid JSON array")))?;
    values
        .into_iter()
        .map(|value| match value {
            serde_json::Value::String(s) => Ok(s),
            serde_json::Value::Number(n) => Ok(n.to_string()),
            _ => Err(ApiError::invalid(format!(
                "{name} must hold strings or numbers"
            ))),
        })
        .collect()
}

impl<S: Send + Sync> FromRequestParts<S> for QueryParams {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(QueryParams::of(parts))
    }
}

/// A call of an app: the state and the app calling, from `access_token` in the query or an
/// `Authorization: Bearer` header.
pub struct AppCall(pub AppState, pub Caller);

impl FromRequestParts<AppState> for AppCall {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let query = QueryParams::of(parts);
        let bearer = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| {
                // The scheme is case-insensitive (RFC 9110 §11.1).
                let (scheme, token) = value.split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then_some(token)
            })
            .map(str::trim);
        let token = match query.single("access_token")? {
            Some(token) => token,
            None => bearer.unwrap_or_default(),
        };
        let appid = query.single("appid")?.filter(|appid| !appid.is_empty());
        let mut caller = state.service.authenticate(token, appid).await?;
        caller.request_id = parts
            .extensions
            .get::<super::envelope::RequestId>()
            .map(|id| id.0.clone());
        Ok(AppCall(state.clone(), caller))
    }
}

/// A call on one team's contacts (`/api/contacts/teams/{team_id}/...`): the state, the app
/// calling ([`AppCall`]) and the team of the path, read in that order. Whether the caller
/// may touch the team is the service's to decide, when asked for it. The path's other ids are
/// read by the handler (a `Path` of a struct naming them: `team_id` is ignored there).
pub struct TeamCall(pub AppState, pub Caller, pub TeamId);

/// The `team_id` of a contacts path.
#[derive(Deserialize)]
struct TeamIdParam {
    team_id: TeamId,
}

impl FromRequestParts<AppState> for TeamCall {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let AppCall(app, caller) = AppCall::from_request_parts(parts, state)
            .await
            .map_err(IntoResponse::into_response)?;
        let Path(TeamIdParam { team_id }) = Path::from_request_parts(parts, state)
            .await
            .map_err(IntoResponse::into_response)?;
        Ok(TeamCall(app, caller, team_id))
    }
}

/// A body of a POST call, JSON or form-urlencoded (§1), with every failure (malformed, wrong
/// type, too large) in the envelope and naming the field. `Content-Type` decides; without one
/// (or with another), a body whose first non-blank byte is `{` is JSON, else a form. An empty
/// body reads as `{}` so that bodies whose fields are all optional may be left out.
pub struct RequestBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for RequestBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let content_type = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .map(str::to_ascii_lowercase)
            .unwrap_or_default();
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(|rejection| {
                if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::too_large()
                } else {
                    ApiError::invalid("the request body could not be read")
                }
            })?;
        let first = bytes.iter().find(|byte| !byte.is_ascii_whitespace());
        let Some(first) = first else {
            return read_json(b"{}");
        };
        let form = if content_type.starts_with("application/x-www-form-urlencoded") {
            true
        } else if content_type.contains("json") {
            false
        } else {
            *first != b'{'
        };
        if form {
            from_form(&bytes)
                .map(RequestBody)
                .map_err(|error| ApiError::invalid(format!("invalid form body: {error}")))
        } else if *first != b'{' {
            // serde would read a struct from an array too (`[null, null]`); a body is an object.
            Err(ApiError::invalid(
                "invalid JSON body: the body must be a JSON object",
            ))
        } else {
            read_json(&bytes)
        }
    }
}

fn read_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<RequestBody<T>, ApiError> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(&mut deserializer)
        .map(RequestBody)
        .map_err(|error| {
            let path = error.path().to_string();
            let error = error.into_inner();
            if path == "." {
                ApiError::invalid(format!("invalid JSON body: {error}"))
            } else {
                ApiError::invalid(format!("invalid JSON body: {path}: {error}"))
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn array(query: &str) -> Option<Vec<String>> {
        QueryParams::parse(Some(query)).array("remote_ids").unwrap()
    }

    #[test]
    fn arrays_come_in_four_forms() {
        let want = Some(vec!["a".to_owned(), "b".to_owned()]);
        assert_eq!(array("remote_ids=a&remote_ids=b"), want);
        assert_eq!(array("remote_ids%5B%5D=a&remote_ids%5B%5D=b"), want);
        assert_eq!(array("remote_ids[]=a&remote_ids[]=b"), want);
        assert_eq!(array("remote_ids=a,b"), want);
        assert_eq!(array("remote_ids=%5B%22a%22,%22b%22%5D"), want);
        assert_eq!(
            array("remote_ids=[1,2]"),
            Some(vec!["1".to_owned(), "2".to_owned()])
        );
        assert_eq!(array("other=1"), None);
    }

    #[test]
    fn repeated_keys_are_taken_as_they_are() {
        // A value with a comma among repeated keys is one item, not two.
        assert_eq!(
            array("remote_ids=a,b&remote_ids=c"),
            Some(vec!["a,b".to_owned(), "c".to_owned()])
        );
        // A single value starting with `[` must be JSON.
        assert!(
            QueryParams::parse(Some("remote_ids=[a"))
                .array("remote_ids")
                .is_err()
        );
    }

    proptest::proptest! {
        #[test]
        fn a_query_decodes_as_form_urlencoded_decodes_it(
            query in "([a-z=&%+]|%[0-9A-Fa-f]{2}|[^\\x00-\\x7f]|\\[\\])*",
        ) {
            let ours: Vec<(String, String)> = QueryParams::parse(Some(&query))
                .pairs()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect();
            let theirs: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect();
            proptest::prop_assert_eq!(ours, theirs);
        }
    }

    #[test]
    fn pages_and_flags_are_checked() {
        let q = QueryParams::parse(Some("page=0"));
        assert!(q.page().is_err());
        let q = QueryParams::parse(Some("page=2&per_page=1000&recursive=true"));
        assert_eq!(q.page().unwrap(), Page::new(2, 1000).unwrap());
        assert!(q.flag("recursive").unwrap());
        assert!(
            QueryParams::parse(Some("recursive=yes"))
                .flag("recursive")
                .is_err()
        );
        assert!(QueryParams::parse(Some("page=x")).page().is_err());
        assert!(QueryParams::parse(Some("page=1&page=2")).page().is_err());
    }
}
