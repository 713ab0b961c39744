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
    PostgresError,
    SchemaNotFoundError,
    SchemaRegistryError,
    UnavailableType,
    __version__,
    capture,
    group_lag,
)
from changestream._types import Op

# The function follow() shadows the subpackage's name here; `from changestream.follow import`
# still reaches the subpackage.
from changestream.follow import SchemaChangeError, TargetError, follow, read_table

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
    "PostgresError",
    "SchemaChangeError",
    "SchemaNotFoundError",
    "SchemaRegistryError",
    "TargetError",
    "UnavailableType",
    "__version__",
    "capture",
    "follow",
    "group_lag",
    "read_table",
]
