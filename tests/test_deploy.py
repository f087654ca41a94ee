"""The deployment files agree with the code: the image, the compose file and
the Kubernetes manifests are checked against the real CLI parser, the real
settings models, the Compose specification and the Kubernetes API schemas.

No container engine or cluster is needed: these are static checks, fast
enough for every run. What only a running engine or cluster can show (that
the image builds, that the pods start) is out of their reach.
"""

from __future__ import annotations

import argparse
import copy
import fnmatch
import json
import re
import shlex
import tomllib
from importlib import resources
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

from elcrec.cli import COMMANDS, _is_built, build_parser
from elcrec.commands.health import HealthSettings
from elcrec.consumers.settings import IngestSettings
from elcrec.consumers.trainer import TrainerSettings
from elcrec.settings import env_names, load_settings
from elcrec.stream.kafka_options import KafkaClientSettings

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
KUBERNETES_VERSION = "1.30.0"

# subcommand -> the settings models that process reads from its environment
ROLE_MODELS = {
    "ingest": (IngestSettings, HealthSettings),
    "trainer": (TrainerSettings, HealthSettings),
    "topics": (KafkaClientSettings,),
    "replay": (KafkaClientSettings,),
}
# subcommand -> (settings model of its metrics, the port Prometheus scrapes)
METRICS = {"ingest": (IngestSettings, 9108), "trainer": (TrainerSettings, 9109)}


# -- helpers ----------------------------------------------------------------------


def variables_read_by(*models) -> set[str]:
    return {
        env for m in models for name in m.model_fields for env in env_names(m, name)
    }


def ours(name: str) -> bool:
    return name.startswith(("ELCREC_", "KAFKA_"))


def load_with_env(model, env: dict[str, str], monkeypatch):
    """``model`` loaded the way the process does, from exactly ``env``."""
    import os

    with monkeypatch.context() as m:
        for key in list(os.environ):
            if ours(key):
                m.delenv(key)
        for key, value in env.items():
            m.setenv(key, str(value))
        return load_settings(model, "deploy")


def parse_cli(argv: list[str]):
    """Parse ``argv`` with elcrec's own parser; fails the test on a refusal,
    and on an abbreviated flag (argparse takes them, but a flag added later
    can make one ambiguous)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit:
        pytest.fail(f"elcrec's parser refuses {argv}")
    assert args.command in COMMANDS and _is_built(COMMANDS[args.command][0])
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    flags = sub.choices[args.command]._option_string_actions
    for token in argv[1:]:
        if token.startswith("--") and token.split("=")[0] not in flags:
            pytest.fail(f"{token} in {argv} is not spelt as elcrec's parser names it")
    return args


def project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def image_ref() -> str:
    return f"elcrec:{project()['version']}"


# -- the CLI check itself ------------------------------------------------------


def test_the_cli_check_refuses_unknown_commands_and_flags():
    for argv in (
        ["ingest", "--no-such-flag"],
        ["no-such-command"],
        ["topics", "6"],
        ["topics", "--partition", "6"],
    ):
        with pytest.raises(pytest.fail.Exception):
            parse_cli(argv)


# -- Dockerfile -------------------------------------------------------------------


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments), continuation lines joined, comments dropped
    (Docker drops comment lines inside a continuation too)."""
    out, pending = [], ""
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        if line.lstrip().startswith("#"):
            continue
        pending += line.rstrip()
        if pending.endswith("\\"):
            pending = pending[:-1] + " "
            continue
        if pending.strip():
            word, _, rest = pending.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
        pending = ""
    return out


def instructions(name: str) -> list[str]:
    return [rest for word, rest in dockerfile() if word == name]


def test_dockerfile_entrypoint_is_the_installed_console_script():
    (entrypoint,) = instructions("ENTRYPOINT")
    assert json.loads(entrypoint) == ["elcrec"]
    assert project()["scripts"]["elcrec"] == "elcrec.cli:main"
    (cmd,) = instructions("CMD")
    assert json.loads(cmd) == ["--help"]  # a bare `docker run` shows the usage


def test_dockerfile_healthcheck_runs_the_health_command():
    (check,) = instructions("HEALTHCHECK")
    options, _, command = check.partition("CMD ")
    argv = json.loads(command)
    assert argv[0] == "elcrec"
    assert parse_cli(argv[1:]).command == "health"
    # Docker counts a check as failed past its timeout: leave room for the
    # command's own (default 5 s) so a slow answer is reported, not killed.
    timeout = re.search(r"--timeout=(\d+)s", options)
    assert timeout and int(timeout.group(1)) > 5


def test_dockerfile_runs_as_the_non_root_user_the_manifests_name():
    (user,) = instructions("USER")
    uid = user.split(":")[0]
    assert uid.isdigit() and int(uid) != 0
    for pod in pod_specs():
        assert pod["securityContext"]["runAsUser"] == int(uid)
        assert pod["securityContext"]["runAsNonRoot"] is True


def test_dockerfile_installs_cpu_torch_by_default_from_a_build_argument():
    args = dict(a.split("=", 1) for a in instructions("ARG") if "=" in a)
    assert args["TORCH_INDEX"] == "https://download.pytorch.org/whl/cpu"
    assert any('--index-url "${TORCH_INDEX}"' in r for r in instructions("RUN"))
    assert (
        args["PYTHON_IMAGE"].startswith("python:3.") and "slim" in args["PYTHON_IMAGE"]
    )


def test_dockerfile_copies_every_package_folder_and_dockerignore_keeps_them():
    package_dirs = set(
        tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
            "package-dir"
        ].values()
    )
    copied = set()
    for rest in instructions("COPY"):
        if rest.startswith("--from"):
            continue
        *sources, _dest = shlex.split(rest)
        for source in sources:
            assert (ROOT / source).exists(), source
            assert not dockerignored(source), f"{source} is excluded by .dockerignore"
            copied.add(source)
    assert package_dirs <= copied
    assert {"pyproject.toml", "README.md"} <= copied
    for heavy in (".venv", ".git", "elcrec-work", "tests", "elcrec/__pycache__"):
        assert dockerignored(heavy), heavy


def dockerignored(path: str) -> bool:
    """Docker's rule: the last pattern matching the path or a parent wins."""
    excluded = False
    for raw in (ROOT / ".dockerignore").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = line.lstrip("!").rstrip("/")
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if pattern.startswith("**/"):
            hit = any(fnmatch.fnmatch(p, pattern[3:]) for p in parts)
        else:
            hit = any(fnmatch.fnmatch(p, pattern) for p in prefixes)
        if hit:
            excluded = not negate
    return excluded


def test_dockerfile_environment_is_read_by_the_settings():
    env = {}
    for rest in instructions("ENV"):
        for pair in shlex.split(rest):
            if "=" in pair:
                key, value = pair.split("=", 1)
                env[key] = value
    elcrec_env = {k: v for k, v in env.items() if ours(k)}
    assert elcrec_env, "the image sets the state and work folders"
    assert set(elcrec_env) <= variables_read_by(IngestSettings, TrainerSettings)
    exposed = {int(p) for rest in instructions("EXPOSE") for p in rest.split()}
    assert exposed == {port for _model, port in METRICS.values()}


# -- compose ------------------------------------------------------------------------


def compose() -> dict:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


def elcrec_services() -> dict[str, dict]:
    return {
        name: s
        for name, s in compose()["services"].items()
        if s.get("image", "").split(":")[0] == "elcrec"
    }


def compose_schema() -> dict:
    vendor = resources.files("check_jsonschema.builtin_schemas.vendor")
    return json.loads((vendor / "compose-spec.json").read_text())


def test_compose_file_is_valid_against_the_compose_specification():
    schema = compose_schema()
    validator = jsonschema.Draft202012Validator(schema)
    errors = [
        f"{list(e.absolute_path)}: {e.message}"
        for e in validator.iter_errors(compose())
    ]
    assert errors == []
    # The schema does catch mistakes: a misspelt key and a bad type.
    broken = copy.deepcopy(compose())
    broken["services"]["ingest"]["enviroment"] = {}
    broken["services"]["trainer"]["stop_grace_period"] = ["60s"]
    assert len(list(validator.iter_errors(broken))) >= 2


def test_compose_runs_the_whole_pipeline():
    services = compose()["services"]
    assert set(elcrec_services()) == set(ROLE_MODELS)
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert {"prometheus", "grafana"} <= set(services)
    assert services["ingest"]["deploy"]["replicas"] >= 1
    for name, service in elcrec_services().items():
        assert service["image"] == image_ref(), name
        assert service["build"]["context"] == ".."
        assert (
            DEPLOY / service["build"]["context"] / service["build"]["dockerfile"]
        ).is_file()


def test_compose_commands_are_elcrec_subcommands_with_accepted_flags():
    for name, service in elcrec_services().items():
        args = parse_cli(service["command"])
        assert args.command == name  # each service is named after its process
    replay = parse_cli(compose()["services"]["replay"]["command"])
    assert replay.data == "synthetic" and replay.now
    topics = parse_cli(compose()["services"]["topics"]["command"])
    assert topics.partitions >= 1 and topics.replication == 1  # one broker


def test_compose_health_checks_run_the_health_command_of_their_role():
    for name, service in elcrec_services().items():
        check = service["healthcheck"]
        if name in METRICS:
            assert check["test"][0] == "CMD"
            args = parse_cli(check["test"][2:])
            assert check["test"][1] == "elcrec"
            assert args.command == "health" and args.role == name
            assert service["environment"]["ELCREC_ROLE"] == name
        else:  # one-shot: the image's check has no role to look for
            assert check == {"disable": True}


def test_compose_environment_is_read_by_each_service_and_valid(monkeypatch):
    for name, service in elcrec_services().items():
        env = {k: str(v) for k, v in service["environment"].items()}
        models = ROLE_MODELS[name]
        unknown = {k for k in env if ours(k)} - variables_read_by(*models)
        assert not unknown, f"{name} sets variables no settings model reads: {unknown}"
        for model in models:
            load_with_env(model, env, monkeypatch)  # raises on a bad value


def test_compose_volumes_hold_the_state_and_the_trainer_work_folder(monkeypatch):
    services = elcrec_services()
    ingest = load_with_env(
        IngestSettings, services["ingest"]["environment"], monkeypatch
    )
    trainer = load_with_env(
        TrainerSettings, services["trainer"]["environment"], monkeypatch
    )
    targets = {
        name: {v.split(":")[1] for v in services[name]["volumes"]}
        for name in ("ingest", "trainer")
    }
    assert str(ingest.state_dir) in targets["ingest"]
    assert str(trainer.work_dir) in targets["trainer"]
    named = set(compose()["volumes"])
    for name in ("ingest", "trainer"):
        for v in services[name]["volumes"]:
            assert v.split(":")[0] in named


def test_compose_bootstrap_is_an_advertised_listener_of_the_broker(monkeypatch):
    kafka_env = compose()["services"]["kafka"]["environment"]
    listeners = dict(
        reversed(item.split("://"))
        for item in kafka_env["KAFKA_ADVERTISED_LISTENERS"].split(",")
    )
    protocols = dict(
        item.split(":")
        for item in kafka_env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(",")
    )
    for name, service in elcrec_services().items():
        client = load_with_env(KafkaClientSettings, service["environment"], monkeypatch)
        assert client.bootstrap_servers in listeners, name
        listener = listeners[client.bootstrap_servers]
        assert protocols[listener] == client.security_protocol, name


def prometheus_targets() -> set[tuple[str, int]]:
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    targets = set()
    for job in config["scrape_configs"]:
        for static in job.get("static_configs", []):
            for target in static["targets"]:
                host, port = target.rsplit(":", 1)
                targets.add((host, int(port)))
        for dns in job.get("dns_sd_configs", []):
            targets.update((host, int(dns["port"])) for host in dns["names"])
    return targets


def test_compose_metrics_listen_where_prometheus_scrapes(monkeypatch):
    targets = prometheus_targets()
    assert targets == {(role, port) for role, (_m, port) in METRICS.items()}
    services = compose()["services"]
    for host, port in targets:
        service = services[host]
        model = METRICS[host][0]
        settings = load_with_env(model, service["environment"], monkeypatch)
        assert settings.metrics_port == port
        assert settings.metrics_host == "0.0.0.0"  # reachable from other containers
        assert str(port) in [str(p) for p in service["expose"]]


def test_compose_mounts_exist_and_grafana_finds_dashboards_and_prometheus():
    services = compose()["services"]
    mounts = {}
    for service in services.values():
        for volume in service.get("volumes", []):
            source, target = volume.split(":")[:2]
            if source.startswith("."):
                assert (DEPLOY / source).exists(), source
                mounts[source] = target
    assert mounts["./prometheus"] == "/etc/prometheus"
    dashboards_dir = mounts["./grafana/dashboards"]
    provisioning = DEPLOY / "grafana" / "provisioning"
    assert mounts["./grafana/provisioning"] == "/etc/grafana/provisioning"
    providers = [
        p
        for f in sorted((provisioning / "dashboards").glob("*.y*ml"))
        for p in yaml.safe_load(f.read_text())["providers"]
    ]
    assert providers and all(
        p["options"]["path"].startswith(dashboards_dir) for p in providers
    )
    assert list((DEPLOY / "grafana" / "dashboards").glob("*.json"))
    sources = [
        d
        for f in sorted((provisioning / "datasources").glob("*.y*ml"))
        for d in yaml.safe_load(f.read_text())["datasources"]
    ]
    prometheus = [d for d in sources if d["type"] == "prometheus"]
    assert prometheus and all(
        re.match(r"https?://prometheus:9090/?$", d["url"]) for d in prometheus
    )


# -- Kubernetes -----------------------------------------------------------------------


def kustomization() -> dict:
    return yaml.safe_load((K8S / "kustomization.yaml").read_text())


def manifests() -> list[dict]:
    docs = []
    for name in kustomization()["resources"]:
        docs += [d for d in yaml.safe_load_all((K8S / name).read_text()) if d]
    return docs


def of_kind(kind: str) -> list[dict]:
    return [d for d in manifests() if d["kind"] == kind]


def workloads() -> list[dict]:
    return [d for d in manifests() if d["kind"] in ("StatefulSet", "Deployment", "Job")]


def pod_specs() -> list[dict]:
    return [w["spec"]["template"]["spec"] for w in workloads()]


def test_kustomization_lists_every_manifest_and_pins_the_image():
    listed = set(kustomization()["resources"])
    present = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == present
    assert kustomization()["namespace"] == "elcrec"
    assert [n["metadata"]["name"] for n in of_kind("Namespace")] == ["elcrec"]
    (image,) = kustomization()["images"]
    assert f"{image['newName']}:{image['newTag']}" == image_ref()


def test_manifests_are_valid_kubernetes_objects():
    for doc in manifests():
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
    # The validator does catch mistakes: a wrong type and a misspelt field.
    bad = copy.deepcopy(of_kind("StatefulSet")[0])
    bad["spec"]["template"]["spec"]["containers"][0]["image"] = ["elcrec"]
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, KUBERNETES_VERSION, strict=True)
    bad = copy.deepcopy(of_kind("Service")[0])
    bad["spec"]["selectr"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, KUBERNETES_VERSION, strict=True)


def test_workloads_select_their_own_pods_and_mount_declared_volumes():
    for w in workloads():
        name = w["metadata"]["name"]
        template = w["spec"]["template"]
        if w["kind"] != "Job":
            selector = w["spec"]["selector"]["matchLabels"]
            assert selector.items() <= template["metadata"]["labels"].items(), name
        declared = {v["name"] for v in template["spec"].get("volumes", [])}
        declared |= {
            c["metadata"]["name"] for c in w["spec"].get("volumeClaimTemplates", [])
        }
        for container in template["spec"]["containers"]:
            for mount in container.get("volumeMounts", []):
                assert mount["name"] in declared, (name, mount["name"])


def test_ingest_and_trainer_are_stateful_sets_with_their_own_volumes(monkeypatch):
    sets = {s["metadata"]["name"]: s for s in of_kind("StatefulSet")}
    assert set(sets) == {"elcrec-ingest", "elcrec-trainer"}
    assert sets["elcrec-trainer"]["spec"]["replicas"] == 1
    assert sets["elcrec-ingest"]["spec"]["replicas"] >= 1
    for name, s in sets.items():
        role = name.removeprefix("elcrec-")
        (claim,) = s["spec"]["volumeClaimTemplates"]
        (container,) = s["spec"]["template"]["spec"]["containers"]
        mount = next(
            m
            for m in container["volumeMounts"]
            if m["name"] == claim["metadata"]["name"]
        )
        settings = load_with_env(
            METRICS[role][0], container_env(container), monkeypatch
        )
        folder = settings.state_dir if role == "ingest" else settings.work_dir
        assert mount["mountPath"] == str(folder)
        # The headless Service the StatefulSet's pods get their names from.
        service = next(
            v
            for v in of_kind("Service")
            if v["metadata"]["name"] == s["spec"]["serviceName"]
        )
        assert service["spec"]["clusterIP"] == "None"
    ingest_env = {
        e["name"]: e
        for e in sets["elcrec-ingest"]["spec"]["template"]["spec"]["containers"][0][
            "env"
        ]
    }
    assert (
        ingest_env["ELCREC_GROUP_INSTANCE_ID"]["valueFrom"]["fieldRef"]["fieldPath"]
        == "metadata.name"
    )


def container_env(container: dict) -> dict[str, str]:
    """The container's environment: ConfigMaps and Secrets, then its own env
    (a value from the pod's fields gets a stand-in)."""
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            env.update(config_map(source["configMapRef"]["name"])["data"])
        if "secretRef" in source:
            env.update(secret(source["secretRef"]["name"])["stringData"])
    for item in container.get("env", []):
        env[item["name"]] = item.get("value", "from-the-pod")
    return env


def config_map(name: str) -> dict:
    return next(c for c in of_kind("ConfigMap") if c["metadata"]["name"] == name)


def secret(name: str) -> dict:
    return next(s for s in of_kind("Secret") if s["metadata"]["name"] == name)


def containers() -> list[dict]:
    return [c for spec in pod_specs() for c in spec["containers"]]


def test_every_container_runs_an_elcrec_command_with_valid_settings(monkeypatch):
    for container in containers():
        assert container["image"] == image_ref()
        args = parse_cli(container["args"])
        env = container_env(container)
        models = ROLE_MODELS[args.command]
        own = {e["name"] for e in container.get("env", [])}
        assert {k for k in own if ours(k)} <= variables_read_by(*models), container[
            "name"
        ]
        for model in models:
            load_with_env(model, env, monkeypatch)  # raises on a bad value
        if args.command in METRICS:
            assert env["ELCREC_ROLE"] == args.command


def test_config_map_and_secret_hold_only_variables_their_pods_read():
    readers: dict[str, set[str]] = {}
    for container in containers():
        command = container["args"][0]
        for source in container.get("envFrom", []):
            ref = source.get("configMapRef") or source.get("secretRef")
            readers.setdefault(ref["name"], set()).add(command)
    for doc in of_kind("ConfigMap") + of_kind("Secret"):
        name = doc["metadata"]["name"]
        data = doc.get("data") or doc.get("stringData")
        assert name in readers, f"{name} is not used by any pod"
        models = [m for command in readers[name] for m in ROLE_MODELS[command]]
        unknown = set(data) - variables_read_by(*models)
        assert not unknown, f"{name} holds variables no pod reads: {unknown}"
    # Credentials live in the Secret, not in the ConfigMap.
    assert not any("PASSWORD" in k for c in of_kind("ConfigMap") for k in c["data"])


def test_the_secret_completes_the_sasl_settings_of_the_config_map(monkeypatch):
    (cm,) = of_kind("ConfigMap")
    assert cm["data"]["ELCREC_SECURITY_PROTOCOL"].startswith("SASL_")
    from elcrec.exceptions import ConfigError

    with pytest.raises(ConfigError, match="ELCREC_SASL_PLAIN_PASSWORD"):
        load_with_env(IngestSettings, cm["data"], monkeypatch)
    trainer = next(c for c in containers() if c["args"][0] == "trainer")
    settings = load_with_env(TrainerSettings, container_env(trainer), monkeypatch)
    assert settings.sasl_plain_password.get_secret_value()


def test_pods_have_resources_probes_and_no_service_link_variables():
    for spec in pod_specs():
        # Service links would add ELCREC_INGEST_PORT... to the environment.
        assert spec["enableServiceLinks"] is False
        for container in spec["containers"]:
            for kind in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(container["resources"][kind])
            assert container["securityContext"]["allowPrivilegeEscalation"] is False
    for container in containers():
        role = container["args"][0]
        if role not in METRICS:
            continue
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        for probe in ("startupProbe", "readinessProbe"):
            assert container[probe]["httpGet"]["port"] in ports
        live = container["livenessProbe"]["exec"]["command"]
        assert live[0] == "elcrec"
        args = parse_cli(live[1:])
        assert args.command == "health" and args.role == role


def test_metrics_services_and_annotations_match_the_settings(monkeypatch):
    for container in containers():
        role = container["args"][0]
        if role not in METRICS:
            continue
        model, port = METRICS[role]
        settings = load_with_env(model, container_env(container), monkeypatch)
        assert settings.metrics_port == port and settings.metrics_host == "0.0.0.0"
        assert {p["name"]: p["containerPort"] for p in container["ports"]}[
            "metrics"
        ] == port
    for workload in of_kind("StatefulSet"):
        template = workload["spec"]["template"]
        (container,) = template["spec"]["containers"]
        port = METRICS[container["args"][0]][1]
        assert template["metadata"]["annotations"]["prometheus.io/port"] == str(port)
        service = next(
            s
            for s in of_kind("Service")
            if s["metadata"]["name"] == workload["spec"]["serviceName"]
        )
        assert service["metadata"]["annotations"]["prometheus.io/scrape"] == "true"
        assert service["metadata"]["annotations"]["prometheus.io/port"] == str(port)
        assert (
            service["spec"]["selector"].items()
            <= template["metadata"]["labels"].items()
        )
        (service_port,) = service["spec"]["ports"]
        assert service_port["port"] == port and service_port["targetPort"] == "metrics"
