//! Form-urlencoded bodies (§1) read into the same typed structs as JSON bodies.
//!
//! A form's values are text: integers and booleans (`true`/`false`/`1`/`0`) are parsed from
//! it when the struct asks for them. The array fields of the contract ([`ARRAY_FIELDS`]) come
//! as repeated keys, bracket keys (`group_ids[]=1`), one comma list, or one JSON array string
//! (`group_ids=[1,2]`); `group_ids=[]` is the empty array. Unknown fields are ignored.

use std::fmt;

use serde::de::value::{MapDeserializer, SeqDeserializer};
use serde::de::{self, DeserializeOwned, IntoDeserializer, Visitor};
use serde::forward_to_deserialize_any;

/// The fields that hold arrays (contract §1).
const ARRAY_FIELDS: [&str; 3] = ["group_ids", "remote_ids", "roles"];

/// Why a form could not be read into its struct.
#[derive(Debug)]
pub struct FormError(String);

impl fmt::Display for FormError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.0)
    }
}

impl std::error::Error for FormError {}

impl de::Error for FormError {
    fn custom<T: fmt::Display>(message: T) -> Self {
        FormError(message.to_string())
    }
}

/// One field of a form: its value, or the items of an array field.
enum FormValue {
    One(String),
    Many(Vec<String>),
}

/// `body` as a `T`; a failure names the field (`group_ids[1]: ...`).
pub fn from_form<T: DeserializeOwned>(body: &[u8]) -> Result<T, String> {
    let fields = fields(body)?;
    let deserializer = MapDeserializer::new(fields.into_iter());
    serde_path_to_error::deserialize(deserializer).map_err(|error| {
        let path = error.path().to_string();
        format!("{path}: {}", error.into_inner())
    })
}

/// The form's fields, in order, with repeated keys of an array field gathered.
fn fields(body: &[u8]) -> Result<Vec<(String, FormValue)>, String> {
    let mut fields: Vec<(String, FormValue)> = Vec::new();
    for (name, value) in form_urlencoded::parse(body) {
        let name = name.strip_suffix("[]").unwrap_or(&name);
        if !ARRAY_FIELDS.contains(&name) {
            fields.push((name.to_owned(), FormValue::One(value.into_owned())));
            continue;
        }
        let items = array_items(name, &value)?;
        match fields.iter_mut().find(|(known, _)| known == name) {
            Some((_, FormValue::Many(known))) => known.extend(items),
            _ => fields.push((name.to_owned(), FormValue::Many(items))),
        }
    }
    Ok(fields)
}

/// The items of one value of an array field: a JSON array, or a comma list.
fn array_items(name: &str, value: &str) -> Result<Vec<String>, String> {
    let value = value.trim();
    if value.starts_with('[') {
        let items: Vec<serde_json::Value> =
            serde_json::from_str(value).map_err(|_| format!("{name}: not a valid JSON array"))?;
        return items
            .into_iter()
            .map(|item| match item {
                serde_json::Value::String(text) => Ok(text),
                serde_json::Value::Number(number) => Ok(number.to_string()),
                _ => Err(format!("{name}: must hold strings or numbers")),
            })
            .collect();
    }
    Ok(value
        .split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(str::to_owned)
        .collect())
}

impl<'de> IntoDeserializer<'de, FormError> for FormValue {
    type Deserializer = FormValue;

    fn into_deserializer(self) -> FormValue {
        self
    }
}

impl FormValue {
    fn text(self) -> Result<String, FormError> {
        match self {
            FormValue::One(text) => Ok(text),
            FormValue::Many(_) => Err(de::Error::custom("expected one value, not an array")),
        }
    }

    fn parsed<T: std::str::FromStr>(self, what: &str) -> Result<T, FormError> {
        let text = self.text()?;
        text.trim()
            .parse()
            .map_err(|_| de::Error::custom(format!("expected {what}, got {text:?}")))
    }
}

macro_rules! parsed {
    ($($method:ident => $visit:ident: $what:literal),* $(,)?) => {
        $(
            fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, FormError> {
                visitor.$visit(self.parsed($what)?)
            }
        )*
    };
}

impl<'de> de::Deserializer<'de> for FormValue {
    type Error = FormError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, FormError> {
        match self {
            FormValue::One(text) => visitor.visit_string(text),
            FormValue::Many(items) => {
                visitor.visit_seq(SeqDeserializer::new(items.into_iter().map(FormValue::One)))
            }
        }
    }

    parsed! {
        deserialize_i8 => visit_i8: "an integer",
        deserialize_i16 => visit_i16: "an integer",
        deserialize_i32 => visit_i32: "an integer",
        deserialize_i64 => visit_i64: "an integer",
        deserialize_u8 => visit_u8: "an integer",
        deserialize_u16 => visit_u16: "an integer",
        deserialize_u32 => visit_u32: "an integer",
        deserialize_u64 => visit_u64: "an integer",
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, FormError> {
        match self.text()?.trim() {
            "true" | "1" => visitor.visit_bool(true),
            "false" | "0" => visitor.visit_bool(false),
            other => Err(de::Error::custom(format!(
                "expected true or false, got {other:?}"
            ))),
        }
    }

    /// A field given is `Some`; an empty value of a scalar field counts as not given.
    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, FormError> {
        match &self {
            FormValue::One(text) if text.is_empty() => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, FormError> {
        let items = match self {
            FormValue::One(text) => vec![text],
            FormValue::Many(items) => items,
        };
        visitor.visit_seq(SeqDeserializer::new(items.into_iter().map(FormValue::One)))
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, FormError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, FormError> {
        visitor.visit_unit()
    }

    forward_to_deserialize_any! {
        i128 u128 f32 f64 char str string bytes byte_buf unit unit_struct tuple
        tuple_struct map struct enum identifier
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize, PartialEq)]
    struct Body {
        name: Option<String>,
        order: Option<i64>,
        flag: Option<bool>,
        group_ids: Option<Vec<i64>>,
    }

    fn body(form: &str) -> Result<Body, String> {
        from_form(form.as_bytes())
    }

    #[test]
    fn arrays_come_in_four_spellings() {
        for form in [
            "group_ids=1&group_ids=2",
            "group_ids%5B%5D=1&group_ids%5B%5D=2",
            "group_ids[]=1&group_ids[]=2",
            "group_ids=1,2",
            "group_ids=%5B1%2C2%5D",
            "group_ids=[1,2]",
        ] {
            assert_eq!(body(form).unwrap().group_ids, Some(vec![1, 2]), "{form}");
        }
        assert_eq!(body("group_ids=[]").unwrap().group_ids, Some(vec![]));
        assert_eq!(body("name=x").unwrap().group_ids, None);
    }

    #[test]
    fn scalars_are_parsed_from_text_and_unknown_fields_ignored() {
        let read = body("name=a%2Cb&order=-3&flag=1&other=whatever").unwrap();
        assert_eq!(
            read,
            Body {
                name: Some("a,b".to_owned()),
                order: Some(-3),
                flag: Some(true),
                group_ids: None,
            }
        );
        assert_eq!(body("order=").unwrap().order, None);
    }

    #[test]
    fn errors_name_the_field() {
        let error = body("order=ten").unwrap_err();
        assert!(error.starts_with("order: "), "{error}");
        let error = body("group_ids=1,x").unwrap_err();
        assert!(error.starts_with("group_ids[1]: "), "{error}");
        let error = body("group_ids=[1").unwrap_err();
        assert!(error.starts_with("group_ids: "), "{error}");
        let error = body("flag=maybe").unwrap_err();
        assert!(error.starts_with("flag: "), "{error}");
    }
}
