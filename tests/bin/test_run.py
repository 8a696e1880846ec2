"""bin/run (``make run``): a first run prints no traceback, and Ctrl-C leaves no process behind.

bin/run is started as a terminal starts it: in a session of its own, with Ctrl-C sent as
SIGINT to its process group. It gets free ports for Daphne and its own Redis and a fresh
SQLite file, so the first run really migrates and creates the demo data (which once
broadcast before Redis was up, printing tracebacks). Every process it started, Redis and
the Celery worker's pool included, must be gone within 10 s of each of three Ctrl-Cs.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.services import ROOT, free_port

pytestmark = pytest.mark.live

STOP_SECONDS = 10
START_SECONDS = 90


def _descendants(root: int) -> set[int]:
    """``root`` and every live process below it (honcho's roles sit in sessions of their own)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry))
    found, todo = set(), [root]
    while todo:
        pid = todo.pop()
        found.add(pid)
        todo += children.get(pid, [])
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def _run_and_ctrl_c(env: dict[str, str], out: Path) -> tuple[str, float]:
    """Start bin/run, wait until the chat answers and the worker is ready, press Ctrl-C.

    Returns the output and how long the last of its processes took to go.
    """
    port = int(env["PORT"])
    with out.open("wb") as sink:
        proc = subprocess.Popen([sys.executable, "bin/run"], cwd=ROOT, env=env, stdout=sink,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + START_SECONDS
        while not ("celery@" in (text := out.read_text(errors="replace")) and " ready." in text
                   and _answers(f"http://127.0.0.1:{port}/accounts/login/")):
            assert proc.poll() is None, f"bin/run exited with {proc.returncode}:\n{text[-3000:]}"
            assert time.monotonic() < deadline, f"not up after {START_SECONDS} s:\n{text[-3000:]}"
            time.sleep(0.2)
        time.sleep(1)  # beat and the worker settle; a late traceback would land here
        pids = _descendants(proc.pid)
        assert len(pids) >= 6, f"bin/run, Redis, honcho's roles: {sorted(pids)}"
        pressed = time.monotonic()
        os.killpg(proc.pid, signal.SIGINT)
        while any(_alive(pid) for pid in pids) and time.monotonic() - pressed < STOP_SECONDS + 20:
            time.sleep(0.1)
        took = time.monotonic() - pressed
        left = {pid: Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")[:120]
                for pid in pids if _alive(pid)}
        assert not left, f"still running {took:.1f} s after Ctrl-C: {left}"
        proc.wait(5)
        return out.read_text(errors="replace"), took
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.mark.timeout(300)
def test_first_run_is_clean_and_ctrl_c_stops_everything_within_10_s_three_times(tmp_path: Path) -> None:
    """A fresh machine's first run prints no traceback; each of three Ctrl-Cs stops every
    process bin/run started within 10 s, the roles that use Redis before Redis itself."""
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "CELERY_BROKER_URL", "DATABASE_URL")}
    env.update(PORT=str(free_port()), REDIS_PORT=str(free_port()), SQLITE_PATH=str(tmp_path / "db.sqlite3"),
               DJANGO_SETTINGS_MODULE="realtime.settings", CELERY_CONCURRENCY="2")
    env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    for attempt in range(3):
        output, took = _run_and_ctrl_c(env, tmp_path / f"run-{attempt}.log")
        assert "Traceback" not in output, output[-4000:]
        assert "broadcast after commit failed" not in output, output[-4000:]
        if attempt == 0:
            assert "Created now: alice, bob, carol, admin." in output, "the first run creates the demo data"
        assert took < STOP_SECONDS, f"Ctrl-C took {took:.1f} s (run {attempt + 1})"
        assert output.rindex("worker stopped") < output.rindex("Redis stopped."), "Redis stops last"
