//! The storage traits called directly, on a fresh database of the backend under test (SQLite by
//! default, PostgreSQL when `CONTACTSD_TEST_DATABASE_URL` is set): every method of `Store`, what
//! it answers and what reading back shows afterwards, so that both backends are held to the same
//! answers without HTTP in between. Apps, orgs and users here, with the fixtures; directory
//! writes in `store_directory.rs`.

use std::sync::Arc;

use contactsd::domain::access::Plan;
use contactsd::domain::directory::{Change, Group, GroupRef, Kept, MemberRow, Placement};
use contactsd::domain::events::{Actor, ActorKind, Draft, Event};
use contactsd::domain::values::{
    Avatar, EventSeq, GroupId, GroupName, Nickname, OrgId, OrgName, ROOT_GROUP, RemoteId, Role,
    Source, TeamId, UserId,
};
use contactsd::store::{
    AppRecord, Applied, MemberDetails, NewApp, NewOrg, NewUser, OrgCreation, Store, StoreError,
    StoreSettings, TokenRecord,
};

use crate::helpers::TestDatabase;

pub const NOW: i64 = 1_700_000_000;

/// A write with no events (the store's own tests; events are tested through the API).
pub fn no_events() -> (&'static Actor, &'static [Draft]) {
    static ADMIN: Actor = Actor {
        kind: ActorKind::Admin,
        appid: None,
        request_id: None,
    };
    (&ADMIN, &[])
}
/// The first ids both backends hand out (orgs, users, respondents).
const FIRST_ORG_ID: OrgId = OrgId::new(60_000_000_001);
const FIRST_USER_ID: UserId = UserId::new(100_000_001);
const FIRST_RESPONDENT_ID: i64 = 500_000_001;

/// A fresh database and the store open on it (the database lives as long as the store is used).
pub async fn fresh_store() -> (TestDatabase, Arc<dyn Store>) {
    let database = TestDatabase::fresh().await;
    let store = contactsd::store::open(&database.url, &StoreSettings::default())
        .await
        .unwrap_or_else(|error| panic!("cannot open {}: {error}", database.url));
    (database, store)
}

/// Run `sql` on the database behind the store's back, with SQLite's foreign keys off: what a
/// hand edit or a bug could leave behind.
pub async fn execute_unchecked(url: &str, sql: &str) {
    use sqlx::Connection;
    if url.starts_with("sqlite:") {
        let mut connection = sqlx::SqliteConnection::connect(url).await.expect("connect");
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "PRAGMA foreign_keys = OFF; {sql}"
        )))
        .execute(&mut connection)
        .await
        .unwrap_or_else(|error| panic!("{sql}: {error}"));
    } else {
        let mut connection = sqlx::PgConnection::connect(url).await.expect("connect");
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
            .execute(&mut connection)
            .await
            .unwrap_or_else(|error| panic!("{sql}: {error}"));
    }
}

/// The count `sql` (a `SELECT COUNT(*)`) answers on the database behind the store's back.
pub async fn count_rows(url: &str, sql: &str) -> i64 {
    use sqlx::Connection;
    if url.starts_with("sqlite:") {
        let mut connection = sqlx::SqliteConnection::connect(url).await.expect("connect");
        sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned()))
            .fetch_one(&mut connection)
            .await
            .unwrap_or_else(|error| panic!("{sql}: {error}"))
    } else {
        let mut connection = sqlx::PgConnection::connect(url).await.expect("connect");
        sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned()))
            .fetch_one(&mut connection)
            .await
            .unwrap_or_else(|error| panic!("{sql}: {error}"))
    }
}

/// The team's events from the first on (up to 1,000), read through the store.
pub async fn feed_of(store: &dyn Store, team_id: TeamId) -> Vec<Event> {
    store
        .events(team_id, EventSeq::new(0), 1000)
        .await
        .expect("events")
        .expect("the team")
        .events
}

pub fn new_org(name: &str, creator: Option<(UserId, i64)>) -> NewOrg {
    NewOrg {
        name: OrgName::parse(name).expect("an org name"),
        plan: Plan::Business,
        admin_seats: 10,
        creator_appid: None,
        creator,
    }
}

pub async fn create_org(store: &dyn Store, org: NewOrg) -> (OrgId, TeamId) {
    match store.create_org(org, NOW).await.expect("create_org") {
        OrgCreation::Created { org_id, team_id } => (org_id, team_id),
        OrgCreation::CreatorLimitReached => panic!("unexpected creator limit"),
    }
}

/// A fresh store holding one org and three users of app `app` (ann, bob, cid), not yet
/// members.
pub(crate) async fn org_of_three() -> (TestDatabase, Arc<dyn Store>, TeamId, [UserId; 3]) {
    let (database, store) = fresh_store().await;
    app(&*store, "app", None).await;
    let (_, team_id) = create_org(&*store, new_org("Acme", None)).await;
    let [ann, bob, cid] = users(&*store, "app", &["ann", "bob", "cid"]).await[..] else {
        panic!("three users")
    };
    (database, store, team_id, [ann, bob, cid])
}

/// A valid top-level group named `name`, with `name` as its remote id too.
pub(crate) fn create(name: &str) -> Change {
    Change::CreateGroup {
        parent: GroupRef::Existing(ROOT_GROUP),
        group: group(name, name, 0),
    }
}

pub(crate) fn group(name: &str, remote_id: &str, order: i64) -> Group {
    contactsd::domain::directory::new_group(
        GroupName::parse(name).expect("a name"),
        RemoteId::parse(remote_id).expect("a remote id"),
        order,
        Source::Api,
        NOW,
    )
}

/// Write one batch of changes and commit it, as the service's committer does.
pub(crate) async fn apply(
    store: &dyn Store,
    team_id: TeamId,
    expected_version: i64,
    changes: &[Change],
    events: (&Actor, &[Draft]),
    now: i64,
) -> Result<Applied, StoreError> {
    let mut batch = store.begin_batch().await?;
    let applied = batch
        .apply(team_id, expected_version, changes, events, None, now)
        .await?;
    batch.commit().await?;
    Ok(applied)
}

pub(crate) fn nickname_of(nickname: &str) -> Nickname {
    Nickname::parse(nickname).expect("a nickname")
}

pub(crate) fn avatar_of(avatar: &str) -> Avatar {
    Avatar::parse(avatar).expect("an avatar")
}

pub(crate) fn member(user_id: UserId, role: Role, nickname: &str) -> MemberRow {
    MemberRow {
        user_id,
        role,
        nickname: nickname_of(nickname),
        avatar: Avatar::default(),
        source: Source::Sync,
    }
}

pub(crate) fn put(user_id: UserId, nickname: &str, groups: &[GroupRef]) -> Change {
    Change::PutMember {
        member: member(user_id, Role::Member, nickname),
        groups: Some(groups.to_vec()),
        kept: Kept::NONE,
    }
}

/// A user to register.
pub(crate) fn new_user<'a>(openid: &'a str, nickname: &'a str, avatar: &'a str) -> NewUser<'a> {
    NewUser {
        openid,
        nickname,
        avatar,
    }
}

/// Register `openids` for `appid` and answer their users.
pub(crate) async fn users(store: &dyn Store, appid: &str, openids: &[&str]) -> Vec<UserId> {
    let users: Vec<NewUser> = openids
        .iter()
        .map(|&openid| new_user(openid, openid, ""))
        .collect();
    store
        .register_users(appid, &users, NOW)
        .await
        .expect("register_users")
}

pub async fn app(store: &dyn Store, appid: &str, org_id: Option<OrgId>) {
    let app = NewApp {
        appid: appid.to_owned(),
        name: appid.to_owned(),
        org_id,
        secret_hash: vec![1, 2, 3],
    };
    store.create_app(app, NOW).await.expect("create_app");
}

/// Every group of the stored directory, sorted by id, as `(id, parent, name, remote id, valid)`.
pub(crate) async fn stored_groups(
    store: &dyn Store,
    team_id: TeamId,
) -> Vec<(GroupId, GroupId, String, String, bool)> {
    let directory = store
        .load_directory(team_id)
        .await
        .expect("load")
        .expect("the team");
    let mut groups: Vec<_> = directory
        .all_groups()
        .map(|g| {
            (
                g.id,
                g.parent_id,
                g.name.to_string(),
                g.remote_id.to_string(),
                g.is_valid,
            )
        })
        .collect();
    groups.sort();
    groups
}

/// Every stored member with its placement, sorted by user.
pub(crate) async fn stored_members(store: &dyn Store, team_id: TeamId) -> Vec<(UserId, Placement)> {
    let directory = store
        .load_directory(team_id)
        .await
        .expect("load")
        .expect("the team");
    let mut members: Vec<_> = directory
        .placements()
        .map(|(user_id, placement)| (user_id, placement.clone()))
        .collect();
    members.sort_by_key(|(user_id, _)| *user_id);
    members
}

pub(crate) fn placed(role: Role, groups: &[GroupId]) -> Placement {
    Placement {
        role,
        groups: groups.into(),
    }
}

#[tokio::test]
async fn apps_secrets_and_tokens() {
    let (_database, store) = fresh_store().await;
    assert_eq!(store.count_apps().await.expect("count"), 0);
    app(&*store, "platform", None).await;
    assert_eq!(store.count_apps().await.expect("count"), 1);
    assert_eq!(
        store.app("platform").await.expect("app"),
        Some(AppRecord {
            appid: "platform".to_owned(),
            org_id: None,
            secret_hash: vec![1, 2, 3],
        })
    );
    assert_eq!(store.app("nobody").await.expect("app"), None);

    store
        .put_token("platform", b"first", NOW + 60)
        .await
        .expect("put_token");
    let expected = TokenRecord {
        appid: "platform".to_owned(),
        org_id: None,
        expires_at: NOW + 60,
    };
    assert_eq!(store.token(b"first").await.expect("token"), Some(expected));
    // A new token is the app's only one.
    store
        .put_token("platform", b"second", NOW + 120)
        .await
        .expect("put_token");
    assert_eq!(store.token(b"first").await.expect("token"), None);
    assert_eq!(
        store
            .token(b"second")
            .await
            .expect("token")
            .map(|t| t.expires_at),
        Some(NOW + 120)
    );

    // A new secret replaces the old one and ends the token.
    assert!(store.set_secret("platform", b"new").await.expect("secret"));
    assert_eq!(
        store
            .app("platform")
            .await
            .expect("app")
            .map(|a| a.secret_hash),
        Some(b"new".to_vec())
    );
    assert_eq!(store.token(b"second").await.expect("token"), None);
    assert!(!store.set_secret("nobody", b"new").await.expect("secret"));
    assert_eq!(store.count_apps().await.expect("count"), 1);
}

#[tokio::test]
async fn orgs_teams_and_their_apps() {
    let (_database, store) = fresh_store().await;
    assert_eq!(
        store.team_ids().await.expect("team_ids"),
        Vec::<TeamId>::new()
    );
    let (org_id, team_id) = create_org(&*store, new_org("Acme", None)).await;
    assert_eq!(org_id, FIRST_ORG_ID);
    let (second_org, second_team) = create_org(&*store, new_org("Beta", None)).await;
    assert_eq!(second_org, OrgId::new(FIRST_ORG_ID.get() + 1));
    assert_eq!(
        store.team_ids().await.expect("team_ids"),
        vec![team_id, second_team]
    );

    let org = store.org(org_id).await.expect("org").expect("the org");
    assert_eq!(
        (org.name.as_str(), org.phone.as_str(), org.creator_id),
        ("Acme", "", None)
    );
    assert_eq!(
        (org.access.org_id, org.access.team_id, org.access.plan),
        (org_id, team_id, Plan::Business)
    );
    assert_eq!(
        store.org_access(org_id).await.expect("access"),
        Some(org.access.clone())
    );
    assert_eq!(store.org(OrgId::new(1)).await.expect("org"), None);
    assert_eq!(store.org_access(OrgId::new(1)).await.expect("access"), None);

    let team = store.team(team_id).await.expect("team").expect("the team");
    assert_eq!(
        (team.name.as_str(), team.admin_seats, team.version),
        ("Acme", 10, 0)
    );
    assert_eq!(team.access, org.access);
    assert_eq!(store.team(TeamId::new(999_999)).await.expect("team"), None);

    // The oldest team app; ties broken by appid.
    assert_eq!(store.team_appid(org_id).await.expect("appid"), None);
    app(&*store, "zeta", Some(org_id)).await;
    app(&*store, "alpha", Some(org_id)).await;
    assert_eq!(
        store.team_appid(org_id).await.expect("appid"),
        Some("alpha".to_owned())
    );
    assert_eq!(store.team_appid(second_org).await.expect("appid"), None);
}

#[tokio::test]
async fn an_org_creator_becomes_its_owner_up_to_the_limit() {
    let (_database, store) = fresh_store().await;
    app(&*store, "platform", None).await;
    let user = store
        .register_user("platform", new_user("ann", "Ann", "https://a/ann.png"), NOW)
        .await
        .expect("register");
    let (org_id, team_id) = create_org(&*store, new_org("Acme", Some((user.user_id, 2)))).await;
    create_org(&*store, new_org("Beta", Some((user.user_id, 2)))).await;
    assert_eq!(
        store
            .create_org(new_org("Gamma", Some((user.user_id, 2))), NOW)
            .await
            .expect("create_org"),
        OrgCreation::CreatorLimitReached
    );
    assert_eq!(store.team_ids().await.expect("team_ids").len(), 2);

    let org = store.org(org_id).await.expect("org").expect("the org");
    assert_eq!(
        (
            org.creator_id,
            org.creator_name.as_str(),
            org.creator_avatar.as_str()
        ),
        (Some(user.user_id), "Ann", "https://a/ann.png")
    );
    assert_eq!(
        store
            .member_details(team_id, user.user_id)
            .await
            .expect("details"),
        Some(MemberDetails {
            role: Role::Owner,
            nickname: Nickname::default(),
            avatar: Avatar::default(),
        })
    );
    assert_eq!(
        stored_members(&*store, team_id).await,
        vec![(user.user_id, placed(Role::Owner, &[]))]
    );
}

#[tokio::test]
async fn users_register_once_per_openid_and_app() {
    let (_database, store) = fresh_store().await;
    app(&*store, "one", None).await;
    app(&*store, "two", None).await;
    let ann = store
        .register_user("one", new_user("ann", "Ann", "a.png"), NOW)
        .await
        .expect("register");
    assert_eq!(
        (ann.user_id, ann.respondent_id, ann.nickname.as_str()),
        (FIRST_USER_ID, FIRST_RESPONDENT_ID, "Ann")
    );
    // Again: the same user, with the new profile.
    let again = store
        .register_user("one", new_user("ann", "Annie", "b.png"), NOW)
        .await
        .expect("register");
    assert_eq!(
        (again.user_id, again.respondent_id),
        (ann.user_id, ann.respondent_id)
    );
    assert_eq!(
        (again.nickname.as_str(), again.avatar.as_str()),
        ("Annie", "b.png")
    );
    // The same openid of another app is another user.
    let other = store
        .register_user("two", new_user("ann", "Other", ""), NOW)
        .await
        .expect("register");
    assert_eq!(other.user_id, UserId::new(FIRST_USER_ID.get() + 1));

    assert_eq!(
        store.user_by_openid("one", "ann").await.expect("by openid"),
        Some(again.clone())
    );
    assert_eq!(
        store.user_by_openid("one", "bob").await.expect("by openid"),
        None
    );
    assert_eq!(store.user(ann.user_id).await.expect("user"), Some(again));
    assert_eq!(store.user(UserId::new(1)).await.expect("user"), None);

    let update = |openid, nickname, avatar| store.update_user("two", openid, nickname, avatar);
    let updated = update("ann", Some("Renamed"), None).await.expect("update");
    assert_eq!(updated, Some(other.user_id));
    assert_eq!(
        update("ann", None, Some("c.png")).await.expect("update"),
        updated
    );
    assert_eq!(update("bob", Some("X"), None).await.expect("update"), None);
    let renamed = store
        .user(other.user_id)
        .await
        .expect("user")
        .expect("user");
    assert_eq!(
        (renamed.nickname.as_str(), renamed.avatar.as_str()),
        ("Renamed", "c.png")
    );

    let mut ids = store.app_user_ids("one").await.expect("app_user_ids");
    ids.sort();
    assert_eq!(ids, vec![("ann".to_owned(), ann.user_id)]);
    assert_eq!(store.app_user_ids("nobody").await.expect("ids"), vec![]);
}

/// Users registered in bulk keep every character of their openids, names and avatars (on
/// PostgreSQL they travel as arrays; a build that sent them with `COPY` was checked with it).
#[tokio::test]
async fn bulk_registration_keeps_every_character() {
    let (_database, store) = fresh_store().await;
    app(&*store, "app", None).await;
    let texts = [
        "",
        "plain",
        "tab\there",
        "new\nline",
        "back\\slash \\N",
        "quote ' \" comma ,",
        "ünïcödé 名前 🙂",
        "\\.",
    ];
    let openids: Vec<String> = (0..texts.len())
        .map(|n| format!("{}-{n}", texts[n]))
        .collect();
    let users: Vec<NewUser> = openids
        .iter()
        .zip(texts)
        .map(|(openid, text)| NewUser {
            openid,
            nickname: text,
            avatar: text,
        })
        .collect();
    let registered = store
        .register_users("app", &users, NOW)
        .await
        .expect("register_users");
    for ((user_id, openid), text) in registered.iter().zip(&openids).zip(texts) {
        let user = store.user(*user_id).await.expect("user").expect("a user");
        assert_eq!((user.nickname.as_str(), user.avatar.as_str()), (text, text));
        let found = store.user_by_openid("app", openid).await.expect("user");
        assert_eq!(found.map(|u| u.user_id), Some(*user_id), "{openid:?}");
    }
}

#[tokio::test]
async fn bulk_registration_answers_in_the_order_given() {
    let (_database, store) = fresh_store().await;
    app(&*store, "app", None).await;
    let known = store
        .register_user("app", new_user("known", "Known", ""), NOW)
        .await
        .expect("register");
    // More than one chunk of SQLite's multi-row statements, with an openid named again across
    // chunks and one registered before.
    let mut openids: Vec<String> = (0..1200).map(|n| format!("u{n:04}")).collect();
    openids.insert(700, "u0003".to_owned());
    openids.insert(20, "u0005".to_owned());
    openids.insert(10, "known".to_owned());
    // A second mention brings another nickname, which must not win.
    let mut seen = std::collections::HashSet::new();
    let users: Vec<NewUser> = openids
        .iter()
        .map(|openid| NewUser {
            openid,
            nickname: if seen.insert(openid) {
                openid
            } else {
                "second mention"
            },
            avatar: "",
        })
        .collect();
    let registered = store
        .register_users("app", &users, NOW)
        .await
        .expect("register_users");
    assert_eq!(registered.len(), openids.len());
    // New users are numbered in the order of their first mention, after the known one (not
    // necessarily without gaps: PostgreSQL draws an id for every openid of the batch); the
    // known one keeps its user.
    let mut last = known.user_id;
    let mut first: std::collections::HashMap<&str, UserId> = Default::default();
    for (openid, user_id) in openids.iter().zip(&registered) {
        if openid == "known" {
            assert_eq!(*user_id, known.user_id);
            continue;
        }
        let expected = *first.entry(openid).or_insert_with(|| {
            assert!(*user_id > last, "{openid}: {user_id} after {last}");
            last = *user_id;
            *user_id
        });
        assert_eq!(*user_id, expected, "{openid}");
    }
    // The first mention decides the profile; existing users are left alone.
    let fifth = store
        .user_by_openid("app", "u0005")
        .await
        .expect("user")
        .expect("user");
    assert_eq!(fifth.nickname, "u0005");
    let third = store
        .user_by_openid("app", "u0003")
        .await
        .expect("user")
        .expect("user");
    assert_eq!(third.nickname, "u0003");
    let known_now = store.user(known.user_id).await.expect("user");
    assert_eq!(known_now, Some(known));
    // Again: nothing new.
    assert_eq!(
        store
            .register_users("app", &users, NOW)
            .await
            .expect("again"),
        registered
    );
    assert_eq!(store.app_user_ids("app").await.expect("ids").len(), 1201);
}
