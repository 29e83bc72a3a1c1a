//! Validated values: ids and the strings a client controls.
//!
//! A value of one of these types has passed the contract's limits, so code that receives one
//! never re-checks it.

use std::borrow::Borrow;
use std::fmt;
use std::num::ParseIntError;
use std::ops::Deref;
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
id_type!(
    /// Id of a webhook subscription.
    WebhookId
);
id_type!(
    /// Number of an event in its team's change feed: 1, 2, 3, ... without gaps; `0` is the
    /// cursor before the first event. The feed's `after`, an event's `seq` and a webhook's
    /// cursor.
    EventSeq
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

/// Declares a validated string newtype: its `parse` applies the contract's rule, and it is
/// written to the wire and the database as the bare string. With `"field", 1..=MAX` (or
/// `0..=MAX`), `parse` takes up to `MAX` characters without control characters, at least one
/// (or none, and the empty value is the `Default`); otherwise `parse` is written beside it.
macro_rules! text_type {
    ($(#[$doc:meta])* $name:ident: $field:literal, 1..=$max:expr) => {
        text_type!($(#[$doc])* $name);

        impl $name {
            pub fn parse(raw: &str) -> Result<$name, RuleError> {
                checked_text($field, raw, 1, $max).map($name)
            }
        }
    };
    ($(#[$doc:meta])* $name:ident: $field:literal, 0..=$max:expr) => {
        text_type!($(#[$doc])* $name);

        impl $name {
            pub fn parse(raw: &str) -> Result<$name, RuleError> {
                checked_text($field, raw, 0, $max).map($name)
            }
        }

        /// The empty value: none given.
        impl Default for $name {
            fn default() -> Self {
                $name(String::new())
            }
        }
    };
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }

            pub fn into_string(self) -> String {
                self.0
            }

            /// A value read back from the database, which holds only values that passed
            /// `parse`: it is not checked again.
            pub(crate) fn from_stored(raw: String) -> Self {
                Self(raw)
            }
        }

        impl Deref for $name {
            type Target = str;

            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }

        /// As the bare string, so that messages quoting a value read as before.
        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&self.0, f)
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }

        impl From<$name> for String {
            fn from(value: $name) -> String {
                value.0
            }
        }
    };
}

/// `text`, owned, if it has `min..=max` characters (`min` 0 or 1) and no control character;
/// else an invalid argument naming `field`.
fn checked_text(field: &str, text: &str, min: usize, max: usize) -> Result<String, RuleError> {
    let chars = text.chars().count();
    if chars < min || chars > max || text.chars().any(char::is_control) {
        let length = if min == 0 {
            format!("at most {max}")
        } else {
            format!("{min} to {max}")
        };
        return Err(RuleError::invalid(format!(
            "{field} must be {length} characters without control characters"
        )));
    }
    Ok(text.to_owned())
}

text_type!(
    /// A group's display name: 1..64 characters after trimming, without `/` (which separates
    /// the segments of `full_name`) and without control characters. Stored trimmed.
    GroupName
);

impl GroupName {
    pub fn parse(raw: &str) -> Result<GroupName, RuleError> {
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
        Ok(GroupName(trimmed.to_owned()))
    }
}

text_type!(
    /// An org's name: 1..64 characters after trimming, no control characters. Stored trimmed.
    OrgName
);

impl OrgName {
    pub fn parse(raw: &str) -> Result<OrgName, RuleError> {
        checked_text("name", raw.trim(), 1, MAX_NAME_CHARS).map(OrgName)
    }
}

text_type!(
    /// A group's id in the client's own system: `""` (none) or up to 64 characters without
    /// control characters.
    RemoteId: "remote_id", 0..=MAX_NAME_CHARS
);

text_type!(
    /// A member's or user's nickname: up to 64 characters without control characters (`""`:
    /// none).
    Nickname: "nickname", 0..=MAX_NAME_CHARS
);

impl Nickname {
    /// A nickname made of a longer name: its first 64 characters, control characters left
    /// out.
    pub fn shortened(raw: &str) -> Nickname {
        Nickname(
            raw.chars()
                .filter(|c| !c.is_control())
                .take(MAX_NAME_CHARS)
                .collect(),
        )
    }
}

text_type!(
    /// An avatar URL: up to 255 characters without control characters (`""`: none).
    Avatar: "avatar", 0..=MAX_AVATAR_CHARS
);

text_type!(
    /// An app's id for one of its users: 1..128 characters without control characters.
    Openid: "openid", 1..=MAX_OPENID_CHARS
);

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
        &rows[self.range(rows.len())]
    }

    /// The positions of this page's rows among `total` ordered rows (empty past the end).
    pub fn range(self, total: usize) -> std::ops::Range<usize> {
        let start = usize::try_from(self.offset()).unwrap_or(usize::MAX);
        if start >= total {
            return total..total;
        }
        start..start.saturating_add(self.per_page as usize).min(total)
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

    /// The message of an `invalid_argument` refusal.
    fn refusal<T: fmt::Debug>(parsed: Result<T, RuleError>) -> String {
        match parsed {
            Err(RuleError::InvalidArgument(message)) => message,
            other => panic!("not an invalid argument: {other:?}"),
        }
    }

    #[test]
    fn group_names_are_trimmed_and_checked() {
        assert_eq!(GroupName::parse("  Sales ").unwrap().as_str(), "Sales");
        assert_eq!(
            GroupName::parse(&"界".repeat(64)).unwrap().chars().count(),
            64
        );
        let length = "name must be 1 to 64 characters";
        assert_eq!(refusal(GroupName::parse("")), length);
        assert_eq!(refusal(GroupName::parse("   ")), length);
        assert_eq!(refusal(GroupName::parse(&"x".repeat(65))), length);
        assert_eq!(
            refusal(GroupName::parse("a/b")),
            "name must not contain '/'"
        );
        assert_eq!(
            refusal(GroupName::parse("a\u{7}b")),
            "name must not contain control characters"
        );
    }

    #[test]
    fn org_names_are_trimmed_and_checked() {
        assert_eq!(OrgName::parse(" Acme / EU ").unwrap().as_str(), "Acme / EU");
        assert!(OrgName::parse(&"界".repeat(64)).is_ok());
        let message = "name must be 1 to 64 characters without control characters";
        for bad in [String::new(), " ".into(), "x".repeat(65), "a\nb".into()] {
            assert_eq!(refusal(OrgName::parse(&bad)), message, "{bad:?}");
        }
    }

    #[test]
    fn remote_ids_may_be_empty_and_are_kept_as_given() {
        assert_eq!(RemoteId::parse("").unwrap(), RemoteId::default());
        assert_eq!(RemoteId::parse(" r-1 ").unwrap().as_str(), " r-1 ");
        assert!(RemoteId::parse(&"界".repeat(64)).is_ok());
        let message = "remote_id must be at most 64 characters without control characters";
        assert_eq!(refusal(RemoteId::parse(&"x".repeat(65))), message);
        assert_eq!(refusal(RemoteId::parse("r\t1")), message);
    }

    #[test]
    fn nicknames_may_be_empty_and_are_bounded() {
        assert_eq!(Nickname::parse("").unwrap(), Nickname::default());
        assert_eq!(Nickname::parse("Ada").unwrap(), "Ada");
        assert!(Nickname::parse(&"界".repeat(64)).is_ok());
        let message = "nickname must be at most 64 characters without control characters";
        assert_eq!(refusal(Nickname::parse(&"x".repeat(65))), message);
        assert_eq!(refusal(Nickname::parse("A\u{0}")), message);
        let shortened = Nickname::shortened(&format!("A\tB{}", "界".repeat(70)));
        assert_eq!(shortened.chars().count(), 64);
        assert!(shortened.starts_with("AB界"));
    }

    #[test]
    fn avatars_may_be_empty_and_are_bounded() {
        assert_eq!(Avatar::parse("").unwrap(), Avatar::default());
        assert!(Avatar::parse(&"x".repeat(255)).is_ok());
        let message = "avatar must be at most 255 characters without control characters";
        assert_eq!(refusal(Avatar::parse(&"x".repeat(256))), message);
        assert_eq!(refusal(Avatar::parse("https://a\r\n")), message);
    }

    #[test]
    fn openids_are_required_and_bounded() {
        assert_eq!(Openid::parse("u-1").unwrap().to_string(), "u-1");
        assert!(Openid::parse(&"界".repeat(128)).is_ok());
        let message = "openid must be 1 to 128 characters without control characters";
        assert_eq!(refusal(Openid::parse("")), message);
        assert_eq!(refusal(Openid::parse(&"x".repeat(129))), message);
        assert_eq!(refusal(Openid::parse("u\u{1b}1")), message);
    }

    #[test]
    fn text_values_are_written_as_bare_strings() {
        let name = GroupName::parse(" Sales ").unwrap();
        assert_eq!(serde_json::to_string(&name).unwrap(), r#""Sales""#);
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
