"""Reading interaction data sets into time-ordered events and user sequences.

Formats (``fmt``):

- ``seq``: one user per line, ``user_id item item ...`` in time order, integer ids
  (the Beauty / Sports files of the ELCRec paper). An event's time is its position
  in the line.
- ``inter``: RecBole atomic files, tab separated, with a typed header such as
  ``user_id:token item_id:token rating:float timestamp:float``.
- ``csv`` / ``tsv``: a header row naming the columns.
- ``jsonl``: one JSON object per line.

For ``inter``, ``csv``, ``tsv`` and ``jsonl`` the user, item and time columns are
found by name (``user_col``, ``item_col``, ``time_col``), by default the first of
the usual spellings present (``user_id``/``user``/``userId``, ...). A time is an
epoch number (seconds, or milliseconds when larger than 1e11) or an ISO-8601
string; with no time column, file order is time order.

Events are ordered by time with ties kept in file order (a stable sort), never by
item id. External ids are re-indexed: items become ``1..N`` (``0`` is padding) in
order of first appearance, except for the ``seq`` format whose integer ids keep
their numeric order so that indices match the file.
"""

from __future__ import annotations

import csv
import json
import logging
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from elcrec.exceptions import DataError

logger = logging.getLogger(__name__)

FORMATS = ("seq", "inter", "csv", "tsv", "jsonl")

USER_COLUMNS = ("user_id", "user", "userId", "uid", "visitorid")
ITEM_COLUMNS = ("item_id", "item", "itemId", "iid", "product_id", "itemid")
TIME_COLUMNS = ("timestamp", "time", "ts", "event_time", "datetime", "date")

# Epoch values above this are taken as milliseconds (1e11 s is the year 5138).
_MS_THRESHOLD = 1e11


@dataclass(frozen=True, slots=True)
class Interaction:
    """One user-item event. ``ts`` is in epoch seconds (or a position for ``seq``)."""

    user: str
    item: str
    ts: float


@dataclass
class SequenceData:
    """Users' item sequences with the item vocabulary.

    ``sequences[u]`` holds item indices ``1..N`` in time order for the user
    ``users[u]``; item index ``i`` is the external id ``items[i - 1]``.
    """

    users: list[str]
    items: list[str]
    sequences: list[list[int]]
    item_index: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.item_index:
            self.item_index = {item: i + 1 for i, item in enumerate(self.items)}

    @property
    def n_items(self) -> int:
        return len(self.items)

    @property
    def n_users(self) -> int:
        return len(self.users)

    @property
    def n_interactions(self) -> int:
        return sum(len(s) for s in self.sequences)

    def __repr__(self) -> str:
        return (
            f"SequenceData(users={self.n_users}, items={self.n_items}, "
            f"interactions={self.n_interactions})"
        )


def detect_format(path: str | Path) -> str:
    """Guess the format from the extension, or from the first line of a ``.txt``."""
    path = Path(path)
    suffix = path.suffix.lower()
    by_suffix = {
        ".inter": "inter",
        ".csv": "csv",
        ".tsv": "tsv",
        ".jsonl": "jsonl",
        ".ndjson": "jsonl",
        ".json": "jsonl",
    }
    if suffix in by_suffix:
        return by_suffix[suffix]

    first = _first_line(path)
    if first.lstrip().startswith("{"):
        return "jsonl"
    if "\t" in first and ":" in first.split("\t")[0]:
        return "inter"
    if suffix == ".txt" or all(tok.isdigit() for tok in first.split()):
        return "seq"
    if "\t" in first:
        return "tsv"
    if "," in first:
        return "csv"
    raise DataError(
        f"{path}: cannot tell the format from its name or first line; "
        f"pass one of {', '.join(FORMATS)}"
    )


def read_interactions(
    path: str | Path,
    fmt: str = "auto",
    *,
    user_col: str | None = None,
    item_col: str | None = None,
    time_col: str | None = None,
) -> list[Interaction]:
    """Read a data set as events in time order (ties in file order).

    Raises:
        DataError: the file is missing, empty, or a line cannot be parsed; the
            message names the file and the line.
    """
    path = Path(path)
    fmt = _check_format(path, fmt)
    if fmt == "seq":
        events = [
            Interaction(user, item, float(t))
            for user, items in _read_seq_lines(path)
            for t, item in enumerate(items)
        ]
    else:
        rows = _read_table(path, fmt)
        events = list(_rows_to_interactions(path, rows, user_col, item_col, time_col))
    if not events:
        raise DataError(f"{path}: no interactions in the file")

    # A stable sort keeps the file order of events with equal times.
    events.sort(key=lambda e: e.ts)
    return events


def load_sequences(path: str | Path, fmt: str = "auto", **columns) -> SequenceData:
    """Read a data set as per-user item sequences in time order.

    ``columns`` are ``user_col``, ``item_col`` and ``time_col`` as for
    :func:`read_interactions`.
    """
    path = Path(path)
    fmt = _check_format(path, fmt)
    if fmt == "seq":
        lines = list(_read_seq_lines(path))
        if not lines:
            raise DataError(f"{path}: no interactions in the file")
        items = sorted({item for _, seq in lines for item in seq}, key=int)
        index = {item: i + 1 for i, item in enumerate(items)}
        data = SequenceData(
            users=[user for user, _ in lines],
            items=items,
            sequences=[[index[item] for item in seq] for _, seq in lines],
            item_index=index,
        )
    else:
        data = build_sequences(read_interactions(path, fmt, **columns))
    logger.info(
        "Loaded data set path=%s format=%s users=%d items=%d interactions=%d",
        path,
        fmt,
        data.n_users,
        data.n_items,
        data.n_interactions,
    )
    return data


def build_sequences(events: Iterable[Interaction]) -> SequenceData:
    """Group time-ordered events into per-user sequences, indexing items on first sight."""
    item_index: dict[str, int] = {}
    by_user: dict[str, list[int]] = {}
    for e in events:
        idx = item_index.get(e.item)
        if idx is None:
            idx = item_index[e.item] = len(item_index) + 1
        by_user.setdefault(e.user, []).append(idx)
    return SequenceData(
        users=list(by_user),
        items=list(item_index),
        sequences=list(by_user.values()),
        item_index=item_index,
    )


def parse_time(value, where: str) -> float:
    """An epoch number (s or ms) or an ISO-8601 string, as epoch seconds."""
    if isinstance(value, bool):
        raise DataError(f"{where}: time {value!r} is not a number or ISO-8601 date")
    if isinstance(value, int | float):
        t = float(value)
    else:
        text = str(value).strip()
        try:
            t = float(text)
        except ValueError:
            try:
                dt = datetime.fromisoformat(text)
            except ValueError:
                raise DataError(
                    f"{where}: time {text!r} is not a number or ISO-8601 date"
                ) from None
            if dt.tzinfo is None:
                dt = dt.replace(tzinfo=UTC)
            return dt.timestamp()
    if not math.isfinite(t):
        raise DataError(f"{where}: time {value!r} is not finite")
    return t / 1000.0 if abs(t) > _MS_THRESHOLD else t


# -- helpers -------------------------------------------------------------------


def _check_format(path: Path, fmt: str) -> str:
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    if fmt == "auto":
        return detect_format(path)
    if fmt not in FORMATS:
        raise DataError(
            f"unknown format {fmt!r}; expected auto or one of {', '.join(FORMATS)}"
        )
    return fmt


def _first_line(path: Path) -> str:
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            if line.strip():
                return line
    raise DataError(f"{path}: the file is empty")


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    try:
        with open(path, encoding="utf-8") as f:
            yield from enumerate(f, start=1)
    except UnicodeDecodeError as exc:
        raise DataError(
            f"{path}: not valid UTF-8 ({exc.reason} at byte {exc.start})"
        ) from exc


def _read_seq_lines(path: Path) -> Iterator[tuple[str, list[str]]]:
    seen_any = False
    for lineno, line in _lines(path):
        tokens = line.split()
        if not tokens:
            continue
        seen_any = True
        user, items = tokens[0], tokens[1:]
        if not items:
            raise DataError(f"{path}:{lineno}: user {user!r} has no items")
        for tok in items:
            if not tok.isdigit():
                raise DataError(
                    f"{path}:{lineno}: item id {tok!r} is not a non-negative integer "
                    "(the sequence format has integer ids; use --format csv/tsv/jsonl "
                    "for other ids)"
                )
        yield user, items
    if not seen_any:
        raise DataError(f"{path}: the file is empty")


def _read_table(path: Path, fmt: str) -> Iterator[tuple[int, dict]]:
    """Yield ``(line number, row dict)``; the header is the first line."""
    if fmt == "jsonl":
        for lineno, line in _lines(path):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{path}:{lineno}: invalid JSON ({exc.msg})") from None
            if not isinstance(row, dict):
                raise DataError(f"{path}:{lineno}: expected a JSON object per line")
            yield lineno, row
        return

    delimiter = "," if fmt == "csv" else "\t"
    lines = (line for _, line in _lines(path))
    reader = csv.reader(lines, delimiter=delimiter)
    try:
        header = next(reader)
    except StopIteration:
        raise DataError(f"{path}: the file is empty") from None
    if fmt == "inter":
        # RecBole types each column: "user_id:token".
        header = [h.split(":", 1)[0] for h in header]
    header = [h.strip() for h in header]
    end = reader.line_num
    for row in reader:
        # A quoted field may span lines: the row starts after the last one.
        start, end = end + 1, reader.line_num
        if not row or all(not c.strip() for c in row):
            continue
        if len(row) != len(header):
            where = f"{start}" if start == end else f"{start}-{end}"
            hint = (
                "" if start == end else " (an unclosed quote joins the lines after it)"
            )
            raise DataError(
                f"{path}:{where}: {len(row)} fields, the header has {len(header)}{hint}"
            )
        yield end, dict(zip(header, row, strict=True))


def _pick(columns: Iterable[str], wanted: str | None, choices: tuple, what: str, path):
    columns = list(columns)
    if wanted is not None:
        if wanted not in columns:
            raise DataError(
                f"{path}: no {what} column {wanted!r}; columns are {columns}"
            )
        return wanted
    for name in choices:
        if name in columns:
            return name
    return None


def _rows_to_interactions(path, rows, user_col, item_col, time_col):
    cols = None
    for lineno, row in rows:
        if cols is None:
            user_c = _pick(row, user_col, USER_COLUMNS, "user", path)
            item_c = _pick(row, item_col, ITEM_COLUMNS, "item", path)
            time_c = _pick(row, time_col, TIME_COLUMNS, "time", path)
            if user_c is None or item_c is None:
                raise DataError(
                    f"{path}: cannot find the user and item columns among "
                    f"{list(row)}; name them with --user-col / --item-col "
                    "(user_col / item_col in Python)"
                )
            cols = (user_c, item_c, time_c)
        user_c, item_c, time_c = cols
        where = f"{path}:{lineno}"
        user, item = row.get(user_c), row.get(item_c)
        if user is None or str(user).strip() == "":
            raise DataError(f"{where}: empty {user_c}")
        if item is None or str(item).strip() == "":
            raise DataError(f"{where}: empty {item_c}")
        ts = parse_time(row.get(time_c), where) if time_c else float(lineno)
        yield Interaction(str(user).strip(), str(item).strip(), ts)
