"""The ingest consumer: click events from Kafka into the RocksDB sequence store.

One module wires the parts: a kafka-python consumer in a group on the events
topic, the :class:`~elcrec.state.SequenceStore` (one RocksDB per assigned
partition), a producer for the dead-letter and sequences topics, and the
Prometheus metrics. Per polled batch, for each partition:

1. every record is validated once (:func:`~elcrec.stream.serde.decode_event`);
   bad ones are queued for the dead-letter topic, good ones applied to a
   store :class:`~elcrec.state.Transaction`;
2. the dead-letter records are sent and confirmed (at-least-once: a crash
   before step 3 sends them again);
3. each transaction is committed: sequences, de-dup entries, outbox marks and
   the partition's next offset in one RocksDB write batch; the write-ahead
   logs are then fsynced in the background while the next batch is polled;
4. once a batch is durable, its offsets may go to Kafka (every
   ``kafka_commit_interval_s``, asynchronously) and each changed user's full
   sequence is sent to the sequences topic, at most once per
   ``publish_interval_ms`` (the newest version); sends confirmed by the
   broker clear the users' outbox marks, failed ones are sent again.

Guarantees: the store applies every event exactly once, because an event's
effect and the offset past it are written atomically in step 3, and on
assignment the consumer seeks to the stored offset (Kafka's committed offset
only trails it). Dead-lettered records and published sequences are
at-least-once: a crash between steps repeats them. A repeated sequence update
carries the same ``version`` (events applied to that user so far), so the
trainer drops any update whose version is not above the last it saw.

Note: a batch is visible to readers of the store from its write, a few
milliseconds before its fsync. After a machine crash (not a process crash)
the store can go back to its last synced batch; the records after it are then
read and applied again, and nothing was published or committed for them.

Run it with ``elcrec ingest`` or ``python -m elcrec.consumers.ingest``; in
process::

    app = IngestApp(load_ingest_settings(group_id="g", state_dir="state"))
    threading.Thread(target=app.run).start()   # or app.run() with signals
    ...
    app.stop()
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from kafka import ConsumerRebalanceListener, KafkaConsumer, KafkaProducer
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata, TopicPartition

from elcrec.consumers.metrics import IngestMetrics
from elcrec.consumers.settings import IngestSettings, load_ingest_settings
from elcrec.exceptions import ElcrecError
from elcrec.signals import install_stop_handlers
from elcrec.state.store import CommitResult, Outcome, PartitionStore, SequenceStore
from elcrec.stream.exceptions import BadRecord
from elcrec.stream.kafka_options import client_options
from elcrec.stream.serde import decode_event, encode_sequence_update
from elcrec.stream.topics import wait_for_topic

logger = logging.getLogger(__name__)

# Headers of a dead-lettered record (besides the original record's headers).
H_REASON = "elcrec.dlq.reason"
H_DETAIL = "elcrec.dlq.detail"
H_TOPIC = "elcrec.source.topic"
H_PARTITION = "elcrec.source.partition"
H_OFFSET = "elcrec.source.offset"
H_TIMESTAMP = "elcrec.source.timestamp"
H_TRUNCATED = "elcrec.dlq.truncated"

CommitHook = Callable[[int, CommitResult], None]


class IngestError(ElcrecError):
    """The ingest consumer cannot go on (a partition's state cannot be opened)."""


class _Listener(ConsumerRebalanceListener):
    def __init__(self, app: IngestApp):
        self.app = app

    def on_partitions_revoked(self, revoked):
        self.app._on_revoked(revoked)

    def on_partitions_assigned(self, assigned):
        self.app._on_assigned(assigned)

    def on_partitions_lost(self, lost):
        self.app._on_revoked(lost, lost=True)


class IngestApp:
    """One ingest consumer process (or thread).

    Args:
        settings: validated settings (:func:`load_ingest_settings`).
        on_commit: called as ``on_commit(partition, result)`` after each
            durable store commit, from the consuming thread (benchmarks,
            embedding); keep it short.
    """

    def __init__(self, settings: IngestSettings, on_commit: CommitHook | None = None):
        self.settings = settings
        self.metrics = IngestMetrics()
        self.store = SequenceStore(
            settings.state_dir, settings.events_topic, settings.store_options()
        )
        self._limits = settings.event_limits()
        self._on_commit = on_commit
        self._stop = threading.Event()
        self._to_open: set[TopicPartition] = set()
        self._consumer: KafkaConsumer | None = None
        self._producer: KafkaProducer | None = None
        self._metrics_server = None
        # partition -> users whose current sequence still has to be published
        self._unpublished: dict[int, set[str]] = {}
        # (partition, user, version, send future, monotonic send time)
        self._inflight: list[tuple] = []
        # partition -> user -> (sequence, committed_at) changed, not yet sent
        self._dirty: dict[int, dict[str, tuple]] = {}
        self._dirty_since = 0.0
        self._sequence_partitions: int | None = None
        self._events_partitions = -1
        self._lag_at = 0.0
        self._kafka_committed_at = 0.0
        # The last written batch until its fsync is done: (results, future).
        self._pending: tuple | None = None
        self._syncer = ThreadPoolExecutor(1, thread_name_prefix="elcrec-ingest-sync")
        # partition -> next offset known durable (what Kafka commits carry)
        self._durable: dict[int, int] = {}
        self.running = threading.Event()

    # -- lifecycle ------------------------------------------------------------

    @property
    def metrics_port(self) -> int | None:
        """The port the metrics endpoint listens on (useful with port 0)."""
        server = self._metrics_server
        return None if server is None else server.server_port

    def stop(self) -> None:
        """Ask :meth:`run` to finish the current batch and shut down."""
        self._stop.set()

    def install_signal_handlers(self) -> None:
        """SIGTERM and SIGINT stop gracefully; a second SIGINT interrupts."""
        install_stop_handlers(self.stop)

    def run(self) -> None:
        """Consume until :meth:`stop` (or a fatal error, which is raised)."""
        s = self.settings
        if s.metrics_port is not None:
            self._metrics_server = self.metrics.serve(s.metrics_port, s.metrics_host)
        security = client_options(s)
        try:
            self._producer = KafkaProducer(
                bootstrap_servers=s.bootstrap_servers,
                **security,
                client_id=f"{s.client_id}-producer",
                linger_ms=5,
                batch_size=512 * 1024,
                # A send blocks only while metadata is missing (broker away);
                # keep that short, the update is sent again later.
                max_block_ms=int(min(s.produce_timeout_s, 5.0) * 1000),
            )
            self._consumer = KafkaConsumer(
                bootstrap_servers=s.bootstrap_servers,
                **security,
                group_id=s.group_id,
                group_instance_id=s.group_instance_id,
                client_id=s.client_id,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                max_poll_records=s.max_poll_records,
                session_timeout_ms=s.session_timeout_ms,
                heartbeat_interval_ms=s.heartbeat_interval_ms,
                max_poll_interval_ms=s.max_poll_interval_ms,
            )
        except KafkaError as exc:
            self._shutdown()
            raise IngestError(
                f"cannot reach Kafka at {s.bootstrap_servers} "
                f"(option bootstrap_servers): {exc}"
            ) from exc
        try:
            wait_for_topic(self._consumer, s.events_topic)
        except ElcrecError:
            self._shutdown()
            raise
        self._consumer.subscribe([s.events_topic], listener=_Listener(self))
        logger.info(
            "Ingest consumer started topic=%s group=%s state_dir=%s "
            "publish_sequences=%s",
            s.events_topic,
            s.group_id,
            s.state_dir,
            s.publish_sequences,
        )
        self.running.set()
        try:
            while not self._stop.is_set():
                try:
                    self.step()
                except KafkaError as exc:
                    # Kafka trouble the clients did not absorb: start again
                    # from what the store holds, nothing is lost or repeated.
                    logger.warning(
                        "Kafka error in the consume loop; resuming from the "
                        "stored offsets error=%r",
                        exc,
                    )
                    self._rewind()
                    self._stop.wait(1.0)
        finally:
            self.running.clear()
            self._shutdown()

    def _shutdown(self) -> None:
        # Best effort within a few seconds, even with the broker away: what
        # is not confirmed keeps its outbox mark, and Kafka offsets only trail
        # the store.
        consumer, producer = self._consumer, self._producer
        wait_s = min(self.settings.produce_timeout_s, 5.0)
        try:
            self._complete_pending(publish=False)
            if producer is not None and self.settings.publish_sequences:
                self._flush_dirty(force=True)
                self._reap_publications(wait_s=wait_s)
                if any(self._unpublished.values()):
                    self._publish({})
                    self._reap_publications(wait_s=wait_s)
            if consumer is not None:
                self._commit_kafka()
        finally:
            self._syncer.shutdown()
            self.store.close()
            if consumer is not None:
                consumer.close(autocommit=False, timeout_ms=int(wait_s * 1000))
            if producer is not None:
                producer.close(timeout=wait_s)
            if self._metrics_server is not None:
                self._metrics_server.shutdown()
            self._consumer = self._producer = self._metrics_server = None
            logger.info("Ingest consumer stopped group=%s", self.settings.group_id)

    # -- one batch ------------------------------------------------------------

    def step(self) -> int:
        """Poll once and process what came; returns the number of records."""
        s = self.settings
        # With a batch waiting for its fsync, come back quickly to hand it on.
        polled = self._consumer.poll(
            timeout_ms=5 if self._pending else s.poll_timeout_ms,
            max_records=s.max_poll_records,
        )
        if self._to_open:
            self._open_assigned()
        if not polled:
            self._complete_pending()
            self._flush_dirty()
            self._refresh_gauges()
            return 0

        t0 = time.perf_counter()
        count = sum(len(records) for records in polled.values())
        now_ms = int(time.time() * 1000)
        limits = self._limits
        txs = []
        dead: list[tuple] = []  # (record, BadRecord)

        try:
            for tp, records in polled.items():
                part = self.store.partitions.get(tp.partition)
                if part is None:  # not ours any more; the next owner reads them
                    continue
                tx = part.begin()
                apply = tx.apply
                for rec in records:
                    try:
                        event = decode_event(rec.key, rec.value, limits, now_ms)
                    except BadRecord as bad:
                        if tx.advance(rec.offset):
                            dead.append((rec, bad))
                        continue
                    apply(event, rec.offset)
                txs.append((tp, part, tx, records[0].offset))

            # Dead letters first: once the store says "done", they must be out.
            if dead and not self._send_dead_letters(dead):
                for tp, _part, tx, first in txs:
                    tx.abort()
                    self._consumer.seek(tp, first)
                time.sleep(1.0)
                return 0

            # Write each partition's batch now (visible to readers, safe from a
            # process crash); the fsync of their logs runs in the background
            # while the next batch is polled and applied. The previous batch is
            # completed first: its logs synced, its updates sent.
            results: dict[int, CommitResult] = {}
            for tp, _part, tx, _first in txs:
                results[tp.partition] = tx.commit(sync=False)
        except BaseException:
            for _tp, _part, tx, _first in txs:
                tx.abort()  # no-op for the ones committed
            raise

        self._complete_pending()
        future = None
        if s.sync_writes and results:
            future = self._syncer.submit(_sync_and_time, self.store, list(results))
        self._pending = (results, future)
        if future is None:
            self._complete_pending()

        if time.monotonic() - self._kafka_committed_at >= s.kafka_commit_interval_s:
            self._commit_kafka()
        self._count(count, results, dead, time.perf_counter() - t0)
        self._refresh_gauges()
        return count

    def _rewind(self) -> None:
        """Seek every owned partition back to its stored offset."""
        for number, part in self.store.partitions.items():
            tp = TopicPartition(self.settings.events_topic, number)
            try:
                if part.next_offset is not None:
                    self._consumer.seek(tp, part.next_offset)
                else:
                    self._consumer.seek_to_beginning(tp)
            except (KafkaError, AssertionError, ValueError) as exc:
                # The partition may have been revoked meanwhile.
                logger.debug("Seek failed partition=%d error=%r", number, exc)

    def _complete_pending(self, publish: bool = True) -> None:
        """Wait until the last written batch is durable, then hand it on:
        durable offsets (for Kafka commits), the commit hook, and sequence
        updates (or, with ``publish=False``, queue them for the next step)."""
        if self._pending is None:
            return
        results, future = self._pending
        self._pending = None
        if future is not None:
            durable_at = future.result()  # an fsync error stops the consumer
            for result in results.values():
                result.committed_at = durable_at
        open_parts = self.store.partitions
        for partition, result in results.items():
            if result.next_offset is not None:
                self._durable[partition] = result.next_offset
        if self._on_commit is not None:
            for partition, result in results.items():
                self._on_commit(partition, result)
        if self.settings.publish_sequences:
            for partition, result in results.items():
                if partition in open_parts and result.touched:
                    if not self._dirty:
                        self._dirty_since = time.monotonic()
                    dirty = self._dirty.setdefault(partition, {})
                    at = result.committed_at
                    for user_id, seq in result.touched.items():
                        dirty[user_id] = (seq, at)
        if publish:
            self._flush_dirty()

    def _flush_dirty(self, force: bool = False) -> None:
        """Send the changed users' sequences once ``publish_interval_ms`` has
        passed since the first change (at once when it is 0 or ``force``)."""
        if not self.settings.publish_sequences:
            return
        interval_s = self.settings.publish_interval_ms / 1000
        due = (
            force
            or not interval_s
            or (time.monotonic() - self._dirty_since >= interval_s)
        )
        if self._dirty and due:
            dirty, self._dirty = self._dirty, {}
            self._publish(dirty)
        elif self._inflight or any(self._unpublished.values()):
            self._publish({})

    def _count(self, count, results, dead, seconds) -> None:
        m = self.metrics
        m.consumed.inc(count)
        m.batch_records.observe(count)
        m.batch_seconds.observe(seconds)
        totals: dict[Outcome, int] = {}
        for result in results.values():
            for outcome, n in result.counts.items():
                totals[outcome] = totals.get(outcome, 0) + n
        m.applied.inc(totals.get(Outcome.APPLIED, 0))
        m.duplicates.inc(totals.get(Outcome.DUPLICATE, 0))
        for outcome in (Outcome.IGNORED, Outcome.STALE, Outcome.REPLAYED):
            if totals.get(outcome):
                m.skipped.labels(outcome.value).inc(totals[outcome])
        for _rec, bad in dead:
            m.dead_lettered.labels(str(bad.reason)).inc()

    # -- dead letters ---------------------------------------------------------

    def _send_dead_letters(self, dead) -> bool:
        s = self.settings
        futures = []
        try:
            for rec, bad in dead:
                value = rec.value
                headers = list(rec.headers or [])
                if value is not None and len(value) > s.dlq_max_value_bytes:
                    value = value[: s.dlq_max_value_bytes]
                    headers.append((H_TRUNCATED, str(len(rec.value)).encode()))
                headers += [
                    (H_REASON, str(bad.reason).encode()),
                    (H_DETAIL, bad.detail[:1000].encode("utf-8", "replace")),
                    (H_TOPIC, rec.topic.encode()),
                    (H_PARTITION, str(rec.partition).encode()),
                    (H_OFFSET, str(rec.offset).encode()),
                    (H_TIMESTAMP, str(rec.timestamp).encode()),
                ]
                futures.append(
                    self._producer.send(
                        s.dlq_topic, key=rec.key, value=value, headers=headers
                    )
                )
            self._producer.flush(timeout=s.produce_timeout_s)
            for future in futures:
                future.get(timeout=0)
            return True
        except KafkaError as exc:
            logger.warning(
                "Dead-letter send failed; the batch is not stored and will be "
                "read again topic=%s records=%d error=%s",
                s.dlq_topic,
                len(dead),
                exc,
            )
            return False

    # -- sequence updates -----------------------------------------------------
    # Updates are sent after the store commit and confirmed one batch later
    # (the broker's acknowledgement overlaps the next batch's work). Only a
    # confirmed update clears the user's outbox mark; a failed one is sent
    # again, re-read from the store, with the next batch.

    def _publish(self, updates: dict[int, dict[str, tuple]]) -> None:
        """Send ``{partition: {user: (sequence, committed_at)}}`` and the
        updates that failed earlier."""
        s = self.settings
        if not s.publish_sequences:
            return
        self._reap_publications()
        topic = s.sequences_topic
        source = s.events_topic
        send = self._producer.send
        same_partitions = self._same_partition_count()
        inflight = self._inflight
        started = time.monotonic()

        def send_one(partition: int, seq, at: int) -> None:
            value = encode_sequence_update(
                seq.user_id,
                seq.version,
                seq.items,
                seq.ts,
                source,
                partition,
                seq.last_offset,
                at,
            )
            future = send(
                topic,
                key=seq.user_id.encode(),
                value=value,
                partition=partition if same_partitions else None,
            )
            inflight.append((partition, seq.user_id, seq.version, future, started))

        try:
            for partition, users in updates.items():
                pending = self._unpublished.get(partition)
                for user_id, (seq, at) in users.items():
                    send_one(partition, seq, at)
                    if pending:
                        pending.discard(user_id)
            now_ms = int(time.time() * 1000)
            for partition, pending in self._unpublished.items():
                part = self.store.partitions.get(partition)
                if not pending or part is None:
                    continue
                for user_id in list(pending):
                    seq = part.get(user_id)
                    if seq is not None:
                        send_one(partition, seq, now_ms)
                    pending.discard(user_id)
        except KafkaError as exc:
            # Whatever was not handed to the producer goes with the next batch
            # (some users may then be sent twice: at-least-once).
            for partition, users in updates.items():
                if partition in self.store.partitions and users:
                    pending = self._unpublished.setdefault(partition, set())
                    pending.update(users)
            self._publish_failed(exc)

    def _reap_publications(self, wait_s: float = 0.0) -> None:
        """Collect finished sends: confirmed ones clear their outbox marks,
        failed or overdue ones are queued to be sent again."""
        if not self._inflight:
            return
        if wait_s > 0:
            try:
                self._producer.flush(timeout=wait_s)
            except KafkaError as exc:
                logger.debug("Flush of sequence updates timed out error=%s", exc)
        deadline = time.monotonic() - self.settings.produce_timeout_s
        keep = []
        done: dict[int, list[tuple[str, int]]] = {}
        failed = 0
        for item in self._inflight:
            partition, user_id, version, future, started = item
            if future.is_done and future.succeeded():
                done.setdefault(partition, []).append((user_id, version))
            elif future.is_done or started < deadline:
                self._unpublished.setdefault(partition, set()).add(user_id)
                failed += 1
            else:
                keep.append(item)
        self._inflight = keep
        for partition, confirmed in done.items():
            self.metrics.published.inc(len(confirmed))
            part = self.store.partitions.get(partition)
            if part is not None:
                part.mark_published(confirmed)
        if failed:
            self._publish_failed(f"{failed} updates failed or timed out")

    def _publish_failed(self, error) -> None:
        self.metrics.publish_failures.inc()
        logger.warning(
            "Sequence updates not confirmed; they are sent again with the next "
            "batch topic=%s error=%s",
            self.settings.sequences_topic,
            error,
        )

    def _same_partition_count(self) -> bool:
        # Sending each update to its source partition saves the key hashing;
        # only valid when both topics have the same number of partitions
        # (then the default partitioner would pick the same one).
        if self._sequence_partitions is None:
            try:
                seq = self._producer.partitions_for(self.settings.sequences_topic)
                src = self._consumer.partitions_for_topic(self.settings.events_topic)
            except KafkaError:
                return False  # no metadata now (broker away): ask again later
            self._sequence_partitions = len(seq) if seq else 0
            self._events_partitions = len(src) if src else -1
        return self._sequence_partitions == self._events_partitions

    # -- Kafka offsets --------------------------------------------------------

    def _commit_kafka(self, sync: bool = False) -> None:
        """Commit the stored offsets of the owned partitions to Kafka.

        Note: only for lag monitoring and for consumers without this state;
        the store's offsets decide where this consumer resumes.
        """
        self._kafka_committed_at = time.monotonic()
        offsets = {
            TopicPartition(self.settings.events_topic, n): self._durable[n]
            for n in self.store.partitions
            if n in self._durable
        }
        if not offsets:
            return
        meta = {tp: OffsetAndMetadata(o, "", -1) for tp, o in offsets.items()}
        try:
            if sync:
                self._consumer.commit(offsets=meta)
            else:
                self._consumer.commit_async(offsets=meta, callback=_commit_done)
        except KafkaError as exc:
            # Harmless: the store holds the true offsets.
            logger.debug("Kafka offset commit failed error=%s", exc)

    # -- rebalance ------------------------------------------------------------
    # kafka-python runs these callbacks on its network thread while poll()
    # waits, so they must not block: revocation closes the partition stores
    # (they must be released before another member opens them); assignment
    # only pauses the partitions, and the consuming thread opens their stores
    # (possibly waiting for the previous owner's lock, with heartbeats going
    # on), seeks to the stored offsets and resumes them.

    def _on_revoked(self, revoked, lost: bool = False) -> None:
        mine = [tp for tp in revoked if tp.topic == self.settings.events_topic]
        if not mine:
            return
        logger.info(
            "Partitions %s topic=%s partitions=%s",
            "lost" if lost else "revoked",
            self.settings.events_topic,
            sorted(tp.partition for tp in mine),
        )
        # The last batch's fsync must finish before its database closes.
        self._complete_pending(publish=False)
        if not lost:
            try:
                self._commit_kafka()
            except Exception as exc:  # a rebalance must go on regardless
                logger.debug("Commit on revocation failed error=%s", exc)
        self._reap_publications()  # confirmed ones clear their marks first
        gone = {tp.partition for tp in mine}
        self._inflight = [i for i in self._inflight if i[0] not in gone]
        for tp in mine:
            self._to_open.discard(tp)
            self.store.revoke(tp.partition)
            self._unpublished.pop(tp.partition, None)
            self._dirty.pop(tp.partition, None)  # its outbox marks stay
            self._durable.pop(tp.partition, None)
            self.metrics.forget_partition(tp.partition)
        self.metrics.rebalances.labels("lost" if lost else "revoked").inc(len(mine))
        self.metrics.assigned.set(len(self.store.partitions))

    def _on_assigned(self, assigned) -> None:
        mine = [tp for tp in assigned if tp.topic == self.settings.events_topic]
        logger.info(
            "Partitions assigned topic=%s partitions=%s",
            self.settings.events_topic,
            sorted(tp.partition for tp in mine),
        )
        if mine:
            self._consumer.pause(*mine)
            self._to_open.update(mine)
        self._sequence_partitions = None
        self.metrics.rebalances.labels("assigned").inc(len(mine))

    def _open_assigned(self) -> None:
        """Open the stores of newly assigned partitions, seek, resume."""
        for tp in sorted(self._to_open, key=lambda tp: tp.partition):
            try:
                part = self.store.assign(tp.partition)
            except ElcrecError as exc:
                logger.error(
                    "Cannot open partition state partition=%d error=%s",
                    tp.partition,
                    exc,
                )
                raise IngestError(str(exc)) from exc
            self._seek(tp, part)
            if part.next_offset is not None:
                self._durable[tp.partition] = part.next_offset
            outbox = part.unpublished() if self.settings.publish_sequences else []
            if outbox:
                self._unpublished[tp.partition] = set(outbox)
                logger.info(
                    "Recovered unconfirmed sequence updates partition=%d users=%d",
                    tp.partition,
                    len(outbox),
                )
            self._to_open.discard(tp)
            self._consumer.resume(tp)
        self.metrics.assigned.set(len(self.store.partitions))

    def _seek(self, tp: TopicPartition, part: PartitionStore) -> None:
        if part.next_offset is not None:
            self._consumer.seek(tp, part.next_offset)
            logger.info(
                "Resuming from the stored offset partition=%d offset=%d",
                tp.partition,
                part.next_offset,
            )
            return
        # No state: rebuild from the start of the topic (as far as retention
        # allows) so that sequences are complete, whatever the group committed.
        logger.info(
            "No stored offset, rebuilding from the earliest offset partition=%d",
            tp.partition,
        )
        self._consumer.seek_to_beginning(tp)

    # -- gauges ---------------------------------------------------------------

    def _refresh_gauges(self) -> None:
        now = time.monotonic()
        if now - self._lag_at < self.settings.lag_interval_s:
            return
        self._lag_at = now
        m = self.metrics
        for number, part in self.store.partitions.items():
            label = str(number)
            tp = TopicPartition(self.settings.events_topic, number)
            high = self._consumer.highwater(tp)
            if high is not None and part.next_offset is not None:
                m.lag.labels(label).set(max(0, high - part.next_offset))
            m.users.labels(label).set(part.user_count)
            m.state_bytes.labels(label).set(part.size_bytes())


def _sync_and_time(store: SequenceStore, partitions: list[int]) -> int:
    store.sync_wal(partitions)
    return int(time.time() * 1000)


def _commit_done(offsets, response) -> None:
    if isinstance(response, Exception):
        logger.debug("Kafka offset commit failed error=%s", response)


def main(argv: list[str] | None = None) -> int:
    """``python -m elcrec.consumers.ingest``: settings from the environment
    (``ELCREC_*``), plus ``--group`` and ``--state`` for convenience."""
    import argparse

    parser = argparse.ArgumentParser(description="elcrec ingest consumer")
    parser.add_argument("--group", dest="group_id")
    parser.add_argument("--state", dest="state_dir")
    parser.add_argument("--kafka", dest="bootstrap_servers")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        settings = load_ingest_settings(
            group_id=args.group_id,
            state_dir=args.state_dir,
            bootstrap_servers=args.bootstrap_servers,
        )
        app = IngestApp(settings)
        app.install_signal_handlers()
        app.run()
    except ElcrecError as exc:
        print(f"elcrec ingest: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
