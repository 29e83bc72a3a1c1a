//! The storage traits called directly, directory writes: changes read back, version checks,
//! batches, steps and removals, member names, dangling references (fixtures in `store.rs`).

use contactsd::domain::directory::{Change, GroupRef, GroupStep, Kept};
use contactsd::domain::events::{Actor, ActorKind, Draft, EventType, Subject};
use contactsd::domain::sync::MemberState;
use contactsd::domain::values::{
    Avatar, GroupId, GroupName, Nickname, ROOT_GROUP, Role, Source, TeamId, UserId,
};
use contactsd::store::{
    ChangeChunks, DanglingKind, DanglingReferences, LargeWrite, MemberDetails, MemberProfile,
    StoreError,
};

use crate::store::{
    NOW, app, apply, avatar_of, create, create_org, execute_unchecked, feed_of, fresh_store, group,
    member, new_org, new_user, nickname_of, no_events, org_of_three, placed, put, stored_groups,
    stored_members, users,
};

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
    // Bob's memberships went with him: no table cascades a removal, the store deletes them.
    assert_eq!(store.dangling_references().await.expect("check"), vec![]);
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
    let third = write(acme, 2, "A5").await.expect("after the refusals");
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

/// A team's later write in a batch that the database refuses after its check in memory passed
/// (here a remote id taken, which the service's copy would have refused first). SQLite undoes it
/// alone and the batch goes on. PostgreSQL runs such a write without a savepoint of its own, so
/// it loses the batch: nothing of it is committed, and the batch says so (the committing task
/// then has its writes decided again).
#[tokio::test]
async fn a_teams_later_write_the_database_refuses_is_undone_or_loses_the_batch() {
    let (database, store) = fresh_store().await;
    let (_, acme) = create_org(&*store, new_org("Acme", None)).await;
    let mut batch = store.begin_batch().await.expect("batch");
    let mut write = async |expected, name: &str| {
        batch
            .apply(acme, expected, &[create(name)], no_events(), None, NOW)
            .await
    };
    write(0, "A1").await.expect("the first write");
    let taken = write(1, "A1").await;
    assert!(taken.is_err(), "{taken:?}");
    let after = write(1, "A2").await;
    let lost = batch.lost();
    let committed = batch.commit().await;
    let stored: Vec<String> = stored_groups(&*store, acme)
        .await
        .into_iter()
        .map(|(_, _, name, _, _)| name)
        .collect();
    let version = store.team(acme).await.expect("team").map(|t| t.version);
    if database.url.starts_with("sqlite:") {
        assert_eq!(after.expect("after the refusal").version, 2);
        assert!(!lost);
        committed.expect("commit");
        assert_eq!((stored, version), (vec!["A1".into(), "A2".into()], Some(2)));
    } else {
        assert!(matches!(after, Err(StoreError::BatchFailed)), "{after:?}");
        assert!(lost);
        assert!(committed.is_err(), "a lost batch commits nothing");
        assert_eq!((stored, version), (Vec::<String>::new(), Some(0)));
    }
}

/// PostgreSQL draws a batch's group ids ahead, more at each draw (`SpareIds`); whatever it
/// holds, every created group gets an id of its own, ascending in the order of the writes, a
/// refused write in the middle included, and a write creating a parent and its child names the
/// right parent.
#[tokio::test]
async fn many_creates_in_one_batch_get_ids_of_their_own_in_order() {
    let (_database, store) = fresh_store().await;
    let (_, team_id) = create_org(&*store, new_org("Acme", None)).await;
    let (_, beta) = create_org(&*store, new_org("Beta", None)).await;
    let beta_group = apply(&*store, beta, 0, &[create("G3")], no_events(), NOW)
        .await
        .expect("Beta's group")
        .created;
    let mut batch = store.begin_batch().await.expect("batch");
    let mut ids = Vec::new();
    let mut version = 0;
    for n in 0..40 {
        let changes = if n % 10 == 9 {
            // A parent and its child in one write: two ids at once.
            vec![
                create(&format!("G{n}")),
                Change::CreateGroup {
                    parent: GroupRef::New(0),
                    group: group(&format!("G{n} child"), &format!("G{n}c"), 0),
                },
            ]
        } else {
            vec![create(&format!("G{n}"))]
        };
        let applied = batch
            .apply(team_id, version, &changes, no_events(), None, NOW)
            .await
            .expect("a create");
        version = applied.version;
        ids.extend(applied.created);
        if n == 20 {
            // Beta's first write in the batch, its remote id taken: refused by the database
            // after its ids were drawn.
            let taken = batch
                .apply(beta, 1, &[create("G3")], no_events(), None, NOW)
                .await;
            assert!(taken.is_err(), "{taken:?}");
        }
    }
    batch.commit().await.expect("commit");
    assert_eq!(ids.len(), 44);
    assert!(ids.is_sorted_by(|a, b| a < b), "{ids:?}");
    let stored = stored_groups(&*store, team_id).await;
    let mut stored_ids: Vec<GroupId> = stored.iter().map(|(id, ..)| *id).collect();
    stored_ids.sort_unstable();
    assert_eq!(stored_ids, ids);
    let beta_stored: Vec<GroupId> = stored_groups(&*store, beta)
        .await
        .iter()
        .map(|(id, ..)| *id)
        .collect();
    assert_eq!(beta_stored, beta_group);
    for (id, parent, name, ..) in &stored {
        if let Some(parent_name) = name.strip_suffix(" child") {
            let (parent_id, ..) = stored
                .iter()
                .find(|(_, _, name, ..)| name == parent_name)
                .expect("the parent");
            assert_eq!(parent, parent_id, "{id:?}");
        } else {
            assert_eq!(*parent, ROOT_GROUP, "{name}");
        }
    }
}

/// The events of a batch's writes are stored with them (PostgreSQL holds a small write's events
/// until the commit, `HeldEvents`): each write's events with its own actor and request, numbered
/// per team without gaps, and none of a write the database refused.
#[tokio::test]
async fn events_of_a_batch_are_stored_per_write_and_none_of_a_refused_one() {
    let (_database, store) = fresh_store().await;
    let (_, acme) = create_org(&*store, new_org("Acme", None)).await;
    let (_, beta) = create_org(&*store, new_org("Beta", None)).await;
    apply(&*store, beta, 0, &[create("A")], no_events(), NOW)
        .await
        .expect("Beta's group, without events");
    let created = group_created();
    let actor = |request: &str| Actor {
        kind: ActorKind::App,
        appid: Some("app-1".to_owned()),
        request_id: Some(request.to_owned()),
    };
    let mut batch = store.begin_batch().await.expect("batch");
    let mut write = async |team_id, expected, name: &str, request: &str| {
        let drafts = [created.clone()];
        batch
            .apply(
                team_id,
                expected,
                &[create(name)],
                (&actor(request), &drafts),
                None,
                NOW,
            )
            .await
    };
    let first = write(acme, 0, "A", "r1").await.expect("a create");
    // Beta's first write in the batch, its remote id taken: refused by the database after its
    // event numbers were taken.
    let taken = write(beta, 1, "A", "r2").await;
    assert!(taken.is_err(), "{taken:?}");
    let other = write(beta, 1, "B", "r3").await.expect("after a refusal");
    let second = write(acme, 1, "C", "r4").await.expect("Acme's second");
    batch.commit().await.expect("commit");
    let feed = |team_id| {
        let store = store.clone();
        async move {
            feed_of(&*store, team_id)
                .await
                .into_iter()
                .map(|e| {
                    (
                        e.seq.get(),
                        e.event_type,
                        e.object_id,
                        e.remote_id,
                        e.request_id,
                        e.appid,
                        e.time,
                    )
                })
                .collect::<Vec<_>>()
        }
    };
    let event = |seq: i64, applied: &contactsd::store::Applied, remote: &str, request: &str| {
        (
            seq,
            "group.created".to_owned(),
            Some(applied.created[0].get()),
            Some(remote.to_owned()),
            Some(request.to_owned()),
            Some("app-1".to_owned()),
            NOW,
        )
    };
    assert_eq!(
        feed(acme).await,
        vec![event(1, &first, "A", "r1"), event(2, &second, "C", "r4")]
    );
    assert_eq!(feed(beta).await, vec![event(1, &other, "B", "r3")]);
    // The team's last number was stored with the commit (PostgreSQL held the second write's
    // bump): the next batch numbers on from it.
    let drafts = [created];
    let next = apply(
        &*store,
        acme,
        2,
        &[create("D")],
        (&actor("r5"), &drafts),
        NOW,
    )
    .await
    .expect("the next batch");
    assert_eq!(feed(acme).await.last(), Some(&event(3, &next, "D", "r5")));
}

/// The event of a write that creates one group.
fn group_created() -> Draft {
    Draft {
        event_type: EventType::GroupCreated,
        subject: Subject::Group(GroupRef::New(0)),
        change: Some(0),
        before: None,
        after: None,
    }
}

/// A team's writes after its first in a batch are checked against what the batch wrote, and on
/// PostgreSQL their version bumps are held for the commit (`HeldVersions`): a sync in the same
/// batch checks the team's row itself, so it must find the writes before it there, and a
/// write after the sync goes on from the sync's version and event numbers.
#[tokio::test]
async fn a_sync_in_a_batch_goes_on_from_the_writes_before_it() {
    let (_database, store) = fresh_store().await;
    let (_, acme) = create_org(&*store, new_org("Acme", None)).await;
    let drafts = [group_created()];
    let actor = Actor {
        kind: ActorKind::App,
        appid: Some("app-1".to_owned()),
        request_id: None,
    };
    let mut batch = store.begin_batch().await.expect("batch");
    let mut versions = Vec::new();
    for (expected, name) in [(0, "A"), (1, "B")] {
        let applied = batch
            .apply(
                acme,
                expected,
                &[create(name)],
                (&actor, &drafts),
                None,
                NOW,
            )
            .await
            .expect("a small write");
        versions.push(applied.version);
    }
    let synced = batch
        .apply_chunks(
            LargeWrite {
                team_id: acme,
                expected_version: 2,
                now: NOW,
            },
            &mut GivenChunks::of(vec![vec![create("C")]]),
            &actor,
        )
        .await
        .expect("the sync finds the version the batch wrote");
    versions.push(synced.version);
    let after = batch
        .apply(acme, 3, &[create("D")], (&actor, &drafts), None, NOW)
        .await
        .expect("a write after the sync");
    versions.push(after.version);
    batch.commit().await.expect("commit");
    assert_eq!(versions, vec![1, 2, 3, 4]);
    assert_eq!(
        store.team(acme).await.expect("team").map(|t| t.version),
        Some(4)
    );
    let feed: Vec<(i64, Option<String>)> = feed_of(&*store, acme)
        .await
        .into_iter()
        .map(|event| (event.seq.get(), event.remote_id))
        .collect();
    assert_eq!(
        feed,
        vec![
            (1, Some("A".to_owned())),
            (2, Some("B".to_owned())),
            (3, Some("D".to_owned()))
        ]
    );
    let names: Vec<String> = stored_groups(&*store, acme)
        .await
        .into_iter()
        .map(|(_, _, name, _, _)| name)
        .collect();
    assert_eq!(names, vec!["A", "B", "C", "D"]);
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

/// A member put with its name or avatar kept keeps the stored one, whatever its row says; a
/// member new to the directory gets the row's. Runs of different kept fields are written in
/// order.
#[tokio::test]
async fn a_member_put_keeping_its_name_or_avatar_keeps_the_stored_ones() {
    let (_database, store, team_id, [ann, bob, cid]) = org_of_three().await;
    let profiled = |user_id, name: &str, kept: Kept| {
        let mut row = member(user_id, Role::Member, name);
        row.avatar = avatar_of(&format!("{name}.png"));
        Change::PutMember {
            member: row,
            groups: Some(vec![]),
            kept,
        }
    };
    let written = [
        profiled(ann, "Ann", Kept::NONE),
        profiled(bob, "Bob", Kept::NONE),
    ];
    apply(&*store, team_id, 0, &written, no_events(), NOW)
        .await
        .expect("apply");
    let (name_kept, avatar_kept) = (
        Kept {
            nickname: true,
            avatar: false,
        },
        Kept {
            nickname: false,
            avatar: true,
        },
    );
    let changes = [
        profiled(ann, "x", Kept::BOTH),
        profiled(bob, "Robert", avatar_kept),
        profiled(cid, "Cid", Kept::BOTH),
        profiled(ann, "new", name_kept),
    ];
    apply(&*store, team_id, 1, &changes, no_events(), NOW)
        .await
        .expect("apply");
    for (user_id, name, avatar) in [
        (ann, "Ann", "new.png"),
        (bob, "Robert", "Bob.png"),
        (cid, "Cid", "Cid.png"),
    ] {
        let details = store
            .member_details(team_id, user_id)
            .await
            .expect("details");
        let details = details.expect("a member");
        assert_eq!(
            (details.nickname.as_str(), details.avatar.as_str()),
            (name, avatar)
        );
    }
}

#[tokio::test]
async fn member_names_fall_back_to_the_users_own() {
    let (_database, store) = fresh_store().await;
    app(&*store, "app", None).await;
    let (_, team_id) = create_org(&*store, new_org("Acme", None)).await;
    let ann = store
        .register_user("app", new_user("ann", "Ann", "ann.png"), NOW)
        .await
        .expect("register");
    let bob = store
        .register_user("app", new_user("bob", "Bob", "bob.png"), NOW)
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
                groups: Some(vec![]),
                kept: Kept::NONE,
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

    let stored = store.member_states(team_id).await.expect("states");
    let stored = stored.expect("the team's members");
    // Of the version the one write made.
    assert_eq!(stored.version, 1);
    let mut states = stored.states;
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
    let unknown = store.member_states(TeamId::new(424_242)).await;
    assert_eq!(unknown.expect("no error"), None, "no such team");
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

/// A large write's chunks as given, each with its events.
pub(crate) struct GivenChunks(std::vec::IntoIter<(Vec<Change>, Vec<Draft>)>);

impl GivenChunks {
    /// Chunks without events.
    pub(crate) fn of(chunks: Vec<Vec<Change>>) -> GivenChunks {
        GivenChunks::with_events(
            chunks
                .into_iter()
                .map(|chunk| (chunk, Vec::new()))
                .collect(),
        )
    }

    pub(crate) fn with_events(chunks: Vec<(Vec<Change>, Vec<Draft>)>) -> GivenChunks {
        GivenChunks(chunks.into_iter())
    }
}

impl ChangeChunks for GivenChunks {
    fn next_chunk(&mut self) -> Option<(Vec<Change>, Vec<Draft>)> {
        self.0.next()
    }

    fn written(&mut self, _: Vec<Change>, _: &[GroupId]) {}
}

/// A large write's events are stored as they were made, whatever characters they hold (they
/// go as arrays on PostgreSQL and as one multi-row statement per chunk on SQLite): a name and
/// a remote id with backslashes and quotes, and a request id, which a client chooses, with a
/// tab.
#[tokio::test]
async fn a_large_writes_events_keep_every_character() {
    let (_database, store) = fresh_store().await;
    let (_, team_id) = create_org(&*store, new_org("Acme", None)).await;
    let (name, remote_id) = (r#"Back\slash "quoted" \n"#, r"r\1\N");
    let actor = Actor {
        kind: ActorKind::App,
        appid: Some("app-1".to_owned()),
        request_id: Some("req\tid\\x".to_owned()),
    };
    let chunk = vec![Change::CreateGroup {
        parent: GroupRef::Existing(ROOT_GROUP),
        group: group(name, remote_id, 0),
    }];
    let mut batch = store.begin_large_batch().await.expect("batch");
    let write = LargeWrite {
        team_id,
        expected_version: 0,
        now: NOW,
    };
    let mut chunks = GivenChunks::with_events(vec![(chunk, vec![group_created()])]);
    batch
        .apply_chunks(write, &mut chunks, &actor)
        .await
        .expect("the write");
    batch.commit().await.expect("commit");
    let events = feed_of(&*store, team_id).await;
    let [event] = events.as_slice() else {
        panic!("one event: {events:?}");
    };
    assert_eq!(event.remote_id.as_deref(), Some(remote_id));
    assert_eq!(event.request_id, actor.request_id);
    assert_eq!(event.before, None);
    let after: serde_json::Value =
        serde_json::from_str(event.after.as_deref().expect("the created group")).expect("JSON");
    assert_eq!(after["name"], serde_json::json!(name), "{after}");
}

/// Both backends send a chunked write's queries without waiting for each (SQLite 500 rows a
/// query, PostgreSQL 1,000): the refused one is in flight when the next is made, and the rows
/// of the queries before it are undone all the same.
#[tokio::test]
async fn a_chunked_write_refused_in_its_middle_writes_nothing() {
    let (_database, store) = fresh_store().await;
    let (_, team_id) = create_org(&*store, new_org("Acme", None)).await;
    let names = |chunk: usize| (0..600).map(move |n| format!("c{chunk}-{n}"));
    let mut chunks: Vec<Vec<Change>> = (0..3)
        .map(|chunk| names(chunk).map(|name| create(&name)).collect())
        .collect();
    // The second chunk takes a remote id the first holds, in a query sent with the first's
    // last rows, while the third chunk is made.
    chunks[1][0] = Change::CreateGroup {
        parent: GroupRef::Existing(ROOT_GROUP),
        group: group("Again", "c0-7", 0),
    };
    let mut batch = store.begin_large_batch().await.expect("batch");
    let refused = batch
        .apply_chunks(
            LargeWrite {
                team_id,
                expected_version: 0,
                now: NOW,
            },
            &mut GivenChunks::of(chunks),
            no_events().0,
        )
        .await;
    assert!(
        refused.is_err(),
        "{:?}",
        refused.map(|applied| applied.version)
    );
    batch
        .commit()
        .await
        .expect("the batch commits what stands: nothing");
    assert_eq!(stored_groups(&*store, team_id).await, Vec::new());
    assert_eq!(
        store.team(team_id).await.expect("team").map(|t| t.version),
        Some(0)
    );
    // The team is written to as before.
    let applied = apply(&*store, team_id, 0, &[create("After")], no_events(), NOW)
        .await
        .expect("apply");
    assert_eq!(applied.version, 1);
}

/// A large write into a team without members inserts them without `ON CONFLICT` on
/// PostgreSQL; a member the write touched already (put, stepped or removed) is written as any
/// other, so a member named in several chunks ends as the last change says, as it does in a
/// small write.
#[tokio::test]
async fn a_large_write_into_an_empty_team_naming_members_again_ends_as_the_last_change_says() {
    let (_database, store, team_id, [ann, bob, cid]) = org_of_three().await;
    let (a, b) = (GroupRef::New(0), GroupRef::New(1));
    let chunks = vec![
        vec![create("a"), create("b")],
        vec![put(ann, "first", &[a]), put(bob, "", &[a, b])],
        vec![
            Change::StepMember {
                member: member(cid, Role::Member, ""),
                group: ROOT_GROUP,
                step: GroupStep::Join,
            },
            put(ann, "second", &[b]),
        ],
        vec![Change::RemoveMember(bob)],
        vec![put(cid, "", &[b])],
        vec![put(bob, "back", &[a])],
    ];
    let mut batch = store.begin_large_batch().await.expect("batch");
    let write = LargeWrite {
        team_id,
        expected_version: 0,
        now: NOW,
    };
    let applied = batch
        .apply_chunks(write, &mut GivenChunks::of(chunks), no_events().0)
        .await
        .expect("written");
    batch.commit().await.expect("committed");
    let [a_id, b_id] = applied.created[..] else {
        panic!("two groups")
    };
    assert_eq!(
        stored_members(&*store, team_id).await,
        vec![
            (ann, placed(Role::Member, &[b_id])),
            (bob, placed(Role::Member, &[a_id])),
            (cid, placed(Role::Member, &[b_id])),
        ]
    );
}
