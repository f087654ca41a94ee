"""elcrec's topic names, and their creation through the Kafka admin client."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from elcrec.stream.exceptions import TopicError

logger = logging.getLogger(__name__)

EVENTS_TOPIC = "elcrec.events"
DLQ_TOPIC = "elcrec.events.dlq"
SEQUENCES_TOPIC = "elcrec.sequences"
MODELS_TOPIC = "elcrec.models"
DRIFT_TOPIC = "elcrec.drift"

DAY_MS = 24 * 3600 * 1000


@dataclass(frozen=True, slots=True)
class TopicSpec:
    """A topic to create: name, partitions, replication and topic configs."""

    name: str
    partitions: int = 1
    replication: int = 1
    configs: dict[str, str] = field(default_factory=dict)


def default_topics(
    partitions: int = 6,
    replication: int = 1,
    retention_ms: int = 7 * DAY_MS,
    dlq_retention_ms: int = 30 * DAY_MS,
) -> list[TopicSpec]:
    """elcrec's topics with their usual shape.

    Events and sequences share the partition count; the sequences topic is
    compacted (the newest record per user is the user's current sequence);
    models and drift records are few and go on one partition.
    """
    retention = {"retention.ms": str(retention_ms)}
    return [
        TopicSpec(EVENTS_TOPIC, partitions, replication, retention),
        TopicSpec(DLQ_TOPIC, 1, replication, {"retention.ms": str(dlq_retention_ms)}),
        TopicSpec(
            SEQUENCES_TOPIC,
            partitions,
            replication,
            {"cleanup.policy": "compact", "min.compaction.lag.ms": str(3600 * 1000)},
        ),
        TopicSpec(MODELS_TOPIC, 1, replication, retention),
        TopicSpec(DRIFT_TOPIC, 1, replication, retention),
    ]


def check_reachable(
    bootstrap_servers: str, timeout_s: float = 5.0, wait_s: float = 0.0
) -> None:
    """Fail fast, with one clear error, when no bootstrap address accepts a
    TCP connection (kafka-python would log a warning per retry first).

    ``wait_s``: keep trying, quietly, for this long first (a service started
    next to a broker that is still starting).

    Raises:
        TopicError: none of the comma-separated ``host:port`` addresses answers.
    """
    import socket

    deadline = time.monotonic() + wait_s
    logged = False
    while True:
        errors = []
        for address in bootstrap_servers.split(","):
            host, _, port = address.strip().rpartition(":")
            host = host.strip("[]")  # an IPv6 literal
            try:
                with socket.create_connection((host, int(port)), timeout=timeout_s):
                    return
            except (OSError, ValueError) as exc:
                errors.append(f"{address.strip()}: {exc}")
        if time.monotonic() >= deadline:
            raise TopicError(
                f"cannot reach Kafka at {bootstrap_servers} ({'; '.join(errors)})"
            )
        if not logged:
            logger.info(
                "Waiting for Kafka at %s (up to %.0f s)", bootstrap_servers, wait_s
            )
            logged = True
        time.sleep(1.0)


def ensure_topics(
    bootstrap_servers: str,
    specs: list[TopicSpec],
    timeout_s: float = 30.0,
    client_options: dict | None = None,
) -> dict[str, str]:
    """Create the topics that do not exist yet; leave existing ones alone.

    ``client_options`` are extra kafka-python arguments (TLS, SASL: see
    :func:`elcrec.stream.kafka_options.client_options`).

    Returns:
        ``{name: "created" | "exists" | "exists-partitions-N"}``; the last form
        says an existing topic has a partition count other than asked (it is
        not changed: that would move users between partitions).

    Raises:
        TopicError: the broker refused a creation or did not answer in time.
    """
    from kafka.admin import KafkaAdminClient, NewTopic
    from kafka.errors import KafkaError, TopicAlreadyExistsError

    check_reachable(bootstrap_servers)
    try:
        admin = KafkaAdminClient(
            bootstrap_servers=bootstrap_servers,
            client_id="elcrec-topics",
            **(client_options or {}),
        )
    except KafkaError as exc:
        raise TopicError(
            f"cannot reach Kafka at {bootstrap_servers} to create topics: {exc}"
        ) from exc
    result: dict[str, str] = {}
    try:
        existing = set(admin.list_topics())
        missing = [s for s in specs if s.name not in existing]
        for spec in missing:
            try:
                admin.create_topics(
                    [
                        NewTopic(
                            spec.name,
                            num_partitions=spec.partitions,
                            replication_factor=spec.replication,
                            topic_configs=dict(spec.configs),
                        )
                    ]
                )
                result[spec.name] = "created"
                logger.info(
                    "Topic created name=%s partitions=%d replication=%d configs=%s",
                    spec.name,
                    spec.partitions,
                    spec.replication,
                    spec.configs,
                )
            except TopicAlreadyExistsError:
                result[spec.name] = "exists"
            except KafkaError as exc:
                raise TopicError(
                    f"Kafka refused to create topic {spec.name} "
                    f"(partitions={spec.partitions}, "
                    f"replication={spec.replication}): {exc}"
                ) from exc

        deadline = time.monotonic() + timeout_s
        while {s.name for s in missing} - set(admin.list_topics()):
            if time.monotonic() > deadline:
                raise TopicError(f"topics not visible after {timeout_s:.0f}s")
            time.sleep(0.1)

        present = [s for s in specs if s.name in existing]
        if present:
            described = admin.describe_topics([s.name for s in present])
            counts = {
                d.get("name", d.get("topic")): len(d["partitions"]) for d in described
            }
            for spec in present:
                have = counts.get(spec.name, spec.partitions)
                if have == spec.partitions:
                    result[spec.name] = "exists"
                else:
                    result[spec.name] = f"exists-partitions-{have}"
                    logger.warning(
                        "Topic exists with another partition count, left as is "
                        "name=%s partitions=%d asked=%d",
                        spec.name,
                        have,
                        spec.partitions,
                    )
    finally:
        admin.close()
    return result


def wait_for_topic(consumer, topic: str, timeout_s: float = 30.0) -> set[int]:
    """The partitions of ``topic``, once the consumer's metadata knows them.

    Subscribing before the metadata is known makes the first group join assign
    nothing and forces a rejoin, which kafka-python 3.0 can stall in; waiting
    here avoids that path.

    Raises:
        TopicError: the topic has no known partitions after ``timeout_s``.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        partitions = consumer.partitions_for_topic(topic)
        if partitions:
            return set(partitions)
        if time.monotonic() >= deadline:
            raise TopicError(
                f"topic {topic} has no partitions after {timeout_s:.0f}s: create it "
                "with 'elcrec topics' (or check the bootstrap address)"
            )
        time.sleep(0.2)
