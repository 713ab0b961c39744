"""changestream: follow a database's change stream from Apache Kafka.

Decodes Confluent-framed Avro change events (Debezium envelopes, Bottled Water
and other flat-row upsert topics) with a schema registry, in Rust.
"""

from changestream._core import (
    Change,
    ChangeStream,
    ChangeStreamError,
    ConfigError,
    DeadLetter,
    DecodeError,
    KafkaError,
    SchemaNotFoundError,
    SchemaRegistryError,
    __version__,
)
from changestream._types import Op

__all__ = [
    "Change",
    "ChangeStream",
    "ChangeStreamError",
    "ConfigError",
    "DeadLetter",
    "DecodeError",
    "KafkaError",
    "Op",
    "SchemaNotFoundError",
    "SchemaRegistryError",
    "__version__",
]
