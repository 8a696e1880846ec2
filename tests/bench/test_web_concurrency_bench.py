"""bench/web_concurrency.py runs end to end (tiny sizes) and reports; nothing here asserts a timing."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.services import ROOT


def test_web_concurrency_benchmark_runs_both_sizes_and_reports_ratios(tmp_path):
    """One and two web processes each run S2 and S3 beside the bare server; the 2/1 ratios are written."""
    out = tmp_path / "wc.json"
    result = subprocess.run(
        [sys.executable, "bench/web_concurrency.py", "--quick", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=420,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    rows = json.loads(out.read_text())["rows"]
    assert {"S3"} <= set(rows) and any(r.startswith("S2 M=") for r in rows)
    for row in rows.values():
        assert row["delivered_per_s"]["1"] and row["delivered_per_s"]["2"] and row["delivered_per_s"]["ratio"]
