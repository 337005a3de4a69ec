"""Alert router: a burst of 1,000 distinct notifications through a real `atlas alert-router`.

Setup: the router process (synchronous=FULL outbox, the defaults but a fast retry) with all three
channels on: a webhook receiver in its own process speaking HTTP/1.1 keep-alive
(tests/helpers/webhook_sink.py), a Slack receiver (a small HTTP server on 127.0.0.1 in this process)
and an aiosmtpd SMTP server in its own process (tests/helpers/smtp_relay.py, like a local relay).
Receivers in this process competed with the clients for the GIL and queued the messages they timed.
16 client threads post the 1,000 notifications (distinct groups) as fast as the router accepts them.

Prints the accept rate, and p50/p99 from accept (the router's 200 arriving at the client) to
delivered (the message arriving at the webhook receiver / the end of DATA at the SMTP server),
both on the machine's monotonic clock. Slack is paced at one message a second per webhook URL, so
it cannot drain 1,000 messages in a benchmark: the figure is how many it sent during the run and
the most in any second. `--concurrency N` sets ATLAS_ROUTER_CONCURRENCY (default: the router's).
Goal (issue 12): p99 <= 1 s for webhook and email. Last line: JSON with "ratio" = 1 s / the worse
of the two p99s (>= 1 means the goal is met).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.helpers.engine import wait_for  # noqa: E402
from tests.helpers.net import free_port  # noqa: E402
from tests.helpers.receivers import HttpReceiver  # noqa: E402
from tests.helpers.router import AUTH, RouterProcess, alert, config_dir, payload  # noqa: E402
from tests.helpers.smtp_relay import SmtpRelayProcess  # noqa: E402
from tests.helpers.webhook_sink import WebhookSinkProcess  # noqa: E402

GOAL_SECONDS = 1.0


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--notifications", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--concurrency", type=int, help="ATLAS_ROUTER_CONCURRENCY (default: the router's)")
    args = parser.parse_args()
    n = args.notifications
    hook, slack, sink = WebhookSinkProcess(), HttpReceiver(), SmtpRelayProcess(free_port())
    hook.start()
    sink.start()
    with tempfile.TemporaryDirectory() as tmp:
        cfg = config_dir(Path(tmp), webhook_url=hook.url, slack_url=slack.url, smtp_port=sink.port)
        env = {"ATLAS_DB_SYNCHRONOUS": "FULL"}
        if args.concurrency:
            env["ATLAS_ROUTER_CONCURRENCY"] = str(args.concurrency)
        router = RouterProcess(Path(tmp), cfg, **env)
        router.start()
        accepted: dict[str, float] = {}
        bodies = [payload(f"Bench{i}", [alert(f"bench-{i}")]) for i in range(n)]
        try:
            with httpx.Client(headers=AUTH, timeout=30) as client:

                def post(body: dict[str, object]) -> None:
                    r = client.post(f"{router.base}/v1/alertmanager", json=body)
                    r.raise_for_status()
                    accepted[str(body["groupKey"])] = time.monotonic()

                started = time.monotonic()
                with ThreadPoolExecutor(args.clients) as pool:
                    list(pool.map(post, bodies))
                accept_seconds = time.monotonic() - started
            wait_for(lambda: hook.count() >= n and sink.count() >= n, 600, "every delivery")
            ended = time.monotonic()
        finally:
            router.stop()
            hook.stop()
            slack.close()
            sink.stop()
    webhook = [at - accepted[group] for at, group, _ in hook.arrivals]
    email = [at - accepted[group] for at, group in sink.arrivals]
    slack_times = [r.at for r in slack.ok()]
    per_second = max((sum(1 for t in slack_times if s <= t < s + 1) for s in slack_times), default=0)
    figures = {
        "notifications": n,
        "accept_per_second": round(n / accept_seconds, 1),
        "webhook_p50_seconds": round(pct(webhook, 0.5), 4),
        "webhook_p99_seconds": round(pct(webhook, 0.99), 4),
        "email_p50_seconds": round(pct(email, 0.5), 4),
        "email_p99_seconds": round(pct(email, 0.99), 4),
        "webhook_duplicates": len(webhook) - len({key for _, _, key in hook.arrivals}),
        "slack_sent_during_run": len(slack_times),
        "slack_most_in_one_second": per_second,
        "run_seconds": round(ended - started, 2),
    }
    worst = max(figures["webhook_p99_seconds"], figures["email_p99_seconds"])
    figures["ratio"] = round(GOAL_SECONDS / worst, 3) if worst > 0 else None
    for k, v in figures.items():
        print(f"{k:28} {v}")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
