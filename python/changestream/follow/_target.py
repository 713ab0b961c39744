"""What every follower target does, and the errors a target raises.

A target is a database the follower writes to: it creates tables, adds columns, applies a
collapsed batch (truncate, deletes, upserts) and stores positions in
``_changestream_positions(topic, partition, next_offset)``, all inside one transaction it
begins and commits. The apply loop (``_apply.py``) drives it; ``sqlite.py``, ``duckdb.py``
and ``postgresql.py`` implement it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import TYPE_CHECKING

from changestream._core import ChangeStreamError

if TYPE_CHECKING:  # pyarrow is imported when a follower runs, not with changestream
    import pyarrow as pa  # type: ignore[import-untyped]

POSITIONS_TABLE = "_changestream_positions"


class TargetError(ChangeStreamError):
    """The target database refused or failed a write (locked, read-only, full, gone).

    Nothing of the batch is applied and the positions stay where they were, so the next
    run resumes there. ``retriable`` is true when waiting may help (a lock).
    """


class SchemaChangeError(ChangeStreamError):
    """A column changed type in a way the target table cannot follow.

    ``topic``, ``partition`` and ``offset`` name the first change of the batch that
    carried the new schema; nothing of that batch is applied.
    """


def quote(name: str) -> str:
    """An SQL identifier, quoted (the same rule in SQLite, DuckDB and PostgreSQL)."""
    return '"' + name.replace('"', '""') + '"'


class Target(ABC):
    """One database a follower writes to."""

    name: str
    """The target's name in messages (``sqlite``, ``duckdb``, ``postgresql``)."""

    @abstractmethod
    def sql_type(self, kind: str, field: pa.Field) -> str:
        """The column type for a column of ``kind`` (see ``_types.KINDS``)."""

    @abstractmethod
    def can_store(self, stored: str, new: str) -> bool:
        """Whether a column declared ``stored`` can take values of type ``new``."""

    @abstractmethod
    def columns(self, table: str) -> dict[str, str] | None:
        """The table's ``{column: declared type}``, or ``None`` when it does not exist."""

    @abstractmethod
    def positions(self) -> dict[tuple[str, int], int]:
        """The stored positions (creating the positions table if needed)."""

    @abstractmethod
    def begin(self) -> None: ...

    @abstractmethod
    def commit(self) -> None: ...

    @abstractmethod
    def rollback(self) -> None: ...

    @abstractmethod
    def execute(self, statement: str) -> None:
        """Run one SQL statement without parameters in the open transaction."""

    def create_table(self, table: str, columns: Mapping[str, str], key: list[str]) -> None:
        definitions = ", ".join(f"{quote(c)} {t}" for c, t in columns.items())
        primary = ", ".join(quote(c) for c in key)
        self.execute(f"CREATE TABLE {quote(table)} ({definitions}, PRIMARY KEY ({primary}))")

    def add_column(self, table: str, column: str, sql_type: str) -> None:
        self.execute(f"ALTER TABLE {quote(table)} ADD COLUMN {quote(column)} {sql_type}")

    @abstractmethod
    def truncate(self, table: str) -> None: ...

    @abstractmethod
    def delete(self, table: str, keys: pa.Table, kinds: Mapping[str, str]) -> None:
        """Delete the rows whose key (the columns of ``keys``) is in ``keys``."""

    @abstractmethod
    def upsert(
        self,
        table: str,
        rows: pa.Table,
        key: list[str],
        keep: frozenset[str],
        kinds: Mapping[str, str],
    ) -> None:
        """Insert ``rows``, replacing existing rows of the same key except the ``keep``
        columns (which stay as stored)."""

    @abstractmethod
    def save_positions(self, positions: Mapping[tuple[str, int], int]) -> None: ...

    @abstractmethod
    def is_failure(self, error: BaseException) -> bool:
        """Whether ``error`` is the database refusing or failing (to become a TargetError)."""

    def is_transient(self, error: BaseException) -> bool:
        """Whether waiting may heal ``error`` (a lock held by someone else)."""
        return False

    @abstractmethod
    def close(self) -> None:
        """Close the connection if the target opened it (a connection passed in stays open)."""
