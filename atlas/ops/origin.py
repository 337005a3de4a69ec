"""A small HTTP origin on 127.0.0.1 for `atlas-ops test load|failover`: news pages to fetch.

The load and failover tests need URLs the engine really fetches, without the internet. This
server answers `/article/<run>/<n>` with a realistic article page (navigation, sidebar, comments
and footer around a main text unique to the run, n and Host), counts requests per Host, and
answers 500 to every Host in `failing` (how the failover test opens one host's circuit breaker).
One server stands for several hosts: `127.0.0.1` and `localhost` both reach it, and the engine
keeps one breaker per host name.
"""

from __future__ import annotations

import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title} | The Riverside Gazette</title>
<meta name="author" content="Jane Reporter"></head><body>
<nav class="menu"><ul><li><a href="/">Home</a></li><li><a href="/news">News</a></li>
<li><a href="/subscribe">Subscribe to our newsletter</a></li></ul></nav>
<aside class="sidebar"><h4>Most read</h4><ul><li><a href="/x">Ten things to do</a></li></ul></aside>
<main><article><h1>{title}</h1><p class="byline">By Jane Reporter</p>
{paragraphs}
</article></main>
<section class="comments"><p>Reader: thanks for sharing this!</p></section>
<footer><p>Copyright 2026 The Riverside Gazette.</p></footer></body></html>"""


def article_text(key: str, n: int, paragraphs: int = 4) -> str:
    """The main text of story `n` (unique to `key`): what extraction keeps from the page."""
    return "\n".join(
        f"Paragraph {p} of story {n} ({key}): the library committee met on Tuesday evening and heard "
        f"from residents who had waited {n + p} years for a decision on the reading room, which the "
        f"council now expects to open within budget by the end of next summer."
        for p in range(1, paragraphs + 1)
    )


def article_html(key: str, n: int) -> str:
    paragraphs = "".join(f"<p>{line}</p>\n" for line in article_text(key, n).splitlines())
    return _PAGE.format(title=f"Story {n} about the library", paragraphs=paragraphs)


class LoadOrigin:
    """Start with `start()`, stop with `close()` (or use it as a context manager)."""

    def __init__(self) -> None:
        self.hits: Counter[str] = Counter()  # requests by Host name (without the port)
        self.failing: set[str] = set()
        self.lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        assert self._server is not None, "origin not started"
        return int(self._server.server_address[1])

    def url(self, host: str, run: str, n: int) -> str:
        return f"http://{host}:{self.port}/article/{run}/{n}"

    def start(self) -> LoadOrigin:
        server = _Server(("127.0.0.1", 0), _handler(self))
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.1}, name="load-origin", daemon=True
        )
        self._thread.start()
        return self

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def __enter__(self) -> LoadOrigin:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a fetcher hanging up (a SIGKILLed engine) is not the origin's error


def _handler(origin: LoadOrigin) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _send(self, status: int, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            host = (self.headers.get("Host") or "").rsplit(":", 1)[0]
            with origin.lock:
                origin.hits[host] += 1
                broken = host in origin.failing
            parts = self.path.split("/")  # "", "article", run, n
            if broken:
                self._send(500, b"upstream broken")
            elif len(parts) == 4 and parts[1] == "article" and parts[3].isdigit():
                self._send(200, article_html(f"{host}/{parts[2]}", int(parts[3])).encode())
            else:
                self._send(404, b"not found")

    return Handler
