"""A burst of handshakes against a live Daphne: the pinned redis-py must not fail any of them.

requirements.txt pins redis-py 6.4.0 because 8.x with channels-redis 4.3.0 fails bursts
of concurrent handshakes with ``MaxConnectionsError`` (HTTP 500). Each handshake here
runs the whole path: Origin check, session lookup, the per-user connection cap in Redis,
two channel-layer ``group_add`` calls, accept, and the ``hello`` frame.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus

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
