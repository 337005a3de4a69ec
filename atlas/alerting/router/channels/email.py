"""Email channel: smtplib with STARTTLS, implicit TLS or plain, `multipart/alternative` text + HTML.

Headers follow what mail systems expect of machine mail: `Auto-Submitted: auto-generated`
(RFC 3834: no auto-replies), a `Message-Id` derived from the notification (a resend after a
crash carries the same id, so clients show one message), and `In-Reply-To`/`References` to the
first message of the alert group, so a group's follow-ups and its resolution thread together.
SMTP 4xx and connection failures are transient; 5xx (and a refused login) are permanent.

Each sender thread keeps its SMTP session open between messages (connect, EHLO, STARTTLS and
login are most of the cost of one message; bench/router.py), and opens a new one when the server
has dropped it.
"""

from __future__ import annotations

import base64
import smtplib
import socket
import ssl
from collections.abc import Callable
from email.header import Header
from email.utils import formatdate
from types import SimpleNamespace
from typing import Any

from atlas.alerting.router.channels.base import (
    DeliveryError,
    Outgoing,
    PermanentDeliveryError,
    TransientDeliveryError,
)
from atlas.alerting.router.channels.deadline import DEADLINES, Watch, expired_error_message
from atlas.alerting.router.channels.perthread import PerThread
from atlas.alerting.router.render import Renderer


def _smtp_error(exc: Exception, watch: Watch) -> DeliveryError:
    if watch.expired:  # the deadline shut the socket: whatever the read or write then raised
        return TransientDeliveryError(expired_error_message(watch))
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        codes = [code for code, _ in exc.recipients.values()]
        cls = PermanentDeliveryError if codes and min(codes) >= 500 else TransientDeliveryError
        return cls(f"SMTP recipients refused: {exc.recipients}")
    if isinstance(exc, smtplib.SMTPConnectError):
        return TransientDeliveryError(f"SMTP connect: {exc.smtp_code} {exc.smtp_error!r}")
    if isinstance(exc, smtplib.SMTPResponseException):
        cls = PermanentDeliveryError if exc.smtp_code >= 500 else TransientDeliveryError
        text = (
            exc.smtp_error.decode("utf-8", "replace") if isinstance(exc.smtp_error, bytes) else exc.smtp_error
        )
        return cls(f"SMTP {exc.smtp_code}: {text}")
    if isinstance(exc, smtplib.SMTPNotSupportedError):
        return PermanentDeliveryError(f"SMTP: {exc}")
    if isinstance(exc, ssl.SSLCertVerificationError):
        return PermanentDeliveryError(f"TLS: {exc.verify_message}")
    return TransientDeliveryError(f"SMTP connection: {type(exc).__name__}: {exc}")


def _fold(name: str, value: str) -> str:
    """`name: value` as a header: ASCII folded at spaces before 78 columns (RFC 5322 2.2.3; a
    longer word stays whole, values are capped well under the 998 limit); anything else
    RFC 2047-encoded, which folds itself."""
    if not value.isascii():
        return f"{name}: " + Header(value, "utf-8", header_name=name).encode(linesep="\r\n")
    lines, line = [], f"{name}:"
    for i, word in enumerate(value.split(" ")):
        if i and word and len(line) + 1 + len(word) > 78:  # fold before a word, never first
            lines.append(line)
            line = " " + word
        else:
            line += " " + word
    return "\r\n".join([*lines, line])


def _part(subtype: str, text: str) -> str:
    body = base64.encodebytes(text.encode("utf-8")).decode("ascii").replace("\n", "\r\n")
    return (
        f'Content-Type: text/{subtype}; charset="utf-8"\r\nMIME-Version: 1.0\r\n'
        f"Content-Transfer-Encoding: base64\r\n\r\n{body}"
    )


class _Session(smtplib.SMTP):
    """An SMTP session that hands its socket to the attempt's deadline as soon as it has one:
    smtplib's constructor connects and then reads the greeting, which a relay may drip out."""

    def __init__(self, watch: Watch, *args: Any, **kwargs: Any) -> None:
        self._watch = watch
        super().__init__(*args, **kwargs)

    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        sock: socket.socket = super()._get_socket(host, port, timeout)  # type: ignore[misc]
        self._watch.target = SimpleNamespace(sock=sock)  # self.sock is set only after this returns
        return sock


class _TLSSession(_Session, smtplib.SMTP_SSL):
    pass


class EmailChannel:
    name = "email"

    def __init__(
        self,
        renderer: Renderer,
        *,
        host: str,
        port: int,
        sender: str,
        to: list[str],
        starttls: bool = True,
        tls: bool = False,
        username: str = "",
        password: str = "",
        timeout_seconds: float = 10.0,
        concurrency: int = 4,
        thread_root: Callable[[str, str], str] | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.renderer = renderer
        self.host, self.port = host, port
        self.sender, self.to = sender, to
        self.starttls, self.tls = starttls and not tls, tls
        self.username, self.password = username, password
        self.timeout = timeout_seconds
        self.concurrency = concurrency
        self.thread_root = thread_root
        self.ssl_context = ssl_context or ssl.create_default_context()
        self.domain = sender.rpartition("@")[2] or "localhost"
        self._sessions: PerThread[smtplib.SMTP] = PerThread()

    def build(self, out: Outgoing) -> bytes:
        """The message, `multipart/alternative` with a text and an HTML part, as it goes on the wire.

        Written here rather than by the email package's generator: flattening a compat32 message
        (a Header object and its folding per header, a random boundary checked with a freshly
        compiled regex) cost ~2 ms of the ~3.5 ms of CPU an email took, which made email the
        channel that fell behind in bench/router.py's burst (py-spy). The shape is the one that
        generator wrote: ASCII headers folded at spaces before 78 columns, RFC 2047 for anything
        else, base64 utf-8 parts."""
        n = out.notification
        message_id = f"<atlas-router.{out.dedupe_key[:32]}@{self.domain}>"
        headers = [
            ("Subject", " ".join(self.renderer.render("email_subject.txt.j2", n).split())),
            ("From", self.sender),
            ("To", ", ".join(self.to)),
            ("Date", formatdate(localtime=False)),
            ("Message-Id", message_id),
            ("Auto-Submitted", "auto-generated"),
            ("X-Atlas-Group-Key", " ".join(n.group_key.split())[:900]),
        ]
        root = self.thread_root(n.group_key, message_id) if self.thread_root else message_id
        if root != message_id:
            headers += [("In-Reply-To", root), ("References", root)]
        # The parts are base64, whose lines never start with "-": this boundary cannot occur in them.
        boundary = f"=_atlas_{out.dedupe_key[:32]}"
        lines = [f'Content-Type: multipart/alternative;\r\n boundary="{boundary}"', "MIME-Version: 1.0"]
        lines += [_fold(name, value) for name, value in headers]
        text = self.renderer.render("email_body.txt.j2", n)
        html = self.renderer.render("email_body.html.j2", n)
        parts = f"--{boundary}\r\n{_part('plain', text)}\r\n--{boundary}\r\n{_part('html', html)}\r\n"
        return ("\r\n".join(lines) + "\r\n\r\n" + parts + f"--{boundary}--\r\n").encode("ascii")

    def _connect(self, watch: Watch) -> smtplib.SMTP:
        # The TCP connection (and with `tls`, its handshake) is bounded by the socket timeout; from
        # the server's greeting on, the deadline can shut the session's socket (DEADLINES).
        if self.tls:
            smtp: smtplib.SMTP = _TLSSession(
                watch, self.host, self.port, timeout=self.timeout, context=self.ssl_context
            )
        else:
            smtp = _Session(watch, self.host, self.port, timeout=self.timeout)
        watch.target = smtp  # its socket from here on (STARTTLS replaces it)
        try:
            if watch.expired:
                raise TransientDeliveryError(expired_error_message(watch))
            smtp.ehlo()
            if self.starttls:
                smtp.starttls(context=self.ssl_context)
                smtp.ehlo()
            if self.username:
                smtp.login(self.username, self.password)
        except BaseException:
            smtp.close()
            raise
        return smtp

    def send(self, out: Outgoing) -> None:
        msg = self.build(out)
        with DEADLINES.watch(self.timeout) as watch:  # the whole attempt, not each socket operation
            self._attempt(msg, watch)
            if watch.expired:  # it ended just as its deadline came: its socket is shut now
                self._sessions.drop()

    def _attempt(self, msg: bytes, watch: Watch) -> None:
        smtp = self._sessions.current()
        if smtp is not None:
            watch.target = smtp
            try:
                smtp.sendmail(self.sender, self.to, msg)
                return
            except smtplib.SMTPServerDisconnected as exc:
                self._sessions.drop()  # the server closed the idle session: open a new one below
                if watch.expired:
                    raise TransientDeliveryError(expired_error_message(watch)) from exc
            except (smtplib.SMTPException, OSError) as exc:
                self._sessions.drop()
                raise _smtp_error(exc, watch) from exc
        try:
            self._sessions.keep(self._connect(watch)).sendmail(self.sender, self.to, msg)
        except (smtplib.SMTPException, OSError) as exc:
            self._sessions.drop()
            raise _smtp_error(exc, watch) from exc

    def close(self) -> None:
        for smtp in self._sessions.take_all():
            try:
                smtp.quit()
            except (smtplib.SMTPException, OSError):
                smtp.close()
