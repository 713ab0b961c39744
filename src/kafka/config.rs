//! A stream's configuration: where it starts and ends, who finishes positions, what happens
//! to undecodable messages, and the librdkafka client settings built from it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::config::ClientConfig;

use super::oauth::OAuthTokens;
use crate::change::DecoderOptions;

/// The default of [`StreamConfig::max_buffer_bytes`].
pub const DEFAULT_MAX_BUFFER_BYTES: usize = 64 << 20;

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
    /// SASL/OAUTHBEARER tokens from the application (`oauth_cb`), primed with the first one.
    pub oauth: Option<Arc<OAuthTokens>>,
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
            .field("oauth", &self.oauth.is_some())
            .finish_non_exhaustive()
    }
}

/// The value of a librdkafka setting the application gave (the last one wins, as there).
fn setting<'a>(config: &'a StreamConfig, keys: &[&str]) -> Option<&'a str> {
    config
        .kafka
        .iter()
        .rev()
        .find(|(key, _)| keys.contains(&key.as_str()))
        .map(|(_, value)| value.as_str())
}

/// Whether the SASL settings and `oauth_cb` fit together: OAUTHBEARER takes its tokens from
/// exactly one place (the callback, librdkafka's OIDC client, or its unsecured test token).
pub(super) fn check_oauth(config: &StreamConfig) -> crate::Result<()> {
    let oauthbearer = setting(config, &["sasl.mechanism", "sasl.mechanisms"])
        .is_some_and(|mechanism| mechanism.trim().eq_ignore_ascii_case("OAUTHBEARER"));
    let oidc = setting(config, &["sasl.oauthbearer.method"])
        .is_some_and(|method| method.trim().eq_ignore_ascii_case("oidc"));
    let unsecured = setting(config, &["enable.sasl.oauthbearer.unsecure.jwt"])
        .is_some_and(|flag| flag.trim() == "true");
    let problem = match (config.oauth.is_some(), oauthbearer) {
        (true, false) => "oauth_cb needs the kafka setting sasl.mechanism=OAUTHBEARER",
        (true, true) if oidc => {
            "oauth_cb and sasl.oauthbearer.method=oidc both supply tokens; give one of them"
        }
        (true, true) if unsecured => {
            "oauth_cb and enable.sasl.oauthbearer.unsecure.jwt both supply tokens; give one of them"
        }
        (false, true) if !oidc && !unsecured => {
            "sasl.mechanism=OAUTHBEARER needs oauth_cb= (a callable returning a token and its \
             expiry) or sasl.oauthbearer.method=oidc"
        }
        _ => return Ok(()),
    };
    Err(crate::Error::Config(problem.into()))
}

/// The librdkafka client settings of a stream: ours first, then the application's.
pub(super) fn client_config(config: &StreamConfig) -> ClientConfig {
    let mut client = ClientConfig::new();
    client
        .set("bootstrap.servers", &config.bootstrap_servers)
        .set("client.id", "changestream")
        .set("enable.partition.eof", "true")
        // librdkafka waits up to a second before refilling an emptied prefetch queue; the
        // read-ahead is bounded in bytes anyway, so refill at once.
        .set("fetch.queue.backoff.ms", "10")
        // A partition resumed after a pause for room waits for the fetch in flight, which the
        // broker holds up to this long when the partitions it asks for have nothing new (those
        // at their end): 500 ms by default, a stall of up to that much at every resume.
        .set("fetch.wait.max.ms", "100")
        // Half the read-ahead budget for raw messages (librdkafka also keeps a single fetch
        // response within it, unless `fetch.max.bytes` is set). librdkafka applies it to the
        // group's one queue, but to each partition's queue when partitions are assigned
        // without a group.
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
