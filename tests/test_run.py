"""``elcrec run``: the whole job, embedded (no broker) and against Kafka."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from elcrec.publish import latest_version, read_model

ELCREC = [sys.executable, "-m", "elcrec.cli"]


def run(*args, timeout=600, env=None):
    done = subprocess.run(
        [*ELCREC, *args], capture_output=True, text=True, timeout=timeout, env=env
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def test_embedded_run_publishes_a_model_a_fresh_process_can_load(tmp_path):
    work = tmp_path / "work"
    done = run("run", "--work-dir", str(work), "--limit", "3000", "--no-progress")
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["mode"] == "embedded"
    assert summary["events"] == 3000
    assert summary["versions_published"] >= 1
    assert 0.0 <= summary["live_hr@20"] <= 1.0
    # Historical event times measure no latency: the summary does not invent one.
    assert "event_to_step_ms_p99" not in summary

    models = work / "trainer" / "models"
    manifest, _, vocab, _ = read_model(models / latest_version(models))
    assert manifest.events_seen == 3000 and len(vocab) > 100

    # A downstream process loads the model and recommends.
    code = (
        "import json, sys; from elcrec import Recommender;"
        f"r = Recommender.latest({str(models)!r});"
        "print(json.dumps([r.version, r.recommend(['i1', 'i9'], k=5), r.intent(['i1'])]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    version, top, (intent, weight) = json.loads(out.stdout)
    assert version == manifest.version
    assert len(top) == 5 and {"i1", "i9"}.isdisjoint(i for i, _ in top)
    assert 0 <= intent < 64 and -1.0 <= weight <= 1.0


def test_embedded_run_resumes_where_it_stopped(tmp_path):
    work = tmp_path / "work"
    run("run", "--work-dir", str(work), "--limit", "1000", "--no-progress")
    done = run("run", "--work-dir", str(work), "--limit", "1600", "--no-progress")
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    # The second run learns only the 600 new events: 1600 in all, none twice.
    assert summary["events"] == 1600
    assert summary["last_version"] == "v000002"
    assert summary["versions_published"] == 2  # counted across runs, like events


def test_embedded_run_on_a_real_data_file(tmp_path, shared_data):
    done = run(
        "run",
        "--work-dir",
        str(tmp_path),
        "--data",
        str(shared_data / "ml-100k.inter"),
        "--limit",
        "2000",
        "--no-progress",
    )
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["events"] == 2000 and summary["input"].endswith("ml-100k.inter")


def test_a_bad_data_file_fails_with_its_name_and_line(tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_text("1 2 3\n2\n")
    done = subprocess.run(
        [*ELCREC, "run", "--work-dir", str(tmp_path / "w"), "--data", str(bad)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2
    assert "bad.txt:2: user '2' has no items" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    "command", ["run", "train", "evaluate", "replay", "ingest", "trainer", "topics"]
)
def test_every_subcommand_has_help(command):
    done = run(command, "--help")
    assert "usage: elcrec" in done.stdout


def test_a_negative_limit_and_a_work_dir_of_other_input_fail_cleanly(
    tmp_path, shared_data
):
    done = subprocess.run(
        [*ELCREC, "run", "--work-dir", str(tmp_path / "w"), "--limit", "-5"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2 and "--limit" in done.stderr
    assert "Traceback" not in done.stderr

    run("run", "--work-dir", str(tmp_path / "w"), "--limit", "300", "--no-progress")
    other = subprocess.run(
        [
            *ELCREC,
            "run",
            "--work-dir",
            str(tmp_path / "w"),
            "--no-progress",
            "--data",
            str(shared_data / "ml-100k.inter"),
            "--limit",
            "300",
        ],
        capture_output=True,
        text=True,
    )
    assert other.returncode == 2
    assert "holds the state of another input (synthetic)" in other.stderr


def test_kafka_run_supervises_the_processes_and_prints_a_summary(tmp_path, bootstrap):
    import os
    import signal

    from conftest import wait_until

    work = tmp_path / "work"
    env = dict(
        os.environ,
        ELCREC_TRAINER_N_INTENTS="8",
        ELCREC_TRAINER_PUBLISH_EVERY_STEPS="5",
        ELCREC_PUBLISH_INTERVAL_MS="100",
    )
    cmd = [*ELCREC, "run", "--kafka", bootstrap, "--replay", "--limit", "2000"]
    proc = subprocess.Popen(
        [*cmd, "--work-dir", str(work)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, as in a terminal
    )
    try:
        models = work / "trainer" / "models"
        wait_until(
            lambda: models.exists() and latest_version(models) is not None,
            timeout=240,
            what="a published model",
        )
    finally:
        # Ctrl-C: SIGINT reaches the supervisor and its children at once.
        os.killpg(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-3000:]
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["mode"] == "kafka" and summary["failed"] is None, summary
    assert summary["interrupted"] is True
    assert summary["versions_published"] >= 1 and summary["events"] > 0
    assert summary["last_version"] == latest_version(models)
    # --replay stamps send times: the latency from event to step is measured.
    assert 0 < summary["event_to_step_ms_p50"] <= summary["event_to_step_ms_p99"]


def test_a_work_dir_that_is_a_file_or_a_bad_setting_fails_before_writing(tmp_path):
    import os

    afile = tmp_path / "afile"
    afile.write_text("x")
    done = subprocess.run(
        [*ELCREC, "run", "--work-dir", str(afile), "--limit", "10"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2 and "is a file" in done.stderr
    assert "Traceback" not in done.stderr

    work = tmp_path / "work"
    env = dict(os.environ, ELCREC_TRAINER_PRESET="nope")
    done = subprocess.run(
        [*ELCREC, "run", "--work-dir", str(work), "--limit", "10"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert done.returncode == 2 and "ELCREC_TRAINER_PRESET" in done.stderr
    assert not work.exists()  # nothing written for a run that cannot start

    # The store's settings are the ingest consumer's, checked the same way.
    env = dict(os.environ, ELCREC_PUBLISH_INTERVAL_MS="-5")
    done = subprocess.run(
        [*ELCREC, "run", "--work-dir", str(work), "--limit", "10"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert done.returncode == 2 and "ELCREC_PUBLISH_INTERVAL_MS" in done.stderr
    assert not work.exists()

    for args, message in [
        (["--work-dir", str(afile / "sub")], "is a file, not a folder"),
        (["--work-dir", str(work), "--batch-events", "0"], "--batch-events must be"),
    ]:
        done = subprocess.run(
            [*ELCREC, "run", *args, "--limit", "10"], capture_output=True, text=True
        )
        assert done.returncode == 2 and message in done.stderr, done.stderr
        assert "Traceback" not in done.stderr
    assert not work.exists()


def test_embedded_run_reads_a_table_with_its_own_column_names(tmp_path):
    table = tmp_path / "clicks.csv"
    rows = [f"c{n % 40},p{(n * 7) % 90},{1_700_000_000 + n}" for n in range(900)]
    table.write_text("customer,product,when\n" + "\n".join(rows) + "\n")
    args = ["run", "--data", str(table), "--no-progress"]
    done = subprocess.run(
        [*ELCREC, *args, "--work-dir", str(tmp_path / "a")],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2 and "user" in done.stderr  # names its column
    cols = ["--user-col", "customer", "--item-col", "product", "--time-col", "when"]
    done = run(*args, *cols, "--work-dir", str(tmp_path / "w"))
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["events"] == 900 and summary["items"] == 90


def test_kafka_run_without_a_broker_fails_at_once_with_one_error(tmp_path):
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    done = subprocess.run(
        [*ELCREC, "run", "--kafka", f"127.0.0.1:{port}", "--work-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert f"cannot reach Kafka at 127.0.0.1:{port}" in done.stderr
    assert len(done.stderr.strip().splitlines()) <= 2, done.stderr


def test_a_run_that_cannot_train_says_why(tmp_path):
    table = tmp_path / "firsts.csv"  # every user's first and only event
    rows = [f"u{n},i{n % 30},{1_700_000_000 + n}" for n in range(300)]
    table.write_text("user,item,time\n" + "\n".join(rows) + "\n")
    done = run(
        "run", "--data", str(table), "--no-progress", "--work-dir", str(tmp_path / "w")
    )
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["steps"] == 0 and summary["last_version"] is None
    assert "No training step and no model" in done.stderr
