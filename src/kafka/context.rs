//! The librdkafka side of a stream: the client context, which logs, sorts librdkafka's errors
//! into counted, logged and fatal, and runs the rebalance callbacks on the fetch thread —
//! resolving each assigned partition's start (and a bounded read's end) before anything is
//! read, and committing what was finished on revoked partitions before letting them go —
//! and the requests made through the consumer (offsets for times, committed offsets,
//! commits, the partitions of a stream without a group).

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, RebalanceProtocol};
use rdkafka::error::KafkaError as RdKafkaError;
use rdkafka::types::{RDKafkaErrorCode, RDKafkaRespErr};
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use super::config::{Start, Until};
use super::oauth::{OAuthTokens, NO_TOKEN_CALLBACK, TOKEN_PENDING};
use crate::error::{Error, Result};
use crate::positions::{PartitionState, Positions};

/// How long metadata, watermark and commit requests may take.
pub(super) const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How long one metadata request waits before we check for a connection failure.
const METADATA_SLICE: Duration = Duration::from_millis(500);

/// The librdkafka context: runs the rebalance callbacks (on the fetch thread).
pub(super) struct StreamContext {
    pub(super) positions: Arc<Positions>,
    pub(super) start: Start,
    pub(super) until: Until,
    pub(super) uses_group: bool,
    /// Where a partition without a committed position starts: `auto.offset.reset` latest.
    pub(super) reset_to_latest: bool,
    /// An error raised inside a callback, for the fetch thread to report.
    pub(super) failure: Mutex<Option<Error>>,
    /// Where SASL/OAUTHBEARER tokens come from, with `oauth_cb`.
    pub(super) oauth: Option<Arc<OAuthTokens>>,
}

pub(super) type Kafka = BaseConsumer<StreamContext>;

impl ClientContext for StreamContext {
    const ENABLE_REFRESH_OAUTH_TOKEN: bool = true;

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
            // A token request that was not answered yet, or one librdkafka answers itself.
            Some(Code::Authentication)
                if reason.contains(TOKEN_PENDING) || reason.contains(NO_TOKEN_CALLBACK) =>
            {
                log::debug!("kafka: {reason}");
            }
            Some(
                Code::Authentication
                | Code::SaslAuthenticationFailed
                | Code::SSL
                | Code::Fatal
                | Code::TopicAuthorizationFailed
                | Code::GroupAuthorizationFailed
                | Code::ClusterAuthorizationFailed,
            ) => {
                // The application gets it as an exception at its next call; the log says when
                // it happened.
                log::warn!("kafka: {error}: {reason}");
                self.fail(Error::Kafka {
                    reason: format!("{error}: {reason}"),
                    retriable: false,
                })
            }
            _ => log::warn!("kafka: {error}: {reason}"),
        }
    }

    /// Called on the polling thread, which never enters Python: the token comes from the
    /// application's thread through [`OAuthTokens`].
    fn generate_oauth_token(
        &self,
        _oauthbearer_config: Option<&str>,
    ) -> std::result::Result<rdkafka::client::OAuthToken, Box<dyn std::error::Error>> {
        let Some(tokens) = &self.oauth else {
            return Err(NO_TOKEN_CALLBACK.into());
        };
        let token = tokens.take()?;
        Ok(rdkafka::client::OAuthToken {
            token: token.token,
            principal_name: token.principal,
            lifetime_ms: token.expires_ms,
        })
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
    pub(super) fn refuses_unused_group(&self, error: &RdKafkaError) -> bool {
        !self.uses_group
            && error.rdkafka_error_code() == Some(RDKafkaErrorCode::GroupAuthorizationFailed)
    }

    fn fail(&self, error: Error) {
        let mut failure = self.failure.lock().unwrap_or_else(|e| e.into_inner());
        failure.get_or_insert(error);
    }

    pub(super) fn take_failure(&self) -> Option<Error> {
        self.failure
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
    }

    /// Resolve each assigned partition's start offset — the committed position, the earliest
    /// or latest offset, an offset for a time, or one given — and assign exactly that, so the
    /// stream knows where it stands before it reads anything. For bounded reads, also fix each
    /// partition's end; one that starts at its end is done at once.
    pub(super) fn prepare_assignment(
        &self,
        consumer: &Kafka,
        tpl: &mut TopicPartitionList,
    ) -> Result<()> {
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
pub(super) fn commit(
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

/// Without a group: every partition of every topic. Metadata is asked for in short slices,
/// so an authentication or TLS failure (reported through the context) ends the wait at once
/// instead of after the whole request timeout.
pub(super) fn all_partitions(consumer: &Kafka, topics: &[String]) -> Result<TopicPartitionList> {
    let mut assignment = TopicPartitionList::new();
    for topic in topics {
        let started = Instant::now();
        let metadata = loop {
            // Serve librdkafka's events: the first OAUTHBEARER token is set here, and the
            // context learns why we cannot connect.
            let _ = consumer.poll(Duration::ZERO);
            if let Some(failure) = consumer.context().take_failure() {
                return Err(failure);
            }
            match consumer.fetch_metadata(Some(topic), METADATA_SLICE) {
                Ok(metadata) => break metadata,
                Err(error) => {
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
