"""Decode-error policies (issue 4): ``on_decode_error="raise" | "skip" | "dead_letter"``.

Partition 1 of a 2-partition topic holds good rows at offsets 0-2, a message with a bad magic
byte at offset 3, and good rows at 4-5 (so the numbers are not defaults); partition 0 holds
two good rows. Rows are encoded by confluent-kafka's AvroSerializer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from cdc import CdcProducer, Delivered, bottled_water_key_schema, bottled_water_row_schema
from changestream import (
    Change,
    ChangeStream,
    ChangeStreamError,
    ConfigError,
    DeadLetter,
    DecodeError,
)
from group_offsets import committed

pytestmark = [pytest.mark.timeout(120, func_only=True)]

OpenStream = Callable[..., ChangeStream]

KEY = bottled_water_key_schema("items", [("id", "long")])
ROW = bottled_water_row_schema("items", [("id", "long"), ("name", "string")])
BAD = 1  # the partition with the bad message
BAD_OFFSET = 3
BAD_HEADERS = [("trace", b"13")]  # a dead letter keeps the message's headers


def row(i: int) -> dict[str, Any]:
    return {"id": i, "name": f"item {i}"}


def produce_rows(cdc: CdcProducer, topic: str, ids: list[int], partition: int) -> list[Delivered]:
    return cdc.produce(topic, KEY, ROW, [({"id": i}, row(i)) for i in ids], partition=partition)


def produce_bad(cdc: CdcProducer, topic: str, i: int, partition: int) -> Delivered:
    """A message whose value starts with magic byte 1 instead of 0 (an otherwise good body)."""
    key = cdc.serialize(topic, KEY, {"id": i}, is_key=True)
    value = b"\x01" + cdc.serialize(topic, ROW, row(i))[1:]
    [bad] = cdc.produce_raw(topic, [(key, value)], partition=partition, headers=BAD_HEADERS)
    return bad


class Layout:
    """What the topic holds."""

    def __init__(
        self,
        cdc: CdcProducer,
        topic: str,
        bad: Callable[[CdcProducer, str, int, int], Delivered] = produce_bad,
    ) -> None:
        self.topic = topic
        self.before = produce_rows(cdc, topic, [10, 11, 12], BAD)
        self.bad = bad(cdc, topic, 13, BAD)
        self.after = produce_rows(cdc, topic, [14, 15], BAD)
        self.other = produce_rows(cdc, topic, [20, 21], 1 - BAD)
        assert [d.offset for d in self.before] == [0, 1, 2]
        assert self.bad.offset == BAD_OFFSET
        assert [d.offset for d in self.after] == [4, 5]

    @property
    def good(self) -> list[Delivered]:
        return self.before + self.after + self.other


@pytest.fixture
def layout(cdc: CdcProducer, make_topic: Callable[..., str]) -> Layout:
    return Layout(cdc, make_topic(2))


def by_partition(changes: list[Change]) -> dict[int, list[tuple[int, Any]]]:
    """``{partition: [(offset, after), ...]}`` in delivery order."""
    out: dict[int, list[tuple[int, Any]]] = {}
    for c in changes:
        out.setdefault(c.partition, []).append((c.offset, c.after))
    return out


def assert_is_the_bad_message(error: BaseException, layout: Layout) -> None:
    assert isinstance(error, DecodeError), repr(error)
    assert isinstance(error, ChangeStreamError)
    assert (error.topic, error.partition, error.offset) == (layout.topic, BAD, BAD_OFFSET)
    assert error.retriable is False


@pytest.mark.parametrize("grouped", [False, True], ids=["no-group", "group"])
def test_skip_delivers_the_good_rows_and_counts_the_bad_one(
    layout: Layout,
    open_stream: OpenStream,
    stack: dict[str, str],
    grouped: bool,
) -> None:
    group = f"group-{layout.topic}"
    options: dict[str, Any] = {"group_id": group} if grouped else {}
    with open_stream(layout.topic, until="end", on_decode_error="skip", **options) as stream:
        changes = list(stream)
        stats = stream.stats()
        assert stream.dead_letters() == []
        # The skipped message is behind the finished position: a resume does not see it again.
        assert stream.positions() == {(layout.topic, BAD): 6, (layout.topic, 1 - BAD): 2}
    assert by_partition(changes) == {
        BAD: [(d.offset, d.value) for d in layout.before + layout.after],
        1 - BAD: [(d.offset, d.value) for d in layout.other],
    }
    assert stats["skipped"] == 1
    assert stats["delivered"] == 7
    assert stats["dead_lettered"] == 0
    if grouped:
        assert committed(stack, group, layout.topic, 2) == {BAD: 6, 1 - BAD: 2}


@pytest.mark.parametrize("grouped", [False, True], ids=["no-group", "group"])
def test_dead_letter_sets_the_raw_message_aside(
    layout: Layout,
    open_stream: OpenStream,
    stack: dict[str, str],
    grouped: bool,
) -> None:
    group = f"group-{layout.topic}"
    options: dict[str, Any] = {"group_id": group} if grouped else {}
    with open_stream(layout.topic, until="end", on_decode_error="dead_letter", **options) as stream:
        changes = list(stream)
        letters = stream.dead_letters()
        assert stream.dead_letters() == [], "dead_letters() hands each letter out once"
        stats = stream.stats()
    assert by_partition(changes) == {
        BAD: [(d.offset, d.value) for d in layout.before + layout.after],
        1 - BAD: [(d.offset, d.value) for d in layout.other],
    }
    assert stats["dead_lettered"] == 1
    assert stats["skipped"] == 0
    assert stats["delivered"] == 7

    [letter] = letters
    assert isinstance(letter, DeadLetter)
    bad = layout.bad
    assert (letter.topic, letter.partition, letter.offset) == (layout.topic, BAD, BAD_OFFSET)
    assert letter.value == bad.value_bytes
    assert letter.key == bad.key_bytes
    assert letter.headers == BAD_HEADERS
    assert letter.timestamp == bad.timestamp
    assert_is_the_bad_message(letter.error, layout)
    assert "magic" in str(letter.error).lower(), str(letter.error)
    if grouped:
        # A dead letter is done with: the group's position moves past it.
        assert committed(stack, group, layout.topic, 2) == {BAD: 6, 1 - BAD: 2}


def test_dead_letters_are_available_as_soon_as_iteration_passed_them(
    layout: Layout, open_stream: OpenStream
) -> None:
    start = {(layout.topic, 1 - BAD): 2}
    with open_stream(layout.topic, start=start, on_decode_error="dead_letter") as stream:
        # Only partition 1 has anything to read from there on.
        changes = [next(stream) for _ in range(3)]
        assert [c.offset for c in changes] == [0, 1, 2]
        assert stream.dead_letters() == []
        fourth = next(stream)
        assert (fourth.partition, fourth.offset) == (BAD, 4)
        [letter] = stream.dead_letters()
        assert letter.offset == BAD_OFFSET


def test_raise_delivers_the_rows_before_and_then_raises(
    layout: Layout, open_stream: OpenStream
) -> None:
    # Start partition 0 at its end, so the order of delivery is partition 1's log order.
    with open_stream(layout.topic, start={(layout.topic, 1 - BAD): 2}, until="end") as stream:
        delivered = [next(stream) for _ in layout.before]
        assert [(c.offset, c.after) for c in delivered] == [
            (d.offset, d.value) for d in layout.before
        ]
        with pytest.raises(DecodeError) as raised:
            next(stream)
        assert_is_the_bad_message(raised.value, layout)
        # The stream stays failed: it never goes past the bad message.
        with pytest.raises(DecodeError):
            next(stream)
        # Partition 0 was read from its end (2); partition 1 stops before the bad message.
        assert stream.positions() == {(layout.topic, BAD): BAD_OFFSET, (layout.topic, 1 - BAD): 2}
        assert stream.stats()["skipped"] == 0


def test_raise_in_a_group_commits_up_to_the_bad_message_never_past_it(
    layout: Layout, open_stream: OpenStream, stack: dict[str, str]
) -> None:
    group = f"group-{layout.topic}"
    delivered: list[Change] = []

    def read_until_it_raises(stream: ChangeStream) -> None:
        while True:
            change = stream.poll(timeout=30)
            assert change is not None, "neither a change nor the error within 30 s"
            delivered.append(change)

    with open_stream(layout.topic, group_id=group, commit_interval=0.2) as stream:
        with pytest.raises(DecodeError) as raised:
            read_until_it_raises(stream)
        assert_is_the_bad_message(raised.value, layout)
    assert sorted((c.partition, c.offset) for c in delivered if c.partition == BAD) == [
        (BAD, 0),
        (BAD, 1),
        (BAD, 2),
    ]
    offsets = committed(stack, group, layout.topic, 2)
    assert offsets[BAD] == BAD_OFFSET, offsets
    # Reopening the group: the bad message is the first thing it meets on that partition.
    with (
        open_stream(layout.topic, group_id=group, start={(layout.topic, 1 - BAD): 2}) as stream,
        pytest.raises(DecodeError) as raised,
    ):
        stream.poll(timeout=30)
    assert_is_the_bad_message(raised.value, layout)
    assert committed(stack, group, layout.topic, 2)[BAD] == BAD_OFFSET


def test_skip_at_the_end_of_a_partition_still_ends_a_bounded_read(
    cdc: CdcProducer, make_topic: Callable[..., str], open_stream: OpenStream
) -> None:
    topic = make_topic(1)
    good = produce_rows(cdc, topic, [1, 2], 0)
    bad = produce_bad(cdc, topic, 3, 0)
    assert bad.offset == 2
    for policy in ("skip", "dead_letter"):
        with open_stream(topic, until="end", on_decode_error=policy) as stream:
            assert [c.offset for c in stream] == [d.offset for d in good]
            # A dead letter is done with; a skipped message may be left before the position
            # (a resume skips it again) but nothing after it.
            expected = {3} if policy == "dead_letter" else {2, 3}
            assert stream.positions()[(topic, 0)] in expected, policy
            assert len(stream.dead_letters()) == (policy == "dead_letter")


# ---------------------------------------------------------------------------
# batches(): messages are read straight into rows, runs of them at once
# ---------------------------------------------------------------------------


def produce_truncated(cdc: CdcProducer, topic: str, i: int, partition: int) -> Delivered:
    """A well-framed message whose Avro body ends two bytes early."""
    key = cdc.serialize(topic, KEY, {"id": i}, is_key=True)
    value = cdc.serialize(topic, ROW, row(i))[:-2]
    [bad] = cdc.produce_raw(topic, [(key, value)], partition=partition, headers=BAD_HEADERS)
    return bad


@pytest.fixture(params=["bad-magic", "truncated-body"])
def run_layout(
    request: pytest.FixtureRequest, cdc: CdcProducer, make_topic: Callable[..., str]
) -> Layout:
    """The layout above, with a bad message whose framing is wrong (the run of rows ends
    before it) or whose body is (the run is read into rows up to it, then decoded change by
    change)."""
    bad = produce_bad if request.param == "bad-magic" else produce_truncated
    return Layout(cdc, make_topic(2), bad)


def batch_rows(stream: ChangeStream, **options: Any) -> dict[int, list[tuple[int, int]]]:
    """``{partition: [(offset, id), ...]}`` of every batch, in delivery order."""
    out: dict[int, list[tuple[int, int]]] = {}
    for batch in stream.batches(max_wait=30.0, **options):
        table = batch.to_pyarrow()
        for partition, offset, i in zip(
            table.column("_partition").to_pylist(),
            table.column("_offset").to_pylist(),
            table.column("id").to_pylist(),
            strict=True,
        ):
            out.setdefault(partition, []).append((offset, i))
    return out


def expected_rows(deliveries: list[Delivered]) -> list[tuple[int, int]]:
    return [(d.offset, d.value["id"]) for d in deliveries]


@pytest.mark.parametrize("policy", ["skip", "dead_letter"])
def test_batches_apply_the_policy_to_the_bad_message_alone(
    run_layout: Layout, open_stream: OpenStream, policy: str
) -> None:
    layout = run_layout
    with open_stream(layout.topic, until="end", on_decode_error=policy) as stream:
        rows = batch_rows(stream)
        stats = stream.stats()
        letters = stream.dead_letters()
        assert stream.positions() == {(layout.topic, BAD): 6, (layout.topic, 1 - BAD): 2}
    assert rows == {
        BAD: expected_rows(layout.before + layout.after),
        1 - BAD: expected_rows(layout.other),
    }
    assert stats["delivered"] == 7
    assert (stats["skipped"], stats["dead_lettered"]) == ((1, 0) if policy == "skip" else (0, 1))
    if policy == "dead_letter":
        [letter] = letters
        assert (letter.partition, letter.offset, letter.value) == (
            BAD,
            BAD_OFFSET,
            layout.bad.value_bytes,
        )
        assert letter.headers == BAD_HEADERS
        assert_is_the_bad_message(letter.error, layout)
    else:
        assert letters == []


def test_batches_raise_after_the_rows_before_the_bad_message(
    run_layout: Layout, open_stream: OpenStream
) -> None:
    layout = run_layout
    start = {(layout.topic, 1 - BAD): 2}
    with open_stream(layout.topic, start=start, until="end") as stream:
        batches = stream.batches(max_wait=30.0)
        before = next(batches).to_pyarrow()
        offsets, ids = before.column("_offset").to_pylist(), before.column("id").to_pylist()
        assert list(zip(offsets, ids, strict=True)) == expected_rows(layout.before)
        with pytest.raises(DecodeError) as raised:
            next(batches)
        assert_is_the_bad_message(raised.value, layout)
        # Nothing past the bad message is finished.
        assert stream.positions() == {(layout.topic, BAD): BAD_OFFSET, (layout.topic, 1 - BAD): 2}


def test_a_stream_read_in_batches_refuses_single_changes(
    layout: Layout, open_stream: OpenStream
) -> None:
    with open_stream(layout.topic, until="end", on_decode_error="skip") as stream:
        next(stream.batches(max_wait=30.0))
        with pytest.raises(ConfigError, match="batches"):
            next(stream)
