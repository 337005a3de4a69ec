"""The env-file parser: property-based round trips (quoting, comments, export, empty values, CRLF,
a BOM) and every syntax error naming file and line."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from atlas.config.envfile import parse_env, quote_env
from atlas.errors import ConfigError

keys = st.from_regex(r"ATLAS_[A-Z][A-Z0-9_]{0,20}", fullmatch=True)
# Values on one line: any printable text, including quotes, #, =, backslashes, spaces and unicode.
values = st.text(
    st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp"), blacklist_characters="\ufeff"), max_size=40
)


@st.composite
def files(draw: st.DrawFn) -> tuple[str, dict[str, str]]:
    expected = draw(st.dictionaries(keys, values, max_size=8))
    lines: list[str] = []
    for key, value in expected.items():
        if draw(st.booleans()):
            lines.append(draw(st.sampled_from(["", "# a comment", "   # indented comment", "#ATLAS_X=1"])))
        prefix = draw(st.sampled_from(["", "export ", "  "]))
        style = draw(st.sampled_from(["auto", "double", "single", "plain"]))
        if style == "single" and "'" not in value:
            written = f"'{value}'"
        elif style == "plain" and value == value.strip() and not value.startswith(("'", '"', "#")):
            written = value.replace(" #", "").replace("\t#", "")
            expected[key] = written
        elif style == "double":
            written = quote_env(value) if quote_env(value).startswith('"') else f'"{value}"'
        else:
            written = quote_env(value)
        sep = draw(st.sampled_from(["=", " = ", "= "]))
        comment = draw(st.sampled_from(["", "  # trailing"])) if written.startswith(("'", '"')) else ""
        lines.append(f"{prefix}{key}{sep}{written}{comment}")
    eol = draw(st.sampled_from(["\n", "\r\n"]))
    bom = draw(st.sampled_from(["", "\ufeff"]))
    return bom + eol.join(lines) + draw(st.sampled_from(["", eol])), expected


@given(files())
def test_what_is_written_is_read_back(case: tuple[str, dict[str, str]]) -> None:
    text, expected = case
    assert {e.key: e.value for e in parse_env(text, "x.env")} == expected


@given(st.dictionaries(keys, values, max_size=6))
def test_quote_env_round_trips_any_value(expected: dict[str, str]) -> None:
    text = "\n".join(f"{k}={quote_env(v)}" for k, v in expected.items())
    assert {e.key: e.value for e in parse_env(text, "x.env")} == expected


def test_line_numbers_count_comments_blank_lines_and_crlf() -> None:
    text = "\ufeff# head\r\n\r\nexport ATLAS_A=1\r\n  # note\r\nATLAS_B=\r\nATLAS_C='x # y'  # z\r\n"
    entries = parse_env(text, "x.env")
    assert [(e.key, e.value, e.line) for e in entries] == [
        ("ATLAS_A", "1", 3),
        ("ATLAS_B", "", 5),
        ("ATLAS_C", "x # y", 6),
    ]


def test_unquoted_values_end_at_a_comment() -> None:
    entries = parse_env("ATLAS_A=a b # comment\nATLAS_B= # nothing\nATLAS_C=a#b", "x.env")
    assert [e.value for e in entries] == ["a b", "", "a#b"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("ATLAS_A=1\nnot a line", "x.env:2: expected KEY=VALUE, got 'not a line'"),
        ("\n\n1ATLAS=2", "x.env:3: expected KEY=VALUE"),
        ('ATLAS_A="open', "x.env:1: ATLAS_A: the value's opening \" is never closed"),
        ("ATLAS_A='x' y", "x.env:1: ATLAS_A: unexpected text after the closing quote: 'y'"),
        ('ATLAS_A="\\q"', "x.env:1: ATLAS_A: unknown escape \\q"),
        ("ATLAS_A=1\n# c\nATLAS_A=2", "x.env:3: ATLAS_A: set twice (first at line 1)"),
    ],
)
def test_syntax_errors_name_file_and_line(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as exc:
        parse_env(text, "x.env")
    assert str(exc.value).startswith(message)
