"""Admission control: a per-process budget of handshakes and joins per second.

After a deploy or a network blip every client reconnects at once. Each handshake and
each join costs the process CPU (authentication, history, snapshots); served all at
once they starve the sockets already open, and the queue of half-served handshakes
grows without bound. So each process admits at most ``ADMISSION_HANDSHAKES_PER_SECOND``
handshakes and ``ADMISSION_JOINS_PER_SECOND`` joins (token buckets; ``_BURST``: how
many may come at once), and serves at most ``ADMISSION_HANDSHAKES_IN_FLIGHT``
handshakes at a time; above that a handshake is answered HTTP 503 with ``Retry-After``
before anything else runs (realtime.handshake.AdmissionGuard) and a join gets an
``unavailable`` error with ``retry_after`` (chat.consumers). Nothing is queued: a
refusal costs a few microseconds and no memory, and the clients come back after the
wait, jittered (realtime/client.py, static/js/realtime-client.js). 0 turns a budget off.
"""

from __future__ import annotations

import math
import time
from typing import Any

from django.conf import settings

#: The longest wait a refusal asks for, in seconds.
MAX_WAIT = 30.0
#: Seconds after which a handshake still counted in flight is forgotten (Daphne's own
#: handshake timeout is shorter: by then it has ended one way or another).
STALE_AFTER = 30.0
#: The scope key of a handshake's in-flight slot (released by the consumer or the refusal).
SCOPE_KEY = "admission_slot"


class TokenBucket:
    """``rate`` tokens a second, at most ``burst`` saved up; :meth:`take` spends one."""

    __slots__ = ("rate", "burst", "tokens", "stamp", "promised")

    def __init__(self, rate: float, burst: float) -> None:
        self.rate = rate
        self.burst = max(1.0, burst)
        self.tokens = self.burst
        self.stamp = time.monotonic()
        # The latest time a refused caller was told to come back at.
        self.promised = self.stamp

    def take(self, now: float | None = None) -> float:
        """Spend a token: 0.0 if one was there, else how long this caller should wait.

        The waits handed out are spread: each refusal is told a slot one token after the
        previous refusal's (up to MAX_WAIT), so ten thousand refused clients come back
        over the time the budget needs to admit them, not together a second later.
        """
        now = time.monotonic() if now is None else now
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return self.refuse(now, (1.0 - self.tokens) / self.rate)

    def refuse(self, now: float | None = None, at_least: float = 0.0) -> float:
        """The wait to give a refused caller: the slot after the previous refusal's, at least ``at_least``."""
        now = time.monotonic() if now is None else now
        self.promised = min(now + MAX_WAIT, max(now + at_least, self.promised + 1.0 / self.rate))
        return self.promised - now


class InFlight:
    """The handshakes admitted and not yet accepted or refused: at most ``limit`` at once.

    A rate alone does not bound the work: a process slower than its budget (a loaded
    machine) would let handshakes queue until Daphne's handshake timeout drops them
    (a failed handshake, not a 503). Entries older than STALE_AFTER seconds no longer
    count, so a handshake whose end was never reported cannot shut the door for good.
    """

    __slots__ = ("started", "serial")

    def __init__(self) -> None:
        self.started: dict[int, float] = {}
        self.serial = 0

    def enter(self, limit: int) -> int | None:
        """A slot for one more handshake, or None when ``limit`` are in flight."""
        if limit > 0 and len(self.started) >= limit:
            stale = time.monotonic() - STALE_AFTER
            for slot in [s for s, t in self.started.items() if t < stale]:
                del self.started[slot]
            if len(self.started) >= limit:
                return None
        self.serial += 1
        self.started[self.serial] = time.monotonic()
        return self.serial

    def leave(self, slot: int | None) -> None:
        """The handshake of ``slot`` ended (accepted or refused); idempotent."""
        if slot is not None:
            self.started.pop(slot, None)


# (setting name, rate, burst) -> its bucket: a changed setting (tests) gets a fresh one.
_buckets: dict[tuple[str, float, float], TokenBucket] = {}


def _bucket(name: str) -> TokenBucket | None:
    cfg = settings.REALTIME
    rate = float(cfg.get(f"ADMISSION_{name}_PER_SECOND", 0) or 0)
    if rate <= 0:
        return None
    burst = float(cfg.get(f"ADMISSION_{name}_BURST", 0) or rate)
    key = (name, rate, burst)
    bucket = _buckets.get(key)
    if bucket is None:
        bucket = _buckets[key] = TokenBucket(rate, burst)
    return bucket


def _take(name: str) -> float:
    bucket = _bucket(name)
    return bucket.take() if bucket is not None else 0.0


def retry_after_seconds(wait: float) -> int:
    """The whole seconds a ``Retry-After`` header says for a wait (at least 1)."""
    return max(1, math.ceil(wait))


_in_flight = InFlight()


def handshake_admit() -> tuple[int | None, float]:
    """Admit one handshake: (its in-flight slot, 0.0), or (None, the seconds to wait).

    Refused when over the rate, or when ``ADMISSION_HANDSHAKES_IN_FLIGHT`` handshakes
    are already being served. The slot is released by :func:`handshake_done`.
    """
    wait = _take("HANDSHAKES")
    if wait:
        return None, wait
    limit = int(settings.REALTIME.get("ADMISSION_HANDSHAKES_IN_FLIGHT", 0) or 0)
    if limit <= 0:
        return None, 0.0
    slot = _in_flight.enter(limit)
    if slot is None:
        # Busy serving those in flight: come back about when they are done (spread like a rate refusal).
        bucket = _bucket("HANDSHAKES")
        wait = bucket.refuse(at_least=1.0) if bucket is not None else 1.0
        return None, wait
    return slot, 0.0


def handshake_done(scope: dict[str, Any]) -> None:
    """The handshake of ``scope`` was accepted or refused: free its in-flight slot."""
    slot_done(scope.get(SCOPE_KEY))


def slot_done(slot: int | None) -> None:
    """:func:`handshake_done` for the slot itself (idempotent; None: no slot)."""
    _in_flight.leave(slot)


def handshakes_in_flight() -> int:
    """How many admitted handshakes are being served now."""
    return len(_in_flight.started)


def join_take() -> float:
    """Admit one join: 0.0, or the seconds to wait before the next one is admitted."""
    return _take("JOINS")
