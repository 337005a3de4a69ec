"""Switching the API's traffic between the blue-green ports with nginx.

nginx's site config includes one file that holds the API's upstream:

    upstream atlas_api {
        server 127.0.0.1:8001;
        keepalive 16;
    }

`switch()` writes the new upstream to a temporary file in the same directory, fsyncs it, renames
it over the include (atomic: nginx never reads half a file) and runs the reload command
(`nginx -s reload`). On reload nginx starts new workers with the new upstream; the old workers
finish the requests they hold and exit. `drain()` waits for the workers that ran before the
reload to be gone, so the old color is stopped only once nothing can still send to it.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from atlas.errors import AtlasError

UPSTREAM_NAME = "atlas_api"
SERVER_LINE = re.compile(r"^\s*server\s+([\w.:\[\]-]+):(\d+)\s*;", re.M)


class NginxError(AtlasError):
    """The upstream could not be written or nginx not reloaded."""


@dataclass(frozen=True)
class Nginx:
    upstream_file: Path
    reload_command: str = "nginx -s reload"
    pid_file: Path | None = None  # the master's; lets drain() watch the old workers exit
    host: str = "127.0.0.1"

    def render(self, port: int) -> str:
        return (
            "# Written by atlas-ops deploy (blue-green): the API color serving traffic.\n"
            f"upstream {UPSTREAM_NAME} {{\n    server {self.host}:{port};\n    keepalive 16;\n}}\n"
        )

    def current_port(self) -> int | None:
        """The port the include sends traffic to now (None when there is no include yet)."""
        try:
            match = SERVER_LINE.search(self.upstream_file.read_text(encoding="utf-8"))
        except OSError:
            return None
        return int(match.group(2)) if match else None

    def write(self, port: int) -> None:
        path = self.upstream_file
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            with tmp.open("w", encoding="utf-8") as f:
                f.write(self.render(port))
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise NginxError(f"cannot write {path}: {exc}") from exc

    def reload(self) -> None:
        done = subprocess.run(
            shlex.split(self.reload_command), capture_output=True, text=True, timeout=60, check=False
        )
        if done.returncode != 0:
            raise NginxError(f"`{self.reload_command}` failed ({done.returncode}): {done.stderr.strip()}")

    def switch(self, port: int) -> set[int] | None:
        """Send traffic to `port`: atomic rewrite of the include, then reload. Returns the worker
        pids from before the reload (None without a readable pid file) for drain(). If the reload
        command fails the previous include is put back (nginx still runs the old config)."""
        previous = self.current_port()
        before = self.workers()
        self.write(port)
        try:
            self.reload()
        except NginxError:
            if previous is not None:
                self.write(previous)
            raise
        return before

    def drain(self, old: set[int] | None, timeout: float) -> bool:
        """Wait until the workers that ran before the reload (the only ones that may still send to
        the old color) have exited; True when they have, False after `timeout` (nginx did not
        replace them: the new config did not load, or a request is still running). Without the
        master's pid (old is None) it cannot tell: it waits `timeout` and says True."""
        if old is None:
            time.sleep(timeout)
            return True
        deadline = time.monotonic() + timeout
        while any(psutil.pid_exists(pid) for pid in old):
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.1)
        return True

    def workers(self) -> set[int] | None:
        """The master's worker pids now (None when the pid file cannot be read)."""
        if self.pid_file is None:
            return None
        try:
            master = psutil.Process(int(self.pid_file.read_text(encoding="ascii").strip()))
            return {c.pid for c in master.children()}
        except (OSError, ValueError, psutil.Error):
            return None
