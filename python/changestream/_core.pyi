"""Type stubs for the compiled module ``changestream._core``.

Checked against the compiled module by ``make lint`` (``mypy.stubtest``).
"""

import datetime
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any, Final, Literal, TypeAlias, final

from changestream._types import Op

# What ``oauth_cb`` returns: ``(token, expiry_seconds_since_epoch[, principal[, extensions]])``
# (extensions must be empty: they cannot be sent).
_OAuthToken: TypeAlias = (
    tuple[str, float] | tuple[str, float, str] | tuple[str, float, str, Mapping[str, str] | None]
)

__all__ = [
    "UNAVAILABLE",
    "BatchIterator",
    "Change",
    "ChangeBatch",
    "ChangeStream",
    "ChangeStreamError",
    "ConfigError",
    "DeadLetter",
    "DecodeError",
    "Interval",
    "KafkaError",
    "PostgresError",
    "SchemaNotFoundError",
    "SchemaRegistryError",
    "UnavailableType",
    "__version__",
    "capture",
    "group_lag",
]
__version__: str

@final
class Interval:
    """A calendar interval (PostgreSQL ``interval``, Avro ``duration``).

    Months, days and microseconds are kept apart, as PostgreSQL keeps them:
    neither a month nor a day has a fixed length, so no ``timedelta`` is exact.
    """

    def __new__(cls, months: int = 0, days: int = 0, microseconds: int = 0) -> Interval: ...
    @property
    def months(self) -> int:
        """Whole months (a year is 12)."""
    @property
    def days(self) -> int:
        """Whole days."""
    @property
    def microseconds(self) -> int:
        """Microseconds."""
    def __eq__(self, other: object, /) -> bool: ...
    def __hash__(self) -> int: ...
    def __reduce__(self) -> tuple[type[Interval], tuple[int, int, int]]: ...

@final
class UnavailableType:
    """The type of :data:`UNAVAILABLE`; it has that one instance."""

    def __reduce__(self) -> str: ...

UNAVAILABLE: Final[UnavailableType]
"""A value Debezium did not have: an unchanged TOASTed column in an update or delete.

Debezium writes the placeholder ``__debezium_unavailable_value`` there; changestream
gives this object instead, so the placeholder never reaches a derived store as data.
"""

@final
class Change:
    """One change event: what happened to one row, and where it sits in Kafka."""

    @property
    def op(self) -> Op:
        """``insert``, ``update``, ``delete``, ``read`` (snapshot), ``upsert`` (a flat row), ``truncate`` or ``message``."""
    @property
    def key(self) -> Any:
        """The decoded message key (a dict for record keys), or ``None`` for an unkeyed message."""
    @property
    def before(self) -> dict[str, Any] | None:
        """The row before the change, when the format carries it (a ``dict`` for record rows)."""
    @property
    def after(self) -> Any:
        """The row after the change (a ``dict`` for record rows; the value itself on a topic whose
        values are not records); ``None`` for deletes."""
    @property
    def table(self) -> str | None:
        """The table the change belongs to."""
    @property
    def source(self) -> dict[str, Any] | None:
        """Source metadata (Debezium ``source`` block), when the format carries it."""
    @property
    def transaction(self) -> dict[str, Any] | None:
        """Debezium's ``transaction`` block (``id``, ``total_order``, ``data_collection_order``), when present."""
    @property
    def tombstone(self) -> bool:
        """Whether the message was a tombstone (null value): a flat-row delete, or Debezium's after ``emit_tombstones=True``."""
    @property
    def topic(self) -> str:
        """The Kafka topic the change was read from."""
    @property
    def partition(self) -> int:
        """The Kafka partition the change was read from."""
    @property
    def offset(self) -> int:
        """The change's offset in its partition."""
    @property
    def timestamp(self) -> datetime.datetime | None:
        """The Kafka message timestamp (timezone-aware, UTC), if the message has one."""
    def to_dict(self) -> dict[str, Any]:
        """The change as a plain ``dict`` (``op``, ``table``, ``key``, ``before``, ``after``,
        ``source``, ``transaction``, ``tombstone``, ``topic``, ``partition``, ``offset``,
        ``timestamp``): for JSON, DataFrames, or systems that take no custom objects."""
    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        """Pickles as its values (for multiprocessing, joblib, Airflow's XCom): the copy is an
        equal ``Change``, unattached to any stream."""
    @classmethod
    def _restore(
        cls,
        op: str,
        key: Any,
        before: Any,
        after: Any,
        source: Any,
        transaction: Any,
        tombstone: bool,
        table: str | None,
        topic: str,
        partition: int,
        offset: int,
        timestamp_ms: int | None,
    ) -> Change:
        """Rebuild a pickled change from what ``__reduce__`` gave."""
    def _repr_html_(self) -> str:
        """The HTML a notebook shows: op, table, key and the row; for an update, only the columns
        that changed, before → after."""

@final
class ChangeBatch:
    """Changes of one table under one value schema, as an Arrow record batch.

    Exports the Arrow PyCapsule interface, so ``pyarrow.record_batch(batch)``,
    ``polars.DataFrame(batch)`` and DuckDB read its buffers without a copy. Columns:
    the row's (from ``after``; for deletes from ``before``, or the key's fields for a
    tombstone), then ``_op``, ``_topic``, ``_partition``, ``_offset``, ``_timestamp``
    and, where the format carries them, ``_lsn``, ``_txid``, ``_source_ts`` and
    ``_unavailable`` (the columns Debezium did not have: they are null). Values equal
    the row iterator's, in Arrow types: decimals ``decimal128(38, scale)``, timestamps
    with their unit (zoned ones in UTC), ``VariableScaleDecimal`` as exact text,
    intervals ``month_day_nano``, UUIDs ``arrow.uuid``.
    """

    @property
    def table(self) -> str | None:
        """The table the changes belong to."""
    @property
    def schema_id(self) -> int | None:
        """The registry id of the value schema the changes were written with."""
    @property
    def num_rows(self) -> int:
        """How many changes (rows) the batch holds."""
    def __len__(self) -> int: ...
    def __arrow_c_schema__(self) -> object:
        """The Arrow schema as an ``arrow_schema`` PyCapsule."""
    def __arrow_c_array__(self, requested_schema: object | None = None) -> tuple[object, object]:
        """The batch as a struct array: ``(arrow_schema, arrow_array)`` PyCapsules."""
    def __arrow_c_stream__(self, requested_schema: object | None = None) -> object:
        """The batch as an ``arrow_array_stream`` PyCapsule of one struct array."""
    def to_pyarrow(self) -> Any:
        """A ``pyarrow.RecordBatch`` of the same buffers (needs pyarrow: ``changestream[pyarrow]``)."""
    def to_pandas(self, **kwargs: Any) -> Any:
        """A ``pandas.DataFrame`` through pyarrow (needs both: ``changestream[pandas]``); ``kwargs``
        go to ``pyarrow.RecordBatch.to_pandas``."""
    def to_polars(self) -> Any:
        """A ``polars.DataFrame`` of the same buffers (needs polars: ``changestream[polars]``).

        polars has no calendar interval and no 256-bit decimal: such columns become a
        ``{months, days, nanoseconds}`` struct and decimal text.
        """
    def _repr_html_(self) -> str:
        """The HTML a notebook shows: the table, the schema, and the first rows."""

@final
class BatchIterator:
    """What :meth:`ChangeStream.batches` returns: iterate it with ``for`` or ``async for``."""

    def __iter__(self) -> BatchIterator: ...
    def __next__(self) -> ChangeBatch: ...
    def __aiter__(self) -> BatchIterator: ...
    def __anext__(self) -> Awaitable[ChangeBatch]:
        """The next batch; cancelling the wait loses nothing."""

@final
class DeadLetter:
    """A message that could not be decoded, kept raw (``on_decode_error="dead_letter"``)."""

    @property
    def topic(self) -> str:
        """The Kafka topic of the message."""
    @property
    def partition(self) -> int:
        """The Kafka partition of the message."""
    @property
    def offset(self) -> int:
        """The message's offset in its partition."""
    @property
    def timestamp(self) -> datetime.datetime | None:
        """The Kafka message timestamp (timezone-aware, UTC), if it has one."""
    @property
    def key(self) -> bytes | None:
        """The raw key bytes."""
    @property
    def value(self) -> bytes | None:
        """The raw value bytes."""
    @property
    def headers(self) -> list[tuple[str, bytes | None]]:
        """The message headers, raw."""
    @property
    def error(self) -> ChangeStreamError:
        """Why the message could not be decoded."""

@final
class ChangeStream:
    """Follow one or more change-event topics from Kafka.

    ``ChangeStream(topics, *, bootstrap_servers, schema_registry_url, ...)`` yields one
    :class:`Change` per message (``for``, ``async for``, :meth:`poll`) or Arrow batches
    (:meth:`batches`); use it as a context manager, which closes it.

    Arguments:

    - ``topics``: a topic name or a sequence of them.
    - ``bootstrap_servers``: Kafka brokers, ``"host:port,..."``.
    - ``schema_registry_url``: a Confluent-compatible schema registry (for Apicurio its
      ``/apis/ccompat/v7`` API).
    - ``group_id``: a consumer group to join; positions are committed to it. Without one,
      every partition is read and nothing is committed (keep :meth:`positions` yourself).
    - ``start``: ``"committed"`` (the default with a group; partitions without a committed
      position start at the earliest), ``"earliest"`` (the default without), ``"latest"``,
      an aware ``datetime``, or ``{(topic, partition): offset}`` (what :meth:`positions`
      returned).
    - ``until``: ``None`` (follow forever), ``"end"`` (each partition's end when it is
      assigned) or an aware ``datetime``.
    - ``commit``: ``"auto"`` (asking for the next change finishes the previous one) or
      ``"manual"`` (nothing is finished until :meth:`commit`).
    - ``commit_interval``: seconds between commits of finished positions.
    - ``on_decode_error``: ``"raise"``, ``"skip"`` or ``"dead_letter"`` (see
      :meth:`dead_letters`).
    - ``format``: ``"auto"`` (detected per value schema), ``"debezium"`` or ``"row"``.
    - ``emit_tombstones``: deliver Debezium's tombstones as deletes with ``tombstone=True``.
    - ``reader_schema``: an Avro schema (JSON text or dict), or ``{topic: schema}``, to read
      every value through schema resolution.
    - ``kafka``: librdkafka settings, passed through (``security.protocol``, ...).
    - ``registry``: schema registry client settings, in confluent-kafka's names
      (``basic.auth.user.info``, ``bearer.auth.token``, ``ssl.ca.location``, ...).
    - ``registry_timeout``: seconds a schema lookup may retry before it fails.
    - ``max_buffer_bytes``: the most memory read-ahead may take (at least 1 MiB).
    - ``progress``: show a progress bar for bounded reads (tqdm when installed).
    - ``oauth_cb``: for ``sasl.mechanism=OAUTHBEARER``, a callable taking the
      ``sasl.oauthbearer.config`` setting (a str) and returning ``(token, expiry)``, the
      expiry in seconds since the epoch (optionally also a principal), as confluent-kafka's.
      It runs when the stream opens and whenever the token is due for a refresh, on the
      thread that reads the stream; if it raises, the stream raises :class:`KafkaError`.
    """

    def __new__(
        cls,
        topics: str | Sequence[str],
        *,
        bootstrap_servers: str,
        schema_registry_url: str,
        group_id: str | None = None,
        start: Literal["committed", "earliest", "latest"]
        | datetime.datetime
        | Mapping[tuple[str, int], int]
        | None = None,
        until: Literal["end"] | datetime.datetime | None = None,
        commit: Literal["auto", "manual"] = "auto",
        commit_interval: float = 5.0,
        on_decode_error: Literal["raise", "skip", "dead_letter"] = "raise",
        format: Literal["auto", "debezium", "row"] = "auto",
        emit_tombstones: bool = False,
        reader_schema: str | Mapping[str, Any] | None = None,
        kafka: Mapping[str, str | int | float | bool] | None = None,
        registry: Mapping[str, str] | None = None,
        registry_timeout: float = 30.0,
        max_buffer_bytes: int = 67108864,
        progress: bool = False,
        oauth_cb: Callable[[str], _OAuthToken] | None = None,
    ) -> ChangeStream: ...
    def __repr__(self) -> str: ...
    def __iter__(self) -> ChangeStream: ...
    def __next__(self) -> Change: ...
    def poll(self, timeout: float | None = None) -> Change | None:
        """The next change, or ``None`` when ``timeout`` seconds pass first (or a bounded stream ended)."""
    def commit(self, change: Change | None = None) -> None:
        """Finish what was handed out and commit the finished positions to the group now.

        Without ``change``: every change handed out, on every partition. With it: that
        change and what came before it on its partition, and on the other partitions what
        was handed out before it.

        With the broker down, the commit waits for the group's coordinator up to the session
        timeout, then raises :class:`KafkaError`. Ctrl-C ends the wait at once; the commit
        then goes on in the background.
        """
    def positions(self) -> dict[tuple[str, int], int]:
        """``{(topic, partition): next_offset}`` after what was finished; pass it back as ``start=``.

        After :meth:`close`, the positions the stream closed at.
        """
    def lag(self) -> dict[tuple[str, int], int]:
        """Messages between what was finished and the end, per owned partition.

        A group stream first waits (up to 30 s) for its first assignment. After
        :meth:`close`, the lag when it closed.
        """
    def stats(self) -> dict[str, int]:
        """Counters: delivered, skipped, dead_lettered, committed, commit_failures, dropped_on_revoke, rebalances, broker_disconnects, buffered_bytes (a level), buffer_full."""
    def dead_letters(self) -> list[DeadLetter]:
        """Take the messages set aside under ``on_decode_error="dead_letter"`` since the last call."""
    def batches(self, max_rows: int = 10_000, max_wait: float = 1.0) -> BatchIterator:
        """Iterate over :class:`ChangeBatch` es instead of single changes.

        Each batch holds changes of one table under one value schema, at most
        ``max_rows``, handed over at the latest ``max_wait`` seconds after its first
        change arrived. Asking for the next batch finishes the previous one.

        From this call on the stream reads messages straight into Arrow columns, so it
        no longer hands out single changes: iterating it afterwards raises
        :class:`ConfigError` (open a second stream to iterate).
        """
    def close(self) -> None:
        """Stop fetching, commit the finished positions and leave the group. Idempotent.

        Its commit waits as :meth:`commit` does, and Ctrl-C ends the wait likewise.
        """
    def __enter__(self) -> ChangeStream: ...
    def __exit__(self, *exc_info: object) -> None:
        """Close; when an exception leaves the block, commit nothing more."""
    def __aiter__(self) -> AsyncIterator[Change]:
        """``async for``: the changes already fetched without awaiting, awaiting only when
        none is. Cancelling loses nothing."""
    def __anext__(self) -> Awaitable[Change]:
        """The next change, taken when awaited; at once when one is already fetched. Cancelling
        loses nothing."""
    def __aenter__(self) -> Awaitable[ChangeStream]: ...
    def __aexit__(self, *exc_info: object) -> Awaitable[None]:
        """Close; when an exception leaves the block, commit nothing more. The close runs
        off the event loop's thread, so other tasks run while it commits."""

def group_lag(
    topics: str | Sequence[str],
    *,
    group_id: str,
    bootstrap_servers: str,
    kafka: Mapping[str, str | int | float | bool] | None = None,
    timeout: float = 30.0,
) -> list[dict[str, Any]]:
    """Where consumer group ``group_id`` stands on every partition of ``topics``, read without
    joining the group (its members are not disturbed).

    Returns one dict per partition, sorted by topic and partition: ``topic``, ``partition``,
    ``committed`` (the group's next offset, ``None`` if it has committed nothing there),
    ``start`` and ``end`` (the oldest offset still in Kafka and the next one to be written)
    and ``lag`` (messages the group has yet to read: from ``committed``, or from ``start``
    when there is no committed position). ``kafka`` takes librdkafka settings as
    ``ChangeStream`` does; each request gives up after ``timeout`` seconds.
    """

class ChangeStreamError(Exception):
    """Root of every error changestream raises."""

    retriable: bool
    topic: str | None
    partition: int | None
    offset: int | None

class DecodeError(ChangeStreamError): ...
class SchemaRegistryError(ChangeStreamError): ...
class SchemaNotFoundError(SchemaRegistryError): ...
class KafkaError(ChangeStreamError): ...
class ConfigError(ChangeStreamError): ...
class PostgresError(ChangeStreamError): ...

def capture(
    *,
    dsn: str,
    bootstrap_servers: str,
    schema_registry_url: str,
    tables: Sequence[str] | None = None,
    topic_prefix: str = "changestream",
    slot: str = "changestream",
    publication: str = "changestream",
    snapshot: Literal["initial", "never"] = "initial",
    format: Literal["debezium", "rows"] = "debezium",
    until: Literal["now"] | None = None,
    tombstones: bool = True,
    transaction_metadata: bool = False,
    kafka: Mapping[str, str | int | float | bool] | None = None,
    registry: Mapping[str, str] | None = None,
) -> dict[str, int]:
    """Capture PostgreSQL changes into Kafka as Debezium writes them (or flat rows); blocks.

    Creates the publication and the replication slot when absent, snapshots the tables when
    the slot is new (``snapshot="initial"``), then streams. An LSN is confirmed to PostgreSQL
    only after Kafka acknowledged everything up to its transaction's commit. ``until="now"``
    returns once everything written before the call (commits and messages) is in Kafka;
    otherwise it runs until Ctrl-C, which stops it after a flush and re-raises
    ``KeyboardInterrupt``. ``transaction_metadata=True`` is Debezium's
    ``provide.transaction.metadata``: a ``transaction`` block in every streamed event and
    BEGIN/END events on ``<topic_prefix>.transaction`` (``format="debezium"`` only). Returns counters: snapshot_rows, inserts, updates, deletes, truncates, messages, transactions, produced,
    confirmed_lsn (the LSN last confirmed to PostgreSQL, as an integer).
    """
