"""The figures behind the capacity model in docs/deploy.md that the fan-out benchmark does not give.

    .venv/bin/python bench/capacity.py [--quick] [--out bench/results/capacity.json]

* **Database writes per second**: ``chat.services.message_post`` (membership check, seq,
  insert, commit, publish after commit) in a loop from 1 and 2 writer processes, each
  posting into rooms of its own, on PostgreSQL (a throwaway cluster with fsync and
  synchronous commit on, as in production) and on SQLite.
* **One Redis shard's pub/sub**: ``redis-benchmark`` publishing 400-byte messages to one
  channel with one subscriber (``redis-cli``) reading them (as each web process subscribes once per
  room), on a standalone Redis: what one shard of a Redis Cluster carries with sharded
  pub/sub.

Sockets per process, deliveries per second per process and the cost of a join come from
``bench/fanout/run.py`` (docs/performance.md). Like every benchmark here, the numbers are
this machine's, measured beside each other; docs/deploy.md says how they scale.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests import services  # noqa: E402

WRITER = textwrap.dedent(
    """
    import sys, time, django
    django.setup()
    from django.contrib.auth import get_user_model
    from chat import services
    from chat.models import Room
    index, seconds = int(sys.argv[1]), float(sys.argv[2])
    user = get_user_model().objects.get(username=f"writer{index}")
    rooms = [Room.objects.get(slug=f"w{index}-{k}") for k in range(4)]
    sys.stdin.readline()
    done, end = 0, time.monotonic() + seconds
    while time.monotonic() < end:
        services.message_post(room=rooms[done % 4], author=user, body=f"message {done}", client_id=f"c{done}")
        done += 1
    print(done)
    """
)

SETUP = textwrap.dedent(
    """
    import sys, django
    django.setup()
    from django.contrib.auth import get_user_model
    from chat import services
    for index in range(int(sys.argv[1])):
        user = get_user_model().objects.create_user(username=f"writer{index}", password="x" * 20)
        for k in range(4):
            room = services.room_create(slug=f"w{index}-{k}", title="bench", created_by=user)
    """
)


def _python(env: dict[str, str], code: str, *args: str, **kwargs: Any) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", code, *args], cwd=ROOT, env=env, text=True, **kwargs)


def db_writes(env: dict[str, str], *, writers: int, seconds: float) -> dict[str, Any]:
    """``message_post`` calls per second from ``writers`` processes at once."""
    procs = [_python(env, WRITER, str(i), str(seconds), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                     stderr=subprocess.PIPE) for i in range(writers)]
    time.sleep(3)  # every writer has loaded Django
    start = time.monotonic()
    for p in procs:
        p.stdin.write("go\n")
        p.stdin.flush()
    counts = []
    for p in procs:
        out, err = p.communicate(timeout=seconds + 120)
        if p.returncode != 0:
            raise RuntimeError(err[-3000:])
        counts.append(int(out.strip().splitlines()[-1]))
    elapsed = max(seconds, time.monotonic() - start - 0.0)
    return {"writers": writers, "messages": sum(counts), "per_second": round(sum(counts) / elapsed, 1)}


def database_env(engine: str, tmp: Path, redis_url: str) -> tuple[dict[str, str], Any]:
    """The environment of a fresh, migrated database of ``engine``, and what to stop afterwards."""
    env = services.app_env(REDIS_URL=redis_url, CELERY_BROKER_URL=redis_url, DJANGO_DEBUG="0",
                           DJANGO_SECRET_KEY="capacity-" + "k" * 40, DJANGO_ALLOWED_HOSTS="127.0.0.1",
                           LOG_LEVEL="WARNING", SENTRY_DSN="")
    owner = None
    if engine == "postgresql":
        owner = services.PostgresCluster(durable=True).start()
        subprocess.run(["psql", owner.url(), "-qc", "CREATE DATABASE chat"], check=True, capture_output=True)
        env["DATABASE_URL"] = owner.url("chat")
    else:
        env["SQLITE_PATH"] = str(tmp / "capacity.sqlite3")
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=env, check=True)
    return env, owner


def redis_pubsub(*, messages: int) -> dict[str, Any]:
    """One Redis: PUBLISHes per second accepted, and how fast one subscriber (redis-cli) got them all."""
    import redis

    server = services.redis_service().start()
    # A subscriber that falls behind is otherwise cut off at 32 MiB of output: let it lag.
    redis.Redis(port=server.port).config_set("client-output-buffer-limit", "pubsub 0 0 0")
    subscriber = subprocess.Popen(["redis-cli", "-p", str(server.port), "subscribe", "rt:room.bench"],
                                  stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    lines = {"n": 0}

    def count() -> None:
        while chunk := subscriber.stdout.read1(1 << 20):
            lines["n"] += chunk.count(b"\n")

    reader = threading.Thread(target=count, daemon=True)
    reader.start()
    try:
        while lines["n"] < 3:  # the subscribe confirmation: three lines
            time.sleep(0.05)
        subscribed = lines["n"]
        payload = "x" * 400
        start = time.monotonic()
        result = subprocess.run(
            ["redis-benchmark", "-p", str(server.port), "-n", str(messages), "-c", "8", "-P", "16", "-q",
             "PUBLISH", "rt:room.bench", payload],
            capture_output=True, text=True, check=True, timeout=300,
        )
        deadline = time.monotonic() + 120
        while (lines["n"] - subscribed) // 3 < messages and time.monotonic() < deadline:
            time.sleep(0.01)
        elapsed = time.monotonic() - start
        received = (lines["n"] - subscribed) // 3
        rate = re.search(r"([\d.]+) requests per second", result.stdout.replace(",", ""))
        return {
            "messages": messages, "payload_bytes": len(payload),
            "published_per_second": float(rate.group(1)) if rate else None,
            "received": received, "received_per_second_one_subscriber": round(received / elapsed, 1),
        }
    finally:
        subscriber.terminate()
        subscriber.wait(timeout=10)
        server.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a few seconds each (for the tests)")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "capacity.json"))
    args = parser.parse_args()
    seconds = 2.0 if args.quick else 15.0
    report: dict[str, Any] = {"quick": args.quick, "cpus": os.cpu_count(), "load_average": os.getloadavg()[0],
                              "database": {}}
    tmp = Path(tempfile.mkdtemp(prefix="bench-capacity-"))
    redis_server = services.redis_service().start()
    try:
        for engine in ("postgresql", "sqlite"):
            env, owner = database_env(engine, tmp, f"redis://127.0.0.1:{redis_server.port}/0")
            try:
                _python(env, SETUP, "2").wait(timeout=120)
                runs = [db_writes(env, writers=n, seconds=seconds) for n in (1, 2)]
            finally:
                if owner is not None:
                    owner.destroy()
            report["database"][engine] = runs
            for run in runs:
                print(f"{engine:<10} {run['writers']} writer(s): {run['per_second']:>8.1f} message_post/s", flush=True)
    finally:
        redis_server.stop()
    report["redis"] = redis_pubsub(messages=20_000 if args.quick else 500_000)
    r = report["redis"]
    print(f"redis      one shard: {r['published_per_second']} PUBLISH/s accepted, "
          f"{r['received_per_second_one_subscriber']} received/s by one subscriber", flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
