"""Deployment settings of the ingest consumer (environment prefix ``ELCREC_``).

Every field can be set as an environment variable (``ELCREC_GROUP_ID``,
``ELCREC_STATE_DIR``, ...; the Kafka address also as
``KAFKA_BOOTSTRAP_SERVERS``), or passed as a keyword / command-line option.
The Kafka security fields (``ELCREC_SECURITY_PROTOCOL``...) come from
:mod:`elcrec.stream.kafka_options`.
:func:`load_ingest_settings` validates them once and raises
:class:`~elcrec.exceptions.ConfigError` naming every bad field.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import AliasChoices, Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from elcrec.settings import load_settings
from elcrec.state.store import StoreOptions
from elcrec.stream.events import EventType
from elcrec.stream.kafka_options import KafkaSecurityFields
from elcrec.stream.serde import MIN_EVENT_TIME_MS, EventLimits
from elcrec.stream.topics import DLQ_TOPIC, EVENTS_TOPIC, SEQUENCES_TOPIC


class IngestSettings(KafkaSecurityFields, BaseSettings):
    """Settings of one ingest consumer process (frozen once loaded)."""

    model_config = SettingsConfigDict(
        env_prefix="ELCREC_", frozen=True, extra="forbid", populate_by_name=True
    )

    # -- Kafka ----------------------------------------------------------------
    bootstrap_servers: str = Field(
        "127.0.0.1:9092",
        validation_alias=AliasChoices(
            "ELCREC_BOOTSTRAP_SERVERS", "KAFKA_BOOTSTRAP_SERVERS"
        ),
        description="Kafka bootstrap address(es), comma separated",
    )
    group_id: str = Field(
        "elcrec-ingest", min_length=1, description="consumer group of the ingest"
    )
    group_instance_id: str | None = Field(
        None,
        description="static membership id: a restarted consumer gets its "
        "partitions back without waiting for the session timeout",
    )
    client_id: str = Field(
        "elcrec-ingest", description="Kafka client id (the producer's ends -producer)"
    )
    events_topic: str = Field(
        EVENTS_TOPIC, min_length=1, description="click events are read from it"
    )
    dlq_topic: str = Field(
        DLQ_TOPIC, min_length=1, description="bad records go to it, with the reason"
    )
    sequences_topic: str = Field(
        SEQUENCES_TOPIC, min_length=1, description="sequence updates go to it"
    )
    publish_sequences: bool = Field(
        True, description="send sequence updates (the trainer learns from them)"
    )
    publish_interval_ms: int = Field(
        200,
        ge=0,
        le=60_000,
        description="a user's sequence update is sent at most once per interval "
        "(the newest version); 0: once per polled batch",
    )
    session_timeout_ms: int = Field(
        45_000, ge=1000, description="consumer group session timeout"
    )
    heartbeat_interval_ms: int = Field(
        3_000, ge=100, description="group heartbeats; below session_timeout_ms"
    )
    max_poll_interval_ms: int = Field(
        300_000, ge=1000, description="longest time between polls within the group"
    )
    max_poll_records: int = Field(
        5_000, ge=1, le=100_000, description="records per poll (one write batch)"
    )
    poll_timeout_ms: int = Field(
        200, ge=1, le=60_000, description="longest wait of one poll"
    )
    kafka_commit_interval_s: float = Field(
        1.0, ge=0, description="how often stored offsets are committed to Kafka"
    )
    produce_timeout_s: float = Field(
        30.0, gt=0, description="wait for DLQ and sequence sends per batch"
    )

    # -- state ----------------------------------------------------------------
    state_dir: Path = Field(
        Path("elcrec-work/state"),
        description="RocksDB state: one database per partition, at "
        "STATE_DIR/<events topic>/<partition>/",
    )
    max_sequence_length: int = Field(
        200,
        ge=1,
        le=100_000,
        description="items kept per user and carried by each sequence update; "
        "a user's new events beyond it within one publish interval are not learned",
    )
    dedup_window: int = Field(
        100_000,
        ge=0,
        le=100_000_000,
        description="event ids remembered per partition for de-duplication; 0: off",
    )
    counted_event_types: frozenset[EventType] = Field(
        frozenset(EventType),
        description="event types appended to sequences (JSON list); "
        "others are consumed and ignored",
    )
    sync_writes: bool = Field(
        True,
        description="fsync each write batch (off: a machine crash may lose "
        "the last batches, which Kafka then delivers again)",
    )
    lock_timeout_s: float = Field(
        30.0,
        ge=0,
        description="wait for another consumer to release a partition's state "
        "during a rebalance",
    )

    # -- validation -----------------------------------------------------------
    max_event_bytes: int = Field(
        64 * 1024,
        ge=64,
        le=16 * 1024 * 1024,
        description="larger records are dead-lettered (too_large)",
    )
    min_event_time_ms: int = Field(
        MIN_EVENT_TIME_MS,
        ge=0,
        description="earlier event times are dead-lettered (bad_timestamp)",
    )
    max_future_ms: int = Field(
        24 * 3600 * 1000,
        ge=0,
        description="event times further ahead of the clock are dead-lettered",
    )
    dlq_max_value_bytes: int = Field(
        64 * 1024, ge=0, description="dead-lettered values are cut to this size"
    )

    # -- metrics --------------------------------------------------------------
    metrics_port: int | None = Field(
        None, ge=0, le=65535, description="Prometheus metrics port; unset: none"
    )
    metrics_host: str = Field(
        "127.0.0.1",
        description="address the metrics server listens on (0.0.0.0 in a container)",
    )
    lag_interval_s: float = Field(5.0, gt=0, description="consumer lag refresh")

    @model_validator(mode="after")
    def _check(self) -> IngestSettings:
        if self.heartbeat_interval_ms >= self.session_timeout_ms:
            raise ValueError("heartbeat_interval_ms must be below session_timeout_ms")
        if not self.counted_event_types:
            raise ValueError("counted_event_types must name at least one type")
        if len({self.events_topic, self.dlq_topic, self.sequences_topic}) < 3:
            raise ValueError("events_topic, dlq_topic and sequences_topic must differ")
        return self

    def store_options(self) -> StoreOptions:
        return StoreOptions(
            max_sequence_length=self.max_sequence_length,
            dedup_window=self.dedup_window,
            counted_event_types=frozenset(str(t) for t in self.counted_event_types),
            sync_writes=self.sync_writes,
            track_publish=self.publish_sequences,
            lock_timeout_s=self.lock_timeout_s,
        )

    def event_limits(self) -> EventLimits:
        return EventLimits(
            max_value_bytes=self.max_event_bytes,
            min_ts_ms=self.min_event_time_ms,
            max_future_ms=self.max_future_ms,
        )


def load_ingest_settings(**overrides: Any) -> IngestSettings:
    """Read the environment, apply ``overrides`` (None values are skipped),
    and validate once.

    Raises:
        ConfigError: one clause per bad field, each naming the field and its
            environment variable.
    """
    return load_settings(IngestSettings, "ingest", **overrides)
