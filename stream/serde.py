"""JSON (de)serialisation of click events and sequence updates, with limits.

:func:`decode_event` is the one place a Kafka record becomes a
:class:`~elcrec.stream.events.ClickEvent`; every way it can fail raises
:class:`~elcrec.stream.exceptions.BadRecord` with a
:class:`~elcrec.stream.events.DeadLetterReason`.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

from pydantic import ValidationError

from elcrec.stream.events import ClickEvent, DeadLetterReason
from elcrec.stream.exceptions import BadRecord

# 1990-01-01T00:00:00Z: older event times are taken for a unit mistake
# (seconds sent as milliseconds land in January 1970).
MIN_EVENT_TIME_MS = 631_152_000_000


@dataclass(frozen=True, slots=True)
class EventLimits:
    """What :func:`decode_event` accepts beyond the schema.

    Attributes:
        max_value_bytes: larger record values are dead-lettered (``too_large``).
        min_ts_ms: event times before this (epoch ms) are ``bad_timestamp``.
        max_future_ms: event times more than this ahead of the wall clock are
            ``bad_timestamp``.
    """

    max_value_bytes: int = 64 * 1024
    min_ts_ms: int = MIN_EVENT_TIME_MS
    max_future_ms: int = 24 * 3600 * 1000


DEFAULT_LIMITS = EventLimits()

# The model's validator itself (what model_validate_json calls), to save a
# Python call per record.
_validate_json = ClickEvent.__pydantic_validator__.validate_json

_TYPE_ERRORS = {
    "string_type",
    "int_type",
    "int_parsing",
    "int_from_float",
    "bool_type",
    "model_attributes_type",
}


def decode_event(
    key: bytes | None,
    value: bytes | None,
    limits: EventLimits = DEFAULT_LIMITS,
    now_ms: int | None = None,
) -> ClickEvent:
    """Validate one Kafka record (key and value bytes) as a click event.

    Args:
        key: the record key; must be the event's ``user_id`` in UTF-8.
        value: the record value, a UTF-8 JSON object.
        limits: size and time limits.
        now_ms: the wall clock for the future check (default: now).

    Returns:
        The validated event, ``ts`` in epoch milliseconds.

    Raises:
        BadRecord: the record is not a valid event; ``reason`` says why.
    """
    if value is None or len(value) == 0:
        raise BadRecord(DeadLetterReason.EMPTY_VALUE, "record value is empty")
    if len(value) > limits.max_value_bytes:
        raise BadRecord(
            DeadLetterReason.TOO_LARGE,
            f"value has {len(value)} bytes, limit {limits.max_value_bytes}",
        )
    try:
        event = _validate_json(value)
    except ValidationError as exc:
        raise _classify(exc, value) from None

    if (
        not limits.min_ts_ms
        <= event.ts
        <= (
            (now_ms if now_ms is not None else int(time.time() * 1000))
            + limits.max_future_ms
        )
    ):
        raise BadRecord(
            DeadLetterReason.BAD_TIMESTAMP,
            f"ts={event.ts} is outside [{limits.min_ts_ms}, now + "
            f"{limits.max_future_ms}] epoch ms",
        )

    if key is None:
        raise BadRecord(DeadLetterReason.MISSING_KEY, "record has no key")
    try:
        key_text = key.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRecord(DeadLetterReason.NOT_UTF8, "key is not UTF-8") from None
    if key_text != event.user_id:
        raise BadRecord(
            DeadLetterReason.KEY_MISMATCH,
            f"key {key_text[:80]!r} differs from user_id {event.user_id[:80]!r}",
        )
    return event


def _classify(exc: ValidationError, value: bytes) -> BadRecord:
    errors = exc.errors(include_url=False, include_input=False)
    first = errors[0]
    kind = first["type"]
    field = str(first["loc"][0]) if first["loc"] else ""
    detail = "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or 'value'}: {e['msg']}"
        for e in errors[:4]
    )
    if kind == "json_invalid":
        try:
            value.decode("utf-8")
        except UnicodeDecodeError:
            return BadRecord(DeadLetterReason.NOT_UTF8, "value is not UTF-8")
        return BadRecord(DeadLetterReason.INVALID_JSON, detail)
    if kind == "model_type":
        return BadRecord(DeadLetterReason.NOT_AN_OBJECT, detail)
    if kind == "missing":
        return BadRecord(DeadLetterReason.MISSING_FIELD, detail)
    if kind == "enum" and field == "event_type":
        return BadRecord(DeadLetterReason.UNKNOWN_EVENT_TYPE, detail)
    if field == "ts":
        return BadRecord(DeadLetterReason.BAD_TIMESTAMP, detail)
    if kind == "string_too_short":
        return BadRecord(DeadLetterReason.EMPTY_FIELD, detail)
    if kind == "string_too_long":
        return BadRecord(DeadLetterReason.FIELD_TOO_LONG, detail)
    if kind in _TYPE_ERRORS:
        return BadRecord(DeadLetterReason.WRONG_TYPE, detail)
    return BadRecord(DeadLetterReason.INVALID_EVENT, detail)


def encode_event(event: ClickEvent) -> tuple[bytes, bytes]:
    """Return the Kafka ``(key, value)`` of an event: its user id and JSON."""
    return event.user_id.encode(), event.model_dump_json().encode()


def encode_sequence_update(
    user_id: str,
    version: int,
    items: list[str] | tuple[str, ...],
    ts: list[int] | tuple[int, ...],
    source_topic: str,
    source_partition: int,
    source_offset: int,
    updated_at: int,
) -> bytes:
    """JSON of a :class:`~elcrec.stream.events.SequenceUpdate` (built directly,
    the hot path publishes one per touched user per batch)."""
    return json.dumps(
        {
            "user_id": user_id,
            "version": version,
            "items": list(items),
            "ts": list(ts),
            "source_topic": source_topic,
            "source_partition": source_partition,
            "source_offset": source_offset,
            "updated_at": updated_at,
        },
        separators=(",", ":"),
        ensure_ascii=False,
    ).encode()
