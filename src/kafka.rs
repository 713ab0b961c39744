//! Fetching from Kafka: one consumer per stream, polled on its own thread.
//!
//! The fetch thread polls an rdkafka `BaseConsumer`, decodes each message into a [`Change`] and
//! sends them in small batches through a bounded channel, so decoding runs beside the
//! application and a slow application makes the thread wait rather than memory grow.
//! [`ChangeConsumer::next`] hands changes out one at a time. Positions follow the application:
//! with a consumer group, a change's offset is stored only when the application asks for the
//! next change (it has finished the previous one), and librdkafka commits stored offsets in the
//! background and on close. A change handed out but not finished is never committed.
//!
//! A bounded read (`until = End`) reads the high watermarks once at start and ends when the
//! consumer's position on every partition has reached its mark; positions, not the last offset
//! seen, so transaction markers and compacted gaps end correctly.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::KafkaError as RdKafkaError;
use rdkafka::message::{Headers, Message as _};
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::mpsc;

use crate::change::{Change, ChangeDecoder, Message, Position};
use crate::error::{Error, Result};
use crate::registry::Registry;
use crate::runtime::runtime;

/// How long one poll of librdkafka may block; also bounds how fast the thread notices a stop.
const POLL_SLICE: Duration = Duration::from_millis(100);
/// Most changes sent through the channel at once.
const BATCH_SIZE: usize = 512;
/// Batches the channel holds before the fetch thread waits for the application.
const QUEUE_BATCHES: usize = 16;
/// How long metadata and watermark requests may take.
const METADATA_TIMEOUT: Duration = Duration::from_secs(30);

/// Where a stream starts reading when it has no committed position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// The oldest message still in Kafka.
    Earliest,
    /// Only messages written after the stream starts.
    Latest,
}

/// When a stream ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Until {
    /// Never: follow the topics as they grow.
    Forever,
    /// When every partition has reached the high watermark read at start.
    End,
}

/// Everything needed to open a stream.
#[derive(Debug, Clone)]
pub struct StreamConfig {
    /// Topics to follow.
    pub topics: Vec<String>,
    /// Kafka bootstrap servers.
    pub bootstrap_servers: String,
    /// Schema registry base URL.
    pub schema_registry_url: String,
    /// Consumer group; `None` reads every partition without a group and commits nothing.
    pub group_id: Option<String>,
    /// Where to start without a committed position.
    pub start: Start,
    /// When to stop.
    pub until: Until,
    /// Schema registry client settings (confluent-kafka-python's spelling).
    pub registry: Vec<(String, String)>,
    /// How long a schema lookup may retry.
    pub registry_timeout: Duration,
    /// librdkafka settings, applied last so they override ours.
    pub kafka: Vec<(String, String)>,
}

/// What the fetch thread sends.
enum Fetched {
    Changes(Vec<Change>),
    Failed(Error),
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

/// A stream of changes from Kafka.
pub struct ChangeConsumer {
    consumer: Arc<BaseConsumer>,
    receiver: mpsc::Receiver<Fetched>,
    buffered: VecDeque<Change>,
    /// The change handed out last, finished when the next one is asked for.
    delivered: Option<Position>,
    /// Set once the stream failed or ended; returned again on every later call.
    terminal: Option<std::result::Result<(), Error>>,
    uses_group: bool,
    stop: Arc<AtomicBool>,
    fetch_thread: Option<JoinHandle<()>>,
}

impl ChangeConsumer {
    /// Connect and start fetching.
    pub fn start(config: StreamConfig) -> Result<ChangeConsumer> {
        if config.topics.is_empty() {
            return Err(Error::Config("no topics given".into()));
        }
        let registry = Registry::new(
            &config.schema_registry_url,
            &config.registry,
            config.registry_timeout,
        )?;
        let consumer: Arc<BaseConsumer> = Arc::new(client_config(&config).create()?);
        let uses_group = config.group_id.is_some();
        let ends = if uses_group {
            if config.until == Until::End {
                return Err(Error::Config(
                    "until=\"end\" is not supported with a group_id yet".into(),
                ));
            }
            consumer.subscribe(&config.topics.iter().map(String::as_str).collect::<Vec<_>>())?;
            None
        } else {
            Some(assign_all(&consumer, &config)?)
        };
        let (sender, receiver) = mpsc::channel(QUEUE_BATCHES);
        let stop = Arc::new(AtomicBool::new(false));
        let fetch = Fetch {
            consumer: consumer.clone(),
            decoder: ChangeDecoder::new(registry),
            sender,
            stop: stop.clone(),
            ends: ends.filter(|_| config.until == Until::End),
        };
        let fetch_thread = std::thread::Builder::new()
            .name("changestream-fetch".into())
            .stack_size(8 << 20)
            .spawn(move || fetch.run())
            .map_err(|e| Error::Config(format!("cannot start the fetch thread: {e}")))?;
        Ok(ChangeConsumer {
            consumer,
            receiver,
            buffered: VecDeque::new(),
            delivered: None,
            terminal: None,
            uses_group,
            stop,
            fetch_thread: Some(fetch_thread),
        })
    }

    /// The next change, waiting at most `wait`. Asking for the next change finishes the one
    /// handed out before it.
    pub fn next(&mut self, wait: Duration) -> Result<Next> {
        self.finish_delivered();
        if let Some(change) = self.buffered.pop_front() {
            self.delivered = Some(change.position.clone());
            return Ok(Next::Change(Box::new(change)));
        }
        match &self.terminal {
            Some(Ok(())) => return Ok(Next::End),
            Some(Err(error)) => return Err(error.clone()),
            None => {}
        }
        let received =
            runtime().block_on(async { tokio::time::timeout(wait, self.receiver.recv()).await });
        match received {
            Err(_elapsed) => Ok(Next::Pending),
            Ok(Some(Fetched::Changes(changes))) => {
                self.buffered.extend(changes);
                self.next(Duration::ZERO)
            }
            Ok(Some(Fetched::Failed(error))) => {
                self.terminal = Some(Err(error.clone()));
                Err(error)
            }
            Ok(Some(Fetched::End)) | Ok(None) => {
                self.terminal = Some(Ok(()));
                Ok(Next::End)
            }
        }
    }

    /// Store the position after the change handed out last: the application is done with it.
    fn finish_delivered(&mut self) {
        let Some(position) = self.delivered.take() else {
            return;
        };
        if !self.uses_group {
            return;
        }
        // Fails only if the partition was revoked meanwhile; its new owner re-delivers.
        if let Err(error) =
            self.consumer
                .store_offset(&position.topic, position.partition, position.offset)
        {
            log::debug!("position of {:?} not stored: {error}", position.location());
        }
    }

    /// Stop fetching, commit what the application finished, and leave the group. Idempotent.
    pub fn close(&mut self) -> Result<()> {
        let Some(thread) = self.fetch_thread.take() else {
            return Ok(());
        };
        self.stop.store(true, Ordering::Relaxed);
        self.receiver.close();
        let _ = thread.join();
        if self.uses_group {
            match self.consumer.commit_consumer_state(CommitMode::Sync) {
                // Nothing stored since the last commit.
                Err(RdKafkaError::ConsumerCommit(rdkafka::types::RDKafkaErrorCode::NoOffset)) => {}
                other => other?,
            }
            self.consumer.unsubscribe();
        }
        Ok(())
    }
}

impl Drop for ChangeConsumer {
    fn drop(&mut self) {
        if let Err(error) = self.close() {
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
        .set("enable.auto.offset.store", "false")
        .set(
            "auto.offset.reset",
            match config.start {
                Start::Earliest => "earliest",
                Start::Latest => "latest",
            },
        );
    match &config.group_id {
        Some(group) => client
            .set("group.id", group)
            .set("enable.auto.commit", "true"),
        // librdkafka's assign() needs a group id even though none is joined; nothing is
        // committed under it.
        None => client
            .set("group.id", "changestream-unmanaged")
            .set("enable.auto.commit", "false"),
    };
    for (key, value) in &config.kafka {
        client.set(key, value);
    }
    client
}

/// Without a group: assign every partition of every topic; returns each partition's end.
fn assign_all(
    consumer: &BaseConsumer,
    config: &StreamConfig,
) -> Result<HashMap<(String, i32), i64>> {
    let mut assignment = TopicPartitionList::new();
    let mut ends = HashMap::new();
    for topic in &config.topics {
        let metadata = consumer.fetch_metadata(Some(topic), METADATA_TIMEOUT)?;
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
            let (low, high) = consumer.fetch_watermarks(topic, partition, METADATA_TIMEOUT)?;
            let start = match config.start {
                Start::Earliest => Offset::Beginning,
                Start::Latest => Offset::End,
            };
            assignment.add_partition_offset(topic, partition, start)?;
            // An empty partition, or one read from its end, is at its end already.
            if high > low && config.start == Start::Earliest {
                ends.insert((topic.clone(), partition), high);
            }
        }
    }
    consumer.assign(&assignment)?;
    Ok(ends)
}

/// The fetch thread's state.
struct Fetch {
    consumer: Arc<BaseConsumer>,
    decoder: ChangeDecoder,
    sender: mpsc::Sender<Fetched>,
    stop: Arc<AtomicBool>,
    /// For bounded reads: the partitions not yet at their end, and each one's end.
    ends: Option<HashMap<(String, i32), i64>>,
}

impl Fetch {
    fn run(mut self) {
        let consumer = self.consumer.clone();
        let mut batch = Vec::new();
        loop {
            if self.stop.load(Ordering::Relaxed) {
                return;
            }
            if self.at_end() {
                if self.send(Fetched::Changes(std::mem::take(&mut batch))) {
                    self.send(Fetched::End);
                }
                return;
            }
            let wait = if batch.is_empty() {
                POLL_SLICE
            } else {
                Duration::ZERO
            };
            let failure = match consumer.poll(wait) {
                None => {
                    if !batch.is_empty() && !self.send(Fetched::Changes(std::mem::take(&mut batch)))
                    {
                        return;
                    }
                    self.check_positions();
                    None
                }
                Some(Ok(message)) => {
                    let decoded = self.decoder.decode(&Message {
                        topic: message.topic(),
                        partition: message.partition(),
                        offset: message.offset(),
                        timestamp_ms: message.timestamp().to_millis(),
                        key: message.key(),
                        value: message.payload(),
                        key_schema_header: header(&message, "__key_schema_id"),
                        value_schema_header: header(&message, "__value_schema_id"),
                    });
                    self.reached(message.topic(), message.partition(), message.offset() + 1);
                    match decoded {
                        Ok(Some(change)) => {
                            batch.push(change);
                            None
                        }
                        Ok(None) => None,
                        Err(error) => Some(error),
                    }
                }
                Some(Err(RdKafkaError::PartitionEOF(_))) => {
                    self.check_positions();
                    None
                }
                Some(Err(error)) => {
                    let error = Error::from(error);
                    if error.is_retriable() {
                        log::warn!("{error}");
                        None
                    } else {
                        Some(error)
                    }
                }
            };
            if let Some(error) = failure {
                // Deliver what came before the failure, then the failure; stop fetching, since
                // going on would skip the message that failed.
                if self.send(Fetched::Changes(std::mem::take(&mut batch))) {
                    self.send(Fetched::Failed(error));
                }
                return;
            }
            if batch.len() >= BATCH_SIZE && !self.send(Fetched::Changes(std::mem::take(&mut batch)))
            {
                return;
            }
        }
    }

    /// Send to the application, waiting while the channel is full. False once it is closed.
    fn send(&self, item: Fetched) -> bool {
        if matches!(&item, Fetched::Changes(changes) if changes.is_empty()) {
            return true;
        }
        self.sender.blocking_send(item).is_ok()
    }

    fn at_end(&self) -> bool {
        self.ends.as_ref().is_some_and(HashMap::is_empty)
    }

    /// Record that `topic`/`partition` has been read up to `position`.
    fn reached(&mut self, topic: &str, partition: i32, position: i64) {
        if let Some(ends) = &mut self.ends {
            let key = (topic.to_owned(), partition);
            if ends.get(&key).is_some_and(|&end| position >= end) {
                ends.remove(&key);
            }
        }
    }

    /// Ask librdkafka for the positions of partitions not yet at their end: a transaction
    /// marker or a compacted gap can put the end past the last message.
    fn check_positions(&mut self) {
        if self.ends.as_ref().is_none_or(HashMap::is_empty) {
            return;
        }
        let Ok(positions) = self.consumer.position() else {
            return;
        };
        for element in positions.elements() {
            if let Offset::Offset(position) = element.offset() {
                self.reached(element.topic(), element.partition(), position);
            }
        }
    }
}

fn header<'a>(message: &'a rdkafka::message::BorrowedMessage<'_>, name: &str) -> Option<&'a [u8]> {
    message
        .headers()?
        .iter()
        .find(|h| h.key == name)
        .and_then(|h| h.value)
}
