"""search.query: user text becomes quoted FTS5 terms, and marks become balanced, escaped HTML."""

from __future__ import annotations

import pytest

from search.query import MARK_END, MARK_START, MAX_CHARS, QueryError, highlight_html, query_parse


@pytest.mark.parametrize(
    ("text", "fts5"),
    [
        ("hello world", '"hello" "world"'),
        ('say "hello world"', '"say" "hello world"'),
        ("NEAR(a b) OR c", '"NEAR(a" "b)" "OR" "c"'),
        ('he said "unbalanced', '"he" "said" """unbalanced"'),
        ("deploy*", '"deploy"*'),
        ("title:secret -x ^y", '"title:secret" "-x" "^y"'),
        ("( ) * - \"\"  hi", '"hi"'),
    ],
)
def test_operators_become_quoted_words(text, fts5):
    """Operators, quotes and parentheses are quoted as words; a trailing * stays a prefix."""
    assert query_parse(text).fts5() == fts5


@pytest.mark.parametrize("text", ["", "   ", "*", "( )", '""', "x" * (MAX_CHARS + 1), "a\x00b", "tab\x1bx",
                                  " ".join("w" * 3 for _ in range(20))])
def test_unsearchable_text_is_a_query_error(text):
    """Empty, wordless, too long, too many words or control characters: QueryError (the API's 400)."""
    with pytest.raises(QueryError):
        query_parse(text)


def test_highlight_escapes_text_and_stays_balanced():
    """Markup in a body arrives escaped; only the engine's marks become <mark>, always closed."""
    marked = f"<b>x</b> {MARK_START}deploy{MARK_END} & {MARK_START}now"
    assert highlight_html(marked) == "&lt;b&gt;x&lt;/b&gt; <mark>deploy</mark> &amp; <mark>now</mark>"
    assert highlight_html(f"{MARK_END}stray{MARK_START}") == "stray"
