"""realtime.runtime: one object per event loop owns the core's state, and stopping it leaves nothing behind.

Against the session's real Redis and the full ASGI stack (WebsocketCommunicator): the
registry of open sockets is the one drain, re-check and presence refresh use; a stopped
runtime has no task running and no Redis connection open; pushes travel in the same
envelope as every broadcast and count in the fan-out latency metric.
"""

from __future__ import annotations

import ast
import asyncio
import re
import threading
from pathlib import Path
from typing import Any

import pytest
import redis
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator

from realtime import broadcast, drain, metrics, presence, push
from realtime.protocol import CloseCode
from realtime.redis_pool import redis_async
from realtime.runtime import Runtime, background_loop, runtime
from tests.conftest import cookie_header

ORIGIN = (b"origin", b"http://127.0.0.1:8000")
REALTIME = Path(__file__).resolve().parents[2] / "realtime"


async def _connect(user: Any) -> WebsocketCommunicator:
    from realtime.asgi import application

    cookie = await sync_to_async(cookie_header)(user)
    comm = WebsocketCommunicator(application, "/ws/chat/", headers=[ORIGIN, (b"cookie", cookie.encode())])
    connected, _ = await comm.connect(timeout=5)
    assert connected
    assert (await comm.receive_json_from(timeout=5))["type"] == "hello"
    return comm


async def _next(comm: WebsocketCommunicator, type_: str) -> dict[str, Any]:
    while True:
        event = await comm.receive_json_from(timeout=5)
        if event["type"] == type_:
            return event


def _sockets_of(user: Any) -> list[Any]:
    return [s for s in runtime().sockets if s.user is not None and s.user.pk == user.pk]


def _fanout_count() -> float:
    body = metrics.exposition()
    text = body.decode() if isinstance(body, bytes) else body
    found = re.search(r"^realtime_fanout_latency_seconds_count(?:\{[^}]*\})? (\S+)$", text, re.M)
    return float(found.group(1)) if found else 0.0


def _client_ids(port: int) -> set[int]:
    return {c["id"] for c in redis.Redis(port=port).client_list()}


def test_each_loop_has_one_runtime_of_its_own() -> None:
    """Within a loop every call returns the same runtime; another loop (a test's, the sync
    callers' background loop) has its own."""

    async def twice() -> tuple[Runtime, Runtime]:
        return runtime(), runtime()

    first, again = asyncio.run(twice())
    assert first is again
    other, _ = asyncio.run(twice())
    assert other is not first
    background = asyncio.run_coroutine_threadsafe(twice(), background_loop()).result(5)[0]
    assert background is not first and background is not other
    assert background.loop is background_loop()


def test_stop_leaves_no_task_running_and_closes_every_redis_connection(redis_service: Any) -> None:
    """A runtime that ran every task it has (hub reader, outbox, presence refresh, re-check,
    long-poll sweep) and used Redis ends, on stop(), with none of its tasks alive and every
    connection it opened closed; the loop's next runtime is a new one."""
    before = _client_ids(redis_service.port)
    seen: dict[str, Any] = {}

    async def life() -> None:
        rt = runtime()
        rt.start()
        rt.run("longpoll-sweep", lambda: asyncio.sleep(3600))
        async with broadcast.alisten("runtime-stop") as queue:  # starts the hub's reader
            rt.outbox.put("runtime-stop", broadcast.user_envelope({"type": "tick"}))  # the outbox's task
            assert (await asyncio.wait_for(queue.get(), 5))["event"] == {"type": "tick"}
            await redis_async().ping()  # the loop's command client
            seen["opened"] = _client_ids(redis_service.port) - before
            seen["tasks"] = [*rt.tasks.values(), rt.hub.reader, rt.outbox.task]
            await rt.stop()
        seen["left"] = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        seen["next"] = runtime() is not rt
        await runtime().stop()

    asyncio.run(life())
    assert len(seen["opened"]) >= 3, seen  # pub/sub, publisher, commands
    assert all(t.done() for t in seen["tasks"]), seen["tasks"]
    assert seen["left"] == []
    assert seen["next"]
    assert not seen["opened"] & _client_ids(redis_service.port), "a connection of the stopped runtime is open"


@pytest.mark.django_db(transaction=True)
async def test_the_registry_holds_an_open_socket_and_forgets_a_closed_one(alice: Any) -> None:
    """An accepted socket is in its loop's registry (one entry, nothing else per socket), and
    leaves it on disconnect."""
    comm = await _connect(alice)
    assert len(_sockets_of(alice)) == 1
    await comm.disconnect(timeout=5)
    assert _sockets_of(alice) == []


@pytest.mark.django_db(transaction=True)
async def test_the_presence_refresh_reads_the_registry_and_announces_a_return(alice: Any, bob: Any, lobby: Any) -> None:
    """The refresh finds a joined socket's entry through the registry: swept while the socket
    lived (a stall), it is put back and the room hears the user came back."""
    a, b = await _connect(alice), await _connect(bob)
    for comm in (a, b):
        await comm.send_json_to({"type": "join", "room": "lobby"})
        await _next(comm, "joined")
    # The runtime's own timer refreshes too: stop it, so the refresh below is the one that acts.
    timer = runtime().tasks.get("presence-refresh")
    if timer is not None:
        timer.cancel()
        await asyncio.gather(timer, return_exceptions=True)
    # What a sweep does to expired entries: alice's are gone from Redis while her socket lives.
    # (Every entry of hers in the room, read from Redis: a socket of an earlier test of this
    # process that finished connecting late may hold one too.)
    for raw in await redis_async().zrange(presence._conns_key("lobby"), 0, -1):
        name, conn_id = raw.decode().rsplit("|", 1)
        if name == "alice":
            await presence.presence_leave(room="lobby", username="alice", conn_id=conn_id)
    assert await presence.presence_list(room="lobby") == ["bob"]
    await runtime().presence_refresh()
    event = await _next(b, "presence")
    assert (event["joined"], event["left"]) == (["alice"], [])
    assert await presence.presence_list(room="lobby") == ["alice", "bob"]
    await a.disconnect(timeout=5)
    await b.disconnect(timeout=5)


@pytest.mark.django_db(transaction=True)
async def test_the_session_recheck_closes_a_registered_socket_whose_session_ended(alice: Any, bob: Any) -> None:
    """The periodic re-check asks about every socket in the registry: the one whose session
    was deleted elsewhere is closed with SESSION_ENDED, the other stays open."""
    from django.contrib.sessions.models import Session

    a, b = await _connect(alice), await _connect(bob)
    key = _sockets_of(alice)[0].scope["auth_session_key"]
    await sync_to_async(Session.objects.filter(session_key=key).delete)()
    await runtime().recheck()
    closed = await a.receive_output(timeout=5)
    assert (closed["type"], closed["code"]) == ("websocket.close", CloseCode.SESSION_ENDED)
    assert await b.receive_nothing(timeout=0.3)
    await a.wait(timeout=5)
    await b.disconnect(timeout=5)


@pytest.mark.django_db(transaction=True)
async def test_shutdown_drains_through_the_runtime_and_stops_it(alice: Any) -> None:
    """Daphne's shutdown hook (realtime.drain) closes every open socket with GOING_AWAY through
    the runtime's registry, then stops the runtime: no task left, a fresh runtime next."""
    comm = await _connect(alice)
    rt = runtime()
    assert rt.tasks, "the first socket starts the runtime's tasks"
    await drain.shutdown()
    closed = await comm.receive_output(timeout=5)
    assert (closed["type"], closed["code"]) == ("websocket.close", CloseCode.GOING_AWAY)
    assert rt.stopped and all(t.done() for t in rt.tasks.values()) and not rt.sockets
    assert runtime() is not rt
    await comm.wait(timeout=5)


@pytest.mark.django_db(transaction=True)
async def test_a_push_carries_ts_and_counts_in_the_fanout_latency(alice: Any) -> None:
    """A pushed event reaches the user's open socket in the same envelope as every broadcast,
    so its delivery is observed by ``realtime_fanout_latency_seconds``."""
    comm = await _connect(alice)
    before = _fanout_count()
    assert await push.apush_user(alice.pk, {"type": "announcement", "body": "hi"}, event_id="p-1") == 1
    event = await _next(comm, "announcement")
    assert event["body"] == "hi"
    assert _fanout_count() == before + 1
    await comm.disconnect(timeout=5)


def test_no_module_of_realtime_imports_one_that_imports_it_back() -> None:
    """realtime/ has no import cycle (imports inside functions included): broadcast and
    presence, runtime and its users, stand in layers."""
    names = {p.stem for p in REALTIME.glob("*.py")}
    graph: dict[str, set[str]] = {}
    for name in names:
        deps: set[str] = set()
        for node in ast.walk(ast.parse((REALTIME / f"{name}.py").read_text())):
            if isinstance(node, ast.ImportFrom) and node.module == "realtime":
                deps |= {a.name for a in node.names if a.name in names}
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("realtime."):
                deps.add(node.module.split(".")[1])
            elif isinstance(node, ast.Import):
                deps |= {a.name.split(".")[1] for a in node.names if a.name.startswith("realtime.")}
        graph[name] = deps & names - {name}

    def chain(start: str) -> list[str] | None:
        stack = [(start, [start])]
        seen: set[str] = set()
        while stack:
            module, path = stack.pop()
            for dep in graph[module]:
                if dep == start:
                    return path + [dep]
                if dep not in seen:
                    seen.add(dep)
                    stack.append((dep, path + [dep]))
        return None

    cycles = [c for c in map(chain, sorted(graph)) if c]
    assert not cycles, " ; ".join(" -> ".join(c) for c in cycles)


def test_the_sync_loop_is_started_once_per_process() -> None:
    """Sync callers from many threads share one background loop (and so one runtime)."""
    loops: list[Any] = []
    threads = [threading.Thread(target=lambda: loops.append(background_loop())) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(5)
    assert len(loops) == 8 and all(loop is loops[0] for loop in loops)
