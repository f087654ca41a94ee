"""The RocksDB state store of user sequences: store → partition → transaction.

Layout on disk: one RocksDB database per partition of the events topic, at
``STATE_DIR/<topic>/<partition>/``. A partition database is written by one
process at a time (RocksDB's own file lock), so when Kafka moves a partition
between consumers that share ``STATE_DIR``, the new owner opens the same files
the old one closed.

Key layout inside one partition database (raw bytes, no pickling, so any
RocksDB client can read it):

=====================  ======================================================
key                    value
=====================  ======================================================
``m:meta``             JSON ``{"format": 1, "topic": ..., "partition": ...}``
``m:offset``           next offset to read, 8-byte big-endian
``m:users``            number of users stored, 8-byte big-endian
``m:dedup_next``       number of the next de-dup chunk, 8-byte BE
``s:<user_id>``        JSON ``[version, last_offset, [item ids], [event ms]]``
``q:<n, 8-byte BE>``   JSON list of the ``event_id`` values of the n-th
                       committed batch (a de-dup chunk)
``o:<user_id>``        empty; the user's sequence changed and its
                       publication on ``elcrec.sequences`` is unconfirmed
=====================  ======================================================

Everything a batch of records changes — sequences, de-dup entries, counters,
outbox marks and the next offset — goes into one ``WriteBatch``, written with
``sync`` (fsync of the write-ahead log) by default. Exactly-once follows: a
record's effect is in the store if and only if the stored next offset is past
it, so a consumer that seeks to the stored offset after a crash applies every
record once. Kafka's committed offset only trails the store (for lag
monitoring); it is never the source of truth while the store exists.

Example, without Kafka::

    from elcrec.state import SequenceStore, StoreOptions
    from elcrec.stream import ClickEvent

    store = SequenceStore("state", "elcrec.events", StoreOptions())
    part = store.assign(0)
    with part.begin() as tx:               # commits on leaving the block
        tx.apply(ClickEvent(event_id="e1", user_id="u1", item_id="i9",
                            event_type="click", ts=1733300000000), offset=0)
    store.get("u1").items                  # ("i9",)
    store.close()
"""

from __future__ import annotations

import bisect
import json
import logging
import time
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from rocksdict import (
    AccessType,
    Checkpoint,
    Options,
    Rdict,
    WriteBatch,
    WriteOptions,
)

from elcrec.state.exceptions import (
    PartitionLockedError,
    StateClosedError,
    StateCorruptError,
    StateError,
)
from elcrec.stream.events import ClickEvent, EventType

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1

META_KEY = b"m:meta"
OFFSET_KEY = b"m:offset"
USERS_KEY = b"m:users"
DEDUP_NEXT_KEY = b"m:dedup_next"
SEQ_PREFIX = b"s:"
DEDUP_PREFIX = b"q:"
OUTBOX_PREFIX = b"o:"

ALL_EVENT_TYPES = frozenset(EventType)


def _u64(n: int) -> bytes:
    return n.to_bytes(8, "big")


def _from_u64(b: bytes) -> int:
    return int.from_bytes(b, "big")


@dataclass(frozen=True, slots=True)
class StoreOptions:
    """Engine options of the store (the ingest settings fill them in).

    Attributes:
        max_sequence_length: items kept per user (the newest by event time).
        dedup_window: ``event_id`` values remembered per partition for
            de-duplication: at least the last ``dedup_window`` ids, at most
            one batch more (whole batches are forgotten at once); memory is
            about 150 bytes per id. 0 disables.
        counted_event_types: event types appended to sequences; others are
            consumed and ignored.
        sync_writes: fsync the write-ahead log on every commit. Without it a
            process crash loses nothing, a machine crash may lose the last
            commits (Kafka then redelivers them, so they are applied once).
        track_publish: keep ``o:`` outbox marks so unconfirmed publications
            can be redone after a crash.
        lock_timeout_s: how long to wait for another process to release a
            partition's lock (during a rebalance hand-over).
    """

    max_sequence_length: int = 200
    dedup_window: int = 100_000
    counted_event_types: frozenset[str] = ALL_EVENT_TYPES
    sync_writes: bool = True
    track_publish: bool = True
    lock_timeout_s: float = 30.0

    def __post_init__(self):
        if self.max_sequence_length < 1:
            raise ValueError("max_sequence_length must be at least 1")
        if self.dedup_window < 0:
            raise ValueError("dedup_window must be 0 or more")
        unknown = set(self.counted_event_types) - set(ALL_EVENT_TYPES)
        if unknown:
            raise ValueError(f"counted_event_types has unknown types {unknown}")


@dataclass(frozen=True, slots=True)
class Sequence:
    """One user's stored sequence.

    Attributes:
        user_id: the user.
        version: number of events applied to this sequence so far.
        last_offset: offset of the newest event applied (in its partition).
        items: item ids, oldest event time first.
        ts: event times in epoch milliseconds, same order as ``items``.
    """

    user_id: str
    version: int
    last_offset: int
    items: tuple[str, ...]
    ts: tuple[int, ...]


class Outcome(StrEnum):
    """What :meth:`Transaction.apply` did with an event."""

    APPLIED = "applied"
    DUPLICATE = "duplicate"  # event_id seen within the de-dup window
    IGNORED = "ignored"  # event type not counted
    STALE = "stale"  # older than every item of a full sequence
    REPLAYED = "replayed"  # offset below the stored next offset


def _decode_sequence(user_id: str, raw: bytes) -> Sequence:
    version, last_offset, items, ts = json.loads(raw)
    return Sequence(user_id, version, last_offset, tuple(items), tuple(ts))


def _options(*, secondary: bool = False) -> Options:
    opts = Options(raw_mode=True)
    opts.create_if_missing(not secondary)
    if secondary:
        # RocksDB's advice for secondary instances: keep all files open.
        opts.set_max_open_files(-1)
    return opts


class PartitionStore:
    """One partition's RocksDB database, opened for writing by its owner.

    Use :meth:`SequenceStore.assign` rather than constructing it directly.
    """

    def __init__(self, path: Path, topic: str, partition: int, options: StoreOptions):
        self.path = path
        self.topic = topic
        self.partition = partition
        self.options = options
        self._write_opts = WriteOptions()
        self._write_opts.sync = options.sync_writes
        self._sync_opts = WriteOptions()
        self._sync_opts.sync = True
        self._async_opts = WriteOptions()
        self._db: Rdict | None = self._open()

        self._check_meta()
        raw = self._db.get(OFFSET_KEY)
        self._next_offset: int | None = _from_u64(raw) if raw is not None else None
        raw = self._db.get(USERS_KEY)
        self._users = _from_u64(raw) if raw is not None else 0

        # The de-dup window: chunks of event ids (one per committed batch) in
        # commit order, and id -> chunk number.
        raw = self._db.get(DEDUP_NEXT_KEY)
        self._dedup_next = _from_u64(raw) if raw is not None else 0
        self._dedup_chunks: deque[tuple[int, list[str]]] = deque()
        self._dedup_ids: dict[str, int] = {}
        for key, value in self._scan(DEDUP_PREFIX):
            number, ids = _from_u64(key[2:]), json.loads(value)
            self._dedup_chunks.append((number, ids))
            self._dedup_ids.update(dict.fromkeys(ids, number))
        self._dedup_held = len(self._dedup_ids)

        # Outbox marks confirmed since the last commit, deleted by the next;
        # and the newest committed version of users with a mark (until it
        # is confirmed).
        self._published: set[str] = set()
        self._outbox_versions: dict[str, int] = {}
        self._tx_open = False

    def _open(self) -> Rdict:
        self.path.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + self.options.lock_timeout_s
        waited = False
        while True:
            try:
                return Rdict(str(self.path), _options())
            except Exception as exc:  # rocksdict raises plain Exception
                text = str(exc)
                if "lock" not in text.lower():
                    raise StateCorruptError(
                        f"cannot open the state of partition {self.partition} at "
                        f"{self.path}: {text}. If the files are damaged, remove "
                        f"that folder; the consumer rebuilds it from Kafka."
                    ) from exc
                if time.monotonic() >= deadline:
                    raise PartitionLockedError(
                        f"the state of partition {self.partition} at {self.path} is "
                        f"locked by another process for more than "
                        f"{self.options.lock_timeout_s:.0f}s (option lock_timeout_s)"
                    ) from exc
                if not waited:
                    logger.info(
                        "Waiting for the partition lock path=%s partition=%d",
                        self.path,
                        self.partition,
                    )
                    waited = True
                time.sleep(0.1)

    def _check_meta(self) -> None:
        raw = self._db.get(META_KEY)
        if raw is None:
            meta = {
                "format": FORMAT_VERSION,
                "topic": self.topic,
                "partition": self.partition,
            }
            self._db.put(META_KEY, json.dumps(meta).encode(), self._write_opts)
            return
        meta = json.loads(raw)
        if meta.get("format") != FORMAT_VERSION:
            raise StateCorruptError(
                f"state at {self.path} has format {meta.get('format')}, "
                f"this version reads format {FORMAT_VERSION}"
            )
        if meta.get("topic") != self.topic or meta.get("partition") != self.partition:
            raise StateError(
                f"state at {self.path} belongs to topic {meta.get('topic')!r} "
                f"partition {meta.get('partition')}, not {self.topic!r} "
                f"partition {self.partition}"
            )

    @property
    def db(self) -> Rdict:
        if self._db is None:
            raise StateClosedError(
                f"partition {self.partition} at {self.path} is closed"
            )
        return self._db

    # -- reads ----------------------------------------------------------------

    @property
    def next_offset(self) -> int | None:
        """The next offset to read, or None when nothing was ever committed."""
        return self._next_offset

    @property
    def user_count(self) -> int:
        return self._users

    @property
    def dedup_size(self) -> int:
        return self._dedup_held

    def get(self, user_id: str) -> Sequence | None:
        """The committed sequence of ``user_id``, or None."""
        raw = self.db.get(SEQ_PREFIX + user_id.encode())
        return None if raw is None else _decode_sequence(user_id, raw)

    def sequences(self) -> Iterator[Sequence]:
        """Iterate over all committed sequences, in user id byte order."""
        for key, value in self._scan(SEQ_PREFIX):
            yield _decode_sequence(key[2:].decode(), value)

    def unpublished(self) -> list[str]:
        """Users whose latest sequence may not have been published yet."""
        return [
            key[2:].decode()
            for key, _ in self._scan(OUTBOX_PREFIX)
            if key[2:].decode() not in self._published
        ]

    def size_bytes(self) -> int:
        """Approximate size on disk plus memtables."""
        db = self.db
        return (db.property_int_value("rocksdb.total-sst-files-size") or 0) + (
            db.property_int_value("rocksdb.cur-size-all-mem-tables") or 0
        )

    def _scan(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        for key, value in self.db.items(from_key=prefix):
            if not key.startswith(prefix):
                break
            yield key, value

    # -- writes ---------------------------------------------------------------

    def begin(self) -> Transaction:
        """Start a transaction; only one may be open per partition at a time."""
        if self._tx_open:
            raise StateError(
                f"partition {self.partition} already has an open transaction"
            )
        self.db  # noqa: B018 - raises when closed
        self._tx_open = True
        return Transaction(self)

    def mark_published(self, published: Iterable[tuple[str, int]]) -> None:
        """Record that these ``(user_id, version)`` updates reached Kafka.

        A user's outbox mark is deleted with the next commit (or at close)
        unless a newer version of the user was committed meanwhile: that
        version's own confirmation clears it.
        """
        if not self.options.track_publish:
            return
        marked = self._outbox_versions
        for user_id, version in published:
            newest = marked.get(user_id)
            if newest is None or newest <= version:
                marked.pop(user_id, None)
                self._published.add(user_id)

    def sync_wal(self) -> None:
        """Fsync the write-ahead log: everything committed so far survives a
        machine crash. RocksDB releases the GIL meanwhile."""
        self.db.flush_wal(True)

    def checkpoint(self, dest: str | Path) -> Path:
        """Write a consistent, openable copy of this partition to ``dest``
        (a folder that must not exist yet; hard links where possible)."""
        dest = Path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        Checkpoint(self.db).create_checkpoint(str(dest))
        logger.info(
            "Partition checkpoint written partition=%d path=%s", self.partition, dest
        )
        return dest

    def close(self) -> None:
        """Write pending outbox deletions, flush and release the lock."""
        if self._db is None:
            return
        if self._published:
            batch = WriteBatch(raw_mode=True)
            for user_id in self._published:
                batch.delete(OUTBOX_PREFIX + user_id.encode())
            self._db.write(batch, self._write_opts)
            self._published.clear()
        self._db.flush()
        self._db.close()
        self._db = None

    def _dedup_commit(self, batch: WriteBatch, new_ids: list[str]) -> list:
        """Add this batch's ids as one chunk and forget the oldest chunks
        beyond the window; returns the in-memory changes to make once the
        batch is written."""
        window = self.options.dedup_window
        number = self._dedup_next
        chunks = list(self._dedup_chunks)
        held = self._dedup_held
        if new_ids:
            batch.put(
                DEDUP_PREFIX + _u64(number),
                json.dumps(new_ids, separators=(",", ":"), ensure_ascii=False).encode(),
            )
            batch.put(DEDUP_NEXT_KEY, _u64(number + 1))
            chunks.append((number, new_ids))
            held += len(new_ids)
        evicted = 0
        while evicted < len(chunks) and held - len(chunks[evicted][1]) >= window:
            held -= len(chunks[evicted][1])
            batch.delete(DEDUP_PREFIX + _u64(chunks[evicted][0]))
            evicted += 1
        return [new_ids, number, evicted]

    # Called by Transaction.commit() once the batch is written.
    def _committed(
        self, next_offset: int | None, new_users: int, dedup, touched: dict
    ) -> None:
        if self.options.track_publish:
            for user_id, seq in touched.items():
                self._outbox_versions[user_id] = seq.version
        if next_offset is not None:
            self._next_offset = next_offset
        self._users += new_users
        new_ids, number, evicted = dedup
        if new_ids:
            self._dedup_chunks.append((number, new_ids))
            self._dedup_ids.update(dict.fromkeys(new_ids, number))
            self._dedup_held += len(new_ids)
            self._dedup_next = number + 1
        for _ in range(evicted):
            gone, ids = self._dedup_chunks.popleft()
            self._dedup_held -= len(ids)
            for event_id in ids:
                if self._dedup_ids.get(event_id) == gone:
                    del self._dedup_ids[event_id]


@dataclass(slots=True)
class _Pending:
    version: int
    last_offset: int
    items: list[str]
    ts: list[int]
    new: bool
    changed: bool = False


@dataclass(slots=True)
class CommitResult:
    """What one committed transaction changed.

    Attributes:
        touched: the users whose sequence changed, with their new sequence.
        counts: events per :class:`Outcome`.
        next_offset: the stored next offset after the commit.
        committed_at: wall clock (epoch ms) when the batch was durable.
    """

    touched: dict[str, Sequence] = field(default_factory=dict)
    counts: dict[Outcome, int] = field(default_factory=dict)
    next_offset: int | None = None
    committed_at: int = 0


class Transaction:
    """A batch of events applied to one partition, all or nothing.

    Nothing is visible to readers until :meth:`commit`; :meth:`abort` (or an
    exception inside a ``with`` block) discards everything.
    """

    def __init__(self, part: PartitionStore):
        self._part = part
        self._pending: dict[str, _Pending] = {}
        self._new_ids: list[str] = []
        self._new_id_set: set[str] = set()
        self._counts: dict[Outcome, int] = {}
        self._next_offset = part.next_offset
        self._done = False
        self._applied = 0
        opts = part.options
        self._dedup = opts.dedup_window > 0
        self._seen_ids = part._dedup_ids
        self._counted = opts.counted_event_types
        self._limit = opts.max_sequence_length

    @property
    def next_offset(self) -> int | None:
        return self._next_offset

    def advance(self, offset: int) -> bool:
        """Mark ``offset`` consumed without an event (a dead-lettered record).

        Returns:
            False if the offset is below the stored next offset (already done).
        """
        if self._next_offset is not None and offset < self._next_offset:
            return False
        self._next_offset = offset + 1
        return True

    def apply(self, event: ClickEvent, offset: int | None = None) -> Outcome:
        """Apply one validated event.

        Args:
            event: the event.
            offset: its Kafka offset; None when not read from Kafka (the
                stored offset is then left as it is).

        Returns:
            What happened to the event.
        """
        # Hot path (once per event): attribute look-ups are kept local.
        if offset is not None:
            if self._next_offset is not None and offset < self._next_offset:
                return self._count(Outcome.REPLAYED)
            self._next_offset = offset + 1
        else:
            offset = self._next_offset - 1 if self._next_offset else -1

        # De-duplicate every valid event, counted type or not.
        if self._dedup:
            event_id = event.event_id
            if event_id in self._new_id_set or event_id in self._seen_ids:
                return self._count(Outcome.DUPLICATE)
            self._new_ids.append(event_id)
            self._new_id_set.add(event_id)

        if event.event_type not in self._counted:
            return self._count(Outcome.IGNORED)

        seq = self._pending.get(event.user_id) or self._load(event.user_id)
        ts = seq.ts
        limit = self._limit
        at = bisect.bisect_right(ts, event.ts)
        if at == 0 and len(ts) >= limit:
            return self._count(Outcome.STALE)
        seq.items.insert(at, event.item_id)
        ts.insert(at, event.ts)
        if len(ts) > limit:
            del seq.items[: len(ts) - limit]
            del ts[: len(ts) - limit]
        seq.version += 1
        seq.last_offset = offset
        seq.changed = True
        self._applied += 1
        return Outcome.APPLIED

    def get(self, user_id: str) -> Sequence | None:
        """The user's sequence including this transaction's changes."""
        seq = self._pending.get(user_id)
        if seq is None:
            return self._part.get(user_id)
        return Sequence(
            user_id, seq.version, seq.last_offset, tuple(seq.items), tuple(seq.ts)
        )

    def _load(self, user_id: str) -> _Pending:
        seq = self._pending.get(user_id)
        if seq is None:
            raw = self._part.db.get(SEQ_PREFIX + user_id.encode())
            if raw is None:
                seq = _Pending(0, -1, [], [], True)
            else:
                version, last_offset, items, ts = json.loads(raw)
                seq = _Pending(version, last_offset, items, ts, False)
            self._pending[user_id] = seq
        return seq

    def _count(self, outcome: Outcome) -> Outcome:
        self._counts[outcome] = self._counts.get(outcome, 0) + 1
        return outcome

    def commit(self, sync: bool | None = None) -> CommitResult:
        """Write everything in one write batch.

        Args:
            sync: fsync the write-ahead log before returning (default: the
                store's ``sync_writes``). With False, the batch is safe from a
                process crash at once, and from a machine crash after
                :meth:`PartitionStore.sync_wal` (or
                :meth:`SequenceStore.sync_wal` for several partitions).

        Returns:
            The users touched and their new sequences, and the counts.
        """
        if self._done:
            raise StateError("transaction already finished")
        part = self._part
        opts = part.options
        batch = WriteBatch(raw_mode=True)

        # Outbox marks confirmed earlier go first, so a user touched again in
        # this batch gets a fresh mark below.
        published = part._published
        for user_id in published:
            batch.delete(OUTBOX_PREFIX + user_id.encode())

        touched: dict[str, Sequence] = {}
        new_users = 0
        for user_id, seq in self._pending.items():
            if not seq.changed:
                continue  # loaded, but only stale events came
            ukey = user_id.encode()
            batch.put(
                SEQ_PREFIX + ukey,
                json.dumps(
                    [seq.version, seq.last_offset, seq.items, seq.ts],
                    separators=(",", ":"),
                    ensure_ascii=False,
                ).encode(),
            )
            if opts.track_publish:
                batch.put(OUTBOX_PREFIX + ukey, b"")
            new_users += seq.new
            touched[user_id] = Sequence(
                user_id, seq.version, seq.last_offset, tuple(seq.items), tuple(seq.ts)
            )

        dedup = part._dedup_commit(batch, self._new_ids)
        if new_users:
            batch.put(USERS_KEY, _u64(part._users + new_users))
        if self._next_offset is not None and self._next_offset != part.next_offset:
            batch.put(OFFSET_KEY, _u64(self._next_offset))

        if not batch.is_empty():
            if sync is None or sync == opts.sync_writes:
                part.db.write(batch, part._write_opts)
            else:
                part.db.write(batch, part._sync_opts if sync else part._async_opts)
        committed_at = int(time.time() * 1000)

        part._published = set()
        part._committed(self._next_offset, new_users, dedup, touched)
        self._finish()
        counts = dict(self._counts)
        if self._applied:
            counts[Outcome.APPLIED] = self._applied
        return CommitResult(touched, counts, part.next_offset, committed_at)

    def abort(self) -> None:
        """Discard the transaction."""
        if not self._done:
            self._finish()

    def _finish(self) -> None:
        self._done = True
        self._part._tx_open = False

    def __enter__(self) -> Transaction:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if self._done:
            return
        if exc_type is None:
            self.commit()
        else:
            self.abort()


class SequenceStore:
    """All partitions of one events topic under ``state_dir``, as their owner.

    Args:
        state_dir: the root folder (created if missing).
        topic: the events topic whose partitions are stored.
        options: engine options.
    """

    def __init__(
        self, state_dir: str | Path, topic: str, options: StoreOptions | None = None
    ):
        self.state_dir = Path(state_dir)
        self.topic = topic
        self.options = options or StoreOptions()
        self._partitions: dict[int, PartitionStore] = {}
        self._sync_pool: ThreadPoolExecutor | None = None

    def partition_path(self, partition: int) -> Path:
        return partition_path(self.state_dir, self.topic, partition)

    @property
    def partitions(self) -> dict[int, PartitionStore]:
        """The open partitions by number (a copy)."""
        return dict(self._partitions)

    def assign(self, partition: int) -> PartitionStore:
        """Open (or return the already open) store of ``partition``.

        Raises:
            PartitionLockedError: another process kept the lock longer than
                ``options.lock_timeout_s``.
            StateCorruptError: the files cannot be opened.
        """
        part = self._partitions.get(partition)
        if part is None:
            t0 = time.monotonic()
            part = PartitionStore(
                self.partition_path(partition), self.topic, partition, self.options
            )
            self._partitions[partition] = part
            logger.info(
                "Partition state opened topic=%s partition=%d next_offset=%s "
                "users=%d dedup_entries=%d seconds=%.3f",
                self.topic,
                partition,
                part.next_offset,
                part.user_count,
                part.dedup_size,
                time.monotonic() - t0,
            )
        return part

    def revoke(self, partition: int) -> None:
        """Close the store of ``partition`` (no-op if not open)."""
        part = self._partitions.pop(partition, None)
        if part is not None:
            part.close()
            logger.info(
                "Partition state closed topic=%s partition=%d next_offset=%s",
                self.topic,
                partition,
                part.next_offset,
            )

    def partition(self, partition: int) -> PartitionStore:
        try:
            return self._partitions[partition]
        except KeyError:
            raise StateError(f"partition {partition} is not assigned") from None

    def sync_wal(self, partitions: Iterable[int]) -> None:
        """Fsync the write-ahead logs of these partitions, in parallel (the
        partitions are separate databases, each with its own log)."""
        parts = [self._partitions[p] for p in partitions if p in self._partitions]
        if len(parts) == 1:
            parts[0].sync_wal()
        elif parts:
            if self._sync_pool is None:
                self._sync_pool = ThreadPoolExecutor(
                    max_workers=8, thread_name_prefix="elcrec-wal-sync"
                )
            for future in [self._sync_pool.submit(p.sync_wal) for p in parts]:
                future.result()

    def get(self, user_id: str) -> Sequence | None:
        """The user's committed sequence from any open partition, or None."""
        for part in self._partitions.values():
            seq = part.get(user_id)
            if seq is not None:
                return seq
        return None

    def sequences(self) -> Iterator[Sequence]:
        for part in self._partitions.values():
            yield from part.sequences()

    def checkpoint(self, dest: str | Path) -> Path:
        """Checkpoint every open partition under ``dest/<topic>/<partition>``;
        ``dest`` can then be opened as a ``state_dir``."""
        dest = Path(dest)
        for number, part in self._partitions.items():
            part.checkpoint(partition_path(dest, self.topic, number))
        return dest

    def close(self) -> None:
        for number in list(self._partitions):
            self.revoke(number)
        if self._sync_pool is not None:
            self._sync_pool.shutdown()
            self._sync_pool = None

    def __enter__(self) -> SequenceStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def partition_path(state_dir: str | Path, topic: str, partition: int) -> Path:
    return Path(state_dir) / topic / str(partition)


def open_secondary(path: Path, secondary_path: Path) -> Rdict:
    """Open a partition database as a RocksDB secondary instance (read-only,
    able to catch up with the writer by ``try_catch_up_with_primary``)."""
    secondary_path.mkdir(parents=True, exist_ok=True)
    return Rdict(
        str(path),
        _options(secondary=True),
        access_type=AccessType.secondary(str(secondary_path)),
    )
