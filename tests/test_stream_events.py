"""Click-event schema and serde: what is accepted, and why the rest is not."""

from __future__ import annotations

import json

import pytest
from ingest_helpers import GOOD, MALFORMED
from pydantic import ValidationError

from elcrec.stream import (
    BadRecord,
    ClickEvent,
    DeadLetterReason,
    EventLimits,
    SequenceUpdate,
    decode_event,
    encode_event,
)
from elcrec.stream.serde import encode_sequence_update

NOW = 1_733_300_100_000


def test_valid_event_with_epoch_ms_round_trips():
    value = json.dumps(GOOD).encode()
    event = decode_event(b"u1", value, now_ms=NOW)
    assert event.ts == GOOD["ts"] and event.event_type == "click"
    key, again = encode_event(event)
    assert key == b"u1"
    assert decode_event(key, again, now_ms=NOW) == event


@pytest.mark.parametrize(
    "ts, ms",
    [
        ("2024-12-04T08:13:20Z", 1_733_300_000_000),
        ("2024-12-04T09:13:20+01:00", 1_733_300_000_000),
        ("2024-12-04T08:13:20.250", 1_733_300_000_250),  # no offset: UTC
    ],
)
def test_iso_8601_times_become_epoch_ms(ts, ms):
    value = json.dumps({**GOOD, "ts": ts}).encode()
    assert decode_event(b"u1", value, now_ms=NOW).ts == ms


def test_extra_fields_are_ignored():
    value = json.dumps({**GOOD, "session": "s1", "price": 3.5}).encode()
    assert decode_event(b"u1", value, now_ms=NOW).item_id == "i1"


@pytest.mark.parametrize(
    "key, value, reason", [m[1:] for m in MALFORMED], ids=[m[0] for m in MALFORMED]
)
def test_malformed_record_is_rejected_with_its_reason(key, value, reason):
    with pytest.raises(BadRecord) as info:
        decode_event(key, value, now_ms=NOW)
    assert info.value.reason == DeadLetterReason(reason)
    assert info.value.detail


def test_at_least_twenty_kinds_of_malformed_records_are_covered():
    assert len(MALFORMED) >= 20
    assert len({m[3] for m in MALFORMED}) >= 12


def test_limits_are_configurable():
    value = json.dumps(GOOD).encode()
    with pytest.raises(BadRecord, match="too_large"):
        decode_event(b"u1", value, EventLimits(max_value_bytes=50), now_ms=NOW)
    late = EventLimits(min_ts_ms=GOOD["ts"] + 1)
    with pytest.raises(BadRecord, match="bad_timestamp"):
        decode_event(b"u1", value, late, now_ms=NOW)


def test_sequence_update_json_matches_its_model():
    raw = encode_sequence_update(
        "u1", 3, ("a", "b"), (1, 2), "elcrec.events", 2, 41, 1_733_300_000_000
    )
    update = SequenceUpdate.model_validate_json(raw)
    assert update.items == ["a", "b"] and update.version == 3
    assert update.source_partition == 2 and update.source_offset == 41


def test_click_event_is_immutable():
    event = ClickEvent.model_validate(GOOD)
    with pytest.raises(ValidationError):
        event.item_id = "other"
