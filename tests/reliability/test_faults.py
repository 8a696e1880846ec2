"""Faults: the chat recovers by itself, and every committed message reaches every member once.

Each test runs its own Redis and Daphne processes (so killing them harms no other
test) against the shared test database, with two resuming clients (tests/reliability/
client.py) chatting across two processes: alice on the first, bob on the second.

The partition tests put a fault-injecting proxy (deploy/netproxy.py) on each process's
link to Redis: the app's ``REDIS_URL`` names its proxy, while the test and its checks
read the database (and could read Redis) directly, past the fault.
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
from django.db import connections

from deploy.netproxy import Proxy
from tests import services
from tests.reliability.client import ResumingClient

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]


class Cluster:
    """A Redis and two Daphne processes of their own.

    With ``links``, each Daphne reaches Redis through a proxy of its own: ``links[0]``
    carries the first process's traffic (alice's), ``links[1]`` the second's (bob's).
    """

    def __init__(self, app_env: dict[str, str], *, links: bool = False, **env: str) -> None:
        self.redis = services.redis_service().start()
        self.links = [Proxy(upstream_port=self.redis.port).start() for _ in range(2)] if links else []
        ports = [link.port for link in self.links] or [self.redis.port] * 2

        def app_env_via(port: int) -> dict[str, str]:
            url = f"redis://127.0.0.1:{port}/0"
            return {**app_env, "REDIS_URL": url, "CELERY_BROKER_URL": url, **env}

        self.d1 = services.daphne_service(app_env_via(ports[0])).start()
        self.d2 = services.daphne_service(app_env_via(ports[1])).start()

    def stop(self) -> None:
        for service in (self.d1, self.d2):
            service.stop()
        for link in self.links:
            link.stop()
        self.redis.stop()


@pytest.fixture
def cluster(app_env: dict[str, str]) -> Iterator[Cluster]:
    c = Cluster(app_env)
    yield c
    c.stop()


@pytest.fixture
def proxied_cluster(app_env: dict[str, str]) -> Iterator[Cluster]:
    """A cluster whose Daphnes reach Redis only through ``cluster.links``."""
    c = Cluster(app_env, links=True)
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


def round_trip(link: Proxy, *, timeout: float = 2.0) -> float | None:
    """Seconds a new client takes to connect and PING Redis through ``link``; None without an answer."""
    import redis

    client = redis.Redis(port=link.port, socket_timeout=timeout, socket_connect_timeout=timeout)
    started = time.monotonic()
    try:
        client.ping()
    except redis.TimeoutError:
        return None
    finally:
        client.close()
    return time.monotonic() - started


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


# --- the network between the app and Redis fails ----------------------------------------


async def test_every_redis_connection_reset_mid_conversation_loses_nothing(proxied_cluster, people):
    """Every app↔Redis connection reset, twice, mid-conversation: the chat recovers by itself, nothing lost or repeated.

    The first cut lands while the last messages before it are still being stored and
    published; the second, a second later, hits the connections made to recover.
    """
    links = proxied_cluster.links

    def cut_every_link() -> None:
        assert all([link.cut() > 0 for link in links]), "the app's Redis connections go through the links"

    def cut_again() -> None:
        for link in links:
            link.cut()

    clients = await conversation_with_fault(proxied_cluster, people, begin=cut_every_link, end=cut_again)
    assert [c.opened for c in clients] == [1, 1], "no member's socket had to reconnect"


async def test_redis_links_slowed_by_200_ms_each_way_lose_reorder_and_repeat_nothing(proxied_cluster, people):
    """200 ms added each way on every app↔Redis link for 5 s mid-conversation: each message arrives once, in order."""
    links = proxied_cluster.links

    def slow(delay: float) -> Callable[[], None]:
        def set_delay() -> None:
            for link in links:
                assert link.connections > 0, "the app's Redis connections go through the link"
                link.delay = delay

        return set_delay

    def slow_down() -> None:
        slow(0.2)()
        # Connecting and one PING: two round trips, each at least 2 × 200 ms.
        assert (round_trip(links[0], timeout=10) or 0) >= 0.8

    clients = await conversation_with_fault(
        proxied_cluster, people, begin=slow_down, end=slow(0.0), hold=5, in_order=True
    )
    assert [c.opened for c in clients] == [1, 1], "no member's socket had to reconnect"


async def test_silent_partition_from_redis_is_noticed_and_healed_without_new_messages(proxied_cluster, people):
    """alice's process loses Redis for 10 s without a reset; bob talks on: after it heals she has all, unprompted.

    Her process's link forwards nothing and answers nothing (a dropped route, not a
    closed socket), so only the hub's own health check can notice that its pub/sub
    connection went deaf. bob's process still reaches Redis, so his messages are
    committed and published during the partition and never reach alice's process.
    alice says nothing meanwhile, and nobody speaks after the heal before the first
    check: no later seq can reveal the gap to her client; her process must resync.
    """
    link = proxied_cluster.links[0]

    def partition() -> None:
        assert link.connections > 0, "the app's Redis connections go through the link"
        link.blackhole = True
        assert round_trip(link, timeout=1.0) is None, "nothing comes back through the link"

    def heal() -> None:
        link.blackhole = False

    clients = await conversation_with_fault(
        proxied_cluster, people, begin=partition, end=heal, hold=9, quiet="alice", timeout=60
    )
    assert clients[0].opened == 1, "alice stayed on her process: it caught her up by itself"


# --- the database fails -------------------------------------------------------------------


def _database_lock_hold(app_env: dict[str, str], locked: threading.Event, release: threading.Event) -> None:
    """Hold the lock a post needs until ``release``: SQLite's write lock, or PostgreSQL's on the rooms' table."""
    if "DATABASE_URL" in app_env:
        import psycopg

        with psycopg.connect(app_env["DATABASE_URL"]) as conn:
            # EXCLUSIVE blocks the UPDATE that takes a room's next seq; reads go on.
            conn.execute("LOCK TABLE chat_room IN EXCLUSIVE MODE")
            locked.set()
            release.wait(10)
            conn.rollback()
        return
    conn = sqlite3.connect(app_env["SQLITE_PATH"], timeout=5)
    conn.execute("BEGIN IMMEDIATE")
    locked.set()
    release.wait(10)
    conn.rollback()
    conn.close()


async def _post_refused_then_retried(
    clients: list[ResumingClient], sent: list[str], body: str, *, database_up: bool = True
) -> None:
    """alice's ``body`` is refused with `unavailable` and (``database_up``: checked) stored nowhere."""
    from chat.models import Message

    alice = clients[0]
    errors_before = len(alice.errors)
    await alice.say(body)
    deadline = time.monotonic() + 15
    while len(alice.errors) == errors_before and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    assert alice.errors[-1]["code"] == "unavailable"
    if database_up:
        assert await sync_to_async(Message.objects.filter(body=body).count)() == 0
    sent.append(body)  # the client retries it with the same client_id


async def test_locked_database_fails_the_write_clearly_and_sends_nothing_half_done(app_env, people):
    """With the database locked, a post gets `unavailable`; nothing is stored or broadcast; a retry works."""
    cluster = Cluster(app_env, SQLITE_TIMEOUT="1", DB_LOCK_TIMEOUT_MS="1000")
    clients = await start_clients(cluster, people)
    try:
        sent = await chat(clients, "before", 2)
        for c in clients:
            await c.settle()
        locked = threading.Event()
        release = threading.Event()
        holder = threading.Thread(target=_database_lock_hold, args=(app_env, locked, release))
        holder.start()
        assert locked.wait(5)
        try:
            await _post_refused_then_retried(clients, sent, "while locked")
        finally:
            release.set()
            holder.join()
        await everyone_has_everything(clients, sent)
    finally:
        for c in clients:
            await c.stop()
        cluster.stop()


@pytest.fixture
def reconnect_database(transactional_db: Any) -> Iterator[None]:
    """After a test that restarts the database server: drop this thread's cut connections."""
    yield
    connections.close_all()


async def test_database_restart_fails_the_write_clearly_and_the_chat_goes_on(
    app_env, people, postgres, reconnect_database
):
    """PostgreSQL down mid-conversation: a post gets `unavailable`, nothing is half done; once it is
    back every process reconnects by itself and every message reaches everyone once."""
    if postgres is None:
        pytest.skip("a database server to restart: TEST_DATABASE=postgres (make test runs it)")
    cluster = Cluster(app_env)
    clients = await start_clients(cluster, people)
    try:
        sent = await chat(clients, "before", 2)
        for c in clients:
            await c.settle()
        await asyncio.to_thread(postgres.stop, "fast")
        try:
            await _post_refused_then_retried(clients, sent, "while down", database_up=False)
        finally:
            await asyncio.to_thread(postgres.start)
            # This test's own connection was cut too: reconnect it for the checks below.
            await sync_to_async(connections.close_all)()
        sent += await chat(clients, "after", 2)
        await everyone_has_everything(clients, sent)
    finally:
        for c in clients:
            await c.stop()
        cluster.stop()
