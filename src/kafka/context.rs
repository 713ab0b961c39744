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
use rdkafka::error::{KafkaError as RdKafkaError, KafkaResult};
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
/// How long each poll between metadata slices waits for an event, and at most how many it serves.
const EVENT_WAIT: Duration = Duration::from_millis(10);
const EVENTS_PER_SLICE: usize = 64;
/// The first and the longest pause before a request refused by a transient error is made again.
const FIRST_RETRY_PAUSE: Duration = Duration::from_millis(50);
const LONGEST_RETRY_PAUSE: Duration = Duration::from_secs(1);

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
        let deadline = Instant::now() + REQUEST_TIMEOUT;
        for (topic, partition) in partitions {
            let key = (topic.clone(), partition);
            let (low, high) = retrying(deadline, |left| {
                consumer.fetch_watermarks(&topic, partition, left)
            })
            .map_err(|error| error.reading_the_end_of(&topic, partition, REQUEST_TIMEOUT))?;
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
    let found = retrying(Instant::now() + REQUEST_TIMEOUT, |left| {
        consumer.offsets_for_times(query.clone(), left)
    })?;
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
    let committed = retrying(Instant::now() + REQUEST_TIMEOUT, |left| {
        consumer.committed_offsets(tpl.clone(), left)
    })?;
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

/// Errors a broker answers while a partition's leadership moves, a topic is still being
/// created or a group coordinator is loading: the ordinary weather of a cluster, which the
/// next attempt usually no longer meets.
fn is_transient(error: &RdKafkaError) -> bool {
    use RDKafkaErrorCode as Code;
    matches!(
        error.rdkafka_error_code(),
        Some(
            Code::NotLeaderForPartition
                | Code::LeaderNotAvailable
                | Code::PreferredLeaderNotAvailable
                | Code::FencedLeaderEpoch
                | Code::UnknownLeaderEpoch
                | Code::OffsetNotAvailable
                | Code::UnknownTopicOrPartition
                | Code::KafkaStorageError
                | Code::RequestTimedOut
                | Code::CoordinatorLoadInProgress
                | Code::CoordinatorNotAvailable
                | Code::NotCoordinator
                | Code::UnstableOffsetCommit
                | Code::BrokerTransportFailure
                // librdkafka's own answer for a partition whose leader it does not know at the
                // moment (its broker restarting): every partition asked about here was listed
                // by the cluster's metadata first.
                | Code::UnknownPartition
        )
    )
}

/// How long each poll waits while a client closes.
const CLOSING_POLL: Duration = Duration::from_millis(5);

/// Close `consumer`'s queue and serve its last events in short polls until it is closed.
/// Left to the drop, rust-rdkafka does it (for a consumer with a `group.id`, which ours all
/// have) in polls of 100 ms each, which every close waited out.
pub(crate) fn close_promptly<C: ConsumerContext>(consumer: &BaseConsumer<C>) {
    if consumer.close_queue().is_ok() {
        while !consumer.closed() {
            let _ = consumer.poll(CLOSING_POLL);
        }
    }
}

/// Make a request, and make it again after a transient error, pausing a little longer each
/// time, until `deadline`; each attempt is given the time left. Any other error, or a
/// transient one at the deadline, is returned.
pub(crate) fn retrying<T>(
    deadline: Instant,
    mut request: impl FnMut(Duration) -> KafkaResult<T>,
) -> Result<T> {
    let mut pause = FIRST_RETRY_PAUSE;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match request(left) {
            Err(error) if is_transient(&error) && left > pause => {
                log::debug!("retrying a Kafka request in {pause:?}: {error}");
                std::thread::sleep(pause);
                pause = (pause * 2).min(LONGEST_RETRY_PAUSE);
            }
            result => return Ok(result?),
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
            // context learns why we cannot connect. Each poll serves at most one event, and
            // one that does not wait found none queued on a loaded machine (a TLS failure
            // surfaced only after the whole request timeout): wait briefly, until none is left.
            for _ in 0..EVENTS_PER_SLICE {
                if consumer.poll(EVENT_WAIT).is_none() {
                    break;
                }
            }
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

#[cfg(test)]
mod tests {
    //! The rebalance callbacks and the requests they make against rdkafka's `MockCluster`
    //! (librdkafka's in-process broker), so a group rebalance runs without a Kafka.

    use std::cell::Cell;
    use std::collections::HashMap;
    use std::sync::atomic::Ordering;
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
    use rdkafka::error::KafkaError as RdKafkaError;
    use rdkafka::mocking::MockCluster;
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    use rdkafka::types::{RDKafkaApiKey, RDKafkaErrorCode, RDKafkaRespErr};
    use rdkafka::{ClientConfig, Offset, TopicPartitionList};

    use super::{retrying, Kafka, StreamContext};
    use crate::error::Error;
    use crate::kafka::config::{Start, Until};
    use crate::positions::Positions;

    const TOPIC: &str = "orders";
    const GROUP: &str = "followers";
    const MESSAGES: i32 = 10;

    fn member_config(bootstrap: &str) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", bootstrap)
            .set("group.id", GROUP)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            // Eager: a member joining revokes every partition of the members before it.
            .set("partition.assignment.strategy", "range")
            .set("session.timeout.ms", "6000")
            .set("heartbeat.interval.ms", "100");
        config
    }

    /// A topic of two partitions holding `MESSAGES` messages each.
    fn cluster() -> MockCluster<'static, rdkafka::producer::DefaultProducerContext> {
        let cluster = MockCluster::new(1).expect("mock cluster");
        cluster.create_topic(TOPIC, 2, 1).expect("topic");
        let producer: BaseProducer = ClientConfig::new()
            .set("bootstrap.servers", cluster.bootstrap_servers())
            .create()
            .expect("producer");
        for partition in 0..2 {
            for n in 0..MESSAGES {
                let payload = n.to_string();
                producer
                    .send(
                        BaseRecord::<(), _>::to(TOPIC)
                            .partition(partition)
                            .payload(&payload),
                    )
                    .expect("send");
            }
        }
        producer.flush(Duration::from_secs(10)).expect("flush");
        cluster
    }

    /// Poll both members until `done` holds (the rebalance callbacks run inside `poll`).
    fn poll_until(members: &[&dyn Fn()], done: impl Fn() -> bool) {
        let started = Instant::now();
        while !done() {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "the group did not settle"
            );
            for poll_member in members {
                poll_member();
            }
        }
    }

    fn committed(consumer: &BaseConsumer) -> HashMap<i32, Option<i64>> {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(TOPIC, 0);
        tpl.add_partition(TOPIC, 1);
        consumer
            .committed_offsets(tpl, Duration::from_secs(10))
            .expect("committed offsets")
            .elements()
            .iter()
            .map(|e| {
                let offset = match e.offset() {
                    Offset::Offset(o) => Some(o),
                    _ => None,
                };
                (e.partition(), offset)
            })
            .collect()
    }

    fn stream_context(
        positions: &Arc<Positions>,
        start: Start,
        until: Until,
        uses_group: bool,
    ) -> StreamContext {
        StreamContext {
            positions: positions.clone(),
            start,
            until,
            uses_group,
            reset_to_latest: false,
            failure: Mutex::new(None),
            oauth: None,
        }
    }

    /// A group member with the stream's context, owning both partitions, which finished
    /// partition 0 through offset 4 (5..9 handed out, unfinished) and nothing of partition 1.
    fn member_with_finished_work(bootstrap: &str) -> (Kafka, Arc<Positions>) {
        let positions = Arc::new(Positions::default());
        let context = stream_context(&positions, Start::Committed, Until::Forever, true);
        let member: Kafka = member_config(bootstrap)
            .create_with_context(context)
            .expect("member");
        member.subscribe(&[TOPIC]).expect("subscribe");
        poll_until(&[&|| poll(&member)], || positions.finished().len() == 2);
        positions.finish(TOPIC, 0, 4, positions.generation());
        (member, positions)
    }

    fn poll<C: ConsumerContext>(consumer: &BaseConsumer<C>) {
        let _ = consumer.poll(Duration::from_millis(20));
    }

    #[test]
    fn a_revoke_commits_what_was_finished_and_nothing_unfinished_before_letting_go() {
        let cluster = cluster();
        let bootstrap = cluster.bootstrap_servers();
        let (member, positions) = member_with_finished_work(&bootstrap);
        // Leaving the group revokes both partitions; the callback runs inside poll.
        member.unsubscribe();
        poll_until(&[&|| poll(&member)], || {
            member.assignment().map_or(1, |a| a.count()) == 0
        });
        let observer: BaseConsumer = member_config(&bootstrap).create().expect("observer");
        assert_eq!(
            committed(&observer),
            HashMap::from([(0, Some(5)), (1, None)])
        );
        assert_eq!(positions.counters.committed.load(Ordering::Relaxed), 5);
        assert_eq!(
            positions.counters.commit_failures.load(Ordering::Relaxed),
            0
        );
        assert!(positions.finished().is_empty());
        assert!(member.context().take_failure().is_none());
    }

    #[test]
    fn a_commit_refused_during_a_rebalance_is_counted_not_fatal() {
        let cluster = cluster();
        let bootstrap = cluster.bootstrap_servers();
        let (first, positions) = member_with_finished_work(&bootstrap);
        // A second member joins: the eager rebalance revokes both partitions of the first.
        // The mock broker refuses commits while the group is joining (a real broker takes
        // them from the current generation): the changes will be delivered again.
        let second: BaseConsumer = member_config(&bootstrap).create().expect("second member");
        second.subscribe(&[TOPIC]).expect("subscribe");
        poll_until(&[&|| poll(&first), &|| poll(&second)], || {
            second.assignment().map_or(0, |a| a.count()) > 0
        });
        assert_eq!(
            positions.counters.commit_failures.load(Ordering::Relaxed),
            1
        );
        assert_eq!(positions.counters.committed.load(Ordering::Relaxed), 0);
        assert_eq!(committed(&second), HashMap::from([(0, None), (1, None)]));
        // Not a failure of the stream: it reads on from the group's positions.
        assert!(first.context().take_failure().is_none());
    }

    #[test]
    fn a_request_refused_while_leadership_moves_is_made_again() {
        let attempts = Cell::new(0);
        let result = retrying(Instant::now() + Duration::from_secs(10), |_| {
            attempts.set(attempts.get() + 1);
            match attempts.get() {
                1 => Err(RdKafkaError::MetadataFetch(
                    RDKafkaErrorCode::NotLeaderForPartition,
                )),
                2 => Err(RdKafkaError::MetadataFetch(
                    RDKafkaErrorCode::LeaderNotAvailable,
                )),
                // librdkafka's own answer while it knows no leader (a broker restarting).
                3 => Err(RdKafkaError::MetadataFetch(
                    RDKafkaErrorCode::UnknownPartition,
                )),
                n => Ok(n),
            }
        });
        assert_eq!(result.expect("answered on the fourth attempt"), 4);
    }

    #[test]
    fn a_lasting_error_is_returned_at_once_and_a_transient_one_at_the_deadline() {
        let attempts = Cell::new(0);
        let result: crate::error::Result<()> =
            retrying(Instant::now() + Duration::from_secs(10), |_| {
                attempts.set(attempts.get() + 1);
                Err(RdKafkaError::MetadataFetch(
                    RDKafkaErrorCode::TopicAuthorizationFailed,
                ))
            });
        assert!(matches!(result, Err(Error::Kafka { .. })), "{result:?}");
        assert_eq!(attempts.get(), 1);

        let attempts = Cell::new(0);
        let started = Instant::now();
        let result: crate::error::Result<()> =
            retrying(Instant::now() + Duration::from_millis(300), |_| {
                attempts.set(attempts.get() + 1);
                Err(RdKafkaError::MetadataFetch(
                    RDKafkaErrorCode::NotLeaderForPartition,
                ))
            });
        let message = result.expect_err("still not the leader").to_string();
        assert!(message.contains("Not leader for partition"), "{message}");
        assert!(attempts.get() > 1);
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn an_assignment_waits_out_a_partition_without_a_leader() {
        let cluster = cluster();
        let positions = Arc::new(Positions::default());
        let context = stream_context(&positions, Start::Latest, Until::End, false);
        let consumer: Kafka = member_config(&cluster.bootstrap_servers())
            .create_with_context(context)
            .expect("consumer");
        // The broker refuses the next offset requests as a broker does while the
        // partition's leadership moves (this failed a stream in CI right after a topic
        // was created).
        cluster.request_errors(
            RDKafkaApiKey::ListOffsets,
            &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION; 4],
        );
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(TOPIC, 0);
        tpl.add_partition(TOPIC, 1);
        consumer
            .context()
            .prepare_assignment(&consumer, &mut tpl)
            .expect("the assignment is prepared once the partitions have a leader");
        for partition in 0..2 {
            let element = tpl.find_partition(TOPIC, partition).expect("assigned");
            assert_eq!(element.offset(), Offset::Offset(i64::from(MESSAGES)));
        }
        assert!(
            positions.all_done(),
            "latest of a bounded read starts at its end"
        );
    }
}
