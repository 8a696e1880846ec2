"""Graceful drain: SIGTERM to Daphne closes every socket with "going away" (4000) so clients reconnect elsewhere."""

from __future__ import annotations

import asyncio
import json
import signal

import pytest
from asgiref.sync import sync_to_async
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from realtime.protocol import CloseCode
from tests import services
from tests.conftest import cookie_header

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]


async def test_sigterm_closes_open_sockets_with_going_away(app_env, make_user, lobby):
    """Every open chat socket gets close code GOING_AWAY before the process exits."""
    server = services.daphne_service(app_env).start()
    try:
        alice = await sync_to_async(make_user)("alice")
        cookie = await sync_to_async(cookie_header)(alice)
        sockets = []
        for _ in range(3):
            ws = await connect(f"{server.ws_url}/ws/chat/", origin=server.url, additional_headers={"Cookie": cookie})
            await ws.recv()
            await ws.send(json.dumps({"type": "join", "room": "lobby"}))
            sockets.append(ws)
        server.kill(signal.SIGTERM)
        for ws in sockets:
            with pytest.raises(ConnectionClosed):
                while True:
                    await asyncio.wait_for(ws.recv(), 10)
            assert ws.close_code == CloseCode.GOING_AWAY == 4000, ws.close_code
        await asyncio.to_thread(server.proc.wait, 15)
    finally:
        server.stop()
