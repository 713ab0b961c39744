"""What a consumer group has committed, read with confluent-kafka (independent of changestream)."""

from __future__ import annotations

from confluent_kafka import Consumer, TopicPartition


def committed(stack: dict[str, str], group: str, topic: str, partitions: int) -> dict[int, int]:
    """The group's committed offsets by partition (negative: nothing committed)."""
    consumer = Consumer({"bootstrap.servers": stack["KAFKA_BOOTSTRAP_SERVERS"], "group.id": group})
    try:
        found = consumer.committed(
            [TopicPartition(topic, p) for p in range(partitions)], timeout=30
        )
    finally:
        consumer.close()
    return {tp.partition: tp.offset for tp in found}
