"""Shared fixtures: one real Kafka broker per test session, fresh topics per test.

Where the broker comes from, in order:
1. ``KAFKA_BOOTSTRAP_SERVERS`` if set (an existing cluster);
2. a testcontainers Kafka when a Docker engine answers;
3. the local broker of ``deploy/kafka_local.py`` (jars from Maven Central).
The address is exported as ``KAFKA_BOOTSTRAP_SERVERS`` so subprocesses under test
find it.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import sys
import time
import uuid
from pathlib import Path

import pytest

logger = logging.getLogger("elcrec.tests")
# kafka-python narrates every connection at INFO: keep failure reports readable.
logging.getLogger("kafka").setLevel(logging.WARNING)

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = ROOT.parent / "shared" / "data"


def _load_kafka_local():
    spec = importlib.util.spec_from_file_location(
        "kafka_local", ROOT / "deploy" / "kafka_local.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules["kafka_local"] = module
    spec.loader.exec_module(module)
    return module


kafka_local = _load_kafka_local()


def _docker_answers() -> bool:
    try:
        import docker  # installed with testcontainers

        docker.from_env(timeout=2).ping()
        return True
    except Exception:
        return False


class BrokerHandle:
    """The session's broker: its address, and stop/start where we own it."""

    def __init__(self, bootstrap: str, local=None):
        self.bootstrap = bootstrap
        self.local = local

    def log_tail(self) -> str:
        return self.local.log_tail() if self.local else "(broker not started by tests)"


@pytest.fixture(scope="session")
def kafka_broker():
    address = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if address:
        yield BrokerHandle(address)
        return

    if _docker_answers():
        from testcontainers.kafka import KafkaContainer

        with KafkaContainer().with_kraft() as container:
            address = container.get_bootstrap_server()
            os.environ["KAFKA_BOOTSTRAP_SERVERS"] = address
            yield BrokerHandle(address)
        os.environ.pop("KAFKA_BOOTSTRAP_SERVERS", None)
        return

    broker = kafka_local.LocalKafka()
    t0 = time.monotonic()
    broker.start()
    logger.info(
        "local broker started in %.1fs at %s", time.monotonic() - t0, broker.bootstrap
    )
    os.environ["KAFKA_BOOTSTRAP_SERVERS"] = broker.bootstrap
    try:
        yield BrokerHandle(broker.bootstrap, broker)
    finally:
        os.environ.pop("KAFKA_BOOTSTRAP_SERVERS", None)
        broker.cleanup()


@pytest.fixture
def bootstrap(kafka_broker) -> str:
    return kafka_broker.bootstrap


@pytest.fixture
def make_topic(kafka_broker, request):
    """Factory: ``make_topic(partitions=3)`` creates a topic unique to this test."""
    from kafka.admin import KafkaAdminClient, NewTopic

    admin = KafkaAdminClient(bootstrap_servers=kafka_broker.bootstrap)
    created: list[str] = []

    def make(partitions: int = 1, prefix: str | None = None, **configs) -> str:
        name = f"{prefix or _slug(request.node.name)}-{uuid.uuid4().hex[:8]}"
        admin.create_topics(
            [
                NewTopic(
                    name,
                    num_partitions=partitions,
                    replication_factor=1,
                    topic_configs={
                        k.replace("_", "."): str(v) for k, v in configs.items()
                    },
                )
            ]
        )
        _wait_topic(admin, name)
        created.append(name)
        return name

    yield make
    try:
        if created:
            admin.delete_topics(created)
    except Exception as exc:  # a broker stopped by the test, say
        logger.warning("could not delete test topics %s: %s", created, exc)
    finally:
        admin.close()


@pytest.fixture
def make_group(request):
    """Factory: a consumer group id unique to this test."""

    def make(prefix: str | None = None) -> str:
        return f"{prefix or _slug(request.node.name)}-{uuid.uuid4().hex[:8]}"

    return make


def _slug(name: str) -> str:
    keep = "".join(c if c.isalnum() or c in "-_" else "-" for c in name)
    return keep[:60].strip("-") or "test"


def _wait_topic(admin, name: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if name in admin.list_topics():
            return
        time.sleep(0.1)
    raise TimeoutError(f"topic {name} did not appear within {timeout}s")


def wait_until(predicate, timeout: float = 30.0, interval: float = 0.1, what=""):
    """Poll ``predicate`` until it returns a truthy value; fail after ``timeout``.

    ``what`` names the awaited condition in the failure; a callable is called
    then, so the message can show the state at the moment of failure.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    what = what() if callable(what) else what
    raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.fail(
            f"the real data sets are expected in {SHARED_DATA} (../shared/data)"
        )
    return SHARED_DATA
