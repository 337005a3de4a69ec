"""The email channel over STARTTLS with login, and over implicit TLS, against aiosmtpd with a
self-signed certificate made for the test (the channel trusts it as its CA)."""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from atlas.alerting.router.channels.base import Outgoing
from atlas.alerting.router.channels.email import EmailChannel
from atlas.alerting.router.payload import parse_notification
from atlas.alerting.router.render import Renderer
from tests.conftest import ROOT
from tests.helpers.net import free_port
from tests.helpers.receivers import SmtpSink
from tests.helpers.router import alert, payload

OUT = Outgoing(1, 1, "k" * 64, parse_notification(payload("G", [alert("f1")])))


@pytest.fixture
def cert(tmp_path: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


def _server_context(cert: tuple[Path, Path]) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(*cert)
    return ctx


class Login:
    """aiosmtpd authenticator accepting one user."""

    def __call__(self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> Any:
        from aiosmtpd.smtp import AuthResult, LoginPassword

        ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (
            b"atlas",
            b"s3cret",
        )
        return AuthResult(success=ok)


@pytest.fixture
def starttls_sink(cert: tuple[Path, Path]) -> Iterator[SmtpSink]:
    sink = SmtpSink(
        free_port(),
        tls_context=_server_context(cert),
        require_starttls=True,
        authenticator=Login(),
        auth_required=True,
    )
    sink.start()
    yield sink
    sink.stop()


def _channel(sink: SmtpSink, cert: tuple[Path, Path], **kw: Any) -> EmailChannel:
    return EmailChannel(
        Renderer(ROOT / "config"),
        host="127.0.0.1",
        port=sink.port,
        sender="atlas@example.org",
        to=["ops@example.org"],
        timeout_seconds=5,
        ssl_context=ssl.create_default_context(cafile=str(cert[0])),
        **kw,
    )


def test_starttls_with_login(starttls_sink: SmtpSink, cert: tuple[Path, Path]) -> None:
    channel = _channel(starttls_sink, cert, starttls=True, username="atlas", password="s3cret")
    channel.send(OUT)
    channel.send(OUT)  # the second message reuses the session
    channel.close()
    assert len(starttls_sink.messages) == 2
    assert starttls_sink.messages[0]["Subject"] == "[FIRING:1] AtlasDiskUsage (critical)"


def test_implicit_tls(cert: tuple[Path, Path]) -> None:
    sink = SmtpSink(free_port(), ssl_context=_server_context(cert))
    sink.start()
    try:
        channel = _channel(sink, cert, tls=True)
        channel.send(OUT)
        channel.close()
    finally:
        sink.stop()
    assert len(sink.messages) == 1
