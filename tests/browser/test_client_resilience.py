"""The browser client survives real networks: restarts, blocked upgrades, going offline."""

from __future__ import annotations

import asyncio
import json
import re
import threading
from typing import Any

import pytest

from deploy.netproxy import Proxy
from tests import services
from tests.browser.login import submit_login
from tests.browser.test_chat_page import log_in
from tests.conftest import cookie_header

pytestmark = [pytest.mark.browser, pytest.mark.live, pytest.mark.django_db(transaction=True)]

BODIES = "() => [...document.querySelectorAll('#messages li:not(.pending) .body')].map(b => b.textContent)"


class Writer:
    """Bob, writing from a real WebSocket client in a thread of his own (Playwright owns this one)."""

    def __init__(self, server: services.Service, user: Any) -> None:
        self.server = server
        self.cookie = cookie_header(user)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.ws = self._run(self._connect())

    def _run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)

    async def _connect(self) -> Any:
        from websockets.asyncio.client import connect

        ws = await connect(
            f"{self.server.ws_url}/ws/chat/", origin=self.server.url, additional_headers={"Cookie": self.cookie}
        )
        await ws.recv()
        await ws.send(json.dumps({"type": "join", "room": "lobby"}))
        while json.loads(await ws.recv())["type"] != "joined":
            pass
        return ws

    def say(self, body: str) -> None:
        client_id = re.sub(r"[^A-Za-z0-9]", "-", body)

        async def send() -> None:
            await self.ws.send(json.dumps({"type": "message", "room": "lobby", "body": body, "client_id": client_id}))
            while True:
                event = json.loads(await asyncio.wait_for(self.ws.recv(), 10))
                if event["type"] == "error":
                    raise AssertionError(event)
                if event["type"] == "message" and event["client_id"] == client_id:
                    return

        self._run(send())

    def close(self) -> None:
        self._run(self.ws.close())
        self.loop.call_soon_threadsafe(self.loop.stop)


@pytest.fixture
def users(make_user, lobby):
    return make_user("alice"), make_user("bob")


@pytest.fixture
def own_daphne(app_env):
    """A Daphne process this test may stop and start."""
    server = services.daphne_service(app_env).start()
    yield server
    server.stop()


def wait_bodies(page: Any, expected: list[str], timeout: float = 30000) -> None:
    page.wait_for_function(f"(want) => JSON.stringify(({BODIES})()) === JSON.stringify(want)", arg=expected,
                           timeout=timeout)


def test_page_reconnects_after_a_server_restart_and_shows_what_was_missed_once(browser, own_daphne, daphne_b, users):
    """Daphne stops mid-conversation and starts again: the page resumes with exactly what it missed."""
    _, bob = users
    page = log_in(browser, own_daphne, "alice")
    writer = Writer(daphne_b, bob)
    try:
        writer.say("before")
        wait_bodies(page, ["before"])
        own_daphne.stop()
        page.wait_for_function("() => document.querySelector('#conn-status').dataset.state !== 'connected'")
        writer.say("while down 1")
        writer.say("while down 2")
        own_daphne.start()
        page.wait_for_function("() => document.querySelector('#conn-status').dataset.state === 'connected'",
                               timeout=40000)
        writer.say("after")
        wait_bodies(page, ["before", "while down 1", "while down 2", "after"])
        page.wait_for_timeout(500)
        assert page.evaluate(BODIES) == ["before", "while down 1", "while down 2", "after"]
        seqs = page.eval_on_selector_all("#messages li", "els => els.map(e => Number(e.dataset.seq))")
        assert seqs == [1, 2, 3, 4]
    finally:
        writer.close()
        page.context.close()


def test_blocked_websocket_upgrades_fall_back_to_long_polling(browser, daphne, daphne_b, users):
    """Behind a proxy that refuses Upgrade, the page switches to long-polling and chats with a WebSocket user."""
    from chat.models import Message

    _, bob = users
    proxy = Proxy(upstream_port=daphne.port, block_upgrades=True).start()
    try:
        page = log_in_via(browser, proxy, "alice")
        page.wait_for_function("() => document.querySelector('#conn-status').dataset.transport === 'longpoll'",
                               timeout=30000)
        assert proxy.upgrades_blocked >= 3
        writer = Writer(daphne_b, bob)  # bob: a WebSocket on the other process
        try:
            writer.say("hello from a websocket")
            wait_bodies(page, ["hello from a websocket"])
            page.fill("#body", "hello from long-polling")
            page.press("#body", "Enter")
            wait_bodies(page, ["hello from a websocket", "hello from long-polling"])
            assert Message.objects.filter(body="hello from long-polling", author__username="alice").count() == 1
            # Bob sees it on his socket too (the writer's socket buffers it; check the database order).
            assert list(Message.objects.order_by("seq").values_list("body", flat=True)) == [
                "hello from a websocket", "hello from long-polling"]
        finally:
            writer.close()
            page.context.close()
    finally:
        proxy.stop()


def log_in_via(browser: Any, proxy: Proxy, username: str) -> Any:
    """Log in through the proxy's origin without waiting for a WebSocket."""
    return submit_login(browser.new_context().new_page(), proxy.url, username)


def test_offline_page_catches_up_without_gaps_and_sends_what_was_typed_once(browser, daphne, daphne_b, users):
    """Sockets really cut while offline: on return the page shows the other's messages once, and its own once."""
    from chat.models import Message

    _, bob = users
    context = browser.new_context()
    offline = {"on": False}
    routed: list[tuple[Any, Any]] = []

    def route(ws: Any) -> None:
        if offline["on"]:
            ws.close()
            return
        routed.append((ws, ws.connect_to_server()))

    context.route_web_socket(re.compile(r".*/ws/chat/.*"), route)
    page = submit_login(context.new_page(), daphne.url, "alice")
    page.wait_for_function("() => document.querySelector('#conn-status').dataset.state === 'connected'")
    writer = Writer(daphne_b, bob)
    try:
        writer.say("online 1")
        wait_bodies(page, ["online 1"])
        # Go offline for real: new connections fail and the open socket is cut on both sides.
        offline["on"] = True
        context.set_offline(True)
        for page_side, server_side in routed:
            page_side.close()
            server_side.close()
        page.wait_for_function("() => document.querySelector('#conn-status').dataset.state !== 'connected'")
        writer.say("while offline 1")
        writer.say("while offline 2")
        page.fill("#body", "typed offline")
        page.press("#body", "Enter")
        assert page.locator("#messages li.pending").count() == 1
        offline["on"] = False
        context.set_offline(False)
        wait_bodies(page, ["online 1", "while offline 1", "while offline 2", "typed offline"], timeout=40000)
        page.wait_for_timeout(1000)
        assert page.evaluate(BODIES) == ["online 1", "while offline 1", "while offline 2", "typed offline"]
        assert page.locator("#messages li.pending").count() == 0
        assert Message.objects.filter(body="typed offline").count() == 1
    finally:
        writer.close()
        context.close()
