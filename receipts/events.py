"""Every event the receipts feature sends to a socket, built in one place."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.base_user import AbstractBaseUser


def read_event(*, room: str, seq: int) -> dict[str, Any]:
    """``read``: the user's own read position in a room (to their other sockets, and after ``joined``)."""
    return {"type": "read", "room": room, "seq": seq}


def receipt_event(*, room: str, user: AbstractBaseUser, seq: int) -> dict[str, Any]:
    """``receipt``: someone in the room read up to ``seq``."""
    return {"type": "receipt", "room": room, "user": user.get_username(), "seq": seq}


def receipts_event(*, room: str, positions: list[dict[str, Any]]) -> dict[str, Any]:
    """``receipts``: after ``joined``, the room's read positions."""
    return {"type": "receipts", "room": room, "positions": positions}
