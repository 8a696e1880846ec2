"""The benchmarks run end to end (tiny sizes). They report timings; nothing here asserts one."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.services import ROOT


def test_push_latency_benchmark_runs_and_reports(tmp_path):
    """bench/push_latency.py starts its services, measures, prints p50/p99 and writes JSON."""
    out = tmp_path / "push.json"
    result = subprocess.run(
        [sys.executable, "bench/push_latency.py", "--samples", "5", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=180,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "p50" in result.stdout and "p99" in result.stdout
    data = json.loads(out.read_text())
    assert data["samples"] == 5 and data["p50_ms"] > 0


def test_encoding_size_report_runs():
    """bench/encoding_size.py reports JSON and MessagePack bytes for a typical conversation."""
    result = subprocess.run([sys.executable, "bench/encoding_size.py"], cwd=ROOT, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "MessagePack saves" in result.stdout


def test_soak_runs_and_checks_memory_loss_and_orphans(tmp_path):
    """bench/soak.py (tiny): sockets chat in rooms; it reports memory, errors, loss and orphaned presence."""
    out = tmp_path / "soak.json"
    result = subprocess.run(
        [sys.executable, "bench/soak.py", "--minutes", "0.15", "--sockets", "30", "--rooms", "5", "--rate", "20",
         "--warmup", "1", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=180,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    data = json.loads(out.read_text())
    assert data["loss"] == {"missing": 0, "duplicates": 0, "sockets_checked": 30}
    assert data["errors"] == 0 and data["orphaned_presence_entries"] == 0
