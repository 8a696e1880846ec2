"""Several web processes on one port (realtime.web): one address, every process serving, one chat.

The launcher runs with WEB_CONCURRENCY=2 against the session's Redis and test database.
What it must hold: the kernel spreads sockets over both children; a message posted on
one child reaches the sockets of the other; the per-user socket cap counts sockets on
every child; a child that dies is started again on the same port; SIGTERM drains every
child (close 4000) and leaves no process behind.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import time
import urllib.request
from pathlib import Path
from typing import Any

import httpx
import pytest
from asgiref.sync import sync_to_async
from websockets.asyncio.client import connect as ws_connect

from chat import services as chat_services
from realtime.protocol import CloseCode
from realtime.web import listening_sockets, web_concurrency
from tests import services
from tests.chat.test_live_two_servers import close_code, join, messages, next_of, origin_of, say, user_socket
from tests.conftest import cookie_header

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]

USERS = 4
SOCKETS_PER_USER = 6


@pytest.fixture(autouse=True)
def _fast_password_hasher(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def children_of(pid: int) -> list[int]:
    """The direct children of a process (Linux)."""
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(c) for c in (task / "children").read_text().split()]
    return found


def established_on(port: int) -> dict[int, int]:
    """Socket inode -> remote port, for every ESTABLISHED IPv4 connection to local ``port``."""
    found = {}
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote, state, inode = fields[1], fields[2], fields[3], int(fields[9])
        if state == "01" and int(local.split(":")[1], 16) == port:
            found[inode] = int(remote.split(":")[1], 16)
    return found


def sockets_held_by(pid: int, inodes: set[int]) -> int:
    """How many of ``inodes`` process ``pid`` has open."""
    held = 0
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:[") and int(target[8:-1]) in inodes:
            held += 1
    return held


def launcher(app_env: dict[str, str], **env: str) -> services.Service:
    port = services.free_port()
    args = [services.sys.executable, "-m", "realtime.web", "-b", "127.0.0.1", "-p", str(port), "-v", "0",
            "realtime.asgi:application"]
    return services.Service(f"web-{port}", args, env={**app_env, "WEB_CONCURRENCY": "2", **env}, port=port)


def _answering_pid(web: services.Service) -> int | None:
    """The pid of the child that answered one /metrics request on a new connection (its ``process`` label)."""
    request = urllib.request.Request(f"{web.url}/metrics", headers={"X-Metrics-Siblings": "0"})
    try:
        with urllib.request.urlopen(request, timeout=2) as response:
            text = response.read().decode()
    except OSError:
        return None
    found = re.search(r'process="[^"]*:(\d+)"', text)
    return int(found.group(1)) if found else None


async def serving(web: services.Service, children: int = 2, timeout: float = 60) -> list[int]:
    """Wait until ``children`` live children each answered a request; their pids."""
    deadline = time.monotonic() + timeout
    answered: set[int] = set()
    while True:
        assert web.proc.poll() is None, web.log()[-3000:]
        kids = children_of(web.proc.pid)
        if len(kids) == children and set(kids) <= answered:
            return kids
        assert time.monotonic() < deadline, f"children {kids}, answered {answered}:\n{web.log()[-3000:]}"
        pid = await asyncio.to_thread(_answering_pid, web)
        if pid is None:
            await asyncio.sleep(0.2)
        else:
            answered.add(pid)


def test_web_concurrency_defaults_to_the_usable_cores(monkeypatch):
    """WEB_CONCURRENCY unset: one process per core this process may use; set: that many; 0 is refused."""
    monkeypatch.delenv("WEB_CONCURRENCY", raising=False)
    assert web_concurrency() == len(os.sched_getaffinity(0))
    monkeypatch.setenv("WEB_CONCURRENCY", "3")
    assert web_concurrency() == 3
    monkeypatch.setenv("WEB_CONCURRENCY", "0")
    with pytest.raises(ValueError):
        web_concurrency()


def test_every_process_gets_its_own_socket_on_the_same_port():
    """SO_REUSEPORT: one listening socket per process, all bound to one port, each handed to a child."""
    port = services.free_port()
    socks = listening_sockets("127.0.0.1", port, 3)
    try:
        assert len(socks) == 3 and {s.getsockname() for s in socks} == {("127.0.0.1", port)}
        assert all(s.get_inheritable() for s in socks)
    finally:
        for s in socks:
            s.close()


async def test_two_processes_serve_one_port_as_one_chat(make_user, lobby, app_env):
    """Sockets land on both children; a message from either reaches all; the socket cap spans both;
    a killed child comes back; SIGTERM closes every socket with 4000 and every process exits."""
    users = [await sync_to_async(make_user)(f"user{i}") for i in range(USERS)]
    for user in users:
        await sync_to_async(chat_services.room_enter)(slug="lobby", user=user)
    web = launcher(app_env, WS_MAX_CONNECTIONS_PER_USER=str(SOCKETS_PER_USER)).start()
    try:
        kids = await serving(web)
        assert len(kids) == 2, web.log()
        sockets = []
        for user in users:
            for _ in range(SOCKETS_PER_USER):
                ws = await user_socket(web, user)
                await join(ws)
                sockets.append(ws)
        inodes = set(established_on(web.port))
        held = {pid: sockets_held_by(pid, inodes) for pid in kids}
        assert sum(held.values()) == len(sockets) and all(held.values()), f"sockets per process: {held}"

        # The cap is counted across both processes: one more socket of user0 is refused.
        cookie = await sync_to_async(cookie_header)(users[0])
        extra = await ws_connect(f"{web.ws_url}/ws/chat/", origin=origin_of(web), additional_headers={"Cookie": cookie})
        assert await close_code(extra) == CloseCode.TOO_MANY_CONNECTIONS

        await say(sockets[0], "hello-both")
        await say(sockets[-1], "hello-again")
        for ws in sockets:
            got = sorted(m["body"] for m in await messages(ws, 2))
            assert got == ["hello-again", "hello-both"], f"socket on process {holder_of(ws, web.port, kids)}"

        # A child that dies is started again; the port keeps serving throughout.
        os.kill(kids[0], signal.SIGKILL)
        now = await serving(web)
        assert len(now) == 2 and kids[0] not in now
        survivors = [ws for ws in sockets if ws.close_code is None]
        # (A user whose sockets died with the child still has them counted until presence
        # expires them, so the new sockets belong to someone else.)
        late = await sync_to_async(make_user)("late")
        await sync_to_async(chat_services.room_enter)(slug="lobby", user=late)
        fresh = []
        for _ in range(3):
            ws = await user_socket(web, late)
            await join(ws)
            fresh.append(ws)

        kids = children_of(web.proc.pid)
        web.proc.send_signal(signal.SIGTERM)
        codes = await asyncio.gather(*(close_code(ws, timeout=15) for ws in fresh + survivors[-4:]))
        assert set(codes) == {CloseCode.GOING_AWAY}, codes
        web.proc.wait(timeout=15)
        for pid in kids:
            assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()
    finally:
        web.stop()


def holder_of(ws: Any, port: int, kids: list[int]) -> int | None:
    """The child process that serves the client socket ``ws`` (matched by its local port)."""
    mine = {inode for inode, remote in established_on(port).items() if remote == ws.local_address[1]}
    return next((pid for pid in kids if sockets_held_by(pid, mine)), None)


async def test_a_message_on_one_process_reaches_a_socket_on_the_other(make_user, lobby, app_env):
    """Two sockets of one room that the kernel gave to different children see each other's messages."""
    alice = await sync_to_async(make_user)("alice")
    await sync_to_async(chat_services.room_enter)(slug="lobby", user=alice)
    web = launcher(app_env).start()
    try:
        kids = await serving(web)
        by_child: dict[int, Any] = {}
        for _ in range(15):
            ws = await user_socket(web, alice)
            by_child.setdefault(holder_of(ws, web.port, kids), ws)
            if len(by_child.keys() - {None}) == 2:
                break
        by_child.pop(None, None)
        assert len(by_child) == 2, "the kernel put every socket on one process"
        a, b = by_child.values()
        await join(a)
        await join(b)
        await say(a, "across-processes")
        assert (await next_of(b, "message"))["body"] == "across-processes"
    finally:
        web.stop()


def _lp(web: services.Service, action: str, payload: dict[str, Any], cookie: str = "") -> tuple[int, Any]:
    """One long-poll request on a new TCP connection (so the kernel picks the child afresh)."""
    headers = {"Origin": origin_of(web), "Connection": "close"}
    if cookie:
        headers["Cookie"] = cookie
    response = httpx.post(f"{web.url}/rt/lp/{action}/", json=payload, headers=headers, timeout=40)
    return response.status_code, (response.json() if response.content else None)


async def test_a_long_poll_session_is_served_whichever_process_takes_the_request(make_user, lobby, app_env):
    """A long-poll session lives in one child; its polls and sends, each on a new connection that the kernel
    may give to either child, are all answered (forwarded to the holder over its unix socket), none 404,
    and the chat works through them: the session sees a message posted by a WebSocket on the port."""
    alice = await sync_to_async(make_user)("alice")
    bob = await sync_to_async(make_user)("bob")
    for user in (alice, bob):
        await sync_to_async(chat_services.room_enter)(slug="lobby", user=user)
    web = launcher(app_env).start()
    try:
        await serving(web)
        cookie = await sync_to_async(cookie_header)(alice)
        status, opened = await asyncio.to_thread(_lp, web, "open", {}, cookie)
        assert status == 200, opened
        sid = opened["sid"]
        assert sid.split(".")[0] in {"0", "1"}, "the session id names the process holding it"
        cursor, seen = 0, []

        async def poll() -> None:
            nonlocal cursor
            status, data = await asyncio.to_thread(_lp, web, "poll", {"sid": sid, "cursor": cursor})
            assert status == 200, data
            cursor = data["cursor"]
            seen.extend(data["events"])

        await poll()
        join_frame = {"sid": sid, "frames": [{"type": "join", "room": "lobby"}]}
        status, _ = await asyncio.to_thread(_lp, web, "send", join_frame)
        assert status == 204
        for _ in range(12):
            if any(e["type"] == "joined" for e in seen):
                break
            await poll()
        assert any(e["type"] == "joined" for e in seen), seen
        for _ in range(6):
            status, _ = await asyncio.to_thread(_lp, web, "send", {"sid": sid, "frames": [{"type": "ping"}]})
            assert status == 204
        ws = await user_socket(web, bob)
        await join(ws)
        await say(ws, "to-the-long-poller")
        for _ in range(10):
            if any(e.get("body") == "to-the-long-poller" for e in seen):
                break
            await poll()
        assert any(e.get("body") == "to-the-long-poller" for e in seen), seen
        status, _ = await asyncio.to_thread(_lp, web, "close", {"sid": sid})
        assert status == 204
        status, _ = await asyncio.to_thread(_lp, web, "poll", {"sid": sid, "cursor": cursor})
        assert status == 404, "a closed session is gone on every process"
        # A session id naming no live process is unknown, not an error.
        status, data = await asyncio.to_thread(_lp, web, "poll", {"sid": "7.nosuchsession", "cursor": 0})
        assert status == 404 and data == {"error": "unknown_session"}
    finally:
        web.stop()


async def test_a_scrape_of_the_port_reports_every_process(app_env):
    """Prometheus scrapes a host's one port and reaches one child at random: the answer has every child's
    series (each its own ``process``), and each family once, so the exposition stays valid."""
    from prometheus_client.parser import text_string_to_metric_families

    web = launcher(app_env).start()
    try:
        kids = await serving(web)
        for _ in range(4):  # whichever child answers
            text = (await asyncio.to_thread(httpx.get, f"{web.url}/metrics", timeout=10)).text
            families = list(text_string_to_metric_families(text))
            assert len({f.name for f in families}) == len(families)
            active = next(f for f in families if f.name == "realtime_active_connections")
            pids = {int(s.labels["process"].rsplit(":", 1)[1]) for s in active.samples}
            assert pids == set(kids), text[:2000]
    finally:
        web.stop()
