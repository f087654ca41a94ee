"""The Grafana dashboard, Prometheus configuration and alerting rules query only
what the code exports, with valid PromQL and valid provisioning files."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from prometheus_client import Counter, Gauge, Histogram
from promql import parse

from elcrec.consumers.metrics import IngestMetrics
from elcrec.consumers.trainer import Incoming, TrainerLoop, TrainerMetrics
from elcrec.drift import DriftMonitor
from elcrec.stream.events import SequenceUpdate as SequenceRecord

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "elcrec.json"
DATASOURCES = DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml"
PROVIDERS = DEPLOY / "grafana" / "provisioning" / "dashboards" / "elcrec.yml"
PROMETHEUS = DEPLOY / "prometheus" / "prometheus.yml"
RULES = DEPLOY / "prometheus" / "rules.yml"
RULES_TEST = Path(__file__).with_name("prometheus_rules_test.yml")

# Series Prometheus makes itself, and labels it adds to every scraped series.
PROMETHEUS_SERIES = {"up"}
TARGET_LABELS = {"job", "instance"}
# A rule's annotation may run a query: {{ with query "..." }}.
_TEMPLATE_QUERY = re.compile(r'query\s+"((?:[^"\\]|\\.)*)"')


def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def panels() -> list[dict]:
    return [p for p in dashboard()["panels"] if p["type"] != "row"]


def dashboard_queries() -> list[tuple[str, str, str]]:
    """(where, expr, legend) of every panel target and annotation."""
    out = []
    for p in panels():
        for t in p["targets"]:
            out.append((f"panel {p['title']!r}", t["expr"], t.get("legendFormat", "")))
    for a in dashboard()["annotations"]["list"]:
        if "expr" in a:
            where = f"annotation {a['name']!r}"
            out.append((where, a["expr"], a.get("titleFormat", "")))
    return out


def rule_queries() -> list[tuple[str, str, str]]:
    out = []
    for group in yaml.safe_load(RULES.read_text())["groups"]:
        for rule in group["rules"]:
            name = rule.get("alert") or rule.get("record")
            out.append((f"rule {name}", rule["expr"], ""))
            for text in rule.get("annotations", {}).values():
                for query in _TEMPLATE_QUERY.findall(text):
                    out.append(
                        (f"rule {name} annotation", query.replace('\\"', '"'), "")
                    )
    return out


ALL_QUERIES = dashboard_queries() + rule_queries()


def exercised_series() -> dict[str, set[str]]:
    """Every sample name both processes export, with its label names.

    Each metric of both metric classes gets one labelled child, so labelled
    series exist; histograms bring their _bucket/_sum/_count samples.
    """
    series: dict[str, set[str]] = {}
    for holder in (IngestMetrics(), TrainerMetrics()):
        for metric in vars(holder).values():
            if not isinstance(metric, Counter | Gauge | Histogram):
                continue
            child = (
                metric.labels(*["0"] * len(metric._labelnames))
                if metric._labelnames
                else metric
            )
            if isinstance(metric, Histogram):
                child.observe(0.3)
            elif isinstance(metric, Counter):
                child.inc()
            else:
                child.set(1)
        for family in holder.registry.collect():
            for sample in family.samples:
                series.setdefault(sample.name, set()).update(sample.labels)
    return series


# -- files ---------------------------------------------------------------------


def test_dashboard_json_is_a_provisionable_dashboard():
    d = dashboard()
    assert d["uid"] == "elcrec" and d["title"]
    ids = [p["id"] for p in d["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    cells = set()
    for p in d["panels"]:
        g = p["gridPos"]
        assert 0 <= g["x"] and g["x"] + g["w"] <= 24, p["title"]
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, f"panel {p['title']!r} overlaps another"
                cells.add((x, y))
    for p in panels():
        assert p["targets"], p["title"]
        refs = [t["refId"] for t in p["targets"]]
        assert len(refs) == len(set(refs)), p["title"]


def test_provisioning_points_grafana_at_prometheus_and_the_dashboard():
    sources = yaml.safe_load(DATASOURCES.read_text())
    assert sources["apiVersion"] == 1
    (source,) = sources["datasources"]
    assert source["type"] == "prometheus"
    assert source["url"] == "http://prometheus:9090"
    # Every query names the provisioned data source by its fixed uid.
    used = [p["datasource"] for p in panels()]
    used += [t["datasource"] for p in panels() for t in p["targets"]]
    used += [a["datasource"] for a in dashboard()["annotations"]["list"] if "expr" in a]
    assert {(d["type"], d["uid"]) for d in used} == {("prometheus", source["uid"])}

    providers = yaml.safe_load(PROVIDERS.read_text())
    assert providers["apiVersion"] == 1
    (provider,) = providers["providers"]
    assert provider["type"] == "file" and provider["options"]["path"]


def test_prometheus_scrapes_the_ingest_replicas_and_the_trainer():
    config = yaml.safe_load(PROMETHEUS.read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(jobs) == {"elcrec-ingest", "elcrec-trainer"}
    (ingest,) = jobs["elcrec-ingest"]["dns_sd_configs"]
    assert ingest["names"] == ["ingest"] and ingest["port"] == 9108
    (trainer,) = jobs["elcrec-trainer"]["static_configs"]
    assert trainer["targets"] == ["trainer:9109"]
    for rule_file in config["rule_files"]:
        assert (PROMETHEUS.parent / rule_file).is_file()
    for group in yaml.safe_load(RULES.read_text())["groups"]:
        for rule in group["rules"]:
            assert rule["alert"] and rule["annotations"]["summary"], rule


def test_dashboard_has_a_panel_for_each_measure():
    wanted = {
        "elcrec_ingest_records_consumed_total",
        "elcrec_ingest_consumer_lag",
        "elcrec_ingest_dead_lettered_total",
        "elcrec_live_quality_ratio",
        "elcrec_trainer_loss",
        "elcrec_intent_js_divergence",
        "elcrec_intent_center_shift",
        "elcrec_intent_share_ratio",
        "elcrec_drift_alarms_total",
        "elcrec_model_version",
        "elcrec_trainer_steps_total",
        "elcrec_trainer_event_to_step_seconds_bucket",
    }
    queried = {
        name for _, expr, _ in dashboard_queries() for name in parse(expr).metric_names
    }
    assert wanted <= queried, wanted - queried
    annotations = [a for a in dashboard()["annotations"]["list"] if "expr" in a]
    assert any("elcrec_drift_alarms_total" in a["expr"] for a in annotations)


# -- queries -------------------------------------------------------------------


@pytest.mark.parametrize(
    "where,expr",
    [(w, e) for w, e, _ in ALL_QUERIES],
    ids=[w for w, _, _ in ALL_QUERIES],
)
def test_every_query_parses(where, expr):
    query = parse(expr)
    assert query.type in ("vector", "scalar"), f"{where}: {expr}"
    if "histogram_quantile" in query.functions:
        assert any("le" in labels for labels in query.grouping), f"{where}: keep le"


def test_every_metric_and_label_queried_is_exported():
    series = exercised_series()
    problems = []
    for where, expr, legend in ALL_QUERIES:
        query = parse(expr)
        labels = set(TARGET_LABELS)
        for s in query.selectors:
            if s.name in PROMETHEUS_SERIES:
                continue
            if s.name not in series:
                problems.append(f"{where}: {s.name} is not exported")
                continue
            labels |= series[s.name]
            for label, _, _ in s.matchers:
                if label not in series[s.name] | TARGET_LABELS:
                    problems.append(f"{where}: {s.name} has no label {label}")
        grouped = {name for names in query.grouping for name in names}
        legend_labels = set(re.findall(r"\{\{\s*(\w+)\s*\}\}", legend))
        for label in sorted((grouped | legend_labels) - labels):
            problems.append(f"{where}: no series of {expr!r} has the label {label}")
    assert not problems, "\n".join(problems)


def test_histogram_queries_use_the_histograms_sample_names():
    series = exercised_series()
    for where, expr, _ in ALL_QUERIES:
        for name in parse(expr).metric_names:
            if name.endswith(("_bucket", "_sum", "_count")):
                assert name in series and (
                    not name.endswith("_bucket") or "le" in series[name]
                ), f"{where}: {name}"


def test_label_values_queried_are_ones_the_trainer_produces(tmp_path):
    """Run the real trainer loop a little and raise each kind of drift alarm."""
    from elcrec.consumers.trainer import load_trainer_settings

    settings = load_trainer_settings(
        work_dir=tmp_path,
        n_intents=4,
        block_size=10,
        fresh_per_step=16,
        replay_per_step=8,
        publish_every_steps=2,
        drift_window=10,
        drift_warmup_windows=0,
    )
    loop = TrainerLoop(settings)
    records, offset = [], 0
    for step in range(6):
        for u in range(20):
            items = [f"i{(u + k) % 13}" for k in range(step + 2)]
            records.append(
                Incoming(
                    0,
                    offset,
                    SequenceRecord(
                        user_id=f"u{u}",
                        version=len(items),
                        items=items,
                        ts=[1_700_000_000_000 + k for k in range(len(items))],
                        source_topic="elcrec.events",
                        source_partition=0,
                        source_offset=offset,
                        updated_at=int(time.time() * 1000),
                    ),
                )
            )
            offset += 1
    for start in range(0, len(records), 20):
        loop.handle(records[start : start + 20])
    loop.close()

    produced: dict[str, dict[str, set[str]]] = {}
    for family in loop.metrics.registry.collect():
        for sample in family.samples:
            for label, value in sample.labels.items():
                produced.setdefault(sample.name, {}).setdefault(label, set()).add(value)
    # Alarm labels come from the drift monitor's detectors.
    monitor = DriftMonitor(n_intents=2, window=4, warmup_windows=0, js_min=0.2)
    monitor.update_assignments([0] * 4 + [1] * 4)
    monitor.update_hits([0.0] * 300 + [1.0] * 300 + [0.0] * 300)
    for loss in [1.0] * 50 + [10.0] * 50 + [1.0] * 50:
        monitor.update_loss(loss)
    alarms = produced.setdefault("elcrec_drift_alarms_total", {})
    alarms["detector"] = {a.detector for a in monitor.alarms}
    alarms["direction"] = {a.direction for a in monitor.alarms}

    checked = 0
    for where, expr, _ in ALL_QUERIES:
        for s in parse(expr).selectors:
            for label, op, value in s.matchers:
                if label in TARGET_LABELS or s.name not in produced:
                    continue
                values = produced[s.name].get(label, set())
                if op == "=":
                    assert value in values, f"{where}: {s.name}{{{label}={value!r}}}"
                elif op == "=~":
                    assert any(re.fullmatch(value, v) for v in values), where
                checked += 1
    assert checked >= 5


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed")
def test_promtool_accepts_the_config_and_the_alerts_fire_as_meant():
    for args in (
        ["check", "config", str(PROMETHEUS)],
        ["test", "rules", str(RULES_TEST)],
    ):
        done = subprocess.run(
            ["promtool", *args], capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stdout + done.stderr
