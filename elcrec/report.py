"""The intent-drift report: the trainer's drift log and models as one HTML page.

The trainer appends every closed drift window and every alarm to
``WORK/drift.jsonl`` (rolled over to ``drift.jsonl.1``) and publishes models to
``WORK/models/``. This module reads both and renders a self-contained page
(figures as base64 PNG, no outside links):

- the share of the top intents while each version was the published one;
- the Jensen–Shannon divergence of each window from the previous window and
  from the published model's, with the alarms marked;
- live HR@20 and NDCG@20, and how far the intent centers moved since the last
  publish;
- a 2-D map (PCA) of the latest version's intent centers, sized by share;
- the alarms, with the intents that rose and fell and their top items, and
  the published versions still on disk.

The x axis of the time figures is the trainer's count of events learned, the
unit of ``at_event`` in alarms and of the windows' ``events_to``.

Example:
    >>> find_trainer_dir(models_dir="elcrec-work/trainer/models").as_posix()
    'elcrec-work/trainer'
"""

from __future__ import annotations

import base64
import html
import io
import json
import logging
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from pydantic import ValidationError

from elcrec.drift import DriftAlarm, IntentShare, WindowReport
from elcrec.exceptions import ElcrecError
from elcrec.publish import ModelManifest, latest_version, list_versions, read_model

logger = logging.getLogger(__name__)

DRIFT_LOG = "drift.jsonl"
# The trainer's alarm detectors, with the colour each is drawn in.
DETECTOR_COLORS = {
    "intent_mix": "tab:red",
    "quality": "tab:purple",
    "loss": "tab:orange",
}
FIGURES = ("shares", "divergence", "quality", "movement", "centers")


class ReportError(ElcrecError):
    """The folder holds no drift log or no published model to report on."""


# -- reading -------------------------------------------------------------------


@dataclass
class DriftLog:
    """The drift records of one trainer, each window and alarm once."""

    windows: list[WindowReport]  # by window number
    alarms: list[DriftAlarm]  # by at_event
    files: list[Path]
    bad_lines: int = 0
    duplicates: int = 0


def find_trainer_dir(
    work_dir: str | Path | None = None, models_dir: str | Path | None = None
) -> Path:
    """The trainer work folder named by either a work folder or a models folder.

    ``work_dir`` may be the trainer's own folder (with ``drift.jsonl`` and
    ``models/``) or the folder of ``elcrec run`` (the trainer's is
    ``trainer/`` inside); ``models_dir`` is a models folder, whose parent holds
    the drift log.
    """
    if (work_dir is None) == (models_dir is None):
        raise ReportError("name either a work folder or a models folder")
    if models_dir is not None:
        return Path(models_dir).parent
    work = Path(work_dir)
    if not work.is_dir():
        raise ReportError(f"{work}: no such folder (option --work-dir)")
    mine = (work / DRIFT_LOG).exists() or (work / "models").is_dir()
    if not mine and (work / "trainer").is_dir():
        return work / "trainer"
    return work


def read_drift_log(trainer_dir: str | Path) -> DriftLog:
    """Read ``drift.jsonl.1`` then ``drift.jsonl``, keeping the last copy of
    each window (by number) and of each alarm (by detector and event).

    Note: after a crash the trainer writes again the records since its last
    checkpoint, so copies are expected; the later copy is the one the resumed
    model produced. Lines that do not parse (a write cut by a crash) are
    skipped and counted.

    Raises:
        ReportError: there is no drift log, or it holds no record.
    """
    trainer_dir = Path(trainer_dir)
    log = trainer_dir / DRIFT_LOG
    files = [p for p in (log.with_name(DRIFT_LOG + ".1"), log) if p.is_file()]
    if not files:
        raise ReportError(
            f"{trainer_dir}: no drift log ({DRIFT_LOG}); the trainer writes one "
            "when its first drift window closes (ELCREC_TRAINER_DRIFT_WINDOW "
            "assignments), unless ELCREC_TRAINER_DRIFT_LOG_BYTES is 0"
        )
    windows: dict[int, WindowReport] = {}
    alarms: dict[tuple[str, int], DriftAlarm] = {}
    bad = seen = 0
    for path in files:
        with path.open(encoding="utf-8", errors="replace") as f:
            for n, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                record = _parse_record(line)
                if record is None:
                    bad += 1
                    logger.debug("Skipping a drift record path=%s line=%d", path, n)
                    continue
                seen += 1
                if isinstance(record, WindowReport):
                    windows[record.window] = record
                else:
                    alarms[(record.detector, record.at_event)] = record
    if not windows and not alarms:
        raise ReportError(f"{files[-1]}: the drift log holds no record")
    if bad:
        logger.warning(
            "Skipped drift records that do not parse lines=%d files=%s",
            bad,
            [str(p) for p in files],
        )
    return DriftLog(
        windows=[windows[k] for k in sorted(windows)],
        alarms=sorted(alarms.values(), key=lambda a: (a.at_event, a.detector)),
        files=files,
        bad_lines=bad,
        duplicates=seen - len(windows) - len(alarms),
    )


def _parse_record(line: str) -> WindowReport | DriftAlarm | None:
    try:
        kind = json.loads(line).get("kind")
        if kind == "window":
            return WindowReport.model_validate_json(line)
        if kind == "alarm":
            return DriftAlarm.model_validate_json(line)
    except (ValueError, AttributeError, ValidationError):
        pass
    return None


@dataclass
class ModelView:
    """What the report shows of the published models."""

    models_dir: Path
    manifests: list[ModelManifest]  # every version on disk, oldest first
    latest: str
    centers: np.ndarray | None  # (K, C) of the latest version
    top_items: dict[int, list[str]] = field(default_factory=dict)  # its items


def read_models(models_dir: str | Path, n_items: int = 5) -> ModelView:
    """Manifests of every version on disk, the latest's centers and top items.

    Raises:
        ReportError: no version is published there.
        elcrec.publish.PublishError: the latest version fails its checksum.
    """
    models_dir = Path(models_dir)
    versions = list_versions(models_dir)
    if not versions:
        raise ReportError(
            f"{models_dir}: no published model (the trainer publishes every "
            "publish_every_steps steps or publish_every_s seconds, and when it stops)"
        )
    manifests = []
    for name in versions:
        try:
            manifests.append(
                ModelManifest.model_validate_json(
                    (models_dir / name / "manifest.json").read_text()
                )
            )
        except (OSError, ValueError) as exc:
            logger.warning(
                "Skipping a version without a readable manifest version=%s error=%s",
                name,
                exc,
            )
    latest = latest_version(models_dir) or versions[-1]
    _, state_dict, vocab, _ = read_model(models_dir / latest)
    centers = _centers(state_dict)
    return ModelView(
        models_dir=models_dir,
        manifests=manifests,
        latest=latest,
        centers=centers,
        top_items=_top_items(state_dict, centers, vocab, n_items),
    )


def _centers(state_dict: dict) -> np.ndarray | None:
    """The (K, C) intent centers of a state dict (the 2-D tensor named so)."""
    for key, value in state_dict.items():
        if "centers" in key and getattr(value, "ndim", 0) == 2:
            return value.detach().cpu().double().numpy()
    return None


def _top_items(
    state_dict: dict, centers: np.ndarray | None, vocab: list[str], n: int
) -> dict[int, list[str]]:
    """Each intent's ``n`` items whose embeddings score highest with its center."""
    emb = state_dict.get("tok_emb.weight")
    if centers is None or emb is None or not vocab:
        return {}
    # Row 0 is padding; row i + 1 is vocab[i].
    rows = emb.detach().cpu().double().numpy()[1 : len(vocab) + 1]  # (N, C)
    rows = rows[:, : centers.shape[1]]  # without an item-bias column
    if rows.shape[1] != centers.shape[1]:
        return {}
    scores = centers @ rows.T  # (K, N)
    top = np.argsort(-scores, axis=1, kind="stable")[:, :n]
    return {k: [vocab[i] for i in row] for k, row in enumerate(top.tolist())}


# -- measures ------------------------------------------------------------------


def shares_by_version(
    windows: list[WindowReport],
) -> tuple[list[str], np.ndarray]:
    """Intent shares of the windows closed while each version was the published
    one, in order of appearance; ``(labels, shares (V, K))``."""
    order: list[str] = []
    totals: dict[str, np.ndarray] = {}
    for w in windows:
        label = w.model_version or "none yet"
        counts = np.asarray(w.counts, dtype=np.float64)
        if label not in totals:
            order.append(label)
            totals[label] = np.zeros_like(counts)
        if totals[label].shape != counts.shape:
            continue  # the number of intents changed: keep the first shape
        totals[label] += counts
    if not order:
        return [], np.zeros((0, 0))
    shares = np.stack([totals[v] / max(1.0, totals[v].sum()) for v in order])
    return order, shares


def latest_shares(windows: list[WindowReport], version: str) -> np.ndarray | None:
    """Shares under ``version``, else those of the last window (the one the
    version was published on)."""
    labels, shares = shares_by_version(windows)
    if version in labels:
        return shares[labels.index(version)]
    if windows:
        counts = np.asarray(windows[-1].counts, dtype=np.float64)
        return counts / max(1.0, counts.sum())
    return None


def pca_2d(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The first two principal coordinates of the rows of ``x`` (n, d), and the
    share of the variance each explains: ``((n, 2), (2,))``.

    >>> xy, explained = pca_2d(np.array([[2.0, 0, 0], [-2, 0, 0], [0, 1, 0]]))
    >>> xy.shape, round(float(explained.sum()), 6)
    ((3, 2), 1.0)
    """
    x = np.asarray(x, dtype=np.float64)
    centred = x - x.mean(axis=0, keepdims=True)
    _, s, vt = np.linalg.svd(centred, full_matrices=False)
    coords = centred @ vt[:2].T  # (n, <=2)
    variance = s**2
    explained = variance[:2] / max(float(variance.sum()), 1e-12)
    if coords.shape[1] < 2:  # a single center or a 1-D space
        coords = np.pad(coords, ((0, 0), (0, 2 - coords.shape[1])))
        explained = np.pad(explained, (0, 2 - len(explained)))
    return coords, explained


# -- figures -------------------------------------------------------------------


def _figure(width: float = 9.0, height: float = 3.6):
    # Figures without pyplot: no global state, and the Agg canvas renders PNG
    # whatever backend the process has chosen.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _no_data(ax, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes)
    ax.set_xticks([])
    ax.set_yticks([])


def _mark_alarms(ax, alarms: list[DriftAlarm], detectors=None) -> None:
    drawn = set()
    for a in alarms:
        if detectors is not None and a.detector not in detectors:
            continue
        ax.axvline(
            a.at_event,
            color=DETECTOR_COLORS.get(a.detector, "tab:gray"),
            linestyle="--",
            linewidth=1,
            alpha=0.8,
            label=None if a.detector in drawn else f"alarm: {a.detector}",
        )
        drawn.add(a.detector)


def _plot(ax, series: tuple[list[int], list[float]], label: str) -> None:
    # Dots mark the windows while they can be told apart.
    ax.plot(*series, marker="." if len(series[0]) <= 60 else None, label=label)


def _series(windows, get) -> tuple[list[int], list[float]]:
    xs, ys = [], []
    for w in windows:
        value = get(w)
        if value is not None:
            xs.append(w.events_to)
            ys.append(value)
    return xs, ys


def figure_shares(windows: list[WindowReport], top: int = 10) -> str:
    labels, shares = shares_by_version(windows)
    fig = _figure(height=max(3.0, 0.3 * (top + 1) + 1.5))
    ax = fig.add_subplot()
    if not labels:
        _no_data(ax, "no drift window closed yet")
        return _png(fig)
    max_cols = 40
    if len(labels) > max_cols:
        labels, shares = labels[-max_cols:], shares[-max_cols:]
        ax.set_title(f"last {max_cols} versions", fontsize=9)
    order = np.argsort(-shares.sum(axis=0), kind="stable")[:top]
    grid = shares[:, order].T  # (top, V)
    names = [f"intent {k}" for k in order]
    if len(order) < shares.shape[1]:
        other = np.clip(1.0 - grid.sum(axis=0, keepdims=True), 0.0, 1.0)
        grid, names = np.vstack([grid, other]), [*names, "other"]
    image = ax.imshow(grid, aspect="auto", cmap="viridis", vmin=0.0)
    ax.set_yticks(range(len(names)), names)
    step = max(1, len(labels) // 20)
    ax.set_xticks(range(0, len(labels), step), labels[::step], rotation=60)
    ax.set_xlabel("published version while the windows closed")
    fig.colorbar(image, ax=ax, label="share of assignments")
    return _png(fig)


def figure_divergence(windows: list[WindowReport], alarms: list[DriftAlarm]) -> str:
    fig = _figure()
    ax = fig.add_subplot()
    prev = _series(windows, lambda w: w.js_prev)
    pub = _series(windows, lambda w: w.js_published)
    if not prev[0] and not pub[0]:
        _no_data(ax, "fewer than two drift windows")
        return _png(fig)
    _plot(ax, prev, "from the previous window")
    _plot(ax, pub, "from the published model's window")
    _mark_alarms(ax, alarms)
    ax.set_xlabel("events learned")
    ax.set_ylabel("Jensen–Shannon divergence")
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=8)
    return _png(fig)


def figure_quality(windows: list[WindowReport], alarms: list[DriftAlarm]) -> str:
    fig = _figure()
    ax = fig.add_subplot()
    hr = _series(windows, lambda w: w.live.get("hr@20"))
    ndcg = _series(windows, lambda w: w.live.get("ndcg@20"))
    if not hr[0] and not ndcg[0]:
        _no_data(ax, "no live metric recorded")
        return _png(fig)
    _plot(ax, hr, "HR@20")
    _plot(ax, ndcg, "NDCG@20")
    _mark_alarms(ax, alarms, detectors={"quality"})
    ax.set_xlabel("events learned")
    ax.set_ylabel("prequential, sliding window")
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=8)
    return _png(fig)


def figure_movement(windows: list[WindowReport]) -> str:
    fig = _figure()
    ax = fig.add_subplot()
    mean = _series(windows, lambda w: w.center_shift_mean)
    top = _series(windows, lambda w: w.center_shift_max)
    if not mean[0]:
        _no_data(ax, "no window closed after a publish")
        return _png(fig)
    _plot(ax, mean, "mean")
    _plot(ax, top, "max")
    ax.set_xlabel("events learned")
    ax.set_ylabel("distance moved since the last publish")
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=8)
    return _png(fig)


def figure_centers(centers: np.ndarray | None, shares: np.ndarray | None) -> str:
    fig = _figure(width=6.5, height=5.5)
    ax = fig.add_subplot()
    if centers is None:
        _no_data(ax, "the latest version has no intent centers")
        return _png(fig)
    xy, explained = pca_2d(centers)
    k = len(xy)
    if shares is None or len(shares) != k:
        shares = np.full(k, 1.0 / k)
    ax.scatter(
        xy[:, 0],
        xy[:, 1],
        s=20 + 2000 * shares,
        c=shares,
        cmap="viridis",
        alpha=0.7,
        edgecolors="black",
        linewidths=0.5,
    )
    for i in np.argsort(-shares, kind="stable")[: min(k, 12)]:
        ax.annotate(str(i), xy[i], ha="center", va="center", fontsize=8)
    ax.set_xlabel(f"principal component 1 ({100 * explained[0]:.0f}% of variance)")
    ax.set_ylabel(f"principal component 2 ({100 * explained[1]:.0f}% of variance)")
    return _png(fig)


# -- the page ------------------------------------------------------------------


@dataclass
class ReportSummary:
    out: Path
    windows: int
    alarms: int
    versions: list[str]
    latest: str
    duplicates: int
    bad_lines: int

    def to_dict(self) -> dict:
        return {
            "out": str(self.out),
            "windows": self.windows,
            "alarms": self.alarms,
            "versions": self.versions,
            "latest_version": self.latest,
            "duplicate_records": self.duplicates,
            "bad_lines": self.bad_lines,
        }


def write_report(
    trainer_dir: str | Path,
    out: str | Path,
    models_dir: str | Path | None = None,
    top_intents: int = 10,
    max_alarms: int = 500,
) -> ReportSummary:
    """Render the drift report of one trainer folder to the HTML file ``out``.

    Args:
        trainer_dir: the trainer's work folder (``drift.jsonl`` and ``models/``).
        out: the HTML file to write (its folder is created).
        models_dir: the models folder, when not ``trainer_dir/models``.
        top_intents: intents shown in the share heatmap.
        max_alarms: the newest alarms listed in the table.

    Raises:
        ReportError: no drift log, or no published model.
    """
    trainer_dir = Path(trainer_dir)
    log = read_drift_log(trainer_dir)
    models = read_models(models_dir or trainer_dir / "models")
    page = render_html(trainer_dir, log, models, top_intents, max_alarms)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(out)
    logger.info(
        "Drift report written path=%s windows=%d alarms=%d versions=%d",
        out,
        len(log.windows),
        len(log.alarms),
        len(models.manifests),
    )
    return ReportSummary(
        out=out,
        windows=len(log.windows),
        alarms=len(log.alarms),
        versions=[m.version for m in models.manifests],
        latest=models.latest,
        duplicates=log.duplicates,
        bad_lines=log.bad_lines,
    )


def render_html(
    trainer_dir: Path,
    log: DriftLog,
    models: ModelView,
    top_intents: int = 10,
    max_alarms: int = 500,
) -> str:
    """The whole page as one string."""
    w, a = log.windows, log.alarms
    images = {
        "shares": figure_shares(w, top_intents),
        "divergence": figure_divergence(w, a),
        "quality": figure_quality(w, a),
        "movement": figure_movement(w),
        "centers": figure_centers(models.centers, latest_shares(w, models.latest)),
    }
    e = html.escape
    by_detector = Counter(x.detector for x in a)
    span = f"{w[0].events_from}–{w[-1].events_to}" if w else "–"
    meta = f"Generated {datetime.now(UTC):%Y-%m-%d %H:%M UTC}. "
    meta += f"{len(w)} windows (updates {span}), {len(a)} alarms"
    if a:
        meta += " (" + ", ".join(f"{e(d)} {n}" for d, n in sorted(by_detector.items()))
        meta += ")"
    meta += f"; latest version <b>{e(models.latest)}</b>. "
    meta += "Read from " + ", ".join(e(p.name) for p in log.files)
    if log.duplicates:
        meta += f"; {log.duplicates} repeated records kept once"
    if log.bad_lines:
        meta += f"; {log.bad_lines} unreadable lines skipped"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>Intent drift: {e(str(trainer_dir))}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>Intent drift: <code>{e(str(trainer_dir))}</code></h1>",
        f'<p class="meta">{meta}.</p>',
        _section(
            "shares",
            "Intent shares by published version",
            "Share of the assignments of the windows that closed while each "
            f"version was the published one; the {top_intents} intents with the "
            "largest shares, the rest as <i>other</i>.",
            images["shares"],
        ),
        _section(
            "divergence",
            "Divergence of the intent mix",
            "Jensen–Shannon divergence (base 2, 0 to 1) of each window's intent "
            "histogram from the previous window's and from the window of the last "
            "published model; dashed lines are alarms, coloured by detector "
            + _legend()
            + ".",
            images["divergence"],
        ),
        _section(
            "quality",
            "Live quality",
            "Prequential HR@20 and NDCG@20 over the trainer's sliding window, "
            "when each drift window closed; dashed lines are quality alarms.",
            images["quality"],
        ),
        _section(
            "movement",
            "Center movement",
            "Mean and largest distance the intent centers (unit vectors) moved "
            "since the last publish, when each window closed.",
            images["movement"],
        ),
        _section(
            "centers",
            f"Intent centers of {e(models.latest)}",
            "The latest version's centers projected on their first two principal "
            "components; point size is the intent's share of the windows under this "
            "version (else of the last window), the largest numbered.",
            images["centers"],
        ),
        _alarm_table(a, models, max_alarms),
        _version_table(models, w),
        "</body></html>",
    ]
    return "\n".join(p for p in parts if p)


def _legend() -> str:
    return ", ".join(
        f'<span style="color:{c.removeprefix("tab:")}">{d}</span>'
        for d, c in DETECTOR_COLORS.items()
    )


def _section(key: str, title: str, caption: str, png: str) -> str:
    return (
        f'<section id="{key}"><h2>{title}</h2><p>{caption}</p>'
        f'<img alt="{html.escape(title)}" src="data:image/png;base64,{png}">'
        "</section>"
    )


def _intent_cell(shares: list[IntentShare], fallback: dict[int, list[str]]) -> str:
    out = []
    for s in shares:
        items = s.top_items
        mark = ""
        if not items and s.intent in fallback:
            items, mark = fallback[s.intent], "*"
        out.append(
            f"<b>{s.intent}</b> {100 * s.share_before:.1f}% → "
            f"{100 * s.share_after:.1f}% "
            f'<span class="items">{html.escape(", ".join(items))}{mark}</span>'
        )
    return "<br>".join(out) or "–"


def _num(x: float | None) -> str:
    return "–" if x is None else f"{x:.4g}"


def _alarm_table(alarms: list[DriftAlarm], models: ModelView, limit: int) -> str:
    shown = alarms[-limit:]
    rows = []
    for a in shown:
        color = DETECTOR_COLORS.get(a.detector, "tab:gray").removeprefix("tab:")
        rows.append(
            f'<tr data-alarm="{html.escape(a.detector)}:{a.at_event}">'
            f"<td>{a.at_event}</td>"
            f"<td>{a.created_at:%Y-%m-%d %H:%M:%S}</td>"
            f'<td style="color:{color}">{html.escape(a.detector)}</td>'
            f"<td>{html.escape(a.direction)}</td>"
            f"<td>{_num(a.before)} → {_num(a.after)}</td>"
            f"<td>{html.escape(a.model_version or '–')}</td>"
            f"<td>{_intent_cell(a.rising, models.top_items)}</td>"
            f"<td>{_intent_cell(a.falling, models.top_items)}</td></tr>"
        )
    note = (
        f"<p>The newest {limit} of {len(alarms)} alarms.</p>"
        if len(alarms) > limit
        else ""
    )
    return (
        '<section id="alarms"><h2>Alarms</h2>'
        "<p>Each change as the trainer reported it: <i>intent_mix</i> when the "
        "divergence from the previous window stands out of the recent noise, "
        "<i>quality</i> (ADWIN on hit@20) and <i>loss</i> (Page-Hinkley). Intents "
        "are listed with their share before → after and their top items at the "
        "last publish before the alarm; * marks items of the latest version, for "
        "alarms raised before any publish.</p>"
        + note
        + "<table><thead><tr><th>at event</th><th>time (UTC)</th><th>detector</th>"
        "<th>direction</th><th>before → after</th><th>version</th>"
        "<th>rising intents</th><th>falling intents</th></tr></thead><tbody>"
        + ("".join(rows) or '<tr><td colspan="8">no alarm</td></tr>')
        + "</tbody></table></section>"
    )


def _version_table(models: ModelView, windows: list[WindowReport]) -> str:
    under = Counter(w.model_version for w in windows)
    rows = []
    for m in models.manifests:
        latest = " (latest)" if m.version == models.latest else ""
        rows.append(
            f'<tr data-version="{html.escape(m.version)}">'
            f"<td>{html.escape(m.version)}{latest}</td>"
            f"<td>{m.created_at:%Y-%m-%d %H:%M:%S}</td>"
            f"<td>{m.steps}</td><td>{m.events_seen}</td><td>{m.n_items}</td>"
            f"<td>{_num(m.live_metrics.get('hr@20'))}</td>"
            f"<td>{_num(m.live_metrics.get('ndcg@20'))}</td>"
            f"<td>{under.get(m.version, 0)}</td></tr>"
        )
    return (
        '<section id="versions"><h2>Published versions</h2>'
        f"<p>Versions on disk in <code>{html.escape(str(models.models_dir))}</code> "
        "(older ones are pruned); live metrics as recorded in each manifest.</p>"
        "<table><thead><tr><th>version</th><th>created (UTC)</th><th>steps</th>"
        "<th>events</th><th>items</th><th>HR@20</th><th>NDCG@20</th>"
        "<th>windows under it</th></tr></thead><tbody>"
        + "".join(rows)
        + "</tbody></table></section>"
    )


_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1000px;
       color: #222; line-height: 1.4; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 2em; }
.meta { color: #555; } img { max-width: 100%; }
table { border-collapse: collapse; font-size: 0.85em; width: 100%; }
th, td { border-bottom: 1px solid #ddd; padding: 0.3em 0.5em; text-align: left;
         vertical-align: top; }
.items { color: #666; }
"""
