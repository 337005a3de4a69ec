"""Extraction quality on a small corpus of realistic pages: main text kept, boilerplate dropped."""

from __future__ import annotations

import pytest

from atlas.errors import PermanentStageError
from atlas.pipeline.extract import decode, extract_page
from tests.helpers.origin import FOOTER, NAV, article_html

BLOG = """<!doctype html><html lang="de"><head><meta charset="utf-8">
<title>Sauerteig richtig füttern | Backblog</title>
<meta name="author" content="Karl Bäcker"></head><body>
<div id="cookie-banner">Wir verwenden Cookies, um Ihr Erlebnis zu verbessern.
<button>Akzeptieren</button></div>
<header><a href="/">Backblog</a>
<nav><a href="/rezepte">Rezepte</a> <a href="/kontakt">Kontakt</a></nav></header>
<div class="content"><article class="post">
<h1>Sauerteig richtig füttern</h1>
<p>Ein Sauerteig braucht regelmäßig frisches Mehl und Wasser, damit die Hefen und Milchsäurebakterien
aktiv bleiben. Wer ihn im Kühlschrank lagert, füttert ihn am besten einmal pro Woche.</p>
<p>Vor dem Backen wird der Ansatz zweimal bei Raumtemperatur aufgefrischt, bis er sich innerhalb von
vier bis sechs Stunden verdoppelt. Erst dann ist er triebstark genug für ein lockeres Brot.</p>
<p>Riecht der Teig nach Nagellack, hat er zu lange gehungert: dann hilft eine doppelte Fütterung.</p>
</article>
<div class="related"><h3>Das könnte Sie auch interessieren</h3><ul><li><a href="/a">Dinkelbrötchen</a></li>
<li><a href="/b">Roggenbrot in der Kastenform</a></li></ul></div></div>
<aside><h3>Newsletter</h3><p>Melden Sie sich jetzt an und erhalten Sie zehn Prozent Rabatt.</p></aside>
<footer>Impressum | Datenschutz | © 2026 Backblog</footer></body></html>"""

DOCS = """<html lang="en"><head><title>Configuring retries — Widget docs</title></head><body>
<div class="sidebar"><ul><li>Getting started</li><li>Installation</li><li>Configuring retries</li>
<li>API reference</li><li>Changelog</li></ul></div>
<div role="main" class="document"><h1>Configuring retries</h1>
<p>Widget retries a failed delivery with capped exponential backoff. The first retry waits two seconds;
each further retry doubles the wait until it reaches the cap of ten minutes.</p>
<p>Set <code>WIDGET_MAX_ATTEMPTS</code> to change how many attempts a delivery gets before it is moved to
the dead-letter queue, where an operator can inspect and replay it.</p>
<table><tr><th>Setting</th><th>Default</th></tr><tr><td>WIDGET_MAX_ATTEMPTS</td><td>6</td></tr></table>
</div>
<div class="footer">Built with a documentation generator. Last updated on 2026-01-05.
Edit this page on GitHub.</div>
</body></html>"""

CORPUS = [
    (
        "news",
        article_html("news.test", 4),
        ["Paragraph 1 of story 4", "Paragraph 4 of story 4", "within budget"],
        ["Subscribe to our newsletter", "All rights reserved", "Buy cheap watches", "Ten things to do"],
        "en",
    ),
    (
        "blog",
        BLOG,
        ["einmal pro Woche", "vier bis sechs Stunden", "doppelte Fütterung"],
        ["Wir verwenden Cookies", "zehn Prozent Rabatt", "Impressum", "Dinkelbrötchen"],
        "de",
    ),
    (
        "docs",
        DOCS,
        ["capped exponential backoff", "dead-letter queue"],
        ["Getting started", "Changelog", "Edit this page on GitHub"],
        "en",
    ),
]


@pytest.mark.parametrize(("name", "html", "kept", "dropped", "lang"), CORPUS, ids=[c[0] for c in CORPUS])
def test_main_text_is_kept_and_boilerplate_is_not(
    name: str, html: str, kept: list[str], dropped: list[str], lang: str
) -> None:
    page = extract_page(html, f"http://{name}.test/page")
    for phrase in kept:
        assert phrase in page.text, f"{name}: main text lost {phrase!r}"
    for phrase in dropped:
        assert phrase not in page.text, f"{name}: boilerplate kept {phrase!r}"
    assert page.title and page.language == lang


def test_news_metadata_is_extracted() -> None:
    page = extract_page(article_html("news.test", 4), "http://news.test/article/4?utm_source=x")
    assert page.title == "Story 4 about the library"
    assert page.author == "Jane Reporter"
    assert page.published == "2026-03-05"
    assert page.canonical_url == "http://news.test/article/4"


def test_charsets_wrong_or_missing_labels_are_detected() -> None:
    text = "<html><body><p>Der Ausschuß tagte im Café über die Straßenbahn.</p></body></html>"
    assert "Ausschuß" in decode(text.encode("cp1252"), "utf-8", "u")  # labelled wrongly
    assert "Straßenbahn" in decode(text.encode("utf-8"), None, "u")
    with pytest.raises(PermanentStageError, match="binary"):
        decode(bytes(range(256)), "utf-8", "u")


def test_a_page_without_main_text_is_a_recorded_failure_not_an_empty_document() -> None:
    with pytest.raises(PermanentStageError, match="no extractable main text"):
        extract_page(f"<html><body>{NAV}{FOOTER}</body></html>", "http://x.test/")
    with pytest.raises(PermanentStageError):
        extract_page("", "http://x.test/")
