"""The banned-words filter: compiled once per process, applied in the write path.

chat.services runs it before a message is stored or broadcast, so no socket, history
page or mention ever carries a masked word unmasked, and nothing waits for Celery.

The compiled filter is cached per process. A change to the words (through chat.services)
drops this process's copy when it commits and bumps ``BannedWordList.version``; every
other process compares that version with its own at most every
``MODERATION_CACHE_SECONDS``, so a change applies everywhere within that bound.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from time import monotonic

from django.conf import settings

from chat.models import BannedWord, BannedWordList


@dataclass(frozen=True)
class WordFilter:
    """The compiled words of one version of the list (``None``: no word of that action)."""

    version: int
    mask: re.Pattern[str] | None = None
    hide: re.Pattern[str] | None = None

    @property
    def active(self) -> bool:
        """Whether any word is banned (most deployments: none, and the filter costs nothing)."""
        return self.mask is not None or self.hide is not None

    def blocks(self, body: str) -> bool:
        """Whether the body contains a word whose action is *hide* (the post is refused)."""
        return self.hide is not None and self.hide.search(body) is not None

    def masked(self, body: str) -> str:
        """The body with every *mask* word starred out, letter for letter."""
        if self.mask is None:
            return body
        return self.mask.sub(lambda m: "*" * len(m.group(0)), body)


def _pattern(words: Iterable[str]) -> re.Pattern[str] | None:
    # Longest first, so "darned" is not cut short by "darn"; the lookarounds match whole
    # words even when a word starts or ends with punctuation (where \b would not).
    alternatives = sorted({re.escape(w) for w in words if w}, key=len, reverse=True)
    if not alternatives:
        return None
    return re.compile(r"(?<!\w)(?:" + "|".join(alternatives) + r")(?!\w)", re.IGNORECASE)


def word_filter_build(*, version: int, words: Iterable[tuple[str, str]]) -> WordFilter:
    """Compile ``(word, action)`` pairs into a filter."""
    pairs = list(words)
    return WordFilter(
        version=version,
        mask=_pattern(w for w, action in pairs if action == BannedWord.Action.MASK),
        hide=_pattern(w for w, action in pairs if action == BannedWord.Action.HIDE),
    )


def _stored_version() -> int:
    version = BannedWordList.objects.filter(pk=1).values_list("version", flat=True).first()
    return version or 0


def word_filter_load() -> WordFilter:
    """The filter as the database has it now (no cache: the Celery hook and the cache's refill)."""
    # The version is read before the words: a change in between leaves a newer list under
    # an older version, which the next check replaces; never an older list under a newer one.
    version = _stored_version()
    return word_filter_build(version=version, words=BannedWord.objects.values_list("word", "action"))


# (checked_at, filter): when this process last compared the version, and its filter.
_cache: tuple[float, WordFilter | None] = (0.0, None)


def word_filter() -> WordFilter:
    """This process's filter; the stored version is compared at most every MODERATION_CACHE_SECONDS."""
    global _cache
    checked_at, cached = _cache
    now = monotonic()
    if cached is not None and now - checked_at < settings.REALTIME["MODERATION_CACHE_SECONDS"]:
        return cached
    if cached is None or _stored_version() != cached.version:
        cached = word_filter_load()
    _cache = (now, cached)
    return cached


def word_filter_invalidate() -> None:
    """Drop this process's filter: the next message reads the list again (after a change commits)."""
    global _cache
    _cache = (0.0, None)
