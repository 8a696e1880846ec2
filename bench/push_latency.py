"""Enqueue -> arrival latency of a Celery push, with a real worker, Redis and Daphne.

    .venv/bin/python bench/push_latency.py [--samples 200]

Starts its own Redis, Daphne and Celery worker on free ports with a throwaway SQLite
database, opens one WebSocket, then enqueues ``chat.tasks.announcement_deliver`` for one
announcement at a time and times its arrival at the socket (the real path: broker,
worker, database, channel layer, Daphne). Prints p50/p90/p99 and writes JSON to
bench/results/push_latency.json. The aim (issue 4): p50 under 20 ms on 2 cores.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "push_latency.json"))
    args = parser.parse_args()

    from tests import services

    tmp = Path(tempfile.mkdtemp(prefix="bench-push-"))
    redis = services.redis_service().start()
    url = f"redis://127.0.0.1:{redis.port}/0"
    env = services.app_env(
        REDIS_URL=url, CELERY_BROKER_URL=url, SQLITE_PATH=str(tmp / "db.sqlite3"), LOG_LEVEL="WARNING"
    )
    os.environ.update({k: env[k] for k in ("REDIS_URL", "CELERY_BROKER_URL", "SQLITE_PATH", "DJANGO_SETTINGS_MODULE")})
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from django.contrib.auth import get_user_model

    from chat import tasks
    from chat.models import Announcement
    from realtime.auth import ticket_issue

    user = get_user_model().objects.create_user("bench", password="x")
    far = django.utils.timezone.now() + django.utils.timezone.timedelta(days=1)
    ids = [Announcement.objects.create(body=f"probe {i}", room=None, send_at=far).pk for i in range(args.samples + 10)]

    daphne = services.daphne_service(env).start()
    worker = services.celery_worker_start(services.celery_worker_service(env, concurrency=1))
    try:
        latencies = asyncio.run(measure(daphne, ticket_issue(user=user), ids, args.samples, tasks.announcement_deliver))
    finally:
        worker.stop()
        daphne.stop()
        redis.stop()
    result = {
        "samples": len(latencies),
        "p50_ms": round(percentile(latencies, 50), 2),
        "p90_ms": round(percentile(latencies, 90), 2),
        "p99_ms": round(percentile(latencies, 99), 2),
        "mean_ms": round(statistics.fmean(latencies), 2),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
    }
    print(f"push latency, enqueue -> WebSocket arrival, {result['samples']} samples, 1 worker process:")
    print(f"  p50 {result['p50_ms']} ms   p90 {result['p90_ms']} ms   p99 {result['p99_ms']} ms   (aim: p50 < 20 ms)")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    return 0


async def measure(daphne, ticket: str, ids: list[int], samples: int, task) -> list[float]:
    from asgiref.sync import sync_to_async
    from websockets.asyncio.client import connect

    latencies = []
    async with connect(f"{daphne.ws_url}/ws/chat/?ticket={ticket}") as ws:
        await ws.recv()  # hello
        for n, announcement_id in enumerate(ids):
            t0 = time.perf_counter()
            await sync_to_async(task.delay)(announcement_id)
            while True:
                event = json.loads(await asyncio.wait_for(ws.recv(), 30))
                if event.get("type") == "announcement" and event.get("id") == announcement_id:
                    break
            if n >= len(ids) - samples:  # the first few warm the worker up
                latencies.append((time.perf_counter() - t0) * 1000)
    return latencies


if __name__ == "__main__":
    sys.exit(main())
