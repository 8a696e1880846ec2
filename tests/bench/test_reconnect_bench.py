"""bench/reconnect.py (S5, mass reconnect) at a small scale: every socket cut at once
resumes exactly, and the only handshake errors are 503 + Retry-After. No timing is asserted."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.services import ROOT

pytestmark = pytest.mark.live


def test_mass_reconnect_resumes_every_socket_exactly_through_503_refusals(tmp_path):
    """40 sockets in 4 rooms, cut at once while messages flow, against a budget of 10
    handshakes a second (4 at once) so refusals happen: every socket reconnects with the real
    client, and delivers each seq of its room from its first join to the room's last exactly
    once; every failed handshake was a 503 with Retry-After, and some were."""
    out = tmp_path / "reconnect.json"
    result = subprocess.run(
        [sys.executable, "bench/reconnect.py", "--sockets", "40", "--rooms", "4", "--rate", "10",
         "--budget", "10", "--in-flight", "4", "--deadline", "600", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=400,
    )
    assert out.exists(), result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["resumed"] == 40, report
    assert report["lost"] == 0 and report["repeated"] == 0 and report["sockets_not_exact"] == 0, report
    assert report["handshake_errors_other"] == 0, report
    assert report["handshakes_refused_503"] > 0, report  # the budget was really exceeded
    assert report["messages_posted"] > 0 and report["error_events_other"] == 0, report
    assert report["ok"] is True
