"""Server-initiated events through a real Celery worker, real Redis and a live Daphne."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from websockets.asyncio.client import connect as ws_connect

from realtime import presence
from tests import services
from tests.conftest import cookie_header

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]


async def open_socket(server: services.Service, user: Any):
    cookie = await sync_to_async(cookie_header)(user)
    ws = await ws_connect(
        f"{server.ws_url}/ws/chat/", origin=server.url, additional_headers={"Cookie": cookie}, open_timeout=10
    )
    hello = json.loads(await ws.recv())
    assert hello["type"] == "hello"
    return ws


async def next_of(ws: Any, kind: str, *, timeout: float = 10.0) -> dict[str, Any]:
    """The next event of type ``kind``; other events are skipped."""
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"no {kind} event within {timeout} s")
        event = json.loads(await asyncio.wait_for(ws.recv(), remaining))
        if event["type"] == kind:
            return event


async def events_of(ws: Any, kind: str, *, within: float) -> list[dict[str, Any]]:
    """Every event of type ``kind`` that arrives within ``within`` seconds."""
    found = []
    deadline = time.monotonic() + within
    while (remaining := deadline - time.monotonic()) > 0:
        try:
            event = json.loads(await asyncio.wait_for(ws.recv(), remaining))
        except TimeoutError:
            break
        if event["type"] == kind:
            found.append(event)
    return found


async def join(ws: Any, room: str = "lobby") -> None:
    await ws.send(json.dumps({"type": "join", "room": room}))
    await next_of(ws, "joined")


async def test_announcement_created_in_the_admin_reaches_an_open_socket(daphne, celery_worker, make_user, lobby):
    """Staff add an announcement in the admin; a worker delivers it to a live socket and records the count."""
    from django.test import Client

    from chat.models import Announcement

    admin = await sync_to_async(make_user)("boss", is_staff=True, is_superuser=True)
    alice = await sync_to_async(make_user)("alice")
    ws = await open_socket(daphne, alice)
    client = Client()
    await sync_to_async(client.force_login)(admin)
    # Everyone open now, on every process: alice, plus any socket an earlier test's live
    # server or browser has not finished closing (the Redis is shared).
    open_now = await presence.sockets_in("everyone")
    response = await sync_to_async(client.post)(
        "/admin/chat/announcement/add/",
        {"body": "Maintenance at 22:00", "room": "", "send_at_0": "2020-01-01", "send_at_1": "00:00:00"},
    )
    assert response.status_code == 302, response.content[:2000]
    event = await next_of(ws, "announcement", timeout=15)
    assert event["body"] == "Maintenance at 22:00" and event["room"] is None
    announcement = await sync_to_async(Announcement.objects.get)()
    for _ in range(50):
        await sync_to_async(announcement.refresh_from_db)()
        if announcement.sent_at:
            break
        await asyncio.sleep(0.1)
    assert announcement.sent_at is not None and 1 <= announcement.sockets <= open_now
    listing = await sync_to_async(client.get)("/admin/chat/announcement/")
    assert b"sent" in listing.content
    await ws.close()


async def test_worker_killed_mid_delivery_delivers_the_announcement_exactly_once(
    daphne, worker_env, celery_worker, make_user
):
    """SIGKILL the worker between pushing and recording; the redelivered task shows nothing twice."""
    from chat import services as chat_services

    await sync_to_async(celery_worker.stop)()  # only the workers of this test may take the task
    alice = await sync_to_async(make_user)("alice")
    ws = await open_socket(daphne, alice)
    slow = services.celery_worker_service({**worker_env, "FAULT_PAUSE_AFTER_PUSH": "30"})
    await sync_to_async(services.celery_worker_start)(slow)
    replacement = services.celery_worker_service(worker_env)
    try:
        announcement = await sync_to_async(chat_services.announcement_create)(body="exactly once, please")
        first = await next_of(ws, "announcement", timeout=20)
        assert first["id"] == announcement.pk
        slow.kill()  # the task pushed, and now dies before recording: it stays unacked
        await sync_to_async(announcement.refresh_from_db)()
        assert announcement.sent_at is None
        await sync_to_async(services.celery_worker_start)(replacement)
        # The broker redelivers after the 3 s visibility timeout; the task runs again and records.
        deadline = time.monotonic() + 30
        while announcement.sent_at is None and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
            await sync_to_async(announcement.refresh_from_db)()
        assert announcement.sent_at is not None, replacement.log()[-2000:]
        assert "announcement_deliver" in replacement.log()
        assert await events_of(ws, "announcement", within=2) == []
    finally:
        slow.stop()
        replacement.stop()
        await ws.close()
        await sync_to_async(services.celery_worker_start)(celery_worker)


async def test_mention_reaches_the_mentioned_user_in_another_room(daphne, celery_worker, make_user, lobby):
    """@bob in lobby reaches bob's socket that only has the room 'random' open."""
    from chat.models import Room

    await sync_to_async(Room.objects.create)(slug="random", title="Random")
    alice = await sync_to_async(make_user)("alice")
    bob = await sync_to_async(make_user)("bob")
    a = await open_socket(daphne, alice)
    b = await open_socket(daphne, bob)
    await join(a, "lobby")
    await join(b, "random")
    await a.send(json.dumps({"type": "message", "room": "lobby", "body": "hey @bob, look", "client_id": "m1"}))
    mention = await next_of(b, "mention", timeout=15)
    assert mention["room"] == "lobby" and mention["author"] == "alice" and mention["body"] == "hey @bob, look"
    await a.close()
    await b.close()


async def test_banned_word_is_masked_before_broadcast_and_in_the_mention(daphne, celery_worker, make_user, lobby):
    """A message with a banned word goes out masked, to the room and in bob's mention; the worker adds no edit."""
    from chat import services as chat_services
    from chat.models import Message

    await sync_to_async(chat_services.banned_word_add)(word="darn", action="mask")
    alice = await sync_to_async(make_user)("alice")
    bob = await sync_to_async(make_user)("bob")
    a = await open_socket(daphne, alice)
    b = await open_socket(daphne, bob)
    await join(a)
    await a.send(json.dumps({"type": "message", "room": "lobby", "body": "well DARN it, @bob"}))
    sent = await next_of(a, "message")
    assert sent["body"] == "well **** it, @bob"
    mention = await next_of(b, "mention", timeout=15)
    assert mention["body"] == "well **** it, @bob"
    stored = await sync_to_async(Message.objects.get)(pk=sent["id"])
    assert stored.body == "well **** it, @bob" and stored.moderated_at is not None
    assert await events_of(a, "message.updated", within=2) == []
    await a.close()
    await b.close()
