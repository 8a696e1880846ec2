"""realtime.client.ResumingClient against a live Daphne: resume by contiguous seq, resend once, backoff, close codes."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from asgiref.sync import sync_to_async

from realtime.client import Backoff, ResumingClient
from realtime.protocol import CloseCode
from tests.conftest import cookie_header

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]

FAST = Backoff(base=0.05, cap=0.2)


@pytest.fixture
def cookies(people: Any) -> dict[str, str]:
    """Session cookie headers of alice and bob, who meet in the public lobby."""
    return {user.username: cookie_header(user) for user in people}


def client(daphne: Any, cookie: str, cls: type[ResumingClient] = ResumingClient, **options: Any) -> ResumingClient:
    options.setdefault("backoff", FAST)
    return cls(f"{daphne.ws_url}/ws/chat/", cookie=cookie, origin=daphne.url, rooms=["lobby"], **options)


async def collect(c: ResumingClient, seqs: int, *, timeout: float = 20) -> list[dict[str, Any]]:
    """The next seq events of ``c`` until ``seqs`` of them arrived (fails after ``timeout``)."""
    got: list[dict[str, Any]] = []

    async def read() -> None:
        async for event in c:
            if event["type"] in ("message", "message.deleted") and event.get("room") == "lobby":
                got.append(event)
                if len(got) == seqs:
                    return

    try:
        await asyncio.wait_for(read(), timeout)
    except TimeoutError:
        pytest.fail(f"only {[e['seq'] for e in got]} arrived")
    return got


async def post(sender: ResumingClient, *bodies: str) -> None:
    for body in bodies:
        assert await sender.confirmed(sender.send_message("lobby", body), 10) is not None


class DropsOneFrame(ResumingClient):
    """Loses the first ``message`` frame of seq ``lost``, as a frame lost between processes would be."""

    lost = 2

    def _on_event(self, event: dict[str, Any]) -> None:
        if event.get("type") == "message" and event.get("seq") == self.lost:
            type(self).lost = -1
            return
        super()._on_event(event)


@pytest.mark.parametrize("heal", ["gap_timer", "reconnect"])
async def test_a_lost_frame_is_filled_from_the_last_contiguous_seq_never_skipped(daphne, cookies, heal):
    """Seq 2 never reaches alice while 1 and 3 do: she re-joins from seq 1 (not 3) and gets 1, 2, 3 once, in order.

    With ``gap_timer`` the held-back gap makes her re-join by itself; with ``reconnect``
    (the timer off) the socket drops and the resume after reconnecting fills it. A client
    that resumed from the highest seq seen would show 1 and 3 only.
    """
    DropsOneFrame.lost = 2
    gap_timeout = 0.5 if heal == "gap_timer" else 3600
    async with client(daphne, cookies["alice"], DropsOneFrame, gap_timeout=gap_timeout) as alice, \
            client(daphne, cookies["bob"]) as bob:
        await alice.wait_joined("lobby")
        await bob.wait_joined("lobby")
        reading = asyncio.ensure_future(collect(alice, 3))
        await post(bob, "one", "two", "three")
        if heal == "reconnect":
            await asyncio.sleep(0.5)
            assert alice.rooms["lobby"].last_seq == 1 and list(alice.rooms["lobby"].ahead) == [3]
            alice.drop()
        events = await reading
        assert [(e["seq"], e["body"]) for e in events] == [(1, "one"), (2, "two"), (3, "three")]
        assert alice.rooms["lobby"].last_seq == 3
        assert alice.connections == (2 if heal == "reconnect" else 1)


class LosesEchoes(ResumingClient):
    """On its first socket, every ``message`` frame is lost (the cut comes before the echoes)."""

    def _on_event(self, event: dict[str, Any]) -> None:
        if event.get("type") == "message" and self.connections == 1:
            return
        super()._on_event(event)


async def test_messages_stored_but_unconfirmed_at_a_cut_are_resent_and_stored_once(daphne, cookies):
    """Messages the server stored whose echoes a cut lost are resent with their client_id: stored once, shown once."""
    from chat.models import Message

    async with client(daphne, cookies["alice"], LosesEchoes) as alice:
        await alice.wait_joined("lobby")
        ids = [alice.send_message("lobby", f"cut {i}") for i in range(3)]
        deadline = time.monotonic() + 10
        while await sync_to_async(Message.objects.count)() < 3 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert await sync_to_async(Message.objects.count)() == 3
        assert set(alice.pending) == set(ids), "no echo reached the client before the cut"
        alice.drop()
        assert await alice.settle(timeout=15), alice.pending
        events = await collect(alice, 3)
        assert [(e["seq"], e["client_id"]) for e in events] == [(1, ids[0]), (2, ids[1]), (3, ids[2])]
        assert alice.connections == 2
    bodies = await sync_to_async(lambda: list(Message.objects.order_by("seq").values_list("body", flat=True)))()
    assert bodies == ["cut 0", "cut 1", "cut 2"]


async def test_messages_typed_while_disconnected_go_out_after_the_join(daphne, cookies):
    """A message sent before the first socket opens is held, sent once the room is joined, and echoed."""
    async with client(daphne, cookies["alice"]) as alice:
        client_id = alice.send_message("lobby", "early")  # the socket is not open yet
        echo = await alice.confirmed(client_id, 15)
        assert echo is not None and echo["body"] == "early" and echo["seq"] == 1


async def test_a_silent_path_is_noticed_by_the_heartbeat_and_the_resume_fills_what_it_ate(daphne, cookies):
    """A link that forwards nothing (no reset): the missing pong drops the socket; after it heals, nothing is lost."""
    from deploy.netproxy import Proxy

    link = Proxy(upstream_port=daphne.port).start()
    states: list[str] = []
    try:
        alice = ResumingClient(f"ws://127.0.0.1:{link.port}/ws/chat/", cookie=cookies["alice"], rooms=["lobby"],
                               backoff=FAST, ping_interval=0.3, pong_timeout=1.0, open_timeout=1.0,
                               on_state=lambda state, info: states.append(state))
        async with alice, client(daphne, cookies["bob"]) as bob:
            await alice.wait_joined("lobby")
            await bob.wait_joined("lobby")
            reading = asyncio.ensure_future(collect(alice, 4))
            await post(bob, "before")
            link.blackhole = True
            await post(bob, "during 1", "during 2")
            deadline = time.monotonic() + 10
            while "reconnecting" not in states and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            assert "reconnecting" in states, "the heartbeat noticed the dead path"
            link.blackhole = False
            await post(bob, "after")
            events = await reading
            assert [e["body"] for e in events] == ["before", "during 1", "during 2", "after"]
            assert alice.connections >= 2
    finally:
        link.stop()


@pytest.mark.parametrize("code", [CloseCode.SESSION_ENDED, CloseCode.FORBIDDEN])
async def test_no_reconnect_after_session_ended_or_forbidden(daphne, cookies, people, code):
    """Closed with 4001 (session gone) or 4003 (account deactivated): the client stops and never reconnects."""
    from django.contrib.sessions.models import Session

    alice_user = people[0]
    states: list[str] = []
    alice = client(daphne, cookies["alice"], on_state=lambda state, info: states.append(state))
    async with alice:
        await alice.wait_joined("lobby")
        if code == CloseCode.SESSION_ENDED:
            await sync_to_async(lambda: Session.objects.all().delete())()
        else:
            alice_user.is_active = False
            await sync_to_async(alice_user.save)(update_fields=["is_active"])
        deadline = time.monotonic() + 15
        while alice.running and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert not alice.running and alice.close_code == code
        await asyncio.sleep(1.0)  # a reconnect would have come within FAST's window
        assert alice.connections == 1 and states.count("connected") == 1 and states[-1] == "closed"


async def test_reconnect_waits_follow_full_jitter_within_the_doubling_ceiling(daphne, cookies):
    """Against a port nobody listens on, each wait n is in [0, min(cap, base·2^n)) and the client keeps trying."""
    from tests.services import free_port

    waits: list[float] = []
    backoff = Backoff(base=0.02, cap=0.16)
    dead = ResumingClient(f"ws://127.0.0.1:{free_port()}/ws/chat/", cookie=cookies["alice"], backoff=backoff,
                          on_state=lambda state, info: waits.append(info["delay"]) if "delay" in info else None)
    async with dead:
        deadline = time.monotonic() + 10
        while len(waits) < 8 and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
    assert len(waits) >= 8 and dead.connections == 0
    for n, wait in enumerate(waits[:8]):
        assert 0 <= wait < backoff.ceiling(n)
    assert [backoff.ceiling(n) for n in range(6)] == [0.02, 0.04, 0.08, 0.16, 0.16, 0.16]


def test_full_jitter_spreads_500_clients_over_the_window():
    """500 clients drawing their wait for one attempt fill every tenth of the window, with no herd in any."""
    backoff = Backoff(base=1.0, cap=30.0)
    assert Backoff(random=lambda: 0.999999).delay(10) < 30.0 and Backoff(random=lambda: 0.0).delay(3) == 0.0
    for attempt in (0, 3, 6):
        ceiling = backoff.ceiling(attempt)
        delays = [backoff.delay(attempt) for _ in range(500)]
        assert all(0 <= d < ceiling for d in delays)
        buckets = [0] * 10
        for d in delays:
            buckets[int(d / ceiling * 10)] += 1
        assert min(buckets) >= 20 and max(buckets) <= 90, buckets


async def test_msgpack_is_negotiated_and_carries_the_chat(daphne, cookies):
    """With encoding="msgpack" the server picks chat.v1.msgpack; messages, pongs and history travel as MessagePack."""
    async with client(daphne, cookies["alice"], encoding="msgpack", ping_interval=0.2) as alice:
        await alice.wait_joined("lobby")
        assert alice.protocol == "chat.v1.msgpack"
        echo = await alice.confirmed(alice.send_message("lobby", "héllo ✓"), 10)
        assert echo is not None and echo["body"] == "héllo ✓" and echo["seq"] == 1
        deadline = time.monotonic() + 5
        while alice.rtt_ms is None and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert alice.rtt_ms is not None, "the heartbeat's pong came back"
    async with client(daphne, cookies["bob"], encoding="msgpack") as bob:  # a fresh join: the page of history
        events = await collect(bob, 1)
        assert events[0]["body"] == "héllo ✓"


async def test_seq_bookkeeping_reorders_dedupes_and_counts_tombstones():
    """Out of order, repeated, and a tombstone in a gap: each seq comes once, in order; deletes of old seqs pass."""
    c = ResumingClient("ws://unused", rooms={"lobby": 5})
    c.rooms["lobby"].joined = True
    for seq, kind in [(5, "message"), (7, "message"), (7, "message"), (8, "message.deleted"), (6, "message"),
                      (9, "message"), (3, "message.deleted")]:
        c._on_event({"type": kind, "room": "lobby", "seq": seq})
    got = []
    while not c._events.empty():
        e = c._events.get_nowait()
        got.append((e["seq"], e["type"]))
    assert got == [(6, "message"), (7, "message"), (8, "message.deleted"), (9, "message"), (3, "message.deleted")]
    assert c.rooms["lobby"].last_seq == 9 and not c.rooms["lobby"].ahead


async def test_a_fresh_page_is_shown_once_and_removal_ends_a_room():
    """After a join without last_seq the history page shows each seq once; `removed` forgets the room and its sends."""
    c = ResumingClient("ws://unused", rooms=["lobby"])
    with pytest.raises(ValueError):
        c.send_message("elsewhere", "not joined")
    c._on_event({"type": "joined", "room": "lobby", "seq": 3})
    for seq in (2, 3, 2, 4):
        c._on_event({"type": "message", "room": "lobby", "seq": seq})
    client_id = c.send_message("lobby", "in flight")
    c._on_event({"type": "removed", "room": "lobby", "reason": "banned"})
    got = []
    while not c._events.empty():
        e = c._events.get_nowait()
        got.append((e["type"], e.get("seq")))
    assert got == [("joined", 3), ("message", 2), ("message", 3), ("message", 4), ("removed", None)]
    assert "lobby" not in c.rooms and client_id not in c.pending
    assert await c.confirmed(client_id) is None


def test_a_busy_servers_retry_after_is_honoured_jittered_and_a_refused_join_is_sent_again():
    """A 503's Retry-After is read from the response (absent or garbage: None, the backoff
    serves); the wait is at least what the server asked and at most a quarter more; a join
    refused with ``unavailable`` is sent again after its retry_after on the same socket."""
    from types import SimpleNamespace

    from realtime.client import retry_after_of

    assert retry_after_of(SimpleNamespace(headers={"Retry-After": "3"})) == 3.0
    assert retry_after_of(SimpleNamespace(headers={})) is None
    assert retry_after_of(SimpleNamespace(headers={"Retry-After": "soon"})) is None
    assert Backoff(random=lambda: 0.0).after(3) == 3.0
    assert Backoff(random=lambda: 0.999).after(3) == pytest.approx(3.75, abs=0.01)

    async def scenario() -> list[dict[str, Any]]:
        client = ResumingClient("ws://unused/", rooms={"lobby": 7})
        sent: list[dict[str, Any]] = []

        async def send(frame: dict[str, Any]) -> bool:
            sent.append(frame)
            return True

        client.send = send  # type: ignore[method-assign]
        client._ws = object()
        client._on_event({"type": "error", "code": "unavailable", "request_type": "join", "room": "lobby",
                          "retry_after": 0.01})
        assert sent == []
        await asyncio.sleep(0.1)
        return sent

    assert asyncio.run(scenario()) == [{"type": "join", "room": "lobby", "last_seq": 7}]
