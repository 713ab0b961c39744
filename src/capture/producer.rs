//! The Kafka side: an idempotent librdkafka producer that numbers every message and learns,
//! from delivery reports, up to which number everything is acknowledged.
//!
//! The run loop confirms an LSN to PostgreSQL only once every message up to its transaction's
//! commit is below [`Producer::acked_below`]. A message librdkafka gives up on (after its own
//! retries, within `message.timeout.ms`) stops the capture: nothing after it is confirmed, so a
//! restart sends it again.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{
    BaseRecord, DeliveryResult, Producer as _, ProducerContext, ThreadedProducer,
};
use rdkafka::ClientContext;

use crate::error::{Error, Result};

/// Delivery bookkeeping shared with librdkafka's callback thread.
#[derive(Default)]
struct Deliveries {
    /// Every message numbered below this is acknowledged.
    acked_below: u64,
    /// Acknowledged messages above a gap.
    ahead: BTreeSet<u64>,
    /// The first delivery that failed for good.
    failure: Option<Error>,
}

/// librdkafka's context: records delivery reports.
#[derive(Clone, Default)]
struct Tracker(Arc<Mutex<Deliveries>>);

impl ClientContext for Tracker {}

impl ProducerContext for Tracker {
    type DeliveryOpaque = Box<u64>;

    fn delivery(&self, result: &DeliveryResult<'_>, number: Box<u64>) {
        let mut state = self.0.lock().unwrap_or_else(|e| e.into_inner());
        match result {
            Ok(_) => {
                state.ahead.insert(*number);
                loop {
                    let next = state.acked_below;
                    if !state.ahead.remove(&next) {
                        break;
                    }
                    state.acked_below += 1;
                }
            }
            Err((error, message)) => {
                use rdkafka::Message as _;
                if state.failure.is_none() {
                    state.failure = Some(Error::Kafka {
                        reason: format!(
                            "Kafka did not accept a message for topic {:?}: {error}",
                            message.topic()
                        ),
                        retriable: true,
                    });
                }
            }
        }
    }
}

/// An idempotent producer with delivery tracking.
pub struct Producer {
    producer: ThreadedProducer<Tracker>,
    tracker: Tracker,
    next: u64,
}

/// One header of a message.
pub type HeaderPair<'a> = (&'a str, &'a [u8]);

impl Producer {
    /// A producer for `bootstrap_servers` with the user's librdkafka settings.
    pub fn new(bootstrap_servers: &str, settings: &[(String, String)]) -> Result<Producer> {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", bootstrap_servers);
        // Java's partitioner, so keys land where Debezium (Kafka Connect) would put them.
        config.set("partitioner", "murmur2_random");
        config.set("linger.ms", "20");
        for (key, value) in settings {
            config.set(key, value);
        }
        // Order per key and no duplicates from librdkafka's own retries: not negotiable.
        config.set("enable.idempotence", "true");
        let tracker = Tracker::default();
        let producer = config.create_with_context(tracker.clone())?;
        Ok(Producer {
            producer,
            tracker,
            next: 0,
        })
    }

    /// Queue one message; waits while librdkafka's queue is full. Its number.
    pub fn send(
        &mut self,
        topic: &str,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[HeaderPair<'_>],
    ) -> Result<u64> {
        let number = self.next;
        let mut record = BaseRecord::with_opaque_to(topic, Box::new(number));
        if let Some(key) = key {
            record = record.key(key);
        }
        if let Some(value) = value {
            record = record.payload(value);
        }
        if !headers.is_empty() {
            let mut all = OwnedHeaders::new_with_capacity(headers.len());
            for (name, value) in headers {
                all = all.insert(Header {
                    key: name,
                    value: Some(*value),
                });
            }
            record = record.headers(all);
        }
        loop {
            match self.producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    std::thread::sleep(Duration::from_millis(2));
                }
                Err((error, _)) => return Err(error.into()),
            }
        }
        self.next += 1;
        Ok(number)
    }

    /// The number the next message will get.
    pub fn next_number(&self) -> u64 {
        self.next
    }

    /// Every message numbered below this is in Kafka; or the delivery failure that stops us.
    pub fn acked_below(&self) -> Result<u64> {
        let state = self.tracker.0.lock().unwrap_or_else(|e| e.into_inner());
        match &state.failure {
            Some(error) => Err(error.clone()),
            None => Ok(state.acked_below),
        }
    }

    /// Wait up to `timeout` for every queued message to be acknowledged.
    pub fn flush(&self, timeout: Duration) -> Result<()> {
        self.producer.flush(timeout)?;
        self.acked_below().map(|_| ())
    }
}
