"""Schema checks over YAML nodes, so every finding names the file and line of the value at fault.

PyYAML's `compose` keeps a mark (line, column) on every node; checking the node tree instead of
the loaded dicts is what lets `alerting.yaml:14: alerts.cpu_usage.critical: ...` name line 14.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Collection
from pathlib import Path
from typing import Any

import yaml

from atlas.config.loader import Finding, Source

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_DURATION_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}


def parse_duration(text: str) -> float:
    """Prometheus-style durations (`90s`, `5m`, `1h30m`) in seconds; raises ValueError."""
    text = text.strip()
    parts = list(_DURATION.finditer(text))
    if not parts or "".join(p.group() for p in parts) != text:
        raise ValueError(f"expected a duration like 30s, 5m, 1h30m, got {text!r}")
    return sum(float(p.group(1)) * _DURATION_SECONDS[p.group(2)] for p in parts)


class YamlChecker:
    """Walks one YAML file's nodes, collecting findings with file and line."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)
        self.findings: list[Finding] = []
        self._construct = yaml.constructor.SafeConstructor()
        self._keys: dict[int, yaml.Node] = {}  # id(value node) -> its key node

    def load(self) -> yaml.MappingNode | None:
        """The document's top-level mapping, or None (with a finding) if it cannot be read."""
        try:
            text = Path(self.path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            self.findings.append(Finding("", f"cannot read the file: {exc}", Source("file", self.path)))
            return None
        try:
            node = yaml.compose(text, Loader=yaml.SafeLoader)
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            line = mark.line + 1 if mark else None
            self.findings.append(
                Finding("", f"not valid YAML: {exc.problem}", Source("file", self.path, line))
            )
            return None
        if not isinstance(node, yaml.MappingNode):
            self.error(node, "", "expected a mapping at the top of the file")
            return None
        return node

    def line(self, node: yaml.Node) -> int:
        """The line a person looks at for `node`: its key's line for a nested mapping or list."""
        if not isinstance(node, yaml.ScalarNode) and id(node) in self._keys:
            node = self._keys[id(node)]
        return int(node.start_mark.line) + 1

    def error(self, node: yaml.Node | None, key: str, message: str, severity: str = "error") -> None:
        line = self.line(node) if node is not None else None
        self.findings.append(Finding(key, message, Source("file", self.path, line), severity))

    def mapping(
        self, node: yaml.Node, where: str, allowed: Collection[str] | None = None
    ) -> dict[str, yaml.Node] | None:
        """A mapping's values by key; unknown keys (when `allowed` is given) and duplicates are findings."""
        if not isinstance(node, yaml.MappingNode):
            self.error(node, where, f"expected a mapping, got {self._shown(node)}")
            return None
        out: dict[str, yaml.Node] = {}
        for key_node, value_node in node.value:
            key = str(key_node.value)
            path = f"{where}.{key}" if where else key
            if key in out:
                self.error(key_node, path, "set twice in the same mapping")
            elif allowed is not None and key not in allowed:
                close = difflib.get_close_matches(key, list(allowed), n=1, cutoff=0.6)
                hint = f"did you mean {close[0]!r}?" if close else f"expected one of {', '.join(allowed)}"
                self.error(key_node, path, f"unknown key ({hint})")
            else:
                out[key] = value_node
                self._keys[id(value_node)] = key_node
        return out

    def value(self, node: yaml.Node) -> Any:
        if isinstance(node, yaml.ScalarNode):
            return self._construct.construct_object(node)
        return None

    def _shown(self, node: yaml.Node) -> str:
        if isinstance(node, yaml.ScalarNode):
            return repr(node.value) if node.value != "" else "an empty value"
        return "a list" if isinstance(node, yaml.SequenceNode) else "a mapping"

    def number(self, node: yaml.Node, where: str, lo: float, hi: float) -> float | None:
        value = self.value(node)
        if isinstance(value, bool) or not isinstance(value, int | float) or not lo <= value <= hi:
            self.error(node, where, f"expected a number {lo:g}-{hi:g}, got {self._shown(node)}")
            return None
        return float(value)

    def duration(self, node: yaml.Node, where: str) -> float | None:
        """A duration string (`5m`) or a number of seconds."""
        value = self.value(node)
        if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
            return float(value)
        try:
            if isinstance(value, str):
                return parse_duration(value)
        except ValueError:
            pass
        self.error(node, where, f"expected a duration like 30s, 5m, 1h (or seconds), got {self._shown(node)}")
        return None

    def boolean(self, node: yaml.Node, where: str) -> bool | None:
        value = self.value(node)
        if not isinstance(value, bool):
            self.error(node, where, f"expected true or false, got {self._shown(node)}")
            return None
        return value

    def text(self, node: yaml.Node, where: str, pattern: str | None = None, expected: str = "") -> str | None:
        value = self.value(node)
        if not isinstance(value, str) or not value.strip() or (pattern and not re.fullmatch(pattern, value)):
            self.error(node, where, f"expected {expected or 'a non-empty string'}, got {self._shown(node)}")
            return None
        return value

    def text_list(self, node: yaml.Node, where: str, pattern: str, expected: str) -> list[str] | None:
        if not isinstance(node, yaml.SequenceNode) or not node.value:
            self.error(node, where, f"expected a non-empty list of {expected}, got {self._shown(node)}")
            return None
        items = [self.text(item, f"{where}[{i}]", pattern, expected) for i, item in enumerate(node.value)]
        return None if None in items else [i for i in items if i is not None]
