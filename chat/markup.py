"""A message body's Markdown, rendered once on the server and sanitised: the HTML browsers may insert.

The subset is what chat users type: **bold**, *italic*, ~~strikethrough~~, `inline code`,
fenced code blocks, block quotes, lists and links; bare URLs become links; ``@username``
is highlighted. Headings, images, tables, rules, indented code and raw HTML are not
formatting here: raw HTML shows as the text that was typed.

Two stages, each a maintained library:

1. markdown-it-py parses with its CommonMark core and only the rules above enabled,
   ``html=False`` (tags in the body become text) and linkify for bare URLs. Its link
   validation already refuses ``javascript:``, ``vbscript:``, ``file:`` and ``data:``.
2. nh3 (Ammonia) then cleans the output against an allow-list of tags, attributes, classes
   and URL schemes, and sets ``rel`` and ``target`` on every link: whatever the first stage
   let through by mistake, the second one is the boundary (tests/chat/test_markup.py).

The body stays the source of truth; the HTML is derived from it when the message is
written or edited and sent with it, so rendering costs once per message, not per delivery.
"""

from __future__ import annotations

import re
from functools import cache
from html import unescape

import nh3
from markdown_it import MarkdownIt
from markdown_it.common.utils import escapeHtml
from markdown_it.token import Token

# @username: highlighted here, and what chat.services.mentions_notify notifies (mentions_find).
MENTION_RE = re.compile(r"(?<![\w@])@([\w.@+-]{1,150})")

ALLOWED_TAGS = frozenset({
    "p", "br", "strong", "em", "s", "del", "code", "pre", "blockquote", "ul", "ol", "li", "a", "span",
})
LINK_REL = "nofollow noopener noreferrer"
URL_SCHEMES = frozenset({"http", "https", "mailto"})


@cache
def _parser() -> MarkdownIt:
    md = MarkdownIt("commonmark", {"html": False, "linkify": True, "breaks": True, "typographer": False})
    md.enable(["strikethrough", "linkify"])
    md.disable(["heading", "lheading", "hr", "image", "table", "code", "html_block", "html_inline", "reference"])
    md.core.ruler.after("linkify", "mentions", _mentions_rule)
    md.add_render_rule("mention", _render_mention)
    return md


@cache
def _cleaner() -> nh3.Cleaner:
    return nh3.Cleaner(
        tags=set(ALLOWED_TAGS),
        attributes={"a": {"href", "title"}, "ol": {"start"}},
        allowed_classes={"span": {"mention"}, "code": {f"language-{name}" for name in _CODE_LANGUAGES}},
        url_schemes=set(URL_SCHEMES),
        link_rel=LINK_REL,
        set_tag_attribute_values={"a": {"target": "_blank"}},
        strip_comments=True,
    )


# Fenced code's info string becomes ``class="language-X"``: only these names survive cleaning.
_CODE_LANGUAGES = (
    "bash", "c", "cpp", "css", "diff", "go", "html", "java", "javascript", "js", "json", "kotlin", "markdown",
    "php", "python", "py", "ruby", "rust", "sh", "shell", "sql", "swift", "text", "toml", "ts", "typescript",
    "xml", "yaml",
)


def _mentions_rule(state) -> None:
    """Wrap ``@name`` in text (not in code, not inside a link's text) in ``<span class="mention">``."""
    for block in state.tokens:
        if block.type != "inline" or not block.children:
            continue
        out: list[Token] = []
        in_link = 0
        for token in block.children:
            if token.type == "link_open":
                in_link += 1
            elif token.type == "link_close":
                in_link -= 1
            if token.type != "text" or in_link or "@" not in token.content:
                out.append(token)
                continue
            pos = 0
            for match in MENTION_RE.finditer(token.content):
                if match.start() > pos:
                    out.append(_text(token.content[pos:match.start()]))
                span = Token("mention", "span", 0)
                span.content = match.group(1)
                out.append(span)
                pos = match.end()
            if pos < len(token.content):
                out.append(_text(token.content[pos:]))
        block.children = out


def _text(content: str) -> Token:
    token = Token("text", "", 0)
    token.content = content
    return token


def _render_mention(self, tokens, idx, options, env) -> str:
    return f'<span class="mention">@{escapeHtml(tokens[idx].content)}</span>'


def mentions_find(body: str) -> set[str]:
    """The usernames ``body`` mentions (``@name``), wherever they stand."""
    return set(MENTION_RE.findall(body))


def html_text(html: str) -> str:
    """The text of rendered HTML (tags dropped, entities decoded), for excerpts shown as plain text."""
    return unescape(nh3.clean(html, tags=set(), clean_content_tags=set()))


#: The most rendered HTML a message may carry. A frame holds the body and its HTML and must
#: stay under the WebSocket message limit (WS_MAX_FRAME_BYTES, 64 KiB); a body crafted to
#: expand (hundreds of bare domains, each becoming a link) is shown as plain text instead.
MAX_HTML_BYTES = 32 * 1024


#: A body both stages would leave as it is, one paragraph: letters and digits (any script),
#: spaces between words, ``, ? ! '`` and a full stop before a space or at the end. Nothing
#: here starts a Markdown construct, a mention or a link (a bare domain needs a dot before a
#: letter), and nothing needs escaping. Most chat lines are like this; they skip both stages
#: (a quarter of a message's write path; tests/chat/test_markup.py compares the two on
#: generated bodies).
_PLAIN_RE = re.compile(r"[^\W\d_](?:[^\W_]|[ ,?!']|\.(?= |$))*")


def body_render(body: str) -> str:
    """The sanitised HTML of a message body (see the module docstring for the subset).

    Past :data:`MAX_HTML_BYTES` the body is rendered as escaped text, one paragraph.
    """
    if _PLAIN_RE.fullmatch(body) and not body.endswith(" "):
        return f"<p>{body}</p>"
    html = _cleaner().clean(_parser().render(body)).strip()
    if len(html.encode()) <= MAX_HTML_BYTES:
        return html
    return "<p>" + escapeHtml(body).replace("\n", "<br>") + "</p>"
