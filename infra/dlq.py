"""``python -m infra dlq list|replay TOPIC``: show dead letters, and replay them after a fix.

``list`` prints every message on ``TOPIC.dlq`` (``TOPIC`` with or without the
suffix): its position, key, event type, the consumer group that gave up, how
many attempts it made, when, why, and whether it was replayed already.

``replay`` republishes each dead letter not replayed yet to its source topic,
untouched (same key, same CloudEvents headers, so the same event id), with a
``nbembed_replayed_from`` header naming the dead letter. Replaying twice is
harmless, twice over: what was replayed is recorded as the committed offset
of the consumer group ``nbembed-dlq-replay`` on the DLQ topic, so a second
``replay`` starts after it and republishes nothing; and should a run die
between publishing and committing, the events it republished again keep their
ids, which every consumer handles idempotently. A dead letter that fails again
lands on the DLQ again, as a new one, and the next ``replay`` takes it.

Runs as the stack's Kafka admin (a super user), like every other ``infra`` tool.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import AsyncIterator
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.structs import OffsetAndMetadata

from infra import kafka
from infra.settings import StackSettings
from schemas import dlq_topic
from schemas.dead_letters import DeadLetter
from schemas.events import DLQ_SUFFIX
from services.common.kafka import PRODUCER_OPTIONS

REPLAY_GROUP = "nbembed-dlq-replay"
"""Consumer group whose committed offsets say which dead letters were replayed."""


def dlq_name(topic: str) -> str:
    """``nbembed.sessions`` or ``nbembed.sessions.dlq`` → ``nbembed.sessions.dlq``."""
    return topic if topic.endswith(DLQ_SUFFIX) else dlq_topic(topic)


async def _partitions(consumer: AIOKafkaConsumer, topic: str) -> list[TopicPartition]:
    # The consumer's own cluster view stays empty until it subscribes: ask for all of it.
    cluster = await consumer._client.fetch_all_metadata()
    numbers = cluster.partitions_for_topic(topic)
    if not numbers:
        raise SystemExit(f"no topic {topic}")
    return [TopicPartition(topic, n) for n in sorted(numbers)]


async def read(
    options: dict[str, Any], topic: str, *, from_committed: bool
) -> AsyncIterator[tuple[DeadLetter, bool]]:
    """Every dead letter now on ``topic`` (up to its current end), and whether it was replayed.

    With ``from_committed`` only those after the replay group's committed offsets.
    """
    consumer = AIOKafkaConsumer(
        **options, group_id=REPLAY_GROUP, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        partitions = await _partitions(consumer, topic)
        consumer.assign(partitions)
        ends = await consumer.end_offsets(partitions)
        for tp in partitions:
            committed = await consumer.committed(tp) or 0
            start = committed if from_committed else 0
            if start >= ends[tp]:
                continue
            consumer.seek(tp, start)
            while (position := await consumer.position(tp)) < ends[tp]:
                batch = await consumer.getmany(tp, timeout_ms=2000)
                for record in batch.get(tp, []):
                    if record.offset >= ends[tp]:
                        break
                    letter = DeadLetter.of(
                        record.topic,
                        record.partition,
                        record.offset,
                        record.key,
                        record.value,
                        record.headers,
                    )
                    yield letter, record.offset < committed
                if not batch and await consumer.position(tp) == position:
                    break  # nothing more readable now (compacted or deleted records)
    finally:
        await consumer.stop()


async def list_letters(options: dict[str, Any], topic: str) -> list[tuple[DeadLetter, bool]]:
    """Every dead letter on ``topic`` (or its DLQ) with whether it was replayed."""
    return [item async for item in read(options, dlq_name(topic), from_committed=False)]


async def replay(options: dict[str, Any], topic: str) -> list[DeadLetter]:
    """Republish the dead letters not replayed yet, then record them as replayed."""
    producer = AIOKafkaProducer(**options, **PRODUCER_OPTIONS)
    await producer.start()
    replayed: list[DeadLetter] = []
    seen: set[tuple[str, int, int]] = set()
    last: dict[TopicPartition, int] = {}
    try:
        async for letter, _ in read(options, dlq_name(topic), from_committed=True):
            last[TopicPartition(letter.topic, letter.partition)] = letter.offset
            # Several groups may dead-letter one message: it goes back once.
            if letter.source in seen and letter.source[2] >= 0:
                continue
            seen.add(letter.source)
            await producer.send_and_wait(
                letter.source_topic,
                letter.value,
                key=letter.key,
                headers=[(k, v.encode()) for k, v in letter.replay_headers().items()],
            )
            replayed.append(letter)
    finally:
        await producer.stop()
    await _commit(options, {tp: offset + 1 for tp, offset in last.items()})
    return replayed


async def _commit(options: dict[str, Any], offsets: dict[TopicPartition, int]) -> None:
    if not offsets:
        return
    consumer = AIOKafkaConsumer(**options, group_id=REPLAY_GROUP, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign(list(offsets))
        await consumer.commit({tp: OffsetAndMetadata(o, "") for tp, o in offsets.items()})
    finally:
        await consumer.stop()


def _row(letter: DeadLetter, replayed: bool) -> str:
    source_topic, partition, offset = letter.source
    key = letter.key.decode(errors="replace") if letter.key else "-"
    return (
        f"{letter.partition}:{letter.offset}  key={key}  type={letter.event_type or '-'}  "
        f"source={source_topic}[{partition}]@{offset}  group={letter.consumer_group or '-'}  "
        f"attempts={letter.attempts}  time={letter.time or '-'}  "
        f"{'replayed' if replayed else 'not replayed'}\n    reason: {letter.reason or '-'}"
    )


def main(argv: list[str], settings: StackSettings | None = None) -> int:
    """``list TOPIC`` or ``replay TOPIC``; exit status 0 when it worked."""
    parser = argparse.ArgumentParser(prog="python -m infra dlq", description=__doc__)
    parser.add_argument("action", choices=["list", "replay"])
    parser.add_argument("topic", help="the source topic or its .dlq (e.g. nbembed.sessions)")
    args = parser.parse_args(argv)
    options = kafka.client_options(settings or StackSettings())
    topic = dlq_name(args.topic)
    if args.action == "list":
        letters = asyncio.run(list_letters(options, topic))
        for letter, replayed in letters:
            print(_row(letter, replayed))
        print(f"{len(letters)} dead letter(s) on {topic}")
        return 0
    done = asyncio.run(replay(options, topic))
    for letter in done:
        print(f"replayed {letter.partition}:{letter.offset} to {letter.source_topic}")
    print(f"{len(done)} dead letter(s) replayed from {topic}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
