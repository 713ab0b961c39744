//! The one error type of the crate.
//!
//! Every failure, from a malformed message to a registry outage, is an [`Error`]. Errors that
//! concern one Kafka message carry its [`Location`] so the application can tell exactly which
//! message could not be handled. The Python layer maps this enum to exceptions in one place
//! (`src/python/errors.rs`).

use std::fmt;
use std::time::Duration;

/// Where in Kafka a message sits: topic, partition and offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The topic name.
    pub topic: String,
    /// The partition number.
    pub partition: i32,
    /// The offset of the message in its partition.
    pub offset: i64,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "topic {:?} partition {} offset {}",
            self.topic, self.partition, self.offset
        )
    }
}

/// Everything that can go wrong while following a change stream.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The caller's configuration is invalid (bad option value, unknown topic, ...).
    #[error("invalid configuration: {0}")]
    Config(String),

    /// A message could not be decoded (bad framing, truncated or malformed Avro body, a schema
    /// we cannot use).
    #[error("cannot decode {}: {reason}", describe(.at))]
    Decode {
        /// What was wrong with the message.
        reason: String,
        /// The message, when known.
        at: Option<Location>,
    },

    /// The schema registry has no schema with this id.
    #[error("schema id {id} not found in the schema registry{}", suffix(.at))]
    SchemaNotFound {
        /// The schema id the message named.
        id: u32,
        /// The message that named it, when known.
        at: Option<Location>,
    },

    /// The schema registry could not be reached or answered with an error.
    #[error("schema registry error: {reason}{}", suffix(.at))]
    Registry {
        /// What went wrong (never contains credentials).
        reason: String,
        /// Whether trying again later may succeed.
        retriable: bool,
        /// The message being decoded, when known.
        at: Option<Location>,
    },

    /// The stream was closed and cannot be used any more.
    #[error("the stream is closed")]
    Closed,

    /// The stream was opened in another process, which then forked: its threads and
    /// connections stayed there.
    #[error(
        "this stream was opened in process {opened_in}, before a fork(); open a new stream in \
         this process"
    )]
    Forked {
        /// The process id of the process that opened the stream.
        opened_in: u32,
    },

    /// PostgreSQL refused a request or the connection to it failed (capture).
    #[error("postgres error: {reason}")]
    Postgres {
        /// What went wrong (never contains the DSN or a password).
        reason: String,
        /// Whether trying again later may succeed.
        retriable: bool,
    },

    /// Kafka (librdkafka) reported an error.
    #[error("kafka error: {reason}")]
    Kafka {
        /// librdkafka's description of the error.
        reason: String,
        /// Whether trying again later may succeed.
        retriable: bool,
    },

    /// A caller passed an argument of the wrong type (Python's `TypeError`).
    #[error("{0}")]
    ArgumentType(String),

    /// A caller passed an argument of the right type and a wrong value (Python's `ValueError`).
    #[error("{0}")]
    ArgumentValue(String),

    /// Something that cannot happen happened: a bug of changestream, not a condition of Kafka,
    /// the registry or the database.
    #[error("internal error (a bug of changestream, please report it): {0}")]
    Internal(String),
}

fn describe(at: &Option<Location>) -> String {
    match at {
        Some(location) => format!("message at {location}"),
        None => "message".to_owned(),
    }
}

fn suffix(at: &Option<Location>) -> String {
    match at {
        Some(location) => format!(" (message at {location})"),
        None => String::new(),
    }
}

impl Error {
    /// A decode error without a location yet; the fetch loop adds it with [`Error::at`].
    pub fn decode(reason: impl Into<String>) -> Self {
        Error::Decode {
            reason: reason.into(),
            at: None,
        }
    }

    /// Attach the location of the message this error concerns (if the variant carries one).
    pub fn at(mut self, location: Location) -> Self {
        match &mut self {
            Error::Decode { at, .. }
            | Error::SchemaNotFound { at, .. }
            | Error::Registry { at, .. } => *at = Some(location),
            Error::Config(_)
            | Error::Closed
            | Error::Forked { .. }
            | Error::Kafka { .. }
            | Error::Postgres { .. }
            | Error::ArgumentType(_)
            | Error::ArgumentValue(_)
            | Error::Internal(_) => {}
        }
        self
    }

    /// This error, met asking where `topic` [`partition`] ends (for up to `waited`), saying
    /// so: librdkafka's own text names neither the partition nor, when the partition's broker
    /// is away, the broker ("Unknown partition").
    pub fn reading_the_end_of(self, topic: &str, partition: i32, waited: Duration) -> Self {
        match self {
            Error::Kafka { reason, retriable } => Error::Kafka {
                reason: format!(
                    "could not read where {topic:?} [{partition}] ends{}: {reason}",
                    if retriable {
                        format!(
                            " within {} s (is its leader broker up and reachable?)",
                            waited.as_secs_f64()
                        )
                    } else {
                        String::new()
                    }
                ),
                retriable,
            },
            other => other,
        }
    }

    /// The message this error concerns, if any.
    pub fn location(&self) -> Option<&Location> {
        match self {
            Error::Decode { at, .. }
            | Error::SchemaNotFound { at, .. }
            | Error::Registry { at, .. } => at.as_ref(),
            Error::Config(_)
            | Error::Closed
            | Error::Forked { .. }
            | Error::Kafka { .. }
            | Error::Postgres { .. }
            | Error::ArgumentType(_)
            | Error::ArgumentValue(_)
            | Error::Internal(_) => None,
        }
    }

    /// Whether retrying the same operation later may succeed.
    pub fn is_retriable(&self) -> bool {
        match self {
            Error::Registry { retriable, .. }
            | Error::Kafka { retriable, .. }
            | Error::Postgres { retriable, .. } => *retriable,
            Error::Config(_)
            | Error::Closed
            | Error::Forked { .. }
            | Error::Decode { .. }
            | Error::SchemaNotFound { .. }
            | Error::ArgumentType(_)
            | Error::ArgumentValue(_)
            | Error::Internal(_) => false,
        }
    }
}

impl From<rdkafka::error::KafkaError> for Error {
    fn from(error: rdkafka::error::KafkaError) -> Self {
        // rdkafka's text for a bad setting repeats its value, which may be a password.
        if let rdkafka::error::KafkaError::ClientConfig(_, description, key, _value) = &error {
            return Error::Config(format!("kafka setting {key:?}: {description}"));
        }
        // librdkafka raised a fatal error: the client instance is unusable whatever the code.
        let fatal = matches!(
            error,
            rdkafka::error::KafkaError::MessageConsumptionFatal(_)
        );
        let retriable = !fatal
            && error
                .rdkafka_error_code()
                .is_some_and(|code| !is_fatal_code(code));
        Error::Kafka {
            reason: error.to_string(),
            retriable,
        }
    }
}

fn is_fatal_code(code: rdkafka::types::RDKafkaErrorCode) -> bool {
    use rdkafka::types::RDKafkaErrorCode as Code;
    matches!(
        code,
        Code::Fatal
            | Code::UnknownTopicOrPartition
            | Code::UnknownTopic
            | Code::TopicAuthorizationFailed
            | Code::GroupAuthorizationFailed
            | Code::ClusterAuthorizationFailed
            | Code::SaslAuthenticationFailed
            | Code::Authentication
            | Code::InvalidArgument
            | Code::InvalidConfig
            | Code::FencedInstanceId
            | Code::UnreleasedInstanceId
            | Code::SSL
    )
}

/// The crate's result type.
pub type Result<T> = std::result::Result<T, Error>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_error_names_the_message() {
        let error = Error::decode("bad magic byte 0x7b").at(Location {
            topic: "shop.orders".into(),
            partition: 2,
            offset: 41,
        });
        assert_eq!(
            error.to_string(),
            "cannot decode message at topic \"shop.orders\" partition 2 offset 41: bad magic byte 0x7b"
        );
        assert_eq!(error.location().map(|l| l.offset), Some(41));
        assert!(!error.is_retriable());
    }

    #[test]
    fn a_partition_end_not_read_names_the_partition_and_the_wait() {
        use rdkafka::error::KafkaError;
        use rdkafka::types::RDKafkaErrorCode;
        let waited = Duration::from_secs(30);
        // What librdkafka answers while the partition's broker is down.
        let away = Error::from(KafkaError::MetadataFetch(
            RDKafkaErrorCode::UnknownPartition,
        ))
        .reading_the_end_of("shop.orders", 3, waited);
        assert!(away.is_retriable());
        let text = away.to_string();
        assert!(
            text.starts_with("kafka error: could not read where \"shop.orders\" [3] ends within 30 s (is its leader broker up and reachable?): "),
            "{text}"
        );
        assert!(text.contains("UnknownPartition"), "{text}");
        // Refused for good: no hint about the broker.
        let refused = Error::from(KafkaError::MetadataFetch(
            RDKafkaErrorCode::TopicAuthorizationFailed,
        ))
        .reading_the_end_of("shop.orders", 3, waited);
        assert!(!refused.is_retriable());
        assert!(refused
            .to_string()
            .starts_with("kafka error: could not read where \"shop.orders\" [3] ends: "));
        // Not a Kafka error: as it was.
        assert_eq!(
            Error::Closed.reading_the_end_of("t", 0, waited).to_string(),
            "the stream is closed"
        );
    }
}
