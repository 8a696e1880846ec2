"""WEB_CONCURRENCY=1 against WEB_CONCURRENCY=2: S2 and S3 of the fan-out benchmark, one after the other.

    .venv/bin/python bench/web_concurrency.py [--quick] [--members 10,100,1000] [--out FILE.json]

Runs ``bench/fanout/run.py --servers project,bare --scenarios S2,S3`` twice, the project
served by ``realtime.web`` with one and then two processes on one port (the bare server
runs in both, so each run has its own reference), and prints the ratios of the second to
the first: deliveries per second, p99 and server CPU per delivery.

On a 2-core machine the load client shares the cores with the server processes, so two
web processes cannot reach twice the throughput of one here; docs/performance.md says
what the ratio was and what it means with cores to spare.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RUN = ROOT / "bench" / "fanout" / "run.py"


def _figures(report: dict[str, Any]) -> dict[str, dict[str, float | None]]:
    """Per scenario row: the project's and the bare server's best step (p99 within the limit)."""
    rows: dict[str, dict[str, float | None]] = {}
    s2 = report.get("scenarios", {}).get("S2", {}).get("results", {})
    for members, lad in (s2.get("project") or {}).items():
        best = lad.get("best") or {}
        bare = ((s2.get("bare") or {}).get(members) or {}).get("best") or {}
        rows[f"S2 M={members}"] = _row(best, bare)
    s3 = report.get("scenarios", {}).get("S3", {}).get("results", {})
    if s3.get("project"):
        rows["S3"] = _row(s3["project"].get("best") or {}, (s3.get("bare") or {}).get("best") or {})
    return rows


def _row(best: dict[str, Any], bare: dict[str, Any]) -> dict[str, float | None]:
    return {
        "delivered_per_s": best.get("delivered_per_s"),
        "p99_ms": best.get("p99_ms"),
        "server_cpu_us_per_delivery": best.get("server_cpu_us_per_delivery"),
        "bare_delivered_per_s": bare.get("delivered_per_s"),
    }


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else round(a / b, 3)


def run(concurrency: int, *, quick: bool, out: Path, members: str | None = None) -> dict[str, Any]:
    """One fan-out run, the project on ``concurrency`` web processes; its JSON report."""
    args = [sys.executable, str(RUN), "--servers", "project,bare", "--scenarios", "S2,S3",
            "--project-env", f"WEB_CONCURRENCY={concurrency}", "--json", str(out)]
    if quick:
        args.append("--quick")
    if members:
        args += ["--members", members]
    print(f"==> WEB_CONCURRENCY={concurrency}: {' '.join(args[1:])}", flush=True)
    subprocess.run(args, cwd=ROOT, check=True)
    return json.loads(out.read_text())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (for the tests); the numbers mean little")
    parser.add_argument("--members", default=None, help="S2 room sizes, comma-separated (run.py's default: all three)")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "web_concurrency.json"))
    args = parser.parse_args()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    reports = {
        n: run(n, quick=args.quick, members=args.members, out=out.with_name(f"{out.stem}-{n}.json")) for n in (1, 2)
    }
    one, two = (_figures(reports[n]) for n in (1, 2))
    table = {}
    print("\nrow            metric                        1 process   2 processes   2/1")
    for row in one:
        table[row] = {}
        for metric in ("delivered_per_s", "p99_ms", "server_cpu_us_per_delivery", "bare_delivered_per_s"):
            a, b = one[row].get(metric), (two.get(row) or {}).get(metric)
            table[row][metric] = {"1": a, "2": b, "ratio": _ratio(b, a)}
            print(f"{row:<14} {metric:<29} {a!s:>10} {b!s:>13} {_ratio(b, a)!s:>6}")
    out.write_text(json.dumps({"quick": args.quick, "rows": table}, indent=2))
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
