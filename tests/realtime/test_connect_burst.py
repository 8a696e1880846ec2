"""A burst of handshakes against a live Daphne: the pinned redis-py must not fail any of them.

requirements.txt pins redis-py 6.4.0 because 8.x with channels-redis 4.3.0 fails bursts
of concurrent handshakes with ``MaxConnectionsError`` (HTTP 500). The project has no
channel layer any more, but the benchmark's stock chat does (bench/fanout/stock_settings.py),
so the pin is proven on both: the project's handshake (Origin check, session lookup, the
per-user connection cap in Redis, the hub's subscriptions, accept, the ``hello`` frame) and
the stock chat's (``group_add`` on channels-redis, accept, then a ``group_send`` to all).
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus

from tests import services
from tests.conftest import cookie_header

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]

SOCKETS = 100
USERS = 10  # 10 sockets each: well under MAX_CONNECTIONS_PER_USER (20)
DEADLINE = 20.0


@pytest.fixture
def cookies(make_user, settings) -> list[str]:
    """One real session cookie per user, for USERS committed users (visible to Daphne)."""
    assert SOCKETS // USERS < settings.REALTIME["MAX_CONNECTIONS_PER_USER"]
    return [cookie_header(make_user(f"burst{i}")) for i in range(USERS)]


async def _handshake(url: str, origin: str, cookie: str) -> tuple[ClientConnection | None, Any]:
    """Open one socket and read its first frame; return (socket, hello) or (None, the failure)."""
    try:
        ws = await connect(
            url, origin=origin, additional_headers={"Cookie": cookie}, open_timeout=DEADLINE, max_queue=None
        )
    except InvalidStatus as exc:
        return None, exc.response.status_code
    except Exception as exc:  # noqa: BLE001 - reported below
        return None, repr(exc)
    try:
        return ws, await asyncio.wait_for(ws.recv(), timeout=DEADLINE)
    except Exception as exc:  # noqa: BLE001 - reported below
        return ws, repr(exc)


async def test_burst_of_100_concurrent_handshakes_all_succeed(daphne: Any, cookies: list[str]) -> None:
    """100 authenticated handshakes at once: every one gets accepted and its hello; no HTTP 500."""
    url = f"{daphne.ws_url}/ws/chat/"
    origin = f"http://127.0.0.1:{daphne.port}"
    started = time.monotonic()
    results = await asyncio.gather(*(_handshake(url, origin, cookies[i % USERS]) for i in range(SOCKETS)))
    elapsed = time.monotonic() - started
    sockets = [ws for ws, _ in results if ws is not None]
    try:
        failures = [outcome for ws, outcome in results if ws is None]
        assert 500 not in failures, f"HTTP 500 during the burst; daphne log:\n{daphne.log()[-4000:]}"
        assert failures == [], f"{len(failures)} handshakes failed: {failures[:10]}"
        hellos = [json.loads(outcome) for _, outcome in results]
        assert all(h["type"] == "hello" for h in hellos), hellos[:5]
        by_user: dict[str, int] = {}
        for h in hellos:
            by_user[h["user"]] = by_user.get(h["user"], 0) + 1
        assert by_user == {f"burst{i}": SOCKETS // USERS for i in range(USERS)}
        assert elapsed < DEADLINE, f"the burst took {elapsed:.1f} s"
        assert "MaxConnectionsError" not in daphne.log()
    finally:
        await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)


@pytest.fixture
def stock_daphne(app_env: dict[str, str]) -> Any:
    """The benchmark's stock tutorial chat on stock Daphne, its channel layer on the session's Redis."""
    port = services.free_port()
    server = services.Service(
        f"stock-daphne-{port}",
        [str(services.BIN / "daphne"), "-b", "127.0.0.1", "-p", str(port), "-v", "0",
         "bench.fanout.stock_asgi:application"],
        env={**app_env, "DJANGO_SETTINGS_MODULE": "bench.fanout.stock_settings"}, port=port,
    ).start()
    yield server
    server.stop()


async def test_burst_of_100_concurrent_handshakes_on_the_stock_chat_all_succeed(stock_daphne: Any) -> None:
    """100 handshakes at once on the channels-redis chat: every one accepted, no HTTP 500, and a message
    then reaches all 100 through the layer's group."""
    url = f"{stock_daphne.ws_url}/ws/stock/burst/"
    origin = f"http://127.0.0.1:{stock_daphne.port}"
    started = time.monotonic()

    async def open_one() -> ClientConnection | Any:
        try:
            return await connect(url, origin=origin, open_timeout=DEADLINE, max_queue=None)
        except InvalidStatus as exc:
            return exc.response.status_code
        except Exception as exc:  # noqa: BLE001 - reported below
            return repr(exc)

    results = await asyncio.gather(*(open_one() for _ in range(SOCKETS)))
    elapsed = time.monotonic() - started
    sockets = [ws for ws in results if isinstance(ws, ClientConnection)]
    try:
        failures = [outcome for outcome in results if not isinstance(outcome, ClientConnection)]
        assert 500 not in failures, f"HTTP 500 during the burst; daphne log:\n{stock_daphne.log()[-4000:]}"
        assert failures == [], f"{len(failures)} handshakes failed: {failures[:10]}"
        assert elapsed < DEADLINE, f"the burst took {elapsed:.1f} s"
        await sockets[0].send(json.dumps({"message": "after the burst"}))
        got = await asyncio.gather(*(asyncio.wait_for(ws.recv(), DEADLINE) for ws in sockets))
        assert [json.loads(g) for g in got] == [{"message": "after the burst"}] * SOCKETS
        assert "MaxConnectionsError" not in stock_daphne.log()
    finally:
        await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
