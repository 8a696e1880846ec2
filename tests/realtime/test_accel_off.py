"""The live chat on stock Daphne, autobahn, Twisted and channels: two servers with REALTIME_ACCEL=0.

The patches of realtime.accel change no behaviour, so the same live tests must pass
without them: join and message across two servers in seq order, resume after a
reconnect, resume while the room is busy. They are the tests of
tests/chat/test_live_two_servers.py, collected here again with this module's ``daphne``
and ``daphne_b`` (processes started with ``REALTIME_ACCEL=0``); the wire's ordering
under a slow reader is parametrized in tests/realtime/test_wire.py.
"""

from __future__ import annotations

import json
import re
import urllib.request
from collections.abc import Iterator

import pytest

from tests import services
from tests.chat.test_live_two_servers import (  # noqa: F401 - collected here, against the servers below
    _fast_password_hasher,
    join,
    say,
    test_both_servers_deliver_the_same_messages_in_the_same_seq_order,
    test_reconnect_to_the_other_server_resumes_exactly_the_missed_messages,
    test_resume_while_the_room_is_busy_on_the_other_server_loses_and_repeats_nothing,
    user_socket,
)

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]


@pytest.fixture(scope="module")
def daphne(app_env: dict[str, str]) -> Iterator[services.Service]:
    """A live Daphne process on stock code (REALTIME_ACCEL=0)."""
    server = services.daphne_service({**app_env, "REALTIME_ACCEL": "0"}).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def daphne_b(app_env: dict[str, str]) -> Iterator[services.Service]:
    """A second one, sharing the Redis and the database."""
    server = services.daphne_service({**app_env, "REALTIME_ACCEL": "0"}).start()
    yield server
    server.stop()


def _broadcast_writes(server: services.Service) -> dict[str, float]:
    with urllib.request.urlopen(f"{server.url}/metrics", timeout=10) as response:
        text = response.read().decode()
    totals: dict[str, float] = {}
    for path, value in re.findall(r'^realtime_broadcast_writes_total\{[^}]*path="(\w+)"[^}]*\} (\S+)$', text, re.M):
        totals[path] = totals.get(path, 0.0) + float(value)
    return totals


async def test_the_servers_really_run_stock_code(alice, bob, lobby, daphne, daphne_b) -> None:
    """Each server said at start-up that every patch is off, and its broadcasts took the ASGI path."""
    for server in (daphne, daphne_b):
        assert "REALTIME_ACCEL=0" in server.log()
    a = await user_socket(daphne, alice)
    b = await user_socket(daphne_b, bob)
    await join(a)
    await join(b)
    await say(b, "stock")
    while json.loads(await a.recv())["type"] != "message":
        pass
    writes = _broadcast_writes(daphne)
    assert writes.get("direct", 0.0) == 0 and writes.get("asgi", 0.0) >= 1
    await a.close()
    await b.close()
