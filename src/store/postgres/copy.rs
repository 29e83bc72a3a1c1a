//! Rows written with `COPY … FROM STDIN (FORMAT binary)`: PostgreSQL fills a page with them at
//! a time and logs one WAL record for the page rather than one per row. A first sync's load is
//! bound by writing its WAL (docs/BENCHMARKS.md, "PostgreSQL's loading sync waits for its
//! WAL"), and a million `app_users` rows took 1.6 s and 199 MB of WAL this way against 2.2 s and
//! 245 MB as an `INSERT … SELECT`.
//!
//! Only large batches are copied: the users a registration inserts and the openids it claims
//! (50,000 a statement) and a large write's events (as many). Each `COPY` costs a wait of its
//! own: a first sync whose members and memberships were copied a run of 1,000 at a time took
//! 54 s instead of 13 (2,000 copies, about 20 ms each; sqlx sends the end of a `COPY` in a
//! packet of its own, which probably waits for the data's acknowledgement), so those stay
//! inserts over arrays (docs/BENCHMARKS.md, "`COPY` for a sync's large batches").
//!
//! The format is PostgreSQL's own (its documentation of `COPY`, "Binary Format"): a signature,
//! flags and a header extension (none), then each row as its number of fields and each field as
//! its length and bytes (a `BIGINT` 8 bytes big-endian, a `TEXT` its UTF-8 bytes), then -1.

use sqlx::PgConnection;

use crate::store::{StoreError, StoreResult};

/// The signature, no flags, no header extension.
const HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";

/// Rows in the binary format, for one `COPY`.
pub(super) struct BinaryRows {
    bytes: Vec<u8>,
}

impl BinaryRows {
    /// Room for `rows` rows of about `row_bytes` bytes each.
    pub(super) fn with_capacity(rows: usize, row_bytes: usize) -> BinaryRows {
        let mut bytes = Vec::with_capacity(HEADER.len() + rows * row_bytes + 2);
        bytes.extend_from_slice(HEADER);
        BinaryRows { bytes }
    }

    /// Start a row of `fields` fields.
    pub(super) fn row(&mut self, fields: i16) -> &mut Self {
        self.bytes.extend_from_slice(&fields.to_be_bytes());
        self
    }

    pub(super) fn int8(&mut self, value: i64) -> &mut Self {
        self.bytes.extend_from_slice(&8_i32.to_be_bytes());
        self.bytes.extend_from_slice(&value.to_be_bytes());
        self
    }

    pub(super) fn null(&mut self) -> &mut Self {
        self.bytes.extend_from_slice(&(-1_i32).to_be_bytes());
        self
    }

    pub(super) fn some_int8(&mut self, value: Option<i64>) -> &mut Self {
        match value {
            Some(value) => self.int8(value),
            None => self.null(),
        }
    }

    pub(super) fn some_text(&mut self, value: Option<&str>) -> StoreResult<&mut Self> {
        match value {
            Some(value) => self.text(value),
            None => Ok(self.null()),
        }
    }

    pub(super) fn text(&mut self, value: &str) -> StoreResult<&mut Self> {
        let length = i32::try_from(value.len()).map_err(|_| {
            StoreError::Inconsistent(format!("a text of {} bytes to copy", value.len()))
        })?;
        self.bytes.extend_from_slice(&length.to_be_bytes());
        self.bytes.extend_from_slice(value.as_bytes());
        Ok(self)
    }

    /// Send the rows with `statement`, a `COPY … FROM STDIN (FORMAT binary)`, on `conn` (in its
    /// transaction); answers how many were inserted. A row the table refuses fails them all.
    pub(super) async fn send(
        mut self,
        conn: &mut PgConnection,
        statement: &str,
    ) -> sqlx::Result<u64> {
        self.bytes.extend_from_slice(&(-1_i16).to_be_bytes());
        let mut copy = conn.copy_in_raw(statement).await?;
        copy.send(self.bytes).await?;
        copy.finish().await
    }
}
