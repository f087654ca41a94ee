"""Fresh reads of the sequence store from processes that do not own it.

A read-only RocksDB handle sees the database as it was when opened. A
*secondary* instance instead replays the owner's write-ahead log on
:meth:`SequenceReader.refresh`, so a reader in another process (a
recommender, the trainer, a test) sees every batch committed before the
refresh. Each reader keeps a small private folder for the secondary
instances' own files (a temporary one unless given).
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from rocksdict import Rdict

from elcrec.state.store import (
    OFFSET_KEY,
    SEQ_PREFIX,
    Sequence,
    _decode_sequence,
    _from_u64,
    open_secondary,
)

logger = logging.getLogger(__name__)


class SequenceReader:
    """Reads every partition of ``topic`` under ``state_dir``, catching up on demand.

    Args:
        state_dir: the owner's state folder.
        topic: the events topic.
        secondary_dir: a private folder for the secondary instances; a
            temporary folder (removed by :meth:`close`) when None.
        max_staleness_s: :meth:`get` refreshes first when the last refresh is
            older than this; 0 refreshes on every call, None never.

    Note: a partition that appears after the reader was created is picked up
    by the next :meth:`refresh`.
    """

    def __init__(
        self,
        state_dir: str | Path,
        topic: str,
        secondary_dir: str | Path | None = None,
        max_staleness_s: float | None = 0.0,
    ):
        self.root = Path(state_dir) / topic
        self.topic = topic
        self._own_tmp = secondary_dir is None
        self._secondary_dir = Path(
            secondary_dir or tempfile.mkdtemp(prefix="elcrec-reader-")
        )
        self.max_staleness_s = max_staleness_s
        self._dbs: dict[int, Rdict] = {}
        self._refreshed_at = 0.0
        self.refresh()

    def refresh(self) -> None:
        """Open partitions that appeared and catch up with their owners."""
        if self.root.is_dir():
            for child in self.root.iterdir():
                if not child.name.isdigit() or int(child.name) in self._dbs:
                    continue
                if not (child / "CURRENT").exists():
                    continue  # being created
                try:
                    self._dbs[int(child.name)] = open_secondary(
                        child, self._secondary_dir / child.name
                    )
                except Exception as exc:
                    logger.warning(
                        "Cannot open partition state for reading; will retry "
                        "path=%s error=%s",
                        child,
                        exc,
                    )
        for db in self._dbs.values():
            db.try_catch_up_with_primary()
        self._refreshed_at = time.monotonic()

    def _maybe_refresh(self) -> None:
        if self.max_staleness_s is not None and (
            time.monotonic() - self._refreshed_at >= self.max_staleness_s
        ):
            self.refresh()

    @property
    def partitions(self) -> list[int]:
        return sorted(self._dbs)

    def get(self, user_id: str) -> Sequence | None:
        """The user's sequence, or None.

        Note: if the events topic's partition count was changed, a user can
        have state in two partitions; the one with the newest event wins.
        """
        self._maybe_refresh()
        key = SEQ_PREFIX + user_id.encode()
        found = None
        for db in self._dbs.values():
            raw = db.get(key)
            if raw is not None:
                seq = _decode_sequence(user_id, raw)
                if found is None or (seq.ts and found.ts and seq.ts[-1] > found.ts[-1]):
                    found = seq
        return found

    def sequences(self) -> Iterator[Sequence]:
        """All sequences, partition by partition (as of the last refresh)."""
        for number in sorted(self._dbs):
            for key, value in self._dbs[number].items(from_key=SEQ_PREFIX):
                if not key.startswith(SEQ_PREFIX):
                    break
                yield _decode_sequence(key[2:].decode(), value)

    def as_dict(self) -> dict[str, Sequence]:
        """All sequences by user id, after a refresh."""
        self.refresh()
        return {seq.user_id: seq for seq in self.sequences()}

    def next_offsets(self) -> dict[int, int | None]:
        """The stored next offset of each partition, after a refresh."""
        self.refresh()
        out = {}
        for number, db in sorted(self._dbs.items()):
            raw = db.get(OFFSET_KEY)
            out[number] = None if raw is None else _from_u64(raw)
        return out

    def close(self) -> None:
        for db in self._dbs.values():
            db.close()
        self._dbs.clear()
        if self._own_tmp:
            shutil.rmtree(self._secondary_dir, ignore_errors=True)

    def __enter__(self) -> SequenceReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
