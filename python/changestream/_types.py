"""Type aliases shared by the stubs and the public API."""

from typing import Literal

Op = Literal["insert", "update", "delete", "read", "upsert", "truncate", "message"]
"""What kind of change an event is."""
