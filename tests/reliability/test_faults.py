"""Faults: the chat recovers by itself, and every committed message reaches every member once.

Each test runs its own Redis and Daphne processes (so killing them harms no other
test) against the shared test database, with two resuming clients (tests/reliability/
client.py) chatting across two processes: alice on the first, bob on the second.
"""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from asgiref.sync import sync_to_async

from tests import services
from tests.reliability.client import ResumingClient

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]


class Cluster:
    """A Redis and two Daphne processes of their own."""

    def __init__(self, app_env: dict[str, str], **env: str) -> None:
        self.redis = services.redis_service().start()
        url = f"redis://127.0.0.1:{self.redis.port}/0"
        self.env = {**app_env, "REDIS_URL": url, "CELERY_BROKER_URL": url, **env}
        self.d1 = services.daphne_service(self.env).start()
        self.d2 = services.daphne_service(self.env).start()

    def stop(self) -> None:
        for service in (self.d1, self.d2, self.redis):
            service.stop()


@pytest.fixture
def cluster(app_env: dict[str, str]) -> Iterator[Cluster]:
    c = Cluster(app_env)
    yield c
    c.stop()


async def chat(clients: list[ResumingClient], prefix: str, n: int) -> list[str]:
    bodies = []
    for i in range(n):
        for c in clients:
            body = f"{prefix}-{c.user.username}-{i}"
            bodies.append(body)
            await c.say(body)
        await asyncio.sleep(0.02)
    return bodies


async def everyone_has_everything(
    clients: list[ResumingClient], sent: list[str], *, timeout: float = 40, in_order: bool = False
) -> None:
    """Every message was stored once, and each client saw every seq exactly once, with its body.

    ``in_order``: also, each sender's messages got seqs in the order they were sent (true
    when no send had to be retried).
    """
    from chat.models import Message, Room

    for c in clients:
        await c.settle(timeout=timeout)
    bodies = await sync_to_async(lambda: list(Message.objects.order_by("seq").values_list("body", flat=True)))()
    assert sorted(bodies) == sorted(sent), "each message stored exactly once"
    last = await sync_to_async(lambda: Room.objects.get(slug="lobby").last_seq)()
    assert last == len(sent)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(set(c.seqs) != set(range(1, last + 1)) for c in clients):
        await asyncio.sleep(0.2)
    for c in clients:
        assert set(c.seqs) == set(range(1, last + 1)), f"{c.user}: missing {set(range(1, last + 1)) - set(c.seqs)}"
        assert all(count == 1 for count in c.seqs.values())
        assert [c.shown[seq] for seq in range(1, last + 1)] == bodies, f"{c.user}: a seq showed another body"
    if in_order:
        for c in clients:
            mine = f"-{c.user.username}-"
            assert [b for b in bodies if mine in b] == [b for b in sent if mine in b], f"{c.user}: reordered"


async def start_clients(cluster: Cluster, people: Any) -> list[ResumingClient]:
    alice, bob = people
    a = await ResumingClient(alice, [cluster.d1.ws_url, cluster.d2.ws_url]).start()
    b = await ResumingClient(bob, [cluster.d2.ws_url, cluster.d1.ws_url]).start()
    return [a, b]


async def conversation_with_fault(
    cluster: Cluster,
    people: Any,
    *,
    begin: Callable[[], object],
    end: Callable[[], object] | None = None,
    hold: float = 1.0,
    rounds: int = 3,
    quiet: str | None = None,
    in_order: bool = False,
    timeout: float = 40,
) -> list[ResumingClient]:
    """Chat; ``begin`` a fault; chat on through it for ``hold`` seconds; ``end`` it; check; chat; check.

    The first check comes before anyone speaks again, so no later message can reveal a
    gap to a client: the chat must have recovered by itself. The second shows that it
    goes on working. Each check: every message stored once, every member saw every seq
    exactly once (everyone_has_everything). ``quiet``: the username of a member who
    says nothing while the fault lasts. ``begin`` and ``end`` run in a thread (they may
    block, as starting Redis does). Returns the (stopped) clients, for what they recorded.
    """
    clients = await start_clients(cluster, people)
    try:
        sent = await chat(clients, "before", rounds)
        await sync_to_async(begin)()
        try:
            talkers = [c for c in clients if c.user.get_username() != quiet]
            sent += await chat(talkers, "during", rounds)
            await asyncio.sleep(hold)
        finally:
            if end is not None:
                await sync_to_async(end)()
        await everyone_has_everything(clients, sent, timeout=timeout, in_order=in_order)
        sent += await chat(clients, "after", rounds)
        await everyone_has_everything(clients, sent, timeout=timeout, in_order=in_order)
    finally:
        for c in clients:
            await c.stop()
    return clients


# --- processes die or freeze ---------------------------------------------------------


async def test_redis_killed_and_restarted_mid_conversation_loses_nothing(cluster, people):
    """SIGKILL Redis mid-conversation, start it again empty: both members end with every message once."""
    await conversation_with_fault(
        cluster, people, begin=lambda: cluster.redis.kill(signal.SIGKILL), end=cluster.redis.start, rounds=5
    )


async def test_redis_frozen_for_ten_seconds_then_resumed_loses_nothing(cluster, people):
    """SIGSTOP Redis for 10 s mid-conversation, then SIGCONT: everything arrives once."""
    await conversation_with_fault(
        cluster, people, begin=lambda: cluster.redis.kill(signal.SIGSTOP),
        end=lambda: cluster.redis.kill(signal.SIGCONT), hold=10, timeout=60,
    )


async def test_daphne_killed_with_clients_on_it_they_move_and_resume(cluster, people):
    """SIGKILL the process alice is on: she moves to the other one, resumes, and presence heals."""
    await conversation_with_fault(cluster, people, begin=lambda: cluster.d1.kill(signal.SIGKILL), hold=0)


# --- the database fails -------------------------------------------------------------------


async def test_locked_database_fails_the_write_clearly_and_sends_nothing_half_done(app_env, people):
    """With the database locked, a post gets `unavailable`; nothing is stored or broadcast; a retry works."""
    from chat.models import Message

    cluster = Cluster(app_env, SQLITE_TIMEOUT="1")
    clients = await start_clients(cluster, people)
    try:
        sent = await chat(clients, "before", 2)
        for c in clients:
            await c.settle()
        locked = threading.Event()
        release = threading.Event()

        def hold_lock() -> None:
            conn = sqlite3.connect(app_env["SQLITE_PATH"], timeout=5)
            conn.execute("BEGIN IMMEDIATE")
            locked.set()
            release.wait(10)
            conn.rollback()
            conn.close()

        holder = threading.Thread(target=hold_lock)
        holder.start()
        locked.wait(5)
        alice = clients[0]
        errors_before = len(alice.errors)
        await alice.say("while locked")
        deadline = time.monotonic() + 10
        while len(alice.errors) == errors_before and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        assert alice.errors[-1]["code"] == "unavailable"
        assert await sync_to_async(Message.objects.filter(body="while locked").count)() == 0
        release.set()
        holder.join()
        sent.append("while locked")  # the client retries it with the same client_id
        await everyone_has_everything(clients, sent)
    finally:
        for c in clients:
            await c.stop()
        cluster.stop()
