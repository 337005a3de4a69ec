"""Evaluate a compiled query tree (atlas.alerting.query) on the agent's history, as Prometheus would.

The arithmetic follows Prometheus 2.x (the version CI's promtool is) closely enough that the
agent fires at the same evaluation steps; tests/unit/test_agent_vs_promtool.py holds it to that:
- ranges are closed, [t - window, t]; instant selectors see the latest sample of the last 5
  minutes unless the series went stale;
- rate/increase extrapolate to the window's edges (at most half an interval beyond the samples,
  never below a counter's zero) and count counter resets, as `extrapolatedRate` does;
- deriv is the least-squares slope; histogram_quantile interpolates linearly inside a bucket;
- vector/vector operators match one-to-one on all labels but the metric name; arithmetic drops
  the metric name; comparisons without `bool` filter; `and`/`or` match label sets.

Pure: the history and the evaluation time come in as arguments.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from atlas.alerting.query import Agg, Bin, Expr, Neg, Num, Paren, Quantile, Range, Recorded, Sel, Time
from atlas.monitor.history import History, Labels

Vector = dict[Labels, float]
Value = Vector | float
NAME = "__name__"


def _key(labels: dict[str, str]) -> Labels:
    return tuple(sorted((k, v) for k, v in labels.items() if v != ""))


def _drop_name(labels: Labels) -> Labels:
    return tuple(kv for kv in labels if kv[0] != NAME)


def _div(a: float, b: float) -> float:
    if b == 0:
        return math.nan if a == 0 or math.isnan(a) else math.copysign(math.inf, a)
    return a / b


_ARITH: dict[str, Callable[[float, float], float]] = {
    "+": lambda a, b: a + b,
    "-": lambda a, b: a - b,
    "*": lambda a, b: a * b,
    "/": _div,
}
COMPARE: dict[str, Callable[[float, float], bool]] = {
    ">": lambda a, b: a > b,
    "<": lambda a, b: a < b,
    ">=": lambda a, b: a >= b,
    "<=": lambda a, b: a <= b,
    "==": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
}


def extrapolated(points: list[tuple[float, float]], start: float, end: float, rate: bool) -> float:
    """Prometheus's extrapolatedRate of a counter: its increase over [start, end], or per second.
    The arithmetic is in Prometheus's order (one factor, then one multiplication) so values on a
    threshold compare the same way."""
    result = points[-1][1] - points[0][1]
    last = 0.0
    for _, v in points:
        if v < last:  # a counter reset: the counter went on from 0
            result += last
        last = v
    to_start, to_end = points[0][0] - start, end - points[-1][0]
    sampled = points[-1][0] - points[0][0]
    average = sampled / (len(points) - 1)
    if result > 0 and points[0][1] >= 0:
        to_start = min(to_start, sampled * (points[0][1] / result))  # never before the zero
    threshold = average * 1.1
    interval = sampled
    interval += to_start if to_start < threshold else average / 2
    interval += to_end if to_end < threshold else average / 2
    factor = interval / sampled
    if rate:
        factor /= end - start
    return result * factor


def slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope per second (deriv), x measured from the first sample."""
    if all(v == points[0][1] for _, v in points):
        return 0.0 if not math.isinf(points[0][1]) else math.nan
    n = float(len(points))
    xs = [t - points[0][0] for t, _ in points]
    ys = [v for _, v in points]
    sx, sy = math.fsum(xs), math.fsum(ys)
    sxy = math.fsum(x * y for x, y in zip(xs, ys, strict=True))
    sx2 = math.fsum(x * x for x in xs)
    return _div(sxy - sx * sy / n, sx2 - sx * sx / n)


def _range(e: Range, h: History, t: float) -> Vector:
    out: Vector = {}
    for labels, ring in h.select(e.sel):
        points = ring.samples(t - e.window_seconds, t)
        if len(points) < 2:
            continue  # Prometheus needs two samples for any of these
        key = _drop_name(_key(labels))
        if e.fn == "deriv":
            out[key] = slope(points)
            continue
        out[key] = extrapolated(points, t - e.window_seconds, t, rate=e.fn == "rate")
    return out


def _aggregate(e: Agg, v: Vector) -> Vector:
    groups: dict[Labels, list[float]] = {}
    for labels, value in v.items():
        if e.without is not None:
            gone = {*e.without, NAME}
            key = tuple(kv for kv in labels if kv[0] not in gone)
        else:
            by = set(e.by or ())
            key = tuple(kv for kv in labels if kv[0] in by)
        groups.setdefault(key, []).append(value)
    out: Vector = {}
    for key, values in groups.items():
        if e.op == "sum":
            out[key] = sum(values)
        elif e.op == "count":
            out[key] = float(len(values))
        else:  # max: NaN only when every value is NaN, as Prometheus
            real = [x for x in values if not math.isnan(x)]
            out[key] = max(real) if real else math.nan
    return out


def bucket_quantile(q: float, buckets: list[tuple[float, float]]) -> float:
    """Prometheus's bucketQuantile over (upper bound, cumulative count) pairs."""
    merged: dict[float, float] = {}
    for upper, count in buckets:
        merged[upper] = merged.get(upper, 0.0) + count
    bs = sorted(merged.items())
    if not bs or not math.isinf(bs[-1][0]):
        return math.nan
    running, mono = -math.inf, []
    for upper, count in bs:  # ensureMonotonic: rates of buckets can jitter below their neighbours
        running = max(running, count)
        mono.append((upper, running))
    if len(mono) < 2 or mono[-1][1] == 0:
        return math.nan
    rank = q * mono[-1][1]
    b = next((i for i in range(len(mono) - 1) if mono[i][1] >= rank), len(mono) - 1)
    if b == len(mono) - 1:
        return mono[-2][0]
    if b == 0 and mono[0][0] <= 0:
        return mono[0][0]
    start, end, count = 0.0, mono[b][0], mono[b][1]
    if b > 0:
        start = mono[b - 1][0]
        count -= mono[b - 1][1]
        rank -= mono[b - 1][1]
    return start + (end - start) * (rank / count)


def _quantile(e: Quantile, v: Vector) -> Vector:
    groups: dict[Labels, list[tuple[float, float]]] = {}
    for labels, value in v.items():
        d = dict(labels)
        if "le" not in d:
            continue
        key = tuple(kv for kv in labels if kv[0] not in ("le", NAME))
        groups.setdefault(key, []).append((float(d["le"]), value))
    return {k: bucket_quantile(e.q, b) for k, b in groups.items()}


def _binary(op: str, lhs: Value, rhs: Value) -> Value:
    if isinstance(lhs, float) and isinstance(rhs, float):
        return _ARITH[op](lhs, rhs)
    if op in ("and", "or"):
        assert isinstance(lhs, dict) and isinstance(rhs, dict)
        right = {_drop_name(k) for k in rhs}
        if op == "and":
            return {k: v for k, v in lhs.items() if _drop_name(k) in right}
        left = {_drop_name(k) for k in lhs}
        return {**lhs, **{k: v for k, v in rhs.items() if _drop_name(k) not in left}}
    if isinstance(lhs, dict) and isinstance(rhs, dict):
        by_sig = {_drop_name(k): v for k, v in rhs.items()}
        pairs = [(k, a, by_sig[_drop_name(k)]) for k, a in lhs.items() if _drop_name(k) in by_sig]
    elif isinstance(lhs, dict):
        pairs = [(k, a, float(rhs)) for k, a in lhs.items()]  # type: ignore[arg-type]
    else:
        assert isinstance(rhs, dict)
        pairs = [(k, lhs, b) for k, b in rhs.items()]
    if op in COMPARE:  # a filter: the vector side's value survives where the comparison holds
        keep_left = isinstance(lhs, dict)
        return {k: (a if keep_left else b) for k, a, b in pairs if COMPARE[op](a, b)}
    return {_drop_name(k): _ARITH[op](a, b) for k, a, b in pairs}


def evaluate(e: Expr, h: History, t: float) -> Value:
    """The query's value at time t: a float for scalars, else {labels: value}."""
    if isinstance(e, Sel):
        out: Vector = {}
        for labels, ring in h.select(e):
            value = ring.latest(t)
            if value is not None:
                out[_key(labels)] = value
        return out
    if isinstance(e, Range):
        return _range(e, h, t)
    if isinstance(e, Num):
        return float(e.value)
    if isinstance(e, Time):
        return float(t)
    if isinstance(e, Paren):
        return evaluate(e.expr, h, t)
    if isinstance(e, Bin):
        return _binary(e.op, evaluate(e.lhs, h, t), evaluate(e.rhs, h, t))
    inner = evaluate(e.expr, h, t)
    if isinstance(e, Neg):
        return -inner if isinstance(inner, float) else {_drop_name(k): -v for k, v in inner.items()}
    assert isinstance(inner, dict), f"{type(e).__name__} needs a vector"
    if isinstance(e, Agg):
        return _aggregate(e, inner)
    if isinstance(e, Quantile):
        return _quantile(e, inner)
    assert isinstance(e, Recorded)
    extra = dict(e.labels)
    return {_key({**dict(_drop_name(k)), **extra, NAME: e.name}): v for k, v in inner.items()}
