"""chat.markup: the Markdown subset renders, and nothing a sender types can become active HTML.

The allow-list is tested on its own (nh3's stage), and hostile bodies through the whole
renderer: every output may contain only allowed tags, attributes and URL schemes.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest

from chat.markup import ALLOWED_TAGS, LINK_REL, _cleaner, body_render, html_text, mentions_find


class _Audit(HTMLParser):
    """Every tag and attribute of an HTML fragment."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def audit(html: str) -> list[tuple[str, dict[str, str | None]]]:
    parser = _Audit()
    parser.feed(html)
    return parser.tags


def assert_inert(html: str) -> None:
    """Only allowed tags; no event handler, style or src; links only to http(s)/mailto, opening safely."""
    for tag, attrs in audit(html):
        assert tag in ALLOWED_TAGS, f"<{tag}> in {html!r}"
        for name, value in attrs.items():
            assert not name.startswith("on") and name not in {"style", "src", "srcdoc", "formaction"}, html
            if name == "href":
                assert re.match(r"(https?:|mailto:)", value or "", re.I), f"href {value!r}"
        if tag == "a":
            assert attrs.get("rel") == LINK_REL and attrs.get("target") == "_blank", html
        if tag == "span":
            assert attrs == {"class": "mention"}, html


@pytest.mark.parametrize(
    ("body", "html"),
    [
        ("**bold** *italic* ~~gone~~ `code`",
         "<p><strong>bold</strong> <em>italic</em> <s>gone</s> <code>code</code></p>"),
        ("> quoted", "<blockquote>\n<p>quoted</p>\n</blockquote>"),
        ("- a\n- b", "<ul>\n<li>a</li>\n<li>b</li>\n</ul>"),
        ("3. three\n4. four", '<ol start="3">\n<li>three</li>\n<li>four</li>\n</ol>'),
        ("```python\nprint('hi')\n```", '<pre><code class="language-python">print(\'hi\')\n</code></pre>'),
        ("first\nsecond", "<p>first<br>\nsecond</p>"),
        ("[docs](https://example.com/a)",
         f'<p><a href="https://example.com/a" target="_blank" rel="{LINK_REL}">docs</a></p>'),
        ("see https://example.com/x?a=1&b=2.",
         f'<p>see <a href="https://example.com/x?a=1&amp;b=2" target="_blank" rel="{LINK_REL}">'
         "https://example.com/x?a=1&amp;b=2</a>.</p>"),
        ("hi @alice and bob@example.com", '<p>hi <span class="mention">@alice</span> and '
         f'<a href="mailto:bob@example.com" target="_blank" rel="{LINK_REL}">bob@example.com</a></p>'),
    ],
)
def test_the_subset_renders(body, html):
    """Bold, italic, strikethrough, code, fences, quotes, lists, links, bare URLs and mentions render as expected."""
    assert body_render(body) == html
    assert_inert(html)


@pytest.mark.parametrize("body", ["# not a heading", "---", "![img](https://example.com/i.png)", "    indented",
                                  "| a | b |\n|---|---|\n| 1 | 2 |"])
def test_what_is_not_in_the_subset_stays_text(body):
    """Headings, rules, images, indented code and tables are not formatting in a chat message."""
    html = body_render(body)
    assert not {t for t, _ in audit(html)} & {"h1", "hr", "img", "table", "pre"}
    assert_inert(html)


def test_mentions_in_code_or_links_are_not_highlighted():
    """`@bob` in code and [@carol](…) keep their own markup; a plain @alice is highlighted."""
    html = body_render("@alice `@bob` [@carol](https://example.com)")
    assert html.count('class="mention"') == 1 and "<code>@bob</code>" in html
    assert mentions_find("@alice `@bob` x@y.z") == {"alice", "bob"}


HOSTILE = [
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
    "<svg onload=alert(1)>",
    "<a href=\"javascript:alert(1)\">x</a>",
    "[x](javascript:alert(1))",
    "[x](JaVaScRiPt:alert(1))",
    "[x](java\tscript:alert(1))",
    "[x](&#106;avascript:alert(1))",
    "[x](javascript&#58;alert(1))",
    "[x](vbscript:msgbox(1))",
    "[x](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)",
    "[x](file:///etc/passwd)",
    "<javascript:alert(1)>",
    "[x](https://ok.example \"title\" onmouseover=alert(1))",
    "[x](<https://a.example/\"onmouseover=\"alert(1)>)",
    "```\"><script>alert(1)</script>\ncode\n```",
    "```python onclick=alert(1)\nx\n```",
    "**<b onclick=alert(1)>bold</b>**",
    "<scr<script>ipt>alert(1)</scr</script>ipt>",
    "<iframe src=https://evil.example></iframe>",
    "<style>body{display:none}</style>",
    "<!-- comment --><form action=x><button formaction=javascript:alert(1)>",
    "@\"><img src=x onerror=alert(1)>",
    "[a](https://a.example)<img/src=x/onerror=alert(1)>",
    "\u202e<script>alert(1)</script>",
]


@pytest.mark.parametrize("body", HOSTILE)
def test_hostile_bodies_render_inert(body):
    """Raw HTML shows as text; javascript:, vbscript:, data: and file: never become links; no handler survives."""
    html = body_render(body)
    assert_inert(html)
    assert "<script" not in html.lower()  # as text it is escaped: &lt;script


@pytest.mark.parametrize(
    ("dirty", "clean"),
    [
        ('<a href="javascript:alert(1)">x</a>', f'<a target="_blank" rel="{LINK_REL}">x</a>'),
        ('<a href="https://a.example" onclick="x()">y</a>',
         f'<a href="https://a.example" target="_blank" rel="{LINK_REL}">y</a>'),
        ('<span class="mention evil">@a</span>', '<span class="mention">@a</span>'),
        ('<code class="language-python other">x</code>', '<code class="language-python">x</code>'),
        ("<img src=x onerror=alert(1)>", ""),
        ("<div><p>x</p></div>", "<p>x</p>"),
        ('<a href="data:text/html,x">d</a>', f'<a target="_blank" rel="{LINK_REL}">d</a>'),
    ],
)
def test_the_sanitiser_allow_list_on_its_own(dirty, clean):
    """nh3's stage alone: unknown tags, handlers, classes and schemes go; links get rel and target."""
    assert _cleaner().clean(dirty) == clean


def test_html_text_is_what_a_reader_sees_as_plain_text():
    """Excerpts drop formatting marks and tags, decode entities, and keep escaped markup as its text."""
    assert html_text(body_render("who has **the key**?")) == "who has the key?"
    assert html_text(body_render("<script>x</script> &amp; `a<b`")) == "<script>x</script> & a<b"


def test_a_body_crafted_to_expand_is_shown_as_text_within_the_frame_limit():
    """Hundreds of bare domains would each become a link and push a frame (body + html) past the
    WebSocket message limit: such a body renders as escaped text, small enough to send."""
    from chat.markup import MAX_HTML_BYTES

    body = ("a.io " * 800)[:4000]
    html = body_render(body)
    assert len(html.encode()) <= MAX_HTML_BYTES and "<a " not in html and "a.io" in html
    hostile = ("a.io " * 790) + "<script>alert(1)</script>"
    assert "<script>" not in body_render(hostile)
    assert "&lt;script&gt;" in body_render(hostile)
    # An ordinary formatted message is untouched.
    ordinary = body_render("**bold**, see a.io")
    assert "<strong>bold</strong>" in ordinary and "<a " in ordinary


def _both_stages(body: str) -> str:
    from chat.markup import _parser

    return _cleaner().clean(_parser().render(body)).strip()


def test_plain_bodies_skip_both_stages_with_the_same_html():
    """The plain-text shortcut gives exactly what markdown-it and nh3 give, for every
    generated body it takes (plain words, punctuation, any script's letters and digits, and
    near misses: list markers, domains, mentions, emphasis), and it takes ordinary lines."""
    import random

    from chat.markup import _PLAIN_RE

    rng = random.Random(18)
    letters = [chr(c) for c in range(0x20, 0x3000) if chr(c).isalnum()]
    alphabet = list("abcXYZ019 ,?!'.") + ["  ", ". ", "e.g", "1. ", "a.com", "@", "_", "*", "\u00e9", "\u4e2d"]
    taken = 0
    for _ in range(6_000):
        parts = [rng.choice(alphabet if rng.random() < 0.8 else letters) for _ in range(rng.randint(1, 24))]
        body = "".join(parts)
        if _PLAIN_RE.fullmatch(body) and not body.endswith(" "):
            taken += 1
            assert body_render(body) == _both_stages(body) == f"<p>{body}</p>", repr(body)
        else:
            assert body_render(body) == _both_stages(body), repr(body)
    assert taken > 300
    for line in ("see you tomorrow.", "ok, thanks!", "Are you there?", "it's done", "Grüße aus Köln", "好的"):
        assert _PLAIN_RE.fullmatch(line), line
    for line in ("1. first", "example.com", "hi @bob", "*bold*", "a_b", " indented", "e.g. this"):
        assert not _PLAIN_RE.fullmatch(line) or line.endswith(" "), line
