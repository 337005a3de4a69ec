"""A real HTTP origin on 127.0.0.1 for the content pipeline: articles, feeds, and misbehaviour.

One threaded server answers for many hostnames (h0.test ... h9.test reach it through the fetch
stage's injectable resolver); it routes on the path and counts requests per Host. `failing` makes
hosts answer 500 until cleared; `latency_seconds` delays every answer (the benchmark's 20 ms).
"""

from __future__ import annotations

import gzip
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

NAV = """<nav class="menu"><ul><li><a href="/">Home</a></li><li><a href="/news">News</a></li>
<li><a href="/sport">Sport</a></li><li><a href="/weather">Weather</a></li>
<li><a href="/about">About us</a></li>
<li><a href="/subscribe">Subscribe to our newsletter</a></li></ul></nav>"""
FOOTER = """<footer><p>Copyright 2026 The Riverside Gazette. All rights reserved.</p>
<p><a href="/privacy">Privacy policy</a> | <a href="/terms">Terms of use</a> |
<a href="/cookies">Cookie settings</a></p>
</footer>"""
COMMENTS = """<section id="comments" class="comments"><h3>Comments (2)</h3>
<div class="comment"><p>FirstCommenter: Great article, thanks for sharing this with everyone!</p></div>
<div class="comment">
<p>SpamBot: Buy cheap watches at my shop, best prices guaranteed!!!</p></div></section>"""


def article_html(host: str, n: int, *, topic: str = "library") -> str:
    """A realistic news page: boilerplate around a main article unique to (host, n)."""
    paragraphs = "\n".join(
        f"<p>Paragraph {p} of story {n} from {host}: the {topic} committee met on Tuesday evening and "
        f"heard from residents who had waited {n + p} years for a decision on the {topic} project, "
        f"which the council now expects to complete within budget by the end of next summer.</p>"
        for p in range(1, 5)
    )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>Story {n} about the {topic} | The Riverside Gazette</title>
<link rel="canonical" href="http://{host}/article/{n}">
<meta name="author" content="Jane Reporter">
<meta property="article:published_time" content="2026-03-{(n % 27) + 1:02d}T08:00:00Z">
</head><body>{NAV}
<aside class="sidebar"><h4>Most read</h4>
<ul><li><a href="/x">Ten things to do this weekend</a></li></ul></aside>
<main><article><h1>Story {n} about the {topic}</h1><p class="byline">By Jane Reporter</p>
{paragraphs}
</article></main>
{COMMENTS}{FOOTER}</body></html>"""


def rss(host: str, ids: range) -> str:
    items = "".join(
        f"<item><title>Story {i}</title><link>http://{host}/article/{i}</link>"
        f"<guid>urn:story:{host}:{i}</guid></item>"
        for i in ids
    )
    return (
        '<?xml version="1.0"?><rss version="2.0"><channel><title>Gazette RSS</title>'
        f"<link>http://{host}/</link><description>news</description>{items}</channel></rss>"
    )


def atom(host: str, ids: range) -> str:
    entries = "".join(
        f'<entry><title>Story {i}</title><link href="http://{host}/article/{i}"/>'
        f"<id>urn:atom:{host}:{i}</id><updated>2026-03-01T00:00:00Z</updated></entry>"
        for i in ids
    )
    return (
        '<?xml version="1.0" encoding="utf-8"?><feed xmlns="http://www.w3.org/2005/Atom">'
        "<title>Gazette Atom</title><id>urn:gazette</id><updated>2026-03-01T00:00:00Z</updated>"
        f"{entries}</feed>"
    )


# 1 GiB of zeros gzips to about 1 MiB; 64 MiB is plenty to show the cap holds.
_BOMB = gzip.compress(b"\0" * (64 << 20), compresslevel=9)


@dataclass
class Origin:
    port: int
    hits: Counter[str] = field(default_factory=Counter)  # requests by Host (without port)
    times: dict[str, list[float]] = field(default_factory=dict)  # arrival (monotonic) by Host
    failing: set[str] = field(default_factory=set)
    latency_seconds: float = 0.0
    feed_entries: range = range(0, 3)
    not_modified: int = 0  # 304s answered to conditional page requests
    lock: threading.Lock = field(default_factory=threading.Lock)
    _server: Any = None

    def url(self, host: str, path: str) -> str:
        return f"http://{host}:{self.port}{path}"


def _handler(origin: Origin) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _send(
            self, status: int, body: bytes, ctype: str = "text/html; charset=utf-8", **headers: str
        ) -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            for k, v in headers.items():
                self.send_header(k.replace("_", "-"), v)
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            host = (self.headers.get("Host") or "").rsplit(":", 1)[0]
            with origin.lock:
                origin.hits[host] += 1
                origin.times.setdefault(host, []).append(time.monotonic())
            if origin.latency_seconds:
                time.sleep(origin.latency_seconds)
            parts = urlsplit(self.path)
            path, query = parts.path, parse_qs(parts.query)
            if host in origin.failing:
                self._send(500, b"upstream broken")
                return
            if path.startswith("/article/"):
                n = int(path.rsplit("/", 1)[1])
                self._send(200, article_html(host, n, topic=query.get("topic", ["library"])[0]).encode())
            elif path.startswith("/etagged/"):
                n = int(path.rsplit("/", 1)[1])
                etag = f'"page-{n}-v1"'
                if self.headers.get("If-None-Match") == etag:
                    with origin.lock:
                        origin.not_modified += 1
                    self.send_response(304)
                    self.send_header("ETag", etag)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self._send(200, article_html(host, 500 + n).encode(), ETag=etag)
            elif path == "/same":
                self._send(200, article_html("shared.test", 1).encode())
            elif path in ("/feed.rss", "/feed.atom"):
                netloc = self.headers.get("Host") or host  # links keep the origin's port
                body = (rss if path.endswith("rss") else atom)(netloc, origin.feed_entries).encode()
                etag = f'"{len(origin.feed_entries)}-{origin.feed_entries.stop}"'
                ctype = "application/rss+xml" if path.endswith("rss") else "application/atom+xml"
                if self.headers.get("If-None-Match") == etag:
                    self.send_response(304)
                    self.send_header("ETag", etag)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self._send(200, body, ctype, ETag=etag)
            elif path == "/notafeed":
                self._send(200, b"<rss><this is not xml", "application/rss+xml")
            elif path.startswith("/redirect/"):
                n = int(path.rsplit("/", 1)[1])
                target = f"/redirect/{n - 1}" if n > 1 else "/article/7"
                self._send(302, b"", Location=target)
            elif path == "/loop/a":
                self._send(302, b"", Location="/loop/b")
            elif path == "/loop/b":
                self._send(301, b"", Location="/loop/a")
            elif path == "/to-loopback":
                self._send(302, b"", Location=query["to"][0])
            elif path == "/status":
                self._send(int(query["code"][0]), b"status page")
            elif path == "/slow":
                time.sleep(float(query["s"][0]))
                self._send(200, article_html(host, 99).encode())
            elif path == "/trickle":  # slow loris: a byte every 0.2 s, forever
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", "100000")
                self.end_headers()
                try:
                    for _ in range(500):
                        self.wfile.write(b"<")
                        self.wfile.flush()
                        time.sleep(0.2)
                except OSError:
                    pass
            elif path == "/huge":  # no length, close-delimited, endless
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.send_header("Connection", "close")
                self.end_headers()
                self.close_connection = True
                chunk = b"<p>" + b"x" * 65_530 + b"</p>"
                try:
                    for _ in range(1 << 15):  # 2 GiB if nobody stops reading
                        self.wfile.write(chunk)
                except OSError:
                    pass
            elif path == "/bomb":
                self._send(200, _BOMB, Content_Encoding="gzip")
            elif path == "/gzipped":
                self._send(200, gzip.compress(article_html(host, 5).encode()), Content_Encoding="gzip")
            elif path == "/binary":
                self._send(200, bytes(range(256)) * 64, "text/html")
            elif path == "/pdf":
                self._send(200, b"%PDF-1.4 ...", "application/pdf")
            elif path == "/broken":
                body = "<html><body><div><p>" + article_html(host, 3).split("<main>")[1][:1500]
                self._send(200, body.encode())  # cut mid-tag, unclosed elements
            elif path == "/latin1":  # labelled UTF-8, really Latin-1
                text = article_html(host, 11).replace("committee", "comité café")
                self._send(200, text.encode("latin-1"), "text/html; charset=utf-8")
            elif path == "/nocharset":
                text = article_html(host, 12).replace("committee", "Ausschuß für Straßenbahnen")
                self._send(200, text.replace('<meta charset="utf-8">', "").encode("cp1252"), "text/html")
            elif path == "/empty":
                self._send(200, f"<html><body>{NAV}{FOOTER}</body></html>".encode())
            else:
                self._send(404, b"not found")

    return Handler


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients that hang up early (size caps, deadlines) are what these tests are about


@contextmanager
def running_origin() -> Iterator[Origin]:
    server = _Server(("127.0.0.1", 0), BaseHTTPRequestHandler)
    origin = Origin(port=server.server_address[1], _server=server)
    server.RequestHandlerClass = _handler(origin)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield origin
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


async def origin_resolver(host: str, port: int) -> list[str]:
    """*.test names resolve to 127.0.0.1 (the origin); nothing else resolves (no test touches DNS)."""
    if host.endswith(".test"):
        return ["127.0.0.1"]
    from atlas.errors import StageError

    raise StageError(f"cannot resolve {host!r} in tests", stage="fetch", host=host)
