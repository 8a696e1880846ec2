"""Soak: many sockets, steady chat in many rooms for minutes; memory, errors, loss, orphans.

    .venv/bin/python bench/soak.py [--minutes 10] [--sockets 1000] [--rooms 100] [--rate 50]

Starts its own Redis and Daphne (throwaway SQLite database), opens ``--sockets``
authenticated sockets spread over ``--rooms`` rooms, and has random members post
``--rate`` messages per second in total, Poisson-spaced, for ``--minutes``. Every socket
keeps reading. Every 30 s it prints the server's RSS and CPU. At the end it checks:

* **memory flat after warm-up**: RSS growth between the first sample after warm-up and
  the last, in MiB and %;
* **no errors**: error events received, sockets closed unexpectedly;
* **no loss**: every socket received every message of its room, by seq, exactly once;
* **no orphaned presence**: after every socket closed, no presence entry is left.

Writes bench/results/soak.json. Stops by itself; Ctrl-C stops everything.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--sockets", type=int, default=1000)
    parser.add_argument("--rooms", type=int, default=100)
    parser.add_argument("--rate", type=float, default=50.0, help="messages per second, all rooms together")
    parser.add_argument("--warmup", type=float, default=60.0, help="seconds before the memory baseline")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "soak.json"))
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 65536), hard))

    from tests import services

    tmp = Path(tempfile.mkdtemp(prefix="soak-"))
    redis = services.redis_service().start()
    url = f"redis://127.0.0.1:{redis.port}/0"
    env = services.app_env(
        REDIS_URL=url, CELERY_BROKER_URL=url, SQLITE_PATH=str(tmp / "db.sqlite3"), LOG_LEVEL="WARNING",
        WS_MAX_CONNECTIONS_PER_USER="100000", CHAT_RATE_BURST="100000", CHAT_RATE_PER_SECOND="100000",
    )
    os.environ.update({k: env[k] for k in ("REDIS_URL", "CELERY_BROKER_URL", "SQLITE_PATH", "DJANGO_SETTINGS_MODULE")})
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from django.contrib.auth import get_user_model
    from django.test import Client

    from chat.models import Message, Room

    users = [get_user_model().objects.create_user(f"soak{i}", password="x") for i in range(50)]
    cookies = []
    for user in users:
        client = Client()
        client.force_login(user)
        cookies.append(f"sessionid={client.cookies['sessionid'].value}")
    for r in range(args.rooms):
        Room.objects.create(slug=f"soak-{r}", title=f"Soak {r}")

    daphne = services.daphne_service(env).start()
    try:
        result = asyncio.run(soak(args, daphne, cookies))
        expected = {r.slug: r.last_seq for r in Room.objects.all()}
        result["messages_stored"] = Message.objects.count()
        result["loss"] = check_loss(result.pop("_seen"), result.pop("_room_of"), expected)
        import redis as redis_lib

        r = redis_lib.Redis(port=redis.port)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and _presence_left(r):
            time.sleep(0.5)
        result["orphaned_presence_entries"] = _presence_left(r)
        result["open_sockets_left"] = r.zcount("conns:all", time.time(), "+inf")
    finally:
        daphne.stop()
        redis.stop()
    result["machine"] = {"cpus": os.cpu_count(), "python": sys.version.split()[0]}
    report(result)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    ok = (result["errors"] == 0 and result["unexpected_closes"] == 0 and result["loss"]["missing"] == 0
          and result["loss"]["duplicates"] == 0 and result["orphaned_presence_entries"] == 0)
    print("OK" if ok else "PROBLEMS FOUND")
    return 0 if ok else 1


def _presence_left(r) -> int:
    return sum(r.hlen(k) for k in r.scan_iter("presence:*:users"))


def check_loss(seen: dict[int, dict[int, int]], room_of: dict[int, str], expected: dict[str, int]) -> dict:
    missing = duplicates = 0
    for sock, seqs in seen.items():
        last = expected[room_of[sock]]
        # Every socket joined before the first post: it must have seen 1..last of its room.
        missing += sum(1 for s in range(1, last + 1) if s not in seqs)
        duplicates += sum(n - 1 for n in seqs.values() if n > 1)
    return {"missing": missing, "duplicates": duplicates, "sockets_checked": len(seen)}


async def soak(args, daphne, cookies: list[str]) -> dict:
    from websockets.asyncio.client import connect

    seen: dict[int, dict[int, int]] = defaultdict(dict)
    room_of: dict[int, str] = {}
    counters = {"errors": 0, "unexpected_closes": 0, "sent": 0}
    sockets: list = []
    stop = asyncio.Event()

    async def reader(i: int, ws) -> None:
        try:
            async for data in ws:
                event = json.loads(data)
                if event["type"] == "message":
                    seq = event["seq"]
                    seen[i][seq] = seen[i].get(seq, 0) + 1
                elif event["type"] == "error":
                    counters["errors"] += 1
        except Exception:
            pass
        if not stop.is_set():
            counters["unexpected_closes"] += 1

    started = time.monotonic()
    for i in range(args.sockets):
        room = f"soak-{i % args.rooms}"
        room_of[i] = room
        for attempt in range(5):
            try:
                ws = await connect(f"{daphne.ws_url}/ws/chat/", origin=daphne.url,
                                   additional_headers={"Cookie": cookies[i % len(cookies)]}, open_timeout=20)
                break
            except Exception:
                await asyncio.sleep(0.5 * (attempt + 1))
        else:
            raise RuntimeError(f"socket {i} could not connect")
        await ws.recv()
        await ws.send(json.dumps({"type": "join", "room": room}))
        while json.loads(await ws.recv())["type"] != "joined":
            pass
        sockets.append(ws)
        asyncio.get_running_loop().create_task(reader(i, ws))
    print(f"{len(sockets)} sockets open and joined in {time.monotonic() - started:.1f} s", flush=True)

    pid = daphne.proc.pid
    samples = []
    end = time.monotonic() + args.minutes * 60
    next_sample = time.monotonic()
    t0, c0 = time.monotonic(), cpu_seconds(pid)
    rnd = random.Random(1)
    while time.monotonic() < end:
        now = time.monotonic()
        if now >= next_sample:
            cpu = cpu_seconds(pid)
            since = samples[-1]["_at"] if samples else t0
            sample = {"t": round(now - t0, 1), "rss_mib": round(rss_mib(pid), 1),
                      "cpu_pct": round(100 * (cpu - c0) / max(1e-9, now - since), 1), "_at": now}
            samples.append(sample)
            c0 = cpu
            print(f"  t={sample['t']:6.0f} s  rss {sample['rss_mib']:7.1f} MiB  cpu {sample['cpu_pct']:5.1f}%"
                  f"  sent {counters['sent']}  errors {counters['errors']}", flush=True)
            next_sample = now + 30
        i = rnd.randrange(len(sockets))
        try:
            await sockets[i].send(json.dumps({"type": "message", "room": room_of[i],
                                              "body": f"soak {counters['sent']}", "client_id": f"s{counters['sent']}"}))
            counters["sent"] += 1
        except Exception:
            counters["errors"] += 1
        await asyncio.sleep(rnd.expovariate(args.rate))
    await asyncio.sleep(3)  # drain
    stop.set()
    for ws in sockets:
        await ws.close()
    await asyncio.sleep(1)
    for s in samples:
        s.pop("_at", None)
    baseline = next((s for s in samples if s["t"] >= args.warmup), samples[0])
    growth = samples[-1]["rss_mib"] - baseline["rss_mib"]
    return {
        "sockets": len(sockets), "rooms": args.rooms, "minutes": args.minutes, "rate_per_s": args.rate,
        "messages_sent": counters["sent"], "errors": counters["errors"],
        "unexpected_closes": counters["unexpected_closes"], "samples": samples,
        "rss_after_warmup_mib": baseline["rss_mib"], "rss_end_mib": samples[-1]["rss_mib"],
        "rss_growth_mib": round(growth, 1), "rss_growth_pct": round(100 * growth / baseline["rss_mib"], 1),
        "_seen": seen, "_room_of": room_of,
    }


def report(r: dict) -> None:
    print(f"soak: {r['sockets']} sockets, {r['rooms']} rooms, {r['minutes']} min, {r['messages_sent']} messages sent, "
          f"{r['messages_stored']} stored")
    print(f"  memory after warm-up {r['rss_after_warmup_mib']} MiB -> end {r['rss_end_mib']} MiB "
          f"({r['rss_growth_mib']:+} MiB, {r['rss_growth_pct']:+}%)")
    loss = r["loss"]
    print(f"  errors {r['errors']}, unexpected closes {r['unexpected_closes']}, "
          f"missing {loss['missing']}, duplicates {loss['duplicates']} over {loss['sockets_checked']} sockets")
    print(f"  presence entries left after all closed: {r['orphaned_presence_entries']}; "
          f"sockets still counted open: {r['open_sockets_left']}")


if __name__ == "__main__":
    sys.exit(main())
