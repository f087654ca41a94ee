"""A small PromQL parser for tests: syntax, argument types and what a query reads.

It covers what dashboards and alerting rules use (selectors with matchers,
ranges, offsets and subqueries; functions; aggregations with ``by``/``without``;
binary operators with ``bool``, ``on``/``ignoring`` and ``group_left``/``right``)
and Grafana's ``$__variables`` in place of durations. It checks each function's
argument types (a range vector for ``rate``...), so a query Prometheus would
refuse fails here too.

>>> q = parse('sum by (le) (rate(x_bucket{job="a"}[$__rate_interval]))')
>>> [(s.name, s.matchers) for s in q.selectors], q.grouping
([('x_bucket', [('job', '=', 'a')])], [['le']])
>>> try:
...     parse("rate(x)")
... except PromQLError as exc:
...     print(exc)
rate() argument 1 must be a range vector, got an instant vector in 'rate(x)'
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

AGGREGATIONS = {
    "sum": None,
    "avg": None,
    "min": None,
    "max": None,
    "count": None,
    "group": None,
    "stddev": None,
    "stdvar": None,
    "topk": "scalar",
    "bottomk": "scalar",
    "quantile": "scalar",
    "count_values": "string",
}
# name -> argument types; "*" repeats the previous type; "?" marks optional ones.
FUNCTIONS = {
    "rate": ["matrix"],
    "irate": ["matrix"],
    "increase": ["matrix"],
    "delta": ["matrix"],
    "idelta": ["matrix"],
    "deriv": ["matrix"],
    "changes": ["matrix"],
    "resets": ["matrix"],
    "avg_over_time": ["matrix"],
    "min_over_time": ["matrix"],
    "max_over_time": ["matrix"],
    "sum_over_time": ["matrix"],
    "count_over_time": ["matrix"],
    "last_over_time": ["matrix"],
    "present_over_time": ["matrix"],
    "absent_over_time": ["matrix"],
    "quantile_over_time": ["scalar", "matrix"],
    "histogram_quantile": ["scalar", "vector"],
    "abs": ["vector"],
    "ceil": ["vector"],
    "floor": ["vector"],
    "round": ["vector", "scalar?"],
    "clamp": ["vector", "scalar", "scalar"],
    "clamp_min": ["vector", "scalar"],
    "clamp_max": ["vector", "scalar"],
    "absent": ["vector"],
    "scalar": ["vector"],
    "vector": ["scalar"],
    "time": [],
    "timestamp": ["vector"],
    "sort": ["vector"],
    "sort_desc": ["vector"],
    "label_replace": ["vector", "string", "string", "string", "string"],
}
RESULT = {"scalar": "scalar", "vector": "vector", "time": "scalar"}
KEYWORDS_BINARY = {"and", "or", "unless"}
PRECEDENCE = [
    {"or"},
    {"and", "unless"},
    {"==", "!=", ">", "<", ">=", "<="},
    {"+", "-"},
    {"*", "/", "%", "atan2"},
]
COMPARISONS = PRECEDENCE[2]
TYPE_NAMES = {
    "scalar": "a scalar",
    "vector": "an instant vector",
    "matrix": "a range vector",
    "string": "a string",
}

_TOKEN = re.compile(
    r"""
    (?P<space>\s+)
  | (?P<number>0x[0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?(?![\w$]))
  | (?P<duration>(?:\d+(?:ms|[smhdwy]))+|\$\{?\w+\}?)
  | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
  | (?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)
  | (?P<op>==|!=|>=|<=|=~|!~|[-+*/%^=<>(){}\[\],:@])
    """,
    re.VERBOSE,
)


class PromQLError(ValueError):
    pass


@dataclass
class Selector:
    name: str | None
    matchers: list[tuple[str, str, str]]  # (label, op, value)


@dataclass
class Query:
    text: str
    type: str
    selectors: list[Selector] = field(default_factory=list)
    functions: set[str] = field(default_factory=set)
    grouping: list[list[str]] = field(default_factory=list)  # by/on label lists

    @property
    def metric_names(self) -> set[str]:
        return {s.name for s in self.selectors if s.name}


def parse(text: str) -> Query:
    """Parse one PromQL expression; raises PromQLError naming the problem."""
    return _Parser(text).parse()


def _tokens(text: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise PromQLError(f"unexpected {text[pos : pos + 10]!r} in {text!r}")
        pos = m.end()
        if m.lastgroup != "space":
            out.append((m.lastgroup, m.group()))
    return out


class _Parser:
    def __init__(self, text: str):
        self.text = text
        self.toks = _tokens(text)
        self.i = 0
        self.q = Query(text=text, type="")

    # -- helpers ---------------------------------------------------------------

    def peek(self, k: int = 0) -> tuple[str, str]:
        j = self.i + k
        return self.toks[j] if j < len(self.toks) else ("eof", "")

    def take(self, value: str | None = None, kind: str | None = None) -> str:
        tk, tv = self.peek()
        if (value is not None and tv != value) or (kind is not None and tk != kind):
            want = value or kind
            raise PromQLError(
                f"expected {want!r}, got {tv or 'the end'!r} in {self.text!r}"
            )
        self.i += 1
        return tv

    def at(self, *values: str) -> bool:
        kind, value = self.peek()
        return kind in ("op", "name") and value in values

    def fail(self, message: str):
        raise PromQLError(f"{message} in {self.text!r}")

    # -- grammar ---------------------------------------------------------------

    def parse(self) -> Query:
        self.q.type = self.expr(0)
        if self.peek()[0] != "eof":
            self.fail(f"unexpected {self.peek()[1]!r}")
        return self.q

    def expr(self, level: int) -> str:
        if level == len(PRECEDENCE):
            return self.power()
        left = self.expr(level + 1)
        while self.at(*PRECEDENCE[level]):
            op = self.take()
            is_bool = False
            if op in COMPARISONS and self.at("bool"):
                self.take()
                is_bool = True
            self.matching()
            right = self.expr(level + 1)
            left = self.binary_type(op, left, right, is_bool)
        return left

    def power(self) -> str:
        left = self.unary()
        if self.at("^"):
            self.take()
            self.matching()
            right = self.power()  # right-associative
            left = self.binary_type("^", left, right, False)
        return left

    def matching(self) -> None:
        if self.at("on", "ignoring"):
            self.take()
            self.q.grouping.append(self.labels())
            if self.at("group_left", "group_right"):
                self.take()
                if self.at("("):
                    self.labels()

    def binary_type(self, op: str, left: str, right: str, is_bool: bool) -> str:
        for side in (left, right):
            if side not in ("scalar", "vector"):
                self.fail(f"operator {op} takes scalars or instant vectors, got {side}")
        if op in KEYWORDS_BINARY and "scalar" in (left, right):
            self.fail(f"operator {op} needs instant vectors on both sides")
        if op in COMPARISONS and left == right == "scalar" and not is_bool:
            self.fail("comparing two scalars needs 'bool'")
        return "scalar" if left == right == "scalar" else "vector"

    def unary(self) -> str:
        if self.at("-", "+"):
            self.take()
            kind = self.unary()
            if kind not in ("scalar", "vector"):
                self.fail("unary minus needs a scalar or instant vector")
            return kind
        return self.postfix(self.primary())

    def postfix(self, kind: str) -> str:
        while True:
            if self.at("["):
                self.take()
                self.duration()
                if self.at(":"):  # subquery
                    self.take()
                    if not self.at("]"):
                        self.duration()
                    if kind != "vector":
                        self.fail("a subquery needs an instant vector")
                elif not self.last_was_selector:
                    self.fail("a range needs a vector selector (or a subquery)")
                self.take("]")
                kind = "matrix"
            elif self.at("offset"):
                self.take()
                if self.at("-"):
                    self.take()
                self.duration()
            elif self.at("@"):
                self.take()
                if self.at("start", "end"):
                    self.take()
                    self.take("(")
                    self.take(")")
                else:
                    self.take(kind="number")
            else:
                return kind
            self.last_was_selector = False

    def duration(self) -> None:
        kind, value = self.peek()
        if kind != "duration" and not (kind == "number" and value.isdigit()):
            self.fail(f"expected a duration, got {value!r}")
        self.take()

    def primary(self) -> str:
        self.last_was_selector = False
        kind, value = self.peek()
        if kind == "number":
            self.take()
            return "scalar"
        if kind == "string":
            self.take()
            return "string"
        if value == "(":
            self.take()
            inner = self.expr(0)
            self.take(")")
            return inner
        if value == "{":
            return self.selector(None)
        if kind == "name":
            if value in AGGREGATIONS:
                return self.aggregation()
            if self.peek(1)[1] == "(":
                return self.call()
            if value in ("inf", "Inf", "nan", "NaN"):
                self.take()
                return "scalar"
            self.take()
            return self.selector(value)
        self.fail(f"unexpected {value or 'end'!r}")

    def selector(self, name: str | None) -> str:
        matchers = []
        if self.at("{"):
            self.take()
            while not self.at("}"):
                label = self.take(kind="name")
                op = self.take()
                if op not in ("=", "!=", "=~", "!~"):
                    self.fail(f"bad matcher operator {op!r}")
                raw = self.take(kind="string")
                matchers.append((label, op, raw[1:-1]))
                if not self.at("}"):
                    self.take(",")
            self.take("}")
        if name is None and not matchers:
            self.fail("a selector needs a metric name or a matcher")
        self.q.selectors.append(Selector(name, matchers))
        self.last_was_selector = True
        return "vector"

    def labels(self) -> list[str]:
        self.take("(")
        names = []
        while not self.at(")"):
            names.append(self.take(kind="name"))
            if not self.at(")"):
                self.take(",")
        self.take(")")
        return names

    def aggregation(self) -> str:
        op = self.take()
        if self.at("by", "without"):
            self.take()
            self.q.grouping.append(self.labels())
        self.take("(")
        param = AGGREGATIONS[op]
        if param is not None:
            got = self.expr(0)
            if got != param:
                self.fail(f"{op}() parameter must be {TYPE_NAMES[param]}")
            self.take(",")
        inner = self.expr(0)
        if inner != "vector":
            self.fail(f"{op}() aggregates an instant vector, got {TYPE_NAMES[inner]}")
        self.take(")")
        if self.at("by", "without"):
            self.take()
            self.q.grouping.append(self.labels())
        self.q.functions.add(op)
        return "vector"

    def call(self) -> str:
        name = self.take()
        if name not in FUNCTIONS:
            self.fail(f"unknown function {name}()")
        self.q.functions.add(name)
        self.take("(")
        args = []
        while not self.at(")"):
            args.append(self.expr(0))
            if not self.at(")"):
                self.take(",")
        self.take(")")
        want = FUNCTIONS[name]
        required = [t for t in want if not t.endswith("?")]
        if not len(required) <= len(args) <= len(want):
            self.fail(f"{name}() takes {len(want)} arguments, got {len(args)}")
        for n, (got, expected) in enumerate(zip(args, want, strict=False), start=1):
            expected = expected.rstrip("?")
            if got != expected:
                self.fail(
                    f"{name}() argument {n} must be {TYPE_NAMES[expected]}, "
                    f"got {TYPE_NAMES[got]}"
                )
        return RESULT.get(name, "vector")
