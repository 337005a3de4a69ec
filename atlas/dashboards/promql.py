"""Just enough PromQL reading for the dashboards: the metric names an expression uses, and the
expression with Grafana's variables replaced (for Prometheus's query API, tests and rendering)."""

from __future__ import annotations

import re

# Words that look like names in PromQL but are operators, modifiers or aggregation clauses.
_KEYWORDS = {
    "and",
    "or",
    "unless",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "offset",
    "inf",
    "nan",
}
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")


def metric_names(expr: str) -> set[str]:
    """Metric names selected by `expr`: identifiers that are not functions, keywords, label names
    inside braces or grouping clauses, strings, durations or numbers."""
    text = _STRING.sub('""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)  # range and subquery windows
    text = _GROUPING.sub(" ", text)
    names: set[str] = set()
    for m in _NAME.finditer(text):
        word = m.group(0)
        before = text[m.start() - 1] if m.start() else " "
        if before.isdigit() or before == ".":  # part of a number such as 1e3
            continue
        if re.match(r"\s*\(", text[m.end() :]) or word.lower() in _KEYWORDS:
            continue
        names.add(word)
    return names


def substitute(expr: str, *, rate_interval: str, job: str = ".+", instance: str = ".+") -> str:
    """`expr` with $job, $instance and $__rate_interval replaced as Grafana would for "All"."""
    return expr.replace("$__rate_interval", rate_interval).replace("$instance", instance).replace("$job", job)
