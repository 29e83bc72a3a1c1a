//! JSON and NDJSON snapshots, parsed by serde visitors that bound every value as it is read:
//! each string against its field's limit, each member's groups against
//! [`MAX_MEMBER_GROUPS`], and the groups and members of the whole snapshot against
//! [`SnapshotLimits`]. Nothing is buffered beyond the record being read; unknown fields are
//! skipped without being kept.

use std::fmt;
use std::io::Read;

use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

use super::{Parsed, SnapshotError, SnapshotLimits, SnapshotOptions, bounded, too_many};
use crate::domain::sync::{MAX_MEMBER_GROUPS, Snapshot, SnapshotGroup, SnapshotMember, SyncMode};
use crate::domain::values::{MAX_AVATAR_CHARS, MAX_NAME_CHARS, MAX_OPENID_CHARS, Role};

/// A JSON document: `{"mode": ..., "groups": [...], "members": [...]}`.
pub fn read_document(reader: impl Read, limits: &SnapshotLimits) -> Result<Parsed, SnapshotError> {
    let mut deserializer = serde_json::Deserializer::from_reader(reader);
    let parsed = Document { limits }
        .deserialize(&mut deserializer)
        .and_then(|parsed| deserializer.end().map(|()| parsed))
        .map_err(json_error)?;
    Ok(parsed)
}

/// NDJSON: one record per line, tagged by `kind`.
pub fn read_lines(reader: impl Read, limits: &SnapshotLimits) -> Result<Parsed, SnapshotError> {
    let mut parsed = Parsed::default();
    let records = serde_json::Deserializer::from_reader(reader).into_iter::<Record>();
    for record in records {
        match record.map_err(json_error)? {
            Record::Options(options) => parsed.options = options,
            Record::Group(group) => {
                if parsed.snapshot.group_count() >= limits.max_groups {
                    return Err(SnapshotError::Invalid(too_many(
                        "groups",
                        limits.max_groups,
                    )));
                }
                parsed.snapshot.push_group(group);
            }
            Record::Member(member) => {
                if parsed.snapshot.member_count() >= limits.max_members {
                    return Err(SnapshotError::Invalid(too_many(
                        "members",
                        limits.max_members,
                    )));
                }
                parsed.snapshot.push_member(member);
            }
        }
    }
    Ok(parsed)
}

fn json_error(error: serde_json::Error) -> SnapshotError {
    if error.is_io() {
        SnapshotError::from_io(error.into())
    } else {
        SnapshotError::Invalid(error.to_string())
    }
}

/// Where a record sits, for error messages: `groups[3]`, or the kind of an NDJSON line (whose
/// errors carry the line number).
#[derive(Clone, Copy)]
enum Place {
    Item(&'static str, usize),
    Line,
}

impl Place {
    fn field(self, kind: Option<Kind>, field: &'static str) -> Field {
        Field {
            place: self,
            kind,
            field,
            element: None,
        }
    }
}

/// A field's name in error messages (`groups[3].name`, `member.openid`, with the element of a
/// list: `members[0].group_remote_ids[2]`), written only when a message is: a snapshot has
/// millions of fields, and nearly all are valid.
#[derive(Clone, Copy)]
struct Field {
    place: Place,
    kind: Option<Kind>,
    field: &'static str,
    element: Option<usize>,
}

impl fmt::Display for Field {
    fn fmt(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        let field = self.field;
        match (self.place, self.kind) {
            (Place::Item(list, index), _) => write!(formatter, "{list}[{index}].{field}")?,
            (Place::Line, Some(kind)) => write!(formatter, "{}.{field}", kind.name())?,
            (Place::Line, None) => formatter.write_str(field)?,
        }
        match self.element {
            Some(element) => write!(formatter, "[{element}]"),
            None => Ok(()),
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Options,
    Group,
    Member,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Options => "options",
            Kind::Group => "group",
            Kind::Member => "member",
        }
    }
}

/// A string of at most `max` characters (a group name: after trimming).
struct Text {
    field: Field,
    max: usize,
    trimmed: bool,
}

impl<'de> DeserializeSeed<'de> for Text {
    type Value = String;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<String, D::Error> {
        deserializer.deserialize_string(self)
    }
}

impl Visitor<'_> for Text {
    type Value = String;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        write!(formatter, "{} as a string", self.field)
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<String, E> {
        bounded(self.field, value, self.max, self.trimmed).map_err(E::custom)?;
        Ok(value.to_owned())
    }
}

/// A member's `group_remote_ids`: at most [`MAX_MEMBER_GROUPS`] remote ids.
struct GroupIds {
    field: Field,
}

impl<'de> DeserializeSeed<'de> for GroupIds {
    type Value = Vec<String>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Vec<String>, D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for GroupIds {
    type Value = Vec<String>;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        write!(formatter, "{} as an array of remote ids", self.field)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<String>, A::Error> {
        let mut ids = Vec::new();
        loop {
            let text = Text {
                field: Field {
                    element: Some(ids.len()),
                    ..self.field
                },
                max: MAX_NAME_CHARS,
                trimmed: false,
            };
            let Some(id) = seq.next_element_seed(text)? else {
                return Ok(ids);
            };
            if ids.len() == MAX_MEMBER_GROUPS {
                return Err(de::Error::custom(format_args!(
                    "{} holds more than {MAX_MEMBER_GROUPS} remote ids",
                    self.field
                )));
            }
            ids.push(id);
        }
    }
}

/// A value of an unknown field, read to its end and dropped. Unlike serde's `IgnoredAny`, its
/// strings are decoded, so invalid UTF-8 or a lone surrogate is refused wherever it is.
struct Skip;

impl<'de> Deserialize<'de> for Skip {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Skip, D::Error> {
        deserializer.deserialize_any(Skip)
    }
}

impl<'de> Visitor<'de> for Skip {
    type Value = Skip;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("any JSON value")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Skip, E> {
        Ok(Skip)
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Skip, E> {
        Ok(Skip)
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Skip, E> {
        Ok(Skip)
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Skip, E> {
        Ok(Skip)
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<Skip, E> {
        Ok(Skip)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Skip, E> {
        Ok(Skip)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Skip, A::Error> {
        while seq.next_element::<Skip>()?.is_some() {}
        Ok(Skip)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Skip, A::Error> {
        while map.next_entry::<Skip, Skip>()?.is_some() {}
        Ok(Skip)
    }
}

/// The keys a record may have; any other is skipped.
enum Key {
    Kind,
    RemoteId,
    Name,
    ParentRemoteId,
    Order,
    Openid,
    Nickname,
    Avatar,
    Role,
    GroupRemoteIds,
    Mode,
    DryRun,
    AllowMassDelete,
    Groups,
    Members,
    Other,
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Key, D::Error> {
        struct KeyVisitor;
        impl Visitor<'_> for KeyVisitor {
            type Value = Key;
            fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
                formatter.write_str("a field name")
            }
            fn visit_str<E: de::Error>(self, key: &str) -> Result<Key, E> {
                Ok(match key {
                    "kind" => Key::Kind,
                    "remote_id" => Key::RemoteId,
                    "name" => Key::Name,
                    "parent_remote_id" => Key::ParentRemoteId,
                    "order" => Key::Order,
                    "openid" => Key::Openid,
                    "nickname" => Key::Nickname,
                    "avatar" => Key::Avatar,
                    "role" => Key::Role,
                    "group_remote_ids" => Key::GroupRemoteIds,
                    "mode" => Key::Mode,
                    "dry_run" => Key::DryRun,
                    "allow_mass_delete" => Key::AllowMassDelete,
                    "groups" => Key::Groups,
                    "members" => Key::Members,
                    _ => Key::Other,
                })
            }
        }
        deserializer.deserialize_identifier(KeyVisitor)
    }
}

/// One record: the options, a group or a member.
enum Record {
    Options(SnapshotOptions),
    Group(SnapshotGroup),
    Member(SnapshotMember),
}

/// Store `value` in `slot`, refusing a field given twice.
fn once<T, E: de::Error>(
    slot: &mut Option<T>,
    value: T,
    field: impl fmt::Display,
) -> Result<(), E> {
    if slot.replace(value).is_some() {
        return Err(E::custom(format_args!("{field} is given twice")));
    }
    Ok(())
}

/// The fields of a record, read with their limits.
#[derive(Default)]
struct Fields {
    kind: Option<Kind>,
    remote_id: Option<String>,
    name: Option<String>,
    parent_remote_id: Option<String>,
    order: Option<i64>,
    openid: Option<String>,
    nickname: Option<String>,
    avatar: Option<String>,
    role: Option<i64>,
    group_remote_ids: Option<Vec<String>>,
    options: SnapshotOptions,
}

impl Fields {
    /// Read the value of `key` from `map` into its field.
    fn read<'de, A: MapAccess<'de>>(
        &mut self,
        key: Key,
        map: &mut A,
        place: Place,
        tagged: bool,
    ) -> Result<(), A::Error> {
        let kind = self.kind;
        let name = |field: &'static str| place.field(kind, field);
        let text = |field: &'static str, max: usize, trimmed: bool| Text {
            field: name(field),
            max,
            trimmed,
        };
        match key {
            Key::Kind if tagged => {
                let kind = match map.next_value_seed(text("kind", 16, false))?.as_str() {
                    "options" => Kind::Options,
                    "group" => Kind::Group,
                    "member" => Kind::Member,
                    other => {
                        return Err(de::Error::custom(format_args!(
                            "kind must be options, group or member, not {other:?}"
                        )));
                    }
                };
                once(&mut self.kind, kind, "kind")
            }
            Key::RemoteId => {
                let value = map.next_value_seed(text("remote_id", MAX_NAME_CHARS, false))?;
                once(&mut self.remote_id, value, name("remote_id"))
            }
            Key::Name => {
                let value = map.next_value_seed(text("name", MAX_NAME_CHARS, true))?;
                once(&mut self.name, value, name("name"))
            }
            Key::ParentRemoteId => {
                let field = "parent_remote_id";
                let value = map.next_value_seed(text(field, MAX_NAME_CHARS, false))?;
                once(&mut self.parent_remote_id, value, name(field))
            }
            Key::Order => {
                let value = map.next_value()?;
                once(&mut self.order, value, name("order"))
            }
            Key::Openid => {
                let value = map.next_value_seed(text("openid", MAX_OPENID_CHARS, false))?;
                once(&mut self.openid, value, name("openid"))
            }
            Key::Nickname => {
                let value = map.next_value_seed(text("nickname", MAX_NAME_CHARS, false))?;
                once(&mut self.nickname, value, name("nickname"))
            }
            Key::Avatar => {
                let value = map.next_value_seed(text("avatar", MAX_AVATAR_CHARS, false))?;
                once(&mut self.avatar, value, name("avatar"))
            }
            Key::Role => {
                let value = map.next_value()?;
                once(&mut self.role, value, name("role"))
            }
            Key::GroupRemoteIds => {
                let field = name("group_remote_ids");
                let value = map.next_value_seed(GroupIds { field })?;
                once(&mut self.group_remote_ids, value, field)
            }
            Key::Mode => {
                let raw = map.next_value_seed(text("mode", 16, false))?;
                let mode = SyncMode::parse(&raw)
                    .ok_or_else(|| de::Error::custom("mode must be upsert or replace"))?;
                once(&mut self.options.mode, mode, "mode")
            }
            Key::DryRun => {
                let value = map.next_value()?;
                once(&mut self.options.dry_run, value, "dry_run")
            }
            Key::AllowMassDelete => {
                let value = map.next_value()?;
                once(
                    &mut self.options.allow_mass_delete,
                    value,
                    "allow_mass_delete",
                )
            }
            _ => map.next_value::<Skip>().map(|_| ()),
        }
    }

    fn into_record<E: de::Error>(self, place: Place) -> Result<Record, E> {
        let missing = |field: &'static str| {
            E::custom(format_args!("{} is missing", place.field(self.kind, field)))
        };
        match self.kind {
            None => Err(E::custom("kind is missing (options, group or member)")),
            Some(Kind::Options) => Ok(Record::Options(self.options)),
            Some(Kind::Group) => Ok(Record::Group(SnapshotGroup {
                remote_id: self.remote_id.ok_or_else(|| missing("remote_id"))?,
                name: self.name.ok_or_else(|| missing("name"))?,
                parent_remote_id: self.parent_remote_id.unwrap_or_default(),
                order: self.order.unwrap_or(0),
            })),
            Some(Kind::Member) => Ok(Record::Member(SnapshotMember {
                openid: self.openid.ok_or_else(|| missing("openid"))?,
                nickname: self.nickname.unwrap_or_default(),
                avatar: self.avatar.unwrap_or_default(),
                role: self.role.unwrap_or(Role::Member.code()),
                group_remote_ids: self.group_remote_ids.unwrap_or_default(),
            })),
        }
    }
}

/// Reads one record; `kind` is known for the items of a document's lists, and read from the
/// `kind` field of an NDJSON line.
struct RecordSeed {
    kind: Option<Kind>,
    place: Place,
}

impl<'de> DeserializeSeed<'de> for RecordSeed {
    type Value = Record;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Record, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for RecordSeed {
    type Value = Record;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("a snapshot record (an object)")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Record, A::Error> {
        let tagged = self.kind.is_none();
        let mut fields = Fields {
            kind: self.kind,
            ..Fields::default()
        };
        while let Some(key) = map.next_key::<Key>()? {
            fields.read(key, &mut map, self.place, tagged)?;
        }
        fields.into_record(self.place)
    }
}

impl<'de> Deserialize<'de> for Record {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Record, D::Error> {
        RecordSeed {
            kind: None,
            place: Place::Line,
        }
        .deserialize(deserializer)
    }
}

/// The `groups` or `members` list of a document, appended to `snapshot` item by item.
struct List<'a> {
    name: &'static str,
    kind: Kind,
    max: usize,
    snapshot: &'a mut Snapshot,
}

impl List<'_> {
    fn len(&self) -> usize {
        match self.kind {
            Kind::Group => self.snapshot.group_count(),
            _ => self.snapshot.member_count(),
        }
    }
}

impl<'de> DeserializeSeed<'de> for List<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for List<'_> {
    type Value = ();

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        write!(formatter, "{} as an array", self.name)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        loop {
            let seed = RecordSeed {
                kind: Some(self.kind),
                place: Place::Item(self.name, self.len()),
            };
            let Some(record) = seq.next_element_seed(seed)? else {
                return Ok(());
            };
            if self.len() >= self.max {
                return Err(de::Error::custom(too_many(self.name, self.max)));
            }
            match record {
                Record::Group(group) => self.snapshot.push_group(group),
                Record::Member(member) => self.snapshot.push_member(member),
                Record::Options(_) => {}
            }
        }
    }
}

/// The whole JSON document.
struct Document<'a> {
    limits: &'a SnapshotLimits,
}

impl<'de> DeserializeSeed<'de> for Document<'_> {
    type Value = Parsed;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Parsed, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Document<'_> {
    type Value = Parsed;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("a snapshot object with groups and members")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Parsed, A::Error> {
        let mut options = Fields {
            kind: Some(Kind::Options),
            ..Fields::default()
        };
        let mut snapshot = Snapshot::default();
        let (mut groups_seen, mut members_seen) = (false, false);
        while let Some(key) = map.next_key::<Key>()? {
            match key {
                Key::Groups => {
                    if groups_seen {
                        return Err(de::Error::custom("groups is given twice"));
                    }
                    groups_seen = true;
                    map.next_value_seed(List {
                        name: "groups",
                        kind: Kind::Group,
                        max: self.limits.max_groups,
                        snapshot: &mut snapshot,
                    })?;
                }
                Key::Members => {
                    if members_seen {
                        return Err(de::Error::custom("members is given twice"));
                    }
                    members_seen = true;
                    map.next_value_seed(List {
                        name: "members",
                        kind: Kind::Member,
                        max: self.limits.max_members,
                        snapshot: &mut snapshot,
                    })?;
                }
                Key::Mode | Key::DryRun | Key::AllowMassDelete => {
                    options.read(key, &mut map, Place::Line, false)?;
                }
                _ => {
                    map.next_value::<Skip>()?;
                }
            }
        }
        Ok(Parsed {
            snapshot,
            options: options.options,
        })
    }
}
