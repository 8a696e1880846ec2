"""deploy/simulate_regions.py --quick: three regions behind delaying proxies, run for real.

The script starts its own Redis, three regional Daphne processes and the proxies, and
stops them; this test only runs it and reads its JSON. Timings on a shared 2-core machine
vary, so the only timing checks are sanity bounds that follow from the simulated delays
(a message cannot reach region B faster than the backbone's one-way delay).
"""

from __future__ import annotations

import json
import subprocess
import sys

from tests.services import ROOT


def test_simulated_regions_pick_the_nearest_deliver_across_regions_and_fail_over(tmp_path):
    out = tmp_path / "regions.json"
    run = subprocess.run(
        [sys.executable, "deploy/simulate_regions.py", "--quick", "--json", str(out), "--deadline", "200"],
        cwd=ROOT, capture_output=True, text=True, timeout=240,
    )
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    for section in ("(a) Edge choice", "(b) WebSocket handshake", "(c) Message arrival", "(d) Failover"):
        assert section in run.stdout
    result = json.loads(out.read_text())
    cfg = result["config"]
    assert result["ok"] is True

    # (a) The CDN's guess (DE -> region-b) is used at once; probing the health URLs picks A, 10 ms away.
    choice = result["edge_choice"]
    assert choice["preferred"] == "region-b" and choice["first_connect"] == "region-b"
    assert choice["chosen"] == "region-a"
    assert choice["picks"]["region-a"] * 2 > sum(choice["picks"].values()), choice["picks"]
    assert choice["stored"]["name"] == "region-a" and choice["stored"]["at"] > 0
    probes = choice["probe_median_ms"]
    assert probes["region-a"] < probes["region-b"] < probes["region-c"]

    # (b) A handshake costs at least the user's round trip to that region.
    hs = result["handshake_ms"]
    for name, rtt in cfg["user_rtt_ms"].items():
        assert hs[name]["upgrade_ms"] >= rtt * 0.9, (name, hs[name])
    assert hs["region-c"]["upgrade_ms"] > hs["region-a"]["upgrade_ms"]

    # (c) A message from A reaches every region, B and C no sooner than the backbone's one-way delay.
    delivery = result["delivery_ms"]
    for name in ("region-b", "region-c"):
        one_way = cfg["backbone_one_way_ms"][name]
        assert one_way < delivery["region-a"][name] < one_way + 5000, (name, delivery["region-a"])
    assert all(0 < ms < 10000 for row in delivery.values() for ms in row.values())

    # (d) The user's region dies: resumed on the next nearest (B) with last_seq, nothing lost.
    failover = result["failover"]
    assert failover["home"] == "region-a"
    assert failover["resumed_on"] == "region-b"
    assert failover["missing"] == []
    assert failover["shown"] == failover["messages"]
    assert failover["contiguous"] is True
    assert failover["last_seq"] == failover["expected_seqs"][1]
    assert failover["replayed_on_resume"] >= 1, "messages sent while the user was away came through the resume"
