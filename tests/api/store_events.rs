//! The change feed's storage called directly: a write's time and actor are stored once and
//! given to each of its events, and retention removes a prefix of the events that may end
//! inside a write, keeping what the rest need; a database from before `event_writes` keeps its
//! feed (fixtures in `store.rs`).

use contactsd::domain::directory::{Change, GroupRef};
use contactsd::domain::events::{Actor, ActorKind, Draft, EventType, Subject};
use contactsd::domain::values::{EventSeq, TeamId};
use contactsd::store::{Store, StoreSettings};

use crate::helpers::TestDatabase;
use crate::store::{
    NOW, apply, count_rows, create, create_org, execute_unchecked, feed_of, fresh_store, new_org,
};

/// A write of `names.len()` creates by `request` at `time`, each with its event.
async fn write(
    store: &dyn Store,
    team_id: TeamId,
    version: i64,
    names: &[&str],
    request: &str,
    time: i64,
) {
    let changes: Vec<Change> = names.iter().map(|name| create(name)).collect();
    let drafts: Vec<Draft> = (0..names.len())
        .map(|n| Draft {
            event_type: EventType::GroupCreated,
            subject: Subject::Group(GroupRef::New(n)),
            change: Some(n as u32),
            before: None,
            after: None,
        })
        .collect();
    let actor = Actor {
        kind: ActorKind::App,
        appid: Some("app-1".to_owned()),
        request_id: Some(request.to_owned()),
    };
    apply(store, team_id, version, &changes, (&actor, &drafts), time)
        .await
        .expect("a write");
}

/// The team's events: number, remote id, request id and time.
async fn feed(store: &dyn Store, team_id: TeamId) -> Vec<(i64, String, String, i64)> {
    feed_of(store, team_id)
        .await
        .into_iter()
        .map(|event| {
            (
                event.seq.get(),
                event.remote_id.expect("a remote id"),
                event.request_id.expect("a request id"),
                event.time,
            )
        })
        .collect()
}

fn event(seq: i64, remote: &str, request: &str, time: i64) -> (i64, String, String, i64) {
    (seq, remote.to_owned(), request.to_owned(), time)
}

#[tokio::test]
async fn retention_cuts_inside_a_write_and_the_rest_keep_their_writes_actor() {
    let (database, store) = fresh_store().await;
    let (_, acme) = create_org(&*store, new_org("Acme", None)).await;
    let (_, beta) = create_org(&*store, new_org("Beta", None)).await;
    write(&*store, acme, 0, &["A", "B", "C"], "r1", NOW).await;
    write(&*store, beta, 0, &["X"], "b1", NOW).await;
    write(&*store, acme, 1, &["D", "E"], "r2", NOW + 10).await;
    write(&*store, acme, 2, &["F"], "r3", NOW + 100).await;
    assert_eq!(
        feed(&*store, acme).await,
        vec![
            event(1, "A", "r1", NOW),
            event(2, "B", "r1", NOW),
            event(3, "C", "r1", NOW),
            event(4, "D", "r2", NOW + 10),
            event(5, "E", "r2", NOW + 10),
            event(6, "F", "r3", NOW + 100),
        ]
    );
    let writes = "SELECT COUNT(*) FROM event_writes";
    assert_eq!(
        count_rows(&database.url, writes).await,
        4,
        "one row a write"
    );

    // Two at most: the cut falls inside the first write, whose last event keeps its actor.
    assert_eq!(
        store.prune_events(acme, NOW + 50, 2).await.expect("pruned"),
        2
    );
    let rest = feed(&*store, acme).await;
    assert_eq!(rest[0], event(3, "C", "r1", NOW));
    assert_eq!(rest.len(), 4);
    // The third write is younger than the cut: retention stops before it, whatever the batch.
    assert_eq!(
        store
            .prune_events(acme, NOW + 50, 100)
            .await
            .expect("pruned"),
        3
    );
    assert_eq!(
        feed(&*store, acme).await,
        vec![event(6, "F", "r3", NOW + 100)]
    );
    assert_eq!(
        store
            .prune_events(acme, NOW + 50, 100)
            .await
            .expect("pruned"),
        0
    );
    // The rows of the writes whose events are gone went with them; Beta's are untouched.
    assert_eq!(count_rows(&database.url, writes).await, 2);
    assert_eq!(feed(&*store, beta).await, vec![event(1, "X", "b1", NOW)]);
}

/// Run the migrations before `event_writes` on the database at `url`.
async fn migrate_to_before_event_writes(url: &str) {
    use sqlx::Connection;
    use sqlx::migrate::Migrator;
    let before = |all: Migrator| Migrator {
        migrations: all
            .migrations
            .iter()
            .filter(|migration| migration.description != "event writes")
            .cloned()
            .collect::<Vec<_>>()
            .into(),
        ..Migrator::DEFAULT
    };
    if url.starts_with("sqlite:") {
        let options: sqlx::sqlite::SqliteConnectOptions = url.parse().expect("a SQLite url");
        let mut connection = sqlx::SqliteConnection::connect_with(&options.create_if_missing(true))
            .await
            .expect("connect");
        let migrator = before(sqlx::migrate!("migrations/sqlite"));
        migrator.run(&mut connection).await.expect("migrate");
    } else {
        let mut connection = sqlx::PgConnection::connect(url).await.expect("connect");
        let migrator = before(sqlx::migrate!("migrations/postgres"));
        migrator.run(&mut connection).await.expect("migrate");
    }
}

/// A database written before `event_writes` existed keeps its feed: each stored event keeps its
/// time and actor, and the migration stores them once per run of events that share them.
#[tokio::test]
async fn events_stored_before_event_writes_keep_their_time_and_actor() {
    let database = TestDatabase::fresh().await;
    migrate_to_before_event_writes(&database.url).await;
    let row = |seq: i64, time: i64, kind: &str, request: &str| {
        format!(
            "(1, {seq}, {time}, 'group.created', '{kind}', 'app-1', '{request}', 'group', {seq}, \
             'g{seq}', NULL, NULL)"
        )
    };
    execute_unchecked(
        &database.url,
        &format!(
            "INSERT INTO orgs (id, name, plan, admin_seats, created_at) \
             VALUES (1, 'Acme', 'business', 10, 0); \
             INSERT INTO teams (id, org_id, event_seq) VALUES (1, 1, 5); \
             INSERT INTO events (team_id, seq, time, type, actor_kind, appid, request_id, \
             object_kind, object_id, remote_id, before, after) VALUES {}, {}, {}, {}, {};",
            row(1, NOW, "app", "r1"),
            row(2, NOW, "app", "r1"),
            row(3, NOW, "app", "r2"),
            row(4, NOW + 1, "sync", "r3"),
            row(5, NOW + 1, "sync", "r3"),
        ),
    )
    .await;
    let store = contactsd::store::open(&database.url, &StoreSettings::default())
        .await
        .expect("the store opens and migrates");
    let feed: Vec<_> = feed_of(&*store, TeamId::new(1))
        .await
        .into_iter()
        .map(|event| {
            (
                event.seq.get(),
                event.time,
                event.actor_kind,
                event.request_id,
            )
        })
        .collect();
    let event = |seq, time, kind: &str, request: &str| {
        (seq, time, kind.to_owned(), Some(request.to_owned()))
    };
    assert_eq!(
        feed,
        vec![
            event(1, NOW, "app", "r1"),
            event(2, NOW, "app", "r1"),
            event(3, NOW, "app", "r2"),
            event(4, NOW + 1, "sync", "r3"),
            event(5, NOW + 1, "sync", "r3"),
        ]
    );
    let writes = "SELECT COUNT(*) FROM event_writes";
    assert_eq!(count_rows(&database.url, writes).await, 3, "one row a run");
}

/// A SQLite sync copied in after its decision has taken its event numbers before its events are
/// stored: retention must not mark those numbers removed.
#[tokio::test]
async fn retention_stops_at_the_last_stored_event() {
    let (database, store) = fresh_store().await;
    let (_, acme) = create_org(&*store, new_org("Acme", None)).await;
    write(&*store, acme, 0, &["A", "B", "C"], "r1", NOW).await;
    // Numbers taken for events not yet stored, as a decided sync's copy leaves them.
    execute_unchecked(
        &database.url,
        &format!(
            "UPDATE teams SET event_seq = event_seq + 5 WHERE id = {}",
            acme.get()
        ),
    )
    .await;
    assert_eq!(
        store
            .prune_events(acme, NOW + 50, 100)
            .await
            .expect("pruned"),
        3
    );
    let page = store
        .events(acme, EventSeq::new(0), 10)
        .await
        .expect("events")
        .expect("the team");
    assert_eq!(
        (page.last_seq.get(), page.pruned_through.get()),
        (8, 3),
        "the numbers not yet stored are not marked removed"
    );
}
