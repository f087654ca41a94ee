"""The commands end to end: ``elcrec replay`` of the synthetic stream into
``elcrec ingest``, stopped with SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
from ingest_helpers import (
    ROOT,
    expected_sequences,
    stop_process,
    store_contents,
    stored_offsets_total,
    wait_until,
)

from elcrec.stream.replay import ReplayOptions, iter_events
from elcrec.stream.topics import TopicSpec, ensure_topics
from elcrec.synthetic import SyntheticClickstream

pytestmark = pytest.mark.kafka

ELCREC = [sys.executable, "-m", "elcrec.cli"]


def test_replayed_synthetic_stream_is_ingested_and_sigterm_stops_cleanly(
    bootstrap, make_topic, make_group, tmp_path
):
    topic = make_topic(partitions=2)
    ensure_topics(bootstrap, [TopicSpec(f"{topic}.dlq"), TopicSpec(f"{topic}.seq", 2)])
    env = dict(os.environ)
    env.update(
        ELCREC_DLQ_TOPIC=f"{topic}.dlq",
        ELCREC_SEQUENCES_TOPIC=f"{topic}.seq",
        ELCREC_SESSION_TIMEOUT_MS="6000",
        ELCREC_HEARTBEAT_INTERVAL_MS="500",
    )
    ingest = subprocess.Popen(
        [
            *ELCREC,
            "ingest",
            "--kafka",
            bootstrap,
            "--topic",
            topic,
            "--group",
            make_group(),
            "--state",
            str(tmp_path / "state"),
            "--max-sequence-length",
            "20",
        ],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        done = subprocess.run(
            [
                *ELCREC,
                "replay",
                "--kafka",
                bootstrap,
                "--topic",
                topic,
                "--data",
                "synthetic",
                "--users",
                "200",
                "--events-per-user",
                "15",
                "--shift-at",
                "1500",
                "--seed",
                "3",
            ],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        assert "sent 3000 events" in done.stdout
        wait_until(lambda: stored_offsets_total(tmp_path / "state", topic) == 3000, 60)
    finally:
        rc = stop_process(ingest, signal.SIGTERM)
    log = ingest.stdout.read()
    assert rc == 0, log[-3000:]
    assert "Ingest consumer stopped" in log

    stream = SyntheticClickstream(
        n_users=200, events_per_user=15, shift_at=1500, seed=3
    )
    events = list(
        iter_events(stream.interactions(), ReplayOptions(id_prefix="synthetic-3"))
    )
    assert store_contents(tmp_path / "state", topic) == expected_sequences(events, 20)


def test_bad_settings_exit_with_an_error_naming_the_field(tmp_path):
    done = subprocess.run(
        [*ELCREC, "ingest", "--max-sequence-length", "0", "--state", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "max_sequence_length" in done.stderr
