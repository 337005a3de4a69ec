"""The agent's alert evaluator: the compiled alerts' conditions, `for`, keep_firing_for, cooldown.

Each alert's condition is the query tree the compiler renders into atlas.rules.yml
(atlas.alerting.queries for signals, atlas.alerting.slo for burn rates) compared with its
threshold, evaluated on the agent's history by atlas.monitor.promql. Alert state follows
Prometheus's rule manager: an instance becomes pending when the condition first holds, firing once
it has held `for`, stays firing `keep_firing_for` after the condition stops, then resolves. A
firing instance is re-notified after the rule's cooldown, as Alertmanager's repeat_interval does.
Only custom `expr:` alerts (free PromQL text) are left to Prometheus.

Pure logic: the history and the clock come in as arguments.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from atlas.alerting.query import Bin, Expr, Num, Sel, ranges
from atlas.monitor.history import History, Labels
from atlas.monitor.promql import NAME, evaluate


@dataclass(frozen=True)
class AgentAlert:
    """One compiled alerting rule: `condition` yields the instances the rule is active for."""

    name: str
    severity: str
    condition: Expr
    for_seconds: float = 0.0
    keep_firing_for_seconds: float = 0.0
    cooldown_seconds: float = 0.0

    @classmethod
    def threshold(
        cls, name: str, severity: str, query: Expr, op: str, threshold: float, **timing: float
    ) -> AgentAlert:
        """`<record> <op> <threshold>`: the recorded series is the query, evaluated in place."""
        return cls(name, severity, Bin(op, query, Num(threshold)), **timing)


@dataclass
class AlertState:
    active_since: float
    firing: bool = False
    last_sent: float | None = None
    value: float = 0.0
    keep_since: float | None = None


@dataclass(frozen=True)
class Transition:
    """What to notify: `status` firing (first time or after the cooldown) or resolved."""

    alert: str
    severity: str
    labels: Labels
    status: str
    value: float
    since: float


def reads(alerts: list[AgentAlert]) -> list[tuple[Sel, float]]:
    """Every (selector, range) the alerts' conditions read: what History must keep."""
    return [r for a in alerts for r in ranges(a.condition)]


@dataclass
class Evaluator:
    """Holds each alert instance's pending/firing state between evaluations."""

    alerts: list[AgentAlert]
    states: dict[tuple[str, str, Labels], AlertState] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._reads = {id(a): [sel for sel, _ in ranges(a.condition)] for a in self.alerts}

    def evaluate(self, history: History, now: float) -> list[Transition]:
        out: list[Transition] = []
        seen: set[tuple[str, str, Labels]] = set()
        for alert in self.alerts:
            if not any(history.select(sel) for sel in self._reads[id(alert)]):
                continue  # reads no series at all, so no instance (and evaluation is not free)
            result = evaluate(alert.condition, history, now)
            assert isinstance(result, dict), f"{alert.name}: the condition is not a vector"
            for labels, value in result.items():
                key = (alert.name, alert.severity, tuple(kv for kv in labels if kv[0] != NAME))
                seen.add(key)
                state = self.states.setdefault(key, AlertState(active_since=now))
                state.value, state.keep_since = value, None
                if not state.firing and now - state.active_since >= alert.for_seconds:
                    state.firing = True
                if state.firing and (
                    state.last_sent is None or now - state.last_sent >= alert.cooldown_seconds
                ):
                    state.last_sent = now
                    out.append(
                        Transition(alert.name, alert.severity, key[2], "firing", value, state.active_since)
                    )
        keep = {(a.name, a.severity): a.keep_firing_for_seconds for a in self.alerts}
        for key in [k for k in self.states if k not in seen]:
            state = self.states[key]
            if state.firing and keep[key[:2]]:
                state.keep_since = now if state.keep_since is None else state.keep_since
                if now - state.keep_since < keep[key[:2]]:
                    continue
            del self.states[key]
            if state.firing and state.last_sent is not None:
                out.append(Transition(key[0], key[1], key[2], "resolved", state.value, state.active_since))
        return out

    def active(self) -> dict[tuple[str, str, Labels], str]:
        """Every active instance and its state, pending or firing (what Prometheus's ALERTS shows)."""
        return {k: "firing" if s.firing else "pending" for k, s in self.states.items()}
