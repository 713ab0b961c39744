//! Where a consumer group stands, read without joining it.
//!
//! [`group_lag`] asks the group coordinator for the group's committed positions (an
//! OffsetFetch, which neither joins the group nor triggers a rebalance of its members) and
//! each partition's watermarks, as `kafka-consumer-groups --describe` does.

use std::time::{Duration, Instant};

use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError as RdKafkaError;
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use crate::error::{Error, Result};
use crate::kafka::{close_promptly, retrying};

/// One partition of a group's topics: what the group committed and what is in Kafka.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionLag {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// The group's committed position (the next offset it will read), if it has one.
    pub committed: Option<i64>,
    /// The oldest offset still in Kafka (the low watermark).
    pub start: i64,
    /// The offset the next message will get (the high watermark).
    pub end: i64,
}

impl PartitionLag {
    /// Messages the group has yet to read. Without a committed position a changestream
    /// group starts at the oldest message, so that is where its lag counts from; a
    /// committed position deleted by retention counts from the oldest message too.
    pub fn lag(&self) -> i64 {
        let from = self.committed.unwrap_or(self.start).max(self.start);
        (self.end - from).max(0)
    }
}

/// Logs librdkafka's errors at DEBUG: a failed request is reported as this function's error.
struct LagContext;

impl ClientContext for LagContext {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        crate::kafka::log_librdkafka(level, facility, message);
    }

    fn error(&self, error: RdKafkaError, reason: &str) {
        log::debug!("kafka: {error}: {reason}");
    }
}

impl ConsumerContext for LagContext {}

/// The consumer `group_lag` asks with, closed promptly however it returns.
struct LagConsumer(BaseConsumer<LagContext>);

impl std::ops::Deref for LagConsumer {
    type Target = BaseConsumer<LagContext>;

    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl Drop for LagConsumer {
    fn drop(&mut self) {
        close_promptly(&self.0);
    }
}

/// The committed position, watermarks and lag of `group_id` on every partition of `topics`,
/// sorted by topic and partition. `kafka` settings (librdkafka's names) are applied last;
/// every request gives up after `timeout`.
pub fn group_lag(
    bootstrap_servers: &str,
    kafka: &[(String, String)],
    group_id: &str,
    topics: &[String],
    timeout: Duration,
) -> Result<Vec<PartitionLag>> {
    if topics.is_empty() {
        return Err(Error::Config("no topics given".into()));
    }
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap_servers)
        .set("client.id", "changestream-lag")
        .set("group.id", group_id)
        .set("enable.auto.commit", "false");
    for (key, value) in kafka {
        config.set(key, value);
    }
    let consumer = LagConsumer(config.create_with_context(LagContext)?);
    let deadline = Instant::now() + timeout;
    let left = || deadline.saturating_duration_since(Instant::now());

    let mut partitions = TopicPartitionList::new();
    for topic in topics {
        let metadata = consumer.fetch_metadata(Some(topic), left())?;
        let ids = metadata
            .topics()
            .first()
            .filter(|t| t.error().is_none())
            .map(|t| t.partitions().iter().map(|p| p.id()).collect::<Vec<_>>())
            .unwrap_or_default();
        if ids.is_empty() {
            return Err(Error::Config(format!("topic {topic:?} does not exist")));
        }
        for id in ids {
            partitions.add_partition(topic, id);
        }
    }
    let committed = retrying(deadline, |left| {
        consumer.committed_offsets(partitions.clone(), left)
    })?;
    let mut lags = Vec::with_capacity(committed.count());
    for element in committed.elements() {
        let (topic, partition) = (element.topic(), element.partition());
        let (start, end) = retrying(deadline, |left| {
            consumer.fetch_watermarks(topic, partition, left)
        })
        .map_err(|error| error.reading_the_end_of(topic, partition, timeout))?;
        lags.push(PartitionLag {
            topic: topic.to_owned(),
            partition,
            committed: match element.offset() {
                Offset::Offset(offset) if offset >= 0 => Some(offset),
                _ => None,
            },
            start,
            end,
        });
    }
    lags.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
    Ok(lags)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn partition(committed: Option<i64>, start: i64, end: i64) -> PartitionLag {
        PartitionLag {
            topic: "t".into(),
            partition: 0,
            committed,
            start,
            end,
        }
    }

    #[test]
    fn lag_counts_from_the_committed_position() {
        assert_eq!(partition(Some(7), 0, 10).lag(), 3);
        assert_eq!(partition(Some(10), 0, 10).lag(), 0);
    }

    #[test]
    fn lag_without_a_position_or_past_retention_counts_from_the_oldest_message() {
        assert_eq!(partition(None, 4, 10).lag(), 6);
        assert_eq!(partition(Some(2), 4, 10).lag(), 6);
    }
}
