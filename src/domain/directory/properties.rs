//! Property tests of [`Directory`]: it and an independent reference model ([`Reference`]) get
//! the same random creates, renames, moves, reorders, remote-id changes, batch deletes and member
//! changes; after each step both give the same answer (accepted, or the same refusal) and the
//! same listings, page by page, and the directory keeps every invariant. Enough of every kind of
//! operation must be accepted across all cases that a rule refusing everything cannot pass.

use std::collections::{BTreeMap, BTreeSet};
use std::{cell::RefCell, fmt::Debug, mem::discriminant};

use proptest::{prelude::*, test_runner::TestRunner};

use super::reference::{Edit, Member, Reference};
use super::{
    Change, Directory, DirectoryBuilder, Group, GroupFilter, GroupRef, GroupStep, Kept,
    MemberFilter, MemberRow, Placement, new_group,
};
use crate::domain::RuleError;
use crate::domain::values::{
    Avatar, GroupId, GroupName, Nickname, Page, RemoteId, Role, Source, UserId,
};

const MAX_DEPTH: u32 = 4;
const SEATS: i64 = 2;
const OWNER: UserId = UserId::new(1);
const NAMES: [&str; 6] = ["Sales", "sales EU", "Ops", "OPS-b", "Équipe", "r&d"];
const KEYWORDS: [&str; 6] = ["s", "sales", "ops", "é", "équipe", "x"];

#[derive(Debug, Clone)]
enum Op {
    Create(CreateOp),
    /// Two nested groups in one batch, the second under the first (`GroupRef::New`).
    CreatePair {
        parent: usize,
        order: i8,
    },
    Rename {
        group: usize,
        name: usize,
        order: Option<i8>,
    },
    Move {
        group: usize,
        from: Option<usize>,
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
        groups: Option<Vec<usize>>,
        role: Option<u8>,
    },
    Remove {
        user: u8,
        group: usize,
    },
}

impl Op {
    fn kind(&self) -> &'static str {
        match self {
            Op::Create(_) => "create",
            Op::CreatePair { .. } => "create pair",
            Op::Rename { .. } => "rename",
            Op::Move { .. } => "move",
            Op::SetRemote { .. } => "set remote id",
            Op::Delete { .. } => "delete",
            Op::Add { .. } => "add member",
            Op::Regroup { .. } => "update member",
            Op::Remove { .. } => "remove member",
        }
    }
}

/// A group to create: indexes into the test's names and groups.
#[derive(Debug, Clone)]
struct CreateOp {
    parent: usize,
    name: usize,
    remote: u8,
    order: i8,
    sync: bool,
}

impl CreateOp {
    fn source(&self) -> Source {
        if self.sync { Source::Sync } else { Source::Api }
    }
}

fn op() -> impl Strategy<Value = Op> {
    let group = || 0usize..64;
    prop_oneof![
        4 => (group(), 0..NAMES.len(), 0u8..12, -3i8..3, any::<bool>())
            .prop_map(|(parent, name, remote, order, sync)| Op::Create(CreateOp { parent, name, remote, order, sync })),
        1 => (group(), -3i8..3).prop_map(|(parent, order)| Op::CreatePair { parent, order }),
        2 => (group(), 0..NAMES.len(), proptest::option::of(-3i8..3))
            .prop_map(|(group, name, order)| Op::Rename { group, name, order }),
        4 => (group(), proptest::option::weighted(0.2, group()), group())
            .prop_map(|(group, from, to)| Op::Move { group, from, to }),
        1 => (group(), 0u8..12).prop_map(|(group, remote)| Op::SetRemote { group, remote }),
        2 => proptest::collection::vec(group(), 1..3).prop_map(|groups| Op::Delete { groups }),
        3 => (1u8..8, group(), 2u8..5).prop_map(|(user, group, role)| Op::Add { user, group, role }),
        2 => (1u8..8, proptest::option::weighted(0.8, proptest::collection::vec(group(), 0..3)),
              proptest::option::of(1u8..5))
            .prop_map(|(user, groups, role)| Op::Regroup { user, groups, role }),
        // Index 0 picks the root: leaving the directory.
        1 => (1u8..8, prop_oneof![Just(0), group()]).prop_map(|(user, group)| Op::Remove { user, group }),
    ]
}

/// A listing to compare after a step, besides the fixed ones.
#[derive(Debug, Clone)]
struct Probe {
    parent: Option<usize>,
    recursive: bool,
    remote_ids: Option<Vec<u8>>,
    include_invalid: bool,
    updated_since: Option<i64>,
    keyword: Option<usize>,
    roles: Option<Vec<u8>>,
}

fn probe() -> impl Strategy<Value = Probe> {
    (
        proptest::option::of(0usize..64),
        any::<bool>(),
        proptest::option::weighted(0.3, proptest::collection::vec(1u8..12, 0..4)),
        any::<bool>(),
        proptest::option::weighted(0.3, 0i64..100),
        proptest::option::weighted(0.3, 0..KEYWORDS.len()),
        proptest::option::weighted(0.5, proptest::collection::vec(1u8..5, 0..3)),
    )
        .prop_map(
            |(parent, recursive, remote_ids, include_invalid, updated_since, keyword, roles)| {
                Probe {
                    parent,
                    recursive,
                    remote_ids,
                    include_invalid,
                    updated_since,
                    keyword,
                    roles,
                }
            },
        )
}

fn name_of(index: usize) -> GroupName {
    GroupName::parse(NAMES[index]).expect("a name")
}

fn remote(code: u8) -> RemoteId {
    if code == 0 {
        RemoteId::default()
    } else {
        RemoteId::parse(&format!("r{code}")).expect("a remote id")
    }
}

fn role(code: u8) -> Option<Role> {
    Role::from_code(i64::from(code))
}

/// Accepted and attempted operations, by kind.
type Tally = BTreeMap<&'static str, (u32, u32)>;

/// The directory under test, the reference model, and a stand-in for the store (it hands out
/// group ids, versions and the clock).
struct Harness {
    directory: Directory,
    reference: Reference,
    next_id: i64,
    now: i64,
    tally: Tally,
}

impl Harness {
    fn new() -> Harness {
        let mut builder = DirectoryBuilder::new("Team".into(), SEATS, 0, 0, 1);
        let owner = Placement {
            role: Role::Owner,
            groups: Box::new([]),
        };
        builder.add_member(OWNER, owner);
        let owner = Member {
            role: Role::Owner,
            groups: BTreeSet::new(),
        };
        Harness {
            directory: builder.finish(),
            reference: Reference {
                team_name: "Team".into(),
                seats: SEATS,
                max_depth: MAX_DEPTH,
                groups: BTreeMap::new(),
                members: BTreeMap::from([(OWNER, owner)]),
            },
            next_id: 1,
            now: 1,
            tally: Tally::new(),
        }
    }

    /// A group id: the root, any group ever created (valid or not), or one never created.
    fn pick(&self, index: usize) -> GroupId {
        GroupId::new(index as i64 % (self.next_id + 1))
    }

    fn commit(&mut self, changes: Vec<Change>) {
        let creates = changes
            .iter()
            .filter(|c| matches!(c, Change::CreateGroup { .. }))
            .count() as i64;
        let created: Vec<GroupId> = (self.next_id..self.next_id + creates)
            .map(GroupId::new)
            .collect();
        let version = self.directory.version() + 1;
        self.directory.apply(&changes, &created, version);
    }

    /// The current row of a valid group, changed as the service changes it: an update through
    /// the API also marks it as such, a delete only makes it a tombstone.
    fn edited(&self, id: GroupId, edit: impl FnOnce(&mut Group)) -> Change {
        let mut group = self.directory.group(id).expect("checked").group;
        edit(&mut group);
        if group.is_valid {
            group.source = Source::Api;
        }
        group.upd_at = self.now;
        let parent = GroupRef::Existing(group.parent_id);
        Change::UpdateGroup { group, parent }
    }

    /// Decide on the directory and, if allowed, commit the changes as the service would.
    fn real(&mut self, op: &Op) -> Result<(), RuleError> {
        let d = &self.directory;
        let now = self.now;
        let changes = match op {
            Op::Create(create) => {
                let parent = self.pick(create.parent);
                d.check_create(parent, &remote(create.remote), MAX_DEPTH)?;
                let group = new_group(
                    name_of(create.name),
                    remote(create.remote),
                    i64::from(create.order),
                    create.source(),
                    now,
                );
                let parent = GroupRef::Existing(parent);
                vec![Change::CreateGroup { parent, group }]
            }
            Op::CreatePair { parent, order } => {
                let parent = self.pick(*parent);
                d.check_create(parent, "", MAX_DEPTH - 1)?;
                let order = i64::from(*order);
                let named = |name| GroupName::parse(name).expect("a name");
                let outer = new_group(named("Outer"), remote(0), order, Source::Sync, now);
                let inner = new_group(named("inner"), remote(0), order, Source::Sync, now);
                vec![
                    Change::CreateGroup {
                        parent: GroupRef::Existing(parent),
                        group: outer,
                    },
                    Change::CreateGroup {
                        parent: GroupRef::New(0),
                        group: inner,
                    },
                ]
            }
            Op::Rename { group, name, order } => {
                let id = self.pick(*group);
                d.check_update(id, None, None, None, MAX_DEPTH)?;
                vec![self.edited(id, |row| {
                    row.name = name_of(*name);
                    row.order = order.map_or(row.order, i64::from);
                })]
            }
            Op::Move { group, from, to } => {
                let (id, to) = (self.pick(*group), self.pick(*to));
                let from = from.map(|f| self.pick(f));
                d.check_update(id, from, Some(to), None, MAX_DEPTH)?;
                vec![self.edited(id, |row| row.parent_id = to)]
            }
            Op::SetRemote {
                group,
                remote: code,
            } => {
                let id = self.pick(*group);
                d.check_update(id, None, None, Some(&remote(*code)), MAX_DEPTH)?;
                vec![self.edited(id, |row| row.remote_id = remote(*code))]
            }
            Op::Delete { groups } => {
                let ids = self.batch(groups);
                d.check_delete(&ids)?;
                ids.iter()
                    .map(|id| self.edited(*id, |row| row.is_valid = false))
                    .collect()
            }
            Op::Add {
                user,
                group,
                role: code,
            } => {
                let (user, group) = (UserId::new(i64::from(*user)), self.pick(*group));
                let admission = d.check_admission(user, group, role(*code).expect("2..4"))?;
                vec![admission.change(row_of(user, admission.role))]
            }
            Op::Regroup {
                user,
                groups,
                role: code,
            } => {
                let user = UserId::new(i64::from(*user));
                let groups: Option<Vec<GroupId>> = groups
                    .as_ref()
                    .map(|g| g.iter().map(|g| self.pick(*g)).collect());
                let placement =
                    d.check_member_update(user, groups.as_deref(), code.and_then(role))?;
                let groups = placement.groups.iter().map(|g| GroupRef::Existing(*g));
                vec![Change::PutMember {
                    member: row_of(user, placement.role),
                    groups: Some(groups.collect()),
                    kept: Kept::NONE,
                }]
            }
            Op::Remove { user, group } => {
                let (user, group) = (UserId::new(i64::from(*user)), self.pick(*group));
                match d.check_removal(user, group)? {
                    None => vec![Change::RemoveMember(user)],
                    Some(role) => vec![Change::StepMember {
                        member: row_of(user, role),
                        group,
                        step: GroupStep::Leave,
                    }],
                }
            }
        };
        self.commit(changes);
        Ok(())
    }

    /// Group ids of a batch delete, without duplicates (as the service hands them over).
    fn batch(&self, groups: &[usize]) -> Vec<GroupId> {
        let ids: BTreeSet<GroupId> = groups.iter().map(|g| self.pick(*g)).collect();
        ids.into_iter().collect()
    }

    /// The same operation on the reference model.
    fn model(&mut self, op: &Op) -> Result<(), RuleError> {
        let now = self.now;
        let next_id = self.next_id;
        let pick = |index: usize| GroupId::new(index as i64 % (next_id + 1));
        let r = &mut self.reference;
        match op {
            Op::Create(create) => {
                let group = row(
                    NAMES[create.name],
                    remote(create.remote),
                    create.order,
                    create.source(),
                    now,
                );
                r.create(GroupId::new(next_id), pick(create.parent), group)
            }
            Op::CreatePair { parent, order } => {
                let mut attempt = r.clone();
                let outer = row("Outer", remote(0), *order, Source::Sync, now);
                attempt.create(GroupId::new(next_id), pick(*parent), outer)?;
                let inner = row("inner", remote(0), *order, Source::Sync, now);
                attempt.create(GroupId::new(next_id + 1), GroupId::new(next_id), inner)?;
                *r = attempt;
                Ok(())
            }
            Op::Rename { group, name, order } => {
                let edit = Edit {
                    name: Some(name_of(*name)),
                    order: order.map(i64::from),
                    ..Edit::default()
                };
                r.update(pick(*group), edit, now)
            }
            Op::Move { group, from, to } => {
                let edit = Edit {
                    from: from.map(pick),
                    to: Some(pick(*to)),
                    ..Edit::default()
                };
                r.update(pick(*group), edit, now)
            }
            Op::SetRemote {
                group,
                remote: code,
            } => {
                let edit = Edit {
                    remote_id: Some(remote(*code)),
                    ..Edit::default()
                };
                r.update(pick(*group), edit, now)
            }
            Op::Delete { groups } => {
                let ids: BTreeSet<GroupId> = groups.iter().map(|g| pick(*g)).collect();
                r.delete(&ids.into_iter().collect::<Vec<_>>(), now)
            }
            Op::Add {
                user,
                group,
                role: code,
            } => r.add(
                UserId::new(i64::from(*user)),
                pick(*group),
                role(*code).expect("2..4"),
            ),
            Op::Regroup {
                user,
                groups,
                role: code,
            } => {
                let groups: Option<Vec<GroupId>> = groups
                    .as_ref()
                    .map(|g| g.iter().map(|g| pick(*g)).collect());
                r.update_member(
                    UserId::new(i64::from(*user)),
                    groups.as_deref(),
                    code.and_then(role),
                )
            }
            Op::Remove { user, group } => r.remove(UserId::new(i64::from(*user)), pick(*group)),
        }
    }

    fn step(&mut self, op: &Op) -> Result<(), TestCaseError> {
        let real = self.real(op);
        let model = self.model(op);
        let same = match (&real, &model) {
            (Ok(()), Ok(())) => true,
            (Err(a), Err(b)) => discriminant(a) == discriminant(b),
            _ => false,
        };
        prop_assert!(same, "{:?}: directory {:?}, model {:?}", op, real, model);
        let entry = self.tally.entry(op.kind()).or_default();
        entry.1 += 1;
        if real.is_ok() {
            entry.0 += 1;
            self.next_id = self
                .reference
                .groups
                .keys()
                .max()
                .map_or(1, |max| max.get() + 1);
        }
        self.now += 1;
        Ok(())
    }
}

fn row(name: &str, remote_id: RemoteId, order: i8, source: Source, now: i64) -> Group {
    let name = GroupName::parse(name).expect("a name");
    new_group(name, remote_id, i64::from(order), source, now)
}

fn row_of(user_id: UserId, role: Role) -> MemberRow {
    MemberRow {
        user_id,
        role,
        nickname: Nickname::default(),
        avatar: Avatar::default(),
        source: Source::Api,
    }
}

/// Every page of a listing (and the one past the end) equals the expected rows, in order,
/// with the same `total`; or the listing is refused as expected.
fn same_pages<T: PartialEq + Debug>(
    expected: Result<Vec<T>, RuleError>,
    per_page: u64,
    what: &dyn Debug,
    fetch: impl Fn(Page) -> Result<(Vec<T>, u64), RuleError>,
) -> Result<(), TestCaseError> {
    let expected = match expected {
        Ok(rows) => rows,
        Err(error) => {
            let real = fetch(Page::new(1, per_page).expect("valid page"));
            let refused = matches!(&real, Err(e) if discriminant(e) == discriminant(&error));
            prop_assert!(refused, "{:?}: expected {:?}, got {:?}", what, error, real);
            return Ok(());
        }
    };
    let pages = expected.len() as u64 / per_page + 1;
    for number in 1..=pages + 1 {
        let (rows, total) = fetch(Page::new(number, per_page).expect("valid page"))
            .map_err(|e| TestCaseError::fail(format!("{what:?}: {e}")))?;
        prop_assert_eq!(total, expected.len() as u64, "total of {:?}", what);
        let wanted: Vec<&T> = expected
            .iter()
            .skip(((number - 1) * per_page) as usize)
            .take(per_page as usize)
            .collect();
        prop_assert_eq!(
            rows.iter().collect::<Vec<_>>(),
            wanted,
            "page {} of {:?}",
            number,
            what
        );
    }
    Ok(())
}

fn group_filter(h: &Harness, probe: &Probe) -> GroupFilter {
    let parent = probe.parent.map(|p| h.pick(p));
    GroupFilter {
        parent,
        recursive: parent.is_some() && probe.recursive,
        remote_ids: probe
            .remote_ids
            .as_ref()
            .map(|codes| codes.iter().map(|c| remote(*c).into()).collect()),
        include_invalid: probe.include_invalid,
        updated_since: probe.updated_since,
        keyword: probe.keyword.map(|k| KEYWORDS[k].to_owned()),
    }
}

/// The directory `d` answers every read as the reference does.
fn agrees(d: &Directory, h: &Harness, per_page: u64, probe: &Probe) -> Result<(), TestCaseError> {
    let r = &h.reference;
    prop_assert_eq!(d.violations(MAX_DEPTH), Vec::<String>::new());
    // Single groups, their full names, and lookups by remote id.
    for id in (0..=h.next_id).map(GroupId::new) {
        match (d.group(id), r.groups.get(&id).filter(|g| g.is_valid)) {
            (Ok(view), Some(group)) => {
                prop_assert_eq!(&view.group, group);
                prop_assert_eq!(view.full_name, r.full_name(id));
            }
            (Err(RuleError::GroupNotFound), None) => {}
            (real, model) => prop_assert!(false, "group {}: {:?} vs {:?}", id, real, model),
        }
    }
    for code in 1..12 {
        let real = d.group_by_remote_id(&remote(code)).map(|g| g.id);
        let model = r
            .groups
            .values()
            .find(|g| g.is_valid && g.remote_id == remote(code));
        prop_assert_eq!(real, model.map(|g| g.id));
    }
    // Members, roles and seats.
    for user in (0..9).map(UserId::new) {
        let real = d.placement(user).map(|p| (p.role, p.groups.to_vec()));
        let model = r.members.get(&user);
        let model = model.map(|m| (m.role, m.groups.iter().copied().collect::<Vec<_>>()));
        prop_assert_eq!(real, model);
    }
    let admins = r.members.values().filter(|m| m.role.uses_admin_seat());
    prop_assert_eq!(d.admins_used(), admins.count() as i64);
    prop_assert!(d.admins_used() <= SEATS);
    prop_assert_eq!(d.member_count(), r.members.len());
    let valid = r.groups.values().filter(|g| g.is_valid).count();
    prop_assert_eq!(d.valid_group_count(), valid);
    // Group listings: the default one, every parent's children and subtree (tombstones and
    // unknown ids included, which must be refused), with and without tombstones, and the probe.
    let mut filters = vec![
        GroupFilter::default(),
        GroupFilter {
            include_invalid: true,
            ..GroupFilter::default()
        },
        group_filter(h, probe),
    ];
    for parent in (0..=h.next_id).map(GroupId::new) {
        for recursive in [false, true] {
            filters.push(GroupFilter {
                parent: Some(parent),
                recursive,
                ..GroupFilter::default()
            });
        }
    }
    for filter in &filters {
        let expected = r.list_groups(filter).map(|ids| {
            ids.iter()
                .map(|id| (r.groups[id].clone(), r.full_name(*id)))
                .collect()
        });
        same_pages(expected, per_page, filter, |page| {
            let (rows, total) = d.list_groups(filter, page)?;
            let rows = rows.into_iter().map(|g| (g.clone(), d.full_name(g.id)));
            Ok((rows.collect(), total))
        })?;
    }
    // Member listings: group 0, every group directly and recursively, and the probe's roles.
    let roles: Option<Vec<Role>> = probe
        .roles
        .as_ref()
        .map(|codes| codes.iter().filter_map(|c| role(*c)).collect());
    for group in (0..=h.next_id).map(GroupId::new) {
        for recursive in [false, true] {
            for roles in [None, roles.clone()] {
                let filter = MemberFilter {
                    group,
                    recursive,
                    roles,
                };
                same_pages(r.list_members(&filter), per_page, &filter, |page| {
                    let (rows, total) = d.list_members(&filter, page)?;
                    let rows = rows.iter().map(|m| (m.user_id, m.role, m.group_id));
                    Ok((rows.collect(), total))
                })?;
            }
        }
    }
    Ok(())
}

/// The directory a fresh load of `d`'s rows builds.
fn reloaded(d: &Directory) -> Directory {
    let mut builder = DirectoryBuilder::new("Team".into(), SEATS, d.version(), 0, 0);
    for group in d.all_groups() {
        builder.add_group(group.clone());
    }
    for (user_id, placement) in d.placements() {
        builder.add_member(user_id, placement.clone());
    }
    builder.finish()
}

#[test]
fn the_directory_answers_as_the_reference_model_does() {
    let config = ProptestConfig {
        cases: 128,
        source_file: Some(file!()),
        ..ProptestConfig::default()
    };
    let steps = proptest::collection::vec((op(), probe()), 1..100);
    let tally = RefCell::new(Tally::new());
    let result = TestRunner::new(config).run(&(steps, 1u64..5), |(steps, per_page)| {
        let mut harness = Harness::new();
        for (op, probe) in &steps {
            harness.step(op)?;
            agrees(&harness.directory, &harness, per_page, probe)?;
        }
        agrees(
            &reloaded(&harness.directory),
            &harness,
            per_page,
            &steps[0].1,
        )?;
        let mut total = tally.borrow_mut();
        for (kind, (accepted, tried)) in &harness.tally {
            let entry = total.entry(kind).or_default();
            entry.0 += accepted;
            entry.1 += tried;
        }
        Ok(())
    });
    if let Err(failure) = result {
        panic!("{failure}");
    }
    // A rule that refuses everything (or a generator that only produces refusals) must fail:
    // at least a quarter of all operations, and one in twenty of each kind, are accepted.
    let tally = tally.into_inner();
    eprintln!("accepted and tried, by kind: {tally:?}");
    let (accepted, tried) = tally.values().fold((0, 0), |(a, t), (accepted, tried)| {
        (a + accepted, t + tried)
    });
    assert!(
        accepted * 4 >= tried,
        "only {accepted} of {tried} operations were accepted"
    );
    for kind in [
        "create",
        "create pair",
        "rename",
        "move",
        "set remote id",
        "delete",
        "add member",
        "update member",
        "remove member",
    ] {
        let (accepted, tried) = tally.get(kind).copied().unwrap_or_default();
        assert!(
            accepted * 20 >= tried && tried > 0,
            "only {accepted} of {tried} {kind} operations were accepted"
        );
    }
}
