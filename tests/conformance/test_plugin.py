"""tests/conformance/plugin.py: Daphne's own harness really serves with the project's server.

Daphne's ``DaphneTestingInstance`` forks a server process that re-imports
``daphne.server``: a swap made before the fork is undone there, which is why the plugin
swaps inside ``_reinstall_reactor``. Both are tried here with the installed Daphne's
harness, and the plugin's verdict is checked on records that must fail.
"""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import daphne.server
import daphne.testing
import pytest
from websockets.sync.client import connect

import realtime.server
from tests.conformance import plugin


class Probe(daphne.testing.DaphneTestingInstance):
    """Daphne's testing instance, noting which server class its forked process built."""

    directory: Path
    startup_timeout = plugin.STARTUP_TIMEOUT

    def __enter__(self) -> Probe:
        try:
            return super().__enter__()
        except BaseException:
            self.process.terminate()  # Daphne's harness would leave it running, and the run hanging
            raise

    def process_setup(self) -> None:
        server = multiprocessing.current_process().server
        plugin.record(self.directory, "setup", cls=f"{type(server).__module__}.{type(server).__qualname__}")


@pytest.fixture
def directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setattr(Probe, "directory", tmp_path, raising=False)
    monkeypatch.setattr(daphne.testing, "_reinstall_reactor", daphne.testing._reinstall_reactor)
    monkeypatch.setattr(daphne.server, "Server", daphne.server.Server)
    yield tmp_path


def _serve_one_socket(directory: Path) -> list[dict[str, Any]]:
    with Probe() as instance:
        instance.add_send_messages([{"type": "websocket.accept"}])
        with connect(f"ws://{instance.host}:{instance.port}/probe", open_timeout=10) as ws:
            ws.send("a small frame")
            time.sleep(0.5)
    return plugin.read_record(directory)


def test_a_swap_before_the_fork_is_undone_by_daphnes_harness(directory: Path) -> None:
    """daphne.server.Server replaced in the test process: the forked server is Daphne's own."""
    daphne.server.Server = realtime.server.Server
    events = _serve_one_socket(directory)
    assert [e["cls"] for e in events if e["event"] == "setup"] == ["daphne.server.Server"]
    problems, _ = plugin.verdict("daphne", events)
    assert "no server of Daphne's tests was the project's Server" in problems


def test_the_plugins_swap_serves_with_the_project_server_protocol_and_masker(directory: Path) -> None:
    """Swapped after the re-import: the project's Server runs on the new reactor, its protocol
    opens the socket and its masker unmasks the client's frame; the verdict finds nothing wrong."""
    plugin.swap_after_reinstall(directory)
    events = _serve_one_socket(directory)
    assert [e["cls"] for e in events if e["event"] == "setup"] == [plugin.SERVER]
    [server] = [e for e in events if e["event"] == "server"]
    assert server["fresh"] and "input_queue" in server["patches"]
    assert [e["cls"] for e in events if e["event"] == "websocket"] == [plugin.PROTOCOL]
    assert plugin.verdict("daphne", events)[0] == []


def test_the_verdict_fails_a_run_where_any_server_was_not_the_projects() -> None:
    """A fork with no project server, a stale class, or no masker use each fail the run."""
    good = [
        {"event": "fork", "pid": 1},
        {"event": "server", "pid": 1, "cls": plugin.SERVER, "fresh": True, "patches": ["xor_masker"]},
        {"event": "websocket", "pid": 1, "cls": plugin.PROTOCOL},
        {"event": "small_frame_unmasker", "pid": 1},
    ]
    assert plugin.verdict("daphne", good)[0] == []
    assert plugin.verdict("daphne", [*good, {"event": "fork", "pid": 2}])[0]
    stale = [*good[:1], {**good[1], "fresh": False}, *good[2:]]
    assert plugin.verdict("daphne", stale)[0]
    assert plugin.verdict("daphne", good[:3])[0]
    assert plugin.verdict("autobahn", [], {"small": 0, "autobahn": 3})[0]
    assert plugin.verdict("autobahn", [], {"small": 2, "autobahn": 0})[0] == []
