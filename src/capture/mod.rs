//! Capture: PostgreSQL → Kafka over logical replication (`pgoutput`), writing what Debezium's
//! PostgreSQL connector writes.
//!
//! [`run`] creates the publication and the slot when absent, reads a consistent snapshot of
//! the captured tables inside the slot's exported snapshot ([`snapshot`]), then streams the
//! slot ([`replication`], [`pgoutput`]), turning each change into Confluent-framed Avro
//! ([`table`], [`types`]) produced by an idempotent producer ([`producer`]). An LSN is
//! confirmed to PostgreSQL only when Kafka acknowledged every message up to and including its
//! transaction's commit; while the captured tables are idle the confirmed position follows
//! the server's, so WAL does not pile up.

pub mod catalog;
pub mod pgoutput;
pub mod producer;
pub mod replication;
pub mod snapshot;
pub mod table;
pub mod tls;
pub mod types;

use std::collections::{HashMap, VecDeque};
use std::rc::Rc;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio_postgres::config::Host;
use tokio_postgres::Client;

use crate::capture::pgoutput::{Datum, PgOutput, Relation};
use crate::capture::producer::Producer;
use crate::capture::replication::{
    format_lsn, parse_lsn, Lsn, Replicated, ReplicationConnection, Target, PG_EPOCH_OFFSET_MICROS,
};
use crate::capture::snapshot::Mark;
use crate::capture::table::{Column, Source, Table, TransactionBlock};
use crate::capture::types::{Flavor, Kind};
use crate::error::{Error, Result};
use crate::registry::Registry;

/// `source.version` of the events this crate writes.
pub const VERSION: &str = concat!("changestream-", env!("CARGO_PKG_VERSION"));

/// How long one wait on the replication stream lasts before the loop looks at the stop flag.
const POLL: Duration = Duration::from_millis(100);
/// How often the confirmed position is sent even when it did not move.
const STATUS_INTERVAL: Duration = Duration::from_secs(10);
/// How long the last flush before stopping may take.
const FINAL_FLUSH: Duration = Duration::from_secs(60);
/// How long connecting to PostgreSQL may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// How many times in a row a capture cut off by PostgreSQL is started again (about 3 minutes).
const RESUME_ATTEMPTS: u32 = 14;
/// How often the snapshot logs its progress.
const PROGRESS_INTERVAL: Duration = Duration::from_secs(10);
/// How long a registry request (retries included) may take.
const REGISTRY_DEADLINE: Duration = Duration::from_secs(60);

/// A PostgreSQL failure (never quotes the DSN).
pub fn postgres_error(reason: impl Into<String>, retriable: bool) -> Error {
    Error::Postgres {
        reason: reason.into(),
        retriable,
    }
}

/// When to read the existing rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnapshotMode {
    /// When the slot is created by this run.
    Initial,
    /// Never: stream only.
    Never,
}

/// What to capture and where to write it.
#[derive(Debug, Clone)]
pub struct CaptureConfig {
    /// libpq-style DSN (URL or `key=value`).
    pub dsn: String,
    /// Kafka bootstrap servers.
    pub bootstrap_servers: String,
    /// Confluent-compatible schema registry base URL.
    pub schema_registry_url: String,
    /// `schema.table` names; empty: every table of the publication (created for all tables).
    pub tables: Vec<String>,
    /// Topic prefix (Debezium's `topic.prefix`).
    pub topic_prefix: String,
    /// Replication slot name.
    pub slot: String,
    /// Publication name.
    pub publication: String,
    /// Snapshot mode.
    pub snapshot: SnapshotMode,
    /// Event format.
    pub flavor: Flavor,
    /// Stop once everything committed before the start is in Kafka.
    pub until_now: bool,
    /// Write a tombstone after each delete (Debezium's `tombstones.on.delete`).
    pub tombstones: bool,
    /// Debezium's `provide.transaction.metadata`: a `transaction` block in every streamed
    /// event and BEGIN/END events on `<prefix>.transaction`.
    pub transaction_metadata: bool,
    /// librdkafka settings.
    pub kafka: Vec<(String, String)>,
    /// Schema registry settings.
    pub registry: Vec<(String, String)>,
}

/// What a run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters {
    /// Rows read by the snapshot (op `r`).
    pub snapshot_rows: u64,
    /// Inserts (op `c`).
    pub inserts: u64,
    /// Updates (op `u`).
    pub updates: u64,
    /// Deletes (op `d`).
    pub deletes: u64,
    /// Truncated tables (op `t`).
    pub truncates: u64,
    /// Logical decoding messages (op `m`).
    pub messages: u64,
    /// Transactions streamed.
    pub transactions: u64,
    /// Kafka messages produced (tombstones included).
    pub produced: u64,
    /// The LSN confirmed to PostgreSQL last.
    pub confirmed_lsn: u64,
}

impl Counters {
    /// The sum of two runs' counters (the confirmed LSN is the later one).
    fn add(&mut self, other: &Counters) -> Counters {
        self.snapshot_rows += other.snapshot_rows;
        self.inserts += other.inserts;
        self.updates += other.updates;
        self.deletes += other.deletes;
        self.truncates += other.truncates;
        self.messages += other.messages;
        self.transactions += other.transactions;
        self.produced += other.produced;
        self.confirmed_lsn = self.confirmed_lsn.max(other.confirmed_lsn);
        self.clone()
    }
}

/// The transaction being streamed, for its metadata: Debezium emits BEGIN at its first
/// captured event (a transaction without one emits nothing) and END at its commit.
struct OpenTransaction {
    xid: u32,
    /// Commit time, ms since the epoch (the `ts_ms` of BEGIN and END).
    ts_ms: i64,
    /// Whether BEGIN was sent.
    begun: bool,
    /// Events per table, in the order first touched; each logical message is an entry of
    /// its own (named by its prefix), as in Debezium.
    collections: Vec<(String, i64)>,
}

/// What an event of the open transaction belongs to, for its `data_collection_order`.
enum Collection<'a> {
    /// A table, by relation OID (`schema.table`).
    Table(u32),
    /// A logical decoding message, by prefix: each one a collection of its own.
    Message(&'a str),
}

/// A table with its registered schema ids.
struct Registered {
    table: Table,
    key_id: Option<u32>,
    value_id: u32,
}

/// Run a capture until `stop` is set (or, with `until_now`, until caught up).
pub fn run(config: &CaptureConfig, stop: &AtomicBool) -> Result<Counters> {
    if config.transaction_metadata && config.flavor == Flavor::Rows {
        return Err(Error::Config(
            "transaction metadata needs format \"debezium\": flat rows have no envelope".into(),
        ));
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .on_thread_start(crate::threads::block_signals)
        .enable_all()
        .build()
        .map_err(|e| Error::Config(format!("cannot start the capture runtime: {e}")))?;
    runtime.block_on(async {
        let mut total = Counters::default();
        let mut failures = 0u32;
        let streamed = AtomicBool::new(false);
        loop {
            match Capture::start(config, stop, &streamed).await {
                Ok(counters) => return Ok(total.add(&counters)),
                // PostgreSQL restarting or unreachable for a while: the slot keeps our place,
                // so start again from it (nothing confirmed was lost, nothing else was).
                Err(Error::Postgres {
                    reason,
                    retriable: true,
                }) if failures < RESUME_ATTEMPTS
                    && streamed.load(Ordering::Relaxed)
                    && !stop.load(Ordering::Relaxed) =>
                {
                    failures += 1;
                    let pause = Duration::from_secs(1 << failures.min(4));
                    log::warn!(
                        "capture interrupted ({reason}); resuming from the slot in {pause:?} \
                         (attempt {failures} of {RESUME_ATTEMPTS})"
                    );
                    tokio::time::sleep(pause).await;
                }
                Err(error) => return Err(error),
            }
        }
    })
}

fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

/// Write a framed BEGIN or END event (key, value) to `<prefix>.transaction`.
fn send_transaction_event(
    producer: &mut Producer,
    topic_prefix: &str,
    (key, value): (Vec<u8>, Vec<u8>),
) -> Result<()> {
    producer.send(
        &format!("{topic_prefix}.transaction"),
        Some(&key),
        Some(&value),
        &[],
    )?;
    Ok(())
}

fn framed(id: u32, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 5);
    out.push(0);
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(body);
    out
}

/// The DSN's connection target for the replication connection.
fn target(config: &tokio_postgres::Config) -> Result<Target> {
    let host = match config.get_hosts().first() {
        Some(Host::Tcp(host)) => host.clone(),
        None => "localhost".to_owned(),
        #[allow(unreachable_patterns)]
        Some(_) => {
            return Err(Error::Config(
                "capture connects over TCP: give a host name, not a socket directory".into(),
            ))
        }
    };
    let user = config
        .get_user()
        .map(str::to_owned)
        .ok_or_else(|| Error::Config("the DSN names no user".into()))?;
    Ok(Target {
        host,
        port: config.get_ports().first().copied().unwrap_or(5432),
        dbname: config
            .get_dbname()
            .map(str::to_owned)
            .unwrap_or_else(|| user.clone()),
        user,
        password: config.get_password().map(<[u8]>::to_vec),
    })
}

struct Capture<'a> {
    config: &'a CaptureConfig,
    stop: &'a AtomicBool,
    client: Client,
    /// TLS for the snapshot's connection, as for the others.
    tls: tls::Tls,
    producer: Producer,
    registry: Registry,
    db: Rc<str>,
    tables: HashMap<u32, Registered>,
    schema_ids: HashMap<(String, String), u32>,
    counters: Counters,
    /// (messages numbered below this, LSN confirmable once they are acknowledged).
    pending: VecDeque<(u64, Lsn)>,
    confirmed: Lsn,
    /// The key and value schema ids of `<prefix>.transaction` (with transaction metadata).
    transaction_ids: Option<(u32, u32)>,
    /// The transaction being streamed (with transaction metadata).
    open: Option<OpenTransaction>,
}

impl<'a> Capture<'a> {
    /// One run; `streamed` is set once the stream started (a later failure is worth resuming,
    /// a first connection that fails is not).
    async fn start(
        config: &'a CaptureConfig,
        stop: &'a AtomicBool,
        streamed: &AtomicBool,
    ) -> Result<Counters> {
        let (dsn, tls) = tls::split_dsn(&config.dsn)?;
        let pg = tokio_postgres::Config::from_str(&dsn).map_err(|_| {
            Error::Config(
                "the DSN cannot be parsed (expected postgresql://user@host:port/db or \
                 host=… user=… dbname=…)"
                    .into(),
            )
        })?;
        let mut pg = pg;
        pg.connect_timeout(CONNECT_TIMEOUT);
        pg.ssl_mode(tls.mode.for_tokio_postgres());
        let target = target(&pg)?;
        let client = catalog::connect(&pg, &tls).await?;
        catalog::check_wal_level(&client).await?;
        let version: i32 = client
            .query_one("SELECT current_setting('server_version_num')::int", &[])
            .await
            .map_err(catalog::sql_error)?
            .get(0);
        let requested = catalog::resolve_tables(&client, &config.tables).await?;
        let published =
            catalog::ensure_publication(&client, &config.publication, &requested).await?;
        let db: String = client
            .query_one("SELECT current_database()", &[])
            .await
            .map_err(catalog::sql_error)?
            .get(0);
        let producer = Producer::new(&config.bootstrap_servers, &config.kafka)?;
        let registry = Registry::new(
            &config.schema_registry_url,
            &config.registry,
            REGISTRY_DEADLINE,
        )?;
        let mut capture = Capture {
            config,
            stop,
            client,
            tls: tls.clone(),
            producer,
            registry,
            db: db.into(),
            tables: HashMap::new(),
            schema_ids: HashMap::new(),
            counters: Counters::default(),
            pending: VecDeque::new(),
            confirmed: 0,
            transaction_ids: None,
            open: None,
        };
        if config.transaction_metadata {
            let topic = format!("{}.transaction", config.topic_prefix);
            let (key_schema, value_schema) = table::transaction_topic_schemas();
            let key_id = capture
                .schema_id(format!("{topic}-key"), key_schema)
                .await?;
            let value_id = capture
                .schema_id(format!("{topic}-value"), value_schema)
                .await?;
            capture.transaction_ids = Some((key_id, value_id));
        }
        let mut connection = ReplicationConnection::connect(&target, &tls, CONNECT_TIMEOUT).await?;
        let exists = catalog::slot_exists(&capture.client, &config.slot).await?;
        if !exists {
            let created = connection.create_slot(&config.slot).await?;
            log::info!(
                "created replication slot {:?} at {}",
                config.slot,
                format_lsn(created.consistent_point)
            );
            if config.snapshot == SnapshotMode::Initial {
                let done = capture
                    .snapshot(&pg, &published, &created.snapshot, created.consistent_point)
                    .await;
                if !matches!(done, Ok(true)) {
                    // An unfinished snapshot must be redone: without the slot, the next run
                    // creates a new one and reads the tables again.
                    let _ = connection
                        .query(&format!(
                            "DROP_REPLICATION_SLOT {}",
                            replication::quote_ident(&config.slot)
                        ))
                        .await;
                    log::warn!("snapshot interrupted: dropped slot {:?}", config.slot);
                    return done.map(|_| capture.counters.clone());
                }
            }
        }
        // Confirmations never go below the slot's own position.
        let row = capture
            .client
            .query_one(
                "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1",
                &[&config.slot],
            )
            .await
            .map_err(catalog::sql_error)?;
        if let Some(text) = row.get::<_, Option<String>>(0) {
            capture.confirmed = parse_lsn(&text)?;
            capture.counters.confirmed_lsn = capture.confirmed;
        }
        let until = if config.until_now {
            // The insert position, not the flush position: a non-transactional
            // `pg_logical_emit_message` is not flushed at once (no commit), yet it happened
            // before the start; the stream reaches it once the WAL writer flushes it.
            let row = capture
                .client
                .query_one("SELECT pg_current_wal_insert_lsn()::text", &[])
                .await
                .map_err(catalog::sql_error)?;
            Some(parse_lsn(&row.get::<_, String>(0))?)
        } else {
            None
        };
        let mut options = format!(
            "proto_version '1', publication_names '{}'",
            replication::quote_ident(&config.publication).replace('\'', "''")
        );
        if version >= 140_000 {
            options.push_str(", messages 'true'");
        }
        connection.start(&config.slot, 0, &options).await?;
        streamed.store(true, Ordering::Relaxed);
        let result = capture.stream(&mut connection, until).await;
        // Whatever happened, hand Kafka what is queued and confirm what it acknowledged.
        let flushed = capture.producer.flush(FINAL_FLUSH);
        if flushed.is_ok() {
            let _ = capture.confirm(&mut connection, None, true).await;
        }
        connection.close().await;
        result?;
        flushed?;
        Ok(capture.counters.clone())
    }

    /// Register the table's schemas (once per distinct schema).
    async fn register(&mut self, table: Table) -> Result<Registered> {
        let key_id = match &table.key_schema {
            Some(schema) => Some(
                self.schema_id(format!("{}-key", table.topic), schema.clone())
                    .await?,
            ),
            None => None,
        };
        let value_id = self
            .schema_id(format!("{}-value", table.topic), table.value_schema.clone())
            .await?;
        Ok(Registered {
            table,
            key_id,
            value_id,
        })
    }

    /// Read every captured table inside the exported snapshot. `Ok(false)`: stopped early.
    async fn snapshot(
        &mut self,
        pg: &tokio_postgres::Config,
        tables: &[u32],
        name: &str,
        lsn: Lsn,
    ) -> Result<bool> {
        let reader = catalog::connect(pg, &self.tls).await?;
        reader
            .batch_execute(&format!(
                "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SET TRANSACTION SNAPSHOT '{}'",
                name.replace('\'', "''")
            ))
            .await
            .map_err(catalog::sql_error)?;
        let started = now_micros();
        let mut last_with_rows = 0;
        for (index, oid) in tables.iter().enumerate() {
            if snapshot::has_rows(&reader, *oid).await? {
                last_with_rows = index;
            }
        }
        for (index, oid) in tables.iter().enumerate() {
            let table =
                catalog::describe(&reader, *oid, &self.config.topic_prefix, self.config.flavor)
                    .await?;
            let registered = self.register(table).await?;
            let clock = Instant::now();
            let flavor = self.config.flavor;
            let prefix = self.config.topic_prefix.clone();
            let db = self.db.clone();
            let stop = self.stop;
            let producer = &mut self.producer;
            let mut stopped = false;
            let qualified = registered.table.qualified();
            let mut sent = 0u64;
            let mut logged = Instant::now();
            let mut emit = |row: Vec<Datum>, mark: Mark| -> Result<()> {
                if stop.load(Ordering::Relaxed) {
                    stopped = true;
                    return Err(Error::Closed);
                }
                sent += 1;
                if sent % 4096 == 0 && logged.elapsed() >= PROGRESS_INTERVAL {
                    logged = Instant::now();
                    let seconds = clock.elapsed().as_secs_f64().max(1e-6);
                    log::info!(
                        "snapshot of {qualified}: {sent} rows so far ({:.0} rows/s)",
                        sent as f64 / seconds
                    );
                }
                let source = Source {
                    name: &prefix,
                    db: &db,
                    ts_micros: started,
                    snapshot: mark.as_str(),
                    tx_id: None,
                    lsn: Some(lsn as i64),
                    sequence: None,
                };
                send_change(
                    producer,
                    &registered,
                    flavor,
                    None,
                    Some(&row),
                    &source,
                    None,
                    "r",
                )
            };
            let rows = snapshot::copy_table(
                &reader,
                &registered.table,
                index == 0,
                index >= last_with_rows,
                &mut emit,
            )
            .await;
            let rows = match rows {
                Err(_) if stopped => return Ok(false),
                other => other?,
            };
            self.counters.snapshot_rows += rows;
            let seconds = clock.elapsed().as_secs_f64().max(1e-6);
            log::info!(
                "snapshot of {}: {rows} rows in {seconds:.1} s ({:.0} rows/s)",
                registered.table.qualified(),
                rows as f64 / seconds
            );
            self.tables.insert(*oid, registered);
        }
        reader
            .batch_execute("COMMIT")
            .await
            .map_err(catalog::sql_error)?;
        // The slot stays at its consistent point until the stream confirms more; the snapshot
        // must be in Kafka before anything after it is confirmed.
        self.producer.flush(FINAL_FLUSH)?;
        self.counters.produced = self.producer.next_number();
        Ok(true)
    }

    /// The table a relation message describes, from the catalog's view of nullability, key and
    /// types, in the relation's column order.
    async fn relation(&mut self, relation: Relation) -> Result<()> {
        let flavor = self.config.flavor;
        let catalog = catalog::describe(
            &self.client,
            relation.oid,
            &self.config.topic_prefix,
            flavor,
        )
        .await;
        let known: HashMap<String, (Column, bool)> = match &catalog {
            Ok(table) => table
                .columns
                .iter()
                .enumerate()
                .map(|(i, c)| (c.name.clone(), (c.clone(), table.key.contains(&i))))
                .collect(),
            Err(_) => HashMap::new(),
        };
        let mut columns = Vec::with_capacity(relation.columns.len());
        let mut key = Vec::new();
        for column in &relation.columns {
            let entry = known.get(&column.name);
            let resolved = match entry {
                Some((c, _)) if c.type_oid == column.type_oid && c.typmod == column.typmod => {
                    c.clone()
                }
                _ => {
                    let kind = match Kind::builtin(column.type_oid, column.typmod) {
                        Some(kind) => kind,
                        None => catalog::kind(&self.client, column.type_oid, column.typmod)
                            .await?
                            .ok_or_else(|| {
                                Error::Config(format!(
                                    "cannot encode column {:?} of table {}.{}: its type (OID {}) \
                                     is not supported",
                                    column.name, relation.schema, relation.name, column.type_oid
                                ))
                            })?,
                    };
                    Column {
                        name: column.name.clone(),
                        kind,
                        optional: true,
                        type_oid: column.type_oid,
                        typmod: column.typmod,
                    }
                }
            };
            if entry.is_some_and(|(_, is_key)| *is_key) {
                key.push(columns.len());
            }
            columns.push(resolved);
        }
        let table = Table::new(
            &self.config.topic_prefix,
            relation.schema,
            relation.name,
            columns,
            key,
            flavor,
        );
        let registered = self.register(table).await?;
        self.tables.insert(relation.oid, registered);
        Ok(())
    }

    async fn stream(
        &mut self,
        connection: &mut ReplicationConnection,
        until: Option<Lsn>,
    ) -> Result<()> {
        let mut transaction: Option<(u32, i64)> = None;
        let mut last_commit: Lsn = 0;
        let mut server_end: Lsn = 0;
        let mut last_status = Instant::now();
        loop {
            if self.stop.load(Ordering::Relaxed) {
                log::info!("capture stopping on request");
                return Ok(());
            }
            let mut reply = false;
            match connection.next(POLL).await? {
                Some(Replicated::Data { start, data }) => match pgoutput::parse(data)? {
                    PgOutput::Begin {
                        xid, commit_time, ..
                    } => {
                        transaction = Some((xid, commit_time));
                        if self.transaction_ids.is_some() {
                            self.open = Some(OpenTransaction {
                                xid,
                                ts_ms: (commit_time + PG_EPOCH_OFFSET_MICROS).div_euclid(1000),
                                begun: false,
                                collections: Vec::new(),
                            });
                        }
                    }
                    PgOutput::Commit { end_lsn, .. } => {
                        transaction = None;
                        self.end_transaction(end_lsn)?;
                        last_commit = end_lsn;
                        server_end = server_end.max(end_lsn);
                        self.counters.transactions += 1;
                        self.pending
                            .push_back((self.producer.next_number(), end_lsn));
                    }
                    PgOutput::Relation(relation) => self.relation(relation).await?,
                    change => {
                        // A message outside a transaction is its own commit (as in Debezium).
                        if transaction.is_none() && matches!(change, PgOutput::Message { .. }) {
                            last_commit = start;
                        }
                        let (xid, commit_time) = transaction.unwrap_or((0, 0));
                        self.change(
                            change,
                            start,
                            xid,
                            commit_time,
                            transaction.is_some(),
                            last_commit,
                        )
                        .await?;
                    }
                },
                Some(Replicated::Keepalive {
                    wal_end,
                    reply: asked,
                }) => {
                    if transaction.is_none() {
                        server_end = server_end.max(wal_end);
                    }
                    reply = asked;
                }
                None => {}
            }
            self.counters.produced = self.producer.next_number();
            let idle_end = transaction.is_none().then_some(server_end);
            if reply || last_status.elapsed() >= Duration::from_secs(1) {
                let forced = reply || last_status.elapsed() >= STATUS_INTERVAL;
                if self.confirm(connection, idle_end, forced).await? || forced {
                    last_status = Instant::now();
                }
            }
            if let Some(until) = until {
                if transaction.is_none() && server_end >= until {
                    self.producer.flush(FINAL_FLUSH)?;
                    self.confirm(connection, idle_end, true).await?;
                    log::info!("capture caught up with {} (until now)", format_lsn(until));
                    return Ok(());
                }
                if last_status.elapsed() >= Duration::from_millis(500) {
                    // Ask for a keepalive: it carries the server's position.
                    connection.confirm(self.confirmed, true).await?;
                    last_status = Instant::now();
                }
            }
        }
    }

    /// Send the confirmed position if it moved (or `forced`). `idle_end`: the server's sent
    /// position when no transaction is open, confirmable once everything before is acked.
    async fn confirm(
        &mut self,
        connection: &mut ReplicationConnection,
        idle_end: Option<Lsn>,
        forced: bool,
    ) -> Result<bool> {
        let acked = self.producer.acked_below()?;
        let mut confirmable = self.confirmed;
        while let Some(&(below, lsn)) = self.pending.front() {
            if below > acked {
                break;
            }
            confirmable = confirmable.max(lsn);
            self.pending.pop_front();
        }
        if self.pending.is_empty() && acked == self.producer.next_number() {
            if let Some(end) = idle_end {
                confirmable = confirmable.max(end);
            }
        }
        let moved = confirmable > self.confirmed;
        if moved || forced {
            self.confirmed = confirmable;
            self.counters.confirmed_lsn = confirmable;
            connection.confirm(confirmable, false).await?;
        }
        Ok(moved)
    }

    /// The `transaction` block of the open transaction's next event (None without transaction
    /// metadata or outside a transaction), sending BEGIN first if it is the first.
    fn block(&mut self, lsn: Lsn, collection: Collection<'_>) -> Result<Option<TransactionBlock>> {
        let Some(open) = self.open.as_mut() else {
            return Ok(None);
        };
        let Some((key_id, value_id)) = self.transaction_ids else {
            return Ok(None);
        };
        // Debezium's id is `<txId>:<LSN>` with the LSN of the event it is written with.
        let id = format!("{}:{lsn}", open.xid);
        if !open.begun {
            open.begun = true;
            let (key, value) = table::encode_transaction_event(&id, None, open.ts_ms);
            send_transaction_event(
                &mut self.producer,
                &self.config.topic_prefix,
                (framed(key_id, &key), framed(value_id, &value)),
            )?;
        }
        let position = match collection {
            Collection::Table(oid) => {
                let name = described(&self.tables, oid)?.table.qualified();
                let position = open.collections.iter().position(|(n, _)| *n == name);
                position.ok_or(name)
            }
            Collection::Message(prefix) => Err(prefix.to_owned()),
        };
        let data_collection_order = match position {
            Ok(index) => {
                open.collections[index].1 += 1;
                open.collections[index].1
            }
            Err(name) => {
                open.collections.push((name, 1));
                1
            }
        };
        Ok(Some(TransactionBlock {
            id,
            total_order: open.collections.iter().map(|(_, n)| n).sum(),
            data_collection_order,
        }))
    }

    /// Close the open transaction: END (`<txId>:<commit end LSN>`) if BEGIN was sent.
    fn end_transaction(&mut self, end_lsn: Lsn) -> Result<()> {
        let (Some(open), Some((key_id, value_id))) = (self.open.take(), self.transaction_ids)
        else {
            return Ok(());
        };
        if open.begun {
            let id = format!("{}:{end_lsn}", open.xid);
            let (key, value) =
                table::encode_transaction_event(&id, Some(&open.collections), open.ts_ms);
            send_transaction_event(
                &mut self.producer,
                &self.config.topic_prefix,
                (framed(key_id, &key), framed(value_id, &value)),
            )?;
        }
        Ok(())
    }

    /// Produce the events of one row change, truncate or message.
    async fn change(
        &mut self,
        change: PgOutput,
        lsn: Lsn,
        xid: u32,
        commit_time: i64,
        in_transaction: bool,
        last_commit: Lsn,
    ) -> Result<()> {
        let flavor = self.config.flavor;
        // Debezium's `["<last commit LSN>","<this LSN>"]`, null before the first commit seen.
        let sequence = match last_commit {
            0 => format!("[null,\"{lsn}\"]"),
            last => format!("[\"{last}\",\"{lsn}\"]"),
        };
        let ts = if in_transaction {
            commit_time + PG_EPOCH_OFFSET_MICROS
        } else {
            now_micros()
        };
        let config = self.config;
        let db = self.db.clone();
        let source = Source {
            name: &config.topic_prefix,
            db: &db,
            ts_micros: ts,
            snapshot: "false",
            tx_id: in_transaction.then_some(xid as i64),
            lsn: Some(lsn as i64),
            sequence: Some(sequence),
        };
        match change {
            PgOutput::Insert { relation, new } => {
                let block = self.block(lsn, Collection::Table(relation))?;
                let registered = described(&self.tables, relation)?;
                send_change(
                    &mut self.producer,
                    registered,
                    flavor,
                    None,
                    Some(&new),
                    &source,
                    block.as_ref(),
                    "c",
                )?;
                self.counters.inserts += 1;
            }
            PgOutput::Update { relation, old, new } => {
                let block = self.block(lsn, Collection::Table(relation))?;
                let registered = described(&self.tables, relation)?;
                let key_changed = old.as_ref().is_some_and(|old| {
                    registered.table.key.iter().any(|&i| {
                        matches!((old.get(i), new.get(i)), (Some(a @ Datum::Text(_)), Some(b)) if a != b)
                    })
                });
                if key_changed {
                    // Two events (the tombstone is none): the create has the next block.
                    let create_block = self.block(lsn, Collection::Table(relation))?;
                    let registered = described(&self.tables, relation)?;
                    let old = old.as_deref();
                    send_change(
                        &mut self.producer,
                        registered,
                        flavor,
                        old,
                        None,
                        &source,
                        block.as_ref(),
                        "d",
                    )?;
                    if self.config.tombstones || flavor == Flavor::Rows {
                        send_tombstone(&mut self.producer, registered, flavor, old.unwrap_or(&[]))?;
                    }
                    send_change(
                        &mut self.producer,
                        registered,
                        flavor,
                        None,
                        Some(&new),
                        &source,
                        create_block.as_ref(),
                        "c",
                    )?;
                    self.counters.deletes += 1;
                    self.counters.inserts += 1;
                } else {
                    // A key-only old tuple is sent only when the key changed; a full one
                    // (REPLICA IDENTITY FULL) is Debezium's `before`.
                    send_change(
                        &mut self.producer,
                        registered,
                        flavor,
                        old.as_deref(),
                        Some(&new),
                        &source,
                        block.as_ref(),
                        "u",
                    )?;
                    self.counters.updates += 1;
                }
            }
            PgOutput::Delete { relation, old } => {
                let block = self.block(lsn, Collection::Table(relation))?;
                let registered = described(&self.tables, relation)?;
                if flavor == Flavor::Debezium {
                    send_change(
                        &mut self.producer,
                        registered,
                        flavor,
                        Some(&old),
                        None,
                        &source,
                        block.as_ref(),
                        "d",
                    )?;
                }
                if self.config.tombstones || flavor == Flavor::Rows {
                    send_tombstone(&mut self.producer, registered, flavor, &old)?;
                }
                self.counters.deletes += 1;
            }
            PgOutput::Truncate { relations } => {
                for oid in relations {
                    if !self.tables.contains_key(&oid) {
                        continue;
                    }
                    let block = self.block(lsn, Collection::Table(oid))?;
                    let registered = described(&self.tables, oid)?;
                    if flavor == Flavor::Debezium {
                        let value = registered.table.encode_envelope(
                            None,
                            None,
                            &source,
                            block.as_ref(),
                            "t",
                            now_micros(),
                        )?;
                        let value = framed(registered.value_id, &value);
                        self.producer
                            .send(&registered.table.topic, None, Some(&value), &[])?;
                    }
                    self.counters.truncates += 1;
                }
            }
            PgOutput::Message {
                prefix, content, ..
            } => {
                if flavor == Flavor::Debezium {
                    let block = self.block(lsn, Collection::Message(&prefix))?;
                    self.message(&prefix, &content, &source, block.as_ref())
                        .await?;
                }
                self.counters.messages += 1;
            }
            PgOutput::Begin { .. }
            | PgOutput::Commit { .. }
            | PgOutput::Relation(_)
            | PgOutput::Other => {}
        }
        Ok(())
    }

    /// A logical decoding message, to `<prefix>.message` keyed by its prefix.
    async fn message(
        &mut self,
        prefix: &str,
        content: &[u8],
        source: &Source<'_>,
        transaction: Option<&TransactionBlock>,
    ) -> Result<()> {
        let topic = format!("{}.message", self.config.topic_prefix);
        let (key_schema, value_schema) = table::message_schemas();
        let key_id = self.schema_id(format!("{topic}-key"), key_schema).await?;
        let value_id = self
            .schema_id(format!("{topic}-value"), value_schema)
            .await?;
        let (key, value) =
            table::encode_message(prefix, content, source, transaction, now_micros());
        self.producer.send(
            &topic,
            Some(&framed(key_id, &key)),
            Some(&framed(value_id, &value)),
            &[],
        )?;
        Ok(())
    }

    /// The id of `schema` under `subject`, registering it the first time.
    async fn schema_id(&mut self, subject: String, schema: String) -> Result<u32> {
        let key = (subject, schema);
        if let Some(id) = self.schema_ids.get(&key) {
            return Ok(*id);
        }
        let id = self.registry.register(&key.0, &key.1).await?;
        self.schema_ids.insert(key, id);
        Ok(id)
    }
}

/// The table a change names, which pgoutput described before.
fn described(tables: &HashMap<u32, Registered>, oid: u32) -> Result<&Registered> {
    tables.get(&oid).ok_or_else(|| {
        postgres_error(
            format!("pgoutput sent a change of relation {oid} before describing it"),
            false,
        )
    })
}

/// Produce one change event of a table.
#[allow(clippy::too_many_arguments)]
fn send_change(
    producer: &mut Producer,
    registered: &Registered,
    flavor: Flavor,
    before: Option<&[Datum]>,
    after: Option<&[Datum]>,
    source: &Source<'_>,
    transaction: Option<&TransactionBlock>,
    op: &str,
) -> Result<()> {
    let table = &registered.table;
    let row = after.or(before).unwrap_or(&[]);
    let key = table.encode_key(row, flavor)?;
    let key = key
        .zip(registered.key_id)
        .map(|(body, id)| framed(id, &body));
    let value = match flavor {
        Flavor::Debezium => {
            let before = before.filter(|_| op != "r" && op != "c");
            table.encode_envelope(before, after, source, transaction, op, now_micros())?
        }
        Flavor::Rows => {
            let mut out = Vec::new();
            table.encode_row(row, flavor, &mut out)?;
            out
        }
    };
    let value = framed(registered.value_id, &value);
    producer.send(&table.topic, key.as_deref(), Some(&value), &[])?;
    Ok(())
}

/// The null-valued message that lets compaction drop a deleted key.
fn send_tombstone(
    producer: &mut Producer,
    registered: &Registered,
    flavor: Flavor,
    old: &[Datum],
) -> Result<()> {
    let table = &registered.table;
    let key = table.encode_key(old, flavor)?;
    let key = key
        .zip(registered.key_id)
        .map(|(body, id)| framed(id, &body));
    producer.send(&table.topic, key.as_deref(), None, &[])?;
    Ok(())
}
