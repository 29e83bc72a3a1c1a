//! §5 groups, reads: list with every filter and get one (the writes are in `groups_writes.rs`),
//! and the tree both use.

use std::cmp::Reverse;
use std::collections::BTreeSet;

use contactsd::domain::access::Plan;
use serde_json::json;

use crate::helpers::*;

/// The group fields of §5, no more, no less.
const GROUP_FIELDS: [&str; 12] = [
    "id",
    "team_id",
    "parent_id",
    "source",
    "remote_id",
    "name",
    "full_name",
    "order",
    "is_valid",
    "created_at",
    "upd_at",
    "updated_at",
];

/// A small tree, created in this order:
///
/// ```text
/// A (order -1)        B (order 5)     C (order 0)
/// ├── A1 (order 0)    └── B1 (order 0)
/// └── A2 (order 9)
///     └── A2x (order 0)
/// ```
pub(crate) struct Tree {
    pub(crate) a: i64,
    pub(crate) b: i64,
    pub(crate) c: i64,
    pub(crate) a1: i64,
    pub(crate) a2: i64,
    pub(crate) b1: i64,
    pub(crate) a2x: i64,
}

pub(crate) async fn tree(api: &Api<'_>, team: i64) -> Tree {
    let a = api
        .create_group_with(team, &json!({"name": "A", "order": -1}))
        .await;
    let b = api
        .create_group_with(team, &json!({"name": "B", "order": 5}))
        .await;
    let c = api.create_group_with(team, &json!({"name": "C"})).await;
    let a1 = api
        .create_group_with(team, &json!({"name": "A1", "parent_id": a}))
        .await;
    let a2 = api
        .create_group_with(team, &json!({"name": "A2", "parent_id": a, "order": 9}))
        .await;
    let b1 = api
        .create_group_with(team, &json!({"name": "B1", "parent_id": b}))
        .await;
    let a2x = api
        .create_group_with(team, &json!({"name": "A2x", "parent_id": a2}))
        .await;
    Tree {
        a,
        b,
        c,
        a1,
        a2,
        b1,
        a2x,
    }
}

/// `(id, order)` pairs in the contract's sibling order: `order` descending, then `id`.
fn by_order(mut rows: Vec<(i64, i64)>) -> Vec<i64> {
    rows.sort_by_key(|(id, order)| (Reverse(*order), *id));
    rows.into_iter().map(|(id, _)| id).collect()
}

/// The whole tree in list order: depth, then `order` descending, then `id`.
pub(crate) fn tree_order(t: &Tree) -> Vec<i64> {
    let mut ids = by_order(vec![(t.a, -1), (t.b, 5), (t.c, 0)]);
    ids.extend(by_order(vec![(t.a1, 0), (t.a2, 9), (t.b1, 0)]));
    ids.push(t.a2x);
    ids
}

// ----- §5.1 list ----------------------------------------------------------------------------

#[tokio::test]
async fn the_list_orders_by_depth_then_order_descending_then_id() {
    let app = TestApp::spawn().await;
    let api = app.team_api().await;
    let t = tree(&api, app.team_id).await;

    let listed = api.list_groups(app.team_id, "per_page=100").await;
    assert_eq!(listed.ints("id"), tree_order(&t));
    assert_eq!(listed.total, 7);

    let a2x = listed.row("id", t.a2x);
    assert_eq!(a2x["parent_id"], t.a2);
    assert_eq!(a2x["full_name"], "Acme/A/A2/A2x");
    assert_eq!(a2x["team_id"], app.team_id);
    assert_eq!(listed.row("id", t.b1)["full_name"], "Acme/B/B1");
    for row in &listed.list {
        let keys: BTreeSet<&str> = row
            .as_object()
            .expect("row")
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(keys, GROUP_FIELDS.into_iter().collect(), "{row}");
    }
}

#[tokio::test]
async fn parent_id_lists_direct_children_by_order_descending_then_id() {
    let app = TestApp::spawn().await;
    let api = app.team_api().await;
    let t = tree(&api, app.team_id).await;

    let top = api.list_groups(app.team_id, "parent_id=0").await;
    assert_eq!(
        top.ints("id"),
        by_order(vec![(t.a, -1), (t.b, 5), (t.c, 0)])
    );
    assert_eq!(top.total, 3);

    let under_a = api
        .list_groups(app.team_id, &format!("parent_id={}", t.a))
        .await;
    assert_eq!(under_a.ints("id"), vec![t.a2, t.a1]);
    assert_eq!(under_a.total, 2);
    assert!(under_a.list.iter().all(|row| row["parent_id"] == t.a));

    let leaf = api
        .list_groups(app.team_id, &format!("parent_id={}", t.a2x))
        .await;
    assert_eq!((leaf.list.len(), leaf.total), (0, 0));
}

#[tokio::test]
async fn a_parent_id_that_is_not_a_group_of_this_directory_is_parent_group_not_found() {
    let app = TestApp::spawn().await;
    let api = app.team_api().await;
    let own = api.create_group(app.team_id, "Own", 0).await;
    let other = app.create_org("Other", Plan::Business, 10).await;
    let other_api = app.login(&other.appid, &other.secret).await;
    let foreign = other_api.create_group(other.team_id, "Foreign", 0).await;

    for parent in [own + foreign + 1000, foreign] {
        let response = api
            .get(&format!("{}?parent_id={parent}", groups_path(app.team_id)))
            .await;
        assert_error(&response, 404, "NotFound", "parent_group_not_found");
    }
    let response = api
        .get(&format!("{}?parent_id=abc", groups_path(app.team_id)))
        .await;
    assert_error(&response, 400, "InvalidArgument", "invalid_argument");
}

#[tokio::test]
async fn pages_cover_every_match_once_and_a_page_past_the_end_is_empty_with_the_real_total() {
    let app = TestApp::spawn().await;
    let api = app.team_api().await;
    let t = tree(&api, app.team_id).await;

    let mut seen = Vec::new();
    for page in 1..=3 {
        let listed = api
            .list_groups(app.team_id, &format!("page={page}&per_page=3"))
            .await;
        assert_eq!(listed.total, 7, "page {page}");
        seen.extend(listed.ints("id"));
    }
    assert_eq!(seen, tree_order(&t));

    for page in [4, 1000] {
        let past = api
            .list_groups(app.team_id, &format!("page={page}&per_page=3"))
            .await;
        assert!(past.list.is_empty(), "page {page}: {:?}", past.list);
        assert_eq!(past.total, 7);
    }
    let past = api
        .list_groups(app.team_id, &format!("parent_id={}&page=2", t.a))
        .await;
    assert_eq!((past.list.len(), past.total), (0, 2));
}

#[tokio::test]
async fn a_page_number_beyond_32_bits_is_just_a_page_past_the_end() {
    // The contract bounds `page` only below (≥ 1).
    let app = TestApp::spawn().await;
    let api = app.team_api().await;
    api.create_group(app.team_id, "Only", 0).await;
    for page in [4_294_967_296_i64, 99_999_999_999] {
        let past = api
            .list_groups(app.team_id, &format!("page={page}&per_page=1000"))
            .await;
        assert!(past.list.is_empty(), "page {page}: {:?}", past.list);
        assert_eq!(past.total, 1);
    }
}

#[tokio::test]
async fn per_page_defaults_to_10_and_accepts_1_to_1000() {
    let app = TestApp::spawn().await;
    let api = app.team_api().await;
    for i in 0..12 {
        api.create_group(app.team_id, &format!("G{i}"), 0).await;
    }
    let first = api.list_groups(app.team_id, "").await;
    assert_eq!((first.list.len(), first.total), (10, 12));
    let second = api.list_groups(app.team_id, "page=2").await;
    assert_eq!((second.list.len(), second.total), (2, 12));

    let one = api.list_groups(app.team_id, "per_page=1").await;
    assert_eq!((one.list.len(), one.total), (1, 12));
    let all = api.list_groups(app.team_id, "per_page=1000").await;
    assert_eq!((all.list.len(), all.total), (12, 12));

    for query in [
        "per_page=0",
        "per_page=1001",
        "per_page=-1",
        "per_page=ten",
        "page=0",
        "page=-1",
        "page=x",
    ] {
        let response = api
            .get(&format!("{}?{query}", groups_path(app.team_id)))
            .await;
        assert_error(&response, 400, "InvalidArgument", "invalid_argument");
    }
}

#[tokio::test]
async fn remote_ids_keeps_only_groups_with_those_remote_ids() {
    let app = TestApp::spawn().await;
    let api = app.team_api().await;
    let team = app.team_id;
    let r1 = api
        .create_group_with(team, &json!({"name": "R1", "remote_id": "r1"}))
        .await;
    let r2 = api
        .create_group_with(
            team,
            &json!({"name": "R2", "remote_id": "r2", "parent_id": r1}),
        )
        .await;
    let r3 = api
        .create_group_with(team, &json!({"name": "R3", "remote_id": "r3", "order": 3}))
        .await;
    api.create_group(team, "NoRemote", 0).await;

    let listed = api.list_groups(team, "remote_ids=r2,r3,r1,nope").await;
    // Still in list order: depth, then order descending, then id.
    assert_eq!(listed.ints("id"), vec![r3, r1, r2]);
    assert_eq!(listed.total, 3);
    assert_eq!(listed.row("id", r2)["remote_id"], "r2");

    let none = api.list_groups(team, "remote_ids=nope").await;
    assert_eq!((none.list.len(), none.total), (0, 0));

    let paged = api
        .list_groups(team, "remote_ids=r1,r2,r3&per_page=2&page=2")
        .await;
    assert_eq!((paged.ints("id"), paged.total), (vec![r2], 3));

    let with_parent = api
        .list_groups(team, &format!("remote_ids=r1,r2,r3&parent_id={r1}"))
        .await;
    assert_eq!((with_parent.ints("id"), with_parent.total), (vec![r2], 1));
}

#[tokio::test]
async fn include_invalid_also_lists_tombstones() {
    let app = TestApp::spawn().await;
    let api = app.team_api().await;
    let t = tree(&api, app.team_id).await;
    assert_ok(&api.delete_groups(app.team_id, &[t.c, t.a2x]).await);

    let valid = api.list_groups(app.team_id, "per_page=100").await;
    assert_eq!(valid.total, 5);
    assert!(!valid.ints("id").contains(&t.c));
    assert!(valid.list.iter().all(|row| row["is_valid"] == true));

    let all = api
        .list_groups(app.team_id, "per_page=100&include_invalid=true")
        .await;
    assert_eq!(all.total, 7);
    assert_eq!(sorted(all.ints("id")), sorted(tree_order(&t)));
    assert_eq!(all.row("id", t.c)["is_valid"], false);
    assert_eq!(all.row("id", t.a2x)["is_valid"], false);
    assert_eq!(all.row("id", t.a)["is_valid"], true);

    let under_a2 = api
        .list_groups(
            app.team_id,
            &format!("parent_id={}&include_invalid=true", t.a2),
        )
        .await;
    assert_eq!((under_a2.ints("id"), under_a2.total), (vec![t.a2x], 1));
    let under_a2 = api
        .list_groups(app.team_id, &format!("parent_id={}", t.a2))
        .await;
    assert_eq!(under_a2.total, 0);
}

#[tokio::test]
async fn updated_since_keeps_groups_changed_at_or_after_the_time() {
    let app = TestApp::spawn().await;
    let api = app.team_api().await;
    let team = app.team_id;
    let t = tree(&api, team).await;
    let group = api.group(team, t.b).await;
    let upd_at = group["upd_at"].as_str().expect("upd_at").to_owned();

    // At the exact upd_at (inclusive), written with the server's offset or in UTC.
    let at = api
        .list_groups(
            team,
            &format!("per_page=100&updated_since={}", encode(&upd_at)),
        )
        .await;
    assert!(at.ints("id").contains(&t.b), "{upd_at}: {:?}", at.list);
    let utc = assert_time(&group["upd_at"], "+08:00")
        .with_timezone(&chrono::Utc)
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    let at_utc = api
        .list_groups(
            team,
            &format!("per_page=100&updated_since={}", encode(&utc)),
        )
        .await;
    assert!(at_utc.ints("id").contains(&t.b), "{utc}: {:?}", at_utc.list);

    let past = api
        .list_groups(
            team,
            "per_page=100&updated_since=2000-01-01T00:00:00%2B08:00",
        )
        .await;
    assert_eq!(past.total, 7);

    let future = api
        .list_groups(team, "updated_since=2999-01-01T00:00:00%2B08:00")
        .await;
    assert_eq!((future.list.len(), future.total), (0, 0));

    // With include_invalid it is a sync feed: deletions show up as tombstones.
    assert_ok(&api.delete_groups(team, &[t.c]).await);
    let feed = api
        .list_groups(
            team,
            "per_page=100&include_invalid=true&updated_since=2000-01-01T00:00:00Z",
        )
        .await;
    assert_eq!(feed.total, 7);
    assert_eq!(feed.row("id", t.c)["is_valid"], false);

    for bad in ["yesterday", "2021-06-24", "2021-06-24T18:24:45"] {
        let response = api
            .get(&format!(
                "{}?updated_since={}",
                groups_path(team),
                encode(bad)
            ))
            .await;
        assert_error(&response, 400, "InvalidArgument", "invalid_argument");
    }
}

#[tokio::test]
async fn recursive_lists_the_whole_subtree_below_the_parent() {
    let app = TestApp::spawn().await;
    let api = app.team_api().await;
    let t = tree(&api, app.team_id).await;

    let below_a = api
        .list_groups(app.team_id, &format!("parent_id={}&recursive=true", t.a))
        .await;
    assert_eq!(sorted(below_a.ints("id")), sorted([t.a1, t.a2, t.a2x]));
    assert_eq!(below_a.total, 3);

    let below_b = api
        .list_groups(app.team_id, &format!("parent_id={}&recursive=true", t.b))
        .await;
    assert_eq!((below_b.ints("id"), below_b.total), (vec![t.b1], 1));

    let below_root = api
        .list_groups(app.team_id, "parent_id=0&recursive=true&per_page=100")
        .await;
    assert_eq!(below_root.total, 7);
    assert_eq!(sorted(below_root.ints("id")), sorted(tree_order(&t)));

    let not_recursive = api
        .list_groups(app.team_id, &format!("parent_id={}&recursive=false", t.a))
        .await;
    assert_eq!(not_recursive.ints("id"), vec![t.a2, t.a1]);

    // Without `parent_id` every group is listed anyway: `recursive` changes nothing.
    let everything = api.list_groups(app.team_id, "per_page=100").await;
    let recursive = api
        .list_groups(app.team_id, "recursive=true&per_page=100")
        .await;
    assert_eq!(recursive.total, 7);
    assert_eq!(recursive.ints("id"), everything.ints("id"));
}

#[tokio::test]
async fn recursive_with_include_invalid_also_lists_the_tombstones_of_the_subtree() {
    let app = TestApp::spawn().await;
    let api = app.team_api().await;
    let t = tree(&api, app.team_id).await;
    assert_ok(&api.delete_groups(app.team_id, &[t.a2x]).await);
    let below_a = api
        .list_groups(
            app.team_id,
            &format!("parent_id={}&recursive=true&include_invalid=true", t.a),
        )
        .await;
    assert_eq!(sorted(below_a.ints("id")), sorted([t.a1, t.a2, t.a2x]));
    assert_eq!(below_a.total, 3);

    // A whole deleted branch, too.
    assert_ok(&api.delete_groups(app.team_id, &[t.a1, t.a2]).await);
    let below_a = api
        .list_groups(
            app.team_id,
            &format!("parent_id={}&recursive=true&include_invalid=true", t.a),
        )
        .await;
    assert_eq!(sorted(below_a.ints("id")), sorted([t.a1, t.a2, t.a2x]));
    assert!(below_a.list.iter().all(|row| row["is_valid"] == false));
    let valid_only = api
        .list_groups(app.team_id, &format!("parent_id={}&recursive=true", t.a))
        .await;
    assert_eq!(valid_only.total, 0);
}

#[tokio::test]
async fn keyword_matches_names_containing_it_case_insensitively() {
    let app = TestApp::spawn().await;
    let api = app.team_api().await;
    let team = app.team_id;
    let east = api.create_group(team, "Sales East", 0).await;
    let west = api.create_group(team, "sales west", east).await;
    let whole = api.create_group(team, "WHOLESALES", 0).await;
    api.create_group(team, "Marketing", 0).await;
    let percent = api.create_group(team, "100% Direct", 0).await;

    let listed = api.list_groups(team, "keyword=SALES").await;
    assert_eq!(sorted(listed.ints("id")), sorted([east, west, whole]));
    assert_eq!(listed.total, 3);

    let listed = api.list_groups(team, "keyword=eAsT").await;
    assert_eq!((listed.ints("id"), listed.total), (vec![east], 1));

    let listed = api
        .list_groups(team, &format!("keyword=sales&parent_id={east}"))
        .await;
    assert_eq!((listed.ints("id"), listed.total), (vec![west], 1));

    let listed = api.list_groups(team, "keyword=nothing").await;
    assert_eq!(listed.total, 0);

    // Beyond ASCII too.
    let doctors = api.create_group(team, "ÄRZTE Süd", 0).await;
    let listed = api
        .list_groups(team, &format!("keyword={}", encode("ärzte süd")))
        .await;
    assert_eq!((listed.ints("id"), listed.total), (vec![doctors], 1));

    // The keyword is plain text, not a pattern.
    let listed = api.list_groups(team, "keyword=%25").await;
    assert_eq!((listed.ints("id"), listed.total), (vec![percent], 1));
    for pattern in ["_", "S_les", "Sales%25West", "*"] {
        let listed = api.list_groups(team, &format!("keyword={pattern}")).await;
        assert_eq!(listed.total, 0, "keyword {pattern}: {:?}", listed.list);
    }
}

/// Listings that no index narrows (a keyword of one letter, everything changed since long ago)
/// on a directory large enough to be read off the request workers, one at a time per team
/// (`Directories::read_weighed`): several at once all answer, and answer right.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listings_no_index_narrows_answer_whole_when_read_off_the_workers() {
    let app = TestApp::spawn().await;
    let api = app.team_api().await;
    let groups: Vec<_> = (0..25_000)
        .map(|n| json!({"remote_id": format!("g{n}"), "name": format!("Group {n}")}))
        .collect();
    assert_ok(
        &api.post_json(
            &format!("/api/contacts/teams/{}/sync", app.team_id),
            &json!({"groups": groups, "members": []}),
        )
        .await,
    );
    let queries = [
        "keyword=g&per_page=5",
        "keyword=9&per_page=5&page=2",
        "updated_since=2000-01-01T00:00:00Z&per_page=5",
    ];
    let listings = futures_util::future::join_all(
        queries
            .iter()
            .cycle()
            .take(9)
            .map(|query| api.list_groups(app.team_id, query)),
    )
    .await;
    for (query, listed) in queries.iter().cycle().zip(&listings) {
        let expected = if query.starts_with("keyword=9") {
            (0..25_000)
                .filter(|n: &u32| n.to_string().contains('9'))
                .count() as i64
        } else {
            25_000
        };
        assert_eq!((listed.total, listed.list.len()), (expected, 5), "{query}");
    }
    // Listing order: by depth, then order descending, then id; all at the root with order 0.
    let first = &listings[0].ints("id");
    assert!(first.windows(2).all(|w| w[0] < w[1]), "{first:?}");
}

// ----- §5.2 get one -------------------------------------------------------------------------

#[tokio::test]
async fn get_one_returns_the_group_and_unknown_or_deleted_groups_are_not_found() {
    let app = TestApp::spawn().await;
    let api = app.team_api().await;
    let t = tree(&api, app.team_id).await;

    let group = api.group(app.team_id, t.a2).await;
    let keys: BTreeSet<&str> = group
        .as_object()
        .expect("group")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys, GROUP_FIELDS.into_iter().collect());
    assert_eq!(group["id"], t.a2);
    assert_eq!(group["parent_id"], t.a);
    assert_eq!(group["name"], "A2");
    assert_eq!(group["full_name"], "Acme/A/A2");
    assert_eq!(group["order"], 9);

    assert_ok(&api.delete_groups(app.team_id, &[t.c]).await);
    for missing in [t.c, t.a2x + 1000] {
        let response = api.get(&group_path(app.team_id, missing)).await;
        assert_error(&response, 404, "NotFound", "contacts_group_not_found");
    }
}
