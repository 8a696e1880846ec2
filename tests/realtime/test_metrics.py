"""GET /metrics: closed to strangers, and its numbers follow what sockets really do.

Consumers run through the full ASGI stack (``WebsocketCommunicator``) on the real Redis
layer, in this process, so the per-process metrics read here are the ones they moved.
The push histogram lives in Redis (Celery children serve no HTTP): a push from another
process must show up in this one's /metrics.
"""

from __future__ import annotations

import math
import re
import subprocess
import sys
import time
import urllib.request
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from channels_redis.core import RedisChannelLayer
from django.test import Client

from realtime import metrics, push
from realtime.asgi import application
from tests.conftest import cookie_header
from tests.services import ROOT

pytestmark = pytest.mark.django_db(transaction=True)

ORIGIN = (b"origin", b"http://127.0.0.1:8000")
STRANGER = "203.0.113.7"
SAMPLE = re.compile(r'^([a-z_]+)(\{[^}]*\})? (-?[0-9.e+-]+|\+Inf|NaN)$')


def scrape(**extra: Any):
    return Client().get("/metrics", **extra)


def series(text: str, name: str, **labels: str) -> float:
    """The value of the one sample of ``name`` whose labels include ``labels``."""
    found = []
    for line in text.splitlines():
        match = SAMPLE.match(line)
        if match and match.group(1) == name:
            have = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', match.group(2) or ""))
            if all(have.get(k) == v for k, v in labels.items()):
                found.append(float(match.group(3)))
    assert len(found) == 1, f"{name}{labels}: {found}"
    return found[0]


# --- Access --------------------------------------------------------------------------


def test_metrics_are_refused_to_strangers_and_served_with_the_token(settings):
    """Without the token a non-allowed address gets 403 and no numbers; the right bearer token gets the metrics."""
    settings.METRICS_TOKEN = "t0k3n-for-tests"
    settings.METRICS_ALLOW_IPS = ["127.0.0.1", "::1"]
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic t0k3n-for-tests"}):
        refused = scrape(REMOTE_ADDR=STRANGER, headers=headers)
        assert refused.status_code == 403
        assert b"realtime_" not in refused.content
    allowed = scrape(REMOTE_ADDR=STRANGER, headers={"Authorization": "Bearer t0k3n-for-tests"})
    assert allowed.status_code == 200
    assert allowed["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert "# TYPE realtime_active_connections gauge" in allowed.content.decode()
    assert "no-cache" in allowed["Cache-Control"] or "max-age=0" in allowed["Cache-Control"]


def test_metrics_allow_listed_addresses_and_networks(settings):
    """Loopback (also IPv4-mapped) is allowed by default; networks work; an empty list leaves the token only."""
    settings.METRICS_TOKEN = ""
    settings.METRICS_ALLOW_IPS = ["127.0.0.1", "::1"]
    assert scrape(REMOTE_ADDR="127.0.0.1").status_code == 200
    assert scrape(REMOTE_ADDR="::ffff:127.0.0.1").status_code == 200
    assert scrape(REMOTE_ADDR="::1").status_code == 200
    # No token configured: an empty bearer must not match it.
    assert scrape(REMOTE_ADDR=STRANGER, headers={"Authorization": "Bearer "}).status_code == 403
    settings.METRICS_ALLOW_IPS = ["10.0.0.0/8"]
    assert scrape(REMOTE_ADDR="10.20.30.40").status_code == 200
    assert scrape(REMOTE_ADDR="11.0.0.1").status_code == 403
    settings.METRICS_ALLOW_IPS = []
    assert scrape(REMOTE_ADDR="127.0.0.1").status_code == 403


@pytest.mark.live
def test_live_daphne_serves_metrics_to_loopback(daphne):
    """Under Daphne the endpoint answers the loopback scrape with this process's labelled series."""
    with urllib.request.urlopen(f"{daphne.url}/metrics", timeout=10) as response:
        body = response.read().decode()
    assert series(body, "realtime_active_connections", region="local") >= 0


# --- What sockets do ------------------------------------------------------------------


class Recorder:
    """A communicator that keeps every event it received."""

    def __init__(self, comm: WebsocketCommunicator) -> None:
        self.comm = comm
        self.events: list[dict[str, Any]] = []

    async def next(self, type_: str, timeout: float = 5) -> dict[str, Any]:
        while True:
            event = await self.comm.receive_json_from(timeout=timeout)
            self.events.append(event)
            if event["type"] == type_:
                return event

    async def drain(self) -> None:
        while not await self.comm.receive_nothing(timeout=0.3):
            self.events.append(await self.comm.receive_json_from())


async def open_socket(user: Any) -> Recorder:
    cookie = await sync_to_async(cookie_header)(user)
    comm = WebsocketCommunicator(application, "/ws/chat/", headers=[ORIGIN, (b"cookie", cookie.encode())])
    connected, _ = await comm.connect(timeout=5)
    assert connected
    rec = Recorder(comm)
    await rec.next("hello")
    return rec


async def test_a_socket_session_moves_the_gauge_and_the_counters(alice, bob, lobby):
    """Open sockets count up and back down; frames in and events out match what the clients did and got."""
    conns, frames_in, events_out = (
        metrics.ACTIVE_CONNECTIONS.value(), metrics.MESSAGES_IN.value(), metrics.MESSAGES_OUT.value()
    )
    fanout, rtt, rtt_sum = metrics.FANOUT_LATENCY.count(), metrics.PING_RTT.count(), metrics.PING_RTT._series[()][1]

    a = await open_socket(alice)
    assert metrics.ACTIVE_CONNECTIONS.value() == conns + 1
    b = await open_socket(bob)
    assert metrics.ACTIVE_CONNECTIONS.value() == conns + 2

    for rec in (a, b):
        await rec.comm.send_json_to({"type": "join", "room": "lobby"})
        await rec.next("joined")
    await a.comm.send_json_to({"type": "message", "room": "lobby", "body": "hello", "client_id": "m1"})
    await a.next("message")
    await b.next("message")
    await a.comm.send_json_to({"type": "ping", "t": 1, "rtt": 42})
    await a.next("pong")
    await a.drain()
    await b.drain()

    # The endpoint reports the same numbers as the registry.
    body = (await sync_to_async(scrape)()).content.decode()
    assert series(body, "realtime_active_connections", region="local") == conns + 2

    assert metrics.MESSAGES_IN.value() - frames_in == 4  # two joins, a message, a ping
    assert metrics.MESSAGES_OUT.value() - events_out == len(a.events) + len(b.events)
    # The message to both sockets at least (bob's presence reached alice too), each stamped at publish.
    assert metrics.FANOUT_LATENCY.count() - fanout >= 2
    assert metrics.PING_RTT.count() - rtt == 1
    assert math.isclose(metrics.PING_RTT._series[()][1] - rtt_sum, 0.042)

    await a.comm.disconnect(timeout=5)
    await b.comm.disconnect(timeout=5)
    assert metrics.ACTIVE_CONNECTIONS.value() == conns


async def test_a_refused_handshake_is_not_an_open_socket(alice):
    """A socket refused before accept (forged Origin) never counts as open."""
    conns = metrics.ACTIVE_CONNECTIONS.value()
    cookie = await sync_to_async(cookie_header)(alice)
    comm = WebsocketCommunicator(
        application, "/ws/chat/", headers=[(b"origin", b"https://evil.example"), (b"cookie", cookie.encode())]
    )
    connected, _ = await comm.connect(timeout=5)
    assert not connected
    assert metrics.ACTIVE_CONNECTIONS.value() == conns


def test_ping_rtt_and_fanout_ignore_values_that_are_not_measurements():
    """Negative, huge, non-numeric or boolean rtt values are not observed; a future publish time counts as 0 s."""
    rtt = metrics.PING_RTT.count()
    for value in (-1, 10**9, "42", True, None, math.nan, math.inf):
        metrics.ping_rtt_observe(value)
    assert metrics.PING_RTT.count() == rtt
    fanout = metrics.FANOUT_LATENCY.count()
    for value in ("now", None, False, math.nan):
        metrics.fanout_observe(value)
    assert metrics.FANOUT_LATENCY.count() == fanout
    zero = metrics.FANOUT_LATENCY._series[()][0][0]
    metrics.fanout_observe(time.time() + 30)  # another host's clock ahead of ours
    assert metrics.FANOUT_LATENCY._series[()][0][0] == zero + 1


async def test_messages_dropped_for_a_full_socket_queue_are_counted(settings):
    """channels_redis drops group messages to a channel at capacity; each drop is counted as reason=capacity."""
    layer = RedisChannelLayer(hosts=[settings.REDIS_URL], capacity=1, prefix="metrics-test")
    channel = await layer.new_channel()
    await layer.group_add("full", channel)
    before = metrics.LAYER_DROPPED.value(reason="capacity")
    for n in range(3):
        await layer.group_send("full", {"type": "x.y", "n": n})
    assert metrics.LAYER_DROPPED.value(reason="capacity") - before == 2
    await layer.flush()


def test_push_latency_from_another_process_reaches_this_ones_metrics():
    """A sync push in a separate process (as in a Celery child) is timed into Redis and reported here, per audience."""
    code = (
        "from realtime import push; "
        "push.push_room('lobby', {'type': 'announcement', 'body': 'x'}); "
        "push.push_user(1, {'type': 'mention', 'body': 'y'})"
    )
    run = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 0, run.stderr
    push.push_everyone({"type": "announcement", "body": "z"})

    body = metrics.exposition()
    for audience in ("room", "user", "everyone"):
        assert series(body, "realtime_push_latency_seconds_count", audience=audience) == 1
        assert series(body, "realtime_push_latency_seconds_bucket", audience=audience, le="+Inf") == 1
        assert 0 < series(body, "realtime_push_latency_seconds_sum", audience=audience) < 10
    # Region-wide: no process label on these series.
    assert not re.search(r'realtime_push_latency_seconds_count\{[^}]*process=', body)


def test_exposition_is_well_formed_with_cumulative_buckets(monkeypatch):
    """Every sample line parses; buckets never decrease and +Inf equals the count; label values are escaped."""
    monkeypatch.setenv("METRICS_PROCESS", 'web"1\\a')
    metrics.ping_rtt_observe(80)
    metrics.ping_rtt_observe(400)
    body = metrics.exposition()
    assert 'process="web\\"1\\\\a"' in body
    for line in body.splitlines():
        assert line.startswith("# ") or SAMPLE.match(line), line
    buckets = [
        float(m.group(2))
        for m in re.finditer(r'^realtime_ping_rtt_seconds_bucket\{.*le="([^"]+)"\} (\S+)$', body, re.M)
    ]
    assert buckets == sorted(buckets)
    assert buckets[-1] == series(body, "realtime_ping_rtt_seconds_count")


def test_metrics_are_served_while_redis_is_down(monkeypatch):
    """A Redis outage hides only the Redis-backed push histogram; the per-process metrics are still served."""
    import redis

    import realtime.redis_pool as redis_pool
    from tests.services import free_port

    # The process's Redis client, pointed at a port where nothing listens.
    monkeypatch.setattr(redis_pool, "_sync_client", redis.Redis(port=free_port(), socket_connect_timeout=0.5))
    response = scrape(REMOTE_ADDR="127.0.0.1")
    assert response.status_code == 200
    body = response.content.decode()
    assert "realtime_active_connections{" in body
    assert "# TYPE realtime_push_latency_seconds histogram" in body
    assert "realtime_push_latency_seconds_count" not in body
