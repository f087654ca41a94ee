"""``elcrec drift-report``: one HTML page from a trainer's drift log and models."""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
from datetime import UTC, datetime

import pytest

from elcrec.drift import DriftAlarm, IntentShare, WindowReport
from elcrec.publish import list_versions
from elcrec.report import ReportError, read_drift_log

ELCREC = [sys.executable, "-m", "elcrec.cli"]
SECTIONS = ("shares", "divergence", "quality", "movement", "centers")
# A short synthetic stream with an intent shift at 60 %, small windows and
# frequent publishes, so the log has windows, versions and usually alarms.
SMALL_RUN = {
    "ELCREC_TRAINER_DRIFT_WINDOW": "25",
    "ELCREC_TRAINER_DRIFT_WARMUP_WINDOWS": "2",
    "ELCREC_TRAINER_PUBLISH_EVERY_STEPS": "4",
    "ELCREC_TRAINER_N_INTENTS": "8",
    "ELCREC_TRAINER_BLOCK_SIZE": "20",
    "ELCREC_TRAINER_REPLAY_PER_STEP": "16",
}


def elcrec(*args, env=None, check=True):
    done = subprocess.run(
        [*ELCREC, *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ, **(env or {})),
    )
    if check:
        assert done.returncode == 0, done.stderr[-3000:]
    return done


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    work = tmp_path_factory.mktemp("run")
    elcrec(
        "run",
        "--work-dir",
        str(work),
        "--synthetic-users",
        "40",
        "--synthetic-items",
        "100",
        "--batch-events",
        "64",
        "--no-progress",
        env=SMALL_RUN,
    )
    return work


def log_records(path):
    return [json.loads(line) for line in path.read_text().splitlines() if line]


def test_report_of_a_real_run_shows_every_window_alarm_and_version(run_dir, tmp_path):
    trainer = run_dir / "trainer"
    log = trainer / "drift.jsonl"
    records = log_records(log)
    # A crash makes the trainer write again what it wrote since its last
    # checkpoint: the report must count each record once.
    repeated = log.read_text().splitlines()[-3:]
    with log.open("a") as f:
        f.write("\n".join(repeated) + "\n")

    out = tmp_path / "report" / "drift.html"
    done = elcrec("drift-report", "--work-dir", str(run_dir), "--out", str(out))
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    page = out.read_text()

    windows = {r["window"] for r in records if r["kind"] == "window"}
    alarms = {
        f"{r['detector']}:{r['at_event']}" for r in records if r["kind"] == "alarm"
    }
    versions = list_versions(trainer / "models")
    assert summary["windows"] == len(windows) >= 10
    assert summary["alarms"] == len(alarms)
    assert summary["duplicate_records"] == 3
    assert summary["versions"] == versions and len(versions) >= 2
    assert summary["latest_version"] == versions[-1]

    # The sections, each with one embedded PNG, and nothing fetched from outside.
    for key in (*SECTIONS, "alarms", "versions"):
        assert f'<section id="{key}">' in page
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(images) == len(SECTIONS)
    assert all(base64.b64decode(i).startswith(b"\x89PNG\r\n\x1a\n") for i in images)
    assert not re.search(r'(src|href)="(https?:)?//', page)

    # The tables list exactly the log's alarms and the versions on disk.
    assert set(re.findall(r'data-alarm="([^"]+)"', page)) == alarms
    assert len(re.findall(r"data-alarm=", page)) == len(alarms)
    assert re.findall(r'data-version="([^"]+)"', page) == versions
    assert f"{versions[-1]} (latest)" in page

    # --models names the same trainer through its models folder.
    again = tmp_path / "again.html"
    done = elcrec(
        "drift-report", "--models", str(trainer / "models"), "--out", str(again)
    )
    assert json.loads(done.stdout.strip().splitlines()[-1])["alarms"] == len(alarms)


def _window(n: int, counts, js=None, at=None) -> WindowReport:
    return WindowReport(
        window=n,
        events_from=n * 10,
        events_to=(n + 1) * 10,
        created_at=at or datetime.now(UTC),
        counts=counts,
        js_prev=js,
        empty_intents=sum(c == 0 for c in counts),
        live={"hr@20": 0.5, "ndcg@20": 0.3},
    )


def _alarm(at_event: int, value: float, detector="intent_mix") -> DriftAlarm:
    return DriftAlarm(
        detector=detector,
        direction="rise",
        at_event=at_event,
        created_at=datetime.now(UTC),
        value=value,
        rising=[IntentShare(intent=1, share_before=0.1, share_after=0.6)],
    )


def test_repeated_records_are_kept_once_and_the_last_copy_wins(tmp_path):
    old = [_window(0, [5, 5]), _window(1, [5, 5], js=0.0), _alarm(20, 0.1)]
    # After a crash the resumed trainer writes window 1 and the alarm again
    # (with what the resumed model saw), then goes on.
    new = [
        _window(1, [9, 1], js=0.2),
        _alarm(20, 0.4),
        _window(2, [1, 9], js=0.5),
        _alarm(30, 0.5, detector="quality"),
    ]
    (tmp_path / "drift.jsonl.1").write_text(
        "".join(r.model_dump_json() + "\n" for r in old)
    )
    (tmp_path / "drift.jsonl").write_text(
        "".join(r.model_dump_json() + "\n" for r in new)
        + '{"kind": "window", "window": 3, "coun'  # cut by the crash
    )

    log = read_drift_log(tmp_path)
    assert [w.window for w in log.windows] == [0, 1, 2]
    assert log.windows[1].counts == [9, 1] and log.windows[1].js_prev == 0.2
    assert [(a.detector, a.at_event, a.value) for a in log.alarms] == [
        ("intent_mix", 20, 0.4),
        ("quality", 30, 0.5),
    ]
    assert log.duplicates == 2 and log.bad_lines == 1


def test_a_folder_without_drift_log_or_models_is_a_clear_error(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    done = elcrec("drift-report", "--work-dir", str(empty), check=False)
    assert done.returncode == 2
    assert "no drift log" in done.stderr and str(empty) in done.stderr
    assert "Traceback" not in done.stderr

    (empty / "drift.jsonl").write_text(_window(0, [1, 1]).model_dump_json() + "\n")
    done = elcrec("drift-report", "--work-dir", str(empty), check=False)
    assert done.returncode == 2 and "no published model" in done.stderr

    done = elcrec("drift-report", "--work-dir", str(tmp_path / "nope"), check=False)
    assert done.returncode == 2 and "no such folder" in done.stderr

    (empty / "drift.jsonl").write_text("not json\n")
    with pytest.raises(ReportError, match="holds no record"):
        read_drift_log(empty)
