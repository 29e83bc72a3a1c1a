//! A parsed snapshot, held compactly: the strings of every member back to back in one buffer,
//! and the groups a member names as numbers of interned remote ids. A snapshot of a million
//! members is held in about a third of the memory that one string per field took, and for as
//! long as the sync runs.

use std::collections::HashMap;

/// One group of a snapshot, as a reader hands it over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotGroup {
    pub remote_id: String,
    pub name: String,
    /// `""` for the top level.
    pub parent_remote_id: String,
    pub order: i64,
}

/// One member of a snapshot, as a reader hands it over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotMember {
    pub openid: String,
    pub nickname: String,
    pub avatar: String,
    /// As given (checked by the planner); [`Role::Member`](crate::domain::values::Role) when
    /// the snapshot says nothing.
    pub role: i64,
    /// `[]` = at the root only.
    pub group_remote_ids: Vec<String>,
}

/// Where a string sits in [`Snapshot::text`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Span {
    start: usize,
    len: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct StoredGroup {
    remote_id: Span,
    name: Span,
    parent_remote_id: Span,
    order: i64,
}

/// A member: its three strings back to back from `start`, its groups in
/// [`Snapshot::member_groups`] from `groups`. Offsets are 32-bit, as the readers bound a
/// snapshot to 4 GiB (`snapshot::MOST_BYTES`), and the role is kept as a 32-bit
/// number (one outside that range is as invalid as any other unknown role): 28 bytes where
/// 40 were, 12 MB less for a million members.
#[derive(Debug, Clone, PartialEq, Eq)]
struct StoredMember {
    start: u32,
    groups: u32,
    openid: u32,
    nickname: u32,
    avatar: u32,
    group_count: u32,
    role: i32,
}

/// The whole snapshot.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    text: String,
    groups: Vec<StoredGroup>,
    members: Vec<StoredMember>,
    /// The groups of every member, as numbers of [`Snapshot::remote_ids`].
    member_groups: Vec<u32>,
    /// Each distinct remote id a member names, by number.
    remote_ids: Vec<Span>,
    interned: HashMap<Box<str>, u32>,
}

/// A group of a [`Snapshot`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupEntry<'a> {
    pub remote_id: &'a str,
    pub name: &'a str,
    /// `""` for the top level.
    pub parent_remote_id: &'a str,
    pub order: i64,
}

/// A member of a [`Snapshot`].
#[derive(Debug, Clone, Copy)]
pub struct MemberEntry<'a> {
    pub openid: &'a str,
    pub nickname: &'a str,
    pub avatar: &'a str,
    pub role: i64,
    groups: &'a [u32],
    snapshot: &'a Snapshot,
}

impl<'a> MemberEntry<'a> {
    /// The remote ids of the member's groups, as given (`[]` = at the root only).
    pub fn group_remote_ids(&self) -> impl ExactSizeIterator<Item = &'a str> + use<'a> {
        let snapshot = self.snapshot;
        self.groups
            .iter()
            .map(move |n| snapshot.str(snapshot.remote_ids[*n as usize]))
    }
}

/// The length of a string the readers bounded already (a token is at most 16 KiB).
fn length(value: &str) -> u32 {
    u32::try_from(value.len()).unwrap_or(u32::MAX)
}

/// An offset into a snapshot the readers bounded already (to 4 GiB, `snapshot::MOST_BYTES`).
fn offset(at: usize) -> u32 {
    u32::try_from(at).unwrap_or(u32::MAX)
}

impl Snapshot {
    fn str(&self, span: Span) -> &str {
        self.text
            .get(span.start..span.start + span.len as usize)
            .unwrap_or_default()
    }

    fn push_str(&mut self, value: &str) -> Span {
        let span = Span {
            start: self.text.len(),
            len: length(value),
        };
        self.text.push_str(value);
        span
    }

    fn intern(&mut self, remote_id: &str) -> u32 {
        if let Some(n) = self.interned.get(remote_id) {
            return *n;
        }
        let n = u32::try_from(self.remote_ids.len()).unwrap_or(u32::MAX);
        let span = self.push_str(remote_id);
        self.remote_ids.push(span);
        self.interned.insert(remote_id.into(), n);
        n
    }

    pub fn push_group(&mut self, group: SnapshotGroup) {
        let stored = StoredGroup {
            remote_id: self.push_str(&group.remote_id),
            name: self.push_str(&group.name),
            parent_remote_id: self.push_str(&group.parent_remote_id),
            order: group.order,
        };
        self.groups.push(stored);
    }

    pub fn push_member(&mut self, member: SnapshotMember) {
        let groups = offset(self.member_groups.len());
        for remote_id in &member.group_remote_ids {
            let n = self.intern(remote_id);
            self.member_groups.push(n);
        }
        let start = offset(self.text.len());
        for value in [&member.openid, &member.nickname, &member.avatar] {
            self.text.push_str(value);
        }
        self.members.push(StoredMember {
            start,
            groups,
            openid: length(&member.openid),
            nickname: length(&member.nickname),
            avatar: length(&member.avatar),
            group_count: length_of(&member.group_remote_ids),
            role: i32::try_from(member.role).unwrap_or(i32::MIN),
        });
    }

    pub fn group_count(&self) -> usize {
        self.groups.len()
    }

    pub fn member_count(&self) -> usize {
        self.members.len()
    }

    /// The `i`-th group (`i` < [`Snapshot::group_count`]).
    pub fn group(&self, i: usize) -> GroupEntry<'_> {
        let group = &self.groups[i];
        GroupEntry {
            remote_id: self.str(group.remote_id),
            name: self.str(group.name),
            parent_remote_id: self.str(group.parent_remote_id),
            order: group.order,
        }
    }

    /// Sort the members numbered `places` by openid, and members of the same openid by
    /// place.
    ///
    /// Each place is sorted with its openid's first eight bytes as a number, and openids are
    /// compared in full only where those are equal: comparing the openids themselves, each
    /// read from the snapshot's text, took 8.6% of a first sync's CPU for its two sorts of a
    /// million members (`perf`, 2026-12-05).
    pub fn sort_by_openid(&self, places: &mut [u32]) {
        let openid = |n: u32| self.openid(n as usize);
        let mut keyed: Vec<(u64, u32)> = places
            .iter()
            .map(|&n| (openid_prefix(openid(n)), n))
            .collect();
        keyed.sort_unstable_by(|(a_prefix, a), (b_prefix, b)| {
            a_prefix
                .cmp(b_prefix)
                .then_with(|| openid(*a).cmp(openid(*b)))
                .then(a.cmp(b))
        });
        for (place, (_, n)) in places.iter_mut().zip(keyed) {
            *place = n;
        }
    }

    /// The `i`-th member's openid: [`Snapshot::member`]'s, without its other fields (a sort
    /// of a million members asks for it tens of millions of times).
    pub fn openid(&self, i: usize) -> &str {
        let member = &self.members[i];
        self.str(Span {
            start: member.start as usize,
            len: member.openid,
        })
    }

    /// The `i`-th member (`i` < [`Snapshot::member_count`]).
    pub fn member(&self, i: usize) -> MemberEntry<'_> {
        let member = &self.members[i];
        let span = |start: usize, len: u32| Span { start, len };
        let openid = span(member.start as usize, member.openid);
        let nickname = span(openid.start + openid.len as usize, member.nickname);
        let avatar = span(nickname.start + nickname.len as usize, member.avatar);
        let from = member.groups as usize;
        let groups = self
            .member_groups
            .get(from..from + member.group_count as usize)
            .unwrap_or_default();
        MemberEntry {
            openid: self.str(openid),
            nickname: self.str(nickname),
            avatar: self.str(avatar),
            role: i64::from(member.role),
            groups,
            snapshot: self,
        }
    }

    pub fn groups(&self) -> impl ExactSizeIterator<Item = GroupEntry<'_>> {
        (0..self.groups.len()).map(|i| self.group(i))
    }

    pub fn members(&self) -> impl ExactSizeIterator<Item = MemberEntry<'_>> {
        (0..self.members.len()).map(|i| self.member(i))
    }
}

fn length_of<T>(list: &[T]) -> u32 {
    u32::try_from(list.len()).unwrap_or(u32::MAX)
}

/// The first eight bytes of `openid` as a big-endian number, zero-padded: numbers in the order
/// of the openids, equal only where one openid's first eight bytes (or all of it) are a prefix
/// of the other's.
fn openid_prefix(openid: &str) -> u64 {
    let mut bytes = [0u8; 8];
    let head = &openid.as_bytes()[..openid.len().min(8)];
    bytes[..head.len()].copy_from_slice(head);
    u64::from_be_bytes(bytes)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::domain::values::Role;

    proptest! {
        /// The same order as sorting by the openids themselves, then by place, whatever the
        /// openids share: prefixes, NUL bytes, lengths around eight bytes, non-ASCII text.
        #[test]
        fn sorting_by_openid_matches_comparing_the_openids(
            openids in proptest::collection::vec("(ab|a\\x00|ü|x){0,6}", 0..40),
        ) {
            let mut snapshot = Snapshot::default();
            for openid in &openids {
                snapshot.push_member(SnapshotMember {
                    openid: openid.clone(),
                    nickname: String::new(),
                    avatar: String::new(),
                    role: 2,
                    group_remote_ids: Vec::new(),
                });
            }
            let mut places: Vec<u32> = (0..openids.len() as u32).rev().collect();
            snapshot.sort_by_openid(&mut places);
            let mut expected: Vec<u32> = (0..openids.len() as u32).collect();
            expected.sort_by(|a, b| openids[*a as usize].cmp(&openids[*b as usize]).then(a.cmp(b)));
            prop_assert_eq!(places, expected);
        }
    }

    #[test]
    fn entries_read_back_what_was_pushed() {
        let mut snapshot = Snapshot::default();
        snapshot.push_group(SnapshotGroup {
            remote_id: "a".into(),
            name: "A".into(),
            parent_remote_id: String::new(),
            order: 3,
        });
        for (openid, groups) in [("u1", vec!["a", "x"]), ("u2", vec![]), ("u3", vec!["x"])] {
            snapshot.push_member(SnapshotMember {
                openid: openid.into(),
                nickname: format!("{openid} name"),
                avatar: String::new(),
                role: 2,
                group_remote_ids: groups.into_iter().map(String::from).collect(),
            });
        }
        let group = snapshot.group(0);
        assert_eq!((group.remote_id, group.name, group.order), ("a", "A", 3));
        assert_eq!(group.parent_remote_id, "");
        let read: Vec<(&str, &str, Vec<&str>)> = snapshot
            .members()
            .map(|m| (m.openid, m.nickname, m.group_remote_ids().collect()))
            .collect();
        assert_eq!(
            read,
            [
                ("u1", "u1 name", vec!["a", "x"]),
                ("u2", "u2 name", vec![]),
                ("u3", "u3 name", vec!["x"]),
            ]
        );
        assert_eq!(snapshot.member(2).avatar, "");
        assert_eq!(snapshot.remote_ids.len(), 2);
    }

    /// A role is kept in 32 bits: a valid one reads back as given, and one beyond that range
    /// stays a role no member may have.
    #[test]
    fn roles_read_back_or_stay_invalid() {
        let mut snapshot = Snapshot::default();
        for role in [3, -1, (1_i64 << 32) + 3, i64::MIN] {
            snapshot.push_member(SnapshotMember {
                openid: format!("u{role}"),
                nickname: String::new(),
                avatar: String::new(),
                role,
                group_remote_ids: Vec::new(),
            });
        }
        let roles: Vec<i64> = snapshot.members().map(|m| m.role).collect();
        assert_eq!(roles[..2], [3, -1]);
        assert_eq!(
            Role::assignable(roles[0]).map_err(|e| e.to_string()),
            Ok(Role::SurveyAdmin)
        );
        for role in &roles[1..] {
            assert!(Role::assignable(*role).is_err(), "{role}");
        }
    }
}
