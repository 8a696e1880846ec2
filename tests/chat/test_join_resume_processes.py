"""A join never misses or repeats a message, on a process that did not see it posted.

Two live Daphne processes share Redis and the database: messages are posted on one while
sockets on the other join with every kind of ``last_seq`` (none, 0, behind, the latest,
past it), before, during and after the posting, and again after that process restarted
(nothing of what it held survives). Each joining socket's own stream, read raw (no client
de-duplication), must hold each seq it is owed exactly once, whether the join was answered
from B's window of the room's stream (realtime.streams) or from the database; both are used.
"""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import httpx
import pytest
from asgiref.sync import sync_to_async
from websockets.asyncio.client import connect as ws_connect

from chat.models import Room
from tests import services
from tests.conftest import cookie_header

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]

POSTS = 30


@pytest.fixture(scope="module")
def pair(app_env: dict[str, str]) -> Any:
    """Two Daphne processes of this module's own (one is restarted by the test)."""
    env = {**app_env, "CHAT_RATE_BURST": "1000", "CHAT_RATE_PER_SECOND": "1000", "WS_MAX_CONNECTIONS_PER_USER": "1000"}
    a = services.daphne_service(env).start()
    b = services.daphne_service(env).start()
    yield a, b
    b.stop()
    a.stop()


async def _open(server: services.Service, cookie: str) -> Any:
    ws = await ws_connect(f"{server.ws_url}/ws/chat/", origin=f"http://127.0.0.1:{server.port}",
                          additional_headers={"Cookie": cookie}, open_timeout=20)
    assert json.loads(await ws.recv())["type"] == "hello"
    return ws


async def _seqs_until(ws: Any, final: int, timeout: float = 30) -> tuple[dict[str, Any], list[int]]:
    """The ``joined`` event and every message seq this socket got, read until ``final`` was
    reached and nothing more came for a moment (a late repeat would be caught)."""
    joined: dict[str, Any] | None = None
    seqs: list[int] = []
    async with asyncio.timeout(timeout):
        while True:
            done = joined is not None and max([joined["seq"], *seqs]) >= final
            try:
                raw = await asyncio.wait_for(ws.recv(), 0.7) if done else await ws.recv()
            except TimeoutError:
                assert joined is not None
                return joined, seqs
            event = json.loads(raw)
            if event["type"] == "joined":
                joined = event
            elif event["type"] in ("message", "message.deleted") and event.get("room") == "lobby":
                seqs.append(event["seq"])


async def _joins_by_source(server: services.Service) -> dict[str, float]:
    """The process's ``realtime_join_history_total`` by source (cache, database), from its /metrics."""
    text = (await asyncio.to_thread(httpx.get, f"{server.url}/metrics", timeout=10)).text
    found = re.findall(r'^realtime_join_history_total\{[^}]*source="(\w+)"[^}]*\} (\S+)$', text, re.M)
    return {source: float(value) for source, value in found}


def _owed(last_seq: int | None, joined: dict[str, Any], final: int, page: int) -> list[int]:
    if last_seq is None or joined["reset"]:
        return list(range(max(1, joined["seq"] - page + 1), final + 1))
    return list(range(last_seq + 1, final + 1))


async def _round(poster_ws: Any, joiner: services.Service, cookie: str, base: int) -> None:
    """Post POSTS messages on one process while sockets on the other join at every kind of position."""
    positions: list[int | None] = [None, 0, base // 2, base, base + 1000]
    sockets = [await _open(joiner, cookie) for _ in range(2 * len(positions))]

    async def post() -> None:
        for i in range(POSTS):
            await poster_ws.send(json.dumps({"type": "message", "room": "lobby", "body": f"r{base}-{i}",
                                             "client_id": f"c{base}-{i}"}))
            await asyncio.sleep(0.01)

    async def join(ws: Any, last_seq: int | None, delay: float) -> tuple[int | None, dict[str, Any], list[int]]:
        await asyncio.sleep(delay)
        frame: dict[str, Any] = {"type": "join", "room": "lobby"}
        if last_seq is not None:
            frame["last_seq"] = last_seq
        await ws.send(json.dumps(frame))
        joined, seqs = await _seqs_until(ws, base + POSTS)
        return last_seq, joined, seqs

    # Half join as the posts start, half while they are being posted; then, once every
    # post is stored and broadcast, a third set joins a quiet room.
    tasks = [join(ws, positions[i % len(positions)], 0.0 if i < len(positions) else 0.15)
             for i, ws in enumerate(sockets)]
    *results, _ = await asyncio.gather(*tasks, post())
    final = base + POSTS
    async with asyncio.timeout(30):  # the poster saw its last message: every post is stored
        while json.loads(await poster_ws.recv()).get("seq") != final:
            pass
    later = [await _open(joiner, cookie) for _ in positions]
    results += await asyncio.gather(*(join(ws, pos, 0.0) for ws, pos in zip(later, positions, strict=True)))
    sockets += later
    for last_seq, joined, seqs in results:
        assert len(seqs) == len(set(seqs)), f"repeated: last_seq={last_seq} {seqs}"
        owed = _owed(last_seq, joined, final, page=50)
        if last_seq is not None and last_seq > joined["seq"]:
            assert joined["reset"] is True  # a position past the room's: start over
        assert seqs == owed, f"last_seq={last_seq} joined={joined} got {seqs}"
    for ws in sockets:
        await ws.close()


async def test_joins_on_the_other_process_get_each_seq_exactly_once_across_a_restart(pair, people):
    """Messages posted on A; joins on B at every kind of last_seq, before and during the
    posting: each socket gets exactly the seqs after its position (or the latest page), in
    order, none twice; again after B restarted."""
    a, b = pair
    alice, bob = people
    poster_cookie = await sync_to_async(cookie_header)(alice)
    cookie = await sync_to_async(cookie_header)(bob)
    poster = await _open(a, poster_cookie)
    await poster.send(json.dumps({"type": "join", "room": "lobby"}))
    await _round(poster, b, cookie, base=0)
    assert await sync_to_async(lambda: Room.objects.get(slug="lobby").last_seq)() == POSTS
    used = await _joins_by_source(b)
    assert used.get("cache", 0) >= 4 and used.get("database", 0) >= 1, used
    await asyncio.to_thread(b.restart)
    await _round(poster, b, cookie, base=POSTS)
    used = await _joins_by_source(b)  # a new process: its window started from the database again
    assert used.get("cache", 0) >= 4 and used.get("database", 0) >= 1, used
    await poster.close()
