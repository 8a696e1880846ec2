"""Full-text search latency over many messages: p50 and p99 of several kinds of query.

    .venv/bin/python bench/search.py [--messages 1000000] [--repeat 40] [--out bench/results/search.json]

Builds a throwaway SQLite database (migrated, in a temporary directory) with users,
rooms and ``--messages`` messages written straight to the tables (one ``executemany``,
words drawn from a Zipf-like vocabulary so some are common and most are rare), builds the
index with ``search_rebuild``'s service, then times ``search.selectors.message_search``
(the API's query: FTS5, the room-access filter, the page's messages) for each query kind
as a user who reads 20 of the 100 rooms. Prints a table and writes JSON. The aim
(issue 17): p50 <= 50 ms over 1,000,000 messages on this machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

ROOMS, READABLE, USERS = 100, 20, 50
COMMON = ["the", "deploy", "build", "meeting", "review", "launch", "coffee", "release", "bug", "test",
          "today", "tomorrow", "please", "thanks", "update", "server", "design", "customer", "ticket", "lunch"]


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1))))]


def vocabulary(size: int) -> list[str]:
    """Common words first, then made-up rare ones ("w" + base-36 numbers)."""
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"

    def b36(n: int) -> str:
        out = ""
        while True:
            n, r = divmod(n, 36)
            out = digits[r] + out
            if n == 0:
                return out

    return COMMON + [f"w{b36(i)}x" for i in range(size - len(COMMON))]


def build(n_messages: int, seed: int) -> dict:
    """Users, rooms, memberships and messages, inserted straight into the tables; then the index."""
    from django.contrib.auth import get_user_model
    from django.db import connection, transaction

    from chat.models import Membership, Message, Room
    from search import services as search_services

    rng = random.Random(seed)
    User = get_user_model()
    users = User.objects.bulk_create([User(username=f"u{i}") for i in range(USERS)])
    rooms = Room.objects.bulk_create(
        [Room(slug=f"room-{i}", title=f"Room {i}", is_public=i % 2 == 0) for i in range(ROOMS)]
    )
    reader = users[0]
    Membership.objects.bulk_create(
        [Membership(user=reader, room=r) for r in rooms[:READABLE]]
        + [Membership(user=u, room=r) for u in users[1:] for r in rooms if rng.random() < 0.2]
    )
    # One room the reader was banned from: its messages must stay out of every result.
    Membership.objects.filter(user=reader, room=rooms[READABLE - 1]).update(banned=True)

    words = vocabulary(50_000)
    weights = [1 / (rank + 1) ** 1.05 for rank in range(len(words))]
    cumulative, total = [], 0.0
    for w in weights:
        total += w
        cumulative.append(total)

    fields = [f for f in Message._meta.concrete_fields if not f.primary_key]
    given = {"room": None, "author": None, "body": None, "seq": None, "created_at": None}
    columns = ", ".join(connection.ops.quote_name(f.column) for f in fields)
    # Straight to SQLite (no Django cursor wrapper per row): every column, others' defaults included.
    sql = (f"INSERT INTO {connection.ops.quote_name(Message._meta.db_table)} ({columns}) "
           f"VALUES ({', '.join(['?'] * len(fields))})")
    defaults = {f.name: f.get_db_prep_value(f.get_default(), connection) for f in fields if f.name not in given}
    seqs = [0] * ROOMS
    start = datetime.now(UTC).replace(tzinfo=None) - timedelta(seconds=n_messages)  # one a second, ending now

    def rows():
        for i in range(n_messages):
            room = rng.randrange(ROOMS)
            seqs[room] += 1
            body = " ".join(rng.choices(words, cum_weights=cumulative, k=rng.randint(4, 18)))
            values = {"room": rooms[room].pk, "author": users[rng.randrange(USERS)].pk, "body": body,
                      "seq": seqs[room], "created_at": (start + timedelta(seconds=i)).isoformat(" ")}
            yield [values[f.name] if f.name in values else defaults[f.name] for f in fields]

    started = time.monotonic()
    with transaction.atomic(), connection.cursor() as cursor:
        connection.connection.executemany(sql, rows())
        for room, seq in zip(rooms, seqs, strict=True):
            cursor.execute("UPDATE chat_room SET last_seq = %s WHERE id = %s", [seq, room.pk])
    inserted = time.monotonic() - started
    started = time.monotonic()
    indexed = search_services.index_rebuild()
    return {"insert_s": round(inserted, 1), "index_s": round(time.monotonic() - started, 1), "indexed": indexed,
            "reader": reader, "rooms": rooms, "words": words}


def kinds(data: dict, rng: random.Random) -> dict[str, list[dict]]:
    """Each kind: a list of (text, room) searches, varied so no cache answers them all."""
    words = data["words"]
    readable_room = data["rooms"][3]
    return {
        "common word": [{"text": w} for w in COMMON[1:]],
        "mid word (rank 200-2000)": [{"text": words[rng.randrange(200, 2000)]} for _ in range(20)],
        "rare word (rank > 20000)": [{"text": words[rng.randrange(20000, len(words))]} for _ in range(20)],
        "two common words": [{"text": f"{a} {b}"} for a, b in zip(COMMON[1:10], COMMON[10:19], strict=True)],
        "phrase": [{"text": f'"{a} {b}"'} for a, b in zip(COMMON[1:10], COMMON[2:11], strict=True)],
        "prefix": [{"text": f"{w[:4]}*"} for w in COMMON[1:12]],
        "common word, one room": [{"text": w, "room": readable_room} for w in COMMON[1:]],
        "common word, page 2": [{"text": w, "page2": True} for w in COMMON[1:]],
        "no hit": [{"text": f"zz{i}qq"} for i in range(20)],
    }


def run(args: argparse.Namespace) -> dict:
    from search.query import query_parse
    from search.selectors import message_search

    data = build(args.messages, args.seed)
    reader, rng = data["reader"], random.Random(args.seed + 1)
    report: dict = {"messages": args.messages, "insert_s": data["insert_s"], "index_s": data["index_s"],
                    "kinds": {}}
    every: list[float] = []
    for name, searches in kinds(data, rng).items():
        times: list[float] = []
        hits = []
        for i in range(args.repeat + 2):
            s = searches[i % len(searches)]
            query = query_parse(s["text"])
            before = None
            if s.get("page2"):
                before = message_search(user=reader, query=query, limit=20).next_before
            started = time.perf_counter()
            page = message_search(user=reader, query=query, room=s.get("room"), before=before, limit=20)
            elapsed = (time.perf_counter() - started) * 1000
            if i >= 2:  # the first two warm the page cache
                times.append(elapsed)
                hits.append(len(page.hits))
        every += times
        report["kinds"][name] = {"p50_ms": round(percentile(times, 50), 2), "p99_ms": round(percentile(times, 99), 2),
                                 "mean_hits": round(statistics.mean(hits), 1), "samples": len(times)}
    report["all"] = {"p50_ms": round(percentile(every, 50), 2), "p99_ms": round(percentile(every, 99), 2),
                     "samples": len(every)}
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=40, help="timed searches per kind")
    parser.add_argument("--seed", type=int, default=17)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "search.json"))
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="bench-search-"))
    os.environ["SQLITE_PATH"] = str(tmp / "db.sqlite3")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "realtime.settings")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    try:
        import django

        django.setup()
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
        report = run(args)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    report["machine"] = {"cpus": os.cpu_count(), "load_1m": round(os.getloadavg()[0], 2),
                         "python": platform.python_version(), "sqlite": __import__("sqlite3").sqlite_version,
                         "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    print(f"{report['messages']:,} messages: inserted in {report['insert_s']} s, indexed in {report['index_s']} s")
    print(f"{'query kind':<28} {'p50 ms':>8} {'p99 ms':>8} {'hits':>6}")
    for name, k in report["kinds"].items():
        print(f"{name:<28} {k['p50_ms']:>8} {k['p99_ms']:>8} {k['mean_hits']:>6}")
    a = report["all"]
    verdict = "met" if a["p50_ms"] <= 50 else "MISSED"
    print(f"{'all':<28} {a['p50_ms']:>8} {a['p99_ms']:>8}   (target p50 <= 50 ms: {verdict})")
    print(f"machine: {report['machine']}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
