"""``elcrec health``: does this container's elcrec process serve its metrics?

The image's HEALTHCHECK and the Kubernetes liveness probes run it. The role
(``--role``, else ``ELCREC_ROLE``) says which process to look for. The port is
``--port``, else the one that process reads from the same environment
(``ELCREC_METRICS_PORT`` for ingest, ``ELCREC_TRAINER_METRICS_PORT`` for the
trainer), so the check cannot drift from the process it checks. Healthy means
the metrics endpoint answers within ``--timeout`` seconds and exposes the
role's own metrics (another process on that port is not mistaken for it).

Exit status: 0 healthy, 1 not healthy, with the reason on stderr (Docker gives
every other status a meaning of its own).

Note: the metrics server runs on its own thread, so a consume or training loop
that hangs still looks healthy here; ``elcrec_ingest_consumer_lag`` and the
trainer's step counter show that, and alerting on them is the remedy.
"""

from __future__ import annotations

import argparse
import sys
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

# role -> a metric only that process exposes, from its first second
ROLE_METRIC = {
    "ingest": "elcrec_ingest_records_consumed_total",
    "trainer": "elcrec_trainer_steps_total",
}


class HealthSettings(BaseSettings):
    """What ``elcrec health`` reads from the environment (prefix ``ELCREC_``)."""

    model_config = SettingsConfigDict(env_prefix="ELCREC_", frozen=True)

    role: Literal["ingest", "trainer"] | None = Field(
        None,
        description="the long-running process of this container (ingest or "
        "trainer), for elcrec health",
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--role",
        choices=sorted(ROLE_METRIC),
        help="process to check (default: $ELCREC_ROLE)",
    )
    parser.add_argument(
        "--port",
        type=_port,
        help="metrics port (default: the role's own metrics_port setting)",
    )
    parser.add_argument(
        "--timeout", type=_positive, default=5.0, help="seconds to wait (default 5)"
    )


def _port(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port must be in 1..65535, got {value}")
    return value


def _positive(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {value}")
    return value


def main(args: argparse.Namespace) -> int:
    from elcrec.exceptions import ElcrecError

    try:
        role, host, port = _target(args)
        _check(role, host, port, args.timeout)
    except (ElcrecError, _Unhealthy) as exc:
        print(f"elcrec health: not healthy: {exc}", file=sys.stderr)
        return 1
    print(f"elcrec health: {role} healthy ({host}:{port})")
    return 0


class _Unhealthy(Exception):
    pass


def _target(args: argparse.Namespace) -> tuple[str, str, int]:
    """(role, host, port) to probe, from the flags and the role's settings."""
    from elcrec.settings import load_settings

    role = args.role or load_settings(HealthSettings, "health").role
    if role is None:
        raise _Unhealthy("no role: pass --role or set ELCREC_ROLE (ingest, trainer)")
    if role == "ingest":
        from elcrec.consumers.settings import load_ingest_settings

        settings = load_ingest_settings()
        variable = "ELCREC_METRICS_PORT"
    else:
        from elcrec.consumers.trainer import load_trainer_settings

        settings = load_trainer_settings()
        variable = "ELCREC_TRAINER_METRICS_PORT"
    port = args.port if args.port is not None else settings.metrics_port
    if port is None:
        raise _Unhealthy(f"{role} metrics are off: set {variable} or pass --port")
    # A server bound to every address answers on the loopback one.
    host = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}.get(
        settings.metrics_host, settings.metrics_host
    )
    return role, host, port


def _check(role: str, host: str, port: int, timeout: float) -> None:
    import urllib.request

    netloc = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    url = f"http://{netloc}/metrics"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            body = response.read().decode("utf-8", "replace")
    except OSError as exc:  # refused, timed out, or an HTTP error status
        raise _Unhealthy(f"{url} does not answer: {exc}") from None
    metric = ROLE_METRIC[role]
    if metric not in body:
        raise _Unhealthy(f"{url} answers without {metric}: not the {role} process")
