"""S5, mass reconnect: every socket of one process cut at once, resumed while messages flow.

    .venv/bin/python bench/reconnect.py [--sockets 10000] [--rooms 1000] [--rate 50]
                                        [--budget 500] [--deadline 20]

Starts its own Redis and the project's Daphne (throwaway SQLite database, the admission
budget ``--budget`` handshakes per second: realtime.admission), opens ``--sockets``
sockets with the real client (realtime.client.ResumingClient: its backoff, its resume by
``last_seq``, its handling of 503 + ``Retry-After``), each in one of ``--rooms`` rooms,
and one more socket that posts ``--rate`` messages per second over every room. Then
the load client cuts every socket at once (a dead network: no close frame), the posts go
on, and the clients reconnect by themselves. It reports:

* **resumed**: sockets joined again, and the time from the cut until the last one was;
* **exact**: every socket delivered each seq of its room from its first join to the
  room's last exactly once (nothing lost, nothing repeated), read from the client's own
  stream, checked against the database's last seq of each room;
* **handshake errors**: refusals with 503 + ``Retry-After`` (allowed) and any other
  failure (not allowed: another HTTP status, a timeout, a refused connection);
* the server's CPU seconds and RSS around the reconnect.

``run()`` is what tests/bench/test_reconnect_bench.py calls at a small scale. Writes
bench/results/reconnect.json from the command line.
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


@dataclass
class Socket:
    """One load socket: the real client and what it delivered of its room."""

    client: Any
    room: str
    seqs: list[int] = field(default_factory=list)
    refused_joins: int = 0
    other_errors: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)  # handshake failures other than 503


async def _read(sock: Socket) -> None:
    async for event in sock.client:
        kind = event.get("type")
        if kind in ("message", "message.deleted") and event.get("room") == sock.room:
            sock.seqs.append(event["seq"])
        elif kind == "error":
            if event.get("request_type") == "join" and event.get("code") == "unavailable":
                sock.refused_joins += 1
            else:
                sock.other_errors.append(str(event.get("code")))


def _on_state(sock: Socket) -> Any:
    def on_state(state: str, info: dict[str, Any]) -> None:
        if state != "reconnecting" or info.get("opened"):
            return
        code = info.get("code")
        if code == 503:
            return  # admission control: allowed
        sock.failures.append(str(info.get("error") or code))

    return on_state


async def _all(sockets: list[Socket], pred: Any, timeout: float) -> float | None:
    """Wait until ``pred(sock)`` holds for every socket; the seconds it took, None on timeout."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if all(pred(s) for s in sockets):
            return time.monotonic() - start
        await asyncio.sleep(0.05)
    return None


async def reconnect(
    *, ws_url: str, cookies: list[str], rooms: list[str], sockets: int, rate: float, deadline: float,
    pid: int | None = None, say: Any = print, last_seq_of: Any = None,
) -> dict[str, Any]:
    """Open ``sockets`` sockets, cut them all, let them resume while ``rate`` messages/s flow; the report."""
    from realtime.client import ResumingClient

    origin = ws_url.replace("ws://", "http://").split("/ws/")[0]
    load: list[Socket] = []
    readers = []
    for i in range(sockets):
        room = rooms[i % len(rooms)]
        client = ResumingClient(ws_url, cookie=cookies[i % len(cookies)], origin=origin, rooms=[room],
                                ping_interval=60, open_timeout=30)
        sock = Socket(client, room)
        client.on_state = _on_state(sock)
        load.append(sock)
    poster = ResumingClient(ws_url, cookie=cookies[0], origin=origin, rooms=rooms, ping_interval=60)
    poster.start()
    opened_at = time.monotonic()
    for sock in load:
        sock.client.start()
        readers.append(asyncio.get_running_loop().create_task(_read(sock)))
    for room in rooms:
        await poster.wait_joined(room, timeout=120)
    first = await _all(load, lambda s: s.client.rooms[s.room].joined, timeout=600)
    say(f"opened and joined {sockets} sockets in {first if first is None else round(first, 1)} s")

    stop_posting = asyncio.Event()
    posted = 0

    async def post() -> None:
        nonlocal posted
        while not stop_posting.is_set():
            poster.send_message(random.choice(rooms), f"m{posted}")
            posted += 1
            await asyncio.sleep(random.expovariate(rate))

    posting = asyncio.get_running_loop().create_task(post())
    await asyncio.sleep(min(2.0, deadline / 4))
    refused_before = sum(s.client.refusals for s in load)
    joins_refused_before = sum(s.refused_joins for s in load)
    connections_before = {id(s): s.client.connections for s in load}
    cpu0 = cpu_seconds(pid) if pid else None
    for sock in load:
        sock.client.drop()
    say(f"cut {sockets} sockets; {rate}/s messages keep flowing")
    resumed_in = await _all(
        load,
        lambda s: s.client.connections > connections_before[id(s)] and s.client.rooms[s.room].joined,
        timeout=max(deadline * 3, 60),
    )
    cpu1 = cpu_seconds(pid) if pid else None
    rejoined = sum(1 for s in load if s.client.connections > connections_before[id(s)]
                   and s.client.rooms[s.room].joined)
    say(f"resumed {rejoined}/{sockets} in {resumed_in if resumed_in is None else round(resumed_in, 1)} s")
    await asyncio.sleep(1.0)  # messages keep flowing to the resumed sockets
    stop_posting.set()
    await posting
    await poster.settle(timeout=60)
    last = await asyncio.to_thread(last_seq_of) if last_seq_of is not None else {}
    caught_up = await _all(load, lambda s: (s.seqs[-1] if s.seqs else 0) >= last.get(s.room, 0), timeout=60)
    lost = repeated = inexact = 0
    for sock in load:
        seqs = sock.seqs
        if not seqs:
            if last.get(sock.room, 0):
                inexact += 1
                lost += last[sock.room]
            continue
        expected = list(range(seqs[0], last.get(sock.room, seqs[-1]) + 1))
        repeats = len(seqs) - len(set(seqs))
        missing = len(set(expected) - set(seqs))
        repeated += repeats
        lost += missing
        if seqs != expected:
            inexact += 1
    failures = [f for s in load for f in s.failures]
    result = {
        "sockets": sockets,
        "rooms": len(rooms),
        "rate": rate,
        "first_join_seconds": first,
        "resumed": rejoined,
        "resumed_seconds": resumed_in,
        "resumed_within_deadline": resumed_in is not None and resumed_in <= deadline,
        "caught_up_seconds": caught_up,
        "messages_posted": posted,
        "lost": lost,
        "repeated": repeated,
        "sockets_not_exact": inexact,
        "handshakes_refused_503": sum(s.client.refusals for s in load) - refused_before,
        "joins_refused": sum(s.refused_joins for s in load) - joins_refused_before,
        "handshake_errors_other": len(failures),
        "handshake_errors_sample": sorted(set(failures))[:5],
        "error_events_other": sum(len(s.other_errors) for s in load),
        "server_cpu_seconds_reconnect": None if cpu0 is None else round(cpu1 - cpu0, 2),
        "server_rss_mib": None if pid is None else round(rss_mib(pid), 1),
        "total_seconds": round(time.monotonic() - opened_at, 1),
    }
    for sock in load:
        await sock.client.close()
    await poster.close()
    for task in readers:
        task.cancel()
    await asyncio.gather(*readers, return_exceptions=True)
    return result


def run(*, sockets: int, rooms: int, rate: float, budget: float, deadline: float, users: int = 50,
        in_flight: int = 100, say: Any = print) -> dict[str, Any]:
    """S5 against a Daphne of its own (and its own Redis and SQLite database); the report."""
    from tests import services

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, 4 * sockets + 1024)), hard))
    tmp = Path(tempfile.mkdtemp(prefix="s5-"))
    redis = services.redis_service().start()
    url = f"redis://127.0.0.1:{redis.port}/0"
    env = services.app_env(
        REDIS_URL=url, CELERY_BROKER_URL=url, SQLITE_PATH=str(tmp / "db.sqlite3"),
        LOG_LEVEL=os.environ.get("S5_LOG_LEVEL", "WARNING"), WS_MAX_CONNECTIONS_PER_USER="1000000",
        CHAT_RATE_BURST="1000000", CHAT_RATE_PER_SECOND="1000000",
        WS_ADMISSION_HANDSHAKES_PER_SECOND=str(budget), WS_ADMISSION_HANDSHAKES_BURST=str(budget),
        WS_ADMISSION_JOINS_PER_SECOND=str(2 * budget), WS_ADMISSION_JOINS_BURST=str(2 * budget),
        WS_ADMISSION_HANDSHAKES_IN_FLIGHT=str(in_flight),
    )
    for key in ("REDIS_URL", "CELERY_BROKER_URL", "SQLITE_PATH", "DJANGO_SETTINGS_MODULE"):
        os.environ[key] = env[key]
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.test import Client

    from chat.models import Room

    call_command("migrate", verbosity=0)
    cookies = []
    for i in range(users):
        user = get_user_model().objects.create_user(f"s5user{i}")  # no password: no hashing
        client = Client()
        client.force_login(user)
        cookies.append(f"sessionid={client.cookies['sessionid'].value}")
    slugs = [f"s5-{r}" for r in range(rooms)]
    for slug in slugs:
        Room.objects.create(slug=slug, title=slug)

    def last_seq_of() -> dict[str, int]:
        return dict(Room.objects.values_list("slug", "last_seq"))

    daphne = services.daphne_service(env).start()
    try:
        result = asyncio.run(reconnect(
            ws_url=daphne.ws_url + "/ws/chat/", cookies=cookies, rooms=slugs, sockets=sockets, rate=rate,
            deadline=deadline, pid=daphne.proc.pid, say=say, last_seq_of=last_seq_of,
        ))
    finally:
        log = daphne.log()
        daphne.stop()
        redis.stop()
    if os.environ.get("S5_LOG"):
        Path(os.environ["S5_LOG"]).write_text(log)
    result["budget_handshakes_per_second"] = budget
    result["ok"] = bool(
        result["resumed"] == sockets and result["lost"] == 0 and result["repeated"] == 0
        and result["sockets_not_exact"] == 0 and result["handshake_errors_other"] == 0
    )
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sockets", type=int, default=10000)
    parser.add_argument("--rooms", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=50.0, help="messages per second over every room")
    parser.add_argument("--budget", type=float, default=500.0, help="the server's handshakes per second")
    parser.add_argument("--in-flight", type=int, default=100, help="the server's handshakes served at once")
    parser.add_argument("--deadline", type=float, default=20.0, help="seconds every socket must be back within")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "reconnect.json"))
    args = parser.parse_args()
    result = run(sockets=args.sockets, rooms=args.rooms, rate=args.rate, budget=args.budget, deadline=args.deadline,
                 in_flight=args.in_flight)
    result["machine"] = {"cpus": os.cpu_count(), "python": sys.version.split()[0]}
    print(json.dumps(result, indent=2))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    ok = result["ok"] and result["resumed_within_deadline"]
    print("OK" if ok else "TARGET NOT MET")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
