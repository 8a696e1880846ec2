"""Group commit: the messages that arrive while a write is in flight are written together.

Each event loop (one per server process) has one :class:`GroupCommit`. A socket's
``message`` frame queues a :class:`chat.services.MessageDraft` and waits; while no batch
is being written, the next one starts at once with everything queued so far, in one
transaction (``chat.services.messages_post``), then publishes it together (the
runtime's outbox pipelines what the commit hooks queued). A lone message is a batch of
one: the write path is the same whatever the load.

Only one batch per process is in flight at a time: Django's database calls from async
code already share one thread (``database_sync_to_async``), so a second batch could only
wait behind the first; gathering the waiters into it instead turns N commits into one.
"""

from __future__ import annotations

import asyncio
import contextvars
import weakref
from typing import Any

from channels.db import database_sync_to_async

from chat import services
from chat.models import Message

#: At most this many drafts per transaction (a bigger queue is written in several).
BATCH_MAX = 500

_writers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, GroupCommit] = weakref.WeakKeyDictionary()


class GroupCommit:
    """One loop's queue of drafts and the task that writes them in batches."""

    def __init__(self) -> None:
        self.pending: list[tuple[services.MessageDraft, asyncio.Future]] = []
        self.task: asyncio.Task | None = None
        #: How many batches and drafts were written (tests and the bench read these).
        self.batches = 0
        self.drafts = 0

    async def post(self, draft: services.MessageDraft) -> tuple[Message, bool]:
        """Write ``draft`` with whatever else is queued; its ``(message, created)`` or its refusal raised."""
        return await self.submit(draft)

    def submit(self, draft: services.MessageDraft) -> asyncio.Future:
        """Queue ``draft`` now (drafts are written in the order they were queued); the future of ``post``'s answer."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future = loop.create_future()
        self.pending.append((draft, future))
        if self.task is None or self.task.done():
            # A fresh context: not the one of the frame that happened to start it.
            self.task = loop.create_task(self._drain(), name="chat-group-commit", context=contextvars.Context())
        return future

    async def _drain(self) -> None:
        write = database_sync_to_async(services.messages_post)
        while self.pending:
            batch, self.pending = self.pending[:BATCH_MAX], self.pending[BATCH_MAX:]
            self.batches += 1
            self.drafts += len(batch)
            try:
                outcomes: list[Any] = await write(drafts=[draft for draft, _ in batch])
            except asyncio.CancelledError:  # the loop is stopping
                for _, future in batch:
                    future.cancel()
                raise
            except Exception as exc:  # the whole batch failed (database down): every poster hears it
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for (_, future), outcome in zip(batch, outcomes, strict=True):
                if future.done():  # its socket went away meanwhile
                    continue
                if isinstance(outcome, Exception):
                    future.set_exception(outcome)
                else:
                    future.set_result(outcome)


def group_commit() -> GroupCommit:
    """The running loop's group commit (created on first use)."""
    loop = asyncio.get_running_loop()
    writer = _writers.get(loop)
    if writer is None:
        writer = _writers[loop] = GroupCommit()
    return writer
