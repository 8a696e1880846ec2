"""Faults: the chat recovers by itself, and every committed message reaches every member once.

Each test runs its own Redis and Daphne processes (so killing them harms no other
test) against the shared test database, with two resuming clients (tests/reliability/
client.py) chatting across two processes.
"""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import threading
import time
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
def cluster(app_env):
    c = Cluster(app_env)
    yield c
    c.stop()


@pytest.fixture
def people(make_user, lobby):
    return make_user("alice"), make_user("bob")


async def chat(clients: list[ResumingClient], prefix: str, n: int) -> list[str]:
    bodies = []
    for i in range(n):
        for c in clients:
            body = f"{prefix}-{c.user.username}-{i}"
            bodies.append(body)
            await c.say(body)
        await asyncio.sleep(0.02)
    return bodies


async def everyone_has_everything(clients: list[ResumingClient], sent: list[str], *, timeout: float = 40) -> None:
    """Every message was stored once, and each client saw every seq exactly once."""
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


async def start_clients(cluster: Cluster, people: Any) -> list[ResumingClient]:
    alice, bob = people
    a = await ResumingClient(alice, [cluster.d1.ws_url, cluster.d2.ws_url]).start()
    b = await ResumingClient(bob, [cluster.d2.ws_url, cluster.d1.ws_url]).start()
    return [a, b]


async def test_redis_killed_and_restarted_mid_conversation_loses_nothing(cluster, people):
    """SIGKILL Redis mid-conversation, start it again empty: both members end with every message once."""
    clients = await start_clients(cluster, people)
    try:
        sent = await chat(clients, "before", 5)
        cluster.redis.kill(signal.SIGKILL)
        sent += await chat(clients, "during", 3)
        await asyncio.sleep(1.0)
        await sync_to_async(cluster.redis.start)()
        sent += await chat(clients, "after", 5)
        await everyone_has_everything(clients, sent)
    finally:
        for c in clients:
            await c.stop()


async def test_redis_frozen_for_ten_seconds_then_resumed_loses_nothing(cluster, people):
    """SIGSTOP Redis for 10 s mid-conversation, then SIGCONT: everything arrives once."""
    clients = await start_clients(cluster, people)
    try:
        sent = await chat(clients, "before", 3)
        cluster.redis.kill(signal.SIGSTOP)
        try:
            sent += await chat(clients, "frozen", 2)
            await asyncio.sleep(10)
        finally:
            cluster.redis.kill(signal.SIGCONT)
        sent += await chat(clients, "after", 3)
        await everyone_has_everything(clients, sent, timeout=60)
    finally:
        for c in clients:
            await c.stop()


async def test_daphne_killed_with_clients_on_it_they_move_and_resume(cluster, people):
    """SIGKILL the process alice is on: she moves to the other one, resumes, and presence heals."""
    clients = await start_clients(cluster, people)
    try:
        sent = await chat(clients, "before", 3)
        cluster.d1.kill(signal.SIGKILL)
        sent += await chat(clients, "after", 3)
        await everyone_has_everything(clients, sent)
    finally:
        for c in clients:
            await c.stop()


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
