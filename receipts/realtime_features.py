"""Read receipts, declared on the extension surface: one client type, three events, a join hook."""

from __future__ import annotations

from typing import Any

from channels.db import database_sync_to_async

from chat.selectors import room_by_slug
from realtime.features import Context, feature
from realtime.protocol import ROOM, Field, check_seq
from receipts import events, selectors, services

receipts = feature(
    "receipts",
    doc="Read positions per room: unread counts across tabs and devices, and who has seen what.",
    scripts=("js/features/receipts.js",),
)


def _joined(ctx: Context, payload: dict[str, Any]) -> bool:
    ctx.require_joined(payload["room"])
    return True


@receipts.handles(
    "read", fields=(ROOM, Field("seq", check_seq, doc="the newest seq the user has seen")), permission=_joined,
    rate_limited=False,
    doc="Mark a room read up to `seq`. Your other sockets receive `read`; the room receives `receipt`.",
    example={"type": "read", "room": "lobby", "seq": 42},
)
async def read(ctx: Context, p: dict[str, Any]) -> None:
    await database_sync_to_async(services.read_mark)(room_slug=p["room"], user=ctx.user, seq=p["seq"])


receipts.event(
    "read", doc="Your read position in a room moved (from any of your tabs or devices); also sent after `joined`.",
    example={"type": "read", "room": "lobby", "seq": 42},
)
receipts.event(
    "receipt", doc="Someone in the room read up to `seq`.",
    example={"type": "receipt", "room": "lobby", "user": "bob", "seq": 42},
)
receipts.event(
    "receipts", doc="After `joined`: the room's read positions (who has seen up to where).",
    example={"type": "receipts", "room": "lobby", "positions": [{"user": "bob", "seq": 42}]},
)


@receipts.on_join_load
def snapshot(ctx: Context, room: str, value: Any, history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    target = value or ctx.joined_room(room) or room_by_slug(slug=room)
    mine, positions = selectors.read_seq(room=target, user=ctx.user), selectors.read_positions(room=target)
    return [events.read_event(room=room, seq=mine), events.receipts_event(room=room, positions=positions)]
