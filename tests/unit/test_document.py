import asyncio
import random

import pytest

from atlas.errors import PermanentStageError
from atlas.pipeline import default_pipeline
from atlas.pipeline.base import ItemContext
from atlas.pipeline.document import content_hash, html_to_text, normalise_text


def run(payload: dict[str, str]) -> ItemContext:
    ctx = ItemContext(id="X", kind="document", payload=payload, attempt=1)

    async def go() -> None:
        for stage in default_pipeline().for_kind("document"):
            await stage.run(ctx)

    asyncio.run(go())
    return ctx


def test_normalisation_folds_whitespace_newlines_and_unicode_forms() -> None:
    assert normalise_text("  Cafe\u0301 \t  au\u00a0lait \r\n\r\n\r\n\r\nnext  ") == "Café au lait\n\nnext"


def test_every_space_str_split_knows_is_folded_whatever_path_a_line_takes() -> None:
    # normalise_text skips the split for a plain ASCII line already folded: it must fold exactly
    # as " ".join(line.split()) does, for every space (ASCII's \x1c-\x1f too) in every position.
    spaces = [chr(c) for c in range(0x3001) if chr(c).isspace() and chr(c) not in "\n\r"]
    alphabet = [" ", " ", "a", "b", "\x07", "\u200b", "é", *spaces]
    rnd = random.Random(18)
    for _ in range(20_000):
        line = "".join(rnd.choice(alphabet) for _ in range(rnd.randint(0, 8)))
        assert normalise_text(line) == " ".join(line.split()), repr(line)
    assert normalise_text("a\x1cb c") == "a b c" and normalise_text(" a b ") == "a b"


def test_equal_texts_after_normalisation_hash_equal() -> None:
    assert content_hash(normalise_text("a  b\r\n")) == content_hash(normalise_text("a b"))


def test_html_drops_scripts_and_styles_and_keeps_title() -> None:
    title, text = html_to_text(
        "<html><head><title>T &amp; U</title><style>x{}</style></head>"
        "<body><script>alert(1)</script><p>Hello <b>world</b></p><p>Two</p></body></html>"
    )
    assert title == "T & U"
    assert normalise_text(text) == "Hello world\n\nTwo"


def test_markdown_title_is_the_first_heading() -> None:
    ctx = run({"content": "intro\n# The Title\nbody", "content_type": "text/markdown"})
    assert ctx.title == "The Title"
    assert ctx.result is not None and ctx.result.content_hash == content_hash("intro\n# The Title\nbody")


def test_a_document_with_no_text_left_is_a_permanent_failure() -> None:
    with pytest.raises(PermanentStageError, match="no text left"):
        run({"content": "<script>only()</script>", "content_type": "text/html"})
