//! Batches through single statements: a list of ids or small rows goes into SQLite as one JSON
//! array parameter (read with `json_each`), and many result rows come back as one packed text
//! value (built with `group_concat`).
//!
//! Why: sqlx runs SQLite on a worker thread. Every statement is a round trip to that thread, and
//! every result row is copied value by value and handed to the async caller over a channel.
//! Claims touch hundreds of rows per call; with one parameter in and one row out, a statement
//! costs the same whatever the batch size, its text never changes (so it stays prepared in
//! sqlx's statement cache), and the single writer spends its time writing rows.
//!
//! JSON suits lists of ids and short rows of numbers. Rows with several fields each are cheaper
//! as bound `VALUES` (SQLite re-parses an inner array for every `value ->> n`): `record.rs` binds
//! its results that way.
//!
//! Ids travel as 32 hex digits (`unhex(...)` in SQL, `hex(...)` out), times and counters as
//! integers. A packed result holds only hex digits and integers, so its separators need no
//! escaping: records are separated by `;`, fields by `,`. SQL builds a record with
//! `concat_ws(',', ...)`, which leaves out NULL and empty values: every field must be neither.

use std::fmt::Write as _;

use uuid::Uuid;

use crate::{Result, StoreError};

/// A JSON array of arrays, one inner array per row: the parameter a `json_each(?)` statement
/// reads, with `value ->> 0`, `value ->> 1`, ... for the fields of a row.
pub(super) struct JsonRows {
    text: String,
    rows: usize,
    fields: usize,
}

impl JsonRows {
    pub(super) fn new() -> JsonRows {
        JsonRows {
            text: String::from("["),
            rows: 0,
            fields: 0,
        }
    }

    /// Starts the next row; fields follow.
    pub(super) fn row(&mut self) -> &mut Self {
        if self.rows > 0 {
            self.text.push_str("],");
        }
        self.text.push('[');
        self.rows += 1;
        self.fields = 0;
        self
    }

    fn separate(&mut self) {
        if self.fields > 0 {
            self.text.push(',');
        }
        self.fields += 1;
    }

    /// An id, as 32 lowercase hex digits (`unhex(value ->> n)` in SQL).
    pub(super) fn id(&mut self, id: Uuid) -> &mut Self {
        self.separate();
        self.text.push('"');
        self.text
            .push_str(id.simple().encode_lower(&mut Uuid::encode_buffer()));
        self.text.push('"');
        self
    }

    pub(super) fn int(&mut self, value: i64) -> &mut Self {
        self.separate();
        // Writing to a String cannot fail.
        let _ = write!(self.text, "{value}");
        self
    }

    pub(super) fn opt_int(&mut self, value: Option<i64>) -> &mut Self {
        match value {
            Some(value) => self.int(value),
            None => self.null(),
        }
    }

    fn null(&mut self) -> &mut Self {
        self.separate();
        self.text.push_str("null");
        self
    }

    /// The rows written so far.
    pub(super) fn len(&self) -> usize {
        self.rows
    }

    /// The JSON text.
    pub(super) fn finish(mut self) -> String {
        if self.rows > 0 {
            self.text.push(']');
        }
        self.text.push(']');
        self.text
    }
}

/// A flat JSON array of ids (`SELECT unhex(value) FROM json_each(?)` in SQL).
pub(super) fn id_array(ids: impl IntoIterator<Item = Uuid>) -> String {
    let mut text = String::from("[");
    let mut buffer = Uuid::encode_buffer();
    for (i, id) in ids.into_iter().enumerate() {
        if i > 0 {
            text.push(',');
        }
        text.push('"');
        text.push_str(id.simple().encode_lower(&mut buffer));
        text.push('"');
    }
    text.push(']');
    text
}

/// The records of a packed result: `;`-separated records of `,`-separated fields. `None` (what
/// `group_concat` gives for no rows) has no records.
pub(super) fn records(packed: Option<&str>) -> impl Iterator<Item = Fields<'_>> {
    packed
        .filter(|text| !text.is_empty())
        .into_iter()
        .flat_map(|text| text.split(';'))
        .map(|record| Fields {
            record,
            rest: record.split(','),
        })
}

/// The fields of one packed record, read in order.
pub(super) struct Fields<'a> {
    record: &'a str,
    rest: std::str::Split<'a, char>,
}

impl Fields<'_> {
    fn next_field(&mut self) -> Result<&str> {
        self.rest
            .next()
            .ok_or_else(|| self.corrupt("too few fields"))
    }

    fn corrupt(&self, what: &str) -> StoreError {
        StoreError::Corrupt(format!("packed result {:?}: {what}", self.record))
    }

    /// An id written by SQLite's `hex()`.
    pub(super) fn id(&mut self) -> Result<Uuid> {
        let field = self.next_field()?;
        if field.len() != 32 {
            return Err(self.corrupt("an id is not 32 hex digits"));
        }
        Uuid::try_parse(field).map_err(|_| self.corrupt("an id is not 32 hex digits"))
    }

    pub(super) fn int(&mut self) -> Result<i64> {
        let field = self.next_field()?;
        field
            .parse()
            .map_err(|_| self.corrupt("a number is not an integer"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_rows_are_arrays_of_fields() {
        let id = Uuid::from_u128(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef);
        let mut rows = JsonRows::new();
        assert_eq!(JsonRows::new().finish(), "[]");
        rows.row().id(id).int(-5).opt_int(None);
        rows.row().opt_int(Some(7));
        assert_eq!(rows.len(), 2);
        assert_eq!(
            rows.finish(),
            r#"[["0123456789abcdef0123456789abcdef",-5,null],[7]]"#
        );
        assert_eq!(id_array([id, id]).len(), 2 + 2 * 34 + 1);
        assert_eq!(id_array([]), "[]");
    }

    #[test]
    fn packed_records_read_back() {
        let packed = "0123456789ABCDEF0123456789ABCDEF,12;00000000000000000000000000000001,-3";
        let mut read = Vec::new();
        for mut fields in records(Some(packed)) {
            read.push((fields.id().unwrap(), fields.int().unwrap()));
        }
        assert_eq!(
            read,
            [
                (
                    Uuid::from_u128(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef),
                    12
                ),
                (Uuid::from_u128(1), -3),
            ]
        );
        assert_eq!(records(None).count(), 0);
        assert_eq!(records(Some("")).count(), 0);
        let mut short = records(Some("12")).next().unwrap();
        assert!(short.id().is_err());
        assert!(matches!(short.int(), Err(StoreError::Corrupt(_))));
    }
}
