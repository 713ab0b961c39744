//! Ordinary SQL over tokio-postgres: preconditions, the publication, and what the catalog says
//! about a table (columns, types, nullability, primary key).

use postgres_native_tls::MakeTlsConnector;
use tokio_postgres::Client;

use crate::capture::postgres_error;
use crate::capture::replication::quote_ident;
use crate::capture::table::{Column, Table};
use crate::capture::tls::Tls;
use crate::capture::types::{Flavor, Kind};
use crate::error::{Error, Result};

/// How many times (200 ms apart) a slot still in use is looked at again.
const SLOT_BUSY_WAITS: u32 = 50;

/// The session settings that fix the text form of every value (the replication connection
/// sets the same in its startup options).
pub const SESSION_SETTINGS: &str = "SET DateStyle = 'ISO, YMD'; SET IntervalStyle = 'iso_8601'; \
     SET TimeZone = 'UTC'; SET extra_float_digits = 3; SET bytea_output = 'hex'; \
     SET lc_monetary = 'C'";

/// tokio-postgres's error as ours, without the DSN.
pub fn sql_error(error: tokio_postgres::Error) -> Error {
    use std::error::Error as _;
    // A network failure (refused, reset, timed out) may heal; the cause says which it was.
    let network = error
        .source()
        .and_then(|cause| cause.downcast_ref::<std::io::Error>())
        .map(|cause| cause.to_string());
    let retriable = error.is_closed()
        || network.is_some()
        || error
            .code()
            .is_some_and(|c| c.code().starts_with("08") || c.code().starts_with("57"));
    let text = match (error.as_db_error(), network) {
        (Some(db), _) => format!("PostgreSQL error {}: {}", db.code().code(), db.message()),
        (None, Some(cause)) => format!("PostgreSQL: {error}: {cause}"),
        // tokio-postgres's text leaves out the cause (a TLS handshake's, for one).
        (None, None) => match error.source() {
            Some(cause) => format!("PostgreSQL: {error}: {cause}"),
            None => format!("PostgreSQL: {error}"),
        },
    };
    postgres_error(text, retriable)
}

/// A connection for ordinary queries (TLS as the DSN asks), its driver task spawned on the
/// current runtime.
pub async fn connect(config: &tokio_postgres::Config, tls: &Tls) -> Result<Client> {
    let (client, connection) = config
        .connect(MakeTlsConnector::new(tls.connector.clone()))
        .await
        .map_err(sql_error)?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            log::debug!("PostgreSQL connection ended: {error}");
        }
    });
    client
        .batch_execute(SESSION_SETTINGS)
        .await
        .map_err(sql_error)?;
    Ok(client)
}

/// Refuse to start when logical decoding is off.
pub async fn check_wal_level(client: &Client) -> Result<()> {
    let row = client
        .query_one("SHOW wal_level", &[])
        .await
        .map_err(sql_error)?;
    let level: String = row.get(0);
    if level != "logical" {
        return Err(Error::Config(format!(
            "PostgreSQL has wal_level={level}; capture needs wal_level=logical (set it in \
             postgresql.conf and restart PostgreSQL)"
        )));
    }
    Ok(())
}

/// The OID of each `schema.table` named (a bare name means `public`); a missing table is an
/// error naming it.
pub async fn resolve_tables(client: &Client, tables: &[String]) -> Result<Vec<u32>> {
    let mut oids = Vec::with_capacity(tables.len());
    for table in tables {
        let (schema, name) = table.split_once('.').unwrap_or(("public", table));
        let row = client
            .query_opt(
                "SELECT c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p')",
                &[&schema, &name],
            )
            .await
            .map_err(sql_error)?;
        let row = row.ok_or_else(|| {
            Error::Config(format!(
                "table {schema}.{name} does not exist in PostgreSQL"
            ))
        })?;
        oids.push(row.get::<_, u32>(0));
    }
    Ok(oids)
}

/// Create the publication when absent (for the tables given, or all tables); add tables it
/// lacks when it exists. Returns the OIDs of the tables it publishes.
pub async fn ensure_publication(
    client: &Client,
    publication: &str,
    tables: &[u32],
) -> Result<Vec<u32>> {
    let exists = client
        .query_opt(
            "SELECT puballtables FROM pg_publication WHERE pubname = $1",
            &[&publication],
        )
        .await
        .map_err(sql_error)?;
    match exists {
        None if tables.is_empty() => {
            client
                .batch_execute(&format!(
                    "CREATE PUBLICATION {} FOR ALL TABLES",
                    quote_ident(publication)
                ))
                .await
                .map_err(sql_error)?;
        }
        None => {
            let list = table_names(client, tables).await?;
            client
                .batch_execute(&format!(
                    "CREATE PUBLICATION {} FOR TABLE {list}",
                    quote_ident(publication)
                ))
                .await
                .map_err(sql_error)?;
        }
        Some(row) if !row.get::<_, bool>(0) && !tables.is_empty() => {
            let published = published(client, publication).await?;
            let missing: Vec<u32> = tables
                .iter()
                .copied()
                .filter(|t| !published.contains(t))
                .collect();
            if !missing.is_empty() {
                let list = table_names(client, &missing).await?;
                client
                    .batch_execute(&format!(
                        "ALTER PUBLICATION {} ADD TABLE {list}",
                        quote_ident(publication)
                    ))
                    .await
                    .map_err(sql_error)?;
            }
        }
        Some(_) => {}
    }
    if !tables.is_empty() {
        return Ok(tables.to_vec());
    }
    published(client, publication).await
}

/// `schema.table, …` of these OIDs, quoted for SQL.
async fn table_names(client: &Client, oids: &[u32]) -> Result<String> {
    let rows = client
        .query(
            "SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c \
             JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = ANY($1)",
            &[&oids.to_vec()],
        )
        .await
        .map_err(sql_error)?;
    Ok(rows
        .iter()
        .map(|r| r.get::<_, String>(0))
        .collect::<Vec<_>>()
        .join(", "))
}

async fn published(client: &Client, publication: &str) -> Result<Vec<u32>> {
    let rows = client
        .query(
            "SELECT format('%I.%I', schemaname, tablename)::regclass::oid FROM pg_publication_tables \
             WHERE pubname = $1 ORDER BY 1",
            &[&publication],
        )
        .await
        .map_err(sql_error)?;
    Ok(rows.iter().map(|r| r.get::<_, u32>(0)).collect())
}

/// Whether the slot exists. A slot another connection still streams (a capture that just
/// died: its walsender has not noticed yet) is waited for, briefly.
pub async fn slot_exists(client: &Client, slot: &str) -> Result<bool> {
    let mut waited = 0;
    let row = loop {
        let row = client
            .query_opt(
                "SELECT plugin, active FROM pg_replication_slots WHERE slot_name = $1",
                &[&slot],
            )
            .await
            .map_err(sql_error)?;
        match &row {
            Some(found) if found.get::<_, bool>(1) => {
                if waited >= SLOT_BUSY_WAITS {
                    return Err(postgres_error(
                        format!("replication slot {slot:?} is in use by another connection"),
                        true,
                    ));
                }
                waited += 1;
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
            _ => break row,
        }
    };
    match row {
        None => Ok(false),
        Some(row) => {
            let plugin: Option<String> = row.get(0);
            if plugin.as_deref() != Some("pgoutput") {
                return Err(Error::Config(format!(
                    "replication slot {slot:?} exists but does not use pgoutput ({plugin:?})"
                )));
            }
            Ok(true)
        }
    }
}

/// The table as the catalog describes it now, with its event schemas.
pub async fn describe(client: &Client, oid: u32, prefix: &str, flavor: Flavor) -> Result<Table> {
    let head = client
        .query_one(
            "SELECT n.nspname, c.relname, c.relreplident::text FROM pg_class c \
             JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = $1",
            &[&oid],
        )
        .await
        .map_err(sql_error)?;
    let schema: String = head.get(0);
    let name: String = head.get(1);
    let identity: String = head.get(2);
    let rows = client
        .query(
            "SELECT a.attname, a.atttypid, a.atttypmod, a.attnotnull, \
                    coalesce(a.attnum = ANY(i.indkey), false) \
             FROM pg_attribute a LEFT JOIN pg_index i ON i.indrelid = a.attrelid AND i.indisprimary \
             WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = '' \
             ORDER BY a.attnum",
            &[&oid],
        )
        .await
        .map_err(sql_error)?;
    let qualified = format!("{schema}.{name}");
    let mut columns = Vec::with_capacity(rows.len());
    let mut key = Vec::new();
    for row in rows {
        let column: String = row.get(0);
        let type_oid: u32 = row.get(1);
        let typmod: i32 = row.get(2);
        let not_null: bool = row.get(3);
        if row.get::<_, bool>(4) {
            key.push(columns.len());
        }
        let kind = kind(client, type_oid, typmod).await?.ok_or_else(|| {
            Error::Config(format!(
                "cannot encode column {column:?} of table {qualified}: its type (OID {type_oid}) \
                 is not supported"
            ))
        })?;
        columns.push(Column {
            name: column,
            kind,
            optional: !not_null,
            type_oid,
            typmod,
        });
    }
    if key.is_empty() {
        log::warn!("table {qualified} has no primary key: its events get a null Kafka key");
    } else if identity != "f" && flavor == Flavor::Debezium {
        log::info!(
            "table {qualified} has REPLICA IDENTITY {}: `before` of updates is null and of \
             deletes holds only the key (ALTER TABLE … REPLICA IDENTITY FULL for whole old rows)",
            match identity.as_str() {
                "n" => "NOTHING",
                "i" => "USING INDEX",
                _ => "DEFAULT",
            }
        );
    }
    Ok(Table::new(prefix, schema, name, columns, key, flavor))
}

/// The kind of a type: built-in by OID, else from the catalog (enums, domains, arrays, ranges).
pub async fn kind(client: &Client, oid: u32, typmod: i32) -> Result<Option<Kind>> {
    let mut oid = oid;
    let mut typmod = typmod;
    // Domains down to their base type; arrays to their element.
    for _ in 0..8 {
        if let Some(kind) = Kind::builtin(oid, typmod) {
            return Ok(Some(kind));
        }
        let row = client
            .query_opt(
                "SELECT typtype::text, typcategory::text, typelem, typbasetype, typtypmod \
                 FROM pg_type WHERE oid = $1",
                &[&oid],
            )
            .await
            .map_err(sql_error)?;
        let Some(row) = row else { return Ok(None) };
        let typtype: String = row.get(0);
        let category: String = row.get(1);
        let element: u32 = row.get(2);
        match (typtype.as_str(), category.as_str()) {
            ("e", _) => {
                let labels = client
                    .query(
                        "SELECT enumlabel::text FROM pg_enum WHERE enumtypid = $1 ORDER BY enumsortorder",
                        &[&oid],
                    )
                    .await
                    .map_err(sql_error)?;
                return Ok(Some(Kind::Enum {
                    labels: labels.iter().map(|r| r.get(0)).collect(),
                }));
            }
            ("r", _) | ("m", _) => return Ok(Some(Kind::Text { semantic: None })),
            ("d", _) => {
                oid = row.get(3);
                typmod = row.get(4);
            }
            (_, "A") if element != 0 => {
                let inner = Box::pin(kind(client, element, typmod)).await?;
                return Ok(inner.map(|k| Kind::Array(Box::new(k))));
            }
            _ => return Ok(None),
        }
    }
    Ok(None)
}
