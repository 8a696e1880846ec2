"""realtime.accel: each patch of a third-party internal applies only on the releases it was written for.

Each case runs in a fresh process (the patches are process-wide), with the installed
versions of some distributions faked, and reports what is in force and what each target
now is: autobahn's masker factory, the project's WebSocket protocol, the routers of the
ASGI application, the consumers' ``as_asgi``. A patch that does not fit leaves its target
exactly as the library ships it, and the process logs one warning saying so.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from realtime import accel
from tests import services

ROOT = Path(__file__).resolve().parents[2]

PROBE = textwrap.dedent(
    """
    import importlib.metadata, json, logging, sys

    fake = json.loads(sys.argv[1])
    real_version = importlib.metadata.version
    importlib.metadata.version = lambda name: fake.get(name, real_version(name))

    warnings = []

    class Keep(logging.Handler):
        def emit(self, record):
            if record.levelno >= logging.WARNING and record.name == "realtime.accel":
                warnings.append(record.getMessage())

    logging.getLogger("realtime.accel").addHandler(Keep())

    from realtime import accel
    import realtime.asgi  # installs (the server's main() does the same first)
    from autobahn.websocket import protocol as autobahn_protocol
    from chat.consumers import ChatConsumer
    from realtime import server

    accel.install()  # a second call: nothing more, no second warning
    protocol = server.WebSocketProtocol
    print(json.dumps({
        "active": sorted(p.name for p in accel.PATCHES if accel.active(p.name)),
        "warnings": warnings,
        "xor_masker": autobahn_protocol.create_xor_masker is server.create_xor_masker,
        "on_message_end": protocol.onMessageEnd is protocol.lean_on_message_end,
        "handshake_release": protocol.onOpen is protocol.open_and_release_handshake,
        "factory_options": isinstance(protocol.__dict__.get("maxFramePayloadSize"), server._FromFactory),
        "routers": type(realtime.asgi.application).__module__,
        "as_asgi": ChatConsumer.as_asgi().__code__.co_qualname,
    }))
    """
)

EVERY = sorted(p.name for p in accel.PATCHES)


def _run(fake_versions: dict[str, str], **env: str) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(fake_versions)], cwd=ROOT, capture_output=True, text=True,
        timeout=120, env=services.app_env(**env),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_on_the_pinned_releases_every_patch_is_in_force_without_a_warning() -> None:
    """The installed releases are the pinned ones: all patches apply, and nothing is logged."""
    result = _run({})
    assert result["active"] == EVERY
    assert result["warnings"] == []
    assert result["xor_masker"] and result["on_message_end"] and result["handshake_release"]
    assert result["factory_options"]
    assert result["routers"] == "realtime.routing"
    assert result["as_asgi"] == "LayerlessConsumer.as_asgi.<locals>.app"


def test_another_autobahn_leaves_every_autobahn_patch_out_with_one_warning() -> None:
    """autobahn 27.1.0: the patches that lean on autobahn's internals stay out (its masker,
    onMessageEnd and option copies are autobahn's own); those on Daphne's and channels'
    alone still apply; one warning names each patch left out and the release it found."""
    result = _run({"autobahn": "27.1.0"})
    left_out = {"xor_masker", "on_message_end", "factory_options", "handshake_release", "direct_writes",
                "denial_response", "auto_ping", "timeout_checker"}
    assert result["active"] == sorted(set(EVERY) - left_out)
    assert not (result["xor_masker"] or result["on_message_end"] or result["handshake_release"])
    assert not result["factory_options"]
    assert result["routers"] == "realtime.routing"
    [warning] = result["warnings"]
    assert "autobahn 27.1.0" in warning
    assert all(name in warning for name in left_out)


@pytest.mark.parametrize("version", ["4.2.2", "4.3.0"])
def test_daphne_outside_its_range_keeps_its_own_queue_and_protocol(version: str) -> None:
    """Daphne older or newer than the range: its input queue and everything reading its
    internals stay stock; the autobahn-only patches and channels' still apply."""
    result = _run({"daphne": version})
    assert result["active"] == ["as_asgi", "on_message_end", "routers", "xor_masker"]
    assert f"daphne {version}" in result["warnings"][0] and len(result["warnings"]) == 1


def test_another_channels_serves_with_channels_routers_and_as_asgi() -> None:
    """channels 4.4.0: the application is channels' ProtocolTypeRouter and consumers use its as_asgi."""
    result = _run({"channels": "4.4.0"})
    assert "routers" not in result["active"] and "as_asgi" not in result["active"]
    assert result["routers"] == "channels.routing"
    assert result["as_asgi"] == "AsyncConsumer.as_asgi.<locals>.app"
    assert len(result["warnings"]) == 1


def test_realtime_accel_0_leaves_every_target_untouched() -> None:
    """REALTIME_ACCEL=0: nothing is in force and every target is the library's own, on the pinned releases."""
    result = _run({}, REALTIME_ACCEL="0")
    assert result["active"] == []
    assert not any(result[name] for name in ("xor_masker", "on_message_end", "handshake_release", "factory_options"))
    assert result["routers"] == "channels.routing"
    assert result["as_asgi"] == "AsyncConsumer.as_asgi.<locals>.app"
    [warning] = result["warnings"]
    assert "REALTIME_ACCEL=0" in warning


def test_every_patch_names_releases_that_are_installed_now() -> None:
    """Each range holds for the pinned release (else CI would run stock code and not notice)."""
    for patch in accel.PATCHES:
        assert accel.mismatches(patch) == [], patch.name


def test_a_patch_that_fails_to_apply_is_left_out_and_named_in_the_one_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """An internal missing despite a fitting version: that patch stays out, the others apply, one warning."""
    monkeypatch.setattr(accel, "PATCHES", (
        accel.Patch("broken", "an internal that is gone", (accel.DAPHNE,), "json:no_such_function"),
        accel.Patch("fine", "an internal that is there", (accel.DAPHNE,)),
    ))
    monkeypatch.setattr(accel, "_installed", False)
    monkeypatch.setattr(accel, "_active", frozenset())
    with caplog.at_level(logging.WARNING, logger="realtime.accel"):
        assert accel.install() == {"fine"}
        assert accel.install() == {"fine"}  # once per process
    [warning] = [r.getMessage() for r in caplog.records if r.name == "realtime.accel"]
    assert "broken" in warning and "applying it failed" in warning and "fine" not in warning
