"""The push API: sync callers (Celery workers) reuse one event loop and its Redis connections."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
import redis

from realtime import broadcast, push
from realtime.runtime import background_loop


def _clients(port: int) -> int:
    return len(redis.Redis(port=port).client_list())


def test_sync_pushes_reuse_one_loop_and_one_set_of_connections(redis_service):
    """200 pushes from a worker-like thread (no event loop) open no new connection after the first."""
    results: dict[str, object] = {}

    def worker() -> None:
        push.push_everyone({"type": "announcement", "body": "warm-up"})
        results["loop"] = background_loop()
        results["before"] = _clients(redis_service.port)
        for i in range(200):
            push.push_user(1, {"type": "mention", "body": str(i)}, event_id=f"e{i}")
            push.push_room("lobby", {"type": "announcement", "body": str(i)})
        results["after"] = _clients(redis_service.port)
        results["loop_after"] = background_loop()

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join(timeout=60)
    assert results["loop"] is results["loop_after"]
    # The measuring client itself is one connection; pushes add none.
    assert results["after"] <= results["before"] + 1, results


@pytest.mark.django_db(transaction=True)
async def test_push_reaches_a_subscriber_and_counts_sockets(make_user):
    """A pushed event reaches a subscriber of the user's topic in the envelope every broadcast
    has (``ts`` included); the count is the user's open sockets."""
    from asgiref.sync import sync_to_async

    from realtime import presence

    alice = await sync_to_async(make_user)("alice")
    await presence.connection_open(user_id=alice.pk, conn_id="c1")
    async with broadcast.alisten(broadcast.user_group(alice.pk)) as queue:
        sent_to = await push.apush_user(alice.pk, {"type": "mention", "body": "hi"}, event_id="m-1")
        message = await asyncio.wait_for(queue.get(), 5)
    assert message["type"] == broadcast.EVENT
    assert set(message) == set(broadcast.user_envelope({})) and abs(message["ts"] - time.time()) < 5
    assert message["event"] == {"type": "mention", "body": "hi", "event_id": "m-1"}
    assert sent_to == 1
    await presence.connection_close(user_id=alice.pk, conn_id="c1")


def test_sync_push_from_async_code_is_refused():
    """Calling the sync API inside a running loop is a programming error, reported clearly."""
    import asyncio

    async def misuse() -> None:
        push.push_everyone({"type": "announcement", "body": "x"})

    with pytest.raises(RuntimeError, match="await the a-prefixed function"):
        asyncio.run(misuse())
