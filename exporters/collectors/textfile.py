"""node_exporter's textfile collector: metrics that cron jobs and backup scripts write to `*.prom`
files in a directory (ATLAS_EXPORTER_TEXTFILE_DIR), exported beside the exporter's own.

Parsed strictly like node_exporter's text-format parser: a file with a syntax error, a sample
with a client-side timestamp, a metric whose TYPE disagrees with another file's, or a repeated
series is skipped whole and sets node_textfile_scrape_error to 1 (the other files still export).
node_textfile_mtime_seconds{file} gives each file read successfully. A family without HELP gets
"Metric read from <files>". Samples of one family lacking a label another has get it as "".

One difference, by the Python client's exposition: a counter whose name lacks `_total` is exported
untyped (same name and samples), since the client would otherwise rename it.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client.core import GaugeMetricFamily, Metric

from atlas.logging import get_logger

_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_TYPES = {"counter", "gauge", "untyped", "summary", "histogram"}
_SUFFIXES = {"histogram": ("_bucket", "_sum", "_count"), "summary": ("_sum", "_count")}


class TextfileError(ValueError):
    """A *.prom file that node_exporter would refuse, with file:line in the message."""


@dataclass
class Family:
    name: str
    type: str = "untyped"
    help: str | None = None
    samples: list[tuple[str, dict[str, str], float]] = field(default_factory=list)


def _value(raw: str) -> float:
    special = {"+Inf": math.inf, "-Inf": -math.inf, "NaN": math.nan, "Inf": math.inf}
    if raw in special:
        return special[raw]
    return float(raw)


def _labels(text: str, where: str) -> tuple[dict[str, str], str]:
    """Parse `a="x",b="y"}` (text just after `{`); returns the labels and the rest after `}`."""
    labels: dict[str, str] = {}
    i = 0
    while True:
        while i < len(text) and text[i] in " \t":
            i += 1
        if i < len(text) and text[i] == "}":
            return labels, text[i + 1 :]
        m = _LABEL_NAME.match(text, i)
        if not m:
            raise TextfileError(f"{where}: invalid label name")
        name = m.group()
        i = m.end()
        if text[i : i + 2] != '="':
            raise TextfileError(f'{where}: expected =" after label {name}')
        i += 2
        value = []
        while True:
            if i >= len(text):
                raise TextfileError(f"{where}: unterminated value of label {name}")
            ch = text[i]
            if ch == "\\":
                nxt = text[i + 1 : i + 2]
                if nxt not in ('"', "\\", "n"):
                    raise TextfileError(f"{where}: invalid escape \\{nxt} in label {name}")
                value.append("\n" if nxt == "n" else nxt)
                i += 2
            elif ch == '"':
                i += 1
                break
            else:
                value.append(ch)
                i += 1
        if name in labels:
            raise TextfileError(f"{where}: label {name} given twice")
        labels[name] = "".join(value)
        while i < len(text) and text[i] in " \t":
            i += 1
        if text[i : i + 1] == ",":
            i += 1
        elif text[i : i + 1] != "}":
            raise TextfileError(f"{where}: expected , or }} after label {name}")


def _family_of(name: str, families: dict[str, Family]) -> Family:
    for typ, suffixes in _SUFFIXES.items():
        for suffix in suffixes:
            base = name[: -len(suffix)]
            if name.endswith(suffix) and base in families and families[base].type == typ:
                return families[base]
    return families.setdefault(name, Family(name))


def parse(text: str, source: str) -> dict[str, Family]:
    """Families of one text-format file. Raises TextfileError naming source:line."""
    families: dict[str, Family] = {}
    seen_samples: set[str] = set()
    for n, line in enumerate(text.splitlines(), 1):
        where = f"{source}:{n}"
        line = line.strip()
        if not line:
            continue
        if line.startswith("#"):
            parts = line[1:].split(None, 2)
            if len(parts) >= 2 and parts[0] in ("HELP", "TYPE"):
                if not _NAME.fullmatch(parts[1]):
                    raise TextfileError(f"{where}: invalid metric name {parts[1]!r}")
                fam = families.setdefault(parts[1], Family(parts[1]))
                arg = parts[2] if len(parts) > 2 else ""
                if parts[0] == "HELP":
                    if fam.help is not None:
                        raise TextfileError(f"{where}: second HELP line for {parts[1]}")
                    fam.help = arg.replace("\\n", "\n").replace("\\\\", "\\")
                else:
                    if arg not in _TYPES:
                        raise TextfileError(f"{where}: unknown metric type {arg!r}")
                    if fam.samples or parts[1] in seen_samples or fam.type != "untyped":
                        raise TextfileError(f"{where}: TYPE for {parts[1]} after its samples or twice")
                    fam.type = arg
            continue
        m = _NAME.match(line)
        if not m:
            raise TextfileError(f"{where}: invalid metric name")
        name, rest = m.group(), line[m.end() :]
        labels: dict[str, str] = {}
        if rest.startswith("{"):
            labels, rest = _labels(rest[1:], where)
        fields = rest.split()
        if not fields or len(fields) > 2:
            raise TextfileError(f"{where}: expected a value after {name}")
        if len(fields) == 2:
            raise TextfileError(f"{where}: client-side timestamps are not supported, skipping the file")
        try:
            value = _value(fields[0])
        except ValueError:
            raise TextfileError(f"{where}: invalid value {fields[0]!r}") from None
        fam = _family_of(name, families)
        fam.samples.append((name, labels, value))
        seen_samples.add(name)
    return {k: f for k, f in families.items() if f.samples}


class TextfileCollector:
    def __init__(self, directory: Path | None) -> None:
        self.directory = directory
        self._log = get_logger("atlas.exporter")

    def _read(self) -> tuple[dict[str, Family], dict[str, list[str]], dict[str, float], bool]:
        merged: dict[str, Family] = {}
        files_of: dict[str, list[str]] = {}
        mtimes: dict[str, float] = {}
        error = False
        if self.directory is None:  # not configured: node_exporter's empty --collector.textfile.directory
            return merged, files_of, mtimes, error
        try:
            names = sorted(os.listdir(self.directory))
        except OSError as exc:
            self._log.warning("textfile directory unreadable", path=str(self.directory), error=str(exc))
            return merged, files_of, mtimes, True
        for name in names:
            if not name.endswith(".prom"):
                continue
            path = self.directory / name
            try:
                with open(path, encoding="utf-8") as f:
                    text = f.read()
                    mtime = os.fstat(f.fileno()).st_mtime
                families = parse(text, str(path))
                series: set[tuple[str, tuple[tuple[str, str], ...]]] = set()
                for fam in families.values():
                    other = merged.get(fam.name)
                    if other is not None and other.type != fam.type:
                        raise TextfileError(
                            f"{path}: {fam.name} is {fam.type} here but {other.type} in another file"
                        )
                    for sample_name, labels, _ in fam.samples + (other.samples if other else []):
                        key = (sample_name, tuple(sorted(labels.items())))
                        if key in series:
                            raise TextfileError(f"{path}: series {sample_name}{labels} given twice")
                        series.add(key)
                    series.clear()
            except (OSError, UnicodeDecodeError, TextfileError) as exc:
                self._log.warning("textfile skipped", file=str(path), error=str(exc))
                error = True
                continue
            for fam in families.values():
                target = merged.setdefault(fam.name, Family(fam.name, fam.type, fam.help))
                if target.help is None:
                    target.help = fam.help
                target.samples.extend(fam.samples)
                files_of.setdefault(fam.name, []).append(str(path))
            mtimes[str(path)] = float(int(mtime))  # node_exporter exports whole seconds
        return merged, files_of, mtimes, error

    def __call__(self) -> Iterator[Metric]:
        merged, files_of, mtimes, error = self._read()
        for fam in merged.values():
            typ = {"untyped": "unknown"}.get(fam.type, fam.type)
            if typ == "counter" and not fam.name.endswith("_total"):
                typ = "unknown"  # see the module doc
            name = fam.name[: -len("_total")] if typ == "counter" else fam.name
            doc = fam.help if fam.help is not None else f"Metric read from {', '.join(files_of[fam.name])}"
            metric = Metric(name, doc, typ)
            # le and quantile belong to one sample kind each; only the series' own labels are filled.
            own = {"le", "quantile"} if typ in ("histogram", "summary") else set()
            label_names = sorted({k for _, labels, _ in fam.samples for k in labels} - own)
            for sample_name, labels, value in fam.samples:
                filled = {k: labels.get(k, "") for k in label_names}
                filled.update((k, v) for k, v in labels.items() if k in own)
                metric.add_sample(sample_name, filled, value)
            yield metric
        if mtimes:
            fam_mtime = GaugeMetricFamily(
                "node_textfile_mtime_seconds",
                "Unixtime mtime of textfiles successfully read.",
                labels=("file",),
            )
            for path in sorted(mtimes):
                fam_mtime.add_metric((path,), mtimes[path])
            yield fam_mtime
        yield GaugeMetricFamily(
            "node_textfile_scrape_error",
            "1 if there was an error opening or reading a file, 0 otherwise",
            value=1 if error else 0,
        )
