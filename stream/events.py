"""The records elcrec exchanges on Kafka: click events and sequence updates.

A click event on ``elcrec.events`` is a JSON object keyed by its ``user_id``::

    {"event_id": "e-1", "user_id": "u42", "item_id": "i7",
     "event_type": "click", "ts": 1733300000000}

``ts`` is the event time, epoch milliseconds or an ISO-8601 string (a string
without a UTC offset is read as UTC); it is stored as epoch milliseconds.
Unknown extra fields are ignored, so producers may add their own.

A sequence update on ``elcrec.sequences`` carries one user's whole current
sequence (see :class:`SequenceUpdate`).
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    StrictStr,
)

# Field limits. A record beyond them is dead-lettered, not truncated.
MAX_ID_CHARS = 256


class EventType(StrEnum):
    VIEW = "view"
    CLICK = "click"
    ADD_TO_CART = "add_to_cart"
    PURCHASE = "purchase"


class DeadLetterReason(StrEnum):
    """Why a record went to the dead-letter topic (header ``elcrec.dlq.reason``)."""

    TOO_LARGE = "too_large"
    EMPTY_VALUE = "empty_value"
    NOT_UTF8 = "not_utf8"
    INVALID_JSON = "invalid_json"
    NOT_AN_OBJECT = "not_an_object"
    MISSING_FIELD = "missing_field"
    WRONG_TYPE = "wrong_type"
    EMPTY_FIELD = "empty_field"
    FIELD_TOO_LONG = "field_too_long"
    UNKNOWN_EVENT_TYPE = "unknown_event_type"
    BAD_TIMESTAMP = "bad_timestamp"
    MISSING_KEY = "missing_key"
    KEY_MISMATCH = "key_mismatch"
    INVALID_EVENT = "invalid_event"


def _iso_to_ms(value: str) -> int:
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError("ts is neither epoch milliseconds nor ISO-8601") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def _to_ms(value: int | str) -> int:
    return value if isinstance(value, int) else _iso_to_ms(value)


Id = Annotated[StrictStr, Field(min_length=1, max_length=MAX_ID_CHARS)]
EventTime = Annotated[StrictInt | StrictStr, AfterValidator(_to_ms)]


class ClickEvent(BaseModel):
    """One click-stream event, validated once at the ingest boundary.

    Note: the model checks shape and types only; whether ``ts`` is plausible
    (not before 1990, not in the future) depends on the ingest settings and
    is checked by :func:`elcrec.stream.serde.decode_event`.
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    event_id: Id
    user_id: Id
    item_id: Id
    event_type: EventType
    ts: EventTime = Field(description="event time, epoch milliseconds")


class SequenceUpdate(BaseModel):
    """One user's current sequence, as published on ``elcrec.sequences``.

    Publishing is at-least-once: after a crash or a failed send the same
    update (same ``version``) can arrive again, and an older one can follow
    a newer one. Readers keep, per user, the highest ``version`` seen and
    drop anything not above it.

    Attributes:
        user_id: the user (also the record key).
        version: how many events have been applied to this user's sequence;
            grows by at least one with every update of the user.
        items: the last item ids, oldest first (at most the store's
            ``max_sequence_length``).
        ts: event time of each item, epoch milliseconds, same order.
        source_topic, source_partition, source_offset: where the newest
            applied event of this user was read.
        updated_at: wall-clock time (epoch ms) the store write became durable.
    """

    model_config = ConfigDict(frozen=True)

    user_id: str
    version: int
    items: list[str]
    ts: list[int]
    source_topic: str
    source_partition: int
    source_offset: int
    updated_at: int
