"""The extension surface: features add types without editing the consumer, and cannot shadow the core."""

from __future__ import annotations

import pytest

from realtime import features
from realtime.protocol import MessageSpec, ProtocolError, registry


def test_feature_modules_are_discovered_and_their_types_registered():
    """reactions and receipts declare their types in realtime_features.py; the registry has them."""
    for kind in ("react", "unreact", "read"):
        assert kind in registry.client
        assert features.handler_for(kind) is not None
    for event in ("reaction", "reactions", "read", "receipt", "receipts"):
        assert event in registry.server
    assert "js/features/reactions.js" in features.scripts()


@pytest.mark.parametrize("core", ["ping", "join", "message", "leave", "typing", "edit", "delete"])
def test_a_feature_cannot_shadow_a_core_or_chat_type(core):
    """Declaring a handler for the core's ``ping`` or the chat's types raises at start-up: nothing replaces them."""
    rogue = features.Feature(name="rogue")
    with pytest.raises(ValueError, match="already registered"):

        @rogue.handles(core)
        async def handler(ctx, payload):  # pragma: no cover - never registered
            raise AssertionError

    assert features.handler_for(core) is None


def test_a_feature_cannot_take_another_features_type_or_name():
    """Two features cannot both claim `react`, nor two declarations one name."""
    with pytest.raises(ValueError):
        registry.register(MessageSpec("react"))
    with pytest.raises(ValueError, match="already declared"):
        features.feature("reactions")


class _Socket:
    """A FeatureHost that is not a consumer: the context asks nothing else of it."""

    user = "someone"

    def __init__(self) -> None:
        self.sent: list[dict] = []

    def rooms_joined(self):
        return {"lobby": 3}

    def room_value(self, room):
        return {"lobby": "the lobby's model"}.get(room)

    async def send_event(self, event):
        self.sent.append(event)


async def test_the_context_uses_only_the_declared_host_interface():
    """Context reads rooms and per-room values through FeatureHost's methods, so any socket can host features."""
    host = _Socket()
    ctx = features.Context(host)
    assert ctx.user == "someone" and ctx.rooms == frozenset({"lobby"})
    assert ctx.joined_room("lobby") == "the lobby's model" and ctx.joined_room("other") is None
    ctx.require_joined("lobby")
    with pytest.raises(ProtocolError) as info:
        ctx.require_joined("other")
    assert info.value.code == "not_joined"
    await ctx.send({"type": "x"})
    assert host.sent == [{"type": "x"}]


async def test_a_declared_permission_runs_before_any_handler():
    """permit raises the permission's refusal, or `forbidden` when it returns False; True lets the frame through."""
    host = _Socket()
    await features.permit(host, "react", {"room": "lobby"})
    with pytest.raises(ProtocolError) as info:
        await features.permit(host, "react", {"room": "other"})
    assert info.value.code == "not_joined"
