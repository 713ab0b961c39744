"""Fatal Kafka errors (issue 6): authorization revoked mid-stream, a static group member fenced.

An error that waiting cannot heal must end the stream with a ``KafkaError`` whose
``retriable`` is False, promptly, instead of leaving ``next()`` blocked forever or the
stream silently reading on. (A deleted topic is covered in ``test_broker_faults.py``.)

Authorization: the module starts a Kafka of its own with TLS/SASL listeners and KRaft's
ACL authorizer (``StackInstance(..., kafka_security=True, kafka_acl=True)``, i.e.
``CHANGESTREAM_STACK_KAFKA_ACL=1``). Its super user ``admin`` (SCRAM over SASL_SSL)
creates the topics, produces the events and grants the SCRAM user ``alice`` what a
consumer needs: READ and DESCRIBE on the topic, READ on the group. A stream connected as
alice reads some rows, blocks in ``next()`` on the drained topic, and the admin then
revokes the ACLs. The broker refuses alice's next fetch (TOPIC_AUTHORIZATION_FAILED);
when the group's ACL is revoked instead, heartbeats fail until the session expires and
the member's rejoin is refused (GROUP_AUTHORIZATION_FAILED).

Fencing: static membership (``group.instance.id`` through ``kafka={...}``) on the shared
stack. With the classic protocol, a second member joining under the instance id of a
live one takes its place, and the broker answers the first one's next heartbeat with
FENCED_INSTANCE_ID, which librdkafka makes a fatal error. With KIP-848
(``group.protocol=consumer``) it is the other way round: the broker keeps the live member
and refuses the newcomer with UNRELEASED_INSTANCE_ID, also fatal in librdkafka.

Two more cases guard bugs these tests found: a stream without a group must not be stopped
by the ACL of the group id librdkafka needs for ``assign()`` but never uses, and the KIP-848
newcomer's fatal error must end its stream instead of being retried forever. Run with
``pytest -s`` to see how long each error took.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any
from uuid import uuid4

import pytest
from cdc import CdcProducer, Row, Schema, bottled_water_row_schema
from changestream import Change, ChangeStream, ChangeStreamError, KafkaError
from confluent_kafka import ConsumerGroupTopicPartitions, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

# Re-exported by confluent_kafka.admin, but not explicitly (mypy --strict): import them from home.
from confluent_kafka.admin._acl import (
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
)
from confluent_kafka.admin._resource import ResourcePatternType, ResourceType
from confluent_kafka.cimpl import NewTopic
from stack.instance import StackInstance

ROW: Schema = bottled_water_row_schema("fatal_rows", [("id", "int"), ("name", "string")])
ROWS: list[Row] = [{"id": i, "name": f"row {i}"} for i in range(10)]
# How long a fatal error may take to surface. The broker's answers come within a fetch wait
# (500 ms) or a heartbeat (3 s); the bound leaves room for a loaded CI machine.
PROMPT = 30.0
# A group member's session here: the broker's minimum, so a member the broker stopped
# answering (revoked group ACL) notices within seconds, not librdkafka's default 45 s.
SHORT_SESSION = 6000

OpenStream = Callable[..., ChangeStream]


class StillBlockedError(AssertionError):
    """The stream neither raised nor delivered anything: it hangs on a fatal error."""


class NextInThread:
    """``next(stream)`` in a thread of its own, so the test can act while it is blocked."""

    def __init__(self, stream: ChangeStream) -> None:
        self.stream = stream
        self.done = threading.Event()
        self.change: Change | None = None
        self.error: BaseException | None = None
        self.ended_at = 0.0
        self.thread = threading.Thread(target=self._run, name="blocked-next", daemon=True)

    def start(self) -> NextInThread:
        self.thread.start()
        return self

    def _run(self) -> None:
        try:
            self.change = next(self.stream)
        except BaseException as error:
            self.error = error
        finally:
            self.ended_at = time.monotonic()
            self.done.set()

    def outcome(self, since: float, limit: float) -> tuple[ChangeStreamError, float]:
        """The error ``next()`` raised within ``limit`` seconds of ``since``, and when."""
        if not self.done.wait(max(0.0, since + limit - time.monotonic())):
            raise StillBlockedError(f"next() still blocked {limit:.0f}s later: the stream hangs")
        assert self.change is None, f"next() returned a change instead of failing: {self.change}"
        assert isinstance(self.error, ChangeStreamError), repr(self.error)
        return self.error, self.ended_at - since


def committed(admin: AdminClient, group: str, topic: str, partitions: int) -> dict[int, int]:
    """The group's committed offsets by partition (negative: nothing committed)."""
    request = ConsumerGroupTopicPartitions(
        group, [TopicPartition(topic, p) for p in range(partitions)]
    )
    found = admin.list_consumer_group_offsets([request])[group].result(timeout=30)
    return {tp.partition: tp.offset for tp in found.topic_partitions}


def wait_committed(
    admin: AdminClient, group: str, topic: str, wanted: dict[int, int], limit: float = 20.0
) -> None:
    deadline = time.monotonic() + limit
    while (have := committed(admin, group, topic, len(wanted))) != wanted:
        assert time.monotonic() < deadline, f"committed {have}, expected {wanted}"
        time.sleep(0.2)


def create_topic(admin: AdminClient, prefix: str, partitions: int) -> str:
    name = f"{prefix}.{uuid4().hex[:10]}"
    admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)])[
        name
    ].result(timeout=60)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        meta = admin.list_topics(name, timeout=10).topics.get(name)
        if (
            meta is not None
            and meta.error is None
            and len(meta.partitions) == partitions
            and all(p.leader >= 0 for p in meta.partitions.values())
        ):
            return name
        time.sleep(0.1)
    raise AssertionError(f"topic {name} has no leader")


# ------------------------------------------------------------------ authorization revoked


@pytest.fixture(scope="module")
def acl_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackInstance]:
    """A Kafka of this module's own with SASL listeners and ACLs enforced."""
    instance = StackInstance(
        tmp_path_factory.mktemp("acl") / "acl.env",
        services=("kafka",),
        kafka_security=True,
        kafka_acl=True,
    )
    instance.up()
    try:
        yield instance
    finally:
        instance.down()


def sasl(acl_kafka: StackInstance, user: str, password: str) -> dict[str, Any]:
    """librdkafka settings for ``user`` over SASL_SSL with SCRAM-SHA-512."""
    env = acl_kafka.env
    return {
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": env["KAFKA_SCRAM_MECHANISM"],
        "sasl.username": user,
        "sasl.password": password,
        "ssl.ca.location": env["KAFKA_SSL_CA_LOCATION"],
    }


def consumer_settings(acl_kafka: StackInstance) -> dict[str, Any]:
    env = acl_kafka.env
    return sasl(acl_kafka, env["KAFKA_SCRAM_USERNAME"], env["KAFKA_SCRAM_PASSWORD"])


def passwords(acl_kafka: StackInstance) -> list[str]:
    return [acl_kafka.env["KAFKA_SCRAM_PASSWORD"], acl_kafka.env["KAFKA_ADMIN_PASSWORD"]]


@pytest.fixture(scope="module")
def acl_admin(acl_kafka: StackInstance) -> AdminClient:
    """An admin client as the super user ``admin``, over SASL_SSL."""
    env = acl_kafka.env
    settings = sasl(acl_kafka, env["KAFKA_ADMIN_USERNAME"], env["KAFKA_ADMIN_PASSWORD"])
    return AdminClient({"bootstrap.servers": env["KAFKA_SASL_SSL_BOOTSTRAP_SERVERS"], **settings})


def principal(acl_kafka: StackInstance) -> str:
    return f"User:{acl_kafka.env['KAFKA_SCRAM_USERNAME']}"


def allow(resource: ResourceType, name: str, who: str, operation: AclOperation) -> AclBinding:
    return AclBinding(
        resource, name, ResourcePatternType.LITERAL, who, "*", operation, AclPermissionType.ALLOW
    )


def consumer_acls(who: str, topic: str, group: str | None) -> list[AclBinding]:
    """What a consumer needs: READ and DESCRIBE on the topic, READ on the group."""
    bindings = [
        allow(ResourceType.TOPIC, topic, who, operation)
        for operation in (AclOperation.READ, AclOperation.DESCRIBE)
    ]
    if group is not None:
        bindings.append(allow(ResourceType.GROUP, group, who, AclOperation.READ))
    return bindings


def grant(admin: AdminClient, bindings: Sequence[AclBinding]) -> None:
    for future in admin.create_acls(list(bindings)).values():
        future.result(timeout=30)


def revoke(admin: AdminClient, resource: ResourceType, name: str, who: str) -> int:
    """Delete every ACL of ``who`` on the resource; returns how many were deleted."""
    matching = AclBindingFilter(
        resource,
        name,
        ResourcePatternType.LITERAL,
        who,
        "*",  # the host every binding here has
        AclOperation.ANY,
        AclPermissionType.ANY,
    )
    deleted = 0
    for future in admin.delete_acls([matching]).values():
        deleted += len(future.result(timeout=30))
    return deleted


def topic_with_rows(acl_kafka: StackInstance, acl_admin: AdminClient, cdc: CdcProducer) -> str:
    """A fresh topic holding ROWS (offsets 0-9), produced by the admin over SASL_SSL."""
    env = acl_kafka.env
    topic = create_topic(acl_admin, "acl", 1)
    producer = Producer(
        {
            "bootstrap.servers": env["KAFKA_SASL_SSL_BOOTSTRAP_SERVERS"],
            **sasl(acl_kafka, env["KAFKA_ADMIN_USERNAME"], env["KAFKA_ADMIN_PASSWORD"]),
            "enable.idempotence": True,
        }
    )
    for row in ROWS:
        producer.produce(topic, value=cdc.serialize(topic, ROW, row))
    assert producer.flush(60) == 0
    return topic


# (what the stream is, which ACL the admin revokes)
REVOCATIONS = {
    # No group: only the topic's ACLs matter (see the test after this one).
    "assigned": ResourceType.TOPIC,
    # Auto commit: the stream commits what the application finished, every 0.5 s here.
    "group": ResourceType.TOPIC,
    # Manual commit: only what stream.commit() finished may ever be committed.
    "group-manual": ResourceType.TOPIC,
    # The group's ACL instead: heartbeats fail until the session expires, then the rejoin.
    "group-acl": ResourceType.GROUP,
}


@pytest.mark.parametrize("case", list(REVOCATIONS))
def test_revoked_authorization_raises_a_fatal_kafka_error(
    acl_kafka: StackInstance,
    acl_admin: AdminClient,
    cdc: CdcProducer,
    stack: dict[str, str],
    case: str,
) -> None:
    topic = topic_with_rows(acl_kafka, acl_admin, cdc)
    group = f"acl-{uuid4().hex[:8]}"
    who = principal(acl_kafka)
    grant(acl_admin, consumer_acls(who, topic, group))

    kafka = consumer_settings(acl_kafka)
    options: dict[str, Any] = {}
    if case != "assigned":
        options = {"group_id": group, "commit_interval": 0.5}
    if case == "group-manual":
        options["commit"] = "manual"
    if case == "group-acl":
        kafka["session.timeout.ms"] = SHORT_SESSION
    grouped = case != "assigned"

    with ChangeStream(
        topic,
        bootstrap_servers=acl_kafka.env["KAFKA_SASL_SSL_BOOTSTRAP_SERVERS"],
        schema_registry_url=stack["SCHEMA_REGISTRY_URL"],
        kafka=kafka,
        **options,
    ) as stream:
        changes = [next(stream) for _ in ROWS]
        assert [c.after for c in changes] == ROWS
        assert [c.offset for c in changes] == list(range(len(ROWS)))
        if case == "group-manual":
            stream.commit(changes[4])
            finished = 5  # and stays so: nothing else is committed by hand
        else:
            finished = len(ROWS)  # the blocked next() below finishes the last change
        if grouped:
            # Everything before the last change handed out (or before the hand commit).
            wait_committed(acl_admin, group, topic, {0: min(finished, len(ROWS) - 1)})
        before = committed(acl_admin, group, topic, 1)[0] if grouped else None

        # Nothing is left to read: next() blocks, until the ACLs go.
        blocked = NextInThread(stream).start()
        time.sleep(1.0)
        assert not blocked.done.is_set(), f"next() returned early: {blocked.error!r}"
        resource = REVOCATIONS[case]
        assert revoke(acl_admin, resource, topic if resource == ResourceType.TOPIC else group, who)
        revoked = time.monotonic()
        error, elapsed = blocked.outcome(revoked, PROMPT)
        print(f"\nauthorization revoked ({case}): {elapsed:.2f}s to {error!r}")

        assert type(error) is KafkaError, repr(error)
        assert error.retriable is False, str(error)
        assert "authorization failed" in str(error).lower(), str(error)
        what = "Topic" if resource == ResourceType.TOPIC else "Group"
        assert f"{what} authorization failed" in str(error), str(error)
        for secret in passwords(acl_kafka):
            assert secret not in str(error)
            assert secret not in repr(error)
        # The stream stays failed: it does not read on.
        with pytest.raises(ChangeStreamError):
            next(stream)

    if grouped:
        # Nothing past what the application finished was committed: not on failure, not on
        # close (a commit the broker refuses only means those changes come again).
        after = committed(acl_admin, group, topic, 1)[0]
        print(f"committed offset: {before} before the revocation, {after} after the close")
        assert before is not None
        assert before <= after <= finished


def test_a_stream_without_a_group_needs_no_group_acl(
    acl_kafka: StackInstance, acl_admin: AdminClient, cdc: CdcProducer, stack: dict[str, str]
) -> None:
    topic = topic_with_rows(acl_kafka, acl_admin, cdc)
    grant(acl_admin, consumer_acls(principal(acl_kafka), topic, group=None))
    with ChangeStream(
        topic,
        bootstrap_servers=acl_kafka.env["KAFKA_SASL_SSL_BOOTSTRAP_SERVERS"],
        schema_registry_url=stack["SCHEMA_REGISTRY_URL"],
        kafka=consumer_settings(acl_kafka),
        until="end",
    ) as stream:
        changes = list(stream)
    assert [c.after for c in changes] == ROWS


# --------------------------------------------------------------- static member fenced

CLASSIC = {"group.protocol": "classic"}
KIP848 = {"group.protocol": "consumer"}
# How long a fenced member may take to fail: the classic protocol's heartbeat is every 3 s,
# KIP-848's (set by the broker) every 5 s.
FENCED = 15.0

Rows = dict[tuple[int, int], Any]


def produce_rows(cdc: CdcProducer, topic: str, rows: Sequence[Row]) -> Rows:
    """``rows`` split evenly over partitions 0 and 1; returns {(partition, offset): row}."""
    half = len(rows) // 2
    delivered = cdc.produce(topic, None, ROW, [(None, r) for r in rows[:half]], partition=0)
    delivered += cdc.produce(topic, None, ROW, [(None, r) for r in rows[half:]], partition=1)
    return {(d.partition, d.offset): d.value for d in delivered}


def read(stream: ChangeStream, count: int, limit: float) -> list[Change]:
    """``count`` changes, polled for at most ``limit`` seconds."""
    changes: list[Change] = []
    deadline = time.monotonic() + limit
    while len(changes) < count and time.monotonic() < deadline:
        change = stream.poll(timeout=0.5)
        if change is not None:
            changes.append(change)
    return changes


def by_position(changes: Sequence[Change]) -> Rows:
    positions = [(c.partition, c.offset) for c in changes]
    assert len(set(positions)) == len(positions), f"delivered twice: {sorted(positions)}"
    return {(c.partition, c.offset): c.after for c in changes}


def static_member(
    open_stream: OpenStream, topic: str, group: str, instance: str, protocol: dict[str, str]
) -> ChangeStream:
    return open_stream(
        topic,
        group_id=group,
        commit_interval=0.5,
        kafka={"group.instance.id": instance, **protocol},
    )


def test_a_fenced_static_member_raises_a_fatal_kafka_error(
    cdc: CdcProducer, admin: AdminClient, make_topic: Callable[..., str], open_stream: OpenStream
) -> None:
    topic = make_topic(2)
    group, instance = f"fenced-{uuid4().hex[:8]}", f"worker-{uuid4().hex[:8]}"
    first_rows = produce_rows(cdc, topic, ROWS)

    with static_member(open_stream, topic, group, instance, CLASSIC) as first:
        assert by_position([next(first) for _ in ROWS]) == first_rows
        # Blocked on the drained topic; asking for more finished every change handed out.
        blocked = NextInThread(first).start()
        wait_committed(admin, group, topic, {0: 5, 1: 5})
        assert not blocked.done.is_set(), f"next() returned early: {blocked.error!r}"

        joined = time.monotonic()
        with static_member(open_stream, topic, group, instance, CLASSIC) as second:
            error, elapsed = blocked.outcome(joined, FENCED)
            print(f"\nfenced (classic): {elapsed:.2f}s after the second member opened: {error!r}")
            assert type(error) is KafkaError, repr(error)
            assert error.retriable is False, str(error)
            assert "fenced" in str(error), str(error)
            assert "group.instance.id" in str(error), str(error)
            # The fenced member stays failed: it does not read on.
            with pytest.raises(ChangeStreamError):
                next(first)

            # The new member owns every partition and resumes exactly at the committed
            # positions: it gets what comes next, nothing before.
            second_rows = produce_rows(cdc, topic, [{"id": 100 + i, "name": "n"} for i in range(6)])
            assert by_position(read(second, len(second_rows), limit=60)) == second_rows
            assert second.poll(timeout=1.0) is None

    assert committed(admin, group, topic, 2) == {0: 8, 1: 8}


def test_kip848_a_newcomer_under_a_live_instance_id_raises_a_fatal_kafka_error(
    cdc: CdcProducer, admin: AdminClient, make_topic: Callable[..., str], open_stream: OpenStream
) -> None:
    topic = make_topic(2)
    group, instance = f"fenced-{uuid4().hex[:8]}", f"worker-{uuid4().hex[:8]}"
    first_rows = produce_rows(cdc, topic, ROWS)

    with static_member(open_stream, topic, group, instance, KIP848) as first:
        assert by_position([next(first) for _ in ROWS]) == first_rows
        joined = time.monotonic()
        with static_member(open_stream, topic, group, instance, KIP848) as second:
            refused = NextInThread(second).start()
            # The live member keeps its instance id and its partitions: it reads on.
            second_rows = produce_rows(cdc, topic, [{"id": 100 + i, "name": "n"} for i in range(6)])
            assert by_position(read(first, len(second_rows), limit=60)) == second_rows
            # The newcomer is refused, and must say so rather than wait forever.
            error, elapsed = refused.outcome(joined, FENCED)
            print(f"\nrefused (KIP-848): {elapsed:.2f}s after it opened: {error!r}")
            assert type(error) is KafkaError, repr(error)
            assert error.retriable is False, str(error)
            assert "instance ID is still used" in str(error), str(error)
