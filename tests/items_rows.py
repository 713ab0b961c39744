"""Bottled Water-style rows of an ``items`` table keyed by ``id``, each produced to partition
``id % partitions``: the workload of the positions and ETL-pattern tests. Encoded by
confluent-kafka's AvroSerializer (through :class:`cdc.CdcProducer`)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from cdc import CdcProducer, Delivered, bottled_water_key_schema, bottled_water_row_schema

KEY = bottled_water_key_schema("items", [("id", "long")])
ROW = bottled_water_row_schema("items", [("id", "long"), ("name", "string")])


def row(i: int) -> dict[str, Any]:
    """The row of item ``i``."""
    return {"id": i, "name": f"item {i}"}


def produce(cdc: CdcProducer, topic: str, ids: Iterable[int], partitions: int) -> list[Delivered]:
    """Produce rows ``ids`` to partition ``id % partitions`` each."""
    return cdc.produce(
        topic,
        KEY,
        ROW,
        [({"id": i}, row(i)) for i in ids],
        partition=lambda key: key["id"] % partitions,
    )
