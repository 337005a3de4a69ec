"""A delivery attempt is bounded by its timeout as a whole (atlas.alerting.router.channels.deadline),
not per socket operation: a receiver (webhook, Slack, SMTP relay) that keeps answering a byte at a
time, each well within the socket timeout, no longer holds a sender for as long as it likes."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from atlas.alerting.router.channels.base import Channel, Outgoing, TransientDeliveryError
from atlas.alerting.router.channels.email import EmailChannel
from atlas.alerting.router.channels.slack import SlackChannel
from atlas.alerting.router.channels.webhook import WebhookChannel
from atlas.alerting.router.payload import parse_notification
from atlas.alerting.router.render import Renderer
from tests.conftest import ROOT
from tests.helpers.engine import wait_for
from tests.helpers.receivers import HttpReceiver
from tests.helpers.router import alert, payload

DRIP_SECONDS = 0.05  # a byte this often: far inside every socket timeout below
DRIP_BYTES = 400  # 20 s of dripping at most: the attempt's 0.5 s deadline must end it long before


class Dripper:
    """A TCP server on 127.0.0.1 that answers each connection with `greeting` at once (if any),
    then reads what the client sends (unless it `speaks_first`) and drips `answer` back a byte at
    a time."""

    def __init__(self, answer: bytes, greeting: bytes = b"", speaks_first: bool = False) -> None:
        self.answer, self.greeting, self.speaks_first = answer, greeting, speaks_first
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.stopped = threading.Event()
        self.dripped: list[int] = []  # bytes dripped per connection, when it ended
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while not self.stopped.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._drip, args=(conn,), daemon=True).start()

    def _drip(self, conn: socket.socket) -> None:
        sent = 0
        with conn:
            try:
                if self.greeting:
                    conn.sendall(self.greeting)
                if not self.speaks_first:
                    conn.recv(65536)  # the request, or the first command
                for byte in self.answer[:DRIP_BYTES]:
                    if self.stopped.wait(DRIP_SECONDS):
                        break
                    conn.sendall(bytes([byte]))
                    sent += 1
            except OSError:
                pass  # the client went away: what this test wants
        self.dripped.append(sent)

    def close(self) -> None:
        self.stopped.set()
        self.sock.close()


@pytest.fixture
def outgoing() -> Outgoing:
    return Outgoing(1, 1, "k1", parse_notification(payload("G", [alert("a1")])))


@pytest.fixture
def dripper(request: pytest.FixtureRequest) -> Iterator[Dripper]:
    d = Dripper(*request.param)
    yield d
    d.close()


# A status line and then headers without end: each byte arrives well within the socket timeout.
SLOW_HTTP = b"HTTP/1.1 200 OK\r\n" + b"X-Slow: " + b"a" * 1000


def fails_at_its_deadline(channel: Channel, dripper: Dripper, outgoing: Outgoing) -> None:
    """`channel`'s send (timeout 0.5 s) fails as timed out, and `dripper` was cut off mid-answer
    rather than let finish its 20 s (what the per-operation timeout allowed)."""
    try:
        with pytest.raises(TransientDeliveryError, match=r"timeout: the attempt took longer than 0.5 s"):
            channel.send(outgoing)
    finally:
        channel.close()
    wait_for(lambda: bool(dripper.dripped), 10, "the receiver to see the connection end")
    assert dripper.dripped[0] < DRIP_BYTES


@pytest.mark.parametrize("dripper", [(SLOW_HTTP,)], indirect=True)
def test_a_webhook_answering_a_byte_at_a_time_fails_the_attempt_at_its_timeout(
    dripper: Dripper, outgoing: Outgoing
) -> None:
    channel = WebhookChannel(f"http://127.0.0.1:{dripper.port}/hook", timeout_seconds=0.5)
    fails_at_its_deadline(channel, dripper, outgoing)


@pytest.mark.parametrize("dripper", [(SLOW_HTTP,)], indirect=True)
def test_a_slack_webhook_answering_a_byte_at_a_time_fails_the_attempt_at_its_timeout(
    dripper: Dripper, outgoing: Outgoing
) -> None:
    url = f"http://127.0.0.1:{dripper.port}/services/T/B/X"
    fails_at_its_deadline(
        SlackChannel(url, Renderer(ROOT / "config"), timeout_seconds=0.5), dripper, outgoing
    )


def test_after_a_timed_out_attempt_the_next_one_uses_a_new_connection(outgoing: Outgoing) -> None:
    hook = HttpReceiver(keep_alive=True)
    hook.script = ["hang", 200]
    channel = WebhookChannel(hook.url, timeout_seconds=0.5)
    try:
        with pytest.raises(TransientDeliveryError, match="timeout"):
            channel.send(outgoing)
        channel.send(outgoing)
    finally:
        channel.close()
        hook.close()
    assert [r.answered for r in hook.ok()] == [200]


# An SMTP server whose reply to EHLO arrives a byte at a time.
SLOW_SMTP = b"250-localhost\r\n" + b"250-" + b"X" * 1000


@pytest.mark.parametrize(
    "dripper",
    [
        (SLOW_SMTP, b"220 localhost ESMTP\r\n"),  # its reply to EHLO
        (b"220-" + b"X" * 1000, b"", True),  # its greeting, before any command
    ],
    indirect=True,
)
def test_an_smtp_relay_answering_a_byte_at_a_time_fails_the_attempt_at_its_timeout(
    dripper: Dripper, outgoing: Outgoing
) -> None:
    channel = EmailChannel(
        Renderer(ROOT / "config"),
        host="127.0.0.1",
        port=dripper.port,
        sender="atlas@example.org",
        to=["ops@example.org"],
        starttls=False,
        timeout_seconds=0.5,
    )
    fails_at_its_deadline(channel, dripper, outgoing)
