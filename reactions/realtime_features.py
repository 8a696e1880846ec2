"""Reactions, declared on the extension surface: two client types, two events, a join hook."""

from __future__ import annotations

from typing import Any

from channels.db import database_sync_to_async

from chat.models import Room
from reactions import selectors, services
from realtime.features import Context, feature
from realtime.protocol import ROOM, Field, check_emoji, check_id

# Messages this far back from a room's newest get their reaction counts on every join,
# so counts changed while a client was away arrive on resume.
RECENT = 200

reactions = feature(
    "reactions", doc="Emoji reactions on messages; counts update live.", scripts=("js/features/reactions.js",)
)

FIELDS = (ROOM, Field("id", check_id, doc="message id"), Field("emoji", check_emoji, doc="one emoji, 1-16 characters"))


def _joined(ctx: Context, payload: dict[str, Any]) -> bool:
    ctx.require_joined(payload["room"])
    return True


@reactions.handles(
    "react", fields=FIELDS, permission=_joined,
    doc="Add your reaction to a message; the room receives `reaction` with the new count.",
    example={"type": "react", "room": "lobby", "id": 7, "emoji": "👍"},
)
async def react(ctx: Context, p: dict[str, Any]) -> None:
    await database_sync_to_async(services.reaction_add)(
        room_slug=p["room"], message_id=p["id"], user=ctx.user, emoji=p["emoji"]
    )


@reactions.handles(
    "unreact", fields=FIELDS, permission=_joined,
    doc="Take your reaction back; the room receives `reaction` with the new count.",
    example={"type": "unreact", "room": "lobby", "id": 7, "emoji": "👍"},
)
async def unreact(ctx: Context, p: dict[str, Any]) -> None:
    await database_sync_to_async(services.reaction_remove)(
        room_slug=p["room"], message_id=p["id"], user=ctx.user, emoji=p["emoji"]
    )


reactions.event(
    "reaction", doc="A reaction was added or removed: the emoji's new count on that message.",
    example={"type": "reaction", "room": "lobby", "id": 7, "seq": 42, "emoji": "👍", "count": 3, "user": "bob",
             "action": "add"},
)
reactions.event(
    "reactions", doc="After `joined`: the reaction counts of the room's recent messages (`mine`: yours).",
    example={"type": "reactions", "room": "lobby",
             "items": [{"id": 7, "seq": 42, "emoji": "👍", "count": 3, "mine": True}]},
)


@reactions.on_join
async def snapshot(ctx: Context, room: str, history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    def load() -> list[dict[str, Any]]:
        target = ctx.joined_room(room) or Room.objects.get(slug=room)
        return selectors.reactions_recent(room=target, since_seq=max(0, target.last_seq - RECENT), user=ctx.user)

    items = await database_sync_to_async(load)()
    return [{"type": "reactions", "room": room, "items": items}]
