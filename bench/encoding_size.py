"""Bytes on the wire for a typical conversation: JSON text frames vs MessagePack binary frames.

    .venv/bin/python bench/encoding_size.py

Builds the frames a client receives in a typical session — hello, joined, a 200-message
conversation of realistic lengths among five people, typing notices, presence changes,
pongs, reactions and receipts — with the server's own codecs (realtime.protocol), and
prints the payload bytes of each encoding (WebSocket frame headers included).
"""

from __future__ import annotations

import json
import os
import random
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "realtime.settings")


def frame_overhead(n: int) -> int:
    """Server-to-client WebSocket frame header (unmasked): 2, 4 or 10 bytes."""
    return 2 if n < 126 else 4 if n < 65536 else 10


def conversation(seed: int = 7) -> list[dict]:
    rnd = random.Random(seed)
    people = ["alice", "bob", "carol", "dave", "erin"]
    words = ("the deploy is done let us check logs again tomorrow morning ok sounds good thanks "
             "see you at standup I think we should ship it now 👍 maybe later").split()
    start = datetime(2026, 11, 25, 15, 0, tzinfo=timezone.utc)
    events: list[dict] = [
        {"type": "hello", "user": "alice", "protocol": "chat.v1.json", "max_body": 4000, "ping_ms": 25000},
        {"type": "joined", "room": "lobby", "title": "Lobby", "seq": 0, "presence": people[:3], "reset": False},
    ]
    for seq in range(1, 201):
        author = rnd.choice(people)
        body = " ".join(rnd.choice(words) for _ in range(rnd.randint(2, 18)))
        if rnd.random() < 0.3:
            events.append({"type": "typing", "room": "lobby", "user": author})
        events.append({
            "type": "message", "room": "lobby", "seq": seq, "id": 1000 + seq, "author": author, "body": body,
            "client_id": f"c-{rnd.getrandbits(64):016x}-{rnd.getrandbits(32):08x}",
            "ts": (start + timedelta(seconds=seq * 7)).isoformat(),
        })
        if rnd.random() < 0.1:
            events.append({"type": "reaction", "room": "lobby", "id": 1000 + seq, "seq": seq, "emoji": "👍",
                           "count": rnd.randint(1, 4), "user": rnd.choice(people), "action": "add"})
        if seq % 20 == 0:
            events.append({"type": "receipt", "room": "lobby", "user": rnd.choice(people), "seq": seq})
            events.append({"type": "pong", "t": 1764082800000 + seq * 7000})
        if seq % 50 == 0:
            events.append({"type": "presence", "room": "lobby", "joined": [rnd.choice(people)], "left": []})
    return events


def main() -> int:
    import django

    django.setup()
    from realtime.protocol import JsonCodec, MsgpackCodec

    events = conversation()
    totals = {}
    for name, codec in (("JSON (chat.v1.json)", JsonCodec), ("MessagePack (chat.v1.msgpack)", MsgpackCodec)):
        size = 0
        for event in events:
            payload = codec.encode(event)
            data = payload["text"].encode() if "text" in payload else payload["bytes"]
            size += len(data) + frame_overhead(len(data))
        totals[name] = size
    json_size, pack_size = totals.values()
    messages = sum(1 for e in events if e["type"] == "message")
    print(f"A typical conversation: {len(events)} frames to one client, {messages} of them messages.")
    for name, size in totals.items():
        print(f"  {name:32s} {size:8,d} bytes  ({size / len(events):.0f} per frame)")
    print(f"  MessagePack saves {json_size - pack_size:,d} bytes, {100 * (json_size - pack_size) / json_size:.1f}%")
    out = ROOT / "bench" / "results" / "encoding_size.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"frames": len(events), "json_bytes": json_size, "msgpack_bytes": pack_size}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
