"""bench/search.py runs end to end at a small scale and reports p50 and p99 per query kind (no timing asserted)."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.services import ROOT


def test_search_benchmark_runs_and_reports(tmp_path):
    """A few thousand messages: built, indexed, searched; the table and the JSON name every kind."""
    out = tmp_path / "search.json"
    result = subprocess.run(
        [sys.executable, "bench/search.py", "--messages", "3000", "--repeat", "3", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=180,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "p50" in result.stdout and "p99" in result.stdout
    data = json.loads(out.read_text())
    assert data["messages"] == 3000 and data["all"]["samples"] == 9 * 3
    assert data["kinds"]["common word"]["mean_hits"] == 20  # the readable rooms do hold common words
    assert data["kinds"]["no hit"]["mean_hits"] == 0
