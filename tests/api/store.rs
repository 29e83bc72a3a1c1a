//! The storage traits called directly, on a fresh database of the backend under test (SQLite by
//! default, PostgreSQL when `CONTACTSD_TEST_DATABASE_URL` is set): every method of `Store`, what
//! it answers and what reading back shows afterwards, so that both backends are held to the same
//! answers without HTTP in between.

use std::sync::Arc;

use contactsd::domain::access::Plan;
use contactsd::domain::directory::{Change, Group, GroupRef, GroupStep, MemberRow, Placement};
use contactsd::domain::events::{Actor, ActorKind, Draft};
use contactsd::domain::sync::MemberState;
use contactsd::domain::values::{
    Avatar, GroupId, GroupName, Nickname, OrgId, OrgName, ROOT_GROUP, RemoteId, Role, Source,
    TeamId, UserId,
};
use contactsd::store::{
    AppRecord, Applied, DanglingKind, DanglingReferences, MemberDetails, MemberProfile, NewApp,
    NewOrg, NewUser, OrgCreation, Store, StoreError, StoreSettings, TokenRecord,
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
async fn org_of_three() -> (TestDatabase, Arc<dyn Store>, TeamId, [UserId; 3]) {
    let (database, store) = fresh_store().await;
    app(&*store, "app", None).await;
    let (_, team_id) = create_org(&*store, new_org("Acme", None)).await;
    let [ann, bob, cid] = users(&*store, "app", &["ann", "bob", "cid"]).await[..] else {
        panic!("three users")
    };
    (database, store, team_id, [ann, bob, cid])
}

/// A valid top-level group named `name`, with `name` as its remote id too.
fn create(name: &str) -> Change {
    Change::CreateGroup {
        parent: GroupRef::Existing(ROOT_GROUP),
        group: group(name, name, 0),
    }
}

fn group(name: &str, remote_id: &str, order: i64) -> Group {
    contactsd::domain::directory::new_group(
        GroupName::parse(name).expect("a name"),
        RemoteId::parse(remote_id).expect("a remote id"),
        order,
        Source::Api,
        NOW,
    )
}

/// Write one batch of changes and commit it, as the service's committer does.
async fn apply(
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

fn nickname_of(nickname: &str) -> Nickname {
    Nickname::parse(nickname).expect("a nickname")
}

fn avatar_of(avatar: &str) -> Avatar {
    Avatar::parse(avatar).expect("an avatar")
}

fn member(user_id: UserId, role: Role, nickname: &str) -> MemberRow {
    MemberRow {
        user_id,
        role,
        nickname: nickname_of(nickname),
        avatar: Avatar::default(),
        source: Source::Sync,
    }
}

fn put(user_id: UserId, nickname: &str, groups: &[GroupRef]) -> Change {
    Change::PutMember {
        member: member(user_id, Role::Member, nickname),
        groups: groups.to_vec(),
    }
}

/// Register `openids` for `appid` and answer their users.
async fn users(store: &dyn Store, appid: &str, openids: &[&str]) -> Vec<UserId> {
    let users: Vec<NewUser> = openids
        .iter()
        .map(|&openid| NewUser {
            openid,
            nickname: openid,
            avatar: "",
        })
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
async fn stored_groups(
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
async fn stored_members(store: &dyn Store, team_id: TeamId) -> Vec<(UserId, Placement)> {
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

fn placed(role: Role, groups: &[GroupId]) -> Placement {
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
        .register_user("platform", "ann", "Ann", "https://a/ann.png", NOW)
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
        .register_user("one", "ann", "Ann", "a.png", NOW)
        .await
        .expect("register");
    assert_eq!(
        (ann.user_id, ann.respondent_id, ann.nickname.as_str()),
        (FIRST_USER_ID, FIRST_RESPONDENT_ID, "Ann")
    );
    // Again: the same user, with the new profile.
    let again = store
        .register_user("one", "ann", "Annie", "b.png", NOW)
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
        .register_user("two", "ann", "Other", "", NOW)
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

    assert!(
        store
            .update_user("two", "ann", "Renamed", "c.png")
            .await
            .expect("update")
    );
    assert!(
        !store
            .update_user("two", "bob", "X", "")
            .await
            .expect("update")
    );
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

#[tokio::test]
async fn bulk_registration_answers_in_the_order_given() {
    let (_database, store) = fresh_store().await;
    app(&*store, "app", None).await;
    let known = store
        .register_user("app", "known", "Known", "", NOW)
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
    // New users are numbered in the order of their first mention, after the known one.
    let mut next = known.user_id.get() + 1;
    let mut first: std::collections::HashMap<&str, UserId> = Default::default();
    for (openid, user_id) in openids.iter().zip(&registered) {
        let expected = if openid == "known" {
            known.user_id
        } else {
            *first.entry(openid).or_insert_with(|| {
                next += 1;
                UserId::new(next - 1)
            })
        };
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

#[tokio::test]
async fn directory_writes_are_read_back_and_bump_the_version() {
    let (_database, store) = fresh_store().await;
    app(&*store, "app", None).await;
    let (_, team_id) = create_org(&*store, new_org("Acme", None)).await;
    assert!(
        store
            .load_directory(TeamId::new(999_999))
            .await
            .expect("load")
            .is_none()
    );
    let [ann, bob] = users(&*store, "app", &["ann", "bob"]).await[..] else {
        panic!("two users")
    };

    // Groups created under each other in one batch, members placed in them.
    let applied = apply(
        &*store,
        team_id,
        0,
        &[
            Change::CreateGroup {
                parent: GroupRef::Existing(ROOT_GROUP),
                group: group("Sales", "sales", 5),
            },
            Change::CreateGroup {
                parent: GroupRef::New(0),
                group: group("EU", "eu", 0),
            },
            put(ann, "Ann in Acme", &[GroupRef::New(1)]),
            put(bob, "", &[GroupRef::New(0), GroupRef::New(1)]),
        ],
        no_events(),
        NOW,
    )
    .await
    .expect("apply");
    assert_eq!(applied.version, 1);
    let [sales, eu] = applied.created[..] else {
        panic!("two groups: {:?}", applied.created)
    };
    assert!(sales < eu);
    assert_eq!(
        stored_groups(&*store, team_id).await,
        vec![
            (
                sales,
                ROOT_GROUP,
                "Sales".to_owned(),
                "sales".to_owned(),
                true
            ),
            (eu, sales, "EU".to_owned(), "eu".to_owned(), true),
        ]
    );
    assert_eq!(
        stored_members(&*store, team_id).await,
        vec![
            (ann, placed(Role::Member, &[eu])),
            (bob, placed(Role::Member, &[sales, eu])),
        ]
    );
    let directory = store
        .load_directory(team_id)
        .await
        .expect("load")
        .expect("team");
    assert_eq!(directory.version(), 1);
    assert_eq!(
        store.team(team_id).await.expect("team").map(|t| t.version),
        Some(1)
    );

    // Update: rename and move EU to the root, delete Sales (a tombstone), remove Bob.
    let mut renamed = directory
        .all_groups()
        .find(|g| g.id == eu)
        .expect("eu")
        .clone();
    renamed.name = GroupName::parse("Europe").expect("a name");
    let mut deleted = directory
        .all_groups()
        .find(|g| g.id == sales)
        .expect("sales")
        .clone();
    deleted.is_valid = false;
    let applied = apply(
        &*store,
        team_id,
        1,
        &[
            Change::UpdateGroup {
                group: renamed,
                parent: GroupRef::Existing(ROOT_GROUP),
            },
            Change::UpdateGroup {
                group: deleted,
                parent: GroupRef::Existing(ROOT_GROUP),
            },
            Change::RemoveMember(bob),
        ],
        no_events(),
        NOW,
    )
    .await
    .expect("apply");
    assert_eq!((applied.version, applied.created.len()), (2, 0));
    assert_eq!(
        stored_groups(&*store, team_id).await,
        vec![
            (
                sales,
                ROOT_GROUP,
                "Sales".to_owned(),
                "sales".to_owned(),
                false
            ),
            (eu, ROOT_GROUP, "Europe".to_owned(), "eu".to_owned(), true),
        ]
    );
    assert_eq!(
        stored_members(&*store, team_id).await,
        vec![(ann, placed(Role::Member, &[eu]))]
    );
}

#[tokio::test]
async fn a_write_against_an_old_version_writes_nothing() {
    let (_database, store) = fresh_store().await;
    let (_, team_id) = create_org(&*store, new_org("Acme", None)).await;
    let create = |name: &str| Change::CreateGroup {
        parent: GroupRef::Existing(ROOT_GROUP),
        group: group(name, "", 0),
    };
    apply(&*store, team_id, 0, &[create("First")], no_events(), NOW)
        .await
        .expect("apply");
    let stale = apply(&*store, team_id, 0, &[create("Second")], no_events(), NOW).await;
    assert!(matches!(stale, Err(StoreError::Conflict)), "{stale:?}");
    let ahead = apply(&*store, team_id, 7, &[create("Third")], no_events(), NOW).await;
    assert!(matches!(ahead, Err(StoreError::Conflict)), "{ahead:?}");
    let missing = apply(
        &*store,
        TeamId::new(999_999),
        0,
        &[create("Fourth")],
        no_events(),
        NOW,
    )
    .await;
    assert!(matches!(missing, Err(StoreError::Conflict)), "{missing:?}");
    let names: Vec<String> = stored_groups(&*store, team_id)
        .await
        .into_iter()
        .map(|(_, _, name, _, _)| name)
        .collect();
    assert_eq!(names, vec!["First".to_owned()]);
    assert_eq!(
        store.team(team_id).await.expect("team").map(|t| t.version),
        Some(1)
    );
}

#[tokio::test]
async fn writes_of_one_batch_are_checked_against_what_the_batch_wrote() {
    let (_database, store) = fresh_store().await;
    let (_, acme) = create_org(&*store, new_org("Acme", None)).await;
    let (_, beta) = create_org(&*store, new_org("Beta", None)).await;
    let mut batch = store.begin_batch().await.expect("batch");
    let mut write = async |team_id, expected, name: &str| {
        batch
            .apply(team_id, expected, &[create(name)], no_events(), None, NOW)
            .await
    };
    let first = write(acme, 0, "A1").await.expect("the first write");
    assert_eq!(first.version, 1);
    // Another team's groups between two of Acme's: the ids go on from both.
    let other = write(beta, 0, "B1").await.expect("another team");
    // The versions the batch itself wrote decide: behind, ahead, then the one it wrote.
    let behind = write(acme, 0, "A2").await;
    assert!(matches!(behind, Err(StoreError::Conflict)), "{behind:?}");
    let ahead = write(acme, 5, "A3").await;
    assert!(matches!(ahead, Err(StoreError::Conflict)), "{ahead:?}");
    let second = write(acme, 1, "A4").await.expect("the next version");
    // Refused by the database after its check (a remote id taken; PostgreSQL calls it a
    // conflict): nothing of it stays, and the next write goes on.
    let taken = write(acme, 2, "A4").await;
    assert!(taken.is_err(), "{taken:?}");
    let third = write(acme, 2, "A5").await.expect("after a refusal");
    batch.commit().await.expect("commit");
    assert_eq!((second.version, third.version), (2, 3));
    let ids = [&first, &other, &second, &third].map(|applied| applied.created[0]);
    assert!(ids.is_sorted() && ids[0] < ids[3], "{ids:?}");
    let names = |groups: Vec<(GroupId, GroupId, String, String, bool)>| {
        groups
            .into_iter()
            .map(|(id, _, name, _, _)| (id, name))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        names(stored_groups(&*store, acme).await),
        vec![
            (ids[0], "A1".to_owned()),
            (ids[2], "A4".to_owned()),
            (ids[3], "A5".to_owned())
        ]
    );
    assert_eq!(
        names(stored_groups(&*store, beta).await),
        vec![(ids[1], "B1".to_owned())]
    );
    assert_eq!(
        store.team(acme).await.expect("team").map(|t| t.version),
        Some(3)
    );
}

#[tokio::test]
async fn a_member_named_twice_in_one_write_ends_as_the_last_change_says() {
    let (_database, store, team_id, [ann, bob, cid]) = org_of_three().await;
    let a = GroupRef::New(0);
    let b = GroupRef::New(1);
    let applied = apply(
        &*store,
        team_id,
        0,
        &[
            create("a"),
            create("b"),
            put(ann, "first", &[a]),
            put(bob, "", &[a, b]),
            put(ann, "second", &[b]),
            put(cid, "", &[a]),
            Change::RemoveMember(cid),
            Change::RemoveMember(cid),
            Change::RemoveMember(bob),
            Change::RemoveMember(cid),
        ],
        no_events(),
        NOW,
    )
    .await
    .expect("apply");
    let [_, b_id] = applied.created[..] else {
        panic!("two groups")
    };
    assert_eq!(
        stored_members(&*store, team_id).await,
        vec![(ann, placed(Role::Member, &[b_id]))]
    );
    assert_eq!(
        store
            .member_details(team_id, ann)
            .await
            .expect("details")
            .map(|d| d.nickname.to_string()),
        Some("second".to_owned())
    );
    // Removed again and put back in one write.
    apply(
        &*store,
        team_id,
        1,
        &[
            Change::RemoveMember(ann),
            Change::RemoveMember(ann),
            put(ann, "back", &[]),
        ],
        no_events(),
        NOW,
    )
    .await
    .expect("apply");
    assert_eq!(
        stored_members(&*store, team_id).await,
        vec![(ann, placed(Role::Member, &[]))]
    );
}

#[tokio::test]
async fn a_member_steps_into_and_out_of_one_group_keeping_its_others() {
    let (_database, store, team_id, [ann, bob, cid]) = org_of_three().await;
    let (a, b) = (GroupRef::New(0), GroupRef::New(1));
    let applied = apply(
        &*store,
        team_id,
        0,
        &[
            create("a"),
            create("b"),
            create("c"),
            put(ann, "", &[a, b]),
            put(bob, "Bob", &[a]),
        ],
        no_events(),
        NOW,
    )
    .await
    .expect("apply");
    let [a, b, c] = applied.created[..] else {
        panic!("three groups")
    };
    let mut copy = store
        .load_directory(team_id)
        .await
        .expect("load")
        .expect("the team");
    let step = |user_id: UserId, role: Role, group: GroupId, step: GroupStep| Change::StepMember {
        member: member(user_id, role, "stepped"),
        group,
        step,
    };
    let changes = [
        step(ann, Role::Member, c, GroupStep::Join),
        step(bob, Role::TeamAdmin, a, GroupStep::Leave),
        // The same member again (a run of its own), a group it is in, one it is not in.
        step(ann, Role::Member, a, GroupStep::Leave),
        step(ann, Role::Member, b, GroupStep::Join),
        step(bob, Role::TeamAdmin, c, GroupStep::Leave),
        // Not a member yet: joins the directory in that group.
        step(cid, Role::Member, b, GroupStep::Join),
    ];
    let applied = apply(&*store, team_id, 1, &changes, no_events(), NOW)
        .await
        .expect("apply");
    let expected = vec![
        (ann, placed(Role::Member, &[b, c])),
        (bob, placed(Role::TeamAdmin, &[])),
        (cid, placed(Role::Member, &[b])),
    ];
    assert_eq!(stored_members(&*store, team_id).await, expected);
    // A stored member keeps its name; a new one gets the row's.
    for (user_id, name) in [(bob, "Bob"), (cid, "stepped")] {
        let details = store
            .member_details(team_id, user_id)
            .await
            .expect("details");
        assert_eq!(
            details.map(|d| d.nickname.to_string()),
            Some(name.to_owned())
        );
    }
    // The copy updated by the same changes equals what is stored.
    copy.apply(&changes, &applied.created, applied.version);
    let mut placements: Vec<_> = copy
        .placements()
        .map(|(user_id, placement)| (user_id, placement.clone()))
        .collect();
    placements.sort_by_key(|(user_id, _)| *user_id);
    assert_eq!(placements, expected);
    assert_eq!(copy.admins_used(), 1);
}

#[tokio::test]
async fn member_names_fall_back_to_the_users_own() {
    let (_database, store) = fresh_store().await;
    app(&*store, "app", None).await;
    let (_, team_id) = create_org(&*store, new_org("Acme", None)).await;
    let ann = store
        .register_user("app", "ann", "Ann", "ann.png", NOW)
        .await
        .expect("register");
    let bob = store
        .register_user("app", "bob", "Bob", "bob.png", NOW)
        .await
        .expect("register");
    let mut admin = member(bob.user_id, Role::TeamAdmin, "Robert");
    admin.avatar = avatar_of("robert.png");
    admin.source = Source::Api;
    apply(
        &*store,
        team_id,
        0,
        &[
            put(ann.user_id, "", &[]),
            Change::PutMember {
                member: admin,
                groups: vec![],
            },
        ],
        no_events(),
        NOW,
    )
    .await
    .expect("apply");

    let mut profiles = store
        .member_profiles(team_id, &[bob.user_id, ann.user_id, UserId::new(424_242)])
        .await
        .expect("profiles");
    profiles.sort_by_key(|p| p.user_id);
    assert_eq!(
        profiles,
        vec![
            MemberProfile {
                user_id: ann.user_id,
                respondent_id: ann.respondent_id,
                name: nickname_of("Ann"),
                avatar: avatar_of("ann.png"),
            },
            MemberProfile {
                user_id: bob.user_id,
                respondent_id: bob.respondent_id,
                name: nickname_of("Robert"),
                avatar: avatar_of("robert.png"),
            },
        ]
    );
    assert_eq!(
        store.member_profiles(team_id, &[]).await.expect("none"),
        vec![]
    );
    assert_eq!(
        store
            .member_details(team_id, bob.user_id)
            .await
            .expect("details"),
        Some(MemberDetails {
            role: Role::TeamAdmin,
            nickname: nickname_of("Robert"),
            avatar: avatar_of("robert.png"),
        })
    );
    assert_eq!(
        store
            .member_details(team_id, UserId::new(424_242))
            .await
            .expect("none"),
        None
    );

    let mut states = store.member_states(team_id).await.expect("states");
    states.sort_by_key(|(user_id, _)| *user_id);
    assert_eq!(
        states,
        vec![
            (
                ann.user_id,
                MemberState {
                    nickname: Nickname::default(),
                    avatar: Avatar::default(),
                    source: Source::Sync,
                }
            ),
            (
                bob.user_id,
                MemberState {
                    nickname: nickname_of("Robert"),
                    avatar: avatar_of("robert.png"),
                    source: Source::Api,
                }
            ),
        ]
    );
}

#[tokio::test]
async fn dangling_references_are_counted_per_kind_and_team() {
    let (database, store) = fresh_store().await;
    store.ping().await.expect("ping");
    app(&*store, "app", None).await;
    let (_, team_id) = create_org(&*store, new_org("Acme", None)).await;
    let [ann] = users(&*store, "app", &["ann"]).await[..] else {
        panic!("one user")
    };
    apply(&*store, team_id, 0, &[put(ann, "", &[])], no_events(), NOW)
        .await
        .expect("apply");
    assert_eq!(store.dangling_references().await.expect("check"), vec![]);

    execute_unchecked(
        &database.url,
        &format!(
            "INSERT INTO memberships (team_id, user_id, group_id) VALUES ({team_id}, 424242, 1); \
             INSERT INTO memberships (team_id, user_id, group_id) VALUES ({team_id}, {ann}, 7); \
             INSERT INTO members (team_id, user_id, role, nickname, avatar, source, created_at, \
             upd_at) VALUES ({team_id}, 31337, 4, '', '', 1, 0, 0); \
             INSERT INTO members (team_id, user_id, role, nickname, avatar, source, created_at, \
             upd_at) VALUES (777777, {ann}, 4, '', '', 1, 0, 0); \
             INSERT INTO app_users (appid, openid, user_id) VALUES ('app', 'ghost', 888888); \
             INSERT INTO app_users (appid, openid, user_id) VALUES ('gone', 'ann', {ann});"
        ),
    )
    .await;
    let mut found = store.dangling_references().await.expect("check");
    found.sort_by_key(|f| (f.team_id, f.kind as u8));
    let row = |kind, team_id, count| DanglingReferences {
        kind,
        team_id,
        count,
    };
    assert_eq!(
        found,
        vec![
            row(DanglingKind::OpenidOfMissingUser, None, 1),
            row(DanglingKind::OpenidOfMissingApp, None, 1),
            row(DanglingKind::MembershipOfNonMember, Some(team_id), 1),
            row(DanglingKind::MembershipOutsideTeam, Some(team_id), 2),
            row(DanglingKind::MemberNotUser, Some(team_id), 1),
            row(
                DanglingKind::MemberOfMissingTeam,
                Some(TeamId::new(777777)),
                1
            ),
        ]
    );
}
