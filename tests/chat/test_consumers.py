"""ChatConsumer through the full ASGI stack (Origin, auth, consumer) on the real Redis layer."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator

from realtime.asgi import application
from realtime.protocol import CloseCode
from tests.conftest import cookie_header

pytestmark = pytest.mark.django_db(transaction=True)

ORIGIN = (b"origin", b"http://127.0.0.1:8000")


async def connect(user: Any, *, subprotocols: list[str] | None = None) -> WebsocketCommunicator:
    cookie = await sync_to_async(cookie_header)(user)
    comm = WebsocketCommunicator(
        application, "/ws/chat/", headers=[ORIGIN, (b"cookie", cookie.encode())], subprotocols=subprotocols
    )
    connected, _ = await comm.connect(timeout=5)
    assert connected
    hello = await comm.receive_json_from(timeout=5)
    assert hello["type"] == "hello"
    return comm


async def recv(comm: WebsocketCommunicator, *, type_: str | None = None, timeout: float = 5) -> dict[str, Any]:
    """The next event (of ``type_``, skipping presence/typing noise when asked)."""
    while True:
        event = await comm.receive_json_from(timeout=timeout)
        if type_ is None or event["type"] == type_:
            return event


async def drain(comm: WebsocketCommunicator, timeout: float = 0.3) -> list[dict[str, Any]]:
    """Every event that arrives within ``timeout``."""
    events = []
    while not await comm.receive_nothing(timeout=timeout):
        events.append(await comm.receive_json_from())
    return events


async def join(comm: WebsocketCommunicator, room: str = "lobby", **extra: Any) -> dict[str, Any]:
    await comm.send_json_to({"type": "join", "room": room, **extra})
    return await recv(comm, type_="joined")


async def test_message_reaches_everyone_in_the_room_with_seq(alice, bob, lobby):
    """A message is stored with seq 1 and delivered to every member, the sender included."""
    a, b = await connect(alice), await connect(bob)
    await join(a)
    await join(b)
    await a.send_json_to({"type": "message", "room": "lobby", "body": "hi bob", "client_id": "c1"})
    got_a = await recv(a, type_="message")
    got_b = await recv(b, type_="message")
    assert got_a == got_b
    assert got_a["seq"] == 1 and got_a["author"] == "alice" and got_a["body"] == "hi bob" and got_a["client_id"] == "c1"
    await a.disconnect(timeout=5)
    await b.disconnect(timeout=5)


async def test_repeated_client_id_stores_one_message_and_returns_the_original(alice, lobby):
    """Sending the same client_id twice creates no second message; the sender gets the original back."""
    from chat.models import Message

    a = await connect(alice)
    await join(a)
    frame = {"type": "message", "room": "lobby", "body": "once", "client_id": "dup-1"}
    await a.send_json_to(frame)
    first = await recv(a, type_="message")
    await a.send_json_to(frame)
    again = await recv(a, type_="message")
    assert again["id"] == first["id"] and again["seq"] == first["seq"]
    assert await sync_to_async(Message.objects.count)() == 1
    await a.disconnect(timeout=5)


async def test_join_with_last_seq_returns_exactly_the_missed_messages(alice, bob, lobby):
    """Re-joining with last_seq sends every message after it, in order, and none before it."""
    a = await connect(alice)
    await join(a)
    for i in range(5):
        await a.send_json_to({"type": "message", "room": "lobby", "body": f"m{i}", "client_id": f"k{i}"})
        await recv(a, type_="message")
    b = await connect(bob)
    joined = await join(b, last_seq=2)
    assert joined["seq"] == 5 and joined["reset"] is False
    missed = [await recv(b, type_="message") for _ in range(3)]
    assert [m["seq"] for m in missed] == [3, 4, 5]
    assert [m["body"] for m in missed] == ["m2", "m3", "m4"]
    assert [e for e in await drain(b) if e["type"] == "message"] == []
    await a.disconnect(timeout=5)
    await b.disconnect(timeout=5)


async def test_resume_past_the_cap_resets_to_the_latest_page(alice, lobby, settings):
    """A client too far behind gets reset=true and the latest page, not an unbounded backlog."""
    settings.REALTIME = {**settings.REALTIME, "RESUME_CAP": 3, "HISTORY_PAGE": 2}
    a = await connect(alice)
    await join(a)
    for i in range(6):
        await a.send_json_to({"type": "message", "room": "lobby", "body": f"m{i}"})
        await recv(a, type_="message")
    await a.send_json_to({"type": "leave", "room": "lobby"})
    await recv(a, type_="left")
    joined = await join(a, last_seq=1)
    assert joined["reset"] is True
    page = [await recv(a, type_="message") for _ in range(2)]
    assert [m["seq"] for m in page] == [5, 6]
    await a.disconnect(timeout=5)


async def test_presence_lists_users_once_and_announces_departures(make_user, lobby):
    """Two tabs of one user are one presence entry; closing both announces the user left."""
    # Names no other test uses: presence is keyed by username across processes.
    alice = await sync_to_async(make_user)("pres-alice")
    bob = await sync_to_async(make_user)("pres-bob")
    a1, a2, b = await connect(alice), await connect(alice), await connect(bob)
    await join(b)
    await join(a1)
    event = await recv(b, type_="presence")
    while "pres-alice" not in event["joined"]:  # skip departures of sockets from earlier tests
        event = await recv(b, type_="presence")
    assert event["joined"] == ["pres-alice"]
    joined = await join(a2)
    assert {"pres-alice", "pres-bob"} <= set(joined["presence"]) and joined["presence"].count("pres-alice") == 1
    await a1.disconnect(timeout=5)
    # alice still has a tab open: no departure of hers is announced
    assert [e for e in await drain(b) if e["type"] == "presence" and "pres-alice" in e["left"]] == []
    await a2.disconnect(timeout=5)
    left = await recv(b, type_="presence")
    while "pres-alice" not in left["left"]:
        left = await recv(b, type_="presence")
    assert left["left"] == ["pres-alice"]
    await b.disconnect(timeout=5)


async def test_typing_goes_to_the_others_only(alice, bob, lobby):
    """A typing notice reaches the other members, not the typist's own socket."""
    a, b = await connect(alice), await connect(bob)
    await join(a)
    await join(b)
    await a.send_json_to({"type": "typing", "room": "lobby"})
    assert await recv(b, type_="typing") == {"type": "typing", "room": "lobby", "user": "alice"}
    assert [e for e in await drain(a) if e["type"] == "typing"] == []
    await a.disconnect(timeout=5)
    await b.disconnect(timeout=5)


async def test_ping_is_answered_with_pong(alice):
    """The application heartbeat echoes t."""
    a = await connect(alice)
    await a.send_json_to({"type": "ping", "t": 12345.5})
    assert await recv(a) == {"type": "pong", "t": 12345.5}
    await a.disconnect(timeout=5)


async def test_edit_and_delete_go_out_live_and_only_for_the_author(alice, bob, lobby):
    """The author's edit and delete reach everyone; another user's attempt is refused."""
    a, b = await connect(alice), await connect(bob)
    await join(a)
    await join(b)
    await a.send_json_to({"type": "message", "room": "lobby", "body": "draft"})
    msg = await recv(b, type_="message")
    await b.send_json_to({"type": "edit", "room": "lobby", "id": msg["id"], "body": "hacked"})
    err = await recv(b, type_="error")
    assert err["code"] == "forbidden"
    await a.send_json_to({"type": "edit", "room": "lobby", "id": msg["id"], "body": "final"})
    upd = await recv(b, type_="message.updated")
    assert upd["body"] == "final" and upd["seq"] == msg["seq"]
    await b.send_json_to({"type": "delete", "room": "lobby", "id": msg["id"]})
    assert (await recv(b, type_="error"))["code"] == "forbidden"
    await a.send_json_to({"type": "delete", "room": "lobby", "id": msg["id"]})
    gone = await recv(b, type_="message.deleted")
    assert gone["id"] == msg["id"]
    await a.disconnect(timeout=5)
    await b.disconnect(timeout=5)


async def test_msgpack_and_json_clients_see_the_same_messages(alice, bob, lobby):
    """The chat.v1.msgpack subprotocol carries the same events as binary frames."""
    import msgpack

    a = await connect(alice)
    cookie = await sync_to_async(cookie_header)(bob)
    b = WebsocketCommunicator(
        application, "/ws/chat/", headers=[ORIGIN, (b"cookie", cookie.encode())], subprotocols=["chat.v1.msgpack"]
    )
    connected, subprotocol = await b.connect(timeout=5)
    assert connected and subprotocol == "chat.v1.msgpack"
    assert msgpack.unpackb(await b.receive_from(timeout=5))["type"] == "hello"
    await join(a)
    await b.send_to(bytes_data=msgpack.packb({"type": "join", "room": "lobby"}))
    while msgpack.unpackb(await b.receive_from(timeout=5))["type"] != "joined":
        pass
    await b.send_to(bytes_data=msgpack.packb({"type": "message", "room": "lobby", "body": "from msgpack"}))
    via_json = await recv(a, type_="message")
    while (via_pack := msgpack.unpackb(await b.receive_from(timeout=5)))["type"] != "message":
        pass
    assert via_json == via_pack
    await a.disconnect(timeout=5)
    await b.disconnect(timeout=5)


async def test_unauthenticated_and_forged_origin_are_refused_before_accept(alice):
    """No cookie, or a cookie from a foreign Origin: the handshake is refused."""
    anon = WebsocketCommunicator(application, "/ws/chat/", headers=[ORIGIN])
    connected, _ = await anon.connect(timeout=5)
    assert not connected
    cookie = await sync_to_async(cookie_header)(alice)
    forged = WebsocketCommunicator(
        application, "/ws/chat/", headers=[(b"origin", b"https://evil.example"), (b"cookie", cookie.encode())]
    )
    connected, _ = await forged.connect(timeout=5)
    assert not connected


async def test_connection_cap_closes_the_extra_socket_with_4029(alice, settings):
    """A user over the per-user socket cap is closed with TOO_MANY_CONNECTIONS."""
    settings.REALTIME = {**settings.REALTIME, "MAX_CONNECTIONS_PER_USER": 2}
    a1, a2 = await connect(alice), await connect(alice)
    cookie = await sync_to_async(cookie_header)(alice)
    a3 = WebsocketCommunicator(application, "/ws/chat/", headers=[ORIGIN, (b"cookie", cookie.encode())])
    connected, _ = await a3.connect(timeout=5)
    assert connected
    closed = await a3.receive_output(timeout=5)
    assert closed == {"type": "websocket.close", "code": CloseCode.TOO_MANY_CONNECTIONS}
    await a1.disconnect(timeout=5)
    await a2.disconnect(timeout=5)


async def test_json_frames_are_compact_and_unicode(alice, lobby):
    """Events are UTF-8 JSON without ASCII escapes (smaller frames)."""
    a = await connect(alice)
    await join(a)
    await a.send_json_to({"type": "message", "room": "lobby", "body": "héllo ✓"})
    raw = await a.receive_from(timeout=5)
    while json.loads(raw)["type"] != "message":
        raw = await a.receive_from(timeout=5)
    assert "héllo ✓" in raw and ", " not in raw
    await a.disconnect(timeout=5)
    await asyncio.sleep(0)


async def test_a_join_over_the_process_budget_is_refused_with_retry_after_and_does_nothing(alice, lobby, settings):
    """Admission control: within the join budget a join is served; over it the join gets an
    ``unavailable`` error naming the room and a retry_after, and is not joined (no history,
    no presence, messages of the room are not delivered); joining after the wait works."""
    settings.REALTIME = {**settings.REALTIME, "ADMISSION_JOINS_PER_SECOND": 0.5, "ADMISSION_JOINS_BURST": 1}
    a = await connect(alice)
    assert (await join(a))["room"] == "lobby"
    await drain(a)
    await a.send_json_to({"type": "join", "room": "lobby"})
    error = await recv(a, type_="error")
    assert error["code"] == "unavailable" and error["request_type"] == "join" and error["room"] == "lobby"
    assert 0 < error["retry_after"] <= 2.5
    assert await drain(a) == []  # nothing else: no joined, no history
    await a.send_json_to({"type": "join", "room": "general"})
    assert (await recv(a, type_="error"))["code"] == "unavailable"
    await a.send_json_to({"type": "message", "room": "general", "body": "x", "client_id": "c1"})
    assert (await recv(a, type_="error"))["code"] == "not_joined"  # the refused join left no trace
    await a.disconnect(timeout=5)
    await asyncio.sleep(0)


async def test_reply_and_formatting_reach_the_room_and_a_bad_reply_to_is_an_error_frame(alice, bob, lobby):
    """A reply carries its quote and the rendered html to everyone; a reply_to of nothing is refused, nothing sent."""
    a, b = await connect(alice), await connect(bob)
    await join(a)
    await join(b)
    await b.send_json_to({"type": "message", "room": "lobby", "body": "who has **the key**?"})
    original = await recv(a, type_="message")
    assert original["html"] == "<p>who has <strong>the key</strong>?</p>" and original["author_name"] == "bob"
    await recv(b, type_="message")
    await a.send_json_to({"type": "message", "room": "lobby", "body": "me, @bob", "reply_to": original["seq"]})
    reply = await recv(b, type_="message")
    assert reply == await recv(a, type_="message")
    assert reply["html"] == '<p>me, <span class="mention">@bob</span></p>'
    assert reply["reply_to"] == {"seq": original["seq"], "id": original["id"], "author": "bob",
                                 "author_name": "bob", "deleted": False, "excerpt": "who has the key?"}
    for bad in (99, "1", -1):
        await a.send_json_to({"type": "message", "room": "lobby", "body": "lost", "reply_to": bad})
        error = await recv(a)
        assert error["type"] == "error", error
        assert error["code"] == ("message_not_found" if bad == 99 else "invalid_field")
    # Nothing reached the room (a live Celery worker, when the session has one, may push
    # bob the mention of the reply above).
    assert [e for e in await drain(b) if e["type"] != "mention"] == []
    await a.send_json_to({"type": "ping", "t": 1})
    assert (await recv(a, type_="pong"))["t"] == 1
    await a.disconnect(timeout=5)
    await b.disconnect(timeout=5)


async def test_edit_reaches_every_socket_with_the_new_html(alice, bob, lobby):
    """An edit over the socket re-renders: message.updated carries the new html to every tab."""
    a, b = await connect(alice), await connect(bob)
    await join(a)
    await join(b)
    await a.send_json_to({"type": "message", "room": "lobby", "body": "draft"})
    posted = await recv(b, type_="message")
    await a.send_json_to({"type": "edit", "room": "lobby", "id": posted["id"], "body": "~~draft~~ final"})
    for comm in (a, b):
        updated = await recv(comm, type_="message.updated")
        assert updated["html"] == "<p><s>draft</s> final</p>" and updated["body"] == "~~draft~~ final"
    await a.disconnect(timeout=5)
    await b.disconnect(timeout=5)


def _consumer(comm: WebsocketCommunicator) -> Any:
    """The consumer an open communicator's task is suspended in."""
    coro = comm.future.get_coro()
    while coro.cr_code.co_qualname != "LayerlessConsumer.__call__":
        coro = coro.cr_await
    return coro.cr_frame.f_locals["self"]


async def test_a_socket_that_never_joins_keeps_no_per_room_state(alice, bob, lobby):
    """Memory per idle socket: the per-room records are made by the first join, typing or
    push that needs them, and then work as ever (the join, typing and messages below)."""
    per_room = {"room_models", "memberships", "delivered", "joining", "_typing_at", "_seen_ids", "groups"}
    a, b = await connect(alice), await connect(bob)
    assert not per_room & set(vars(_consumer(a))), vars(_consumer(a))
    await join(a)
    await join(b)
    await a.send_json_to({"type": "typing", "room": "lobby"})
    assert (await recv(b, type_="typing"))["user"] == "alice"
    await a.send_json_to({"type": "message", "room": "lobby", "body": "made on first use", "client_id": "lazy-1"})
    assert (await recv(b, type_="message"))["body"] == "made on first use"
    assert {"room_models", "memberships", "delivered", "_typing_at"} <= set(vars(_consumer(a)))
    await a.disconnect()
    await b.disconnect()
