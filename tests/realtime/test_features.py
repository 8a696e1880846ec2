"""The extension surface: features add types without editing the consumer, and cannot shadow the core."""

from __future__ import annotations

import pytest

from realtime import features
from realtime.protocol import MessageSpec, registry


def test_feature_modules_are_discovered_and_their_types_registered():
    """reactions and receipts declare their types in realtime_features.py; the registry has them."""
    for kind in ("react", "unreact", "read"):
        assert kind in registry.client
        assert features.handler_for(kind) is not None
    for event in ("reaction", "reactions", "read", "receipt", "receipts"):
        assert event in registry.server
    assert "js/features/reactions.js" in features.scripts()


@pytest.mark.parametrize("core", ["join", "message", "leave", "ping", "typing", "edit", "delete"])
def test_a_feature_cannot_shadow_a_core_type(core):
    """Declaring a handler for a core type raises at start-up, so the core behaviour cannot be replaced."""
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
