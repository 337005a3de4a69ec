"""PostgreSQL's search index's tsvector, made by Atlas instead of by the server (issue 18). Pure
Python (no driver): the engine's workers make it for the documents they settle (atlas.engine.handoff).

`contents.tsv` was a generated column, `to_tsvector('simple', ...)` of the title (weight A) and
the text (B). PostgreSQL's text search parser takes ~100 ns a character: 140-170 µs of the
server's CPU for a 1 KB document, five sixths of storing it and over half of all the server's
work per item in the engine benchmark. Here the store splits the words itself and sends the
tsvector in PostgreSQL's binary form, which the server reads for a few µs.

The words are what `atlas_tsvector(title, text)` (migration 0005) makes of a text, the server's
definition, used for rows written without a tsv: every run of letters and digits (Unicode,
`[[:alnum:]]`; underscores and everything else separate), lowercased, numbered from 1 in order
over the title then the text. The 'simple' configuration neither stems nor drops stop words. As
to_tsvector does, a word of 2,047 bytes or more is left out and takes no position, positions
stop at 16,383 and a word keeps at most 255 of them. A search's words are split the same way
(`tsquery`), so a query finds what the index holds. Splitting on every non-alphanumeric
character is also what SQLite's unicode61 tokenizer does, so both backends now find the same
documents for the same words (the server's own parser kept "foo-bar", e-mail addresses, URLs and
file paths as tokens of their own as well).
"""

from __future__ import annotations

import re
from array import array

WORD = re.compile(r"[^\W_]+")
MAX_WORD_BYTES = 2046  # to_tsvector leaves out a word of MAXSTRLEN (2,047) bytes or more
MAX_POSITION = 16383  # MAXENTRYPOS - 1
MAX_POSITIONS = 255  # MAXNUMPOS - 1 positions a word, as to_tsvector keeps
MAX_BYTES = (1 << 20) - 1  # MAXSTRPOS: the most a tsvector's words and positions may take
WEIGHT_A, WEIGHT_B = 3 << 14, 2 << 14


class TSVector(bytes):
    """A tsvector in PostgreSQL's binary form (tsvectorrecv's input; the PostgreSQL store's
    connections send it as such, atlas.store.postgres.connection)."""


def words(text: str) -> list[str]:
    """The words of `text` the index holds, in order."""
    return [w.decode() for w in _words(text)]


# ASCII text (most of it): a byte table splits it at C speed, where the regular expression took
# ~300 ns a word (60 µs of a 1 KB text; 7 µs this way). Every other byte is a separator.
_SEPARATE = bytes(c if chr(c).isalnum() else 0x20 for c in range(128)) + b" " * 128


def _words(text: str) -> list[bytes]:
    """The words of `text` in UTF-8, as the server's binary form carries them."""
    if text.isascii():
        found = text.lower().encode().translate(_SEPARATE).split()
    else:
        found = [w.encode() for w in WORD.findall(text.lower())]
    if found and max(map(len, found)) > MAX_WORD_BYTES:  # rare: a word too long to index
        return [w for w in found if len(w) <= MAX_WORD_BYTES]
    return found


def tsvector(title: str | None, text: str) -> TSVector:
    """The tsvector atlas_tsvector(title, text) makes, in binary: the title's words (A), then the
    text's (B) numbered on from the title's last position, as `||` joins them. Of the text as
    PostgreSQL stores it: without NUL characters, which its text cannot hold (the store drops
    them), so "a\\0b" is the one word "ab"."""
    if "\0" in text or (title and "\0" in title):
        title, text = title and title.replace("\0", ""), text.replace("\0", "")
    body = _positions(_words(text), WEIGHT_B)
    if not title:
        return _binary(body)
    head_words = _words(title)
    head = _positions(head_words, WEIGHT_A)
    last = min(len(head_words), MAX_POSITION)  # the title's highest position
    for word, pos in body.items():  # tsvector_concat: shift, then add after the title's own
        shifted = [WEIGHT_B | min((p & 0x3FFF) + last, MAX_POSITION) for p in pos]
        seen = head.get(word)
        if seen is None:
            head[word] = _upto(shifted, MAX_POSITIONS + 1, [])
        else:
            _upto(shifted, MAX_POSITIONS + 1, seen)
    return _binary(head)


def _positions(found: list[bytes], weight: int) -> dict[bytes, list[int]]:
    """{word: its positions (weight in the top bits)} as to_tsvector numbers one part: from 1,
    at most MAX_POSITIONS a word."""
    positions: dict[bytes, list[int]] = {}
    if len(found) > MAX_POSITION:  # rare: over 16,383 words, the last ones all at 16,383
        for i, word in enumerate(found, 1):
            _upto([weight | min(i, MAX_POSITION)], MAX_POSITIONS, positions.setdefault(word, []))
        return positions
    get = positions.get
    for pos, word in zip(range(weight | 1, weight | (len(found) + 1)), found, strict=True):
        known = get(word)
        if known is None:
            positions[word] = [pos]
        else:
            known.append(pos)
    for word, seen in positions.items():
        if len(seen) > MAX_POSITIONS:
            positions[word] = seen[:MAX_POSITIONS]
    return positions


def _upto(new: list[int], limit: int, seen: list[int]) -> list[int]:
    """Append `new` to `seen` while it holds fewer than `limit` and its last position is not
    the last there is (past it every word sits at it, once): to_tsvector's and `||`'s rules."""
    for pos in new:
        if len(seen) >= limit or (seen and seen[-1] & 0x3FFF == MAX_POSITION):
            break
        seen.append(pos)
    return seen


def _binary(positions: dict[bytes, list[int]]) -> TSVector:
    """int32 count, then per word: its UTF-8 bytes, NUL, uint16 count, uint16 positions (each
    with its weight in the top two bits), all big-endian; the server sorts the words."""
    out = [b""]
    size = 0
    for word, pos in positions.items():
        size += len(word) + 5 + 2 * len(pos)  # generous: the server aligns each word's data
        if size > MAX_BYTES:
            break  # a document of over a megabyte of distinct words: indexed as far as fits
        if len(pos) == 1:  # most words of a text
            out += (word, b"\0\0\1", pos[0].to_bytes(2, "big"))
        else:
            numbers = array("H", pos)
            numbers.insert(0, len(pos))
            numbers.byteswap()
            out += (word, b"\0", numbers.tobytes())
    out[0] = ((len(out) - 1) // 3).to_bytes(4, "big")
    return TSVector(b"".join(out))


def tsquery(query_words: list[str]) -> str | None:
    """A search's words as a tsquery (text form): every word must match; None without words."""
    found = [w for part in query_words for w in words(part)]
    return " & ".join(f"'{w}'" for w in found) or None
