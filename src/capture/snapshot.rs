//! The initial snapshot: every row of a captured table, read with `COPY … TO STDOUT` inside the
//! transaction that imported the slot's exported snapshot, so the rows are exactly the state
//! the slot's stream continues from. Rows are handed on as they arrive (bounded memory: one
//! COPY chunk and one row of look-ahead, for Debezium's `last_in_data_collection` marks).

use futures_util::StreamExt;
use tokio_postgres::Client;

use crate::capture::catalog::sql_error;
use crate::capture::pgoutput::Datum;
use crate::capture::replication::quote_ident;
use crate::capture::table::Table;
use crate::error::Result;

/// Where a row sits in the snapshot, for `source.snapshot`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mark {
    /// The first row of the whole snapshot.
    First,
    /// The first row of a table.
    FirstInTable,
    /// Any other row.
    Middle,
    /// The last row of a table.
    LastInTable,
    /// The last row of the whole snapshot.
    Last,
}

impl Mark {
    /// Debezium's `source.snapshot` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Mark::First => "first",
            Mark::FirstInTable => "first_in_data_collection",
            Mark::Middle => "true",
            Mark::LastInTable => "last_in_data_collection",
            Mark::Last => "last",
        }
    }
}

/// Whether `table` (an OID) has a row: the snapshot's last row is the last of the last table
/// that has one, as in Debezium (tables after it may be empty).
pub async fn has_rows(client: &Client, table: u32) -> Result<bool> {
    let name: String = client
        .query_one("SELECT $1::oid::regclass::text", &[&table])
        .await
        .map_err(sql_error)?
        .get(0);
    let row = client
        .query_one(&format!("SELECT EXISTS (SELECT FROM {name})"), &[])
        .await
        .map_err(sql_error)?;
    Ok(row.get(0))
}

/// Read every row of `table`, calling `emit` for each with its mark; `first_table` says the
/// table is the snapshot's first, `last_table` that no later table has rows. Returns the row
/// count.
pub async fn copy_table(
    client: &Client,
    table: &Table,
    first_table: bool,
    last_table: bool,
    emit: &mut dyn FnMut(Vec<Datum>, Mark) -> Result<()>,
) -> Result<u64> {
    let columns: Vec<String> = table.columns.iter().map(|c| quote_ident(&c.name)).collect();
    let sql = format!(
        "COPY (SELECT {} FROM {}.{}) TO STDOUT",
        columns.join(", "),
        quote_ident(&table.schema),
        quote_ident(&table.name)
    );
    let stream = client.copy_out(sql.as_str()).await.map_err(sql_error)?;
    futures_util::pin_mut!(stream);
    let mut partial: Vec<u8> = Vec::new();
    let mut held: Option<Vec<Datum>> = None;
    let mut count = 0u64;
    let mut release = |row: Vec<Datum>, last: bool, count: &mut u64| -> Result<()> {
        // The snapshot's last row is `last` even when it is also the first (Debezium).
        let mark = match (*count == 0, last) {
            (_, true) if last_table => Mark::Last,
            (true, _) if first_table => Mark::First,
            (_, true) => Mark::LastInTable,
            (true, _) => Mark::FirstInTable,
            _ => Mark::Middle,
        };
        *count += 1;
        emit(row, mark)
    };
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(sql_error)?;
        partial.extend_from_slice(&chunk);
        let mut start = 0;
        while let Some(end) = partial[start..].iter().position(|b| *b == b'\n') {
            let row = parse_row(&partial[start..start + end])?;
            start += end + 1;
            if let Some(previous) = held.replace(row) {
                release(previous, false, &mut count)?;
            }
        }
        partial.drain(..start);
    }
    if let Some(previous) = held.take() {
        release(previous, true, &mut count)?;
    }
    Ok(count)
}

/// One line of COPY's text format: tab-separated, `\N` for NULL, backslash escapes.
fn parse_row(line: &[u8]) -> Result<Vec<Datum>> {
    line.split(|b| *b == b'\t')
        .map(|field| {
            if field == b"\\N" {
                return Ok(Datum::Null);
            }
            let mut out = Vec::with_capacity(field.len());
            let mut i = 0;
            while i < field.len() {
                let byte = field[i];
                i += 1;
                if byte != b'\\' || i >= field.len() {
                    out.push(byte);
                    continue;
                }
                let escaped = field[i];
                i += 1;
                match escaped {
                    b'b' => out.push(8),
                    b'f' => out.push(12),
                    b'n' => out.push(b'\n'),
                    b'r' => out.push(b'\r'),
                    b't' => out.push(b'\t'),
                    b'v' => out.push(11),
                    b'0'..=b'7' => {
                        let mut value = (escaped - b'0') as u32;
                        for _ in 0..2 {
                            match field.get(i) {
                                Some(d @ b'0'..=b'7') => {
                                    value = value * 8 + (d - b'0') as u32;
                                    i += 1;
                                }
                                _ => break,
                            }
                        }
                        out.push(value as u8);
                    }
                    b'x' => {
                        let mut value = 0u32;
                        for _ in 0..2 {
                            match field.get(i).and_then(|d| (*d as char).to_digit(16)) {
                                Some(d) => {
                                    value = value * 16 + d;
                                    i += 1;
                                }
                                None => break,
                            }
                        }
                        out.push(value as u8);
                    }
                    other => out.push(other),
                }
            }
            String::from_utf8(out).map(Datum::Text).map_err(|_| {
                crate::capture::postgres_error("COPY sent a value that is not UTF-8", false)
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_text_escapes_and_null() {
        assert_eq!(
            parse_row(b"1\t\\N\ta\\tb\\\\c\\nd").unwrap(),
            vec![
                Datum::Text("1".into()),
                Datum::Null,
                Datum::Text("a\tb\\c\nd".into())
            ]
        );
    }
}
