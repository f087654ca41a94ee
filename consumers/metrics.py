"""Prometheus metrics of the ingest consumer (prefix ``elcrec_ingest_``).

Each :class:`IngestMetrics` has its own registry, so several consumers can
live in one process (tests, the embedded mode) without clashing.
"""

from __future__ import annotations

import logging

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

logger = logging.getLogger(__name__)


class IngestMetrics:
    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.consumed = Counter(
            "elcrec_ingest_records_consumed",
            "Kafka records read from the events topic",
            registry=r,
        )
        self.applied = Counter(
            "elcrec_ingest_events_applied",
            "events appended to a user sequence",
            registry=r,
        )
        self.duplicates = Counter(
            "elcrec_ingest_duplicates",
            "events dropped because their event_id was seen within the window",
            registry=r,
        )
        self.skipped = Counter(
            "elcrec_ingest_events_skipped",
            "valid events not appended, by reason (ignored type, stale, replayed)",
            ["reason"],
            registry=r,
        )
        self.dead_lettered = Counter(
            "elcrec_ingest_dead_lettered",
            "records sent to the dead-letter topic, by reason",
            ["reason"],
            registry=r,
        )
        self.published = Counter(
            "elcrec_ingest_sequences_published",
            "sequence updates sent to the sequences topic",
            registry=r,
        )
        self.publish_failures = Counter(
            "elcrec_ingest_publish_failures",
            "batches whose sequence updates could not be confirmed (retried)",
            registry=r,
        )
        self.rebalances = Counter(
            "elcrec_ingest_rebalance_partitions",
            "partitions assigned or revoked",
            ["kind"],
            registry=r,
        )
        self.batch_seconds = Histogram(
            "elcrec_ingest_batch_seconds",
            "time to validate, store and publish one polled batch",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
            registry=r,
        )
        self.batch_records = Histogram(
            "elcrec_ingest_batch_records",
            "records per polled batch",
            buckets=(1, 10, 50, 100, 250, 500, 1000, 2000, 5000, 10000),
            registry=r,
        )
        self.lag = Gauge(
            "elcrec_ingest_consumer_lag",
            "records between the consumer's position and the partition's end",
            ["partition"],
            registry=r,
        )
        self.users = Gauge(
            "elcrec_state_users",
            "users stored, per partition",
            ["partition"],
            registry=r,
        )
        self.state_bytes = Gauge(
            "elcrec_state_size_bytes",
            "RocksDB size (SST files and memtables), per partition",
            ["partition"],
            registry=r,
        )
        self.assigned = Gauge(
            "elcrec_ingest_assigned_partitions", "partitions owned now", registry=r
        )

    def forget_partition(self, partition: int) -> None:
        label = str(partition)
        for gauge in (self.lag, self.users, self.state_bytes):
            try:
                gauge.remove(label)
            except KeyError:
                pass

    def serve(self, port: int, host: str = "127.0.0.1"):
        """Start the HTTP endpoint; returns the server (``shutdown()`` stops it)."""
        from prometheus_client import start_http_server

        server, _thread = start_http_server(port, addr=host, registry=self.registry)
        logger.info(
            "Metrics endpoint started host=%s port=%d", host, server.server_port
        )
        return server
