"""What a user's search text becomes for the engines, and what their marks become for the page.

User text is never handed to FTS5 as query syntax: each word or "quoted phrase" becomes
a quoted FTS5 string, so operators (AND, OR, NOT, NEAR, ``-``, ``^``, ``:``, parentheses)
are just words and nothing a user types can make the query fail. A trailing ``*`` keeps
its one meaning, a prefix. PostgreSQL gets the same terms,
term by term: ``phraseto_tsquery`` for a word or phrase (made for user input, it never
raises) and, for a prefix, one quoted lexeme with ``:*``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from html import escape

#: Longest search text accepted (a query is words, not a document).
MAX_CHARS = 256
#: Most terms searched together (each costs an index lookup).
MAX_TERMS = 16
#: Marks the engines put around each match; message bodies never contain C0 controls
#: (the protocol refuses them), and ``highlight_html`` stays balanced even if one did.
MARK_START, MARK_END = "\x02", "\x03"

_TERM_RE = re.compile(r'"([^"]*)"|(\S+)')
_WORD_RE = re.compile(r"\w")
_CONTROL_RE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


class QueryError(ValueError):
    """The search text cannot be searched (empty, too long, a NUL...): the API answers 400."""


@dataclass(frozen=True, slots=True)
class Term:
    """One thing to find: a word or a phrase, optionally a prefix (``foo*``)."""

    text: str
    prefix: bool = False

    def fts5(self) -> str:
        """This term as an FTS5 string: quoted, its quotes doubled, ``*`` outside the quotes."""
        return '"' + self.text.replace('"', '""') + '"' + ("*" if self.prefix else "")

    def tsquery_prefix(self) -> str:
        """This prefix term as ``to_tsquery`` text (PostgreSQL): one quoted lexeme, escaped, then ``:*``."""
        return "'" + self.text.replace("\\", "\\\\").replace("'", "''") + "':*"


@dataclass(frozen=True, slots=True)
class Query:
    """Cleaned search text and its terms (every term must match)."""

    text: str
    terms: tuple[Term, ...]

    def fts5(self) -> str:
        """An FTS5 MATCH expression that means exactly "all these terms" (an implicit AND)."""
        return " ".join(term.fts5() for term in self.terms)


def query_parse(text: str) -> Query:
    """The terms of ``text``; :class:`QueryError` for text that cannot be searched."""
    if len(text) > MAX_CHARS:
        raise QueryError(f"the search text is limited to {MAX_CHARS} characters")
    if _CONTROL_RE.search(text):
        raise QueryError("the search text contains control characters")
    terms: list[Term] = []
    for phrase, word in _TERM_RE.findall(text):
        raw = phrase or word
        prefix = not phrase and raw.endswith("*")
        raw = raw.rstrip("*") if prefix else raw
        if _WORD_RE.search(raw):  # "(", "-", "*" alone find nothing: leave them out
            terms.append(Term(raw, prefix))
    if not terms:
        raise QueryError("type a word to search for")
    if len(terms) > MAX_TERMS:
        raise QueryError(f"at most {MAX_TERMS} words at a time")
    return Query(text.strip(), tuple(terms))


def highlight_html(marked: str) -> str:
    """The engine's marked snippet as HTML: the text escaped, each match in ``<mark>``.

    Built from the marks, never from markup in the text, so it is always balanced and a
    body can add no element of its own.
    """
    out: list[str] = []
    inside = False
    for part in re.split(f"([{MARK_START}{MARK_END}])", marked):
        if part == MARK_START:
            inside = True
        elif part == MARK_END:
            inside = False
        elif part:
            out.append(f"<mark>{escape(part)}</mark>" if inside else escape(part))
    return "".join(out)
