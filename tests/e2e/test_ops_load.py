"""`atlas-ops test load` for real: a local stack (api and core processes), a load origin, a short
bounded run; and the lost-item verdict, with an acknowledged item deleted behind Atlas's back."""

from __future__ import annotations

import asyncio
import json
import sqlite3

from atlas.ops.loadtest import LoadConfig, LoadDriver
from atlas.ops.origin import LoadOrigin
from atlas.ops.teststack import LocalStack
from tests.conftest import atlas_env
from tests.helpers.opscli import atlas_ops

STACK = ("--stack-env", "ATLAS_WORKERS=1", "--stack-env", "ATLAS_DB_SYNCHRONOUS=NORMAL")


def test_load_against_a_local_stack_reports_every_figure(tmp_path) -> None:  # type: ignore[no-untyped-def]
    env = atlas_env(tmp_path / "unused")
    done = atlas_ops(
        env,
        "test", "load", "--duration", "3", "--concurrent", "4", "--batch", "2",
        "--max-requests", "40", "--drain-timeout", "120", *STACK, "--format", "json",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["passed"] and report["local_stack"]
    assert report["requests"] == report["accepted"] / 2 + report["shed"] + report["errors"]
    assert report["accepted"] > 0 and report["lost"] == 0 and report["backlog_at_end"] == 0
    assert sum(report["final"].values()) == report["accepted"]
    for figure in ("request_latency_seconds", "accept_to_done_seconds"):
        p = report[figure]
        assert 0 <= p["p50"] <= p["p95"] <= p["p99"], (figure, p)
    assert "accepted" in done.stderr  # the live progress line (stderr; stdout is the report)


def test_bad_options_exit_2_naming_the_option(tmp_path) -> None:  # type: ignore[no-untyped-def]
    env = atlas_env(tmp_path / "unused")
    done = atlas_ops(env, "test", "load", "--concurrent", "0")
    assert done.returncode == 2 and "--concurrent must be >= 1 (got 0)" in done.stderr
    done = atlas_ops(env, "test", "load", "--target", "http://127.0.0.1:9")
    assert done.returncode == 2 and "--api-key" in done.stderr
    done = atlas_ops(env, "test", "load", "--stack-env", "WORKERS")
    assert done.returncode == 2 and "--stack-env 'WORKERS'" in done.stderr


def test_an_acknowledged_item_that_disappears_fails_the_run() -> None:
    config = LoadConfig(duration_seconds=5, concurrent=2, max_requests=6, drain_seconds=60)
    with LocalStack({"ATLAS_WORKERS": "1"}) as stack, LoadOrigin() as origin:
        driver = LoadDriver(stack.url, stack.api_key, config, origin=origin)
        asyncio.run(driver.drive())
        assert driver.stats.accepted == 6
        # The fault: one acknowledged item removed from the real database behind Atlas's back.
        with sqlite3.connect(stack.settings.sqlite_path) as db:
            db.execute("DELETE FROM items WHERE id = ?", (driver.stats.ids[0],))
        report = driver.report(asyncio.run(driver.drain()), 1.0)
    assert report["lost"] == 1 and not report["passed"]
    assert report["problems"] == [f"1 acknowledged item(s) lost, e.g. {driver.stats.ids[0]}"]
