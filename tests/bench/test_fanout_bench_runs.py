"""bench/fanout/run.py --quick runs end to end against all three servers. No timing is asserted."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.services import ROOT

pytestmark = pytest.mark.live

SERVERS = ("project", "stock", "bare")


def test_fanout_benchmark_quick_runs_and_reports(tmp_path):
    """The quick run starts its services, runs S0-S4 on project, stock and bare, prints the
    table with the ratios, and writes JSON holding every server's results and the ratio fields."""
    out = tmp_path / "fanout.json"
    result = subprocess.run(
        [sys.executable, "bench/fanout/run.py", "--quick", "--json", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=240,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    text = result.stdout
    for title in ("S0 idle", "S1 echo", "S2 fan-out", "S3 many rooms", "S4 connection storm"):
        assert title in text, text[-3000:]
    assert "proj/stock" in text and "proj/bare" in text
    assert "load client" in text  # the client-bottleneck check is stated

    data = json.loads(out.read_text())
    assert out.with_suffix(".md").exists()
    assert data["quick"] is True and data["machine"]["cpus"]
    assert set(data["servers"]) == set(SERVERS)
    sc = data["scenarios"]
    assert set(sc) == {"S0", "S1", "S2", "S3", "S4"}

    # Every scenario has results for all three servers, and ratios project/stock and project/bare.
    for name in ("S0", "S3", "S4"):
        assert set(SERVERS) <= set(sc[name]["results"]), name
    assert set(SERVERS) <= set(sc["S1"]["results"])
    assert set(SERVERS) <= set(sc["S2"]["results"])
    for name in ("S0", "S1", "S3", "S4"):
        for metric, pair in sc[name]["ratios"].items():
            assert set(pair) == {"project/stock", "project/bare"}, (name, metric)
    for members, metrics in sc["S2"]["ratios"].items():
        assert set(metrics["delivered_per_s"]) == {"project/stock", "project/bare"}, members

    # The fan-out ladders measured something, with latency percentiles from the scheduled send time.
    for server in SERVERS:
        for members, ladder in sc["S2"]["results"][server].items():
            assert ladder["steps"], (server, members)
            step = ladder["steps"][0]
            assert step["received"] > 0 and step["p99_ms"] is not None, (server, members, step)
            assert step["server_cpu_us_per_delivery"] is not None
        assert sc["S4"]["results"][server]["connected"] > 0

    # The project's deliveries carry their seq, and a rejoin with last_seq gets the missed ones back.
    for members, ladder in sc["S2"]["results"]["project"].items():
        assert all(s["seq_missing"] == 0 for s in ladder["steps"]), members
        resume = ladder["resume_check"]
        assert resume["got"] == resume["asked"] and resume["in_order_no_gaps"], resume

    assert "text" in data["load_client"] and "below_70pct" in data["load_client"]
    assert isinstance(data["targets"], list)
