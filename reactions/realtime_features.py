"""Reactions, declared on the extension surface: two client types, two events, a join hook."""

from __future__ import annotations

from typing import Any

from channels.db import database_sync_to_async

from chat.selectors import room_by_slug
from reactions import events, selectors, services
from realtime.features import Context, feature
from realtime.protocol import CONTROL_RE, ROOM, Field, check_id, check_text

# Messages this far back from a room's newest get their reaction counts on every join,
# so counts changed while a client was away arrive on resume.
RECENT = 200

reactions = feature(
    "reactions", doc="Emoji reactions on messages; counts update live.", scripts=("js/features/reactions.js",)
)

EMOJI_MAX = 16


def check_emoji(value: Any) -> str:
    """A reaction: one short string of printable characters, no surrounding space."""
    value = check_text(value)
    if not 1 <= len(value) <= EMOJI_MAX or CONTROL_RE.search(value) or value.strip() != value:
        raise ValueError(f"must be 1-{EMOJI_MAX} printable characters")
    return value


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


@reactions.on_join_load
def snapshot(ctx: Context, room: str, value: Any, history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    target = value or ctx.joined_room(room) or room_by_slug(slug=room)
    items = selectors.reactions_recent(room=target, since_seq=max(0, target.last_seq - RECENT), user=ctx.user)
    return [events.reactions_event(room=room, items=items)]
