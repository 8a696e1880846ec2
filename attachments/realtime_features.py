"""Attachments on the extension surface: the page's upload UI and the one event of its own.

A message's ``attachments`` field is the chat's (chat/realtime_features.py): the chat's
``message`` carries the ids, and chat.services.message_post attaches them.
"""

from __future__ import annotations

from typing import Any

from realtime import broadcast, streams
from realtime.features import feature

attachments = feature(
    "attachments",
    doc="Files and pictures on messages: uploaded over HTTP (`POST /api/rooms/<slug>/uploads/`), "
    "sent by id in a message's `attachments`, served only to readers of the room.",
    scripts=("js/features/attachments.js",),
)

attachments.event(
    "attachment.removed",
    doc="Staff removed a file from a message; clients drop it (its URL answers 404 from now on).",
    example={"type": "attachment.removed", "room": "lobby", "seq": 42, "message_id": 7, "id": 12},
)


@streams.reviser(prefix=broadcast.room_group(""), type="attachment.removed")
def _attachment_removed(window: streams.Window, change: dict[str, Any]) -> None:
    """A room's cached message loses the removed file, as its history would (realtime.streams)."""
    current = window.get(change["seq"])
    if current is None or not current.get("attachments"):
        return
    kept = [a for a in current["attachments"] if a.get("id") != change["id"]]
    revised = {**current, "attachments": kept}
    if not kept:
        del revised["attachments"]  # history sends the field only when there are some
    window.replace(change["seq"], revised)
