//! The storage traits called directly: a large write staged before the database's write lock
//! is taken, one that only adds rows and one that changes stored rows (SQLite; PostgreSQL does
//! not stage, and the tests end there) (fixtures in `store.rs`).

use std::fs::File;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use contactsd::domain::directory::{Change, GroupRef, Kept, Staging};
use contactsd::domain::values::{ROOT_GROUP, Role, TeamId, UserId};
use contactsd::store::{LargeWrite, StagedWrite, Store, StoreError, StoreSettings};

use crate::store::{
    NOW, apply, create, create_org, group, member, new_org, no_events, org_of_three, placed, put,
    stored_groups, stored_members,
};
use crate::store_directory::GivenChunks;

/// The SQLite database file of `url` (`None` on PostgreSQL).
fn database_file(url: &str) -> Option<PathBuf> {
    url.strip_prefix("sqlite://").map(PathBuf::from)
}

/// The staging files beside the SQLite database `file`.
fn staging_files(file: &Path) -> Vec<PathBuf> {
    let prefix = format!("{}-staging-", file.display());
    let folder = file.parent().expect("the database's folder");
    let mut found: Vec<PathBuf> = std::fs::read_dir(folder)
        .expect("the database's folder")
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| path.display().to_string().starts_with(&prefix))
        .collect();
    found.sort();
    found
}

/// Stage, at version 0 of `team_id`, two groups, one inside the other, and two members new to
/// the team: ann in the inner group, bob at the root (`None`: the backend does not stage).
async fn stage_first_sync(
    store: &dyn Store,
    team_id: TeamId,
    [ann, bob]: [UserId; 2],
) -> Option<Box<dyn StagedWrite>> {
    let chunks = vec![
        vec![
            create("Sales"),
            Change::CreateGroup {
                parent: GroupRef::New(0),
                group: group("EU", "eu", 0),
            },
        ],
        vec![put(ann, "Ann", &[GroupRef::New(1)]), put(bob, "Bob", &[])],
    ];
    let staging = Staging {
        new_groups: 2,
        only_adds: true,
    };
    stage(store, team_id, 0, staging, chunks).await
}

/// Stage `chunks` as a write of `team_id` at `expected_version`.
async fn stage(
    store: &dyn Store,
    team_id: TeamId,
    expected_version: i64,
    staging: Staging,
    chunks: Vec<Vec<Change>>,
) -> Option<Box<dyn StagedWrite>> {
    let write = LargeWrite {
        team_id,
        expected_version,
        now: NOW,
    };
    let mut chunks = GivenChunks::of(chunks);
    store
        .stage(write, staging, &mut chunks, no_events().0)
        .await
        .expect("staged")
}

#[tokio::test]
async fn a_staged_write_lets_other_teams_write_until_it_is_copied_in() {
    let (database, store, team_id, [ann, bob, _]) = org_of_three().await;
    let (_, other) = create_org(&*store, new_org("Other", None)).await;
    // Groups were numbered before: the staged ones get the next ids, reserved.
    let before = apply(&*store, other, 0, &[create("Support")], no_events(), NOW)
        .await
        .expect("another team's group");
    let staged = stage_first_sync(&*store, team_id, [ann, bob]).await;
    let Some(file) = database_file(&database.url) else {
        assert!(staged.is_none(), "PostgreSQL stages nothing");
        return;
    };
    let staged = staged.expect("SQLite stages a write that only adds");
    assert_eq!(staging_files(&file).len(), 1);
    // Nothing is visible yet, and the database's write lock is free: another team's write
    // goes through at once (held, it would wait and fail after the write wait).
    assert_eq!(stored_groups(&*store, team_id).await, Vec::new());
    let meanwhile = apply(&*store, other, 1, &[create("Ops")], no_events(), NOW)
        .await
        .expect("another team writes while the sync is staged");

    let applied = staged.commit().await.expect("copied in");
    assert_eq!(applied.version, 1);
    let [sales, eu] = applied.created[..] else {
        panic!("two groups: {:?}", applied.created)
    };
    assert!(
        before.created[0] < sales && sales < eu && eu < meanwhile.created[0],
        "the staged ids were reserved"
    );
    assert_eq!(
        stored_groups(&*store, team_id).await,
        vec![
            (
                sales,
                ROOT_GROUP,
                "Sales".to_owned(),
                "Sales".to_owned(),
                true
            ),
            (eu, sales, "EU".to_owned(), "eu".to_owned(), true),
        ]
    );
    assert_eq!(
        stored_members(&*store, team_id).await,
        vec![
            (ann, placed(Role::Member, &[eu])),
            (bob, placed(Role::Member, &[])),
        ]
    );
    assert_eq!(
        store.team(team_id).await.expect("team").map(|t| t.version),
        Some(1)
    );
    assert_eq!(staging_files(&file), Vec::<PathBuf>::new());
}

/// A sync that renames, moves and deletes groups, changes a member's groups and name and
/// removes another, staged: what is stored afterwards is what the same changes written in
/// place leave, and other teams write meanwhile.
#[tokio::test]
async fn a_staged_write_that_changes_stored_rows_leaves_what_writing_them_in_place_would() {
    let (database, store, team_id, [ann, bob, cid]) = org_of_three().await;
    let (_, other) = create_org(&*store, new_org("Other", None)).await;
    let first = apply(
        &*store,
        team_id,
        0,
        &[
            create("Sales"),
            create("Ops"),
            create("Gone"),
            put(ann, "Ann", &[GroupRef::New(0), GroupRef::New(1)]),
            put(bob, "Bob", &[GroupRef::New(0), GroupRef::New(2)]),
            put(cid, "Cid", &[GroupRef::New(1), GroupRef::New(2)]),
        ],
        no_events(),
        NOW,
    )
    .await
    .expect("the directory before");
    let [sales, ops, gone] = first.created[..] else {
        panic!("three groups")
    };
    let loaded = store
        .load_directory(team_id)
        .await
        .expect("load")
        .expect("the team");
    let stored = |id| loaded.group(id).expect("a stored group").group;
    let mut renamed = stored(ops);
    renamed.name = group("Operations", "Ops", 0).name;
    let mut deleted = stored(gone);
    deleted.is_valid = false;
    let chunks = vec![
        vec![
            Change::CreateGroup {
                parent: GroupRef::Existing(sales),
                group: group("EU", "eu", 0),
            },
            // Renamed and moved under Sales.
            Change::UpdateGroup {
                group: renamed,
                parent: GroupRef::Existing(sales),
            },
            Change::UpdateGroup {
                group: deleted,
                parent: GroupRef::Existing(ROOT_GROUP),
            },
        ],
        // Ann leaves Sales, stays in Ops and joins EU, renamed; bob is removed; cid leaves the
        // deleted group.
        vec![
            put(ann, "Ann Lee", &[GroupRef::Existing(ops), GroupRef::New(0)]),
            Change::RemoveMember(bob),
            put(cid, "Cid", &[GroupRef::Existing(ops)]),
        ],
    ];
    let staging = Staging {
        new_groups: 1,
        only_adds: false,
    };
    let staged = stage(&*store, team_id, 1, staging, chunks).await;
    let Some(file) = database_file(&database.url) else {
        assert!(staged.is_none(), "PostgreSQL stages nothing");
        return;
    };
    let staged = staged.expect("SQLite stages a write that changes stored rows");
    let untouched = stored_members(&*store, team_id).await;
    apply(&*store, other, 0, &[create("Ops")], no_events(), NOW)
        .await
        .expect("another team writes while the sync is staged");
    assert_eq!(stored_members(&*store, team_id).await, untouched);

    let applied = staged.commit().await.expect("copied in");
    assert_eq!(applied.version, 2);
    let [eu] = applied.created[..] else {
        panic!("one group: {:?}", applied.created)
    };
    let text = |name: &str| name.to_owned();
    assert_eq!(
        stored_groups(&*store, team_id).await,
        vec![
            (sales, ROOT_GROUP, text("Sales"), text("Sales"), true),
            (ops, sales, text("Operations"), text("Ops"), true),
            (gone, ROOT_GROUP, text("Gone"), text("Gone"), false),
            (eu, sales, text("EU"), text("eu"), true),
        ]
    );
    assert_eq!(
        stored_members(&*store, team_id).await,
        vec![
            (ann, placed(Role::Member, &[ops, eu])),
            (cid, placed(Role::Member, &[ops])),
        ]
    );
    assert_eq!(
        nicknames(&*store, team_id).await,
        vec![(ann, text("Ann Lee")), (cid, text("Cid"))]
    );
    assert_eq!(staging_files(&file), Vec::<PathBuf>::new());
}

/// The stored members of `team_id` with their nicknames.
async fn nicknames(store: &dyn Store, team_id: TeamId) -> Vec<(UserId, String)> {
    let mut names: Vec<(UserId, String)> = store
        .member_states(team_id)
        .await
        .expect("members")
        .expect("the team's members")
        .states
        .into_iter()
        .map(|(user_id, state)| (user_id, state.nickname.to_string()))
        .collect();
    names.sort();
    names
}

/// A member written with its groups kept (how a sync writes a member it renames without
/// moving) keeps its stored memberships, whether the write is made in place or staged.
#[tokio::test]
async fn a_member_written_with_its_groups_kept_keeps_its_memberships_in_place_and_staged() {
    let (database, store, team_id, [ann, bob, cid]) = org_of_three().await;
    let first = apply(
        &*store,
        team_id,
        0,
        &[
            create("Sales"),
            create("Ops"),
            put(ann, "Ann", &[GroupRef::New(0), GroupRef::New(1)]),
            put(bob, "Bob", &[GroupRef::New(0)]),
            put(cid, "Cid", &[GroupRef::New(1)]),
        ],
        no_events(),
        NOW,
    )
    .await
    .expect("the directory before");
    let [sales, ops] = first.created[..] else {
        panic!("two groups")
    };
    let renamed = |user_id, nickname: &str| Change::PutMember {
        member: member(user_id, Role::SurveyAdmin, nickname),
        groups: None,
        kept: Kept::NONE,
    };
    let in_place = [
        renamed(ann, "Ann Lee"),
        put(cid, "Cid", &[GroupRef::Existing(sales)]),
    ];
    apply(&*store, team_id, 1, &in_place, no_events(), NOW)
        .await
        .expect("written in place");
    let text = |name: &str| name.to_owned();
    assert_eq!(
        stored_members(&*store, team_id).await,
        vec![
            (ann, placed(Role::SurveyAdmin, &[sales, ops])),
            (bob, placed(Role::Member, &[sales])),
            (cid, placed(Role::Member, &[sales])),
        ]
    );
    assert_eq!(
        nicknames(&*store, team_id).await,
        vec![
            (ann, text("Ann Lee")),
            (bob, text("Bob")),
            (cid, text("Cid"))
        ]
    );

    let staging = Staging {
        new_groups: 0,
        only_adds: false,
    };
    let chunks = vec![vec![
        renamed(bob, "Bob Ray"),
        put(cid, "Cid", &[GroupRef::Existing(ops)]),
    ]];
    let Some(staged) = stage(&*store, team_id, 2, staging, chunks).await else {
        assert!(database_file(&database.url).is_none(), "SQLite stages it");
        return;
    };
    staged.commit().await.expect("copied in");
    assert_eq!(
        stored_members(&*store, team_id).await,
        vec![
            (ann, placed(Role::SurveyAdmin, &[sales, ops])),
            (bob, placed(Role::SurveyAdmin, &[sales])),
            (cid, placed(Role::Member, &[ops])),
        ]
    );
    assert_eq!(
        nicknames(&*store, team_id).await,
        vec![
            (ann, text("Ann Lee")),
            (bob, text("Bob Ray")),
            (cid, text("Cid"))
        ]
    );
}

#[tokio::test]
async fn a_staged_write_the_team_moved_past_is_refused_and_copies_nothing() {
    let (database, store, team_id, [ann, bob, _]) = org_of_three().await;
    let staged = stage_first_sync(&*store, team_id, [ann, bob]).await;
    let (Some(file), Some(staged)) = (database_file(&database.url), staged) else {
        return;
    };
    // Another process writes the team between the staging and the copy.
    let written = apply(&*store, team_id, 0, &[create("Ops")], no_events(), NOW)
        .await
        .expect("a write of the same team");
    assert!(matches!(staged.commit().await, Err(StoreError::Conflict)));
    assert_eq!(
        stored_groups(&*store, team_id).await,
        vec![(
            written.created[0],
            ROOT_GROUP,
            "Ops".to_owned(),
            "Ops".to_owned(),
            true
        )]
    );
    assert_eq!(stored_members(&*store, team_id).await, Vec::new());
    assert_eq!(staging_files(&file), Vec::<PathBuf>::new());
    // The writing connection is usable after the refusal.
    let after = apply(&*store, team_id, 1, &[create("After")], no_events(), NOW)
        .await
        .expect("the next write");
    assert_eq!(after.version, 2);
}

#[tokio::test]
async fn staging_files_no_process_holds_are_removed_when_the_database_is_opened() {
    let (database, store, team_id, [ann, bob, _]) = org_of_three().await;
    let Some(file) = database_file(&database.url) else {
        return;
    };
    drop(store);
    let staging = |name: &str| PathBuf::from(format!("{}-staging-{name}", file.display()));
    let abandoned = File::create(staging("abandoned")).expect("create");
    let two_minutes_ago = SystemTime::now() - Duration::from_secs(120);
    abandoned.set_modified(two_minutes_ago).expect("touch");
    // One being made this instant, not yet locked by its maker, is not taken for abandoned.
    File::create(staging("new")).expect("create");
    let held = File::create(staging("held")).expect("create");
    held.set_modified(two_minutes_ago).expect("touch");
    held.lock().expect("lock");
    let owner_only = std::fs::Permissions::from_mode(0o600);
    std::fs::set_permissions(&file, owner_only).expect("chmod");

    let store = contactsd::store::open(&database.url, &StoreSettings::default())
        .await
        .expect("open");
    assert_eq!(staging_files(&file), vec![staging("held"), staging("new")]);

    // The next staged write removes what has been abandoned since. A staging file holds the
    // directory's rows: it gets the database file's permissions, and a staged write given up
    // leaves neither it nor any row behind.
    File::options()
        .write(true)
        .open(staging("new"))
        .expect("open")
        .set_modified(two_minutes_ago)
        .expect("touch");
    let staged = stage_first_sync(&*store, team_id, [ann, bob]).await;
    let created: Vec<PathBuf> = staging_files(&file)
        .into_iter()
        .filter(|path| *path != staging("held"))
        .collect();
    let [created] = &created[..] else {
        panic!("one new staging file: {created:?}")
    };
    let mode = std::fs::metadata(created)
        .expect("stat")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    drop(staged);
    assert_eq!(staging_files(&file), vec![staging("held")]);
    assert_eq!(stored_groups(&*store, team_id).await, Vec::new());
}

/// Whether the SQLite database of `pool` records a copy of `team_id` as pending, and how many
/// member rows of the team it holds.
async fn copy_pending(pool: &sqlx::SqlitePool, team_id: TeamId) -> (bool, i64) {
    sqlx::query_as(
        "SELECT EXISTS (SELECT 1 FROM pending_copies WHERE team_id = $1), \
         (SELECT COUNT(*) FROM members WHERE team_id = $1)",
    )
    .bind(team_id)
    .fetch_one(pool)
    .await
    .expect("the pending copies")
}

/// A staged write of 200,000 members is copied in by short transactions once decided, and
/// another team's write goes between them (with one transaction it waited for the whole copy,
/// docs/HARDENING.md, finding 4).
#[tokio::test]
async fn another_team_writes_between_the_chunks_of_a_decided_copy() {
    let (database, store, team_id, _) = org_of_three().await;
    let (_, other) = create_org(&*store, new_org("Other", None)).await;
    let members: Vec<Change> = (0..200_000)
        .map(|n| put(UserId::new(1_000_000_000 + n), "Member", &[]))
        .collect();
    let staging = Staging {
        new_groups: 0,
        only_adds: true,
    };
    let chunks = members.chunks(10_000).map(<[Change]>::to_vec).collect();
    let Some(staged) = stage(&*store, team_id, 0, staging, chunks).await else {
        return;
    };
    let pool = sqlx::SqlitePool::connect(&database.url)
        .await
        .expect("connect");
    let committing = tokio::spawn(staged.commit());
    // Once the copy of the members has begun:
    loop {
        match copy_pending(&pool, team_id).await {
            (true, copied) if copied > 0 => break,
            (_, copied) => assert!(copied == 0, "all {copied} members copied unseen"),
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    apply(&*store, other, 0, &[create("Ops")], no_events(), NOW)
        .await
        .expect("another team writes during the copy");
    // It waited for one chunk at most, not for the members' whole copy.
    let (pending, copied) = copy_pending(&pool, team_id).await;
    assert!(
        pending && copied < 200_000,
        "the other team's write came after {copied} members were copied"
    );
    let applied = committing.await.expect("joined").expect("copied in");
    assert_eq!(applied.version, 1);
    assert_eq!(stored_members(&*store, team_id).await.len(), 200_000);
    assert_eq!(copy_pending(&pool, team_id).await, (false, 200_000));
}

/// A first sync of ann and bob staged, and decided by hand as a process would decide it (the
/// team's version check and the copy recorded as pending, in one transaction) before being
/// killed after copying the groups alone. Answers the kept staging file (`None`: PostgreSQL).
async fn decided_and_left_half_copied(
    url: &str,
    store: &dyn Store,
    team_id: TeamId,
    users: [UserId; 2],
) -> Option<PathBuf> {
    let file = database_file(url)?;
    let staged = stage_first_sync(store, team_id, users)
        .await
        .expect("SQLite stages");
    let [made] = &staging_files(&file)[..] else {
        panic!("one staging file")
    };
    let kept = PathBuf::from(format!("{}-staging-kept", file.display()));
    std::fs::copy(made, &kept).expect("copy the staging file");
    drop(staged);
    let pool = sqlx::SqlitePool::connect(url).await.expect("connect");
    let mut conn = pool.acquire().await.expect("a connection");
    sqlx::query("ATTACH DATABASE $1 AS kept")
        .bind(kept.display().to_string())
        .execute(&mut *conn)
        .await
        .expect("attach");
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "BEGIN IMMEDIATE; \
         UPDATE teams SET version = version + 1, \
         event_seq = COALESCE((SELECT MAX(seq) FROM kept.events), event_seq) WHERE id = {team}; \
         INSERT INTO pending_copies (team_id, file) VALUES ({team}, '{name}'); \
         INSERT INTO main.groups SELECT * FROM kept.groups; \
         COMMIT; DETACH DATABASE kept",
        team = team_id.get(),
        name = kept.file_name().expect("a name").display()
    )))
    .execute(&mut *conn)
    .await
    .expect("decide by hand");
    drop(conn);
    pool.close().await;
    Some(kept)
}

/// The staged first sync is there whole: the version, the groups, the members in their groups,
/// in the database and in the directory loaded from it.
async fn assert_first_sync_whole(store: &dyn Store, team_id: TeamId, [ann, bob]: [UserId; 2]) {
    let version = store.team(team_id).await.expect("team").expect("a team");
    let groups: Vec<String> = stored_groups(store, team_id)
        .await
        .into_iter()
        .map(|g| g.2)
        .collect();
    let members: Vec<(UserId, usize)> = stored_members(store, team_id)
        .await
        .into_iter()
        .map(|(user, placement)| (user, placement.groups.len()))
        .collect();
    assert_eq!(
        (version.version, groups, members),
        (
            1,
            vec!["Sales".to_owned(), "EU".to_owned()],
            vec![(ann, 1), (bob, 0)]
        )
    );
    let directory = store
        .load_directory(team_id)
        .await
        .expect("load")
        .expect("the team");
    assert_eq!((directory.version(), directory.member_count()), (1, 2));
}

#[tokio::test]
async fn a_decided_copy_a_kill_left_half_done_is_finished_when_the_database_is_opened() {
    let (database, store, team_id, [ann, bob, _]) = org_of_three().await;
    let Some(kept) =
        decided_and_left_half_copied(&database.url, &*store, team_id, [ann, bob]).await
    else {
        return;
    };
    drop(store);
    let store = contactsd::store::open(&database.url, &StoreSettings::default())
        .await
        .expect("open");
    assert!(
        !kept.exists(),
        "the copy is finished and its file removed on opening"
    );
    assert_first_sync_whole(&*store, team_id, [ann, bob]).await;
}

#[tokio::test]
async fn a_directory_load_finishes_a_pending_copy_first_or_waits_for_its_copier() {
    let (database, store, team_id, [ann, bob, _]) = org_of_three().await;
    let Some(kept) =
        decided_and_left_half_copied(&database.url, &*store, team_id, [ann, bob]).await
    else {
        return;
    };
    // Another process copying it holds the file: a load waits for it, and past the write wait
    // is refused, to be retried, rather than reading half a directory.
    let copier = File::open(&kept).expect("open");
    copier.lock().expect("lock");
    let impatient = StoreSettings {
        write_wait: Duration::from_millis(200),
        ..StoreSettings::default()
    };
    let other = contactsd::store::open(&database.url, &impatient)
        .await
        .expect("open beside it");
    assert!(matches!(
        other.load_directory(team_id).await,
        Err(StoreError::Unavailable)
    ));
    // The copier went away unfinished: the next load finishes the copy, then reads.
    drop(copier);
    assert_first_sync_whole(&*store, team_id, [ann, bob]).await;
    assert!(!kept.exists());
}
