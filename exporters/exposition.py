"""Serving /metrics the way node_exporter does: text format 0.0.4 whatever the Accept header asks
(node_exporter 1.5 does not offer OpenMetrics), gzip when accepted, rendered by a renderer that
writes the same bytes as prometheus_client's generate_latest at a fraction of its cost.

Why not generate_latest: with ~1,100 samples a scrape, its per-sample str.format calls, escaping
function calls and name checks cost more than reading every procfs and sysfs file (bench/exporter.py).
This renderer keeps each family's HELP/TYPE header and each label name's check in a cache, escapes
a label value only when it holds a character that needs it, and joins one list of strings.
tests/unit/test_exporter_exposition.py holds it byte-equal to generate_latest.
"""

from __future__ import annotations

import gzip
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any
from wsgiref.simple_server import WSGIServer, make_server

from prometheus_client.exposition import ThreadingWSGIServer, _get_best_family, _SilentHandler
from prometheus_client.openmetrics.exposition import escape_label_name, escape_metric_name
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample
from prometheus_client.utils import floatToGoString

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# Go's promhttp compresses at its default level; level 1 costs ~1/15 of gzip.compress's default 9
# for ~25% more bytes on the loopback or LAN a scrape crosses.
GZIP_LEVEL = 1
# prometheus_client's promotions of OpenMetrics types to the text format's.
_TYPES = {"counter": "counter", "info": "gauge", "stateset": "gauge", "gaugehistogram": "histogram"}
_OM_SUFFIXES = ("_created", "_gsum", "_gcount")

_Header = tuple[str, str, tuple[str, ...]]
# Formatted values: most samples repeat a value another sample or the last scrape had (0, 1, flags,
# limits, sizes), and floatToGoString costs more than the lookup. Zero is left out: -0.0 == 0.0 but
# formats differently. Cleared when it grows past _VALUES_MAX (counters keep making new values).
_VALUES: dict[float, str] = {}
_VALUES_MAX = 20_000


def format_value(value: float) -> str:
    """floatToGoString's text for `value`, from the cache when it has it."""
    cached = _VALUES.get(value)
    if cached is not None:
        return cached
    text: str = floatToGoString(value)  # type: ignore[no-untyped-call]  # untyped in prometheus_client
    if value:
        if len(_VALUES) >= _VALUES_MAX:
            _VALUES.clear()
        _VALUES[value] = text
    return text


class TextRenderer:
    """Renders families as text format 0.0.4; caches survive between scrapes (families repeat)."""

    def __init__(self) -> None:
        self._headers: dict[tuple[str, str, str], _Header] = {}
        self._label_names: dict[str, str] = {}
        self._sample_names: dict[str, str] = {}

    def _header(self, name: str, mtype: str, doc: str) -> _Header:
        key = (name, mtype, doc)
        cached = self._headers.get(key)
        if cached is None:
            mname = name + "_total" if mtype == "counter" else name + "_info" if mtype == "info" else name
            text_type = _TYPES.get(mtype, "untyped" if mtype == "unknown" else mtype)
            escaped_doc = doc.replace("\\", r"\\").replace("\n", r"\n")
            ename = escape_metric_name(mname)
            header = f"# HELP {ename} {escaped_doc}\n# TYPE {ename} {text_type}\n"
            cached = (header, escaped_doc, tuple(name + suffix for suffix in _OM_SUFFIXES))
            self._headers[key] = cached
        return cached

    def _sample_name(self, name: str) -> str:
        cached = self._sample_names.get(name)
        if cached is None:
            cached = self._sample_names[name] = escape_metric_name(name)
        return cached

    def _line(self, s: Sample) -> str:
        labels = s.labels
        if labels:
            names = self._label_names
            parts = []
            for k, v in sorted(labels.items()):
                lname = names.get(k)
                if lname is None:
                    lname = names[k] = escape_label_name(k)
                if "\\" in v or "\n" in v or '"' in v:
                    v = v.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")
                parts.append(f'{lname}="{v}"')
            head = f"{self._sample_name(s.name)}{{{','.join(parts)}}} "
        else:
            head = self._sample_name(s.name) + " "
        if s.timestamp is not None:
            return f"{head}{format_value(s.value)} {int(float(s.timestamp) * 1000):d}\n"
        return f"{head}{format_value(s.value)}\n"

    def render(self, families: Iterable[Any]) -> bytes:
        out: list[str] = []
        line = self._line
        for metric in families:
            header, doc, om_names = self._header(metric.name, metric.type, metric.documentation)
            out.append(header)
            om: dict[str, list[str]] = {}
            for s in metric.samples:
                if s.name in om_names:  # OpenMetrics-only sample: its own gauge after the family
                    om.setdefault(s.name[len(metric.name) :], []).append(line(s))
                else:
                    out.append(line(s))
            for suffix, lines in sorted(om.items()):
                ename = escape_metric_name(metric.name + suffix)
                out.append(f"# HELP {ename} {doc}\n# TYPE {ename} gauge\n")
                out.extend(lines)
        return "".join(out).encode("utf-8")


def _gzip_accepted(header: str | None) -> bool:
    return any(part.split(";")[0].strip() == "gzip" for part in (header or "").split(","))


def make_app(registry: Collector) -> Callable[..., Iterator[bytes] | list[bytes]]:
    """The /metrics WSGI app. One scrape renders at a time: the renderer's caches are not shared
    across threads, and node collectors are cheaper run once than interleaved under the GIL."""
    renderer = TextRenderer()
    lock = threading.Lock()

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        method = environ["REQUEST_METHOD"]
        if method == "OPTIONS":
            start_response("200 OK", [("Allow", "OPTIONS,GET")])
            return [b""]
        if method != "GET":
            start_response("405 Method Not Allowed", [("Allow", "OPTIONS,GET")])
            return [f"# HTTP 405 Method Not Allowed: {method}; use OPTIONS or GET\n".encode()]
        if environ.get("PATH_INFO") == "/favicon.ico":
            start_response("200 OK", [])
            return [b""]
        with lock:
            body = renderer.render(registry.collect())
        headers = [("Content-Type", CONTENT_TYPE)]
        if _gzip_accepted(environ.get("HTTP_ACCEPT_ENCODING")):
            body = gzip.compress(body, GZIP_LEVEL)
            headers.append(("Content-Encoding", "gzip"))
        start_response("200 OK", headers)
        return [body]

    return app


def start_server(registry: Collector, port: int, addr: str) -> tuple[WSGIServer, threading.Thread]:
    """prometheus_client's start_http_server with this app: a threading WSGI server whose requests
    are not logged, serving from a daemon thread. Raises OSError when the address cannot be bound."""

    class Server(ThreadingWSGIServer):
        pass

    Server.address_family, addr = _get_best_family(addr, port)  # type: ignore[no-untyped-call]
    httpd = make_server(addr, port, make_app(registry), Server, handler_class=_SilentHandler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    return httpd, thread
