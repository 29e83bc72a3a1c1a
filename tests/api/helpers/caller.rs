//! Paths of the API, listings as tests read them, [`Api`]: a logged-in app calling the API,
//! and [`assert_stored_as_served`]: what a server serves against what the database holds.

use std::collections::BTreeSet;

use reqwest::header::AUTHORIZATION;
use serde_json::{Value, json};

use super::app::{ApiResponse, TestApp};
use super::envelope::{assert_ok, encode};

// ----- paths --------------------------------------------------------------------------------

pub fn groups_path(team_id: i64) -> String {
    format!("/api/contacts/teams/{team_id}/groups")
}

pub fn group_path(team_id: i64, group_id: i64) -> String {
    format!("/api/contacts/teams/{team_id}/groups/{group_id}")
}

pub fn members_path(team_id: i64, group_id: i64) -> String {
    format!("/api/contacts/teams/{team_id}/groups/{group_id}/users")
}

pub fn member_path(team_id: i64, group_id: i64, user_id: i64) -> String {
    format!("/api/contacts/teams/{team_id}/groups/{group_id}/users/{user_id}")
}

pub fn member_update_path(team_id: i64, user_id: i64) -> String {
    format!("/api/contacts/teams/{team_id}/users/{user_id}")
}

pub fn delete_groups_path(team_id: i64) -> String {
    format!("/api/contacts/teams/{team_id}/groups/batch_delete")
}

// ----- a logged-in caller -------------------------------------------------------------------

/// Ids in ascending order, each once: for comparing sets of ids whatever order they came in.
pub fn sorted(ids: impl IntoIterator<Item = i64>) -> Vec<i64> {
    ids.into_iter()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

/// `data.list` and `data.total` of a listing.
#[derive(Debug, Clone)]
pub struct Listing {
    pub list: Vec<Value>,
    pub total: i64,
}

impl Listing {
    /// `field` of every row, as integers.
    #[track_caller]
    pub fn ints(&self, field: &str) -> Vec<i64> {
        self.list
            .iter()
            .map(|row| {
                row[field]
                    .as_i64()
                    .unwrap_or_else(|| panic!("row field {field} is not an integer: {row}"))
            })
            .collect()
    }

    /// `field` of every row, as strings.
    #[track_caller]
    pub fn strings(&self, field: &str) -> Vec<String> {
        self.list
            .iter()
            .map(|row| {
                row[field]
                    .as_str()
                    .unwrap_or_else(|| panic!("row field {field} is not a string: {row}"))
                    .to_owned()
            })
            .collect()
    }

    /// The row whose `field` is `id`.
    #[track_caller]
    pub fn row(&self, field: &str, id: i64) -> &Value {
        self.list
            .iter()
            .find(|row| row[field] == id)
            .unwrap_or_else(|| panic!("no row with {field} {id} in {:?}", self.list))
    }
}

#[track_caller]
fn listing(response: &ApiResponse) -> Listing {
    let data = assert_ok(response);
    let list = data["list"]
        .as_array()
        .unwrap_or_else(|| panic!("{}: data.list is not an array", response.request))
        .clone();
    let total = data["total"]
        .as_i64()
        .unwrap_or_else(|| panic!("{}: data.total is not an integer", response.request));
    Listing { list, total }
}

/// A registered third-party user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct User {
    pub user_id: i64,
    pub respondent_id: i64,
}

/// An app with a token, calling with `?appid=…&access_token=…`.
pub struct Api<'a> {
    pub app: &'a TestApp,
    pub appid: String,
    pub token: String,
}

impl<'a> Api<'a> {
    pub fn new(app: &'a TestApp, appid: &str, token: &str) -> Api<'a> {
        Api {
            app,
            appid: appid.to_owned(),
            token: token.to_owned(),
        }
    }

    /// `path` (which may already have a query) with this caller's credentials added.
    pub fn authed(&self, path: &str) -> String {
        let separator = if path.contains('?') { '&' } else { '?' };
        format!(
            "{path}{separator}appid={}&access_token={}",
            encode(&self.appid),
            encode(&self.token)
        )
    }

    pub async fn get(&self, path: &str) -> ApiResponse {
        self.app.get(&self.authed(path)).await
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> ApiResponse {
        self.app.post_json(&self.authed(path), body).await
    }

    pub async fn post_raw(&self, path: &str, body: impl Into<String>) -> ApiResponse {
        self.app.post_raw(&self.authed(path), body).await
    }

    pub async fn delete(&self, path: &str) -> ApiResponse {
        self.app.delete(&self.authed(path)).await
    }

    /// A GET carrying the token only in an `Authorization: Bearer` header.
    pub async fn get_bearer(&self, path: &str) -> ApiResponse {
        self.app
            .send(
                self.app
                    .client
                    .get(self.app.url(path))
                    .header(AUTHORIZATION, format!("Bearer {}", self.token)),
            )
            .await
    }

    /// A JSON POST carrying the token only in an `Authorization: Bearer` header.
    pub async fn post_bearer(&self, path: &str, body: &Value) -> ApiResponse {
        self.app
            .send(
                self.app
                    .client
                    .post(self.app.url(path))
                    .header(AUTHORIZATION, format!("Bearer {}", self.token))
                    .json(body),
            )
            .await
    }

    // groups

    pub async fn try_create_group(&self, team_id: i64, body: &Value) -> ApiResponse {
        self.post_json(&groups_path(team_id), body).await
    }

    /// Create a group from a full body; returns its id.
    pub async fn create_group_with(&self, team_id: i64, body: &Value) -> i64 {
        let response = self.try_create_group(team_id, body).await;
        let data = assert_ok(&response);
        data["group_id"]
            .as_i64()
            .unwrap_or_else(|| panic!("create group answered without group_id: {data}"))
    }

    pub async fn create_group(&self, team_id: i64, name: &str, parent_id: i64) -> i64 {
        self.create_group_with(team_id, &json!({"name": name, "parent_id": parent_id}))
            .await
    }

    /// GET one group; its `data`.
    pub async fn group(&self, team_id: i64, group_id: i64) -> Value {
        assert_ok(&self.get(&group_path(team_id, group_id)).await)
    }

    /// GET the group list with `query` (e.g. `"parent_id=0&per_page=100"`).
    pub async fn list_groups(&self, team_id: i64, query: &str) -> Listing {
        let path = if query.is_empty() {
            groups_path(team_id)
        } else {
            format!("{}?{query}", groups_path(team_id))
        };
        listing(&self.get(&path).await)
    }

    pub async fn update_group(&self, team_id: i64, group_id: i64, body: &Value) -> ApiResponse {
        self.post_json(&group_path(team_id, group_id), body).await
    }

    pub async fn delete_groups(&self, team_id: i64, group_ids: &[i64]) -> ApiResponse {
        self.post_json(
            &delete_groups_path(team_id),
            &json!({"group_ids": group_ids}),
        )
        .await
    }

    // users

    pub async fn try_register(&self, body: &Value) -> ApiResponse {
        self.post_json("/api/sso/users", body).await
    }

    pub async fn register(&self, openid: &str, nickname: &str, avatar: &str) -> User {
        let response = self
            .try_register(&json!({"openid": openid, "nickname": nickname, "avatar": avatar}))
            .await;
        let data = assert_ok(&response);
        User {
            user_id: data["user_id"]
                .as_i64()
                .unwrap_or_else(|| panic!("register answered without user_id: {data}")),
            respondent_id: data["respondent_id"]
                .as_i64()
                .unwrap_or_else(|| panic!("register answered without respondent_id: {data}")),
        }
    }

    /// Register `openid` with itself as nickname; returns the user id.
    pub async fn register_user(&self, openid: &str) -> i64 {
        self.register(openid, openid, "").await.user_id
    }

    // members

    pub async fn add_member(
        &self,
        team_id: i64,
        group_id: i64,
        user_id: i64,
        body: &Value,
    ) -> ApiResponse {
        self.post_json(&member_path(team_id, group_id, user_id), body)
            .await
    }

    /// Add a member that must be accepted; `role` as in the body (None = default).
    pub async fn add_member_ok(
        &self,
        team_id: i64,
        group_id: i64,
        user_id: i64,
        role: Option<i64>,
    ) {
        let body = match role {
            Some(role) => json!({"role": role}),
            None => json!({}),
        };
        let response = self.add_member(team_id, group_id, user_id, &body).await;
        assert_eq!(
            assert_ok(&response),
            json!({}),
            "add member returns no data"
        );
    }

    pub async fn update_member(&self, team_id: i64, user_id: i64, body: &Value) -> ApiResponse {
        self.post_json(&member_update_path(team_id, user_id), body)
            .await
    }

    pub async fn remove_member(&self, team_id: i64, group_id: i64, user_id: i64) -> ApiResponse {
        self.delete(&member_path(team_id, group_id, user_id)).await
    }

    /// GET the members of a group with `query` (e.g. `"recursive=true&per_page=100"`).
    pub async fn members(&self, team_id: i64, group_id: i64, query: &str) -> Listing {
        let path = if query.is_empty() {
            members_path(team_id, group_id)
        } else {
            format!("{}?{query}", members_path(team_id, group_id))
        };
        listing(&self.get(&path).await)
    }
}

/// What the app serves from its copy of the directory equals what a second process loads from
/// the database: the groups, tombstones included, and the members of the directory and of each
/// group. A sync's writes reach the copy as changes, not by reading the rows back, so without
/// this a wrong database write would not be seen through the API.
pub async fn assert_stored_as_served(app: &TestApp, api: &Api<'_>) {
    let replica = app.replica().await;
    let fresh = Api::new(&replica, &api.appid, &api.token);
    let every = "include_invalid=true&per_page=1000";
    let served = api.list_groups(app.team_id, every).await.list;
    assert_eq!(fresh.list_groups(app.team_id, every).await.list, served);
    let mut groups = vec![0];
    groups.extend(
        api.list_groups(app.team_id, "per_page=1000")
            .await
            .ints("id"),
    );
    for group in groups {
        let served = api.members(app.team_id, group, "per_page=1000").await.list;
        let stored = fresh
            .members(app.team_id, group, "per_page=1000")
            .await
            .list;
        assert_eq!(stored, served, "the members of group {group}");
    }
}
