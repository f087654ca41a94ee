"""Bad settings fail at start with the field and its environment variable."""

from __future__ import annotations

import subprocess
import sys

import pytest

from elcrec.consumers.settings import load_ingest_settings
from elcrec.consumers.trainer import load_trainer_settings
from elcrec.exceptions import ConfigError


def test_bad_ingest_values_name_each_field_and_variable():
    with pytest.raises(ConfigError) as err:
        load_ingest_settings(max_poll_records=0, group_id="")
    text = str(err.value)
    assert "max_poll_records (env ELCREC_MAX_POLL_RECORDS)" in text
    assert "group_id (env ELCREC_GROUP_ID)" in text


def test_bad_trainer_value_from_the_environment_is_named(monkeypatch):
    monkeypatch.setenv("ELCREC_TRAINER_LR", "-1")
    with pytest.raises(
        ConfigError, match=r"lr \(env ELCREC_TRAINER_LR\).*greater than 0"
    ):
        load_trainer_settings()


def test_unknown_trainer_option_is_refused():
    with pytest.raises(ConfigError, match="no_such_field"):
        load_trainer_settings(no_such_field=1)


def test_the_cli_reports_a_bad_setting_in_one_line_and_exits_2(tmp_path):
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "elcrec.cli",
            "trainer",
            "--n-intents",
            "0",
            "--work-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert "n_intents (env ELCREC_TRAINER_N_INTENTS)" in done.stderr
    assert "Traceback" not in done.stderr
