from __future__ import annotations

import pytest

from atlas.pipeline.dedupe import canonical_url


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("HTTP://Example.COM:80/a?b=2&a=1#frag", "http://example.com/a?a=1&b=2"),
        ("https://example.com:443", "https://example.com/"),
        ("https://example.com:8443/x", "https://example.com:8443/x"),
        ("https://user:pw@example.com/x", "https://example.com/x"),
        (
            "https://example.com/x?utm_source=tw&utm_medium=social&id=7&fbclid=abc&gclid=1",
            "https://example.com/x?id=7",
        ),
        ("https://bücher.example/straße", "https://xn--bcher-kva.example/straße"),
        ("https://example.com./x", "https://example.com/x"),
    ],
)
def test_canonical_url(url: str, expected: str) -> None:
    assert canonical_url(url) == expected
