//! Fetching from Kafka: one consumer per stream, polled on its own thread.
//!
//! The fetch thread polls an rdkafka `BaseConsumer`, decodes each message into a [`Change`] and
//! sends them in batches through a bounded channel, so decoding runs beside the application and
//! a slow application makes the thread wait rather than memory grow. [`ChangeConsumer::next`]
//! hands changes out one at a time.
//!
//! Positions follow the application, never the fetcher: a change is *finished* when the
//! application asks for the next one (or calls `commit`), and only finished positions are
//! committed — every `commit_interval`, before a revoked partition is let go, and on close.
//! A change handed out but not finished is never committed, so a crash re-delivers it.
//!
//! Bounded reads (`until`) fix each partition's end when it is assigned — the high watermark,
//! or the first offset at or after a time — and end when the consumer's *position* has reached
//! it on every partition, so transaction markers and compacted gaps end correctly.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, RebalanceProtocol};
use rdkafka::error::KafkaError as RdKafkaError;
use rdkafka::message::{BorrowedMessage, Headers, Message as _};
use rdkafka::types::{RDKafkaErrorCode, RDKafkaRespErr};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tokio::sync::mpsc;

use crate::change::{Change, ChangeDecoder, DecoderOptions, Message, Position};
use crate::error::{Error, Result};
use crate::positions::{PartitionState, Positions};
use crate::registry::Registry;
use crate::runtime::runtime;

/// How long one poll of librdkafka may block; also bounds how fast the thread notices a stop.
const POLL_SLICE: Duration = Duration::from_millis(100);
/// Most items sent through the channel at once.
const BATCH_SIZE: usize = 512;
/// How long resuming waits for the request that wakes librdkafka's broker threads.
const WAKE_TIMEOUT: Duration = Duration::from_secs(1);
/// The default of [`StreamConfig::max_buffer_bytes`].
pub const DEFAULT_MAX_BUFFER_BYTES: usize = 64 << 20;
/// How long metadata, watermark and commit requests may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How long closing waits for the watermarks that `lag()` after `close()` reports.
const CLOSE_LAG_TIMEOUT: Duration = Duration::from_secs(2);
/// How long one metadata request waits before we check for a connection failure.
const METADATA_SLICE: Duration = Duration::from_millis(500);

/// Where a stream starts reading a partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Start {
    /// The group's committed position; without one, `auto.offset.reset` (earliest by default).
    Committed,
    /// The oldest message still in Kafka.
    Earliest,
    /// Only messages written after the partition is assigned.
    Latest,
    /// The first message at or after this time (milliseconds since the epoch).
    Time(i64),
    /// Explicit next offsets; partitions not listed start as `Committed` would.
    Offsets(HashMap<(String, i32), i64>),
}

/// When a stream ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Until {
    /// Never: follow the topics as they grow.
    Forever,
    /// When every partition has reached the high watermark read when it was assigned.
    End,
    /// At the first message at or after this time (milliseconds since the epoch) on every
    /// partition, or its high watermark when there is none yet.
    Time(i64),
}

/// Who decides when positions are finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommitPolicy {
    /// Asking for the next change finishes the previous one; finished positions are committed
    /// every `commit_interval` and on close.
    Auto,
    /// Nothing is finished or committed until the application calls `commit`.
    Manual,
}

/// What to do with a message that cannot be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnDecodeError {
    /// Stop the stream with the error; nothing from that message on is committed.
    Raise,
    /// Skip the message, counting it in `stats()`.
    Skip,
    /// Set the message aside, raw, with its error, for the application (`dead_letters()`).
    DeadLetter,
}

/// Everything needed to open a stream. Its `Debug` output leaves out setting values, which
/// may be passwords.
#[derive(Clone)]
pub struct StreamConfig {
    /// Topics to follow.
    pub topics: Vec<String>,
    /// Kafka bootstrap servers.
    pub bootstrap_servers: String,
    /// Schema registry base URL.
    pub schema_registry_url: String,
    /// Schema registry client settings (confluent-kafka-python's spelling).
    pub registry: Vec<(String, String)>,
    /// How long a schema lookup may retry.
    pub registry_timeout: Duration,
    /// Consumer group; `None` reads every partition without a group and commits nothing.
    pub group_id: Option<String>,
    /// Where to start.
    pub start: Start,
    /// When to stop.
    pub until: Until,
    /// Who finishes positions.
    pub commit: CommitPolicy,
    /// How often finished positions are committed.
    pub commit_interval: Duration,
    /// What to do with undecodable messages.
    pub on_decode_error: OnDecodeError,
    /// How messages are read into changes.
    pub decoder: DecoderOptions,
    /// librdkafka settings, applied last so they override ours.
    pub kafka: Vec<(String, String)>,
    /// The most memory read-ahead may hold: half for librdkafka's queue of raw messages
    /// (`queued.max.messages.kbytes`), half for decoded changes the application has not
    /// taken yet. When the decoded half is full, fetching pauses until it is half empty.
    pub max_buffer_bytes: usize,
    /// Keep what [`ChangeConsumer::progress`] needs (one map update per change handed out).
    pub track_progress: bool,
}

impl std::fmt::Debug for StreamConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let keys = |settings: &[(String, String)]| {
            settings
                .iter()
                .map(|(key, _)| key.clone())
                .collect::<Vec<_>>()
        };
        f.debug_struct("StreamConfig")
            .field("topics", &self.topics)
            .field("bootstrap_servers", &self.bootstrap_servers)
            .field("group_id", &self.group_id)
            .field("start", &self.start)
            .field("until", &self.until)
            .field("commit", &self.commit)
            .field("max_buffer_bytes", &self.max_buffer_bytes)
            .field("kafka_keys", &keys(&self.kafka))
            .field("registry_keys", &keys(&self.registry))
            .finish_non_exhaustive()
    }
}

/// A message that could not be decoded, kept raw for the application.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    /// Where the message sits.
    pub position: Position,
    /// The raw key.
    pub key: Option<Vec<u8>>,
    /// The raw value.
    pub value: Option<Vec<u8>>,
    /// The message headers.
    pub headers: Vec<(String, Option<Vec<u8>>)>,
    /// Why it could not be decoded.
    pub error: Error,
}

/// One fetched item, in log order.
enum Item {
    Change(Change),
    DeadLetter(DeadLetter),
    /// A message not handed out — skipped under `OnDecodeError::Skip`, a tombstone not
    /// delivered, or (at its last offset) a run of transaction markers or a compacted gap:
    /// finished once the application has finished everything before it, like any change.
    Passed(Position),
}

impl Item {
    fn position(&self) -> &Position {
        match self {
            Item::Change(change) => &change.position,
            Item::DeadLetter(dead) => &dead.position,
            Item::Passed(position) => position,
        }
    }

    /// About how much memory the item holds, as the read-ahead budget counts it.
    fn heap_bytes(&self) -> usize {
        let bytes = |b: &Option<Vec<u8>>| b.as_ref().map_or(0, Vec::len);
        match self {
            Item::Change(change) => change.heap_bytes(),
            Item::DeadLetter(dead) => {
                std::mem::size_of::<DeadLetter>()
                    + bytes(&dead.key)
                    + bytes(&dead.value)
                    + dead
                        .headers
                        .iter()
                        .map(|(k, v)| k.len() + bytes(v))
                        .sum::<usize>()
            }
            Item::Passed(_) => std::mem::size_of::<Position>(),
        }
    }
}

/// A fetched item waiting for the application, with the bytes it counts for.
struct Buffered {
    item: Item,
    bytes: usize,
}

impl Buffered {
    fn new(item: Item) -> Buffered {
        let bytes = item.heap_bytes();
        Buffered { item, bytes }
    }
}

/// The decoded half of the read-ahead budget, shared by the fetch thread (which pauses
/// fetching when it is full) and the application side (which frees it as it takes items).
struct ReadAhead {
    /// Bytes of decoded items sent and not yet taken.
    waiting: AtomicUsize,
    /// Fetching pauses at this many bytes waiting and resumes at half.
    room: usize,
    /// Times fetching paused.
    pauses: AtomicU64,
    /// Signalled when `waiting` falls to half of `room`, for a paused fetch thread.
    drained: (Mutex<()>, Condvar),
}

impl ReadAhead {
    fn new(max_buffer_bytes: usize) -> ReadAhead {
        ReadAhead {
            waiting: AtomicUsize::new(0),
            room: (max_buffer_bytes / 2).max(1),
            pauses: AtomicU64::new(0),
            drained: (Mutex::new(()), Condvar::new()),
        }
    }

    fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Acquire)
    }

    fn is_full(&self) -> bool {
        self.waiting() >= self.room
    }

    fn is_drained(&self) -> bool {
        self.waiting() <= self.room / 2
    }

    fn add(&self, bytes: usize) {
        self.waiting.fetch_add(bytes, Ordering::AcqRel);
    }

    fn free(&self, bytes: usize) {
        let before = self.waiting.fetch_sub(bytes, Ordering::AcqRel);
        let half = self.room / 2;
        if before > half && before - bytes <= half {
            // Under the lock, so a fetch thread between its check and its wait hears it.
            let _guard = self.drained.0.lock().unwrap_or_else(|e| e.into_inner());
            self.drained.1.notify_one();
        }
    }

    /// Wait at most `timeout` for the application to take half of what is waiting.
    fn wait_drained(&self, timeout: Duration) {
        let guard = self.drained.0.lock().unwrap_or_else(|e| e.into_inner());
        if !self.is_drained() {
            let _ = self.drained.1.wait_timeout(guard, timeout);
        }
    }
}

/// What the fetch thread sends.
enum Fetched {
    /// Items fetched while the assignment was at `generation`.
    Items {
        generation: u64,
        items: Vec<Buffered>,
    },
    Failed(Error),
    /// A bounded read reached its end with the assignment at `generation`.
    End {
        generation: u64,
    },
}

/// The outcome of waiting for the next batch.
#[derive(Debug)]
pub enum NextBatch {
    /// Changes of one table under one value schema, in log order.
    Batch(Vec<Change>),
    /// Nothing to hand over yet; ask again.
    Pending,
    /// A bounded stream has delivered everything.
    End,
}

/// The outcome of waiting for the next change.
#[derive(Debug)]
pub enum Next {
    /// A change.
    Change(Box<Change>),
    /// Nothing arrived in time; ask again.
    Pending,
    /// A bounded stream has delivered everything.
    End,
}

/// The librdkafka context: runs the rebalance callbacks (on the fetch thread).
struct StreamContext {
    positions: Arc<Positions>,
    start: Start,
    until: Until,
    uses_group: bool,
    /// Where a partition without a committed position starts: `auto.offset.reset` latest.
    reset_to_latest: bool,
    /// An error raised inside a callback, for the fetch thread to report.
    failure: Mutex<Option<Error>>,
}

type Kafka = BaseConsumer<StreamContext>;

impl ClientContext for StreamContext {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        log_librdkafka(level, facility, message);
    }

    /// librdkafka's global errors. Connection losses are retried by librdkafka and only
    /// counted; authentication and TLS failures cannot heal by waiting and end the stream.
    fn error(&self, error: RdKafkaError, reason: &str) {
        use rdkafka::types::RDKafkaErrorCode as Code;
        let code = error.rdkafka_error_code();
        match code {
            // The end of a partition is news, not an error; bounded reads track it themselves.
            Some(Code::PartitionEOF) => {}
            _ if self.refuses_unused_group(&error) => {
                log::debug!("kafka (the stream uses no group): {error}: {reason}");
            }
            Some(Code::BrokerTransportFailure) => {
                self.positions
                    .counters
                    .broker_disconnects
                    .fetch_add(1, Ordering::Relaxed);
                // librdkafka marks a repeat of the last failure (a broker still refusing):
                // the first is logged, the repeats only counted.
                if reason.contains("identical error(s) suppressed") {
                    log::debug!("kafka: {reason}");
                } else {
                    log::warn!("kafka: {reason}");
                }
            }
            // Follows a transport failure, already logged.
            Some(Code::AllBrokersDown) => log::debug!("kafka: {reason}"),
            Some(
                Code::Authentication
                | Code::SaslAuthenticationFailed
                | Code::SSL
                | Code::Fatal
                | Code::TopicAuthorizationFailed
                | Code::GroupAuthorizationFailed
                | Code::ClusterAuthorizationFailed,
            ) => self.fail(Error::Kafka {
                reason: format!("{error}: {reason}"),
                retriable: false,
            }),
            _ => log::warn!("kafka: {error}: {reason}"),
        }
    }
}

/// librdkafka's log lines, as rdkafka logs them, except a broker connection failure ("FAIL"):
/// the error callback reports that too, once, at WARNING.
pub(crate) fn log_librdkafka(level: RDKafkaLogLevel, facility: &str, message: &str) {
    let level = match level {
        _ if facility == "FAIL" => log::Level::Debug,
        RDKafkaLogLevel::Emerg
        | RDKafkaLogLevel::Alert
        | RDKafkaLogLevel::Critical
        | RDKafkaLogLevel::Error => log::Level::Error,
        RDKafkaLogLevel::Warning => log::Level::Warn,
        RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => log::Level::Info,
        RDKafkaLogLevel::Debug => log::Level::Debug,
    };
    log::log!(target: "librdkafka", level, "librdkafka: {facility} {message}");
}

impl ConsumerContext for StreamContext {
    fn rebalance(&self, consumer: &Kafka, err: RDKafkaRespErr, tpl: &mut TopicPartitionList) {
        let cooperative = matches!(
            consumer.rebalance_protocol(),
            RebalanceProtocol::Cooperative
        );
        let outcome = match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                let prepared = self.prepare_assignment(consumer, tpl);
                let assigned = if cooperative {
                    consumer.incremental_assign(tpl)
                } else {
                    consumer.assign(tpl)
                };
                prepared.and(assigned.map_err(Error::from))
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                let committed = self.commit_revoked(consumer, tpl);
                let unassigned = if cooperative {
                    consumer.incremental_unassign(tpl)
                } else {
                    consumer.unassign()
                };
                committed.and(unassigned.map_err(Error::from))
            }
            other => {
                log::warn!("rebalance error {other:?}; dropping the assignment");
                let revoked = tpl
                    .elements()
                    .iter()
                    .map(|e| (e.topic().to_owned(), e.partition()))
                    .collect::<Vec<_>>();
                self.positions
                    .revoke(revoked.iter().map(|(t, p)| (t.as_str(), *p)));
                consumer.unassign().map_err(Error::from)
            }
        };
        if let Err(error) = outcome {
            self.fail(error);
        }
    }
}

impl StreamContext {
    /// Without a group, the group id librdkafka needs for `assign` is never used, yet
    /// librdkafka looks up its coordinator: a broker's ACLs may refuse that, harmlessly.
    fn refuses_unused_group(&self, error: &RdKafkaError) -> bool {
        !self.uses_group
            && error.rdkafka_error_code() == Some(RDKafkaErrorCode::GroupAuthorizationFailed)
    }

    fn fail(&self, error: Error) {
        let mut failure = self.failure.lock().unwrap_or_else(|e| e.into_inner());
        failure.get_or_insert(error);
    }

    fn take_failure(&self) -> Option<Error> {
        self.failure
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
    }

    /// Resolve each assigned partition's start offset — the committed position, the earliest
    /// or latest offset, an offset for a time, or one given — and assign exactly that, so the
    /// stream knows where it stands before it reads anything. For bounded reads, also fix each
    /// partition's end; one that starts at its end is done at once.
    fn prepare_assignment(&self, consumer: &Kafka, tpl: &mut TopicPartitionList) -> Result<()> {
        let partitions = tpl
            .elements()
            .iter()
            .map(|e| (e.topic().to_owned(), e.partition()))
            .collect::<Vec<_>>();
        let starts = match &self.start {
            Start::Time(ms) => offsets_for_time(consumer, &partitions, *ms)?,
            _ => HashMap::new(),
        };
        let ends = match self.until {
            Until::Time(ms) => offsets_for_time(consumer, &partitions, ms)?,
            Until::Forever | Until::End => HashMap::new(),
        };
        let committed = match &self.start {
            Start::Committed | Start::Offsets(_) if self.uses_group => {
                committed_offsets(consumer, tpl)?
            }
            _ => HashMap::new(),
        };
        let mut states = Vec::with_capacity(partitions.len());
        for (topic, partition) in partitions {
            let key = (topic.clone(), partition);
            let (low, high) = consumer.fetch_watermarks(&topic, partition, REQUEST_TIMEOUT)?;
            let requested = match &self.start {
                Start::Committed => None,
                Start::Earliest => Some(Offset::Beginning),
                Start::Latest => Some(Offset::End),
                Start::Time(_) => starts.get(&key).copied(),
                Start::Offsets(offsets) => offsets.get(&key).map(|o| Offset::Offset(*o)),
            };
            let start = match requested {
                Some(Offset::Beginning) => low,
                Some(Offset::End) => high,
                Some(Offset::Offset(offset)) => offset,
                _ => match committed.get(&key) {
                    Some(&offset) => offset,
                    None if self.reset_to_latest => high,
                    None => low,
                },
            }
            // A position deleted by retention reads from the oldest message still there.
            .clamp(low, high.max(low));
            tpl.set_partition_offset(&topic, partition, Offset::Offset(start))?;
            let mut state = PartitionState {
                start: Some(start),
                ..PartitionState::default()
            };
            if self.until != Until::Forever {
                let end = match ends.get(&key) {
                    Some(Offset::Offset(end)) => *end,
                    _ => high,
                };
                state.end = Some(end);
                state.done = start >= end;
            }
            states.push((topic, partition, state));
        }
        self.positions.assign(states);
        Ok(())
    }

    /// Commit what was finished on revoked partitions before letting them go. When the
    /// assignment was lost (the session expired, e.g. during a broker outage) the group has
    /// moved on and a commit can only fail; either way a failed commit only means those
    /// changes are delivered again, so it is counted and logged, not fatal.
    fn commit_revoked(&self, consumer: &Kafka, tpl: &TopicPartitionList) -> Result<()> {
        let revoked = tpl
            .elements()
            .iter()
            .map(|e| (e.topic().to_owned(), e.partition()))
            .collect::<Vec<_>>();
        let uncommitted = self
            .positions
            .revoke(revoked.iter().map(|(t, p)| (t.as_str(), *p)));
        if self.uses_group && !consumer.assignment_lost() {
            if let Err(error) = commit(consumer, &self.positions, uncommitted) {
                log::warn!("commit before a rebalance failed; those changes will be delivered again: {error}");
            }
        }
        Ok(())
    }
}

/// For each partition, the first offset at or after `ms`, or `Offset::End` if none.
fn offsets_for_time(
    consumer: &Kafka,
    partitions: &[(String, i32)],
    ms: i64,
) -> Result<HashMap<(String, i32), Offset>> {
    let mut query = TopicPartitionList::new();
    for (topic, partition) in partitions {
        query.add_partition_offset(topic, *partition, Offset::Offset(ms))?;
    }
    let found = consumer.offsets_for_times(query, REQUEST_TIMEOUT)?;
    Ok(found
        .elements()
        .iter()
        .map(|e| {
            let offset = match e.offset() {
                Offset::Offset(o) if o >= 0 => Offset::Offset(o),
                _ => Offset::End,
            };
            ((e.topic().to_owned(), e.partition()), offset)
        })
        .collect())
}

/// The group's committed positions of these partitions (partitions without one are absent).
fn committed_offsets(
    consumer: &Kafka,
    tpl: &TopicPartitionList,
) -> Result<HashMap<(String, i32), i64>> {
    let committed = consumer.committed_offsets(tpl.clone(), REQUEST_TIMEOUT)?;
    Ok(committed
        .elements()
        .iter()
        .filter_map(|e| match e.offset() {
            Offset::Offset(offset) if offset >= 0 => {
                Some(((e.topic().to_owned(), e.partition()), offset))
            }
            _ => None,
        })
        .collect())
}

/// Commit finished positions synchronously and record them.
fn commit(
    consumer: &Kafka,
    positions: &Positions,
    uncommitted: Vec<(String, i32, i64, u64)>,
) -> Result<()> {
    if uncommitted.is_empty() {
        return Ok(());
    }
    let mut tpl = TopicPartitionList::new();
    for (topic, partition, offset, _) in &uncommitted {
        tpl.add_partition_offset(topic, *partition, Offset::Offset(*offset))?;
    }
    match consumer.commit(&tpl, CommitMode::Sync) {
        Ok(()) => {
            for (topic, partition, offset, changes) in uncommitted {
                positions.committed(&topic, partition, offset, changes);
            }
            Ok(())
        }
        Err(error) => {
            positions
                .counters
                .commit_failures
                .fetch_add(1, Ordering::Relaxed);
            Err(error.into())
        }
    }
}

/// What the application side of a stream holds between calls.
#[derive(Default)]
struct Delivery {
    /// Fetched items not yet handed out, each with the generation it was fetched in.
    buffered: VecDeque<(Buffered, u64)>,
    /// What was handed out and not yet finished, in the order handed out, with fetch
    /// generations: in auto mode the change (or batch) handed out last, finished when the next
    /// is asked for; with manual commits everything since the last `commit()`. Only the last
    /// position of each run of one partition is kept (see [`hand_out`]).
    delivered: Vec<(Position, u64)>,
    /// For progress: how far the application has been handed each partition (next offset).
    handed_out_to: Option<HashMap<(Arc<str>, i32), i64>>,
    /// A batch being filled across calls of `next_batch`, and when its first change came.
    filling: Vec<Change>,
    filling_since: Option<Instant>,
    dead_letters: Vec<DeadLetter>,
    /// Set once the stream failed or ended; returned again on every later call.
    terminal: Option<Terminal>,
}

/// Note `position` as handed out and unfinished. Consecutive positions of one partition
/// collapse into the last: finishing it finishes the run, and `commit(change)` of a change
/// inside the run finds the run by its partition and offset.
fn hand_out(delivery: &mut Delivery, position: &Position, generation: u64) {
    if let Some(progress) = &mut delivery.handed_out_to {
        progress.insert(
            (position.topic.clone(), position.partition),
            position.offset + 1,
        );
    }
    if let Some((last, last_generation)) = delivery.delivered.last_mut() {
        if last.partition == position.partition
            && *last_generation == generation
            && last.topic == position.topic
        {
            last.clone_from(position);
            return;
        }
    }
    delivery.delivered.push((position.clone(), generation));
}

/// What a stream knew when it was closed, for `positions()` and `lag()` afterwards.
struct Closed {
    positions: HashMap<(String, i32), i64>,
    lag: Option<HashMap<(String, i32), i64>>,
}

/// How a stream finished.
enum Terminal {
    /// A bounded read ended with the assignment at `generation`: a rebalance since then may
    /// have handed this member partitions to read, and the fetch thread reads on. `None` once
    /// the application has been told (or the fetch thread is gone): final.
    Ended {
        generation: Option<u64>,
    },
    Failed(Error),
}

/// A stream of changes from Kafka. Every method takes `&self`, so one stream can be shared by
/// a blocking iterator and an async one.
pub struct ChangeConsumer {
    consumer: Arc<Kafka>,
    positions: Arc<Positions>,
    receiver: tokio::sync::Mutex<mpsc::UnboundedReceiver<Fetched>>,
    delivery: Mutex<Delivery>,
    read_ahead: Arc<ReadAhead>,
    config: StreamConfig,
    stop: Arc<AtomicBool>,
    fetch_thread: Mutex<Option<JoinHandle<()>>>,
    /// The process that opened the stream: a forked child has none of its threads.
    opened_in: u32,
    closed: Mutex<Option<Closed>>,
}

/// What taking the next buffered item gave.
enum Taken {
    Change(Box<Change>),
    End,
    Failed(Error),
    /// Nothing buffered: receive more.
    Empty,
}

impl ChangeConsumer {
    /// Connect and start fetching.
    pub fn start(config: StreamConfig) -> Result<ChangeConsumer> {
        if config.topics.is_empty() {
            return Err(Error::Config("no topics given".into()));
        }
        if config.group_id.is_none() && config.start == Start::Committed {
            return Err(Error::Config(
                "start=\"committed\" needs a group_id (without a group nothing is committed)"
                    .into(),
            ));
        }
        let registry = Registry::new(
            &config.schema_registry_url,
            &config.registry,
            config.registry_timeout,
        )?;
        let positions = Arc::new(Positions::default());
        let context = StreamContext {
            positions: positions.clone(),
            start: config.start.clone(),
            until: config.until,
            uses_group: config.group_id.is_some(),
            reset_to_latest: config.kafka.iter().any(|(key, value)| {
                key == "auto.offset.reset" && matches!(value.as_str(), "latest" | "largest" | "end")
            }),
            failure: Mutex::new(None),
        };
        let consumer: Arc<Kafka> = Arc::new(client_config(&config).create_with_context(context)?);
        if config.group_id.is_some() {
            consumer.subscribe(&config.topics.iter().map(String::as_str).collect::<Vec<_>>())?;
        } else {
            let mut assignment = all_partitions(&consumer, &config.topics)?;
            consumer
                .context()
                .prepare_assignment(&consumer, &mut assignment)?;
            consumer.assign(&assignment)?;
        }
        // Unbounded in items, bounded in bytes: the fetch thread pauses fetching while the
        // items sent and not yet taken hold `max_buffer_bytes / 2` or more.
        let (sender, receiver) = mpsc::unbounded_channel();
        let stop = Arc::new(AtomicBool::new(false));
        let read_ahead = Arc::new(ReadAhead::new(config.max_buffer_bytes));
        let fetch = Fetch {
            consumer: consumer.clone(),
            positions: positions.clone(),
            decoder: ChangeDecoder::new(registry, config.decoder.clone()),
            sender,
            stop: stop.clone(),
            bounded: config.until != Until::Forever,
            auto_commit: config.group_id.is_some() && config.commit == CommitPolicy::Auto,
            commit_interval: config.commit_interval,
            on_decode_error: config.on_decode_error,
            read_ahead: read_ahead.clone(),
            batch_bytes: 0,
            paused_for_room: false,
            fetched_to: HashMap::new(),
        };
        let fetch_thread = std::thread::Builder::new()
            .name("changestream-fetch".into())
            .spawn(move || fetch.run())
            .map_err(|e| Error::Config(format!("cannot start the fetch thread: {e}")))?;
        Ok(ChangeConsumer {
            consumer,
            positions,
            receiver: tokio::sync::Mutex::new(receiver),
            delivery: Mutex::new(Delivery {
                handed_out_to: config.track_progress.then(HashMap::new),
                ..Delivery::default()
            }),
            read_ahead,
            config,
            stop,
            fetch_thread: Mutex::new(Some(fetch_thread)),
            opened_in: std::process::id(),
            closed: Mutex::new(None),
        })
    }

    fn delivery(&self) -> std::sync::MutexGuard<'_, Delivery> {
        self.delivery.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The next change, waiting at most `wait`. Asking for the next change finishes the one
    /// handed out before it (unless commits are manual).
    pub fn next(&self, wait: Duration) -> Result<Next> {
        self.check_process()?;
        self.finish_on_next();
        let deadline = Instant::now() + wait;
        loop {
            match self.take() {
                Taken::Change(change) => return Ok(Next::Change(change)),
                Taken::End => return Ok(Next::End),
                Taken::Failed(error) => return Err(error),
                Taken::Empty => {}
            }
            let left = deadline.saturating_duration_since(Instant::now());
            let received = runtime().block_on(async {
                let mut receiver = self.receiver.lock().await;
                tokio::time::timeout(left, receiver.recv()).await
            });
            match received {
                Err(_elapsed) => return Ok(Next::Pending),
                Ok(fetched) => self.absorb(fetched),
            }
        }
    }

    /// The next change without waiting, if one is already fetched; `Ok(None)` means the caller
    /// must wait with [`ChangeConsumer::next_async`].
    pub fn next_ready(&self) -> Result<Option<Next>> {
        self.check_process()?;
        self.finish_on_next();
        Ok(match self.take() {
            Taken::Change(change) => Some(Next::Change(change)),
            Taken::End => Some(Next::End),
            Taken::Failed(error) => return Err(error),
            Taken::Empty => None,
        })
    }

    /// Wait at most `wait` for something to take (a change, the end, a failure), without
    /// taking it: the async iterators wait here on a runtime thread and take on the event
    /// loop's, so a cancelled wait loses nothing.
    pub fn wait_ready(&self, wait: Duration) -> Result<()> {
        self.check_process()?;
        {
            let delivery = self.delivery();
            if !delivery.buffered.is_empty() || delivery.terminal.is_some() {
                return Ok(());
            }
        }
        let received = runtime().block_on(async {
            let mut receiver = self.receiver.lock().await;
            tokio::time::timeout(wait, receiver.recv()).await
        });
        if let Ok(fetched) = received {
            self.absorb(fetched);
        }
        Ok(())
    }

    /// Whether the stream was opened in this process (not in a parent before a `fork()`).
    fn check_process(&self) -> Result<()> {
        if std::process::id() == self.opened_in {
            Ok(())
        } else {
            Err(Error::Forked {
                opened_in: self.opened_in,
            })
        }
    }

    /// Take the front item out of the buffer, freeing its bytes of the read-ahead budget.
    fn pop_buffered(&self, delivery: &mut Delivery) -> Option<(Item, u64)> {
        let (buffered, generation) = delivery.buffered.pop_front()?;
        self.read_ahead.free(buffered.bytes);
        Some((buffered.item, generation))
    }

    fn finish_on_next(&self) {
        if self.config.commit == CommitPolicy::Auto {
            self.finish_delivered();
        }
    }

    /// Hand out the next buffered change (dropping stale ones, setting dead letters aside).
    fn take(&self) -> Taken {
        let mut delivery = self.delivery();
        while let Some((item, generation)) = self.pop_buffered(&mut delivery) {
            let position = item.position();
            if !self
                .positions
                .is_current(&position.topic, position.partition, generation)
            {
                self.positions
                    .counters
                    .dropped_on_revoke
                    .fetch_add(1, Ordering::Relaxed);
                continue;
            }
            match item {
                Item::Change(change) => {
                    hand_out(&mut delivery, &change.position, generation);
                    self.positions
                        .counters
                        .delivered
                        .fetch_add(1, Ordering::Relaxed);
                    return Taken::Change(Box::new(change));
                }
                other => self.set_aside(&mut delivery, other, generation),
            }
        }
        match self.terminal(&mut delivery) {
            Some(Ok(())) => Taken::End,
            Some(Err(error)) => Taken::Failed(error),
            None => Taken::Empty,
        }
    }

    /// Whether the stream ended or failed, once nothing is buffered. An end reached before
    /// the latest rebalance is dropped: the fetch thread reads the new assignment and sends
    /// another end.
    fn terminal(&self, delivery: &mut Delivery) -> Option<std::result::Result<(), Error>> {
        match &mut delivery.terminal {
            Some(Terminal::Ended {
                generation: Some(generation),
            }) if *generation != self.positions.generation() => {
                delivery.terminal = None;
                None
            }
            Some(Terminal::Ended { generation }) => {
                *generation = None;
                Some(Ok(()))
            }
            Some(Terminal::Failed(error)) => Some(Err(error.clone())),
            None => None,
        }
    }

    /// A dead letter goes to the application's list and a passed message nowhere; either
    /// way the application is done with it as far as positions go — at once when everything
    /// handed out before it is finished, else together with that.
    fn set_aside(&self, delivery: &mut Delivery, item: Item, generation: u64) {
        let position = item.position();
        if delivery.delivered.is_empty() {
            if let Some(progress) = &mut delivery.handed_out_to {
                progress.insert(
                    (position.topic.clone(), position.partition),
                    position.offset + 1,
                );
            }
            self.positions.finish(
                &position.topic,
                position.partition,
                position.offset,
                generation,
            );
        } else {
            hand_out(delivery, position, generation);
        }
        if let Item::DeadLetter(dead) = item {
            delivery.dead_letters.push(dead);
        }
    }

    /// Put what the fetch thread sent into the buffer.
    fn absorb(&self, fetched: Option<Fetched>) {
        let mut delivery = self.delivery();
        match fetched {
            Some(Fetched::Items { generation, items }) => delivery
                .buffered
                .extend(items.into_iter().map(|buffered| (buffered, generation))),
            Some(Fetched::Failed(error)) => delivery.terminal = Some(Terminal::Failed(error)),
            Some(Fetched::End { generation }) => {
                delivery.terminal = Some(Terminal::Ended {
                    generation: Some(generation),
                });
            }
            None => delivery.terminal = Some(Terminal::Ended { generation: None }),
        }
    }

    /// The application is done with the changes handed out last.
    fn finish_delivered(&self) {
        let delivered = std::mem::take(&mut self.delivery().delivered);
        for (position, generation) in delivered {
            self.positions.finish(
                &position.topic,
                position.partition,
                position.offset,
                generation,
            );
        }
    }

    /// The next batch of changes of one table under one value schema: at most `max_rows`,
    /// handed over when full, when the next change belongs elsewhere, when `max_wait` has
    /// passed since its first change, or when a bounded stream ends. Waits at most `slice` per
    /// call; a batch still filling is kept for the next call. Asking for the next batch
    /// finishes the previous one.
    pub fn next_batch(
        &self,
        max_rows: usize,
        max_wait: Duration,
        slice: Duration,
    ) -> Result<NextBatch> {
        self.check_process()?;
        let max_rows = max_rows.max(1);
        if self.delivery().filling.is_empty() {
            self.finish_on_next();
        }
        let slice_ends = Instant::now() + slice;
        loop {
            let ended = {
                let mut delivery = self.delivery();
                let (ready, ended) = self.fill(&mut delivery, max_rows)?;
                let waited = delivery
                    .filling_since
                    .is_some_and(|since| since.elapsed() >= max_wait);
                if ready || ((waited || ended) && !delivery.filling.is_empty()) {
                    delivery.filling_since = None;
                    let batch = std::mem::take(&mut delivery.filling);
                    return Ok(NextBatch::Batch(batch));
                }
                ended
            };
            if ended {
                return Ok(NextBatch::End);
            }
            let until = match self.delivery().filling_since {
                Some(since) => (since + max_wait).min(slice_ends),
                None => slice_ends,
            };
            let left = until.saturating_duration_since(Instant::now());
            let received = runtime().block_on(async {
                let mut receiver = self.receiver.lock().await;
                tokio::time::timeout(left, receiver.recv()).await
            });
            match received {
                Ok(fetched) => self.absorb(fetched),
                Err(_elapsed) if Instant::now() >= slice_ends => return Ok(NextBatch::Pending),
                Err(_elapsed) => {}
            }
        }
    }

    /// Move buffered changes into the batch being filled. Returns whether the batch is ready
    /// (full, or the next change belongs to another batch) and whether the stream ended.
    fn fill(&self, delivery: &mut Delivery, max_rows: usize) -> Result<(bool, bool)> {
        let same_batch = |a: &Change, b: &Change| {
            a.table == b.table
                && a.value_schema.as_ref().map(|(id, _)| id)
                    == b.value_schema.as_ref().map(|(id, _)| id)
        };
        while delivery.filling.len() < max_rows {
            if let (Some(first), Some((next, _))) =
                (delivery.filling.first(), delivery.buffered.front())
            {
                if matches!(&next.item, Item::Change(next) if !same_batch(first, next)) {
                    return Ok((true, false));
                }
            }
            let Some((item, generation)) = self.pop_buffered(delivery) else {
                return match self.terminal(delivery) {
                    Some(Ok(())) => Ok((false, true)),
                    Some(Err(error)) if delivery.filling.is_empty() => Err(error),
                    // Hand over what came before the failure first.
                    Some(Err(_)) => Ok((true, false)),
                    None => Ok((false, false)),
                };
            };
            let position = item.position();
            if !self
                .positions
                .is_current(&position.topic, position.partition, generation)
            {
                self.positions
                    .counters
                    .dropped_on_revoke
                    .fetch_add(1, Ordering::Relaxed);
                continue;
            }
            match item {
                Item::Change(change) => {
                    hand_out(delivery, &change.position, generation);
                    self.positions
                        .counters
                        .delivered
                        .fetch_add(1, Ordering::Relaxed);
                    delivery.filling_since.get_or_insert_with(Instant::now);
                    delivery.filling.push(change);
                }
                other => self.set_aside(delivery, other, generation),
            }
        }
        Ok((true, false))
    }

    /// Finish what was handed out — everything, or with `through` everything up to and
    /// including that change on its partition and what was handed out before it on the
    /// others — and commit all finished positions now.
    pub fn commit(&self, through: Option<&Position>) -> Result<()> {
        self.check_process()?;
        match through {
            Some(position) => self.finish_through(position),
            None => self.finish_delivered(),
        }
        if self.config.group_id.is_none() {
            return Ok(());
        }
        commit(
            &self.consumer,
            &self.positions,
            self.positions.uncommitted(),
        )
    }

    /// Finish `position`, and what was handed out before it.
    fn finish_through(&self, position: &Position) {
        let mut delivery = self.delivery();
        // The run holding the change: the first record of its partition at or past it.
        let run = delivery.delivered.iter().position(|(p, _)| {
            p.topic == position.topic
                && p.partition == position.partition
                && p.offset >= position.offset
        });
        let (before, generation) = match run {
            Some(index) => {
                let before = delivery.delivered.drain(..index).collect::<Vec<_>>();
                let (end_of_run, generation) = &delivery.delivered[0];
                let generation = *generation;
                if end_of_run.offset == position.offset {
                    delivery.delivered.remove(0);
                }
                (before, generation)
            }
            // Finished already (finishing again changes nothing), or handed out before a
            // rebalance that gave the partition back.
            None => (Vec::new(), self.positions.generation()),
        };
        drop(delivery);
        for (p, g) in before {
            self.positions.finish(&p.topic, p.partition, p.offset, g);
        }
        self.positions.finish(
            &position.topic,
            position.partition,
            position.offset,
            generation,
        );
    }

    /// Next offsets after what the application finished, by partition: pass them back as
    /// `Start::Offsets` to resume exactly there.
    pub fn positions(&self) -> HashMap<(String, i32), i64> {
        match &*self.closed.lock().unwrap_or_else(|e| e.into_inner()) {
            Some(closed) => closed.positions.clone(),
            None => self.positions.finished(),
        }
    }

    /// Messages each owned partition holds beyond what the application finished.
    pub fn lag(&self) -> Result<HashMap<(String, i32), i64>> {
        if let Some(closed) = &*self.closed.lock().unwrap_or_else(|e| e.into_inner()) {
            return closed.lag.clone().ok_or(Error::Closed);
        }
        self.check_process()?;
        self.measure_lag(REQUEST_TIMEOUT)
    }

    /// Wait at most `wait` for the stream's first assignment (a group's first rebalance);
    /// whether it has one.
    pub fn wait_assigned(&self, wait: Duration) -> bool {
        let deadline = Instant::now() + wait;
        while self.positions.generation() == 0 {
            if Instant::now() >= deadline || self.fetch_thread_gone() {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        true
    }

    fn fetch_thread_gone(&self) -> bool {
        self.fetch_thread
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .is_none_or(JoinHandle::is_finished)
    }

    fn measure_lag(&self, timeout: Duration) -> Result<HashMap<(String, i32), i64>> {
        let finished = self.positions.finished();
        let owned = {
            let table = self.positions.lock();
            table
                .iter()
                .flat_map(|(t, ps)| ps.keys().map(move |p| (t.clone(), *p)))
                .collect::<Vec<_>>()
        };
        let positions = self.consumer.position()?;
        let mut lag = HashMap::new();
        for (topic, partition) in owned {
            let (low, high) = self.consumer.fetch_watermarks(&topic, partition, timeout)?;
            let at = finished
                .get(&(topic.clone(), partition))
                .copied()
                .or_else(|| {
                    match positions
                        .find_partition(&topic, partition)
                        .map(|e| e.offset())
                    {
                        Some(Offset::Offset(o)) => Some(o),
                        _ => None,
                    }
                });
            lag.insert((topic, partition), high - at.unwrap_or(low).max(low));
        }
        Ok(lag)
    }

    /// Bounded reads with progress tracked: (messages handed out or passed, messages between
    /// each owned partition's start and its end). None when unbounded or not tracked.
    pub fn progress(&self) -> Option<(u64, u64)> {
        if self.config.until == Until::Forever {
            return None;
        }
        let handed_out_to: HashMap<(String, i32), i64> = self
            .delivery()
            .handed_out_to
            .as_ref()?
            .iter()
            .map(|((topic, partition), to)| ((topic.to_string(), *partition), *to))
            .collect();
        let (mut done, mut total) = (0u64, 0u64);
        for (topic, partitions) in self.positions.lock().iter() {
            for (partition, state) in partitions {
                let (Some(start), Some(end)) = (state.start, state.end) else {
                    continue;
                };
                let at = handed_out_to
                    .get(&(topic.clone(), *partition))
                    .copied()
                    .unwrap_or(start)
                    .clamp(start, end.max(start));
                done += u64::try_from(at - start).unwrap_or(0);
                total += u64::try_from(end - start).unwrap_or(0);
            }
        }
        Some((done, total))
    }

    /// The stream's counters.
    pub fn stats(&self) -> Vec<(&'static str, u64)> {
        let c = &self.positions.counters;
        let read = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        vec![
            ("delivered", read(&c.delivered)),
            ("skipped", read(&c.skipped)),
            ("dead_lettered", read(&c.dead_lettered)),
            ("committed", read(&c.committed)),
            ("commit_failures", read(&c.commit_failures)),
            ("dropped_on_revoke", read(&c.dropped_on_revoke)),
            ("rebalances", read(&c.rebalances)),
            ("broker_disconnects", read(&c.broker_disconnects)),
            ("buffered_bytes", self.read_ahead.waiting() as u64),
            ("buffer_full", read(&self.read_ahead.pauses)),
        ]
    }

    /// Take the messages set aside under `OnDecodeError::DeadLetter` so far.
    pub fn take_dead_letters(&self) -> Vec<DeadLetter> {
        std::mem::take(&mut self.delivery().dead_letters)
    }

    /// Stop fetching, commit what the application finished (unless `commit` is false: an
    /// exception is on its way out), and leave the group. Idempotent. `positions()` and
    /// `lag()` keep answering with what they said at this moment.
    pub fn close(&self, commit_finished: bool) -> Result<()> {
        self.check_process()?;
        let thread = self
            .fetch_thread
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        let Some(thread) = thread else {
            return Ok(());
        };
        self.stop.store(true, Ordering::Relaxed);
        // The fetch thread stops within a poll slice, which also ends any pending receive.
        runtime().block_on(async { self.receiver.lock().await.close() });
        let _ = thread.join();
        let mut outcome = Ok(());
        if self.config.group_id.is_some() && commit_finished {
            let committed = commit(
                &self.consumer,
                &self.positions,
                self.positions.uncommitted(),
            );
            // After the stream failed, its own error is the one that matters.
            outcome = match committed {
                Err(error) if matches!(self.delivery().terminal, Some(Terminal::Failed(_))) => {
                    log::warn!("commit on close failed: {error}");
                    Ok(())
                }
                other => other,
            };
        }
        // Where the application stands, kept before leaving the group forgets the partitions.
        let positions = match (commit_finished, self.config.group_id.is_some()) {
            // Without the commit, a group resumes from what it committed.
            (false, true) => self.committed_positions(),
            _ => self.positions.finished(),
        };
        let lag = self.measure_lag(CLOSE_LAG_TIMEOUT).ok();
        *self.closed.lock().unwrap_or_else(|e| e.into_inner()) = Some(Closed { positions, lag });
        if self.config.group_id.is_some() {
            // Leaving the group runs the revoke callback here, which commits nothing new
            // (or, without the commit, nothing at all).
            self.positions.forget_finished();
            self.consumer.unsubscribe();
        }
        outcome
    }

    /// Where the group's committed positions stand on every owned partition.
    fn committed_positions(&self) -> HashMap<(String, i32), i64> {
        let table = self.positions.lock();
        table
            .iter()
            .flat_map(|(topic, partitions)| {
                partitions.iter().filter_map(move |(partition, state)| {
                    state
                        .committed
                        .or(state.start)
                        .map(|c| ((topic.clone(), *partition), c))
                })
            })
            .collect()
    }
}

impl Drop for ChangeConsumer {
    fn drop(&mut self) {
        if self.check_process().is_err() {
            // A forked child: the client's threads live in the parent, and destroying it here
            // would wait for them forever. Leak it.
            std::mem::forget(self.consumer.clone());
            if let Some(thread) = self
                .fetch_thread
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take()
            {
                std::mem::forget(thread);
            }
            return;
        }
        if let Err(error) = self.close(true) {
            log::warn!("closing the stream: {error}");
        }
    }
}

fn client_config(config: &StreamConfig) -> ClientConfig {
    let mut client = ClientConfig::new();
    client
        .set("bootstrap.servers", &config.bootstrap_servers)
        .set("client.id", "changestream")
        .set("enable.partition.eof", "true")
        // librdkafka waits up to a second before refilling an emptied prefetch queue; the
        // read-ahead is bounded in bytes anyway, so refill at once.
        .set("fetch.queue.backoff.ms", "10")
        // Half the read-ahead budget for raw messages (librdkafka also keeps a single fetch
        // response within it, unless `fetch.max.bytes` is set).
        .set(
            "queued.max.messages.kbytes",
            (config.max_buffer_bytes / 2 / 1024).max(1).to_string(),
        )
        // We commit ourselves, only what the application finished.
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        // Where a group has no committed position: from the start, so nothing is skipped.
        .set("auto.offset.reset", "earliest")
        // librdkafka's assign() needs a group id even when no group is joined; nothing is
        // committed under it then.
        .set(
            "group.id",
            config
                .group_id
                .as_deref()
                .unwrap_or("changestream-unmanaged"),
        );
    for (key, value) in &config.kafka {
        client.set(key, value);
    }
    client
}

/// Without a group: every partition of every topic. Metadata is asked for in short slices,
/// so an authentication or TLS failure (reported through the context) ends the wait at once
/// instead of after the whole request timeout.
fn all_partitions(consumer: &Kafka, topics: &[String]) -> Result<TopicPartitionList> {
    let mut assignment = TopicPartitionList::new();
    for topic in topics {
        let started = Instant::now();
        let metadata = loop {
            match consumer.fetch_metadata(Some(topic), METADATA_SLICE) {
                Ok(metadata) => break metadata,
                Err(error) => {
                    // Serve librdkafka's events, so the context learns why we cannot connect.
                    let _ = consumer.poll(Duration::ZERO);
                    if let Some(failure) = consumer.context().take_failure() {
                        return Err(failure);
                    }
                    if started.elapsed() >= REQUEST_TIMEOUT {
                        return Err(error.into());
                    }
                }
            }
        };
        let partitions = metadata
            .topics()
            .first()
            .filter(|t| t.error().is_none())
            .map(|t| t.partitions().iter().map(|p| p.id()).collect::<Vec<_>>())
            .unwrap_or_default();
        if partitions.is_empty() {
            return Err(Error::Config(format!("topic {topic:?} does not exist")));
        }
        for partition in partitions {
            assignment.add_partition(topic, partition);
        }
    }
    Ok(assignment)
}

/// The fetch thread's state.
struct Fetch {
    consumer: Arc<Kafka>,
    positions: Arc<Positions>,
    decoder: ChangeDecoder,
    sender: mpsc::UnboundedSender<Fetched>,
    stop: Arc<AtomicBool>,
    bounded: bool,
    auto_commit: bool,
    commit_interval: Duration,
    on_decode_error: OnDecodeError,
    read_ahead: Arc<ReadAhead>,
    /// Bytes of the batch being filled.
    batch_bytes: usize,
    /// Whether fetching is paused because the application has a full read-ahead waiting.
    paused_for_room: bool,
    /// Next offset after the last message taken from each partition in this generation.
    fetched_to: HashMap<String, HashMap<i32, i64>>,
}

impl Fetch {
    fn run(mut self) {
        let consumer = self.consumer.clone();
        let mut batch = Vec::new();
        let mut generation = self.positions.generation();
        let mut last_commit = Instant::now();
        let mut ended = false;
        loop {
            if self.stop.load(Ordering::Relaxed) {
                return;
            }
            if let Some(error) = consumer.context().take_failure() {
                self.fail(&mut batch, generation, error);
                return;
            }
            if self.positions.generation() != generation {
                // A rebalance ran inside the last poll: drop what was fetched for partitions
                // revoked since, and label the rest with the new generation.
                batch.retain(|buffered: &Buffered| {
                    let p = buffered.item.position();
                    self.positions.is_current(&p.topic, p.partition, generation)
                });
                self.batch_bytes = batch.iter().map(|b| b.bytes).sum();
                generation = self.positions.generation();
                self.fetched_to.clear();
                // An end sent before is for the assignment before (the application side
                // drops it now): read what the new assignment holds, then end again.
                ended = false;
                if self.paused_for_room {
                    // Partitions assigned by the rebalance start unpaused.
                    pause_all(&consumer);
                } else {
                    // librdkafka keeps a partition paused across its revocation and a later
                    // assignment: one paused when this member had read everything may come
                    // back with more to read.
                    self.resume_remaining();
                }
            }
            if !ended {
                self.apply_backpressure();
            }
            if self.bounded && !ended && self.positions.all_done() {
                if !self.send(&mut batch, generation)
                    || self.sender.send(Fetched::End { generation }).is_err()
                {
                    return;
                }
                // The read is over, but the stream is still a group member until it is
                // closed: keep serving rebalances and committing what the application
                // finishes, with nothing fetched.
                ended = true;
                pause_all(&consumer);
            }
            if self.auto_commit && last_commit.elapsed() >= self.commit_interval {
                last_commit = Instant::now();
                match commit(&consumer, &self.positions, self.positions.uncommitted()) {
                    Ok(()) => {}
                    // Refused for good (the group's authorization revoked, say).
                    Err(error) if !error.is_retriable() => {
                        self.fail(&mut batch, generation, error);
                        return;
                    }
                    Err(error) => {
                        log::warn!("periodic commit failed (retried at the next interval): {error}")
                    }
                }
            }
            let wait = if self.paused_for_room {
                // Only librdkafka's events to serve: wait for room instead.
                self.read_ahead.wait_drained(POLL_SLICE);
                Duration::ZERO
            } else if batch.is_empty() {
                POLL_SLICE
            } else {
                Duration::ZERO
            };
            match consumer.poll(wait) {
                None => {
                    if !ended {
                        self.pass_gaps(&mut batch);
                    }
                    if !self.send(&mut batch, generation) {
                        return;
                    }
                    self.check_positions();
                }
                Some(Ok(_)) if ended => {}
                Some(Ok(message)) => {
                    if let Err(error) = self.take(&message, &mut batch) {
                        self.fail(&mut batch, generation, error);
                        return;
                    }
                }
                Some(Err(RdKafkaError::PartitionEOF(_))) => {
                    if !ended {
                        self.pass_gaps(&mut batch);
                    }
                    self.check_positions();
                }
                Some(Err(error)) if consumer.context().refuses_unused_group(&error) => {}
                Some(Err(error)) => {
                    // The context's error callback logged connection failures already.
                    let reported_by_context = matches!(
                        error.rdkafka_error_code(),
                        Some(
                            RDKafkaErrorCode::BrokerTransportFailure
                                | RDKafkaErrorCode::AllBrokersDown
                        )
                    );
                    let context = consumer.context();
                    // librdkafka reports an error both to the context (with its reason) and
                    // here (without): prefer the one with the reason. A fatal error, whatever
                    // its code, leaves the client unusable.
                    let error = context
                        .take_failure()
                        .or_else(|| {
                            consumer
                                .client()
                                .fatal_error()
                                .map(|(code, reason)| Error::Kafka {
                                    reason: format!("fatal: {code}: {reason}"),
                                    retriable: false,
                                })
                        })
                        .unwrap_or_else(|| Error::from(error));
                    if !error.is_retriable() {
                        self.fail(&mut batch, generation, error);
                        return;
                    }
                    if reported_by_context {
                        log::debug!("{error}");
                    } else {
                        log::warn!("{error}");
                    }
                }
            }
            let full = batch.len() >= BATCH_SIZE || self.batch_bytes >= self.read_ahead.room / 4;
            if full && !self.send(&mut batch, generation) {
                return;
            }
        }
    }

    /// Pause fetching while the application has `room` bytes of changes waiting, and resume
    /// once it has taken half of them. Paused partitions keep their place: librdkafka drops
    /// what it prefetched for them and fetches it again on resume.
    fn apply_backpressure(&mut self) {
        if !self.paused_for_room && self.read_ahead.is_full() {
            pause_all(&self.consumer);
            self.paused_for_room = true;
            self.read_ahead.pauses.fetch_add(1, Ordering::Relaxed);
        } else if self.paused_for_room && self.read_ahead.is_drained() {
            self.paused_for_room = false;
            self.resume_remaining();
        }
    }

    /// Resume fetching the assigned partitions, except those a bounded read is done with.
    fn resume_remaining(&self) {
        let Ok(assignment) = self.consumer.assignment() else {
            return;
        };
        let remaining = self.positions.remaining();
        let mut resume = TopicPartitionList::new();
        for element in assignment.elements() {
            let (topic, partition) = (element.topic(), element.partition());
            if !self.bounded
                || remaining
                    .iter()
                    .any(|(t, p, _)| t == topic && *p == partition)
            {
                resume.add_partition(topic, partition);
            }
        }
        if resume.count() == 0 {
            return;
        }
        if let Err(error) = self.consumer.resume(&resume) {
            log::warn!("resuming fetching: {error}");
        }
        // A broker thread with nothing to fetch looks at its partitions again only after up
        // to a second; any request to the partitions' leaders wakes it now.
        if resume.set_all_offsets(Offset::End).is_ok() {
            let _ = self.consumer.offsets_for_times(resume, WAKE_TIMEOUT);
        }
    }

    fn push(&mut self, batch: &mut Vec<Buffered>, item: Item) {
        let buffered = Buffered::new(item);
        self.batch_bytes += buffered.bytes;
        batch.push(buffered);
    }

    /// Decode one message into the batch, applying the decode-error policy.
    fn take(&mut self, message: &BorrowedMessage<'_>, batch: &mut Vec<Buffered>) -> Result<()> {
        let (topic, partition, offset) = (message.topic(), message.partition(), message.offset());
        if self.bounded && self.positions.past_end(topic, partition, offset) {
            // Written after the end was fixed: not part of this read.
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition(topic, partition);
            let _ = self.consumer.pause(&tpl);
            return Ok(());
        }
        self.note_fetched(topic, partition, offset + 1);
        let position = || Position {
            topic: topic.into(),
            partition,
            offset,
            timestamp_ms: message.timestamp().to_millis(),
        };
        let (key_schema_header, value_schema_header) = schema_id_headers(message);
        let decoded = self.decoder.decode(&Message {
            topic,
            partition,
            offset,
            timestamp_ms: message.timestamp().to_millis(),
            key: message.key(),
            value: message.payload(),
            key_schema_header,
            value_schema_header,
        });
        match decoded {
            Ok(Some(change)) => self.push(batch, Item::Change(change)),
            // A tombstone not delivered: passed like any message, so positions move past it.
            Ok(None) => self.push(batch, Item::Passed(position())),
            Err(error) => match self.on_decode_error {
                OnDecodeError::Raise => return Err(error),
                OnDecodeError::Skip => {
                    log::warn!("skipping: {error}");
                    self.positions
                        .counters
                        .skipped
                        .fetch_add(1, Ordering::Relaxed);
                    self.push(batch, Item::Passed(position()));
                }
                OnDecodeError::DeadLetter => {
                    self.positions
                        .counters
                        .dead_lettered
                        .fetch_add(1, Ordering::Relaxed);
                    self.push(batch, Item::DeadLetter(dead_letter(message, error)));
                }
            },
        }
        Ok(())
    }

    /// Deliver what came before a failure, then the failure; fetching stops, since going on
    /// would skip the message that failed.
    fn fail(&mut self, batch: &mut Vec<Buffered>, generation: u64, error: Error) {
        if self.send(batch, generation) {
            let _ = self.sender.send(Fetched::Failed(error));
        }
    }

    /// Send the batch (if any), counting its bytes as waiting. False once the channel is
    /// closed.
    fn send(&mut self, batch: &mut Vec<Buffered>, generation: u64) -> bool {
        if batch.is_empty() {
            return true;
        }
        let items = std::mem::take(batch);
        self.read_ahead.add(std::mem::take(&mut self.batch_bytes));
        self.sender
            .send(Fetched::Items { generation, items })
            .is_ok()
    }

    /// Where the consumer's position is past the last message taken from a partition —
    /// transaction markers, aborted transactions or a compacted gap — pass those offsets, so
    /// positions and `lag()` reach the end. Never past a bounded read's end: messages there
    /// were dropped, not passed.
    fn pass_gaps(&mut self, batch: &mut Vec<Buffered>) {
        let Ok(positions) = self.consumer.position() else {
            return;
        };
        let mut gaps = Vec::new();
        {
            let table = self.positions.lock();
            for element in positions.elements() {
                let Offset::Offset(mut at) = element.offset() else {
                    continue;
                };
                let (topic, partition) = (element.topic(), element.partition());
                let Some(state) = table.get(topic).and_then(|t| t.get(&partition)) else {
                    continue;
                };
                if let Some(end) = state.end {
                    at = at.min(end);
                }
                let from = self
                    .fetched_to
                    .get(topic)
                    .and_then(|t| t.get(&partition))
                    .copied()
                    .or(state.start);
                if from.is_some_and(|from| at > from) {
                    gaps.push((topic.to_owned(), partition, at));
                }
            }
        }
        for (topic, partition, at) in gaps {
            self.note_fetched(&topic, partition, at);
            let position = Position {
                topic: topic.into(),
                partition,
                offset: at - 1,
                timestamp_ms: None,
            };
            self.push(batch, Item::Passed(position));
        }
    }

    /// Note how far a partition was taken (next offset); allocates only for a new topic.
    fn note_fetched(&mut self, topic: &str, partition: i32, next: i64) {
        match self.fetched_to.get_mut(topic) {
            Some(partitions) => partitions.insert(partition, next),
            None => self
                .fetched_to
                .entry(topic.to_owned())
                .or_default()
                .insert(partition, next),
        };
    }

    /// Bounded reads: ask librdkafka for the positions of partitions not yet at their end; a
    /// transaction marker or a compacted gap can put the end past the last message.
    fn check_positions(&self) {
        if !self.bounded {
            return;
        }
        let remaining = self.positions.remaining();
        if remaining.is_empty() {
            return;
        }
        let Ok(positions) = self.consumer.position() else {
            return;
        };
        for (topic, partition, _) in remaining {
            if let Some(Offset::Offset(position)) = positions
                .find_partition(&topic, partition)
                .map(|e| e.offset())
            {
                self.positions.reached(&topic, partition, position);
            }
        }
    }
}

/// Stop fetching every assigned partition.
fn pause_all(consumer: &Kafka) {
    if let Ok(assignment) = consumer.assignment() {
        let _ = consumer.pause(&assignment);
    }
}

fn dead_letter(message: &BorrowedMessage<'_>, error: Error) -> DeadLetter {
    DeadLetter {
        position: Position {
            topic: message.topic().into(),
            partition: message.partition(),
            offset: message.offset(),
            timestamp_ms: message.timestamp().to_millis(),
        },
        key: message.key().map(<[u8]>::to_vec),
        value: message.payload().map(<[u8]>::to_vec),
        headers: message
            .headers()
            .map(|headers| {
                headers
                    .iter()
                    .map(|h| (h.key.to_owned(), h.value.map(<[u8]>::to_vec)))
                    .collect()
            })
            .unwrap_or_default(),
        error,
    }
}

/// The `__key_schema_id` and `__value_schema_id` headers, found in one pass (librdkafka
/// parses the headers on every call to `headers()`).
fn schema_id_headers<'a>(message: &'a BorrowedMessage<'_>) -> (Option<&'a [u8]>, Option<&'a [u8]>) {
    let (mut key, mut value) = (None, None);
    if let Some(headers) = message.headers() {
        for header in headers.iter() {
            match header.key {
                "__key_schema_id" => key = header.value,
                "__value_schema_id" => value = header.value,
                _ => {}
            }
        }
    }
    (key, value)
}
