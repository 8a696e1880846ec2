"""Three regions on one machine: nearest-edge choice, handshake cost, cross-region delivery, failover.

    .venv/bin/python deploy/simulate_regions.py [--quick] [--json PATH] [--delay-scale X]

Starts one Redis, three Daphne processes (regions A, B and C, each with ``REGION`` set)
and one process of delaying TCP proxies (``deploy/netproxy.py``), all on 127.0.0.1:

* the user's links: 10 ms round trip to A, 80 ms to B, 200 ms to C;
* the backbone: the one Redis lives in region A ("one global Redis", docs/deploy.md,
  "Cross-region chat"); B's Daphne reaches it over a 70 ms round trip, C's over 150 ms.

Then it measures, as a browser would with static/js/edges.js (run by Node through
``deploy/edge_router.mjs``) and the resuming client (``realtime.client``):

a) which edge the client picks by probing the health URLs from ``GET /api/edges/``;
b) the WebSocket handshake time to each region;
c) how long a message takes from a user in one region to users in the others;
d) a user whose region dies (SIGKILL of its Daphne) resumes on the next nearest region
   with ``last_seq`` and misses nothing while another user keeps talking.

Prints a table, writes the numbers as JSON (``--json``), stops every process it started
and removes its throwaway SQLite database. Everything is bounded: a watchdog ends the run
after ``--deadline`` seconds whatever happens.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

NAMES = ("region-a", "region-b", "region-c")
SHORT = {"region-a": "A", "region-b": "B", "region-c": "C"}
USER_RTT_MS = {"region-a": 10.0, "region-b": 80.0, "region-c": 200.0}
# Round trip from each region's Daphne to the one Redis, which lives in region A.
BACKBONE_RTT_MS = {"region-a": 0.0, "region-b": 70.0, "region-c": 150.0}
COUNTRY = "DE"  # what the CDN says about our user: mapped to region-b, the wrong guess


# --- processes ---------------------------------------------------------------------------

_children: list[subprocess.Popen] = []
_libc = ctypes.CDLL(None, use_errno=True)


def _die_with_parent() -> None:
    _libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG: no orphan outlives this script


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    with open(log, "ab") as out:
        proc = subprocess.Popen(args, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True, preexec_fn=_die_with_parent)
    _children.append(proc)
    return proc


def wait_for_port(port: int, proc: subprocess.Popen, log: Path, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"{proc.args[0]} exited with {proc.returncode}:\n{tail}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listening on {port} after {timeout} s")


def stop_all(timeout: float = 8.0) -> None:
    """SIGTERM every process group at once, then SIGKILL what is left after ``timeout``."""
    for proc in _children:
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
    deadline = time.monotonic() + timeout
    for proc in _children:
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(timeout=5)


# --- the catalogue these regions serve at /api/edges/ ----------------------------------------


def catalogue_text(user_ports: dict[str, int], daphne_ports: dict[str, int], redis_port: int) -> str:
    lines = [
        "# Written by deploy/simulate_regions.py: three regions on 127.0.0.1 behind delaying proxies.",
        "[edge]",
        f'site_origin = "http://127.0.0.1:{user_ports["region-a"]}"',
        'image = "realtime-chat:simulation"',
        'default_region = "region-a"',
        'beat_region = "region-a"',
        "",
    ]
    for name in NAMES:
        port = user_ports[name]
        lines += [
            f"[regions.{name}]",
            f'label = "Region {SHORT[name]} ({USER_RTT_MS[name]:g} ms from the user)"',
            f'hostname = "{name}.sim.localhost"',
            f'health_url = "http://127.0.0.1:{port}/healthz"',
            f'ws_url = "ws://127.0.0.1:{port}/ws/chat/"',
            f"[regions.{name}.daphne]",
            'hosts = ["127.0.0.1"]',
            "processes_per_host = 1",
            f"port = {daphne_ports[name]}",
            f"[regions.{name}.redis]",
            f'url = "redis://127.0.0.1:{redis_port}/0"',
            f"[regions.{name}.celery]",
            "worker_concurrency = 1",
            "workers = 1",
            f"[regions.{name}.kubernetes]",
            'namespace = "sim"',
            "min_replicas = 1",
            "max_replicas = 1",
            "connections_per_pod = 100",
            "",
        ]
    lines += ["[countries]", 'US = "region-a"', 'DE = "region-b"', 'IN = "region-c"', ""]
    return "\n".join(lines)


# --- HTTP over raw sockets (a browser's fetch, timed to the response headers) -----------------


async def http_get(
    url: str, *, headers: dict[str, str] | None = None, timeout: float = 5.0
) -> tuple[int, bytes, float]:
    """GET ``url`` on a new connection: (status, body, ms until the response headers)."""
    parts = urlsplit(url)
    t0 = time.perf_counter()
    reader, writer = await asyncio.wait_for(asyncio.open_connection(parts.hostname, parts.port), timeout)
    try:
        extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        request = f"GET {parts.path or '/'} HTTP/1.1\r\nHost: {parts.netloc}\r\nConnection: close\r\n{extra}\r\n"
        writer.write(request.encode())
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
        elapsed = (time.perf_counter() - t0) * 1000
        status = int(head.split(b" ", 2)[1])
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        body = await asyncio.wait_for(reader.readexactly(length), timeout) if length else b""
        return status, body, elapsed
    finally:
        writer.transport.abort()


# --- static/js/edges.js itself, run by Node (deploy/edge_router.mjs) --------------------------------


def median(values: list[float]) -> float:
    return statistics.median(values)


class EdgeNode:
    """One Node process running deploy/edge_router.mjs: the browser's EdgeRouters, one command at a time."""

    def __init__(self) -> None:
        self.proc: asyncio.subprocess.Process | None = None
        self._lock = asyncio.Lock()
        self._routers = 0

    async def start(self) -> EdgeNode:
        node = shutil.which("node")
        if node is None:
            raise SystemExit("node is not installed (apt-get install nodejs)")
        self.proc = await asyncio.create_subprocess_exec(
            node, str(ROOT / "deploy" / "edge_router.mjs"), cwd=ROOT, stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, preexec_fn=_die_with_parent,
        )
        return self

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.stdin.close()
            try:
                await asyncio.wait_for(self.proc.wait(), 5)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()

    async def call(self, **command: Any) -> dict[str, Any]:
        assert self.proc is not None and self.proc.stdin is not None and self.proc.stdout is not None
        async with self._lock:
            self.proc.stdin.write((json.dumps(command) + "\n").encode())
            await self.proc.stdin.drain()
            line = await asyncio.wait_for(self.proc.stdout.readline(), 60)
        if not line:
            raise RuntimeError("deploy/edge_router.mjs exited")
        answer = json.loads(line)
        if not answer.pop("ok"):
            raise RuntimeError(f"edge_router.mjs {command['cmd']}: {answer['error']}")
        return answer

    async def router(self, edges: dict[str, Any], *, storage: str | None = None,
                     warmup: str | None = None) -> EdgeRouter:
        """A new EdgeRouter of a page; pages of one browser share ``storage`` (its localStorage)."""
        self._routers += 1
        name = f"router-{self._routers}"
        await self.call(cmd="new", router=name, edges=edges, storage=storage or name, warmup=warmup)
        return EdgeRouter(self, name, edges, storage or name)


class EdgeRouter:
    """A handle on one edges.js EdgeRouter in the Node process; its state as of the last command."""

    def __init__(self, node: EdgeNode, name: str, edges: dict[str, Any], storage: str) -> None:
        self.node, self.name, self.edges, self.storage_name = node, name, edges, storage
        self.current: dict[str, Any] | None = None
        self.using: str | None = None
        self.stored: dict[str, Any] | None = None
        self.timings: list[dict[str, Any]] = []
        self.samples: dict[str, list[float]] = {}

    async def _call(self, cmd: str, **extra: Any) -> dict[str, Any]:
        answer = await self.node.call(cmd=cmd, router=self.name, **extra)
        for key in ("current", "using", "stored", "timings", "samples"):
            setattr(self, key, answer.get(key))
        return answer

    def region(self, name: str | None) -> dict[str, Any] | None:
        return next((r for r in self.edges["regions"] if r["name"] == name), None)

    async def choose(self) -> dict[str, Any] | None:
        """EdgeRouter.choose(): the region for the next connect."""
        return self.region((await self._call("choose"))["region"])

    async def probe(self) -> dict[str, Any] | None:
        """EdgeRouter.probe(): measure every usable edge (or join the measurement under way)."""
        await self._call("probe")
        return self.current

    async def url(self, ticket: str) -> str | None:
        """EdgeRouter.url(): the chosen edge's socket URL, with ``ticket`` (another origin than the page)."""
        return (await self._call("url", ticket=ticket))["url"]

    async def give_up(self) -> bool:
        """EdgeRouter.giveUp(): leave the edge in use out for a while and measure again; whether it moved."""
        return (await self._call("giveUp"))["moved"]


# --- sockets ---------------------------------------------------------------------------------


class Conn:
    """One chat socket that records every event with its arrival time."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.ws: Any = None
        self.events: list[tuple[float, dict[str, Any]]] = []
        self.queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()  # every event; None: closed
        self._watchers: list[Callable[[float, dict[str, Any]], None]] = []
        self._reader: asyncio.Task | None = None

    async def open(self, url: str, *, timeout: float = 10.0) -> Conn:
        from websockets.asyncio.client import connect

        self.ws = await connect(url, open_timeout=timeout, close_timeout=1, max_size=2**20)
        self._reader = asyncio.get_running_loop().create_task(self._read())
        return self

    async def _read(self) -> None:
        from websockets.exceptions import ConnectionClosed

        try:
            async for raw in self.ws:
                t = time.perf_counter()
                event = json.loads(raw)
                self.events.append((t, event))
                self.queue.put_nowait(event)
                for watcher in list(self._watchers):
                    watcher(t, event)
        except ConnectionClosed:
            pass
        finally:
            self.queue.put_nowait(None)

    async def wait_for(
        self, pred: Callable[[dict[str, Any]], bool], timeout: float = 10.0
    ) -> tuple[float, dict[str, Any]]:
        for t, event in self.events:
            if pred(event):
                return t, event
        future: asyncio.Future = asyncio.get_running_loop().create_future()

        def watcher(t: float, event: dict[str, Any]) -> None:
            if not future.done() and pred(event):
                future.set_result((t, event))

        self._watchers.append(watcher)
        try:
            return await asyncio.wait_for(future, timeout)
        finally:
            self._watchers.remove(watcher)

    async def send(self, frame: dict[str, Any]) -> None:
        await self.ws.send(json.dumps(frame))

    async def join(self, room: str, **extra: Any) -> dict[str, Any]:
        await self.send({"type": "join", "room": room, **extra})
        return (await self.wait_for(lambda e: e.get("type") == "joined" and e.get("room") == room))[1]

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
        if self._reader is not None:
            self._reader.cancel()


# --- the measurements ------------------------------------------------------------------------


@dataclass
class World:
    daphne: dict[str, subprocess.Popen]
    daphne_ports: dict[str, int]
    user_ports: dict[str, int]
    users: dict[str, Any]
    quick: bool
    scale: float

    def direct_ws(self, name: str) -> str:
        """A user inside the region (no access link to cross): straight to its Daphne."""
        return f"ws://127.0.0.1:{self.daphne_ports[name]}/ws/chat/"

    async def ticket(self, who: str) -> str:
        from realtime.auth import ticket_issue

        return await asyncio.to_thread(ticket_issue, user=self.users[who])

    async def cookie(self, who: str) -> str:
        """A logged-in session of ``who``: what the browser sends to the site's own host."""

        def login() -> str:
            from django.test import Client

            client = Client()
            client.force_login(self.users[who])
            return f"sessionid={client.cookies['sessionid'].value}"

        return await asyncio.to_thread(login)


async def measure_edge_choice(world: World, node: EdgeNode, rounds: int) -> tuple[dict[str, Any], EdgeRouter]:
    status, body, _ = await http_get(f"http://127.0.0.1:{world.user_ports['region-a']}/api/edges/",
                                     headers={"CF-IPCountry": COUNTRY})
    assert status == 200, status
    edges = json.loads(body)
    # Node's first fetch loads its HTTP client: warm it up on an origin that is none of the edges'.
    router = await node.router(edges, storage="browser", warmup=f"http://127.0.0.1:{world.daphne_ports['region-a']}/healthz")
    first = await router.choose()  # a first visit: no stored choice yet
    await router.probe()
    per_region: dict[str, list[float]] = {n: list(router.samples.get(n, [])) for n in NAMES}
    medians: dict[str, list[float]] = {n: [t["ms"] for t in router.timings if t["name"] == n] for n in NAMES}
    picks = [router.current["name"]]
    for _ in range(rounds - 1):
        fresh = await node.router(edges)  # another browser, nothing stored
        await fresh.probe()
        picks.append(fresh.current["name"])
        for n in NAMES:
            per_region[n] += fresh.samples.get(n, [])
            medians[n] += [t["ms"] for t in fresh.timings if t["name"] == n]
    return {
        "country": edges.get("country"),
        "preferred": edges.get("preferred"),
        "first_connect": first["name"],
        "chosen": router.current["name"],
        "picks": {n: picks.count(n) for n in NAMES},
        "probe_median_ms": {n: round(median(medians[n]), 1) for n in NAMES},
        "probe_min_ms": {n: round(min(per_region[n]), 1) for n in NAMES},
        "probe_max_ms": {n: round(max(per_region[n]), 1) for n in NAMES},
        "stored": router.stored,
        "edges": [{k: r[k] for k in ("name", "wss_url", "health_url")} for r in edges["regions"]],
    }, router


async def measure_handshakes(world: World, samples: int) -> dict[str, Any]:
    out = {}
    for name in NAMES:
        opened, hello = [], []
        for _ in range(samples):
            ticket = await world.ticket("traveller")
            conn = Conn(f"hs-{name}")
            t0 = time.perf_counter()
            await conn.open(f"ws://127.0.0.1:{world.user_ports[name]}/ws/chat/?ticket={ticket}")
            t1 = time.perf_counter()
            t2, _ = await conn.wait_for(lambda e: e.get("type") == "hello")
            opened.append((t1 - t0) * 1000)
            hello.append((t2 - t0) * 1000)
            await conn.close()
        out[name] = {"upgrade_ms": round(median(opened), 1), "hello_ms": round(median(hello), 1),
                     "user_rtt_ms": USER_RTT_MS[name] * world.scale}
    nearest = out["region-a"]["upgrade_ms"]
    for name in NAMES:
        out[name]["x_nearest"] = round(out[name]["upgrade_ms"] / nearest, 1)
    return out


async def measure_delivery(world: World, samples: int) -> dict[str, Any]:
    room = "lobby"
    senders, listeners = {}, {}
    for name in NAMES:
        s = SHORT[name].lower()
        for role, conns in (("send", senders), ("listen", listeners)):
            ticket = await world.ticket(f"{role}_{s}")
            conns[name] = await Conn(f"{role}-{s}").open(f"{world.direct_ws(name)}?ticket={ticket}")
    for conn in [*senders.values(), *listeners.values()]:
        await conn.join(room)
    await asyncio.sleep(0.5)  # every process has subscribed to the room
    matrix: dict[str, dict[str, list[float]]] = {a: {b: [] for b in NAMES} for a in NAMES}
    for sender in NAMES:
        for i in range(samples + 1):  # the first one warms the path up and is not counted
            client_id = "sim-" + uuid.uuid4().hex[:12]
            waits = [lst.wait_for(lambda e, c=client_id: e.get("type") == "message" and e.get("client_id") == c)
                     for lst in listeners.values()]
            tasks = [asyncio.ensure_future(w) for w in waits]
            t0 = time.perf_counter()
            await senders[sender].send({"type": "message", "room": room, "body": f"hello {i}", "client_id": client_id})
            arrivals = await asyncio.gather(*tasks)
            if i:
                for receiver, (t, _event) in zip(listeners, arrivals, strict=True):
                    matrix[sender][receiver].append((t - t0) * 1000)
    for conn in [*senders.values(), *listeners.values()]:
        await conn.close()
    return {a: {b: round(median(v), 1) for b, v in row.items()} for a, row in matrix.items()}


class RoamingClient:
    """The page's client: realtime.client.ResumingClient fed by edges.js (edge choice, giving up an edge)."""

    def __init__(self, world: World, router: EdgeRouter, room: str, *, cookie: str, base_ms: float = 250,
                 give_up_after: int = 2):
        from realtime.client import Backoff, ResumingClient

        self.world, self.router, self.room = world, router, room
        self.give_up_after = give_up_after
        self.seqs: dict[int, int] = {}  # seq -> deliveries (the client delivers each once)
        self.log: list[tuple[float, str]] = []
        self.regions_used: list[str] = []
        self.replayed = 0
        self._region: str | None = None
        self._resumed_at: int | None = None
        # The page is on the site: its session cookie goes along (an edge on the site's own host
        # uses it; the others get a ticket in the URL from edges.js), and so does its Origin.
        self.client = ResumingClient(
            self._url, rooms=[room], cookie=cookie, origin=router.edges["site_origin"],
            backoff=Backoff(base=base_ms / 1000, cap=5.0), open_timeout=5,
            on_state=self._on_state, on_connect_failed=self._on_connect_failed, client_id_prefix="sim",
        )

    @property
    def last_seq(self) -> int | None:
        return self.client.rooms[self.room].last_seq

    def note(self, text: str) -> None:
        self.log.append((time.perf_counter(), text))

    async def _url(self) -> str:
        url = await self.router.url(await self.world.ticket("traveller"))
        self._region = self.router.using
        self.note(f"connect to {self._region}")
        if url is None:
            raise ConnectionError("no edge to connect to")
        return url

    async def _on_connect_failed(self, failures: int) -> bool:
        # RealtimeClient's onGiveUpEdge, after giveUpEdgeAfter connects in a row that never opened.
        if failures != self.give_up_after:
            return False
        moved = await self.router.give_up()
        self.note(f"gave up the edge; moved: {moved} -> {self.router.using}")
        return moved

    def _on_state(self, state: str, info: dict[str, Any]) -> None:
        if state == "connected":
            self.regions_used.append(self._region)
            self.note(f"connected to {self._region} (last_seq {self.last_seq})")
        elif state == "reconnecting" and "delay" in info:
            what = info.get("error") or f"socket closed ({info.get('code')})"
            self.note(f"{what}; next try in {info['delay'] * 1000:.0f} ms")

    async def run(self) -> None:
        """Connect and record what the page would show, until stopped."""
        async with self.client:
            async for event in self.client:
                kind = event.get("type")
                if kind == "joined" and event.get("room") == self.room:
                    self._resumed_at = event["seq"]
                    self.note(f"joined on {self._region} at seq {event['seq']}")
                elif kind == "message" and event.get("room") == self.room:
                    seq = event["seq"]
                    if len(self.regions_used) > 1 and seq not in self.seqs and seq <= (self._resumed_at or 0):
                        self.replayed += 1
                    self.seqs[seq] = self.seqs.get(seq, 0) + 1

    async def wait_joined(self, timeout: float) -> None:
        await self.client.wait_joined(self.room, timeout)

    async def stop(self) -> None:
        await self.client.close()


async def measure_failover(world: World, router: EdgeRouter, messages: int) -> dict[str, Any]:
    room = "failover"
    # A new page load of the same browser: the choice stored by the measurement above.
    page = await router.node.router(router.edges, storage=router.storage_name)
    traveller = RoamingClient(world, page, room, cookie=await world.cookie("traveller"))
    runner = asyncio.get_running_loop().create_task(traveller.run())
    await traveller.wait_joined(15)
    home = traveller.regions_used[-1]
    talker_region = "region-b"
    talker = await Conn("talker").open(f"{world.direct_ws(talker_region)}?ticket={await world.ticket('talker')}")
    await talker.join(room)
    kill_after = messages // 3
    killed_at = None
    sent = []
    for i in range(1, messages + 1):
        client_id = f"fo-{i}"
        await talker.send({"type": "message", "room": room, "body": f"msg {i}", "client_id": client_id})
        sent.append(client_id)
        if i == kill_after:
            # Once this one is committed, the traveller's region dies.
            await talker.wait_for(lambda e: e.get("client_id") == f"fo-{kill_after}" and e.get("type") == "message")
            os.killpg(world.daphne[home].pid, signal.SIGKILL)
            world.daphne[home].wait(10)
            killed_at = time.perf_counter()
            traveller.note(f"SIGKILL the Daphne of {home}")
        await asyncio.sleep(0.05)
    # Every message committed (the talker saw each come back with its seq).
    seqs_sent = {}
    for client_id in sent:
        _t, event = await talker.wait_for(
            lambda e, c=client_id: e.get("client_id") == c and e.get("type") == "message", 30
        )
        seqs_sent[client_id] = event["seq"]
    last = max(seqs_sent.values())
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not all(s in traveller.seqs for s in seqs_sent.values()):
        await asyncio.sleep(0.1)
    resumed = next((t for t, text in traveller.log if text.startswith("joined on") and t > (killed_at or 0)), None)
    await traveller.stop()
    runner.cancel()
    await asyncio.gather(runner, return_exceptions=True)
    await talker.close()
    expected = sorted(seqs_sent.values())
    return {
        "room": room,
        "home": home,
        "resumed_on": traveller.regions_used[-1],
        "regions_used": traveller.regions_used,
        "messages": messages,
        "killed_after": kill_after,
        "expected_seqs": [expected[0], expected[-1]],
        "missing": [s for s in expected if s not in traveller.seqs],
        "shown": len([s for s in expected if s in traveller.seqs]),
        "duplicate_deliveries": sum(n - 1 for n in traveller.seqs.values()),
        "replayed_on_resume": traveller.replayed,
        "last_seq": traveller.last_seq,
        "seconds_to_resume": round(resumed - killed_at, 2) if resumed and killed_at else None,
        "log": [f"{(t - killed_at) * 1000 if killed_at else 0:+8.0f} ms  {text}" for t, text in traveller.log],
        "contiguous": traveller.last_seq == last,
    }


# --- the report --------------------------------------------------------------------------------


def report(result: dict[str, Any]) -> str:
    cfg = result["config"]
    s = cfg["delay_scale"]
    out = [
        "Three simulated regions on 127.0.0.1 (user-space delaying proxies; one global Redis in region A)",
        f"  user round trips: A {10 * s:g} ms, B {80 * s:g} ms, C {200 * s:g} ms;"
        f" backbone to Redis (region A): B {70 * s:g} ms, C {150 * s:g} ms round trip",
        "",
        "(a) Edge choice: 3 parallel GETs of each health URL, median (static/js/edges.js, on Node)",
    ]
    e = result["edge_choice"]
    out.append(f"    CDN country {e['country']} -> preferred {e['preferred']}: first connect goes to "
               f"{SHORT[e['first_connect']]} while probing")
    out.append("    region   user RTT   probe median   probe min..max   picked")
    for n in NAMES:
        out.append(f"    {SHORT[n]:<8} {USER_RTT_MS[n] * s:>6.0f} ms  {e['probe_median_ms'][n]:>9.1f} ms"
                   f"   {e['probe_min_ms'][n]:>6.1f}..{e['probe_max_ms'][n]:<6.1f}"
                   f"  {e['picks'][n]}/{sum(e['picks'].values())}")
    out.append(f"    -> chosen: {SHORT[e['chosen']]} (stored with its time: re-probed after 1 h)")
    out.append("")
    out.append("(b) WebSocket handshake through the user's link (ticket auth), median")
    out.append("    region   user RTT   HTTP 101   'hello'   x nearest")
    for n in NAMES:
        h = result["handshake_ms"][n]
        out.append(f"    {SHORT[n]:<8} {h['user_rtt_ms']:>6.0f} ms {h['upgrade_ms']:>8.1f} ms {h['hello_ms']:>7.1f} ms"
                   f" {h['x_nearest']:>8.1f}")
    out.append("")
    out.append("(c) Message arrival, sender's region -> listener's region (users inside their regions), median ms")
    out.append("    from \\ to        A        B        C")
    for a in NAMES:
        row = result["delivery_ms"][a]
        out.append(f"    {SHORT[a]:<12}" + "".join(f"{row[b]:>9.1f}" for b in NAMES))
    out.append(f"    (backbone one-way delay from Redis: B {35 * s:g} ms, C {75 * s:g} ms)")
    out.append("")
    f = result["failover"]
    out.append(f"(d) Failover: the user's region {SHORT[f['home']]} dies (SIGKILL) after message {f['killed_after']}"
               f" of {f['messages']} (sent from B)")
    out.append(f"    resumed on {SHORT[f['resumed_on']]} after {f['seconds_to_resume']} s with last_seq;"
               f" {f['replayed_on_resume']} messages replayed on resume")
    out.append(f"    seqs {f['expected_seqs'][0]}..{f['expected_seqs'][1]}: shown {f['shown']},"
               f" missing {len(f['missing'])},"
               f" shown twice {f['duplicate_deliveries']}")
    for line in f["log"]:
        out.append(f"      {line}")
    out.append("")
    out.append(f"OK: {result['ok']}   ({result['seconds']} s)")
    return "\n".join(out)


# --- main --------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer samples (for the test suite)")
    parser.add_argument("--json", help="write the results here as JSON")
    parser.add_argument("--delay-scale", type=float, default=1.0, help="multiply every simulated delay")
    parser.add_argument("--deadline", type=float, default=0, help="stop everything after this many seconds")
    args = parser.parse_args()
    quick, scale = args.quick, args.delay_scale
    deadline = args.deadline or (150 if quick else 300)
    started = time.monotonic()

    def watchdog() -> None:
        print(f"simulate_regions: deadline of {deadline:g} s reached, stopping everything", file=sys.stderr, flush=True)
        for proc in _children:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        os._exit(3)

    timer = threading.Timer(deadline, watchdog)
    timer.daemon = True
    timer.start()
    def terminate(*_: Any) -> None:
        print("simulate_regions: terminated, stopping everything", file=sys.stderr, flush=True)
        sys.exit(143)

    signal.signal(signal.SIGTERM, terminate)

    tmp = Path(tempfile.mkdtemp(prefix="simulate-regions-"))
    try:
        result = run(tmp, quick=quick, scale=scale)
        result["seconds"] = round(time.monotonic() - started, 1)
        print(report(result), flush=True)
        if args.json:
            Path(args.json).write_text(json.dumps(result, indent=2))
        return 0 if result["ok"] else 1
    finally:
        stop_all()
        timer.cancel()
        shutil.rmtree(tmp, ignore_errors=True)


def run(tmp: Path, *, quick: bool, scale: float) -> dict[str, Any]:
    redis_exe = shutil.which("redis-server")
    if redis_exe is None:
        raise SystemExit("redis-server is not installed (apt-get install redis-server)")
    redis_port = free_port()
    daphne_ports = {n: free_port() for n in NAMES}
    user_ports = {n: free_port() for n in NAMES}
    backbone_ports = {n: free_port() for n in NAMES if BACKBONE_RTT_MS[n]}

    redis_log = tmp / "redis.log"
    redis = spawn([redis_exe, "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
                  dict(os.environ), redis_log)
    links = [f"{user_ports[n]}:{daphne_ports[n]}:{USER_RTT_MS[n] * scale / 2:g}:user-{SHORT[n]}" for n in NAMES]
    links += [f"{backbone_ports[n]}:{redis_port}:{BACKBONE_RTT_MS[n] * scale / 2:g}:backbone-{SHORT[n]}"
              for n in backbone_ports]
    proxy_log = tmp / "proxy.log"
    proxy = spawn([sys.executable, str(ROOT / "deploy" / "netproxy.py"), *links, "--max-seconds", "900"],
                  dict(os.environ, PYTHONUNBUFFERED="1"), proxy_log)
    wait_for_port(redis_port, redis, redis_log)
    for port in [*user_ports.values(), *backbone_ports.values()]:
        wait_for_port(port, proxy, proxy_log)

    regions_file = tmp / "regions.toml"
    regions_file.write_text(catalogue_text(user_ports, daphne_ports, redis_port))
    redis_url = f"redis://127.0.0.1:{redis_port}/0"
    base_env = {k: v for k, v in os.environ.items() if k != "DJANGO_ALLOW_ASYNC_UNSAFE"}
    base_env.update(
        DJANGO_SETTINGS_MODULE="realtime.settings", PYTHONUNBUFFERED="1", DJANGO_DEBUG="1",
        SQLITE_PATH=str(tmp / "db.sqlite3"), REGIONS_FILE=str(regions_file), LOG_LEVEL="WARNING",
        # The measurements send faster than a person types.
        CHAT_RATE_BURST="1000", CHAT_RATE_PER_SECOND="1000",
    )
    # This process issues tickets into the one Redis, as the main site would.
    os.environ.update({k: base_env[k] for k in ("DJANGO_SETTINGS_MODULE", "SQLITE_PATH", "REGIONS_FILE")})
    os.environ.update(REDIS_URL=redis_url, CELERY_BROKER_URL=redis_url)
    os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    from chat.models import Room

    call_command("migrate", verbosity=0)
    User = get_user_model()
    names = ["traveller", "talker", *(f"{role}_{s}" for role in ("send", "listen") for s in "abc")]
    users = {n: User.objects.create_user(n, password=uuid.uuid4().hex) for n in names}
    for slug in ("lobby", "failover"):
        Room.objects.create(slug=slug, title=slug.title(), is_public=True)

    daphne = {}
    for n in NAMES:
        link = f"redis://127.0.0.1:{backbone_ports[n]}/0" if n in backbone_ports else redis_url
        env = dict(base_env, REGION=n, REDIS_URL=link, CELERY_BROKER_URL=link, METRICS_PROCESS=f"{n}:{daphne_ports[n]}")
        args = [sys.executable, "-m", "realtime.server", "-b", "127.0.0.1", "-p", str(daphne_ports[n]), "-v", "0",
                "--websocket-max-message-size", "65536", "--websocket-max-frame-size", "65536",
                "realtime.asgi:application"]
        daphne[n] = spawn(args, env, tmp / f"daphne-{n}.log")
    for n in NAMES:
        wait_for_port(daphne_ports[n], daphne[n], tmp / f"daphne-{n}.log")

    world = World(daphne=daphne, daphne_ports=daphne_ports, user_ports=user_ports, users=users,
                  quick=quick, scale=scale)
    try:
        result = asyncio.run(measure_all(world))
    except BaseException:
        for n in NAMES:
            log = (tmp / f"daphne-{n}.log").read_text(errors="replace")[-2000:]
            if log.strip():
                print(f"--- daphne {n} log ---\n{log}", file=sys.stderr)
        raise
    result["config"] = {
        "quick": quick, "delay_scale": scale,
        "user_rtt_ms": {n: USER_RTT_MS[n] * scale for n in NAMES},
        "backbone_rtt_ms": {n: BACKBONE_RTT_MS[n] * scale for n in NAMES},
        "backbone_one_way_ms": {n: BACKBONE_RTT_MS[n] * scale / 2 for n in NAMES},
        "redis_home": "region-a",
    }
    f, e = result["failover"], result["edge_choice"]
    result["ok"] = (
        e["chosen"] == "region-a"
        and not f["missing"]
        and f["resumed_on"] != f["home"]
        and all(result["delivery_ms"]["region-a"][n] > BACKBONE_RTT_MS[n] * scale / 2 for n in NAMES)
    )
    return result


async def measure_all(world: World) -> dict[str, Any]:
    quick = world.quick
    node = await EdgeNode().start()
    try:
        edge_choice, router = await measure_edge_choice(world, node, rounds=2 if quick else 5)
        handshakes = await measure_handshakes(world, samples=2 if quick else 7)
        delivery = await measure_delivery(world, samples=4 if quick else 15)
        failover = await measure_failover(world, router, messages=15 if quick else 30)
    finally:
        await node.stop()
    return {"edge_choice": edge_choice, "handshake_ms": handshakes, "delivery_ms": delivery, "failover": failover}


if __name__ == "__main__":
    sys.exit(main())
