"""A real single-node Apache Kafka broker (KRaft) on 127.0.0.1, without Docker.

The broker jars come from Maven Central (``deploy/kafka/pom.xml``) and are cached
under ``~/.cache/elcrec/kafka-<version>/`` so only the first start downloads.
Each broker gets a fresh temporary folder with its own ``server.properties``,
KRaft storage and ``server.log``.

Used by the test suite (``tests/conftest.py``) and by people who want a broker for
development::

    python deploy/kafka_local.py run          # prints the bootstrap address, Ctrl-C stops
    python deploy/kafka_local.py fetch        # only download the jars

Only the standard library and kafka-python are needed, so the script also runs
before elcrec itself is installed (the admin client is imported lazily).
"""

from __future__ import annotations

import argparse
import base64
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

logger = logging.getLogger("elcrec.deploy.kafka_local")

KAFKA_VERSION = os.environ.get("ELCREC_KAFKA_VERSION", "4.1.1")
LOG4J_VERSION = os.environ.get("ELCREC_LOG4J_VERSION", "2.24.3")
POM = Path(__file__).resolve().parent / "kafka" / "pom.xml"
CACHE_ROOT = Path(os.environ.get("ELCREC_CACHE_DIR", Path.home() / ".cache" / "elcrec"))


class BrokerError(RuntimeError):
    """The local broker could not be fetched, started or reached."""


def jar_dir(version: str = KAFKA_VERSION) -> Path:
    """Return the folder of broker jars, downloading them with Maven if missing."""
    lib = CACHE_ROOT / f"kafka-{version}" / "lib"
    marker = lib / ".complete"
    if marker.exists():
        return lib

    if shutil.which("mvn") is None:
        raise BrokerError("Maven ('mvn') is needed once to fetch the Kafka jars")

    staging = lib.with_name("lib.partial")
    shutil.rmtree(staging, ignore_errors=True)
    cmd = [
        "mvn",
        "-q",
        "-B",
        "-f",
        str(POM),
        "dependency:copy-dependencies",
        "-DincludeScope=runtime",
        f"-Dkafka.version={version}",
        f"-Dlog4j.version={LOG4J_VERSION}",
        f"-DoutputDirectory={staging}",
    ]
    logger.info("Fetching Kafka jars version=%s into=%s", version, lib)
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise BrokerError(
            f"mvn could not fetch Kafka {version}:\n{done.stdout[-3000:]}{done.stderr[-3000:]}"
        )

    # Rename into place only when complete, so an interrupted download is
    # retried rather than used.
    shutil.rmtree(lib, ignore_errors=True)
    staging.rename(lib)
    marker.touch()
    return lib


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cluster_id() -> str:
    # KRaft wants 16 random bytes in URL-safe base64 without padding; one that
    # starts with "-" would be read by the storage tool as an option.
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cid.startswith("-"):
            return cid


SERVER_PROPERTIES = """\
process.roles=broker,controller
node.id=1
listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}
advertised.listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
controller.quorum.bootstrap.servers=127.0.0.1:{controller_port}
log.dirs={data_dir}
num.partitions=1
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
share.coordinator.state.topic.num.partitions=1
group.initial.rebalance.delay.ms=0
# Lets tests use short session timeouts, so a killed consumer's partitions
# move quickly.
group.min.session.timeout.ms=1000
auto.create.topics.enable=false
num.network.threads=2
num.io.threads=2
log.cleaner.dedupe.buffer.size=16777216
"""

LOG4J2_PROPERTIES = """\
status = warn
appender.file.type = File
appender.file.name = FILE
appender.file.fileName = {log_file}
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = FILE
logger.kafka.name = kafka
logger.kafka.level = INFO
logger.state.name = state.change.logger
logger.state.level = WARN
"""


class LocalKafka:
    """One broker process with its ports and folder.

    Ports and the data folder are kept across :meth:`stop` / :meth:`start`, so a
    test can stop the broker and bring the same one back.
    """

    def __init__(self, workdir: str | os.PathLike | None = None, heap: str = "512m"):
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="elcrec-kafka-"))
        self.port = free_port()
        self.controller_port = free_port()
        self.heap = heap
        self.proc: subprocess.Popen | None = None
        self._formatted = False

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def log_file(self) -> Path:
        return self.workdir / "server.log"

    def log_tail(self, n: int = 60) -> str:
        try:
            lines = self.log_file.read_text(errors="replace").splitlines()
        except OSError:
            return "(no broker log)"
        return "\n".join(lines[-n:])

    def _java(self, main: str, *args: str, **popen) -> list[str]:
        lib = jar_dir()
        return [
            os.environ.get("JAVA", "java"),
            f"-Xmx{self.heap}",
            f"-Dlog4j2.configurationFile={self.workdir / 'log4j2.properties'}",
            "-cp",
            f"{lib}/*",
            main,
            *args,
        ]

    def _write_config(self) -> Path:
        self.workdir.mkdir(parents=True, exist_ok=True)
        props = self.workdir / "server.properties"
        props.write_text(
            SERVER_PROPERTIES.format(
                port=self.port,
                controller_port=self.controller_port,
                data_dir=self.workdir / "data",
            )
        )
        (self.workdir / "log4j2.properties").write_text(
            LOG4J2_PROPERTIES.format(log_file=self.log_file)
        )
        return props

    def start(self, timeout: float = 120.0) -> str:
        """Start the broker and wait until it answers a metadata request.

        Returns:
            The bootstrap address ``127.0.0.1:PORT``.

        Raises:
            BrokerError: the broker exited or did not answer within ``timeout``;
                the message carries the tail of its log.
        """
        props = self._write_config()
        if not self._formatted:
            cmd = self._java(
                "kafka.tools.StorageTool",
                "format",
                "-t",
                _cluster_id(),
                "-c",
                str(props),
                "--standalone",
            )
            done = subprocess.run(cmd, capture_output=True, text=True)
            if done.returncode != 0:
                raise BrokerError(
                    f"Kafka storage format failed:\n{done.stdout}{done.stderr}"
                )
            self._formatted = True

        t0 = time.monotonic()
        out = open(self.workdir / "stdout.log", "ab")
        self.proc = subprocess.Popen(
            self._java("kafka.Kafka", str(props)),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        self._wait_ready(timeout)
        logger.info(
            "Kafka broker ready bootstrap=%s seconds=%.1f",
            self.bootstrap,
            time.monotonic() - t0,
        )
        return self.bootstrap

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BrokerError(
                    f"Kafka broker exited with code {self.proc.returncode}:\n{self.log_tail()}"
                )
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    pass
            except OSError:
                time.sleep(0.3)
                continue
            if _metadata_answers(self.bootstrap):
                return
            time.sleep(0.5)
        self.stop()
        raise BrokerError(
            f"Kafka broker did not answer within {timeout:.0f}s:\n{self.log_tail()}"
        )

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM (controlled shutdown), then SIGKILL after ``timeout`` seconds."""
        if self.proc is None or self.proc.poll() is not None:
            self.proc = None
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            logger.warning(
                "Kafka broker ignored SIGTERM, killing pid=%s", self.proc.pid
            )
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def kill(self) -> None:
        """SIGKILL the broker at once (a crash), keeping its data folder."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> LocalKafka:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.cleanup()


def _die_with_parent() -> None:
    """In the child: ask Linux to SIGTERM it when the starting process dies, so
    a killed test run leaves no broker behind (best effort elsewhere)."""
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _metadata_answers(bootstrap: str) -> bool:
    from kafka import KafkaAdminClient  # kafka-python, imported when needed

    try:
        admin = KafkaAdminClient(
            bootstrap_servers=bootstrap,
            request_timeout_ms=5000,
            client_id="elcrec-probe",
        )
    except Exception:
        return False
    try:
        admin.list_topics()
        return True
    except Exception:
        return False
    finally:
        admin.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("fetch", help="download the broker jars into the cache and exit")
    run = sub.add_parser(
        "run", help="start a broker, print its address, stop on SIGTERM/SIGINT"
    )
    run.add_argument(
        "--address-file", help="also write the bootstrap address to this file"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s"
    )

    if args.cmd == "fetch":
        print(jar_dir())
        return 0

    broker = LocalKafka()
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    try:
        address = broker.start()
    except BrokerError as exc:
        print(exc, file=sys.stderr)
        broker.cleanup()
        return 1
    print(address, flush=True)
    if args.address_file:
        Path(args.address_file).write_text(address + "\n")
    try:
        while not stop and broker.proc is not None and broker.proc.poll() is None:
            time.sleep(0.5)
    finally:
        alive = broker.proc is not None and broker.proc.poll() is None
        if not alive:
            print(f"Kafka broker died:\n{broker.log_tail()}", file=sys.stderr)
        broker.cleanup()
    return 0 if alive else 1


if __name__ == "__main__":
    sys.exit(main())
