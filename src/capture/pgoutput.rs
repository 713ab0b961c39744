//! pgoutput's logical replication messages (protocol version 1), parsed.
//!
//! PostgreSQL sends each committed transaction whole: `Begin`, the relations it touches (once
//! per session, again after a schema change), the row changes with every column as text, and
//! `Commit`. Logical decoding messages (`pg_logical_emit_message`) arrive as `Message`.

use bytes::{Buf, BytesMut};

use crate::capture::postgres_error;
use crate::capture::replication::Lsn;
use crate::error::Result;

/// One column of a tuple, as pgoutput sends it.
#[derive(Debug, Clone, PartialEq)]
pub enum Datum {
    /// SQL NULL.
    Null,
    /// A TOASTed value that did not change and was not sent.
    Unchanged,
    /// The value in PostgreSQL's text output form.
    Text(String),
}

/// A column as the relation message describes it.
#[derive(Debug, Clone)]
pub struct RelationColumn {
    /// Part of the replica identity.
    pub key: bool,
    /// Column name.
    pub name: String,
    /// Type OID.
    pub type_oid: u32,
    /// Type modifier (-1 when none).
    pub typmod: i32,
}

/// A table's shape at this point of the stream.
#[derive(Debug, Clone)]
pub struct Relation {
    /// The table's OID.
    pub oid: u32,
    /// Schema name.
    pub schema: String,
    /// Table name.
    pub name: String,
    /// `d`efault, `n`othing, `f`ull or `i`ndex.
    pub replica_identity: u8,
    /// Columns in table order.
    pub columns: Vec<RelationColumn>,
}

/// One pgoutput message.
#[derive(Debug)]
pub enum PgOutput {
    /// A transaction starts.
    Begin {
        /// Its commit's LSN.
        final_lsn: Lsn,
        /// Commit time, microseconds since 2000-01-01.
        commit_time: i64,
        /// Transaction id.
        xid: u32,
    },
    /// The transaction ends.
    Commit {
        /// The commit record's LSN.
        commit_lsn: Lsn,
        /// The end of the commit record: confirming it confirms the transaction.
        end_lsn: Lsn,
        /// Commit time.
        commit_time: i64,
    },
    /// A table's description.
    Relation(Relation),
    /// A row was inserted.
    Insert {
        /// The table.
        relation: u32,
        /// The new row.
        new: Vec<Datum>,
    },
    /// A row was updated.
    Update {
        /// The table.
        relation: u32,
        /// The old key (`K`) or old row (`O`), when the replica identity sends it.
        old: Option<Vec<Datum>>,
        /// The new row.
        new: Vec<Datum>,
    },
    /// A row was deleted.
    Delete {
        /// The table.
        relation: u32,
        /// The old key or row.
        old: Vec<Datum>,
    },
    /// Tables were truncated.
    Truncate {
        /// The tables.
        relations: Vec<u32>,
    },
    /// `pg_logical_emit_message`.
    Message {
        /// Whether it was written in a transaction.
        transactional: bool,
        /// Its LSN.
        lsn: Lsn,
        /// The prefix given.
        prefix: String,
        /// The content given.
        content: Vec<u8>,
    },
    /// Anything this client does not act on (origin, type).
    Other,
}

fn truncated() -> crate::error::Error {
    postgres_error("truncated pgoutput message", false)
}

fn need(data: &BytesMut, n: usize) -> Result<()> {
    if data.remaining() < n {
        Err(truncated())
    } else {
        Ok(())
    }
}

fn string(data: &mut BytesMut) -> Result<String> {
    let end = data.iter().position(|b| *b == 0).ok_or_else(truncated)?;
    let text = String::from_utf8_lossy(&data[..end]).into_owned();
    data.advance(end + 1);
    Ok(text)
}

fn tuple(data: &mut BytesMut) -> Result<Vec<Datum>> {
    need(data, 2)?;
    let count = data.get_i16();
    let mut out = Vec::with_capacity(count.max(0) as usize);
    for _ in 0..count {
        need(data, 1)?;
        match data.get_u8() {
            b'n' => out.push(Datum::Null),
            b'u' => out.push(Datum::Unchanged),
            b't' => {
                need(data, 4)?;
                let length = data.get_i32().max(0) as usize;
                need(data, length)?;
                let bytes = data.split_to(length);
                let text = String::from_utf8(bytes.to_vec()).map_err(|_| {
                    postgres_error("pgoutput sent a value that is not UTF-8", false)
                })?;
                out.push(Datum::Text(text));
            }
            other => {
                return Err(postgres_error(
                    format!("unknown pgoutput tuple column kind {:?}", other as char),
                    false,
                ))
            }
        }
    }
    Ok(out)
}

/// Parse one message.
pub fn parse(mut data: BytesMut) -> Result<PgOutput> {
    need(&data, 1)?;
    let message = match data.get_u8() {
        b'B' => {
            need(&data, 20)?;
            PgOutput::Begin {
                final_lsn: data.get_u64(),
                commit_time: data.get_i64(),
                xid: data.get_u32(),
            }
        }
        b'C' => {
            need(&data, 25)?;
            let _flags = data.get_u8();
            PgOutput::Commit {
                commit_lsn: data.get_u64(),
                end_lsn: data.get_u64(),
                commit_time: data.get_i64(),
            }
        }
        b'R' => {
            need(&data, 4)?;
            let oid = data.get_u32();
            let schema = string(&mut data)?;
            let name = string(&mut data)?;
            need(&data, 3)?;
            let replica_identity = data.get_u8();
            let count = data.get_i16();
            let mut columns = Vec::with_capacity(count.max(0) as usize);
            for _ in 0..count {
                need(&data, 1)?;
                let flags = data.get_u8();
                let name = string(&mut data)?;
                need(&data, 8)?;
                columns.push(RelationColumn {
                    key: flags & 1 == 1,
                    name,
                    type_oid: data.get_u32(),
                    typmod: data.get_i32(),
                });
            }
            PgOutput::Relation(Relation {
                oid,
                schema,
                name,
                replica_identity,
                columns,
            })
        }
        b'I' => {
            need(&data, 5)?;
            let relation = data.get_u32();
            let _new = data.get_u8();
            PgOutput::Insert {
                relation,
                new: tuple(&mut data)?,
            }
        }
        b'U' => {
            need(&data, 5)?;
            let relation = data.get_u32();
            let mut kind = data.get_u8();
            let mut old = None;
            if kind == b'K' || kind == b'O' {
                old = Some(tuple(&mut data)?);
                need(&data, 1)?;
                kind = data.get_u8();
            }
            if kind != b'N' {
                return Err(postgres_error("pgoutput update without a new tuple", false));
            }
            PgOutput::Update {
                relation,
                old,
                new: tuple(&mut data)?,
            }
        }
        b'D' => {
            need(&data, 5)?;
            let relation = data.get_u32();
            let _kind = data.get_u8();
            PgOutput::Delete {
                relation,
                old: tuple(&mut data)?,
            }
        }
        b'T' => {
            need(&data, 5)?;
            let count = data.get_u32() as usize;
            let _options = data.get_u8();
            need(&data, count * 4)?;
            PgOutput::Truncate {
                relations: (0..count).map(|_| data.get_u32()).collect(),
            }
        }
        b'M' => {
            need(&data, 9)?;
            let transactional = data.get_u8() & 1 == 1;
            let lsn = data.get_u64();
            let prefix = string(&mut data)?;
            need(&data, 4)?;
            let length = data.get_u32() as usize;
            need(&data, length)?;
            PgOutput::Message {
                transactional,
                lsn,
                prefix,
                content: data.split_to(length).to_vec(),
            }
        }
        _ => PgOutput::Other,
    };
    Ok(message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BufMut;

    #[test]
    fn insert_with_null_unchanged_and_text() {
        let mut data = BytesMut::new();
        data.put_u8(b'I');
        data.put_u32(16384);
        data.put_u8(b'N');
        data.put_i16(3);
        data.put_u8(b'n');
        data.put_u8(b'u');
        data.put_u8(b't');
        data.put_i32(2);
        data.extend_from_slice(b"42");
        match parse(data).unwrap() {
            PgOutput::Insert { relation, new } => {
                assert_eq!(relation, 16384);
                assert_eq!(
                    new,
                    vec![Datum::Null, Datum::Unchanged, Datum::Text("42".into())]
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_truncated_message_is_an_error() {
        let mut data = BytesMut::new();
        data.put_u8(b'B');
        data.put_u32(1);
        assert!(parse(data).is_err());
    }
}
