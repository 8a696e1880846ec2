"""docs/protocol.md is kept true: its reference section is what the protocol registry says."""

from pathlib import Path

from django.conf import settings
from django.core.management import call_command

from realtime.management.commands.protocol_docs import owner_note
from realtime.protocol import registry


def test_protocol_docs_match_the_code():
    """Every message type, field, error code and close code in the code is in the docs, as generated."""
    call_command("protocol_docs", "--check")


def test_every_type_says_which_feature_defines_it():
    """Each client type and server event of the core and of every app is listed with its owner (core or feature)."""
    text = (Path(settings.BASE_DIR) / "docs" / "protocol.md").read_text()
    owners = set()
    for spec in [*registry.client.values(), *registry.server.values()]:
        section = text.split(f"#### `{spec.type}`\n", 1)
        assert len(section) == 2, spec.type
        assert owner_note(spec) in section[1].split("####", 1)[0], spec.type
        owners.add(spec.owner)
    assert {"core", "chat", "reactions", "receipts"} <= owners
