"""changestream: follow a database's change stream from Apache Kafka.

Decodes Confluent-framed Avro change events (Debezium envelopes, Bottled Water
and other flat-row upsert topics) with a schema registry, in Rust.
"""

from changestream._core import (
    UNAVAILABLE,
    Change,
    ChangeBatch,
    ChangeStream,
    ChangeStreamError,
    ConfigError,
    DeadLetter,
    DecodeError,
    Interval,
    KafkaError,
    SchemaNotFoundError,
    SchemaRegistryError,
    UnavailableType,
    __version__,
    group_lag,
)
from changestream._types import Op

__all__ = [
    "UNAVAILABLE",
    "Change",
    "ChangeBatch",
    "ChangeStream",
    "ChangeStreamError",
    "ConfigError",
    "DeadLetter",
    "DecodeError",
    "Interval",
    "KafkaError",
    "Op",
    "SchemaNotFoundError",
    "SchemaRegistryError",
    "UnavailableType",
    "__version__",
    "group_lag",
]
