"""The agent's evaluator: alerting.yaml's compiled threshold alerts on scraped samples, in Python.

Not a PromQL engine. Each built-in signal whose recording rule is an instant aggregation of gauges
(atlas.alerting.signals) has a Python twin here computing the same value with the same labels;
the alert compares it with the compiled threshold (same comparison), holds it `for` the compiled
duration (pending, then firing) and re-notifies after the rule's cooldown, as Alertmanager's
repeat_interval would. Signals over counters' rates, histograms, deriv() windows, custom `expr`
alerts and SLO burn rates need Prometheus: `EVALUABLE` lists what the agent can evaluate.

Pure logic: samples and the clock come in as arguments.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

Labels = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Sample:
    name: str
    labels: dict[str, str]
    value: float


Values = dict[Labels, float]


def _key(sample: Sample, by: tuple[str, ...]) -> Labels:
    return tuple((b, sample.labels.get(b, "")) for b in by)


def _agg(
    samples: list[Sample],
    name: str,
    by: tuple[str, ...],
    fn: Callable[[list[float]], float],
    where: Callable[[Sample], bool] = lambda s: True,
) -> Values:
    groups: dict[Labels, list[float]] = {}
    for s in samples:
        if s.name == name and where(s):
            groups.setdefault(_key(s, by), []).append(s.value)
    return {k: fn(v) for k, v in groups.items()}


def _age(name: str) -> Callable[[list[Sample], float], Values]:
    def value(samples: list[Sample], now: float) -> Values:
        return {k: now - v for k, v in _agg(samples, name, ("instance",), max).items()}

    return value


def _ratio_used(samples: list[Sample], avail: str, size: str, by: tuple[str, ...]) -> Values:
    a, s = _agg(samples, avail, by, max), _agg(samples, size, by, max)
    return {k: 100 * (1 - a[k] / s[k]) for k in a if s.get(k)}


def _atlas_memory(samples: list[Sample], _now: float) -> Values:
    rss = _agg(samples, "atlas_process_resident_memory_bytes", ("instance",), sum)
    budget = _agg(samples, "atlas_memory_budget_bytes", ("instance",), max, lambda s: s.value > 0)
    return {k: 100 * rss[k] / budget[k] for k in rss if k in budget}


def _count(name: str, by: tuple[str, ...], where: Callable[[Sample], bool]) -> Callable[..., Values]:
    return lambda samples, _now: _agg(samples, name, by, len, where)


# signal -> value per label set, mirroring the signal's recording rule (atlas/alerting/signals.py).
EVALUATORS: dict[str, Callable[[list[Sample], float], Values]] = {
    "queue_backlog": lambda s, _n: _agg(
        s, "atlas_items", ("instance",), sum, lambda x: x.labels.get("state") == "queued"
    ),
    "oldest_queued_age": lambda s, _n: _agg(s, "atlas_queue_oldest_item_age_seconds", ("instance",), max),
    "engine_heartbeat_age": _age("atlas_newest_heartbeat_timestamp_seconds"),
    "dead_letters": lambda s, _n: _agg(s, "atlas_dlq_items", ("instance",), sum),
    "circuit_open_hosts": _count("atlas_host_breaker_state", ("job",), lambda x: x.value == 2),
    "feeds_failing": lambda s, _n: _agg(
        s, "atlas_feeds", ("instance",), sum, lambda x: x.labels.get("status") == "failing"
    ),
    "maintenance_age": _age("atlas_maintenance_since_timestamp_seconds"),
    "target_down": _count("up", ("job",), lambda x: x.value == 0),
    "memory_usage": lambda s, _n: _ratio_used(
        s, "node_memory_MemAvailable_bytes", "node_memory_MemTotal_bytes", ("instance", "job")
    ),
    "atlas_memory": _atlas_memory,
    "disk_usage": lambda s, _n: _ratio_used(
        s, "atlas_data_dir_avail_bytes", "atlas_data_dir_size_bytes", ("instance",)
    ),
    "disk_free": lambda s, _n: _agg(s, "atlas_data_dir_avail_bytes", ("instance",), max),
    "backup_age": _age("atlas_backup_last_success_timestamp_seconds"),
}
EVALUABLE = tuple(EVALUATORS)

_COMPARE: dict[str, Callable[[float, float], bool]] = {
    ">": lambda v, t: v > t,
    "<": lambda v, t: v < t,
    ">=": lambda v, t: v >= t,
    "<=": lambda v, t: v <= t,
}


@dataclass
class AlertState:
    active_since: float
    firing: bool = False
    last_sent: float | None = None
    value: float = 0.0


@dataclass(frozen=True)
class Transition:
    """What to notify: `status` firing (first time or after the cooldown) or resolved."""

    alert: str
    severity: str
    labels: Labels
    status: str
    value: float
    since: float


@dataclass
class Evaluator:
    """Holds each alert instance's pending/firing state between evaluations.

    `alerts`: (alert name, severity, signal, comparison, threshold, for seconds, cooldown seconds).
    """

    alerts: list[tuple[str, str, str, str, float, float, float]]
    states: dict[tuple[str, str, Labels], AlertState] = field(default_factory=dict)

    def evaluate(self, samples: list[Sample], now: float) -> list[Transition]:
        out: list[Transition] = []
        seen: set[tuple[str, str, Labels]] = set()
        for name, severity, signal, op, threshold, for_s, cooldown in self.alerts:
            for labels, value in EVALUATORS[signal](samples, now).items():
                if not _COMPARE[op](value, threshold):
                    continue
                key = (name, severity, labels)
                seen.add(key)
                state = self.states.setdefault(key, AlertState(active_since=now))
                state.value = value
                if not state.firing and now - state.active_since >= for_s:
                    state.firing = True
                if state.firing and (state.last_sent is None or now - state.last_sent >= cooldown):
                    state.last_sent = now
                    out.append(Transition(name, severity, labels, "firing", value, state.active_since))
        for key in [k for k in self.states if k not in seen]:
            state = self.states.pop(key)
            if state.firing and state.last_sent is not None:
                out.append(Transition(key[0], key[1], key[2], "resolved", state.value, state.active_since))
        return out
