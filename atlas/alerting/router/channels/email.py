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

import smtplib
import ssl
import threading
from collections.abc import Callable
from email.header import Header
from email.message import Message
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.utils import formatdate

from atlas.alerting.router.channels.base import (
    DeliveryError,
    Outgoing,
    PermanentDeliveryError,
    TransientDeliveryError,
)
from atlas.alerting.router.render import Renderer


def _smtp_error(exc: Exception) -> DeliveryError:
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


def _header(value: str) -> str:
    """ASCII as it is; anything else RFC 2047-encoded (compat32 would write raw UTF-8)."""
    return value if value.isascii() else Header(value, "utf-8").encode()


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
        self._local = threading.local()
        self._sessions: set[smtplib.SMTP] = set()
        self._sessions_lock = threading.Lock()

    def build(self, out: Outgoing) -> Message:
        """The message. Built with the email package's compat32 classes (MIMEMultipart, MIMEText)
        rather than EmailMessage: same headers and parts, but EmailMessage's header parsing and
        generator cost ~5 ms a message against ~1 ms, which made email the slowest channel in
        bench/router.py's burst (py-spy: most of the email senders' CPU)."""
        n = out.notification
        # A boundary of our own: left to the generator, it draws a random one and compiles a regex
        # to check it against the parts' text (~1 ms a message, uncached). The parts are base64
        # (utf-8 MIMEText), whose lines never start with "-", so this one cannot occur in them.
        msg = MIMEMultipart("alternative", boundary=f"=_atlas_{out.dedupe_key[:32]}")
        msg["Subject"] = _header(" ".join(self.renderer.render("email_subject.txt.j2", n).split()))
        msg["From"] = self.sender
        msg["To"] = ", ".join(self.to)
        msg["Date"] = formatdate(localtime=False)
        message_id = f"<atlas-router.{out.dedupe_key[:32]}@{self.domain}>"
        msg["Message-Id"] = message_id
        msg["Auto-Submitted"] = "auto-generated"
        msg["X-Atlas-Group-Key"] = _header(" ".join(n.group_key.split())[:900])
        root = self.thread_root(n.group_key, message_id) if self.thread_root else message_id
        if root != message_id:
            msg["In-Reply-To"] = root
            msg["References"] = root
        msg.attach(MIMEText(self.renderer.render("email_body.txt.j2", n), "plain", "utf-8"))
        msg.attach(MIMEText(self.renderer.render("email_body.html.j2", n), "html", "utf-8"))
        return msg

    def _connect(self) -> smtplib.SMTP:
        if self.tls:
            smtp: smtplib.SMTP = smtplib.SMTP_SSL(
                self.host, self.port, timeout=self.timeout, context=self.ssl_context
            )
        else:
            smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
        try:
            smtp.ehlo()
            if self.starttls:
                smtp.starttls(context=self.ssl_context)
                smtp.ehlo()
            if self.username:
                smtp.login(self.username, self.password)
        except BaseException:
            smtp.close()
            raise
        with self._sessions_lock:
            self._sessions.add(smtp)
        return smtp

    def _drop(self) -> None:
        smtp = getattr(self._local, "smtp", None)
        self._local.smtp = None
        if smtp is not None:
            with self._sessions_lock:
                self._sessions.discard(smtp)
            smtp.close()

    def send(self, out: Outgoing) -> None:
        msg = self.build(out)
        smtp = getattr(self._local, "smtp", None)
        if smtp is not None:
            try:
                smtp.send_message(msg)
                return
            except smtplib.SMTPServerDisconnected:
                self._drop()  # the server closed the idle session: open a new one below
            except (smtplib.SMTPException, OSError) as exc:
                self._drop()
                raise _smtp_error(exc) from exc
        try:
            self._local.smtp = self._connect()
            self._local.smtp.send_message(msg)
        except (smtplib.SMTPException, OSError) as exc:
            self._drop()
            raise _smtp_error(exc) from exc

    def close(self) -> None:
        with self._sessions_lock:
            sessions, self._sessions = self._sessions, set()
        for smtp in sessions:
            try:
                smtp.quit()
            except (smtplib.SMTPException, OSError):
                smtp.close()
