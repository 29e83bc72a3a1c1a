//! JSON text as answers carry it, and the hand-written writer for the hottest answer: a page of
//! groups.
//!
//! serde_json's generic serializer escapes every key and pays a call for every value; for a
//! page of ten groups that was 45,000 instructions, a third of the whole request. Writing the
//! keys as literals and escaping only the strings that could need it takes a fraction of
//! that. The bytes are exactly serde_json's (a property test compares them), so a client
//! cannot tell which writer made an answer.

use serde::Serialize;

/// Valid JSON text (UTF-8) made by this crate's own serializers, never taken from a client:
/// the envelope wraps it as it is, without parsing it again.
#[derive(Debug, Clone)]
pub struct JsonText(Vec<u8>);

impl JsonText {
    /// `value` serialized by serde_json.
    pub fn of(value: &impl Serialize) -> Result<JsonText, serde_json::Error> {
        serde_json::to_vec(value).map(JsonText)
    }

    /// `{}`.
    pub fn empty_object() -> JsonText {
        JsonText(b"{}".to_vec())
    }

    /// What a [`JsonWriter`] wrote: exactly one value.
    pub fn written(writer: JsonWriter) -> JsonText {
        JsonText(writer.out)
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

/// Appends JSON tokens to a buffer; the caller writes them in a valid order.
#[derive(Debug)]
pub struct JsonWriter {
    out: Vec<u8>,
}

impl JsonWriter {
    pub fn with_capacity(capacity: usize) -> JsonWriter {
        JsonWriter {
            out: Vec::with_capacity(capacity),
        }
    }

    /// Punctuation and keys known to need no escaping, e.g. `{"id":`.
    pub fn raw(&mut self, text: &str) {
        self.out.extend_from_slice(text.as_bytes());
    }

    /// JSON text made elsewhere by this crate ([`JsonText`]).
    pub fn bytes(&mut self, json: &[u8]) {
        self.out.extend_from_slice(json);
    }

    /// How much has been written so far (marks a range for [`JsonWriter::copy`]).
    pub fn len(&self) -> usize {
        self.out.len()
    }

    /// Write again what was written in `range` (a whole value).
    pub fn copy(&mut self, range: std::ops::Range<usize>) {
        self.out.extend_from_within(range);
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.out
    }

    pub fn int(&mut self, value: i64) {
        self.out
            .extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
    }

    pub fn uint(&mut self, value: u64) {
        self.out
            .extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
    }

    pub fn bool(&mut self, value: bool) {
        self.raw(if value { "true" } else { "false" });
    }

    /// A string value, escaped as serde_json escapes it.
    pub fn str(&mut self, value: &str) {
        self.out.push(b'"');
        self.escaped(value);
        self.out.push(b'"');
    }

    /// A string value made of `parts` joined by `/`, without making the joined string: JSON
    /// escapes character by character, so escaping each part is escaping the whole.
    pub fn joined_str<'a>(&mut self, parts: impl IntoIterator<Item = &'a str>) {
        self.out.push(b'"');
        for (n, part) in parts.into_iter().enumerate() {
            if n > 0 {
                self.out.push(b'/');
            }
            self.escaped(part);
        }
        self.out.push(b'"');
    }

    /// The inside of a string value: `value` escaped as serde_json escapes it.
    fn escaped(&mut self, value: &str) {
        if value
            .bytes()
            .all(|byte| byte >= 0x20 && byte != b'"' && byte != b'\\')
        {
            self.out.extend_from_slice(value.as_bytes());
        } else if let Ok(quoted) = serde_json::to_vec(value)
            && let Some(inside) = quoted.get(1..quoted.len() - 1)
        {
            // Rare (quotes, backslashes, control characters): serde_json's own escaping.
            self.out.extend_from_slice(inside);
        }
    }
}
