"""Errors of the RocksDB state store."""

from __future__ import annotations

from elcrec.exceptions import ElcrecError


class StateError(ElcrecError):
    """Base class of errors raised by ``elcrec.state``."""


class PartitionLockedError(StateError):
    """Another process (or handle) holds a partition's RocksDB lock."""


class StateCorruptError(StateError):
    """A partition's RocksDB files cannot be opened or decoded."""


class StateClosedError(StateError):
    """A partition or store was used after it was closed."""
