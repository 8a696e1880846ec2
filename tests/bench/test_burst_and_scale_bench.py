"""bench/fanout/run.py's S3B (many-rooms burst) and S6 (one machine's scale) run end to end at small scale.

No timing is asserted: only that each server was measured, every socket opened, the
project's burst and its one-room message reached everyone in seq order, and the report
carries the ratios and targets.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.services import ROOT

pytestmark = pytest.mark.live

SERVERS = ("project", "stock", "bare")


def test_burst_and_one_machine_scenarios_run_and_report(tmp_path):
    """S3B and S6 at quick sizes, on all three servers: deliveries counted, ratios and targets reported."""
    out = tmp_path / "fanout.json"
    result = subprocess.run(
        [sys.executable, "bench/fanout/run.py", "--quick", "--scenarios", "S3B,S6", "--budget", "150",
         "--json", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=400,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    for title in ("S3B many-rooms burst", "S6 one machine"):
        assert title in result.stdout, result.stdout[-3000:]
    data = json.loads(out.read_text())
    sc = data["scenarios"]
    assert set(sc) == {"S3B", "S6"}
    for name in ("S3B", "S6"):
        assert set(SERVERS) <= set(sc[name]["results"]), name
        for pair in sc[name]["ratios"].values():
            assert set(pair) == {"project/stock", "project/bare"}
    burst = sc["S3B"]["results"]["project"]
    assert burst["opened"] == burst["sockets"] and burst["sent"] == burst["sockets"]
    assert burst["received"] > 0 and burst["seq_missing"] == 0 and burst["seq_backwards"] == 0
    scale = sc["S6"]["results"]["project"]
    assert scale["opened"] == scale["sockets"] and scale["sources"] >= 2
    assert scale["received"] > 0 and scale["kib_per_idle_socket"] is not None
    assert data["config"]["s6_sockets"] == scale["sockets"]
    assert any(t["target"].startswith("S3B") for t in data["targets"])
    assert any(t["target"].startswith("S6") for t in data["targets"])
