"""``manage.py protocol_docs [--check]``: regenerate the reference part of docs/protocol.md.

The message types, their fields, the error codes and the close codes are rendered from
``realtime.protocol`` between two markers; the prose around them is hand-written.
``--check`` exits 1 when the file is out of date (tests/realtime/test_protocol_docs.py).
"""

from __future__ import annotations

import json
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from realtime.protocol import CLOSE_CODE_DOCS, ERROR_CODE_DOCS, MessageSpec, registry

BEGIN = "<!-- BEGIN GENERATED: manage.py protocol_docs -->"
END = "<!-- END GENERATED -->"
DOC = Path(settings.BASE_DIR) / "docs" / "protocol.md"


def _spec_md(spec: MessageSpec) -> list[str]:
    lines = [f"#### `{spec.type}`", "", spec.doc, ""]
    if spec.fields:
        lines += ["| field | required | meaning |", "|---|---|---|"]
        for f in spec.fields:
            lines.append(f"| `{f.name}` | {'yes' if f.required else 'no'} | {f.doc or f.check.__doc__ or ''} |")
        lines.append("")
    if spec.rate_limited:
        lines += ["Counts against the per-user message rate limit.", ""]
    if spec.example:
        lines += ["```json", json.dumps(spec.example, ensure_ascii=False), "```", ""]
    return lines


def render() -> str:
    """The generated reference, markers included."""
    out = [BEGIN, "", "### Client messages", ""]
    for spec in registry.client.values():
        out += _spec_md(spec)
    out += ["### Server events", ""]
    for spec in registry.server.values():
        out += _spec_md(spec)
    out += ["### Error codes", "", "| code | meaning |", "|---|---|"]
    out += [f"| `{code}` | {text} |" for code, text in ERROR_CODE_DOCS.items()]
    out += ["", "### Close codes", "", "| code | meaning |", "|---|---|"]
    out += [f"| {code} | {text} |" for code, text in CLOSE_CODE_DOCS.items()]
    out += ["", END]
    return "\n".join(out)


def updated(text: str) -> str:
    """``text`` with its generated section replaced by a fresh rendering."""
    if BEGIN not in text or END not in text:
        raise CommandError(f"{DOC} lacks the generated-section markers")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return head + render() + tail


class Command(BaseCommand):
    help = "Regenerate the reference section of docs/protocol.md from realtime.protocol (--check: verify only)."

    def add_arguments(self, parser):
        parser.add_argument("--check", action="store_true", help="exit 1 if docs/protocol.md is out of date")

    def handle(self, *args, check: bool, **options):
        current = DOC.read_text()
        fresh = updated(current)
        if check:
            if fresh != current:
                raise CommandError("docs/protocol.md is out of date: run `manage.py protocol_docs`")
            self.stdout.write("docs/protocol.md is up to date.")
            return
        DOC.write_text(fresh)
        self.stdout.write(f"Wrote {DOC}.")
