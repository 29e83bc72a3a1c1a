//! SCIM writes through the store directly, on the backend under test: a user created with its
//! member row in one write of a batch, a refused one leaving nothing behind while the batch
//! goes on, the ids of users created in one batch, and a user's row written over only as read.

use std::sync::Arc;

use contactsd::domain::directory::{Change, Directory, Kept, MemberRow, REGISTERED_USER};
use contactsd::domain::values::{Avatar, Nickname, Role, Source, TeamId, UserId};
use contactsd::store::scim::{ScimUserRecord, ScimWrite};
use contactsd::store::{Store, StoreError};

use crate::helpers::TestDatabase;
use crate::store::{NOW, app, create_org, fresh_store, new_org, new_user, no_events};

/// The SCIM create of `name` (its SCIM id derived from it).
fn create(name: &str) -> ScimWrite {
    ScimWrite::Create {
        nickname: Nickname::shortened(name),
        record: ScimUserRecord {
            user_id: REGISTERED_USER,
            scim_id: format!("scim-{name}"),
            user_name_key: name.to_lowercase(),
            external_id: None,
            active: true,
            resource: "{}".to_owned(),
            created_at: NOW,
            updated_at: NOW,
            row_version: 0,
        },
    }
}

/// The member row of the user the write registers.
fn member(name: &str) -> Vec<Change> {
    vec![Change::PutMember {
        member: MemberRow {
            user_id: REGISTERED_USER,
            role: Role::Member,
            nickname: Nickname::shortened(name),
            avatar: Avatar::default(),
            source: Source::Sync,
        },
        groups: Some(Vec::new()),
        kept: Kept::NONE,
    }]
}

/// A fresh store with one team that has a SCIM app, and the team's version.
async fn scim_team() -> (TestDatabase, Arc<dyn Store>, TeamId, i64) {
    let (database, store) = fresh_store().await;
    let (org_id, team_id) = create_org(&*store, new_org("Acme", None)).await;
    app(&*store, "scim-app", Some(org_id)).await;
    store.put_scim_app(team_id, "scim-app").await.expect("app");
    let version = store
        .team(team_id)
        .await
        .expect("team")
        .expect("a team")
        .version;
    (database, store, team_id, version)
}

/// The SCIM rows of `team_id`, as `(user id, userName key)`.
async fn scim_rows(store: &dyn Store, team_id: TeamId) -> Vec<(UserId, String)> {
    store
        .scim_users(team_id)
        .await
        .expect("scim users")
        .into_iter()
        .map(|row| (row.user_id, row.user_name_key))
        .collect()
}

/// The directory of `team_id` as stored.
async fn directory_of(store: &dyn Store, team_id: TeamId) -> Directory {
    store
        .load_directory(team_id)
        .await
        .expect("load")
        .expect("a directory")
}

#[tokio::test]
async fn a_refused_scim_create_leaves_no_user_and_the_batch_goes_on() {
    let (_database, store, team_id, version) = scim_team().await;
    let mut batch = store.begin_batch().await.expect("a batch");
    let mut write = async |name: &str, version: i64| {
        batch
            .apply(
                team_id,
                version,
                &member(name),
                no_events(),
                Some(&create(name)),
                NOW,
            )
            .await
    };
    let ada = write("Ada", version).await.expect("ada");
    // userName is unique without regard to case; another version is refused too.
    let taken = write("ADA", ada.version).await;
    assert!(matches!(taken, Err(StoreError::NameTaken)), "{taken:?}");
    let stale = write("Bob", version).await;
    assert!(matches!(stale, Err(StoreError::Conflict)), "{stale:?}");
    let cy = write("Cy", ada.version).await.expect("cy");
    batch.commit().await.expect("commit");

    let (ada_id, cy_id) = (
        ada.registered.expect("ada's id"),
        cy.registered.expect("cy's id"),
    );
    let rows = scim_rows(&*store, team_id).await;
    assert_eq!(rows, [(ada_id, "ada".to_owned()), (cy_id, "cy".to_owned())]);
    let directory = directory_of(&*store, team_id).await;
    assert_eq!(directory.member_count(), 2);
    assert!(directory.placement(ada_id).is_some() && directory.placement(cy_id).is_some());
    // Registered under the SCIM app: those created, and no other.
    let again = store
        .register_user("scim-app", new_user("scim-Ada", "x", ""), NOW)
        .await
        .expect("ada");
    assert_eq!(again.user_id, ada_id);
    // The refused creates left no registration: their openids become new users, after the last.
    for openid in ["scim-ADA", "scim-Bob"] {
        let fresh = store
            .register_user("scim-app", new_user(openid, "x", ""), NOW)
            .await
            .expect(openid);
        assert!(fresh.user_id > cy_id, "{openid}: {fresh:?}");
    }
}

#[tokio::test]
async fn a_user_created_without_a_membership_in_a_batch_is_counted_by_the_next_create() {
    let (_database, store, team_id, version) = scim_team().await;
    let mut batch = store.begin_batch().await.expect("a batch");
    let mut write = async |name: &str, member_too: bool, version: i64| {
        let changes = if member_too { member(name) } else { Vec::new() };
        let write = create(name);
        batch
            .apply(team_id, version, &changes, no_events(), Some(&write), NOW)
            .await
            .expect(name)
    };
    let ada = write("Ada", true, version).await;
    // An inactive user: a SCIM write with no directory change, between two that have one.
    let ina = write("Ina", false, ada.version).await;
    let cy = write("Cy", true, ada.version).await;
    batch.commit().await.expect("commit");

    let ids = [ada.registered, ina.registered, cy.registered].map(|id| id.expect("an id"));
    assert!(ids[0] < ids[1] && ids[1] < ids[2], "{ids:?}");
    let rows = scim_rows(&*store, team_id).await;
    assert_eq!(
        rows,
        [
            (ids[0], "ada".to_owned()),
            (ids[1], "ina".to_owned()),
            (ids[2], "cy".to_owned())
        ]
    );
    let directory = directory_of(&*store, team_id).await;
    assert_eq!(directory.member_count(), 2);
    assert!(directory.placement(ids[1]).is_none() && directory.placement(ids[2]).is_some());
}

#[tokio::test]
async fn a_users_row_is_written_over_only_as_it_was_read() {
    let (_database, store, team_id, version) = scim_team().await;
    let mut batch = store.begin_batch().await.expect("a batch");
    let created = batch
        .apply(
            team_id,
            version,
            &member("Ada"),
            no_events(),
            Some(&create("Ada")),
            NOW,
        )
        .await
        .expect("ada");
    batch.commit().await.expect("commit");
    let user_id = created.registered.expect("ada's id");
    let read = store
        .scim_user(team_id, "scim-Ada")
        .await
        .expect("read")
        .expect("ada's row");
    assert_eq!(read.row_version, 0);
    let put = |resource: &str, row_version: i64| {
        ScimWrite::Put(ScimUserRecord {
            resource: resource.to_owned(),
            row_version,
            ..read.clone()
        })
    };
    let mut version = created.version;
    let mut write = async |write: ScimWrite| {
        let mut batch = store.begin_batch().await.expect("a batch");
        let applied = batch
            .apply(team_id, version, &[], no_events(), Some(&write), NOW)
            .await;
        batch.commit().await.expect("commit");
        if let Ok(applied) = &applied {
            version = applied.version;
        }
        applied.map(|_| ())
    };
    write(put(r#"{"title":"one"}"#, 0))
        .await
        .expect("over the row read");
    // Another write from the same read comes second: refused, the first one kept.
    let second = write(put(r#"{"title":"two"}"#, 0)).await;
    assert!(
        matches!(second, Err(StoreError::ScimUserChanged)),
        "{second:?}"
    );
    let stored = store.scim_user(team_id, "scim-Ada").await.expect("read");
    let stored = stored.expect("ada's row");
    assert_eq!(
        (stored.resource.as_str(), stored.row_version),
        (r#"{"title":"one"}"#, 1)
    );
    // A delete of the row as first read is refused too; of the row as it is, done.
    let delete = |row_version: i64| ScimWrite::Delete {
        user_id,
        row_version,
    };
    let stale = write(delete(0)).await;
    assert!(
        matches!(stale, Err(StoreError::ScimUserChanged)),
        "{stale:?}"
    );
    write(delete(1)).await.expect("delete");
    // Deleted meanwhile: a write over the row read does not bring it back.
    let resurrected = write(put(r#"{"title":"three"}"#, 1)).await;
    assert!(
        matches!(resurrected, Err(StoreError::ScimUserChanged)),
        "{resurrected:?}"
    );
    assert_eq!(scim_rows(&*store, team_id).await, []);
}
