"""elcrec.stream: what elcrec exchanges on Kafka, and the clients around it.

Click events (:class:`ClickEvent`) and sequence updates
(:class:`SequenceUpdate`), their JSON serde with limits, topic names and
creation, and the replay producer.
"""

from elcrec.stream.events import (
    ClickEvent,
    DeadLetterReason,
    EventType,
    SequenceUpdate,
)
from elcrec.stream.exceptions import BadRecord, StreamError, TopicError
from elcrec.stream.serde import EventLimits, decode_event, encode_event

__all__ = [
    "BadRecord",
    "ClickEvent",
    "DeadLetterReason",
    "EventLimits",
    "EventType",
    "SequenceUpdate",
    "StreamError",
    "TopicError",
    "decode_event",
    "encode_event",
]
