"""Errors of the Kafka wire layer (schemas, topics, replay)."""

from __future__ import annotations

from elcrec.exceptions import ElcrecError


class StreamError(ElcrecError):
    """Base class of errors raised by ``elcrec.stream``."""


class TopicError(StreamError):
    """A topic cannot be created, or exists with a shape that does not fit."""


class BadRecord(StreamError):  # noqa: N818 - a record, not a failure of ours
    """A Kafka record that is not a valid click event.

    Raised by :func:`elcrec.stream.serde.decode_event`; the ingest consumer
    catches it and sends the record to the dead-letter topic with ``reason``
    (a :class:`~elcrec.stream.events.DeadLetterReason`) and ``detail``.
    """

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail
