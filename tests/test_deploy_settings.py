"""What a deployment relies on in the code: the settings reference in the
README, bad settings failing at start, the Kafka security settings reaching
kafka-python, and the health check used by the image and the probes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from kafka import KafkaConsumer, KafkaProducer
from kafka.admin import KafkaAdminClient

from elcrec.cli import main as cli_main
from elcrec.consumers.metrics import IngestMetrics
from elcrec.consumers.settings import IngestSettings, load_ingest_settings
from elcrec.consumers.trainer import TrainerMetrics, load_trainer_settings
from elcrec.exceptions import ConfigError
from elcrec.settings_table import END, START, render
from elcrec.settings_table import main as table_main
from elcrec.stream.kafka_options import client_options, load_client_settings

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def clean_env(monkeypatch):
    """No ELCREC_* or KAFKA_* variable from the caller's environment."""
    for key in list(os.environ):
        if key.startswith(("ELCREC_", "KAFKA_")):
            monkeypatch.delenv(key)
    return monkeypatch


# -- the settings reference --------------------------------------------------------


def test_readme_settings_tables_are_the_generated_ones():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = readme[readme.index(START) + len(START) : readme.index(END)]
    assert block.strip() == render().strip(), (
        "README.md's settings tables are out of date: "
        "python -m elcrec.settings_table --write README.md"
    )


def test_settings_table_lists_every_field_with_its_variables():
    text = render()
    for name in IngestSettings.model_fields:
        assert f"`ELCREC_{name.upper()}`" in text or name == "bootstrap_servers"
    assert "| `ELCREC_BOOTSTRAP_SERVERS`, `KAFKA_BOOTSTRAP_SERVERS` | str |" in text
    assert "| `ELCREC_TRAINER_LR` | float, > 0 | `0.005` |" in text, (
        "a trainer row: variable, type with bound, default"
    )
    assert "`ELCREC_TRAINER_SASL_PLAIN_PASSWORD`, `ELCREC_SASL_PLAIN_PASSWORD`" in text
    assert "| `ELCREC_ROLE` | one of `ingest`, `trainer` | unset |" in text


def test_settings_table_check_reports_a_stale_file(tmp_path, capsys):
    stale = tmp_path / "README.md"
    stale.write_text(f"intro\n{START}\nold table\n{END}\nrest\n")
    assert table_main(["--check", str(stale)]) == 1
    assert "--write" in capsys.readouterr().err
    assert table_main(["--write", str(stale)]) == 0
    assert table_main(["--check", str(stale)]) == 0
    text = stale.read_text()
    assert text.startswith("intro\n") and text.endswith(f"{END}\nrest\n")
    assert "old table" not in text and "`ELCREC_STATE_DIR`" in text


# -- bad settings fail at start, naming the variable ------------------------------


def run_cli(
    args: list[str], env: dict[str, str], tmp_path
) -> subprocess.CompletedProcess:
    base = {
        k: v for k, v in os.environ.items() if not k.startswith(("ELCREC_", "KAFKA_"))
    }
    return subprocess.run(
        [sys.executable, "-m", "elcrec.cli", *args],
        env={**base, **env},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_trainer_with_a_bad_variable_exits_naming_it(tmp_path):
    done = run_cli(["trainer"], {"ELCREC_TRAINER_LR": "-1"}, tmp_path)
    assert done.returncode == 2
    assert "lr (env ELCREC_TRAINER_LR): Input should be greater than 0" in done.stderr
    assert "Traceback" not in done.stderr


def test_ingest_with_a_bad_variable_exits_naming_it(tmp_path):
    done = run_cli(["ingest"], {"ELCREC_MAX_POLL_RECORDS": "0"}, tmp_path)
    assert done.returncode == 2
    assert "max_poll_records (env ELCREC_MAX_POLL_RECORDS)" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "elcrec-work").exists()  # nothing created


def test_incomplete_sasl_settings_stop_the_trainer_naming_the_variables(tmp_path):
    env = {"ELCREC_SECURITY_PROTOCOL": "SASL_SSL", "ELCREC_SASL_MECHANISM": "PLAIN"}
    done = run_cli(["trainer"], env, tmp_path)
    assert done.returncode == 2
    assert (
        "sasl_plain_password (env ELCREC_TRAINER_SASL_PLAIN_PASSWORD or "
        "ELCREC_SASL_PLAIN_PASSWORD)" in done.stderr
    )


# -- Kafka security settings ---------------------------------------------------------


def test_one_set_of_variables_configures_every_kafka_client(clean_env, tmp_path):
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    clean_env.setenv("ELCREC_SECURITY_PROTOCOL", "SASL_SSL")
    clean_env.setenv("ELCREC_SASL_MECHANISM", "SCRAM-SHA-512")
    clean_env.setenv("ELCREC_SASL_PLAIN_USERNAME", "elcrec")
    clean_env.setenv("ELCREC_SASL_PLAIN_PASSWORD", "s3cret")
    clean_env.setenv("ELCREC_SSL_CAFILE", str(ca))
    expected = {
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "elcrec",
        "sasl_plain_password": "s3cret",
        "ssl_cafile": str(ca),
    }
    assert client_options(load_ingest_settings()) == expected
    assert client_options(load_trainer_settings()) == expected
    assert client_options(load_client_settings()) == expected
    # The trainer's own names win over the shared ones.
    clean_env.setenv("ELCREC_TRAINER_SASL_PLAIN_USERNAME", "trainer")
    assert client_options(load_trainer_settings())["sasl_plain_username"] == "trainer"
    assert client_options(load_ingest_settings())["sasl_plain_username"] == "elcrec"
    # The password is kept out of the settings' repr (logs, tracebacks).
    assert "s3cret" not in repr(load_trainer_settings())


def test_client_options_are_kafka_python_configuration_keys(clean_env, tmp_path):
    clean_env.setenv("ELCREC_SECURITY_PROTOCOL", "SASL_SSL")
    clean_env.setenv("ELCREC_SASL_MECHANISM", "PLAIN")
    clean_env.setenv("ELCREC_SASL_PLAIN_USERNAME", "u")
    clean_env.setenv("ELCREC_SASL_PLAIN_PASSWORD", "p")
    for name in ("cafile", "certfile", "keyfile"):
        (tmp_path / name).write_text("x")
        clean_env.setenv(f"ELCREC_SSL_{name.upper()}", str(tmp_path / name))
    keys = set(client_options(load_client_settings()))
    assert len(keys) == 7
    for client in (KafkaConsumer, KafkaProducer, KafkaAdminClient):
        assert keys <= set(client.DEFAULT_CONFIG), client.__name__


def test_contradictory_tls_settings_are_refused(clean_env, tmp_path):
    key = tmp_path / "key.pem"
    key.write_text("x")
    clean_env.setenv("ELCREC_SECURITY_PROTOCOL", "SSL")
    clean_env.setenv("ELCREC_SSL_KEYFILE", str(key))
    with pytest.raises(ConfigError, match=r"ssl_certfile \(env ELCREC_SSL_CERTFILE\)"):
        load_ingest_settings()
    clean_env.setenv("ELCREC_SECURITY_PROTOCOL", "PLAINTEXT")
    clean_env.setenv("ELCREC_SSL_CERTFILE", str(key))
    with pytest.raises(ConfigError, match="security_protocol is PLAINTEXT"):
        load_ingest_settings()
    clean_env.setenv("ELCREC_SSL_CAFILE", str(tmp_path / "missing.pem"))
    with pytest.raises(ConfigError, match=r"ssl_cafile \(env ELCREC_SSL_CAFILE\)"):
        load_ingest_settings()


# -- elcrec health -------------------------------------------------------------------


@pytest.fixture
def serve():
    servers = []

    def start(metrics) -> int:
        server = metrics.serve(0, "127.0.0.1")
        servers.append(server)
        return server.server_port

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def test_health_passes_for_the_role_serving_its_metrics(clean_env, serve, capsys):
    ingest_port = serve(IngestMetrics())
    trainer_port = serve(TrainerMetrics())
    assert cli_main(["health", "--role", "ingest", "--port", str(ingest_port)]) == 0
    assert cli_main(["health", "--role", "trainer", "--port", str(trainer_port)]) == 0
    assert f"trainer healthy (127.0.0.1:{trainer_port})" in capsys.readouterr().out


def test_health_fails_for_another_process_on_the_port(clean_env, serve, capsys):
    ingest_port = serve(IngestMetrics())
    assert cli_main(["health", "--role", "trainer", "--port", str(ingest_port)]) == 1
    assert "without elcrec_trainer_steps_total" in capsys.readouterr().err


def test_health_fails_when_nothing_answers(clean_env, capsys):
    from socket import socket

    with socket() as s:  # a port just released: nothing listens on it
        s.bind(("127.0.0.1", 0))
        free = s.getsockname()[1]
    argv = ["health", "--role", "ingest", "--port", str(free), "--timeout", "2"]
    assert cli_main(argv) == 1
    assert "does not answer" in capsys.readouterr().err


def test_health_reads_role_and_port_from_the_process_environment(clean_env, serve):
    port = serve(TrainerMetrics())
    clean_env.setenv("ELCREC_ROLE", "trainer")
    clean_env.setenv("ELCREC_TRAINER_METRICS_PORT", str(port))
    clean_env.setenv("ELCREC_TRAINER_METRICS_HOST", "0.0.0.0")  # probed on loopback
    assert cli_main(["health"]) == 0
    clean_env.setenv("ELCREC_ROLE", "ingest")  # ingest's port is not set
    assert cli_main(["health"]) == 1


def test_health_without_a_role_or_port_is_unhealthy_and_says_why(clean_env, capsys):
    assert cli_main(["health"]) == 1
    assert "no role: pass --role or set ELCREC_ROLE" in capsys.readouterr().err
    clean_env.setenv("ELCREC_ROLE", "ingest")
    assert cli_main(["health"]) == 1
    assert "set ELCREC_METRICS_PORT" in capsys.readouterr().err
    clean_env.setenv("ELCREC_ROLE", "nobody")
    assert cli_main(["health"]) == 1  # Docker reads 1 as unhealthy; never 2


def test_a_misspelt_trainer_variable_fails_with_a_hint(clean_env):
    clean_env.setenv("ELCREC_TRAINER_POP_PRIORS", "true")
    with pytest.raises(
        ConfigError, match="ELCREC_TRAINER_POP_PRIORS.*ELCREC_TRAINER_POP_PRIOR"
    ):
        load_trainer_settings()
    clean_env.delenv("ELCREC_TRAINER_POP_PRIORS")
    clean_env.setenv("ELCREC_TRAINER_POP_PRIOR", "true")
    assert load_trainer_settings().pop_prior is True
