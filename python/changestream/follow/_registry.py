"""The two things a follower asks the schema registry that a batch does not say.

- The primary key: a ``ChangeBatch`` has the key's fields among the row's columns but does
  not say which they are, so the key schema registered under ``<topic>-key`` (Kafka
  Connect's and Debezium's default subject) names them.
- The ``connect.name`` of each value field (Debezium's ``Json`` and ``VariableScaleDecimal``
  are text in Arrow), from the value schema of the batch's schema id.

Settings are the stream's ``registry`` keys (basic or bearer authentication, TLS files);
credentials never appear in errors.
"""

from __future__ import annotations

import base64
import json
import ssl
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from typing import Any

from changestream._core import SchemaNotFoundError, SchemaRegistryError


class Registry:
    """A minimal Confluent-compatible registry client with a cache."""

    def __init__(self, url: str, settings: Mapping[str, str] | None, timeout: float) -> None:
        settings = dict(settings or {})
        parts = urllib.parse.urlsplit(url.rstrip("/"))
        self._headers: dict[str, str] = {"Accept": "application/json"}
        user_info = settings.get("basic.auth.user.info")
        if parts.username is not None:
            user_info = urllib.parse.unquote(parts.username) + ":"
            user_info += urllib.parse.unquote(parts.password or "")
            parts = parts._replace(netloc=parts.hostname or "")
            if parts.port is not None:
                parts = parts._replace(netloc=f"{parts.netloc}:{parts.port}")
        if user_info:
            token = base64.b64encode(user_info.encode()).decode()
            self._headers["Authorization"] = f"Basic {token}"
        elif settings.get("bearer.auth.token"):
            self._headers["Authorization"] = f"Bearer {settings['bearer.auth.token']}"
            for key, header in (
                ("bearer.auth.logical.cluster", "target-sr-cluster"),
                ("bearer.auth.identity.pool.id", "Confluent-Identity-Pool-Id"),
            ):
                if settings.get(key):
                    self._headers[header] = settings[key]
        self._url = urllib.parse.urlunsplit(parts)
        self._context: ssl.SSLContext | None = None
        if parts.scheme == "https":
            self._context = ssl.create_default_context(cafile=settings.get("ssl.ca.location"))
            if settings.get("ssl.certificate.location"):
                self._context.load_cert_chain(
                    settings["ssl.certificate.location"], settings.get("ssl.key.location")
                )
        self._timeout = timeout
        self._keys: dict[str, list[str] | None] = {}
        self._connect_names: dict[int, dict[str, str]] = {}
        self._envelopes: dict[str, bool] = {}

    def _get(self, path: str) -> Any:
        request = urllib.request.Request(self._url + path, headers=self._headers)
        try:
            with urllib.request.urlopen(
                request, timeout=self._timeout, context=self._context
            ) as response:
                return json.load(response)
        except urllib.error.HTTPError as e:
            if e.code == 404:
                return None
            error = SchemaRegistryError(f"schema registry answered {e.code} to GET {path}")
            error.retriable = e.code >= 500 or e.code == 429
            raise error from None
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", e)
            error = SchemaRegistryError(f"schema registry unreachable for GET {path}: {reason}")
            error.retriable = True
            raise error from None

    def key_columns(self, topic: str) -> list[str] | None:
        """The key's field names (``["_key"]`` for a key that is not a record), or ``None``
        when ``<topic>-key`` has no schema (a keyless topic)."""
        if topic not in self._keys:
            subject = urllib.parse.quote(f"{topic}-key", safe="")
            found = self._get(f"/subjects/{subject}/versions/latest")
            columns: list[str] | None = None
            if found is not None:
                schema = json.loads(found.get("schema", "null"))
                if isinstance(schema, dict) and schema.get("type") == "record":
                    columns = [f["name"] for f in schema["fields"]]
                else:
                    columns = ["_key"]
            self._keys[topic] = columns
        return self._keys[topic]

    def is_envelope(self, topic: str) -> bool:
        """Whether the latest ``<topic>-value`` schema is a Debezium envelope."""
        if topic not in self._envelopes:
            subject = urllib.parse.quote(f"{topic}-value", safe="")
            found = self._get(f"/subjects/{subject}/versions/latest")
            schema = json.loads(found.get("schema", "null")) if found else None
            fields = (
                {f["name"] for f in schema.get("fields", [])} if isinstance(schema, dict) else set()
            )
            self._envelopes[topic] = {"before", "after", "op"} <= fields
        return self._envelopes[topic]

    def connect_names(self, schema_id: int | None) -> dict[str, str]:
        """``{column: connect.name}`` for the row fields of value schema ``schema_id``."""
        if schema_id is None:
            return {}
        if schema_id not in self._connect_names:
            found = self._get(f"/schemas/ids/{schema_id}")
            if found is None:
                raise SchemaNotFoundError(f"schema id {schema_id} not found in the registry")
            self._connect_names[schema_id] = _row_connect_names(json.loads(found["schema"]))
        return self._connect_names[schema_id]


def _row_connect_names(schema: Any) -> dict[str, str]:
    """The ``connect.name`` of each row field: inside a Debezium envelope the ``after``
    record's, else the value record's own."""
    if not isinstance(schema, dict) or schema.get("type") != "record":
        return {}
    fields = {f["name"]: f["type"] for f in schema["fields"]}
    row = schema
    if {"before", "after", "op"} <= fields.keys():
        for branch in _branches(fields["before"]):
            if isinstance(branch, dict) and branch.get("type") == "record":
                row = branch
    names: dict[str, str] = {}
    for f in row["fields"]:
        for branch in _branches(f["type"]):
            if isinstance(branch, dict) and "connect.name" in branch:
                names[f["name"]] = branch["connect.name"]
    return names


def _branches(avro_type: Any) -> list[Any]:
    return avro_type if isinstance(avro_type, list) else [avro_type]
