"""Bounded read-ahead (issue 5): ``max_buffer_bytes`` caps the decoded changes waiting for the
application, fetching pauses while they fill it, and nothing is lost or repeated across the
pauses. Rows are encoded by confluent-kafka's AvroSerializer (see tests/cdc.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from cdc import BW_ORDERS_KEY_SCHEMA, BW_ORDERS_SCHEMA, CdcProducer, Delivered, Row
from changestream import ChangeStream, ConfigError
from group_offsets import committed

pytestmark = [pytest.mark.timeout(180, func_only=True)]

OpenStream = Callable[..., ChangeStream]

MIB = 1 << 20
ROWS = 3_000
PAYLOAD = 2_000  # bytes per row: 3,000 rows hold about 6 MB decoded


def order(i: int) -> Row:
    return {
        "id": i,
        "customer_id": i * 7,
        "quantity": i % 13,
        "status": f"status {i}",
        "weight_kg": i / 4,
        "total": i / 8,
        "paid": i % 2 == 0,
        "payload": bytes([i % 251]) * PAYLOAD,
    }


@pytest.fixture
def produced(cdc: CdcProducer, make_topic: Callable[..., str]) -> tuple[str, list[Delivered]]:
    topic = make_topic(3)
    sent = cdc.produce(
        topic,
        BW_ORDERS_KEY_SCHEMA,
        BW_ORDERS_SCHEMA,
        [({"id": i}, order(i)) for i in range(ROWS)],
    )
    return topic, sent


def waiting_after_a_pause(stream: ChangeStream) -> dict[str, int]:
    """Take one change, give the fetch thread time to fill what it may, and read the stats."""
    next(stream)
    time.sleep(2.0)
    return stream.stats()


def test_read_ahead_stays_within_max_buffer_bytes_and_loses_nothing(
    produced: tuple[str, list[Delivered]], open_stream: OpenStream
) -> None:
    topic, sent = produced
    limit = 2 * MIB
    # Fetching pauses once the decoded half holds a megabyte; one batch sent just before that
    # (a quarter of the half at most, plus the change that crossed it) may come on top.
    bound = limit // 2 + limit // 8 + 64 * 1024
    with open_stream(topic, until="end", max_buffer_bytes=limit) as stream:
        stats = waiting_after_a_pause(stream)
        assert stats["buffer_full"] >= 1, stats
        assert 0 < stats["buffered_bytes"] <= bound, stats
        most_waiting = stats["buffered_bytes"]
        changes = []
        for change in stream:
            changes.append(change)
            most_waiting = max(most_waiting, stream.stats()["buffered_bytes"])
        final = stream.stats()

    assert most_waiting <= bound
    assert final["buffered_bytes"] == 0, final
    assert final["delivered"] == ROWS
    # Everything but the first change, exactly once, in order within each partition.
    seen = {(c.partition, c.offset): c for c in changes}
    assert len(seen) == len(changes) == ROWS - 1
    expected = {(s.partition, s.offset): s for s in sent}
    for position, change in seen.items():
        assert change.after == expected[position].value
    first_missing = set(expected) - set(seen)
    assert len(first_missing) == 1
    for partition in range(3):
        offsets = [c.offset for c in changes if c.partition == partition]
        assert offsets == sorted(offsets)


def test_the_default_budget_reads_further_ahead(
    produced: tuple[str, list[Delivered]], open_stream: OpenStream
) -> None:
    """Against the test above: without the small budget the same read buffers far more, so
    the budget is what held it back."""
    topic, _ = produced
    with open_stream(topic, until="end") as stream:
        stats = waiting_after_a_pause(stream)
        assert stats["buffer_full"] == 0, stats
        assert stats["buffered_bytes"] > 3 * MIB, stats
        assert sum(1 for _ in stream) == ROWS - 1


def test_a_group_keeps_committing_while_fetching_is_paused(
    produced: tuple[str, list[Delivered]], open_stream: OpenStream, stack: dict[str, str]
) -> None:
    topic, sent = produced
    group = f"buffer-{time.monotonic_ns()}"
    with open_stream(
        topic, group_id=group, commit_interval=0.2, max_buffer_bytes=MIB, until="end"
    ) as stream:
        first = next(stream)
        second = next(stream)  # finishes the first
        time.sleep(2.0)
        stats = stream.stats()
        assert stats["buffer_full"] >= 1, stats
        # The application finished one change while the buffer was full: it is committed
        # without the application asking for more.
        offsets = committed(stack, group, topic, 3)
        assert offsets.get(first.partition) == first.offset + 1, offsets
        assert second.partition != first.partition or second.offset > first.offset
        rest = list(stream)
    assert 2 + len(rest) == len(sent)


def test_max_buffer_bytes_below_a_mebibyte_is_a_config_error(open_stream: OpenStream) -> None:
    with pytest.raises(ConfigError, match="max_buffer_bytes must be at least 1048576"):
        open_stream("any-topic", max_buffer_bytes=MIB - 1)
