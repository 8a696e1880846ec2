"""bench/capacity.py runs end to end (a few seconds each) and reports; nothing here asserts a timing."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.services import ROOT


def test_capacity_benchmark_measures_database_writes_and_one_redis_shard(tmp_path):
    """message_post per second on PostgreSQL and SQLite with 1 and 2 writers, and one Redis's pub/sub, are written."""
    out = tmp_path / "capacity.json"
    result = subprocess.run([sys.executable, "bench/capacity.py", "--quick", "--out", str(out)],
                            cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads(out.read_text())
    for engine in ("postgresql", "sqlite"):
        assert [run["writers"] for run in report["database"][engine]] == [1, 2]
        assert all(run["messages"] > 0 for run in report["database"][engine])
    assert report["redis"]["received"] == report["redis"]["messages"]
