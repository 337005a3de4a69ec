"""The redactor: secret values and secret-named fields never reach a log line, structlog's or the
standard library's (uvicorn, libraries), including exception text."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator

import pytest
import structlog

from atlas.logging import REDACTED, Redactor, configure_logging, get_logger


@pytest.fixture
def stderr(capsys: pytest.CaptureFixture[str]) -> Iterator[Callable[[], str]]:
    root = logging.getLogger()
    formatters = [(h, h.formatter) for h in root.handlers]
    yield lambda: capsys.readouterr().err
    for handler, formatter in formatters:
        handler.setFormatter(formatter)
    structlog.reset_defaults()


def test_values_are_removed_wherever_they_appear() -> None:
    r = Redactor(["hunter2-secret", "abc"])  # "abc" is too short to search for
    event = {
        "event": "login with hunter2-secret",
        "nested": {"list": ["x hunter2-secret y"]},
        "n": 3,
        "s": "abc",
    }
    assert r(None, "info", event) == {
        "event": f"login with {REDACTED}",
        "nested": {"list": [f"x {REDACTED} y"]},
        "n": 3,
        "s": "abc",
    }


@pytest.mark.parametrize(
    "key", ["password", "smtp_password", "api_key_pepper", "Authorization", "bearer_token"]
)
def test_secret_named_fields_are_masked_whatever_their_value(key: str) -> None:
    assert Redactor()(None, "info", {key: "anything", "url": "http://x"}) == {
        key: REDACTED,
        "url": "http://x",
    }


def test_configured_logging_redacts_structlog_and_stdlib_lines(
    stderr: Callable[[], str], caplog: pytest.LogCaptureFixture
) -> None:
    configure_logging("INFO", process="t", secrets=["s3cr3t-value"])
    get_logger("t").info("sending", url="https://hooks.example/s3cr3t-value", password="pw")
    try:
        raise RuntimeError("connect failed for s3cr3t-value")
    except RuntimeError:
        get_logger("t").exception("failed")
        logging.getLogger("uvicorn.error").exception("stdlib saw s3cr3t-value")
    out = stderr()
    assert "s3cr3t-value" not in out and '"pw"' not in out
    first = json.loads(out.splitlines()[0])
    assert (first["url"], first["password"]) == (f"https://hooks.example/{REDACTED}", REDACTED)
    assert f"connect failed for {REDACTED}" in out
    # Standard-library records go through the root logger's handlers (here pytest's), re-formatted.
    assert f"stdlib saw {REDACTED}" in caplog.text and "s3cr3t" not in caplog.text
