"""The chat's domain errors: why a read or a write was refused, in the chat's own terms.

Services and selectors raise these; they know nothing of sockets. The chat's protocol
module (chat/realtime_features.py) maps them to ``error`` frames for the consumer, in
one place, and the views map them to HTTP statuses. ``code`` is the stable name of the
refusal; the wire's error code has the same string.
"""

from __future__ import annotations

from typing import Any


class ChatError(Exception):
    """A refused chat operation: ``code`` names why, ``detail`` says it to a person.

    ``context`` carries what the refusal is about (``room``, ``id``, ``until``); it is
    echoed to the client with the error.
    """

    code = "forbidden"

    def __init__(self, detail: str, **context: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.context = context


class RoomNotFound(ChatError):
    """No room has this slug (or it was deleted since it was joined)."""

    code = "room_not_found"


class Forbidden(ChatError):
    """The user may not do this here: a private room, someone else's message, not a member."""

    code = "forbidden"


class Banned(ChatError):
    """The user is banned from this room."""

    code = "banned"


class Muted(ChatError):
    """The user is muted in this room until ``context["until"]``."""

    code = "muted"


class MessageNotFound(ChatError):
    """No (live) message with this id in this room."""

    code = "message_not_found"


class Blocked(ChatError):
    """The text contains a word the site does not allow (the banned-words filter); nothing was stored."""

    code = "blocked"


class InvalidRequest(ChatError):
    """The request names something that cannot be used: an unknown or inactive user, too many people."""

    code = "invalid_field"


#: Every refusal the chat can give, for its maps to the protocol and to HTTP.
ALL: tuple[type[ChatError], ...] = (
    RoomNotFound, Forbidden, Banned, Muted, MessageNotFound, Blocked, InvalidRequest,
)
