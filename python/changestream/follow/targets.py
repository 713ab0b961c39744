"""Which target a URL or a connection names, and opening it.

The DuckDB and PostgreSQL modules are imported only when asked for, so the SQLite default
needs nothing beyond the standard library and pyarrow.
"""

from __future__ import annotations

import importlib
import sqlite3
from typing import Any

from changestream._core import ConfigError
from changestream.follow._target import Target, TargetError

_SCHEMES = {
    "sqlite": "sqlite",
    "duckdb": "duckdb",
    "postgresql": "postgresql",
    "postgres": "postgresql",
}


def open_target(target: Any) -> Target:
    """The :class:`Target` for a URL (opened here, closed with it) or an open connection."""
    if isinstance(target, str):
        scheme = target.split(":", 1)[0].lower() if ":" in target else ""
        module_name = _SCHEMES.get(scheme)
        if module_name is None:
            raise ConfigError(
                "target must be sqlite:///path, duckdb:///path, postgresql://... or an open "
                f"connection; got a URL with scheme {scheme or '(none)'!r}"
            )
        module = importlib.import_module(f"changestream.follow.{module_name}")
        try:
            connection = module.connect(target)
        except Exception as error:
            if not module.is_failure(error):
                raise
            message = str(error).strip().splitlines()[0] if str(error).strip() else ""
            opening = TargetError(
                f"could not open the {module_name} target ({type(error).__name__}: {message})"
            )
            opening.retriable = True
            raise opening from None
        return _target(module_name, connection, owned=True)
    if isinstance(target, sqlite3.Connection):
        return _target("sqlite", target, owned=False)
    kind = type(target).__module__.split(".", 1)[0].lstrip("_")
    if kind in ("duckdb", "psycopg"):
        return _target("duckdb" if kind == "duckdb" else "postgresql", target, owned=False)
    raise ConfigError(
        f"target must be a URL or a sqlite3, duckdb or psycopg connection, not {type(target)!r}"
    )


def _target(module_name: str, connection: Any, *, owned: bool) -> Target:
    module = importlib.import_module(f"changestream.follow.{module_name}")
    classes = {
        "sqlite": "SqliteTarget",
        "duckdb": "DuckdbTarget",
        "postgresql": "PostgresqlTarget",
    }
    target: Target = getattr(module, classes[module_name])(connection, owned=owned)
    return target
