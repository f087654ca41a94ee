"""Every process's settings as Markdown tables, generated from the models.

``python -m elcrec.settings_table`` prints the tables; ``--write README.md``
replaces the block between the README's ``settings-table`` markers with them,
and ``--check README.md`` exits 1 when that block is out of date (the test
suite runs the same comparison, so the README cannot drift from the code).

One row per field: the environment variable(s) it is read from (first wins),
its type and bounds, its default and its description.
"""

from __future__ import annotations

import argparse
import enum
import importlib
import json
import sys
import types
import typing
from pathlib import Path
from typing import Any, Literal

import annotated_types
from pydantic import SecretStr
from pydantic_core import PydanticUndefined
from pydantic_settings import BaseSettings

from elcrec.settings import env_names

START = "<!-- settings-table:start -->"
END = "<!-- settings-table:end -->"

# (heading, settings class), in the order the README shows them
MODELS = [
    ("Ingest: `elcrec ingest`", "elcrec.consumers.settings:IngestSettings"),
    ("Trainer: `elcrec trainer`", "elcrec.consumers.trainer:TrainerSettings"),
    (
        "Kafka security of `elcrec topics`, `elcrec replay` and `elcrec run --kafka`",
        "elcrec.stream.kafka_options:KafkaClientSettings",
    ),
    ("Health check: `elcrec health`", "elcrec.commands.health:HealthSettings"),
]


def settings_classes() -> list[tuple[str, type[BaseSettings]]]:
    out = []
    for heading, ref in MODELS:
        module, name = ref.split(":")
        out.append((heading, getattr(importlib.import_module(module), name)))
    return out


def render() -> str:
    """The Markdown of every table (the README block between the markers)."""
    parts = [
        "Generated from the settings models by `python -m elcrec.settings_table "
        "--write README.md`; a test fails when this block is out of date. "
        "Lists and sets are JSON in the environment.",
    ]
    for heading, cls in settings_classes():
        ref = f"{cls.__module__}.{cls.__qualname__}"
        parts.append(f"**{heading}** (`{ref}`)\n\n{table(cls)}")
    return "\n\n".join(parts) + "\n"


def table(cls: type[BaseSettings]) -> str:
    rows = [
        "| variable | type | default | description |",
        "|---|---|---|---|",
    ]
    for name, field in cls.model_fields.items():
        variables = ", ".join(f"`{v}`" for v in env_names(cls, name))
        cells = [
            variables,
            _type(field.annotation, field.metadata),
            _default(field.default, field.annotation),
            field.description or "",
        ]
        rows.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return "\n".join(rows)


def _type(annotation: Any, metadata: list) -> str:
    text = _type_name(_without_none(annotation))
    bounds = []
    for m in metadata:
        for attr, sign in (("ge", "≥"), ("gt", ">"), ("le", "≤"), ("lt", "<")):
            value = getattr(m, attr, None)
            if value is not None and isinstance(m, annotated_types.BaseMetadata):
                bounds.append(f"{sign} {value}")
        if isinstance(m, annotated_types.MinLen) and m.min_length == 1:
            bounds.append("not empty")
        pattern = getattr(m, "pattern", None)
        if pattern:
            bounds.append(f"matching `{pattern}`")
    return ", ".join([text, *bounds])


def _without_none(annotation: Any) -> Any:
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        rest = [a for a in args if a is not type(None)]
        if len(rest) == 1:
            return rest[0]
    return annotation


def _type_name(t: Any) -> str:
    origin = typing.get_origin(t)
    if origin is Literal:
        return "one of " + ", ".join(f"`{a}`" for a in typing.get_args(t))
    if origin is typing.Annotated:
        base, *extra = typing.get_args(t)
        if base is Path and any(getattr(e, "path_type", None) == "file" for e in extra):
            return "path of an existing file"
        return _type_name(base)
    if origin in (frozenset, set, list, tuple):
        (item,) = typing.get_args(t)[:1]
        if isinstance(item, type) and issubclass(item, enum.Enum):
            return "JSON list of " + ", ".join(f"`{e.value}`" for e in item)
        return f"JSON list of {_type_name(item)}"
    if t is SecretStr:
        return "secret string"
    if t is Path:
        return "path"
    return getattr(t, "__name__", str(t))


def _default(value: Any, annotation: Any) -> str:
    if value is PydanticUndefined:
        return "required"
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, frozenset | set):
        return "`" + json.dumps(sorted(str(v) for v in value)) + "`"
    return f"`{value}`"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def replace_block(document: str, block: str) -> str:
    """``document`` with the text between the markers replaced by ``block``.

    Raises:
        ValueError: the markers are missing or out of order.
    """
    start, end = document.find(START), document.find(END)
    if start < 0 or end < start:
        raise ValueError(f"the markers {START} ... {END} are missing")
    return document[: start + len(START)] + "\n" + block + document[end:]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m elcrec.settings_table", description=__doc__.split("\n")[0]
    )
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--write", metavar="FILE", help="update the block in FILE")
    group.add_argument("--check", metavar="FILE", help="exit 1 if FILE is stale")
    args = parser.parse_args(argv)
    block = render()
    if not (args.write or args.check):
        sys.stdout.write(block)
        return 0
    path = Path(args.write or args.check)
    try:
        document = path.read_text(encoding="utf-8")
    except OSError as exc:
        print(f"{path}: cannot read it: {exc.strerror}", file=sys.stderr)
        return 2
    updated = replace_block(document, block)
    if args.write:
        path.write_text(updated, encoding="utf-8")
        return 0
    if updated != document:
        print(
            f"{path}: the settings table is out of date; run "
            f"python -m elcrec.settings_table --write {path}",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
