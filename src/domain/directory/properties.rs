//! Property tests of [`Directory`]: any sequence of creates, renames, moves, deletes and member
//! changes keeps every invariant, checked against a naive model recomputed from scratch.

use std::collections::{BTreeSet, HashMap};

use proptest::prelude::*;

use super::{
    Change, Directory, DirectoryBuilder, Group, GroupFilter, GroupRef, MemberFilter, MemberRow,
    new_group,
};
use crate::domain::values::{GroupId, Page, ROOT_GROUP, Role, Source, UserId};

const MAX_DEPTH: u32 = 4;
const SEATS: i64 = 2;

#[derive(Debug, Clone)]
enum Op {
    Create {
        parent: usize,
        remote: u8,
        order: i8,
    },
    Rename {
        group: usize,
        name: u8,
        order: Option<i8>,
    },
    Move {
        group: usize,
        to: usize,
    },
    SetRemote {
        group: usize,
        remote: u8,
    },
    Delete {
        groups: Vec<usize>,
    },
    Add {
        user: u8,
        group: usize,
        role: u8,
    },
    Regroup {
        user: u8,
        groups: Vec<usize>,
        role: Option<u8>,
    },
    Remove {
        user: u8,
        group: usize,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (any::<usize>(), 0u8..12, any::<i8>())
            .prop_map(|(parent, remote, order)| Op::Create { parent, remote, order }),
        1 => (any::<usize>(), any::<u8>(), proptest::option::of(-3i8..3))
            .prop_map(|(group, name, order)| Op::Rename { group, name, order }),
        3 => (any::<usize>(), any::<usize>()).prop_map(|(group, to)| Op::Move { group, to }),
        1 => (any::<usize>(), 0u8..12).prop_map(|(group, remote)| Op::SetRemote { group, remote }),
        2 => proptest::collection::vec(any::<usize>(), 1..4).prop_map(|groups| Op::Delete { groups }),
        3 => (0u8..8, any::<usize>(), 2u8..5).prop_map(|(user, group, role)| Op::Add { user, group, role }),
        2 => (0u8..8, proptest::collection::vec(any::<usize>(), 0..3), proptest::option::of(2u8..5))
            .prop_map(|(user, groups, role)| Op::Regroup { user, groups, role }),
        1 => (0u8..8, any::<usize>()).prop_map(|(user, group)| Op::Remove { user, group }),
    ]
}

/// The model under test plus a stand-in for the store (it hands out ids and versions).
struct Harness {
    directory: Directory,
    next_id: GroupId,
}

impl Harness {
    fn new() -> Harness {
        Harness {
            directory: DirectoryBuilder::new("Team".into(), SEATS, 0, 0, 0).finish(),
            next_id: 1,
        }
    }

    /// Candidate group ids: the root and every group ever created (valid or not).
    fn pick(&self, index: usize) -> GroupId {
        let count = (self.next_id) as usize; // ids 0..next_id
        index as GroupId % count as GroupId
    }

    fn commit(&mut self, changes: Vec<Change>) {
        let created: Vec<GroupId> = changes
            .iter()
            .filter(|c| matches!(c, Change::CreateGroup { .. }))
            .map(|_| {
                self.next_id += 1;
                self.next_id - 1
            })
            .collect();
        let version = self.directory.version() + 1;
        self.directory.apply(&changes, &created, version);
    }

    fn valid(&self, id: GroupId) -> Option<Group> {
        self.directory.group(id).ok().map(|view| view.group)
    }

    fn run(&mut self, op: &Op) {
        let d = &self.directory;
        match op {
            Op::Create {
                parent,
                remote,
                order,
            } => {
                let parent = self.pick(*parent);
                let remote = if *remote == 0 {
                    String::new()
                } else {
                    format!("r{remote}")
                };
                if d.check_create(parent, &remote, MAX_DEPTH).is_ok() {
                    let group = new_group(
                        format!("g{}", self.next_id),
                        remote,
                        *order as i64,
                        Source::Api,
                        1,
                    );
                    self.commit(vec![Change::CreateGroup {
                        parent: GroupRef::Existing(parent),
                        group,
                    }]);
                }
            }
            Op::Rename { group, name, order } => {
                let id = self.pick(*group);
                if d.check_update(id, None, None, None, MAX_DEPTH).is_ok()
                    && let Some(mut row) = self.valid(id)
                {
                    row.name = format!("n{name}");
                    row.order = order.map_or(row.order, i64::from);
                    let parent = GroupRef::Existing(row.parent_id);
                    self.commit(vec![Change::UpdateGroup { group: row, parent }]);
                }
            }
            Op::Move { group, to } => {
                let (id, to) = (self.pick(*group), self.pick(*to));
                if d.check_update(id, None, Some(to), None, MAX_DEPTH).is_ok()
                    && let Some(mut row) = self.valid(id)
                {
                    row.parent_id = to;
                    let parent = GroupRef::Existing(row.parent_id);
                    self.commit(vec![Change::UpdateGroup { group: row, parent }]);
                }
            }
            Op::SetRemote { group, remote } => {
                let id = self.pick(*group);
                let remote = if *remote == 0 {
                    String::new()
                } else {
                    format!("r{remote}")
                };
                if d.check_update(id, None, None, Some(&remote), MAX_DEPTH)
                    .is_ok()
                    && let Some(mut row) = self.valid(id)
                {
                    row.remote_id = remote;
                    let parent = GroupRef::Existing(row.parent_id);
                    self.commit(vec![Change::UpdateGroup { group: row, parent }]);
                }
            }
            Op::Delete { groups } => {
                let mut ids: Vec<GroupId> = groups.iter().map(|g| self.pick(*g)).collect();
                ids.sort_unstable();
                ids.dedup();
                if d.check_delete(&ids).is_ok() {
                    let changes = ids
                        .iter()
                        .filter_map(|id| self.valid(*id))
                        .map(|mut row| {
                            row.is_valid = false;
                            let parent = GroupRef::Existing(row.parent_id);
                            Change::UpdateGroup { group: row, parent }
                        })
                        .collect();
                    self.commit(changes);
                }
            }
            Op::Add { user, group, role } => {
                let (user, group) = (UserId::from(*user), self.pick(*group));
                let role = Role::from_code(i64::from(*role)).unwrap_or(Role::Member);
                if let Ok(admission) = d.check_admission(user, group, role) {
                    self.commit(vec![put(user, admission.role, &admission.groups)]);
                }
            }
            Op::Regroup { user, groups, role } => {
                let user = UserId::from(*user);
                let groups: Vec<GroupId> = groups.iter().map(|g| self.pick(*g)).collect();
                let role = role.and_then(|r| Role::from_code(i64::from(r)));
                if let Ok(placement) = d.check_member_update(user, Some(&groups), role) {
                    self.commit(vec![put(user, placement.role, &placement.groups)]);
                }
            }
            Op::Remove { user, group } => {
                let (user, group) = (UserId::from(*user), self.pick(*group));
                match d.check_removal(user, group) {
                    Ok(None) => self.commit(vec![Change::RemoveMember(user)]),
                    Ok(Some(groups)) => {
                        let role = d.placement(user).map_or(Role::Member, |p| p.role);
                        self.commit(vec![put(user, role, &groups)]);
                    }
                    Err(_) => {}
                }
            }
        }
    }
}

fn put(user_id: UserId, role: Role, groups: &[GroupId]) -> Change {
    Change::PutMember {
        member: MemberRow {
            user_id,
            role,
            nickname: String::new(),
            avatar: String::new(),
            source: Source::Api,
        },
        groups: groups.iter().map(|g| GroupRef::Existing(*g)).collect(),
    }
}

/// Every row of a listing, read page by page.
fn all_pages<T>(per_page: u64, mut fetch: impl FnMut(Page) -> (Vec<T>, u64)) -> (Vec<T>, u64) {
    let mut rows = Vec::new();
    let mut page = 1;
    loop {
        let (mut batch, total) = fetch(Page::new(page, per_page).expect("valid page"));
        if batch.is_empty() {
            return (rows, total);
        }
        rows.append(&mut batch);
        page += 1;
    }
}

/// Check the directory against a naive recomputation from its own rows.
fn check(d: &Directory, per_page: u64) -> Result<(), TestCaseError> {
    prop_assert_eq!(d.violations(MAX_DEPTH), Vec::<String>::new());
    let rows: HashMap<GroupId, Group> = d.all_groups().map(|g| (g.id, g.clone())).collect();
    let valid: Vec<&Group> = rows.values().filter(|g| g.is_valid).collect();
    let path = |id: GroupId| {
        let mut names = Vec::new();
        let mut current = id;
        while current != ROOT_GROUP {
            names.push(rows[&current].name.clone());
            current = rows[&current].parent_id;
        }
        names.reverse();
        names
    };
    // full_name, depth and listing order, recomputed from scratch.
    let mut expected: Vec<(usize, i64, GroupId)> = Vec::new();
    for group in &valid {
        let names = path(group.id);
        prop_assert!(names.len() as u32 <= MAX_DEPTH);
        let view = d
            .group(group.id)
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(view.full_name, format!("Team/{}", names.join("/")));
        expected.push((names.len(), -group.order, group.id));
    }
    expected.sort_unstable();
    let expected: Vec<GroupId> = expected.into_iter().map(|(_, _, id)| id).collect();
    let (listed, total) = all_pages(per_page, |page| {
        let (rows, total) = d.list_groups(&GroupFilter::default(), page).expect("list");
        (rows.into_iter().map(|g| g.id).collect(), total)
    });
    prop_assert_eq!(total as usize, expected.len());
    prop_assert_eq!(&listed, &expected);
    // The same order through the general path (a filter that keeps everything).
    let (general, _) = all_pages(per_page, |page| {
        let filter = GroupFilter {
            updated_since: Some(0),
            ..GroupFilter::default()
        };
        let (rows, total) = d.list_groups(&filter, page).expect("list");
        (rows.into_iter().map(|g| g.id).collect::<Vec<_>>(), total)
    });
    prop_assert_eq!(&general, &expected);
    // Children of every parent, and recursive listings, match the rows.
    for parent in std::iter::once(ROOT_GROUP).chain(valid.iter().map(|g| g.id)) {
        let mut children: Vec<&&Group> = valid.iter().filter(|g| g.parent_id == parent).collect();
        children.sort_by_key(|g| (-g.order, g.id));
        let children: Vec<GroupId> = children.into_iter().map(|g| g.id).collect();
        let filter = GroupFilter {
            parent: Some(parent),
            ..GroupFilter::default()
        };
        let (listed, total) = all_pages(per_page, |page| {
            let (rows, total) = d.list_groups(&filter, page).expect("children");
            (rows.into_iter().map(|g| g.id).collect(), total)
        });
        prop_assert_eq!(total as usize, children.len());
        prop_assert_eq!(listed, children);

        let below: BTreeSet<GroupId> = valid
            .iter()
            .filter(|g| {
                g.id != parent && (parent == ROOT_GROUP || path_ids(&rows, g.id).contains(&parent))
            })
            .map(|g| g.id)
            .collect();
        let filter = GroupFilter {
            parent: Some(parent),
            recursive: true,
            ..GroupFilter::default()
        };
        let (listed, _) = all_pages(per_page, |page| {
            let (rows, total) = d.list_groups(&filter, page).expect("subtree");
            (rows.into_iter().map(|g| g.id).collect::<Vec<_>>(), total)
        });
        prop_assert_eq!(listed.len(), below.len());
        prop_assert_eq!(listed.into_iter().collect::<BTreeSet<_>>(), below.clone());

        // Members: direct, recursive (union of the subtree's direct members, once each).
        if parent != ROOT_GROUP {
            let mut expected_members: BTreeSet<UserId> = BTreeSet::new();
            for (user, placement) in d.placements() {
                if placement
                    .groups
                    .iter()
                    .any(|g| *g == parent || below.contains(g))
                {
                    expected_members.insert(user);
                }
            }
            let filter = MemberFilter {
                group: parent,
                recursive: true,
                roles: None,
            };
            let (listed, total) = all_pages(per_page, |page| {
                let (rows, total) = d.list_members(&filter, page).expect("members");
                (
                    rows.into_iter().map(|r| r.user_id).collect::<Vec<_>>(),
                    total,
                )
            });
            prop_assert_eq!(total as usize, expected_members.len());
            prop_assert_eq!(listed, expected_members.into_iter().collect::<Vec<_>>());
        }
    }
    // Remote ids unique among valid groups.
    let mut remotes: Vec<&str> = valid
        .iter()
        .map(|g| g.remote_id.as_str())
        .filter(|r| !r.is_empty())
        .collect();
    let count = remotes.len();
    remotes.sort_unstable();
    remotes.dedup();
    prop_assert_eq!(remotes.len(), count);
    // Group 0 lists each member exactly once, in user id order; seats are exact.
    let (everyone, total) = all_pages(per_page, |page| {
        let (rows, total) = d
            .list_members(&MemberFilter::default(), page)
            .expect("everyone");
        (
            rows.into_iter().map(|r| r.user_id).collect::<Vec<_>>(),
            total,
        )
    });
    let mut users: Vec<UserId> = d.placements().map(|(u, _)| u).collect();
    users.sort_unstable();
    prop_assert_eq!(total as usize, users.len());
    prop_assert_eq!(everyone, users);
    let admins = d
        .placements()
        .filter(|(_, p)| p.role.uses_admin_seat())
        .count() as i64;
    prop_assert_eq!(admins, d.admins_used());
    prop_assert!(d.admins_used() <= SEATS);
    Ok(())
}

fn path_ids(rows: &HashMap<GroupId, Group>, id: GroupId) -> Vec<GroupId> {
    let mut ids = Vec::new();
    let mut current = rows[&id].parent_id;
    while current != ROOT_GROUP {
        ids.push(current);
        current = rows[&current].parent_id;
    }
    ids
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn every_sequence_of_changes_keeps_the_invariants(
        ops in proptest::collection::vec(op(), 1..120),
        per_page in 1u64..5,
    ) {
        let mut harness = Harness::new();
        for op in &ops {
            harness.run(op);
            check(&harness.directory, per_page)?;
        }
        // A fresh load of the same rows is the same directory.
        let d = &harness.directory;
        let mut builder = DirectoryBuilder::new("Team".into(), SEATS, d.version(), 0, 0);
        for group in d.all_groups() {
            builder.add_group(group.clone());
        }
        for (user_id, placement) in d.placements() {
            builder.add_member(user_id, placement.clone());
        }
        let reloaded = builder.finish();
        let (a, _) = d.list_groups(&GroupFilter::default(), Page::new(1, 1000).expect("page")).expect("list");
        let (b, _) = reloaded.list_groups(&GroupFilter::default(), Page::new(1, 1000).expect("page")).expect("list");
        prop_assert_eq!(&a, &b);
        let full_names = |dir: &Directory, rows: &[&Group]| {
            rows.iter().map(|g| dir.full_name(g.id)).collect::<Vec<_>>()
        };
        prop_assert_eq!(full_names(d, &a), full_names(&reloaded, &b));
        check(&reloaded, per_page)?;
    }
}
