"""pytest plugin for ``make conformance``: Daphne's and autobahn's own suites against the project's patches.

bin/conformance runs the test suites shipped in the pinned Daphne and autobahn sdists
with ``-p tests.conformance.plugin --conformance=daphne|autobahn``:

* **daphne**: every server Daphne's ``tests/`` start runs in a process forked by
  ``daphne.testing.DaphneProcess``, which first calls ``_reinstall_reactor``: that
  installs a new reactor and deletes ``daphne.server`` from ``sys.modules``, so a
  ``daphne.server.Server`` swapped before the fork is silently gone. The swap is made
  inside that call, after Daphne's own code: ``daphne.server`` and ``realtime.server`` are
  imported afresh on the new reactor, the patches of ``realtime.accel`` go onto the fresh
  classes, and ``daphne.server.Server`` becomes ``realtime.server.Server`` (with it, its
  ``WebSocketProtocol``, ``InputQueue`` and masker).
* **autobahn**: ``autobahn/websocket/test/`` runs with the project's XOR masker installed
  in autobahn's protocol module, as in the server.

Each process appends what ran to a record (one JSON line per event, one file per process,
in ``--conformance-record``). At the end the run fails unless the record shows the
project's code really ran: a project ``Server`` in every forked server process, on the
reactor installed after the fork, WebSocket sockets on the project's protocol, and client
frames unmasked by the project's masker.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

SERVER = "realtime.server.Server"
PROTOCOL = "realtime.server.WebSocketProtocol"

_state: dict[str, Any] = {}


# Daphne's harness waits 2 s for a forked server to listen, and a server that misses it is
# never stopped (the run then hangs at exit, joining it). On a busy shared machine a fork
# can take longer, stock or patched; waiting longer changes no test's verdict.
STARTUP_TIMEOUT = 30


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("realtime conformance")
    group.addoption("--conformance", choices=("daphne", "autobahn"), help="which upstream suite this run is")
    group.addoption("--conformance-record", default=None, help="directory for the record of what ran")
    group.addoption("--conformance-stock", action="store_true",
                    help="the same harness on stock code: no swap, no masker, no verdict (the baseline)")


def record(directory: Path, event: str, **fields: Any) -> None:
    """Append one event of this process to the record (a line per event, a file per process)."""
    line = json.dumps({"event": event, "pid": os.getpid(), **fields})
    with open(directory / f"{os.getpid()}.jsonl", "a") as fh:
        fh.write(line + "\n")


def read_record(directory: Path) -> list[dict[str, Any]]:
    """Every event of every process of the run."""
    events = []
    for path in sorted(directory.glob("*.jsonl")):
        events += [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return events


def _qualname(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _instrument(project: Any, directory: Path) -> None:
    """Record, in this process, the project's server running and its protocol and masker at work."""
    from autobahn.websocket import protocol as autobahn_protocol

    from realtime import accel

    server_run = project.Server.run

    def run(self: Any) -> None:
        daphne_server = sys.modules["daphne.server"]
        from twisted.internet import reactor

        record(
            directory, "server", cls=_qualname(type(self)),
            # Subclass of the daphne.server re-imported after the fork, on the reactor it installed.
            fresh=isinstance(self, daphne_server.Server) and daphne_server.reactor is reactor,
            patches=sorted(name for name in (p.name for p in accel.PATCHES) if accel.active(name)),
        )
        server_run(self)

    project.Server.run = run

    seen: set[str] = set()

    def once(event: str, **fields: Any) -> None:
        if event not in seen:
            seen.add(event)
            record(directory, event, **fields)

    on_open = project.WebSocketProtocol.onOpen

    def opened(self: Any) -> None:
        once("websocket", cls=_qualname(type(self)))
        on_open(self)

    project.WebSocketProtocol.onOpen = opened

    masker = autobahn_protocol.create_xor_masker

    def create_xor_masker(mask: bytes, length: int | None = None) -> Any:
        made = masker(mask, length)
        if isinstance(made, project.SmallFrameUnmasker):
            once("small_frame_unmasker")
        return made

    autobahn_protocol.create_xor_masker = create_xor_masker


def swap_after_reinstall(directory: Path) -> None:
    """Make every server ``daphne.testing`` forks the project's, after its reactor re-install."""
    import daphne.testing

    reinstall_reactor = daphne.testing._reinstall_reactor

    def reinstall_reactor_then_swap() -> None:
        reinstall_reactor()  # Daphne's own: a new reactor, daphne.server forgotten
        record(directory, "fork")
        daphne_server = importlib.import_module("daphne.server")  # again, on the new reactor
        sys.modules.pop("realtime.server", None)  # subclassed the forgotten module's Server
        project = importlib.import_module("realtime.server")
        from realtime import accel

        accel.reinstall()
        _instrument(project, directory)
        daphne_server.Server = project.Server  # DaphneProcess.run imports it from here next

    daphne.testing._reinstall_reactor = reinstall_reactor_then_swap


def install_masker(directory: Path) -> None:
    """autobahn's protocol module with the project's masker, as in the server (patch ``xor_masker``)."""
    from realtime import accel

    accel.install()
    project = importlib.import_module("realtime.server")
    from autobahn.websocket import protocol as autobahn_protocol

    if autobahn_protocol.create_xor_masker is not project.create_xor_masker:
        raise pytest.UsageError("the project's XOR masker is not installed in autobahn's protocol module")
    counts = _state["masks"] = {"small": 0, "autobahn": 0}

    def create_xor_masker(mask: bytes, length: int | None = None) -> Any:
        made = project.create_xor_masker(mask, length)
        counts["small" if isinstance(made, project.SmallFrameUnmasker) else "autobahn"] += 1
        return made

    autobahn_protocol.create_xor_masker = create_xor_masker


def _require_installed_package(name: str) -> None:
    """The suite must test the installed release (site-packages), not the sdist's source beside it."""
    module = importlib.import_module(name)
    where = Path(module.__file__).resolve()
    if not any(Path(p).resolve() in where.parents for p in sys.path if "site-packages" in p):
        raise pytest.UsageError(f"{name} was imported from {where}, not from the installed release")


def _harness_for_a_busy_machine() -> None:
    import daphne.testing

    daphne.testing.BaseDaphneTestingInstance.startup_timeout = STARTUP_TIMEOUT


def _import_accel() -> Any:
    """realtime.accel, undoing what importing ``realtime`` does to the environment: its Celery
    app sets DJANGO_SETTINGS_MODULE, and Daphne's tests configure settings of their own."""
    before = os.environ.get("DJANGO_SETTINGS_MODULE")
    from realtime import accel

    if before is None:
        os.environ.pop("DJANGO_SETTINGS_MODULE", None)
    return accel


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    suite = config.getoption("conformance")
    if suite is None:
        return
    directory = Path(config.getoption("conformance_record") or tempfile.mkdtemp(prefix="conformance-"))
    directory.mkdir(parents=True, exist_ok=True)
    _state["directory"] = directory
    _require_installed_package(suite)
    if suite == "daphne":
        _harness_for_a_busy_machine()
    if config.getoption("conformance_stock"):
        return
    accel = _import_accel()

    if accel.switched_off():
        raise pytest.UsageError(f"{accel.SWITCH}=0: there are no patches to check (bin/conformance --stock "
                                "runs the suites on stock code)")
    _state["suite"] = suite
    if suite == "daphne":
        swap_after_reinstall(directory)
    else:
        install_masker(directory)


def verdict(suite: str, events: list[dict[str, Any]], masks: dict[str, int] | None = None) -> tuple[list[str], str]:
    """(problems, summary) of a run's record: empty problems when the project's code really ran."""
    problems: list[str] = []
    if suite == "autobahn":
        masks = masks or {"small": 0, "autobahn": 0}
        if not masks["small"]:
            problems.append("autobahn's tests never unmasked a frame with the project's masker")
        return problems, (f"autobahn's frames unmasked by the project's masker: {masks['small']} "
                          f"(and {masks['autobahn']} large ones handed on to autobahn's)")
    forks = {e["pid"] for e in events if e["event"] == "fork"}
    servers = [e for e in events if e["event"] == "server"]
    ours = [e for e in servers if e["cls"] == SERVER and e["fresh"]]
    sockets = [e for e in events if e["event"] == "websocket"]
    if not ours:
        problems.append("no server of Daphne's tests was the project's Server")
    for e in servers:
        if e["cls"] != SERVER or not e["fresh"]:
            problems.append(f"process {e['pid']} ran {e['cls']} (fresh={e['fresh']})")
    for pid in sorted(forks - {e["pid"] for e in servers}):
        problems.append(f"process {pid} was forked for a server and ran no project Server")
    if not sockets or any(e["cls"] != PROTOCOL for e in sockets):
        problems.append(f"WebSockets were not served by {PROTOCOL}: {sockets[:3]}")
    if not any(e["event"] == "small_frame_unmasker" for e in events):
        problems.append("no client frame was unmasked by the project's masker")
    patches = sorted({p for e in ours for p in e["patches"]})
    return problems, (f"project Server in {len(ours)} of {len(forks)} forked server processes; "
                      f"WebSockets on {PROTOCOL} in {len(sockets)}; patches in force: {', '.join(patches)}")


def pytest_collection_finish(session: pytest.Session) -> None:
    """Freeze what the test process built, before Daphne's harness forks a server per test.

    ``realtime.server.Server.run`` collects and freezes what its process holds when it
    starts; in a fork of this process that is the whole test run (pytest, hypothesis,
    every test module), walked and copied page by page once per server. Frozen here, each
    fork's run still collects and freezes, over its own objects only.
    """
    if _state.get("suite") == "daphne":
        import gc

        gc.collect()
        gc.freeze()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if "suite" not in _state or hasattr(session.config, "workerinput"):
        return
    problems, summary = verdict(_state["suite"], read_record(_state["directory"]), _state.get("masks"))
    _state["verdict"] = (problems, summary)
    if problems and session.exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_unconfigure(config: pytest.Config) -> None:
    """Stop any server process a failed test left running, so the run ends instead of joining it."""
    import multiprocessing

    for child in multiprocessing.active_children():
        child.terminate()
        child.join(5)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if "directory" not in _state:
        return
    stats = terminalreporter.stats
    counts = {"passed": len(stats.get("passed", [])), "skipped": len(stats.get("skipped", [])),
              "failed": len(stats.get("failed", [])) + len(stats.get("error", []))}
    (_state["directory"] / "counts.json").write_text(json.dumps(counts))
    if "verdict" not in _state:
        return
    problems, summary = _state["verdict"]
    terminalreporter.section("realtime conformance")
    terminalreporter.write_line(summary)
    for problem in problems:
        terminalreporter.write_line(f"FAILED: {problem}", red=True)
