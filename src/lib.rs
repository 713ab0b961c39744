//! changestream follows a database's change stream from Apache Kafka.
//!
//! Change data capture tools (Debezium, Bottled Water) write every change of a database into
//! Kafka topics as Confluent-framed Avro. This crate reads them back as [`Change`]s: it fetches
//! with librdkafka ([`kafka`]), splits the framing ([`frame`]), fetches writer schemas from a
//! schema registry ([`registry`]), decodes Avro ([`avro`]), reads the change envelope
//! ([`change`]), and tracks which positions the application has finished so that a restart
//! resumes without skipping anything; [`group`] reads a consumer group's lag without joining
//! it; [`arrow`] turns a batch of changes into an Arrow record batch. [`capture`] is the other
//! half: PostgreSQL → Kafka over logical replication, writing what Debezium's PostgreSQL
//! connector writes. The Python package `changestream` wraps it (`src/python/`, behind the `python`
//! feature).

pub mod arrow;
pub mod avro;
pub mod capture;
pub mod change;
pub mod error;
pub mod frame;
pub mod group;
pub mod kafka;
pub mod name;
pub mod positions;
pub mod prefetch;
pub mod process;
pub mod registry;
pub mod runtime;
pub mod threads;

#[cfg(feature = "python")]
mod python;

pub use change::{Change, ChangeDecoder, Op, Position};
pub use error::{Error, Location, Result};
pub use kafka::{
    ChangeConsumer, CommitPolicy, DeadLetter, Next, NextBatch, OnDecodeError, Start, StreamConfig,
    Until,
};
