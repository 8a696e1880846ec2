"""docs/protocol.md is kept true: its reference section is what realtime.protocol says."""

from django.core.management import call_command


def test_protocol_docs_match_the_code():
    """Every message type, field, error code and close code in the code is in the docs, as generated."""
    call_command("protocol_docs", "--check")
