"""The deployment manager: put a prepared release (atlas/ops/releases.py) live, or take it back.

Both strategies first check the release's pending migrations are marked backward compatible,
refuse while `system check --health` says unhealthy, and take a backup (unless told not to).

- rolling: every running service restarts on the new release, one at a time, each gated: it must
  be ready (the API's /health/ready, the others' pid file) within the gate timeout and its health
  must not be `unhealthy`. The first failed gate restarts what changed on the previous release.
- blue-green: the API starts on the idle port from the new release and must pass /health/ready
  and a smoke ingest (an item posted and read back through it); the other running services roll
  as above; then nginx's upstream include is rewritten (temp file + rename) and nginx reloaded;
  once nginx's old workers are gone the old color is stopped. Any failure before the switch stops
  the new color and rolls the others back: traffic never moved.

State: <prefix>/deploy/<environment>.json (the live version, the API's port, each service's
release); every attempt is a JSON line in <prefix>/deploy/history.jsonl.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx

from atlas.errors import AtlasError, ConfigError
from atlas.ops import releases
from atlas.ops.nginx import Nginx
from atlas.ops.releases import Release
from atlas.ops.services import (
    ServiceError,
    ServiceManager,
    api_ready,
    health_verdict,
    names,
    wait_until,
)
from atlas.ops.services.systemd import Runner
from atlas.settings import Settings
from atlas.store import open_store

STRATEGIES = ("rolling", "blue-green")
COLORS = ("blue", "green")


class DeployError(AtlasError):
    """A deployment failed (and what changed was put back)."""


@dataclass
class Target:
    """Where and how to deploy: the install prefix, the environment's settings and process
    environment, the service backend, the blue-green ports and nginx."""

    prefix: Path
    environment: str
    settings: Settings
    env: dict[str, str]
    backend: str = "local"  # local | systemd
    ports: tuple[int, int] = (8000, 8001)
    nginx: Nginx | None = None
    gate_timeout: float = 60.0
    drain_timeout: float = 30.0
    by: str = ""
    log: Callable[[str], None] = field(default=lambda _line: None)
    # systemd: where <prefix>/current pointed before this deployment (what "previous" runs).
    original_current: Path | None = None
    # systemd: how systemctl is run (None: the real one); tests pass a recorder (no systemd here).
    systemctl: Runner | None = None

    @property
    def state_dir(self) -> Path:
        return self.prefix / "deploy"

    @property
    def state_file(self) -> Path:
        return self.state_dir / f"{self.environment}.json"

    @property
    def history_file(self) -> Path:
        return self.state_dir / "history.jsonl"


# -- state and history ------------------------------------------------------------------------------


def read_state(t: Target) -> dict[str, Any]:
    try:
        state: dict[str, Any] = json.loads(t.state_file.read_text(encoding="utf-8"))
        return state
    except (OSError, ValueError):
        return {}


def _write_state(t: Target, state: dict[str, Any]) -> None:
    t.state_dir.mkdir(parents=True, exist_ok=True)
    tmp = t.state_file.with_name(f".{t.state_file.name}.{os.getpid()}")
    tmp.write_text(json.dumps(state, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, t.state_file)


def record(t: Target, entry: dict[str, Any]) -> dict[str, Any]:
    t.state_dir.mkdir(parents=True, exist_ok=True)
    line = {"at": time.time(), "environment": t.environment, "by": t.by} | entry
    with t.history_file.open("a", encoding="utf-8") as f:  # one write per line: appends interleave whole
        f.write(json.dumps(line) + "\n")
    return line


def history(prefix: Path, environment: str | None = None) -> list[dict[str, Any]]:
    out = []
    try:
        lines = (prefix / "deploy" / "history.jsonl").read_text(encoding="utf-8").splitlines()
    except OSError:
        return []
    for line in lines:
        try:
            entry = json.loads(line)
        except ValueError:
            continue  # a line cut by a crash: the others still count
        if environment is None or entry.get("environment") == environment:
            out.append(entry)
    return out


def live_port(t: Target) -> int:
    """The API port serving traffic: nginx's include, else the recorded one, else the settings'."""
    port = t.nginx.current_port() if t.nginx is not None else None
    return port or int(read_state(t).get("api_port") or t.settings.api_port)


def color(t: Target, port: int) -> str:
    return COLORS[t.ports.index(port)] if port in t.ports else f"port {port}"


# -- processes on a release ------------------------------------------------------------------------


def manager(t: Target, release: Release | None, port: int) -> ServiceManager:
    """A service manager whose starts run `release` (None: the environment running atlas-ops) with
    the API on `port`. Stopping and status go by the record, whatever release a process runs.
    systemd: the units run <prefix>/current/bin/atlas, so a start runs whatever `current` points at
    then; call `runs_on` just before starting anything (building a manager changes nothing)."""
    settings = replace(t.settings, api_port=port)
    if t.backend == "systemd":
        from atlas.ops.services.systemd import SystemdManager

        if t.systemctl is not None:
            return SystemdManager(settings, run=t.systemctl)
        return SystemdManager(settings)
    from atlas.ops.services.local import LocalSupervisor

    # The release's own interpreter and code: nothing of this process's import path leaks in.
    env = {k: v for k, v in t.env.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env |= {"ATLAS_ENVIRONMENT": t.environment, "ATLAS_API_PORT": str(port)}
    python = str(release.python) if release is not None else sys.executable
    return LocalSupervisor(settings, env=env, python=python, start_timeout=t.gate_timeout)


def runs_on(t: Target, release: Release | None) -> None:
    """systemd: point <prefix>/current at `release` (None: where it pointed before this deployment)
    so the next unit (re)start runs it. The local supervisor picks the interpreter per start."""
    if t.backend != "systemd":
        return
    root = release.root if release is not None else t.original_current
    if root is not None:
        _point_current(t.prefix, root)


def _point_current(prefix: Path, root: Path) -> None:
    link = prefix / "current"
    tmp = prefix / f".current.{os.getpid()}"
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(root)
    os.replace(tmp, link)  # atomic: a unit starting now runs the old or the new release, never none


def gate(t: Target, mgr: ServiceManager, name: str, port: int, *, verb: str = "restart") -> None:
    """(Re)start `name` (`verb`: restart, or start for a stopped one) and check it: ready within
    the gate timeout (the manager's start waits), then its health is not `unhealthy`.
    Raises ServiceError."""
    status = mgr.start(name) if verb == "start" else mgr.restart(name)
    if status.state != "running":
        raise ServiceError(f"{name} is {status.state} after its {verb}: {status.message}")
    settings = replace(t.settings, api_port=port)
    if name == "api" and not wait_until(lambda: api_ready(settings, 1.0), t.gate_timeout, 0.2):
        raise ServiceError(
            f"api on port {settings.api_port}: /health/ready not 200 within {t.gate_timeout:g}s"
        )
    verdict = health_verdict(settings, name)
    if verdict == "unhealthy":
        raise ServiceError(f"{name}: health is unhealthy after its restart")


def running_services(t: Target, port: int) -> list[str]:
    """The running services in rolling order: the engine first (it serves no client, so a bad
    release is caught before anyone sees it), the API last."""
    mgr = manager(t, None, port)
    order = [n for n in names("all") if n != "api"] + ["api"]
    return [n for n in order if mgr.status(n).state == "running"]


def roll(t: Target, release: Release, previous: Release | None, services: list[str], port: int) -> None:
    """Restart `services` on `release` one at a time, each gated; on the first failure restart
    the ones changed (the failed one included) on `previous` and raise DeployError."""
    changed: list[str] = []
    for name in services:
        changed.append(name)
        t.log(f"restart {name} on {release.version}")
        try:
            runs_on(t, release)
            gate(t, manager(t, release, port), name, port)
        except ServiceError as exc:
            back = previous.version if previous else "the previous environment"
            t.log(f"gate failed: {exc}; rolling back {', '.join(reversed(changed))} to {back}")
            runs_on(t, previous)
            undo = manager(t, previous, port)
            for done in reversed(changed):
                try:
                    undo.restart(done)
                except ServiceError as again:
                    t.log(f"rollback of {done} failed too: {again}")
            raise DeployError(
                f"{name} failed its gate on {release.version}: {exc}; rolled back to {back}"
            ) from exc


# -- checks before anything changes ---------------------------------------------------------------


def preflight(t: Target, release: Release, *, backup: bool, check_migrations: bool = True) -> str | None:
    """Migrations marked compatible, health not unhealthy, then the backup; returns its path.
    Raises ConfigError (refused: bad release) or DeployError (refused: unhealthy, backup failed)."""
    if check_migrations:
        store = open_store(t.settings, migrate=False)
        try:
            schema = store.schema_version()
        finally:
            store.close()
        bad = releases.incompatible(releases.release_migrations(release), schema)
        if bad:
            raise ConfigError(
                f"release {release.version}: pending migration(s) {', '.join(bad)} not marked backward "
                "compatible (a `-- deploy: backward-compatible` line in the file's header); "
                "the previous release must keep working on the new schema during the deployment"
            )
    from atlas.ops.checks import health_report

    report = health_report(t.settings, manager(t, None, live_port(t)))
    if report["status"] == "unhealthy":
        bad_parts = [
            f"{c['name']}: {c['message']}" for c in report["components"] if c["status"] == "unhealthy"
        ]
        raise DeployError(f"system check --health is unhealthy ({'; '.join(bad_parts)}): not deploying")
    if not backup:
        return None
    from atlas.ops.backup import create_backup

    made = create_backup(t.settings)
    t.log(f"backup {made['path']}")
    return str(made["path"])


# -- the strategies --------------------------------------------------------------------------------


def deploy(
    t: Target, version: str, strategy: str, *, backup: bool = True, action: str = "deploy"
) -> dict[str, Any]:
    """Deploy `version`; returns the history entry. Raises ConfigError / DeployError after
    recording the refusal or failure."""
    if strategy not in STRATEGIES:
        raise ConfigError(f"--strategy: {strategy!r} is not one of {', '.join(STRATEGIES)}")
    release = releases.get(t.prefix, version)
    if strategy == "blue-green" and t.nginx is None:
        raise ConfigError(
            "--strategy blue-green needs nginx: set ATLAS_NGINX_UPSTREAM_FILE (or --nginx-upstream)"
        )
    link = t.prefix / "current"
    t.original_current = Path(os.readlink(link)) if link.is_symlink() else None
    state = read_state(t)
    previous = _release_or_none(t, state.get("version"))
    entry: dict[str, Any] = {
        "action": action,
        "version": version,
        "from_version": state.get("version"),
        "strategy": strategy,
        "backend": t.backend,
    }
    started = time.monotonic()
    try:
        entry["backup"] = preflight(t, release, backup=backup, check_migrations=action == "deploy")
    except (ConfigError, DeployError, AtlasError) as exc:
        record(t, entry | {"result": "refused", "message": str(exc)})
        raise
    port = live_port(t)
    try:
        if strategy == "rolling":
            roll(t, release, previous, running_services(t, port), port)
        else:
            port = blue_green(t, release, previous, port)
    except (DeployError, ServiceError, AtlasError) as exc:
        record(t, entry | {"result": "failed", "message": str(exc), "seconds": _since(started)})
        if isinstance(exc, DeployError):
            raise
        raise DeployError(str(exc)) from exc
    now = time.time()
    _write_state(
        t, {"version": version, "api_port": port, "deployed_at": now, "by": t.by, "strategy": strategy}
    )
    return record(
        t, entry | {"result": "ok", "api_port": port, "color": color(t, port), "seconds": _since(started)}
    )


def _since(started: float) -> float:
    return round(time.monotonic() - started, 2)


def _release_or_none(t: Target, version: object) -> Release | None:
    if not isinstance(version, str):
        return None
    try:
        return releases.get(t.prefix, version)
    except ConfigError:
        return None


def blue_green(t: Target, release: Release, previous: Release | None, live: int) -> int:
    """Returns the port now serving. Raises DeployError with traffic left where it was."""
    assert t.nginx is not None  # deploy() refuses blue-green without it
    idle = t.ports[1] if live == t.ports[0] else t.ports[0]
    new = manager(t, release, idle)
    others = [n for n in running_services(t, live) if n != "api"]
    t.log(f"start api on {idle} ({color(t, idle)}) from {release.version}")
    try:
        new.stop("api")  # a leftover of an earlier failed attempt
        runs_on(t, release)
        gate(t, new, "api", idle, verb="start")
        smoke(t, idle)
        roll(t, release, previous, others, live)
    except (ServiceError, DeployError, AtlasError) as exc:
        t.log(f"{exc}; stopping {color(t, idle)}, traffic stays on {live}")
        new.stop("api")
        runs_on(t, previous)  # systemd: a restart of the old color must not run the failed release
        raise DeployError(f"blue-green to {release.version} failed before the switch: {exc}") from exc
    t.log(f"switch traffic to {idle}")
    try:
        old_workers = t.nginx.switch(idle)
    except AtlasError as exc:
        new.stop("api")
        # The others run the new release already; `current` points at it (systemd) while the
        # recorded version stays the previous one: put them back, as after a failed drain.
        _roll_back_others(t, previous, others, live)
        raise DeployError(
            f"blue-green to {release.version}: nginx switch failed, traffic stays (the others "
            f"are back on the previous release): {exc}"
        ) from exc
    if not t.nginx.drain(old_workers, t.drain_timeout):
        # The old workers (old upstream) still run: stopping the old color could fail their requests.
        t.log(f"nginx's old workers still run after {t.drain_timeout:g}s; switching back to {live}")
        t.nginx.switch(live)
        new.stop("api")
        _roll_back_others(t, previous, others, live)
        raise DeployError(
            f"blue-green to {release.version}: nginx did not replace its workers within "
            f"{t.drain_timeout:g}s (see nginx's error log); traffic switched back to {live}"
        )
    manager(t, None, live).stop("api")  # SIGTERM: uvicorn finishes what it holds
    return idle


def _roll_back_others(t: Target, previous: Release | None, others: list[str], port: int) -> None:
    """After a failure past the others' rollout: restart them on `previous` (and point systemd's
    `current` back at it)."""
    runs_on(t, previous)
    undo = manager(t, previous, port)
    for name in reversed(others):
        undo.restart(name)


def smoke(t: Target, port: int) -> None:
    """Post one document through the new color with a key made for it, read it back, revoke the key."""
    from atlas.api.keys import create_key

    store = open_store(t.settings, migrate=False)
    try:
        key = create_key(store, t.settings.api_key_pepper, "atlas-ops deploy smoke", ["ingest", "read"])
        try:
            base = f"http://127.0.0.1:{port}"
            headers = {"Authorization": f"Bearer {key['key']}"}
            body = {
                "content": "atlas deploy smoke test",
                "content_type": "text/plain",
                "source": "atlas-deploy",
            }
            with httpx.Client(timeout=10.0, headers=headers) as client:
                r = client.post(f"{base}/v1/items", json=body)
                if r.status_code not in (200, 201, 202):
                    raise DeployError(f"smoke ingest through {port}: HTTP {r.status_code} {r.text[:200]}")
                got = client.get(f"{base}/v1/items/{r.json()['id']}")
                if got.status_code != 200:
                    raise DeployError(f"smoke read-back through {port}: HTTP {got.status_code}")
        except httpx.HTTPError as exc:
            raise DeployError(f"smoke ingest through {port}: {exc}") from exc
        finally:
            store.api_key_revoke(str(key["id"]))
    finally:
        store.close()


def rollback(t: Target, version: str, strategy: str | None, *, backup: bool = True) -> dict[str, Any]:
    """Deploy an earlier release again (its migrations are already applied, so none are checked)."""
    chosen = strategy or ("blue-green" if t.nginx is not None else "rolling")
    return deploy(t, version, chosen, backup=backup, action="rollback")


def status(t: Target, last: int = 10) -> dict[str, Any]:
    state = read_state(t)
    port = live_port(t)
    mgr = manager(t, None, port)
    services = {}
    for name in names("all"):
        s = mgr.status(name)
        services[name] = {"state": s.state, "health": s.health, "pid": s.pid}
    return {
        "environment": t.environment,
        "version": state.get("version"),
        "deployed_at": state.get("deployed_at"),
        "api_port": port,
        "color": color(t, port),
        "services": services,
        "history": history(t.prefix, t.environment)[-last:],
    }


def version_list(prefix: Path) -> list[dict[str, Any]]:
    """Every prepared release with the environments it is current in and when it was deployed."""
    current: dict[str, list[str]] = {}
    for f in sorted((prefix / "deploy").glob("*.json")) if (prefix / "deploy").is_dir() else []:
        try:
            v = json.loads(f.read_text(encoding="utf-8")).get("version")
        except (OSError, ValueError):
            continue
        current.setdefault(str(v), []).append(f.stem)
    deployed: dict[str, float] = {}
    for entry in history(prefix):
        if entry.get("result") == "ok":
            deployed[str(entry.get("version"))] = float(entry["at"])
    return [
        {
            "version": r.version,
            "built": r.meta.get("built"),
            "prepared_at": r.meta.get("prepared_at"),
            "current_in": current.get(r.version, []),
            "last_deployed_at": deployed.get(r.version),
            "path": str(r.root),
        }
        for r in releases.installed(prefix)
    ]
