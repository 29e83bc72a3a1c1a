//! Validated values: ids and the strings a client controls.
//!
//! A value of one of these types has passed the contract's limits, so code that receives one
//! never re-checks it.

use std::fmt;
use std::num::ParseIntError;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::RuleError;

/// Declares an id newtype over `i64`: distinct types, so a swapped pair of ids does not
/// compile, with the same wire form (a JSON integer) and the same cost as the bare integer.
macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(
            Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize,
            Deserialize,
        )]
        #[serde(transparent)]
        pub struct $name(i64);

        impl $name {
            /// The id with this stored or wire value.
            pub const fn new(raw: i64) -> Self {
                Self(raw)
            }

            /// The stored or wire value.
            pub const fn get(self) -> i64 {
                self.0
            }
        }

        impl FromStr for $name {
            type Err = ParseIntError;

            fn from_str(raw: &str) -> Result<Self, ParseIntError> {
                raw.parse().map(Self)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }
    };
}

id_type!(
    /// Id of a contacts directory (a team). Small integer, unique on the server.
    TeamId
);
id_type!(
    /// Id of an org (team account). Large integer.
    OrgId
);
id_type!(
    /// Id of a group; `0` is the directory root (the default group).
    GroupId
);
id_type!(
    /// Id of a user identity.
    UserId
);

/// The root of every directory: "the top level" as a parent, "the whole directory" as a group.
pub const ROOT_GROUP: GroupId = GroupId::new(0);

/// Largest group id the contract allows (groups ids are uint32 on the wire).
pub const MAX_GROUP_ID: GroupId = GroupId::new(u32::MAX as i64);

/// Most values one array a client sends may hold (a query array, a member's `group_ids`).
pub const MAX_ARRAY_ITEMS: usize = 1000;

/// The most groups one `delete_groups` call may delete.
pub const MAX_DELETE_GROUPS: usize = 100;

/// Longest name, nickname or remote id, in characters.
pub const MAX_NAME_CHARS: usize = 64;
/// Longest avatar URL, in characters.
pub const MAX_AVATAR_CHARS: usize = 255;
/// Longest openid, in characters.
pub const MAX_OPENID_CHARS: usize = 128;

/// A group's display name: 1..64 characters after trimming, without `/` (which separates the
/// segments of `full_name`) and without control characters.
pub fn group_name(raw: &str) -> Result<String, RuleError> {
    let trimmed = raw.trim();
    let chars = trimmed.chars().count();
    if chars == 0 || chars > MAX_NAME_CHARS {
        return Err(RuleError::invalid("name must be 1 to 64 characters"));
    }
    if trimmed.contains('/') {
        return Err(RuleError::invalid("name must not contain '/'"));
    }
    if trimmed.chars().any(char::is_control) {
        return Err(RuleError::invalid(
            "name must not contain control characters",
        ));
    }
    Ok(trimmed.to_owned())
}

/// An org's name: 1..64 characters after trimming, no control characters.
pub fn org_name(raw: &str) -> Result<String, RuleError> {
    let trimmed = raw.trim();
    let chars = trimmed.chars().count();
    if chars == 0 || chars > MAX_NAME_CHARS || trimmed.chars().any(char::is_control) {
        return Err(RuleError::invalid(
            "name must be 1 to 64 characters without control characters",
        ));
    }
    Ok(trimmed.to_owned())
}

/// A group's id in the client's own system: `""` (none) or up to 64 characters.
pub fn remote_id(raw: &str) -> Result<String, RuleError> {
    if raw.chars().count() > MAX_NAME_CHARS || raw.chars().any(char::is_control) {
        return Err(RuleError::invalid(
            "remote_id must be at most 64 characters without control characters",
        ));
    }
    Ok(raw.to_owned())
}

/// A member's or user's nickname: up to 64 characters.
pub fn nickname(raw: &str) -> Result<String, RuleError> {
    if raw.chars().count() > MAX_NAME_CHARS || raw.chars().any(char::is_control) {
        return Err(RuleError::invalid(
            "nickname must be at most 64 characters without control characters",
        ));
    }
    Ok(raw.to_owned())
}

/// An avatar URL: up to 255 characters.
pub fn avatar(raw: &str) -> Result<String, RuleError> {
    if raw.chars().count() > MAX_AVATAR_CHARS || raw.chars().any(char::is_control) {
        return Err(RuleError::invalid(
            "avatar must be at most 255 characters without control characters",
        ));
    }
    Ok(raw.to_owned())
}

/// An app's id for one of its users: 1..128 characters.
pub fn openid(raw: &str) -> Result<String, RuleError> {
    let chars = raw.chars().count();
    if chars == 0 || chars > MAX_OPENID_CHARS || raw.chars().any(char::is_control) {
        return Err(RuleError::invalid(
            "openid must be 1 to 128 characters without control characters",
        ));
    }
    Ok(raw.to_owned())
}

/// A group id given by a client as a parent or target: 0 (the root) or a positive uint32.
pub fn group_id(raw: i64) -> Result<GroupId, RuleError> {
    if !(ROOT_GROUP.get()..=MAX_GROUP_ID.get()).contains(&raw) {
        return Err(RuleError::invalid("group id out of range"));
    }
    Ok(GroupId::new(raw))
}

/// Where a group was created or last changed: the API (`1`) or a directory sync (`2`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    Api = 1,
    Sync = 2,
}

impl Source {
    pub const fn code(self) -> i64 {
        self as i64
    }

    /// The lowest code a client may assign ([`Role::assignable`]): team admin.
    pub const MIN_ASSIGNABLE_CODE: i64 = Role::TeamAdmin.code();

    /// The highest role code: regular member.
    pub const MAX_CODE: i64 = Role::Member.code();

    pub fn from_code(code: i64) -> Source {
        if code == 2 { Source::Sync } else { Source::Api }
    }
}

/// A member's role in a team. Admin roles (2 and 3) use one of the org's admin seats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    Owner = 1,
    TeamAdmin = 2,
    SurveyAdmin = 3,
    Member = 4,
}

impl Role {
    pub const fn code(self) -> i64 {
        self as i64
    }

    /// The lowest code a client may assign ([`Role::assignable`]): team admin.
    pub const MIN_ASSIGNABLE_CODE: i64 = Role::TeamAdmin.code();

    /// The highest role code: regular member.
    pub const MAX_CODE: i64 = Role::Member.code();

    pub fn from_code(code: i64) -> Option<Role> {
        match code {
            1 => Some(Role::Owner),
            2 => Some(Role::TeamAdmin),
            3 => Some(Role::SurveyAdmin),
            4 => Some(Role::Member),
            _ => None,
        }
    }

    /// A role a client may assign (everything but owner).
    pub fn assignable(code: i64) -> Result<Role, RuleError> {
        match Role::from_code(code) {
            Some(Role::Owner) | None => Err(RuleError::invalid("role must be 2, 3 or 4")),
            Some(role) => Ok(role),
        }
    }

    pub fn uses_admin_seat(self) -> bool {
        matches!(self, Role::TeamAdmin | Role::SurveyAdmin)
    }
}

/// One page of a listing: `page` counts from 1, `per_page` is 1..=1000.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    pub page: u64,
    pub per_page: u64,
}

impl Page {
    pub const MAX_PER_PAGE: u64 = 1000;

    pub fn new(page: u64, per_page: u64) -> Result<Page, RuleError> {
        if page == 0 {
            return Err(RuleError::invalid("page must be at least 1"));
        }
        if per_page == 0 || per_page > Self::MAX_PER_PAGE {
            return Err(RuleError::invalid("per_page must be between 1 and 1000"));
        }
        Ok(Page { page, per_page })
    }

    /// Index of the first row of this page.
    pub fn offset(self) -> u64 {
        (self.page - 1).saturating_mul(self.per_page)
    }

    /// The rows of this page out of an ordered slice.
    pub fn slice<T>(self, rows: &[T]) -> &[T] {
        let start = usize::try_from(self.offset()).unwrap_or(usize::MAX);
        if start >= rows.len() {
            return &[];
        }
        let end = start.saturating_add(self.per_page as usize).min(rows.len());
        &rows[start..end]
    }
}

impl Default for Page {
    fn default() -> Self {
        Page {
            page: 1,
            per_page: 10,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_names_are_trimmed_and_checked() {
        assert_eq!(group_name("  Sales ").unwrap(), "Sales");
        assert!(group_name("   ").is_err());
        assert!(group_name("a/b").is_err());
        assert!(group_name(&"x".repeat(65)).is_err());
        assert_eq!(group_name(&"界".repeat(64)).unwrap().chars().count(), 64);
    }

    #[test]
    fn pages_slice_past_the_end_to_nothing() {
        let rows = [1, 2, 3, 4, 5];
        assert_eq!(Page::new(2, 2).unwrap().slice(&rows), &[3, 4]);
        assert_eq!(Page::new(3, 2).unwrap().slice(&rows), &[5]);
        assert!(Page::new(4, 2).unwrap().slice(&rows).is_empty());
        assert!(Page::new(u64::MAX, 1000).unwrap().slice(&rows).is_empty());
        assert!(Page::new(0, 10).is_err());
        assert!(Page::new(1, 1001).is_err());
    }
}
