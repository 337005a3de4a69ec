"""The structured form of the PromQL the alert compiler emits: one definition, two enforcers.

Each built-in signal (atlas.alerting.signals) and each SLO rule (atlas.alerting.slo) has a query
tree built from the nodes below. `render()` writes it as PromQL; a unit test asserts that the
rendering equals the PromQL text in atlas.rules.yml token for token (whitespace aside), and the
monitoring agent (atlas.monitor.promql) evaluates the same tree on its own scraped samples. So
Prometheus and the agent enforce one definition, and neither parses the other's text.

Only the subset the compiler needs: selectors, rate/increase/deriv over a range,
sum/max/count aggregation, histogram_quantile, arithmetic, comparison filters and and/or.
Nodes never add parentheses on their own: `Paren` says where the text has them, and the tree's
shape (not precedence rules) says what is evaluated first, so build trees as PromQL parses them.
"""

from __future__ import annotations

from dataclasses import dataclass

Matcher = tuple[str, str, str]  # label, "=" | "=~", value


@dataclass(frozen=True)
class Sel:
    """An instant vector selector: `name{label="v", label=~"re"}`."""

    name: str
    matchers: tuple[Matcher, ...] = ()


@dataclass(frozen=True)
class Range:
    """`fn(selector[window])` with fn rate | increase | deriv."""

    fn: str
    sel: Sel
    window_seconds: float


@dataclass(frozen=True)
class Agg:
    """`op by (labels) (expr)`, or `op(expr) without (labels)` when `without` is set."""

    op: str  # sum | max | count
    expr: Expr
    by: tuple[str, ...] | None = None
    without: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Quantile:
    """`histogram_quantile(q, expr)` over buckets carrying an `le` label."""

    q: float
    expr: Expr


@dataclass(frozen=True)
class Bin:
    """`lhs op rhs`: arithmetic (+ - * /), a comparison filter (> < >= <= == !=) or and/or."""

    op: str
    lhs: Expr
    rhs: Expr


@dataclass(frozen=True)
class Num:
    value: float


@dataclass(frozen=True)
class Time:
    """`time()`: the evaluation timestamp in seconds."""


@dataclass(frozen=True)
class Neg:
    expr: Expr


@dataclass(frozen=True)
class Paren:
    expr: Expr


@dataclass(frozen=True)
class Recorded:
    """A recording rule's output read back by name (`name{selector}`): evaluates as `expr` with
    the rule's `labels` attached, which is what Prometheus stores when it records it."""

    name: str
    selector: tuple[Matcher, ...]
    labels: tuple[tuple[str, str], ...]
    expr: Expr


Expr = Sel | Range | Agg | Quantile | Bin | Num | Time | Neg | Paren | Recorded


def duration(seconds: float) -> str:
    """Seconds as a Prometheus duration: 900 -> 15m, 5400 -> 1h30m, 0.5 -> 500ms."""
    if seconds <= 0:
        return "0s"
    ms = round(seconds * 1000)
    out = ""
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000), ("ms", 1)):
        if ms >= size:
            out += f"{ms // size}{unit}"
            ms %= size
    return out


def _matchers(name: str, matchers: tuple[Matcher, ...]) -> str:
    if not matchers:
        return name
    return name + "{" + ", ".join(f'{k}{op}"{v}"' for k, op, v in matchers) + "}"


def render(e: Expr) -> str:
    """The PromQL text of a query tree (single line; the compiler's text has its own layout)."""
    if isinstance(e, Sel):
        return _matchers(e.name, e.matchers)
    if isinstance(e, Range):
        return f"{e.fn}({render(e.sel)}[{duration(e.window_seconds)}])"
    if isinstance(e, Agg):
        if e.without is not None:
            return f"{e.op}({render(e.expr)}) without ({', '.join(e.without)})"
        by = f" by ({', '.join(e.by)}) " if e.by is not None else ""
        return f"{e.op}{by}({render(e.expr)})"
    if isinstance(e, Quantile):
        return f"histogram_quantile({e.q:g}, {render(e.expr)})"
    if isinstance(e, Bin):
        return f"{render(e.lhs)} {e.op} {render(e.rhs)}"
    if isinstance(e, Num):
        return f"{e.value:.10g}"
    if isinstance(e, Time):
        return "time()"
    if isinstance(e, Neg):
        return f"-{render(e.expr)}"
    if isinstance(e, Paren):
        return f"({render(e.expr)})"
    return _matchers(e.name, e.selector)


def ranges(e: Expr) -> list[tuple[Sel, float]]:
    """Every selector the query reads and how far back (0: the latest sample only), so the agent
    keeps exactly the history each series needs."""
    if isinstance(e, Sel):
        return [(e, 0.0)]
    if isinstance(e, Range):
        return [(e.sel, e.window_seconds)]
    if isinstance(e, Agg | Quantile | Neg | Paren | Recorded):
        return ranges(e.expr)
    if isinstance(e, Bin):
        return ranges(e.lhs) + ranges(e.rhs)
    return []


def same_text(rendered: str, promql: str) -> bool:
    """True when two PromQL texts differ only in whitespace."""
    return "".join(rendered.split()) == "".join(promql.split())
